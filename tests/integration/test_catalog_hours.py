"""Each stay of a replay that the catalog job reads as fast as it can is scored once at each
reported hour of the stay, by each stay model.

A hundred PhysioNet 2012 set-A stays are replayed onto Kafka beforehand and the job reads them
bounded, one partition per topic: its periodic watermarks release a stay's records in bursts,
the record after an hour often in the same burst as the last one before it. The hours were
once looked up by an event-time temporal join on each stay's deduplicated latest running row;
the deduplication retracts the old row with its own time, which replaced that row in the
join's state, and an hour whose next record came in the same burst was never scored (99 of the
100 hour-24 scores of this replay, once the job scored fast enough for such bursts; the
catalog benchmark found it). Kafka in and out; the stay descriptors in Feast on SQLite."""

from __future__ import annotations

import dataclasses
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest

from jobs import model_scoring
from jobs.feeds import physionet2012
from jobs.runtime import kafka_io
from schemas import topics
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from training.registry import bootstrap
from udfs.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODELS = ("icu-mortality", "length-of-stay")
STAYS = 100


def test_every_stay_of_a_fast_replay_is_scored_once_at_each_reported_hour(
    kafka: Settings, tmp_path: Path
) -> None:
    if not (kafka.physionet2012_dir / "setA_observations.parquet").exists():
        pytest.skip(f"PhysioNet 2012 set A is not in {kafka.physionet2012_dir}")
    s = dataclasses.replace(
        kafka,
        model_registry=tmp_path / "registry",
        feast_dir=tmp_path / "feast",
        feast_online_store="sqlite",
        catalog_models=",".join(MODELS),
        job_name=f"catalog-hours-{uuid.uuid4().hex[:6]}",
    )
    reg = Registry(s.model_registry)
    assert all(bootstrap(reg, m) for m in MODELS)
    hours = {m: ModelSpec.parse(reg.role(m, "champion").spec).stay_hours for m in MODELS}  # type: ignore[union-attr]
    prefix = f"t-hours-{uuid.uuid4().hex[:8]}."
    names = [*model_scoring.JOB.input_topics, *model_scoring.JOB.output_topics]
    kafka_io.ensure_topics(s, [*names, topics.LABEL_OUTCOME.name], prefix=prefix, partitions=1)
    m = physionet2012.replay(s, physionet2012.ReplayPlan(stays=STAYS), prefix=prefix)
    model_scoring.JOB.run(s, prefix=prefix, bounded=True)
    scores = kafka_io.read_records(s, prefix + topics.MODEL_SCORE.name, topics.MODEL_SCORE.name)
    kafka_io.delete_topics(s, [*names, topics.LABEL_OUTCOME.name], prefix=prefix)

    # a stay's first record, and its vitals and lab records scored as states (accepted ones)
    first: dict[str, object] = {}
    for r in [*m.adt, *m.vitals, *m.labs]:
        t = r["patient_token"]
        first[t] = min(first.get(t, r["event_time"]), r["event_time"])
    states = [r for r in scores if r["trigger"] == "state" and r["role"] == "champion"]
    assert len({r["patient_token"] for r in states}) == STAYS
    discharges = [r for r in m.adt if r["event_type"] == "discharge"]
    for model in MODELS:
        at = [r for r in scores if r["trigger"] == "stay_hours" and r["model_name"] == model]
        got = Counter((r["patient_token"], r["hours_since_admission"]) for r in at)
        assert all(n == 1 for n in got.values()), model  # once each
        expected = {
            (t, h)
            for t, t0 in first.items()
            for h in hours[model]
            if any(
                r["patient_token"] == t and r["event_time"] <= t0 + timedelta(hours=h)
                for r in states
            )
            and not any(
                d["patient_token"] == t and d["event_time"] <= t0 + timedelta(hours=h)
                for d in discharges
            )
        }
        assert len(expected) >= STAYS, model  # most stays are scored at both hours
        assert set(got) == expected, (model, sorted(expected - set(got))[:5])
        for r in at:
            t0 = first[r["patient_token"]]
            assert r["event_time"] == t0 + timedelta(hours=r["hours_since_admission"])
