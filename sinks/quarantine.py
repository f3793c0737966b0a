"""The quarantine actuator: applies the data-quality job's `quality.event.v1` actions to the
quarantine registry (udfs/quarantine.py), which the screening job reads in the JVM.

- action `quarantine`: the event's source (source_topic, facility_id, unit_id; `*` = every unit)
  is quarantined, in the action's scope (udfs.quality.action_parameter: the parameter its
  evidence names, e.g. temp_c of a unit-conversion fault, or every parameter: a duplicate storm,
  and every event written before scopes), from the start of the event's evidence window
  (`window_start`: the records that showed the fault are ignored too, on a replay or a restore),
  with the event's `reason`, set by `data_quality/<monitor>` and the event id;
- action `clear`: the open quarantine of that scope ends at the start of the window that showed
  the condition had ended (`window_start` of the clearing event); another scope's stays (a
  storm's clear leaves temp_c quarantined while it is in °F); an operator's quarantine is not
  the data quality job's to end (a condition that opened under it is held there:
  udfs/quarantine.py);
  a clear whose evidence says no condition of the job holds the whole source
  (`whole_source_held` false) also ends the source's whole-source quarantine that an event
  written before scopes set (a data-quality job restarted without its savepoint holds none of
  those conditions, and its clears name a parameter: that quarantine would stay open for ever;
  an operator's is never ended: udfs/quarantine.py, `clear(legacy=True)`);
- no action: information only, nothing changes.

Reads committed records only (the data-quality job writes transactionally) and commits its offsets
after each batch has been applied; the registry is idempotent on the event id, so a batch applied
again after a crash changes nothing. A record that does not decode or validate (an unknown action,
an event time other than its Kafka timestamp), or whose action cannot be applied (evidence_json
not a JSON object, a scope that is neither `*` nor a field name: `malformed_event`), is a dead
letter with the reason, never dropped, and the events after it are applied.

    python -m sinks.quarantine [--drain] [--topic-prefix P]
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from schemas import codec, topics
from schemas.settings import Settings
from sinks.draining import Draining, command_line
from udfs.quality import action_scope
from udfs.quarantine import QuarantineRegistry

log = logging.getLogger(__name__)
STAGE = "quarantine_actuator"
EVENTS = topics.QUALITY_EVENT


@dataclass
class ActuatorStats:
    applied: dict[str, int] = field(default_factory=dict)  # set / clear / unchanged / info
    dead_lettered: int = 0

    def add(self, outcome: str) -> None:
        self.applied[outcome] = self.applied.get(outcome, 0) + 1


MALFORMED = "malformed_event"


class Malformed(ValueError):
    """A quality event whose action cannot be applied: it is dead-lettered with the reason."""


def apply(registry: QuarantineRegistry, event: dict[str, Any]) -> str:
    """Apply one quality event: `set`, `clear`, `unchanged` (applied before, or nothing to
    change) or `info` (no action). Raises Malformed, changing nothing, on an action whose
    evidence or scope cannot be read."""
    action = event.get("action")
    if action is None:
        return "info"
    key = (event["source_topic"], event["facility_id"], event["unit_id"])
    at: datetime = event["window_start"]
    try:
        parameter, scoped, legacy = action_scope(event)
    except ValueError as e:
        raise Malformed(str(e)) from None
    if action == "quarantine":
        done = registry.set(
            *key,
            since=at,
            reason=event["reason"],
            by=f"data_quality/{event['monitor']}",
            event_id=event["event_id"],
            parameter=parameter,
            scoped=scoped,
        )
        return "set" if done else "unchanged"
    cleared = registry.clear(
        *key,
        until=at,
        reason=event["reason"],
        by=f"data_quality/{event['monitor']}",
        event_id=event["event_id"],
        parameter=parameter,
        legacy=legacy,
    )
    return "clear" if cleared else "unchanged"


class Actuator(Draining[ActuatorStats]):
    what = "actuator"

    def __init__(
        self,
        settings: Settings,
        registry: QuarantineRegistry,
        *,
        prefix: str = "",
        group_id: str = "wardflow-quarantine-actuator",
    ) -> None:
        self.registry = registry
        self.read_one_topic(settings, EVENTS.name, prefix, group_id)
        self.stats = ActuatorStats()

    def _dead_letter(self, m: Any, why: codec.Rejection) -> None:
        self.produce_dead_letter(m, STAGE, why)
        self.stats.dead_lettered += 1

    def poll_batch(self, timeout_s: float = 1.0) -> int:
        """Apply the next batch of events in order, then commit their offsets."""
        msgs = self.consumer.consume(num_messages=500, timeout=timeout_s)
        for m in msgs:
            if m.error():
                continue
            _, ts = m.timestamp()
            event = codec.decode_valid(EVENTS.schema, m.value(), ts if ts > 0 else None)
            if isinstance(event, codec.Rejection):
                self._dead_letter(m, event)
                continue
            try:
                outcome = apply(self.registry, event)
            except Malformed as e:
                self._dead_letter(m, codec.Rejection(MALFORMED, str(e)))
                continue
            self.stats.add(outcome)
            if outcome in ("set", "clear"):
                log.warning("quarantine %s: %s", outcome, event["event_id"])
        if msgs:
            self.producer.flush_or_raise()
            self.consumer.commit(asynchronous=False)
        return len(msgs)


def main(argv: list[str] | None = None) -> None:
    settings, a = command_line(__doc__, argv, "every event is applied")
    actuator = Actuator(settings, QuarantineRegistry.of(settings), prefix=a.topic_prefix)
    stats = actuator.run_until_signalled(drain=a.drain)
    print(f"applied {stats.applied}; dead-lettered {stats.dead_lettered}")


if __name__ == "__main__":
    main()
