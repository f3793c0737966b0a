"""Sepsis screening job: vitals + labs + ADT → patient state → rule patterns → alert lifecycle.

vitals, labs, ADT (raw Kafka records, rowtime = record timestamp)
  ├─ behind the watermark ─────────────────────────── dead-letter topic (reason `late`)
  └─ decode + validate (Python UDTF) ─ rejected ───── dead-letter topic (reason per record)
       └─ union per patient → event-time OVER window: last valid value of each parameter
          (udfs.sepsis.VALIDITY_H, never across a discharge) → scores (Python UDTF)
            ├─ screened state ──────────────────────── sepsis.screen topic
            ├─ with scoring (jobs/screening/scoring.py): stream features → ONNX champion and
            │  shadow challenger (vectorised UDF, Feast static features) ── sepsis.score topic;
            │  champion risk ≥ threshold → hits of rule model_sepsis_risk
            └─ rules: MATCH_RECOGNIZE patterns + single-state rules → hits
                 └─ keyed state + timers: raise → escalate → resolve ── alert.v2 topic
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from feature_store.definitions import LAB_AGE, LAB_AGE_CAP_H, ROLLING, lab_age_name, rolling_name
from jobs.runtime import kafka_io
from jobs.runtime.cli import job_main
from jobs.runtime.flink_env import execute, plan_once, process_by_patient, stream_table_env
from jobs.runtime.tables import (
    DEAD_LETTER_ROW,
    LATE,
    ON_TIME,
    create_raw_source,
    create_sinks,
    dead_letter_sql,
    late_dead_letter_sql,
)
from jobs.screening.rules import RULES
from jobs.screening.scoring import (
    Scoring,
    feature_events_sql,
    model_hits_sql,
    score_rows_sql,
    scored_sql,
)
from schemas import topics
from schemas.settings import Settings
from udfs.flink import (
    ALERT_EVENT_TYPE,
    AlertLifecycle,
    decode_udtf,
    decoded_columns,
    screen_udtf,
)
from udfs.flink_scoring import score_udf
from udfs.sepsis import MAX_VALIDITY_H, SCORE_COLUMNS, STATE_PARAMS, VALIDITY_H

STAGE = "sepsis_screen"
SOURCES = {  # logical name -> (topic, id field)
    "vitals": (topics.VITALS_OBSERVATION.name, "observation_id"),
    "labs": (topics.LABS_RESULT.name, "result_id"),
    "adt": (topics.ADT_EVENT.name, "event_id"),
}
INPUT_TOPICS = [t for t, _ in SOURCES.values()]
OUTPUT_TOPICS = [
    topics.SEPSIS_SCREEN.name,
    topics.ALERT_V2.name,
    topics.SEPSIS_SCORE.name,
    topics.DEAD_LETTER.name,
]
SCREEN = topics.SEPSIS_SCREEN.schema
SCORE = topics.SEPSIS_SCORE.schema


@dataclass(frozen=True)
class Tables:
    """Names of the Flink tables the pipeline reads and writes (created by the caller)."""

    raw: dict[str, str]  # logical source name -> raw table
    source_topics: dict[str, str]  # logical source name -> topic name (for dead letters)
    screen: str = "sepsis_screen"
    alerts: str = "alert_events"
    scores: str | None = None  # set when the job scores
    dead_letters: str = "dead_letters"


def _source_views(t_env: StreamTableEnvironment, name: str, raw: str) -> None:
    topic, _ = SOURCES[name]
    cols = ", ".join(f"`{c}`" for c in decoded_columns(topic))
    t_env.create_temporary_system_function(f"wf_decode_{name}", decode_udtf(topic))
    t_env.create_temporary_view(
        f"{name}_late",
        t_env.sql_query(f"SELECT * FROM `{raw}` WHERE {LATE}"),
    )
    t_env.create_temporary_view(
        f"{name}_decoded",
        t_env.sql_query(f"""
        SELECT d.*, r.`value`, r.kafka_partition, r.kafka_offset, r.kafka_ts
        FROM (SELECT * FROM `{raw}` WHERE {ON_TIME}) AS r,
             LATERAL TABLE(wf_decode_{name}(r.`value`, r.kafka_ts_ms)) AS d({cols})"""),
    )


def _events_sql(t: Tables) -> str:
    """One row per accepted input record, every state parameter a column (null if absent)."""
    types = {f.name: f.flink_type().replace(" NOT NULL", "") for f in SCREEN.fields}
    selects = []
    for name, (topic, id_field) in SOURCES.items():
        have = set(decoded_columns(topic))
        params = ", ".join(
            p if p in have else f"CAST(NULL AS {types[p]}) AS {p}" for p in STATE_PARAMS
        )
        if name == "adt":
            unit = "COALESCE(unit_id, prior_unit_id, 'unknown')"
            discharge = "event_type = 'discharge'"
        else:
            unit, discharge = "unit_id", "FALSE"
        selects.append(f"""
        SELECT {id_field} AS record_id, '{name}' AS record_kind, patient_token, facility_id,
               {unit} AS unit_id, kafka_ts AS event_time, {params},
               {discharge} AS is_discharge, '{t.source_topics[name]}' AS source_topic,
               kafka_partition AS source_partition, kafka_offset AS source_offset
        FROM {name}_decoded WHERE reason_code IS NULL""")
    return " UNION ALL ".join(selects)


def _state_sql(source: str = "events", features: bool = False) -> str:
    """Last value of each parameter within its validity, never carried across a discharge;
    with `features`, also the model's stream features that are not state values (from
    `feature_events`): 6-hour extremes, lab ages (capped), the stay so far."""
    ts = "CAST(event_time AS TIMESTAMP(3))"
    last = ", ".join(
        f"LAST_VALUE({p}) OVER w AS {p}_last, "
        f"LAST_VALUE(CASE WHEN {p} IS NOT NULL THEN {ts} END) OVER w AS {p}_at"
        for p in STATE_PARAMS
    )

    def valid(p: str) -> str:
        return (
            f"{p}_at >= {ts} - INTERVAL '{VALIDITY_H[p]}' HOUR"
            f" AND ({p}_at > discharged_at OR discharged_at IS NULL)"
        )

    def hours_since(at: str) -> str:
        return f"CAST(TIMESTAMPDIFF(SECOND, {at}, {ts}) AS DOUBLE) / 3600"

    columns = ", ".join(
        f"CASE WHEN {valid(p)} THEN {p}_last END AS {p}, "
        f"CASE WHEN {valid(p)} THEN {p}_at END AS {p}_measured_time"
        for p in STATE_PARAMS
    )
    if features:
        columns += "".join(f", {rolling_name(p)}" for p in ROLLING)
        cap = f"CAST({LAB_AGE_CAP_H} AS DOUBLE)"
        columns += "".join(
            f", COALESCE(LEAST({hours_since(p + '_at')}, {cap}), {cap}) AS {lab_age_name(p)}"
            for p in LAB_AGE
        )
        columns += f", {hours_since('first_time')} AS hours_since_first_record"
    return f"""
    SELECT record_id, record_kind, patient_token, facility_id, unit_id, event_time, {columns},
           is_discharge, source_topic, source_partition, source_offset
    FROM (
      SELECT *, {last},
             LAST_VALUE(CASE WHEN is_discharge THEN {ts} END) OVER w AS discharged_at
      FROM {source}
      WINDOW w AS (PARTITION BY patient_token ORDER BY event_time
                   RANGE BETWEEN INTERVAL '{MAX_VALIDITY_H}' HOUR PRECEDING AND CURRENT ROW))"""


def build(t_env: StreamTableEnvironment, t: Tables, scoring: Scoring | None = None) -> None:
    """Define every view up to `screened`, `hits` and `lifecycle_in` (no sinks); with scoring,
    also `scored` and `score_rows` (jobs/screening/scoring.py), the champion's hits joining the
    lifecycle as rule `model_sepsis_risk`."""
    for name, raw in t.raw.items():
        _source_views(t_env, name, raw)
    t_env.create_temporary_view("events", t_env.sql_query(_events_sql(t)))
    if scoring:
        t_env.create_temporary_view("feature_events", t_env.sql_query(feature_events_sql()))
    source = "feature_events" if scoring else "events"
    t_env.create_temporary_view("state", t_env.sql_query(_state_sql(source, bool(scoring))))
    t_env.create_temporary_system_function("wf_screen", screen_udtf())
    params = ", ".join(STATE_PARAMS)
    t_env.create_temporary_view(
        "screened",
        t_env.sql_query(f"""
        SELECT s.*, {", ".join(f"x.{c}" for c in SCORE_COLUMNS)}
        FROM state AS s, LATERAL TABLE(wf_screen({params})) AS x({", ".join(SCORE_COLUMNS)})"""),
    )
    t_env.create_temporary_view(
        "screened_vitals",
        t_env.sql_query("SELECT * FROM screened WHERE record_kind = 'vitals' OR is_discharge"),
    )
    hits = " UNION ALL ".join(r.sql() for r in RULES)
    if scoring:
        udf = score_udf(
            scoring.registry,
            scoring.model_name,
            scoring.feast_dir,
            scoring.feast_online_store,
            scoring.cache_ttl_s,
        )
        t_env.create_temporary_system_function("wf_score", udf)
        t_env.create_temporary_view("scored", t_env.sql_query(scored_sql()))
        t_env.create_temporary_view(
            "score_rows", t_env.sql_query(score_rows_sql(scoring.model_name))
        )
        hits += " UNION ALL " + model_hits_sql(scoring.model_name)
    t_env.create_temporary_view("hits", t_env.sql_query(hits))
    t_env.create_temporary_view(
        "lifecycle_in",
        t_env.sql_query("""
        SELECT 'hit' AS kind, * FROM hits
        UNION ALL
        SELECT 'discharge', '', '', '', patient_token, facility_id, unit_id,
               CAST(event_time AS TIMESTAMP(3)), record_id, record_id, '', 0, '{}', event_time
        FROM screened WHERE is_discharge"""),
    )


def _row(schema_columns: str) -> str:
    return f"ROW<{schema_columns}>"


SCREEN_ROW = _row(SCREEN.flink_columns())
SCORE_ROW = _row(SCORE.flink_columns())
HIT_ROW = _row(
    ", ".join(
        f"`{c}` {t}"
        for c, t in (
            ("kind", "STRING"),
            ("rule_id", "STRING"),
            ("rule_version", "STRING"),
            ("severity", "STRING"),
            ("patient_token", "STRING"),
            ("facility_id", "STRING"),
            ("unit_id", "STRING"),
            ("first_time", "TIMESTAMP(3)"),
            ("first_record_id", "STRING"),
            ("last_record_id", "STRING"),
            ("score_name", "STRING"),
            ("score_value", "INT"),
            ("evidence_json", "STRING"),
        )
    )
)


def outputs_sql(t: Tables) -> str:
    """Dead letters, screened states and lifecycle inputs as one table (`output` says which),
    so that the SQL part is planned once even though the lifecycle runs as a DataStream: each
    separate Table → DataStream conversion would plan, and read, the sources again."""
    nulls = {
        "dead_letter": f"CAST(NULL AS {DEAD_LETTER_ROW})",
        "screen": f"CAST(NULL AS {SCREEN_ROW})",
        "hit": f"CAST(NULL AS {HIT_ROW})",
    }
    if t.scores:
        nulls["score"] = f"CAST(NULL AS {SCORE_ROW})"

    def branch(output: str, row: str, source: str, rowtime: str) -> str:
        cols = {**nulls, output: row}
        rows = ", ".join(f"{v} AS {k}" for k, v in cols.items())
        return f"SELECT '{output}' AS output, {rows}, {rowtime} AS event_time FROM {source}"

    branches = []
    for name in t.raw:
        topic = t.source_topics[name]
        rejected = dead_letter_sql(topic, STAGE, "reason_code", "reason")
        late = late_dead_letter_sql(topic, STAGE)
        branches.append(
            branch(
                "dead_letter", rejected, f"{name}_decoded WHERE reason_code IS NOT NULL", "kafka_ts"
            )
        )
        branches.append(branch("dead_letter", late, f"{name}_late", "kafka_ts"))
    screen_cols = ", ".join(
        f"CAST({f.name} AS TIMESTAMP(3))" if f.logical else f.name for f in SCREEN.fields
    )
    branches.append(
        branch("screen", f"CAST(ROW({screen_cols}) AS {SCREEN_ROW})", "screened", "event_time")
    )
    hit_cols = (
        "kind, rule_id, rule_version, severity, patient_token, facility_id, unit_id, first_time, "
        "first_record_id, last_record_id, score_name, score_value, evidence_json"
    )
    branches.append(
        branch("hit", f"CAST(ROW({hit_cols}) AS {HIT_ROW})", "lifecycle_in", "event_time")
    )
    if t.scores:
        score_cols = ", ".join(f"`{f.name}`" for f in SCORE.fields)
        branches.append(
            branch("score", f"CAST(ROW({score_cols}) AS {SCORE_ROW})", "score_rows", "rowtime")
        )
    return "\nUNION ALL\n".join(branches)


def sinks(t_env: StreamTableEnvironment, t: Tables) -> None:
    """Attach every output: dead letters, screened states and the alert lifecycle."""
    t_env.create_temporary_view("outputs", t_env.sql_query(outputs_sql(t)))
    plan_once(t_env, "outputs")
    alerts = process_by_patient(
        t_env,
        "SELECT hit.*, rowtime FROM planned WHERE output = 'hit'",
        AlertLifecycle(),
        ALERT_EVENT_TYPE,
    )
    t_env.create_temporary_view("alert_lifecycle", t_env.from_data_stream(alerts))

    ss = t_env.create_statement_set()
    ss.add_insert_sql(f"""
        INSERT INTO `{t.dead_letters}`
        SELECT dead_letter.*, rowtime FROM planned WHERE output = 'dead_letter'""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.screen}` SELECT screen.*, rowtime FROM planned WHERE output = 'screen'""")
    if t.scores:
        ss.add_insert_sql(f"""
        INSERT INTO `{t.scores}` SELECT score.*, rowtime FROM planned WHERE output = 'score'""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.alerts}`
        SELECT alert_event_id, alert_id, action, sequence, rule_id, rule_version, severity,
               patient_token, facility_id, unit_id,
               CAST(TO_TIMESTAMP_LTZ(opened_time_ms, 3) AS TIMESTAMP(3)),
               CAST(TO_TIMESTAMP_LTZ(event_time_ms, 3) AS TIMESTAMP(3)),
               resolve_reason, hit_count, score_name, score_value, first_record_id,
               last_record_id, evidence_json, TO_TIMESTAMP_LTZ(event_time_ms, 3)
        FROM alert_lifecycle""")
    ss.attach_as_datastream()


def create_kafka_tables(
    t_env: StreamTableEnvironment,
    settings: Settings,
    *,
    prefix: str = "",
    bounded: bool = False,
    scoring: bool = False,
) -> Tables:
    t = Tables(
        raw={name: f"{name}_raw" for name in SOURCES},
        source_topics={name: prefix + topic for name, (topic, _) in SOURCES.items()},
        scores="sepsis_scores" if scoring else None,
    )
    for name, (topic, _) in SOURCES.items():
        group = prefix + STAGE
        create_raw_source(
            t_env, settings, t.raw[name], topic, prefix=prefix, bounded=bounded, group_id=group
        )
    sinks = {
        t.screen: topics.SEPSIS_SCREEN.name,
        t.alerts: topics.ALERT_V2.name,
        t.dead_letters: topics.DEAD_LETTER.name,
    }
    if t.scores:
        sinks[t.scores] = topics.SEPSIS_SCORE.name
    create_sinks(t_env, settings, sinks, prefix=prefix)
    return t


def pipeline(
    settings: Settings, *, prefix: str = "", bounded: bool = False
) -> StreamExecutionEnvironment:
    kafka_io.ensure_topics(settings, INPUT_TOPICS + OUTPUT_TOPICS, prefix=prefix)
    env, t_env = stream_table_env(settings)
    scoring = Scoring.of(settings)
    tables = create_kafka_tables(
        t_env, settings, prefix=prefix, bounded=bounded, scoring=scoring is not None
    )
    build(t_env, tables, scoring)
    sinks(t_env, tables)
    return env


def run(settings: Settings, *, prefix: str = "", bounded: bool = False) -> None:
    """Run the job; returns when a bounded run has drained its input (an unbounded one never,
    unless interrupted: then it is cancelled, its transactions aborted, checkpoints retained)."""
    execute(pipeline(settings, prefix=prefix, bounded=bounded), settings.job_name)


def main(argv: list[str] | None = None) -> None:
    job_main(__doc__, STAGE, run, argv)


if __name__ == "__main__":
    main()
