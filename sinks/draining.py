"""The loop a topic consumer of this layer runs (the ClickHouse loader, the quarantine actuator):
poll batches until told to stop, or until every subscribed topic is read to its current end."""

from __future__ import annotations

import argparse
import signal
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from confluent_kafka import Consumer, TopicPartition

from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.settings import Settings

S = TypeVar("S")


def committed_consumer(settings: Settings, group_id: str, **config: Any) -> Consumer:
    """A consumer of committed records only (the jobs write transactionally) that commits its
    offsets itself, after what it read is applied; from the earliest where the group has none.
    `config`: more librdkafka properties (`max.poll.interval.ms` for a consumer that waits on
    another system between polls)."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap,
            "group.id": group_id,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            **config,
        }
    )


def command_line(doc: str | None, argv: list[str] | None, until: str) -> tuple[Settings, Any]:
    """A consumer command's arguments (`--drain`: stop once `until`; `--topic-prefix`) and
    settings, once the broker answers."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--drain", action="store_true", help=f"stop once {until}")
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    kafka_io.wait_for_broker(settings)
    return settings, a


class Draining(Generic[S]):
    """A consumer with `poll_batch` (records handled, committed) and `lag` (offsets left);
    `stats` is what it counted, `what` names it in a timeout. One that writes dead letters sets
    `producer` and `dead_letter_topic` (`produce_dead_letter`)."""

    what = "consumer"
    consumer: Any
    stats: S
    producer: Any = None
    dead_letter_topic: str = ""
    settings: Settings
    topic: str

    def read_one_topic(self, settings: Settings, name: str, prefix: str, group_id: str) -> None:
        """Consume registry topic `name` under `prefix` (committed records, `committed_consumer`)
        and write dead letters to the prefix's dead-letter topic (both made if missing)."""
        self.settings = settings
        self.topic = prefix + name
        self.dead_letter_topic = prefix + topics.DEAD_LETTER.name
        kafka_io.ensure_topics(settings, [name, topics.DEAD_LETTER.name], prefix=prefix)
        self.consumer = committed_consumer(settings, prefix + group_id)
        self.consumer.subscribe([self.topic])
        self.producer = kafka_io.producer(settings)

    def produce_dead_letter(self, m: Any, stage: str, why: codec.Rejection) -> None:
        """The dead letter of consumed message `m`, keyed by its topic (flushed by the caller
        before it commits)."""
        value = codec.encode(topics.DEAD_LETTER.schema, dead_letter(m, stage, why))
        self.producer.produce(self.dead_letter_topic, key=m.topic().encode(), value=value)

    def poll_batch(self, timeout_s: float = 1.0) -> int:
        raise NotImplementedError

    def lag(self) -> int:
        """Offsets of the topic it reads (`read_one_topic`) neither committed nor read past
        (transaction markers take offsets but are never delivered, so the read position counts
        too)."""
        return self.topic_lag(self.settings, self.topic)

    def topic_lag(self, settings: Any, topic: str, floor: Mapping[int, int] | None = None) -> int:
        """Offsets of `topic` neither committed nor read past, nor below `floor` (partition →
        offset already loaded): transaction markers take offsets but are never delivered, so
        the read position counts too."""
        ends = kafka_io.end_offsets(settings, topic)
        tps = [TopicPartition(topic, p) for p in ends]
        read = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
        total = 0
        for tp in self.consumer.committed(tps, timeout=10):
            done = max(tp.offset, read.get(tp.partition, -1), (floor or {}).get(tp.partition, 0))
            total += ends[tp.partition] - max(done, 0)
        return total

    def drain(self, *, timeout_s: float = 120.0) -> S:
        """Consume until every subscribed topic is read up to its current end."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.poll_batch(0.5) == 0 and self.lag() == 0:
                return self.stats
        raise TimeoutError(f"{self.what} did not catch up within {timeout_s} s (lag {self.lag()})")

    def run_forever(self, stop: Callable[[], bool]) -> S:
        while not stop():
            self.poll_batch(1.0)
        return self.stats

    def close(self) -> None:
        self.consumer.close()

    def run_until_signalled(self, *, drain: bool) -> S:
        """A command's loop: drain and stop, or run until SIGINT/SIGTERM; closes the consumer."""
        stopping = False

        def _stop(*_: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            return self.drain() if drain else self.run_forever(lambda: stopping)
        finally:
            self.close()


def dead_letter(m: Any, stage: str, why: codec.Rejection) -> dict[str, Any]:
    """The deadletter.v1 record of a consumed Kafka message `m` that `stage` refused."""
    _, ts = m.timestamp()
    return {
        "source_topic": m.topic(),
        "source_partition": m.partition(),
        "source_offset": m.offset(),
        "source_timestamp": datetime.fromtimestamp(ts / 1000, UTC) if ts > 0 else None,
        "stage": stage,
        "reason_code": why.reason_code,
        "reason": why.reason,
        "payload": m.value() or b"",
        "payload_ref": None,
    }
