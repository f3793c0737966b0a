"""The charting rules of device-rate numerics (udfs/device.py) and the charted topic's contract."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd

from schemas import topics
from udfs.device import (
    CHANNELS,
    CHART_INTERVAL_S,
    CONTINUOUS_MIN_VALID_S,
    chart_frame,
    chart_phase_s,
    chart_start_ms,
    valid_sql,
)

MINUTE = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
T0 = MINUTE + timedelta(seconds=chart_phase_s("p1"))  # the start of one of p1's minutes


def second(i: int, **values: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {f.name: None for f in topics.VITALS_DEVICE.schema.fields}
    return rec | {
        "device_id": "mon-1",
        "patient_token": "p1",
        "facility_id": "GH",
        "unit_id": "ICU",
        "bed_id": "ICU/1",
        "event_time": T0 + timedelta(seconds=i),
        "source": "test",
        **values,
    }


def test_the_charted_value_is_the_median_of_the_valid_seconds_only() -> None:
    recs = [second(i, heart_rate_bpm=80.0 + i % 4, spo2_pct=97.0) for i in range(40)]
    recs += [second(40 + i, heart_rate_bpm=180.0, ecg_leads_off=True) for i in range(10)]
    recs += [second(50 + i, spo2_pct=0.0, spo2_probe_off=True) for i in range(10)]
    (row,) = chart_frame(pd.DataFrame(recs)).to_dict("records")
    assert row["records"] == 60
    assert row["heart_rate_bpm_valid_s"] == 40 and row["heart_rate_bpm"] == 81.5  # even count
    assert row["spo2_pct_valid_s"] == 40 and row["spo2_pct"] == 97.0
    assert row["event_time"] == pd.Timestamp(T0 + timedelta(seconds=59.999))


def test_a_continuous_channel_with_too_few_valid_seconds_is_not_charted() -> None:
    n = CONTINUOUS_MIN_VALID_S - 1
    recs = [
        second(i, heart_rate_bpm=90.0, spo2_pct=95.0, spo2_signal_quality_pct=20) for i in range(n)
    ]
    (row,) = chart_frame(pd.DataFrame(recs)).to_dict("records")
    assert pd.isna(row["heart_rate_bpm"]) and row["heart_rate_bpm_valid_s"] == n
    assert pd.isna(row["spo2_pct"]) and row["spo2_pct_valid_s"] == 0  # poor signal quality


def test_one_cuff_reading_charts_the_blood_pressure_of_its_minute() -> None:
    recs = [second(i, heart_rate_bpm=70.0) for i in range(60)]
    recs[30] |= {"sbp_mmhg": 118.0, "dbp_mmhg": 64.0, "map_mmhg": 82.0}
    (row,) = chart_frame(pd.DataFrame(recs)).to_dict("records")
    assert (row["sbp_mmhg"], row["sbp_mmhg_valid_s"]) == (118.0, 1)


def test_each_patients_minutes_start_at_their_own_second_of_the_utc_minute() -> None:
    assert (chart_phase_s("p1"), chart_phase_s("p2")) == (7, 5)  # CRC-32 of the token, mod 60
    recs = [second(i, heart_rate_bpm=60.0) for i in range(30, 150)]
    recs += [second(i, heart_rate_bpm=100.0) | {"patient_token": "p2"} for i in range(60)]
    out = chart_frame(pd.DataFrame(recs))
    starts = [(t - MINUTE).total_seconds() for t in out.minute_start]
    assert list(zip(out.patient_token, starts, out.records, strict=True)) == [
        ("p1", 7.0, 30),
        ("p1", 67.0, 60),
        ("p1", 127.0, 30),
        ("p2", 5.0, 58),  # p2's records at 08:00:07..08:01:04
        ("p2", 65.0, 2),
    ]


def test_many_monitors_minutes_end_spread_over_the_whole_minute() -> None:
    phases = Counter(chart_phase_s(f"patient-{i}") for i in range(6000))
    assert set(phases) == set(range(CHART_INTERVAL_S))
    assert max(phases.values()) < 2 * 6000 / CHART_INTERVAL_S


def test_a_minute_holds_its_start_and_ends_just_before_the_next() -> None:
    start = int(T0.timestamp() * 1000)
    assert chart_start_ms("p1", start) == start
    assert chart_start_ms("p1", start + 59_999) == start
    assert chart_start_ms("p1", start + 60_000) == start + 60_000
    assert chart_start_ms("p1", start - 1) == start - 60_000


def test_the_validity_sql_names_every_artefact_of_its_channel() -> None:
    spo2 = next(c for c in CHANNELS if c.param == "spo2_pct")
    sql = valid_sql(spo2)
    assert sql.startswith("spo2_pct IS NOT NULL AND NOT (")
    for a in spo2.artefacts:
        assert a.column in sql


def test_the_charted_topic_carries_a_value_and_its_valid_seconds_for_every_channel() -> None:
    charted = topics.VITALS_CHARTED.schema
    device = topics.VITALS_DEVICE.schema
    for c in CHANNELS:
        assert charted.field(c.param).value_range == device.field(c.param).value_range
        assert charted.field(c.valid_s).base == "int"
