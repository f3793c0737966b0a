"""The scoring UDF's feature source over the Feast repo (`repo.py`): static features looked up
from the online store, stream features pushed back to it from a process of their own
(`push_worker.py`, so that Feast's push work never holds the scoring worker's GIL)."""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from feature_store.definitions import STATIC_FEATURES
from feature_store.feast_import import import_repo_without_torch
from feature_store.push_worker import PushProcess
from udfs.model_set import Lookup, entity_lookup
from udfs.scoring import FeatureSource

log = logging.getLogger(__name__)


def feast_source(
    feast_dir: Path, online: str, cache_ttl_s: float, push_interval_s: float = 5.0
) -> FeatureSource:
    """Opens the store (importing feast takes seconds: call it in a UDF's `open()`). The push
    process imports feast beside this process and is ready before the first push: a bounded
    job's scoring may end, and its last push start, before a push process started at the
    first push would have opened the store, and Flink ends a Python worker seconds into its
    `close()`."""
    pusher = PushProcess(feast_dir, online)
    pusher.start()
    import_repo_without_torch()
    from feature_store import repo

    store = repo.open_store(feast_dir, online)
    try:
        pusher.wait_ready()
    except (ConnectionError, TimeoutError) as e:  # scoring goes on; a push starts it again
        log.warning("the feature push process did not start: %s", e)
    return FeatureSource(
        lookup=lambda tokens: repo.online_static(store, tokens),
        push=pusher,
        static_features=STATIC_FEATURES,
        cache_ttl_s=cache_ttl_s,
        push_interval_s=push_interval_s,
        background=True,  # a batch of the scoring UDF never waits for a push
        release=pusher.close,
    )


def catalog_lookups(
    feast_dir: Path,
    online: str,
    stay_services: tuple[str, ...],
    encounter_services: tuple[str, ...],
) -> dict[str, Lookup]:
    """The catalog models' feature services (named in their specs) as lookups in Feast's online
    store, opened once (in a UDF's `open()`): a stay's descriptors, an encounter's facts; and
    the same per entity (`entity_lookup`), for a service that a version promoted later names
    (each service of an entity reads that entity's one feature view)."""
    import_repo_without_torch()
    from feature_store import repo

    store = repo.open_store(
        feast_dir, online, stay_services=stay_services, encounter_services=encounter_services
    )

    def stay(tokens: list[str]) -> pd.DataFrame:
        return repo.online_stay_static(store, tokens)

    def encounter(tokens: list[str]) -> pd.DataFrame:
        return repo.online_encounter_facts(store, tokens)

    return {
        **{s: stay for s in stay_services},
        **{s: encounter for s in encounter_services},
        entity_lookup("stay"): stay,
        entity_lookup("encounter"): encounter,
    }
