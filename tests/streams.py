"""Records for jobs under test over Kafka: the stream's end, produced as a live feed would."""

from __future__ import annotations

import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from jobs import sepsis_screen
from jobs.runtime import flink_env, kafka_io, watch
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


def until(what: str, found: Any, timeout_s: float = 120.0, job: RunningJob | None = None) -> Any:
    """found() once it is truthy; polled every half second. On a timeout the error says where
    `job` stood (its status, restarts, checkpoints, failures and each operator's watermark)."""
    deadline = time.monotonic() + timeout_s
    while not (value := found()):
        if time.monotonic() > deadline:
            where = f"; the job then: {job.describe()}" if job else ""
            raise TimeoutError(f"no {what} after {timeout_s} s{where}")
        time.sleep(0.5)
    return value


@dataclass(frozen=True)
class RunningJob:
    """A job submitted to a local MiniCluster whose REST API is at `rest`."""

    client: Any  # pyflink JobClient
    rest: str

    @classmethod
    def submit(cls, env: Any, name: str) -> RunningJob:
        client = flink_env.submit(env, name)
        return cls(client, flink_env.rest_url(env))

    def describe(self) -> str:
        """One line a failed test can print: what Flink's REST API says of the job now."""
        job = f"{self.rest}/jobs/{self.client.get_job_id()}"
        try:
            detail = watch.rest_json(job)
            restarts = watch.rest_json(f"{job}/metrics?get=numRestarts")
            checkpoints = watch.rest_json(f"{job}/checkpoints")
            counts, failed = checkpoints["counts"], (checkpoints["latest"] or {}).get("failed")
            history = watch.rest_json(f"{job}/exceptions")["exceptionHistory"]["entries"]
            marks = []
            for v in detail["vertices"]:
                got = watch.rest_json(f"{job}/vertices/{v['id']}/watermarks")
                low = min((int(m["value"]) for m in got), default=None)
                n = v.get("metrics", {})
                marks.append(
                    f"{v['name'][:60]!r} {v['status']} records in {n.get('read-records')} "
                    f"out {n.get('write-records')} watermark {low}"
                )
        except (OSError, ValueError, KeyError) as exc:
            return f"not readable at {job}: {exc}"
        failures = [watch.first_line(e.get("stacktrace", "")) for e in history]
        return (
            f"{detail['state']}, restarts {restarts}, checkpoints {counts} (the last failed: "
            f"{(failed or {}).get('failure_message')}), "
            f"failures {failures}, operators: " + "; ".join(marks) + _logged_errors()
        )


def _logged_errors(last: int = 5) -> str:
    """The last ERROR lines of this process's Flink log (every job the process ran)."""
    folder = Path(os.environ.get("FLINK_LOG_DIR", "."))
    lines = [
        line[:300]
        for log in sorted(folder.glob("flink-*-python-*.log"))
        for line in log.read_text(errors="replace").splitlines()
        if " ERROR " in line
    ]
    return f"; Flink's log, last errors: {lines[-last:]}" if lines else ""


def produce(kafka: Settings, prefix: str, records: list[tuple[int, str, dict[str, Any]]]) -> None:
    """Records to explicit partitions, each with its event time as the record timestamp."""
    p = kafka_io.producer(kafka)
    for part, topic, rec in records:
        value = codec.encode(load_schema(topic), rec)
        p.produce(
            prefix + topic,
            value=value,
            partition=part,
            timestamp=codec.epoch_ms(codec.record_time(rec)),
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
