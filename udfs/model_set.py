"""One generic scoring path for every model in the catalog: `ModelSet` serves the champion and
the shadow challenger of any number of models, each described by its spec
(`schemas.model_spec.ModelSpec`, checked when the version is loaded), so adding a model is a
spec and a training module, not new scoring code.

A batch holds rows of several models: the `model` column names which model a row is for, the
`entity_key` column the entity it is about (patient, stay, encounter, unit), and the other
columns are features by name (the union of what the batch's models read). Per batch and per
model present in it (vectorised, one onnxruntime call per version):

1. features the spec names that the batch lacks come from the model's feature service
   (`lookups[spec.feature_service](entity_keys) -> frame indexed by key`, e.g. Feast online
   features), or, for a service the lookups were not opened with (a version promoted after the
   job started names a new one), from its entity's (`lookups[entity_lookup(spec.entity)]`);
   a failed lookup leaves them NaN (imputed by the model, counted in `features_missing`) and
   never stops scoring;
2. champion and challenger score the rows; a binary champion's score at or above its threshold
   is an `alert`;
3. every `roles_check_s`, each model's roles.json is checked and changed roles are loaded (no
   restart): models are promoted, shadowed and rolled back independently of one another.
   A version that cannot be served (udfs.registry.load_session: its spec does not parse, its
   ONNX file is not the one registered, does not load, fit the spec or score a batch) is
   logged and counted (`load_failures`) and tried again at the next check: a champion's
   predecessor stays in place (in a job that starts, the newest earlier champion that can be
   served, from the registry's history), a challenger is dropped, and the other models are
   untouched; a version
   that fails while scoring leaves its model's rows of that batch unscored (`score_failures`),
   never the batch.

A row for a model with no champion gets no score (and a warning, once per roles change), nor
does a row of which nothing is known (every feature unknown: e.g. a discharge whose encounter
facts never reached the feature store): no score is better than the model's prior.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd

from schemas.model_spec import ModelSpec
from schemas.rows import MODEL_SCORE_RESULT
from udfs.registry import Registry, Version, load_session, predict

log = logging.getLogger(__name__)
OUTPUT_COLUMNS = MODEL_SCORE_RESULT.columns
Lookup = Callable[[list[str]], pd.DataFrame]


def entity_lookup(entity: str) -> str:
    """The lookups' key of an entity's features (`stay`, `encounter`), which serves a feature
    service of that entity that has no lookup of its own."""
    return f"entity:{entity}"


@dataclass(frozen=True)
class Served:
    """A loaded registry version: its checked spec and its onnxruntime session."""

    version: Version
    spec: ModelSpec
    session: ort.InferenceSession

    @classmethod
    def load(cls, v: Version) -> Served:
        """Raises InvalidVersion (udfs.registry.load_session)."""
        return cls(v, *load_session(v))

    def predict(self, x: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
        """The score per row (udfs.registry.predict)."""
        return predict(self.spec, self.session, x)


@dataclass
class Roles:
    champion: Served | None = None
    challenger: Served | None = None
    stamp: float = -1.0


class ModelSet:
    def __init__(
        self,
        registry: Registry,
        models: Iterable[str],
        lookups: dict[str, Lookup] | None = None,
        roles_check_s: float = 30.0,
    ) -> None:
        self.registry = registry
        self.models = tuple(models)
        self.lookups = lookups or {}
        self.roles_check_s = roles_check_s
        self.roles: dict[str, Roles] = {m: Roles() for m in self.models}
        self.lookup_failures = 0
        self.load_failures = 0  # versions (or roles) that could not be loaded
        self.score_failures = 0  # batches of a model that a version failed to score
        self._checked = 0.0
        self.reload()

    def reload(self) -> None:
        """Load what changed in each model's roles (a version already loaded is reused)."""
        for name, held in self.roles.items():
            stamp = self.registry.roles_stamp(name)
            if stamp == held.stamp:
                continue
            loaded = {s.version.version: s for s in (held.champion, held.challenger) if s}
            try:
                wanted = self.registry.roles(name)
            except Exception as e:  # roles.json unreadable: keep serving what is held
                self.load_failures += 1
                log.error("%s: roles not read (%s); serving what was loaded", name, e)
                continue
            failures = self.load_failures
            # a champion that cannot be served leaves the one before in place
            champion = self._served(name, "champion", wanted.get("champion"), loaded, held.champion)
            challenger = self._served(name, "challenger", wanted.get("challenger"), loaded, None)
            if champion and challenger and champion.version.version == challenger.version.version:
                # the champion held because the promoted one failed is the shadow named too (a
                # rollback's): served once, not as its own shadow (two rows of one score id,
                # a shadow that "agrees" perfectly)
                challenger = None
            self.roles[name] = Roles(
                champion,
                challenger,
                # a version that failed is tried again at the next check (a file still syncing
                # to a shared mount), not only when the roles change again
                stamp if self.load_failures == failures else -1.0,
            )
            if champion is None:
                log.warning("%s has no champion: its rows get no score until one is promoted", name)
            else:
                log.info(
                    "%s: champion %s, challenger %s",
                    name,
                    champion.version.version,
                    challenger.version.version if challenger else "none",
                )

    def _served(
        self,
        name: str,
        role: str,
        v: str | None,
        loaded: dict[str, Served],
        instead: Served | None,
    ) -> Served | None:
        """Version `v` of `name` loaded (or reused), or `instead` where it cannot be served (a
        spec that does not parse, an ONNX file that does not load or fit it): one bad version
        never stops the other models, or this model's other role."""
        if v is None:
            return None
        if v in loaded:
            return loaded[v]
        try:
            return Served.load(self.registry.get(name, v))
        except Exception as e:
            self.load_failures += 1
            if instead is None and role == "champion":  # a (re)start: the one before it
                instead = self.registry.earlier_champion(
                    name, v, lambda e: Served.load(self.registry.get(name, e))
                )
            kept = f"version {instead.version.version} kept" if instead else "none served"
            log.error("%s %s %s cannot be served (%s): %s", name, role, v, kept, e)
            return instead

    def _inputs(self, m: Served, rows: pd.DataFrame, memo: dict[str, pd.DataFrame]) -> pd.DataFrame:
        """The model's features in its order: from the batch, else from its feature service
        (looked up once per batch and service; `memo` holds what was looked up)."""
        names = m.spec.feature_names
        absent = [f for f in names if f not in rows]
        if not absent:
            return rows[names].astype("float64")
        service = m.spec.feature_service or ""
        if service not in memo:
            memo[service] = self._lookup(m.spec, rows["entity_key"].astype(str))
        got = memo[service]
        looked = got.reindex(index=rows["entity_key"].astype(str), columns=absent)
        looked = looked.set_axis(rows.index, axis=0).astype("float64")
        present = rows[[f for f in names if f in rows]].astype("float64")
        return pd.concat([present, looked], axis=1)[names]

    def _lookup(self, spec: ModelSpec, keys: pd.Series[str]) -> pd.DataFrame:
        service = spec.feature_service or ""
        lookup = self.lookups.get(service) or self.lookups.get(entity_lookup(spec.entity))
        if lookup is None:
            return pd.DataFrame()
        try:
            return lookup(list(pd.unique(keys)))
        except Exception as e:
            self.lookup_failures += 1
            log.warning("%s lookup failed for %s keys: %s", service, keys.nunique(), e)
            return pd.DataFrame()

    def score(self, batch: pd.DataFrame) -> pd.DataFrame:
        """batch: `model`, `entity_key` and features by name → OUTPUT_COLUMNS, row for row."""
        t0 = time.perf_counter()
        if t0 - self._checked > self.roles_check_s:
            self.reload()
            self._checked = t0
        out = pd.DataFrame(index=batch.index, columns=list(OUTPUT_COLUMNS), dtype=object)
        for name, rows in batch.groupby("model", sort=False):
            held = self.roles.get(str(name))
            if held is None or held.champion is None:
                continue
            champ = held.champion
            memo: dict[str, pd.DataFrame] = {}
            x = self._inputs(champ, rows, memo)
            known = x.notna().any(axis=1).to_numpy()
            if not known.all():
                out.loc[rows.index[~known], "features_missing"] = x.shape[1]
                rows, x = rows[known], x[known]
                if rows.empty:
                    continue
            try:
                score = champ.predict(x.to_numpy(dtype="float32"))
            except Exception as e:  # this model's rows go unscored; the others are scored
                self.score_failures += 1
                log.error("%s %s failed to score %d rows: %s", name, champ.version.version,
                          len(rows), e)  # fmt: skip
                continue
            out.loc[rows.index, "champion_version"] = champ.version.version
            out.loc[rows.index, "champion_score"] = score
            out.loc[rows.index, "features_missing"] = x.isna().sum(axis=1).to_numpy()
            if champ.spec.threshold is not None:
                out.loc[rows.index, "champion_threshold"] = champ.spec.threshold
                out.loc[rows.index, "alert"] = score >= champ.spec.threshold
            if held.challenger is not None:
                shadow = held.challenger
                try:
                    cx = self._inputs(shadow, rows, memo).to_numpy(dtype="float32")
                    shadow_score = shadow.predict(cx)
                except Exception as e:  # the shadow fails alone: the champion's score stands
                    self.score_failures += 1
                    log.error("%s shadow %s failed to score: %s", name, shadow.version.version, e)
                    continue
                out.loc[rows.index, "challenger_version"] = shadow.version.version
                out.loc[rows.index, "challenger_score"] = shadow_score
        out["latency_ms"] = (time.perf_counter() - t0) * 1000.0
        return typed(out)


def typed(out: pd.DataFrame) -> pd.DataFrame:
    """OUTPUT_COLUMNS typed as PyFlink's Arrow conversion takes them: floats (NaN = null),
    int32 counts, and objects with None for strings and the nullable alert flag (pandas'
    extension arrays are refused)."""
    for c in ("champion_score", "champion_threshold", "challenger_score", "latency_ms"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("float64")
    out["features_missing"] = pd.to_numeric(out["features_missing"]).fillna(0).astype("int32")
    out["alert"] = out["alert"].astype(object).where(out["alert"].notna(), None)
    for c in ("champion_version", "challenger_version"):
        out[c] = out[c].astype(object).where(out[c].notna(), None)
    return out[list(OUTPUT_COLUMNS)]
