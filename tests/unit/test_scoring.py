"""Scoring a batch: the registry's ONNX models, static features from a real Feast store (SQLite
online store), stream features pushed back, roles swapped without a restart."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_store import repo
from feature_store.definitions import FEATURES, STATIC_FEATURES, STREAM_FEATURES
from feature_store.online import feast_source
from jobs.feeds.replay import SAMPLE
from training.features import hourly_features
from training.registry import BUNDLED, bootstrap
from udfs.registry import Registry
from udfs.scoring import FeatureSource, Scorer, open_session

MODEL = "sepsis-risk"
T0 = pd.Timestamp("2026-01-05", tz="UTC")


@pytest.fixture(scope="module")
def sample() -> pd.DataFrame:
    f = hourly_features(pd.read_parquet(SAMPLE))
    f["patient_token"] = f["patient_id"]
    f["event_time"] = T0 + pd.to_timedelta(f["iculos_h"], unit="h")
    return f


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "registry")
    bootstrap(reg, MODEL)
    return reg


@pytest.fixture()
def source(tmp_path: Path, sample: pd.DataFrame) -> Iterator[FeatureSource]:
    fs = feast_source(tmp_path / "feast", "sqlite", cache_ttl_s=3600)
    store = repo.open_store(tmp_path / "feast", "sqlite")
    static = sample.groupby("patient_token", as_index=False)[["age_years", "female"]].first()
    repo.push_static(store, static.assign(event_timestamp=T0))
    yield fs
    fs.close()  # ends its push process


def _onnx(reg: Registry, version: str, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    s = open_session(reg.get(MODEL, version).onnx)
    return np.asarray(s.run(None, {"features": x})[0])


def test_a_batch_is_scored_by_champion_and_challenger_as_onnxruntime_scores_the_features(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    scorer = Scorer(registry, MODEL, source)
    out = scorer.score(sample)
    x = sample[list(FEATURES)].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(out["champion_risk"], _onnx(registry, "1", x), rtol=1e-6)
    np.testing.assert_allclose(out["challenger_risk"], _onnx(registry, "2", x), rtol=1e-6)
    assert set(out["champion_version"]) == {"1"} and set(out["challenger_version"]) == {"2"}
    assert (out["champion_threshold"] == registry.get(MODEL, "1").threshold).all()
    assert (out["latency_ms"] > 0).all()
    assert (out["features_missing"] == np.isnan(x).sum(axis=1)).all()


def test_static_features_come_from_feast_once_per_patient_while_cached(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    scorer = Scorer(registry, MODEL, source)
    first, rest = sample.head(300), sample.iloc[300:]
    scorer.score(first)
    scorer.score(first)
    assert source.lookups == 1
    scorer.score(rest)
    assert source.lookups == 2
    assert len(source.cache) == sample.patient_token.nunique()
    source.cache_ttl_s = 0.0
    scorer.score(first)
    assert source.lookups == 3


def test_a_patient_the_store_does_not_know_yet_is_asked_again_within_a_minute() -> None:
    """Scored before registration pushed their age and sex, a patient was cached with none and
    scored without them for up to an hour."""
    import time as clock

    from udfs import scoring

    store: dict[str, tuple[float, float]] = {}

    def lookup(tokens: list[str]) -> pd.DataFrame:
        known = [t for t in tokens if t in store]
        return pd.DataFrame([store[t] for t in known], index=known, columns=["age_years", "female"])

    source = FeatureSource(
        lookup=lookup, push=_refused, static_features=STATIC_FEATURES, cache_ttl_s=3600.0
    )
    assert np.isnan(source.static(pd.Series(["new"]))).all()
    store["new"] = (71.0, 1.0)  # registration's push, seconds later
    assert np.isnan(source.static(pd.Series(["new"]))).all()  # asked again only after a while
    at, row = source.cache["new"]
    source.cache["new"] = (at - scoring.MISS_TTL_S - 1, row)  # a minute on
    assert source.static(pd.Series(["new"])).tolist() == [[71.0, 1.0]]
    assert clock.monotonic() - source.cache["new"][0] < 5  # known: kept the full time


def test_patients_first_seen_together_are_not_all_looked_up_again_at_once() -> None:
    asked: list[list[str]] = []

    def lookup(tokens: list[str]) -> pd.DataFrame:
        asked.append(tokens)
        return pd.DataFrame({"age_years": 60.0, "female": 1.0}, index=tokens)

    source = FeatureSource(
        lookup=lookup, push=_refused, static_features=STATIC_FEATURES, cache_ttl_s=3600.0
    )
    beds = pd.Series([f"patient-{i}" for i in range(6000)])
    source.static(beds)  # every bed at once, as when the job starts
    ttls = np.array([source.ttl_s(t) for t in beds])
    assert ttls.min() >= 1800.0 and ttls.max() <= 3600.0
    # spread over the second half hour: no minute of it holds more than a few % of the beds
    per_minute = np.bincount(((ttls - 1800.0) // 60).astype(int))
    assert len(per_minute) == 30 and per_minute.max() < 0.05 * len(beds)
    other_worker = FeatureSource(lookup=_refused, push=_refused, cache_ttl_s=3600.0)
    assert other_worker.ttl_s("patient-7") == source.ttl_s("patient-7")
    for t, c in source.cache.items():  # due at its own time: asked again then, not before
        source.cache[t] = (c[0] - source.ttl_s(t) - 1.0 if t == "patient-7" else c[0], c[1])
    source.static(beds)
    assert asked[1:] == [["patient-7"]]


def test_a_patient_unknown_to_feast_is_scored_with_its_static_features_unknown(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    stranger = sample.head(3).assign(patient_token="never-registered")
    out = Scorer(registry, MODEL, source).score(stranger)
    x = stranger[list(FEATURES)].to_numpy(dtype=np.float32)
    x[:, -2:] = np.nan
    np.testing.assert_allclose(out["champion_risk"], _onnx(registry, "1", x), rtol=1e-6)
    assert (out["features_missing"] == np.isnan(x).sum(axis=1)).all()


def test_the_batch_stream_features_are_pushed_to_the_online_store(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame, tmp_path: Path
) -> None:
    scorer = Scorer(registry, MODEL, source)
    for _, part in sample.groupby(sample.index // 500):
        scorer.score(part)
    source.flush()  # also on the UDF's close()
    store = repo.open_store(tmp_path / "feast", "sqlite")
    latest = sample.sort_values("event_time").groupby("patient_token").tail(1)
    got = store.get_online_features(
        features=[f"{repo.STREAM_VIEW}:{f}" for f in STREAM_FEATURES],
        entity_rows=[{"patient_token": t} for t in latest.patient_token],
    ).to_df()
    want = latest[list(STREAM_FEATURES)].to_numpy(dtype=np.float32)
    np.testing.assert_allclose(got[list(STREAM_FEATURES)].to_numpy(dtype=np.float32), want)


def test_a_promotion_takes_effect_without_a_restart(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    scorer = Scorer(registry, MODEL, source, roles_check_s=0.0)
    assert set(scorer.score(sample.head(5))["champion_version"]) == {"1"}
    retrained = registry.register(sorted((BUNDLED / MODEL).iterdir())[0])
    registry.promote(MODEL, retrained.version)
    out = scorer.score(sample.head(5))
    assert set(out["champion_version"]) == {"3"} and set(out["challenger_version"]) == {"2"}
    registry.rollback(MODEL)
    assert set(scorer.score(sample.head(5))["champion_version"]) == {"1"}


def test_a_version_that_cannot_be_served_leaves_the_champion_before_it_and_scoring_goes_on(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame, tmp_path: Path
) -> None:
    """One bad promotion stopped the screening job (rule alerts included) and looped it through
    restarts: a model file copied over a registered version (not the one registered), or a
    version reading a feature the job does not compute."""
    scorer = Scorer(
        registry, MODEL, source, roles_check_s=0.0, stream_features=tuple(STREAM_FEATURES)
    )
    before = scorer.score(sample.head(5))
    swapped = registry.register(sorted((BUNDLED / MODEL).iterdir())[0])
    swapped.onnx.write_bytes(registry.get(MODEL, "2").onnx.read_bytes())  # not its file
    registry.promote(MODEL, swapped.version)
    kept = scorer.score(sample.head(5))
    assert set(kept["champion_version"]) == {"1"} and scorer.load_failures == 1
    np.testing.assert_allclose(kept["champion_risk"], before["champion_risk"])
    unknown = registry.register(
        _reading(sorted((BUNDLED / MODEL).iterdir())[0], tmp_path, "lactate_trend_6h")
    )
    registry.set_role(MODEL, "challenger", unknown.version, why="reads what the job lacks")
    shadowless = scorer.score(sample.head(5))
    assert scorer.load_failures == 3  # the swapped champion tried again, and the challenger
    assert set(shadowless["champion_version"]) == {"1"}
    assert shadowless["challenger_version"].isna().all()


def test_a_job_that_starts_after_a_bad_promotion_serves_the_champion_before_it(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    """A running job keeps the champion before a version it cannot serve; one that (re)starts
    had none to keep and served no model at all, silently: it takes the newest earlier champion
    of the registry's history that can be served."""
    swapped = registry.register(sorted((BUNDLED / MODEL).iterdir())[0])
    swapped.onnx.write_bytes(registry.get(MODEL, "2").onnx.read_bytes())
    registry.promote(MODEL, swapped.version)
    started = Scorer(registry, MODEL, source)
    assert started.champion is not None and started.champion.version.version == "1"
    assert set(started.score(sample.head(5))["champion_version"]) == {"1"}


def test_a_version_that_failed_to_load_is_tried_again_at_the_next_check(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    """Promoted while its file was still syncing to the shared mount: the version before it was
    served until the roles changed again or the job restarted."""
    scorer = Scorer(registry, MODEL, source, roles_check_s=0.0)
    retrained = registry.register(sorted((BUNDLED / MODEL).iterdir())[0])
    kept = retrained.onnx.read_bytes()
    retrained.onnx.unlink()
    registry.promote(MODEL, retrained.version)
    assert set(scorer.score(sample.head(5))["champion_version"]) == {"1"}
    retrained.onnx.write_bytes(kept)
    assert set(scorer.score(sample.head(5))["champion_version"]) == {retrained.version}


def _reading(built: Path, tmp: Path, feature: str) -> Path:
    """A copy of a built version whose spec names `feature` for its last input."""
    out = tmp / "reading"
    shutil.copytree(built, out)
    spec = json.loads((out / "spec.json").read_text())
    spec["features"][-1]["name"] = feature
    (out / "spec.json").write_text(json.dumps(spec))
    return out


def _refused(*_: Any) -> Any:
    raise ConnectionError("online store unreachable")


def test_an_unreachable_online_store_leaves_static_features_unknown_and_scoring_goes_on(
    registry: Registry, sample: pd.DataFrame
) -> None:
    down = FeatureSource(
        lookup=_refused, push=_refused, static_features=STATIC_FEATURES, push_interval_s=0.0
    )
    out = Scorer(registry, MODEL, down).score(sample.head(50))
    x = sample.head(50)[list(FEATURES)].to_numpy(dtype=np.float32)
    x[:, -2:] = np.nan
    np.testing.assert_allclose(out["champion_risk"], _onnx(registry, "1", x), rtol=1e-6)
    assert down.failures == 2  # one lookup, one push
    assert down.cache == {}  # asked again next batch
    assert len(down.staged) == 1 and len(down.staged[0]) == sample.head(50).patient_token.nunique()


def test_a_failed_push_is_retried_with_the_latest_features_per_patient(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame, tmp_path: Path
) -> None:
    push = source.push
    source.push, source.push_interval_s = _refused, 0.0
    source.background = False  # each push in the batch, so that its outcome can be asserted
    scorer = Scorer(registry, MODEL, source)
    scorer.score(sample.head(100))
    scorer.score(sample.iloc[100:200])
    assert source.failures == 2
    source.push = push
    scorer.score(sample.iloc[200:300])
    assert source.staged == []
    store = repo.open_store(tmp_path / "feast", "sqlite")
    first = sample.head(300).sort_values("event_time").groupby("patient_token").tail(1)
    got = store.get_online_features(
        features=[f"{repo.STREAM_VIEW}:hours_since_first_record"],
        entity_rows=[{"patient_token": t} for t in first.patient_token],
    ).to_df()
    np.testing.assert_allclose(got["hours_since_first_record"], first["hours_since_first_record"])


def test_with_no_champion_the_scorer_scores_no_risk_and_logs_that_state(
    tmp_path: Path, source: FeatureSource, sample: pd.DataFrame, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="udfs.scoring"):
        out = Scorer(Registry(tmp_path / "empty"), MODEL, source).score(sample.head(20))
    assert out["champion_version"].isna().all()
    assert out["champion_risk"].isna().all()
    assert out["challenger_version"].isna().all()
    assert "has no champion" in caplog.text


def test_rows_not_to_be_scored_get_no_score_and_no_feature_push(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    batch = sample.head(40).assign(scorable=[i % 2 == 0 for i in range(40)])
    staged: list[pd.DataFrame] = []
    source.stage = staged.append  # type: ignore[method-assign]
    out = Scorer(registry, MODEL, source).score(batch)
    assert list(out.index) == list(batch.index)
    assert out.loc[batch.scorable, "champion_risk"].notna().all()
    assert out.loc[~batch.scorable, "champion_risk"].isna().all()
    assert out.loc[~batch.scorable, "champion_version"].isna().all()
    pushed = pd.concat(staged)
    kept = batch[batch.scorable]
    assert set(pushed.event_timestamp) <= set(kept.event_time)


def test_a_batch_with_nothing_to_score_comes_back_typed_as_scored_rows(
    registry: Registry, source: FeatureSource, sample: pd.DataFrame
) -> None:
    out = Scorer(registry, MODEL, source).score(sample.head(5).assign(scorable=False))
    assert out["champion_risk"].dtype == "float64" and out["champion_risk"].isna().all()
    assert out["features_missing"].dtype == "int32"
    assert out["champion_version"].isna().all()


def test_in_the_background_a_batch_does_not_wait_for_a_slow_push_and_flush_pushes_the_rest(
    registry: Registry, sample: pd.DataFrame
) -> None:
    started, release, pushed = threading.Event(), threading.Event(), []

    def slow(frame: pd.DataFrame) -> None:
        started.set()
        release.wait(30)
        pushed.append(frame)

    def refused_once(frame: pd.DataFrame) -> None:
        source.push = slow
        raise ConnectionError("online store unreachable")

    source = FeatureSource(
        lookup=lambda _: pd.DataFrame(), push=refused_once, push_interval_s=0.0, background=True
    )
    scorer = Scorer(registry, MODEL, source)
    scorer.score(sample.head(100))  # its push fails on the worker, the rows are kept
    assert source._pushing is not None
    source._pushing.result()
    assert source.failures == 1
    scorer.score(sample.iloc[100:200])  # a push starts and blocks on the worker
    assert started.wait(30)  # the worker has taken what was staged
    scorer.score(sample.iloc[200:300])  # returns although that push has not ended
    assert pushed == [] and len(source.staged) == 1
    release.set()
    source.flush()
    assert len(pushed) == 2 and source.staged == []
    got = pd.concat(pushed).groupby("patient_token").tail(1).set_index("patient_token")
    latest = sample.head(300).sort_values("event_time").groupby("patient_token").tail(1)
    latest = latest.set_index("patient_token")
    assert set(got.index) == set(latest.index)
    np.testing.assert_allclose(
        got.loc[latest.index, "hours_since_first_record"], latest["hours_since_first_record"]
    )


def test_a_scoring_worker_reads_feast_without_importing_torch(tmp_path: Path) -> None:
    store = repo.open_store(tmp_path, "sqlite")
    static = pd.DataFrame({"patient_token": ["p1"], "age_years": [71.0], "female": [1.0]})
    repo.push_static(store, static.assign(event_timestamp=T0))
    # A fresh process, as a Python worker is: feast alone would import torch (0.4 GiB).
    script = f"""
import sys
from pathlib import Path
from feature_store.online import feast_source
fs = feast_source(Path({str(tmp_path)!r}), "sqlite", cache_ttl_s=60)
print(fs.lookup(["p1"])["age_years"].tolist(), "torch" in sys.modules)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-2:] == ["[71.0]", "False"], done.stdout
