"""The sepsis risk network (torch; training only). Imputation and scaling are inside the module,
so its ONNX export takes the raw features, NaN for unknown, and serving needs onnxruntime only.

A small MLP over clinical features, not a sequence model: the features already carry the
recent past (carried-forward values, 6-hour extremes, time since labs), the network stays
cheap to score per state, and a wide margin of regularisation (dropout, weight decay, clamped
z-scores, no missingness indicators, no hospital-specific inputs) favours transfer to another
hospital system over fitting this one.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import torch
from torch import nn

Z_CLAMP = 6.0


class Standardised(nn.Module):  # type: ignore[misc]
    """A network over raw features: training medians for NaN, then z-scores clamped at
    ±`Z_CLAMP`, both inside the module (its ONNX export takes the raw features)."""

    def __init__(
        self,
        medians: npt.NDArray[np.float32],
        means: npt.NDArray[np.float32],
        stds: npt.NDArray[np.float32],
    ) -> None:
        super().__init__()
        self.register_buffer("medians", torch.tensor(medians, dtype=torch.float32))
        self.register_buffer("means", torch.tensor(means, dtype=torch.float32))
        self.register_buffer("stds", torch.tensor(stds, dtype=torch.float32))

    def standardise(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.where(torch.isnan(x), self.medians, x)
        return torch.clamp((x - self.means) / self.stds, -Z_CLAMP, Z_CLAMP)


class SepsisRisk(Standardised):
    def __init__(
        self,
        medians: npt.NDArray[np.float32],
        means: npt.NDArray[np.float32],
        stds: npt.NDArray[np.float32],
        hidden: tuple[int, ...] = (64, 32),
        dropout: float = 0.2,
    ) -> None:
        super().__init__(medians, means, stds)
        layers: list[nn.Module] = []
        width = len(medians)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
            width = h
        layers.append(nn.Linear(width, 1))
        self.net = nn.Sequential(*layers)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.net(self.standardise(x)).squeeze(-1)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Risk in [0, 1] for each row of raw features (N × F, float32, NaN = unknown)."""
        return torch.sigmoid(self.logits(x))


def fit_scaling(
    x: npt.NDArray[np.float32],
) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
    medians = np.nanmedian(x, axis=0)
    filled = np.where(np.isnan(x), medians, x)
    means = filled.mean(axis=0)
    stds = filled.std(axis=0)
    stds[stds < 1e-6] = 1.0
    return medians.astype("float32"), means.astype("float32"), stds.astype("float32")


class BestEpoch:
    """Early stopping on validation AUROC: keeps the weights of the best epoch so far, and says
    to stop after `patience` epochs without a gain."""

    def __init__(self, patience: int = 3) -> None:
        self.patience = patience
        self.best, self.stale = -1.0, 0
        self.state: dict[str, torch.Tensor] | None = None

    def stop_after(self, model: nn.Module, auroc: float) -> bool:
        if auroc > self.best:
            self.best, self.stale = auroc, 0
            self.state = {k: v.clone() for k, v in model.state_dict().items()}
        else:
            self.stale += 1
        return self.stale >= self.patience

    def restore(self, model: nn.Module) -> None:
        """`model` with the best epoch's weights, in evaluation mode."""
        assert self.state is not None, "no epoch was scored"
        model.load_state_dict(self.state)
        model.eval()
