"""The promotion decision: the challenger (scored in shadow) becomes champion only when its shadow
AUROC beats the champion's on the same labelled states by the margin
(`settings.promotion_margin_auroc`, 0.01 by default) and the paired bootstrap's lower 95 % bound
of the difference is above zero. Otherwise nothing changes, and the refusal says why.

    python -m training.promote_decision                        # shadow scores in the warehouse
    python -m training.promote_decision --cohort eicu_demo     # both versions on a labelled set
    python -m training.promote_decision --file labelled.parquet --dry-run

Evidence, one of:
- **warehouse** (default): `model_scores` of the champion and the challenger on the same
  screened states (record_id), in the last `--days`, labelled from `outcome_labels` (sepsis_onset):
  a state is positive from 6 h before onset, as in PhysioNet 2019 (Reyna et al., Crit Care Med
  2020), states more than 3 h after onset are dropped, and only patients whose outcome is known
  count. Only the scores of the two versions decided on count, each in its role, and only since
  both hold them now (`held_since`: a version made challenger again, or a champion changed
  in the window, never inherits another pair's scores), never before the challenger was
  registered.
- **a labelled evaluation set** (`--file` PhysioNet 2019 format, or `--cohort` of
  training.cohorts): both versions' ONNX score the same patient-hours (training.evaluate.score).

The interval: patients are drawn with replacement (each with all its states; a patient's states
are not independent), both AUROCs computed with the same draw, `--bootstrap` times (Efron &
Tibshirani 1993, percentile interval). A challenger whose gate failed is never promoted (the
registry refuses it too). Every decision is audited (training/audit.py): shadow_evaluated, then
promoted or promotion_refused, with the numbers.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from schemas.settings import Settings
from training import cohorts
from training.audit import AuditTrail, service
from training.evaluate import score
from training.features import hourly_features
from training.retrain import LABEL_LEAD_H, LABEL_TABLE, SEPSIS_OUTCOME, STAY_AFTER_ONSET_H
from training.splits import split_of
from udfs.registry import Registry, Version

MODULE = "training.promote_decision"
BOOTSTRAP_SAMPLES = 500


@dataclass(frozen=True)
class Shadow:
    """Both versions' risk on the same labelled states: columns patient_id, label, champion,
    challenger (one row per state)."""

    frame: pd.DataFrame
    source: str


@dataclass(frozen=True)
class Decision:
    model: str
    champion: str
    challenger: str
    source: str
    states: int
    patients: int
    septic_patients: int
    champion_auroc: float
    challenger_auroc: float
    delta_auroc: float
    delta_ci95: tuple[float, float]
    margin: float
    challenger_gate_passed: bool
    promote: bool
    why: str


def paired_bootstrap(
    frame: pd.DataFrame, samples: int = BOOTSTRAP_SAMPLES, seed: int = 2019
) -> tuple[float, float]:
    """Percentile 95 % interval of AUROC(challenger) − AUROC(champion), patients resampled."""
    codes = pd.factorize(frame["patient_id"])[0]
    n = int(codes.max()) + 1
    y = frame["label"].to_numpy()
    a, b = frame["champion"].to_numpy(), frame["challenger"].to_numpy()
    rng = np.random.default_rng(seed)
    deltas = []
    for _ in range(samples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)[codes]
        if len(np.unique(y[w > 0])) < 2:
            continue
        deltas.append(roc_auc_score(y, b, sample_weight=w) - roc_auc_score(y, a, sample_weight=w))
    lo, hi = np.percentile(deltas, [2.5, 97.5])
    return round(float(lo), 4), round(float(hi), 4)


def decide(
    shadow: Shadow,
    champion: Version,
    challenger: Version,
    margin: float,
    samples: int = BOOTSTRAP_SAMPLES,
) -> Decision:
    f = shadow.frame
    y = f["label"].to_numpy()
    septic = int(f.groupby("patient_id")["label"].max().sum())
    if len(np.unique(y)) < 2:
        raise ValueError(f"{shadow.source}: the labelled states hold one class only")
    auc_a = float(roc_auc_score(y, f["champion"]))
    auc_b = float(roc_auc_score(y, f["challenger"]))
    delta = round(auc_b - auc_a, 4)
    ci = paired_bootstrap(f, samples)
    gate_ok = bool(challenger.spec["gate"]["passed"])
    if not gate_ok:
        why = "the challenger failed its gate: it can never be champion"
    elif delta < margin:
        why = f"AUROC gain {delta:+.4f} is below the margin {margin:.4f}"
    elif ci[0] <= 0:
        why = f"AUROC gain {delta:+.4f} ≥ margin, but its 95 % interval {list(ci)} includes 0"
    else:
        why = f"AUROC gain {delta:+.4f} ≥ margin {margin:.4f}, 95 % interval {list(ci)} above 0"
    return Decision(
        model=champion.model,
        champion=champion.version,
        challenger=challenger.version,
        source=shadow.source,
        states=len(f),
        patients=int(f["patient_id"].nunique()),
        septic_patients=septic,
        champion_auroc=round(auc_a, 4),
        challenger_auroc=round(auc_b, 4),
        delta_auroc=delta,
        delta_ci95=ci,
        margin=margin,
        challenger_gate_passed=gate_ok,
        promote=gate_ok and delta >= margin and ci[0] > 0,
        why=why,
    )


def apply(decision: Decision, reg: Registry, trail: AuditTrail, *, dry_run: bool = False) -> None:
    """Audit the shadow evaluation and the verdict; promote when the decision says so."""
    d, evidence = decision, asdict(decision)
    trail.record(
        d.model, "shadow_evaluated", version=d.challenger,
        action=f"compared challenger v{d.challenger} with champion v{d.champion} on "
        f"{d.states} states of {d.patients} patients ({d.source})",
        reason=f"AUROC {d.challenger_auroc:.4f} vs {d.champion_auroc:.4f}", evidence=evidence,
    )  # fmt: skip
    if not d.promote or dry_run:
        why = d.why + (" (dry run: nothing changed)" if dry_run and d.promote else "")
        trail.record(
            d.model, "promotion_refused", version=d.challenger,
            action=f"v{d.challenger} stays challenger; v{d.champion} stays champion",
            reason=why, evidence=evidence,
        )  # fmt: skip
        return
    before = reg.roles(d.model)
    reg.promote(d.model, d.challenger)
    trail.record(
        d.model, "promoted", version=d.challenger,
        action=f"v{d.challenger} is champion (was v{d.champion})", reason=d.why,
        evidence={**evidence, "before": before, "after": reg.roles(d.model)},
    )  # fmt: skip


def evaluation_set(
    raw: pd.DataFrame, champion: Version, challenger: Version, name: str, *, split: str = "test"
) -> Shadow:
    """Both versions scored on every patient-hour of a PhysioNet 2019 format frame; `split`
    "test" keeps only the patients of the keyed-hash test split (training.splits), which no
    version trained by training.train or training.retrain has trained or tuned on."""
    if split != "all":
        raw = raw[raw["patient_id"].astype(str).map(split_of) == split]
        name = f"{name}, {split} split"
    return paired(hourly_features(raw), champion, challenger, name)


def paired(features: pd.DataFrame, champion: Version, challenger: Version, name: str) -> Shadow:
    """Both versions' risk on the same patient-hours (training.features.hourly_features rows)."""
    frame = pd.DataFrame(
        {
            "patient_id": features["patient_id"],
            "label": features["label"].astype(int),
            "champion": score(champion, features),
            "challenger": score(challenger, features),
        }
    )
    return Shadow(frame, name)


def held_since(reg: Registry, model: str, role: str, version: str) -> datetime | None:
    """When `version` last took `role` and has held it since (the history's trailing run of
    role changes that leave it there); None where the history does not show it holding it."""
    since: datetime | None = None
    for entry in reg.history(model):
        if entry["roles"].get(role) == version:
            since = since or datetime.fromisoformat(entry["at"])
        else:
            since = None
    return since


def warehouse_shadow(
    client: Any, db: str, model: str, since: datetime, champion: str, challenger: str
) -> Shadow:
    """The shadow scores of `champion` and `challenger` (versions, each in that role) on the same
    states loaded since `since` (wall clock: `loaded_at`; a replay's event times may be long
    past), labelled."""
    f = client.query_df(
        f"""
        SELECT c.patient_token AS patient_id, c.model_version AS champion_version,
               s.model_version AS challenger_version, c.risk AS champion, s.risk AS challenger,
               c.event_time AS event_time, l.septic AS septic, l.onset AS onset
        FROM (SELECT * FROM {db}.model_scores FINAL
              WHERE model_name = %(m)s AND role = 'champion' AND model_version = %(cv)s
                AND loaded_at >= %(s)s) AS c
        INNER JOIN (SELECT * FROM {db}.model_scores FINAL
              WHERE model_name = %(m)s AND role = 'challenger' AND model_version = %(sv)s
                AND loaded_at >= %(s)s) AS s
            ON s.record_id = c.record_id
        INNER JOIN (SELECT patient_token, max(occurred) AS septic,
                           minIf(outcome_time, occurred) AS onset
                    FROM {db}.{LABEL_TABLE} FINAL WHERE outcome = '{SEPSIS_OUTCOME}'
                    GROUP BY patient_token) AS l
            ON l.patient_token = c.patient_token
        """,
        parameters={"m": model, "s": since, "cv": champion, "sv": challenger},
    )
    if f.empty:
        return Shadow(pd.DataFrame(columns=["patient_id", "label", "champion", "challenger"]), "")
    t = pd.to_datetime(f["event_time"], utc=True)
    onset = pd.to_datetime(f["onset"], utc=True).where(f["septic"].astype(bool))
    f["label"] = (t >= onset - pd.Timedelta(hours=LABEL_LEAD_H)).astype(int)
    f = f[(onset.isna() | (t <= onset + pd.Timedelta(hours=STAY_AFTER_ONSET_H))).to_numpy()]
    versions = zip(f.champion_version, f.challenger_version, strict=True)
    pairs = sorted({f"{a}→{b}" for a, b in versions})
    return Shadow(
        f[["patient_id", "label", "champion", "challenger"]].reset_index(drop=True),
        f"warehouse shadow scores loaded since {since:%Y-%m-%d %H:%M} (champion→challenger "
        f"{', '.join(pairs)})",
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default="sepsis-risk")
    ap.add_argument("--file", type=Path, default=None, help="labelled PhysioNet 2019 parquet")
    ap.add_argument("--cohort", choices=sorted(cohorts.COHORTS), default=None)
    ap.add_argument("--split", choices=["test", "all"], default="test", help="of --file/--cohort")
    ap.add_argument("--days", type=float, default=30.0, help="warehouse: days of shadow scores")
    ap.add_argument("--bootstrap", type=int, default=BOOTSTRAP_SAMPLES)
    ap.add_argument("--dry-run", action="store_true", help="decide and audit, change nothing")
    ap.add_argument("--actor", default=service(MODULE))
    ap.add_argument("--no-publish", action="store_true", help="audit to audit.jsonl only")
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    reg = Registry(settings.model_registry)
    champion, challenger = reg.role(a.model, "champion"), reg.role(a.model, "challenger")
    if champion is None or challenger is None:
        print(f"{a.model}: needs a champion and a challenger (roles {reg.roles(a.model)})")
        raise SystemExit(1)
    if a.file or a.cohort:
        if a.file:
            raw = pd.read_parquet(a.file)
            shadow = evaluation_set(raw, champion, challenger, a.file.name, split=a.split)
        else:
            folder = settings.data_dir / "yaib_demo_sepsis" / a.cohort
            raw = cohorts.yaib_to_physionet(folder, prefix=f"{a.cohort}:")
            name = cohorts.COHORTS[a.cohort]
            shadow = evaluation_set(raw, champion, challenger, name, split=a.split)
    else:
        from sinks import clickhouse

        client = clickhouse.connect(settings.clickhouse_url)
        # Only states scored since the challenger was registered (none it could have trained
        # on) and since both versions hold their roles now (no other pair's scores)
        registered = datetime.fromisoformat(challenger.spec["registered_at"])
        held = [
            held_since(reg, a.model, role, v.version)
            for role, v in (("champion", champion), ("challenger", challenger))
        ]
        since = max(datetime.now(UTC) - timedelta(days=a.days), registered, *[h for h in held if h])
        shadow = warehouse_shadow(
            client, settings.clickhouse_database, a.model, since, champion.version,
            challenger.version,
        )  # fmt: skip
        if shadow.frame.empty:
            print("no labelled shadow scores in the warehouse: nothing decided")
            raise SystemExit(1)
    d = decide(shadow, champion, challenger, settings.promotion_margin_auroc, a.bootstrap)
    trail = AuditTrail(reg, a.actor, None if a.no_publish else settings, a.topic_prefix)
    apply(d, reg, trail, dry_run=a.dry_run)
    print(
        f"champion v{d.champion} AUROC {d.champion_auroc:.4f}, challenger v{d.challenger} "
        f"{d.challenger_auroc:.4f}, gain {d.delta_auroc:+.4f} [95 % {d.delta_ci95[0]:+.4f}, "
        f"{d.delta_ci95[1]:+.4f}] on {d.states} states of {d.patients} patients "
        f"({d.septic_patients} septic): {'PROMOTED' if d.promote else 'not promoted'}: {d.why}"
    )


if __name__ == "__main__":
    main()
