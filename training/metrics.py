"""Evaluation metrics shared by the rule evaluation and model training.

The PhysioNet/CinC 2019 utility follows the challenge's official definition (Reyna et al.,
Crit Care Med 2020;48:210; `compute_prediction_utility` and the normalisation in
`evaluate_sepsis_score.py` of physionetchallenges/evaluation-2019): hour t of a patient whose
first positive label is at row k has onset t_sepsis = k + 6 (labels lead onset by 6 h); a
positive prediction earns up to +1 from 12 h to 6 h before onset, decaying to 0 at +3 h; a
missed septic hour costs up to -2 after t_sepsis - 6; a false alarm costs -0.05; rows after
t_sepsis + 3 count nothing. Normalised utility = (observed - no alarms) / (best - no alarms).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

DT_EARLY, DT_OPTIMAL, DT_LATE = -12, -6, 3
MAX_U_TP, MIN_U_FN, U_FP, U_TN = 1.0, -2.0, -0.05, 0.0

BoolArray = npt.NDArray[np.bool_]


def onset_row(labels: npt.ArrayLike) -> int | None:
    """t_sepsis as the challenge defines it (first positive label + 6 rows), None if never."""
    lab = np.asarray(labels, dtype=bool)
    return int(np.argmax(lab)) - DT_OPTIMAL if lab.any() else None


def patient_utility(labels: npt.ArrayLike, predictions: npt.ArrayLike) -> float:
    lab = np.asarray(labels, dtype=bool)
    pred = np.asarray(predictions, dtype=bool)
    if lab.shape != pred.shape:
        raise ValueError("one prediction per label")
    t_sepsis = onset_row(lab)
    if t_sepsis is None:
        return float(U_FP * pred.sum() + U_TN * (~pred).sum())
    t = np.arange(len(lab), dtype=float) - t_sepsis
    m1, b1 = MAX_U_TP / (DT_OPTIMAL - DT_EARLY), -MAX_U_TP / (DT_OPTIMAL - DT_EARLY) * DT_EARLY
    m2 = -MAX_U_TP / (DT_LATE - DT_OPTIMAL)
    b2 = -m2 * DT_LATE
    m3 = MIN_U_FN / (DT_LATE - DT_OPTIMAL)
    b3 = -m3 * DT_OPTIMAL
    early, late = t <= DT_OPTIMAL, (t > DT_OPTIMAL) & (t <= DT_LATE)
    tp = np.where(early, np.maximum(m1 * t + b1, U_FP), np.where(late, m2 * t + b2, 0.0))
    fn = np.where(late, m3 * t + b3, 0.0)
    return float(np.where(pred, tp, fn).sum())


def best_predictions(labels: npt.ArrayLike) -> BoolArray:
    lab = np.asarray(labels, dtype=bool)
    best = np.zeros(len(lab), dtype=bool)
    t_sepsis = onset_row(lab)
    if t_sepsis is not None:
        best[max(0, t_sepsis + DT_EARLY) : min(t_sepsis + DT_LATE + 1, len(lab))] = True
    return best


def normalise(
    observed: npt.ArrayLike, best: npt.ArrayLike, inaction: npt.ArrayLike
) -> npt.NDArray[np.float64]:
    """The challenge's normalisation of summed utilities, element-wise: (observed − no alarms) /
    (best − no alarms); NaN where best equals no alarms (nothing to earn)."""
    o, b, n = (np.asarray(v, dtype=np.float64) for v in (observed, best, inaction))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b != n, (o - n) / (b - n), np.nan)


def normalized_utility(cohort: Iterable[tuple[npt.ArrayLike, npt.ArrayLike]]) -> float:
    """Over (labels, predictions) per patient."""
    observed = best = inaction = 0.0
    for labels, predictions in cohort:
        lab = np.asarray(labels, dtype=bool)
        observed += patient_utility(lab, predictions)
        best += patient_utility(lab, best_predictions(lab))
        inaction += patient_utility(lab, np.zeros(len(lab), dtype=bool))
    return float(normalise(observed, best, inaction))
