"""The same pipeline as jobs.sepsis_news2 with no Python in it: Flink's Java Avro format decodes,
NEWS2 (RCP 2017 chart 1) is SQL generated from udfs.news2's tables, the same MATCH_RECOGNIZE
raises alerts.
A benchmark baseline only: it has no dead-letter path, so its input must be clean."""

from __future__ import annotations

from pyflink.table import StatementSet, TableEnvironment

from jobs.runtime.tables import KafkaTable, avro_sink_ddl, avro_source_ddl
from jobs.sepsis_news2 import RULE_ID, RULE_VERSION, SUSTAINED_READINGS, SUSTAINED_WITHIN_H
from schemas import topics
from schemas.settings import Settings
from udfs.news2 import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD, news2_sql

# NEWS2 (RCP 2017 chart 1) as SQL generated from udfs.news2's chart tables, as the screening job
# scores in the JVM.
NEWS2 = news2_sql()


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
    t_env.create_temporary_view(
        "j_scored",
        t_env.sql_query(
            f"SELECT *, {NEWS2['score']} AS news2_score, "
            f"{NEWS2['params_scored']} AS news2_params_scored, "
            f"{NEWS2['red_flag']} AS news2_red_flag FROM j_vitals"
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
