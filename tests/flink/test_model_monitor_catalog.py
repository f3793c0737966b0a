"""The model monitor job watches a catalog model's scores against its reference, on the
MiniCluster: the ICU mortality model's scores of real PhysioNet 2012 set B stays at every state
of their first 48 h (as the catalog scoring job emits them on model.score.v1), its reference
built from the other half (of set B's first 2,000 stays, by record id parity). Hospital A admits
a random sample of the held-out half; hospital B only those of them who died (a surge of the
sickest). A stays quiet; B breaches the score PSI and the alert rate."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs import model_monitor
from schemas import phi
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from tests.flink_harness import run_bounded
from training.catalog import reference
from training.registry import bootstrap
from udfs.registry import Registry

pytestmark = pytest.mark.slow

MODEL = "icu-mortality"
STAYS = 400  # hospital A's sample of the held-out stays (of set B's first 2,000)
SPREAD_H = 48.0
T0 = datetime(2026, 4, 6, tzinfo=UTC)


def _scores(
    facility: str, states: pd.DataFrame, version: Any, key: bytes, seed: int
) -> list[dict[str, Any]]:
    """model.score.v1 records: each (stay, hour) state as often as the stream scores it, in the
    minutes before the hour's end, the stays admitted over SPREAD_H hours."""
    rng = np.random.default_rng(seed)
    stays = np.sort(states["record_id"].unique())
    admit = dict(zip(stays, rng.uniform(0, SPREAD_H, len(stays)), strict=True))
    out = []
    for r in states.itertuples(index=False):
        token = phi.token(key, facility, str(r.record_id))
        for k in range(int(r.states)):
            at = T0 + timedelta(hours=admit[r.record_id] + r.hours_since_admission - k / 60)
            out.append(
                {
                    "score_id": f"{token}:{r.hours_since_admission}:{k}|{version.version}",
                    "record_id": f"{token}:{r.hours_since_admission}:{k}",
                    "entity": "stay",
                    "entity_token": token,
                    "patient_token": token,
                    "facility_id": facility,
                    "unit_id": "ICU",
                    "event_time": at,
                    "hours_since_admission": float(r.hours_since_admission),
                    "model_name": MODEL,
                    "model_version": version.version,
                    "role": "champion",
                    "output_name": "death_risk",
                    "score": float(r.risk),
                    "output_unit": "probability",
                    "threshold": version.threshold,
                    "above_threshold": bool(r.risk >= version.threshold),
                    "features_missing": 0,
                    "scoring_latency_ms": 1.0,
                }
            )
    return out


@pytest.fixture(scope="module")
def events(
    settings: Settings, set_b_states: tuple[Any, pd.DataFrame], tmp_path_factory: Any
) -> pd.DataFrame:
    folder = tmp_path_factory.mktemp("catalog-monitor")
    s = dataclasses.replace(
        settings,
        model_registry=folder / "registry",
        catalog_models=MODEL,
        model_monitor_window_min=1440,
        model_monitor_slide_min=720,
    )
    reg = Registry(s.model_registry)
    assert bootstrap(reg, MODEL)
    version = reg.role(MODEL, "champion")
    assert version is not None
    stays, states = set_b_states
    even = states["record_id"] % 2 == 0
    # the serving version's reference: the even stays only, so the odd ones are unseen
    reference.stay_reference(version.path, states[even], stays, "In-hospital_death")
    odd = states[~even].reset_index(drop=True)
    spec = ModelSpec.parse(version.spec)
    odd["risk"] = reference.onnx_scores(version.path, odd[spec.feature_names].to_numpy(np.float32))
    ids = np.sort(odd["record_id"].unique())
    sample = np.random.default_rng(7).choice(ids, STAYS, replace=False)
    died = set(stays.outcomes.index[stays.outcomes["In-hospital_death"] == 1])
    key = s.require_phi_key()
    records = _scores("hospital-a", odd[odd["record_id"].isin(set(sample))], version, key, 1)
    records += _scores("hospital-b", odd[odd["record_id"].isin(died)], version, key, 2)
    records.sort(key=lambda r: r["event_time"])
    out = run_bounded(model_monitor.JOB, s, {"model_scores": records}, folder / "out")
    assert not out["dead_letters"]
    return pd.DataFrame(out["monitor"])


def _judged(events: pd.DataFrame, facility: str, metric: str) -> pd.DataFrame:
    e = events[(events["facility_id"] == facility) & (events["metric"] == metric)]
    return e[[json.loads(x).get("judged", False) for x in e["evidence_json"]]]


def test_the_catalog_models_scores_of_unseen_stays_raise_no_score_or_alert_rate_breach(
    events: pd.DataFrame,
) -> None:
    psi, rate = (
        _judged(events, "hospital-a", "score_psi"),
        _judged(events, "hospital-a", "alert_rate"),
    )
    print(f"hospital A: {len(psi)} judged score-PSI windows, max {psi['value'].max():.3f}")
    assert len(psi) >= 3 and len(rate) >= 3
    assert set(events["model_name"]) == {MODEL}
    assert not psi["breach"].any() and not rate["breach"].any()


def test_a_surge_of_the_sickest_breaches_the_catalog_models_score_psi_and_alert_rate(
    events: pd.DataFrame,
) -> None:
    psi, rate = (
        _judged(events, "hospital-b", "score_psi"),
        _judged(events, "hospital-b", "alert_rate"),
    )
    print(f"hospital B: score PSI {psi['value'].round(2).tolist()}, alert rate "
          f"{rate['value'].round(2).tolist()}")  # fmt: skip
    assert len(psi) >= 1
    assert (psi["severity"] == "critical").all() and rate["breach"].all()
