"""Rows into a Flink table with their own event times, for tests of a keyed process table
function: paced (held back a moment each, one per Python bundle, in a task of their own, so
that periodic watermarks come between the rows) or all at once (no watermark before the end of
input's, at which every timer fires); paced rows can be followed by one row repeated for ever,
so that the job keeps running (for a savepoint) with its watermark held at that row's time.
Each row's event time is its `ts_ms` column; the table has it as `rowtime`."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from typing import Any

from pyflink.common import Duration, Row, Types, WatermarkStrategy
from pyflink.common.typeinfo import TypeInformation
from pyflink.common.watermark_strategy import TimestampAssigner
from pyflink.datastream.connectors.number_seq import NumberSequenceSource
from pyflink.datastream.functions import MapFunction
from pyflink.table import Schema, StreamTableEnvironment, Table

from jobs.runtime.flink_env import stream_table_env
from schemas.settings import Settings

PACE_S = 0.004
WATERMARK_EVERY_MS = 5
TIME = "ts_ms"


class _Paced(MapFunction):  # type: ignore[misc]
    """Holds each row back `pace_s`, and a row whose event time is a key of `hold_s` that
    long instead."""

    def __init__(self, pace_s: float, at: int, hold_s: Mapping[int, float]) -> None:
        self.pace_s, self.at, self.hold_s = pace_s, at, dict(hold_s)

    def map(self, value: Any) -> Any:
        time.sleep(self.hold_s.get(int(value[self.at]), self.pace_s))
        return value


class _Then(MapFunction):  # type: ignore[misc]
    """The n-th row of a sequence: `rows[n]`, then `tail` for ever (paced)."""

    def __init__(self, rows: list[tuple[Any, ...]], tail: tuple[Any, ...]) -> None:
        self.rows, self.tail = rows, tail

    def map(self, n: int) -> Any:
        time.sleep(PACE_S)
        return Row(*(self.rows[n] if n < len(self.rows) else self.tail))


def table(
    settings: Settings,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    types: Mapping[str, TypeInformation],
    *,
    paced: bool,
    out_of_orderness_ms: int = 0,
    tail: Mapping[str, Any] | None = None,
    pace_s: float = PACE_S,
    hold_s: Mapping[int, float] | None = None,
    watermark_every_ms: int = WATERMARK_EVERY_MS,
    uid: str | None = None,
) -> tuple[StreamTableEnvironment, Table]:
    """A table environment and `rows` in their order as a table of `columns` (typed by `types`,
    strings otherwise; `ts_ms` among them) with `rowtime` and the source's watermarks, which
    trail the newest time by `out_of_orderness_ms`. With `tail` (paced only) the source never
    ends: `tail` follows the rows, again and again. `pace_s`: how long each row is held back
    (longer: a watermark comes between two rows also on a busy machine); `hold_s`: event time
    (ms) → how long the row of that time is held back instead (a late row that must come after
    the watermark its predecessors make, whatever the machine's load: rows are held in a task
    of their own, so the watermark generator's timer fires while one is held);
    `watermark_every_ms`: the periodic watermarks' interval (paced only). `uid`: the prefix of
    the source's operator uids (a job restored from a savepoint then claims none of the state
    of another job's source, whose operators Flink hashes by their place in the graph)."""
    if paced:  # every Python function (the DataStream map's too) hands each row on at once
        settings = dataclasses.replace(settings, python_bundle_size=1, python_bundle_time_ms=1)
    env, t_env = stream_table_env(settings, connectors=False)
    at = list(columns).index(TIME)
    t_env.get_config().set(  # unpaced, no watermark comes before the end of input's
        "pipeline.auto-watermark-interval", f"{watermark_every_ms if paced else 0} ms"
    )
    row_type = Types.ROW_NAMED(list(columns), [types.get(c, Types.STRING()) for c in columns])
    values = [tuple(r[c] for c in columns) for r in rows]
    if paced:  # a row per bundle: the watermark generator after it sees them one by one
        t_env.get_config().set("python.fn-execution.bundle.size", "1")
    if tail is not None:
        if not paced:
            raise ValueError("a tail follows paced rows only")
        sequence = NumberSequenceSource(0, 2**62)
        stream = env.from_source(sequence, WatermarkStrategy.no_watermarks(), "rows, then tail")
        # chained: a task of its own made each savepoint test wait 200 s instead of 15
        then = _Then(values, tuple(tail[c] for c in columns))
        stream = stream.map(then, output_type=row_type)
    else:
        stream = env.from_collection(values, row_type)
        if uid is not None:
            stream.uid(f"{uid}-source")
        if paced:
            # not chained: held in the watermark generator's task (Python operators fuse), a
            # row blocked the timer that emits the watermark of the rows before it
            paced_map = _Paced(pace_s, at, hold_s or {})
            stream = stream.map(paced_map, output_type=row_type).disable_chaining()

    class TsMs(TimestampAssigner):  # type: ignore[misc]
        def extract_timestamp(self, value: Any, record_timestamp: int) -> int:
            return int(value[at])

    strategy = (
        WatermarkStrategy.for_bounded_out_of_orderness(Duration.of_millis(out_of_orderness_ms))
        if out_of_orderness_ms
        else WatermarkStrategy.for_monotonous_timestamps()
    )
    stream = stream.assign_timestamps_and_watermarks(strategy.with_timestamp_assigner(TsMs()))
    if uid is not None:
        stream.uid(f"{uid}-timestamps")
    return t_env, t_env.from_data_stream(  # the stream's own timestamps and watermarks
        stream,
        Schema.new_builder()
        .column_by_metadata("rowtime", "TIMESTAMP_LTZ(3)")
        .watermark("rowtime", "SOURCE_WATERMARK()")
        .build(),
    )
