"""The model registry: gated registration, roles, promotion and rollback, the bundled versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.registry_versions import with_gate
from training.registry import bootstrap
from udfs.registry import GateFailed, Registry

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
