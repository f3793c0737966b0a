"""Model lifecycle audit events reach Kafka (model.audit.v1) and the warehouse: a rollback run
from the registry's command line is published by the real broker and loaded by the real
loader into ClickHouse `model_audit`, with who, what and why."""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from sinks import clickhouse as ch
from sinks import loader
from training import registry as registry_cli
from training.registry import bootstrap
from udfs.registry import Registry

pytestmark = pytest.mark.integration
MODEL = "sepsis-risk"


def test_a_rollback_is_published_to_the_audit_topic_and_lands_in_the_warehouse(
    kafka: Settings, clickhouse: Any, tmp_path: Path
) -> None:
    prefix = f"ma-{uuid.uuid4().hex[:8]}."
    settings = dataclasses.replace(kafka, clickhouse_database=kafka.clickhouse_database + "_ma")
    db = settings.clickhouse_database
    ch.migrate(clickhouse, db)
    reg = Registry(tmp_path / "registry")
    bootstrap(reg, MODEL)  # v1 champion, v2 challenger
    reg.register(registry_cli.BUNDLED / MODEL / "1-gbt")  # v3: passes its gate
    cli = ["--model-registry", str(reg.root), "--kafka-bootstrap", settings.kafka_bootstrap]
    cli += ["--topic-prefix", prefix, "--actor", "user:oncall"]
    registry_cli.main(["promote", MODEL, "3", *cli, "--why", "reviewed shadow metrics"])
    registry_cli.main(["rollback", MODEL, *cli, "--why", "alert rate doubled"])
    assert reg.roles(MODEL)["champion"] == "1"

    published = kafka_io.read_records(
        settings, prefix + topics.MODEL_AUDIT.name, topics.MODEL_AUDIT.name
    )
    assert [(r["step"], r["model_version"]) for r in published] == [
        ("promoted", "3"),
        ("rollback", "1"),
    ]
    assert [r["audit_id"] for r in published] == [e["audit_id"] for e in reg.audit(MODEL)]

    ld = loader.Loader(
        settings,
        clickhouse,
        prefix=prefix,
        topics={topics.MODEL_AUDIT.name: loader.TABLES[topics.MODEL_AUDIT.name]},
        group_id="model-audit-test",
    )
    try:
        ld.drain()
    finally:
        ld.close()
    rows = clickhouse.query(
        f"SELECT step, model_version, actor, reason, evidence_json FROM {db}.model_audit FINAL "
        "ORDER BY kafka_offset"
    ).result_rows
    assert [r[:4] for r in rows] == [
        ("promoted", "3", "user:oncall", "reviewed shadow metrics"),
        ("rollback", "1", "user:oncall", "alert rate doubled"),
    ]
    evidence = json.loads(rows[1][4])
    assert evidence["before"]["champion"] == "3" and evidence["after"]["champion"] == "1"
    clickhouse.command(f"DROP DATABASE {db}")
