"""One patient named by an HL7 feed and a FHIR feed gets one token where the site says that
their names are one record-number space (`patient_identifier_aliases`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.feeds import fhir_ingest
from jobs.feeds.hl7_gateway import Gateway
from jobs.feeds.publisher import Publisher
from schemas.interop import identity
from schemas.settings import Settings

ALIASES = "HOSP=urn:oid:2.16.840.1.113883.19.5,2.16.840.1.113883.19.5,Patient/"


def admission(pid3: str) -> bytes:
    return "\r".join(
        [
            "MSH|^~\\&|ADT|HOSP|WF|HOSP|20260301080000||ADT^A01|A1|P|2.5.1",
            "EVN|A01|20260301080000",
            f"PID|1||{pid3}",
            "PV1|1|I|ICU^^12^HOSP",
        ]
    ).encode()


def heart_rate(subject: dict) -> dict:
    return {
        "resourceType": "Observation",
        "id": "hr1",
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": subject,
        "effectiveDateTime": "2026-03-01T09:30:00Z",
        "valueQuantity": {"value": 88, "system": "http://unitsofmeasure.org", "code": "/min"},
    }


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, phi_key=b"k", payload_store=tmp_path / "payloads")


def hl7_token(s: Settings, pid3: str) -> str:
    [(_, record, _)] = Gateway(s, listen="test").decide(admission(pid3)).records
    return str(record["patient_token"])


def fhir_token(s: Settings, tmp_path: Path, subject: dict) -> str:
    path = tmp_path / "obs.json"
    path.write_text(json.dumps(heart_rate(subject)))
    _, [decision] = fhir_ingest.decide_file(s, Publisher(s, stage="test"), path, "HOSP")
    [(_, record, _)] = decision.records
    return str(record["patient_token"])


def test_an_hl7_admission_and_fhir_observations_of_one_patient_meet_once_aliased(
    settings: Settings, tmp_path: Path
) -> None:
    by_system = {"identifier": {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "12345"}}
    by_server_id = {"reference": "Patient/12345"}
    aliased = dataclasses.replace(settings, patient_identifier_aliases=ALIASES)
    admitted = hl7_token(aliased, "12345^^^HOSP^MR")
    assert fhir_token(aliased, tmp_path, by_system) == admitted
    assert fhir_token(aliased, tmp_path, by_server_id) == admitted
    assert hl7_token(aliased, "12345^^^&2.16.840.1.113883.19.5&ISO^MR") == admitted  # OID only
    # not said: each channel's names are spaces of their own, as before
    alone = hl7_token(settings, "12345^^^HOSP^MR")
    assert fhir_token(settings, tmp_path, by_system) != alone
    assert fhir_token(settings, tmp_path, by_server_id) != alone
    # another space, and other patients, stay apart
    assert hl7_token(aliased, "12345^^^OTHERLAB^MR") != admitted
    assert hl7_token(aliased, "12346^^^HOSP^MR") != admitted


def test_malformed_or_contradictory_aliases_stop_the_start(settings: Settings) -> None:
    malformed = ("HOSP", "HOSP=", "=urn:x", "HOSP=urn:x;LAB=urn:x", "A=B,,C")
    internal = ("HOSP=HOSP/visit", "HOSP=fhir:Patient", "fhir:Encounter=HOSP")
    for spec in (*malformed, *internal):
        with pytest.raises(ValueError, match="patient_identifier_aliases"):
            identity.aliases(spec)
        with pytest.raises(ValueError, match="patient_identifier_aliases"):
            Gateway(dataclasses.replace(settings, patient_identifier_aliases=spec), listen="t")
    assert identity.aliases("") == {}
    assert identity.aliases("HOSP=urn:x")["fhir:identifier:urn:x"] == "HOSP"


def test_the_token_command_gives_the_token_the_streams_carry_for_a_record_number(
    settings: Settings, tmp_path: Path
) -> None:
    """The EHR's interface engine, holding the key, maps alert tokens back to its patients by
    tokenising its own record numbers as the ingestion edges do."""
    env = {
        "PATH": "/usr/bin:/bin",
        "WARDFLOW_PHI_KEY": "k",
        "WARDFLOW_PATIENT_IDENTIFIER_ALIASES": ALIASES,
    }
    aliased = dataclasses.replace(settings, patient_identifier_aliases=ALIASES)

    def printed(*flags: str) -> dict[str, str]:
        out = subprocess.run(
            [sys.executable, "-m", "jobs.feeds.tokens", *flags],
            input="12345\n\n777\n", capture_output=True, text=True, env=env, check=True,
            cwd=Path(__file__).resolve().parents[2],
        ).stdout  # fmt: skip
        return dict(line.split("\t") for line in out.splitlines())

    by_hl7 = printed("--hl7-authority", "HOSP")
    assert set(by_hl7) == {"12345", "777"}
    assert by_hl7["12345"] == hl7_token(aliased, "12345^^^HOSP^MR")
    assert by_hl7["777"] == hl7_token(aliased, "777^^^HOSP^MR")
    system = {"system": "urn:oid:2.16.840.1.113883.19.5", "value": "12345"}
    assert printed("--fhir-system", "urn:oid:2.16.840.1.113883.19.5")["12345"] == by_hl7["12345"]
    assert fhir_token(aliased, tmp_path, {"identifier": system}) == by_hl7["12345"]
    unaliased = printed("--fhir-system", "urn:other")["12345"]
    assert unaliased == fhir_token(
        aliased, tmp_path, {"identifier": {"system": "urn:other", "value": "12345"}}
    )
