"""The ClickHouse migrations run on real ClickHouse (embedded chdb) and match the Avro schemas."""

from __future__ import annotations

import re
from typing import Any

from schemas import load_schema
from sinks import clickhouse as ch
from sinks.loader import META, TABLES


def _plain(t: str) -> str:
    return re.sub(r"^LowCardinality\((.*)\)$", r"\1", t)


def test_migrations_are_numbered_and_forward_only(clickhouse: Any, settings: Any) -> None:
    versions = [v for v, _ in ch.migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert ch.migrate(clickhouse, settings.clickhouse_database) == []  # already applied


def test_every_loaded_table_has_the_topic_schema_columns(clickhouse: Any, settings: Any) -> None:
    for topic, table in TABLES.items():
        cols = ch.table_columns(clickhouse, settings.clickhouse_database, table)
        want = load_schema(topic).clickhouse_columns()
        got = {k: _plain(v) for k, v in cols.items() if k in want}
        assert got == want, table
        extra = set(cols) - set(want)
        assert extra == {*META, "loaded_at"}, table
