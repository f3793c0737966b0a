"""Stays from the census: each patient's time in each unit as the census placed it, the history
the capacity forecast (udfs/capacity_forecast.py) learns from.

Two sources, one path. The hourly forecast (sinks/capacity_forecast.py) reads the census job's
accepted events (`census_events`: each event with the unit the patient is in after it); the
backtest (training/catalog/capacity_forecast.py) has ADT events only, and runs them through the
census's Python reference (udfs.census, the JVM job's parity reference) to get the same rows
(`census_rows`). Both then go through `stays_from_census`: a patient merge is one stay
(`merges_spliced`), a stay the census voided is none (`voids_dropped`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import pandas as pd

from schemas import codec
from udfs import capacity_forecast as cf
from udfs.census import AdtEvent, PatientPlacement

CENSUS_COLUMNS = (
    "event_id", "event_type", "patient_token", "facility_id", "unit_id", "event_time", "outcome",
)  # fmt: skip


def census_rows(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """The census's state machine (udfs.census) over canonical ADT events (adt.event.v1 dicts,
    in the order the census applies them: record time, then arrival) as `census_events` rows:
    each event's outcome, and the unit (and facility) the patient is in after it, at its record
    time (codec.record_time: an event entered after the fact is applied when entered, as the
    job's census_events have it). The job also refuses a unit without configured capacity
    (`check_unit`), which a backtest of events without a capacity file places."""
    who: dict[str, PatientPlacement] = {}
    rows: list[tuple[Any, ...]] = []
    for e in events:
        ms = codec.epoch_ms(codec.record_time(e))
        pp = who.setdefault(e["patient_token"], PatientPlacement())
        outcome, _ = pp.apply(AdtEvent.of(e, ms))
        where = pp.place
        rows.append(
            (
                e["event_id"],
                e["event_type"],
                e["patient_token"],
                where.facility_id if where else e["facility_id"],
                where.unit_id if where else None,
                ms,
                outcome.status,
            )
        )
    frame = pd.DataFrame(rows, columns=list(CENSUS_COLUMNS))
    frame["event_time"] = pd.to_datetime(frame.event_time.astype("int64"), unit="ms", utc=True)
    return frame


def stays_from_events(events: Iterable[dict[str, Any]]) -> pd.DataFrame:
    """Stays from canonical ADT events placed by the census's reference (`census_rows`), as the
    hourly forecast reads them from the census job (`stays_from_census`): refused events
    ignored as the census ignores them, merges spliced, voided stays left out."""
    stays, _ = stays_from_census(census_rows(events))
    return stays


def stays_from_census(census_events: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Stays (udfs.capacity_forecast.stays_from_placements) from census_events rows (patient,
    facility, unit after the event, event_time), and the hour each facility's data begin (its
    first event): a facility whose feed starts later has its own census load and history. A
    stay the census voided (`voids_dropped`) is none."""
    spliced = merges_spliced(census_events[census_events.outcome == "applied"])
    ms = pd.to_datetime(spliced.event_time, utc=True).dt.as_unit("ms").astype("int64")
    spliced = spliced.assign(time_h=ms.to_numpy() / cf.HOUR_MS)
    first = spliced.time_h.groupby(spliced.facility_id.to_numpy()).min()
    starts = {str(f): float(h) for f, h in first.items()}
    ev = voids_dropped(spliced)  # after the facility's first hour: a void's rows count there
    columns = ("patient_token", "facility_id", "unit_id", "time_h")
    placements = pd.DataFrame({c: ev[c].to_numpy() for c in columns})
    return cf.stays_from_placements(placements), starts


VOIDS = ("cancel_admit", "void_encounter")  # applied, each frees the bed of a stay that never was


def voids_dropped(events: pd.DataFrame) -> pd.DataFrame:
    """Applied census_events rows without the stays the census voided: an applied
    `cancel_admit` (A11) or `void_encounter` (a FHIR Encounter entered-in-error) takes back the
    patient's current stay (udfs.census), so its rows since the admission (or the merge that
    placed a patient without a bed) that began it go with the void's own, across a discharge a
    `cancel_discharge` (A13) took back. The stay never was: not an arrival to the arrival
    profile, nor a short stay to the length-of-stay survival. Rows in the census's order at one
    instant (the sort is stable)."""
    if not events.event_type.isin(VOIDS).any():
        return events
    ev = events.sort_values("event_time", kind="stable").reset_index(drop=True)
    placed = ev.unit_id.notna().to_numpy()
    kind = ev.event_type.to_numpy()
    voids = np.flatnonzero(ev.event_type.isin(VOIDS).to_numpy())
    tokens = ev.patient_token.to_numpy(dtype=object)
    sub = ev[ev.patient_token.isin(set(tokens[voids]))]
    rows_of = sub.groupby("patient_token").groups  # token -> its rows' labels (positions in ev)
    dropped: set[int] = set()
    for v in voids:
        mine = [int(i) for i in rows_of[tokens[v]] if i < v]
        cut = len(mine)
        for k in range(len(mine) - 1, -1, -1):
            i = mine[k]
            taken_back = k + 1 < len(mine) and kind[mine[k + 1]] == "cancel_discharge"
            if not placed[i] and not taken_back:
                break  # a time without a bed: the stay began after it
            cut = k
            if kind[i] == "admit" or (
                kind[i] == "merged_in" and (k == 0 or not placed[mine[k - 1]])
            ):
                break  # where the stay began
        dropped.update(mine[cut:])
        dropped.add(int(v))
    return ev.drop(index=sorted(dropped)).reset_index(drop=True)


PLACED_FIRST = ("admit", "merged_in")  # at a merge's instant, placed before its merged_in


def merges_spliced(events: pd.DataFrame) -> pd.DataFrame:
    """Applied census_events rows with each patient merge (udfs.census: a `merged_away` row
    `…:away` and a `merged_in` row `…:in`, both applied) spliced into one stay where the
    survivor held no bed before it: the merged record's current stay (its rows since its last
    without a unit) carries the surviving token and the `merged_away` row is dropped. The merge
    is then no departure of one stay and arrival of another (the forecast's survival and
    arrival rates would count both), and the patient's time in the unit runs from the alias's
    admission. A merge of which one half changed nothing, or whose survivor was in a bed at the
    merge or during the merged record's stay (two registrations both placed), stays as the
    census applied it. Chains (A into B, later B into C) follow in time order (the rows are
    sorted by time, stably: the order at one instant kept). Cost: a sort, then per merge the
    rows of its two tokens."""
    if not events.event_type.eq("merged_away").any():
        return events
    ev = events.sort_values("event_time", kind="stable").reset_index(drop=True)
    kind = ev.event_type.to_numpy()
    ids = ev.event_id.astype(str).to_numpy()
    times = pd.to_datetime(ev.event_time, utc=True).dt.as_unit("ms").astype("int64").to_numpy()
    placed = ev.unit_id.notna().to_numpy()
    tokens = ev.patient_token.to_numpy(dtype=object).copy()
    into = {ids[i].removesuffix(":in"): i for i in np.flatnonzero(kind == "merged_in")}
    # the rows of the tokens a merge names (positions in `ev`, in time order)
    halves = (kind == "merged_away") | (kind == "merged_in")
    sub = ev[ev.patient_token.isin(set(tokens[halves]))]
    rows_of = {
        t: [int(i) for i in sub.index[ix]]
        for t, ix in sub.groupby("patient_token", sort=False).indices.items()
    }
    dropped = []
    for a in np.flatnonzero(kind == "merged_away"):
        b = into.get(ids[a].removesuffix(":away"))
        if b is None:
            continue
        alias, token, t = tokens[a], tokens[b], times[a]
        # the survivor's rows the census applied before the merge: at its instant only one that
        # places a patient without a bed (a transfer or discharge then came after merged_in)
        own = [
            i
            for i in rows_of.get(token, [])
            if i != b and (times[i] < t or (times[i] == t and kind[i] in PLACED_FIRST))
        ]
        mine = [i for i in rows_of.get(alias, []) if i != a and times[i] <= t]
        left = max((k for k, i in enumerate(mine) if not placed[i]), default=-1)
        moved = mine[left + 1 :]
        if own and (placed[own[-1]] or (moved and times[own[-1]] >= times[moved[0]])):
            continue  # in a bed at the merge, or during the merged record's stay: not one stay
        tokens[moved] = token
        rows_of[token] = sorted([*rows_of.get(token, []), *moved])
        gone = set(moved)
        rows_of[alias] = [i for i in rows_of[alias] if i not in gone]
        dropped.append(a)
    return ev.assign(patient_token=tokens).drop(index=dropped).reset_index(drop=True)
