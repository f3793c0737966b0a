"""National Early Warning Score 2 (NEWS2).

Source: Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the
assessment of acute-illness severity in the NHS. Updated report of a working party. London: RCP,
2017. Chart 1 (the NEWS2 scoring system) and chart 2 (thresholds and triggers).

Missing values: a parameter absent from the observation scores 0 and is not counted in
`params_scored`, so `score` is a lower bound of the full NEWS2 (absent data can only add points).
Values are rounded half-up to the chart's resolution before banding (whole numbers; temperature to
0.1 °C), as a nurse charts them.
"""

from __future__ import annotations

import math
from typing import NamedTuple

CONSCIOUSNESS_NEW_CONFUSION_OR_WORSE = frozenset({"C", "V", "P", "U"})

# RCP 2017 chart 2: aggregate 5-6 is the key threshold for an urgent response, 7+ an emergency one.
MEDIUM_RISK_THRESHOLD = 5
HIGH_RISK_THRESHOLD = 7


class News2(NamedTuple):
    score: int
    params_scored: int
    red_flag: bool
    resp_rate: int
    spo2: int
    air_or_oxygen: int
    sbp: int
    pulse: int
    consciousness: int
    temperature: int


def _whole(x: float) -> int:
    return math.floor(x + 0.5)


def resp_rate_points(resp_rate_per_min: float) -> int:
    r = _whole(resp_rate_per_min)
    if r <= 8:
        return 3
    if r <= 11:
        return 1
    if r <= 20:
        return 0
    if r <= 24:
        return 2
    return 3


def spo2_scale1_points(spo2_pct: float) -> int:
    s = _whole(spo2_pct)
    if s <= 91:
        return 3
    if s <= 93:
        return 2
    if s <= 95:
        return 1
    return 0


def spo2_scale2_points(spo2_pct: float, on_oxygen: bool) -> int:
    """SpO2 scale 2, for a prescribed 88-92 % target (hypercapnic respiratory failure)."""
    s = _whole(spo2_pct)
    if s <= 83:
        return 3
    if s <= 85:
        return 2
    if s <= 87:
        return 1
    if s <= 92 or not on_oxygen:
        return 0
    if s <= 94:
        return 1
    if s <= 96:
        return 2
    return 3


def sbp_points(sbp_mmhg: float) -> int:
    s = _whole(sbp_mmhg)
    if s <= 90:
        return 3
    if s <= 100:
        return 2
    if s <= 110:
        return 1
    if s <= 219:
        return 0
    return 3


def pulse_points(heart_rate_bpm: float) -> int:
    p = _whole(heart_rate_bpm)
    if p <= 40:
        return 3
    if p <= 50:
        return 1
    if p <= 90:
        return 0
    if p <= 110:
        return 1
    if p <= 130:
        return 2
    return 3


def temperature_points(temp_c: float) -> int:
    tenths = math.floor(temp_c * 10 + 0.5)
    if tenths <= 350:
        return 3
    if tenths <= 360:
        return 1
    if tenths <= 380:
        return 0
    if tenths <= 390:
        return 1
    return 2


def on_oxygen(on_supplemental_o2: bool | None, fio2_fraction: float | None) -> bool | None:
    """Oxygen status: the device's flag when known, else FiO2 above room air (0.21), else None."""
    if on_supplemental_o2 is not None:
        return on_supplemental_o2
    if fio2_fraction is not None:
        return fio2_fraction > 0.21
    return None


def news2(
    *,
    resp_rate_per_min: float | None,
    spo2_pct: float | None,
    on_supplemental_o2: bool | None,
    fio2_fraction: float | None,
    sbp_mmhg: float | None,
    heart_rate_bpm: float | None,
    acvpu: str | None,
    temp_c: float | None,
    spo2_scale2: bool | None,
) -> News2:
    oxygen = on_oxygen(on_supplemental_o2, fio2_fraction)
    rr = None if resp_rate_per_min is None else resp_rate_points(resp_rate_per_min)
    if spo2_pct is None:
        sp = None
    elif spo2_scale2:
        sp = spo2_scale2_points(spo2_pct, bool(oxygen))
    else:
        sp = spo2_scale1_points(spo2_pct)
    ox = None if oxygen is None else (2 if oxygen else 0)
    bp = None if sbp_mmhg is None else sbp_points(sbp_mmhg)
    hr = None if heart_rate_bpm is None else pulse_points(heart_rate_bpm)
    cns = None if acvpu is None else (3 if acvpu in CONSCIOUSNESS_NEW_CONFUSION_OR_WORSE else 0)
    tp = None if temp_c is None else temperature_points(temp_c)
    parts = (rr, sp, ox, bp, hr, cns, tp)
    present = [p for p in parts if p is not None]
    return News2(
        score=sum(present),
        params_scored=len(present),
        red_flag=any(p == 3 for p in present),
        resp_rate=rr or 0,
        spo2=sp or 0,
        air_or_oxygen=ox or 0,
        sbp=bp or 0,
        pulse=hr or 0,
        consciousness=cns or 0,
        temperature=tp or 0,
    )
