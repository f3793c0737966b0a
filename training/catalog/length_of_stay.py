"""length-of-stay: remaining length of hospital stay in days, scored at every state of an ICU
stay's first 48 h (PhysioNet/CinC 2012), reported at 24 h and 48 h.

    python -m training.catalog.length_of_stay train [--out DIR]
    python -m training.catalog.length_of_stay evaluate [--file setB_observations.parquet]

Target at hour t: `Length_of_stay − t/24` days, clipped at 0. `Length_of_stay` runs from the ICU
admission to the end of the hospital stay (PhysioNet/CinC 2012's definition; in set A no
in-hospital death comes after it ends), in whole days as recorded, so the model predicts the
remaining hospital stay, not the time left in the ICU (the capacity forecast applies it to the
facility's occupancy, sinks/capacity_forecast.py); stays that end in death are kept with their
recorded length (the remaining time in hospital is what a bed manager plans with, whatever the
outcome); stays with
`Length_of_stay` −1 (not recorded) are left out of training and evaluation. Features are
`feature_store.icu_stay`'s at 24, 36, 48 h; a HistGradientBoostingRegressor with
absolute-error loss (MAE is the metric), chosen by 5-fold cross-validation by stay on set A.
The baseline predicts set A's median remaining stay at the hour. Set B is the external test.
`evaluate`'s last line is `MAE_days x baseline_MAE_days y` at 48 h.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from feature_store import icu_stay
from schemas.settings import Settings
from training.catalog import physionet2012 as p12
from training.catalog import reference as catalog_reference

NAME: Final = "length-of-stay"
TARGET: Final = "remaining_los_days"
PARAMS: Final[dict[str, Any]] = {
    "loss": "absolute_error",
    "learning_rate": 0.05,
    "max_iter": 300,
    "max_leaf_nodes": 15,
    "min_samples_leaf": 60,
    "l2_regularization": 1.0,
    "early_stopping": False,
    "random_state": p12.SEED,
}


# Model selection: 5-fold cross-validation by stay on set A (out-of-fold MAE in days at 24 h /
# 48 h; rows at 24, 36 and 48 h; set B never consulted).
ABLATIONS: Final = (
    ("absolute_error, lr 0.05, 300 it (chosen)", "6.841", "6.643"),
    ("quantile 0.5 (same fit as absolute_error)", "6.841", "6.643"),
    ("quantile 0.45", "6.839", "6.631"),
    ("absolute_error, 600 it", "6.871", "6.676"),
    ("absolute_error on log1p(days), expm1 back (not exported: +graph ops for 0.04 d)",
     "6.802", "6.601"),
)  # fmt: skip


def model() -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(**PARAMS)


def labelled(s: p12.StaySet, hours: tuple[float, ...]) -> pd.DataFrame:
    """Features with the target, stays without a recorded length of stay left out."""
    los = s.outcomes["Length_of_stay"]
    known = s.outcomes.index[los >= 0].to_numpy()
    frame = p12.features(s, hours)
    frame = frame[frame["record_id"].isin(known)].reset_index(drop=True)
    remaining = frame["record_id"].map(los).astype(float) - frame["hours_since_admission"] / 24
    frame[TARGET] = remaining.clip(lower=0.0)
    frame["died"] = frame["record_id"].map(s.outcomes["In-hospital_death"]).astype(int)
    return frame


def at(frame: pd.DataFrame, hours: float) -> np.ndarray[Any, Any]:
    return (frame["hours_since_admission"] == hours).to_numpy()


def mae(y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], w: Any = None) -> float:
    return float(np.average(np.abs(y - p), weights=w))


def scores(
    y: np.ndarray[Any, Any], p: np.ndarray[Any, Any], baseline: float, samples: int = 0
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "stays": len(y),
        "mae_days": round(mae(y, p), 4),
        "baseline_mae_days": round(mae(y, np.full(len(y), baseline)), 4),
        "median_abs_error_days": round(float(np.median(np.abs(y - p))), 4),
    }
    if samples:
        out["ci95"] = p12.bootstrap(
            len(y),
            lambda w: {
                "mae_days": mae(y, p, w),
                "baseline_mae_days": mae(y, np.full(len(y), baseline), w),
            },
            samples,
        )
    return out


def medians(frame: pd.DataFrame) -> dict[str, float]:
    return {
        f"{int(h)}h": float(np.median(frame.loc[at(frame, h), TARGET]))
        for h in sorted(frame["hours_since_admission"].unique())
    }


def cross_validate(frame: pd.DataFrame, outcomes: pd.DataFrame) -> np.ndarray[Any, Any]:
    ids = np.sort(frame["record_id"].unique())
    strata = outcomes.loc[ids, "In-hospital_death"].to_numpy()
    fold = frame["record_id"].map(p12.folds(ids, strata)).to_numpy()
    x, y = p12.matrix(frame), frame[TARGET].to_numpy()
    oof = np.zeros(len(frame))
    for k in range(5):
        oof[fold == k] = model().fit(x[fold != k], y[fold != k]).predict(x[fold == k])
    return oof


def subgroup_rows(
    frame: pd.DataFrame, p: np.ndarray[Any, Any], base: float
) -> list[dict[str, Any]]:
    y = frame[TARGET].to_numpy()
    rows = []
    for kind, labels in p12.groups(frame).items():
        for group in sorted(labels.unique()):
            m = (labels == group).to_numpy()
            rows.append(
                {
                    "kind": kind,
                    "group": str(group),
                    "stays": int(m.sum()),
                    "mae_days": round(mae(y[m], p[m]), 4),
                    "baseline_mae_days": round(mae(y[m], np.full(int(m.sum()), base)), 4),
                }
            )
    return rows


def train(out: Path, settings: Settings, samples: int = 200) -> dict[str, Any]:
    a = p12.read_set(p12.set_file(settings, "A"))
    b = p12.read_set(p12.set_file(settings, "B"))
    frame = labelled(a, p12.TRAIN_HOURS)
    base = medians(frame)
    oof = cross_validate(frame, a.outcomes)
    validation_metrics = {
        f"{int(h)}h": scores(
            frame.loc[at(frame, h), TARGET].to_numpy(), oof[at(frame, h)], base[f"{int(h)}h"]
        )
        for h in p12.REPORT_HOURS
    }
    final = model().fit(p12.matrix(frame), frame[TARGET].to_numpy())
    onnx = p12.to_onnx(final, len(icu_stay.FEATURES))
    test = labelled(b, p12.REPORT_HOURS)
    x_test = p12.matrix(test)
    p_onnx = p12.OnnxModel(onnx).run(x_test)
    parity = float(np.max(np.abs(p_onnx - final.predict(x_test))))
    metrics = {
        f"{int(h)}h": scores(
            test.loc[at(test, h), TARGET].to_numpy(),
            p_onnx[at(test, h)],
            base[f"{int(h)}h"],
            samples,
        )
        for h in p12.REPORT_HOURS
    }
    m48 = at(test, 48.0)
    groups = subgroup_rows(test[m48].reset_index(drop=True), p_onnx[m48], base["48h"])
    passed = metrics["48h"]["mae_days"] < metrics["48h"]["baseline_mae_days"]
    spec = {
        "name": NAME,
        "task": "regression",
        "entity": "stay",
        "entity_key": "stay_token",
        "features": p12.feature_list(),
        "feature_service": "length_of_stay_v1",
        "trigger": {"kind": "every_state"},
        "report_at_hours": list(p12.REPORT_HOURS),
        "output": {
            "name": "remaining_los_days",
            "meaning": "remaining length of hospital stay in days from the state's time "
            "(a median-type prediction: absolute-error loss)",
            "unit": "d",
        },
        "threshold": None,
        "target": "Length_of_stay − hours_since_admission/24, clipped at 0; stays ending in "
        "death kept with their recorded length; Length_of_stay −1 (unknown) left out",
        "input": {
            "name": "features",
            "dtype": "float32",
            "shape": ["batch", len(icu_stay.FEATURES)],
            "missing": "NaN (handled by the trees' missing-value branches)",
        },
        "metrics": {
            "mae_days": metrics["48h"]["mae_days"],
            "baseline_mae_days": metrics["48h"]["baseline_mae_days"],
            "set": "PhysioNet 2012 set B (external test, never trained or tuned on)",
            "at_hours": metrics,
        },
        "validation_metrics": {
            "set": "PhysioNet 2012 set A, 5-fold cross-validation by stay (out-of-fold)",
            **validation_metrics,
        },
        "baselines": {
            "rule": "set A's median remaining length of stay at the hour",
            "median_remaining_days": base,
        },
        "subgroups": groups,
        "gate": {
            "passed": passed,
            "reasons": []
            if passed
            else [f"set B 48-h MAE {metrics['48h']['mae_days']} is not below the baseline's"],
        },
        "training_data": {**p12.training_data(a), "cut_off_hours": list(p12.TRAIN_HOURS)},
        "test_data": p12.training_data(b),
        "cleaning": p12.cleaning_summary(a.recorded),
        "onnx_parity_max_abs_diff": parity,
        "architecture": f"HistGradientBoostingRegressor {dict(PARAMS)}",
        "created_at": p12.now(),
        "framework": p12.framework(),
    }
    p12.write_version(out, onnx, spec, report(spec, len(onnx)))
    catalog_reference.stay_reference(out, catalog_reference.stay_states(b), b, None)  # monitor
    return spec


def report(spec: dict[str, Any], onnx_bytes: int) -> str:
    m, v = spec["metrics"]["at_hours"], spec["validation_metrics"]
    rows = [
        {
            "data": data,
            "hour": h,
            "stays": d[h]["stays"],
            "MAE (d)": d[h]["mae_days"],
            "baseline MAE (d)": d[h]["baseline_mae_days"],
            "median abs error (d)": d[h]["median_abs_error_days"],
            "95 % CI MAE": d[h].get("ci95", {}).get("mae_days", ""),
        }
        for data, d in (("A (out-of-fold)", v), ("B (external)", m))
        for h in ("24h", "48h")
    ]
    gate_line = (
        "passed" if spec["gate"]["passed"] else "FAILED: " + "; ".join(spec["gate"]["reasons"])
    )
    return f"""# length-of-stay — validation report

Created {spec["created_at"]}; {spec["framework"]}.

Target: {spec["target"]}. Training: PhysioNet/CinC 2012 set A
({spec["training_data"]["stays"]} stays), features at {spec["training_data"]["cut_off_hours"]} h
({len(spec["features"])} features, `feature_store/icu_stay.py`); set B
({spec["test_data"]["stays"]} stays) is the external test. Baseline: {spec["baselines"]["rule"]}
({spec["baselines"]["median_remaining_days"]}).

{p12.markdown_table(rows)}

## Model selection (5-fold CV by stay on set A, MAE in days, before sets were read as streamed)

{p12.markdown_table([{"variant": v, "24 h": a, "48 h": b} for v, a, b in ABLATIONS])}

## Subgroups (set B, 48 h)

{p12.markdown_table(spec["subgroups"])}

Gate (MAE below the baseline's on set B at 48 h): {gate_line}.

ONNX: {onnx_bytes / 1e6:.2f} MB; max |onnxruntime − scikit-learn| on set B:
{spec["onnx_parity_max_abs_diff"]:.2e} days.
"""


def evaluate(file: Path | None, version: str | None, settings: Settings, samples: int) -> None:
    file = file or p12.set_file(settings, "B")
    s = p12.read_or_exit(file)
    v = p12.champion(settings, NAME, version)
    runtime = p12.OnnxModel(v.onnx)
    base = v.spec["baselines"]["median_remaining_days"]
    frame = labelled(s, p12.REPORT_HOURS)
    p = runtime.run(p12.matrix(frame))
    found = {
        h: scores(
            frame.loc[at(frame, h), TARGET].to_numpy(), p[at(frame, h)], base[f"{int(h)}h"], samples
        )
        for h in p12.REPORT_HOURS
    }
    s24, s48 = found[24.0], found[48.0]
    print(
        f"{NAME} version {v.version} on {file}: {s48['stays']} stays with a recorded length of "
        f"stay; baseline = set A's median remaining stay ({base['24h']:.1f} d at 24 h, "
        f"{base['48h']:.1f} d at 48 h)"
    )
    print(
        f"24 h: MAE_days {s24['mae_days']:.4f} baseline_MAE_days {s24['baseline_mae_days']:.4f} "
        f"(95 % CI MAE {s24['ci95'].get('mae_days')})"
    )
    print(
        f"48 h 95 % intervals (stay bootstrap, {samples} samples): "
        f"MAE {s48['ci95'].get('mae_days')}, "
        f"baseline MAE {s48['ci95'].get('baseline_mae_days')}; median abs error "
        f"{s48['median_abs_error_days']:.4f} d"
    )
    print(f"MAE_days {s48['mae_days']:.4f} baseline_MAE_days {s48['baseline_mae_days']:.4f}")


def main(argv: list[str] | None = None) -> None:
    a = p12.parser(NAME, __doc__).parse_args(argv)
    settings = Settings.resolve(a)
    if a.command == "train":
        spec = train(a.out, settings, a.bootstrap)
        m = spec["metrics"]
        print(
            f"wrote {a.out}: set B 48 h MAE {m['mae_days']} d (baseline {m['baseline_mae_days']})"
        )
    else:
        evaluate(a.file, a.version, settings, a.bootstrap)


if __name__ == "__main__":
    main()
