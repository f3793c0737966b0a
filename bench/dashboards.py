"""Dashboard benchmark: every panel's query, macros and variables expanded as Grafana would send
them, timed on a warehouse at the seed's scale (grafana.seed: 12 facilities × 500 beds, 30 days:
minute rollups, census, alerts, scores) in embedded ClickHouse (chdb) or CLICKHOUSE_URL.

Each panel runs once to warm caches, then `--runs` times; p50/p95 are over those runs. Ranges
are each dashboard's default (24 h, 7 d, 30 d) ending at the newest data; variables take their
first option (nurse board: the unit with the most alert events), multi-value ones all options.

`--census-history-copies K` adds K earlier copies of the census's events (each `--days` older,
its patients and event ids renamed), so that a live board meets a census with (K + 1) × days of
history, as a system running for a year has; `--only UID` times one dashboard.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import pandas as pd

from grafana import run, seed
from grafana.specs import DASHBOARDS, NURSE_BOARD
from schemas.settings import Settings
from sinks import clickhouse

OUT = Path(__file__).resolve().parent / "results"


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, round(q * (len(s) - 1)))]


def add_census_history(client: Any, db: str, copies: int, days: float) -> int:
    """K copies of census_events, each `days` × k older, under renamed patients and event ids
    at offsets of their own (census_latest follows through its materialized view); the rows
    census_events then holds. Through Python: chdb's INSERT … SELECT with a WHERE inserted
    nothing."""
    frame = client.query_df(f"SELECT * EXCEPT (loaded_at) FROM {db}.census_events")
    for k in range(1, copies + 1):
        older = frame.copy()
        older["patient_token"] = older["patient_token"] + f"~{k}"
        older["event_id"] = older["event_id"] + f"~{k}"
        older["event_time"] = older["event_time"] - pd.Timedelta(days=days * k)
        older["kafka_offset"] = older["kafka_offset"] + k * 1_000_000_000
        client.insert_df(f"{db}.census_events", older)
    return int(client.query(f"SELECT count() FROM {db}.census_events").result_rows[0][0])


def bench(client: Any, db: str, runs: int, only: str | None = None) -> list[dict[str, Any]]:
    now = run.latest_time(client, db)
    ((busiest,),) = client.query(
        f"SELECT unit_id FROM {db}.alert_events WHERE facility_id = 'F01' "
        "GROUP BY unit_id ORDER BY count() DESC LIMIT 1"
    ).result_rows
    out = []
    for d in DASHBOARDS:
        if only and d.uid != only:
            continue
        tr = run.default_range(d, now)
        prefer = {"unit": busiest} if d is NURSE_BOARD else None
        variables = run.resolve_variables(client, d, db, tr, prefer)
        for p in d.panels:
            run.run_panel(client, p, tr, variables)  # warm-up
            results = [run.run_panel(client, p, tr, variables) for _ in range(runs)]
            ms = [r.seconds * 1000 for r in results]
            out.append(
                {
                    "dashboard": d.uid,
                    "panel": p.key,
                    "range": d.time_from,
                    "rows": len(results[-1].rows),
                    "p50_ms": round(statistics.median(ms), 1),
                    "p95_ms": round(_pct(ms, 0.95), 1),
                    "max_ms": round(max(ms), 1),
                }
            )
            print(
                f"{d.uid:28} {p.key:22} p50 {out[-1]['p50_ms']:7.1f} ms  "
                f"p95 {out[-1]['p95_ms']:7.1f} ms  ({out[-1]['rows']} rows)",
                flush=True,
            )
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--facilities", type=int, default=12)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--census-history-copies", type=int, default=0)
    ap.add_argument("--only", help="one dashboard's uid")
    ap.add_argument("--out", type=Path, default=OUT / "dashboards.json")
    a = ap.parse_args(argv)
    settings = Settings.from_env()
    with tempfile.TemporaryDirectory() as tmp:
        url = os.environ.get("CLICKHOUSE_URL") or f"chdb://{tmp}/ch"
        client = clickhouse.connect(url)
        db = "wardflow_bench_dashboards"
        client.command(f"DROP DATABASE IF EXISTS {db}")
        t0 = time.monotonic()
        wh = seed.build(seed.SeedPlan(a.facilities, a.days), seed.physionet(settings))
        built_s = time.monotonic() - t0
        counts = seed.load(client, db, wh)
        loaded_s = time.monotonic() - t0 - built_s
        if a.census_history_copies:
            counts["census_events"] = add_census_history(
                client, db, a.census_history_copies, a.days
            )
        client.command(f"OPTIMIZE TABLE {db}.vitals_minute FINAL")
        rollups = {
            t: client.query(f"SELECT count() FROM {db}.{t}").result_rows[0][0]
            for t in ("vitals_minute", "alert_minute", "score_minute", "score_hist_hour")
        }
        panels = bench(client, db, a.runs, a.only)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "clickhouse": url.split(":")[0],
        },
        "scale": {
            "facilities": a.facilities,
            "beds": a.facilities * 500,
            "days": a.days,
            "census_history_days": a.days * (1 + a.census_history_copies),
        },
        "rows": counts,
        "rollup_rows": rollups,
        "seed_build_s": round(built_s),
        "seed_load_s": round(loaded_s),
        "runs_per_panel": a.runs,
        "panels": panels,
        "slowest_p95_ms": max(p["p95_ms"] for p in panels),
        "median_p50_ms": statistics.median(p["p50_ms"] for p in panels),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "panels"}, indent=1))


if __name__ == "__main__":
    main()
