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


def test_a_reader_never_sees_part_of_the_registry_while_another_process_rewrites_it(
    tmp_path: Path,
) -> None:
    """Feast re-reads a file registry whenever its mtime changes; written in place, a read
    during a write got a truncated file (a DecodeError, or no feature views) in a scoring
    worker while another subtask applied."""
    import threading
    import time

    from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

    from feature_store.registry_store import AtomicFileRegistryStore

    store = repo.open_store(tmp_path, "sqlite")
    writer = store._registry._registry_store
    assert isinstance(writer, AtomicFileRegistryStore)
    path = tmp_path / "registry.db"
    whole = RegistryProto.FromString(path.read_bytes())
    views = {v.spec.name for v in whole.feature_views}
    assert repo.STATIC_VIEW in views
    stop = time.monotonic() + 2.0
    writes = 0

    def rewrite() -> None:
        nonlocal writes
        while time.monotonic() < stop:
            writer.update_registry_proto(whole)
            writes += 1

    t = threading.Thread(target=rewrite)
    t.start()
    reads, parts = 0, []
    while time.monotonic() < stop:
        try:
            seen = {v.spec.name for v in RegistryProto.FromString(path.read_bytes()).feature_views}
        except Exception as e:  # a DecodeError: half a file
            parts.append(repr(e))
            continue
        finally:
            reads += 1
        if seen != views:
            parts.append(f"views {sorted(seen)}")
    t.join()
    assert writes > 20 and reads > 100
    assert parts == []
    assert not list(tmp_path.glob(".registry.db.*"))  # no temporary file left behind


def test_stores_opened_at_once_keep_every_feature_service_each_applied(tmp_path: Path) -> None:
    import threading

    repo.open_store(tmp_path, "sqlite")
    versions = [str(v) for v in range(1, 7)]
    opened = [
        threading.Thread(target=repo.open_store, args=(tmp_path, "sqlite", [repo.service_name(v)]))
        for v in versions
    ]
    for t in opened:
        t.start()
    for t in opened:
        t.join()
    names = {s.name for s in repo.open_store(tmp_path, "sqlite").list_feature_services()}
    assert names >= {repo.service_name(v) for v in versions}
