"""The job's NEWS2 function and the independent vectorised reference agree on real rows."""

from __future__ import annotations

import pandas as pd

from jobs.feeds import replay
from schemas.settings import Settings
from tests import reference
from udfs.vitals import news2_summary


def test_pure_news2_equals_the_vectorised_reference_on_real_icu_rows() -> None:
    settings = Settings.from_env()
    df, source = replay.load_physionet(None, settings)
    plan = replay.ReplayPlan(patients=400, seed=7)
    obs = pd.DataFrame(replay.observations(replay.select_patients(df, plan), plan, b"k", source))
    ref = reference.news2_frame(obs)
    cols = [
        "resp_rate_per_min",
        "spo2_pct",
        "on_supplemental_o2",
        "fio2_fraction",
        "sbp_mmhg",
        "heart_rate_bpm",
        "acvpu",
        "temp_c",
        "spo2_scale2",
    ]
    mine = [
        news2_summary(*(None if pd.isna(v) else v for v in row))
        for row in obs[cols].itertuples(index=False)
    ]
    got = pd.DataFrame(mine, columns=list(ref.columns), index=obs.index)
    assert (got["news2_score"] >= 5).sum() > 100
    pd.testing.assert_frame_equal(got.astype("int64"), ref.astype("int64"))
