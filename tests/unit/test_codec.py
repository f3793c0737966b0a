from __future__ import annotations

import inspect
import json
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import fastavro
import pytest

from schemas import codec, load_schema, topics
from schemas.avro import MEASUREMENT, REFUSAL, REFUSED_WITH
from udfs.vitals import DECODED_FIELDS, decode_observation, news2_summary

OBS = topics.VITALS_OBSERVATION.schema
T = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)


def _rec(**kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {f: None for f in OBS.field_names}
    r.update(
        observation_id="o1",
        patient_token="tok",
        facility_id="f",
        unit_id="u",
        event_time=T,
        heart_rate_bpm=88.0,
        source="test",
    )
    r.update(kw)
    return r


def test_a_valid_observation_round_trips() -> None:
    rec = codec.decode_valid(OBS, codec.encode(OBS, _rec()), codec.epoch_ms(T))
    assert isinstance(rec, dict)
    assert rec["heart_rate_bpm"] == 88.0 and rec["event_time"] == T


@pytest.mark.parametrize(
    ("payload", "code"),
    [
        (b"", "undecodable"),
        (None, "undecodable"),
        (b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "undecodable"),
    ],
)
def test_bytes_that_are_not_an_observation_are_undecodable(
    payload: bytes | None, code: str
) -> None:
    r = codec.decode_valid(OBS, payload)
    assert isinstance(r, codec.Rejection) and r.reason_code == code


def test_trailing_bytes_after_a_record_are_rejected() -> None:
    r = codec.decode_valid(OBS, codec.encode(OBS, _rec()) + b"\x00")
    assert isinstance(r, codec.Rejection) and "trailing" in r.reason


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"heart_rate_bpm": 900.0}, "out_of_range"),
        ({"spo2_pct": 101.0}, "out_of_range"),
        ({"fio2_fraction": 21.0}, "out_of_range"),  # percent instead of a fraction
        ({"temp_c": 98.6}, "out_of_range"),  # Fahrenheit
        ({"spo2_pct": float("nan")}, "not_a_number"),
        ({"acvpu": "Z"}, "bad_enum"),
        ({"patient_token": ""}, "missing_field"),
    ],
)
def test_impossible_values_are_rejected_with_a_reason(change: dict[str, Any], code: str) -> None:
    """A record whose only measurement is impossible (nothing measured remains once it is
    refused), or that fails a record-level check, is rejected whole."""
    r = codec.decode_valid(OBS, codec.encode(OBS, _rec(**({"heart_rate_bpm": None} | change))))
    assert isinstance(r, codec.Rejection) and r.reason_code == code


@pytest.mark.parametrize("topic", list(topics.TOPICS.values()), ids=lambda t: t.name)
def test_a_value_at_a_bound_of_its_range_is_accepted_before_and_after_it_is_written(
    topic: topics.Topic,
) -> None:
    """As the producer gives it (magnesium 0.1, a double) and as a reader sees it once written
    (FiO2 0.21 is 0.2099999934 in a float field): in range both times; a hair outside is not."""
    for f in topic.schema.fields:
        for bound, outward in zip(f.value_range or (), (-1, 1), strict=False):
            written = struct.unpack("<f", struct.pack("<f", bound))[0]
            values = (bound, written) if f.base in ("float", "double") else (int(bound),)
            for value in values:
                assert codec.validate(topic.schema, {f.name: value}) is None, (f.name, value)
            beyond = bound + outward * max(abs(bound), 1.0) * 1e-4
            if f.base in ("float", "double"):
                assert codec.validate(topic.schema, {f.name: beyond}) is not None, (f.name, beyond)


def test_room_air_fio2_is_accepted_and_a_hair_below_it_is_not() -> None:
    ok = codec.decode_valid(OBS, codec.encode(OBS, _rec(fio2_fraction=0.21)))
    assert isinstance(ok, dict) and ok["fio2_fraction"] == pytest.approx(0.21)
    alone = _rec(heart_rate_bpm=None, fio2_fraction=0.2099)
    low = codec.decode_valid(OBS, codec.encode(OBS, alone))
    assert isinstance(low, codec.Rejection) and low.reason_code == "out_of_range"
    assert low.reason == "fio2_fraction=0.2099 outside [0.21, 1]"


def test_a_record_timestamp_other_than_the_event_time_is_rejected() -> None:
    r = codec.decode_valid(OBS, codec.encode(OBS, _rec()), codec.epoch_ms(T) + 1)
    assert isinstance(r, codec.Rejection) and r.reason_code == "timestamp_mismatch"


def test_a_record_entered_after_it_happened_is_timed_by_when_it_was_entered() -> None:
    adt = topics.ADT_EVENT.schema
    rec = {
        "event_id": "e1",
        "event_type": "admit",
        "source_message_type": "ADT^A01",
        "patient_token": "p",
        "encounter_token": None,
        "facility_id": "F",
        "unit_id": "4E",
        "bed_id": None,
        "prior_unit_id": None,
        "prior_bed_id": None,
        "event_time": T,
        "recorded_time": T + timedelta(hours=2),
        "source": "hl7",
    }
    assert codec.record_time(rec) == T + timedelta(hours=2)
    value = codec.encode(adt, rec)
    assert not isinstance(
        codec.decode_valid(adt, value, codec.epoch_ms(T) + 7_200_000), codec.Rejection
    )
    at_event_time = codec.decode_valid(adt, value, codec.epoch_ms(T))
    assert isinstance(at_event_time, codec.Rejection)
    assert at_event_time.reason_code == "timestamp_mismatch"
    assert at_event_time.reason.startswith("recorded_time")
    planned = rec | {"recorded_time": T - timedelta(days=1)}  # a pre-admission: when it happens
    assert codec.record_time(planned) == T
    assert codec.record_time(rec | {"recorded_time": None}) == T


def test_decode_observation_returns_reason_or_fields_in_schema_order() -> None:
    ok = decode_observation(codec.encode(OBS, _rec()), codec.epoch_ms(T))
    # then measured_time and the refusal (refused_codes, refused_reasons: none here)
    assert ok[:2] == (None, None) and len(ok) == 2 + len(DECODED_FIELDS) + 1 + 2
    assert dict(zip([f.name for f in DECODED_FIELDS], ok[2:-3], strict=True))["unit_id"] == "u"
    assert ok[-3] == T.replace(tzinfo=None)  # measured_time: its own event time, in UTC
    assert ok[-2:] == (None, None)
    bad = decode_observation(b"junk", codec.epoch_ms(T))
    assert bad[0] == "undecodable" and all(v is None for v in bad[2:])


DEVICE = topics.VITALS_DEVICE.schema
LABS = topics.LABS_RESULT.schema


def _device(**kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = {f: None for f in DEVICE.field_names}
    r.update(
        device_id="mon-1",
        patient_token="tok",
        facility_id="f",
        unit_id="u",
        bed_id="b",
        event_time=T,
        source="test",
    )
    return r | kw


def test_a_device_record_with_a_fahrenheit_temperature_keeps_its_heart_rate_and_refuses_the_temperature_alone() -> (  # noqa: E501
    None
):
    rec = _device(heart_rate_bpm=120.0, spo2_pct=95.0, temp_c=98.6)
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, rec), codec.epoch_ms(T))
    assert isinstance(got, codec.Accepted)
    assert got.record["heart_rate_bpm"] == 120.0 and got.record["spo2_pct"] == 95.0
    assert got.record["temp_c"] is None
    assert got.refused == (codec.Rejection("value_out_of_range", "temp_c=98.6 outside [14, 46]"),)
    # decode_valid gives the same record, its temperature null
    assert codec.decode_valid(DEVICE, codec.encode(DEVICE, rec)) == got.record
    # and the producer's check still refuses to write it
    assert codec.validate(DEVICE, rec) == codec.Rejection(
        "out_of_range", "temp_c=98.6 outside [14, 46]"
    )


def test_a_record_whose_only_measured_value_is_out_of_range_is_still_rejected_whole() -> None:
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, _device(temp_c=98.6)))
    assert got == codec.Rejection("out_of_range", "temp_c=98.6 outside [14, 46]")
    # two values, both impossible: nothing measured remains, the first one's code, each named
    both = _device(temp_c=98.6, heart_rate_bpm=900.0)
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, both))
    assert got == codec.Rejection(
        "out_of_range",
        "heart_rate_bpm=900 outside [0, 350] (out_of_range); "
        "temp_c=98.6 outside [14, 46] (out_of_range)",
    )


def test_a_nan_value_is_refused_alone_and_a_record_whose_only_value_is_nan_is_rejected() -> None:
    rec = _device(heart_rate_bpm=120.0, spo2_pct=float("nan"), sbp_mmhg=900.0)
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, rec))
    assert isinstance(got, codec.Accepted) and got.record["heart_rate_bpm"] == 120.0
    assert got.record["spo2_pct"] is None and got.record["sbp_mmhg"] is None
    # each refused value with its own code and reason
    assert got.refused == (
        codec.Rejection("value_not_a_number", "spo2_pct is NaN"),
        codec.Rejection("value_out_of_range", "sbp_mmhg=900 outside [0, 400]"),
    )
    alone = codec.decode_checked(DEVICE, codec.encode(DEVICE, _device(spo2_pct=float("nan"))))
    assert alone == codec.Rejection("not_a_number", "spo2_pct is NaN")


def test_an_impossible_signal_quality_rejects_its_record_as_it_qualifies_the_spo2() -> None:
    """Refused alone, a quality of 250 would leave SpO2 72 charted as valid (charting drops an
    SpO2 second only on a poor quality it can see): the record is rejected, as before."""
    quality = codec.Rejection("out_of_range", "spo2_signal_quality_pct=250 outside [0, 100]")
    rec = _device(heart_rate_bpm=120.0, spo2_pct=72.0, spo2_signal_quality_pct=250)
    assert codec.decode_checked(DEVICE, codec.encode(DEVICE, rec)) == quality
    # beside a value refused alone, too: the quality's check rejects the record
    rec = _device(heart_rate_bpm=120.0, temp_c=98.6, spo2_signal_quality_pct=250)
    assert codec.decode_checked(DEVICE, codec.encode(DEVICE, rec)) == quality
    # a quality in range is no measurement kept: SpO2 refused, nothing measured remains
    rec = _device(spo2_pct=250.0, spo2_signal_quality_pct=80)
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, rec))
    assert got == codec.Rejection("out_of_range", "spo2_pct=250 outside [0, 100]")
    # with a measurement kept, the refused SpO2 goes and its quality stays
    rec = _device(heart_rate_bpm=120.0, spo2_pct=250.0, spo2_signal_quality_pct=80)
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, rec))
    assert isinstance(got, codec.Accepted) and got.record["spo2_pct"] is None
    assert got.record["spo2_signal_quality_pct"] == 80


def test_a_field_refusal_other_than_record_is_refused_when_loading(tmp_path: Any) -> None:
    from schemas import avro

    raw = json.loads((avro.SCHEMA_DIR / "vitals.device.v1.avsc").read_text())
    raw["fields"][-1][REFUSAL] = "value"
    path = tmp_path / "x.avsc"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="known: record"):
        avro.check_refusals("x", avro._load("x", path))


def test_a_lab_panel_with_one_impossible_analyte_keeps_its_lactate() -> None:
    rec: dict[str, Any] = {f: None for f in LABS.field_names}
    rec |= dict(result_id="r1", patient_token="tok", facility_id="f", unit_id="u", source="t")
    rec |= dict(event_time=T, lactate_mmol_l=4.5, sodium_mmol_l=14.0)  # sodium: 140 mistyped
    got = codec.decode_checked(LABS, codec.encode(LABS, rec))
    assert isinstance(got, codec.Accepted)
    assert got.record["lactate_mmol_l"] == 4.5 and got.record["sodium_mmol_l"] is None
    assert got.refused == (
        codec.Rejection("value_out_of_range", "sodium_mmol_l=14 outside [90, 200]"),
    )


def test_a_record_level_check_rejects_a_record_that_also_had_a_value_refused() -> None:
    both = _rec(temp_c=98.6, acvpu="Z")
    got = codec.decode_checked(OBS, codec.encode(OBS, both))
    assert isinstance(got, codec.Rejection) and got.reason_code == "bad_enum"
    skewed = codec.decode_checked(OBS, codec.encode(OBS, _rec(temp_c=98.6)), codec.epoch_ms(T) + 1)
    assert isinstance(skewed, codec.Rejection) and skewed.reason_code == "timestamp_mismatch"


def test_only_the_multi_measurement_topics_refuse_values_alone() -> None:
    refusing = {t.name for t in topics.TOPICS.values() if t.schema.refused_alone}
    assert refusing == {
        topics.VITALS_DEVICE.name,
        topics.VITALS_OBSERVATION.name,
        topics.LABS_RESULT.name,
    }
    # the measurements: every nullable ranged number but a device's signal quality index,
    # which qualifies its SpO2 ("wardflow.refusal": "record")
    assert [f.name for f in DEVICE.refused_alone] == [
        "heart_rate_bpm", "spo2_pct", "resp_rate_per_min", "sbp_mmhg", "dbp_mmhg", "map_mmhg",
        "temp_c",
    ]  # fmt: skip
    # a ranged value of another topic (an ADT event's age) still rejects its record
    adt = topics.ADT_EVENT.schema
    old = {"age_years": 300, "unit_id": "u"}
    assert (
        codec.check(adt, old)
        == codec.validate(adt, old)
        == codec.Rejection("out_of_range", "age_years=300 outside [0, 90]")
    )


@pytest.mark.parametrize(
    "name", [topics.VITALS_DEVICE.name, topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name]
)
def test_the_refusal_declaration_leaves_the_wire_schema_and_its_revision_alone(name: str) -> None:
    """`wardflow.refusal` and `wardflow.measurement` are custom properties: outside Avro's
    parsing canonical form, so the schema's records, fingerprint and revision (schemas/history)
    are what they were."""
    schema = load_schema(name)
    ours = (REFUSAL, MEASUREMENT, REFUSED_WITH)
    without = {k: v for k, v in schema.raw.items() if k not in ours}
    fields = schema.raw["fields"]
    without["fields"] = [{k: v for k, v in f.items() if k not in ours} for f in fields]
    assert schema.raw[REFUSAL] == "value"
    canonical = fastavro.schema.to_parsing_canonical_form
    assert canonical(schema.raw) == canonical(without)


def _only(**kw: Any) -> dict[str, Any]:
    """An observation of the given values and nothing else measured."""
    return _rec(heart_rate_bpm=None) | kw


def test_an_acvpu_beside_a_fahrenheit_temperature_keeps_the_observation_and_its_red_flag() -> None:
    """ACVPU 'V' is a measurement without a range: it remains when the °F temperature is
    refused, so the observation is accepted and scores NEWS2's red flag (consciousness other
    than Alert scores 3, RCP NEWS2 2017 chart 1) instead of being dead-lettered whole."""
    rec = _only(temp_c=98.6, acvpu="V")
    got = codec.decode_checked(OBS, codec.encode(OBS, rec), codec.epoch_ms(T))
    assert isinstance(got, codec.Accepted)
    assert got.record["acvpu"] == "V" and got.record["temp_c"] is None
    assert got.refused == (codec.Rejection("value_out_of_range", "temp_c=98.6 outside [14, 46]"),)
    # as the NEWS2 job reads it: its decoded row, scored
    decoded = decode_observation(codec.encode(OBS, rec), codec.epoch_ms(T))
    row = dict(zip([f.name for f in DECODED_FIELDS], decoded[2:], strict=False))
    scored = news2_summary(*(row[n] for n in inspect.signature(news2_summary).parameters))
    assert scored == (3, 1, True)  # score 3, one parameter scored, the red flag


def test_an_acvpu_keeps_a_record_whose_number_was_refused() -> None:
    got = codec.decode_checked(OBS, codec.encode(OBS, _only(spo2_pct=900.0, acvpu="C")))
    assert isinstance(got, codec.Accepted) and got.record["acvpu"] == "C"
    assert got.record["spo2_pct"] is None
    assert [r.reason_code for r in got.refused] == ["value_out_of_range"]


@pytest.mark.parametrize(
    ("flag", "value"), [("on_supplemental_o2", False), ("mechanical_ventilation", True)]
)
def test_an_oxygen_or_ventilation_flag_alone_keeps_no_record_whose_number_was_refused(
    flag: str, value: Any
) -> None:
    """A flag beside an impossible value is as suspect as it, and a record kept by a
    ventilation flag alone would be a new reading for the two-reading NEWS2 rules."""
    got = codec.decode_checked(OBS, codec.encode(OBS, _only(spo2_pct=900.0, **{flag: value})))
    assert got == codec.Rejection("out_of_range", "spo2_pct=900 outside [0, 100]")


@pytest.mark.parametrize(
    ("fio2", "code"), [(40.0, "value_out_of_range"), (float("nan"), "value_not_a_number")]
)
def test_the_oxygen_flag_is_refused_with_a_refused_fio2_in_a_record_kept(
    fio2: float, code: str
) -> None:
    """FiO2 and the oxygen flag are one measurement (wardflow.refused_with): a kept record
    whose FiO2 was refused does not offer its flag as evidence against an older FiO2."""
    for flag in (False, True):
        rec = _only(fio2_fraction=fio2, on_supplemental_o2=flag, acvpu="A")
        got = codec.decode_checked(OBS, codec.encode(OBS, rec))
        assert isinstance(got, codec.Accepted) and got.record["acvpu"] == "A"
        assert got.record["fio2_fraction"] is None and got.record["on_supplemental_o2"] is None
        assert [r.reason_code for r in got.refused] == [code, code]
        assert got.refused[1].reason == "on_supplemental_o2 refused with fio2_fraction"
    # beside an FiO2 accepted, or none, the flag stays
    for rec in (
        _only(fio2_fraction=0.4, on_supplemental_o2=True),
        _only(spo2_pct=900.0, acvpu="A", on_supplemental_o2=False),
    ):
        got = codec.decode_checked(OBS, codec.encode(OBS, rec))
        assert isinstance(got, codec.Accepted)
        assert got.record["on_supplemental_o2"] == rec["on_supplemental_o2"]
    assert [(f.name, p.name) for f, p in OBS.refused_with] == [
        ("on_supplemental_o2", "fio2_fraction")
    ]


@pytest.mark.parametrize(
    ("field", "partner", "why"),
    [
        ("on_supplemental_o2", "acvpu", "not a field refused alone"),
        ("on_supplemental_o2", "nothing", "not a field refused alone"),
        ("acvpu", "fio2_fraction", "a measurement"),
        ("source", "fio2_fraction", "a required field"),
    ],
)
def test_a_refused_with_that_names_no_field_refused_alone_is_refused_when_loading(
    tmp_path: Any, field: str, partner: str, why: str
) -> None:
    from schemas import avro

    raw = json.loads((avro.SCHEMA_DIR / f"{topics.VITALS_OBSERVATION.name}.avsc").read_text())
    next(s for s in raw["fields"] if s["name"] == field)[REFUSED_WITH] = partner
    path = tmp_path / "x.avsc"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=why):
        avro.check_refusals("x", avro._load("x", path))


def test_the_measurements_are_declared_and_context_or_qualifiers_alone_keep_no_record() -> None:
    """The measurements: every ranged one, and those without a range the schema marks. The
    other fields are context or qualifiers and say nothing measured: spo2_scale2 (a prescribed
    SpO2 target, not one of NEWS2's parameters), the identifiers, a device's probe-off and
    leads-off flags and its signal quality. A record left with only those is rejected."""
    assert [f.name for f in OBS.measurements] == [
        "heart_rate_bpm", "resp_rate_per_min", "spo2_pct", "temp_c", "sbp_mmhg", "dbp_mmhg",
        "map_mmhg", "fio2_fraction", "acvpu", "gcs_total", "urine_output_ml", "weight_kg",
    ]  # fmt: skip
    assert DEVICE.measurements == DEVICE.refused_alone
    assert LABS.measurements == LABS.refused_alone
    assert topics.ADT_EVENT.schema.measurements == ()
    context = _only(temp_c=98.6, spo2_scale2=True, bed_id="b1", device_id="d1")
    got = codec.decode_checked(OBS, codec.encode(OBS, context))
    assert got == codec.Rejection("out_of_range", "temp_c=98.6 outside [14, 46]")
    flags = _device(temp_c=98.6, spo2_probe_off=True, ecg_leads_off=False)
    flags |= {"spo2_signal_quality_pct": 80}
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, flags))
    assert got == codec.Rejection("out_of_range", "temp_c=98.6 outside [14, 46]")


@pytest.mark.parametrize(
    ("field", "value", "why"),
    [
        ("acvpu", "yes", "known: true"),
        ("temp_c", True, "a ranged measurement"),
        ("spo2_signal_quality_pct", True, "a qualifier"),
        ("source", True, "a required field"),
    ],
)
def test_a_measurement_declaration_that_means_nothing_is_refused_when_loading(
    tmp_path: Any, field: str, value: Any, why: str
) -> None:
    from schemas import avro

    device = field == "spo2_signal_quality_pct"
    name = (topics.VITALS_DEVICE if device else topics.VITALS_OBSERVATION).name
    raw = json.loads((avro.SCHEMA_DIR / f"{name}.avsc").read_text())
    next(s for s in raw["fields"] if s["name"] == field)[MEASUREMENT] = value
    path = tmp_path / "x.avsc"
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match=why):
        avro.check_refusals("x", avro._load("x", path))
    # and on a schema that refuses no value alone
    raw = json.loads((avro.SCHEMA_DIR / "adt.event.v1.avsc").read_text())
    raw["fields"][-1][MEASUREMENT] = True
    path.write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="no value is refused alone"):
        avro.check_refusals("x", avro._load("x", path))


def test_a_nan_and_an_out_of_range_value_are_each_refused_with_their_own_code() -> None:
    """Beside a heart rate kept: one refusal per value, each its own code and reason (the
    jobs dead-letter each); with nothing kept, the record's one rejection names each value
    with its code."""
    rec = _device(heart_rate_bpm=120.0, spo2_pct=float("nan"), temp_c=98.6)
    got = codec.decode_checked(DEVICE, codec.encode(DEVICE, rec))
    assert isinstance(got, codec.Accepted)
    assert got.refused == (
        codec.Rejection("value_not_a_number", "spo2_pct is NaN"),
        codec.Rejection("value_out_of_range", "temp_c=98.6 outside [14, 46]"),
    )
    whole = codec.decode_checked(DEVICE, codec.encode(DEVICE, rec | {"heart_rate_bpm": None}))
    assert whole == codec.Rejection(
        "not_a_number",
        "spo2_pct is NaN (not_a_number); temp_c=98.6 outside [14, 46] (out_of_range)",
    )
