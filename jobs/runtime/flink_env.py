"""The PyFlink TableEnvironment every wardflow job runs in (local MiniCluster by default)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from pyflink.common import Configuration, Types
from pyflink.datastream import DataStream, StreamExecutionEnvironment
from pyflink.datastream.functions import KeyedProcessFunction
from pyflink.table import EnvironmentSettings, Schema, StreamTableEnvironment, TableEnvironment

from schemas.settings import Settings
from udfs import java_decode


def connector_jars(settings: Settings) -> list[str]:
    jars = sorted(settings.flink_jars_dir.glob("*.jar"))
    if not any("flink-sql-connector-kafka" in j.name for j in jars):
        raise FileNotFoundError(
            f"no Flink Kafka SQL connector jar in {settings.flink_jars_dir}: "
            "run `deploy/local/services.sh fetch kafka` (or `make services`)"
        )
    return [j.as_uri() for j in jars]


def job_jars(settings: Settings, connectors: bool = True) -> list[str]:
    """The JVM functions generated from the schemas (udfs/java_decode.py) with Avro, and with
    `connectors` the Kafka connector jars."""
    jars = [java_decode.decoder_jar(settings), *java_decode.runtime_jars(settings)]
    uris = [j.as_uri() for j in jars]
    if connectors:
        uris += connector_jars(settings)
    return list(dict.fromkeys(uris))


def _options(settings: Settings, connectors: bool = True) -> dict[str, str]:
    """connectors=False: no Kafka connector jars (a job over in-memory sources and file sinks)."""
    return {
        "pipeline.name": settings.job_name,
        "pipeline.jars": ";".join(job_jars(settings, connectors)),
        "python.executable": settings.python_executable,
        "python.client.executable": settings.python_executable,
        "parallelism.default": str(settings.parallelism),
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": f"{settings.source_idle_timeout_s * 1000} ms",
        "python.fn-execution.bundle.size": str(settings.python_bundle_size),
        "python.fn-execution.bundle.time": str(settings.python_bundle_time_ms),
        "python.state.cache-size": str(settings.python_state_cache_keys),
        "io.tmp.dirs": str(settings.flink_tmp_dir),
        "pipeline.auto-watermark-interval": "200 ms",
        # Chained operators hand records on without a defensive copy each: the SQL operators
        # are written for it, and the Python functions see serialized copies anyway.
        "pipeline.object-reuse": "true",
        # Exactly-once state and sinks: every job checkpoints; a retained checkpoint survives a
        # crash or cancel and can be given back as settings.restore_from.
        "execution.checkpointing.interval": f"{int(settings.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": (settings.checkpoint_dir / settings.job_name).as_uri(),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        **_state_backend(settings),
        "table.exec.state.ttl": f"{int(settings.state_ttl_h * 3600)} s",
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(settings.restart_attempts),
        "restart-strategy.fixed-delay.delay": "2 s",
        **(
            {"execution.state-recovery.path": settings.restore_from}
            if settings.restore_from
            else {}
        ),
    }


def _state_backend(settings: Settings) -> dict[str, str]:
    if settings.state_backend == "hashmap":
        return {"state.backend.type": "hashmap"}
    if settings.state_backend == "rocksdb":  # in flink-dist; incremental checkpoints
        return {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true"}
    raise ValueError(f"state_backend must be hashmap or rocksdb, not {settings.state_backend!r}")


def _prepare(settings: Settings) -> None:
    settings.flink_log_dir.mkdir(parents=True, exist_ok=True)
    settings.flink_tmp_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(settings.flink_log_dir))
    # The local JVM (gateway + MiniCluster) starts with the first environment of a process; a
    # JVM_ARGS the platform sets wins. Without a cap the JVM sizes its heap from the machine.
    os.environ.setdefault("JVM_ARGS", f"-Xmx{settings.local_jvm_heap_mb}m")


def table_env(settings: Settings) -> TableEnvironment:
    """A streaming table environment; the first in a process also starts the PyFlink gateway JVM,
    which logs to `settings.flink_log_dir` instead of inside the installed pyflink package."""
    _prepare(settings)
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    for key, value in _options(settings).items():
        conf.set(key, value)
    return t_env


def stream_table_env(
    settings: Settings, *, connectors: bool = True
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """For jobs that mix SQL with DataStream operators (keyed state and timers)."""
    _prepare(settings)
    options = _options(settings, connectors)
    conf = Configuration()
    for key, value in options.items():
        conf.set_string(key, value)
    env = StreamExecutionEnvironment.get_execution_environment(conf)
    t_env = StreamTableEnvironment.create(env)
    for key, value in options.items():
        t_env.get_config().set(key, value)
    return env, t_env


def rowtime_from_stream() -> Schema:
    """A DataStream → Table schema whose `rowtime` is the records' timestamps and whose watermark
    is the stream's own."""
    return (
        Schema.new_builder()
        .column_by_metadata("rowtime", "TIMESTAMP_LTZ(3)")
        .watermark("rowtime", "SOURCE_WATERMARK()")
        .build()
    )


def plan_once(t_env: StreamTableEnvironment, view: str, name: str = "planned") -> None:
    """Register `name` as `view` passed through one Table → DataStream → Table round trip.
    Every separate Table → DataStream conversion plans (and reads) its SQL again, so a job whose
    outputs leave SQL more than once reads them all from this one view."""
    stream = t_env.to_data_stream(t_env.from_path(view))
    t_env.create_temporary_view(name, t_env.from_data_stream(stream, rowtime_from_stream()))


def process_by_patient(
    t_env: StreamTableEnvironment, sql: str, fn: KeyedProcessFunction, output_type: Any
) -> DataStream:
    """Rows of `sql` (which must select the rowtime, so that records carry their timestamps)
    keyed by patient_token through a keyed process function."""
    return (
        t_env.to_data_stream(t_env.sql_query(sql))
        .key_by(lambda r: r.patient_token, key_type=Types.STRING())
        .process(fn, output_type=output_type)
    )


def latest_checkpoint(settings: Settings) -> Path | None:
    """The newest completed checkpoint this job retained (…/<job id>/chk-N), if any."""
    done = (settings.checkpoint_dir / settings.job_name).glob("*/chk-*/_metadata")
    newest = max(done, key=lambda p: p.stat().st_mtime, default=None)
    return None if newest is None else newest.parent


def execute(env: StreamExecutionEnvironment, name: str) -> None:
    """Submit and wait for the job. On KeyboardInterrupt (Ctrl-C, or SIGTERM through the CLI)
    the job is cancelled first, which aborts its open Kafka transactions: nothing uncommitted
    lingers to block read_committed consumers, and the retained checkpoint stays for --restore.
    The status is polled, so that the interrupt never lands inside a gateway call."""
    client = env.execute_async(name)
    outcome = client.get_job_execution_result()
    try:
        while not outcome.done():
            time.sleep(0.5)
    except KeyboardInterrupt:
        client.cancel().result()
        raise
    outcome.result()  # raises if the job failed
