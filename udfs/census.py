"""Bed census: where each patient is, from canonical ADT events applied in event-time order.

`PatientPlacement.apply` is the whole state machine of one patient (pure; the Flink job keys it
by patient and feeds events once the watermark has passed them). It returns the census
*changes* the event causes, as `Delta`s per unit, or an `Outcome` that says why the event changed
nothing or was refused. Occupancy only ever moves a patient out of the unit they are in, so a
unit's running sum of deltas can never go negative.

Semantics (HL7 v2.8 chapter 3 trigger events):
- admit (A01, A06): place the patient; refused if they already hold a bed (a missed discharge
  must be reconciled, not silently overwritten).
- transfer (A02): move to the new unit/bed; refused for a patient who holds no bed.
- discharge (A03, A07): free the bed; refused for a patient who holds no bed.
- update (A08): corrects the bed or unit of a placed patient (no arrival or transfer counted);
  otherwise changes nothing, nor does one of another visit naming another unit (an emergency
  or pre-admission visit's A08: `_another_visits`, as for a discharge). The price: a visit
  renumbered and moved by one A08 reads as another visit's, so the patient stays where they
  were, and that visit's discharge from the new unit is refused `not_admitted` (a dead letter
  says so) until an event of the stay's own visit or without one moves or discharges them.
- register (A04), preadmit (A05): no bed, no change.
- leave_of_absence (A21, A53), return_from_leave (A22, A52): no change: the patient keeps their
  bed while away (HL7 v2.5 3.3.21, "a bed is still assigned"), whatever PV1-3 names.
- merged_away, merged_in (a patient merge, A40, A34, A36, A18: two events, one per token, each
  naming where the patient is now): the merged record (a trauma alias, a duplicate
  registration) is the surviving record's patient. `merged_away` frees the bed the merged
  record's token holds; `merged_in` places the surviving token in the unit named (or moves it
  there, as an update does). Occupancy only: no arrival, discharge or transfer is counted, so a
  merge that names the merged record's bed leaves the census as it was. A merge that names no
  unit (it does not say where the patient is) changes nothing: the merged record keeps its bed
  and the survivor is placed by their next admission; their transfers and discharge are refused
  `not_admitted` until then. A cancel (A11-A13) whose latest change is a merge has
  `nothing_to_cancel` (but a bound A11 of the visit the merge placed, below); an A11 voids the
  stay of an admission still in the history (as after a transfer), the bed a merge placed
  included.
- an admission's cancel (A11) that names its encounter (the visit: PV1-19, compared exactly)
  is bound where the census knows the encounter of the admission or merge that placed the
  patient (the stay's): one of another encounter is refused `nothing_to_cancel` (a duplicate
  visit taken back while the real one goes on, an old one after a readmission), the stay's own
  voids the stay however many moves back its admission is. A cancel without an encounter, or
  of a stay placed without one (or restored from a census state written before stays were
  kept), cancels as below.
- void_encounter (a FHIR Encounter version `entered-in-error`: the encounter never was): the
  stay that encounter's admission (or merge) placed is voided, as by its A11, wherever the
  patient is now. Strictly bound: refused `nothing_to_cancel` where the patient's stay is
  another encounter's (a duplicate Encounter taken back while the real one goes on), was placed
  without one or by a census state from before stays were kept (which encounter it is, is not
  known), or the patient holds no bed.
- cancel_admit (A11), cancel_transfer (A12), cancel_discharge (A13): undo the patient's latest
  placement change of that kind, from the cancel's event time on: the cancelled admission's
  bed is freed (whatever unit the patient was moved to since), the patient returns to the unit
  before the cancelled transfer, or takes back the bed they were discharged from, or the one the
  A13 names (PV1-3: "the location of the patient after the cancellation has been processed...
  may be different from the patient's location prior to the erroneous discharge", HL7 v2.5
  3.3.13; the old bed given to another patient meanwhile; a unit without configured beds is
  refused `unknown_unit`, as an admission's). Census rows
  already emitted are not rewritten: they were the census as known then. Refused when the
  latest change is not of that kind.
- the same event id twice: refused as a duplicate.
- a patient without a bed is forgotten `RETENTION_MS` of event time after their last event: an
  event after that starts from nothing (what the job's state keeps, and clears, per patient).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from schemas import codec
from schemas.capacity import ALL_UNITS, Capacity

HISTORY = 16  # placement changes kept per patient for cancels
# A patient without a bed is forgotten (cancel history, seen event ids) this long in event time
# after their last event: a cancel_discharge (A13) can follow a discharge by days.
RETENTION_MS = 7 * 24 * 3600 * 1000
# the event types that name the unit they place in, and those whose unit must be a configured one
# (a merge's halves are refused together: with the survivor's refused, the merged record keeps
# its bed rather than the patient leave the census)
PLACING = ("admit", "transfer", "update", "merged_in")
UNIT_CHECKED = (*PLACING, "merged_away", "cancel_discharge")
LEAVE = ("leave_of_absence", "return_from_leave")  # the bed held: no change


class Place(NamedTuple):
    facility_id: str
    unit_id: str
    bed_id: str | None


class AdtEvent(NamedTuple):
    event_id: str
    event_type: str
    facility_id: str
    unit_id: str | None
    bed_id: str | None
    event_time_ms: int
    encounter_token: str | None = None  # the visit (HL7 PV1-19, a FHIR Encounter)
    stale: bool = False  # recorded more than RETENTION_MS after it happened (`is_stale`)

    @classmethod
    def of(cls, record: Mapping[str, Any], event_time_ms: int) -> AdtEvent:
        """The event of a canonical adt.event.v1 record, at `event_time_ms` (epoch ms, its
        record time); a discharge's unit is the one it names, else its prior location
        (`discharged_from`)."""
        return cls(
            record["event_id"],
            record["event_type"],
            record["facility_id"],
            discharged_from(record),
            record.get("bed_id"),
            event_time_ms,
            record.get("encounter_token"),
            is_stale(record, event_time_ms),
        )


def discharged_from(record: Mapping[str, Any]) -> str | None:
    """An event's unit: for a discharge that names none (PV1-3 empty), the prior location it
    names (PV1-6): where the discharge is from, which says whose visit it ends (the census job
    reads it so too, in SQL: `DISCHARGED_FROM_SQL`)."""
    unit = record.get("unit_id")
    if not unit and record["event_type"] == "discharge":
        return record.get("prior_unit_id") or unit
    return unit


DISCHARGED_FROM_SQL = (
    "CASE WHEN event_type = 'discharge' AND (unit_id IS NULL OR unit_id = '') "
    "THEN COALESCE(NULLIF(prior_unit_id, ''), unit_id) ELSE unit_id END"
)


class Delta(NamedTuple):
    """A change to one unit's census at `event_time_ms` (counts are 0 or ±1)."""

    facility_id: str
    unit_id: str
    event_time_ms: int
    occupied: int
    arrivals: int = 0
    discharges: int = 0
    transfers_in: int = 0
    transfers_out: int = 0
    cancels: int = 0


class Outcome(NamedTuple):
    """What became of an event: applied, no_change, or a refusal reason code (dead-lettered)."""

    status: str
    reason: str = ""

    @property
    def refused(self) -> bool:
        return self.status not in ("applied", "no_change")


APPLIED = Outcome("applied")


@dataclass
class PatientPlacement:
    place: Place | None = None
    history: list[tuple[str, Place | None]] = field(default_factory=list)  # (event type, before)
    seen: set[str] = field(default_factory=set)
    forget_at_ms: int | None = None  # no bed since the last event: forgotten from this time on
    stay: str | None = None  # the encounter of the admission (or merge) that placed the patient

    def apply(self, e: AdtEvent) -> tuple[Outcome, list[Delta]]:
        if self.forget_at_ms is not None and e.event_time_ms >= self.forget_at_ms:
            self.history, self.seen, self.stay = [], set(), None
        outcome, deltas = self._apply_once(e)
        self.forget_at_ms = None if self.place else e.event_time_ms + RETENTION_MS
        return outcome, deltas

    def _apply_once(self, e: AdtEvent) -> tuple[Outcome, list[Delta]]:
        if e.event_id in self.seen:
            return Outcome("duplicate", f"event {e.event_id} was already applied"), []
        if e.stale and not self._of_the_stay(e):
            return Outcome("stale", STALE_REASON), []
        outcome, deltas = self._apply(e)
        if not outcome.refused:
            self.seen.add(e.event_id)
        return outcome, deltas

    def _apply(self, e: AdtEvent) -> tuple[Outcome, list[Delta]]:
        t = e.event_time_ms
        new = Place(e.facility_id, e.unit_id, e.bed_id) if e.unit_id else None
        before = self.place
        kind = e.event_type
        if kind in ("register", "preadmit"):
            return Outcome("no_change", f"{kind} does not occupy a bed"), []
        if kind in LEAVE:
            return Outcome("no_change", f"{kind}: the bed is held while the patient is away"), []
        if kind == "admit":
            if new is None:
                return Outcome("missing_unit", "an admission must name a unit"), []
            if before is not None:
                return Outcome(
                    "already_admitted", f"patient holds a bed in {before.unit_id} already"
                ), []
            self.stay = e.encounter_token or None
            return self._move(kind, new, t, arrival=True)
        if kind in ("transfer", "discharge") and before is None:
            return Outcome("not_admitted", f"{kind} for a patient who holds no bed"), []
        if kind == "transfer":
            if new is None:
                return Outcome("missing_unit", "a transfer must name a unit"), []
            if new == before:  # a resend under a new message id: an A12 undoes the first
                return Outcome("no_change", "the patient holds that bed already"), []
            return self._move(kind, new, t)
        if kind == "discharge":
            if self._another_visits(e, new, before):
                return Outcome(
                    "not_admitted",
                    "a discharge of another encounter than the stay's, from a unit the patient "
                    "is not in (an emergency visit closed after the inpatient admission): the "
                    "stay's bed is kept",
                ), []
            return self._move(kind, None, t)
        if kind == "update":
            if before is None or new is None or new == before:
                return Outcome("no_change", "no bed or unit change"), []
            if self._another_visits(e, new, before):
                return Outcome(
                    "no_change",
                    "an update of another encounter than the stay's, naming a unit the patient "
                    "is not in (an emergency or pre-admission visit's A08): the stay's bed is "
                    "kept",
                ), []
            self.place = new
            return APPLIED, _between(before, new, t)
        if kind == "merged_away":
            if before is None:
                return Outcome("no_change", "the merged record holds no bed"), []
            if new is None:
                return Outcome(
                    "no_change", "the merge does not say where the patient is: the bed is kept"
                ), []
            return self._merge(kind, None, t)
        if kind == "merged_in":
            if new is None:
                return Outcome("no_change", "the merge names no unit: it places no one"), []
            if new == before:
                return Outcome("no_change", "the surviving record holds that bed already"), []
            if before is None:
                self.stay = e.encounter_token or None
            return self._merge(kind, new, t)
        if kind == "void_encounter":
            return self._void_encounter(e.encounter_token, t)
        if kind == "cancel_admit" and e.encounter_token and self.stay is not None:
            # bound: the cancel names its encounter and the census knows the stay's
            if e.encounter_token != self.stay:
                return Outcome(
                    "nothing_to_cancel",
                    "the cancelled admission is another encounter's than the stay's",
                ), []
            if self.place is not None:  # its admission, however many moves back
                return self._void(t)
        if kind.startswith("cancel_"):
            return self._cancel(kind.removeprefix("cancel_"), t, new)
        return Outcome("bad_event_type", f"unknown event type {kind!r}"), []

    def _of_the_stay(self, e: AdtEvent) -> bool:
        """Whether a stale event is of the stay the patient is in: they hold a bed, it is no
        merge (a merge's halves are refused together: the merged record's names no encounter),
        and it names no encounter, or the stay's, or (the census knowing none for the stay:
        placed without one, or restored from before encounters were kept) the unit they are
        in."""
        if self.place is None or e.event_type in ("merged_away", "merged_in"):
            return False
        if not e.encounter_token:
            return True
        if self.stay is not None:
            return e.encounter_token == self.stay
        return e.unit_id == self.place.unit_id

    def _another_visits(self, e: AdtEvent, at: Place | None, before: Place | None) -> bool:
        """Whether a discharge (or update) is of another encounter than the stay's: it names its
        encounter and the census knows the stay's, they differ, and it names a unit other than
        the one the patient is in (by its name: a discharge that names no facility takes the
        sender's; one without PV1-3, its PV1-6: `discharged_from`).
        Both must differ: a visit number changed during a stay (an A06 under a new account,
        interim billing) still discharges from the patient's unit."""
        return bool(
            e.encounter_token
            and self.stay is not None
            and e.encounter_token != self.stay
            and at is not None
            and before is not None
            and at.unit_id != before.unit_id
        )

    def _move(
        self, kind: str, new: Place | None, t: int, *, arrival: bool = False
    ) -> tuple[Outcome, list[Delta]]:
        before = self._remember(kind, new)
        if before is not None and new is not None and before[:2] == new[:2]:
            return APPLIED, []  # a bed move inside the unit
        out = []
        if before is not None:
            out.append(
                Delta(
                    before.facility_id,
                    before.unit_id,
                    t,
                    -1,
                    discharges=int(new is None),
                    transfers_out=int(new is not None),
                )
            )
        if new is not None:
            out.append(
                Delta(
                    new.facility_id,
                    new.unit_id,
                    t,
                    +1,
                    arrivals=int(arrival),
                    transfers_in=int(not arrival),
                )
            )
        return APPLIED, out

    def _merge(self, kind: str, new: Place | None, t: int) -> tuple[Outcome, list[Delta]]:
        """A merge's half (`merged_away`: the bed freed; `merged_in`: placed): occupancy only."""
        before = self._remember(kind, new)
        return APPLIED, _between(before, new, t)

    def _remember(self, kind: str, new: Place | None) -> Place | None:
        """Move the patient to `new`, the change kept in the history cancels read (the latest
        HISTORY); returns where they were."""
        before = self.place
        self.history = [*self.history, (kind, before)][-HISTORY:]
        self.place = new
        return before

    def _void(self, t: int) -> tuple[Outcome, list[Delta]]:
        """The stay never was (a cancelled admission): its bed is freed, its history gone."""
        voided, self.place, self.history, self.stay = self.place, None, [], None
        return APPLIED, [d._replace(cancels=1) for d in _between(voided, None, t)]

    def _void_encounter(self, encounter: str | None, t: int) -> tuple[Outcome, list[Delta]]:
        if self.place is None:
            return Outcome("nothing_to_cancel", "the patient holds no bed"), []
        if self.stay is None or not encounter:
            return Outcome(
                "nothing_to_cancel", "which encounter placed the patient is not known"
            ), []
        if self.stay != encounter:
            return Outcome("nothing_to_cancel", "the patient's stay is another encounter's"), []
        return self._void(t)

    def _cancel(self, what: str, t: int, named: Place | None) -> tuple[Outcome, list[Delta]]:
        open_stay = any(kind == "admit" for kind, _ in self.history)
        if what == "admit" and self.place is not None and open_stay:
            return self._void(t)
        if not self.history or self.history[-1][0] != what:
            last = self.history[-1][0] if self.history else "none"
            return Outcome(
                "nothing_to_cancel", f"latest placement change is {last}, not {what}"
            ), []
        _, before = self.history.pop()
        if what == "discharge" and named is not None:  # back where the A13 says
            before = named
        now = self.place
        self.place = before
        deltas = _between(now, before, t)
        return APPLIED, [d._replace(cancels=1) for d in deltas]


def _between(old: Place | None, new: Place | None, t: int) -> list[Delta]:
    """Occupancy-only deltas for a correction (no arrivals, discharges or transfers counted)."""
    if old is not None and new is not None and old[:2] == new[:2]:
        return []
    out = []
    if old is not None:
        out.append(Delta(old.facility_id, old.unit_id, t, -1))
    if new is not None:
        out.append(Delta(new.facility_id, new.unit_id, t, +1))
    return out


def check_unit(e: AdtEvent, capacity: Capacity) -> Outcome | None:
    """A refusal for an event that would place a patient in a unit with no configured beds
    (checked before the state machine; it depends on no state)."""
    if (
        e.event_type in UNIT_CHECKED
        and e.unit_id
        and (e.facility_id, e.unit_id) not in capacity.units
    ):
        return Outcome("unknown_unit", f"{e.facility_id}/{e.unit_id} has no configured capacity")
    return None


RETENTION_DAYS = RETENTION_MS // (24 * 3600 * 1000)
STALE = "stale:"  # an event type's prefix: recorded later than its reader remembers
STALE_REASON = (
    f"it happened more than {RETENTION_DAYS} days before it was recorded and is not of the stay "
    f"the patient is in: the census forgets a patient without a bed {RETENTION_DAYS} days after "
    "their last event, so it cannot tell it from a resend of an event it applied (a later FHIR "
    "Encounter version sends every earlier move again, an HL7 interface resends its backlog)"
)


def is_stale(record: Mapping[str, Any], record_ms: int) -> bool:
    """Whether an event was recorded (`record_ms`, its record time) more than `RETENTION_MS`
    after it happened (its own `event_time`). The census applies such an event only to the stay
    the patient is in (`PatientPlacement`: a discharge entered a week late frees the bed); any
    other is refused `stale`: a FHIR Encounter version stored ten days after the discharge sends
    its admission and discharge again, which the census no longer knew by their ids, and the
    discharge took the bed of the patient's next stay."""
    happened = record.get("event_time")
    return happened is not None and record_ms - codec.epoch_ms(happened) > RETENTION_MS


def stale_type_sql(after_ms: int = RETENTION_MS) -> str:
    """SQL over the decoded ADT topic (`measured_time` the event's time, `kafka_ts` its record's):
    the event type, prefixed `STALE` where it was recorded more than `after_ms` after it
    happened: `is_stale`'s retention for the census placement, the job's state TTL for the
    screening and catalog jobs' stay rule (jobs/runtime/stays.py)."""
    record = "CAST(kafka_ts AS TIMESTAMP(3))"
    late = f"measured_time < TIMESTAMPADD(SECOND, -{after_ms // 1000}, {record})"
    return f"CASE WHEN {late} THEN '{STALE}' || event_type ELSE event_type END"


UNIT_BEDS_FUNCTION = "wf_unit_beds"  # udfs/java/UnitBeds.java, registered by the census job


def capacity_sql(capacity: Capacity) -> str:
    """The capacity as the SQL string constant UnitBeds reads: facility TAB unit TAB beds."""
    lines = "\n".join(f"{f}\t{u}\t{beds}" for (f, u), beds in sorted(capacity.units.items()))
    return "'" + lines.replace("'", "''") + "'"


def unit_beds_sql(capacity: Capacity, facility: str, unit: str) -> str:
    """SQL: the staffed beds of the unit named by the columns `facility`, `unit`; NULL when
    the unit is not configured."""
    return f"{UNIT_BEDS_FUNCTION}({capacity_sql(capacity)}, {facility}, {unit})"


def facility_beds_sql(capacity: Capacity, facility: str) -> str:
    """SQL: the staffed beds of the facility named by the column `facility`."""
    return unit_beds_sql(capacity, facility, f"'{ALL_UNITS}'")


def check_unit_sql(capacity: Capacity, event_type: str, facility: str, unit: str) -> str:
    """SQL: `check_unit`'s reason (NULL: no refusal) for the event in those columns."""
    placing = ", ".join(f"'{k}'" for k in UNIT_CHECKED)
    unknown = (
        f"{event_type} IN ({placing}) AND {unit} IS NOT NULL AND {unit} <> '' "
        f"AND {unit_beds_sql(capacity, facility, unit)} IS NULL"
    )
    reason = f"{facility} || '/' || {unit} || ' has no configured capacity'"
    return f"CASE WHEN {unknown} THEN {reason} END"


SURGE_LABELS = ("normal", "moderate", "severe", "critical")


def surge_level(occupancy_pct: float, thresholds_pct: tuple[float, ...]) -> int:
    """0..len(thresholds): how many ascending thresholds the occupancy has reached."""
    return sum(occupancy_pct >= t for t in thresholds_pct)
