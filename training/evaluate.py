"""Evaluate the registry's current champion (or a given version) on any file in the PhysioNet
2019 format (parquet with a patient_id column, a folder of the challenge's .psv files, or one
.psv; a file of another layout is refused with the reason and exit status 2). Needs onnxruntime
only. The last line printed is `AUROC <x> normalised_utility <y>`.

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
from schemas import physionet
from schemas.settings import Settings
from training import catalog, validation
from training.catalog import LayoutError
from training.features import hourly_features
from training.splits import split_of
from udfs.registry import Registry, Version
from udfs.scoring import open_session

# The PhysioNet/CinC 2019 columns the evaluation cannot do without (the challenge's data
# dictionary: Reyna et al., Crit Care Med 2020;48(2):210-217, table 1): the hours, the label and
# the demographics the model reads. A measured column absent is never measured (a hospital that
# does not chart it); one of them at least must be there. Unit1/Unit2 (the ICU type) absent is
# the `unknown` unit of the subgroup table.
REQUIRED = ("ICULOS", "SepsisLabel", "Age", "Gender")
MEASURED = (*physionet.VITALS, *physionet.LABS)
UNIT_COLUMNS = ("Unit1", "Unit2")


def read_physionet(path: Path) -> pd.DataFrame:
    """A file in the PhysioNet 2019 format: a parquet with a `patient_id` column, a folder of the
    challenge's .psv files (one per patient, named by the patient) or one .psv file; its layout
    checked (`LayoutError` says what is wrong)."""
    if path.is_dir():  # the challenge's layout: one pipe-separated file per patient
        files = sorted(path.glob("*.psv"))
        if not files:
            raise LayoutError(f"{path}: a folder of PhysioNet 2019 files holds .psv files; none")
        return _checked(path, pd.concat([_psv(f) for f in files], ignore_index=True))
    if not path.is_file():
        raise LayoutError(f"{path}: no such file or folder")
    if path.suffix == ".psv":
        return _checked(path, _psv(path))
    try:
        df = pd.read_parquet(path)
    except Exception as e:  # not parquet at all
        raise LayoutError(f"{path}: not a parquet file or a .psv ({type(e).__name__})") from e
    return _checked(path, df)


def _psv(f: Path) -> pd.DataFrame:
    try:
        d = pd.read_csv(f, sep="|")
    except Exception as e:  # empty, or not text
        raise LayoutError(f"{f}: not a pipe-separated PhysioNet 2019 file ({e})") from e
    d.insert(0, "patient_id", f.stem)
    return d


def _checked(path: Path, df: pd.DataFrame) -> pd.DataFrame:
    """`df` if it is PhysioNet 2019 hourly rows the model can be evaluated on."""
    missing = [c for c in ("patient_id", *REQUIRED) if c not in df.columns]
    if missing or not any(c in df.columns for c in MEASURED):
        hint = ""
        if {"record_id", "parameter", "value"} <= set(df.columns):
            hint = " (this looks like PhysioNet 2012 observations: MODEL=icu-mortality)"
        elif {"encounter_id", "readmitted"} <= set(df.columns):
            hint = " (this looks like Diabetes 130-US encounters: MODEL=readmission-30d)"
        what = ", ".join(missing) if missing else f"every measured column ({', '.join(MEASURED)})"
        raise LayoutError(
            f"{path} is not in the PhysioNet 2019 format (hourly rows per patient: patient_id "
            f"or one .psv per patient, {', '.join(REQUIRED)} and the measured columns): it lacks "
            f"{what}{hint}"
        )
    if df.empty:
        raise LayoutError(f"{path}: no rows")
    for c in (*REQUIRED, *(m for m in MEASURED if m in df.columns)):
        if not pd.api.types.is_numeric_dtype(df[c]):
            raise LayoutError(f"{path}: column {c} is not numeric ({df[c].dtype})")
    labels = set(df["SepsisLabel"].dropna().unique())
    if not labels <= {0, 1} or df["SepsisLabel"].isna().any():
        raise LayoutError(f"{path}: SepsisLabel must be 0 or 1 on every row ({sorted(labels)})")
    if df["ICULOS"].isna().any():
        raise LayoutError(f"{path}: ICULOS (hours since ICU admission) is empty on some rows")
    return df.assign(**{c: np.nan for c in UNIT_COLUMNS if c not in df.columns})


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
    file = a.file or settings.physionet_setA
    split = a.split or ("all" if a.file else "test")
    try:
        raw = read_physionet(file)
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    v = chosen_version(settings, model, a.version)
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
    print(
        f"calibration slope {m['calibration_slope']:.3f} {fmt(ci, 'calibration_slope')} "
        f"(1 ideal), intercept {m['calibration_intercept']:+.3f} (0 ideal); "
        + subgroup_line(frame, m["auroc"])
    )
    print(f"AUROC {m['auroc']:.4f} normalised_utility {m['normalised_utility']:.4f}")


def subgroup_line(frame: pd.DataFrame, overall_auroc: float) -> str:
    """Each age band's and sex's AUROC, and the largest shortfall below the overall AUROC of
    those with at least validation.MIN_SEPTIC_PATIENTS septic patients (the gate's rule)."""
    order = [name for _, _, name in validation.AGE_BANDS] + ["female", "male"]
    rows = [r for r in validation.subgroups(frame).to_dict("records") if r["group"] in order]
    rows.sort(key=lambda r: order.index(r["group"]))
    judged = [
        r["auroc"]
        for r in rows
        if r["septic_patients"] >= validation.MIN_SEPTIC_PATIENTS and not np.isnan(r["auroc"])
    ]
    parts = ", ".join(
        f"{r['group']} {r['auroc']:.3f}"
        + ("" if r["septic_patients"] >= validation.MIN_SEPTIC_PATIENTS else " (not judged)")
        for r in rows
    )
    gap = max([overall_auroc - a for a in judged] + [0.0]) if judged else float("nan")
    return f"subgroup AUROC {parts}; largest age/sex gap below overall {gap:.3f}"


def fmt(ci: dict[str, list[float]], name: str) -> str:
    lo, hi = ci.get(name, [float("nan"), float("nan")])
    return f"[{lo:.3f}, {hi:.3f}]"


if __name__ == "__main__":
    main()
