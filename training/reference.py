"""The training reference of a sepsis model version, `reference.json` next to its spec: what the
model monitor (jobs/model_monitor.py) compares the stream with (udfs/monitor.py).

- per monitored input (the features the screened state carries, udfs.monitor.FEATURE_GRIDS):
  its cells on the fixed grid, decile bins (cuts, edges, proportions) and missing share over
  the training patients' hours, and its intra-patient correlation within 12-hour blocks (the
  monitor's design effect);
- the score: its cells and decile bins over the validation patients' hours (scored by the
  version's own ONNX model), and the alert rate at the version's threshold;
- performance on the validation patients (AUROC, observed/expected, ECE), the baseline of the
  delayed-performance monitor.

`training.train` writes it for every new version; for an existing one:

    python -m training.reference training/bundled/sepsis-risk/1-gbt   # from set A
    python -m training.reference <registry>/sepsis-risk/3 --file my.parquet
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from schemas.settings import Settings
from training.features import hourly_features
from training.splits import split_of
from udfs import monitor
from udfs.scoring import open_session

FILE = "reference.json"
ICC_BLOCK_H = 12  # hours: a patient's records within such a block are alike (monitor windows)


def score(version_dir: Path, frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    """The version's risk for each row of `frame` (onnxruntime, as the job scores)."""
    spec = json.loads((version_dir / "spec.json").read_text())
    x = frame[[f["name"] for f in spec["features"]]].to_numpy(dtype=np.float32)
    session = open_session(version_dir / "model.onnx")
    (out,) = session.run(None, {spec.get("input", {}).get("name", "features"): x})
    y = np.asarray(out, dtype="float64")
    return y[:, -1] if y.ndim == 2 else y.reshape(-1)


def performance(labels: np.ndarray[Any, Any], scores: np.ndarray[Any, Any]) -> dict[str, Any]:
    """AUROC, observed/expected and ECE on the monitor's score grid (as the stream sees it)."""
    grid = monitor.PROBABILITY_GRID
    cells = grid.cells_of(scores)
    y = labels.astype(bool)
    pos = np.bincount(cells[y], minlength=grid.cells)
    neg = np.bincount(cells[~y], minlength=grid.cells)
    total = np.bincount(cells, weights=scores, minlength=grid.cells)
    oe, ece = monitor.calibration(pos, pos + neg, total)
    return {
        "auroc": round(monitor.auroc(pos, neg), 6),
        "calibration_oe": round(oe, 6),
        "ece": round(ece, 6),
        "positives": int(y.sum()),
        "n": len(y),
    }


def build(version_dir: Path, frame: pd.DataFrame, *, data: dict[str, Any]) -> dict[str, Any]:
    """The reference of the version in `version_dir` from `frame` (training.features rows with
    a `split` column); written to `version_dir/reference.json` and returned."""
    spec = json.loads((version_dir / "spec.json").read_text())
    train = frame[frame["split"] == "train"]
    val = frame[frame["split"] == "val"]
    names = [f["name"] for f in spec["features"] if f["name"] in monitor.FEATURE_GRIDS]
    blocks = train["patient_id"].astype(str) + ":" + (train["iculos_h"] // ICC_BLOCK_H).astype(str)
    features = {}
    for n in names:
        values = train[n].to_numpy(dtype=np.float32).astype("float64")
        features[n] = monitor.feature_reference(values, monitor.FEATURE_GRIDS[n])
        features[n][f"icc_{ICC_BLOCK_H}h"] = round(monitor.icc(values, blocks.to_numpy()), 4)
    risk = score(version_dir, val)
    threshold = spec.get("threshold")
    ref = {
        "model": spec["name"],
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_data": {**data, "sha256": spec.get("training_data", {}).get("sha256")},
        "records": "one per patient-hour (training.features), as the replay screens them",
        "features_from": {
            "split": "train",
            "rows": len(train),
            "patients": int(train["patient_id"].nunique()),
        },
        "features": features,
        "score_from": {
            "split": "val",
            "rows": len(val),
            "patients": int(val["patient_id"].nunique()),
        },
        "score": monitor.score_reference(risk, monitor.PROBABILITY_GRID, threshold),
        "performance": performance(val["label"].to_numpy(), risk),
    }
    (version_dir / FILE).write_text(json.dumps(ref, indent=1) + "\n")
    return ref


def features_frame(file: Path) -> pd.DataFrame:
    frame = hourly_features(pd.read_parquet(file))
    frame["split"] = frame["patient_id"].map(split_of)
    return frame


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "version_dirs", nargs="+", type=Path, help="folders with spec.json + model.onnx"
    )
    ap.add_argument("--file", type=Path, default=None, help="default: set A (physionet_setA)")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    file = a.file or Settings.resolve(a).physionet_setA
    frame = features_frame(file)
    for d in a.version_dirs:
        ref = build(d, frame, data={"file": file.name})
        print(
            f"{d / FILE}: {len(ref['features'])} features, alert rate "
            f"{ref['score']['alert_rate']}, validation AUROC {ref['performance']['auroc']}"
        )


if __name__ == "__main__":
    main()
