"""Training: causal features, a reproducible run that exports ONNX matching torch, the spec and
report, and the subgroup gate."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_store.definitions import FEATURES, STREAM_FEATURES
from jobs.feeds.replay import SAMPLE
from schemas.settings import Settings
from training import gbt, validation
from training.features import hourly_features
from training.splits import split_of
from training.train import MLP_HIDDEN, build, recipe
from udfs.registry import GateFailed, Registry


def test_features_at_an_hour_do_not_change_when_later_hours_are_removed() -> None:
    df = pd.read_parquet(SAMPLE)
    full = hourly_features(df).set_index(["patient_id", "iculos_h"])
    cut = df[df["ICULOS"] <= df.groupby("patient_id")["ICULOS"].transform("median")]
    early = hourly_features(cut).set_index(["patient_id", "iculos_h"])
    pd.testing.assert_frame_equal(
        early[list(FEATURES)], full.loc[early.index, list(FEATURES)], check_exact=False
    )


def test_values_are_carried_forward_only_within_their_validity_and_rejected_records_drop() -> None:
    rows = pd.DataFrame(
        {
            "patient_id": "p",
            "ICULOS": [1, 2, 3, 4, 5],
            "HR": [90.0, np.nan, np.nan, np.nan, 400.0],  # 400 bpm is outside the schema range
            "O2Sat": [97.0, np.nan, np.nan, np.nan, 95.0],
            "Lactate": [np.nan, 3.0, np.nan, np.nan, np.nan],
            "Age": 70.0,
            "Gender": 1,
            "Unit1": 1.0,
            "Unit2": 0.0,
            "SepsisLabel": 0,
        }
    )
    f = hourly_features(rows)
    # HR is valid for 2 h (udfs.sepsis.VALIDITY_H); the record with HR 400 is dead-lettered whole.
    hr = f["heart_rate_bpm"].to_numpy()
    assert hr[:3].tolist() == [90.0, 90.0, 90.0] and np.isnan(hr[3:]).all()
    assert np.isnan(f["spo2_pct"].iloc[4])
    assert f["heart_rate_bpm_max_6h"].iloc[4] == 90.0
    assert f["lactate_mmol_l_age_h"].tolist() == [24.0, 0.0, 1.0, 2.0, 3.0]
    assert f["hours_since_first_record"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert set(STREAM_FEATURES) <= set(f.columns)


def test_patients_are_split_by_a_stable_hash_of_their_id() -> None:
    ids = [f"p{i:06d}" for i in range(5000)]
    splits = pd.Series([split_of(i) for i in ids]).value_counts(normalize=True)
    assert abs(splits["train"] - 0.70) < 0.03 and abs(splits["test"] - 0.15) < 0.03
    assert [split_of(i) for i in ids[:50]] == [split_of(i) for i in ids[:50]]


def test_the_gate_blocks_a_subgroup_far_behind_and_ignores_small_ones() -> None:
    groups = pd.DataFrame(
        [
            ("unit", "MICU", 800, 90, 0.68),
            ("unit", "SICU", 900, 40, 0.80),
            ("age", "<50", 30, 5, 0.40),  # too few septic patients to judge
        ],
        columns=["kind", "group", "patients", "septic_patients", "auroc"],
    )
    g = validation.gate(0.75, groups)
    assert not g.passed and len(g.reasons) == 1 and "MICU" in g.reasons[0]
    assert validation.gate(0.72, groups).passed


SMALL_GRID = (gbt.Params(0.1, 40, 7, 100), gbt.Params(0.1, 80, 15, 100))  # quick candidates


def small_build(tmp_path_factory: pytest.TempPathFactory, **how: Any) -> Path:
    """A training run on set A's first 2,500 patients (skipped without set A), `how` being
    build's family and its settings."""
    setA = Settings.from_env().physionet_setA
    if not setA.exists():
        pytest.skip("needs ../shared/data/physionet2019/setA.parquet")
    out = tmp_path_factory.mktemp("model") / "built"
    return build(setA, out, seed=1, max_patients=2500, **how)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_build(tmp_path_factory, family="mlp", epochs=2)


def test_a_small_training_run_exports_onnx_that_matches_torch_with_a_full_spec(
    built: Path,
) -> None:
    spec = json.loads((built / "spec.json").read_text())
    assert spec["onnx_parity_max_abs_diff"] < 1e-5
    assert spec["opset"] == 18 and [f["name"] for f in spec["features"]] == list(FEATURES)
    assert all(f["unit"] for f in spec["features"])
    assert len(spec["training_data"]["sha256"]) == 64 and spec["training_data"]["patients"] == 2500
    m = spec["metrics"]
    assert 0.5 < m["auroc"] <= 1 and 0 < m["threshold"] < 1
    assert {"normalised_utility", "auprc", "brier", "ece", "patients_alerted_pct"} <= set(m)
    assert {r["kind"] for r in spec["subgroups"]} == {"age", "sex", "unit"}
    report = (built / "report.md").read_text()
    for section in ("## Test set", "## Subgroups", "## Baselines", "Gate", "roc.png"):
        assert section in report
    assert (built / "roc.png").exists() and (built / "calibration.png").exists()


def test_registration_follows_the_gate(built: Path, tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    spec = json.loads((built / "spec.json").read_text())
    if spec["gate"]["passed"]:
        assert reg.register(built).version == "1"
    else:
        with pytest.raises(GateFailed):
            reg.register(built)


def test_evaluate_prints_auroc_and_utility_last_for_a_folder_of_challenge_psv_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import evaluate
    from training.registry import bootstrap

    df = pd.read_parquet(SAMPLE)
    psv = tmp_path / "psv"
    psv.mkdir()
    for pid, rows in df.groupby("patient_id"):
        rows.drop(columns=["patient_id", "hour"]).to_csv(psv / f"{pid}.psv", sep="|", index=False)
    monkeypatch.setenv("WARDFLOW_MODEL_REGISTRY", str(tmp_path / "registry"))
    bootstrap(Registry(tmp_path / "registry"), "sepsis-risk")
    evaluate.main(["--file", str(psv)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.match(r"calibration slope -?\d+\.\d{3} \[.*\] \(1 ideal\), intercept", lines[-2])
    assert "female" in lines[-2] and "largest age/sex gap below overall" in lines[-2]
    last = lines[-1].split()
    assert last[0] == "AUROC" and 0.5 < float(last[1]) <= 1
    assert last[2] == "normalised_utility" and -2 < float(last[3]) <= 1


def test_evaluate_refuses_a_file_of_another_layout_with_a_clear_error_and_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import evaluate

    observations_2012 = tmp_path / "setX_observations.parquet"
    one_row = {"record_id": [1], "minute": [0], "parameter": ["HR"], "value": [80.0]}
    pd.DataFrame(one_row).to_parquet(observations_2012)
    labelled_2 = tmp_path / "labels.parquet"
    pd.read_parquet(SAMPLE).assign(SepsisLabel=2).to_parquet(labelled_2)
    text_hr = tmp_path / "text_hr.parquet"
    pd.read_parquet(SAMPLE).assign(HR="high").to_parquet(text_hr)
    not_parquet = tmp_path / "notes.parquet"
    not_parquet.write_text("HR|O2Sat\n80|97\n")
    no_psv = tmp_path / "empty"
    no_psv.mkdir()
    cases = {
        observations_2012: "lacks patient_id, ICULOS, SepsisLabel, Age, Gender (this looks like "
        "PhysioNet 2012 observations: MODEL=icu-mortality)",
        labelled_2: "SepsisLabel must be 0 or 1",
        text_hr: "column HR is not numeric",
        not_parquet: "not a parquet file or a .psv",
        no_psv: "holds .psv files; none",
        tmp_path / "absent.parquet": "no such file or folder",
    }
    for file, says in cases.items():
        with pytest.raises(SystemExit) as exit_:
            evaluate.main(["--file", str(file), "--model-registry", str(tmp_path / "reg")])
        assert exit_.value.code == 2
        assert says in capsys.readouterr().err


def test_a_psv_without_the_icu_type_columns_is_read_with_the_unit_unknown(tmp_path: Path) -> None:
    from training import evaluate

    rows = pd.read_parquet(SAMPLE)
    one = rows[rows["patient_id"] == rows["patient_id"].iloc[0]]
    psv = tmp_path / "p000001.psv"
    one.drop(columns=["patient_id", "hour", "Unit1", "Unit2"]).to_csv(psv, sep="|", index=False)
    read = evaluate.read_physionet(psv)
    assert (read["patient_id"] == "p000001").all() and len(read) == len(one)
    assert set(hourly_features(read)["unit"]) == {"unknown"}


@pytest.fixture(scope="module")
def built_trees(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return small_build(tmp_path_factory, epochs=0, family="gbt", grid=SMALL_GRID)


def test_a_tree_model_exports_one_risk_output_equal_to_scikit_learns_that_the_job_scores(
    built_trees: Path,
) -> None:
    import onnxruntime as ort

    from udfs.registry import Version
    from udfs.scoring import Model

    spec = json.loads((built_trees / "spec.json").read_text())
    assert spec["family"] == "gbt" and spec["onnx_parity_max_abs_diff"] < 1e-5
    assert spec["architecture"].startswith("gradient-boosted trees")
    assert set(spec["params"]) == {"learning_rate", "iterations", "leaves", "min_leaf_rows", "l2"}
    candidates = spec["model_selection"]["candidates"]
    assert list(candidates) == [p.describe() for p in SMALL_GRID]
    assert candidates[spec["architecture"]] == max(candidates.values())  # the best one
    session = ort.InferenceSession(str(built_trees / "model.onnx"))
    assert [o.name for o in session.get_outputs()] == ["risk"]
    rows = hourly_features(pd.read_parquet(SAMPLE))[list(FEATURES)].to_numpy(dtype=np.float32)
    model = Model.load(Version("sepsis-risk", "1", built_trees, spec))
    risk = model.risk(rows)
    assert risk.shape == (len(rows),) and ((risk > 0) & (risk < 1)).all()
    assert np.isnan(rows).any()  # missing values are scored, not refused


def test_an_unknown_model_family_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="family 'forest'"):
        build(SAMPLE, tmp_path / "x", epochs=1, seed=1, family="forest")


def test_a_champions_recipe_is_its_family_with_its_parameters_and_a_bad_spec_is_refused() -> None:
    assert recipe(None) == recipe({"family": "gbt"})  # no champion: trees, the whole grid
    assert recipe(None).family == "gbt" and recipe(None).grid == gbt.GRID
    older = recipe({"architecture": "MLP, hidden layers [64, 32]"})  # a spec from before families
    assert older.family == "mlp" and older.hidden == MLP_HIDDEN
    wide = recipe({"family": "mlp", "params": {"hidden": [128, 64], "epochs": 25}})
    assert wide.hidden == (128, 64)
    chosen = gbt.Params(0.03, 600, 15, 200)
    trees = recipe({"family": "gbt", "params": dataclasses.asdict(chosen)})
    assert trees.family == "gbt" and trees.grid == (chosen,)
    bad = {k: v for k, v in dataclasses.asdict(chosen).items() if k != "leaves"} | {"depth": 3}
    with pytest.raises(ValueError, match=r"unknown \['depth'\], missing \['leaves'\]"):
        recipe({"family": "gbt", "params": bad})
    with pytest.raises(ValueError, match="family 'forest'"):
        recipe({"family": "forest"})
