"""The catalog scoring job keeps exactly the values training keeps: for every parameter the
stay models read, values at, just inside and just outside its plausible range, as the topics
carry them (32-bit floats), are kept or dropped by the job's SQL (`jobs.model_scoring._value_sql`,
run in the JVM) as by training's cleaning (`feature_store.icu_stay.plausible`). A charted FiO2
of room air (0.21), which training never kept, the stream kept (0.2099999934 inside a widened
bound), which moved set B stays' mortality scores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from pyflink.table import EnvironmentSettings, TableEnvironment

from feature_store.icu_stay import PARAMETERS, plausible
from jobs.model_scoring import _value_sql, topic_field
from schemas import topics

FIELDS = {
    f.name: f for t in (topics.VITALS_OBSERVATION, topics.LABS_RESULT) for f in t.schema.fields
}
NUMERIC = [p for p in PARAMETERS if FIELDS[topic_field(p)].base in ("float", "int")]


def candidates(low: float, high: float, integer: bool) -> list[float]:
    if integer:
        return [low - 1, low, high, high + 1]
    lo, hi = np.float32(low), np.float32(high)
    below, above = np.nextafter(lo, np.float32(-np.inf)), np.nextafter(hi, np.float32(np.inf))
    return [float(x) for x in (below, lo, (lo + hi) / 2, hi, above)]


def test_the_job_keeps_the_values_training_keeps_at_every_bound(tmp_path: Path) -> None:
    rows: list[tuple[int, int, float]] = []
    for i, p in enumerate(NUMERIC):
        integer = FIELDS[topic_field(p)].base == "int"
        values = candidates(p.low, p.high, integer)
        if p.name == "fio2_fraction":
            values.append(float(np.float32(0.21)))  # room air, as the topic carries it
        rows += [(len(rows) + j, i, v) for j, v in enumerate(values)]
    frame = pd.DataFrame(rows, columns=["row_id", "param", "value"])
    lows = np.array([NUMERIC[i].low for i in frame["param"]], dtype=np.float64)
    highs = np.array([NUMERIC[i].high for i in frame["param"]], dtype=np.float64)
    want = plausible(frame["value"].to_numpy(dtype=np.float64), lows, highs)
    fio2 = frame["param"] == [p.name for p in NUMERIC].index("fio2_fraction")
    assert not want[(fio2 & (frame["value"] < 0.215)).to_numpy()].any()  # room air: dropped
    assert want.sum() >= 2 * len(NUMERIC)  # each bound kept (and a midpoint)

    path = tmp_path / "values.csv"
    frame.to_csv(path, header=False, index=False, float_format="%.9g")
    t_env = TableEnvironment.create(EnvironmentSettings.in_batch_mode())
    t_env.execute_sql(f"""CREATE TEMPORARY TABLE candidates (row_id BIGINT, param INT,
        `value` DOUBLE) WITH ('connector' = 'filesystem', 'path' = 'file://{path}',
        'format' = 'csv')""")
    typed = ", ".join(
        f"CASE WHEN param = {i} THEN CAST(`value` AS "
        f"{'INT' if FIELDS[topic_field(p)].base == 'int' else 'FLOAT'}) END "
        f"AS `{topic_field(p)}`"
        for i, p in enumerate(NUMERIC)
    )
    kept = " ".join(
        f"WHEN param = {i} THEN {_value_sql(p)} IS NOT NULL" for i, p in enumerate(NUMERIC)
    )
    query = t_env.sql_query(f"""SELECT row_id, CASE {kept} END AS kept
        FROM (SELECT row_id, param, {typed} FROM candidates)""")
    with query.execute().collect() as found:
        got = dict(sorted((int(r[0]), bool(r[1])) for r in found))
    assert [got[i] for i in range(len(frame))] == want.tolist()
