"""Sepsis screening rules as pure, typed functions: SIRS, qSOFA and a Sepsis-3-style partial SOFA.

Missing values: every function takes values that are already *valid* at the moment scored,
i.e. the last value of each parameter carried forward for at most `VALIDITY_H[param]` hours
(and never across a discharge); an expired or never-measured value is passed as None. A
criterion whose inputs are None is not met and is not counted as known, so each score is a
lower bound and the `*_known` count says how many criteria could be evaluated.
"""

from __future__ import annotations

from typing import NamedTuple

from udfs.news2 import News2, news2

# How long a last value stays valid, in hours (last observation carried forward, LOCF).
# Vitals are charted hourly in ICUs, so one missed hour is tolerated; temperature is taken
# 4-hourly and FiO2/oxygen is a device setting that changes rarely. Routine labs are drawn
# daily; lactate and blood gases are repeated within hours when abnormal (SSC 2021 advises
# re-measuring an elevated lactate), so they expire sooner.
VALIDITY_H: dict[str, int] = {
    "heart_rate_bpm": 2,
    "resp_rate_per_min": 2,
    "spo2_pct": 2,
    "sbp_mmhg": 2,
    "map_mmhg": 2,
    "temp_c": 6,
    "fio2_fraction": 12,
    "on_supplemental_o2": 12,
    "acvpu": 4,
    "spo2_scale2": 24,
    "lactate_mmol_l": 6,
    "paco2_mmhg": 6,
    "wbc_10e9_l": 24,
    "platelets_10e9_l": 24,
    "creatinine_mg_dl": 24,
    "bilirubin_total_mg_dl": 24,
}
MAX_VALIDITY_H = max(VALIDITY_H.values())

# Sepsis-3 (Singer 2016, JAMA 315:801): serum lactate > 2 mmol/L marks hypoperfusion.
LACTATE_HIGH_MMOL_L = 2.0


class Sirs(NamedTuple):
    met: int
    known: int


class Qsofa(NamedTuple):
    score: int
    known: int


class Sofa(NamedTuple):
    score: int
    known: int


class Screen(NamedTuple):
    news2: News2
    sirs: Sirs
    qsofa: Qsofa
    sofa: Sofa


def sirs(
    temp_c: float | None,
    heart_rate_bpm: float | None,
    resp_rate_per_min: float | None,
    paco2_mmhg: float | None,
    wbc_10e9_l: float | None,
) -> Sirs:
    """SIRS criteria met (Bone et al., ACCP/SCCM Consensus 1992, Chest 101:1644).

    Temperature > 38 or < 36 °C; heart rate > 90/min; respiratory rate > 20/min or PaCO2 <
    32 mmHg; WBC > 12 or < 4 ×10⁹/L (band forms are not in the data).
    """
    met = known = 0
    if temp_c is not None:
        known += 1
        met += temp_c > 38.0 or temp_c < 36.0
    if heart_rate_bpm is not None:
        known += 1
        met += heart_rate_bpm > 90.0
    if resp_rate_per_min is not None or paco2_mmhg is not None:
        known += 1
        met += (resp_rate_per_min is not None and resp_rate_per_min > 20.0) or (
            paco2_mmhg is not None and paco2_mmhg < 32.0
        )
    if wbc_10e9_l is not None:
        known += 1
        met += wbc_10e9_l > 12.0 or wbc_10e9_l < 4.0
    return Sirs(int(met), known)


def qsofa(resp_rate_per_min: float | None, sbp_mmhg: float | None, acvpu: str | None) -> Qsofa:
    """qSOFA (Seymour et al. 2016, JAMA 315:762): respiratory rate ≥ 22/min, systolic BP ≤
    100 mmHg, altered mentation (GCS < 15; here any ACVPU other than Alert)."""
    met = known = 0
    if resp_rate_per_min is not None:
        known += 1
        met += resp_rate_per_min >= 22.0
    if sbp_mmhg is not None:
        known += 1
        met += sbp_mmhg <= 100.0
    if acvpu is not None:
        known += 1
        met += acvpu != "A"
    return Qsofa(int(met), known)


def _points(x: float, cuts: tuple[float, ...], rising: bool) -> int:
    """Number of cut-offs crossed: x ≥ cut when rising, x < cut when falling."""
    return sum(1 for c in cuts if (x >= c if rising else x < c))


def sofa_partial(
    platelets_10e9_l: float | None,
    bilirubin_total_mg_dl: float | None,
    map_mmhg: float | None,
    creatinine_mg_dl: float | None,
    spo2_pct: float | None,
    fio2_fraction: float | None,
) -> Sofa:
    """The SOFA components the data support (Vincent et al. 1996, Intensive Care Med 22:707).

    Coagulation: platelets < 150/100/50/20 ×10⁹/L → 1–4. Liver: bilirubin ≥ 1.2/2.0/6.0/12.0
    mg/dL → 1–4. Cardiovascular: MAP < 70 mmHg → 1 (vasopressor doses are not in the data, so
    2–4 cannot be scored). Renal: creatinine ≥ 1.2/2.0/3.5/5.0 mg/dL → 1–4 (urine output is
    not in the data). Respiration: SpO2/FiO2 < 400/315/235/150 → 1–4, the imputation of
    PaO2/FiO2 by Pandharipande et al. 2009 (Crit Care Med 37:1317), valid only while SpO2 ≤ 97 %.
    CNS (GCS) is not in the data. Sepsis-3 assumes a baseline of 0 without known prior organ
    dysfunction (Singer 2016), so a score ≥ 2 screens positive for organ dysfunction.
    """
    score = known = 0
    if platelets_10e9_l is not None:
        known += 1
        score += _points(platelets_10e9_l, (150.0, 100.0, 50.0, 20.0), rising=False)
    if bilirubin_total_mg_dl is not None:
        known += 1
        score += _points(bilirubin_total_mg_dl, (1.2, 2.0, 6.0, 12.0), rising=True)
    if map_mmhg is not None:
        known += 1
        score += map_mmhg < 70.0
    if creatinine_mg_dl is not None:
        known += 1
        score += _points(creatinine_mg_dl, (1.2, 2.0, 3.5, 5.0), rising=True)
    if spo2_pct is not None and fio2_fraction is not None and spo2_pct <= 97.0:
        known += 1
        score += _points(spo2_pct / fio2_fraction, (400.0, 315.0, 235.0, 150.0), rising=False)
    return Sofa(int(score), known)


def screen(
    *,
    heart_rate_bpm: float | None = None,
    resp_rate_per_min: float | None = None,
    spo2_pct: float | None = None,
    sbp_mmhg: float | None = None,
    map_mmhg: float | None = None,
    temp_c: float | None = None,
    fio2_fraction: float | None = None,
    on_supplemental_o2: bool | None = None,
    acvpu: str | None = None,
    spo2_scale2: bool | None = None,
    lactate_mmol_l: float | None = None,
    paco2_mmhg: float | None = None,
    wbc_10e9_l: float | None = None,
    platelets_10e9_l: float | None = None,
    creatinine_mg_dl: float | None = None,
    bilirubin_total_mg_dl: float | None = None,
) -> Screen:
    """All four scores from one patient state (valid values only; see the module docstring)."""
    del lactate_mmol_l  # carried in the state for the rules, not part of any score
    return Screen(
        news2(
            resp_rate_per_min=resp_rate_per_min,
            spo2_pct=spo2_pct,
            on_supplemental_o2=on_supplemental_o2,
            fio2_fraction=fio2_fraction,
            sbp_mmhg=sbp_mmhg,
            heart_rate_bpm=heart_rate_bpm,
            acvpu=acvpu,
            temp_c=temp_c,
            spo2_scale2=spo2_scale2,
        ),
        sirs(temp_c, heart_rate_bpm, resp_rate_per_min, paco2_mmhg, wbc_10e9_l),
        qsofa(resp_rate_per_min, sbp_mmhg, acvpu),
        sofa_partial(
            platelets_10e9_l,
            bilirubin_total_mg_dl,
            map_mmhg,
            creatinine_mg_dl,
            spo2_pct,
            fio2_fraction,
        ),
    )


STATE_PARAMS: tuple[str, ...] = tuple(VALIDITY_H)
SCORE_COLUMNS = (
    "news2_score",
    "news2_params_scored",
    "news2_red_flag",
    "sirs_count",
    "sirs_criteria_known",
    "qsofa_score",
    "qsofa_criteria_known",
    "sofa_partial_score",
    "sofa_components_known",
)


def screen_row(*values: object) -> tuple[int, ...]:
    """Positional adapter for the Flink UDF: values in STATE_PARAMS order → SCORE_COLUMNS."""
    s = screen(**dict(zip(STATE_PARAMS, values, strict=True)))  # type: ignore[arg-type]
    return (
        s.news2.score,
        s.news2.params_scored,
        s.news2.red_flag,
        s.sirs.met,
        s.sirs.known,
        s.qsofa.score,
        s.qsofa.known,
        s.sofa.score,
        s.sofa.known,
    )
