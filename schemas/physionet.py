"""The PhysioNet/CinC 2019 format mapped onto wardflow's canonical records: which column is which
field (units per the challenge's data dictionary), and the values each hour's records carry.

An hour's vitals are one `vitals.observation.v1` record and its labs one `labs.result.v1` record;
a record with any value outside its schema's plausible range is dead-lettered whole by the jobs,
so `measurements` leaves all of that record's values unknown too. The replay, training and the
warehouse seeder read PhysioNet rows through this one mapping.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from schemas import topics

# PhysioNet column -> observation field (units per the challenge's data dictionary).
VITALS = {
    "HR": "heart_rate_bpm",
    "Resp": "resp_rate_per_min",
    "O2Sat": "spo2_pct",
    "Temp": "temp_c",
    "SBP": "sbp_mmhg",
    "DBP": "dbp_mmhg",
    "MAP": "map_mmhg",
    "FiO2": "fio2_fraction",
}
LABS = {
    "Lactate": "lactate_mmol_l",
    "PaCO2": "paco2_mmhg",
    "WBC": "wbc_10e9_l",
    "Platelets": "platelets_10e9_l",
    "Creatinine": "creatinine_mg_dl",
    "Bilirubin_total": "bilirubin_total_mg_dl",
}

RECORDS = {topics.VITALS_OBSERVATION: VITALS, topics.LABS_RESULT: LABS}


def measurements(df: pd.DataFrame) -> pd.DataFrame:
    """Measured values per row by feature name (NaN: not measured, or in a rejected record)."""
    out = pd.DataFrame(index=df.index)
    for topic, columns in RECORDS.items():
        fields = {f.name: f for f in topic.schema.fields}
        values = pd.DataFrame(
            {f: df[c].astype("float64") if c in df else np.nan for c, f in columns.items()},
            index=df.index,
        )
        bad = pd.Series(False, index=df.index)
        for f in values:  # as the decoders judge the record (FiO2 0.21 at float32 is in range)
            bad |= fields[str(f)].out_of_range(values[f].to_numpy())
        out[list(values)] = values.mask(bad, np.nan)
    return out
