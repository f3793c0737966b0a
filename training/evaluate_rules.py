"""Evaluate the sepsis screening rules on a PhysioNet/CinC 2019 format file, through the job.

Replays the file (set A by default) into fresh topics, runs the screening job over them to the
end, reads back the screened states and the alert lifecycle, and scores every rule against the
hourly SepsisLabel, per alert policy:

- `open`: the rule predicts sepsis at every hour its alert is open (raise ≤ t < resolve);
- `raise`: only at the hours an alert is raised or escalated (what a pager would see).

Writes a Markdown report with a plot, and prints a summary as its last line.
"""

from __future__ import annotations

import argparse
import subprocess
import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
from sklearn.metrics import roc_auc_score, roc_curve

from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from jobs.runtime.watch import exit_on_failure
from jobs.screening import rules as sepsis_rules
from jobs.screening.scoring import MODEL_RULE
from schemas import codec, load_schema, phi, topics
from schemas.settings import Settings
from training.metrics import DT_EARLY, DT_LATE, normalized_utility, onset_row
from udfs.registry import Registry

SCORES = ("news2_score", "sirs_count", "qsofa_score", "sofa_partial_score")
POLICIES = ("open", "raise")


@dataclass
class Cohort:
    """Hourly rows of every patient with the job's outputs joined to them."""

    hours: pd.DataFrame  # patient_id, ICULOS, SepsisLabel, scores, row (0-based), time (UTC)
    alerts: pd.DataFrame  # one row per alert: rule_id, patient_id, raised, resolved
    pages: pd.DataFrame  # raises and escalations: rule_id, patient_id, event_time
    rows: dict[Any, npt.NDArray[np.intp]]  # patient -> positions in `hours`
    onset: dict[Any, int | None]  # patient -> onset row (challenge definition)
    row_of: dict[tuple[Any, Any], int]  # (patient, hour's time) -> row


def run_job(settings: Settings, df: pd.DataFrame, plan: replay.ReplayPlan, source: str) -> str:
    prefix = f"eval-{uuid.uuid4().hex[:8]}."
    items = replay.clinical_stream(df, plan, settings.require_phi_key(), source)
    kafka_io.ensure_topics(
        settings, sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics, prefix=prefix
    )
    replay.produce_stream(settings, items, prefix=prefix, total=len(items))
    t0 = time.monotonic()
    sepsis_screen.JOB.run(settings, prefix=prefix, bounded=True)
    print(f"job: {len(items)} records in {time.monotonic() - t0:.0f} s")
    return prefix


def _read(
    settings: Settings, topic: str, schema_name: str, fields: tuple[str, ...]
) -> pd.DataFrame:
    """Only the needed fields of every record (a full set A is over a million records)."""
    schema = load_schema(schema_name)
    cols: dict[str, list[Any]] = {f: [] for f in fields}
    for m in kafka_io.read_all(settings, topic, timeout_s=600):
        rec = codec.decode(schema, m.value)
        if isinstance(rec, codec.Rejection):
            raise ValueError(f"{topic}@{m.partition}:{m.offset}: {rec.reason}")
        for f in fields:
            cols[f].append(rec[f])
    return pd.DataFrame(cols)


def _naive_utc(s: pd.Series[Any]) -> pd.Series[Any]:
    return pd.to_datetime(s, utc=True).dt.tz_convert(None)


def collect(
    settings: Settings, prefix: str, df: pd.DataFrame, plan: replay.ReplayPlan, source: str
) -> Cohort:
    key = settings.require_phi_key()
    admit = replay.admissions(df, plan)
    tokens = {phi.token(key, source, str(pid)): pid for pid in admit}
    screen = _read(
        settings,
        prefix + topics.SEPSIS_SCREEN.name,
        topics.SEPSIS_SCREEN.name,
        ("record_id", "record_kind", *SCORES),
    )
    screen = screen[screen["record_kind"] != "adt"]
    parts = screen["record_id"].str.split(":", expand=True)
    screen = screen.assign(patient_id=parts[0].map(tokens), ICULOS=parts[1].astype(int))
    # vitals and labs of one hour share one state; a dead-lettered hour keeps the last state
    per_hour = screen.groupby(["patient_id", "ICULOS"])[list(SCORES)].max()
    hours = df[["patient_id", "ICULOS", "SepsisLabel"]].reset_index(drop=True)
    hours = hours.join(per_hour, on=["patient_id", "ICULOS"])
    hours[list(SCORES)] = hours.groupby("patient_id")[list(SCORES)].ffill().fillna(0)
    hours["row"] = hours.groupby("patient_id").cumcount()
    hours["time"] = _naive_utc(hours["patient_id"].map(admit)) + pd.to_timedelta(
        hours["ICULOS"], unit="h"
    )

    ev = _read(
        settings,
        prefix + topics.ALERT_V2.name,
        topics.ALERT_V2.name,
        ("alert_id", "rule_id", "action", "patient_token", "event_time"),
    )
    ev["patient_id"] = ev["patient_token"].map(tokens)
    ev["event_time"] = _naive_utc(ev["event_time"])
    raised = ev[ev["action"] == "raise"].set_index("alert_id")
    resolved = ev[ev["action"] == "resolve"].set_index("alert_id")["event_time"]
    alerts = (
        raised[["rule_id", "patient_id", "event_time"]]
        .rename(columns={"event_time": "raised"})
        .join(resolved.rename("resolved"))
        .reset_index()
    )
    pages = ev[ev["action"].isin(["raise", "escalate"])][["rule_id", "patient_id", "event_time"]]
    groups = hours.groupby("patient_id")
    rows = {pid: g.index.to_numpy() for pid, g in groups}
    onset = {pid: onset_row(g["SepsisLabel"].to_numpy()) for pid, g in groups}
    row_of = dict(
        zip(zip(hours["patient_id"], hours["time"], strict=True), hours["row"], strict=True)
    )
    return Cohort(hours, alerts, pages, rows, onset, row_of)


def predictions(c: Cohort, rule_ids: Collection[str], policy: str) -> npt.NDArray[np.bool_]:
    """Boolean per hourly row: any of the rules predicts sepsis under the policy."""
    pred = np.zeros(len(c.hours), dtype=bool)
    times = c.hours["time"].to_numpy()
    if policy == "open":
        a = c.alerts[c.alerts["rule_id"].isin(list(rule_ids))]
        for pid, start, end in a[["patient_id", "raised", "resolved"]].itertuples(index=False):
            r = c.rows[pid]
            pred[r[(times[r] >= start) & (pd.isna(end) | (times[r] < end))]] = True
    else:
        p = c.pages[c.pages["rule_id"].isin(list(rule_ids))]
        for pid, at in p[["patient_id", "event_time"]].itertuples(index=False):
            r = c.rows[pid]
            pred[r[times[r] == at]] = True
    return pred


def rule_metrics(c: Cohort, rule_ids: Collection[str], policy: str) -> dict[str, float]:
    pred = predictions(c, rule_ids, policy)
    labels = c.hours["SepsisLabel"].to_numpy()
    utility = normalized_utility((labels[r], pred[r]) for r in c.rows.values())
    a = c.alerts[c.alerts["rule_id"].isin(list(rule_ids))]
    leads: dict[Any, int] = {}
    in_window = 0
    for pid, raised in a[["patient_id", "raised"]].itertuples(index=False):
        r, t = c.row_of.get((pid, raised)), c.onset[pid]
        if r is None or t is None:
            continue
        in_window += t + DT_EARLY <= r <= t + DT_LATE
        if r <= t + DT_LATE:
            leads[pid] = max(leads.get(pid, t - r), t - r)
    septic = sum(t is not None for t in c.onset.values())
    return {
        "utility": utility,
        "sensitivity": len(leads) / septic if septic else float("nan"),
        "ppv": in_window / len(a) if len(a) else float("nan"),
        "lead_h": float(np.median(list(leads.values()))) if leads else float("nan"),
        "alerts_per_patient_day": len(a) / (len(c.hours) / 24),
        "alerts": float(len(a)),
    }


def markdown_table(df: pd.DataFrame) -> str:
    def cell(v: Any) -> str:
        return f"{v:.3f}" if isinstance(v, float) else str(v)

    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(False)]
    return "\n".join(lines)


def report(
    c: Cohort, source: str, out: Path, elapsed_s: float, model: str = ""
) -> tuple[str, dict[str, Any]]:
    """The report's Markdown and summary; `model`: the scoring model's version when the job
    scored (its alerts then have their own row), else ''."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    h = c.hours
    y = h["SepsisLabel"].to_numpy()
    aurocs = {s: float(roc_auc_score(y, h[s])) for s in SCORES}
    rules_only = [r.rule_id for r in sepsis_rules.RULES]
    # The model's alerts (scoring on) get their own row and are named in the "any" rows.
    rows_for: list[tuple[str, str, str, list[str]]] = [
        (r.rule_id, r.version, r.score, [r.rule_id]) for r in sepsis_rules.RULES
    ]
    if model:
        rows_for.append((MODEL_RULE, model, "", [MODEL_RULE]))
    rows_for.append(("any rule (rules only)", "", "", rules_only))
    if model:
        rows_for.append(("any alert (rules + model)", "", "", [*rules_only, MODEL_RULE]))
    rows = []
    for name, version, score, ids in rows_for:
        for policy in POLICIES:
            m = rule_metrics(c, ids, policy)
            rows.append(
                {
                    "rule": name,
                    "version": version,
                    "policy": policy,
                    "auroc": aurocs.get(score, float("nan")),
                    **m,
                }
            )
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5))
    for s in SCORES:
        fpr, tpr, _ = roc_curve(y, h[s])
        ax1.plot(fpr, tpr, label=f"{s} (AUROC {aurocs[s]:.3f})")
    ax1.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax1.set(
        xlabel="1 - specificity (hourly)",
        ylabel="sensitivity (hourly)",
        title="Scores vs SepsisLabel",
    )
    ax1.legend(fontsize=8)
    pivot = table.pivot(index="rule", columns="policy", values="utility")
    pivot.plot.barh(ax=ax2)
    ax2.axvline(0, color="k", lw=0.8)
    ax2.set(xlabel="normalised utility (PhysioNet 2019)", ylabel="", title="Rules by policy")
    fig.tight_layout()
    fig.savefig(out / "sepsis_screen.png", dpi=110)
    patients = h["patient_id"].nunique()
    septic = int(h.groupby("patient_id")["SepsisLabel"].max().sum())
    fmt = table.assign(
        lead_h=table["lead_h"].map(lambda v: f"{v:.0f}"),
        alerts=table["alerts"].map(lambda v: f"{v:.0f}"),
    )
    md = "\n".join(
        [
            "# Sepsis screening rules: evaluation through the streaming job",
            "",
            f"Data: `{source}`, {patients} patients ({septic} septic), {len(h)} patient-hours. "
            f"Generated {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by "
            "`python -m training.evaluate_rules` "
            f"(job + read-back {elapsed_s:.0f} s).",
            "",
            "Definitions: *utility* is the PhysioNet/CinC 2019 normalised utility (official "
            "definition); *AUROC* is hourly, of the rule's score against SepsisLabel; "
            "*sensitivity*: septic patients with an alert raised no later than 3 h after onset "
            "(onset = first positive label + 6 h, as in the challenge); *PPV*: alerts raised "
            "12 h before to 3 h after onset of a septic patient, over all alerts; *lead*: median "
            "hours from the first such alert to onset; *alerts/patient-day*: raises per 24 "
            "patient-hours. Policy `open` predicts while an alert is open; `raise` only at raise "
            "and escalation.",
            "",
            markdown_table(fmt),
            "",
            "![ROC and utility](sepsis_screen.png)",
            "",
        ]
    )
    (out / "README.md").write_text(md)
    best = table[table["rule"] == "any rule (rules only)"].set_index("policy")
    summary = {
        "patients": patients,
        "auroc_news2": aurocs["news2_score"],
        "utility_any_open": float(best["utility"].loc["open"]),
    }
    return md, summary


def tracked_files(out: Path) -> list[str]:
    """Files under `out` that git tracks (none when git or the checkout is not there)."""
    try:
        done = subprocess.run(
            ["git", "ls-files", "--", str(out.resolve())],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError:
        return []
    return done.stdout.split() if done.returncode == 0 else []


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--file",
        type=Path,
        default=None,
        help="PhysioNet 2019 format parquet (default: set A from the data dir)",
    )
    ap.add_argument("--patients", type=int, default=0, help="random subset; 0 = all")
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument(
        "--out",
        type=Path,
        default=Path("build/sepsis_screen"),
        help="report folder; one holding files tracked by git is refused (the committed report "
        "is regenerated on purpose: --out reports/sepsis_screen --overwrite-tracked)",
    )
    ap.add_argument("--overwrite-tracked", action="store_true")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a, job_name="sepsis_screen_evaluation")
    settings = replace(settings, phi_key=settings.require_phi_key())
    tracked = tracked_files(a.out)
    if tracked and not a.overwrite_tracked:
        raise SystemExit(
            f"{a.out} holds files tracked by git ({', '.join(tracked[:3])}): choose another "
            "--out (OUT=), or pass --overwrite-tracked to regenerate the committed report"
        )
    kafka_io.wait_for_broker(settings)
    df, source = replay.load_physionet(a.file, settings)
    plan = replay.ReplayPlan(patients=a.patients or 10**9, seed=a.seed)
    df = replay.select_patients(df, plan).sort_values(["patient_id", "ICULOS"])
    t0 = time.monotonic()
    with exit_on_failure():  # which dependency failed, the logs, the restarts; its exit status
        prefix = run_job(settings, df, plan, source)
    cohort = collect(settings, prefix, df, plan, source)
    kafka_io.delete_topics(
        settings, sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics, prefix=prefix
    )
    model = ""
    if settings.scoring:
        champion = Registry(settings.model_registry).role(settings.model_name, "champion")
        model = f"{settings.model_name} v{champion.version}" if champion else ""
    md, s = report(cohort, source, a.out, time.monotonic() - t0, model)
    print(md)
    print(
        f"patients={s['patients']} auroc_news2={s['auroc_news2']:.4f} "
        f"utility_any_rule_open={s['utility_any_open']:.4f} report={a.out / 'README.md'}"
        + (f" model_alerts={model}" if model else "")
    )


if __name__ == "__main__":
    main()
