"""`make demo`: start Kafka, replay a few hundred real ICU patients (charted vitals, labs,
discharges) and simulate a few hundred bedside monitors at 1 Hz (device-rate numerics with
artefacts, from other stretches of real stays), run the sepsis screening job on the Flink
MiniCluster, load ClickHouse (embedded chdb), print an alert and charting summary, stop the
services it started."""

from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta
from pathlib import Path
from types import FrameType

from jobs import sepsis_screen
from jobs.feeds import device_sim, replay
from jobs.runtime import kafka_io
from jobs.runtime.watch import exit_on_failure
from schemas.settings import Settings
from sinks import clickhouse, dims
from sinks.loader import TABLES, Loader
from training.registry import bootstrap
from udfs.registry import Registry

SERVICES = Path(__file__).resolve().parent / "services.sh"
DEMO_DB = "wardflow_demo"


def _services(*args: str) -> str:
    return subprocess.run([str(SERVICES), *args], check=True, capture_output=True, text=True).stdout


def summary(ch: object, db: str) -> str:
    q = ch.query  # type: ignore[attr-defined]
    lines = ["", "── alert summary " + "─" * 50]
    ((patients, states),) = q(
        f"SELECT uniqExact(patient_token), count() FROM {db}.sepsis_screen FINAL"
    ).result_rows
    ((alerts, alerted, events),) = q(
        f"SELECT uniqExact(alert_id), uniqExact(patient_token), count() "
        f"FROM {db}.alert_events FINAL"
    ).result_rows
    lines.append(
        f"{states} screened states of {patients} patients → {alerts} alerts for {alerted} "
        f"patients ({events} lifecycle events)"
    )
    head = ("rule", "raised", "escalated", "resolved", "hits/alert")
    lines.append("  {:<26} {:>6} {:>9} {:>8} {:>10}".format(*head))
    for rule, raised, escalated, resolved, hits in q(
        f"SELECT rule_id, countIf(action = 'raise'), countIf(action = 'escalate'), "
        f"countIf(action = 'resolve'), round(avgIf(hit_count, action = 'resolve'), 1) "
        f"FROM {db}.alert_events FINAL GROUP BY rule_id ORDER BY rule_id"
    ).result_rows:
        lines.append(f"  {rule:<26} {raised:>6} {escalated:>9} {resolved:>8} {hits:>10}")
    lines.append("first alerts:")
    for t, unit, tok, rule, sev, score_name, score in q(
        f"SELECT event_time, unit_id, left(patient_token, 8), rule_id, severity, score_name, "
        f"score_value FROM {db}.alert_events FINAL WHERE action = 'raise' "
        "ORDER BY event_time, rule_id LIMIT 5"
    ).result_rows:
        lines.append(
            f"  {t:%Y-%m-%d %H:%M} {unit:<5} patient {tok}… {rule} ({sev}, {score_name} {score})"
        )
    models = q(
        f"SELECT role, model_version, count(), round(avg(risk), 4), countIf(above_threshold) "
        f"FROM {db}.model_scores FINAL GROUP BY ALL ORDER BY role DESC"
    ).result_rows
    for role, version, n, mean, above in models:
        lines.append(
            f"model sepsis-risk {version} ({role}): {n} states scored, mean risk {mean}, "
            f"{above} at or above its threshold"
        )
    ((minutes, beds, records, hr_valid, spo2_valid, hr_charted, spo2_charted),) = q(
        f"SELECT count(), uniqExact(bed_id), sum(records), sum(heart_rate_bpm_valid_s), "
        f"sum(spo2_pct_valid_s), countIf(heart_rate_bpm IS NOT NULL), "
        f"countIf(spo2_pct IS NOT NULL) FROM {db}.vitals_charted FINAL"
    ).result_rows
    if minutes:
        lines.append(
            f"device numerics: {records} records from {beds} monitors → {minutes} charted "
            f"patient-minutes; valid seconds HR {hr_valid / records:.1%}, SpO2 "
            f"{spo2_valid / records:.1%} (artefacts left out); charted HR in "
            f"{hr_charted / minutes:.1%}, SpO2 in {spo2_charted / minutes:.1%} of minutes"
        )
    dead = q(
        f"SELECT reason_code, count() FROM {db}.dead_letters FINAL GROUP BY 1 ORDER BY 2 DESC"
    ).result_rows
    lines.append("dead letters: " + (", ".join(f"{c} {n}" for c, n in dead) or "none"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--file", type=Path, default=None, help="a PhysioNet 2019 format parquet")
    ap.add_argument("--beds", type=int, default=300, help="simulated monitors at 1 Hz")
    ap.add_argument("--device-minutes", type=int, default=20, help="simulated monitor time")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a, clickhouse_database=DEMO_DB, job_name="wardflow-demo")

    def _interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    started = "already running" not in _services("start", "kafka")
    try:
        kafka_io.wait_for_broker(settings)
        prefix = f"demo-{time.strftime('%Y%m%d%H%M%S')}-{uuid.uuid4().hex[:4]}."
        kafka_io.ensure_topics(
            settings,
            sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics,
            prefix=prefix,
        )
        plan = replay.ReplayPlan(patients=a.patients)
        df, source = replay.load_physionet(a.file, settings)
        chosen = replay.select_patients(df, plan)
        key = settings.require_phi_key()
        items = replay.clinical_stream(chosen, plan, key, source)
        if settings.scoring and bootstrap(Registry(settings.model_registry), settings.model_name):
            print(f"registered the bundled models in {settings.model_registry}")
        if settings.scoring:
            from feature_store import repo  # importing feast takes seconds

            store = repo.open_store(settings.feast_dir, settings.feast_online_store)
            repo.push_static(store, replay.static_features(chosen, plan, key, source))
        n = replay.produce_stream(settings, items, prefix=prefix, total=len(items))
        # The monitors' patients are admitted again, 60 days after the replay's admissions.
        devices = device_sim.DevicePlan(
            beds=a.beds,
            seconds=a.device_minutes * 60,
            start=plan.base_time + timedelta(days=60),
            corrupt_rate=1e-4,
        )
        dev = device_sim.produce(settings, devices, prefix=prefix, path=a.file)
        print(
            f"running {sepsis_screen.STAGE} on the Flink MiniCluster over {n} replayed vitals, "
            f"lab and ADT records and {int(dev['device_records'])} device records "
            f"({a.beds} monitors × {a.device_minutes} min at 1 Hz)…",
            flush=True,
        )
        t0 = time.monotonic()
        with exit_on_failure():  # which dependency failed, the logs, the restarts; its exit status
            sepsis_screen.JOB.run(settings, prefix=prefix, bounded=True)
        print(f"job drained its input in {time.monotonic() - t0:.1f} s", flush=True)
        ch = clickhouse.connect(settings.clickhouse_url)
        ch.command(f"DROP DATABASE IF EXISTS {DEMO_DB}")
        clickhouse.migrate(ch, DEMO_DB)
        registry = Registry(settings.model_registry)
        dims.upsert_model_versions(ch, DEMO_DB, dims.model_versions(registry, settings.model_name))
        topic_names = {t: TABLES[t] for t in sepsis_screen.JOB.output_topics}
        loader = Loader(settings, ch, prefix=prefix, topics=topic_names)
        stats = loader.drain()
        loader.close()
        print(
            f"loaded into ClickHouse ({settings.clickhouse_url}, database {DEMO_DB}): {stats.rows}"
        )
        print(summary(ch, DEMO_DB))
        print(
            f"\nquery it: .venv/bin/python -m sinks.query "
            f'"SELECT unit_id, rule_id, count() FROM {DEMO_DB}.alert_events FINAL '
            "WHERE action = 'raise' GROUP BY ALL ORDER BY ALL\""
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
