"""Internal rows: the rows passed between Flink SQL and the Python functions (DataStream
process functions, UDF and UDTF results), each declared once here.

Topic rows come from the Avro schemas (schemas.avro); these are the rows in between. From a
declaration come the Flink SQL type (`flink_sql()`), column lists and `CAST(ROW(…) AS …)`
expressions for SQL, and the Python tuple in declared order (`make(**values)`);
udfs.flink_types turns one into PyFlink's TypeInformation and DataType. Pure Python: no PyFlink.

Every field of an internal row is nullable. Kinds are logical types; a new one is a deliberate
change here (and in udfs.flink_types), as a new Avro shape is in schemas.avro:

    string   STRING        int      INT      long     BIGINT    float   FLOAT
    double   DOUBLE        boolean  BOOLEAN  bytes    BYTES     timestamp  TIMESTAMP(3)
    doubles  ARRAY<DOUBLE> (a row of many doubles between SQL and a JVM function)
    strings  ARRAY<STRING> (a few texts of one row, e.g. its refused values, unnested in SQL)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from schemas import topics
from schemas.avro import FLINK_TYPES, AvroField, Schema

Kind = Literal[
    "string",
    "int",
    "long",
    "float",
    "double",
    "boolean",
    "bytes",
    "timestamp",
    "doubles",
    "strings",
]
KINDS: tuple[str, ...] = get_args(Kind)
SQL_TYPES: dict[str, str] = {
    **FLINK_TYPES,
    "timestamp": "TIMESTAMP(3)",
    "doubles": "ARRAY<DOUBLE>",
    "strings": "ARRAY<STRING>",
}
MS_SUFFIX = "_ms"


def quote(name: str) -> str:
    """A Flink SQL identifier (backquoted, so reserved words such as `value` work)."""
    return "`" + name.replace("`", "``") + "`"


@dataclass(frozen=True)
class Field:
    """One column of an internal row; `kind` is one of KINDS (always nullable)."""

    name: str
    kind: Kind
    doc: str = ""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"field {self.name}: unknown kind {self.kind!r}; known: {KINDS}")

    def flink_sql(self) -> str:
        """``"`name` TYPE"`` as in a Flink ROW<…> type."""
        return f"{quote(self.name)} {SQL_TYPES[self.kind]}"


@dataclass(frozen=True)
class Row:
    """An internal row: its fields in order. The order is the contract (Python UDFs and process
    functions produce positional tuples); the names are what SQL selects."""

    name: str
    fields: tuple[Field, ...]
    doc: str = ""

    def __post_init__(self) -> None:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"row {self.name}: duplicate fields {dupes}")

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields)

    def field(self, name: str) -> Field:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(f"row {self.name} has no field {name!r}")

    def flink_sql(self) -> str:
        """The Flink SQL type, ``ROW<`a` STRING, `b` INT, …>``."""
        return f"ROW<{', '.join(f.flink_sql() for f in self.fields)}>"

    def column_list(self, prefix: str = "") -> str:
        """Comma-joined quoted columns for a SELECT or an `AS x(…)` alias, each after `prefix`
        (e.g. ``"x."``)."""
        return ", ".join(prefix + quote(c) for c in self.columns)

    def cast_sql(self, exprs: Mapping[str, str] | None = None, *, prefix: str = "") -> str:
        """``CAST(ROW(…) AS ROW<…>)``: each field's value is `exprs[name]` (a SQL expression)
        where given, else the column of the same name after `prefix`. Unknown names raise."""
        exprs = dict(exprs or {})
        self._check_names(exprs)
        values = ", ".join(exprs.get(c, prefix + quote(c)) for c in self.columns)
        return f"CAST(ROW({values}) AS {self.flink_sql()})"

    def select_sql(self, exprs: Mapping[str, str] | None = None) -> str:
        """A SELECT list of the row's columns in order, ``expr AS `col`, …``: `exprs[name]`
        where given, else the column of that name. Unknown names raise."""
        exprs = dict(exprs or {})
        self._check_names(exprs)
        return ", ".join(f"{exprs.get(c, quote(c))} AS {quote(c)}" for c in self.columns)

    def null_sql(self) -> str:
        """``CAST(NULL AS ROW<…>)``: a typed null of this row."""
        return f"CAST(NULL AS {self.flink_sql()})"

    def make(self, /, **values: Any) -> tuple[Any, ...]:
        """The row as a tuple in declared order; unnamed fields are None, unknown names raise."""
        self._check_names(values)
        return tuple(values.get(c) for c in self.columns)

    def without(self, names: Iterable[str], name: str, doc: str) -> Row:
        """This row less the fields `names` (which must exist), in the same order."""
        drop = set(names)
        self._check_names(drop)
        return Row(name, tuple(f for f in self.fields if f.name not in drop), doc)

    def _check_names(self, names: Iterable[str]) -> None:
        unknown = sorted(set(names) - set(self.columns))
        if unknown:
            raise TypeError(f"row {self.name} has no fields {unknown}; fields: {self.columns}")


def avro_kind(f: AvroField) -> Kind:
    """The kind of an Avro field as Flink's Avro format reads it (timestamp-millis: TIMESTAMP)."""
    kind = "timestamp" if f.logical == "timestamp-millis" else f.base
    if kind not in KINDS:
        raise ValueError(f"field {f.name}: Avro type {f.base} has no row kind")
    return kind  # type: ignore[return-value]


def from_avro(
    schema: Schema,
    name: str | None = None,
    doc: str | None = None,
    *,
    only: Iterable[str] | None = None,
    rename: Mapping[str, str] | None = None,
    timestamps_as_ms: bool = True,
) -> Row:
    """A row with the fields of an Avro schema (in schema order, or in `only`'s order if given),
    their docs included. With `timestamps_as_ms` (the default) a timestamp-millis field `x`
    becomes `x_ms`, epoch milliseconds (long), as the Python functions carry event times;
    otherwise a TIMESTAMP(3). `rename` maps schema names to row names (after the `_ms` rule).
    Unknown names in `only` or `rename` raise KeyError."""
    rename = dict(rename or {})
    picked = [schema.field(n) for n in only] if only is not None else list(schema.fields)
    unknown = sorted(set(rename) - set(schema.field_names))
    if unknown:
        raise KeyError(f"schema {schema.name} has no fields {unknown}")
    fields = []
    for f in picked:
        kind, field_name = avro_kind(f), f.name
        if kind == "timestamp" and timestamps_as_ms:
            kind, field_name = "long", f.name + MS_SUFFIX
        fields.append(Field(rename.get(f.name, field_name), kind, f.doc))
    return Row(
        name or schema.name, tuple(fields), schema.raw.get("doc", "") if doc is None else doc
    )


def avro_values_sql(
    row: Row,
    schema: Schema,
    *,
    prefix: str = "",
    rename: Mapping[str, str] | None = None,
    exprs: Mapping[str, str] | None = None,
) -> str:
    """The inverse of `from_avro` in SQL: comma-joined expressions over `row`'s columns (after
    `prefix`) that give `schema`'s fields in schema order, for ``INSERT INTO <topic table>
    SELECT <this>, <rowtime> FROM <view of row>``. A schema field is read from the column
    `rename` maps it to, else the column of its name, else (timestamp-millis) its `_ms` column;
    an epoch-ms long becomes the TIMESTAMP(3) the topic table wants; `exprs` gives a field's SQL
    expression outright (a constant). A missing column raises."""
    rename = dict(rename or {})
    given = dict(exprs or {})
    unknown = sorted(set(given) - set(schema.field_names))
    if unknown:
        raise KeyError(f"{schema.name} has no fields {unknown}")
    values = []
    for f in schema.fields:
        if f.name in given:
            values.append(given[f.name])
            continue
        name = rename.get(f.name, f.name)
        if name not in row.columns and avro_kind(f) == "timestamp":
            name += MS_SUFFIX
        col = prefix + quote(row.field(name).name)
        if avro_kind(f) == "timestamp" and row.field(name).kind == "long":
            col = f"CAST(TO_TIMESTAMP_LTZ({col}, 3) AS TIMESTAMP(3))"
        values.append(col)
    return ", ".join(values)


REJECTION = (
    Field("reason_code", "string", "Why the record was rejected; None for an accepted record."),
    Field("reason", "string", "The rejection in words; None for an accepted record."),
)


MEASURED_TIME = Field(
    "measured_time",
    "timestamp",
    "The record's own event_time: when its values were measured (a lab's specimen drawn), "
    "which a later recorded_time follows where they were entered or resulted later; the "
    "rowtime is the record time (schemas.codec.record_time).",
)


def measured(schema: Schema) -> bool:
    """Whether `schema`'s records may be timed later than they were measured (a
    `recorded_time` beside the `event_time`): their decoded rows end with MEASURED_TIME."""
    names = {f.name for f in schema.fields}
    return {"event_time", "recorded_time"} <= names


REFUSED = (
    Field(
        "refused_codes",
        "strings",
        'Where an accepted record had values refused alone (schemas.codec, "Refused values"): '
        "each refused value's code, value_out_of_range or value_not_a_number, in schema order; "
        "else None.",
    ),
    Field(
        "refused_reasons",
        "strings",
        "Each refused value in words (its field, its value, its range; or, for a field refused "
        "with another, `<field> refused with <other>`), as refused_codes; their columns are "
        "null. None where none was refused.",
    ),
)


def decoded(schema: Schema, only: Iterable[str]) -> Row:
    """The result of a decode UDTF (udfs.flink.decode_udtf) for `schema`: REJECTION, then the
    fields `only` names (udfs.vitals.decoded_fields), then MEASURED_TIME where `measured`, then
    REFUSED where the schema refuses values alone (`Schema.refused_alone`); None for a rejected
    record."""
    fields = from_avro(schema, only=only).fields
    when = (MEASURED_TIME,) if measured(schema) else ()
    refused = REFUSED if schema.refused_alone else ()
    return Row(
        f"decoded.{schema.name}",
        (*REJECTION, *fields, *when, *refused),
        f"A raw {schema.name} Kafka value decoded and validated: accepted (reason_code None) "
        "with its fields, or rejected with the reason.",
    )


RULE_HIT = Row(
    "rule_hit",
    (
        Field("kind", "string", "hit, or discharge (which resolves the patient's open alerts)."),
        Field("rule_id", "string"),
        Field("rule_version", "string"),
        Field("severity", "string", "low, medium or high."),
        Field("patient_token", "string"),
        Field("facility_id", "string"),
        Field("unit_id", "string"),
        Field("first_time", "timestamp", "Event time of the pattern's first record."),
        Field("first_record_id", "string", "First input record of the pattern."),
        Field("last_record_id", "string", "Input record that completed the pattern."),
        Field("score_name", "string"),
        Field("score_value", "int", "The rule's score at this hit."),
        Field("evidence_json", "string", "The triggering values: {param: {value, measured_time}}."),
    ),
    "A rule hit (or a discharge) on its way from the screening SQL to the alert lifecycle "
    "(udfs/java/AlertLifecycle.java, which reads it by these names); its event time is the "
    "record's timestamp (the completing record's), not a column.",
)

ALERT_EVENT = from_avro(
    topics.ALERT_V2.schema,
    "alert_event",
    "An alert lifecycle event as the JVM lifecycle emits it (udfs/java/AlertLifecycle.java, "
    "equal to udfs.lifecycle's event dicts): alert.v2's fields in its order, its timestamps as "
    "epoch-ms `_ms` longs.",
)

CENSUS_IN = Row(
    "census_in",
    (
        Field("event_id", "string"),
        Field("event_type", "string"),
        Field("patient_token", "string"),
        Field("facility_id", "string"),
        Field("unit_id", "string"),
        Field("bed_id", "string"),
        Field(
            "encounter_token",
            "string",
            "The visit: an admission or merge that places the patient binds the stay to it, "
            "an admission's cancel (A11) or a void (a FHIR Encounter entered-in-error) names it.",
        ),
        Field("source_topic", "string", "The topic the ADT record came from."),
        Field("kafka_partition", "int"),
        Field("kafka_offset", "long"),
        Field("payload", "bytes", "The raw ADT record, kept for a dead letter."),
    ),
    "An accepted ADT event on its way from the census SQL to the keyed placement function "
    "(udfs/java/CensusPlacement.java, which reads it by these names) with its rowtime.",
)

CENSUS_OUT = Row(
    "census_out",
    (
        Field("kind", "string", "delta, event or dead_letter: which fields are set."),
        Field("facility_id", "string"),
        Field(
            "unit_id", "string", "delta: the unit; event: the unit after it; dead_letter: asked."
        ),
        Field("event_time_ms", "long", "Event time, epoch milliseconds."),
        Field("occupied", "int", "delta: change to occupied beds (-1, 0 or +1)."),
        Field("arrivals", "int", "delta only."),
        Field("discharges", "int", "delta only."),
        Field("transfers_in", "int", "delta only."),
        Field("transfers_out", "int", "delta only."),
        Field("cancels", "int", "delta only."),
        Field("unit_capacity", "int", "delta: the unit's staffed beds."),
        Field("facility_capacity", "int", "delta: the facility's staffed beds."),
        Field("event_id", "string", "event and dead_letter: the ADT event."),
        Field("event_type", "string", "event and dead_letter."),
        Field("patient_token", "string", "event and dead_letter."),
        Field("outcome", "string", "event: applied or no_change; dead_letter: the reason code."),
        Field("reason", "string", "event and dead_letter: the outcome in words, if any."),
        Field("source_topic", "string", "event and dead_letter: where the ADT record came from."),
        Field("source_partition", "int", "event and dead_letter."),
        Field("source_offset", "long", "event and dead_letter."),
        Field("payload", "bytes", "event and dead_letter: the raw ADT record."),
    ),
    "What the bed-census job's placement step yields: census deltas, one `event` row per "
    "applied or unchanged ADT event and one `dead_letter` row per refused one, in one row type; "
    "`kind` says which, the other kind's fields are None.",
)
# The keyed placement function's own output (udfs/java/CensusPlacement.java): the framework
# puts the partition key (patient_token) first, and the job's SQL adds the capacities.
CENSUS_PLACED = CENSUS_OUT.without(
    ("patient_token", "unit_capacity", "facility_capacity"),
    "census_placed",
    "CENSUS_OUT as the placement function emits it, without the key and the capacities.",
)

STAY_HOUR = Row(
    "stay_hour",
    (
        Field("first_ms", "long", "The stay's first record's event time, epoch milliseconds."),
        Field("label", "string", "The hour as a record id names it: `24h`, `1.5h`."),
        Field("hours_since_admission", "double", "The hour after the stay's first record."),
        Field("due_ms", "long", "first_ms plus the hour: the event time of the hour's row."),
        Field("facility_id", "string", "As of the hour (the stay's latest record by then)."),
        Field("unit_id", "string", "As of the hour."),
        Field(
            "base",
            "doubles",
            "As of the hour: the stay's running sums and extremes, in the order the job's SQL "
            "packs them (jobs/model_scoring.BASE_COLUMNS).",
        ),
    ),
    "A stay at one of its reported hours, as the catalog job's keyed hour function "
    "(udfs/java/StayHours.java) emits it after the partition key (patient_token, stay_seq).",
)

SCORE_RESULT = Row(
    "score_result",
    (
        Field("champion_version", "string", "None when the registry has no champion."),
        Field("champion_risk", "double"),
        Field("champion_threshold", "double"),
        Field("challenger_version", "string", "None when there is no shadow challenger."),
        Field("challenger_risk", "double"),
        Field("challenger_threshold", "double"),
        Field("features_missing", "int", "The champion's inputs that were unknown."),
        Field("latency_ms", "double", "Wall time to score the batch this state was in."),
    ),
    "The sepsis scoring UDF's result per screened state (udfs.scoring.Scorer's columns, "
    "udfs.flink_scoring.score_udf): champion and shadow challenger risk with their thresholds.",
)

SCORED_STATE = Row(
    "scored_state",
    (
        Field("record_id", "string", "The screened state's record."),
        Field("patient_token", "string"),
        Field("facility_id", "string"),
        Field("unit_id", "string"),
        Field("event_time", "timestamp", "The state's event time."),
        *SCORE_RESULT.fields,
        Field("quarantine_json", "string", "The state's quarantine note (sepsis.screen.v1)."),
    ),
    "A screened state with its SCORE_RESULT, as the screening job's stage two passes it to the "
    "score rows (jobs/sepsis_screen.py; the champion's hits are picked before, with the rules').",
)

NEWS2_RESULT = Row(
    "news2_result",
    (
        Field("score", "int", "Aggregate NEWS2 (a lower bound when parameters are absent)."),
        Field("params_scored", "int", "Parameters present and scored (of the 7)."),
        Field("red_flag", "boolean", "Some single parameter scored 3."),
    ),
    "The NEWS2 scalar UDF's result (udfs.vitals.news2_summary, udfs.flink.news2_udf).",
)

MODEL_SCORE_RESULT = Row(
    "model_score_result",
    (
        Field("champion_version", "string", "None when the registry has no champion."),
        Field("champion_score", "double", "Probability (binary) or value in the spec's unit."),
        Field("champion_threshold", "double", "Alert threshold; None for regression models."),
        Field("alert", "boolean", "The champion's score reached its threshold (binary only)."),
        Field("challenger_version", "string", "None when there is no shadow challenger."),
        Field("challenger_score", "double"),
        Field("features_missing", "int", "The champion's inputs that were unknown."),
        Field("latency_ms", "double", "Wall time to score the batch this row was in."),
    ),
    "The catalog's scoring UDF result per (entity state, model) (udfs.model_set.ModelSet, "
    "udfs.flink_model_set.model_score_udf): any model of the catalog, champion and shadow.",
)

QUALITY_WINDOW = Row(
    "quality_window",
    (
        Field("source_topic", "string"),
        Field("facility_id", "string"),
        Field("unit_id", "string", "`*` for the facility's whole source."),
        Field("window_start_ms", "long"),
        Field("window_end_ms", "long"),
        Field("records", "long", "Records in the window, accepted and refused."),
        Field("distinct_ids", "long", "Distinct record ids among them."),
        Field("refused_json", "string", "{reason_code: refused records}."),
        Field("params_json", "string", "{parameter: [present, mean, median, bin counts…]}."),
        Field("sample_ids", "string", "A few record ids, space-separated."),
    ),
    "One source's tumbling window from the data-quality job's SQL (jobs/data_quality.py) on its "
    "way to the per-source monitors (udfs.flink_quality.QualityMonitor, udfs.quality.Window); "
    "its event time (the window's last millisecond) is the record's timestamp.",
)

DEVICE_WINDOW = Row(
    "device_window",
    (
        Field("source_topic", "string"),
        Field("device_id", "string"),
        Field("facility_id", "string", "Of the window's records (the greatest, if several)."),
        Field("unit_id", "string", "Of the window's records (the greatest, if several)."),
        Field("window_start_ms", "long"),
        Field("window_end_ms", "long"),
        Field("records", "long", "The device's readings in the window, accepted and refused."),
        Field("first_ms", "long", "Event time of the window's first reading."),
        Field("last_ms", "long", "Event time of the window's last reading."),
        Field(
            "values_json",
            "string",
            "{parameter: value} where every reading of the window had the same parameters "
            "with the same values, enough of them varying (udfs.quality.FROZEN_VARYING); "
            "else null.",
        ),
        Field("repeats", "boolean", "values_json equals the device's previous window's."),
        Field(
            "first_id",
            "string",
            "The least record id of the window (a sample; the first by time only where ids sort "
            "by time, as a device's `device@time` do, not an observation id).",
        ),
        Field("last_id", "string", "The greatest record id of the window (a sample, likewise)."),
        Field("previous_first_ms", "long", "first_ms of the device's previous window."),
        Field("previous_last_ms", "long", "last_ms of the device's previous window."),
        Field("previous_records", "long", "records of the device's previous window."),
        Field("previous_first_id", "string", "first_id of the device's previous window."),
    ),
    "One device's tumbling window from the data-quality job's SQL (jobs/data_quality.py, "
    "frozen_sql) on its way to the frozen-feed monitor (udfs.flink_quality.FrozenFeedMonitor, "
    "udfs.quality.DeviceWindow): only a window that repeats the device's previous window's "
    "values, and the one after such a window; its event time (the window's last millisecond) "
    "is the record's timestamp.",
)

MONITOR_WINDOW = Row(
    "monitor_window",
    (
        *QUALITY_WINDOW.fields,
        *(f for f in DEVICE_WINDOW.fields if f.name not in QUALITY_WINDOW.columns),
    ),
    "The data-quality job's windows on their way to its monitors, in one stream: a source's "
    "window (QUALITY_WINDOW, `device_id` null) or a device's (DEVICE_WINDOW, the other "
    "columns null).",
)

QUALITY_EVENT = from_avro(
    topics.QUALITY_EVENT.schema,
    "quality_event",
    "A data-quality event as udfs.flink_quality.QualityMonitor emits it (udfs.quality's event "
    "dicts): quality.event.v1's fields in its order, its timestamps as epoch-ms `_ms` longs.",
)
