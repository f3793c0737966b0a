"""Catalog scoring job: vitals + labs + ADT → each ICU stay's features → every catalog model
served for stays (mortality, length of stay, …), and each discharge → every model served at
discharge (30-day readmission), champion and shadow → model.score topic.

vitals, labs, ADT (raw Kafka records, rowtime = record timestamp)
  ├─ behind its source's watermark ──────────────── dead-letter topic (reason `late`)
  └─ decode + validate (JVM functions generated from the schemas: udfs/java_decode.py)
       ├─ rejected ──────────────────────────────── dead-letter topic (reason per record)
       └─ merged (jobs/runtime/tables.merged_view), numbered per record id in arrival order
            ├─ behind the merged watermark (a feed idle for a while, then late) ─ `late`
            ├─ a record id seen before (a resend) ────── dead-letter topic (reason `duplicate`)
            └─ union per stay (its token and admissions so far; an admission starts a stay
               and anchors its first time, a discharge ends it)
            → the stay's running sums and extremes at each record: an event-time
              `OVER (… RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)` window (records at
              the same time see each other, as training's "observations up to hour t" do), SQL
              generated from the one declaration training uses (feature_store/icu_stay.py)
            ├─ features at each vitals or lab record ─────────── one row per (state, stay model)
            └─ at each reported hour N of each stay: features of its records up to first + N h,
               by a keyed process function (udfs/java/StayHours.java), once a later record
               or the watermark passes the hour ──────────────────────── one row per model ┐
  ADT discharges with an encounter → one row per discharge model (features from Feast) ──────┤
            → the generic scoring UDF, one operator (udfs/model_set.py:                     ←┘
              each model's spec names its features; static ones come from its feature
              service) → a row per model version and role, with its `trigger` ── model.score topic

Every model in `catalog_models` with a champion is served where its spec says (entity `stay`:
every state, and at its `stay_hours` trigger's or `report_at_hours`' hours of the stay; entity
`encounter` with trigger `discharge`: the discharge); adding a model is a spec and a training
module (training/catalog/), not a change here. A model whose features the job does not compute
gets them from its feature service, else NaN (imputed, counted in `features_missing`).

A stay is the token the record carries (`patient_token`) and the token's admissions so far
(`stay_seq`, stay_events_sql): an admission of a token starts a new stay, so a feed that
tokenises patients (an HL7 feed's MRN) gets a readmission as a stay of its own, with its own
first time, records and discharge; a replay of ICU stays (jobs/feeds/physionet2012.py) tokenises
each stay as its own patient. Records of a token before any admission of it are one stay (a feed
without ADT; with ADT, say an emergency department's vitals before the admission, a stay that
the admission ends). A new admission ends the token's earlier stay, discharged or not. A
discharge of another visit than the stay's (an emergency visit closed after the inpatient
admission: another encounter from another unit, jobs/runtime/stays.py) ends no stay. An ADT
event recorded longer after it happened than the job's state TTL (`stay_state_ttl_h`) that
the stay rule has seen, sent again (jobs/runtime/stays.py: it happened before the stay began,
or is its admission again, or a discharge of the closed stay again), is not read: an old
visit's admission and discharge that a FHIR Encounter's later version sends again change no
stay; one that happened since counts (an admission registered days late starts its stay). A
discharge at the same millisecond as an admission ends the stay before it. A discharge that a
later A13 (`cancel_discharge`) takes back does not end the stay: it is scored at its hours that
fall due after the cancel (an hour due between the discharge and its cancel is not: the join
sees the stay as it was then), and a readmission score already made at that discharge stands.
Every admission starts a stay, so an admission sent again after a cancel (A11, or a FHIR
Encounter voided: `void_encounter`; this job reads neither) starts another. A merge of the
token's record into another patient's record (HL7 A40, `merged_away`: a trauma alias merged
into the patient's own record) ends the token's stay for good: no score is published under a
record that no longer exists; the surviving record's stay is its own, its hours counted from its
own first record (a stay's state is its token's).
Hours since admission are measured from the stay's first record (its admission
event when one arrives first; a feed that starts mid-stay measures from whatever comes first, a
discharge included, and such a stay is never scored at an hour). A record timed before its
admission's record time (`codec.record_time`: when it was entered, if later than when it
happened) belongs to the stay before. The scores' entity key stays the token (the
stay descriptors in Feast are the token's), and an hour score's record id carries the stay's
first time. A stay is scored at hour N on the same cut-off its validation reports (`make
evaluate-model`: its observations up to exactly N h, hours_since_admission N), unless it has no
vitals or lab record by then or was discharged by then. A vitals or lab record is scored unless
its stay had ended by its time (discharged and not cancelled by then, or superseded by a newer
admission): a record while the stay is discharged is kept in the stay's state, since a cancel
may reopen the stay, but not scored.

State: every keyed state here is a token's or a stay's (admissions, running sums and extremes,
the latest row, the hours still due), and it lives `stay_state_ttl_h` (72 h) without a record of
the patient, this job's Flink state TTL in place of the screening jobs' `state_ttl_h` (25 h,
what their windows need): a stay's features reach back to its admission, and a ward patient may
be observed once a day or be on leave for a weekend. After a longer silence the state is gone:
the patient's next records start a stay of their own (from their first record, as a feed
without its admission does), and an hour of the stay not yet due then is never scored.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path

from pyflink.table import StreamTableEnvironment

from feature_store.icu_stay import PARAMETERS, Parameter, feature_name
from feature_store.online import catalog_lookups
from jobs.runtime import stays
from jobs.runtime.flink_env import STATE_TTL, plan_once, state_ttl
from jobs.runtime.job import Job, Sinks, Sources
from jobs.runtime.stays import (
    adt_copies_sql,
    discharge_sql,
    ends_sql,
    ignored_sql,
    stay_discharges_sql,
    visit_columns_sql,
)
from jobs.runtime.tables import EPOCH_MS, dead_letters_insert_sql, decoded_views, merged_view
from schemas import topics
from schemas.model_spec import MAX_STAY_HOURS, ModelSpec
from schemas.rows import MODEL_SCORE_RESULT, quote
from schemas.settings import Settings
from udfs import java_decode
from udfs.flink import decoded_columns
from udfs.flink_model_set import Lookups, model_score_udf, no_lookups
from udfs.registry import Registry

log = logging.getLogger(__name__)
STAGE = "model_scoring"
INPUTS = {
    "vitals": topics.VITALS_OBSERVATION,
    "labs": topics.LABS_RESULT,
    "adt": topics.ADT_EVENT,
}
OUTPUTS = {"model_scores": topics.MODEL_SCORE, "dead_letters": topics.DEAD_LETTER}
ID_FIELDS = {"vitals": "observation_id", "labs": "result_id", "adt": "event_id"}
# The ADT events a stay is made of: an admission starts one, a discharge ends it unless a later
# cancel_discharge (HL7 A13) takes it back, a merge of the token's record into another's
# (merged_away, HL7 A40) ends it for good. Transfers change no stay; a cancelled admission (A11)
# or a voided encounter (void_encounter, FHIR entered-in-error) is not read (module docstring).
STAY_ADT = "'admit', 'discharge', 'cancel_discharge', 'merged_away'"
# A discharge of another visit than the stay's (jobs/runtime/stays.py: an emergency visit closed
# after the inpatient admission) ends no stay and is not read: no readmission is scored at it.
VISIT_DISCHARGE = "visit_discharge"
# An ADT event recorded longer after it happened than the job remembers (its state TTL) that
# the stay rule has seen, sent again (jobs/runtime/stays.py): not read.
STALE_ADT = "stale_adt"
# What the job reads of the merged records (merged_view's `kept`): the rest is neither scored
# nor dead-lettered here.
READ = f"record_kind IN ('vitals', 'labs', {STAY_ADT})"
# The topics' field for a declared parameter where the names differ (else the same name).
TOPIC_FIELD: dict[str, str] = {
    "weight_kg_series": "weight_kg",
    "mech_vent": "mechanical_ventilation",
}
# The admission weight (minute 0) is a stay descriptor, later weights a series
# (feature_store/icu_stay.clean_series): the series ignores values at the stay's first time.
AFTER_ADMISSION = frozenset({"weight_kg_series"})
STREAM_FEATURES = (
    "hours_since_admission",
    *(feature_name(p, a) for p in PARAMETERS for a in p.aggregates),
)
BASE = ("n", "sv", "vmin", "vmax", "vfirst", "vlast", "st", "stv", "stt", "tmin", "tmax")


def topic_field(p: Parameter) -> str:
    return TOPIC_FIELD.get(p.name, p.name)


def _value_sql(p: Parameter) -> str:
    """A parameter's value as DOUBLE, null outside its plausible range, compared as training
    compares it (feature_store.icu_stay.plausible): value and bounds as 32-bit floats."""
    f = quote(topic_field(p))
    v = f"CASE WHEN {f} THEN 1.0 WHEN NOT {f} THEN 0.0 END" if p.name == "mech_vent" else f
    v = f"CAST({v} AS DOUBLE)"
    low, high = (f"CAST({float(b)!r} AS FLOAT)" for b in (p.low, p.high))
    return f"CASE WHEN CAST({v} AS FLOAT) BETWEEN {low} AND {high} THEN {v} END"


def merged_sql(sources: Sources, remembered_h: float) -> str:
    """One row per accepted record of every source, for `merged_view` (tables.MERGED_COLUMNS:
    its topic, id, Kafka coordinates, rowtime and bytes, for a dead letter): every declared
    parameter a DOUBLE column (null where the record's topic has no such field or the record no
    value); ADT events carry none (record_kind their event type; `VISIT_DISCHARGE` for a
    discharge of another visit than the stay's, `STALE_ADT` for an event recorded later than
    `remembered_h`, the job's state TTL, that the stay rule has seen: jobs/runtime/stays.py)
    and their encounter."""
    selects = []
    for name, src in sources.items():
        have = set(decoded_columns(INPUTS[name].schema_name))
        params = ", ".join(
            f"{_value_sql(p)} AS {quote(p.name)}"
            if topic_field(p) in have
            else f"CAST(NULL AS DOUBLE) AS {quote(p.name)}"
            for p in PARAMETERS
        )
        unit = "COALESCE(unit_id, prior_unit_id, 'unknown')" if name == "adt" else "unit_id"
        kind = "event_type" if name == "adt" else f"'{name}'"
        encounter = "encounter_token" if name == "adt" else "CAST(NULL AS STRING)"
        accepted = f"(SELECT * FROM {name}_decoded WHERE reason_code IS NULL)"
        if name == "adt":  # numbered by copy (jobs/runtime/stays.py)
            accepted = f"({adt_copies_sql(accepted)})"
        selects.append(f"""
        SELECT '{src.topic}' AS topic, {ID_FIELDS[name]} AS record_id, kafka_partition,
               kafka_offset, kafka_ts, `value`, {kind} AS record_kind, patient_token,
               facility_id, {unit} AS unit_id, {encounter} AS encounter_token, {params},
               {visit_columns_sql(name == "adt", remembered_h)}
        FROM {accepted}""")
    # another visit's discharge ends no stay (jobs/runtime/stays.py): not read, nor an event
    # recorded later than the job remembers that the rule has seen (a FHIR Encounter's later
    # version sends an old visit's admission again, which would have superseded the current
    # stay); a copy of an event stays what it is, which `merged_view` dead-letters (`duplicate`)
    kind = (
        f"CASE WHEN {ends_sql()} THEN 'discharge' WHEN {ignored_sql()} THEN '{STALE_ADT}' "
        f"WHEN {discharge_sql()} THEN '{VISIT_DISCHARGE}' ELSE record_kind END"
    )
    values = ", ".join(quote(p.name) for p in PARAMETERS)
    return f"""
        SELECT topic, record_id, kafka_partition, kafka_offset, kafka_ts, `value`,
               {kind} AS record_kind, patient_token, facility_id, unit_id, encounter_token,
               {values}
        FROM ({stay_discharges_sql(" UNION ALL ".join(selects))})"""


def events_columns() -> str:
    """`events` (merged_view): the first copy of each record the merged watermark has not
    passed (a resend and a late record are dead-lettered) of what the job reads (`READ`: vitals,
    labs and the ADT events a stay is made of)."""
    values = ", ".join(quote(p.name) for p in PARAMETERS)
    return (
        "record_id, record_kind, patient_token, facility_id, unit_id, encounter_token, "
        f"kafka_ts AS event_time, {values}"
    )


def _base_sql(p: Parameter) -> list[str]:
    """The running sums and extremes of one parameter that its features are derived from."""
    v = quote(p.name)
    if p.name in AFTER_ADMISSION:
        v = f"(CASE WHEN t_h > 0 THEN {v} END)"
    t = f"CASE WHEN {v} IS NOT NULL THEN t_h END"
    parts = {
        "n": f"COUNT({v})",
        "sv": f"SUM({v})",
        "vmin": f"MIN({v})",
        "vmax": f"MAX({v})",
        "vfirst": f"FIRST_VALUE({v})",
        "vlast": f"LAST_VALUE({v})",
        "st": f"SUM({t})",
        "stv": f"SUM({t} * {v})",
        "stt": f"SUM({t} * {t})",
        "tmin": f"MIN({t})",
        "tmax": f"MAX({t})",
    }
    return [
        f"CAST({sql} OVER w AS DOUBLE) AS {quote(p.name + '__' + k)}" for k, sql in parts.items()
    ]


def _feature_sql(p: Parameter, aggregate: str) -> str:
    """One declared feature from the running values (feature_store/icu_stay.py's table)."""

    def b(k: str) -> str:
        return quote(f"{p.name}__{k}")

    n, sv, st, stv, stt = b("n"), b("sv"), b("st"), b("stv"), b("stt")
    denominator = f"({n} * {stt} - {st} * {st})"
    sql = {
        "min": b("vmin"),
        "max": b("vmax"),
        "mean": f"{sv} / NULLIF({n}, 0)",
        "first": b("vfirst"),
        "last": b("vlast"),
        "count": f"{n} / GREATEST(t_h, 1.0)",
        "sum": f"COALESCE({sv}, 0.0)",
        "per_h": f"COALESCE({sv}, 0.0) / GREATEST(t_h, 1.0)",
        "slope": f"""CASE WHEN {n} >= 2 AND {denominator} > 1e-9 * GREATEST({n} * {stt}, 1.0)
                     THEN ({n} * {stv} - {st} * {sv}) / {denominator} END""",
        "since_last": f"t_h - {b('tmax')}",
        "first_at": b("tmin"),
    }[aggregate]
    return f"CAST({sql} AS DOUBLE) AS {quote(feature_name(p, aggregate))}"


def stay_events_sql() -> str:
    """Each record with its stay's number among its token's stays (`stay_seq`): how many
    admissions of the token have come by its time, its own time included (a record at the
    admission's millisecond is the new stay's; `events` holds each admission once however often
    it was sent). Records before a token's first admission are stay 0: a feed without admissions
    is one stay per token."""
    return """
        SELECT *, CAST(COUNT(CASE WHEN record_kind = 'admit' THEN 1 END) OVER (
               PARTITION BY patient_token ORDER BY event_time
               RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS INT) AS stay_seq
        FROM events"""


def stay_records_sql() -> str:
    """`stay_events` and, for each admission, a `superseded` row of the token's stay before it
    at the admission's time: a new admission ends the earlier stay (records before the first
    admission, a stay whose discharge never came), which is then not scored at a later hour.

    In one pass: each row unnests one copy, an admission two (the second is the superseded
    row). Not a union of two reads of `stay_events`: the planner runs its window once per read,
    and the two copies meet again at the stay's windows, a diamond in which idleness races. When
    every feed had gone idle and the vitals came, one copy could carry the watermark on to the
    stay's windows while the other was still marked idle there, and its rows, behind that
    watermark, were dropped as late without a trace (tests/integration/test_catalog_late_merge.py
    lost every state about one run in three)."""
    columns = "record_id, patient_token, facility_id, unit_id, event_time"
    values = ", ".join(
        f"CASE WHEN copy_n = 0 THEN {quote(p.name)} END AS {quote(p.name)}" for p in PARAMETERS
    )
    return f"""
        SELECT {columns},
               CASE WHEN copy_n = 0 THEN record_kind ELSE 'superseded' END AS record_kind,
               {values}, stay_seq - copy_n AS stay_seq
        FROM (SELECT *, CASE WHEN record_kind = 'admit' THEN ARRAY[0, 1] ELSE ARRAY[0] END
                     AS copies
              FROM stay_events) AS e
             CROSS JOIN UNNEST(e.copies) AS c(copy_n)"""


def stay_running_sql() -> str:
    """Each record with its stay's running sums and extremes as of that record (causal: the
    window ends at the current row), its hours since the stay's first record (`t_h`), how many
    vitals and lab records the stay has had (`records`) and whether it has ended: discharged
    (its latest discharge not cancelled by a later A13, `cancel_discharge`), superseded by a
    newer admission, or its token's record merged into another's (`merged_away`). A discharge
    at a stay's first millisecond, which is its admission's, is the stay before's (at one
    instant, the discharge and the readmission)."""
    first = """
        SELECT *, MIN(CAST(event_time AS TIMESTAMP(3))) OVER (PARTITION BY patient_token, stay_seq
               ORDER BY event_time RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS first_time
        FROM stay_records"""
    hours = (
        f"CAST(({EPOCH_MS.format('event_time')} - {EPOCH_MS.format('first_time')}) AS DOUBLE)"
        " / 3600000.0"
    )
    timed = f"SELECT *, {hours} AS t_h FROM ({first})"
    base = ",\n               ".join(s for p in PARAMETERS for s in _base_sql(p))
    return f"""
        SELECT record_id, record_kind, patient_token, stay_seq, facility_id, unit_id, event_time,
               t_h, COUNT(CASE WHEN record_kind IN ('vitals', 'labs') THEN 1 END) OVER w AS records,
               CASE WHEN MAX(CASE WHEN record_kind IN ('superseded', 'merged_away') THEN 1
                                  ELSE 0 END) OVER w = 1
                      OR LAST_VALUE(CASE WHEN record_kind = 'cancel_discharge' THEN 0
                                         WHEN record_kind = 'discharge'
                                              AND (stay_seq = 0 OR t_h > 0) THEN 1 END) OVER w = 1
                    THEN 1 ELSE 0 END AS discharged,
               {base}
        FROM ({timed})
        WINDOW w AS (PARTITION BY patient_token, stay_seq ORDER BY event_time
                     RANGE BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)"""


def _features_sql() -> str:
    return ",\n           ".join(_feature_sql(p, a) for p in PARAMETERS for a in p.aggregates)


def stay_state_sql() -> str:
    """Each record with its stay's features as of that record, and whether the stay had ended
    by then (`discharged`, stay_running_sql)."""
    return f"""
    SELECT record_id, record_kind, patient_token, facility_id, unit_id, event_time, discharged,
           t_h AS hours_since_admission, {_features_sql()}
    FROM stay_running"""


BASE_COLUMNS = tuple(f"{p.name}__{k}" for p in PARAMETERS for k in BASE)


def stay_hour_input_sql() -> str:
    """`stay_running` as the hour function reads it (udfs/java/StayHours.java): by name, with
    the running sums and extremes packed into one array (`BASE_COLUMNS`' order)."""
    base = ", ".join(f"CAST({quote(c)} AS DOUBLE)" for c in BASE_COLUMNS)
    return f"""
    SELECT patient_token, stay_seq, event_time, facility_id, unit_id, records, discharged,
           ARRAY[{base}] AS base
    FROM stay_running"""


def stay_hours_sql(hours: tuple[float, ...]) -> str:
    """Each stay at each of `hours` after its first record: the stay's features over its records
    up to exactly that time, with `hours_since_admission` that hour (as training's cut-off
    features, feature_store/icu_stay.stay_features), once the watermark passes it.

    A process table function keyed by stay (udfs/java/StayHours.java) keeps the stay's latest
    running row and emits it for an hour when a later row or the watermark passes the hour;
    the hour's row is timed at the hour (`due_ms`). A stay without a vitals or lab record by
    then, or discharged by then, is not scored.

    The hour's record id is the stay token, `@`, the stay's first record's time (epoch ms: a
    token seen again later is another stay), `+` and the hour as Python formats it (`g`) with
    `h`: `<token>@1767225600000+24h`, `…+1.5h`."""
    outside = [h for h in hours if not 0 < h <= MAX_STAY_HOURS]
    if outside:
        raise ValueError(f"hours {outside} of a stay are outside (0, {MAX_STAY_HOURS}]")
    listed = ",".join(f"{h:g}" for h in hours)
    unpacked = ", ".join(f"base[{i}] AS {quote(c)}" for i, c in enumerate(BASE_COLUMNS, 1))
    rows = f"""
        SELECT CONCAT(patient_token, '@', CAST(first_ms AS STRING), '+', label) AS record_id,
               patient_token, facility_id, unit_id, TO_TIMESTAMP_LTZ(due_ms, 3) AS event_time,
               hours_since_admission AS t_h, {unpacked}
        FROM TABLE(wf_stay_hours(
          input => TABLE stay_hour_input PARTITION BY (patient_token, stay_seq),
          on_time => DESCRIPTOR(event_time),
          hours => '{listed}',
          uid => 'stay-hours'))"""
    return f"""
    SELECT record_id, patient_token, facility_id, unit_id, event_time,
           t_h AS hours_since_admission, {_features_sql()}
    FROM ({rows})"""


def served(settings: Settings) -> dict[str, ModelSpec]:
    """The catalog models to serve (`catalog_models`) that have a champion now, with its spec
    (a model registered later is served after a restart; a role change needs none)."""
    reg = Registry(settings.model_registry)
    out = {}
    for name in settings.catalog_model_names:
        champion = reg.role(name, "champion")
        if champion is not None:
            out[name] = ModelSpec.parse(champion.spec)
    return out


def stay_models(specs: dict[str, ModelSpec]) -> tuple[str, ...]:
    """Scored at every vitals and lab state of a stay."""
    return tuple(
        m for m, s in specs.items() if s.entity == "stay" and s.trigger.kind == "every_state"
    )


def stay_hour_models(specs: dict[str, ModelSpec]) -> dict[str, tuple[float, ...]]:
    """Scored at hours of each stay (a `stay_hours` trigger's or a model's reported hours)."""
    return {m: s.stay_hours for m, s in specs.items() if s.entity == "stay" and s.stay_hours}


def discharge_models(specs: dict[str, ModelSpec]) -> tuple[str, ...]:
    """Scored when an encounter's discharge arrives."""
    return tuple(
        m for m, s in specs.items() if s.entity == "encounter" and s.trigger.kind == "discharge"
    )


def _within_trained_hours(stay: tuple[str, ...], at_hours: dict[str, tuple[float, ...]]) -> str:
    """A WHERE clause: a stay model with reported hours is scored at its states up to its last
    reported hour, the stay's data it was trained on (PhysioNet 2012's first 48 h, cut at 24, 36
    and 48 h); later, its per-hour counts and running aggregates are diluted by a stay longer
    than it ever saw, and the capacity forecast took each patient's latest length-of-stay score
    from there (set B's median predicted remaining stay fell by days between 48 h and 10 days)."""
    caps = [
        f"(model <> '{m}' OR hours_since_admission <= {max(hours)!r})"
        for m, hours in sorted(at_hours.items())
        if m in stay and hours
    ]
    return f"WHERE {' AND '.join(caps)}" if caps else ""


def score_inputs_sql(
    stay: tuple[str, ...],
    discharge: tuple[str, ...],
    at_hours: dict[str, tuple[float, ...]] | None = None,
) -> str:
    """A row per (state, model): each vitals and lab state of a stay that has not ended by the
    record's time once per stay model (up to its last reported hour: `_within_trained_hours`),
    each listed hour of a stay once per model scored then,
    each encounter's first discharge once per discharge model (its features all come from the
    model's feature service; its first copy, late or not: a readmission score needs no
    event-time order, so a backdated discharge behind the merged watermark, dead-lettered as
    `late` for the stay windows that never see it, is still scored). A record after its
    stay's discharge (a monitor left on, an emergency department's vitals before the
    readmission's A01 arrives) still counts in the stay's state but is not scored: the stay
    models predict an ongoing stay."""
    features = ", ".join(quote(f) for f in STREAM_FEATURES)
    nulls = ", ".join(f"CAST(NULL AS DOUBLE) AS {quote(f)}" for f in STREAM_FEATURES)
    # Event time as a plain timestamp in every branch: the hours' is one (stay_hours_sql), the
    # others' are time attributes, and a union takes only like with like.
    at = f"TO_TIMESTAMP_LTZ({EPOCH_MS.format('event_time')}, 3)"
    # The stay models' names are a column the unnest reads (a Correlate, no state): the planner
    # turns `CROSS JOIN UNNEST(ARRAY[…])` of a constant array into a regular join with a VALUES
    # table, whose state kept every input row for the state TTL and whose cost per row grew with
    # it (bench/catalog.py). `models` is a reserved word.
    parts = []
    if stay:
        names = ", ".join(f"'{m}'" for m in stay)
        parts.append(f"""
        SELECT record_id, patient_token, 'stay' AS entity, patient_token AS entity_key,
               facility_id, unit_id, {at} AS event_time, model, 'state' AS `trigger`,
               {features}
        FROM (SELECT *, ARRAY[{names}] AS model_names FROM stay_state
              WHERE record_kind IN ('vitals', 'labs') AND discharged = 0) AS s
             CROSS JOIN UNNEST(s.model_names) AS m(model)
        {_within_trained_hours(stay, at_hours or {})}""")
    for m, hours in (at_hours or {}).items():
        listed = ", ".join(f"CAST({h!r} AS DOUBLE)" for h in hours)
        parts.append(f"""
        SELECT record_id, patient_token, 'stay' AS entity, patient_token AS entity_key,
               facility_id, unit_id, {at} AS event_time, '{m}' AS model,
               'stay_hours' AS `trigger`,
               {features}
        FROM stay_hours WHERE hours_since_admission IN ({listed})""")
    # an encounter's discharge only where the encounter's discharge or cancelled discharge
    # (A13) before it, in arrival order, was not a discharge (while the job keeps its state:
    # `stay_state_ttl_h`): a discharge of an encounter already discharged, sent again under a
    # new event id, was a second readmission score of the encounter (the census refuses it);
    # the discharge after an A13 reopened the stay is the one that counts. An A13 that names no
    # encounter (no PV1-19) cancels the patient's latest discharge, as the census reads it.
    cols = (
        "record_id, record_kind, patient_token, encounter_token, facility_id, unit_id, event_time"
    )
    latest = (
        "LAST_VALUE(CASE WHEN record_kind = 'discharge' THEN encounter_token END) "
        "OVER (PARTITION BY patient_token ORDER BY patient_arrival)"
    )
    discharges = f"""(SELECT {cols} FROM (
          SELECT {cols}, LAG(record_kind) OVER (PARTITION BY of_encounter
                                                ORDER BY encounter_arrival) AS kind_before
          FROM (SELECT {cols}, of_encounter, PROCTIME() AS encounter_arrival FROM (
                  SELECT {cols}, COALESCE(encounter_token, {latest}) AS of_encounter
                  FROM (SELECT {cols}, PROCTIME() AS patient_arrival FROM events_any_time
                        WHERE record_kind IN ('discharge', 'cancel_discharge')))
                WHERE of_encounter IS NOT NULL))
        WHERE record_kind = 'discharge' AND encounter_token IS NOT NULL
          AND kind_before IS DISTINCT FROM 'discharge')"""
    for m in discharge:
        parts.append(f"""
        SELECT record_id, patient_token, 'encounter' AS entity,
               encounter_token AS entity_key, facility_id, unit_id,
               {at} AS event_time, '{m}' AS model, 'discharge' AS `trigger`, {nulls}
        FROM {discharges}""")
    return " UNION ALL ".join(parts)


def scored_sql(source: str) -> str:
    """Every input row of `source` through the UDF (one call per batch, rows of every model
    together)."""
    args = ", ".join(quote(f) for f in STREAM_FEATURES)
    result = ", ".join(f"s.{quote(c)} AS {quote(c)}" for c in MODEL_SCORE_RESULT.columns)
    return f"""
    SELECT record_id, patient_token, entity, entity_key, facility_id, unit_id, event_time,
           hours_since_admission, model, `trigger`, {result}
    FROM (SELECT *, wf_score_models(model, entity_key, {args}) AS s FROM {source})"""


def score_rows_sql(specs: dict[str, ModelSpec]) -> str:
    """A model.score row per model version and role (the challenger's only when it has one)."""
    output_name = " ".join(f"WHEN '{m}' THEN '{s.output.name}'" for m, s in specs.items())
    output_unit = " ".join(
        f"WHEN '{m}' THEN '{s.output.unit}'" for m, s in specs.items() if s.output.unit
    )
    unit_sql = f"CASE model {output_unit} END" if output_unit else "CAST(NULL AS STRING)"

    def pick(champion: str, challenger: str) -> str:
        return f"CASE role WHEN 'champion' THEN {champion} ELSE {challenger} END"

    version = pick("champion_version", "challenger_version")
    score = pick("champion_score", "challenger_score")
    # the roles a column the unnest reads, as the stay models' names (score_inputs_sql says why)
    return f"""
    SELECT MD5(CONCAT(record_id, '|', model, '|', {version})) AS score_id, record_id,
           entity, entity_key AS entity_token, patient_token, facility_id,
           unit_id, CAST(event_time AS TIMESTAMP(3)) AS event_time, hours_since_admission,
           model AS model_name, {version} AS model_version, role,
           CASE model {output_name} END AS output_name, {score} AS score,
           {unit_sql} AS output_unit,
           CASE WHEN role = 'champion' THEN champion_threshold END AS threshold,
           CASE WHEN role = 'champion' THEN alert END AS above_threshold,
           COALESCE(features_missing, 0) AS features_missing,
           latency_ms AS scoring_latency_ms, `trigger`, event_time AS rowtime
    FROM (SELECT *, ARRAY['champion', 'challenger'] AS roles FROM scored) AS s
         CROSS JOIN UNNEST(s.roles) AS r(role)
    WHERE {version} IS NOT NULL AND {score} IS NOT NULL"""


def lookups(settings: Settings, specs: dict[str, ModelSpec]) -> Lookups:
    """The served models' feature services as lookups in Feast's online store, opened on each
    worker: a stay's descriptors, an encounter's facts."""

    def services(entity: str) -> tuple[str, ...]:
        return tuple(
            dict.fromkeys(
                s.feature_service
                for s in specs.values()
                if s.entity == entity and s.feature_service
            )
        )

    return functools.partial(
        catalog_lookups,
        Path(settings.feast_dir),
        settings.feast_online_store,
        services("stay"),
        services("encounter"),
    )


def build(
    t_env: StreamTableEnvironment, settings: Settings, sources: Sources, sinks: Sinks
) -> None:
    """Sources `vitals`, `labs`, `adt` → sinks `model_scores` and `dead_letters`."""
    # A stay's state reaches back to its admission: it lives `stay_state_ttl_h` without a
    # record of the patient, not the screening jobs' `state_ttl_h` (module docstring).
    t_env.get_config().set(STATE_TTL, state_ttl(settings.stay_state_ttl_h))
    for name, src in sources.items():
        decoded_views(t_env, name, INPUTS[name].schema_name, src.table)
    stays.register(t_env)
    merged_view(
        t_env, "events", merged_sql(sources, settings.stay_state_ttl_h), events_columns(), READ
    )
    t_env.create_temporary_view("stay_events", t_env.sql_query(stay_events_sql()))
    t_env.create_temporary_view("stay_records", t_env.sql_query(stay_records_sql()))
    t_env.create_temporary_view("stay_running", t_env.sql_query(stay_running_sql()))
    t_env.create_temporary_view("stay_state", t_env.sql_query(stay_state_sql()))
    ss = t_env.create_statement_set()
    dead = dead_letters_insert_sql(sinks["dead_letters"], sources, STAGE, merged="events")
    ss.add_insert_sql(dead)
    specs = served(settings)
    stay, discharge = stay_models(specs), discharge_models(specs)
    at_hours = stay_hour_models(specs)
    for m in sorted(set(specs) - {*stay, *discharge, *at_hours}):
        log.warning(
            "%s (entity %s, trigger %s) is not served by this job: it scores stays at every "
            "state or at hours of the stay, and encounters at discharge",
            m,
            specs[m].entity,
            specs[m].trigger.kind,
        )
    if at_hours:
        hours = tuple(sorted({h for hs in at_hours.values() for h in hs}))
        t_env.create_java_temporary_system_function("wf_stay_hours", java_decode.STAY_HOURS_CLASS)
        t_env.create_temporary_view("stay_hour_input", t_env.sql_query(stay_hour_input_sql()))
        t_env.create_temporary_view("stay_hours", t_env.sql_query(stay_hours_sql(hours)))
    if stay or discharge or at_hours:
        specs = {m: specs[m] for m in dict.fromkeys((*stay, *at_hours, *discharge))}
        udf = model_score_udf(
            STREAM_FEATURES,
            settings.model_registry,
            tuple(specs),
            lookups(settings, specs) if settings.catalog_feature_lookups else no_lookups,
            settings.roles_check_s,
        )
        t_env.create_temporary_system_function("wf_score_models", udf)
        t_env.create_temporary_view(
            "score_inputs", t_env.sql_query(score_inputs_sql(stay, discharge, at_hours))
        )
        # one scoring operator for every model: the planner runs a Python function over a
        # union once per branch (a stay-state branch, one per hour model, one per discharge
        # model), each its own Python operator, unless the union is planned apart
        plan_once(t_env, "score_inputs", "planned_inputs", rowtime=False)
        t_env.create_temporary_view("scored", t_env.sql_query(scored_sql("planned_inputs")))
        cols = ", ".join(quote(f.name) for f in topics.MODEL_SCORE.schema.fields)
        ss.add_insert_sql(f"""
        INSERT INTO `{sinks["model_scores"]}`
        SELECT {cols}, rowtime FROM ({score_rows_sql(specs)})""")
    ss.attach_as_datastream()


JOB = Job(STAGE, __doc__, INPUTS, OUTPUTS, build)

if __name__ == "__main__":
    JOB.main()
