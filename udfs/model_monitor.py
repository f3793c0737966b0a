"""The model monitor's judgement of one window (plain Python, called once per window and
facility by the monitor job's table functions, udfs/flink_monitor.py; tested without a JVM).

The job hands over a window's aggregates as text, counted in Flink SQL on the fixed grids of
udfs/monitor.py:

- input cells: `feature|cell|n` items (cell -1: missing; cell -2: n is the number of patients
  with a measured value, feature `*`: all patients in the window);
- score cells of one model version and role: `cell|n|alerts|flagged` (cell -2: patients);
- labelled score cells: `cell|n|positives|score_sum`.

Each serving version (champion and challenger, from the registry; a role change is seen
within `check_s`) is compared with the training reference stored with it (`reference.json`)
and judged with its spec's `monitor` thresholds (schemas/model_spec.Monitor). Every measurement
is returned, breached or not: the board plots them all.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from schemas.model_spec import ModelSpec, Monitor
from udfs import monitor
from udfs.registry import ROLES, Registry

log = logging.getLogger(__name__)
REFERENCE = "reference.json"
PATIENTS = -2  # the cell that carries a patient count
ALL = "*"


@dataclass(frozen=True)
class Served:
    model: str
    version: str
    role: str
    spec: ModelSpec
    raw_spec: dict[str, Any]
    reference: dict[str, Any] | None


@dataclass
class Versions:
    """The registry's versions of `models` and who serves in which role, re-read every
    `check_s` seconds; a version's spec and reference are read once."""

    registry: Registry
    models: tuple[str, ...]
    check_s: float = 30.0
    _roles: dict[str, dict[str, str]] = field(default_factory=dict)
    _checked: float = -math.inf
    _cache: dict[tuple[str, str], Served | None] = field(default_factory=dict)

    def version(self, model: str, version: str, role: str) -> Served | None:
        key = (model, version)
        if key not in self._cache:
            try:
                v = self.registry.get(model, version)
                path = v.path / REFERENCE
                ref = json.loads(path.read_text()) if path.exists() else None
                self._cache[key] = Served(
                    model, version, role, ModelSpec.parse(v.spec), v.spec, ref
                )
            except (OSError, ValueError) as e:
                log.warning("%s %s cannot be monitored: %s", model, version, e)
                self._cache[key] = None
        s = self._cache[key]
        return (
            None if s is None else Served(s.model, s.version, role, s.spec, s.raw_spec, s.reference)
        )

    def serving(self, model: str) -> list[Served]:
        if time.monotonic() - self._checked > self.check_s:
            self._roles = {m: self.registry.roles(m) for m in self.models}
            self._checked = time.monotonic()
        roles = self._roles.get(model, {})
        out = [self.version(model, roles[r], r) for r in ROLES if r in roles]
        return [s for s in out if s is not None]


def parse_items(text: str | None, width: int) -> list[list[str]]:
    """`a|b|c;a|b|c` → [[a, b, c], …] (items of another width are skipped)."""
    items = [i.split("|") for i in (text or "").split(";") if i]
    return [i for i in items if len(i) == width]


def _event(
    s: Served,
    metric: str,
    feature: str | None,
    value: float,
    threshold: float,
    n: float,
    severity: str,
    evidence: dict[str, Any],
    reference: float | None = None,
) -> dict[str, Any]:
    return {
        "model_name": s.model,
        "model_version": s.version,
        "role": s.role,
        "metric": metric,
        "feature": feature,
        "value": float(value) if math.isfinite(value) else -1.0,
        "threshold": float(threshold) if math.isfinite(threshold) else -1.0,
        "reference": reference,
        "n": int(n),
        "breach": severity != "ok",
        "severity": severity,
        "evidence_json": json.dumps(evidence, default=float, separators=(",", ":")),
    }


def _psi_judgement(
    ref: dict[str, Any],
    counts: dict[int, float],
    patients: float,
    m: Monitor,
    alpha: float,
    measured_patients: float | None = None,
) -> tuple[float, float, str, dict[str, Any]]:
    """PSI over the reference bins; judged when the window has `min_patients_psi` patients
    with a measured value (a lab's bins are otherwise a handful of patients' values)."""
    expected, actual = monitor.binned(ref, counts)
    value = monitor.psi(expected, actual)
    reference_n = ref.get("patients") or ref.get("n") or 1
    chance = monitor.psi_critical(len(expected), patients, reference_n, alpha)
    judged = min(patients, patients if measured_patients is None else measured_patients) >= (
        m.min_patients_psi
    )
    severity = "ok"
    if judged and value > chance:
        severity = (
            "critical" if value >= m.psi_critical else "warning" if value >= m.psi_warning else "ok"
        )
    evidence = {
        "patients": patients,
        "judged": judged,
        "chance_bound": round(chance, 4),
        "expected": [round(float(x), 4) for x in expected],
        "actual": [round(float(x), 4) for x in actual / max(actual.sum(), 1)],
    }
    return value, max(m.psi_warning, chance), severity, evidence


def input_drift(served: Iterable[Served], cells_text: str | None) -> list[dict[str, Any]]:
    """PSI and KS of every monitored input of every serving version against its reference."""
    counts: dict[str, dict[int, float]] = {}
    for feature, cell, k in parse_items(cells_text, 3):
        counts.setdefault(feature, {})[int(cell)] = float(k)
    window_patients = counts.get(ALL, {}).get(PATIENTS, 0.0)
    out = []
    for s in served:
        if s.reference is None:
            continue
        m = s.spec.monitor
        features = [f for f in s.reference["features"] if f in counts]
        alpha = m.alpha / max(len(features), 1)  # Bonferroni over the version's features
        for f in features:
            ref, c = s.reference["features"][f], dict(counts[f])  # shared by the versions
            measured_patients = c.pop(PATIENTS, 0.0)
            n = sum(c.values())
            ref = {**ref, "patients": s.reference.get("features_from", {}).get("patients")}
            value, threshold, severity, evidence = _psi_judgement(
                ref, c, window_patients, m, alpha, measured_patients
            )
            out.append(_event(s, "psi", f, value, threshold, n, severity, evidence))
            d, measured = monitor.ks(ref, c)
            rho = ref.get("icc_12h", 1.0)
            n_eff = monitor.effective_n(measured, measured_patients, rho)
            critical = monitor.ks_critical(n_eff, alpha)
            judged = measured_patients >= m.min_patients
            breach = judged and d > critical
            ks_evidence = {
                "measured": measured,
                "measured_patients": measured_patients,
                "icc": rho,
                "effective_n": round(n_eff, 1),
                "alpha_per_feature": alpha,
                "judged": judged,
                "missing_share": round(c.get(-1, 0.0) / max(n, 1.0), 4),
                "reference_missing_share": ref["missing_share"],
            }
            out.append(
                _event(s, "ks", f, d, critical, n, "warning" if breach else "ok", ks_evidence)
            )
    return out


def score_drift(s: Served, cells_text: str | None) -> list[dict[str, Any]]:
    """Score PSI and alert rate of one serving version against its validation reference."""
    counts: dict[int, float] = {}
    alerts = flagged = patients = 0.0
    for cell, k, a, fl in parse_items(cells_text, 4):
        if int(cell) == PATIENTS:
            patients = float(k)
            continue
        counts[int(cell)] = counts.get(int(cell), 0.0) + float(k)
        alerts, flagged = alerts + float(a), flagged + float(fl)
    n = sum(counts.values())
    ref, m = s.reference, s.spec.monitor
    out: list[dict[str, Any]] = []
    if ref is None or n == 0:
        return out
    score_ref = {**ref["score"], "patients": ref.get("score_from", {}).get("patients")}
    value, threshold, severity, evidence = _psi_judgement(score_ref, counts, patients, m, m.alpha)
    out.append(_event(s, "score_psi", None, value, threshold, n, severity, evidence))
    r0 = score_ref.get("alert_rate")
    if r0 and flagged > 0:
        rate = alerts / flagged
        se = math.sqrt(r0 * (1 - r0) / max(patients, 1.0))
        z = (rate - r0) / se if se > 0 else 0.0
        significant = abs(z) > stats.norm.isf(m.alpha / 2)
        ratio = rate / r0
        judged = patients >= m.min_patients
        breach = (
            judged
            and significant
            and (ratio >= m.alert_rate_ratio or ratio <= 1 / m.alert_rate_ratio)
        )
        high = rate >= r0
        out.append(
            _event(
                s,
                "alert_rate",
                None,
                rate,
                r0 * m.alert_rate_ratio if high else r0 / m.alert_rate_ratio,
                flagged,
                "critical" if breach else "ok",
                {
                    "ratio": round(ratio, 3),
                    "z_patients": round(z, 2),
                    "patients": patients,
                    "judged": judged,
                },
                reference=r0,
            )
        )
    return out


def performance(s: Served, cells_text: str | None) -> list[dict[str, Any]]:
    """Delayed AUROC and calibration of one version over its labelled scores."""
    grid_cells = monitor.score_grid(s.spec.task).cells
    n = np.zeros(grid_cells)
    pos = np.zeros(grid_cells)
    total = np.zeros(grid_cells)
    patients = positive_patients = 0.0
    for cell, k, p, ssum in parse_items(cells_text, 4):
        c = int(cell)
        if c == PATIENTS:
            patients, positive_patients = float(k), float(p)
        elif 0 <= c < grid_cells:
            n[c] += float(k)
            pos[c] += float(p)
            total[c] += float(ssum)
    m = s.spec.monitor
    n_pos, n_all = float(pos.sum()), float(n.sum())
    if n_all == 0 or n_pos == 0 or n_pos == n_all or s.spec.task != "binary":
        return []  # no AUROC without both classes
    judged = n_pos >= m.min_positives and n_all - n_pos >= m.min_positives
    ref_perf = (s.reference or {}).get("performance") or {}
    val = s.raw_spec.get("validation_metrics") or s.raw_spec.get("metrics") or {}
    ref_auroc = ref_perf.get("auroc", val.get("auroc"))
    auc = monitor.auroc(pos, n - pos)
    # a patient's hourly scores share its label: the standard error over patients, not hours
    se = monitor.hanley_mcneil_se(
        auc, max(positive_patients, 1), max(patients - positive_patients, 1)
    )
    upper = auc + stats.norm.isf(m.alpha) * se
    evidence = {
        "positives": n_pos,
        "negatives": n_all - n_pos,
        "patients": patients,
        "positive_patients": positive_patients,
        "judged": judged,
        "se_hanley_mcneil_patients": round(se, 4),
        "upper_bound": round(upper, 4),
    }
    out = []
    if ref_auroc is not None:
        floor = float(ref_auroc) - m.auroc_drop
        breach = judged and upper < floor  # significantly below the floor
        out.append(
            _event(
                s,
                "auroc",
                None,
                auc,
                floor,
                n_all,
                "critical" if breach else "ok",
                evidence,
                reference=float(ref_auroc),
            )
        )
    judged = judged and positive_patients >= m.min_positives
    oe, ece = monitor.calibration(pos, n, total)
    off = judged and (oe > m.calibration_ratio or oe < 1 / m.calibration_ratio)
    out.append(
        _event(
            s,
            "calibration_oe",
            None,
            oe,
            m.calibration_ratio if oe >= 1 else 1 / m.calibration_ratio,
            n_all,
            "warning" if off else "ok",
            evidence,
            reference=ref_perf.get("calibration_oe"),
        )
    )
    out.append(
        _event(
            s,
            "ece",
            None,
            ece,
            m.ece_max,
            n_all,
            "warning" if judged and ece > m.ece_max else "ok",
            evidence,
            reference=ref_perf.get("ece"),
        )
    )
    return out
