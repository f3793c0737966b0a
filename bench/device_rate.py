"""Device-rate benchmark: the full screening job fed by bedside monitors at 1 Hz, in one run.

1. **Java spine**: the Java-only NEWS2 job (bench.java_baseline) over pre-loaded charted
   observations, sustained records/s as bench/spine.py measures it.
2. **Screening throughput**: `--beds` simulated monitors (jobs/feeds/device_sim.py, real set-A
   trajectories) for `--seconds`, with their labs and discharges, pre-loaded; the full screening
   job (decode, charting, state, six rules, model scoring on, lifecycle) runs bounded. Sustained
   rate = device-rate records / the time between 10 % and 90 % of the charted minutes reaching
   `vitals.charted` (start-up and tail left out).
3. **Latency and memory at 15,000 and 6,000 beds**: the job unbounded while the simulator
   produces in real time; event→alert latency = wall time an alert (raise/escalate) is read -
   the wall time the job could first know it: its event time + the watermark delay (a charted
   minute is known once a record a watermark delay past its end arrives). The job and the
   simulator run as an operator runs them, each its own process (`python -m jobs.sepsis_screen`,
   `python -m jobs.feeds.device_sim --realtime`). RSS of every process of the local stack (the
   job's client, its Flink JVM and Python workers, the simulator, Kafka, Redis) is sampled; this
   measuring process is reported beside the stack, not in it.
4. **Soak**: `--soak-s` at `--soak-beds` (30,000 = 2× the target): consumer lag of the job's
   group (end offsets - committed offsets) and RSS sampled; dead letters compared with the
   records the simulator corrupted on purpose.
5. **Census**: the bed census job over generated ADT traffic (bench/census.py's throughput).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil
from confluent_kafka import Consumer, TopicPartition

from bench import census as census_bench
from bench import java_baseline, spine
from bench.sampling import decile_rates, first_reaching, sampled_run, sustained_rate
from feature_store import repo
from jobs import bed_census, sepsis_screen
from jobs.feeds import adt_generator, device_sim, replay
from jobs.runtime import kafka_io
from jobs.runtime.flink_env import child_environment, table_env
from jobs.runtime.watch import rest_json
from schemas import codec, topics
from schemas.settings import Settings
from training.registry import bootstrap
from udfs.registry import Registry

OUT = Path(__file__).resolve().parent / "results"
GIB = 1024**3
# The job's outputs in pipeline order: charting, the state window, scoring, the lifecycle.
STAGE_TOPICS = (topics.VITALS_CHARTED, topics.SEPSIS_SCREEN, topics.SEPSIS_SCORE, topics.ALERT_V2)
# The JVM options this run was given, before this process's own JVM filled in its default.
GIVEN_JVM_ARGS = os.environ.get("JVM_ARGS")


def stack_processes(job: int | None, simulator: int | None) -> dict[str, list[psutil.Process]]:
    """The local stack's processes by part: the job's process (its Python client) and what it
    started (Flink's JVM, the Python workers), the simulator's process, Kafka and Redis; and,
    outside the stack, this measuring process."""
    parts: dict[str, list[psutil.Process]] = {
        "job_client_python": [],
        "flink_jvm": [],
        "python_workers": [],
        "simulator": [],
        "kafka": [],
        "redis": [],
    }
    with contextlib.suppress(psutil.Error):
        if job is not None:
            client = psutil.Process(job)
            parts["job_client_python"].append(client)
            for p in client.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    parts["flink_jvm" if p.name() == "java" else "python_workers"].append(p)
        if simulator is not None:
            parts["simulator"].append(psutil.Process(simulator))
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "kafka.Kafka" in cmd:
            parts["kafka"].append(p)
        elif (p.info["name"] or "").startswith("redis-server"):
            parts["redis"].append(p)
    return parts


def kafka_heap() -> str | None:
    """The local broker's -Xmx (deploy/local/services.sh starts it)."""
    for p in psutil.process_iter(["cmdline"]):
        cmd = p.info["cmdline"] or []
        if "kafka.Kafka" in cmd:
            return next((a for a in cmd if a.startswith("-Xmx")), None)
    return None


def jit_seconds(jvm: psutil.Process) -> float:
    """CPU seconds so far of a JVM's JIT compiler threads (HotSpot names them `C1 CompilerThre…`
    and `C2 CompilerThre…`), part of its own: the share of a cold start that compiles code."""
    seconds = 0.0
    with contextlib.suppress(psutil.Error):
        for t in jvm.threads():
            with contextlib.suppress(OSError):
                name = Path(f"/proc/{jvm.pid}/task/{t.id}/comm").read_text()
                if "CompilerThre" in name:
                    seconds += t.user_time + t.system_time
    return seconds


def usage(
    job: int | None = None, simulator: int | None = None
) -> tuple[dict[str, float], dict[str, float]]:
    """RSS (GiB) by part of the stack, their sum (`stack`) and this measuring process's own;
    and each part's CPU seconds so far (user + system), with the whole machine's and, within
    Flink's JVM, its JIT compiler's (`flink_jvm_jit_compiler`)."""
    rss, cpu = {}, {}
    parts = stack_processes(job, simulator)
    for part, procs in parts.items():
        total, seconds = 0, 0.0
        for p in procs:
            with contextlib.suppress(psutil.Error):  # a worker may have just exited
                total += p.memory_info().rss
                t = p.cpu_times()
                seconds += t.user + t.system
        rss[part] = total / GIB
        cpu[part] = seconds
    rss["stack"] = sum(rss.values())
    cpu["flink_jvm_jit_compiler"] = sum(jit_seconds(p) for p in parts["flink_jvm"])
    me = psutil.Process()
    rss["bench_harness_outside_stack"] = me.memory_info().rss / GIB
    t = me.cpu_times()
    cpu["bench_harness_outside_stack"] = t.user + t.system
    machine = psutil.cpu_times()
    # The whole machine: every process's CPU, and the time its virtual CPUs waited for the
    # host (steal: a noisy neighbour, not this stack).
    cpu["machine_busy"] = (
        machine.user + machine.nice + machine.system + machine.irq + machine.softirq
    )
    cpu["machine_steal"] = machine.steal
    return rss, cpu


class Sampler:
    """Samples RSS, the cores each part used since the last sample (`cpu_cores`: the machine
    has os.cpu_count()) and, when asked, the job's consumer lag, every `every_s` on a thread."""

    def __init__(
        self,
        every_s: float,
        lag: Callable[[], int] | None = None,
        processes: Callable[[], tuple[int | None, int | None]] = lambda: (None, None),
        tasks: Callable[[], dict[str, dict[str, float]]] | None = None,
    ) -> None:
        self.samples: list[dict[str, Any]] = []
        self._stop = threading.Event()
        t0 = time.monotonic()

        def loop() -> None:
            before: tuple[float, dict[str, float]] | None = None
            while not self._stop.wait(every_s):
                now = time.monotonic()
                rss, cpu = usage(*processes())
                s: dict[str, Any] = {"t_s": now - t0, **rss}
                if before is not None:
                    dt = now - before[0]
                    s["cpu_cores"] = {
                        k: max(0.0, (v - before[1].get(k, 0.0)) / dt) for k, v in cpu.items()
                    }
                before = (now, cpu)
                if lag is not None:
                    s["lag_records"] = float(lag())
                if tasks is not None:
                    with contextlib.suppress(OSError, KeyError, ValueError):
                        s["tasks"] = tasks()
                self.samples.append(s)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def close(self) -> list[dict[str, Any]]:
        self._stop.set()
        self._thread.join()
        return self.samples


def group_lag(settings: Settings, group: str, topic_names: list[str]) -> Callable[[], int]:
    """End offsets - the group's committed offsets over the topics (the Flink Kafka source
    commits on checkpoints)."""
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": group})
    parts = [
        TopicPartition(t, p)
        for t in topic_names
        for p in c.list_topics(t, timeout=10).topics[t].partitions
    ]

    def lag() -> int:
        committed = c.committed(parts, timeout=10)
        total = 0
        for tp in committed:
            end = c.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=5)[1]
            total += end - max(tp.offset, 0)
        return total

    return lag


def scoring_settings(settings: Settings, tmp: Path) -> Settings:
    """Scoring on, with the bundled champion and challenger in a registry of the run's own and
    a Feast repository of its own (online store: settings.feast_online_store, SQLite by
    default)."""
    reg = tmp / "registry"
    bootstrap(Registry(reg), settings.model_name)
    repo.open_store(tmp / "feast", settings.feast_online_store)
    return dataclasses.replace(settings, scoring=True, model_registry=reg, feast_dir=tmp / "feast")


def java_spine(settings: Settings, patients: int) -> dict[str, Any]:
    run = f"bench-dr-spine-{uuid.uuid4().hex[:6]}."
    df, source = replay.load_physionet(None, settings)
    plan = replay.ReplayPlan(patients)
    obs = replay.observations(replay.select_patients(df, plan), plan, settings.phi_key, source)
    observation = topics.VITALS_OBSERVATION.schema
    obs = [o for o in obs if codec.validate(observation, o) is None]  # the baseline has no DLQ
    names = [topics.VITALS_OBSERVATION.name, topics.VITALS_NEWS2.name, topics.ALERT_V1.name]
    kafka_io.ensure_topics(settings, names, prefix=run)
    n = replay.produce(settings, iter(obs), topic=run + names[0], progress=False)

    def submit() -> Any:
        t_env = table_env(settings)
        java_baseline.create_tables(t_env, settings, in_prefix=run, out_prefix=run, bounded=True)
        return java_baseline.build(t_env).execute().get_job_client()

    tp = spine.throughput(settings, "java-only Flink SQL", submit, run, n)
    kafka_io.delete_topics(settings, names, prefix=run)
    return dataclasses.asdict(tp)


def screen_throughput(settings: Settings, beds: int, seconds: int) -> dict[str, Any]:
    prefix = f"bench-dr-tp-{uuid.uuid4().hex[:6]}."
    names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, names, prefix=prefix)
    plan = device_sim.DevicePlan(beds=beds, seconds=seconds, corrupt_rate=1e-4)
    produced = device_sim.produce(settings, plan, prefix=prefix, progress=False)
    charted_topic = prefix + topics.VITALS_CHARTED.name
    samples, drained = sampled_run(
        settings,
        charted_topic,
        lambda: sepsis_screen.JOB.run(settings, prefix=prefix, bounded=True),
    )
    charted = kafka_io.count_records(settings, charted_topic)
    device = produced["device_records"]
    out = {
        "beds": beds,
        "simulated_s": seconds,
        "produced": produced,
        "charted_minutes": charted,
        "screened_states": kafka_io.count_records(settings, prefix + topics.SEPSIS_SCREEN.name),
        "score_rows": kafka_io.count_records(settings, prefix + topics.SEPSIS_SCORE.name),
        "alert_events": kafka_io.count_records(settings, prefix + topics.ALERT_V2.name),
        "dead_lettered": kafka_io.count_records(settings, prefix + topics.DEAD_LETTER.name),
        "records_per_s": round(sustained_rate(samples, charted) * device / charted),
        "decile_records_per_s": [
            round(r * device / charted) for r in decile_rates(samples, charted)
        ],
        "first_output_s": round(first_reaching(samples, 1), 1),
        "drained_s": round(drained, 1),
        "records_per_s_end_to_end": round((device + produced["labs"] + produced["adt"]) / drained),
    }
    kafka_io.delete_topics(settings, names, prefix=prefix)
    return out


TASK_METRICS = {
    "busyTimeMsPerSecond": "busy_ms_per_s",
    "backPressuredTimeMsPerSecond": "backpressured_ms_per_s",
    "idleTimeMsPerSecond": "idle_ms_per_s",
}


def task_name(name: str, width: int = 160) -> str:
    """A task's name as Flink's web UI gives it (its chained operators joined by ` -> `),
    shortened: the SQL text inside an operator's name left out."""
    parts = [re.sub(r"\(.*", "", op).strip() for op in name.split(" -> ")]
    short = " -> ".join(dict.fromkeys(p for p in parts if p))
    return short if len(short) <= width else short[: width - 1] + "…"


class JobProcess:
    """The screening job as an operator starts it, `python -m jobs.sepsis_screen`, in a process
    group of its own (its JVM and Python workers with it); followed through its web UI."""

    def __init__(self, settings: Settings, prefix: str, log: Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "jobs.sepsis_screen", "--topic-prefix", prefix],
                env=child_environment(settings),
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.job_url = ""
        self._tasks: dict[str, str] = {}

    def tasks(self) -> dict[str, str]:
        """Task id → shortened name (`task_name`); the job graph does not change while it runs,
        so it is read once."""
        if not self._tasks:
            vertices = rest_json(self.job_url, timeout_s=10)["vertices"]
            self._tasks = {v["id"]: task_name(v["name"]) for v in vertices}
        return self._tasks

    def wait_until_running(self, settle_s: float = 20.0, timeout_s: float = 180.0) -> None:
        """Until every task of the job runs, and `settle_s` more for its Python workers."""
        deadline = time.monotonic() + timeout_s
        while not self.job_url or self.status(tasks=True) != "RUNNING":
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the job did not start: {self.log.read_text()[-3000:]}")
            found = re.search(r"submitted as job (\w+) \(web UI (\S+)\)", self.log.read_text())
            if found:
                self.job_url = f"{found.group(2)}/jobs/{found.group(1)}"
            time.sleep(0.5)
        time.sleep(settle_s)

    def task_load(self) -> dict[str, dict[str, float]]:
        """Per task (operator chain) of the job, as Flink measures it: ms per second busy,
        back-pressured (waiting on the next task) and idle; the largest over its subtasks."""
        out = {}
        for task_id, name in self.tasks().items():
            got = rest_json(
                f"{self.job_url}/vertices/{task_id}/subtasks/metrics?get="
                + ",".join(TASK_METRICS)
                + "&agg=max",
                timeout_s=10,
            )
            # a metric not measured yet comes back as NaN (not equal to itself)
            values = {m["id"]: m["max"] for m in got if m.get("max") == m.get("max")}
            out[name] = {
                TASK_METRICS[k]: float(round(float(values[k]))) for k in TASK_METRICS if k in values
            }
        return out

    def checkpoints(self) -> list[dict[str, Any]]:
        """The job's latest checkpoints (Flink keeps ten): when each was triggered (epoch ms),
        how long it took end to end and how much it wrote; for the last completed one, the
        state each task holds (bytes, by task name)."""
        history = rest_json(f"{self.job_url}/checkpoints", timeout_s=10).get("history", [])
        out = [
            {
                "trigger_ms": c["trigger_timestamp"],
                "duration_ms": c["end_to_end_duration"],
                "size_bytes": c.get("state_size", c.get("checkpointed_size")),
                "status": c["status"],
            }
            for c in sorted(history, key=lambda c: c["trigger_timestamp"])
        ]
        done = [c for c in history if c["status"] == "COMPLETED"]
        if done:
            last = max(done, key=lambda c: c["trigger_timestamp"])
            names = self.tasks()
            tasks = rest_json(f"{self.job_url}/checkpoints/details/{last['id']}", timeout_s=10).get(
                "tasks", {}
            )
            by_task = {
                names.get(k, k): t.get("state_size", t.get("checkpointed_size"))
                for k, t in tasks.items()
                if t.get("state_size", t.get("checkpointed_size"))
            }
            for c in out:
                if c["trigger_ms"] == last["trigger_timestamp"]:
                    c["state_bytes_by_task"] = by_task
        return out

    def status(self, tasks: bool = False) -> str:
        """The job's state (with `tasks`, RUNNING only once all its tasks run)."""
        job = rest_json(self.job_url, timeout_s=10)
        if tasks and any(v["status"] != "RUNNING" for v in job["vertices"]):
            return str(job["vertices"][0]["status"])
        return str(job["state"])

    def stop(self, timeout_s: float = 120.0) -> bool:
        """SIGTERM to its group, as a supervisor stops it: the job is cancelled, its open
        transactions aborted. False when it did not end cleanly within `timeout_s`."""
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            return self.proc.wait(timeout=timeout_s) == 0
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
            return False


def simulate(
    settings: Settings, beds: int, seconds: int, prefix: str, log: Path
) -> subprocess.Popen[bytes]:
    """The monitor simulator in real time, as its own process (`jobs.feeds.device_sim`)."""
    with log.open("wb") as err:
        return subprocess.Popen(
            [
                sys.executable, "-m", "jobs.feeds.device_sim", "--beds", str(beds),
                "--seconds", str(seconds), "--realtime", "--corrupt-rate", "1e-5",
                "--topic-prefix", prefix, "--json",
            ],
            env=child_environment(settings),
            stdout=subprocess.PIPE,
            stderr=err,
        )  # fmt: skip


def realtime(
    settings: Settings,
    beds: int,
    seconds: int,
    *,
    lag: bool = False,
    warmup_s: int = 60,
    steady_after_s: int = 180,
) -> dict[str, Any]:
    """The job unbounded in its own process while `beds` monitors produce in real time from
    theirs for `seconds`; latencies of the alerts after the first `warmup_s` of event time (the
    first, partial minute), and apart: those of the cold start (up to `steady_after_s`: every
    bed's first minutes and first alerts at once, while the JVM compiles the job's code) and
    those after it (`steady`). The stack's RSS is the job's, the simulator's, Kafka's and
    Redis's processes; this measuring one (alert watcher, lag sampler) is reported beside it."""
    prefix = f"bench-dr-rt-{beds}-{uuid.uuid4().hex[:6]}."
    names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, names, prefix=prefix)
    delay_ms = settings.max_out_of_orderness_s * 1000
    seen: list[tuple[int, float]] = []  # (alert event time ms, latency ms)
    # The same latency for every record the job writes, per output (the profile of where the
    # time goes: charting, the state window, scoring, the lifecycle).
    stages: dict[str, list[tuple[int, float]]] = {t.name: [] for t in STAGE_TOPICS}
    schemas = {prefix + t.name: (t.name, t.schema) for t in STAGE_TOPICS}

    def on_value(topic: str, value: bytes, at: float) -> None:
        name, schema = schemas[topic]
        rec = codec.decode(schema, value)
        if not isinstance(rec, dict):
            return
        event_ms = codec.epoch_ms(rec["event_time"])
        latency_ms = at * 1000 - (event_ms + 1 + delay_ms)
        stages[name].append((event_ms, latency_ms))
        if name == topics.ALERT_V2.name and rec["action"] in ("raise", "escalate"):
            seen.append((event_ms, latency_ms))

    logs = settings.flink_log_dir / prefix.rstrip(".")
    logs.mkdir(parents=True, exist_ok=True)
    watcher = kafka_io.TopicWatcher(settings, list(schemas), on_value)
    job = JobProcess(settings, prefix, logs / "job.log")
    sim: subprocess.Popen[bytes] | None = None
    try:
        job.wait_until_running()
        group = prefix + sepsis_screen.JOB.name
        inputs = [prefix + t for t in sepsis_screen.JOB.input_topics]
        sampler = Sampler(
            5.0,
            group_lag(settings, group, inputs) if lag else None,
            lambda: (job.proc.pid, sim.pid if sim is not None else None),
            job.task_load,
        )
        sim = simulate(settings, beds, seconds, prefix, logs / "simulator.log")
        printed, _ = sim.communicate()
        if sim.returncode != 0:
            raise RuntimeError((logs / "simulator.log").read_text()[-3000:])
        produced = json.loads(printed.decode().splitlines()[-1])
        time.sleep(max(10.0, 2 * settings.max_out_of_orderness_s))
        samples = sampler.close()
        status = job.status()  # RESTARTING after a failure, e.g. memory
        checkpoints = job.checkpoints()
    finally:
        watcher.close()
        if sim is not None and sim.poll() is None:  # the run failed before the simulator ended
            sim.kill()
            sim.wait()
        cancelled = job.stop()
    dead = kafka_io.read_records(
        settings, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    kafka_io.delete_topics(settings, names, prefix=prefix)
    t_produce_ms = produced.pop("start_epoch_ms")
    steady = [s for s in samples if s["t_s"] >= 30] or samples
    timed = _percentiles([ms for at, ms in seen if at >= t_produce_ms + warmup_s * 1000])
    steady_from_ms = t_produce_ms + steady_after_s * 1000
    cold = [ms for at, ms in seen if t_produce_ms + warmup_s * 1000 <= at < steady_from_ms]
    out: dict[str, Any] = {
        "beds": beds,
        "seconds": seconds,
        "produced": produced,
        "job_status_at_end": status,
        "cancelled_cleanly": cancelled,
        "alerts": len(seen),
        "alerts_timed": timed["records"],
        "warmup_s": warmup_s,
        "p50_ms": timed.get("p50_ms"),
        "p99_ms": timed.get("p99_ms"),
        "max_ms": timed.get("max_ms"),
        "cold_start": {"from_s": warmup_s, "to_s": steady_after_s, **_percentiles(cold)},
        "steady": {
            "from_s": steady_after_s,
            **_percentiles([ms for at, ms in seen if at >= steady_from_ms]),
        },
        "latency_by_minute": _by_minute(seen, t_produce_ms),
        "alert_latency_by_5s_of_arrival": _by_arrival(seen, t_produce_ms, delay_ms),
        "checkpoints": [
            {
                "trigger_s": round((c["trigger_ms"] - t_produce_ms) / 1000, 1),
                **{k: v for k, v in c.items() if k != "trigger_ms"},
            }
            for c in checkpoints
        ],
        "latency_by_output": {
            name: _percentiles([ms for at, ms in rows if at >= t_produce_ms + warmup_s * 1000])
            for name, rows in stages.items()
        },
        "rss_gib_max": {
            k: round(max(s[k] for s in steady), 3)
            for k in steady[0]
            if k not in ("t_s", "cpu_cores", "tasks")
        },
        "cpu_cores_mean_while_producing": _mean_cores(steady),
        "task_load_mean_while_producing": _mean_task_load(steady),
        "dead_letter_reasons": {
            code: sum(d["reason_code"] == code for d in dead)
            for code in sorted({d["reason_code"] for d in dead})
        },
        "samples": [_rounded(s) for s in samples],
    }
    if lag:
        lags = [s["lag_records"] for s in samples]
        out["lag_records_max"] = round(max(lags))
        out["lag_records_last_minute_max"] = round(
            max(s["lag_records"] for s in samples if s["t_s"] >= samples[-1]["t_s"] - 60)
        )
        third = max(1, len(samples) // 3)
        out["stack_rss_gib_first_third_max"] = round(max(s["stack"] for s in samples[:third]), 3)
        out["stack_rss_gib_last_third_max"] = round(max(s["stack"] for s in samples[-third:]), 3)
    return out


def _rounded(sample: dict[str, Any]) -> dict[str, Any]:
    return {k: _rounded(v) if isinstance(v, dict) else round(v, 3) for k, v in sample.items()}


def _producing(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The samples taken while the simulator ran (it used CPU since the sample before)."""
    return [s for s in samples if s.get("cpu_cores", {}).get("simulator")]


def _mean_cores(samples: list[dict[str, Any]]) -> dict[str, float]:
    """Mean cores per part of the stack over the samples taken while the simulator ran."""
    producing = [s["cpu_cores"] for s in _producing(samples)]
    if not producing:
        return {}
    return {k: round(statistics.fmean(c[k] for c in producing), 2) for k in producing[0]}


def _mean_task_load(samples: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean of each task's Flink load metrics over the samples taken while the simulator ran."""
    producing = [s["tasks"] for s in _producing(samples) if "tasks" in s]
    names = dict.fromkeys(n for t in producing for n in t)
    return {
        n: {
            k: round(statistics.fmean(t[n][k] for t in producing if k in t.get(n, {})))
            for k in TASK_METRICS.values()
            if any(k in t.get(n, {}) for t in producing)
        }
        for n in names
    }


def _percentiles(latencies: list[float]) -> dict[str, Any]:
    lat = sorted(latencies)
    if not lat:
        return {"records": 0}
    return {
        "records": len(lat),
        "p50_ms": round(statistics.median(lat)),
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))]),
        "max_ms": round(lat[-1]),
    }


def _by_arrival(
    seen: list[tuple[int, float]], t0_ms: float, delay_ms: int, width_s: int = 5
) -> list[dict[str, Any]]:
    """Per `width_s` of wall time since production began: alerts read and their largest
    latency (whether the slow ones come at a rhythm, e.g. the checkpoints')."""
    buckets: dict[int, list[float]] = {}
    for at, ms in seen:
        arrived_ms = at + 1 + delay_ms + ms
        buckets.setdefault(int((arrived_ms - t0_ms) // (width_s * 1000)), []).append(ms)
    return [
        {"t_s": b * width_s, "alerts": len(v), "max_ms": round(max(v))}
        for b, v in sorted(buckets.items())
    ]


def _by_minute(seen: list[tuple[int, float]], t0_ms: float) -> list[dict[str, Any]]:
    """Per minute of event time since production began: alerts, median, 99th percentile and
    largest latency (whether the latency settles or the job falls behind)."""
    minutes: dict[int, list[float]] = {}
    for at, ms in seen:
        minutes.setdefault(int((at - t0_ms) // 60_000), []).append(ms)
    return [
        {
            "minute": m,
            "alerts": len(lat),
            **{k: ms for k, ms in _percentiles(lat).items() if k != "records"},
        }
        for m, lat in sorted(minutes.items())
    ]


def census_throughput(settings: Settings, facilities: int, days: float) -> dict[str, Any]:
    cap = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-capacity-{uuid.uuid4().hex[:6]}.json"
    cap.write_text(json.dumps(adt_generator.capacity(facilities).to_dict()))
    s = dataclasses.replace(settings, job_name="bench-census", capacity_file=cap)
    evs = adt_generator.events(adt_generator.Plan(facilities=facilities, days=days))
    prefix = f"bench-dr-census-{uuid.uuid4().hex[:6]}."
    names = bed_census.JOB.input_topics + bed_census.JOB.output_topics
    kafka_io.ensure_topics(s, names, prefix=prefix)
    adt = topics.ADT_EVENT.name
    n = replay.produce_stream(s, ((adt, e) for e in evs), prefix=prefix, progress=False)
    out = census_bench._sampled_run(s, prefix, n)
    kafka_io.delete_topics(s, names, prefix=prefix)
    cap.unlink()
    return {"facilities": facilities, "days": days, **out}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--beds", type=int, default=1000, help="throughput phase")
    ap.add_argument("--seconds", type=int, default=1800, help="simulated seconds, throughput")
    ap.add_argument(
        "--spine-patients",
        type=int,
        default=20_000,
        help="set-A patients for the Java spine (4,000: 154,033 records, about 10 s of "
        "processing, within the JVM's warm-up; about 20,000: the whole set)",
    )
    ap.add_argument(
        "--realtime-s",
        type=int,
        default=420,
        help="seconds of real-time production at 15,000 and 6,000 beds: the cold start's three "
        "minutes and four of steady state",
    )
    ap.add_argument("--soak-beds", type=int, default=30000)
    ap.add_argument("--soak-s", type=int, default=600)
    ap.add_argument("--census-days", type=float, default=365.0, help="as bench/census.py")
    ap.add_argument(
        "--idle-timeout-s",
        type=int,
        default=5,
        help="source idle timeout of the device feed (of all with --sparse-idle-timeout-ms -1)",
    )
    ap.add_argument(
        "--sparse-idle-timeout-ms",
        type=int,
        default=100,
        help="idle timeout of the clinical-rate feeds (labs, ADT, charted vitals): after each of "
        "their records a partition holds event time back this long (-1: --idle-timeout-s)",
    )
    ap.add_argument(
        "--watermark-interval-ms",
        type=int,
        default=50,
        help="how often the sources emit a watermark: a charted minute waits for the next one",
    )
    ap.add_argument(
        "--python-bundle-time-ms",
        type=int,
        default=20,
        help="longest wait of a Python bundle (the scoring UDF): at device rate it sees a few "
        "hundred states a second, so bundles end by time, not size",
    )
    ap.add_argument(
        "--network-buffer-timeout-ms",
        type=int,
        default=Settings.network_buffer_timeout_ms,
        help="longest a record waits in a network buffer that is not full",
    )
    ap.add_argument("--skip", nargs="*", default=[], help="phases to leave out")
    ap.add_argument("--out", type=Path, default=OUT / "device_rate.json")
    ap.add_argument(
        "--merge",
        action="store_true",
        help="keep the phases of an earlier run in --out that this run skips",
    )
    a = ap.parse_args(argv)
    base = Settings.from_env(
        delivery_guarantee="at-least-once",
        phi_key=b"wardflow-bench",
        job_name="bench-device-rate",
        device_numerics=True,
        max_out_of_orderness_s=2,  # a device gateway delivers within a second or two
        source_idle_timeout_s=a.idle_timeout_s,
        sparse_idle_timeout_ms=a.sparse_idle_timeout_ms,
        python_bundle_time_ms=a.python_bundle_time_ms,
        network_buffer_timeout_ms=a.network_buffer_timeout_ms,
        watermark_interval_ms=a.watermark_interval_ms,
    )
    kafka_io.wait_for_broker(base)
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-device-rate-{uuid.uuid4().hex[:6]}"
    settings = scoring_settings(base, tmp)
    earlier = json.loads(a.out.read_text()) if a.merge and a.out.exists() else {}
    result: dict[str, Any] = {
        **earlier,
        "machine": {
            "cpus": os.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "settings": {
            "parallelism": settings.parallelism,
            "state_backend": settings.state_backend,
            "watermark_delay_s": settings.max_out_of_orderness_s,
            "source_idle_timeout_s": settings.source_idle_timeout_s,
            "sparse_idle_timeout_ms": settings.sparse_idle_timeout_ms,
            "python_bundle_time_ms": settings.python_bundle_time_ms,
            "watermark_interval_ms": settings.watermark_interval_ms,
            "network_buffer_timeout_ms": settings.network_buffer_timeout_ms,
            "local_jvm_heap": GIVEN_JVM_ARGS or f"-Xmx{settings.local_jvm_heap_mb}m",
            "kafka_jvm_heap": kafka_heap(),
            "delivery_guarantee": settings.delivery_guarantee,
            "checkpoint_interval_s": settings.checkpoint_interval_s,
            "scoring": settings.scoring,
        },
    }

    def phase(name: str, fn: Callable[[], Any]) -> Any:
        if name in a.skip:
            return None
        t0 = time.monotonic()
        result[name] = fn()
        result[name + "_wall_s"] = round(time.monotonic() - t0, 1)
        print(name, json.dumps(result[name], default=str)[:1500], flush=True)
        a.out.with_suffix(".partial.json").write_text(json.dumps(result, indent=1, default=str))
        return result[name]

    rocksdb = dataclasses.replace(settings, state_backend="rocksdb", job_name="bench-dr-rocksdb")
    phase("java_spine", lambda: java_spine(base, a.spine_patients))
    phase("screen", lambda: screen_throughput(settings, a.beds, a.seconds))
    phase("screen_rocksdb", lambda: screen_throughput(rocksdb, a.beds, a.seconds))
    phase("realtime_15k", lambda: realtime(settings, 15000, a.realtime_s))
    phase("realtime_6k", lambda: realtime(settings, 6000, a.realtime_s))
    phase("soak", lambda: realtime(settings, a.soak_beds, a.soak_s, lag=True))
    phase("census", lambda: census_throughput(base, 12, a.census_days))
    spine_tp, screen, at15, at6, soak, census = (
        result.get(k)
        for k in ("java_spine", "screen", "realtime_15k", "realtime_6k", "soak", "census")
    )
    summary: dict[str, float | None] = {
        "screen_records_per_s": screen and screen["records_per_s"],
        "screen_records_per_s_rocksdb": (result.get("screen_rocksdb") or {}).get("records_per_s"),
        "java_spine_records_per_s": spine_tp and round(spine_tp["sustained_events_per_s"]),
        "p50_ms_at_15k": at15 and at15["p50_ms"],
        "p99_ms_at_15k": at15 and at15["p99_ms"],
        "p50_ms_at_15k_steady": at15 and at15["steady"].get("p50_ms"),
        "p99_ms_at_15k_steady": at15 and at15["steady"].get("p99_ms"),
        "p99_ms_at_15k_cold_start": at15 and at15["cold_start"].get("p99_ms"),
        "stack_rss_gib_6k_beds": at6 and at6["rss_gib_max"]["stack"],
        "stack_rss_gib_15k_beds": at15 and at15["rss_gib_max"]["stack"],
        "soak_max_lag_records": soak and soak["lag_records_max"],
        "census_events_per_s": census and census["sustained_events_per_s"],
    }
    if screen and spine_tp:
        summary["ratio"] = round(screen["records_per_s"] / spine_tp["sustained_events_per_s"], 3)
    result = {**summary, **{k: v for k, v in result.items() if k not in summary}}
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1, default=str) + "\n")
    a.out.with_suffix(".partial.json").unlink(missing_ok=True)
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
