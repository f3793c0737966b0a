"""The bad-input corpus (tests/corpus) through the real ingestion edges and jobs: no crash, every
input accounted for, each with the outcome its manifest names."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobs import bed_census
from jobs.feeds import fhir_ingest, hl7_gateway, replay
from jobs.runtime import kafka_io
from schemas import codec, load_schema, topics
from schemas.settings import Settings

pytestmark = [pytest.mark.integration, pytest.mark.slow]

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
MANIFEST: dict[str, dict[str, Any]] = json.loads((CORPUS / "manifest.json").read_text())
ADT = topics.ADT_EVENT.name
T0 = datetime(2026, 3, 1, 10, 0, tzinfo=UTC)


def adt(i: str, **kw: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {f.name: None for f in load_schema(ADT).fields if f.nullable}
    return rec | {
        "event_id": i,
        "event_type": "admit",
        "source_message_type": "test",
        "patient_token": f"p-{i}",
        "facility_id": "GH",
        "unit_id": "4E",
        "event_time": T0,
        "source": "corpus",
        **kw,
    }


def avro_cases() -> list[tuple[bytes, int, str | None]]:
    """(Kafka value, Kafka timestamp, expected dead-letter reason or None) for the ADT topic."""
    schema = load_schema(ADT)
    good = codec.encode(schema, adt("a1"))
    ms = codec.epoch_ms(T0)
    return [
        (good, ms, None),
        (good, ms, "duplicate"),  # the same record again
        (b"", ms, "undecodable"),
        (b"\xff\xfe\x00garbage", ms, "undecodable"),
        (good[:-5], ms, "undecodable"),  # truncated
        (good + b"\x00\x01", ms, "undecodable"),  # trailing bytes
        (codec.encode(schema, adt("a2", event_type="teleport")), ms, "bad_enum"),
        (codec.encode(schema, adt("a3", unit_id="ROOF")), ms, "unknown_unit"),
        (codec.encode(schema, adt("a4", event_type="discharge")), ms, "not_admitted"),
        (codec.encode(schema, adt("a6", facility_id="")), ms, "missing_field"),
        (codec.encode(schema, adt("a5")), ms + 3_600_000, "timestamp_mismatch"),  # last: later
    ]


def test_every_hl7_file_gets_its_ack_and_dead_letter_reason(kafka: Settings) -> None:
    prefix = f"t-corpus-{uuid.uuid4().hex[:8]}."
    names = sorted(n for n in MANIFEST if n.startswith("hl7/"))
    server = hl7_gateway.serve(kafka, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send(
            "127.0.0.1", server.server_address[1], [(CORPUS / n).read_bytes() for n in names]
        )
    finally:
        server.shutdown()
    letters = kafka_io.read_records(
        kafka, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    for name, ack in zip(names, acks, strict=True):  # the manifest names the strict answer
        durable = "AR" if MANIFEST[name]["ack"] == "AR" else "AA"
        assert ack.split("\r")[1].split("|")[1] == durable, name
    refused = Counter(m["reason"] for n, m in MANIFEST.items() if n in names and m["reason"])
    assert Counter(d["reason_code"] for d in letters) == refused
    accepted = sum(1 for n in names if MANIFEST[n]["reason"] is None)
    assert kafka_io.count_records(kafka, prefix + ADT) == accepted
    for p in hl7_gateway.topic_prefixes(kafka, prefix):
        kafka_io.delete_topics(kafka, hl7_gateway.TOPICS, prefix=p)


def test_every_fhir_file_is_mapped_or_refused_with_its_reason(kafka: Settings) -> None:
    prefix = f"t-corpus-{uuid.uuid4().hex[:8]}."
    report = fhir_ingest.ingest(kafka, [CORPUS / "fhir"], prefix=prefix, facility_id="GH")
    fhir = [m for n, m in MANIFEST.items() if n.startswith("fhir/")]
    mapped = [m for m in fhir if m["reason"] is None or m.get("mapped")]
    assert report.mapped == len(mapped)
    assert report.refused == Counter(m["reason"] for m in fhir if m not in mapped)
    assert report.values_refused == Counter(m["reason"] for m in mapped if m["reason"])
    letters = kafka_io.read_records(
        kafka, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    assert Counter(d["reason_code"] for d in letters) == Counter(
        m["reason"] for m in fhir if m["reason"]
    )
    vitals = kafka_io.read_records(
        kafka, prefix + topics.VITALS_OBSERVATION.name, topics.VITALS_OBSERVATION.name
    )
    assert len(vitals) == report.records[topics.VITALS_OBSERVATION.name] == len(mapped)
    kafka_io.delete_topics(kafka, fhir_ingest.TOPICS, prefix=prefix)


def test_corrupt_and_impossible_adt_records_are_dead_lettered_by_the_census_job(
    kafka: Settings, tmp_path: Path
) -> None:
    cap = tmp_path / "capacity.json"
    cap.write_text(json.dumps({"facilities": {"GH": {"4E": 10}}}))
    s = dataclasses.replace(kafka, capacity_file=cap, job_name="corpus-census")
    prefix = f"t-corpus-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(s, [ADT, *bed_census.JOB.output_topics], prefix=prefix, partitions=1)
    p = kafka_io.producer(s)
    cases = avro_cases()
    for value, ts, _ in cases:
        replay.produce_raw(p, prefix + ADT, b"k", value, ts)
    p.flush_or_raise(30)
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    letters = kafka_io.read_records(s, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name)
    events = kafka_io.read_records(s, prefix + topics.CENSUS_EVENT.name, topics.CENSUS_EVENT.name)
    assert len(cases) == len(events) + len(letters)
    assert Counter(d["reason_code"] for d in letters) == Counter(r for *_, r in cases if r)
    census = kafka_io.read_records(s, prefix + topics.CENSUS_UNIT.name, topics.CENSUS_UNIT.name)
    assert {(c["unit_id"], c["occupied_beds"]) for c in census} == {("4E", 1), ("ALL", 1)}
    kafka_io.delete_topics(s, [ADT, *bed_census.JOB.output_topics], prefix=prefix)
