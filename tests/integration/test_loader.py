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
    # a loader started after a crash between its insert and its commit resumes past the dead-
    # lettered record, the batch's last (it was inserted again, and counted twice by the rollup)
    again = loader.Loader(settings, clickhouse, prefix=prefix)
    assert again.loaded_offsets(prefix + topics.ALERT_V1.name) == {0: 2}
    again.close()
    clickhouse.command(f"DROP DATABASE {db}")
