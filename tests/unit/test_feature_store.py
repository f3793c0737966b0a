"""The Feast repo: its offline store rebuilds training features point-in-time, and a feature
service named for a model version serves exactly the model's inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feature_store import repo
from feature_store.definitions import FEATURES
from jobs.feeds.replay import SAMPLE
from training.features import hourly_features

T0 = pd.Timestamp("2026-01-05", tz="UTC")


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    f = hourly_features(pd.read_parquet(SAMPLE))
    f["patient_token"] = f["patient_id"]
    f["event_timestamp"] = T0 + pd.to_timedelta(f["iculos_h"], unit="h")
    return f


def test_a_model_versions_feature_service_serves_the_models_inputs(tmp_path: Path) -> None:
    store = repo.open_store(tmp_path, "sqlite", [repo.service_name("7")])
    service = store.get_feature_service("sepsis_risk_v7")
    served = [f.name for view in service.feature_view_projections for f in view.features]
    assert tuple(served) == FEATURES


def test_the_offline_store_rebuilds_training_features_point_in_time(
    tmp_path: Path, sample: pd.DataFrame
) -> None:
    static = sample.groupby("patient_token", as_index=False)[["age_years", "female"]].first()
    repo.write_offline(tmp_path, sample, static.assign(event_timestamp=T0 - pd.Timedelta("1D")))
    store = repo.open_store(tmp_path, "sqlite", [repo.service_name("1")])
    rng = np.random.default_rng(3)
    rows = sample.sample(300, random_state=3)
    # Asked between two hourly rows, the answer is the earlier row: nothing from the future.
    asked = rows["event_timestamp"] + pd.to_timedelta(rng.integers(0, 59, len(rows)), unit="m")
    entity = pd.DataFrame({"patient_token": rows["patient_token"], "event_timestamp": asked})
    got = store.get_historical_features(
        entity_df=entity, features=store.get_feature_service("sepsis_risk_v1")
    ).to_df()
    got = got.sort_values(["patient_token", "event_timestamp"]).reset_index(drop=True)
    want = rows.assign(event_timestamp=asked).sort_values(["patient_token", "event_timestamp"])
    np.testing.assert_allclose(
        got[list(FEATURES)].to_numpy(dtype=np.float32),
        want[list(FEATURES)].to_numpy(dtype=np.float32),
    )
