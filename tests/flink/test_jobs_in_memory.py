"""The fast ring: every Flink job's `build` on the MiniCluster over bounded in-memory sources and
collecting sinks, no broker, checked against the offline references (the Kafka integration
tests check the same jobs end to end)."""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jobs import bed_census, sepsis_news2, sepsis_screen
from jobs.feeds import mimic_adt, replay
from jobs.screening.rules import RULES
from schemas import codec, topics
from schemas.capacity import ALL_UNITS
from schemas.settings import Settings
from tests import reference, reference_census, reference_screen
from tests.flink_harness import build_bounded, event_time_diamonds, plan, run_bounded
from training.registry import bootstrap
from udfs.device import CHART_FUNCTION
from udfs.registry import Registry
from udfs.sepsis import VALIDITY_H

pytestmark = pytest.mark.slow

PATIENTS = 40
RESULTED_AFTER = timedelta(hours=3)
OTHER_VISIT_AFTER = timedelta(seconds=90)
INPUT_OF = {
    topics.VITALS_OBSERVATION.name: "vitals",
    topics.LABS_RESULT.name: "labs",
    topics.ADT_EVENT.name: "adt",
}


@pytest.fixture(scope="module")
def sample_items(settings: Settings) -> list[tuple[str, dict[str, Any]]]:
    """The bundled sample's records, every seventh vitals record with a GCS (set A charts none;
    an ICU charts it, and qSOFA's altered mentation reads it), every fifth an oxygen flag, on or
    off, that agrees or not with the FiO2 charted before it, and every third lab result known
    (`recorded_time`) 3 hours after its draw, all in the order of their record times."""
    plan = replay.ReplayPlan(patients=PATIENTS)
    df = pd.read_parquet(replay.SAMPLE)
    chosen = replay.select_patients(df, plan)
    items = replay.clinical_stream(chosen, plan, settings.require_phi_key(), "setA-sample")
    vitals = [rec for topic, rec in items if topic == topics.VITALS_OBSERVATION.name]
    for n, rec in enumerate(vitals[::7]):
        rec["gcs_total"] = 3 + n % 13
    for n, rec in enumerate(vitals[::5]):
        rec["on_supplemental_o2"] = n % 2 == 0
    labs = [rec for topic, rec in items if topic == topics.LABS_RESULT.name]
    for rec in labs[::3]:
        rec["recorded_time"] = rec["event_time"] + RESULTED_AFTER
    items += visits(vitals)
    return sorted(items, key=lambda item: codec.record_time(item[1]))


def visits(vitals: list[dict[str, Any]]) -> list[tuple[str, dict[str, Any]]]:
    """ADT events of other visits: every third patient admitted (an inpatient encounter, in the
    unit they are charted in) before their first vitals, and their emergency visit discharged
    from the emergency department midway through the stay (every sixth, that discharge sent
    again and a clinic visit's two hours later; every sixth more, admitted to the emergency
    department (boarding), moved to their unit by an update of their own visit, then an update
    of the emergency visit, and its discharge naming the department only as its prior
    location); every third one more admitted and discharged midway from their own unit (every
    sixth, under a visit number of its own: the stay's discharge all the same; every sixth
    more, the discharge cancelled (A13) half an hour later and sent again after two more
    readings, and the emergency visit discharged after that: the stay reopened goes on)."""
    by_patient: dict[str, list[dict[str, Any]]] = {}
    for rec in vitals:
        by_patient.setdefault(rec["patient_token"], []).append(rec)
    out = []
    for n, (tok, recs) in enumerate(sorted(by_patient.items())):
        if n % 3 == 2:
            continue
        first, mid, unit = recs[0], recs[len(recs) // 2], recs[0]["unit_id"]
        inpatient, emergency = f"{tok}:inpatient", f"{tok}:emergency"
        boarding = n % 6 == 3
        out.append(
            _adt(first, "admit", inpatient, "ED" if boarding else unit, -timedelta(minutes=1))
        )
        if n % 3 == 1:
            own = f"{tok}:renumbered" if n % 6 == 4 else inpatient
            left = _adt(mid, "discharge", own, unit, OTHER_VISIT_AFTER)
            out.append(left)
            if n % 6 == 1:  # the emergency visit closed after a reading since the A13
                cancel = OTHER_VISIT_AFTER + timedelta(minutes=30)
                later = next(  # a reading followed by another within the hour
                    a
                    for a, b in itertools.pairwise(recs[len(recs) // 2 + 2 :])
                    if b["event_time"] - a["event_time"] <= timedelta(hours=1)
                )
                # sent again after a reading since the cancel: changes nothing
                again = left[1] | {"event_time": later["event_time"] + OTHER_VISIT_AFTER / 2}
                out.append(_adt(mid, "cancel_discharge", inpatient, unit, cancel))
                out.append((left[0], again))
                out.append(_adt(later, "discharge", emergency, "ED", OTHER_VISIT_AFTER))
            continue
        if boarding:
            out.append(_adt(first, "update", inpatient, unit, -timedelta(seconds=30)))
            out.append(_adt(mid, "update", emergency, "ED", OTHER_VISIT_AFTER / 2))
            out.append(_adt(mid, "discharge", emergency, None, OTHER_VISIT_AFTER, prior="ED"))
            continue
        closed = _adt(mid, "discharge", emergency, "ED", OTHER_VISIT_AFTER)
        out.append(closed)
        if n % 6 == 0:
            resent = closed[1] | {"event_time": closed[1]["event_time"] + timedelta(minutes=20)}
            later = OTHER_VISIT_AFTER + timedelta(hours=2)
            out += [(closed[0], resent), _adt(mid, "discharge", f"{tok}:clinic", "CLINIC", later)]
    return out


def _adt(
    at: dict[str, Any],
    kind: str,
    encounter: str,
    unit: str | None,
    after: timedelta,
    prior: str | None = None,
) -> tuple[str, dict[str, Any]]:
    return topics.ADT_EVENT.name, {
        "event_id": f"{encounter}:{kind}",
        "event_type": kind,
        "source_message_type": "test",
        "patient_token": at["patient_token"],
        "encounter_token": encounter,
        "facility_id": at["facility_id"],
        "unit_id": unit,
        "bed_id": None,
        "prior_unit_id": prior,
        "prior_bed_id": None,
        "event_time": at["event_time"] + after,
        "recorded_time": None,
        "source": "test",
    }


@pytest.fixture(scope="module")
def screened(
    settings: Settings, sample_items: list[tuple[str, dict[str, Any]]], tmp_path_factory: Any
) -> dict[str, list[dict[str, Any]]]:
    inputs: dict[str, list[dict[str, Any]]] = {n: [] for n in sepsis_screen.INPUTS}
    for topic, rec in sample_items:
        inputs[INPUT_OF[topic]].append(rec)
    return run_bounded(
        sepsis_screen.JOB, settings, inputs, Path(tmp_path_factory.mktemp("screen-memory"))
    )


def test_the_screening_job_screens_or_dead_letters_every_record_without_a_broker(
    screened: dict[str, list[dict[str, Any]]], sample_items: list[tuple[str, dict[str, Any]]]
) -> None:
    rows, _ = reference_screen.run(sample_items)
    assert len(screened["sepsis_screen"]) + len(screened["dead_letters"]) == len(sample_items)
    assert len(screened["sepsis_screen"]) == len(rows)
    assert screened["sepsis_scores"] == []  # scoring is off in these settings


def test_the_screening_job_in_memory_equals_the_offline_reference(
    screened: dict[str, list[dict[str, Any]]], sample_items: list[tuple[str, dict[str, Any]]]
) -> None:
    rows, events = reference_screen.run(sample_items)
    reference_screen.assert_states_equal(screened["sepsis_screen"], rows)
    assert {r.contradicted for r in rows} >= {"fio2_fraction", "on_supplemental_o2"}
    low_gcs = [r for r in screened["sepsis_screen"] if (r["gcs_total"] or 15) < 15]
    assert low_gcs, "the sample's GCS reaches the states"
    assert all(r["qsofa_score"] >= 1 for r in low_gcs)  # altered mentation (Seymour 2016)
    drawn = {
        (rec["patient_token"], rec["event_time"])
        for topic, rec in sample_items
        if topic == topics.LABS_RESULT.name and rec.get("recorded_time") is not None
    }
    resulted_late = [
        (r["event_time"] - r["lactate_mmol_l_measured_time"], r["lactate_mmol_l"])
        for r in screened["sepsis_screen"]
        if (r["patient_token"], r["lactate_mmol_l_measured_time"]) in drawn
    ]
    # a lactate resulted 3 h after its draw is valid from its draw: 3 of its 6 h are left
    assert resulted_late and min(age for age, _ in resulted_late) >= RESULTED_AFTER
    assert max(age for age, _ in resulted_late) <= timedelta(hours=VALIDITY_H["lactate_mmol_l"])
    assert events, "the sample raises alerts"
    reference_screen.assert_events_equal(screened["alert_events"], events)


def test_a_discharge_of_another_visit_ends_no_screening_state_and_the_stays_own_does(
    screened: dict[str, list[dict[str, Any]]], sample_items: list[tuple[str, dict[str, Any]]]
) -> None:
    """The state at the emergency visit's discharge keeps the values measured before it (the
    inpatient stay goes on), and so at its copy, at a clinic visit's, at the stay's own
    discharge sent again after its cancel (A13) and at the emergency visit's after that; the
    state at the stay's own discharge (whatever its visit number) holds none (reference_screen
    has the rule: the job equals it above)."""
    discharges = [
        rec
        for topic, rec in sample_items
        if topic == topics.ADT_EVENT.name
        and rec["source"] == "test"
        and rec["event_type"] == "discharge"
    ]
    kept, sent = {}, set()
    for rec in discharges:  # another visit's, or a copy (an id sent before), changes nothing
        other = rec["encounter_token"].split(":")[-1] in ("emergency", "clinic")
        kept[(rec["event_id"], rec["event_time"])] = other or rec["event_id"] in sent
        sent.add(rec["event_id"])
    assert set(kept.values()) == {True, False} and len(kept) == len(discharges)
    states = {(r["record_id"], r["event_time"]): r for r in screened["sepsis_screen"]}
    for (event_id, at), carried in kept.items():
        state = states[(event_id, at)]
        measured = [v for k, v in state.items() if k.endswith("_measured_time") and v is not None]
        assert bool(measured) == carried and all(v < at for v in measured), event_id


@pytest.fixture(scope="module")
def spine(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    plan = replay.ReplayPlan(patients=PATIENTS)
    chosen = replay.select_patients(pd.read_parquet(replay.SAMPLE), plan)
    obs = list(replay.observations(chosen, plan, settings.require_phi_key(), "setA-sample"))
    # one reading with an impossible value beside valid ones, FiO2 charted in percent: refused
    # alone, the reading scored without it (oxygen unknown) and the value dead-lettered
    i = next(i for i in range(len(obs) // 3, len(obs)) if obs[i]["heart_rate_bpm"] is not None)
    obs[i] = {**obs[i], "fio2_fraction": 40.0}
    # one whose only measurements are a °F temperature and ACVPU 'V': kept by its 'V' (a
    # measurement without a range), scored with NEWS2's red flag, the temperature refused
    v = i + 1 + next(k for k, r in enumerate(obs[i + 1 :]) if r["temp_c"] is not None)
    measured = {f.name: None for f in topics.VITALS_OBSERVATION.schema.measurements}
    obs[v] = {**obs[v], **measured, "acvpu": "V", "temp_c": 98.6}
    bad = reference.bad_observations(obs[len(obs) // 2])
    # and, beyond the reference (whose frame holds no NaN), a reading of a patient of its own
    # with a NaN SpO2 and a °F temperature beside its heart rate: each value dead-lettered
    two = {**obs[0], **measured, "observation_id": "obs-two", "patient_token": "tok-two"}
    two |= {"heart_rate_bpm": 120.0, "spo2_pct": math.nan, "temp_c": 98.6}
    extra = (codec.encode(topics.VITALS_OBSERVATION.schema, two), codec.record_time(two))
    raw = [*((value, ts) for _, _, value, ts in bad), (extra[0], codec.epoch_ms(extra[1]))]
    inputs = {"vitals": [*obs, *raw]}
    out = run_bounded(
        sepsis_news2.JOB, settings, inputs, Path(tmp_path_factory.mktemp("spine-memory"))
    )
    return {
        "observations": obs,
        "bad": bad,
        "fio2_percent": obs[i]["observation_id"],
        "voice": obs[v]["observation_id"],
        **out,
    }


def _two(letter: dict[str, Any]) -> bool:
    """Whether a dead letter is of the spine's reading "obs-two" (beyond the reference)."""
    got = codec.decode(topics.VITALS_OBSERVATION.schema, letter["payload"])
    return isinstance(got, dict) and got["observation_id"] == "obs-two"


def test_the_news2_job_scores_every_reading_and_dead_letters_each_bad_one_with_its_reason(
    spine: dict[str, Any],
) -> None:
    scored, alerts = reference.run(spine["observations"])
    rejected = len(spine["observations"]) - len(scored)
    # accepted readings with values refused alone: screened, and one dead letter per value
    refused = int(reference.refused_values(pd.DataFrame(spine["observations"])).sum())
    codes = [d["reason_code"] for d in spine["dead_letters"] if not _two(d)]
    assert len(spine["vitals_news2"]) == len(scored) + 1  # and obs-two's
    assert len(codes) == rejected + len(spine["bad"]) + refused
    assert codes.count("value_out_of_range") == refused >= 1
    # the reading with FiO2 40: scored (as the reference, with FiO2 null, below), one letter
    fio2 = [d for d in spine["dead_letters"] if d["reason_code"] == "value_out_of_range"]
    assert [d["reason"] for d in fio2 if d["reason"].startswith("fio2_fraction=")] == [
        "fio2_fraction=40 outside [0.21, 1]"
    ]
    assert spine["fio2_percent"] in {r["observation_id"] for r in spine["vitals_news2"]}
    for code in {c for _, c, _, _ in spine["bad"]}:
        expected = sum(c == code for _, c, _, _ in spine["bad"])
        assert codes.count(code) == expected + (rejected if code == "out_of_range" else 0)
    got = pd.DataFrame(spine["vitals_news2"]).set_index("observation_id")
    want = scored.set_index("observation_id")
    cols = ["news2_score", "news2_params_scored", "news2_red_flag"]
    pd.testing.assert_frame_equal(
        got.loc[want.index, cols].astype("int64"), want[cols].astype("int64")
    )
    assert alerts, "the sample raises sustained-NEWS2 alerts"
    pd.testing.assert_frame_equal(
        reference.norm_alerts(spine["alerts"]), reference.norm_alerts(alerts)
    )


def test_the_news2_job_scores_a_reading_whose_acvpu_remains_and_letters_each_refused_value(
    spine: dict[str, Any],
) -> None:
    """Through the Python decode function: a reading of ACVPU 'V' and a °F temperature is
    scored with NEWS2's red flag (consciousness other than Alert scores 3), not dead-lettered
    whole; a reading with a NaN SpO2 and a °F temperature gets two dead letters, each its own
    code and reason, for the one record scored."""
    scored = {r["observation_id"]: r for r in spine["vitals_news2"]}
    voice = scored[spine["voice"]]
    assert (voice["news2_score"], voice["news2_params_scored"], voice["news2_red_flag"]) == (
        3, 1, True
    )  # fmt: skip
    letters = [(d["reason_code"], d["reason"]) for d in spine["dead_letters"] if _two(d)]
    assert sorted(letters) == [
        ("value_not_a_number", "spo2_pct is NaN"),
        ("value_out_of_range", "temp_c=98.6 outside [14, 46]"),
    ]
    assert "obs-two" in scored and scored["obs-two"]["news2_params_scored"] == 1


@pytest.fixture(scope="module")
def census(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    folder = Path(tmp_path_factory.mktemp("census-memory"))
    table = mimic_adt.load_transfers(settings.data_dir)
    (folder / "capacity.json").write_text(json.dumps(mimic_adt.capacity(table).to_dict()))
    s = dataclasses.replace(settings, capacity_file=folder / "capacity.json")
    events = mimic_adt.events(table, s.require_phi_key())
    out = run_bounded(bed_census.JOB, s, {"adt": events}, folder)
    return {"table": table, "events": events, **out}


def test_the_census_job_counts_every_unit_at_every_minute_as_the_mimic_table_says(
    census: dict[str, Any],
) -> None:
    stays = mimic_adt.stays(census["table"])
    rows = census["census_unit"]
    assert {r["unit_id"] for r in rows} == set(stays.careunit) | {ALL_UNITS}
    for unit, unit_stays in stays.groupby("careunit"):
        ends, occupied = reference_census.series(rows, unit)
        step = reference_census.StepCensus.from_stays(unit_stays)
        assert reference_census.mismatches(step, ends, occupied) == []
    assert len(census["census_events"]) + len(census["dead_letters"]) == len(census["events"])
    assert census["dead_letters"] == []


def test_the_screening_graph_is_the_same_with_or_without_a_champion(
    settings: Settings, sample_items: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    s = dataclasses.replace(settings, scoring=True, model_registry=tmp_path / "registry")
    inputs: dict[str, list[dict[str, Any]]] = {n: [] for n in sepsis_screen.INPUTS}
    for topic, rec in sample_items[:200]:
        inputs[INPUT_OF[topic]].append(rec)
    without = plan(build_bounded(sepsis_screen.JOB, s, inputs, tmp_path / "a"), tmp_path / "a")
    assert bootstrap(Registry(s.model_registry), s.model_name)
    with_champion = plan(
        build_bounded(sepsis_screen.JOB, s, inputs, tmp_path / "b"), tmp_path / "b"
    )
    assert without == with_champion
    assert any("score_id" in contents for _, contents, _ in with_champion)  # the score branch


def test_the_screening_plan_runs_each_state_window_and_the_scoring_udf_once_per_state(
    settings: Settings, sample_items: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    """A view that several queries read is planned once per reader unless the job plans its
    stages apart (jobs/sepsis_screen.py): then every rule, the screen sink and the score rows
    would each run their own copy of the windows and of the UDF."""
    s = dataclasses.replace(settings, scoring=True, model_registry=tmp_path / "registry")
    assert bootstrap(Registry(s.model_registry), s.model_name)
    inputs: dict[str, list[dict[str, Any]]] = {n: [] for n in sepsis_screen.INPUTS}
    for topic, rec in sample_items[:200]:
        inputs[INPUT_OF[topic]].append(rec)
    ops = [c for _, c, _ in plan(build_bounded(sepsis_screen.JOB, s, inputs, tmp_path), tmp_path)]
    assert sum("wf_score(" in c for c in ops) == 1
    charting = [c for c in ops if f"{CHART_FUNCTION}(" in c]
    assert len(charting) == 1, charting  # for vitals.charted and the state alike
    over = [c for c in ops if "OverAggregate(" in c]
    # the late check on the merged watermark: one counter per patient, in arrival order, and
    # in the same window the patient's stay (which discharges end it: jobs/runtime/stays.py)
    (merging,) = [c for c in over if "orderBy=[arrival ASC]" in c]
    assert "partitionBy=[patient_token]" in merging and "wf_stay_discharge(" in merging
    assert not [c for c in over if "visit_arrival" in c]
    # the ADT events numbered by copy for it (one counter per event id)
    (copies,) = [c for c in over if "partitionBy=[event_id, patient_token]" in c]
    # the features' (first record time, 6-hour extremes), the state's, and the rules' (every
    # run rule in one window)
    windows = [c for c in over if c not in (merging, copies)]
    assert len(windows) == 3
    (rules,) = [c for c in windows if "wf_pair_run" in c]
    assert all(r.run is None or r.run.split("(")[0] in rules for r in RULES)
    # all accumulate: no window keeps the rows it spans (bench/state_size.py)
    assert all("RANGE BETWEEN UNBOUNDED PRECEDING" in c for c in windows), windows
    assert not [c for c in ops if "Match(" in c]


def test_every_event_time_operator_of_the_screening_job_reads_its_inputs_on_one_path(
    settings: Settings, sample_items: list[tuple[str, dict[str, Any]]], tmp_path: Path
) -> None:
    """No event-time operator (the state's and the rules' windows, the alert lifecycle) reads
    two paths from one fork: after every feed had gone idle one path could carry the watermark
    on while the other was still marked idle there, and its rows (a rule's hits, the model's)
    would be dropped as late (tests/flink_harness.event_time_diamonds)."""
    s = dataclasses.replace(settings, scoring=True, model_registry=tmp_path / "registry")
    assert bootstrap(Registry(s.model_registry), s.model_name)
    inputs: dict[str, list[dict[str, Any]]] = {n: [] for n in sepsis_screen.INPUTS}
    for topic, rec in sample_items[:200]:
        inputs[INPUT_OF[topic]].append(rec)
    nodes = plan(build_bounded(sepsis_screen.JOB, s, inputs, tmp_path), tmp_path)
    assert any("ProcessTableFunction(" in c and "alert-lifecycle" in c for _, c, _ in nodes)
    assert event_time_diamonds(nodes) == []
