"""The patient split every model of the repo uses (no torch: evaluation imports it too).

Patients are split by a keyed hash of their id, so the split is the same in every run and on
every machine, and a patient's hours never sit on two sides: 70 % train, 15 % validation (early
stopping, the threshold), 15 % test (the report and `make evaluate-model`, nothing else).
"""

from __future__ import annotations

import hashlib

SPLIT_KEY = "wardflow-split-v1"


def split_of(patient_id: str) -> str:
    h = int(hashlib.sha256(f"{SPLIT_KEY}:{patient_id}".encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 70 else "val" if h < 85 else "test"
