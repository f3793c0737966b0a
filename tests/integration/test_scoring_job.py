"""The screening job with inline scoring on real parts: real patients → Kafka → PyFlink (stream
features in SQL keyed state, the vectorised ONNX UDF, Feast on Redis) → Kafka and ClickHouse.
The stream's risk must equal the risk of the same patient-hours computed offline by the
training code, which checks that training and serving share their feature definitions."""

from __future__ import annotations

import dataclasses
import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from feature_store import repo
from feature_store.definitions import STREAM_FEATURES
from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from sinks import clickhouse as ch
from sinks.loader import TABLES, Loader
from tests.conftest import REDIS, scoring_on
from tests.reference_scoring import champion_risk
from udfs.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
PATIENTS = 60


@dataclass
class Run:
    settings: Settings
    prefix: str
    registry: Registry
    offline: pd.DataFrame  # training features + offline risk, indexed by observation id

    def topic(self, name: str) -> list[dict[str, Any]]:
        return kafka_io.read_records(self.settings, self.prefix + name, name)


@pytest.fixture(scope="module")
def run(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> Run:
    tmp = tmp_path_factory.mktemp("scoring")
    settings = scoring_on(kafka, tmp, f"wardflow-scoring-{uuid.uuid4().hex[:6]}")
    registry = Registry(settings.model_registry)
    prefix = f"sc-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(
        settings, sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics, prefix=prefix
    )
    plan = replay.ReplayPlan(patients=PATIENTS, seed=11)
    df, source = replay.load_physionet(None, settings)
    chosen = replay.select_patients(df, plan)
    store = repo.open_store(settings.feast_dir, REDIS)
    repo.push_static(store, replay.static_features(chosen, plan, settings.phi_key, source))
    items = replay.clinical_stream(chosen, plan, settings.phi_key, source)
    # an ICU's GCS, below 15, on every reading: the screen's qSOFA reads it, the model's features
    # do not (PhysioNet 2019, its training data, charts none: definitions.UNSEEN_IN_TRAINING)
    vitals = [rec for topic, rec in items if topic == topics.VITALS_OBSERVATION.name]
    for n, rec in enumerate(vitals):
        rec["gcs_total"] = 3 + n % 12
    replay.produce_stream(settings, items, prefix=prefix, progress=False)
    sepsis_screen.JOB.run(settings, prefix=prefix, bounded=True)

    return Run(settings, prefix, registry, champion_risk(chosen, settings, source))


def _scores(run: Run) -> pd.DataFrame:
    return pd.DataFrame(run.topic(topics.SEPSIS_SCORE.name))


def test_every_vitals_state_is_scored_by_the_champion_and_the_shadow_challenger(run: Run) -> None:
    states = pd.DataFrame(run.topic(topics.SEPSIS_SCREEN.name))
    vitals = set(states.loc[states.record_kind == "vitals", "record_id"])
    scores = _scores(run)
    assert set(scores.record_id) == vitals
    roles = scores.groupby("record_id")["role"].agg(frozenset)
    assert set(roles) == {frozenset({"champion", "challenger"})}
    assert dict(scores.groupby("role")["model_version"].unique().map(list)) == {
        "champion": ["1"],
        "challenger": ["2"],
    }
    assert (scores.scoring_latency_ms > 0).all()
    assert scores.score_id.is_unique


def test_the_streams_risk_equals_the_training_codes_risk_for_the_same_patient_hours(
    run: Run,
) -> None:
    """Also where a GCS below 15 was charted, which the screen's qSOFA counts and the training
    data never had."""
    states = pd.DataFrame(run.topic(topics.SEPSIS_SCREEN.name))
    assert (states["gcs_total"].fillna(15) < 15).sum() > 100
    champion = _scores(run).query("role == 'champion'").set_index("record_id")
    offline = run.offline.loc[champion.index]  # hours the job dead-lettered have no state
    assert len(champion) > 0.95 * len(run.offline)
    diff = np.abs(champion["risk"].to_numpy() - offline["risk"].to_numpy())
    assert np.median(diff) < 1e-6
    assert (diff < 1e-4).mean() > 0.99, f"max diff {diff.max():.5f}"


def test_the_champions_alerts_join_the_alert_lifecycle(run: Run) -> None:
    events = pd.DataFrame(run.topic(topics.ALERT_V2.name))
    model = events[events.rule_id == "model_sepsis_risk"]
    raised = model[model.action == "raise"]
    assert len(raised) > 0 and set(model.rule_version) == {"1"}
    champion = _scores(run).query("role == 'champion'").set_index("record_id")
    for e in raised.itertuples():
        risk = champion.loc[e.last_record_id, "risk"]
        assert risk >= champion.loc[e.last_record_id, "threshold"]
        assert e.score_value == round(risk * 100)
        evidence = json.loads(e.evidence_json)["sepsis_risk"]
        assert evidence["version"] == "1" and abs(evidence["value"] - risk) < 1e-9
    assert set(events.rule_id) - {"model_sepsis_risk"}  # the rules still alert beside the model


def test_the_job_pushed_each_patients_latest_stream_features_to_redis(run: Run) -> None:
    store = repo.open_store(run.settings.feast_dir, REDIS)
    last = run.offline.groupby("patient_id").tail(1).sample(10, random_state=1)
    got = store.get_online_features(
        features=[f"{repo.STREAM_VIEW}:{f}" for f in STREAM_FEATURES],
        entity_rows=[{"patient_token": i.rsplit(":", 1)[0]} for i in last.index],
    ).to_df()
    np.testing.assert_allclose(
        got[list(STREAM_FEATURES)].to_numpy(dtype=np.float32),
        last[list(STREAM_FEATURES)].to_numpy(dtype=np.float32),
        rtol=1e-5,
    )


def test_scores_load_into_clickhouse_for_the_ml_ops_dashboard(run: Run, clickhouse: Any) -> None:
    db = run.settings.clickhouse_database + "_sc"
    ch.migrate(clickhouse, db)
    settings = dataclasses.replace(run.settings, clickhouse_database=db)
    loader = Loader(
        settings,
        clickhouse,
        prefix=run.prefix,
        topics={topics.SEPSIS_SCORE.name: TABLES[topics.SEPSIS_SCORE.name]},
    )
    loader.drain()
    loader.close()
    n = len(_scores(run))
    assert clickhouse.query(f"SELECT count() FROM {db}.model_scores FINAL").result_rows == [(n,)]
    assert clickhouse.query(f"SELECT sum(scored) FROM {db}.score_minute").result_rows == [(n,)]
    clickhouse.command(f"DROP DATABASE {db}")
