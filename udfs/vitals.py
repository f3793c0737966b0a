"""Pure row functions behind the vitals UDFs: decode+validate an observation, score NEWS2."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from schemas import codec, rows, topics
from schemas.avro import AvroField, Schema
from udfs.news2 import news2

OBSERVATION = topics.VITALS_OBSERVATION.schema


def decoded_fields(schema: Schema) -> tuple[AvroField, ...]:
    """The fields a decode UDF returns: all but timestamps, because the Kafka record timestamp
    (checked equal to `codec.record_time`) is the rowtime."""
    return tuple(f for f in schema.fields if f.logical is None)


DECODED_FIELDS = decoded_fields(OBSERVATION)


def decode_record(
    schema: Schema, payload: bytes | None, record_time_ms: int | None
) -> tuple[Any, ...]:
    """(reason_code, reason, *decoded_fields(schema)[, measured_time][, refused_codes,
    refused_reasons]) (schemas.rows.decoded): reason_code is None for an accepted record and the
    fields are None for a rejected one; an accepted record's refused values are None, and
    refused_codes/refused_reasons list each one's code and reason (None where none was refused;
    schemas.codec, "Refused values")."""
    fields = decoded_fields(schema)
    when = (rows.MEASURED_TIME.name,) if rows.measured(schema) else ()
    refusal = tuple(f.name for f in rows.REFUSED) if schema.refused_alone else ()
    got = codec.decode_checked(schema, payload, record_time_ms)
    if isinstance(got, codec.Rejection):
        return (got.reason_code, got.reason, *(None for _ in (*fields, *when, *refusal)))
    rec = got.record
    # a TIMESTAMP(3) column holds the UTC wall time, without its zone
    at = tuple(rec["event_time"].astimezone(UTC).replace(tzinfo=None) for _ in when)
    codes = [r.reason_code for r in got.refused] or None
    reasons = [r.reason for r in got.refused] or None
    why = (codes, reasons) if refusal else ()
    return (None, None, *(rec[f.name] for f in fields), *at, *why)


def decode_observation(payload: bytes | None, record_time_ms: int | None) -> tuple[Any, ...]:
    return decode_record(OBSERVATION, payload, record_time_ms)


def news2_summary(
    resp_rate_per_min: float | None,
    spo2_pct: float | None,
    on_supplemental_o2: bool | None,
    fio2_fraction: float | None,
    sbp_mmhg: float | None,
    heart_rate_bpm: float | None,
    acvpu: str | None,
    temp_c: float | None,
    spo2_scale2: bool | None,
) -> tuple[int, int, bool]:
    """(score, params_scored, red_flag)."""
    n = news2(
        resp_rate_per_min=resp_rate_per_min,
        spo2_pct=spo2_pct,
        on_supplemental_o2=on_supplemental_o2,
        fio2_fraction=fio2_fraction,
        sbp_mmhg=sbp_mmhg,
        heart_rate_bpm=heart_rate_bpm,
        acvpu=acvpu,
        temp_c=temp_c,
        spo2_scale2=spo2_scale2,
    )
    return n.score, n.params_scored, n.red_flag
