"""length-of-stay (PhysioNet/CinC 2012): the remaining-stay target, its median baseline, layout
refused with a clear error, evaluation through the registry's ONNX champion on set B."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store import icu_stay
from schemas.model_spec import ModelSpec
from training import evaluate
from training.catalog import length_of_stay as los
from training.catalog import physionet2012 as p12

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
P12 = DATA / "physionet2012"
SET_A, SET_B = P12 / "setA_observations.parquet", P12 / "setB_observations.parquet"
BUNDLED = Path(__file__).resolve().parents[2] / "training" / "bundled" / "length-of-stay" / "1-gbt"
needs_data = pytest.mark.skipif(
    not SET_B.exists(), reason="../shared/data/physionet2012 is not here"
)


@needs_data
def test_remaining_stay_is_length_of_stay_minus_hours_clipped_and_unknown_lengths_left_out() -> (
    None
):
    s = p12.read_set(SET_A)
    ids = np.sort(s.outcomes.index.to_numpy())[:400]
    frame = los.labelled(p12.subset(s, ids), (24.0, 48.0))
    recorded = s.outcomes.loc[ids, "Length_of_stay"]
    assert set(frame["record_id"]) == set(recorded.index[recorded >= 0])  # −1: not recorded
    expected = (frame["record_id"].map(recorded) - frame["hours_since_admission"] / 24).clip(0)
    assert np.allclose(frame[los.TARGET], expected) and (frame[los.TARGET] >= 0).all()
    died = frame[frame["died"] == 1]
    assert len(died) and (died[los.TARGET] > 0).any()  # deaths kept, length as recorded


@needs_data
def test_the_baseline_is_set_as_median_remaining_stay_at_each_hour() -> None:
    spec = json.loads((BUNDLED / "spec.json").read_text())
    s = p12.read_set(SET_A)
    recorded = s.outcomes["Length_of_stay"]
    recorded = recorded[recorded >= 0].astype(float)
    for hours in (24, 48):
        expected = float(np.median((recorded - hours / 24).clip(lower=0)))
        assert spec["baselines"]["median_remaining_days"][f"{hours}h"] == expected


@needs_data
def test_an_outcomes_file_or_a_file_without_its_outcomes_is_refused_with_exit_status_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lonely = tmp_path / "lonely_observations.parquet"
    pd.read_parquet(SET_B).head(50).to_parquet(lonely)
    other = tmp_path / "columns.parquet"
    pd.DataFrame({"patient_id": ["p1"], "HR": [80.0], "SepsisLabel": [0]}).to_parquet(other)
    registry = ["--model-registry", str(tmp_path / "registry")]
    expected = {
        P12 / "setA_outcomes.parquet": "is an outcomes file",
        lonely: "lonely_outcomes.parquet is not beside it",
        other: "columns record_id, minute, parameter, value are missing",
    }
    for file, message in expected.items():
        with pytest.raises(SystemExit) as exit_:
            evaluate.main(["--model", "length-of-stay", "--file", str(file), *registry])
        assert exit_.value.code == 2
        assert message in capsys.readouterr().err


@needs_data
def test_evaluate_prints_mae_and_baseline_mae_at_48h_on_its_last_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    s = p12.read_set(SET_B)
    part = p12.subset(s, np.sort(s.outcomes.index.to_numpy())[-300:])
    part.recorded.to_parquet(tmp_path / "last300_observations.parquet")
    part.outcomes.reset_index().to_parquet(tmp_path / "last300_outcomes.parquet")
    registry = ["--model-registry", str(tmp_path / "registry"), "--bootstrap", "20"]
    file = tmp_path / "last300_observations.parquet"
    evaluate.main(["--model", "length-of-stay", "--file", str(file), *registry])
    lines = capsys.readouterr().out.strip().splitlines()
    assert re.fullmatch(r"MAE_days \d+\.\d{4} baseline_MAE_days \d+\.\d{4}", lines[-1])
    assert any(line.startswith("24 h: MAE_days") for line in lines[:-1])
    assert any("95 % intervals" in line for line in lines[:-1])


def test_the_bundled_spec_parses_as_a_regression_in_days_on_the_stay_features() -> None:
    raw = json.loads((BUNDLED / "spec.json").read_text())
    spec = ModelSpec.parse(raw)
    assert spec.task == "regression" and spec.threshold is None and spec.output.unit == "d"
    assert spec.output.name == "remaining_los_days" and spec.entity_key == "stay_token"
    assert spec.feature_names == list(icu_stay.FEATURES)
    assert raw["onnx_parity_max_abs_diff"] < 1e-3 and raw["gate"]["passed"]
    assert raw["training_data"]["file"] == "setA_observations.parquet"
    assert (BUNDLED / "model.onnx").stat().st_size < 2_000_000


@needs_data
def test_evaluation_defaults_to_set_b_and_the_onnx_model_gives_non_negative_days(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    read: list[Path] = []
    real = p12.read_set

    def spy(path: Path) -> p12.StaySet:
        read.append(path)
        return real(path)

    monkeypatch.setattr(p12, "read_set", spy)
    los.main(["evaluate", "--model-registry", str(tmp_path / "registry"), "--bootstrap", "5"])
    assert [f.name for f in read] == ["setB_observations.parquet"]
    out = capsys.readouterr().out.splitlines()
    assert out[-1].startswith("MAE_days ")
    obs = pd.read_parquet(SET_B)
    obs = obs[obs["record_id"].isin(np.sort(obs["record_id"].unique())[:100])]
    days = p12.OnnxModel(BUNDLED / "model.onnx").run(p12.matrix(icu_stay.stay_features(obs, [48])))
    assert np.all(np.isfinite(days)) and days.min() >= -0.5
