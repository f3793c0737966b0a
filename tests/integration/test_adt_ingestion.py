"""HL7 v2 over MLLP and FHIR R4 bundle drops into real Kafka, and on through the census job."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from jobs import bed_census
from jobs.feeds import fhir_ingest, hl7_gateway
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.settings import Settings
from tests.unit.test_hl7v2 import DATA as HL7_DATA
from tests.unit.test_hl7v2 import EXPECTED

pytestmark = pytest.mark.integration
FHIR_DATA = HL7_DATA.parent / "fhir_r4"
TOPICS = [
    topics.ADT_EVENT.name,
    topics.VITALS_OBSERVATION.name,
    topics.LABS_RESULT.name,
    topics.DEAD_LETTER.name,
]


@pytest.fixture
def prefix(kafka: Settings) -> str:
    p = f"t-ingest-{uuid.uuid4().hex[:8]}."
    yield p
    kafka_io.delete_topics(kafka, [*TOPICS, *bed_census.JOB.output_topics], prefix=p)
    kafka_io.delete_topics(kafka, TOPICS, prefix=p + "nonprod.")


def counts(s: Settings, prefix: str) -> dict[str, int]:
    return {t: kafka_io.count_records(s, prefix + t) for t in TOPICS}


def ack_code(ack: str) -> str:
    return ack.split("\r")[1].split("|")[1]


# Samples whose MSH-11 is T (training): mapped like the others, onto the non-production topics.
TRAINING = {
    "ADT04-251.hl7",
    "ADT04-28.hl7",
    "LAB-ORU-1.hl7",
    "LAB-ORU-2.hl7",
    "LRI_2.0-NG_CBC_Typ_Message.hl7",
    "ORU-R01-01.hl7",  # its MSH-11 is T too; read now that its PRT segments are left out
}


def test_every_hl7_sample_is_acknowledged_and_published_or_dead_lettered(
    kafka: Settings, prefix: str
) -> None:
    server = hl7_gateway.serve(kafka, port=0, prefix=prefix)
    try:
        names = sorted(EXPECTED)
        messages = [(HL7_DATA / n).read_bytes() for n in names]
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], [*messages, b"not hl7"])
    finally:
        server.shutdown()
    for name, ack in zip(names, acks, strict=False):  # durable: AR only for what is not ours
        assert ack_code(ack) == ("AR" if "unsupported" in EXPECTED[name] else "AA"), name
    assert ack_code(acks[-1]) == "AA"  # not HL7 at all: stored for review, not resent forever

    def expect(names: set[str], extra_refused: int = 0) -> dict[str, int]:
        got = [EXPECTED[n] for n in names]
        return {
            topics.ADT_EVENT.name: sum(not v.startswith(("refused", "labs")) for v in got),
            topics.VITALS_OBSERVATION.name: 0,
            topics.LABS_RESULT.name: sum(v == "labs" for v in got),
            topics.DEAD_LETTER.name: sum(v.startswith("refused") for v in got) + extra_refused,
        }

    assert counts(kafka, prefix) == expect(set(EXPECTED) - TRAINING, extra_refused=1)
    assert counts(kafka, prefix + "nonprod.") == expect(TRAINING)
    letters = kafka_io.read_records(
        kafka, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    assert {d["stage"] for d in letters} == {"hl7_gateway"}
    a09 = (HL7_DATA / "ADT-A09-01.hl7").read_bytes()
    payloads = {phi.unseal(kafka.phi_key, d["payload"], "hl7_gateway") for d in letters}
    assert payloads >= {b"not hl7", a09}
    assert not any(b"EVERYMAN" in d["payload"] for d in letters)  # sealed, not in clear


def test_every_fhir_example_is_published_or_dead_lettered(kafka: Settings, prefix: str) -> None:
    report = fhir_ingest.ingest(kafka, [FHIR_DATA], prefix=prefix, facility_id="F")
    n = counts(kafka, prefix)
    assert report.resources == report.mapped + sum(report.refused.values()) + sum(
        report.context.values()
    )
    assert not report.values_refused  # every example value is read or its resource refused
    assert n[topics.DEAD_LETTER.name] == sum(report.refused.values())
    assert n[topics.ADT_EVENT.name] == report.records[topics.ADT_EVENT.name] == 3
    assert n[topics.VITALS_OBSERVATION.name] == report.records[topics.VITALS_OBSERVATION.name] == 2
    assert n[topics.LABS_RESULT.name] == report.records[topics.LABS_RESULT.name] == 1  # f001


def hl7_adt(
    control: str,
    trigger: str,
    when: str,
    unit: str = "",
    bed: str = "",
    *,
    mrn: str = "MRN77",
    admitted: str = "",
    visit: str = "",
    patient_class: str = "I",
) -> str:
    """An ADT message entered at `when` (MSH-7, EVN-2); `admitted`: PV1-44, the admission's
    own time, when it was entered after the fact; `visit`: PV1-19 (V900-`mrn` by default);
    `patient_class`: PV1-2."""
    return "\r".join(
        [
            f"MSH|^~\\&|EPIC|GH|WF|GH|{when}||ADT^{trigger}|{control}|P|2.5.1",
            f"EVN|{trigger}|{when}",
            f"PID|1||{mrn}^^^GH^MR||DOE^JANE",
            f"PV1|1|{patient_class}|{unit}^^{bed}^GH||||||||||||||||{visit or f'V900-{mrn}'}"
            + "|" * 25
            + admitted,
        ]
    )


def census_settings(kafka: Settings, tmp_path: Path, job_name: str, **changes: Any) -> Settings:
    """The broker's settings with a capacity file of facility GH (4E: 4 beds, ICU: 2)."""
    cap = tmp_path / "cap.json"
    cap.write_text(json.dumps({"facilities": {"GH": {"4E": 4, "ICU": 2}}}))
    return dataclasses.replace(kafka, capacity_file=cap, job_name=job_name, **changes)


def send(s: Settings, prefix: str, messages: list[str]) -> list[str]:
    """The ACK codes of `messages` sent over MLLP to a gateway started for them."""
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        acks = hl7_gateway.send("127.0.0.1", server.server_address[1], messages)
    finally:
        server.shutdown()
    return [ack_code(a) for a in acks]


def read(s: Settings, prefix: str, topic: topics.Topic) -> list[dict[str, Any]]:
    return kafka_io.read_records(s, prefix + topic.name, topic.name)


def latest_census(s: Settings, prefix: str) -> dict[str, dict[str, Any]]:
    """Each unit's (and `ALL`'s) newest census.unit row."""
    census = read(s, prefix, topics.CENSUS_UNIT)
    return {r["unit_id"]: r for r in sorted(census, key=lambda r: r["window_end"])}


@pytest.mark.slow
def test_hl7_admit_transfer_discharge_and_cancel_reach_the_census(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    s = census_settings(kafka, tmp_path, "hl7-census-test")
    messages = [
        hl7_adt("m1", "A01", "20260301080000", "4E", "12"),
        hl7_adt("m2", "A02", "20260301093000", "ICU", "2"),
        hl7_adt("m3", "A03", "20260301120000"),
        hl7_adt("m4", "A13", "20260301121500", "ICU", "2"),
        hl7_adt("m2", "A02", "20260301093000", "ICU", "2"),  # a resend: same event id
    ]
    assert send(s, prefix, messages) == ["AA"] * 5
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    latest = latest_census(s, prefix)
    assert {u: r["occupied_beds"] for u, r in latest.items()} == {"4E": 0, "ICU": 1, "ALL": 1}
    letters = read(s, prefix, topics.DEAD_LETTER)
    assert Counter(d["reason_code"] for d in letters) == {"duplicate": 1}


@pytest.mark.slow
def test_an_admission_entered_hours_after_the_fact_is_counted_from_when_it_was_entered(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    """Registrars enter an admission after the patient is in the bed (its PV1-44 hours back).
    Timed by that, it would be behind the watermark of a feed that has moved on (other
    patients' later events) and dead-lettered `late`, the patient missing from the census and
    their later transfer refused `not_admitted`. It is applied when it was entered (EVN-2)."""
    s = census_settings(kafka, tmp_path, "hl7-census-entered-later", watermark_on_event=True)
    names = list(dict.fromkeys([*TOPICS, *bed_census.JOB.output_topics]))
    kafka_io.ensure_topics(s, names, prefix=prefix, partitions=1)
    messages = [
        hl7_adt("m1", "A01", "20260301080000", "4E", "12"),
        hl7_adt("m2", "A02", "20260301093000", "ICU", "2"),
        hl7_adt("m3", "A01", "20260301100000", "4E", "3", mrn="MRN78", admitted="20260301070000"),
        hl7_adt("m4", "A02", "20260301103000", "ICU", "1", mrn="MRN78"),
    ]
    assert send(s, prefix, messages) == ["AA"] * 4
    adt = read(s, prefix, topics.ADT_EVENT)
    happened_and_entered = [(r["event_time"].hour, r["recorded_time"].hour) for r in adt]
    assert happened_and_entered == [(8, 8), (9, 9), (7, 10), (10, 10)]
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    assert read(s, prefix, topics.DEAD_LETTER) == []
    events = read(s, prefix, topics.CENSUS_EVENT)
    assert [(e["event_type"], e["outcome"], e["event_time"].hour) for e in events] == [
        ("admit", "applied", 8),
        ("transfer", "applied", 9),
        ("admit", "applied", 10),  # counted from 10:00, when it was entered
        ("transfer", "applied", 10),
    ]
    latest = latest_census(s, prefix)
    assert {u: r["occupied_beds"] for u, r in latest.items()} == {"4E": 0, "ICU": 2, "ALL": 2}


@pytest.mark.slow
def test_two_patients_swapping_beds_move_each_to_the_others_unit(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    s = census_settings(kafka, tmp_path, "hl7-census-swap")
    swap = "\r".join(
        [
            "MSH|^~\\&|EPIC|GH|WF|GH|20260301100000||ADT^A17^ADT_A17|m3|P|2.5.1",
            "EVN|A17|20260301100000",
            "PID|1||MRN77^^^GH^MR||DOE^JANE",
            "PV1|1|I|ICU^^2^GH|||4E^^12^GH",
            "PID|2||MRN78^^^GH^MR||ROE^RICHARD",
            "PV1|1|I|4E^^12^GH|||ICU^^2^GH",
        ]
    )
    messages = [
        hl7_adt("m1", "A01", "20260301080000", "4E", "12"),
        hl7_adt("m2", "A01", "20260301090000", "ICU", "2", mrn="MRN78"),
        swap,
        swap,  # a resend: both of its events are duplicates
    ]
    assert send(s, prefix, messages) == ["AA"] * 4
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    moves = sorted(
        (e["event_type"], e["unit_id"], e["outcome"]) for e in read(s, prefix, topics.CENSUS_EVENT)
    )
    assert moves == [
        ("admit", "4E", "applied"),
        ("admit", "ICU", "applied"),
        ("transfer", "4E", "applied"),
        ("transfer", "ICU", "applied"),
    ]
    latest = latest_census(s, prefix)
    assert {u: r["occupied_beds"] for u, r in latest.items()} == {"4E": 1, "ICU": 1, "ALL": 2}
    assert (latest["ICU"]["transfers_in"], latest["ICU"]["transfers_out"]) == (1, 1)
    letters = read(s, prefix, topics.DEAD_LETTER)
    assert Counter(d["reason_code"] for d in letters) == {"duplicate": 2}


@pytest.mark.slow
def test_a_trauma_alias_merged_into_the_patients_record_is_counted_once_and_moves_on(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    """An emergency admission under a trauma alias (T9001), merged (A40) into the patient's
    own record once they are known: the alias's ICU bed passes to the record, which the next
    transfer moves. Refused before (AR 201), the alias held the bed for ever and the transfer
    was refused `not_admitted`."""
    s = census_settings(kafka, tmp_path, "hl7-census-merge")
    merge = "\r".join(
        [
            "MSH|^~\\&|EPIC|GH|WF|GH|20260301100000||ADT^A40^ADT_A39|m2|P|2.5.1",
            "EVN|A40|20260301100000",
            "PID|1||MRN77^^^GH^MR||DOE^JANE",
            "MRG|T9001^^^GH^MR",
            "PV1|1|I|ICU^^2^GH",
        ]
    )
    messages = [
        hl7_adt("m1", "A01", "20260301080000", "ICU", "2", mrn="T9001"),
        merge,
        hl7_adt("m3", "A02", "20260301110000", "4E", "12"),
        merge,  # a resend: both of its events are duplicates
    ]
    assert send(s, prefix, messages) == ["AA"] * 4
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    events = read(s, prefix, topics.CENSUS_EVENT)
    assert sorted((e["event_type"], e["unit_id"], e["outcome"]) for e in events) == [
        ("admit", "ICU", "applied"),
        ("merged_away", None, "applied"),  # the unit the alias is in after: none
        ("merged_in", "ICU", "applied"),
        ("transfer", "4E", "applied"),
    ]
    latest = latest_census(s, prefix)
    assert {u: r["occupied_beds"] for u, r in latest.items()} == {"4E": 1, "ICU": 0, "ALL": 1}
    flows = read(s, prefix, topics.CENSUS_UNIT)
    assert sum(r["arrivals"] for r in flows if r["unit_id"] == "ALL") == 1  # the merge is none
    assert sum(r["discharges"] for r in flows if r["unit_id"] == "ALL") == 0
    letters = read(s, prefix, topics.DEAD_LETTER)
    assert Counter(d["reason_code"] for d in letters) == {"duplicate": 2}


@pytest.mark.slow
def test_the_cancel_of_a_duplicate_visit_leaves_the_patients_real_stay_in_its_bed(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    """A second visit opened for a patient already in a bed (refused: already admitted), then
    cancelled (A11 of that visit). The census voided the real stay before, and the patient's
    next transfer was refused `not_admitted`; the cancel is now of its own visit's stay only.
    A session of the patient's recurring infusion series ending (A03 of visit V3, PV1-2 R)
    discharged them before; it is that visit's, which holds no bed, and they stay in theirs."""
    s = census_settings(kafka, tmp_path, "hl7-census-duplicate-visit")
    messages = [
        hl7_adt("m1", "A01", "20260301080000", "ICU", "2", visit="V1"),
        hl7_adt("m2", "A01", "20260301090000", "ICU", "1", visit="V2"),
        hl7_adt("m3", "A11", "20260301100000", visit="V2"),
        hl7_adt("m4", "A02", "20260301110000", "4E", "12", visit="V1"),
        hl7_adt("m5", "A03", "20260301120000", "ONC", "4", visit="V3", patient_class="R"),
    ]
    assert send(s, prefix, messages) == ["AA"] * 5
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    events = read(s, prefix, topics.CENSUS_EVENT)
    assert [(e["event_type"], e["unit_id"], e["outcome"]) for e in events] == [
        ("admit", "ICU", "applied"),
        ("transfer", "4E", "applied"),
        ("register", "4E", "no_change"),  # the series' visit: the patient is still in 4E
    ]
    letters = read(s, prefix, topics.DEAD_LETTER)
    assert sorted(d["reason_code"] for d in letters) == ["already_admitted", "nothing_to_cancel"]
    latest = latest_census(s, prefix)
    assert {u: r["occupied_beds"] for u, r in latest.items()} == {"4E": 1, "ICU": 0, "ALL": 1}


@pytest.mark.slow
def test_a_fhir_encounter_entered_in_error_frees_the_bed_its_first_version_took(
    kafka: Settings, prefix: str, tmp_path: Path
) -> None:
    """Two versions of one Encounter dropped in order: in progress in ICU, then
    `entered-in-error` (the stay never was). The second was refused before, and the bed stayed
    taken; now the census voids the Encounter's stay and frees the bed."""
    s = census_settings(kafka, tmp_path, "fhir-census-entered-in-error")
    drop = tmp_path / "drop"
    drop.mkdir()
    version = {
        "resourceType": "Encounter",
        "id": "enc-eie",
        "status": "in-progress",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
        "subject": {"reference": "Patient/p-eie"},
        "location": [{"location": {"display": "ICU"}, "period": {"start": "2026-03-01T08:00:00Z"}}],
        "meta": {"lastUpdated": "2026-03-01T08:05:00Z"},
    }
    (drop / "1.json").write_text(json.dumps(version))
    erred = version | {
        "status": "entered-in-error",
        "meta": {"lastUpdated": "2026-03-01T09:30:00Z"},
    }
    (drop / "2.json").write_text(json.dumps(erred))
    report = fhir_ingest.ingest(s, [drop], prefix=prefix, facility_id="GH")
    assert (report.mapped, sum(report.refused.values())) == (2, 0)
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    events = read(s, prefix, topics.CENSUS_EVENT)
    assert [(e["event_type"], e["outcome"]) for e in events] == [
        ("admit", "applied"),
        ("void_encounter", "applied"),
    ]
    latest = latest_census(s, prefix)
    assert latest["ICU"]["occupied_beds"] == 0 and latest["ALL"]["occupied_beds"] == 0
    assert (
        sum(r["cancels"] for r in read(s, prefix, topics.CENSUS_UNIT) if r["unit_id"] == "ICU") == 1
    )
