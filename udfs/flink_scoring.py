"""The vectorised (pandas) PyFlink UDF around udfs.scoring.Scorer: the registry's models and the
Feast store are opened once per worker in `open()`, never per record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from pyflink.table import DataTypes
from pyflink.table.udf import FunctionContext, ScalarFunction, UserDefinedScalarFunctionWrapper, udf

from feature_store.definitions import STREAM_FEATURES
from training.registry import Registry
from udfs.scoring import OUTPUT_COLUMNS, Scorer, feast_source

INPUT_COLUMNS = ("patient_token", "event_time", *STREAM_FEATURES)
RESULT_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("champion_version", DataTypes.STRING()),
        DataTypes.FIELD("champion_risk", DataTypes.DOUBLE()),
        DataTypes.FIELD("champion_threshold", DataTypes.DOUBLE()),
        DataTypes.FIELD("challenger_version", DataTypes.STRING()),
        DataTypes.FIELD("challenger_risk", DataTypes.DOUBLE()),
        DataTypes.FIELD("challenger_threshold", DataTypes.DOUBLE()),
        DataTypes.FIELD("features_missing", DataTypes.INT()),
        DataTypes.FIELD("latency_ms", DataTypes.DOUBLE()),
    ]
)
assert tuple(f.name for f in RESULT_TYPE.fields) == OUTPUT_COLUMNS


class ScoreBatch(ScalarFunction):  # type: ignore[misc]
    def __init__(
        self, registry: Path, model_name: str, feast_dir: Path, online: str, cache_ttl_s: float
    ) -> None:
        self.args = (registry, model_name, feast_dir, online, cache_ttl_s)
        self.scorer: Scorer | None = None

    def open(self, function_context: FunctionContext) -> None:
        registry, model_name, feast_dir, online, ttl = self.args
        self.scorer = Scorer(Registry(registry), model_name, feast_source(feast_dir, online, ttl))

    def close(self) -> None:
        if self.scorer is not None:
            self.scorer.features.flush()

    def eval(self, *columns: pd.Series[Any]) -> pd.DataFrame:
        assert self.scorer is not None
        batch = pd.concat(
            [c.rename(n) for n, c in zip(INPUT_COLUMNS, columns, strict=True)], axis=1
        )
        return self.scorer.score(batch)


def score_udf(
    registry: Path, model_name: str, feast_dir: Path, online: str, cache_ttl_s: float
) -> UserDefinedScalarFunctionWrapper:
    types = [DataTypes.STRING(), DataTypes.TIMESTAMP(3)] + [DataTypes.DOUBLE()] * len(
        STREAM_FEATURES
    )
    return udf(
        ScoreBatch(registry, model_name, feast_dir, online, cache_ttl_s),
        input_types=types,
        result_type=RESULT_TYPE,
        func_type="pandas",
    )


def _unused(*_: Any) -> None:  # keep the Any import honest for mypy's strict mode
    return None
