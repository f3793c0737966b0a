"""Gradient-boosted trees for the sepsis risk (training only): scikit-learn's
HistGradientBoostingClassifier on the same causal features as the MLP, exported to an ONNX tree
ensemble whose one output is the risk, so that every scorer (the job's UDF, `make
evaluate-model`, the monitor's reference) reads it as it reads the MLP's.

Trees take the raw features and route a missing value (NaN) down the side learnt for it, so
there is no imputation to ship. Candidates (`GRID`) are fitted on the training patients and
chosen by AUROC on the validation patients; the chosen one's iterations are fixed (no early
stopping on rows, which would pick the stopping point on hours of the same patients).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Final

import numpy as np
from sklearn.metrics import roc_auc_score

from training import sklearn_onnx
from udfs.scoring import open_session

OPSET: Final = 18


@dataclass(frozen=True)
class Params:
    """One candidate: learning rate, boosting iterations, leaves per tree, minimum rows per
    leaf (hours; a leaf spans many patients), L2 penalty."""

    learning_rate: float
    iterations: int
    leaves: int
    min_leaf_rows: int
    l2: float = 1.0

    @classmethod
    def from_spec(cls, params: Mapping[str, Any]) -> Params:
        """The parameters a version's spec records (`params`); ValueError naming the keys that
        do not fit, so a bad spec is refused before any work starts."""
        names = {f.name for f in fields(cls)}
        required = {f.name for f in fields(cls) if f.default is dataclasses.MISSING}
        unknown, missing = set(params) - names, required - set(params)
        if unknown or missing:
            raise ValueError(
                f"tree parameters {dict(params)}: unknown {sorted(unknown)}, missing "
                f"{sorted(missing)}"
            )
        return cls(**params)

    def describe(self) -> str:
        return (
            f"gradient-boosted trees (lr {self.learning_rate}, {self.iterations} iterations, "
            f"{self.leaves} leaves, min {self.min_leaf_rows} rows per leaf, L2 {self.l2})"
        )


GRID: Final = (
    Params(0.05, 300, 31, 200),
    Params(0.03, 600, 15, 200),
    Params(0.05, 300, 31, 1000),
)


def model(p: Params, seed: int) -> Any:
    """An unfitted HistGradientBoostingClassifier with `p`, fixed iterations (no early
    stopping), seeded."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(
        learning_rate=p.learning_rate,
        max_iter=p.iterations,
        max_leaf_nodes=p.leaves,
        min_samples_leaf=p.min_leaf_rows,
        l2_regularization=p.l2,
        early_stopping=False,
        random_state=seed,
    )


def risk(m: Any, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """A fitted classifier's probability of the positive class per row of `x`."""
    out: np.ndarray[Any, Any] = m.predict_proba(x)[:, 1]
    return out


def fit(
    x_train: np.ndarray[Any, Any],
    y_train: np.ndarray[Any, Any],
    x_val: np.ndarray[Any, Any],
    y_val: np.ndarray[Any, Any],
    *,
    seed: int,
    grid: tuple[Params, ...] = GRID,
    log: Callable[[str], None] = print,
) -> tuple[Any, Params, dict[str, float]]:
    """Each candidate of `grid` on the training rows; the one with the best validation AUROC,
    its parameters and every candidate's validation AUROC (by `Params.describe`)."""
    best: tuple[float, Any, Params] | None = None
    aurocs: dict[str, float] = {}
    for p in grid:
        m = model(p, seed).fit(x_train, y_train)
        auroc = float(roc_auc_score(y_val, risk(m, x_val)))
        aurocs[p.describe()] = round(auroc, 4)
        log(f"{p.describe()}: validation AUROC {auroc:.4f}")
        if best is None or auroc > best[0]:
            best = (auroc, m, p)
    assert best is not None
    return best[1], best[2], aurocs


def to_onnx(m: Any, width: int) -> bytes:
    """The classifier as an ONNX tree ensemble with one output, `risk` (float, one per row):
    skl2onnx's class probabilities, column 1 taken by a Gather; the label output is dropped."""
    import onnx
    from onnx import helper

    proto = sklearn_onnx.convert(m, width, OPSET)
    graph = proto.graph
    probs = next(o.name for o in graph.output if o.name != "label")
    graph.initializer.append(helper.make_tensor("positive_class", onnx.TensorProto.INT64, [], [1]))
    graph.node.append(helper.make_node("Gather", [probs, "positive_class"], ["risk"], axis=1))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("risk", onnx.TensorProto.FLOAT, [None]))
    onnx.checker.check_model(proto)
    return bytes(proto.SerializeToString())


def export(m: Any, path: Path, sample: np.ndarray[Any, Any]) -> float:
    """Write the ONNX file; returns max |scikit-learn − onnxruntime| on `sample`, scored as the
    job scores (`udfs.scoring.open_session`)."""
    path.write_bytes(to_onnx(m, sample.shape[1]))
    (got,) = open_session(path).run(None, {"features": sample.astype(np.float32)})
    return float(np.abs(np.asarray(got, dtype="float64") - risk(m, sample)).max())
