"""The Feast repo: entity, sources, feature views and the feature services named for model
versions, built in code from feature_store/definitions.py.

- `patient_stream`: the rolling per-patient features the screening job computes from its keyed
  state and pushes after scoring (push source `patient_stream_push`); its batch source is the
  hourly feature parquet that training writes, so the offline store rebuilds training rows
  point-in-time.
- `patient_static`: age and sex, pushed by registration (the replay, for PhysioNet patients).
- `sepsis_risk_v<N>`: one feature service per registered model version.
- `icu_stay_static`: an ICU stay's descriptors (age, sex, height, admission weight, ICU type;
  feature_store/icu_stay.py), pushed at admission by the stay replay, keyed by the stay's token;
  the catalog's stay models (mortality, length of stay) read them through their feature
  services (`stay_services`).
- `encounter_facts`: what is known of an inpatient encounter at its discharge
  (feature_store/encounter_facts.py), keyed by the encounter's token and pushed by the
  discharge-summary feed before the discharge event; the readmission model reads it through its
  feature service (`encounter_services`).

The online store is SQLite (a file) by default, or Redis (`feast_online_store = host:port`).
Importing feast takes seconds, so this module is imported where the store is opened, not at
job start.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from feast import (
    Entity,
    FeatureService,
    FeatureStore,
    FeatureView,
    Field,
    FileSource,
    PushSource,
    ValueType,
)
from feast.data_format import ParquetFormat
from feast.data_source import PushMode
from feast.infra.offline_stores.dask import DaskOfflineStoreConfig
from feast.infra.online_stores.redis import RedisOnlineStoreConfig
from feast.infra.online_stores.sqlite import SqliteOnlineStoreConfig
from feast.repo_config import RegistryConfig, RepoConfig
from feast.types import Float32

from feature_store import encounter_facts, icu_stay, registry_store
from feature_store.definitions import STATIC_FEATURES, STREAM_FEATURES

PROJECT = "wardflow"
ENTITY_KEY = "patient_token"
TIMESTAMP = "event_timestamp"
STREAM_VIEW = "patient_stream"
STATIC_VIEW = "patient_static"
STREAM_PUSH = "patient_stream_push"
STATIC_PUSH = "patient_static_push"
STAY_STATIC_VIEW = "icu_stay_static"
STAY_STATIC_PUSH = "icu_stay_static_push"
ENCOUNTER_KEY = "encounter_token"
ENCOUNTER_VIEW = "encounter_facts"
ENCOUNTER_PUSH = "encounter_facts_push"


def offline_paths(root: Path) -> tuple[Path, Path]:
    return root / "offline" / "patient_stream.parquet", root / "offline" / "patient_static.parquet"


def encounter_facts_path(root: Path) -> Path:
    return root / "offline" / "encounter_facts.parquet"


def stay_static_path(root: Path) -> Path:
    return root / "offline" / "icu_stay_static.parquet"


def _empty_offline(path: Path, features: Iterable[str], key: str = ENTITY_KEY) -> None:
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = {
        key: pd.Series(dtype="string"),
        TIMESTAMP: pd.Series(dtype="datetime64[ns, UTC]"),
    }
    cols.update({f: pd.Series(dtype="float32") for f in features})
    pd.DataFrame(cols).to_parquet(path)


def objects(
    root: Path,
    service_names: Iterable[str] = (),
    stay_services: Iterable[str] = (),
    encounter_services: Iterable[str] = (),
) -> list[Any]:
    stream_path, static_path = offline_paths(root)
    patient = Entity(
        name="patient",
        join_keys=[ENTITY_KEY],
        value_type=ValueType.STRING,
        description="a tokenised patient",
    )

    def view(name: str, push: str, path: Path, features: Iterable[str], ttl: timedelta) -> Any:
        batch = FileSource(
            name=f"{name}_offline",
            path=str(path),
            timestamp_field=TIMESTAMP,
            file_format=ParquetFormat(),
        )
        return FeatureView(
            name=name,
            entities=[patient],
            ttl=ttl,
            schema=[Field(name=f, dtype=Float32) for f in features],
            source=PushSource(name=push, batch_source=batch),
            online=True,
        )

    stream = view(STREAM_VIEW, STREAM_PUSH, stream_path, STREAM_FEATURES, timedelta(hours=24))
    static = view(STATIC_VIEW, STATIC_PUSH, static_path, STATIC_FEATURES, timedelta(days=3650))
    stay = view(
        STAY_STATIC_VIEW,
        STAY_STATIC_PUSH,
        stay_static_path(root),
        icu_stay.STATIC_FEATURES,
        timedelta(days=3650),
    )
    encounter = Entity(
        name="encounter",
        join_keys=[ENCOUNTER_KEY],
        value_type=ValueType.STRING,
        description="a tokenised inpatient encounter",
    )
    facts_path = encounter_facts_path(root)
    facts = FeatureView(
        name=ENCOUNTER_VIEW,
        entities=[encounter],
        ttl=timedelta(days=90),
        schema=[Field(name=f, dtype=Float32) for f in encounter_facts.FEATURES],
        source=PushSource(
            name=ENCOUNTER_PUSH,
            batch_source=FileSource(
                name=f"{ENCOUNTER_VIEW}_offline",
                path=str(facts_path),
                timestamp_field=TIMESTAMP,
                file_format=ParquetFormat(),
            ),
        ),
        online=True,
    )
    services = [FeatureService(name=n, features=[stream, static]) for n in service_names]
    services += [FeatureService(name=n, features=[stay]) for n in stay_services]
    services += [FeatureService(name=n, features=[facts]) for n in encounter_services]
    return [patient, stream, static, stay, encounter, facts, *services]


def config(root: Path, online: str) -> RepoConfig:
    store: Any
    if online == "sqlite":
        store = SqliteOnlineStoreConfig(path=str(root / "online.db"))
    else:
        store = RedisOnlineStoreConfig(connection_string=online)
    return RepoConfig(
        project=PROJECT,
        # replaced whole on every write: a scoring worker may read it while another applies
        registry=RegistryConfig(
            path=str(root / "registry.db"), registry_store_type=registry_store.CLASS_PATH
        ),
        provider="local",
        online_store=store,
        offline_store=DaskOfflineStoreConfig(),
        entity_key_serialization_version=3,
    )


def open_store(
    root: Path,
    online: str,
    service_names: Iterable[str] = (),
    stay_services: Iterable[str] = (),
    encounter_services: Iterable[str] = (),
) -> FeatureStore:
    """The store, with the repo's objects applied (idempotent). Processes that open it at once
    (a job's scoring subtasks) apply one at a time: an apply reads the registry, adds to it and
    writes it back, so two at once would lose what the first added (a model version's feature
    service)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "registry.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        stream_path, static_path = offline_paths(root)
        _empty_offline(stream_path, STREAM_FEATURES)
        _empty_offline(static_path, STATIC_FEATURES)
        _empty_offline(stay_static_path(root), icu_stay.STATIC_FEATURES)
        _empty_offline(encounter_facts_path(root), encounter_facts.FEATURES, ENCOUNTER_KEY)
        store = FeatureStore(config=config(root, online))
        store.apply(objects(root, service_names, stay_services, encounter_services))
    return store


def service_name(model_version: str) -> str:
    return f"sepsis_risk_v{model_version}"


def _frame(rows: pd.DataFrame, features: Iterable[str]) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            ENTITY_KEY: rows[ENTITY_KEY].astype(str),
            TIMESTAMP: pd.to_datetime(rows[TIMESTAMP], utc=True),
        }
    )
    for f in features:
        out[f] = rows[f].astype("float32")
    return out


def push_stream(store: FeatureStore, rows: pd.DataFrame) -> None:
    store.push(STREAM_PUSH, _frame(rows, STREAM_FEATURES), to=PushMode.ONLINE)


def push_static(store: FeatureStore, rows: pd.DataFrame) -> None:
    store.push(STATIC_PUSH, _frame(rows, STATIC_FEATURES), to=PushMode.ONLINE)


def write_offline(root: Path, stream: pd.DataFrame, static: pd.DataFrame) -> None:
    """Replace the offline sources (training's hourly features, patients' static features)."""
    stream_path, static_path = offline_paths(root)
    stream_path.parent.mkdir(parents=True, exist_ok=True)
    _frame(stream, STREAM_FEATURES).to_parquet(stream_path)
    _frame(static, STATIC_FEATURES).to_parquet(static_path)


def push_stay_static(store: FeatureStore, rows: pd.DataFrame) -> None:
    """rows: patient_token (the stay's token), event_timestamp, icu_stay.STATIC_FEATURES."""
    store.push(STAY_STATIC_PUSH, _frame(rows, icu_stay.STATIC_FEATURES), to=PushMode.ONLINE)


def online_stay_static(store: FeatureStore, tokens: list[str]) -> pd.DataFrame:
    """A stay's descriptors (NaN where unknown), indexed by its token."""
    refs = [f"{STAY_STATIC_VIEW}:{f}" for f in icu_stay.STATIC_FEATURES]
    got = store.get_online_features(features=refs, entity_rows=[{ENTITY_KEY: t} for t in tokens])
    frame: pd.DataFrame = got.to_df().set_index(ENTITY_KEY)[list(icu_stay.STATIC_FEATURES)]
    return frame.astype("float64")


def push_encounter_facts(store: FeatureStore, rows: pd.DataFrame) -> None:
    """rows: encounter_token, event_timestamp (the discharge), encounter_facts.FEATURES."""
    frame = pd.DataFrame(
        {
            ENCOUNTER_KEY: rows[ENCOUNTER_KEY].astype(str),
            TIMESTAMP: pd.to_datetime(rows[TIMESTAMP], utc=True),
        }
    )
    for f in encounter_facts.FEATURES:
        frame[f] = rows[f].astype("float32")
    store.push(ENCOUNTER_PUSH, frame, to=PushMode.ONLINE)


def online_encounter_facts(store: FeatureStore, tokens: list[str]) -> pd.DataFrame:
    """An encounter's facts at discharge (NaN where unknown), indexed by its token."""
    refs = [f"{ENCOUNTER_VIEW}:{f}" for f in encounter_facts.FEATURES]
    rows = [{ENCOUNTER_KEY: t} for t in tokens]
    got = store.get_online_features(features=refs, entity_rows=rows)
    frame: pd.DataFrame = got.to_df().set_index(ENCOUNTER_KEY)[list(encounter_facts.FEATURES)]
    return frame.astype("float64")


def online_static(store: FeatureStore, tokens: list[str]) -> pd.DataFrame:
    """Static features for these patients (NaN where unknown), indexed by token."""
    refs = [f"{STATIC_VIEW}:{f}" for f in STATIC_FEATURES]
    got = store.get_online_features(features=refs, entity_rows=[{ENTITY_KEY: t} for t in tokens])
    frame: pd.DataFrame = got.to_df().set_index(ENTITY_KEY)[list(STATIC_FEATURES)]
    return frame.astype("float64")
