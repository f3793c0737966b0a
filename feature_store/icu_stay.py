"""ICU stay features (PhysioNet/CinC 2012 layout): one definition for training and the stream.

The contract:

- Input: observations `record_id`, `minute` (since ICU admission), `parameter` (the 2012
  challenge's name), `value`. The descriptors (`Age`, `Gender`, `Height`, `ICUType`, `Weight`)
  are the rows at minute 0.
- Cleaning (`clean_series`), the same everywhere: a value outside its parameter's plausible
  range (`PARAMETERS`) is dropped, and with it the `-1` codes for missing; two unit slips are
  repaired first (`pH` written ×100 or ×10, `Temp` in °F); rows repeating a (stay, minute,
  parameter) time stamp are merged into their mean.
- A stay's features at hour `t` use only its observations with `minute ≤ 60·t` (causal). They are
  aggregates that a Flink SQL `OVER (PARTITION BY stay ORDER BY time ROWS BETWEEN UNBOUNDED
  PRECEDING AND CURRENT ROW)` window computes per (stay, parameter), with `t_h` the
  observation's hours since admission:

  | aggregate | name suffix | Flink SQL |
  |---|---|---|
  | `min`, `max`, `mean` | `_min` … | `MIN(v)`, `MAX(v)`, `AVG(v)` |
  | `first`, `last` | `_first`, `_last` | `FIRST_VALUE(v)`, `LAST_VALUE(v)` |
  | `count` | `_count_per_h` | `COUNT(v) / t` (the measurement process, per hour so far) |
  | `sum`, `per_h` | `_sum`, `_per_h` | `SUM(v)`, `SUM(v) / t` |
  | `slope` | `_slope_per_h` | least squares of v on t_h: `(n·Σtv − Σt·Σv) / (n·Σt² − (Σt)²)` |
  | `since_last` | `_hours_since_last` | `t − MAX(t_h)` |
  | `first_at` | `_first_at_h` | `MIN(t_h)` |

  `t` in a divisor is at least 1 h. A parameter not measured yet gives NaN (count, sum and
  per-hour values 0); a slope needs two distinct times.
- Static descriptors: `age_years`, `female` (1 female, 0 male), `height_cm`, `weight_kg` (the
  admission weight), `icu_type_*` one-hot; and `hours_since_admission` (= t).
- `FEATURES` is the models' ONNX input order; `UNITS` gives every feature's unit.

`stay_features(observations, at_hours)` computes them with pandas (one row per stay per hour).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final, NamedTuple

import numpy as np
import pandas as pd


def plausible(
    value: np.ndarray[Any, Any], low: np.ndarray[Any, Any], high: np.ndarray[Any, Any]
) -> np.ndarray[Any, Any]:
    """Whether each value is inside its parameter's range (inclusive), compared as the topics
    carry values, 32-bit floats, on both sides: the catalog scoring job's test is the same
    (jobs/model_scoring._value_sql), so a value at a bound is kept or dropped alike in training
    and in the stream (a FLOAT holds 0.21 as 0.2099999934: training, comparing it with the
    64-bit bound, dropped it, and the stream, with a widened bound, kept it)."""
    v = value.astype(np.float32)
    inside = (v >= low.astype(np.float32)) & (v <= high.astype(np.float32))
    return np.asarray(inside & np.isfinite(value))


class Parameter(NamedTuple):
    name: str  # canonical, with its unit
    source: str  # the 2012 challenge's parameter name
    low: float  # plausible range (inclusive); outside it a value is dropped
    high: float
    unit: str
    aggregates: tuple[str, ...]


VITAL: Final = ("min", "max", "mean", "first", "last", "count", "slope")
LAB: Final = ("min", "max", "mean", "first", "last", "count", "slope", "since_last")
RARE_LAB: Final = ("min", "max", "last", "count")

PARAMETERS: Final = (
    Parameter("heart_rate_bpm", "HR", 20, 250, "beats/min", VITAL),
    Parameter("map_mmhg", "MAP", 20, 200, "mmHg", VITAL),
    Parameter("sbp_mmhg", "SysABP", 40, 280, "mmHg", VITAL),
    Parameter("dbp_mmhg", "DiasABP", 10, 200, "mmHg", VITAL),
    Parameter("resp_rate_per_min", "RespRate", 2, 80, "breaths/min", VITAL),
    Parameter("temp_c", "Temp", 25, 45, "°C", VITAL),
    Parameter("gcs_total", "GCS", 3, 15, "points (3-15)", (*VITAL, "since_last")),
    # FiO2 above room air: PhysioNet 2012 charts FiO2 for patients on oxygen and leaves room air
    # uncharted (6 of set A's 32,390 FiO2 rows are 0.21, which training dropped), so the models
    # never learnt a charted 0.21: a ward feed that charts room air would give them an FiO2
    # count only patients on oxygen had (it moved set B stays' mortality scores)
    Parameter("fio2_fraction", "FiO2", 0.22, 1.0, "fraction (0.21-1)", VITAL),
    Parameter("sao2_pct", "SaO2", 30, 100, "%", LAB),
    Parameter(
        "urine_output_ml",
        "Urine",
        0,
        5000,
        "mL",
        ("min", "max", "mean", "last", "count", "sum", "per_h", "slope"),
    ),
    Parameter("mech_vent", "MechVent", 0, 1, "1 ventilated", ("count", "first_at", "since_last")),
    Parameter("weight_kg_series", "Weight", 20, 300, "kg", ("first", "last", "count")),
    Parameter("bun_mg_dl", "BUN", 1, 250, "mg/dL", LAB),
    Parameter("creatinine_mg_dl", "Creatinine", 0.1, 25, "mg/dL", LAB),
    Parameter("hco3_mmol_l", "HCO3", 5, 60, "mmol/L", LAB),
    Parameter("hematocrit_pct", "HCT", 10, 70, "%", LAB),
    Parameter("potassium_mmol_l", "K", 1.5, 10, "mmol/L", LAB),
    Parameter("sodium_mmol_l", "Na", 100, 190, "mmol/L", LAB),
    Parameter("magnesium_mmol_l", "Mg", 0.3, 10, "mmol/L", LAB),
    Parameter("glucose_mg_dl", "Glucose", 10, 1500, "mg/dL", LAB),
    Parameter("platelets_10e9_l", "Platelets", 1, 2000, "10^9/L", LAB),
    Parameter("wbc_10e9_l", "WBC", 0.1, 200, "10^9/L", LAB),
    Parameter("lactate_mmol_l", "Lactate", 0.2, 30, "mmol/L", LAB),
    Parameter("ph", "pH", 6.5, 8.0, "pH units", LAB),
    Parameter("paco2_mmhg", "PaCO2", 5, 150, "mmHg", LAB),
    Parameter("pao2_mmhg", "PaO2", 20, 700, "mmHg", LAB),
    Parameter("bilirubin_total_mg_dl", "Bilirubin", 0.0, 80, "mg/dL", RARE_LAB),
    Parameter("albumin_g_dl", "Albumin", 0.5, 7, "g/dL", RARE_LAB),
    Parameter("alp_iu_l", "ALP", 1, 5000, "IU/L", RARE_LAB),
    Parameter("alt_iu_l", "ALT", 1, 20000, "IU/L", RARE_LAB),
    Parameter("ast_iu_l", "AST", 1, 20000, "IU/L", RARE_LAB),
    Parameter("troponin_i_ng_ml", "TroponinI", 0.0, 100, "ng/mL", RARE_LAB),
    Parameter("troponin_t_ug_l", "TroponinT", 0.0, 50, "µg/L", RARE_LAB),
    Parameter("cholesterol_mg_dl", "Cholesterol", 20, 600, "mg/dL", ("last",)),
)
BY_SOURCE: Final = {p.source: p for p in PARAMETERS}
# Cuff (non-invasive) pressures are the same parameter as the arterial line's: a bedside feed
# charts one blood pressure, and the canonical topics carry one (`sbp_mmhg`, `dbp_mmhg`,
# `map_mmhg`; jobs/feeds/physionet2012.py). The arterial value wins where both are charted in
# the same minute, else the cuff's is used.
CUFF: Final = {"NISysABP": "SysABP", "NIDiasABP": "DiasABP", "NIMAP": "MAP"}

# Descriptors (minute 0): source, plausible range; -1 (missing) falls outside every range.
DESCRIPTORS: Final = {
    "Age": (15.0, 120.0),
    "Gender": (0.0, 1.0),
    "Height": (100.0, 250.0),
    "ICUType": (1.0, 4.0),
    "Weight": (20.0, 300.0),
}
ICU_TYPES: Final = {1: "coronary_care", 2: "cardiac_surgery", 3: "medical", 4: "surgical"}
STATIC_FEATURES: Final = (
    "age_years",
    "female",
    "height_cm",
    "weight_kg",
    *(f"icu_type_{t}" for t in ICU_TYPES.values()),
)

SUFFIX: Final = {
    "min": "min",
    "max": "max",
    "mean": "mean",
    "first": "first",
    "last": "last",
    "count": "count_per_h",
    "sum": "sum",
    "per_h": "per_h",
    "slope": "slope_per_h",
    "since_last": "hours_since_last",
    "first_at": "first_at_h",
}


def feature_name(p: Parameter, aggregate: str) -> str:
    return f"{p.name}_{SUFFIX[aggregate]}"


def _unit(p: Parameter, aggregate: str) -> str:
    if aggregate == "count":
        return "measurements/h"
    if aggregate in ("since_last", "first_at"):
        return "h"
    if aggregate == "slope":
        return f"{p.unit} per h"
    if aggregate == "per_h":
        return f"{p.unit}/h"
    return p.unit


SERIES_FEATURES: Final = tuple(feature_name(p, a) for p in PARAMETERS for a in p.aggregates)
FEATURES: Final = ("hours_since_admission", *STATIC_FEATURES, *SERIES_FEATURES)
UNITS: Final = {
    "hours_since_admission": "h",
    "age_years": "years",
    "female": "1 female, 0 male",
    "height_cm": "cm",
    "weight_kg": "kg",
    **{f"icu_type_{t}": "1 this ICU type" for t in ICU_TYPES.values()},
    **{feature_name(p, a): _unit(p, a) for p in PARAMETERS for a in p.aggregates},
}


def _merge_cuff(observations: pd.DataFrame) -> pd.DataFrame:
    """Cuff pressures as their arterial parameter, where no plausible arterial value of the
    same stay and minute exists (a -1 "missing" arterial value does not hide the cuff's)."""
    cuff = observations["parameter"].isin(list(CUFF))
    if not cuff.any():
        return observations
    art = observations[observations["parameter"].isin(list(CUFF.values()))]
    art = art[art["value"] > 0]
    have = pd.MultiIndex.from_frame(art[["record_id", "minute", "parameter"]])
    c = observations[cuff].assign(parameter=observations.loc[cuff, "parameter"].map(CUFF))
    shadowed = pd.MultiIndex.from_frame(c[["record_id", "minute", "parameter"]]).isin(have)
    return pd.concat([observations[~cuff], c[~shadowed]], ignore_index=True)


def clean_series(observations: pd.DataFrame) -> pd.DataFrame:
    """The time series rows (descriptors excluded, `Weight` kept as a series), unit slips
    repaired, implausible values dropped, repeated time stamps merged (mean); sorted by stay,
    minute. Columns: record_id, minute, parameter (canonical name), value (float64)."""
    obs = _merge_cuff(observations)
    obs = obs[obs["parameter"].isin(list(BY_SOURCE))]
    if "Weight" in BY_SOURCE:  # the admission weight is a descriptor, later ones a series
        obs = obs[~((obs["parameter"] == "Weight") & (obs["minute"] == 0))]
    value = obs["value"].to_numpy(dtype=np.float64).copy()
    source = obs["parameter"].to_numpy()
    ph = source == "pH"
    value[ph & (value >= 650) & (value <= 800)] /= 100.0  # pH written ×100
    value[ph & (value >= 65) & (value <= 80)] /= 10.0  # pH written ×10
    temp = source == "Temp"
    slip = temp & (value >= 77) & (value <= 113)  # °F
    value[slip] = (value[slip] - 32.0) * 5.0 / 9.0
    low = obs["parameter"].map({p.source: p.low for p in PARAMETERS}).to_numpy(dtype=np.float64)
    high = obs["parameter"].map({p.source: p.high for p in PARAMETERS}).to_numpy(dtype=np.float64)
    keep = plausible(value, low, high)
    out = pd.DataFrame(
        {
            "record_id": obs["record_id"].to_numpy()[keep],
            "minute": obs["minute"].to_numpy(dtype=np.int32)[keep],
            "parameter": obs["parameter"].map({p.source: p.name for p in PARAMETERS})[keep],
            "value": value[keep],
        }
    )
    return (
        out.groupby(["record_id", "minute", "parameter"], sort=True, observed=True)["value"]
        .mean()
        .reset_index()
    )


def descriptors(observations: pd.DataFrame) -> pd.DataFrame:
    """The static features per record_id (index), implausible or -1 values as NaN."""
    d = observations[(observations["minute"] == 0) & observations["parameter"].isin(DESCRIPTORS)]
    wide = d.pivot_table(index="record_id", columns="parameter", values="value", aggfunc="first")
    wide = wide.reindex(columns=list(DESCRIPTORS)).astype(np.float64)
    for name, (low, high) in DESCRIPTORS.items():
        wide[name] = wide[name].where((wide[name] >= low) & (wide[name] <= high))
    out = pd.DataFrame(index=wide.index)
    out["age_years"] = wide["Age"]
    out["female"] = 1.0 - wide["Gender"]
    out["height_cm"] = wide["Height"]
    out["weight_kg"] = wide["Weight"]
    for code, name in ICU_TYPES.items():
        out[f"icu_type_{name}"] = np.where(wide["ICUType"].isna(), np.nan, wide["ICUType"] == code)
    return out.astype(np.float64)


def _aggregate(series: pd.DataFrame, hours: float) -> pd.DataFrame:
    """Every aggregate of every parameter at `hours` (wide: one row per stay)."""
    s = series[series["minute"] <= hours * 60.0 + 1e-6]  # hours × 60 may round below a minute
    t = s["minute"].to_numpy(dtype=np.float64) / 60.0
    v = s["value"].to_numpy(dtype=np.float64)
    frame = pd.DataFrame(
        {
            "record_id": s["record_id"].to_numpy(),
            "parameter": s["parameter"].to_numpy(),
            "v": v,
            "t": t,
            "tv": t * v,
            "tt": t * t,
        }
    )
    g = frame.groupby(["record_id", "parameter"], sort=False)
    a = g.agg(
        min=("v", "min"),
        max=("v", "max"),
        sum=("v", "sum"),
        first=("v", "first"),
        last=("v", "last"),
        count=("v", "size"),
        st=("t", "sum"),
        stv=("tv", "sum"),
        stt=("tt", "sum"),
        first_t=("t", "min"),
        last_t=("t", "max"),
    )
    n = a["count"].to_numpy(dtype=np.float64)
    denominator = n * a["stt"] - a["st"] ** 2
    numerator = n * a["stv"] - a["st"] * a["sum"]
    ok = (n >= 2) & (denominator > 1e-9 * np.maximum(n * a["stt"], 1.0))
    a["slope"] = np.where(ok, numerator / denominator.where(ok, 1.0), np.nan)
    a["mean"] = a["sum"] / n
    a["per_h"] = a["sum"] / max(hours, 1.0)
    a["count"] = n / max(hours, 1.0)
    a["since_last"] = hours - a["last_t"]
    a["first_at"] = a["first_t"]
    wide = pd.DataFrame(a.drop(columns=["st", "stv", "stt", "first_t", "last_t"]).unstack())
    wide.columns = pd.Index([f"{col[1]}|{col[0]}" for col in wide.columns])
    return wide


def stay_features(observations: pd.DataFrame, at_hours: Iterable[float]) -> pd.DataFrame:
    """One row per record_id per hour in `at_hours`: `record_id` then `FEATURES`, each from the
    stay's observations with minute ≤ 60·hour only. `observations` is raw (cleaned here)."""
    series = clean_series(observations)
    static = descriptors(observations)
    stays = np.union1d(observations["record_id"].unique(), static.index.to_numpy())
    static = static.reindex(stays)
    frames = []
    for hours in at_hours:
        wide = _aggregate(series, float(hours)).reindex(stays)
        columns: dict[str, np.ndarray[Any, Any]] = {}
        for p in PARAMETERS:
            for agg in p.aggregates:
                key = f"{p.name}|{agg}"
                col = (
                    wide[key].to_numpy(dtype=np.float64)
                    if key in wide
                    else np.full(len(stays), np.nan)
                )
                if agg in ("count", "sum", "per_h"):
                    col = np.nan_to_num(col, nan=0.0)
                columns[feature_name(p, agg)] = col
        part = pd.DataFrame(columns, index=stays)
        part.insert(0, "hours_since_admission", float(hours))
        for i, name in enumerate(STATIC_FEATURES):
            part.insert(1 + i, name, static[name].to_numpy())
        part.index.name = "record_id"
        frames.append(part.reset_index())
    out = pd.concat(frames, ignore_index=True)
    return out[["record_id", *FEATURES]]
