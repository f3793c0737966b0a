"""What a bedside reading implies but was not sent with (schemas.interop.derived), read alike by
the HL7 v2 gateway and the FHIR drop: a Glasgow coma scale total from its eye, verbal and motor
parts, and a mean arterial pressure from the systolic and diastolic."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from jobs.feeds.hl7_gateway import Gateway
from schemas import topics
from schemas.interop import derived, fhir_r4, hl7v2
from schemas.interop.code_map import CodeMap
from schemas.settings import Settings
from tests.conftest import offline_check
from tests.interop_messages import hl7, observation, oru, tok

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "fhir_r4"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/fhir_r4 is not here")
VITALS = topics.VITALS_OBSERVATION.name


def one_record(o: hl7v2.Mapped | hl7v2.Refused) -> dict[str, Any]:
    assert isinstance(o, hl7v2.Mapped), o
    [(topic, rec)] = o.records
    assert topic == VITALS
    return rec


EYE, VERBAL, MOTOR = "9267-6^GCS eye^LN", "9270-0^GCS verbal^LN", "9268-4^GCS motor^LN"


# --- the Glasgow coma scale over HL7 v2 -----------------------------------------------------


def test_a_gcs_charted_as_its_three_parts_is_read_as_their_total(tmp_path: Path) -> None:
    message = oru(f"NM|{EYE}||3||||||F", f"NM|{VERBAL}||4||||||F", f"NM|{MOTOR}||5||||||F")
    rec = one_record(hl7(message))
    assert rec["gcs_total"] == 12 and isinstance(rec["gcs_total"], int)
    settings = Settings.from_env({}, phi_key=b"k", payload_store=tmp_path / "payloads")
    decided = Gateway(settings, listen="test").decide(
        message.encode()
    )  # encodes in the topic's schema
    assert (decided.ack_code, decided.letters, len(decided.records)) == ("AA", [], 1)


def test_parts_coded_with_loinc_answers_or_as_their_scores_are_summed() -> None:
    rec = one_record(
        hl7(
            oru(
                f"CWE|{EYE}||LA6556-0^Eyes open spontaneously^LN||||||F",
                f"CWE|{VERBAL}||4^Confused^L^LA6560-2^Confused^LN||||||F",
                f"CWE|{MOTOR}||6^Obeys commands||||||F",  # a code without a system: its score
                "NM|8867-4^HR^LN||88|/min|||||F",
            )
        )
    )
    assert (rec["gcs_total"], rec["heart_rate_bpm"]) == (14, 88.0)


def test_a_total_sent_with_parts_that_agree_is_read_and_nothing_else_is_said() -> None:
    o = hl7(
        oru(
            "NM|9269-2^GCS total^LN||15||||||F",
            f"NM|{EYE}||4||||||F",
            f"NM|{VERBAL}||5||||||F",
            f"NM|{MOTOR}||6||||||F",
        )
    )
    assert one_record(o)["gcs_total"] == 15
    assert isinstance(o, hl7v2.Mapped) and (o.rejected, o.unread, o.notes) == ([], [], [])


def test_parts_that_contradict_the_total_sent_are_dead_lettered_and_the_total_kept() -> None:
    o = hl7(
        oru(
            "NM|9269-2^GCS total^LN||10||||||F",
            f"NM|{EYE}||4||||||F",
            f"NM|{VERBAL}||5||||||F",
            f"NM|{MOTOR}||6||||||F",
        )
    )
    assert one_record(o)["gcs_total"] == 10
    assert isinstance(o, hl7v2.Mapped)
    assert [r.refusal.reason_code for r in o.rejected] == ["conflicting_value"] * 3
    assert "4 + 5 + 6 = 15 beside the total sent, 10" in o.rejected[0].refusal.reason


def test_a_total_sent_but_not_read_is_not_rebuilt_from_its_parts() -> None:
    o = hl7(
        oru(
            "ST|9269-2^GCS total^LN||10T||||||F",  # T: the verbal was not testable
            f"NM|{EYE}||3||||||F",
            f"NM|{VERBAL}||1||||||F",
            f"NM|{MOTOR}||6||||||F",
            "NM|9279-1^RR^LN||18|/min|||||F",
        )
    )
    assert "gcs_total" not in one_record(o)
    assert isinstance(o, hl7v2.Mapped)
    assert [r.refusal.reason_code for r in o.rejected] == ["bad_value"]


def test_an_intubated_verbal_response_makes_no_total_and_no_dead_letter() -> None:
    o = hl7(
        oru(
            f"NM|{EYE}||3||||||F",
            f"ST|{VERBAL}||T||||||F",  # not testable: a tube
            f"NM|{MOTOR}||5||||||F",
            "NM|9279-1^RR^LN||18|/min|||||F",
        )
    )
    rec = one_record(o)
    assert "gcs_total" not in rec and rec["resp_rate_per_min"] == 18.0  # E + M would be 8: low
    assert isinstance(o, hl7v2.Mapped) and o.rejected == []
    assert any("verbal: no score" in s for s in o.notes), o.notes
    assert "GCS eye, motor without verbal: no total" in o.notes


def test_parts_alone_that_make_no_total_refuse_the_message_as_without_a_value() -> None:
    o = hl7(oru(f"NM|{EYE}||3||||||F", f"ST|{VERBAL}||T||||||F", f"NM|{MOTOR}||5||||||F"))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "no_value"
    assert "GCS verbal: no score" in o.reason
    assert "GCS eye, motor without verbal: no total" in o.reason


def test_a_structured_numeric_part_is_read_and_a_local_answer_list_is_not_taken_as_scores() -> None:
    rec = one_record(
        hl7(oru(f"SN|{EYE}||^3||||||F", f"SN|{VERBAL}||=^4||||||F", f"NM|{MOTOR}||5||||||F"))
    )
    assert rec["gcs_total"] == 12
    local = hl7(
        oru(
            f"CWE|{EYE}||1^Spontaneously^99EPIC||||||F",  # the list's first entry, not a score
            f"NM|{VERBAL}||5||||||F",
            f"NM|{MOTOR}||6||||||F",
            "NM|9279-1^RR^LN||18|/min|||||F",
        )
    )
    assert "gcs_total" not in one_record(local)
    scored = hl7(
        oru(
            f"CWE|{EYE}||4^4 - Spontaneously^99EPIC||||||F",  # its text says its score
            f"NM|{VERBAL}||5||||||F",
            f"NM|{MOTOR}||6||||||F",
        )
    )
    assert one_record(scored)["gcs_total"] == 15


def test_a_part_outside_its_scores_is_dead_lettered_and_no_total_is_made() -> None:
    o = hl7(
        oru(
            f"NM|{EYE}||3||||||F",
            f"NM|{VERBAL}||6||||||F",  # verbal scores 1-5
            f"NM|{MOTOR}||5||||||F",
            "NM|9279-1^RR^LN||18|/min|||||F",
        )
    )
    rec = one_record(o)
    assert "gcs_total" not in rec
    assert isinstance(o, hl7v2.Mapped)
    [bad] = o.rejected
    assert bad.refusal.reason_code == "bad_value" and "not a score 1-5" in bad.refusal.reason


def test_an_answer_of_another_parts_list_is_refused() -> None:
    with pytest.raises(ValueError, match="is GCS motor's"):
        derived.part_score("9267-6", None, ["LA6567-7"])


def test_two_different_scores_of_one_part_at_one_time_keep_the_first_and_a_correction_wins() -> (
    None
):
    o = hl7(
        oru(
            f"NM|{EYE}||3||||||F",
            f"NM|{EYE}||2||||||F",
            f"NM|{VERBAL}||4||||||F",
            f"NM|{MOTOR}||5||||||F",
        )
    )
    assert one_record(o)["gcs_total"] == 12
    assert isinstance(o, hl7v2.Mapped)
    assert [r.refusal.reason_code for r in o.rejected] == ["conflicting_value"]
    corrected = hl7(
        oru(
            f"NM|{EYE}||3||||||F",
            f"NM|{EYE}||2||||||C",
            f"NM|{VERBAL}||4||||||F",
            f"NM|{MOTOR}||5||||||F",
        )
    )
    assert one_record(corrected)["gcs_total"] == 11


def test_a_hospitals_own_codes_for_the_parts_are_read_once_mapped(tmp_path: Path) -> None:
    csv = tmp_path / "codes.csv"
    csv.write_text("system,code,loinc\nFLO,301,9267-6\nFLO,302,9270-0\nFLO,303,9268-4\n")
    codes = CodeMap.load(csv)
    message = oru(
        "NM|301^EYES^FLO||4||||||F", "NM|302^VERBAL^FLO||5||||||F", "NM|303^MOTOR^FLO||6||||||F"
    )
    assert one_record(hl7(message, codes))["gcs_total"] == 15
    assert isinstance(hl7(message), hl7v2.Refused)  # unmapped: not read


# --- the mean arterial pressure over HL7 v2 -------------------------------------------------


def test_a_blood_pressure_charted_as_one_value_gets_its_mean_arterial_pressure() -> None:
    rec = one_record(hl7(oru("ST|85354-9^BP^LN||88/51|mm[Hg]|||||F")))
    assert (rec["sbp_mmhg"], rec["dbp_mmhg"]) == (88.0, 51.0)
    assert rec["map_mmhg"] == pytest.approx(51 + (88 - 51) / 3)  # 63.3: SOFA's MAP < 70


def test_a_mean_arterial_pressure_sent_is_kept_and_a_swapped_pair_makes_none() -> None:
    sent = one_record(
        hl7(
            oru(
                "NM|8480-6^SBP^LN||120|mm[Hg]|||||F",
                "NM|8462-4^DBP^LN||60|mm[Hg]|||||F",
                "NM|8478-0^MAP^LN||85|mm[Hg]|||||F",
            )
        )
    )
    assert sent["map_mmhg"] == 85.0  # the monitor's measured mean, not 80
    swapped = one_record(
        hl7(oru("NM|8480-6^SBP^LN||60|mm[Hg]|||||F", "NM|8462-4^DBP^LN||120|mm[Hg]|||||F"))
    )
    assert "map_mmhg" not in swapped
    equal = one_record(hl7(oru("ST|85354-9^BP^LN||80/80|mm[Hg]|||||F")))
    assert "map_mmhg" not in equal


def test_an_arterial_systolic_and_a_cuff_diastolic_make_no_mean() -> None:
    mmhg = "266016^MDC_DIM_MMHG^MDC"
    rec = one_record(
        hl7(
            oru(
                f"NM|150037^MDC_PRESS_BLD_ART_ABP_SYS^MDC||150|{mmhg}|||||F",
                f"NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC||95|{mmhg}|||||F",
                f"NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC||55|{mmhg}|||||F",
            )
        )
    )
    assert (rec["sbp_mmhg"], rec["dbp_mmhg"]) == (150.0, 55.0)  # the line's, the cuff's
    assert "map_mmhg" not in rec


@pytest.mark.parametrize(
    "mean",
    [
        "NM|8478-0^MAP^LN||11|kPa|||||F",  # a unit MAP is not read in: dead-lettered
        "NM|8478-0^MAP^LN||||||||X",  # the monitor could not obtain it
        "NM|8478-0^MAP^LN||80|mm[Hg]|||||W",  # taken back
    ],
)
def test_a_mean_sent_but_not_read_is_not_estimated(mean: str) -> None:
    rec = one_record(
        hl7(oru("NM|8480-6^SBP^LN||120|mm[Hg]|||||F", "NM|8462-4^DBP^LN||60|mm[Hg]|||||F", mean))
    )
    assert "map_mmhg" not in rec


def test_pressures_of_two_times_make_no_mean() -> None:
    o = hl7(
        oru(
            "NM|8480-6^SBP^LN||120|mm[Hg]|||||F|||20260301100000",
            "NM|8462-4^DBP^LN||60|mm[Hg]|||||F|||20260301100500",
        )
    )
    assert isinstance(o, hl7v2.Mapped) and len(o.records) == 2
    assert all("map_mmhg" not in rec for _, rec in o.records)


# --- FHIR R4 --------------------------------------------------------------------------------


def fhir(data: dict[str, Any]) -> hl7v2.Mapped | hl7v2.Refused:
    [(_, o, _)] = fhir_r4.map_json(data, tok, source="t", facility_id="F")
    return o


def part(code: str, score: int, answer: str | None = None) -> dict[str, Any]:
    coding: dict[str, Any] = {
        "system": "http://acme.example/gcs",
        "code": str(score),
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/ordinalValue", "valueDecimal": score}
        ],
    }
    codings = [coding] + ([{"system": "http://loinc.org", "code": answer}] if answer else [])
    return {
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "valueCodeableConcept": {"coding": codings},
    }


def gcs_observation(*components: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return observation("9269-2", "http://loinc.org", "g1", component=list(components), **kw)


@needs_data
def test_fhirs_own_glasgow_example_without_its_total_is_read_from_its_parts() -> None:
    glasgow = json.loads((DATA / "observation-example-glasgow.json").read_text())
    assert one_record(fhir(glasgow))["gcs_total"] == 13  # as sent
    del glasgow["valueQuantity"]
    assert one_record(fhir(copy.deepcopy(glasgow)))["gcs_total"] == 13  # 5 + 4 + 4


def test_a_fhir_gcs_of_parts_with_ordinal_values_or_loinc_answers_is_summed() -> None:
    by_ordinal = gcs_observation(part("9267-6", 2), part("9270-0", 2), part("9268-4", 4))
    assert one_record(fhir(by_ordinal))["gcs_total"] == 8
    by_answer = gcs_observation(
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "9267-6"}]},
            "valueCodeableConcept": {
                "coding": [{"system": "http://loinc.org", "code": "LA6554-5"}]
            },
        },
        part("9270-0", 2, "LA6558-6"),
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "9268-4"}]},
            "valueInteger": 4,
        },
    )
    assert one_record(fhir(by_answer))["gcs_total"] == 8


def test_a_fhir_gcs_with_a_part_absent_is_refused_with_why() -> None:
    verbal = part("9270-0", 1)
    del verbal["valueCodeableConcept"]
    verbal["dataAbsentReason"] = {"text": "intubated"}
    o = fhir(gcs_observation(part("9267-6", 2), verbal, part("9268-4", 4)))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "no_value"
    assert "GCS eye, motor without verbal: no total" in o.reason


def test_a_fhir_total_with_parts_that_contradict_it_dead_letters_the_parts() -> None:
    o = fhir(
        gcs_observation(
            part("9267-6", 4),
            part("9270-0", 5),
            part("9268-4", 6),
            valueQuantity={"value": 10, "system": "http://unitsofmeasure.org", "code": "{score}"},
        )
    )
    assert one_record(o)["gcs_total"] == 10
    assert isinstance(o, hl7v2.Mapped)
    assert [r.refusal.reason_code for r in o.rejected] == ["conflicting_value"] * 3


def test_a_fhir_part_with_a_bound_or_another_unit_is_refused() -> None:
    bound = part("9267-6", 3)
    del bound["valueCodeableConcept"]
    bound["valueQuantity"] = {"value": 3, "comparator": "<"}
    o = fhir(gcs_observation(bound, part("9270-0", 2), part("9268-4", 4)))
    assert isinstance(o, hl7v2.Refused) and "a bound, not a score" in o.reason
    pressure = part("9267-6", 3)
    del pressure["valueCodeableConcept"]
    pressure["valueQuantity"] = {"value": 3, "system": "http://unitsofmeasure.org",
                                 "code": "mm[Hg]"}  # fmt: skip
    o = fhir(gcs_observation(pressure, part("9270-0", 2), part("9268-4", 4)))
    assert isinstance(o, hl7v2.Refused) and "is not a score's" in o.reason


def test_a_vital_signs_panel_with_parts_that_make_no_total_says_so() -> None:
    panel = gcs_observation(
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "valueQuantity": {"value": 80, "code": "/min"},
        },
        part("9267-6", 3),
        part("9268-4", 5),
    )
    panel["code"] = {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]}
    o = fhir(panel)
    rec = one_record(o)
    assert rec["heart_rate_bpm"] == 80.0 and "gcs_total" not in rec
    assert isinstance(o, hl7v2.Mapped)
    assert o.notes == ["GCS eye, motor without verbal: no total"]


def test_a_fhir_part_outside_its_scores_is_dead_lettered_alone() -> None:
    o = fhir(gcs_observation(part("9267-6", 5), part("9270-0", 2), part("9268-4", 4)))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value"  # nothing else read
    assert "not a score 1-4" in o.reason


def test_a_fhir_blood_pressure_panel_gets_no_estimated_mean() -> None:
    """A FHIR pressure panel is one Observation of its Bundle; its MAP may be another (as EHR
    APIs send each flowsheet row): an estimate would stand beside the measured MAP."""

    def component(code: str, value: float) -> dict[str, Any]:
        return {
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "valueQuantity": {"value": value, "system": "http://unitsofmeasure.org",
                              "code": "mm[Hg]"},
        }  # fmt: skip

    panel = gcs_observation(component("8480-6", 142), component("8462-4", 88))
    panel["code"] = {"coding": [{"system": "http://loinc.org", "code": "85354-9"}]}
    rec = one_record(fhir(panel))
    assert (rec["sbp_mmhg"], rec["dbp_mmhg"]) == (142.0, 88.0) and "map_mmhg" not in rec


def part_observation(i: int, code: str, patient: str = "p1", **value: Any) -> dict[str, Any]:
    """A GCS part as an Observation of its own, as EHR FHIR APIs send each flowsheet row."""
    return {
        "fullUrl": f"urn:uuid:00000000-0000-0000-0000-00000000000{i}",
        "resource": {
            "resourceType": "Observation",
            "id": f"gcs-{i}",
            "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": {"reference": f"Patient/{patient}"},
            "effectiveDateTime": "2026-03-01T09:30:00Z",
            **value,
        },
    }


def bundle(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "collection", "entry": list(entries)}


def outcomes(data: dict[str, Any]) -> list[hl7v2.Mapped | hl7v2.Refused | fhir_r4.Context]:
    results = [o.result for o in fhir_r4.map_json(data, tok, source="t", facility_id="F")]
    assert not any(isinstance(r, fhir_r4.Part) for r in results)
    return results  # type: ignore[return-value]


EYE_3 = {"valueInteger": 3}
VERBAL_4 = {
    "valueCodeableConcept": {"coding": [{"system": "http://loinc.org", "code": "LA6560-2"}]}
}
MOTOR_5 = part("9268-4", 5)["valueCodeableConcept"]


def test_gcs_parts_sent_as_observations_of_their_own_in_one_bundle_are_summed() -> None:
    results = outcomes(
        bundle(
            part_observation(1, "9267-6", **EYE_3),
            part_observation(2, "9270-0", **VERBAL_4),
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
            part_observation(4, "9267-6", patient="p2", **EYE_3),  # another patient's
        )
    )
    assert all(isinstance(r, hl7v2.Mapped) for r in results[:3])
    records = [rec for r in results[:3] for _, rec in r.records]  # type: ignore[union-attr]
    [rec] = records  # one reading, on the first part's entry; the others read into it
    assert rec["gcs_total"] == 12 and rec["patient_token"] == "fhir:Patient|Patient/p1"
    assert rec["observation_id"].startswith("fhir:gcs:")  # named by the three parts
    reordered = outcomes(
        bundle(
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
            part_observation(2, "9270-0", **VERBAL_4),
            part_observation(1, "9267-6", **EYE_3),
        )
    )
    [(_, again)] = reordered[0].records  # type: ignore[union-attr]
    assert again["observation_id"] == rec["observation_id"]  # a resend in another order
    other = results[3]
    assert isinstance(other, hl7v2.Refused) and other.reason_code == "no_value"
    assert "GCS eye without verbal, motor: no total" in other.reason


def test_gcs_part_observations_beside_a_total_are_read_when_they_agree_else_dead_lettered() -> None:
    def total(value: int) -> dict[str, Any]:
        return part_observation(
            9, "9269-2", valueQuantity={"value": value, "system": "http://unitsofmeasure.org",
                                        "code": "{score}"}
        )  # fmt: skip

    parts = (
        part_observation(1, "9267-6", **EYE_3),
        part_observation(2, "9270-0", **VERBAL_4),
        part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
    )
    agreeing = outcomes(bundle(*parts, total(12)))
    assert [len(r.records) for r in agreeing] == [0, 0, 0, 1]  # type: ignore[union-attr]
    disagreeing = outcomes(bundle(*parts, total(14)))
    assert [getattr(r, "reason_code", "mapped") for r in disagreeing] == [
        "conflicting_value",
        "conflicting_value",
        "conflicting_value",
        "mapped",
    ]


def test_a_gcs_part_observation_alone_or_without_a_score_is_refused_with_why() -> None:
    [alone] = outcomes(part_observation(1, "9267-6", **EYE_3)["resource"])
    assert isinstance(alone, hl7v2.Refused) and alone.reason_code == "no_value"
    assert "in one Bundle" in alone.reason
    intubated = outcomes(
        bundle(
            part_observation(1, "9267-6", **EYE_3),
            part_observation(2, "9270-0", dataAbsentReason={"text": "intubated"}),
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
        )
    )
    assert [getattr(r, "reason_code", "") for r in intubated] == ["no_value"] * 3
    assert "9270-0 (GCS verbal: no score)" in intubated[0].reason  # type: ignore[union-attr]


def test_a_corrected_fhir_part_replaces_the_one_before_and_names_a_new_reading() -> None:
    first = outcomes(
        bundle(
            part_observation(1, "9267-6", **EYE_3),
            part_observation(2, "9270-0", **VERBAL_4),
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
        )
    )
    corrected = part_observation(5, "9270-0", valueInteger=3)
    corrected["resource"]["status"] = "corrected"
    results = outcomes(
        bundle(
            part_observation(1, "9267-6", **EYE_3),
            part_observation(2, "9270-0", **VERBAL_4),
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
            corrected,
        )
    )
    records = [rec for r in results for _, rec in r.records]  # type: ignore[union-attr]
    [rec] = records
    assert rec["gcs_total"] == 11
    [(_, before)] = first[0].records  # type: ignore[union-attr]
    assert rec["observation_id"] != before["observation_id"]  # not dropped as a duplicate
    assert results[1].notes == [  # type: ignore[union-attr]
        "GCS verbal: replaced by Bundle/?#entry3:Observation/gcs-5 (corrected)"
    ]


def test_fhir_parts_beside_a_total_sent_but_not_read_make_no_total() -> None:
    for total in ({"valueQuantity": {"value": 16}}, {"valueString": "10T"}):
        results = outcomes(
            bundle(
                part_observation(1, "9267-6", **EYE_3),
                part_observation(2, "9270-0", **VERBAL_4),
                part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
                part_observation(4, "9269-2", **total),
            )
        )
        assert not [rec for r in results if isinstance(r, hl7v2.Mapped) for rec in r.records]
        assert results[0].notes == ["GCS eye: beside a total sent and not read"]  # type: ignore[union-attr]


def test_a_fhir_total_sent_as_text_is_not_rebuilt_from_its_components() -> None:
    o = fhir(
        gcs_observation(part("9267-6", 3), part("9270-0", 1), part("9268-4", 6), valueString="10T")
    )
    assert isinstance(o, hl7v2.Refused)


def test_a_fhir_part_over_a_period_is_no_reading() -> None:
    eye = part_observation(1, "9267-6", **EYE_3)
    del eye["resource"]["effectiveDateTime"]
    eye["resource"]["effectivePeriod"] = {
        "start": "2026-03-01T00:00:00Z",
        "end": "2026-03-01T23:59:00Z",
    }  # the day's worst GCS: a summary
    [result, *_] = outcomes(bundle(eye))
    assert isinstance(result, hl7v2.Refused) and result.reason_code == "not_a_point_measurement"


def test_the_check_command_says_where_a_part_was_read(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "gcs.json").write_text(
        json.dumps(
            bundle(
                part_observation(1, "9267-6", **EYE_3),
                part_observation(2, "9270-0", **VERBAL_4),
                part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
            )
        )
    )
    rows = offline_check("jobs.feeds.fhir_ingest", drop)
    assert [r[1:3] for r in rows] == [["mapped", "1"], ["mapped", "0"], ["mapped", "0"]]
    assert rows[1][3].endswith("GCS verbal: summed into Bundle/?#entry0:Observation/gcs-1")


# --- HL7 v2: what was sent, per time -----------------------------------------------------


def test_hl7_parts_beside_a_total_not_obtained_publish_nothing_and_say_so() -> None:
    o = hl7(
        oru(
            "NM|9269-2^GCS total^LN||||||||X",
            f"NM|{EYE}||3||||||F",
            f"NM|{VERBAL}||4||||||F",
            f"NM|{MOTOR}||5||||||F",
        )
    )
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "no_value"
    assert "beside a total sent and not read" in o.reason


def test_a_mean_refused_at_one_time_does_not_stop_the_estimate_at_another() -> None:
    o = hl7(
        oru(
            "NM|8480-6^SBP^LN||120|mm[Hg]|||||F|||20260301090000",
            "NM|8462-4^DBP^LN||60|mm[Hg]|||||F|||20260301090000",
            "NM|8478-0^MAP^LN||-999|mm[Hg]|||||F|||20260301090000",
            "NM|8480-6^SBP^LN||90|mm[Hg]|||||F|||20260301100000",
            "NM|8462-4^DBP^LN||45|mm[Hg]|||||F|||20260301100000",
        )
    )
    assert isinstance(o, hl7v2.Mapped)
    by_hour = {rec["event_time"].hour: rec for _, rec in o.records}
    assert "map_mmhg" not in by_hour[9] and by_hour[10]["map_mmhg"] == pytest.approx(60.0)


@pytest.mark.parametrize("value", ["NM|{}||||||||F", "ST|{}||abc||||||F", "SN|{}||<^3||||||F"])
def test_a_part_that_is_no_score_and_no_charting_of_one_is_dead_lettered(value: str) -> None:
    o = hl7(oru(value.format(EYE), "NM|9279-1^RR^LN||18|/min|||||F"))
    assert isinstance(o, hl7v2.Mapped)
    assert [r.refusal.reason_code for r in o.rejected] == ["bad_value"]


def test_a_part_too_large_for_a_number_is_dead_lettered_not_a_crash() -> None:
    o = hl7(oru(f"CWE|{EYE}||{'9' * 320}||||||F", "NM|9279-1^RR^LN||18|/min|||||F"))
    assert isinstance(o, hl7v2.Mapped) and one_record(o)["resp_rate_per_min"] == 18.0
    assert [r.refusal.reason_code for r in o.rejected] == ["bad_value"]


# --- third review ----------------------------------------------------------------------------


def gcs_parts_bundle(*more: dict[str, Any], verbal: dict[str, Any] | None = None) -> dict[str, Any]:
    """E3 V4 M5 as Observations of their own (the verbal one `verbal` if given), and `more`."""
    return bundle(
        part_observation(1, "9267-6", **EYE_3),
        verbal or part_observation(2, "9270-0", **VERBAL_4),
        part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
        *more,
    )


def published(results: list[Any]) -> list[dict[str, Any]]:
    return [rec for r in results if isinstance(r, hl7v2.Mapped) for _, rec in r.records]


def test_a_malformed_entry_beside_gcs_parts_is_refused_alone() -> None:
    broken = {"resource": {"resourceType": "Observation", "id": "x", "status": "final",
                           "code": "8867-4"}}  # fmt: skip
    results = outcomes(gcs_parts_bundle(broken))
    assert [r["gcs_total"] for r in published(results)] == [12]
    assert isinstance(results[3], hl7v2.Refused) and results[3].reason_code == "invalid_fhir"


@pytest.mark.parametrize(
    "total",
    [
        {"valueString": "10T", "subject": {"reference": "Patient/p1", "display": "Jane"}},
        {"valueString": "10T", "code": {"coding": [{"system": "urn:ehr:rows", "code": "GCS"}]}},
        {
            "code": {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]},
            "component": [
                {
                    "code": {"coding": [{"system": "http://loinc.org", "code": "9269-2"}]},
                    "valueString": "10T",
                }
            ],
        },
    ],
    ids=["subject-spelled-otherwise", "local-code", "panel-component"],
)
def test_parts_are_not_summed_beside_a_total_sent_in_any_form(
    total: dict[str, Any], tmp_path: Path
) -> None:
    csv = tmp_path / "codes.csv"
    csv.write_text("system,code,loinc\nurn:ehr:rows,GCS,9269-2\n")
    sent = part_observation(9, "9269-2")
    sent["resource"].update(total)
    data = gcs_parts_bundle(sent)
    results = [
        o.result
        for o in fhir_r4.map_json(data, tok, source="t", facility_id="F", codes=CodeMap.load(csv))
    ]
    assert published(results) == []
    assert results[0].notes == ["GCS eye: beside a total sent and not read"]  # type: ignore[union-attr]


def test_a_total_sent_is_respected_after_the_first_part_is_replaced() -> None:
    corrected = part_observation(5, "9267-6", valueInteger=2)
    corrected["resource"]["status"] = "corrected"
    total = part_observation(9, "9269-2", valueString="10T")
    assert published(outcomes(gcs_parts_bundle(corrected, total))) == []


def test_a_part_corrected_to_no_score_takes_the_total_back_in_both_edges() -> None:
    o = hl7(
        oru(
            f"NM|{EYE}||3||||||F",
            f"NM|{VERBAL}||4||||||F",
            f"ST|{VERBAL}||T||||||C",  # corrected: the tube was in
            f"NM|{MOTOR}||5||||||F",
        )
    )
    assert isinstance(o, hl7v2.Refused) and "no total" in o.reason
    both_final = hl7(
        oru(
            f"NM|{EYE}||3||||||F",
            f"NM|{VERBAL}||4||||||F",
            f"ST|{VERBAL}||T||||||F",
            f"NM|{MOTOR}||5||||||F",
        )
    )
    assert one_record(both_final)["gcs_total"] == 12  # the first kept, the other dead-lettered
    assert [r.refusal.reason_code for r in both_final.rejected] == ["conflicting_value"]  # type: ignore[union-attr]
    absent = part_observation(5, "9270-0", dataAbsentReason={"text": "intubated"})
    absent["resource"]["status"] = "corrected"
    assert published(outcomes(gcs_parts_bundle(absent))) == []


def test_a_fhir_part_whose_value_is_no_score_and_no_charting_of_none_is_dead_lettered() -> None:
    [alone] = outcomes(part_observation(1, "9267-6", valueString="abc")["resource"])
    assert isinstance(alone, hl7v2.Refused) and alone.reason_code == "bad_value"
    [tube] = outcomes(part_observation(2, "9270-0", valueString="T")["resource"])
    assert isinstance(tube, hl7v2.Refused) and tube.reason_code == "no_value"  # charting
    text = part("9267-6", 3)
    text["valueCodeableConcept"] = {"coding": [{"system": "urn:local", "code": "x"}]}
    panel = gcs_observation(
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
         "valueQuantity": {"value": 80, "code": "/min"}},
        text,
    )  # fmt: skip
    panel["code"] = {"coding": [{"system": "http://loinc.org", "code": "85353-1"}]}
    o = fhir(panel)
    assert isinstance(o, hl7v2.Mapped) and one_record(o)["heart_rate_bpm"] == 80.0
    assert [r.refusal.reason_code for r in o.rejected] == ["bad_value"]


def test_a_charted_systolic_and_an_arterial_lines_diastolic_make_no_mean() -> None:
    rec = one_record(
        hl7(
            oru(
                "NM|8480-6^SBP^LN||120|mm[Hg]|||||F",
                "NM|150038^MDC_PRESS_BLD_ART_ABP_DIA^MDC||60|266016^MDC_DIM_MMHG^MDC|||||F",
            )
        )
    )
    assert (rec["sbp_mmhg"], rec["dbp_mmhg"]) == (120.0, 60.0) and "map_mmhg" not in rec


def test_parts_are_summed_beside_a_grouper_of_them_that_sends_no_total() -> None:
    grouper = part_observation(9, "9269-2")
    grouper["resource"]["hasMember"] = [
        {"reference": f"urn:uuid:00000000-0000-0000-0000-00000000000{i}"} for i in (1, 2, 3)
    ]
    results = outcomes(gcs_parts_bundle(grouper))
    assert [r["gcs_total"] for r in published(results)] == [12]


def test_a_part_coded_with_the_text_intubated_is_no_score_in_both_edges() -> None:
    o = hl7(
        oru(f"NM|{EYE}||3||||||F", f"CWE|{VERBAL}||^Intubated^L||||||F", f"NM|{MOTOR}||5||||||F")
    )
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "no_value"
    assert "9270-0 (GCS verbal: no score)" in o.reason
    verbal = part_observation(2, "9270-0", valueCodeableConcept={"text": "Intubated"})
    results = outcomes(gcs_parts_bundle(verbal=verbal))
    assert [getattr(r, "reason_code", "") for r in results] == ["no_value"] * 3


def test_parts_are_not_summed_beside_a_gcs_observation_of_parts_that_makes_no_total() -> None:
    incomplete = part_observation(9, "9269-2", component=[part("9267-6", 2), part("9270-0", 4)])
    results = outcomes(gcs_parts_bundle(incomplete))
    assert published(results) == []  # its eye 2 against the parts' eye 3: never compared
    display = part_observation(
        2, "9270-0", valueCodeableConcept={"coding": [{"code": "X1", "display": "Intubated"}]}
    )
    charted = outcomes(gcs_parts_bundle(verbal=display))
    assert [getattr(r, "reason_code", "") for r in charted] == ["no_value"] * 3


# --- a Bulk Data export ------------------------------------------------------------------------


def export(tmp_path: Path, *lines: dict[str, Any] | str) -> list[list[str]]:
    """`wardflow-fhir-ingest check` of an .ndjson export of `lines` (a resource, or raw text)."""
    drop = tmp_path / "drop"
    drop.mkdir(exist_ok=True)
    text = [line if isinstance(line, str) else json.dumps(line) for line in lines]
    (drop / "Observation.ndjson").write_text("\n".join(text) + "\n")
    return offline_check("jobs.feeds.fhir_ingest", drop)


def test_gcs_parts_on_lines_of_their_own_in_an_ndjson_export_are_summed(tmp_path: Path) -> None:
    """Bulk Data $export writes every Observation as a line of its own: the parts of one
    patient and time are one reading, named as in a Bundle, whatever lies between them."""
    eye, verbal, motor, other_patients = (
        e["resource"]
        for e in (
            part_observation(1, "9267-6", **EYE_3),
            part_observation(2, "9270-0", **VERBAL_4),
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
            part_observation(4, "9267-6", patient="p2", **EYE_3),
        )
    )
    heart_rate = observation(
        "8867-4", "http://loinc.org", "hr", valueQuantity={"value": 88, "unit": "/min"}
    )
    rows = export(tmp_path, eye, heart_rate, "{not json", verbal, other_patients, motor)
    assert [r[1:3] for r in rows] == [
        ["mapped", "1"],
        ["mapped", "1"],
        ["refused", "0"],
        ["mapped", "0"],
        ["refused", "0"],
        ["mapped", "0"],
    ]
    assert rows[3][3].endswith("GCS verbal: summed into line1:Observation/gcs-1")
    assert rows[4][3].startswith("no_value: GCS eye without verbal")
    assert "in one Bundle or .ndjson file" in rows[4][3]
    # the same reading as its Bundle's
    [(_, in_bundle)] = outcomes(bundle(*({"resource": r} for r in (eye, verbal, motor))))[0].records  # type: ignore[union-attr]
    assert in_bundle["gcs_total"] == 12
    assert in_bundle["observation_id"].startswith("fhir:gcs:")
    lines = [{"resource": r} for r in (eye, heart_rate, verbal, motor)]
    read = fhir_r4.summed_together(
        [o for e in lines for o in fhir_r4.map_json(e["resource"], tok, source="t",
                                                   facility_id="F", alone=False)],
        [e["resource"] for e in lines],
        tok,
    )  # fmt: skip
    assert [
        rec["observation_id"]
        for o in read
        if isinstance(o.result, hl7v2.Mapped)
        for _, rec in o.result.records
        if "gcs_total" in rec
    ] == [in_bundle["observation_id"]]


def test_parts_of_an_export_are_compared_with_its_total_and_its_corrections(
    tmp_path: Path,
) -> None:
    eye, verbal, motor = (
        e["resource"]
        for e in (
            part_observation(1, "9267-6", **EYE_3),
            part_observation(2, "9270-0", **VERBAL_4),
            part_observation(3, "9268-4", valueCodeableConcept=MOTOR_5),
        )
    )
    total = part_observation(9, "9269-2", valueInteger=14)["resource"]  # E3 V4 M5 is 12
    rows = export(tmp_path, total, eye, verbal, motor)
    assert [r[1:3] for r in rows] == [["mapped", "1"], *[["refused", "0"]] * 3]
    assert all("conflicting_value" in r[3] for r in rows[1:])
    corrected = part_observation(5, "9267-6", valueInteger=2)["resource"]
    corrected["status"] = "corrected"
    again = export(tmp_path, eye, verbal, motor, corrected)
    assert [r[1:3] for r in again] == [["mapped", "0"], ["mapped", "1"], ["mapped", "0"],
                                       ["mapped", "0"]]  # fmt: skip
    assert again[0][3].endswith("GCS eye: replaced by line4:Observation/gcs-5 (corrected)")
    text = "{not json"
    not_read = part_observation(9, "9269-2", valueString="10T")["resource"]
    assert [r[1:3] for r in export(tmp_path, not_read, text, eye, verbal, motor)][2:] == [
        ["mapped", "0"]
    ] * 3  # beside a total sent and not read: no total of the parts


def test_an_exports_bundle_line_is_compared_with_its_other_lines(tmp_path: Path) -> None:
    """A line may be a Bundle: its parts and totals count with the other lines'."""
    fourteen = part_observation(9, "9269-2", valueInteger=14)["resource"]  # E3 V4 M5 is 12
    rows = export(tmp_path, fourteen, gcs_parts_bundle())
    assert [r[1:3] for r in rows] == [["mapped", "1"], *[["refused", "0"]] * 3]
    assert all("conflicting_value" in r[3] for r in rows[1:])
    not_read = bundle(part_observation(9, "9269-2", valueString="10T"))
    parts = [e["resource"] for e in gcs_parts_bundle()["entry"]]
    rows = export(tmp_path, not_read, *parts)
    assert [r[1:3] for r in rows][1:] == [["mapped", "0"]] * 3
    assert rows[1][3].endswith("GCS eye: beside a total sent and not read")
    summed = export(tmp_path, gcs_parts_bundle())
    assert summed[1][3].endswith("GCS verbal: summed into line1:Bundle/?#entry0:Observation/gcs-1")
