"""The model monitor's reference for the catalog models (`reference.json` next to a version's
spec): the distribution of their scores as the stream scores them, the alert rate at the
version's threshold, and (binary models) AUROC and calibration. No input references: a catalog
model's inputs are computed inside the scoring job and are on no topic, so the monitor watches
its score, alert rate and delayed performance (udfs/model_monitor.py).

- icu-mortality and length-of-stay score every vitals or lab state of a stay. Their reference is
  PhysioNet 2012 set B (the held-out set: a trained booster's in-sample scores are sharper than
  a new stay's): each stay's features (feature_store.icu_stay) at every hour of its first 48,
  weighted by the stay's record times in that hour (the states the stream scores there; a state
  at minute m is taken at the end of its hour).
- readmission-30d scores each eligible discharge once: its reference is the Diabetes 130
  validation split (by patient), one score per encounter.

    python -m training.catalog.reference training/bundled/icu-mortality/1-gbt \\
        training/bundled/length-of-stay/1-gbt training/bundled/readmission-30d/1-gbt
    python -m training.catalog.reference <registry>/icu-mortality/2 --file setC_observations.parquet
"""

from __future__ import annotations

import argparse
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from feature_store import icu_stay
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from training import reference as sepsis_reference
from training.catalog import physionet2012 as p12
from training.catalog import readmission
from udfs import monitor

FILE = sepsis_reference.FILE
HOURS = tuple(float(h) for h in range(1, 49))  # the 2012 stays' first 48 h


def onnx_scores(version_dir: Path, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    session = ort.InferenceSession(
        str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return readmission.onnx_scores(session, x)  # the last output: the positive class or value


def stay_states(s: p12.StaySet) -> pd.DataFrame:
    """Each stay's features at each hour of its first 48 with `states`, the number of distinct
    record times (vitals or labs) in that hour: how often the stream scores a state there."""
    series = s.observations[s.observations["parameter"].isin(list(icu_stay.BY_SOURCE))]
    series = series[series["minute"] > 0]  # minute 0: the stay's descriptors, not a record
    hour = np.ceil(series["minute"].to_numpy(dtype="float64") / 60.0)
    times = series.assign(hours_since_admission=hour)[hour <= HOURS[-1]]
    per_hour = (
        times.drop_duplicates(["record_id", "minute"])
        .groupby(["record_id", "hours_since_admission"])
        .size()
        .rename("states")
    )
    frame = p12.features(s, HOURS)
    frame = frame.join(per_hour, on=["record_id", "hours_since_admission"])
    frame["states"] = frame["states"].fillna(0).astype("int64")
    return frame[frame["states"] > 0].reset_index(drop=True)


def build(
    version_dir: Path,
    scores: np.ndarray[Any, Any],
    labels: np.ndarray[Any, Any] | None,
    *,
    entities: int,
    data: dict[str, Any],
    records: str,
) -> dict[str, Any]:
    """The reference of the version in `version_dir` from the scores the stream would see (one
    per scored state, repeated as often as the stream scores it); written and returned."""
    raw = json.loads((version_dir / "spec.json").read_text())
    spec = ModelSpec.parse(raw)
    grid = monitor.score_grid(spec.task)
    threshold = raw.get("threshold")
    ref: dict[str, Any] = {
        "model": spec.name,
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "training_data": {"sha256": raw.get("training_data", {}).get("sha256")},
        "records": records,
        "features": {},
        "features_from": None,
        "score_from": {**data, "rows": len(scores), "patients": entities},
        "score": monitor.score_reference(scores, grid, threshold),
    }
    if spec.task == "binary" and labels is not None:
        ref["performance"] = sepsis_reference.performance(labels, scores)
    (version_dir / FILE).write_text(json.dumps(ref, indent=1) + "\n")
    return ref


def stay_reference(
    version_dir: Path, states: pd.DataFrame, s: p12.StaySet, label: str | None
) -> dict[str, Any]:
    """icu-mortality (label `In-hospital_death`) or length-of-stay (no label) from `states`
    (stay_states of the 2012 set `s`, or of some of its stays)."""
    spec = ModelSpec.parse(json.loads((version_dir / "spec.json").read_text()))
    scores = onnx_scores(version_dir, states[spec.feature_names].to_numpy(dtype=np.float32))
    weights = states["states"].to_numpy()
    labels = None
    if label is not None:
        labels = np.repeat(s.outcomes.loc[states["record_id"], label].to_numpy(), weights)
    return build(
        version_dir,
        np.repeat(scores, weights),
        labels,
        entities=int(states["record_id"].nunique()),
        data={"file": s.file.name, "stays": int(states["record_id"].nunique())},
        records="one per vitals or lab state of a stay's first 48 h (taken at its hour's end)",
    )


def discharge_reference(version_dir: Path, file: Path) -> dict[str, Any]:
    """readmission-30d on an encounter file's validation split."""
    c = readmission.cohort(readmission.read(file))
    val = c.part(c.split == "val")
    scores = onnx_scores(version_dir, val.x.to_numpy(dtype=np.float32))
    return build(
        version_dir,
        scores,
        val.y,
        entities=int(val.patient.nunique()),
        data={"file": file.name, "split": "val"},
        records="one per eligible discharge",
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("version_dirs", nargs="+", type=Path, help="catalog versions (spec.json)")
    ap.add_argument("--file", type=Path, default=None, help="default: set B / Diabetes 130")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    stays: tuple[p12.StaySet, pd.DataFrame] | None = None
    for d in a.version_dirs:
        name = json.loads((d / "spec.json").read_text())["name"]
        if name == "readmission-30d":
            ref = discharge_reference(d, a.file or settings.diabetes130_file)
        else:
            if stays is None:
                s = p12.read_or_exit(a.file or p12.set_file(settings, "B"))
                stays = s, stay_states(s)
            label = "In-hospital_death" if name == "icu-mortality" else None
            ref = stay_reference(d, stays[1], stays[0], label)
        perf = ref.get("performance", {}).get("auroc")
        print(
            f"{d / FILE}: {ref['score_from']['rows']} scores of {ref['score_from']['patients']} "
            f"entities, alert rate {ref['score']['alert_rate']}, AUROC {perf}"
        )


if __name__ == "__main__":
    main()
