"""What the JVM alert lifecycle (udfs/java/AlertLifecycle.java) keeps, read from a savepoint (the
State Processor API, tests/ptf_state.py): once the watermark has passed every quiet period, a
patient whose alerts have all resolved has no state left (its alerts row, its pending hits);
only a patient with an open alert does."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pyflink.common import Types

from schemas.rows import RULE_HIT
from schemas.settings import Settings
from tests import paced_rows, ptf_state
from tests.flink.test_alert_lifecycle_jvm import COLUMNS, H, _arrival_order, _hits, _row
from udfs import java_decode, lifecycle

pytestmark = pytest.mark.slow
SENTINEL = "sentinel"


@pytest.fixture(scope="module")
def lifecycle_state(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The lifecycle, paced over drawn hits (out of order within the watermark's hour), then
    a sentinel's hit past every quiet period: its `raise` means every earlier deadline has
    fired. Then a savepoint, read back."""
    rng = np.random.default_rng(21)
    rows = _arrival_order(_hits(rng), rng)
    end = max(r["ts_ms"] for r in rows) + (lifecycle.QUIET_H + 2) * H
    sentinel = _row(SENTINEL, end, "qsofa", "high", f"{SENTINEL}:first", f"{SENTINEL}:last")
    # after it, rows of no patient (filtered out) move the watermark (an hour behind) past it
    tail = sentinel | {"patient_token": None, "ts_ms": end + H + 1}
    kinds = {"score_value": Types.INT(), "first_ms": Types.LONG(), "ts_ms": Types.LONG()}
    t_env, table = paced_rows.table(
        settings, [*rows, sentinel], COLUMNS, kinds, paced=True, out_of_orderness_ms=H, tail=tail
    )
    t_env.create_java_temporary_system_function(
        lifecycle.LIFECYCLE_FUNCTION, java_decode.ALERT_LIFECYCLE_CLASS
    )
    t_env.create_temporary_view("raw_hits", table)
    first = "CAST(TO_TIMESTAMP_LTZ(first_ms, 3) AS TIMESTAMP(3))"
    hits = RULE_HIT.select_sql({"first_time": first})
    t_env.create_temporary_view(
        "hits",
        t_env.sql_query(f"SELECT {hits}, rowtime FROM raw_hits WHERE patient_token IS NOT NULL"),
    )
    query = f"SELECT patient_token, action FROM ({lifecycle.lifecycle_sql('hits')})"
    events, savepoint = ptf_state.savepoint_after(
        t_env, query, lambda r: bool(r[0] == SENTINEL), tmp_path_factory.mktemp("lifecycle-sp")
    )
    return {
        "rows": rows,
        "events": events,
        "state": ptf_state.read(settings, savepoint, "alerts"),
    }


def test_every_patients_alerts_were_raised_and_resolved_before_the_savepoint(
    lifecycle_state: dict[str, Any],
) -> None:
    actions: dict[str, list[str]] = {}
    for token, action in lifecycle_state["events"]:
        actions.setdefault(token, []).append(action)
    assert actions.pop(SENTINEL) == ["raise"]
    patients = {r["patient_token"] for r in lifecycle_state["rows"]}
    assert set(actions) == patients
    for token, done in actions.items():
        assert done.count("raise") == done.count("resolve") > 0, token


def test_only_the_patient_with_an_open_alert_keeps_any_state(
    lifecycle_state: dict[str, Any],
) -> None:
    state: ptf_state.Savepoint = lifecycle_state["state"]
    assert {"alerts": "VALUE", "pending": "LIST"}.items() <= state.declared.items()
    assert [(k.key, set(k.states)) for k in state.keys] == [((SENTINEL,), {"alerts"})]
