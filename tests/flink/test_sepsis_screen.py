"""Values refused alone in the screening job, in memory on the MiniCluster (no Kafka): a bedside
monitor whose temperature probe sends °F (98.6 and up, outside vitals.device.v1's [14, 46] °C)
keeps its heart rates, SpO2 and respiratory rates screened; each such record is accepted with
its temperature null and the temperature dead-lettered, `value_out_of_range`, naming temp_c
(schemas.codec, "Refused values"); a second that also sent a NaN SpO2 has that value
dead-lettered apart, `value_not_a_number`: one letter per refused value, each its own reason. A
record whose only value is the °F temperature is rejected whole (`out_of_range`), as before.
Counts add up: received = accepted (charted) + record-level dead letters. An observation of
ACVPU 'V' beside a °F temperature is screened with its 'V', a NEWS2 red flag."""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import sepsis_screen
from schemas import topics
from schemas.settings import Settings
from tests.flink_harness import run_bounded

pytestmark = pytest.mark.slow

DEVICE = topics.VITALS_DEVICE.name
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
MINUTES = 6
PATIENT, OTHER, VOICE, OXYGEN = "tok-fahrenheit", "tok-celsius", "tok-voice", "tok-oxygen"
NAN_EVERY = 45  # the °F monitor's SpO2 is NaN every 45th second, beside its other values


def _second(token: str, i: int, **values: float | None) -> dict[str, Any]:
    bed = "bed-01" if token == PATIENT else "bed-02"
    rec: dict[str, Any] = {f.name: None for f in topics.VITALS_DEVICE.schema.fields if f.nullable}
    return rec | {
        "device_id": f"mon-{bed}",
        "patient_token": token,
        "facility_id": "hospital-a",
        "unit_id": "MICU",
        "bed_id": f"MICU/{bed}",
        "event_time": T0 + timedelta(seconds=i),
        "source": "test",
        **values,
    }


def _observation(token: str, observation_id: str, second: int, **values: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {f.name: None for f in topics.VITALS_OBSERVATION.schema.fields}
    return rec | {
        "observation_id": observation_id,
        "patient_token": token,
        "facility_id": "hospital-a",
        "unit_id": "MICU",
        "event_time": T0 + timedelta(seconds=second),
        "source": "test",
        **values,
    }


@pytest.fixture(scope="module")
def run(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    device = []
    for i in range(MINUTES * 60):
        # the °F probe's monitor: febrile 101.3 °F beside a tachycardia; every 30th second the
        # temperature alone (a probe reading between the ECG's numerics)
        if i % 30 == 29:
            device.append(_second(PATIENT, i, temp_c=101.3))
        else:
            spo2 = math.nan if i % NAN_EVERY == 0 else 95.0
            vitals = {"heart_rate_bpm": 121.0, "spo2_pct": spo2, "resp_rate_per_min": 24.0}
            device.append(_second(PATIENT, i, temp_c=101.3, **vitals))
        # a monitor beside it reading in °C
        device.append(_second(OTHER, i, heart_rate_bpm=80.0, temp_c=37.0))
    # a charted observation, after the monitors' minutes: responds to voice, temperature in °F
    voice = _observation(VOICE, "obs-voice", MINUTES * 60 + 30, acvpu="V", temp_c=98.6)
    # FiO2 0.40 charted; 20 minutes later an FiO2 of 40 (percent, refused) beside "not on
    # oxygen" and ACVPU 'A', which keeps the record
    oxygen = [
        _observation(
            OXYGEN, "obs-o2-1", MINUTES * 60 + 60, fio2_fraction=0.40, spo2_pct=93.0,
            resp_rate_per_min=22.0, heart_rate_bpm=100.0,
        ),
        _observation(
            OXYGEN, "obs-o2-2", MINUTES * 60 + 60 + 20 * 60, fio2_fraction=40.0,
            on_supplemental_o2=False, acvpu="A",
        ),
    ]  # fmt: skip
    on = dataclasses.replace(settings, device_numerics=True)
    inputs = {"device": device, "vitals": [voice, *oxygen]}
    out = run_bounded(sepsis_screen.JOB, on, inputs, Path(tmp_path_factory.mktemp("fahrenheit")))
    return {"device": device, **out}


def test_a_monitor_sending_fahrenheit_temperatures_still_has_its_heart_rates_screened(
    run: dict[str, Any],
) -> None:
    states = [s for s in run["sepsis_screen"] if s["patient_token"] == PATIENT]
    assert len(states) >= MINUTES - 1, "a state per charted minute"
    assert all(s["heart_rate_bpm"] == pytest.approx(121.0) for s in states)
    assert all(s["resp_rate_per_min"] == pytest.approx(24.0) for s in states)
    assert all(s["temp_c"] is None for s in states), "no °F value reaches the state"
    others = [s for s in run["sepsis_screen"] if s["patient_token"] == OTHER]
    assert others and all(s["temp_c"] == pytest.approx(37.0) for s in others)


def test_each_refused_value_is_dead_lettered_once_with_its_own_reason_and_counts_add_up(
    run: dict[str, Any],
) -> None:
    device = run["device"]
    letters = [d for d in run["dead_letters"] if d["source_topic"] == DEVICE]
    codes = Counter(d["reason_code"] for d in letters)
    mine = [r for r in device if r["patient_token"] == PATIENT]
    with_vitals = sum(1 for r in mine if r["heart_rate_bpm"] is not None)
    nan = sum(1 for r in mine if r["spo2_pct"] is not None and math.isnan(r["spo2_pct"]))
    only_temperature = sum(1 for r in mine if r["heart_rate_bpm"] is None)
    assert nan > 0
    assert codes == {
        "value_out_of_range": with_vitals,
        "value_not_a_number": nan,
        "out_of_range": only_temperature,
    }
    reasons = {
        code: {d["reason"] for d in letters if d["reason_code"] == code}
        for code in ("value_out_of_range", "value_not_a_number")
    }
    assert reasons == {
        "value_out_of_range": {"temp_c=101.3 outside [14, 46]"},
        "value_not_a_number": {"spo2_pct is NaN"},
    }
    assert all(d["payload"] and d["stage"] == sepsis_screen.STAGE for d in letters)
    # every refused value's dead letter cites an accepted record, once per value: a second with
    # a NaN SpO2 and a °F temperature has two, every other one
    per_record = Counter(
        d["source_offset"] for d in letters if d["reason_code"].startswith("value_")
    )
    assert Counter(per_record.values()) == {1: with_vitals - nan, 2: nan}
    # received = accepted (each charted once) + the records dead-lettered whole
    record_level = sum(n for code, n in codes.items() if not code.startswith("value_"))
    charted = sum(r["records"] for r in run["vitals_charted"])
    assert charted + record_level == len(device)


def test_an_observation_of_acvpu_v_beside_a_fahrenheit_temperature_is_screened_with_its_red_flag(
    run: dict[str, Any],
) -> None:
    """ACVPU is a measurement (schemas.avro.Schema.measurements): it keeps the observation when
    its temperature is refused, so 'V' reaches the state and scores NEWS2's red flag (RCP NEWS2
    2017: consciousness other than Alert scores 3), the temperature dead-lettered alone."""
    (state,) = [s for s in run["sepsis_screen"] if s["patient_token"] == VOICE]
    assert (state["acvpu"], state["temp_c"]) == ("V", None)
    assert state["news2_red_flag"] is True and state["news2_score"] == 3
    vitals = topics.VITALS_OBSERVATION.name
    letters = [d for d in run["dead_letters"] if d["source_topic"] == vitals]
    assert ("value_out_of_range", "temp_c=98.6 outside [14, 46]") in [
        (d["reason_code"], d["reason"]) for d in letters
    ]


def test_an_oxygen_flag_beside_a_refused_fio2_does_not_drop_the_older_fio2_from_the_state(
    run: dict[str, Any],
) -> None:
    """FiO2 and the oxygen flag are one measurement (wardflow.refused_with): an observation kept
    by its ACVPU whose FiO2 of 40 (percent) was refused has its "not on oxygen" refused with it,
    so the state keeps the FiO2 0.40 charted 20 minutes before (udfs.sepsis OXYGEN_PAIR would
    otherwise take the flag as newer than it and drop it) and NEWS2 stays 7, not 5."""
    first, second = sorted(
        (s for s in run["sepsis_screen"] if s["patient_token"] == OXYGEN),
        key=lambda s: s["event_time"],
    )
    assert first["news2_score"] == 7
    assert second["fio2_fraction"] == pytest.approx(0.40)
    assert second["on_supplemental_o2"] is not False
    assert (second["acvpu"], second["news2_score"]) == ("A", 7)
    vitals = topics.VITALS_OBSERVATION.name
    letters = [d for d in run["dead_letters"] if d["source_topic"] == vitals]
    assert sorted((d["reason_code"], d["reason"]) for d in letters) == [
        ("value_out_of_range", "fio2_fraction=40 outside [0.21, 1]"),
        ("value_out_of_range", "on_supplemental_o2 refused with fio2_fraction"),
        ("value_out_of_range", "temp_c=98.6 outside [14, 46]"),
    ]
