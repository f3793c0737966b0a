"""Feast imported without torch, for the processes that serve features (a scoring worker, the
push process): a module of its own, so that importing it brings in neither the scoring code nor
onnxruntime."""

from __future__ import annotations

import sys


def import_repo_without_torch() -> None:
    """Import `feature_store.repo`, feast without torch where neither was imported yet.
    Feast imports torch whenever it is installed (feast/torch_wrapper.py, for tensor results the
    online path never asks for): about 0.4 GiB in every scoring worker of a venv that also
    trains. Inference needs onnxruntime only; the job image has no torch anyway."""
    if "feast" not in sys.modules and "torch" not in sys.modules:
        sys.modules["torch"] = None  # type: ignore[assignment]  # `import torch` fails
        try:
            from feature_store import repo  # noqa: F401
        finally:
            del sys.modules["torch"]
