"""The JVM alert lifecycle (udfs/java/AlertLifecycle.java through udfs.lifecycle.lifecycle_sql)
emits exactly the events of the Python reference (udfs.lifecycle.run per patient and rule) on a
drawn stream: several rules and severities per patient, hits at one instant, the same completing
record twice, gaps longer than the quiet period, discharges, and arrival out of event-time order
within the watermark's bound."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pyflink.common import Types

from schemas.rows import ALERT_EVENT, RULE_HIT
from schemas.settings import Settings
from tests import paced_rows
from udfs import java_decode, lifecycle

pytestmark = pytest.mark.slow
H = 3_600_000
T0 = 1_767_225_600_000
RULES = {"news2_sustained_medium": "medium", "qsofa": "high", "sirs_persistent": "low"}
SEVERITIES = list(lifecycle.SEVERITY_RANK)
OUT_OF_ORDER_MS = H // 2  # arrival disorder; the watermark trails the newest time by an hour
COLUMNS = [c for c in RULE_HIT.columns if c != "first_time"] + ["first_ms", "ts_ms"]


def _hits(rng: np.random.Generator, patients: int = 40) -> list[dict[str, Any]]:
    """Per patient a few episodes of hits a few minutes to hours apart, ties and repeats
    included, sometimes ended by a discharge."""
    out: list[dict[str, Any]] = []
    for p in range(patients):
        token = f"patient-{p:02d}"
        t = T0 + int(rng.integers(0, 12 * H))
        for _ in range(int(rng.integers(5, 40))):
            t += int(rng.choice([0, 0, 60_000, 15 * 60_000, H, 5 * H, 6 * H, 7 * H]))
            if rng.random() < 0.06:
                out.append(_row(token, t, None, "", "", f"{token}:adt:{t}"))
                continue
            rule = str(rng.choice(list(RULES)))
            severity = RULES[rule] if rng.random() < 0.7 else str(rng.choice(SEVERITIES))
            record = f"{token}:{int(rng.integers(0, 1_000_000))}"
            row = _row(token, t, rule, severity, f"{token}:first:{t}", record)
            out.append(row)
            if rng.random() < 0.1:  # the same completing record again
                out.append(dict(row))
    return out


def _row(
    token: str, t: int, rule: str | None, severity: str, first: str, last: str
) -> dict[str, Any]:
    return {
        "kind": "discharge" if rule is None else "hit",
        "rule_id": rule or "",
        "rule_version": "" if rule is None else "3",
        "severity": severity,
        "patient_token": token,
        "facility_id": "fac-1",
        "unit_id": "MICU" if t % 2 else "CCU",
        "first_record_id": first or last,
        "last_record_id": last,
        "score_name": "" if rule is None else f"{rule}_score",
        "score_value": None if t % 11 == 0 else t % 7,  # a null score stays null
        "evidence_json": '{"temp_c": {"value": 38.4, "note": "Fieber – ° ✓"}}',
        "first_ms": t - 15 * 60_000,
        "ts_ms": t,
    }


def _expected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """udfs.lifecycle.run over each (patient, rule)'s hits and the patient's discharges."""
    out: list[dict[str, Any]] = []
    for token in sorted({r["patient_token"] for r in rows}):
        mine = [r for r in rows if r["patient_token"] == token]
        discharges = [(r["ts_ms"], None) for r in mine if r["kind"] == "discharge"]
        for rule in sorted({r["rule_id"] for r in mine if r["kind"] == "hit"}):
            hits = [
                (r["ts_ms"], _reference_hit(r))
                for r in mine
                if r["kind"] == "hit" and r["rule_id"] == rule
            ]
            out += lifecycle.run([*hits, *discharges])
    return out


def _reference_hit(r: dict[str, Any]) -> lifecycle.Hit:
    return lifecycle.Hit(
        r["rule_id"],
        r["rule_version"],
        r["severity"],
        r["patient_token"],
        r["facility_id"],
        r["unit_id"],
        r["ts_ms"],
        r["first_ms"],
        r["first_record_id"],
        r["last_record_id"],
        r["score_name"],
        r["score_value"],
        r["evidence_json"],
    )


def _arrival_order(rows: list[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Event-time order disturbed by up to OUT_OF_ORDER_MS: none falls behind the watermark."""
    jitter = rng.integers(0, OUT_OF_ORDER_MS, len(rows))
    order = np.argsort(np.array([r["ts_ms"] for r in rows]) + jitter, kind="stable")
    return [rows[i] for i in order]


def _run_jvm(settings: Settings, rows: list[dict[str, Any]], paced: bool) -> list[dict[str, Any]]:
    """The JVM lifecycle's events over `rows` in their order, each with `emitted_ms`: the
    rowtime of the timer that emitted it. Paced, the watermark (an hour behind the newest time)
    moves between rows; else there is none before the end of input's, at which every timer
    fires."""
    kinds = {"score_value": Types.INT(), "first_ms": Types.LONG(), "ts_ms": Types.LONG()}
    t_env, table = paced_rows.table(
        settings, rows, COLUMNS, kinds, paced=paced, out_of_orderness_ms=H
    )
    t_env.create_java_temporary_system_function(
        lifecycle.LIFECYCLE_FUNCTION, java_decode.ALERT_LIFECYCLE_CLASS
    )
    t_env.create_temporary_view("raw_hits", table)
    first = "CAST(TO_TIMESTAMP_LTZ(first_ms, 3) AS TIMESTAMP(3))"
    hits = RULE_HIT.select_sql({"first_time": first})
    t_env.create_temporary_view("hits", t_env.sql_query(f"SELECT {hits}, rowtime FROM raw_hits"))
    emitted = "TIMESTAMPDIFF(SECOND, TO_TIMESTAMP_LTZ(0, 3), rowtime)"
    query = f"""
        SELECT {ALERT_EVENT.column_list()}, {emitted} AS emitted_s
        FROM ({lifecycle.lifecycle_sql("hits")})"""
    with t_env.execute_sql(query).collect() as results:
        names = [*ALERT_EVENT.columns, "emitted_s"]
        return [dict(zip(names, tuple(r), strict=True)) for r in results]


@pytest.mark.parametrize("paced", [False, True], ids=["at-the-end-of-input", "paced"])
def test_the_jvm_lifecycle_emits_the_python_references_events_one_for_one(
    settings: Settings, paced: bool
) -> None:
    rng = np.random.default_rng(14)
    rows = _hits(rng)
    want = _expected(rows)
    got = _run_jvm(settings, _arrival_order(rows, rng), paced)
    actions = {e["action"] for e in want}
    reasons = {e["resolve_reason"] for e in want}
    assert actions == {"raise", "escalate", "resolve"}, "the stream exercises every action"
    assert reasons == {None, "condition_cleared", "discharged"}
    assert max(e["hit_count"] for e in want) > 3, "hits were suppressed into open alerts"
    assert any(e["score_value"] is None for e in want), "a null score is carried"
    # Paced, most quiet periods end at their own deadline's timer; at the end of input, at the
    # timer of the patient's last row, which applies everything up to the end of time.
    cleared = [e for e in got if e["resolve_reason"] == "condition_cleared"]
    on_deadline = sum(e["emitted_s"] == e["event_time_ms"] // 1000 for e in cleared)
    if paced:
        assert on_deadline > len(cleared) // 2, (on_deadline, len(cleared))
    else:
        assert on_deadline == 0, (on_deadline, len(cleared))
    for e in got:
        del e["emitted_s"]

    def key(e: dict[str, Any]) -> str:
        return str(e["alert_event_id"])

    assert sorted(got, key=key) == sorted(want, key=key)
