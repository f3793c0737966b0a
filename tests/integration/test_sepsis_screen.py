"""The screening job on real parts and real patients: vitals, labs and ADT from a few hundred
PhysioNet 2019 patients → Kafka → PyFlink → Kafka, checked against the offline reference."""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pytest

from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from jobs.screening import rules as sepsis_rules
from schemas import codec, load_schema, topics
from schemas.settings import Settings
from sinks.explain import explain
from sinks.loader import TABLES, Loader
from tests import reference_screen as ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 300


@dataclass
class ScreenRun:
    prefix: str
    items: list[tuple[str, dict[str, Any]]]
    settings: Settings
    rows: list[ref.Row]
    events: list[dict[str, Any]]

    def topic(self, name: str) -> list[dict[str, Any]]:
        return kafka_io.read_records(self.settings, self.prefix + name, name)


@pytest.fixture(scope="module")
def screened(kafka: Settings) -> ScreenRun:
    prefix = f"it-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(
        kafka, sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics, prefix=prefix
    )
    plan = replay.ReplayPlan(patients=PATIENTS)
    df, source = replay.load_physionet(None, kafka)
    items = replay.clinical_stream(replay.select_patients(df, plan), plan, kafka.phi_key, source)
    replay.produce_stream(kafka, items, prefix=prefix, progress=False)
    sepsis_screen.JOB.run(kafka, prefix=prefix, bounded=True)
    rows, events = ref.run(items)
    return ScreenRun(prefix, items, kafka, rows, events)


def test_every_record_of_every_input_topic_is_screened_or_dead_lettered(
    screened: ScreenRun,
) -> None:
    received = sum(
        kafka_io.count_records(screened.settings, screened.prefix + t)
        for t in sepsis_screen.JOB.input_topics
    )
    out = kafka_io.count_records(screened.settings, screened.prefix + topics.SEPSIS_SCREEN.name)
    dead = screened.topic(topics.DEAD_LETTER.name)
    assert received == len(screened.items)
    # a value refused alone (schemas.codec) dead-letters the value, its record screened
    record_level = [d for d in dead if d["reason_code"] not in codec.VALUE_CODES.values()]
    assert out + len(record_level) == received
    assert out == len(screened.rows)
    # real FiO2 of 0 or 10: refused alone, or the record whole where it was its only value
    assert {d["reason_code"] for d in dead} <= {"out_of_range", "value_out_of_range"}


def test_screened_states_equal_the_offline_reference(screened: ScreenRun) -> None:
    ref.assert_states_equal(screened.topic(topics.SEPSIS_SCREEN.name), screened.rows)


def test_alert_lifecycle_events_equal_the_offline_reference(screened: ScreenRun) -> None:
    want = screened.events
    actions = Counter((e["rule_id"], e["action"]) for e in want)
    assert all(actions[(r.rule_id, "raise")] > 0 for r in sepsis_rules.RULES), actions
    assert actions[("news2_sustained_medium", "escalate")] > 0
    ref.assert_events_equal(screened.topic(topics.ALERT_V2.name), want)


def test_every_alert_opens_once_and_closes_once(screened: ScreenRun) -> None:
    by_alert: dict[str, list[dict[str, Any]]] = {}
    for e in screened.topic(topics.ALERT_V2.name):
        by_alert.setdefault(e["alert_id"], []).append(e)
    for events in by_alert.values():
        events.sort(key=lambda e: e["sequence"])
        actions = [e["action"] for e in events]
        assert actions[0] == "raise" and actions[-1] == "resolve"
        assert set(actions[1:-1]) <= {"escalate"}
        assert [e["sequence"] for e in events] == list(range(1, len(events) + 1))
        assert events[-1]["resolve_reason"] in {"condition_cleared", "discharged"}
        assert all(e["opened_time"] <= e["event_time"] for e in events)


def test_screen_and_alert_lifecycle_load_into_clickhouse_idempotently(
    screened: ScreenRun, clickhouse: Any
) -> None:
    db = screened.settings.clickhouse_database
    topic_names = {
        t: TABLES[t]
        for t in (topics.SEPSIS_SCREEN.name, topics.ALERT_V2.name, topics.DEAD_LETTER.name)
    }
    for group in ("first", "again"):
        loader = Loader(
            screened.settings,
            clickhouse,
            prefix=screened.prefix,
            topics=topic_names,
            group_id=f"screen-{group}",
        )
        loader.drain()
        loader.close()

    def count(table: str) -> int:
        return int(clickhouse.query(f"SELECT count() FROM {db}.{table} FINAL").result_rows[0][0])

    assert count("sepsis_screen") == len(screened.rows)
    assert count("alert_events") == len(screened.events)
    open_now = clickhouse.query(f"""
        SELECT count() FROM (
          SELECT alert_id, argMax(action, sequence) AS state FROM {db}.alert_events FINAL
          GROUP BY alert_id) WHERE state != 'resolve'""").result_rows[0][0]
    assert open_now == 0  # a bounded run ends with every alert resolved


def test_alerts_carry_rule_version_and_the_triggering_values_with_their_times(
    screened: ScreenRun,
) -> None:
    versions = {r.rule_id: r.version for r in sepsis_rules.RULES}
    for e in screened.topic(topics.ALERT_V2.name):
        assert e["rule_version"] == versions[e["rule_id"]]
        assert e["patient_token"] and e["unit_id"] and e["facility_id"] == replay.FACILITY
        evidence = json.loads(e["evidence_json"])
        assert evidence, e
        for k, v in evidence.items():
            if k.endswith("_measured_time"):
                assert pd.Timestamp(v) <= pd.Timestamp(e["event_time"])
            else:
                assert f"{k}_measured_time" in evidence


def test_every_alert_traces_to_its_rule_version_inputs_and_their_offsets(
    screened: ScreenRun, clickhouse: Any
) -> None:
    db = screened.settings.clickhouse_database
    topic_names = {t: TABLES[t] for t in (topics.SEPSIS_SCREEN.name, topics.ALERT_V2.name)}
    loader = Loader(
        screened.settings, clickhouse, prefix=screened.prefix, topics=topic_names, group_id="audit"
    )
    loader.drain()
    loader.close()
    where: dict[str, tuple[str, int, int]] = {}  # input record id -> its Kafka location
    for topic in sepsis_screen.JOB.input_topics:
        schema = load_schema(topic)
        id_field = schema.field_names[0]
        for m in kafka_io.read_all(screened.settings, screened.prefix + topic):
            rec = codec.decode(schema, m.value)
            assert isinstance(rec, dict)
            where[rec[id_field]] = (screened.prefix + topic, m.partition, m.offset)
    raises = [e for e in screened.events if e["action"] == "raise"]
    for e in raises[:: max(1, len(raises) // 25)]:  # a sample across rules
        rows = clickhouse.query(
            f"""SELECT input_record_id, pattern_end, source_topic, source_partition,
                       source_offset, rule_version
                FROM {db}.alert_audit WHERE alert_event_id = %(a)s""",
            parameters={"a": e["alert_event_id"]},
        ).result_rows
        inputs = {r[0] for r in rows}
        assert {e["first_record_id"], e["last_record_id"]} <= inputs
        assert {r[0] for r in rows if r[1]} == {e["first_record_id"], e["last_record_id"]}
        for record, _, topic, part, offset, version in rows:
            assert (topic, part, offset) == where[record]
            assert version == e["rule_version"]
    text = explain(clickhouse, db, raises[0]["alert_id"])
    assert f"rule {raises[0]['rule_id']} v{raises[0]['rule_version']}" in text
    first = where[raises[0]["first_record_id"]]
    assert f"{first[0]}[{first[1]}]@{first[2]}" in text
