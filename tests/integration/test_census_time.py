"""Bad and awkward ADT input through one run of the real census job: duplicates, unknown units,
a discharge without an admission, out-of-order and late events, undecodable bytes, cancels and
updates. Each crafted patient's expected stays are written by hand below.

Topics have one partition and the source emits a watermark after every record, so whether an
event is late depends only on the order it was produced in.
"""

from __future__ import annotations

import dataclasses
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from jobs import bed_census
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import codec, load_schema, topics
from schemas.settings import Settings
from sinks.loader import TABLES, Loader
from tests import reference_census as ref
from tests.streams import RunningJob, until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 5, 4, 8, 0, tzinfo=UTC)
M = timedelta(minutes=1)
ADT = topics.ADT_EVENT.name
CAPACITY = {"facilities": {"H": {"ICU": 2, "W4": 3}}}


def adt(i: str, kind: str, patient: str, at: timedelta, unit: str | None = None) -> dict:
    rec: dict[str, Any] = {f.name: None for f in load_schema(ADT).fields if f.nullable}
    return rec | {
        "event_id": i,
        "event_type": kind,
        "source_message_type": "test",
        "patient_token": patient,
        "facility_id": "H",
        "unit_id": unit,
        "event_time": T0 + at,
        "source": "test",
    }


# Production order. Minutes after T0; the watermark trails the newest event by 60 s.
PRODUCED = [
    adt("p1-a", "admit", "p1", 0.5 * M, "ICU"),
    adt("p2-a", "admit", "p2", 5 * M, "ICU"),
    adt("p2-u", "update", "p2", 6 * M, "ICU"),  # same unit: no change
    adt("p1-t", "transfer", "p1", 10 * M, "W4"),
    adt("p3-a", "admit", "p3", 20 * M, "W4"),
    adt("p3-a", "admit", "p3", 20 * M, "W4"),  # duplicate
    adt("p4-a", "admit", "p4", 21 * M, "NOPE"),  # unknown unit
    adt("p5-d", "discharge", "p5", 22 * M),  # never admitted
    adt("p9-a", "admit", "p9", 30 * M, "ICU"),
    adt("p7-a", "admit", "p7", 40.5 * M, "W4"),
    adt("p6-a", "admit", "p6", 40 * M, "W4"),  # 30 s out of order: within the bound
    adt("p9-c", "cancel_admit", "p9", 45 * M),
    adt("p10-a", "admit", "p10", 50 * M, "ICU"),
    adt("p8-a", "admit", "p8", 15 * M, "W4"),  # 35 min behind: late
    b"\x00not avro",
    adt("p2-d", "discharge", "p2", 60 * M),
    adt("p10-d", "discharge", "p10", 65 * M),
    adt("p2-c", "cancel_discharge", "p2", 70 * M),
    adt("p10-c", "cancel_transfer", "p10", 72 * M),  # nothing to cancel
    adt("p1-d", "discharge", "p1", 120 * M),
    adt("p2-d2", "discharge", "p2", 180 * M),
]
STAYS = [  # (unit, in, out) by hand; None = still there
    ("ICU", 0.5, 10),  # p1
    ("W4", 10, 120),
    ("ICU", 5, 60),  # p2, discharge cancelled at 70
    ("ICU", 70, 180),
    ("W4", 20, None),  # p3
    ("ICU", 30, 45),  # p9, admission cancelled
    ("W4", 40.5, None),  # p7
    ("W4", 40, None),  # p6
    ("ICU", 50, 65),  # p10
]
DEAD = {"duplicate", "unknown_unit", "not_admitted", "late", "undecodable", "nothing_to_cancel"}


def expected(unit: str | None) -> ref.StepCensus:
    rows = [s for s in STAYS if unit is None or s[0] == unit]
    table = pd.DataFrame(
        {
            "intime": [T0 + s[1] * M for s in rows],
            "outtime": [T0 + s[2] * M if s[2] is not None else pd.NaT for s in rows],
        }
    )
    table["intime"] = pd.to_datetime(table.intime, utc=True).dt.tz_localize(None)
    table["outtime"] = pd.to_datetime(table.outtime, utc=True).dt.tz_localize(None)
    return ref.StepCensus.from_stays(table)


@pytest.fixture(scope="module")
def run(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    cap = Path(tmp_path_factory.mktemp("cap")) / "capacity.json"
    cap.write_text(json.dumps(CAPACITY))
    s = dataclasses.replace(
        kafka, capacity_file=cap, watermark_on_event=True, job_name="census-time-test"
    )
    prefix = f"t-ctime-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(s, [ADT, *bed_census.JOB.output_topics], prefix=prefix, partitions=1)
    p = kafka_io.producer(s)
    schema = load_schema(ADT)
    newest = 0
    for rec in PRODUCED:
        if isinstance(rec, bytes):  # stamped with the newest time so far: not late
            replay.produce_raw(p, prefix + ADT, b"x", rec, newest)
            continue
        ts = codec.epoch_ms(codec.record_time(rec))
        newest = max(newest, ts)
        value = codec.encode(schema, rec)
        replay.produce_raw(p, prefix + ADT, rec["patient_token"].encode(), value, ts)
    p.flush_or_raise(30)
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    out: dict[str, Any] = {
        t: kafka_io.read_records(s, prefix + t, t) for t in bed_census.JOB.output_topics
    }
    yield out | {"settings": s, "prefix": prefix}
    kafka_io.delete_topics(s, [ADT, *bed_census.JOB.output_topics], prefix=prefix)


def _job(rows: list[dict], unit: str) -> tuple:
    mine = [r for r in rows if r["unit_id"] == unit]
    return ref.from_rows(
        (int(r["window_end"].timestamp() * 1000) for r in mine), (r["occupied_beds"] for r in mine)
    )


def test_census_equals_the_hand_written_stays_at_every_minute_boundary(run: dict) -> None:
    census = run[topics.CENSUS_UNIT.name]
    for unit in ("ICU", "W4"):
        assert ref.mismatches(expected(unit), *_job(census, unit)) == [], unit
    assert ref.mismatches(expected(None), *_job(census, "ALL")) == []
    assert min(r["occupied_beds"] for r in census) >= 0


def test_bad_events_are_dead_lettered_with_their_reason_and_counts_add_up(run: dict) -> None:
    letters = run[topics.DEAD_LETTER.name]
    assert Counter(d["reason_code"] for d in letters) == Counter({r: 1 for r in DEAD})
    assert all(d["reason"] and d["stage"] == "bed_census" for d in letters)
    assert len(PRODUCED) == len(run[topics.CENSUS_EVENT.name]) + len(letters)
    late = next(d for d in letters if d["reason_code"] == "late")
    assert codec.decode(load_schema(ADT), late["payload"])["event_id"] == "p8-a"


def test_a_full_unit_raises_the_surge_level(run: dict) -> None:
    icu = {r["window_end"]: r for r in run[topics.CENSUS_UNIT.name] if r["unit_id"] == "ICU"}
    full = icu[T0 + 6 * M]  # p1 and p2 in 2 beds
    assert (full["occupied_beds"], full["occupancy_pct"], full["surge_label"]) == (
        2,
        100.0,
        "critical",
    )
    w4 = [r for r in run[topics.CENSUS_UNIT.name] if r["unit_id"] == "W4"]
    assert max(r["occupied_beds"] for r in w4) == 4 and max(r["surge_level"] for r in w4) == 3


def test_hourly_flow_counts_arrivals_discharges_and_cancels(run: dict) -> None:
    flows = {
        (f["unit_id"], f["window_start"]): f
        for f in run[topics.CENSUS_FLOW.name]
        if f["scope"] == "unit"
    }
    icu0 = flows[("ICU", T0)]
    assert (icu0["arrivals"], icu0["transfers_out"], icu0["cancels"]) == (4, 1, 1)
    icu1 = flows[("ICU", T0 + 60 * M)]
    assert (icu1["discharges"], icu1["cancels"]) == (2, 1)


def test_census_loads_into_clickhouse_idempotently_and_answers_as_of_a_time(
    run: dict, clickhouse: Any
) -> None:
    db = run["settings"].clickhouse_database
    topic_names = {t: TABLES[t] for t in bed_census.JOB.output_topics}
    for group in ("first", "again"):
        loader = Loader(
            run["settings"], clickhouse, prefix=run["prefix"], topics=topic_names, group_id=group
        )
        loader.drain()
        loader.close()
    for topic in (topics.CENSUS_UNIT.name, topics.CENSUS_FLOW.name, topics.CENSUS_EVENT.name):
        n = clickhouse.query(f"SELECT count() FROM {db}.{TABLES[topic]} FINAL").result_rows
        assert n[0][0] == len(run[topic]), topic

    def icu_at(minutes: float) -> int:
        rows = clickhouse.query(
            f"""SELECT argMax(occupied_beds, window_end) FROM {db}.census_unit FINAL
                WHERE facility_id = 'H' AND unit_id = 'ICU' AND window_end <= %(t)s""",
            parameters={"t": T0 + minutes * M},
        ).result_rows
        return int(rows[0][0])

    assert [icu_at(m) for m in (6, 11, 31, 46, 61, 71, 181)] == [2, 1, 2, 1, 1, 1, 0]


def test_a_patient_silent_for_longer_than_the_state_ttl_keeps_their_bed(
    kafka: Settings, tmp_path: Path
) -> None:
    """The platform's idle-state TTL (here 1 s of processing time) must not touch the census:
    an ICU patient can go days without an ADT event. The admission is applied, the job idles
    3 s, then the discharge must find the patient and the unit's census must go back to 0."""
    cap = tmp_path / "capacity.json"
    cap.write_text(json.dumps(CAPACITY))
    s = dataclasses.replace(
        kafka,
        capacity_file=cap,
        watermark_on_event=True,
        state_ttl_h=1 / 3600,
        delivery_guarantee="at-least-once",
        job_name="census-ttl-test",
    )
    prefix = f"t-cttl-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(s, [ADT, *bed_census.JOB.output_topics], prefix=prefix, partitions=1)
    schema = load_schema(ADT)
    p = kafka_io.producer(s)

    def send(*recs: dict[str, Any]) -> None:
        for rec in recs:
            ts = codec.epoch_ms(codec.record_time(rec))
            value = codec.encode(schema, rec)
            replay.produce_raw(p, prefix + ADT, rec["patient_token"].encode(), value, ts)
        p.flush_or_raise(30)

    def read(topic: topics.Topic) -> list[dict[str, Any]]:
        return kafka_io.read_records(s, prefix + topic.name, topic.name)

    def icu() -> list[int]:
        rows = [r for r in read(topics.CENSUS_UNIT) if r["unit_id"] == "ICU"]
        return [r["occupied_beds"] for r in sorted(rows, key=lambda r: r["window_end"])]

    job = RunningJob.submit(bed_census.JOB.pipeline(s, prefix=prefix), s.job_name)
    try:
        # q's admission two minutes on moves the watermark past p's (60 s out-of-orderness)
        send(adt("p-a", "admit", "p", 0 * M, "ICU"), adt("q-a", "admit", "q", 2 * M, "W4"))
        until("admission of p", lambda: read(topics.CENSUS_EVENT), job=job)
        time.sleep(3)  # three TTLs of silence for p's state
        send(adt("p-d", "discharge", "p", 10 * M), adt("r-a", "admit", "r", 20 * M, "W4"))
        until("ICU census after p's discharge", lambda: len(icu()) >= 2, job=job)
    finally:
        job.client.cancel().result()
    done = {e["event_id"]: e for e in read(topics.CENSUS_EVENT)}
    letters = read(topics.DEAD_LETTER)
    census = icu()
    kafka_io.delete_topics(s, [ADT, *bed_census.JOB.output_topics], prefix=prefix)
    assert letters == []
    assert done["p-d"]["outcome"] == "applied"
    assert census == [1, 0]
