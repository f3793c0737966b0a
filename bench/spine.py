"""Spine benchmark: sustained events/s and event→alert latency of the PyFlink sepsis job, next to
a Java-only Flink SQL job (bench.java_baseline) reading the same topic, in one run.

Throughput: N observations are pre-loaded; each job runs bounded while the scored-readings
topic's end offsets are sampled; sustained rate = 80 % of N / (t(90 %) - t(10 %)), which leaves
out job start-up. Latency: each job runs unbounded while observations are produced at a fixed
rate; latency = wall time an alert is read from the alert topic - wall time its completing
observation was produced (p50/p99 over all alerts).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from pyflink.common.job_client import JobClient

from bench import java_baseline
from bench.sampling import decile_rates
from jobs import sepsis_news2
from jobs.feeds import replay
from jobs.runtime import kafka_io
from jobs.runtime.flink_env import table_env
from schemas import codec, topics
from schemas.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


@dataclass
class Throughput:
    job: str
    events: int
    sustained_events_per_s: float
    wall_s: float
    first_output_s: float
    alerts: int
    decile_events_per_s: list[float]  # the rate in each tenth of the output (warm-up shows)


@dataclass
class Latency:
    job: str
    rate_events_per_s: int
    alerts: int
    p50_ms: float
    p99_ms: float
    max_ms: float


def _offsets_total(c: Consumer, topic: str, parts: list[int]) -> int:
    return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in parts)


def throughput(
    settings: Settings, name: str, submit: Callable[[], JobClient], out_prefix: str, n: int
) -> Throughput:
    topic = out_prefix + topics.VITALS_NEWS2.name
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-sampler"})
    parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    client = submit()
    done = threading.Event()

    def _wait() -> None:
        try:
            client.get_job_execution_result().result()
        finally:
            done.set()

    threading.Thread(target=_wait, daemon=True).start()
    while not done.is_set():
        samples.append((time.monotonic() - t0, _offsets_total(c, topic, parts)))
        time.sleep(0.1)
    wall = time.monotonic() - t0
    samples.append((wall, _offsets_total(c, topic, parts)))
    c.close()

    def when(frac: float) -> float:
        return next(t for t, k in samples if k >= frac * n)

    if samples[-1][1] < n:
        raise RuntimeError(f"{name}: {samples[-1][1]} of {n} readings reached {topic}")
    t10, t90 = when(0.1), when(0.9)
    alerts = kafka_io.count_records(settings, out_prefix + topics.ALERT_V1.name)
    tenths = decile_rates(samples, n)
    return Throughput(name, n, 0.8 * n / max(t90 - t10, 1e-9), wall, when(1 / n), alerts, tenths)


def latency(
    settings: Settings,
    name: str,
    submit: Callable[[str], JobClient],
    in_prefix: str,
    out_prefix: str,
    obs: list[dict[str, Any]],
    rate: int,
) -> Latency:
    schema = topics.VITALS_OBSERVATION.schema
    alert_schema = topics.ALERT_V1.schema
    topic = in_prefix + topics.VITALS_OBSERVATION.name
    produced: dict[str, float] = {}
    seen: dict[str, float] = {}

    def on_value(_: str, value: bytes, at: float) -> None:
        rec = codec.decode(alert_schema, value)
        if isinstance(rec, dict):
            seen[rec["last_observation_id"]] = at

    watcher = kafka_io.TopicWatcher(settings, [out_prefix + topics.ALERT_V1.name], on_value)
    client = submit(in_prefix)
    p = kafka_io.producer(settings, **{"linger.ms": 2})
    # Warm-up: wait until the job has produced output, so start-up is not counted.
    warm, rest = obs[:200], obs[200:]
    for rec in warm:
        replay.produce_raw(
            p,
            topic,
            rec["patient_token"].encode(),
            codec.encode(schema, rec),
            codec.epoch_ms(codec.record_time(rec)),
        )
    p.flush_or_raise()
    deadline = time.monotonic() + 120
    while kafka_io.count_records(settings, out_prefix + topics.VITALS_NEWS2.name) < len(warm):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} produced no output within 120 s")
        time.sleep(0.2)
    t_start = time.monotonic()
    for i, rec in enumerate(rest):
        due = t_start + i / rate
        while (lag := due - time.monotonic()) > 0:
            p.poll(min(lag, 0.005))
        replay.produce_raw(
            p,
            topic,
            rec["patient_token"].encode(),
            codec.encode(schema, rec),
            codec.epoch_ms(codec.record_time(rec)),
        )
        produced[rec["observation_id"]] = time.time()
        p.poll(0)
    p.flush_or_raise()
    time.sleep(5)
    watcher.close()
    client.cancel().result()
    lat = sorted((seen[k] - produced[k]) * 1000 for k in seen if k in produced)
    if not lat:
        raise RuntimeError(f"{name}: no alerts observed")
    return Latency(
        name,
        rate,
        len(lat),
        statistics.median(lat),
        lat[min(len(lat) - 1, int(0.99 * len(lat)))],
        lat[-1],
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=4000)
    ap.add_argument("--latency-patients", type=int, default=600)
    ap.add_argument("--rate", type=int, default=2000, help="events/s in the latency phase")
    ap.add_argument("--out", type=Path, default=OUT / "spine.json")
    a = ap.parse_args(argv)
    settings = Settings.from_env(delivery_guarantee="at-least-once", phi_key=b"wardflow-bench")
    kafka_io.wait_for_broker(settings)
    run = f"bench-{uuid.uuid4().hex[:6]}."
    df, source = replay.load_physionet(None, settings)
    obs = replay.observations(
        replay.select_patients(df, replay.ReplayPlan(a.patients)),
        replay.ReplayPlan(a.patients),
        settings.phi_key,
        source,
    )
    observation = topics.VITALS_OBSERVATION.schema
    obs = [o for o in obs if codec.validate(observation, o) is None]  # the baseline has no DLQ
    kafka_io.ensure_topics(
        settings, [topics.VITALS_OBSERVATION.name, *sepsis_news2.JOB.output_topics], prefix=run
    )
    n = replay.produce(
        settings, iter(obs), topic=run + topics.VITALS_OBSERVATION.name, progress=False
    )
    jprefix = "java-" + run
    kafka_io.ensure_topics(
        settings, [topics.VITALS_NEWS2.name, topics.ALERT_V1.name], prefix=jprefix
    )

    def java_submit(in_prefix: str, out_prefix: str, bounded: bool) -> JobClient:
        t_env = table_env(settings)
        java_baseline.create_tables(
            t_env, settings, in_prefix=in_prefix, out_prefix=out_prefix, bounded=bounded
        )
        return java_baseline.build(t_env).execute().get_job_client()

    results: dict[str, Any] = {
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "throughput": [],
        "latency": [],
    }
    tp_py = throughput(
        settings,
        "pyflink (Python UDFs)",
        lambda: sepsis_news2.JOB.submit(settings, prefix=run, bounded=True),
        run,
        n,
    )
    tp_java = throughput(
        settings, "java-only Flink SQL", lambda: java_submit(run, jprefix, True), jprefix, n
    )
    results["throughput"] = [asdict(tp_py), asdict(tp_java)]
    print(json.dumps(results["throughput"], indent=1), flush=True)

    lat_obs = replay.observations(
        replay.select_patients(df, replay.ReplayPlan(a.latency_patients, seed=11)),
        replay.ReplayPlan(a.latency_patients, seed=11),
        settings.phi_key,
        source,
    )
    lp, lj = "lat-py-" + run, "lat-java-" + run
    kafka_io.ensure_topics(
        settings, [topics.VITALS_OBSERVATION.name, *sepsis_news2.JOB.output_topics], prefix=lp
    )
    kafka_io.ensure_topics(
        settings, [topics.VITALS_OBSERVATION.name, *sepsis_news2.JOB.output_topics], prefix=lj
    )
    results["latency"] = [
        asdict(
            latency(
                settings,
                "pyflink (Python UDFs)",
                lambda pre: sepsis_news2.JOB.submit(settings, prefix=pre),
                lp,
                lp,
                lat_obs,
                a.rate,
            )
        ),
        asdict(
            latency(
                settings,
                "java-only Flink SQL",
                lambda pre: java_submit(pre, pre, False),
                lj,
                lj,
                lat_obs,
                a.rate,
            )
        ),
    ]
    results["ratios"] = {
        "throughput_python_over_java": tp_py.sustained_events_per_s
        / tp_java.sustained_events_per_s,
        "alerts_equal": tp_py.alerts == tp_java.alerts,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
