"""Offline bed census straight from a stay table (unit, intime, outtime), independent of the
job's event mapping: a patient counts in a unit at minute boundary m when intime < m <= outtime."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

MINUTE_MS = 60_000


def boundary_after(ms: np.ndarray) -> np.ndarray:
    """The first minute boundary strictly after each instant."""
    return (ms // MINUTE_MS + 1) * MINUTE_MS


def _ms(t: pd.Series) -> np.ndarray:
    return t.astype("datetime64[ms]").astype("int64").to_numpy()


class StepCensus:
    """Occupancy of one unit as a step function of the minute boundary."""

    def __init__(self, starts: np.ndarray, ends: np.ndarray) -> None:
        self.starts = np.sort(starts)
        self.ends = np.sort(ends)

    @classmethod
    def from_stays(cls, stays: pd.DataFrame) -> StepCensus:
        ends = stays.outtime.dropna()
        return cls(boundary_after(_ms(stays.intime)), boundary_after(_ms(ends)))

    def at(self, m: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, m, "right") - np.searchsorted(self.ends, m, "right")

    def change_points(self) -> np.ndarray:
        return np.unique(np.concatenate([self.starts, self.ends]))


def from_rows(window_end_ms: Iterable[int], occupied: Iterable[int]) -> tuple[np.ndarray, ...]:
    ends = np.array(list(window_end_ms), dtype=np.int64)
    order = np.argsort(ends, kind="stable")
    return ends[order], np.array(list(occupied), dtype=np.int64)[order]


def job_at(ends: np.ndarray, occupied: np.ndarray, m: np.ndarray) -> np.ndarray:
    """The job's census at each boundary m: its latest row at or before m (0 before any)."""
    if len(ends) == 0:
        return np.zeros(len(m), dtype=np.int64)
    i = np.searchsorted(ends, m, "right") - 1
    return np.where(i >= 0, occupied[np.maximum(i, 0)], 0)


def mismatches(
    ref: StepCensus, ends: np.ndarray, occupied: np.ndarray
) -> list[tuple[int, int, int]]:
    """(boundary, reference, job) wherever they differ. Both are step functions that change only
    at their own change points, so comparing at the union of those covers every boundary."""
    points = np.unique(np.concatenate([ref.change_points(), ends]))
    want, got = ref.at(points), job_at(ends, occupied, points)
    bad = np.nonzero(want != got)[0]
    return [(int(points[i]), int(want[i]), int(got[i])) for i in bad]


def series(rows: list[dict], unit: str) -> tuple:
    mine = [r for r in rows if r["unit_id"] == unit]
    return from_rows(
        (int(r["window_end"].timestamp() * 1000) for r in mine),
        (r["occupied_beds"] for r in mine),
    )
