"""ClickHouse client (embedded chdb by default, any server via CLICKHOUSE_URL) and migrations."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import clickhouse_connect

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")


def connect(url: str) -> Any:
    """`chdb:///path` runs ClickHouse in this process (one process per path); `http(s)://…`
    talks to a server."""
    if url.startswith("chdb:"):
        path = url.removeprefix("chdb://")
        if path.startswith("/"):
            Path(path).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=url)


def migrations() -> list[tuple[int, Path]]:
    out = []
    for p in sorted(MIGRATIONS_DIR.glob("*.sql")):
        m = _MIGRATION_NAME.match(p.name)
        if not m:
            raise ValueError(f"migration {p.name} is not named NNNN_snake_case.sql")
        out.append((int(m.group(1)), p))
    versions = [v for v, _ in out]
    if len(set(versions)) != len(versions):
        raise ValueError(f"duplicate migration numbers in {MIGRATIONS_DIR}")
    return out


def statements(sql: str) -> list[str]:
    body = "\n".join(line for line in sql.splitlines() if not line.lstrip().startswith("--"))
    return [s.strip() for s in body.split(";") if s.strip()]


def migrate(client: Any, database: str, until: int | None = None) -> list[int]:
    """Apply, in order, every migration not yet recorded in `{database}.schema_migrations` (up
    to version `until`, where given: a warehouse as an older release left it); forward-only: an
    applied migration is never re-run or changed. Returns the versions applied."""
    client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
    client.command(
        f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations "
        "(version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) "
        "ENGINE = MergeTree ORDER BY version"
    )
    done = {
        r[0] for r in client.query(f"SELECT version FROM {database}.schema_migrations").result_rows
    }
    applied = []
    for version, path in migrations():
        if version in done or (until is not None and version > until):
            continue
        for stmt in statements(path.read_text()):
            client.command(stmt.replace("{db}", database))
        client.insert(
            f"{database}.schema_migrations",
            [[version, path.name]],
            column_names=["version", "name"],
        )
        applied.append(version)
    return applied


def table_columns(client: Any, database: str, table: str) -> dict[str, str]:
    rows = client.query(
        "SELECT name, type FROM system.columns WHERE database = %(db)s AND table = %(t)s "
        "ORDER BY position",
        parameters={"db": database, "t": table},
    ).result_rows
    return {name: typ for name, typ in rows}
