"""The bed-census keyed function: udfs.census.PatientPlacement run per patient in Flink."""

from __future__ import annotations

from collections.abc import Iterator

from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from schemas.capacity import Capacity
from schemas.rows import CENSUS_OUT
from udfs.census import AdtEvent, Delta, Outcome, PatientPlacement
from udfs.flink_types import type_info

PLACING = ("admit", "transfer", "update")
RETENTION_MS = 7 * 24 * 3600 * 1000  # event time a discharged patient's history is kept (A13)

CENSUS_OUT_TYPE = type_info(CENSUS_OUT)
Pending = tuple[int, int, int, AdtEvent, tuple[str, int, int, bytes]]  # order key, event, source
Stored = tuple[PatientPlacement, list[Pending], int]  # placement, buffer, expiry (event time)


def check_unit(e: AdtEvent, capacity: Capacity) -> Outcome | None:
    """A refusal for an event that would place a patient in a unit with no configured beds."""
    if e.event_type in PLACING and e.unit_id and (e.facility_id, e.unit_id) not in capacity.units:
        return Outcome("unknown_unit", f"{e.facility_id}/{e.unit_id} has no configured capacity")
    return None


class CensusPlacement(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by patient: buffers ADT events until the watermark passes their event time, then
    applies them in (event time, partition, offset) order. Emits census deltas, one `event` row
    per applied or unchanged event and a `dead_letter` row per refused one, all as
    schemas.rows.CENSUS_OUT rows (CENSUS_OUT_TYPE)."""

    def __init__(self, capacity: Capacity) -> None:
        self.capacity = capacity

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(
            ValueStateDescriptor("placement", Types.PICKLED_BYTE_ARRAY())
        )
        self.facility_beds = {f: self.capacity.facility_beds(f) for f, _ in self.capacity.units}

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        at = ctx.timestamp()
        event = AdtEvent(
            value.event_id, value.event_type, value.facility_id, value.unit_id, value.bed_id, at
        )
        source = (value.source_topic, value.kafka_partition, value.kafka_offset, value.payload)
        stored: Stored = self.state.value() or (PatientPlacement(), [], 0)
        stored[1].append((at, value.kafka_partition, value.kafka_offset, event, source))
        self.state.update(stored)
        ctx.timer_service().register_event_time_timer(at)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        stored: Stored | None = self.state.value()
        if stored is None:
            return
        placement, pending, expiry = stored
        due = sorted((p for p in pending if p[0] <= timestamp), key=lambda p: p[:3])
        later = [p for p in pending if p[0] > timestamp]
        patient = ctx.get_current_key()
        for _, _, _, event, source in due:
            outcome = check_unit(event, self.capacity)
            deltas: list[Delta] = []
            if outcome is None:
                outcome, deltas = placement.apply(event)
            if outcome.refused:
                yield self._row("dead_letter", event, event.unit_id, patient, outcome, source)
                continue
            after = placement.place.unit_id if placement.place is not None else None
            yield self._row("event", event, after, patient, outcome, source)
            for d in deltas:
                yield self._delta(d)
        if due and placement.place is None:
            expiry = timestamp + RETENTION_MS
            ctx.timer_service().register_event_time_timer(expiry)
        if placement.place is None and not later and timestamp >= expiry > 0:
            self.state.clear()
        else:
            self.state.update((placement, later, expiry))

    def _delta(self, d: Delta) -> Row:
        return Row(
            *CENSUS_OUT.make(
                kind="delta",
                **d._asdict(),
                unit_capacity=self.capacity.units[(d.facility_id, d.unit_id)],
                facility_capacity=self.facility_beds[d.facility_id],
            )
        )

    @staticmethod
    def _row(
        kind: str,
        e: AdtEvent,
        unit: str | None,
        patient: str,
        outcome: Outcome,
        source: tuple[str, int, int, bytes],
    ) -> Row:
        source_topic, source_partition, source_offset, payload = source
        return Row(
            *CENSUS_OUT.make(
                kind=kind,
                facility_id=e.facility_id,
                unit_id=unit,
                event_time_ms=e.event_time_ms,
                event_id=e.event_id,
                event_type=e.event_type,
                patient_token=patient,
                outcome=outcome.status,
                reason=outcome.reason or None,
                source_topic=source_topic,
                source_partition=source_partition,
                source_offset=source_offset,
                payload=payload,
            )
        )
