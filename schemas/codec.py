"""Schema-driven Avro decoding and validation of Kafka record values.

A record is *accepted* when it decodes with the topic's writer schema, consumes every byte,
and every value lies inside the field's `wardflow.range` / `wardflow.enum` from the schema.
Otherwise the caller gets a `Rejection` whose `reason_code` is one of `undecodable`,
`out_of_range`, `not_a_number`, `bad_enum`, `missing_field`, `timestamp_mismatch`.

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

from schemas.avro import Schema, earlier_revisions

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


def validate(schema: Schema, record: dict[str, Any]) -> Rejection | None:
    for f in schema.fields:
        v = record.get(f.name)
        if v is None:
            continue
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
    """Decode and validate; when given, the record timestamp must equal the payload's
    `record_time` (its event_time, or a later recorded_time)."""
    record = decode(schema, payload)
    if isinstance(record, Rejection):
        return record
    bad = validate(schema, record)
    if bad is not None:
        return bad
    if record_timestamp_ms is not None and isinstance(record.get("event_time"), datetime):
        ms = epoch_ms(record_time(record))
        if ms != record_timestamp_ms:
            which = "recorded_time" if ms != epoch_ms(record["event_time"]) else "event_time"
            return Rejection(
                "timestamp_mismatch",
                f"{which} {ms} != Kafka record timestamp {record_timestamp_ms}",
            )
    return record


def encode(schema: Schema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()
