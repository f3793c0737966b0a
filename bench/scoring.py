"""Scoring benchmark.

1. Per batch: static-feature lookup in Feast + champion and challenger inference + the push of
   the batch's stream features, for batches of 1, 100 and 1,000 patients, on the SQLite and the
   Redis online store. `cold`: every patient is looked up in Feast (cache TTL 0); `warm`: the
   in-process cache holds them (the steady state during a stay). p50/p99 over `--runs` batches.
2. The screening job's throughput with scoring on and off, over the same pre-loaded real
   patients, one after the other in this process: sustained screened states/s (10-90 % of the
   output, start-up excluded) and the time to drain.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.sampling import sampled_run, sustained_rate
from feature_store import repo
from feature_store.online import feast_source
from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from training.features import hourly_features
from training.registry import bootstrap
from udfs.registry import Registry
from udfs.scoring import Scorer

OUT = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
REDIS = "127.0.0.1:16379"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def batch_latency(settings: Settings, tmp: Path, runs: int) -> list[dict[str, Any]]:
    reg = Registry(tmp / "registry")
    bootstrap(reg, settings.model_name)
    df, _ = replay.load_physionet(None, settings)
    feats = hourly_features(replay.select_patients(df, replay.ReplayPlan(patients=1000)))
    feats["patient_token"] = feats["patient_id"]
    feats["event_time"] = pd.Timestamp("2026-01-05", tz="UTC") + pd.to_timedelta(
        feats["iculos_h"], unit="h"
    )
    last = feats.groupby("patient_token").tail(1).reset_index(drop=True)  # one row per patient
    out = []
    for online in ("sqlite", REDIS):
        root = tmp / f"feast-{'sqlite' if online == 'sqlite' else 'redis'}"
        store = repo.open_store(root, online)
        static = last[["patient_token", "age_years", "female"]].assign(
            event_timestamp=last.event_time
        )
        repo.push_static(store, static)
        for cache in ("cold", "warm"):
            ttl = 0.0 if cache == "cold" else 1e9
            source = feast_source(root, online, cache_ttl_s=ttl, push_interval_s=1e9)
            scorer = Scorer(reg, settings.model_name, source)
            for n in (1, 100, 1000):
                rng = np.random.default_rng(n)
                ms = []
                for i in range(runs + 3):
                    batch = last.iloc[rng.choice(len(last), n, replace=False)]
                    t0 = time.perf_counter()
                    scorer.score(batch)
                    if i >= 3:  # warm-up: sessions, the first lookups
                        ms.append((time.perf_counter() - t0) * 1000)
                row = {
                    "online_store": "sqlite" if online == "sqlite" else "redis",
                    "static_features": cache,
                    "patients": n,
                    "p50_ms": round(statistics.median(ms), 2),
                    "p99_ms": round(_pct(ms, 0.99), 2),
                    "per_patient_us": round(1000 * statistics.median(ms) / n, 1),
                }
                print(row, flush=True)
                out.append(row)
            frame = pd.concat(source.staged, ignore_index=True)
            t0 = time.perf_counter()
            source.flush()
            push_s = time.perf_counter() - t0
            rows = frame.patient_token.nunique()
            out.append(
                {
                    "online_store": "sqlite" if online == "sqlite" else "redis",
                    "push_rows": rows,
                    "push_rows_per_s": round(rows / push_s),
                }
            )
            print(out[-1], flush=True)
    return out


def job_throughput(settings: Settings, tmp: Path, patients: int) -> dict[str, Any]:
    reg_dir = tmp / "job-registry"
    bootstrap(Registry(reg_dir), settings.model_name)
    df, source = replay.load_physionet(None, settings)
    plan = replay.ReplayPlan(patients=patients)
    chosen = replay.select_patients(df, plan)
    items = replay.clinical_stream(chosen, plan, settings.phi_key, source)
    results: dict[str, Any] = {}
    for scoring in (False, True):
        s = dataclasses.replace(
            settings,
            scoring=scoring,
            model_registry=reg_dir,
            feast_dir=tmp / "job-feast",
            job_name=f"bench-scoring-{scoring}-{uuid.uuid4().hex[:4]}",
        )
        if scoring:
            store = repo.open_store(s.feast_dir, s.feast_online_store)
            repo.push_static(store, replay.static_features(chosen, plan, s.phi_key, source))
        prefix = f"bench-sc-{uuid.uuid4().hex[:6]}."
        topic_names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
        kafka_io.ensure_topics(s, topic_names, prefix=prefix)
        n = replay.produce_stream(s, items, prefix=prefix, progress=False)
        out_topic = prefix + topics.SEPSIS_SCREEN.name

        def job(s: Settings = s, p: str = prefix) -> None:
            sepsis_screen.JOB.run(s, prefix=p, bounded=True)

        samples, drained = sampled_run(s, out_topic, job)
        screened = kafka_io.count_records(s, out_topic)
        results["scoring_on" if scoring else "scoring_off"] = {
            "records": n,
            "screened": screened,
            "scores": kafka_io.count_records(s, prefix + topics.SEPSIS_SCORE.name),
            "sustained_screened_per_s": round(sustained_rate(samples, screened)),
            "drained_s": round(drained, 1),
        }
        print(results, flush=True)
        kafka_io.delete_topics(s, topic_names, prefix=prefix)
    on, off = results["scoring_on"], results["scoring_off"]
    results["ratio_on_off_sustained"] = round(
        on["sustained_screened_per_s"] / off["sustained_screened_per_s"], 2
    )
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=50)
    ap.add_argument("--patients", type=int, default=500, help="for the job throughput")
    ap.add_argument("--out", type=Path, default=OUT / "scoring.json")
    a = ap.parse_args(argv)
    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "redis"], check=True)
    settings = Settings.from_env(
        delivery_guarantee="at-least-once", phi_key=b"wardflow-bench", job_name="bench-scoring"
    )
    kafka_io.wait_for_broker(settings)
    with tempfile.TemporaryDirectory() as tmp:
        batches = batch_latency(settings, Path(tmp), a.runs)
        job = job_throughput(settings, Path(tmp), a.patients)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "batch_latency": batches,
        "job": job,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
