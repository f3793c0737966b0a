"""The PhysioNet/CinC 2012 format mapped onto wardflow's canonical records: which parameter is which
field, the unit it comes in and the factor to the field's unit, and the verdict on every input
row (vectorised over any number of stays: `classify`).

The input is one row per line of the challenge's `Time,Parameter,Value` files (`record_id`,
`minute` since ICU admission, `parameter`, `value`). Each row ends as exactly one OUTCOME:

- `published`: its value is carried by a canonical record (a vitals/labs field at that minute);
- `descriptor`: a general descriptor at minute 0 (RecordID, Age, Gender, Height, ICUType): the
  stay's identity (tokenised), its ICU unit (the admission event) and registration data
  (`descriptors`); Weight is charted like any other weight (`weight_kg`);
- `missing`: the challenge's missing-value marker -1 (descriptors, DiasABP, NIDiasABP, Weight);
- `superseded`: a non-invasive blood pressure at a minute that also has the invasive one (the
  arterial line is preferred: it is what the challenge's MAP/SysABP/DiasABP are);
- `duplicate`: the same parameter again at the same minute with the same value;
- `rejected`: bad input, dead-lettered with a reason code (`REJECT_CODES`) and reason.

Units: the challenge documents each parameter's unit; the fields' names carry theirs. One is
converted: magnesium, documented as mmol/L but recorded in mg/dL (a median of 2.0, the MIMIC-II
unit; 2.0 mmol/L would be severe hypermagnesaemia), becomes mmol/L (× 0.4114). A value outside
its field's `wardflow.range` (the schema's plausible bounds, so the codec would dead-letter the
whole record) is rejected alone, so its minute's other values still publish; e.g. the 0 °F
(-17.8) temperatures and pH 735 (a unit slip, not guessed at) are rejected. Several urine
outputs charted at one minute are summed (each is a volume); another parameter charted twice at
one minute keeps the first line's value and rejects a different later one.

Outcomes (`Length_of_stay`, `Survival`, `In-hospital_death`, SAPS-I, SOFA) are in separate files
that nothing here reads.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from schemas import topics
from schemas.topics import Topic

VITALS = topics.VITALS_OBSERVATION
LABS = topics.LABS_RESULT
MISSING = -1.0  # the challenge's missing-value marker
MISSING_MARKED = frozenset({"Age", "Gender", "Height", "ICUType", "Weight", "DiasABP", "NIDiasABP"})
DESCRIPTORS = ("RecordID", "Age", "Gender", "Height", "ICUType")  # at minute 0; Weight is charted
DESCRIPTOR_RANGE = {"Age": (0.0, 120.0), "Height": (50.0, 250.0)}  # cm; Gender 0/1, ICUType 1-4
ICU_UNITS = {1: "CCU", 2: "CSRU", 3: "MICU", 4: "SICU"}  # coronary, cardiac surgery, medical, surg.
UNKNOWN_UNIT = "ICU"
MG_DL_TO_MMOL_L_MAGNESIUM = 1 / 2.4305  # 24.305 g/mol: 1 mg/dL = 10 mg/L = 0.4114 mmol/L

OUTCOMES = ("published", "descriptor", "missing", "superseded", "duplicate", "rejected")
REJECT_CODES = (
    "unknown_parameter",  # not one of the challenge's parameters
    "descriptor_after_admission",  # a general descriptor at a minute other than 0
    "not_a_number",
    "out_of_range",  # outside the field's wardflow.range (or the descriptor's)
    "bad_value",  # GCS not a whole number, MechVent not 0/1, Gender not 0/1, ICUType not 1-4
    "conflicting_duplicate",  # charted again at the same minute with another value
)


@dataclass(frozen=True)
class Param:
    """How one time-series parameter maps: onto `field` of `topic`'s records, from `unit`, with
    canonical value = value × `factor`. At one minute the lowest `rank` of the parameters of a
    field wins; `combine` says what several values of one parameter at one minute make."""

    topic: Topic
    field: str
    unit: str
    factor: float = 1.0
    rank: int = 0
    combine: str = "first"  # or "sum"


PARAMS: dict[str, Param] = {
    # charted at the bedside: vitals.observation.v1
    "HR": Param(VITALS, "heart_rate_bpm", "bpm"),
    "RespRate": Param(VITALS, "resp_rate_per_min", "breaths/min"),
    "Temp": Param(VITALS, "temp_c", "°C"),
    "SysABP": Param(VITALS, "sbp_mmhg", "mmHg (arterial line)"),
    "NISysABP": Param(VITALS, "sbp_mmhg", "mmHg (cuff)", rank=1),
    "DiasABP": Param(VITALS, "dbp_mmhg", "mmHg (arterial line)"),
    "NIDiasABP": Param(VITALS, "dbp_mmhg", "mmHg (cuff)", rank=1),
    "MAP": Param(VITALS, "map_mmhg", "mmHg (arterial line)"),
    "NIMAP": Param(VITALS, "map_mmhg", "mmHg (cuff)", rank=1),
    "FiO2": Param(VITALS, "fio2_fraction", "fraction"),
    "GCS": Param(VITALS, "gcs_total", "score 3-15"),
    "MechVent": Param(VITALS, "mechanical_ventilation", "1 = ventilated"),
    "Urine": Param(VITALS, "urine_output_ml", "mL since the last charting", combine="sum"),
    "Weight": Param(VITALS, "weight_kg", "kg"),
    # laboratory: labs.result.v1
    "Albumin": Param(LABS, "albumin_g_dl", "g/dL"),
    "ALP": Param(LABS, "alp_iu_l", "IU/L"),
    "ALT": Param(LABS, "alt_iu_l", "IU/L"),
    "AST": Param(LABS, "ast_iu_l", "IU/L"),
    "Bilirubin": Param(LABS, "bilirubin_total_mg_dl", "mg/dL"),
    "BUN": Param(LABS, "bun_mg_dl", "mg/dL"),
    "Cholesterol": Param(LABS, "cholesterol_mg_dl", "mg/dL"),
    "Creatinine": Param(LABS, "creatinine_mg_dl", "mg/dL"),
    "Glucose": Param(LABS, "glucose_mg_dl", "mg/dL"),
    "HCO3": Param(LABS, "hco3_mmol_l", "mmol/L"),
    "HCT": Param(LABS, "hematocrit_pct", "%"),
    "K": Param(LABS, "potassium_mmol_l", "mEq/L"),
    "Lactate": Param(LABS, "lactate_mmol_l", "mmol/L"),
    "Mg": Param(LABS, "magnesium_mmol_l", "mg/dL", factor=MG_DL_TO_MMOL_L_MAGNESIUM),
    "Na": Param(LABS, "sodium_mmol_l", "mEq/L"),
    "PaCO2": Param(LABS, "paco2_mmhg", "mmHg"),
    "PaO2": Param(LABS, "pao2_mmhg", "mmHg"),
    "pH": Param(LABS, "ph", "pH"),
    "Platelets": Param(LABS, "platelets_10e9_l", "cells/nL"),
    "SaO2": Param(LABS, "sao2_pct", "%"),
    "TroponinI": Param(LABS, "troponin_i_ng_ml", "ng/mL"),
    "TroponinT": Param(LABS, "troponin_t_ug_l", "µg/L"),
    "WBC": Param(LABS, "wbc_10e9_l", "cells/nL"),
}
INTEGER_FIELDS = frozenset({"gcs_total"})
BOOLEAN_FIELDS = frozenset({"mechanical_ventilation"})
COLUMNS = ("record_id", "minute", "parameter", "value")


def _range(p: Param) -> tuple[float, float] | None:
    return p.topic.schema.field(p.field).value_range


def _table(names: np.ndarray[Any, Any], of: Any, default: Any, dtype: Any) -> np.ndarray[Any, Any]:
    """Per parameter code: of(PARAMS[name]), or `default` for a name that is not a parameter."""
    return np.array([of(PARAMS[n]) if n in PARAMS else default for n in names], dtype=dtype)


def _exact(values: pd.Series[Any]) -> np.ndarray[Any, Any]:
    """The decimals the files held (0.21, not the float32 0.2099999934 the parquet stores),
    as float64: each distinct float32 at its shortest decimal."""
    raw = values.to_numpy(dtype=np.float32)
    distinct, inverse = np.unique(raw, return_inverse=True)
    decimals = np.array([float(str(x)) for x in distinct], dtype=np.float64)
    out: np.ndarray[Any, Any] = decimals[inverse.reshape(-1)]
    return out


def classify(obs: pd.DataFrame) -> pd.DataFrame:
    """Every input row (index kept, in input order) with its verdict: `topic` and `field` it maps
    onto, `canonical` (the value in the field's unit), `outcome` (OUTCOMES), and for a rejected
    row `reason_code` (REJECT_CODES) and `reason`. Pure and vectorised (over parameter codes)."""
    cat = pd.Categorical(obs["parameter"])
    names_t = np.append(np.asarray(cat.categories, dtype=object), "<none>")
    code = np.where(cat.codes < 0, len(names_t) - 1, cat.codes).astype(np.int64)
    fields = sorted({p.field for p in PARAMS.values()})
    lo_t = _table(names_t, lambda p: (_range(p) or (np.nan, np.nan))[0], np.nan, np.float64)
    hi_t = _table(names_t, lambda p: (_range(p) or (np.nan, np.nan))[1], np.nan, np.float64)
    value = _exact(obs["value"])
    minute = obs["minute"].to_numpy(dtype=np.int64)
    canonical = value * _table(names_t, lambda p: p.factor, 1.0, np.float64)[code]
    field_t = _table(names_t, lambda p: p.field, None, object)
    names, field, lo, hi = names_t[code], field_t[code], lo_t[code], hi_t[code]
    outcome = np.zeros(len(obs), dtype=np.int8)  # 0: undecided, else 1 + index in OUTCOMES
    reason_code = np.full(len(obs), None, dtype=object)
    reason = np.full(len(obs), None, dtype=object)

    def decide(mask: np.ndarray[Any, Any], what: str, why: str = "", say: Any = None) -> None:
        """Rows of `mask` not decided yet get `what`; a rejection its code and, from `say(i)`
        (a row position), its reason: formatted for these rows only."""
        idx = np.flatnonzero(mask & (outcome == 0))
        outcome[idx] = 1 + OUTCOMES.index(what)
        if why:
            reason_code[idx] = why
            reason[idx] = [f"{names[i]}={value[i]:g}{say(i)}" for i in idx]

    def named(name: str) -> np.ndarray[Any, Any]:
        return np.asarray(names_t == name)[code]

    is_desc = np.isin(names_t, DESCRIPTORS)[code]
    nan = np.isnan(value)
    decide(is_desc & (minute != 0), "rejected", "descriptor_after_admission",
           lambda i: " is a general descriptor, at minute 0 only")  # fmt: skip
    decide(np.isin(names_t, list(MISSING_MARKED))[code] & (value == MISSING), "missing")
    decide(is_desc & nan, "rejected", "not_a_number", lambda i: " is NaN")
    for name, (d_lo, d_hi) in DESCRIPTOR_RANGE.items():
        bad = named(name) & ~((value >= d_lo) & (value <= d_hi))
        decide(
            bad, "rejected", "out_of_range", lambda i, a=d_lo, b=d_hi: f" outside [{a:g}, {b:g}]"
        )
    decide(named("Gender") & ~np.isin(value, (0.0, 1.0)), "rejected", "bad_value",
           lambda i: " is not 0 (female) or 1 (male)")  # fmt: skip
    decide(named("ICUType") & ~np.isin(value, list(ICU_UNITS)), "rejected", "bad_value",
           lambda i: f" is not one of {sorted(ICU_UNITS)}")  # fmt: skip
    decide(is_desc, "descriptor")
    known = _table(names_t, lambda p: True, False, bool)[code]
    decide(~known, "rejected", "unknown_parameter", lambda i: " is not a PhysioNet 2012 parameter")
    decide(nan, "rejected", "not_a_number", lambda i: " is NaN")
    whole = _table(names_t, lambda p: p.field in INTEGER_FIELDS, False, bool)[code]
    decide(whole & (canonical != np.round(canonical)), "rejected", "bad_value",
           lambda i: " is not a whole number")  # fmt: skip
    flag = _table(names_t, lambda p: p.field in BOOLEAN_FIELDS, False, bool)[code]
    decide(flag & ~np.isin(canonical, (0.0, 1.0)), "rejected", "bad_value",
           lambda i: " is not 0 or 1")  # fmt: skip
    decide(~np.isnan(lo) & ~((canonical >= lo) & (canonical <= hi)), "rejected", "out_of_range",
           lambda i: f" → {field[i]}={canonical[i]:g} outside [{lo[i]:g}, {hi[i]:g}]")  # fmt: skip

    # One value per stay, minute and field among the rows still undecided (valid time series).
    fcode = np.array([fields.index(f) if f is not None else -1 for f in field_t])[code]
    rid = obs["record_id"].to_numpy(dtype=np.int64)
    key = (rid * (int(minute.max(initial=0)) + 1) + minute) * len(fields) + fcode
    rank = _table(names_t, lambda p: p.rank, 0, np.int64)[code]
    live = np.flatnonzero(outcome == 0)
    best = pd.Series(rank[live]).groupby(key[live]).transform("min").to_numpy()
    beaten = np.zeros(len(obs), dtype=bool)
    beaten[live[rank[live] > best]] = True
    decide(beaten, "superseded")
    summed = _table(names_t, lambda p: p.combine == "sum", False, bool)[code]
    live = np.flatnonzero((outcome == 0) & summed)
    total = np.full(len(obs), np.nan)
    total[live] = pd.Series(canonical[live]).groupby(key[live]).transform("sum").to_numpy()
    decide(summed & ~((total >= lo) & (total <= hi)), "rejected", "out_of_range",
           lambda i: f": outputs charted at this minute sum to {total[i]:g}, outside "
                     f"[{lo[i]:g}, {hi[i]:g}]")  # fmt: skip
    canonical = np.where(summed & (outcome == 0), total, canonical)
    decide(summed, "published")
    live = np.flatnonzero(outcome == 0)
    first = np.full(len(obs), np.nan)
    first[live] = pd.Series(canonical[live]).groupby(key[live]).transform("first").to_numpy()
    later = np.zeros(len(obs), dtype=bool)
    later[live] = pd.Series(key[live]).duplicated(keep="first").to_numpy()
    decide(~later, "published")
    decide(later & (canonical == first), "duplicate")
    decide(later, "rejected", "conflicting_duplicate",
           lambda i: f" charted again at minute {minute[i]}, where {first[i]:g} was published"
           )  # fmt: skip
    if (outcome == 0).any():
        raise AssertionError("an input row was left without an outcome")
    return pd.DataFrame(
        {
            "record_id": obs["record_id"].to_numpy(),
            "minute": minute,
            "parameter": names,
            "value": value,
            "topic": _table(names_t, lambda p: p.topic.name, None, object)[code],
            "field": field,
            "canonical": canonical,
            "outcome": np.asarray(("", *OUTCOMES), dtype=object)[outcome],
            "reason_code": reason_code,
            "reason": reason,
        },
        index=obs.index,
    )


def descriptors(verdicts: pd.DataFrame) -> pd.DataFrame:
    """Per stay (index record_id): age_years, female (1.0/0.0), height_cm and icu_type from the
    accepted general descriptors; NaN where missing (-1) or rejected, never -1."""
    d = verdicts[verdicts["outcome"] == "descriptor"]
    wide = d.pivot_table(index="record_id", columns="parameter", values="value", aggfunc="first")
    ids = np.sort(verdicts["record_id"].unique())
    wide = wide.reindex(index=ids, columns=list(DESCRIPTORS))
    return pd.DataFrame(
        {
            "age_years": wide["Age"],
            "female": 1.0 - wide["Gender"],  # Gender 0 = female, 1 = male; NaN stays NaN
            "height_cm": wide["Height"],
            "icu_type": wide["ICUType"],
        },
        index=pd.Index(ids, name="record_id"),
    )


def unit_of(icu_type: float) -> str:
    """The ICU unit id of an ICUType (UNKNOWN_UNIT when missing)."""
    if np.isnan(icu_type):
        return UNKNOWN_UNIT
    return ICU_UNITS.get(int(icu_type), UNKNOWN_UNIT)
