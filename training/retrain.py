"""Automated retraining: a model-monitor breach (or a schedule) triggers a retrain on the original
training data plus recent labelled data; the candidate goes through the validation report, the
subgroup gate and the ONNX parity test, and only a passing candidate is registered, as the
challenger (scored in shadow). No step here makes a champion: promotion is
`python -m training.promote_decision`, on the challenger's shadow metrics.

    python -m training.retrain --trigger monitor                 # the latest unhandled breach
    python -m training.retrain --trigger schedule --recent-cohort eicu_demo
    python -m training.retrain --trigger monitor --breach breach.json --recent new.parquet

Triggers:
- **monitor**: a `model.monitor.v1` event with breach = true for the model, not yet acted on
  (an audit event `trigger_received` names each breach it acted on), read from the warehouse's
  `model_monitor` table (`--breach-source warehouse`, default), from the Kafka topic
  (`--breach-source kafka`), or given as a JSON record (`--breach FILE`). No breach: nothing
  is trained, and the command says so.
- **schedule**: run from cron or a Kubernetes CronJob; the trigger records the schedule's name.

Data: the original training data (set A by default, `--base`; `--base-patients N` draws N of
its patients, seeded, for a quick run) plus the recent labelled data: a PhysioNet 2019 format
parquet (`--recent FILE`), a YAIB cohort converted by training.cohorts (`--recent-cohort
eicu_demo`), and/or the warehouse's screened states with their sepsis-onset labels
(`--recent-warehouse DAYS`: sepsis_screen rows loaded in the last DAYS, labelled from
`outcome_labels`; see `warehouse_frame`). Recent patients' ids are prefixed with their source,
so they never collide with set A's, and they fall into the same keyed-hash split (70/15/15).
The combined data are written to `--work`/training_data.parquet; the version's spec records
that file's SHA-256 and each source's own hash and patient count.

The candidate is of the champion's model family (trees or MLP, its spec's `family`; trees with the
champion's parameters: the recipe refitted on the new data, not searched again). The gate
(`Policy`): the existing subgroup gate (training.validation.gate: no subgroup with at least 20
septic test patients more than 0.05 AUROC below overall), the ONNX parity test (max |training
library − onnxruntime| ≤ 1e-5 on 2,000 validation rows), and a floor: the candidate's AUROC on
its test patients at most 0.05 below the champion's on the same patients (a retrain that made
the model clearly worse is not a challenger; one within the floor still has to win in shadow),
compared when the test patients hold at least `min_septic_patients` septic ones (fewer give an
AUROC too noisy to refuse on; the spec and the audit record both numbers either way). Every
step is an audit event (training/audit.py): trigger_received, retrain_started, candidate_built,
gate_passed or gate_failed, registered, challenger_set.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from schemas import topics
from schemas.physionet import LABS, VITALS
from schemas.settings import Settings
from training import cohorts, train, validation
from training.audit import AuditTrail, service
from udfs.registry import GateFailed, Registry, Version, sha256

MODULE = "training.retrain"
MONITOR_TABLE = "model_monitor"
LABEL_TABLE = "outcome_labels"
MONITOR_TOPIC = topics.MODEL_MONITOR.name
SEPSIS_OUTCOME = "sepsis_onset"
# PhysioNet 2019 labels an hour positive from 6 h before Sepsis-3 onset (Reyna et al., Crit Care
# Med 2020), and its stays end 3 h after onset (training/cohorts.py does the same for YAIB).
LABEL_LEAD_H, STAY_AFTER_ONSET_H = 6, 3


@dataclass(frozen=True)
class Policy:
    """What a candidate must pass to be registered (the defaults are the existing gate's)."""

    max_auroc_gap: float = validation.MAX_AUROC_GAP
    min_septic_patients: int = validation.MIN_SEPTIC_PATIENTS
    max_parity_abs_diff: float = 1e-5
    max_auroc_below_champion: float = 0.05

    def judge(self, spec: dict[str, Any]) -> validation.Gate:
        auroc = float(spec["metrics"]["auroc"])
        groups = pd.DataFrame(spec["subgroups"])
        g = validation.gate(auroc, groups, self.max_auroc_gap, self.min_septic_patients)
        champ: dict[str, Any] = spec.get("champion_on_test") or {}
        comparable = bool(champ) and champ["septic_patients"] >= self.min_septic_patients
        if comparable and not auroc >= champ["auroc"] - self.max_auroc_below_champion:
            g.reasons.append(
                f"AUROC {auroc:.3f} is more than {self.max_auroc_below_champion} below the "
                f"champion v{champ['version']}'s {champ['auroc']:.3f} on the same "
                f"{champ['patients']} test patients"
            )
        parity = float(spec["onnx_parity_max_abs_diff"])
        if not parity <= self.max_parity_abs_diff:
            g.reasons.append(
                f"ONNX parity: max |training library − onnxruntime| {parity:.2e} exceeds "
                f"{self.max_parity_abs_diff:.0e}"
            )
        return validation.Gate(not g.reasons, g.reasons)


@dataclass(frozen=True)
class Trigger:
    kind: str  # "monitor" or "schedule"
    reason: str
    evidence: dict[str, Any] = field(default_factory=dict)
    breach_id: str | None = None


@dataclass
class Outcome:
    trigger: Trigger
    built: Path | None = None
    gate: validation.Gate | None = None
    version: Version | None = None
    data_sha256: str = ""
    elapsed_s: float = 0.0


# --- triggers ---------------------------------------------------------------------------------


def handled_breaches(reg: Registry, model: str) -> set[str]:
    """The breach event ids a retrain has already acted on (from the audit trail)."""
    return {
        json.loads(e["evidence_json"]).get("breach_event_id", "")
        for e in reg.audit(model)
        if e["step"] == "trigger_received"
    } - {""}


def _when(t: Any) -> pd.Timestamp:
    ts = pd.Timestamp(t)
    return ts.tz_localize("UTC") if ts.tzinfo is None else ts.tz_convert("UTC")


def handled_until(reg: Registry, model: str) -> pd.Timestamp | None:
    """The newest breach time a retrain has acted on: a breach up to then is part of the state
    that retrain answered (a drifted hospital breaches in every window until a new version
    serves; each window's breach must not start another retrain)."""
    times = [
        _when(b["event_time"])
        for e in reg.audit(model)
        if e["step"] == "trigger_received"
        for b in [json.loads(e["evidence_json"]).get("breach") or {}]
        if b.get("event_time") is not None
    ]
    return max(times) if times else None


def is_breach(rec: dict[str, Any], model: str) -> bool:
    return bool(rec.get("breach")) and rec.get("model_name") == model


def latest_breach(
    records: list[dict[str, Any]],
    model: str,
    handled: set[str],
    until: pd.Timestamp | None = None,
) -> Trigger | None:
    """The newest breach of `model` among monitor records that no retrain has acted on: not one
    of `handled`, and later than `until` (`handled_until`)."""
    fresh = [
        r
        for r in records
        if is_breach(r, model)
        and str(r.get("event_id")) not in handled
        and (until is None or r.get("event_time") is None or _when(r["event_time"]) > until)
    ]
    if not fresh:
        return None
    r = max(fresh, key=lambda x: str(x.get("event_time")))
    what = f"{r.get('metric')}" + (f" of {r['feature']}" if r.get("feature") else "")
    reason = (
        f"monitor breach: {what} = {float(r.get('value', float('nan'))):.4g} vs threshold "
        f"{float(r.get('threshold', float('nan'))):.4g} on v{r.get('model_version')} "
        f"({r.get('role', '')}) at {r.get('facility_id', '')}"
    )
    evidence = {"breach_event_id": str(r.get("event_id")), "breach": r}
    return Trigger("monitor", reason, evidence, breach_id=str(r.get("event_id")))


def warehouse_breaches(client: Any, db: str, model: str) -> list[dict[str, Any]]:
    """Breach rows of `model` in the warehouse's model_monitor table ([] when it is absent)."""
    exists = client.query(
        "SELECT count() FROM system.tables WHERE database = %(d)s AND name = %(t)s",
        parameters={"d": db, "t": MONITOR_TABLE},
    ).result_rows[0][0]
    if not exists:
        print(f"warehouse: no table {db}.{MONITOR_TABLE} (not migrated): no breaches to read")
        return []
    r = client.query(
        f"SELECT * FROM {db}.{MONITOR_TABLE} FINAL WHERE model_name = %(m)s AND breach "
        "ORDER BY event_time DESC LIMIT 1000",
        parameters={"m": model},
    )
    return [dict(zip(r.column_names, row, strict=True)) for row in r.result_rows]


def kafka_breaches(settings: Settings, prefix: str = "") -> list[dict[str, Any]]:
    from jobs.runtime import kafka_io

    return kafka_io.read_records(settings, prefix + MONITOR_TOPIC, MONITOR_TOPIC)


# --- data ------------------------------------------------------------------------------------


def sample_patients(raw: pd.DataFrame, n: int | None, seed: int) -> pd.DataFrame:
    """`n` of `raw`'s patients drawn without replacement (all when n is None or larger)."""
    ids = np.sort(raw["patient_id"].unique())
    if n is None or n >= len(ids):
        return raw
    keep = set(np.random.default_rng(seed).choice(ids, n, replace=False))
    return raw[raw["patient_id"].isin(keep)]


def warehouse_frame(client: Any, db: str, since: datetime) -> pd.DataFrame:
    """Screened states loaded since `since` (wall clock: `loaded_at`, so a replay of old event
    times counts as recent) as a PhysioNet 2019 format frame, labelled from
    `outcome_labels` (outcome sepsis_onset): one row per patient-hour with the values that
    became known in that hour: each value in the first state that carries it (carried-forward
    values are not measurements; hourly_features carries them again), so a lab resulted in a
    later hour than its draw (its `_measured_time` the draw's) is in the hour of its result,
    ICULOS from the patient's first state, SepsisLabel 1 from 6 h before onset, the stay cut 3
    h after onset as in the challenge. Only patients whose sepsis outcome is known (a label
    row, true or false) are kept. Age, sex and unit are not in the warehouse: NaN."""
    columns = {**VITALS, **LABS}
    present = set(
        r[0]
        for r in client.query(
            "SELECT name FROM system.columns WHERE database = %(d)s AND table = 'sepsis_screen'",
            parameters={"d": db},
        ).result_rows
    )
    wanted = [f for f in columns.values() if f in present]
    sel = ", ".join(f"{f}, {f}_measured_time" for f in wanted)
    states = client.query_df(
        f"SELECT patient_token, event_time, toStartOfHour(event_time) AS hour, {sel} "
        f"FROM {db}.sepsis_screen FINAL WHERE loaded_at >= %(s)s ORDER BY event_time",
        parameters={"s": since},
    )
    for f in wanted:  # a value where it first appears (grouping drops a null measured time)
        at = states[f"{f}_measured_time"]
        first = states.groupby([states["patient_token"], at])["event_time"].transform("min")
        states[f] = states[f].where(at.notna() & (states["event_time"] == first))
    states = states.drop(columns=["event_time", *(f"{f}_measured_time" for f in wanted)])
    labels = client.query_df(
        f"SELECT patient_token, max(occurred) AS septic, "
        f"minIf(outcome_time, occurred) AS onset FROM {db}.{LABEL_TABLE} FINAL "
        f"WHERE outcome = '{SEPSIS_OUTCOME}' GROUP BY patient_token"
    )
    if states.empty or labels.empty:
        return pd.DataFrame()
    hourly = states.groupby(["patient_token", "hour"], as_index=False).last()
    hourly = hourly.merge(labels, on="patient_token", how="inner")
    first = hourly.groupby("patient_token")["hour"].transform("min")
    out = pd.DataFrame({"patient_id": "warehouse:" + hourly["patient_token"].astype(str)})
    out["ICULOS"] = ((hourly["hour"] - first) / pd.Timedelta(hours=1)).astype("int64") + 1
    for col, f in columns.items():
        out[col] = hourly[f].astype("float64") if f in hourly else np.nan
    onset = pd.to_datetime(hourly["onset"], utc=True).where(hourly["septic"].astype(bool))
    hour = pd.to_datetime(hourly["hour"], utc=True)
    out["SepsisLabel"] = (hour >= onset - pd.Timedelta(hours=LABEL_LEAD_H)).astype("int8")
    keep = onset.isna() | (hour <= onset + pd.Timedelta(hours=STAY_AFTER_ONSET_H))
    for col in ("Age", "Gender", "Unit1", "Unit2"):
        out[col] = np.nan
    kept: pd.DataFrame = out[keep.to_numpy()].reset_index(drop=True)
    return kept


@dataclass
class Source:
    name: str
    frame: pd.DataFrame
    sha256: str  # of the file it came from, or of its rows

    def summary(self) -> dict[str, Any]:
        f = self.frame
        return {
            "name": self.name,
            "sha256": self.sha256,
            "patients": int(f["patient_id"].nunique()),
            "septic_patients": int(f.groupby("patient_id")["SepsisLabel"].max().sum()),
            "rows": len(f),
        }


def frame_sha256(frame: pd.DataFrame) -> str:
    import hashlib

    hashed = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    return hashlib.sha256(hashed.tobytes()).hexdigest()


def combine(sources: list[Source], out: Path) -> Path:
    """The sources' rows in one PhysioNet 2019 format parquet (the candidate's training data)."""
    frames = [s.frame.drop(columns=["hour"], errors="ignore") for s in sources]
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    kept = [f.dropna(axis=1, how="all") for f in frames]  # all-NaN columns: added back below
    data = pd.concat(kept, ignore_index=True).reindex(columns=columns)
    data = data.sort_values(["patient_id", "ICULOS"], kind="stable").reset_index(drop=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    data.to_parquet(out, index=False)
    return out


# --- the run ---------------------------------------------------------------------------------


def build_candidate(
    sources: list[Source],
    work: Path,
    *,
    epochs: int,
    seed: int,
    how: train.Recipe,
    champion: Version | None = None,
) -> Path:
    """Train, validate and export a candidate (training.train.build) on the sources' rows by
    the recipe `how` (the champion's: `train.recipe`); its spec records each source, and the
    champion's AUROC on the candidate's test patients. Returns the built folder (model.onnx,
    spec.json, report)."""
    data = combine(sources, work / "training_data.parquet")
    built = train.build(
        data, work / "candidate", epochs=epochs, seed=seed, hidden=how.hidden,
        champion=champion, family=how.family, grid=how.grid,
    )  # fmt: skip
    spec = json.loads((built / "spec.json").read_text())
    spec["training_data"]["sources"] = [s.summary() for s in sources]
    (built / "spec.json").write_text(json.dumps(spec, indent=1, default=float) + "\n")
    return built


def admit(
    built: Path, reg: Registry, trail: AuditTrail, policy: Policy, trigger: Trigger
) -> tuple[validation.Gate, Version | None]:
    """Judge a built candidate by `policy`; register a passing one as challenger. A failing one
    is never registered (so it can never be scored or promoted)."""
    spec = json.loads((built / "spec.json").read_text())
    model = spec["name"]
    g = policy.judge(spec)
    spec["gate"] = {"passed": g.passed, "reasons": g.reasons, "policy": asdict(policy)}
    (built / "spec.json").write_text(json.dumps(spec, indent=1, default=float) + "\n")
    verdict = "passed" if g.passed else "FAILED: " + "; ".join(g.reasons)
    with (built / "report.md").open("a") as f:
        f.write(f"\n## Retraining gate\n\nPolicy {asdict(policy)}: **{verdict}**.\n")
    evidence = {
        "metrics": spec["metrics"],
        "subgroups": spec["subgroups"],
        "onnx_parity_max_abs_diff": spec["onnx_parity_max_abs_diff"],
        "champion_on_test": spec.get("champion_on_test"),
        "policy": asdict(policy),
        "training_data": spec["training_data"],
    }
    if not g.passed:
        trail.record(
            model, "gate_failed", version=None, action="refused the candidate: not registered",
            reason="; ".join(g.reasons), evidence=evidence,
        )  # fmt: skip
        return g, None
    trail.record(
        model, "gate_passed", version=None, action="candidate passed the gate",
        reason="subgroup gate, ONNX parity test and AUROC floor passed", evidence=evidence,
    )  # fmt: skip
    try:
        v = reg.register(built)
    except GateFailed as err:  # the registry checks again: never register a failed gate
        trail.record(
            model, "gate_failed", version=None, action="registry refused the candidate",
            reason=str(err), evidence=evidence,
        )  # fmt: skip
        return validation.Gate(False, [str(err)]), None
    trail.record(
        model, "registered", version=v.version, action=f"registered candidate as v{v.version}",
        reason=trigger.reason,
        evidence={"onnx_sha256": v.spec["onnx_sha256"], "spec": str(v.path / "spec.json")},
    )  # fmt: skip
    before = reg.roles(model)
    reg.set_role(model, "challenger", v.version, why=f"retrained ({trigger.kind}): shadow")
    trail.record(
        model, "challenger_set", version=v.version,
        action=f"v{v.version} is the challenger, scored in shadow",
        reason=f"retrained on {trigger.kind} trigger; promotion only by shadow metrics",
        evidence={"before": before, "after": reg.roles(model)},
    )  # fmt: skip
    return g, v


def retrain(
    reg: Registry,
    trail: AuditTrail,
    trigger: Trigger,
    sources: list[Source],
    work: Path,
    *,
    epochs: int,
    seed: int,
    policy: Policy | None = None,
    model: str = train.MODEL_NAME,
) -> Outcome:
    t0 = time.monotonic()
    champion = reg.role(model, "champion")
    how = train.recipe(champion.spec if champion is not None else None)  # refuse a bad spec now
    trail.record(
        model, "trigger_received", version=None, action=f"{trigger.kind} trigger received",
        reason=trigger.reason, evidence=trigger.evidence,
    )  # fmt: skip
    summaries = [s.summary() for s in sources]
    trail.record(
        model, "retrain_started", version=None,
        action=f"retraining on {' + '.join(s.name for s in sources)}",
        reason=trigger.reason,
        evidence={"sources": summaries, "family": how.family,
                  "params": [asdict(p) for p in how.grid] if how.family == "gbt"
                  else {"hidden": list(how.hidden), "epochs": epochs},
                  "seed": seed, "champion": reg.roles(model).get("champion")},
    )  # fmt: skip
    built = build_candidate(sources, work, epochs=epochs, seed=seed, how=how, champion=champion)
    spec = json.loads((built / "spec.json").read_text())
    trail.record(
        model, "candidate_built", version=None, action=f"candidate built in {built}",
        reason=trigger.reason,
        evidence={"metrics": spec["metrics"], "training_data": spec["training_data"],
                  "onnx_parity_max_abs_diff": spec["onnx_parity_max_abs_diff"],
                  "champion_on_test": spec.get("champion_on_test")},
    )  # fmt: skip
    g, v = admit(built, reg, trail, policy or Policy(), trigger)
    return Outcome(
        trigger, built, g, v, spec["training_data"]["sha256"], round(time.monotonic() - t0, 1)
    )


def sources_of(settings: Settings, a: argparse.Namespace) -> list[Source]:
    base_file: Path = a.base or settings.physionet_setA
    base = sample_patients(pd.read_parquet(base_file), a.base_patients, a.seed)
    out = [Source(f"original: {base_file.name}", base, sha256(base_file))]
    if a.recent:
        raw = pd.read_parquet(a.recent)
        raw = raw.assign(patient_id=f"{a.recent.stem}:" + raw["patient_id"].astype(str))
        out.append(Source(f"recent: {a.recent.name}", raw, sha256(a.recent)))
    if a.recent_cohort:
        folder = settings.data_dir / "yaib_demo_sepsis" / a.recent_cohort
        raw = cohorts.yaib_to_physionet(folder, prefix=f"{a.recent_cohort}:")
        raw = sample_patients(raw, a.recent_patients, a.seed)
        out.append(Source(f"recent: {a.recent_cohort}", raw, sha256(folder / "dyn.parquet")))
    if a.recent_warehouse:
        from sinks import clickhouse

        client = clickhouse.connect(settings.clickhouse_url)
        since = datetime.now(UTC) - timedelta(days=a.recent_warehouse)
        raw = warehouse_frame(client, settings.clickhouse_database, since)
        if raw.empty:
            print("warehouse: no labelled recent states; training without them")
        else:
            out.append(Source("recent: warehouse", raw, frame_sha256(raw)))
    return out


def trigger_of(settings: Settings, reg: Registry, a: argparse.Namespace) -> Trigger | None:
    if a.trigger == "schedule":
        return Trigger("schedule", f"scheduled retrain ({a.schedule})", {"schedule": a.schedule})
    if a.breach:
        records = [json.loads(Path(a.breach).read_text())]
    elif a.breach_source == "kafka":
        records = kafka_breaches(settings, a.topic_prefix)
    else:
        from sinks import clickhouse

        client = clickhouse.connect(settings.clickhouse_url)
        records = warehouse_breaches(client, settings.clickhouse_database, a.model)
    return latest_breach(
        records, a.model, handled_breaches(reg, a.model), handled_until(reg, a.model)
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=train.MODEL_NAME)
    ap.add_argument("--trigger", choices=["monitor", "schedule"], required=True)
    ap.add_argument("--schedule", default="weekly", help="the schedule's name (trigger schedule)")
    ap.add_argument("--breach", type=Path, default=None, help="a model.monitor.v1 record (JSON)")
    ap.add_argument("--breach-source", choices=["warehouse", "kafka"], default="warehouse")
    ap.add_argument("--base", type=Path, default=None, help="original data (default: set A)")
    ap.add_argument("--base-patients", type=int, default=None, help="sample of the original")
    ap.add_argument("--recent", type=Path, default=None, help="PhysioNet 2019 format parquet")
    ap.add_argument("--recent-cohort", choices=sorted(cohorts.COHORTS), default=None)
    ap.add_argument("--recent-patients", type=int, default=None, help="sample of the cohort")
    ap.add_argument("--recent-warehouse", type=float, default=None, help="days of states")
    ap.add_argument("--work", type=Path, default=Path("build/retrain"))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--actor", default=service(MODULE))
    ap.add_argument("--no-publish", action="store_true", help="audit to audit.jsonl only")
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    reg = Registry(settings.model_registry)
    trigger = trigger_of(settings, reg, a)
    if trigger is None:
        print(f"no unhandled monitor breach for {a.model}: nothing to retrain")
        return
    trail = AuditTrail(reg, a.actor, None if a.no_publish else settings, a.topic_prefix)
    out = retrain(
        reg, trail, trigger, sources_of(settings, a), a.work,
        epochs=a.epochs, seed=a.seed, model=a.model,
    )  # fmt: skip
    if out.version is None:
        assert out.gate is not None
        print(f"candidate refused by the gate: {'; '.join(out.gate.reasons)}")
        raise SystemExit(2)
    print(f"registered {a.model} v{out.version.version} as challenger in {out.elapsed_s} s")


if __name__ == "__main__":
    main()
