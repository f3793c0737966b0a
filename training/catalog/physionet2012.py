"""PhysioNet/CinC 2012 (ICU stays, first 48 h) for the icu-mortality and length-of-stay models:
reading a set, its layout checks, cleaning, and the helpers both models share.

A set is `setX_observations.parquet` (record_id, minute, parameter, value) with its sibling
`setX_outcomes.parquet` (record_id, SAPS-I, SOFA, Length_of_stay, Survival, In-hospital_death).
Set A trains (cross-validation inside A chooses the model and the threshold); set B is the
external test, never trained or tuned on. A set is read as the stream receives it (`as_streamed`:
the replay's mapping onto the topics, magnesium in mmol/L, urine of one minute summed), then
cleaned as `feature_store.icu_stay` cleans (one definition for training and the stream): -1
codes and implausible values dropped, repeated time stamps merged.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd

from feature_store import icu_stay
from schemas import physionet2012 as replay_map
from schemas import topics
from schemas.settings import Settings
from training import sklearn_onnx
from training.catalog import LayoutError

OBSERVATION_COLUMNS: Final = ("record_id", "minute", "parameter", "value")
OUTCOME_COLUMNS: Final = (
    "record_id",
    "SAPS-I",
    "SOFA",
    "Length_of_stay",
    "Survival",
    "In-hospital_death",
)
AGE_BANDS: Final = ((0, 50, "<50"), (50, 65, "50-64"), (65, 80, "65-79"), (80, 200, "80+"))
# Cut-offs of the training rows: chosen by cross-validation on set A (rows at 6 and 12 h as well
# lowered the 24- and 48-h AUROC of the mortality model; see its report).
TRAIN_HOURS: Final = (24.0, 36.0, 48.0)
REPORT_HOURS: Final = (24.0, 48.0)
SEED: Final = 2012


@dataclass(frozen=True)
class StaySet:
    file: Path
    observations: pd.DataFrame  # as the stream receives them (`as_streamed`)
    outcomes: pd.DataFrame  # indexed by record_id
    recorded: pd.DataFrame  # the file's rows as they are

    @property
    def stays(self) -> int:
        return int(self.outcomes.shape[0])


def set_file(settings: Settings, which: str) -> Path:
    return settings.physionet2012_dir / f"set{which}_observations.parquet"


def outcomes_path(observations: Path) -> Path:
    """`…/setX_observations.parquet` → `…/setX_outcomes.parquet`."""
    if not observations.name.endswith("_observations.parquet"):
        raise LayoutError(
            f"{observations}: a PhysioNet 2012 set is named `<set>_observations.parquet` (with "
            f"its `<set>_outcomes.parquet` beside it)"
        )
    return observations.with_name(observations.name.replace("_observations.", "_outcomes."))


def _columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as e:  # not parquet at all
        raise LayoutError(f"{path}: not a parquet file ({e})") from e


def read_set(path: Path) -> StaySet:
    """A set's observations and outcomes, with its layout checked (`LayoutError` says what is
    wrong: a missing file, an outcomes file given as observations, wrong columns, stays without
    outcomes)."""
    if not path.is_file():
        raise LayoutError(f"{path}: no such file")
    columns = _columns(path)
    if set(OUTCOME_COLUMNS) <= set(columns):
        raise LayoutError(
            f"{path} is an outcomes file (one row per stay); pass the observations file "
            f"(`<set>_observations.parquet`), whose sibling outcomes file is read with it"
        )
    missing = [c for c in OBSERVATION_COLUMNS if c not in columns]
    if missing:
        hint = (
            " (this looks like PhysioNet 2019 sepsis hourly rows: use the sepsis-risk model)"
            if "patient_id" in columns or "SepsisLabel" in columns
            else ""
        )
        raise LayoutError(
            f"{path} is not PhysioNet 2012 observations: columns {', '.join(missing)} are "
            f"missing; expected {', '.join(OBSERVATION_COLUMNS)}{hint}"
        )
    sibling = outcomes_path(path)
    if not sibling.is_file():
        raise LayoutError(f"{path}: its outcomes file {sibling.name} is not beside it")
    out_missing = [c for c in OUTCOME_COLUMNS if c not in _columns(sibling)]
    if out_missing:
        raise LayoutError(f"{sibling}: outcome columns {', '.join(out_missing)} are missing")
    obs = pd.read_parquet(path, columns=list(OBSERVATION_COLUMNS))
    outcomes = pd.read_parquet(sibling, columns=list(OUTCOME_COLUMNS)).set_index("record_id")
    if outcomes.index.has_duplicates:
        raise LayoutError(f"{sibling}: record_id repeats")
    unknown = np.setdiff1d(obs["record_id"].unique(), outcomes.index.to_numpy())
    if len(unknown):
        raise LayoutError(
            f"{path}: {len(unknown)} stays (e.g. {int(unknown[0])}) have no row in {sibling.name}"
        )
    outcomes = outcomes.loc[np.intersect1d(outcomes.index.to_numpy(), obs["record_id"].unique())]
    return StaySet(path, as_streamed(obs), outcomes, obs)


def as_streamed(observations: pd.DataFrame) -> pd.DataFrame:
    """A set's observations as the stream receives them, so that a model learns from what it
    is served: each row through the replay's mapping onto the topics (`schemas.physionet2012.
    classify`, what jobs/feeds/physionet2012.py publishes), back under the challenge's parameter
    names that `feature_store.icu_stay` declares, each topic FLOAT field at float32 precision;
    the descriptors (minute 0) as recorded. So magnesium, recorded in mg/dL, is in mmol/L as
    its field; urine charted twice in a minute is summed; a cuff pressure counts where the
    arterial line has none in that minute; a value outside its field's range or charted again
    with another value in the same minute is left out, as the feed dead-letters it."""
    verdicts = replay_map.classify(observations)
    kept = verdicts[verdicts["outcome"] == "published"].drop_duplicates(
        ["record_id", "minute", "field"]
    )
    value = kept["canonical"].to_numpy(dtype=np.float64).copy()
    single = kept["field"].isin(_FLOAT_FIELDS).to_numpy()
    value[single] = value[single].astype(np.float32).astype(np.float64)
    series = pd.DataFrame(
        {
            "record_id": kept["record_id"].to_numpy(),
            "minute": kept["minute"].to_numpy(),
            "parameter": kept["field"].map(_FIELD_SOURCE).to_numpy(),
            "value": value,
        }
    )
    series = series[series["parameter"].notna()]
    minute0 = observations["minute"] == 0
    descriptors = observations[minute0 & observations["parameter"].isin(list(icu_stay.DESCRIPTORS))]
    return pd.concat([descriptors[list(OBSERVATION_COLUMNS)], series], ignore_index=True)


# A topic field → the challenge parameter `feature_store.icu_stay` declares for it.
_FIELD_SOURCE: Final = {
    replay_map.PARAMS[name].field: name for name in icu_stay.BY_SOURCE if name in replay_map.PARAMS
}
_FLOAT_FIELDS: Final = frozenset(
    f.name
    for t in (topics.VITALS_OBSERVATION, topics.LABS_RESULT)
    for f in t.schema.fields
    if f.base == "float"
)


def read_or_exit(path: Path) -> StaySet:
    """`read_set`, or the LayoutError's message on stderr and exit status 2."""
    try:
        return read_set(path)
    except LayoutError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def subset(s: StaySet, record_ids: np.ndarray[Any, Any]) -> StaySet:
    obs = s.observations[s.observations["record_id"].isin(record_ids)]
    recorded = s.recorded[s.recorded["record_id"].isin(record_ids)]
    outcomes = s.outcomes.loc[np.intersect1d(s.outcomes.index, record_ids)]
    return StaySet(s.file, obs, outcomes, recorded)


def cleaning_summary(observations: pd.DataFrame) -> dict[str, int]:
    """How many series values the cleaning dropped or merged (for the report)."""
    series = observations[observations["parameter"].isin(list(icu_stay.BY_SOURCE))]
    series = series[~((series["parameter"] == "Weight") & (series["minute"] == 0))]
    clean = icu_stay.clean_series(observations)
    repeated = int(series.duplicated(["record_id", "minute", "parameter"]).sum())
    return {
        "series_values": len(series),
        "kept_after_cleaning": len(clean),
        "repeated_time_stamps_merged": repeated,
        "implausible_dropped": len(series) - repeated - len(clean),
    }


def features(s: StaySet, hours: tuple[float, ...]) -> pd.DataFrame:
    return icu_stay.stay_features(s.observations, hours)


def matrix(frame: pd.DataFrame) -> np.ndarray[Any, Any]:
    return frame[list(icu_stay.FEATURES)].to_numpy(dtype=np.float32)


def folds(record_ids: np.ndarray[Any, Any], y: np.ndarray[Any, Any], k: int = 5) -> pd.Series[int]:
    """Stay → fold (stratified on `y`, seeded): all of a stay's cut-offs in one fold."""
    from sklearn.model_selection import StratifiedKFold

    out = pd.Series(-1, index=record_ids)
    for i, (_, te) in enumerate(
        StratifiedKFold(k, shuffle=True, random_state=SEED).split(record_ids, y)
    ):
        out.iloc[te] = i
    return out


def groups(frame: pd.DataFrame) -> dict[str, pd.Series[str]]:
    """Subgroup labels per row: age band, sex and ICU type."""
    bands = pd.Series("unknown", index=frame.index)
    for lo, hi, name in AGE_BANDS:
        bands[(frame["age_years"] >= lo) & (frame["age_years"] < hi)] = name
    sex = frame["female"].map({1.0: "female", 0.0: "male"}).fillna("unknown")
    unit = pd.Series("unknown", index=frame.index)
    for name in icu_stay.ICU_TYPES.values():
        unit[frame[f"icu_type_{name}"] == 1.0] = name
    return {"age": bands, "sex": sex, "icu_type": unit}


def bootstrap(
    n_stays: int,
    statistic: Callable[[np.ndarray[Any, Any]], dict[str, float]],
    samples: int,
    seed: int = SEED,
) -> dict[str, list[float]]:
    """Stay-level bootstrap 95 % percentile intervals: `statistic(weights)` gets each stay's
    draw count (a row per stay, in order) and returns named values."""
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(samples):
        w = np.bincount(rng.integers(0, n_stays, n_stays), minlength=n_stays).astype(float)
        for k, v in statistic(w).items():
            if np.isfinite(v):
                draws.setdefault(k, []).append(v)
    return {
        k: [round(float(np.percentile(v, 2.5)), 4), round(float(np.percentile(v, 97.5)), 4)]
        for k, v in draws.items()
    }


def snap_thresholds(model: Any) -> None:
    """Round every split threshold of a fitted HistGradientBoosting model down to float32.

    The model sees float32 features, but scikit-learn keeps float64 thresholds, which ONNX
    stores as the nearest float32: a feature between the two falls on the other side in
    onnxruntime. For a float32 x, `x <= t` ⟺ `x <= float32_rounded_down(t)`, so snapping leaves
    the model's decisions unchanged and makes the exported graph agree with it. An ensemble's
    members (`estimators_`) are snapped in turn."""
    for member in getattr(model, "estimators_", []):
        snap_thresholds(member)
    for stage in getattr(model, "_predictors", []):
        for tree in stage:
            t = tree.nodes["num_threshold"]
            t32 = t.astype(np.float32)
            above = t32.astype(np.float64) > t
            t32[above] = np.nextafter(t32[above], np.float32(-np.inf))
            tree.nodes["num_threshold"] = t32.astype(np.float64)


def to_onnx(model: Any, n_features: int) -> bytes:
    """One ONNX graph, input `features` float32 [batch, n_features] (thresholds snapped first)."""
    snap_thresholds(model)
    onx = sklearn_onnx.convert(model, n_features, {"": 17, "ai.onnx.ml": 3})
    return bytes(onx.SerializeToString())


class OnnxModel:
    """A registry version's model.onnx through onnxruntime (no scikit-learn at inference)."""

    def __init__(self, onnx: Path | bytes) -> None:
        import onnxruntime as ort

        source = str(onnx) if isinstance(onnx, Path) else onnx
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only (skl2onnx leaves an unused initializer)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.outputs = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The positive class's probability (binary) or the predicted value (regression)."""
        res = self.session.run(None, {"features": x.astype(np.float32)})
        if "probabilities" in self.outputs:
            return np.asarray(res[self.outputs.index("probabilities")])[:, 1]
        return np.asarray(res[0]).reshape(-1)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def training_data(s: StaySet) -> dict[str, Any]:
    return {
        "file": s.file.name,
        "sha256": sha256(s.file),
        "outcomes_sha256": sha256(outcomes_path(s.file)),
        "stays": s.stays,
    }


def feature_list() -> list[dict[str, str]]:
    return [{"name": f, "unit": icu_stay.UNITS[f]} for f in icu_stay.FEATURES]


def framework() -> str:
    import onnxruntime
    import skl2onnx
    import sklearn

    return (
        f"scikit-learn {sklearn.__version__} → ONNX (skl2onnx {skl2onnx.__version__}), "
        f"checked with onnxruntime {onnxruntime.__version__}"
    )


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def write_version(out: Path, onnx: bytes, spec: dict[str, Any], report: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "model.onnx").write_bytes(onnx)
    (out / "spec.json").write_text(json.dumps(spec, indent=1, ensure_ascii=False) + "\n")
    (out / "report.md").write_text(report)


def parser(name: str, doc: str | None) -> argparse.ArgumentParser:
    """`train [--out DIR]` and `evaluate [--file F] [--version V] [--bootstrap N]` (a `--model`
    from `training.evaluate`'s dispatch is accepted and ignored)."""
    ap = argparse.ArgumentParser(
        prog=f"python -m training.catalog.{name.replace('-', '_')}",
        description=doc,
        formatter_class=argparse.RawTextHelpFormatter,
    )
    sub = ap.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train on set A, write a version folder")
    train.add_argument("--out", type=Path, default=Path("build/models") / name)
    train.add_argument("--bootstrap", type=int, default=200)
    ev = sub.add_parser("evaluate", help="score a set with the registry's champion (onnxruntime)")
    ev.add_argument("--file", type=Path, default=None, help="default: set B observations")
    ev.add_argument("--version", default=None, help="default: the champion")
    ev.add_argument("--model", default=None, help=argparse.SUPPRESS)
    ev.add_argument("--bootstrap", type=int, default=200)
    for p in (train, ev):
        Settings.add_arguments(p)
    return ap


def champion(settings: Settings, name: str, version: str | None) -> Any:
    """The registry's version (bundled versions registered first if the registry is empty)."""
    from training.evaluate import chosen_version
    from training.registry import bootstrap as bootstrap_registry
    from udfs.registry import Registry

    bootstrap_registry(Registry(settings.model_registry), name)
    return chosen_version(settings, name, version)


def markdown_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(r[h]) for h in head) + " |" for r in rows]
    return "\n".join(lines)
