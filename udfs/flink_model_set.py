"""The vectorised (pandas) PyFlink UDF around udfs.model_set.ModelSet: the catalog's models are
opened once per worker in `open()`, never per record.

The job says which feature columns it passes (their order is the UDF's arguments after the
model name and the entity key) and how to open the feature services' lookups (a picklable
factory returning `{service: lookup}`, e.g. Feast online features), so this layer knows no
feature store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from schemas.rows import MODEL_SCORE_RESULT
from udfs.flink_types import batch_frame, data_type
from udfs.model_set import Lookup, ModelSet
from udfs.registry import Registry

RESULT_TYPE = data_type(MODEL_SCORE_RESULT)
Lookups = Callable[[], dict[str, Lookup]]


def no_lookups() -> dict[str, Lookup]:
    return {}


class ScoreModels(ScalarFunction):  # type: ignore[misc]
    def __init__(
        self,
        features: tuple[str, ...],
        registry: Path,
        models: tuple[str, ...],
        lookups: Lookups,
        roles_check_s: float,
    ) -> None:
        self.input_columns = ("model", "entity_key", *features)
        self.args = (registry, models, lookups, roles_check_s)
        self.models: ModelSet | None = None

    def open(self, function_context: FunctionContext) -> None:
        registry, models, lookups, roles_check_s = self.args
        self.models = ModelSet(Registry(registry), models, lookups(), roles_check_s)

    def eval(self, *columns: Any) -> pd.DataFrame:
        """One batch (udfs.flink_types.batch_frame)."""
        assert self.models is not None
        batch = batch_frame(self.input_columns, columns)
        return self.models.score(batch)


def model_score_udf(
    features: tuple[str, ...],
    registry: Path,
    models: tuple[str, ...],
    lookups: Lookups = no_lookups,
    roles_check_s: float = 30.0,
) -> UserDefinedScalarFunctionWrapper:
    types = [DataTypes.STRING(), DataTypes.STRING(), *[DataTypes.DOUBLE()] * len(features)]
    return udf(
        ScoreModels(features, registry, models, lookups, roles_check_s),
        input_types=types,
        result_type=RESULT_TYPE,
        func_type="pandas",
    )
