"""The model lifecycle's audit trail: every step (a retraining trigger, the retrain, the
candidate and its gate, registration, a role change, a shadow evaluation, a promotion or its
refusal, a rollback) is one event with who, what, why, when, the model version and the evidence.

Each event is appended to the registry (`<root>/<model>/audit.jsonl`, `Registry.append_audit`),
which is the record of truth, and then published to Kafka topic `model.audit.v1`
(schemas/model.audit.v1.avsc), which the loader lands in ClickHouse table `model_audit`. A
broker that cannot be reached does not stop a step: the event stays in audit.jsonl, the failure
is printed, and `python -m training.audit publish` sends the registry's events again (the loader
keeps one row per audit_id, so a re-sent event is not counted twice).

    python -m training.audit list sepsis-risk
    python -m training.audit publish sepsis-risk
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from schemas import codec
from schemas.settings import Settings
from schemas.topics import MODEL_AUDIT
from udfs.registry import Registry

STEPS: tuple[str, ...] = tuple(
    next(f for f in MODEL_AUDIT.schema.raw["fields"] if f["name"] == "step")["wardflow.enum"]
)
PUBLISH_TIMEOUT_S = 30.0


def person() -> str:
    """The actor of a command a person runs: `user:<login>`."""
    return f"user:{getpass.getuser()}"


def service(module: str) -> str:
    """The actor of an automated step: `service:<module>`."""
    return f"service:{module}"


@dataclass
class AuditTrail:
    """Records the steps of one run (`run_id`) by one actor. `settings` None: registry only
    (no Kafka), as in unit tests and offline tools."""

    registry: Registry
    actor: str
    settings: Settings | None = None
    topic_prefix: str = ""
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    events: list[dict[str, Any]] = field(default_factory=list)
    unpublished: bool = False  # after a failed publish, the rest of the run stays local

    def record(
        self,
        model: str,
        step: str,
        *,
        version: str | None,
        action: str,
        reason: str,
        evidence: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        if step not in STEPS:
            raise ValueError(f"unknown audit step {step!r}; one of {STEPS}")
        event = {
            "audit_id": uuid.uuid4().hex,
            "event_time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "model_name": model,
            "model_version": None if version is None else str(version),
            "step": step,
            "actor": self.actor,
            "action": action,
            "reason": reason,
            "run_id": self.run_id,
            "evidence_json": json.dumps(evidence or {}, default=str, sort_keys=True),
        }
        self.registry.append_audit(model, event)
        self.events.append(event)
        if self.settings is not None and not self.unpublished:
            self.unpublished = not publish(self.settings, [event], prefix=self.topic_prefix)
        print(f"audit: {step} {model} v{version or '-'}: {action} ({reason})", flush=True)
        return event


def avro_record(event: dict[str, Any]) -> dict[str, Any]:
    """An audit.jsonl event as a model.audit.v1 record (event_time as a datetime)."""
    return {**event, "event_time": datetime.fromisoformat(event["event_time"])}


def publish(settings: Settings, events: list[dict[str, Any]], *, prefix: str = "") -> bool:
    """Send `events` to model.audit.v1; False (and a message on stderr) when the broker did not
    take them within PUBLISH_TIMEOUT_S: audit.jsonl still holds them."""
    from jobs.runtime import kafka_io

    timeout_ms = int(PUBLISH_TIMEOUT_S * 1000)
    try:
        kafka_io.ensure_topics(settings, [MODEL_AUDIT.name], prefix=prefix)
        # No idempotent producer: it waits for the broker's transaction coordinator, and a
        # re-sent event is harmless (the loader keeps one row per audit_id).
        conf = {"message.timeout.ms": timeout_ms, "enable.idempotence": False}
        p = kafka_io.producer(settings, **conf)
        for e in events:
            p.produce(
                prefix + MODEL_AUDIT.name,
                key=e["model_name"].encode(),
                value=codec.encode(MODEL_AUDIT.schema, avro_record(e)),
            )
        p.flush_or_raise(PUBLISH_TIMEOUT_S + 5)
    except Exception as err:  # the registry's audit.jsonl is the record of truth
        print(
            f"audit: not published to {prefix + MODEL_AUDIT.name} ({err}); kept in audit.jsonl, "
            "resend with `python -m training.audit publish`",
            file=sys.stderr,
        )
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["list", "publish"])
    ap.add_argument("model", nargs="?", default=None, help="default: settings.model_name")
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    model = a.model or settings.model_name
    events = Registry(settings.model_registry).audit(model)
    if a.command == "publish":
        ok = publish(settings, events, prefix=a.topic_prefix)
        print(f"{'published' if ok else 'FAILED to publish'} {len(events)} audit events")
        raise SystemExit(0 if ok else 1)
    for e in events:
        print(
            f"{e['event_time']}  {e['step']:<18} v{e['model_version'] or '-':<4} {e['actor']:<28} "
            f"{e['action']} ({e['reason']})"
        )


if __name__ == "__main__":
    main()
