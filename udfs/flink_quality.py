"""The data-quality monitors in Flink keyed process functions, at window rate.

Keyed by facility: one `udfs.quality.FacilityMonitor` in value state holds a
`udfs.quality.SourceMonitor` per source (topic|facility|unit) of the facility. Each
QUALITY_WINDOW row goes through its source's monitor, and an event-time timer is set where the
facility's first judged source turns silent unless another window comes
(udfs.quality.SILENCE_MIN). A timer that fires
because the input ended (the watermark jumps to its maximum at the end of a bounded run) is not
silence and raises nothing.

The state is pickled (PICKLED_BYTE_ARRAY) and restored by unpickling into the classes of the running
version, which sets the attributes the old object had and no others: a field added to a pickled
dataclass needs a default (a class attribute) that means what the old state meant
(udfs.quality.Open.scope: None, the whole source's quarantine, as every quarantine was before).

In: schemas.rows.MONITOR_WINDOW rows (by name), their event time as the record timestamp.
Out: schemas.rows.QUALITY_EVENT rows (QUALITY_EVENT_TYPE).

Both read the job's schemas.rows.MONITOR_WINDOW rows keyed by facility: a source's window, or a
device's (`device_id` set), which QualityMonitor leaves to `FrozenFeedMonitor`. That one runs a
`udfs.quality.FrozenFeed` per device of the facility (udfs.quality.FrozenFeeds) over the device
windows the job's SQL hands on (only those that repeat a device's values and the one after
them: window rate, for the few devices whose readings hold still), with the facility's whole
sources' windows as the clock for a device falling silent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor

from schemas import rows
from udfs import flink_types, quality

QUALITY_EVENT_TYPE = flink_types.type_info(rows.QUALITY_EVENT)
END_OF_INPUT_MS = 2**63 - 1  # Flink's MAX_WATERMARK


def window_of(r: Any) -> quality.Window:
    refused = json.loads(r.refused_json or "{}")
    return quality.Window(
        source_topic=r.source_topic,
        facility_id=r.facility_id,
        unit_id=r.unit_id,
        start_ms=int(r.window_start_ms),
        end_ms=int(r.window_end_ms),
        records=int(r.records),
        distinct_ids=int(r.distinct_ids),
        refused={k: int(v) for k, v in refused.items() if v},
        parameters=quality.parse_parameters(r.params_json),
        sample_ids=r.sample_ids,
    )


class _FacilityMonitors(KeyedProcessFunction):  # type: ignore[misc]
    """What both monitors keyed by facility share: the thresholds, and each topic's silence."""

    def __init__(
        self,
        silence_min: Mapping[str, float] | None = None,
        thresholds: quality.Thresholds | None = None,
    ) -> None:
        self.silence_min = dict(silence_min or quality.SILENCE_MIN)
        self.thresholds = thresholds or quality.Thresholds()

    def _silence(self, topic: str) -> float:
        return self.silence_min.get(topic, max(self.silence_min.values()))


class QualityMonitor(_FacilityMonitors):
    """Per facility: its sources' windows through their monitors, in event-time order
    (udfs.quality.FacilityMonitor), at timers on the windows' times; a timer where a source
    turns silent lets the watermark be the clock when the whole facility is quiet."""

    def __init__(
        self,
        silence_min: Mapping[str, float] | None = None,
        thresholds: quality.Thresholds | None = None,
        reference_path: str | None = None,
    ) -> None:
        super().__init__(silence_min, thresholds)
        self.reference_path = reference_path

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(
            ValueStateDescriptor("facility", Types.PICKLED_BYTE_ARRAY())
        )
        path = Path(self.reference_path) if self.reference_path else quality.REFERENCE_FILE
        self.reference = quality.load_reference(path)

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        if value.device_id is not None:  # a device's window: FrozenFeedMonitor's
            return iter(())
        fac: quality.FacilityMonitor = self.state.value() or quality.FacilityMonitor()
        fac.add(window_of(value))
        self.state.update(fac)
        ctx.timer_service().register_event_time_timer(ctx.timestamp())
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        fac: quality.FacilityMonitor | None = self.state.value()
        if fac is None:
            return
        live = ctx.timer_service().current_watermark() < END_OF_INPUT_MS
        events = fac.advance(
            timestamp + 1,
            self.reference,
            self.thresholds,
            self._silence,
            watermark_clock=live,
        )
        check = fac.silence_check_ms(self._silence, self.thresholds)
        if live and check is not None and check - 1 > timestamp:
            ctx.timer_service().register_event_time_timer(check - 1)
        self.state.update(fac)
        for ev in events:
            yield Row(*(ev[n] for n in rows.QUALITY_EVENT.columns))


class FrozenFeedMonitor(_FacilityMonitors):
    """Per facility: its devices' windows that repeat their values through their
    udfs.quality.FrozenFeed, in event-time order (udfs.quality.FrozenFeeds), at timers on the
    windows' times; the facility's windows of its whole sources (unit `*`) are the clock for a
    device falling silent, and a timer where a device's run would end as silence lets the
    watermark be the clock when the whole facility is quiet. Other windows are not its own."""

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(
            ValueStateDescriptor("devices", Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        if value.device_id is not None:
            item: quality.DeviceWindow | quality.Tick = quality.parse_device_window(value)
        elif value.unit_id == quality.WHOLE_FACILITY:
            item = quality.Tick(int(value.window_end_ms))
        else:
            return iter(())
        feeds: quality.FrozenFeeds = self.state.value() or quality.FrozenFeeds()
        feeds.add(item)
        self.state.update(feeds)
        ctx.timer_service().register_event_time_timer(ctx.timestamp())
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        feeds: quality.FrozenFeeds | None = self.state.value()
        if feeds is None:
            return
        live = ctx.timer_service().current_watermark() < END_OF_INPUT_MS
        events = feeds.advance(timestamp + 1, self.thresholds, self._silence, watermark_clock=live)
        check = feeds.silence_check_ms(self._silence)
        if live and check is not None and check - 1 > timestamp:
            ctx.timer_service().register_event_time_timer(check - 1)
        self.state.update(feeds)
        for ev in events:
            yield Row(*(ev[n] for n in rows.QUALITY_EVENT.columns))
