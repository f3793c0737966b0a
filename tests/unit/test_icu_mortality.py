"""icu-mortality (PhysioNet/CinC 2012): causal, cleaned stay features; layout refused with a clear
error; evaluation through the registry's ONNX champion on set B only."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_store import icu_stay
from schemas.model_spec import ModelSpec
from training import evaluate
from training.catalog import LayoutError, icu_mortality
from training.catalog import physionet2012 as p12

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
P12 = DATA / "physionet2012"
SET_A, SET_B = P12 / "setA_observations.parquet", P12 / "setB_observations.parquet"
SEPSIS_2019 = DATA / "physionet2019" / "setA.parquet"
BUNDLED = Path(__file__).resolve().parents[2] / "training" / "bundled" / "icu-mortality" / "1-gbt"
needs_data = pytest.mark.skipif(
    not SET_B.exists(), reason="../shared/data/physionet2012 is not here"
)


def rows(*items: tuple[int, int, str, float]) -> pd.DataFrame:
    df = pd.DataFrame(items, columns=["record_id", "minute", "parameter", "value"])
    return df.astype({"record_id": "int32", "minute": "int16", "value": "float32"})


def small_set(tmp: Path, stays: int = 300) -> Path:
    """The first `stays` stays of set B as `<tmp>/small_observations.parquet` + outcomes."""
    s = p12.read_set(SET_B)
    ids = np.sort(s.outcomes.index.to_numpy())[:stays]
    part = p12.subset(s, ids)
    part.recorded.to_parquet(tmp / "small_observations.parquet")
    part.outcomes.reset_index().to_parquet(tmp / "small_outcomes.parquet")
    return tmp / "small_observations.parquet"


@needs_data
def test_features_at_24h_use_only_observations_up_to_24h() -> None:
    obs = pd.read_parquet(SET_A)
    obs = obs[obs["record_id"].isin(np.sort(obs["record_id"].unique())[:200])]
    at24 = icu_stay.stay_features(obs, [24]).set_index("record_id")
    later = obs["minute"] > 24 * 60
    changed = obs.copy()
    changed.loc[later, "value"] = changed.loc[later, "value"] * 1.7  # the future, rewritten
    assert icu_stay.stay_features(changed, [24]).set_index("record_id").equals(at24)
    cut = icu_stay.stay_features(obs[~later], [24]).set_index("record_id")
    assert cut.equals(at24)
    at48 = icu_stay.stay_features(obs, [48]).set_index("record_id")
    assert not at48.drop(columns="hours_since_admission").equals(
        at24.drop(columns="hours_since_admission")
    )
    assert (at24["hours_since_admission"] == 24).all()


def test_implausible_values_and_missing_codes_are_dropped_and_unit_slips_repaired() -> None:
    obs = rows(
        (1, 0, "Age", 70), (1, 0, "Gender", 0), (1, 0, "Height", -1), (1, 0, "ICUType", 3),
        (1, 0, "Weight", -1),
        (1, 30, "HR", 0), (1, 60, "HR", 80), (1, 120, "HR", 400), (1, 180, "HR", 90),
        (1, 180, "HR", 100),  # a repeated time stamp: merged into the mean, 95
        (1, 60, "DiasABP", -1), (1, 60, "pH", 735), (1, 90, "Temp", 98.6), (1, 95, "Temp", -17.8),
    )  # fmt: skip
    f = icu_stay.stay_features(obs, [6]).iloc[0]
    assert f["heart_rate_bpm_min"] == 80 and f["heart_rate_bpm_max"] == 95
    assert f["heart_rate_bpm_last"] == 95 and f["heart_rate_bpm_count_per_h"] == pytest.approx(
        2 / 6
    )
    assert np.isnan(f["dbp_mmhg_min"]) and f["dbp_mmhg_count_per_h"] == 0
    assert f["ph_last"] == pytest.approx(7.35)
    assert f["temp_c_max"] == pytest.approx(37.0) and f["temp_c_min"] == pytest.approx(37.0)
    assert np.isnan(f["height_cm"]) and np.isnan(f["weight_kg"])
    assert f["female"] == 1 and f["age_years"] == 70 and f["icu_type_medical"] == 1


def test_slope_is_the_least_squares_fit_and_urine_sums_per_hour() -> None:
    obs = rows(
        (7, 0, "HR", 80), (7, 60, "HR", 92), (7, 120, "HR", 100),
        (7, 60, "Urine", 100), (7, 120, "Urine", 50), (7, 600, "Urine", 500),
    )  # fmt: skip
    f = icu_stay.stay_features(obs, [4]).iloc[0]
    assert f["heart_rate_bpm_slope_per_h"] == pytest.approx(10.0)
    assert f["heart_rate_bpm_first"] == 80 and f["heart_rate_bpm_mean"] == pytest.approx(272 / 3)
    assert f["urine_output_ml_sum"] == 150 and f["urine_output_ml_per_h"] == pytest.approx(37.5)
    assert np.isnan(f["gcs_total_slope_per_h"])


@needs_data
def test_a_sepsis_2019_file_or_an_outcomes_file_is_refused_with_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(LayoutError, match="outcomes file"):
        p12.read_set(P12 / "setB_outcomes.parquet")
    lonely = tmp_path / "lonely_observations.parquet"
    pd.read_parquet(SET_B).head(100).to_parquet(lonely)
    with pytest.raises(LayoutError, match=r"lonely_outcomes\.parquet is not beside it"):
        p12.read_set(lonely)
    registry = ["--model-registry", str(tmp_path / "registry")]
    bad = [P12 / "setB_outcomes.parquet"]
    if SEPSIS_2019.exists():
        bad.append(SEPSIS_2019)
    for file in bad:
        with pytest.raises(SystemExit) as exit_:
            evaluate.main(["--model", "icu-mortality", "--file", str(file), *registry])
        assert exit_.value.code == 2
        err = capsys.readouterr().err
        assert "outcomes file" in err or "PhysioNet 2019" in err


@needs_data
def test_evaluate_prints_auroc_auprc_and_event1_at_48h_on_its_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    file = small_set(tmp_path)
    registry = ["--model-registry", str(tmp_path / "registry"), "--bootstrap", "20"]
    evaluate.main(["--model", "icu-mortality", "--file", str(file), *registry])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"AUROC \d\.\d{4} AUPRC \d\.\d{4} event1 \d\.\d{4}", lines[-1])
    assert any(line.startswith("24 h: AUROC") for line in lines[:-1])
    assert any("95 % intervals" in line for line in lines[:-1])
    assert "300 stays" in lines[0] and "SAPS-I AUROC" in lines[0]


def test_the_bundled_spec_parses_and_lists_the_feature_definition_in_onnx_order() -> None:
    raw = json.loads((BUNDLED / "spec.json").read_text())
    spec = ModelSpec.parse(raw)
    assert spec.name == "icu-mortality" and spec.task == "binary" and spec.entity == "stay"
    assert spec.feature_names == list(icu_stay.FEATURES)
    assert [f.unit for f in spec.features] == [icu_stay.UNITS[f] for f in icu_stay.FEATURES]
    assert spec.trigger.kind == "every_state" and raw["report_at_hours"] == [24.0, 48.0]
    assert raw["input"]["shape"] == ["batch", len(icu_stay.FEATURES)]
    assert raw["onnx_parity_max_abs_diff"] < 1e-5 and raw["gate"]["passed"]
    assert (BUNDLED / "model.onnx").stat().st_size < 2_000_000


def reference_features(obs: pd.DataFrame, hours: float) -> pd.DataFrame:
    """The stay features recomputed one stay and one parameter at a time, in plain pandas."""
    series = icu_stay.clean_series(obs)
    series = series[series["minute"] <= hours * 60]
    static = icu_stay.descriptors(obs)
    out = []
    for stay in sorted(obs["record_id"].unique()):
        row: dict[str, float] = {"record_id": stay, "hours_since_admission": hours}
        row |= static.loc[stay].to_dict() if stay in static.index else {}
        mine = series[series["record_id"] == stay]
        for p in icu_stay.PARAMETERS:
            s = mine[mine["parameter"] == p.name].sort_values("minute")
            t, v = s["minute"].to_numpy() / 60.0, s["value"].to_numpy()
            n = len(v)
            value = {
                "min": v.min() if n else np.nan,
                "max": v.max() if n else np.nan,
                "mean": v.mean() if n else np.nan,
                "first": v[0] if n else np.nan,
                "last": v[-1] if n else np.nan,
                "count": n / hours,
                "sum": v.sum(),
                "per_h": v.sum() / hours,
                "slope": _slope(t, v) if n >= 2 and np.ptp(t) > 0 else np.nan,
                "since_last": hours - t.max() if n else np.nan,
                "first_at": t.min() if n else np.nan,
            }
            for agg in p.aggregates:
                row[icu_stay.feature_name(p, agg)] = value[agg]
        out.append(row)
    return pd.DataFrame(out)[["record_id", *icu_stay.FEATURES]]


def _slope(t: np.ndarray[Any, Any], v: np.ndarray[Any, Any]) -> float:
    """Least-squares slope in the centred form: exactly 0 for a constant series (np.polyfit's
    LAPACK solve leaves ±1e-17 there on some machines, which a tree split at 0 then tells
    apart)."""
    dt = t - t.mean()
    return float((dt * (v - v.mean())).sum() / (dt * dt).sum())


@needs_data
def test_onnx_scores_match_a_pure_pandas_recompute_of_the_features() -> None:
    obs = pd.read_parquet(SET_B)
    obs = obs[obs["record_id"].isin(np.sort(obs["record_id"].unique())[:40])]
    fast = icu_stay.stay_features(obs, [48])
    slow = reference_features(obs, 48.0)
    pd.testing.assert_frame_equal(fast, slow, check_dtype=False, rtol=1e-6, atol=1e-6)
    model = p12.OnnxModel(BUNDLED / "model.onnx")
    a, b = model.run(p12.matrix(fast)), model.run(p12.matrix(slow))
    assert np.max(np.abs(a - b)) < 1e-5 and np.all((a >= 0) & (a <= 1))


@needs_data
def test_no_training_stay_of_set_a_appears_in_the_evaluation_defaults(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[p12.StaySet] = []
    real = p12.read_set

    def spy(path: Path) -> p12.StaySet:
        read.append(real(path))
        return read[-1]

    monkeypatch.setattr(p12, "read_set", spy)
    registry = ["--model-registry", str(tmp_path / "registry"), "--bootstrap", "5"]
    icu_mortality.main(["evaluate", *registry])
    assert [s.file.name for s in read] == ["setB_observations.parquet"]
    trained_on = pd.read_parquet(P12 / "setA_outcomes.parquet")["record_id"]
    assert not set(read[0].observations["record_id"]) & set(trained_on)
    spec = json.loads((BUNDLED / "spec.json").read_text())
    assert spec["training_data"]["file"] == "setA_observations.parquet"
    assert re.fullmatch(r"AUROC \S+ AUPRC \S+ event1 \S+", capsys.readouterr().out.splitlines()[-1])


@needs_data
def test_a_set_is_read_as_the_stream_receives_it_so_training_and_serving_features_agree() -> None:
    """Training's features of a stay equal those of the records the replay publishes for it,
    as the topics carry them (a FLOAT field at float32): magnesium in mmol/L, not the file's
    mg/dL; urine charted twice in a minute summed; a duplicate the feed refuses left out."""
    from jobs.feeds import physionet2012 as replay
    from schemas import phi
    from tests.stay_records import as_observations

    s = p12.read_set(SET_B)
    ids = np.sort(s.outcomes.index.to_numpy())[:300]
    part = p12.subset(s, ids)
    hours = (24.0, 48.0)
    trained = p12.features(part, hours).set_index(["record_id", "hours_since_admission"])
    anchors = replay.anchors(ids, replay.ReplayPlan(stays=0))
    m = replay.map_stays(part.recorded, anchors, key=b"k", source="t")
    stay_of = {phi.token(b"k", "t", str(int(r))): int(r) for r in ids}

    def stay_and_minute(rec: dict[str, Any]) -> tuple[int, float]:
        r = stay_of[rec["patient_token"]]
        return r, (rec["event_time"] - anchors[r]).total_seconds() / 60.0

    served = as_observations([*m.vitals, *m.labs], stay_and_minute)
    recorded = part.recorded
    descriptors = recorded[
        (recorded["minute"] == 0) & recorded["parameter"].isin(icu_stay.DESCRIPTORS)
    ]
    stream = icu_stay.stay_features(pd.concat([descriptors, served], ignore_index=True), hours)
    stream = stream.astype({"record_id": trained.index.levels[0].dtype})
    stream = stream.set_index(["record_id", "hours_since_admission"]).reindex(trained.index)
    pd.testing.assert_frame_equal(trained, stream, check_dtype=False, rtol=1e-5, atol=1e-6)
    mg = trained["magnesium_mmol_l_mean"].dropna()
    assert 0.6 < mg.median() < 1.1  # mmol/L (the file's median, 2.0, is mg/dL)
