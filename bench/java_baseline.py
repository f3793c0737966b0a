"""The same pipeline as jobs.sepsis_news2 with no Python in it: Flink's Java Avro format decodes,
NEWS2 (RCP 2017 chart 1) is SQL CASE expressions, the same MATCH_RECOGNIZE raises alerts.
A benchmark baseline only: it has no dead-letter path, so its input must be clean."""

from __future__ import annotations

from pyflink.table import StatementSet, TableEnvironment

from jobs.runtime.tables import KafkaTable, avro_sink_ddl, avro_source_ddl
from jobs.sepsis_news2 import RULE_ID, RULE_VERSION, SUSTAINED_READINGS, SUSTAINED_WITHIN_H
from schemas import topics
from schemas.settings import Settings
from udfs.news2 import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD


def _whole(c: str) -> str:
    return f"FLOOR(CAST({c} AS DOUBLE) + 0.5)"


def _bands(expr: str, edges: list[int], points: list[int]) -> str:
    whens = " ".join(f"WHEN {expr} <= {e} THEN {p}" for e, p in zip(edges, points, strict=False))
    return f"CASE WHEN {expr} IS NULL THEN CAST(NULL AS INT) {whens} ELSE {points[-1]} END"


OXYGEN = "COALESCE(on_supplemental_o2, CAST(fio2_fraction AS DOUBLE) > 0.21E0)"
S = _whole("spo2_pct")
COMPONENTS = {
    "p_rr": _bands(_whole("resp_rate_per_min"), [8, 11, 20, 24], [3, 1, 0, 2, 3]),
    "p_spo2": f"""CASE WHEN spo2_pct IS NULL THEN CAST(NULL AS INT)
        WHEN COALESCE(spo2_scale2, FALSE) THEN (CASE WHEN {S} <= 83 THEN 3 WHEN {S} <= 85 THEN 2
            WHEN {S} <= 87 THEN 1 WHEN {S} <= 92 OR NOT COALESCE({OXYGEN}, FALSE) THEN 0
            WHEN {S} <= 94 THEN 1 WHEN {S} <= 96 THEN 2 ELSE 3 END)
        ELSE {_bands(S, [91, 93, 95], [3, 2, 1, 0])} END""",
    "p_o2": f"CASE WHEN {OXYGEN} IS NULL THEN CAST(NULL AS INT) WHEN {OXYGEN} THEN 2 ELSE 0 END",
    "p_sbp": _bands(_whole("sbp_mmhg"), [90, 100, 110, 219], [3, 2, 1, 0, 3]),
    "p_hr": _bands(_whole("heart_rate_bpm"), [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3]),
    "p_cns": "CASE WHEN acvpu IS NULL THEN CAST(NULL AS INT) WHEN acvpu = 'A' THEN 0 ELSE 3 END",
    "p_temp": _bands(
        "FLOOR(CAST(temp_c AS DOUBLE) * 10 + 0.5)", [350, 360, 380, 390], [3, 1, 0, 1, 2]
    ),
}


def create_tables(
    t_env: TableEnvironment, settings: Settings, *, in_prefix: str, out_prefix: str, bounded: bool
) -> None:
    src = KafkaTable.of(
        settings,
        topics.VITALS_OBSERVATION.name,
        prefix=in_prefix,
        bounded=bounded,
        group_id=f"{out_prefix}java-baseline",
    )
    t_env.execute_sql(
        avro_source_ddl(
            "j_vitals",
            topics.VITALS_OBSERVATION.name,
            src,
            rowtime="event_time",
            watermark_delay_s=settings.max_out_of_orderness_s,
        )
    )
    for name, topic in (("j_news2", topics.VITALS_NEWS2.name), ("j_alerts", topics.ALERT_V1.name)):
        t_env.execute_sql(
            avro_sink_ddl(name, topic, KafkaTable.of(settings, topic, prefix=out_prefix))
        )


def build(t_env: TableEnvironment) -> StatementSet:
    comps = ",\n ".join(f"{expr} AS {name}" for name, expr in COMPONENTS.items())
    t_env.create_temporary_view("j_parts", t_env.sql_query(f"SELECT *, {comps} FROM j_vitals"))
    total = " + ".join(f"COALESCE({c}, 0)" for c in COMPONENTS)
    present = " + ".join(f"CASE WHEN {c} IS NULL THEN 0 ELSE 1 END" for c in COMPONENTS)
    red = " OR ".join(f"COALESCE({c} = 3, FALSE)" for c in COMPONENTS)
    t_env.create_temporary_view(
        "j_scored",
        t_env.sql_query(
            f"SELECT *, {total} AS news2_score, {present} AS news2_params_scored, "
            f"({red}) AS news2_red_flag FROM j_parts"
        ),
    )
    ss = t_env.create_statement_set()
    ss.add_insert_sql("""
        INSERT INTO j_news2
        SELECT observation_id, patient_token, facility_id, unit_id, event_time, heart_rate_bpm,
               resp_rate_per_min, spo2_pct, temp_c, sbp_mmhg, news2_score, news2_params_scored,
               news2_red_flag, 0, CAST(0 AS BIGINT), kafka_ts
        FROM j_scored""")
    ss.add_insert_sql(f"""
        INSERT INTO j_alerts
        SELECT MD5(CONCAT_WS('|', '{RULE_ID}', patient_token,
                             DATE_FORMAT(first_event_time, 'yyyy-MM-dd''T''HH:mm:ss.SSS'))),
               '{RULE_ID}', '{RULE_VERSION}',
               CASE WHEN score_max >= {HIGH_RISK_THRESHOLD} THEN 'high' ELSE 'medium' END,
               patient_token, facility_id, unit_id, first_event_time, last_event_time,
               CAST(reading_count AS INT), score_first, score_last, score_max,
               first_observation_id, last_observation_id,
               CAST(last_event_time AS TIMESTAMP_LTZ(3))
        FROM j_scored MATCH_RECOGNIZE (
          PARTITION BY patient_token ORDER BY event_time
          MEASURES LAST(H.facility_id) AS facility_id, LAST(H.unit_id) AS unit_id,
            FIRST(H.event_time) AS first_event_time, LAST(H.event_time) AS last_event_time,
            COUNT(H.news2_score) AS reading_count, FIRST(H.news2_score) AS score_first,
            LAST(H.news2_score) AS score_last, MAX(H.news2_score) AS score_max,
            FIRST(H.observation_id) AS first_observation_id,
            LAST(H.observation_id) AS last_observation_id
          ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW
          PATTERN (H{{{SUSTAINED_READINGS}}}) WITHIN INTERVAL '{SUSTAINED_WITHIN_H}' HOUR
          DEFINE H AS H.news2_score >= {MEDIUM_RISK_THRESHOLD}
        )""")
    return ss
