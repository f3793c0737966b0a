"""Sepsis screening job (spine): vitals → NEWS2 per reading → sustained-NEWS2 alerts.

source (raw Kafka records) → decode + validate (Python UDF) ─┬─ rejected → dead-letter topic
                                                              └─ accepted → NEWS2 (Python UDF)
                                                                   ├─ scored readings topic
                                                                   └─ MATCH_RECOGNIZE → alert topic
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.table import StatementSet, TableEnvironment, TableResult

from jobs.runtime import kafka_io
from jobs.runtime.cli import job_main
from jobs.runtime.flink_env import table_env
from jobs.runtime.tables import create_raw_source, create_sinks
from schemas import topics
from schemas.settings import Settings
from udfs.flink import DECODED_COLUMNS, decode_observation_udtf, news2_udf
from udfs.news2 import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD
from udfs.vitals import DECODED_FIELDS

STAGE = "sepsis_news2"
RULE_ID = "news2_sustained_medium"
RULE_VERSION = "1"
# RCP 2017 chart 2: an aggregate NEWS2 of 5 or more is the key threshold for an urgent response
# (7 or more: emergency). One reading can be an artefact (motion, a loose probe), so the alert
# needs two consecutive readings at or above 5 within 3 hours; matches do not overlap.
SUSTAINED_READINGS = 2
SUSTAINED_WITHIN_H = 3
INPUT_TOPICS = [topics.VITALS_OBSERVATION.name]
OUTPUT_TOPICS = [topics.VITALS_NEWS2.name, topics.ALERT_V1.name, topics.DEAD_LETTER.name]


@dataclass(frozen=True)
class Tables:
    """Names of the Flink tables the pipeline reads and writes (created by the caller)."""

    vitals_raw: str = "vitals_raw"
    news2: str = "vitals_news2"
    alerts: str = "alerts"
    dead_letters: str = "dead_letters"
    source_topic: str = topics.VITALS_OBSERVATION.name


def build(t_env: TableEnvironment, t: Tables) -> StatementSet:
    t_env.create_temporary_system_function("wf_decode_observation", decode_observation_udtf())
    t_env.create_temporary_system_function("wf_news2", news2_udf())
    cols = ", ".join(f"`{c}`" for c in DECODED_COLUMNS)
    fields = ", ".join(f"`{f.name}`" for f in DECODED_FIELDS)
    t_env.create_temporary_view(
        "decoded",
        t_env.sql_query(f"""
        SELECT d.*, r.`value`, r.kafka_partition, r.kafka_offset, r.kafka_ts
        FROM `{t.vitals_raw}` AS r,
             LATERAL TABLE(wf_decode_observation(r.`value`, r.kafka_ts_ms)) AS d({cols})"""),
    )
    t_env.create_temporary_view(
        "observations",
        t_env.sql_query(f"""
        SELECT {fields}, kafka_ts AS event_time, kafka_partition, kafka_offset
        FROM decoded WHERE reason_code IS NULL"""),
    )
    t_env.create_temporary_view(
        "scored",
        t_env.sql_query("""
        SELECT o.*, n.score AS news2_score, n.params_scored AS news2_params_scored,
               n.red_flag AS news2_red_flag
        FROM (SELECT *, wf_news2(resp_rate_per_min, spo2_pct, on_supplemental_o2, fio2_fraction,
                                 sbp_mmhg, heart_rate_bpm, acvpu, temp_c, spo2_scale2) AS n
              FROM observations) AS o"""),
    )

    ss = t_env.create_statement_set()
    ss.add_insert_sql(f"""
        INSERT INTO `{t.dead_letters}`
        SELECT '{t.source_topic}', kafka_partition, kafka_offset, CAST(kafka_ts AS TIMESTAMP(3)),
               '{STAGE}', reason_code, reason, COALESCE(`value`, ENCODE('', 'UTF-8')), kafka_ts
        FROM decoded WHERE reason_code IS NOT NULL""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.news2}`
        SELECT observation_id, patient_token, facility_id, unit_id,
               CAST(event_time AS TIMESTAMP(3)), heart_rate_bpm, resp_rate_per_min, spo2_pct,
               temp_c, sbp_mmhg, news2_score, news2_params_scored, news2_red_flag,
               kafka_partition, kafka_offset, event_time
        FROM scored""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.alerts}`
        SELECT MD5(CONCAT_WS('|', '{RULE_ID}', patient_token,
                             DATE_FORMAT(first_event_time, 'yyyy-MM-dd''T''HH:mm:ss.SSS'))),
               '{RULE_ID}', '{RULE_VERSION}',
               CASE WHEN score_max >= {HIGH_RISK_THRESHOLD} THEN 'high' ELSE 'medium' END,
               patient_token, facility_id, unit_id,
               CAST(first_event_time AS TIMESTAMP(3)), CAST(last_event_time AS TIMESTAMP(3)),
               CAST(reading_count AS INT), score_first, score_last, score_max,
               first_observation_id, last_observation_id, last_event_time
        FROM scored MATCH_RECOGNIZE (
          PARTITION BY patient_token
          ORDER BY event_time
          MEASURES
            LAST(H.facility_id) AS facility_id,
            LAST(H.unit_id) AS unit_id,
            FIRST(H.event_time) AS first_event_time,
            LAST(H.event_time) AS last_event_time,
            COUNT(H.news2_score) AS reading_count,
            FIRST(H.news2_score) AS score_first,
            LAST(H.news2_score) AS score_last,
            MAX(H.news2_score) AS score_max,
            FIRST(H.observation_id) AS first_observation_id,
            LAST(H.observation_id) AS last_observation_id
          ONE ROW PER MATCH
          AFTER MATCH SKIP PAST LAST ROW
          PATTERN (H{{{SUSTAINED_READINGS}}}) WITHIN INTERVAL '{SUSTAINED_WITHIN_H}' HOUR
          DEFINE H AS H.news2_score >= {MEDIUM_RISK_THRESHOLD}
        )""")
    return ss


def create_kafka_tables(
    t_env: TableEnvironment,
    settings: Settings,
    t: Tables,
    *,
    prefix: str = "",
    bounded: bool = False,
) -> None:
    create_raw_source(
        t_env,
        settings,
        t.vitals_raw,
        topics.VITALS_OBSERVATION.name,
        prefix=prefix,
        bounded=bounded,
        group_id=prefix + STAGE,
    )
    sinks = {
        t.news2: topics.VITALS_NEWS2.name,
        t.alerts: topics.ALERT_V1.name,
        t.dead_letters: topics.DEAD_LETTER.name,
    }
    create_sinks(t_env, settings, sinks, prefix=prefix)


def start(settings: Settings, *, prefix: str = "", bounded: bool = False) -> TableResult:
    """Submit the job over Kafka topics named `prefix + topic`; returns without waiting."""
    kafka_io.ensure_topics(settings, INPUT_TOPICS + OUTPUT_TOPICS, prefix=prefix)
    t_env = table_env(settings)
    tables = Tables(source_topic=prefix + topics.VITALS_OBSERVATION.name)
    create_kafka_tables(t_env, settings, tables, prefix=prefix, bounded=bounded)
    return build(t_env, tables).execute()


def run(settings: Settings, *, prefix: str = "", bounded: bool = False) -> None:
    """Run the job; returns when a bounded run has drained its input (an unbounded one never)."""
    start(settings, prefix=prefix, bounded=bounded).wait()


def main(argv: list[str] | None = None) -> None:
    job_main(__doc__, STAGE, run, argv)


if __name__ == "__main__":
    main()
