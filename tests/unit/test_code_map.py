"""A hospital's own observation codes (flowsheet rows, lab tests) read through the deployment's
code map, by the HL7 v2 and FHIR mappers; and values sent without a unit, read only where their
code can mean one scale."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas import topics
from schemas.interop import code_map, fhir_r4, hl7v2
from schemas.interop.code_map import CodeMap, CodeMapError

VITALS, LABS = topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name
MAP = """system,code,loinc,display
FLO,8,8867-4,Pulse
FLO,5,85354-9,Blood pressure (one value)
flo,10,59408-5,SpO2 (system in another case)
,HR,8867-4,Heart rate sent with no coding system
LAB,LACT,2524-7,Lactate
LAB,ABG,24336-0,Arterial blood gas (an order code)
LAB,SAT,2708-6,Oxygen saturation
http://hospital.example.org/flowsheet-row,8,8867-4,Pulse
"""


def tok(namespace: str, ident: str) -> str:
    return f"{namespace}|{ident}"


@pytest.fixture
def codes(tmp_path: Path) -> CodeMap:
    path = tmp_path / "codes.csv"
    path.write_text("\ufeff" + MAP, encoding="utf-8")  # as a spreadsheet saves it
    return CodeMap.load(path)


def oru(*obx: str, obr_4: str = "FLOWSHEET") -> str:
    return "\r".join(
        [
            "MSH|^~\\&|EPIC|GH|WF|GH|20261101080500||ORU^R01|F1|P|2.3",
            "PID|1||MRN1^^^GH^MR||DOE^J",
            "PV1|1|I|ICU^^3^GH",
            f"OBR|1|||{obr_4}|||20261101080000",
            *obx,
        ]
    )


def mapped(text: str, codes: CodeMap = code_map.EMPTY) -> hl7v2.Mapped | hl7v2.Refused:
    msg = hl7v2.parse(text)
    assert not isinstance(msg, hl7v2.Refused), msg
    return hl7v2.map_message(msg, tok, source="t", codes=codes)


FLOWSHEET = (
    "OBX|1|NM|8^PULSE^FLO||112|/min|||||F",
    "OBX|2|ST|5^BLOOD PRESSURE^FLO||92/50|mm[Hg]|||||F",
    "OBX|3|NM|10^SPO2^FLO||91|%|||||F",
    "OBX|4|NM|HR^Heart rate||112|bpm|||||F",
    "OBX|5|NM|LACT^Lactate^LAB||3.1|mmol/L|||||F",
)


def test_a_flowsheet_in_the_senders_own_codes_is_refused_naming_them_until_they_are_mapped(
    codes: CodeMap,
) -> None:
    unmapped = mapped(oru(*FLOWSHEET))
    assert isinstance(unmapped, hl7v2.Refused)
    assert unmapped.reason_code == "not_a_vital_sign"
    assert "interop_code_map" in unmapped.reason
    assert "(saw 8 (FLO), 5 (FLO), 10 (FLO), HR, LACT (LAB))" in unmapped.reason

    read = mapped(oru(*FLOWSHEET), codes)
    assert isinstance(read, hl7v2.Mapped) and not read.rejected, read
    records = dict(read.records)
    vitals, labs = records[VITALS], records[LABS]
    assert (vitals["heart_rate_bpm"], vitals["sbp_mmhg"], vitals["dbp_mmhg"]) == (112, 92, 50)
    assert vitals["spo2_pct"] == 91 and labs["lactate_mmol_l"] == 3.1


def test_a_loinc_code_beside_a_mapped_one_says_what_the_value_is_even_one_not_read(
    codes: CodeMap,
) -> None:
    """A flowsheet row mapped to a bedside blood pressure, sent beside a LOINC of something else
    wardflow does not read (a pain score, 72514-3): the LOINC says what it is, so it is no
    blood pressure."""
    home = "OBX|1|ST|5^BLOOD PRESSURE^FLO^72514-3^Pain score^LN||150/90|mm[Hg]|||||F"
    refused = mapped(oru(home), codes)
    assert isinstance(refused, hl7v2.Refused) and refused.reason_code == "not_a_vital_sign"
    assert "(saw 5 (FLO), 72514-3 (LN))" in refused.reason
    bedside = mapped(oru(home.replace("^72514-3^Pain score^LN", "")), codes)
    assert isinstance(bedside, hl7v2.Mapped) and bedside.records[0][1]["sbp_mmhg"] == 150
    coded = [{"system": "http://loinc.org", "code": "72514-3"}, {"system": "FLO", "code": "5"}]
    components = [
        {"code": {"coding": [{"system": "http://loinc.org", "code": "8480-6"}]},
         "valueQuantity": {"value": 150, "code": "mm[Hg]"}},
    ]  # fmt: skip
    data = observation(coded, {"value": 1}) | {"component": components}
    data.pop("valueQuantity")
    refused_fhir = fhir(data, codes)
    assert isinstance(refused_fhir, hl7v2.Refused), refused_fhir
    assert refused_fhir.reason_code == "not_a_vital_sign"


def test_a_refusal_names_every_code_of_each_obx_it_could_not_read() -> None:
    refused = mapped(
        oru("OBX|1|NM|P123^Pulse^99LOC^77^Pulse^FLOA||88|||||F", "OBX|2|NM|^PULSE^FLO||88|||||F")
    )
    assert isinstance(refused, hl7v2.Refused)
    assert "(saw P123 (99LOC), 77 (FLOA), 'PULSE' (FLO))" in refused.reason


def test_a_local_arterial_blood_gas_order_makes_its_saturation_a_lab_value(
    codes: CodeMap,
) -> None:
    sat = "OBX|1|NM|SAT^O2 SAT^LAB||94|%|||||F"
    as_gas = mapped(oru(sat, obr_4="ABG^ARTERIAL BLOOD GAS^LAB"), codes)
    as_order = mapped(oru(sat, obr_4="CBC^BLOOD COUNT^LAB"), codes)
    venous = mapped(oru(sat, obr_4="ABG^BLOOD GAS^LAB^24339-4^Venous blood gas^LN"), codes)
    assert isinstance(as_gas, hl7v2.Mapped) and isinstance(as_order, hl7v2.Mapped)
    assert isinstance(venous, hl7v2.Mapped)
    assert [(t, r.get("sao2_pct")) for t, r in as_gas.records] == [(LABS, 94)]
    assert [(t, r.get("spo2_pct")) for t, r in as_order.records] == [(VITALS, 94)]
    # the order's LOINC says venous, whatever the local code's mapping: no arterial sample
    assert [t for t, _ in venous.records] == [VITALS]


def test_a_loinc_system_named_without_a_code_leaves_the_map_in_use(codes: CodeMap) -> None:
    read = mapped(oru("OBX|1|NM|8^PULSE^FLO^^Heart rate^LN||90|/min|||||F"), codes)
    assert isinstance(read, hl7v2.Mapped) and read.records[0][1]["heart_rate_bpm"] == 90


def observation(coding: list[dict[str, str]], quantity: dict[str, object]) -> dict:
    return {
        "resourceType": "Observation",
        "id": "o1",
        "status": "final",
        "code": {"coding": coding},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-11-01T08:00:00Z",
        "valueQuantity": quantity,
    }


def fhir(data: dict, codes: CodeMap = code_map.EMPTY) -> hl7v2.Mapped | hl7v2.Refused:
    [outcome] = fhir_r4.map_json(data, tok, source="t", facility_id="F", codes=codes)
    assert not isinstance(outcome.result, fhir_r4.Context)
    return outcome.result


def test_a_fhir_observation_coded_only_in_the_hospitals_system_is_read_through_the_map(
    codes: CodeMap,
) -> None:
    local = [{"system": "http://hospital.example.org/flowsheet-row", "code": "8"}]
    data = observation(local, {"value": 118, "unit": "/min", "code": "/min"})
    refused = fhir(data)
    assert isinstance(refused, hl7v2.Refused) and refused.reason_code == "not_a_vital_sign"
    assert "8 (http://hospital.example.org/flowsheet-row)" in refused.reason
    read = fhir(data, codes)
    assert isinstance(read, hl7v2.Mapped), read
    [(_, vitals)] = read.records
    assert vitals["heart_rate_bpm"] == 118


def test_a_fhir_blood_gas_saturation_stays_a_lab_value_beside_a_local_oximetry_code(
    codes: CodeMap,
) -> None:
    coded = [{"system": "http://loinc.org", "code": "2708-6"}, {"system": "FLO", "code": "10"}]
    lab = observation(coded, {"value": 91, "code": "%"}) | {
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "laboratory",
                    }
                ]
            }
        ]
    }
    read = fhir(lab, codes)
    assert isinstance(read, hl7v2.Mapped), read
    assert [(t, r.get("sao2_pct")) for t, r in read.records] == [(LABS, 91)]


@pytest.mark.parametrize(
    ("obx", "field", "value"),
    [
        ("8867-4^Heart rate^LN||96|", "heart_rate_bpm", 96),
        ("9279-1^Resp rate^LN||24|", "resp_rate_per_min", 24),
        ("59408-5^SpO2^LN||93|", "spo2_pct", 93),
        ("8480-6^Systolic^LN||101|", "sbp_mmhg", 101),
        ("2951-2^Sodium^LN||139|", "sodium_mmol_l", 139),  # mmol/L or meq/L: one scale
        ("2744-1^pH^LN||7.31|^pH units", "ph", 7.31),  # a dimensionless code: the text is no unit
    ],
)
def test_a_vital_sign_sent_without_a_unit_is_read_where_its_code_takes_one_scale(
    obx: str, field: str, value: float
) -> None:
    read = mapped(oru(f"OBX|1|NM|{obx}|||||F"))
    assert isinstance(read, hl7v2.Mapped) and not read.rejected, read
    [(_, record)] = read.records
    assert record[field] == value


@pytest.mark.parametrize(
    "obx",
    [
        "8310-5^Temperature^LN||38.4|",  # Celsius or Fahrenheit
        "2524-7^Lactate^LN||3.1|",  # mmol/L or mg/dL
        "6690-2^WBC^LN||12|",  # per uL in thousands or in cells
        "8867-4^Heart rate^LN||96|^beats",  # a unit sent, and not one the code takes
        "59408-5^SpO2^LN||0.97|",  # a fraction or a percentage
        "14682-9^Creatinine^LN||88|",  # its one unit, umol/L, is not its field's (mg/dL)
    ],
)
def test_a_value_without_a_unit_that_could_mean_two_scales_is_refused(obx: str) -> None:
    refused = mapped(oru(f"OBX|1|NM|{obx}|||||F"))
    assert isinstance(refused, hl7v2.Refused), refused
    assert refused.reason_code == "bad_value" and "unit" in refused.reason


def test_a_fhir_quantity_with_only_a_human_readable_unit_is_read_where_it_spells_one() -> None:
    hr = [{"system": "http://loinc.org", "code": "8867-4"}]
    read = fhir(observation(hr, {"value": 101, "unit": "bpm"}))
    assert isinstance(read, hl7v2.Mapped) and read.records[0][1]["heart_rate_bpm"] == 101
    temp = [{"system": "http://loinc.org", "code": "8310-5"}]
    refused = fhir(observation(temp, {"value": 38.2}))
    assert isinstance(refused, hl7v2.Refused) and refused.reason_code == "bad_unit"
    no_spelling = fhir(observation(temp, {"value": 38.2, "unit": "degrees"}))
    assert isinstance(no_spelling, hl7v2.Refused) and no_spelling.reason_code == "bad_unit"
    ph = [{"system": "http://loinc.org", "code": "2744-1"}]
    as_text = fhir(observation(ph, {"value": 7.31, "unit": "pH units"}))  # as an ORU's OBX-6 text
    assert isinstance(as_text, hl7v2.Mapped) and as_text.records[0][1]["ph"] == 7.31


def test_a_map_with_an_unknown_loinc_a_standard_system_or_a_code_of_two_meanings_is_refused(
    tmp_path: Path,
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(
        "System,Code,LOINC\n"
        "FLO,8,8867-4\n"
        "FLO,8,8310-5\n"  # the same code, another meaning
        "LN,8867-4,8867-4\n"  # LOINC is read as itself
        "FLO,99,39156-5\n"  # BMI: not a code wardflow reads
        "FLO,,8867-4\n"
        "\n"
        "\n"
        'FLO,8,8310-5,"a note\nof two lines"\n'  # named by its first line
        ",8867-4,9279-1\n"  # a LOINC code wardflow reads stands for itself
        "FLO,8,8867-4\n"  # the same row again is no conflict
    )
    with pytest.raises(CodeMapError) as raised:
        CodeMap.load(bad)
    lines = str(raised.value).splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [f"{bad}:{n}" for n in (3, 4, 5, 6, 9, 11)]
    assert "mapped to 8867-4 on line 2 and to 8310-5 here" in lines[0]
    assert "8867-4 is a LOINC code wardflow reads as itself" in lines[-1]
    (tmp_path / "twice.csv").write_text("system,code,loinc,code\nFLO,8,8867-4,X\n")
    with pytest.raises(CodeMapError, match="names code more than once"):
        CodeMap.load(tmp_path / "twice.csv")
    (tmp_path / "nocode.csv").write_text("system,loinc\nFLO,8867-4\n")
    with pytest.raises(CodeMapError, match="no column code"):
        CodeMap.load(tmp_path / "nocode.csv")
    assert len(CodeMap.load("")) == 0


def test_the_check_command_names_each_codes_field_or_fails_with_the_maps_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "codes.csv"
    good.write_text(MAP)
    assert code_map.main([str(good)]) == 0
    out = capsys.readouterr()
    rows = {tuple(line.split("\t")[:2]): line.split("\t")[3] for line in out.out.splitlines()}
    assert rows["FLO", "8"].startswith(f"{VITALS}.heart_rate_bpm (units '/min'")
    assert rows["FLO", "8"].endswith("none: read in the field's unit)")
    assert rows["LAB", "LACT"].endswith("'mmol/L', 'mg/dL'; none: refused)")
    assert "8 codes mapped" in out.err
    bad = tmp_path / "bad.csv"
    bad.write_text("system,code,loinc\nFLO,1,0000-0\n")
    assert code_map.main([str(bad)]) == 1
    assert "LOINC 0000-0 is not a code wardflow reads" in capsys.readouterr().err
