"""`make census-demo`: generated multi-site ADT traffic (or, with --mimic, the MIMIC-IV demo's
real transfers) through the bed-census job, loaded into ClickHouse, and a command-centre board:
each facility's census and surge level at the end, and the units at their fullest."""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from jobs import bed_census
from jobs.feeds import adt_generator, mimic_adt, replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from sinks import clickhouse
from sinks.loader import TABLES, Loader

DEMO_DB = "wardflow_census_demo"


def board(ch: Any, db: str) -> str:
    q = ch.query
    lines = ["", "── census board " + "─" * 60]
    lines.append("  {:<8} {:>8} {:>6} {:>7}  {:<9} {}".format(
        "facility", "occupied", "beds", "%", "surge", "as of"))  # fmt: skip
    for fac, occ, beds, pct, label, at in q(f"""
        SELECT facility_id, argMax(occupied_beds, window_end), argMax(capacity_beds, window_end),
               argMax(occupancy_pct, window_end), argMax(surge_label, window_end), max(window_end)
        FROM {db}.census_unit FINAL WHERE scope = 'facility'
        GROUP BY facility_id ORDER BY facility_id""").result_rows:
        lines.append(f"  {fac:<8} {occ:>8} {beds:>6} {pct:>6.1f}%  {label:<9} {at:%Y-%m-%d %H:%M}")
    lines.append("fullest units (peak occupancy, minutes at critical):")
    for fac, unit, peak, beds, crit in q(f"""
        SELECT facility_id, unit_id, max(occupied_beds), any(capacity_beds),
               countIf(surge_level = 3)
        FROM {db}.census_unit FINAL WHERE scope = 'unit'
        GROUP BY facility_id, unit_id ORDER BY max(occupancy_pct) DESC LIMIT 5""").result_rows:
        lines.append(f"  {fac}/{unit:<12} {peak:>4} of {beds:<4} beds, {crit} critical rows")
    dead = q(f"""SELECT reason_code, count() FROM {db}.dead_letters FINAL
                 GROUP BY 1 ORDER BY 2 DESC""").result_rows
    lines.append("dead letters: " + (", ".join(f"{c} {n}" for c, n in dead) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--facilities", type=int, default=3)
    ap.add_argument("--days", type=float, default=3.0)
    ap.add_argument("--mimic", action="store_true", help="replay the MIMIC-IV demo transfers")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a, clickhouse_database=DEMO_DB, job_name="wardflow-census-demo")
    kafka_io.wait_for_broker(settings)
    cap = Path(tempfile.mkdtemp()) / "capacity.json"
    if a.mimic:
        table = mimic_adt.load_transfers(settings.data_dir)
        cap.write_text(json.dumps(mimic_adt.capacity(table).to_dict()))
        events = mimic_adt.events(table, settings.require_phi_key())
    else:
        cap.write_text(json.dumps(adt_generator.capacity(a.facilities).to_dict()))
        events = adt_generator.events(adt_generator.Plan(facilities=a.facilities, days=a.days))
    settings = dataclasses.replace(settings, capacity_file=cap)
    prefix = f"census-demo-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:4]}."
    names = [topics.ADT_EVENT.name, *bed_census.JOB.output_topics]
    kafka_io.ensure_topics(settings, names, prefix=prefix)
    n = replay.produce_stream(settings, ((topics.ADT_EVENT.name, e) for e in events), prefix=prefix)
    print(f"running {bed_census.STAGE} on the Flink MiniCluster over {n} ADT events…", flush=True)
    t0 = time.monotonic()
    bed_census.JOB.run(settings, prefix=prefix, bounded=True)
    print(f"job drained its input in {time.monotonic() - t0:.1f} s", flush=True)
    ch = clickhouse.connect(settings.clickhouse_url)
    ch.command(f"DROP DATABASE IF EXISTS {DEMO_DB}")
    clickhouse.migrate(ch, DEMO_DB)
    loader = Loader(settings, ch, prefix=prefix, topics={t: TABLES[t] for t in names[1:]})
    stats = loader.drain()
    loader.close()
    print(f"loaded into ClickHouse ({settings.clickhouse_url}, database {DEMO_DB}): {stats.rows}")
    print(board(ch, DEMO_DB))
    kafka_io.delete_topics(settings, names, prefix=prefix)


if __name__ == "__main__":
    main()
