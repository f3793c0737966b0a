"""The sepsis screening rules, each compiled to one Flink SQL query that yields rule hits.

A rule reads the screened patient states (`screened`, or `screened_vitals`: vitals readings and
discharges only) per patient in (event time, record id) order, and is one of
- a MATCH_RECOGNIZE pattern (first variable A, last C), for a pattern whose open attempts are
  few (`news2_sustained`: one, the last reading);
- a run rule: a JVM aggregate of an accumulate-only OVER window (udfs/java/RisingRun.java,
  PersistentRun.java) that fires exactly where its pattern, given in `pattern` and its comment,
  would complete a match, with bounded state: MATCH_RECOGNIZE keeps every row of every open
  attempt, and for these patterns every reading starts one that lives for hours;
- a condition on a single state.
Matches skip to the next row, so a condition that persists hits again at every new record; the
alert lifecycle folds repeats into the open alert and ignores a repeated hit on the same record.
Every hit carries the rule's id and version, the first and completing records (a run rule cites
the start of the rise or of the run), the rule's score and every valid parameter with the time it
was measured (one JSON object), so that an alert can say why it fired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from schemas.rows import RULE_HIT
from udfs import java_decode
from udfs.news2 import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD
from udfs.sepsis import LACTATE_HIGH_MMOL_L, STATE_PARAMS

_MS_PER_H = 3_600_000
RISE_POINTS, RISE_WITHIN_H = 3, 6  # news2_rising
SIRS_MET, SIRS_FOR_H, SIRS_WITHIN_H = 2, 4, 6  # sirs_persistent
RUN_FUNCTIONS = {  # SQL name → JVM class of the run rules' aggregates
    "wf_rising_run": java_decode.RISING_RUN_CLASS,
    "wf_persistent_run": java_decode.PERSISTENT_RUN_CLASS,
}


@dataclass(frozen=True)
class Rule:
    rule_id: str
    version: str
    score: str  # the screened column the rule is about
    source: str  # the view it reads
    condition: str  # DEFINE clause of a pattern, or WHERE clause of a single-state rule
    severity: str  # SQL expression → 'low' | 'medium' | 'high'
    score_value: str  # SQL expression for the hit's score
    pattern: str | None = None  # None: a single-state rule
    within_h: int = 0
    run: str | None = None  # a run rule's aggregate call (its `pattern` documents it)

    def sql(self) -> str:
        """Hits as RULE_HIT rows (kind `hit`) with their event time."""
        hit = RULE_HIT.select_sql(
            {
                "kind": "'hit'",
                "rule_id": f"'{self.rule_id}'",
                "rule_version": f"'{self.version}'",
                "score_name": f"'{self.score}'",
                "evidence_json": EVIDENCE_JSON,
            }
        )
        cols = f"{hit}, event_time"
        if self.run is not None:
            return f"""
    SELECT {cols} FROM (
      SELECT *, m.first_time AS first_time, m.first_record_id AS first_record_id,
             record_id AS last_record_id, {self.severity} AS severity,
             {self.score_value} AS score_value
      FROM (SELECT *, {self.run} OVER w AS m FROM {self.source}
            WINDOW w AS (PARTITION BY patient_token ORDER BY event_time
                         RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))
      WHERE m.last_record_id = record_id)"""
        if self.pattern is None:
            return f"""
    SELECT {cols} FROM (
      SELECT *, CAST(event_time AS TIMESTAMP(3)) AS first_time, record_id AS first_record_id,
             record_id AS last_record_id, {self.severity} AS severity,
             {self.score_value} AS score_value
      FROM {self.source} WHERE {self.condition})"""
        evidence = ", ".join(
            f"LAST(C.{p}) AS {p}, LAST(C.{p}_measured_time) AS {p}_measured_time"
            for p in STATE_PARAMS
        )
        evidence += ", LAST(C.quarantine_json) AS quarantine_json"
        return f"""
    SELECT {cols} FROM {self.source} MATCH_RECOGNIZE (
      PARTITION BY patient_token ORDER BY event_time, record_id
      MEASURES LAST(C.facility_id) AS facility_id, LAST(C.unit_id) AS unit_id,
        CAST(FIRST(A.event_time) AS TIMESTAMP(3)) AS first_time,
        FIRST(A.record_id) AS first_record_id, LAST(C.record_id) AS last_record_id,
        {self.severity} AS severity, {self.score_value} AS score_value, {evidence},
        MATCH_ROWTIME(event_time) AS event_time
      ONE ROW PER MATCH AFTER MATCH SKIP TO NEXT ROW
      PATTERN ({self.pattern}) WITHIN INTERVAL '{self.within_h}' HOUR
      DEFINE {self.condition})"""


def _evidence_json() -> str:
    """{param: value, param_measured_time: ISO time} of every valid parameter, built in SQL so
    that a hit reaches the (Python) lifecycle as one string instead of 32 columns; and
    `quarantine` when the state ignored values of a quarantined source (the screened state's
    `quarantine_json`: which source, since when, why, and the last ignored record's time)."""
    iso = "'yyyy-MM-dd''T''HH:mm:ss.SSS''Z'''"
    pairs = ", ".join(
        f"KEY '{p}' VALUE {p}, KEY '{p}_measured_time' VALUE DATE_FORMAT({p}_measured_time, {iso})"
        for p in STATE_PARAMS
    )
    ignored = "KEY 'quarantine' VALUE JSON(quarantine_json)"
    return f"JSON_OBJECT({pairs}, {ignored} ABSENT ON NULL)"


EVIDENCE_JSON = _evidence_json()


def _news2_severity(expr: str) -> str:
    return f"CASE WHEN {expr} >= {HIGH_RISK_THRESHOLD} THEN 'high' ELSE 'medium' END"


# RCP 2017 chart 2: NEWS2 ≥ 5 calls for an urgent response, ≥ 7 an emergency one. One reading can
# be an artefact, so the rule needs two consecutive distinct readings ≥ 5 within 3 hours.
NEWS2_SUSTAINED = Rule(
    "news2_sustained_medium",
    "2",
    "news2_score",
    "screened_vitals",
    f"""A AS A.record_kind = 'vitals' AND A.news2_score >= {MEDIUM_RISK_THRESHOLD},
        C AS C.record_kind = 'vitals' AND C.news2_score >= {MEDIUM_RISK_THRESHOLD}
             AND C.event_time > FIRST(A.event_time)""",
    _news2_severity("GREATEST(FIRST(A.news2_score), LAST(C.news2_score))"),
    "LAST(C.news2_score)",
    "A C",
    3,
)
# RCP 2017 asks that the NEWS2 trend be watched, not only its level; wardflow's operational form:
# a rise of ≥ 3 points within 6 hours, never falling on the way, ending at ≥ 5. Fires where
# `pattern` over `condition` would complete a match (RisingRun.java); cites where the rise began.
NEWS2_RISING = Rule(
    "news2_rising",
    "2",
    "news2_score",
    "screened_vitals",
    f"""A AS A.record_kind = 'vitals',
        U AS U.record_kind = 'vitals'
             AND U.news2_score >= COALESCE(LAST(U.news2_score, 1), FIRST(A.news2_score)),
        C AS C.record_kind = 'vitals' AND C.news2_score >= {MEDIUM_RISK_THRESHOLD}
             AND C.news2_score >= FIRST(A.news2_score) + {RISE_POINTS}
             AND C.news2_score >= COALESCE(LAST(U.news2_score), FIRST(A.news2_score))""",
    _news2_severity("news2_score"),
    "news2_score",
    "A U*? C",
    RISE_WITHIN_H,
    run=f"""wf_rising_run(news2_score, record_kind = 'vitals', CAST(event_time AS TIMESTAMP(3)),
              record_id, {MEDIUM_RISK_THRESHOLD}, {RISE_POINTS},
              CAST({RISE_WITHIN_H * _MS_PER_H} AS BIGINT))""",
)
# SIRS ≥ 2 (Bone 1992) in every state for at least 4 hours; the persistence is wardflow's filter
# against transient physiology such as pain or exertion. Fires where `pattern` over `condition`
# would complete a match (PersistentRun.java); cites the run's first state.
SIRS_PERSISTENT = Rule(
    "sirs_persistent",
    "2",
    "sirs_count",
    "screened",
    f"""A AS A.sirs_count >= {SIRS_MET}, B AS B.sirs_count >= {SIRS_MET},
       C AS C.sirs_count >= {SIRS_MET}
            AND C.event_time >= FIRST(A.event_time) + INTERVAL '{SIRS_FOR_H}' HOUR""",
    "'low'",
    "sirs_count",
    "A B*? C",
    SIRS_WITHIN_H,
    run=f"""wf_persistent_run(sirs_count >= {SIRS_MET}, CAST(event_time AS TIMESTAMP(3)),
              record_id, CAST({SIRS_FOR_H * _MS_PER_H} AS BIGINT),
              CAST({SIRS_WITHIN_H * _MS_PER_H} AS BIGINT))""",
)
# qSOFA ≥ 2 (Seymour 2016) with hypoperfusion: lactate > 2 mmol/L (Singer 2016, Sepsis-3).
QSOFA_LACTATE = Rule(
    "qsofa_lactate",
    "1",
    "qsofa_score",
    "screened",
    f"qsofa_score >= 2 AND lactate_mmol_l > {LACTATE_HIGH_MMOL_L}",
    "'high'",
    "qsofa_score",
)
# Sepsis-3 (Singer 2016): organ dysfunction is SOFA ≥ 2 above a baseline assumed 0. Infection is
# not in the data, so SIRS ≥ 2 stands in as the inflammatory-response screen.
ORGAN_DYSFUNCTION = Rule(
    "sepsis3_organ_dysfunction",
    "1",
    "sofa_partial_score",
    "screened",
    "sofa_partial_score >= 2 AND sirs_count >= 2",
    "CASE WHEN sofa_partial_score >= 4 THEN 'high' ELSE 'medium' END",
    "sofa_partial_score",
)
RULES = (NEWS2_SUSTAINED, NEWS2_RISING, SIRS_PERSISTENT, QSOFA_LACTATE, ORGAN_DYSFUNCTION)


def register_rule_functions(t_env: Any) -> None:
    """The JVM aggregates of the run rules (from the UDF jar, udfs/java_decode.py)."""
    for name, cls in RUN_FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, cls)
