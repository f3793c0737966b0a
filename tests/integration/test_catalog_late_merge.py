"""A record on time for its own feed but behind the catalog job's merged watermark is
dead-lettered as late, not dropped by the stay's windows without a trace.

The ADT feed goes quiet after an admission and is left out of the job's event time
(`sparse_idle_timeout_ms`); the vitals carry the merged watermark ten hours on. A discharge
timed five hours in then arrives: its own feed's watermark is still at the admission, so the
source's late check passes it, but the stay's event-time windows have moved past it. Kafka in
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

from jobs import model_scoring
from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import load_schema, topics
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from tests.streams import RunningJob, publish, refused_marker, until
from training.registry import bootstrap
from udfs.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS = ("length-of-stay", "readmission-30d")
T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
TOKEN = "late-merge"
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


def _encounter_facts(s: Settings, spec: ModelSpec) -> str:
    """One Diabetes 130 encounter's facts in Feast (what a discharge is scored from): its
    token, which the stay's ADT events carry."""
    from feature_store import repo
    from jobs.feeds import diabetes130

    if not s.diabetes130_file.exists():
        pytest.skip(f"Diabetes 130 is not at {s.diabetes130_file}")
    mapped = diabetes130.map_encounters(diabetes130.load(s, encounters=1), key=s.phi_key)
    store = repo.open_store(s.feast_dir, "sqlite", encounter_services=[spec.feature_service or ""])
    repo.push_encounter_facts(store, mapped.facts)
    return str(mapped.facts["encounter_token"].iloc[0])


def _adt(kind: str, at: datetime, encounter: str) -> tuple[str, dict[str, Any]]:
    rec = {f.name: None for f in load_schema(A).fields if f.nullable} | {
        "event_id": f"{TOKEN}:{kind}",
        "event_type": kind,
        "source_message_type": "test",
        "patient_token": TOKEN,
        "encounter_token": encounter,
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
        model_registry=tmp_path / "registry",
        catalog_models=",".join(MODELS),
        feast_dir=tmp_path / "feast",
        feast_online_store="sqlite",
        roles_check_s=3600.0,
        watermark_on_event=True,
        sparse_idle_timeout_ms=1000,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        job_name=f"catalog-late-merge-{uuid.uuid4().hex[:6]}",
    )
    reg = Registry(s.model_registry)
    assert all(bootstrap(reg, m) for m in MODELS)
    spec = ModelSpec.parse(reg.role("readmission-30d", "champion").spec)  # type: ignore[union-attr]
    encounter = _encounter_facts(s, spec)
    prefix = f"t-lmrg-{uuid.uuid4().hex[:8]}."
    names = [*model_scoring.JOB.input_topics, *model_scoring.JOB.output_topics]
    kafka_io.ensure_topics(s, names, prefix=prefix, partitions=1)
    charted = [_vitals(T0 + k * timedelta(minutes=30)) for k in range(1, 21)]  # to 10 h
    late = _adt("discharge", T0 + timedelta(hours=5), encounter)
    moved = _adt("transfer", T0 + timedelta(hours=4), encounter)  # late too, but not read here
    moved[1]["unit_id"] = "SICU"
    pub = Publisher(s, prefix=prefix, stage="test")

    def read(topic: topics.Topic) -> list[dict[str, Any]]:
        return kafka_io.read_records(s, prefix + topic.name, topic.name)

    job = RunningJob.submit(model_scoring.JOB.pipeline(s, prefix=prefix), s.job_name)
    try:
        publish(pub, [_adt("admit", T0, encounter)])
        refused_marker(s, prefix + A, T0 + timedelta(seconds=1))  # the admission is read
        until("the marker's dead letter", lambda: read(topics.DEAD_LETTER), 180, job=job)
        publish(pub, charted)
        # the ADT feed is quiet: the vitals' watermark (10 h − the delay) releases their states
        until(
            "the states of the first 9 h", lambda: len(read(topics.MODEL_SCORE)) >= 18, 180, job=job
        )
        publish(pub, [moved, late])
        until(
            "the late discharge's dead letter", lambda: _late(read(topics.DEAD_LETTER)), 90, job=job
        )
        until(
            "the discharge's readmission score",
            lambda: _discharged(read(topics.MODEL_SCORE)),
            90,
            job=job,
        )
        time.sleep(2)  # nothing more comes
    finally:
        job.client.cancel().result()
    scores, dead = read(topics.MODEL_SCORE), read(topics.DEAD_LETTER)
    kafka_io.delete_topics(s, names, prefix=prefix)

    assert [d["source_offset"] for d in dead if d["reason_code"] != "late"] == [1]  # the marker
    (letter,) = _late(dead)  # not the late transfer, which this job does not read
    assert letter["source_offset"] == 3  # the ADT topic's admission, marker, transfer, discharge
    assert letter["source_topic"] == prefix + A
    assert "merged inputs" in letter["reason"]
    assert letter["stage"] == model_scoring.STAGE
    # the stay never saw the discharge: every state is scored, as of the open stay
    states = [r for r in scores if r["trigger"] == "state"]
    assert {r["record_id"] for r in states} <= {v["observation_id"] for _, v in charted}
    assert len(states) >= 18
    # a readmission score needs no event-time order: the late discharge is scored all the same
    (readmission,) = _discharged(scores)
    assert readmission["record_id"] == late[1]["event_id"]
    assert readmission["model_name"] == "readmission-30d"


def _late(dead: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [d for d in dead if d["reason_code"] == "late"]


def _discharged(scores: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in scores if r["trigger"] == "discharge"]
