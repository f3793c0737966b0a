"""Short-term occupancy forecast of a care unit (or a facility): the predictive distribution of its
census at each of the next 24 hours, a point forecast, 80 % and 95 % prediction intervals and a
surge warning. Pure numpy/pandas.

Contract
--------
Inputs, all known at the forecast origin `t0` (hours since the epoch; nothing after `t0` is read):

- the unit's **stays** that started at or before `t0` (`start_h`, `end_h`; `end_h` NaN or after
  `t0` for a patient still in the unit: censored at `t0`). A stay is one patient's time in the
  unit, from admission or transfer in to discharge or transfer out (the census's delta pairs), so
  the unit's census at `t` is the number of stays with `start_h <= t < end_h`;
- the **current patients'** elapsed hours in the unit, `t0 - start_h`, and, optionally, each one's
  **predicted remaining stay** from the LOS model (`StayPrediction`: the model's median remaining
  hours and the hour it was scored, which is at or before `t0`; NaN where it has no score).

Output (`Forecast`): for h = 1..24 the predictive distribution of the occupancy at `t0 + h`
(exact, as a pmf), its median (the point forecast), expectation and the 80 % / 95 % central
intervals (the 10-90 % and 2.5-97.5 % quantiles); `surge_warning(f, threshold_beds)` flags the
hours whose *point forecast* reaches the unit's surge threshold
(`schemas.capacity.Capacity.surge_beds`), and `Forecast.p_at_least` gives P(occupancy >= threshold).

Method (Littig & Isken, "Short term hospital occupancy prediction", Health Care Manag Sci 2007;
10:47-66: occupancy = patients already in the unit who are still there + arrivals still there):

    E[occ(t0+h)] = sum_i P(patient i still in at t0+h | in for e_i hours)
                 + sum_{j=1..h} lambda(t0+j) * S(h - j + 1/2)

- S is the unit's length-of-stay survival, Kaplan-Meier over its stays up to `t0` (Kaplan & Meier
  1958), the ones still in the unit censored at `t0`, on an hourly grid; beyond the last hour with
  at least MIN_AT_RISK stays at risk its hazard is the tail's pooled constant hazard (events per
  stay-hour), so S extends to any duration. A unit with fewer than MIN_STAYS completed stays uses
  the `prior` survival (the facility's, pooled over its units). Stays that start at the first
  instant of the data (a feed's initial census load, whose real start is unknown) do not count.
- P(still in at t0+h | e) = S(e + h) / S(e). With the LOS model's remaining stay r, predicted
  when the patient had been in for tau <= e hours, the patient's clock runs k times the unit's
  from tau on, u(t) = tau + k (t - tau), with k chosen so that the unit's conditional remaining
  stay at tau, rescaled, has median r: k = median_remaining(tau) / r (the LOS model is fitted
  with absolute-error loss, so it predicts a median). Then P(still in at t0+h | e) =
  S(u(e + h)) / S(u(e)): the distribution's shape from the unit, its scale from the model (a
  patient who outstays the prediction is forecast by the same rescaled law, conditioned on
  being in still). NaN falls back to the unit's. Its effect is measured by
  training/catalog/capacity_los.py.
- lambda (arrivals per hour: admissions and transfers in) is the unit's mean count by hour of week
  (on the facility's clock, `schemas.capacity` time_zones: the hours of a day move with daylight
  saving time, arrivals follow them) over the last ARRIVAL_WINDOW_H hours, shrunk towards its
  hour-of-day mean with PRIOR_WEEKS pseudo-weeks (with less than two weeks of history the
  hour-of-day profile dominates). An arrival during hour j is taken to arrive mid-hour. (Scaling
  the profile by the level of the last 2, 3 or 7 days' arrivals was tried: no better at short
  horizons, worse at 24 h on the generator's backtest, so left out.)
- Distribution: the patients present are independent Bernoulli trials (a Poisson-binomial,
  computed exactly); arrivals are a Poisson process thinned by S, so those still present are
  Poisson; the two convolve. A facility is forecast the same way from its hospital stays
  (`facility_stays`: a transfer between its units is neither a discharge nor an arrival), which
  the backtest found better than summing its units' forecasts (that ignores patient pathways:
  a patient in the ED now is likely on a ward tomorrow).
  The point forecast is the median, which MAE rewards (Gneiting, "Making and evaluating point
  forecasts", JASA 2011; the mean is `Forecast.expected`).

The baselines the backtest compares with (Hyndman & Athanasopoulos, Forecasting: Principles and
Practice, 3rd ed., 2021, section 5.2): seasonal naive, occ(t0+h) = occ(t0+h-24) (h <= 24: known at
`t0`), its weekly form with lag 168, and persistence (naive), occ(t0+h) = occ(t0).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

HORIZON_H = 24
GRID_H = 24 * 60  # the survival curve's hourly grid (60 days); a constant hazard beyond
MIN_AT_RISK = 20
MIN_STAYS = 30
ARRIVAL_WINDOW_H = 28 * 24
PRIOR_WEEKS = 2.0
MODEL_VERSION = "capacity-forecast-1"
HOUR_MS = 3_600_000
_EPOCH_WEEKDAY = 3  # 1970-01-01 was a Thursday: Monday-based weekday of epoch day 0

FloatArray = np.ndarray[Any, np.dtype[np.float64]]


@dataclass(frozen=True)
class Survival:
    """S(t) of a length of stay (hours): `s[k]` = S(k) on the hourly grid, then exp(-tail * t)."""

    s: FloatArray  # S(0..GRID_H), S(0) = 1
    tail_hazard: float  # per hour, beyond the grid
    stays: int  # completed stays it was estimated from

    def __call__(self, t: Any) -> FloatArray:
        t = np.clip(np.asarray(t, dtype=np.float64), 0.0, None)
        last = len(self.s) - 1
        inside = np.interp(np.minimum(t, last), np.arange(last + 1), self.s)
        beyond = self.s[-1] * np.exp(-self.tail_hazard * np.maximum(t - last, 0.0))
        out: FloatArray = np.where(t <= last, inside, beyond)
        return out

    def median_remaining(self, elapsed: Any) -> FloatArray:
        """The median remaining stay after `elapsed` hours: the x with S(elapsed + x) equal to
        S(elapsed) / 2 (linear between the grid's hours, the exponential tail beyond)."""
        e = np.clip(np.asarray(elapsed, dtype=np.float64), 0.0, None)
        half = self(e) / 2
        last = len(self.s) - 1
        # first grid hour at or below half: s is non-increasing, so search its negation
        k = np.searchsorted(-self.s, -half, side="left")
        k = np.clip(k, 1, last)
        lo, hi = self.s[k - 1], self.s[k]
        frac = np.where(lo > hi, (lo - half) / np.where(lo > hi, lo - hi, 1.0), 0.0)
        inside = k - 1 + np.clip(frac, 0.0, 1.0)
        with np.errstate(divide="ignore"):
            tail = last + np.log(self.s[-1] / np.maximum(half, 1e-300)) / max(
                self.tail_hazard, 1e-12
            )
        t = np.where(half >= self.s[-1], inside, tail)
        out: FloatArray = np.maximum(t - e, 1e-6)
        return out


def exponential_survival(mean_h: float) -> Survival:
    """A memoryless stay of mean `mean_h`: the prior of last resort (no stays at all)."""
    rate = 1.0 / mean_h
    return Survival(np.exp(-rate * np.arange(GRID_H + 1)), rate, 0)


def kaplan_meier(duration_h: Any, observed: Any, prior: Survival | None = None) -> Survival:
    """The survival of stays lasting `duration_h` (`observed` False: still in, censored there)."""
    d = np.clip(np.asarray(duration_h, dtype=np.float64), 0.0, None)
    o = np.asarray(observed, dtype=bool)
    if int(o.sum()) < MIN_STAYS:
        return prior if prior is not None else exponential_survival(96.0)
    k = np.minimum(np.floor(d), GRID_H).astype(int)
    events = np.bincount(k[o], minlength=GRID_H + 1).astype(np.float64)
    leaving = np.bincount(k, minlength=GRID_H + 1).astype(np.float64)
    at_risk = len(d) - np.concatenate([[0.0], np.cumsum(leaving)[:-1]])  # stays with d >= k
    sparse = np.flatnonzero(at_risk < MIN_AT_RISK)
    cut = int(sparse[0]) if len(sparse) else GRID_H
    # the tail beyond `cut`: events per stay-hour of exposure past it
    past = d > cut
    exposure = float(np.sum(d[past] - cut))
    tail_events = float(np.sum(o & past))
    tail = tail_events / exposure if exposure > 0 and tail_events > 0 else 1.0 / 96.0
    hazard = np.divide(events, at_risk, out=np.zeros_like(events), where=at_risk > 0)
    hazard[cut:] = 1.0 - math.exp(-tail)
    s = np.concatenate([[1.0], np.cumprod(1.0 - hazard)[:-1]])
    return Survival(s, tail, int(o.sum()))


def hour_of_week(hour: Any, time_zone: str = "UTC") -> Any:
    """0 = Monday 00:00 for integer hours since the epoch, on the clock of `time_zone` (IANA):
    the local hour of week each hour begins in (where the clock is put back, two hours share
    one; where it is put forward, one is skipped). The hours stay UTC's whole hours: in a zone
    whose offset has half hours they begin at :30 local, and where the clock moves by half an
    hour (Lord Howe Island) they shift by that."""
    h = np.asarray(hour, dtype=np.int64)
    if time_zone == "UTC":
        return ((h // 24 + _EPOCH_WEEKDAY) % 7) * 24 + h % 24
    # ZoneInfo: the zone database the capacity file is checked against (pandas would ask pytz)
    utc = pd.DatetimeIndex(pd.to_datetime(h.ravel() * 3600, unit="s", utc=True))
    local = utc.tz_convert(ZoneInfo(time_zone))
    return (local.dayofweek.to_numpy() * 24 + local.hour.to_numpy()).reshape(h.shape)


def arrival_rates(
    arrivals_h: Any,
    history_start_h: float,
    origin_h: float,
    horizon: int = HORIZON_H,
    time_zone: str = "UTC",
) -> FloatArray:
    """Expected arrivals in each hour (t0 + j - 1, t0 + j], j = 1..horizon (see the module doc).
    `arrivals_h`: arrival times at or before the origin; the history starts at `history_start_h`;
    hours of week on the clock of `time_zone` (the facility's)."""
    t0 = math.floor(origin_h)
    first = max(math.ceil(history_start_h), t0 - ARRIVAL_WINDOW_H)
    hours = np.arange(first, t0, dtype=np.int64)  # whole hours [h, h+1) fully observed
    future = hour_of_week(np.arange(t0, t0 + horizon, dtype=np.int64), time_zone)
    if len(hours) == 0:
        return np.zeros(horizon)
    a = np.asarray(arrivals_h, dtype=np.float64)
    a = a[(a >= first) & (a < t0)]
    slot = np.floor(a).astype(np.int64)
    how_n = np.bincount(hour_of_week(hours, time_zone), minlength=168).astype(np.float64)
    how_c = np.bincount(hour_of_week(slot, time_zone), minlength=168).astype(np.float64)
    hod_n = how_n.reshape(7, 24).sum(axis=0)
    hod_c = how_c.reshape(7, 24).sum(axis=0)
    overall = how_c.sum() / how_n.sum()
    hod = (hod_c + overall) / (hod_n + 1.0)
    hod_of_how = np.tile(hod, 7)
    profile = (how_c + PRIOR_WEEKS * hod_of_how) / (how_n + PRIOR_WEEKS)
    out: FloatArray = profile[future]
    return out


def _quantile(pmf: FloatArray, q: float) -> FloatArray:
    """The smallest k with P(N <= k) >= q, per row of a pmf (rows: horizons)."""
    cdf = np.cumsum(pmf, axis=1)
    out: FloatArray = np.argmax(cdf >= q - 1e-9, axis=1).astype(np.float64)
    return out


def _poisson_pmf(mu: FloatArray) -> FloatArray:
    """pmf rows of Poisson(mu_h), long enough for the far tail (8 sd)."""
    top = int(
        np.ceil(float(np.max(mu, initial=0.0)) + 8 * math.sqrt(float(np.max(mu, initial=0.0))) + 8)
    )
    k = np.arange(top + 1, dtype=np.float64)
    lgamma = np.array([math.lgamma(x + 1) for x in k])
    m = np.maximum(mu, 1e-300)[:, None]
    pmf = np.exp(k[None, :] * np.log(m) - m - lgamma[None, :])
    pmf[mu <= 0] = 0.0
    pmf[mu <= 0, 0] = 1.0
    out: FloatArray = pmf / pmf.sum(axis=1, keepdims=True)
    return out


def _convolve_rows(a: FloatArray, b: FloatArray) -> FloatArray:
    out: FloatArray = np.stack([np.convolve(x, y) for x, y in zip(a, b, strict=True)])
    return out


@dataclass(frozen=True)
class Forecast:
    """The predictive distribution of occupancy at t0 + h, h = 1..H: `pmf[h - 1, k]` =
    P(occupancy = k). The point forecast is its median (the forecast that MAE rewards: Gneiting,
    "Making and evaluating point forecasts", JASA 2011); intervals are its central quantiles."""

    origin_h: float
    pmf: FloatArray  # (H, K + 1)

    @property
    def horizons(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        return np.arange(1, len(self.pmf) + 1)

    @property
    def expected(self) -> FloatArray:
        out: FloatArray = self.pmf @ np.arange(self.pmf.shape[1], dtype=np.float64)
        return out

    @property
    def var(self) -> FloatArray:
        k = np.arange(self.pmf.shape[1], dtype=np.float64)
        out: FloatArray = self.pmf @ (k * k) - self.expected**2
        return np.maximum(out, 0.0)

    def quantile(self, q: float) -> FloatArray:
        return _quantile(self.pmf, q)

    @property
    def median(self) -> FloatArray:
        return self.quantile(0.5)

    @property
    def lo80(self) -> FloatArray:
        return self.quantile(0.10)

    @property
    def hi80(self) -> FloatArray:
        return self.quantile(0.90)

    @property
    def lo95(self) -> FloatArray:
        return self.quantile(0.025)

    @property
    def hi95(self) -> FloatArray:
        return self.quantile(0.975)

    def p_at_least(self, beds: float) -> FloatArray:
        """P(occupancy >= beds) per hour."""
        k = np.arange(self.pmf.shape[1])
        out: FloatArray = self.pmf[:, k >= math.ceil(beds - 1e-9)].sum(axis=1)
        return np.clip(out, 0.0, 1.0)

    def __add__(self, other: Forecast) -> Forecast:
        """Two units together, taken as independent: the pmfs convolve."""
        return Forecast(self.origin_h, _convolve_rows(self.pmf, other.pmf))


def forecast(
    origin_h: float,
    elapsed_h: Any,
    survival: Survival,
    rates: Any,
    remaining_h: Any = None,
    scored_elapsed_h: Any = None,
) -> Forecast:
    """The occupancy forecast for h = 1..len(rates) (see the module doc). `remaining_h`: the LOS
    model's median remaining hours per patient (NaN: none), predicted at `scored_elapsed_h`
    hours into the stay (default: now, `elapsed_h`)."""
    e = np.asarray(elapsed_h, dtype=np.float64).reshape(-1)
    lam = np.asarray(rates, dtype=np.float64)
    hs = np.arange(1, len(lam) + 1, dtype=np.float64)
    present = np.ones((len(hs), 1))  # pmf of the current patients still in, per horizon
    if len(e):
        k = np.ones_like(e)  # how fast each patient's clock runs against the unit's
        tau = e.copy()
        if remaining_h is not None:
            r = np.asarray(remaining_h, dtype=np.float64).reshape(-1)
            if scored_elapsed_h is not None:
                tau = np.clip(np.asarray(scored_elapsed_h, dtype=np.float64).reshape(-1), 0.0, e)
            known = np.isfinite(r) & (r > 0) & np.isfinite(tau)
            tau = np.where(known, tau, e)
            if known.any():
                k[known] = survival.median_remaining(tau[known]) / r[known]
        now = tau + (e - tau) * k  # the patient's own clock
        s_now = np.maximum(survival(now), 1e-300)
        p = survival(now[:, None] + hs[None, :] * k[:, None]) / s_now[:, None]
        p = np.clip(p, 0.0, 1.0)  # [patient, h]
        present = np.zeros((len(hs), len(e) + 1))
        present[:, 0] = 1.0
        for i, pi in enumerate(p):  # Poisson-binomial, one patient at a time
            q = pi[:, None]
            present[:, 1 : i + 2] = present[:, 1 : i + 2] * (1 - q) + present[:, : i + 1] * q
            present[:, 0] *= 1 - pi
    # arrivals in hour j still in at hour h: Poisson, mean lambda_j * S(h - j + 1/2), j <= h
    lag = hs[:, None] - hs[None, :] + 0.5  # [h, j]
    stay = np.where(lag > 0, survival(np.maximum(lag, 0.0)), 0.0)
    arriving = _poisson_pmf(stay @ lam)
    return Forecast(origin_h, _convolve_rows(present, arriving))


def surge_warning(f: Forecast, threshold_beds: float) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Hours whose point forecast (the median) reaches the surge threshold: the warning the board
    raises. The upper 80 % bound reaching it (P >= 10 %) is shown as a risk, not a warning.
    Occupancy is whole beds: a threshold of 161.00000000000003 (64.4 % of 250) is 161, as in
    `Forecast.p_at_least`."""
    out: np.ndarray[Any, np.dtype[np.bool_]] = f.median >= math.ceil(threshold_beds - 1e-9)
    return out


# -- stays from the census --------------------------------------------------------------------


def stays_from_placements(placements: pd.DataFrame) -> pd.DataFrame:
    """Stays per unit from each patient's placements in time order: columns `patient_token`,
    `facility_id`, `unit_id` (the unit after the change, None once discharged) and `time_h`.
    Returns `patient_token, facility_id, unit_id, start_h, end_h` (end NaN: still in)."""
    p = placements.sort_values(["patient_token", "time_h"], kind="stable").reset_index(drop=True)
    unit = p.unit_id.fillna("\0")
    place = p.facility_id.astype(str) + "\x1f" + unit.astype(str)
    same_patient = p.patient_token.eq(p.patient_token.shift())
    changed = ~same_patient | place.ne(place.shift())
    p = p[changed].reset_index(drop=True)
    nxt_same = p.patient_token.eq(p.patient_token.shift(-1))
    end = p.time_h.shift(-1).where(nxt_same)
    out = pd.DataFrame(
        {
            "patient_token": p.patient_token,
            "facility_id": p.facility_id,
            "unit_id": p.unit_id,
            "start_h": p.time_h.astype("float64"),
            "end_h": end.astype("float64"),
        }
    )
    kept: pd.DataFrame = out[out.unit_id.notna()].reset_index(drop=True)
    return kept


def facility_stays(stays: pd.DataFrame, unit: str = "ALL") -> pd.DataFrame:
    """Hospital stays: a patient's consecutive unit stays in one facility (each starting when the
    previous ended) merged into one, `unit_id` = `unit`. The facility's forecast is made from
    these, as for a unit (a transfer between its units is no discharge and no arrival)."""
    s = stays.sort_values(["patient_token", "start_h"], kind="stable").reset_index(drop=True)
    new = (
        s.patient_token.ne(s.patient_token.shift())
        | s.facility_id.ne(s.facility_id.shift())
        | s.start_h.ne(s.end_h.shift())
    )
    g = new.cumsum()
    first = s.groupby(g, sort=False).head(1).reset_index(drop=True)
    last = s.groupby(g, sort=False).tail(1).reset_index(drop=True)
    return pd.DataFrame(
        {
            "patient_token": first.patient_token,
            "facility_id": first.facility_id,
            "unit_id": unit,
            "start_h": first.start_h,
            "end_h": last.end_h,  # NaN: still in
        }
    )


def occupancy(start_h: Any, end_h: Any, at_h: Any) -> FloatArray:
    """The census at each time of `at_h`: stays with start <= t < end (end NaN: open)."""
    s = np.sort(np.asarray(start_h, dtype=np.float64))
    e = np.asarray(end_h, dtype=np.float64)
    e = np.sort(np.where(np.isnan(e), np.inf, e))
    t = np.asarray(at_h, dtype=np.float64)
    out: FloatArray = (
        np.searchsorted(s, t, side="right") - np.searchsorted(e, t, side="right")
    ).astype(np.float64)
    return out


@dataclass(frozen=True)
class StayPrediction:
    """The LOS model's latest score of a patient: the median remaining stay in hours from the
    hour it was scored (hours since the epoch)."""

    remaining_h: float
    scored_at_h: float


@dataclass(frozen=True)
class UnitHistory:
    """One unit's stays (hours since the epoch), where the data begin, and (optionally) each
    stay's patient token, for the LOS model's per-patient expectations."""

    start_h: FloatArray
    end_h: FloatArray  # NaN: open
    data_start_h: float
    patients: np.ndarray[Any, np.dtype[Any]] | None = None

    def known_at(self, t0: float) -> tuple[FloatArray, FloatArray]:
        """The stays as known at `t0`: started by then, an end after `t0` unknown (NaN)."""
        keep = self.start_h <= t0
        end = np.where(self.end_h[keep] <= t0, self.end_h[keep], np.nan)
        return self.start_h[keep], end


def unit_survival(h: UnitHistory, t0: float, prior: Survival | None = None) -> Survival:
    """Kaplan-Meier of the unit's stays known at `t0` (census-load stays left out)."""
    start, end = h.known_at(t0)
    usable = start > h.data_start_h
    observed = ~np.isnan(end[usable])
    dur = np.where(observed, end[usable], t0) - start[usable]
    return kaplan_meier(dur, observed, prior)


def forecast_unit(
    h: UnitHistory,
    t0: float,
    prior: Survival | None = None,
    predictions: Mapping[str, StayPrediction] | None = None,
    survival: Survival | None = None,
    time_zone: str = "UTC",
) -> Forecast:
    """The forecast from origin `t0` using only what is known at `t0`. `predictions`: the LOS
    model's latest score by patient token (needs `h.patients`). A patient it lacks, or scored
    before this stay began (in another unit) or after `t0`, gets the unit's conditional
    distribution. `time_zone`: the facility's (IANA), whose clock arrivals follow."""
    start, end = h.known_at(t0)
    s = survival if survival is not None else unit_survival(h, t0, prior)
    here = np.isnan(end)
    arrivals = start[start > h.data_start_h]
    rates = arrival_rates(arrivals, h.data_start_h, t0, time_zone=time_zone)
    elapsed = t0 - start[here]
    if not predictions or h.patients is None:
        return forecast(t0, elapsed, s, rates)
    who = h.patients[h.start_h <= t0][here]
    remaining = np.full(len(who), np.nan)
    scored = np.full(len(who), np.nan)
    for i, (p, since) in enumerate(zip(who, start[here], strict=True)):
        got = predictions.get(str(p))
        if got is not None and since <= got.scored_at_h <= t0:
            remaining[i], scored[i] = got.remaining_h, got.scored_at_h - since
    return forecast(t0, elapsed, s, rates, remaining, scored)


def seasonal_naive(history: Any, lag: int, horizon: int = HORIZON_H) -> FloatArray:
    """occ(t0 + h) = occ(t0 + h - lag·ceil(h/lag)); `history[-1]` is occ(t0), hourly."""
    y = np.asarray(history, dtype=np.float64)
    hs = np.arange(1, horizon + 1)
    back = hs - lag * np.ceil(hs / lag).astype(int)  # <= 0
    out: FloatArray = y[len(y) - 1 + back]
    return out
