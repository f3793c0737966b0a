from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from schemas.settings import Settings

REPO = Path(__file__).resolve().parents[1]
REDIS = "127.0.0.1:16379"
# The environment this session started with: a job run in-process (PyFlink's loopback Python
# workers) leaves its workers' variables in os.environ (PYFLINK_GATEWAY_DISABLED, FLINK_*, …),
# which must not reach a job a test starts as a separate process.
_STARTED_WITH = dict(os.environ)


def free_ports(n: int) -> list[int]:
    """n distinct loopback ports free now (all held until all are chosen)."""
    with contextlib.ExitStack() as held:
        socks = [held.enter_context(socket.socket()) for _ in range(n)]
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [int(s.getsockname()[1]) for s in socks]


def offline_check(module: str, *paths: Path, exit_status: int = 0) -> list[list[str]]:
    """`python -m <module> check PATHS…` with no Kafka anywhere (the bootstrap address is a
    closed port): the tab-separated rows it prints; fails unless it exits `exit_status`."""
    out = subprocess.run(
        [sys.executable, "-m", module, "check", *map(str, paths)],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/bin:/bin",
            "WARDFLOW_PHI_KEY": "k",
            "WARDFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:9",
        },
        check=False,
    )
    assert out.returncode == exit_status, out.stderr
    return [line.split("\t") for line in out.stdout.splitlines()]


# The JIT options of the JVMs the tests start as processes of their own (jobs, `flink run`, a
# standalone cluster) unless JVM_ARGS was given: `make test` sets C1 only (see the Makefile).
CHILD_JIT = os.environ.get("WARDFLOW_TEST_CHILD_JIT", "")


def shell_env(settings: Settings | None = None) -> dict[str, str]:
    """The environment of a process started as from a shell with `settings` (none: the defaults
    and the variables a test adds): this session's own as it began, without its Flink and
    wardflow variables (flink_env.child_environment), with CHILD_JIT beside the job's heap."""
    from jobs.runtime.flink_env import child_environment  # PyFlink: only where a test needs it

    env = child_environment(settings, base=_STARTED_WITH)
    if CHILD_JIT and "JVM_ARGS" not in env:
        heap_mb = (settings or Settings.from_env({})).local_jvm_heap_mb
        env["JVM_ARGS"] = f"-Xmx{heap_mb}m {CHILD_JIT}"
    return env


def scoring_on(settings: Settings, folder: Path, job_name: str) -> Settings:
    """`settings` with scoring on: a registry of its own in `folder` holding the bundled models
    (the first champion), a Feast repo there, Redis (the repo's script starts it) online."""
    import dataclasses

    from training.registry import bootstrap
    from udfs.registry import Registry

    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "redis"], check=True)
    scoring = dataclasses.replace(
        settings,
        scoring=True,
        model_registry=folder / "registry",
        feast_dir=folder / "feast",
        feast_online_store=REDIS,
        job_name=job_name,
    )
    bootstrap(Registry(scoring.model_registry), scoring.model_name)
    return scoring


@pytest.hookimpl(tryfirst=True)  # before `-m` selects by it
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark `jobs` every test that runs a Flink job or uses the local services. `make test` runs
    them in one pytest process, one after the other, as their shared broker (one test restarts
    it), Redis, module-scoped jobs and timed waits need; the others (pure functions, training,
    schemas, dashboards on embedded ClickHouse) run in a second process beside it."""
    jobs_dirs = (REPO / "tests" / "flink", REPO / "tests" / "integration")
    for item in items:
        path = Path(str(item.path))
        if (
            any(path.is_relative_to(d) for d in jobs_dirs)
            or item.get_closest_marker("integration")
            or item.get_closest_marker("slow")
            or "kafka" in getattr(item, "fixturenames", ())
        ):
            item.add_marker(pytest.mark.jobs)


@pytest.fixture(scope="session")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return Settings.from_env(
        phi_key=b"wardflow-integration-tests-only",
        clickhouse_database=f"wf_test_{uuid.uuid4().hex[:8]}",
        flink_tmp_dir=tmp_path_factory.mktemp("flink-tmp"),
        checkpoint_dir=str(tmp_path_factory.mktemp("checkpoints")),
        checkpoint_interval_s=1.0,
        # Rules only unless a test turns scoring on with a registry of its own.
        scoring=False,
        model_registry=tmp_path_factory.mktemp("registry"),
        feast_dir=tmp_path_factory.mktemp("feast"),
        quarantine_registry=tmp_path_factory.mktemp("quarantine"),
    )


@pytest.fixture(scope="session")
def kafka(settings: Settings) -> Iterator[Settings]:
    """The real Apache Kafka broker, started by the repo's own script (a no-op when running).
    The topics the session creates (each test's own prefix) are deleted at its end, so that
    a broker used session after session does not pile up partitions (a restart loads them
    all)."""
    from jobs.runtime import kafka_io

    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "kafka"], check=True)
    kafka_io.wait_for_broker(settings)
    before = set(kafka_io.admin(settings).list_topics(timeout=10).topics)
    yield settings
    try:
        a = kafka_io.admin(settings)
        now = set(a.list_topics(timeout=10).topics)
        made = sorted(t for t in now - before if not t.startswith("_"))  # not Kafka's own
        for fut in a.delete_topics(made, operation_timeout=60).values() if made else ():
            fut.result()
    except Exception as e:  # the broker stopped by a test, say: the topics stay
        print(f"topics of this session not deleted: {e}")


@pytest.fixture(scope="session")
def clickhouse(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """ClickHouse: the server at CLICKHOUSE_URL when set, else embedded chdb in a temp folder
    (chdb allows one data path per process, so the whole session shares it)."""
    import os

    from sinks import clickhouse as ch

    url = os.environ.get("CLICKHOUSE_URL") or f"chdb://{tmp_path_factory.mktemp('chdb')}"
    client = ch.connect(url)
    ch.migrate(client, settings.clickhouse_database)
    yield client
    client.command(f"DROP DATABASE IF EXISTS {settings.clickhouse_database}")


@pytest.fixture(scope="session")
def set_b_states(settings: Settings) -> tuple[Any, Any]:
    """PhysioNet 2012 set B's first 2,000 stays (by record id) and their states as the catalog
    scoring job scores them (training.catalog.reference.stay_states), computed once a session."""
    from training.catalog import physionet2012 as p12
    from training.catalog import reference

    path = p12.set_file(settings, "B")
    if not path.exists():
        pytest.skip(f"PhysioNet 2012 set B is not at {path}")
    s = p12.read_set(path)
    s = p12.subset(s, s.outcomes.index.to_numpy()[:2000])
    return s, reference.stay_states(s)
