"""Independent offline reference for the sepsis spine, in pandas over the same observations.

It shares only the contract with the job (the schema's plausibility bounds and the rule's
parameters); NEWS2 banding and the pattern matching are written again here, vectorised.
"""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import numpy as np
import pandas as pd

from jobs.sepsis_news2 import RULE_ID, RULE_VERSION, SUSTAINED_READINGS, SUSTAINED_WITHIN_H
from schemas import codec, topics

OBS = topics.VITALS_OBSERVATION.schema


def _bands(x: pd.Series, edges: list[float], points: list[int]) -> pd.Series:
    """points[i] for x <= edges[i] (first match), points[-1] above the last edge; NaN stays NaN."""
    conds = [x <= e for e in edges]
    out = np.select(conds, points[:-1], default=points[-1]).astype(float)
    return pd.Series(np.where(x.isna(), np.nan, out), index=x.index)


def news2_frame(obs: pd.DataFrame) -> pd.DataFrame:
    """NEWS2 (RCP 2017 chart 1) per row; absent parameters score 0 and are not counted."""
    f = obs.astype(
        {
            c: "float64"
            for c in (
                "resp_rate_per_min",
                "spo2_pct",
                "sbp_mmhg",
                "heart_rate_bpm",
                "temp_c",
                "fio2_fraction",
            )
        }
    )
    # half-up on the value as charted: a 32-bit 38.0499992 is the 38.05 charted
    whole = lambda c: np.floor(f[c] + 0.5 + 1e-4)  # noqa: E731
    rr = _bands(whole("resp_rate_per_min"), [8, 11, 20, 24], [3, 1, 0, 2, 3])
    sp1 = _bands(whole("spo2_pct"), [91, 93, 95], [3, 2, 1, 0])
    oxygen = f["on_supplemental_o2"].astype("boolean")
    oxygen = oxygen.fillna(f["fio2_fraction"].gt(0.21).where(f["fio2_fraction"].notna()))
    s = whole("spo2_pct")
    on_o2 = oxygen.fillna(False).astype(bool)
    sp2 = (
        pd.Series(
            np.select(
                [s <= 83, s <= 85, s <= 87, (s <= 92) | ~on_o2, s <= 94, s <= 96],
                [3, 2, 1, 0, 1, 2],
                3,
            ),
            index=f.index,
        )
        .astype(float)
        .where(s.notna())
        .where(~((s > 92) & oxygen.isna()))  # above the target, oxygen unknown: not scored
    )
    scale2 = f["spo2_scale2"].fillna(False).astype(bool)
    sp = sp2.where(scale2, sp1)
    ox = oxygen.map({True: 2.0, False: 0.0}).astype("float64")
    bp = _bands(whole("sbp_mmhg"), [90, 100, 110, 219], [3, 2, 1, 0, 3])
    hr = _bands(whole("heart_rate_bpm"), [40, 50, 90, 110, 130], [3, 1, 0, 1, 2, 3])
    cns = f["acvpu"].map(lambda a: np.nan if a is None or a != a else (0.0 if a == "A" else 3.0))
    tenths = np.floor(f["temp_c"] * 10 + 0.5 + 1e-4)
    tp = _bands(tenths, [350, 360, 380, 390], [3, 1, 0, 1, 2])
    parts = pd.concat([rr, sp, ox, bp, hr, cns.astype(float), tp], axis=1)
    return pd.DataFrame(
        {
            "news2_score": parts.fillna(0).sum(axis=1).astype(int),
            "news2_params_scored": parts.notna().sum(axis=1).astype(int),
            "news2_red_flag": (parts == 3).any(axis=1),
        },
        index=obs.index,
    )


def _checks(obs: pd.DataFrame) -> tuple[pd.Series, dict[str, pd.Series]]:
    """(which rows the decoder accepts, {field: which rows have its value refused alone}), as
    schemas.codec.check decides (a missing value, None or NaN alike here, is absent: the
    replayed records carry no NaN)."""
    alone = {f.name for f in OBS.refused_alone}
    ok = pd.Series(True, index=obs.index)
    kept = pd.Series(False, index=obs.index)
    refused: dict[str, pd.Series] = {}
    for fld in OBS.fields:
        if fld.name not in obs:  # a field no record sets (one added since the records' writer)
            continue
        col = obs[fld.name]
        if fld.value_range is not None:
            bad = pd.Series(fld.out_of_range(col.astype("float64")), index=obs.index)
            if fld.name in alone:
                refused[fld.name] = bad
                kept |= col.notna() & ~bad
            else:
                ok &= ~bad
        elif fld.name in OBS.measurement_names:  # a measurement without a range: present
            kept |= col.notna()
        if fld.allowed is not None:
            ok &= col.isna() | col.isin(fld.allowed)
    anything = pd.Series(False, index=obs.index)
    for bad in refused.values():
        anything |= bad
    return ok & (kept | ~anything), refused


def accepted(obs: pd.DataFrame) -> pd.Series:
    """Which rows the decoder accepts (some maybe with values refused: `refused_values`)."""
    return _checks(obs)[0]


def refused_values(obs: pd.DataFrame) -> pd.Series:
    """How many values each accepted row had refused alone (one `value_*` dead letter each)."""
    ok, refused = _checks(obs)
    count = pd.Series(0, index=obs.index)
    for bad in refused.values():
        count += bad.astype(int)
    return count.where(ok, 0)


def as_accepted(obs: pd.DataFrame) -> pd.DataFrame:
    """The accepted rows, their refused values null."""
    ok, refused = _checks(obs)
    obs = obs.copy()
    for name, bad in refused.items():
        obs[name] = obs[name].astype("float64").mask(bad)
    return obs[ok]


def _iso_ms(t: pd.Timestamp) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}"


def alert_id(patient_token: str, first_event_time: pd.Timestamp) -> str:
    key = f"{RULE_ID}|{patient_token}|{_iso_ms(first_event_time)}"
    return hashlib.md5(key.encode()).hexdigest()


def alerts(scored: pd.DataFrame) -> list[dict[str, Any]]:
    """Non-overlapping runs of SUSTAINED_READINGS consecutive readings with NEWS2 >= 5, the run
    spanning less than SUSTAINED_WITHIN_H hours (the pattern's WITHIN bound)."""
    assert SUSTAINED_READINGS == 2
    within = timedelta(hours=SUSTAINED_WITHIN_H)
    out = []
    for tok, g in scored.sort_values("event_time").groupby("patient_token", sort=False):
        rows = g.to_dict("records")
        i = 0
        while i + 1 < len(rows):
            a, b = rows[i], rows[i + 1]
            if (
                a["news2_score"] >= 5
                and b["news2_score"] >= 5
                and b["event_time"] - a["event_time"] < within
            ):
                mx = max(a["news2_score"], b["news2_score"])
                out.append(
                    {
                        "alert_id": alert_id(str(tok), a["event_time"]),
                        "rule_id": RULE_ID,
                        "rule_version": RULE_VERSION,
                        "severity": "high" if mx >= 7 else "medium",
                        "patient_token": tok,
                        "facility_id": b["facility_id"],
                        "unit_id": b["unit_id"],
                        "first_event_time": a["event_time"],
                        "last_event_time": b["event_time"],
                        "reading_count": 2,
                        "score_first": a["news2_score"],
                        "score_last": b["news2_score"],
                        "score_max": mx,
                        "first_observation_id": a["observation_id"],
                        "last_observation_id": b["observation_id"],
                    }
                )
                i += 2
            else:
                i += 1
    return out


def run(observations: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """(scored accepted observations, alerts) for well-formed observation records."""
    obs = pd.DataFrame(observations)
    obs["event_time"] = pd.to_datetime(obs["event_time"], utc=True)
    obs = as_accepted(obs)
    obs = obs.join(news2_frame(obs))
    return obs, alerts(obs)


def bad_observations(sample: dict[str, Any]) -> list[tuple[str, str, bytes | None, int]]:
    """(label, expected reason_code, value, record timestamp ms)."""
    good = codec.encode(topics.VITALS_OBSERVATION.schema, sample)
    ts = codec.epoch_ms(sample["event_time"])

    def variant(**changes: Any) -> bytes:
        return codec.encode(
            topics.VITALS_OBSERVATION.schema, {**sample, **changes, "observation_id": "bad"}
        )

    nothing = {f.name: None for f in OBS.measurements}
    return [
        ("garbage", "undecodable", b"\x00\xffnot avro at all\x13", ts),
        ("truncated", "undecodable", good[: len(good) // 2], ts),
        ("trailing", "undecodable", good + b"\x00\x01", ts),
        ("empty", "undecodable", None, ts),
        # the record's only measurement impossible: rejected whole (beside a measurement in
        # range it would be refused alone and the record screened: schemas.codec)
        ("hr_900", "out_of_range", variant(**(nothing | {"heart_rate_bpm": 900.0})), ts),
        ("spo2_nan", "not_a_number", variant(**(nothing | {"spo2_pct": float("nan")})), ts),
        ("acvpu_z", "bad_enum", variant(acvpu="Z"), ts),
        ("clock_skew", "timestamp_mismatch", variant(), ts + 3_600_000),
    ]


def norm_alerts(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    for c in ("first_event_time", "last_event_time"):
        df[c] = pd.to_datetime(df[c], utc=True)
    cols = sorted(c for c in df.columns if not c.startswith("kafka_") and c != "loaded_at")
    return df[cols].sort_values("alert_id").reset_index(drop=True)
