from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from schemas import codec
from schemas.capacity import Capacity
from udfs.census import (
    HISTORY,
    RETENTION_MS,
    AdtEvent,
    PatientPlacement,
    check_unit,
    surge_level,
)


def ev(i: int, kind: str, unit: str | None = None, bed: str | None = None) -> AdtEvent:
    return AdtEvent(f"e{i}", kind, "F", unit, bed, i * 1000)


def occupancy(p: PatientPlacement, events: list[AdtEvent]) -> tuple[dict[str, int], list[str]]:
    units: dict[str, int] = {}
    outcomes = []
    for e in events:
        outcome, deltas = p.apply(e)
        outcomes.append(outcome.status)
        for d in deltas:
            units[d.unit_id] = units.get(d.unit_id, 0) + d.occupied
            assert units[d.unit_id] >= 0
    return units, outcomes


def test_admit_transfer_discharge_moves_one_patient_through_units() -> None:
    units, outcomes = occupancy(
        PatientPlacement(), [ev(1, "admit", "ED"), ev(2, "transfer", "ICU"), ev(3, "discharge")]
    )
    assert units == {"ED": 0, "ICU": 0} and outcomes == ["applied"] * 3


def test_transfer_counts_out_of_the_old_unit_and_into_the_new() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "ED"))
    _, deltas = p.apply(ev(2, "transfer", "ICU"))
    assert [(d.unit_id, d.occupied, d.transfers_out, d.transfers_in) for d in deltas] == [
        ("ED", -1, 1, 0),
        ("ICU", 1, 0, 1),
    ]


def test_a_bed_move_inside_a_unit_changes_no_census() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "ICU", "1"))
    outcome, deltas = p.apply(ev(2, "transfer", "ICU", "2"))
    assert outcome.status == "applied" and deltas == []
    assert p.place is not None and p.place.bed_id == "2"


def test_cancel_admit_frees_the_bed_even_after_a_transfer() -> None:
    units, outcomes = occupancy(
        PatientPlacement(), [ev(1, "admit", "ED"), ev(2, "transfer", "ICU"), ev(3, "cancel_admit")]
    )
    assert units == {"ED": 0, "ICU": 0} and outcomes[-1] == "applied"


def test_cancel_transfer_returns_the_patient_to_the_unit_before() -> None:
    p = PatientPlacement()
    occupancy(p, [ev(1, "admit", "ED"), ev(2, "transfer", "ICU")])
    outcome, deltas = p.apply(ev(3, "cancel_transfer"))
    assert outcome.status == "applied"
    assert [(d.unit_id, d.occupied, d.cancels) for d in deltas] == [("ICU", -1, 1), ("ED", 1, 1)]


def test_cancel_discharge_gives_the_bed_back() -> None:
    p = PatientPlacement()
    units, outcomes = occupancy(
        p, [ev(1, "admit", "W4"), ev(2, "discharge"), ev(3, "cancel_discharge")]
    )
    assert units == {"W4": 1} and outcomes == ["applied"] * 3
    assert p.place is not None and p.place.unit_id == "W4"


def test_a_cancelled_discharge_places_the_patient_where_it_says_they_are() -> None:
    """HL7 v2.5 3.3.13: an A13's PV1-3 is "the location of the patient after the cancellation
    ... may be different from the patient's location prior to the erroneous discharge" (their
    bed given to another patient meanwhile): it was read as the old bed."""
    p = PatientPlacement()
    units, outcomes = occupancy(
        p, [ev(1, "admit", "W4", "12"), ev(2, "discharge"), ev(3, "cancel_discharge", "W5", "3")]
    )
    assert units == {"W4": 0, "W5": 1} and outcomes == ["applied"] * 3
    assert p.place is not None and (p.place.unit_id, p.place.bed_id) == ("W5", "3")
    # a unit without configured beds is refused before the placement, as an admission's
    beds = Capacity.from_dict({"facilities": {"F": {"W4": 10, "W5": 10}}})
    refused = check_unit(ev(4, "cancel_discharge", "NOPE"), beds)
    assert refused is not None and refused.status == "unknown_unit"
    assert check_unit(ev(4, "cancel_discharge", "W5"), beds) is None
    assert check_unit(ev(4, "cancel_discharge"), beds) is None  # the old bed: no unit named


def test_a_cancel_with_nothing_to_undo_is_refused() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "W4"))
    outcome, deltas = p.apply(ev(2, "cancel_discharge"))
    assert outcome.status == "nothing_to_cancel" and deltas == []


def test_discharging_a_patient_without_a_bed_is_refused_and_never_negative() -> None:
    units, outcomes = occupancy(PatientPlacement(), [ev(1, "discharge"), ev(2, "transfer", "ICU")])
    assert units == {} and outcomes == ["not_admitted", "not_admitted"]


def test_a_second_admission_without_a_discharge_is_refused() -> None:
    _, outcomes = occupancy(PatientPlacement(), [ev(1, "admit", "W4"), ev(2, "admit", "W5")])
    assert outcomes == ["applied", "already_admitted"]


def test_the_same_event_twice_is_a_duplicate() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "W4"))
    outcome, deltas = p.apply(ev(1, "admit", "W4"))
    assert outcome.status == "duplicate" and deltas == []


def test_a_patient_without_a_bed_is_forgotten_after_the_retention_but_not_before() -> None:
    p = PatientPlacement()
    occupancy(p, [ev(1, "admit", "ED"), ev(2, "discharge")])
    just_before = AdtEvent("e1", "admit", "F", "ED", None, 2000 + RETENTION_MS - 1)
    assert p.apply(just_before)[0].status == "duplicate"  # and this refusal restarts the clock
    resent = AdtEvent("e1", "admit", "F", "ED", None, just_before.event_time_ms + RETENTION_MS)
    outcome, deltas = p.apply(resent)
    assert outcome.status == "applied" and [d.occupied for d in deltas] == [1]


def test_a_patient_in_a_bed_is_never_forgotten() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "ED"))
    late = AdtEvent("e1", "admit", "F", "ED", None, 10 * RETENTION_MS)
    assert p.apply(late)[0].status == "duplicate"


def test_an_update_corrects_the_unit_without_counting_a_transfer() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "W4"))
    outcome, deltas = p.apply(ev(2, "update", "W5"))
    assert outcome.status == "applied"
    assert [(d.unit_id, d.occupied, d.transfers_in + d.transfers_out) for d in deltas] == [
        ("W4", -1, 0),
        ("W5", 1, 0),
    ]
    assert p.apply(ev(3, "update", "W5"))[0].status == "no_change"


def test_registration_and_preadmission_occupy_no_bed() -> None:
    _, outcomes = occupancy(PatientPlacement(), [ev(1, "register", "OPD"), ev(2, "preadmit", "W")])
    assert outcomes == ["no_change", "no_change"]


def test_surge_level_counts_the_thresholds_reached() -> None:
    th = (85.0, 92.0, 100.0)
    assert [surge_level(p, th) for p in (50, 85, 91.9, 92, 100, 130)] == [0, 1, 1, 2, 3, 3]


def test_a_merge_moves_a_surviving_record_already_placed_to_the_merges_unit_counting_no_flow() -> (
    None
):
    """The survivor of a merge (merged_in) may hold a bed already: the merge's PV1-3 says
    where the patient is, as an update does; occupancy moves, no transfer is counted."""
    p = PatientPlacement()
    p.apply(ev(1, "admit", "ED"))
    outcome, deltas = p.apply(ev(2, "merged_in", "ICU", "3"))
    assert outcome.status == "applied"
    assert [(d.unit_id, d.occupied, d.transfers_in + d.transfers_out) for d in deltas] == [
        ("ED", -1, 0),
        ("ICU", 1, 0),
    ]
    assert p.apply(ev(3, "merged_in", "ICU", "3"))[0].status == "no_change"  # that bed already
    assert p.apply(ev(4, "cancel_transfer"))[0].status == "nothing_to_cancel"


def test_a_record_merged_away_holds_no_bed_and_is_forgotten_like_a_discharged_one() -> None:
    p = PatientPlacement()
    units, outcomes = occupancy(p, [ev(1, "admit", "ICU"), ev(2, "merged_away", "ICU")])
    assert units == {"ICU": 0} and outcomes == ["applied", "applied"]
    assert p.forget_at_ms == 2000 + RETENTION_MS


def test_an_admissions_cancel_of_another_encounter_leaves_the_stay_alone() -> None:
    """A cancel that names its encounter voids the stay only if that encounter's admission
    placed the patient; one naming none, or a stay placed by an admission naming none, cancels
    as before."""
    p = PatientPlacement()
    p.apply(ev(1, "admit", "ICU")._replace(encounter_token="v1"))
    refused, _ = p.apply(ev(2, "cancel_admit")._replace(encounter_token="v2"))
    assert refused.status == "nothing_to_cancel" and p.place is not None
    voided, deltas = p.apply(ev(3, "cancel_admit")._replace(encounter_token="v1"))
    assert voided.status == "applied" and p.place is None and deltas[0].cancels == 1
    q = PatientPlacement()
    q.apply(ev(1, "admit", "ICU"))
    assert q.apply(ev(2, "cancel_admit")._replace(encounter_token="v2"))[0].status == "applied"


def test_a_cancel_of_the_stays_own_encounter_voids_it_however_many_moves_back() -> None:
    """The history keeps the latest HISTORY changes: an unbound A11 after more moves finds no
    admission in it, one naming the stay's encounter voids the stay still."""
    moves = [ev(i, "transfer", "ICU" if i % 2 else "4E") for i in range(2, HISTORY + 4)]
    unbound = PatientPlacement()
    occupancy(unbound, [ev(1, "admit", "4E"), *moves])
    assert unbound.apply(ev(99, "cancel_admit"))[0].status == "nothing_to_cancel"
    bound = PatientPlacement()
    occupancy(bound, [ev(1, "admit", "4E")._replace(encounter_token="v1"), *moves])
    outcome, deltas = bound.apply(ev(99, "cancel_admit")._replace(encounter_token="v1"))
    assert outcome.status == "applied" and bound.place is None
    assert [(d.occupied, d.cancels) for d in deltas] == [(-1, 1)]


def test_a_cancel_of_an_earlier_discharged_stay_leaves_the_bed_a_merge_placed() -> None:
    """The history still holds the first stay's admission after its discharge: an A11 of that
    visit is the other encounter's once a merge placed the patient under a visit of its own."""
    p = PatientPlacement()
    first = ev(1, "admit", "4E")._replace(encounter_token="v1")
    merged = ev(3, "merged_in", "ICU")._replace(encounter_token="v3")
    occupancy(p, [first, ev(2, "discharge"), merged])
    outcome, deltas = p.apply(ev(4, "cancel_admit")._replace(encounter_token="v1"))
    assert outcome.status == "nothing_to_cancel" and deltas == [] and p.place is not None


def test_an_empty_encounter_places_an_unbound_stay() -> None:
    p = PatientPlacement()
    p.apply(ev(1, "admit", "ICU")._replace(encounter_token=""))
    assert p.stay is None
    assert p.apply(ev(2, "cancel_admit")._replace(encounter_token="v2"))[0].status == "applied"


def test_an_encounter_voided_frees_the_bed_of_its_own_stay_and_of_no_other() -> None:
    """A FHIR Encounter entered-in-error voids the stay it placed, wherever the patient has
    moved since; the stay of another encounter, one placed without an encounter (or restored
    without it) and a patient without a bed are left as they are."""
    void = ev(9, "void_encounter")._replace(encounter_token="v1")
    own = PatientPlacement()
    occupancy(own, [ev(1, "admit", "4E")._replace(encounter_token="v1"), ev(2, "transfer", "ICU")])
    outcome, deltas = own.apply(void)
    assert outcome.status == "applied" and own.place is None
    assert [(d.unit_id, d.occupied, d.cancels) for d in deltas] == [("ICU", -1, 1)]
    for placed_by in ("v2", None):
        other = PatientPlacement()
        other.apply(ev(1, "admit", "ICU")._replace(encounter_token=placed_by))
        refused, deltas = other.apply(void)
        assert refused.status == "nothing_to_cancel" and other.place is not None and not deltas
    gone = PatientPlacement()
    occupancy(gone, [ev(1, "admit", "ICU")._replace(encounter_token="v1"), ev(2, "discharge")])
    assert gone.apply(void)[0].status == "nothing_to_cancel"


def _visit(i: int, kind: str, encounter: str, **fields: str | None) -> AdtEvent:
    """An event of `encounter` as the census job reads it from an adt.event.v1 record."""
    record = {"event_id": f"e{i}", "event_type": kind, "facility_id": "F"} | fields
    return AdtEvent.of(record | {"encounter_token": encounter}, i * 1000)


def test_another_visits_update_or_a_discharge_from_its_prior_location_keeps_the_stays_bed() -> None:
    """The emergency visit goes on beside the inpatient stay in 5W: its A08 names ED, and its
    A03 names ED only as PV1-6 (prior location). Neither moves nor frees the inpatient; the
    stay's own A08 and its A03 without PV1-3 do."""
    p = PatientPlacement()
    events = [
        _visit(1, "admit", "VIP", unit_id="5W", bed_id="12"),
        _visit(2, "update", "VED", unit_id="ED", bed_id="03"),
        _visit(3, "discharge", "VED", unit_id=None, prior_unit_id="ED"),
    ]
    units, outcomes = occupancy(p, events)
    assert units == {"5W": 1} and outcomes == ["applied", "no_change", "not_admitted"]
    assert p.place is not None and p.place.unit_id == "5W"
    moved, moved_deltas = p.apply(_visit(4, "update", "VIP", unit_id="6W", bed_id="01"))
    left, left_deltas = p.apply(_visit(5, "discharge", "VIP", unit_id=None, prior_unit_id="5W"))
    assert (moved.status, left.status) == ("applied", "applied") and p.place is None
    assert [(d.unit_id, d.occupied) for d in [*moved_deltas, *left_deltas]] == [
        ("5W", -1),
        ("6W", 1),
        ("6W", -1),
    ]


def record(
    event_id: str, kind: str, encounter: str | None, happened: datetime, **kw: Any
) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_type": kind,
        "facility_id": "F",
        "unit_id": "W4" if kind in ("admit", "transfer") else None,
        "prior_unit_id": "W4" if kind == "discharge" else None,
        "bed_id": None,
        "encounter_token": encounter,
        "event_time": happened,
        **kw,
    }


def apply_all(
    events: list[tuple[dict[str, Any], datetime]],
) -> tuple[PatientPlacement, list[str]]:
    p, outcomes = PatientPlacement(), []
    for rec, recorded in events:
        outcomes.append(p.apply(AdtEvent.of(rec, codec.epoch_ms(recorded)))[0].status)
    return p, outcomes


def test_an_old_encounters_events_sent_again_after_the_retention_are_stale() -> None:
    """A FHIR Encounter version stored ten days after its discharge sends the admission and
    the discharge again; the census has forgotten their ids (and the patient is in a new
    stay): refused, not applied to the new stay's bed."""
    day = datetime(2026, 6, 1, 8, tzinfo=UTC)
    old_admit = record("c1:admit", "admit", "c1", day)
    old_discharge = record("c1:discharge", "discharge", "c1", day + timedelta(days=1))
    new_admit = record("c2:admit", "admit", "c2", day + timedelta(days=9))
    stored = day + timedelta(days=11)  # the later version of c1
    p, outcomes = apply_all(
        [
            (old_admit, day),
            (old_discharge, day + timedelta(days=1)),
            (new_admit, day + timedelta(days=9)),
            (old_admit, stored),
            (old_discharge, stored),
        ]
    )
    assert outcomes == ["applied", "applied", "applied", "stale", "stale"]
    assert p.place is not None and p.stay == "c2"  # the new stay keeps its bed
    forgotten, outcomes = apply_all([(old_admit, stored)])  # a patient without a bed: refused
    assert outcomes == ["stale"] and forgotten.place is None


def test_a_discharge_of_the_stay_entered_more_than_a_week_late_frees_the_bed() -> None:
    """Discharged from a leave of absence, the A03 dated at the leave's start and entered ten
    days later: the stay the patient is in, so applied (refused, the bed was held for ever)."""
    day = datetime(2026, 3, 1, 8, tzinfo=UTC)
    discharge = record("v1:discharge", "discharge", "v1", day + timedelta(days=2))
    anonymous = discharge | {"encounter_token": None}
    for late in (discharge, anonymous):
        p, outcomes = apply_all(
            [(record("v1:admit", "admit", "v1", day), day), (late, day + timedelta(days=12))]
        )
        assert outcomes == ["applied", "applied"] and p.place is None


def test_a_stale_merge_is_refused_whole_and_the_bed_stays_with_the_record_in_it() -> None:
    day = datetime(2026, 6, 1, 8, tzinfo=UTC)
    stored = day + timedelta(days=9)  # an A40 whose EVN-6 is 8 days before its EVN-2
    alias = PatientPlacement()
    alias.apply(AdtEvent.of(record("a:admit", "admit", "t1", day), codec.epoch_ms(day)))
    away = record("m:away", "merged_away", None, day + timedelta(days=1)) | {"unit_id": "W4"}
    outcome, deltas = alias.apply(AdtEvent.of(away, codec.epoch_ms(stored)))
    assert (outcome.status, deltas, alias.place is not None) == ("stale", [], True)


def test_a_stale_event_of_another_encounter_for_a_stay_placed_without_one_needs_its_unit() -> None:
    """The stay was admitted without PV1-19 (or restored from before encounters were kept):
    an old encounter's discharge replayed after the retention frees the bed only if it is from
    the unit the patient is in."""
    day = datetime(2026, 6, 1, 8, tzinfo=UTC)
    admitted = record("a:admit", "admit", None, day)
    replayed = record("old:discharge", "discharge", "c0", day - timedelta(days=3))
    stored = day + timedelta(days=5)
    elsewhere = replayed | {"prior_unit_id": "ICU"}
    _, outcomes = apply_all([(admitted, day), (elsewhere, stored)])
    assert outcomes == ["applied", "stale"]
    _, outcomes = apply_all([(admitted, day), (replayed, stored)])  # from W4, where they are
    assert outcomes == ["applied", "applied"]
