"""The scoring UDF's feature source over the Feast repo (`repo.py`): static features looked up
from the online store, stream features pushed back to it (`udfs.scoring.FeatureSource`)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from feature_store.definitions import STATIC_FEATURES
from udfs.model_set import Lookup
from udfs.scoring import FeatureSource


def feast_source(
    feast_dir: Path, online: str, cache_ttl_s: float, push_interval_s: float = 5.0
) -> FeatureSource:
    """Opens the store (importing feast takes seconds: call it in a UDF's `open()`)."""
    from feature_store import repo

    store = repo.open_store(feast_dir, online)
    return FeatureSource(
        lookup=lambda tokens: repo.online_static(store, tokens),
        push=lambda frame: repo.push_stream(store, frame),
        static_features=STATIC_FEATURES,
        cache_ttl_s=cache_ttl_s,
        push_interval_s=push_interval_s,
        background=True,  # a batch of the scoring UDF never waits for a push
    )


def stay_static_lookups(
    feast_dir: Path, online: str, services: tuple[str, ...]
) -> dict[str, Lookup]:
    """The catalog's stay models' feature services (`services`, from their specs), each a
    lookup of the stays' descriptors in Feast's online store (opened once, in `open()`)."""
    from feature_store import repo

    store = repo.open_store(feast_dir, online, stay_services=services)

    def lookup(tokens: list[str]) -> pd.DataFrame:
        return repo.online_stay_static(store, tokens)

    return {s: lookup for s in services}
