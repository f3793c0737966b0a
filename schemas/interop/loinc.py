"""LOINC codes wardflow reads from HL7 v2 OBX and FHIR Observation, with UCUM unit conversion.

Vital signs use the LOINC codes of the FHIR vital-signs profile (FHIR R4, section 8.1.3); labs are
the ones the sepsis screen reads (udfs.sepsis). Each accepted unit maps to (factor, offset):
value in the field's unit = value * factor + offset.

Units are UCUM (what HL7 v2.5.1+ OBX-6 and FHIR `Quantity.code` should carry). A few non-UCUM
spellings that real monitors and charting systems send are accepted per code where they cannot
mean anything else for that code (`bpm` for a heart rate, `degF` for a temperature); any other
unit is refused for that value alone (the caller keeps the message's other values). Spellings
that legacy lab and charting systems send for a UCUM unit (`K/uL` and `x10E3/uL` for `10*3/uL`,
`10^9/L`, `mm Hg`, `MG/DL`, `1/min`, `DEG F`) are read as that unit (`UNIT_SPELLINGS`, matched
without case or spaces), but only where the code takes that unit.

A value sent without a unit (an empty OBX-6, as many flowsheet feeds send vital signs) is read
where it can mean one thing only: every unit its code takes is its field's own unit under
another name (a heart or respiratory rate per minute, a blood pressure in mm[Hg], a sodium in
mmol/L or meq/L), and a saturation above 1 (at or below 1 it may be a fraction); a temperature,
a count, a concentration of two scales, or a code of one unit that is not its field's (the SI
creatinine code, in umol/L) is refused without one (`UnitError`). An FiO2 sent without a unit
is a fraction up to 1 and a percentage above it: the two ranges (0.21-1, 21-100) do not meet,
and a value between them is out of range either way.

Inhaled oxygen flow rate (LOINC 3151-8) is not a number the screen reads but a fact it needs:
NEWS2 scores "any supplemental oxygen" (Royal College of Physicians, NEWS2, 2017, chart 1), so a
flow above zero becomes `on_supplemental_o2 = true` and a flow of zero `false`.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import NamedTuple

from schemas import topics

VITALS = topics.VITALS_OBSERVATION.name
LABS = topics.LABS_RESULT.name
# A beat's unit only for a heart rate, a breath's only for a respiratory rate (another is a row
# with the wrong code); UCUM's annotations mean nothing but which rate (`_known`, `_other_rate`)
_PER_MIN = {"/min": (1.0, 0.0)}
_BEATS = {
    **_PER_MIN,
    "beats/min": (1.0, 0.0),
    "{beats}/min": (1.0, 0.0),
    "bpm": (1.0, 0.0),
    "BPM": (1.0, 0.0),
    "beats/minute": (1.0, 0.0),
}
_BREATHS = {
    **_PER_MIN,
    "breaths/min": (1.0, 0.0),
    "{breaths}/min": (1.0, 0.0),
    "br/min": (1.0, 0.0),
    "breaths/minute": (1.0, 0.0),
}
_CELSIUS = {"Cel": (1.0, 0.0), "degC": (1.0, 0.0), "\u00b0C": (1.0, 0.0)}
_FAHRENHEIT = {u: (5 / 9, -32 * 5 / 9) for u in ("[degF]", "degF", "\u00b0F")}
_FLOW = {"L/min": (1.0, 0.0), "l/min": (1.0, 0.0), "mL/min": (0.001, 0.0)}
_MMHG = {"mm[Hg]": (1.0, 0.0), "mmHg": (1.0, 0.0)}
# `G/L` as sent (capital G: giga, French and German laboratories' 10^9/L); `g/L` is grams
_COUNT = {
    "10*3/uL": (1.0, 0.0),
    "10*9/L": (1.0, 0.0),
    "G/L": (1.0, 0.0),
    "{cells}/uL": (0.001, 0.0),
}
_TEMPERATURE = {**_CELSIUS, **_FAHRENHEIT}
# Lactate: 1 mmol/L = 9.008 mg/dL (molar mass 90.08 g/mol).
_LACTATE = {"mmol/L": (1.0, 0.0), "mg/dL": (1 / 9.008, 0.0)}
# Blood gases in kPa (UK, EU): 1 kPa = 7.50062 mmHg.
_GAS = {**_MMHG, "kPa": (7.50062, 0.0)}
# Monovalent ions: 1 mmol/L = 1 mEq/L.
_ION = {"mmol/L": (1.0, 0.0), "meq/L": (1.0, 0.0)}
# Glucose: 1 mmol/L = 18.016 mg/dL (molar mass 180.16 g/mol).
_GLUCOSE = {"mg/dL": (1.0, 0.0), "mmol/L": (18.016, 0.0)}
# Urea nitrogen: 1 mmol/L of urea, as SI labs report it = 2.801 mg/dL of urea nitrogen (two
# nitrogens, 14.007 g/mol each).
_BUN = {"mg/dL": (1.0, 0.0), "mmol/L": (2.801, 0.0)}
# Magnesium: 1 mg/dL = 0.4114 mmol/L (24.305 g/mol); divalent, so 1 mEq/L = 0.5 mmol/L.
_MAGNESIUM = {"mmol/L": (1.0, 0.0), "mg/dL": (0.4114, 0.0), "meq/L": (0.5, 0.0)}
# Enzyme activity: 1 ukat/L = 60 U/L.
_ENZYME = {"U/L": (1.0, 0.0), "[IU]/L": (1.0, 0.0), "ukat/L": (60.0, 0.0)}
# Troponins in ng/mL (= ug/L); high-sensitivity assays report ng/L (= pg/mL).
_TROPONIN = {"ng/mL": (1.0, 0.0), "ug/L": (1.0, 0.0), "ng/L": (0.001, 0.0), "pg/mL": (0.001, 0.0)}
_NO_UNIT = {"": (1.0, 0.0), "1": (1.0, 0.0)}
# Other spellings of the units above, by their key (`_spelling`: lower case, no spaces, µ as u,
# ^ as *, x10e/x10*/10e/x10(n) as 10*, cumm as mm3): what legacy systems send for a UCUM unit.
UNIT_SPELLINGS: dict[str, str] = {
    **dict.fromkeys(("mmhg", "mm[hg]", "mmofhg", "mm(hg)"), "mm[Hg]"),
    **dict.fromkeys(("kpa",), "kPa"),
    **dict.fromkeys(("meq/l", "mequiv/l"), "meq/L"),
    **dict.fromkeys(("g/dl", "gm/dl"), "g/dL"),
    **dict.fromkeys(("g/l",), "g/L"),
    **dict.fromkeys(("u/l", "iu/l", "[iu]/l", "units/l"), "U/L"),
    **dict.fromkeys(("ukat/l", "ukatal/l"), "ukat/L"),
    **dict.fromkeys(("ng/ml",), "ng/mL"),
    **dict.fromkeys(("ug/l", "mcg/l"), "ug/L"),
    **dict.fromkeys(("ng/l",), "ng/L"),
    **dict.fromkeys(("pg/ml",), "pg/mL"),
    **dict.fromkeys(("kg", "kilogram", "kilograms"), "kg"),
    **dict.fromkeys(("g", "gram", "grams"), "g"),
    **dict.fromkeys(("[lb_av]", "lb", "lbs", "pound", "pounds"), "[lb_av]"),
    **dict.fromkeys(("ml", "cc", "cm3"), "mL"),
    **dict.fromkeys(("l/l",), "L/L"),
    **dict.fromkeys(("[ph]", "ph"), "[pH]"),
    **dict.fromkeys(("{score}", "score", "points", "{points}"), "{score}"),
    **dict.fromkeys(("1/min", "/min", "per min", "permin"), "/min"),
    # rates as upper-case-only systems (Meditech MAGIC) and flowsheet builds write them: a
    # beat's only for a heart rate, a breath's only for a respiratory rate (another means the
    # row has the wrong code)
    **dict.fromkeys(
        (
            "bpm",
            "b/min",
            "beats/min",
            "beat/min",
            "beats/minute",
            "beatsperminute",
            "beatspermin",
            "beatperminute",
            "beatpermin",
        ),
        "bpm",
    ),
    **dict.fromkeys(
        (
            "breaths/min",
            "breath/min",
            "br/min",
            "breaths/minute",
            "resp/min",
            "breathsperminute",
            "breathspermin",
            "breathperminute",
            "breathpermin",
        ),
        "br/min",
    ),
    **dict.fromkeys(
        (
            "c",
            "cel",
            "degc",
            "°c",
            "deg.c",
            "celsius",
            "degreesc",
            "degreec",
            "degreescelsius",
            "degreecelsius",
        ),
        "Cel",
    ),
    **dict.fromkeys(
        (
            "f",
            "degf",
            "[degf]",
            "°f",
            "deg.f",
            "fahrenheit",
            "degreesf",
            "degreef",
            "degreesfahrenheit",
            "degreefahrenheit",
        ),
        "[degF]",
    ),
    **dict.fromkeys(("l/min", "lpm", "liters/min", "litres/min", "l/minute"), "L/min"),
    **dict.fromkeys(("ml/min",), "mL/min"),
    **dict.fromkeys(("mmol/l", "mm/l", "mmol"), "mmol/L"),
    **dict.fromkeys(("umol/l",), "umol/L"),
    **dict.fromkeys(("mg/dl",), "mg/dL"),
    **dict.fromkeys(
        (
            "k/ul",
            "10*3/ul",
            "10*3/mm3",
            "k/mm3",
            "thou/ul",
            "thou/mm3",
            "x1000/ul",
            "k/mcl",
            "10*3/mcl",
        ),
        "10*3/uL",
    ),
    **dict.fromkeys(("10*9/l", "giga/l", "/nl", "giga.l-1", "10*9.l-1"), "10*9/L"),
    **dict.fromkeys(("/ul", "cells/ul", "{cells}/ul", "/mm3", "cells/mm3"), "{cells}/uL"),
    **dict.fromkeys(("%", "pct", "percent"), "%"),
}


_ANNOTATION = re.compile(r"\{[^{}]*\}")  # a UCUM annotation: curly braces around text


def _spelling(unit: str) -> str:
    key = unit.strip().lower().replace(" ", "").replace("\u00b5", "u").replace("\u03bc", "u")
    key = key.replace("^", "*").replace("cumm", "mm3")  # cu mm: Sunquest's, Meditech's mm3
    key = re.sub(r"^x?10\((\d+)\)", r"10*\1", key)  # x10(3)/uL: Cerner's display units
    for prefix in ("x10e", "x10*", "10e"):
        if key.startswith(prefix):
            key = "10*" + key[len(prefix) :]
    return key


class Code(NamedTuple):
    topic: str
    field: str
    units: dict[str, tuple[float, float]]


CODES: dict[str, Code] = {
    "8867-4": Code(VITALS, "heart_rate_bpm", _BEATS),
    "9279-1": Code(VITALS, "resp_rate_per_min", _BREATHS),
    "2708-6": Code(VITALS, "spo2_pct", {"%": (1.0, 0.0)}),
    "59408-5": Code(VITALS, "spo2_pct", {"%": (1.0, 0.0)}),
    "8310-5": Code(VITALS, "temp_c", _TEMPERATURE),
    # by site (LOINC): axillary, core, oral, rectal, tympanic membrane, temporal artery (the
    # forehead scanners of US adult wards; FHIR R4's body temperature profile lists it)
    **{
        c: Code(VITALS, "temp_c", _TEMPERATURE)
        for c in ("8328-7", "8329-5", "8331-1", "8332-9", "8333-7", "75539-7")
    },
    "8889-8": Code(VITALS, "heart_rate_bpm", _BEATS),  # heart rate by pulse oximetry
    "8480-6": Code(VITALS, "sbp_mmhg", _MMHG),
    "8462-4": Code(VITALS, "dbp_mmhg", _MMHG),
    "8478-0": Code(VITALS, "map_mmhg", _MMHG),
    # by noninvasive (a cuff: systolic, diastolic, mean; a monitor's NBP channels)
    "76534-7": Code(VITALS, "sbp_mmhg", _MMHG),
    "76535-4": Code(VITALS, "dbp_mmhg", _MMHG),
    "76536-2": Code(VITALS, "map_mmhg", _MMHG),
    "3150-0": Code(VITALS, "fio2_fraction", {"%": (0.01, 0.0), "1": (1.0, 0.0)}),
    "3151-8": Code(VITALS, "on_supplemental_o2", _FLOW),  # inhaled O2 flow: on oxygen if > 0
    # lactate in serum or plasma, blood, arterial blood, venous blood
    **{
        c: Code(LABS, "lactate_mmol_l", _LACTATE) for c in ("2524-7", "32693-4", "2518-9", "2519-7")
    },
    "2019-8": Code(LABS, "paco2_mmhg", _GAS),
    "6690-2": Code(LABS, "wbc_10e9_l", _COUNT),
    "26464-8": Code(LABS, "wbc_10e9_l", _COUNT),
    "777-3": Code(LABS, "platelets_10e9_l", _COUNT),
    "26515-7": Code(LABS, "platelets_10e9_l", _COUNT),
    "2160-0": Code(LABS, "creatinine_mg_dl", {"mg/dL": (1.0, 0.0), "umol/L": (1 / 88.42, 0.0)}),
    "1975-2": Code(LABS, "bilirubin_total_mg_dl", {"mg/dL": (1.0, 0.0), "umol/L": (1 / 17.1, 0.0)}),
    # the SI codes of creatinine and bilirubin, and point-of-care creatinine in blood
    "14682-9": Code(LABS, "creatinine_mg_dl", {"umol/L": (1 / 88.42, 0.0)}),
    "38483-4": Code(LABS, "creatinine_mg_dl", {"mg/dL": (1.0, 0.0), "umol/L": (1 / 88.42, 0.0)}),
    "14631-6": Code(LABS, "bilirubin_total_mg_dl", {"umol/L": (1 / 17.1, 0.0)}),
    # The rest of labs.result revision 2 (what the stay models read: PhysioNet 2012's labs), by
    # the LOINC codes a chemistry, haematology or blood gas analyser reports them with. Total
    # CO2 (2028-9, the "CO2" of a basic metabolic panel) is read as bicarbonate, which it
    # exceeds by about 1 mmol/L (dissolved CO2).
    **{c: Code(LABS, "bun_mg_dl", _BUN) for c in ("3094-0", "6299-2", "14937-7")},
    **{
        c: Code(LABS, "hco3_mmol_l", _ION)
        for c in ("1963-8", "1959-6", "1960-4", "14627-4", "2028-9")
    },
    **{
        c: Code(LABS, "glucose_mg_dl", _GLUCOSE)
        for c in ("2345-7", "2339-0", "41653-7", "14749-6", "15074-8", "2341-6", "1554-5")
    },
    **{c: Code(LABS, "potassium_mmol_l", _ION) for c in ("2823-3", "6298-4", "32713-0")},
    **{c: Code(LABS, "sodium_mmol_l", _ION) for c in ("2951-2", "2947-0", "32717-1")},
    **{c: Code(LABS, "magnesium_mmol_l", _MAGNESIUM) for c in ("19123-9", "2601-3")},
    **{
        c: Code(LABS, "hematocrit_pct", {"%": (1.0, 0.0), "L/L": (100.0, 0.0)})
        for c in ("4544-3", "20570-8", "32354-3")
    },
    "1751-7": Code(LABS, "albumin_g_dl", {"g/dL": (1.0, 0.0), "g/L": (0.1, 0.0)}),
    **{c: Code(LABS, "alt_iu_l", _ENZYME) for c in ("1742-6", "1743-4", "76625-3")},
    **{c: Code(LABS, "ast_iu_l", _ENZYME) for c in ("1920-8", "30239-8")},
    "6768-6": Code(LABS, "alp_iu_l", _ENZYME),
    **{c: Code(LABS, "troponin_i_ng_ml", _TROPONIN) for c in ("10839-9", "42757-5", "89579-7")},
    **{c: Code(LABS, "troponin_t_ug_l", _TROPONIN) for c in ("6598-7", "67151-1")},
    "2703-7": Code(LABS, "pao2_mmhg", _GAS),
    "2744-1": Code(LABS, "ph", {"[pH]": (1.0, 0.0), **_NO_UNIT}),
    **{
        c: Code(LABS, "cholesterol_mg_dl", {"mg/dL": (1.0, 0.0), "mmol/L": (38.67, 0.0)})
        for c in ("2093-3", "14647-2")
    },
    # vitals the stay models read besides the screen's: the Glasgow coma score total, body
    # weight and the urine output charted for an interval
    "9269-2": Code(VITALS, "gcs_total", {"{score}": (1.0, 0.0), **_NO_UNIT}),
    **{
        c: Code(
            VITALS,
            "weight_kg",
            {
                "kg": (1.0, 0.0),
                "g": (0.001, 0.0),
                "[lb_av]": (0.45359237, 0.0),
                "[oz_av]": (0.028349523125, 0.0),  # avoirdupois ounce (NIST SP 811 B.8)
            },
        )
        for c in ("29463-7", "3141-9")
    },
    "9187-6": Code(VITALS, "urine_output_ml", {"mL": (1.0, 0.0), "L": (1000.0, 0.0)}),
}
# LOINC 2708-6 is "Oxygen saturation in Arterial blood". FHIR R4's vital-signs profile (oxygen
# saturation) and US Core's pulse oximetry profile code the oximeter's SpO2 with it too (beside
# 59408-5), and monitors' HL7 v2 feeds send it so: read as SpO2 (CODES). A blood gas analyser
# sends it for the saturation it measured in the arterial sample, which is labs.result's
# sao2_pct, not the pulse oximeter's reading that NEWS2 scores: read so where the result is one
# of a blood gas (`convert(..., blood_gas=True)`; HL7 v2: an order with a blood gas result,
# BLOOD_GAS or GAS_PANELS; FHIR: a laboratory Observation without 59408-5).
IN_BLOOD_GAS: dict[str, Code] = {"2708-6": Code(LABS, "sao2_pct", {"%": (1.0, 0.0)})}
# A blood gas analyser's results besides the saturation: pO2, pCO2 (arterial blood) and pH.
BLOOD_GAS: frozenset[str] = frozenset({"2703-7", "2019-8", "2744-1"})
# A blood gas analyser's results of any sample (DICOM CID 3524, 3528: pO2, pCO2 and pH of blood,
# arterial, venous): an order with one is a blood gas, whatever wardflow reads of it
GAS_ANALYTES: frozenset[str] = BLOOD_GAS | {
    "11556-8", "2705-2",  # pO2: blood, venous
    "11557-6", "2021-4",  # pCO2: blood, venous
    "11558-4", "2746-6",  # pH: blood, venous
}  # fmt: skip
GAS_PANELS: frozenset[str] = frozenset({"24336-0"})  # Gas panel - Arterial blood (an order)
# Fields a blood gas's results may carry that are the analyser's entries for its correction (the
# patient's temperature as keyed in, often its default 37.0 °C; the ventilator's rate), not a
# bedside reading: not read from a blood gas (hl7v2)
ANALYSER_ENTRIES: frozenset[str] = frozenset({"temp_c", "resp_rate_per_min"})
# How far from a blood gas result's time an oxygen saturation of its order with an OBX-14 of its
# own is still the gas's (an analyser times each result as it reports it, seconds apart)
GAS_NEAR = timedelta(minutes=5)
PULSE_OXIMETRY = "59408-5"

# Where one reading has a field from several LOINC codes, the lower rank is kept (as
# schemas.interop.mdc ranks its codes; unlisted: 0): the ECG's heart rate before the oximeter's,
# a core or body temperature before an oral, rectal or tympanic one before an axillary or
# temporal artery one (a forehead scan, which an oral or rectal reading at its time checks), a
# pressure of no named method or the arterial line's before the cuff's (as mdc ranks the cuff
# 3), a measured bicarbonate before a total CO2.
RANKS: dict[str, int] = {
    "8889-8": 1,
    **dict.fromkeys(("8331-1", "8332-9", "8333-7"), 1),
    **dict.fromkeys(("8328-7", "75539-7"), 2),
    **dict.fromkeys(("76534-7", "76535-4", "76536-2"), 3),
    "2028-9": 1,  # total CO2 after a measured bicarbonate
}

# LOINC's own names as a coding system: HL7 v2 table 0396 (OBX-3.3) and FHIR's system URIs.
LOINC_SYSTEMS_HL7: frozenset[str] = frozenset({"LN", "LOINC"})
LOINC_SYSTEMS_FHIR: frozenset[str] = frozenset(
    {"http://loinc.org", "urn:oid:2.16.840.1.113883.6.1"}
)

# LOINC's blood pressure panels, whose value a charting system may send in one HL7 OBX (`120/80`)
BP_PANELS: frozenset[str] = frozenset({"85354-9", "55284-4", "35094-2"})

# Codes whose values come in their components (FHIR R4 vital-signs profile, section 8.1.3); the
# components of any other code are not read (a home blood pressure average's systolic and
# diastolic components are no bedside reading).
PANELS = {
    "85354-9": "blood pressure panel",
    "55284-4": "blood pressure systolic and diastolic",
    "35094-2": "blood pressure panel (older code)",
    "85353-1": "vital signs panel",
}

# Codes with a few components of their own that are values: the US Core pulse oximetry profile
# (us-core-pulse-oximetry, STU 3.1 on) puts the inhaled oxygen flow rate and concentration in
# components of the SpO2 Observation. Its other components are not read.
COMPONENTS_OF: dict[str, frozenset[str]] = {
    spo2: frozenset({"3151-8", "3150-0"}) for spo2 in ("2708-6", "59408-5")
}


# Value fields of integer type in their topic's schema (the Glasgow coma score total).
INTEGER_FIELDS = frozenset(
    f.name
    for t in (topics.VITALS_OBSERVATION, topics.LABS_RESULT)
    for f in t.schema.fields
    if f.base == "int"
)


# Percentages of which 1 % or less is no living patient's (an oxygen saturation): such a value in
# `%` is a fraction sent with the percentage's unit (HealthKit-derived exporters send SpO2 0.96
# "%"), or a probe off reading 0. Read as sent it would score as the worst state. (A haematocrit
# of 1 % or less is outside its field's range already.)
FRACTION_AS_PERCENT = frozenset({"spo2_pct", "sao2_pct"})


class UnitError(ValueError):
    """A unit the code does not take (any other ValueError of `convert` is the value's)."""


def _known(c: Code, unit: str) -> str | None:
    """`unit` as the code's table writes it (as sent, or the unit it is a spelling of), or None.
    A UCUM annotation (`{beat}/min`, `%{Oxygen}`) means nothing (UCUM §2.4.1 rule 12): a unit
    not known as sent is read without its annotations, where a unit is left."""
    units = c.units
    if unit in units:
        return unit
    if not unit.strip() and set(units.values()) == {(1.0, 0.0)}:
        return next(iter(units))  # sent without one: every unit it takes is the field's own
    spelled = UNIT_SPELLINGS.get(_spelling(unit))
    if spelled in units:
        return spelled
    bare = _ANNOTATION.sub("", unit)
    if bare == unit or not bare.strip() or _other_rate(c, unit):
        return None
    return _known(c, bare)


def _other_rate(c: Code, unit: str) -> bool:
    """Whether an annotated rate (`{breaths}/min`) names the other rate than the code's: a
    breath's on a heart rate, a beat's on a respiratory rate (a row with the wrong code)."""
    text = unit.lower()
    if c.units is _BEATS:
        return "breath" in text or "resp" in text
    if c.units is _BREATHS:
        return "beat" in text or "puls" in text
    return False


def takes(code: str, unit: str) -> bool:
    """Whether `code` takes `unit`, as sent or as a spelling of one of its units."""
    return _known(CODES[code], unit) is not None


def disagree(code: str, a: str, b: str) -> bool:
    """Whether units `a` and `b` are both units `code` takes that convert its values
    differently (`mmol/L` and `mg/dL` of a lactate; not `Cel` and `°C`)."""
    c = CODES[code]
    known = (_known(c, a), _known(c, b))
    return None not in known and len({c.units[k] for k in known if k is not None}) > 1


def convert(
    code: str, value: float, unit: str, blood_gas: bool = False
) -> tuple[str, str, float | bool]:
    """(topic, field, value in the field's unit); UnitError for a unit the code does not take,
    ValueError for a value that is not a finite number or a negative oxygen flow. `blood_gas`:
    the result is one of a blood gas analyser's (IN_BLOOD_GAS)."""
    c = IN_BLOOD_GAS[code] if blood_gas and code in IN_BLOOD_GAS else CODES[code]
    if c.field == "fio2_fraction" and not unit.strip():  # no unit: the ranges do not meet
        unit = "1" if value <= 1 else "%"
    elif not unit.strip() and "%" in c.units and "" not in c.units and value <= 1:
        raise UnitError(f"{code}: {value} without a unit may be a fraction or a percentage")
    known = _known(c, unit)
    if known is None:
        raise UnitError(f"{code}: unit {unit!r} is not one of {sorted(c.units)}")
    unit = known
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"{code}: value {value!r} is not a finite number")
    if unit == "%" and value <= 1 and c.field in FRACTION_AS_PERCENT:
        raise UnitError(f"{code}: {value} % is a fraction sent as a percentage, or no reading")
    factor, offset = c.units[unit]
    converted = value * factor + offset
    if c.field == "on_supplemental_o2":
        if converted < 0:
            raise ValueError(f"{code}: a negative oxygen flow ({value} {unit})")
        return c.topic, c.field, converted > 0
    if c.field in INTEGER_FIELDS:  # a score: a whole number, as its field holds it
        if converted != int(converted):
            raise ValueError(f"{code}: {value!r} is not a whole number")
        return c.topic, c.field, int(converted)
    return c.topic, c.field, converted
