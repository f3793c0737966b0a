from __future__ import annotations

import ast
import copy
import hashlib
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas import codec, topics
from schemas.interop import fhir_r4
from schemas.interop.hl7v2 import Mapped, Refused
from udfs import census

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir_r4"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/fhir_r4 is not here")


def tok(namespace: str, ident: str) -> str:
    return f"{namespace}|{ident}"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def run(data: dict) -> list[fhir_r4.Outcome]:
    return fhir_r4.map_json(data, tok, source="t", facility_id="F")


@needs_data
def test_every_example_maps_or_is_refused_with_a_reason() -> None:
    codes: Counter[str] = Counter()
    for path in sorted(DATA.glob("*.json")):
        for label, o, _ in run(json.loads(path.read_text())):
            if isinstance(o, Refused):
                assert o.reason, label
                codes[o.reason_code] += 1
            else:
                assert o.records, label
                codes["mapped"] += 1
    assert codes["mapped"] == 4  # emerg encounter, satO2, the Glasgow coma score, glucose f001
    assert codes["not_a_point_measurement"] == 1  # map-sitting: a mean over 3 days
    assert codes["cancelled"] == codes["entered_in_error"] == 1
    assert codes["imprecise_time"] == 6  # date-only effective times


@needs_data
def test_the_emergency_encounter_becomes_an_admission_and_two_transfers() -> None:
    [(_, o, _)] = run(load("encounter-example-emerg.json"))
    assert isinstance(o, Mapped)
    events = [r for _, r in o.records]
    assert [(e["event_type"], e["unit_id"], e["prior_unit_id"]) for e in events] == [
        ("admit", "Emergency Waiting Room", None),
        ("transfer", "Emergency", "Emergency Waiting Room"),
        ("transfer", "Ward 1, Room 42, Bed 1", "Emergency"),  # reserved on leave: same stay
    ]
    assert events[0]["event_time"] == datetime(2017, 1, 31, 21, 15, tzinfo=UTC)
    assert events[0]["patient_token"] == "fhir:Patient|Patient/example"


@needs_data
def test_a_finished_inpatient_encounter_ends_with_a_discharge() -> None:
    enc = copy.deepcopy(load("encounter-example-emerg.json"))
    enc["status"] = "finished"
    enc["location"][-1]["period"]["end"] = "2017-02-03T10:00:00+10:00"
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped)
    last = o.records[-1][1]
    assert last["event_type"] == "discharge"
    assert last["event_time"] == datetime(2017, 2, 3, 0, 0, tzinfo=UTC)


@needs_data
def test_a_blood_pressure_panel_maps_its_components_and_skips_absent_ones() -> None:
    bp = copy.deepcopy(load("observation-example-bloodpressure-dar.json"))
    bp["effectiveDateTime"] = "2012-09-17T08:30:00Z"
    [(_, o, _)] = run(bp)
    assert isinstance(o, Mapped)
    [(topic, rec)] = o.records
    assert topic == topics.VITALS_OBSERVATION.name
    assert rec["sbp_mmhg"] == 107 and "dbp_mmhg" not in rec


@needs_data
def test_entered_in_error_and_cancelled_observations_are_refused() -> None:
    for name, code in (
        ("observation-example-f202-temperature.json", "entered_in_error"),
        ("observation-example-bloodpressure-cancel.json", "cancelled"),
    ):
        [(_, o, _)] = run(load(name))
        assert isinstance(o, Refused) and o.reason_code == code


def test_a_resource_that_does_not_validate_is_refused() -> None:
    [(_, o, _)] = run({"resourceType": "Observation", "id": "x", "status": "final"})  # no code
    assert isinstance(o, Refused) and o.reason_code == "invalid_fhir"


def test_ambulatory_encounters_occupy_no_bed() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "a",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p"},
    }
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "not_inpatient"


def encounter(*locations: tuple[str, str, str | None], status: str = "in-progress") -> dict:
    return {
        "resourceType": "Encounter",
        "id": "e1",
        "status": status,
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p1"},
        "location": [
            {
                "location": {"display": where},
                "status": "completed" if end else "active",
                "period": {"start": start, **({"end": end} if end else {})},
            }
            for where, start, end in locations
        ],
    }


def test_an_encounter_class_of_another_system_is_a_class_not_known_placed_by_its_locations() -> (
    None
):
    """Encounter.class is bound extensibly to v3 ActEncounterCode (R4 Encounter.class,
    terminologies.html#extensible): codes of other systems are R4, and systems send them. Every
    class but the five bed classes' codes refused the bed movement (`not_inpatient`), an
    admission coded `inpatient` included. A v3 ActCode code (or an ActEncounterCode with no
    system) means itself as before; any other (v2-0004, local, a display alone) is a class not
    known, not read by its words: placed by its locations with a note, as the HL7 gateway
    places an admission whatever PV1-2 says (the census refuses a location that is no unit,
    `unknown_unit`)."""
    v3 = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
    v2 = "http://terminology.hl7.org/CodeSystem/v2-0004"
    local = "https://ehr.example.org/fhir/CodeSystem/encounter-class"
    for cls, noted in (
        ({"system": local, "code": "inpatient"}, True),
        ({"system": local, "code": "Outpatient Observation"}, True),  # a bedded outpatient
        ({"system": local, "code": "OP", "display": "Outpatient"}, True),  # its words not read
        ({"system": v2, "code": "I"}, True),
        ({"system": v2, "code": "O"}, True),
        ({"system": local, "code": "AMB"}, True),  # not the v3 code: another system's
        ({"display": "Inpatient"}, True),  # a display alone
        ({"code": "inpatient"}, True),  # no system, and no ActEncounterCode
        ({"code": "IMP"}, False),
        ({"system": v3, "code": "ACUTE"}, False),
        ({"system": "urn:oid:2.16.840.1.113883.5.4", "code": "EMER"}, False),
    ):
        stay = encounter(("4E", "2026-03-01T08:00:00Z", None)) | {"class": cls}
        [(_, o, _)] = run(stay)
        assert isinstance(o, Mapped), (cls, o)
        assert [r["event_type"] for _, r in o.records] == ["admit"], cls
        if noted:
            assert len(o.notes) == 1 and "class not known" in o.notes[0], (cls, o.notes)
        else:
            assert o.notes == [], (cls, o.notes)
    for cls in (
        {"system": v3, "code": "AMB"},
        {"system": "http://hl7.org/fhir/v3/ActCode", "code": "SS"},
        {"code": "VR"},
        {"system": v3, "code": "inpatient"},  # no ActCode code: as before
    ):
        stay = encounter(("4E", "2026-03-01T08:00:00Z", None)) | {"class": cls}
        [(_, o, _)] = run(stay)
        assert isinstance(o, Refused) and o.reason_code == "not_inpatient", (cls, o)
    # its void and deletion read the class alike: the stay a local class placed is taken back
    cls = {"system": local, "code": "inpatient"}
    placed = encounter(("4E", "2026-03-01T08:00:00Z", None)) | {"class": cls}
    placed["meta"] = {"lastUpdated": "2026-03-01T08:05:00Z"}
    voided = placed | {"status": "entered-in-error"}
    voided["meta"] = {"lastUpdated": "2026-03-01T09:00:00Z"}
    delete = {"method": "DELETE", "url": "Encounter/e1"}
    gone = {"lastModified": "2026-03-01T09:00:00Z"}
    deletion = _observation_versions({"resource": placed, "request": delete, "response": gone})
    for taken_back in (voided, deletion):
        [(_, admitted, _)] = run(placed)
        [(_, void, _)] = run(taken_back)
        assert isinstance(admitted, Mapped) and isinstance(void, Mapped), void
        records = [r for _, r in admitted.records] + [r for _, r in void.records]
        assert [r["event_type"] for r in records] == ["admit", "void_encounter"]
        assert _each_applied(records).place is None


def test_an_encounter_version_stored_after_its_events_times_them_when_it_was_stored() -> None:
    """A discharge entered two hours after the patient left is applied when entered, as an
    HL7 discharge at its EVN-2; without meta.lastUpdated the events keep their own times."""
    enc = encounter(("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"), status="finished")
    [(_, bare, _)] = run(enc)
    assert isinstance(bare, Mapped)
    assert [r["recorded_time"] for _, r in bare.records] == [None, None]
    [(_, stored, _)] = run(enc | {"meta": {"lastUpdated": "2026-03-01T14:00:00Z"}})
    assert isinstance(stored, Mapped)
    admit, discharge = (r for _, r in stored.records)
    assert discharge["event_time"] == datetime(2026, 3, 1, 12, tzinfo=UTC)
    assert codec.record_time(discharge) == datetime(2026, 3, 1, 14, tzinfo=UTC)
    assert codec.record_time(admit) == datetime(2026, 3, 1, 14, tzinfo=UTC)


@pytest.mark.parametrize("status", ["entered-in-error", "cancelled"])
def test_an_encounter_entered_in_error_or_cancelled_takes_back_the_bed_an_earlier_version_placed(
    status: str,
) -> None:
    """FHIR R4: `entered-in-error`, the encounter never was; `cancelled`, it "ended before it
    has begun" (an EHR's way to take back an arrival). Either was refused, so a bed an earlier
    version of the Encounter had placed the patient in stayed taken for ever, and their next
    admission was refused; now the census voids that Encounter's stay when the server stored
    the version."""
    open_stay = encounter(("4E", "2026-03-01T08:00:00Z", None))
    [(_, first, _)] = run(open_stay | {"meta": {"lastUpdated": "2026-03-01T08:05:00Z"}})
    erred = open_stay | {"status": status, "meta": {"lastUpdated": "2026-03-01T09:30:00Z"}}
    [(_, void, _)] = run(erred)
    assert isinstance(first, Mapped) and isinstance(void, Mapped)
    [(_, taken_back)] = void.records
    assert taken_back["event_type"] == "void_encounter"
    assert taken_back["event_time"] == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert taken_back["patient_token"] == first.records[0][1]["patient_token"]
    placement = census.PatientPlacement()
    for _, record in [*first.records, *void.records]:
        outcome, deltas = placement.apply(
            census.AdtEvent.of(record, codec.epoch_ms(codec.record_time(record)))
        )
        assert outcome.status == "applied"
    assert placement.place is None and [(d.occupied, d.cancels) for d in deltas] == [(-1, 1)]
    # refused as before without the time it was taken back, or for a class in no bed
    ambulatory = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}
    for refused in (erred | {"meta": {}}, erred | {"class": ambulatory}):
        [(_, o, _)] = run(refused)
        assert isinstance(o, Refused) and o.reason_code == status.replace("-", "_"), o


def test_a_duplicate_encounter_taken_back_leaves_the_real_encounters_stay_alone() -> None:
    """The usual reason for `entered-in-error`: a second Encounter opened for a patient already
    in a bed. Its admission is refused (already admitted); taken back, it names its own
    encounter, not the one the patient's stay is, and the census keeps the bed."""
    real = encounter(("4E", "2026-03-01T08:00:00Z", None))
    duplicate = real | {"id": "e2", "meta": {"lastUpdated": "2026-03-01T09:00:00Z"}}
    stored = {"meta": {"lastUpdated": "2026-03-01T08:05:00Z"}}
    [(_, first, _)] = run(real | stored)
    [(_, second, _)] = run(duplicate)
    [(_, void, _)] = run(
        duplicate | {"status": "entered-in-error", "meta": {"lastUpdated": "2026-03-01T10:00:00Z"}}
    )
    placement = census.PatientPlacement()
    seen = []
    for o in (first, second, void):
        assert isinstance(o, Mapped)
        for _, record in o.records:
            at = codec.epoch_ms(codec.record_time(record))
            seen.append(placement.apply(census.AdtEvent.of(record, at))[0].status)
    assert seen == ["applied", "already_admitted", "nothing_to_cancel"]
    assert placement.place == census.Place("F", "4E", None)
    # a finished stay taken back after the patient was discharged: nothing is open to void
    ended = encounter(("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"), status="finished")
    done = census.PatientPlacement()
    [(_, closed, _)] = run(ended)
    [(_, erred, _)] = run(
        ended | {"status": "entered-in-error", "meta": {"lastUpdated": "2026-03-02T08:00:00Z"}}
    )
    assert isinstance(closed, Mapped) and isinstance(erred, Mapped)
    outcomes = [
        done.apply(census.AdtEvent.of(r, codec.epoch_ms(codec.record_time(r))))[0].status
        for _, r in [*closed.records, *erred.records]
    ]
    assert outcomes == ["applied", "applied", "nothing_to_cancel"]


def test_a_duplicate_encounter_stored_first_and_taken_back_gives_the_bed_to_the_real_one() -> None:
    """The duplicate's admission came first, so the real Encounter's was refused (already
    admitted) and voiding the duplicate frees the patient's only bed; the real Encounter's
    next version sends its admission again (every version maps the whole stay), and the
    census places the patient again then."""
    real = encounter(("4E", "2026-03-01T08:00:00Z", None))
    duplicate = real | {"id": "e2", "meta": {"lastUpdated": "2026-03-01T08:01:00Z"}}
    versions = [
        duplicate,
        real | {"meta": {"lastUpdated": "2026-03-01T08:05:00Z"}},
        duplicate | {"status": "entered-in-error", "meta": {"lastUpdated": "2026-03-01T10:00:00Z"}},
        real | {"meta": {"lastUpdated": "2026-03-01T11:00:00Z"}},
    ]
    placement = census.PatientPlacement()
    seen = []
    for version in versions:
        [(_, o, _)] = run(version)
        assert isinstance(o, Mapped)
        for _, record in o.records:
            at = codec.epoch_ms(codec.record_time(record))
            seen.append(placement.apply(census.AdtEvent.of(record, at))[0].status)
    assert seen == ["applied", "already_admitted", "applied", "applied"]
    assert placement.place == census.Place("F", "4E", None)
    assert placement.stay == tok("fhir:Encounter", "e1")


def test_an_encounter_taken_back_is_timed_by_where_the_patient_was_not_a_bed_held() -> None:
    """A planned location (a bed booked for next week) or a reserved one (held for the
    patient's return from theatre) placed no one: the void is timed when the server stored it,
    not after that bed's start."""
    enc = encounter(
        ("4E", "2026-03-01T08:00:00Z", None),
        ("ICU", "2026-03-09T08:00:00Z", None),
        ("ICU", "2026-03-01T12:00:00Z", None),
    )
    enc["location"][1]["status"] = "planned"
    enc["location"][2]["status"] = "reserved"
    [(_, void, _)] = run(
        enc | {"status": "entered-in-error", "meta": {"lastUpdated": "2026-03-01T10:00:00Z"}}
    )
    assert isinstance(void, Mapped)
    [(_, taken_back)] = void.records
    assert taken_back["event_time"] == datetime(2026, 3, 1, 10, tzinfo=UTC)


def test_a_location_that_ends_before_it_starts_refuses_the_encounter() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", "2026-03-01T07:00:00Z"), status="finished")
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "bad_period"
    assert "ends" in o.reason and "before it starts" in o.reason


def test_locations_are_taken_in_time_order_whatever_their_order_in_the_list() -> None:
    enc = encounter(
        ("ICU", "2026-03-01T12:00:00Z", None),
        ("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
    )
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped)
    assert [(r["event_type"], r["unit_id"], r["prior_unit_id"]) for _, r in o.records] == [
        ("admit", "4E", None),
        ("transfer", "ICU", "4E"),
    ]


def test_two_locations_starting_at_the_same_instant_refuse_the_encounter() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None), ("ICU", "2026-03-01T08:00:00Z", None))
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "bad_period"


def at_levels(enc: dict, levels: list[str]) -> dict:
    """The Encounter with each location's level (physicalType) set, in order."""
    system = "http://terminology.hl7.org/CodeSystem/location-physical-type"
    for loc, level in zip(enc["location"], levels, strict=True):
        loc["physicalType"] = {"coding": [{"system": system, "code": level}]}
    return enc


def test_a_stay_listed_at_each_level_of_its_location_is_one_ward_and_its_bed() -> None:
    """As servers list a stay: its site, ward, room and bed, each a location with one period.
    Without their levels they were four units starting at one instant (refused)."""
    enc = encounter(
        ("General Hospital", "2026-03-01T08:00:00Z", None),
        ("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
        ("4E room 12", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
        ("4E-12-A", "2026-03-01T08:00:00Z", "2026-03-01T10:00:00Z"),
        ("4E-12-B", "2026-03-01T10:00:00Z", "2026-03-01T12:00:00Z"),  # a move within the ward
        ("ICU", "2026-03-01T12:00:00Z", "2026-03-02T09:00:00Z"),
        ("ICU-3", "2026-03-01T12:00:05Z", "2026-03-02T09:00:00Z"),  # charted a moment later
        status="finished",
    )
    [(_, unlevelled, _)] = run(copy.deepcopy(enc))
    assert isinstance(unlevelled, Refused) and unlevelled.reason_code == "bad_period"
    [(_, o, _)] = run(at_levels(enc, ["si", "wa", "ro", "bd", "bd", "wa", "bd"]))
    assert isinstance(o, Mapped), o
    assert [
        (r["event_type"], r["unit_id"], r["bed_id"], r["prior_unit_id"], r["prior_bed_id"])
        for _, r in o.records
    ] == [
        ("admit", "4E", "4E-12-A", None, None),
        ("transfer", "ICU", "ICU-3", "4E", "4E-12-B"),  # from the bed they left
        ("discharge", "ICU", "ICU-3", None, None),
    ]


def moves(o: Mapped | Refused) -> list[tuple]:
    assert isinstance(o, Mapped), o
    return [
        (r["event_id"].rsplit(":", 2)[-2], r["event_type"], r["unit_id"], r["bed_id"],
         r["prior_bed_id"])
        for _, r in o.records
    ]  # fmt: skip


def test_a_room_before_the_first_ward_stays_a_unit_so_a_later_version_keeps_its_event_ids() -> None:
    first = at_levels(encounter(("ED", "2026-03-01T08:00:00Z", None)), ["ro"])
    later = at_levels(
        encounter(
            ("ED", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
            ("4E", "2026-03-01T12:00:00Z", None),
            ("4E-1", "2026-03-01T12:00:00Z", None),
            ("Short stay", "2026-03-01T13:00:00Z", None),  # no level: a unit, never dropped
        ),
        ["ro", "wa", "bd", ""],
    )
    later["location"][-1].pop("physicalType")
    assert moves(run(first)[0][1]) == [("0", "admit", "ED", None, None)]
    assert moves(run(later)[0][1]) == [
        ("0", "admit", "ED", None, None),
        ("1", "transfer", "4E", "4E-1", None),
        ("2", "transfer", "Short stay", None, "4E-1"),
    ]


def test_beds_go_to_the_ward_stay_they_overlap_most_and_reserved_ones_to_none() -> None:
    enc = at_levels(
        encounter(
            ("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
            ("4E-A", "2026-03-01T08:00:00Z", None),  # open: until the next bed
            ("4E-B", "2026-03-01T10:00:00Z", None),
            ("ICU", "2026-03-01T12:00:00Z", None),
            ("ICU-3", "2026-03-01T11:59:55Z", None),  # charted a moment early
            ("4E-A", "2026-03-01T13:00:00Z", None),  # held for the patient: no bed of theirs
        ),
        ["wa", "bd", "bd", "wa", "bd", "bd"],
    )
    enc["location"][-1]["status"] = "reserved"
    assert moves(run(enc)[0][1]) == [
        ("0", "admit", "4E", "4E-A", None),
        ("1", "transfer", "ICU", "ICU-3", "4E-B"),
    ]


def test_a_level_is_read_from_its_own_code_system_only() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None), ("4E-1", "2026-03-01T08:00:00Z", None))
    system = "http://terminology.hl7.org/CodeSystem/location-physical-type"
    enc["location"][0]["physicalType"] = {
        "coding": [{"system": "urn:local", "code": "WARD"}, {"system": system, "code": "wa"}]
    }
    enc["location"][1]["physicalType"] = {"coding": [{"system": system, "code": "bd"}]}
    assert moves(run(copy.deepcopy(enc))[0][1]) == [("0", "admit", "4E", "4E-1", None)]
    enc["location"][0]["physicalType"] = {"coding": [{"system": "urn:other", "code": "wa"}]}
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "bad_period"  # two units at one instant


def test_a_ward_and_its_bed_without_periods_take_the_encounters_start() -> None:
    enc = at_levels(encounter(("4E", "x", None), ("4E-1", "x", None)), ["wa", "bd"])
    for loc in enc["location"]:
        loc.pop("period")
    enc["period"] = {"start": "2026-03-01T08:00:00Z"}
    assert moves(run(enc)[0][1]) == [("0", "admit", "4E", "4E-1", None)]


def test_a_site_or_building_is_never_a_unit_and_a_bay_before_the_ward_is_one() -> None:
    enc = at_levels(
        encounter(
            ("General Hospital", "2026-03-01T07:00:00Z", None),
            ("ED", "2026-03-01T07:00:00Z", "2026-03-01T08:00:00Z"),  # no level: a unit
            ("4E-12", "2026-03-01T08:00:00Z", None),  # charted a minute before its ward
            ("4E", "2026-03-01T08:01:00Z", None),
            ("Tower B", "2026-03-01T08:01:00Z", None),
            ("4E-14", "2026-03-01", None),  # a date alone: no bed, not a refusal
        ),
        ["si", "", "bd", "wa", "bu", "bd"],
    )
    enc["location"][1].pop("physicalType")
    assert moves(run(copy.deepcopy(enc))[0][1]) == [
        ("0", "admit", "ED", None, None),
        ("1", "transfer", "4E", "4E-12", None),
    ]
    bay = at_levels(copy.deepcopy(enc), ["si", "bd", "bd", "wa", "bu", "bd"])
    bay["location"][1]["location"]["display"] = "ED bay 3"  # where the patient was first
    assert moves(run(bay)[0][1]) == [
        ("0", "admit", "ED bay 3", None, None),
        ("1", "transfer", "4E", "4E-12", None),
    ]


def test_levelled_locations_without_periods_beside_a_ward_on_leave_change_nothing() -> None:
    enc = at_levels(
        encounter(
            ("General Hospital", "x", None),
            ("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
            ("4E", "2026-03-01T12:00:00Z", "2026-03-01T14:00:00Z"),
            ("4E", "2026-03-01T14:00:00Z", None),
            ("4E-1", "x", None),
        ),
        ["si", "wa", "wa", "wa", "bd"],
    )
    enc["location"][0].pop("period")
    enc["location"][2]["status"] = "reserved"  # on leave, the bed held
    enc["location"][4].pop("period")
    assert moves(run(enc)[0][1]) == [("0", "admit", "4E", "4E-1", None)]


@pytest.mark.parametrize("room_end", ["2026-03-01T08:05:00Z", None])
def test_an_emergency_room_begun_before_the_ward_is_a_unit_however_long_it_is_listed(
    room_end: str | None,
) -> None:
    enc = at_levels(
        encounter(
            ("ER room 2", "2026-03-01T06:00:00Z", room_end),
            ("4E", "2026-03-01T08:00:00Z", None),
            ("4E-12", "2026-03-01T08:00:00Z", None),
            ("4E-12", "2026-03-01T08:00:00Z", None),  # listed twice
            ("4E-14", "2026-03-01T08:00:00Z", "2026-03-01T08:00:00Z"),  # no time in it
        ),
        ["ro", "wa", "bd", "bd", "bd"],
    )
    assert moves(run(enc)[0][1]) == [
        ("0", "admit", "ER room 2", None, None),
        ("1", "transfer", "4E", "4E-12", None),
    ]


def test_a_ward_held_for_the_patient_is_not_where_they_are() -> None:
    enc = at_levels(
        encounter(
            ("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
            ("ICU room 3", "2026-03-01T12:00:00Z", None),
            ("4E", "2026-03-01T12:00:00Z", None),
        ),
        ["wa", "ro", "wa"],
    )
    enc["location"][2]["status"] = "reserved"
    assert [m[1:3] for m in moves(run(enc)[0][1])] == [
        ("admit", "4E"),
        ("transfer", "ICU room 3"),
    ]


def test_levelled_locations_without_a_ward_are_each_a_unit_as_before() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None))
    [(_, o, _)] = run(at_levels(enc, ["bd"]))
    assert isinstance(o, Mapped)
    assert [(r["unit_id"], r["bed_id"]) for _, r in o.records] == [("4E", None)]


def test_a_bed_held_elsewhere_from_the_instant_of_a_move_is_no_move_in_either_order() -> None:
    enc = encounter(
        ("4E", "2026-03-01T08:00:00Z", "2026-03-01T12:00:00Z"),
        ("4E", "2026-03-01T12:00:00Z", None),  # held for them while they are in the ICU
        ("ICU", "2026-03-01T12:00:00Z", None),
    )
    enc["location"][1]["status"] = "reserved"
    for order in (enc["location"], enc["location"][::-1]):
        [(_, o, _)] = run(enc | {"location": order})
        assert isinstance(o, Mapped), o
        assert [(r["event_type"], r["unit_id"]) for _, r in o.records] == [
            ("admit", "4E"),
            ("transfer", "ICU"),
        ]


def test_a_finished_encounter_without_a_location_end_is_discharged_at_its_period_end() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None), status="finished")
    enc["period"] = {"start": "2026-03-01T08:00:00Z", "end": "2026-03-02T10:00:00Z"}
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped)
    assert [(r["event_type"], r["event_time"].hour) for _, r in o.records] == [
        ("admit", 8),
        ("discharge", 10),
    ]
    enc["period"]["end"] = "2026-03-01T07:00:00Z"
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "bad_period"


def observation(code: str, **kw: object) -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "category": [{"coding": [{"code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-03-01T09:30:00Z",
        **kw,
    }


def quantity(value: float, code: str) -> dict:
    return {"value": value, "unit": code, "system": "http://unitsofmeasure.org", "code": code}


def component(code: str, value: float, unit: str) -> dict:
    return {
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueQuantity": quantity(value, unit),
    }


def test_components_are_read_only_under_a_panel_code() -> None:
    parts = [component("8480-6", 142, "mm[Hg]"), component("8462-4", 88, "mm[Hg]")]
    home_average = observation(  # a code of something else with blood pressure components
        "72514-3",
        component=parts,
        effectivePeriod={"start": "2026-02-22T00:00:00Z", "end": "2026-03-01T00:00:00Z"},
    )
    del home_average["effectiveDateTime"]
    [(_, o, _)] = run(home_average)
    assert isinstance(o, Refused) and o.reason_code == "not_a_vital_sign"
    [(_, panel, _)] = run(observation("85354-9", component=parts))
    assert isinstance(panel, Mapped)
    assert {k: panel.records[0][1][k] for k in ("sbp_mmhg", "dbp_mmhg")} == {
        "sbp_mmhg": 142,
        "dbp_mmhg": 88,
    }


def test_an_observation_issued_after_it_was_taken_is_timed_when_it_was_issued() -> None:
    lactate = observation(
        "2524-7",
        category=[{"coding": [{"code": "laboratory"}]}],
        valueQuantity=quantity(4.1, "mmol/L"),
        issued="2026-03-01T13:00:00Z",
    )
    [(_, mapped, _)] = run(lactate)
    assert isinstance(mapped, Mapped)
    [(topic, rec)] = mapped.records
    assert topic == topics.LABS_RESULT.name
    assert rec["event_time"] == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert codec.record_time(rec) == rec["recorded_time"] == datetime(2026, 3, 1, 13, tzinfo=UTC)
    [(_, unissued, _)] = run(observation("8867-4", valueQuantity=quantity(80, "/min")))
    assert isinstance(unissued, Mapped)
    assert [r["recorded_time"] for _, r in unissued.records] == [None]


def over_period(code: str, value: float, unit: str, start: str, end: str) -> dict:
    """An Observation timed by an effectivePeriod."""
    obs = observation(
        code, valueQuantity=quantity(value, unit), effectivePeriod={"start": start, "end": end}
    )
    del obs["effectiveDateTime"]
    return obs


def test_a_summary_over_a_long_period_is_not_a_bedside_reading() -> None:
    """Also where the period ends on a date or a month (FHIR R4 Period.end: "includes any
    matching date/time", to the end of that day or month)."""
    for start, end in (
        ("2026-03-01T00:00:00Z", "2026-03-01T23:59:00Z"),
        ("2026-03-01T00:00:00Z", "2026-03-01"),
        ("2026-03-01T00:00:00Z", "2026-03"),
        ("2026-03-01T00:00:00Z", "2026"),
        ("2026-03-01T09:30:00-05:00", "2026-03-01"),  # the day ends in the start's zone
        ("2026-03-31T18:00:00-07:00", "2026-03"),
    ):
        [(_, o, _)] = run(over_period("8867-4", 72, "/min", start, end))
        assert isinstance(o, Refused) and o.reason_code == "not_a_point_measurement", end
    [(_, late, _)] = run(
        over_period("8867-4", 72, "/min", "2026-03-01T23:30:00-05:00", "2026-03-01")
    )
    assert isinstance(late, Mapped)  # half an hour before its day ends


def test_inhaled_oxygen_flow_tells_news2_the_patient_is_on_oxygen() -> None:
    [(_, on, _)] = run(observation("3151-8", valueQuantity=quantity(4, "L/min")))
    [(_, off, _)] = run(observation("3151-8", valueQuantity=quantity(0, "L/min")))
    assert isinstance(on, Mapped) and isinstance(off, Mapped)
    assert on.records[0][1]["on_supplemental_o2"] is True
    assert off.records[0][1]["on_supplemental_o2"] is False


def test_a_subject_given_only_by_identifier_is_the_patient() -> None:
    obs = observation("8867-4", valueQuantity=quantity(72, "/min"))
    obs["subject"] = {"identifier": {"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}}
    [(_, o, _)] = run(obs)
    assert isinstance(o, Mapped)
    token = o.records[0][1]["patient_token"]
    assert token == "fhir:identifier:urn:oid:1.2.36.146.595.217.0.1|12345"
    obs["subject"] = {"display": "someone"}
    [(_, o, _)] = run(obs)
    assert isinstance(o, Refused) and o.reason_code == "missing_field"


def test_a_bundle_entry_is_refused_alone_and_keeps_only_itself() -> None:
    good = observation("8867-4", valueQuantity=quantity(72, "/min"))
    bad = observation("8867-4", id="o2", valueQuantity=quantity(72, "mmHg"))
    bundle = {
        "resourceType": "Bundle",
        "id": "b",
        "type": "collection",
        "entry": [{"resource": good}, {"resource": bad}, {"fullUrl": "urn:x"}],
    }
    out = run(bundle)
    assert [(o.label, type(o.result).__name__) for o in out] == [
        ("Bundle/b#entry0:Observation/o1", "Mapped"),
        ("Bundle/b#entry1:Observation/o2", "Refused"),
        ("Bundle/b#entry2", "Refused"),
    ]
    assert out[1].resource == bad and out[2].resource == {"fullUrl": "urn:x"}


MDC = "urn:iso:std:iso:11073:10101"


def mdc_concept(code: str, display: str) -> dict:
    return {"coding": [{"system": MDC, "code": code, "display": display}]}


def mdc_quantity(value: float, code: str, display: str) -> dict:
    return {"value": value, "unit": display, "system": MDC, "code": code}


def test_a_device_observation_coded_in_ieee_11073_is_read_with_its_units() -> None:
    spo2 = observation("x") | {"code": mdc_concept("150456", "MDC_PULS_OXIM_SAT_O2")}
    spo2["valueQuantity"] = mdc_quantity(93, "262688", "MDC_DIM_PERCENT")
    [(_, o, _)] = run(spo2)
    assert isinstance(o, Mapped) and o.records[0][1]["spo2_pct"] == 93
    bp = observation("x") | {"code": mdc_concept("150020", "MDC_PRESS_BLD_NONINV")}
    bp["component"] = [
        {"code": mdc_concept("150021", "MDC_PRESS_BLD_NONINV_SYS"),
         "valueQuantity": quantity(101, "mm[Hg]")},
        {"code": mdc_concept("150022", "MDC_PRESS_BLD_NONINV_DIA"),
         "valueQuantity": mdc_quantity(62, "266016", "MDC_DIM_MMHG")},
    ]  # fmt: skip
    [(_, panel, _)] = run(bp)
    assert isinstance(panel, Mapped)
    assert {k: panel.records[0][1][k] for k in ("sbp_mmhg", "dbp_mmhg")} == {
        "sbp_mmhg": 101,
        "dbp_mmhg": 62,
    }
    unknown = observation("x") | {"code": mdc_concept("150488", "MDC_BLD_PERF_INDEX")}
    unknown["valueQuantity"] = mdc_quantity(1.2, "262688", "MDC_DIM_PERCENT")
    [(_, refused, _)] = run(unknown)
    assert isinstance(refused, Refused) and refused.reason_code == "not_a_vital_sign"


def test_of_two_pressures_in_one_device_panel_the_arterial_lines_is_kept_in_either_order() -> None:
    arterial = {
        "code": mdc_concept("150037", "MDC_PRESS_BLD_ART_ABP_SYS"),
        "valueQuantity": quantity(140, "mm[Hg]"),
    }
    cuff = {
        "code": mdc_concept("150021", "MDC_PRESS_BLD_NONINV_SYS"),
        "valueQuantity": quantity(100, "mm[Hg]"),
    }
    for order in ([arterial, cuff], [cuff, arterial]):
        panel = observation("x") | {"code": mdc_concept("150020", "MDC_PRESS_BLD_NONINV")}
        panel["component"] = order
        [(_, o, _)] = run(panel)
        assert isinstance(o, Mapped) and o.records[0][1]["sbp_mmhg"] == 140


def test_a_panel_value_that_cannot_be_read_is_dead_lettered_alone_and_the_others_are_kept() -> None:
    panel = observation(
        "85354-9",
        component=[
            component("8480-6", 118, "mm[Hg]"),
            component("8462-4", -999, "mm[Hg]"),  # a monitor's "no value"
            component("8867-4", 72, "mm[Hg]"),  # a heart rate in the wrong unit
        ],
    )
    [(_, o, _)] = run(panel)
    assert isinstance(o, Mapped)
    [(_, record)] = o.records
    assert record["sbp_mmhg"] == 118
    assert "dbp_mmhg" not in record and "heart_rate_bpm" not in record
    assert [(r.label, r.refusal.reason_code) for r in o.rejected] == [
        ("Observation/o1 component 1 (8462-4)", "out_of_range"),
        ("Observation/o1 component 2 (8867-4)", "bad_unit"),
    ]
    assert o.rejected[0].refusal.reason.startswith("component 1: 8462-4: dbp_mmhg=-999 outside")
    letter = json.loads(o.rejected[0].payload)  # the Observation, with that value alone
    assert letter["subject"] == panel["subject"] and letter["id"] == "o1"
    assert letter["component"] == [panel["component"][1]]


def test_an_observation_none_of_whose_values_can_be_read_is_refused_with_their_reason() -> None:
    [(_, one, _)] = run(observation("8867-4", valueQuantity=quantity(400, "/min")))
    assert isinstance(one, Refused) and one.reason_code == "out_of_range"
    both = [component("8480-6", 900, "mm[Hg]"), component("8462-4", -1, "mm[Hg]")]
    [(_, same, _)] = run(observation("85354-9", component=both))
    assert isinstance(same, Refused) and same.reason_code == "out_of_range"
    assert "sbp_mmhg=900" in same.reason and "dbp_mmhg=-1" in same.reason
    mixed = [component("8480-6", 900, "mm[Hg]"), component("8462-4", 60, "/min")]
    [(_, o, _)] = run(observation("85354-9", component=mixed))
    assert isinstance(o, Refused) and o.reason_code == "bad_value"


def test_a_lab_value_or_a_negative_oxygen_flow_in_a_panel_is_dead_lettered_alone_a_lab_read() -> (
    None
):
    lactate = {
        "code": {"coding": [{"system": "http://loinc.org", "code": "2524-7"}]},
        "valueQuantity": quantity(2.0, "mmol/L"),
    }
    flow = component("3151-8", -2, "L/min")
    panel = observation("85353-1", component=[component("8480-6", 120, "mm[Hg]"), lactate, flow])
    [(_, o, _)] = run(panel)
    assert isinstance(o, Mapped) and o.records[0][1]["sbp_mmhg"] == 120
    assert [(r.refusal.reason_code, r.refusal.reason.split(":")[0]) for r in o.rejected] == [
        ("not_a_vital_sign", "component 1"),
        ("bad_value", "component 2"),  # the unit is right, the value is not
    ]
    [(_, alone, _)] = run(observation("2524-7", valueQuantity=quantity(18.0, "mg/dL")))
    assert isinstance(alone, Mapped)  # a lab Observation on its own is a labs record
    [(topic, lab)] = alone.records
    assert topic == topics.LABS_RESULT.name and lab["lactate_mmol_l"] == pytest.approx(1.998, 1e-3)
    assert lab["result_id"].startswith("fhir:Observation/") and "observation_id" not in lab


def test_a_pulse_oximetry_observation_carries_its_oxygen_flow_and_concentration() -> None:
    """US Core pulse oximetry puts the inhaled O2 flow (3151-8) and concentration (3150-0) in
    components of the SpO2 Observation; its other components are not read."""
    spo2 = observation(
        "59408-5",
        valueQuantity=quantity(95, "%"),
        component=[
            component("3151-8", 6, "L/min"),
            component("3150-0", 40, "%"),
            component("8867-4", 88, "/min"),
        ],
    )
    [(_, o, _)] = run(spo2)
    assert isinstance(o, Mapped)
    [(_, rec)] = o.records
    assert (rec["spo2_pct"], rec["on_supplemental_o2"], rec["fio2_fraction"]) == (95, True, 0.4)
    assert "heart_rate_bpm" not in rec


def test_the_first_loinc_coding_that_is_read_decides_whatever_the_codings_order() -> None:
    height_first = observation("8302-2", valueQuantity=quantity(38.5, "Cel"))
    height_first["code"]["coding"].append({"system": "http://loinc.org", "code": "8310-5"})
    oid = observation("8867-4", valueQuantity=quantity(72, "/min"))
    oid["code"]["coding"][0]["system"] = "urn:oid:2.16.840.1.113883.6.1"
    [(_, a, _)], [(_, b, _)] = run(height_first), run(oid)
    assert isinstance(a, Mapped) and a.records[0][1]["temp_c"] == 38.5
    assert isinstance(b, Mapped) and b.records[0][1]["heart_rate_bpm"] == 72
    [(_, c, _)] = run(observation("8302-2", valueQuantity=quantity(172, "cm")))  # body height
    assert isinstance(c, Refused) and c.reason_code == "not_a_vital_sign" and "8302-2" in c.reason


def test_a_bound_is_not_a_measured_value() -> None:
    below = observation("59408-5", valueQuantity=quantity(85, "%") | {"comparator": "<"})
    [(_, o, _)] = run(below)
    assert isinstance(o, Refused) and o.reason_code == "bad_value" and "<85" in o.reason
    panel = observation(
        "85354-9",
        component=[
            component("8480-6", 60, "mm[Hg]") | {"valueQuantity": quantity(60, "mm[Hg]")},
            component("8462-4", 40, "mm[Hg]"),
        ],
    )
    panel["component"][0]["valueQuantity"]["comparator"] = "<"
    [(_, p, _)] = run(panel)
    assert isinstance(p, Mapped) and "sbp_mmhg" not in p.records[0][1]
    assert p.records[0][1]["dbp_mmhg"] == 40
    assert [r.refusal.reason_code for r in p.rejected] == ["bad_value"]
    # a platelet count below the analyser's range: low is the alarming side (hl7v2.bound_refusal)
    few = observation("777-3", valueQuantity=quantity(10, "10*9/L") | {"comparator": "<"})
    [(_, f, _)] = run(few)
    assert isinstance(f, Mapped) and f.records[0][1]["platelets_10e9_l"] == 10


def test_a_modifier_extension_refuses_what_it_modifies() -> None:
    """FHIR R4 §2.1.0.6: a modifierExtension that is not understood must not be ignored."""
    flag = [{"url": "http://example.org/not-performed", "valueBoolean": True}]
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"), modifierExtension=flag)
    [(_, o, _)] = run(hr)
    assert isinstance(o, Refused) and o.reason_code == "unsupported_modifier"
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None)) | {"modifierExtension": flag}
    [(_, e, _)] = run(enc)
    assert isinstance(e, Refused) and e.reason_code == "unsupported_modifier"
    parts = [component("8480-6", 120, "mm[Hg]") | {"modifierExtension": flag},
             component("8462-4", 80, "mm[Hg]")]  # fmt: skip
    [(_, p, _)] = run(observation("85354-9", component=parts))
    assert isinstance(p, Mapped) and p.records[0][1]["dbp_mmhg"] == 80
    assert "sbp_mmhg" not in p.records[0][1]
    assert [r.refusal.reason_code for r in p.rejected] == ["unsupported_modifier"]


def test_an_observation_without_an_id_is_named_by_its_identifier_else_by_its_content() -> None:
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"))
    del hr["id"]
    [(_, a, _)], [(_, again, _)] = run(hr), run(copy.deepcopy(hr))
    other = hr | {"valueQuantity": quantity(73, "/min")}
    [(_, b, _)] = run(other)
    [(_, c, _)] = run(hr | {"identifier": [{"system": "urn:monitor", "value": "m7-0930"}]})
    assert isinstance(a, Mapped) and isinstance(again, Mapped) and isinstance(b, Mapped)
    assert isinstance(c, Mapped)
    ids = [x.records[0][1]["observation_id"] for x in (a, again, b, c)]
    assert ids[0] == ids[1] != ids[2]  # a resend keeps its name; another reading has its own
    content = json.dumps(hr, sort_keys=True, separators=(",", ":"))
    assert ids[0] == "fhir:content:" + tok(fhir_r4.CONTENT, content)  # a keyed token of it
    # named by its identifier's token, not the identifier in clear (the id travels in clear)
    named = "fhir:identifier:" + tok("fhir:identifier-name", "urn:monitor|m7-0930")
    assert ids[3] == named + ":8867-4"  # and what it measured (see below)


def test_an_encounter_without_an_id_is_followed_by_its_identifier_or_refused() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None))
    del enc["id"]
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "missing_field"
    enc["identifier"] = [{"system": "urn:visit", "value": "V123"}]
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped)
    visit = tok("fhir:identifier-name", "urn:visit|V123")
    assert o.records[0][1]["event_id"] == f"fhir:identifier:{visit}:0:admit"
    # its token is as before its ids stopped showing the visit: a stay begun then keeps it
    assert o.records[0][1]["encounter_token"] == tok("fhir:Encounter", "urn:visit|V123")


def test_a_subject_names_the_same_patient_however_its_reference_is_written() -> None:
    def token(subject: dict, **extra: object) -> str | Refused:
        [(_, o, _)] = run(observation("8867-4", valueQuantity=quantity(72, "/min"),
                                      subject=subject, **extra))  # fmt: skip
        return o.records[0][1]["patient_token"] if isinstance(o, Mapped) else o

    plain = token({"reference": "Patient/p1"})
    assert plain == token({"reference": "https://ehr.example.org/fhir/Patient/p1"})
    assert plain == token({"reference": "Patient/p1/_history/3"})
    mrn = {"system": "urn:mrn", "value": "A1"}
    contained = [{"resourceType": "Patient", "id": "pat", "identifier": [mrn]}]
    by_mrn = token({"identifier": mrn})
    assert token({"reference": "#pat"}, contained=contained) == by_mrn
    other = [{"resourceType": "Patient", "id": "pat", "identifier": [mrn | {"value": "B2"}]}]
    assert token({"reference": "#pat"}, contained=other) != by_mrn
    # a contained Patient's medical record number, whatever order its identifiers come in
    # (Synthea's id first), not a retired one (use old) nor one of no system
    mr = {"type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                               "code": "MR"}]}} | mrn  # fmt: skip
    for first in (
        {"system": "https://github.com/synthetichealth/synthea", "value": "a1b2c3"},
        {"use": "old", "system": "urn:mrn", "value": "OLD-111"},
        {"value": "12345"},
        {"type": {"coding": [{"code": "SS"}]}, "system": "http://hl7.org/fhir/sid/us-ssn",
         "value": "999-99-9999"},
    ):  # fmt: skip
        patient = {"resourceType": "Patient", "id": "pat", "identifier": [first, mr]}
        assert token({"reference": "#pat"}, contained=[patient]) == by_mrn, first
    # whichever coding of its type comes first (Cerner's code set 4 beside v2-0203)
    local = {"system": "https://fhir.cerner.com/ec2458f2/codeSet/4", "code": "10"}
    mr["type"]["coding"].insert(0, local)
    federated = {"type": {"coding": [local | {"code": "2553236771"}]},
                 "system": "urn:oid:2.16.840.1.113883.3.13.6", "value": "F-77"}  # fmt: skip
    patient = {"resourceType": "Patient", "id": "pat", "identifier": [federated, mr]}
    assert token({"reference": "#pat"}, contained=[patient]) == by_mrn
    for not_a_patient in ("Device/monitor-7", "Group/ward-4"):
        refused = token({"reference": not_a_patient})
        assert isinstance(refused, Refused) and refused.reason_code == "not_a_patient"


def test_a_bundle_entry_subject_resolves_against_the_bundle_full_urls() -> None:
    patient_url = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    hr = observation(
        "8867-4", valueQuantity=quantity(72, "/min"), subject={"reference": patient_url}
    )
    patient = {"resourceType": "Patient", "identifier": [{"system": "urn:mrn", "value": "A1"}]}
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": patient_url, "resource": patient},
            {"fullUrl": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0", "resource": hr},
        ],
    }
    outcomes = [o for _, o, _ in run(bundle)]
    assert isinstance(outcomes[0], fhir_r4.Context)  # the Patient: read for the Observation
    assert isinstance(outcomes[1], Mapped)
    [(_, by_mrn, _)] = run(hr | {"subject": {"identifier": patient["identifier"][0]}})
    assert isinstance(by_mrn, Mapped)
    assert outcomes[1].records[0][1]["patient_token"] == by_mrn.records[0][1]["patient_token"]
    [(_, alone, _)] = run(hr)  # the same entry outside its Bundle names no one
    assert isinstance(alone, Refused) and alone.reason_code == "missing_field"


def test_an_encounter_whose_patient_is_in_its_bundle_carries_their_age_and_sex() -> None:
    """Age in whole years on the day the Encounter began (the birthday during the stay changes
    nothing) and sex, from the Patient the subject names in the Bundle: by urn:uuid, by a
    literal reference matching one entry's fullUrl, by the subject's identifier; never the
    birth date. An Encounter sent alone gives neither, and so does a reference two servers'
    Patients in one Bundle match."""
    enc = encounter(
        ("4E", "2026-02-01T08:00:00Z", "2026-03-01T09:00:00Z"),
        ("ICU", "2026-03-01T09:00:00Z", None),
    ) | {"period": {"start": "2026-02-01T08:00:00+01:00"}}
    patient = {
        "resourceType": "Patient",
        "id": "p1",
        "identifier": [{"system": "urn:mrn", "value": "A1"}],
        "birthDate": "1960-03-01",
        "gender": "female",
    }
    by_url = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [
            {"fullUrl": "https://ehr.example/fhir/Patient/p1", "resource": patient},
            {"fullUrl": "https://ehr.example/fhir/Encounter/e1", "resource": enc},
        ],
    }
    by_uuid = copy.deepcopy(by_url)
    by_uuid["entry"][0]["fullUrl"] = "urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a"
    by_uuid["entry"][1]["resource"]["subject"] = {"reference": by_uuid["entry"][0]["fullUrl"]}
    by_identifier = copy.deepcopy(by_url)
    by_identifier["entry"][1]["resource"]["subject"] = {"identifier": patient["identifier"][0]}
    for bundle in (by_url, by_uuid, by_identifier):
        mapped = [o for _, o, _ in run(bundle) if isinstance(o, Mapped)]
        [records] = [[r for _, r in o.records] for o in mapped]
        assert [(r["event_type"], r["age_years"], r["female"]) for r in records] == [
            ("admit", 65.0, True),
            ("transfer", 65.0, True),  # 66 on 1 March, during the stay: 65 as admitted
        ]
        assert "1960" not in repr(records)
    # the visit over (a bulk export of an old one): no age, its start's is not the patient's now
    over = copy.deepcopy(by_url)
    over["entry"][1]["resource"] |= {"status": "finished"}
    over["entry"][1]["resource"]["location"][1]["period"]["end"] = "2026-03-02T12:00:00Z"
    [mapped_over] = [o for _, o, _ in run(over) if isinstance(o, Mapped)]
    assert {(r["age_years"], r["female"]) for _, r in mapped_over.records} == {(None, True)}
    # by its very fullUrl among two servers' Patient/p1, and by a conditional reference
    lab = patient | {"birthDate": "1930-01-01", "gender": "male"}
    exact = copy.deepcopy(by_url)
    exact["entry"].insert(0, {"fullUrl": "https://lab.example/fhir/Patient/p1", "resource": lab})
    exact["entry"][2]["resource"]["subject"] = {"reference": "https://ehr.example/fhir/Patient/p1"}
    conditional = copy.deepcopy(by_url)
    conditional["entry"][1]["resource"]["subject"] = {"reference": "Patient?identifier=urn:mrn|A1"}
    for bundle in (exact, conditional):
        [mapped] = [o for _, o, _ in run(bundle) if isinstance(o, Mapped)]
        assert {(r["age_years"], r["female"]) for _, r in mapped.records} == {(65.0, True)}
    # without period.start: the first location's start as written (a newborn's first night)
    newborn = copy.deepcopy(by_url)
    newborn["entry"][0]["resource"] |= {"birthDate": "2026-03-01"}
    del newborn["entry"][1]["resource"]["period"]
    newborn["entry"][1]["resource"]["location"] = [
        {"location": {"display": "NICU"}, "status": "active",
         "period": {"start": "2026-03-01T00:45:00+01:00"}}
    ]  # fmt: skip
    [mapped] = [o for _, o, _ in run(newborn) if isinstance(o, Mapped)]
    assert {r["age_years"] for _, r in mapped.records} == {0.0}
    [(_, alone, _)] = run(enc)
    assert isinstance(alone, Mapped)
    assert {(r["age_years"], r["female"]) for _, r in alone.records} == {(None, None)}
    two_servers = copy.deepcopy(by_url)
    lab = patient | {"birthDate": "1930-01-01", "gender": "male"}
    two_servers["entry"].insert(
        0, {"fullUrl": "https://lab.example/fhir/Patient/p1", "resource": lab}
    )
    other = copy.deepcopy(by_url)
    other["entry"][0]["resource"] |= {"birthDate": "2027", "gender": "unknown"}
    for bundle in (two_servers, other):
        [mapped] = [o for _, o, _ in run(bundle) if isinstance(o, Mapped)]
        assert {(r["age_years"], r["female"]) for _, r in mapped.records} == {(None, None)}


def test_bundle_entries_related_to_the_ingested_ones_are_context_and_the_others_refused() -> None:
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"))
    hr |= {"id": "hr1", "subject": {"reference": "https://ehr.example/fhir/Patient/p7"}}
    hr["performer"] = [{"reference": "Practitioner/n4/_history/2"}]
    entries = [
        {"resourceType": "Patient", "id": "p7"},  # the subject, by an absolute reference
        {"resourceType": "Practitioner", "id": "n4"},  # the performer, by a versioned one
        {
            "resourceType": "DiagnosticReport",
            "id": "dr",
            "result": [{"reference": "Observation/hr1"}],
        },
        hr,
        {"resourceType": "Patient", "id": "someone-else"},  # related to nothing here
        {"resourceType": "Medication", "id": "m1"},
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": f"https://ehr.example/fhir/{e['resourceType']}/{e['id']}",
                   "resource": e} for e in entries],
    }  # fmt: skip
    kinds = [type(o).__name__ for _, o, _ in run(bundle)]
    assert kinds == ["Context", "Context", "Context", "Mapped", "Refused", "Refused"]
    refused = [o for _, o, _ in run(bundle) if isinstance(o, Refused)]
    assert {o.reason_code for o in refused} == {"unsupported_resource"}
    alone = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": entries[0]}]}
    [(_, o, _)] = run(alone)  # a Bundle of Patients only: nothing read, refused
    assert isinstance(o, Refused)


def test_the_facility_is_the_drops_own_not_the_service_provider_reference() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None))
    enc["serviceProvider"] = {"reference": "Organization/gh"}
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped) and o.records[0][1]["facility_id"] == "F"


def test_an_effective_period_that_ends_before_it_starts_is_refused() -> None:
    period = {"start": "2026-03-02T07:30:00Z", "end": "2026-03-01T08:00:00Z"}
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"), effectivePeriod=period)
    del hr["effectiveDateTime"]
    [(_, o, _)] = run(hr)
    assert isinstance(o, Refused) and o.reason_code == "bad_period"


def test_a_finished_encounter_that_gives_no_end_is_refused_not_left_in_its_bed() -> None:
    [(_, o, _)] = run(encounter(("4E", "2026-03-01T08:00:00Z", None), status="finished"))
    assert isinstance(o, Refused) and o.reason_code == "missing_field" and "finished" in o.reason


def test_a_single_location_without_a_period_starts_at_the_encounters_start() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None))
    del enc["location"][0]["period"]
    enc["period"] = {"start": "2026-03-01T07:30:00Z"}
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped) and o.records[0][1]["event_time"].minute == 30


def test_a_bed_reserved_in_another_unit_is_no_transfer_but_one_kept_on_leave_is_the_stay() -> None:
    enc = encounter(("ED", "2026-03-01T08:00:00Z", None), ("ICU", "2026-03-01T09:00:00Z", None))
    enc["location"][1]["status"] = "reserved"  # the ICU bed held for the patient still in ED
    [(_, o, _)] = run(enc)
    assert isinstance(o, Mapped) and [r["unit_id"] for _, r in o.records] == ["ED"]
    leave = encounter(("ICU", "2026-03-01T08:00:00Z", "2026-03-02T08:00:00Z"),
                      ("ICU", "2026-03-02T08:00:00Z", None))  # fmt: skip
    leave["location"][1]["status"] = "reserved"
    [(_, kept, _)] = run(leave)
    assert isinstance(kept, Mapped) and [r["event_type"] for _, r in kept.records] == ["admit"]


def test_a_location_named_only_by_an_identifier_is_refused() -> None:
    enc = encounter(("4E", "2026-03-01T08:00:00Z", None))
    enc["location"][0]["location"] = {"identifier": {"system": "urn:loc", "value": "4E"}}
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "missing_field"


@pytest.mark.parametrize("order", [1, -1])
def test_a_panel_keeps_the_ecg_heart_rate_and_the_core_temperature_in_either_order(
    order: int,
) -> None:
    parts = [
        component("8867-4", 132, "/min"),
        component("8889-8", 96, "/min"),
        component("8310-5", 38.4, "Cel"),
        component("8328-7", 36.2, "Cel"),
    ][::order]
    [(_, o, _)] = run(observation("85353-1", component=parts))
    assert isinstance(o, Mapped) and not o.rejected
    [(_, rec)] = o.records
    assert rec["heart_rate_bpm"] == 132 and rec["temp_c"] == pytest.approx(38.4)


def test_a_laboratory_oxygen_saturation_is_a_blood_gass_sao2_and_a_vital_signs_one_spo2() -> None:
    """LOINC 2708-6 is arterial oxygen saturation; FHIR R4's vital-signs profile codes the
    oximeter's SpO2 with it (beside 59408-5). A laboratory Observation of it is a blood gas's."""
    lab = {"coding": [{"system": fhir_r4.CATEGORY_SYSTEM, "code": "laboratory"}]}
    [(_, gas, _)] = run(observation("2708-6", category=[lab], valueQuantity=quantity(89, "%")))
    assert isinstance(gas, Mapped)
    [(topic, rec)] = gas.records
    assert topic == topics.LABS_RESULT.name and rec["sao2_pct"] == 89 and "spo2_pct" not in rec
    [(_, vital, _)] = run(observation("2708-6", valueQuantity=quantity(89, "%")))
    assert isinstance(vital, Mapped)
    [(topic, rec)] = vital.records
    assert topic == topics.VITALS_OBSERVATION.name and rec["spo2_pct"] == 89
    with_flow = observation(
        "2708-6",
        category=[lab],
        valueQuantity=quantity(89, "%"),
        component=[component("3151-8", 2, "L/min")],
    )
    [(_, gas_flow, _)] = run(with_flow)  # the oximetry profile's components are not a gas's
    assert isinstance(gas_flow, Mapped)
    assert [t for t, _ in gas_flow.records] == [topics.LABS_RESULT.name]
    oximetry = observation("2708-6", category=[lab], valueQuantity=quantity(89, "%"))
    oximetry["code"]["coding"].append({"system": "http://loinc.org", "code": "59408-5"})
    [(_, pulse, _)] = run(oximetry)
    assert isinstance(pulse, Mapped) and pulse.records[0][1]["spo2_pct"] == 89


def test_a_resend_keeps_its_records_name_and_a_new_version_of_the_observation_gets_its_own() -> (
    None
):
    """Downstream a record with a name seen before is a duplicate: a preliminary result made
    final, an amended or a corrected one must not be dropped as a copy of the first."""

    def name(**kw: object) -> str:
        [(_, o, _)] = run(observation("8867-4", **{"valueQuantity": quantity(72, "/min"), **kw}))
        assert isinstance(o, Mapped)
        return str(o.records[0][1]["observation_id"])

    final = name()
    assert final == "fhir:Observation/o1" and name() == final  # a resend
    assert name(meta={"versionId": "2"}) == final  # a server's new version of the same
    preliminary = name(status="preliminary")
    corrected = name(status="corrected", valueQuantity=quantity(76, "/min"))
    assert len({final, preliminary, corrected}) == 3
    assert name(status="corrected", valueQuantity=quantity(76, "/min")) == corrected  # resent
    tagged = {"versionId": "3", "tag": [{"code": "reviewed"}]}
    assert name(status="corrected", valueQuantity=quantity(76, "/min"), meta=tagged) == corrected
    assert name(status="corrected", valueQuantity=quantity(78, "/min")) != corrected  # again


def test_a_leap_second_is_read_as_its_minutes_last_millisecond_and_a_false_one_refused() -> None:
    """FHIR R4 dateTime and instant allow second 60 (datatypes.html: `[0-5][0-9]|60`), which
    fhir.resources keeps as text: a leap second was refused `imprecise_time`, "a partial date
    without a time", which it is not. It is read as 23:59:59.999 UTC (records are to the
    millisecond: before the next day, after the rest of its minute); a second 60 not in the
    last minute of a UTC month is no leap second (ITU-R TF.460-6): refused `bad_time`."""
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"))
    last = datetime(2016, 12, 31, 23, 59, 59, 999000, tzinfo=UTC)
    for written in ("2016-12-31T23:59:60Z", "2016-12-31T23:59:60.5Z", "2017-01-01T00:59:60+01:00",
                    "2016-12-31T18:59:60-05:00"):  # fmt: skip
        [(_, o, _)] = run(hr | {"effectiveDateTime": written})
        assert _values(o)["event_time"] == last, written
    [(_, issued, _)] = run(hr | {"issued": "2016-12-31T23:59:60Z"})
    assert _values(issued)["recorded_time"] == last
    june = datetime(2015, 6, 30, 23, 59, 59, 999000, tzinfo=UTC)
    instant = {k: v for k, v in hr.items() if k != "effectiveDateTime"}
    [(_, o, _)] = run(instant | {"effectiveInstant": "2015-06-30T23:59:60Z"})
    assert _values(o)["event_time"] == june
    for written in ("2017-03-01T10:15:60Z", "2016-12-30T23:59:60Z", "2016-12-31T23:59:60+01:00"):
        [(_, o, _)] = run(hr | {"effectiveDateTime": written})
        assert isinstance(o, Refused) and o.reason_code == "bad_time", (written, o)
        assert "second 60" in o.reason
    stay = encounter(("4E", "2016-12-31T23:59:60Z", None))
    [(_, o, _)] = run(stay)
    assert isinstance(o, Mapped) and o.records[0][1]["event_time"] == last


def test_an_effective_timing_is_a_schedule_refused_as_such() -> None:
    """Observation.effective[x] may be a Timing in R4, which "specifies an event that may occur
    multiple times" and records "when things are planned, expected or requested to occur"
    (datatypes.html#Timing): a schedule, not when the value was measured. It was refused
    `missing_field`, "effective time is missing", which sends an operator looking for a
    missing element; it is refused `schedule_not_time`, even with a single event."""
    for timing in (
        {"event": ["2026-03-01T09:30:00Z"]},
        {"repeat": {"frequency": 1, "period": 1, "periodUnit": "d"}},
    ):
        hr = observation("8867-4", valueQuantity=quantity(72, "/min"), effectiveTiming=timing)
        del hr["effectiveDateTime"]
        [(_, o, _)] = run(hr)
        assert isinstance(o, Refused) and o.reason_code == "schedule_not_time", (timing, o)
        assert "schedule" in o.reason


def _values(o: Mapped | Refused) -> dict:
    assert isinstance(o, Mapped), o
    [(_, record)] = o.records
    return record


def test_a_ucum_annotation_means_nothing_so_beats_per_minute_are_per_minute() -> None:
    """UCUM §2.4.1: `{beat}/min` is `/min` (Personal Health Device gateways, `%{Oxygen}`)."""
    for code, unit, field, value in (
        ("8867-4", "{beat}/min", "heart_rate_bpm", 48.0),
        ("8867-4", "{Beats}/min", "heart_rate_bpm", 48.0),
        ("9279-1", "{Breaths}/min", "resp_rate_per_min", 48.0),
        ("59408-5", "%{Oxygen}", "spo2_pct", 48.0),
    ):
        [(_, o, _)] = run(observation(code, valueQuantity=quantity(48, unit)))
        assert _values(o)[field] == value, unit
    [(_, bare, _)] = run(observation("8867-4", valueQuantity=quantity(48, "{beats}")))
    assert isinstance(bare, Refused) and bare.reason_code == "bad_unit"  # no unit is left


def test_a_weight_in_ounces_is_read_in_kilograms() -> None:
    [(_, o, _)] = run(observation("29463-7", valueQuantity=quantity(2896, "[oz_av]")))
    assert _values(o)["weight_kg"] == pytest.approx(82.1, abs=0.01)


def test_a_glasgow_coma_score_or_a_heart_rate_given_as_an_integer_is_read() -> None:
    """FHIR R4 Observation.value[x] includes integer: a score, or a count where the code's
    units are all the field's own; a temperature without its unit is no reading."""
    [(_, gcs, _)] = run(observation("9269-2", valueInteger=9))
    assert _values(gcs)["gcs_total"] == 9
    [(_, hr, _)] = run(observation("8867-4", valueInteger=112))
    assert _values(hr)["heart_rate_bpm"] == 112.0
    [(_, temp, _)] = run(observation("8310-5", valueInteger=38))
    assert isinstance(temp, Refused) and temp.reason_code == "bad_unit"
    panel = observation("85354-9", component=[component("8480-6", 120, "mm[Hg]")])
    panel["component"].append(
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8462-4"}]}, "valueInteger": 70}
    )
    [(_, bp, _)] = run(panel)
    assert (_values(bp)["sbp_mmhg"], _values(bp)["dbp_mmhg"]) == (120.0, 70.0)


def test_an_observation_is_timed_by_its_instant_or_the_end_of_a_period_without_a_start() -> None:
    at = datetime(2026, 3, 1, 9, 45, tzinfo=UTC)
    hr = observation("8867-4", valueQuantity=quantity(70, "/min"))
    del hr["effectiveDateTime"]
    for effective in (
        {"effectiveInstant": "2026-03-01T09:45:00Z"},
        {"effectivePeriod": {"end": "2026-03-01T09:45:00Z"}},
        {"effectivePeriod": {"start": "2026-03-01T09:45:00Z", "end": "2026-03-01T10:00:00Z"}},
    ):
        [(_, o, _)] = run(hr | effective)
        assert _values(o)["event_time"] == at, effective
    [(_, month, _)] = run(hr | {"effectiveDateTime": "2026-03"})
    assert isinstance(month, Refused) and month.reason_code == "imprecise_time"


def test_urine_output_is_charted_at_the_end_of_the_interval_it_was_collected_over() -> None:
    """vitals.observation.v1: urine_output_ml is the volume since the last, at event_time."""
    urine = over_period("9187-6", 45, "mL", "2026-03-01T09:00:00Z", "2026-03-01T10:00:00Z")
    [(_, o, _)] = run(urine)
    assert _values(o)["event_time"] == datetime(2026, 3, 1, 10, 0, tzinfo=UTC)
    assert _values(o)["urine_output_ml"] == 45.0


def _version(n: int, status: str, end: str | None, updated: str) -> dict:
    enc = encounter(
        ("MICU", "2026-03-01T10:00:00Z", "2026-03-02T09:00:00Z" if n > 1 else None),
        *([("6 East", "2026-03-02T09:00:00Z", end)] if n > 1 else []),
        status=status,
    )
    return enc | {"meta": {"versionId": str(n), "lastUpdated": updated}}


def test_a_history_bundle_listed_newest_first_is_applied_oldest_first() -> None:
    """FHIR R4 http.html#history: a history Bundle is "sorted with oldest versions last". Read in
    its order, the admission came first from the last version, recorded three days late."""
    versions = [
        _version(3, "finished", "2026-03-04T15:00:00Z", "2026-03-04T15:05:00Z"),
        _version(2, "in-progress", None, "2026-03-02T09:05:00Z"),
        _version(1, "in-progress", None, "2026-03-01T10:05:00Z"),
    ]
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "entry": [
            {
                "fullUrl": "https://ehr/fhir/Encounter/e1",
                "resource": v,
                "request": {"method": "PUT"},
            }
            for v in versions
        ],
    }
    outcomes = run(bundle)
    assert [label.split(":")[0] for label, _, _ in outcomes] == [
        "Bundle/?#entry2",
        "Bundle/?#entry1",
        "Bundle/?#entry0",
    ]
    first = outcomes[0].result
    assert isinstance(first, Mapped)
    [(_, admit)] = first.records
    assert admit["event_type"] == "admit"
    assert admit["recorded_time"] == datetime(2026, 3, 1, 10, 5, tzinfo=UTC)
    searched = run(bundle | {"type": "searchset"})  # any other Bundle keeps its order
    assert searched[0].label.split(":")[0] == "Bundle/?#entry0"


def _located(reference: str, **location: object) -> dict:
    enc = encounter(("x", "2026-03-01T08:00:00Z", None))
    enc["location"][0]["location"] = {"reference": reference}
    return enc | location


def _unit(o: Mapped | Refused) -> str:
    assert isinstance(o, Mapped), o
    return str(o.records[0][1]["unit_id"])


def test_a_location_is_named_by_the_location_it_refers_to_in_the_bundle_or_the_encounter() -> None:
    """A contained Location or a Bundle entry's (`urn:uuid:`) is named by its `name`, which
    nothing outside the message names; one the message lacks refuses the Encounter (it was
    counted as a unit called `urn:uuid:…`)."""
    west = {"resourceType": "Location", "id": "w", "name": "4 West"}
    contained = _located("#w", contained=[west])
    assert _unit(run(contained)[0].result) == "4 West"
    url = "urn:uuid:2222a8b4-5b8a-4bd3-9c3d-41d6e0f1a7c2"
    enc = _located(url)
    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [{"fullUrl": url, "resource": west}, {"fullUrl": "urn:uuid:e", "resource": enc}],
    }
    assert _unit(run(bundle)[1].result) == "4 West"
    for alone in (enc, _located("#w")):
        [(_, o, _)] = run(alone)
        assert isinstance(o, Refused) and o.reason_code == "missing_field"


def test_a_literal_location_reference_is_one_unit_however_it_is_written() -> None:
    """Relative, absolute or versioned, a reference to Location 3s is `Location/3s`, with or
    without the Location in the Bundle (its name would move the patient between versions)."""
    for reference in (
        "Location/3s",
        "https://ehr.example/fhir/Location/3s",
        "https://ehr.example/fhir/Location/3s/_history/2",
    ):
        assert _unit(run(_located(reference))[0].result) == "Location/3s", reference
    included = {
        "resourceType": "Bundle",
        "type": "searchset",
        "entry": [
            {"fullUrl": "https://ehr/fhir/Encounter/e1", "resource": _located("Location/3s")},
            {
                "fullUrl": "https://ehr/fhir/Location/3s",
                "resource": {"resourceType": "Location", "id": "3s", "name": "3 South"},
            },
        ],
    }
    assert _unit(run(included)[0].result) == "Location/3s"


def test_a_ward_room_and_bed_typed_on_their_included_locations_are_one_ward_and_its_bed() -> None:
    """A search with `_include=Encounter:location`: the levels are on the Location resources
    (R4: Encounter.location.physicalType is "de-normalized from the Location resource").
    Without them, three units began at one instant (refused)."""
    system = "http://terminology.hl7.org/CodeSystem/location-physical-type"
    enc = encounter(
        ("5 North", "2026-03-01T08:00:00Z", None),
        ("Room 512", "2026-03-01T08:00:00Z", None),
        ("Bed 512-B", "2026-03-01T08:00:00Z", None),
    )
    entries = [{"fullUrl": "https://ehr/fhir/Encounter/e1", "resource": enc}]
    for loc, (lid, level) in zip(enc["location"], (("w5", "wa"), ("r5", "ro"), ("b5", "bd")),
                                 strict=True):  # fmt: skip
        loc["location"]["reference"] = f"Location/{lid}"
        location = {
            "resourceType": "Location",
            "id": lid,
            "physicalType": {"coding": [{"system": system, "code": level}]},
        }
        entries.append({"fullUrl": f"https://ehr/fhir/Location/{lid}", "resource": location})
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    o = run(bundle)[0].result
    assert isinstance(o, Mapped)
    [(_, admit)] = o.records
    assert (admit["event_type"], admit["unit_id"], admit["bed_id"]) == (
        "admit",
        "5 North",
        "Bed 512-B",
    )
    [(_, alone, _)] = run(enc)
    assert isinstance(alone, Refused) and alone.reason_code == "bad_period"


def test_a_lower_bound_is_read_as_its_number_and_an_upper_bound_refused() -> None:
    """FHIR R4 Quantity.comparator `>`: above the analyser's range (a lactate in shock), at
    least that; `<` would overstate the value."""
    lactate = observation("2524-7", valueQuantity=quantity(20, "mmol/L") | {"comparator": ">"})
    [(_, o, _)] = run(lactate)
    assert _values(o)["lactate_mmol_l"] == 20.0
    [(_, low, _)] = run(lactate | {"valueQuantity": quantity(0.5, "mmol/L") | {"comparator": "<"}})
    assert isinstance(low, Refused) and low.reason_code == "bad_value"
    fio2 = observation("3150-0", valueQuantity=quantity(60, "%") | {"comparator": ">"})
    [(_, vital, _)] = run(fio2)  # a vital sign's bound: not one value
    assert isinstance(vital, Refused) and "only for a laboratory result" in vital.reason


def _current_only(unit: str, start: str | None, updated: str, status: str = "in-progress") -> dict:
    """A version of Encounter e1 (begun 2026-03-01 08:00) listing one location, where the
    patient is (with its own start, or none), stored at `updated`."""
    enc = encounter((unit, start or "2026-03-01T08:00:00Z", None), status=status)
    if start is None:
        del enc["location"][0]["period"]
    return enc | {"period": {"start": "2026-03-01T08:00:00Z"}, "meta": {"lastUpdated": updated}}


def _census_after(*versions: dict) -> tuple[census.PatientPlacement, list[tuple[str, str]]]:
    """The versions' events through the census reference, in the order a drop sends them."""
    placement = census.PatientPlacement()
    outcomes = []
    for version in versions:
        [(_, o, _)] = run(version)
        assert isinstance(o, Mapped), o
        for _, record in o.records:
            at = codec.epoch_ms(codec.record_time(record))
            status = placement.apply(census.AdtEvent.of(record, at))[0].status
            outcomes.append((record["event_type"], status))
    return placement, outcomes


def test_a_server_that_lists_only_the_current_location_moves_the_patient_at_each_version() -> None:
    """R4 asks for the location history; some servers list where the patient is now. The
    version naming only the ICU sent the admission's id again (a duplicate) and the move was
    lost: the patient stayed in 4E. It carries a transfer there, at the ward's own start."""
    placement, outcomes = _census_after(
        _current_only("4E", "2026-03-01T08:00:00Z", "2026-03-01T08:05:00Z"),
        _current_only("ICU", "2026-03-02T09:00:00Z", "2026-03-02T09:05:00Z"),
        _current_only("ICU", "2026-03-02T09:00:00Z", "2026-03-02T11:00:00Z"),  # another update
    )
    assert placement.place is not None and placement.place.unit_id == "ICU"
    assert outcomes == [
        ("admit", "applied"),
        ("admit", "duplicate"),
        ("transfer", "applied"),
        ("admit", "duplicate"),
        ("transfer", "duplicate"),
    ]


def test_a_location_without_a_period_of_its_own_carries_no_transfer() -> None:
    """meta.lastUpdated is when the version was stored, not when the patient came: read as a
    move, an old encounter stored again (a coding update after a readmission) would take the
    patient back to its ward."""
    for version in (
        _current_only("ICU", None, "2026-03-02T09:05:00Z"),
        _current_only("4E", None, "2026-03-09T09:05:00Z"),  # an old encounter stored again
    ):
        [(_, o, _)] = run(version)
        assert isinstance(o, Mapped)
        assert [r["event_type"] for _, r in o.records] == ["admit"]


def test_a_server_that_lists_the_history_gets_no_extra_event() -> None:
    """Locations with their periods, the first at the encounter's start: the events as
    before (positional ids, one transfer per move)."""
    enc = encounter(
        ("4E", "2026-03-01T08:00:00Z", "2026-03-02T09:00:00Z"),
        ("ICU", "2026-03-02T09:00:00Z", None),
    ) | {
        "period": {"start": "2026-03-01T08:00:00Z"},
        "meta": {"lastUpdated": "2026-03-02T09:05:00Z"},
    }
    first = encounter(("4E", "2026-03-01T08:00:00Z", None)) | {
        "period": {"start": "2026-03-01T08:00:00Z"},
        "meta": {"lastUpdated": "2026-03-01T08:05:00Z"},
    }
    ids = [r["event_id"] for v in (first, enc) for _, r in run(v)[0].result.records]
    assert ids == [
        "fhir:Encounter/e1:0:admit",
        "fhir:Encounter/e1:0:admit",
        "fhir:Encounter/e1:1:transfer",
    ]


def test_a_business_identifier_never_shows_in_a_record_id() -> None:
    """A visit or accession number is an identifier; the ids it names travel in clear."""

    def keyed(namespace: str, ident: str) -> str:
        return hashlib.sha256(f"key|{namespace}|{ident}".encode()).hexdigest()[:32]

    enc = encounter(("4E", "2026-03-01T08:00:00Z", None))
    del enc["id"]
    enc["identifier"] = [{"system": "urn:visit", "value": "V-LM-77"}]
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"))
    del hr["id"]
    hr["identifier"] = [{"system": "urn:accession", "value": "ACC-991"}]
    for resource in (enc, hr):
        [(_, o, _)] = fhir_r4.map_json(resource, keyed, source="t", facility_id="F")
        assert isinstance(o, Mapped)
        shown = json.dumps(o.records, default=str)
        assert "V-LM-77" not in shown and "ACC-991" not in shown


def _observation_versions(*entries: dict) -> dict:
    return {"resourceType": "Bundle", "type": "history", "entry": list(entries)}


def test_an_observation_in_a_history_bundle_is_what_its_newest_version_says() -> None:
    """A history Bundle (newest first) of a heart rate of 38 taken back as entered-in-error, or
    deleted: nothing is published (observation.html: entered-in-error "should never have
    existed"); corrected from 38 to 88: only 88."""
    v1 = observation("8867-4", valueQuantity=quantity(38, "/min"), meta={"versionId": "1"})
    taken_back = v1 | {"status": "entered-in-error", "meta": {"versionId": "2"}}
    corrected = v1 | {"status": "corrected", "valueQuantity": quantity(88, "/min")}
    deleted = {"fullUrl": "https://ehr/fhir/Observation/o1", "request": {"method": "DELETE",
               "url": "Observation/o1/_history/2"}}  # fmt: skip

    def published(bundle: dict) -> list[float]:
        return [r["heart_rate_bpm"] for _, o, _ in run(bundle) if isinstance(o, Mapped)
                for _, r in o.records]  # fmt: skip

    assert published(_observation_versions({"resource": taken_back}, {"resource": v1})) == []
    assert published(_observation_versions(deleted, {"resource": v1})) == []
    assert published(_observation_versions({"resource": corrected}, {"resource": v1})) == [88]
    refused = [o.reason_code for _, o, _ in run(_observation_versions(deleted, {"resource": v1}))]
    assert refused == ["superseded", "no_resource"]  # each entry accounted for
    other = v1 | {"id": "o2", "valueQuantity": quantity(72, "/min")}
    assert published(_observation_versions({"resource": taken_back}, {"resource": other})) == [72]
    assert published(_observation_versions({"resource": v1}, {"resource": v1})) == [38]


def test_an_oxygen_saturation_of_a_fraction_in_percent_is_refused() -> None:
    """SpO2 0.96 "%" (a fraction with the percentage's unit) read as 0.96 % scores as the worst
    saturation there is; 96 % is read."""
    [(_, o, _)] = run(observation("59408-5", valueQuantity=quantity(0.96, "%")))
    assert isinstance(o, Refused) and o.reason_code == "bad_unit"
    [(_, o, _)] = run(observation("59408-5", valueQuantity=quantity(96, "%")))
    assert isinstance(o, Mapped) and o.records[0][1]["spo2_pct"] == 96


def test_a_subject_typed_as_a_device_or_group_is_not_a_patient() -> None:
    for kind in ("Device", "Group", "http://hl7.org/fhir/StructureDefinition/Device"):
        subject = {"type": kind, "identifier": {"system": "urn:serial", "value": "MX450-0042"}}
        [(_, o, _)] = run(observation("8867-4", valueQuantity=quantity(72, "/min"),
                                      subject=subject))  # fmt: skip
        assert isinstance(o, Refused) and o.reason_code == "not_a_patient", kind
    typed = {"type": "Patient", "identifier": {"system": "urn:mrn", "value": "A1"}}
    [(_, o, _)] = run(observation("8867-4", valueQuantity=quantity(72, "/min"), subject=typed))
    assert isinstance(o, Mapped)


def test_a_conditional_subject_reference_names_the_patient_by_its_identifier() -> None:
    """http.html#trules: `Patient?identifier=system|value` in a transaction is the patient with
    that identifier: the same token as a Reference.identifier; the reason of any other search
    does not repeat it (it may hold an MRN)."""

    def subject_of(subject: dict) -> Mapped | Refused:
        [(_, o, _)] = run(observation("8867-4", valueQuantity=quantity(72, "/min"),
                                      subject=subject))  # fmt: skip
        return o

    by_identifier = subject_of({"identifier": {"system": "urn:mrn", "value": "A1"}})
    conditional = subject_of({"reference": "Patient?identifier=urn:mrn|A1"})
    assert isinstance(by_identifier, Mapped) and isinstance(conditional, Mapped)
    token = by_identifier.records[0][1]["patient_token"]
    assert conditional.records[0][1]["patient_token"] == token
    plus = subject_of({"reference": "Patient?identifier=urn:mrn|A%2B1"})
    with_plus = subject_of({"identifier": {"system": "urn:mrn", "value": "A+1"}})
    assert isinstance(plus, Mapped) and isinstance(with_plus, Mapped)
    assert plus.records[0][1]["patient_token"] == with_plus.records[0][1]["patient_token"]
    two = subject_of({"reference": "Patient?identifier=urn:mrn|A1&identifier=urn:mrn|B2"})
    assert isinstance(two, Refused)
    other = subject_of({"reference": "Patient?name=Quixote&birthdate=1970-01-01"})
    assert isinstance(other, Refused) and other.reason_code == "missing_field"
    assert "Quixote" not in other.reason


def test_two_corrections_that_differ_only_in_an_integer_value_are_two_records() -> None:
    gcs = observation("9269-2", status="corrected", valueInteger=8)
    [(_, a, _)], [(_, b, _)] = run(gcs), run(gcs | {"valueInteger": 14})
    assert isinstance(a, Mapped) and isinstance(b, Mapped)
    assert a.records[0][1]["observation_id"] != b.records[0][1]["observation_id"]


def test_a_blood_pressure_under_the_older_panel_code_is_read_from_its_components() -> None:
    parts = [component("8480-6", 142, "mm[Hg]"), component("8462-4", 88, "mm[Hg]")]
    [(_, o, _)] = run(observation("35094-2", component=parts))
    assert isinstance(o, Mapped)
    assert (o.records[0][1]["sbp_mmhg"], o.records[0][1]["dbp_mmhg"]) == (142, 88)


def test_a_panel_whose_members_are_in_the_bundle_is_their_context() -> None:
    """A vital-signs panel grouping Observations by hasMember (observation.html#obsgrouping)
    carries no value: with its members in the Bundle it is their context, not a dead letter; a
    panel whose members are elsewhere is still refused, asking for them."""
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"))
    panel = observation("85353-1", id="panel", hasMember=[{"reference": "Observation/o1"}])
    bundle = {"resourceType": "Bundle", "type": "collection",
              "entry": [{"resource": panel}, {"resource": hr}]}  # fmt: skip
    outcomes = [o for _, o, _ in run(bundle)]
    assert isinstance(outcomes[0], fhir_r4.Context) and isinstance(outcomes[1], Mapped)
    alone = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": panel}]}
    [(_, o, _)] = run(alone)
    assert isinstance(o, Refused) and o.reason_code == "panel_by_reference"


# --- a review of what real servers send ---------------------------------------------------------

LAB = [{"coding": [{"system": fhir_r4.CATEGORY_SYSTEM, "code": "laboratory"}]}]


def test_a_value_whose_unit_and_unit_code_name_two_units_is_refused_not_converted() -> None:
    """FHIR R4 Quantity: `unit` and `code` state one unit; a lactate of 4.5 `mmol/L` coded
    `mg/dL` would be read as 0.5 mmol/L and the hyperlactataemia missed."""
    ucum = "http://unitsofmeasure.org"
    mixed = {"value": 4.5, "unit": "mmol/L", "system": ucum, "code": "mg/dL"}
    [(_, o, _)] = run(observation("2524-7", valueQuantity=mixed, category=LAB))
    assert isinstance(o, Refused) and o.reason_code == "bad_unit"
    assert "'mmol/L' and its code 'mg/dL'" in o.reason
    spelled = {"value": 37.2, "unit": "°C", "system": ucum, "code": "Cel"}  # one unit, two ways
    [(_, t, _)] = run(observation("8310-5", valueQuantity=spelled))
    assert isinstance(t, Mapped) and t.records[0][1]["temp_c"] == 37.2


def test_an_observation_of_a_fetus_or_donor_named_in_focus_is_not_the_patients() -> None:
    hr = observation("8867-4", valueQuantity=quantity(140, "/min"))
    for other in ({"reference": "Patient/fetus1"}, {"reference": "RelatedPerson/donor7"}):
        [(_, fetal, _)] = run(hr | {"focus": [other]})
        assert isinstance(fetal, Refused) and fetal.reason_code == "not_the_subject"
        assert other["reference"].split("/")[1] not in fetal.reason  # names are not printed
    mrn = {"system": "urn:mrn", "value": "A1"}
    for subject, focus in (
        ({"reference": "Patient/p1"}, {"reference": "https://ehr.example/fhir/Patient/p1"}),
        ({"reference": "Patient/p1"}, {"reference": "Patient/p1/_history/3"}),
        ({"identifier": mrn}, {"identifier": mrn}),
        ({"reference": "Patient/p1"}, {"reference": "Specimen/s1"}),  # a thing: still p1's
    ):
        [(_, own, _)] = run(hr | {"subject": subject, "focus": [focus]})
        assert isinstance(own, Mapped), (subject, focus, own)


def test_a_temperature_taken_on_the_skin_is_not_the_body_temperature() -> None:
    skin = {"coding": [{"system": "http://snomed.info/sct", "code": "39937001"}]}
    for site in (skin, {"text": "Skin surface probe"}):
        [(_, o, _)] = run(observation("8310-5", valueQuantity=quantity(34.2, "Cel"),
                                      bodySite=site))  # fmt: skip
        assert isinstance(o, Refused) and o.reason_code == "not_a_vital_sign", site
    oral = {"coding": [{"system": "http://snomed.info/sct", "code": "123851003"}]}
    not_snomed = {"coding": [{"system": "http://loinc.org", "code": "39937001"}]}
    for site in (oral, not_snomed, {"text": "temporal artery (skin surface)"},
                 {"text": "Axillary skin fold"}, {"text": "Body surface"}):  # fmt: skip
        [(_, o, _)] = run(observation("8310-5", valueQuantity=quantity(38.4, "Cel"),
                                      bodySite=site))  # fmt: skip
        assert isinstance(o, Mapped) and o.records[0][1]["temp_c"] == 38.4, site


def test_results_without_ids_that_share_an_accession_identifier_are_each_their_own() -> None:
    """Interfaces often set the order's accession number as every result's identifier."""
    accession = [{"system": "urn:oid:1.2.3.4.lab-accession", "value": "ACC123"}]
    results = []
    for code, value, unit in (("2951-2", 128, "mmol/L"), ("2524-7", 4.2, "mmol/L")):
        result = observation(code, valueQuantity=quantity(value, unit), category=LAB,
                             identifier=accession)  # fmt: skip
        del result["id"]
        [(_, o, _)] = run(result)
        assert isinstance(o, Mapped), o
        results.append(o.records[0][1]["result_id"])
        # a resend that words or orders its codings otherwise keeps its name
        result["code"]["text"] = "said otherwise"
        result["code"]["coding"].insert(0, {"system": "urn:lab", "code": "X1"})
        [(_, again, _)] = run(result)
        assert isinstance(again, Mapped) and again.records[0][1]["result_id"] == results[-1]
    assert len(set(results)) == 2


def test_a_saturation_under_a_category_of_the_system_before_r4_or_as_text_is_a_blood_gas() -> None:
    for category in (
        [
            {
                "coding": [
                    {"system": "http://hl7.org/fhir/observation-category", "code": "laboratory"}
                ]
            }
        ],
        [{"text": "Laboratory"}],
    ):
        [(_, o, _)] = run(observation("2708-6", valueQuantity=quantity(88, "%"), category=category))
        assert isinstance(o, Mapped) and "spo2_pct" not in o.records[0][1], category
        assert o.records[0][1]["sao2_pct"] == 88


def test_a_component_that_is_not_read_is_said_in_a_note_never_dropped_silently() -> None:
    snomed_diastolic = {
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "271650006"}]},
        "valueQuantity": quantity(50, "mm[Hg]"),
    }
    as_text = {"code": component("8480-6", 0, "mm[Hg]")["code"], "valueString": "120"}
    flow_as_text = {"code": component("3151-8", 0, "L/min")["code"], "valueString": "2 L/min"}
    cases = [
        (observation("85354-9", component=[component("8480-6", 85, "mm[Hg]"), snomed_diastolic]),
         "component 1 (271650006 (http://snomed.info/sct)): a code wardflow does not read"),
        (observation("85354-9", component=[as_text, component("8462-4", 80, "mm[Hg]")]),
         "component 0 (8480-6 (http://loinc.org)): its value is a valueString, not a Quantity"),
        (observation("8480-6", valueQuantity=quantity(150, "mm[Hg]"),
                     component=[component("8462-4", 80, "mm[Hg]")]),
         "component 0 (8462-4 (http://loinc.org)): of 8480-6, which is no panel"),
        (observation("59408-5", valueQuantity=quantity(95, "%"), component=[flow_as_text]),
         "component 0 (3151-8 (http://loinc.org)): its value is a valueString"),
    ]  # fmt: skip
    for data, said in cases:
        [(_, o, _)] = run(data)
        assert isinstance(o, Mapped) and o.records and not o.rejected, o
        [note] = o.notes
        assert note.startswith(said), note
    absent = {"code": component("8462-4", 0, "mm[Hg]")["code"],
              "dataAbsentReason": {"text": "cuff failed"}}  # fmt: skip
    [(_, o, _)] = run(observation("8867-4", valueQuantity=quantity(72, "/min"), component=[absent]))
    assert isinstance(o, Mapped) and o.notes == []  # it says itself that it has no value


def test_an_encounter_deleted_in_a_history_bundle_takes_back_the_bed_its_version_placed() -> None:
    """A history Bundle's DELETE of an Encounter (http.html#history: a request, no resource; a
    server's way to remove a mistaken Encounter) was refused `no_resource` and the bed held for
    good; it is now that Encounter's latest version in the Bundle taken back when deleted
    (`response.lastModified`), as `entered-in-error`. Without an earlier version in the Bundle
    (who it placed is unknown) or a time, refused as before."""
    placed, deleted = _deleted_e1(carried=False)
    # another Encounter of a class in no bed between them, or the deletion sent twice: the
    # stay is taken back at the first deletion all the same
    clinic = encounter(("OPD", "2026-03-01T07:00:00Z", None)) | {
        "id": "e2",
        "class": {"code": "AMB"},
    }
    twice = deleted | {"response": {"lastModified": "2026-03-01T10:30:00.250+01:00"}}
    for entries in (
        [deleted, {"resource": clinic}, {"resource": placed}],
        [twice, deleted, {"resource": placed}],
    ):
        voids = [
            r
            for _, o, _ in run(_observation_versions(*entries))
            if isinstance(o, Mapped)
            for _, r in o.records
            if r["event_type"] == "void_encounter"
        ]
        assert [v["event_time"] for v in voids][:1] == [datetime(2026, 3, 1, 9, 30, tzinfo=UTC)]
    outcomes = run(_observation_versions(deleted, {"resource": placed}))
    assert [type(o).__name__ for _, o, _ in outcomes] == ["Mapped", "Mapped"]
    records = [r for _, o, _ in outcomes if isinstance(o, Mapped) for _, r in o.records]
    assert [r["event_type"] for r in records] == ["admit", "void_encounter"]
    assert records[1]["event_time"] == datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    placement = census.PatientPlacement()
    for record in records:
        outcome, deltas = placement.apply(
            census.AdtEvent.of(record, codec.epoch_ms(codec.record_time(record)))
        )
        assert outcome.status == "applied"
    assert placement.place is None and [(d.occupied, d.cancels) for d in deltas] == [(-1, 1)]
    # not read (as before) without an earlier version, without an instant, of a class in no
    # bed, or when the Encounter is created again after it (its admission keeps its id: a void
    # would leave the patient in no bed)
    untimed = deleted | {"response": {"status": "204 No Content"}}
    dated = deleted | {"response": {"lastModified": "2026-03-01T09:30Z"}}  # no instant
    ambulatory = placed | {"class": {"code": "AMB"}}
    again = encounter(("5W", "2026-03-01T11:00:00Z", None))
    for bundle in (
        _observation_versions(deleted),
        _observation_versions(untimed, {"resource": placed}),
        _observation_versions(dated, {"resource": placed}),
        _observation_versions(deleted, {"resource": ambulatory}),
        _observation_versions({"resource": again}, deleted, {"resource": placed}),
    ):
        i = next(n for n, e in enumerate(bundle["entry"]) if "request" in e)
        [gone] = [o for label, o, _ in run(bundle) if label.endswith(f"#entry{i}")]
        assert isinstance(gone, Refused) and gone.reason_code == "no_resource"


def test_urine_output_charted_over_hours_is_read_at_the_periods_end() -> None:
    """A catheter bag emptied every 4-8 hours on a ward: the volume since the last charting
    (vitals.observation.v1), timed at its period's end, not a summary refused; a vital sign over
    the same period still is."""
    [(_, o, _)] = run(
        over_period("9187-6", 180, "mL", "2026-03-01T06:00:00Z", "2026-03-01T10:00:00Z")
    )
    assert isinstance(o, Mapped)
    [(_, record)] = o.records
    assert record["urine_output_ml"] == 180
    assert record["event_time"] == datetime(2026, 3, 1, 10, tzinfo=UTC)
    [(_, hr, _)] = run(
        over_period("8867-4", 72, "/min", "2026-03-01T06:00:00Z", "2026-03-01T10:00:00Z")
    )
    assert isinstance(hr, Refused) and hr.reason_code == "not_a_point_measurement"


def test_a_panel_with_urine_output_and_a_point_vital_is_timed_as_one_point_reading() -> None:
    """Urine output beside a heart rate is no volume over an interval alone: the period must be
    a point (as the heart rate's), and the reading is timed at its start, as a point vital's."""
    parts = [component("9187-6", 40, "mL"), component("8867-4", 96, "/min")]
    panel = observation("85353-1", component=parts)
    del panel["effectiveDateTime"]
    half_hour = {"start": "2026-03-01T09:00:00Z", "end": "2026-03-01T09:30:00Z"}
    [(_, o, _)] = run(panel | {"effectivePeriod": half_hour})
    assert isinstance(o, Mapped)
    [(_, record)] = o.records
    assert (record["urine_output_ml"], record["heart_rate_bpm"]) == (40, 96)
    assert record["event_time"] == datetime(2026, 3, 1, 9, tzinfo=UTC)
    four_hours = {"start": "2026-03-01T06:00:00Z", "end": "2026-03-01T10:00:00Z"}
    [(_, summary, _)] = run(panel | {"effectivePeriod": four_hours})
    assert isinstance(summary, Refused) and summary.reason_code == "not_a_point_measurement"


def test_a_blood_pressure_panel_with_its_components_and_members_is_read_from_its_components() -> (
    None
):
    """R4 lets a panel carry `component` values and `hasMember` references at once: its
    components are a reading (84/48 was refused `panel_by_reference`); one with members only
    is still refused."""
    parts = [component("8480-6", 84, "mm[Hg]"), component("8462-4", 48, "mm[Hg]")]
    members = [{"reference": "Observation/hr1"}]
    [(_, o, _)] = run(observation("85354-9", component=parts, hasMember=members))
    assert isinstance(o, Mapped)
    assert o.records[0][1]["sbp_mmhg"] == 84
    [(_, bare, _)] = run(observation("85354-9", hasMember=members))
    assert isinstance(bare, Refused) and bare.reason_code == "panel_by_reference"


def test_an_encounter_in_a_history_bundle_takes_its_patients_newest_version() -> None:
    """A history Bundle lists the newest version first: the Patient's birth date corrected from
    1930 to 1960 and their gender from unknown to female since the Encounter's first version give
    both Encounter versions the age and sex of the Patient as the server holds it now."""
    url = "https://ehr.example/fhir/Patient/p1"
    old = {"resourceType": "Patient", "id": "p1", "birthDate": "1930-05-01", "gender": "unknown"}
    old["meta"] = {"versionId": "1"}
    now = old | {"birthDate": "1960-05-01", "gender": "female", "meta": {"versionId": "2"}}
    first = encounter(("4E", "2026-02-01T08:00:00Z", None)) | {"meta": {"versionId": "1"}}
    moved = encounter(
        ("4E", "2026-02-01T08:00:00Z", "2026-02-02T08:00:00Z"),
        ("ICU", "2026-02-02T08:00:00Z", None),
    ) | {"meta": {"versionId": "2"}}
    for e in (first, moved):
        e |= {"period": {"start": "2026-02-01T08:00:00Z"}, "subject": {"reference": "Patient/p1"}}
    enc_url = "https://ehr.example/fhir/Encounter/e1"
    bundle = _observation_versions(
        {"fullUrl": url, "resource": now},
        {"fullUrl": enc_url, "resource": moved},
        {"fullUrl": enc_url, "resource": first},
        {"fullUrl": url, "resource": old},
    )
    records = [r for _, o, _ in run(bundle) if isinstance(o, Mapped) for _, r in o.records]
    assert records and {(r["age_years"], r["female"]) for r in records} == {(65.0, True)}


def test_a_patient_listed_twice_in_a_bundle_is_its_newest_version() -> None:
    """FHIR R4 bdl-7 lets any Bundle list a fullUrl twice with different versions, in any order:
    the greater versionId, else the later lastUpdated, else (history aside) the last listed."""
    url = "https://ehr.example/fhir/Patient/p1"
    old = {"resourceType": "Patient", "id": "p1", "birthDate": "1930-05-01", "gender": "unknown"}
    now = old | {"birthDate": "1960-05-01", "gender": "female"}
    enc = encounter(("4E", "2026-02-01T08:00:00Z", None)) | {
        "period": {"start": "2026-02-01T08:00:00Z"},
        "subject": {"reference": "Patient/p1"},
    }
    v2, v10 = old | {"meta": {"versionId": "2"}}, now | {"meta": {"versionId": "10"}}
    jan1 = old | {"meta": {"lastUpdated": "2026-01-01T00:00:00Z"}}
    jan2 = now | {"meta": {"lastUpdated": "2026-01-02T00:00:00+01:00"}}
    odd = old | {"meta": {"versionId": "²"}}  # a digit to str.isdigit, not to int()
    listings = [[v2, v10], [v10, v2], [jan1, jan2], [jan2, jan1], [old, now], [odd, v10]]
    for kind in ("collection", "transaction", "searchset"):
        for listed in listings:
            bundle = {
                "resourceType": "Bundle",
                "type": kind,
                "entry": [
                    *({"fullUrl": url, "resource": r} for r in listed),
                    {"fullUrl": "https://ehr.example/fhir/Encounter/e1", "resource": enc},
                ],
            }
            records = [r for _, o, _ in run(bundle) if isinstance(o, Mapped) for _, r in o.records]
            got = {(r["age_years"], r["female"]) for r in records}
            assert got == {(65.0, True)}, (kind, [r.get("meta") for r in listed])


def test_a_modifier_extension_on_an_encounter_location_refuses_the_encounter() -> None:
    """FHIR R4 BackboneElement.modifierExtension "modifies the understanding of the element in
    which it is contained", and "applications processing a resource are required to check for
    modifier extensions" (backboneelement-definitions.html): an Encounter's location history is
    what the census is moved by, so a location entry a sender qualifies in a way not understood
    here (a bed never occupied) refuses the Encounter; it was read as a transfer."""
    flag = [{"url": "https://ehr.example.org/fhir/never-occupied", "valueBoolean": True}]
    enc = encounter(
        ("ED", "2026-03-01T08:00:00Z", "2026-03-01T10:00:00Z"), ("4E", "2026-03-01T10:00:00Z", None)
    )
    enc["location"][1]["modifierExtension"] = flag
    [(_, o, _)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "unsupported_modifier"
    assert "location 1" in o.reason and "never-occupied" in o.reason
    enc["location"][1]["extension"] = enc["location"][1].pop("modifierExtension")  # no modifier
    [(_, read, _)] = run(enc)
    assert isinstance(read, Mapped) and len(read.records) == 2


def test_a_searchs_own_outcome_is_its_bundles_context_not_a_refused_resource() -> None:
    """FHIR R4 Bundle.entry.search.mode `outcome`: an OperationOutcome that gives "additional
    information about the processing of a search" (the specification's bundle-search-warning;
    servers add one to a page of results, or send it alone on an empty one) is about the
    search, not a resource sent to be ingested: it was dead-lettered `unsupported_resource`.
    Its issues are said by severity and code, never by their text (here an MRN)."""
    warning = {
        "resourceType": "OperationOutcome",
        "id": "warning",
        "issue": [
            {
                "severity": "warning",
                "code": "not-found",
                "details": {"text": "There is no matching patient for MRN 123456"},
            }
        ],
    }
    hr = observation("8867-4", valueQuantity=quantity(72, "/min"))
    outcome: dict[str, object] = {"resource": warning, "search": {"mode": "outcome"}}
    for results in ([{"resource": hr, "search": {"mode": "match"}}], []):
        bundle = {
            "resourceType": "Bundle",
            "id": "bundle-search-warning",
            "type": "searchset",
            "entry": [*results, outcome],
        }
        *read, (label, o, _) = run(bundle)
        assert [type(r.result).__name__ for r in read] == ["Mapped"] * len(results)
        assert isinstance(o, fhir_r4.Context), o
        assert label.endswith("OperationOutcome/warning")
        assert "warning not-found" in o.reason and "123456" not in o.reason
    # an OperationOutcome not given as the search's own is refused, as before
    outcome["search"] = {"mode": "match"}
    [(_, o, _)] = run(bundle)
    assert isinstance(o, Refused) and o.reason_code == "unsupported_resource"


def test_a_search_outcome_is_context_only_in_a_searchset_and_never_says_free_text() -> None:
    """FHIR R4 bdl-2: `search.mode` is only for a searchset's entries, so an OperationOutcome
    marked the search's outcome in any other Bundle was read as context; it is refused
    `unsupported_resource` as any OperationOutcome sent here. Its issues are said by severity
    and code only where each is a code (`^[a-z-]{1,40}$`), else `?`: a server that puts text in
    `issue.code` or `issue.severity` (here a name and an MRN) had it in the context's reason."""
    text = "no patient JOHN SMITH MRN 123456"
    warning = {
        "resourceType": "OperationOutcome",
        "id": "w",
        "issue": [
            {
                "severity": "warning",
                "code": "No patient JOHN SMITH MRN 123456",
                "diagnostics": text,
            },
            {"severity": f"error: {text}", "code": "not-found", "diagnostics": text},
            {"severity": "information", "code": "informational"},
        ],
    }
    entry = {"resource": warning, "search": {"mode": "outcome"}}
    [(_, o, _)] = run({"resourceType": "Bundle", "type": "searchset", "entry": [entry]})
    assert isinstance(o, fhir_r4.Context), o
    assert "SMITH" not in o.reason and "123456" not in o.reason, o.reason
    assert "warning ?" in o.reason and "? not-found" in o.reason, o.reason
    assert "information informational" in o.reason, o.reason
    for kind in ("collection", "transaction", "batch", "history", "document"):
        [(_, o, _)] = run({"resourceType": "Bundle", "type": kind, "entry": [entry]})
        assert isinstance(o, Refused) and o.reason_code == "unsupported_resource", (kind, o)


def test_a_deletion_that_carries_its_resource_is_not_read_as_a_value() -> None:
    """A Bundle entry whose request is a DELETE (FHIR R4 http.html#delete, in a transaction, a
    batch or a history) takes its resource away, and some senders still put the resource in the
    entry: a heart rate of 38 so deleted was published as a reading. It is refused `retracted`,
    as an ORU's result taken back (OBX-11 D); in a history Bundle an Encounter deleted so takes
    back the stay its version placed, as a deletion without the resource does."""
    hr = observation("8867-4", valueQuantity=quantity(38, "/min"), meta={"versionId": "1"})
    delete = {"method": "DELETE", "url": "Observation/o1"}
    for kind in ("transaction", "batch"):
        entry: dict[str, object] = {"resource": hr, "request": delete}
        bundle = {"resourceType": "Bundle", "type": kind, "entry": [entry]}
        [(_, o, _)] = run(bundle)
        assert isinstance(o, Refused) and o.reason_code == "retracted", o
        entry["resource"] = ["not", "a", "resource"]  # refused, never a crash
        [(_, o, _)] = run(bundle)
        assert isinstance(o, Refused) and o.reason_code == "unsupported_resource", o
    gone = {"resource": hr, "request": delete, "response": {"lastModified": "2026-03-01T10:00:00Z"}}
    timed = hr | {"meta": {"versionId": "1", "lastUpdated": "2026-03-01T09:31:00Z"}}
    versions = run(_observation_versions(gone, {"resource": timed}))  # newest first
    assert not [o for _, o, _ in versions if isinstance(o, Mapped)]
    placed, deleted = _deleted_e1()
    outcomes = run(_observation_versions(deleted, {"resource": placed}))
    records = [r for _, o, _ in outcomes if isinstance(o, Mapped) for _, r in o.records]
    assert [r["event_type"] for r in records] == ["admit", "void_encounter"]


def test_a_history_bundle_is_read_newest_first_even_where_a_deletion_looks_older() -> None:
    """FHIR R4 http.html#history lists a resource's newest version first. A deletion whose
    response.lastModified is given to the second looks older than the version it deleted at
    10:00:00.400: a Bundle read by such comparisons rather than by its order was read the other
    way round, every resource in it, so the deleted heart rate of 38 was published and an
    Encounter's admission sent with its deletion refused (the bed held for good). Read newest
    first, nothing is published for the reading and the stay is taken back."""
    v1 = observation(
        "8867-4",
        valueQuantity=quantity(38, "/min"),
        meta={"versionId": "1", "lastUpdated": "2026-03-01T10:00:00.400Z"},
    )
    deleted: dict[str, object] = {
        "fullUrl": "https://ehr/fhir/Observation/o1",
        "request": {"method": "DELETE", "url": "Observation/o1"},
        "response": {"status": "204", "lastModified": "2026-03-01T10:00:00Z"},
    }
    taken_back = observation(
        "8867-4",
        id="o2",
        valueQuantity=quantity(40, "/min"),
        effectiveDateTime="2026-03-01T09:40:00Z",
        status="entered-in-error",
    )
    o2 = taken_back | {"status": "final"}
    listings: list[list[dict[str, object]]] = [
        [deleted, {"resource": v1}],
        [{"resource": taken_back}, deleted, {"resource": o2}, {"resource": v1}],
    ]
    for entries in listings:
        outcomes = run(_observation_versions(*entries))
        assert not [o for _, o, _ in outcomes if isinstance(o, Mapped)], outcomes
    placed, gone = _deleted_e1(carried=False, updated="08:05:00.300Z", deleted="08:05:00Z")
    outcomes = run(_observation_versions(gone, {"resource": placed}))
    records = [r for _, o, _ in outcomes if isinstance(o, Mapped) for _, r in o.records]
    assert [r["event_type"] for r in records] == ["admit", "void_encounter"]
    assert _each_applied(records).place is None


def _each_applied(records: list[dict[str, Any]]) -> census.PatientPlacement:
    """The census reference after `records`, each of which it applied."""
    placement = census.PatientPlacement()
    for record in records:
        at = codec.epoch_ms(codec.record_time(record))
        assert placement.apply(census.AdtEvent.of(record, at))[0].status == "applied"
    return placement


def _deleted_e1(
    *, carried: bool = True, updated: str = "08:05:00Z", deleted: str = "09:30:00Z"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Encounter/e1 in 4E (version 1, updated at `updated` on 1 March 2026), and a history
    entry deleting it at `deleted`, which carries it where `carried`."""
    placed = encounter(("4E", "2026-03-01T08:00:00Z", None))
    placed["meta"] = {"versionId": "1", "lastUpdated": f"2026-03-01T{updated}"}
    entry = {
        "fullUrl": "https://ehr/fhir/Encounter/e1",
        "request": {"method": "DELETE", "url": "Encounter/e1"},
        "response": {"status": "204 No Content", "lastModified": f"2026-03-01T{deleted}"},
    }
    return placed, {**entry, "resource": placed} if carried else entry


def test_a_deleted_encounter_alone_in_a_history_bundle_takes_its_stay_back() -> None:
    """A history Bundle (a `_since` window) whose only entry deletes Encounter/e1 and carries
    the version deleted (IBM/LinuxForHealth FHIR did, LinuxForHealth/FHIR#2026): with no older
    version in the Bundle, the carried one says whose stay it was. It was refused `retracted`
    and no void sent, the bed held for good. A carried resource that is not the one the
    request deletes says nothing of it."""
    placed, gone = _deleted_e1()
    [(_, admitted, _)] = run(placed)
    [(_, o, _)] = run(_observation_versions(gone))
    assert isinstance(admitted, Mapped) and isinstance(o, Mapped), o
    records = [r for _, r in admitted.records] + [r for _, r in o.records]
    assert [r["event_type"] for r in records] == ["admit", "void_encounter"]
    assert _each_applied(records).place is None
    for url in ("Encounter/e2", "Observation/e1", ""):  # not the resource it carries
        other = gone | {"request": {"method": "DELETE", "url": url}}
        [(_, o, _)] = run(_observation_versions(other))
        assert isinstance(o, Refused) and o.reason_code == "retracted", (url, o)


def test_a_deletion_of_a_kind_not_ingested_is_context_and_resolves_no_reference() -> None:
    """`retracted` is for the kinds wardflow ingests (an Encounter, an Observation): a deleted
    Patient or Location carrying its resource was a new dead letter. It is read as any entry of
    its kind (context where the Bundle's resources refer to it, else `unsupported_resource`),
    and a reference does not resolve to it: the admitted patient had the deleted Patient's age
    and sex. The `retracted` reason is right for an Encounter too (no value)."""
    url = "https://ehr/fhir/Patient/p1"
    patient = {"resourceType": "Patient", "id": "p1", "birthDate": "1960-05-01", "gender": "female"}
    stay = encounter(("4E", "2026-03-01T08:00:00Z", None))
    for method, demographics in (("PUT", (65.0, True)), ("DELETE", (None, None))):
        bundle = {
            "resourceType": "Bundle",
            "type": "transaction",
            "entry": [
                {"fullUrl": url, "resource": patient, "request": {"method": method, "url": url}},
                {"resource": stay, "request": {"method": "PUT", "url": "Encounter/e1"}},
            ],
        }
        (_, p, _), (_, o, _) = run(bundle)
        assert isinstance(p, fhir_r4.Context), (method, p)
        assert isinstance(o, Mapped), (method, o)
        [(_, record)] = o.records
        assert (record["age_years"], record["female"]) == demographics, method
    # a history Bundle: a Patient deleted at its newest entry resolves to none of its versions
    removal = {"fullUrl": url, "request": {"method": "DELETE", "url": "Patient/p1"}}
    again = patient | {"birthDate": "1950-05-01"}
    for listed, demographics in (
        ([removal, {"fullUrl": url, "resource": patient}], (None, None)),
        ([{"fullUrl": url, "resource": again}, removal, {"resource": patient}], (75.0, True)),
    ):
        outcomes = run(_observation_versions({"resource": stay}, *listed))
        records = [r for _, o, _ in outcomes if isinstance(o, Mapped) for _, r in o.records]
        assert [(r["age_years"], r["female"]) for r in records] == [demographics], listed
    ward = {"resourceType": "Location", "id": "l1", "name": "4E"}
    deleted = {"resource": ward, "request": {"method": "DELETE", "url": "Location/l1"}}
    [(_, o, _)] = run({"resourceType": "Bundle", "type": "batch", "entry": [deleted]})
    assert isinstance(o, Refused) and o.reason_code == "unsupported_resource", o
    deleted = {"resource": stay, "request": {"method": "DELETE", "url": "Encounter/e1"}}
    [(_, o, _)] = run({"resourceType": "Bundle", "type": "batch", "entry": [deleted]})
    assert isinstance(o, Refused) and o.reason_code == "retracted", o
    assert "value" not in o.reason and "taken back" in o.reason, o.reason


def test_every_refusal_reason_the_fhir_mapping_gives_is_listed_in_the_readme() -> None:
    """The README's list of refusal reasons is what an operator reads a dead letter by: it
    lacked `superseded`, `conflicting_value`, `no_value`, `planned`, `unmappable` and
    `retracted`, each given by fhir_r4 (a literal `Refused` code; a status refused as itself,
    `entered_in_error`, is listed by hand)."""
    source = Path(fhir_r4.__file__).read_text()
    given = {
        node.args[0].value
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Call)
        and getattr(node.func, "id", None) == "Refused"
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    }
    assert {"retracted", "superseded", "no_resource"} <= given  # the walk finds them
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    listed = readme[readme.index("Refusal reasons: `entered_in_error`") :]
    listed = listed[: listed.index("Not handled (from a review)")]
    assert sorted(r for r in given if f"`{r}`" not in listed) == []


def test_an_acvpu_answer_named_by_its_snomed_full_name_is_read_and_a_conflicting_text_refused() -> (
    None
):
    """An ACVPU answer's text in SNOMED CT's fully specified name, its semantic tag after it
    (`Mentally alert (finding)`), named no level: a text-only answer was refused, and beside a
    code (248234008, Mentally alert) a text naming another level (`Acute confusion (finding)`)
    went unread, the code read alone as Alert. The name is read as its level (acvpu.level):
    the first is read as A, the second refused, its two parts naming two levels."""
    sct = "http://snomed.info/sct"
    text_only = observation(
        "1104441000000107", valueCodeableConcept={"text": "Mentally alert (finding)"}
    )
    [(_, o, _)] = run(text_only)
    assert isinstance(o, Mapped), o
    assert o.records[0][1]["acvpu"] == "A"
    conflicting = observation(
        "1104441000000107",
        valueCodeableConcept={
            "coding": [{"system": sct, "code": "248234008"}],
            "text": "Acute confusion (finding)",
        },
    )
    [(_, o, _)] = run(conflicting)
    assert isinstance(o, Refused) and o.reason_code == "bad_value", o
