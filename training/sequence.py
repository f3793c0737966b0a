"""A sequence model over the patient's hours (torch; training only): the issue's third family,
tried beside the trees and the MLP by the proxy external validation (`training.external`).

A GRU reads the patient's hourly feature vectors (the same 29 causal features as the other
families, `feature_store.definitions.FEATURES`) in time order and gives a risk at every hour from
that hour and the ones before it (one direction, so it is causal: what follows an hour never
changes its risk). The head sees the GRU's memory and the hour's own features, so it can learn
what the MLP learns plus what the patient's course adds. Imputation and scaling are inside the
module, as in `training.model`.

It is not deployable as it stands, and is not meant to be until it earns it: the screening job
scores irregular states (each record), while this model steps once per hour, so the stream
would need an hourly tick per patient and the GRU's memory in keyed state (its ONNX export would
be one step: features and memory in, risk and memory out). `training.external` reports whether
it transfers better than the trees before any of that is worth building.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from feature_store.definitions import FEATURES
from training.model import BestEpoch, Standardised, fit_scaling

HIDDEN = 64
BATCH_PATIENTS = 64


class SepsisGRU(Standardised):
    def __init__(
        self,
        medians: npt.NDArray[np.float32],
        means: npt.NDArray[np.float32],
        stds: npt.NDArray[np.float32],
        hidden: int = HIDDEN,
        dropout: float = 0.2,
    ) -> None:
        super().__init__(medians, means, stds)
        self.embed = nn.Sequential(nn.Linear(len(medians), hidden), nn.ReLU())
        self.gru = nn.GRU(hidden, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(2 * hidden, 1))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (B × T) for raw features (B × T × F, float32, NaN = unknown), hour t from
        hours ≤ t only."""
        e = self.embed(self.standardise(x))
        memory, _ = self.gru(e)
        out: torch.Tensor = self.head(torch.cat([memory, e], dim=-1)).squeeze(-1)
        return out


def _patients(frame: pd.DataFrame) -> tuple[list[npt.NDArray[np.intp]], npt.NDArray[np.float32]]:
    """Each patient's row positions in time order, and the frame's features (rows × F)."""
    order = np.lexsort((frame["iculos_h"].to_numpy(), frame["patient_id"].astype(str).to_numpy()))
    ids = frame["patient_id"].astype(str).to_numpy()[order]
    starts = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1]])
    rows = [order[a:b] for a, b in zip(starts, np.r_[starts[1:], len(order)], strict=True)]
    return rows, frame[list(FEATURES)].to_numpy(dtype=np.float32)


def _batches(
    rows: list[npt.NDArray[np.intp]], shuffle: np.random.Generator | None
) -> Iterator[list[npt.NDArray[np.intp]]]:
    """Patients of similar length together (little padding); batch order shuffled in training."""
    by_length = sorted(range(len(rows)), key=lambda i: len(rows[i]))
    chunks = [by_length[i : i + BATCH_PATIENTS] for i in range(0, len(rows), BATCH_PATIENTS)]
    if shuffle is not None:
        shuffle.shuffle(chunks)
    for chunk in chunks:
        yield [rows[i] for i in chunk]


def _pad(
    batch: list[npt.NDArray[np.intp]], x: npt.NDArray[np.float32]
) -> tuple[torch.Tensor, torch.Tensor]:
    """B × T × F features (padding after each patient's last hour) and the B × T mask."""
    longest = max(len(r) for r in batch)
    out = np.zeros((len(batch), longest, x.shape[1]), dtype=np.float32)
    mask = np.zeros((len(batch), longest), dtype=bool)
    for i, r in enumerate(batch):
        out[i, : len(r)] = x[r]
        mask[i, : len(r)] = True
    return torch.from_numpy(out), torch.from_numpy(mask)


def predict(model: SepsisGRU, frame: pd.DataFrame) -> npt.NDArray[np.float64]:
    """The risk at every row of `frame` (any row order), each from its patient's hours up to it."""
    rows, x = _patients(frame)
    risk = np.empty(len(frame), dtype=np.float64)
    model.eval()
    with torch.no_grad():
        for batch in _batches(rows, None):
            xb, _ = _pad(batch, x)
            p = torch.sigmoid(model.logits(xb)).numpy()
            for i, r in enumerate(batch):
                risk[r] = p[i, : len(r)]
    return risk


def fit(
    train: pd.DataFrame,
    val: pd.DataFrame,
    *,
    epochs: int,
    seed: int,
    hidden: int = HIDDEN,
    log: Callable[[str], Any] = print,
) -> SepsisGRU:
    """Trained on `train`'s patients (BCE at every hour), the epoch with the best validation
    AUROC kept (early stop after 3 without gain)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    rows, x = _patients(train)
    y = train["label"].to_numpy(dtype=np.float32)
    model = SepsisGRU(*fit_scaling(x), hidden=hidden)
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3, weight_decay=1e-3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    loss_fn = nn.BCEWithLogitsLoss()
    yv = val["label"].to_numpy()
    best = BestEpoch()
    for epoch in range(epochs):
        model.train()
        for batch in _batches(rows, rng):
            xb, mask = _pad(batch, x)
            yb = torch.zeros(mask.shape)
            for i, r in enumerate(batch):
                yb[i, : len(r)] = torch.from_numpy(y[r])
            opt.zero_grad()
            loss = loss_fn(model.logits(xb)[mask], yb[mask])
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        sched.step()
        auroc = float(roc_auc_score(yv, predict(model, val)))
        log(f"epoch {epoch + 1}: validation AUROC {auroc:.4f}")
        if best.stop_after(model, auroc):
            break
    best.restore(model)
    return model
