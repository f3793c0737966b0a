"""scikit-learn → ONNX, one way for every model trained here (skl2onnx).

The graph takes one float32 input, `features` [batch, width], NaN for unknown; a classifier's
probabilities come out as a plain tensor (no ZipMap), so onnxruntime returns arrays that every
scorer reads the same way. Callers add what is theirs: the sepsis trees keep only the positive
class (`training.gbt.to_onnx`), the 2012 models snap their thresholds to float32 first
(`training.catalog.physionet2012.to_onnx`).
"""

from __future__ import annotations

from typing import Any

import onnx


def convert(model: Any, width: int, target_opset: int | dict[str, int]) -> onnx.ModelProto:
    """`model` (a fitted estimator or pipeline) as an ONNX graph with input `features`."""
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import FloatTensorType

    options = {id(model): {"zipmap": False}} if hasattr(model, "predict_proba") else None
    proto: onnx.ModelProto = convert_sklearn(
        model,
        initial_types=[("features", FloatTensorType([None, width]))],
        options=options,
        target_opset=target_opset,
    )
    return proto
