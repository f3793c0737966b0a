"""The screening job on a real Flink cluster: a standalone session cluster from PyFlink's own
distribution (a JobManager and a TaskManager process with 2 slots, on loopback), the job
submitted with the distribution's `bin/flink run` exactly as an ML engineer would.

- Submitted attached at `-p 2` with the workers' Python given by `-pyexec`, a Python that cannot
  import wardflow from this checkout: the job keeps the cluster's parallelism, jars and Python,
  ships its own code, and its output equals the offline references: screened states and the
  rules' alerts (tests/reference_screen.py), and the champion's risk from Feast on Redis (the
  training code's features through the same ONNX model).
- Submitted detached and fed as a live feed: its TaskManager is killed (SIGKILL) mid-stream and
  a new one started, as a supervisor would; Flink restores the job from its checkpoint. It is
  then stopped with a savepoint and submitted again from it (an upgrade). No alert or state is
  lost or doubled against the offline reference.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import subprocess
import sys
import sysconfig
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from deploy.local.flink_cluster import Cluster, flink_bin
from feature_store import repo
from jobs import sepsis_news2, sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from jobs.runtime.watch import rest_json
from jobs.screening.scoring import MODEL_RULE
from schemas import topics
from schemas.settings import Settings
from tests import reference_screen as ref
from tests.conftest import CHILD_JIT, REDIS, REPO, free_ports, scoring_on, shell_env
from tests.reference_scoring import champion_risk
from tests.streams import keys_written, produce, sentinels

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 40
JOB_TIMEOUT_S = 300


@pytest.fixture(scope="module")
def worker_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """This environment's Python without its .pth files, so without the editable install of the
    checkout: the workers can import wardflow only from what the job ships."""
    path = tmp_path_factory.mktemp("python") / "python"
    site = sysconfig.get_paths()["purelib"]
    path.write_text(
        "#!/bin/sh\n"
        f'export PYTHONPATH="${{PYTHONPATH:+$PYTHONPATH:}}{shlex.quote(site)}"\n'
        f'exec {shlex.quote(sys.executable)} -S "$@"\n'
    )
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def cluster(worker_python: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    """The cluster's workers run `worker_python` unless a job names another."""
    rest_port, rpc_port = free_ports(2)
    c = Cluster(
        tmp_path_factory.mktemp("flink-cluster"),
        rest_port=rest_port,
        rpc_port=rpc_port,
        python=str(worker_python),
        jvm_args=CHILD_JIT,  # C1 only under `make test`, as the jobs the tests start
    )
    c.start(taskmanagers=1)
    try:
        yield c
    finally:
        c.stop()


def flink(cluster: Cluster, *args: str, env: dict[str, str] | None = None) -> str:
    """`bin/flink <args>` against the cluster; its output (the test fails with it on an error)."""
    out = subprocess.run(
        [str(flink_bin()), *args],
        env={**(env or shell_env()), **cluster.variables()},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=JOB_TIMEOUT_S,
    )
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-4000:]
    return out.stdout


def rest(cluster: Cluster, path: str) -> Any:
    return rest_json(cluster.rest_url + path, timeout_s=10)


def job_id(output: str) -> str:
    found = re.search(r"JobID ([0-9a-f]{32})", output) or re.search(r"job ([0-9a-f]{32})", output)
    assert found, output
    return found.group(1)


def unprefixed(record: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The record as the same job writes it over topics without the run's prefix (a state
    cites the topic it came from)."""
    return {k: v.removeprefix(prefix) if isinstance(v, str) else v for k, v in record.items()}


# -- attached at parallelism 2, against the MiniCluster -------------------------------------


@pytest.fixture(scope="module")
def both(
    kafka: Settings, cluster: Cluster, worker_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """The job run attached on the cluster, with scoring on, and what the offline references
    make of the same patients: the rules' states and alerts, and the champion's risk per
    patient-hour from the training code's features (as tests/integration/test_scoring_job.py
    checks the MiniCluster's)."""
    tmp = tmp_path_factory.mktemp("cluster-scoring")
    settings = scoring_on(kafka, tmp, f"cluster-{uuid.uuid4().hex[:6]}")
    plan = replay.ReplayPlan(patients=PATIENTS, seed=23)
    df, source = replay.load_physionet(None, settings)
    chosen = replay.select_patients(df, plan)
    store = repo.open_store(settings.feast_dir, REDIS)
    repo.push_static(store, replay.static_features(chosen, plan, settings.phi_key, source))
    items = replay.clinical_stream(chosen, plan, settings.phi_key, source)
    prefix = f"fc-{uuid.uuid4().hex[:8]}."
    names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    try:
        kafka_io.ensure_topics(settings, names, prefix=prefix)
        replay.produce_stream(settings, items, prefix=prefix, progress=False)
        out = flink(
            cluster,
            "run", "-m", cluster.address, "-p", "2", "-pyexec", str(worker_python),
            "-pym", "jobs.sepsis_screen", "--bounded", "--topic-prefix", prefix,
            env=shell_env(settings),
        )  # fmt: skip
        outputs = {
            t.name: [
                unprefixed(r, prefix)
                for r in kafka_io.read_records(settings, prefix + t.name, t.name)
            ]
            for t in (topics.SEPSIS_SCREEN, topics.ALERT_V2, topics.SEPSIS_SCORE)
        }
        rows, events = ref.run(items)
        offline = champion_risk(chosen, settings, source)
        yield {
            "job": rest(cluster, f"/jobs/{job_id(out)}"),
            "outputs": outputs,
            "rows": rows,
            "events": events,
            "risk": offline["risk"],
        }
    finally:
        kafka_io.delete_topics(settings, names, prefix=prefix)


def test_flink_run_keeps_the_clusters_parallelism_for_every_operator(both: dict[str, Any]) -> None:
    job = both["job"]
    assert job["state"] == "FINISHED"
    assert {v["parallelism"] for v in job["vertices"]} == {2}


def test_on_the_cluster_the_screened_states_and_the_rules_alerts_equal_the_offline_reference(
    both: dict[str, Any],
) -> None:
    outputs = both["outputs"]
    ref.assert_states_equal(outputs[topics.SEPSIS_SCREEN.name], both["rows"])
    alerts = outputs[topics.ALERT_V2.name]
    assert both["events"], "the patients raise rule alerts"
    ref.assert_events_equal([a for a in alerts if a["rule_id"] != MODEL_RULE], both["events"])
    assert any(a["rule_id"] == MODEL_RULE for a in alerts), "and model alerts"


def test_on_the_cluster_the_models_risk_equals_the_training_codes_risk(
    both: dict[str, Any],
) -> None:
    scores = pd.DataFrame(both["outputs"][topics.SEPSIS_SCORE.name])
    champion = scores.query("role == 'champion'").set_index("record_id")
    assert len(champion) > 0.95 * len(both["risk"])
    diff = np.abs(champion["risk"].to_numpy() - both["risk"].loc[champion.index].to_numpy())
    assert np.median(diff) < 1e-6
    assert (diff < 1e-4).mean() > 0.99, f"max diff {diff.max():.5f}"


# -- detached, a TaskManager killed, a savepoint upgrade ---------------------------------------


def _checkpoints(cluster: Cluster, jid: str) -> dict[str, Any]:
    return rest(cluster, f"/jobs/{jid}/checkpoints")  # type: ignore[no-any-return]


def _wait(what: str, done: Any, timeout_s: float = JOB_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.5)


def _completed_after(cluster: Cluster, jid: str, count: int) -> bool:
    return int(_checkpoints(cluster, jid)["counts"]["completed"]) > count


@pytest.fixture(scope="module")
def failed_over(
    kafka: Settings, cluster: Cluster, worker_python: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("failover")
    settings = dataclasses.replace(
        kafka,
        scoring=False,  # the rules' alerts, against the rules-only reference
        device_numerics=False,
        checkpoint_interval_s=1.0,
        # Every partition gets records in each phase (the end sentinels after the upgrade), so
        # nothing needs idleness; with it a partition starved while the restored job reads its
        # backlog under load could be taken for idle and its records dead-lettered as late
        # (settings.source_idle_timeout_s), which is not what this test is about.
        source_idle_timeout_s=0,
        checkpoint_dir=str(tmp / "checkpoints"),
        job_name=f"failover-{uuid.uuid4().hex[:6]}",
    )
    prefix = f"fo-{uuid.uuid4().hex[:8]}."
    names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, names, prefix=prefix)
    plan = replay.ReplayPlan(patients=PATIENTS, seed=29)
    df, source = replay.load_physionet(None, settings)
    items = replay.clinical_stream(replay.select_patients(df, plan), plan, settings.phi_key, source)
    items.sort(key=lambda tr: tr[1]["event_time"])
    ends = [e for e in sentinels(items) if e[1] != topics.VITALS_DEVICE.name]
    rows, events = ref.run([*items, *[(t, r) for _, t, r in ends]])
    rows = [r for r in rows if not r.patient_token.startswith("sentinel-")]
    expected = {
        prefix + topics.SEPSIS_SCREEN.name: len(rows),
        prefix + topics.ALERT_V2.name: len(events),
    }
    committed: Counter[str] = Counter()
    watcher = kafka_io.TopicWatcher(
        settings, list(expected), lambda topic, _, __: committed.update([topic])
    )
    env = shell_env(settings)
    submit = ["-m", cluster.address, "-p", "2", "-pyexec", str(worker_python), "-d"]
    job = ["-pym", "jobs.sepsis_screen", "--topic-prefix", prefix]
    half = len(items) // 2
    jid = ""
    try:
        replay.produce_stream(settings, items[:half], prefix=prefix, progress=False)
        jid = job_id(flink(cluster, "run", *submit, *job, env=env))
        screen = prefix + topics.SEPSIS_SCREEN.name
        _wait("no committed output", lambda: committed[screen] > 0)
        _wait("no checkpoint", lambda: _completed_after(cluster, jid, 0))
        before = cluster.taskmanager_ids()
        killed = cluster.kill_taskmanager()
        # The rest of the feed arrives while the job is down.
        replay.produce_stream(settings, items[half:], prefix=prefix, progress=False)
        cluster.start_taskmanager()  # as a supervisor would
        _wait("no new TaskManager", lambda: bool(cluster.taskmanager_ids() - before))
        _wait("not restored", lambda: int(_checkpoints(cluster, jid)["counts"]["restored"]) > 0)
        done = int(_checkpoints(cluster, jid)["counts"]["completed"])
        _wait("no checkpoint after the restore", lambda: _completed_after(cluster, jid, done))
        restarts = int(_checkpoints(cluster, jid)["counts"]["restored"])
        # An upgrade: stop with a savepoint, submit (the new version) from it.
        stopped = flink(
            cluster, "stop", "-m", cluster.address, "--savepointPath", (tmp / "sp").as_uri(), jid,
            env=env,
        )  # fmt: skip
        savepoint = re.search(r"Savepoint completed\. Path: (\S+)", stopped)
        assert savepoint, stopped
        jid = job_id(flink(cluster, "run", *submit, "-s", savepoint.group(1), *job, env=env))
        _wait("no checkpoint after the upgrade", lambda: _completed_after(cluster, jid, 0))
        produce(settings, prefix, ends)
        _wait(
            f"output incomplete: {dict(committed)} of {expected}",
            lambda: all(committed[t] >= n for t, n in expected.items()),
        )
        time.sleep(3)  # a few more checkpoints: anything twice would show by now
        flink(cluster, "cancel", "-m", cluster.address, jid, env=env)
        jid = ""
        letters = kafka_io.read_records(
            settings, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
        )
        yield {
            "settings": settings, "prefix": prefix, "rows": rows, "events": events,
            "killed": killed, "restarts": restarts,
            "dead_letters": Counter(d["reason_code"] for d in letters),
        }  # fmt: skip
    finally:
        watcher.close()
        if jid:
            subprocess.run([str(flink_bin()), "cancel", "-m", cluster.address, jid], check=False)
        kafka_io.delete_topics(settings, names, prefix=prefix)


def test_flink_restores_the_job_when_its_taskmanager_is_killed(failed_over: dict[str, Any]) -> None:
    assert failed_over["killed"] > 0 and failed_over["restarts"] >= 1


def test_after_a_taskmanager_kill_and_a_savepoint_upgrade_no_alert_is_lost_or_doubled(
    failed_over: dict[str, Any],
) -> None:
    got = keys_written(failed_over["settings"], failed_over["prefix"], topics.ALERT_V2)
    assert got and max(got.values()) == 1
    # Dead letters (e.g. `late` records after a restore) would explain a different lifecycle.
    letters = failed_over["dead_letters"]
    assert got == Counter(e["alert_event_id"] for e in failed_over["events"]), letters


def test_after_a_taskmanager_kill_and_a_savepoint_upgrade_each_state_is_written_once(
    failed_over: dict[str, Any],
) -> None:
    got = keys_written(failed_over["settings"], failed_over["prefix"], topics.SEPSIS_SCREEN)
    assert got == Counter(r.record_id for r in failed_over["rows"])


# -- the job's own command line, targeting the cluster -------------------------------------------


def test_the_jobs_own_cli_submits_to_the_cluster_whose_python_and_parallelism_it_keeps(
    kafka: Settings, cluster: Cluster, worker_python: Path
) -> None:
    prefix = f"ft-{uuid.uuid4().hex[:8]}."
    names = sepsis_news2.JOB.input_topics + sepsis_news2.JOB.output_topics
    kafka_io.ensure_topics(kafka, names, prefix=prefix)
    try:
        plan = replay.ReplayPlan(patients=5, seed=37)
        df, source = replay.load_physionet(None, kafka)
        items = replay.clinical_stream(
            replay.select_patients(df, plan), plan, kafka.phi_key, source
        )
        vitals = [i for i in items if i[0] == topics.VITALS_OBSERVATION.name]
        replay.produce_stream(kafka, vitals, prefix=prefix, progress=False)
        done = subprocess.run(
            [sys.executable, "-m", "jobs.sepsis_news2", "--flink-target", cluster.address,
             "--bounded", "--topic-prefix", prefix],
            env=shell_env(kafka), cwd=REPO, capture_output=True, text=True,
            timeout=JOB_TIMEOUT_S,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-4000:]
        jobs = rest(cluster, "/jobs/overview")["jobs"]
        (job,) = [j for j in jobs if j["name"] == "sepsis_news2"]
        assert job["state"] == "FINISHED"
        config = {
            e["key"]: e["value"] for e in rest(cluster, f"/jobs/{job['jid']}/jobmanager/config")
        }
        assert config["python.executable"] == str(worker_python)  # the cluster's, not the client's
        scored = kafka_io.count_records(kafka, prefix + topics.VITALS_NEWS2.name)
        assert scored == len(vitals)
    finally:
        kafka_io.delete_topics(kafka, names, prefix=prefix)
