"""Train the sepsis risk model on a PhysioNet 2019 format file, validate it on held-out
patients, export ONNX with its spec, and register it if the subgroup gate passes.

    python -m training.train                      # set A (../shared/data), register
    python -m training.train --file my.parquet --no-register --out build/model

Two families (`--family`): gradient-boosted trees (`training.gbt`, the champion's: scikit-learn
to an ONNX tree ensemble) and the torch MLP (`training.model`). Reproducible: patients are split
by a keyed hash of their id (70 % train, 15 % validation for model selection, early stopping and
the threshold, 15 % test for the report), both families are seeded, and the spec records the
data's SHA-256. Labels are the challenge's SepsisLabel (positive from 6 h before
Sepsis-3 onset); features are causal (feature_store/definitions.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import skl2onnx
import sklearn
import torch
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from feature_store.definitions import FEATURES, unit_of
from schemas.settings import Settings
from training import gbt, reference, validation
from training.features import hourly_features
from training.model import BestEpoch, SepsisRisk, fit_scaling
from training.splits import SPLIT_KEY, split_of
from udfs.registry import Registry, Version, sha256

MODEL_NAME = "sepsis-risk"
OPSET = 18
FAMILIES = ("gbt", "mlp")
MLP_HIDDEN = (64, 32)
THRESHOLD_RULE = (
    "maximises the mean normalised utility on the validation patients as they are and with "
    f"{validation.SEPTIC_KEPT[-1]:.0%} of their septic patients kept, mean of "
    f"{validation.PREVALENCE_DRAWS} draws: a threshold for a hospital with fewer septic patients"
)
THRESHOLD_RULE_BEFORE = "maximises normalised utility on the validation patients"


@dataclass(frozen=True)
class Recipe:
    """How to train a version like another: its family, the tree candidates, the MLP's layers."""

    family: str = "gbt"
    grid: tuple[gbt.Params, ...] = gbt.GRID
    hidden: tuple[int, ...] = MLP_HIDDEN


def check_family(family: str) -> str:
    """`family` if it is one of `FAMILIES`; ValueError naming them otherwise."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r}: one of {', '.join(FAMILIES)}")
    return family


def recipe(spec: Mapping[str, Any] | None) -> Recipe:
    """The recipe of the version with `spec` (a champion's, to retrain it): its family (a spec
    from before families: the MLP); trees with their recorded parameters as the one candidate
    (none recorded: `gbt.GRID`); the MLP with its hidden layers. No spec (no champion): trees,
    `gbt.GRID`. ValueError for an unknown family or parameters that do not fit."""
    if spec is None:
        return Recipe()
    family = check_family(spec.get("family", "mlp"))
    params = spec.get("params") or {}
    if family == "gbt":
        return Recipe("gbt", (gbt.Params.from_spec(params),) if params else gbt.GRID)
    return Recipe("mlp", hidden=tuple(params.get("hidden", MLP_HIDDEN)))


def _x(frame: pd.DataFrame) -> np.ndarray[Any, np.dtype[np.float32]]:
    return frame[list(FEATURES)].to_numpy(dtype=np.float32)


def _predict(model: SepsisRisk, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    model.eval()
    with torch.no_grad():
        out: np.ndarray[Any, Any] = model(torch.from_numpy(x)).numpy()
    return out


def fit(
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    epochs: int,
    seed: int,
    hidden: tuple[int, ...] = (64, 32),
    log: Any = print,
) -> SepsisRisk:
    torch.manual_seed(seed)
    x, y = _x(train), train["label"].to_numpy(dtype=np.float32)
    model = SepsisRisk(*fit_scaling(x), hidden=hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = torch.nn.BCEWithLogitsLoss()
    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    xv, yv = _x(val), val["label"].to_numpy()
    best = BestEpoch()
    g = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(xt), generator=g).split(2048):
            opt.zero_grad()
            loss = loss_fn(model.logits(xt[idx]), yt[idx])
            loss.backward()
            opt.step()
        sched.step()
        auroc = float(roc_auc_score(yv, _predict(model, xv)))
        log(f"epoch {epoch + 1}: validation AUROC {auroc:.4f}")
        if best.stop_after(model, auroc):
            break
    best.restore(model)
    return model


def export(model: SepsisRisk, path: Path, sample: np.ndarray[Any, Any]) -> float:
    """ONNX (dynamo exporter, opset 18, dynamic batch); returns max |torch − onnxruntime|."""
    batch = torch.export.Dim("batch")
    program = torch.onnx.export(
        model,
        (torch.from_numpy(sample[:8]),),
        input_names=["features"],
        output_names=["risk"],
        dynamo=True,
        opset_version=OPSET,
        dynamic_shapes=({0: batch},),
    )
    assert program is not None
    program.save(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"features": sample})
    return float(np.abs(got - _predict(model, sample)).max())


def report_markdown(spec: dict[str, Any], groups: pd.DataFrame, plots: list[str]) -> str:
    m, v = spec["metrics"], spec["validation_metrics"]
    nu = "normalised_utility"
    rows = "\n".join(
        f"| {r.kind} | {r.group} | {r.patients} | {r.septic_patients} | {r.auroc:.3f} |"
        for r in groups.itertuples(index=False)
    )
    base = "\n".join(
        f"| {k} | {b['auroc']:.3f} | {b['auprc']:.3f} |" for k, b in spec["baselines"].items()
    )
    gate = "passed" if spec["gate"]["passed"] else "FAILED: " + "; ".join(spec["gate"]["reasons"])
    return f"""# {spec["name"]}: validation report

Trained {spec["created_at"]} on `{spec["training_data"]["file"]}` (SHA-256
`{spec["training_data"]["sha256"][:16]}…`, {spec["training_data"]["patients"]} patients), split
by patient: {spec["split"]}. Test patients were used for nothing but this report.

## Test set ({m["patients"]} patients, {m["septic_patients"]} septic, {m["rows"]} hours)

| metric | test | validation |
|---|---|---|
| AUROC | {m["auroc"]:.4f} | {v["auroc"]:.4f} |
| AUPRC | {m["auprc"]:.4f} | {v["auprc"]:.4f} |
| PhysioNet 2019 normalised utility | {m[nu]:.4f} | {v[nu]:.4f} |
| Brier score | {m["brier"]:.5f} | {v["brier"]:.5f} |
| expected calibration error | {m["ece"]:.5f} | {v["ece"]:.5f} |

Threshold {spec["threshold"]:.4f} ({spec.get("threshold_rule", THRESHOLD_RULE_BEFORE)}).
Alert burden at it, test: {m["hours_above_threshold_pct"]} % of patient-hours above threshold,
{m["patients_alerted_pct"]} % of patients alerted at least once,
{m["alert_episodes_per_patient_day"]} alert episodes per patient-day.

## Baselines on the same test rows

| model | AUROC | AUPRC |
|---|---|---|
{base}

## Subgroups (test)

| kind | group | patients | septic | AUROC |
|---|---|---|---|---|
{rows}

Gate (no subgroup with ≥ {validation.MIN_SEPTIC_PATIENTS} septic patients more than
{validation.MAX_AUROC_GAP} AUROC below overall): **{gate}**.

## Plots

{chr(10).join(f"![{p}]({p})" for p in plots)}

Model: {spec["architecture"]}; {spec["framework"]}.
{_selection(spec)}
ONNX opset {spec["opset"]}; max |training library − onnxruntime| on 2,000 validation rows:
{spec["onnx_parity_max_abs_diff"]:.2e}.
"""


def _selection(spec: dict[str, Any]) -> str:
    candidates = spec.get("model_selection", {}).get("candidates", {})
    if not candidates:
        return ""
    rows = "\n".join(f"| {k} | {v:.4f} |" for k, v in candidates.items())
    return f"""
Candidates (chosen by validation AUROC):

| candidate | validation AUROC |
|---|---|
{rows}
"""


def build(
    file: Path,
    out: Path,
    *,
    epochs: int,
    seed: int,
    max_patients: int | None = None,
    hidden: tuple[int, ...] = MLP_HIDDEN,
    champion: Version | None = None,
    family: str = "gbt",
    grid: tuple[gbt.Params, ...] = gbt.GRID,
) -> Path:
    """Train, validate and export a model into `out` (model.onnx, spec.json, report.md, plots,
    reference.json). `family`: "gbt" (gradient-boosted trees, `training.gbt`, the candidates
    `grid`) or "mlp" (torch, `hidden`, `epochs`). With `champion`, the spec also records that
    version's AUROC on the same test patients (`champion_on_test`), which the retraining gate
    compares against."""
    check_family(family)
    t0 = time.monotonic()
    raw = pd.read_parquet(file)
    if max_patients:
        keep = np.sort(raw["patient_id"].unique())[:max_patients]
        raw = raw[raw["patient_id"].isin(set(keep))]
    frame = hourly_features(raw)
    frame["split"] = frame["patient_id"].map(split_of)
    parts = {s: frame[frame["split"] == s].reset_index(drop=True) for s in ("train", "val", "test")}
    print(
        f"features for {len(frame)} hours in {time.monotonic() - t0:.0f} s; "
        + ", ".join(f"{k} {v['patient_id'].nunique()} patients" for k, v in parts.items())
    )
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    selection: dict[str, float] = {}
    params: dict[str, Any] = {"hidden": list(hidden), "epochs": epochs}
    if family == "gbt":
        xtr, xva = _x(parts["train"]), _x(parts["val"])
        trees, chosen, selection = gbt.fit(
            xtr, parts["train"]["label"].to_numpy(), xva, parts["val"]["label"].to_numpy(),
            seed=seed, grid=grid,
        )  # fmt: skip
        parity = gbt.export(trees, out / "model.onnx", xva[:2000])
        for s in ("val", "test"):
            parts[s]["risk"] = gbt.risk(trees, _x(parts[s]))
        framework = f"scikit-learn {sklearn.__version__} → ONNX (skl2onnx {skl2onnx.__version__})"
        architecture = chosen.describe()
        params = dataclasses.asdict(chosen)
        missing = "NaN (each tree routes a missing value down the side learnt for it)"
    else:
        model = fit(parts["train"], parts["val"], epochs=epochs, seed=seed, hidden=hidden)
        parity = export(model, out / "model.onnx", _x(parts["val"])[:2000])
        for s in ("val", "test"):
            parts[s]["risk"] = _predict(model, _x(parts[s]))
        framework = f"torch {torch.__version__} → ONNX (dynamo exporter)"
        architecture = f"MLP, hidden layers {list(hidden)}" if hidden else "logistic (linear)"
        missing = "NaN (imputed inside the model with training medians)"
    threshold = validation.threshold_for_transfer(parts["val"])
    test = parts["test"]
    lr = make_pipeline(
        SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=300)
    ).fit(_x(parts["train"]), parts["train"]["label"])
    baselines = {
        "logistic regression (same features)": pd.Series(lr.predict_proba(_x(test))[:, 1]),
        "NEWS2 score": test["news2_score"],
        "qSOFA score": test["qsofa_score"],
    }
    metrics = validation.metrics(test, threshold)
    groups = validation.subgroups(test)
    g = validation.gate(metrics["auroc"], groups)
    plots = validation.plots(
        test, out, {"logistic regression": baselines["logistic regression (same features)"]}
    )
    from sklearn.metrics import average_precision_score

    spec: dict[str, Any] = {
        "name": MODEL_NAME,
        "version": None,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "framework": framework,
        "architecture": architecture,
        "family": family,
        "params": params,
        "opset": OPSET,
        "input": {
            "name": "features",
            "dtype": "float32",
            "shape": ["batch", len(FEATURES)],
            "missing": missing,
        },
        "features": [{"name": f, "unit": unit_of(f)} for f in FEATURES],
        "output": {
            "name": "risk",
            "meaning": "probability of SepsisLabel (Sepsis-3 onset within 6 h)",
        },
        "feature_service": None,
        # how sepsis outcomes label its scores for the delayed-performance monitor
        "monitor": {"label": {"outcome": "sepsis_onset", "horizon_h": 6}},
        "training_data": {
            "file": file.name,
            "sha256": sha256(file),
            "rows": len(frame),
            "patients": int(frame["patient_id"].nunique()),
        },
        "split": {
            "key": SPLIT_KEY,
            "train_pct": 70,
            "validation_pct": 15,
            "test_pct": 15,
            "seed": seed,
        },
        "threshold": threshold,
        "threshold_rule": THRESHOLD_RULE,
        "metrics": metrics,
        "validation_metrics": validation.metrics(parts["val"], threshold),
        "baselines": {
            k: {
                "auroc": float(roc_auc_score(test["label"], b)),
                "auprc": float(average_precision_score(test["label"], b)),
            }
            for k, b in baselines.items()
        },
        "subgroups": groups.to_dict(orient="records"),
        "gate": {"passed": g.passed, "reasons": g.reasons},
        "model_selection": {"on": "validation patients' AUROC", "candidates": selection},
        "onnx_parity_max_abs_diff": parity,
    }
    if champion is not None:
        spec["champion_on_test"] = champion_on(champion, test)
    (out / "spec.json").write_text(json.dumps(spec, indent=1, default=float) + "\n")
    (out / "report.md").write_text(report_markdown(spec, groups, plots))
    reference.build(out, frame, data={"file": file.name})  # the model monitor's baseline
    print(
        f"test AUROC {metrics['auroc']:.4f}, AUPRC {metrics['auprc']:.4f}, normalised utility "
        f"{metrics['normalised_utility']:.4f}; gate {'passed' if g.passed else 'FAILED'}; "
        f"built in {time.monotonic() - t0:.0f} s → {out}"
    )
    return out


def champion_on(version: Version, test: pd.DataFrame) -> dict[str, Any]:
    """`version`'s AUROC on a candidate's test patients, scored with onnxruntime on the features
    its own spec names (so a champion of another feature set is compared fairly)."""
    risk = reference.score(version.path, test)
    return {
        "model": version.model,
        "version": version.version,
        "auroc": float(roc_auc_score(test["label"], risk)),
        "patients": int(test["patient_id"].nunique()),
        "septic_patients": int(test.groupby("patient_id")["label"].max().sum()),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--file", type=Path, default=None, help="PhysioNet 2019 format parquet")
    ap.add_argument("--out", type=Path, default=Path("build/model"))
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--max-patients", type=int, default=None)
    ap.add_argument(
        "--family",
        choices=FAMILIES,
        default="gbt",
        help="gbt: gradient-boosted trees (the champion's family); mlp: the torch MLP",
    )
    ap.add_argument("--hidden", default="64,32", help="mlp: hidden layer widths; empty: linear")
    ap.add_argument("--no-register", action="store_true")
    ap.add_argument(
        "--role",
        choices=["champion", "challenger"],
        default="challenger",
        help="role of the registered version (the first one is always champion)",
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    hidden = tuple(int(h) for h in a.hidden.split(",") if h)
    out = build(
        a.file or settings.physionet_setA,
        a.out,
        epochs=a.epochs,
        seed=a.seed,
        max_patients=a.max_patients,
        hidden=hidden,
        family=a.family,
    )
    if a.no_register:
        return
    reg = Registry(settings.model_registry)
    v = reg.register(out)
    role = "champion" if not reg.roles(v.model).get("champion") else a.role
    reg.set_role(v.model, role, v.version, why=f"trained, registered as {role}")
    print(f"registered {v.model} version {v.version} as {role} in {settings.model_registry}")


if __name__ == "__main__":
    main()
