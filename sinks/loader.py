"""Kafka → ClickHouse loader: decodes topic records with their Avro schema and inserts them in
batches, each row carrying the topic, partition and offset it came from.

Loading is effectively once. ClickHouse is the offset store: when a partition is assigned, the
loader resumes after the highest offset the partition's table already holds, if that is past the
consumer group's committed offset (which is committed after each batch, for monitoring and as the
fallback). So a crash between an insert and its commit does not load the batch again, and the
rollups that materialized views keep from those inserts (migration 0005) count each record once; a
batch's dead letters go in first (`loaded_offsets`), so a crash between its inserts loads it again
rather than past rows never inserted, and not its letters (`lettered_offsets`). ReplacingMergeTree
keys keep the facts exact under FINAL even when a second loader with another group re-reads a
topic."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import TopicPartition

from jobs.runtime import kafka_io
from schemas import codec, load_schema
from schemas import topics as registry
from schemas.avro import Schema
from schemas.capacity import Capacity
from schemas.settings import Settings
from sinks import clickhouse, dims
from sinks.draining import Draining, command_line, committed_consumer, dead_letter
from udfs.registry import Registry

# topic (registry name) -> ClickHouse table
TABLES = {
    registry.VITALS_NEWS2.name: "vitals_news2",
    registry.ALERT_V1.name: "alerts",
    registry.SEPSIS_SCREEN.name: "sepsis_screen",
    registry.VITALS_CHARTED.name: "vitals_charted",
    registry.ALERT_V2.name: "alert_events",
    registry.CENSUS_UNIT.name: "census_unit",
    registry.CENSUS_FLOW.name: "census_flow",
    registry.CENSUS_EVENT.name: "census_events",
    registry.ADT_EVENT.name: "adt_events",
    registry.ALERT_RESPONSE.name: "alert_responses",
    registry.SEPSIS_SCORE.name: "model_scores",
    registry.MODEL_SCORE.name: "catalog_scores",
    registry.DEAD_LETTER.name: "dead_letters",
    registry.MODEL_AUDIT.name: "model_audit",
    registry.QUALITY_EVENT.name: "quality_events",
    registry.MODEL_MONITOR.name: "model_monitor",
    registry.LABEL_OUTCOME.name: "outcome_labels",
}
META = ("kafka_partition", "kafka_offset", "kafka_topic")
STAGE = "clickhouse_loader"


@dataclass
class LoadStats:
    rows: dict[str, int] = field(default_factory=dict)
    dead_lettered: dict[str, int] = field(default_factory=dict)

    def add(self, table: str, n: int) -> None:
        self.rows[table] = self.rows.get(table, 0) + n


def _finite(schema: Schema, rec: dict[str, Any]) -> dict[str, Any] | codec.Rejection:
    """The record, or its rejection where a float is NaN or infinite: NaN risk landed in the
    score histogram's top bin, and an infinite one failed its view's insert after the scores'
    (whose rows the loader had then passed)."""
    for f in schema.fields:
        v = rec.get(f.name)
        if isinstance(v, float) and not math.isfinite(v):
            return codec.Rejection("not_a_number", f"{f.name} is {v}")
    return rec


class Loader(Draining[LoadStats]):
    what = "loader"

    def __init__(
        self,
        settings: Settings,
        client: Any,
        *,
        prefix: str = "",
        topics: dict[str, str] | None = None,
        batch_size: int = 20000,
        group_id: str = "wardflow-clickhouse-loader",
    ) -> None:
        self.settings = settings
        self.client = client
        self.prefix = prefix
        self.topics = topics or TABLES
        self.batch_size = batch_size
        kafka_io.ensure_topics(settings, list(self.topics), prefix=prefix)
        self.schemas = {prefix + t: load_schema(t) for t in self.topics}
        self.tables = {
            prefix + t: f"{settings.clickhouse_database}.{tbl}" for t, tbl in self.topics.items()
        }
        self.consumer = committed_consumer(settings, prefix + group_id)
        self.subscribed = list(self.schemas)
        self.consumer.subscribe(self.subscribed, on_assign=self._resume)
        self.dead_letter_topic = prefix + registry.DEAD_LETTER.name
        self.schemas.setdefault(self.dead_letter_topic, registry.DEAD_LETTER.schema)
        self.tables.setdefault(
            self.dead_letter_topic,
            f"{settings.clickhouse_database}.{TABLES[registry.DEAD_LETTER.name]}",
        )
        self.stats = LoadStats()
        self.resumed: dict[tuple[str, int], int] = {}
        # (topic, partition) → the last offset of theirs the loader dead-lettered, read when
        # assigned (`lettered_offsets`)
        self.lettered: dict[tuple[str, int], int] = {}

    def _dead_letter(self, m: Any, why: codec.Rejection) -> dict[str, Any]:
        return dead_letter(m, STAGE, why)

    def poll_batch(self, timeout_s: float = 1.0) -> int:
        msgs = self.consumer.consume(num_messages=self.batch_size, timeout=timeout_s)
        by_topic: dict[str, list[list[Any]]] = {}
        for m in msgs:
            if m.error():
                continue
            t = m.topic()
            schema = self.schemas[t]
            rec = codec.decode(schema, m.value())
            if not isinstance(rec, codec.Rejection):
                rec = _finite(schema, rec)
            if isinstance(rec, codec.Rejection):
                if m.offset() <= self.lettered.get((t, m.partition()), -1):
                    continue  # its dead letter went in before a crash: in once, counted once
                # Our own jobs wrote these topics, so this is a bug; keep the record, with why.
                rec = self._dead_letter(m, rec)
                t = self.dead_letter_topic
                self.stats.dead_lettered[m.topic()] = self.stats.dead_lettered.get(m.topic(), 0) + 1
            by_topic.setdefault(t, []).append(
                [rec[f] for f in self.schemas[t].field_names]
                + [m.partition(), m.offset(), m.topic()]
            )
        # the dead letters first: a topic resumes from its own table alone (`loaded_offsets`),
        # so a crash between the inserts loads the batch again, never past rows not inserted
        order = sorted(by_topic, key=lambda t: t != self.dead_letter_topic)
        for t in order:
            rows = by_topic[t]
            cols = [*self.schemas[t].field_names, *META]
            self.client.insert(self.tables[t], rows, column_names=cols)
            self.stats.add(self.tables[t], len(rows))
        if msgs:
            self.consumer.commit(asynchronous=False)
        return len(msgs)

    def loaded_offsets(self, topic: str) -> dict[int, int]:
        """partition → the next offset to load, from what ClickHouse already holds of `topic`:
        its table's rows. Not its records the loader dead-lettered: those are inserted first
        (`poll_batch`), and resuming past them lost the rows of a batch whose own insert the
        crash stopped. A batch loaded again after a crash before the commit is absorbed by the
        tables' keys; its dead letters are not written again (`lettered_offsets`)."""
        rows = self.client.query(
            f"""SELECT kafka_partition, max(kafka_offset) + 1 FROM {self.tables[topic]}
                WHERE kafka_topic = %(t)s
                GROUP BY kafka_partition""",
            parameters={"t": topic},
        ).result_rows
        return {int(p): int(o) for p, o in rows}

    def lettered_offsets(self, topic: str) -> dict[int, int]:
        """partition → the last offset of `topic` whose record the loader dead-lettered (its
        letter is in dead_letters under the topic's own offset). A batch loaded again after a
        crash between its inserts reads such a record again: its letter is not written twice,
        which the table's key absorbed but the per-minute count of dead letters counted."""
        rows = self.client.query(
            f"""SELECT kafka_partition, max(kafka_offset)
                FROM {self.tables[self.dead_letter_topic]}
                WHERE kafka_topic = %(t)s AND stage = %(stage)s
                GROUP BY kafka_partition""",
            parameters={"t": topic, "stage": STAGE},
        ).result_rows
        return {int(p): int(o) for p, o in rows}

    def _resume(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        committed = {
            (tp.topic, tp.partition): tp.offset for tp in consumer.committed(partitions, timeout=30)
        }
        loaded = {t: self.loaded_offsets(t) for t in {tp.topic for tp in partitions}}
        for t in loaded:
            for partition, offset in self.lettered_offsets(t).items():
                self.lettered[(t, partition)] = offset
        for tp in partitions:
            nxt = loaded[tp.topic].get(tp.partition)
            if nxt is not None and nxt > committed.get((tp.topic, tp.partition), -1):
                tp.offset = nxt
                self.resumed[(tp.topic, tp.partition)] = nxt
        consumer.assign(partitions)

    def lag(self) -> int:
        """Offsets in the subscribed topics this loader has neither committed nor read past.
        The read position counts too: transaction markers take offsets but are never delivered,
        so after a transactional topic's last record only the position reaches its end."""
        total = 0
        for t in self.subscribed:  # not the dead-letter topic it may only write to
            resumed = {p: o for (topic, p), o in self.resumed.items() if topic == t}
            total += self.topic_lag(self.settings, t, resumed)
        return total


def main(argv: list[str] | None = None) -> None:
    settings, a = command_line(__doc__, argv, "the topics are loaded")
    client = clickhouse.connect(settings.clickhouse_url)
    clickhouse.migrate(client, settings.clickhouse_database)
    # Facility and unit dimensions from the same capacity file the census job reads.
    dims.load_capacity(client, settings.clickhouse_database, Capacity.load(settings.capacity_file))
    # every served model's versions: the ML ops board picks its model from them (the catalog's
    # monitor results were in the warehouse, their model not in the board's list)
    registry = Registry(settings.model_registry)
    for model in dict.fromkeys((settings.model_name, *settings.catalog_model_names)):
        versions = dims.model_versions(registry, model)
        dims.upsert_model_versions(client, settings.clickhouse_database, versions)
    kafka_io.ensure_topics(settings, list(TABLES), prefix=a.topic_prefix)
    loader = Loader(settings, client, prefix=a.topic_prefix)
    stats = loader.run_until_signalled(drain=a.drain)
    print(f"loaded {stats.rows}; dead-lettered {stats.dead_lettered}")


if __name__ == "__main__":
    main()
