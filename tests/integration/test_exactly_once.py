"""Exactly-once through crashes: the screening job runs unbounded, as in production, over
charted vitals, labs and ADT of real patients and 1 Hz monitor numerics of others, and is
killed (SIGKILL to its whole process: client, JVM MiniCluster and Python workers) at random
points, each time restarted from its latest retained checkpoint; the Kafka broker is restarted
under it once. At the end it is stopped with SIGTERM, which cancels it (aborting its open
transaction). Its committed output must equal an uninterrupted run's (the offline reference):
no alert lost, none twice, each charted minute once, and ClickHouse the same.

Watermarks are not part of a checkpoint: a restarted job's event time moves on with the records
that arrive after it. So, as a live feed would, the stream goes on after the last restart: a
record 30 days later on every partition of every input topic moves the watermark past the end,
as the end of a bounded run would, and every window and alert closes.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from jobs import sepsis_screen
from jobs.feeds import device_sim, replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from sinks import clickhouse as ch
from sinks.loader import Loader
from tests import reference_charting
from tests import reference_screen as ref
from tests.conftest import REPO, shell_env
from tests.streams import keys_written, produce, sentinels

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PATIENTS = 150
KILLS = 2  # the second, after the broker is restarted under the job
MONITOR_BEDS, MONITOR_S = 10, 20 * 60


def _start(prefix: str, env: dict[str, str], restore: bool, log: Path) -> subprocess.Popen[bytes]:
    args = [sys.executable, "-m", "jobs.sepsis_screen", "--topic-prefix", prefix]
    runs = len(list(log.parent.glob("flink-logs-*")))
    with log.open("ab") as out:
        return subprocess.Popen(
            [*args, *(["--restore", "latest"] if restore else [])],
            env={**env, "FLINK_LOG_DIR": str(log.parent / f"flink-logs-{runs}")},
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the JVM and workers die with it
        )


def _checkpoints(root: Path) -> set[Path]:
    return {p.parent for p in root.glob("*/*/chk-*/_metadata")}


def _wait_for_new_checkpoint(root: Path, proc: subprocess.Popen[bytes]) -> None:
    before = _checkpoints(root)
    deadline = time.monotonic() + 180
    while not _checkpoints(root) - before:
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"the job ended or made no checkpoint (rc {proc.poll()})")
        time.sleep(0.2)


@pytest.fixture(scope="module")
def crashed(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    prefix = f"t-eo-{uuid.uuid4().hex[:8]}."
    topic_names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(kafka, topic_names, prefix=prefix)
    plan = replay.ReplayPlan(patients=PATIENTS, seed=7)
    df, source = replay.load_physionet(None, kafka)
    key = kafka.require_phi_key()
    items = replay.clinical_stream(replay.select_patients(df, plan), plan, key, source)
    # Monitors over the last minutes of the charted feed: their minutes are ahead of event time
    # while it is held by the charted feed, so they never hold it back.
    last = max(r["event_time"] for _, r in items).replace(second=0, microsecond=0)
    monitors = device_sim.DevicePlan(
        beds=MONITOR_BEDS, seconds=MONITOR_S, seed=7, start=last - timedelta(seconds=MONITOR_S)
    )
    items += device_sim.clinical_records(df, monitors, key, source)
    device = [r for sec in device_sim.device_seconds(df, monitors, key, source) for r in sec]
    monitored = [(topics.VITALS_DEVICE.name, r) for r in device]
    replay.produce_stream(
        kafka, sorted([*items, *monitored], key=lambda tr: tr[1]["event_time"]),
        prefix=prefix, progress=False,
    )  # fmt: skip
    ends = sentinels([*items, *monitored])
    charted = reference_charting.charted(device)
    # A device sentinel's minute is never charted: its own record holds the watermark before it.
    clinical_ends = [(t, r) for _, t, r in ends if t != topics.VITALS_DEVICE.name]
    reference_items = [*items, *reference_charting.as_observations(charted)]
    reference_items.sort(key=lambda tr: tr[1]["event_time"])
    rows, events = ref.run([*reference_items, *clinical_ends])
    # The end records move the watermark to just before themselves: they are not screened yet.
    rows = [r for r in rows if not r.patient_token.startswith("sentinel-")]
    expected = {
        prefix + topics.SEPSIS_SCREEN.name: len(rows),
        prefix + topics.ALERT_V2.name: len(events),
        prefix + topics.VITALS_CHARTED.name: len(charted),
    }

    root = tmp_path_factory.mktemp("eo-checkpoints")
    log = root / "job.log"
    env = shell_env(
        dataclasses.replace(
            kafka,
            checkpoint_dir=str(root),
            checkpoint_interval_s=1.0,
            # Under a restart's load a monitor partition not fetched yet must not be taken for
            # idle.
            source_idle_timeout_s=15,
            scoring=False,  # the rules' alerts, against the rules-only reference
        )
    )
    seed = os.environ.get("WARDFLOW_FAULT_SEED", str(time.time_ns()))
    rng = random.Random(seed)
    committed: Counter[str] = Counter()  # records readable read_committed, per topic
    watcher = kafka_io.TopicWatcher(
        kafka, list(expected), lambda topic, _, __: committed.update([topic])
    )
    proc = _start(prefix, env, restore=False, log=log)
    try:
        for kill in range(KILLS):
            _wait_for_new_checkpoint(root, proc)
            if kill == 1:  # the broker goes away under a running job and comes back
                subprocess.run(
                    [str(REPO / "deploy/local/services.sh"), "stop", "kafka"], check=True
                )
                time.sleep(2)
                subprocess.run(
                    [str(REPO / "deploy/local/services.sh"), "start", "kafka"], check=True
                )
                kafka_io.wait_for_broker(kafka)
                _wait_for_new_checkpoint(root, proc)
            time.sleep(rng.uniform(0.0, 3.0))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            proc = _start(prefix, env, restore=True, log=log)
        _wait_for_new_checkpoint(root, proc)
        # The monitors' end first: their last minutes are charted only when the monitors' event
        # time passes them. Were the feed quiet past the idle timeout while the others' end moved
        # event time past those minutes, they would reach the patient state behind its watermark.
        charted_topic = prefix + topics.VITALS_CHARTED.name
        produce(kafka, prefix, [e for e in ends if e[1] == topics.VITALS_DEVICE.name])
        deadline = time.monotonic() + 300
        while committed[charted_topic] < expected[charted_topic]:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"charting incomplete: {dict(committed)} of {expected}")
            time.sleep(0.5)
        produce(kafka, prefix, [e for e in ends if e[1] != topics.VITALS_DEVICE.name])
        deadline = time.monotonic() + 300
        while any(committed[t] < n for t, n in expected.items()):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"output incomplete: {dict(committed)} of {expected}")
            time.sleep(0.5)
        time.sleep(3)  # a few more checkpoints: anything twice would show by now
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    finally:
        watcher.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    yield {
        "settings": kafka, "prefix": prefix, "seed": seed, "rows": rows, "events": events,
        "charted": charted,
    }  # fmt: skip
    kafka_io.delete_topics(kafka, topic_names, prefix=prefix)


def test_committed_alerts_equal_an_uninterrupted_run_none_lost_none_twice(
    crashed: dict[str, Any],
) -> None:
    got = keys_written(crashed["settings"], crashed["prefix"], topics.ALERT_V2)
    want = Counter(e["alert_event_id"] for e in crashed["events"])
    assert want and max(got.values()) == 1
    assert got == want


def test_committed_screened_states_are_each_written_exactly_once(crashed: dict[str, Any]) -> None:
    got = keys_written(crashed["settings"], crashed["prefix"], topics.SEPSIS_SCREEN)
    assert got == Counter(r.record_id for r in crashed["rows"])


def test_committed_charted_minutes_are_each_written_once_and_equal_the_pandas_charting(
    crashed: dict[str, Any],
) -> None:
    s, prefix = crashed["settings"], crashed["prefix"]
    got = list(
        kafka_io.read_records(s, prefix + topics.VITALS_CHARTED.name, topics.VITALS_CHARTED.name)
    )
    assert Counter(r["chart_id"] for r in got) == Counter(crashed["charted"].chart_id)
    want = crashed["charted"].set_index("chart_id")
    for r in got:
        assert r["records"] == want.at[r["chart_id"], "records"]
        assert r["heart_rate_bpm_valid_s"] == want.at[r["chart_id"], "heart_rate_bpm_valid_s"]


def test_clickhouse_holds_each_alert_event_once(crashed: dict[str, Any], clickhouse: Any) -> None:
    s = dataclasses.replace(
        crashed["settings"], clickhouse_database=crashed["settings"].clickhouse_database + "_eo"
    )
    db = s.clickhouse_database
    ch.migrate(clickhouse, db)
    for group in ("first", "again"):  # a second load of the same topic changes nothing
        loader = Loader(
            s, clickhouse, prefix=crashed["prefix"], topics={topics.ALERT_V2.name: "alert_events"},
            group_id=group,
        )  # fmt: skip
        loader.drain()
        loader.close()
    n = clickhouse.query(f"SELECT count() FROM {db}.alert_events FINAL").result_rows[0][0]
    assert n == len(crashed["events"])
    clickhouse.command(f"DROP DATABASE {db}")
