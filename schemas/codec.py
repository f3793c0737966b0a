"""Schema-driven Avro decoding and validation of Kafka record values.

A record is *accepted* when it decodes with the topic's writer schema, consumes every byte,
and every value lies inside the field's `wardflow.range` / `wardflow.enum` from the schema.
Otherwise the caller gets a `Rejection` whose `reason_code` is one of `undecodable`,
`out_of_range`, `not_a_number`, `bad_enum`, `missing_field`, `timestamp_mismatch`.

Refused values. A schema whose top-level `wardflow.refusal` is `value` (vitals.device.v1,
vitals.observation.v1, labs.result.v1: records of several measurements taken apart;
schemas.avro.Schema.refused_alone) refuses a ranged measurement (a nullable numeric field with a
range, but a qualifier such as a device's SpO2 signal quality, marked `"wardflow.refusal":
"record"`) that is NaN or out of its range *alone*: the record is accepted with that field null,
its other values kept (a temperature probe sending °F no longer hides the monitor's heart rate),
and the accepted record carries one refusal per refused value (`Accepted.refused`, in schema
order: its own code, `value_out_of_range` or `value_not_a_number`, and its own reason, naming
the field, its value and its range), which the jobs dead-letter beside the accepted row, one
letter a value, so no value vanishes silently. This holds while a measurement remains
(schemas.avro.Schema.measurements): a ranged value in range, or a present measurement without a
range (`"wardflow.measurement": true`: an observation's ACVPU), so an observation of ACVPU 'V'
beside a °F temperature keeps the 'V' (a NEWS2 red flag). A field refused with a partner
(`"wardflow.refused_with"`: an observation's `on_supplemental_o2` with its `fio2_fraction`, one
measurement) is refused too where its partner is, in a record kept: null, and its own refusal
after the others (the partner's code, reason `on_supplemental_o2 refused with fio2_fraction`).
A record with no measurement left (its values present all refused, beside context and
qualifiers only) is rejected as before: `out_of_range` / `not_a_number`, the first refused
value's code, and a reason naming every refused value (each with its code where there are
several: `temp_c=98.6 outside [14, 46] (out_of_range); spo2_pct is NaN (not_a_number)`). The
other checks, and ranges of other fields or of other schemas, reject the record. Counting: each
received record is accepted or rejected (record-level codes), so received = accepted +
record-level dead letters; each `value_*` dead letter is one refused value of an accepted
record (a record with two refused values has two), not a record lost.

`validate` is the strict check a producer applies before writing (every value valid, first
failure); `check` is the reader's, with refused values; `decode_valid` / `decode_checked` read
with it.

A payload that does not decode with the current revision of its schema is tried with each
earlier revision (schemas.avro, "Schema evolution") as the writer schema, newest first, and read
into the current one (the fields added since are null): records written before a compatible
change stay readable. Each revision appends fields, so at most one of them consumes every byte.
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import fastavro

from schemas.avro import AvroField, Schema, earlier_revisions

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Rejection(NamedTuple):
    reason_code: str
    reason: str


def decode(schema: Schema, payload: bytes | None) -> dict[str, Any] | Rejection:
    """The record, read with the schema's current revision or else with an earlier one as the
    writer's (see the module docstring); the current revision's rejection when none reads it."""
    if not payload:
        return Rejection("undecodable", "empty payload")
    record = _read(payload, schema.parsed, None)
    if isinstance(record, Rejection) and schema.name:
        for earlier in earlier_revisions(schema.name):
            old = _read(payload, earlier.parsed, schema.parsed)
            if not isinstance(old, Rejection):
                return old
    return record


def _read(payload: bytes, writer: Any, reader: Any) -> dict[str, Any] | Rejection:
    buf = io.BytesIO(payload)
    try:
        record = fastavro.schemaless_reader(buf, writer, reader)
    except Exception as exc:  # fastavro raises many types on corrupt input
        return Rejection("undecodable", f"{type(exc).__name__}: {exc}"[:500])
    if buf.tell() != len(payload):
        return Rejection("undecodable", f"{len(payload) - buf.tell()} trailing bytes after record")
    if not isinstance(record, dict):
        return Rejection("undecodable", "payload is not a record")
    return record


# A refused value's code (an accepted record's) by the record-level code of the same check.
VALUE_CODES = {"out_of_range": "value_out_of_range", "not_a_number": "value_not_a_number"}


class Accepted(NamedTuple):
    """An accepted record (its refused values null) and its refused values, one refusal each in
    schema order (code `value_out_of_range` / `value_not_a_number`, reason naming the field, its
    value and its range); empty where none was refused."""

    record: dict[str, Any]
    refused: tuple[Rejection, ...] = ()


def refused_whole(refused: list[Rejection]) -> Rejection:
    """The rejection of a record whose values `refused` (record-level codes, schema order) left
    no measurement: the first one's code, and a reason naming each (with its code where there
    are several, as the codes may differ)."""
    if len(refused) == 1:
        return refused[0]
    why = "; ".join(f"{r.reason} ({r.reason_code})" for r in refused)
    return Rejection(refused[0].reason_code, why)


def _check_field(f: AvroField, v: Any) -> Rejection | None:
    """The first failed check of non-null value `v` of field `f`, in the codec's order."""
    if f.base == "string" and not f.nullable and v == "":
        return Rejection("missing_field", f"{f.name} is empty")
    if f.value_range is not None:
        if isinstance(v, float) and math.isnan(v):
            return Rejection("not_a_number", f"{f.name} is NaN")
        if f.out_of_range(v):
            lo, hi = f.value_range
            return Rejection("out_of_range", f"{f.name}={v:g} outside [{lo:g}, {hi:g}]")
    if f.allowed is not None and v not in f.allowed:
        return Rejection("bad_enum", f"{f.name}={v!r} not in {list(f.allowed)}")
    return None


def validate(schema: Schema, record: dict[str, Any]) -> Rejection | None:
    """The first failed check of any value (None: every value valid): what a producer must
    write. A reader refuses some values alone instead (`check`)."""
    for f in schema.fields:
        v = record.get(f.name)
        if v is not None and (bad := _check_field(f, v)) is not None:
            return bad
    return None


def check(schema: Schema, record: dict[str, Any]) -> Accepted | Rejection:
    """The record as a reader accepts it, or its rejection (the module docstring, "Refused
    values"): a failed check of a field of `schema.refused_alone` refuses that value alone, any
    other rejects the record (the first, in schema order); a record with values refused and no
    measurement left (`schema.measurements`) is rejected (`refused_whole`); in a record kept, a
    field refused with a partner refused (`schema.refused_with`) is refused too, after them."""
    alone = schema.refused_alone_names
    measured = schema.measurement_names
    refused: list[tuple[str, Rejection]] = []
    kept = False
    for f in schema.fields:
        v = record.get(f.name)
        if v is None:
            continue
        bad = _check_field(f, v)
        if bad is None:
            kept = kept or f.name in measured
        elif f.name in alone:
            refused.append((f.name, bad))
        else:
            return bad
    if not refused:
        return Accepted(record, ())
    if not kept:
        return refused_whole([r for _, r in refused])
    # a field refused with its partner (Schema.refused_with): one measurement, one verdict
    codes = dict(refused)
    refused += [
        (f.name, Rejection(codes[p.name].reason_code, f"{f.name} refused with {p.name}"))
        for f, p in schema.refused_with
        if p.name in codes and record.get(f.name) is not None
    ]
    return Accepted(
        {**record, **{name: None for name, _ in refused}},
        tuple(Rejection(VALUE_CODES[r.reason_code], r.reason) for _, r in refused),
    )


def record_time(record: dict[str, Any]) -> datetime:
    """A record's Kafka timestamp, the time every job acts on it: when the system could know
    of it. That is `event_time` (when it happened), unless the record was entered later: an
    ADT event's `recorded_time` (HL7 EVN-2, else MSH-7) is when the registrar entered it, which
    for an admission or discharge entered after the fact (its PV1-44/45 hours back) is later.
    Timed by when it happened, such an event would be behind the watermark of a feed that has
    moved on and dead-lettered `late`, and the patient's bed never counted; timed by when it
    was entered it is applied then, its `event_time` kept in the record. A time recorded
    before the event (a pre-admission, a scheduled discharge) leaves the event time."""
    at: datetime = record["event_time"]
    recorded = record.get("recorded_time")
    return recorded if recorded is not None and recorded > at else at


def epoch_ms(t: datetime) -> int:
    """Milliseconds since the epoch, truncated as Avro timestamp-millis encoding truncates (so a
    record's Kafka timestamp equals its encoded `record_time`)."""
    return (t - EPOCH) // timedelta(milliseconds=1)


def decode_valid(
    schema: Schema, payload: bytes | None, record_timestamp_ms: int | None = None
) -> dict[str, Any] | Rejection:
    """`decode_checked`'s record (its refused values null), or its rejection."""
    got = decode_checked(schema, payload, record_timestamp_ms)
    return got if isinstance(got, Rejection) else got.record


def decode_checked(
    schema: Schema, payload: bytes | None, record_timestamp_ms: int | None = None
) -> Accepted | Rejection:
    """Decode and `check`; when given, the record timestamp must equal the payload's
    `record_time` (its event_time, or a later recorded_time)."""
    record = decode(schema, payload)
    if isinstance(record, Rejection):
        return record
    got = check(schema, record)
    if isinstance(got, Rejection):
        return got
    record = got.record
    if record_timestamp_ms is not None and isinstance(record.get("event_time"), datetime):
        ms = epoch_ms(record_time(record))
        if ms != record_timestamp_ms:
            which = "recorded_time" if ms != epoch_ms(record["event_time"]) else "event_time"
            return Rejection(
                "timestamp_mismatch",
                f"{which} {ms} != Kafka record timestamp {record_timestamp_ms}",
            )
    return got


def encode(schema: Schema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()
