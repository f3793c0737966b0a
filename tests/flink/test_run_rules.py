"""The run rules (jobs/screening/rules.py: `news2_sustained_medium`, `news2_rising`,
`news2_red_score`, `sirs_persistent`), computed by JVM aggregates with bounded state over all of a
patient's states, fire on exactly the records where Flink's own MATCH_RECOGNIZE of their patterns
(over the states each pattern reads) completes a match, and cite the start they promise, record and
time: the reading before, where the rise began (the last record at the lowest score among the starts
the record completes) and where the run of SIRS ≥ 2 began. All run over the same drawn patient
streams: scores that climb, fall and hold, a missing score now and then, records at the same instant
(with record ids out of time order), labs and discharges between readings, and gaps on both sides of
the 3-, 4- and 6-hour bounds. Records of one instant share their scores, as a patient's states of
one instant do."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyflink.common import Types
from pyflink.table import DataTypes, Schema

from jobs.runtime.flink_env import stream_table_env
from jobs.screening.rules import (
    NEWS2_RED_SCORE,
    NEWS2_RISING,
    NEWS2_SUSTAINED,
    SIRS_PERSISTENT,
    Rule,
    register_rule_functions,
)
from jobs.sepsis_screen import state_row
from schemas.rows import SQL_TYPES, quote
from schemas.settings import Settings

pytestmark = pytest.mark.slow
GAPS_MIN = np.array(
    [0, 0, 1, 5, 30, 60, 60, 60, 119, 120, 121, 179, 180, 181, 239, 240, 241, 359, 360, 361]
)
GIVEN = (
    "record_id",
    "record_kind",
    "patient_token",
    "news2_score",
    "sirs_count",
    "news2_red_flag",
    "is_discharge",
)


def _rows(patients: int = 80) -> pd.DataFrame:
    """Each patient's records: NEWS2 and SIRS as sticky random walks (records of the same
    instant share them, as a patient's states of one instant do), kinds drawn; a red score
    drawn where NEWS2 is 3 or more (one parameter can score 3 only then)."""
    rng = np.random.default_rng(17)
    out = []
    for p in range(patients):
        t, news2, sirs = 1_767_225_600_000, int(rng.integers(0, 4)), int(rng.integers(0, 4))
        missing, red = False, False
        for _ in range(60):
            gap = int(rng.choice(GAPS_MIN))
            t += gap * 60_000
            if gap:
                news2 = int(np.clip(news2 + rng.choice([-2, -1, 0, 0, 0, 0, 1, 1, 2, 3]), 0, 20))
                sirs = int(np.clip(sirs + rng.choice([-1, 0, 0, 0, 0, 0, 1]), 0, 4))
                missing = rng.random() < 0.03
                red = news2 >= 3 and rng.random() < 0.8
            kind = str(rng.choice(["vitals"] * 8 + ["labs"] * 2 + ["adt"]))
            out.append(
                {
                    "record_id": f"r{rng.integers(10**9):09d}",
                    "record_kind": kind,
                    "patient_token": f"p{p:03d}",
                    "news2_score": None if missing else news2,
                    "sirs_count": None if missing else sirs,
                    "news2_red_flag": None if missing else red,
                    "is_discharge": kind == "adt" and rng.random() < 0.5,
                    "ts_ms": t,
                }
            )
    # in event-time order, as the job's stage two reads its states behind the watermark
    return pd.DataFrame(out).sort_values("ts_ms", kind="stable").reset_index(drop=True)


def _hits(settings: Settings, rows: pd.DataFrame, rule: Rule) -> pd.DataFrame:
    """The rule's hits (patient, first and last record) over `rows` as screened states."""
    env, t_env = stream_table_env(settings, connectors=False)
    register_rule_functions(t_env)
    types = [Types.STRING()] * 3 + [Types.INT()] * 2 + [Types.BOOLEAN()] * 2 + [Types.LONG()]

    def value(v: Any) -> Any:
        return None if pd.isna(v) else int(v) if isinstance(v, float) else v

    stream = env.from_collection(
        [tuple(map(value, r)) for r in rows[[*GIVEN, "ts_ms"]].itertuples(index=False)],
        Types.ROW_NAMED([*GIVEN, "ts_ms"], types),
    )
    schema = Schema.new_builder()
    for name, kind in zip(GIVEN, ["STRING"] * 3 + ["INT"] * 2 + ["BOOLEAN"] * 2, strict=True):
        schema = schema.column(name, getattr(DataTypes, kind)())
    schema = (
        schema.column("ts_ms", DataTypes.BIGINT())
        .column_by_expression("event_time", "TO_TIMESTAMP_LTZ(ts_ms, 3)")
        .watermark("event_time", "event_time - INTERVAL '1' SECOND")
    )
    t_env.create_temporary_view("given", t_env.from_data_stream(stream, schema.build()))
    absent = ", ".join(
        f"CAST(NULL AS {SQL_TYPES[f.kind]}) AS {quote(f.name)}"
        for f in state_row(False).fields
        if f.name not in (*GIVEN, "event_time")
    )
    t_env.create_temporary_view("screened", t_env.sql_query(f"SELECT *, {absent} FROM given"))
    t_env.create_temporary_view(
        "screened_vitals",
        t_env.sql_query("SELECT * FROM screened WHERE record_kind = 'vitals' OR is_discharge"),
    )
    query = f"""SELECT patient_token, first_record_id, last_record_id,
                      UNIX_TIMESTAMP(CAST(first_time AS STRING)) * 1000 AS first_ms, severity
               FROM ({rule.sql()})"""
    with t_env.execute_sql(query).collect() as results:
        got = [tuple(r) for r in results]
    return pd.DataFrame(
        got, columns=["patient_token", "first_record_id", "last_record_id", "first_ms", "severity"]
    )


@pytest.fixture(scope="module")
def rows() -> pd.DataFrame:
    return _rows()


def _compare(settings: Settings, rows: pd.DataFrame, rule: Rule) -> tuple[pd.DataFrame, Any]:
    """(the run rule's hits, the pattern's starts per completing record)."""
    assert rule.run is not None
    pattern = _hits(settings, rows, dataclasses.replace(rule, run=None))
    run = _hits(settings, rows, rule)
    starts: dict[str, list[str]] = defaultdict(list)
    for first, last in zip(pattern["first_record_id"], pattern["last_record_id"], strict=True):
        starts[str(last)].append(str(first))
    assert run["last_record_id"].is_unique
    assert sorted(run["last_record_id"]) == sorted(starts)
    at_ms = dict(zip(rows["record_id"], rows["ts_ms"], strict=True))
    assert [at_ms[r] for r in run["first_record_id"]] == list(run["first_ms"])
    return run, starts


def test_news2_sustained_fires_where_its_pattern_does_citing_the_reading_before_and_its_severity(
    settings: Settings, rows: pd.DataFrame
) -> None:
    pattern = _hits(settings, rows, dataclasses.replace(NEWS2_SUSTAINED, run=None))
    run, starts = _compare(settings, rows, NEWS2_SUSTAINED)
    assert all(len(s) == 1 for s in starts.values())  # a pair: one start per completing record
    assert list(run["first_record_id"]) == [starts[str(r)][0] for r in run["last_record_id"]]
    severity = dict(zip(pattern["last_record_id"], pattern["severity"], strict=True))
    assert list(run["severity"]) == [severity[r] for r in run["last_record_id"]]
    assert len(run) > 40
    assert set(run["severity"]) == {"medium", "high"}


def test_news2_red_score_fires_where_its_pattern_does_unless_both_readings_are_at_five(
    settings: Settings, rows: pd.DataFrame
) -> None:
    pattern = _hits(settings, rows, dataclasses.replace(NEWS2_RED_SCORE, run=None))
    run, starts = _compare(settings, rows, NEWS2_RED_SCORE)
    assert all(len(s) == 1 for s in starts.values())
    assert list(run["first_record_id"]) == [starts[str(r)][0] for r in run["last_record_id"]]
    severity = dict(zip(pattern["last_record_id"], pattern["severity"], strict=True))
    assert list(run["severity"]) == [severity[r] for r in run["last_record_id"]]
    score = dict(zip(rows["record_id"], rows["news2_score"], strict=True))
    pairs = list(zip(run["first_record_id"], run["last_record_id"], strict=True))
    assert not any(score[a] >= 5 and score[c] >= 5 for a, c in pairs)
    assert any(score[a] < 5 <= score[c] for a, c in pairs)
    assert any(score[c] < 5 <= score[a] for a, c in pairs)
    assert len(run) > 20
    assert set(run["severity"]) == {"low", "medium", "high"}


def test_a_red_score_alerts_where_the_aggregate_reaches_five_at_one_reading_only(
    settings: Settings,
) -> None:
    """Red-score readings an hour apart (RCP 2017 chart 2) with NEWS2 3 → 3, 3 → 5, 4 → 6 and
    4, 5, 4, 5: each pair hits, the second's aggregate naming its severity; 5 → 6, where
    `news2_sustained_medium` answers, does not; nor do two red readings 8 hours apart, or two
    with a reading without a red score between."""
    t0 = 1_767_225_600_000
    streams = {
        "p33": [3, 3], "p35": [3, 5], "p46": [4, 6], "p4545": [4, 5, 4, 5], "p56": [5, 6],
        "p8h": [3, None, 3], "pgap": [3, 0, 3],
    }  # fmt: skip
    out = []
    for patient, scores in streams.items():
        for i, news2 in enumerate(scores):
            gap_h = 4 if patient == "p8h" else 1
            red = news2 is not None and news2 >= 3
            out.append(
                {
                    "record_id": f"{patient}-{i}",
                    "record_kind": "vitals" if news2 is not None else "labs",
                    "patient_token": patient,
                    "news2_score": news2,
                    "sirs_count": 0,
                    "news2_red_flag": red,
                    "is_discharge": False,
                    "ts_ms": t0 + i * gap_h * 3_600_000,
                }
            )
    rows = pd.DataFrame(out).sort_values("ts_ms", kind="stable").reset_index(drop=True)
    hits = _hits(settings, rows, NEWS2_RED_SCORE)
    got = sorted(zip(hits["last_record_id"], hits["severity"], strict=True))
    assert got == [
        ("p33-1", "low"), ("p35-1", "medium"), ("p4545-1", "medium"), ("p4545-2", "low"),
        ("p4545-3", "medium"), ("p46-1", "medium"),
    ]  # fmt: skip


def test_news2_rising_fires_where_its_pattern_does_and_cites_where_the_rise_began(
    settings: Settings, rows: pd.DataFrame
) -> None:
    run, starts = _compare(settings, rows, NEWS2_RISING)
    at = {r: i for i, r in enumerate(rows.sort_values(["ts_ms", "record_id"])["record_id"])}
    score = dict(zip(rows["record_id"], rows["news2_score"], strict=True))
    for first, last in zip(run["first_record_id"], run["last_record_id"], strict=True):
        began = max(starts[str(last)], key=lambda s: (-score[s], at[s]))
        assert first == began, (first, last)
    assert len(run) > 40
    assert sum(len(s) > 1 for s in starts.values()) > 10  # the citation has a choice to make


def test_sirs_persistent_fires_where_its_pattern_does_and_cites_the_runs_first_record(
    settings: Settings, rows: pd.DataFrame
) -> None:
    run, starts = _compare(settings, rows, SIRS_PERSISTENT)
    began: dict[str, str] = {}
    for _, stay in rows.sort_values(["ts_ms", "record_id"]).groupby("patient_token"):
        first = None
        for rec, sirs in zip(stay["record_id"], stay["sirs_count"], strict=True):
            first = (first or rec) if sirs >= 2 else None
            began[rec] = first or ""
    for first, last in zip(run["first_record_id"], run["last_record_id"], strict=True):
        assert first == began[str(last)], (first, last)
    assert len(run) > 40
    assert sum(len(s) > 1 for s in starts.values()) > 10
