"""The PyFlink TableEnvironment every wardflow job runs in (local MiniCluster by default)."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyflink
from py4j.protocol import Py4JError, Py4JJavaError
from pyflink.common import Configuration
from pyflink.common.job_client import JobClient
from pyflink.datastream import StreamExecutionEnvironment
from pyflink.java_gateway import get_gateway
from pyflink.table import EnvironmentSettings, Schema, StreamTableEnvironment, TableEnvironment

import jobs
from jobs.runtime.watch import Dependency, JobWatch, first_line, rest_json
from schemas.settings import Settings
from udfs import java_decode

FLINK_HOME = Path(pyflink.__file__).resolve().parent


STATE_TTL = "table.exec.state.ttl"  # how long SQL keyed state lives without a write


def state_ttl(hours: float) -> str:
    """A state TTL in hours as `table.exec.state.ttl`'s value (whole seconds, at least one)."""
    return f"{max(1, round(hours * 3600))} s"


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
    """Every option the job sets when it runs on its own (local defaults included).
    connectors=False: no Kafka connector jars (a job over in-memory sources and file sinks)."""
    return {
        "pipeline.name": settings.job_name,
        "pipeline.jars": ";".join(job_jars(settings, connectors)),
        "python.executable": settings.python_executable,
        "python.client.executable": sys.executable,
        "parallelism.default": str(settings.parallelism),
        "table.local-time-zone": "UTC",
        "table.exec.source.idle-timeout": f"{settings.source_idle_timeout_s * 1000} ms",
        "python.fn-execution.bundle.size": str(settings.python_bundle_size),
        "python.fn-execution.bundle.time": str(settings.python_bundle_time_ms),
        "python.state.cache-size": str(settings.python_state_cache_keys),
        "io.tmp.dirs": str(settings.flink_tmp_dir),
        # The MiniCluster's REST API on loopback (its port is chosen as the job is submitted,
        # `execute`): the job watches its failures there (jobs/runtime/watch.py), as on a
        # cluster.
        "rest.address": "127.0.0.1",
        "rest.bind-address": "127.0.0.1",
        "pipeline.auto-watermark-interval": f"{settings.watermark_interval_ms} ms",
        "execution.buffer-timeout.interval": f"{settings.network_buffer_timeout_ms} ms",
        # Chained operators hand records on without a defensive copy each: the SQL operators
        # are written for it, and the Python functions see serialized copies anyway.
        "pipeline.object-reuse": "true",
        # Exactly-once state and sinks: every job checkpoints; a retained checkpoint survives a
        # crash or cancel and can be given back as settings.restore_from.
        "execution.checkpointing.interval": f"{int(settings.checkpoint_interval_s * 1000)} ms",
        "execution.checkpointing.mode": "EXACTLY_ONCE",
        "execution.checkpointing.dir": checkpoint_root(settings),
        "execution.checkpointing.externalized-checkpoint-retention": "RETAIN_ON_CANCELLATION",
        "execution.checkpointing.num-retained": "3",
        **_state_backend(settings),
        STATE_TTL: state_ttl(settings.state_ttl_h),
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": str(settings.restart_attempts),
        "restart-strategy.fixed-delay.delay": "2 s",
        **(
            {"execution.state-recovery.path": settings.restore_from}
            if settings.restore_from
            else {}
        ),
    }


# What a cluster may own. Each group is named by the option whose presence in the cluster's
# configuration means the cluster set it, and lists the setting that still wins when given
# explicitly (None: none does) and the options the job then leaves alone.
PLATFORM_OWNED: dict[str, tuple[str | None, tuple[str, ...]]] = {
    "parallelism.default": ("parallelism", ("parallelism.default",)),
    "python.executable": ("worker_python", ("python.executable",)),
    "python.client.executable": (None, ("python.client.executable",)),
    "execution.checkpointing.dir": ("checkpoint_dir", ("execution.checkpointing.dir",)),
    "state.backend.type": (
        "state_backend",
        ("state.backend.type", "execution.checkpointing.incremental"),
    ),
    "restart-strategy.type": (
        "restart_attempts",
        (
            "restart-strategy.type",
            "restart-strategy.fixed-delay.attempts",
            "restart-strategy.fixed-delay.delay",
        ),
    ),
}
# The client's own machine: meaningless to a cluster's TaskManagers (and a cluster has its own
# REST endpoint).
LOCAL_ONLY = ("io.tmp.dirs", "rest.address", "rest.bind-address")


def options_on(
    settings: Settings, platform: Mapping[str, str] | None, connectors: bool = True
) -> dict[str, str]:
    """The options the job sets where `platform` is the configuration a cluster (or `flink
    run`) handed it, None when the job runs its own MiniCluster. On a platform, what it set
    for an owned option wins unless the matching setting was given explicitly; its jars are
    kept and the job's added (`flink run` puts flink-python's there); local-only options are
    left out."""
    options = _options(settings, connectors)
    if platform is None:
        return options
    for key, (setting_name, keys) in PLATFORM_OWNED.items():
        if key in platform and setting_name not in settings.explicit:
            for k in keys:
                options.pop(k, None)
    for k in LOCAL_ONLY:
        options.pop(k, None)
    jars = [j for j in platform.get("pipeline.jars", "").split(";") if j]
    options["pipeline.jars"] = ";".join(
        dict.fromkeys([*jars, *options["pipeline.jars"].split(";")])
    )
    return options


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def storage_uri(location: str) -> str:
    """A folder or URI as the URI Flink's file systems take: `s3://b/x` (or Flink's own
    `file:/x`) stays as it is (a `Path` would make it `s3:/b/x`), a local folder becomes
    `file:///…`."""
    if len(urllib.parse.urlsplit(location).scheme) > 1:  # not a Windows drive letter
        return location.rstrip("/")
    return Path(location).expanduser().resolve().as_uri()


def checkpoint_root(settings: Settings) -> str:
    """This job's checkpoint folder: `<checkpoint_dir>/<job_name>` (Flink adds `<job id>/chk-N`)."""
    return f"{storage_uri(settings.checkpoint_dir)}/{settings.job_name}"


def _state_backend(settings: Settings) -> dict[str, str]:
    if settings.state_backend == "hashmap":
        return {"state.backend.type": "hashmap"}
    if settings.state_backend == "rocksdb":  # in flink-dist; incremental checkpoints
        return {"state.backend.type": "rocksdb", "execution.checkpointing.incremental": "true"}
    raise ValueError(f"state_backend must be hashmap or rocksdb, not {settings.state_backend!r}")


# The JVM_ARGS `_prepare` set for this process's own JVM (none was given to it): not a child's.
_jvm_args_set_here: str | None = None
# Variables that belong to this process's Flink and wardflow (a Python worker run in it sets
# PYFLINK_GATEWAY_DISABLED; FLINK_LOG_DIR and the WARDFLOW_ settings are its own).
OWN_VARIABLES = ("PYFLINK", "_PYFLINK", "FLINK_", "WARDFLOW_")


def _prepare(settings: Settings) -> None:
    global _jvm_args_set_here
    settings.flink_log_dir.mkdir(parents=True, exist_ok=True)
    settings.flink_tmp_dir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("FLINK_LOG_DIR", str(settings.flink_log_dir))
    # The local JVM (gateway + MiniCluster) starts with the first environment of a process; a
    # JVM_ARGS the platform sets wins. Without a cap the JVM sizes its heap from the machine.
    if "JVM_ARGS" not in os.environ:
        os.environ["JVM_ARGS"] = _jvm_args_set_here = f"-Xmx{settings.local_jvm_heap_mb}m"


def child_environment(
    settings: Settings | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment of a process this one starts (a job, a feed, `bin/flink`): `base` (by
    default this process's environment) less its Flink and wardflow variables (OWN_VARIABLES)
    and the JVM_ARGS this process set for its own JVM, plus the variables that give the child
    `settings` (none: the defaults). A JVM_ARGS this process was given is handed on."""
    env = {
        k: v
        for k, v in (os.environ if base is None else base).items()
        if not k.startswith(OWN_VARIABLES)
    }
    if _jvm_args_set_here is not None and env.get("JVM_ARGS") == _jvm_args_set_here:
        del env["JVM_ARGS"]
    return {**env, **(settings.environment() if settings is not None else {})}


def table_env(settings: Settings) -> TableEnvironment:
    """A streaming table environment on the local MiniCluster (benchmarks of pure SQL); the
    first in a process also starts the PyFlink gateway JVM, which logs to
    `settings.flink_log_dir` instead of inside the installed pyflink package."""
    _prepare(settings)
    t_env = TableEnvironment.create(EnvironmentSettings.in_streaming_mode())
    conf = t_env.get_config()
    for key, value in _options(settings).items():
        conf.set(key, value)
    return t_env


def _jvm() -> Any:
    return get_gateway().jvm


def platform_configuration(settings: Settings) -> dict[str, str] | None:
    """What the platform set before the job ran: the configuration `flink run` (or an
    application-mode cluster) put in the job's context, or, with `settings.flink_target`, the
    remote target and what that cluster's own configuration says of the options a cluster
    owns (its REST API's /jobmanager/config); None when the job runs its own MiniCluster."""
    _prepare(settings)  # before the first gateway call starts the JVM
    if settings.flink_target:
        return _remote_target(settings.flink_target)
    j_env = _jvm().org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
    context = j_env.getExecutionEnvironment()
    if context.getClass().getSimpleName() == "LocalStreamEnvironment":
        return None
    return _configuration_map(context.getConfiguration())


def _remote_target(target: str) -> dict[str, str]:
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"flink_target must be host:port, not {target!r}")
    python_jar = next((FLINK_HOME / "opt").glob("flink-python-*.jar"), None)
    if python_jar is None:
        raise FileNotFoundError(f"no flink-python jar in {FLINK_HOME / 'opt'}")
    try:
        entries = rest_json(f"http://{host}:{port}/jobmanager/config")
    except (OSError, ValueError) as exc:
        raise RuntimeError(
            f"no Flink cluster answers at {target} (its REST API): start one (`make cluster`) "
            f"or correct flink_target ({exc})"
        ) from exc
    cluster = {str(e["key"]): str(e["value"]) for e in entries}
    owned = {
        k: cluster[k]
        for key, (_, keys) in PLATFORM_OWNED.items()
        if key in cluster
        for k in keys
        if k in cluster
    }
    return {
        **owned,
        "execution.target": "remote",
        "rest.address": host,
        "rest.port": port,
        "execution.attached": "true",
        "pipeline.jars": python_jar.as_uri(),
    }


def _configuration_map(j_conf: Any) -> dict[str, str]:
    conf = {str(k): str(v) for k, v in j_conf.toMap().items()}
    jars = j_conf.get(_jvm().org.apache.flink.configuration.PipelineOptions.JARS)
    conf["pipeline.jars"] = ";".join(str(j) for j in jars) if jars else ""
    return conf


def ship_code(settings: Settings) -> str:
    """A folder of its own with wardflow's packages (what the workers import), for
    `python.files`: on a cluster the workers get the job's code from the job, not from
    wherever the client happens to have it installed (an image that installs the wheel has it
    too; the shipped copy, first on the path, is the same version)."""
    root = Path(jobs.__file__).resolve().parents[1]
    settings.flink_tmp_dir.mkdir(parents=True, exist_ok=True)
    dest = Path(tempfile.mkdtemp(prefix="python-files-", dir=settings.flink_tmp_dir))
    for package in SHIPPED_PACKAGES:
        shutil.copytree(
            root / package, dest / package, ignore=shutil.ignore_patterns("__pycache__", "*.pyc")
        )
    return str(dest)


# The code a job runs: its own layer and those below it (tests/unit/test_layers.py).
SHIPPED_PACKAGES = ("schemas", "udfs", "feature_store", "jobs")


def stream_table_env(
    settings: Settings, *, connectors: bool = True
) -> tuple[StreamExecutionEnvironment, StreamTableEnvironment]:
    """For jobs that mix SQL with DataStream operators (keyed state and timers). Locally the
    job fills in every option; on a platform it respects what the platform set
    (`options_on`) and ships its code (`python.files`)."""
    _prepare(settings)
    platform = platform_configuration(settings)
    options = options_on(settings, platform, connectors)
    if platform is not None:
        # Flink's list delimiter for python.files (PythonDependencyUtils.FILE_DELIMITER).
        options["python.files"] = ",".join(
            p for p in (platform.get("python.files", ""), ship_code(settings)) if p
        )
    conf = Configuration()
    if settings.flink_target and platform is not None:
        for key, value in platform.items():
            if value and key not in options:
                conf.set_string(key, value)
    for key, value in options.items():
        conf.set_string(key, value)
    if settings.flink_target:
        j_env = _jvm().org.apache.flink.streaming.api.environment.StreamExecutionEnvironment
        env = StreamExecutionEnvironment(j_env(conf._j_configuration))
    else:
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


def plan_once(
    t_env: StreamTableEnvironment, view: str, name: str = "planned", rowtime: bool = True
) -> None:
    """Register `name` as `view` passed through one Table → DataStream → Table round trip.
    Every separate Table → DataStream conversion plans (and reads) its SQL again, so a job whose
    outputs leave SQL more than once reads them all from this one view; and the planner plans
    what reads `name` once, not once per branch of a union in `view` (as it does a Python
    function over a union). With `rowtime`, `name` has the records' timestamps as `rowtime`
    and the stream's watermark; without, `view` has no time attribute and `name` its columns
    with their types."""
    table = t_env.from_path(view)
    stream = t_env.to_data_stream(table)
    if rowtime:
        schema = rowtime_from_stream()
    else:
        schema = Schema.new_builder().from_row_data_type(table.get_schema().to_row_data_type())
        schema = schema.build()
    t_env.create_temporary_view(name, t_env.from_data_stream(stream, schema))


def checkpoint_location(settings: Settings, platform: Mapping[str, str] | None = None) -> str:
    """Where this job's checkpoints go: the platform's `execution.checkpointing.dir` where it
    set one and `checkpoint_dir` was not given, else `checkpoint_root`."""
    platform = platform_configuration(settings) if platform is None else platform
    cluster_dir = (platform or {}).get("execution.checkpointing.dir")
    if cluster_dir and "checkpoint_dir" not in settings.explicit:
        return storage_uri(cluster_dir)
    return checkpoint_root(settings)


def latest_checkpoint(settings: Settings) -> str | None:
    """The newest completed checkpoint this job retained (`<location>/<job id>/chk-N`), found
    through Flink's own file systems, so that `s3://` or `hdfs://` storage is searched as the
    cluster would (their plugins must be in the client's `plugins/` too)."""
    platform = platform_configuration(settings)
    location = checkpoint_location(settings, platform or {})
    jvm = _jvm()
    flink_fs = jvm.org.apache.flink.core.fs
    if platform is None or settings.flink_target:  # `flink run` has set them up already
        conf = jvm.org.apache.flink.configuration.Configuration()
        plugin_utils = jvm.org.apache.flink.core.plugin.PluginUtils
        flink_fs.FileSystem.initialize(conf, plugin_utils.createPluginManagerFromRootFolder(conf))
    root = flink_fs.Path(location)
    try:
        fs = root.getFileSystem()
    except Py4JJavaError as exc:
        raise RuntimeError(
            f"cannot read the checkpoints at {location}: {first_line(str(exc))}"
        ) from exc
    if not fs.exists(root):
        return None
    newest: tuple[int, str] | None = None
    for job_dir in fs.listStatus(root) or []:
        if not job_dir.isDir():
            continue
        for chk in fs.listStatus(job_dir.getPath()) or []:
            metadata = flink_fs.Path(chk.getPath(), "_metadata")
            if chk.getPath().getName().startswith("chk-") and fs.exists(metadata):
                found = (fs.getFileStatus(metadata).getModificationTime(), str(chk.getPath()))
                newest = max(newest, found) if newest else found
    return None if newest is None else newest[1]


def submit(env: StreamExecutionEnvironment, name: str) -> JobClient:
    """`execute_async`; on the local MiniCluster, with its REST API on a port free just now
    (chosen again once should another process take it first)."""
    j_conf = env._j_stream_execution_environment.getConfiguration()
    local = str(j_conf.toMap().get("execution.target", "local")) == "local"
    for attempt in range(2 if local else 1):
        if local:
            j_conf.setString("rest.port", str(_free_port()))
        try:
            return env.execute_async(name)
        except Py4JJavaError as exc:
            if attempt or "BindException" not in str(exc):
                raise
    raise AssertionError("unreachable")


def rest_url(env: StreamExecutionEnvironment) -> str:
    """The REST API (web UI) of the cluster `env` submits to: the local MiniCluster's at the
    port `submit` chose, or the platform's."""
    conf = env._j_stream_execution_environment.getConfiguration().toMap()
    return f"http://{conf.get('rest.address', '127.0.0.1')}:{conf.get('rest.port', '8081')}"


def execute(env: StreamExecutionEnvironment, settings: Settings) -> None:
    """Submit and wait for the job. On KeyboardInterrupt (Ctrl-C, or SIGTERM through the CLI)
    the job is cancelled first, which aborts its open Kafka transactions: nothing uncommitted
    lingers to block read_committed consumers, and the retained checkpoint stays for --restore.
    The status is polled, so that the interrupt never lands inside a gateway call. Submitted
    detached (`flink run -d`), it returns once the cluster has accepted the job.

    While it runs, each task failure is printed with the dependency it names and what the
    restart strategy will do (`watch.JobWatch`); a job that fails for good raises
    `watch.JobFailed`, which says which dependency failed, where the logs are and what the
    restarts did."""
    name = settings.job_name
    client = submit(env, name)
    conf = _configuration_map(env._j_stream_execution_environment.getConfiguration())
    if conf.get("execution.attached", "true").lower() == "false":
        print(f"{name} submitted detached as job {client.get_job_id()}")
        return
    rest = rest_url(env)
    print(f"{name} submitted as job {client.get_job_id()} (web UI {rest})", flush=True)
    logs = os.environ.get("FLINK_LOG_DIR") or str(settings.flink_log_dir)
    watch = JobWatch(
        rest, str(client.get_job_id()), name, conf, f"{logs} (web UI {rest})",
        describe=lambda d: _describe(d, settings),
    )  # fmt: skip
    shipped = [f for f in conf.get("python.files", "").split(",") if "python-files-" in f]
    outcome = client.get_job_execution_result()
    try:
        polls = 0
        while not outcome.done():
            time.sleep(0.5)
            polls += 1
            if polls % 4 == 0:
                watch.poll()
    except KeyboardInterrupt:
        # Where the signal went to the whole process group, the JVM is going down with the job.
        with contextlib.suppress(Py4JError):
            client.cancel().result()
        raise
    try:
        outcome.result()
    except Py4JJavaError as exc:
        raise watch.failed(exc) from exc
    finally:
        for folder in shipped:  # the code this job shipped (ship_code), not needed any more
            shutil.rmtree(folder, ignore_errors=True)


def _describe(dependency: Dependency, settings: Settings) -> str:
    """The failed dependency as the operator knows it: by its address."""
    where = {
        "Kafka broker": f"the Kafka broker at {settings.kafka_bootstrap}",
        "Feast online store": f"the Feast online store ({settings.feast_online_store})",
        "ClickHouse": f"ClickHouse at {settings.clickhouse_url}",
    }
    return where.get(dependency.name, dependency.name)
