"""Consciousness on the ACVPU scale, as UK wards chart it for NEWS2, read by both edges
(schemas.interop.acvpu): its SNOMED CT observation code, an answer as a SNOMED CT code, a letter
or a word, and a hospital's own code once mapped."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from jobs.feeds.hl7_gateway import Gateway
from schemas.interop import fhir_r4, hl7v2
from schemas.interop.code_map import CodeMap
from schemas.settings import Settings
from tests.interop_messages import hl7, observation, tok
from tests.interop_messages import oru as ward_oru

ACVPU = "1104441000000107^ACVPU scale score^SCT"
ACVPU_CODE = "1104441000000107"


def oru(*obx: str) -> str:
    return ward_oru(*obx, unit="WARD7^12^A^GH", order="NEWS2")


@pytest.mark.parametrize(
    ("value", "letter"),
    [
        ("CWE|{}||130987000^Acute confusion^SCT", "C"),
        ("CWE|{}||248234008^Mentally alert^SCT", "A"),
        ("CWE|{}||V^Responds to voice^L", "V"),
        ("ST|{}||Pain", "P"),
        ("ST|{}||new confusion", "C"),
        ("ST|{}||U", "U"),
    ],
)
def test_an_acvpu_charting_over_hl7_is_read_as_its_letter(value: str, letter: str) -> None:
    o = hl7(oru(value.format(ACVPU) + "||||||F", "NM|9279-1^RR^LN||18|/min|||||F"))
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert rec["acvpu"] == letter


def test_an_acvpu_answer_that_is_no_level_is_dead_lettered_and_the_rest_read() -> None:
    o = hl7(oru(f"ST|{ACVPU}||drowsy||||||F", "NM|9279-1^RR^LN||18|/min|||||F"))
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert "acvpu" not in rec and rec["resp_rate_per_min"] == 18.0
    [bad] = o.rejected
    assert bad.refusal.reason_code == "bad_value" and "no ACVPU level" in bad.refusal.reason


def test_an_acvpu_reading_encodes_in_the_vitals_schema_through_the_gateway(tmp_path: Path) -> None:
    settings = Settings.from_env({}, phi_key=b"k", payload_store=tmp_path / "payloads")
    message = oru(f"CWE|{ACVPU}||450847001^Responds to pain^SCT||||||F")
    decided = Gateway(settings, listen="test").decide(message.encode())
    assert (decided.ack_code, decided.letters, len(decided.records)) == ("AA", [], 1)


def test_a_wards_own_code_for_acvpu_is_read_once_mapped(tmp_path: Path) -> None:
    csv = tmp_path / "codes.csv"
    csv.write_text("system,code,loinc\nFLO,410,1104441000000107\n")
    message = oru("ST|410^LEVEL OF CONSCIOUSNESS^FLO||Voice||||||F")
    o = hl7(message, CodeMap.load(csv))
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["acvpu"] == "V"
    assert isinstance(hl7(message), hl7v2.Refused)  # unmapped: not read


def fhir_acvpu(**value: Any) -> dict[str, Any]:
    return observation(ACVPU_CODE, "http://snomed.info/sct", "c1", **value)


def fhir(data: dict[str, Any]) -> hl7v2.Mapped | hl7v2.Refused:
    [(_, o, _)] = fhir_r4.map_json(data, tok, source="t", facility_id="F")
    assert not isinstance(o, fhir_r4.Context | fhir_r4.Part)
    return o


def test_an_acvpu_observation_in_fhir_is_read_as_its_letter() -> None:
    coded = fhir_acvpu(
        valueCodeableConcept={"coding": [{"system": "http://snomed.info/sct", "code": "300202002"}]}
    )
    for data, letter in ((coded, "V"), (fhir_acvpu(valueString="New confusion"), "C")):
        o = fhir(data)
        assert isinstance(o, hl7v2.Mapped)
        [(_, rec)] = o.records
        assert rec["acvpu"] == letter


def test_a_fhir_acvpu_without_a_level_is_refused_with_why() -> None:
    o = fhir(fhir_acvpu(valueString="drowsy"))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value"
    absent = fhir(fhir_acvpu(dataAbsentReason={"text": "asleep"}))
    assert isinstance(absent, hl7v2.Refused) and absent.reason_code == "no_value"


def test_a_wards_own_code_for_acvpu_is_read_once_mapped_in_fhir_too(tmp_path: Path) -> None:
    csv = tmp_path / "codes.csv"
    csv.write_text("system,code,loinc\nhttp://h.example/row,410,1104441000000107\n")
    data = fhir_acvpu(valueString="Voice")
    data["code"] = {"coding": [{"system": "http://h.example/row", "code": "410"}]}
    [(_, o, _)] = fhir_r4.map_json(data, tok, source="t", facility_id="F", codes=CodeMap.load(csv))
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["acvpu"] == "V"


def test_an_acvpu_code_beside_a_loinc_coding_is_read_as_itself_in_both_edges() -> None:
    data = fhir_acvpu(valueCodeableConcept={"coding": [{"code": "130987000"}]})
    data["code"]["coding"].append({"system": "http://loinc.org", "code": "67775-7"})
    o = fhir(data)
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["acvpu"] == "C"
    m = hl7(oru(f"CWE|{ACVPU}^67775-7^Level of responsiveness^LN||130987000^^SCT||||||F"))
    assert isinstance(m, hl7v2.Mapped) and m.records[0][1]["acvpu"] == "C"


def test_a_local_code_beside_a_loinc_one_is_not_read_through_the_map(tmp_path: Path) -> None:
    csv = tmp_path / "codes.csv"
    csv.write_text("system,code,loinc\nFLO,410,1104441000000107\n")
    message = oru("ST|410^LOC^FLO^67775-7^Level of responsiveness^LN||Voice||||||F")
    assert isinstance(hl7(message, CodeMap.load(csv)), hl7v2.Refused)  # the LOINC code says


def test_an_acvpu_component_of_a_vital_signs_panel_is_read_and_a_bad_one_dead_lettered() -> None:
    def panel(answer: dict[str, Any]) -> dict[str, Any]:
        return fhir_acvpu(
            code={"coding": [{"system": "http://loinc.org", "code": "85353-1"}]},
            component=[
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                    "valueQuantity": {"value": 80, "code": "/min"},
                },
                {
                    "code": {"coding": [{"system": "http://snomed.info/sct",
                                         "code": "1104441000000107"}]},
                    **answer,
                },
            ],
        )  # fmt: skip

    read = fhir(panel({"valueCodeableConcept": {"coding": [{"code": "130987000"}]}}))
    assert isinstance(read, hl7v2.Mapped)
    assert (read.records[0][1]["acvpu"], read.records[0][1]["heart_rate_bpm"]) == ("C", 80.0)
    bad = fhir(panel({"valueString": "drowsy"}))
    assert isinstance(bad, hl7v2.Mapped) and "acvpu" not in bad.records[0][1]
    assert [r.refusal.reason_code for r in bad.rejected] == ["bad_value"]


@pytest.mark.parametrize(
    "value",
    [
        "CWE|{}||1^Alert^FLO^130987000^Acute confusion^SCT",  # two levels in one answer
        "CWE|{}||U^Unable to assess^L",  # its text says it is no level: not Unresponsive
        "SN|{}||>^V",  # a bound is no level
    ],
)
def test_an_hl7_answer_whose_parts_disagree_or_say_no_level_is_dead_lettered(value: str) -> None:
    o = hl7(oru(value.format(ACVPU) + "||||||F", "NM|9279-1^RR^LN||18|/min|||||F"))
    assert isinstance(o, hl7v2.Mapped) and "acvpu" not in o.records[0][1]
    assert [r.refusal.reason_code for r in o.rejected] == ["bad_value"]


def test_a_fhir_answer_coded_alert_with_the_text_new_confusion_is_refused() -> None:
    o = fhir(
        fhir_acvpu(
            valueCodeableConcept={
                "coding": [{"system": "http://snomed.info/sct", "code": "248234008"}],
                "text": "New confusion",
            }
        )
    )
    assert isinstance(o, hl7v2.Refused) and "more than one ACVPU level (A, C)" in o.reason


def test_two_acvpu_components_of_one_panel_keep_the_first_and_one_with_a_modifier_is_refused() -> (
    None
):
    def component(answer: dict[str, Any]) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": ACVPU_CODE}]},
            **answer,
        }

    confused = component({"valueCodeableConcept": {"coding": [{"code": "130987000"}]}})
    alert = component({"valueCodeableConcept": {"coding": [{"code": "248234008"}]}})
    panel = fhir_acvpu(
        code={"coding": [{"system": "http://loinc.org", "code": "85353-1"}]},
        component=[confused, alert],
    )
    o = fhir(panel)
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["acvpu"] == "C"  # never the milder
    assert [r.refusal.reason_code for r in o.rejected] == ["conflicting_value"]
    odd = component(
        {"valueString": "Voice", "modifierExtension": [{"url": "urn:x", "valueBoolean": True}]}
    )
    panel["component"] = [odd]
    refused = fhir(panel)
    assert isinstance(refused, hl7v2.Refused) and refused.reason_code == "unsupported_modifier"
