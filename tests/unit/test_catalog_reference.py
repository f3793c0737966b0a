"""The catalog models' monitor references (training/catalog/reference.py) on real stays and
encounters: each bundled catalog version carries one that agrees with its validation; the
mortality model's score monitor (udfs/model_monitor.py, as the stream judges a window) stays
quiet on PhysioNet 2012 stays its reference was not built from, and breaches on a real case-mix
shift among the same stays: only those that ended in death, as in a surge of the sickest."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from schemas.model_spec import ModelSpec
from training.catalog import physionet2012 as p12
from training.catalog import reference
from training.registry import BUNDLED
from udfs import model_monitor, monitor

MORTALITY = BUNDLED / "icu-mortality" / "1-gbt"
CATALOG = [MORTALITY, BUNDLED / "length-of-stay" / "1-gbt", BUNDLED / "readmission-30d" / "1-gbt"]


def _ref(version: Path) -> dict[str, Any]:
    out: dict[str, Any] = json.loads((version / reference.FILE).read_text())
    return out


def test_each_bundled_catalog_version_carries_a_score_reference_and_no_input_one() -> None:
    for version in CATALOG:
        ref, spec = _ref(version), json.loads((version / "spec.json").read_text())
        assert ref["model"] == spec["name"] and ref["features"] == {}
        assert sum(ref["score"]["cells"].values()) == pytest.approx(1, abs=1e-4)
        assert ref["score"]["threshold"] == spec.get("threshold")
        assert ref["training_data"]["sha256"] == spec["training_data"]["sha256"]
    # readmission: the validation split, as its spec reports it
    readmission = BUNDLED / "readmission-30d" / "1-gbt"
    ref, spec = _ref(readmission), json.loads((readmission / "spec.json").read_text())
    val = spec["validation_metrics"]
    assert ref["score_from"]["rows"] == val["encounters"]
    assert ref["score"]["alert_rate"] * 100 == pytest.approx(val["flagged_pct"], abs=0.01)
    assert ref["performance"]["auroc"] == pytest.approx(val["auroc"], abs=0.003)
    # mortality: every state of set B's stays, the first 48 h
    assert _ref(MORTALITY)["score_from"]["patients"] == 3993
    assert 0.75 < _ref(MORTALITY)["performance"]["auroc"] < 0.9


@pytest.fixture(scope="module")
def halves(
    set_b_states: tuple[p12.StaySet, pd.DataFrame], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """Set B's first 2,000 stays split by record id parity: a reference built from the even ones
    (into a copy of the bundled version), the odd ones' states scored."""
    s, states = set_b_states
    even = states["record_id"] % 2 == 0
    version = Path(shutil.copytree(MORTALITY, tmp_path_factory.mktemp("ref") / "1"))
    ref = reference.stay_reference(version, states[even], s, "In-hospital_death")
    odd = states[~even].reset_index(drop=True)
    spec = ModelSpec.parse(json.loads((version / "spec.json").read_text()))
    odd["risk"] = reference.onnx_scores(version, odd[spec.feature_names].to_numpy(np.float32))
    died = s.outcomes["In-hospital_death"] == 1
    return {"version": version, "ref": ref, "odd": odd, "died": set(s.outcomes.index[died])}


def _judged(halves: dict[str, Any], states: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """The score monitor's events for `states` as one window of the stream."""
    raw = json.loads((halves["version"] / "spec.json").read_text())
    served = model_monitor.Served(
        "icu-mortality", "1", "champion", ModelSpec.parse(raw), raw, halves["ref"]
    )
    risk = np.repeat(states["risk"].to_numpy(), states["states"].to_numpy())
    cells = monitor.score_grid("binary").cells_of(risk)
    alerts = risk >= raw["threshold"]
    items = [f"{model_monitor.PATIENTS}|{states['record_id'].nunique()}|0|0"]
    for c in np.unique(cells):
        k = cells == c
        items.append(f"{c}|{int(k.sum())}|{int(alerts[k].sum())}|{int(k.sum())}")
    events = model_monitor.score_drift(served, ";".join(items))
    return {e["metric"]: e for e in events}


def test_stays_the_reference_was_not_built_from_raise_no_score_or_alert_rate_breach(
    halves: dict[str, Any],
) -> None:
    events = _judged(halves, halves["odd"])
    print({m: (round(e["value"], 4), e["severity"]) for m, e in events.items()})
    assert set(events) == {"score_psi", "alert_rate"}
    assert json.loads(events["score_psi"]["evidence_json"])["judged"]
    assert not any(e["breach"] for e in events.values())


def test_a_surge_of_the_sickest_breaches_the_score_psi_and_the_alert_rate(
    halves: dict[str, Any],
) -> None:
    odd = halves["odd"]
    sickest = odd[odd["record_id"].isin(halves["died"])]
    events = _judged(halves, sickest)
    print({m: (round(e["value"], 4), e["severity"]) for m, e in events.items()})
    assert sickest["record_id"].nunique() > 100
    assert events["score_psi"]["breach"] and events["score_psi"]["severity"] == "critical"
    assert (
        events["alert_rate"]["breach"]
        and events["alert_rate"]["value"] > 2 * (halves["ref"]["score"]["alert_rate"])
    )
