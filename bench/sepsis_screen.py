"""Screening-job benchmark: sustained records/s of the full sepsis screening job (three sources,
state window, six rules, alert lifecycle) over pre-loaded topics.

N records (vitals, labs, discharges of real set-A patients) are produced first; the job then runs
bounded while the end offsets of its screened-states topic are sampled. Sustained rate = 80 % of
N / (t(90 %) - t(10 %)), leaving out start-up; `drained_s` is the time until the whole job,
lifecycle included, has finished.
"""

from __future__ import annotations

import argparse
import json
import uuid
from pathlib import Path
from typing import Any

from bench.sampling import first_reaching, machine, sampled_run, screening_bench, sustained_rate
from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics

OUT = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=OUT / "sepsis_screen.json")
    a = ap.parse_args(argv)
    settings, items = screening_bench("bench-sepsis-screen", a.patients)
    prefix = f"bench-screen-{uuid.uuid4().hex[:6]}."
    topic_names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, topic_names, prefix=prefix)
    n = replay.produce_stream(settings, items, prefix=prefix, progress=False)

    out_topic = prefix + topics.SEPSIS_SCREEN.name
    samples, drained = sampled_run(
        settings, out_topic, lambda: sepsis_screen.JOB.run(settings, prefix=prefix, bounded=True)
    )
    screened = kafka_io.count_records(settings, out_topic)
    dead = kafka_io.count_records(settings, prefix + topics.DEAD_LETTER.name)

    result: dict[str, Any] = {
        "machine": machine(),
        "patients": a.patients,
        "records": n,
        "screened": screened,
        "dead_lettered": dead,
        "alert_events": kafka_io.count_records(settings, prefix + topics.ALERT_V2.name),
        "sustained_screened_per_s": round(sustained_rate(samples, screened)),
        "first_output_s": round(first_reaching(samples, 1), 1),
        "drained_s": round(drained, 1),
        "records_per_s_end_to_end": round(n / drained),
    }
    kafka_io.delete_topics(settings, topic_names, prefix=prefix)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
