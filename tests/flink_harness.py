"""Runs a job's `build(t_env, settings, sources, sinks)` without Kafka: bounded in-memory sources
with the columns of a raw Kafka table, and collecting sinks (JSON files in a temporary folder,
read back as the Avro decoder would return the topic's records).

Each input record is what the Kafka path would carry: its Avro encoding (or raw bytes, for bad
input) with the record timestamp, partition 0 and consecutive offsets, in the order given; the
rowtime is the record timestamp, with the settings' watermark delay.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pyflink.common import Types
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import DataTypes, Schema

from jobs.runtime.flink_env import stream_table_env
from jobs.runtime.job import Job, Source
from schemas import codec
from schemas.avro import Schema as AvroSchema
from schemas.settings import Settings

RAW = Types.ROW_NAMED(
    ["value", "kafka_partition", "kafka_offset", "kafka_ts_ms"],
    [Types.PRIMITIVE_ARRAY(Types.BYTE()), Types.INT(), Types.LONG(), Types.LONG()],
)
Record = dict[str, Any] | tuple[bytes | None, int]  # a topic record, or (raw value, timestamp ms)


def _raw(schema: AvroSchema, records: Iterable[Record]) -> list[tuple[Any, ...]]:
    out = []
    for offset, r in enumerate(records):
        if isinstance(r, tuple):
            value, ts_ms = r
        else:
            value, ts_ms = codec.encode(schema, r), codec.epoch_ms(codec.record_time(r))
        out.append((value, 0, offset, ts_ms))
    return out


def _decode(schema: AvroSchema, row: dict[str, Any]) -> dict[str, Any]:
    """A JSON sink row as the Avro decoder returns the topic record."""
    out: dict[str, Any] = {}
    for f in schema.fields:
        v = row.get(f.name)
        if v is not None and f.logical == "timestamp-millis":
            v = datetime.fromisoformat(v).replace(tzinfo=UTC)
        elif v is not None and f.base == "bytes":
            v = base64.b64decode(v)
        out[f.name] = v
    return out


def run_bounded(
    job: Job,
    settings: Settings,
    inputs: Mapping[str, Iterable[Record]],
    folder: Path,
) -> dict[str, list[dict[str, Any]]]:
    """Run `job.build` to the end of `inputs` (logical input → records in arrival order) and
    return every sink's records by output name."""
    settings = dataclasses.replace(settings, job_name=f"{job.name}-memory")
    build_bounded(job, settings, inputs, folder).execute(settings.job_name)
    return {
        name: [
            _decode(topic.schema, json.loads(line))
            for part in sorted((folder / name).glob("**/*"))
            if part.is_file() and not part.name.startswith(".")
            for line in part.read_text().splitlines()
            if line.strip()
        ]
        for name, topic in job.outputs.items()
    }


def build_bounded(
    job: Job,
    settings: Settings,
    inputs: Mapping[str, Iterable[Record]],
    folder: Path,
) -> StreamExecutionEnvironment:
    """The job built over in-memory sources and file sinks under `folder`, not yet executed."""
    env, t_env = stream_table_env(settings, connectors=False)
    sources = {}
    for name, topic in job.inputs.items():
        rows = _raw(topic.schema, inputs.get(name, ()))
        if rows:
            stream = env.from_collection(rows, type_info=RAW)
            table = t_env.from_data_stream(
                stream,
                Schema.new_builder()
                .column("value", DataTypes.BYTES())
                .column("kafka_partition", DataTypes.INT())
                .column("kafka_offset", DataTypes.BIGINT())
                .column("kafka_ts_ms", DataTypes.BIGINT())
                .column_by_expression("kafka_ts", "TO_TIMESTAMP_LTZ(kafka_ts_ms, 3)")
                .watermark(
                    "kafka_ts", f"kafka_ts - INTERVAL '{settings.max_out_of_orderness_s}' SECOND"
                )
                .build(),
            )
            t_env.create_temporary_view(f"{name}_memory", table)
        else:  # an input the test does not feed: a source without records
            t_env.execute_sql(f"""CREATE TEMPORARY TABLE `{name}_memory` (
  `value` BYTES, `kafka_partition` INT, `kafka_offset` BIGINT, `kafka_ts_ms` BIGINT,
  `kafka_ts` AS TO_TIMESTAMP_LTZ(`kafka_ts_ms`, 3),
  WATERMARK FOR `kafka_ts` AS `kafka_ts` - INTERVAL '{settings.max_out_of_orderness_s}' SECOND
) WITH ('connector' = 'datagen', 'number-of-rows' = '0')""")
        sources[name] = Source(f"{name}_memory", topic.name)
    for name, topic in job.outputs.items():
        t_env.execute_sql(f"""CREATE TEMPORARY TABLE `{name}` (
  {topic.schema.flink_columns()},
  `kafka_ts` TIMESTAMP_LTZ(3)
) WITH (
  'connector' = 'filesystem',
  'path' = '{(folder / name).as_uri()}',
  'format' = 'json',
  'json.timestamp-format.standard' = 'ISO-8601'
)""")
    job.build(t_env, settings, sources, {n: n for n in job.outputs})
    return env


def plan(env: Any, folder: Path) -> list[tuple[str, str, list[int | None]]]:
    """The stream graph's operators in order with their inputs, ids and paths left out."""
    nodes = json.loads(env.get_execution_plan())["nodes"]
    index = {n["id"]: i for i, n in enumerate(nodes)}

    def text(t: str) -> str:
        return re.sub(r"\[\d+\]|\$\d+", "", t.replace(str(folder), "<sinks>"))

    return [
        (
            text(n["type"]),
            text(n.get("contents", "")),
            [index.get(p["id"]) for p in n.get("predecessors", [])],
        )
        for n in nodes
    ]


def event_time_diamonds(nodes: list[tuple[str, str, list[int | None]]]) -> list[str]:
    """Event-time windows whose inputs share an operator upstream: two paths from one fork
    that meet again, where one path can carry the watermark on while the other is still marked
    idle, so that its rows arrive behind the watermark and are dropped as late."""

    def ancestors(i: int) -> set[int]:
        seen: set[int] = set()
        todo = [i]
        while todo:
            j = todo.pop()
            if j not in seen:
                seen.add(j)
                todo += [p for p in nodes[j][2] if p is not None]
        return seen

    def timed(contents: str) -> bool:  # drops a row behind its watermark
        if "OverAggregate(" in contents:
            return "orderBy=[arrival" not in contents  # a processing-time window drops none
        ptf = "ProcessTableFunction(" in contents and "DESCRIPTOR(" in contents  # on_time
        return ptf or any(op in contents for op in ("Match(", "WindowAggregate(", "WindowJoin("))

    found = []
    for _, contents, inputs in nodes:
        if timed(contents) and len(inputs) > 1:
            shared = [ancestors(i) for i in inputs if i is not None]
            if any(a & b for k, a in enumerate(shared) for b in shared[k + 1 :]):
                found.append(contents[:120])
    return found
