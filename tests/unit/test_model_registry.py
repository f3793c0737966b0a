"""The model registry: gated registration, roles, promotion and rollback, the bundled versions."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.registry_versions import with_gate
from training.registry import bootstrap
from udfs.registry import GateFailed, InvalidVersion, Registry, load_session

MODEL = "sepsis-risk"


def test_a_version_whose_subgroup_gate_failed_is_not_registered(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    with pytest.raises(GateFailed, match="MICU"):
        reg.register(with_gate(tmp_path, passed=False))
    assert reg.versions(MODEL) == []


def test_bootstrap_registers_the_bundled_champion_and_challenger_once(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    assert bootstrap(reg, MODEL)
    assert not bootstrap(reg, MODEL)
    assert reg.roles(MODEL) == {"champion": "1", "challenger": "2"}
    champion = reg.role(MODEL, "champion")
    assert champion is not None and champion.onnx.exists()
    assert champion.spec["version"] == "1" and len(champion.spec["onnx_sha256"]) == 64
    assert 0 < champion.threshold < 1


def test_promotion_and_rollback_move_roles_and_keep_every_version(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    v3 = reg.register(with_gate(tmp_path, passed=True))
    reg.set_role(MODEL, "challenger", v3.version, why="test")
    assert reg.roles(MODEL) == {"champion": "1", "challenger": "3"}
    reg.promote(MODEL, "3")
    assert reg.roles(MODEL) == {"champion": "3"}  # a version holds one role
    assert reg.rollback(MODEL) == "1"
    assert reg.roles(MODEL)["champion"] == "1"
    assert reg.versions(MODEL) == ["1", "2", "3"]
    assert [h["why"] for h in reg.history(MODEL)][-2:] == ["promote 3", "rollback from 3"]


def test_a_version_kept_for_shadow_despite_its_gate_can_never_be_champion(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    v = reg.register(with_gate(tmp_path, passed=False), override="shadow evaluation only")
    assert v.spec["gate"]["override"] == "shadow evaluation only"
    reg.set_role(MODEL, "challenger", v.version, why="shadow")
    with pytest.raises(GateFailed, match="MICU"):
        reg.promote(MODEL, v.version)
    assert reg.roles(MODEL) == {"challenger": v.version}


def test_the_champion_cannot_be_named_the_challenger_and_so_lose_its_role(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    with pytest.raises(ValueError, match="is the champion"):
        reg.set_role(MODEL, "challenger", "1", why="a slip of the version")
    assert reg.roles(MODEL)["champion"] == "1"  # the job keeps scoring


def test_a_role_cannot_name_a_version_that_does_not_exist(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    with pytest.raises(KeyError):
        reg.promote(MODEL, "9")


def test_the_model_version_dimension_follows_the_registry(
    tmp_path: Path, clickhouse: Any, settings: Any
) -> None:
    from sinks import dims

    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    retrained = reg.register(with_gate(tmp_path, passed=True))
    reg.promote(MODEL, retrained.version)
    db = settings.clickhouse_database
    dims.upsert_model_versions(clickhouse, db, dims.model_versions(reg, MODEL))
    rows = clickhouse.query(
        f"SELECT model_version, role, round(auroc, 3) FROM {db}.dim_model_version FINAL "
        "ORDER BY model_version"
    ).result_rows
    aurocs = [round(reg.get(MODEL, v).spec["metrics"]["auroc"], 3) for v in ("1", "2", "3")]
    assert rows == [
        ("1", "retired", aurocs[0]),
        ("2", "challenger", aurocs[1]),
        ("3", "champion", aurocs[2]),
    ]


def test_each_rollback_goes_one_champion_further_back_never_to_the_one_it_left(
    tmp_path: Path,
) -> None:
    """A rollback took the latest champion other than the current one: the one just rolled
    back from, so a second rollback brought the rejected model back."""
    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)  # champion 1
    for source in ("1-gbt", "2-mlp-wide"):
        reg.promote(MODEL, reg.register(with_gate(tmp_path, True, source)).version)
    assert reg.roles(MODEL)["champion"] == "4"
    assert [reg.rollback(MODEL), reg.rollback(MODEL)] == ["3", "1"]
    with pytest.raises(LookupError):
        reg.rollback(MODEL)
    reg.promote(MODEL, "4")
    assert reg.rollback(MODEL) == "1"


def test_a_version_that_could_not_be_served_is_not_registered(tmp_path: Path) -> None:
    reg = Registry(tmp_path / "reg")
    cut = with_gate(tmp_path, passed=True)
    (cut / "model.onnx").write_bytes((cut / "model.onnx").read_bytes()[:1000])
    with pytest.raises(InvalidVersion, match="does not load"):
        reg.register(cut)
    misnamed = with_gate(tmp_path, passed=True, source="2-mlp-wide")
    spec = json.loads((misnamed / "spec.json").read_text())
    (misnamed / "spec.json").write_text(json.dumps(spec | {"input": {"name": "x"}}))
    with pytest.raises(InvalidVersion, match="inputs"):
        reg.register(misnamed)
    assert reg.versions(MODEL) == [] and not list((tmp_path / "reg" / MODEL).glob(".*.tmp"))


def test_a_model_file_copied_over_a_registered_version_is_refused_when_loaded(
    tmp_path: Path,
) -> None:
    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    one, two = reg.get(MODEL, "1"), reg.get(MODEL, "2")
    load_session(one)
    one.onnx.write_bytes(two.onnx.read_bytes())
    with pytest.raises(InvalidVersion, match="not the file registered"):
        load_session(one)


def _churn(root: str, role: str, versions: list[str], times: int) -> None:
    reg = Registry(Path(root))
    for i in range(times):
        reg.set_role(MODEL, role, versions[i % len(versions)], why=f"{role} {i}")


def test_concurrent_role_changes_each_apply_whole_and_are_all_in_the_history(
    tmp_path: Path,
) -> None:
    """Two writers (an operator promoting, a retraining run setting the challenger) shared one
    temporary file: a third to a half of their changes failed midway, and a reader could read
    an empty roles.json."""
    import multiprocessing

    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    reg.register(with_gate(tmp_path, passed=True))
    before = len(reg.history(MODEL))
    ctx = multiprocessing.get_context("spawn")
    writers = [
        ctx.Process(target=_churn, args=(str(reg.root), "champion", ["1", "3"], 60)),
        ctx.Process(target=_churn, args=(str(reg.root), "challenger", ["2"], 60)),
    ]
    for w in writers:
        w.start()
    read = 0
    while any(w.is_alive() for w in writers):
        assert reg.roles(MODEL).get("champion") in ("1", "3")  # never empty, never half
        read += 1
    for w in writers:
        w.join()
        assert w.exitcode == 0
    assert len(reg.history(MODEL)) == before + 120 and read > 0
    assert not list((tmp_path / "reg" / MODEL).glob(".roles.*"))


def test_roles_stay_readable_by_the_jobs_user_and_old_flip_flop_histories_roll_back(
    tmp_path: Path,
) -> None:
    """mkstemp makes 0600: after one promotion by an operator, the jobs (another uid) could not
    read the roles. A history the old rollback wrote (1, 2, back to 1, back to 2) rolls back
    to 1, the champion 2 replaced."""
    reg = Registry(tmp_path / "reg")
    bootstrap(reg, MODEL)
    reg.promote(MODEL, "2")
    assert (reg.root / MODEL / "roles.json").stat().st_mode & 0o777 == 0o644
    history = reg.root / MODEL / "history.jsonl"
    lines = [
        {"at": "2026-01-01T00:00:00+00:00", "roles": {"champion": "1"}, "why": "promote 1"},
        {"at": "2026-01-02T00:00:00+00:00", "roles": {"champion": "2"}, "why": "promote 2"},
        {"at": "2026-01-03T00:00:00+00:00", "roles": {"champion": "1"}, "why": "rollback from 2"},
        {"at": "2026-01-04T00:00:00+00:00", "roles": {"champion": "2"}, "why": "rollback from 1"},
    ]
    history.write_text("".join(json.dumps(line) + "\n" for line in lines))
    assert reg.champions(MODEL) == ["1", "2"] and reg.rollback(MODEL) == "1"


def test_the_catalogs_regression_model_has_its_versions_in_the_dimension_too(
    tmp_path: Path, clickhouse: Any, settings: Any
) -> None:
    """The ML ops board picks its model from dim_model_version: the loader wrote the sepsis
    model's versions only, so a catalog model's monitor breaches could not be selected. A
    regression model has no AUROC nor threshold: NaN, not a crash."""
    import math

    from sinks import dims

    reg = Registry(tmp_path / "reg")
    assert bootstrap(reg, "length-of-stay")
    [row] = dims.model_versions(reg, "length-of-stay")
    assert (row.model_name, row.role) == ("length-of-stay", "champion")
    assert math.isnan(row.auroc) and row.training_data_sha256
    from sinks import clickhouse as ch

    db = settings.clickhouse_database + "_dims"  # a warehouse of its own
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    dims.upsert_model_versions(clickhouse, db, [row])
    names = clickhouse.query(f"SELECT model_name FROM {db}.dim_model_version FINAL").result_rows
    assert names == [("length-of-stay",)]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
