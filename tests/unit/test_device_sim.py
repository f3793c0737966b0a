from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs.feeds import device_sim, replay
from jobs.runtime import kafka_io
from schemas import codec, load_schema, topics
from schemas.physionet import LABS
from schemas.settings import Settings

KEY = b"unit-test-key"
SOURCE = "physionet2019:setA-sample"
SCHEMA = topics.VITALS_DEVICE.schema
Records = list[list[dict[str, Any]]]


@pytest.fixture(scope="module")
def df() -> pd.DataFrame:
    return pd.read_parquet(replay.SAMPLE)


def clean_plan(beds: int, seconds: int, **kw: Any) -> device_sim.DevicePlan:
    """A plan without artefacts."""
    return replace(
        device_sim.DevicePlan(beds, seconds, **kw),
        dropout_share=0.0,
        probe_off_share=0.0,
        motion_share=0.0,
        leads_off_share=0.0,
    )


def run(df: pd.DataFrame, plan: device_sim.DevicePlan, **kw: Any) -> Records:
    return list(device_sim.device_seconds(df, plan, KEY, SOURCE, **kw))


def flat(seconds: Records) -> list[dict[str, Any]]:
    return [r for recs in seconds for r in recs]


def by_bed(seconds: Records) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in flat(seconds):
        out[r["bed_id"]].append(r)
    return out


def test_each_bed_reports_once_a_second_with_its_stable_device_and_bed(df: pd.DataFrame) -> None:
    plan = device_sim.DevicePlan(beds=60, seconds=120, facilities=3)
    seconds = run(df, plan)
    assert len(seconds) == 120
    for s, recs in enumerate(seconds):
        assert len(recs) == 60
        assert {r["event_time"] for r in recs} == {plan.start + timedelta(seconds=s)}
        assert len({r["bed_id"] for r in recs}) == len({r["device_id"] for r in recs}) == 60
    first = seconds[0]
    for recs in seconds:
        for a, b in zip(first, recs, strict=True):
            assert (a["device_id"], a["bed_id"], a["unit_id"]) == (
                b["device_id"],
                b["bed_id"],
                b["unit_id"],
            )
    assert first[0]["device_id"] == "mon-0001"
    assert first[0]["bed_id"] == f"hospital-01/{first[0]['unit_id']}/bed-0001"
    assert Counter(r["facility_id"] for r in first) == {
        "hospital-01": 20,
        "hospital-02": 20,
        "hospital-03": 20,
    }
    assert all(r["bed_id"].startswith(f"{r['facility_id']}/{r['unit_id']}/") for r in first)
    assert {r["unit_id"] for r in first} <= {"MICU", "SICU", "ICU"}
    assert all(r["source"] == device_sim.SOURCE_PREFIX + SOURCE for r in first)


def test_beds_beyond_the_data_set_get_its_patients_again_under_distinct_tokens(
    df: pd.DataFrame,
) -> None:
    n = df["patient_id"].nunique()
    plan = device_sim.DevicePlan(beds=2 * n + 5, seconds=1)
    stays = device_sim.stays(df, plan, KEY, SOURCE)[: plan.beds]
    assert Counter(Counter(s.patient_id for s in stays).values()) == {3: 5, 2: n - 5}
    (recs,) = run(df, plan)
    assert len({r["patient_token"] for r in recs}) == plan.beds
    assert len({s.pos0_s for s in stays}) > plan.beds * 0.9  # beds are at different points


def test_every_record_encodes_with_the_schema_and_validates_and_the_fast_writer_matches_codec(
    df: pd.DataFrame,
) -> None:
    # Busy artefacts, so that every shape of record (nulls, zeros, two-byte quality) occurs.
    plan = device_sim.DevicePlan(
        beds=40,
        seconds=300,
        art_line_share=0.5,
        temp_probe_share=0.5,
        dropout_share=0.05,
        probe_off_share=0.1,
        motion_share=0.1,
        leads_off_share=0.1,
    )
    seconds = run(df, plan)
    payloads = list(device_sim.device_payloads(df, plan, KEY, SOURCE))
    assert len(payloads) == len(seconds)
    for recs, pay in zip(seconds, payloads, strict=True):
        assert pay.event_time == recs[0]["event_time"] and pay.corrupt == 0
        assert pay.keys == [r["patient_token"].encode() for r in recs]
        for rec, value in zip(recs, pay.values, strict=True):
            assert codec.validate(SCHEMA, rec) is None, rec
            assert value == codec.encode(SCHEMA, rec)
            back = codec.decode_valid(SCHEMA, value, codec.epoch_ms(rec["event_time"]))
            assert isinstance(back, dict) and back["patient_token"] == rec["patient_token"]
    records = flat(seconds)
    for f in device_sim.NUMERICS:
        assert any(r[f] is None for r in records) and any(r[f] is not None for r in records)
    quality = Counter(r["spo2_signal_quality_pct"] for r in records)
    assert quality[None] and quality[0] and any(q is not None and q >= 64 for q in quality)
    assert list(device_sim.FIELDS) == SCHEMA.field_names


def test_per_minute_median_heart_rate_stays_close_to_the_patients_hourly_trajectory(
    df: pd.DataFrame,
) -> None:
    plan = device_sim.DevicePlan(beds=40, seconds=1200)
    stays = {s.bed: s for s in device_sim.stays(df, plan, KEY, SOURCE) if s.entry_s == 0}
    errors = []
    for b, recs in enumerate(by_bed(run(df, plan)).values()):
        stay = stays[b]
        rows = df[df["patient_id"] == stay.patient_id].sort_values("ICULOS")
        if rows["HR"].isna().all() or stay.end_s < plan.seconds:
            continue
        hr = rows["HR"].ffill().bfill().to_numpy()
        hours = (rows["ICULOS"] - rows["ICULOS"].iloc[0]).to_numpy()
        for minute in range(plan.seconds // 60):
            clean = [
                r["heart_rate_bpm"]
                for r in recs[minute * 60 : (minute + 1) * 60]
                if r["heart_rate_bpm"] and r["spo2_signal_quality_pct"] not in range(1, 50)
            ]
            expected = np.interp((stay.pos0_s + minute * 60 + 30) / 3600, hours, hr)
            errors.append(statistics.median(clean) - expected)
    assert len(errors) > 20 * 30
    assert max(abs(e) for e in errors) < 6
    assert abs(statistics.mean(errors)) < 1
    assert statistics.mean(abs(e) for e in errors) < 2.5


def test_heart_rate_varies_second_to_second_like_a_monitor(df: pd.DataFrame) -> None:
    plan = clean_plan(40, 600)
    steps = []
    for recs in by_bed(run(df, plan)).values():
        hr = np.array([r["heart_rate_bpm"] for r in recs])
        spo2 = np.array([r["spo2_pct"] for r in recs])
        assert np.all(hr == np.round(hr)) and np.all(spo2 == np.round(spo2))
        steps.append(np.std(np.diff(hr)))
    # AR(1) with sd 2 and phi 0.95: successive seconds differ by sd 2 * sqrt(2 * 0.05) = 0.63.
    assert 0.4 < statistics.median(steps) < 1.0


def test_artefact_seconds_are_a_few_percent_and_carry_their_flags(df: pd.DataFrame) -> None:
    plan = device_sim.DevicePlan(beds=200, seconds=600)
    records = flat(run(df, plan))
    probe = [r for r in records if r["spo2_probe_off"]]
    leads = [r for r in records if r["ecg_leads_off"]]
    motion = [r for r in records if r["spo2_signal_quality_pct"] in range(1, 50)]
    dropout = [
        r
        for r in records
        if (
            not r["ecg_leads_off"]
            and (r["heart_rate_bpm"] is None or r["resp_rate_per_min"] is None)
        )
        or (not r["spo2_probe_off"] and r["spo2_pct"] is None)
    ]
    artefact = {id(r) for r in probe + leads + motion + dropout}
    share = len(artefact) / len(records)
    assert 0.02 < share < 0.07, share
    for part, expected in ((probe, 0.01), (leads, 0.006), (motion, 0.015)):
        assert expected / 2 < len(part) / len(records) < expected * 2
    assert all(r["spo2_pct"] in (0.0, None) and r["spo2_signal_quality_pct"] == 0 for r in probe)
    assert Counter(r["spo2_pct"] for r in probe).most_common(1)[0][0] == 0.0
    assert None in {r["spo2_pct"] for r in probe}
    assert all(r["heart_rate_bpm"] in (0.0, None) for r in leads)
    assert all(r["resp_rate_per_min"] is None for r in leads)
    assert {r["heart_rate_bpm"] for r in leads} == {0.0, None}
    assert all(not r["spo2_probe_off"] for r in motion)
    clean = [r for r in records if id(r) not in artefact]
    assert all(80 <= r["spo2_signal_quality_pct"] <= 100 for r in clean)
    assert not any(r["spo2_probe_off"] or r["ecg_leads_off"] for r in clean)
    # Motion makes SpO2 falsely low and HR falsely high against the bed's clean median.
    beds_clean = defaultdict(list)
    for r in clean:
        beds_clean[r["bed_id"]].append(r)
    spo2_drop, hr_rise = [], []
    for r in motion:
        base = beds_clean[r["bed_id"]]
        spo2_drop.append(statistics.median(x["spo2_pct"] for x in base) - r["spo2_pct"])
        if r["heart_rate_bpm"] is not None and not r["ecg_leads_off"]:
            hr_rise.append(
                r["heart_rate_bpm"] - statistics.median(x["heart_rate_bpm"] for x in base)
            )
    assert 8 < statistics.mean(spo2_drop) < 17
    assert 30 < statistics.mean(hr_rise) < 50


def test_episodes_last_their_drawn_durations(df: pd.DataFrame) -> None:
    plan = device_sim.DevicePlan(beds=100, seconds=900, probe_off_share=0.05)
    runs: list[int] = []
    for recs in by_bed(run(df, plan)).values():
        n = 0
        for r in recs:
            if r["spo2_probe_off"]:
                n += 1
            elif n:
                runs.append(n)
                n = 0
    lo, hi = device_sim.PROBE_OFF_S
    assert len(runs) > 20 and all(n <= 2 * hi for n in runs)  # two may run back to back
    assert sum(lo <= n <= hi for n in runs) > 0.9 * len(runs)
    assert device_sim.hazard_per_s(0.0, (1, 5)) == 0.0


def test_corrupt_rate_gives_impossible_values_that_codec_rejects_as_out_of_range(
    df: pd.DataFrame,
) -> None:
    plan = device_sim.DevicePlan(beds=100, seconds=200, corrupt_rate=0.02)
    seconds = run(df, plan)
    rejected: Counter[str] = Counter()
    for rec in flat(seconds):
        bad = codec.validate(SCHEMA, rec)
        if bad is not None:
            assert bad.reason_code == "out_of_range", bad
            rejected[bad.reason.split("=")[0]] += 1
            # it still encodes: the job refuses the value alone (a `value_out_of_range` dead
            # letter beside the screened record), or the record if no value is left in range
            assert codec.encode(SCHEMA, rec)
    assert 0.01 * 20_000 < sum(rejected.values()) < 0.03 * 20_000
    assert set(rejected) == {"heart_rate_bpm", "spo2_pct", "resp_rate_per_min", "temp_c"}
    pays = list(device_sim.device_payloads(df, plan, KEY, SOURCE))
    assert sum(p.corrupt for p in pays) == sum(rejected.values())
    # Corruption draws from its own stream: every other record is as without it.
    clean = flat(run(df, replace(plan, corrupt_rate=0.0)))
    same = sum(a == b for a, b in zip(flat(seconds), clean, strict=True))
    assert same == len(clean) - sum(rejected.values())


def test_the_same_seed_gives_the_same_records_and_another_seed_others(df: pd.DataFrame) -> None:
    plan = device_sim.DevicePlan(beds=30, seconds=60, corrupt_rate=0.01)
    assert run(df, plan) == run(df, plan)
    assert device_sim.clinical_records(df, plan, KEY, SOURCE) == device_sim.clinical_records(
        df, plan, KEY, SOURCE
    )
    other = run(df, replace(plan, seed=7))
    assert flat(other) != flat(run(df, plan))


def test_a_start_override_moves_every_event_time(df: pd.DataFrame) -> None:
    plan = device_sim.DevicePlan(beds=5, seconds=3)
    at = datetime(2026, 6, 1, 12, 0, 0, tzinfo=UTC)
    moved = run(df, plan, start=at)
    assert [recs[0]["event_time"] for recs in moved] == [
        at + timedelta(seconds=s) for s in range(3)
    ]
    base = run(df, plan)
    strip = [{k: v for k, v in r.items() if k != "event_time"} for r in flat(base)]
    assert strip == [{k: v for k, v in r.items() if k != "event_time"} for r in flat(moved)]


def test_blood_pressure_is_every_second_on_art_line_beds_and_once_per_15_minutes_otherwise(
    df: pd.DataFrame,
) -> None:
    plan = clean_plan(40, 1800, art_line_share=0.5)
    kinds: Counter[str] = Counter()
    for recs in by_bed(run(df, plan)).values():
        at = [s for s, r in enumerate(recs) if r["sbp_mmhg"] is not None]
        for f in ("dbp_mmhg", "map_mmhg"):
            assert at == [s for s, r in enumerate(recs) if r[f] is not None]
        assert all(r["dbp_mmhg"] < r["map_mmhg"] < r["sbp_mmhg"] for r in recs if r["sbp_mmhg"])
        if len(at) == plan.seconds:
            kinds["art"] += 1
        else:
            assert len(at) == 2 and at[1] - at[0] == device_sim.CUFF_INTERVAL_S
            kinds["cuff"] += 1
    assert kinds["art"] > 10 and kinds["cuff"] > 10
    # Temperature comes only from beds with a probe, every second.
    temp = Counter(
        sum(r["temp_c"] is not None for r in recs) for recs in by_bed(run(df, plan)).values()
    )
    assert set(temp) == {0, plan.seconds}


def test_a_stay_that_ends_gives_a_discharge_and_the_bed_takes_the_next_patient(
    df: pd.DataFrame,
) -> None:
    pid = df.groupby("patient_id")["ICULOS"].count().idxmin()
    rows = df[df["patient_id"] == pid].sort_values("ICULOS")
    two_hours = rows[rows["ICULOS"] <= rows["ICULOS"].min() + 1]  # a 2-hour stay
    plan = clean_plan(2, 7300)
    stays = device_sim.stays(two_hours, plan, KEY, SOURCE)
    assert [(s.bed, s.entry_s) for s in stays[:2]] == [(0, 0), (1, 0)]
    assert len(stays) == 4 and all(s.patient_id == pid for s in stays)
    assert len({s.token for s in stays}) == 4
    adt = [
        rec
        for topic, rec in device_sim.clinical_records(two_hours, plan, KEY, SOURCE)
        if topic == topics.ADT_EVENT.name
    ]
    assert len(adt) == 2
    seconds = run(two_hours, plan)
    for old in stays[:2]:
        new = next(s for s in stays[2:] if s.bed == old.bed)
        assert new.entry_s == old.end_s == 7200 - old.pos0_s and new.pos0_s == 0
        bed = [recs[old.bed] for recs in seconds]
        assert {r["patient_token"] for r in bed[: old.end_s]} == {old.token}
        assert {r["patient_token"] for r in bed[old.end_s :]} == {new.token}
        assert {r["bed_id"] for r in bed} == {bed[0]["bed_id"]}
        (discharge,) = [r for r in adt if r["patient_token"] == old.token]
        assert discharge["event_type"] == "discharge"
        assert discharge["event_time"] == plan.start + timedelta(seconds=old.end_s)
        assert discharge["prior_bed_id"] == bed[0]["bed_id"]
        assert discharge["prior_unit_id"] == bed[0]["unit_id"]
        assert discharge["facility_id"] == bed[0]["facility_id"]
        schema = load_schema(topics.ADT_EVENT.name)
        assert codec.validate(schema, discharge) is None and codec.encode(schema, discharge)
        for k in ("event_id", "source_message_type", "encounter_token", "unit_id", "bed_id"):
            assert k in discharge


def test_labs_are_the_patients_physionet_labs_at_their_hours_inside_the_window(
    df: pd.DataFrame,
) -> None:
    plan = device_sim.DevicePlan(beds=40, seconds=6 * 3600)
    items = device_sim.clinical_records(df, plan, KEY, SOURCE)
    times = [rec["event_time"] for _, rec in items]
    assert times == sorted(times)
    labs = {
        (rec["patient_token"], rec["event_time"]): rec
        for topic, rec in items
        if topic == topics.LABS_RESULT.name
    }
    expected = {}
    for st in device_sim.stays(df, plan, KEY, SOURCE):
        rows = df[df["patient_id"] == st.patient_id].sort_values("ICULOS")
        first = int(rows["ICULOS"].iloc[0])
        for _, row in rows.iterrows():
            s = st.entry_s + (int(row["ICULOS"]) - first) * 3600 - st.pos0_s
            lab = {f: row[c] for c, f in LABS.items()}
            if 0 <= s < min(st.end_s, plan.seconds) and any(pd.notna(v) for v in lab.values()):
                expected[(st.token, plan.start + timedelta(seconds=s))] = lab
    assert len(expected) > 20 and labs.keys() == expected.keys()
    schema = load_schema(topics.LABS_RESULT.name)
    for k, rec in labs.items():
        for f, v in expected[k].items():
            assert rec[f] == (None if pd.isna(v) else pytest.approx(float(v)))
        assert codec.encode(schema, rec)
        assert rec["unit_id"] in ("MICU", "SICU", "ICU") and rec["source"] == SOURCE


class FakeClock:
    """`time.time`, `time.monotonic` and `time.sleep` on one clock that moves only when slept
    on: pacing is exact however loaded the machine is."""

    def __init__(self, wall_s: float) -> None:
        self.now = wall_s

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += max(seconds, 0.0)


class FakeProducer:
    def __init__(self, stall_first_poll_s: float = 0.0, clock: FakeClock | None = None) -> None:
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.stall_s = stall_first_poll_s
        self.clock = clock

    def produce(self, topic: str, *, key: bytes, value: bytes, timestamp: int) -> None:
        self.sent.append((topic, key, value, timestamp))

    def poll(self, timeout: float) -> int:
        if self.stall_s and self.clock is not None:
            self.clock.sleep(self.stall_s)
            self.stall_s = 0.0
        return 0

    def flush(self, timeout: float | None = None) -> int:
        return 0

    def flush_or_raise(self, timeout_s: float = 60.0) -> None:
        pass


def test_produce_merges_device_and_clinical_records_in_event_time_order_keyed_by_token(
    df: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    fake = FakeProducer()
    monkeypatch.setattr(kafka_io, "producer", lambda settings: fake)
    settings = Settings(data_dir=tmp_path, phi_key=KEY)  # no data set here: the bundled sample
    plan = device_sim.DevicePlan(beds=40, seconds=3 * 3600 // 4, corrupt_rate=0.001)
    stats = device_sim.produce(settings, plan, prefix="t-", progress=False)
    clinical = device_sim.clinical_records(df, plan, KEY, SOURCE)
    per_topic = Counter(t for t, *_ in fake.sent)
    assert per_topic["t-" + topics.VITALS_DEVICE.name] == stats["device_records"] == 40 * 2700
    assert per_topic["t-" + topics.LABS_RESULT.name] == stats["labs"] > 0
    assert per_topic["t-" + topics.ADT_EVENT.name] == stats["adt"]
    assert stats["labs"] + stats["adt"] == len(clinical) and stats["corrupt"] > 0
    assert stats["late_seconds"] == stats["seconds_behind"] == 0
    stamps = [ts for *_, ts in fake.sent]
    assert stamps == sorted(stamps)
    for topic, key, value, ts in fake.sent[::97]:
        rec = codec.decode(load_schema(topic.removeprefix("t-")), value)
        assert isinstance(rec, dict)
        assert rec["patient_token"].encode() == key and codec.epoch_ms(rec["event_time"]) == ts


def test_realtime_starts_now_paces_by_the_wall_clock_and_reports_falling_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    t0 = 1_800_000_000.4  # 0.4 s into a wall-clock second
    clock = FakeClock(t0)
    monkeypatch.setattr(device_sim, "time", clock)
    monkeypatch.setattr(replay, "time", clock)
    fake = FakeProducer(stall_first_poll_s=2.3, clock=clock)  # after second 0's records
    monkeypatch.setattr(kafka_io, "producer", lambda settings: fake)
    settings = Settings(data_dir=tmp_path, phi_key=KEY)
    plan = device_sim.DevicePlan(beds=3, seconds=4)

    stats = device_sim.produce(settings, plan, realtime=True, progress=False)

    first_ms = min(ts for *_, ts in fake.sent)
    assert first_ms == 1_800_000_000_000 == stats["start_epoch_ms"]  # the current second
    assert {ts for *_, ts in fake.sent} == {first_ms + 1000 * s for s in range(4)}
    # The stall is caught up, not added: the run ends when second 3 begins.
    assert clock.now - t0 == pytest.approx(2.6)
    # Second 1 went out 2.7 s after second 0 began, 0.7 s after its own second had ended;
    # seconds 2 and 3 on time.
    assert stats["late_seconds"] == 1 and stats["seconds_behind"] == pytest.approx(0.7)


def test_the_plan_refuses_what_it_cannot_simulate() -> None:
    with pytest.raises(ValueError, match="beds"):
        device_sim.DevicePlan(beds=device_sim.MAX_BEDS + 1, seconds=1)
    with pytest.raises(ValueError, match="facilities"):
        device_sim.DevicePlan(beds=2, seconds=1, facilities=3)
    with pytest.raises(ValueError, match="motion_share"):
        device_sim.DevicePlan(beds=2, seconds=1, motion_share=1.0)
    with pytest.raises(ValueError, match="timezone"):
        device_sim.DevicePlan(beds=2, seconds=1, start=datetime(2026, 1, 1))
