from __future__ import annotations

import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from schemas import codec, topics
from udfs.vitals import DECODED_FIELDS, decode_observation

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
    r = codec.decode_valid(OBS, codec.encode(OBS, _rec(**change)))
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
    low = codec.decode_valid(OBS, codec.encode(OBS, _rec(fio2_fraction=0.2099)))
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
    assert ok[:2] == (None, None) and len(ok) == 2 + len(DECODED_FIELDS) + 1
    assert dict(zip([f.name for f in DECODED_FIELDS], ok[2:-1], strict=True))["unit_id"] == "u"
    assert ok[-1] == T.replace(tzinfo=None)  # measured_time: its own event time, in UTC
    bad = decode_observation(b"junk", codec.epoch_ms(T))
    assert bad[0] == "undecodable" and all(v is None for v in bad[2:])
