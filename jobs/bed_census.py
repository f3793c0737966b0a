"""Bed-census job: ADT events → each patient's bed → census per unit and facility, surge level.

adt.event.v1 (raw Kafka records, rowtime = record timestamp)
  ├─ behind the watermark ─────────────────────────────── dead-letter topic (reason `late`)
  └─ decode + validate (JVM) ─ rejected, or a unit with no capacity ─ dead-letter topic
       └─ keyed by patient, in event-time order: udfs/java/CensusPlacement.java, the JVM
          process table function of udfs.census.PatientPlacement (the Python reference)
            ├─ refused (duplicate, not admitted, nothing to cancel…) ─ dead letters
            ├─ every accepted event and what it did ─────────── census.event topic
            └─ census deltas per unit (+ facility totals)
                 ├─ 1-minute windows, running sum → occupancy, %, surge level ── census.unit topic
                 └─ 1-hour windows: arrivals, discharges, transfers, cancels ─── census.flow topic

ADT received = census events + dead letters. The census at a minute boundary m counts every
event timed before m; a unit appears in census.unit only in minutes when it changed. An event's
time is its record timestamp, when the system knew of it (schemas.codec.record_time): an
admission or discharge entered after the fact counts from when it was entered, not `late`.
Every step runs in the JVM; the capacities and the unit check are SQL generated from the
capacity file.
"""

from __future__ import annotations

from pyflink.table import StreamTableEnvironment

from jobs.runtime.job import Job, Sinks, Source, Sources
from jobs.runtime.tables import (
    LATE,
    ON_TIME,
    PAYLOAD,
    dead_letter_sql,
    late_dead_letter_sql,
)
from schemas import topics
from schemas.capacity import ALL_UNITS, Capacity
from schemas.rows import CENSUS_IN, CENSUS_OUT, avro_values_sql
from schemas.settings import Settings
from udfs import java_decode
from udfs.census import (
    DISCHARGED_FROM_SQL,
    SURGE_LABELS,
    UNIT_BEDS_FUNCTION,
    check_unit_sql,
    facility_beds_sql,
    stale_type_sql,
    unit_beds_sql,
)
from udfs.flink import decoded_row

STAGE = "bed_census"
ADT = topics.ADT_EVENT.name
INPUTS = {"adt": topics.ADT_EVENT}
OUTPUTS = {
    "census_unit": topics.CENSUS_UNIT,
    "census_flow": topics.CENSUS_FLOW,
    "census_events": topics.CENSUS_EVENT,
    "dead_letters": topics.DEAD_LETTER,
}
# A refused event as a dead letter: its source record, event time and the census's reason.
REFUSED = avro_values_sql(
    CENSUS_OUT,
    topics.DEAD_LETTER.schema,
    rename={"source_timestamp": "event_time_ms", "reason_code": "outcome"},
    exprs={"stage": f"'{STAGE}'", "payload_ref": "CAST(NULL AS STRING)"},
)
COUNTS = ("arrivals", "discharges", "transfers_in", "transfers_out", "cancels")


def _planned_sql(adt: Source, capacity: Capacity) -> str:
    """Dead letters of the SQL part and accepted events as one table (every sink reads it; the
    planner reuses its one source scan and decode across the statement set)."""
    cols = decoded_row(ADT).column_list()
    event = CENSUS_IN.cast_sql(
        {
            "source_topic": f"'{adt.topic}'",
            "payload": PAYLOAD,
            "unit_id": DISCHARGED_FROM_SQL,
            "event_type": stale_type_sql(),  # the placement decides (udfs.census.is_stale)
        }
    )
    unknown = check_unit_sql(capacity, "d.event_type", "d.facility_id", "d.unit_id")
    rejected = dead_letter_sql(
        adt.topic,
        STAGE,
        "COALESCE(d.reason_code, 'unknown_unit')",
        "COALESCE(d.reason, unknown_unit)",
    )
    return f"""
    SELECT 'dead_letter' AS output, {late_dead_letter_sql(adt.topic, STAGE)} AS dead_letter,
           {CENSUS_IN.null_sql()} AS event, kafka_ts AS rowtime
    FROM `{adt.table}` WHERE {LATE}
    UNION ALL
    SELECT CASE WHEN refused THEN 'dead_letter' ELSE 'event' END,
           CASE WHEN refused THEN {rejected} END,
           CASE WHEN NOT refused THEN {event} END,
           kafka_ts
    FROM (
      SELECT *, reason_code IS NOT NULL OR unknown_unit IS NOT NULL AS refused FROM (
        SELECT r.*, d.*, {unknown} AS unknown_unit
        FROM (SELECT * FROM `{adt.table}` WHERE {ON_TIME}) AS r,
             LATERAL TABLE(wf_decode_adt(r.`value`, r.kafka_ts)) AS d({cols}))) AS d"""


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


def build(
    t_env: StreamTableEnvironment, settings: Settings, sources: Sources, sinks: Sinks
) -> None:
    """Source `adt` → sinks `census_unit`, `census_flow`, `census_events`, `dead_letters`:
    views up to `census_out` (the keyed function's output) and `deltas`, and every sink."""
    capacity = Capacity.load(settings.capacity_file)
    # No idle-state TTL: a unit's running census and a patient's bed must outlive any silence.
    # The state is bounded without it: a running sum per unit, windows closed by the watermark,
    # and a patient's placement, cleared a week after they leave (CensusPlacement.java).
    t_env.get_config().set("table.exec.state.ttl", "0 ms")
    t_env.create_java_temporary_system_function("wf_decode_adt", java_decode.function_class(ADT))
    t_env.create_java_temporary_system_function(UNIT_BEDS_FUNCTION, java_decode.UNIT_BEDS_CLASS)
    t_env.create_java_temporary_system_function(
        "wf_census_placement", java_decode.CENSUS_PLACEMENT_CLASS
    )
    t_env.create_temporary_view("planned", t_env.sql_query(_planned_sql(sources["adt"], capacity)))
    t_env.create_temporary_view(
        "placing",
        t_env.sql_query("SELECT event.*, rowtime FROM planned WHERE output = 'event'"),
    )
    unit_beds = unit_beds_sql(capacity, "facility_id", "unit_id")
    facility_beds = facility_beds_sql(capacity, "facility_id")
    capacities = {
        "unit_capacity": f"CASE WHEN kind = 'delta' THEN {unit_beds} END",
        "facility_capacity": f"CASE WHEN kind = 'delta' THEN {facility_beds} END",
    }
    t_env.create_temporary_view(
        "census_out",
        t_env.sql_query(f"""
        SELECT {CENSUS_OUT.select_sql(capacities)}, rowtime
        FROM TABLE(wf_census_placement(
          input => TABLE placing PARTITION BY patient_token,
          on_time => DESCRIPTOR(rowtime),
          uid => 'census-placement'))"""),
    )
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
        INSERT INTO `{sinks["dead_letters"]}`
        SELECT dead_letter.*, rowtime FROM planned WHERE output = 'dead_letter'
        UNION ALL
        SELECT {REFUSED}, rowtime FROM census_out WHERE kind = 'dead_letter'""")
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["census_events"]}`
        SELECT {avro_values_sql(CENSUS_OUT, topics.CENSUS_EVENT.schema)}, rowtime
        FROM census_out WHERE kind = 'event'""")
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["census_unit"]}`
        SELECT facility_id, unit_id, `scope`, window_start, window_end, occupied_beds,
               capacity_beds, occupancy_pct, surge_level, surge_label, {counts},
               CAST(window_end AS TIMESTAMP_LTZ(3))
        FROM ({_census_sql(capacity)})""")
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["census_flow"]}`
        SELECT facility_id, unit_id, `scope`, window_start, window_end,
               {", ".join(f"CAST(SUM({c}) AS INT)" for c in COUNTS)},
               CAST(window_end AS TIMESTAMP_LTZ(3))
        FROM TABLE(TUMBLE(TABLE deltas, DESCRIPTOR(rowtime), INTERVAL '1' HOUR))
        GROUP BY facility_id, unit_id, `scope`, window_start, window_end""")
    ss.attach_as_datastream()


JOB = Job(STAGE, __doc__, INPUTS, OUTPUTS, build)


if __name__ == "__main__":
    JOB.main()
