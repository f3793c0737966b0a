"""The quarantine actuator (sinks/quarantine.py) against the real Kafka broker: data-quality
events set and clear quarantines in the registry, committed records only, each event once, and
a record that is not a valid event becomes a dead letter."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Producer

from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.settings import Settings
from sinks.quarantine import Actuator
from udfs.quarantine import QuarantineRegistry

pytestmark = pytest.mark.integration

EVENTS = topics.QUALITY_EVENT
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
DEVICE = topics.VITALS_DEVICE.name


def _event(event_id: str, action: str | None, unit: str, start: datetime) -> dict[str, Any]:
    return {
        "event_id": event_id,
        "event_time": start + timedelta(minutes=30),
        "monitor": "unit_conversion",
        "state": "resolved" if action == "clear" else "open",
        "action": action,
        "severity": "critical" if action == "quarantine" else "info",
        "source_topic": DEVICE,
        "facility_id": "hospital-a",
        "unit_id": unit,
        "parameter": "temp_c",
        "statistic": "median",
        "observed": 98.4 if action == "quarantine" else 37.0,
        "expected": 37.0,
        "threshold": 45.0,
        "window_start": start,
        "window_end": start + timedelta(minutes=30),
        "records": 120,
        "sample_record_ids": None,
        "opened_event_id": None,
        "reason": "temp_c median 98.4 looks like degrees Fahrenheit",
        "evidence_json": "{}",
    }


def _send(producer: Producer, topic: str, event: dict[str, Any]) -> None:
    producer.produce(
        topic,
        key=event["source_topic"].encode(),
        value=codec.encode(EVENTS.schema, event),
        timestamp=codec.epoch_ms(event["event_time"]),
    )


def test_quality_events_set_and_clear_quarantines_once_from_committed_records(
    kafka: Settings, tmp_path: Path
) -> None:
    prefix = f"qa-{uuid.uuid4().hex[:8]}."
    topic = prefix + EVENTS.name
    kafka_io.ensure_topics(kafka, [EVENTS.name, topics.DEAD_LETTER.name], prefix=prefix)
    registry = QuarantineRegistry(tmp_path / "quarantine")
    set_micu = _event("q-1", "quarantine", "MICU", T0)
    info = _event("i-1", None, "ICU", T0)
    clear_micu = _event("c-1", "clear", "MICU", T0 + timedelta(hours=3))
    plain = kafka_io.producer(kafka)
    for e in (set_micu, info, set_micu, clear_micu):  # the quarantine is delivered twice
        _send(plain, topic, e)
    plain.produce(topic, key=DEVICE.encode(), value=b"\x03not a quality event")
    plain.flush_or_raise(30)
    # A transaction the data-quality job aborted: never applied.
    tx = Producer(
        {"bootstrap.servers": kafka.kafka_bootstrap, "transactional.id": prefix + "dq-tx"}
    )
    tx.init_transactions(30)
    tx.begin_transaction()
    _send(tx, topic, _event("q-aborted", "quarantine", "SICU", T0))
    tx.flush(30)
    tx.abort_transaction(30)

    actuator = Actuator(kafka, registry, prefix=prefix)
    try:
        stats = actuator.drain()
    finally:
        actuator.close()

    assert stats.applied == {"set": 1, "info": 1, "unchanged": 1, "clear": 1}
    assert stats.dead_lettered == 1
    (q,) = registry.all()
    assert (q.unit_id, q.set_event_id, q.clear_event_id) == ("MICU", "q-1", "c-1")
    assert (q.since, q.until) == ("2026-01-05T08:00:00.000Z", "2026-01-05T11:00:00.000Z")
    assert q.set_by == "data_quality/unit_conversion" and "Fahrenheit" in q.reason
    letters = kafka_io.read_records(
        kafka, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    assert [(d["stage"], d["reason_code"], d["source_topic"]) for d in letters] == [
        ("quarantine_actuator", "undecodable", topic)
    ]
    # Another consumer group re-reads every event: the registry does not change.
    history = registry.history()
    again = Actuator(kafka, registry, prefix=prefix, group_id="second-actuator")
    try:
        assert again.drain().applied == {"info": 1, "unchanged": 3}
    finally:
        again.close()
    assert registry.history() == history
    kafka_io.delete_topics(kafka, [EVENTS.name, topics.DEAD_LETTER.name], prefix=prefix)
