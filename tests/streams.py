"""Records for jobs under test over Kafka: the stream's end, produced as a live feed would."""

from __future__ import annotations

import time
from collections import Counter
from datetime import datetime, timedelta
from typing import Any

from jobs import sepsis_screen
from jobs.runtime import kafka_io
from schemas import TOPICS, codec, load_schema, topics
from schemas.settings import Settings
from schemas.topics import Topic


def sentinels(
    items: list[tuple[str, dict[str, Any]]], at: datetime | None = None
) -> list[tuple[int, str, dict[str, Any]]]:
    """(partition, topic, record): one record per partition of each input topic, 30 days after
    the last item's time or at `at` (then moving every partition's watermark to it)."""
    at = at or max(r["event_time"] for _, r in items) + timedelta(days=30)
    out = []
    for topic in sepsis_screen.JOB.input_topics:
        for p in range(TOPICS[topic].partitions):
            rec: dict[str, Any] = {f.name: None for f in load_schema(topic).fields if f.nullable}
            rec |= {"patient_token": f"sentinel-{p}", "facility_id": "end", "event_time": at}
            rec |= {"source": "test", "unit_id": "end"}
            if topic == topics.ADT_EVENT.name:
                rec |= {"event_id": f"end-{p}", "event_type": "discharge"}
                rec |= {"source_message_type": "test", "unit_id": None}
            elif topic == topics.LABS_RESULT.name:
                rec |= {"result_id": f"end-labs-{p}"}
            elif topic == topics.VITALS_DEVICE.name:
                rec |= {"device_id": f"end-mon-{p}", "bed_id": "end", "heart_rate_bpm": 70.0}
            else:
                rec |= {"observation_id": f"end-vitals-{p}", "heart_rate_bpm": 70.0}
            out.append((p, topic, rec))
    return out


def until(what: str, found: Any, timeout_s: float = 120.0) -> Any:
    """found() once it is truthy; polled every half second."""
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} after {timeout_s} s")
        time.sleep(0.5)
    return value


def produce(kafka: Settings, prefix: str, records: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Records to explicit partitions, each with its event time as the record timestamp."""
    p = kafka_io.producer(kafka)
    for part, topic, rec in records:
        value = codec.encode(load_schema(topic), rec)
        p.produce(
            prefix + topic, value=value, partition=part, timestamp=codec.epoch_ms(rec["event_time"])
        )
    p.flush_or_raise(30)


# The natural key of each output topic's records (what "written once" counts).
KEYS = {
    topics.ALERT_V2.name: "alert_event_id",
    topics.SEPSIS_SCREEN.name: "record_id",
    topics.VITALS_CHARTED.name: "chart_id",
}


def keys_written(settings: Settings, prefix: str, topic: Topic) -> Counter[str]:
    """How often each record key was committed to `prefix + topic` (read_committed)."""
    records = kafka_io.read_records(settings, prefix + topic.name, topic.name)
    return Counter(r[KEYS[topic.name]] for r in records)


def publish(pub: Any, items: list[tuple[str, dict[str, Any]]]) -> None:
    """Encode `items` with a jobs.feeds.publisher.Publisher, produce them and wait for Kafka."""
    encoded = pub.encode(items)
    assert isinstance(encoded, list), encoded
    pub.send(encoded)
    pub.flush(60)


def refused_marker(settings: Settings, topic: str, at: datetime) -> None:
    """A record a job's source refuses (not Avro) on `topic`, timed `at`: its dead letter says
    the source has read what was sent before it."""
    from jobs.feeds import replay

    producer = kafka_io.producer(settings)
    replay.produce_raw(producer, topic, b"marker", b"not avro", int(at.timestamp() * 1000))
    producer.flush_or_raise(30)
