"""The census job's JVM placement (udfs/java/CensusPlacement.java, and the unit check generated
as SQL) equals its Python reference (udfs.census: check_unit, then PatientPlacement per patient
in event-time order) on a random ADT stream: every event type, duplicates, unknown and missing
units, bed moves, cancels of every kind (an admission's of its own encounter or another's),
events at the same instant, and resends after a gap longer than the retention (patients
without a bed forgotten, also when the watermark passes the retention at once), through the
real job on bounded input."""

from __future__ import annotations

import dataclasses
import json
import random
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import bed_census
from schemas import codec, load_schema, topics
from schemas.capacity import ALL_UNITS, Capacity
from schemas.settings import Settings
from tests.flink_harness import run_bounded
from udfs.census import RETENTION_MS, AdtEvent, Delta, PatientPlacement, check_unit

pytestmark = pytest.mark.slow

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=UTC)
CAPACITY = {"facilities": {"H": {"ICU": 4, "W4": 6, "ED": 9}, "G": {"W1": 5}}}
KINDS = (
    ("admit", 6),
    ("transfer", 5),
    ("discharge", 4),
    ("update", 2),
    ("register", 1),
    ("preadmit", 1),
    ("leave_of_absence", 1),
    ("return_from_leave", 1),
    ("merged_away", 1),
    ("merged_in", 1),
    ("cancel_admit", 1),
    ("void_encounter", 1),
    ("cancel_transfer", 1),
    ("cancel_discharge", 1),
)
SCHEMA = load_schema(topics.ADT_EVENT.name)


def adt_stream(seed: int, patients: int = 120, n: int = 2500) -> list[dict[str, Any]]:
    """Events in event-time order (ties included), so that none is late."""
    rng = random.Random(seed)
    priors = random.Random(seed + 1)  # PV1-6, apart: the stream is the one it was without it
    units = {"H": ["ICU", "W4", "ED"], "G": ["W1"]}
    t = T0
    out: list[dict[str, Any]] = []
    for i in range(n):
        t += timedelta(seconds=rng.choice([0, 0, 1, 20, 45, 90, 300]))
        if out and rng.random() < 0.04:  # a resend: same event id, later
            out.append(rng.choice(out) | {"event_time": t})
            continue
        kinds, weights = zip(*KINDS, strict=True)
        facility = rng.choice(["H", "H", "G"])
        unit = rng.choice([*units[facility], *units[facility], "NOPE", None])
        out.append(
            {f.name: None for f in SCHEMA.fields if f.nullable}
            | {
                "event_id": f"e{i}",
                "event_type": rng.choices(kinds, weights)[0],
                "source_message_type": "test",
                "patient_token": f"p{rng.randrange(patients)}",
                "facility_id": facility,
                "unit_id": unit,
                "prior_unit_id": priors.choice([None, None, *units[facility]]),
                "bed_id": rng.choice([None, "1", "2"]),
                "encounter_token": rng.choice([None, "", "v1", "v2"]),
                "event_time": t,
                "source": "test",
            }
        )
    t += timedelta(milliseconds=RETENTION_MS, days=1)  # then resends, after the retention
    for j, e in enumerate(rng.sample(out, 200)):
        out.append(e | {"event_time": t + timedelta(seconds=j)})
    # and a later FHIR Encounter version's: each earlier event again, recorded when the version
    # was stored, days after the census forgot the ids: refused stale unless of the stay the
    # patient is in (udfs.census.is_stale)
    t += timedelta(hours=1)
    for j, e in enumerate(rng.sample(out[:n], 30)):
        out.append(e | {"recorded_time": t + timedelta(seconds=j)})
    return out


@dataclasses.dataclass
class Expected:
    events: Counter[tuple[Any, ...]]  # (event_id, outcome, reason, facility and unit after)
    refused: Counter[tuple[Any, ...]]  # (event_id, reason code, reason)
    deltas: list[Delta]


def reference(events: list[dict[str, Any]], capacity: Capacity) -> Expected:
    expected = Expected(Counter(), Counter(), [])
    placements: dict[str, PatientPlacement] = defaultdict(PatientPlacement)
    order = sorted(range(len(events)), key=lambda i: (codec.record_time(events[i]), i))
    for i in order:
        e = events[i]
        ev = AdtEvent.of(e, codec.epoch_ms(codec.record_time(e)))
        outcome = check_unit(ev, capacity)
        deltas: list[Delta] = []
        placement = placements[e["patient_token"]]
        if outcome is None:
            outcome, deltas = placement.apply(ev)
        if outcome.refused:
            expected.refused[(ev.event_id, outcome.status, outcome.reason)] += 1
            continue
        where = placement.place  # census_stays.census_rows: the facility the patient is in
        after = (where.facility_id, where.unit_id) if where else (e["facility_id"], None)
        expected.events[(ev.event_id, outcome.status, outcome.reason or None, *after)] += 1
        expected.deltas += deltas
    return expected


@pytest.fixture(scope="module")
def census(settings: Settings, tmp_path_factory: Any) -> dict[str, Any]:
    folder = Path(tmp_path_factory.mktemp("census-placement"))
    cap_file = folder / "capacity.json"
    cap_file.write_text(json.dumps(CAPACITY))
    s = dataclasses.replace(settings, capacity_file=cap_file)
    events = adt_stream(seed=11)
    return {"events": events, **run_bounded(bed_census.JOB, s, {"adt": events}, folder / "out")}


def test_every_event_gets_the_references_outcome_reason_facility_and_unit(
    census: dict[str, Any],
) -> None:
    want = reference(census["events"], Capacity.from_dict(CAPACITY))
    got = Counter(
        (r["event_id"], r["outcome"], r["reason"], r["facility_id"], r["unit_id"])
        for r in census["census_events"]
    )
    refused = Counter(
        (codec.decode(SCHEMA, r["payload"])["event_id"], r["reason_code"], r["reason"])
        for r in census["dead_letters"]
    )
    assert got == want.events
    assert refused == want.refused
    # the stream exercises what it is for: every event type the schema allows
    [event_type] = [f for f in SCHEMA.fields if f.name == "event_type"]
    assert {kind for kind, _ in KINDS} == set(event_type.allowed or ())
    assert {status for _, status, _ in want.refused} >= {
        "duplicate",
        "unknown_unit",
        "missing_unit",
        "already_admitted",
        "not_admitted",
        "nothing_to_cancel",
    }
    assert sum(n for (_, status, _), n in want.refused.items() if status == "stale") == 18
    assert sum(1 for d in want.deltas if d.cancels) > 20
    # cancels and voids bound to the stay's encounter: refused for another's, a void applied
    others = (
        "the cancelled admission is another encounter's than the stay's",
        "the patient's stay is another encounter's",
    )
    assert sum(1 for _, _, reason in want.refused.elements() if reason in others) >= 5
    # and discharges of another encounter from a unit the patient is not in
    another = "a discharge of another encounter than the stay's"
    assert sum(1 for _, _, why in want.refused.elements() if why.startswith(another)) >= 3
    # (one without a unit, from its prior location) and updates of another encounter
    assert any(
        e["event_type"] == "discharge" and not e["unit_id"] and e["prior_unit_id"]
        for e in census["events"]
        if e["event_id"] in {i for i, _, why in want.refused if why.startswith(another)}
    )
    update = "an update of another encounter than the stay's"
    assert any((why or "").startswith(update) for _, _, why, *_ in want.events)
    voids = {e["event_id"] for e in census["events"] if e["event_type"] == "void_encounter"}
    assert sum(1 for e, status, *_ in want.events if e in voids and status == "applied") >= 3
    applied = Counter(e for e, status, *_ in want.events.elements() if status == "applied")
    assert sum(1 for n in applied.values() if n > 1) > 5  # applied again once forgotten


def test_each_minutes_census_and_counts_are_the_references_deltas_summed(
    census: dict[str, Any],
) -> None:
    cap = Capacity.from_dict(CAPACITY)
    deltas = reference(census["events"], cap).deltas
    minute = 60_000
    per_window: dict[tuple[str, str, int], list[Delta]] = defaultdict(list)
    for d in deltas:
        end = (d.event_time_ms // minute + 1) * minute
        per_window[(d.facility_id, d.unit_id, end)].append(d)
        per_window[(d.facility_id, ALL_UNITS, end)].append(d)
    rows = {
        (r["facility_id"], r["unit_id"], codec.epoch_ms(r["window_end"])): r
        for r in census["census_unit"]
    }
    assert set(rows) == set(per_window)
    for (facility, unit, end), row in rows.items():
        mine = [d for d in deltas if d.facility_id == facility and unit in (ALL_UNITS, d.unit_id)]
        before = [d for d in mine if d.event_time_ms < end]
        inside = per_window[(facility, unit, end)]
        assert row["occupied_beds"] == sum(d.occupied for d in before)
        for count in bed_census.COUNTS:
            assert row[count] == sum(getattr(d, count) for d in inside), (facility, unit, end)
        beds = cap.facility_beds(facility) if unit == ALL_UNITS else cap.units[(facility, unit)]
        assert row["capacity_beds"] == beds
