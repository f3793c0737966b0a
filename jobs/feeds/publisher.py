"""Publishing mapped records and dead letters from the ingestion edges (HL7 v2, FHIR)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.feeds.replay import produce_raw
from jobs.runtime import kafka_io
from schemas import codec, load_schema, phi, topics
from schemas.settings import Settings

DEAD_LETTER = topics.DEAD_LETTER.schema
Encoded = tuple[str, dict[str, Any], bytes]  # topic, record, Avro value


class Publisher:
    """Validates records against their topic's schema and produces them keyed by patient token
    with the Kafka timestamp = event_time; `flush` raises unless Kafka confirmed every one."""

    def __init__(self, settings: Settings, *, prefix: str = "", stage: str) -> None:
        self.prefix = prefix
        self.stage = stage
        self.key = settings.require_phi_key()
        self.max_future_s = settings.max_future_s
        self.producer = kafka_io.producer(settings, **{"linger.ms": 1})

    def encode(self, records: list[tuple[str, dict[str, Any]]]) -> list[Encoded] | codec.Rejection:
        """Validated Avro values, or the first record's rejection. A feed's clock may run a
        little ahead; an event time further in the future than settings.max_future_s is an
        error in the message (a wrong year or zone), refused as `future_time`."""
        limit = datetime.now(UTC) + timedelta(seconds=self.max_future_s)
        out = []
        for topic, rec in records:
            if rec["event_time"] > limit:
                return codec.Rejection(
                    "future_time",
                    f"{topic}: event time {rec['event_time']:%Y-%m-%dT%H:%M:%SZ} is more than "
                    f"{self.max_future_s} s ahead of the gateway's clock",
                )
            schema = load_schema(topic)
            bad = codec.validate(schema, rec)
            if bad is not None:
                return codec.Rejection(bad.reason_code, f"{topic}: {bad.reason}")
            out.append((topic, rec, codec.encode(schema, rec)))
        return out

    def send(self, encoded: list[Encoded]) -> None:
        for topic, rec, value in encoded:
            key = rec["patient_token"].encode()
            ts = codec.epoch_ms(rec["event_time"])
            produce_raw(self.producer, self.prefix + topic, key, value, ts)

    def dead_letter(
        self, source: str, seq: int, reason_code: str, reason: str, payload: bytes
    ) -> None:
        """The rejected input, sealed (schemas.phi.seal, context = the stage) with its reason."""
        now = datetime.now(UTC)
        letter = {
            "source_topic": source,
            "source_partition": 0,
            "source_offset": seq,
            "source_timestamp": now,
            "stage": self.stage,
            "reason_code": reason_code,
            "reason": reason,
            "payload": phi.seal(self.key, payload, self.stage),  # raw input may name the patient
        }
        value = codec.encode(DEAD_LETTER, letter)
        produce_raw(
            self.producer, self.prefix + topics.DEAD_LETTER.name, None, value, codec.epoch_ms(now)
        )

    def flush(self, timeout_s: float = 30.0) -> None:
        try:
            self.producer.flush_or_raise(timeout_s)
        finally:
            self.producer.failed.clear()
