"""A quarantined source in the screening job, in memory on the MiniCluster: real set-A patients,
one unit's charted-vitals source corrupted by a firmware fault (heart rate double-counted, still
inside the schema's range, so validation lets it through) and quarantined for the fault's
event-time interval, a facility's bedside-monitor source (simulated from set A) quarantined
from mid-run on, whole facility, never cleared, and another unit's temperature probe reading
2.5 °C high (in range too), its `temp_c` quarantined from the start, never cleared. The
sources' records still make screened states and charted minutes, but no state, rule or alert
uses their quarantined values: every value of the whole sources', the probe unit's temperatures
only (its heart rates, SpO2, pressures and respiratory rates are screened); the alerts of their
patients name the quarantine; after the clear the unit's values count again. The oracle is the
offline reference over the same records with the quarantined values removed
(tests/reference_screen.py, over tests/reference_charting.py's minutes for the monitors)."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from pyflink.table import EnvironmentSettings, TableEnvironment

from jobs import sepsis_screen
from jobs.feeds import device_sim, replay
from schemas import topics
from schemas.settings import Settings
from tests import reference_charting, reference_screen
from tests.flink_harness import run_bounded
from udfs.quarantine import Quarantine, QuarantineRegistry, ignores_sql, record_note
from udfs.sepsis import STATE_PARAMS

pytestmark = pytest.mark.slow

PATIENTS = 16
FACILITY, UNIT = "hospital-a", "MICU"
VITALS = topics.VITALS_OBSERVATION.name
INPUT_OF = {VITALS: "vitals", topics.LABS_RESULT.name: "labs", topics.ADT_EVENT.name: "adt"}
REASON = "heart rate double-counted after a monitor firmware update"
DEVICE = topics.VITALS_DEVICE.name
MONITORS = device_sim.DevicePlan(beds=3, seconds=10 * 60)
MONITORS_FROM = MONITORS.start + timedelta(minutes=5)
PROBE_UNIT, PROBE_OFFSET_C = "ICU", 2.5
PROBE_REASON = "temperature probe reads 2.5 degC high"
Items = list[tuple[str, dict[str, Any]]]


def _faulty(topic: str, rec: dict[str, Any], since: datetime, until: datetime) -> bool:
    return (
        topic == VITALS
        and rec["unit_id"] == UNIT
        and since <= rec["event_time"] < until
        and rec["heart_rate_bpm"] is not None
    )


def _without_values(rec: dict[str, Any]) -> dict[str, Any]:
    return {k: None if k in STATE_PARAMS else v for k, v in rec.items()}


def _probe_unit(topic: str, rec: dict[str, Any]) -> bool:
    return topic == VITALS and rec["unit_id"] == PROBE_UNIT


def _without_temperature(rec: dict[str, Any]) -> dict[str, Any]:
    return {**rec, "temp_c": None}


def _carries(rec: dict[str, Any]) -> bool:
    """Whether a record carries a value of the screening state's (a whole-source quarantine
    marks such a record only)."""
    return any(rec.get(p) is not None for p in STATE_PARAMS)


@pytest.fixture(scope="module")
def case(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    plan = replay.ReplayPlan(patients=PATIENTS)
    df = pd.read_parquet(replay.SAMPLE)
    key = settings.require_phi_key()
    clean = replay.clinical_stream(replay.select_patients(df, plan), plan, key, "setA-sample")
    device = [r for sec in device_sim.device_seconds(df, MONITORS, key, "setA-sample") for r in sec]
    (monitor_facility,) = {r["facility_id"] for r in device}
    # The monitors' charted minutes as the reference sees them, values removed once quarantined.
    minutes = reference_charting.as_observations(reference_charting.charted(device))
    unit_times = sorted(r["event_time"] for t, r in clean if t == VITALS and r["unit_id"] == UNIT)
    since, until = unit_times[len(unit_times) // 4], unit_times[3 * len(unit_times) // 4]
    items: Items = []
    faulty_ids = set()
    for topic, rec in clean:
        if _faulty(topic, rec, since, until):
            rec = {**rec, "heart_rate_bpm": min(2 * rec["heart_rate_bpm"], 350.0)}
            faulty_ids.add(rec["observation_id"])
        if _probe_unit(topic, rec) and rec["temp_c"] is not None:
            rec = {**rec, "temp_c": rec["temp_c"] + PROBE_OFFSET_C}
        items.append((topic, rec))
    # Every record of the source in the interval is ignored, faulty or not (marked: each that
    # carried a value of the state's).
    ignored = {
        r["observation_id"]
        for t, r in items
        if t == VITALS and r["unit_id"] == UNIT and since <= r["event_time"] < until
    }
    marked = {
        r["observation_id"]
        for t, r in items
        if t == VITALS and r["observation_id"] in ignored and _carries(r)
    }
    registry = QuarantineRegistry(tmp_path_factory.mktemp("quarantine"))
    registry.set(VITALS, FACILITY, UNIT, since=since, reason=REASON, by="dq", event_id="dq-1")
    registry.clear(VITALS, FACILITY, UNIT, until=until, reason="firmware rolled back", by="ops")
    registry.set(DEVICE, monitor_facility, None, since=MONITORS_FROM, reason="monitors", by="ops")
    first = min(r["event_time"] for _, r in items)
    registry.set(
        VITALS, FACILITY, PROBE_UNIT, since=first, reason=PROBE_REASON, by="data_quality/x",
        event_id="dq-temp", parameter="temp_c",
    )  # fmt: skip
    inputs: dict[str, list[dict[str, Any]]] = {n: [] for n in sepsis_screen.INPUTS}
    for topic, rec in items:
        inputs[INPUT_OF[topic]].append(rec)
    inputs["device"] = device
    run = dataclasses.replace(settings, quarantine_registry=registry.root, device_numerics=True)
    out = run_bounded(sepsis_screen.JOB, run, inputs, Path(tmp_path_factory.mktemp("quarantine")))
    ignored_minutes = {r["observation_id"] for _, r in minutes if r["event_time"] >= MONITORS_FROM}
    return {
        "items": items,
        "device": device,
        "minutes": minutes,
        "ignored_minutes": ignored_minutes,
        "since": since,
        "until": until,
        "ignored": ignored,
        "marked": marked,
        "faulty": faulty_ids,
        "quarantine": registry.all()[0],
        "monitor_quarantine": registry.all()[1],
        "probe_quarantine": registry.all()[2],
        # the probe unit's records whose temperature was ignored: those marked
        "probed": {
            r["observation_id"] for t, r in items if _probe_unit(t, r) and r["temp_c"] is not None
        },
        "unprobed": {
            r["observation_id"] for t, r in items if _probe_unit(t, r) and r["temp_c"] is None
        },
        **out,
    }


def _honoured(case: dict[str, Any]) -> Items:
    """The job's input as the reference sees it when the quarantines are honoured: the records
    and charted minutes of a quarantined source at their event time without their values."""
    out = [
        (
            t,
            _without_values(r)
            if t == VITALS and r["observation_id"] in case["ignored"]
            else _without_temperature(r)
            if _probe_unit(t, r)
            else r,
        )
        for t, r in case["items"]
    ]
    out += [
        (t, _without_values(r) if r["observation_id"] in case["ignored_minutes"] else r)
        for t, r in case["minutes"]
    ]
    return sorted(out, key=lambda tr: tr[1]["event_time"])


def test_the_injected_fault_would_raise_alerts_if_its_values_were_used(
    case: dict[str, Any],
) -> None:
    _, used = reference_screen.run(case["items"])
    quarantined = [
        (t, _without_values(r) if t == VITALS and r["observation_id"] in case["ignored"] else r)
        for t, r in case["items"]
    ]
    _, honoured = reference_screen.run(quarantined)
    assert len(case["faulty"]) > 20
    assert {e["alert_event_id"] for e in used} - {e["alert_event_id"] for e in honoured}


def test_a_quarantined_sources_values_reach_no_state_rule_or_alert_until_it_is_cleared(
    case: dict[str, Any],
) -> None:
    rows, events = reference_screen.run(_honoured(case))
    reference_screen.assert_states_equal(case["sepsis_screen"], rows)
    stripped = []
    for e in case["alert_events"]:
        evidence = json.loads(e["evidence_json"])
        evidence.pop("quarantine", None)
        stripped.append({**e, "evidence_json": json.dumps(evidence)})
    reference_screen.assert_events_equal(stripped, events)
    # After the clear the unit's heart rates are the state's again.
    after = [
        s
        for s in case["sepsis_screen"]
        if s["unit_id"] == UNIT
        and s["record_kind"] == "vitals"
        and s["event_time"] >= case["until"]
        and s["heart_rate_bpm_measured_time"] == s["event_time"]
    ]
    assert after, "the source's values are used again after the clear"


def test_a_quarantined_sources_records_are_still_screened_and_marked_with_the_quarantine(
    case: dict[str, Any],
) -> None:
    states = {s["record_id"]: s for s in case["sepsis_screen"]}
    clinical_letters = [d for d in case["dead_letters"] if d["source_topic"] != DEVICE]
    assert len(states) + len(clinical_letters) == len(case["items"]) + len(case["minutes"])
    ignored = [(r, case["quarantine"]) for r in case["marked"]]
    ignored += [(r, case["monitor_quarantine"]) for r in case["ignored_minutes"]]
    ignored += [(r, case["probe_quarantine"]) for r in case["probed"]]
    assert len(case["ignored_minutes"]) > 10 and len(case["marked"]) > 20
    for record_id, quarantine in ignored:
        marker = json.loads(states[record_id]["quarantine_json"])
        assert marker["quarantine"] == json.loads(record_note([quarantine]) or "")
        got = pd.Timestamp(marker["last_ignored_time"])
        assert got == pd.Timestamp(states[record_id]["event_time"])
    # The marker follows the patient (a transfer out of the unit keeps it for the window).
    marked = {s["patient_token"] for s in states.values() if s["quarantine_json"] is not None}
    assert marked == {states[r]["patient_token"] for r, _ in ignored}
    # The monitors' minutes are still stored with their values, every device record in one.
    charted = case["vitals_charted"]
    device_letters = [d for d in case["dead_letters"] if d["source_topic"] == DEVICE]
    assert sum(c["records"] for c in charted) + len(device_letters) == len(case["device"])
    stored = {c["chart_id"]: c for c in charted}
    assert all(stored[m]["heart_rate_bpm"] is not None for m in case["ignored_minutes"])


def test_a_record_that_carried_no_value_a_quarantine_ignores_is_not_marked_as_values_ignored(
    case: dict[str, Any],
) -> None:
    """The probe unit's records without a temperature (blood pressures, heart rates only) had no
    value ignored: their states' marker, if any, is an earlier ignored record's of the patient
    (within the window), never their own. Every marker names the time of a record whose value
    was ignored. Before, every record of a source with any quarantine was marked, the one
    quarantine of temp_c marking each of the unit's records "values ignored"."""
    states = {s["record_id"]: s for s in case["sepsis_screen"]}
    ignored = case["marked"] | case["ignored_minutes"] | case["probed"]
    times: dict[str, set[pd.Timestamp]] = {}
    for r in ignored:
        s = states[r]
        times.setdefault(s["patient_token"], set()).add(pd.Timestamp(s["event_time"]))
    assert len(case["unprobed"]) > 20
    for s in states.values():
        if s["quarantine_json"] is not None:
            last = pd.Timestamp(json.loads(s["quarantine_json"])["last_ignored_time"])
            assert last in times[s["patient_token"]], s["record_id"]


def test_an_alert_whose_patient_had_values_ignored_names_the_quarantine_in_its_evidence(
    case: dict[str, Any],
) -> None:
    states = {s["record_id"]: s for s in case["sepsis_screen"]}
    raised = [e for e in case["alert_events"] if e["action"] != "resolve"]
    named = probed = 0
    for e in raised:  # named: those naming the data-quality event's quarantine
        evidence = json.loads(e["evidence_json"])
        marker = states[e["last_record_id"]]["quarantine_json"]
        if marker is None:
            assert "quarantine" not in evidence
            continue
        assert evidence["quarantine"] == json.loads(marker)
        [note] = evidence["quarantine"]["quarantine"]["quarantines"]
        assert (note["source_topic"], note["unit_id"], note["parameter"], note["reason"]) in {
            (VITALS, UNIT, None, REASON),
            (DEVICE, "*", None, "monitors"),
            (VITALS, PROBE_UNIT, "temp_c", PROBE_REASON),
        }
        want = ["temp_c"] if note["parameter"] else ["*"]
        assert evidence["quarantine"]["quarantine"]["parameters"] == want
        named += note["event_id"] == "dq-1"
        probed += note["event_id"] == "dq-temp"
    assert named > 0, "some alert of the quarantined unit's patients names the quarantine"
    assert probed > 0, "some alert of the probe unit's patients names its temp_c quarantine"


def test_a_quarantine_of_one_parameter_ignores_it_and_screens_the_units_other_values(
    case: dict[str, Any],
) -> None:
    """The probe unit's records: their temperatures reach no state, their heart rates and the
    other vital signs do, as the reference with the temperatures alone removed has them (the
    equality test above)."""
    states = {s["record_id"]: s for s in case["sepsis_screen"]}
    probed = [r for t, r in case["items"] if _probe_unit(t, r)]
    taken = dict.fromkeys(
        ("temp_c", "heart_rate_bpm", "spo2_pct", "resp_rate_per_min", "sbp_mmhg"), 0
    )
    carried = dict.fromkeys(taken, 0)
    for r in probed:
        s = states[r["observation_id"]]
        for p in taken:
            if r[p] is not None:
                carried[p] += 1
                taken[p] += s[f"{p}_measured_time"] == s["event_time"]
    assert carried["temp_c"] > 20 and taken["temp_c"] == 0
    assert all(taken[p] == carried[p] > 20 for p in taken if p != "temp_c"), (taken, carried)


def test_the_probe_fault_would_raise_alerts_and_a_whole_source_quarantine_would_hide_others(
    case: dict[str, Any],
) -> None:
    """The reference on the same records: the probe's temperatures used raise alert events of
    their own; the unit's whole source ignored (as every quarantine was before parameters)
    loses alert events its heart rates and other values raise."""
    items = case["items"]

    def ids(rows: Items) -> set[str]:
        return {e["alert_event_id"] for e in reference_screen.run(rows)[1]}

    param = ids([(t, _without_temperature(r) if _probe_unit(t, r) else r) for t, r in items])
    assert ids(items) - param
    assert param - ids([(t, _without_values(r) if _probe_unit(t, r) else r) for t, r in items])


def _q(parameter: str | None, unit: str = "ICU", reason: str = "r") -> Quarantine:
    return Quarantine(VITALS, FACILITY, unit, "2026-01-05T08:00:00.000Z", reason, "dq", None,
                      parameter=parameter)  # fmt: skip


def test_the_sql_test_of_a_note_ignores_exactly_the_parameters_its_list_names() -> None:
    """`ignores_sql` (each parameter's nulling) and `_marked` (the record's marker) in Flink SQL,
    on notes as the JVM check builds them (`record_note`): the whole source's and a parameter's
    (`*` first: every parameter ignored), two parameters, a name that is a prefix of another
    (temp_c vs temp_c_core, both ways), and a quoted name after the list (a unit named
    `"temp_c"`, a reason quoting it) that is not in it. A record is marked only when it carried
    a value the note ignores, of the parameters given (the state's): a quarantine of weight_kg,
    outside them, marks nothing."""
    notes = {
        "whole+temp": record_note([_q(None), _q("temp_c")]),
        "two": record_note([_q("temp_c"), _q("spo2_pct")]),
        "core": record_note([_q("temp_c_core", unit="temp_c", reason='probe "temp_c" [sic]')]),
        "core+temp": record_note([_q("temp_c_core"), _q("temp_c")]),
        "weight": record_note([_q("weight_kg")]),
    }
    params = ("temp_c", "temp_c_core", "spo2_pct", "heart_rate_bpm")
    want = {
        "whole+temp": (True, True, True, True),
        "two": (True, False, True, False),
        "core": (False, True, False, False),
        "core+temp": (True, True, False, False),
        "weight": (False, False, False, False),
    }
    rows = [  # (note, temp_c, heart_rate_bpm) → the marker is the note
        ("two", 37.0, 80.0, True),
        ("two", None, 80.0, False),  # a heart rate only: nothing of it ignored
        ("whole+temp", None, 80.0, True),
        ("weight", 37.0, 80.0, False),
        ("core", 37.0, None, False),
        (None, 37.0, 80.0, False),
    ]

    def text(v: str | None) -> str:
        return "CAST(NULL AS STRING)" if v is None else "'" + v.replace("'", "''") + "'"

    def num(v: float | None) -> str:
        return "CAST(NULL AS DOUBLE)" if v is None else f"CAST({v} AS DOUBLE)"

    values = (
        ", ".join(f"('{k}', {text(notes[k])}, {num(None)}, {num(None)})" for k in notes)
        + ", "
        + ", ".join(
            f"('row{i}', {text(notes[k] if k else None)}, {num(t)}, {num(h)})"
            for i, (k, t, h, _) in enumerate(rows)
        )
    )
    tests = ", ".join(
        f"CASE WHEN quarantine IS NULL THEN FALSE ELSE {ignores_sql('quarantine', p)} END AS {p}"
        for p in params
    )
    marked = sepsis_screen._marked(["temp_c", "heart_rate_bpm"])
    sql = (
        f"SELECT k, {tests}, {marked} FROM (VALUES {values}) "
        "AS t(k, quarantine, temp_c, heart_rate_bpm)"
    )
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    with t_env.execute_sql(sql).collect() as results:
        got = {r[0]: tuple(r[1:]) for r in results}
    assert {k: got[k][:-1] for k in notes} == want
    assert [got[f"row{i}"][-1] is not None for i in range(len(rows))] == [m for *_, m in rows]
    assert all(got[f"row{i}"][-1] == notes[r[0]] for i, r in enumerate(rows) if r[3] and r[0])
