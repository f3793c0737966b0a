"""What the benchmarks share: sampling an output topic while a bounded job drains."""

from __future__ import annotations

import itertools
import os
import platform
import threading
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from schemas.settings import Settings


def sampled_run(
    settings: Settings, out_topic: str, run: Callable[[], None]
) -> tuple[list[tuple[float, int]], float]:
    """Run `run` (a bounded job) on a thread while sampling `out_topic`'s end offsets every
    0.2 s: ([(seconds since start, records)], seconds until the job returned)."""
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-sampler"})
    parts = list(c.list_topics(out_topic, timeout=10).topics[out_topic].partitions)
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def _run() -> None:
        try:
            run()
        finally:
            done.set()

    threading.Thread(target=_run, daemon=True).start()
    while not done.is_set():
        total = sum(
            c.get_watermark_offsets(TopicPartition(out_topic, p), timeout=5)[1] for p in parts
        )
        samples.append((time.monotonic() - t0, total))
        time.sleep(0.2)
    drained = time.monotonic() - t0
    c.close()
    return samples, drained


def first_reaching(samples: list[tuple[float, int]], count: float) -> float:
    return next(t for t, k in samples if k >= count)


def sustained_rate(samples: list[tuple[float, int]], total: int) -> float:
    """80 % of `total` / the time between 10 % and 90 % of it (start-up and tail left out)."""
    t10, t90 = first_reaching(samples, 0.1 * total), first_reaching(samples, 0.9 * total)
    return 0.8 * total / max(t90 - t10, 1e-9)


def decile_rates(samples: list[tuple[float, int]], total: int) -> list[float]:
    """The rate (records/s) in each tenth of `total`, from the first output on: whether a run
    was long enough for its sustained rate to be the steady one (JIT warm-up shows as rising
    early tenths)."""
    marks = [first_reaching(samples, max(1.0, k * total / 10)) for k in range(11)]
    return [round(total / 10 / max(b - a, 1e-9)) for a, b in itertools.pairwise(marks)]


def machine() -> dict[str, Any]:
    """What a results file says of the machine it was measured on."""
    return {
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def screening_bench(job_name: str, patients: int) -> tuple[Settings, list[tuple[str, Any]]]:
    """The screening benchmarks' settings (rules only, at-least-once: bench/scoring.py measures
    what the model adds) once the broker answers, and `patients` set-A patients' records."""
    from jobs.feeds import replay
    from jobs.runtime import kafka_io

    settings = Settings.from_env(
        delivery_guarantee="at-least-once",
        phi_key=b"wardflow-bench",
        job_name=job_name,
        scoring=False,
    )
    kafka_io.wait_for_broker(settings)
    df, source = replay.load_physionet(None, settings)
    plan = replay.ReplayPlan(patients=patients)
    items = replay.clinical_stream(replay.select_patients(df, plan), plan, settings.phi_key, source)
    return settings, list(items)
