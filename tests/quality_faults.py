"""Real ICU records with real-world feed faults injected, for the data-quality tests: set A
patients by unit, replayed as vitals, labs and ADT, with a monitor firmware update that sends one
unit's temperatures in °F and one unit's lab feed silent for some hours."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from jobs.feeds import replay
from schemas import topics

VITALS, LABS = topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name
PLAN = replay.ReplayPlan(patients=10**6, admission_spread_h=1.0)


def patients_by_unit(
    df: pd.DataFrame, per_unit: int, hours: int, units: tuple[str, ...] = ("MICU", "SICU", "ICU")
) -> pd.DataFrame:
    """The first `per_unit` patients (by id) of each unit with more than `hours` in the ICU,
    `hours` of their rows from their second ICU hour: the replay starts with the units occupied
    (set A's first row of a stay carries no vitals: a whole unit admitted in the same hour is no
    hospital's day)."""
    long = df.groupby("patient_id")["ICULOS"].max()
    within = df["ICULOS"].between(2, hours + 1)
    df = df[df["patient_id"].isin(long[long >= hours + 2].index) & within]
    first = df.groupby("patient_id")[["Unit1", "Unit2"]].first()
    unit = pd.Series([replay.unit_of(a, b) for a, b in first.to_numpy()], index=first.index)
    chosen = np.concatenate([np.sort(unit[unit == u].index)[:per_unit] for u in units])
    return df[df["patient_id"].isin(chosen)]


@dataclass
class Faulted:
    """The replay's records per source topic, as sent (faults included), and what was done."""

    start: datetime
    records: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    fahrenheit: int = 0  # temperatures sent in °F
    silenced: int = 0  # lab results never sent


def replay_with_faults(
    df: pd.DataFrame,
    key: bytes,
    *,
    fahrenheit: tuple[str, tuple[float, float]] | None = None,
    silent_labs: tuple[str, tuple[float, float]] | None = None,
) -> Faulted:
    """`df` replayed (replay.clinical_stream); `fahrenheit` = (unit, (from_h, to_h)) sends that
    unit's charted temperatures in °F, `silent_labs` = (unit, (from_h, to_h)) drops its lab
    results, hours after the replay's start."""
    out = Faulted(PLAN.base_time)
    for topic, rec in replay.clinical_stream(df, PLAN, key, "physionet2019:setA"):
        h = (rec["event_time"] - out.start) / timedelta(hours=1)
        unit = rec.get("unit_id")
        if topic == LABS and _hit(silent_labs, unit, h):
            out.silenced += 1
            continue
        if topic == VITALS and _hit(fahrenheit, unit, h) and rec["temp_c"] is not None:
            rec = {**rec, "temp_c": rec["temp_c"] * 9 / 5 + 32}
            out.fahrenheit += 1
        out.records.setdefault(topic, []).append(rec)
    return out


def _hit(fault: tuple[str, tuple[float, float]] | None, unit: str | None, h: float) -> bool:
    return fault is not None and unit == fault[0] and fault[1][0] <= h < fault[1][1]


def freeze_device(
    records: list[dict[str, Any]], device_id: str, start: datetime, end: datetime | None = None
) -> int:
    """A monitor, or its gateway, that lost the patient or whose driver hung from `start` (until
    `end`): each of its records in between re-sends the content of its last record before
    `start` (every value, flag and quality index), only the event time moving on. In place;
    returns how many records were frozen."""
    last: dict[str, Any] | None = None
    frozen = 0
    for i, r in enumerate(records):
        if r["device_id"] != device_id:
            continue
        if r["event_time"] < start:
            last = r
        elif (end is None or r["event_time"] < end) and last is not None:
            records[i] = {**last, "event_time": r["event_time"]}
            frozen += 1
    return frozen


def silence_device(records: list[dict[str, Any]], device_id: str, start: datetime) -> int:
    """The device sends nothing from `start` (unplugged). In place; returns the records
    dropped."""
    kept = [r for r in records if r["device_id"] != device_id or r["event_time"] < start]
    dropped = len(records) - len(kept)
    records[:] = kept
    return dropped
