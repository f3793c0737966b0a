"""National Early Warning Score 2 (NEWS2).

Source: Royal College of Physicians. National Early Warning Score (NEWS) 2: Standardising the
assessment of acute-illness severity in the NHS. Updated report of a working party. London: RCP,
2017. Chart 1 (the NEWS2 scoring system) and chart 2 (thresholds and triggers).

Missing values: a parameter absent from the observation scores 0 and is not counted in
`params_scored`, so `score` is a lower bound of the full NEWS2 (absent data can only add points).
Values are rounded half-up to the chart's resolution before banding (whole numbers; temperature to
0.1 °C), as a nurse charts them, on the value as charted: the topics carry 32-bit floats, which
hold a charted 38.05 °C as 38.0499992 (`ROUNDING_SLACK`).

SpO2 on Scale 2 above the target's top (93 % or more) scores 3 on oxygen and 0 on air: with the
oxygen status unknown it is not assessable, scored as absent (not counted in `params_scored`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
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


@dataclass(frozen=True)
class Bands:
    """One parameter's NEWS2 chart row: a value, rounded to the chart's resolution, scores the
    points of the first upper bound (`edges`, ascending) at or above it, else `points[-1]`.
    The one table the Python scores (`points`) and the Flink SQL (`sql`) are made from."""

    edges: tuple[int, ...]
    points: tuple[int, ...]

    def score(self, rounded: int) -> int:
        for edge, p in zip(self.edges, self.points, strict=False):
            if rounded <= edge:
                return p
        return self.points[-1]

    def sql(self, rounded: str) -> str:
        whens = " ".join(
            f"WHEN {rounded} <= {e} THEN {p}" for e, p in zip(self.edges, self.points, strict=False)
        )
        return f"CASE {whens} ELSE {self.points[-1]} END"


# RCP 2017 chart 1, by the value rounded half-up to the chart's resolution.
RESP_RATE = Bands((8, 11, 20, 24), (3, 1, 0, 2, 3))  # breaths/min
SPO2_SCALE1 = Bands((91, 93, 95), (3, 2, 1, 0))  # %
# Scale 2 (prescribed 88-92 % target, hypercapnic respiratory failure): above the target's top
# it scores only on oxygen; on air it scores 0.
SPO2_SCALE2 = Bands((83, 85, 87, 92, 94, 96), (3, 2, 1, 0, 1, 2, 3))  # %
SPO2_SCALE2_TARGET_MAX_PCT = 92
SBP = Bands((90, 100, 110, 219), (3, 2, 1, 0, 3))  # mmHg
PULSE = Bands((40, 50, 90, 110, 130), (3, 1, 0, 1, 2, 3))  # beats/min
TEMPERATURE_TENTHS = Bands((350, 360, 380, 390), (3, 1, 0, 1, 2))  # tenths of a °C
OXYGEN_POINTS = 2
CONSCIOUSNESS_POINTS = 3
ROOM_AIR_FIO2 = 0.21
# Half-up rounding of a value as charted: a 32-bit float is within 1e-6 relative of the decimal
# charted (38.05 held as 38.0499992, 0.8e-6 below), so a half a little below counts as the half;
# 1e-4 of the chart's step is far above that error and below any difference a chart shows.
ROUNDING_SLACK = 1e-4


def _half_up(x: float) -> int:
    return math.floor(x + 0.5 + ROUNDING_SLACK)


def _whole(x: float) -> int:
    return _half_up(x)


def resp_rate_points(resp_rate_per_min: float) -> int:
    return RESP_RATE.score(_whole(resp_rate_per_min))


def spo2_scale1_points(spo2_pct: float) -> int:
    return SPO2_SCALE1.score(_whole(spo2_pct))


def spo2_scale2_points(spo2_pct: float, on_oxygen: bool) -> int:
    """SpO2 scale 2, for a prescribed 88-92 % target (hypercapnic respiratory failure)."""
    s = _whole(spo2_pct)
    if s > SPO2_SCALE2_TARGET_MAX_PCT and not on_oxygen:
        return 0
    return SPO2_SCALE2.score(s)


def sbp_points(sbp_mmhg: float) -> int:
    return SBP.score(_whole(sbp_mmhg))


def pulse_points(heart_rate_bpm: float) -> int:
    return PULSE.score(_whole(heart_rate_bpm))


def temperature_points(temp_c: float) -> int:
    return TEMPERATURE_TENTHS.score(_half_up(temp_c * 10))


def on_oxygen(on_supplemental_o2: bool | None, fio2_fraction: float | None) -> bool | None:
    """Oxygen status: the device's flag when known, else FiO2 above room air (0.21), else None."""
    if on_supplemental_o2 is not None:
        return on_supplemental_o2
    if fio2_fraction is not None:
        return fio2_fraction > ROOM_AIR_FIO2
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
        above_target = _whole(spo2_pct) > SPO2_SCALE2_TARGET_MAX_PCT
        sp = None if above_target and oxygen is None else spo2_scale2_points(spo2_pct, bool(oxygen))
    else:
        sp = spo2_scale1_points(spo2_pct)
    ox = None if oxygen is None else (OXYGEN_POINTS if oxygen else 0)
    bp = None if sbp_mmhg is None else sbp_points(sbp_mmhg)
    hr = None if heart_rate_bpm is None else pulse_points(heart_rate_bpm)
    cns = (
        None
        if acvpu is None
        else (CONSCIOUSNESS_POINTS if acvpu in CONSCIOUSNESS_NEW_CONFUSION_OR_WORSE else 0)
    )
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


def _rounded_sql(column: str, scale: int = 1) -> str:
    """SQL of `_half_up(x * scale)` over a FLOAT column, in DOUBLE as Python does it."""
    x = f"CAST({column} AS DOUBLE)" + (f" * {scale}" if scale != 1 else "")
    return f"CAST(FLOOR({x} + 0.5E0 + {ROUNDING_SLACK!r}E0) AS INT)"


def news2_sql(c: Mapping[str, str] | None = None) -> dict[str, str]:
    """NEWS2 as Flink SQL over a row holding the `news2` arguments (`c` maps an argument to its
    column when the names differ): `score`, `params_scored`, `red_flag`, equal to `news2` on
    every input, generated from the same chart tables."""

    def col(name: str) -> str:
        return (c or {}).get(name, name)

    oxygen = (
        f"COALESCE({col('on_supplemental_o2')}, "
        f"CAST({col('fio2_fraction')} AS DOUBLE) > {ROOM_AIR_FIO2}E0)"
    )
    spo2 = _rounded_sql(col("spo2_pct"))
    above = f"{spo2} > {SPO2_SCALE2_TARGET_MAX_PCT}"
    scale2 = (
        f"CASE WHEN {above} AND {oxygen} IS NULL THEN CAST(NULL AS INT) "
        f"WHEN {above} AND NOT {oxygen} THEN 0 ELSE {SPO2_SCALE2.sql(spo2)} END"
    )
    confused = ", ".join(f"'{v}'" for v in sorted(CONSCIOUSNESS_NEW_CONFUSION_OR_WORSE))

    def present(value: str, points: str) -> str:
        return f"CASE WHEN {value} IS NULL THEN CAST(NULL AS INT) ELSE {points} END"

    parts = [
        present(col("resp_rate_per_min"), RESP_RATE.sql(_rounded_sql(col("resp_rate_per_min")))),
        present(
            col("spo2_pct"),
            f"CASE WHEN COALESCE({col('spo2_scale2')}, FALSE) THEN {scale2} "
            f"ELSE {SPO2_SCALE1.sql(spo2)} END",
        ),
        present(oxygen, f"CASE WHEN {oxygen} THEN {OXYGEN_POINTS} ELSE 0 END"),
        present(col("sbp_mmhg"), SBP.sql(_rounded_sql(col("sbp_mmhg")))),
        present(col("heart_rate_bpm"), PULSE.sql(_rounded_sql(col("heart_rate_bpm")))),
        present(
            col("acvpu"),
            f"CASE WHEN {col('acvpu')} IN ({confused}) THEN {CONSCIOUSNESS_POINTS} ELSE 0 END",
        ),
        present(col("temp_c"), TEMPERATURE_TENTHS.sql(_rounded_sql(col("temp_c"), 10))),
    ]
    return {
        "score": " + ".join(f"COALESCE({p}, 0)" for p in parts),
        "params_scored": " + ".join(f"CASE WHEN {p} IS NULL THEN 0 ELSE 1 END" for p in parts),
        "red_flag": "(" + " OR ".join(f"COALESCE({p} = 3, FALSE)" for p in parts) + ")",
    }
