"""Alert lifecycle for one (patient, rule): raise → escalate → resolve, with suppression.

Rule hits come from the patterns; while an alert is open, further hits are suppressed (counted
on the alert) unless their severity is higher, which escalates it. The alert resolves when the
rule has not hit for `quiet_h` hours of event time (the condition cleared) or the patient is
discharged. Inputs must be fed in event-time order; the job buffers them until the watermark
passes, so the outcome does not depend on arrival order.

This module is the reference: the screening job runs the same rules in the JVM
(udfs/java/AlertLifecycle.java, a process table function keyed by patient, called by
`lifecycle_sql`), and tests hold the two equal.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas.rows import ALERT_EVENT, Row

SEVERITY_RANK = {"low": 1, "medium": 2, "high": 3}
QUIET_H = 6
_MS_PER_H = 3_600_000


def iso_ms(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def alert_id(rule_id: str, patient_token: str, opened_ms: int) -> str:
    """Deterministic: re-processing the same input yields the same id."""
    return hashlib.md5(f"{rule_id}|{patient_token}|{iso_ms(opened_ms)}".encode()).hexdigest()


@dataclass(frozen=True)
class Hit:
    """One completed pattern (or single-reading rule) with the values that triggered it."""

    rule_id: str
    rule_version: str
    severity: str
    patient_token: str
    facility_id: str
    unit_id: str
    event_time_ms: int
    first_event_time_ms: int
    first_record_id: str
    last_record_id: str
    score_name: str
    score_value: int
    evidence_json: str


@dataclass
class OpenAlert:
    alert_id: str
    opened_ms: int
    severity: str
    last_hit_ms: int
    hits: int
    seq: int
    last: Hit


@dataclass
class Lifecycle:
    """State of one (patient, rule) key; `feed`/`advance` return the alert events to emit."""

    quiet_h: int = QUIET_H
    open: OpenAlert | None = None

    def advance(self, now_ms: int) -> list[dict[str, Any]]:
        """Resolve an open alert whose quiet period ended at or before `now_ms`."""
        a = self.open
        if a is None or a.last_hit_ms + self.quiet_h * _MS_PER_H > now_ms:
            return []
        return [self._close(a.last_hit_ms + self.quiet_h * _MS_PER_H, "condition_cleared")]

    def hit(self, h: Hit) -> list[dict[str, Any]]:
        out = self.advance(h.event_time_ms)
        a = self.open
        if a is None:
            self.open = OpenAlert(
                alert_id(h.rule_id, h.patient_token, h.event_time_ms),
                h.event_time_ms,
                h.severity,
                h.event_time_ms,
                1,
                0,
                h,
            )
            return [*out, self._event("raise", h.event_time_ms, None)]
        if h.last_record_id == a.last.last_record_id and h.event_time_ms == a.last_hit_ms:
            return out  # the same completing record again (re-sent, or another start): no news
        a.hits += 1
        a.last_hit_ms = max(a.last_hit_ms, h.event_time_ms)
        a.last = h
        if SEVERITY_RANK[h.severity] > SEVERITY_RANK[a.severity]:
            a.severity = h.severity
            return [*out, self._event("escalate", h.event_time_ms, None)]
        return out

    def discharge(self, at_ms: int) -> list[dict[str, Any]]:
        out = self.advance(at_ms)
        if self.open is None:
            return out
        return [*out, self._close(at_ms, "discharged")]

    def _close(self, at_ms: int, reason: str) -> dict[str, Any]:
        ev = self._event("resolve", at_ms, reason)
        self.open = None
        return ev

    def _event(self, action: str, at_ms: int, reason: str | None) -> dict[str, Any]:
        a = self.open
        assert a is not None
        a.seq += 1
        h = a.last
        return {
            "alert_event_id": hashlib.md5(f"{a.alert_id}|{a.seq}".encode()).hexdigest(),
            "alert_id": a.alert_id,
            "action": action,
            "sequence": a.seq,
            "rule_id": h.rule_id,
            "rule_version": h.rule_version,
            "severity": a.severity,
            "patient_token": h.patient_token,
            "facility_id": h.facility_id,
            "unit_id": h.unit_id,
            "opened_time_ms": a.opened_ms,
            "event_time_ms": at_ms,
            "resolve_reason": reason,
            "hit_count": a.hits,
            "score_name": h.score_name,
            "score_value": h.score_value,
            "first_record_id": h.first_record_id,
            "last_record_id": h.last_record_id,
            "evidence_json": h.evidence_json,
        }


@dataclass
class PatientAlerts:
    """Every rule's lifecycle for one patient (rules are independent; a discharge ends all)."""

    quiet_h: int = QUIET_H
    rules: dict[str, Lifecycle] = field(default_factory=dict)

    def apply(self, at_ms: int, hit: Hit | None) -> list[dict[str, Any]]:
        """A hit, or a discharge (None), in order_key order."""
        if hit is not None:
            return self.rules.setdefault(hit.rule_id, Lifecycle(self.quiet_h)).hit(hit)
        return [ev for lc in self.rules.values() for ev in lc.discharge(at_ms)]

    def advance(self, now_ms: int) -> list[dict[str, Any]]:
        out = [ev for lc in self.rules.values() for ev in lc.advance(now_ms)]
        self.rules = {r: lc for r, lc in self.rules.items() if lc.open is not None}
        return out

    def deadlines(self) -> set[int]:
        """When each open alert resolves if its rule does not hit again."""
        return {
            lc.open.last_hit_ms + self.quiet_h * _MS_PER_H
            for lc in self.rules.values()
            if lc.open is not None
        }


def order_key(at_ms: int, hit: Hit | None) -> tuple[int, int, str, str]:
    """Event-time order; at equal times hits before a discharge, then by their records."""
    if hit is None:
        return (at_ms, 1, "", "")
    return (at_ms, 0, hit.last_record_id, hit.first_record_id)


def run(events: list[tuple[int, Hit | None]], quiet_h: int = QUIET_H) -> list[dict[str, Any]]:
    """Feed (time_ms, hit-or-None-for-discharge) in order_key order, then end of stream."""
    lc = Lifecycle(quiet_h)
    out: list[dict[str, Any]] = []
    for t, h in sorted(events, key=lambda e: order_key(*e)):
        out += lc.hit(h) if h is not None else lc.discharge(t)
    return out + lc.advance(2**62)


# The JVM lifecycle (udfs/java/AlertLifecycle.java), registered by the screening job under this
# name, and what it emits per alert event: ALERT_EVENT's columns after the partition key
# `patient_token` and before the framework's `rowtime` (the timer's time).
LIFECYCLE_FUNCTION = "wf_alert_lifecycle"
LIFECYCLE_OUT = Row(
    "alert_lifecycle_out",
    tuple(f for f in ALERT_EVENT.fields if f.name != "patient_token"),
    "An alert event as the JVM lifecycle emits it, less its partition key.",
)


def lifecycle_sql(source: str) -> str:
    """Alert events (ALERT_EVENT's columns, in order, and the `rowtime` of the timer that emitted
    them) from `source`: schemas.rows.RULE_HIT rows and their `rowtime`, a time attribute. Keyed
    by patient in the JVM; the same events as `run` per patient."""
    return f"""
    SELECT {ALERT_EVENT.column_list()}, rowtime
    FROM TABLE({LIFECYCLE_FUNCTION}(
      input => TABLE {source} PARTITION BY patient_token,
      on_time => DESCRIPTOR(rowtime),
      uid => 'alert-lifecycle'))"""
