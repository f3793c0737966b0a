from __future__ import annotations

import numpy as np
import pytest

from training.metrics import (
    best_predictions,
    normalized_utility,
    onset_row,
    patient_utility,
)


def test_utility_matches_the_official_example_of_the_2019_challenge() -> None:
    # evaluate_sepsis_score.py, compute_prediction_utility docstring: 3.388888888888889
    assert patient_utility([0, 0, 0, 0, 1, 1], [0, 0, 1, 1, 1, 1]) == pytest.approx(
        3.388888888888889
    )


def test_onset_is_six_hours_after_the_first_positive_label() -> None:
    assert onset_row([0, 0, 1, 1]) == 8
    assert onset_row([0, 0, 0]) is None


def test_false_alarms_cost_five_hundredths_each_on_a_non_septic_patient() -> None:
    assert patient_utility([0] * 10, [1, 1, 0, 0, 0, 0, 0, 0, 0, 1]) == pytest.approx(-0.15)


def test_an_alarm_at_the_optimal_time_earns_one_and_missed_late_hours_cost() -> None:
    labels = np.zeros(40, dtype=int)
    labels[20:] = 1  # onset t_sepsis = 26: optimal alarm at row 20, late bound at row 29
    missed_late = sum(-2 / 9 * (t - 26) - 12 / 9 for t in range(21, 30))  # from 0 down to -2
    at_optimum = np.zeros(40, dtype=bool)
    at_optimum[20] = True
    assert patient_utility(labels, at_optimum) == pytest.approx(1.0 + missed_late)
    assert patient_utility(labels, np.zeros(40, dtype=bool)) == pytest.approx(missed_late)
    assert patient_utility(labels, np.r_[np.zeros(30), np.ones(10)]) == pytest.approx(missed_late)


def test_normalized_utility_is_one_for_the_best_and_zero_for_no_alarms() -> None:
    rng = np.random.default_rng(0)
    cohort = []
    for _ in range(30):
        n = int(rng.integers(20, 60))
        lab = np.zeros(n, dtype=int)
        if rng.random() < 0.3:
            lab[int(rng.integers(0, n)) :] = 1
        cohort.append(lab)
    assert normalized_utility((lab, best_predictions(lab)) for lab in cohort) == pytest.approx(1)
    assert normalized_utility((lab, np.zeros(len(lab))) for lab in cohort) == pytest.approx(0)
    assert normalized_utility((lab, ~best_predictions(lab)) for lab in cohort) < 0


def test_the_calibration_slope_is_one_for_true_risks_and_half_for_risks_twice_as_extreme() -> None:
    from training.validation import calibration_slope

    rng = np.random.default_rng(7)
    logit = rng.normal(-2.0, 1.5, 200_000)
    label = (rng.random(len(logit)) < 1 / (1 + np.exp(-logit))).astype(int)
    slope, intercept = calibration_slope(label, 1 / (1 + np.exp(-logit)))
    assert slope == pytest.approx(1.0, abs=0.03) and intercept == pytest.approx(0.0, abs=0.03)
    slope, _ = calibration_slope(label, 1 / (1 + np.exp(-2 * logit)))
    assert slope == pytest.approx(0.5, abs=0.02)
    _, intercept = calibration_slope(label, 1 / (1 + np.exp(-(logit - 1.0))))
    assert intercept == pytest.approx(1.0, abs=0.03)  # risks too low: a positive intercept
