"""The 30-day readmission model: facts known at discharge, a split by patient, the exclusion of
encounters that cannot be readmitted, the layout check, evaluation through the dispatcher, and
the bundled version (spec and ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from feature_store import encounter_facts as facts
from jobs.feeds.replay import SAMPLE
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from training import evaluate
from training.catalog import readmission

DATA = Settings.from_env().diabetes130_file
BUNDLED = readmission.BUNDLED_DIR


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    if not DATA.exists():
        pytest.skip(f"needs {DATA}")
    return pd.read_parquet(DATA)


@pytest.fixture(scope="module")
def few(data: pd.DataFrame) -> pd.DataFrame:
    """Every encounter of about 4,000 patients (a patient's history kept whole)."""
    patients = data["patient_nbr"].drop_duplicates().sample(4000, random_state=7)
    return data[data["patient_nbr"].isin(patients)]


def test_patients_are_split_whole_into_train_validation_and_test(data: pd.DataFrame) -> None:
    c = readmission.cohort(data)
    per_patient = c.split.groupby(c.patient).nunique()
    assert per_patient.max() == 1
    share = c.split.groupby(c.patient).first().value_counts(normalize=True)
    assert abs(share["train"] - 0.70) < 0.02 and abs(share["test"] - 0.15) < 0.02
    assert readmission.split_of("12345") == readmission.split_of("12345")


def test_encounters_ending_in_death_or_hospice_are_neither_trained_on_nor_evaluated(
    data: pd.DataFrame,
) -> None:
    c = readmission.cohort(data)
    disposition = pd.to_numeric(c.records["discharge_disposition_id"])
    assert not disposition.isin([11, 13, 14, 19, 20, 21]).any()
    expired = pd.to_numeric(data["discharge_disposition_id"]).isin([11, 13, 14, 19, 20, 21])
    assert len(c.y) == len(data) - int(expired.sum()) and expired.sum() > 1000
    spec = json.loads((BUNDLED / "spec.json").read_text())
    assert spec["training_data"]["excluded_expired_or_hospice"] == int(expired.sum())


def test_features_read_nothing_known_only_after_the_discharge(few: pd.DataFrame) -> None:
    assert facts.LABEL_COLUMN not in facts.REQUIRED and "readmitted" not in facts.FEATURES
    base = facts.encounter_features(few)
    relabelled = few.assign(readmitted=few["readmitted"].sample(frac=1, random_state=1).values)
    pd.testing.assert_frame_equal(base, facts.encounter_features(relabelled))
    assert_frame = facts.encounter_features(few.drop(columns=["readmitted"]))
    pd.testing.assert_frame_equal(base, assert_frame)
    # A patient's later encounters do not change the features of an earlier one.
    order = pd.to_numeric(few["encounter_id"])
    last = order.groupby(few["patient_nbr"]).transform("max")
    earlier = few[order < last]
    cut = facts.encounter_features(earlier)
    pd.testing.assert_frame_equal(cut, base.loc[earlier.index])
    assert (base["prior_encounters_seen"] > 0).any()


def test_known_icd9_codes_fall_in_the_strack_groups() -> None:
    codes = {
        "428": "circulatory",
        "414.01": "circulatory",
        "785": "circulatory",
        "486": "respiratory",
        "786": "respiratory",
        "577": "digestive",
        "250.83": "diabetes",
        "250.1": "diabetes",
        "820": "injury",
        "996": "injury",
        "715": "musculoskeletal",
        "599": "genitourinary",
        "788": "genitourinary",
        "174": "neoplasms",
        "8": "other",
        "276": "other",
        "V57": "other",
        "E878": "other",
        "?": "other",
    }
    got = facts.diagnosis_group(pd.Series(list(codes)))
    assert dict(zip(codes, got, strict=True)) == codes
    como = facts.comorbidities(
        pd.DataFrame(
            {"diag_1": ["428", "250.43"], "diag_2": ["585", "V45"], "diag_3": ["?", "197"]}
        )
    )
    assert [como.at[0, "heart_failure"], como.at[0, "renal"]] == [1.0, 1.0]
    assert [como.at[1, "diabetes_complicated"], como.at[1, "metastatic"]] == [1.0, 1.0]
    assert facts.charlson_index(como).tolist() == [3.0, 8.0]


def test_a_file_of_another_layout_is_refused_clearly_with_exit_2(
    few: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    unlabelled = tmp_path / "unlabelled.parquet"
    few.drop(columns=["readmitted"]).to_parquet(unlabelled)
    for path, says in ((SAMPLE, "lacks encounter_id, patient_nbr"), (unlabelled, "readmitted")):
        with pytest.raises(SystemExit) as e:
            evaluate.main(["--model", readmission.NAME, "--file", str(path)])
        assert e.value.code == 2
        err = capsys.readouterr().err
        assert "Diabetes 130-US hospitals encounter layout" in err and says in err


def test_evaluate_through_the_dispatcher_prints_auroc_and_auprc_last(
    few: pd.DataFrame, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    small = tmp_path / "small.parquet"
    few.to_parquet(small)
    registry = tmp_path / "registry"
    argv = ["--model", readmission.NAME, "--file", str(small), "--bootstrap", "20"]
    evaluate.main([*argv, "--model-registry", str(registry)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].startswith("AUROC ") and " AUPRC " in lines[-1]
    _, auroc, _, auprc = lines[-1].split()
    assert len(auroc.split(".")[1]) == 4 and 0.55 < float(auroc) < 0.85 and 0 < float(auprc) < 1
    assert "95 % intervals (patient bootstrap, 20 samples)" in lines[-2]
    assert (registry / readmission.NAME / "roles.json").exists()


def test_the_bundled_version_has_a_spec_the_scoring_path_can_serve() -> None:
    def strict(constant: str) -> None:
        raise ValueError(f"spec.json holds {constant}: not JSON")

    raw = json.loads((BUNDLED / "spec.json").read_text(), parse_constant=strict)
    spec = ModelSpec.parse(raw)
    assert spec.name == readmission.NAME and spec.task == "binary"
    assert spec.entity == "encounter" and spec.entity_key == "encounter_token"
    assert spec.feature_names == list(facts.FEATURES) and all(f.unit for f in spec.features)
    assert spec.trigger.kind == "discharge" and spec.output.name == "readmission_risk"
    assert spec.feature_service == "readmission_30d_v1" and 0 < (spec.threshold or 0) < 1
    assert raw["gate"]["passed"] and raw["split"]["by"] == "patient_nbr"
    assert {"auroc", "auprc", "ci95"} <= set(raw["metrics"]) and raw["validation_metrics"]
    assert {r["kind"] for r in raw["subgroups"]} == {"age", "sex", "race"}
    assert raw["onnx_parity_max_abs_diff"] < 1e-5
    session = ort.InferenceSession(str(BUNDLED / "model.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "features" and inp.shape[-1] == len(facts.FEATURES)
    assert (BUNDLED / "model.onnx").stat().st_size < 2 * 1024 * 1024


def test_onnx_export_matches_sklearn_with_missing_values(few: pd.DataFrame) -> None:
    c = readmission.cohort(few)
    x = c.x.to_numpy(dtype=np.float32)
    x[::7, 0] = np.nan  # unknown age
    x[::5, facts.FEATURES.index("prior_inpatient_visits_12m")] = np.nan
    model = readmission.gbt((0.1, 40, 15, 20, 1.0)).fit(x, c.y)
    session = ort.InferenceSession(
        readmission.to_onnx(model, x.shape[1]), providers=["CPUExecutionProvider"]
    )
    got = readmission.onnx_scores(session, x)
    assert np.max(np.abs(got - model.predict_proba(x)[:, 1])) < 1e-5
