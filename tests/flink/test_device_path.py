"""The device-rate path of the screening job, in memory: 1 Hz monitor numerics (simulated from
real set-A patients, with artefacts and impossible values) become charted minutes, screened
states and alerts that equal an offline computation over the same records (pandas charting,
then the screening reference), and every device record is charted or dead-lettered."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs import sepsis_screen
from jobs.feeds import device_sim, replay
from schemas import codec, topics
from schemas.settings import Settings
from tests import reference_charting, reference_screen
from tests.flink_harness import run_bounded
from udfs.device import CHANNELS

pytestmark = pytest.mark.slow

PLAN = device_sim.DevicePlan(beds=12, seconds=45 * 60, corrupt_rate=2e-4)
DEVICE = topics.VITALS_DEVICE.schema


@pytest.fixture(scope="module")
def run(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    df = pd.read_parquet(replay.SAMPLE)
    key = settings.require_phi_key()
    device = [r for sec in device_sim.device_seconds(df, PLAN, key, "setA-sample") for r in sec]
    swap_monitor(device)
    clinical = device_sim.clinical_records(df, PLAN, key, "setA-sample")
    inputs: dict[str, list[dict[str, Any]]] = {"device": device, "labs": [], "adt": []}
    for topic, rec in clinical:
        inputs["labs" if topic == topics.LABS_RESULT.name else "adt"].append(rec)
    on = dataclasses.replace(settings, device_numerics=True)
    out = run_bounded(sepsis_screen.JOB, on, inputs, Path(tmp_path_factory.mktemp("device-memory")))
    return {"device": device, "clinical": clinical, **out}


def swap_monitor(device: list[dict[str, Any]]) -> None:
    """The first patient's monitor is swapped and the patient moved to another bed half-way
    through a minute, and moved back ten minutes later half-way through another: each minute's
    device and bed are its last record's."""
    first = device[0]["patient_token"]
    t0 = device[0]["event_time"]
    for r in device:
        if r["patient_token"] == first and 630 <= (r["event_time"] - t0).total_seconds() < 1230:
            r["device_id"] = "mon-0099"
            r["bed_id"] = r["bed_id"].rsplit("/", 1)[0] + "/bed-0099"


def test_every_device_record_is_charted_or_dead_lettered_with_its_reason(
    run: dict[str, Any],
) -> None:
    device = run["device"]
    checked = [codec.check(DEVICE, r) for r in device]
    rejected = Counter(c.reason_code for c in checked if isinstance(c, codec.Rejection))
    # a corrupt value beside values in range is refused alone: the record is charted, and
    # each refused value dead-lettered
    refused = Counter(
        r.reason_code for c in checked if isinstance(c, codec.Accepted) for r in c.refused
    )
    assert refused["value_out_of_range"] > 0, "the plan corrupts some records"
    letters = [d for d in run["dead_letters"] if d["source_topic"] == topics.VITALS_DEVICE.name]
    assert Counter(d["reason_code"] for d in letters) == rejected + refused
    charted_records = sum(r["records"] for r in run["vitals_charted"])
    assert charted_records + sum(rejected.values()) == len(device)


def test_the_charted_minutes_equal_the_pandas_charting_of_the_same_records(
    run: dict[str, Any],
) -> None:
    want = reference_charting.charted(run["device"]).set_index("chart_id").sort_index()
    got = pd.DataFrame(run["vitals_charted"]).set_index("chart_id").sort_index()
    assert list(got.index) == list(want.index)
    for col in ("patient_token", "facility_id", "unit_id", "bed_id", "device_id", "records"):
        assert (got[col] == want[col]).all(), col
    assert (got.device_id == "mon-0099").sum() >= 10, "the swapped monitor charts its minutes"
    assert (pd.to_datetime(got.event_time, utc=True) == want.event_time).all()
    for c in CHANNELS:
        assert (got[c.valid_s] == want[c.valid_s]).all(), c.valid_s
        g = got[c.param].astype("float64").to_numpy()
        w = want[c.param].astype("float64").to_numpy()
        assert np.array_equal(np.isnan(g), np.isnan(w)), c.param
        assert np.array_equal(np.float32(g[~np.isnan(g)]), np.float32(w[~np.isnan(w)])), c.param
    artefact_seconds = sum((want.records - want[c.valid_s]).sum() for c in CHANNELS[:2])
    assert artefact_seconds > 0, "the simulated artefacts are left out of the chart"


def test_states_and_alerts_from_device_numerics_equal_the_reference_over_charted_minutes(
    run: dict[str, Any],
) -> None:
    items = (
        reference_charting.as_observations(reference_charting.charted(run["device"]))
        + run["clinical"]
    )
    items.sort(key=lambda tr: tr[1]["event_time"])
    rows, events = reference_screen.run(items)
    reference_screen.assert_states_equal(run["sepsis_screen"], rows)
    assert events, "the simulated patients raise alerts"
    reference_screen.assert_events_equal(run["alert_events"], events)
