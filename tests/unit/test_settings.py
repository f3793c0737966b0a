from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest

import schemas.settings as settings_module
from jobs.runtime import cli
from schemas.settings import SETTINGS, Settings, Spec, settings_markdown


def test_settings_follow_the_cache_that_the_services_script_fills() -> None:
    s = Settings.from_env({"WARDFLOW_CACHE": "/srv/wf"})
    assert s.flink_jars_dir == Path("/srv/wf/flink-jars")
    assert s.clickhouse_url == "chdb:///srv/wf/state/clickhouse"


def test_explicit_overrides_win_over_the_environment() -> None:
    s = Settings.from_env(
        {"CLICKHOUSE_URL": "http://ch:8123", "WARDFLOW_PARALLELISM": "2"}, parallelism=4
    )
    assert (s.clickhouse_url, s.parallelism) == ("http://ch:8123", 4)


def test_the_phi_key_comes_from_the_environment_and_is_not_printed() -> None:
    s = Settings.from_env({"WARDFLOW_PHI_KEY": "s3cret"})
    assert s.require_phi_key() == b"s3cret" and "s3cret" not in repr(s)


def _env_text(spec: Spec) -> tuple[str, object]:
    """A value of the spec's type unlike its default, written as an environment variable."""
    if spec.name == "transaction_timeout_s":  # checked() bounds it
        return ("600", 600)
    if spec.name == "hl7_ack_policy":  # checked() knows two
        return ("strict", "strict")
    samples: dict[type, tuple[str, object]] = {
        str: ("at-least-once", "at-least-once"),
        int: ("7", 7),
        float: ("2.5", 2.5),
        bool: ("off", False) if spec.default else ("yes", True),
        Path: ("/srv/elsewhere", Path("/srv/elsewhere")),
        bytes: ("k3y", b"k3y"),
    }
    return samples[spec.type]


def test_every_setting_has_a_variable_a_flag_and_a_doc() -> None:
    declared = [f.name for f in dataclasses.fields(Settings) if f.name != "explicit"]
    assert [s.name for s in SETTINGS] == declared
    assert len(SETTINGS) == 73
    for s in SETTINGS:
        assert s.env.isupper() and " " not in s.env, s
        assert s.flag == "--" + s.name.replace("_", "-"), s
        assert len(s.doc) > 20, s
        assert s.type in (str, int, float, bool, Path, bytes), s
        assert isinstance(s.default, s.type), s
    assert len({s.env for s in SETTINGS}) == len({s.flag for s in SETTINGS}) == len(SETTINGS)


EXISTING_VARIABLES = {
    "WARDFLOW_KAFKA_BOOTSTRAP": "kafka_bootstrap",
    "WARDFLOW_FLINK_JARS": "flink_jars_dir",
    "CLICKHOUSE_URL": "clickhouse_url",
    "WARDFLOW_CLICKHOUSE_DATABASE": "clickhouse_database",
    "WARDFLOW_DATA_DIR": "data_dir",
    "WARDFLOW_PARALLELISM": "parallelism",
    "WARDFLOW_SOURCE_IDLE_TIMEOUT_S": "source_idle_timeout_s",
    "WARDFLOW_DELIVERY_GUARANTEE": "delivery_guarantee",
    "WARDFLOW_CHECKPOINT_INTERVAL_S": "checkpoint_interval_s",
    "WARDFLOW_CHECKPOINT_DIR": "checkpoint_dir",
    "WARDFLOW_HL7_TIMEZONE": "hl7_timezone",
    "WARDFLOW_CAPACITY_FILE": "capacity_file",
    "WARDFLOW_MODEL_REGISTRY": "model_registry",
    "WARDFLOW_SCORING": "scoring",
    "WARDFLOW_FEAST_ONLINE_STORE": "feast_online_store",
    "WARDFLOW_FEAST_DIR": "feast_dir",
    "WARDFLOW_PHI_KEY": "phi_key",
}


def test_the_existing_variable_names_keep_working() -> None:
    env = {s.env: s.name for s in SETTINGS}
    assert {v: env.get(v) for v in EXISTING_VARIABLES} == EXISTING_VARIABLES
    assert env["WARDFLOW_MAX_OUT_OF_ORDERNESS_S"] == "max_out_of_orderness_s"


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_each_variable_round_trips_its_type(spec: Spec) -> None:
    text, value = _env_text(spec)
    s = Settings.from_env({spec.env: text})
    assert getattr(s, spec.name) == value and isinstance(getattr(s, spec.name), spec.type)
    if spec.name != "phi_key":  # the others stay at their defaults
        other = {
            o.name: getattr(s, o.name) for o in SETTINGS if o.name not in (spec.name, "phi_key")
        }
        assert other == {
            o.name: o.default for o in SETTINGS if o.name not in (spec.name, "phi_key")
        }


@pytest.mark.parametrize(
    ("text", "value"),
    [(t, True) for t in ("1", "true", "on", "yes", "TRUE", "Yes")]
    + [(t, False) for t in ("0", "false", "off", "no", "OFF", "No")],
)
def test_booleans_take_the_usual_spellings(text: str, value: bool) -> None:
    assert Settings.from_env({"WARDFLOW_SCORING": text}).scoring is value
    assert Settings.from_env({"WARDFLOW_WATERMARK_ON_EVENT": text}).watermark_on_event is value


def test_a_malformed_variable_names_itself() -> None:
    with pytest.raises(ValueError, match="WARDFLOW_SCORING"):
        Settings.from_env({"WARDFLOW_SCORING": "flase"})
    with pytest.raises(ValueError, match="WARDFLOW_MAX_OUT_OF_ORDERNESS_S"):
        Settings.from_env({"WARDFLOW_MAX_OUT_OF_ORDERNESS_S": "1m"})


def test_an_empty_variable_counts_as_unset() -> None:
    assert Settings.from_env({"WARDFLOW_PARALLELISM": "", "CLICKHOUSE_URL": ""}) == (
        Settings.from_env({})
    )


def test_the_cache_moves_every_derived_default_and_explicit_variables_win() -> None:
    s = Settings.from_env({"WARDFLOW_CACHE": "/c"})
    assert (s.flink_jars_dir, s.flink_tmp_dir, s.flink_log_dir, s.checkpoint_dir) == (
        Path("/c/flink-jars"),
        Path("/c/flink-tmp"),
        Path("/c/flink-logs"),
        "/c/checkpoints",
    )
    assert (s.clickhouse_url, s.model_registry, s.feast_dir) == (
        "chdb:///c/state/clickhouse",
        Path("/c/state/registry"),
        Path("/c/state/feast"),
    )
    s = Settings.from_env(
        {"WARDFLOW_CACHE": "/c", "WARDFLOW_STATE": "/s", "WARDFLOW_CHECKPOINT_DIR": "/ck"}
    )
    assert (s.clickhouse_url, s.model_registry, s.feast_dir, s.checkpoint_dir) == (
        "chdb:///s/clickhouse",
        Path("/s/registry"),
        Path("/s/feast"),
        "/ck",
    )
    assert s.flink_jars_dir == Path("/c/flink-jars")
    # Without the cache, the state variable alone moves nothing (as before).
    assert Settings.from_env({"WARDFLOW_STATE": "/s"}).feast_dir == Settings().feast_dir


def _parse(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser()
    Settings.add_arguments(ap)
    return ap.parse_args(argv)


def test_the_command_line_wins_over_the_environment_and_overrides_win_over_both() -> None:
    env = {"WARDFLOW_MAX_OUT_OF_ORDERNESS_S": "30", "WARDFLOW_PARALLELISM": "2"}
    a = _parse(["--max-out-of-orderness-s", "90", "--scoring", "off", "--watermark-on-event"])
    s = Settings.resolve(a, env)
    assert (s.max_out_of_orderness_s, s.parallelism, s.scoring, s.watermark_on_event) == (
        90,
        2,
        False,
        True,
    )
    assert Settings.resolve(a, env, max_out_of_orderness_s=5).max_out_of_orderness_s == 5
    assert Settings.resolve({"parallelism": 3, "bounded": True}, env).parallelism == 3


def test_flags_not_given_leave_the_environment_alone() -> None:
    assert vars(_parse([])) == {}
    assert (
        Settings.resolve(_parse([]), {"WARDFLOW_PYTHON_BUNDLE_SIZE": "50"}).python_bundle_size == 50
    )


@pytest.mark.parametrize("spec", SETTINGS, ids=lambda s: s.name)
def test_each_flag_round_trips_its_type(spec: Spec) -> None:
    text, value = _env_text(spec)
    s = Settings.resolve(_parse([spec.flag, text]), {})
    assert getattr(s, spec.name) == value


def test_a_malformed_flag_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _parse(["--parallelism", "two"])
    assert "--parallelism" in capsys.readouterr().err


def test_the_job_command_line_has_its_own_options_and_every_setting_once() -> None:
    ap = cli.parser("a job")
    flags = {o for action in ap._actions for o in action.option_strings}
    assert {"--bounded", "--topic-prefix", "--restore"} <= flags
    assert {s.flag for s in SETTINGS} <= flags
    a = ap.parse_args(["--bounded", "--parallelism", "4", "--restore", "latest"])
    assert (a.bounded, a.parallelism, a.restore, a.topic_prefix) == (True, 4, "latest", "")


def test_the_readme_lists_every_setting_from_the_table() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table = settings_markdown()
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    assert table in section
    for s in SETTINGS:
        assert f"| `{s.name}` | `{s.env}` | `{s.flag}` |" in table


def test_without_a_key_one_random_key_is_resolved_once_and_never_changed() -> None:
    s = Settings.from_env({})
    before = dataclasses.asdict(s)
    assert s.phi_key and s.phi_key_ephemeral
    settings_module._warn_ephemeral_phi_key.cache_clear()
    with pytest.warns(UserWarning, match="WARDFLOW_PHI_KEY is not set"):
        first = s.require_phi_key()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # warned once per process, not again
        assert s.require_phi_key() == first == s.phi_key
    assert dataclasses.asdict(s) == before
    assert Settings.from_env({}).require_phi_key() == first  # one key per process
    assert first.hex() not in repr(s) and first.decode() not in repr(s)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.phi_key = b"other"  # type: ignore[misc]


def test_a_given_key_is_not_ephemeral_and_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        s = Settings.from_env({"WARDFLOW_PHI_KEY": "k"})
        assert not s.phi_key_ephemeral and s.require_phi_key() == b"k"
        assert Settings.from_env({}, phi_key=b"bench").require_phi_key() == b"bench"
        assert Settings.resolve(
            _parse(["--phi-key", "cli"]), {"WARDFLOW_PHI_KEY": "env"}
        ).phi_key == (b"cli")
    s = Settings.from_env({})
    replaced = dataclasses.replace(s, phi_key=b"real")
    assert not replaced.phi_key_ephemeral and replaced.require_phi_key() == b"real"


def test_settings_built_directly_without_a_key_refuse_to_invent_one() -> None:
    s = Settings(data_dir=Path("/d"))
    assert s.phi_key == b""
    with pytest.raises(ValueError, match="no PHI key"):
        s.require_phi_key()
    assert Settings(phi_key=b"x").require_phi_key() == b"x"


def test_the_public_api_is_unchanged() -> None:
    s = Settings.from_env({"WARDFLOW_DATA_DIR": "/d"}, parallelism=None, job_name="j")
    assert s.job_name == "j" and s.parallelism == 1
    assert s.physionet_setA == Path("/d/physionet2019/setA.parquet")
    assert s.python_executable == sys.executable
    assert dataclasses.replace(s, parallelism=3).checked().parallelism == 3
    with pytest.raises(ValueError, match="delivery_guarantee"):
        Settings.from_env({"WARDFLOW_DELIVERY_GUARANTEE": "maybe"})
    with pytest.raises(TypeError):
        Settings.from_env({}, no_such_setting=1)


def _run_job(monkeypatch: pytest.MonkeyPatch, argv: list[str]) -> tuple[Settings, dict[str, Any]]:
    ran: list[tuple[Settings, dict[str, Any]]] = []
    monkeypatch.setattr("jobs.runtime.kafka_io.wait_for_broker", lambda settings: None)
    monkeypatch.setattr("signal.signal", lambda *a: None)
    cli.job_main("a job", "stage", lambda s, **kw: ran.append((s, kw)), argv)
    return ran[0]


def test_a_job_resolves_its_settings_once_from_the_environment_then_its_flags(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDFLOW_PARALLELISM", "2")
    monkeypatch.setenv("WARDFLOW_MAX_OUT_OF_ORDERNESS_S", "30")
    monkeypatch.setenv("WARDFLOW_JOB_NAME", "every-job")
    s, kw = _run_job(monkeypatch, ["--bounded", "--parallelism", "3", "--topic-prefix", "t."])
    assert (s.parallelism, s.max_out_of_orderness_s, s.job_name) == (3, 30, "stage")
    assert kw == {"prefix": "t.", "bounded": True}
    s, _ = _run_job(monkeypatch, ["--job-name", "renamed", "--restore", "/ck/chk-3"])
    assert (s.job_name, s.restore_from) == ("renamed", "/ck/chk-3")


def test_the_environment_of_some_settings_gives_a_new_process_the_same_settings() -> None:
    changed = {spec.name: _env_text(spec)[1] for spec in SETTINGS}
    s = Settings.resolve(None, {}, **changed)
    env = s.environment()
    assert len(env) == len(SETTINGS)
    assert Settings.from_env(env) == s
    # Only the key: the process's random one, so that the new process writes the same tokens.
    assert Settings.from_env({}).environment().keys() == {"WARDFLOW_PHI_KEY"}
