"""A standalone Flink session cluster on loopback, from the distribution inside PyFlink's wheel.

`python -m deploy.local.flink_cluster {start|stop|status|env}` (`make cluster`):
one JobManager and `--taskmanagers` TaskManagers of `--slots` slots each, bound to 127.0.0.1,
configured in a folder of its own (`$WARDFLOW_STATE/flink-cluster/conf`: the installed package is
never written to), logging to `$WARDFLOW_STATE/flink-cluster/log`. Jobs reach it with the
distribution's own `bin/flink` (`flink_bin()`), exactly as on any other cluster:

    FLINK_CONF_DIR=$WARDFLOW_STATE/flink-cluster/conf $(flink_bin) run -p 2 -pym jobs.sepsis_screen

This is a real cluster (separate JobManager and TaskManager processes, RPC, blob server, REST),
not the MiniCluster a job starts inside its own client.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pyflink

from jobs.runtime.watch import rest_json
from schemas.settings import CACHE_ENV, DEFAULT_CACHE, STATE_ENV

FLINK_HOME = Path(pyflink.__file__).resolve().parent
DEFAULT_REST_PORT = 18091
DEFAULT_RPC_PORT = 16123


def flink_bin() -> Path:
    """`bin/flink` of PyFlink's distribution."""
    return FLINK_HOME / "bin" / "flink"


def _state_dir() -> Path:
    cache = Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE)
    return Path(os.environ.get(STATE_ENV) or cache / "state")


@dataclass(frozen=True)
class Cluster:
    """Where one standalone cluster keeps its configuration, logs and scratch files."""

    home: Path
    rest_port: int = DEFAULT_REST_PORT
    rpc_port: int = DEFAULT_RPC_PORT
    slots: int = 2
    taskmanager_memory: str = "2560m"
    jobmanager_memory: str = "1024m"
    python: str = sys.executable  # the workers' Python (`python.executable`)
    # JVM options the daemons add to Flink's own (JVM_ARGS of its scripts); "": the caller's.
    jvm_args: str = ""

    @classmethod
    def default(cls) -> Cluster:
        return cls(_state_dir() / "flink-cluster")

    @property
    def conf_dir(self) -> Path:
        return self.home / "conf"

    @property
    def log_dir(self) -> Path:
        return self.home / "log"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def address(self) -> str:
        """What `flink run -m` takes."""
        return f"127.0.0.1:{self.rest_port}"

    def variables(self) -> dict[str, str]:
        """The variables `bin/flink` and the cluster scripts need to find this cluster."""
        return {
            "FLINK_HOME": str(FLINK_HOME),
            "FLINK_CONF_DIR": str(self.conf_dir),
            "FLINK_LOG_DIR": str(self.log_dir),
            "FLINK_PID_DIR": str(self.home),
        }

    def env(self) -> dict[str, str]:
        """The daemons' environment: this process's, with `variables` and `jvm_args`."""
        jvm = {"JVM_ARGS": self.jvm_args} if self.jvm_args else {}
        return {**os.environ, **self.variables(), **jvm}

    def config(self) -> dict[str, object]:
        """config.yaml: the distribution's JVM options, loopback addresses and our ports."""
        shipped = (FLINK_HOME / "conf" / "config.yaml").read_text()
        java_opts = next(
            line.split("all:", 1)[1].strip()
            for line in shipped.splitlines()
            if line.strip().startswith("all:")
        )
        return {
            "env.java.opts.all": java_opts,
            "jobmanager.rpc.address": "127.0.0.1",
            "jobmanager.rpc.port": self.rpc_port,
            "jobmanager.bind-host": "127.0.0.1",
            "jobmanager.memory.process.size": self.jobmanager_memory,
            "jobmanager.execution.failover-strategy": "region",
            "taskmanager.host": "127.0.0.1",
            "taskmanager.bind-host": "127.0.0.1",
            "taskmanager.numberOfTaskSlots": self.slots,
            "taskmanager.memory.process.size": self.taskmanager_memory,
            "blob.server.port": "0",
            "rest.address": "127.0.0.1",
            "rest.bind-address": "127.0.0.1",
            "rest.port": self.rest_port,
            "io.tmp.dirs": str(self.home / "tmp"),
            # The workers' Python: this machine's wardflow environment (an image sets its own).
            "python.executable": self.python,
            "python.client.executable": sys.executable,
            # A TaskManager that is gone is noticed within seconds, not the default 50 s.
            "heartbeat.timeout": 10000,
            "heartbeat.interval": 2000,
        }

    def write_conf(self) -> None:
        self.conf_dir.mkdir(parents=True, exist_ok=True)
        (self.home / "tmp").mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"{k}: {json.dumps(v) if isinstance(v, str) else v}" for k, v in self.config().items()
        ]
        (self.conf_dir / "config.yaml").write_text("\n".join(lines) + "\n")
        for name in ("log4j.properties", "log4j-cli.properties", "log4j-console.properties"):
            shutil.copy(FLINK_HOME / "conf" / name, self.conf_dir / name)
        (self.conf_dir / "masters").write_text(f"127.0.0.1:{self.rest_port}\n")
        (self.conf_dir / "workers").write_text("127.0.0.1\n")

    # -- processes -------------------------------------------------------------------------

    def overview(self) -> dict[str, object] | None:
        """The REST API's /overview (TaskManagers, slots, jobs), or None when it is down."""
        try:
            overview: dict[str, object] = rest_json(self.rest_url + "/overview", timeout_s=2)
            return overview
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def _daemon(self, script: str, *args: str) -> None:
        subprocess.run(
            [str(FLINK_HOME / "bin" / script), *args],
            env=self.env(),
            cwd=self.home,  # not the caller's folder: a worker's `python -m` puts it on sys.path
            # Each daemon (and the Python workers it starts) in a process group of its own.
            start_new_session=True,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )

    def start(self, taskmanagers: int = 1, timeout_s: float = 90.0) -> None:
        """Start the JobManager and TaskManagers and wait until all slots have registered."""
        if self.overview() is None:
            self.write_conf()
            self._daemon("jobmanager.sh", "start")
        for _ in range(taskmanagers - self.taskmanager_count()):
            self.start_taskmanager()
        self.wait_for_slots(taskmanagers * self.slots, timeout_s)

    def start_taskmanager(self) -> None:
        self._daemon("taskmanager.sh", "start")

    def taskmanager_ids(self) -> set[str]:
        """The TaskManagers registered with the JobManager now."""
        return {str(t["id"]) for t in rest_json(self.rest_url + "/taskmanagers")["taskmanagers"]}

    def taskmanager_count(self) -> int:
        o = self.overview()
        return int(o["taskmanagers"]) if o else 0  # type: ignore[call-overload]

    def wait_for_slots(self, slots: int, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            o = self.overview()
            if o and int(o["slots-total"]) >= slots:  # type: ignore[call-overload]
                return
            time.sleep(0.5)
        raise TimeoutError(
            f"the Flink cluster at {self.rest_url} did not offer {slots} slots within "
            f"{timeout_s:.0f} s; its logs are in {self.log_dir}"
        )

    def taskmanager_pids(self) -> list[int]:
        """Process ids of this cluster's TaskManagers (from the daemon scripts' pid file)."""
        pids = []
        for f in self._pid_files("taskexecutor"):
            pids += [int(p) for p in f.read_text().split() if _alive(int(p))]
        return pids

    def kill_taskmanager(self) -> int:
        """SIGKILL one TaskManager with the Python workers it started, as a crashed machine
        would go: no clean shutdown."""
        pid = self.taskmanager_pids()[0]
        os.killpg(os.getpgid(pid), signal.SIGKILL)
        return pid

    def _pid_files(self, kind: str) -> list[Path]:
        return sorted(self.home.glob(f"flink-*-{kind}.pid"))

    def stop(self) -> None:
        """Stop every TaskManager and the JobManager (running jobs are lost, checkpoints kept)."""
        if not self.conf_dir.exists():
            return
        for script in ("taskmanager.sh", "jobmanager.sh"):
            subprocess.run(
                [str(FLINK_HOME / "bin" / script), "stop-all"],
                env=self.env(),
                check=False,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + 30
        while self.overview() is not None and time.monotonic() < deadline:
            time.sleep(0.5)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("action", choices=("start", "stop", "status", "env"))
    ap.add_argument("--taskmanagers", type=int, default=1)
    a = ap.parse_args(argv)
    cluster = Cluster.default()
    if a.action == "start":
        cluster.start(a.taskmanagers)
        print(f"flink cluster running at {cluster.rest_url} (conf {cluster.conf_dir})")
    elif a.action == "stop":
        cluster.stop()
        print("flink cluster stopped")
    elif a.action == "env":
        print(f"export FLINK_CONF_DIR={cluster.conf_dir}\nexport PATH={FLINK_HOME / 'bin'}:$PATH")
    else:
        o = cluster.overview()
        print(f"flink cluster at {cluster.rest_url}: {json.dumps(o) if o else 'not running'}")
        sys.exit(0 if o else 1)


if __name__ == "__main__":
    main()
