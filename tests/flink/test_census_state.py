"""What the JVM placement (udfs/java/CensusPlacement.java) keeps, read from a savepoint (the State
Processor API, tests/ptf_state.py): once the watermark has passed every retention, it holds a row
for each patient in a bed and for no one else, and no named timer of a patient it forgot.

Flink's `clearAllState()` leaves a named timer's entry in the operator's own map state, fired or
not, and a stale expiry timer that fires after a forget would write an empty row back: neither
changes an output row, so only the state shows them."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from schemas.settings import Settings
from tests import paced_rows, ptf_state
from tests.flink.test_census_retention_jvm import COLUMNS, FLINK_TYPES, _events, placing
from udfs.census import RETENTION_MS, AdtEvent, PatientPlacement

pytestmark = pytest.mark.slow
DAY = 24 * 3_600_000
SENTINEL = "sentinel"


def _in_a_bed(rows: list[dict[str, Any]]) -> set[str]:
    """The patients the reference still places after all `rows` (everyone else has been
    without a bed for longer than the retention by the sentinel's time)."""
    placements: dict[str, PatientPlacement] = {}
    for r in sorted(rows, key=lambda r: (r["ts_ms"], r["kafka_offset"])):
        p = placements.setdefault(r["patient_token"], PatientPlacement())
        p.apply(AdtEvent(r["event_id"], r["event_type"], "H", r["unit_id"], None, r["ts_ms"]))
    return {t for t, p in placements.items() if p.place is not None}


@pytest.fixture(scope="module")
def placed(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The placement, paced over real-looking ADT with gaps around the retention, then a
    sentinel admission past every retention; its output row means every earlier timer has fired
    (Flink fires a key group's timers in time order). Then a savepoint, read back."""
    rows = _events(np.random.default_rng(11), patients=40)
    end = max(r["ts_ms"] for r in rows) + RETENTION_MS + DAY
    sentinel = rows[0] | {
        "event_id": f"{SENTINEL}-admit",
        "event_type": "admit",
        "patient_token": SENTINEL,
        "unit_id": "ICU",
        "ts_ms": end,
        "kafka_offset": len(rows),
    }
    rows = [*rows, sentinel]
    # after it, rows of no patient (filtered out) hold the watermark at the sentinel's time
    tail = sentinel | {"event_id": "tick", "patient_token": None, "ts_ms": end + 1}
    t_env, table = paced_rows.table(settings, rows, COLUMNS, FLINK_TYPES, paced=True, tail=tail)
    placing(t_env, table, patients_only=True)
    query = """
        SELECT event_id FROM TABLE(wf_census_placement(
          input => TABLE placing PARTITION BY patient_token,
          on_time => DESCRIPTOR(rowtime),
          uid => 'census-placement'))
        WHERE kind <> 'delta'"""
    folder = tmp_path_factory.mktemp("census-savepoint")
    seen, savepoint = ptf_state.savepoint_after(
        t_env, query, lambda r: bool(r[0] == sentinel["event_id"]), folder
    )
    return {
        "rows": rows,
        "seen": len(seen),
        "state": ptf_state.read(settings, savepoint, "placement"),
    }


def test_every_event_came_out_before_the_savepoint(placed: dict[str, Any]) -> None:
    assert placed["seen"] == len(placed["rows"])


def test_the_placement_keeps_a_row_for_each_patient_in_a_bed_and_for_no_one_else(
    placed: dict[str, Any],
) -> None:
    state: ptf_state.Savepoint = placed["state"]
    assert state.declared == {
        "placement": "VALUE",
        "visit": "VALUE",
        ptf_state.NAMED_TIMERS: "MAP",
    }
    in_a_bed = _in_a_bed(placed["rows"])
    patients = {r["patient_token"] for r in placed["rows"]}
    assert SENTINEL in in_a_bed and len(patients - in_a_bed) > 5, "some are forgotten"
    kept = {k.key[0] for k in state.keys if "placement" in k.states}
    assert kept == in_a_bed


def test_a_forgotten_patient_leaves_no_named_timer_behind(placed: dict[str, Any]) -> None:
    state: ptf_state.Savepoint = placed["state"]
    orphans = [k for k in state.keys if "placement" not in k.states]
    assert orphans == []
    for k in state.keys:  # a patient in a bed waits for no expiry
        assert ptf_state.NAMED_TIMERS not in k.states, k
