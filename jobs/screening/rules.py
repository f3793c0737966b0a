"""The sepsis screening rules, and the SQL that finds their hits in the screened states.

A rule reads a patient's screened states in (event time, record id) order, and is one of
- a run rule: a JVM aggregate of an accumulate-only OVER window (udfs/java/PairRun.java,
  RisingRun.java, PersistentRun.java) that fires exactly where its pattern, given in `pattern`
  and its comment, would complete a match over the states of `source` (`screened`, or
  `screened_vitals`: vitals readings and discharges only), with bounded state: MATCH_RECOGNIZE
  keeps every row of every open attempt, and for the rising and persistent patterns every
  reading starts one that lives for hours (`Rule.sql` with `run` None is that MATCH_RECOGNIZE,
  the reference the tests hold each run rule to);
- a condition on a single state.
The job computes every run rule in one OVER window over all the states (`window_sql`; a rule
that reads `screened_vitals` is told which states to skip) and picks the hits from its rows, so
that they leave one operator on one path (jobs/sepsis_screen.stage_two).
Matches skip to the next row, so a condition that persists hits again at every new record; the
alert lifecycle folds repeats into the open alert and ignores a repeated hit on the same record.
Every hit carries the rule's id and version, the first and completing records (a run rule cites
the start of the rise or of the run, or the reading before), the rule's score and every valid
parameter with the time it was measured (one JSON object), so that an alert can say why it fired.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from schemas.rows import RULE_HIT, quote
from udfs import java_decode
from udfs.news2 import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD
from udfs.sepsis import LACTATE_HIGH_MMOL_L, STATE_PARAMS

_MS_PER_H = 3_600_000
SUSTAINED_WITHIN_H = 3  # news2_sustained_medium
RISE_POINTS, RISE_WITHIN_H = 3, 6  # news2_rising
SIRS_MET, SIRS_FOR_H, SIRS_WITHIN_H = 2, 4, 6  # sirs_persistent
RUN_FUNCTIONS = {  # SQL name → JVM class of the run rules' aggregates
    "wf_rising_run": java_decode.RISING_RUN_CLASS,
    "wf_persistent_run": java_decode.PERSISTENT_RUN_CLASS,
    "wf_pair_run": java_decode.PAIR_RUN_CLASS,
}


@dataclass(frozen=True)
class Rule:
    rule_id: str
    version: str
    score: str  # the screened column the rule is about
    source: str  # the view its pattern reads (a run rule's `run` skips the other states)
    condition: str  # DEFINE clause of a pattern, or WHERE clause of a single-state rule
    severity: str  # SQL expression → 'low' | 'medium' | 'high'; `{run}`: the run's result
    score_value: str  # SQL expression for the hit's score
    pattern: str | None = None  # None: a single-state rule
    within_h: int = 0
    run: str | None = None  # a run rule's aggregate call (its `pattern` documents it)
    pattern_severity: str | None = None  # `severity` as the pattern's MEASURES (default: same)
    # a run rule's condition on the state that completes its run, beyond the run (the pattern's
    # C says the same; `{run}`: the run's result): the run goes on through a state that fails
    # it, which only does not hit
    completes_if: str | None = None

    @property
    def column(self) -> str:
        """The run's result in `window_sql` (RuleRuns.HIT: last and first record, first time;
        PairRun.HIT adds the first record's score)."""
        return f"{self.rule_id}_run"

    @property
    def result(self) -> str:
        """The run's result at a row of `window_sql`'s output read as table `ruled` (`x.field`
        alone would name a table x)."""
        return f"ruled.{self.column}"

    def fires(self) -> str:
        """Whether the rule hits at a row of `window_sql`'s output (a condition in SQL)."""
        if self.run is not None:
            fired = f"{self.result}.last_record_id = record_id"
            if self.completes_if is None:
                return fired
            return f"{fired} AND ({self.completes_if.format(run=self.result)})"
        if self.pattern is not None:
            raise ValueError(f"{self.rule_id}: a pattern without a run has no window column")
        return f"({self.condition})"

    def hit_values(self) -> dict[str, str]:
        """RULE_HIT's values (kind `hit`) at a row of `window_sql`'s output where it fires."""
        values = {
            "kind": "'hit'",
            "rule_id": f"'{self.rule_id}'",
            "rule_version": f"'{self.version}'",
            "severity": self.severity.format(run=self.result),
            "first_time": "CAST(event_time AS TIMESTAMP(3))",
            "first_record_id": "record_id",
            "last_record_id": "record_id",
            "score_name": f"'{self.score}'",
            "score_value": self.score_value.format(run=self.result),
            "evidence_json": EVIDENCE_JSON,
        }
        if self.run is not None:
            values["first_time"] = f"{self.result}.first_time"
            values["first_record_id"] = f"{self.result}.first_record_id"
        return values

    def sql(self) -> str:
        """This rule's hits alone as RULE_HIT rows with their `event_time`, over `self.source`'s
        states (`screened` and `screened_vitals` must be views); with `run` None, a pattern's
        MATCH_RECOGNIZE (the reference its run rule is tested against)."""
        if self.pattern is None or self.run is not None:
            return hits_sql(f"({window_sql('screened', (self,))}) AS ruled", rule_branches((self,)))
        hit = RULE_HIT.select_sql(
            {
                "kind": "'hit'",
                "rule_id": f"'{self.rule_id}'",
                "rule_version": f"'{self.version}'",
                "score_name": f"'{self.score}'",
                "evidence_json": EVIDENCE_JSON,
            }
        )
        evidence = ", ".join(
            f"LAST(C.{p}) AS {p}, LAST(C.{p}_measured_time) AS {p}_measured_time"
            for p in STATE_PARAMS
        )
        evidence += ", LAST(C.quarantine_json) AS quarantine_json"
        severity = self.pattern_severity or self.severity
        return f"""
    SELECT {hit}, event_time FROM {self.source} MATCH_RECOGNIZE (
      PARTITION BY patient_token ORDER BY event_time, record_id
      MEASURES LAST(C.facility_id) AS facility_id, LAST(C.unit_id) AS unit_id,
        CAST(FIRST(A.event_time) AS TIMESTAMP(3)) AS first_time,
        FIRST(A.record_id) AS first_record_id, LAST(C.record_id) AS last_record_id,
        {severity} AS severity, {self.score_value} AS score_value, {evidence},
        MATCH_ROWTIME(event_time) AS event_time
      ONE ROW PER MATCH AFTER MATCH SKIP TO NEXT ROW
      PATTERN ({self.pattern}) WITHIN INTERVAL '{self.within_h}' HOUR
      DEFINE {self.condition})"""


def window_sql(source: str, rules: tuple[Rule, ...]) -> str:
    """Every state of `source` (all of a patient's states, in event time) with each run rule's
    result as a column (`Rule.column`), all from one accumulate-only OVER window: one operator,
    whatever the number of rules, so that the rules' hits leave it on one path (a hit that took
    a path of its own to the alert lifecycle could arrive there behind a watermark that another
    path had carried on: tests/flink_harness.event_time_diamonds)."""
    runs = "".join(f", {r.run} OVER w AS {r.column}" for r in rules if r.run is not None)
    return f"""
    SELECT *{runs} FROM {source}
    WINDOW w AS (PARTITION BY patient_token ORDER BY event_time
                 RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


# A source of hits: when it hits at a row (a SQL condition) and RULE_HIT's values there (a column
# of the row where a value is not given).
Branch = tuple[str, Mapping[str, str]]


def rule_branches(rules: tuple[Rule, ...]) -> list[Branch]:
    """The rules as branches of `picked`, over `window_sql`'s rows."""
    return [(r.fires(), r.hit_values()) for r in rules]


def picked(branches: Sequence[Branch], number: str, first: int = 1) -> tuple[str, list[str]]:
    """(the hit as one RULE_HIT row value, the numbers of the branches that hit) at a row, the
    branches numbered from `first`, for the branch whose number is the SQL expression `number`:
    `CROSS JOIN UNNEST(ARRAY[<numbers>]) AS b(n) WHERE b.n >= 0` turns a row into its hits. Each
    number is −1 where its branch does not hit: an array of the row's own values, which the
    planner unnests per row (a constant array would be a regular join with a VALUES table)."""
    fields = {}
    for c in RULE_HIT.columns:
        values = [dict(v).get(c, quote(c)) for _, v in branches]
        if len(set(values)) == 1:
            fields[c] = values[0]
        else:
            whens = " ".join(f"WHEN {i} THEN {v}" for i, v in enumerate(values, first))
            fields[c] = f"CASE {number} {whens} END"
    numbers = [
        f"CASE WHEN {cond} THEN {i} ELSE -1 END" for i, (cond, _) in enumerate(branches, first)
    ]
    return RULE_HIT.cast_sql(fields), numbers


def hits_sql(source: str, branches: Sequence[Branch]) -> str:
    """RULE_HIT's columns and `event_time`: every hit of `branches` at the rows of `source` (a
    table named `ruled`: `Rule.result`), in one correlate (a row unnested into its hits)."""
    hit, numbers = picked(branches, "b.n")
    return f"""
    SELECT h.*, event_time FROM (
      SELECT {hit} AS h, event_time
      FROM {source} CROSS JOIN UNNEST(ARRAY[{", ".join(numbers)}]) AS b(n)
      WHERE b.n >= 0)"""


# The rows of `screened_vitals` (vitals readings and discharges) as a run's `eligible`: true for a
# reading, false for a discharge (which breaks a run), null for the other states (not in the
# pattern's sequence at all).
VITALS_SEQUENCE = "CASE WHEN record_kind = 'vitals' THEN TRUE WHEN is_discharge THEN FALSE END"


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
# Version 3 (both NEWS2 rules): a half charted rounds up as charted (38.05 °C arrived as a 32-bit
# 38.0499992 and scored as 38.0), and Scale 2 SpO2 above its target is not scored without the
# oxygen status (it scored 0) (udfs/news2.py).
NEWS2_SUSTAINED = Rule(
    "news2_sustained_medium",
    "3",
    "news2_score",
    "screened_vitals",
    f"""A AS A.record_kind = 'vitals' AND A.news2_score >= {MEDIUM_RISK_THRESHOLD},
        C AS C.record_kind = 'vitals' AND C.news2_score >= {MEDIUM_RISK_THRESHOLD}
             AND C.event_time > FIRST(A.event_time)""",
    _news2_severity("GREATEST({run}.first_score, news2_score)"),
    "news2_score",
    "A C",
    SUSTAINED_WITHIN_H,
    run=f"""wf_pair_run(news2_score, {VITALS_SEQUENCE}, CAST(event_time AS TIMESTAMP(3)),
              record_id, {MEDIUM_RISK_THRESHOLD},
              CAST({SUSTAINED_WITHIN_H * _MS_PER_H} AS BIGINT))""",
    pattern_severity=_news2_severity("GREATEST(FIRST(A.news2_score), LAST(C.news2_score))"),
)
# RCP 2017 asks that the NEWS2 trend be watched, not only its level; wardflow's operational form:
# a rise of ≥ 3 points within 6 hours, never falling on the way, ending at ≥ 5. Fires where
# `pattern` over `condition` would complete a match (RisingRun.java); cites where the rise began.
NEWS2_RISING = Rule(
    "news2_rising",
    "3",
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
    run=f"""wf_rising_run(news2_score, {VITALS_SEQUENCE}, CAST(event_time AS TIMESTAMP(3)),
              record_id, {MEDIUM_RISK_THRESHOLD}, {RISE_POINTS},
              CAST({RISE_WITHIN_H * _MS_PER_H} AS BIGINT))""",
)
# RCP 2017 chart 2: a score of 3 in any single parameter (a "red score") calls for an urgent
# ward-based response (low-medium clinical risk; chart 3: the nurse informs the medical team, who
# review), whatever the aggregate (a respiratory rate of 6 scores 3 alone). As for NEWS2 ≥ 5, one
# reading can be an artefact (a probe off the finger), so the rule needs two consecutive distinct
# readings with a red score. Within 7 hours: at NEWS2 1-4 chart 3 asks for readings only every 4-6
# hours, and a red score charted on a ward is confirmed at the next round, an hour late at most.
# Where both readings are at NEWS2 5 or more, `news2_sustained_medium` answers for the same
# readings and this rule does not hit; where only one is (4 then 5, or 5 then 4), only this one
# does. Severity: low (RCP ranks a red score below an aggregate of 5), medium or high where the
# completing reading's aggregate is 5-6 or 7+ (`_news2_severity`'s bands).
RED_SCORE_WITHIN_H = 7


def _red_severity(expr: str) -> str:
    return (
        f"CASE WHEN {expr} >= {MEDIUM_RISK_THRESHOLD} THEN {_news2_severity(expr)} ELSE 'low' END"
    )


NEWS2_RED_SCORE = Rule(
    "news2_red_score",
    "1",
    "news2_score",
    "screened_vitals",
    f"""A AS A.record_kind = 'vitals' AND A.news2_red_flag AND A.news2_score >= 3,
        C AS C.record_kind = 'vitals' AND C.news2_red_flag AND C.news2_score >= 3
             AND C.event_time > FIRST(A.event_time)
             AND NOT (FIRST(A.news2_score) >= {MEDIUM_RISK_THRESHOLD}
                      AND C.news2_score >= {MEDIUM_RISK_THRESHOLD})""",
    _red_severity("news2_score"),
    "news2_score",
    "A C",
    RED_SCORE_WITHIN_H,
    # a red score is 3 points at least: the pair is of red readings, citing the first's NEWS2
    run=f"""wf_pair_run(CASE WHEN news2_red_flag THEN news2_score END, {VITALS_SEQUENCE},
              CAST(event_time AS TIMESTAMP(3)), record_id, 3,
              CAST({RED_SCORE_WITHIN_H * _MS_PER_H} AS BIGINT))""",
    pattern_severity=_red_severity("LAST(C.news2_score)"),
    completes_if=f"""NOT ({{run}}.first_score >= {MEDIUM_RISK_THRESHOLD}
                          AND news2_score >= {MEDIUM_RISK_THRESHOLD})""",
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
# Version 2: qSOFA's altered mentation reads a charted GCS < 15 too (version 1: ACVPU only).
QSOFA_LACTATE = Rule(
    "qsofa_lactate",
    "2",
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
RULES = (
    NEWS2_SUSTAINED,
    NEWS2_RISING,
    NEWS2_RED_SCORE,
    SIRS_PERSISTENT,
    QSOFA_LACTATE,
    ORGAN_DYSFUNCTION,
)


def register_rule_functions(t_env: Any) -> None:
    """The JVM aggregates of the run rules (from the UDF jar, udfs/java_decode.py)."""
    for name, cls in RUN_FUNCTIONS.items():
        t_env.create_java_temporary_system_function(name, cls)
