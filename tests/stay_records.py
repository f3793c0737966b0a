"""Vitals and lab records of ICU stays as the catalog scoring job reads them, back in the
PhysioNet 2012 layout (`feature_store.icu_stay`'s input): what the tests of the job and of training
compare their features with."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import pandas as pd

from feature_store import icu_stay
from jobs import model_scoring

# what the stream reads: a FLOAT field's value at float32 precision
FLOAT_FIELDS = frozenset(
    f.name for t in model_scoring.INPUTS.values() for f in t.schema.fields if f.base == "float"
)


def as_observations(
    records: Iterable[dict[str, Any]],
    stay_and_minute: Callable[[dict[str, Any]], tuple[int, float]],
) -> pd.DataFrame:
    """Long observations (`record_id`, `minute`, `parameter`, `value`) of `records`: each declared
    parameter's topic field under its 2012 name, at the precision the topic carries it;
    `stay_and_minute(record)` is the stay's record id and the record's minutes since admission."""
    long = []
    for rec in records:
        stay, minute = stay_and_minute(rec)
        for p in icu_stay.PARAMETERS:
            field = model_scoring.topic_field(p)
            v = rec.get(field)
            if v is not None:
                value = float(np.float32(v)) if field in FLOAT_FIELDS else float(v)
                long.append((stay, minute, p.source, value))
    return pd.DataFrame(long, columns=["record_id", "minute", "parameter", "value"])
