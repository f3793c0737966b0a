"""The data-quality chain over the real Kafka broker, as it runs deployed: real set A records of
two units go to the topics with a monitor firmware fault on one of them (temperatures in °F for
four hours); the data-quality job, reading and writing Kafka, raises the unit-conversion
quarantine of temp_c and its clear on quality.event.v1; the quarantine actuator applies them
from committed records to the registry; the screening job, reading the same topics with that
registry, uses none of the unit's temperatures in the quarantined interval but its other values
(heart rates and the rest), and still accounts for every record (a screened state or a
record-level dead letter). A temperature in °F is out of range: the decoder refuses it alone
(a `value_out_of_range` dead letter per refused value, schemas.codec "Refused values"), so it
never entered the record and the quarantine marker, which names values the quarantine ignored,
does not mark its record. The marking itself is checked on the other unit, whose temp_c an operator
quarantines over the same interval: its records that carried an (in-range) temperature are
marked."""

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
from schemas import codec, topics
from schemas.settings import Settings
from sinks.quarantine import Actuator
from tests import quality_faults as qf
from udfs.quarantine import QuarantineRegistry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PER_UNIT, HOURS = 30, 12
UNIT, FAULT_H = "MICU", (4.0, 8.0)
OTHER = "SICU"  # no fault: an operator quarantines its temp_c over the same interval
OPERATOR = "test-operator"
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
        quarantines = registry.all()
        for q in quarantines[:1]:  # the other unit's temp_c, over the data-quality interval
            at = {"reason": "test: the marker of in-range values", "by": OPERATOR}
            key = (q.source_topic, q.facility_id, OTHER)
            since = pd.Timestamp(q.since).to_pydatetime()
            registry.set(*key, since=since, parameter="temp_c", **at)
            if q.until is not None:
                until = pd.Timestamp(q.until).to_pydatetime()
                registry.clear(*key, until=until, parameter="temp_c", **at)
        sepsis_screen.JOB.run(s, prefix=prefix, bounded=True)

        def read(t: topics.Topic) -> list[dict[str, Any]]:
            return kafka_io.read_records(s, prefix + t.name, t.name)

        yield {
            "faulted": faulted,
            "items": items,
            "events": read(topics.QUALITY_EVENT),
            "applied": applied,
            "quarantines": quarantines,  # the data-quality job's, as the actuator applied them
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


def _window(chain: dict[str, Any], unit: str) -> list[dict[str, Any]]:
    (q,) = chain["quarantines"]
    since, until = pd.Timestamp(q.since), pd.Timestamp(q.until)
    return [
        r
        for t, r in chain["items"]
        if t == VITALS and r["unit_id"] == unit and since <= pd.Timestamp(r["event_time"]) < until
    ]


def test_the_screening_job_marks_the_quarantined_records_and_uses_their_values_but_temp_c(
    chain: dict[str, Any],
) -> None:
    (q,) = chain["quarantines"]
    until = pd.Timestamp(q.until)
    temp = topics.VITALS_OBSERVATION.schema.field("temp_c")
    alone = topics.VITALS_OBSERVATION.schema.refused_alone
    states = {s["record_id"]: s for s in chain["states"]}
    letters = [d for d in chain["dead_letters"] if d["stage"] != data_quality.STAGE]
    # a value refused alone: its record was screened, the letter keeps the value
    value_letters = [d for d in letters if d["reason_code"].startswith("value_")]
    records = [d for d in letters if not d["reason_code"].startswith("value_")]
    assert len(states) + len(records) == len(chain["items"])  # every record, once
    # a temperature in °F is out of range: refused alone, a dead letter per refused value,
    # each naming its own; the record is screened with its other values
    fahrenheit = {
        r["observation_id"]
        for t, r in chain["items"]
        if t == VITALS and r.get("temp_c") is not None and temp.out_of_range(r["temp_c"])
    }
    assert len(fahrenheit) > 10
    # (and the few impossible values of the data itself: a FiO2 of 0.04, refused alike)
    impossible = {
        r["observation_id"]
        for t, r in chain["items"]
        if t == VITALS
        and any(r.get(f.name) is not None and f.out_of_range(r[f.name]) for f in alone)
    }
    by_record: dict[str, list[dict[str, Any]]] = {}
    for d in value_letters:
        assert d["source_topic"].endswith(VITALS), d
        decoded = codec.decode(topics.VITALS_OBSERVATION.schema, d["payload"])
        assert isinstance(decoded, dict), decoded
        by_record.setdefault(decoded["observation_id"], []).append(d)
    assert fahrenheit <= impossible and by_record.keys() == impossible
    sent = {r["observation_id"]: r for t, r in chain["items"] if t == VITALS}
    for rid in impossible:
        rec = sent[rid]
        out = [f.name for f in alone if rec.get(f.name) is not None and f.out_of_range(rec[f.name])]
        pairs = topics.VITALS_OBSERVATION.schema.refused_with  # refused with their partner
        with_ = [
            f"{f.name} refused with {p.name}"
            for f, p in pairs
            if p.name in out and rec.get(f.name) is not None
        ]
        assert [d["reason"].split("=")[0] for d in by_record[rid]] == out + with_
        assert {d["reason_code"] for d in by_record[rid]} == {"value_out_of_range"}
        assert ("temp_c" in out) == (rid in fahrenheit)
        assert rid in states
    # the unit's records in the interval: one whose temperature was refused carried no value
    # the quarantine ignored (the refused one never entered it, its dead letter says why), so
    # it is not marked, and its temperature is not the state's
    in_window = _window(chain, UNIT)
    refused = {r["observation_id"] for r in in_window if r["observation_id"] in fahrenheit}
    assert len(refused) > 10
    for rid in refused:
        assert states[rid]["quarantine_json"] is None
        assert states[rid]["temp_c_measured_time"] != states[rid]["event_time"]
    # a record of the interval that carried a temperature in range is marked (none of the
    # unit's, all in °F; the other unit's, which an operator quarantined over the interval)
    covered = [
        r["observation_id"]
        for unit in (UNIT, OTHER)
        for r in _window(chain, unit)
        if r.get("temp_c") is not None and r["observation_id"] not in fahrenheit
    ]
    assert len(covered) > 10
    for rid in covered:
        state = states[rid]
        assert state["quarantine_json"] is not None, rid
        marker = json.loads(state["quarantine_json"])
        assert marker["quarantine"]["parameters"] == ["temp_c"]
        [note] = marker["quarantine"]["quarantines"]
        if note["unit_id"] == UNIT:
            assert note["event_id"] == q.set_event_id
        else:
            assert (note["unit_id"], note["set_by"]) == (OTHER, OPERATOR)
        # its own temperature is not the state's
        assert state["temp_c_measured_time"] != state["event_time"]
    # a record of the interval without a temperature is not marked: the quarantine ignored none
    # of its values, and its heart rates are the state's (before, the unit's every vital sign
    # was ignored)
    without_temp = {r["observation_id"] for r in in_window if r["temp_c"] is None}
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
