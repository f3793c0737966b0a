"""The frozen-device monitor (udfs.quality: `device_windows`, the Python reference of the data-
quality job's SQL, then `FrozenFeed` per device and `FrozenFeeds` per facility), without Flink:
a monitor or gateway that keeps re-sending its last numerics is found once every parameter has
been identical long enough, and let go when the values move or the device falls silent; a
single parameter held still (a paced heart rate, SpO2 at 100 %) is not a frozen feed. On the
real charted vital signs of four ICU data sets (training.frozen_evidence) the thresholds raise
nothing, though the same readings, judged more loosely, do."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas import codec, topics
from schemas.settings import Settings
from sinks import quarantine as actuator
from training import frozen_evidence
from udfs import quality
from udfs.quarantine import QuarantineRegistry

T = quality.Thresholds()
DEVICE = topics.VITALS_DEVICE.name
MIN = quality.MS_PER_MIN
T0 = 1_780_000_000_000 // (60 * MIN) * (60 * MIN)  # on the hour
SILENCE = quality.SILENCE_MIN[DEVICE]
LIVE_MIN = 10  # the monitor's readings move for this long before it freezes


Values = Callable[[int], dict[str, float | None]]


def _seconds(minutes: float, values: Values, start: float = 0) -> Iterator[quality.Reading]:
    """1 Hz readings from `start` ms after T0 for `minutes`: (time, record id, values(second))."""
    for s in range(int(minutes * 60)):
        at = T0 + int(start) + s * 1000
        yield at, f"mon-1@{at}", values(s)


def _live(s: int) -> dict[str, float | None]:
    """A monitor on a patient: heart rate and SpO2 moving, a signal-quality index."""
    return {
        "heart_rate_bpm": 80.0 + (s // 7) % 5,
        "spo2_pct": 96.0 + (s // 11) % 3,
        "resp_rate_per_min": 16.0,
        "spo2_signal_quality_pct": 90.0 + s % 7,
        "temp_c": None,
    }


FROZEN = {"heart_rate_bpm": 84.0, "spo2_pct": 97.0, "resp_rate_per_min": 16.0,
          "spo2_signal_quality_pct": 93.0, "temp_c": None}  # fmt: skip


def _frozen(minutes: float, then: Values | None = None) -> Iterator[quality.Reading]:
    """`LIVE_MIN` live minutes, then the last numerics again for `minutes`, then `then`."""
    yield from _seconds(LIVE_MIN, _live)
    yield from _seconds(minutes, lambda s: FROZEN, LIVE_MIN * MIN)
    if then is not None:
        yield from _seconds(10, then, (LIVE_MIN + minutes) * MIN)


def _windows(
    readings: Iterator[quality.Reading] | list[quality.Reading], t: quality.Thresholds = T
) -> list[quality.DeviceWindow]:
    return quality.device_windows(DEVICE, "mon-1", "H", "4E", list(readings), t)


def _run(windows: list[quality.DeviceWindow], t: quality.Thresholds = T) -> list[dict[str, Any]]:
    feed = quality.FrozenFeed(DEVICE, "mon-1")
    return [e for w in windows for e in feed.observe(w, t, SILENCE)]


def _evidence(e: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = json.loads(e["evidence_json"])
    return out


def test_a_monitor_re_sending_its_last_numerics_for_two_hours_opens_frozen_device_at_the_span() -> (
    None
):
    events = _run(_windows(_frozen(130)))
    assert [(e["monitor"], e["state"], e["action"]) for e in events] == [
        ("frozen_device", "open", None)
    ]
    (opened,) = events
    ev = _evidence(opened)
    first = T0 + LIVE_MIN * MIN  # the first window all of whose readings are frozen
    span = round(T.frozen_min_identical_min * MIN)
    # opened by the window whose last reading is the span after the first: not a minute before
    assert opened["event_time_ms"] == first + span + MIN
    last = first + span + 59_000  # that window's last reading
    assert ev["first_reading_ms"] == first and ev["last_reading_ms"] == last
    assert ev["readings"] == (last - first) // 1000 + 1 == opened["records"]
    assert ev["device_id"] == "mon-1" and ev["values"] == {
        k: v for k, v in FROZEN.items() if v is not None
    }
    assert ev["parameters"] == sorted(ev["values"])
    assert ev["varying_parameters"] == ["heart_rate_bpm", "resp_rate_per_min", "spo2_pct"]
    assert (opened["window_start_ms"], opened["window_end_ms"]) == (first, last)
    assert opened["sample_record_ids"] == f"mon-1@{first} mon-1@{last}"
    assert opened["source_topic"] == DEVICE and opened["unit_id"] == "4E"
    assert "mon-1" in opened["reason"] and "frozen" in opened["reason"]
    # a minute short of the span, nothing
    assert _run(_windows(_frozen(T.frozen_min_identical_min))) == []


def test_the_condition_resolves_when_the_values_move_again() -> None:
    events = _run(_windows(_frozen(150, _live)))
    assert [e["state"] for e in events] == ["open", "resolved"]
    opened, resolved = events
    ev = _evidence(resolved)
    assert ev["ended"] == "values_moved" and resolved["opened_event_id"] == opened["event_id"]
    moved_at = T0 + (LIVE_MIN + 150) * MIN
    assert resolved["event_time_ms"] == moved_at + MIN  # the first window that moved
    assert ev["last_reading_ms"] == moved_at - 1000 and ev["moved_window"]["values"] is None
    assert resolved["severity"] == "info" and resolved["action"] is None


def test_a_device_falling_silent_resolves_by_the_facilitys_clock_not_at_the_end_of_input() -> None:
    def facility(ticks_until_min: int) -> list[dict[str, Any]]:
        feeds = quality.FrozenFeeds()
        for w in _windows(_frozen(130)):
            feeds.add(w)
        for k in range(1, ticks_until_min // 5 + 1):  # the facility's 5-minute windows
            feeds.add(quality.Tick(T0 + k * 5 * MIN))
        return feeds.advance(2**62, T, quality.SILENCE_MIN.__getitem__, watermark_clock=False)

    last = T0 + (LIVE_MIN + 130) * MIN - 1000
    # the facility's other feeds went on past the device's last reading and its silence
    events = facility(LIVE_MIN + 130 + 15)
    assert [e["state"] for e in events] == ["open", "resolved"]
    ev = _evidence(events[1])
    assert ev["ended"] == "device_silent" and ev["last_reading_ms"] == last
    assert events[1]["event_time_ms"] == last + SILENCE * MIN  # when the silence was reached
    # the facility's records end with the device's (a replay's end): the condition stays open
    assert [e["state"] for e in facility(LIVE_MIN + 130)] == ["open"]


def test_a_paced_heart_rate_and_a_ventilators_rate_beside_a_moving_spo2_hand_nothing_on() -> None:
    def paced(s: int) -> dict[str, float | None]:
        return {"heart_rate_bpm": 70.0, "resp_rate_per_min": 14.0,
                "spo2_pct": 95.0 + (s // 90) % 3}  # fmt: skip

    assert _windows(_seconds(240, paced)) == []


def test_spo2_at_100_does_not_count_as_a_varying_parameter() -> None:
    def saturated(s: int) -> dict[str, float | None]:
        return {"heart_rate_bpm": 70.0, "spo2_pct": 100.0}

    # a paced rate and a saturation: one parameter that could move, too few to judge
    assert _windows(_seconds(240, saturated)) == []
    # with a respiratory rate held too, two could move: judged
    both = _windows(_seconds(240, lambda s: {**saturated(s), "resp_rate_per_min": 14.0}))
    assert [e["state"] for e in _run(both)] == ["open"]


def test_a_probe_off_or_an_empty_beds_zeros_are_no_varying_parameter() -> None:
    def probe_off(s: int) -> dict[str, float | None]:  # paced, SpO2 probe off, no RR
        return {"heart_rate_bpm": 70.0, "spo2_pct": 0.0, "spo2_signal_quality_pct": 0.0}

    def empty_bed(s: int) -> dict[str, float | None]:
        return {"heart_rate_bpm": 0.0, "spo2_pct": 0.0, "resp_rate_per_min": 0.0}

    # SpO2 0 and zeros could never move: one varying parameter or none, too few to judge
    assert _windows(_seconds(150, probe_off)) == []
    assert _windows(_seconds(150, empty_bed)) == []
    # with the respiratory rate held at a value, two could move: judged
    held = _windows(_seconds(150, lambda s: {**probe_off(s), "resp_rate_per_min": 14.0}))
    assert [e["state"] for e in _run(held)] == ["open"]


def test_a_record_delivered_twice_is_one_reading() -> None:
    """A gateway charting hourly (3 readings over 2 h: fewer than K), each record delivered
    twice: 3 readings, no event; 5 distinct ones over the same span open with 5."""
    values = {"heart_rate_bpm": 60.0, "resp_rate_per_min": 12.0, "spo2_pct": 97.0}

    def charted(every_min: int, n: int, copies: int) -> list[quality.Reading]:
        return [
            (T0 + k * every_min * MIN, f"gw:{k}", values) for k in range(n) for _ in range(copies)
        ]

    vitals = topics.VITALS_OBSERVATION.name

    def run(readings: list[quality.Reading]) -> list[dict[str, Any]]:
        feed = quality.FrozenFeed(vitals, "gw")
        windows = quality.device_windows(vitals, "gw", "H", "GW", readings, T)
        return [e for w in windows for e in feed.observe(w, T, quality.SILENCE_MIN[vitals])]

    twice = quality.device_windows(vitals, "gw", "H", "GW", charted(60, 3, 2), T)
    assert [w.records for w in twice] == [1, 1] and run(charted(60, 3, 2)) == []
    (opened,) = run(charted(30, 5, 2))
    assert opened["records"] == _evidence(opened)["readings"] == 5


def test_a_parameter_that_comes_or_goes_is_no_repeat() -> None:
    def cuff(s: int) -> dict[str, float | None]:  # a cuff pressure every 15 minutes
        bp = 120.0 if s % 900 == 0 else None
        return {**FROZEN, "sbp_mmhg": bp, "dbp_mmhg": None if bp is None else 70.0}

    assert [e["state"] for e in _run(_windows(_seconds(240, lambda s: FROZEN)))] == ["open"]
    # each cuff reading ends the run: never 2 h of identical readings
    assert _run(_windows(_seconds(240, cuff))) == []
    # three minutes of one reading are two repeats; a second whose heart rate dropped out in the
    # middle one leaves none (a frozen feed re-sends the same record, drop-outs and all)
    assert len(_windows(_seconds(3, lambda s: FROZEN))) == 2
    hr_out = _windows(
        _seconds(3, lambda s: {**FROZEN, "heart_rate_bpm": None if s == 70 else 84.0})
    )
    assert hr_out == []


def test_only_the_windows_that_repeat_and_the_one_after_them_are_handed_on() -> None:
    windows = _windows(_frozen(5, _live))
    starts = [(w.start_ms - T0) // MIN for w in windows]
    # minute 10 is the first frozen one (handed on by minute 11, which repeats it); 15 moved
    assert starts == [11, 12, 13, 14, 15]
    assert [w.repeats for w in windows] == [True, True, True, True, False]
    first = windows[0]
    assert (first.previous_first_ms, first.previous_records) == (T0 + LIVE_MIN * MIN, 60)
    assert _windows(_seconds(30, _live)) == []  # a live monitor: nothing reaches Python


def test_a_gap_as_long_as_the_silence_starts_the_run_again() -> None:
    before = list(_seconds(60, lambda s: FROZEN))
    gap = (60 + SILENCE + 1) * MIN
    after = list(_seconds(70, lambda s: FROZEN, gap))
    events = _run(_windows(before + after))
    assert events == []  # 60 min, silence, 70 min: never 2 h without a silence
    joined = list(_seconds(70, lambda s: FROZEN, (60 + SILENCE - 1) * MIN))
    assert [e["state"] for e in _run(_windows(before + joined))] == ["open"]


def test_a_frozen_device_event_is_a_valid_quality_event_that_quarantines_nothing(
    tmp_path: Path,
) -> None:
    events = _run(_windows(_frozen(150, _live)))
    schema = topics.QUALITY_EVENT.schema
    assert "frozen_device" in quality.MONITORS
    assert schema.field("monitor").allowed == quality.MONITORS
    registry = QuarantineRegistry(tmp_path)
    for e in events:
        rec = {
            f: datetime.fromtimestamp(e[f + "_ms"] / 1000, UTC) if f + "_ms" in e else e[f]
            for f in schema.field_names
        }
        decoded = codec.decode_valid(schema, codec.encode(schema, rec), e["event_time_ms"])
        assert not isinstance(decoded, codec.Rejection), decoded
        assert actuator.apply(registry, decoded) == "info"
    assert registry.all() == []


@pytest.fixture(scope="module")
def real(settings: Settings) -> Iterator[dict[str, pd.DataFrame]]:
    data = frozen_evidence.load(settings.data_dir)
    if not data:
        pytest.skip(f"no real vital signs under {settings.data_dir} (../shared/data)")
    yield {name: frozen_evidence.view(df, "charted") for name, df in data.items()}


@pytest.fixture(scope="module")
def real_monitor(settings: Settings) -> Iterator[dict[str, pd.DataFrame]]:
    """The same readings as a monitor that sends HR, SpO2 and RR only would send them."""
    data = frozen_evidence.load(settings.data_dir)
    if not data:
        pytest.skip(f"no real vital signs under {settings.data_dir} (../shared/data)")
    views = {name: frozen_evidence.view(df, "monitor") for name, df in data.items()}
    yield {name: df for name, df in views.items() if not df.empty}


def test_the_real_charted_vital_signs_raise_no_frozen_device_event(
    real: dict[str, pd.DataFrame],
) -> None:
    days = 0.0
    for name, df in real.items():
        assert frozen_evidence.monitor_events(df, T) == [], name
        days += frozen_evidence.stay_days(df)
    print(f"no frozen_device event over {days:,.0f} real stay-days: at most {3 / days:.1e} a day")
    assert days > 1000


def test_judged_more_loosely_the_same_readings_raise_events_the_thresholds_keep_out(
    real: dict[str, pd.DataFrame],
) -> None:
    """Three hourly readings an hour apart (a paced, ventilated patient's heart and respiratory
    rates, charted unchanged) would be a frozen feed at K = 3 and T = 60 min."""
    loose = dataclasses.replace(T, frozen_min_readings=3, frozen_min_identical_min=60.0)
    found = {
        name: [e for e in frozen_evidence.monitor_events(df, loose) if e["state"] == "open"]
        for name, df in real.items()
    }
    assert sum(map(len, found.values())) >= 3
    runs = frozen_evidence.runs(real["eICU demo"], T, (T.frozen_min_identical_min,))
    # the longest real run is shorter than K readings or than the span
    assert runs.longest_readings < T.frozen_min_readings or (
        runs.longest_min < T.frozen_min_identical_min
    )
    assert runs.identical / runs.pairs < 1e-3 and np.isfinite(runs.longest_min)


def test_a_monitor_sending_only_hr_spo2_and_rr_raises_the_rate_the_docs_state(
    real_monitor: dict[str, pd.DataFrame],
) -> None:
    """README and udfs/quality.py state it beside the charted view's: 68 opens in 32,315
    stay-days (2.1e-3 a device-day, about 32 a day over 15,000 monitors), nearly all paced and
    ventilated patients at SpO2 100 % charted unchanged."""
    opens = sum(
        e["state"] == "open"
        for df in real_monitor.values()
        for e in frozen_evidence.monitor_events(df, T)
    )
    days = sum(frozen_evidence.stay_days(df) for df in real_monitor.values())
    assert (opens, round(days)) == (68, 32_315)
    assert f"{opens / days:.1e}" == "2.1e-03" and round(15_000 * opens / days) == 32
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for doc in (" ".join(str(quality.__doc__).split()), readme):
        assert "68 opens in 32,315 stay-days" in doc or "68 in 32,315" in doc
        assert "2.1e-3 a device-day" in doc and "placeholder" in doc and "partial freeze" in doc
