"""The data-quality monitors (udfs/quality.py) on real PhysioNet/CinC 2019 set A values: what a
clean window looks like against the reference built from set A, and what the faults a hospital
meets look like (a °F firmware update, lost parameters, a duplicate storm, a feed falling
silent), without Flink."""

from __future__ import annotations

import dataclasses
import json
import pickle
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas import topics
from schemas.physionet import VITALS as VITALS_COLUMNS
from schemas.settings import Settings
from training import quality_reference
from udfs import quality

VITALS, LABS = topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name
T = quality.Thresholds()
HOUR_MS = 3_600_000


@pytest.fixture(scope="module")
def set_a(settings: Settings) -> pd.DataFrame:
    if not settings.physionet_setA.exists():
        pytest.skip(f"PhysioNet 2019 set A is not at {settings.physionet_setA}")
    cols = ["patient_id", "ICULOS", "Creatinine", *VITALS_COLUMNS]
    return pd.read_parquet(settings.physionet_setA, columns=cols)


@pytest.fixture(scope="module")
def ref() -> quality.Reference:
    return quality.load_reference()


def _hour(df: pd.DataFrame, hour: int, patients: int, seed: int) -> pd.DataFrame:
    """One ICU hour of `patients` real patients (a unit's window of hourly charting)."""
    at = df[df["ICULOS"] == hour]
    ids = np.random.default_rng(seed).choice(at["patient_id"].unique(), patients, replace=False)
    return at[at["patient_id"].isin(ids)]


def _parameter(values: np.ndarray[Any, Any], pref: quality.ParameterReference, records: int) -> Any:
    v = values[~np.isnan(values)].astype("float32").astype("float64")
    bins = np.bincount(np.searchsorted(pref.edges, v, side="right"), minlength=len(pref.edges) + 1)
    return quality.ParameterWindow(
        len(v),
        float(v.mean()) if len(v) else None,
        float(np.median(v)) if len(v) else None,
        tuple(int(b) for b in bins),
    )


def _window(
    rows: pd.DataFrame, ref: quality.Reference, start_ms: int, *, unit: str = "MICU", **change: Any
) -> quality.Window:
    params = {
        "heart_rate_bpm": rows["HR"].to_numpy("float64"),
        "temp_c": rows["Temp"].to_numpy("float64"),
        "spo2_pct": rows["O2Sat"].to_numpy("float64"),
    }
    params.update(change.pop("params", {}))
    pref = ref.topic(VITALS).parameters
    w = quality.Window(
        VITALS,
        "hospital-a",
        unit,
        start_ms,
        start_ms + HOUR_MS,
        len(rows),
        len(rows),
        {},
        {n: _parameter(v, pref[n], len(rows)) for n, v in params.items()},
        "a b",
    )
    return dataclasses.replace(w, **change) if change else w


def test_a_temperature_window_centred_near_98_is_a_fahrenheit_suspect_and_a_celsius_one_is_not(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    pref = ref.topic(VITALS).parameters["temp_c"]
    temps = _hour(set_a, 8, 60, 1)["Temp"].dropna().to_numpy()
    assert len(temps) >= 10
    celsius = float(np.median(temps))
    fahrenheit = float(np.median(temps * 9 / 5 + 32))
    assert 96 <= fahrenheit <= 101
    suspect, converted = quality.unit_suspect("temp_c", celsius, len(temps), pref, T)
    assert not suspect and converted == pytest.approx((celsius - 32) * 5 / 9)
    suspect, converted = quality.unit_suspect("temp_c", fahrenheit, len(temps), pref, T)
    assert suspect and converted == pytest.approx(celsius, abs=0.01)
    # too few values to judge
    assert not quality.unit_suspect("temp_c", fahrenheit, 2, pref, T)[0]


def test_creatinine_reported_in_micromoles_is_a_unit_suspect(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    pref = ref.topic(LABS).parameters["creatinine_mg_dl"]
    mg_dl = set_a["Creatinine"].dropna().to_numpy()[:200]
    assert not quality.unit_suspect("creatinine_mg_dl", float(np.median(mg_dl)), 200, pref, T)[0]
    umol = float(np.median(mg_dl * 88.4))
    assert quality.unit_suspect("creatinine_mg_dl", umol, 200, pref, T)[0]


def test_real_heart_rates_match_the_reference_and_fahrenheit_temperatures_shift_severely(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    pref = ref.topic(VITALS).parameters
    hr = set_a["HR"].dropna().sample(400, random_state=7).to_numpy()
    w = _parameter(hr, pref["heart_rate_bpm"], 400)
    assert quality.psi(w.bins, pref["heart_rate_bpm"].proportions) < T.stable_psi
    assert quality.chi_square_p(w.bins, pref["heart_rate_bpm"].proportions) > T.p_value
    temps = set_a["Temp"].dropna().sample(60, random_state=7).to_numpy() * 9 / 5 + 32
    f = _parameter(temps, pref["temp_c"], 60)
    assert quality.psi(f.bins, pref["temp_c"].proportions) > T.severe_psi
    assert quality.chi_square_p(f.bins, pref["temp_c"].proportions) < T.p_value


def test_a_day_of_real_clean_windows_raises_nothing(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "MICU")
    events = []
    for h in range(2, 26):
        events += mon.observe(
            _window(_hour(set_a, h, 80, h), ref, h * HOUR_MS), ref.topic(VITALS), T
        )
    assert events == []
    assert mon.windows == 24 and not mon.open


def test_fahrenheit_temperatures_quarantine_the_source_and_celsius_again_clears_it(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "MICU")
    r = ref.topic(VITALS)
    for h in range(2, 5):
        assert mon.observe(_window(_hour(set_a, h, 60, h), ref, h * HOUR_MS), r, T) == []
    rows = _hour(set_a, 5, 60, 5)
    bad = _window(rows, ref, 5 * HOUR_MS, params={"temp_c": rows["Temp"].to_numpy() * 1.8 + 32})
    opened = mon.observe(bad, r, T)
    conv = [e for e in opened if e["monitor"] == "unit_conversion"]
    assert len(conv) == 1 and conv[0]["action"] == "quarantine" and conv[0]["state"] == "open"
    assert conv[0]["parameter"] == "temp_c" and json.loads(conv[0]["evidence_json"])["wrong_unit"]
    assert mon.quarantined
    cleared = mon.observe(_window(_hour(set_a, 6, 60, 6), ref, 6 * HOUR_MS), r, T)
    assert [(e["monitor"], e["state"], e["action"]) for e in cleared] == [
        ("unit_conversion", "resolved", "clear")
    ]
    assert cleared[0]["opened_event_id"] == conv[0]["event_id"]


def _actions(events: list[dict[str, Any]]) -> list[tuple[str, str, str | None, str | None]]:
    """(monitor, state, action, the action's scope) of each event."""
    return [
        (
            e["monitor"],
            e["state"],
            e["action"],
            json.loads(e["evidence_json"]).get("quarantine_scope"),
        )
        for e in events
    ]


def test_a_temperature_fault_and_a_duplicate_storm_each_quarantine_and_clear_their_own_scope(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    """A unit's temperatures in °F quarantine temp_c only; a duplicate storm on top quarantines
    the whole source; the storm's end clears the whole source's quarantine (temp_c's stays while
    the °F values go on), and the °F values' end clears temp_c's. Before, the storm opened no
    quarantine of its own and its end no clear, and temp_c's fault quarantined every vital sign
    of the unit."""
    mon = quality.SourceMonitor(VITALS, "hospital-a", "SICU")
    r = ref.topic(VITALS)
    rows = _hour(set_a, 6, 60, 6)
    fahrenheit = {"temp_c": rows["Temp"].to_numpy() * 1.8 + 32}
    opened = mon.observe(_window(rows, ref, 0, params=fahrenheit), r, T)
    assert ("unit_conversion", "open", "quarantine", "temp_c") in _actions(opened)
    assert all(e["parameter"] == "temp_c" for e in opened)
    assert [a for a in _actions(opened) if a[2]] == [
        ("unit_conversion", "open", "quarantine", "temp_c")
    ]  # a severe shift of temp_c in the same window is under the same quarantine
    both = _window(rows, ref, HOUR_MS, params=fahrenheit, records=120, distinct_ids=60)
    assert _actions(mon.observe(both, r, T)) == [("duplicate_storm", "open", "quarantine", "*")]
    ev = mon.observe(_window(rows, ref, 2 * HOUR_MS, params=fahrenheit), r, T)
    assert _actions(ev) == [("duplicate_storm", "resolved", "clear", "*")]
    assert mon.quarantines("temp_c") and not mon.quarantines(None)
    ev = mon.observe(_window(rows, ref, 3 * HOUR_MS), r, T)
    cleared = [a for a in _actions(ev) if a[2]]
    assert cleared == [(ev[-1]["monitor"], "resolved", "clear", "temp_c")]
    assert {e["monitor"] for e in ev} <= {"unit_conversion", "distribution_shift"}
    assert not mon.quarantined


def test_two_conditions_on_one_parameter_clear_its_quarantine_when_the_last_ends(
    ref: quality.Reference,
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "SICU")
    span = quality.Span(0, HOUR_MS, 60)
    kw: dict[str, Any] = dict(
        span=span, statistic="s", observed=1.0, expected=0.0, threshold=1.0, reason="r",
        evidence={}, parameter="temp_c",
    )  # fmt: skip
    first = mon._event("unit_conversion", "open", HOUR_MS, quarantine=True, **kw)
    second = mon._event("distribution_shift", "open", HOUR_MS, quarantine=True, **kw)
    other = mon._event(
        "unit_conversion",
        "open",
        HOUR_MS,
        quarantine=True,
        **{**kw, "parameter": "creatinine_mg_dl"},
    )
    assert [first["action"], second["action"], other["action"]] == [
        "quarantine",
        None,
        "quarantine",
    ]
    assert mon._event("unit_conversion", "resolved", 2 * HOUR_MS, **kw)["action"] is None
    last = mon._event("distribution_shift", "resolved", 2 * HOUR_MS, **kw)
    assert (last["action"], json.loads(last["evidence_json"])["quarantine_scope"]) == (
        "clear",
        "temp_c",
    )
    assert mon.quarantines("creatinine_mg_dl") and not mon.quarantines("temp_c")


def test_conditions_restored_from_the_state_before_scopes_end_the_whole_sources_quarantine(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    """The job's keyed state pickles each facility's monitors (udfs/flink_quality.py). A state
    of the version before scopes: a °F temperature and a duplicate storm open, under one
    whole-source quarantine (its `Open`s have no `scope`). Restored, the storm's end clears
    nothing (the temperature's condition still holds that quarantine), the temperature's end
    clears the whole source's, and a parameter's condition opening meanwhile quarantines its
    parameter on its own."""
    old = quality.SourceMonitor(VITALS, "hospital-a", "SICU", windows=5, last_end_ms=0)
    for key in (("unit_conversion", "temp_c"), ("duplicate_storm", None)):
        o = quality.Open(f"old-{key[0]}", 0, quarantine=True)
        del o.scope  # pickled by the version before: no such attribute
        old.open[key] = o
    blob = pickle.dumps(quality.FacilityMonitor({"k": old}))
    assert b"scope" not in blob
    mon = pickle.loads(blob).sources["k"]
    r = ref.topic(VITALS)
    rows = _hour(set_a, 6, 60, 6)
    fahrenheit = {"temp_c": rows["Temp"].to_numpy() * 1.8 + 32}
    ev = mon.observe(_window(rows, ref, HOUR_MS, params=fahrenheit), r, T)
    assert [a for a in _actions(ev) if a[1] == "resolved"] == [
        ("duplicate_storm", "resolved", None, None)
    ]
    span = quality.Span(0, HOUR_MS, 60)
    kw: dict[str, Any] = dict(
        span=span, statistic="s", observed=1.0, expected=0.0, threshold=1.0, reason="r",
        evidence={}, parameter="creatinine_mg_dl",
    )  # fmt: skip
    opened = mon._event("unit_conversion", "open", 2 * HOUR_MS, quarantine=True, **kw)
    assert (opened["action"], json.loads(opened["evidence_json"])["quarantine_scope"]) == (
        "quarantine",
        "creatinine_mg_dl",
    )
    ev = mon.observe(_window(rows, ref, 3 * HOUR_MS), r, T)
    assert [a for a in _actions(ev) if a[2]] == [("unit_conversion", "resolved", "clear", "*")]
    assert ev[0]["parameter"] == "temp_c"  # the condition's parameter; its quarantine the source's
    assert mon.quarantines("creatinine_mg_dl") and not mon.quarantines(None)


def test_an_events_action_applies_to_the_scope_its_evidence_names_or_the_whole_source() -> None:
    """The actuator's reading (sinks/quarantine.py): an event written before scopes names none,
    and its action was the whole source's."""
    assert quality.action_parameter({"evidence_json": '{"quarantine_scope": "temp_c"}'}) == "temp_c"
    assert quality.action_parameter({"evidence_json": '{"quarantine_scope": "*"}'}) is None
    assert quality.action_parameter({"evidence_json": '{"median": 98.4}'}) is None


def test_a_parameter_the_feed_stops_sending_opens_missingness(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "ICU")
    r = ref.topic(VITALS)
    for h in range(2, 2 + T.min_history):
        assert mon.observe(_window(_hour(set_a, h, 60, h), ref, h * HOUR_MS), r, T) == []
    h = 2 + T.min_history
    rows = _hour(set_a, h, 60, h)
    lost = _window(rows, ref, h * HOUR_MS, params={"heart_rate_bpm": np.full(len(rows), np.nan)})
    ev = mon.observe(lost, r, T)
    assert [(e["monitor"], e["parameter"]) for e in ev] == [("missingness", "heart_rate_bpm")]
    assert ev[0]["observed"] == 0 and ev[0]["expected"] > 0.9 and ev[0]["action"] is None
    back = mon.observe(_window(_hour(set_a, h + 1, 60, h + 1), ref, (h + 1) * HOUR_MS), r, T)
    assert [(e["monitor"], e["state"]) for e in back] == [("missingness", "resolved")]


def test_a_unit_that_charts_a_parameter_less_than_the_reference_is_not_missing_it(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "ICU")
    r = ref.topic(VITALS)
    events = []
    for h in range(2, 14):
        rows = _hour(set_a, h, 60, h)
        sparse = rows["HR"].to_numpy().copy()
        sparse[: int(len(sparse) * 0.85)] = np.nan  # a unit charting HR in ~15 % of records
        events += mon.observe(
            _window(rows, ref, h * HOUR_MS, params={"heart_rate_bpm": sparse}), r, T
        )
    assert events == []


def test_volume_drops_and_surges_are_judged_against_the_sources_own_baseline(
    set_a: pd.DataFrame, ref: quality.Reference
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "*")
    r = ref.topic(VITALS)
    counts = [len(_hour(set_a, h, 60, h)) for h in range(2, 10)]
    for i, n in enumerate(counts):
        w = quality.Window(VITALS, "hospital-a", "*", i * HOUR_MS, (i + 1) * HOUR_MS, n, n, {}, {})
        assert mon.observe(w, r, T) == []
    low = quality.Window(VITALS, "hospital-a", "*", 8 * HOUR_MS, 9 * HOUR_MS, 6, 6, {}, {})
    assert [e["monitor"] for e in mon.observe(low, r, T)] == ["volume_drop"]
    back = quality.Window(VITALS, "hospital-a", "*", 9 * HOUR_MS, 10 * HOUR_MS, 58, 58, {}, {})
    assert [(e["monitor"], e["state"]) for e in mon.observe(back, r, T)] == [
        ("volume_drop", "resolved")
    ]


def test_refusals_above_the_reference_share_open_a_dead_letter_event(
    ref: quality.Reference,
) -> None:
    mon = quality.SourceMonitor(VITALS, "hospital-a", "MICU")
    w = quality.Window(VITALS, "hospital-a", "MICU", 0, HOUR_MS, 60, 60, {"out_of_range": 12}, {})
    ev = mon.observe(w, ref.topic(VITALS), T)
    assert [(e["monitor"], e["parameter"]) for e in ev] == [("dead_letter_share", "out_of_range")]
    assert ev[0]["observed"] == pytest.approx(0.2)
    # the reference's refusal share of set A (FiO2 charted as a percentage) is no alarm
    ok = quality.Window(VITALS, "hospital-a", "ICU", 0, HOUR_MS, 60, 60, {"out_of_range": 1}, {})
    assert (
        quality.SourceMonitor(VITALS, "hospital-a", "ICU").observe(ok, ref.topic(VITALS), T) == []
    )


def _bare(topic: str, unit: str, hour: int, n: int = 20) -> quality.Window:
    return quality.Window(
        topic, "hospital-a", unit, hour * HOUR_MS, (hour + 1) * HOUR_MS, n, n, {}, {}
    )


def test_the_facilitys_own_records_are_the_clock_for_silence_so_the_end_of_a_replay_is_not_silence(
    ref: quality.Reference,
) -> None:
    fac = quality.FacilityMonitor()
    silence = quality.SILENCE_MIN.get
    for h in range(12):
        fac.add(_bare(VITALS, "MICU", h))
        if not 4 <= h < 9:  # the unit's labs stop for five hours
            fac.add(_bare(LABS, "MICU", h, 5))
    events = fac.advance(12 * HOUR_MS, ref, T, lambda t: silence(t, 60.0), watermark_clock=False)
    got = [
        (e["monitor"], e["state"], e["source_topic"], e["event_time_ms"] // HOUR_MS) for e in events
    ]
    assert got == [("feed_silence", "open", LABS, 7), ("feed_silence", "resolved", LABS, 10)]
    # the input ends: no window, no clock, no silence
    assert fac.advance(2**62, ref, T, lambda t: silence(t, 60.0), watermark_clock=False) == []
    # a live watermark far past the last window: every source is silent
    late = fac.advance(30 * HOUR_MS, ref, T, lambda t: silence(t, 60.0), watermark_clock=True)
    assert {(e["source_topic"], e["monitor"]) for e in late} == {
        (VITALS, "feed_silence"),
        (LABS, "feed_silence"),
    }


def test_a_source_seen_once_long_ago_does_not_hold_back_the_timer_of_a_facility_gone_dark(
    ref: quality.Reference,
) -> None:
    """The timer that finds a facility silent is set at the earliest silence due of the sources
    silence is judged for (seen in `min_windows` windows): a labs source seen once, 13 hours
    before, was the earliest for ever, no timer was set again, and the whole facility going
    dark raised nothing."""
    fac = quality.FacilityMonitor()
    silence = quality.SILENCE_MIN.get
    fac.add(_bare(LABS, "unknown", 0, 1))
    for h in range(13, 16):
        fac.add(_bare(VITALS, "MICU", h))
    assert fac.advance(16 * HOUR_MS, ref, T, lambda t: silence(t, 60.0), watermark_clock=True) == []
    due = fac.sources[quality.source_key(VITALS, "hospital-a", "MICU")].silence_due_ms(
        silence(VITALS, 60.0)
    )
    assert due is not None and due > 16 * HOUR_MS
    check = fac.silence_check_ms(lambda t: silence(t, 60.0), T)
    assert check is not None and check >= due
    events = fac.advance(check, ref, T, lambda t: silence(t, 60.0), watermark_clock=True)
    assert [(e["monitor"], e["source_topic"]) for e in events] == [("feed_silence", VITALS)]


def test_the_committed_reference_is_set_as_heart_rates_rebuilt(set_a: pd.DataFrame) -> None:
    raw = json.loads(quality.REFERENCE_FILE.read_text())
    assert raw["name"] == "physionet2019:setA"
    hr = raw["topics"][VITALS]["parameters"]["heart_rate_bpm"]
    vitals = quality_reference.topic_reference(set_a, topics.VITALS_OBSERVATION, VITALS_COLUMNS)
    rebuilt = vitals["parameters"]["heart_rate_bpm"]
    assert rebuilt["edges"] == hr["edges"] and rebuilt["proportions"] == hr["proportions"]
    for t in raw["topics"].values():
        for p in t["parameters"].values():
            assert sum(p["proportions"]) == pytest.approx(1, abs=1e-5)
            assert p["edges"] == sorted(set(p["edges"]))


def _unit_windows(
    rows: pd.DataFrame, ref: quality.Reference, unit: str, topic: topics.Topic, columns: Any
) -> list[quality.Window]:
    """A unit's hourly windows of one topic as the job's SQL computes them (records, present
    counts, medians and bin counts over the reference's bins), from real hourly rows."""
    pref = ref.topic(topic.name).parameters
    values = rows[list(columns)].rename(columns=columns)
    is_record = values.notna().any(axis=1) if topic is topics.LABS_RESULT else values.index >= 0
    out = []
    for h, g in values[is_record].groupby(rows.loc[is_record, "ICULOS"]):
        params = {str(n): _parameter(g[n].to_numpy("float64"), pref[str(n)], len(g)) for n in g}
        start, n = int(h) * HOUR_MS, len(g)
        w = quality.Window(topic.name, "hospital-a", unit, start, start + HOUR_MS, n, n, {}, params)
        out.append(w)
    return out


def test_two_days_of_twenty_real_clean_units_raise_no_false_alarm(
    settings: Settings, ref: quality.Reference
) -> None:
    """20 units of 60 set-A patients each, 48 hours from their second ICU hour, vitals and
    labs: 40 unit-days of each topic through the facility's monitors."""
    from schemas.physionet import LABS as LAB_COLUMNS

    cols = ["patient_id", "ICULOS", *VITALS_COLUMNS, *LAB_COLUMNS]
    df = pd.read_parquet(settings.physionet_setA, columns=cols)
    long = df.groupby("patient_id")["ICULOS"].max()
    ids = np.sort(long[long >= 50].index)[: 20 * 60]
    df = df[df["patient_id"].isin(ids) & df["ICULOS"].between(2, 49)]
    unit_of = {pid: f"U{i // 60:02d}" for i, pid in enumerate(ids)}
    fac = quality.FacilityMonitor()
    for unit, rows in df.groupby(df["patient_id"].map(unit_of)):
        for topic, columns in (
            (topics.VITALS_OBSERVATION, VITALS_COLUMNS),
            (topics.LABS_RESULT, LAB_COLUMNS),
        ):
            for w in _unit_windows(rows, ref, str(unit), topic, columns):
                fac.add(w)
    events = fac.advance(2**62, ref, T, lambda t: quality.SILENCE_MIN[t], watermark_clock=False)
    source_days = 20 * 2 * 2
    print(f"false alarms: {len(events)} over {source_days} clean source-days")
    assert [(e["source_topic"], e["unit_id"], e["monitor"], e["reason"]) for e in events] == []


def test_weight_charted_in_pounds_is_a_unit_suspect_against_the_2012_weights(
    ref: quality.Reference,
) -> None:
    """The reference charts weight from PhysioNet 2012 (the 2019 data have none): a unit's
    weights in lb (a median of 176) read as kg were never flagged, the parameter had no
    reference."""
    pref = ref.topic(VITALS).parameters["weight_kg"]
    assert 70 <= pref.percentiles["p50"] <= 90
    assert quality.unit_suspect("weight_kg", 176.4, 12, pref, T) == (
        True,
        pytest.approx(80.0, 0.01),
    )
    assert not quality.unit_suspect("weight_kg", 80.0, 12, pref, T)[0]
    # a warning for a person to judge: a bariatric unit's true 168 kg read as pounds is 76 kg,
    # and quarantining nulled every vital sign of the unit's records for a day of weigh-ins
    weights = np.array([168.0, 171.0, 160.0])
    pw = _parameter(weights, pref, 3)
    w = quality.Window(VITALS, "hospital-a", "BARI", 0, HOUR_MS, 3, 3, {}, {"weight_kg": pw})
    mon = quality.SourceMonitor(VITALS, "hospital-a", "BARI")
    [event] = mon.observe(w, ref.topic(VITALS), T)
    assert (event["monitor"], event["severity"]) == ("unit_conversion", "warning")
    assert event["action"] != "quarantine" and not mon.quarantined


def test_a_monitor_sending_blood_pressure_in_kpa_is_a_warning_not_a_quarantine(
    ref: quality.Reference,
) -> None:
    """One monitor set to kPa (a MAP of 11): too few monitors for a distribution, seen as a
    unit-conversion suspect (1 kPa = 7.50062 mmHg), a warning: an arterial line during a
    cardiac arrest reads the same, and a quarantine nulled the unit's vitals through the code."""
    device = topics.VITALS_DEVICE.name
    pref = ref.topic(device).parameters["map_mmhg"]
    pw = _parameter(np.full(300, 11.2), pref, 300)
    w = quality.Window(device, "hospital-a", "MICU", 0, 300_000, 300, 300, {}, {"map_mmhg": pw})
    mon = quality.SourceMonitor(device, "hospital-a", "MICU")
    [event] = mon.observe(w, ref.topic(device), T)
    assert (event["monitor"], event["severity"]) == ("unit_conversion", "warning")
    assert event["action"] != "quarantine" and not mon.quarantined
    assert json.loads(event["evidence_json"])["converted_median"] == pytest.approx(84.0, abs=0.1)


def test_a_quarantine_an_older_version_held_on_a_suspect_that_now_warns_is_released(
    ref: quality.Reference,
) -> None:
    """A weight suspect opened as a quarantine before it became a warning: never resolved at a
    bariatric unit's 170 kg, it held the unit's quarantine after every other condition ended."""
    pref = ref.topic(VITALS).parameters["weight_kg"]
    mon = quality.SourceMonitor(VITALS, "hospital-a", "BARI")
    mon.open[("unit_conversion", "weight_kg")] = quality.Open("old", 0, quarantine=True)
    assert mon.quarantined
    pw = _parameter(np.array([168.0, 171.0, 160.0]), pref, 3)
    w = quality.Window(VITALS, "hospital-a", "BARI", 0, HOUR_MS, 3, 3, {}, {"weight_kg": pw})
    [ended] = mon.observe(w, ref.topic(VITALS), T)
    assert (ended["state"], ended["action"]) == ("resolved", "clear") and not mon.quarantined
    [again] = mon.observe(
        dataclasses.replace(w, start_ms=HOUR_MS, end_ms=2 * HOUR_MS), ref.topic(VITALS), T
    )
    assert (again["state"], again["severity"]) == ("open", "warning") and not mon.quarantined


def test_the_psi_of_the_same_shares_does_not_grow_with_the_window() -> None:
    """Floored as counts, one empty bin's term grew with n: the same shares gave a larger PSI in
    a larger window. Floored as shares, as the ML ops board does, it is one number."""
    reference = (0.1,) * 10
    shares = np.array([0.0, 0.2, *([0.1] * 8)])
    values = [quality.psi(tuple(int(x) for x in shares * n), reference) for n in (100, 10_000)]
    assert values[0] == pytest.approx(values[1]) and values[0] > T.major_psi


def _counts(mon: quality.SourceMonitor, records: int, i: int) -> list[dict[str, Any]]:
    start = i * 300_000
    w = quality.Window(
        VITALS, "hospital-a", "MICU", start, start + 300_000, records, records, {}, {}
    )
    return mon.observe(w, quality.TopicReference({}), T)


def test_a_volume_drop_stays_open_while_the_feed_stays_down_and_resolves_when_it_returns() -> None:
    """The windows of an open drop joined the baseline: after 7 windows at a quarter, the drop
    "resolved" against its own faulty level ("back to 2000") while 23 of 30 monitors were still
    offline. It stays open (under `history` windows: see the change of level below)."""
    mon = quality.SourceMonitor(VITALS, "hospital-a", "MICU")
    events = [e for i in range(12) for e in _counts(mon, 9000, i)]
    assert events == []
    down = [e for i in range(12, 12 + T.history - 1) for e in _counts(mon, 2000, i)]
    assert [(e["monitor"], e["state"]) for e in down] == [("volume_drop", "open")]
    back = _counts(mon, 9000, 40)
    assert [(e["monitor"], e["state"]) for e in back] == [("volume_drop", "resolved")]


def test_a_level_held_for_a_day_resolves_as_a_change_of_level_and_a_later_outage_is_seen() -> None:
    """Frozen for good, a feed moved for good to a lower level (a unit's labs to another system)
    stayed in drop for the life of the job's state, and hid the real outage that followed. An
    hour at the new level is no change of level (a partial outage that long was closed as one):
    a day is, and the event says it is not the feed back."""
    mon = quality.SourceMonitor(VITALS, "hospital-a", "MICU")
    for i in range(12):
        _counts(mon, 80, i)
    day = 24 * 12  # five-minute windows
    moved = [e for i in range(12, 12 + day + 1) for e in _counts(mon, 20, i)]
    assert [(e["monitor"], e["state"]) for e in moved] == [
        ("volume_drop", "open"),
        ("volume_drop", "resolved"),  # a day after it opened
    ]
    assert moved[1]["event_time_ms"] - moved[0]["event_time_ms"] == 24 * 3_600_000
    assert "change of level" in moved[1]["reason"] and "not the feed back" in moved[1]["reason"]
    outage = [e for i in range(400, 410) for e in _counts(mon, 2, i)]
    assert [(e["monitor"], e["state"]) for e in outage][:1] == [("volume_drop", "open")]


def test_a_units_few_monitors_are_no_population_their_seconds_are_not_draws(
    ref: quality.Reference,
) -> None:
    """Two monitors at 1 Hz for 5 minutes: 600 seconds of two patients, one febrile at 39.5 °C.
    Counted as 600 draws, χ² and PSI quarantined the unit's device values (the screen went
    blind where the septic patient was); they are two draws, too few to judge a distribution.
    The same shares charted by 600 patients still shift."""
    device = topics.VITALS_DEVICE.name
    pref = ref.topic(device).parameters["temp_c"]
    temps = np.array([39.5] * 300 + [38.9] * 300)
    pw = _parameter(temps, pref, 600)
    w = quality.Window(device, "hospital-a", "MICU", 0, 300_000, 600, 600, {}, {"temp_c": pw})
    assert quality.independent_values(w, 600) == pytest.approx(2.0)
    mon = quality.SourceMonitor(device, "hospital-a", "MICU")
    assert [e for e in mon.observe(w, ref.topic(device), T) if e["parameter"] == "temp_c"] == []
    charted = dataclasses.replace(w, source_topic=VITALS)
    mon = quality.SourceMonitor(VITALS, "hospital-a", "MICU")
    shifted = [e for e in mon.observe(charted, ref.topic(VITALS), T) if e["parameter"] == "temp_c"]
    assert [(e["monitor"], e["state"]) for e in shifted] == [("distribution_shift", "open")]
