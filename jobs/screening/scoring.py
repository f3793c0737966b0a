"""The screening job's model part, in Flink SQL around the scoring UDF (udfs/flink_scoring.py).

- `feature_events`: each input record with the patient's first record time and the 6-hour
  extremes of the measurements (JVM keyed state of two OVER windows);
- the state view then adds the lab ages and the stay so far (jobs/sepsis_screen._state_sql);
- `scored`: champion and challenger risk for every vitals state, one vectorised UDF call per
  batch;
- `score_rows`: what goes to `sepsis.score.v1`, one row per model per state;
- `model_hits`: the champion's risk at or above its threshold, a hit of rule
  `model_sepsis_risk` (version = model version) for the alert lifecycle.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from feature_store.definitions import ROLLING, STREAM_FEATURES, WINDOW_H, rolling_name
from schemas.settings import Settings
from udfs.registry import Registry

MODEL_RULE = "model_sepsis_risk"
ISO = "'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''"


@dataclass(frozen=True)
class Scoring:
    """Where the scoring UDF finds its models and features (from Settings)."""

    registry: Path
    model_name: str
    feast_dir: Path
    feast_online_store: str
    cache_ttl_s: float

    @classmethod
    def of(cls, s: Settings) -> Scoring | None:
        """None when scoring is off, or on but the registry has no champion (then the job
        runs the rules only, and says so)."""
        if not s.scoring:
            return None
        if not Registry(s.model_registry).roles(s.model_name).get("champion"):
            warnings.warn(
                f"scoring is on but {s.model_name} has no champion in {s.model_registry}: "
                "screening with the rules only (python -m training.registry bootstrap)",
                stacklevel=2,
            )
            return None
        return cls(
            s.model_registry,
            s.model_name,
            s.feast_dir,
            s.feast_online_store,
            s.feature_cache_ttl_s,
        )


def feature_events_sql() -> str:
    first = (
        "SELECT *, MIN(CAST(event_time AS TIMESTAMP(3))) OVER (PARTITION BY patient_token "
        "ORDER BY event_time RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS first_time "
        "FROM events"
    )
    rolling = ", ".join(
        f"{how.upper()}({p}) OVER w6 AS {rolling_name(p)}" for p, how in ROLLING.items()
    )
    return f"""
    SELECT *, {rolling} FROM ({first})
    WINDOW w6 AS (PARTITION BY patient_token ORDER BY event_time
                  RANGE BETWEEN INTERVAL '{WINDOW_H}' HOUR PRECEDING AND CURRENT ROW)"""


def scored_sql() -> str:
    args = ", ".join(f"CAST({f} AS DOUBLE)" for f in STREAM_FEATURES)
    return f"""
    SELECT record_id, patient_token, facility_id, unit_id, event_time,
           s.champion_version AS champion_version, s.champion_risk AS champion_risk,
           s.champion_threshold AS champion_threshold,
           s.challenger_version AS challenger_version, s.challenger_risk AS challenger_risk,
           s.challenger_threshold AS challenger_threshold,
           s.features_missing AS features_missing, s.latency_ms AS latency_ms
    FROM (SELECT *, wf_score(patient_token, CAST(event_time AS TIMESTAMP(3)), {args}) AS s
          FROM screened WHERE record_kind = 'vitals')"""


def score_rows_sql(model_name: str) -> str:
    def role(r: str) -> str:
        return f"""
        SELECT MD5(CONCAT(record_id, '|{model_name}|', {r}_version)) AS score_id, record_id,
               patient_token, facility_id, unit_id,
               CAST(event_time AS TIMESTAMP(3)) AS event_time, '{model_name}' AS model_name,
               {r}_version AS model_version, '{r}' AS `role`, {r}_risk AS risk,
               {r}_threshold AS threshold, {r}_risk >= {r}_threshold AS above_threshold,
               features_missing, latency_ms AS scoring_latency_ms, event_time AS rowtime
        FROM scored WHERE {r}_version IS NOT NULL"""

    return role("champion") + "\nUNION ALL\n" + role("challenger")


def model_hits_sql(model_name: str) -> str:
    """Columns as the rules' hits (jobs/sepsis_rules.Rule.sql)."""
    evidence = (
        "JSON_OBJECT('sepsis_risk' VALUE JSON_OBJECT('value' VALUE champion_risk, "
        f"'threshold' VALUE champion_threshold, 'model' VALUE '{model_name}', "
        "'version' VALUE champion_version, "
        f"'measured_time' VALUE DATE_FORMAT(CAST(event_time AS TIMESTAMP(3)), {ISO})))"
    )
    return f"""
    SELECT '{MODEL_RULE}' AS rule_id, champion_version AS rule_version, 'medium' AS severity,
           patient_token, facility_id, unit_id, CAST(event_time AS TIMESTAMP(3)) AS first_time,
           record_id AS first_record_id, record_id AS last_record_id,
           'sepsis_risk_pct' AS score_name, CAST(ROUND(champion_risk * 100) AS INT) AS score_value,
           {evidence} AS evidence_json, event_time
    FROM scored WHERE champion_risk >= champion_threshold"""
