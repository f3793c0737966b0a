"""Thin helpers over confluent-kafka: topics from the registry, producing and reading Avro."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from typing import Any, TypeVar

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from schemas import codec
from schemas import topic as registry_topic
from schemas.settings import Settings

T = TypeVar("T")
# How long a call that the broker answers with a retriable error (a partition whose leader is
# being elected, e.g. just after the topic was created or while a broker restarts) is tried again.
RETRIABLE_FOR_S = 30.0
# Leadership errors: the partition is there, its leader is being elected or has moved, and the
# metadata refresh that librdkafka starts on them answers the next try. The Python client marks
# an error it raises from a synchronous call (get_watermark_offsets…) not retriable whatever
# its code, so the codes are named here; an error marked retriable is retried too.
LEADERSHIP_ERRORS = frozenset(
    {
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
        KafkaError.UNKNOWN_TOPIC_OR_PART,
        KafkaError.FENCED_LEADER_EPOCH,
        KafkaError.UNKNOWN_LEADER_EPOCH,
    }
)


def is_retriable(exc: KafkaException) -> bool:
    """Whether the broker's answer says to ask again (`LEADERSHIP_ERRORS`, or marked retriable)."""
    err = exc.args[0] if exc.args else None
    if not isinstance(err, KafkaError):
        return False
    return err.code() in LEADERSHIP_ERRORS or bool(err.retriable())


def retrying(call: Callable[[], T], *, for_s: float = RETRIABLE_FOR_S, pause_s: float = 0.2) -> T:
    """`call()`, tried again while it raises a retriable KafkaException (`is_retriable`) and
    `for_s` seconds have not passed; any other error, or the last retriable one, is raised."""
    deadline = time.monotonic() + for_s
    while True:
        try:
            return call()
        except KafkaException as exc:
            if not is_retriable(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(pause_s)


def admin(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap})


def wait_for_broker(settings: Settings, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            admin(settings).list_topics(timeout=5)
            return
        except KafkaException as exc:
            last = exc
            time.sleep(0.5)
    raise RuntimeError(
        f"no Kafka broker answered at {settings.kafka_bootstrap} within {timeout_s:.0f} s "
        f"(start one with `deploy/local/services.sh start kafka`): {last}"
    )


def ensure_topics(
    settings: Settings, names: list[str], *, prefix: str = "", partitions: int | None = None
) -> None:
    """Create the registry's topics (optionally under a prefix, for isolated test runs, and
    with a partition count other than the registry's), replicated as the broker's
    `default.replication.factor` says (1 on the local broker, 3 in deploy/k8s)."""
    a = admin(settings)
    existing = set(a.list_topics(timeout=10).topics)
    new = [
        NewTopic(
            prefix + n,
            num_partitions=partitions or registry_topic(n).partitions,
        )
        for n in names
        if prefix + n not in existing
    ]
    if not new:
        return
    for name, fut in a.create_topics(new, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise RuntimeError(f"could not create topic {name}: {exc}") from exc
    wait_for_leaders(a, [t.topic for t in new])


def wait_for_leaders(a: AdminClient, names: list[str], timeout_s: float = RETRIABLE_FOR_S) -> None:
    """Wait until every partition of the topics has a leader: a topic's creation returns
    before its leaders are elected, and a read of its offsets meanwhile is refused
    (NOT_LEADER_FOR_PARTITION)."""
    deadline = time.monotonic() + timeout_s
    while True:
        md = a.list_topics(timeout=10).topics
        waiting = sorted(
            n
            for n in names
            if n not in md
            or md[n].error is not None
            or not md[n].partitions
            or any(p.leader < 0 or p.error is not None for p in md[n].partitions.values())
        )
        if not waiting:
            return
        if time.monotonic() >= deadline:
            raise RuntimeError(f"no leader within {timeout_s:.0f} s for topics {waiting}")
        time.sleep(0.2)


def delete_topics(settings: Settings, names: list[str], *, prefix: str) -> None:
    """Delete `prefix + name` topics (the isolated topics of an evaluation or test run)."""
    if not prefix:
        raise ValueError("refusing to delete unprefixed (production) topics")
    a = admin(settings)  # keep the client alive until the futures resolve
    existing = set(a.list_topics(timeout=10).topics)
    doomed = sorted({prefix + n for n in names} & existing)
    if not doomed:
        return
    for fut in a.delete_topics(doomed, operation_timeout=30).values():
        fut.result()


class CheckedProducer(Producer):  # type: ignore[misc]
    """A producer that remembers failed deliveries, so that nothing is lost without an error."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.failed: list[str] = []
        super().__init__({**conf, "on_delivery": self._delivered})

    def _delivered(self, err: Any, msg: Any) -> None:
        if err is not None:
            self.failed.append(f"{msg.topic()}[{msg.partition()}]: {err}")

    def flush_or_raise(self, timeout_s: float = 60.0) -> None:
        left = self.flush(timeout_s)
        if left or self.failed:
            raise RuntimeError(
                f"{left} records undelivered after {timeout_s:.0f} s and "
                f"{len(self.failed)} failed: {self.failed[:3]}"
            )


def producer(settings: Settings, **extra: Any) -> CheckedProducer:
    conf: dict[str, Any] = {
        "bootstrap.servers": settings.kafka_bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 20,
        "batch.num.messages": 10000,
        "compression.type": "lz4",
    }
    conf.update(extra)
    return CheckedProducer(conf)


def end_offsets(settings: Settings, topic_name: str) -> dict[int, int]:
    """Each partition's end offset (its high watermark), asked again while its leader is being
    elected (`retrying`)."""
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": "wardflow-offsets",
            "enable.auto.commit": False,
        }
    )
    try:
        md = c.list_topics(topic_name, timeout=10).topics[topic_name]
        out = {}
        for p in md.partitions:
            tp = TopicPartition(topic_name, p)
            _, high = retrying(partial(c.get_watermark_offsets, tp, timeout=10))
            out[p] = high
        return out
    finally:
        c.close()


def count_records(settings: Settings, topic_name: str) -> int:
    """Committed records in the topic, counted by reading it: with transactional producers
    offsets are not records (commit and abort markers take offsets, aborted records stay)."""
    return sum(1 for _ in read_all(settings, topic_name))


@dataclass(frozen=True)
class Message:
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


def read_all(
    settings: Settings,
    topic_name: str,
    *,
    timeout_s: float = 30.0,
    isolation: str = "read_committed",
) -> Iterator[Message]:
    """Every record currently in the topic, from the earliest offset to the end offsets."""
    ends = end_offsets(settings, topic_name)
    c = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": f"wardflow-read-{time.time_ns()}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        todo = {p for p, end in ends.items() if end > 0}
        c.assign([TopicPartition(topic_name, p, 0) for p in ends])
        deadline = time.monotonic() + timeout_s
        while todo and time.monotonic() < deadline:
            for m in c.consume(num_messages=5000, timeout=0.5):
                if m.error():
                    continue
                _, ts = m.timestamp()
                yield Message(m.partition(), m.offset(), ts, m.key(), m.value())
            # Positions, not offsets seen: transaction markers take offsets but never arrive.
            for tp in c.position([TopicPartition(topic_name, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
        if todo:
            raise TimeoutError(f"could not read {topic_name} to its end within {timeout_s} s")
    finally:
        c.close()


def read_records(
    settings: Settings, topic_name: str, schema_name: str, **kw: Any
) -> list[dict[str, Any]]:
    schema = registry_topic(schema_name).schema
    out = []
    for m in read_all(settings, topic_name, **kw):
        rec = codec.decode(schema, m.value)
        if isinstance(rec, codec.Rejection):
            raise ValueError(f"{topic_name}@{m.partition}:{m.offset} does not decode: {rec.reason}")
        out.append(rec)
    return out


class TopicWatcher:
    """Reads topics from their start on a thread (read_committed) and calls
    `on_record(topic, value, wall time read)` for each record, until close()."""

    def __init__(
        self,
        settings: Settings,
        topics: list[str],
        on_record: Callable[[str, bytes, float], Any],
    ) -> None:
        self._stop = threading.Event()
        c = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap,
                "group.id": f"wardflow-watch-{uuid.uuid4().hex}",
                "auto.offset.reset": "earliest",
                "isolation.level": "read_committed",
            }
        )
        c.subscribe(topics)

        def loop() -> None:
            while not self._stop.is_set():
                for m in c.consume(500, timeout=0.05):
                    if not m.error():
                        on_record(m.topic(), m.value(), time.time())
            c.close()

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
