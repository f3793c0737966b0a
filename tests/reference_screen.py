"""Offline reference for the sepsis screening job, in plain Python over the same input records.

It shares the contract with the job (schemas, rule thresholds, validity table, the pure scoring
functions and the lifecycle state machine, all unit-tested on their own) but re-does in its own
way what streaming does: per-patient ordering, last-valid-value carry-forward, discharge
handling, the six rule patterns with their WITHIN bounds and skip-past-last-row semantics (the
job computes four of them as bounded-state run rules; here every pattern is matched naively).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from jobs.screening import rules as job
from schemas import codec, load_schema, topics
from udfs import census, lifecycle
from udfs.news2 import HIGH_RISK_THRESHOLD
from udfs.sepsis import (
    LACTATE_HIGH_MMOL_L,
    SCORE_COLUMNS,
    STATE_PARAMS,
    VALIDITY_H,
    contradicted,
    screen_row,
)

KIND = {
    topics.VITALS_OBSERVATION.name: "vitals",
    topics.LABS_RESULT.name: "labs",
    topics.ADT_EVENT.name: "adt",
}
ID_FIELD = {"vitals": "observation_id", "labs": "result_id", "adt": "event_id"}
FLOAT32 = {f.name for f in topics.SEPSIS_SCREEN.schema.fields if f.base == "float"}


@dataclass
class Row:
    record_id: str
    kind: str
    patient_token: str
    facility_id: str
    unit_id: str
    t: datetime  # the record time (schemas.codec.record_time), the job's event time
    values: dict[str, Any]  # raw values carried by this record
    is_discharge: bool
    state: dict[str, Any] | None = None
    measured: dict[str, datetime | None] | None = None
    scores: dict[str, int | bool] | None = None
    contradicted: str | None = None  # the oxygen parameter its state dropped (udfs.sepsis)
    taken: datetime | None = None  # when its values were measured (its event_time); None: t


def _f32(p: str, v: Any) -> Any:
    return float(np.float32(v)) if v is not None and p in FLOAT32 else v


# The screening job's state TTL by default (`Settings.state_ttl_h`): how long it remembers.
REMEMBERED_MS = 25 * 3600 * 1000


def another_visits(rec: dict[str, Any], stay: dict[str, Any], remembered_ms: int) -> bool:
    """Whether an ADT event is a discharge of another visit than the patient's stay
    (jobs/runtime/stays.py, the census's rule), a copy of an event id seen before, or an event
    recorded more than `remembered_ms` (the job's state TTL) after it happened that the state
    has seen (`_sent_again`; neither changes anything), with `stay` (the patient's, in arrival
    order: the stay's encounter, `""` where its admission named none, when its admission
    happened, the latest time a discharge ended it and whether one of its own did since it
    closed; the unit last placed in; and whether the stay is open, True, or closed by a
    discharge that ended it, False) after it."""
    seen = stay.setdefault("seen", set())
    stay["ignored"] = False  # whether this event is one the state has seen, sent again
    if rec["event_id"] in seen:  # a copy changes nothing (as the census's `duplicate`)
        return True
    seen.add(rec["event_id"])
    kind, unit = rec["event_type"], census.discharged_from(rec) or None
    encounter = rec.get("encounter_token") or None
    happened = codec.epoch_ms(rec["event_time"])
    late = codec.epoch_ms(codec.record_time(rec)) - happened > remembered_ms
    if late and _sent_again(stay, kind, encounter, happened):
        stay["ignored"] = True
        return True
    starts = kind == "admit" or (kind == "merged_in" and unit is not None)
    if starts:
        stay["encounter"], stay["start_ms"], stay["end_ms"] = encounter or "", happened, None
        stay["ended_by_own"] = False
    of_stay = stay.get("encounter")
    own = kind == "update" and (encounter is None or not of_stay or encounter == of_stay)
    open_before = stay.get("open")  # None: no admission or discharge yet
    # an A13 of the discharge that closed the stay reopens it where it says the patient is
    reopens = kind == "cancel_discharge" and open_before is False
    if (own or reopens or kind in ("admit", "transfer", "merged_in", "cancel_transfer")) and unit:
        stay["unit"] = unit
    if starts or kind == "cancel_discharge":
        stay["open"] = True
    if kind != "discharge":
        return False
    placed = stay.get("unit")
    another = bool(
        of_stay
        and encounter
        and encounter != of_stay
        and open_before is True
        and unit
        and placed
        and unit != placed
    )
    if not another:  # another visit's leaves the stay as it was (open)
        own = bool(encounter and of_stay is not None and encounter == of_stay)
        if open_before is False:  # ended again: the latest end, and any own
            stay["end_ms"] = max(stay.get("end_ms") or happened, happened)
            stay["ended_by_own"] = bool(stay.get("ended_by_own")) or own
        else:
            stay["end_ms"], stay["ended_by_own"] = happened, own
        stay["open"] = False
    return another


def _sent_again(stay: dict[str, Any], kind: str, encounter: str | None, happened: int) -> bool:
    """A stale event is one the state has seen, sent again (StayDischarge.java `sentAgain`): it
    happened before the stay began; or is an admission, or a discharge not naming the stay's
    encounter, at its start; or an admission of the stay's own encounter while it is open, or
    closed and the admission no later than its end; or, the stay closed, a discharge at or
    before the latest that ended it, or of its encounter where a discharge of its own ended it
    since it closed, or an A13 before that discharge."""
    starts, discharge = kind in ("admit", "merged_in"), kind == "discharge"
    own = bool(encounter and stay.get("encounter") and encounter == stay["encounter"])
    if starts and own and stay.get("open") is True:
        return True
    start, end = stay.get("start_ms"), stay.get("end_ms")
    if start is None:
        return False
    if happened < start or ((starts or (discharge and not own)) and happened <= start):
        return True
    if stay.get("open") is not False:
        return False
    at_or_before_end = end is not None and happened <= end
    if starts:
        return own and at_or_before_end
    if discharge:
        return at_or_before_end or (own and bool(stay.get("ended_by_own")))
    return kind == "cancel_discharge" and end is not None and happened < end


def accepted_rows(items: Sequence[tuple[str, dict[str, Any]]]) -> list[Row]:
    rows = []
    stays: dict[str, dict[str, Any]] = {}
    for topic, rec in items:
        schema = load_schema(topic)
        got = codec.check(schema, rec)
        if isinstance(got, codec.Rejection):
            continue
        rec = got.record  # its refused values null (schemas.codec, "Refused values")
        kind = KIND[topic]
        another = kind == "adt" and another_visits(
            rec, stays.setdefault(rec["patient_token"], {}), REMEMBERED_MS
        )
        rows.append(
            Row(
                record_id=rec[ID_FIELD[kind]],
                kind=kind,
                patient_token=rec["patient_token"],
                facility_id=rec["facility_id"],
                unit_id=rec.get("unit_id") or rec.get("prior_unit_id") or "unknown",
                t=codec.record_time(rec),
                values={p: _f32(p, rec.get(p)) for p in STATE_PARAMS},
                is_discharge=kind == "adt" and rec["event_type"] == "discharge" and not another,
                taken=None if kind == "adt" else rec["event_time"],
            )
        )
    return rows


def _screen_patient(rows: list[Row]) -> None:
    """Carry each parameter's latest value (the latest measured, of those the latest
    recorded) forward within its validity from when it was measured, never across a discharge;
    all records at one record time see each other (they are one state)."""
    by_time: dict[datetime, list[Row]] = defaultdict(list)
    for r in rows:
        by_time[r.t].append(r)
    last: dict[str, tuple[Any, datetime]] = {}
    discharged: datetime | None = None
    for t in sorted(by_time):
        peers = by_time[t]
        for r in peers:
            for p, v in r.values.items():
                taken = r.taken or t
                if v is not None and (p not in last or taken >= last[p][1]):
                    last[p] = (v, taken)  # the latest measured; of those, the latest known
            if r.is_discharge:
                discharged = t
        state: dict[str, Any] = {}
        measured: dict[str, datetime | None] = {}
        for p in STATE_PARAMS:
            v, at = last.get(p, (None, None))
            ok = (
                at is not None
                and t - at <= timedelta(hours=VALIDITY_H[p])
                and (discharged is None or at > discharged)
            )
            state[p], measured[p] = (v, at) if ok else (None, None)
        dropped = contradicted(state, measured)
        if dropped is not None:
            state[dropped], measured[dropped] = None, None
        scores = dict(
            zip(SCORE_COLUMNS, screen_row(*(state[p] for p in STATE_PARAMS)), strict=True)
        )
        for r in peers:
            r.state, r.measured, r.scores = state, measured, scores
            r.contradicted = dropped


def _sc(r: Row, name: str) -> int:
    assert r.scores is not None
    return r.scores[name]


Predicate = Callable[[list[Row]], bool]


def _matches(rows: list[Row], ok: Predicate, within: timedelta) -> list[tuple[int, int]]:
    """Skip-to-next-row matching: every row starts a match attempt, which ends at the first row
    that completes it, unless the WITHIN bound runs out first."""
    out = []
    for start in range(len(rows)):
        for end in range(start, len(rows)):
            if rows[end].t - rows[start].t >= within:
                break
            if ok(rows[start : end + 1]):
                out.append((start, end))
                break
    return out


def _one_per_end(
    matches: list[tuple[int, int]], cite: Callable[[list[int], int], int]
) -> list[tuple[int, int]]:
    """A run rule's hits: one per completing row, citing `cite(its starts, it)` as the start."""
    starts: dict[int, list[int]] = defaultdict(list)
    for s, e in matches:
        starts[e].append(s)
    return [(cite(ss, e), e) for e, ss in starts.items()]


def _sustained(seg: list[Row]) -> bool:
    a, c = seg[0], seg[-1]
    return (
        len(seg) == 2
        and a.kind == c.kind == "vitals"
        and _sc(a, "news2_score") >= 5
        and _sc(c, "news2_score") >= 5
        and c.t > a.t
    )


def _red_score(seg: list[Row]) -> bool:
    a, c = seg[0], seg[-1]
    return (
        len(seg) == 2
        and a.kind == c.kind == "vitals"
        and bool(_sc(a, "news2_red_flag"))
        and bool(_sc(c, "news2_red_flag"))
        and not (_sc(a, "news2_score") >= 5 and _sc(c, "news2_score") >= 5)
        and c.t > a.t
    )


def _rising(seg: list[Row]) -> bool:
    if len(seg) < 2 or any(r.kind != "vitals" for r in seg):
        return False
    s = [_sc(r, "news2_score") for r in seg]
    return all(b >= a for a, b in itertools.pairwise(s)) and s[-1] >= 5 and s[-1] >= s[0] + 3


def _sirs(seg: list[Row]) -> bool:
    return (
        len(seg) >= 2
        and all(_sc(r, "sirs_count") >= 2 for r in seg)
        and seg[-1].t - seg[0].t >= timedelta(hours=4)
    )


def _ms(t: datetime) -> int:
    return codec.epoch_ms(t)


def _hit(rule: job.Rule, first: Row, last: Row, severity: str, score: int) -> lifecycle.Hit:
    assert last.state is not None and last.measured is not None
    evidence: dict[str, Any] = {}
    for p in STATE_PARAMS:
        if last.state[p] is not None:
            at = last.measured[p]
            assert at is not None
            evidence[p] = last.state[p]
            evidence[f"{p}_measured_time"] = (
                at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
            )
    return lifecycle.Hit(
        rule.rule_id,
        rule.version,
        severity,
        last.patient_token,
        last.facility_id,
        last.unit_id,
        _ms(last.t),
        _ms(first.t),
        first.record_id,
        last.record_id,
        rule.score,
        score,
        json.dumps(evidence),
    )


def _news2_sev(x: int) -> str:
    return "high" if x >= HIGH_RISK_THRESHOLD else "medium"


def hits(rows: list[Row]) -> list[tuple[int, lifecycle.Hit | None]]:
    """Every rule's hits for one patient (rows sorted by time, record id), plus discharges."""
    out: list[tuple[int, lifecycle.Hit | None]] = []
    vit = [r for r in rows if r.kind == "vitals" or r.is_discharge]
    for s, e in _matches(vit, _sustained, timedelta(hours=3)):
        a, c = vit[s], vit[e]
        sev = _news2_sev(max(_sc(a, "news2_score"), _sc(c, "news2_score")))
        out.append((_ms(c.t), _hit(job.NEWS2_SUSTAINED, a, c, sev, _sc(c, "news2_score"))))

    for s, e in _matches(vit, _red_score, timedelta(hours=job.RED_SCORE_WITHIN_H)):
        a, c = vit[s], vit[e]
        news2 = _sc(c, "news2_score")
        sev = _news2_sev(news2) if news2 >= 5 else "low"
        out.append((_ms(c.t), _hit(job.NEWS2_RED_SCORE, a, c, sev, news2)))

    def rise_began(starts: list[int], end: int) -> int:  # the last start at the lowest score
        return max(starts, key=lambda i: (-_sc(vit[i], "news2_score"), i))

    def run_began(starts: list[int], end: int) -> int:  # the first of the unbroken run
        while end > 0 and _sc(rows[end - 1], "sirs_count") >= 2:
            end -= 1
        return end

    for s, e in _one_per_end(_matches(vit, _rising, timedelta(hours=6)), rise_began):
        a, c = vit[s], vit[e]
        out.append(
            (
                _ms(c.t),
                _hit(
                    job.NEWS2_RISING, a, c, _news2_sev(_sc(c, "news2_score")), _sc(c, "news2_score")
                ),
            )
        )
    for s, e in _one_per_end(_matches(rows, _sirs, timedelta(hours=6)), run_began):
        a, c = rows[s], rows[e]
        out.append((_ms(c.t), _hit(job.SIRS_PERSISTENT, a, c, "low", _sc(c, "sirs_count"))))
    for r in rows:
        assert r.state is not None
        lac = r.state["lactate_mmol_l"]
        if _sc(r, "qsofa_score") >= 2 and lac is not None and lac > LACTATE_HIGH_MMOL_L:
            out.append((_ms(r.t), _hit(job.QSOFA_LACTATE, r, r, "high", _sc(r, "qsofa_score"))))
        sofa = _sc(r, "sofa_partial_score")
        if sofa >= 2 and _sc(r, "sirs_count") >= 2:
            sev = "high" if sofa >= 4 else "medium"
            out.append((_ms(r.t), _hit(job.ORGAN_DYSFUNCTION, r, r, sev, sofa)))
        if r.is_discharge:
            out.append((_ms(r.t), None))
    return out


def run(items: Sequence[tuple[str, dict[str, Any]]]) -> tuple[list[Row], list[dict[str, Any]]]:
    """(screened rows, alert lifecycle events) for the accepted input records."""
    rows = accepted_rows(items)
    per_patient: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        per_patient[r.patient_token].append(r)
    events: list[dict[str, Any]] = []
    for pr in per_patient.values():
        pr.sort(key=lambda r: (r.t, r.record_id))
        _screen_patient(pr)
        by_rule: dict[str, list[tuple[int, lifecycle.Hit | None]]] = defaultdict(list)
        for at, h in hits(pr):
            if h is None:
                for rule in job.RULES:
                    by_rule[rule.rule_id].append((at, None))
            else:
                by_rule[h.rule_id].append((at, h))
        for stream in by_rule.values():
            events += lifecycle.run(stream)
    return rows, events


def canonical_evidence(evidence_json: str) -> str:
    """Evidence with floats to 4 significant digits and sorted keys: Flink writes a FLOAT with
    Java's shortest repr (39.67), Python widens the same float32 (39.66999816894531)."""
    ev = json.loads(evidence_json)
    return json.dumps(
        {k: float(f"{v:.4g}") if isinstance(v, float) else v for k, v in ev.items()},
        sort_keys=True,
    )


def assert_states_equal(got_records: list[dict[str, Any]], rows: list[Row]) -> None:
    """The job's screened states (sepsis.screen records) equal the reference rows: same records,
    scores, valid values and their measurement times (a record sent twice, by its time)."""
    order = ["record_id", "event_time"]
    got = pd.DataFrame(got_records).sort_values(order).set_index("record_id")
    want = (
        pd.DataFrame(
            [
                {
                    "record_id": r.record_id,
                    "event_time": r.t,
                    **(r.scores or {}),
                    **(r.state or {}),
                    **{f"{p}_measured_time": t for p, t in (r.measured or {}).items()},
                }
                for r in rows
            ]
        )
        .sort_values(order)
        .set_index("record_id")
    )
    assert list(got.index) == list(want.index)
    score_cols = [c for c in want.columns if c in SCORE_COLUMNS]
    pd.testing.assert_frame_equal(got[score_cols].astype("int64"), want[score_cols].astype("int64"))
    for p in STATE_PARAMS:
        pd.testing.assert_series_equal(
            got[p].astype("object").where(got[p].notna(), None),
            want[p].astype("object").where(want[p].notna(), None),
            check_names=False,
        )
        pd.testing.assert_series_equal(
            pd.to_datetime(got[f"{p}_measured_time"], utc=True),
            pd.to_datetime(want[f"{p}_measured_time"], utc=True),
            check_names=False,
        )


def assert_events_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    """The job's alert lifecycle events (alert.v2 records) equal the reference's."""

    def norm(events: list[dict[str, Any]]) -> pd.DataFrame:
        df = pd.DataFrame(events)
        for c in ("opened_time", "event_time"):
            if c in df:
                df[c] = pd.to_datetime(df[c], utc=True)
        for c in ("opened_time_ms", "event_time_ms"):
            if c in df:
                df[c.removesuffix("_ms")] = pd.to_datetime(df.pop(c), unit="ms", utc=True)
        df["evidence_json"] = df["evidence_json"].map(canonical_evidence)
        return df[sorted(df.columns)].sort_values("alert_event_id").reset_index(drop=True)

    pd.testing.assert_frame_equal(norm(got), norm(want))
