"""The stay rule's JVM aggregate (udfs/java/StayDischarge.java, through jobs/runtime/stays.py's
SQL: copies numbered per event id, then the patient's window in arrival order) says which
discharges end the stay exactly where the offline reference does (tests/reference_screen
`another_visits`), on a random stream of every ADT event type: encounters named, empty or
missing, units named, empty, missing or only as the prior location, resends of earlier event
ids, events recorded longer after they happened than the job remembers (its state TTL), and
records that are not ADT events between them."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyflink.common import Types
from pyflink.table import DataTypes, Schema

from jobs.runtime.flink_env import stream_table_env
from jobs.runtime.stays import (
    adt_copies_sql,
    ends_sql,
    ignored_sql,
    register,
    stay_discharges_sql,
    visit_columns_sql,
)
from schemas import codec
from schemas.settings import Settings
from tests.reference_screen import another_visits

pytestmark = pytest.mark.slow

KINDS = (
    ("admit", 5),
    ("discharge", 6),
    ("transfer", 4),
    ("update", 3),
    ("cancel_discharge", 2),
    ("cancel_transfer", 1),
    ("merged_in", 2),
    ("merged_away", 1),
    ("cancel_admit", 1),
    ("register", 1),
)
COLUMNS = ("seq", "patient_token", "event_id", "event_type", "encounter_token", "unit_id")
COLUMNS += ("prior_unit_id",)
REMEMBERED_H = 25.0  # the job's state TTL, after which it cannot tell an event from a resend
TIMES = ("event_time", "recorded_time")  # the ADT topic's decoded measured_time and kafka_ts
START = datetime(2026, 3, 1, tzinfo=UTC)


def timed(seq: int, late_days: float = 0.0) -> dict[str, datetime]:
    """Recorded a minute after the one before, `late_days` after it happened."""
    at = START + timedelta(minutes=seq)
    return {"event_time": at - timedelta(days=late_days), "recorded_time": at}


def records(seed: int, patients: int = 40, n: int = 3000) -> list[dict[str, Any]]:
    """In arrival order: ADT events (4 % of them a resend of an earlier id of the patient) and,
    between them, records that are not ADT events (no event type)."""
    rng = random.Random(seed)
    kinds, weights = zip(*KINDS, strict=True)
    units = [None, "", "ICU", "ICU", "W4", "W4", "ED"]
    out: list[dict[str, Any]] = []
    for seq in range(n):
        patient = f"p{rng.randrange(patients)}"
        sent = [r for r in out[-400:] if r["patient_token"] == patient and r["event_type"]]
        if sent and rng.random() < 0.04:
            out.append(
                rng.choice(sent) | {"seq": seq} | {"recorded_time": timed(seq)["recorded_time"]}
            )
            continue
        adt = rng.random() < 0.6
        # one in four recorded long after it happened: half just within the TTL, half 10 days
        late = rng.choice([0.0] * 6 + [REMEMBERED_H / 24 - 0.01, 10.0]) if adt else 0.0
        out.append(
            {
                "seq": seq,
                **timed(seq, late),
                "patient_token": patient,
                "event_id": f"e{seq}",
                "event_type": rng.choices(kinds, weights)[0] if adt else None,
                "encounter_token": rng.choice([None, "", "v1", "v1", "v2", "v3"]) if adt else None,
                "unit_id": rng.choice(units) if adt else None,
                "prior_unit_id": rng.choice([None, "ICU", "W4", "ED"]) if adt else None,
            }
        )
    return out


# (event type, unit, encounter, whether the stay rule ends the stay there), per patient, first:
# an A13 of another visit's discharge moves no one, so the emergency visit's next discharge
# ends no stay; an A13 of the stay's own discharge reopens it where it says the patient is
# (their bed given away: HL7 v2.5 3.3.13), so a discharge from the old unit is another visit's
SCENARIOS = {
    "a13-other": [
        ("admit", "W4", "V1", False),
        ("discharge", "ED", "V2", False),
        ("cancel_discharge", "ED", "V2", False),
        ("discharge", "ED", "V3", False),
        ("discharge", "W4", "V1", True),
    ],
    "a13-moved": [
        ("admit", "W4", "V1", False),
        ("discharge", "W4", "V1", True),
        ("cancel_discharge", "ICU", "V1", False),
        ("discharge", "W4", "V9", False),
        ("discharge", "ICU", "V1", True),
    ],
}
# Recorded longer after they happened than the job remembers, marked by `STALE`: what the
# state has seen, sent again (a FHIR Encounter's later version, its ids forgotten), changes
# nothing: events 10 days before the stay's admission (an old visit's, whatever they name); the
# latest stay's own admission and discharge again, after it ended; an overlapping emergency
# visit's discharge again, at or before the discharge that ended the stay. What happened since
# counts: an admission registered 36 h late is the stay (the emergency visit's discharge after
# it is another visit's), an A13 entered 36 h late reopens the stay. (late days, or ("as", k):
# happened when the scenario's k-th event did)
STALE = 10.0
SCENARIOS |= {
    "stale-old-visit": [
        ("admit", "W4", "V2", False),
        ("admit", "ICU", "V1", False, STALE),
        ("discharge", "ICU", "V1", False, STALE),
        ("discharge", "W4", None, False, STALE),
        ("discharge", "W4", "V2", True),
    ],
    "stale-unknown-stay": [
        ("admit", "W4", None, False),
        ("discharge", "ICU", "V5", False, STALE),
        ("discharge", "W4", "V5", False, STALE),
        ("cancel_discharge", "W4", "V5", False, STALE),
        ("discharge", "W4", None, True),
    ],
    "late-admission": [
        ("admit", "ED", "V1", False, 2.0),
        ("admit", "ICU", "V2", False, 1.5),
        ("discharge", "ED", "V1", False),
        ("discharge", "ICU", "V2", True),
    ],
    "late-a13": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.0),
        ("cancel_discharge", "W4", "V1", False, 1.5),
        ("discharge", "ED", "V9", False),
    ],
    "resent-own-visit": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.0),
        ("admit", "W4", "V1", False, ("as", 0)),
        ("discharge", "W4", "V1", False, ("as", 1)),
        ("discharge", "W4", None, True),  # the stay closed, not reopened: ends it again
    ],
    # an observation visit ended in the bed where the inpatient visit began, at its minute
    "discharge-at-the-readmission": [
        ("admit", "W4", "V1", False, 3.0),
        ("admit", "W4", "V2", False, 2.5),
        ("discharge", "W4", "V1", False, ("as", 1)),
        ("discharge", "W4", "V2", True),
    ],
    # a disposition corrected: A03, A13, then the A03 again with its first time
    "reissued-after-a13": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.0),
        ("cancel_discharge", "W4", "V1", False),
        ("discharge", "W4", "V1", True, ("as", 1)),
    ],
    # a later version times the visit's admission or discharge otherwise (the current
    # location's start, its end rather than period.end)
    "own-visit-retimed": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.0),
        ("discharge", "W4", "V1", False, 1.5),
        ("discharge", "W4", None, True),
    ],
    "own-admission-retimed": [
        ("admit", "W4", "V1", False, 3.0),
        ("admit", "ICU", "V1", False, 1.5),  # the same visit: the patient is still on W4
        ("discharge", "ICU", "V9", False),
    ],
    # an A13 timed before the discharge that last ended the stay
    "old-a13-closed": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.5),
        ("discharge", "W4", None, True, 2.0),
        ("cancel_discharge", "W4", "V1", False, ("as", 1)),
        ("discharge", "ED", "V9", True),
    ],
    # a readmission under the same visit number, registered late
    "readmission-same-number": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.0),
        ("admit", "W4", "V1", False, 1.5),
        ("discharge", "ED", "V9", False),
    ],
    # a short visit back-entered: admitted and discharged at one minute
    "short-visit-back-entered": [
        ("admit", "W4", "V1", False, 2.0),
        ("discharge", "W4", "V1", True, ("as", 0)),
        ("discharge", "ED", "V9", True),
    ],
    # an A13 timed as the discharge it cancels (EVN-6), entered late
    "conformant-late-a13": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", "V1", True, 2.0),
        ("cancel_discharge", "W4", "V1", False, ("as", 1)),
        ("discharge", "ED", "V9", False),
    ],
    # closed by a discharge naming no visit, then the stay's own A03 back-entered
    "closed-by-another": [
        ("admit", "W4", "V1", False, 3.0),
        ("discharge", "W4", None, True, 2.5),
        ("discharge", "W4", "V1", True, 2.0),
    ],
    # the emergency visit's A03 entered within the TTL after the inpatient discharge, timed
    # before it (the stay ended again, its end not moved back); days later the inpatient
    # visit's discharge resent: still the one that ended the stay
    "ended-again-earlier": [
        ("admit", "ED", "V9", False, 1.0),
        ("admit", "W4", "V1", False, 0.9),
        ("discharge", "W4", "V1", True, 0.5),
        ("discharge", "ED", "V9", True, 0.8),
        ("discharge", "W4", "V1", False, ("as", 2, 3.0)),
    ],
    # a corrected disposition (A03, A13, A03 at one time) replayed after its ids are forgotten:
    # its first A03 is sent again, its A13 reopens and its A03 ends the stay again (an A13
    # cannot be told from a genuine one cancelling the re-issued discharge)
    "replayed-correction": [
        ("admit", "W4", "V1", False, 1.0),
        ("discharge", "W4", "V1", True, 0.5),
        ("cancel_discharge", "W4", "V1", False, ("as", 1)),
        ("discharge", "W4", "V1", True, ("as", 1)),
        ("discharge", "W4", "V1", False, ("as", 1, 3.0)),
        ("cancel_discharge", "W4", "V1", False, ("as", 1, 3.0)),
        ("discharge", "W4", "V1", True, ("as", 1, 3.0)),
        ("discharge", "ED", "V9", True),  # closed: ends it again
    ],
    "overlap-late-discharge": [
        ("admit", "ED", "V1", False, 3.0),
        ("admit", "ICU", "V2", False, 2.9),
        ("discharge", "ED", "V1", False, 2.8),
        ("discharge", "ICU", "V2", True, 1.5),
        ("discharge", "ED", "V1", False, ("as", 2)),
    ],
}


def scenario_records(start: int) -> list[dict[str, Any]]:
    out = []
    for patient, events in SCENARIOS.items():
        mine: list[dict[str, Any]] = []
        for kind, unit, encounter, _, *late in events:
            seq = start + len(out)
            times = timed(seq, *(late if late and isinstance(late[0], float) else ()))
            if late and isinstance(late[0], tuple):  # ("as", k[, days]): when the k-th happened
                _, k, *later = late[0]
                times["event_time"] = mine[k]["event_time"]
                times["recorded_time"] += timedelta(days=later[0] if later else 0.0)
            out.append(
                {
                    "seq": seq,
                    **times,
                    "patient_token": patient,
                    "event_id": f"s{seq}",
                    "event_type": kind,
                    "encounter_token": encounter,
                    "unit_id": unit,
                    "prior_unit_id": None,
                }
            )
            mine.append(out[-1])
    return out


def expected(recs: list[dict[str, Any]]) -> dict[int, tuple[bool, bool]]:
    """Per record: (whether it ends the stay, whether it is a stale event the state has seen)."""
    stays: dict[str, dict[str, Any]] = {}
    out = {}
    for rec in recs:
        if rec["event_type"] is None:
            out[rec["seq"]] = (False, False)
            continue
        stay = stays.setdefault(rec["patient_token"], {})
        another = another_visits(rec, stay, round(REMEMBERED_H * 3_600_000))
        out[rec["seq"]] = (rec["event_type"] == "discharge" and not another, stay["ignored"])
    return out


def test_the_jvm_stay_rule_ends_the_stay_at_the_discharges_the_reference_does(
    settings: Settings,
) -> None:
    recs = records(seed=11)
    recs += scenario_records(len(recs))
    env, t_env = stream_table_env(settings, connectors=False)
    env.set_parallelism(1)  # one path: the window sees the records in the order sent
    register(t_env)
    strings = [Types.STRING()] * (len(COLUMNS) - 1)
    types = Types.ROW_NAMED(
        [*COLUMNS, *TIMES], [Types.LONG(), *strings, Types.LONG(), Types.LONG()]
    )
    schema = Schema.new_builder().column("seq", DataTypes.BIGINT())
    for c in COLUMNS[1:]:
        schema = schema.column(c, DataTypes.STRING())
    for c in TIMES:
        schema = schema.column(c, DataTypes.BIGINT())
    # as the decoded ADT topic has them: the event's time and the Kafka timestamp (its record's)
    schema = schema.column_by_expression(
        "measured_time", "CAST(TO_TIMESTAMP_LTZ(event_time, 3) AS TIMESTAMP(3))"
    ).column_by_expression("kafka_ts", "TO_TIMESTAMP_LTZ(recorded_time, 3)")
    ms = [tuple(r[c] for c in COLUMNS) + tuple(codec.epoch_ms(r[t]) for t in TIMES) for r in recs]
    stream = env.from_collection(ms, types)
    t_env.create_temporary_view("sent", t_env.from_data_stream(stream, schema.build()))
    # every record through the copy count (the others' ids are their own): one path, in order
    union = f"""
        SELECT seq, patient_token, {visit_columns_sql(True, REMEMBERED_H)}
        FROM ({adt_copies_sql("sent")})"""
    query = f"SELECT seq, {ends_sql()}, {ignored_sql()} FROM ({stay_discharges_sql(union)})"
    with t_env.execute_sql(query).collect() as rows:
        both = {int(r[0]): (bool(r[1]), bool(r[2])) for r in rows}
    assert both == expected(recs)
    got = {seq: ends for seq, (ends, _) in both.items()}
    want = {seq: ends for seq, (ends, _) in expected(recs).items()}
    assert sum(ignored for _, ignored in both.values()) > 20  # stale events the state has seen
    # not vacuous: discharges that end the stay, and first copies of another visit's
    firsts = {r["event_id"]: r["seq"] for r in reversed(recs)}
    discharges = [r for r in recs if r["event_type"] == "discharge"]
    ended = sum(want[r["seq"]] for r in discharges)
    others = sum(not want[r["seq"]] and firsts[r["event_id"]] == r["seq"] for r in discharges)
    assert ended > 200 and others > 20
    stale = [
        r
        for r in discharges
        if r["recorded_time"] - r["event_time"] > timedelta(hours=REMEMBERED_H)
    ]
    assert sum(want[r["seq"]] for r in stale) > 5 and sum(not want[r["seq"]] for r in stale) > 10
    scenarios = recs[-sum(len(v) for v in SCENARIOS.values()) :]
    ends = [e[3] for events in SCENARIOS.values() for e in events]
    assert [got[r["seq"]] for r in scenarios] == ends
