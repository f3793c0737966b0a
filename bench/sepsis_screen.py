"""Screening-job benchmark: sustained records/s of the full sepsis screening job (three sources,
state window, five rules, alert lifecycle) over pre-loaded topics.

N records (vitals, labs, discharges of real set-A patients) are produced first; the job then runs
bounded while the end offsets of its screened-states topic are sampled. Sustained rate = 80 % of
N / (t(90 %) - t(10 %)), leaving out start-up; `drained_s` is the time until the whole job,
lifecycle included, has finished.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from jobs import kafka_io, replay, sepsis_screen
from jobs.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=OUT / "sepsis_screen.json")
    a = ap.parse_args(argv)
    settings = Settings.from_env(phi_key=b"wardflow-bench", job_name="bench-sepsis-screen")
    kafka_io.wait_for_broker(settings)
    prefix = f"bench-screen-{uuid.uuid4().hex[:6]}."
    topics = sepsis_screen.INPUT_TOPICS + sepsis_screen.OUTPUT_TOPICS
    kafka_io.ensure_topics(settings, topics, prefix=prefix)
    df, source = replay.load_physionet(None, settings)
    plan = replay.ReplayPlan(patients=a.patients)
    items = replay.clinical_stream(replay.select_patients(df, plan), plan, settings.phi_key, source)
    n = replay.produce_stream(settings, items, prefix=prefix, progress=False)

    out_topic = prefix + "sepsis.screen.v1"
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-sampler"})
    parts = list(c.list_topics(out_topic, timeout=10).topics[out_topic].partitions)
    samples: list[tuple[float, int]] = []
    done = threading.Event()
    t0 = time.monotonic()

    def _run() -> None:
        try:
            sepsis_screen.run(settings, prefix=prefix, bounded=True)
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
    screened = kafka_io.count_records(settings, out_topic)
    dead = kafka_io.count_records(settings, prefix + "deadletter.v1")

    def when(frac: float) -> float:
        return next(t for t, k in samples if k >= frac * screened)

    result: dict[str, Any] = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "patients": a.patients,
        "records": n,
        "screened": screened,
        "dead_lettered": dead,
        "alert_events": kafka_io.count_records(settings, prefix + "alert.v2"),
        "sustained_screened_per_s": round(0.8 * screened / max(when(0.9) - when(0.1), 1e-9)),
        "first_output_s": round(when(1 / screened), 1),
        "drained_s": round(drained, 1),
        "records_per_s_end_to_end": round(n / drained),
    }
    kafka_io.delete_topics(settings, topics, prefix=prefix)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
