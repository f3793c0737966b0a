"""The data-quality job on the MiniCluster finds a frozen device feed among live ones: 1 Hz
monitor numerics simulated from real set-A patients (the bundled sample: no data set needed),
where one monitor's gateway re-sends its last numerics for two hours and then sends live ones
again, another freezes and then falls silent, and a paced, ventilated patient's monitor sends a
constant heart rate and respiratory rate beside a moving SpO2; and a vitals gateway that charts
the same observation set every 15 minutes. Each frozen feed opens a `frozen_device` event with
its evidence once its readings have been identical for the span the thresholds ask
(udfs.quality.Thresholds), and resolves when the values move or the device falls silent; the
live monitors and the paced patient raise none. The events equal those of the Python reference
of the job's SQL (udfs.quality.device_windows) run through the same monitor."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs import data_quality
from jobs.feeds import device_sim, replay
from schemas import codec, topics
from schemas.settings import Settings
from tests import quality_faults as qf
from tests.flink_harness import run_bounded
from udfs import quality

pytestmark = pytest.mark.slow

T = quality.Thresholds()
MINUTES = 140
PLAN = device_sim.DevicePlan(beds=4, seconds=MINUTES * 60)
START = PLAN.start
DEVICE, VITALS = topics.VITALS_DEVICE.name, topics.VITALS_OBSERVATION.name
LIVE, MOVES_AGAIN, PACED, GOES_SILENT = "mon-0001", "mon-0002", "mon-0003", "mon-0004"
FROZEN = {MOVES_AGAIN: (5, 130), GOES_SILENT: (2, None)}  # minutes: frozen from, to
SILENT_FROM_MIN = 128
GATEWAY, LIVE_GATEWAY = "gw-0005", "gw-0006"  # vitals charted by a device gateway
CHARTED_EVERY_MIN = 15
OTHER_FACILITY = "hospital-99"


def _at(minutes: float) -> Any:
    return START + timedelta(minutes=minutes)


def _ms(minutes: float) -> int:
    return codec.epoch_ms(_at(minutes))


def _pace(records: list[dict[str, Any]], device_id: str) -> None:
    """A paced, ventilated patient whose monitor sends no signal-quality index, pressures or
    temperature: heart rate 70 and respiratory rate 14 every second, SpO2 as measured."""
    for r in records:
        if r["device_id"] == device_id:
            r.update(
                heart_rate_bpm=70.0, resp_rate_per_min=14.0, spo2_signal_quality_pct=None,
                sbp_mmhg=None, dbp_mmhg=None, map_mmhg=None, temp_c=None,
            )  # fmt: skip


def _observations(device: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Two gateways charting a patient each every 15 minutes: one the same set every time
    (frozen from the start), the other its patient's monitor values at that second."""
    live = {r["event_time"]: r for r in device if r["device_id"] == LIVE}
    out = []
    for k in range(MINUTES // CHARTED_EVERY_MIN + 1):
        at = _at(k * CHARTED_EVERY_MIN)
        for gw, values in (
            (GATEWAY, {"heart_rate_bpm": 82.0, "spo2_pct": 96.0, "resp_rate_per_min": 16.0,
                       "sbp_mmhg": 121.0, "dbp_mmhg": 64.0, "map_mmhg": 83.0}),
            (LIVE_GATEWAY, {c: live[at][c] for c in ("heart_rate_bpm", "spo2_pct",
                                                    "resp_rate_per_min")}),
        ):  # fmt: skip
            rec: dict[str, Any] = dict.fromkeys(topics.VITALS_OBSERVATION.schema.field_names)
            rec.update(
                observation_id=f"{gw}:{k}", patient_token=f"patient-{gw}",
                facility_id=device[0]["facility_id"], unit_id="GW", bed_id=f"GW/{gw}",
                device_id=gw, event_time=at, source=f"gateway/{gw}", **values,
            )  # fmt: skip
            out.append(rec)
    return out


@pytest.fixture(scope="module")
def run(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    df = pd.read_parquet(replay.SAMPLE)
    key = settings.require_phi_key()
    device = [r for sec in device_sim.device_seconds(df, PLAN, key, "setA-sample") for r in sec]
    frozen = {
        d: qf.freeze_device(device, d, _at(a), None if b is None else _at(b))
        for d, (a, b) in FROZEN.items()
    }
    silenced = qf.silence_device(device, GOES_SILENT, _at(SILENT_FROM_MIN))
    _pace(device, PACED)
    vitals = _observations(device)
    # each gateway record delivered twice (a resend after a lost ack): the same readings
    vitals = [dict(r) for r in vitals for _ in range(2)]
    # another facility's live monitor, whose device id is the frozen one's (ids are a facility's)
    device += [
        {**r, "facility_id": OTHER_FACILITY, "device_id": MOVES_AGAIN,
         "bed_id": f"{OTHER_FACILITY}/{r['unit_id']}/bed-0001"}
        for r in device
        if r["device_id"] == LIVE
    ]  # fmt: skip
    device.sort(key=lambda r: r["event_time"])
    out = run_bounded(
        data_quality.JOB,
        settings,
        {"device": device, "vitals": vitals},
        Path(tmp_path_factory.mktemp("frozen")),
    )
    events = [e for e in out["quality_events"] if e["monitor"] == "frozen_device"]
    return {"device": device, "vitals": vitals, "frozen": frozen, "silenced": silenced,
            "events": events}  # fmt: skip


def _device(e: dict[str, Any]) -> str:
    return str(json.loads(e["evidence_json"])["device_id"])


def _by_device(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in sorted(events, key=lambda e: e["event_time"]):
        out.setdefault(_device(e), []).append(e)
    return out


def test_each_frozen_feed_opens_once_its_readings_are_identical_for_the_span_and_resolves(
    run: dict[str, Any],
) -> None:
    assert run["frozen"][MOVES_AGAIN] > 7000 and run["silenced"] > 500
    got = _by_device(run["events"])
    assert sorted(got) == sorted([MOVES_AGAIN, GOES_SILENT, GATEWAY])
    span_ms = T.frozen_min_identical_min * quality.MS_PER_MIN
    for device, (frozen_from, _) in FROZEN.items():
        opened = got[device][0]
        ev = json.loads(opened["evidence_json"])
        # the run begins with the first window all of whose readings are frozen (the last live
        # record, which they repeat, shares its window with live ones)
        first = _ms(frozen_from)
        assert ev["first_reading_ms"] == first
        assert (opened["source_topic"], opened["state"], opened["action"]) == (
            DEVICE, "open", None,
        )  # fmt: skip
        # at the end of the first one-minute window whose last reading is `span` after the first
        assert codec.epoch_ms(opened["event_time"]) == first + span_ms + 60_000
        assert ev["identical_min"] >= T.frozen_min_identical_min
        assert ev["readings"] == (ev["last_reading_ms"] - first) // 1000 + 1  # every second
        assert len(ev["varying_parameters"]) >= T.frozen_min_varying
        assert codec.epoch_ms(opened["window_start"]) == first
        assert opened["records"] == ev["readings"] and opened["parameter"] is None
        assert device in opened["reason"] and opened["opened_event_id"] is None
    moved = got[MOVES_AGAIN][1]
    assert (moved["state"], json.loads(moved["evidence_json"])["ended"]) == (
        "resolved", "values_moved",
    )  # fmt: skip
    moved_at = FROZEN[MOVES_AGAIN][1]
    assert moved_at is not None
    assert codec.epoch_ms(moved["event_time"]) == _ms(moved_at + 1)
    assert moved["opened_event_id"] == got[MOVES_AGAIN][0]["event_id"]
    silent = got[GOES_SILENT][1]
    assert (silent["state"], json.loads(silent["evidence_json"])["ended"]) == (
        "resolved", "device_silent",
    )  # fmt: skip
    last = _ms(SILENT_FROM_MIN) - 1000
    due = last + round(quality.SILENCE_MIN[DEVICE] * quality.MS_PER_MIN)
    assert codec.epoch_ms(silent["event_time"]) == due
    assert json.loads(silent["evidence_json"])["last_reading_ms"] == last
    assert {d: [e["state"] for e in got[d]] for d in FROZEN} == {
        MOVES_AGAIN: ["open", "resolved"],
        GOES_SILENT: ["open", "resolved"],
    }


def test_a_gateway_charting_the_same_set_opens_after_the_readings_and_span_and_stays_open(
    run: dict[str, Any],
) -> None:
    (opened,) = _by_device(run["events"])[GATEWAY]
    ev = json.loads(opened["evidence_json"])
    assert opened["source_topic"] == VITALS and opened["unit_id"] == "GW"
    # the 9th reading (0, 15, … 120 minutes) spans the 120 minutes; the end of the input is
    # no silence, so it stays open
    assert ev["readings"] == 9 and ev["identical_min"] == pytest.approx(120)
    assert ev["values"]["heart_rate_bpm"] == 82.0 and ev["parameters"] == sorted(ev["values"])
    assert opened["sample_record_ids"] == f"{GATEWAY}:0 {GATEWAY}:8"


def test_a_live_monitor_of_another_facility_with_the_frozen_ones_device_id_is_judged_apart(
    run: dict[str, Any],
) -> None:
    other = [r for r in run["device"] if r["facility_id"] == OTHER_FACILITY]
    assert other and {r["device_id"] for r in other} == {MOVES_AGAIN}
    assert {e["facility_id"] for e in run["events"]} == {run["device"][0]["facility_id"]}
    assert [e["state"] for e in _by_device(run["events"])[MOVES_AGAIN]] == ["open", "resolved"]


def test_a_gateway_record_delivered_twice_is_one_reading(run: dict[str, Any]) -> None:
    (opened,) = _by_device(run["events"])[GATEWAY]
    sent = [r["observation_id"] for r in run["vitals"] if r["device_id"] == GATEWAY]
    assert len(sent) == 2 * len(set(sent))
    # the 9th distinct reading (0, 15, … 120 minutes) spans the 120 minutes
    assert opened["records"] == json.loads(opened["evidence_json"])["readings"] == 9


def test_only_the_frozen_feeds_raise_events_not_a_live_monitor_a_paced_patient_or_a_gateway(
    run: dict[str, Any],
) -> None:
    devices = {_device(e) for e in run["events"]}
    assert devices == {MOVES_AGAIN, GOES_SILENT, GATEWAY}
    assert not devices & {LIVE, PACED, LIVE_GATEWAY}
    paced = [r for r in run["device"] if r["device_id"] == PACED]
    assert {r["heart_rate_bpm"] for r in paced} == {70.0}
    assert len({r["spo2_pct"] for r in paced}) > 3  # SpO2 moves, which is what tells


def _f32(x: Any) -> Any:
    """A value as the topic's float field carries it."""
    return None if x is None else float(np.float32(x))


def test_the_jobs_events_equal_the_python_reference_of_its_sql_through_the_same_monitor(
    run: dict[str, Any], settings: Settings
) -> None:
    feeds: dict[str, quality.FrozenFeeds] = {}
    for topic, records, rid in (
        (DEVICE, run["device"], None),
        (VITALS, run["vitals"], "observation_id"),
    ):
        params = data_quality.parameters(
            next(n for n, t in data_quality.INPUTS.items() if t.name == topic)
        )
        by: dict[tuple[str, str], list[quality.Reading]] = {}
        units = {}
        for r in records:
            at = codec.epoch_ms(r["event_time"])
            ident = r[rid] if rid else f"{r['device_id']}@{at}"
            values = {p: _f32(r[p]) for p in params}
            dev = (r["facility_id"], r["device_id"])
            by.setdefault(dev, []).append((at, ident, values))
            units[dev] = r["unit_id"]
        for (f, d), readings in by.items():
            for w in quality.device_windows(topic, d, f, units[f, d], readings, T):
                feeds.setdefault(f, quality.FrozenFeeds()).add(w)
    # each facility's clock: its whole device feed's windows
    window_ms = settings.quality_window_min * quality.MS_PER_MIN
    ends = {(r["facility_id"], codec.epoch_ms(r["event_time"]) // window_ms) for r in run["device"]}
    for f, k in ends:
        feeds.setdefault(f, quality.FrozenFeeds()).add(quality.Tick((k + 1) * window_ms))
    want = [
        e
        for f in sorted(feeds)
        for e in feeds[f].advance(2**62, T, quality.SILENCE_MIN.__getitem__, watermark_clock=False)
    ]
    assert want, "the reference finds the frozen feeds"
    key = ("event_id", "state", "reason", "evidence_json")
    got = sorted(tuple(e[k] for k in key) for e in run["events"])
    assert got == sorted(tuple(e[k] for k in key) for e in want)


def test_each_inputs_device_windows_meet_their_own_over_window_before_the_union() -> None:
    """A rowtime OVER window drops the rows behind its input's watermark: after a union, the
    1 Hz device numerics (once the vitals input idles) would carry it past a quiet gateway's
    windows. So each input's device windows have an OVER window of their own."""
    inputs = [n for n in data_quality.INPUTS if n in data_quality.FROZEN_INPUTS]
    assert len(inputs) == 2
    windows = [data_quality.device_windows_sql(n, data_quality.INPUTS[n].name, T) for n in inputs]
    parts = data_quality.frozen_sql(windows).split(" UNION ALL ")
    assert len(parts) == len(inputs)
    for part, w in zip(parts, windows, strict=True):
        assert w in part and part.count("TUMBLE(") == 1
        assert part.count("LAG(values_json, 1) OVER (PARTITION BY") == 1
        assert "PARTITION BY source_topic, facility_id, device_id" in part
