"""The model monitor job over the real Kafka broker on the MiniCluster, with real patients:
PhysioNet 2019 set A patients held out from training (the test split, training/splits.py) at
hospital A, then eICU demo stays (a different hospital system, training/cohorts.py) at hospital
B. Their screened states (with a GCS and ACVPU charted, which the screen's scores count and the
model's inputs do not) and the bundled champion's and challenger's scores (onnxruntime, as the
screening job scores them) go onto the topics; the monitor stays quiet on set A, raises input
drift on eICU, and reports delayed AUROC and calibration once the outcome labels arrive at
discharge.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs import model_monitor
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.settings import Settings
from training.cohorts import yaib_to_physionet
from training.features import hourly_features
from training.reference import score
from training.registry import bootstrap
from training.splits import split_of
from udfs import monitor
from udfs.registry import Registry
from udfs.sepsis import STATE_PARAMS, screen

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 120  # per hospital: fewer, and a window's patients are too few to call drift
MODEL = "sepsis-risk"
SPREAD_H = 48.0  # admissions spread over two days: the census mixes early and late stay hours
T0 = datetime(2026, 3, 2, tzinfo=UTC)


def _cohorts(settings: Settings) -> dict[str, pd.DataFrame]:
    seta = settings.physionet_setA
    eicu = settings.data_dir / "yaib_demo_sepsis" / "eicu_demo"
    if not seta.exists() or not (eicu / "dyn.parquet").exists():
        pytest.skip("set A or the eICU demo cohort is not in the data folder")
    raw = pd.read_parquet(seta)
    held_out = np.sort([p for p in raw["patient_id"].unique() if split_of(p) == "test"])
    a = raw[raw["patient_id"].isin(set(held_out[:PATIENTS]))]
    e = yaib_to_physionet(eicu, prefix="eicu:")
    stays = np.sort(e["patient_id"].unique())[:PATIENTS]
    return {"hospital-a": a, "hospital-b": e[e["patient_id"].isin(set(stays))]}


def _records(
    facility: str, raw: pd.DataFrame, start: datetime, reg: Registry, key: bytes
) -> tuple[dict[str, list[Any]], pd.DataFrame]:
    """Screened states, scores and outcome labels of one cohort replayed from `start`."""
    f = hourly_features(raw).reset_index(drop=True)
    rng = np.random.default_rng(2019)
    ids = np.sort(f["patient_id"].unique())
    admit = {
        p: start + timedelta(hours=float(h))
        for p, h in zip(ids, rng.uniform(0, SPREAD_H, len(ids)), strict=True)
    }
    f["token"] = [phi.token(key, facility, str(p)) for p in f["patient_id"]]
    f["time"] = [
        admit[p] + timedelta(hours=float(h))
        for p, h in zip(f["patient_id"], f["iculos_h"], strict=True)
    ]
    f["record_id"] = [f"{t}:{int(h)}" for t, h in zip(f["token"], f["iculos_h"], strict=True)]
    screens = []
    for i, r in enumerate(f.itertuples(index=False)):
        rec: dict[str, Any] = {
            "record_id": r.record_id,
            "record_kind": "vitals",
            "patient_token": r.token,
            "facility_id": facility,
            "unit_id": r.unit,
            "event_time": r.time,
            "source_topic": topics.VITALS_OBSERVATION.name,
            "source_partition": 0,
            "source_offset": i,
        }
        for name in monitor.FEATURE_GRIDS:
            v = getattr(r, name)
            if name in ("news2_score", "sirs_count", "qsofa_score", "sofa_partial_score"):
                rec[name] = int(v)
            else:
                rec[name] = None if pd.isna(v) else float(v)
        for k in (
            "news2_params_scored",
            "sirs_criteria_known",
            "qsofa_criteria_known",
            "sofa_components_known",
        ):
            rec[k] = 0
        rec["news2_red_flag"] = False
        # charted as an ICU that charts GCS and ACVPU would: the screen's NEWS2 and qSOFA count
        # them, the model's inputs (which the monitor checks) do not (UNSEEN_IN_TRAINING)
        rec["gcs_total"], rec["acvpu"] = 8, "V"
        scored = screen(**{p: rec.get(p) for p in STATE_PARAMS})
        rec["news2_score"], rec["qsofa_score"] = scored.news2.score, scored.qsofa.score
        screens.append(rec)
    scores = []
    for role, v in Registry.roles(reg, MODEL).items():
        version = reg.get(MODEL, v)
        risk = score(version.path, f)
        f[f"risk_{role}"] = risk
        for r, p in zip(f.itertuples(index=False), risk, strict=True):
            scores.append(
                {
                    "score_id": f"{r.record_id}|{v}",
                    "record_id": r.record_id,
                    "patient_token": r.token,
                    "facility_id": facility,
                    "unit_id": r.unit,
                    "event_time": r.time,
                    "model_name": MODEL,
                    "model_version": v,
                    "role": role,
                    "risk": float(p),
                    "threshold": version.threshold,
                    "above_threshold": bool(p >= version.threshold),
                    "features_missing": 0,
                    "scoring_latency_ms": 1.0,
                }
            )
    labels = replay.sepsis_labels(raw, admit, key=key, source=facility, facility=facility)
    return {"screens": screens, "sepsis_scores": scores, "labels": labels}, f


@pytest.fixture(scope="module")
def run(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("model-monitor")
    s = dataclasses.replace(
        kafka,
        model_registry=folder / "registry",
        catalog_models="",
        model_monitor_window_min=1440,
        model_monitor_slide_min=360,
        model_monitor_performance_window_h=96,
        model_monitor_performance_slide_h=24,
    )
    reg = Registry(s.model_registry)
    assert bootstrap(reg, MODEL)
    key = s.require_phi_key()
    inputs: dict[str, list[Any]] = {"screens": [], "sepsis_scores": [], "labels": []}
    frames, start, phases = {}, T0, {}
    for facility, raw in _cohorts(s).items():
        recs, f = _records(facility, raw, start, reg, key)
        end = max(f["time"]) + timedelta(hours=1)
        phases[facility] = (start, end)
        frames[facility] = f
        for k, v in recs.items():
            inputs[k] += v
        start = end + timedelta(days=1)
    labels = sorted(inputs["labels"], key=lambda r: r["known_at"])
    # Over the real broker, as deployed: each input on its topic, keyed by patient, the record
    # timestamp its event time (a label's: when it became known); the job bounded over Kafka.
    topic_of = {n: t.name for n, t in model_monitor.INPUTS.items()}
    items = [(topic_of[k], r) for k, recs in inputs.items() for r in recs]
    items.sort(key=lambda tr: replay.record_time(*tr))
    prefix = f"mm-{uuid.uuid4().hex[:8]}."
    names = model_monitor.JOB.input_topics + model_monitor.JOB.output_topics
    kafka_io.ensure_topics(s, names, prefix=prefix)
    try:
        replay.produce_stream(s, items, prefix=prefix, progress=False)
        model_monitor.JOB.run(s, prefix=prefix, bounded=True)
        out = {
            name: kafka_io.read_records(s, prefix + t.name, t.name)
            for name, t in model_monitor.OUTPUTS.items()
        }
    finally:
        kafka_io.delete_topics(s, names, prefix=prefix)
    return {
        "events": pd.DataFrame(out["monitor"]),
        "dead": out["dead_letters"],
        "frames": frames,
        "labels": labels,
        "phases": phases,
        "settings": s,
    }


def _drift(events: pd.DataFrame, facility: str) -> pd.DataFrame:
    e = events[(events["facility_id"] == facility) & events["metric"].isin(["psi", "ks"])]
    return e[e["role"] == "champion"]


def test_a_clean_replay_of_held_out_set_a_patients_raises_no_drift_alarm(
    run: dict[str, Any],
) -> None:
    e = _drift(run["events"], "hospital-a")
    start, end = run["phases"]["hospital-a"]
    days = (end - start).total_seconds() / 86400
    judged = e[e["evidence_json"].map(lambda j: json.loads(j)["judged"])]
    print(
        f"set A: {e['window_end'].nunique()} windows over {days:.1f} days, "
        f"{len(judged)} judged measurements, {int(e['breach'].sum())} breaches "
        f"({e['breach'].sum() / days:.2f} false alarms per day)"
    )
    assert len(judged) > 200  # the monitor did judge the clean hospital
    assert not e["breach"].any(), e[e["breach"]][["metric", "feature", "value", "threshold"]]
    for facility in ("hospital-a", "hospital-b"):
        ev = run["events"][run["events"]["facility_id"] == facility]
        print(facility, ev.groupby(["metric", "role"])["breach"].agg(["size", "sum"]).to_dict())
    assert run["dead"] == []


def test_a_different_hospital_s_charting_makes_the_input_drift_monitor_fire(
    run: dict[str, Any],
) -> None:
    e = _drift(run["events"], "hospital-b")
    breaches = e[e["breach"]]
    start, end = run["phases"]["hospital-b"]
    days = (end - start).total_seconds() / 86400
    print(
        f"eICU: {breaches['window_end'].nunique()} of {e['window_end'].nunique()} windows "
        f"breached over {days:.1f} days:",
        breaches.groupby(["metric", "feature"]).size().to_dict(),
    )
    assert breaches["window_end"].nunique() >= 3
    assert (breaches["value"] > breaches["threshold"]).all()
    # the challenger is watched against its own reference too
    both = run["events"][(run["events"]["facility_id"] == "hospital-b") & run["events"]["breach"]]
    assert set(both["role"]) == {"champion", "challenger"}


def test_scores_and_alert_rate_are_compared_with_the_version_s_validation_reference(
    run: dict[str, Any],
) -> None:
    ev = run["events"]
    rate = ev[(ev["metric"] == "alert_rate") & (ev["role"] == "champion")]
    assert len(rate) > 0 and len(ev[ev["metric"] == "score_psi"]) > 0
    reg = Registry(run["settings"].model_registry)
    ref = json.loads((reg.role(MODEL, "champion").path / "reference.json").read_text())  # type: ignore[union-attr]
    assert (rate["reference"] == ref["score"]["alert_rate"]).all()
    # one window's alert rate recomputed from the scores that fell in it
    f = run["frames"]["hospital-a"]
    row = rate[rate["facility_id"] == "hospital-a"].sort_values("n").iloc[-1]
    ws, we = (pd.Timestamp(row[c]).to_pydatetime() for c in ("window_start", "window_end"))
    inside = f[(f["time"] >= ws) & (f["time"] < we)]
    champion = reg.role(MODEL, "champion")
    assert champion is not None
    assert row["n"] == len(inside)
    assert row["value"] == pytest.approx((inside["risk_champion"] >= champion.threshold).mean())


def test_delayed_auroc_and_calibration_arrive_once_the_labels_do(run: dict[str, Any]) -> None:
    ev = run["events"]
    perf = ev[(ev["metric"] == "auroc") & (ev["role"] == "champion")]
    assert len(perf) > 0 and set(ev["metric"]) >= {"auroc", "calibration_oe", "ece"}
    assert perf["value"].between(0, 1).all()
    # the largest window's AUROC equals sklearn's over the scores whose labels it holds
    from sklearn.metrics import roc_auc_score

    row = perf.sort_values("n").iloc[-1]
    ws, we = (pd.Timestamp(row[c]).to_pydatetime() for c in ("window_start", "window_end"))
    f = run["frames"][row["facility_id"]]
    known = {lb["entity_token"]: lb for lb in run["labels"] if ws <= lb["known_at"] < we}
    got = f[f["token"].isin(set(known))]
    y = [
        bool(known[t]["occurred"]) and tm >= known[t]["outcome_time"] - timedelta(hours=6)
        for t, tm in zip(got["token"], got["time"], strict=True)
    ]
    assert row["n"] == len(got) and sum(y) > 0
    assert row["value"] == pytest.approx(roc_auc_score(y, got["risk_champion"]), abs=0.01)
    print(
        f"delayed AUROC {row['value']:.3f} over {len(got)} labelled scores ({sum(y)} positive); "
        f"validation {row['reference']:.3f}"
    )


def test_the_monitors_own_breach_on_the_other_hospital_retrains_a_challenger(
    run: dict[str, Any], clickhouse: Any, tmp_path: Any
) -> None:
    """The chain of issue 19 end to end: the job's breach events, loaded into the warehouse as
    the loader would, trigger the retraining loop; its candidate (set A + the other hospital's
    labelled stays) passes the gate and becomes the challenger, which scores in shadow."""
    from sinks import clickhouse as ch
    from tests.real_warehouse import load
    from training import retrain
    from training.audit import AuditTrail, service

    s: Settings = run["settings"]
    db = s.clickhouse_database + "_chain"
    ch.migrate(clickhouse, db)
    load(clickhouse, db, {"model_monitor": run["events"]})
    reg = Registry(s.model_registry)
    breaches = retrain.warehouse_breaches(clickhouse, db, MODEL)
    trigger = retrain.latest_breach(breaches, MODEL, retrain.handled_breaches(reg, MODEL))
    assert trigger is not None and trigger.evidence["breach"]["facility_id"] == "hospital-b"
    raw = pd.read_parquet(s.physionet_setA)
    frames = run["frames"]
    sources = [
        retrain.Source("original: setA.parquet", retrain.sample_patients(raw, 400, seed=7), "a"),
        retrain.Source("recent: eicu_demo", yaib_to_physionet(
            s.data_dir / "yaib_demo_sepsis" / "eicu_demo", prefix="eicu:"), "eicu"),
    ]  # fmt: skip
    trail = AuditTrail(reg, service(retrain.MODULE))
    out = retrain.retrain(reg, trail, trigger, sources, tmp_path / "work", epochs=3, seed=2019)
    assert out.gate is not None and out.gate.passed and out.version is not None, out.gate
    assert reg.roles(MODEL) == {"champion": "1", "challenger": out.version.version}
    audit = reg.audit(MODEL)
    assert audit[0]["step"] == "trigger_received"
    assert trigger.breach_id in audit[0]["evidence_json"]
    # In shadow: the challenger scores the other hospital's states beside the champion.
    states = frames["hospital-b"]
    champion = score(reg.get(MODEL, "1").path, states)
    challenger = score(out.version.path, states)
    assert len(challenger) == len(champion) == len(states) and np.isfinite(challenger).all()
    assert not np.allclose(challenger, champion)
    # Every breach up to the one acted on was answered by this retrain: none starts another.
    handled = retrain.handled_breaches(reg, MODEL), retrain.handled_until(reg, MODEL)
    assert retrain.latest_breach(breaches, MODEL, *handled) is None
