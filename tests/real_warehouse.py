"""A warehouse of real rows for the lifecycle tests (the audit pack, the retraining loop's
warehouse inputs): set A test-split patients' screened states (udfs.sepsis over their real
values, carried forward as the job does), a registry version's real ONNX scores of the same
hours, the alerts those scores raised through the real alert lifecycle (udfs.lifecycle), and
the patients' real sepsis outcomes; inserted the way the loader inserts."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store.definitions import FEATURES
from grafana import seed
from schemas import load_schema
from schemas.physionet import measurements
from sinks.loader import TABLES
from training.evaluate import score
from training.features import hourly_features
from training.retrain import sample_patients
from training.splits import split_of
from udfs import lifecycle
from udfs.registry import Version

SET_A = Path(__file__).resolve().parents[2] / "shared" / "data" / "physionet2019" / "setA.parquet"
MODEL = "sepsis-risk"
MODEL_RULE = "model_sepsis_risk"  # jobs/screening/scoring.py
T0_MS = int(datetime(2026, 2, 2, tzinfo=UTC).timestamp() * 1000)
HOUR_MS = 3_600_000


def patients(n: int = 40, septic: int = 0, seed_: int = 11) -> pd.DataFrame:
    """Set A test-split patients' rows: `n` drawn at random, or `septic` septic ones and
    n − septic others."""
    raw = pd.read_parquet(SET_A)
    raw = raw[raw["patient_id"].map(split_of) == "test"]
    if septic:
        ever = raw.groupby("patient_id")["SepsisLabel"].max()
        pos = sample_patients(
            raw[raw["patient_id"].isin(set(ever[ever == 1].index))], septic, seed_
        )
        neg = raw[raw["patient_id"].isin(set(ever[ever == 0].index))]
        raw = pd.concat([pos, sample_patients(neg, n - septic, seed_)])
    else:
        raw = sample_patients(raw, n, seed=seed_)
    return raw.sort_values(["patient_id", "ICULOS"]).reset_index(drop=True)


def token(patient_id: Any) -> Any:
    return "tok-" + patient_id.astype(str)


def event_ms(raw: pd.DataFrame) -> Any:
    return T0_MS + (raw["ICULOS"].astype("int64") - 1) * HOUR_MS


def real_rows(
    v: Version, raw: pd.DataFrame, role: str = "champion", alerts: bool = True
) -> dict[str, pd.DataFrame]:
    """sepsis_screen, model_scores (of `v` as `role`) and, if `alerts`, alert_events rows."""
    features = hourly_features(raw)  # the same rows, in the same order
    filled = measurements(raw).groupby(raw["patient_id"]).ffill()  # carried forward, as the job
    obs = pd.DataFrame(
        {
            "patient_token": token(raw["patient_id"]),
            "facility_id": "F01",
            "unit_id": "ICU",
            "event_ms": event_ms(raw),
        }
    )
    screens = seed.screens(pd.concat([obs, filled.astype("float64")], axis=1))
    risk = score(v, features)
    scores = pd.DataFrame(
        {
            "score_id": [seed._md5(r, MODEL, v.version) for r in screens["record_id"]],
            "record_id": screens["record_id"],
            "patient_token": screens["patient_token"],
            "facility_id": "F01",
            "unit_id": "ICU",
            "event_time": screens["event_time"],
            "model_name": MODEL,
            "model_version": v.version,
            "role": role,
            "risk": risk.astype("float64"),
            "threshold": v.threshold,
            "above_threshold": risk >= v.threshold,
            "features_missing": features[list(FEATURES)].isna().sum(axis=1).astype("int32"),
            "scoring_latency_ms": 1.0,
        }
    )
    if not alerts:
        return {"sepsis_screen": screens, "model_scores": scores}
    raised: list[dict[str, Any]] = []
    hits = screens.assign(risk=risk)[risk >= v.threshold]
    for _, g in hits.groupby("patient_token"):
        rows: Any = g.itertuples(index=False)
        events: list[tuple[int, lifecycle.Hit | None]] = [
            (
                int(r.event_ms),
                lifecycle.Hit(
                    MODEL_RULE, v.version, "medium", r.patient_token, "F01", "ICU",
                    int(r.event_ms), int(r.event_ms), r.record_id, r.record_id,
                    "sepsis_risk_pct", round(100 * r.risk),
                    json.dumps({"sepsis_risk": {"value": r.risk, "version": v.version}}),
                ),
            )
            for r in rows
        ]  # fmt: skip
        raised += lifecycle.run(events)
    ev = pd.DataFrame(raised)
    ev["opened_time"] = pd.to_datetime(ev.pop("opened_time_ms"), unit="ms", utc=True)
    ev["event_time"] = pd.to_datetime(ev.pop("event_time_ms"), unit="ms", utc=True)
    return {"sepsis_screen": screens, "model_scores": scores, "alert_events": ev}


def load(client: Any, db: str, tables: dict[str, pd.DataFrame]) -> None:
    """Insert the rows the way the loader does: the topic schema's columns plus kafka_*."""
    topic_of = {t: name for name, t in TABLES.items()}
    for table, df in tables.items():
        out = df.reindex(columns=load_schema(topic_of[table]).field_names)  # absent: null
        out["kafka_partition"] = 0
        out["kafka_offset"] = np.arange(len(out), dtype="int64")
        out["kafka_topic"] = f"test:{table}"
        rows = out.astype(object).where(out.notna(), None).to_numpy().tolist()
        client.insert(f"{db}.{table}", rows, column_names=list(out.columns))


def outcome_labels(raw: pd.DataFrame) -> pd.DataFrame:
    """label.outcome.v1 rows from the patients' real SepsisLabel: Sepsis-3 onset (t_sepsis) is
    6 h after the first positive hour (PhysioNet 2019's label leads onset by 6 h), known when
    the patient's last record is."""
    first = raw[raw["SepsisLabel"] == 1].groupby("patient_id")["ICULOS"].min()
    rows = []
    for pid, g in raw.groupby("patient_id"):
        septic = pid in first.index
        onset = T0_MS + (int(first[pid]) - 1 + 6) * HOUR_MS if septic else None
        known = int(event_ms(g).max())
        rows.append(
            {
                "label_id": f"label-{pid}", "patient_token": f"tok-{pid}", "facility_id": "F01",
                "unit_id": "ICU", "entity": "patient", "entity_token": f"tok-{pid}",
                "outcome": "sepsis_onset", "occurred": septic,
                "outcome_time": None if onset is None else pd.Timestamp(onset, unit="ms", tz="UTC"),
                "outcome_lead_h": None if onset is None else (known - onset) / HOUR_MS,
                "known_at": pd.Timestamp(known, unit="ms", tz="UTC"),
            }
        )  # fmt: skip
    return pd.DataFrame(rows)
