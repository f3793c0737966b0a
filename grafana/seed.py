"""A realistic warehouse without running the jobs: for the dashboard tests, the dashboard
benchmark and the previews (`python -m grafana.seed --facilities 12 --days 30`).

- ADT: the multi-site generator (jobs.feeds.adt_generator: N facilities × 500 beds), with 8 % of
  admissions re-using the token of a patient discharged at least a day earlier (readmissions).
  The census state machine (udfs.census) places every patient, giving the census rows, the
  census events and each patient's stays.
- Observations: each stay gets the hourly rows of a real PhysioNet 2019 patient (set A, or the
  bundled sample), values carried forward as the screening job does: hourly in ED, ICU and HDU,
  4-hourly on wards (NEWS2 asks for at least 12-hourly, RCP 2017; 4-hourly is common ward
  practice). udfs.sepsis scores them.
- Alerts: two of the screening rules (NEWS2 ≥ 5 on two readings within 3 h; qSOFA ≥ 2 with
  lactate > 2 mmol/L) through the real alert lifecycle (udfs.lifecycle).
- The capacity forecast (sinks/capacity_forecast.py) from the census, at each of the last
  `forecast_hours` whole hours, as the hourly forecaster would have written it.
- Simulated, because no data set here has them: acknowledgement and sepsis-bundle times,
  champion and challenger risk scores (a logistic function of the scores, with noise; the
  challenger drifts upward in the last third), and a trickle of dead letters.

Rows go into the same tables the loader fills, with `kafka_topic = 'seed:<table>'`, so the
materialized views build the rollups exactly as they do from Kafka.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.feeds import adt_generator
from jobs.feeds.replay import SAMPLE
from jobs.screening.rules import NEWS2_SUSTAINED, QSOFA_LACTATE
from schemas import load_schema, topics
from schemas.capacity import ALL_UNITS, Capacity
from schemas.physionet import LABS, VITALS, measurements
from schemas.settings import Settings
from sinks import capacity_forecast, clickhouse, dims
from udfs import census_stays, lifecycle
from udfs.census import SURGE_LABELS, AdtEvent, Delta, PatientPlacement
from udfs.sepsis import SCORE_COLUMNS, STATE_PARAMS, screen_row

MINUTE_MS = 60_000
HOUR_MS = 3_600_000
FREQUENT_UNITS = ("ED", "ICU", "HDU")
MODEL = "sepsis-risk"
CHAMPION, CHALLENGER = "3", "4"


@dataclass(frozen=True)
class SeedPlan:
    facilities: int = 12
    days: float = 30.0
    seed: int = 7
    readmit_share: float = 0.08
    forecast_hours: int = 6  # origins of the capacity forecast: the last N whole hours

    @property
    def adt(self) -> adt_generator.Plan:
        return adt_generator.Plan(facilities=self.facilities, days=self.days, seed=self.seed)

    @property
    def end_ms(self) -> int:
        return _ms(adt_generator.START + timedelta(days=self.days))


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _dt(ms: Any) -> Any:
    return pd.to_datetime(pd.Series(ms, dtype="int64"), unit="ms", utc=True)


def _md5(*parts: object) -> str:
    return hashlib.md5("|".join(map(str, parts)).encode()).hexdigest()


def adt_events(plan: SeedPlan) -> list[dict[str, Any]]:
    """The generator's events, with some admissions given an earlier patient's token."""
    rng = np.random.default_rng(plan.seed + 1)
    token_of: dict[str, str] = {}
    pool: deque[tuple[datetime, str]] = deque()  # (available from, token), in time order
    pooled: set[str] = set()
    out = []
    for e in adt_generator.events(plan.adt):
        enc = e["encounter_token"]
        if enc not in token_of:
            token = e["patient_token"]
            fresh = e["event_type"] == "admit" and not e["event_id"].endswith(":census-load")
            ready = fresh and pool and pool[0][0] <= e["event_time"]
            if ready and rng.random() < plan.readmit_share:
                token = pool.popleft()[1]
                pooled.discard(token)
            token_of[enc] = token
        e = {**e, "patient_token": token_of[enc]}
        if e["event_type"] == "discharge" and e["patient_token"] not in pooled:
            pool.append((e["event_time"] + timedelta(days=1), e["patient_token"]))
            pooled.add(e["patient_token"])
        out.append(e)
    return out


@dataclass
class Census:
    events: list[dict[str, Any]]
    refused: list[dict[str, Any]]
    deltas: list[Delta]
    stays: pd.DataFrame  # patient_token, facility_id, unit_id, start_ms, end_ms
    discharges: dict[str, list[int]]


def place(events: list[dict[str, Any]], end_ms: int) -> Census:
    placements: dict[str, PatientPlacement] = {}
    open_stay: dict[str, tuple[str, str, int]] = {}
    stays: list[tuple[str, str, str, int, int]] = []
    out, refused, deltas = [], [], []
    discharges: dict[str, list[int]] = {}
    for e in events:
        tok, ms = e["patient_token"], _ms(e["event_time"])
        pp = placements.setdefault(tok, PatientPlacement())
        outcome, ds = pp.apply(AdtEvent.of(e, ms))
        if outcome.refused:
            refused.append({**e, "reason_code": outcome.status, "reason": outcome.reason})
            continue
        deltas += ds
        where = pp.place
        out.append(
            {
                "event_id": e["event_id"],
                "event_type": e["event_type"],
                "patient_token": tok,
                "facility_id": e["facility_id"],
                "unit_id": where.unit_id if where else None,
                "event_time": e["event_time"],
                "outcome": outcome.status,
                "reason": outcome.reason or None,
            }
        )
        cur = open_stay.get(tok)
        if cur and (where is None or (cur[0], cur[1]) != (where.facility_id, where.unit_id)):
            stays.append((tok, cur[0], cur[1], cur[2], ms))
            del open_stay[tok]
        if where is not None and tok not in open_stay:
            open_stay[tok] = (where.facility_id, where.unit_id, ms)
        if where is None and e["event_type"] == "discharge":
            discharges.setdefault(tok, []).append(ms)
    stays += [(tok, f, u, start, end_ms) for tok, (f, u, start) in open_stay.items()]
    cols = ["patient_token", "facility_id", "unit_id", "start_ms", "end_ms"]
    return Census(out, refused, deltas, pd.DataFrame(stays, columns=cols), discharges)


def census_rows(deltas: list[Delta], capacity: Capacity) -> tuple[pd.DataFrame, pd.DataFrame]:
    """census_unit (a row per unit and facility per minute it changed) and census_flow (hourly)."""
    d = pd.DataFrame(deltas, columns=list(Delta._fields))
    counts = ["arrivals", "discharges", "transfers_in", "transfers_out", "cancels"]
    both = pd.concat(
        [d.assign(scope="unit"), d.assign(unit_id=ALL_UNITS, scope="facility")], ignore_index=True
    )
    keys = ["facility_id", "unit_id", "scope"]
    both["window_end"] = (both.event_time_ms // MINUTE_MS + 1) * MINUTE_MS
    unit = both.groupby([*keys, "window_end"], as_index=False)[["occupied", *counts]].sum()
    unit = unit.sort_values([*keys, "window_end"])
    unit["occupied_beds"] = unit.groupby(keys).occupied.cumsum().astype("int32")
    beds = [
        capacity.units[(f, u)] if s == "unit" else capacity.facility_beds(f)
        for f, u, s in zip(unit.facility_id, unit.unit_id, unit.scope, strict=True)
    ]
    unit["capacity_beds"] = np.array(beds, dtype="int32")
    unit["occupancy_pct"] = 100.0 * unit.occupied_beds / unit.capacity_beds
    th = np.array(capacity.thresholds_pct)
    unit["surge_level"] = (unit.occupancy_pct.to_numpy()[:, None] >= th).sum(axis=1)
    unit["surge_label"] = [SURGE_LABELS[lv] for lv in unit.surge_level]
    unit["window_start"] = _dt(unit.window_end - MINUTE_MS).to_numpy()
    unit["window_end"] = _dt(unit.window_end).to_numpy()
    both["window_start"] = both.event_time_ms // HOUR_MS * HOUR_MS
    flow = both.groupby([*keys, "window_start"], as_index=False)[counts].sum()
    flow["window_end"] = _dt(flow.window_start + HOUR_MS).to_numpy()
    flow["window_start"] = _dt(flow.window_start).to_numpy()
    return unit.drop(columns="occupied"), flow


class Physiology:
    """PhysioNet rows per patient, as the job would accept them (schemas.physionet
    .measurements: a record with an implausible value is unknown whole), carried forward."""

    def __init__(self, df: pd.DataFrame) -> None:
        df = df.sort_values(["patient_id", "hour"]).reset_index(drop=True)
        filled = measurements(df).groupby(df["patient_id"]).ffill()
        self.fields = list(filled.columns)
        self.values = filled.to_numpy(dtype="float64")
        sizes = df.groupby("patient_id", sort=True).size().to_numpy()
        self.starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
        self.sizes = sizes

    def rows(self, patient: int, first: int, n: int) -> Any:
        """Row indices of `n` consecutive hours of one PhysioNet patient, wrapping around."""
        k = patient % len(self.sizes)
        return self.starts[k] + (first + np.arange(n)) % self.sizes[k]


def observations(stays: pd.DataFrame, phys: Physiology, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 2)
    cursor: dict[str, int] = {}
    parts = []
    stay_rows: Any = stays.itertuples(index=False)
    for s in stay_rows:
        every = HOUR_MS if s.unit_id in FREQUENT_UNITS else 4 * HOUR_MS
        first = s.start_ms + int(rng.integers(5, 40)) * MINUTE_MS
        if first >= s.end_ms:
            continue
        times = np.arange(first, s.end_ms, every) + rng.integers(0, 10, size=1) * MINUTE_MS
        times = times[times < s.end_ms]
        who = int(hashlib.md5(s.patient_token.encode()).hexdigest()[:8], 16)
        at = cursor.get(s.patient_token, 0)
        cursor[s.patient_token] = at + len(times) * every // HOUR_MS
        idx = (
            phys.rows(who, at, len(times))
            if every == HOUR_MS
            else phys.rows(who, at, len(times) * 4)[::4]
        )
        parts.append(
            pd.DataFrame(
                {
                    "patient_token": s.patient_token,
                    "facility_id": s.facility_id,
                    "unit_id": s.unit_id,
                    "event_ms": times,
                    "row": idx,
                }
            )
        )
    obs = pd.concat(parts, ignore_index=True).sort_values(["event_ms", "patient_token"])
    values = pd.DataFrame(phys.values[obs.row.to_numpy()], columns=phys.fields)
    obs = pd.concat([obs.drop(columns="row").reset_index(drop=True), values], axis=1)
    return obs.astype({f: "float64" for f in phys.fields})


def _opt(x: float) -> float | None:
    return None if math.isnan(x) else x


def screens(obs: pd.DataFrame) -> pd.DataFrame:
    """sepsis_screen rows (record_kind 'vitals') with the four scores from udfs.sepsis."""
    params = [f for f in obs.columns if f in {*VITALS.values(), *LABS.values()} and f != "dbp_mmhg"]
    missing = np.full(len(obs), np.nan)
    columns = [obs[p].to_numpy() if p in obs else missing for p in STATE_PARAMS]
    scored = [screen_row(*map(_opt, values)) for values in zip(*columns, strict=True)]
    out = obs.copy()
    out[list(SCORE_COLUMNS)] = pd.DataFrame(scored, index=obs.index, columns=list(SCORE_COLUMNS))
    out["record_id"] = [_md5(t, m) for t, m in zip(out.patient_token, out.event_ms, strict=True)]
    out["record_kind"] = "vitals"
    out["on_supplemental_o2"] = (out.fio2_fraction > 0.21).where(out.fio2_fraction.notna())
    out["acvpu"] = None
    out["spo2_scale2"] = None
    out["gcs_total"] = None  # PhysioNet 2019 charts no GCS
    out["quarantine_json"] = None  # no source quarantined in the seeded history
    out["event_time"] = _dt(out.event_ms).to_numpy()
    for p in [*params, "on_supplemental_o2", "acvpu", "spo2_scale2", "gcs_total"]:
        out[p + "_measured_time"] = out.event_time.where(out[p].notna())
    out["source_topic"] = topics.VITALS_OBSERVATION.name
    out["source_partition"] = 0
    out["source_offset"] = np.arange(len(out))
    return out


def _hit(
    rule: str, version: str, sev: str, r: Any, first_id: str, first_ms: int, score: str
) -> lifecycle.Hit:
    value = int(getattr(r, score))
    evidence = {score: {"value": value, "measured_time": lifecycle.iso_ms(int(r.event_ms))}}
    return lifecycle.Hit(
        rule,
        version,
        sev,
        r.patient_token,
        r.facility_id,
        r.unit_id,
        int(r.event_ms),
        first_ms,
        first_id,
        r.record_id,
        score,
        value,
        json.dumps(evidence),
    )


def alert_events(scr: pd.DataFrame, discharges: dict[str, list[int]], end_ms: int) -> pd.DataFrame:
    """Two screening rules' hits (jobs/screening/rules.py) through the alert lifecycle."""
    out: list[dict[str, Any]] = []
    # Patients in order of their first reading, each one's readings in time order (as
    # groupby(sort=False) gives them), walked in one pass: itertuples per group is slow.
    ordered = scr.sort_values("event_ms")
    rank = {tok: i for i, tok in enumerate(pd.unique(ordered.patient_token))}
    by_patient = np.argsort(ordered.patient_token.map(rank).to_numpy(), kind="stable")
    rows: Any = ordered.iloc[by_patient].itertuples(index=False)
    for tok, readings in itertools.groupby(rows, key=lambda r: r.patient_token):
        hits: list[tuple[int, lifecycle.Hit | None]]
        hits = [(t, None) for t in discharges.get(str(tok), [])]
        prev: Any = None
        for r in readings:
            # RCP 2017 chart 2: NEWS2 ≥ 5 urgent, ≥ 7 emergency; two readings within 3 h.
            sustained = prev is not None and prev.news2_score >= 5 and r.news2_score >= 5
            if sustained and r.event_ms - prev.event_ms <= 3 * HOUR_MS:
                sev = "high" if max(prev.news2_score, r.news2_score) >= 7 else "medium"
                first = (prev.record_id, int(prev.event_ms))
                h = _hit(
                    NEWS2_SUSTAINED.rule_id, NEWS2_SUSTAINED.version, sev, r, *first, "news2_score"
                )
                hits.append((int(r.event_ms), h))
            # qSOFA ≥ 2 (Seymour 2016) with lactate > 2 mmol/L (Singer 2016).
            if r.qsofa_score >= 2 and r.lactate_mmol_l > 2.0:
                rule = QSOFA_LACTATE
                h = _hit(
                    rule.rule_id,
                    rule.version,
                    "high",
                    r,
                    r.record_id,
                    int(r.event_ms),
                    "qsofa_score",
                )
                hits.append((int(r.event_ms), h))
            prev = r
        pa = lifecycle.PatientAlerts()
        for t, hit in sorted(hits, key=lambda e: lifecycle.order_key(*e)):
            out += pa.advance(t)
            out += pa.apply(t, hit)
        out += pa.advance(end_ms)
    ev = pd.DataFrame(out)
    ev["opened_time"] = _dt(ev.pop("opened_time_ms")).to_numpy()
    ev["event_time"] = _dt(ev.pop("event_time_ms")).to_numpy()
    kept: pd.DataFrame = ev[ev.event_time < _dt(pd.Series([end_ms]))[0]]
    return kept


# Simulated response delays after a raise: (probability, median minutes, lognormal sigma).
RESPONSES = {
    "acknowledge": (0.94, 6.0, 0.9),
    "lactate_measured": (0.85, 40.0, 0.7),
    "blood_culture_drawn": (0.8, 50.0, 0.7),
    "antibiotic_given": (0.75, 85.0, 0.6),
    "fluid_bolus_started": (0.55, 60.0, 0.7),
}
BUNDLE_RULES = ("qsofa_lactate",)


def responses(alerts: pd.DataFrame, seed: int, end_ms: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 3)
    raised = alerts[alerts.action == "raise"]
    rows = []
    alerts_raised: Any = raised.itertuples(index=False)
    for a in alerts_raised:
        t0 = int(pd.Timestamp(a.event_time).value // 1_000_000)
        bundle = a.rule_id in BUNDLE_RULES or a.severity == "high"
        for action, (p, median, sigma) in RESPONSES.items():
            if (action != "acknowledge" and not bundle) or rng.random() > p:
                continue
            t = t0 + int(rng.lognormal(math.log(median), sigma) * MINUTE_MS)
            if t >= end_ms:
                continue
            role = (
                "physician"
                if action == "antibiotic_given"
                else str(rng.choice(["nurse", "charge_nurse"]))
            )
            rows.append(
                (
                    _md5(a.alert_id, action),
                    a.alert_id,
                    action,
                    role,
                    a.patient_token,
                    a.facility_id,
                    a.unit_id,
                    t,
                    "paging" if action == "acknowledge" else "ehr",
                )
            )
    cols = topics.ALERT_RESPONSE.schema.field_names
    df = pd.DataFrame(rows, columns=cols)
    df["event_time"] = _dt(df.event_time).to_numpy()
    return df


def scores(scr: pd.DataFrame, seed: int, start_ms: int, end_ms: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 4)
    n = len(scr)
    base = -4.6 + 0.42 * scr.news2_score + 0.45 * scr.qsofa_score + 0.3 * scr.sofa_partial_score
    late = (scr.event_ms.to_numpy() - start_ms) / (end_ms - start_ms) > 2 / 3
    missing = (
        scr[
            [
                "heart_rate_bpm",
                "resp_rate_per_min",
                "spo2_pct",
                "temp_c",
                "sbp_mmhg",
                "lactate_mmol_l",
                "wbc_10e9_l",
                "creatinine_mg_dl",
            ]
        ]
        .isna()
        .sum(axis=1)
    )
    parts = []
    for version, role, threshold, noise, shift in (
        (CHAMPION, "champion", 0.30, 0.7, 0.0),
        (CHALLENGER, "challenger", 0.28, 0.6, 0.35),
    ):
        logit = base.to_numpy() + rng.normal(0, noise, n) + shift * late
        risk = 1 / (1 + np.exp(-logit))
        parts.append(
            pd.DataFrame(
                {
                    "score_id": [_md5(r, MODEL, version) for r in scr.record_id],
                    "record_id": scr.record_id.to_numpy(),
                    "patient_token": scr.patient_token.to_numpy(),
                    "facility_id": scr.facility_id.to_numpy(),
                    "unit_id": scr.unit_id.to_numpy(),
                    "event_time": scr.event_time.to_numpy(),
                    "model_name": MODEL,
                    "model_version": version,
                    "role": role,
                    "risk": risk,
                    "threshold": threshold,
                    "above_threshold": risk >= threshold,
                    "features_missing": missing.to_numpy().astype("int32"),
                    "scoring_latency_ms": rng.lognormal(math.log(2.5), 0.5, n),
                }
            )
        )
    return pd.concat(parts, ignore_index=True)


def catalog_scores(scr: pd.DataFrame, adt: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The catalog's scores (model.score.v1) over the seeded traffic: mortality and remaining
    length of stay at a sixth of the vitals states (mortality with a shadow), readmission at
    each discharge with an encounter. Shaped like the stream's, not from the models."""
    rng = np.random.default_rng(seed + 6)
    st = scr[scr.record_kind == "vitals"].iloc[::6]
    n = len(st)
    base = -3.2 + 0.3 * st.news2_score.to_numpy() + 0.4 * st.qsofa_score.to_numpy()
    common = {
        "record_id": st.record_id.to_numpy(),
        "entity": "stay",
        "entity_token": st.patient_token.to_numpy(),
        "patient_token": st.patient_token.to_numpy(),
        "facility_id": st.facility_id.to_numpy(),
        "unit_id": st.unit_id.to_numpy(),
        "event_time": st.event_time.to_numpy(),
        "hours_since_admission": rng.uniform(0, 96, n),
        "features_missing": rng.integers(20, 120, n).astype("int32"),
        "scoring_latency_ms": rng.lognormal(math.log(4.0), 0.5, n),
        "trigger": "state",
    }
    parts = []
    for model, version, role, output, unit, threshold, score in (
        ("icu-mortality", "1", "champion", "death_risk", None, 0.28, base),
        ("icu-mortality", "2", "challenger", "death_risk", None, 0.27, base + 0.2),
        ("length-of-stay", "1", "champion", "remaining_los_days", "d", None, None),
    ):
        if score is None:
            value = rng.gamma(2.0, 2.5, n)
        else:
            value = 1 / (1 + np.exp(-(score + rng.normal(0, 0.6, n))))
        parts.append(
            pd.DataFrame(
                {
                    **common,
                    "score_id": [_md5(r, model, version) for r in st.record_id],
                    "model_name": model,
                    "model_version": version,
                    "role": role,
                    "output_name": output,
                    "score": value,
                    "output_unit": unit,
                    "threshold": threshold,
                    "above_threshold": None if threshold is None else value >= threshold,
                }
            )
        )
    parts.extend(_stay_hour_scores(scr, rng))
    dis = adt[(adt.event_type == "discharge") & adt.encounter_token.notna()]
    m = len(dis)
    risk = 1 / (1 + np.exp(-rng.normal(-2.1, 0.7, m)))
    parts.append(
        pd.DataFrame(
            {
                "score_id": [_md5(e, "readmission-30d", "1") for e in dis.event_id],
                "record_id": dis.event_id.to_numpy(),
                "entity": "encounter",
                "entity_token": dis.encounter_token.to_numpy(),
                "patient_token": dis.patient_token.to_numpy(),
                "facility_id": dis.facility_id.to_numpy(),
                "unit_id": dis.unit_id.fillna(dis.prior_unit_id).fillna("unknown").to_numpy(),
                "event_time": dis.event_time.to_numpy(),
                "hours_since_admission": np.nan,
                "model_name": "readmission-30d",
                "model_version": "1",
                "role": "champion",
                "output_name": "readmission_risk",
                "score": risk,
                "output_unit": None,
                "threshold": 0.163,
                "above_threshold": risk >= 0.163,
                "features_missing": np.zeros(m, dtype="int32"),
                "scoring_latency_ms": rng.lognormal(math.log(3.0), 0.5, m),
                "trigger": "discharge",
            }
        )
    )
    return pd.concat(parts, ignore_index=True)


def _stay_hour_scores(scr: pd.DataFrame, rng: np.random.Generator) -> list[pd.DataFrame]:
    """The stay models' champions at hours 24 and 48 of each seeded stay that lasts that long
    (their `report_at_hours`), on the unit where the stay was then."""
    st = scr[scr.record_kind == "vitals"].sort_values("event_time")
    span = st.groupby("patient_token").event_time.agg(["min", "max"])
    due = pd.concat(
        [span.assign(hours=h, due=span["min"] + pd.Timedelta(hours=h)) for h in (24.0, 48.0)]
    )
    due = due[due["due"] <= due["max"]].rename_axis("patient_token").reset_index()
    # the unit where the stay was then: its latest state at or before the hour
    frame = pd.merge_asof(
        due.sort_values("due"),
        st[["patient_token", "event_time", "facility_id", "unit_id"]],
        left_on="due",
        right_on="event_time",
        by="patient_token",
    ).rename(columns={"patient_token": "token"})
    n = len(frame)
    first_ms = (frame["min"] - pd.Timestamp(0, tz="UTC")) // pd.Timedelta(milliseconds=1)
    record_id = [  # as the stream names an hour of a stay (jobs/model_scoring.hour_label)
        f"{t}@{ms}+{h:g}h" for t, ms, h in zip(frame.token, first_ms, frame.hours, strict=True)
    ]
    risk = 1 / (1 + np.exp(-rng.normal(-2.0, 1.0, n)))
    parts = []
    for model, output, unit, threshold, value in (
        ("icu-mortality", "death_risk", None, 0.28, risk),
        ("length-of-stay", "remaining_los_days", "d", None, rng.gamma(2.0, 2.5, n)),
    ):
        parts.append(
            pd.DataFrame(
                {
                    "score_id": [_md5(r, model, "1") for r in record_id],
                    "record_id": record_id,
                    "entity": "stay",
                    "entity_token": frame.token.to_numpy(),
                    "patient_token": frame.token.to_numpy(),
                    "facility_id": frame.facility_id.to_numpy(),
                    "unit_id": frame.unit_id.to_numpy(),
                    "event_time": frame.due.to_numpy(),
                    "hours_since_admission": frame.hours.to_numpy(),
                    "model_name": model,
                    "model_version": "1",
                    "role": "champion",
                    "output_name": output,
                    "score": value,
                    "output_unit": unit,
                    "threshold": threshold,
                    "above_threshold": None if threshold is None else value >= threshold,
                    "features_missing": rng.integers(20, 120, n).astype("int32"),
                    "scoring_latency_ms": rng.lognormal(math.log(4.0), 0.5, n),
                    "trigger": "stay_hours",
                }
            )
        )
    return parts


def dead_letters(scr: pd.DataFrame, census: Census, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed + 5)
    bad = scr.sample(frac=0.002, random_state=seed)
    codes = rng.choice(["out_of_range", "missing_field", "not_a_number", "undecodable"], len(bad))
    rows = [
        (
            topics.VITALS_OBSERVATION.name,
            0,
            int(o),
            t,
            "sepsis_screen",
            c,
            f"simulated {c}",
            b"",
            None,
        )
        for o, t, c in zip(bad.source_offset, bad.event_time, codes, strict=True)
    ]
    rows += [
        (
            topics.ADT_EVENT.name,
            0,
            i,
            e["event_time"],
            "bed_census",
            e["reason_code"],
            e["reason"],
            b"",
            None,
        )
        for i, e in enumerate(census.refused)
    ]
    return pd.DataFrame(rows, columns=topics.DEAD_LETTER.schema.field_names)


def quality_events(stays: pd.DataFrame, end_ms: int) -> pd.DataFrame:
    """Simulated data-quality faults run through the real monitors (udfs.quality), per
    facility: a °F firmware fault on the first unit's vitals (quarantined, still open), a lab
    feed of the second unit silent for six hours and back, and silent now, a burst of refused
    vitals on the third unit, a drop of the facility's lab volume, and a monitor of the first
    unit frozen for three hours then moving again, and another frozen since five hours ago."""
    from udfs import quality

    ref, t = quality.load_reference(), quality.Thresholds()
    vitals, labs = topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name
    temp = ref.topic(vitals).parameters["temp_c"]
    last = end_ms // HOUR_MS * HOUR_MS
    events: list[dict[str, Any]] = []

    def see(m: quality.SourceMonitor, h: int, n: int = 60, **kw: Any) -> list[dict[str, Any]]:
        """Source `m`'s window ending `h` hours before the last whole hour."""
        start = last - h * HOUR_MS
        w = quality.Window(
            m.source_topic, m.facility_id, m.unit_id, start, start + HOUR_MS, n, n,
            kw.get("refused", {}), kw.get("params", {}), f"seed:{m.unit_id}:{h}",
        )  # fmt: skip
        return m.observe(w, ref.topic(m.source_topic), t)

    top = len(temp.edges)
    fahrenheit = quality.ParameterWindow(
        20, 98.6, 98.4, tuple(20 * (i == top) for i in range(top + 1))
    )
    for fac, units in stays.groupby("facility_id")["unit_id"].unique().items():
        u = [str(x) for x in sorted(units)][:3]
        f = str(fac)
        events += see(quality.SourceMonitor(vitals, f, u[0]), 30, params={"temp_c": fahrenheit})
        lab = quality.SourceMonitor(labs, f, u[1 % len(u)])
        for h in (60, 59, 58):
            see(lab, h, 8)
        events += lab.check_silence(last - 52 * HOUR_MS, 180.0, t)
        events += see(lab, 51, 8)
        for h in (7, 6, 5):
            see(lab, h, 8)
        events += lab.check_silence(last, 180.0, t)
        dl = quality.SourceMonitor(vitals, f, u[2 % len(u)])
        events += see(dl, 20, refused={"out_of_range": 9}) + see(
            dl, 19, refused={"out_of_range": 1}
        )
        whole = quality.SourceMonitor(labs, f, quality.WHOLE_FACILITY)
        for h in range(40, 32, -1):
            see(whole, h, 30)
        events += see(whole, 32, 3) + see(whole, 31, 28)
        events += _frozen_device(f, u[0], "mon-0007", last - 40 * HOUR_MS, 3, moves=True)
        events += _frozen_device(f, u[0], "mon-0008", last - 5 * HOUR_MS, 5, moves=False)
    df = pd.DataFrame(events)
    for c in ("event_time", "window_start", "window_end"):
        df[c] = _dt(df.pop(c + "_ms"))
    return df[topics.QUALITY_EVENT.schema.field_names]


def _frozen_device(
    facility: str, unit: str, device: str, start_ms: int, hours: int, *, moves: bool
) -> list[dict[str, Any]]:
    """A monitor whose gateway forwards a reading a minute, frozen from `start_ms` for `hours`
    (then moving again where `moves`), through the real frozen-device monitor (udfs.quality:
    the job's SQL's reference, then the state machine)."""
    from udfs import quality

    t = quality.Thresholds()
    vitals = {"heart_rate_bpm": 88.0, "spo2_pct": 95.0, "resp_rate_per_min": 18.0}
    readings: list[quality.Reading] = [
        (start_ms + m * 60_000, f"{device}@{m}", vitals) for m in range(hours * 60)
    ]
    if moves:
        end = start_ms + hours * HOUR_MS
        readings += [
            (end + m * 60_000, f"{device}@{hours * 60 + m}", {**vitals, "heart_rate_bpm": 90.0 + m})
            for m in range(3)
        ]
    topic = topics.VITALS_DEVICE.name
    feed = quality.FrozenFeed(topic, device)
    silence = quality.SILENCE_MIN[topic]
    return [
        e
        for w in quality.device_windows(topic, device, facility, unit, readings, t)
        for e in feed.observe(w, t, silence)
    ]


# The sepsis model's bundled versions: their specs and training references (reference.json)
# stand for the seed's champion and challenger in the model monitor's seeded judgements.
BUNDLED_SEPSIS = Path(__file__).resolve().parents[1] / "training" / "bundled" / MODEL
DAY_MS = 86_400_000


def _cells(grid: Any, values: np.ndarray[Any, Any]) -> list[tuple[int, int]]:
    cells, counts = np.unique(grid.cells_of(values), return_counts=True)
    return [(int(c), int(n)) for c, n in zip(cells, counts, strict=True)]


def model_monitor(scr: pd.DataFrame, sc: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The model monitor's judgements (udfs.model_monitor, as jobs/model_monitor.py makes them)
    of the seeded screens and scores in daily windows per facility, against the bundled sepsis
    versions' references; delayed performance with outcomes drawn from the champion's risk."""
    from schemas.model_spec import ModelSpec
    from udfs import model_monitor as mm
    from udfs import monitor

    served = {}
    for (version, role), folder in zip(
        ((CHAMPION, "champion"), (CHALLENGER, "challenger")),
        sorted(BUNDLED_SEPSIS.iterdir()),
        strict=True,
    ):
        spec = json.loads((folder / "spec.json").read_text())
        ref = json.loads((folder / "reference.json").read_text())
        served[role] = mm.Served(MODEL, version, role, ModelSpec.parse(spec), spec, ref)
    rows: list[dict[str, Any]] = []

    def add(events: list[dict[str, Any]], facility: str, day: int) -> None:
        for e in events:
            rows.append(
                {
                    **e,
                    "facility_id": facility,
                    "window_start": day * DAY_MS,
                    "window_end": (day + 1) * DAY_MS,
                }
            )

    days = scr.event_ms.to_numpy() // DAY_MS
    for (fac, day), w in scr.groupby([scr.facility_id.to_numpy(), days]):
        items = [f"*|-2|{w.patient_token.nunique()}"]
        for f, g in monitor.FEATURE_GRIDS.items():
            v = w[f].to_numpy(dtype="float64")
            items += [f"{f}|{c}|{n}" for c, n in _cells(g, v)]
            items.append(f"{f}|-2|{w.patient_token[~np.isnan(v)].nunique()}")
        add(mm.input_drift(served.values(), ";".join(items)), str(fac), int(day))
    rng = np.random.default_rng(seed + 9)
    champion = sc[sc.role == "champion"].risk.to_numpy()
    outcome = rng.random(len(champion)) < champion  # outcomes as the champion predicts them
    grid = monitor.PROBABILITY_GRID
    for role, s in served.items():
        part = sc[sc.role == role]
        risk, cell = part.risk.to_numpy(), grid.cells_of(part.risk.to_numpy())
        frame = pd.DataFrame(
            {
                "f": part.facility_id.to_numpy(),
                "d": days,
                "c": cell,
                "a": part.above_threshold.to_numpy(),
                "y": outcome,
                "r": risk,
                "p": part.patient_token.to_numpy(),
            }
        )
        for (fac, day), w in frame.groupby(["f", "d"]):
            per = w.groupby("c").agg(
                n=("r", "size"), a=("a", "sum"), y=("y", "sum"), r=("r", "sum")
            )
            scored = [f"{c}|{r.n}|{r.a}|{r.n}" for c, r in per.iterrows()]
            scored.append(f"-2|{w.p.nunique()}|0|0")
            add(mm.score_drift(s, ";".join(scored)), str(fac), int(day))
            labelled = ";".join(f"{c}|{r.n}|{r.y}|{r.r}" for c, r in per.iterrows())
            add(mm.performance(s, labelled), str(fac), int(day))
    df = pd.DataFrame(rows)
    df["event_id"] = [
        _md5(r.model_version, r.role, r.facility_id, r.metric, r.feature, r.window_end)
        for r in df.itertuples()
    ]
    for c in ("window_start", "window_end"):
        df[c] = _dt(df[c])
    df["event_time"] = df["window_end"]
    return df[topics.MODEL_MONITOR.schema.field_names]


def _version(
    version: str, role: str, *, registered_days: int, role_days: int, auroc: float
) -> dims.ModelVersionRow:
    t0 = adt_generator.START
    return dims.ModelVersionRow(
        MODEL, version, role, t0 - timedelta(days=registered_days),
        t0 - timedelta(days=role_days), 0.3, auroc, 0.11, 0.38,
        _md5("train", version), _md5("onnx", version),
    )  # fmt: skip


@dataclass
class Warehouse:
    tables: dict[str, pd.DataFrame]
    capacity: Capacity
    model_versions: list[dims.ModelVersionRow]
    end_ms: int
    forecasts: pd.DataFrame | None = None  # capacity_forecast rows (not a topic's table)


def build(plan: SeedPlan, physionet: pd.DataFrame) -> Warehouse:
    capacity = adt_generator.capacity(plan.facilities)
    adt = adt_events(plan)
    census = place(adt, plan.end_ms)
    unit, flow = census_rows(census.deltas, capacity)
    scr = screens(observations(census.stays, Physiology(physionet), plan.seed))
    alerts = alert_events(scr, census.discharges, plan.end_ms)
    start_ms = _ms(adt_generator.START)
    versions = [
        _version(CHAMPION, "champion", registered_days=60, role_days=30, auroc=0.81),
        _version(CHALLENGER, "challenger", registered_days=5, role_days=5, auroc=0.83),
    ]
    tables = {
        "adt_events": pd.DataFrame(adt),
        "census_events": pd.DataFrame(census.events),
        "census_unit": unit,
        "census_flow": flow,
        "sepsis_screen": scr,
        "alert_events": alerts,
        "alert_responses": responses(alerts, plan.seed, plan.end_ms),
        "model_scores": scores(scr, plan.seed, start_ms, plan.end_ms),
        "catalog_scores": catalog_scores(scr, pd.DataFrame(adt), plan.seed),
        "dead_letters": dead_letters(scr, census, plan.seed),
        "quality_events": quality_events(census.stays, plan.end_ms),
    }
    tables["model_monitor"] = model_monitor(scr, tables["model_scores"], plan.seed)
    return Warehouse(tables, capacity, versions, plan.end_ms, forecasts(census, capacity, plan))


def forecasts(census: Census, capacity: Capacity, plan: SeedPlan) -> pd.DataFrame:
    """The capacity forecast from each of the last `forecast_hours` whole hours of the census."""
    stays, start_h = census_stays.stays_from_census(pd.DataFrame(census.events))
    last = plan.end_ms // HOUR_MS
    origins = range(last - plan.forecast_hours + 1, last + 1)
    return pd.concat(
        [capacity_forecast.forecast_rows(stays, start_h, capacity, float(h)) for h in origins],
        ignore_index=True,
    )


def _chunks(df: pd.DataFrame, n: int) -> Iterator[pd.DataFrame]:
    for i in range(0, len(df), n):
        yield df.iloc[i : i + n]


def load(client: Any, db: str, wh: Warehouse, *, chunk: int = 200_000) -> dict[str, int]:
    """Insert every table the way the loader does (schema columns + kafka_*), in chunks."""
    clickhouse.migrate(client, db)
    dims.load_capacity(client, db, wh.capacity)
    dims.upsert_model_versions(client, db, wh.model_versions)
    topic_of = {
        "alert_responses": topics.ALERT_RESPONSE.name,
        "model_scores": topics.SEPSIS_SCORE.name,
        "catalog_scores": topics.MODEL_SCORE.name,
        "adt_events": topics.ADT_EVENT.name,
        "census_events": topics.CENSUS_EVENT.name,
        "census_unit": topics.CENSUS_UNIT.name,
        "census_flow": topics.CENSUS_FLOW.name,
        "sepsis_screen": topics.SEPSIS_SCREEN.name,
        "alert_events": topics.ALERT_V2.name,
        "dead_letters": topics.DEAD_LETTER.name,
        "quality_events": topics.QUALITY_EVENT.name,
        "model_monitor": topics.MODEL_MONITOR.name,
    }
    counts = {}
    for table, df in wh.tables.items():
        fields = load_schema(topic_of[table]).field_names
        out = df.reindex(columns=fields)  # a field the seed does not set (age_years): null
        out["kafka_partition"] = 0
        out["kafka_offset"] = np.arange(len(out), dtype="int64")
        out["kafka_topic"] = f"seed:{table}"
        for part in _chunks(out, chunk):
            rows = part.astype(object).where(part.notna(), None).to_numpy().tolist()
            client.insert(f"{db}.{table}", rows, column_names=list(out.columns))
        counts[table] = len(out)
    if wh.forecasts is not None:
        counts[capacity_forecast.TABLE] = capacity_forecast.write(client, db, wh.forecasts)
    return counts


def physionet(settings: Settings) -> pd.DataFrame:
    p = settings.physionet_setA
    return pd.read_parquet(p if p.exists() else SAMPLE)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--facilities", type=int, default=12)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--database", default=None, help="default: settings.clickhouse_database")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    db = a.database or settings.clickhouse_database
    t0 = time.monotonic()
    wh = build(SeedPlan(a.facilities, a.days, a.seed), physionet(settings))
    client = clickhouse.connect(settings.clickhouse_url)
    client.command(f"DROP DATABASE IF EXISTS {db}")
    counts = load(client, db, wh)
    print(f"seeded {db} in {time.monotonic() - t0:.0f} s: {counts}")


if __name__ == "__main__":
    main()
