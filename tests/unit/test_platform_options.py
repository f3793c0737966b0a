"""One job, several places: on its own it fills in every option; on a cluster (`flink run`, an
application-mode deployment, a `flink_target`) it keeps what the cluster set."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from jobs.runtime import flink_env
from jobs.runtime.flink_env import checkpoint_root, options_on, storage_uri
from schemas.settings import Settings

PYTHON_JAR = "file:/opt/flink/opt/flink-python-2.2.1.jar"
CLUSTER = {
    "execution.target": "remote",
    "parallelism.default": "2",
    "python.executable": "/opt/venv/bin/python",
    "pipeline.jars": PYTHON_JAR,
    "execution.checkpointing.dir": "s3://wardflow/checkpoints",
    "state.backend.type": "rocksdb",
}


JOB_JARS = ["file:/c/udf-jars/wardflow-decode.jar", "file:/c/flink-jars/avro-1.12.0.jar"]


@pytest.fixture(autouse=True)
def _jars(monkeypatch: pytest.MonkeyPatch) -> None:
    """The jars the job would ship (found on disk once the services fetched them)."""
    monkeypatch.setattr(flink_env, "job_jars", lambda settings, connectors=True: JOB_JARS)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({"WARDFLOW_CACHE": str(tmp_path)})


def test_on_its_own_the_job_sets_every_option_with_its_local_defaults(settings: Settings) -> None:
    options = options_on(settings, None, connectors=False)
    assert options == flink_env._options(settings, connectors=False)
    assert options["parallelism.default"] == "1"
    assert options["state.backend.type"] == "hashmap"
    assert options["io.tmp.dirs"] == str(settings.flink_tmp_dir)


def test_on_a_cluster_what_it_set_wins_over_the_jobs_defaults(settings: Settings) -> None:
    options = options_on(settings, CLUSTER, connectors=False)
    for key in ("parallelism.default", "python.executable", "execution.checkpointing.dir"):
        assert key not in options  # left to the cluster
    assert "state.backend.type" not in options
    assert "execution.checkpointing.incremental" not in options
    # What the cluster did not set, the job still does.
    assert options["restart-strategy.type"] == "fixed-delay"
    assert options["table.local-time-zone"] == "UTC"


def test_a_setting_given_explicitly_wins_over_the_cluster(settings: Settings) -> None:
    given = Settings.resolve(
        {"parallelism": 4, "checkpoint_dir": "hdfs://nn:8020/ck"},
        {"WARDFLOW_CACHE": str(settings.flink_tmp_dir.parent), "WARDFLOW_WORKER_PYTHON": "/py"},
    )
    options = options_on(given, CLUSTER, connectors=False)
    assert options["parallelism.default"] == "4"
    assert options["python.executable"] == "/py"
    assert options["execution.checkpointing.dir"] == "hdfs://nn:8020/ck/wardflow"


def test_the_clusters_jars_are_kept_and_the_jobs_added_after_them(settings: Settings) -> None:
    jars = options_on(settings, CLUSTER, connectors=False)["pipeline.jars"].split(";")
    assert jars[0] == PYTHON_JAR
    assert jars[1:] == JOB_JARS


def test_the_client_machines_folders_and_rest_endpoint_never_reach_a_cluster(
    settings: Settings,
) -> None:
    options = options_on(settings, CLUSTER, connectors=False)
    assert not {"io.tmp.dirs", "rest.address", "rest.bind-address"} & options.keys()


def test_checkpoint_storage_keeps_a_uri_whole_and_turns_a_folder_into_a_file_uri(
    tmp_path: Path,
) -> None:
    assert storage_uri("s3://bucket/wardflow/ck/") == "s3://bucket/wardflow/ck"
    assert storage_uri("file:/srv/ck") == "file:/srv/ck"  # as Flink writes a local path
    assert storage_uri(str(tmp_path)) == tmp_path.as_uri()
    s = Settings.from_env({"WARDFLOW_CHECKPOINT_DIR": "s3://bucket/ck"}, job_name="sepsis_screen")
    assert checkpoint_root(s) == "s3://bucket/ck/sepsis_screen"
    options = options_on(s, None, connectors=False)
    assert options["execution.checkpointing.dir"] == "s3://bucket/ck/sepsis_screen"


def test_only_settings_given_explicitly_count_as_explicit() -> None:
    s = Settings.resolve({"parallelism": 2}, {"WARDFLOW_CACHE": "/c", "WARDFLOW_SCORING": "0"})
    assert s.explicit == {"parallelism", "scoring"}
    assert dataclasses.replace(s, job_name="x").explicit == s.explicit


def test_a_flink_target_must_be_host_and_port_of_a_cluster_that_answers() -> None:
    s = Settings.from_env({"WARDFLOW_FLINK_TARGET": "jobmanager"})
    with pytest.raises(ValueError, match="host:port"):
        flink_env.platform_configuration(s)
    closed = dataclasses.replace(s, flink_target=f"127.0.0.1:{flink_env._free_port()}")
    with pytest.raises(RuntimeError, match="no Flink cluster answers at"):
        flink_env.platform_configuration(closed)


def test_a_child_process_gets_the_settings_not_this_processs_flink_variables_or_own_jvm_args(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JVM_ARGS", "")  # restored (or removed again) after the test
    monkeypatch.delenv("JVM_ARGS")
    monkeypatch.setattr(flink_env, "_jvm_args_set_here", None)
    monkeypatch.setenv("PYFLINK_GATEWAY_DISABLED", "true")
    monkeypatch.setenv("FLINK_LOG_DIR", "/here/logs")
    monkeypatch.setenv("WARDFLOW_KAFKA_BOOTSTRAP", "this-process:9092")
    monkeypatch.setenv("LANG", "C.UTF-8")
    flink_env._prepare(settings)  # this process's JVM gets its default heap
    child = dataclasses.replace(settings, kafka_bootstrap="child:9092", parallelism=3)

    env = flink_env.child_environment(child)

    assert env["LANG"] == "C.UTF-8"
    assert not [k for k in env if k.startswith(("PYFLINK", "FLINK_")) or k == "JVM_ARGS"]
    assert child.environment().items() <= env.items()
    assert {k for k in env if k.startswith("WARDFLOW_")} <= child.environment().keys()
    assert env["WARDFLOW_KAFKA_BOOTSTRAP"] == "child:9092" and env["WARDFLOW_PARALLELISM"] == "3"


def test_a_jvm_args_this_process_was_given_is_handed_on_to_a_child(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(flink_env, "_jvm_args_set_here", None)
    monkeypatch.setenv("JVM_ARGS", "-Xmx3g")
    flink_env._prepare(settings)
    assert flink_env.child_environment()["JVM_ARGS"] == "-Xmx3g"
