from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas import topics
from schemas.interop import fhir_r4
from schemas.interop.hl7v2 import Mapped, Refused

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir_r4"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/fhir_r4 is not here")


def tok(namespace: str, ident: str) -> str:
    return f"{namespace}|{ident}"


def load(name: str) -> dict:
    return json.loads((DATA / name).read_text())


def run(data: dict) -> list[tuple[str, Mapped | Refused]]:
    return fhir_r4.map_json(data, tok, source="t", facility_id="F")


@needs_data
def test_every_example_maps_or_is_refused_with_a_reason() -> None:
    codes: Counter[str] = Counter()
    for path in sorted(DATA.glob("*.json")):
        for label, o in run(json.loads(path.read_text())):
            if isinstance(o, Refused):
                assert o.reason, label
                codes[o.reason_code] += 1
            else:
                assert o.records, label
                codes["mapped"] += 1
    assert codes["mapped"] == 3  # emerg encounter, satO2, map-sitting
    assert codes["cancelled"] == codes["entered_in_error"] == 1
    assert codes["imprecise_time"] == 6  # date-only effective times


@needs_data
def test_the_emergency_encounter_becomes_an_admission_and_two_transfers() -> None:
    [(_, o)] = run(load("encounter-example-emerg.json"))
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
    [(_, o)] = run(enc)
    assert isinstance(o, Mapped)
    last = o.records[-1][1]
    assert last["event_type"] == "discharge"
    assert last["event_time"] == datetime(2017, 2, 3, 0, 0, tzinfo=UTC)


@needs_data
def test_a_blood_pressure_panel_maps_its_components_and_skips_absent_ones() -> None:
    bp = copy.deepcopy(load("observation-example-bloodpressure-dar.json"))
    bp["effectiveDateTime"] = "2012-09-17T08:30:00Z"
    [(_, o)] = run(bp)
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
        [(_, o)] = run(load(name))
        assert isinstance(o, Refused) and o.reason_code == code


def test_a_resource_that_does_not_validate_is_refused() -> None:
    [(_, o)] = run({"resourceType": "Observation", "id": "x", "status": "final"})  # no code
    assert isinstance(o, Refused) and o.reason_code == "invalid_fhir"


def test_ambulatory_encounters_occupy_no_bed() -> None:
    enc = {
        "resourceType": "Encounter",
        "id": "a",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": "Patient/p"},
    }
    [(_, o)] = run(enc)
    assert isinstance(o, Refused) and o.reason_code == "not_inpatient"
