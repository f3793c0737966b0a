"""Scale-out benchmark: the screening job on a standalone Flink cluster (PyFlink's distribution,
one TaskManager with 2 slots, loopback), submitted with `bin/flink run` at parallelism 1 and 2
over the same input, bounded.

The input is the charted feed of real ICU patients (vitals, labs, ADT), produced once to a
topic prefix per run. Throughput is sustained records/s of screened states written, measured as
bench/spine.py does: the screen topic's end offsets are sampled while the job runs, and the rate
is 80 % of the states over the time from 10 % to 90 % of them, which leaves out job start-up.
Speed-up = rate at 2 / rate at 1. Rules only (scoring is benchmarked in bench/scoring.py),
at-least-once sinks as in the other benchmarks.

    python -m bench.cluster_scale [--patients N] [--out bench/results/cluster_scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from deploy.local.flink_cluster import Cluster, flink_bin
from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings

OUT = Path(__file__).resolve().parent / "results" / "cluster_scale.json"


def _end_offsets(c: Consumer, topic: str, parts: list[int]) -> int:
    return sum(c.get_watermark_offsets(TopicPartition(topic, p), timeout=5)[1] for p in parts)


def run_at(
    cluster: Cluster, settings: Settings, parallelism: int, items: list[Any]
) -> dict[str, Any]:
    """One bounded run at `parallelism`, over its own copy of the input."""
    prefix = f"scale-p{parallelism}-{uuid.uuid4().hex[:6]}."
    names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, names, prefix=prefix)
    replay.produce_stream(settings, items, prefix=prefix, progress=False)
    topic = prefix + topics.SEPSIS_SCREEN.name
    c = Consumer({"bootstrap.servers": settings.kafka_bootstrap, "group.id": "bench-scale"})
    parts = list(c.list_topics(topic, timeout=10).topics[topic].partitions)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PYFLINK")},
        **cluster.variables(),
        "WARDFLOW_SCORING": "0",
        # As the other benchmarks: processing, not the checkpoint interval that exactly-once
        # output waits for.
        "WARDFLOW_DELIVERY_GUARANTEE": "at-least-once",
        "WARDFLOW_PHI_KEY": settings.phi_key.decode(),
        "WARDFLOW_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
    }
    cmd = [
        str(flink_bin()), "run", "-m", cluster.address, "-p", str(parallelism),
        "-pym", "jobs.sepsis_screen", "--bounded", "--topic-prefix", prefix,
    ]  # fmt: skip
    samples: list[tuple[float, int]] = []
    t0 = time.monotonic()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        while proc.poll() is None:
            samples.append((time.monotonic() - t0, _end_offsets(c, topic, parts)))
            time.sleep(0.1)
        log.seek(0)
        output = log.read()
    wall = time.monotonic() - t0
    samples.append((wall, _end_offsets(c, topic, parts)))
    c.close()
    if proc.returncode != 0:
        raise RuntimeError(f"flink run -p {parallelism} failed:\n{output[-4000:]}")
    # Transaction markers take offsets too: count the records, not the offsets, at the end.
    written = kafka_io.count_records(settings, topic)
    top = samples[-1][1]

    def when(frac: float) -> float:
        return next(t for t, k in samples if k >= frac * top)

    jid = re.search(r"JobID ([0-9a-f]{32})", output)
    kafka_io.delete_topics(settings, names, prefix=prefix)
    return {
        "parallelism": parallelism,
        "job_id": jid.group(1) if jid else None,
        "states": written,
        "sustained_states_per_s": round(0.8 * written / max(when(0.9) - when(0.1), 1e-9), 1),
        "wall_s": round(wall, 1),
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--patients", type=int, default=1500)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    settings = Settings.from_env()
    kafka_io.wait_for_broker(settings)
    plan = replay.ReplayPlan(patients=a.patients, seed=31)
    df, source = replay.load_physionet(None, settings)
    items = replay.clinical_stream(
        replay.select_patients(df, plan), plan, settings.require_phi_key(), source
    )
    with tempfile.TemporaryDirectory() as home:
        cluster = Cluster(Path(home), rest_port=18291, rpc_port=16323)
        cluster.start(taskmanagers=1)
        try:
            runs = [run_at(cluster, settings, p, items) for p in (1, 2)]
        finally:
            cluster.stop()
    one, two = runs
    results = {
        "what": "screening job, bounded, on a standalone cluster (1 TaskManager, 2 slots)",
        "machine": {
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
            "platform": platform.platform(),
        },
        "patients": a.patients,
        "input_records": len(items),
        "runs": runs,
        "speedup_p2_over_p1": round(
            two["sustained_states_per_s"] / one["sustained_states_per_s"], 3
        ),
    }
    a.out.write_text(json.dumps(results, indent=2) + "\n")
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
