"""Honest evaluation: other hospital systems in the PhysioNet layout, patient-level bootstrap
intervals, and `make evaluate-model` reading only patients the model never saw."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from schemas.settings import Settings
from training import cohorts, evaluate, external, validation
from training.features import hourly_features
from training.splits import split_of

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SET_A = DATA / "physionet2019" / "setA.parquet"


def yaib_folder(tmp: Path) -> Path:
    """Two stays as YAIB writes them: 20 h without sepsis, 30 h with onset at hour 12."""
    rows, labels = [], []
    for stay, hours, first_positive in ((1, 20, None), (2, 30, 6)):
        for h in range(hours):
            rows.append(
                {"stay_id": stay, "time": timedelta(hours=h), "hr": 80.0 + h, "fio2": 40.0}
                | {c: np.nan for c in cohorts.SAME if c != "hr"}
            )
            positive = first_positive is not None and first_positive <= h <= first_positive + 12
            labels.append({"stay_id": stay, "time": timedelta(hours=h), "label": positive})
    tmp.mkdir()
    pd.DataFrame(rows).to_parquet(tmp / "dyn.parquet")
    pd.DataFrame(labels).to_parquet(tmp / "outc.parquet")
    sta = {"stay_id": [1, 2], "age": [70.0, 55.0], "sex": ["Female", "Male"]}
    pd.DataFrame(sta | {"height": [160.0, 180.0], "weight": [60.0, 80.0]}).to_parquet(
        tmp / "sta.parquet"
    )
    return tmp


def test_a_yaib_cohort_becomes_physionet_rows_with_the_challenges_units_and_label_horizon(
    tmp_path: Path,
) -> None:
    df = cohorts.yaib_to_physionet(yaib_folder(tmp_path / "eicu"), prefix="x:")
    set_a_columns = {
        "patient_id", "ICULOS", "HR", "O2Sat", "Temp", "FiO2", "Lactate", "WBC", "Platelets",
        "Creatinine", "Bilirubin_total", "Age", "Gender", "Unit1", "Unit2", "SepsisLabel",
    }  # fmt: skip
    assert set_a_columns <= set(df.columns)
    one, two = (df[df["patient_id"] == f"x:{s}"] for s in (1, 2))
    assert list(one["ICULOS"]) == list(range(1, 21))  # hours since admission, from 1
    assert one["FiO2"].eq(0.4).all() and one["Gender"].eq(0).all() and one["Age"].eq(70).all()
    # the first positive hour (ICULOS 7) is 6 h before onset; the stay ends 3 h after onset
    assert two["SepsisLabel"].tolist() == [0] * 6 + [1] * 10
    assert hourly_features(df)["unit"].eq("unknown").all()


def synthetic(patients: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(patients):
        n = 30
        septic = i % 5 == 0
        label = np.zeros(n, dtype="int8")
        if septic:
            label[20:] = 1
        risk = rng.uniform(0, 0.5, n) + 0.3 * label
        frames.append(pd.DataFrame({"patient_id": f"p{i:04d}", "label": label, "risk": risk}))
    return pd.concat(frames, ignore_index=True)


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_patients() -> None:
    small, large = synthetic(100, 1), synthetic(1600, 1)
    ci_small = validation.bootstrap_ci(small, 0.5, samples=100)
    ci_large = validation.bootstrap_ci(large, 0.5, samples=100)
    m = validation.metrics(large, 0.5)
    lo, hi = ci_large["auroc"]
    assert lo <= m["auroc"] <= hi
    lo_u, hi_u = ci_large["normalised_utility"]
    assert lo_u <= m["normalised_utility"] <= hi_u
    width = {k: ci_small[k][1] - ci_small[k][0] for k in ci_small}
    assert all(ci_large[k][1] - ci_large[k][0] < width[k] for k in width)
    assert validation.bootstrap_ci(large, 0.5, samples=100) == ci_large  # seeded


@pytest.mark.skipif(not SET_A.exists(), reason="../shared/data/physionet2019 is not here")
def test_evaluate_model_without_a_file_reads_only_set_as_held_out_test_patients(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from training.registry import bootstrap
    from udfs.registry import Registry

    settings = Settings.from_env({}, model_registry=tmp_path / "registry", phi_key=b"k")
    bootstrap(Registry(settings.model_registry), settings.model_name)
    seen: list[pd.DataFrame] = []
    real = evaluate.hourly_features
    monkeypatch.setattr(evaluate, "hourly_features", lambda df: seen.append(df) or real(df))
    evaluate.main(["--model-registry", str(settings.model_registry), "--bootstrap", "20"])
    [read] = seen
    assert set(read["patient_id"].map(split_of)) == {"test"}
    assert read["patient_id"].nunique() == 3077
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("AUROC 0.79") and "normalised_utility 0.3" in out[-1]
    assert out[-3].startswith("95 % intervals (patient bootstrap, 20 samples): AUROC [")
    assert out[-2].startswith("calibration slope 0.8")


def test_a_threshold_for_a_target_alert_rate_keeps_the_burden_at_or_below_it() -> None:
    frame = synthetic(400, 3)
    for target in (0.5, 2.0, 6.0):
        t = validation.threshold_for_alert_rate(frame, target)
        rate = validation.alert_burden(frame, t)["alert_episodes_per_patient_day"]
        assert rate <= target
    loose, strict = (validation.threshold_for_alert_rate(frame, r) for r in (6.0, 0.5))
    assert loose < strict


def test_sparse_charting_removes_only_the_named_measurements_at_about_their_share() -> None:
    n = 20_000
    df = pd.DataFrame(
        {"patient_id": "p", "ICULOS": range(1, n + 1), "FiO2": 0.4, "Resp": 18.0, "HR": 80.0}
    )
    sparse = cohorts.sparse_charting(df, {"FiO2": 0.25, "Resp": 0.4})
    assert abs(sparse["FiO2"].notna().mean() - 0.25) < 0.02
    assert abs(sparse["Resp"].notna().mean() - 0.4) < 0.02
    assert sparse["HR"].eq(80.0).all() and sparse["ICULOS"].equals(df["ICULOS"])
    assert df["FiO2"].notna().all()  # the input is not changed
    pd.testing.assert_frame_equal(sparse, cohorts.sparse_charting(df, {"FiO2": 0.25, "Resp": 0.4}))


def test_a_cohort_says_what_of_it_the_models_trained_on() -> None:
    from training.external import FEWER_SEPTIC, SPARSE, seen

    assert seen("set A test split") == "hospital seen"
    assert seen(SPARSE) == "charting unseen"
    assert seen(FEWER_SEPTIC) == "prevalence unseen"
    assert seen("eICU demo") == "unseen"


def physionet(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.rename(columns={"label": "SepsisLabel"})


def test_fewer_septic_keeps_every_other_patient_and_the_share_of_septic_ones_whole() -> None:
    df = physionet(synthetic(400, 5))
    fewer = cohorts.fewer_septic(df, keep=0.5)
    septic = df.groupby("patient_id")["SepsisLabel"].max()
    kept = fewer.groupby("patient_id")["SepsisLabel"].max()
    assert set(septic.index[septic == 0]) <= set(kept.index)
    assert kept.sum() == round(0.5 * septic.sum())
    pd.testing.assert_frame_equal(fewer, df[df["patient_id"].isin(set(kept.index))])
    pd.testing.assert_frame_equal(fewer, cohorts.fewer_septic(df, keep=0.5))  # seeded


def test_the_utility_optimum_is_the_candidate_with_the_best_challenge_utility() -> None:
    frame = synthetic(300, 6)
    qs = np.unique(np.quantile(frame["risk"], np.linspace(0.70, 0.995, 40)))
    by_the_challenge = max((validation.utility(frame, float(q)), float(q)) for q in qs)[1]
    assert validation.choose_threshold(frame) == by_the_challenge


def early_warning(patients: int, seed: int) -> pd.DataFrame:
    """30 h each; a septic patient's (every 5th) risk climbs from hour 8, labelled from hour 20:
    a lower threshold alarms earlier on them and more often on everyone else."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(patients):
        t, septic = np.arange(30), i % 5 == 0
        label = ((t >= 20) & septic).astype("int8")
        risk = rng.uniform(0, 0.5, len(t)) + (0.5 * np.clip((t - 8) / 20, 0, 1) if septic else 0)
        frames.append(pd.DataFrame({"patient_id": f"p{i:04d}", "label": label, "risk": risk}))
    return pd.concat(frames, ignore_index=True)


def test_a_threshold_for_transfer_gives_up_a_little_utility_for_more_at_fewer_septic() -> None:
    chosen_on = early_warning(1000, 7)
    optimum = validation.choose_threshold(chosen_on)
    transfer = validation.threshold_for_transfer(chosen_on)
    assert transfer > optimum
    elsewhere = early_warning(1000, 8)
    fewer = cohorts.fewer_septic(physionet(elsewhere)).rename(columns={"SepsisLabel": "label"})
    assert validation.utility(fewer, transfer) > validation.utility(fewer, optimum)
    assert validation.utility(elsewhere, transfer) > validation.utility(elsewhere, optimum) - 0.05


def test_a_fit_shared_by_variants_trains_once_per_distinct_split() -> None:
    trained: list[int] = []

    def fit(train: pd.DataFrame, val: pd.DataFrame) -> external.Scorer:
        trained.append(len(train))
        return lambda frame: np.full(len(frame), float(len(trained)))

    once = external.fitted_once(fit)
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"patient_id": np.arange(50) % 7, "hr": rng.normal(80, 10, 50)})
    val = train.head(20)
    first = once(train, val)
    again = once(train.copy(), val.copy())  # another variant's frames, equal by content
    assert again is first and trained == [50]
    masked = once(external.masked(train, ("hr",)), val)  # an ablation: other content
    assert masked is not first and trained == [50, 50]
    both = external.mean_of(once, once)(train, val)  # the ensemble of members trained already
    assert trained == [50, 50]
    np.testing.assert_allclose(both(val), first(val))


def test_a_cohort_row_reports_its_calibration_slope_only_with_ten_septic_patients() -> None:
    rng = np.random.default_rng(3)

    def cohort(septic: int) -> pd.DataFrame:
        pid = np.repeat([f"p{i:03d}" for i in range(60)], 24)
        label = np.zeros(len(pid), dtype=int)
        for i in range(septic):  # the last 6 hours of a septic patient labelled
            label[i * 24 + 18 : i * 24 + 24] = 1
        risk = np.clip(0.05 + 0.5 * label + rng.normal(0, 0.05, len(pid)), 0.001, 0.999)
        return pd.DataFrame({"patient_id": pid, "label": label, "risk": risk})

    row = external.evaluate(cohort(12), 0.3, 20)
    assert row["calibration_slope"] > 0 and len(row["calibration_slope_ci95"]) == 2
    assert "(" in external.slope(row) and external.slope(row).startswith(
        f"{row['calibration_slope']:.3f} ["
    )
    few = external.evaluate(cohort(5), 0.3, 20)
    assert few["calibration_slope"] is None and external.slope(few) == ""
