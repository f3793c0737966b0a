"""Evaluate the registry's current champion (or a given version) on any file in the PhysioNet
2019 format (parquet with a patient_id column, or a folder of the challenge's .psv files).
Needs onnxruntime only. The last line printed is `AUROC <x> normalised_utility <y>`.

    python -m training.evaluate                  # set A's held-out test split (15 %)
    python -m training.evaluate --file other.parquet      # every patient of another file

Without `--file` it evaluates set A's test split only (training.splits), never a patient the
model was trained or tuned on; with `--file` every patient in it (`--split test` restricts a
file to its test split). Every metric comes with a patient-level bootstrap 95 % interval.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store.definitions import FEATURES
from schemas.settings import Settings
from training import catalog, validation
from training.features import hourly_features
from training.splits import split_of
from udfs.registry import Registry, Version
from udfs.scoring import open_session


def read_physionet(path: Path) -> pd.DataFrame:
    if path.is_dir():  # the challenge's layout: one pipe-separated file per patient
        frames = []
        for f in sorted(path.glob("*.psv")):
            d = pd.read_csv(f, sep="|")
            d.insert(0, "patient_id", f.stem)
            frames.append(d)
        return pd.concat(frames, ignore_index=True)
    return pd.read_parquet(path)


def score(version: Version, features: pd.DataFrame, batch: int = 65536) -> np.ndarray[Any, Any]:
    session = open_session(version.onnx)
    x = features[list(FEATURES)].to_numpy(dtype=np.float32)
    out = [session.run(None, {"features": x[i : i + batch]})[0] for i in range(0, len(x), batch)]
    return np.concatenate(out)


def chosen_version(settings: Settings, model: str, version: str | None) -> Version:
    """The registry's `version` of `model`, or its champion; exits with a reason if none."""
    reg = Registry(settings.model_registry)
    v = reg.get(model, version) if version else reg.role(model, "champion")
    if v is None:
        raise SystemExit(f"{model} has no champion in {settings.model_registry}")
    return v


def main(argv: list[str] | None = None) -> None:
    peek = argparse.ArgumentParser(add_help=False)
    peek.add_argument("--model", default=None)
    known, _ = peek.parse_known_args(argv)
    if known.model and known.model != catalog.SEPSIS:
        rest = argv if argv is not None else sys.argv[1:]
        catalog.module(known.model).main(["evaluate", *rest])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--file", type=Path, default=None, help="default: set A (its test split)")
    ap.add_argument(
        "--split",
        choices=["test", "all"],
        default=None,
        help="patients to evaluate: `test` (the held-out split) or `all`; default: test for "
        "set A without --file, all for a given file",
    )
    ap.add_argument("--bootstrap", type=int, default=validation.BOOTSTRAP_SAMPLES)
    ap.add_argument("--model", default=None, help="default: settings.model_name")
    ap.add_argument("--version", default=None, help="default: the champion")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    model = a.model or settings.model_name
    v = chosen_version(settings, model, a.version)
    file = a.file or settings.physionet_setA
    split = a.split or ("all" if a.file else "test")
    raw = read_physionet(file)
    if split == "test":
        raw = raw[raw["patient_id"].astype(str).map(split_of) == "test"]
    frame = hourly_features(raw)
    frame["risk"] = score(v, frame)
    m = validation.metrics(frame, v.threshold)
    ci = validation.bootstrap_ci(frame, v.threshold, a.bootstrap)
    print(
        f"{model} version {v.version} on {file} ({split} patients): {m['patients']} patients "
        f"({m['septic_patients']} septic), {m['rows']} hours; AUPRC {m['auprc']:.4f}, "
        f"threshold {v.threshold:.4f}, {m['patients_alerted_pct']} % of patients alerted"
    )
    print(
        f"95 % intervals (patient bootstrap, {a.bootstrap} samples): AUROC {fmt(ci, 'auroc')}, "
        f"normalised utility {fmt(ci, 'normalised_utility')}, alert episodes per patient-day "
        f"{m['alert_episodes_per_patient_day']} {fmt(ci, 'alerts_per_day')}"
    )
    print(f"AUROC {m['auroc']:.4f} normalised_utility {m['normalised_utility']:.4f}")


def fmt(ci: dict[str, list[float]], name: str) -> str:
    lo, hi = ci.get(name, [float("nan"), float("nan")])
    return f"[{lo:.3f}, {hi:.3f}]"


if __name__ == "__main__":
    main()
