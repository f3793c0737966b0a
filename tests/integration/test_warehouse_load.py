"""Loading is effectively once: the loader resumes after the offsets ClickHouse holds, so the
rollups that materialized views keep from its inserts count every record once, even when a
loader with another consumer group (or no committed offsets) reads the topics again."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs.runtime import kafka_io
from schemas import codec, load_schema, topics
from schemas.settings import Settings
from sinks import clickhouse as ch
from sinks import loader

pytestmark = pytest.mark.integration
TOPICS = {t: loader.TABLES[t] for t in (topics.SEPSIS_SCORE.name, topics.ALERT_RESPONSE.name)}


def _score(i: int, t0: datetime) -> dict[str, Any]:
    risk = (i % 20) / 20 + 0.01
    return {
        "score_id": f"s{i}",
        "record_id": f"r{i}",
        "patient_token": f"p{i % 7}",
        "facility_id": "F01",
        "unit_id": "ICU",
        "event_time": t0 + timedelta(minutes=i),
        "model_name": "sepsis-risk",
        "model_version": "3",
        "role": "champion",
        "risk": risk,
        "threshold": 0.3,
        "above_threshold": risk >= 0.3,
        "features_missing": 0,
        "scoring_latency_ms": 2.0,
    }


def _response(i: int, t0: datetime) -> dict[str, Any]:
    return {
        "response_id": f"x{i}",
        "alert_id": f"a{i}",
        "action": "acknowledge",
        "actor_role": "nurse",
        "patient_token": f"p{i % 7}",
        "facility_id": "F01",
        "unit_id": "ICU",
        "event_time": t0 + timedelta(minutes=i),
        "source": "paging",
    }


def _produce(settings: Settings, prefix: str, lo: int, hi: int) -> None:
    t0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
    p = kafka_io.producer(settings)
    for i in range(lo, hi):
        for topic, make in (
            (topics.SEPSIS_SCORE.name, _score),
            (topics.ALERT_RESPONSE.name, _response),
        ):
            rec = make(i, t0)
            p.produce(
                prefix + topic,
                key=rec["patient_token"].encode(),
                value=codec.encode(load_schema(topic), rec),
                partition=i % 3,
            )
    p.flush_or_raise(30)


def _load(settings: Settings, client: Any, prefix: str, group: str) -> loader.LoadStats:
    ld = loader.Loader(settings, client, prefix=prefix, topics=TOPICS, group_id=group)
    try:
        return ld.drain()
    finally:
        ld.close()


def test_a_second_loader_of_the_same_topics_loads_nothing_twice_and_rollups_stay_exact(
    kafka: Settings, clickhouse: Any
) -> None:
    prefix = f"wl-{uuid.uuid4().hex[:8]}."
    settings = dataclasses.replace(kafka, clickhouse_database=kafka.clickhouse_database + "_wl")
    db = settings.clickhouse_database
    ch.migrate(clickhouse, db)
    kafka_io.ensure_topics(settings, [*TOPICS, topics.DEAD_LETTER.name], prefix=prefix)

    def totals() -> list[tuple[Any, ...]]:
        return clickhouse.query(
            f"SELECT (SELECT sum(scored) FROM {db}.score_minute), "
            f"(SELECT sum(above_threshold) FROM {db}.score_minute), "
            f"(SELECT count() FROM {db}.model_scores), (SELECT count() FROM {db}.alert_responses)"
        ).result_rows

    _produce(settings, prefix, 0, 300)
    first = _load(settings, clickhouse, prefix, "group-a")
    assert first.rows == {f"{db}.model_scores": 300, f"{db}.alert_responses": 300}
    above = sum(_score(i, datetime.now(UTC))["above_threshold"] for i in range(300))
    assert totals() == [(300, above, 300, 300)]

    again = _load(settings, clickhouse, prefix, "group-b")  # no committed offsets of its own
    assert again.rows == {}
    assert totals() == [(300, above, 300, 300)]

    _produce(settings, prefix, 300, 400)
    more = _load(settings, clickhouse, prefix, "group-c")
    assert more.rows == {f"{db}.model_scores": 100, f"{db}.alert_responses": 100}
    above = sum(_score(i, datetime.now(UTC))["above_threshold"] for i in range(400))
    assert totals() == [(400, above, 400, 400)]
    assert clickhouse.query(
        f"SELECT count() FROM {db}.model_scores WHERE kafka_topic = %(t)s",
        parameters={"t": prefix + topics.SEPSIS_SCORE.name},
    ).result_rows == [(400,)]
    clickhouse.command(f"DROP DATABASE {db}")
