"""HL7 v2 ORU^R01 messages and FHIR R4 Observations for the interop tests."""

from __future__ import annotations

from typing import Any

from schemas.interop import hl7v2
from schemas.interop.code_map import CodeMap


def tok(namespace: str, ident: str) -> str:
    """A readable stand-in for the PHI tokeniser: `namespace|identifier`."""
    return f"{namespace}|{ident}"


def oru(*obx: str, unit: str = "MICU^12^A^GH", order: str = "vitals") -> str:
    """An ORU^R01 of patient MRN9 on `unit`, its order at 10:10 UTC, made at 10:15 UTC, with
    one OBX per `obx` (`value type|code||value|unit…`, numbered from 1)."""
    return "\r".join(
        [
            "MSH|^~\\&|ICU|GH|WF|GH|20260301101500||ORU^R01|C1|P|2.5.1",
            "PID|1||MRN9^^^GH^MR",
            f"PV1|1|I|{unit}",
            f"OBR|1|||{order}|||20260301101000",
            *(f"OBX|{n}|{o}" for n, o in enumerate(obx, 1)),
        ]
    )


def hl7(text: str, codes: CodeMap | None = None) -> hl7v2.Mapped | hl7v2.Refused:
    """`text` parsed and mapped (with the deployment's code map `codes`)."""
    msg = hl7v2.parse(text)
    assert not isinstance(msg, hl7v2.Refused), msg
    return hl7v2.map_message(msg, tok, source="t", codes=codes or CodeMap())


def observation(
    code: str, system: str = "http://loinc.org", ident: str = "o1", /, **kw: Any
) -> dict[str, Any]:
    """A final FHIR Observation `ident` of patient p1 at 09:30 UTC coded `system|code`, with
    the elements `kw` (its value, components…; `code=` replaces its code)."""
    return {
        "resourceType": "Observation",
        "id": ident,
        "status": "final",
        "code": {"coding": [{"system": system, "code": code}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-03-01T09:30:00Z",
        **kw,
    }
