"""Several catalog models promoted, shadowed and rolled back independently while the catalog
scoring job runs: the job runs unbounded, as deployed (a process of its own, Kafka in and out,
exactly-once sink), over real ICU stays (PhysioNet 2012 set B) fed in three phases; between the
phases the registry's roles change, one model at a time, and every score of a phase's stays
carries the versions and roles the registry held then, without a restart."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from jobs import model_scoring
from jobs.feeds import physionet2012 as replay
from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from tests.conftest import REPO, shell_env
from tests.streams import produce, sentinels
from training.registry import BUNDLED, bootstrap
from udfs.registry import Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MORTALITY, LOS = "icu-mortality", "length-of-stay"
STAYS_PER_PHASE = 2
PHASE_GAP = timedelta(days=60)  # each phase after the last one's end records (30 days on)
# What each phase's scores must carry: (model, role) → version
ROLES = [
    {(MORTALITY, "champion"): "1", (MORTALITY, "challenger"): "2", (LOS, "champion"): "1"},
    # mortality: version 2 promoted, version 1 kept as its shadow; LOS: version 2 shadowed
    {
        (MORTALITY, "champion"): "2",
        (MORTALITY, "challenger"): "1",
        (LOS, "champion"): "1",
        (LOS, "challenger"): "2",
    },
    # mortality rolled back to version 1 (its shadow goes with the role); LOS untouched
    {(MORTALITY, "champion"): "1", (LOS, "champion"): "1", (LOS, "challenger"): "2"},
]


def _change_roles(reg: Registry, phase: int) -> None:
    if phase == 1:
        reg.promote(MORTALITY, "2")
        reg.set_role(MORTALITY, "challenger", "1", why="the old champion in shadow")
        reg.set_role(LOS, "challenger", "2", why="shadow the new version")
    elif phase == 2:
        assert reg.rollback(MORTALITY) == "1"


def _second_version(reg: Registry, model: str, folder: Path) -> None:
    """The bundled version again, as the model's version 2."""
    copy = folder / f"{model}-2"
    shutil.copytree(sorted((BUNDLED / model).iterdir())[0], copy)
    assert reg.register(copy).version == "2"


def _scores(s: Settings, prefix: str) -> list[dict[str, Any]]:
    return kafka_io.read_records(s, prefix + topics.MODEL_SCORE.name, topics.MODEL_SCORE.name)


@pytest.fixture(scope="module")
def phases(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    path = kafka.physionet2012_dir / "setB_observations.parquet"
    if not path.exists():
        pytest.skip(f"PhysioNet 2012 set B is not in {path.parent}")
    folder = tmp_path_factory.mktemp("catalog-roles")
    s = dataclasses.replace(
        kafka,
        model_registry=folder / "registry",
        catalog_models=f"{MORTALITY},{LOS}",
        catalog_feature_lookups=False,  # the stays' descriptors are not the point here
        roles_check_s=0.0,
        checkpoint_dir=str(folder / "checkpoints"),
        checkpoint_interval_s=1.0,
        job_name=f"catalog-roles-{uuid.uuid4().hex[:6]}",
    )
    reg = Registry(s.model_registry)
    for m in (MORTALITY, LOS):
        assert bootstrap(reg, m)
        _second_version(reg, m, folder)
    reg.set_role(MORTALITY, "challenger", "2", why="shadow")
    prefix = f"t-roles-{uuid.uuid4().hex[:8]}."
    names = [*model_scoring.JOB.input_topics, *model_scoring.JOB.output_topics]
    kafka_io.ensure_topics(s, names, prefix=prefix)

    obs = replay.load(s, "B", path)
    ids = np.sort(obs["record_id"].unique())[: STAYS_PER_PHASE * len(ROLES)]
    key = s.require_phi_key()
    pub = Publisher(s, prefix=prefix, stage="test")
    log = folder / "job.log"
    with log.open("ab") as out:
        job = subprocess.Popen(
            [sys.executable, "-m", "jobs.model_scoring", "--topic-prefix", prefix],
            env={**shell_env(s), "FLINK_LOG_DIR": str(folder / "flink-logs")},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    fed: list[dict[str, Any]] = []
    alive: list[bool] = []
    try:
        for phase in range(len(ROLES)):
            if phase:
                _change_roles(reg, phase)
            chosen = ids[phase * STAYS_PER_PHASE : (phase + 1) * STAYS_PER_PHASE]
            plan = replay.ReplayPlan(base_time=replay.DEFAULT_BASE_TIME + phase * PHASE_GAP)
            stays = obs[obs["record_id"].isin(chosen)]
            m = replay.map_stays(stays, replay.anchors(chosen, plan), key=key, source="test")
            items = replay.stream(m)
            encoded = pub.encode(items)
            assert isinstance(encoded, list)
            pub.send(encoded)
            pub.flush(60)
            # the end records move the watermark past every state and hour of the phase's stays
            ends = [e for e in sentinels(items) if e[1] in model_scoring.JOB.input_topics]
            produce(s, prefix, ends)
            tokens = {r["patient_token"] for r in m.vitals + m.labs}
            states = len(m.vitals) + len(m.labs)
            per_role = states + len(tokens) * 2  # every state, and hours 24 and 48
            want = {mr: per_role for mr in ROLES[phase]}
            deadline = time.monotonic() + 240
            while True:
                got = Counter(
                    (r["model_name"], r["role"])
                    for r in _scores(s, prefix)
                    if r["entity_token"] in tokens
                )
                if got == want:
                    break
                if job.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"phase {phase}: {dict(got)} != {want}; see {log}")
                time.sleep(1.0)
            fed.append({"tokens": tokens, "states": states})
            alive.append(job.poll() is None)
    finally:
        job.send_signal(signal.SIGTERM)
        try:
            job.wait(60)
        except subprocess.TimeoutExpired:
            job.kill()
    return {"settings": s, "prefix": prefix, "fed": fed, "alive": alive, "registry": reg}


def test_each_phase_is_scored_by_the_versions_in_the_roles_the_registry_held_then(
    phases: dict[str, Any],
) -> None:
    scores = _scores(phases["settings"], phases["prefix"])
    for phase, fed in enumerate(phases["fed"]):
        mine = [r for r in scores if r["entity_token"] in fed["tokens"]]
        held = {(r["model_name"], r["role"], r["model_version"]) for r in mine}
        assert held == {(m, role, v) for (m, role), v in ROLES[phase].items()}, phase


def test_a_role_change_of_one_model_leaves_the_other_model_as_it_was(
    phases: dict[str, Any],
) -> None:
    """Phase 2 rolled the mortality model back and left the LOS model alone: the LOS champion
    and shadow scored that phase's stays as in phase 1; the mortality champion alone, with its
    threshold, and no shadow."""
    scores = _scores(phases["settings"], phases["prefix"])
    for phase in (1, 2):
        fed = phases["fed"][phase]
        mine = [r for r in scores if r["entity_token"] in fed["tokens"]]
        los = Counter((r["role"], r["model_version"]) for r in mine if r["model_name"] == LOS)
        n = fed["states"] + 2 * len(fed["tokens"])
        assert los == {("champion", "1"): n, ("challenger", "2"): n}, phase
    last = [r for r in scores if r["entity_token"] in phases["fed"][2]["tokens"]]
    mortality = [r for r in last if r["model_name"] == MORTALITY]
    assert {r["role"] for r in mortality} == {"champion"}
    assert all(r["threshold"] is not None for r in mortality)
    assert all(r["threshold"] is None for r in scores if r["role"] == "challenger")


def test_one_job_run_served_every_phase(phases: dict[str, Any]) -> None:
    assert phases["alive"] == [True] * len(ROLES)
    history = [e["roles"].get("champion") for e in phases["registry"].history(MORTALITY)]
    assert history[-3:] == ["2", "2", "1"]  # promoted, shadow set, rolled back
    fed = set().union(*(f["tokens"] for f in phases["fed"]))
    scores = [r for r in _scores(phases["settings"], phases["prefix"]) if r["entity_token"] in fed]
    assert len({r["score_id"] for r in scores}) == len(scores)  # each score written once
