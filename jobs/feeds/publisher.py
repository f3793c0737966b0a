"""Publishing mapped records and dead letters from the ingestion edges (HL7 v2, FHIR).

A rejected payload travels sealed in its dead letter up to `settings.inline_payload_bytes`; a
larger one (an ORU with an embedded PDF, a bundle of thousands of entries) is stored sealed in
`settings.payload_store`, named by a keyed token of the received bytes, and the dead letter carries
its `payload_ref` instead: Kafka's message size limit (1 MB by default) never decides whether a
refusal can be recorded.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from jobs.feeds.replay import produce_raw
from jobs.runtime import kafka_io
from schemas import codec, load_schema, phi, topics
from schemas.settings import Settings

DEAD_LETTER = topics.DEAD_LETTER.schema
Encoded = tuple[str, dict[str, Any], bytes]  # topic, record, Avro value
DELIVERY_TIMEOUT_MS = 25_000  # under the gateway's STORE_TIMEOUT_S (30 s) and flush's


class Deliveries:
    """The delivery reports of one message's records (a per-record `on_delivery`), so that a
    gateway thread waits for its own message's records and no other's: a global flush under a
    lock made every connection wait behind one whose records Kafka did not confirm (feed N
    answered after N times the flush timeout while Kafka was down)."""

    def __init__(self) -> None:
        self.pending = 0
        self.failed: list[str] = []
        self._lock = threading.Lock()

    def expect(self) -> None:
        with self._lock:
            self.pending += 1

    def unexpect(self) -> None:
        with self._lock:
            self.pending -= 1

    def __call__(self, err: Any, msg: Any) -> None:
        with self._lock:
            self.pending -= 1
            if err is not None:
                self.failed.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def wait(self, producer: Any, timeout_s: float) -> None:
        """Serve delivery reports (any thread's: a poll runs the callbacks that are due) until
        every record of this message is reported; raises unless Kafka confirmed every one."""
        deadline = time.monotonic() + timeout_s
        while self.pending > 0:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"{self.pending} records undelivered after {timeout_s:.0f} s")
            producer.poll(min(left, 0.05))
        if self.failed:
            raise RuntimeError(f"{len(self.failed)} failed: {self.failed[:3]}")


class Publisher:
    """Validates records against their topic's schema and produces them keyed by patient token
    with the Kafka timestamp = `codec.record_time` (event_time, or an ADT event's later
    recorded time); `flush` raises unless Kafka confirmed every one.
    `encode` needs no Kafka (the offline check mode uses it); the producer starts on first use."""

    def __init__(self, settings: Settings, *, prefix: str = "", stage: str) -> None:
        self.settings = settings
        self.prefix = prefix
        self.stage = stage
        self.key = settings.require_phi_key()
        self.max_future_s = settings.max_future_s
        self.inline_payload_bytes = settings.inline_payload_bytes
        self.payload_store = settings.payload_store
        self._producer: Any = None

    @property
    def producer(self) -> Any:
        if self._producer is None:
            # a record Kafka has not confirmed within DELIVERY_TIMEOUT_MS is reported failed
            # within the edges' wait for it (the gateway's 30 s), so that a queued one is not
            # delivered after the AE that asked for its resend (librdkafka kept it queued for
            # 300 s); one already sent may still land: the resend carries the same event ids,
            # which the jobs deduplicate
            self._producer = kafka_io.producer(
                self.settings,
                **{
                    "linger.ms": 1,
                    "delivery.timeout.ms": DELIVERY_TIMEOUT_MS,
                    "request.timeout.ms": DELIVERY_TIMEOUT_MS - 5000,
                },
            )
        return self._producer

    def future(self, records: list[tuple[str, dict[str, Any]]]) -> list[int]:
        """The positions of the records timed further ahead than settings.max_future_s."""
        limit = datetime.now(UTC) + timedelta(seconds=self.max_future_s)
        return [i for i, (_, rec) in enumerate(records) if rec["event_time"] > limit]

    def future_reason(self, topic: str, rec: dict[str, Any]) -> str:
        """Why a record timed too far ahead is refused (`future_time`)."""
        return (
            f"{topic}: event time {rec['event_time']:%Y-%m-%dT%H:%M:%SZ} is more than "
            f"{self.max_future_s} s ahead of the gateway's clock"
        )

    def encode(self, records: list[tuple[str, dict[str, Any]]]) -> list[Encoded] | codec.Rejection:
        """Validated Avro values, or the first record's rejection. A feed's clock may run a
        little ahead; an event time further in the future than settings.max_future_s is an
        error in the message (a wrong year or zone), refused as `future_time`. A recorded time
        that far ahead (an ADT's EVN-2: a sender's test data, a wrong clock) is dropped: as the
        Kafka timestamp it would carry the feed's watermark ahead and make every later event
        late; the event keeps its event time."""
        limit = datetime.now(UTC) + timedelta(seconds=self.max_future_s)
        out = []
        for topic, rec in records:
            recorded = rec.get("recorded_time")
            if recorded is not None and recorded > limit:
                rec = rec | {"recorded_time": None}
            if rec["event_time"] > limit:
                return codec.Rejection("future_time", self.future_reason(topic, rec))
            schema = load_schema(topic)
            bad = codec.validate(schema, rec)
            if bad is not None:
                return codec.Rejection(bad.reason_code, f"{topic}: {bad.reason}")
            out.append((topic, rec, codec.encode(schema, rec)))
        return out

    def _produce(
        self, topic: str, key: bytes | None, value: bytes, ts: int, deliveries: Deliveries | None
    ) -> None:
        if deliveries is None:
            produce_raw(self.producer, topic, key, value, ts)
            return
        deliveries.expect()
        while True:
            try:
                self.producer.produce(
                    topic, key=key, value=value, timestamp=ts, on_delivery=deliveries
                )
                return
            except BufferError:
                self.producer.poll(0.1)
            except Exception:
                deliveries.unexpect()  # not queued: no report will come
                raise

    def send(
        self, encoded: list[Encoded], *, route: str = "", deliveries: Deliveries | None = None
    ) -> None:
        """Produce to `prefix + route + topic` (`route`: the non-production topics' prefix);
        with `deliveries`, their reports go there (`Deliveries.wait`), not to `flush`."""
        self.send_values(
            (
                (topic, rec["patient_token"].encode(), codec.record_time(rec), value)
                for topic, rec, value in encoded
            ),
            route=route,
            deliveries=deliveries,
        )

    def send_values(
        self,
        values: Iterable[tuple[str, bytes, datetime, bytes]],
        *,
        route: str = "",
        deliveries: Deliveries | None = None,
    ) -> None:
        """`send` for records kept as their Avro values: (topic, key: the patient token, the
        record time, which is the Kafka timestamp, the value)."""
        for topic, key, at, value in values:
            self._produce(self.prefix + route + topic, key, value, codec.epoch_ms(at), deliveries)

    def store_payload(self, payload: bytes, sealed: bytes) -> str:
        """Keep a sealed payload in the payload store; its `file:` URI. Idempotent: the same
        received bytes land in the same file."""
        self.payload_store.mkdir(parents=True, exist_ok=True)
        # named by a keyed token of the bytes: a plain digest of a small payload holding a
        # record number would give the number back to whoever guessed it
        name = phi.token(self.key, "payload", hashlib.sha256(payload).hexdigest())
        path = self.payload_store / f"{name}.{self.stage}.sealed"
        if not path.exists():
            tmp = path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(sealed)
            os.replace(tmp, path)
        return path.resolve().as_uri()

    def dead_letter(
        self,
        source: str,
        seq: int,
        reason_code: str,
        reason: str,
        payload: bytes,
        *,
        route: str = "",
        deliveries: Deliveries | None = None,
    ) -> None:
        """The rejected input, sealed (schemas.phi.seal, context = the stage) with its reason;
        by reference when larger than `inline_payload_bytes` (see the module docstring)."""
        now = datetime.now(UTC)
        sealed = phi.seal(self.key, payload, self.stage)  # raw input may name the patient
        ref = None
        if len(sealed) > self.inline_payload_bytes:
            ref, sealed = self.store_payload(payload, sealed), b""
        letter = {
            "source_topic": source,
            "source_partition": 0,
            "source_offset": seq,
            "source_timestamp": now,
            "stage": self.stage,
            "reason_code": reason_code,
            "reason": reason,
            "payload": sealed,
            "payload_ref": ref,
        }
        value = codec.encode(DEAD_LETTER, letter)
        topic = self.prefix + route + topics.DEAD_LETTER.name
        self._produce(topic, None, value, codec.epoch_ms(now), deliveries)

    def flush(self, timeout_s: float = 30.0) -> None:
        if self._producer is None:
            return
        try:
            self.producer.flush_or_raise(timeout_s)
        finally:
            self.producer.failed.clear()
