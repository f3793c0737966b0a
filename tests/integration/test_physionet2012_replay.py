"""The PhysioNet/CinC 2012 replay onto the real Kafka broker, read back with the current
(revision 2) reader schemas and with the revision 1 readers still deployed elsewhere."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import fastavro
import pytest

from jobs.feeds import physionet2012 as replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.avro import earlier_revisions
from schemas.settings import Settings

pytestmark = pytest.mark.integration
TOPICS = [
    topics.ADT_EVENT.name,
    topics.VITALS_OBSERVATION.name,
    topics.LABS_RESULT.name,
    topics.DEAD_LETTER.name,
]


@pytest.fixture
def prefix(kafka: Settings) -> Iterator[str]:
    p = f"t-p2012-{uuid.uuid4().hex[:8]}."
    yield p
    kafka_io.delete_topics(kafka, TOPICS, prefix=p)


def test_twenty_stays_replay_onto_kafka_and_read_back_with_old_and_new_readers(
    kafka: Settings, prefix: str
) -> None:
    settings = kafka
    if not (settings.physionet2012_dir / "setA_observations.parquet").exists():
        pytest.skip("PhysioNet 2012 set A not found")
    m = replay.replay(settings, replay.ReplayPlan(stays=20), set_name="A", prefix=prefix)
    assert m.balanced and len(m.adt) == 20
    want = {
        topics.ADT_EVENT.name: m.adt,
        topics.VITALS_OBSERVATION.name: m.vitals,
        topics.LABS_RESULT.name: m.labs,
    }
    for name, records in want.items():
        got = kafka_io.read_records(settings, prefix + name, name)  # the current reader
        ident = topics.topic(name).schema.field_names[0]
        assert sorted(r[ident] for r in got) == sorted(r[ident] for r in records)
    assert kafka_io.count_records(settings, prefix + topics.DEAD_LETTER.name) == len(m.rejected)
    gcs = [r for r in m.vitals if r["gcs_total"] is not None]
    assert gcs and any(r["bun_mg_dl"] is not None for r in m.labs)

    for name in (topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name):
        current = topics.topic(name).schema
        for reader in earlier_revisions(name):  # every older reader (r2, r1) reads them
            old = []
            for msg in kafka_io.read_all(settings, prefix + name):
                buf = io.BytesIO(msg.value or b"")
                old.append(fastavro.schemaless_reader(buf, current.parsed, reader.parsed))
            assert len(old) == len(want[name])
            assert all(set(r) == set(reader.field_names) for r in old)  # that reader's view
            ident = reader.field_names[0]
            by_id = {r[ident]: r for r in want[name]}
            for r in old:
                assert r["event_time"] == by_id[r[ident]]["event_time"]
