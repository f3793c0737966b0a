"""The sepsis model's stream features begin again with each stay, as training computes them
(training.features.hourly_features: one stay's rows): a patient discharged and readmitted within
the state's TTL (the same token) was scored as days into the stay, with the last stay's lab ages
and 6-hour extremes. Runs the screening job's state views (feature_events_sql and
state_sql(features=True)) on the MiniCluster over real sample rows: sample stay A's first 8
hours, an ADT discharge, then stay B's first 6 hours from 4 hours later; between them, what
belongs to stay A although it comes after its discharge: a reading at the discharge's instant
(arriving before or after it: the same features either way) and a lactate drawn an hour before
the discharge, resulted an hour after."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd
import pytest
from pyflink.common import Types
from pyflink.table import DataTypes, Schema

from jobs.feeds import replay
from jobs.runtime.flink_env import stream_table_env
from jobs.sepsis_screen import EVENT_COLUMNS, SCREEN, state_views
from schemas.physionet import measurements
from schemas.settings import Settings
from training.features import hourly_features
from udfs.sepsis import STATE_PARAMS

pytestmark = pytest.mark.slow
FEATURES = [
    "hours_since_first_record",
    "lactate_mmol_l_age_h",
    "wbc_10e9_l_age_h",
    "creatinine_mg_dl_age_h",
    "heart_rate_bpm_max_6h",
    "sbp_mmhg_min_6h",
]
T0 = datetime(2026, 1, 5, tzinfo=UTC)


def _two_stays(reading_first: bool) -> tuple[list[dict[str, Any]], pd.DataFrame, int]:
    """The event rows of one token's two stays, stay B's raw rows, and how many rows stay A and
    its discharge take."""
    raw = pd.read_parquet(replay.SAMPLE)
    values = measurements(raw).assign(pid=raw["patient_id"].to_numpy(), h=raw["ICULOS"])
    ids = list(raw["patient_id"].unique())

    def has_lactate(p: Any) -> bool:
        return bool(values[(values.pid == p) & (values.h <= 8)]["lactate_mmol_l"].notna().any())

    a = next(p for p in ids if has_lactate(p))
    b = next(p for p in ids if p != a)
    rows: list[dict[str, Any]] = []

    def add(
        at: datetime,
        kind: str,
        given: dict[str, Any],
        discharge: bool = False,
        measured: datetime | None = None,
    ) -> None:
        rec: dict[str, Any] = dict.fromkeys(EVENT_COLUMNS)
        rec.update(record_id=f"r{len(rows):03d}", record_kind=kind, patient_token="tok",
                   facility_id="f", unit_id="ICU", event_time=at, measured_time=measured or at,
                   is_discharge=discharge, source_topic="x", source_partition=0,
                   source_offset=len(rows))  # fmt: skip
        for p in STATE_PARAMS:
            v = given.get(p)
            if v is not None and not np.isnan(v):
                rec[p] = float(v)
        rows.append(rec)

    first = values[values.pid == a].head(8)
    for i, r in enumerate(first.to_dict("records")):
        add(T0 + timedelta(hours=i), "vitals", r)
    discharged = T0 + timedelta(hours=len(first))
    at_end = {"heart_rate_bpm": 190.0, "sbp_mmhg": 40.0}  # stay A's, at its discharge's instant
    if reading_first:
        add(discharged, "vitals", at_end)
    add(discharged, "adt", {}, discharge=True)
    if not reading_first:
        add(discharged, "vitals", at_end)
    late = discharged - timedelta(hours=1)
    add(discharged + timedelta(hours=1), "labs", {"lactate_mmol_l": 6.0}, measured=late)
    second = values[values.pid == b].head(6)
    for i, r in enumerate(second.to_dict("records")):
        add(discharged + timedelta(hours=4 + i), "vitals", r)
    return rows, raw[raw.patient_id == b].head(6), len(first) + 3


@pytest.mark.parametrize("reading_first", [True, False])
def test_a_readmitted_patients_stream_features_are_the_new_stays_alone(
    settings: Settings, reading_first: bool
) -> None:
    rows, stay_b, before = _two_stays(reading_first)
    env, t_env = stream_table_env(settings, connectors=False)
    types = {f.name: f.flink_type().replace(" NOT NULL", "") for f in SCREEN.fields}
    columns = [c for c in EVENT_COLUMNS if c not in ("event_time", "measured_time")]

    def kinds(c: str) -> tuple[Any, Any]:
        if c in STATE_PARAMS:
            flink = {
                "FLOAT": (Types.FLOAT(), DataTypes.FLOAT()),
                "INT": (Types.INT(), DataTypes.INT()),
                "BOOLEAN": (Types.BOOLEAN(), DataTypes.BOOLEAN()),
                "STRING": (Types.STRING(), DataTypes.STRING()),
            }
            return flink[types[c]]
        if c == "is_discharge":
            return Types.BOOLEAN(), DataTypes.BOOLEAN()
        if c == "source_partition":
            return Types.INT(), DataTypes.INT()
        if c == "source_offset":
            return Types.LONG(), DataTypes.BIGINT()
        return Types.STRING(), DataTypes.STRING()

    def ms(at: datetime) -> int:
        return int(at.timestamp() * 1000)

    data = [
        tuple([*(r[c] for c in columns), ms(r["event_time"]), ms(r["measured_time"])]) for r in rows
    ]
    typ = Types.ROW_NAMED(
        [*columns, "ts_ms", "measured_ms"],
        [*(kinds(c)[0] for c in columns), Types.LONG(), Types.LONG()],
    )
    schema = Schema.new_builder()
    for c in columns:
        schema = schema.column(c, kinds(c)[1])
    schema = (
        schema.column("ts_ms", DataTypes.BIGINT())
        .column("measured_ms", DataTypes.BIGINT())
        .column_by_expression("event_time", "TO_TIMESTAMP_LTZ(ts_ms, 3)")
        .column_by_expression(
            "measured_time", "CAST(TO_TIMESTAMP_LTZ(measured_ms, 3) AS TIMESTAMP(3))"
        )
        .watermark("event_time", "event_time - INTERVAL '1' SECOND")
    )
    stream = env.from_collection(data, typ)
    t_env.create_temporary_view("events", t_env.from_data_stream(stream, schema.build()))
    state_views(t_env, True)
    query = f"SELECT record_id, {', '.join(FEATURES)} FROM state"
    with t_env.execute_sql(query).collect() as results:
        got = pd.DataFrame([tuple(r) for r in results], columns=["record_id", *FEATURES])
    got = got.sort_values("record_id").reset_index(drop=True)
    readmitted = got.iloc[before:].reset_index(drop=True)[FEATURES].astype("float64")
    offline = hourly_features(stay_b).reset_index(drop=True)[FEATURES].astype("float64")
    pd.testing.assert_frame_equal(readmitted, offline, check_dtype=False, atol=1e-3)
    # not vacuous: stay A (its last row before the discharge) had a lactate, and its hours ran on
    assert got.loc[before - 4, "lactate_mmol_l_age_h"] < 24
    assert got.loc[before - 4, "hours_since_first_record"] == 7
    # the reading at the discharge's instant is stay A's, whichever came first: its extremes
    # hold it (the same in either order of arrival), its hours run on from stay A's start
    [at_end] = [i for i, r in enumerate(rows) if r.get("heart_rate_bpm") == 190.0]
    assert got.loc[at_end, "heart_rate_bpm_max_6h"] == 190
    assert got.loc[at_end, "sbp_mmhg_min_6h"] == 40
    assert got.loc[at_end, "hours_since_first_record"] == 8
