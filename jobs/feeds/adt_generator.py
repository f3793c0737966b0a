"""Synthetic multi-site ADT traffic: N facilities × 500 beds, for benchmarks and the demo.

Each facility has an emergency department and eleven inpatient units (500 beds in all). Patients
arrive at the ED as a Poisson process with a diurnal profile (peak late morning, trough at
night); after an ED stay (lognormal, median 4 h) 80 % are admitted to a unit, the rest go
home. Inpatient stays are lognormal (median 3.5 days, about 5.4 days mean: the English NHS
general and acute mean is 4.5-5.5 days); ICU stays are shorter (median 2 days) and step down to a
ward; 8 % of admissions go to the ICU and 3 % of ward patients deteriorate into it. Wards are
chosen in proportion to their beds. Arrival rates are set for about 88 %
occupancy, and one facility has a surge (arrivals × 1.35 for a week). Real feeds' noise is in
it too: A08 bed changes, cancelled admissions (A11, 1 %), cancelled discharges (A13, 1 %).
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from jobs.feeds.replay import produce_stream
from jobs.runtime import kafka_io
from schemas import topics
from schemas.capacity import Capacity
from schemas.settings import Settings

UNITS = {  # staffed beds per unit: 500 per facility
    "ED": 40,
    "ICU": 24,
    "HDU": 16,
    "MED-A": 60,
    "MED-B": 60,
    "MED-C": 60,
    "SURG-A": 50,
    "SURG-B": 50,
    "CARD": 40,
    "ONC": 30,
    "ORTH": 40,
    "PAED": 30,
}
WARDS = [u for u in UNITS if u not in ("ED", "ICU")]
WARD_SHARE = [UNITS[u] / sum(UNITS[w] for w in WARDS) for u in WARDS]  # admissions by beds
START = datetime(2026, 1, 5, tzinfo=UTC)
SOURCE = "wardflow-adt-generator"


@dataclass(frozen=True)
class Plan:
    facilities: int = 12
    days: float = 30.0
    occupancy: float = 0.88
    seed: int = 7
    start: datetime = START
    surge_facility: int = 2  # index; arrivals × surge_factor on days 10-17
    surge_factor: float = 1.35


def facility_ids(n: int) -> list[str]:
    return [f"F{i + 1:02d}" for i in range(n)]


def capacity(n: int) -> Capacity:
    return Capacity({(f, u): beds for f in facility_ids(n) for u, beds in UNITS.items()})


def _diurnal(hour: float) -> float:
    """Relative ED arrival rate by hour of day (mean 1): peak ~11:00, trough ~04:00."""
    return 1.0 + 0.45 * math.sin((hour - 5.0) / 24.0 * 2 * math.pi)


def _hours(rng: np.random.Generator, median_h: float, sigma: float) -> float:
    return float(rng.lognormal(math.log(median_h), sigma))


def events(plan: Plan) -> list[dict[str, Any]]:
    """Canonical adt.event.v1 records of every facility, in event-time order."""
    rng = np.random.default_rng(plan.seed)
    inpatient_beds = sum(b for u, b in UNITS.items() if u != "ED")
    mean_inpatient_days = 3.5 * math.exp(0.8**2 / 2) * 1.05
    admissions_per_day = plan.occupancy * inpatient_beds / mean_inpatient_days
    base_rate_h = admissions_per_day / 0.8 / 24  # ED arrivals per hour
    out: list[dict[str, Any]] = []
    for fi, fac in enumerate(facility_ids(plan.facilities)):
        # Start from a hospital already full: the first two weeks' arrivals are not emitted.
        warm = 14.0
        t = -warm * 24.0
        n = 0
        while t < plan.days * 24:
            rate = base_rate_h * _diurnal(t % 24)
            if fi == plan.surge_facility and 10 * 24 <= t < 17 * 24:
                rate *= plan.surge_factor
            t += float(rng.exponential(1 / (base_rate_h * 1.45)))
            if rng.random() > rate / (base_rate_h * 1.45):  # thinning: inhomogeneous Poisson
                continue
            n += 1
            out += _from_start(_visit(rng, plan, fac, f"{fac}-{plan.seed}-{n}", t), plan.start)
    horizon = plan.start + timedelta(days=plan.days)
    kept = [e for e in out if e["event_time"] < horizon]
    kept.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return kept


def _visit(
    rng: np.random.Generator, plan: Plan, fac: str, visit: str, t_h: float
) -> list[dict[str, Any]]:
    """The ADT events of one visit: (kind, unit, hours from plan.start)."""
    steps: list[tuple[str, str | None, float]] = [("admit", "ED", t_h)]
    t = t_h + _hours(rng, 4.0, 0.5)
    if rng.random() < 0.2:
        steps.append(("discharge", None, t))
    else:
        icu = rng.random() < 0.08
        unit: str = "ICU" if icu else str(rng.choice(WARDS, p=WARD_SHARE))
        steps.append(("transfer", unit, t))
        if icu:
            t += _hours(rng, 48.0, 0.7)
            unit = str(rng.choice(WARDS, p=WARD_SHARE))
            steps.append(("transfer", unit, t))
        elif rng.random() < 0.03:
            t += _hours(rng, 30.0, 0.8)
            steps.append(("transfer", "ICU", t))
            t += _hours(rng, 48.0, 0.7)
            unit = str(rng.choice(WARDS, p=WARD_SHARE))
            steps.append(("transfer", unit, t))
        if rng.random() < 0.1:
            steps.append(("update", unit, t + _hours(rng, 12.0, 0.8)))
        t += _hours(rng, 84.0, 0.8)
        steps.append(("discharge", None, t))
    if rng.random() < 0.01:  # registered in error: the admission is cancelled, nothing follows
        steps = [steps[0], ("cancel_admit", None, t_h + rng.uniform(0.05, 0.5))]
    elif rng.random() < 0.01 and steps[-1][0] == "discharge":
        end = steps[-1][2]
        steps += [("cancel_discharge", None, end + 0.5), ("discharge", None, end + 2.0)]
    patient = f"{visit}-p"
    records = []
    prior: str | None = None
    for i, (kind, where, hours) in enumerate(sorted(steps, key=lambda s: s[2])):
        records.append(
            {
                "event_id": f"{visit}:{i}:{kind}",
                "event_type": kind,
                "source_message_type": "generator",
                "patient_token": patient,
                "encounter_token": visit,
                "facility_id": fac,
                "unit_id": where,
                "bed_id": None if where is None else f"{where}-{int(rng.integers(1, 99)):02d}",
                "prior_unit_id": prior,
                "prior_bed_id": None,
                "event_time": plan.start + timedelta(seconds=round(hours * 3600)),
                "recorded_time": None,
                "source": SOURCE,
            }
        )
        prior = where or prior
    return records


def _from_start(visit: list[dict[str, Any]], start: datetime) -> list[dict[str, Any]]:
    """A visit as seen by a feed that starts at `start`: a patient already in a bed then gets an
    admission at `start` into that unit (the initial census load), earlier events are dropped."""
    before = [e for e in visit if e["event_time"] < start]
    after = [e for e in visit if e["event_time"] >= start]
    if not before or not after:
        return after
    if any(e["event_type"].startswith("cancel_") for e in visit):
        return []
    unit = next(e["unit_id"] for e in reversed(before) if e["unit_id"] is not None)
    snapshot = {
        **before[-1],
        "event_id": before[-1]["event_id"] + ":census-load",
        "event_type": "admit",
        "unit_id": unit,
        "prior_unit_id": None,
        "event_time": start,
    }
    return [snapshot, *after]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--facilities", type=int, default=12)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument("--capacity-out", type=Path, default=None)
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    plan = Plan(facilities=a.facilities, days=a.days, seed=a.seed)
    if a.capacity_out:
        a.capacity_out.write_text(json.dumps(capacity(a.facilities).to_dict(), indent=1) + "\n")
    settings = Settings.resolve(a)
    kafka_io.wait_for_broker(settings)
    kafka_io.ensure_topics(settings, [topics.ADT_EVENT.name], prefix=a.topic_prefix)
    evs = events(plan)
    n = produce_stream(settings, ((topics.ADT_EVENT.name, e) for e in evs), prefix=a.topic_prefix)
    print(f"{n} ADT events, {a.facilities} facilities, {a.days:g} days")


if __name__ == "__main__":
    main()
