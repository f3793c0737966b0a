"""A dependency that goes away under a running job is named on the console and in the exit
status: the Kafka broker (one of the test's own, on its own ports) is stopped under the spine
job; the job reports the failure as it happens, with what the restart strategy will do, and
when the restarts are used up ends with the broker's address, the cause, the log folder and
exit status 3, not a Java stack trace."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobs import sepsis_news2
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from tests.conftest import REPO, free_ports, shell_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A Kafka broker of this test's own (the repo's script, its own ports and data)."""
    broker_port, controller_port = free_ports(2)
    env = {
        **os.environ,
        "WARDFLOW_KAFKA_PORT": str(broker_port),
        "WARDFLOW_KAFKA_CONTROLLER_PORT": str(controller_port),
        "WARDFLOW_STATE": str(tmp_path_factory.mktemp("broker")),
    }
    services = str(REPO / "deploy/local/services.sh")
    subprocess.run([services, "start", "kafka"], env=env, check=True, capture_output=True)
    try:
        yield env
    finally:
        subprocess.run([services, "stop", "kafka"], env=env, check=False, capture_output=True)


def test_a_broker_gone_mid_job_is_named_with_its_logs_restarts_and_exit_status(
    settings: Settings, broker: dict[str, str], tmp_path: Path
) -> None:
    bootstrap = f"127.0.0.1:{broker['WARDFLOW_KAFKA_PORT']}"
    own = Settings.from_env({}, kafka_bootstrap=bootstrap, phi_key=settings.phi_key)
    kafka_io.wait_for_broker(own)
    prefix = f"gone-{uuid.uuid4().hex[:6]}."
    kafka_io.ensure_topics(
        own, sepsis_news2.JOB.input_topics + sepsis_news2.JOB.output_topics, prefix=prefix
    )
    plan = replay.ReplayPlan(patients=10, seed=3)
    df, source = replay.load_physionet(None, own)
    items = replay.clinical_stream(replay.select_patients(df, plan), plan, own.phi_key, source)
    replay.produce_stream(own, [i for i in items if i[0] == topics.VITALS_OBSERVATION.name],
                          prefix=prefix, progress=False)  # fmt: skip
    logs = tmp_path / "flink-logs"
    env = {
        **shell_env(),
        "FLINK_LOG_DIR": str(logs),
        "WARDFLOW_KAFKA_BOOTSTRAP": bootstrap,
        "WARDFLOW_PHI_KEY": own.phi_key.decode(),
        "WARDFLOW_RESTART_ATTEMPTS": "1",
        # The clients give up on the gone broker within seconds (the default, 30 s, would make
        # this test wait minutes); the failure must still name the broker.
        "WARDFLOW_KAFKA_CLIENT_TIMEOUT_S": "5",
        "WARDFLOW_CHECKPOINT_DIR": str(tmp_path / "checkpoints"),
        "WARDFLOW_CHECKPOINT_INTERVAL_S": "1",
    }
    job = subprocess.Popen(
        [sys.executable, "-m", "jobs.sepsis_news2", "--topic-prefix", prefix],
        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        scored = prefix + topics.VITALS_NEWS2.name
        deadline = time.monotonic() + 180
        while kafka_io.count_records(own, scored) == 0:  # running, output committed
            if job.poll() is not None or time.monotonic() > deadline:
                job.kill()
                raise AssertionError(f"the job never ran: {job.communicate()[1][-4000:]}")
            time.sleep(1)
        services = str(REPO / "deploy/local/services.sh")
        subprocess.run([services, "stop", "kafka"], env=broker, check=True, capture_output=True)
        _, err = job.communicate(timeout=480)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 3, err[-3000:]
    assert "Traceback" not in err
    during = err[: err.index("sepsis_news2 failed:")]
    assert "failure #1 in" in during and f"the Kafka broker at {bootstrap}" in during
    assert "Flink will restart up to 1 times, 2 s apart, then fail" in during
    final = err[err.index("sepsis_news2 failed:") :]
    assert final.startswith(f"sepsis_news2 failed: the Kafka broker at {bootstrap}")
    assert "kafka" in final.split("cause:")[1].split("\n")[0].lower()
    assert f"logs:     {logs}" in final and any(logs.glob("*.log"))
    assert final.rstrip().endswith("exit status 3")
