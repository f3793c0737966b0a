"""Thin PyFlink wrappers over the pure functions in udfs.vitals (registered by the jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pyflink.common import Row
from pyflink.table.udf import (
    ScalarFunction,
    TableFunction,
    UserDefinedScalarFunctionWrapper,
    UserDefinedTableFunctionWrapper,
    udf,
    udtf,
)

from schemas import load_schema, rows, topics
from udfs.flink_types import data_type, field_data_types
from udfs.vitals import (
    decode_observation,
    decode_record,
    decoded_fields,
    news2_summary,
)


def decoded_row(schema_name: str) -> rows.Row:
    """The decode UDTF's result row for a registry schema (udfs.vitals.decode_record)."""
    schema = load_schema(schema_name)
    return rows.decoded(schema, (f.name for f in decoded_fields(schema)))


DECODED_ROW = decoded_row(topics.VITALS_OBSERVATION.schema_name)
DECODED_COLUMNS = DECODED_ROW.columns
DECODED_TYPES = field_data_types(DECODED_ROW)
NEWS2_TYPE = data_type(rows.NEWS2_RESULT)


class DecodeObservation(TableFunction):  # type: ignore[misc]
    """One row per record: a table function, because the planner cannot filter on the fields of
    a row-typed Python scalar result (RemoteCalcSplitRule fails) and the rowtime must survive."""

    def eval(self, payload: bytes | None, record_time_ms: int | None) -> Iterator[Row]:
        yield Row(*decode_observation(payload, record_time_ms))


class News2(ScalarFunction):  # type: ignore[misc]
    def eval(self, *values: Any) -> Row:
        return Row(*news2_summary(*values))


class DecodeRecord(TableFunction):  # type: ignore[misc]
    """Decode + validate a raw Kafka value with a registry schema (see udfs.vitals)."""

    def __init__(self, schema_name: str) -> None:
        self.schema_name = schema_name

    def open(self, function_context: Any) -> None:
        self.schema = load_schema(self.schema_name)

    def eval(self, payload: bytes | None, record_time_ms: int | None) -> Iterator[Row]:
        yield Row(*decode_record(self.schema, payload, record_time_ms))


def decoded_columns(schema_name: str) -> tuple[str, ...]:
    return decoded_row(schema_name).columns


def decode_udtf(schema_name: str) -> UserDefinedTableFunctionWrapper:
    types = field_data_types(decoded_row(schema_name))
    return udtf(DecodeRecord(schema_name), result_types=types)


def decode_observation_udtf() -> UserDefinedTableFunctionWrapper:
    return udtf(DecodeObservation(), result_types=DECODED_TYPES)


def news2_udf() -> UserDefinedScalarFunctionWrapper:
    return udf(News2(), result_type=NEWS2_TYPE)
