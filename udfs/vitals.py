"""Pure row functions behind the vitals UDFs: decode+validate an observation, score NEWS2."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from schemas import load_schema
from udfs import codec
from udfs.news2 import news2

OBSERVATION = load_schema("vitals.observation.v1")
# event_time is not returned: the Kafka record timestamp (checked equal to it) is the rowtime.
DECODED_FIELDS = tuple(f for f in OBSERVATION.fields if f.logical is None)


def decode_observation(payload: bytes | None, record_time: datetime | None) -> tuple[Any, ...]:
    """(reason_code, reason, *DECODED_FIELDS): reason_code is None for an accepted record and the
    fields are None for a rejected one."""
    ts_ms = None if record_time is None else codec.epoch_ms(record_time)
    rec = codec.decode_valid(OBSERVATION, payload, ts_ms)
    if isinstance(rec, codec.Rejection):
        return (rec.reason_code, rec.reason, *(None for _ in DECODED_FIELDS))
    return (None, None, *(rec[f.name] for f in DECODED_FIELDS))


def news2_summary(
    resp_rate_per_min: float | None,
    spo2_pct: float | None,
    on_supplemental_o2: bool | None,
    fio2_fraction: float | None,
    sbp_mmhg: float | None,
    heart_rate_bpm: float | None,
    acvpu: str | None,
    temp_c: float | None,
    spo2_scale2: bool | None,
) -> tuple[int, int, bool]:
    """(score, params_scored, red_flag)."""
    n = news2(
        resp_rate_per_min=resp_rate_per_min,
        spo2_pct=spo2_pct,
        on_supplemental_o2=on_supplemental_o2,
        fio2_fraction=fio2_fraction,
        sbp_mmhg=sbp_mmhg,
        heart_rate_bpm=heart_rate_bpm,
        acvpu=acvpu,
        temp_c=temp_c,
        spo2_scale2=spo2_scale2,
    )
    return n.score, n.params_scored, n.red_flag
