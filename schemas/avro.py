"""Loads the `.avsc` files and derives from them the Flink SQL and ClickHouse column types.

Supported field shapes are those wardflow's schemas use: a primitive, a `timestamp-millis`
long, an array of strings, or `["null", one of those]`. Anything else raises, so a new
shape is a deliberate change here rather than a silent mis-mapping.

Schema evolution. A topic's schema changes compatibly or not at all: a compatible change (a new
optional field, appended at the end as `["null", T]` with default null, marked
`"wardflow.since": <revision>`) keeps the topic and its `.vN` name and raises the schema's
revision, the top-level property `"wardflow.revision"` (absent: 1). Every earlier revision is kept
as it was, `history/<name>.r<revision>.avsc`, so readers can resolve a record written with any of
them (`load_revision`, `earlier_revisions`): old readers read new records by Avro schema
resolution (they skip the fields they do not know), new readers read old records with the new
fields null. tests/unit/test_schema_evolution.py proves both directions for every schema with
history and fails on a change that is not compatible. wardflow's records travel without a schema
id (schemaless Avro), so a reader must know the writer's revision: the codec tries the current
revision first and then the earlier ones (schemas.codec.decode); deploy readers before the
producers that write a new revision. An incompatible change is a new topic (`.v(N+1)`).

Widening an enum (`"wardflow.enum"`, a string field's allowed values, e.g. quality.event.v1's
`monitor` gaining `frozen_device`): the field's Avro type is unchanged, so no revision is
raised and no history kept; a value may only be appended, never removed or renamed. Readers that
validate the enum (the codec's strict decode: a value outside it is `bad_enum`) must be deployed
before the producer that sends the new value, or they dead-letter its records; say so in the
field's `doc`.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from functools import cache, cached_property
from pathlib import Path
from typing import Any

import fastavro
import numpy as np

SCHEMA_DIR = Path(__file__).resolve().parent
HISTORY_DIR = SCHEMA_DIR / "history"
REVISION = "wardflow.revision"  # top-level property: the schema's revision (absent: 1)
SINCE = "wardflow.since"  # field property: the revision that added the field
# top-level property: "value" where a value out of range is refused alone (Schema.refused_alone);
# field property: "record" for a field of such a schema whose impossible value rejects its record
REFUSAL = "wardflow.refusal"
# field property: true for a measurement of such a schema that has no range (Schema.measurements)
MEASUREMENT = "wardflow.measurement"
# field property: the name of a field refused alone whose refusal refuses this one too
# (Schema.refused_with): the two are one measurement
REFUSED_WITH = "wardflow.refused_with"

FLINK_TYPES = {  # Avro primitive -> Flink SQL type
    "string": "STRING",
    "int": "INT",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "bytes": "BYTES",
}
_CLICKHOUSE = {
    "string": "String",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "boolean": "Bool",
    "bytes": "String",
}


def _float32(x: float) -> float:
    """`x` rounded to the nearest float32, as a float field stores it."""
    return float(struct.unpack("<f", struct.pack("<f", x))[0])


NUMERIC_BASES = ("int", "long", "float", "double")


@dataclass(frozen=True)
class AvroField:
    name: str
    base: str
    logical: str | None
    nullable: bool
    doc: str
    phi: str | None
    value_range: tuple[float, float] | None
    allowed: tuple[str, ...] | None

    @property
    def accepted_range(self) -> tuple[float, float] | None:
        """`value_range` as the values a reader sees: for a `float` field, each bound rounded to
        float32 as a writer's value is, so a record written with a bound itself (FiO2 0.21 is
        0.2099999934 in float32) is inside the range. Decoders compare with these."""
        if self.value_range is None or self.base != "float":
            return self.value_range
        lo, hi = self.value_range
        return _float32(lo), _float32(hi)

    def out_of_range(self, values: Any) -> Any:
        """Which of `values` (a number, or a numpy array / pandas Series of them; NaN: none)
        a decoder refuses as outside the field's range, each taken as a reader sees it. The one
        rule the codec, the JVM decoders and the offline references apply."""
        if self.accepted_range is None:
            return np.zeros(np.shape(values), dtype=bool) if np.ndim(values) else False
        lo, hi = self.accepted_range
        dtype = np.float32 if self.base == "float" else np.float64
        read: np.ndarray[Any, np.dtype[np.float64]] = np.asarray(values, dtype=dtype).astype(
            np.float64
        )
        out = ~np.isnan(read) & ((read < lo) | (read > hi))
        return out if np.ndim(values) else bool(out)

    def flink_type(self) -> str:
        """As Flink's Avro format reads and writes it (timestamp-millis ↔ TIMESTAMP(3))."""
        t = "TIMESTAMP(3)" if self.logical == "timestamp-millis" else FLINK_TYPES[self.base]
        return t if self.nullable else f"{t} NOT NULL"

    def clickhouse_type(self) -> str:
        t = "DateTime64(3, 'UTC')" if self.logical == "timestamp-millis" else _CLICKHOUSE[self.base]
        return f"Nullable({t})" if self.nullable else t


@dataclass(frozen=True)
class Schema:
    name: str
    raw: dict[str, Any]
    parsed: Any
    fields: tuple[AvroField, ...]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    @property
    def numeric_fields(self) -> tuple[str, ...]:
        """The fields holding a number (int, long, float, double; not a timestamp): the values
        a data-quality monitor judges and a quarantine may ignore."""
        return tuple(f.name for f in self.fields if f.base in NUMERIC_BASES and f.logical is None)

    @cached_property
    def refused_alone(self) -> tuple[AvroField, ...]:
        """The measurements whose value a decoder refuses alone (schemas.codec, "Refused
        values"): in a schema whose top-level `wardflow.refusal` is `value`, every nullable
        numeric field with a `wardflow.range` but one marked `"wardflow.refusal": "record"`
        (below); else none (a value out of range refuses its record).

        Declared per schema, not derived from the fields alone, because whether a record is
        several independent measurements is the topic's meaning, not its shape: a monitor's
        numerics, an observation set or a lab panel each carry values taken apart, where one
        impossible value says nothing about the others, while a score or screen topic's ranged
        numbers come from one computation, and one out of range means its producer is wrong
        as a whole. A top-level custom property is outside Avro's parsing canonical form: it
        changes neither what a record's bytes are nor the schema's revision
        (schemas/history keeps the wire schemas).

        A field of such a schema whose `wardflow.refusal` is `record` is not refused alone: a
        ranged number that qualifies another value rather than measuring the patient (a
        device's `spo2_signal_quality_pct`, which decides whether its SpO2 second is valid),
        where refusing it alone would let the value it qualifies pass unqualified, and would
        count as a measurement kept. Its impossible value rejects the record, as before."""
        if self.raw.get(REFUSAL, "record") != "value":
            return ()
        record = {s["name"] for s in self.raw["fields"] if s.get(REFUSAL) == "record"}
        return tuple(
            f
            for f in self.fields
            if f.nullable
            and f.value_range is not None
            and f.base in NUMERIC_BASES
            and f.name not in record
        )

    @cached_property
    def refused_alone_names(self) -> frozenset[str]:
        """The names of `refused_alone` (computed once per schema, read per record)."""
        return frozenset(f.name for f in self.refused_alone)

    @cached_property
    def measurements(self) -> tuple[AvroField, ...]:
        """The fields whose value, present and accepted, keeps a record whose other values were
        refused alone (schemas.codec, "Refused values"): `refused_alone`, and the fields marked
        `"wardflow.measurement": true`, in schema order; none where no value is refused alone.

        A record is kept while it still says something about the patient. The marked fields
        measure or observe the patient but have no range, so are never refused alone (a bad
        enum rejects its record): vitals.observation's `acvpu`, NEWS2's consciousness parameter.
        An observation set of ACVPU 'V' and a temperature sent in °F keeps the 'V', a NEWS2 red
        flag (RCP NEWS2 2017, chart 1: consciousness other than Alert scores 3). The other
        fields are context or qualifiers, which alone keep no record: identifiers, times, the
        source; a device's `spo2_signal_quality_pct`, `spo2_probe_off` and `ecg_leads_off`,
        which say whether a second's SpO2 or heart rate is valid; vitals.observation's
        `spo2_scale2`, the patient's prescribed SpO2 target, which chooses how SpO2 is scored
        (a record rejected whole loses it, and later SpO2 is scored on Scale 1 until a kept
        record carries it); its `on_supplemental_o2`, a flag beside an impossible FiO2 as
        suspect as that FiO2 (and refused with it, `refused_with`); its
        `mechanical_ventilation`, as a record kept by that flag alone would be a new reading
        for the two-reading NEWS2 rules (jobs.screening.rules VITALS_SEQUENCE; a record kept
        by ACVPU alone is such a reading, as a valid ACVPU-only observation is: README,
        "Refused values"). A record whose
        values present were all refused, or refused beside context and qualifiers only, is
        rejected whole."""
        if not self.refused_alone:
            return ()
        marked = {s["name"] for s in self.raw["fields"] if s.get(MEASUREMENT) is True}
        return tuple(
            f for f in self.fields if f.name in self.refused_alone_names or f.name in marked
        )

    @cached_property
    def measurement_names(self) -> frozenset[str]:
        """The names of `measurements` (computed once per schema, read per record)."""
        return frozenset(f.name for f in self.measurements)

    @cached_property
    def refused_with(self) -> tuple[tuple[AvroField, AvroField], ...]:
        """The pairs (field, partner) where a field is refused with its partner, a field of
        `refused_alone` (`"wardflow.refused_with": "<partner>"`), in schema order: the two are
        one measurement, and where the partner is refused alone from a record that is kept,
        the field present is refused too (null, its own refusal; schemas.codec, "Refused
        values"). vitals.observation's `on_supplemental_o2` is refused with `fio2_fraction`:
        the flag beside an impossible FiO2 is as suspect as that FiO2, and the screening state
        pairs the two (udfs.sepsis OXYGEN_PAIR), so a kept flag would be taken as evidence
        against an older FiO2 (a FiO2 of 40, percent, beside "not on oxygen" would drop the
        FiO2 0.40 charted 20 minutes before and score NEWS2 lower)."""
        by_name = {f.name: f for f in self.fields}
        return tuple(
            (f, by_name[s[REFUSED_WITH]])
            for s, f in zip(self.raw["fields"], self.fields, strict=True)
            if REFUSED_WITH in s
        )

    def field(self, name: str) -> AvroField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def flink_columns(self) -> str:
        """Column list for a Flink `CREATE TABLE` whose format decodes this schema."""
        return ",\n  ".join(f"`{f.name}` {f.flink_type()}" for f in self.fields)

    def flink_row(self) -> str:
        """The schema as a Flink SQL row type, ``ROW<`a` STRING, …>``."""
        return f"ROW<{self.flink_columns()}>"

    def clickhouse_columns(self) -> dict[str, str]:
        return {f.name: f.clickhouse_type() for f in self.fields}

    @property
    def revision(self) -> int:
        """The schema's revision (`wardflow.revision`; 1 when absent)."""
        return int(self.raw.get(REVISION, 1))


def _field(spec: dict[str, Any]) -> AvroField:
    t = spec["type"]
    nullable = False
    if isinstance(t, list):
        if len(t) != 2 or t[0] != "null":
            raise ValueError(f"field {spec['name']}: only ['null', T] unions are supported")
        nullable, t = True, t[1]
    logical = None
    if isinstance(t, dict):
        logical = t.get("logicalType")
        if t["type"] != "long" or logical != "timestamp-millis":
            raise ValueError(f"field {spec['name']}: unsupported complex type {t}")
        t = "long"
    if t not in FLINK_TYPES:
        raise ValueError(f"field {spec['name']}: unsupported type {t}")
    rng = spec.get("wardflow.range")
    allowed = spec.get("wardflow.enum")
    return AvroField(
        name=spec["name"],
        base=t,
        logical=logical,
        nullable=nullable,
        doc=spec.get("doc", ""),
        phi=spec.get("wardflow.phi"),
        value_range=(float(rng[0]), float(rng[1])) if rng else None,
        allowed=tuple(allowed) if allowed else None,
    )


def _load(name: str, path: Path) -> Schema:
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(raw)
    return Schema(name=name, raw=raw, parsed=parsed, fields=tuple(_field(f) for f in raw["fields"]))


@cache
def load_schema(name: str) -> Schema:
    """The current revision of a registry schema, `<name>.avsc`."""
    return check_refusals(name, _load(name, SCHEMA_DIR / f"{name}.avsc"))


def check_refusals(name: str, schema: Schema) -> Schema:
    """`schema`, whose `wardflow.refusal` properties (Schema.refused_alone) are known ones: the
    schema's `record` or `value`, a field's `record`; and whose `wardflow.measurement` ones
    (Schema.measurements) are `true`, each on a nullable field of a `value` schema that is
    neither a measurement by its range already nor a qualifier (`wardflow.refusal` `record`);
    and whose `wardflow.refused_with` ones (Schema.refused_with) each name a field refused
    alone, on a nullable field that is no measurement; else a ValueError."""
    if schema.raw.get(REFUSAL, "record") not in ("record", "value"):
        raise ValueError(f"{name}: {REFUSAL} is {schema.raw[REFUSAL]!r}; known: record, value")
    for spec, f in zip(schema.raw["fields"], schema.fields, strict=True):
        if spec.get(REFUSAL, "record") != "record":
            why = f"{REFUSAL} is {spec[REFUSAL]!r}; known: record"
            raise ValueError(f"{name}.{spec['name']}: {why}")
        partner = spec.get(REFUSED_WITH)
        if partner is not None and partner not in schema.refused_alone_names:
            why = f"{REFUSED_WITH} is {partner!r}, not a field refused alone"
            raise ValueError(f"{name}.{spec['name']}: {why}")
        if partner is not None and (not f.nullable or f.name in schema.measurement_names):
            why = f"{REFUSED_WITH} on a required field or a measurement"
            raise ValueError(f"{name}.{spec['name']}: {why}")
        if MEASUREMENT not in spec:
            continue
        if spec[MEASUREMENT] is not True:
            why = f"{MEASUREMENT} is {spec[MEASUREMENT]!r}; known: true"
        elif not schema.refused_alone:
            why = f"{MEASUREMENT} where no value is refused alone ({REFUSAL} is not value)"
        elif not f.nullable:
            why = f"{MEASUREMENT} on a required field, which every record has"
        elif f.name in schema.refused_alone_names:
            why = f"{MEASUREMENT} on a ranged measurement, one already"
        elif REFUSAL in spec:
            why = f"{MEASUREMENT} on a qualifier ({REFUSAL} record)"
        else:
            continue
        raise ValueError(f"{name}.{spec['name']}: {why}")
    return schema


@cache
def load_revision(name: str, revision: int) -> Schema:
    """Revision `revision` of schema `name`: the current one, or one kept in `history/`."""
    current = load_schema(name)
    if revision == current.revision:
        return current
    path = HISTORY_DIR / f"{name}.r{revision}.avsc"
    if not 1 <= revision < current.revision or not path.exists():
        raise KeyError(f"{name} has no revision {revision} (current: {current.revision})")
    schema = _load(name, path)
    if schema.revision != revision:
        raise ValueError(f"{path.name} says it is revision {schema.revision}")
    return schema


@cache
def earlier_revisions(name: str) -> tuple[Schema, ...]:
    """Every earlier revision of schema `name`, newest first (empty for a revision-1 schema)."""
    return tuple(load_revision(name, r) for r in range(load_schema(name).revision - 1, 0, -1))


def evolved_schemas() -> list[str]:
    """The names of the schemas with earlier revisions kept in `history/`."""
    return sorted({p.name.rsplit(".r", 1)[0] for p in HISTORY_DIR.glob("*.r*.avsc")})
