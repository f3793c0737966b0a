"""The model catalog: each model is a spec (`schemas.model_spec`) and a training module here.

A catalog module exposes:

- `NAME`: the registry name (`icu-mortality`, …);
- `main(argv)`: `python -m training.catalog.<module> train|evaluate …`; `evaluate` prints the
  metrics the issue names on its last line and refuses a file of the wrong layout (`LayoutError`)
  with a clear message (exit 2);
- `train(...)`: builds a registry version folder (model.onnx, spec.json, report.md).

`make evaluate-model MODEL=<name> FILE=<file>` dispatches here (the sepsis model keeps
`training.evaluate`).
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

SEPSIS: Final = "sepsis-risk"
MODULES: Final = {
    "icu-mortality": "training.catalog.icu_mortality",
    "length-of-stay": "training.catalog.length_of_stay",
    "readmission-30d": "training.catalog.readmission",
    "capacity-forecast": "training.catalog.capacity_forecast",
}


class LayoutError(ValueError):
    """An input file that is not in the layout a model reads; the message says what is wrong."""


def module(name: str) -> ModuleType:
    if name not in MODULES:
        known = ", ".join([SEPSIS, *MODULES])
        raise SystemExit(f"unknown model {name!r}; the catalog has: {known}")
    return importlib.import_module(MODULES[name])
