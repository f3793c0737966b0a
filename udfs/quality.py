"""Data-quality monitors: pure functions over one source's event-time windows, and the per-source
state machine that turns them into quality.event.v1 events (opened, escalated, resolved).

A *source* is (source topic, facility, unit); unit `*` is the facility's whole source. The
data-quality job (jobs/data_quality.py) computes each source's tumbling windows in Flink SQL
(records, distinct record ids, refusals by reason, and per numeric parameter the non-null
count, mean, median and counts over the reference's bins, accepted AND refused values) and hands
them, at window rate, to `SourceMonitor` (one per source, held by its facility's
`FacilityMonitor` in state keyed by facility; udfs/flink_quality.py).

The monitors, their thresholds and why (MONITORS):

- feed silence: no window for `silence_min` (per topic, SILENCE_MIN) after a source was seen
  in at least `min_windows` windows; resolved by the next window. At facility level (`*`) it
  is the whole feed going silent.
- volume drop / surge: the window's record count against the median of the source's previous
  windows (at least `min_history`), a Poisson tail probability below `p_value` and a ratio of at
  least `ratio`: a clinical feed's counts are counts of independent arrivals.
- dead-letter share by reason: share of the window's records refused with a reason, at least
  `share` and `ratio` times the reference share, with a binomial tail below `p_value`.
- missingness: per parameter, the share of records carrying it below `ratio` times the
  source's own share over its previous windows (at least `min_history`; charting habits differ
  between units, so a global reference would flag a unit for how it charts), binomial tail
  below `p_value`.
- distribution shift: per parameter, the population stability index of the window's values
  over the reference bins (PSI ≥ 0.1 moderate, ≥ 0.25 major: Siddiqi, Credit Risk Scorecards,
  Wiley 2006; Yurdakul, Statistical properties of the population stability index, Western
  Michigan University 2018), together with a chi-square goodness-of-fit test on the same bins
  (p below `p_value`) so that a small window's sampling noise — PSI ≈ (bins − 1) / n under no
  shift — is not read as a shift, in `shift_windows` consecutive windows (a unit's patients are
  the same from one window to the next, so one window's cohort blip is no fault). PSI ≥
  `severe_psi` with the median outside the reference's 1st–99th percentiles quarantines at once.
  Judged on at least `min_values` independent values (`independent_values`: on the device
  topic, monitors, not seconds), so a unit of a few monitors is never judged a population (its
  unit faults are the unit-conversion check's).
- unit-conversion suspect: per parameter with a known wrong unit (UNIT_SUSPECTS), the window's
  median lies outside the reference's 1st–99th percentiles while the median converted from the
  wrong unit lies inside its 5th–95th: a temperature centred near 98 read as °F is 36.7 °C.
  Quarantines (weight in lb and pressures in kPa warn only: see UNIT_SUSPECTS).
- duplicate storm: share of records repeating a record id already in the window. Quarantines.
- frozen device (`FrozenFeed`, per device): a monitor or gateway that lost its patient, or whose
  driver hung, keeps re-sending its last numerics, which the screen takes for a steady patient.
  Judged per device (the `device_id` of vitals.device.v1, and of vitals.observation.v1 where a
  gateway charts with one) on the job's one-minute windows per device, in the JVM
  (`device_windows` is their reference): opens when every numeric parameter the device sends
  (the same ones, each bit-identical), with at least `frozen_min_varying` of FROZEN_VARYING
  among them (SpO2 at 100 %, and a value of 0, not counting), has repeated over
  `frozen_min_readings` consecutive readings (distinct record ids: a record delivered twice is
  one) spanning `frozen_min_identical_min`; resolves when the readings move again or the
  device falls silent (its topic's SILENCE_MIN, the facility's windows the clock). An event
  only: the quarantine registry scopes a unit's source or parameter, not a device. The evidence
  (`python -m training.frozen_evidence`: the real charted vital signs of the MIMIC-III and eICU
  demos, PhysioNet 2019 set A and PhysioNet 2012 sets A and B, 48,199 stay-days; none is 1 Hz):
  - one parameter alone often repeats from one reading to the next (SpO2 30-38 %, temperature
    22-33 %, respiratory rate 12-19 %, heart rate 9-14 %, pressures 3-8 %); every parameter of
    the charted set does in 0.010-0.11 % of consecutive readings;
  - the longest real runs of identical readings are 5 readings over 60 min (PhysioNet 2012) and
    4 over 3 h (eICU: HR 70 with SpO2 98; 3 over 2 h with HR 60 and RR 12, HR 66 and RR 18,
    paced and ventilated patients). K = 5 readings over T = 2 h (a charted vital sign's
    validity, udfs.sepsis.VALIDITY_H: a frozen feed is found before its values have stood
    longer than one charting is trusted) raises no event on any of them: at most 6.2e-5 a
    device-day (none in 48,199, 95 %), under one a day over a 12-hospital system's 15,000.
    That is the charted view, all seven parameters; a monitor that sends HR, SpO2 and RR only
    raises 2.1e-3 a device-day (68 in 32,315; about 32 a day over 15,000; at 1 Hz at most
    1.73e-2), below;
  - at 1 Hz the readings come at once and the span decides: with K = 2 the same data raise 4
    events (eICU's paced and ventilated runs, a set A stay charted unchanged for 2 h), 8.3e-5
    a device-day. A live monitor would have to hold every second, which hourly charts cannot
    show, so these bound it from above;
  - a monitor that sends HR, SpO2 and RR and nothing else (no pressure, temperature or signal
    quality), the common bedside case: those three alone repeat in 0.85-1.2 % of hourly
    readings and in runs of up to 14 h, nearly all at SpO2 100 with the heart and respiratory
    rates held (paced and fully ventilated, or charted as round numbers). The shipped
    thresholds (K = 5, T = 2 h) raise 68 events in 32,315 of its stay-days: 2.1e-3 a
    device-day, about 32 a day over a 12-hospital system's 15,000 monitors, not the charted
    view's none; at 1 Hz (K = 2) 1.73e-2 a device-day bounds it from above (a heart rate not
    paced moves between charted hours). A paced, fully ventilated patient on SpO2 100 % whose
    monitor sends nothing else looks frozen to any rule on its values: the condition says what
    to check, and quarantines nothing;
  - T = 2 h is the charted view's span; for the device topic (1 Hz numerics) it is a
    placeholder until real 1 Hz numerics are available to set it (a shorter T is expected
    there: a live patient's 1 Hz values cannot hold bit for bit for long);
  - not found: a partial freeze, where some parameters repeat and others move (a gateway's
    frozen cache charted beside a live blood-pressure cuff): the window is not identical.

A condition quarantines what is faulty (`quarantine_scope`): a unit-conversion suspect or a severe
shift its parameter of the source, a duplicate storm the source's records as a whole. An event's
`action` is per scope: `quarantine` when the first quarantining condition of that scope opens,
`clear` when the last one of that scope ends (a °F temperature and a duplicate storm at once: two
quarantines, each cleared by its own condition's end); its evidence names the scope
(`QUARANTINE_SCOPE`: the parameter, or `*`), which the actuator applies (sinks/quarantine.py).
Conditions restored from the state of the version before scopes quarantined the whole source
(their `Open.scope` is None), and end that quarantine as they did (a clear of `*` when the last
one ends). A job started without its savepoint holds none of them, and nothing it sends ends the
whole-source quarantine they set: an operator does (udfs/quarantine.py).

The p-value thresholds are per source, parameter and window: at 1e-6, a facility with 10
sources × 15 parameters × 288 five-minute windows a day (43,200 tests) expects 0.04 chance
alarms a day from sampling alone. The reference (bins, shares, percentiles) is built from real
training data by `python -m training.quality_reference` (udfs/quality_reference.json).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from statistics import median
from typing import Any, NamedTuple

import numpy as np
from scipy import stats

from schemas import topics
from udfs import monitor as model_monitor_stats
from udfs.quarantine import EVERY_PARAMETER, parameter_key

REFERENCE_FILE = Path(__file__).resolve().parent / "quality_reference.json"
WHOLE_FACILITY = "*"
EPSILON = 1e-4  # floor of a bin's share in PSI (empty bins), as the ML ops board's PSI
MS_PER_MIN = 60_000

# Minutes without a window after which a source counts as silent, per topic. Vitals are charted
# at least hourly in an ICU (PhysioNet/CinC 2019 rows are hourly): two missed rounds. A unit's
# labs arrive several an hour (16 % of set A's patient-hours carry a lab; a 20-bed unit expects
# ~3 an hour, so 3 h without one has probability e^-9.6 ≈ 7e-5). A monitor at device rate sends
# every second: 5 minutes is an outage. ADT moves a few times a day per unit.
SILENCE_MIN: dict[str, float] = {
    topics.VITALS_DEVICE.name: 5.0,
    topics.VITALS_OBSERVATION.name: 120.0,
    topics.LABS_RESULT.name: 180.0,
    topics.ADT_EVENT.name: 720.0,
}


@dataclass(frozen=True)
class Thresholds:
    """The monitors' thresholds (see the module doc for each one's source)."""

    min_windows: int = 3  # windows seen before a source's silence means anything
    min_history: int = 6  # windows of baseline before volume is judged
    history: int = 12  # windows kept for the baseline
    volume_ratio: float = 4.0  # drop to ≤ 1/4 or surge to ≥ 4× the baseline
    p_value: float = 1e-6  # per source, parameter and window (see module doc)
    dead_letter_share: float = 0.05  # at least 5 % of a window's records refused for a reason
    dead_letter_ratio: float = 3.0  # and 3× the reference share
    min_refused: int = 5
    missing_ratio: float = 0.5  # present in under half the source's recent share of records
    min_expected_present: float = 10.0  # judge missingness only where ≥ 10 values are expected
    min_values: int = 50  # independent values in a window before its distribution is compared
    # (on the device feed, monitors: a unit's are never judged a population, not even for a
    # severe shift: ten infants' heart rates are beyond the adult reference's 99th percentile;
    # the unit-conversion checks guard the device feed)
    level_change_h: float = 24.0  # a volume level held steady this long is the feed's new one
    major_psi: float = 0.25  # Siddiqi 2006: ≥ 0.25 a major shift
    stable_psi: float = 0.1  # Siddiqi 2006: < 0.1 no significant shift (resolves)
    severe_psi: float = 1.0  # 4× the major cut-off, and the median outside the reference's
    # 1st-99th percentiles: the values are not the reference's kind (quarantines at once)
    shift_windows: int = 2  # a major shift opens when it persists: a cohort's blip does not
    min_suspect_values: int = 3  # values whose median may suggest a wrong unit
    duplicate_share: float = 0.2  # ≥ 20 % repeated ids: redelivery far beyond a retry's few %
    min_duplicate_records: int = 20
    # A frozen device feed (the module doc, "frozen device", has the evidence): every parameter
    # identical over at least this many consecutive readings, spanning at least this long
    # (first to last reading): no real charted run reached both (5 over 60 min, 4 over 3 h)
    frozen_min_readings: int = 5
    frozen_min_identical_min: float = 120.0  # a charted vital sign's validity (VALIDITY_H)
    # with at least this many of them parameters a live patient's physiology moves
    # (FROZEN_VARYING): one alone can hold (a paced heart rate, SpO2 100 % on oxygen)
    frozen_min_varying: int = 2
    frozen_window_min: int = 1  # the job's windows per device, in which readings are compared


MONITORS = (
    "feed_silence",
    "volume_drop",
    "volume_surge",
    "dead_letter_share",
    "missingness",
    "distribution_shift",
    "unit_conversion",
    "duplicate_storm",
    "frozen_device",
)
QUARANTINING = frozenset({"unit_conversion", "duplicate_storm", "distribution_shift"})
# The quarantining conditions that make a source's records untrustworthy as a whole (the rest
# quarantine their parameter only: one temperature probe in °F blinded the screen to the unit's
# heart rate, SpO2, blood pressure and respiratory rate).
WHOLE_SOURCE_QUARANTINING = frozenset({"duplicate_storm"})
QUARANTINE_SCOPE = "quarantine_scope"  # the evidence key of an action's scope


def quarantine_scope(monitor: str, parameter: str | None) -> str | None:
    """What a quarantining condition quarantines: its parameter of the source, or None, every
    parameter (the source's records as a whole)."""
    return None if monitor in WHOLE_SOURCE_QUARANTINING else parameter


def action_parameter(event: Mapping[str, Any]) -> str | None:
    """The parameter a quality event's `action` quarantines or clears (None: every parameter of
    the source), as its evidence names it; an event written before scopes names none, and its
    action was the whole source's. Raises ValueError on evidence that is not a JSON object, or
    a scope that is neither `*` nor a field name (the actuator quarantines the whole source on
    such a `quarantine`, changes nothing on such a `clear`, and dead-letters either:
    sinks/quarantine.py)."""
    try:
        evidence = json.loads(event.get("evidence_json") or "{}")
    except json.JSONDecodeError as e:
        raise ValueError(f"evidence_json is not JSON: {e}") from None
    if not isinstance(evidence, dict):
        raise ValueError(f"evidence_json is not a JSON object: {type(evidence).__name__}")
    scope = evidence.get(QUARANTINE_SCOPE, EVERY_PARAMETER)
    try:
        if not isinstance(scope, str) or not scope:
            raise ValueError
        return parameter_key(scope)
    except ValueError:
        raise ValueError(f"{QUARANTINE_SCOPE} is neither `*` nor a field name: {scope!r}") from None


# `action_parameter` in ClickHouse over quality_events: the scope, `*` for every parameter.
QUARANTINE_SCOPE_SQL = (
    f"if(JSONHas(evidence_json, '{QUARANTINE_SCOPE}'), "
    f"JSONExtractString(evidence_json, '{QUARANTINE_SCOPE}'), '{EVERY_PARAMETER}')"
)


@dataclass(frozen=True)
class UnitSuspect:
    """A parameter's plausible wrong unit and the conversion from it to the field's unit."""

    wrong_unit: str
    to_field_unit: Callable[[float], float]
    source: str
    quarantines: bool = True  # False: a warning for a person to judge, the values still used


# Conversions are definitions: °F = °C × 9/5 + 32; creatinine 1 mg/dL = 88.4 µmol/L (SI units,
# e.g. the AMA Manual of Style's conversion table); body weight 1 kg = 2.2046 lb; pressure
# 1 kPa = 7.50062 mmHg (monitors set to kPa, as some European units chart blood pressure).
# Weight and pressures only warn: a bariatric unit's true kilograms (a median of 170) read as
# pounds are a plausible 77 kg, and an arterial line during a cardiac arrest reads a MAP of
# 10-14 mmHg, what a monitor set to kPa shows for a normal one; neither median proves a fault,
# and quarantining would null the parameter for the unit's records (the weights of a day of
# weigh-ins, the pressures from a code until another arterial line's normal ones; before
# quarantines were a parameter's, every vital sign of the unit's records).
_KPA = "1 kPa = 7.50062 mmHg"
UNIT_SUSPECTS: dict[str, UnitSuspect] = {
    "temp_c": UnitSuspect("degF", lambda f: (f - 32.0) * 5.0 / 9.0, "°C = (°F − 32) × 5/9"),
    "creatinine_mg_dl": UnitSuspect("umol/L", lambda u: u / 88.4, "1 mg/dL = 88.4 µmol/L"),
    "weight_kg": UnitSuspect("lb", lambda lb: lb / 2.2046, "1 kg = 2.2046 lb", quarantines=False),
    "sbp_mmhg": UnitSuspect("kPa", lambda k: k * 7.50062, _KPA, quarantines=False),
    "dbp_mmhg": UnitSuspect("kPa", lambda k: k * 7.50062, _KPA, quarantines=False),
    "map_mmhg": UnitSuspect("kPa", lambda k: k * 7.50062, _KPA, quarantines=False),
}


@dataclass(frozen=True)
class ParameterReference:
    """One parameter's reference: bin edges (a value v is in bin i = number of edges ≤ v),
    each bin's share, the share of records carrying it, and percentiles."""

    edges: tuple[float, ...]
    proportions: tuple[float, ...]
    present_share: float | None
    percentiles: Mapping[str, float]

    def bin_of(self, v: float) -> int:
        return sum(1 for e in self.edges if e <= v)


@dataclass(frozen=True)
class TopicReference:
    parameters: Mapping[str, ParameterReference]
    refused_share: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Reference:
    name: str
    topics: Mapping[str, TopicReference]

    def topic(self, source_topic: str) -> TopicReference:
        return self.topics.get(source_topic) or TopicReference({})


def parse_reference(raw: Mapping[str, Any]) -> Reference:
    topics = {}
    for topic, t in raw["topics"].items():
        params = {
            name: ParameterReference(
                tuple(p["edges"]),
                tuple(p["proportions"]),
                p.get("present_share"),
                dict(p["percentiles"]),
            )
            for name, p in t["parameters"].items()
        }
        topics[topic] = TopicReference(params, dict(t.get("refused_share", {})))
    return Reference(str(raw.get("name", "reference")), topics)


@cache
def load_reference(path: Path = REFERENCE_FILE) -> Reference:
    return parse_reference(json.loads(path.read_text()))


# --- the statistics ---------------------------------------------------------------------------


def psi(observed_counts: list[int] | tuple[int, ...], reference: tuple[float, ...]) -> float:
    """Population stability index of observed bin counts against reference shares: the one
    definition the model monitors use (udfs.monitor.psi, shares floored at EPSILON)."""
    if sum(observed_counts) == 0:
        return 0.0
    expected = np.asarray(reference, dtype="float64")
    return model_monitor_stats.psi(expected, np.asarray(observed_counts), EPSILON)


def chi_square_p(
    observed_counts: list[int] | tuple[int, ...] | tuple[float, ...], reference: tuple[float, ...]
) -> float:
    """p-value of a chi-square goodness-of-fit test of the counts (scaled to a number of
    independent draws, `independent_values`) against the reference shares (shares floored at
    EPSILON and renormalised)."""
    n = sum(observed_counts)
    if n == 0:
        return 1.0
    q = [max(x, EPSILON) for x in reference]
    s = sum(q)
    expected = [n * x / s for x in q]
    return float(stats.chisquare(observed_counts, expected).pvalue)


# Values a monitor sends per second and parameter on a topic at device rate (vitals.device.v1:
# one record a second). A monitor's seconds are one patient's, nearly alike: they are one draw
# of the population the reference describes, not hundreds.
VALUES_PER_S: dict[str, float] = {topics.VITALS_DEVICE.name: 1.0}


def independent_values(w: Window, n: int) -> float:
    """How many independent draws a window's `n` values of one parameter are: on a topic at
    device rate, its monitors (`n` over a monitor's values in the window), else `n` (a charted
    value per patient and round). A unit's few monitors at 1 Hz counted as 300 draws made every
    χ² test significant: one febrile patient's 39.5 °C quarantined the unit's device values,
    blinding the screen where the septic patient was."""
    rate = VALUES_PER_S.get(w.source_topic)
    if rate is None:
        return float(n)
    seconds = max(1.0, (w.end_ms - w.start_ms) / 1000)
    return n / (rate * seconds)


def poisson_low(k: int, mean: float) -> float:
    """P(X ≤ k) for X ~ Poisson(mean)."""
    return float(stats.poisson.cdf(k, mean))


def poisson_high(k: int, mean: float) -> float:
    """P(X ≥ k) for X ~ Poisson(mean)."""
    return float(stats.poisson.sf(k - 1, mean))


def binomial_low(k: int, n: int, p: float) -> float:
    return float(stats.binom.cdf(k, n, p))


def binomial_high(k: int, n: int, p: float) -> float:
    return float(stats.binom.sf(k - 1, n, p))


def unit_suspect(
    parameter: str, median_value: float | None, n: int, ref: ParameterReference, t: Thresholds
) -> tuple[bool, float | None]:
    """Whether a window's median suggests the parameter arrives in its UNIT_SUSPECTS wrong unit,
    and the median converted from that unit."""
    suspect = UNIT_SUSPECTS.get(parameter)
    if suspect is None or median_value is None or n < t.min_suspect_values:
        return False, None
    pc = ref.percentiles
    converted = suspect.to_field_unit(median_value)
    outside = not pc["p01"] <= median_value <= pc["p99"]
    fits = pc["p05"] <= converted <= pc["p95"]
    return outside and fits, converted


# --- one window of one source -----------------------------------------------------------------


@dataclass(frozen=True)
class ParameterWindow:
    """A parameter's values in one window: non-null count, mean, median, bin counts."""

    present: int
    mean: float | None
    median: float | None
    bins: tuple[int, ...]


@dataclass(frozen=True)
class Window:
    """One source's tumbling window as the job's SQL computes it."""

    source_topic: str
    facility_id: str
    unit_id: str
    start_ms: int
    end_ms: int
    records: int
    distinct_ids: int
    refused: Mapping[str, int]
    parameters: Mapping[str, ParameterWindow]
    sample_ids: str | None = None

    @property
    def key(self) -> str:
        return source_key(self.source_topic, self.facility_id, self.unit_id)


class Span(NamedTuple):
    """The evidence window of an event and its records."""

    start_ms: int
    end_ms: int
    records: int


def source_key(source_topic: str, facility_id: str, unit_id: str) -> str:
    return f"{source_topic}|{facility_id}|{unit_id}"


def parse_parameters(params_json: str | None) -> dict[str, ParameterWindow]:
    """The SQL's `params_json`: {parameter: [present, mean, median, bin counts…]}."""
    out = {}
    for name, v in json.loads(params_json or "{}").items():
        out[name] = ParameterWindow(
            int(v[0] or 0),
            None if v[1] is None else float(v[1]),
            None if v[2] is None else float(v[2]),
            tuple(int(c or 0) for c in v[3:]),
        )
    return out


def event_id(*parts: object) -> str:
    return hashlib.md5("|".join(str(p) for p in parts).encode()).hexdigest()


def event_row(
    *,
    event_id: str,
    at_ms: int,
    monitor: str,
    state: str,
    action: str | None,
    severity: str,
    source: tuple[str, str, str],
    parameter: str | None,
    statistic: str,
    observed: float | None,
    expected: float | None,
    threshold: float | None,
    span: Span,
    sample_ids: str | None,
    opened: str | None,
    reason: str,
    evidence: Mapping[str, Any],
) -> dict[str, Any]:
    """A quality.event.v1 event as a dict (schemas.rows.QUALITY_EVENT: its times as `_ms`);
    `source` is (source topic, facility, unit)."""
    return {
        "event_id": event_id,
        "event_time_ms": at_ms,
        "monitor": monitor,
        "state": state,
        "action": action,
        "severity": severity,
        "source_topic": source[0],
        "facility_id": source[1],
        "unit_id": source[2],
        "parameter": parameter,
        "statistic": statistic,
        "observed": _finite(observed),
        "expected": _finite(expected),
        "threshold": threshold,
        "window_start_ms": span.start_ms,
        "window_end_ms": span.end_ms,
        "records": span.records,
        "sample_record_ids": sample_ids,
        "opened_event_id": opened,
        "reason": reason,
        "evidence_json": json.dumps(evidence, sort_keys=True, default=_finite),
    }


# --- the per-source state machine -------------------------------------------------------------


@dataclass
class Open:
    """An open condition: the event that opened it, whether it quarantined and what
    (`quarantine_scope`; None: the whole source, as every condition restored from the state of
    the version before scopes, which pickled no `scope`, quarantined)."""

    event_id: str
    since_ms: int
    quarantine: bool
    scope: str | None = None


@dataclass
class SourceMonitor:
    """One source's monitors between windows: its recent counts, the last window seen and its
    open conditions (by (monitor, parameter)). Pickled into the job's keyed state."""

    source_topic: str
    facility_id: str
    unit_id: str
    windows: int = 0
    last_end_ms: int | None = None
    counts: list[int] = field(default_factory=list)
    # per parameter, (present, records) of its recent windows: the missingness baseline
    present: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    shifted: dict[str, int] = field(default_factory=dict)  # consecutive windows of major shift
    open: dict[tuple[str, str | None], Open] = field(default_factory=dict)
    # the record counts of the windows while a volume drop or surge is open (not the baseline)
    held: tuple[int, ...] = ()

    # -- events --
    def _event(
        self,
        monitor: str,
        state: str,
        at_ms: int,
        *,
        span: Span,
        parameter: str | None = None,
        statistic: str,
        observed: float | None,
        expected: float | None,
        threshold: float | None,
        reason: str,
        evidence: Mapping[str, Any],
        severity: str = "warning",
        sample_ids: str | None = None,
        quarantine: bool = False,
    ) -> dict[str, Any]:
        key = (monitor, parameter)
        eid = event_id(
            self.source_topic, self.facility_id, self.unit_id, monitor, parameter, state, at_ms
        )
        action = None
        opened = None
        if state == "open":
            was = self.open.get(key)
            # an escalation (a condition already open, opening again more severe) names the
            # event that opened it, so that counting conditions counts each once
            opened = was.event_id if was else None
            if was is not None and was.quarantine:
                scope = was.scope
            else:
                scope = quarantine_scope(monitor, parameter)
                if quarantine and not self.quarantines(scope):
                    action = "quarantine"
            self.open[key] = Open(
                was.event_id if was else eid,
                was.since_ms if was else at_ms,
                quarantine or bool(was and was.quarantine),
                scope,
            )
        else:
            was = self.open.pop(key)
            opened = was.event_id
            scope = was.scope
            if was.quarantine and not self.quarantines(scope):
                action = "clear"
            severity = "info"
        if action is not None:
            evidence = {**evidence, QUARANTINE_SCOPE: scope or EVERY_PARAMETER}
        return event_row(
            event_id=eid,
            at_ms=at_ms,
            monitor=monitor,
            state=state,
            action=action,
            severity=severity,
            source=(self.source_topic, self.facility_id, self.unit_id),
            parameter=parameter,
            statistic=statistic,
            observed=observed,
            expected=expected,
            threshold=threshold,
            span=span,
            sample_ids=sample_ids,
            opened=opened,
            reason=reason,
            evidence=evidence,
        )

    def is_open(self, monitor: str, parameter: str | None = None) -> bool:
        return (monitor, parameter) in self.open

    @property
    def quarantined(self) -> bool:
        return any(o.quarantine for o in self.open.values())

    def quarantines(self, scope: str | None) -> bool:
        """Whether an open condition holds the quarantine of `scope` (None: the whole
        source's)."""
        return any(o.quarantine and o.scope == scope for o in self.open.values())

    @property
    def whole_facility(self) -> bool:
        return self.unit_id == WHOLE_FACILITY

    def _where(self) -> str:
        unit = "all units" if self.whole_facility else f"unit {self.unit_id}"
        return f"{self.source_topic} of {unit} at {self.facility_id}"

    # -- silence (event-time timers) --
    def silence_due_ms(self, silence_min: float) -> int | None:
        """When this source is silent unless another window comes (a timer)."""
        if self.last_end_ms is None:
            return None
        return self.last_end_ms + round(silence_min * MS_PER_MIN)

    def check_silence(self, now_ms: int, silence_min: float, t: Thresholds) -> list[dict[str, Any]]:
        """Opens feed silence when the source is known to have sent nothing from the end of its
        last window until `now_ms`, for at least silence_min; the event is stamped at the time
        the silence reached silence_min."""
        due = self.silence_due_ms(silence_min)
        if due is None or now_ms < due or self.windows < t.min_windows:
            return []
        if self.is_open("feed_silence"):
            return []
        assert self.last_end_ms is not None
        silent = (now_ms - self.last_end_ms) / MS_PER_MIN
        return [
            self._event(
                "feed_silence",
                "open",
                due,
                span=Span(self.last_end_ms, now_ms, 0),
                statistic="silent_min",
                observed=silent,
                expected=0.0,
                threshold=silence_min,
                reason=f"no records from {self._where()} for {silent:.0f} min "
                f"(silent after {silence_min:.0f} min); last window ended "
                f"{_iso(self.last_end_ms)}",
                evidence={"last_window_end_ms": self.last_end_ms, "windows_seen": self.windows},
                severity="critical" if self.whole_facility else "warning",
            )
        ]

    # -- one window --
    def observe(self, w: Window, ref: TopicReference, t: Thresholds) -> list[dict[str, Any]]:
        """The events a window raises or resolves, in a fixed order."""
        out: list[dict[str, Any]] = []
        base = Span(w.start_ms, w.end_ms, w.records)
        if self.is_open("feed_silence"):
            assert self.last_end_ms is not None
            gap = (w.start_ms - self.last_end_ms) / MS_PER_MIN
            out.append(
                self._event(
                    "feed_silence",
                    "resolved",
                    w.end_ms,
                    span=base,
                    statistic="silent_min",
                    observed=gap,
                    expected=0.0,
                    threshold=None,
                    reason=f"records from {self._where()} resumed after {gap:.0f} min",
                    evidence={"last_window_end_ms": self.last_end_ms},
                    sample_ids=w.sample_ids,
                )
            )
        out += self._volume(w, t, base)
        out += self._baseline(w, t, base)
        out += self._refused(w, ref, t, base)
        if not self.whole_facility:
            out += self._duplicates(w, t, base)
            for name, pw in sorted(w.parameters.items()):
                pref = ref.parameters.get(name)
                out += self._missing(w, name, pw, pref, t, base)
                if pref is None:
                    continue
                out += self._unit(w, name, pw, pref, t, base)
                out += self._shift(w, name, pw, pref, t, base)
        self.windows += 1
        self.last_end_ms = w.end_ms
        return out

    def _baseline(self, w: Window, t: Thresholds, base: Span) -> list[dict[str, Any]]:
        """The volume baseline after a window: the feed's normal level. A window of a drop or
        surge still open joins it no more than a missing parameter's share does (after 7
        windows of a feed at a quarter, the drop "resolved" against its own faulty level); it
        is held instead. A level held steady (the last `history` windows within a factor of 2 of
        their median) for `level_change_h` since the condition opened (a day: an outage is
        acted on long before) is the feed's new level (a unit moved to another lab system): the
        condition resolves as a change of level, saying so, and the baseline follows it, so that
        a later outage is seen again."""
        volume = [m for m in ("volume_drop", "volume_surge") if self.is_open(m)]
        if not volume:
            self.counts, self.held = [*self.counts, w.records][-t.history :], ()
            return []
        self.held = (*self.held, w.records)[-t.history :]
        level = float(median(self.held))
        since = min(self.open[(m, None)].since_ms for m in volume)
        held_h = (w.end_ms - since) / 3_600_000
        steady = all(level / 2 <= c <= level * 2 for c in self.held)
        if len(self.held) < t.history or not steady or held_h < t.level_change_h:
            return []
        before = float(median(self.counts)) if self.counts else None
        ev = {"held_windows": list(self.held), "baseline": before, "new_baseline": level}
        self.counts, self.held = list(self.held), ()
        return [
            self._records_event(
                monitor, "resolved", w, base, before, None,
                f"{self._where()} has held a new level of {level:g} records a window for "
                f"{held_h:.0f} h (the baseline was {before:g}): taken as a change of level, "
                "which the baseline now follows (not the feed back)",
                ev,
            )
            for monitor in volume
        ]  # fmt: skip

    def _records_event(
        self,
        monitor: str,
        state: str,
        w: Window,
        base: Span,
        expected: float | None,
        threshold: float | None,
        reason: str,
        evidence: dict[str, Any],
        **more: Any,
    ) -> dict[str, Any]:
        """A volume event: the window's records against the baseline `expected`."""
        return self._event(
            monitor,
            state,
            w.end_ms,
            span=base,
            statistic="records",
            observed=w.records,
            expected=expected,
            threshold=threshold,
            reason=reason,
            evidence=evidence,
            **more,
        )

    def _volume(self, w: Window, t: Thresholds, base: Span) -> list[dict[str, Any]]:
        if len(self.counts) < t.min_history:
            return []
        baseline = float(median(self.counts))
        ev = {"baseline_windows": list(self.counts), "baseline": baseline}
        out = []
        for monitor, open_now, p, ratio_ok in (
            (
                "volume_drop",
                w.records * t.volume_ratio <= baseline,
                poisson_low(w.records, baseline),
                w.records * 2 >= baseline,
            ),
            (
                "volume_surge",
                w.records >= baseline * t.volume_ratio,
                poisson_high(w.records, baseline),
                w.records <= baseline * 2,
            ),
        ):
            if not self.is_open(monitor) and open_now and p < t.p_value:
                word = "dropped" if monitor == "volume_drop" else "surged"
                out.append(
                    self._records_event(
                        monitor, "open", w, base, baseline, t.volume_ratio,
                        f"{self._where()} {word} to {w.records} records in the window against "
                        f"a median of {baseline:g} (Poisson p = {p:.2g})",
                        {**ev, "p_value": p},
                        sample_ids=w.sample_ids,
                    )
                )  # fmt: skip
            elif self.is_open(monitor) and ratio_ok:
                out.append(
                    self._records_event(
                        monitor, "resolved", w, base, baseline, 2.0,
                        f"{self._where()} back to {w.records} records against a median of "
                        f"{baseline:g}",
                        ev,
                    )
                )  # fmt: skip
        return out

    def _refused(
        self, w: Window, ref: TopicReference, t: Thresholds, base: Span
    ) -> list[dict[str, Any]]:
        out = []
        codes = sorted(set(w.refused) | {p for m, p in self.open if m == "dead_letter_share" and p})
        for code in codes:
            k = int(w.refused.get(code, 0))
            share = k / w.records if w.records else 0.0
            expected = float(ref.refused_share.get(code, 0.0))
            limit = max(t.dead_letter_share, t.dead_letter_ratio * expected)
            if not self.is_open("dead_letter_share", code):
                p = binomial_high(k, w.records, max(expected, 1e-3)) if w.records else 1.0
                if k >= t.min_refused and share >= limit and p < t.p_value:
                    out.append(
                        self._event(
                            "dead_letter_share",
                            "open",
                            w.end_ms,
                            span=base,
                            parameter=code,
                            statistic="share",
                            observed=share,
                            expected=expected,
                            threshold=limit,
                            reason=f"{share:.0%} of {self._where()}'s records refused as {code} "
                            f"({k} of {w.records}; reference {expected:.2%})",
                            evidence={"refused": k, "p_value": p, "reason_code": code},
                            sample_ids=w.sample_ids,
                        )
                    )
            elif share < limit / 2:
                out.append(
                    self._event(
                        "dead_letter_share",
                        "resolved",
                        w.end_ms,
                        span=base,
                        parameter=code,
                        statistic="share",
                        observed=share,
                        expected=expected,
                        threshold=limit / 2,
                        reason=f"refusals of {self._where()} as {code} back to {share:.1%}",
                        evidence={"refused": k, "reason_code": code},
                    )
                )
        return out

    def _duplicates(self, w: Window, t: Thresholds, base: Span) -> list[dict[str, Any]]:
        repeated = w.records - w.distinct_ids
        share = repeated / w.records if w.records else 0.0
        ev = {"records": w.records, "distinct_ids": w.distinct_ids}
        if not self.is_open("duplicate_storm"):
            if w.records >= t.min_duplicate_records and share >= t.duplicate_share:
                return [
                    self._event(
                        "duplicate_storm",
                        "open",
                        w.end_ms,
                        span=base,
                        statistic="share",
                        observed=share,
                        expected=0.0,
                        threshold=t.duplicate_share,
                        reason=f"{share:.0%} of {self._where()}'s records repeat a record id "
                        f"({repeated} of {w.records})",
                        evidence=ev,
                        severity="critical",
                        sample_ids=w.sample_ids,
                        quarantine=True,
                    )
                ]
        elif share < t.duplicate_share / 2:
            return [
                self._event(
                    "duplicate_storm",
                    "resolved",
                    w.end_ms,
                    span=base,
                    statistic="share",
                    observed=share,
                    expected=0.0,
                    threshold=t.duplicate_share / 2,
                    reason=f"repeated record ids of {self._where()} back to {share:.1%}",
                    evidence=ev,
                )
            ]
        return []

    def _missing(
        self,
        w: Window,
        name: str,
        pw: ParameterWindow,
        pref: ParameterReference | None,
        t: Thresholds,
        base: Span,
    ) -> list[dict[str, Any]]:
        """Against the source's own recent share of records carrying the parameter: a unit
        whose charting never records a parameter is no fault (set A's diastolic pressure is in
        52 % of rows, but a unit's 60 patients may have it in 10 %); a feed that stops sending
        it is. The baseline is frozen while the condition is open."""
        hist = self.present.get(name, [])
        is_open = self.is_open("missingness", name)
        if not is_open and w.records:
            self.present[name] = [*hist, (pw.present, w.records)][-t.history :]
        if len(hist) < t.min_history or w.records == 0:
            return []
        q = sum(k for k, _ in hist) / max(sum(n for _, n in hist), 1)
        if q <= 0:
            return []
        share = pw.present / w.records
        ev = {
            "present": pw.present,
            "records": w.records,
            "baseline_present_share": q,
            "baseline_windows": len(hist),
            "reference_present_share": pref.present_share if pref else None,
        }
        if not is_open:
            if w.records * q < t.min_expected_present or share >= q * t.missing_ratio:
                return []
            p = binomial_low(pw.present, w.records, q)
            if p >= t.p_value:
                return []
            self.present[name] = hist  # this window is not the baseline
            return [
                self._event(
                    "missingness",
                    "open",
                    w.end_ms,
                    span=base,
                    parameter=name,
                    statistic="share",
                    observed=share,
                    expected=q,
                    threshold=q * t.missing_ratio,
                    reason=f"{name} present in {share:.0%} of {self._where()}'s records "
                    f"against {q:.0%} in its previous {len(hist)} windows "
                    f"(binomial p = {p:.2g})",
                    evidence={**ev, "p_value": p},
                    sample_ids=w.sample_ids,
                )
            ]
        if share >= q * (1 + t.missing_ratio) / 2:
            return [
                self._event(
                    "missingness",
                    "resolved",
                    w.end_ms,
                    span=base,
                    parameter=name,
                    statistic="share",
                    observed=share,
                    expected=q,
                    threshold=q * (1 + t.missing_ratio) / 2,
                    reason=f"{name} present again in {share:.0%} of {self._where()}'s records",
                    evidence=ev,
                )
            ]
        return []

    def _median_event(
        self,
        state: str,
        w: Window,
        name: str,
        pw: ParameterWindow,
        pref: ParameterReference,
        base: Span,
        reason: str,
        evidence: dict[str, Any],
        **more: Any,
    ) -> dict[str, Any]:
        """A unit-conversion event of parameter `name`: the window's median against the
        reference's (its 99th percentile the threshold)."""
        return self._event(
            "unit_conversion",
            state,
            w.end_ms,
            span=base,
            parameter=name,
            statistic="median",
            observed=pw.median,
            expected=pref.percentiles["p50"],
            threshold=pref.percentiles["p99"],
            reason=reason,
            evidence=evidence,
            **more,
        )

    def _unit(
        self,
        w: Window,
        name: str,
        pw: ParameterWindow,
        pref: ParameterReference,
        t: Thresholds,
        base: Span,
    ) -> list[dict[str, Any]]:
        if name not in UNIT_SUSPECTS or pw.present < t.min_suspect_values:
            return []
        suspect, converted = unit_suspect(name, pw.median, pw.present, pref, t)
        wrong = UNIT_SUSPECTS[name]
        was = self.open.get(("unit_conversion", name))
        if was is not None and was.quarantine and not wrong.quarantines:
            # opened by a version that quarantined on it: ended (its quarantine cleared unless
            # another holds one); a suspect still there opens again as a warning
            return [
                self._median_event(
                    "resolved", w, name, pw, pref, base,
                    f"{name} of {self._where()}: a {wrong.wrong_unit} suspect only warns now; "
                    "the quarantine a version before held on it ends",
                    {"median": pw.median, "wrong_unit": wrong.wrong_unit},
                )
            ]  # fmt: skip
        ev = {
            "median": pw.median,
            "converted_median": converted,
            "wrong_unit": wrong.wrong_unit,
            "conversion": wrong.source,
            "reference_percentiles": dict(pref.percentiles),
            "values": pw.present,
        }
        if suspect and not self.is_open("unit_conversion", name):
            return [
                self._median_event(
                    "open", w, name, pw, pref, base,
                    f"{name} of {self._where()} has a median of {pw.median:g} over "
                    f"{pw.present} values, outside the reference's 1st-99th percentiles "
                    f"[{pref.percentiles['p01']:g}, {pref.percentiles['p99']:g}]; read as "
                    f"{wrong.wrong_unit} it is {converted:.1f}, inside them: a unit-conversion "
                    "fault" + ("" if wrong.quarantines else " (a warning: the values are used)"),
                    ev,
                    severity="critical" if wrong.quarantines else "warning",
                    sample_ids=w.sample_ids,
                    quarantine=wrong.quarantines,
                )
            ]  # fmt: skip
        if not suspect and self.is_open("unit_conversion", name):
            pc = pref.percentiles
            if pw.median is not None and pc["p01"] <= pw.median <= pc["p99"]:
                return [
                    self._median_event(
                        "resolved", w, name, pw, pref, base,
                        f"{name} of {self._where()} back to a median of {pw.median:g}", ev,
                    )
                ]  # fmt: skip
        return []

    def _shift(
        self,
        w: Window,
        name: str,
        pw: ParameterWindow,
        pref: ParameterReference,
        t: Thresholds,
        base: Span,
    ) -> list[dict[str, Any]]:
        n = sum(pw.bins)
        draws = independent_values(w, n)
        if n == 0 or draws < t.min_values or len(pw.bins) != len(pref.proportions):
            return []
        value = psi(pw.bins, pref.proportions)
        p = chi_square_p(tuple(c * draws / n for c in pw.bins), pref.proportions)
        ev = {
            "bins": list(pw.bins),
            "edges": list(pref.edges),
            "reference_proportions": list(pref.proportions),
            "chi_square_p": p,
            "independent_values": draws,
        }
        was = self.open.get(("distribution_shift", name))
        major = value >= t.major_psi and p < t.p_value
        self.shifted[name] = self.shifted.get(name, 0) + 1 if major else 0
        pc = pref.percentiles
        outside = pw.median is not None and not pc["p01"] <= pw.median <= pc["p99"]
        severe = major and value >= t.severe_psi and outside
        ev["median"], ev["shifted_windows"] = pw.median, self.shifted.get(name, 0)
        if (was is None and (severe or self.shifted.get(name, 0) >= t.shift_windows)) or (
            was is not None and severe and not was.quarantine
        ):
            return [
                self._event(
                    "distribution_shift",
                    "open",
                    w.end_ms,
                    span=base,
                    parameter=name,
                    statistic="psi",
                    observed=value,
                    expected=0.0,
                    threshold=t.severe_psi if severe else t.major_psi,
                    reason=f"{name} of {self._where()} shifted from the reference: PSI "
                    f"{value:.2f} over {n} values (chi-square p = {p:.2g})"
                    + ("; severe" if severe else ""),
                    evidence=ev,
                    severity="critical" if severe else "warning",
                    sample_ids=w.sample_ids,
                    quarantine=severe,
                )
            ]
        if was is not None and (value < t.stable_psi or p >= 0.01):
            return [
                self._event(
                    "distribution_shift",
                    "resolved",
                    w.end_ms,
                    span=base,
                    parameter=name,
                    statistic="psi",
                    observed=value,
                    expected=0.0,
                    threshold=t.stable_psi,
                    reason=f"{name} of {self._where()} consistent with the reference again: "
                    f"PSI {value:.2f} over {n} values (chi-square p = {p:.2g})",
                    evidence=ev,
                )
            ]
        return []


def _finite(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def _iso(ms: int) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="seconds")


@dataclass
class FacilityMonitor:
    """Every source of one facility: their monitors and the windows not yet applied.

    Windows are applied in event-time order once the watermark has passed them (`advance`), so
    that every source's window of the same time is known together: a source without a window
    while others of its facility have one is silent since its last window (the facility's own
    records are the clock, so the end of a replay or a restart is never taken for silence).
    Where the whole facility goes quiet, the watermark is the clock (`watermark_clock`), unless
    it has jumped to the end of the input."""

    sources: dict[str, SourceMonitor] = field(default_factory=dict)
    pending: list[Window] = field(default_factory=list)
    window_ms: int = 0

    def add(self, w: Window) -> None:
        self.pending.append(w)
        self.window_ms = w.end_ms - w.start_ms

    def silence_check_ms(self, silence_min: Callable[[str], float], t: Thresholds) -> int | None:
        """The end of the window in which a source of the facility turns silent, the earliest
        (a timer there, at the watermark clock, sees every window up to it), of the sources
        `check_silence` judges (seen in `t.min_windows` windows): a source seen once, silent
        long since, would be the earliest for ever and no timer set again for the others."""
        dues = [
            d
            for m in self.sources.values()
            if not m.is_open("feed_silence")
            and m.windows >= t.min_windows
            and (d := m.silence_due_ms(silence_min(m.source_topic))) is not None
        ]
        if not dues or self.window_ms <= 0:
            return None
        return -(-min(dues) // self.window_ms) * self.window_ms

    def advance(
        self,
        until_ms: int,
        reference: Reference,
        t: Thresholds,
        silence_min: Callable[[str], float],
        *,
        watermark_clock: bool,
    ) -> list[dict[str, Any]]:
        """Apply the pending windows that end by `until_ms`, in order; before each window end,
        open silence for the sources known silent by then."""
        due = sorted((w for w in self.pending if w.end_ms <= until_ms), key=_order)
        self.pending = [w for w in self.pending if w.end_ms > until_ms]
        out: list[dict[str, Any]] = []
        i = 0
        while i < len(due):
            end = due[i].end_ms
            group = []
            while i < len(due) and due[i].end_ms == end:
                group.append(due[i])
                i += 1
            started = {w.key: w.start_ms for w in group}
            for key in sorted(self.sources):
                m = self.sources[key]
                out += m.check_silence(started.get(key, end), silence_min(m.source_topic), t)
            for w in group:
                m = self.sources.setdefault(
                    w.key, SourceMonitor(w.source_topic, w.facility_id, w.unit_id)
                )
                out += m.observe(w, reference.topic(w.source_topic), t)
        if watermark_clock:
            for key in sorted(self.sources):
                m = self.sources[key]
                out += m.check_silence(until_ms, silence_min(m.source_topic), t)
        return out


def _order(w: Window) -> tuple[int, str]:
    return (w.end_ms, w.key)


# --- frozen device feeds ----------------------------------------------------------------------

# The parameters a live patient's physiology moves from reading to reading (beat to beat, breath
# to breath), each with the value it can hold by itself, at which it does not count: SpO2
# saturates at 100 % (a patient on oxygen reads 100 for hours); none counts at 0 or below (a
# probe off reads SpO2 0, an empty bed's monitor zeros). A paced heart rate and a
# ventilator's respiratory rate hold too, which no value shows: that is what the span is for
# (see the module doc). Temperature is not among them (a probe's 0.1 °C holds for long
# stretches: 22-24 % of consecutive hourly temperatures in the real data are identical, 3-6 % of
# blood pressures), nor are FiO2, GCS, weight or a signal-quality index: they must repeat too,
# but they do not make a feed look alive.
FROZEN_VARYING: dict[str, float | None] = {
    "heart_rate_bpm": None,
    "resp_rate_per_min": None,
    "spo2_pct": 100.0,
    "sbp_mmhg": None,
    "dbp_mmhg": None,
    "map_mmhg": None,
}
FROZEN_ENDS = ("values_moved", "device_silent")  # why a frozen_device condition resolves


@dataclass(frozen=True)
class DeviceWindow:
    """One device's tumbling window (`Thresholds.frozen_window_min`) as the job's SQL hands it
    on (jobs/data_quality.frozen_sql): only a window whose readings repeat the device's previous
    window's, and the window after such a one. `values`: every reading's values where all the
    window's readings were identical, parameter by parameter (the same parameters present, each
    with the same value), with at least `frozen_min_varying` of FROZEN_VARYING among them above 0
    and below their ceiling; else None. `repeats`: `values` equal the device's previous window's.
    `previous_*`: that previous window's (the run's first, where this window starts a run)."""

    source_topic: str
    device_id: str
    facility_id: str
    unit_id: str
    start_ms: int
    end_ms: int
    records: int
    first_ms: int  # the window's first reading (event time)
    last_ms: int  # and its last
    values: Mapping[str, float] | None
    repeats: bool
    # the window's least and greatest record id (samples for the evidence: in time order only
    # where ids sort by time, as a device's `device@time` do, not a gateway's observation ids)
    first_id: str | None = None
    last_id: str | None = None
    previous_first_ms: int | None = None
    previous_last_ms: int | None = None
    previous_records: int | None = None
    previous_first_id: str | None = None


@dataclass
class FrozenFeed:
    """One device's run of identical readings (every parameter bit-identical from reading to
    reading) and its open `frozen_device` condition, between the windows the job hands on;
    held by its facility's FrozenFeeds (udfs.flink_quality.FrozenFeedMonitor).

    The condition opens when the run holds `frozen_min_readings` readings over at least
    `frozen_min_identical_min` (first to last); it resolves when the values move (a window whose
    readings differ from the run's, or from one another) or when the device falls silent (no
    reading for `silence_min` after the run's last: the source's SILENCE_MIN). An event only:
    the quarantine registry scopes a source (topic, facility, unit) and its parameters, not a
    device, and quarantining the unit's device feed would blind the screen to every other
    monitor of the unit."""

    source_topic: str
    device_id: str
    facility_id: str = ""
    unit_id: str = ""
    values: dict[str, float] | None = None  # the run's values (None: no run)
    first_ms: int = 0
    last_ms: int = 0
    readings: int = 0
    first_id: str | None = None
    last_id: str | None = None
    opened: str | None = None  # the event that opened the condition (None: not open)

    def observe(self, w: DeviceWindow, t: Thresholds, silence_min: float) -> list[dict[str, Any]]:
        """The events a window of the device raises or resolves."""
        out = self.check_silence(w.first_ms, silence_min)
        if not (w.repeats and w.values is not None):
            return out + self._end(w.end_ms, "values_moved", w)
        if self.values is not None and dict(w.values) != self.values:  # a window not handed on
            out += self._end(w.end_ms, "values_moved", w)
        if self.values is None:
            joined = (
                w.previous_last_ms is not None
                and w.previous_first_ms is not None
                and w.first_ms - w.previous_last_ms < silence_min * MS_PER_MIN
            )
            self.values = dict(w.values)
            self.first_ms = (
                w.previous_first_ms if joined and w.previous_first_ms is not None else w.first_ms
            )
            self.readings = w.records + ((w.previous_records or 0) if joined else 0)
            self.first_id = w.previous_first_id if joined else w.first_id
        else:
            self.readings += w.records
        self.last_ms, self.last_id = w.last_ms, w.last_id
        self.facility_id, self.unit_id = w.facility_id, w.unit_id
        if self.opened is None and self.frozen(t):
            out.append(self._opened(w.end_ms, t))
        return out

    def frozen(self, t: Thresholds) -> bool:
        return (
            self.values is not None
            and self.readings >= t.frozen_min_readings
            and self.last_ms - self.first_ms >= t.frozen_min_identical_min * MS_PER_MIN
        )

    def silence_due_ms(self, silence_min: float) -> int | None:
        """When the run ends as the device's silence unless another reading comes (a timer)."""
        if self.values is None:
            return None
        return self.last_ms + round(silence_min * MS_PER_MIN)

    def check_silence(self, now_ms: int, silence_min: float) -> list[dict[str, Any]]:
        """Ends the run where the device has sent nothing from its last reading until `now_ms`
        for at least `silence_min`; an open condition resolves, stamped at the time the silence
        reached `silence_min`."""
        due = self.silence_due_ms(silence_min)
        if due is None or now_ms < due:
            return []
        return self._end(due, "device_silent", None, silence_min)

    # -- events --
    @property
    def identical_min(self) -> float:
        return (self.last_ms - self.first_ms) / MS_PER_MIN

    def _where(self) -> str:
        return f"{self.source_topic} of unit {self.unit_id} at {self.facility_id}"

    def _values_text(self) -> str:
        return ", ".join(f"{k} {v:g}" for k, v in sorted((self.values or {}).items()))

    def _evidence(self, t: Thresholds | None = None) -> dict[str, Any]:
        values = self.values or {}
        ev: dict[str, Any] = {
            "device_id": self.device_id,
            "parameters": sorted(values),
            "values": values,
            "varying_parameters": sorted(
                p for p, v in values.items() if p in FROZEN_VARYING and _below_ceiling(p, v)
            ),
            "first_reading_ms": self.first_ms,
            "last_reading_ms": self.last_ms,
            "first_reading_time": _iso(self.first_ms),
            "last_reading_time": _iso(self.last_ms),
            "readings": self.readings,
            "identical_min": self.identical_min,
        }
        if t is not None:
            ev |= {
                "min_readings": t.frozen_min_readings,
                "min_identical_min": t.frozen_min_identical_min,
                "min_varying": t.frozen_min_varying,
            }
        return ev

    def _row(self, state: str, at_ms: int, **kw: Any) -> dict[str, Any]:
        return event_row(
            event_id=event_id(
                self.source_topic,
                self.facility_id,
                self.unit_id,
                "frozen_device",
                self.device_id,
                state,
                at_ms,
            ),
            at_ms=at_ms,
            monitor="frozen_device",
            state=state,
            action=None,
            source=(self.source_topic, self.facility_id, self.unit_id),
            parameter=None,
            statistic="identical_min",
            observed=self.identical_min,
            expected=None,
            span=Span(self.first_ms, self.last_ms, self.readings),
            sample_ids=" ".join(i for i in (self.first_id, self.last_id) if i) or None,
            **kw,
        )

    def _opened(self, at_ms: int, t: Thresholds) -> dict[str, Any]:
        row = self._row(
            "open",
            at_ms,
            severity="warning",
            threshold=t.frozen_min_identical_min,
            opened=None,
            reason=f"device {self.device_id} of {self._where()} has sent {self.readings} "
            f"readings with every parameter identical for {self.identical_min:.0f} min "
            f"({self._values_text()}): the numerics are frozen (the device or its gateway "
            "repeating its last values), not the patient's",
            evidence=self._evidence(t),
        )
        self.opened = row["event_id"]
        return row

    def _end(
        self, at_ms: int, why: str, w: DeviceWindow | None, silence_min: float | None = None
    ) -> list[dict[str, Any]]:
        """Ends the run; the resolved event of an open condition, for `why` (FROZEN_ENDS)."""
        out = []
        if self.values is not None and self.opened is not None:
            ended = (
                f"its readings moved again (window from {_iso(w.start_ms)})"
                if w is not None
                else f"it fell silent (no reading for {silence_min:g} min)"
            )
            ev = self._evidence() | {"ended": why}
            if w is not None:
                ev["moved_window"] = {
                    "start_ms": w.start_ms,
                    "end_ms": w.end_ms,
                    "records": w.records,
                    "values": dict(w.values) if w.values is not None else None,
                }
            out.append(
                self._row(
                    "resolved",
                    at_ms,
                    severity="info",
                    threshold=None,
                    opened=self.opened,
                    reason=f"device {self.device_id} of {self._where()}: {ended} after "
                    f"{self.readings} identical readings over {self.identical_min:.0f} min",
                    evidence=ev,
                )
            )
        self.values, self.opened, self.readings = None, None, 0
        self.first_id = self.last_id = None
        return out


Reading = tuple[int, str | None, Mapping[str, float | None]]  # (event time ms, record id, values)


def device_windows(
    source_topic: str,
    device_id: str,
    facility_id: str,
    unit_id: str,
    readings: Iterable[Reading],
    t: Thresholds,
) -> list[DeviceWindow]:
    """The windows the job's SQL hands on (jobs/data_quality.device_windows_sql, frozen_sql) for
    one device's readings, in event-time order: their reference, in Python. A value None (or
    NaN: a data set's missing value) is a parameter not sent; the job's decoder refuses a NaN
    a device sends, and the SQL finds no window with one identical."""
    window_ms = t.frozen_window_min * MS_PER_MIN
    groups: dict[int, list[Reading]] = {}
    for r in readings:
        groups.setdefault(r[0] // window_ms, []).append(r)
    windows = []
    for k in sorted(groups):
        g = groups[k]
        times = [at for at, _, _ in g]
        ids = [i for _, i, _ in g if i is not None]
        windows.append(
            DeviceWindow(
                source_topic, device_id, facility_id, unit_id, k * window_ms, (k + 1) * window_ms,
                _readings(g), min(times), max(times), _identical(g, t), False,
                min(ids) if ids else None, max(ids) if ids else None,
            )
        )  # fmt: skip
    out = []
    for i, w in enumerate(windows):
        v1 = windows[i - 1].values if i >= 1 else None
        v2 = windows[i - 2].values if i >= 2 else None
        repeats = w.values is not None and w.values == v1
        if repeats or (v1 is not None and v1 == v2):
            p = windows[i - 1]
            out.append(
                dataclasses.replace(
                    w,
                    repeats=repeats,
                    previous_first_ms=p.first_ms,
                    previous_last_ms=p.last_ms,
                    previous_records=p.records,
                    previous_first_id=p.first_id,
                )
            )
    return out


def _readings(g: list[Reading]) -> int:
    """How many readings: a record id delivered twice is one (the SQL's COUNT(DISTINCT
    record_id)); a reading without an id (a data set's) is its own."""
    return len({i for _, i, _ in g if i is not None}) + sum(1 for _, i, _ in g if i is None)


def _identical(readings: list[Reading], t: Thresholds) -> dict[str, float] | None:
    """The readings' values where all are identical, parameter by parameter, with enough of them
    varying (`device_windows_sql`'s `values_json`); else None."""
    names = sorted({n for _, _, v in readings for n in v})
    values: dict[str, float] = {}
    for n in names:
        vs = [_sent(v.get(n)) for _, _, v in readings]
        sent = [x for x in vs if x is not None]
        if not sent:
            continue
        if len(sent) < len(vs) or any(x != sent[0] for x in sent):
            return None
        values[n] = sent[0]
    varying = sum(1 for n, x in values.items() if n in FROZEN_VARYING and _below_ceiling(n, x))
    return values if varying >= t.frozen_min_varying else None


def _sent(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else float(x)


class Tick(NamedTuple):
    """A window of the facility's whole source (unit `*`) ended: the facility's records reached
    `end_ms` (the clock for its devices' silence)."""

    end_ms: int


@dataclass
class FrozenFeeds:
    """The frozen-feed monitors of one facility's devices (those in a run of identical readings)
    and the windows not yet applied. Windows are applied in event-time order once the watermark
    has passed them (`advance`); the facility's own windows of its whole sources (unit `*`,
    `Tick`) are the clock for a device's silence, as for a source's (FacilityMonitor), so the
    end of a replay or a restart is no device falling silent. Where the whole facility goes
    quiet, the watermark is the clock (`watermark_clock`), unless it has jumped to the end of
    the input. Pickled into the job's state keyed by facility."""

    feeds: dict[str, FrozenFeed] = field(default_factory=dict)
    pending: list[DeviceWindow | Tick] = field(default_factory=list)

    def add(self, item: DeviceWindow | Tick) -> None:
        self.pending.append(item)

    def advance(
        self,
        until_ms: int,
        t: Thresholds,
        silence_min: Callable[[str], float],
        *,
        watermark_clock: bool,
    ) -> list[dict[str, Any]]:
        """Apply the pending windows that end by `until_ms` in order (a device's window before
        the clock's of the same end); at each tick, end the runs of the devices silent by then."""
        due = sorted((w for w in self.pending if w.end_ms <= until_ms), key=_frozen_order)
        self.pending = [w for w in self.pending if w.end_ms > until_ms]
        out: list[dict[str, Any]] = []
        for w in due:
            if isinstance(w, DeviceWindow):
                key = f"{w.source_topic}|{w.device_id}"
                feed = self.feeds.setdefault(key, FrozenFeed(w.source_topic, w.device_id))
                out += feed.observe(w, t, silence_min(w.source_topic))
            else:
                out += self._silence(w.end_ms, silence_min)
        if watermark_clock:
            out += self._silence(until_ms, silence_min)
        self.feeds = {k: f for k, f in self.feeds.items() if f.values is not None}
        return out

    def _silence(self, now_ms: int, silence_min: Callable[[str], float]) -> list[dict[str, Any]]:
        out = []
        for key in sorted(self.feeds):
            f = self.feeds[key]
            out += f.check_silence(now_ms, silence_min(f.source_topic))
        return out

    def silence_check_ms(self, silence_min: Callable[[str], float]) -> int | None:
        """The earliest time a device's run ends as silence unless it sends again (a timer, at
        the watermark clock)."""
        dues = [
            d
            for f in self.feeds.values()
            if (d := f.silence_due_ms(silence_min(f.source_topic))) is not None
        ]
        return min(dues) if dues else None


def _frozen_order(w: DeviceWindow | Tick) -> tuple[int, int, str]:
    if isinstance(w, DeviceWindow):
        return (w.end_ms, 0, f"{w.source_topic}|{w.device_id}")
    return (w.end_ms, 1, "")


def _below_ceiling(parameter: str, value: float) -> bool:
    """A value a live patient's physiology moves: above 0 (SpO2 0 is a probe off, zeros an
    empty bed's monitor) and below the parameter's ceiling (FROZEN_VARYING)."""
    ceiling = FROZEN_VARYING.get(parameter)
    return value > 0 and (ceiling is None or value < ceiling)


def parse_device_window(r: Any) -> DeviceWindow:
    """A schemas.rows.DEVICE_WINDOW row (by name) as a DeviceWindow."""

    def ms(v: Any) -> int | None:
        return None if v is None else int(v)

    return DeviceWindow(
        source_topic=r.source_topic,
        device_id=r.device_id,
        facility_id=r.facility_id,
        unit_id=r.unit_id,
        start_ms=int(r.window_start_ms),
        end_ms=int(r.window_end_ms),
        records=int(r.records),
        first_ms=int(r.first_ms),
        last_ms=int(r.last_ms),
        values=None if r.values_json is None else json.loads(r.values_json),
        repeats=bool(r.repeats),
        first_id=r.first_id,
        last_id=r.last_id,
        previous_first_ms=ms(r.previous_first_ms),
        previous_last_ms=ms(r.previous_last_ms),
        previous_records=ms(r.previous_records),
        previous_first_id=r.previous_first_id,
    )
