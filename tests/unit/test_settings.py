from __future__ import annotations

from pathlib import Path

from schemas.settings import Settings


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
