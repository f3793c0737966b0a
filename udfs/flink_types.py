"""PyFlink types of the internal rows declared in schemas.rows.

- `type_info(row)`: DataStream TypeInformation (`Types.ROW_NAMED`), the `output_type` of a
  process function that emits the row;
- `data_type(row)`: Table API DataType (`DataTypes.ROW`), the `result_type` of a scalar UDF;
- `field_data_types(row)`: the list a table function (UDTF) takes as `result_types`.

Neither needs a JVM.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pandas as pd
from pyflink.common import Types
from pyflink.common.typeinfo import RowTypeInfo, TypeInformation
from pyflink.table import DataTypes
from pyflink.table.types import DataType

from schemas import rows

_TYPE_INFO: dict[str, Callable[[], TypeInformation]] = {
    "string": Types.STRING,
    "int": Types.INT,
    "long": Types.LONG,
    "float": Types.FLOAT,
    "double": Types.DOUBLE,
    "boolean": Types.BOOLEAN,
    "bytes": lambda: Types.PRIMITIVE_ARRAY(Types.BYTE()),
    "doubles": lambda: Types.BASIC_ARRAY(Types.DOUBLE()),
    "strings": lambda: Types.BASIC_ARRAY(Types.STRING()),
}
_DATA_TYPE: dict[str, Callable[[], DataType]] = {
    "string": DataTypes.STRING,
    "int": DataTypes.INT,
    "long": DataTypes.BIGINT,
    "float": DataTypes.FLOAT,
    "double": DataTypes.DOUBLE,
    "boolean": DataTypes.BOOLEAN,
    "bytes": DataTypes.BYTES,
    "timestamp": lambda: DataTypes.TIMESTAMP(3),
    "doubles": lambda: DataTypes.ARRAY(DataTypes.DOUBLE()),
    "strings": lambda: DataTypes.ARRAY(DataTypes.STRING()),
}


def field_type_info(f: rows.Field) -> TypeInformation:
    """A field's DataStream type. A `timestamp` has none here: the rows Python functions emit
    carry event times as epoch-ms longs (`<name>_ms`), because a Python datetime of a Flink
    timestamp is wrong after 2038 (see jobs/bed_census.py); adding one is a deliberate change."""
    if f.kind not in _TYPE_INFO:
        raise ValueError(
            f"field {f.name}: kind {f.kind} has no DataStream type here; use an epoch-ms long"
        )
    return _TYPE_INFO[f.kind]()


def field_data_type(f: rows.Field) -> DataType:
    """A field's Table API type (nullable)."""
    return _DATA_TYPE[f.kind]()


def type_info(row: rows.Row) -> RowTypeInfo:
    """`Types.ROW_NAMED` of the row: a process function's `output_type`."""
    return Types.ROW_NAMED(list(row.columns), [field_type_info(f) for f in row.fields])


def data_type(row: rows.Row) -> DataType:
    """`DataTypes.ROW` of the row: a scalar UDF's `result_type`."""
    return DataTypes.ROW([DataTypes.FIELD(f.name, field_data_type(f)) for f in row.fields])


def field_data_types(row: rows.Row) -> list[DataType]:
    """The row's field types in order: a table function's `result_types`."""
    return [field_data_type(f) for f in row.fields]


def batch_frame(names: tuple[str, ...], columns: tuple[Any, ...]) -> pd.DataFrame:
    """A vectorised UDF's arguments as one frame: a Series per argument, or a scalar where the
    planner folded an argument into a constant, broadcast to the batch."""
    index = next(c.index for c in columns if isinstance(c, pd.Series))
    return pd.DataFrame(
        {
            n: c if isinstance(c, pd.Series) else pd.Series(c, index=index)
            for n, c in zip(names, columns, strict=True)
        }
    )
