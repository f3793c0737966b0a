"""Thin PyFlink wrappers over the pure functions in udfs.vitals (registered by the jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from pyflink.common import Row
from pyflink.table import DataTypes
from pyflink.table.types import DataType
from pyflink.table.udf import (
    ScalarFunction,
    TableFunction,
    UserDefinedScalarFunctionWrapper,
    UserDefinedTableFunctionWrapper,
    udf,
    udtf,
)

from schemas.avro import AvroField
from udfs.vitals import DECODED_FIELDS, decode_observation, news2_summary

_TYPES = {
    "string": DataTypes.STRING,
    "int": DataTypes.INT,
    "long": DataTypes.BIGINT,
    "float": DataTypes.FLOAT,
    "double": DataTypes.DOUBLE,
    "boolean": DataTypes.BOOLEAN,
    "bytes": DataTypes.BYTES,
}


def flink_data_type(f: AvroField) -> DataType:
    return _TYPES[f.base]()


DECODED_COLUMNS = ("reason_code", "reason", *(f.name for f in DECODED_FIELDS))
DECODED_TYPES = [
    DataTypes.STRING(),
    DataTypes.STRING(),
    *(flink_data_type(f) for f in DECODED_FIELDS),
]
NEWS2_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("score", DataTypes.INT()),
        DataTypes.FIELD("params_scored", DataTypes.INT()),
        DataTypes.FIELD("red_flag", DataTypes.BOOLEAN()),
    ]
)


class DecodeObservation(TableFunction):  # type: ignore[misc]
    """One row per record: a table function, because the planner cannot filter on the fields of
    a row-typed Python scalar result (RemoteCalcSplitRule fails) and the rowtime must survive."""

    def eval(self, payload: bytes | None, record_time: datetime | None) -> Iterator[Row]:
        yield Row(*decode_observation(payload, record_time))


class News2(ScalarFunction):  # type: ignore[misc]
    def eval(self, *values: Any) -> Row:
        return Row(*news2_summary(*values))


def decode_observation_udtf() -> UserDefinedTableFunctionWrapper:
    return udtf(DecodeObservation(), result_types=DECODED_TYPES)


def news2_udf() -> UserDefinedScalarFunctionWrapper:
    return udf(News2(), result_type=NEWS2_TYPE)
