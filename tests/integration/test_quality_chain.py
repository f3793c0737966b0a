"""The data-quality chain over the real Kafka broker, as it runs deployed: real set A records of
two units go to the topics with a monitor firmware fault on one of them (temperatures in °F for
four hours); the data-quality job, reading and writing Kafka, raises the unit-conversion
quarantine of temp_c and its clear on quality.event.v1; the quarantine actuator applies them
from committed records to the registry; the screening job, reading the same topics with that
registry, marks the unit's records in the quarantined interval that carried a temperature (one in
°F is out of range: a dead letter) and no other, uses none of its temperatures but its other
values (heart rates and the rest), and still accounts for every record (a screened state or a
dead letter)."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator
from typing import Any

import pandas as pd
import pytest

from jobs import data_quality, sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from sinks.quarantine import Actuator
from tests import quality_faults as qf
from udfs.quarantine import QuarantineRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_UNIT, HOURS = 30, 12
UNIT, FAULT_H = "MICU", (4.0, 8.0)
VITALS = topics.VITALS_OBSERVATION.name


@pytest.fixture(scope="module")
def chain(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not kafka.physionet_setA.exists():
        pytest.skip(f"PhysioNet 2019 set A is not at {kafka.physionet_setA}")
    s = dataclasses.replace(
        kafka,
        quality_window_min=60,  # PhysioNet charting is hourly
        quarantine_registry=tmp_path_factory.mktemp("quarantine"),
    )
    prefix = f"qc-{uuid.uuid4().hex[:8]}."
    jobs = (data_quality.JOB, sepsis_screen.JOB)
    names = sorted({t for j in jobs for t in (*j.input_topics, *j.output_topics)})
    kafka_io.ensure_topics(s, names, prefix=prefix)
    df = qf.patients_by_unit(pd.read_parquet(s.physionet_setA), PER_UNIT, HOURS, ("MICU", "SICU"))
    faulted = qf.replay_with_faults(df, s.require_phi_key(), fahrenheit=(UNIT, FAULT_H))
    items = [(t, r) for t, recs in faulted.records.items() for r in recs]
    items.sort(key=lambda tr: tr[1]["event_time"])
    replay.produce_stream(s, items, prefix=prefix, progress=False)
    try:
        data_quality.JOB.run(s, prefix=prefix, bounded=True)
        registry = QuarantineRegistry.of(s)
        actuator = Actuator(s, registry, prefix=prefix)
        try:
            applied = actuator.drain().applied
        finally:
            actuator.close()
        sepsis_screen.JOB.run(s, prefix=prefix, bounded=True)

        def read(t: topics.Topic) -> list[dict[str, Any]]:
            return kafka_io.read_records(s, prefix + t.name, t.name)

        yield {
            "faulted": faulted,
            "items": items,
            "events": read(topics.QUALITY_EVENT),
            "applied": applied,
            "quarantines": registry.all(),
            "states": read(topics.SEPSIS_SCREEN),
            "dead_letters": read(topics.DEAD_LETTER),
        }
    finally:
        kafka_io.delete_topics(s, names, prefix=prefix)


def _hours(t: Any, start: Any) -> float:
    return float((pd.Timestamp(t) - pd.Timestamp(start)) / pd.Timedelta(hours=1))


def test_the_job_on_kafka_raises_the_units_quarantine_and_its_clear_and_no_other_action(
    chain: dict[str, Any],
) -> None:
    acting = [e for e in chain["events"] if e["action"] is not None]
    assert chain["faulted"].fahrenheit > 10
    assert [(e["monitor"], e["action"], e["source_topic"], e["unit_id"]) for e in acting] == [
        ("unit_conversion", "quarantine", VITALS, UNIT),
        ("unit_conversion", "clear", VITALS, UNIT),
    ]
    start = chain["faulted"].start
    opened, cleared = acting
    assert _hours(opened["window_start"], start) == pytest.approx(FAULT_H[0], abs=1)
    assert _hours(cleared["window_start"], start) == pytest.approx(FAULT_H[1], abs=1)


def test_the_actuator_applies_the_committed_events_to_the_registry(chain: dict[str, Any]) -> None:
    opened, cleared = [e for e in chain["events"] if e["action"] is not None]
    assert chain["applied"]["set"] == 1 and chain["applied"]["clear"] == 1
    (q,) = chain["quarantines"]
    key = (VITALS, replay.FACILITY, UNIT, "temp_c")
    assert (q.source_topic, q.facility_id, q.unit_id, q.parameter) == key
    assert (q.set_event_id, q.clear_event_id) == (opened["event_id"], cleared["event_id"])
    assert pd.Timestamp(q.since) == pd.Timestamp(opened["window_start"])
    assert pd.Timestamp(q.until) == pd.Timestamp(cleared["window_start"])


def test_the_screening_job_marks_the_quarantined_records_and_uses_their_values_but_temp_c(
    chain: dict[str, Any],
) -> None:
    (q,) = chain["quarantines"]
    since, until = pd.Timestamp(q.since), pd.Timestamp(q.until)
    in_window = [
        r
        for t, r in chain["items"]
        if t == VITALS and r["unit_id"] == UNIT and since <= pd.Timestamp(r["event_time"]) < until
    ]
    # a record is marked when it carried a value the quarantine ignores: a temperature
    quarantined = {r["observation_id"] for r in in_window if r["temp_c"] is not None}
    without_temp = {r["observation_id"] for r in in_window if r["temp_c"] is None}
    states = {s["record_id"]: s for s in chain["states"]}
    letters = [d for d in chain["dead_letters"] if d["stage"] != data_quality.STAGE]
    assert len(states) + len(letters) == len(chain["items"])  # every record, once
    # a temperature in °F is out of range: its record is a dead letter before the check
    refused = [
        d
        for d in letters
        if d["source_topic"].endswith(VITALS) and d["reason_code"] == "out_of_range"
    ]
    assert len(quarantined - states.keys()) <= len(refused)
    marked = [states[r] for r in quarantined if r in states]
    for state in marked:
        marker = json.loads(state["quarantine_json"])
        assert marker["quarantine"]["parameters"] == ["temp_c"]
        [note] = marker["quarantine"]["quarantines"]
        assert note["event_id"] == q.set_event_id
        # its own temperature is not the state's
        assert state["temp_c_measured_time"] != state["event_time"]
    # a record of the window without a temperature is not marked: the quarantine ignored none
    # of its values, and its heart rates are the state's (before, the unit's every vital sign
    # was ignored)
    unmarked = [states[r] for r in without_temp if r in states]
    assert len(unmarked) > 50
    assert all(s["quarantine_json"] is None for s in unmarked)
    used = [s for s in unmarked if s["heart_rate_bpm_measured_time"] == s["event_time"]]
    assert len(used) > len(unmarked) / 2
    assert all(s["temp_c"] is None or s["temp_c"] < 45 for s in chain["states"])
    after = [
        s
        for s in chain["states"]
        if s["unit_id"] == UNIT
        and s["record_kind"] == "vitals"
        and pd.Timestamp(s["event_time"]) >= until
        and s["heart_rate_bpm_measured_time"] == s["event_time"]
    ]
    assert after, "the unit's values count again after the clear"
