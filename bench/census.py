"""Bed-census benchmark: throughput and end-to-end latency of the census job on generated
multi-site ADT traffic (jobs.feeds.adt_generator: 12 facilities × 500 beds by default).

Throughput: all events of `--days` are pre-loaded; the job runs bounded while the end offsets of
census.event (one record per accepted ADT event) are sampled. Sustained rate = 80 % of N /
(t(90 %) - t(10 %)), leaving out start-up; `decile_events_per_s` is the rate in each tenth, so
that the JVM's warm-up shows (30 days of traffic, 112,007 events, drained within it); the default
year of traffic (1.3 M events) makes it a small part. `drained_s` is until the job has finished.

Latency: the job runs unbounded; after a warm-up (the first 6 h of events at once, until the
first census row appears) the rest of `--latency-days` is produced paced at `--speedup` × real
time. A facility's census row for the minute ending at m can only be final
once the watermark passes m, i.e. once an event at m + max_out_of_orderness has been produced.
Latency = wall time the row is read from census.unit - wall time that event was produced
(p50/p99 over all facility rows). In real time a row also waits out the event-time part: up to
one minute of window plus the watermark delay (`event_time_wait_s`).
"""

from __future__ import annotations

import argparse
import bisect
import dataclasses
import json
import os
import platform
import statistics
import time
import uuid
from pathlib import Path
from typing import Any

from bench.sampling import decile_rates, first_reaching, sampled_run, sustained_rate
from jobs import bed_census
from jobs.feeds import adt_generator, replay
from jobs.runtime import kafka_io
from schemas import codec, load_schema, topics
from schemas.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def _sampled_run(settings: Settings, prefix: str, n: int) -> dict[str, Any]:
    out_topic = prefix + topics.CENSUS_EVENT.name
    samples, drained = sampled_run(
        settings, out_topic, lambda: bed_census.JOB.run(settings, prefix=prefix, bounded=True)
    )
    applied = kafka_io.count_records(settings, out_topic)
    dead = kafka_io.count_records(settings, prefix + topics.DEAD_LETTER.name)
    return {
        "events": n,
        "census_events": applied,
        "dead_lettered": dead,
        "census_rows": kafka_io.count_records(settings, prefix + topics.CENSUS_UNIT.name),
        "flow_rows": kafka_io.count_records(settings, prefix + topics.CENSUS_FLOW.name),
        "sustained_events_per_s": round(sustained_rate(samples, applied)),
        "decile_events_per_s": decile_rates(samples, applied),
        "first_output_s": round(first_reaching(samples, 1), 1),
        "drained_s": round(drained, 1),
        "events_per_s_end_to_end": round(n / drained),
    }


def _latency(
    settings: Settings, prefix: str, evs: list[dict[str, Any]], speedup: float
) -> dict[str, Any]:
    census_schema = topics.CENSUS_UNIT.schema
    adt_schema = load_schema(bed_census.ADT)
    seen: dict[tuple[str, int], float] = {}

    def on_value(_: str, value: bytes, at: float) -> None:
        rec = codec.decode(census_schema, value)
        if isinstance(rec, dict) and rec["scope"] == "facility":
            seen.setdefault((rec["facility_id"], codec.epoch_ms(rec["window_end"])), at)

    watcher = kafka_io.TopicWatcher(settings, [prefix + topics.CENSUS_UNIT.name], on_value)
    client = bed_census.JOB.pipeline(settings, prefix=prefix).execute_async("bench-census-latency")
    p = kafka_io.producer(settings, **{"linger.ms": 2})
    times_ms: list[int] = []
    produced_at: list[float] = []

    def send(e: dict[str, Any]) -> None:
        ts = codec.epoch_ms(codec.record_time(e))
        value = codec.encode(adt_schema, e)
        replay.produce_raw(p, prefix + bed_census.ADT, e["patient_token"].encode(), value, ts)
        p.poll(0)
        times_ms.append(ts)
        produced_at.append(time.time())

    # Warm-up: the first 6 h of events at once, then wait for the job's first census row, so
    # that start-up (tens of seconds on the MiniCluster) is not counted.
    warm_until = codec.epoch_ms(evs[0]["event_time"]) + 6 * 3600 * 1000
    warm = [e for e in evs if codec.epoch_ms(e["event_time"]) < warm_until]
    for e in warm:
        send(e)
    p.flush_or_raise()
    deadline = time.monotonic() + 300
    while not seen:
        if time.monotonic() > deadline:
            raise TimeoutError("the census job produced no row within 300 s")
        time.sleep(0.2)
    rest = evs[len(warm) :]
    t0_wall = time.monotonic()
    t0_event = codec.epoch_ms(rest[0]["event_time"])
    for e in rest:
        due = t0_wall + (codec.epoch_ms(e["event_time"]) - t0_event) / 1000 / speedup
        while (lag := due - time.monotonic()) > 0:
            p.poll(min(lag, 0.005))
        send(e)
    p.flush_or_raise()
    time.sleep(10)
    watcher.close()
    client.cancel().result()
    delay_ms = settings.max_out_of_orderness_s * 1000
    lat = []
    for (_, window_end), read in seen.items():
        i = bisect.bisect_left(times_ms, window_end + delay_ms)
        if len(warm) <= i < len(times_ms):
            lat.append((read - produced_at[i]) * 1000)
    lat.sort()
    if not lat:
        raise RuntimeError("no census rows observed")
    return {
        "speedup": speedup,
        "events": len(evs),
        "events_per_s": round(len(rest) / (times_ms[-1] - t0_event) * 1000 * speedup, 1),
        "facility_rows": len(lat),
        "p50_ms": round(statistics.median(lat)),
        "p99_ms": round(lat[min(len(lat) - 1, int(0.99 * len(lat)))]),
        "max_ms": round(lat[-1]),
        "event_time_wait_s": f"up to 60 + {settings.max_out_of_orderness_s}",
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--facilities", type=int, default=12)
    ap.add_argument(
        "--days",
        type=float,
        default=365.0,
        help="of traffic (a year: 1.3 M events; 30 days is 16 s of processing, within warm-up)",
    )
    ap.add_argument("--latency-days", type=float, default=2.0)
    ap.add_argument("--speedup", type=float, default=3600.0)
    ap.add_argument("--out", type=Path, default=OUT / "census.json")
    a = ap.parse_args(argv)
    cap = Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-capacity-{uuid.uuid4().hex[:6]}.json"
    cap.write_text(json.dumps(adt_generator.capacity(a.facilities).to_dict()))
    settings = Settings.from_env(
        delivery_guarantee="at-least-once",
        phi_key=b"wardflow-bench",
        job_name="bench-census",
        capacity_file=cap,
    )
    kafka_io.wait_for_broker(settings)
    evs = adt_generator.events(adt_generator.Plan(facilities=a.facilities, days=a.days))

    prefix = f"bench-census-{uuid.uuid4().hex[:6]}."
    kafka_io.ensure_topics(settings, [bed_census.ADT, *bed_census.JOB.output_topics], prefix=prefix)
    n = replay.produce_stream(
        settings, ((bed_census.ADT, e) for e in evs), prefix=prefix, progress=False
    )
    throughput = _sampled_run(settings, prefix, n)
    kafka_io.delete_topics(settings, [bed_census.ADT, *bed_census.JOB.output_topics], prefix=prefix)

    lat_prefix = f"bench-census-lat-{uuid.uuid4().hex[:6]}."
    horizon = evs[0]["event_time"].timestamp() + a.latency_days * 86400
    lat_evs = [e for e in evs if e["event_time"].timestamp() < horizon]
    latency = _latency(
        dataclasses.replace(settings, job_name="bench-census-latency"),
        lat_prefix,
        lat_evs,
        a.speedup,
    )
    kafka_io.delete_topics(
        settings, [bed_census.ADT, *bed_census.JOB.output_topics], prefix=lat_prefix
    )
    cap.unlink()
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "facilities": a.facilities,
        "beds": a.facilities * sum(adt_generator.UNITS.values()),
        "days": a.days,
        "throughput": throughput,
        "latency": latency,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
