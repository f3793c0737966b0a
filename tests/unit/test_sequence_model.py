"""The sequence model (`training.sequence`): causal over the patient's hours, and it learns what
a patient's course says that no single hour does."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.metrics import roc_auc_score

from feature_store.definitions import FEATURES
from training import sequence
from training.model import fit_scaling


def patients(n: int, seed: int, hours: int = 24) -> pd.DataFrame:
    """`n` patients of `hours` hours, each from a heart rate drawn from one wide range. From hour
    6 a septic patient's (every 4th) rises by 1.5 bpm an hour and anyone else's falls as fast;
    labelled from hour 12. Where a patient is says little; where they are going tells. Lactate
    is charted every 6 h (NaN between); the other features are constant."""
    rng = np.random.default_rng(seed)
    frames = []
    for i in range(n):
        septic = i % 4 == 0
        t = np.arange(hours, dtype=float)
        course = 1.5 * np.clip(t - 6, 0, None) * (1 if septic else -1)
        hr = rng.uniform(40, 180) + course + rng.normal(0, 2, hours)
        frame = pd.DataFrame(1.0, index=range(hours), columns=list(FEATURES))
        frame["heart_rate_bpm"] = hr
        frame["lactate_mmol_l"] = np.where(t % 6 == 0, rng.uniform(0.5, 4, hours), np.nan)
        frame["age_years"] = rng.uniform(20, 90)
        frames.append(
            frame.assign(
                patient_id=f"p{i:04d}", iculos_h=t + 1, label=((t >= 12) & septic).astype("int8")
            )
        )
    return pd.concat(frames, ignore_index=True)


def test_a_patients_risk_at_an_hour_depends_only_on_that_hour_and_the_ones_before() -> None:
    frame = patients(6, seed=1)
    model = sequence.SepsisGRU(*fit_scaling(frame[list(FEATURES)].to_numpy(np.float32)))
    torch.manual_seed(0)
    before = sequence.predict(model, frame)
    later = frame["iculos_h"] > 10
    changed = frame.assign(heart_rate_bpm=frame["heart_rate_bpm"].where(~later, 200.0))
    after = sequence.predict(model, changed)
    assert np.array_equal(before[~later], after[~later])
    assert not np.allclose(before[later], after[later])


def test_the_risks_follow_each_row_whatever_the_frames_row_order() -> None:
    frame = patients(6, seed=2)
    model = sequence.SepsisGRU(*fit_scaling(frame[list(FEATURES)].to_numpy(np.float32)))
    shuffled = frame.sample(frac=1.0, random_state=3)
    by_row = pd.Series(sequence.predict(model, shuffled), index=shuffled.index).sort_index()
    assert np.allclose(by_row.to_numpy(), sequence.predict(model, frame), atol=1e-6)


def test_the_sequence_model_learns_a_rising_course_that_no_single_hour_shows() -> None:
    train, val, test = patients(2000, 4), patients(200, 5), patients(200, 6)
    model = sequence.fit(train, val, epochs=25, seed=7, hidden=16, log=lambda _: None)
    labelled = test["iculos_h"] > 13
    risk = sequence.predict(model, test)
    single_hour = roc_auc_score(test["label"][labelled], test["heart_rate_bpm"][labelled])
    assert roc_auc_score(test["label"][labelled], risk[labelled]) > max(0.9, single_hour + 0.1)
