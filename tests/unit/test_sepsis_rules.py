from __future__ import annotations

import pytest

from feature_store.definitions import UNSEEN_IN_TRAINING, score_feature_sql
from udfs.sepsis import (
    OXYGEN_PAIR,
    STATE_PARAMS,
    VALIDITY_H,
    contradicted,
    qsofa,
    screen,
    screen_row,
    screen_sql,
    sirs,
    sofa_partial,
)


def test_sirs_counts_each_of_the_four_criteria_once() -> None:
    assert sirs(38.1, 91, 21, None, 12.1) == (4, 4)
    assert sirs(35.9, 90, 20, 40, 4.0) == (1, 4)  # only hypothermia
    assert sirs(37.0, 80, 14, 31.9, 8) == (1, 4)  # PaCO2 < 32 meets the respiratory criterion
    assert sirs(37.0, 80, 25, 31.0, 8) == (1, 4)  # ...but only once with a high rate too
    assert sirs(37.0, 80, 14, 40, 3.9) == (1, 4)  # leukopenia


def test_sirs_boundaries_are_strict_as_in_the_1992_consensus() -> None:
    assert sirs(38.0, 90.0, 20.0, 32.0, 12.0) == (0, 4)
    assert sirs(36.0, None, None, None, 4.0) == (0, 2)


def test_sirs_treats_missing_values_as_unknown_not_as_normal_or_abnormal() -> None:
    assert sirs(None, None, None, None, None) == (0, 0)
    assert sirs(None, 120, None, None, None) == (1, 1)


def test_qsofa_uses_rr_22_sbp_100_and_altered_mentation() -> None:
    assert qsofa(22, 100, "A") == (2, 3)
    assert qsofa(21.9, 100.1, "V") == (1, 3)
    assert qsofa(30, 80, "C") == (3, 3)
    assert qsofa(None, 90, None) == (1, 1)


def test_a_gcs_below_15_is_altered_mentation_whatever_acvpu_says_as_in_seymour_2016() -> None:
    assert qsofa(None, None, None, gcs_total=14) == (1, 1)
    assert qsofa(None, None, "A", gcs_total=14) == (1, 1)  # alert, yet GCS 14: one criterion
    assert qsofa(None, None, None, gcs_total=15) == (0, 1)  # a normal GCS is known, not met
    assert qsofa(None, None, "V", gcs_total=15) == (1, 1)  # responds to voice only
    assert qsofa(22, 100, None, gcs_total=3) == (3, 3)


def test_a_gcs_reaches_qsofa_only_not_news2_nor_sofa() -> None:
    """NEWS2's 3 points are for new confusion or worse (RCP 2017), and SOFA's CNS component asks
    for the GCS without sedation (Vincent 1996): a charted GCS of 3 under sedation is neither,
    and scored as SOFA 4 it made every sedated patient with SIRS ≥ 2 an organ-failure alert."""
    sedated = screen(heart_rate_bpm=95, resp_rate_per_min=24, gcs_total=3)
    assert sedated.news2.score == 2 + 1  # the respiratory rate and pulse, none for the GCS
    assert (sedated.qsofa, sedated.sofa) == ((2, 2), (0, 0))
    assert screen(heart_rate_bpm=80, acvpu="C").news2.score == 3


def test_sofa_coagulation_liver_renal_points_follow_vincent_1996() -> None:
    assert sofa_partial(149, None, None, None, None, None) == (1, 1)
    assert sofa_partial(99, None, None, None, None, None) == (2, 1)
    assert sofa_partial(19, None, None, None, None, None) == (4, 1)
    assert sofa_partial(150, 1.19, None, 1.19, None, None) == (0, 3)
    assert sofa_partial(None, 2.0, None, 3.5, None, None) == (5, 2)
    assert sofa_partial(None, 12.0, None, 5.0, None, None) == (8, 2)


def test_sofa_cardiovascular_scores_only_map_below_70() -> None:
    assert sofa_partial(None, None, 69.9, None, None, None) == (1, 1)
    assert sofa_partial(None, None, 70, None, None, None) == (0, 1)


def test_sofa_respiration_uses_spo2_fio2_only_while_spo2_is_at_most_97() -> None:
    assert sofa_partial(None, None, None, None, 95, 0.21) == (0, 1)  # S/F 452
    assert sofa_partial(None, None, None, None, 95, 0.4) == (2, 1)  # S/F 237.5 < 315
    assert sofa_partial(None, None, None, None, 95, 0.5) == (3, 1)  # S/F 190 < 235
    assert sofa_partial(None, None, None, None, 90, 1.0) == (4, 1)  # S/F 90 < 150
    assert sofa_partial(None, None, None, None, 98, 1.0) == (0, 0)  # saturated: not imputable
    assert sofa_partial(None, None, None, None, 95, None) == (0, 0)


def test_screen_combines_the_four_scores_from_one_state() -> None:
    s = screen(
        heart_rate_bpm=125,
        resp_rate_per_min=26,
        sbp_mmhg=95,
        spo2_pct=91,
        temp_c=38.5,
        wbc_10e9_l=15,
        platelets_10e9_l=90,
        lactate_mmol_l=4,
    )
    assert s.news2.score == 3 + 3 + 2 + 2 + 1
    assert s.sirs == (4, 4)
    assert s.qsofa == (2, 2)
    assert s.sofa == (2, 1)


def test_screen_row_is_the_positional_form_in_state_params_order() -> None:
    values = [None] * len(STATE_PARAMS)
    values[STATE_PARAMS.index("heart_rate_bpm")] = 135.0
    assert screen_row(*values) == (3, 1, True, 1, 1, 0, 0, 0, 0)
    with pytest.raises(ValueError):
        screen_row(1.0)


def test_every_state_parameter_has_a_validity_between_one_hour_and_one_day() -> None:
    assert set(VALIDITY_H) == set(STATE_PARAMS)
    assert all(1 <= h <= 24 for h in VALIDITY_H.values())
    assert VALIDITY_H["heart_rate_bpm"] < VALIDITY_H["temp_c"] < VALIDITY_H["creatinine_mg_dl"]


def test_a_newer_oxygen_charting_drops_the_older_fio2_or_flag_it_contradicts() -> None:
    def state(fio2: float, fio2_at: int, on_o2: bool, on_o2_at: int) -> str | None:
        values = {"fio2_fraction": fio2, "on_supplemental_o2": on_o2}
        return contradicted(values, {"fio2_fraction": fio2_at, "on_supplemental_o2": on_o2_at})

    assert state(0.40, 1, False, 2) == "fio2_fraction"  # now on room air: FiO2 0.40 is stale
    assert state(0.21, 1, True, 2) == "fio2_fraction"  # now on a mask: not room air any more
    assert state(0.40, 2, False, 1) == "on_supplemental_o2"  # FiO2 0.40 after "room air"
    assert state(0.40, 1, True, 2) is None  # they agree
    assert state(0.21, 1, False, 2) is None
    assert state(0.40, 1, False, 1) is None  # charted together: each says what it says
    assert contradicted({"fio2_fraction": 0.4}, {"fio2_fraction": 1}) is None


def test_fio2_and_the_oxygen_flag_share_a_validity_so_the_newer_is_valid_with_the_older() -> None:
    assert len({VALIDITY_H[p] for p in OXYGEN_PAIR}) == 1


def test_the_models_score_features_leave_out_what_training_never_saw() -> None:
    """PhysioNet 2019 charts no GCS, ACVPU, oxygen flag or SpO2 scale 2: at a hospital that
    does, the model's scores stay what training computed, while the screen's count them; a
    score that reads none of them is the state's own column."""
    assert set(UNSEEN_IN_TRAINING) == {"gcs_total", "acvpu", "on_supplemental_o2", "spo2_scale2"}
    assert "gcs_total" in screen_sql()["qsofa_score"]
    assert "gcs_total" not in score_feature_sql("qsofa_score")
    assert "acvpu" not in score_feature_sql("news2_score")
    assert score_feature_sql("sirs_count") == "sirs_count"
