"""What the quarantine check costs the screening job: sustained screened records/s of the same
job over the same real set-A records with an empty quarantine registry and with one holding
QUARANTINES closed and open intervals (other facilities' units and device sources, none of them
this replay's, and one of this replay's units for an hour, so the check's every branch runs),
alternating (empty, full, empty, full) in one run on the same machine; medians and their ratio.

Every record of a vitals or lab source is checked in the JVM (io.wardflow.udf.Quarantine: the
registry's TSV, re-read when it changes, searched per record by topic, facility and unit).
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import statistics
import tempfile
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from bench.sampling import machine, sampled_run, screening_bench, sustained_rate
from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import topics
from udfs.quarantine import QuarantineRegistry

OUT = Path(__file__).resolve().parent / "results"
QUARANTINES = 200


def fill(registry: QuarantineRegistry, start: Any, n: int) -> None:
    """n quarantines of sources this replay does not send, and one hour of one of its units."""
    sources = (topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name, topics.VITALS_DEVICE.name)
    for i in range(n - 1):
        topic = sources[i % len(sources)]
        since = start + timedelta(hours=i % 48)
        registry.set(topic, f"hospital-{i % 12 + 2}", f"U{i}", since=since, reason="bench", by="b")
        if i % 2:
            registry.clear(
                topic, f"hospital-{i % 12 + 2}", f"U{i}", until=since + timedelta(hours=6),
                reason="bench", by="b",
            )  # fmt: skip
    unit_start = start + timedelta(hours=12)
    registry.set(
        topics.VITALS_OBSERVATION.name, replay.FACILITY, "MICU", since=unit_start,
        reason="bench", by="b",
    )  # fmt: skip
    registry.clear(
        topics.VITALS_OBSERVATION.name, replay.FACILITY, "MICU",
        until=unit_start + timedelta(hours=1), reason="bench", by="b",
    )  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT / "quarantine.json")
    a = ap.parse_args(argv)
    base, items = screening_bench("bench-quarantine", a.patients)
    folder = Path(tempfile.mkdtemp(prefix="bench-quarantine-"))
    registries = {"empty": QuarantineRegistry(folder / "empty")}
    registries["full"] = QuarantineRegistry(folder / "full")
    fill(registries["full"], replay.DEFAULT_BASE_TIME, QUARANTINES)
    rates: dict[str, list[float]] = {"empty": [], "full": []}
    records = 0
    for _ in range(a.rounds):
        for kind, registry in registries.items():
            settings = dataclasses.replace(base, quarantine_registry=registry.root)
            prefix = f"bench-q-{uuid.uuid4().hex[:6]}."
            names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
            kafka_io.ensure_topics(settings, names, prefix=prefix)
            records = replay.produce_stream(settings, items, prefix=prefix, progress=False)
            out_topic = prefix + topics.SEPSIS_SCREEN.name
            samples, _ = sampled_run(settings, out_topic, functools.partial(
                sepsis_screen.JOB.run, settings, prefix=prefix, bounded=True
            ))  # fmt: skip
            screened = kafka_io.count_records(settings, out_topic)
            rates[kind].append(round(sustained_rate(samples, screened)))
            kafka_io.delete_topics(settings, names, prefix=prefix)
            print(f"{kind}: {rates[kind][-1]} screened records/s")
    empty, full = statistics.median(rates["empty"]), statistics.median(rates["full"])
    result: dict[str, Any] = {
        "machine": machine(),
        "patients": a.patients,
        "records": records,
        "quarantines": QUARANTINES,
        "runs_screened_per_s": rates,
        "median_screened_per_s_empty_registry": empty,
        "median_screened_per_s_full_registry": full,
        "ratio_full_to_empty": round(full / empty, 3),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
