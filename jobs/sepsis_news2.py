"""Sepsis screening job (spine): vitals → NEWS2 per reading → sustained-NEWS2 alerts.

source (raw Kafka records) → decode + validate (Python UDF) ─┬─ rejected → dead-letter topic
                                                              └─ accepted → NEWS2 (Python UDF)
                                                                   ├─ scored readings topic
                                                                   └─ MATCH_RECOGNIZE → alert topic

Scores each reading alone (no value carried forward from an earlier one). A value refused alone
by the decoder (schemas.codec, "Refused values": out of range or NaN, the reading accepted with
it null and each refused value dead-lettered `value_out_of_range` / `value_not_a_number`, one
letter a value) scores as a
parameter not charted: a FiO2 charted in percent (40 for 0.40) makes the oxygen status unknown
(0 points instead of 2; the reading's own oxygen flag is refused with it, wardflow.refused_with),
so the reading can score below 5 and break a two-in-a-row sustained-NEWS2 pattern that, with
the whole reading rejected before, its neighbours would have made. So can a reading kept by its
ACVPU alone (every other value refused; ACVPU is `"wardflow.measurement"`), scored on its ACVPU
only. Not deployed: the screening job carries values forward.

Kept because a benchmark needs it: `bench/spine.py` runs it against the same pipeline in Java-only
Flink SQL (`bench/java_baseline.py`) to measure what the Python UDFs cost. The screening job is
`jobs/sepsis_screen.py`.
"""

from __future__ import annotations

from pyflink.table import StreamTableEnvironment

from jobs.runtime.job import Job, Sinks, Sources
from jobs.runtime.tables import dead_letter_sql, rejected_sql
from schemas import topics
from schemas.settings import Settings
from udfs.flink import DECODED_ROW, decode_observation_udtf, news2_udf
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
INPUTS = {"vitals": topics.VITALS_OBSERVATION}
OUTPUTS = {
    "vitals_news2": topics.VITALS_NEWS2,
    "alerts": topics.ALERT_V1,
    "dead_letters": topics.DEAD_LETTER,
}


def build(
    t_env: StreamTableEnvironment, settings: Settings, sources: Sources, sinks: Sinks
) -> None:
    """Source `vitals` → sinks `vitals_news2`, `alerts`, `dead_letters`."""
    vitals = sources["vitals"]
    t_env.create_temporary_system_function("wf_decode_observation", decode_observation_udtf())
    t_env.create_temporary_system_function("wf_news2", news2_udf())
    cols = DECODED_ROW.column_list()
    fields = ", ".join(f"`{f.name}`" for f in DECODED_FIELDS)
    t_env.create_temporary_view(
        "decoded",
        t_env.sql_query(f"""
        SELECT d.*, r.`value`, r.kafka_partition, r.kafka_offset, r.kafka_ts
        FROM `{vitals.table}` AS r,
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
        INSERT INTO `{sinks["dead_letters"]}`
        SELECT dead_letter.*, kafka_ts FROM (
            SELECT {dead_letter_sql(vitals.topic, STAGE, "reason_code", "reason")} AS dead_letter,
                   kafka_ts
            FROM ({rejected_sql("decoded", DECODED_ROW)}))""")
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["vitals_news2"]}`
        SELECT observation_id, patient_token, facility_id, unit_id,
               CAST(event_time AS TIMESTAMP(3)), heart_rate_bpm, resp_rate_per_min, spo2_pct,
               temp_c, sbp_mmhg, news2_score, news2_params_scored, news2_red_flag,
               kafka_partition, kafka_offset, event_time
        FROM scored""")
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["alerts"]}`
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
    ss.attach_as_datastream()


JOB = Job(STAGE, __doc__, INPUTS, OUTPUTS, build)


if __name__ == "__main__":
    JOB.main()
