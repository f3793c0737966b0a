"""Bed-census job: ADT events → each patient's bed → census per unit and facility, surge level.

adt.event.v1 (raw Kafka records, rowtime = record timestamp)
  ├─ behind the watermark ─────────────────────────────── dead-letter topic (reason `late`)
  └─ decode + validate (Python UDTF) ─ rejected ───────── dead-letter topic (reason per record)
       └─ keyed by patient, in event-time order: udfs.census.PatientPlacement
            ├─ refused (duplicate, unknown unit, not admitted, nothing to cancel…) ─ dead letters
            ├─ every accepted event and what it did ─────────── census.event topic
            └─ census deltas per unit (+ facility totals)
                 ├─ 1-minute windows, running sum → occupancy, %, surge level ── census.unit topic
                 └─ 1-hour windows: arrivals, discharges, transfers, cancels ─── census.flow topic

ADT received = census events + dead letters. The census at a minute boundary m counts every
event before m; a unit appears in census.unit only in minutes when it changed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from jobs.runtime import kafka_io
from jobs.runtime.cli import job_main
from jobs.runtime.flink_env import (
    execute,
    plan_once,
    process_by_patient,
    rowtime_from_stream,
    stream_table_env,
)
from jobs.runtime.tables import (
    LATE,
    ON_TIME,
    PAYLOAD,
    create_raw_source,
    create_sinks,
    dead_letter_sql,
    late_dead_letter_sql,
)
from schemas import topics
from schemas.capacity import ALL_UNITS, Capacity
from schemas.settings import Settings
from udfs.census import SURGE_LABELS
from udfs.flink import decode_udtf, decoded_columns
from udfs.flink_census import CENSUS_OUT_TYPE, CensusPlacement

STAGE = "bed_census"
ADT = topics.ADT_EVENT.name
OUTPUT_TOPICS = [
    topics.CENSUS_UNIT.name,
    topics.CENSUS_FLOW.name,
    topics.CENSUS_EVENT.name,
    topics.DEAD_LETTER.name,
]
EVENT_COLUMNS = (
    "event_id",
    "event_type",
    "patient_token",
    "facility_id",
    "unit_id",
    "bed_id",
    "source_topic",
    "kafka_partition",
    "kafka_offset",
    "payload",
)
EVENT_ROW = (
    "ROW<event_id STRING, event_type STRING, patient_token STRING, facility_id STRING, "
    "unit_id STRING, bed_id STRING, source_topic STRING, kafka_partition INT, "
    "kafka_offset BIGINT, payload BYTES>"
)
COUNTS = ("arrivals", "discharges", "transfers_in", "transfers_out", "cancels")


@dataclass(frozen=True)
class Tables:
    raw: str
    adt_topic: str
    census: str = "census_unit"
    flow: str = "census_flow"
    events: str = "census_events"
    dead_letters: str = "dead_letters"


def _planned_sql(t: Tables) -> str:
    """Dead letters of the SQL part and accepted events as one table, planned once."""
    cols = ", ".join(f"`{c}`" for c in decoded_columns(ADT))
    event = (
        "CAST(ROW(event_id, event_type, patient_token, facility_id, unit_id, bed_id, "
        f"'{t.adt_topic}', kafka_partition, kafka_offset, {PAYLOAD}) AS {EVENT_ROW})"
    )
    rejected = dead_letter_sql(t.adt_topic, STAGE, "d.reason_code", "d.reason")
    return f"""
    SELECT 'dead_letter' AS output, {late_dead_letter_sql(t.adt_topic, STAGE)} AS dead_letter,
           CAST(NULL AS {EVENT_ROW}) AS event, kafka_ts AS event_time
    FROM `{t.raw}` WHERE {LATE}
    UNION ALL
    SELECT CASE WHEN d.reason_code IS NULL THEN 'event' ELSE 'dead_letter' END,
           CASE WHEN d.reason_code IS NOT NULL THEN {rejected} END,
           CASE WHEN d.reason_code IS NULL THEN {event} END,
           kafka_ts
    FROM (SELECT * FROM `{t.raw}` WHERE {ON_TIME}) AS r,
         LATERAL TABLE(wf_decode_adt(r.`value`, r.kafka_ts_ms)) AS d({cols})"""


def _census_sql(capacity: Capacity) -> str:
    """Per-minute census: window sums, then a running sum of occupancy per unit/facility."""
    t1, t2, t3 = capacity.thresholds_pct
    level = (
        f"CASE WHEN pct >= {t3} THEN 3 WHEN pct >= {t2} THEN 2 WHEN pct >= {t1} THEN 1 ELSE 0 END"
    )
    labels = " ".join(f"WHEN {i} THEN '{name}'" for i, name in enumerate(SURGE_LABELS))
    counts = ", ".join(f"SUM({c}) AS {c}" for c in COUNTS)
    return f"""
    SELECT facility_id, unit_id, `scope`, window_start, window_end, occupied_beds, capacity_beds,
           pct AS occupancy_pct, surge_level, CASE surge_level {labels} END AS surge_label,
           {", ".join(COUNTS)}, window_time
    FROM (
      SELECT *, {level} AS surge_level FROM (
        SELECT *, CAST(occupied_beds AS DOUBLE) * 100 / capacity_beds AS pct FROM (
          SELECT facility_id, unit_id, `scope`, window_start, window_end, window_time,
                 CAST(SUM(occupied) OVER w AS INT) AS occupied_beds, capacity_beds,
                 {", ".join(COUNTS)}
          FROM (
            SELECT facility_id, unit_id, `scope`, window_start, window_end, window_time,
                   SUM(occupied) AS occupied, MAX(capacity) AS capacity_beds, {counts}
            FROM TABLE(TUMBLE(TABLE deltas, DESCRIPTOR(rowtime), INTERVAL '1' MINUTE))
            GROUP BY facility_id, unit_id, `scope`, window_start, window_end, window_time)
          WINDOW w AS (PARTITION BY facility_id, unit_id, `scope` ORDER BY window_time
                       ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW))))"""


def build(t_env: StreamTableEnvironment, t: Tables, capacity: Capacity) -> None:
    """Views up to `census_out` (the keyed function's output) and `deltas`, and every sink."""
    t_env.create_temporary_system_function("wf_decode_adt", decode_udtf(ADT))
    t_env.create_temporary_view("census_in", t_env.sql_query(_planned_sql(t)))
    plan_once(t_env, "census_in")
    # The function reads each record's timestamp (ctx.timestamp()), not the rowtime column,
    # whose Python datetime is wrong after 2038.
    placed = process_by_patient(
        t_env,
        "SELECT event.*, rowtime FROM planned WHERE output = 'event'",
        CensusPlacement(capacity),
        CENSUS_OUT_TYPE,
    )
    t_env.create_temporary_view("census_out", t_env.from_data_stream(placed, rowtime_from_stream()))
    counts = ", ".join(COUNTS)
    t_env.create_temporary_view(
        "deltas",
        t_env.sql_query(f"""
        SELECT facility_id, unit_id, 'unit' AS `scope`, occupied, {counts},
               unit_capacity AS capacity, rowtime
        FROM census_out WHERE kind = 'delta'
        UNION ALL
        SELECT facility_id, '{ALL_UNITS}', 'facility', occupied, arrivals, discharges,
               transfers_in, transfers_out, cancels, facility_capacity, rowtime
        FROM census_out WHERE kind = 'delta'"""),
    )

    ss = t_env.create_statement_set()
    ss.add_insert_sql(f"""
        INSERT INTO `{t.dead_letters}`
        SELECT dead_letter.*, rowtime FROM planned WHERE output = 'dead_letter'
        UNION ALL
        SELECT source_topic, source_partition, source_offset,
               CAST(TO_TIMESTAMP_LTZ(event_time_ms, 3) AS TIMESTAMP(3)), '{STAGE}', outcome,
               reason, payload, rowtime
        FROM census_out WHERE kind = 'dead_letter'""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.events}`
        SELECT event_id, event_type, patient_token, facility_id, unit_id,
               CAST(TO_TIMESTAMP_LTZ(event_time_ms, 3) AS TIMESTAMP(3)), outcome, reason, rowtime
        FROM census_out WHERE kind = 'event'""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.census}`
        SELECT facility_id, unit_id, `scope`, window_start, window_end, occupied_beds,
               capacity_beds, occupancy_pct, surge_level, surge_label, {counts},
               CAST(window_end AS TIMESTAMP_LTZ(3))
        FROM ({_census_sql(capacity)})""")
    ss.add_insert_sql(f"""
        INSERT INTO `{t.flow}`
        SELECT facility_id, unit_id, `scope`, window_start, window_end,
               {", ".join(f"CAST(SUM({c}) AS INT)" for c in COUNTS)},
               CAST(window_end AS TIMESTAMP_LTZ(3))
        FROM TABLE(TUMBLE(TABLE deltas, DESCRIPTOR(rowtime), INTERVAL '1' HOUR))
        GROUP BY facility_id, unit_id, `scope`, window_start, window_end""")
    ss.attach_as_datastream()


def create_kafka_tables(
    t_env: StreamTableEnvironment, settings: Settings, *, prefix: str = "", bounded: bool = False
) -> Tables:
    t = Tables(raw="adt_raw", adt_topic=prefix + ADT)
    create_raw_source(
        t_env, settings, t.raw, ADT, prefix=prefix, bounded=bounded, group_id=prefix + STAGE
    )
    sinks = {
        t.census: topics.CENSUS_UNIT.name,
        t.flow: topics.CENSUS_FLOW.name,
        t.events: topics.CENSUS_EVENT.name,
    }
    create_sinks(t_env, settings, {**sinks, t.dead_letters: topics.DEAD_LETTER.name}, prefix=prefix)
    return t


def pipeline(
    settings: Settings, *, prefix: str = "", bounded: bool = False
) -> StreamExecutionEnvironment:
    kafka_io.ensure_topics(settings, [ADT, *OUTPUT_TOPICS], prefix=prefix)
    env, t_env = stream_table_env(settings)
    tables = create_kafka_tables(t_env, settings, prefix=prefix, bounded=bounded)
    build(t_env, tables, Capacity.load(settings.capacity_file))
    return env


def run(settings: Settings, *, prefix: str = "", bounded: bool = False) -> None:
    """Run the job; returns when a bounded run has drained its input (an unbounded one never,
    unless interrupted: then it is cancelled, its transactions aborted, checkpoints retained)."""
    execute(pipeline(settings, prefix=prefix, bounded=bounded), settings.job_name)


def main(argv: list[str] | None = None) -> None:
    job_main(__doc__, STAGE, run, argv)


if __name__ == "__main__":
    main()
