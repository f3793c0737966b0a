"""The model's 6-hour extremes from the screening job's accumulate-only window
(jobs.screening.scoring.feature_events_sql, io.wardflow.udf.TrailingExtreme) equal MAX and MIN
over the trailing six hours computed directly, row for row: real set-A values on irregular times
(rows at the same instant, a minute apart, gaps longer than the span), nulls included."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyflink.common import Types
from pyflink.table import DataTypes, Schema

from feature_store.definitions import ROLLING, WINDOW_H, rolling_name
from jobs.feeds import replay
from jobs.runtime.flink_env import stream_table_env
from jobs.screening.scoring import feature_events_sql, register_feature_functions
from schemas.physionet import measurements
from schemas.settings import Settings

pytestmark = pytest.mark.slow
PARAMS = list(ROLLING)
GAPS_MIN = np.array([0, 0, 1, 1, 1, 5, 30, 60, 61, 359, 360, 361, 420])  # 0: the same instant


def _rows() -> pd.DataFrame:
    """Twenty set-A stays (the bundled sample), each row an hour's values at a drawn time."""
    raw = pd.read_parquet(replay.SAMPLE)
    values = measurements(raw).assign(patient_id=raw["patient_id"].to_numpy())
    stays = values["patient_id"].drop_duplicates().to_numpy()[:20]
    rng = np.random.default_rng(6)
    parts = []
    for i, stay in enumerate(stays):
        rows = values[values["patient_id"] == stay][PARAMS].astype("float32").reset_index(drop=True)
        gaps = rng.choice(GAPS_MIN, len(rows)) * 60_000
        rows.insert(0, "ts_ms", 1_767_225_600_000 + np.cumsum(gaps))
        rows.insert(0, "patient_token", f"p{i:02d}")
        parts.append(rows)
    # in event-time order, as the job's sources deliver them behind the watermark
    out = pd.concat(parts, ignore_index=True).sort_values("ts_ms", kind="stable")
    out.insert(0, "row_id", np.arange(len(out)))
    out.index = out["row_id"]
    return out


def _expected(rows: pd.DataFrame) -> pd.DataFrame:
    """Per row: the extreme over the same patient's rows at or after (its time - the span) and
    at or before its time (rows at its own instant included), nulls ignored."""
    span = WINDOW_H * 3_600_000
    out = pd.DataFrame(index=rows.index)
    tokens, times = rows["patient_token"].to_numpy(), rows["ts_ms"].to_numpy(dtype="int64")
    for p, how in ROLLING.items():
        values, got = rows[p].to_numpy(), []
        for token, t in zip(tokens, times, strict=True):
            span_rows = values[(tokens == token) & (times >= t - span) & (times <= t)]
            got.append(np.nanmax(span_rows) if how == "max" else np.nanmin(span_rows))
        out[rolling_name(p)] = np.array(got, dtype="float32")
    return out


def test_the_windows_extremes_equal_max_and_min_over_the_trailing_six_hours(
    settings: Settings,
) -> None:
    rows = _rows()
    assert rows[PARAMS].isna().any().all() and (rows["ts_ms"].diff() == 0).any()
    env, t_env = stream_table_env(settings, connectors=False)
    register_feature_functions(t_env)
    types = Types.ROW_NAMED(
        ["row_id", "patient_token", "ts_ms", *PARAMS],
        [Types.LONG(), Types.STRING(), Types.LONG(), *[Types.FLOAT()] * len(PARAMS)],
    )
    data = [
        (int(r[0]), r[1], int(r[2]), *(None if np.isnan(v) else float(v) for v in r[3:]))
        for r in rows.itertuples(index=False)
    ]
    schema = (
        Schema.new_builder()
        .column("row_id", DataTypes.BIGINT())
        .column("patient_token", DataTypes.STRING())
        .column("ts_ms", DataTypes.BIGINT())
    )
    for p in PARAMS:
        schema = schema.column(p, DataTypes.FLOAT())
    schema = schema.column_by_expression("event_time", "TO_TIMESTAMP_LTZ(ts_ms, 3)").watermark(
        "event_time", "event_time - INTERVAL '1' SECOND"
    )
    stream = env.from_collection(data, types)
    t_env.create_temporary_view("extreme_rows", t_env.from_data_stream(stream, schema.build()))
    # no discharge among them (tests/flink/test_stream_features_per_stay.py: a stay's end)
    t_env.create_temporary_view(
        "events",
        t_env.sql_query(
            "SELECT *, CAST(event_time AS TIMESTAMP(3)) AS measured_time, FALSE AS is_discharge "
            "FROM extreme_rows"
        ),
    )
    names = [rolling_name(p) for p in PARAMS]
    query = f"SELECT row_id, {', '.join(names)} FROM ({feature_events_sql()})"
    with t_env.execute_sql(query).collect() as results:
        got = pd.DataFrame([tuple(r) for r in results], columns=["row_id", *names])
    got = got.set_index("row_id").sort_index().astype("float32")
    want = _expected(rows)
    assert len(got) == len(rows)
    pd.testing.assert_frame_equal(got, want, check_names=False, check_index_type=False)
    # not vacuous: the 6-hour extreme differs from the row's own value and from the stay's
    assert (want[names[0]] != rows[PARAMS[0]]).sum() > 50
