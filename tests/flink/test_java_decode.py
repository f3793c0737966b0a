"""The JVM decode functions generated from the schemas (udfs/java_decode.py) give, record for
record, what the Python reference decoder gives (udfs.vitals.decode_record): the same accepted
fields and, for bad input, the same reason code and reason."""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pyflink.common import Types

from jobs.runtime.flink_env import stream_table_env
from schemas import codec, load_schema, topics
from schemas.avro import Schema, earlier_revisions
from schemas.settings import Settings
from udfs import java_decode
from udfs.flink import decoded_row
from udfs.vitals import decode_record

pytestmark = pytest.mark.slow
T0 = datetime(2026, 3, 1, 10, 0, 5, 123000, tzinfo=UTC)
RAW = Types.ROW_NAMED(["value", "ts_ms"], [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.LONG()])


def example(schema: Schema) -> dict[str, Any]:
    """A valid record: every value at the middle of its range, strings named after the field."""
    rec: dict[str, Any] = {}
    for f in schema.fields:
        if f.logical == "timestamp-millis":
            rec[f.name] = T0
        elif f.allowed:
            rec[f.name] = f.allowed[-1]
        elif f.value_range:
            lo, hi = f.value_range
            rec[f.name] = (lo + hi) / 2 if f.base in ("float", "double") else int((lo + hi) // 2)
        elif f.base == "string":
            rec[f.name] = f"{f.name}-1"
        elif f.base == "boolean":
            rec[f.name] = True
        elif f.base in ("int", "long"):
            rec[f.name] = 7
        elif f.base in ("float", "double"):
            rec[f.name] = 1.5
        else:
            rec[f.name] = b"\x01\x02"
    return rec


def cases(schema: Schema) -> list[tuple[bytes, int]]:
    """Good and bad Kafka values of `schema`, each with a record timestamp."""
    good = example(schema)
    ms = codec.epoch_ms(T0)
    enc = codec.encode(schema, good)
    out = [
        (enc, ms),
        (
            codec.encode(
                schema, {k: (None if schema.field(k).nullable else v) for k, v in good.items()}
            ),
            ms,
        ),
        (b"", ms),
        (b"\xff\xfe\x00garbage", ms),
        (enc[:-3], ms),
        (enc + b"\x00\x01", ms),
        (enc, ms + 1),
    ]
    if "recorded_time" in schema.field_names:  # entered an hour after it happened: its time
        later = codec.encode(schema, good | {"recorded_time": T0 + timedelta(hours=1)})
        out += [(later, ms + 3_600_000), (later, ms)]
    for earlier in earlier_revisions(schema.name):  # written before a compatible change
        out.append((codec.encode(earlier, {k: good[k] for k in earlier.field_names}), ms))
    for f in schema.fields:
        if f.value_range:
            lo, hi = f.value_range
            real = f.base in ("float", "double")
            above, below = (hi + 0.5, lo - 0.25) if real else (int(hi) + 1, int(lo) - 1)
            out.append((codec.encode(schema, good | {f.name: above}), ms))
            out.append((codec.encode(schema, good | {f.name: below}), ms))

            if f.base in ("float", "double"):
                out.append((codec.encode(schema, good | {f.name: math.nan}), ms))
        if f.allowed:
            out.append((codec.encode(schema, good | {f.name: "nope"}), ms))
        if f.base == "string" and not f.nullable and f.logical is None:
            out.append((codec.encode(schema, good | {f.name: ""}), ms))
    return out + refused_with(schema) + refusals(schema) + at_bounds(schema)


def refusals(schema: Schema) -> list[tuple[bytes, int]]:
    """Where the schema refuses values alone (schemas.codec, "Refused values"): a refused value
    beside each measurement alone (which keeps the record), beside the context and qualifiers
    only (which do not), and a NaN with a value out of range, beside the other measurements and
    with none."""
    if not schema.refused_alone:
        return []
    good, ms = example(schema), codec.epoch_ms(T0)
    bare = {k: (None if schema.field(k).nullable else v) for k, v in good.items()}
    first, last = schema.refused_alone[0], schema.refused_alone[-1]
    assert first.base == last.base == "float"  # so NaN is theirs
    high = {first.name: first.value_range[1] * 2 + 1}  # type: ignore[index]
    both = {first.name: math.nan, last.name: last.value_range[1] * 2 + 1}  # type: ignore[index]
    context = {k: (None if k in schema.measurement_names else v) for k, v in good.items()}
    others = [m for m in schema.measurements if m is not first]
    records = [bare | {m.name: good[m.name]} | high for m in others]
    records += [context | high, good | both, bare | both]
    return [(codec.encode(schema, r), ms) for r in records]


def refused_with(schema: Schema) -> list[tuple[bytes, int]]:
    """A field refused with its partner (Schema.refused_with), its partner out of range or
    NaN, beside a measurement kept and with none."""
    good, ms = example(schema), codec.epoch_ms(T0)
    bare = {k: (None if schema.field(k).nullable else v) for k, v in good.items()}
    first = schema.refused_alone[0] if schema.refused_alone else None
    records = []
    for f, partner in schema.refused_with:
        assert first is not None and first is not partner
        for bad in (partner.value_range[1] * 2 + 1, math.nan):  # type: ignore[index]
            pair = {partner.name: bad, f.name: not good[f.name]}
            records += [bare | {first.name: good[first.name]} | pair, bare | pair]
    return [(codec.encode(schema, r), ms) for r in records]


def at_bounds(schema: Schema) -> list[tuple[bytes, int]]:
    """Records with a ranged field at a bound of its range, which is in range (FiO2 0.21, room
    air, which a float field holds as 0.2099999934)."""
    good, ms = example(schema), codec.epoch_ms(T0)
    return [
        (codec.encode(schema, good | {f.name: b if f.base in ("float", "double") else int(b)}), ms)
        for f in schema.fields
        if f.value_range
        for b in f.value_range
    ]


def same(a: Any, b: Any) -> bool:
    """Equal; floats as 32-bit floats (PyFlink hands a FLOAT back at its shortest decimal)."""
    if isinstance(a, float) and isinstance(b, float):
        return bool(np.float32(a) == np.float32(b))
    return bool(a == b)


def jvm_decoded(
    settings: Settings, schema_name: str, rows: list[tuple[bytes, int]], *, lenient: bool = False
) -> list[tuple[Any, ...]]:
    """The rows the JVM decode function of `schema_name` gives for (value, record timestamp)
    `rows`, in order."""
    settings = dataclasses.replace(settings, job_name="java-decode-test")
    env, t_env = stream_table_env(settings, connectors=False)
    t_env.create_java_temporary_system_function(
        "wf_decode", java_decode.function_class(schema_name, lenient=lenient)
    )
    t_env.create_temporary_view("incoming", t_env.from_data_stream(env.from_collection(rows, RAW)))
    with t_env.execute_sql(
        "SELECT d.* FROM incoming AS i, LATERAL TABLE(wf_decode(i.`value`, i.ts_ms)) AS d"
    ).collect() as results:
        return [tuple(r) for r in results]


@pytest.mark.parametrize("topic", java_decode.INGESTED, ids=lambda t: t.name)
def test_the_jvm_decoder_agrees_with_the_python_decoder_on_good_and_bad_records(
    topic: Any, settings: Settings, tmp_path: Path
) -> None:
    schema = load_schema(topic.schema_name)
    rows = cases(schema)
    got = jvm_decoded(settings, topic.schema_name, rows)
    cols = list(decoded_row(topic.schema_name).columns[2:])
    want = [decode_record(schema, value, ts) for value, ts in rows]
    assert len(got) == len(want) == len(rows)
    accepted = want[len(want) - len(at_bounds(schema)) :]
    assert all(w[0] is None for w in accepted), accepted
    if schema.refused_alone:  # the cases of `refusals`, as the codec decides them
        n = len(schema.measurements) - 1
        *each, context, both, none = want[-len(accepted) - n - 3 : -len(accepted)]
        assert [(w[0], w[-2]) for w in each] == [(None, ["value_out_of_range"])] * n
        assert (context[0], both[0], both[-2], none[0]) == (
            "out_of_range", None, ["value_not_a_number", "value_out_of_range"], "not_a_number"
        )  # fmt: skip
    if schema.refused_with:  # the cases of `refused_with`: the pair refused in a record kept
        start = len(want) - len(accepted) - len(schema.measurements) - 2
        pairs = want[start - 4 * len(schema.refused_with) : start]
        assert [(w[0], w[-2]) for w in pairs] == [
            (None, ["value_out_of_range"] * 2), ("out_of_range", None),
            (None, ["value_not_a_number"] * 2), ("not_a_number", None),
        ] * len(schema.refused_with)  # fmt: skip
    for (value, _), g, w in zip(rows, got, want, strict=True):
        assert g[0] == w[0], (value, g, w)  # reason code
        if w[0] in (None, "out_of_range", "not_a_number", "bad_enum", "missing_field"):
            assert g[1] == w[1], (g, w)
        diff = [(c, x, y) for c, x, y in zip(cols, g[2:], w[2:], strict=True) if not same(x, y)]
        assert not diff, (value, diff)


def test_the_jvm_decoder_refuses_a_fahrenheit_temperature_alone_as_the_python_decoder_does(
    settings: Settings,
) -> None:
    """A device record with temp_c 98.6 (°F) and a heart rate of 120 is accepted with its heart
    rate and the temperature null, its refusal naming temp_c; one whose only value is out of
    range, or NaN, is rejected whole: the same rows from the JVM as from the codec. The lenient
    variant (the data-quality job's) still rejects the record and keeps 98.6."""
    schema = load_schema(topics.VITALS_DEVICE.name)
    base: dict[str, Any] = {f.name: None for f in schema.fields if f.nullable}
    base |= {
        "device_id": "mon-1", "patient_token": "tok", "facility_id": "f", "unit_id": "u",
        "bed_id": "b", "event_time": T0, "source": "test",
    }  # fmt: skip
    ms = codec.epoch_ms(T0)
    records = [
        base | {"heart_rate_bpm": 120.0, "temp_c": 98.6},
        base | {"temp_c": 98.6},
        base | {"heart_rate_bpm": 120.0, "spo2_pct": math.nan, "sbp_mmhg": 900.0},
        base | {"spo2_pct": math.nan},
        base | {"heart_rate_bpm": 120.0, "temp_c": 98.6, "bed_id": ""},  # record-level first
        # a signal quality qualifies SpO2: an impossible one rejects its record, SpO2 72 with it
        base | {"heart_rate_bpm": 120.0, "spo2_pct": 72.0, "spo2_signal_quality_pct": 250},
        base | {"heart_rate_bpm": 120.0, "temp_c": 98.6, "spo2_signal_quality_pct": 250},
        # and a quality in range beside a refused SpO2 is no measurement kept
        base | {"spo2_pct": 250.0, "spo2_signal_quality_pct": 80},
    ]
    rows = [(codec.encode(schema, r), ms) for r in records]
    got = jvm_decoded(settings, schema.name, rows)
    want = [decode_record(schema, value, ts) for value, ts in rows]
    cols = decoded_row(schema.name).columns
    by_name = [dict(zip(cols, g, strict=True)) for g in got]
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2]
        assert all(same(x, y) for x, y in zip(g[2:], w[2:], strict=True)), (g, w)
    fahrenheit = by_name[0]
    assert fahrenheit["reason_code"] is None and fahrenheit["heart_rate_bpm"] == 120.0
    assert fahrenheit["temp_c"] is None
    assert fahrenheit["refused_codes"] == ["value_out_of_range"]
    assert fahrenheit["refused_reasons"] == ["temp_c=98.6 outside [14, 46]"]
    assert (by_name[1]["reason_code"], by_name[1]["reason"]) == (
        "out_of_range", "temp_c=98.6 outside [14, 46]"
    )  # fmt: skip
    assert by_name[1]["heart_rate_bpm"] is None and by_name[1]["refused_codes"] is None
    # each refused value with its own code and reason
    assert by_name[2]["refused_codes"] == ["value_not_a_number", "value_out_of_range"]
    assert by_name[2]["refused_reasons"] == ["spo2_pct is NaN", "sbp_mmhg=900 outside [0, 400]"]
    assert (by_name[2]["spo2_pct"], by_name[2]["sbp_mmhg"]) == (None, None)
    assert by_name[3]["reason_code"] == "not_a_number"
    assert by_name[4]["reason_code"] == "missing_field"
    quality = "spo2_signal_quality_pct=250 outside [0, 100]"
    assert (by_name[5]["reason_code"], by_name[5]["reason"]) == ("out_of_range", quality)
    assert by_name[5]["spo2_pct"] is None and by_name[5]["refused_codes"] is None
    assert (by_name[6]["reason_code"], by_name[6]["reason"]) == ("out_of_range", quality)
    assert (by_name[7]["reason_code"], by_name[7]["reason"]) == (
        "out_of_range", "spo2_pct=250 outside [0, 100]"
    )  # fmt: skip
    (kept,) = jvm_decoded(settings, schema.name, rows[:1], lenient=True)
    lenient = dict(zip(cols, kept, strict=True))
    assert lenient["reason_code"] == "out_of_range" and same(lenient["temp_c"], 98.6)
    assert lenient["heart_rate_bpm"] == 120.0 and lenient["refused_codes"] is None


def test_the_jvm_decoder_keeps_an_observation_whose_acvpu_remains_beside_a_refused_temperature(
    settings: Settings,
) -> None:
    """ACVPU 'V' beside a °F temperature: the JVM accepts the observation with its 'V' (a NEWS2
    red flag) and the temperature refused alone, as the codec does; a prescribed SpO2 scale
    beside it keeps nothing (not a measurement), and a NaN with a value out of range, both
    beside the 'V', are each refused with their own code."""
    schema = load_schema(topics.VITALS_OBSERVATION.name)
    base: dict[str, Any] = {f.name: None for f in schema.fields if f.nullable}
    base |= {
        "observation_id": "o1", "patient_token": "tok", "facility_id": "f", "unit_id": "u",
        "event_time": T0, "source": "test",
    }  # fmt: skip
    ms = codec.epoch_ms(T0)
    records = [
        base | {"acvpu": "V", "temp_c": 98.6},
        base | {"spo2_scale2": True, "temp_c": 98.6},
        base | {"acvpu": "V", "spo2_pct": math.nan, "temp_c": 98.6},
    ]
    rows = [(codec.encode(schema, r), ms) for r in records]
    got = jvm_decoded(settings, schema.name, rows)
    want = [decode_record(schema, value, ts) for value, ts in rows]
    for g, w in zip(got, want, strict=True):
        assert g[:2] == w[:2]
        assert all(same(x, y) for x, y in zip(g[2:], w[2:], strict=True)), (g, w)
    voice, scale, two = (dict(zip(decoded_row(schema.name).columns, g, strict=True)) for g in got)
    assert (voice["reason_code"], voice["acvpu"], voice["temp_c"]) == (None, "V", None)
    assert voice["refused_codes"] == ["value_out_of_range"]
    assert (scale["reason_code"], scale["reason"]) == (
        "out_of_range", "temp_c=98.6 outside [14, 46]"
    )  # fmt: skip
    assert (two["reason_code"], two["acvpu"]) == (None, "V")
    assert two["refused_codes"] == ["value_not_a_number", "value_out_of_range"]
    assert two["refused_reasons"] == ["spo2_pct is NaN", "temp_c=98.6 outside [14, 46]"]
