"""Sepsis screening rules as pure, typed functions: SIRS, qSOFA and a Sepsis-3-style partial SOFA.

Missing values: every function takes values that are already *valid* at the moment scored,
i.e. the last value of each parameter carried forward for at most `VALIDITY_H[param]` hours
(and never across a discharge); an expired or never-measured value is passed as None. A
criterion whose inputs are None is not met and is not counted as known, so each score is a
lower bound and the `*_known` count says how many criteria could be evaluated.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

from udfs.news2 import ROOM_AIR_FIO2, News2, news2, news2_sql, on_oxygen

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
    # Neurological observations are charted hourly to 4-hourly, as ACVPU is; a GCS older than
    # that no longer says how the patient is now. qSOFA reads it (`QSOFA_CRITERIA`).
    "gcs_total": 4,
}
MAX_VALIDITY_H = max(VALIDITY_H.values())

# FiO2 and the oxygen flag describe one thing, the patient's inspired oxygen (udfs.news2.on_oxygen
# reads the flag first, then FiO2), but are charted apart and carried 12 h each, so a newer one
# could contradict the older: room air charted after FiO2 0.40 scored respiratory SOFA 2 on room
# air; FiO2 0.40 charted after room air scored no oxygen points in NEWS2; a mask after FiO2 0.21
# took SpO2/FiO2 as on room air. Where the two disagree, the older is dropped from the state
# (`contradicted`). They share a validity, so the newer of two is valid whenever the older is.
OXYGEN_PAIR = ("fio2_fraction", "on_supplemental_o2")

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


@dataclass(frozen=True)
class Test:
    """`param op value`; a test on an absent parameter is not met."""

    param: str
    op: str  # one of OPS
    value: float | str

    def met(self, values: Mapping[str, Any]) -> bool:
        v = values.get(self.param)
        return v is not None and bool(OPS[self.op](v, self.value))

    def sql(self, col: Callable[[str], str]) -> str:
        if isinstance(self.value, str):
            return f"COALESCE({col(self.param)} {SQL_OPS[self.op]} '{self.value}', FALSE)"
        value = f"CAST({col(self.param)} AS DOUBLE)"
        return f"COALESCE({value} {SQL_OPS[self.op]} {self.value!r}E0, FALSE)"


@dataclass(frozen=True)
class Criterion:
    """Met when any of its tests is; known when any of their parameters is present."""

    tests: tuple[Test, ...]

    def params(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(t.param for t in self.tests))


@dataclass(frozen=True)
class Cuts:
    """A SOFA component: points = cut-offs crossed by the value (≥ cut when rising, < cut when
    falling), the value being `params[0]` or, with two params, their ratio. Known when every
    param is present and, with `valid_while`, while `param ≤ bound`."""

    params: tuple[str, ...]
    cuts: tuple[float, ...]
    rising: bool
    valid_while: tuple[str, float] | None = None


OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    "!=": lambda a, b: a != b,
}
SQL_OPS = {">": ">", ">=": ">=", "<": "<", "<=": "<=", "!=": "<>"}

# SIRS (Bone et al., ACCP/SCCM Consensus 1992, Chest 101:1644): temperature > 38 or < 36 °C;
# heart rate > 90/min; respiratory rate > 20/min or PaCO2 < 32 mmHg; WBC > 12 or < 4 ×10⁹/L
# (band forms are not in the data).
SIRS_CRITERIA = (
    Criterion((Test("temp_c", ">", 38.0), Test("temp_c", "<", 36.0))),
    Criterion((Test("heart_rate_bpm", ">", 90.0),)),
    Criterion((Test("resp_rate_per_min", ">", 20.0), Test("paco2_mmhg", "<", 32.0))),
    Criterion((Test("wbc_10e9_l", ">", 12.0), Test("wbc_10e9_l", "<", 4.0))),
)
# qSOFA (Seymour et al. 2016, JAMA 315:762): respiratory rate ≥ 22/min, systolic BP ≤ 100 mmHg,
# altered mentation: GCS < 15 (Seymour's definition), or any ACVPU other than Alert where a ward
# charts ACVPU instead (an ICU charts GCS; either one charted makes the criterion known).
QSOFA_CRITERIA = (
    Criterion((Test("resp_rate_per_min", ">=", 22.0),)),
    Criterion((Test("sbp_mmhg", "<=", 100.0),)),
    Criterion((Test("acvpu", "!=", "A"), Test("gcs_total", "<", 15.0))),
)
# The SOFA components the data support (Vincent et al. 1996, Intensive Care Med 22:707): see
# `sofa_partial`.
SOFA_COMPONENTS = (
    Cuts(("platelets_10e9_l",), (150.0, 100.0, 50.0, 20.0), rising=False),
    Cuts(("bilirubin_total_mg_dl",), (1.2, 2.0, 6.0, 12.0), rising=True),
    Cuts(("map_mmhg",), (70.0,), rising=False),
    Cuts(("creatinine_mg_dl",), (1.2, 2.0, 3.5, 5.0), rising=True),
    Cuts(
        ("spo2_pct", "fio2_fraction"),
        (400.0, 315.0, 235.0, 150.0),
        rising=False,
        valid_while=("spo2_pct", 97.0),
    ),
)


def contradicted(values: Mapping[str, Any], measured: Mapping[str, Any]) -> str | None:
    """The parameter of OXYGEN_PAIR that a newer charting of the other contradicts, or None:
    `values` are the state's valid values, `measured` their measurement times."""
    fio2, on_o2 = (values.get(p) for p in OXYGEN_PAIR)
    if fio2 is None or on_o2 is None or bool(on_o2) == on_oxygen(None, fio2):
        return None
    fio2_at, on_o2_at = (measured[p] for p in OXYGEN_PAIR)
    if fio2_at == on_o2_at:  # charted together: each says what it says
        return None
    return OXYGEN_PAIR[0] if fio2_at < on_o2_at else OXYGEN_PAIR[1]


def contradicted_sql(p: str, last: Callable[[str], str], at: Callable[[str], str]) -> str:
    """`contradicted(...) == p` in SQL over each parameter's last value `last(name)` and its
    time `at(name)` (columns; valid ones, or the older one's validity decides: see
    OXYGEN_PAIR)."""
    fio2, on_o2 = OXYGEN_PAIR
    other = on_o2 if p == fio2 else fio2
    disagree = f"{last(on_o2)} <> (CAST({last(fio2)} AS DOUBLE) > {ROOM_AIR_FIO2!r}E0)"
    return f"COALESCE({at(other)} > {at(p)} AND {disagree}, FALSE)"


def _count(criteria: tuple[Criterion, ...], values: Mapping[str, Any]) -> tuple[int, int]:
    """(criteria met, criteria known)."""
    met = known = 0
    for c in criteria:
        if any(values.get(p) is not None for p in c.params()):
            known += 1
            met += any(t.met(values) for t in c.tests)
    return met, known


def _cut_points(x: float, cuts: tuple[float, ...], rising: bool) -> int:
    """Number of cut-offs crossed: x ≥ cut when rising, x < cut when falling."""
    return sum(1 for c in cuts if (x >= c if rising else x < c))


def sirs(
    temp_c: float | None,
    heart_rate_bpm: float | None,
    resp_rate_per_min: float | None,
    paco2_mmhg: float | None,
    wbc_10e9_l: float | None,
) -> Sirs:
    """SIRS criteria met (`SIRS_CRITERIA`)."""
    values = {
        "temp_c": temp_c,
        "heart_rate_bpm": heart_rate_bpm,
        "resp_rate_per_min": resp_rate_per_min,
        "paco2_mmhg": paco2_mmhg,
        "wbc_10e9_l": wbc_10e9_l,
    }
    return Sirs(*_count(SIRS_CRITERIA, values))


def qsofa(
    resp_rate_per_min: float | None,
    sbp_mmhg: float | None,
    acvpu: str | None,
    gcs_total: float | None = None,
) -> Qsofa:
    """qSOFA criteria met (`QSOFA_CRITERIA`)."""
    values = {
        "resp_rate_per_min": resp_rate_per_min,
        "sbp_mmhg": sbp_mmhg,
        "acvpu": acvpu,
        "gcs_total": gcs_total,
    }
    return Qsofa(*_count(QSOFA_CRITERIA, values))


def sofa_partial(
    platelets_10e9_l: float | None,
    bilirubin_total_mg_dl: float | None,
    map_mmhg: float | None,
    creatinine_mg_dl: float | None,
    spo2_pct: float | None,
    fio2_fraction: float | None,
) -> Sofa:
    """The SOFA components the data support (`SOFA_COMPONENTS`; Vincent et al. 1996).

    Coagulation: platelets < 150/100/50/20 ×10⁹/L → 1–4. Liver: bilirubin ≥ 1.2/2.0/6.0/12.0
    mg/dL → 1–4. Cardiovascular: MAP < 70 mmHg → 1 (vasopressor doses are not in the data, so
    2–4 cannot be scored). Renal: creatinine ≥ 1.2/2.0/3.5/5.0 mg/dL → 1–4 (urine output is
    charted, `vitals.observation`'s `urine_output_ml`, but not in the state: no daily volume).
    Respiration: SpO2/FiO2 < 400/315/235/150 → 1–4, the imputation of PaO2/FiO2 by
    Pandharipande et al. 2009 (Crit Care Med 37:1317), valid only while SpO2 ≤ 97 %. Vincent
    gives 3 and 4 only "with respiratory support"; the state carries no ventilation flag
    (`mechanical_ventilation` is charted but not a state parameter), so a patient on a face mask
    with SpO2/FiO2 < 235 scores 3 here: a deviation that raises the organ-dysfunction alert's
    severity (high at 4), not whether it fires (2 points from respiration meet it, as Vincent's
    < 300 does without support). The sepsis model reads this score as trained, so leaving out
    3–4 would change its input, not only the rule's.
    CNS is not scored: Vincent scores a sedated patient's GCS as assumed without sedation, which
    a charted total does not say, and sedation is not in the state (a ventilated patient's GCS
    of 3 scored 4 points of organ failure, and every sedated patient with SIRS ≥ 2 an alert).
    Sepsis-3 assumes a baseline of 0 without known prior organ dysfunction (Singer 2016), so a
    score ≥ 2 screens positive for organ dysfunction.
    """
    values = {
        "platelets_10e9_l": platelets_10e9_l,
        "bilirubin_total_mg_dl": bilirubin_total_mg_dl,
        "map_mmhg": map_mmhg,
        "creatinine_mg_dl": creatinine_mg_dl,
        "spo2_pct": spo2_pct,
        "fio2_fraction": fio2_fraction,
    }
    score = known = 0
    for comp in SOFA_COMPONENTS:
        xs = [v for p in comp.params if (v := values[p]) is not None]
        if len(xs) < len(comp.params):
            continue
        if comp.valid_while:
            param, bound = comp.valid_while
            value = values[param]
            if value is None or value > bound:
                continue
        known += 1
        x = xs[0] if len(xs) == 1 else xs[0] / xs[1]
        score += _cut_points(x, comp.cuts, comp.rising)
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
    gcs_total: float | None = None,
) -> Screen:
    """All four scores from one patient state (valid values only; see the module docstring).
    The GCS is read by qSOFA alone: NEWS2's 3 points are for *new* confusion or worse (RCP
    2017), which a GCS below 15 in a sedated or chronically impaired patient is not, and SOFA's
    CNS component asks for the GCS without sedation (`sofa_partial`)."""
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
        qsofa(resp_rate_per_min, sbp_mmhg, acvpu, gcs_total),
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


def screen_sql(c: Mapping[str, str] | None = None) -> dict[str, str]:
    """SCORE_COLUMNS as Flink SQL over a row holding the state's parameters (`c` maps a parameter
    to its column when the names differ), equal to `screen_row` on every state: generated from
    the same tables (NEWS2 chart, SIRS and qSOFA criteria, SOFA cut-offs)."""

    def col(name: str) -> str:
        return (c or {}).get(name, name)

    def counts(criteria: tuple[Criterion, ...]) -> tuple[str, str]:
        met = " + ".join(
            "CASE WHEN " + " OR ".join(t.sql(col) for t in k.tests) + " THEN 1 ELSE 0 END"
            for k in criteria
        )
        known = " + ".join(
            "CASE WHEN "
            + " OR ".join(f"{col(p)} IS NOT NULL" for p in k.params())
            + " THEN 1 ELSE 0 END"
            for k in criteria
        )
        return met, known

    def component(comp: Cuts) -> tuple[str, str]:
        xs = [f"CAST({col(p)} AS DOUBLE)" for p in comp.params]
        x = xs[0] if len(xs) == 1 else f"{xs[0]} / {xs[1]}"
        known = " AND ".join(f"{col(p)} IS NOT NULL" for p in comp.params)
        if comp.valid_while:
            known += f" AND CAST({col(comp.valid_while[0])} AS DOUBLE) <= {comp.valid_while[1]!r}E0"
        op = ">=" if comp.rising else "<"
        crossed = " + ".join(f"CASE WHEN {x} {op} {cut!r}E0 THEN 1 ELSE 0 END" for cut in comp.cuts)
        return (
            f"CASE WHEN {known} THEN {crossed} ELSE 0 END",
            f"CASE WHEN {known} THEN 1 ELSE 0 END",
        )

    n = news2_sql(c)
    sirs_met, sirs_known = counts(SIRS_CRITERIA)
    qsofa_met, qsofa_known = counts(QSOFA_CRITERIA)
    sofa = [component(k) for k in SOFA_COMPONENTS]
    return {
        "news2_score": n["score"],
        "news2_params_scored": n["params_scored"],
        "news2_red_flag": n["red_flag"],
        "sirs_count": sirs_met,
        "sirs_criteria_known": sirs_known,
        "qsofa_score": qsofa_met,
        "qsofa_criteria_known": qsofa_known,
        "sofa_partial_score": " + ".join(points for points, _ in sofa),
        "sofa_components_known": " + ".join(known for _, known in sofa),
    }
