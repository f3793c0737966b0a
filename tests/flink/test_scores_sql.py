"""The scores in Flink SQL, generated from the Python tables (NEWS2 chart, SIRS and qSOFA criteria,
SOFA cut-offs), equal the Python scores on every row of PhysioNet 2019 set A (the bundled sample
without the data set), each row a state with the job's FLOAT values. The parameters set A does
not chart (consciousness, oxygen flag, SpO2 scale 2) are drawn per row so that every branch is
taken on real values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from pyflink.table import DataTypes, EnvironmentSettings, TableEnvironment

from jobs.feeds import replay
from schemas import topics
from schemas.physionet import measurements
from schemas.settings import Settings
from udfs.sepsis import SCORE_COLUMNS, STATE_PARAMS, screen_row, screen_sql

pytestmark = pytest.mark.slow

SCREEN = topics.SEPSIS_SCREEN.schema


@pytest.fixture(scope="module")
def states(settings: Settings) -> pd.DataFrame:
    path = settings.physionet_setA if settings.physionet_setA.exists() else replay.SAMPLE
    values = measurements(pd.read_parquet(path))
    rng = np.random.default_rng(2019)
    n = len(values)
    out = pd.DataFrame(index=values.index)
    for p in STATE_PARAMS:
        if SCREEN.field(p).base == "float":
            out[p] = values[p].astype("float32") if p in values else np.float32("nan")
    out["acvpu"] = rng.choice(np.array([None, "A", "C", "V", "P", "U"], dtype=object), n)
    for p in ("on_supplemental_o2", "spo2_scale2"):
        out[p] = rng.choice(np.array([None, True, False], dtype=object), n)
    return out[list(STATE_PARAMS)].reset_index(drop=True)


def _python(states: pd.DataFrame) -> pd.DataFrame:
    rows = [
        screen_row(*(None if isinstance(v, float) and np.isnan(v) else v for v in r))
        for r in states.astype(object).itertuples(index=False)
    ]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS)).astype("int64")


def _flink(states: pd.DataFrame) -> pd.DataFrame:
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    types = {"string": DataTypes.STRING(), "boolean": DataTypes.BOOLEAN()}
    schema = [
        DataTypes.FIELD(p, types.get(SCREEN.field(p).base, DataTypes.FLOAT())) for p in STATE_PARAMS
    ]
    rows = states.assign(row_id=np.arange(len(states), dtype="int64"))
    table = t_env.from_pandas(
        rows, DataTypes.ROW([*schema, DataTypes.FIELD("row_id", DataTypes.BIGINT())])
    )
    t_env.create_temporary_view("states", table)
    exprs = ", ".join(f"{sql} AS {name}" for name, sql in screen_sql().items())
    got = t_env.sql_query(f"SELECT row_id, {exprs} FROM states").to_pandas()
    return got.sort_values("row_id").reset_index(drop=True)[list(SCORE_COLUMNS)].astype("int64")


def test_the_generated_sql_scores_every_row_of_set_a_as_the_python_functions_do(
    states: pd.DataFrame,
) -> None:
    assert len(states) > 1000
    py, sql = _python(states), _flink(states)
    assert (py["news2_score"] > 0).any() and (py["sofa_partial_score"] > 0).any()
    mismatched = (py != sql).any(axis=1)
    assert not mismatched.any(), pd.concat([states[mismatched], py[mismatched]], axis=1).head()
