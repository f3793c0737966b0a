"""30-day readmission risk at discharge (`readmission-30d`), on the UCI Diabetes 130-US hospitals
data (Strack et al. 2014): is an inpatient encounter followed by a readmission within 30 days?

    python -m training.catalog.readmission train [--file F] [--out DIR]
    python -m training.catalog.readmission evaluate [--file F] [--version V] [--bootstrap N]
        [--split test|all]

Features: `feature_store.encounter_facts` (the facts known at discharge; never the outcome).
Encounters ending in death or hospice cannot be readmitted and are excluded from training and
evaluation. Patients, not encounters, are split (a keyed hash of `patient_nbr`, 70/15/15; its
own key, so the split is independent of the sepsis model's): candidates are fitted on the
training patients and chosen on the validation patients, the threshold is set there for an
alert budget (the top 20 % of discharges), and the test patients serve the report only.

`evaluate` scores with onnxruntime the registry's champion (or `--version`): by default the
settings' file, its test patients only; with `--file`, every patient of that file. It prints
patient-bootstrap 95 % intervals, then last `AUROC x AUPRC y`. A file of another layout is
refused (`LayoutError`, exit 2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import onnxruntime as ort
import pandas as pd
from sklearn.metrics import average_precision_score, brier_score_loss, roc_auc_score

from feature_store import encounter_facts as facts
from schemas.settings import Settings
from training import sklearn_onnx, validation
from training.catalog import LayoutError

NAME: Final = "readmission-30d"
SPLIT_KEY: Final = "wardflow-readmission-split-v1"
POSITIVE: Final = "<30"
OUTCOMES: Final = frozenset({"<30", ">30", "NO"})
ALERT_FRACTION: Final = 0.20  # the alert budget: the riskiest 20 % of discharges are flagged
FEATURE_SERVICE: Final = "readmission_30d_v1"
BUNDLED_DIR: Final = Path(__file__).resolve().parents[1] / "bundled" / NAME / "1-gbt"
AGE_GROUPS: Final = ((0, 50, "<50"), (50, 60, "50-59"), (60, 70, "60-69"), (70, 80, "70-79"),
                     (80, 200, "80+"))  # fmt: skip
GATED_KINDS: Final = ("age", "sex")
Array = np.ndarray[Any, Any]


# --- data ----------------------------------------------------------------------------------


def split_of(patient: str) -> str:
    h = int(hashlib.sha256(f"{SPLIT_KEY}:{patient}".encode()).hexdigest()[:8], 16) % 100
    return "train" if h < 70 else "val" if h < 85 else "test"


def splits(patients: pd.Series[Any]) -> pd.Series[Any]:
    """`split_of` per row (computed once per distinct patient)."""
    keys = patients.astype(str)
    table = {p: split_of(p) for p in keys.unique()}
    return keys.map(table)


def read(path: Path, *, labelled: bool = True) -> pd.DataFrame:
    """An encounter file (parquet, or the UCI CSV) checked for the layout; LayoutError if not."""
    if not path.exists():
        raise LayoutError(f"{path}: no such file")
    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except Exception as e:  # a folder, another format
        raise LayoutError(f"{path}: not a parquet or CSV encounter file ({e})") from e
    check_layout(frame, path, labelled=labelled)
    return frame


def check_layout(frame: pd.DataFrame, where: Path | str, *, labelled: bool = True) -> None:
    need = [facts.ENCOUNTER_KEY, facts.PATIENT_KEY, *facts.REQUIRED]
    if labelled:
        need.append(facts.LABEL_COLUMN)
    missing = [c for c in dict.fromkeys(need) if c not in frame.columns]
    if missing:
        shown = ", ".join(missing[:8]) + (
            f" and {len(missing) - 8} more" if len(missing) > 8 else ""
        )
        raise LayoutError(
            f"{where} is not in the Diabetes 130-US hospitals encounter layout (one row per "
            f"encounter: encounter_id, patient_nbr, the UCI columns and `readmitted`): it lacks "
            f"{shown}"
        )
    if labelled:
        seen = set(frame[facts.LABEL_COLUMN].astype(str).str.strip().unique())
        if not seen <= OUTCOMES:
            odd = ", ".join(sorted(seen - OUTCOMES)[:5])
            raise LayoutError(f"{where}: `readmitted` must be one of <30, >30, NO; found {odd}")


@dataclass
class Cohort:
    """The eligible encounters of a file: records, features, label, patient, split."""

    records: pd.DataFrame
    x: pd.DataFrame
    y: Array
    patient: pd.Series[Any]
    split: pd.Series[Any]

    def part(self, mask: Array | pd.Series[Any]) -> Cohort:
        m = np.asarray(mask, dtype=bool)
        return Cohort(self.records[m], self.x[m], self.y[m], self.patient[m], self.split[m])


def cohort(frame: pd.DataFrame) -> Cohort:
    """Features over every encounter (a patient's earlier encounters count even when they
    ended in a transfer), then the encounters that can be readmitted."""
    x = facts.encounter_features(frame)
    keep = facts.eligible(frame).to_numpy()
    records = frame[keep]
    y = (records[facts.LABEL_COLUMN].astype(str).str.strip() == POSITIVE).to_numpy(dtype=int)
    patient = records[facts.PATIENT_KEY].astype(str)
    return Cohort(records, x[keep], y, patient, splits(patient))


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# --- metrics -------------------------------------------------------------------------------


def metrics(y: Array, p: Array, threshold: float) -> dict[str, Any]:
    flagged = p >= threshold
    tp = int((flagged & (y == 1)).sum())
    return {
        "encounters": len(y),
        "positives": int(y.sum()),
        "prevalence": round(float(y.mean()), 4),
        "auroc": round(float(roc_auc_score(y, p)), 4) if len(set(y)) == 2 else float("nan"),
        "auprc": round(float(average_precision_score(y, p)), 4) if y.any() else float("nan"),
        "brier": round(float(brier_score_loss(y, p)), 5),
        "ece": round(ece(y, p), 5),
        "threshold": round(threshold, 5),
        "flagged_pct": round(100 * float(flagged.mean()), 2),
        "sensitivity": round(tp / max(int(y.sum()), 1), 4),
        "ppv": round(tp / max(int(flagged.sum()), 1), 4),
    }


def ece(y: Array, p: Array, bins: int = 10) -> float:
    q = pd.qcut(pd.Series(p), bins, labels=False, duplicates="drop").to_numpy()
    total = 0.0
    for b in np.unique(q):
        m = q == b
        total += m.sum() * abs(float(p[m].mean()) - float(y[m].mean()))
    return total / len(y)


def bootstrap_ci(
    patient: pd.Series[Any], y: Array, p: Array, samples: int, seed: int = 2014
) -> dict[str, list[float]]:
    """Patient-level bootstrap 95 % intervals (percentile) of AUROC and AUPRC: patients are
    drawn with replacement, each bringing all its encounters."""
    codes = pd.factorize(patient.to_numpy())[0]
    n = int(codes.max()) + 1 if len(codes) else 0
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {"auroc": [], "auprc": []}
    for _ in range(samples):
        w = np.bincount(rng.integers(0, n, n), minlength=n)[codes].astype(float)
        if len(np.unique(y[w > 0])) < 2:
            continue
        draws["auroc"].append(float(roc_auc_score(y, p, sample_weight=w)))
        draws["auprc"].append(float(average_precision_score(y, p, sample_weight=w)))
    return {
        k: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
        for k, v in draws.items()
        if v
    }


def subgroups(c: Cohort, p: Array) -> pd.DataFrame:
    """AUROC per age band, sex and race (race is reported, never a model input)."""
    age = c.x["age_years"].to_numpy()
    bands = np.full(len(age), "unknown", dtype=object)
    for lo, hi, name in AGE_GROUPS:
        bands[(age >= lo) & (age < hi)] = name
    sex = c.x["female"].map({1.0: "female", 0.0: "male"}).fillna("unknown").to_numpy()
    race = c.records["race"].astype(str).replace({"?": "unknown"}).to_numpy()
    rows = []
    for kind, labels in (("age", bands), ("sex", sex), ("race", race)):
        for name in sorted(set(labels)):
            m = labels == name
            yy = c.y[m]
            auroc = float(roc_auc_score(yy, p[m])) if len(set(yy)) == 2 else float("nan")
            rows.append((kind, str(name), int(m.sum()), int(c.patient[m].nunique()),
                         int(yy.sum()), auroc))  # fmt: skip
    return pd.DataFrame(
        rows, columns=["kind", "group", "encounters", "patients", "positives", "auroc"]
    )


def gate(overall_auroc: float, groups: pd.DataFrame) -> validation.Gate:
    """validation.gate over the age and sex subgroups (≥ MIN_SEPTIC_PATIENTS positives)."""
    gated = groups[groups["kind"].isin(GATED_KINDS)].rename(
        columns={"positives": "septic_patients"}
    )
    return validation.gate(overall_auroc, gated)


# --- models --------------------------------------------------------------------------------

GBT_GRID: Final = (  # (learning rate, iterations, leaves, min samples per leaf, L2)
    (0.04, 200, 15, 80, 1.0),
    (0.03, 400, 7, 100, 1.0),
    (0.05, 150, 31, 200, 5.0),
)


def gbt(params: tuple[float, int, int, int, float], seed: int = 0) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    lr, it, leaves, leaf, l2 = params
    return HistGradientBoostingClassifier(
        learning_rate=lr,
        max_iter=it,
        max_leaf_nodes=leaves,
        min_samples_leaf=leaf,
        l2_regularization=l2,
        early_stopping=False,  # iterations are chosen on the validation patients
        random_state=seed,
    )


def logistic() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(C=0.1, max_iter=3000)
    )


def to_onnx(model: Any, width: int) -> bytes:
    return bytes(sklearn_onnx.convert(model, width, 18).SerializeToString())


def onnx_scores(session: ort.InferenceSession, x: Array, batch: int = 65536) -> Array:
    """The positive class's probability (skl2onnx's outputs: label, probabilities)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = []
    for i in range(0, len(x), batch):
        chunk = x[i : i + batch]
        res = session.run(None, {"features": chunk})
        probs = np.asarray(res[-1] if len(res) > 1 else res[0])
        out.append(probs.reshape(len(chunk), -1)[:, -1])
    return np.concatenate(out).astype(float) if out else np.zeros(0)


def _val_scores(model: Any, c: Cohort) -> dict[str, float]:
    p = model.predict_proba(c.x.to_numpy(dtype=np.float32))[:, 1]
    return {
        "auroc": round(float(roc_auc_score(c.y, p)), 4),
        "auprc": round(float(average_precision_score(c.y, p)), 4),
    }


def train(file: Path, out: Path, bootstrap: int = validation.BOOTSTRAP_SAMPLES) -> Path:
    """Fit the candidates on the training patients, choose on validation, export the chosen
    one to ONNX and write the version folder (model.onnx, spec.json, report.md)."""
    import sklearn

    started = time.time()
    raw = read(file)
    c = cohort(raw)
    tr, va, te = (c.part(c.split == s) for s in ("train", "val", "test"))
    xtr = tr.x.to_numpy(dtype=np.float32)
    candidates: dict[str, Any] = {}
    selection: dict[str, dict[str, Any]] = {}
    for params in GBT_GRID:
        name = "gbt lr={} iter={} leaves={} min_leaf={} l2={}".format(*params)
        m = gbt(params).fit(xtr, tr.y)
        candidates[name] = m
        selection[name] = _val_scores(m, va)
        print(f"{name}: validation {selection[name]}", file=sys.stderr)
    lr_model = logistic().fit(xtr, tr.y)
    candidates["logistic regression"] = lr_model
    selection["logistic regression"] = _val_scores(lr_model, va)
    chosen = max(selection, key=lambda k: selection[k]["auroc"])
    model = candidates[chosen]
    ablations: dict[str, dict[str, float]] = {}
    if chosen.startswith("gbt"):
        params = GBT_GRID[[n for n in candidates if n.startswith("gbt")].index(chosen)]
        for dropped in ("prior_encounters_seen", "prior_inpatient_visits_12m"):
            cols = [i for i, f in enumerate(facts.FEATURES) if f != dropped]
            m = gbt(params).fit(xtr[:, cols], tr.y)
            pv = m.predict_proba(va.x.to_numpy(dtype=np.float32)[:, cols])[:, 1]
            ablations[f"without {dropped}"] = {
                "auroc": round(float(roc_auc_score(va.y, pv)), 4),
                "auprc": round(float(average_precision_score(va.y, pv)), 4),
            }

    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(to_onnx(model, len(facts.FEATURES)))
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    xva = va.x.to_numpy(dtype=np.float32)
    p_val = onnx_scores(session, xva)
    parity = float(np.max(np.abs(p_val - model.predict_proba(xva)[:, 1])))
    threshold = float(np.quantile(p_val, 1 - ALERT_FRACTION))
    p_test = onnx_scores(session, te.x.to_numpy(dtype=np.float32))
    test = metrics(te.y, p_test, threshold)
    test["ci95"] = bootstrap_ci(te.patient, te.y, p_test, bootstrap)
    val = metrics(va.y, p_val, threshold)
    groups = subgroups(te, p_test)
    g = gate(test["auroc"], groups)
    lace = facts.lace_like_score(te.records).to_numpy()
    baselines = {
        "prior_inpatient_visits_12m alone": te.x["prior_inpatient_visits_12m"].to_numpy(),
        "LACE-like score (Charlson from 3 diagnoses, ED visits over 12 months)": lace,
    }
    if chosen != "logistic regression":
        baselines["logistic regression (same features)"] = lr_model.predict_proba(
            te.x.to_numpy(dtype=np.float32)
        )[:, 1]
    base = {
        k: {
            "auroc": round(float(roc_auc_score(te.y, v)), 4),
            "auprc": round(float(average_precision_score(te.y, v)), 4),
        }
        for k, v in baselines.items()
    }
    spec: dict[str, Any] = {
        "name": NAME,
        "version": None,
        "task": "binary",
        "entity": "encounter",
        "entity_key": "encounter_token",
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework": f"scikit-learn {sklearn.__version__} → ONNX (skl2onnx "
        f"{__import__('skl2onnx').__version__}), opset 18",
        "architecture": chosen,
        "opset": 18,
        "input": {
            "name": "features",
            "dtype": "float32",
            "shape": ["batch", len(facts.FEATURES)],
            "missing": "NaN (the trees route missing values; a logistic model imputes medians)",
        },
        "features": [{"name": f.name, "unit": f.unit} for f in facts.FACTS],
        "feature_service": FEATURE_SERVICE,
        "trigger": {"kind": "discharge"},
        # the model monitor joins each score to this outcome (jobs/feeds/diabetes130.py's label)
        "monitor": {"label": {"outcome": "readmission_30d", "horizon_h": None}},
        "output": {
            "name": "readmission_risk",
            "meaning": "probability of an inpatient readmission within 30 days of this "
            "discharge (not scored for discharges to death or hospice)",
        },
        "threshold": threshold,
        "threshold_rule": f"the validation patients' {100 * (1 - ALERT_FRACTION):.0f}th "
        f"percentile of risk: an alert budget of the top {100 * ALERT_FRACTION:.0f} % of "
        "discharges",
        "exclusions": "discharge disposition 11, 13, 14, 19, 20, 21 (expired or hospice): "
        "cannot be readmitted; excluded from training and evaluation",
        "training_data": {
            "file": file.name,
            "sha256": sha256(file),
            "encounters": len(raw),
            "patients": int(raw[facts.PATIENT_KEY].nunique()),
            "eligible_encounters": len(c.y),
            "excluded_expired_or_hospice": len(raw) - len(c.y),
            "train_encounters": len(tr.y),
            "validation_encounters": len(va.y),
            "test_encounters": len(te.y),
        },
        "split": {
            "by": facts.PATIENT_KEY,
            "key": SPLIT_KEY,
            "train_pct": 70,
            "validation_pct": 15,
            "test_pct": 15,
        },
        "model_selection": {
            "on": "validation patients",
            "candidates": selection,
            "chosen": chosen,
            "ablations": ablations,
        },
        "metrics": test,
        "validation_metrics": val,
        "baselines": base,
        "subgroups": [  # an AUROC that cannot be computed (one class) is null, not NaN
            {k: (None if isinstance(v, float) and np.isnan(v) else v) for k, v in r.items()}
            for r in groups.to_dict(orient="records")
        ],
        "gate": {
            "passed": g.passed,
            "reasons": g.reasons,
            "kinds": list(GATED_KINDS),
            "max_auroc_gap": validation.MAX_AUROC_GAP,
            "min_positives": validation.MIN_SEPTIC_PATIENTS,
        },
        "onnx_parity_max_abs_diff": parity,
        "onnx_bytes": (out / "model.onnx").stat().st_size,
        "training_seconds": round(time.time() - started, 1),
    }
    (out / "spec.json").write_text(json.dumps(spec, indent=1, default=_json) + "\n")
    (out / "report.md").write_text(report(spec))
    # the model monitor's reference (imported here: that module builds on this one)
    from training.catalog import reference as catalog_reference

    catalog_reference.discharge_reference(out, file)
    return out


def _json(o: Any) -> Any:
    if isinstance(o, np.integer | np.floating):
        return o.item()
    raise TypeError(type(o).__name__)


def report(s: dict[str, Any]) -> str:
    m, v, td = s["metrics"], s["validation_metrics"], s["training_data"]
    ci = m.get("ci95", {})
    lines = [
        f"# {s['name']}: validation report",
        "",
        f"Trained {s['created_at']} on `{td['file']}` (SHA-256 `{td['sha256'][:16]}…`): "
        f"{td['encounters']} encounters of {td['patients']} patients; "
        f"{td['excluded_expired_or_hospice']} encounters ending in death or hospice excluded "
        "(they cannot be readmitted). Split by patient ("
        f"`{s['split']['key']}`, 70/15/15): {td['train_encounters']} / "
        f"{td['validation_encounters']} / {td['test_encounters']} encounters. Candidates were "
        "chosen on the validation patients; the test patients serve this report only.",
        "",
        f"Model: {s['architecture']}, {len(s['features'])} features "
        "(`feature_store/encounter_facts.py`), ONNX "
        f"{s['onnx_bytes'] / 1024:.0f} KiB; max |sklearn − onnxruntime| on the validation "
        f"rows: {s['onnx_parity_max_abs_diff']:.2e}.",
        "",
        f"## Test ({m['encounters']} encounters, {m['positives']} readmitted < 30 days)",
        "",
        "| metric | test | 95 % CI (patient bootstrap) | validation |",
        "|---|---|---|---|",
        f"| AUROC | {m['auroc']:.4f} | {_ci(ci, 'auroc')} | {v['auroc']:.4f} |",
        f"| AUPRC | {m['auprc']:.4f} | {_ci(ci, 'auprc')} | {v['auprc']:.4f} |",
        f"| Brier score | {m['brier']:.5f} | | {v['brier']:.5f} |",
        f"| expected calibration error | {m['ece']:.5f} | | {v['ece']:.5f} |",
        f"| flagged at threshold | {m['flagged_pct']} % | | {v['flagged_pct']} % |",
        f"| sensitivity at threshold | {m['sensitivity']:.4f} | | {v['sensitivity']:.4f} |",
        f"| PPV at threshold | {m['ppv']:.4f} | | {v['ppv']:.4f} |",
        "",
        f"Threshold {s['threshold']:.4f}: {s['threshold_rule']}.",
        "",
        "## Model selection (validation patients)",
        "",
        "| candidate | AUROC | AUPRC |",
        "|---|---|---|",
        *(
            f"| {k} | {r['auroc']:.4f} | {r['auprc']:.4f} |"
            for k, r in s["model_selection"]["candidates"].items()
        ),
        *(
            f"| chosen, {k} | {r['auroc']:.4f} | {r['auprc']:.4f} |"
            for k, r in s["model_selection"]["ablations"].items()
        ),
        "",
        f"Chosen: {s['model_selection']['chosen']}.",
        "",
        "## Baselines (test)",
        "",
        "| model | AUROC | AUPRC |",
        "|---|---|---|",
        *(f"| {k} | {r['auroc']:.4f} | {r['auprc']:.4f} |" for k, r in s["baselines"].items()),
        "",
        "## Subgroups (test)",
        "",
        "| kind | group | encounters | patients | positives | AUROC |",
        "|---|---|---|---|---|---|",
        *(
            f"| {r['kind']} | {r['group']} | {r['encounters']} | {r['patients']} | "
            f"{r['positives']} | {'n/a' if r['auroc'] is None else format(r['auroc'], '.3f')} |"
            for r in s["subgroups"]
        ),
        "",
        f"Gate (no age or sex subgroup with ≥ {s['gate']['min_positives']} positives more than "
        f"{s['gate']['max_auroc_gap']} AUROC below overall; race is reported, not gated): "
        f"**{'passed' if s['gate']['passed'] else 'failed'}**"
        + ("" if s["gate"]["passed"] else ": " + "; ".join(s["gate"]["reasons"])),
        "",
    ]
    return "\n".join(lines)


def _ci(ci: dict[str, list[float]], name: str) -> str:
    lo, hi = ci.get(name, [float("nan"), float("nan")])
    return f"[{lo:.4f}, {hi:.4f}]"


# --- evaluation ----------------------------------------------------------------------------


def evaluate(a: argparse.Namespace) -> None:
    from training.evaluate import chosen_version
    from training.registry import bootstrap
    from udfs.registry import Registry

    settings = Settings.resolve(a)
    file = a.file or settings.diabetes130_file
    split = a.split or ("all" if a.file else "test")
    raw = read(file)  # before the registry: a wrong file is refused whatever the registry holds
    bootstrap(Registry(settings.model_registry), NAME)
    v = chosen_version(settings, NAME, a.version)
    names = [f["name"] for f in v.spec["features"]]
    if names != list(facts.FEATURES):
        raise SystemExit(
            f"{NAME} {v.version} reads features this code does not compute: {names[:3]}…"
        )
    c = cohort(raw)
    if split == "test":
        c = c.part(c.split == "test")
    if not len(c.y):
        raise LayoutError(f"{file}: no eligible encounters ({split} patients)")
    session = ort.InferenceSession(str(v.onnx), providers=["CPUExecutionProvider"])
    p = onnx_scores(session, c.x.to_numpy(dtype=np.float32))
    m = metrics(c.y, p, v.threshold)
    ci = bootstrap_ci(c.patient, c.y, p, a.bootstrap)
    print(
        f"{NAME} version {v.version} on {file} ({split} patients): {m['encounters']} encounters "
        f"of {c.patient.nunique()} patients ({m['positives']} readmitted < 30 days, "
        f"{len(raw) - len(facts.eligible(raw).to_numpy().nonzero()[0])} expired/hospice "
        f"excluded from the file); threshold {v.threshold:.4f}: {m['flagged_pct']} % flagged, "
        f"sensitivity {m['sensitivity']:.4f}, PPV {m['ppv']:.4f}; Brier {m['brier']:.5f}"
    )
    print(
        f"95 % intervals (patient bootstrap, {a.bootstrap} samples): AUROC {_ci(ci, 'auroc')}, "
        f"AUPRC {_ci(ci, 'auprc')}"
    )
    print(f"AUROC {m['auroc']:.4f} AUPRC {m['auprc']:.4f}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["train", "evaluate"])
    ap.add_argument("--file", type=Path, default=None, help="default: settings.diabetes130_file")
    ap.add_argument("--out", type=Path, default=BUNDLED_DIR, help="train: the version folder")
    ap.add_argument("--version", default=None, help="evaluate: default the champion")
    ap.add_argument("--split", choices=["test", "all"], default=None)
    ap.add_argument("--bootstrap", type=int, default=validation.BOOTSTRAP_SAMPLES)
    ap.add_argument("--model", default=None, help="ignored (the dispatcher's)")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    try:
        if a.command == "train":
            file = a.file or Settings.resolve(a).diabetes130_file
            print(f"built {train(file, a.out, a.bootstrap)}")
        else:
            evaluate(a)
    except LayoutError as e:
        print(f"{NAME}: {e}", file=sys.stderr)
        raise SystemExit(2) from e


if __name__ == "__main__":
    main()
