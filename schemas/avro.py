"""Loads the `.avsc` files and derives from them the Flink SQL and ClickHouse column types.

Supported field shapes are those wardflow's schemas use: a primitive, a `timestamp-millis`
long, an array of strings, or `["null", one of those]`. Anything else raises, so a new
shape is a deliberate change here rather than a silent mis-mapping.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import fastavro

SCHEMA_DIR = Path(__file__).resolve().parent

FLINK_TYPES = {  # Avro primitive -> Flink SQL type
    "string": "STRING",
    "int": "INT",
    "long": "BIGINT",
    "float": "FLOAT",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "bytes": "BYTES",
}
_CLICKHOUSE = {
    "string": "String",
    "int": "Int32",
    "long": "Int64",
    "float": "Float32",
    "double": "Float64",
    "boolean": "Bool",
    "bytes": "String",
}


@dataclass(frozen=True)
class AvroField:
    name: str
    base: str
    logical: str | None
    nullable: bool
    doc: str
    phi: str | None
    value_range: tuple[float, float] | None
    allowed: tuple[str, ...] | None

    def flink_type(self) -> str:
        """As Flink's Avro format reads and writes it (timestamp-millis ↔ TIMESTAMP(3))."""
        t = "TIMESTAMP(3)" if self.logical == "timestamp-millis" else FLINK_TYPES[self.base]
        return t if self.nullable else f"{t} NOT NULL"

    def clickhouse_type(self) -> str:
        t = "DateTime64(3, 'UTC')" if self.logical == "timestamp-millis" else _CLICKHOUSE[self.base]
        return f"Nullable({t})" if self.nullable else t


@dataclass(frozen=True)
class Schema:
    name: str
    raw: dict[str, Any]
    parsed: Any
    fields: tuple[AvroField, ...]

    @property
    def field_names(self) -> list[str]:
        return [f.name for f in self.fields]

    def field(self, name: str) -> AvroField:
        for f in self.fields:
            if f.name == name:
                return f
        raise KeyError(name)

    def flink_columns(self) -> str:
        """Column list for a Flink `CREATE TABLE` whose format decodes this schema."""
        return ",\n  ".join(f"`{f.name}` {f.flink_type()}" for f in self.fields)

    def flink_row(self) -> str:
        """The schema as a Flink SQL row type, ``ROW<`a` STRING, …>``."""
        return f"ROW<{self.flink_columns()}>"

    def clickhouse_columns(self) -> dict[str, str]:
        return {f.name: f.clickhouse_type() for f in self.fields}


def _field(spec: dict[str, Any]) -> AvroField:
    t = spec["type"]
    nullable = False
    if isinstance(t, list):
        if len(t) != 2 or t[0] != "null":
            raise ValueError(f"field {spec['name']}: only ['null', T] unions are supported")
        nullable, t = True, t[1]
    logical = None
    if isinstance(t, dict):
        logical = t.get("logicalType")
        if t["type"] != "long" or logical != "timestamp-millis":
            raise ValueError(f"field {spec['name']}: unsupported complex type {t}")
        t = "long"
    if t not in FLINK_TYPES:
        raise ValueError(f"field {spec['name']}: unsupported type {t}")
    rng = spec.get("wardflow.range")
    allowed = spec.get("wardflow.enum")
    return AvroField(
        name=spec["name"],
        base=t,
        logical=logical,
        nullable=nullable,
        doc=spec.get("doc", ""),
        phi=spec.get("wardflow.phi"),
        value_range=(float(rng[0]), float(rng[1])) if rng else None,
        allowed=tuple(allowed) if allowed else None,
    )


@cache
def load_schema(name: str) -> Schema:
    path = SCHEMA_DIR / f"{name}.avsc"
    raw = json.loads(path.read_text())
    parsed = fastavro.parse_schema(raw)
    return Schema(name=name, raw=raw, parsed=parsed, fields=tuple(_field(f) for f in raw["fields"]))
