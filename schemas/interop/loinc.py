"""LOINC codes wardflow reads from HL7 v2 OBX and FHIR Observation, with UCUM unit conversion.

Vital signs use the LOINC codes of the FHIR vital-signs profile (FHIR R4, section 8.1.3); labs are
the ones the sepsis screen reads (udfs.sepsis). Each accepted unit maps to (factor, offset):
value in the field's unit = value * factor + offset.
"""

from __future__ import annotations

from typing import NamedTuple

from schemas import topics

VITALS = topics.VITALS_OBSERVATION.name
LABS = topics.LABS_RESULT.name
_PER_MIN = {"/min": (1.0, 0.0), "beats/min": (1.0, 0.0), "{beats}/min": (1.0, 0.0)}
_MMHG = {"mm[Hg]": (1.0, 0.0), "mmHg": (1.0, 0.0)}
_COUNT = {"10*3/uL": (1.0, 0.0), "10*9/L": (1.0, 0.0), "{cells}/uL": (0.001, 0.0)}


class Code(NamedTuple):
    topic: str
    field: str
    units: dict[str, tuple[float, float]]


CODES: dict[str, Code] = {
    "8867-4": Code(VITALS, "heart_rate_bpm", _PER_MIN),
    "9279-1": Code(VITALS, "resp_rate_per_min", {**_PER_MIN, "breaths/min": (1.0, 0.0)}),
    "2708-6": Code(VITALS, "spo2_pct", {"%": (1.0, 0.0)}),
    "59408-5": Code(VITALS, "spo2_pct", {"%": (1.0, 0.0)}),
    "8310-5": Code(VITALS, "temp_c", {"Cel": (1.0, 0.0), "[degF]": (5 / 9, -32 * 5 / 9)}),
    "8480-6": Code(VITALS, "sbp_mmhg", _MMHG),
    "8462-4": Code(VITALS, "dbp_mmhg", _MMHG),
    "8478-0": Code(VITALS, "map_mmhg", _MMHG),
    "3150-0": Code(VITALS, "fio2_fraction", {"%": (0.01, 0.0), "1": (1.0, 0.0)}),
    "2524-7": Code(LABS, "lactate_mmol_l", {"mmol/L": (1.0, 0.0)}),
    "32693-4": Code(LABS, "lactate_mmol_l", {"mmol/L": (1.0, 0.0)}),
    "2019-8": Code(LABS, "paco2_mmhg", _MMHG),
    "6690-2": Code(LABS, "wbc_10e9_l", _COUNT),
    "26464-8": Code(LABS, "wbc_10e9_l", _COUNT),
    "777-3": Code(LABS, "platelets_10e9_l", _COUNT),
    "26515-7": Code(LABS, "platelets_10e9_l", _COUNT),
    "2160-0": Code(LABS, "creatinine_mg_dl", {"mg/dL": (1.0, 0.0), "umol/L": (1 / 88.42, 0.0)}),
    "1975-2": Code(LABS, "bilirubin_total_mg_dl", {"mg/dL": (1.0, 0.0), "umol/L": (1 / 17.1, 0.0)}),
}
PANELS = {"85354-9": "blood pressure panel", "85353-1": "vital signs panel"}


def convert(code: str, value: float, unit: str) -> tuple[str, str, float]:
    """(topic, field, value in the field's unit); ValueError for a unit the code does not take."""
    c = CODES[code]
    if unit not in c.units:
        raise ValueError(f"{code}: unit {unit!r} is not one of {sorted(c.units)}")
    factor, offset = c.units[unit]
    return c.topic, c.field, value * factor + offset
