"""Flink `CREATE TABLE` statements for Kafka topics, derived from the topics' Avro schemas."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from schemas import topic as registry_topic
from schemas import topics
from schemas.rows import REFUSED, Row, quote
from schemas.settings import Settings

# Epoch milliseconds of a TIMESTAMP_LTZ(3), exact past 2038: PyFlink hands Python UDFs timestamps
# through 32-bit seconds (and TIMESTAMPDIFF overflows the same way), so UDFs get this BIGINT.
EPOCH_MS = "UNIX_TIMESTAMP(CAST({0} AS STRING)) * 1000 + EXTRACT(MILLISECOND FROM {0})"


@dataclass(frozen=True)
class KafkaTable:
    """Where a Flink table lives: a topic (maybe prefixed for an isolated run) on a broker."""

    topic: str
    bootstrap: str
    bounded: bool = False
    group_id: str = "wardflow"
    client_timeout_s: int = 0  # 0: the Kafka client's defaults

    def client_properties(self, *, producer: bool) -> dict[str, str]:
        """The clients' timeouts (`kafka_client_timeout_s`) as connector properties: a broker
        gone fails the task within about this long, never in a 60 s abort that Flink takes for
        a fatal TaskManager error."""
        if self.client_timeout_s <= 0:
            return {}
        ms = self.client_timeout_s * 1000
        opts = {"request.timeout.ms": ms, "default.api.timeout.ms": ms}
        if producer:  # delivery must cover a request and the linger
            opts = {"request.timeout.ms": ms, "max.block.ms": ms, "delivery.timeout.ms": 2 * ms}
        return {f"properties.{k}": str(v) for k, v in opts.items()}

    @classmethod
    def of(
        cls,
        settings: Settings,
        topic: str,
        *,
        prefix: str = "",
        bounded: bool = False,
        group_id: str = "wardflow",
    ) -> KafkaTable:
        return cls(
            prefix + topic, settings.kafka_bootstrap, bounded, group_id,
            settings.kafka_client_timeout_s,
        )  # fmt: skip


def _with(options: dict[str, str]) -> str:
    return ",\n  ".join(f"'{k}' = '{v}'" for k, v in options.items())


def raw_source_ddl(
    name: str,
    t: KafkaTable,
    *,
    watermark_delay_s: int,
    watermark_on_event: bool = False,
    idle_timeout_ms: int | None = None,
) -> str:
    """Undecoded records with Kafka metadata; the record timestamp (`codec.record_time`: the
    event time, or an ADT event's later recorded time) is the rowtime.

    Values stay bytes so that a record that does not decode reaches the dead-letter topic
    instead of failing the job. `idle_timeout_ms`: this table's own partition idle timeout
    (`scan.watermark.idle-timeout`, 0 = never); None leaves the job's
    (`table.exec.source.idle-timeout`).
    """
    opts = {
        "connector": "kafka",
        "topic": t.topic,
        "properties.bootstrap.servers": t.bootstrap,
        "properties.group.id": t.group_id,
        "properties.isolation.level": "read_committed",
        "scan.startup.mode": "earliest-offset",
        "format": "raw",
        **t.client_properties(producer=False),
    }
    if t.bounded:
        opts["scan.bounded.mode"] = "latest-offset"
    if watermark_on_event:  # a watermark after every record instead of every auto-interval
        opts["scan.watermark.emit.strategy"] = "on-event"
    if idle_timeout_ms is not None:
        opts["scan.watermark.idle-timeout"] = f"{idle_timeout_ms} ms"
    return f"""CREATE TEMPORARY TABLE `{name}` (
  `value` BYTES,
  `kafka_partition` INT METADATA FROM 'partition' VIRTUAL,
  `kafka_offset` BIGINT METADATA FROM 'offset' VIRTUAL,
  `kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  `kafka_ts_ms` AS {EPOCH_MS.format("`kafka_ts`")},
  WATERMARK FOR `kafka_ts` AS `kafka_ts` - INTERVAL '{watermark_delay_s}' SECOND
) WITH (
  {_with(opts)}
)"""


def avro_source_ddl(
    name: str, schema_topic: str, t: KafkaTable, *, rowtime: str, watermark_delay_s: int
) -> str:
    """Decoded by Flink's Java Avro format (no Python): used by the Java-only baseline job."""
    schema = registry_topic(schema_topic).schema
    opts = {
        "connector": "kafka",
        "topic": t.topic,
        "properties.bootstrap.servers": t.bootstrap,
        "properties.group.id": t.group_id,
        "scan.startup.mode": "earliest-offset",
        "format": "avro",
        **t.client_properties(producer=False),
    }
    if t.bounded:
        opts["scan.bounded.mode"] = "latest-offset"
    return f"""CREATE TEMPORARY TABLE `{name}` (
  {schema.flink_columns()},
  `kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp' VIRTUAL,
  WATERMARK FOR `{rowtime}` AS `{rowtime}` - INTERVAL '{watermark_delay_s}' SECOND
) WITH (
  {_with(opts)}
)"""


def avro_sink_ddl(
    name: str,
    schema_topic: str,
    t: KafkaTable,
    *,
    delivery: str = "at-least-once",
    transactional_id_prefix: str = "",
    transaction_timeout_s: int = 900,
) -> str:
    """A topic written in its registry schema's Avro encoding, keyed by the schema's key field,
    with the Kafka record timestamp taken from the `kafka_ts` column. Exactly-once sinks write in
    Kafka transactions committed when a checkpoint completes; their transactional id prefix must
    stay the same across restarts of the job (lingering transactions are aborted by it)."""
    reg = registry_topic(schema_topic)
    opts = {
        "connector": "kafka",
        "topic": t.topic,
        "properties.bootstrap.servers": t.bootstrap,
        "key.format": "raw",
        "key.fields": reg.key_field,
        "value.format": "avro",
        "value.fields-include": "ALL",
        "sink.delivery-guarantee": delivery,
        **t.client_properties(producer=True),
    }
    if delivery == "exactly-once":
        if not transactional_id_prefix:
            raise ValueError("an exactly-once sink needs a transactional id prefix")
        opts["sink.transactional-id-prefix"] = transactional_id_prefix
        opts["properties.transaction.timeout.ms"] = str(transaction_timeout_s * 1000)
    return f"""CREATE TEMPORARY TABLE `{name}` (
  {reg.schema.flink_columns()},
  `kafka_ts` TIMESTAMP_LTZ(3) METADATA FROM 'timestamp'
) WITH (
  {_with(opts)}
)"""


# Dead letters built in SQL from a raw source row (columns of raw_source_ddl).
DEAD_LETTER_ROW = topics.DEAD_LETTER.schema.flink_row()
PAYLOAD = "COALESCE(`value`, ENCODE('', 'UTF-8'))"


def on_time(rowtime: str) -> str:
    """Rows ahead of the watermark where the condition runs (or before the first one)."""
    return f"CURRENT_WATERMARK({rowtime}) IS NULL OR {rowtime} > CURRENT_WATERMARK({rowtime})"


def late(rowtime: str) -> str:
    """Rows at or behind the watermark where the condition runs: event-time windows drop them."""
    return f"{rowtime} <= CURRENT_WATERMARK({rowtime})"


ON_TIME = on_time("kafka_ts")
LATE = late("kafka_ts")
_LATE_REASON = (
    "CONCAT('event time ', CAST(kafka_ts AS STRING), ' is at or behind the watermark ', "
    "CAST(CURRENT_WATERMARK(kafka_ts) AS STRING))"
)


def dead_letter_sql(topic: str, stage: str, reason_code: str, reason: str) -> str:
    """A DEAD_LETTER_ROW expression over a raw source row (reason_code/reason: SQL expressions)."""
    return _dead_letter_row(f"'{topic}'", stage, reason_code, reason)


def _dead_letter_row(topic_sql: str, stage: str, reason_code: str, reason: str) -> str:
    meta = f"{topic_sql}, kafka_partition, kafka_offset, CAST(kafka_ts AS TIMESTAMP(3)), '{stage}'"
    ref = "CAST(NULL AS STRING)"  # payload_ref: a job's payloads are Kafka records, inline
    return f"CAST(ROW({meta}, {reason_code}, {reason}, {PAYLOAD}, {ref}) AS {DEAD_LETTER_ROW})"


def late_dead_letter_sql(topic: str, stage: str) -> str:
    return dead_letter_sql(topic, stage, "'late'", _LATE_REASON)


def merged_late_dead_letter_sql(stage: str) -> str:
    """A DEAD_LETTER_ROW expression (reason `late`) over a row of merged inputs that is behind
    their merged watermark: columns `topic`, `kafka_partition`, `kafka_offset`, `kafka_ts` (the
    rowtime) and `value` (the record's bytes). Only in a projection above the merging exchange
    (a filter on `late`, after an OVER window, keeps it there: see `merged_view`)."""
    return _dead_letter_row("topic", stage, "'late'", _MERGED_LATE_REASON)


_DUPLICATE_REASON = (
    "CONCAT('record id ', record_id, ' came before: this is copy ', CAST(copy_n AS STRING), "
    "' (a resend)')"
)
_MERGED_LATE_REASON = (
    "CONCAT('event time ', CAST(kafka_ts AS STRING), ' is at or behind the watermark ', "
    "CAST(CURRENT_WATERMARK(kafka_ts) AS STRING), ' of the job''s merged inputs')"
)


def rejected_sql(decoded: str, row: Row) -> str:
    """The rows of view `decoded` (a decode function's `row`, with the raw source's `value`,
    `kafka_partition`, `kafka_offset`, `kafka_ts`) to dead-letter, with those columns and
    `reason_code`, `reason`: each rejected record once (its record-level code), and, where the
    row has schemas.rows.REFUSED, each value an accepted record had refused alone once
    (schemas.codec, "Refused values": `value_out_of_range` / `value_not_a_number`, the reason
    naming that field, its value and range; a record with two refused values gives two). The
    record-level ones count records not processed (received = accepted + record-level dead
    letters); the value-level ones, values refused in records processed."""
    raw = "`value`, kafka_partition, kafka_offset, kafka_ts"
    if REFUSED[0].name not in row.columns:
        return f"SELECT reason_code, reason, {raw} FROM {decoded} WHERE reason_code IS NOT NULL"
    codes, reasons = (quote(f.name) for f in REFUSED)
    # a record with no refused value (a null array) joins no row; its own, if rejected, stays
    return f"""SELECT COALESCE(d.reason_code, v.code) AS reason_code,
               COALESCE(d.reason, d.{reasons}[v.k]) AS reason, {raw}
        FROM {decoded} AS d
        LEFT JOIN UNNEST(d.{codes}) WITH ORDINALITY AS v(code, k) ON TRUE
        WHERE d.reason_code IS NOT NULL OR v.code IS NOT NULL"""


def dead_letters_insert_sql(
    sink: str,
    sources: Mapping[str, Any],
    stage: str,
    refused: str | None = None,
    *,
    merged: str = "",
) -> str:
    """INSERT of every source's refused records (`<name>_rejected`: rejected records, and each
    refused value of accepted ones; or, given `refused`, a condition over `<name>_decoded`,
    the rows it holds) and late records (`<name>_late`) into the dead-letter sink: the views
    `decoded_views` made; with `merged` (a view `merged_view` made), also the merged records
    behind the merged watermark (reason `late`) and each later copy of a record (reason
    `duplicate`)."""
    dead = []
    for name, src in sources.items():
        rejected = dead_letter_sql(src.topic, stage, "reason_code", "reason")
        which = f"{name}_rejected" if refused is None else f"{name}_decoded WHERE {refused}"
        dead.append(f"SELECT {rejected} AS d, kafka_ts FROM {which}")
        late = late_dead_letter_sql(src.topic, stage)
        dead.append(f"SELECT {late} AS d, kafka_ts FROM {name}_late")
    if merged:
        late = merged_late_dead_letter_sql(stage)
        dead.append(f"SELECT {late} AS d, kafka_ts FROM {merged}_late")
        copy = _dead_letter_row("topic", stage, "'duplicate'", _DUPLICATE_REASON)
        dead.append(f"SELECT {copy} AS d, kafka_ts FROM {merged}_copies")
    return f"""
        INSERT INTO `{sink}`
        SELECT d.*, kafka_ts FROM ({" UNION ALL ".join(dead)})"""


def create_raw_source(
    t_env: Any,
    settings: Settings,
    name: str,
    topic: str,
    *,
    prefix: str,
    bounded: bool,
    group_id: str,
) -> None:
    src = KafkaTable.of(settings, topic, prefix=prefix, bounded=bounded, group_id=group_id)
    t_env.execute_sql(
        raw_source_ddl(
            name,
            src,
            watermark_delay_s=settings.max_out_of_orderness_s,
            watermark_on_event=settings.watermark_on_event,
            idle_timeout_ms=idle_timeout_ms(settings, registry_topic(topic)),
        )
    )


def idle_timeout_ms(settings: Settings, topic: topics.Topic) -> int | None:
    """A clinical-rate feed's own idle timeout (settings.sparse_idle_timeout_ms; 0 = never),
    None where the job's applies: a feed at device rate, or -1."""
    if topic.device_rate or settings.sparse_idle_timeout_ms < 0:
        return None
    return settings.sparse_idle_timeout_ms


def create_sinks(t_env: Any, settings: Settings, sinks: dict[str, str], *, prefix: str) -> None:
    """One Avro sink table per {table name: registry topic}, with the settings' delivery
    guarantee; transactional ids are the job name, topic prefix and table name."""
    for name, topic in sinks.items():
        t_env.execute_sql(
            avro_sink_ddl(
                name,
                topic,
                KafkaTable.of(settings, topic, prefix=prefix),
                delivery=settings.delivery_guarantee,
                transactional_id_prefix=f"{settings.job_name}.{prefix}{name}",
                transaction_timeout_s=settings.transaction_timeout_s,
            )
        )


def decoded_views(
    t_env: Any, name: str, schema_name: str, raw: str, *, lenient: bool = False
) -> None:
    """Views `<name>_late` (records at or behind the watermark), `<name>_decoded` (the rest,
    decoded and validated in the JVM by the function generated from the topic's schema,
    udfs/java_decode.py, with `reason_code` set where a record was refused, and
    `refused_codes` / `refused_reasons` where an accepted record had values refused alone) and
    `<name>_rejected` (what of those to dead-letter, `rejected_sql`: one row per rejected record
    and per refused value) over raw source table `raw`. `lenient`: a refused record that
    decoded keeps its values (the data-quality monitors count them); the other jobs must not
    use them."""
    from udfs import java_decode
    from udfs.flink import decoded_row

    row = decoded_row(schema_name)
    cols = row.column_list()
    function = f"wf_decode_{name}" + ("_lenient" if lenient else "")
    t_env.create_java_temporary_system_function(
        function, java_decode.function_class(schema_name, lenient=lenient)
    )
    t_env.create_temporary_view(
        f"{name}_late", t_env.sql_query(f"SELECT * FROM `{raw}` WHERE {LATE}")
    )
    t_env.create_temporary_view(
        f"{name}_decoded",
        t_env.sql_query(f"""
        SELECT d.*, r.`value`, r.kafka_partition, r.kafka_offset, r.kafka_ts
        FROM (SELECT * FROM `{raw}` WHERE {ON_TIME}) AS r,
             LATERAL TABLE({function}(r.`value`, r.kafka_ts)) AS d({cols})"""),
    )
    t_env.create_temporary_view(
        f"{name}_rejected", t_env.sql_query(rejected_sql(f"{name}_decoded", row))
    )


MERGED_COLUMNS = ("topic", "record_id", "kafka_partition", "kafka_offset", "kafka_ts", "value")


def merged_late_views(
    t_env: Any,
    name: str,
    union_sql: str,
    *,
    key: str,
    rowtime: str,
    columns: str,
    aggregates: dict[str, str] | None = None,
) -> None:
    """Views over `union_sql` (the accepted records of several sources, one shape, `rowtime`
    their rowtime), after the exchange that merges them on `key` (the key of the event-time
    windows that read them):

    - `<name>_arrived`: each row with `arrived_n`, how many rows of its key came so far, by a
      processing-time `ROWS` OVER window (one counter per key, kept for the state TTL; it
      emits at once and keeps the rowtime), and `aggregates` (column → an aggregate call) over
      the same window; the event-time windows on the same key read its output without another
      exchange;
    - `<name>`: `columns` of the rows on time for the merged watermark;
    - `<name>_late`: every column of the rows behind it, which event-time windows would drop
      without a trace; dead-letter them (`merged_late_dead_letter_sql`).

    The late check of each source (`decoded_views`) sees only that source's watermark; why that
    misses records that are late for the merged one, and why the check is written as filters
    after an OVER window, is told at `merged_view`. Not numbered per record: this is for a job
    whose windows take a resend as it is (the screening job's states are idempotent)."""
    more = "".join(f", {call} OVER w AS {c}" for c, call in (aggregates or {}).items())
    t_env.create_temporary_view(
        f"{name}_arrived",
        t_env.sql_query(f"""
        SELECT *, COUNT(*) OVER w AS arrived_n{more}
        FROM (SELECT *, PROCTIME() AS arrival FROM ({union_sql}))
        WINDOW w AS (PARTITION BY {key} ORDER BY arrival
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""),
    )
    t_env.create_temporary_view(
        name,
        t_env.sql_query(f"SELECT {columns} FROM {name}_arrived WHERE {on_time(rowtime)}"),
    )
    t_env.create_temporary_view(
        f"{name}_late",
        t_env.sql_query(f"SELECT * FROM {name}_arrived WHERE {late(rowtime)}"),
    )


def merged_view(t_env: Any, name: str, union_sql: str, columns: str, kept: str = "TRUE") -> None:
    """Views over `union_sql`, the accepted records of several sources as rows of one shape with
    `MERGED_COLUMNS` (`kafka_ts` the rowtime), after the exchange that merges them:

    - `<name>_numbered`: each row with `copy_n`, which copy of its (topic, record id) it is, in
      arrival order (1: the first; 2 and on: a resend; an HL7 message sent again after a lost ACK
      keeps its event ids), by a processing-time `ROWS` OVER window per id: it emits at once,
      keeps the rowtime and holds one counter per id for the job's state TTL
      (`table.exec.state.ttl`; a copy later than that counts as a first);
    - `<name>`: `columns` (SQL over those rows) of each first copy that is on time for the
      merged watermark and `kept` (a condition: what the job reads of what it numbers);
    - `<name>_any_time`: the same, late or not (for what needs no event-time order);
    - `<name>_late` and `<name>_copies`: the `kept` rows behind the merged watermark, and the
      later copies of the rest, which `dead_letters_insert_sql(merged=name)` dead-letters
      (`late`, `duplicate`); a row the job does not read is neither.

    Why here and not per source: a source's late check (`decoded_views`) sees only its own
    watermark. The event-time windows after a union see the least watermark of the sources
    still active; a source idle for `sparse_idle_timeout_ms` (an ADT feed at night) is left
    out of it, so a record it sends after that can be behind the merged watermark while ahead
    of its own, and the windows would drop it without a trace. The filter here runs after the
    merging exchange, on the merged watermark (Flink does not move a filter below an OVER
    window), and the late ones are dead-lettered (`dead_letters_insert_sql(merged=name)`). A
    projection of `CURRENT_WATERMARK` would be moved below the union: keep it in filters."""
    t_env.create_temporary_view(
        f"{name}_numbered",
        t_env.sql_query(f"""
        SELECT *, COUNT(*) OVER (
               PARTITION BY topic, record_id ORDER BY arrival
               ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS copy_n
        FROM (SELECT *, PROCTIME() AS arrival FROM ({union_sql}))"""),
    )
    t_env.create_temporary_view(
        name,
        t_env.sql_query(f"""
        SELECT {columns} FROM {name}_numbered
        WHERE copy_n = 1 AND ({kept}) AND ({ON_TIME})"""),
    )
    t_env.create_temporary_view(
        f"{name}_any_time",
        t_env.sql_query(f"SELECT {columns} FROM {name}_numbered WHERE copy_n = 1 AND ({kept})"),
    )
    t_env.create_temporary_view(
        f"{name}_late", t_env.sql_query(f"SELECT * FROM {name}_numbered WHERE ({kept}) AND {LATE}")
    )
    t_env.create_temporary_view(
        f"{name}_copies",
        t_env.sql_query(f"""
        SELECT * FROM {name}_numbered WHERE copy_n > 1 AND ({kept}) AND ({ON_TIME})"""),
    )
