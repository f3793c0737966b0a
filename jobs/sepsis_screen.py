"""Sepsis screening job: device numerics + charted vitals + labs + ADT → patient state → rule
patterns → alert lifecycle.

device numerics (about 1 Hz per monitor), vitals, labs, ADT (raw Kafka records, rowtime = record
timestamp)
  ├─ behind the watermark ─────────────────────────── dead-letter topic (reason `late`)
  └─ decode + validate (JVM functions generated from the schemas: udfs/java_decode.py)
       ├─ rejected ────────────────────────────────── dead-letter topic (reason per record)
       ├─ accepted with values refused alone (one out of range or NaN: schemas.codec, "Refused
       │  values"; the record goes on with those values null) ── dead-letter topic, one per
       │  refused value (value_out_of_range / value_not_a_number, naming its field)
       ├─ device numerics → per patient-minute: median of the valid seconds (udfs/device.py,
       │  JVM process table function; each patient's minute in its own phase) ── vitals.charted
       │  topic, and a vitals record
       └─ union per patient (charted minutes, not device seconds) → event-time OVER window
          (accumulating: a last value and its time per parameter; idle patients' state goes
          with the state TTL):
          last valid value of each parameter (udfs.sepsis.VALIDITY_H, never across a
          discharge of the stay: jobs/runtime/stays.py) → scores (SQL generated from the
          Python tables: udfs.sepsis.screen_sql)
            ├─ screened state ──────────────────────── sepsis.screen topic
            └─ with scoring (jobs/screening/scoring.py): stream features → ONNX champion and
               shadow challenger (vectorised UDF, Feast static features), evaluated once per
               state ── sepsis.score topic (a row per model); without scoring, straight on
               └─ rules (jobs/screening/rules.py): every run rule in one event-time OVER
                  window; each state unnested into its hits (the rules', a discharge's, the
                  champion's at risk ≥ threshold: rule model_sepsis_risk), on one path
                  └─ keyed state + timers (JVM process table function, udfs.lifecycle):
                     raise → escalate → resolve ── alert.v2 topic

A quarantined source or parameter of a source (udfs/quarantine.py; set by a data-quality event
through sinks/quarantine.py, or by an operator) is checked per record in the JVM
(`QUARANTINE_FUNCTION`, io.wardflow.udf.Quarantine, which re-reads the registry's TSV when it
changes): its records still make a state row (and charted minutes still go to vitals.charted), but
the quarantined parameters' values (every one, for a whole-source quarantine) are null in
`events`, so no state, rule or model feature sees them, while the record's other values still
count (a unit's faulty temperature probe leaves its heart rates screened); the state's
`quarantine_json` names the quarantines and their parameters while a record whose value was
ignored lies in its window, and every hit's evidence carries it. A record that carried no value
a quarantine ignores (a blood-pressure-only observation of a unit whose temp_c is quarantined; a
quarantine of a parameter the state does not use) is not marked.

Python runs only at clinical rate: the scoring UDF (vectorised) sees charted states, never
device records. The alert lifecycle runs in the JVM (udfs/java/AlertLifecycle.java), equal to
the Python reference udfs.lifecycle.

Planned in two stages, each into one DataStream: stage one up to the screened state (`views`,
`stage_one_sql`), stage two over its states (`stage_two`: scoring, then the rules). Flink plans a
view that several queries read once per reader, so in one plan every rule and sink ran its own
copy of the state window and the champion and challenger score rows each ran the UDF. No
event-time operator reads two paths from one fork (tests/flink_harness.event_time_diamonds).
"""

from __future__ import annotations

from pathlib import Path

from pyflink.table import StreamTableEnvironment

from feature_store.definitions import (
    LAB_AGE,
    LAB_AGE_CAP_H,
    ROLLING,
    STREAM_FEATURES,
    lab_age_name,
    rolling_name,
)
from jobs.runtime import stays
from jobs.runtime.flink_env import plan_once
from jobs.runtime.job import Job, Sinks, Sources
from jobs.runtime.stays import adt_copies_sql, visit_columns_sql
from jobs.runtime.tables import (
    DEAD_LETTER_ROW,
    dead_letter_sql,
    decoded_views,
    late_dead_letter_sql,
    merged_late_dead_letter_sql,
    merged_late_views,
)
from jobs.screening.rules import (
    RULES,
    picked,
    register_rule_functions,
    rule_branches,
    window_sql,
)
from jobs.screening.scoring import (
    ISO,
    MODEL_FIRES,
    Scoring,
    feature_events_sql,
    model_hit_values,
    register_feature_functions,
    score_rows_sql,
    scored_sql,
)
from schemas import topics
from schemas.rows import (
    ALERT_EVENT,
    MEASURED_TIME,
    SCORED_STATE,
    SQL_TYPES,
    Field,
    Row,
    avro_values_sql,
    from_avro,
    quote,
)
from schemas.settings import Settings
from udfs import java_decode
from udfs.device import CHANNEL_PARAMS, CHART_FUNCTION, chart_input_sql, chart_sql
from udfs.flink import decoded_columns
from udfs.lifecycle import LIFECYCLE_FUNCTION, lifecycle_sql
from udfs.quarantine import QuarantineRegistry, ignores_sql
from udfs.sepsis import (
    MAX_VALIDITY_H,
    OXYGEN_PAIR,
    STATE_PARAMS,
    VALIDITY_H,
    contradicted_sql,
    screen_sql,
)

STAGE = "sepsis_screen"
QUARANTINE_FUNCTION = "wf_quarantine"
INPUTS = {
    "device": topics.VITALS_DEVICE,
    "vitals": topics.VITALS_OBSERVATION,
    "labs": topics.LABS_RESULT,
    "adt": topics.ADT_EVENT,
}
ID_FIELDS = {"vitals": "observation_id", "labs": "result_id", "adt": "event_id"}
OUTPUTS = {  # sink -> topic; the score sink is there whether or not a champion is registered
    "sepsis_screen": topics.SEPSIS_SCREEN,
    "vitals_charted": topics.VITALS_CHARTED,
    "alert_events": topics.ALERT_V2,
    "sepsis_scores": topics.SEPSIS_SCORE,
    "dead_letters": topics.DEAD_LETTER,
}
SCREEN = topics.SEPSIS_SCREEN.schema
SCORE = topics.SEPSIS_SCORE.schema

# A discharge resolves the patient's open alerts: a RULE_HIT of kind `discharge` (the values of
# a branch of jobs/screening/rules.picked).
DISCHARGE = {
    "kind": "'discharge'",
    "rule_id": "''",
    "rule_version": "''",
    "severity": "''",
    "first_time": "CAST(event_time AS TIMESTAMP(3))",
    "first_record_id": "record_id",
    "last_record_id": "record_id",
    "score_name": "''",
    "score_value": "0",
    "evidence_json": "'{}'",
}
# NEWS2, SIRS, qSOFA and partial SOFA of a state in the JVM: SQL generated from the Python
# tables (udfs.sepsis.screen_sql, equal to udfs.sepsis.screen_row on every row of set A).
SCORES = ", ".join(
    f"CAST({sql} AS {SCREEN.field(name).flink_type().removesuffix(' NOT NULL')}) AS {name}"
    for name, sql in screen_sql().items()
)
CHARTED = topics.VITALS_CHARTED.schema
CHARTED_ROW = CHARTED.flink_row()


def _quarantine_sql(tsv: str, topic: str, event_time: str) -> str:
    """The record's quarantine note (JSON, udfs.quarantine.record_note) if a quarantine of its
    source covers its event time."""
    path = tsv.replace("'", "''")
    return (
        f"{QUARANTINE_FUNCTION}('{path}', '{topic}', facility_id, unit_id, "
        f"CAST({event_time} AS TIMESTAMP_LTZ(3)))"
    )


def _unless_quarantined(p: str) -> str:
    """A parameter a quarantine of the record's source covers (its own, or the whole source's)
    counts as absent. The note is read only for a record that has one (CASE branches are
    evaluated in order, lazily): a record of a source without a quarantine costs a null test."""
    return (
        f"CASE WHEN quarantine IS NULL THEN {p} "
        f"WHEN NOT ({ignores_sql('quarantine', p)}) THEN {p} END AS {p}"
    )


def _marked(params: list[str]) -> str:
    """The record's `quarantine` column: its note (`quarantine` as the JVM check returned it)
    only when the record carried a value the note ignores, of the screening state's
    `params` the record's source has; else null. A record that carried none (a blood pressure
    of a unit whose temp_c is quarantined, or a value of a parameter outside the state's, which
    no quarantine of those marks) is screened as if unquarantined: its state and alerts say
    "values ignored" only where a value was. The raw values are the inner query's, before
    `_unless_quarantined` nulls them, and after the decoder's: a value it refused alone as
    impossible (a °F temp_c; schemas.codec, "Refused values") is null, so its record is not
    marked for it (the value's dead letter says why)."""
    if not params:
        return "CAST(NULL AS STRING) AS quarantine"
    carried = " OR ".join(f"({p} IS NOT NULL AND ({ignores_sql('quarantine', p)}))" for p in params)
    return (
        f"CASE WHEN quarantine IS NULL THEN CAST(NULL AS STRING) "
        f"WHEN {carried} THEN quarantine END AS quarantine"
    )


EVENT_COLUMNS = (
    "record_id",
    "record_kind",
    "patient_token",
    "facility_id",
    "unit_id",
    "event_time",
    "measured_time",
    *STATE_PARAMS,
    "is_discharge",
    "source_topic",
    "source_partition",
    "source_offset",
    "quarantine",
)


def _events_sql(sources: Sources, quarantine_tsv: str, remembered_h: float) -> str:
    """One row per accepted input record, every state parameter a column (null if absent, or
    if a quarantine of the record's source covers it: `quarantine` then holds the record's note,
    when it carried a value the note ignores: `_marked`), at its
    record time (`event_time`, the rowtime) with the time its values were measured
    (`measured_time`: a lab's draw, resulted hours later, or a reading charted late; an ADT
    event's record time): `EVENT_COLUMNS` but `is_discharge` (the stay rule's, `views`), the
    stay rule's `stays.VISIT_COLUMNS`, and the record's bytes (`value`; null for a charted
    minute of the device numerics), which only a late record's dead letter reads."""
    types = {f.name: f.flink_type().replace(" NOT NULL", "") for f in SCREEN.fields}
    selects = []
    for name, topic in INPUTS.items():
        if name == "device":
            continue
        id_field = ID_FIELDS[name]
        have = set(decoded_columns(topic.name))
        params = ", ".join(
            _unless_quarantined(p) if p in have else f"CAST(NULL AS {types[p]}) AS {p}"
            for p in STATE_PARAMS
        )
        marked = _marked([p for p in STATE_PARAMS if p in have])
        read = sources[name].topic
        if name == "adt":  # no parameter values: an ADT source is never quarantined here
            unit = "COALESCE(unit_id, prior_unit_id, 'unknown')"
            quarantine = "CAST(NULL AS STRING)"
            marked = "quarantine"
            measured = "CAST(kafka_ts AS TIMESTAMP(3))"  # a discharge counts when it is known
        else:
            unit = "unit_id"
            measured = MEASURED_TIME.name
            # matched by the registry's topic name: a quarantine names the source, not the
            # prefixed topic one deployment reads it from
            quarantine = _quarantine_sql(quarantine_tsv, topic.name, "kafka_ts")
        accepted = f"(SELECT * FROM {name}_decoded WHERE reason_code IS NULL)"
        if name == "adt":  # numbered by copy (jobs/runtime/stays.py)
            accepted = f"({adt_copies_sql(accepted)})"
        selects.append(f"""
        SELECT {id_field} AS record_id, '{name}' AS record_kind, patient_token, facility_id,
               {unit} AS unit_id, kafka_ts AS event_time, {measured} AS measured_time, {params},
               '{read}' AS source_topic,
               kafka_partition AS source_partition, kafka_offset AS source_offset, {marked},
               `value`, {visit_columns_sql(name == "adt", remembered_h)}
        FROM (SELECT *, {quarantine} AS quarantine FROM {accepted})""")
    if "device" not in sources:
        return " UNION ALL ".join(selects)
    charted = set(CHANNEL_PARAMS)
    params = ", ".join(
        _unless_quarantined(p) if p in charted else f"CAST(NULL AS {types[p]}) AS {p}"
        for p in STATE_PARAMS
    )
    read, device = sources["device"].topic, INPUTS["device"].name
    selects.append(f"""
        SELECT chart_id AS record_id, 'vitals' AS record_kind, patient_token, facility_id,
               unit_id, event_time, CAST(event_time AS TIMESTAMP(3)) AS measured_time, {params},
               '{read}' AS source_topic, source_partition, source_offset,
               {_marked([p for p in STATE_PARAMS if p in charted])},
               CAST(NULL AS BYTES) AS `value`, {visit_columns_sql(False)}
        FROM (SELECT *, {_quarantine_sql(quarantine_tsv, device, "event_time")} AS quarantine
              FROM device_charted
              WHERE {" OR ".join(f"{p} IS NOT NULL" for p in CHANNEL_PARAMS)})""")
    return " UNION ALL ".join(selects)


def state_sql(source: str = "events", features: bool = False) -> str:
    """Latest value of each parameter within its validity, counted from when it was measured
    (`measured_time`: a lactate resulted 5 h after its draw has 1 h of its 6 left, and one
    drawn before a discharge and resulted after it belongs to the stay that ended), never
    carried across a discharge,
    FiO2 or the oxygen flag not where a newer charting of the other contradicts it
    (udfs.sepsis.OXYGEN_PAIR); with `features`, also the model's stream features that are not
    state values (from `feature_events`): 6-hour extremes, lab ages (capped), the stay so far.

    The window accumulates (`RANGE UNBOUNDED PRECEDING`): per patient it keeps a last value and
    its time per parameter, and rows only until the watermark passes them. Validity is decided
    from those times, which gives every column the value a window reaching back the longest
    validity (24 h) would give: a last value older than 24 h is older than its own validity, a
    discharge older than that precedes every value still valid, lab ages are capped at 24 h, and
    a quarantine counts for 24 h after its last ignored record. A 24 h `RANGE` window kept every
    row of the day instead: 1.75 MB per patient in its checkpoints (bench/state_size.py), 24 GiB
    at 15,000 beds, against 2.7 kB now (bench/results/state_size.json). Rows of one patient with
    the same event time are one step (`RANGE` peers)."""
    ts = "CAST(event_time AS TIMESTAMP(3))"
    types = {f.name: f.flink_type().replace(" NOT NULL", "") for f in SCREEN.fields}
    # each parameter's latest value: the latest measured, of those the latest recorded (a
    # correction), as the greatest of `<measured><record time><value>` strings (a MAX, which an
    # accumulating window keeps as one value: LAST_VALUE would take the last to arrive, a
    # lactate drawn hours before the one the state holds, or either of two known at once); a
    # TIMESTAMP(3) as a string is `yyyy-MM-dd HH:mm:ss.SSS`, fixed width, in time order; `_at`,
    # the greatest measured time, is the greatest string's own, so it is not parsed back
    width = len("yyyy-MM-dd HH:mm:ss.SSS")
    latest = ", ".join(
        f"MAX(CASE WHEN {p} IS NOT NULL THEN CONCAT(CAST(measured_time AS STRING), "
        f"CAST({ts} AS STRING), CAST({p} AS STRING)) END) OVER w AS {p}_latest, "
        f"MAX(CASE WHEN {p} IS NOT NULL THEN measured_time END) OVER w AS {p}_at"
        for p in STATE_PARAMS
    )
    last = ", ".join(
        f"CAST(SUBSTR({p}_latest, {2 * width + 1}) AS {types[p]}) AS {p}_last" for p in STATE_PARAMS
    )

    def valid(p: str) -> str:
        within = (
            f"{p}_at >= {ts} - INTERVAL '{VALIDITY_H[p]}' HOUR"
            f" AND ({p}_at > discharged_at OR discharged_at IS NULL)"
        )
        if p not in OXYGEN_PAIR:
            return within
        return f"{within} AND NOT {contradicted_sql(p, lambda q: q + '_last', lambda q: q + '_at')}"

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
        # a lab of an earlier stay is none of this one's (as training counts a stay's own)
        columns += "".join(
            f", COALESCE(CASE WHEN {p}_at > discharged_at OR discharged_at IS NULL "
            f"THEN LEAST({hours_since(p + '_at')}, {cap}) END, {cap}) AS {lab_age_name(p)}"
            for p in LAB_AGE
        )
        columns += f", {hours_since('first_time')} AS hours_since_first_record"
    ignored = f"""CASE WHEN quarantine_at >= {ts} - INTERVAL '{MAX_VALIDITY_H}' HOUR
               AND (quarantine_at > discharged_at OR discharged_at IS NULL)
             THEN JSON_OBJECT(KEY 'quarantine' VALUE JSON(quarantine_last),
                              KEY 'last_ignored_time' VALUE DATE_FORMAT(quarantine_at, {ISO}))
           END AS quarantine_json"""
    return f"""
    SELECT record_id, record_kind, patient_token, facility_id, unit_id, event_time, {columns},
           is_discharge, source_topic, source_partition, source_offset, {ignored}
    FROM (
      SELECT *, {last}
      FROM (
        SELECT *, {latest},
               LAST_VALUE(quarantine) OVER w AS quarantine_last,
               LAST_VALUE(CASE WHEN quarantine IS NOT NULL THEN {ts} END) OVER w AS quarantine_at,
               LAST_VALUE(CASE WHEN is_discharge THEN {ts} END) OVER w AS discharged_at
        FROM {source}
        WINDOW w AS (PARTITION BY patient_token ORDER BY event_time
                     RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)))"""


def build(
    t_env: StreamTableEnvironment, settings: Settings, sources: Sources, sinks: Sinks
) -> None:
    """Sources `device`, `vitals`, `labs`, `adt` → sinks `sepsis_screen`, `vitals_charted`,
    `alert_events`, `sepsis_scores` (written when scoring is on) and `dead_letters`."""
    if settings.state_ttl_h <= MAX_VALIDITY_H:
        raise ValueError(
            f"state_ttl_h {settings.state_ttl_h} would drop values still valid: the state must "
            f"outlive the longest validity ({MAX_VALIDITY_H} h)"
        )
    if not settings.device_numerics:  # a deployment without monitor numerics
        sources = {n: src for n, src in sources.items() if n != "device"}
    scoring = Scoring.of(settings)
    views(t_env, sources, scoring, QuarantineRegistry.of(settings).tsv, settings.state_ttl_h)
    attach(t_env, sources, sinks, scoring)


def views(
    t_env: StreamTableEnvironment,
    sources: Sources,
    scoring: Scoring | None,
    quarantine_tsv: Path,
    remembered_h: float,
) -> None:
    """Stage one, in SQL: every view from the sources up to `screening` (each input record's
    patient state and scores; with scoring, also the model's stream features), no sinks; the
    quarantine check reads the registry's TSV at `quarantine_tsv`; `remembered_h` is the job's
    state TTL (the stay rule's: jobs/runtime/stays.py)."""
    t_env.create_java_temporary_system_function(QUARANTINE_FUNCTION, java_decode.QUARANTINE_CLASS)
    for name, src in sources.items():
        decoded_views(t_env, name, INPUTS[name].schema_name, src.table)
    if "device" in sources:
        t_env.create_java_temporary_system_function(CHART_FUNCTION, java_decode.DEVICE_CHART_CLASS)
        accepted = "(SELECT * FROM device_decoded WHERE reason_code IS NULL)"
        t_env.create_temporary_view(
            "device_valid", t_env.sql_query(chart_input_sql(accepted, "kafka_ts"))
        )
        t_env.create_temporary_view("device_charted", t_env.sql_query(chart_sql("device_valid")))
    # a discharge of another visit than the stay's ends no state (jobs/runtime/stays.py): the
    # rule's aggregate runs in the window that counts each patient's arrivals
    stays.register(t_env)
    merged_late_views(
        t_env,
        "events",
        _events_sql(sources, str(quarantine_tsv.resolve()), remembered_h),
        key="patient_token",
        rowtime="event_time",
        columns=", ".join(
            f"{stays.ends_sql()} AS is_discharge" if c == "is_discharge" else c
            for c in EVENT_COLUMNS
        ),
        aggregates={stays.STAY_OUTCOME: stays.STAY_DISCHARGE_SQL},
    )
    state_views(t_env, bool(scoring))
    t_env.create_temporary_view(
        "screening", t_env.sql_query(f"SELECT s.*, {SCORES} FROM state AS s")
    )


def state_views(t_env: StreamTableEnvironment, scoring: bool) -> None:
    """Over the view `events`: `feature_events` (with scoring: first record time, 6-hour
    extremes) and `state` (state_sql)."""
    if scoring:
        register_feature_functions(t_env)
        t_env.create_temporary_view("feature_events", t_env.sql_query(feature_events_sql()))
    source = "feature_events" if scoring else "events"
    t_env.create_temporary_view("state", t_env.sql_query(state_sql(source, scoring)))


def state_row(scoring: bool) -> Row:
    """The patient state as stage one hands it to stage two: the screen topic's fields, whether
    it is a discharge, and with scoring the model's features that are not state values."""
    extra = [Field("is_discharge", "boolean")]
    if scoring:
        screen = {f.name for f in SCREEN.fields}
        extra += [Field(f, "double") for f in STREAM_FEATURES if f not in screen]
    base = from_avro(SCREEN, "screened_state", timestamps_as_ms=False)
    return Row(base.name, (*base.fields, *extra), "A patient state between the job's stages.")


def stage_two(t_env: StreamTableEnvironment, scoring: Scoring | None) -> None:
    """Stage two, in SQL over stage one's planned states (`planned`, output `state`), as the
    one table `stage_two`, on one path: `screened` → with scoring, `scored` (the model's risk
    per state, jobs/screening/scoring.py) → `ruled` (every run rule in one OVER window,
    jobs/screening/rules.window_sql) → one correlate that unnests each state into what it makes:
    its scores (output `scored`) and its hits (output `hit`: the rules', the discharge's, the
    champion's).

    One path because the alert lifecycle is an event-time operator: had the hits come to it by
    several paths from one state (a pattern's operator, a single-state rule, the discharge, the
    model), then after every feed had gone idle one path could carry the watermark on before
    another was active again there, and that path's hits would be dropped as late
    (tests/flink_harness.event_time_diamonds). The stages are planned apart because a view that
    several queries read is planned once per reader: the state's OVER window, its score
    expressions and the scoring UDF would run again for each reader."""
    row = state_row(bool(scoring))
    cols = ", ".join(quote(c) for c in row.columns if c != "event_time")
    t_env.create_temporary_view(
        "screened",
        t_env.sql_query(
            f"SELECT {cols}, rowtime AS event_time FROM planned WHERE output = 'state'"
        ),
    )
    register_rule_functions(t_env)
    source = "screened"
    branches = [*rule_branches(RULES), ("is_discharge", DISCHARGE)]
    if scoring:
        t_env.create_temporary_system_function("wf_score", scoring.udf())
        t_env.create_temporary_view("scored", t_env.sql_query(scored_sql(row.columns)))
        source = "scored"
        branches.append((MODEL_FIRES, model_hit_values(scoring.model_name)))
    t_env.create_temporary_view("ruled", t_env.sql_query(window_sql(source, RULES)))
    hit, numbers = picked(branches, "b.n")
    columns = [
        "CASE WHEN b.n = 0 THEN 'scored' ELSE 'hit' END AS output",
        f"CASE WHEN b.n > 0 THEN {hit} END AS hit",
    ]
    if scoring:  # branch 0: the state's scores, where some model scored it
        some = "champion_version IS NOT NULL OR challenger_version IS NOT NULL"
        numbers.insert(0, f"CASE WHEN {some} THEN 0 ELSE -1 END")
        state = SCORED_STATE.cast_sql({"event_time": "CAST(event_time AS TIMESTAMP(3))"})
        columns.append(f"CASE WHEN b.n = 0 THEN {state} END AS scored")
    t_env.create_temporary_view(
        "stage_two",
        t_env.sql_query(f"""
        SELECT {", ".join(columns)}, event_time
        FROM ruled CROSS JOIN UNNEST(ARRAY[{", ".join(numbers)}]) AS b(n)
        WHERE b.n >= 0"""),
    )


def stage_one_sql(sources: Sources, scoring: bool) -> str:
    """Stage one's outputs as one table (`output` says which): dead letters and charted minutes
    (a row column each) and patient states (`state_row`'s columns, flat: the Python UDF of stage
    two must not read fields of a nested row, which the planner's Python split rule rewrites
    wrongly), so that its SQL is planned once although its outputs leave SQL more than once:
    each separate Table → DataStream conversion would plan, and read, the sources again."""
    # The state's event time is the branch's rowtime (`event_time`), not a column of its own.
    state = [f for f in state_row(scoring).fields if f.name != "event_time"]
    values = {
        f.name: f"CAST({f.name} AS {SQL_TYPES[f.kind]})" if f.kind == "timestamp" else f.name
        for f in state
    }
    nulls = {
        "dead_letter": f"CAST(NULL AS {DEAD_LETTER_ROW})",
        "charted": f"CAST(NULL AS {CHARTED_ROW})",
        **{f.name: f"CAST(NULL AS {SQL_TYPES[f.kind]})" for f in state},
    }

    def branch(output: str, own: dict[str, str], source: str, rowtime: str) -> str:
        rows = ", ".join(f"{v} AS {quote(k)}" for k, v in {**nulls, **own}.items())
        return f"SELECT '{output}' AS output, {rows}, {rowtime} AS event_time FROM {source}"

    branches = []
    for name, source in sources.items():
        topic = source.topic
        rejected = dead_letter_sql(topic, STAGE, "reason_code", "reason")
        late = late_dead_letter_sql(topic, STAGE)
        branches.append(
            branch("dead_letter", {"dead_letter": rejected}, f"{name}_rejected", "kafka_ts")
        )
        branches.append(branch("dead_letter", {"dead_letter": late}, f"{name}_late", "kafka_ts"))
    merged_late = """(
        SELECT source_topic AS topic, source_partition AS kafka_partition,
               source_offset AS kafka_offset, event_time AS kafka_ts, `value`
        FROM events_late)"""
    late = merged_late_dead_letter_sql(STAGE)
    branches.append(branch("dead_letter", {"dead_letter": late}, merged_late, "kafka_ts"))
    branches.append(branch("state", values, "screening", "event_time"))
    charted_cols = ", ".join(
        f"CAST({f.name} AS TIMESTAMP(3))" if f.logical else f.name for f in CHARTED.fields
    )
    if "device" in sources:
        row = f"CAST(ROW({charted_cols}) AS {CHARTED_ROW})"
        branches.append(branch("charted", {"charted": row}, "device_charted", "event_time"))
    return "\nUNION ALL\n".join(branches)


def attach(
    t_env: StreamTableEnvironment, sources: Sources, sinks: Sinks, scoring: Scoring | None
) -> None:
    """Plan stage one once (`planned`), stage two over it once (`planned_two`), and attach
    every output: dead letters, charted minutes, screened states, scores and the alert
    lifecycle (over the hits of stage two: the rules', the discharges', the champion's)."""
    t_env.create_temporary_view("stage_one", t_env.sql_query(stage_one_sql(sources, bool(scoring))))
    plan_once(t_env, "stage_one", "planned")
    stage_two(t_env, scoring)
    plan_once(t_env, "stage_two", "planned_two")
    if scoring:
        t_env.create_temporary_view(
            "planned_scored",
            t_env.sql_query("SELECT scored.*, rowtime FROM planned_two WHERE output = 'scored'"),
        )
        score_rows = score_rows_sql(scoring.model_name, "planned_scored")
        t_env.create_temporary_view("score_rows", t_env.sql_query(score_rows))
    t_env.create_java_temporary_system_function(
        LIFECYCLE_FUNCTION, java_decode.ALERT_LIFECYCLE_CLASS
    )
    t_env.create_temporary_view(
        "alert_inputs",
        t_env.sql_query("SELECT hit.*, rowtime FROM planned_two WHERE output = 'hit'"),
    )
    t_env.create_temporary_view("alert_lifecycle", t_env.sql_query(lifecycle_sql("alert_inputs")))

    ss = t_env.create_statement_set()
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["dead_letters"]}`
        SELECT dead_letter.*, rowtime FROM planned WHERE output = 'dead_letter'""")
    screen = ", ".join(
        "CAST(rowtime AS TIMESTAMP(3))" if f.name == "event_time" else quote(f.name)
        for f in SCREEN.fields
    )
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["sepsis_screen"]}`
        SELECT {screen}, rowtime FROM planned WHERE output = 'state'""")
    if "device" in sources:
        ss.add_insert_sql(f"""
        INSERT INTO `{sinks["vitals_charted"]}`
        SELECT charted.*, rowtime FROM planned WHERE output = 'charted'""")
    if scoring:
        ss.add_insert_sql(f"""
        INSERT INTO `{sinks["sepsis_scores"]}`
        SELECT {", ".join(f"`{f.name}`" for f in SCORE.fields)}, rowtime FROM score_rows""")
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["alert_events"]}`
        SELECT {avro_values_sql(ALERT_EVENT, topics.ALERT_V2.schema)},
               TO_TIMESTAMP_LTZ(event_time_ms, 3)
        FROM alert_lifecycle""")
    ss.attach_as_datastream()


JOB = Job(STAGE, __doc__, INPUTS, OUTPUTS, build)


if __name__ == "__main__":
    JOB.main()
