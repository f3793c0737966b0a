"""The Kafka → ClickHouse loader keeps a record it cannot decode, as a dead letter with a reason."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.settings import Settings
from sinks import clickhouse as ch
from sinks import loader

pytestmark = pytest.mark.integration


def test_an_undecodable_record_on_a_loaded_topic_becomes_a_dead_letter_row(
    kafka: Settings, clickhouse: Any
) -> None:
    prefix = f"ld-{uuid.uuid4().hex[:8]}."
    # A database of its own, so the spine tests' tables hold only the spine's rows.
    settings = dataclasses.replace(kafka, clickhouse_database=kafka.clickhouse_database + "_ld")
    ch.migrate(clickhouse, settings.clickhouse_database)
    kafka_io.ensure_topics(kafka, list(loader.TABLES), prefix=prefix)
    t = datetime(2026, 1, 5, 8, tzinfo=UTC)
    alert = {f: "x" for f in topics.ALERT_V1.schema.field_names} | {
        "alert_id": f"{prefix}a1",
        "first_event_time": t,
        "last_event_time": t,
        "reading_count": 2,
        "score_first": 5,
        "score_last": 6,
        "score_max": 6,
    }
    p = kafka_io.producer(kafka)
    p.produce(
        prefix + topics.ALERT_V1.name, key=b"x", value=codec.encode(topics.ALERT_V1.schema, alert)
    )
    p.produce(prefix + topics.ALERT_V1.name, key=b"x", value=b"\x07 not an alert")
    p.flush_or_raise(30)

    ld = loader.Loader(settings, clickhouse, prefix=prefix)
    stats = ld.drain()
    ld.close()

    db = settings.clickhouse_database
    assert stats.dead_lettered == {prefix + topics.ALERT_V1.name: 1}
    assert clickhouse.query(
        f"SELECT count() FROM {db}.alerts WHERE alert_id = %(a)s", parameters={"a": f"{prefix}a1"}
    ).result_rows == [(1,)]
    rows = clickhouse.query(
        f"SELECT stage, reason_code, payload FROM {db}.dead_letters WHERE source_topic = %(t)s",
        parameters={"t": prefix + topics.ALERT_V1.name},
    ).result_rows
    assert [(s, c) for s, c, _ in rows] == [(loader.STAGE, "undecodable")]
    assert "not an alert" in rows[0][2]
    # a loader started after a crash between its inserts and its commit resumes after the
    # topic's own rows: the dead-lettered record, the batch's last, is read again (its letter,
    # in already, is not written again: `lettered_offsets`)
    again = loader.Loader(settings, clickhouse, prefix=prefix)
    assert again.loaded_offsets(prefix + topics.ALERT_V1.name) == {0: 1}
    again.close()
    clickhouse.command(f"DROP DATABASE {db}")


class CrashingInsert:
    """The real ClickHouse client, but the process dies (an exception) at its first insert into
    `table`: what a crash between a batch's inserts leaves behind."""

    def __init__(self, client: Any, table: str) -> None:
        self.client, self.table, self.crashed = client, table, False

    def insert(self, table: str, *args: Any, **kw: Any) -> Any:
        if table.endswith("." + self.table) and not self.crashed:
            self.crashed = True
            raise ConnectionError("the loader died here")
        return self.client.insert(table, *args, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def score(prefix: str, i: int, value: float) -> dict[str, Any]:
    t = datetime(2026, 1, 5, 8, i, tzinfo=UTC)
    return {
        "score_id": f"{prefix}s{i}", "record_id": f"r{i}", "entity": "icu_stay",
        "entity_token": "e", "patient_token": "p", "facility_id": "F", "unit_id": "ICU",
        "event_time": t, "hours_since_admission": 1.0, "model_name": "icu-mortality",
        "model_version": "v1", "role": "champion", "output_name": "p_death", "score": value,
        "output_unit": None, "threshold": 0.5, "above_threshold": value >= 0.5,
        "features_missing": 0, "scoring_latency_ms": 1.0, "trigger": "state",
    }  # fmt: skip


def test_a_crash_between_a_batchs_inserts_loses_no_row_and_a_score_not_finite_is_a_dead_letter(
    kafka: Settings, clickhouse: Any
) -> None:
    """Ten catalog scores, the fourth NaN and the last infinite (dead-lettered `not_a_number`:
    NaN landed in the histogram's top bin, infinity failed its view's insert); the loader dies
    at the scores' insert, after the dead letters': a loader started again loads the eight
    finite scores (it resumed past them, from the dead letters' offsets, and lost them) and
    writes no letter twice."""
    prefix = f"ld-{uuid.uuid4().hex[:8]}."
    settings = dataclasses.replace(kafka, clickhouse_database=kafka.clickhouse_database + "_lc")
    ch.migrate(clickhouse, settings.clickhouse_database)
    kafka_io.ensure_topics(kafka, list(loader.TABLES), prefix=prefix)
    topic = prefix + topics.MODEL_SCORE.name
    p = kafka_io.producer(kafka)
    values = [0.1, 0.2, 0.3, float("nan"), 0.5, 0.6, 0.7, 0.8, 0.9, float("inf")]
    for i, v in enumerate(values):
        p.produce(
            topic, key=b"e", value=codec.encode(topics.MODEL_SCORE.schema, score(prefix, i, v))
        )
    p.flush_or_raise(30)
    db = settings.clickhouse_database

    crashing = loader.Loader(settings, CrashingInsert(clickhouse, "catalog_scores"), prefix=prefix)
    with pytest.raises(ConnectionError):
        crashing.drain()
    crashing.close()
    ld = loader.Loader(settings, clickhouse, prefix=prefix)
    ld.drain()
    ld.close()

    loaded = clickhouse.query(
        f"SELECT score FROM {db}.catalog_scores FINAL WHERE kafka_topic = %(t)s ORDER BY score",
        parameters={"t": topic},
    ).result_rows
    assert [v for (v,) in loaded] == [v for v in values if v == v and v != float("inf")]
    letters = clickhouse.query(
        f"SELECT kafka_offset, reason_code FROM {db}.dead_letters FINAL "
        "WHERE source_topic = %(t)s ORDER BY kafka_offset",
        parameters={"t": topic},
    ).result_rows
    assert letters == [(3, "not_a_number"), (9, "not_a_number")]
    # the letters went in once: the per-minute rollup counted the batch's letters twice
    (rollup,) = clickhouse.query(
        f"SELECT sum(records) FROM {db}.dead_letter_minute WHERE source_topic = %(t)s",
        parameters={"t": topic},
    ).result_rows[0]
    assert rollup == 2
    clickhouse.command(f"DROP DATABASE {db}")
