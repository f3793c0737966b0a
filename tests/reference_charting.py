"""Offline reference for the device-rate path: the pandas charting (udfs.device.chart_frame) of
the device records the schema accepts, and its charted minutes as the vitals records the
screening reference (tests/reference_screen.py) reads."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from schemas import codec, topics
from udfs.device import CHANNELS, chart_frame

DEVICE = topics.VITALS_DEVICE.schema
OBSERVATION = topics.VITALS_OBSERVATION.schema


def accepted_device(device: list[dict[str, Any]]) -> pd.DataFrame:
    """The device records the decoder accepts, their refused values null (schemas.codec)."""
    return pd.DataFrame(
        [got.record for r in device if isinstance(got := codec.check(DEVICE, r), codec.Accepted)]
    )


def charted(device: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per patient-minute with a device record, as the job writes to vitals.charted."""
    want = chart_frame(accepted_device(device))
    want["chart_id"] = want.patient_token + "@" + want.minute_start.dt.strftime("%Y-%m-%dT%H:%M:%S")
    return want


def as_observations(charted: pd.DataFrame) -> list[tuple[str, dict[str, Any]]]:
    """The charted minutes with at least one value, as vitals.observation.v1 records."""
    out = []
    for r in charted.itertuples(index=False):
        values = {c.param: getattr(r, c.param) for c in CHANNELS}
        if all(v is None or np.isnan(v) for v in values.values()):
            continue
        rec: dict[str, Any] = {f.name: None for f in OBSERVATION.fields if f.nullable}
        rec |= {
            "observation_id": r.chart_id,
            "patient_token": r.patient_token,
            "facility_id": r.facility_id,
            "unit_id": r.unit_id,
            "event_time": r.event_time.to_pydatetime(),
            "source": "device",
        }
        rec |= {p: None if v is None or np.isnan(v) else float(v) for p, v in values.items()}
        out.append((topics.VITALS_OBSERVATION.name, rec))
    return out
