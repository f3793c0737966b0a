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
  udfs/quarantine.py); nor is a whole-source quarantine that an event written before scopes
  set, unless the clear is of the whole source (`*`): a data-quality job restored from its
  savepoint sends it when the last of those conditions ends; a job started without it holds
  none of them, sends no such clear but at the end of a duplicate storm of its own there, and
  an operator clears it (udfs/quarantine.py);
- no action: information only, nothing changes.

Reads committed records only (the data-quality job writes transactionally) and commits its offsets
after each batch has been applied; the registry is idempotent on the event id, so a batch applied
again after a crash changes nothing. A record that does not decode or validate (an unknown action,
an event time other than its Kafka timestamp) is a dead letter with the reason, never dropped.
So is an event whose action's scope cannot be read (evidence_json not a JSON object, a scope that
is neither `*` nor a field name: `malformed_event`), and the events after it are applied; it fails
closed: a malformed `quarantine` quarantines the whole source (an operator clears it: no clear of
the condition names that scope), a malformed `clear` changes nothing.

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
from udfs.quality import action_parameter
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
    """A quality event whose action's scope cannot be read: it is dead-lettered with the reason,
    after `outcome` (a malformed `quarantine` has quarantined the whole source: `set` or
    `unchanged`; None: a malformed `clear`, nothing changed)."""

    def __init__(self, reason: str, outcome: str | None) -> None:
        super().__init__(reason)
        self.outcome = outcome


def apply(registry: QuarantineRegistry, event: dict[str, Any]) -> str:
    """Apply one quality event: `set`, `clear`, `unchanged` (applied before, or nothing to
    change) or `info` (no action). Raises Malformed on an action whose evidence or scope cannot
    be read, failing closed: a `quarantine` first quarantines the whole source (idempotently on
    the event id), a `clear` changes nothing."""
    action = event.get("action")
    if action is None:
        return "info"
    key = (event["source_topic"], event["facility_id"], event["unit_id"])
    at: datetime = event["window_start"]
    by = f"data_quality/{event['monitor']}"
    try:
        parameter = action_parameter(event)
    except ValueError as e:
        if action != "quarantine":
            raise Malformed(str(e), None) from None
        reason = f"{event['reason']} (malformed event, the whole source quarantined: {e})"
        done = registry.set(*key, since=at, reason=reason, by=by, event_id=event["event_id"])
        raise Malformed(str(e), "set" if done else "unchanged") from None
    if action == "quarantine":
        done = registry.set(
            *key,
            since=at,
            reason=event["reason"],
            by=by,
            event_id=event["event_id"],
            parameter=parameter,
        )
        return "set" if done else "unchanged"
    cleared = registry.clear(
        *key,
        until=at,
        reason=event["reason"],
        by=by,
        event_id=event["event_id"],
        parameter=parameter,
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
                outcome: str | None = apply(self.registry, event)
            except Malformed as e:
                self._dead_letter(m, codec.Rejection(MALFORMED, str(e)))
                outcome = e.outcome
            if outcome is None:
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
