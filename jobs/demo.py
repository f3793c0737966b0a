"""`make demo`: start Kafka, replay a few hundred real ICU patients, run the sepsis NEWS2 job on
the Flink MiniCluster, load ClickHouse (embedded chdb), print an alert summary, stop services."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import FrameType

from jobs import kafka_io, replay, sepsis_news2
from jobs.settings import Settings
from sinks import clickhouse
from sinks.loader import Loader

SERVICES = Path(__file__).resolve().parents[1] / "deploy" / "local" / "services.sh"
DEMO_DB = "wardflow_demo"


def _services(*args: str) -> str:
    return subprocess.run([str(SERVICES), *args], check=True, capture_output=True, text=True).stdout


def summary(ch: object, db: str) -> str:
    q = ch.query  # type: ignore[attr-defined]
    lines = ["", "── alert summary " + "─" * 50]
    ((patients, readings),) = q(
        f"SELECT uniqExact(patient_token), count() FROM {db}.vitals_news2 FINAL"
    ).result_rows
    ((alerts, alerted),) = q(
        f"SELECT count(), uniqExact(patient_token) FROM {db}.alerts FINAL"
    ).result_rows
    lines.append(
        f"{readings} readings from {patients} patients → {alerts} alerts for {alerted} patients"
    )
    for unit, sev, n in q(
        f"SELECT unit_id, severity, count() FROM {db}.alerts FINAL "
        "GROUP BY ALL ORDER BY unit_id, severity"
    ).result_rows:
        lines.append(f"  {unit:<5} {sev:<7} {n:>5}")
    lines.append("first alerts:")
    for row in q(
        f"SELECT first_event_time, unit_id, left(patient_token, 8), severity, "
        f"score_first, score_last FROM {db}.alerts FINAL "
        "ORDER BY first_event_time LIMIT 5"
    ).result_rows:
        t, unit, tok, sev, s1, s2 = row
        lines.append(f"  {t:%Y-%m-%d %H:%M} {unit:<5} patient {tok}… {sev:<6} NEWS2 {s1}→{s2}")
    dead = q(
        f"SELECT reason_code, count() FROM {db}.dead_letters FINAL GROUP BY 1 ORDER BY 2 DESC"
    ).result_rows
    lines.append("dead letters: " + (", ".join(f"{c} {n}" for c, n in dead) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--file", type=Path, default=None, help="a PhysioNet 2019 format parquet")
    a = ap.parse_args(argv)
    settings = Settings.from_env(clickhouse_database=DEMO_DB, job_name="wardflow-demo")

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    started = "already running" not in _services("start", "kafka")
    try:
        kafka_io.wait_for_broker(settings)
        prefix = f"demo-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:4]}."
        kafka_io.ensure_topics(
            settings, sepsis_news2.INPUT_TOPICS + sepsis_news2.OUTPUT_TOPICS, prefix=prefix
        )
        n = replay.replay(
            settings,
            replay.ReplayPlan(patients=a.patients),
            path=a.file,
            topic=prefix + "vitals.observation.v1",
        )
        print(
            f"running {sepsis_news2.STAGE} on the Flink MiniCluster over {n} observations…",
            flush=True,
        )
        t0 = time.monotonic()
        sepsis_news2.run(settings, prefix=prefix, bounded=True)
        print(f"job drained its input in {time.monotonic() - t0:.1f} s", flush=True)
        ch = clickhouse.connect(settings.clickhouse_url)
        ch.command(f"DROP DATABASE IF EXISTS {DEMO_DB}")
        clickhouse.migrate(ch, DEMO_DB)
        loader = Loader(settings, ch, prefix=prefix)
        stats = loader.drain()
        loader.close()
        print(
            f"loaded into ClickHouse ({settings.clickhouse_url}, database {DEMO_DB}): {stats.rows}"
        )
        print(summary(ch, DEMO_DB))
        print(
            f"\nquery it: .venv/bin/python -m sinks.query "
            f'"SELECT unit_id, severity, count() FROM {DEMO_DB}.alerts FINAL GROUP BY ALL"'
        )
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if started:
            _services("stop", "kafka")
            print("stopped the Kafka broker this demo started")


if __name__ == "__main__":
    main()
