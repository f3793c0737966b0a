"""The bed-census keyed function: udfs.census.PatientPlacement run per patient in Flink."""

from __future__ import annotations

from collections.abc import Iterator

from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from schemas.capacity import Capacity
from udfs.census import AdtEvent, Delta, Outcome, PatientPlacement

PLACING = ("admit", "transfer", "update")
RETENTION_MS = 7 * 24 * 3600 * 1000  # event time a discharged patient's history is kept (A13)

CENSUS_OUT_FIELDS = (
    ("kind", Types.STRING()),  # delta | event | dead_letter
    ("facility_id", Types.STRING()),
    ("unit_id", Types.STRING()),
    ("event_time_ms", Types.LONG()),
    ("occupied", Types.INT()),
    ("arrivals", Types.INT()),
    ("discharges", Types.INT()),
    ("transfers_in", Types.INT()),
    ("transfers_out", Types.INT()),
    ("cancels", Types.INT()),
    ("unit_capacity", Types.INT()),
    ("facility_capacity", Types.INT()),
    ("event_id", Types.STRING()),
    ("event_type", Types.STRING()),
    ("patient_token", Types.STRING()),
    ("outcome", Types.STRING()),
    ("reason", Types.STRING()),
    ("source_topic", Types.STRING()),
    ("source_partition", Types.INT()),
    ("source_offset", Types.LONG()),
    ("payload", Types.PRIMITIVE_ARRAY(Types.BYTE())),
)
CENSUS_OUT_TYPE = Types.ROW_NAMED(
    [n for n, _ in CENSUS_OUT_FIELDS], [t for _, t in CENSUS_OUT_FIELDS]
)
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
    per applied or unchanged event and a `dead_letter` row per refused one."""

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
            "delta",
            d.facility_id,
            d.unit_id,
            d.event_time_ms,
            d.occupied,
            d.arrivals,
            d.discharges,
            d.transfers_in,
            d.transfers_out,
            d.cancels,
            self.capacity.units[(d.facility_id, d.unit_id)],
            self.facility_beds[d.facility_id],
            *(None for _ in range(9)),
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
        return Row(
            kind,
            e.facility_id,
            unit,
            e.event_time_ms,
            *(None for _ in range(8)),
            e.event_id,
            e.event_type,
            patient,
            outcome.status,
            outcome.reason or None,
            *source,
        )
