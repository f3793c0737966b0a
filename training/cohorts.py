"""Further hospital systems in the PhysioNet 2019 format: the YAIB sepsis demo cohorts.

`../shared/data/yaib_demo_sepsis/` holds the eICU demo (US multi-centre, 896 ICU stays, 63 septic)
and the MIMIC-III demo (Beth Israel Deaconess, 115 stays, 1 septic) cohorts as YAIB built them
with ricu: hourly values since ICU admission and a Sepsis-3 label per hour (see its README for
license and citations). `yaib_to_physionet` converts one into the PhysioNet/CinC 2019 layout
(one row per patient-hour, the challenge's column names and units) so that the model, the rules
and `training.evaluate` read it like set A. The mapping, concept by concept:

| YAIB (ricu concept, unit) | PhysioNet 2019 column | conversion |
|---|---|---|
| hr, o2sat, temp (°C), sbp, dbp, map, resp | HR, O2Sat, Temp, SBP, DBP, MAP, Resp | none |
| fio2 (%) | FiO2 (fraction) | ÷ 100 |
| be, bicar, ph, pco2 | BaseExcess, HCO3, pH, PaCO2 | none |
| ast, bun, alp, ca, cl, crea | AST, BUN, Alkalinephos, Calcium, Chloride, Creatinine | none |
| bili_dir, bili, glu | Bilirubin_direct, Bilirubin_total, Glucose | none |
| lact, mg | Lactate, Magnesium | none |
| phos, k | Phosphate, Potassium | none (ricu's units are the challenge's) |
| hgb, ptt, wbc, fgn, plt | Hgb, PTT, WBC, Fibrinogen, Platelets | none |
| age, sex | Age, Gender (1 male, 0 female) | |
| time (h since ICU admission) | ICULOS (hours, from 1) | + 1 |
| label | SepsisLabel | truncated, below |

Not in YAIB: EtCO2, SaO2, TroponinI (ricu's `tnt` is troponin T), Hct, HospAdmTime, Unit1/Unit2
(left empty: the unit is unknown). Labels: in both data sets the first positive hour is 6 h
before onset (YAIB, and the challenge's SepsisLabel); YAIB keeps labelling up to 6 h after onset
and ends the stay there, the challenge data end 3 h after onset. So a septic stay is cut at
onset + 3 h here, as in the challenge, and metrics mean the same on both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from training.metrics import DT_LATE, DT_OPTIMAL

SAME = {
    "hr": "HR",
    "o2sat": "O2Sat",
    "temp": "Temp",
    "sbp": "SBP",
    "dbp": "DBP",
    "map": "MAP",
    "resp": "Resp",
    "be": "BaseExcess",
    "bicar": "HCO3",
    "ph": "pH",
    "pco2": "PaCO2",
    "ast": "AST",
    "bun": "BUN",
    "alp": "Alkalinephos",
    "ca": "Calcium",
    "cl": "Chloride",
    "crea": "Creatinine",
    "bili_dir": "Bilirubin_direct",
    "bili": "Bilirubin_total",
    "glu": "Glucose",
    "lact": "Lactate",
    "mg": "Magnesium",
    "phos": "Phosphate",
    "k": "Potassium",
    "hgb": "Hgb",
    "ptt": "PTT",
    "wbc": "WBC",
    "fgn": "Fibrinogen",
    "plt": "Platelets",
}
SCALED = {"fio2": ("FiO2", 0.01)}
ABSENT = ("EtCO2", "SaO2", "TroponinI", "Hct", "HospAdmTime", "Unit1", "Unit2")
COHORTS = {"eicu_demo": "eICU demo", "mimic_iii_demo": "MIMIC-III demo"}


def yaib_to_physionet(folder: Path, prefix: str = "") -> pd.DataFrame:
    """A YAIB cohort folder (dyn, outc, sta parquet) as a PhysioNet 2019 format frame with a
    `patient_id` column (`prefix` + stay id); see the module docstring for the mapping."""
    dyn = pd.read_parquet(folder / "dyn.parquet")
    outc = pd.read_parquet(folder / "outc.parquet")
    sta = pd.read_parquet(folder / "sta.parquet").set_index("stay_id")
    frame = dyn.merge(outc, on=["stay_id", "time"], how="left")
    out = pd.DataFrame({"patient_id": prefix + frame["stay_id"].astype(str)})
    hours = frame["time"].dt.total_seconds() / 3600
    out["ICULOS"] = (hours + 1).round().astype("int64")
    for src, dst in SAME.items():
        out[dst] = frame[src].astype("float64")
    for src, (dst, factor) in SCALED.items():
        out[dst] = frame[src].astype("float64") * factor
    for col in ABSENT:
        out[col] = np.nan
    out["Age"] = frame["stay_id"].map(sta["age"]).astype("float64")
    out["Gender"] = frame["stay_id"].map(sta["sex"].map({"Male": 1.0, "Female": 0.0}))
    out["SepsisLabel"] = frame["label"].fillna(False).astype("int8")
    out = out.sort_values(["patient_id", "ICULOS"]).reset_index(drop=True)
    first = out["ICULOS"].where(out["SepsisLabel"] == 1).groupby(out["patient_id"]).transform("min")
    cut = first - DT_OPTIMAL + DT_LATE  # onset (first positive + 6 h) + 3 h
    return out[first.isna() | (out["ICULOS"] <= cut)].reset_index(drop=True)


def load(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The cohorts found under `data_dir/yaib_demo_sepsis`, by display name."""
    root = data_dir / "yaib_demo_sepsis"
    return {
        name: yaib_to_physionet(root / folder, prefix=f"{folder}:")
        for folder, name in COHORTS.items()
        if (root / folder / "dyn.parquet").exists()
    }


# A hospital that charts some variables far less often: the share of each one's measurements
# kept. FiO2, respiratory rate and PaCO2 are the ones issue 17 names for the unseen system; the
# shares are a guess at "far less often", not measured there.
SPARSE_CHARTING: dict[str, float] = {"FiO2": 0.25, "PaCO2": 0.25, "Resp": 0.4}


def sparse_charting(
    df: pd.DataFrame, keep: dict[str, float] | None = None, seed: int = 17
) -> pd.DataFrame:
    """`df` (PhysioNet 2019 layout) with each measurement of the columns in `keep` (default
    `SPARSE_CHARTING`) kept with that probability, independently per row (a seeded draw), and
    removed (NaN) otherwise: the same patients and outcomes, charted the way another hospital
    might. Other columns are unchanged."""
    keep = SPARSE_CHARTING if keep is None else keep
    rng = np.random.default_rng(seed)
    out = df.copy()
    for column, share in keep.items():
        if column in out:
            drop = rng.random(len(out)) >= share
            out[column] = out[column].mask(drop)
    return out


# A hospital with fewer septic patients: the share of set A's septic patients kept. Issue 17
# says the unseen system has fewer; half is a round stress, not its measured share.
SEPTIC_KEPT = 0.5


def fewer_septic(df: pd.DataFrame, keep: float = SEPTIC_KEPT, seed: int = 17) -> pd.DataFrame:
    """`df` (PhysioNet 2019 layout) with only `keep` of its septic patients (any SepsisLabel;
    a seeded draw) and every other patient: the same charting and case mix but sepsis, at a
    lower prevalence."""
    septic = df.groupby("patient_id")["SepsisLabel"].max()
    ids = np.sort(septic.index[septic == 1].to_numpy())
    dropped = septic_dropped(ids, keep, np.random.default_rng(seed))
    return df[~df["patient_id"].isin(set(dropped))]


def septic_dropped(
    septic: npt.NDArray[Any], keep: float, rng: np.random.Generator
) -> npt.NDArray[Any]:
    """The septic patients (of `septic`) a draw from `rng` leaves out so that `keep` of them
    stay: the one rule of `fewer_septic` and of `validation.threshold_for_transfer`."""
    return rng.choice(septic, len(septic) - round(keep * len(septic)), replace=False)
