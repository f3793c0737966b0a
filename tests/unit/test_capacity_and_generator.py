from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from jobs.feeds import adt_generator
from schemas import codec
from schemas.capacity import Capacity
from udfs.census import AdtEvent, PatientPlacement, check_unit


def test_capacity_sums_units_into_facilities_and_checks_its_thresholds() -> None:
    cap = Capacity.from_dict({"facilities": {"H": {"ICU": 10, "W": 30}}})
    assert cap.facility_beds("H") == 40 and cap.thresholds_pct == (85.0, 92.0, 100.0)
    assert Capacity.from_dict(cap.to_dict()) == cap
    with pytest.raises(ValueError, match="ascending"):
        Capacity.from_dict({"facilities": {"H": {"W": 1}}, "surge_thresholds_pct": [95, 90, 99]})
    with pytest.raises(ValueError, match="reserved"):
        Capacity.from_dict({"facilities": {"H": {"ALL": 1}}})


@pytest.mark.parametrize(
    "text",
    [
        '{"facilities": {"north": {"ICU": 20, "4B": 32}, "south": {"ICU": 8}, "north": {"5": 28}}}',
        '{"facilities": {"north": {"ICU": 20, "ICU": 24}}}',
    ],
)
def test_a_capacity_file_naming_a_facility_or_unit_twice_is_refused_not_half_read(
    text: str, tmp_path: Path
) -> None:
    path = tmp_path / "capacity.json"
    path.write_text(text)
    with pytest.raises(ValueError, match="named twice"):
        Capacity.load(path)


def test_events_placing_a_patient_in_an_unconfigured_unit_are_refused() -> None:
    cap = Capacity.from_dict({"facilities": {"H": {"ICU": 10}}})
    e = AdtEvent("e", "transfer", "H", "NOPE", None, 0)
    refusal = check_unit(e, cap)
    assert refusal is not None and refusal.status == "unknown_unit"
    assert check_unit(e._replace(unit_id="ICU"), cap) is None
    assert check_unit(e._replace(event_type="discharge"), cap) is None


def test_both_halves_of_a_merge_naming_an_unconfigured_unit_are_refused() -> None:
    """Were only the survivor's `merged_in` refused, the merged record's `merged_away` would
    free its bed and the patient leave the census; refused together, the bed is kept."""
    cap = Capacity.from_dict({"facilities": {"H": {"ICU": 10}}})
    for kind in ("merged_away", "merged_in"):
        refusal = check_unit(AdtEvent("e", kind, "H", "ICU-POD", None, 0), cap)
        assert refusal is not None and refusal.status == "unknown_unit"


def test_generated_traffic_is_consistent_and_near_its_target_occupancy() -> None:
    plan = adt_generator.Plan(facilities=2, days=7, seed=3)
    events = adt_generator.events(plan)
    cap = adt_generator.capacity(2)
    patients: dict[str, PatientPlacement] = {}
    refused: Counter[str] = Counter()
    occupied: Counter[str] = Counter()
    for e in events:
        assert e["unit_id"] is None or (e["facility_id"], e["unit_id"]) in cap.units
        event = AdtEvent.of(e, codec.epoch_ms(codec.record_time(e)))
        outcome, deltas = patients.setdefault(e["patient_token"], PatientPlacement()).apply(event)
        refused[outcome.status] += outcome.refused
        for d in deltas:
            occupied[d.facility_id] += d.occupied
    assert sum(refused.values()) == 0
    assert [e["event_time"] for e in events] == sorted(e["event_time"] for e in events)
    for fac in ("F01", "F02"):
        assert 0.7 < occupied[fac] / cap.facility_beds(fac) < 1.05, occupied
    kinds = Counter(e["event_type"] for e in events)
    assert kinds["cancel_admit"] and kinds["cancel_discharge"] and kinds["update"]
