"""The model monitor's statistics (udfs/monitor.py, udfs/model_monitor.py), its spec section and
the training references bundled with the sepsis model, on real patients: held-out set A
patients against the training reference, and eICU demo stays (another hospital system)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.metrics import roc_auc_score

from schemas.model_spec import ModelSpec, SpecError
from schemas.settings import Settings
from training.cohorts import yaib_to_physionet
from training.features import hourly_features
from training.reference import score
from training.registry import BUNDLED
from training.splits import split_of
from udfs import model_monitor, monitor

SEPSIS = sorted((BUNDLED / "sepsis-risk").iterdir())


def _reference(version: Path) -> dict[str, Any]:
    ref: dict[str, Any] = json.loads((version / "reference.json").read_text())
    return ref


@pytest.fixture(scope="module")
def cohorts(settings: Settings) -> dict[str, pd.DataFrame]:
    """Features of 60 held-out set A patients, 400 training ones and 120 eICU demo stays."""
    eicu = settings.data_dir / "yaib_demo_sepsis" / "eicu_demo"
    if not settings.physionet_setA.exists() or not (eicu / "dyn.parquet").exists():
        pytest.skip("set A or the eICU demo cohort is not in the data folder")
    raw = pd.read_parquet(settings.physionet_setA)
    test = np.sort([p for p in raw["patient_id"].unique() if split_of(p) == "test"])[:60]
    e = yaib_to_physionet(eicu, prefix="eicu:")
    stays = np.sort(e["patient_id"].unique())[:120]
    train = np.sort([p for p in raw["patient_id"].unique() if split_of(p) == "train"])[:400]
    return {
        "set A train": hourly_features(raw[raw["patient_id"].isin(set(train))]),
        "set A": hourly_features(raw[raw["patient_id"].isin(set(test))]),
        "eICU": hourly_features(e[e["patient_id"].isin(set(stays))]),
    }


def _counts(ref: dict[str, Any], values: pd.Series[float]) -> dict[int, float]:
    cells = monitor.Grid.of(ref["grid"]).cells_of(values.to_numpy(np.float32).astype("float64"))
    return {int(c): float(n) for c, n in zip(*np.unique(cells, return_counts=True), strict=True)}


def test_each_bundled_sepsis_version_carries_its_training_reference() -> None:
    for version in SEPSIS:
        ref, spec = _reference(version), json.loads((version / "spec.json").read_text())
        assert set(ref["features"]) == set(monitor.FEATURE_GRIDS)
        for f in ref["features"].values():
            assert sum(f["bin_proportions"]) == pytest.approx(1, abs=1e-4)
            assert sum(f["cells"].values()) == pytest.approx(1, abs=1e-4)
            assert 0 <= f["missing_share"] < 1
        # the score reference agrees with the validation the spec reports
        val = spec["validation_metrics"]
        assert ref["score"]["alert_rate"] * 100 == pytest.approx(
            val["hours_above_threshold_pct"], abs=0.01
        )
        assert ref["performance"]["auroc"] == pytest.approx(val["auroc"], abs=0.003)
        assert ModelSpec.parse(spec).monitor.label is not None


def test_a_feature_s_grid_cell_is_the_same_in_python_and_in_the_generated_sql() -> None:
    g = monitor.FEATURE_GRIDS["temp_c"]
    assert list(g.cells_of([36.95, 29.0, 98.6, float("nan")])) == [69, 0, 149, -1]
    sql = g.cell_sql("temp_c")
    assert "FLOOR" in sql and "-1" in sql and str(g.cells - 1) in sql
    p = monitor.PROBABILITY_GRID
    assert p.cells_of([0.5])[0] == 100 and p.cells_of([1e-9])[0] == 0


def test_held_out_set_a_patients_match_the_training_reference_and_eicu_stays_do_not(
    cohorts: dict[str, pd.DataFrame],
) -> None:
    ref = _reference(SEPSIS[0])["features"]
    psi: dict[str, dict[str, float]] = {}
    for name, frame in cohorts.items():
        for f in ("fio2_fraction", "temp_c", "heart_rate_bpm"):
            e, a = monitor.binned(ref[f], _counts(ref[f], frame[f]))
            psi.setdefault(name, {})[f] = monitor.psi(e, a)
    print(psi)
    assert max(psi["set A"].values()) < 0.1
    assert psi["eICU"]["fio2_fraction"] > 0.25 and psi["eICU"]["temp_c"] > 0.1


def test_the_ks_statistic_on_the_grid_matches_scipy_s_on_the_values(
    cohorts: dict[str, pd.DataFrame],
) -> None:
    ref = _reference(SEPSIS[0])["features"]["heart_rate_bpm"]
    values = cohorts["eICU"]["heart_rate_bpm"].dropna()
    d, n = monitor.ks(ref, _counts(ref, values))
    # the exact two-sample statistic against training patients' values (the reference's
    # sample): the grid's differs by at most a cell's mass and the subsample's error
    exact = stats.ks_2samp(values, cohorts["set A train"]["heart_rate_bpm"].dropna()).statistic
    assert n == len(values) and d == pytest.approx(exact, abs=0.03)
    # the critical value: exact one-sample distribution, ≈ 1.628 / √n for large n at α = 0.01
    assert monitor.ks_critical(400, 0.01) == pytest.approx(1.628 / 20, rel=0.02)


def test_the_psi_chance_bound_shrinks_with_the_window_and_covers_a_null_sample() -> None:
    rng = np.random.default_rng(7)
    expected = np.full(10, 0.1)
    null = [
        monitor.psi(expected, np.bincount(rng.integers(0, 10, 200), minlength=10))
        for _ in range(500)
    ]
    bound = monitor.psi_critical(10, 200, 1e6, 0.01)
    assert np.mean(np.array(null) > bound) < 0.03
    assert monitor.psi_critical(10, 2000, 1e6, 0.01) < bound / 5


def test_binned_auroc_and_calibration_agree_with_the_exact_ones_on_real_scores(
    cohorts: dict[str, pd.DataFrame],
) -> None:
    frame = pd.concat([cohorts["set A"], cohorts["eICU"]], ignore_index=True)
    risk = score(SEPSIS[0], frame)
    y = frame["label"].to_numpy().astype(bool)
    g = monitor.PROBABILITY_GRID
    cells = g.cells_of(risk)
    pos = np.bincount(cells[y], minlength=g.cells)
    neg = np.bincount(cells[~y], minlength=g.cells)
    assert monitor.auroc(pos, neg) == pytest.approx(roc_auc_score(y, risk), abs=0.005)
    oe, ece = monitor.calibration(
        pos, pos + neg, np.bincount(cells, weights=risk, minlength=g.cells)
    )
    assert oe == pytest.approx(y.sum() / risk.sum())
    assert 0 <= ece < 1


def test_a_window_judgement_names_the_breached_feature_and_holds_its_evidence(
    cohorts: dict[str, pd.DataFrame],
) -> None:
    spec = json.loads((SEPSIS[0] / "spec.json").read_text())
    served = model_monitor.Served(
        "sepsis-risk", "1", "champion", ModelSpec.parse(spec), spec, _reference(SEPSIS[0])
    )
    frame = cohorts["eICU"]
    items = [f"*|-2|{frame['patient_id'].nunique()}"]
    for f, ref in served.reference["features"].items():  # type: ignore[index]
        items += [f"{f}|{c}|{n}" for c, n in _counts(ref, frame[f]).items()]
        items.append(f"{f}|-2|{frame.loc[frame[f].notna(), 'patient_id'].nunique()}")
    events = model_monitor.input_drift([served], ";".join(items))
    breached = {(e["metric"], e["feature"]) for e in events if e["breach"]}
    assert ("ks", "fio2_fraction") in breached
    fio2 = next(e for e in events if (e["metric"], e["feature"]) == ("ks", "fio2_fraction"))
    evidence = json.loads(fio2["evidence_json"])
    # one patient's hourly FiO2 values are alike: they count as far fewer observations
    assert evidence["measured_patients"] < evidence["effective_n"] < evidence["measured"] / 10
    assert (
        fio2["value"]
        > fio2["threshold"]
        == pytest.approx(
            monitor.ks_critical(evidence["effective_n"], evidence["alpha_per_feature"]), rel=0.01
        )
    )


def test_a_spec_s_monitor_section_is_optional_and_checked() -> None:
    spec = json.loads((SEPSIS[0] / "spec.json").read_text())
    spec.pop("monitor")
    m = ModelSpec.parse(spec).monitor
    assert (m.psi_warning, m.psi_critical, m.label) == (0.1, 0.25, None)
    spec["monitor"] = {"psi_critical": "high", "label": {"horizon_h": 6}}
    with pytest.raises(SpecError, match=r"psi_critical.*label\.outcome"):
        ModelSpec.parse(spec)
