"""Which ADT discharges end the patient's stay, for the jobs that end a stay's state at one
(jobs/sepsis_screen.py, jobs/model_scoring.py): SQL over the union of a job's accepted records.

A discharge of another visit than the stay's ends no stay (the screening state and the catalog's
stay go on; its alerts are not resolved, no readmission is scored): it names an encounter other
than the stay's and a unit other than the one the patient was last placed in, an emergency
visit closed after the inpatient admission. The census's rule (udfs/census.py,
`_another_visits`; both must differ: a visit number changed during a stay still discharges; a
discharge without PV1-3 is from its PV1-6: `census.DISCHARGED_FROM_SQL`).

Decided per patient in the order their records arrive (for one ADT feed, the order it sent
them), from what their ADT events so far say, by a JVM aggregate (`STAY_DISCHARGE_SQL`,
udfs/java/StayDischarge.java) of a processing-time OVER window over all the patient's records
(it emits at once, keeps the rowtime, and every record of the patient keeps its state from the
job's state TTL, as it keeps the screening state; the screening job computes it in the window
that counts the patient's arrivals, `tables.merged_late_views`, so it costs no operator of its
own). Its state per patient, two strings, two flags and two times (and the latest row's
result):

- the stay's encounter: that of the latest admission, or merge naming a unit; when that
  admission happened and the latest time a discharge ended the stay (their event times), and
  whether a discharge naming its encounter ended it since it closed;
- the unit last placed in: by an admission, transfer, merge or cancelled transfer, an A13 of
  the discharge that closed the stay (where it says the patient is, as in the census), or an
  update (A08) of the stay's visit (or of none; another visit's moves no one, as in the census);
- whether the stay is open: the latest of the admissions, cancelled discharges (A13, which
  reopen it) and the discharges that ended it, as it was before the record. A discharge of
  another visit leaves it as it was (open), nor does another visit's after it end it; a
  discharge while it is closed ends it again (whatever its visit: no state is left to end).

An ADT event recorded longer after it happened than the job remembers (its state TTL: the copy
count below forgets an event id, the rule its patient, after that long without a record) may be
one it has forgotten, sent again: a FHIR Encounter's later version (a billing update of a visit
closed days ago) sends its admission and discharge again, and the discharge ended the current
stay (its screening state and alerts; in the catalog, the admission superseded the stay). Such
an event changes nothing where the state has seen it: it happened before the stay began (by the
event time of the stay's admission: an earlier visit's, whatever it names); or it is an
admission, or a discharge not naming the stay's encounter, at that time (a discharge at the
admission's millisecond is the visit before's); or an admission of the stay's own encounter
while the stay is open (a later version times it at the current location's start), or closed and
no later than the discharge that ended it; or, the stay closed, a discharge at or before the
latest that ended it (the stay's own, or an overlapping emergency visit's, sent again), or of
its encounter where a discharge of its own ended it since it closed, or an A13 before that
discharge. Any other counts as any event does, however late it was entered: an admission
registered a day late (downtime back-entry, PV1-44 hours back) is the stay from then on, a
readmission under the same visit number too; an A13 entered late (timed, as HL7 has it, as the
discharge it cancels) reopens the stay; a discharge re-issued after an A13 with its first time
ends it again (a cancelled discharge an interface resends after its id is forgotten does too,
and so does an overlapping visit's discharge resent after an A13; a corrected disposition, A03,
A13, A03, replayed after its ids are forgotten reopens and ends the stay again: in the catalog,
a second readmission score). Where the job holds no stay for the patient (none seen, or none
within the TTL) every event counts, as before: an old visit sent again then starts and ends a
stay of its own (in the catalog, a second readmission score of that visit).

An ADT event sent again under its id (an HL7 resend or replay, a FHIR Encounter's later version
sending its earlier events again) changes nothing, as in the census (`duplicate`): each ADT
source's events are numbered by copy first (`adt_copies_sql`), and only a first copy counts
(a resent discharge of a stay an A13 reopened, or of the visit before a readmission, ended the
stay; a resent admission or transfer moved the patient back).

Where the census differs: it holds a placement, so an event it refuses or ignores (an
admission while placed, a duplicate visit's: `already_admitted`; a merge of a placed patient)
changes nothing there, and a patient discharged and then discharged again by another visit's is
refused; here an admission always names the stay (so the stay's own discharge after a duplicate
visit's admission counts as another visit's), and a discharge whose stay is closed ends it again
(no state is left to end). A cancelled admission (A11) or transfer (A12) is not undone here.
"""

from __future__ import annotations

from typing import Any

from udfs import java_decode
from udfs.census import DISCHARGED_FROM_SQL, STALE, stale_type_sql

# The columns the jobs' unions carry for the rule, with their types (null on records that are
# not ADT events, and the event type null on a later copy of an ADT event: it changes nothing).
VISIT_COLUMNS = {
    "visit_event": "STRING",
    "visit_encounter": "STRING",
    "visit_unit_id": "STRING",
    "visit_time": "TIMESTAMP(3)",  # when the event happened (its own event time)
}
STAY_DISCHARGE_FUNCTION = "wf_stay_discharge"  # io.wardflow.udf.StayDischarge
# What the record does to the patient's stay (module docstring), an INT: `ENDS` for an ADT
# discharge that ends it, `IGNORED` for a stale event it has seen (sent again), 0 for any other
# record. An aggregate for an OVER window of the patient's records (`VISIT_COLUMNS`) in arrival
# order, `ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW`.
STAY_DISCHARGE_SQL = f"{STAY_DISCHARGE_FUNCTION}({', '.join(VISIT_COLUMNS)})"
STAY_OUTCOME = "stay_outcome"  # its column in `stay_discharges_sql`
ENDS, IGNORED = 1, 2  # StayDischarge.java's ENDS and IGNORED


def register(t_env: Any) -> None:
    """The rule's JVM aggregate, for `STAY_DISCHARGE_SQL` (the UDF jar is the job's)."""
    t_env.create_java_temporary_system_function(
        STAY_DISCHARGE_FUNCTION, java_decode.STAY_DISCHARGE_CLASS
    )


def adt_copies_sql(source: str) -> str:
    """An ADT source's accepted records (`source`, a table or subquery) with `visit_copy`:
    which copy of its event id each is, in arrival order (1: the first; an HL7 message sent
    again, a FHIR Encounter's later version sending its earlier events again, keep their ids),
    by a processing-time window over the ADT events alone (one counter per event id, for the
    job's state TTL; a copy later than that counts as a first)."""
    return f"""
    SELECT *, COUNT(*) OVER (PARTITION BY patient_token, event_id ORDER BY adt_arrival
                             ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS visit_copy
    FROM (SELECT *, PROCTIME() AS adt_arrival FROM {source})"""


def visit_columns_sql(adt: bool, remembered_h: float = 0.0) -> str:
    """`VISIT_COLUMNS` of an ADT source's records (`adt`: from `adt_copies_sql`; `remembered_h`,
    the job's state TTL: `census.stale_type_sql`), or nulls for another's."""
    if not adt:
        return ", ".join(f"CAST(NULL AS {t}) AS {c}" for c, t in VISIT_COLUMNS.items())
    if remembered_h <= 0:
        raise ValueError("an ADT source's visit columns need the job's state TTL (remembered_h)")
    return (
        f"CASE WHEN visit_copy = 1 THEN {stale_type_sql(round(remembered_h * 3_600_000))} END "
        "AS visit_event, "
        "NULLIF(encounter_token, '') AS visit_encounter, "
        f"NULLIF({DISCHARGED_FROM_SQL}, '') AS visit_unit_id, "
        "measured_time AS visit_time"
    )


def ends_sql() -> str:
    """SQL: whether the record is a discharge that ends the stay."""
    return f"{STAY_OUTCOME} = {ENDS}"


def ignored_sql() -> str:
    """SQL: whether the record is a stale event the rule has seen, sent again (no change)."""
    return f"{STAY_OUTCOME} = {IGNORED}"


def discharge_sql() -> str:
    """SQL: whether a first copy's `visit_event` is a discharge, stale or not."""
    return f"visit_event IN ('discharge', '{STALE}discharge')"


def stay_discharges_sql(source: str) -> str:
    """`source` (a union with `VISIT_COLUMNS` and `patient_token`) with `STAY_OUTCOME`, in a
    window of its own (`register` first)."""
    return f"""
    SELECT *, {STAY_DISCHARGE_SQL} OVER (
                PARTITION BY patient_token ORDER BY visit_arrival
                ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW) AS {STAY_OUTCOME}
    FROM (SELECT *, PROCTIME() AS visit_arrival FROM ({source}))"""
