"""The vectorised (pandas) PyFlink UDF around udfs.scoring.Scorer: the registry's models and the
feature source are opened once per worker in `open()`, never per record.

The job says which stream features it passes (their order is the UDF's arguments after
patient_token, event_time and whether the row is to be scored) and how to open the feature
source (a picklable factory, e.g. `functools.partial(feature_store.online.feast_source, …)`), so
this layer knows no feature store."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from schemas.rows import SCORE_RESULT
from udfs.flink_types import batch_frame, data_type
from udfs.registry import Registry
from udfs.scoring import FeatureSource, Scorer

RESULT_TYPE = data_type(SCORE_RESULT)


class ScoreBatch(ScalarFunction):  # type: ignore[misc]
    def __init__(
        self,
        stream_features: tuple[str, ...],
        registry: Path,
        model_name: str,
        source: Callable[[], FeatureSource],
    ) -> None:
        self.input_columns = ("patient_token", "event_time", "scorable", *stream_features)
        self.stream_features = stream_features
        self.args = (registry, model_name, source)
        self.scorer: Scorer | None = None

    def open(self, function_context: FunctionContext) -> None:
        registry, model_name, source = self.args
        self.scorer = Scorer(
            Registry(registry), model_name, source(), stream_features=self.stream_features
        )

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.features.close()

    def eval(self, *columns: Any) -> pd.DataFrame:
        """One batch (udfs.flink_types.batch_frame)."""
        assert self.scorer is not None
        batch = batch_frame(self.input_columns, columns)
        return self.scorer.score(batch)


def score_udf(
    stream_features: tuple[str, ...],
    registry: Path,
    model_name: str,
    source: Callable[[], FeatureSource],
) -> UserDefinedScalarFunctionWrapper:
    types = [DataTypes.STRING(), DataTypes.TIMESTAMP(3), DataTypes.BOOLEAN()]
    types += [DataTypes.DOUBLE()] * len(stream_features)
    return udf(
        ScoreBatch(stream_features, registry, model_name, source),
        input_types=types,
        result_type=RESULT_TYPE,
        func_type="pandas",
    )
