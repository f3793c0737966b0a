"""Proxy external validation: how a sepsis model does on hospitals and units it was not trained
on, side by side with its own held-out split, from the data we have.

    python -m training.external [--out build/external_validation]     (make validate-external)

- **The champion** (the registry's, ONNX) on set A's test split (in distribution), the same test
  patients charted sparsely (`training.cohorts.sparse_charting`: FiO2 and PaCO2 kept 25 %,
  respiratory rate 40 %, as another hospital might chart them), the same test patients with
  half of the septic ones (`training.cohorts.fewer_septic`: a lower prevalence, as at the
  unseen system), the eICU demo cohort (US
  multi-centre) and the MIMIC-III demo cohort (Beth Israel), converted to the PhysioNet 2019
  layout by `training.cohorts` (mapping documented there).
- **Feature ablations** (`ABLATIONS`): a model of the champion's family (gradient-boosted trees
  with the champion's parameters, or the MLP) trained on set A's training split with groups of
  features neutralised, and the other family with every feature, tested on set A's test split
  and the other cohorts; the variant to prefer is the one that transfers, not the one that fits
  set A best. Beside them, the sequence model (`training.sequence`: a GRU over the patient's
  hours, every feature) and the mean of its risk and the trees' (an ensemble), neither
  deployable in the stream today. Each at three thresholds chosen on set A's validation
  patients: the one for transfer (`validation.threshold_for_transfer`, the champion's rule:
  the best mean utility at set A's prevalence and at half of it), the utility optimum, and the
  one for a target alert burden (`--alert-rate`, 0.5 alert episodes per patient-day), which is
  what a unit agrees to.
- **Leave one ICU unit out** on set A: a model of the champion's family (same features, same
  training code) trained on one unit type's training patients (MICU or SICU; threshold for
  transfer on that unit's validation patients) and tested on the other unit's test patients,
  next to its own unit's test patients and the other cohorts.

Every metric has a patient-level bootstrap 95 % interval (`training.validation.bootstrap_ci`);
the threshold is always the model's own (chosen on its validation patients), never tuned on the
cohort it is tested on. The MIMIC-III demo cohort has one septic stay: it is listed for the alert
burden, its AUROC and utility mean nothing. Writes README.md and results.json to `--out`.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store.definitions import FEATURES
from schemas import physionet
from schemas.settings import Settings
from training import cohorts, gbt, sequence, validation
from training.evaluate import score
from training.features import hourly_features
from training.splits import split_of
from training.train import Recipe, _predict, _x, fit, recipe
from udfs.registry import Registry, Version

UNITS = ("MICU", "SICU")
TIME = ("hours_since_first_record",)
LAB_AGES = tuple(f for f in FEATURES if f.endswith("_age_h"))
LAB_VALUES = tuple(f for f in FEATURES if f in physionet.LABS.values())
# Feature ablations: the features each variant neutralises (a constant input carries nothing;
# the model keeps its inputs, so a variant scores in the stream unchanged).
ABLATIONS: dict[str, tuple[str, ...]] = {
    "all features": (),
    "without time since first record": TIME,
    "without measurement-process features (time, lab ages)": TIME + LAB_AGES,
    "vitals, scores, age and sex only": TIME + LAB_AGES + LAB_VALUES,
}


FAMILY_NAMES = {"gbt": "GBT", "mlp": "MLP"}  # the families a champion can be
LABELS = {**FAMILY_NAMES, "gru": "GRU", "gbt+gru": "mean of GBT and GRU"}
Scorer = Callable[[pd.DataFrame], np.ndarray[Any, Any]]


Fit = Callable[[pd.DataFrame, pd.DataFrame], Scorer]


def trainer(how: Recipe, epochs: int) -> Fit:
    """fit(train, val) → a scorer of frames, by the recipe `how`: trees with its candidates (the
    champion's parameters: one candidate, no search), or the MLP with its layers and `epochs`."""

    def fit_gbt(train: pd.DataFrame, val: pd.DataFrame) -> Scorer:
        m, _, _ = gbt.fit(
            _x(train), train["label"].to_numpy(), _x(val), val["label"].to_numpy(),
            seed=2019, grid=how.grid, log=lambda _: None,
        )  # fmt: skip
        return lambda frame: gbt.risk(m, _x(frame))

    def fit_mlp(train: pd.DataFrame, val: pd.DataFrame) -> Scorer:
        model = fit(train, val, epochs=epochs, seed=2019, hidden=how.hidden, log=lambda _: None)
        return lambda frame: _predict(model, _x(frame))

    return fit_gbt if how.family == "gbt" else fit_mlp


def fit_gru(epochs: int) -> Fit:
    """fit(train, val) → a scorer by the sequence model (`training.sequence`), `epochs` at most."""

    def fit_(train: pd.DataFrame, val: pd.DataFrame) -> Scorer:
        model = sequence.fit(train, val, epochs=epochs, seed=2019, log=lambda _: None)
        return lambda frame: sequence.predict(model, frame)

    return fit_


def fitted_once(fit_: Fit) -> Fit:
    """`fit_`, trained once per distinct (train, val) pair of frames (equal by content): the
    ensemble reuses the trees and the GRU that its members' own variants trained on the same
    split, instead of training them again."""
    fitted: dict[tuple[str, str], Scorer] = {}

    def digest(frame: pd.DataFrame) -> str:
        rows = pd.util.hash_pandas_object(frame, index=True).to_numpy()
        return hashlib.sha256(rows.tobytes() + "|".join(frame.columns).encode()).hexdigest()

    def fit_cached(train: pd.DataFrame, val: pd.DataFrame) -> Scorer:
        key = (digest(train), digest(val))
        if key not in fitted:
            fitted[key] = fit_(train, val)
        return fitted[key]

    return fit_cached


def mean_of(*fits: Fit) -> Fit:
    """fit(train, val) → a scorer whose risk is the mean of the risks of `fits`' scorers."""

    def fit_(train: pd.DataFrame, val: pd.DataFrame) -> Scorer:
        scorers = [f(train, val) for f in fits]
        return lambda frame: np.mean([s(frame) for s in scorers], axis=0)

    return fit_


SPARSE = "set A test split, sparse charting"
FEWER_SEPTIC = "set A test split, half the septic patients"


def seen(cohort: str) -> str:
    """What of a cohort the models trained on: the hospital (set A), not its charting (the
    sparse-charting copy of set A's test patients) or its prevalence (the copy with fewer septic
    patients), or nothing."""
    if cohort == SPARSE:
        return "charting unseen"
    if cohort == FEWER_SEPTIC:
        return "prevalence unseen"
    return "hospital seen" if cohort.startswith("set A") else "unseen"


def masked(frame: pd.DataFrame, features: tuple[str, ...]) -> pd.DataFrame:
    """`frame` with `features` set to 0 for every row (no information left in them)."""
    return frame.assign(**dict.fromkeys(features, 0.0)) if features else frame


def evaluate(frame: pd.DataFrame, threshold: float, samples: int) -> dict[str, Any]:
    m = validation.metrics(frame, threshold)
    septic = m["septic_patients"]
    ci = validation.bootstrap_ci(frame, threshold, samples) if septic >= 10 else {}
    return {
        "patients": m["patients"],
        "septic_patients": septic,
        "hours": m["rows"],
        "auroc": m["auroc"],
        "auroc_ci95": ci.get("auroc"),
        "normalised_utility": m["normalised_utility"],
        "normalised_utility_ci95": ci.get("normalised_utility"),
        "alert_episodes_per_patient_day": m["alert_episodes_per_patient_day"],
        "alerts_per_day_ci95": ci.get("alerts_per_day"),
        "patients_alerted_pct": m["patients_alerted_pct"],
        "calibration_slope": m["calibration_slope"] if septic >= 10 else None,
        "calibration_slope_ci95": ci.get("calibration_slope"),
        "calibration_intercept": m["calibration_intercept"] if septic >= 10 else None,
        "threshold": round(threshold, 5),
    }


def leave_one_unit_out(
    seta: pd.DataFrame,
    external: dict[str, pd.DataFrame],
    samples: int,
    family: str,
    fit_family: Fit,
) -> list[dict[str, Any]]:
    rows = []
    for train_unit in UNITS:
        mine = seta[seta["unit"] == train_unit]
        parts = {s: mine[mine["split"] == s].reset_index(drop=True) for s in ("train", "val")}
        scorer = fit_family(parts["train"], parts["val"])
        parts["val"]["risk"] = scorer(parts["val"])
        threshold = validation.threshold_for_transfer(parts["val"])
        tests = {
            f"set A {u} test split": seta[(seta["unit"] == u) & (seta["split"] == "test")]
            for u in UNITS
        }
        for name, frame in {**tests, **external}.items():
            frame = frame.reset_index(drop=True)
            frame["risk"] = scorer(frame)
            held_out = not name.startswith(f"set A {train_unit}")
            unit_seen = "unit seen" if not held_out else "unseen"
            rows.append(
                {
                    "model": f"{FAMILY_NAMES[family]} trained on set A {train_unit}",
                    "cohort": name,
                    "seen_in_training": unit_seen if name in tests else seen(name),
                    **evaluate(frame, threshold, samples),
                }
            )
            print(f"  {rows[-1]['model']} on {name}: AUROC {rows[-1]['auroc']}", flush=True)
    return rows


def ablations(
    seta: pd.DataFrame,
    external: dict[str, pd.DataFrame],
    samples: int,
    alert_rate: float,
    variants: dict[str, tuple[str, Fit, tuple[str, ...]]],
) -> list[dict[str, Any]]:
    """Each variant (name → family, its fit, the features it neutralises) trained on set A's
    training split (all units), tested on the test split and the other cohorts at two
    thresholds chosen on the validation split: for transfer, the utility optimum, and the one
    for a target alert rate (`alert_rate` episodes per patient-day)."""
    rows = []
    for name, (family, fit_family, features) in variants.items():
        parts = {s: masked(seta[seta["split"] == s], features).reset_index(drop=True)
                 for s in ("train", "val", "test")}  # fmt: skip
        scorer = fit_family(parts["train"], parts["val"])
        parts["val"]["risk"] = scorer(parts["val"])
        thresholds = {
            "for transfer": validation.threshold_for_transfer(parts["val"]),
            "utility optimum": validation.choose_threshold(parts["val"]),
            f"{alert_rate:g} alerts/patient-day": validation.threshold_for_alert_rate(
                parts["val"], alert_rate
            ),
        }
        tests = {"set A test split": parts["test"], **external}
        for cohort, frame in tests.items():
            frame = masked(frame, features).reset_index(drop=True)
            frame["risk"] = scorer(frame)
            for how, threshold in thresholds.items():
                rows.append(
                    {
                        "model": f"{LABELS[family]}, {name}; threshold: {how}",
                        "cohort": cohort,
                        "seen_in_training": seen(cohort),
                        **evaluate(frame, threshold, samples),
                    }
                )
                print(f"  {rows[-1]['model']} on {cohort}: AUROC {rows[-1]['auroc']}", flush=True)
    return rows


def champion_rows(
    v: Version, seta: pd.DataFrame, external: dict[str, pd.DataFrame], samples: int
) -> list[dict[str, Any]]:
    cohorts_ = {"set A test split": seta[seta["split"] == "test"], **external}
    rows = []
    for name, frame in cohorts_.items():
        frame = frame.reset_index(drop=True)
        frame["risk"] = score(v, frame)
        rows.append(
            {
                "model": f"champion {v.model} v{v.version}",
                "cohort": name,
                "seen_in_training": seen(name),
                **evaluate(frame, v.threshold, samples),
            }
        )
    return rows


def ci(v: list[float] | None) -> str:
    return f" [{v[0]:.3f}, {v[1]:.3f}]" if v else ""


def slope(r: dict[str, Any]) -> str:
    """A row's calibration slope with its interval and intercept; none where under 10 patients
    were septic (the interval's rule)."""
    if r.get("calibration_slope") is None:
        return ""
    return (
        f"{r['calibration_slope']:.3f}{ci(r.get('calibration_slope_ci95'))} "
        f"({r['calibration_intercept']:+.3f})"
    )


def markdown(rows: list[dict[str, Any]], elapsed_s: float) -> str:
    lines = [
        "# Proxy external validation of the sepsis model",
        "",
        f"Generated by `python -m training.external` in {elapsed_s:.0f} s (see its docstring). "
        "95 % intervals: patient-level bootstrap. Utility: PhysioNet/CinC 2019 normalised "
        "utility at the model's own threshold.",
        "",
        "| model | cohort | | patients (septic) | AUROC | normalised utility | alert episodes / "
        "patient-day | calibration slope (intercept) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['cohort']} | {r['seen_in_training']} | {r['patients']} "
            f"({r['septic_patients']}) | {r['auroc']:.3f}{ci(r['auroc_ci95'])} | "
            f"{r['normalised_utility']:.3f}{ci(r['normalised_utility_ci95'])} | "
            f"{r['alert_episodes_per_patient_day']:.2f}{ci(r['alerts_per_day_ci95'])} | "
            f"{slope(r)} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("build/external_validation"))
    ap.add_argument("--bootstrap", type=int, default=validation.BOOTSTRAP_SAMPLES)
    ap.add_argument("--epochs", type=int, default=25, help="of the MLPs and the GRU (at most)")
    ap.add_argument("--no-louo", action="store_true", help="no leave-one-unit-out models")
    ap.add_argument("--no-ablations", action="store_true", help="no feature ablations")
    ap.add_argument(
        "--alert-rate",
        type=float,
        default=0.5,
        help="target alert episodes per patient-day for the second threshold of the ablations",
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    t0 = time.monotonic()
    champion = Registry(settings.model_registry).role(settings.model_name, "champion")
    if champion is None:
        raise SystemExit(f"{settings.model_name} has no champion in {settings.model_registry}")
    mine = recipe(champion.spec)  # before the features: a bad spec is refused at once
    family = mine.family
    fits = {
        f: fitted_once(trainer(mine if f == family else Recipe(f), a.epochs)) for f in FAMILY_NAMES
    }
    gru = fitted_once(fit_gru(a.epochs))
    raw = pd.read_parquet(settings.physionet_setA)
    seta = hourly_features(raw)
    seta["split"] = seta["patient_id"].astype(str).map(split_of)
    test_raw = raw[raw["patient_id"].astype(str).map(split_of) == "test"]
    external = {
        SPARSE: hourly_features(cohorts.sparse_charting(test_raw)),
        FEWER_SEPTIC: hourly_features(cohorts.fewer_septic(test_raw)),
        **{name: hourly_features(df) for name, df in cohorts.load(settings.data_dir).items()},
    }
    print(
        f"features: set A {len(seta)} hours, "
        + ", ".join(f"{k} {len(v)} hours" for k, v in external.items()),
        flush=True,
    )
    rows = champion_rows(champion, seta, external, a.bootstrap)
    if not a.no_louo:
        rows += leave_one_unit_out(seta, external, a.bootstrap, family, fits[family])
    if not a.no_ablations:
        other = next(f for f in FAMILY_NAMES if f != family)
        variants = {  # the champion's family with each ablation, the other family beside it
            **{name: (family, fits[family], features) for name, features in ABLATIONS.items()},
            "all features (the other family)": (other, fits[other], ()),
            "all features (sequence model)": ("gru", gru, ()),
            "all features (ensemble)": ("gbt+gru", mean_of(fits["gbt"], gru), ()),
        }
        rows += ablations(seta, external, a.bootstrap, a.alert_rate, variants)
    a.out.mkdir(parents=True, exist_ok=True)
    result = {"features": list(FEATURES), "rows": rows}
    (a.out / "results.json").write_text(json.dumps(result, indent=1, default=float) + "\n")
    md = markdown(rows, time.monotonic() - t0)
    (a.out / "README.md").write_text(md)
    print(md)
    print(f"report={a.out / 'README.md'} rows={len(rows)} elapsed_s={time.monotonic() - t0:.0f}")


if __name__ == "__main__":
    main()
