"""ADT demographics into the Feast online store (sinks/feast_demographics.py), end to end over
the real parts: HL7 ADT over MLLP through the gateway into Kafka, the sink into Feast on Redis,
and the sepsis scorer's own lookup (feature_store.online's) reading the patient's age and sex."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from feature_store.feast_import import import_repo_without_torch
from jobs.feeds import hl7_gateway
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from sinks.feast_demographics import DemographicsSink, Store
from tests.conftest import REDIS, REPO

pytestmark = pytest.mark.integration
TOPICS = [topics.ADT_EVENT.name, topics.DEAD_LETTER.name]


@pytest.fixture
def prefix(kafka: Settings) -> Iterator[str]:
    p = f"t-demo-{uuid.uuid4().hex[:8]}."
    yield p
    kafka_io.delete_topics(kafka, TOPICS, prefix=p)


def adt(trigger: str, control: str, mrn: str, pid_7: str, pid_8: str, at: str) -> bytes:
    return (
        f"MSH|^~\\&|EHR|H1|WF|H1|{at}||ADT^{trigger}|{control}|P|2.5.1\r"
        f"EVN|{trigger}|{at}\r"
        f"PID|1||{mrn}^^^H1^MR||DOE^ALEX||{pid_7}|{pid_8}\r"
        "PV1|1|I|MICU^12^A"
    ).encode()


def test_the_age_and_sex_an_hl7_admission_gives_reach_the_scorers_feast_lookup(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    import subprocess

    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "redis"], check=True)
    s = dataclasses.replace(
        kafka, feast_dir=tmp_path / "feast", feast_online_store=REDIS, phi_key=b"k" * 32
    )
    mrns = [f"{uuid.uuid4().int % 10**7:07d}" for _ in range(3)]
    messages: list[str | bytes] = [
        adt("A01", "C1", mrns[0], "19600301", "F", "20260301101500"),
        adt("A01", "C2", mrns[1], "1930", "M", "20260301101600"),  # over 89: 90
        adt("A01", "C3", mrns[2], "", "", "20260301101700"),  # neither: nothing pushed
        # an update later in the stay that gives the sex alone keeps the age
        adt("A08", "C4", mrns[0], "", "F", "20260302090000"),
    ]
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], messages)
    finally:
        server.shutdown()
    assert all("|AA|" in a for a in acks), acks
    records = kafka_io.read_records(s, prefix + topics.ADT_EVENT.name, topics.ADT_EVENT.name)
    by_minute = {r["event_time"].minute: r["patient_token"] for r in records}
    tokens = [by_minute[15], by_minute[16], by_minute[17]]
    assert all(m not in repr(records) for m in mrns)
    plain = kafka_io.producer(s)
    plain.produce(prefix + topics.ADT_EVENT.name, key=b"x", value=b"\x07not an adt event")
    plain.flush_or_raise(30)

    store = Store.open(s)
    group = f"g-{uuid.uuid4().hex[:6]}"
    sink = DemographicsSink(s, store, prefix=prefix, group_id=group)
    try:
        stats = sink.drain(timeout_s=120)
    finally:
        sink.close()
    counts = (stats.read, stats.pushed, stats.without_demographics, stats.dead_lettered)
    assert counts == (3, 2, 1, 1)  # the first patient's two records: one row
    # a correction dated as the admission it corrects (the A08 in the minute of the A01): the
    # newest received wins, though Feast keeps only a write newer than the row it holds
    correction = adt("A08", "C5", mrns[1], "", "F", "20260301101600")
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        [ack] = hl7_gateway.send("127.0.0.1", server.server_address[1], [correction])
    finally:
        server.shutdown()
    assert "|AA|" in ack
    sink = DemographicsSink(s, store, prefix=prefix, group_id=group)
    try:
        assert sink.drain(timeout_s=120).read == 1
    finally:
        sink.close()
    [letter] = kafka_io.read_records(s, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name)
    assert (letter["stage"], letter["reason_code"]) == ("feast_demographics", "undecodable")

    import_repo_without_torch()
    from feature_store import online

    source = online.feast_source(s.feast_dir, s.feast_online_store, cache_ttl_s=60)
    try:
        static = source.lookup(tokens)
    finally:
        assert source.release is not None
        source.release()
    assert static.loc[tokens[0], "age_years"] == pytest.approx(66.0)
    assert static.loc[tokens[0], "female"] == 1.0
    assert list(static.loc[tokens[1]]) == [90.0, 1.0]  # corrected; the age kept
    assert static.loc[tokens[2]].isna().all()
    stay = store.stay(tokens[:1])
    assert list(stay.loc[tokens[0], ["age_years", "female"]]) == pytest.approx([66.0, 1.0])
