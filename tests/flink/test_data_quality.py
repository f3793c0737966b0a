"""The data-quality job on the MiniCluster over real ICU records (PhysioNet/CinC 2019 set A, 60
patients in each of three units replayed for a day as vitals, labs and ADT), with two real
faults injected into one replay: a monitor firmware update that sends one unit's temperatures
in °F for eight hours, and one unit's lab feed silent for six hours. Every other source of the
replay is clean: it shows the false alarms per replayed source-day. Every input record is
counted in exactly one window of its unit or dead-lettered."""

from __future__ import annotations

import dataclasses
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jobs import data_quality
from jobs.feeds import replay
from jobs.runtime.job import Job
from schemas import codec, topics
from schemas.settings import Settings
from tests import quality_faults as qf
from tests.flink_harness import build_bounded, run_bounded
from udfs import quality

pytestmark = pytest.mark.slow

PATIENTS_PER_UNIT = 60
HOURS = 24
WINDOW_MIN = 60  # PhysioNet charting is hourly
FAHRENHEIT_UNIT, FAHRENHEIT_HOURS = "MICU", (10, 18)  # hours after the first admission
SILENT_UNIT, SILENT_HOURS = "SICU", (8, 14)
VITALS, LABS = topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name
GARBAGE = 3  # undecodable lab payloads


@pytest.fixture(scope="module")
def replayed(settings: Settings) -> dict[str, Any]:
    if not settings.physionet_setA.exists():
        pytest.skip(f"PhysioNet 2019 set A is not at {settings.physionet_setA}")
    df = qf.patients_by_unit(pd.read_parquet(settings.physionet_setA), PATIENTS_PER_UNIT, HOURS)
    faulted = qf.replay_with_faults(
        df,
        settings.require_phi_key(),
        fahrenheit=(FAHRENHEIT_UNIT, FAHRENHEIT_HOURS),
        silent_labs=(SILENT_UNIT, SILENT_HOURS),
    )
    start = faulted.start
    name_of = {t.name: n for n, t in data_quality.INPUTS.items()}
    inputs: dict[str, list[Any]] = {"vitals": [], "labs": [], "adt": []}
    for topic, recs in faulted.records.items():
        inputs[name_of[topic]] = list(recs)
    # a few payloads no schema reads, mid-replay: dead-lettered, not counted in a window
    mid = codec.epoch_ms(start + timedelta(hours=6))
    at = next(i for i, r in enumerate(inputs["labs"]) if codec.epoch_ms(r["event_time"]) >= mid)
    for k in range(GARBAGE):
        inputs["labs"].insert(at, (b"\x02garbage" + bytes([k]), mid))
    return {
        "inputs": inputs,
        "faulted": faulted.fahrenheit,
        "silenced": faulted.silenced,
        "days": HOURS / 24,
        "start": start,
    }


@pytest.fixture(scope="module")
def settings_dq(settings: Settings) -> Settings:
    return dataclasses.replace(settings, quality_window_min=WINDOW_MIN)


@pytest.fixture(scope="module")
def out(
    settings_dq: Settings, replayed: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, list[dict[str, Any]]]:
    return run_bounded(
        data_quality.JOB, settings_dq, replayed["inputs"], tmp_path_factory.mktemp("dq")
    )


def _events(out: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    return pd.DataFrame(out["quality_events"])


def _hours(t: Any, start: Any) -> float:
    return float((t - start) / timedelta(hours=1))


def test_a_firmware_update_that_sends_fahrenheit_raises_a_unit_conversion_event_that_quarantines(
    out: dict[str, list[dict[str, Any]]], replayed: dict[str, Any]
) -> None:
    ev = _events(out)
    conv = ev[ev["monitor"] == "unit_conversion"].sort_values("event_time")
    assert replayed["faulted"] > 50
    assert list(conv["state"]) == ["open", "resolved"]
    assert list(conv["action"]) == ["quarantine", "clear"]
    opened, resolved = conv.iloc[0], conv.iloc[1]
    assert (opened["source_topic"], opened["facility_id"], opened["unit_id"]) == (
        VITALS,
        replay.FACILITY,
        FAHRENHEIT_UNIT,
    )
    assert opened["parameter"] == "temp_c" and 95 <= opened["observed"] <= 101
    # raised by the first window of the fault, cleared by the first window after it
    assert _hours(opened["window_start"], replayed["start"]) == pytest.approx(
        FAHRENHEIT_HOURS[0], abs=1
    )
    assert _hours(resolved["window_start"], replayed["start"]) == pytest.approx(
        FAHRENHEIT_HOURS[1], abs=1
    )
    assert resolved["opened_event_id"] == opened["event_id"]
    assert "degF" in opened["evidence_json"] and opened["sample_record_ids"]


def test_a_lab_feed_silent_for_six_hours_raises_feed_silence_and_clears_when_it_resumes(
    out: dict[str, list[dict[str, Any]]], replayed: dict[str, Any]
) -> None:
    ev = _events(out)
    silence = ev[ev["monitor"] == "feed_silence"].sort_values("event_time")
    assert replayed["silenced"] > 30
    assert list(
        zip(silence["source_topic"], silence["unit_id"], silence["state"], strict=True)
    ) == [
        (LABS, SILENT_UNIT, "open"),
        (LABS, SILENT_UNIT, "resolved"),
    ]
    opened, resumed = silence.iloc[0], silence.iloc[1]
    silent_after = quality.SILENCE_MIN[LABS] / 60
    assert _hours(opened["event_time"], replayed["start"]) == pytest.approx(
        SILENT_HOURS[0] + silent_after, abs=1
    )
    assert _hours(resumed["window_start"], replayed["start"]) == pytest.approx(
        SILENT_HOURS[1], abs=1
    )
    assert opened["action"] is None and resumed["action"] is None


def test_the_clean_sources_raise_no_event_and_the_false_alarms_per_day_are_reported(
    out: dict[str, list[dict[str, Any]]], replayed: dict[str, Any]
) -> None:
    ev = _events(out)
    # the faulted sources, and the facility's whole feeds (`*`) that include them, raise only
    # what their fault explains: the conversion, the °F values refused as out of range, the
    # silence
    faulty = {(VITALS, FAHRENHEIT_UNIT), (VITALS, "*"), (LABS, SILENT_UNIT), (LABS, "*")}
    is_faulty = [(t, u) in faulty for t, u in zip(ev["source_topic"], ev["unit_id"], strict=True)]
    faulted, clean = ev[is_faulty], ev[[not f for f in is_faulty]]
    assert set(faulted["monitor"]) <= {"unit_conversion", "dead_letter_share", "feed_silence"}
    units = {
        (data_quality.INPUTS[name].name, str(r["unit_id"] or r["prior_unit_id"]))
        for name in ("vitals", "labs", "adt")
        for r in replayed["inputs"][name]
        if isinstance(r, dict)
    }
    sources = units | {(t, "*") for t, _ in units}
    clean_source_days = len(sources - faulty) * replayed["days"]
    print(
        f"false alarms: {len(clean)} over {clean_source_days:g} clean source-days "
        f"({len(clean) / clean_source_days:.3f} per source-day)"
    )
    assert clean.empty, clean[["source_topic", "unit_id", "monitor", "reason"]].to_dict("records")


def test_every_record_is_counted_in_one_window_of_its_unit_or_dead_lettered(
    settings_dq: Settings, replayed: dict[str, Any], tmp_path: Path
) -> None:
    inputs = replayed["inputs"]
    captured: dict[str, Any] = {}

    def build(t_env: Any, settings: Settings, sources: Any, sinks: Any) -> None:
        data_quality.window_views(t_env, settings, sources)
        captured["t_env"] = t_env

    job = Job("dq-windows", None, data_quality.INPUTS, {}, build)
    build_bounded(job, settings_dq, inputs, tmp_path)
    t_env = captured["t_env"]
    windows = t_env.sql_query(
        "SELECT source_topic, unit_id, window_start_ms, records FROM quality_windows"
    )
    got: Counter[tuple[str, str]] = Counter()
    starts: Counter[tuple[str, str, int]] = Counter()
    with windows.execute().collect() as rows:
        for r in rows:
            got[(r[0], r[1])] += r[3]
            starts[(r[0], r[1], r[2])] += 1
    assert max(starts.values()) == 1  # one row per source and window
    want: Counter[tuple[str, str]] = Counter()
    for name, recs in inputs.items():
        topic = data_quality.INPUTS[name].name
        for r in recs:
            if isinstance(r, dict):
                unit = str(r["unit_id"] or r["prior_unit_id"])
                want[(topic, unit)] += 1
                want[(topic, "*")] += 1
    assert got == want
    decodable = sum(isinstance(r, dict) for recs in inputs.values() for r in recs)
    assert sum(n for (_, u), n in got.items() if u != "*") == decodable


def test_undecodable_records_are_dead_lettered_by_the_job(
    out: dict[str, list[dict[str, Any]]],
) -> None:
    dead = out["dead_letters"]
    assert len(dead) == GARBAGE
    assert {(d["source_topic"], d["stage"], d["reason_code"]) for d in dead} == {
        (LABS, data_quality.STAGE, "undecodable")
    }
