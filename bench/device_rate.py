"""Device-rate benchmark: the full screening job fed by bedside monitors at 1 Hz, in one run.

1. **Java spine**: the Java-only NEWS2 job (bench.java_baseline) over pre-loaded charted
   observations, sustained records/s as bench/spine.py measures it.
2. **Screening throughput**: `--beds` simulated monitors (jobs/feeds/device_sim.py, real set-A
   trajectories) for `--seconds`, with their labs and discharges, pre-loaded; the full screening
   job (decode, charting, state, five rules, model scoring on, lifecycle) runs bounded. Sustained
   rate = device-rate records / the time between 10 % and 90 % of the charted minutes reaching
   `vitals.charted` (start-up and tail left out).
3. **Latency and memory at 15,000 and 6,000 beds**: the job unbounded while the simulator
   produces in real time; event→alert latency = wall time an alert (raise/escalate) is read -
   the wall time the job could first know it: its event time + the watermark delay (a charted
   minute is known once a record a watermark delay past its end arrives). RSS of every process
   of the local stack (Flink JVM, Python workers, Kafka, Redis, this producer), sampled.
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
import statistics
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
from bench.sampling import first_reaching, sampled_run, sustained_rate
from feature_store import repo
from jobs import bed_census, sepsis_screen
from jobs.feeds import adt_generator, device_sim, replay
from jobs.runtime import kafka_io
from jobs.runtime.flink_env import table_env
from schemas import codec, topics
from schemas.settings import Settings
from training.registry import bootstrap
from udfs.registry import Registry

OUT = Path(__file__).resolve().parent / "results"
GIB = 1024**3


def stack_processes() -> dict[str, list[psutil.Process]]:
    """The local stack's processes by part: this process and its children (Flink's JVM and
    its Python workers), the Kafka broker and Redis."""
    me = psutil.Process()
    parts: dict[str, list[psutil.Process]] = {
        "producer_python": [me],
        "flink_jvm": [],
        "python_workers": [],
        "kafka": [],
        "redis": [],
    }
    for p in me.children(recursive=True):
        try:
            name = p.name()
        except psutil.Error:
            continue
        parts["flink_jvm" if name == "java" else "python_workers"].append(p)
    for p in psutil.process_iter(["name", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if "kafka.Kafka" in cmd:
            parts["kafka"].append(p)
        elif (p.info["name"] or "").startswith("redis-server"):
            parts["redis"].append(p)
    return parts


def rss_gib() -> dict[str, float]:
    out = {}
    for part, procs in stack_processes().items():
        total = 0
        for p in procs:
            with contextlib.suppress(psutil.Error):  # a worker may have just exited
                total += p.memory_info().rss
        out[part] = total / GIB
    out["stack"] = sum(out.values())
    return out


class Sampler:
    """Samples RSS (and the job's consumer lag, when asked) every `every_s` on a thread."""

    def __init__(self, every_s: float, lag: Callable[[], int] | None = None) -> None:
        self.samples: list[dict[str, float]] = []
        self._stop = threading.Event()
        t0 = time.monotonic()

        def loop() -> None:
            while not self._stop.wait(every_s):
                s = {"t_s": time.monotonic() - t0, **rss_gib()}
                if lag is not None:
                    s["lag_records"] = float(lag())
                self.samples.append(s)

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def close(self) -> list[dict[str, float]]:
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
        "first_output_s": round(first_reaching(samples, 1), 1),
        "drained_s": round(drained, 1),
        "records_per_s_end_to_end": round((device + produced["labs"] + produced["adt"]) / drained),
    }
    kafka_io.delete_topics(settings, names, prefix=prefix)
    return out


def wait_until_running(client: Any, settle_s: float = 20.0, timeout_s: float = 180.0) -> None:
    """Until the job's tasks run, and `settle_s` more for its Python workers to start."""
    deadline = time.monotonic() + timeout_s
    while client.get_job_status().result().name != "RUNNING":
        if time.monotonic() > deadline:
            raise TimeoutError("the job did not start")
        time.sleep(0.5)
    time.sleep(settle_s)


def cancel(client: Any, timeout_s: float = 120.0) -> bool:
    """Cancel the job; False when it did not end within `timeout_s` (a job stuck in garbage
    collection), so that the benchmark goes on and says so."""
    done = client.cancel()
    deadline = time.monotonic() + timeout_s
    while not done.done():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.5)
    return True


def realtime(
    settings: Settings, beds: int, seconds: int, *, lag: bool = False, warmup_s: int = 60
) -> dict[str, Any]:
    """The job unbounded while `beds` monitors produce in real time for `seconds`; latencies of
    the alerts after the first `warmup_s` of event time (the first, partial minute)."""
    prefix = f"bench-dr-rt-{beds}-{uuid.uuid4().hex[:6]}."
    names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, names, prefix=prefix)
    delay_ms = settings.max_out_of_orderness_s * 1000
    seen: list[tuple[int, float]] = []  # (alert event time ms, latency ms)
    alert = topics.ALERT_V2.schema

    def on_value(_: str, value: bytes, at: float) -> None:
        rec = codec.decode(alert, value)
        if isinstance(rec, dict) and rec["action"] in ("raise", "escalate"):
            event_ms = codec.epoch_ms(rec["event_time"])
            seen.append((event_ms, at * 1000 - (event_ms + 1 + delay_ms)))

    watcher = kafka_io.TopicWatcher(settings, [prefix + topics.ALERT_V2.name], on_value)
    client = sepsis_screen.JOB.submit(settings, prefix=prefix)
    wait_until_running(client)
    group = prefix + sepsis_screen.JOB.name
    inputs = [prefix + t for t in sepsis_screen.JOB.input_topics]
    sampler = Sampler(5.0, group_lag(settings, group, inputs) if lag else None)
    plan = device_sim.DevicePlan(beds=beds, seconds=seconds, corrupt_rate=1e-5)
    t_produce_ms = time.time() * 1000
    produced = device_sim.produce(settings, plan, prefix=prefix, realtime=True, progress=False)
    time.sleep(max(10.0, 2 * settings.max_out_of_orderness_s))
    samples = sampler.close()
    watcher.close()
    status = client.get_job_status().result().name  # RESTARTING after a failure, e.g. memory
    cancelled = cancel(client)
    dead = kafka_io.read_records(
        settings, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name
    )
    kafka_io.delete_topics(settings, names, prefix=prefix)
    steady = [s for s in samples if s["t_s"] >= 30] or samples
    latencies = [ms for at, ms in seen if at >= t_produce_ms + warmup_s * 1000]
    lat = sorted(latencies)
    out: dict[str, Any] = {
        "beds": beds,
        "seconds": seconds,
        "produced": produced,
        "job_status_at_end": status,
        "cancelled_cleanly": cancelled,
        "alerts": len(seen),
        "alerts_timed": len(lat),
        "warmup_s": warmup_s,
        "p50_ms": round(statistics.median(lat)) if lat else None,
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))]) if lat else None,
        "max_ms": round(lat[-1]) if lat else None,
        "latency_by_minute": _by_minute(seen, t_produce_ms),
        "rss_gib_max": {k: round(max(s[k] for s in steady), 3) for k in steady[0] if k != "t_s"},
        "dead_letter_reasons": {
            code: sum(d["reason_code"] == code for d in dead)
            for code in sorted({d["reason_code"] for d in dead})
        },
        "samples": [{k: round(v, 3) for k, v in s.items()} for s in samples],
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


def _by_minute(seen: list[tuple[int, float]], t0_ms: float) -> list[dict[str, Any]]:
    """Per minute of event time since production began: alerts, median and largest latency
    (whether the latency settles or the job falls behind)."""
    minutes: dict[int, list[float]] = {}
    for at, ms in seen:
        minutes.setdefault(int((at - t0_ms) // 60_000), []).append(ms)
    return [
        {
            "minute": m,
            "alerts": len(v),
            "p50_ms": round(statistics.median(v)),
            "max_ms": round(max(v)),
        }
        for m, v in sorted(minutes.items())
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
    ap.add_argument("--spine-patients", type=int, default=4000)
    ap.add_argument("--realtime-s", type=int, default=180)
    ap.add_argument("--soak-beds", type=int, default=30000)
    ap.add_argument("--soak-s", type=int, default=600)
    ap.add_argument("--census-days", type=float, default=30.0)
    ap.add_argument(
        "--idle-timeout-s",
        type=int,
        default=5,
        help="source idle timeout: a sparse lab or ADT partition holds event time back this long",
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
            "delivery_guarantee": settings.delivery_guarantee,
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
