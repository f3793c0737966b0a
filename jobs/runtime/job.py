"""One shape for every Flink job: `build(t_env, settings, sources, sinks)`.

A job declares its inputs and outputs by logical name and topic (from the registry) and a
`build` that reads the source tables and attaches every sink (INSERTs added to a statement set
attached to the stream environment), nothing else. Where the tables live is the caller's
choice:

- `Job.run` / `Job.main`: Kafka topics (raw-record sources with the record timestamp as rowtime,
  Avro sinks with the settings' delivery guarantee), on the MiniCluster by default;
- tests hand `build` bounded in-memory sources and collecting sinks of the same columns
  (`tests/flink_harness.py`), without a broker.

A source table has the columns of `tables.raw_source_ddl` (`value`, `kafka_partition`,
`kafka_offset`, rowtime `kafka_ts`, `kafka_ts_ms`); a sink table has its topic schema's columns
and then `kafka_ts` (the record timestamp).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace

from pyflink.common.job_client import JobClient
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.table import StreamTableEnvironment

from jobs.runtime import kafka_io
from jobs.runtime.cli import job_main
from jobs.runtime.flink_env import execute, stream_table_env
from jobs.runtime.tables import create_raw_source, create_sinks
from schemas.settings import Settings
from schemas.topics import Topic


@dataclass(frozen=True)
class Source:
    """A source table and the topic its records came from (cited by dead letters)."""

    table: str
    topic: str


Sources = Mapping[str, Source]  # logical input name -> source table
Sinks = Mapping[str, str]  # logical output name -> sink table
Build = Callable[[StreamTableEnvironment, Settings, Sources, Sinks], None]


@dataclass(frozen=True)
class Job:
    name: str  # the stage: consumer group, dead-letter stage, default job name
    doc: str | None
    inputs: Mapping[str, Topic]
    outputs: Mapping[str, Topic]
    build: Build

    @property
    def input_topics(self) -> list[str]:
        return [t.name for t in self.inputs.values()]

    @property
    def output_topics(self) -> list[str]:
        return list(dict.fromkeys(t.name for t in self.outputs.values()))

    def kafka_tables(
        self, t_env: StreamTableEnvironment, settings: Settings, *, prefix: str, bounded: bool
    ) -> tuple[dict[str, Source], dict[str, str]]:
        """Raw Kafka sources `<input>_raw` and Avro sinks named as the outputs, over topics
        named `prefix + topic`."""
        sources = {n: Source(f"{n}_raw", prefix + t.name) for n, t in self.inputs.items()}
        for n, t in self.inputs.items():
            create_raw_source(
                t_env,
                settings,
                sources[n].table,
                t.name,
                prefix=prefix,
                bounded=bounded,
                group_id=prefix + self.name,
            )
        create_sinks(t_env, settings, {n: t.name for n, t in self.outputs.items()}, prefix=prefix)
        return sources, {n: n for n in self.outputs}

    def pipeline(
        self, settings: Settings, *, prefix: str = "", bounded: bool = False
    ) -> StreamExecutionEnvironment:
        """The job over Kafka, built and ready to execute (topics created if missing). Bounded,
        a partition read to its end stops holding event time back by itself; an idle timeout
        would only let a partition starved by back-pressure (not read yet, not ended) be taken
        for idle and its records be dead-lettered as late, so a bounded run has none."""
        if bounded:
            settings = replace(settings, source_idle_timeout_s=0, sparse_idle_timeout_ms=0)
        kafka_io.ensure_topics(settings, self.input_topics + self.output_topics, prefix=prefix)
        env, t_env = stream_table_env(settings)
        sources, sinks = self.kafka_tables(t_env, settings, prefix=prefix, bounded=bounded)
        self.build(t_env, settings, sources, sinks)
        return env

    def submit(self, settings: Settings, *, prefix: str = "", bounded: bool = False) -> JobClient:
        """Submit without waiting (benchmarks cancel unbounded runs through the client)."""
        return self.pipeline(settings, prefix=prefix, bounded=bounded).execute_async(
            settings.job_name
        )

    def run(self, settings: Settings, *, prefix: str = "", bounded: bool = False) -> None:
        """Run the job; returns when a bounded run has drained its input (an unbounded one
        never, unless interrupted: then it is cancelled, its transactions aborted, checkpoints
        retained)."""
        execute(self.pipeline(settings, prefix=prefix, bounded=bounded), settings)

    def main(self, argv: list[str] | None = None) -> None:
        job_main(self.doc, self.name, self.run, argv)
