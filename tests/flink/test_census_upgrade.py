"""The census placement (udfs/java/CensusPlacement.java) restores from a savepoint of an earlier
version, as `upgradeMode: savepoint` (deploy/k8s/bed-census.yaml) does at every upgrade: the
beds, the cancel history, the event ids seen and the events still waiting for the watermark
all carry over, and what that version did not keep is absent, not a failed restore.

`savepoints/census-placement-8de0e1e/` is the savepoint of the version before the census kept
encounters (commit 8de0e1e), written by `python -m tests.flink.test_census_upgrade DIR` run on
a checkout of that commit (this file copied in): Flink's row serializer restores no field added
to a state's type, so the encounters are a state entry of their own, and a patient restored
from it has no stay: their admission's cancel applies as before, bound or not. From a savepoint
of this version the same cancels are bound. Each phase after the savepoint is checked against
the Python reference (udfs.census) fed the phase before it as the restored version saw it."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from schemas.settings import Settings
from tests import paced_rows, ptf_state
from tests.flink.test_census_retention_jvm import COLUMNS, FLINK_TYPES, placing
from udfs.census import AdtEvent, PatientPlacement

pytestmark = pytest.mark.slow
T0 = 1_780_000_000_000
H = 3_600_000
FIXTURE = Path(__file__).resolve().parent / "savepoints" / "census-placement-8de0e1e"
SENTINEL = "s1"


def _rows(
    events: Iterable[tuple[str, str, str, str | None, str | None, int]], first: int = 0
) -> list[dict[str, Any]]:
    """(event id, type, patient, unit, encounter, time) as CENSUS_IN rows, offsets from `first`."""
    return [
        {
            "event_id": event_id,
            "event_type": kind,
            "patient_token": patient,
            "facility_id": "H",
            "unit_id": unit,
            "bed_id": None,
            "encounter_token": encounter,
            "source_topic": "adt",
            "kafka_partition": 0,
            "kafka_offset": first + n,
            "payload": b"",
            "ts_ms": T0 + at,
        }
        for n, (event_id, kind, patient, unit, encounter, at) in enumerate(events)
    ]


# before the savepoint: A placed, B moved, C discharged, the sentinel (whose row says that every
# earlier event has come out), and D's admission, still waiting for the watermark (the source
# holds it just behind D's time)
BEFORE = _rows(
    [
        ("a1", "admit", "A", "ICU", "A1", 0),
        ("b1", "admit", "B", "W4", "B1", H),
        ("c1", "admit", "C", "W4", "C1", H),
        ("b2", "transfer", "B", "ICU", None, 2 * H),
        ("c2", "discharge", "C", None, None, 3 * H),
        (SENTINEL, "admit", "S", "W4", "S1", 4 * H),
        ("d1", "admit", "D", "ICU", "D1", 10 * H),
    ]
)
# after it: cancels of A's and D's admissions naming another encounter, B discharged and its
# admission resent, C's discharge cancelled, and a new patient whose stay is bound
AFTER = _rows(
    [
        ("a2", "cancel_admit", "A", None, "X", 11 * H),
        ("b3", "discharge", "B", None, None, 11 * H),
        ("b1", "admit", "B", "W4", "B1", 11 * H + 1),
        ("c3", "cancel_discharge", "C", None, None, 11 * H),
        ("e1", "admit", "E", "ICU", "E1", 11 * H),
        ("d2", "cancel_admit", "D", None, "Y", 12 * H),
        ("e2", "cancel_admit", "E", None, "E2", 12 * H),
        ("e3", "cancel_admit", "E", None, "E1", 13 * H),
    ],
    first=len(BEFORE),
)


def _placement(t_env: Any, table: Any) -> str:
    placing(t_env, table, patients_only=True)
    return """
        SELECT kind, event_id, outcome, reason, unit_id, occupied, cancels
        FROM TABLE(wf_census_placement(
          input => TABLE placing PARTITION BY patient_token,
          on_time => DESCRIPTOR(rowtime),
          uid => 'census-placement'))"""


def savepoint_before(settings: Settings, folder: Path) -> str:
    """Run BEFORE through this checkout's placement, then stop it with a savepoint: its path."""
    tail = BEFORE[-1] | {"event_id": "tick", "patient_token": None}
    t_env, table = paced_rows.table(settings, BEFORE, COLUMNS, FLINK_TYPES, paced=True, tail=tail)
    query = _placement(t_env, table)
    _, path = ptf_state.savepoint_after(t_env, query, lambda r: bool(r[1] == SENTINEL), folder)
    return path


def restored_run(settings: Settings, savepoint: str) -> list[tuple[Any, ...]]:
    """AFTER through this checkout's placement, restored from `savepoint`, on bounded input (at
    its end the watermark passes every event, the restored one waiting included)."""
    t_env, table = paced_rows.table(
        settings, AFTER, COLUMNS, FLINK_TYPES, paced=False, uid="rows-after-the-upgrade"
    )
    t_env.get_config().set("execution.savepoint.path", savepoint)
    # the savepoint's source (a sequence without end) is not this job's
    t_env.get_config().set("execution.savepoint.ignore-unclaimed-state", "true")
    with t_env.execute_sql(_placement(t_env, table)).collect() as rows:
        return [tuple(r) for r in rows]


def reference(before: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """What the Python reference gives, after `before` then AFTER, for the events later than
    the sentinel (those the restored job applies: AFTER's and the one restored waiting): each
    event's (event id, outcome, reason, unit after) and each delta's (unit, occupied,
    cancels)."""
    placements: dict[str, PatientPlacement] = {}
    out: list[tuple[Any, ...]] = []
    restored_at = next(r["ts_ms"] for r in BEFORE if r["event_id"] == SENTINEL)
    for r in sorted([*before, *AFTER], key=lambda r: (r["ts_ms"], r["kafka_offset"])):
        p = placements.setdefault(r["patient_token"], PatientPlacement())
        outcome, deltas = p.apply(AdtEvent.of(r, r["ts_ms"]))
        if r["ts_ms"] <= restored_at:
            continue
        unit = r["unit_id"] if outcome.refused else p.place.unit_id if p.place else None
        out.append((r["event_id"], outcome.status, outcome.reason or None, unit))
        out += [(d.unit_id, d.occupied, d.cancels) for d in deltas]
    return out


def _as_reference(rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    return [
        (unit, occupied, cancels) if kind == "delta" else (event_id, outcome, reason, unit)
        for kind, event_id, outcome, reason, unit, occupied, cancels in rows
    ]


@pytest.fixture(scope="module")
def from_8de0e1e(settings: Settings) -> list[tuple[Any, ...]]:
    if not (FIXTURE / "_metadata").exists():
        pytest.fail(f"the savepoint fixture is missing: {FIXTURE}")
    return restored_run(settings, FIXTURE.as_uri())


@pytest.fixture(scope="module")
def from_this_version(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> list[tuple[Any, ...]]:
    path = savepoint_before(settings, tmp_path_factory.mktemp("census-upgrade"))
    return restored_run(settings, path)


def _outcomes(rows: list[tuple[Any, ...]]) -> dict[str, str]:
    return {event_id: outcome for kind, event_id, outcome, *_ in rows if kind != "delta"}


def test_a_savepoint_of_the_version_before_encounters_restores_every_patient(
    from_8de0e1e: list[tuple[Any, ...]],
) -> None:
    """Its patients had no encounters kept: the reference fed BEFORE without them."""
    unbound = [r | {"encounter_token": None} for r in BEFORE]
    assert sorted(_as_reference(from_8de0e1e), key=repr) == sorted(reference(unbound), key=repr)
    outcomes = _outcomes(from_8de0e1e)
    # restored beds, history and seen ids; a stay restored without its encounter, and an
    # admission restored waiting without one, cancel as before
    assert outcomes == {
        "d1": "applied",
        "a2": "applied",
        "b3": "applied",
        "b1": "duplicate",
        "c3": "applied",
        "e1": "applied",
        "d2": "applied",
        "e2": "nothing_to_cancel",
        "e3": "applied",
    }


def test_a_savepoint_of_this_version_keeps_the_encounters_of_stays_and_of_waiting_events(
    from_this_version: list[tuple[Any, ...]],
) -> None:
    assert sorted(_as_reference(from_this_version), key=repr) == sorted(reference(BEFORE), key=repr)
    outcomes = _outcomes(from_this_version)
    assert outcomes["d1"] == "applied"
    assert outcomes["a2"] == outcomes["d2"] == "nothing_to_cancel"
    assert outcomes["e2"] == "nothing_to_cancel" and outcomes["e3"] == "applied"


if __name__ == "__main__":  # write the fixture: python -m tests.flink.test_census_upgrade DIR
    print(savepoint_before(Settings.from_env(), Path(sys.argv[1]).resolve()))
