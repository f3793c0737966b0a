"""The model's features (feature_store/definitions.py) over a PhysioNet 2019 format frame: one
row per patient-hour, computed only from what is known at that hour.

The rows mirror what the screening job sees when the replay feeds it the same file: an hour's
vitals are one record and its labs another, and a record with any value out of its schema's
plausible range is dead-lettered whole by the job, so all of that record's values are unknown
here too. Time is ICULOS (hours since ICU admission), the replay's event time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from feature_store.definitions import (
    LAB_AGE,
    LAB_AGE_CAP_H,
    ROLLING,
    SCORE_FEATURES,
    STATE_FEATURES,
    UNSEEN_IN_TRAINING,
    WINDOW_H,
    lab_age_name,
    rolling_name,
)
from schemas.physionet import measurements
from udfs.sepsis import SCORE_COLUMNS, STATE_PARAMS, VALIDITY_H, screen_row


def hourly_features(df: pd.DataFrame) -> pd.DataFrame:
    """patient_id, iculos_h, label and the stream features for every row of `df`."""
    df = df.sort_values(["patient_id", "ICULOS"]).reset_index(drop=True)
    m = measurements(df)
    t = df["ICULOS"].astype("float64")
    pid = df["patient_id"]
    out = pd.DataFrame({"patient_id": pid, "iculos_h": t})
    for p in STATE_FEATURES:
        at = t.where(m[p].notna()).groupby(pid).ffill()
        last = m[p].groupby(pid).ffill()
        out[p] = last.where(t - at <= VALIDITY_H[p])
    stamps = pd.to_datetime(t, unit="h")
    for p, how in ROLLING.items():
        frame = pd.DataFrame({"pid": pid, "ts": stamps, "v": m[p]})
        rolled = (
            frame.set_index("ts")
            .groupby("pid", sort=False)["v"]
            .rolling(f"{WINDOW_H}h", closed="both")
            .agg(how)
        )
        out[rolling_name(p)] = rolled.to_numpy()
    for p in LAB_AGE:
        at = t.where(m[p].notna()).groupby(pid).ffill()
        out[lab_age_name(p)] = (t - at).clip(upper=LAB_AGE_CAP_H).fillna(LAB_AGE_CAP_H)
    out["hours_since_first_record"] = t - t.groupby(pid).transform("min")
    nan = pd.Series(np.nan, index=out.index)  # the scores as the stream's score features have them
    state = {p: nan if p in UNSEEN_IN_TRAINING else out[p] for p in STATE_PARAMS}
    columns = [state[p].to_numpy(dtype=object) for p in STATE_PARAMS]
    scored = [
        screen_row(*(None if isinstance(v, float) and np.isnan(v) else v for v in values))
        for values in zip(*columns, strict=True)
    ]
    scores = pd.DataFrame(scored, columns=list(SCORE_COLUMNS), index=out.index)
    for s in SCORE_FEATURES:
        out[s] = scores[s].astype("float64")
    out["age_years"] = df["Age"].astype("float64")
    out["female"] = (df["Gender"] == 0).astype("float64")
    out["label"] = df["SepsisLabel"].astype("int8")
    out["unit"] = np.select([df["Unit1"] == 1, df["Unit2"] == 1], ["MICU", "SICU"], "unknown")
    return out
