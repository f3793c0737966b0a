"""A record on time for its own feed but behind the screening job's merged watermark is
dead-lettered as late, not dropped by the patient's state window without a trace.

The ADT feed goes quiet after an admission and is left out of the job's event time
(`sparse_idle_timeout_ms`); the vitals carry the merged watermark ten hours on. A discharge
timed five hours in then arrives: its own feed's watermark is still at the admission, so the
source's late check passes it, but the state window has moved past it (before, it dropped the
discharge, and with it the resolution of the patient's open alert, without a trace). Kafka in
and out, one partition per topic, a watermark after every record; the job unbounded, as
deployed."""

from __future__ import annotations

import dataclasses
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import sepsis_screen
from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import load_schema, topics
from schemas.settings import Settings
from tests.streams import RunningJob, publish, refused_marker, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
TOKEN = "screen-late-merge"
V, A = topics.VITALS_OBSERVATION.name, topics.ADT_EVENT.name


def _vitals(at: datetime) -> tuple[str, dict[str, Any]]:
    rec = {f.name: None for f in load_schema(V).fields if f.nullable} | {
        "observation_id": f"{TOKEN}:vitals@{at.isoformat()}",
        "patient_token": TOKEN,
        "facility_id": "hospital-t",
        "unit_id": "MICU",
        "event_time": at,
        "source": "test",
        "heart_rate_bpm": 96.0,
        "resp_rate_per_min": 20.0,
    }
    return V, rec


def _adt(kind: str, at: datetime) -> tuple[str, dict[str, Any]]:
    rec = {f.name: None for f in load_schema(A).fields if f.nullable} | {
        "event_id": f"{TOKEN}:{kind}",
        "event_type": kind,
        "source_message_type": "test",
        "patient_token": TOKEN,
        "encounter_token": f"{TOKEN}:enc",
        "facility_id": "hospital-t",
        "unit_id": "MICU" if kind == "admit" else None,
        "prior_unit_id": None if kind == "admit" else "MICU",
        "event_time": at,
        "source": "test",
    }
    return A, rec


def test_a_discharge_behind_the_merged_watermark_after_a_quiet_adt_feed_is_dead_lettered_as_late(
    kafka: Settings, tmp_path: Path
) -> None:
    s = dataclasses.replace(
        kafka,
        model_registry=tmp_path / "registry",  # empty: no champion, the job screens only
        watermark_on_event=True,
        sparse_idle_timeout_ms=1000,
        device_numerics=False,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        job_name=f"screen-late-merge-{uuid.uuid4().hex[:6]}",
    )
    prefix = f"t-slmrg-{uuid.uuid4().hex[:8]}."
    names = [*sepsis_screen.JOB.input_topics, *sepsis_screen.JOB.output_topics]
    kafka_io.ensure_topics(s, names, prefix=prefix, partitions=1)
    charted = [_vitals(T0 + k * timedelta(minutes=30)) for k in range(1, 21)]  # to 10 h
    late = _adt("discharge", T0 + timedelta(hours=5))
    pub = Publisher(s, prefix=prefix, stage="test")

    def read(topic: topics.Topic) -> list[dict[str, Any]]:
        return kafka_io.read_records(s, prefix + topic.name, topic.name)

    job = RunningJob.submit(sepsis_screen.JOB.pipeline(s, prefix=prefix), s.job_name)
    try:
        publish(pub, [_adt("admit", T0)])
        refused_marker(s, prefix + A, T0 + timedelta(seconds=1))  # the admission is read
        until("the marker's dead letter", lambda: read(topics.DEAD_LETTER), 180, job=job)
        publish(pub, charted)
        # the ADT feed is quiet: the vitals' watermark (10 h − the delay) releases their states
        until(
            "the states of the first 9 h",
            lambda: len(read(topics.SEPSIS_SCREEN)) >= 18,
            180,
            job=job,
        )
        publish(pub, [late])
        until(
            "the late discharge's dead letter", lambda: _late(read(topics.DEAD_LETTER)), 90, job=job
        )
        time.sleep(2)  # nothing more comes
    finally:
        job.client.cancel().result()
    screened, dead = read(topics.SEPSIS_SCREEN), read(topics.DEAD_LETTER)
    kafka_io.delete_topics(s, names, prefix=prefix)

    assert [d["source_offset"] for d in dead if d["reason_code"] != "late"] == [1]  # the marker
    (letter,) = _late(dead)
    assert letter["source_offset"] == 2  # the ADT topic's admission, marker, discharge
    assert letter["source_topic"] == prefix + A
    assert "merged inputs" in letter["reason"]
    assert letter["stage"] == sepsis_screen.STAGE
    encoded = pub.encode([late])
    assert isinstance(encoded, list)
    assert letter["payload"] == encoded[0][2]  # the record as it came, for replay
    # the patient's state never saw the discharge. The counts add up: of the 23 records sent,
    # the admission and the vitals are screened (the last waits behind the watermark), the
    # marker and the discharge dead-lettered.
    waiting = charted[-1][1]["observation_id"]
    ids = [_adt("admit", T0)[1]["event_id"]] + [v["observation_id"] for _, v in charted]
    assert sorted(r["record_id"] for r in screened) == sorted(i for i in ids if i != waiting)


def _late(dead: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in dead if d["reason_code"] == "late"]
