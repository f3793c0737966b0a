"""Model monitoring statistics: a model version's training reference and the drift and delayed
performance measures of a window of the stream against it (pure numpy/scipy; the monitor job,
jobs/model_monitor.py, calls them once per window, and training writes the reference).

Binning. Every monitored value is counted on a fixed fine grid (`Grid`: `cells` equal cells
from `low` in steps of `step`, values outside clamped into the end cells, a missing value in
cell -1). The stream counts cells in Flink SQL (`Grid.cell_sql`, the same formula as
`Grid.cells_of`), the reference stores the same cells' proportions, so both sides are binned
identically. Scores are binned on the logit scale (binary models) or log1p scale (regression).

Measures (thresholds per model in its spec's `monitor` section, schemas/model_spec.py):

- PSI over the reference deciles (snapped to the grid) plus a missing bin: the convention
  < 0.1 stable, 0.1-0.25 moderate shift, > 0.25 major shift (Siddiqi, *Credit Risk Scorecards*,
  Wiley 2006). A small window's PSI is large by chance alone: under no shift
  PSI ≈ (1/n + 1/N) χ²(k−1) (Yurdakul, *Statistical Properties of the Population Stability
  Index*, 2018), so a window breaches only above both the convention and that χ² quantile.
- Kolmogorov–Smirnov D between the window's and the reference's distribution of the measured
  values (the CDF at the grid's cell bounds), with the exact one-sample critical value for the
  window's size (`scipy.stats.kstwo`; the reference sample is large), Bonferroni-corrected over
  the features of a version — the measure suited to small windows.
- Score PSI (as above) and alert rate against the version's validation alert rate.
- Delayed performance once outcomes are known: AUROC from binned scores (Mann-Whitney with ties
  in a cell counted half), its standard error (Hanley & McNeil, Radiology 1982), and calibration:
  observed/expected ratio (calibration-in-the-large) and expected calibration error over decile
  bins of the prediction (Van Calster et al., J Clin Epidemiol 2016: the calibration hierarchy).

Sample size. Records of one patient in a window are not independent (hourly states carried
forward), so the KS critical value uses an effective size: the window's measured records over
the design effect 1 + (m − 1)ρ (Kish 1965), m the records per measured patient and ρ the
feature's intra-patient correlation within a 12-hour block of training hours (stored in the
reference; a carried-forward lab has ρ near 1, so each patient counts about once). The PSI's
chance bound uses the window's patients.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

EPS = 1e-4  # floor of a bin's proportion in PSI (an empty bin would make it infinite)


@dataclass(frozen=True)
class Grid:
    """`cells` equal cells of width `step` from `low`; `transform` applied first (`logit`,
    `log1p` or none)."""

    low: float
    step: float
    cells: int
    transform: str = ""

    def _t(self, v: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        if self.transform == "logit":
            p = np.clip(v, 1e-6, 1 - 1e-6)
            return np.asarray(np.log(p / (1 - p)))
        if self.transform == "log1p":
            return np.asarray(np.log1p(np.maximum(v, 0.0)))
        return v

    def cells_of(self, values: Sequence[float] | np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """Each value's cell (-1: missing)."""
        v = np.asarray(values, dtype="float64")
        missing = np.isnan(v)
        t = self._t(np.where(missing, self.low, v))
        c = np.clip(np.floor((t - self.low) / self.step), 0, self.cells - 1).astype("int64")
        return np.where(missing, -1, c)

    def cell_sql(self, expr: str) -> str:
        """The same cell as a Flink SQL INT expression over a DOUBLE `expr`."""
        v = f"CAST({expr} AS DOUBLE)"
        if self.transform == "logit":
            p = f"LEAST(GREATEST({v}, 1e-6), {1 - 1e-6!r})"
            t = f"LN({p} / (1 - {p}))"
        elif self.transform == "log1p":
            t = f"LN(1 + GREATEST({v}, 0.0))"
        else:
            t = v
        cell = f"CAST(FLOOR(({t} - ({self.low!r})) / {self.step!r}) AS INT)"
        return (
            f"CASE WHEN {v} IS NULL THEN -1 ELSE GREATEST(0, LEAST({self.cells - 1}, {cell})) END"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "low": self.low,
            "step": self.step,
            "cells": self.cells,
            "transform": self.transform,
        }

    @classmethod
    def of(cls, d: Mapping[str, Any]) -> Grid:
        return cls(float(d["low"]), float(d["step"]), int(d["cells"]), str(d.get("transform", "")))


def _integers(high: int) -> Grid:
    return Grid(-0.5, 1.0, high + 1)


# The inputs of the sepsis model that the screened state carries (sepsis.screen.v1; the scores
# as the model reads them, jobs/model_monitor.feature_cells_sql), on grids that cover each
# field's plausible range finely (units as the field names say).
FEATURE_GRIDS: dict[str, Grid] = {
    "heart_rate_bpm": Grid(0.0, 2.0, 150),
    "resp_rate_per_min": Grid(0.0, 1.0, 80),
    "spo2_pct": Grid(49.5, 1.0, 51),
    "sbp_mmhg": Grid(0.0, 2.0, 150),
    "map_mmhg": Grid(0.0, 2.0, 125),
    "temp_c": Grid(30.0, 0.1, 150),
    "fio2_fraction": Grid(0.205, 0.01, 80),
    "lactate_mmol_l": Grid(0.0, 0.2, 150),
    "paco2_mmhg": Grid(0.0, 1.0, 150),
    "wbc_10e9_l": Grid(0.0, 0.5, 200),
    "platelets_10e9_l": Grid(0.0, 5.0, 200),
    "creatinine_mg_dl": Grid(0.0, 0.1, 200),
    "bilirubin_total_mg_dl": Grid(0.0, 0.1, 300),
    "news2_score": _integers(20),
    "sirs_count": _integers(4),
    "qsofa_score": _integers(3),
    "sofa_partial_score": _integers(24),
}
PROBABILITY_GRID = Grid(-10.0, 0.1, 200, "logit")
REGRESSION_GRID = Grid(0.0, 0.05, 120, "log1p")


def score_grid(task: str) -> Grid:
    return PROBABILITY_GRID if task == "binary" else REGRESSION_GRID


# ---------------------------------------------------------------------------------------------
# The reference


def _sparse(counts: np.ndarray[Any, Any]) -> dict[str, float]:
    total = counts.sum()
    return {str(i): round(float(c / total), 8) for i, c in enumerate(counts) if c > 0}


def dense(sparse: Mapping[str, float], cells: int) -> np.ndarray[Any, Any]:
    out = np.zeros(cells)
    for k, v in sparse.items():
        out[int(k)] = v
    return out


def decile_cuts(cell_props: np.ndarray[Any, Any], bins: int = 10) -> list[int]:
    """Cell indices where the reference's deciles fall (a bin is cells [cut_i, cut_i+1)):
    deciles that land in the same cell merge, so a discrete value is one bin."""
    cdf = np.cumsum(cell_props)
    cuts = {int(np.searchsorted(cdf, q, side="left")) + 1 for q in np.arange(1, bins) / bins}
    return sorted(c for c in cuts if 0 < c < len(cell_props))


def feature_reference(values: np.ndarray[Any, Any], grid: Grid) -> dict[str, Any]:
    """A feature's reference: its grid, the measured values' cell proportions, the decile bins
    (cuts, edges in the feature's unit, proportions) and the missing share."""
    cells = grid.cells_of(values)
    measured = cells[cells >= 0]
    counts = np.bincount(measured, minlength=grid.cells).astype("float64")
    props = counts / max(counts.sum(), 1.0)
    cuts = decile_cuts(props)
    bounds = [0, *cuts, grid.cells]
    return {
        "grid": grid.as_dict(),
        "n": len(values),
        "measured": len(measured),
        "missing_share": round(float(1 - len(measured) / max(len(values), 1)), 6),
        "cells": _sparse(counts) if len(measured) else {},
        "bin_cuts": cuts,
        "bin_edges": [round(grid.low + c * grid.step, 6) for c in cuts],
        "bin_proportions": [
            round(float(props[a:b].sum()), 6) for a, b in itertools.pairwise(bounds)
        ],
        "transform_note": grid.transform or None,
    }


def score_reference(
    scores: np.ndarray[Any, Any], grid: Grid, threshold: float | None
) -> dict[str, Any]:
    s = np.asarray(scores, dtype="float64")
    ref = feature_reference(s, grid)
    ref.pop("missing_share")
    ref["alert_rate"] = None if threshold is None else round(float((s >= threshold).mean()), 6)
    ref["threshold"] = threshold
    return ref


def icc(values: np.ndarray[Any, Any], groups: np.ndarray[Any, Any]) -> float:
    """Intra-class correlation ICC(1) of measured `values` within `groups` (one-way ANOVA
    estimator, Shrout & Fleiss 1979), clipped to [0, 1]: how alike one patient's records in a
    window are."""
    v = np.asarray(values, dtype="float64")
    keep = ~np.isnan(v)
    v, g = v[keep], np.asarray(groups)[keep]
    _, idx, sizes = np.unique(g, return_inverse=True, return_counts=True)
    k, n = len(sizes), len(v)
    if k < 2 or n <= k:
        return 1.0
    means = np.bincount(idx, weights=v) / sizes
    msb = float((sizes * (means - v.mean()) ** 2).sum() / (k - 1))
    msw = float(((v - means[idx]) ** 2).sum() / (n - k))
    n0 = (n - (sizes**2).sum() / n) / (k - 1)
    denominator = msb + (n0 - 1) * msw
    return float(np.clip((msb - msw) / denominator, 0, 1)) if denominator > 0 else 1.0


def effective_n(records: float, patients: float, rho: float) -> float:
    """Records of `patients` as independent observations: records / design effect
    1 + (m − 1)ρ, m the records per patient (Kish, *Survey Sampling*, 1965)."""
    if patients <= 0:
        return 0.0
    m = records / patients
    return float(records / (1 + max(m - 1, 0) * rho))


# ---------------------------------------------------------------------------------------------
# Drift of a window


def cells_array(counts: Mapping[int, float], cells: int) -> np.ndarray[Any, Any]:
    out = np.zeros(cells)
    for c, n in counts.items():
        if 0 <= c < cells:
            out[c] += n
    return out


def psi(expected: np.ndarray[Any, Any], actual: np.ndarray[Any, Any], eps: float = EPS) -> float:
    """Population stability index of `actual` against `expected` (counts or proportions over the
    same bins): each made shares, then floored at `eps` (an empty bin), as the ML ops board's
    SQL does. Flooring the counts instead made one empty bin's term grow with the window's size
    (e·ln(e·n/eps)), so windows and facilities of other sizes could not be compared."""
    e = np.asarray(expected, dtype="float64")
    a = np.asarray(actual, dtype="float64")
    e = np.maximum(e / e.sum(), eps)
    a = np.maximum(a / a.sum(), eps)
    return float(np.sum((a - e) * np.log(a / e)))


def psi_critical(bins: int, n: float, reference_n: float, alpha: float) -> float:
    """PSI that a window of effective size `n` exceeds by chance with probability `alpha`
    (Yurdakul 2018: PSI ≈ (1/n + 1/N) χ²(bins − 1) under no shift)."""
    if n <= 0 or bins < 2:
        return math.inf
    return float((1 / n + 1 / max(reference_n, 1)) * stats.chi2.isf(alpha, bins - 1))


def binned(reference: Mapping[str, Any], counts: Mapping[int, float]) -> tuple[Any, Any]:
    """(reference proportions, window counts) over the decile bins plus the missing bin."""
    grid = Grid.of(reference["grid"])
    window = cells_array(counts, grid.cells)
    bounds = [0, *reference["bin_cuts"], grid.cells]
    win = [window[a:b].sum() for a, b in itertools.pairwise(bounds)]
    share = reference.get("missing_share")
    if share is None:
        return np.asarray(reference["bin_proportions"]), np.asarray(win)
    ref = [p * (1 - share) for p in reference["bin_proportions"]] + [share]
    return np.asarray(ref), np.asarray([*win, counts.get(-1, 0.0)])


def ks(reference: Mapping[str, Any], counts: Mapping[int, float]) -> tuple[float, float]:
    """(D, measured n): the largest gap between the window's and the reference's CDF of the
    measured values at the grid's cell bounds."""
    grid = Grid.of(reference["grid"])
    window = cells_array(counts, grid.cells)
    n = float(window.sum())
    if n == 0 or not reference["cells"]:
        return 0.0, n
    ref = dense(reference["cells"], grid.cells)
    d = np.abs(np.cumsum(window) / n - np.cumsum(ref) / ref.sum())
    return float(d.max()), n


def ks_critical(n: float, alpha: float) -> float:
    """The one-sample KS statistic exceeded with probability `alpha` by a sample of `n`."""
    if n < 1:
        return math.inf
    return float(stats.kstwo.isf(alpha, round(n)))


def auroc(pos: np.ndarray[Any, Any], neg: np.ndarray[Any, Any]) -> float:
    """AUROC of scores binned in ordered cells: positives and negatives per cell."""
    p, q = np.asarray(pos, dtype="float64"), np.asarray(neg, dtype="float64")
    n_pos, n_neg = p.sum(), q.sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    below = np.cumsum(q) - q
    return float((p * (below + 0.5 * q)).sum() / (n_pos * n_neg))


def hanley_mcneil_se(auc: float, n_pos: float, n_neg: float) -> float:
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (
        n_pos * n_neg
    )
    return float(math.sqrt(max(var, 0.0)))


def calibration(
    pos: np.ndarray[Any, Any],
    n: np.ndarray[Any, Any],
    score_sum: np.ndarray[Any, Any],
    bins: int = 10,
) -> tuple[float, float]:
    """(observed/expected ratio, expected calibration error over decile bins of the
    prediction) from per-cell positives, counts and sums of predicted probability."""
    pos, n, s = (np.asarray(a, dtype="float64") for a in (pos, n, score_sum))
    total = n.sum()
    if total == 0 or s.sum() == 0:
        return math.nan, math.nan
    oe = float(pos.sum() / s.sum())
    group = np.minimum((np.cumsum(n) - n / 2) / total * bins, bins - 1).astype(int)
    ece = 0.0
    for g in range(bins):
        m = group == g
        if n[m].sum() > 0:
            ece += abs(pos[m].sum() - s[m].sum()) / total
    return oe, float(ece)
