"""The sepsis model's features: one definition for training, the Feast repo and the stream.

Every feature is computable at the time of a screened state from what is known then (causal):

- the state's valid values (`udfs.sepsis.VALIDITY_H`: each parameter's last measurement carried
  forward for a bounded time, as the screening job does);
- 6-hour extremes of the measurements themselves (`ROLLING`): measurements at times in
  [t − 6 h, t], whatever the sampling, so hourly training rows and irregular stream records
  agree;
- hours since the last lactate, WBC and creatinine measurement, capped at 24 h (also when never
  measured);
- hours since the patient's first record (the stay so far);
- the screening scores (NEWS2, SIRS, qSOFA, partial SOFA) of the state, without what training
  never saw (`UNSEEN_IN_TRAINING`: GCS, ACVPU, the oxygen flag, SpO2 scale 2);
- static patient features from the Feast online store: age and sex.

Training computes them over PhysioNet's hourly rows (`training/features.py`), the job in Flink
SQL over its keyed state (`jobs/sepsis_screen.py`), and a test checks that the two agree.
"""

from __future__ import annotations

from typing import Final

from schemas import topics
from udfs.sepsis import STATE_PARAMS, screen_sql

STATE_FEATURES: Final = (
    "heart_rate_bpm",
    "resp_rate_per_min",
    "spo2_pct",
    "sbp_mmhg",
    "map_mmhg",
    "temp_c",
    "fio2_fraction",
    "lactate_mmol_l",
    "paco2_mmhg",
    "wbc_10e9_l",
    "platelets_10e9_l",
    "creatinine_mg_dl",
    "bilirubin_total_mg_dl",
)
WINDOW_H: Final = 6
ROLLING: Final = {  # parameter -> extreme over the window (the direction that signals harm)
    "heart_rate_bpm": "max",
    "resp_rate_per_min": "max",
    "temp_c": "max",
    "spo2_pct": "min",
    "sbp_mmhg": "min",
    "map_mmhg": "min",
}
LAB_AGE: Final = ("lactate_mmol_l", "wbc_10e9_l", "creatinine_mg_dl")
LAB_AGE_CAP_H: Final = 24.0
SCORE_FEATURES: Final = ("news2_score", "sirs_count", "qsofa_score", "sofa_partial_score")
# The state parameters that are not model features: PhysioNet 2019, the training data, charts
# none of them (a GCS, ACVPU, the oxygen flag, the SpO2 scale 2 prescription), so at a hospital
# that charts them the scores would move (qSOFA's altered mentation, NEWS2's consciousness,
# oxygen and saturation points) where they never moved in training. The model's score features
# are the scores without them, as training computes them (training/features.py).
UNSEEN_IN_TRAINING: Final = tuple(p for p in STATE_PARAMS if p not in STATE_FEATURES)
STATIC_FEATURES: Final = ("age_years", "female")


def rolling_name(p: str) -> str:
    return f"{p}_{ROLLING[p]}_{WINDOW_H}h"


def lab_age_name(p: str) -> str:
    return f"{p}_age_h"


def score_feature_sql(name: str) -> str:
    """A score feature (SCORE_FEATURES) in Flink SQL over a screened state's columns: the score
    without the parameters UNSEEN_IN_TRAINING (the state's own column where it reads none)."""
    screen = topics.SEPSIS_SCREEN.schema
    unseen = {
        p: f"CAST(NULL AS {screen.field(p).flink_type().removesuffix(' NOT NULL')})"
        for p in UNSEEN_IN_TRAINING
    }
    without = screen_sql(unseen)[name]
    return name if without == screen_sql()[name] else without


STREAM_FEATURES: Final = (
    *STATE_FEATURES,
    *(rolling_name(p) for p in ROLLING),
    *(lab_age_name(p) for p in LAB_AGE),
    "hours_since_first_record",
    *SCORE_FEATURES,
)
FEATURES: Final = (*STREAM_FEATURES, *STATIC_FEATURES)

UNITS: Final = {
    "heart_rate_bpm": "beats/min",
    "resp_rate_per_min": "breaths/min",
    "spo2_pct": "%",
    "sbp_mmhg": "mmHg",
    "map_mmhg": "mmHg",
    "temp_c": "°C",
    "fio2_fraction": "fraction (0.21-1)",
    "lactate_mmol_l": "mmol/L",
    "paco2_mmhg": "mmHg",
    "wbc_10e9_l": "10^9/L",
    "platelets_10e9_l": "10^9/L",
    "creatinine_mg_dl": "mg/dL",
    "bilirubin_total_mg_dl": "mg/dL",
    "hours_since_first_record": "h",
    "news2_score": "points",
    "sirs_count": "criteria",
    "qsofa_score": "points",
    "sofa_partial_score": "points",
    "age_years": "years",
    "female": "1 female, 0 male",
}


def unit_of(feature: str) -> str:
    for p in ROLLING:
        if feature == rolling_name(p):
            return UNITS[p]
    if feature.endswith("_age_h"):
        return "h"
    return UNITS[feature]
