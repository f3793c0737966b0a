"""Data-quality job: every input feed watched per source (topic, facility, unit) in event-time
windows → quality.event.v1 (feed silence, volume drop/surge, dead-lettered share by reason,
missingness, distribution shift, unit-conversion suspects, duplicate storms; each with its
evidence, and `action` quarantine/clear for the quarantine registry, udfs/quarantine.py), and
each device for a frozen feed (its numerics repeated bit for bit: `frozen_device`).

vitals, labs, device numerics, ADT (raw Kafka records, rowtime = record timestamp)
  ├─ behind the watermark ───────────────────────── dead-letter topic (reason `late`)
  └─ decode + validate in the JVM, leniently (udfs/java_decode.py `…Lenient`: a record refused
     for a value keeps its values, e.g. a temperature of 98.6 refused as out of range)
       ├─ undecodable (no source to count it in) ── dead-letter topic (reason per record)
       ├─ event-time tumbling windows (`quality_window_min`) per source and unit, and per source
          of the whole facility (unit `*`), in Flink SQL generated from the topics' schemas and
          the reference (udfs/quality_reference.json): records, distinct record ids, refusals
          by reason, and per numeric parameter its non-null count, mean, median and counts over
          the reference's bins, accepted AND refused values
            → per source, at window rate: udfs.flink_quality.QualityMonitor (keyed state, an
              event-time timer for silence) running udfs/quality.py's monitors
            → quality.event.v1
       └─ on the inputs whose records name their device (FROZEN_INPUTS), one-minute tumbling
          windows per device (`device_windows_sql`: its readings, and its values where all
          were identical), then per device an OVER window in event time that hands on only a
          window repeating the one before and the window after such a one (`frozen_sql`)
            → per facility, at that rate: udfs.flink_quality.FrozenFeedMonitor (the facility's
              whole sources' windows the clock for a device falling silent)
            → quality.event.v1 (`frozen_device`, no action)

Both kinds of window leave SQL as one stream (schemas.rows.MONITOR_WINDOW), keyed by facility
into both monitors: each conversion of a table to a stream plans its own copy of the decoding.

Counts add up: every on-time record that decodes is in exactly one unit window (and one
facility window); every other record is dead-lettered here. Refused records are counted, not
dead-lettered again: the jobs that use the values dead-letter them.

The lenient decoder refuses no value alone (udfs/java_decode.py): a value out of range or NaN
refuses its record here (`out_of_range` / `not_a_number`, counted in the dead-lettered share
by reason, `dead_letter_share`), also on the topics whose strict decoder refuses the value
alone (schemas.codec, "Refused values"). So a share here counts records of which the screening
job, for the same input, screens most (those with a measurement left: a value in range, or an
observation's ACVPU) and dead-letters only the values
(`value_out_of_range` / `value_not_a_number`, one letter per value, beside the screened record):
the share measures a source's records with bad values, not the records the screening job lost.
"""

from __future__ import annotations

import itertools

from pyflink.common import Types
from pyflink.table import StreamTableEnvironment

from jobs.runtime.flink_env import rowtime_from_stream
from jobs.runtime.job import Job, Sinks, Sources
from jobs.runtime.tables import EPOCH_MS, dead_letters_insert_sql, decoded_views
from schemas import rows, topics
from schemas.rows import quote
from schemas.settings import Settings
from udfs import java_decode, quality
from udfs.device import MEDIAN_FUNCTION
from udfs.flink import decoded_columns
from udfs.flink_quality import QUALITY_EVENT_TYPE, FrozenFeedMonitor, QualityMonitor

STAGE = "data_quality"
# udfs.flink_quality.QualityMonitor's operator id in the plan before `frozen_device` (Flink's
# hash then; pinned so that a savepoint of that version restores its state) and the
# FrozenFeedMonitor's uid.
QUALITY_MONITOR_UID_HASH = "0e5353c8a341aca94444642d12ade674"
FROZEN_MONITOR_UID = "frozen-feed-monitor"
INPUTS = {
    "vitals": topics.VITALS_OBSERVATION,
    "labs": topics.LABS_RESULT,
    "device": topics.VITALS_DEVICE,
    "adt": topics.ADT_EVENT,
}
OUTPUTS = {"quality_events": topics.QUALITY_EVENT, "dead_letters": topics.DEAD_LETTER}
# Each topic's record id (a device sends no id: device and time identify its numerics).
RECORD_ID = {
    "vitals": "observation_id",
    "labs": "result_id",
    "device": "CONCAT(device_id, '@', CAST(kafka_ts AS STRING))",
    "adt": "event_id",
}
UNIT = {"adt": "COALESCE(unit_id, prior_unit_id, 'unknown')"}
# The inputs whose records name the device that sent them (a `device_id`): judged per device
# for a frozen feed (udfs.quality.FrozenFeed). The monitors' numerics, and vitals charted by a
# device gateway (an observation without a device id is a person's charting, or a replay's:
# a repeat there is no device's fault).
FROZEN_INPUTS = tuple(n for n, t in INPUTS.items() if "device_id" in t.schema.field_names)
# The reasons a record that decoded can be refused for (schemas/codec.py).
REFUSALS = ("out_of_range", "not_a_number", "bad_enum", "missing_field", "timestamp_mismatch")


def parameters(name: str) -> tuple[str, ...]:
    """The topic's numeric fields (the decoded ones: not timestamps)."""
    have = set(decoded_columns(INPUTS[name].schema_name))
    return tuple(n for n in INPUTS[name].schema.numeric_fields if n in have)


def _double(x: float) -> str:
    return f"CAST({x!r} AS DOUBLE)"


def parameter_sql(p: str, ref: quality.ParameterReference | None) -> str:
    """[present, mean, median, bin counts…] of one parameter over a window, as JSON."""
    v = quote(p)  # a DOUBLE of the quality view
    parts = [f"COUNT({v})", f"AVG({v})", f"{MEDIAN_FUNCTION}(CAST({v} AS FLOAT))"]
    if ref is not None:
        bounds = [None, *ref.edges, None]
        for lo, hi in itertools.pairwise(bounds):
            cond = " AND ".join(
                c
                for c in (
                    f"{v} >= {_double(lo)}" if lo is not None else "",
                    f"{v} < {_double(hi)}" if hi is not None else "",
                )
                if c
            )
            parts.append(f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)")
    return f"JSON_ARRAY({', '.join(parts)} NULL ON NULL)"


def windows_sql(name: str, topic: str, window_min: int, reference: quality.Reference) -> str:
    """One row per window of each unit's source and of the facility's whole source
    (schemas.rows.QUALITY_WINDOW, plus `rowtime`)."""
    refused = ", ".join(
        f"'{c}' VALUE COUNT(CASE WHEN reason_code = '{c}' THEN 1 END)" for c in REFUSALS
    )
    ref = reference.topic(topic)
    params = parameters(name)
    entries = ", ".join(f"'{p}' VALUE {parameter_sql(p, ref.parameters.get(p))}" for p in params)
    params_json = f"JSON_OBJECT({entries})" if params else "'{}'"
    interval = f"INTERVAL '{window_min}' MINUTE"
    table = f"TABLE(TUMBLE(TABLE {name}_quality, DESCRIPTOR(kafka_ts), {interval}))"
    end = f"({EPOCH_MS.format('window_time')} + 1)"
    common = f"""
        '{topic}' AS source_topic, facility_id,
        {end} - {window_min * quality.MS_PER_MIN} AS window_start_ms, {end} AS window_end_ms,
        COUNT(*) AS records, COUNT(DISTINCT record_id) AS distinct_ids,
        JSON_OBJECT({refused}) AS refused_json"""
    samples = (
        "CONCAT_WS(' ', MIN(record_id), MAX(record_id), "
        "MIN(CASE WHEN reason_code IS NOT NULL THEN record_id END)) AS sample_ids"
    )
    return f"""
    SELECT {common.replace("facility_id,", "facility_id, unit_id,")}, {params_json} AS params_json,
           {samples}, window_time AS rowtime
    FROM {table}
    GROUP BY facility_id, unit_id, window_start, window_end, window_time
    UNION ALL
    SELECT {common.replace("facility_id,", f"facility_id, '{quality.WHOLE_FACILITY}' AS unit_id,")},
           '{{}}' AS params_json, {samples}, window_time AS rowtime
    FROM {table}
    GROUP BY facility_id, window_start, window_end, window_time"""


def quality_view_sql(name: str) -> str:
    """The records a window counts: every on-time record that decoded (refused or not), with its
    record id, unit, numeric fields and, on an input of FROZEN_INPUTS, its device."""
    cols = ", ".join(f"CAST({quote(p)} AS DOUBLE) AS {quote(p)}" for p in parameters(name))
    device = " device_id," if name in FROZEN_INPUTS else ""
    return f"""
    SELECT {RECORD_ID[name]} AS record_id, facility_id, {UNIT.get(name, "unit_id")} AS unit_id,
          {device} reason_code{", " + cols if cols else ""}, kafka_ts
    FROM {name}_decoded
    WHERE reason_code IS NULL OR reason_code <> 'undecodable'"""


def device_windows_sql(name: str, topic: str, t: quality.Thresholds) -> str:
    """One row per device (of a facility: device ids are a facility's own) and
    `t.frozen_window_min` window of input `name`'s records that name their device (every record
    the windows count): its readings (distinct record ids: a record delivered twice is one
    reading), their first and last time and record id, and `values_json`, {parameter: value},
    where every reading had the same parameters with the same values (a parameter's least and
    greatest equal, present in all or none), at least `t.frozen_min_varying` of them of
    udfs.quality.FROZEN_VARYING above 0 (a probe off, an empty bed's zeros) and below its
    ceiling; else null."""
    params = parameters(name)
    n = "COUNT(*)"  # every delivery: a parameter present in all of them or none
    same = " AND ".join(
        f"(COUNT({v}) = 0 OR (COUNT({v}) = {n} AND MIN({v}) = MAX({v})))"
        for v in map(quote, params)
    )
    varying = " + ".join(
        f"CASE WHEN COUNT({quote(p)}) > 0 AND MIN({quote(p)}) > {_double(0.0)}"
        + ("" if ceiling is None else f" AND MIN({quote(p)}) < {_double(ceiling)}")
        + " THEN 1 ELSE 0 END"
        for p, ceiling in quality.FROZEN_VARYING.items()
        if p in params
    )
    values = ", ".join(f"'{p}' VALUE MIN({quote(p)})" for p in params)
    interval = f"INTERVAL '{t.frozen_window_min}' MINUTE"
    end = f"({EPOCH_MS.format('window_time')} + 1)"
    return f"""
    SELECT '{topic}' AS source_topic, device_id, facility_id, MAX(unit_id) AS unit_id,
           {end} - {t.frozen_window_min * quality.MS_PER_MIN} AS window_start_ms,
           {end} AS window_end_ms, COUNT(DISTINCT record_id) AS records,
           {EPOCH_MS.format("MIN(kafka_ts)")} AS first_ms,
           {EPOCH_MS.format("MAX(kafka_ts)")} AS last_ms,
           CASE WHEN {same} AND {varying or "0"} >= {t.frozen_min_varying}
                THEN JSON_OBJECT({values} ABSENT ON NULL) END AS values_json,
           MIN(record_id) AS first_id, MAX(record_id) AS last_id, window_time AS rowtime
    FROM TABLE(TUMBLE(TABLE {name}_quality, DESCRIPTOR(kafka_ts), {interval}))
    WHERE device_id IS NOT NULL
    GROUP BY facility_id, device_id, window_start, window_end, window_time"""


def frozen_sql(windows: list[str]) -> str:
    """schemas.rows.DEVICE_WINDOW (and `rowtime`) of the device windows `windows` (SQL of
    `device_windows_sql`, one per input) that repeat the values of the device's previous window,
    and of the window after such a one (where the run ends or goes on): per device, an OVER
    window of its windows in event time compares each with the two before it (LAG), in the JVM,
    so that only those reach the Python monitor (a 12-hospital system's 15,000 monitors send one
    a second; a device whose readings move is never handed on).

    One OVER window per input, unioned after: a rowtime OVER window drops the rows at or behind
    its input's watermark, and a union's watermark is its inputs' least only while none is idle
    (after the idle timeout the 1 Hz device numerics would carry it past a quiet vitals
    gateway's windows; jobs/runtime/tables.py)."""
    return " UNION ALL ".join(_frozen_one_sql(w) for w in windows)


def _frozen_one_sql(windows: str) -> str:
    over = "OVER (PARTITION BY source_topic, facility_id, device_id ORDER BY rowtime)"
    lags = {
        "previous_values": "LAG(values_json, 1)",
        "values_before": "LAG(values_json, 2)",
        "previous_first_ms": "LAG(first_ms, 1)",
        "previous_last_ms": "LAG(last_ms, 1)",
        "previous_records": "LAG(records, 1)",
        "previous_first_id": "LAG(first_id, 1)",
    }
    lagged = ", ".join(f"{call} {over} AS {col}" for col, call in lags.items())
    select = rows.DEVICE_WINDOW.select_sql(
        {"repeats": "COALESCE(values_json = previous_values, FALSE)"}
    )
    return f"""
    SELECT {select}, rowtime FROM (
        SELECT *, {lagged} FROM ({windows}))
    WHERE values_json = previous_values OR previous_values = values_before"""


def window_views(t_env: StreamTableEnvironment, settings: Settings, sources: Sources) -> None:
    """Views `<input>_late`, `<input>_decoded` (lenient), `quality_windows`
    (schemas.rows.QUALITY_WINDOW and `rowtime`, every source's windows), `frozen_windows`
    (schemas.rows.DEVICE_WINDOW and `rowtime`, the device windows the frozen-feed monitor
    reads) and `monitor_windows` (schemas.rows.MONITOR_WINDOW and `rowtime`: both)."""
    reference = quality.load_reference()
    t_env.create_java_temporary_system_function(MEDIAN_FUNCTION, java_decode.MEDIAN_CLASS)
    windows = []
    for name, src in sources.items():
        decoded_views(t_env, name, INPUTS[name].schema_name, src.table, lenient=True)
        t_env.create_temporary_view(f"{name}_quality", t_env.sql_query(quality_view_sql(name)))
        # The source is the registry's topic, not the prefixed one read: the reference and the
        # quarantine registry (which the screening job matches) know it by that name.
        topic = INPUTS[name].name
        windows.append(windows_sql(name, topic, settings.quality_window_min, reference))
    cols = rows.QUALITY_WINDOW.column_list()
    t_env.create_temporary_view(
        "quality_windows",
        t_env.sql_query(f"SELECT {cols}, rowtime FROM ({' UNION ALL '.join(windows)})"),
    )
    t = quality.Thresholds()
    devices = [device_windows_sql(n, INPUTS[n].name, t) for n in sources if n in FROZEN_INPUTS]
    monitor = rows.MONITOR_WINDOW
    parts = [
        f"SELECT {monitor.select_sql(_nulls(rows.QUALITY_WINDOW))}, rowtime FROM quality_windows"
    ]
    if devices:
        t_env.create_temporary_view("frozen_windows", t_env.sql_query(frozen_sql(devices)))
        parts.append(
            f"SELECT {monitor.select_sql(_nulls(rows.DEVICE_WINDOW))}, rowtime FROM frozen_windows"
        )
    t_env.create_temporary_view("monitor_windows", t_env.sql_query(" UNION ALL ".join(parts)))


def _nulls(have: rows.Row) -> dict[str, str]:
    """Typed nulls for the columns of schemas.rows.MONITOR_WINDOW that rows of `have` lack."""
    return {
        f.name: f"CAST(NULL AS {rows.SQL_TYPES[f.kind]})"
        for f in rows.MONITOR_WINDOW.fields
        if f.name not in have.columns
    }


def build(
    t_env: StreamTableEnvironment, settings: Settings, sources: Sources, sinks: Sinks
) -> None:
    """Sources `vitals`, `labs`, `device`, `adt` → sinks `quality_events` and `dead_letters`."""
    window_views(t_env, settings, sources)
    # one stream out of SQL (each conversion plans its own copy of the decoding and windows)
    windows = t_env.to_data_stream(t_env.from_path("monitor_windows")).key_by(
        lambda r: r.facility_id, key_type=Types.STRING()
    )
    # The source monitor keeps the operator id Flink hashed for it before the frozen-device
    # monitor changed the plan (its open conditions and quarantine scopes restore from a
    # savepoint of that version); the frozen-device monitor has a uid of its own.
    monitors = windows.process(QualityMonitor(), output_type=QUALITY_EVENT_TYPE).set_uid_hash(
        QUALITY_MONITOR_UID_HASH
    )
    frozen = windows.process(FrozenFeedMonitor(), output_type=QUALITY_EVENT_TYPE).uid(
        FROZEN_MONITOR_UID
    )
    events = monitors.union(frozen)
    t_env.create_temporary_view(
        "quality_event_rows", t_env.from_data_stream(events, rowtime_from_stream())
    )
    ss = t_env.create_statement_set()
    undecodable = "reason_code = 'undecodable'"  # refused values are counted, not re-sent
    ss.add_insert_sql(dead_letters_insert_sql(sinks["dead_letters"], sources, STAGE, undecodable))
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["quality_events"]}`
        SELECT {rows.avro_values_sql(rows.QUALITY_EVENT, topics.QUALITY_EVENT.schema)},
               TO_TIMESTAMP_LTZ(event_time_ms, 3)
        FROM quality_event_rows""")
    ss.attach_as_datastream()


JOB = Job(STAGE, __doc__, INPUTS, OUTPUTS, build)

if __name__ == "__main__":
    JOB.main()
