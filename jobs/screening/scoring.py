"""The screening job's model part, in Flink SQL around the scoring UDF (udfs/flink_scoring.py).

- `feature_events`: each input record with the patient's first record time and the 6-hour
  extremes of the measurements (JVM keyed state of one accumulate-only OVER window);
- the state view then adds the lab ages and the stay so far (jobs/sepsis_screen.state_sql);
- `scored`: every state with champion and challenger risk, one vectorised UDF call per batch
  (the UDF is told which states are vitals states and scores and pushes only those); the rules
  read these states (jobs/sepsis_screen.stage_two);
- `score_rows`: what goes to `sepsis.score.v1`, one row per model per state;
- the model's hits (`MODEL_FIRES`, `model_hit_values`): the champion's risk at or above its
  threshold, a hit of rule `model_sepsis_risk` (version = model version), picked with the
  rules' hits for the alert lifecycle.
`scored` must have one consumer in the SQL plan: the planner evaluates the UDF again for each
query of it that it cannot merge (the champion and challenger branches of `score_rows`, the
rules), so the job passes scored states through its one planned output and derives score rows
from there (jobs/sepsis_screen.attach).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyflink.table.udf import UserDefinedScalarFunctionWrapper

from feature_store.definitions import (
    ROLLING,
    SCORE_FEATURES,
    STREAM_FEATURES,
    WINDOW_H,
    rolling_name,
    score_feature_sql,
)
from feature_store.online import feast_source
from schemas.rows import SCORE_RESULT, quote
from schemas.settings import Settings
from udfs import java_decode
from udfs.flink_scoring import score_udf
from udfs.registry import Registry

TRAILING_EXTREME_FUNCTION = "wf_trailing_extreme"  # io.wardflow.udf.TrailingExtreme
STAY_START_FUNCTION = "wf_stay_start"  # io.wardflow.udf.StayStart

log = logging.getLogger(__name__)
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
        """None when scoring is off. When it is on, the job's graph is the same whatever the
        registry holds (a savepoint restores whether or not a champion is registered): with no
        champion the scores carry no risk and raise nothing until one is promoted, and that
        state is logged here and by the scorer on every worker."""
        if not s.scoring:
            return None
        if not Registry(s.model_registry).roles(s.model_name).get("champion"):
            log.warning(
                "scoring is on but %s has no champion in %s: no risk is scored until one is "
                "promoted (python -m training.registry bootstrap)",
                s.model_name,
                s.model_registry,
            )
        return cls(
            s.model_registry,
            s.model_name,
            s.feast_dir,
            s.feast_online_store,
            s.feature_cache_ttl_s,
        )

    def udf(self) -> UserDefinedScalarFunctionWrapper:
        """The vectorised scoring UDF over the model's stream features, with Feast as its
        feature source (opened on each worker)."""
        source = functools.partial(
            feast_source, self.feast_dir, self.feast_online_store, self.cache_ttl_s
        )
        return score_udf(STREAM_FEATURES, self.registry, self.model_name, source)


def register_feature_functions(t_env: Any) -> None:
    """The JVM functions `feature_events_sql` calls (from the UDF jar, udfs/java_decode.py)."""
    t_env.create_java_temporary_system_function(
        TRAILING_EXTREME_FUNCTION, java_decode.TRAILING_EXTREME_CLASS
    )
    t_env.create_java_temporary_system_function(STAY_START_FUNCTION, java_decode.STAY_START_CLASS)


def feature_events_sql() -> str:
    """Each event with its stay's first record time and the measurements' 6-hour extremes, in
    one accumulate-only OVER window: the extremes come from `TRAILING_EXTREME_FUNCTION`
    (io.wardflow.udf.TrailingExtreme, equal to MAX/MIN over a 6-hour RANGE window) whose state is
    a deque of the values that can still be an extreme, not every row of the 6 hours. Both begin
    again after a discharge that ends the stay (`STAY_START_FUNCTION`; training's features are a
    stay's alone: a patient readmitted within the state's TTL was scored as days into the stay,
    with the last stay's extremes), with the rows measured after it (a lab drawn before the
    discharge and resulted after it is the ended stay's, as `state_sql` counts its values). A
    discharge taken back (A13) is not undone here: the next stay's features start from the first
    row after it, as the state's values do (they are not carried over a discharge either)."""
    ts = "CAST(event_time AS TIMESTAMP(3))"
    span_ms = f"CAST({WINDOW_H * 3_600_000} AS BIGINT)"
    ends = "COALESCE(is_discharge, FALSE)"
    measured = "CAST(measured_time AS TIMESTAMP(3))"
    rolling = ", ".join(
        f"CAST({TRAILING_EXTREME_FUNCTION}(CAST({p} AS DOUBLE), {ts}, {span_ms}, "
        f"{'TRUE' if how == 'max' else 'FALSE'}, {measured}, {ends}) OVER w AS FLOAT) "
        f"AS {rolling_name(p)}"
        for p, how in ROLLING.items()
    )
    return f"""
    SELECT *, COALESCE({STAY_START_FUNCTION}({ts}, {measured}, {ends}) OVER w, {ts}) AS first_time,
           {rolling}
    FROM events
    WINDOW w AS (PARTITION BY patient_token ORDER BY event_time
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


def scored_sql(columns: Sequence[str]) -> str:
    """Every state of `screened` (its `columns`) through the UDF, with SCORE_RESULT's columns;
    the UDF is told which are vitals states: only those are scored (and pushed to the online
    store); the others come back without a model version (score rows need a version, model hits
    a risk). Not a WHERE clause: the planner evaluates the UDF before a filter that it merges
    with the filters downstream, and then folds the flag to TRUE, so the UDF would score (and
    push) lab and discharge states as well. The score features are the state's scores without
    what training never saw (feature_store.definitions.score_feature_sql)."""
    args = ", ".join(
        f"CAST({score_feature_sql(f) if f in SCORE_FEATURES else f} AS DOUBLE)"
        for f in STREAM_FEATURES
    )
    result = ", ".join(f"s.{quote(c)} AS {quote(c)}" for c in SCORE_RESULT.columns)
    state = ", ".join(quote(c) for c in columns)
    return f"""
    SELECT {state}, {result}
    FROM (SELECT *, wf_score(patient_token, CAST(event_time AS TIMESTAMP(3)),
                             record_kind = 'vitals', {args}) AS s
          FROM screened)"""


def score_rows_sql(model_name: str, source: str) -> str:
    """Over `source` (SCORED_STATE columns and a `rowtime`): one row per model per state."""

    def role(r: str) -> str:
        return f"""
        SELECT MD5(CONCAT(record_id, '|{model_name}|', {r}_version)) AS score_id, record_id,
               patient_token, facility_id, unit_id,
               CAST(event_time AS TIMESTAMP(3)) AS event_time, '{model_name}' AS model_name,
               {r}_version AS model_version, '{r}' AS `role`, {r}_risk AS risk,
               {r}_threshold AS threshold, {r}_risk >= {r}_threshold AS above_threshold,
               features_missing, latency_ms AS scoring_latency_ms, rowtime
        FROM {source} WHERE {r}_version IS NOT NULL"""

    return role("champion") + "\nUNION ALL\n" + role("challenger")


# A state whose champion risk is at or above its threshold is a hit of rule MODEL_RULE.
MODEL_FIRES = "champion_risk >= champion_threshold"


def model_hit_values(model_name: str) -> dict[str, str]:
    """RULE_HIT's values of the champion's hit at a scored state (SCORED_STATE's columns), like
    a rule's (jobs/screening/rules.py): rule `model_sepsis_risk`, version = model version."""
    evidence = (
        "JSON_OBJECT('sepsis_risk' VALUE JSON_OBJECT('value' VALUE champion_risk, "
        f"'threshold' VALUE champion_threshold, 'model' VALUE '{model_name}', "
        "'version' VALUE champion_version, "
        f"'measured_time' VALUE DATE_FORMAT(CAST(event_time AS TIMESTAMP(3)), {ISO})), "
        "'quarantine' VALUE JSON(quarantine_json) ABSENT ON NULL)"
    )
    return {
        "kind": "'hit'",
        "rule_id": f"'{MODEL_RULE}'",
        "rule_version": "champion_version",
        "severity": "'medium'",
        "first_time": "CAST(event_time AS TIMESTAMP(3))",
        "first_record_id": "record_id",
        "last_record_id": "record_id",
        "score_name": "'sepsis_risk_pct'",
        "score_value": "CAST(ROUND(champion_risk * 100) AS INT)",
        "evidence_json": evidence,
    }
