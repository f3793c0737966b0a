"""The catalog scoring job keeps a stay's state for `stay_state_ttl_h`, not for the screening
jobs' `state_ttl_h` (here 1 s of processing time): a stay whose records pause for longer than
that is still one stay, its hours counted from its admission, its features over all its records
and its 24- and 48-h scores made. Kafka in and out, the stay's descriptors in Feast; the job
unbounded, as deployed."""

from __future__ import annotations

import dataclasses
import itertools
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from feature_store import icu_stay, repo
from jobs import model_scoring
from jobs.feeds import physionet2012 as replay
from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import topics
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from tests.stay_records import as_observations
from tests.streams import RunningJob, produce, sentinels, until
from training.registry import bootstrap
from udfs.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "length-of-stay"
PAUSE_AFTER_H = 12.0  # the stay's records pause at the first gap of 30 min after this hour
SILENCE_S = 4.0  # processing time without a record of the stay: four screening-job TTLs


def _offline(
    s: Settings, stay: pd.DataFrame, records: list[dict[str, Any]], admitted: Any, hours: list[Any]
) -> Any:
    """The declaration's features (pandas) at `hours` of the stay's records as the topics carried
    them, with its descriptors, and the champion's score of them (onnxruntime)."""
    obs = as_observations(
        records, lambda rec: (1, (rec["event_time"] - admitted).total_seconds() / 60.0)
    )
    desc = stay[(stay["minute"] == 0) & stay["parameter"].isin(list(icu_stay.DESCRIPTORS))]
    obs = pd.concat([desc.assign(record_id=1), obs], ignore_index=True)
    features = icu_stay.stay_features(obs, sorted(set(hours)))
    v = Registry(s.model_registry).role(MODEL, "champion")
    assert v is not None
    spec = ModelSpec.parse(v.spec)
    session = ort.InferenceSession(str(v.onnx), providers=["CPUExecutionProvider"])
    out = session.run(None, {"features": features[spec.feature_names].to_numpy("float32")})
    y = np.asarray(out[-1], dtype="float64")
    scored = y.reshape(len(features), -1)[:, -1]
    return dict(zip(features["hours_since_admission"], scored, strict=True))


def test_a_stay_silent_for_longer_than_the_screening_state_ttl_stays_one_stay(
    kafka: Settings, tmp_path: Path
) -> None:
    path = kafka.physionet2012_dir / "setB_observations.parquet"
    if not path.exists():
        pytest.skip(f"PhysioNet 2012 set B is not in {path.parent}")
    s = dataclasses.replace(
        kafka,
        model_registry=tmp_path / "registry",
        catalog_models=MODEL,
        feast_dir=tmp_path / "feast",
        feast_online_store="sqlite",
        roles_check_s=3600.0,
        state_ttl_h=1 / 3600,
        checkpoint_dir=str(tmp_path / "checkpoints"),
        job_name=f"catalog-stay-ttl-{uuid.uuid4().hex[:6]}",
    )
    assert s.stay_state_ttl_h * 3600 > 100 * SILENCE_S
    reg = Registry(s.model_registry)
    assert bootstrap(reg, MODEL)
    prefix = f"t-sttl-{uuid.uuid4().hex[:8]}."
    names = [*model_scoring.JOB.input_topics, *model_scoring.JOB.output_topics]
    kafka_io.ensure_topics(s, names, prefix=prefix)

    obs = replay.load(s, "B", path)
    rid = int(np.sort(obs["record_id"].unique())[0])
    anchors = replay.anchors([rid], replay.ReplayPlan(stays=0))
    admitted = anchors[rid]
    stay = obs[obs["record_id"] == rid]
    m = replay.map_stays(stay, anchors, key=s.require_phi_key(), source="t")
    spec = ModelSpec.parse(reg.role(MODEL, "champion").spec)  # type: ignore[union-attr]
    store = repo.open_store(s.feast_dir, "sqlite", stay_services=[spec.feature_service or ""])
    repo.push_stay_static(store, replay.stay_static(stay, anchors, key=s.phi_key, source="t"))
    items = replay.stream(m)
    token = m.vitals[0]["patient_token"]
    # the pause: at the first gap of 30 min or more between records after PAUSE_AFTER_H
    times = sorted({r["event_time"] for _, r in items})
    resume = next(
        b
        for a, b in itertools.pairwise(times)
        if a >= admitted + pd.Timedelta(hours=PAUSE_AFTER_H) and b - a >= pd.Timedelta(minutes=30)
    )
    before = [i for i in items if i[1]["event_time"] < resume]
    after = [i for i in items if i[1]["event_time"] >= resume]
    charted = [r for t, r in items if t != topics.ADT_EVENT.name]
    states_before = sum(t != topics.ADT_EVENT.name for t, _ in before)
    pub = Publisher(s, prefix=prefix, stage="test")

    def send(part: list[tuple[str, dict[str, Any]]], end: Any = None) -> None:
        encoded = pub.encode(part)
        assert isinstance(encoded, list)
        pub.send(encoded)
        pub.flush(60)
        ends = [e for e in sentinels(items, at=end) if e[1] in model_scoring.JOB.input_topics]
        produce(s, prefix, ends)  # every partition's watermark to `end`

    def scores() -> list[dict[str, Any]]:
        got = kafka_io.read_records(s, prefix + topics.MODEL_SCORE.name, topics.MODEL_SCORE.name)
        return [r for r in got if r["entity_token"] == token]

    job = RunningJob.submit(model_scoring.JOB.pipeline(s, prefix=prefix), s.job_name)
    try:
        send(before, end=resume)  # the watermark at `resume`: every state before it is scored
        until("the states before the pause", lambda: len(scores()) >= states_before, 180, job=job)
        time.sleep(SILENCE_S)  # the stay's state untouched for four `state_ttl_h`
        send(after)
        until("the hours of the stay", lambda: len(scores()) >= len(charted) + 2, 180, job=job)
        time.sleep(2)  # nothing more comes
    finally:
        job.client.cancel().result()
    got = pd.DataFrame(scores())
    kafka_io.delete_topics(s, names, prefix=prefix)

    assert Counter(got["trigger"]) == {"state": len(charted), "stay_hours": 2}
    since = (got["event_time"] - admitted).dt.total_seconds() / 3600
    assert np.allclose(got["hours_since_admission"], since)  # from the admission, not the pause
    at = got[got["trigger"] == "stay_hours"].sort_values("hours_since_admission")
    admit_ms = int(admitted.timestamp() * 1000)
    assert list(at["record_id"]) == [f"{token}@{admit_ms}+24h", f"{token}@{admit_ms}+48h"]
    offline = _offline(s, stay, charted, admitted, list(got["hours_since_admission"]))
    diff = (got["score"] - got["hours_since_admission"].map(offline)).abs()
    assert diff.max() < 1e-3, got.loc[diff.idxmax()].to_dict()
