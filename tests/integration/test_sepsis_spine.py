"""The spine end to end on real parts: Kafka broker → PyFlink MiniCluster → Kafka → ClickHouse,
on a few hundred real PhysioNet patients plus a handful of bad records."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pandas as pd
import pytest

from jobs import sepsis_news2
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.settings import Settings
from sinks.loader import Loader
from tests import reference

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 300


@dataclass
class SpineRun:
    prefix: str
    observations: list[dict[str, Any]]
    bad: dict[str, str]  # label -> expected reason_code
    received: int
    settings: Settings
    ch: Any
    database: str


@pytest.fixture(scope="module")
def spine(kafka: Settings, clickhouse: Any) -> SpineRun:
    settings = kafka
    prefix = f"it-{uuid.uuid4().hex[:8]}."
    topic = prefix + topics.VITALS_OBSERVATION.name
    kafka_io.ensure_topics(
        settings, sepsis_news2.JOB.input_topics + sepsis_news2.JOB.output_topics, prefix=prefix
    )
    plan = replay.ReplayPlan(patients=PATIENTS)
    df, source = replay.load_physionet(None, settings)
    obs = replay.observations(replay.select_patients(df, plan), plan, settings.phi_key, source)
    n = replay.produce(settings, iter(obs), topic=topic, progress=False)

    mid = obs[len(obs) // 2]
    bad = reference.bad_observations(mid)
    p = kafka_io.producer(settings)
    for _, _, value, ts in bad:
        replay.produce_raw(p, topic, mid["patient_token"].encode(), value, ts)
    p.flush_or_raise(30)

    sepsis_news2.JOB.run(settings, prefix=prefix, bounded=True)
    loader = Loader(settings, clickhouse, prefix=prefix)
    loader.drain()
    loader.close()
    return SpineRun(
        prefix,
        obs,
        {label: code for label, code, _, _ in bad},
        n + len(bad),
        settings,
        clickhouse,
        settings.clickhouse_database,
    )


def _topic(run: SpineRun, name: str) -> list[dict[str, Any]]:
    return kafka_io.read_records(run.settings, run.prefix + name, name)


def test_received_equals_processed_plus_dead_lettered(spine: SpineRun) -> None:
    received = kafka_io.count_records(spine.settings, spine.prefix + topics.VITALS_OBSERVATION.name)
    processed = kafka_io.count_records(spine.settings, spine.prefix + topics.VITALS_NEWS2.name)
    letters = _topic(spine, topics.DEAD_LETTER.name)
    # a value refused alone (schemas.codec) is dead-lettered beside its processed record
    dead = sum(d["reason_code"] not in codec.VALUE_CODES.values() for d in letters)
    assert received == spine.received
    assert processed + dead == received
    assert dead >= len(spine.bad)


def test_each_bad_record_is_dead_lettered_with_its_reason(spine: SpineRun) -> None:
    dead = _topic(spine, topics.DEAD_LETTER.name)
    reasons = [d["reason_code"] for d in dead]
    ref_scored, _ = reference.run(spine.observations)
    real_rejects = len(spine.observations) - len(ref_scored)
    refused = int(reference.refused_values(pd.DataFrame(spine.observations)).sum())
    assert reasons.count("value_out_of_range") == refused
    for code in set(spine.bad.values()):
        expected = sum(1 for c in spine.bad.values() if c == code)
        if code == "out_of_range":
            expected += real_rejects
        assert reasons.count(code) == expected, code
    assert all(d["stage"] == sepsis_news2.STAGE and d["reason"] for d in dead)
    assert all(d["source_topic"] == spine.prefix + topics.VITALS_OBSERVATION.name for d in dead)


def test_news2_of_every_accepted_reading_equals_the_reference(spine: SpineRun) -> None:
    ref, _ = reference.run(spine.observations)
    got = pd.DataFrame(_topic(spine, topics.VITALS_NEWS2.name)).set_index("observation_id")
    want = ref.set_index("observation_id")
    assert sorted(got.index) == sorted(want.index)
    cols = ["news2_score", "news2_params_scored", "news2_red_flag"]
    pd.testing.assert_frame_equal(
        got.loc[want.index, cols].astype("int64"), want[cols].astype("int64")
    )


def test_alerts_on_kafka_equal_the_offline_reference(spine: SpineRun) -> None:
    _, ref_alerts = reference.run(spine.observations)
    got = _topic(spine, topics.ALERT_V1.name)
    assert len(ref_alerts) > 20, "the sample must exercise the rule"
    pd.testing.assert_frame_equal(reference.norm_alerts(got), reference.norm_alerts(ref_alerts))


def test_alerts_in_clickhouse_equal_the_offline_reference(spine: SpineRun) -> None:
    _, ref_alerts = reference.run(spine.observations)
    q = spine.ch.query(f"SELECT * FROM {spine.database}.alerts FINAL")
    rows = [dict(zip(q.column_names, r, strict=True)) for r in q.result_rows]
    pd.testing.assert_frame_equal(reference.norm_alerts(rows), reference.norm_alerts(ref_alerts))


def test_reloading_the_topics_into_clickhouse_loads_nothing_twice(spine: SpineRun) -> None:
    def counts(final: str) -> tuple[int, int]:
        q = (
            f"SELECT (SELECT count() FROM {spine.database}.vitals_news2 {final}), "
            f"(SELECT count() FROM {spine.database}.alerts {final})"
        )
        return tuple(spine.ch.query(q).result_rows[0])  # type: ignore[return-value]

    before = counts("FINAL")
    again = Loader(spine.settings, spine.ch, prefix=spine.prefix, group_id="reload-everything")
    again.drain()
    again.close()
    # Another consumer group resumes after the offsets ClickHouse already holds.
    assert again.stats.rows == {}
    assert counts("") == before
    assert counts("FINAL") == before
    assert before[0] == len(reference.run(spine.observations)[0])


def test_alert_timestamps_are_event_times_within_the_replayed_span(spine: SpineRun) -> None:
    first = min(o["event_time"] for o in spine.observations)
    last = max(o["event_time"] for o in spine.observations)
    for a in _topic(spine, topics.ALERT_V1.name):
        assert first <= a["first_event_time"] < a["last_event_time"] <= last
        assert a["last_event_time"] - a["first_event_time"] < timedelta(hours=3)
