from __future__ import annotations

import json

from udfs.lifecycle import QUIET_H, Hit, Lifecycle, alert_id, run

H = 3_600_000


def hit(at_h: float, severity: str = "medium", record: str | None = None) -> Hit:
    at = int(at_h * H)
    rid = record or f"p:{at_h}"
    return Hit(
        "news2_sustained_medium",
        "2",
        severity,
        "p",
        "fac",
        "MICU",
        at,
        at - H,
        "p:first",
        rid,
        "news2_score",
        5,
        '{"heart_rate_bpm":120.0}',
    )


def test_first_hit_raises_and_later_hits_are_suppressed_into_the_open_alert() -> None:
    out = run([(int(h * H), hit(h)) for h in (0, 1, 2, 3)])
    assert [e["action"] for e in out] == ["raise", "resolve"]
    assert out[0]["alert_id"] == out[1]["alert_id"] == alert_id("news2_sustained_medium", "p", 0)
    assert out[1]["hit_count"] == 4


def test_a_higher_severity_escalates_a_lower_one_does_not() -> None:
    out = run([(0, hit(0)), (H, hit(1, "high")), (2 * H, hit(2, "medium"))])
    assert [(e["action"], e["severity"]) for e in out] == [
        ("raise", "medium"),
        ("escalate", "high"),
        ("resolve", "high"),
    ]
    assert [e["sequence"] for e in out] == [1, 2, 3]


def test_an_alert_resolves_after_the_quiet_period_at_the_event_time_it_ended() -> None:
    lc = Lifecycle()
    lc.hit(hit(0))
    assert lc.advance((QUIET_H * H) - 1) == []
    (resolved,) = lc.advance(10 * QUIET_H * H)
    assert resolved["event_time_ms"] == QUIET_H * H
    assert resolved["resolve_reason"] == "condition_cleared"
    assert lc.open is None


def test_a_hit_after_the_quiet_period_opens_a_new_alert() -> None:
    out = run([(0, hit(0)), (7 * H, hit(7))])
    assert [e["action"] for e in out] == ["raise", "resolve", "raise", "resolve"]
    assert out[0]["alert_id"] != out[2]["alert_id"]
    assert out[1]["event_time_ms"] == QUIET_H * H


def test_a_discharge_resolves_an_open_alert_at_once() -> None:
    out = run([(0, hit(0)), (2 * H, None)])
    assert [(e["action"], e["resolve_reason"], e["event_time_ms"]) for e in out] == [
        ("raise", None, 0),
        ("resolve", "discharged", 2 * H),
    ]


def test_a_discharge_without_an_open_alert_emits_nothing() -> None:
    assert run([(0, None)]) == []


def test_at_one_time_a_hit_comes_before_a_discharge() -> None:
    out = run([(H, None), (H, hit(1))])
    assert [e["action"] for e in out] == ["raise", "resolve"]


def test_the_same_completing_record_twice_is_one_hit() -> None:
    out = run([(0, hit(0)), (0, hit(0)), (H, hit(1)), (H, hit(1))])
    assert out[-1]["hit_count"] == 2


def test_events_carry_the_latest_evidence_as_json_and_deterministic_ids() -> None:
    a, b = run([(0, hit(0))]), run([(0, hit(0))])
    assert a == b
    assert json.loads(a[0]["evidence_json"]) == {"heart_rate_bpm": 120.0}
    assert len({e["alert_event_id"] for e in a}) == len(a)
