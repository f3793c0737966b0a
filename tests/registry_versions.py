"""Built model versions for registry tests: a bundled version copied with the gate result a test
needs (the registry reads a version's gate from its spec; the model is unchanged)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from training.registry import BUNDLED

MICU_LAGS = "unit=MICU: AUROC 0.716 is more than 0.05 below the overall 0.768"


def with_gate(tmp: Path, passed: bool, source: str = "1-gbt", model: str = "sepsis-risk") -> Path:
    """The bundled `source` version of `model`, copied under `tmp`, its gate set to `passed`
    (failed: the subgroup reason MICU_LAGS)."""
    out = tmp / f"built-{source}-{'passed' if passed else 'failed'}"
    shutil.copytree(BUNDLED / model / source, out)
    spec = json.loads((out / "spec.json").read_text())
    spec["gate"] = {"passed": passed, "reasons": [] if passed else [MICU_LAGS]}
    (out / "spec.json").write_text(json.dumps(spec))
    return out
