"""The encounter facts known at discharge: one definition for the 30-day readmission model's
training, its Feast feature view and the stream that scores a discharge.

An encounter record is the discharge summary of one inpatient stay in the layout of the UCI
"Diabetes 130-US hospitals" data (Strack et al. 2014): demographics in bands, the stay's
counts, up to three ICD-9 diagnoses, the admission and discharge codes, the HbA1c and glucose
results and the 24 diabetes medications with their dose change. `FACTS` declares every feature
(name, unit, the columns it is read from, how it is derived); `encounter_features(frame)`
computes them all, vectorised, in `FEATURES` order (the ONNX input's order). Every feature is a
plain float (NaN = unknown), so a model on them takes one float32 matrix.

Causality: every fact is known when the discharge is recorded. The outcome (`readmitted`)
and anything after the discharge are never read. `prior_encounters_seen` is the one fact that
needs more than the record itself: the number of this patient's encounters the system has seen
before this discharge (the stream keeps it as keyed state; on a file it is the count of the
patient's earlier encounters, `encounter_id` order being chronological per patient). It is
only as complete as the history the system holds: a file with part of a patient's encounters
undercounts it, as would a stream started recently.

Encodings chosen to transfer to a hospital whose local codes we have not seen:

- diagnoses: ICD-9 codes grouped into the clinical categories of Strack et al. 2014 (table 2)
  for the primary diagnosis, plus Charlson comorbidities (Quan et al. 2005 ICD-9 ranges) over
  all three coded diagnoses, never the raw codes;
- admission type, admission source and discharge disposition: grouped by meaning (CMS UB-04
  codes, `IDs_mapping.csv`), never the raw ids; unknown / not mapped → all group flags 0;
- age: the midpoint of the 10-year band;
- medications: counts of medications prescribed, raised, lowered or kept steady, and insulin
  on its own; HbA1c and glucose: tested or not, and the result bands.

Left out on purpose: race (a social category, not a clinical fact: reported as a subgroup,
never an input), weight (97 % missing), payer code and medical specialty (local,
data-set-specific coding, 40-50 % missing; grouped (Medicare / Medicaid / self-pay / unknown;
surgery / emergency / cardiology / nephrology / unknown) they did not help on the validation
patients: AUROC 0.681 and 0.682 against 0.682 without), the groups of the 2nd and 3rd
diagnoses (0.683: no gain) and the raw diagnosis codes (about 700 distinct values each).

Encounters that end in death or hospice (`EXPIRED_OR_HOSPICE`: discharge disposition 11, 13,
14, 19, 20, 21) cannot be readmitted: `eligible(frame)` excludes them from training and from
evaluation, as the literature does (Strack et al. 2014), and a discharge with such a
disposition is not scored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

ENCOUNTER_KEY: Final = "encounter_id"
PATIENT_KEY: Final = "patient_nbr"
LABEL_COLUMN: Final = "readmitted"  # the outcome: read by training and evaluation only
EXPIRED_OR_HOSPICE: Final = frozenset({11, 13, 14, 19, 20, 21})

MEDICATIONS: Final = (
    "metformin",
    "repaglinide",
    "nateglinide",
    "chlorpropamide",
    "glimepiride",
    "acetohexamide",
    "glipizide",
    "glyburide",
    "tolbutamide",
    "pioglitazone",
    "rosiglitazone",
    "acarbose",
    "miglitol",
    "troglitazone",
    "tolazamide",
    "examide",
    "citoglipton",
    "insulin",
    "glyburide-metformin",
    "glipizide-metformin",
    "glimepiride-pioglitazone",
    "metformin-rosiglitazone",
    "metformin-pioglitazone",
)
DIAGNOSES: Final = ("diag_1", "diag_2", "diag_3")

# Strack et al. 2014, table 2: ICD-9 ranges [lo, hi) of the primary diagnosis groups; a code
# in none of them (V and E codes, missing included) is `other`.
DX_GROUPS: Final[dict[str, tuple[tuple[float, float], ...]]] = {
    "circulatory": ((390, 460), (785, 786)),
    "respiratory": ((460, 520), (786, 787)),
    "digestive": ((520, 580), (787, 788)),
    "diabetes": ((250, 251),),
    "injury": ((800, 1000),),
    "musculoskeletal": ((710, 740),),
    "genitourinary": ((580, 630), (788, 789)),
    "neoplasms": ((140, 240),),
}
DX_GROUP_NAMES: Final = (*DX_GROUPS, "other")

# Charlson comorbidities (Quan et al. 2005, ICD-9-CM), weights of Charlson 1987; ranges [lo, hi)
# of the numeric part of the code (V/E codes never match).
CHARLSON: Final[dict[str, tuple[int, tuple[tuple[float, float], ...]]]] = {
    "myocardial_infarction": (1, ((410, 411), (412, 413))),
    "heart_failure": (1, ((428, 429), (398.91, 398.92), (402.01, 402.02), (402.11, 402.12),
                          (402.91, 402.92), (404.01, 404.02), (404.03, 404.04), (404.11, 404.12),
                          (404.13, 404.14), (404.91, 404.92), (404.93, 404.94), (425, 426))),
    "peripheral_vascular": (1, ((440, 442), (443.1, 444), (785.4, 785.5), (447.1, 447.2))),
    "cerebrovascular": (1, ((430, 439),)),
    "dementia": (1, ((290, 291), (294.1, 294.2), (331.2, 331.3))),
    "chronic_pulmonary": (1, ((490, 506), (416.8, 417))),
    "rheumatic": (1, ((710, 711.1), (714, 714.9), (725, 726))),
    "peptic_ulcer": (1, ((531, 535),)),
    "mild_liver": (1, ((570, 572), (573.3, 573.5), (573.8, 574))),
    "diabetes_uncomplicated": (1, ((250, 250.4), (250.8, 251))),
    "diabetes_complicated": (2, ((250.4, 250.8),)),
    "hemiplegia": (2, ((342, 343), (344, 345))),
    "renal": (2, ((582, 584), (585, 587), (588, 589), (403.01, 403.02), (403.11, 403.12),
                  (403.91, 403.92), (404.02, 404.04), (404.12, 404.14), (404.92, 404.94))),
    "malignancy": (2, ((140, 196), (200, 209))),
    "severe_liver": (3, ((456.0, 456.22), (572.2, 572.9))),
    "metastatic": (6, ((196, 200),)),
    "hiv": (6, ((42, 45),)),
}  # fmt: skip
COMORBIDITY_FLAGS: Final = (
    "heart_failure",
    "renal",
    "chronic_pulmonary",
    "diabetes_complicated",
    "malignancy",
    "metastatic",
)

# Grouped by meaning (IDs_mapping.csv); an id in no group is unknown (all flags 0).
ADMISSION_TYPE: Final = {"emergency_or_urgent": {1, 2, 7}, "elective": {3}}
ADMISSION_SOURCE: Final = {
    "emergency_room": {7},
    "referral": {1, 2, 3},
    "transfer": {4, 5, 6, 10, 18, 22, 25, 26},
}
DISCHARGE: Final = {  # home (1) and home for outpatient follow-up (16, 17): all flags 0
    "home_health": {6, 8},
    "facility": {2, 3, 4, 5, 9, 10, 15, 22, 23, 24, 27, 28, 29, 30},
    "left_ama": {7},
    "unknown": {12, 18, 25, 26},
}
HOME: Final = frozenset({1, 16, 17})


@dataclass(frozen=True)
class Fact:
    """One feature: its name (unit or meaning in the name), unit, the record's columns it is
    derived from, and how. All are float32 in the model's input (Feast type Float32)."""

    name: str
    unit: str
    source: tuple[str, ...]
    derivation: str
    dtype: str = "float32"


FLAG = "1 yes, 0 no"


def _facts() -> tuple[Fact, ...]:
    f: list[Fact] = [
        Fact("age_years", "years", ("age",), "midpoint of the 10-year band `[70-80)` → 75"),
        Fact("female", "1 female, 0 male, NaN unknown", ("gender",), "gender == Female"),
        Fact("time_in_hospital_days", "days", ("time_in_hospital",), "length of stay"),
        Fact("lab_procedures_count", "tests", ("num_lab_procedures",), "lab tests in the stay"),
        Fact("procedures_count", "procedures", ("num_procedures",), "non-lab procedures"),
        Fact("medications_count", "drugs", ("num_medications",), "distinct generic drugs given"),
        Fact("diagnoses_count", "diagnoses", ("number_diagnoses",), "diagnoses coded"),
        Fact(
            "prior_outpatient_visits_12m", "visits", ("number_outpatient",), "year before admission"
        ),
        Fact(
            "prior_emergency_visits_12m", "visits", ("number_emergency",), "year before admission"
        ),
        Fact("prior_inpatient_visits_12m", "stays", ("number_inpatient",), "year before admission"),
        Fact(
            "prior_encounters_seen",
            "encounters",
            (PATIENT_KEY, ENCOUNTER_KEY),
            "encounters of this patient seen by the system before this discharge (stream: keyed "
            "state; file: earlier encounter_id of the same patient_nbr)",
        ),
    ]
    f += [
        Fact(f"primary_dx_{g}", FLAG, ("diag_1",), f"ICD-9 primary diagnosis in group {g}")
        for g in DX_GROUP_NAMES
    ]
    f += [
        Fact(f"dx_{c}", FLAG, DIAGNOSES, f"any of the 3 diagnoses in Charlson's {c}")
        for c in COMORBIDITY_FLAGS
    ]
    f += [
        Fact(
            "charlson_index_points",
            "points",
            DIAGNOSES,
            "Charlson comorbidity index over the 3 coded diagnoses (Quan 2005 ICD-9 ranges)",
        ),
        Fact("admission_emergency_or_urgent", FLAG, ("admission_type_id",), "type 1, 2, 7"),
        Fact("admission_elective", FLAG, ("admission_type_id",), "type 3"),
        Fact("admitted_from_emergency_room", FLAG, ("admission_source_id",), "source 7"),
        Fact("admitted_by_referral", FLAG, ("admission_source_id",), "source 1, 2, 3"),
        Fact(
            "admitted_by_transfer", FLAG, ("admission_source_id",), "source 4-6, 10, 18, 22, 25, 26"
        ),
        Fact("discharged_home_health", FLAG, ("discharge_disposition_id",), "disposition 6, 8"),
        Fact(
            "discharged_to_facility",
            FLAG,
            ("discharge_disposition_id",),
            "SNF, ICF, rehab, long-term care, another hospital (2-5, 9, 10, 15, 22-24, 27-30)",
        ),
        Fact("discharged_left_ama", FLAG, ("discharge_disposition_id",), "disposition 7"),
        Fact(
            "discharge_disposition_unknown",
            FLAG,
            ("discharge_disposition_id",),
            "12, 18, 25, 26 or missing",
        ),
        Fact("medications_prescribed_count", "drugs", MEDICATIONS, "of the 23 diabetes drugs"),
        Fact("medications_dose_up_count", "drugs", MEDICATIONS, "dose raised in the stay"),
        Fact("medications_dose_down_count", "drugs", MEDICATIONS, "dose lowered in the stay"),
        Fact("medications_steady_count", "drugs", MEDICATIONS, "prescribed, dose unchanged"),
        Fact("insulin_prescribed", FLAG, ("insulin",), "insulin != No"),
        Fact("insulin_dose_up", FLAG, ("insulin",), "insulin == Up"),
        Fact("insulin_dose_down", FLAG, ("insulin",), "insulin == Down"),
        Fact("diabetes_medication_changed", FLAG, ("change",), "change == Ch"),
        Fact("diabetes_medication_prescribed", FLAG, ("diabetesMed",), "diabetesMed == Yes"),
        Fact("hba1c_tested", FLAG, ("A1Cresult",), "A1Cresult measured"),
        Fact("hba1c_above_7_pct", FLAG, ("A1Cresult",), "A1Cresult >7 or >8"),
        Fact("hba1c_above_8_pct", FLAG, ("A1Cresult",), "A1Cresult >8"),
        Fact("glucose_tested", FLAG, ("max_glu_serum",), "max_glu_serum measured"),
        Fact("glucose_above_200_mg_dl", FLAG, ("max_glu_serum",), "max_glu_serum >200 or >300"),
        Fact("glucose_above_300_mg_dl", FLAG, ("max_glu_serum",), "max_glu_serum >300"),
    ]
    return tuple(f)


FACTS: Final = _facts()
FEATURES: Final = tuple(f.name for f in FACTS)
UNITS: Final = {f.name: f.unit for f in FACTS}
# The columns an encounter record must have to be scored (and, with the label, to be evaluated).
REQUIRED: Final = tuple(dict.fromkeys(c for f in FACTS for c in f.source))

Array = np.ndarray[Any, Any]


def _num(s: pd.Series[Any]) -> pd.Series[Any]:
    return pd.to_numeric(s.replace({"?": None, "": None}), errors="coerce").astype(float)


def _text(s: pd.Series[Any]) -> pd.Series[Any]:
    return s.astype("string").str.strip().fillna("")


def icd9_value(codes: pd.Series[Any]) -> pd.Series[Any]:
    """The numeric part of ICD-9 codes (`428`, `250.83`, `8`); NaN for V/E codes and missing."""
    return pd.to_numeric(_text(codes).where(~_text(codes).str.match(r"^[VvEe?]")), errors="coerce")


def _in(values: pd.Series[Any], ranges: tuple[tuple[float, float], ...]) -> Array:
    v = values.to_numpy(dtype=float)
    out = np.zeros(len(v), dtype=bool)
    for lo, hi in ranges:
        out |= (v >= lo - 1e-9) & (v < hi - 1e-9)
    return out


def diagnosis_group(codes: pd.Series[Any]) -> pd.Series[Any]:
    """Strack et al. 2014's group of each ICD-9 code (`other` for V/E codes and missing)."""
    v = icd9_value(codes)
    out = pd.Series("other", index=codes.index, dtype=object)
    for name, ranges in DX_GROUPS.items():
        out[_in(v, ranges) & (out == "other").to_numpy()] = name
    return out


def comorbidities(frame: pd.DataFrame) -> pd.DataFrame:
    """One 1/0 column per Charlson comorbidity coded in any of the 3 diagnoses."""
    values = [icd9_value(frame[c]) if c in frame else None for c in DIAGNOSES]
    out = {}
    for name, (_, ranges) in CHARLSON.items():
        hit = np.zeros(len(frame), dtype=bool)
        for v in values:
            if v is not None:
                hit |= _in(v, ranges)
        out[name] = hit.astype(float)
    return pd.DataFrame(out, index=frame.index)


def charlson_index(como: pd.DataFrame) -> pd.Series[Any]:
    """Charlson's weighted sum; a complicated form supersedes the mild one (diabetes, liver,
    cancer → metastatic), as in Charlson 1987."""
    w = {name: weight for name, (weight, _) in CHARLSON.items()}
    c = como.copy()
    c["diabetes_uncomplicated"] *= 1 - c["diabetes_complicated"]
    c["mild_liver"] *= 1 - c["severe_liver"]
    c["malignancy"] *= 1 - c["metastatic"]
    return sum((c[n] * w[n] for n in CHARLSON), pd.Series(0.0, index=como.index))


def age_years(bands: pd.Series[Any]) -> pd.Series[Any]:
    """`[70-80)` → 75.0; NaN when the band is unreadable."""
    parts = _text(bands).str.extract(r"(\d+)\s*-\s*(\d+)")
    return (pd.to_numeric(parts[0]) + pd.to_numeric(parts[1])) / 2


def _member(ids: pd.Series[Any], group: set[int] | frozenset[int]) -> Array:
    return ids.isin(list(group)).to_numpy(dtype=float)


def prior_encounters(frame: pd.DataFrame) -> pd.Series[Any]:
    """How many of the patient's encounters come before this one (encounter_id order)."""
    order = _num(frame[ENCOUNTER_KEY])
    key = frame[PATIENT_KEY].astype(str)
    return (
        pd.DataFrame({"k": key, "o": order})
        .groupby("k")["o"]
        .rank(method="first")
        .sub(1)
        .astype(float)
    )


def encounter_features(frame: pd.DataFrame) -> pd.DataFrame:
    """`FEATURES` of every encounter record in `frame` (the UCI layout, strings or numbers),
    float, NaN unknown, same index. Reads nothing but `REQUIRED` (never the outcome)."""
    f = frame
    out: dict[str, Any] = {}
    out["age_years"] = age_years(f["age"])
    gender = _text(f["gender"])
    out["female"] = np.where(gender == "Female", 1.0, np.where(gender == "Male", 0.0, np.nan))
    for name, col in (
        ("time_in_hospital_days", "time_in_hospital"),
        ("lab_procedures_count", "num_lab_procedures"),
        ("procedures_count", "num_procedures"),
        ("medications_count", "num_medications"),
        ("diagnoses_count", "number_diagnoses"),
        ("prior_outpatient_visits_12m", "number_outpatient"),
        ("prior_emergency_visits_12m", "number_emergency"),
        ("prior_inpatient_visits_12m", "number_inpatient"),
    ):
        out[name] = _num(f[col])
    out["prior_encounters_seen"] = prior_encounters(f)
    primary = diagnosis_group(f["diag_1"])
    for g in DX_GROUP_NAMES:
        out[f"primary_dx_{g}"] = (primary == g).to_numpy(dtype=float)
    como = comorbidities(f)
    for c in COMORBIDITY_FLAGS:
        out[f"dx_{c}"] = como[c]
    out["charlson_index_points"] = charlson_index(como)
    adm_type, adm_src = _num(f["admission_type_id"]), _num(f["admission_source_id"])
    disp = _num(f["discharge_disposition_id"])
    out["admission_emergency_or_urgent"] = _member(adm_type, ADMISSION_TYPE["emergency_or_urgent"])
    out["admission_elective"] = _member(adm_type, ADMISSION_TYPE["elective"])
    out["admitted_from_emergency_room"] = _member(adm_src, ADMISSION_SOURCE["emergency_room"])
    out["admitted_by_referral"] = _member(adm_src, ADMISSION_SOURCE["referral"])
    out["admitted_by_transfer"] = _member(adm_src, ADMISSION_SOURCE["transfer"])
    out["discharged_home_health"] = _member(disp, DISCHARGE["home_health"])
    out["discharged_to_facility"] = _member(disp, DISCHARGE["facility"])
    out["discharged_left_ama"] = _member(disp, DISCHARGE["left_ama"])
    known = set().union(*DISCHARGE.values(), HOME, EXPIRED_OR_HOSPICE)
    out["discharge_disposition_unknown"] = (
        ~disp.isin(list(known)) | disp.isin(list(DISCHARGE["unknown"]))
    ).to_numpy(dtype=float)
    meds = pd.DataFrame({m: _text(f[m]) if m in f else "" for m in MEDICATIONS}, index=f.index)
    out["medications_prescribed_count"] = meds.isin(["Up", "Down", "Steady"]).sum(axis=1)
    out["medications_dose_up_count"] = (meds == "Up").sum(axis=1)
    out["medications_dose_down_count"] = (meds == "Down").sum(axis=1)
    out["medications_steady_count"] = (meds == "Steady").sum(axis=1)
    insulin = meds["insulin"]
    out["insulin_prescribed"] = insulin.isin(["Up", "Down", "Steady"]).to_numpy(dtype=float)
    out["insulin_dose_up"] = (insulin == "Up").to_numpy(dtype=float)
    out["insulin_dose_down"] = (insulin == "Down").to_numpy(dtype=float)
    out["diabetes_medication_changed"] = (_text(f["change"]) == "Ch").to_numpy(dtype=float)
    out["diabetes_medication_prescribed"] = (_text(f["diabetesMed"]) == "Yes").to_numpy(dtype=float)
    a1c, glu = _text(f["A1Cresult"]), _text(f["max_glu_serum"])
    out["hba1c_tested"] = a1c.isin([">7", ">8", "Norm"]).to_numpy(dtype=float)
    out["hba1c_above_7_pct"] = a1c.isin([">7", ">8"]).to_numpy(dtype=float)
    out["hba1c_above_8_pct"] = (a1c == ">8").to_numpy(dtype=float)
    out["glucose_tested"] = glu.isin([">200", ">300", "Norm"]).to_numpy(dtype=float)
    out["glucose_above_200_mg_dl"] = glu.isin([">200", ">300"]).to_numpy(dtype=float)
    out["glucose_above_300_mg_dl"] = (glu == ">300").to_numpy(dtype=float)
    result = pd.DataFrame(out, index=f.index)
    return result[list(FEATURES)].astype(float)


def eligible(frame: pd.DataFrame) -> pd.Series[Any]:
    """Encounters that can be readmitted: not ended by death or hospice."""
    return ~_num(frame["discharge_disposition_id"]).isin(list(EXPIRED_OR_HOSPICE))


def lace_like_score(frame: pd.DataFrame) -> pd.Series[Any]:
    """LACE (van Walraven 2010) from the record: Length of stay points, Acuity (emergent
    admission: 3), Comorbidity (Charlson over the 3 coded diagnoses: 0-3 as is, ≥ 4 → 5), ED
    visits (the year before, not 6 months; capped at 4). A baseline, not a model input."""
    los = _num(frame["time_in_hospital"])
    length = np.select(
        [los < 1, los == 1, los == 2, los == 3, los <= 6, los <= 13], [0, 1, 2, 3, 4, 5], 7
    )
    adm_type, adm_src = _num(frame["admission_type_id"]), _num(frame["admission_source_id"])
    acute = (adm_type.isin([1, 2, 7]) | (adm_src == 7)).to_numpy(dtype=float) * 3
    ch = charlson_index(comorbidities(frame)).to_numpy()
    comorbidity = np.where(ch >= 4, 5, ch)
    ed = np.minimum(_num(frame["number_emergency"]).fillna(0).to_numpy(), 4)
    return pd.Series(length + acute + comorbidity + ed, index=frame.index, dtype=float)
