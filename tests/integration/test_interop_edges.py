"""The ingestion edges with real interfaces' awkward messages, through the real Kafka broker: an
ORU the size of an embedded PDF, a message over the size limit on a connection that goes on, a
debugging message kept out of production, a 1.4 MB FHIR bundle with refused entries followed by
more files in the same folder, a lab resulted hours after its specimen was drawn."""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from jobs import sepsis_screen
from jobs.feeds import fhir_ingest, hl7_gateway
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.interop.code_map import CodeMapError
from schemas.settings import Settings

pytestmark = pytest.mark.integration
DEAD = topics.DEAD_LETTER.name


@pytest.fixture
def edge(kafka: Settings, tmp_path: Path) -> Iterator[tuple[Settings, str]]:
    prefix = f"t-edges-{uuid.uuid4().hex[:8]}."
    s = dataclasses.replace(kafka, payload_store=tmp_path / "payloads")
    yield s, prefix
    for p in hl7_gateway.topic_prefixes(s, prefix):
        kafka_io.delete_topics(s, hl7_gateway.TOPICS, prefix=p)


def ack_code(ack: str) -> str:
    return ack.split("\r")[1].split("|")[1]


def oru_with_pdf(control: str, pdf_bytes: int, *, vitals: bool) -> bytes:
    """An ORU^R01 as a monitor or EHR sends it with its report attached: OBX value type ED,
    a base64 PDF (HL7 v2.5.1 section 2.A.24)."""
    pdf = base64.b64encode(b"%PDF-1.7\n" + os.urandom(pdf_bytes)).decode()
    obx = [f"OBX|1|ED|18842-5^Discharge summary^LN||^AP^PDF^Base64^{pdf}||||||F"]
    if vitals:
        obx.append("OBX|2|NM|8867-4^Heart rate^LN||104|/min|||||F|||20260301075500")
    return "\r".join(
        [
            f"MSH|^~\\&|EHR|GH|WF|GH|20260301080000||ORU^R01|{control}|P|2.5.1",
            "PID|1||MRN77^^^GH^MR||DOE^JANE",
            "PV1|1|I|4E^^12^GH",
            "OBR|1|||report|||20260301075500",
            *obx,
        ]
    ).encode()


def admit(control: str, processing: str = "P") -> bytes:
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|GH|WF|GH|20260301080000||ADT^A01|{control}|{processing}|2.5.1",
            "EVN|A01|20260301080000",
            "PID|1||MRN78^^^GH^MR||DOE^JOHN",
            "PV1|1|I|4E^^14^GH",
        ]
    ).encode()


def test_an_oru_with_an_embedded_pdf_is_stored_and_a_refused_one_is_kept_by_reference(
    edge: tuple[Settings, str],
) -> None:
    s, prefix = edge
    mapped = oru_with_pdf("PDF1", 1_500_000, vitals=True)  # about 2 MB on the wire
    refused = oru_with_pdf("PDF2", 1_500_000, vitals=False)  # no screening value in it
    assert len(refused) > 1_900_000
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], [mapped, refused])
    finally:
        server.shutdown()
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    [vital] = kafka_io.read_records(
        s, prefix + topics.VITALS_OBSERVATION.name, topics.VITALS_OBSERVATION.name
    )
    assert vital["heart_rate_bpm"] == 104
    [letter] = kafka_io.read_records(s, prefix + DEAD, DEAD)
    assert (letter["reason_code"], letter["payload"]) == ("not_a_vital_sign", b"")
    stored = Path(urlparse(letter["payload_ref"]).path)
    assert stored.parent == s.payload_store.resolve()
    assert phi.unseal(s.phi_key, stored.read_bytes(), "hl7_gateway") == refused
    assert b"MRN77" not in stored.read_bytes()  # sealed at rest


def test_a_message_over_the_limit_is_refused_explicitly_and_the_connection_goes_on(
    edge: tuple[Settings, str],
) -> None:
    s, prefix = edge
    s = dataclasses.replace(s, max_message_bytes=1 << 20)
    huge = oru_with_pdf("BIG1", 1_200_000, vitals=True)
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], [huge, admit("A1")])
    finally:
        server.shutdown()
    assert [ack_code(a) for a in acks] == ["AR", "AA"]
    assert acks[0].split("\r")[1].startswith("MSA|AR|BIG1|")
    [letter] = kafka_io.read_records(s, prefix + DEAD, DEAD)
    assert letter["reason_code"] == "too_large" and str(len(huge)) in letter["reason"]
    head = phi.unseal(s.phi_key, letter["payload"], "hl7_gateway")
    assert huge.startswith(head) and len(head) == hl7_gateway.HEAD_BYTES
    assert kafka_io.count_records(s, prefix + topics.VITALS_OBSERVATION.name) == 0
    assert kafka_io.count_records(s, prefix + topics.ADT_EVENT.name) == 1


def test_training_and_debugging_messages_go_to_the_non_production_topics_only(
    edge: tuple[Settings, str],
) -> None:
    s, prefix = edge
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send(
            "127.0.0.1",
            server.server_address[1],
            [admit("P1"), admit("D1", "D"), admit("T1", "T")],
        )
    finally:
        server.shutdown()
    assert [a.split("\r")[0].split("|")[10] for a in acks] == ["P", "D", "T"]
    assert [ack_code(a) for a in acks] == ["AA"] * 3
    production = kafka_io.read_records(s, prefix + topics.ADT_EVENT.name, topics.ADT_EVENT.name)
    assert [r["event_id"] for r in production] == ["hl7:GH/EPIC:P1:A01"]
    apart = kafka_io.read_records(
        s, prefix + "nonprod." + topics.ADT_EVENT.name, topics.ADT_EVENT.name
    )
    assert sorted(r["event_id"] for r in apart) == ["hl7:GH/EPIC:D1:A01", "hl7:GH/EPIC:T1:A01"]


def observation(i: int, unit: str = "/min") -> dict:
    return {
        "fullUrl": f"urn:uuid:{uuid.UUID(int=i)}",
        "resource": {
            "resourceType": "Observation",
            "id": f"hr{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": f"Patient/p{i % 40}"},
            "effectiveDateTime": f"2026-03-01T08:{i // 60 % 60:02d}:{i % 60:02d}Z",
            "valueQuantity": {
                "value": 60 + i % 50,
                "system": "http://unitsofmeasure.org",
                "code": unit,
            },
            "note": [{"text": "bedside monitor reading, verified by the nurse " * 4}],
        },
    }


def test_a_large_bundle_refuses_entries_alone_and_the_rest_of_the_folder_is_ingested(
    edge: tuple[Settings, str], tmp_path: Path
) -> None:
    kafka = edge[0]
    prefix = f"t-edges-{uuid.uuid4().hex[:8]}."
    drop = tmp_path / "drop"
    drop.mkdir()
    entries = [observation(i, "mm[Hg]" if i % 100 == 7 else "/min") for i in range(3600)]
    bundle = {"resourceType": "Bundle", "id": "night", "type": "collection", "entry": entries}
    (drop / "a-night.json").write_text(json.dumps(bundle))
    later = {"resourceType": "Bundle", "id": "later", "type": "collection", "entry": entries[:5]}
    (drop / "b-later.json").write_text(json.dumps(later).replace('"hr', '"later-hr'))
    (drop / "0-cut-off.json").write_text(json.dumps(bundle)[:1_300_000])  # a transfer cut short
    assert (drop / "a-night.json").stat().st_size > 1_350_000
    try:
        report = fhir_ingest.ingest(kafka, [drop], prefix=prefix, facility_id="GH")
        assert report.failed_files == []
        assert report.mapped == 3600 - 36 + 5
        assert report.refused == Counter(bad_unit=36, malformed=1)
        assert kafka_io.count_records(kafka, prefix + topics.VITALS_OBSERVATION.name) == 3569
        cut, *letters = kafka_io.read_records(kafka, prefix + DEAD, DEAD)
        assert cut["reason_code"] == "malformed" and cut["payload_ref"].startswith("file:")
        assert len(letters) == 36 and all(d["payload_ref"] is None for d in letters)
        one = json.loads(phi.unseal(kafka.phi_key, letters[0]["payload"], "fhir_ingest"))
        assert one["resourceType"] == "Observation" and one["id"] == "hr7"  # the entry alone
        assert max(len(d["payload"]) for d in letters) < 2_000
    finally:
        kafka_io.delete_topics(kafka, fhir_ingest.TOPICS, prefix=prefix)


def test_ingest_says_each_files_lines_once_its_records_are_on_kafka_and_keeps_only_counts(
    edge: tuple[Settings, str], tmp_path: Path
) -> None:
    """A run over many GB of exports printed nothing until its end, holding every resource's
    line (0.2 bytes per byte ingested) and then their join (0.1 more): each file's lines are
    said once Kafka holds its records, and the run keeps counts."""
    kafka = edge[0]
    prefix = f"t-edges-{uuid.uuid4().hex[:8]}."
    drop = tmp_path / "drop"
    drop.mkdir()
    first = json.dumps(observation(1)["resource"]) + "\n{not json\n"
    (drop / "a.ndjson").write_text(first)
    (drop / "b.json").write_text(json.dumps(observation(2)["resource"]))
    vitals = prefix + topics.VITALS_OBSERVATION.name
    said: list[tuple[str, int, int]] = []

    def say(line: str) -> None:  # what Kafka holds when each line is said
        said.append((line.split()[0], kafka_io.count_records(kafka, vitals),
                     kafka_io.count_records(kafka, prefix + DEAD)))  # fmt: skip

    try:
        report = fhir_ingest.ingest(kafka, [drop], prefix=prefix, facility_id="GH", say=say)
        assert said == [("mapped", 1, 1), ("refused", 1, 1), ("mapped", 2, 1)]
        assert (report.mapped, sum(report.refused.values())) == (2, 1)
        assert [f.name for f in dataclasses.fields(fhir_ingest.IngestReport)] == [
            "resources", "mapped", "records", "refused", "context", "values_refused",
            "failed_files",
        ]  # fmt: skip
    finally:
        kafka_io.delete_topics(kafka, fhir_ingest.TOPICS, prefix=prefix)


def screened_through_the_job(
    s: Settings, prefix: str, messages: list[bytes]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """`messages` through the HL7 gateway (each acknowledged AA), Kafka and the screening job
    (bounded): its screened states and dead letters."""
    names = list(dict.fromkeys(sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics))
    kafka_io.ensure_topics(s, names, prefix=prefix, partitions=1)
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], messages)
    finally:
        server.shutdown()
    assert [ack_code(a) for a in acks] == ["AA"] * len(messages)
    try:
        sepsis_screen.JOB.run(s, prefix=prefix, bounded=True)
        screened = kafka_io.read_records(
            s, prefix + topics.SEPSIS_SCREEN.name, topics.SEPSIS_SCREEN.name
        )
        letters = kafka_io.read_records(s, prefix + DEAD, DEAD)
    finally:
        kafka_io.delete_topics(s, names, prefix=prefix)
    return screened, letters


def lab(control: str, mrn: str, drawn: str, resulted: str, lactate: float) -> bytes:
    """A lactate drawn at `drawn` (OBR-7, OBX-14) in a message made at `resulted` (MSH-7)."""
    return "\r".join(
        [
            f"MSH|^~\\&|LAB|GH|WF|GH|{resulted}||ORU^R01|{control}|P|2.5.1",
            f"PID|1||{mrn}^^^GH^MR",
            "PV1|1|I|4E^^12^GH",
            f"OBR|1|||lactate|||{drawn}",
            f"OBX|1|NM|2524-7^Lactate^LN||{lactate}|mmol/L|||||F|||{drawn}",
        ]
    ).encode()


@pytest.mark.slow
def test_a_lab_resulted_hours_after_its_specimen_is_screened_when_it_was_resulted(
    edge: tuple[Settings, str],
) -> None:
    """A lab feed sends results as they are released, hours after some specimens were drawn
    and minutes after others. Timed by the draw, the slow result came behind the watermark the
    quick one had moved on and was dead-lettered `late`: its lactate never screened."""
    s, prefix = edge
    s = dataclasses.replace(s, watermark_on_event=True, job_name="late-resulted-lab")
    messages = [
        lab("L1", "MRN77", "20260301105000", "20260301110000", 2.1),  # a STAT lactate: 10 min
        lab("L2", "MRN78", "20260301060000", "20260301110500", 4.3),  # drawn at 06:00
    ]
    screened, letters = screened_through_the_job(s, prefix, messages)
    assert [d["reason_code"] for d in letters] == []
    states = sorted(
        (r["event_time"].hour, r["event_time"].minute, round(r["lactate_mmol_l"], 2))
        for r in screened
        if r["record_kind"] == "labs"
    )
    assert states == [(11, 0, 2.1), (11, 5, 4.3)]  # each when it was resulted


def bedside(control: str, at: str, *obx: str) -> bytes:
    """An ICU bedside charting at `at` for MRN90: OBX segments `code^name^LN|value|unit`."""
    return "\r".join(
        [
            f"MSH|^~\\&|ICU|GH|WF|GH|{at}||ORU^R01|{control}|P|2.5.1",
            "PID|1||MRN90^^^GH^MR",
            "PV1|1|I|ICU^^3^GH",
            f"OBR|1|||vitals|||{at}",
            *(f"OBX|{n}|NM|{o}|||||F|||{at}" for n, o in enumerate(obx, 1)),
        ]
    ).encode()


@pytest.mark.slow
def test_gcs_parts_a_bp_room_air_and_acvpu_charted_over_hl7_reach_the_screens_scores(
    edge: tuple[Settings, str],
) -> None:
    """An ICU charts GCS, not ACVPU, and often its three parts without their total: E3 V4 M5 is a
    GCS of 12, qSOFA's altered mentation (Seymour 2016), which no score read before. A blood
    pressure charted as one value (88/51) has no MAP: its mean, 63, is SOFA's cardiovascular
    point (MAP < 70). Oxygen flow 0 (room air) charted an hour after FiO2 0.40 drops the FiO2
    from the state: carried on, it scored respiratory SOFA 2 on room air. An hour later a ward
    nurse charts new confusion on the ACVPU scale (SNOMED CT, as UK NEWS2 charts code it):
    NEWS2's 3 points for consciousness."""
    s, prefix = edge
    s = dataclasses.replace(s, job_name="gcs-and-room-air")
    messages = [
        bedside(
            "G1",
            "20260301080000",
            "9279-1^Respirations^LN||24|/min",
            "9267-6^GCS eye^LN||3|",
            "9270-0^GCS verbal^LN||4|",
            "9268-4^GCS motor^LN||5|",
            "85354-9^Blood pressure^LN||88/51|mm[Hg]",
            "3150-0^FiO2^LN||40|%",
            "59408-5^SpO2^LN||95|%",
        ),
        bedside("G2", "20260301090000", "3151-8^O2 flow^LN||0|L/min", "59408-5^SpO2^LN||95|%"),
        bedside(
            "G3",
            "20260301093000",
            "1104441000000107^ACVPU^SCT||130987000^Acute confusion^SCT|",
            "59408-5^SpO2^LN||95|%",
        ),
    ]
    screened, letters = screened_through_the_job(s, prefix, messages)
    assert letters == []
    by_hour_minute = {
        (r["event_time"].hour, r["event_time"].minute): r
        for r in screened
        if r["record_kind"] == "vitals"
    }
    first, second = by_hour_minute[(8, 0)], by_hour_minute[(9, 0)]
    assert (first["gcs_total"], first["qsofa_score"], first["qsofa_criteria_known"]) == (12, 3, 3)
    assert first["map_mmhg"] == pytest.approx(51 + 37 / 3, abs=1e-4)
    # respiration 2 (SpO2/FiO2 95/0.40 = 237.5, below 315) and cardiovascular 1 (MAP 63); no
    # CNS points from a charted GCS
    assert (first["sofa_partial_score"], first["sofa_components_known"]) == (3, 2)
    assert (second["on_supplemental_o2"], second["fio2_fraction"]) == (False, None)
    assert (second["sofa_partial_score"], second["sofa_components_known"]) == (1, 1)
    third = by_hour_minute[(9, 30)]
    assert (third["acvpu"], second["acvpu"]) == ("C", None)
    assert third["news2_score"] == second["news2_score"] + 3  # all else valid and unchanged


CODE_MAP = """system,code,loinc,display
FLO,8,8867-4,Pulse
FLO,5,85354-9,Blood pressure (one value)
http://hospital.example.org/flowsheet-row,9,9279-1,Respirations
"""


def flowsheet(control: str) -> bytes:
    """Vital signs as a flowsheet interface sends them: the EHR's own row ids, no LOINC, no
    units (OBX-6 empty)."""
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|GH|WF|GH|20260301080500||ORU^R01|{control}|P|2.3",
            "PID|1||MRN79^^^GH^MR||DOE^JANE",
            "PV1|1|I|4E^^15^GH",
            "OBR|1|||FLOWSHEET|||20260301080000",
            "OBX|1|NM|8^PULSE^FLO||112||||||F",
            "OBX|2|ST|5^BLOOD PRESSURE^FLO||92/50||||||F",
        ]
    ).encode()


def test_a_hospitals_own_flowsheet_codes_are_stored_by_both_edges_once_the_team_maps_them(
    edge: tuple[Settings, str], tmp_path: Path
) -> None:
    s, prefix = edge
    (tmp_path / "codes.csv").write_text(CODE_MAP)
    mapped = dataclasses.replace(s, interop_code_map=str(tmp_path / "codes.csv"))
    (tmp_path / "broken.csv").write_text("system,code,loinc\nFLO,8,0000-0\n")
    with pytest.raises(CodeMapError, match="0000-0 is not a code wardflow reads"):
        broken = dataclasses.replace(s, interop_code_map=str(tmp_path / "broken.csv"))
        hl7_gateway.serve(broken, port=0, prefix=prefix)
    acks = []
    for settings, control in ((s, "U1"), (mapped, "M1")):
        server = hl7_gateway.serve(settings, port=0, prefix=prefix)
        try:
            acks += hl7_gateway.send("127.0.0.1", server.server_address[1], [flowsheet(control)])
        finally:
            server.shutdown()
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "rr.json").write_text(
        json.dumps(
            {
                "resourceType": "Observation",
                "id": "rr1",
                "status": "final",
                "code": {
                    "coding": [{"system": "http://hospital.example.org/flowsheet-row", "code": "9"}]
                },
                "subject": {"reference": "Patient/p1"},
                "effectiveDateTime": "2026-03-01T08:01:00Z",
                "valueQuantity": {"value": 22},
            }
        )
    )
    try:
        report = fhir_ingest.ingest(mapped, [drop], prefix=prefix, facility_id="GH")
        vitals = kafka_io.read_records(
            s, prefix + topics.VITALS_OBSERVATION.name, topics.VITALS_OBSERVATION.name
        )
        letters = kafka_io.read_records(s, prefix + DEAD, DEAD)
    finally:
        kafka_io.delete_topics(s, fhir_ingest.TOPICS, prefix=prefix)
    assert [ack_code(a) for a in acks] == ["AA", "AA"]  # durable: the first is stored for review
    [letter] = letters
    assert letter["reason_code"] == "not_a_vital_sign" and "8 (FLO), 5 (FLO)" in letter["reason"]
    assert report.mapped == 1 and report.refused == Counter()
    read = sorted(
        (r["observation_id"].split(":")[0], r["heart_rate_bpm"], r["sbp_mmhg"], r["dbp_mmhg"],
         r["resp_rate_per_min"])
        for r in vitals
    )  # fmt: skip
    assert read == [("fhir", None, None, None, 22), ("hl7", 112, 92, 50, None)]


def test_a_code_the_gateway_does_not_read_beside_one_it_does_is_counted_and_logged_once(
    edge: tuple[Settings, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A flowsheet ORU with the heart rate by LOINC and a temperature under the EHR's own row
    id: the heart rate is stored, the temperature is no error (a flowsheet sends pain scores
    and notes too), but it was dropped without a trace. Now the gateway counts each such code
    and logs it the first time, so the team knows what the code map could add."""
    s, prefix = edge
    messages = [
        "\r".join(
            [
                f"MSH|^~\\&|EPIC|GH|WF|GH|20260301080500||ORU^R01|{control}|P|2.5.1",
                "PID|1||MRN79^^^GH^MR||DOE^JANE",
                "PV1|1|I|4E^^15^GH",
                f"OBR|1|||FLOWSHEET|||2026030108{minute}00",
                "OBX|1|NM|8867-4^Heart rate^LN||112|/min|||||F",
                "OBX|2|NM|6^TEMPERATURE^FLO||38.9|||||F",
            ]
        ).encode()
        for control, minute in (("T1", "00"), ("T2", "05"))
    ]
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        with caplog.at_level("INFO", logger="wardflow.hl7_gateway"):
            acks = hl7_gateway.send("127.0.0.1", server.server_address[1], messages)
        stats = server.gateway.stats
    finally:
        server.shutdown()
    vitals = kafka_io.read_records(
        s, prefix + topics.VITALS_OBSERVATION.name, topics.VITALS_OBSERVATION.name
    )
    assert [ack_code(a) for a in acks] == ["AA", "AA"]
    assert sorted(v["heart_rate_bpm"] for v in vitals) == [112, 112]
    assert stats.unread == {"6 (FLO)": 2} and stats.dead_lettered == 0
    logged = [r.getMessage() for r in caplog.records if "is not read" in r.getMessage()]
    assert len(logged) == 1 and "OBX code 6 (FLO)" in logged[0]
