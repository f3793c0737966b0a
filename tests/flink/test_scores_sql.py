"""The scores in Flink SQL, generated from the Python tables (NEWS2 chart, SIRS and qSOFA criteria,
SOFA cut-offs), equal the Python scores on every row of PhysioNet 2019 set A (the bundled sample
without the data set), each row a state with the job's FLOAT values. The comparison runs in the
JVM (790k rows collected back to Python took a minute). The parameters set A does not chart
(consciousness and GCS, oxygen flag, SpO2 scale 2) are drawn per row so that every branch is
taken on real values."""

from __future__ import annotations

import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyflink.table import EnvironmentSettings, TableEnvironment

from feature_store.definitions import SCORE_FEATURES, score_feature_sql
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
    out["gcs_total"] = rng.choice(np.array([None, *range(3, 16)], dtype=object), n)
    return out[list(STATE_PARAMS)].reset_index(drop=True)


def _python_part(states: pd.DataFrame) -> list[tuple[int, ...]]:
    return [
        screen_row(*(None if isinstance(v, float) and np.isnan(v) else v for v in r))
        for r in states.astype(object).itertuples(index=False)
    ]


def _python(states: pd.DataFrame, workers: int = 2) -> pd.DataFrame:
    """The Python scores of every row, in `workers` fresh processes (spawned: this one runs a
    JVM gateway) over consecutive parts."""
    parts = np.array_split(np.arange(len(states)), workers)
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        done = pool.map(_python_part, [states.iloc[i] for i in parts])
        rows = [r for part in done for r in part]
    return pd.DataFrame(rows, columns=list(SCORE_COLUMNS)).astype("int64")


def _mismatches(
    states: pd.DataFrame, want: pd.DataFrame, folder: Path, sql: Mapping[str, str] | None = None
) -> list[int]:
    """The row ids where the generated SQL's scores (`sql`, name → expression; default every
    score of `screen_sql`) differ from `want`, computed in the JVM:
    states and expected scores go in as one CSV file (float32 values written with 9 significant
    digits read back exactly), only the differing rows' ids come back."""
    path = folder / "states.csv"
    rows = states.assign(row_id=np.arange(len(states), dtype="int64"))
    for c in SCORE_COLUMNS:
        rows[f"want_{c}"] = want[c].to_numpy()
    rows.to_csv(path, header=False, index=False, float_format="%.9g", na_rep="")
    types = {"string": "STRING", "boolean": "BOOLEAN", "int": "INT"}
    cols = ", ".join(f"`{p}` {types.get(SCREEN.field(p).base, 'FLOAT')}" for p in STATE_PARAMS)
    wants = ", ".join(f"want_{c} BIGINT" for c in SCORE_COLUMNS)
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE states ({cols}, row_id BIGINT, {wants}) WITH (
        'connector' = 'filesystem', 'path' = 'file://{path}', 'format' = 'csv',
        'csv.null-literal' = '')""")
    differs = " OR ".join(
        f"CAST(({expression}) AS BIGINT) IS DISTINCT FROM want_{name}"
        for name, expression in (sql or screen_sql()).items()
    )
    query = t_env.sql_query(f"SELECT row_id FROM states WHERE {differs}")
    with query.execute().collect() as found:
        return sorted(int(r[0]) for r in found)


def test_the_generated_sql_scores_every_row_of_set_a_as_the_python_functions_do(
    states: pd.DataFrame, tmp_path: Path
) -> None:
    assert len(states) > 1000
    py = _python(states)
    assert (py["news2_score"] > 0).any() and (py["sofa_partial_score"] > 0).any()
    # A control: the last row expected with a NEWS2 one point off must be the one difference.
    want = py.copy()
    want.loc[len(want) - 1, "news2_score"] += 1
    mismatched = _mismatches(states, want, tmp_path)
    assert mismatched == [len(states) - 1], pd.concat(
        [states.iloc[mismatched[:5]], py.iloc[mismatched[:5]]], axis=1
    )


def test_the_models_score_features_are_the_scores_without_what_training_never_saw(
    states: pd.DataFrame, tmp_path: Path
) -> None:
    """On states with a GCS, ACVPU, the oxygen flag and SpO2 scale 2 drawn in, the model's score
    features (SQL) are the Python scores of the same states without them: what the model
    computed in training on set A, which charts none of them."""
    part = states.iloc[:50_000].reset_index(drop=True)
    assert part["gcs_total"].notna().sum() > 1000
    unseen = ("gcs_total", "acvpu", "on_supplemental_o2", "spo2_scale2")
    want = _python(part.assign(**dict.fromkeys(unseen)))
    screened = _python(part)
    for name in ("qsofa_score", "news2_score"):  # the screen's count them
        assert (want[name] != screened[name]).sum() > 1000, name
    own = screen_sql()  # a score that reads none of them is the state's own column
    sql = {f: own[f] if score_feature_sql(f) == f else score_feature_sql(f) for f in SCORE_FEATURES}
    assert _mismatches(part, want, tmp_path, sql) == []
