"""NEWS2 band by band against RCP 2017 chart 1."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from udfs import news2 as n


@pytest.mark.parametrize(
    ("rr", "points"),
    [
        (5, 3),
        (8, 3),
        (8.4, 3),
        (8.5, 1),
        (9, 1),
        (11, 1),
        (12, 0),
        (20, 0),
        (21, 2),
        (24, 2),
        (25, 3),
        (40, 3),
    ],
)
def test_respiration_rate_bands(rr: float, points: int) -> None:
    assert n.resp_rate_points(rr) == points


@pytest.mark.parametrize(
    ("spo2", "points"),
    [
        (80, 3),
        (91, 3),
        (92, 2),
        (93, 2),
        (94, 1),
        (95, 1),
        (95.5, 0),
        (96, 0),
        (100, 0),
    ],
)
def test_spo2_scale1_bands(spo2: float, points: int) -> None:
    assert n.spo2_scale1_points(spo2) == points


@pytest.mark.parametrize(
    ("spo2", "on_o2", "points"),
    [
        (83, False, 3),
        (84, False, 2),
        (85, True, 2),
        (86, False, 1),
        (87, True, 1),
        (88, True, 0),
        (92, True, 0),
        (93, False, 0),
        (100, False, 0),
        (93, True, 1),
        (94, True, 1),
        (95, True, 2),
        (96, True, 2),
        (97, True, 3),
        (100, True, 3),
    ],
)
def test_spo2_scale2_bands_depend_on_oxygen_above_92(spo2: float, on_o2: bool, points: int) -> None:
    assert n.spo2_scale2_points(spo2, on_o2) == points


@pytest.mark.parametrize(
    ("sbp", "points"),
    [
        (70, 3),
        (90, 3),
        (91, 2),
        (100, 2),
        (101, 1),
        (110, 1),
        (111, 0),
        (219, 0),
        (220, 3),
    ],
)
def test_systolic_bp_bands(sbp: float, points: int) -> None:
    assert n.sbp_points(sbp) == points


@pytest.mark.parametrize(
    ("hr", "points"),
    [
        (30, 3),
        (40, 3),
        (41, 1),
        (50, 1),
        (51, 0),
        (90, 0),
        (91, 1),
        (110, 1),
        (111, 2),
        (130, 2),
        (131, 3),
        (180, 3),
    ],
)
def test_pulse_bands(hr: float, points: int) -> None:
    assert n.pulse_points(hr) == points


@pytest.mark.parametrize(
    ("temp", "points"),
    [
        (34.0, 3),
        (35.0, 3),
        (35.04, 3),
        (35.05, 1),
        (35.1, 1),
        (36.0, 1),
        (36.1, 0),
        (38.0, 0),
        (38.1, 1),
        (39.0, 1),
        (39.1, 2),
        (41.0, 2),
    ],
)
def test_temperature_bands_at_one_decimal(temp: float, points: int) -> None:
    assert n.temperature_points(temp) == points


@pytest.mark.parametrize(
    ("charted", "points"),
    [(35.05, 1), (36.05, 0), (38.05, 1), (39.05, 2), (35.04, 3), (38.04, 0), (89.5, None)],
)
def test_a_half_charted_rounds_up_as_the_topics_32_bit_float_carries_it(
    charted: float, points: int | None
) -> None:
    carried = float(np.float32(charted))  # 38.05 arrives as 38.0499992
    if points is None:  # whole-number charts too: SBP 89.5 is 90
        assert n.sbp_points(carried) == n.SBP.score(90) == 3
        assert n.sbp_points(float(np.float32(100.5))) == 1
        return
    assert carried != charted
    assert n.temperature_points(carried) == points


def _obs(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        resp_rate_per_min=16,
        spo2_pct=97,
        on_supplemental_o2=False,
        fio2_fraction=None,
        sbp_mmhg=125,
        heart_rate_bpm=75,
        acvpu="A",
        temp_c=37.0,
        spo2_scale2=None,
    )
    base.update(kw)
    return base


def test_a_normal_full_set_scores_zero_with_all_seven_parameters() -> None:
    r = n.news2(**_obs())
    assert (r.score, r.params_scored, r.red_flag) == (0, 7, False)


def test_supplemental_oxygen_adds_two() -> None:
    assert n.news2(**_obs(on_supplemental_o2=True)).score == 2


def test_fio2_above_room_air_means_oxygen_when_the_device_flag_is_unknown() -> None:
    assert n.news2(**_obs(on_supplemental_o2=None, fio2_fraction=0.4)).air_or_oxygen == 2
    assert n.news2(**_obs(on_supplemental_o2=None, fio2_fraction=0.21)).air_or_oxygen == 0
    assert n.news2(**_obs(on_supplemental_o2=None, fio2_fraction=None)).params_scored == 6


def test_new_confusion_or_worse_scores_three_and_is_a_red_flag() -> None:
    for level in "CVPU":
        r = n.news2(**_obs(acvpu=level))
        assert (r.consciousness, r.score, r.red_flag) == (3, 3, True)


def test_news2_scores_spo2_scale2_for_hypercapnic_patients() -> None:
    on_air_90 = n.news2(**_obs(spo2_pct=90, spo2_scale2=True))
    assert on_air_90.spo2 == 0
    assert n.news2(**_obs(spo2_pct=90)).spo2 == 3  # scale 1 for everyone else
    over_oxygenated = n.news2(**_obs(spo2_pct=98, spo2_scale2=True, on_supplemental_o2=True))
    assert (over_oxygenated.spo2, over_oxygenated.score) == (3, 5)


def test_scale_2_spo2_above_the_target_is_not_assessable_without_the_oxygen_status() -> None:
    """RCP 2017 chart 1: >= 97 % scores 3 on oxygen and 0 on air; not knowing which, the
    reading is not scored (a lower bound), rather than counted as a 0."""
    unknown = n.news2(**_obs(spo2_pct=97, spo2_scale2=True, on_supplemental_o2=None))
    assert (unknown.spo2, unknown.params_scored) == (0, 5)  # SpO2 and oxygen both unscored
    within_target = n.news2(**_obs(spo2_pct=90, spo2_scale2=True, on_supplemental_o2=None))
    assert (within_target.spo2, within_target.params_scored) == (0, 6)  # 88-92: 0 either way
    low = n.news2(**_obs(spo2_pct=83, spo2_scale2=True, on_supplemental_o2=None))
    assert (low.spo2, low.red_flag) == (3, True)


def test_missing_parameters_score_zero_so_the_score_is_a_lower_bound() -> None:
    partial = n.news2(**_obs(temp_c=None, acvpu=None, heart_rate_bpm=140))
    full = n.news2(**_obs(temp_c=34.0, acvpu="V", heart_rate_bpm=140))
    assert partial.params_scored == 5
    assert partial.score == 3 <= full.score == 9


def test_aggregate_is_the_sum_of_the_parameter_scores() -> None:
    r = n.news2(
        resp_rate_per_min=26,
        spo2_pct=92,
        on_supplemental_o2=True,
        fio2_fraction=None,
        sbp_mmhg=95,
        heart_rate_bpm=120,
        acvpu="A",
        temp_c=38.6,
        spo2_scale2=False,
    )
    assert (r.resp_rate, r.spo2, r.air_or_oxygen, r.sbp, r.pulse, r.temperature) == (
        3,
        2,
        2,
        2,
        2,
        1,
    )
    assert r.score == 12 and r.score >= n.HIGH_RISK_THRESHOLD
