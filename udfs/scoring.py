"""Sepsis risk scoring of a batch of screened states: champion and shadow challenger ONNX models
from the registry, stream features from the job, static features from Feast.

`Scorer` is plain Python (tested without a JVM); `udfs.flink_scoring` wraps it as a vectorised
PyFlink UDF whose `open()` builds it once per worker. Per batch:

1. static features (age, sex) for patients not in the in-process cache come from the Feast
   online store in one call; cached for between half and all of `cache_ttl_s`, a share fixed
   per patient (they do not change during a stay; patients first seen together, e.g. every
   bed when the job starts, are not all asked again in the same minute an hour later);
2. both models score the whole batch (onnxruntime, one call each);
3. the batch's stream features, the latest per patient, are staged and pushed to the online
   store every `push_interval_s` in one call (Feast's push is fast only in batches);
4. every `roles_check_s`, roles.json is checked and changed roles are loaded (no restart).
   A version that cannot be served (udfs.registry.load_session: a spec that does not parse, an
   ONNX file that is not the one registered, does not load, fit the spec or score a batch; a
   model that is not binary; or a stream feature the job does not pass) is logged and counted
   (`load_failures`) and tried again at the next check: the champion before it stays in place
   (in a job that starts, the newest earlier champion that can be served, from the registry's
   history), a challenger is dropped. A version that fails on a batch leaves that batch
   unscored by it (`score_failures`). One bad promotion never stops the job (rule alerts
   included) nor loops it through restarts.

Latency is the wall time of steps 1-3 for the batch (a push included when one was due),
recorded on every score.
"""

from __future__ import annotations

import logging
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from schemas.model_spec import ModelSpec
from schemas.rows import SCORE_RESULT
from udfs.registry import InvalidVersion, Registry, Version, load_session, open_session, predict

__all__ = ["FeatureSource", "Model", "Scorer", "open_session"]

log = logging.getLogger(__name__)
MISS_TTL_S = 60.0  # how long a patient without static features in the store is not asked again
OUTPUT_COLUMNS = SCORE_RESULT.columns


@dataclass
class Model:
    version: Version
    spec: ModelSpec
    session: ort.InferenceSession

    @property
    def features(self) -> list[str]:
        """The model's inputs in order, as its spec names them."""
        return self.spec.feature_names

    @classmethod
    def load(cls, v: Version) -> Model:
        """Raises InvalidVersion (udfs.registry.load_session; a sepsis risk is a probability:
        a regression model is refused)."""
        spec, session = load_session(v)
        if spec.task != "binary":
            raise InvalidVersion(f"{v.model} {v.version}: a {spec.task} model scores no risk")
        return cls(v, spec, session)

    def risk(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        return predict(self.spec, self.session, x)


@dataclass
class FeatureSource:
    """Static features by patient: `lookup(tokens) -> frame indexed by token` (Feast), with an
    in-process TTL cache; `push(frame)` writes stream features to the online store.

    An online store that fails does not stop scoring: a failed lookup leaves those patients'
    static features unknown for this batch (NaN to the model, which handles a missing input;
    counted in `features_missing`, asked again next batch); a failed push keeps the latest
    features per patient for the next attempt. `failures` counts both.

    With `background`, a push runs on a worker thread, one at a time, so that a batch never
    waits for the online store (a Feast push of a minute's states for thousands of beds takes
    seconds); `flush()` waits for it and pushes what is left. `close()` flushes, then calls
    `release` (e.g. ends the process that pushes)."""

    lookup: Callable[[list[str]], pd.DataFrame]
    push: Callable[[pd.DataFrame], None]
    static_features: tuple[str, ...] = ()  # what `lookup` returns, in order
    cache_ttl_s: float = 3600.0
    push_interval_s: float = 5.0
    background: bool = False
    release: Callable[[], None] | None = None
    cache: dict[str, tuple[float, np.ndarray[Any, Any]]] = field(default_factory=dict)
    lookups: int = 0
    failures: int = 0
    staged: list[pd.DataFrame] = field(default_factory=list)
    pushed_at: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _worker: ThreadPoolExecutor | None = field(default=None, repr=False)
    _pushing: Future[None] | None = field(default=None, repr=False)

    def stage(self, latest: pd.DataFrame) -> None:
        """Queue stream features; push everything queued once `push_interval_s` has passed."""
        with self._lock:
            self.staged.append(latest)
        if time.monotonic() - self.pushed_at < self.push_interval_s:
            return
        if not self.background:
            self.flush()
        elif self._pushing is None or self._pushing.done():
            if self._worker is None:
                self._worker = ThreadPoolExecutor(1, thread_name_prefix="feature-push")
            self._pushing = self._worker.submit(self._push_staged)
            self.pushed_at = time.monotonic()

    def flush(self) -> None:
        """Push everything queued now (after a background push in flight, if any)."""
        if self._pushing is not None:
            self._pushing.result()
            self._pushing = None
        self._push_staged()
        self.pushed_at = time.monotonic()

    def close(self) -> None:
        """Push what is left and release the push's resources."""
        try:
            self.flush()
        finally:
            if self._worker is not None:
                self._worker.shutdown()
                self._worker = None
            if self.release is not None:
                self.release()

    def _push_staged(self) -> None:
        with self._lock:
            if not self.staged:
                return
            frame = pd.concat(self.staged, ignore_index=True)
            self.staged = []
        frame = frame.sort_values("event_timestamp").groupby("patient_token").tail(1)
        try:
            self.push(frame)
        except Exception as e:
            with self._lock:
                self.failures += 1
                self.staged.insert(0, frame)
            log.warning("feature push failed (%s rows kept for the next one): %s", len(frame), e)

    def ttl_s(self, token: str) -> float:
        """How long this patient's static features stay cached: between half and all of
        `cache_ttl_s`, by a hash of the token (the same in every worker and run)."""
        return self.cache_ttl_s * (0.5 + 0.5 * zlib.crc32(token.encode()) / 2**32)

    def static(self, tokens: pd.Series[str]) -> np.ndarray[Any, Any]:
        now = time.monotonic()
        unknown = np.full(len(self.static_features), np.nan)
        missing = [
            t
            for t in pd.unique(tokens)
            if (c := self.cache.get(t)) is None or now - c[0] > self.ttl_s(t)
        ]
        if missing:
            self.lookups += 1
            try:
                got = self.lookup(missing)
            except Exception as e:
                self.failures += 1
                log.warning("static feature lookup failed for %s patients: %s", len(missing), e)
                fresh = {t: c[1] for t, c in self.cache.items() if t not in missing}
                return np.stack([fresh.get(t, unknown) for t in tokens])
            for t in missing:
                row = got.loc[t].to_numpy(dtype="float64") if t in got.index else unknown
                # a patient the store does not know yet (registration's push may come after the
                # first vitals) is asked again after MISS_TTL_S, not after the hour a known
                # patient's features are kept
                known = not np.isnan(row).all()
                at = now if known else now - self.ttl_s(t) + MISS_TTL_S
                self.cache[t] = (at, row)
        return np.stack([self.cache[t][1] for t in tokens])


def _unscored(index: pd.Index[Any]) -> pd.DataFrame:
    """OUTPUT_COLUMNS for rows with no score: no versions, NaN risks, typed as scored rows."""
    out = pd.DataFrame(np.nan, index=index, columns=list(OUTPUT_COLUMNS), dtype="float64")
    return out.astype({"champion_version": object, "challenger_version": object})


class Scorer:
    def __init__(
        self,
        registry: Registry,
        model_name: str,
        features: FeatureSource,
        roles_check_s: float = 30.0,
        stream_features: tuple[str, ...] | None = None,
    ) -> None:
        """`stream_features`: what the job passes in its batches (None: not checked)."""
        self.registry = registry
        self.model_name = model_name
        self.features = features
        self.roles_check_s = roles_check_s
        self.stream_features = stream_features
        self.load_failures = 0  # versions (or roles) that could not be loaded, each attempt
        self.score_failures = 0  # batches a loaded version failed to score
        self._stamp = -1.0
        self._checked = 0.0
        self.champion: Model | None = None
        self.challenger: Model | None = None
        self.reload()

    def reload(self) -> None:
        stamp = self.registry.roles_stamp(self.model_name)
        if stamp == self._stamp:
            return
        loaded = {m.version.version: m for m in (self.champion, self.challenger) if m}
        try:
            roles = self.registry.roles(self.model_name)
        except Exception as e:  # roles.json unreadable: keep serving what is held
            self.load_failures += 1
            log.error("%s: roles not read (%s); serving what was loaded", self.model_name, e)
            return

        failed = False

        def load(v: str) -> Model:
            if v in loaded:
                return loaded[v]
            m = Model.load(self.registry.get(self.model_name, v))
            self._check_features(m)
            return m

        def model(role: str, instead: Model | None) -> Model | None:
            nonlocal failed
            v = roles.get(role)
            if v is None:
                return None
            try:
                return load(v)
            except Exception as e:
                failed = True
                self.load_failures += 1
                if instead is None and role == "champion":  # a (re)start: the one before it
                    instead = self.registry.earlier_champion(self.model_name, v, load)
                kept = f"version {instead.version.version} kept" if instead else "none served"
                log.error("%s %s %s cannot be served (%s): %s", self.model_name, role, v, kept, e)
                return instead

        self.champion, self.challenger = model("champion", self.champion), model("challenger", None)
        champion, challenger = self.champion, self.challenger
        if champion and challenger and challenger.version.version == champion.version.version:
            self.challenger = None  # the champion held (its successor failed), not its own shadow
        # a version that failed is tried again at the next check (a file still syncing to a
        # shared mount), not only when the roles change again
        self._stamp = -1.0 if failed else stamp
        if self.champion is None:
            log.warning(
                "%s has no champion in %s: states are scored by no model (no risk, no model "
                "alerts) until one is promoted",
                self.model_name,
                self.registry.root,
            )
        else:
            log.info(
                "%s: champion %s, challenger %s",
                self.model_name,
                self.champion.version.version,
                self.challenger.version.version if self.challenger else "none",
            )

    def _check_features(self, m: Model) -> None:
        """Raises InvalidVersion where the model reads a feature neither the job's batches nor
        the feature source carry."""
        if self.stream_features is None:
            return
        known = {*self.stream_features, *self.features.static_features}
        absent = [f for f in m.features if f not in known]
        if absent:
            raise InvalidVersion(
                f"{m.version.model} {m.version.version} reads {absent}, which the job does not "
                "compute"
            )

    def score(self, batch: pd.DataFrame) -> pd.DataFrame:
        """batch: patient_token, event_time and the models' stream features (NaN = unknown) →
        OUTPUT_COLUMNS. Each model reads its inputs by the names in its spec: the static ones
        from the feature source, the rest from the batch. With a boolean `scorable` column,
        only those rows are scored and their features pushed; the others get no score (the
        planner may hand the UDF rows that the job filters out after it)."""
        if "scorable" in batch:
            keep = batch["scorable"].fillna(False).astype(bool)
            rows = batch[keep].drop(columns="scorable")
            if keep.all():
                return self.score(rows)
            out = self.score(rows).reindex(batch.index) if len(rows) else _unscored(batch.index)
            out["features_missing"] = out["features_missing"].fillna(0).astype("int32")
            for role in ("champion", "challenger"):
                v = out[f"{role}_version"].astype(object)
                out[f"{role}_version"] = v.where(v.notna(), None)
            return out
        t0 = time.perf_counter()
        if t0 - self._checked > self.roles_check_s:
            self.reload()
            self._checked = t0
        n = len(batch)
        models = [m for m in (self.champion, self.challenger) if m]
        static = pd.DataFrame(
            self.features.static(batch["patient_token"]),
            columns=list(self.features.static_features),
            index=batch.index,
        )
        stream = list(dict.fromkeys(f for m in models for f in m.features if f not in static))
        inputs = pd.concat([batch[stream].astype("float64"), static], axis=1)
        out = pd.DataFrame(index=batch.index)
        first = models[0].features if models else []
        out["features_missing"] = inputs[first].isna().sum(axis=1).astype("int32")
        for role, m in (("champion", self.champion), ("challenger", self.challenger)):
            risk = np.full(n, np.nan)
            if m is not None:
                try:
                    risk = m.risk(inputs[m.features].to_numpy(dtype="float32"))
                except Exception as e:  # this batch unscored by it, never the job stopped
                    self.score_failures += 1
                    log.error("%s %s %s failed to score a batch: %s", self.model_name, role,
                              m.version.version, e)  # fmt: skip
                    m = None
            out[f"{role}_version"] = m.version.version if m else None
            out[f"{role}_risk"] = risk
            out[f"{role}_threshold"] = m.version.threshold if m else np.nan
        if stream:
            latest = batch.sort_values("event_time").groupby("patient_token", sort=False).tail(1)
            self.features.stage(
                latest.rename(columns={"event_time": "event_timestamp"})[
                    ["patient_token", "event_timestamp", *stream]
                ]
            )
        out["latency_ms"] = (time.perf_counter() - t0) * 1000.0
        return out[list(OUTPUT_COLUMNS)]
