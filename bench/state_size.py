"""Patient-state size benchmark: the keyed state the screening job's patient-state windows hold
per patient, measured from its checkpoints as a day of charted minutes flows through them.

The three-minute real-time runs and the ten-minute soak of bench/device_rate.py cannot show how
the state grows over a day: a window that keeps rows holds a charted minute for as long as it
reaches back (the 24 h and 6 h RANGE windows before the state accumulated held 1.75 MB per
patient). This run feeds the job's own SQL (`jobs.sepsis_screen.state_views`: `state_sql` over
`jobs.screening.scoring.feature_events_sql`, the scoring variant, as the device-rate benchmark
runs it) with `--patients` patients' charted minutes, one row per patient-minute for `--hours` of
event time, from a JVM number sequence at full speed, with strings as long as the job's own
(32-hex patient tokens, `token@minute` chart ids, the device topic's name). Checkpoints go to a
folder of the run's own, heap state (`hashmap`, full snapshots); the size of each completed
checkpoint is sampled with the event time it roughly reached (the sequence runs at a steady
rate). Serialized bytes are a lower bound of what the same state takes on the JVM heap.

With `--rules`, the screening rules run on top, over the scored states as the job's stage two
reads them: `runs` as the job computes them (jobs/screening/rules.py: bounded-state run
aggregates, all in one OVER window; before 2026-12-04 `news2_sustained` was a MATCH_RECOGNIZE and
each run rule a window of its own), `patterns` with every pattern rule as MATCH_RECOGNIZE (the
form before the run rules). With
`--values steady` each patient's values hold near a baseline of its own, with a little noise
minute to minute, as a stable patient's charted minutes do (NEWS2 and SIRS mostly flat, the
worst case for a pattern that every flat reading starts); `cycling` (the default, the runs
before) draws every minute's values anew.

Result: bytes per patient from the largest checkpoint, and the extrapolation to 15,000 beds;
`--max-wall-s` cancels a run too slow to finish (`finished: false`: a lower bound).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
from pyflink.common import WatermarkStrategy
from pyflink.datastream.connectors.number_seq import NumberSequenceSource
from pyflink.table import DataTypes, Schema
from pyflink.table.expressions import col

from jobs.runtime.flink_env import plan_once, stream_table_env
from jobs.runtime.stays import VISIT_COLUMNS, ends_sql, register, stay_discharges_sql
from jobs.screening.rules import (
    RULES,
    hits_sql,
    register_rule_functions,
    rule_branches,
    window_sql,
)
from jobs.sepsis_screen import SCORES, state_views
from schemas import topics
from schemas.rows import quote
from schemas.settings import Settings
from udfs.sepsis import STATE_PARAMS

OUT = Path(__file__).resolve().parent / "results" / "state_size.json"
GIB = 1024**3

# Plausible values per parameter (a charted minute carries the monitor's parameters; the labs'
# are null, as in the device-rate feed between lab results).
DEVICE_VALUES = {
    "heart_rate_bpm": "CAST(60 + MOD(f0, 61) AS FLOAT)",
    "resp_rate_per_min": "CAST(10 + MOD(f0, 21) AS FLOAT)",
    "spo2_pct": "CAST(88 + MOD(f0, 13) AS FLOAT)",
    "sbp_mmhg": "CAST(90 + MOD(f0, 71) AS FLOAT)",
    "map_mmhg": "CAST(60 + MOD(f0, 41) AS FLOAT)",
    "temp_c": "CAST(36 + MOD(f0, 30) / 10.0 AS FLOAT)",
}
# A baseline per patient ({p}) and a few units of noise per minute ({m}).
STEADY_VALUES = {
    "heart_rate_bpm": "CAST(62 + MOD({p} * 13, 50) + MOD({m} * 7 + {p}, 5) AS FLOAT)",
    "resp_rate_per_min": "CAST(12 + MOD({p} * 7, 14) + MOD({m} * 3 + {p}, 3) AS FLOAT)",
    "spo2_pct": "CAST(91 + MOD({p} * 5, 9) + MOD({m}, 2) AS FLOAT)",
    "sbp_mmhg": "CAST(95 + MOD({p} * 11, 60) + MOD({m} * 5 + {p}, 6) AS FLOAT)",
    "map_mmhg": "CAST(65 + MOD({p} * 3, 30) + MOD({m} + {p}, 4) AS FLOAT)",
    "temp_c": "CAST(36.2 + MOD({p}, 25) / 10.0 + MOD({m}, 3) / 10.0 AS FLOAT)",
}


def events_table(
    env: Any, t_env: Any, patients: int, rows: int, steady: bool = False, stays: bool = False
) -> Any:
    """`events` as the job builds it, from a JVM number sequence (FLIP-27: its checkpoint holds
    the remaining range, not values): row `f0` is patient `f0 % patients` at minute
    `f0 / patients`. With `stays`, through the window that decides which discharge ends the
    patient's stay (jobs/runtime/stays.py, in a window of its own as the catalog job runs it;
    the screening job computes it in the window that counts arrivals: an upper bound there):
    its state per patient is in the checkpoints too (charted minutes only, so no ADT event)."""
    seq = env.from_source(
        NumberSequenceSource(0, rows - 1), WatermarkStrategy.no_watermarks(), "sequence"
    )
    screen = topics.SEPSIS_SCREEN.schema
    token = f"MD5(CAST(MOD(f0, {patients}) AS STRING))"
    minute = f"TO_TIMESTAMP_LTZ((f0 / {patients}) * 60000, 3)"
    patient, minute_no = f"MOD(f0, {patients})", f"(f0 / {patients})"
    values = (
        {p: sql.format(p=patient, m=minute_no) for p, sql in STEADY_VALUES.items()}
        if steady
        else DEVICE_VALUES
    )
    columns = {
        "record_id": f"CONCAT({token}, '@', DATE_FORMAT({minute}, 'yyyy-MM-dd''T''HH:mm:ss'))",
        "record_kind": "'vitals'",
        "patient_token": token,
        "facility_id": "'FAC-01'",
        "unit_id": "CONCAT('ICU-', CAST(MOD(f0, 12) AS STRING))",
        "event_time": minute,
        "measured_time": f"CAST({minute} AS TIMESTAMP(3))",
        **{
            p: values.get(
                p, f"CAST(NULL AS {screen.field(p).flink_type().replace(' NOT NULL', '')})"
            )
            for p in STATE_PARAMS
        },
        "is_discharge": "FALSE",
        "source_topic": f"'{topics.VITALS_DEVICE.name}'",
        "source_partition": "CAST(MOD(f0, 6) AS INT)",
        "source_offset": "f0",
        "quarantine": "CAST(NULL AS STRING)",
    }
    if stays:
        columns |= {c: f"CAST(NULL AS {t})" for c, t in VISIT_COLUMNS.items()}
    schema = Schema.new_builder().column("f0", DataTypes.BIGINT().not_null())
    for name, sql in columns.items():
        schema = schema.column_by_expression(name, sql)
    schema = schema.watermark("event_time", "event_time - INTERVAL '2' SECOND")
    table = t_env.from_data_stream(seq, schema.build())
    if not stays:
        return table.select(*[col(c) for c in columns])
    register(t_env)
    t_env.create_temporary_view("charted", table.select(*[col(c) for c in columns]))
    kept = ", ".join(
        f"{ends_sql()} AS is_discharge" if c == "is_discharge" else c
        for c in columns
        if c not in VISIT_COLUMNS
    )
    return t_env.sql_query(f"SELECT {kept} FROM ({stay_discharges_sql('SELECT * FROM charted')})")


def _checkpoint_bytes(root: Path) -> tuple[int, int] | None:
    """(number, bytes) of the newest completed checkpoint under `root` (`<job>/chk-N`, complete
    once its `_metadata` is written)."""
    done = [p for p in root.glob("*/chk-*") if (p / "_metadata").exists()]
    if not done:
        return None
    newest = max(done, key=lambda p: int(p.name.split("-")[1]))
    size = sum(f.stat().st_size for f in newest.rglob("*") if f.is_file())
    return int(newest.name.split("-")[1]), size


def rule_hits(t_env: Any, rules: str) -> None:
    """The views `screened` (the scored states, planned once, as the job's stage two reads them)
    and `hits`: the screening rules over them (`runs`: as the job computes them, one window and
    one correlate; `patterns`: every pattern rule as MATCH_RECOGNIZE)."""
    t_env.create_temporary_view("scoring", t_env.sql_query(f"SELECT s.*, {SCORES} FROM state AS s"))
    plan_once(t_env, "scoring", "planned")
    names = t_env.from_path("scoring").get_schema().get_field_names()
    cols = ", ".join(quote(n) for n in names if n != "event_time")
    t_env.create_temporary_view(
        "screened", t_env.sql_query(f"SELECT {cols}, rowtime AS event_time FROM planned")
    )
    t_env.create_temporary_view(
        "screened_vitals",
        t_env.sql_query("SELECT * FROM screened WHERE record_kind = 'vitals' OR is_discharge"),
    )
    register_rule_functions(t_env)
    if rules == "runs":
        ruled = f"({window_sql('screened', RULES)}) AS ruled"
        t_env.create_temporary_view("hits", t_env.sql_query(hits_sql(ruled, rule_branches(RULES))))
        return
    patterns = [dataclasses.replace(r, run=None) for r in RULES]
    t_env.create_temporary_view(
        "hits", t_env.sql_query(" UNION ALL ".join(r.sql() for r in patterns))
    )


def stateful_operators(*plans: str) -> dict[str, int]:
    """How many of each stateful operator the plans' execution plans hold (each keeps state)."""
    steps = [p.split("== Optimized Execution Plan ==")[-1] for p in plans]
    return {op: sum(s.count(f"{op}(") for s in steps) for op in ("OverAggregate", "Match")}


def run(
    patients: int,
    hours: float,
    interval_s: float,
    rules: str = "none",
    steady: bool = False,
    max_wall_s: float | None = None,
    stays: bool = False,
) -> dict[str, Any]:
    rows = int(patients * hours * 60)
    tmp = Path(tempfile.mkdtemp(prefix="wardflow-state-size-"))
    settings = Settings.from_env(
        job_name="bench-state-size",
        checkpoint_dir=str(tmp),
        checkpoint_interval_s=interval_s,
        state_backend="hashmap",
        delivery_guarantee="at-least-once",
        max_out_of_orderness_s=2,
    )
    try:
        env, t_env = stream_table_env(settings, connectors=False)
        t_env.create_temporary_view(
            "events", events_table(env, t_env, patients, rows, steady, stays)
        )
        state_views(t_env, scoring=True)  # as the device-rate benchmark runs the job
        t_env.execute_sql("CREATE TEMPORARY TABLE sink (s STRING) WITH ('connector' = 'blackhole')")
        # every column to the sink, or the planner prunes the windows' aggregates
        read = "state"
        if rules != "none":
            rule_hits(t_env, rules)
            read = "screened"  # the state, through the one round trip the rules read too
        query = f"SELECT CONCAT_WS('|', {_as_strings(t_env, read)}) FROM {read}"
        if rules != "none":
            query += f" UNION ALL SELECT CONCAT_WS('|', {_as_strings(t_env, 'hits')}) FROM hits"
        # the state's SQL is planned apart from the rules' when they run (plan_once)
        plans = [t_env.explain_sql(f"INSERT INTO sink {query}")]
        if rules != "none":
            plans.append(t_env.from_path("scoring").explain())
        operators = stateful_operators(*plans)
        result = t_env.execute_sql(f"INSERT INTO sink {query}")
        client = result.get_job_client()
        assert client is not None
        samples: list[dict[str, float]] = []
        t0 = time.monotonic()
        cut = False
        while not _finished(client):
            if max_wall_s is not None and time.monotonic() - t0 > max_wall_s:
                client.cancel().result()  # too slow to finish: keep what it reached
                cut = True
                break
            time.sleep(0.25)
            chk = _checkpoint_bytes(tmp / settings.job_name)
            if chk and (not samples or samples[-1]["checkpoint"] != chk[0]):
                samples.append(
                    {"checkpoint": chk[0], "t_s": round(time.monotonic() - t0, 1), "bytes": chk[1]}
                )
                print(json.dumps(samples[-1]), flush=True)
        wall_s = time.monotonic() - t0
        for s in samples if not cut else ():  # a steady rate: the event time reached, roughly
            s["event_hours_about"] = round(hours * min(1.0, s["t_s"] / wall_s), 1)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "rows": rows,
        "wall_s": round(wall_s, 1),
        "finished": not cut,
        "stateful_operators": operators,
        "samples": samples,
    }


def _as_strings(t_env: Any, view: str) -> str:
    names = t_env.from_path(view).get_schema().get_field_names()
    return ", ".join(f"CAST({quote(c)} AS STRING)" for c in names)


def _finished(client: Any) -> bool:
    """Whether the job ended (a local job's MiniCluster shuts down with it)."""
    try:
        return bool(client.get_job_status().result().is_globally_terminal_state())
    except Exception:  # the MiniCluster is gone: the job ended
        return True


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=200)
    ap.add_argument("--hours", type=float, default=36.0, help="event time fed through")
    ap.add_argument("--checkpoint-s", type=float, default=2.0)
    ap.add_argument("--rules", choices=("none", "runs", "patterns"), default="none")
    ap.add_argument("--values", choices=("cycling", "steady"), default="cycling")
    ap.add_argument(
        "--max-wall-s", type=float, help="cancel after this long (the result says `finished`)"
    )
    ap.add_argument(
        "--stays", action="store_true", help="through the stay window (jobs/runtime/stays.py)"
    )
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args(argv)
    r = run(
        a.patients,
        a.hours,
        a.checkpoint_s,
        a.rules,
        a.values == "steady",
        a.max_wall_s,
        a.stays,
    )
    # the largest checkpoint: once the sequence ends, the final watermark empties the windows
    # (a run cut short: the state it had reached, a lower bound)
    per_patient = max((s["bytes"] for s in r["samples"]), default=0) / a.patients
    out = {
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / GIB, 1),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "patients": a.patients,
        "hours": a.hours,
        "rules": a.rules,
        "values": a.values,
        "stays": a.stays,
        **r,
        "bytes_per_patient": round(per_patient),
        "gib_at_15k_beds": round(per_patient * 15000 / GIB, 2),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k != "samples"}, indent=1))


if __name__ == "__main__":
    main()
