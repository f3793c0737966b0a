"""Values refused alone in the screening job, in memory on the MiniCluster (no Kafka): a bedside
monitor whose temperature probe sends °F (98.6 and up, outside vitals.device.v1's [14, 46] °C)
keeps its heart rates, SpO2 and respiratory rates screened; each such record is accepted with
its temperature null and dead-lettered once, `value_out_of_range`, naming temp_c (schemas.codec,
"Refused values"); a record whose only value is the °F temperature is rejected whole
(`out_of_range`), as before. Counts add up: received = accepted (charted) + record-level dead
letters."""

from __future__ import annotations

import dataclasses
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
PATIENT, OTHER = "tok-fahrenheit", "tok-celsius"


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


@pytest.fixture(scope="module")
def run(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    device = []
    for i in range(MINUTES * 60):
        # the °F probe's monitor: febrile 101.3 °F beside a tachycardia; every 30th second the
        # temperature alone (a probe reading between the ECG's numerics)
        if i % 30 == 29:
            device.append(_second(PATIENT, i, temp_c=101.3))
        else:
            vitals = {"heart_rate_bpm": 121.0, "spo2_pct": 95.0, "resp_rate_per_min": 24.0}
            device.append(_second(PATIENT, i, temp_c=101.3, **vitals))
        # a monitor beside it reading in °C
        device.append(_second(OTHER, i, heart_rate_bpm=80.0, temp_c=37.0))
    on = dataclasses.replace(settings, device_numerics=True)
    out = run_bounded(
        sepsis_screen.JOB, on, {"device": device}, Path(tmp_path_factory.mktemp("fahrenheit"))
    )
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


def test_each_record_with_a_refused_value_is_dead_lettered_once_and_counts_add_up(
    run: dict[str, Any],
) -> None:
    device = run["device"]
    letters = [d for d in run["dead_letters"] if d["source_topic"] == DEVICE]
    codes = Counter(d["reason_code"] for d in letters)
    with_vitals = sum(
        1 for r in device if r["patient_token"] == PATIENT and r["heart_rate_bpm"] is not None
    )
    only_temperature = sum(
        1 for r in device if r["patient_token"] == PATIENT and r["heart_rate_bpm"] is None
    )
    assert codes == {"value_out_of_range": with_vitals, "out_of_range": only_temperature}
    refused = [d for d in letters if d["reason_code"] == "value_out_of_range"]
    assert {d["reason"] for d in refused} == {"temp_c=101.3 outside [14, 46]"}
    assert all(d["payload"] and d["stage"] == sepsis_screen.STAGE for d in letters)
    # every refused value's dead letter cites an accepted record: one per record, each once
    assert len({d["source_offset"] for d in refused}) == len(refused)
    # received = accepted (each charted once) + the records dead-lettered whole
    record_level = sum(n for code, n in codes.items() if not code.startswith("value_"))
    charted = sum(r["records"] for r in run["vitals_charted"])
    assert charted + record_level == len(device)
