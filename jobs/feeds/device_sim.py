"""Bedside-monitor simulator: real ICU patients as monitor numerics at 1 Hz for `vitals.device.v1`.

Each of N beds gets a real patient of the PhysioNet/CinC 2019 data (set A; the bundled 40-patient
sample when the data set is absent, as `replay.load_physionet` finds it), cycled through the data
set in a seeded order (a patient used again is a new admission with a distinct token), starting at
a seeded random second of that patient's ICU stay so that beds are at different points. Bed i is
`hospital-NN/UNIT/bed-iiii` with monitor `mon-iiii`; its unit comes from the first patient's
Unit1/Unit2 flags (`replay.unit_of`), and when a stay ends inside the window the bed reports an
ADT discharge (shaped as `replay.clinical_stream` builds it) and takes the next patient of its
unit's pool from the first hour of that patient's stay.

Trajectory. The patient's hourly PhysioNet vitals, forward- then back-filled within the stay
(DBP derived from MAP and SBP where only those were charted, population values where a parameter
was never charted), are the slow trend, linearly interpolated between hours. On top of it every
bed and parameter has its own AR(1) noise, x[t] = phi x[t-1] + sqrt(1 - phi^2) sd e[t], with the
stationary SDs and per-second autocorrelations of `NOISE_SD` and `NOISE_PHI` (HR 2 bpm, SpO2 0.7 %,
RR 1 /min, arterial BP 3 mmHg shared by SBP/DBP/MAP in proportion, temperature 0.03 degC), clipped
to `PLAUSIBLE` and rounded as monitors show them (SpO2, HR, RR and BP in whole units). Beds with an
arterial line (`art_line_share`) report BP every second; the others a non-invasive cuff reading
(trend plus `CUFF_SD_MMHG` measurement error) every 15 minutes at a bed-specific phase, null in
between. Beds with a temperature probe (`temp_probe_share`) report temp_c; the others null.

Artefact model. Each artefact is a run of seeded episodes per bed: while none is running, one
starts in a second with a fixed per-second hazard and lasts a uniformly drawn number of seconds.
The plan gives each artefact as the expected share of seconds it covers; the hazard is
share / (mean duration x (1 - share) + share), which makes that the stationary share.

* Sensor drop-out (`dropout_share` = 0.2 % of seconds per parameter, 1-5 s): HR, SpO2, RR,
  arterial BP or temperature is null (an SpO2 drop-out nulls its signal quality too).
* SpO2 probe off (`probe_off_share` = 1 %, 10-90 s): `spo2_probe_off` true, signal quality 0 and
  `spo2_pct` 0 in 80 % of episodes (what many monitors send), null in the rest.
* Motion artefact (`motion_share` = 1.5 %, 5-20 s): SpO2 falsely low by 5-20 points with signal
  quality 5-49 %, and HR falsely high by 20-60 bpm from ECG noise.
* ECG leads off (`leads_off_share` = 0.6 %, 10-60 s): `ecg_leads_off` true, heart_rate_bpm null
  (0 in 20 % of episodes) and the impedance respiratory rate, measured through the same
  electrodes, null.
* Otherwise signal quality is 80-100 % and both flags false.

With the defaults about 4 % of records carry an artefact. The model follows what these describe,
but its rates, durations and magnitudes are wardflow's assumptions within that, not values fitted
to them:
Drew BJ, Harris P, Zegre-Hemsey JK, et al. Insights into the problem of alarm fatigue with
physiologic monitor devices: a comprehensive observational study of consecutive intensive care
unit patients. PLoS One 2014;9(10):e110274 (most ICU alarms are false; many come from ECG
leads-off and SpO2 artefact).
Petterson MT, Begnoche VL, Graybeal JM. The effect of motion on pulse oximetry and its clinical
significance. Anesth Analg 2007;105(6 Suppl):S78-84 (motion gives falsely low SpO2 and a poor
signal).
Clifford GD, Behar J, Li Q, Rezek I. Signal quality indices and data fusion for determining
clinical acceptability of electrocardiograms. Physiol Meas 2012;33(9):1419-33 (noise and lead
failures corrupt the ECG and what is derived from it).

`corrupt_rate` gives that share of records one physically impossible value (`IMPOSSIBLE`, outside
the schema's `wardflow.range`). The job refuses that value alone (schemas.codec, "Refused
values"): a record with another value in range is screened without it and the value
dead-lettered (`value_out_of_range`); one with none left is dead-lettered whole (`out_of_range`).

Lab results of the same patients' PhysioNet hours that fall inside the window go to
`labs.result.v1` (shaped as the replay's). Generation is vectorised over beds with numpy, one step
per simulated second, and encoding is a vectorised Avro writer for this schema (`device_payloads`;
byte-equal to `codec.encode`), so that the real-time mode keeps up with 15,000 beds on one core.
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
import pandas as pd
from tqdm import tqdm

from jobs.feeds.replay import DEFAULT_BASE_TIME, Pacer, load_physionet, produce_raw, unit_of
from jobs.runtime import kafka_io
from schemas import codec, load_schema, phi, topics
from schemas.physionet import LABS, VITALS
from schemas.settings import Settings

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
U8 = npt.NDArray[np.uint8]

DEVICE_TOPIC = topics.VITALS_DEVICE.name
LABS_TOPIC = topics.LABS_RESULT.name
ADT_TOPIC = topics.ADT_EVENT.name
MAX_BEDS = 30_000  # 2x the 15,000 monitors of a 12-hospital system: the soak
HOUR_S = 3600
CUFF_INTERVAL_S = 900
CUFF_SD_MMHG = 4.0
SOURCE_PREFIX = "wardflow-device-sim/"

# The record's fields in schema order; NUMERICS are its nullable floats, columns of the arrays.
NUMERICS = (
    "heart_rate_bpm",
    "spo2_pct",
    "resp_rate_per_min",
    "sbp_mmhg",
    "dbp_mmhg",
    "map_mmhg",
    "temp_c",
)
HR, SPO2, RR, SBP, DBP, MAP, TEMP = range(len(NUMERICS))
FIELDS = (
    "device_id",
    "patient_token",
    "facility_id",
    "unit_id",
    "bed_id",
    "event_time",
    *NUMERICS,
    "spo2_signal_quality_pct",
    "spo2_probe_off",
    "ecg_leads_off",
    "source",
)
_PHYSIONET_COLUMN = {f: c for c, f in VITALS.items()}

# Trend for a parameter a patient never had charted (a typical adult ICU patient).
POPULATION_TREND = (85.0, 97.0, 18.0, 120.0, 62.0, 82.0, 37.0)
# What a monitor shows, per NUMERICS column: trend plus noise is clipped into these (HR after a
# motion spike into HR_WITH_ARTEFACT_MAX).
PLAUSIBLE = (
    (25.0, 250.0),
    (50.0, 100.0),
    (3.0, 70.0),
    (40.0, 260.0),
    (15.0, 180.0),
    (25.0, 200.0),
    (30.0, 43.0),
)
PLAUSIBLE_LO = np.array([lo for lo, _ in PLAUSIBLE])
PLAUSIBLE_HI = np.array([hi for _, hi in PLAUSIBLE])
HR_WITH_ARTEFACT_MAX = 300.0

# AR(1) noise channels: HR, SpO2, RR, arterial BP (SBP; DBP and MAP in proportion), temperature.
NOISE_SD = np.array([2.0, 0.7, 1.0, 3.0, 0.03])
NOISE_PHI = np.array([0.95, 0.97, 0.9, 0.9, 0.998])
BP_NOISE_SHARE = {SBP: 1.0, DBP: 0.6, MAP: 0.73}
N_DROPOUT = 5  # drop-out channels: HR, SpO2, RR, arterial BP, temperature

# Episode durations, seconds (inclusive), and what each episode does.
DROPOUT_S = (1, 5)
PROBE_OFF_S = (10, 90)
MOTION_S = (5, 20)
LEADS_OFF_S = (10, 60)
PROBE_OFF_ZERO_SHARE = 0.8  # probe-off episodes that send spo2_pct 0 (else null)
LEADS_OFF_ZERO_SHARE = 0.2  # leads-off episodes that send heart_rate_bpm 0 (else null)
MOTION_SPO2_DROP_PCT = (5, 20)
MOTION_HR_SPIKE_BPM = (20, 60)
QUALITY_GOOD_PCT = (80, 100)
QUALITY_MOTION_PCT = (5, 49)

# Physically impossible values (outside vitals.device.v1's wardflow.range) for corrupt records.
IMPOSSIBLE = ((HR, 999.0), (SPO2, 127.0), (RR, -1.0), (TEMP, 99.9))


@dataclass(frozen=True)
class DevicePlan:
    """What to simulate. Shares are fractions (0.01 = 1 %); artefact shares are the expected share
    of seconds each artefact covers (per parameter for drop-outs)."""

    beds: int
    seconds: int
    seed: int = 2019
    start: datetime = DEFAULT_BASE_TIME
    facilities: int = 1
    art_line_share: float = 0.4
    temp_probe_share: float = 0.2
    corrupt_rate: float = 0.0
    dropout_share: float = 0.002
    probe_off_share: float = 0.01
    motion_share: float = 0.015
    leads_off_share: float = 0.006

    def __post_init__(self) -> None:
        if not 1 <= self.beds <= MAX_BEDS:
            raise ValueError(f"beds must be 1..{MAX_BEDS}, not {self.beds}")
        if self.seconds < 1:
            raise ValueError(f"seconds must be at least 1, not {self.seconds}")
        if not 1 <= self.facilities <= self.beds:
            raise ValueError(f"facilities must be 1..beds, not {self.facilities}")
        if self.start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        for name in ("art_line_share", "temp_probe_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], not {getattr(self, name)}")
        for name in (
            "corrupt_rate",
            "dropout_share",
            "probe_off_share",
            "motion_share",
            "leads_off_share",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), not {getattr(self, name)}")


def hazard_per_s(share: float, duration_s: tuple[int, int]) -> float:
    """The per-second start probability that makes episodes of uniformly drawn `duration_s`
    (inclusive range) cover `share` of the seconds."""
    mean_s = (duration_s[0] + duration_s[1]) / 2
    # Episodes of mean length D alternate with gaps of mean (1 - h) / h seconds (one may start
    # the second after another ends): the share is D / (D + (1 - h) / h).
    return share / (mean_s * (1.0 - share) + share)


@dataclass(frozen=True)
class Stay:
    """One patient's time in one bed: in the bed from simulated second `entry_s` (0: there when
    the simulation starts), `pos0_s` seconds into the patient's ICU stay (counted from its first
    PhysioNet hour) at that second, discharged at simulated second `end_s` (≥ the plan's seconds:
    after the window)."""

    bed: int
    patient_id: str
    token: str
    entry_s: int
    pos0_s: int
    end_s: int


@dataclass(frozen=True)
class _Patients:
    """The data set's patients (sorted by id) on an hourly grid from each one's first ICULOS."""

    ids: list[str]
    units: list[str]
    first_iculos: I64
    hours: I64
    row0: I64
    trend: F64  # (grid rows, NUMERICS): filled hourly vitals
    labs: F64  # (grid rows, LABS): NaN = not measured

    def stay_s(self, p: int) -> int:
        return int(self.hours[p]) * HOUR_S


def _complete_bp(v: F64) -> None:
    """Fill in place the blood pressures a row lacks: from the other two where it has two (MAP =
    (SBP + 2 DBP) / 3), else in the population's proportions to the one it has."""
    sbp, dbp, mean_ap = v[:, SBP], v[:, DBP], v[:, MAP]
    sbp[:] = np.where(np.isnan(sbp), 3 * mean_ap - 2 * dbp, sbp)
    dbp[:] = np.where(np.isnan(dbp), (3 * mean_ap - sbp) / 2, dbp)
    mean_ap[:] = np.where(np.isnan(mean_ap), (sbp + 2 * dbp) / 3, mean_ap)
    pop = np.array(POPULATION_TREND)
    level = mean_ap / pop[MAP]
    level = np.where(np.isnan(level), sbp / pop[SBP], level)
    level = np.where(np.isnan(level), dbp / pop[DBP], level)
    for col in (SBP, DBP, MAP):
        v[:, col] = np.where(np.isnan(v[:, col]), level * pop[col], v[:, col])


def _patients(df: pd.DataFrame) -> _Patients:
    d = df.sort_values(["patient_id", "ICULOS"], kind="stable")
    firsts = d.drop_duplicates("patient_id")  # the first row, as replay.unit_of is given it
    ids = [str(p) for p in firsts["patient_id"]]
    pat = pd.factorize(d["patient_id"])[0].astype(np.int64)  # sorted: codes follow ids
    iculos = d["ICULOS"].to_numpy(dtype=np.int64)
    first = firsts["ICULOS"].to_numpy(dtype=np.int64)
    last = d.groupby("patient_id", sort=True)["ICULOS"].max().to_numpy(dtype=np.int64)
    hours = last - first + 1
    row0 = np.concatenate([[0], np.cumsum(hours)[:-1]]).astype(np.int64)
    rows = row0[pat] + iculos - first[pat]
    group = np.repeat(np.arange(len(ids)), hours)

    raw = np.full((int(hours.sum()), len(NUMERICS)), np.nan)
    raw[rows] = d[[_PHYSIONET_COLUMN[f] for f in NUMERICS]].to_numpy(dtype=np.float64)
    filled = pd.DataFrame(raw).groupby(group).ffill().groupby(group).bfill().to_numpy()
    _complete_bp(filled)
    trend = np.where(np.isnan(filled), np.array(POPULATION_TREND), filled)
    trend = np.clip(trend, PLAUSIBLE_LO, PLAUSIBLE_HI)

    labs = np.full((int(hours.sum()), len(LABS)), np.nan)
    labs[rows] = d[list(LABS)].to_numpy(dtype=np.float64)
    units = [
        unit_of(float(u1), float(u2))
        for u1, u2 in zip(firsts["Unit1"], firsts["Unit2"], strict=True)
    ]
    return _Patients(ids, units, first, hours, row0, trend, labs)


@dataclass(frozen=True)
class _Beds:
    device_ids: list[str]
    facility_ids: list[str]
    unit_ids: list[str]
    bed_ids: list[str]


def _schedule(
    pts: _Patients, plan: DevicePlan, key: bytes, source: str
) -> tuple[_Beds, list[Stay]]:
    """The beds and every stay in them that begins inside the window, in (entry_s, bed) order."""
    rng = np.random.default_rng((plan.seed, 0))
    n = len(pts.ids)
    order = [int(p) for p in rng.permutation(n)]
    uses = [0] * n

    def token(p: int) -> str:
        pid = pts.ids[p]
        uses[p] += 1
        return phi.token(key, source, pid if uses[p] == 1 else f"{pid}#{uses[p] - 1}")

    first = [order[b % n] for b in range(plan.beds)]
    stay_s = np.array([pts.stay_s(p) for p in first], dtype=np.int64)
    pos0 = rng.integers(0, stay_s)
    units = [pts.units[p] for p in first]
    facilities = [f"hospital-{b * plan.facilities // plan.beds + 1:02d}" for b in range(plan.beds)]
    beds = _Beds(
        device_ids=[f"mon-{b + 1:04d}" for b in range(plan.beds)],
        facility_ids=facilities,
        unit_ids=units,
        bed_ids=[f"{facilities[b]}/{units[b]}/bed-{b + 1:04d}" for b in range(plan.beds)],
    )
    out = [
        Stay(b, pts.ids[p], token(p), 0, int(pos0[b]), int(stay_s[b] - pos0[b]))
        for b, p in enumerate(first)
    ]
    pools = {u: [p for p in order if pts.units[p] == u] for u in set(units)}
    taken = {u: units.count(u) for u in pools}  # the initial beds went through each pool in turn
    heap = [(s.end_s, s.bed) for s in out]
    heapq.heapify(heap)
    while heap and heap[0][0] < plan.seconds:
        end_s, b = heapq.heappop(heap)
        pool = pools[units[b]]
        p = pool[taken[units[b]] % len(pool)]
        taken[units[b]] += 1
        s = Stay(b, pts.ids[p], token(p), end_s, 0, end_s + pts.stay_s(p))
        out.append(s)
        heapq.heappush(heap, (s.end_s, b))
    return beds, out


def stays(df: pd.DataFrame, plan: DevicePlan, key: bytes, source: str) -> list[Stay]:
    """Every stay the simulation has: each bed's patient at the start, then each next patient
    taken in the window, in (entry_s, bed) order."""
    return _schedule(_patients(df), plan, key, source)[1]


class _Second(NamedTuple):
    """One simulated second of all beds: numerics (beds × NUMERICS, NaN = null), signal quality
    (-1 = null), the two flags and how many records were corrupted."""

    s: int
    event_time: datetime
    values: F64
    quality: npt.NDArray[np.int16]
    probe_off: Bools
    leads_off: Bools
    corrupt: int


class _Monitors:
    """Every bed's monitor, stepped one simulated second at a time for all beds at once."""

    def __init__(
        self, pts: _Patients, beds: _Beds, all_stays: list[Stay], plan: DevicePlan, source: str
    ) -> None:
        self.plan = plan
        self.pts = pts
        self.beds = beds
        self.source = SOURCE_PREFIX + source
        index = {p: i for i, p in enumerate(pts.ids)}
        first = all_stays[: plan.beds]
        self.tokens = [s.token for s in first]
        self.patient = np.array([index[s.patient_id] for s in first], dtype=np.int64)
        self.entry = np.zeros(plan.beds, dtype=np.int64)
        self.pos0 = np.array([s.pos0_s for s in first], dtype=np.int64)
        self.entering: dict[int, list[tuple[Stay, int]]] = {}
        for s in all_stays[plan.beds :]:
            self.entering.setdefault(s.entry_s, []).append((s, index[s.patient_id]))

        b = plan.beds
        rng = self.rng = np.random.default_rng((plan.seed, 1))
        self.corrupt_rng = np.random.default_rng((plan.seed, 2))
        self.art_line = rng.random(b) < plan.art_line_share
        self.temp_probe = rng.random(b) < plan.temp_probe_share
        self.cuff_phase = rng.integers(0, CUFF_INTERVAL_S, b)
        self.noise = rng.standard_normal((b, len(NOISE_SD))) * NOISE_SD
        self.innovation_sd = NOISE_SD * np.sqrt(1 - NOISE_PHI**2)
        self.dropout_left = np.zeros((b, N_DROPOUT), dtype=np.int64)
        self.probe_left = np.zeros(b, dtype=np.int64)
        self.motion_left = np.zeros(b, dtype=np.int64)
        self.leads_left = np.zeros(b, dtype=np.int64)
        self.probe_zero = np.zeros(b, dtype=bool)
        self.leads_zero = np.zeros(b, dtype=bool)
        self.spo2_drop = np.zeros(b, dtype=np.float64)
        self.hr_spike = np.zeros(b, dtype=np.float64)
        self.hazard = {
            "dropout": hazard_per_s(plan.dropout_share, DROPOUT_S),
            "probe": hazard_per_s(plan.probe_off_share, PROBE_OFF_S),
            "motion": hazard_per_s(plan.motion_share, MOTION_S),
            "leads": hazard_per_s(plan.leads_off_share, LEADS_OFF_S),
        }

    def _episodes(
        self, left: I64, hazard: float, duration_s: tuple[int, int]
    ) -> tuple[Bools, Bools]:
        """Advance one kind of episode by a second: (running this second, started this second)."""
        started = (left == 0) & (self.rng.random(left.shape) < hazard)
        left[started] = self.rng.integers(duration_s[0], duration_s[1] + 1, int(started.sum()))
        running = left > 0
        left[running] -= 1
        return running, started

    def _trend(self, s: int) -> F64:
        pts = self.pts
        pos = self.pos0 + (s - self.entry)
        hour = pos // HOUR_S
        frac = ((pos - hour * HOUR_S) / HOUR_S)[:, None]
        last = pts.hours[self.patient] - 1
        row0 = pts.row0[self.patient]
        a = pts.trend[row0 + np.minimum(hour, last)]
        z = pts.trend[row0 + np.minimum(hour + 1, last)]
        out: F64 = a + (z - a) * frac
        return out

    def step(self, s: int, event_time: datetime) -> tuple[_Second, list[int]]:
        """The records' content at simulated second `s`, and the beds whose patient changed."""
        changed = []
        for stay, p in self.entering.pop(s, []):
            self.tokens[stay.bed] = stay.token
            self.patient[stay.bed] = p
            self.entry[stay.bed] = s
            self.pos0[stay.bed] = stay.pos0_s
            changed.append(stay.bed)
        rng = self.rng
        n = self.plan.beds
        trend = self._trend(s)
        self.noise = NOISE_PHI * self.noise + self.innovation_sd * rng.standard_normal(
            self.noise.shape
        )
        v = np.empty_like(trend)
        v[:, HR] = trend[:, HR] + self.noise[:, 0]
        v[:, SPO2] = trend[:, SPO2] + self.noise[:, 1]
        v[:, RR] = trend[:, RR] + self.noise[:, 2]
        for col, share in BP_NOISE_SHARE.items():
            v[:, col] = trend[:, col] + share * self.noise[:, 3]
        v[:, TEMP] = trend[:, TEMP] + self.noise[:, 4]
        cuff = ~self.art_line & ((s + self.cuff_phase) % CUFF_INTERVAL_S == 0)
        if cuff.any():
            err = rng.normal(0.0, CUFF_SD_MMHG, int(cuff.sum()))
            for col, share in BP_NOISE_SHARE.items():
                v[cuff, col] = trend[cuff, col] + share * err
        np.clip(v, PLAUSIBLE_LO, PLAUSIBLE_HI, out=v)
        v[:, :TEMP] = np.round(v[:, :TEMP])
        v[:, TEMP] = np.round(v[:, TEMP], 2)
        v[:, DBP] = np.minimum(v[:, DBP], v[:, SBP] - 10)
        v[:, MAP] = np.clip(v[:, MAP], v[:, DBP] + 1, v[:, SBP] - 1)
        v[~self.art_line & ~cuff, SBP : MAP + 1] = np.nan
        v[~self.temp_probe, TEMP] = np.nan

        quality = rng.integers(QUALITY_GOOD_PCT[0], QUALITY_GOOD_PCT[1] + 1, n).astype(np.int16)
        dropout, _ = self._episodes(self.dropout_left, self.hazard["dropout"], DROPOUT_S)
        motion, m_new = self._episodes(self.motion_left, self.hazard["motion"], MOTION_S)
        probe, p_new = self._episodes(self.probe_left, self.hazard["probe"], PROBE_OFF_S)
        leads, l_new = self._episodes(self.leads_left, self.hazard["leads"], LEADS_OFF_S)
        self.spo2_drop[m_new] = rng.integers(*MOTION_SPO2_DROP_PCT, int(m_new.sum()), endpoint=True)
        self.hr_spike[m_new] = rng.integers(*MOTION_HR_SPIKE_BPM, int(m_new.sum()), endpoint=True)
        self.probe_zero[p_new] = rng.random(int(p_new.sum())) < PROBE_OFF_ZERO_SHARE
        self.leads_zero[l_new] = rng.random(int(l_new.sum())) < LEADS_OFF_ZERO_SHARE

        v[dropout[:, 0], HR] = np.nan
        v[dropout[:, 1], SPO2] = np.nan
        v[dropout[:, 2], RR] = np.nan
        v[dropout[:, 3] & self.art_line, SBP : MAP + 1] = np.nan
        v[dropout[:, 4], TEMP] = np.nan
        if motion.any():
            v[motion, SPO2] = np.maximum(v[motion, SPO2] - self.spo2_drop[motion], 0.0)
            v[motion, HR] = np.minimum(v[motion, HR] + self.hr_spike[motion], HR_WITH_ARTEFACT_MAX)
            quality[motion] = rng.integers(*QUALITY_MOTION_PCT, int(motion.sum()), endpoint=True)
        if probe.any():
            v[probe, SPO2] = np.where(self.probe_zero[probe], 0.0, np.nan)
            quality[probe] = 0
        if leads.any():
            v[leads, HR] = np.where(self.leads_zero[leads], 0.0, np.nan)
            v[leads, RR] = np.nan
        quality[dropout[:, 1] & ~probe] = -1  # no SpO2 this second, so no quality either

        corrupt = 0
        if self.plan.corrupt_rate > 0:
            bad = np.flatnonzero(self.corrupt_rng.random(n) < self.plan.corrupt_rate)
            which = self.corrupt_rng.integers(0, len(IMPOSSIBLE), len(bad))
            cols = np.array([c for c, _ in IMPOSSIBLE])[which]
            v[bad, cols] = np.array([x for _, x in IMPOSSIBLE])[which]
            corrupt = len(bad)
        second = _Second(s, event_time, v, quality, probe, leads, corrupt)
        return second, changed


def _varint(n: int) -> bytes:
    """Avro's zig-zag varint of a long."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def _avro_string(s: str) -> bytes:
    b = s.encode()
    return _varint(len(b)) + b


class _Encoder:
    """A vectorised Avro writer for vitals.device.v1 records, byte-equal to `codec.encode`.

    Each bed's record is one row of a byte matrix with a mask of the bytes in use: the bed's
    strings (rewritten when its patient changes), event_time, seven ['null','float'] unions (one
    byte, or five), the signal-quality ['null','int'] union, the two ['null','boolean'] flags and
    the source. The masked bytes, flattened, are all records back to back."""

    TIME_BYTES = 10
    FLOAT_BYTES = 5

    def __init__(self, beds: _Beds, tokens: list[str], source: str) -> None:
        self.beds = beds
        self.n = len(tokens)
        self.prefix_w = max(len(self._prefix(b, tokens[b])) for b in range(self.n))
        src = np.frombuffer(_avro_string(source), dtype=np.uint8)
        self.t0 = self.prefix_w
        self.f0 = self.t0 + self.TIME_BYTES
        self.q0 = self.f0 + len(NUMERICS) * self.FLOAT_BYTES
        self.flags0 = self.q0 + 3
        self.s0 = self.flags0 + 4
        width = self.s0 + len(src)
        self.buf = np.zeros((self.n, width), dtype=np.uint8)
        self.used = np.zeros((self.n, width), dtype=bool)
        for b in range(self.n):
            self.set_patient(b, tokens[b])
        self.buf[:, self.s0 :] = src
        self.used[:, self.s0 :] = True
        self.buf[:, self.flags0] = 2  # the flags are never null
        self.buf[:, self.flags0 + 2] = 2
        self.used[:, self.flags0 : self.flags0 + 4] = True
        self.floats = self.buf[:, self.f0 : self.q0].reshape(
            self.n, len(NUMERICS), self.FLOAT_BYTES
        )
        self.float_used = self.used[:, self.f0 : self.q0].reshape(
            self.n, len(NUMERICS), self.FLOAT_BYTES
        )
        if self.floats.base is None or self.float_used.base is None:
            raise AssertionError("the float block must be a view of the byte matrix")
        self.float_used[:, :, 0] = True
        self.used[:, self.q0] = True
        self.last_ms: int | None = None

    def _prefix(self, b: int, token: str) -> bytes:
        bd = self.beds
        return b"".join(
            _avro_string(x)
            for x in (bd.device_ids[b], token, bd.facility_ids[b], bd.unit_ids[b], bd.bed_ids[b])
        )

    def set_patient(self, b: int, token: str) -> None:
        p = np.frombuffer(self._prefix(b, token), dtype=np.uint8)
        if len(p) > self.prefix_w:
            raise ValueError(f"bed {b}: a token of another length ({token!r})")
        self.buf[b, : len(p)] = p
        self.used[b, : self.prefix_w] = False
        self.used[b, : len(p)] = True

    def encode(self, sec: _Second) -> list[bytes]:
        ms = codec.epoch_ms(sec.event_time)
        if ms != self.last_ms:
            t = np.frombuffer(_varint(ms), dtype=np.uint8)
            self.buf[:, self.t0 : self.t0 + len(t)] = t
            self.used[:, self.t0 : self.f0] = False
            self.used[:, self.t0 : self.t0 + len(t)] = True
            self.last_ms = ms
        present = ~np.isnan(sec.values)
        self.floats[:, :, 0] = present * 2
        f32 = np.where(present, sec.values, 0.0).astype("<f4")
        self.floats[:, :, 1:] = f32.view(np.uint8).reshape(self.n, len(NUMERICS), 4)
        self.float_used[:, :, 1:] = present[:, :, None]

        q = sec.quality.astype(np.int64)
        has_q = q >= 0
        zz = 2 * np.maximum(q, 0)
        two = zz > 0x7F
        self.buf[:, self.q0] = has_q * 2
        self.buf[:, self.q0 + 1] = np.where(two, (zz & 0x7F) | 0x80, zz)
        self.buf[:, self.q0 + 2] = zz >> 7
        self.used[:, self.q0 + 1] = has_q
        self.used[:, self.q0 + 2] = has_q & two
        self.buf[:, self.flags0 + 1] = sec.probe_off
        self.buf[:, self.flags0 + 3] = sec.leads_off

        blob = self.buf[self.used].tobytes()
        ends = np.cumsum(self.used.sum(axis=1)).tolist()
        return [blob[a:z] for a, z in zip([0, *ends[:-1]], ends, strict=True)]


class Payloads(NamedTuple):
    """One simulated second encoded: Kafka keys (patient tokens) and Avro values, in bed order,
    and how many of the records were made corrupt."""

    event_time: datetime
    keys: list[bytes]
    values: list[bytes]
    corrupt: int


class _Simulation:
    """A plan's patients, beds and stays with their monitors, one simulated second after the
    other; `start` (the event time of second 0) may be moved until the first second is taken."""

    def __init__(self, df: pd.DataFrame, plan: DevicePlan, key: bytes, source: str) -> None:
        self.plan = plan
        self.source = source
        self.start = plan.start
        self.pts = _patients(df)
        self.beds, self.stays = _schedule(self.pts, plan, key, source)
        self.monitors = _Monitors(self.pts, self.beds, self.stays, plan, source)

    def seconds(self) -> Iterator[tuple[_Second, list[int]]]:
        for s in range(self.plan.seconds):
            yield self.monitors.step(s, self.start + timedelta(seconds=s))

    def records(self) -> Iterator[list[dict[str, Any]]]:
        m = self.monitors
        n = self.plan.beds
        for sec, _ in self.seconds():
            cols: list[list[Any]] = [
                m.beds.device_ids,
                m.tokens,
                m.beds.facility_ids,
                m.beds.unit_ids,
                m.beds.bed_ids,
                [sec.event_time] * n,
            ]
            for j in range(len(NUMERICS)):
                c = sec.values[:, j]
                o = c.astype(object)
                o[np.isnan(c)] = None
                cols.append(o.tolist())
            q = sec.quality.astype(object)
            q[sec.quality < 0] = None
            cols += [q.tolist(), sec.probe_off.tolist(), sec.leads_off.tolist(), [m.source] * n]
            yield [dict(zip(FIELDS, row, strict=True)) for row in zip(*cols, strict=True)]

    def payloads(self) -> Iterator[Payloads]:
        m = self.monitors
        keys = [t.encode() for t in m.tokens]
        encoder = _Encoder(m.beds, m.tokens, m.source)
        for sec, changed in self.seconds():
            for b in changed:
                keys[b] = m.tokens[b].encode()
                encoder.set_patient(b, m.tokens[b])
            yield Payloads(sec.event_time, list(keys), encoder.encode(sec), sec.corrupt)

    def clinical(self) -> list[tuple[str, dict[str, Any]]]:
        """Lab results and ADT discharges of the stays (see `clinical_records`)."""
        plan, pts, beds = self.plan, self.pts, self.beds
        index = {p: i for i, p in enumerate(pts.ids)}
        out: list[tuple[str, dict[str, Any]]] = []
        for st in self.stays:
            p = index[st.patient_id]
            facility, unit = beds.facility_ids[st.bed], beds.unit_ids[st.bed]
            # Hours h of the stay at simulated seconds entry_s + h * HOUR_S - pos0_s in the window.
            first_h = math.ceil(st.pos0_s / HOUR_S)
            last_h = min(
                int(pts.hours[p]) - 1, (st.pos0_s + plan.seconds - 1 - st.entry_s) // HOUR_S
            )
            for h in range(first_h, last_h + 1):
                row = pts.labs[int(pts.row0[p]) + h]
                if np.isnan(row).all():
                    continue
                iculos = int(pts.first_iculos[p]) + h
                at = self.start + timedelta(seconds=st.entry_s + h * HOUR_S - st.pos0_s)
                values = {
                    f: None if math.isnan(x) else float(x)
                    for f, x in zip(LABS.values(), row, strict=True)
                }
                out.append(
                    (
                        LABS_TOPIC,
                        {
                            "result_id": f"{st.token}:{iculos}:labs",
                            "patient_token": st.token,
                            "facility_id": facility,
                            "unit_id": unit,
                            "event_time": at,
                            **values,
                            "source": self.source,
                        },
                    )
                )
            if st.end_s < plan.seconds:
                out.append(
                    (
                        ADT_TOPIC,
                        {
                            "event_id": f"{st.token}:discharge",
                            "event_type": "discharge",
                            "source_message_type": "device_sim",
                            "patient_token": st.token,
                            "encounter_token": None,
                            "facility_id": facility,
                            "unit_id": None,
                            "bed_id": None,
                            "prior_unit_id": unit,
                            "prior_bed_id": beds.bed_ids[st.bed],
                            "event_time": self.start + timedelta(seconds=st.end_s),
                            "recorded_time": None,
                            "source": self.source,
                        },
                    )
                )
        order = {LABS_TOPIC: 0, ADT_TOPIC: 1}
        out.sort(key=lambda tr: (tr[1]["event_time"], order[tr[0]], tr[1]["patient_token"]))
        return out


def _simulation(
    df: pd.DataFrame, plan: DevicePlan, key: bytes, source: str, start: datetime | None
) -> _Simulation:
    sim = _Simulation(df, plan, key, source)
    if start is not None:
        sim.start = start
    return sim


def device_seconds(
    df: pd.DataFrame,
    plan: DevicePlan,
    key: bytes,
    source: str,
    *,
    start: datetime | None = None,
) -> Iterator[list[dict[str, Any]]]:
    """For each simulated second s, every bed's vitals.device.v1 record (in bed order), with
    event_time = start (default `plan.start`) + s seconds. `df` is a PhysioNet 2019 format
    frame, `source` its name (the patient-token namespace, as the replay's)."""
    yield from _simulation(df, plan, key, source, start).records()


def device_payloads(
    df: pd.DataFrame,
    plan: DevicePlan,
    key: bytes,
    source: str,
    *,
    start: datetime | None = None,
) -> Iterator[Payloads]:
    """`device_seconds`, encoded: value i of a second is `codec.encode` of record i, byte for
    byte, written without building the records."""
    yield from _simulation(df, plan, key, source, start).payloads()


def clinical_records(
    df: pd.DataFrame,
    plan: DevicePlan,
    key: bytes,
    source: str,
    *,
    start: datetime | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, record) for the simulated patients' lab results (one per PhysioNet hour with any
    lab value whose time falls inside the window) and an ADT discharge for each stay that ends
    inside it, shaped as `replay.clinical_stream` builds them (the discharge names the bed), in
    event-time order (labs before ADT at equal times, then by patient token)."""
    return _simulation(df, plan, key, source, start).clinical()


def produce(
    settings: Settings,
    plan: DevicePlan,
    *,
    prefix: str = "",
    realtime: bool = False,
    progress: bool = True,
    path: Path | None = None,
) -> dict[str, float]:
    """Produce the device records to `prefix + vitals.device.v1` and the clinical records to
    their topics, merged in event-time order, keyed by patient token with the Kafka timestamp =
    `codec.record_time`; returns the counts (device_records, labs, adt, corrupt).

    `realtime` starts at the current wall-clock second (once the simulation is set up) and
    produces each simulated second's records when that second begins on the wall clock. When it
    cannot keep up it goes on as fast as it can and says so: `late_seconds` counts the seconds
    produced after they had ended, `seconds_behind` is the most that was (0 when it kept up)."""
    df, source = load_physionet(path, settings)
    sim = _Simulation(df, plan, settings.require_phi_key(), source)
    del df  # the simulation keeps what it needs of it
    p = kafka_io.producer(settings)
    pacer = Pacer(1.0 if realtime else 0.0, p)
    if realtime:
        now = time.time()
        sim.start = datetime.fromtimestamp(math.floor(now), UTC)
        pacer.t0_wall = time.monotonic() - (now - math.floor(now))
    clinical = sim.clinical()
    device_topic = prefix + DEVICE_TOPIC
    stats: dict[str, float] = dict.fromkeys(
        ("device_records", "labs", "adt", "corrupt", "late_seconds", "seconds_behind"), 0
    )
    i = 0
    bar = tqdm(
        total=plan.seconds, unit="s", desc=f"device_sim → {device_topic}", disable=not progress
    )
    for s, sec in enumerate(sim.payloads()):
        pacer.wait_for(sec.event_time)
        late_s = time.monotonic() - pacer.t0_wall - (s + 1)
        if realtime and late_s > 0:
            stats["late_seconds"] += 1
            stats["seconds_behind"] = max(stats["seconds_behind"], late_s)
            bar.set_postfix(behind_s=f"{late_s:.1f}", refresh=False)
        ts = codec.epoch_ms(sec.event_time)
        for k, v in zip(sec.keys, sec.values, strict=True):
            produce_raw(p, device_topic, k, v, ts)
        stats["device_records"] += len(sec.values)
        stats["corrupt"] += sec.corrupt
        while i < len(clinical) and clinical[i][1]["event_time"] <= sec.event_time:
            topic, rec = clinical[i]
            value = codec.encode(load_schema(topic), rec)
            at = codec.epoch_ms(codec.record_time(rec))
            produce_raw(p, prefix + topic, rec["patient_token"].encode(), value, at)
            stats["labs" if topic == LABS_TOPIC else "adt"] += 1
            i += 1
        p.poll(0)
        bar.update()
    bar.close()
    p.flush_or_raise(60)
    stats["start_epoch_ms"] = codec.epoch_ms(sim.start)
    return stats


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--beds", type=int, default=300, help=f"monitors (1..{MAX_BEDS})")
    ap.add_argument("--seconds", type=int, default=600, help="simulated seconds")
    ap.add_argument("--realtime", action="store_true", help="from now, one second per second")
    ap.add_argument("--facilities", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--file", type=Path, default=None, help="a PhysioNet 2019 format parquet")
    ap.add_argument("--art-line-share", type=float, default=DevicePlan.art_line_share)
    ap.add_argument("--temp-probe-share", type=float, default=DevicePlan.temp_probe_share)
    ap.add_argument("--corrupt-rate", type=float, default=DevicePlan.corrupt_rate)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument(
        "--json", action="store_true", help="no progress bar; print the counts as one JSON line"
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    plan = DevicePlan(
        beds=a.beds,
        seconds=a.seconds,
        seed=a.seed,
        facilities=a.facilities,
        art_line_share=a.art_line_share,
        temp_probe_share=a.temp_probe_share,
        corrupt_rate=a.corrupt_rate,
    )
    kafka_io.wait_for_broker(settings)
    kafka_io.ensure_topics(settings, [DEVICE_TOPIC, LABS_TOPIC, ADT_TOPIC], prefix=a.topic_prefix)
    st = produce(
        settings, plan, prefix=a.topic_prefix, realtime=a.realtime, path=a.file,
        progress=not a.json,
    )  # fmt: skip
    if a.json:
        print(json.dumps(st))
        return
    behind = (
        f", fell behind {st['late_seconds']:.0f} s (at most {st['seconds_behind']:.1f} s)"
        if st["late_seconds"]
        else ""
    )
    print(
        f"produced {st['device_records']:.0f} device records ({st['corrupt']:.0f} corrupt), "
        f"{st['labs']:.0f} lab results and {st['adt']:.0f} discharges under prefix "
        f"{a.topic_prefix!r}{behind}"
    )


if __name__ == "__main__":
    main()
