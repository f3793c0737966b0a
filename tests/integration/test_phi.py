"""PHI never in clear: HL7 v2 and FHIR messages naming a patient go through the gateway, the FHIR
drop, the screening and census jobs and the ClickHouse loader; then everything stored (every
topic, every ClickHouse table, the Flink logs) is scanned for the patient's identifiers."""

from __future__ import annotations

import dataclasses
import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import bed_census, sepsis_screen
from jobs.feeds import fhir_ingest, hl7_gateway
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.settings import Settings
from sinks import clickhouse as ch
from sinks.loader import TABLES, Loader

pytestmark = [pytest.mark.integration, pytest.mark.slow]

IDENTIFIERS = [
    "QUIXOTE",
    "ALONSO",
    "LM1605",  # MRN
    "19470315",  # birth date, as HL7 and as FHIR writes it
    "1947-03-15",
    "ROCINANTE",  # address
    "TOBOSO",
    "016-0510",  # phone
    "123-45-6789",  # SSN
    "V-LM-77",  # visit number
]
T = (datetime.now(UTC) - timedelta(hours=6)).replace(microsecond=0)


def ts(hours: float) -> str:
    return (T + timedelta(hours=hours)).strftime("%Y%m%d%H%M%S+0000")


PID = (
    "PID|1||MRN-LM1605^^^GH^MR~123-45-6789^^^SSA^SS||QUIXOTE^ALONSO^M||19470315|M|||"
    "7 ROCINANTE WAY^^TOBOSO^LM^13700||(555)016-0510"
)


def hl7(control: str, kind: str, at: float, *rest: str) -> str:
    return "\r".join([f"MSH|^~\\&|EPIC|GH|WF|GH|{ts(at)}||{kind}|{control}|P|2.5.1", *rest])


MESSAGES = [
    hl7("P1", "ADT^A01", 0, f"EVN|A01|{ts(0)}", PID, "PV1|1|I|4E^^12^GH||||||||||||||||V-LM-77"),
    hl7(
        "P2",
        "ORU^R01",
        1,
        PID,
        "PV1|1|I|4E^^12^GH||||||||||||||||V-LM-77",
        f"OBR|1|||vitals|||{ts(1)}",
        "OBX|1|NM|8867-4^HR^LN||124|/min|||||F",
        "OBX|2|NM|9279-1^RR^LN||26|/min|||||F",
        "OBX|3|NM|2708-6^SpO2^LN||90|%|||||F",
        "OBX|4|NM|8480-6^SBP^LN||92|mm[Hg]|||||F",
    ),
    hl7("P3", "ADT^A01", 2, f"EVN|A01|{ts(2)}", PID, "PV1|1|I"),  # no unit: refused, sealed
    hl7("P4", "ADT^A03", 3, f"EVN|A03|{ts(3)}", PID, "PV1|1|I|4E^^12^GH||||||||||||||||V-LM-77"),
]
FHIR = [
    {
        "resourceType": "Patient",
        "id": "MRN-LM1605",
        "name": [{"family": "Quixote", "given": ["Alonso"]}],
        "birthDate": "1947-03-15",
        "address": [{"line": ["7 Rocinante Way"], "city": "Toboso"}],
    },
    {
        "resourceType": "Observation",
        "id": "hr-lm",
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/MRN-LM1605", "display": "Alonso Quixote"},
        "effectiveDateTime": (T + timedelta(hours=2)).isoformat(),
        "valueQuantity": {"value": 121, "unit": "beats/minute", "code": "/min"},
    },
]


def found(blob: bytes) -> list[str]:
    text = blob.decode("utf-8", "replace").upper()
    return [i for i in IDENTIFIERS if i.upper() in text]


@pytest.fixture(scope="module")
def stored(kafka: Settings, clickhouse: Any, tmp_path_factory: pytest.TempPathFactory) -> dict:
    tmp = tmp_path_factory.mktemp("phi")
    cap = tmp / "capacity.json"
    cap.write_text(json.dumps({"facilities": {"GH": {"4E": 20}}}))
    s = dataclasses.replace(
        kafka,
        capacity_file=cap,
        clickhouse_database=kafka.clickhouse_database + "_phi",
        job_name="phi-test",
    )
    prefix = f"t-phi-{uuid.uuid4().hex[:8]}."
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], MESSAGES)
    finally:
        server.shutdown()
    drop = tmp / "drop"
    drop.mkdir()
    for r in FHIR:
        (drop / f"{r['id']}.json").write_text(json.dumps(r))
    # a drop file named after the patient, cut short (not JSON): refused, its name printed nowhere
    cut = json.dumps(
        {"resourceType": "Observation", "subject": {"identifier": {"value": "LM1605"}}}
    )
    (drop / "LM1605.json").write_text(cut[:-1])
    printed: list[str] = []  # what wardflow-fhir-ingest prints, a file's lines once it is published
    report = fhir_ingest.ingest(s, [drop], prefix=prefix, facility_id="GH", say=printed.append)
    sepsis_screen.JOB.run(s, prefix=prefix, bounded=True)
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    ch.migrate(clickhouse, s.clickhouse_database)
    loader = Loader(s, clickhouse, prefix=prefix, topics=TABLES)
    loader.drain()
    loader.close()
    topic_names = [
        t for t in kafka_io.admin(s).list_topics(timeout=10).topics if t.startswith(prefix)
    ]
    yield {
        "settings": s,
        "prefix": prefix,
        "acks": acks,
        "report": report,
        "printed": printed,
        "topics": topic_names,
    }
    clickhouse.command(f"DROP DATABASE IF EXISTS {s.clickhouse_database}")
    kafka_io.delete_topics(s, [t.removeprefix(prefix) for t in topic_names], prefix=prefix)


def test_the_messages_really_named_the_patient_and_were_ingested(stored: dict) -> None:
    assert set(found("\r".join(MESSAGES).encode())) == set(IDENTIFIERS) - {"1947-03-15"}
    acks = [a.split("\r")[1].split("|")[1] for a in stored["acks"]]
    assert acks == ["AA"] * 4  # P3 is refused: stored, so AA under the durable policy
    assert stored["report"].mapped == 1 and sum(stored["report"].refused.values()) == 2


def test_what_the_fhir_ingest_prints_names_no_patient_not_even_a_file_named_after_one(
    stored: dict,
) -> None:
    lines = "\n".join(stored["printed"])
    assert "LM1605" not in lines and found(lines.encode()) == []
    assert sum(line.startswith("refused  fhir:file:") for line in stored["printed"]) == 2


def test_no_topic_holds_an_identifier_in_clear(stored: dict) -> None:
    s = stored["settings"]
    assert len(stored["topics"]) >= 8
    for topic in stored["topics"]:
        for m in kafka_io.read_all(s, topic):
            assert found((m.key or b"") + (m.value or b"")) == [], topic


def test_dead_letters_keep_the_rejected_input_sealed_for_reprocessing(stored: dict) -> None:
    s = stored["settings"]
    letters = kafka_io.read_records(
        s, stored["prefix"] + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    edges = [d for d in letters if d["stage"] in ("hl7_gateway", "fhir_ingest")]
    assert {d["stage"] for d in edges} == {"hl7_gateway", "fhir_ingest"}
    for d in edges:
        assert found(phi.unseal(s.phi_key, d["payload"], d["stage"]))  # all there, with the key


def test_no_clickhouse_table_holds_an_identifier_in_clear(stored: dict, clickhouse: Any) -> None:
    db = stored["settings"].clickhouse_database
    tables = [r[0] for r in clickhouse.query(f"SHOW TABLES FROM {db}").result_rows]
    assert {"vitals_news2", "sepsis_screen", "census_events", "dead_letters"} <= set(tables)
    rows = 0
    for table in tables:
        dump = clickhouse.raw_query(f"SELECT * FROM {db}.{table} FORMAT TSV")
        rows += dump.count(b"\n")
        assert found(dump) == [], table
    assert rows > 0


def test_no_log_holds_an_identifier(stored: dict) -> None:
    logs = list(Path(stored["settings"].flink_log_dir).glob("*"))
    assert logs
    for path in logs:
        if path.is_file():
            assert found(path.read_bytes()) == [], path
