"""The capacity forecast with the LOS model's predicted discharges, backtested on real ICU stays.

    python -m training.catalog.capacity_los [--file setB_observations.parquet] [--days 365]
        [--stays N] [--step 6] [--out reports/capacity_forecast]

Does the `length-of-stay` champion's score of each patient make a 24-h occupancy forecast
better than the stays' own length-of-stay distribution alone? The stays are PhysioNet/CinC 2012
set B's (held out from the LOS model's training), each with its recorded `Length_of_stay` (stays
without one are left out): every stay is admitted at a seeded uniformly random time over `--days`
days (a Poisson process of arrivals) to the group of its ICUType (as the replay,
jobs/feeds/physionet2012.py, admits it to that unit) and stays `Length_of_stay` days plus a
uniform fraction of a day (the data give whole days). `Length_of_stay` runs from ICU admission
to the end of the hospital stay, so each group's census is the hospital occupancy of its
patients (what the model predicts, and what the sink applies it to: the facility's forecast),
not an ICU's. The data carry no calendar, so this is a timeline built
from real stays, not a real unit's census; what it tests is the per-patient signal. `--seeds`
gives several such timelines of the same stays (default three), pooled.

At each origin t0 (every `--step` hours after a 28-day warm-up, until a day before the end) each
unit is forecast twice from what is known at t0 (udfs/capacity_forecast.forecast_unit): from the
unit's own stays alone, and with each present patient's latest LOS score, the champion run
through onnxruntime on the stay's features (`feature_store.icu_stay`) at the last whole hour
of its stay, up to hour 48 (the data, and so the stream's scores, end at 48 h; after that the
48-h score stands, scored then). Both are scored against the census the stays give, with the
seasonal-naive baseline (occ(t0 + h - 24)) beside them. The 95 % interval of the 24-h MAE
difference comes from a bootstrap over whole weeks of origins (consecutive origins share most
of their patients, so single origins are not independent draws).

The last line is `MAE_beds_with_los x MAE_beds_without y` at 24 h.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store import icu_stay
from schemas.settings import Settings
from training.catalog import length_of_stay
from training.catalog import physionet2012 as p12
from udfs import capacity_forecast as cf

LOS_MODEL = length_of_stay.NAME
T0_H = 500_000.0  # where the timeline begins, in hours since the epoch (a whole hour)
WARMUP_H = 28 * 24
SCORED_HOURS = tuple(float(h) for h in range(1, 49))
WEEK_H = 168
I24 = cf.HORIZON_H - 1


@dataclass
class LosBacktest:
    description: str
    model_version: str
    stays: int
    units: int
    origins: int
    forecasts: int
    seconds: float
    mae_unit_only: list[float]  # per horizon h = 1..24, beds
    mae_with_los: list[float]
    mae_seasonal_naive: list[float]
    coverage80_unit_only: list[float]
    coverage80_with_los: list[float]
    difference_24h: float  # with minus without, beds (negative: the LOS model helps)
    difference_24h_ci95: list[float]


def timeline(s: p12.StaySet, days: float, seed: int = p12.SEED) -> pd.DataFrame:
    """`record_id, unit, start_h, end_h` of every stay with a recorded length of stay."""
    units = p12.groups(icu_stay.descriptors(s.observations))["icu_type"]
    los_days = s.outcomes["Length_of_stay"]
    ids = los_days.index[los_days >= 0].to_numpy()
    rng = np.random.default_rng(seed)
    start = T0_H + rng.uniform(0.0, days * 24.0, len(ids))
    length_h = (los_days.loc[ids].to_numpy(np.float64) + rng.uniform(0.0, 1.0, len(ids))) * 24.0
    return pd.DataFrame(
        {
            "record_id": ids,
            "unit": units.reindex(ids).fillna("unknown").to_numpy(),
            "start_h": start,
            "end_h": start + length_h,
        }
    )


def scores(s: p12.StaySet, version: Any) -> pd.DataFrame:
    """The champion's remaining days per stay (rows) at hours 1..48 of the stay (columns)."""
    frame = p12.features(s, SCORED_HOURS)
    days = p12.OnnxModel(version.onnx).run(p12.matrix(frame))
    table = pd.DataFrame(
        {"record_id": frame["record_id"], "h": frame["hours_since_admission"], "days": days}
    )
    return table.pivot(index="record_id", columns="h", values="days")


def predictions_at(
    t0: float, ids: Any, start_h: Any, by_hour: pd.DataFrame
) -> dict[str, cf.StayPrediction]:
    """Each present stay's latest score at `t0`: at its last whole hour, at most hour 48."""
    hour = np.minimum(np.floor(t0 - np.asarray(start_h, dtype=np.float64)), SCORED_HOURS[-1])
    out = {}
    for rid, since, h in zip(ids, start_h, hour, strict=True):
        if h >= SCORED_HOURS[0]:
            days = float(by_hour.at[rid, h])
            out[str(rid)] = cf.StayPrediction(days * 24.0, float(since) + float(h))
    return out


def week_block_ci(diff_by_origin: Any, week: Any, samples: int = 2000) -> list[float]:
    """95 % percentile interval of the mean difference, resampling whole weeks of origins."""
    d = np.asarray(diff_by_origin, dtype=np.float64)
    w = np.asarray(week)
    blocks = [d[w == k] for k in np.unique(w)]
    rng = np.random.default_rng(p12.SEED)
    means = []
    for _ in range(samples):
        pick = rng.integers(0, len(blocks), len(blocks))
        means.append(float(np.mean(np.concatenate([blocks[i] for i in pick]))))
    return [round(float(np.percentile(means, 2.5)), 4), round(float(np.percentile(means, 97.5)), 4)]


@dataclass
class _Errors:
    """Absolute errors and 80 % interval hits per forecast (rows) and horizon (columns)."""

    unit: list[Any] = field(default_factory=list)
    los: list[Any] = field(default_factory=list)
    naive: list[Any] = field(default_factory=list)
    cover_unit: list[Any] = field(default_factory=list)
    cover_los: list[Any] = field(default_factory=list)
    diff24: list[float] = field(default_factory=list)  # per origin, mean over the units
    week: list[int] = field(default_factory=list)  # the origin's bootstrap block


def _one_timeline(stays: pd.DataFrame, by_hour: pd.DataFrame, days: float, step_h: int,
                  e: _Errors, week0: int) -> int:  # fmt: skip
    """Adds one timeline's forecasts to `e`; returns its origins."""
    end = T0_H + days * 24.0
    grid = np.arange(T0_H + WARMUP_H, math.floor(end) - cf.HORIZON_H + 1, step_h, dtype=float)
    ahead, back = np.arange(1, cf.HORIZON_H + 1), np.arange(-24, 1)
    diff = np.zeros(len(grid))
    for _, g in stays.groupby("unit", sort=True):
        ids, start_h = g.record_id.to_numpy(), g.start_h.to_numpy()
        h = cf.UnitHistory(start_h, g.end_h.to_numpy(), T0_H, g.record_id.astype(str).to_numpy())
        for i, t0 in enumerate(grid):
            present = (start_h <= t0) & (h.end_h > t0)
            preds = predictions_at(t0, ids[present], start_h[present], by_hour)
            survival = cf.unit_survival(h, t0)
            alone = cf.forecast_unit(h, t0, survival=survival)
            with_los = cf.forecast_unit(h, t0, predictions=preds, survival=survival)
            actual = cf.occupancy(h.start_h, h.end_h, t0 + ahead)
            history = cf.occupancy(h.start_h, h.end_h, t0 + back)
            e.unit.append(np.abs(alone.median - actual))
            e.los.append(np.abs(with_los.median - actual))
            e.cover_unit.append((actual >= alone.lo80) & (actual <= alone.hi80))
            e.cover_los.append((actual >= with_los.lo80) & (actual <= with_los.hi80))
            e.naive.append(np.abs(cf.seasonal_naive(history, 24) - actual))
            diff[i] += e.los[-1][I24] - e.unit[-1][I24]
    e.diff24 += list(diff / stays.unit.nunique())
    e.week += [week0 + int(k) for k in (grid - grid[0]) // WEEK_H]
    return len(grid)


def backtest(
    s: p12.StaySet, version: Any, days: float, step_h: int, seeds: tuple[int, ...] = (p12.SEED,)
) -> LosBacktest:
    """One timeline per seed (the same stays, admitted at other random times), pooled."""
    started = time.monotonic()
    by_hour = scores(s, version)
    e, origins, stays = _Errors(), 0, pd.DataFrame()
    for seed in seeds:
        stays = timeline(s, days, seed)
        origins += _one_timeline(stays, by_hour, days, step_h, e, week0=max(e.week, default=-1) + 1)

    def mean(rows: list[Any]) -> list[float]:
        return [round(float(x), 4) for x in np.mean(rows, axis=0)]

    return LosBacktest(
        description=(
            f"{s.file.name}: {len(stays)} stays with a recorded length of stay, admitted at "
            f"random over {days:g} days to their ICU type's unit, {len(seeds)} timeline(s) "
            f"(seeds {', '.join(map(str, seeds))})"
        ),
        model_version=str(version.version),
        stays=len(stays),
        units=int(stays.unit.nunique()),
        origins=origins,
        forecasts=len(e.unit),
        seconds=round(time.monotonic() - started, 1),
        mae_unit_only=mean(e.unit),
        mae_with_los=mean(e.los),
        mae_seasonal_naive=mean(e.naive),
        coverage80_unit_only=mean(e.cover_unit),
        coverage80_with_los=mean(e.cover_los),
        difference_24h=round(float(np.mean(e.diff24)), 4),
        difference_24h_ci95=week_block_ci(e.diff24, e.week),
    )


def markdown(b: LosBacktest) -> str:
    out = [
        "# capacity-forecast with the LOS model's predicted discharges",
        "",
        "Generated by `python -m training.catalog.capacity_los` (see its module doc for the "
        f"method). {b.description}; `{LOS_MODEL}` version {b.model_version}; {b.units} units, "
        f"{b.origins} origins, {b.forecasts} unit forecasts each way ({b.seconds:g} s).",
        "",
        f"At 24 h the LOS model changes the unit MAE by {b.difference_24h:+.3f} beds "
        f"(95 % interval {b.difference_24h_ci95}, bootstrap over weeks of origins): "
        f"{b.mae_with_los[I24]:.3f} with it, {b.mae_unit_only[I24]:.3f} without, seasonal naive "
        f"{b.mae_seasonal_naive[I24]:.3f}.",
        "",
        "| h | unit's LOS only | with the LOS model | seasonal naive (24 h) "
        "| 80 % coverage, unit only | 80 % coverage, with the model |",
        "|---|---|---|---|---|---|",
    ]
    for i in range(cf.HORIZON_H):
        out.append(
            f"| {i + 1} | {b.mae_unit_only[i]:.3f} | {b.mae_with_los[i]:.3f} | "
            f"{b.mae_seasonal_naive[i]:.3f} | {b.coverage80_unit_only[i]:.3f} | "
            f"{b.coverage80_with_los[i]:.3f} |"
        )
    return "\n".join(out)


def subset(s: p12.StaySet, stays: int | None) -> p12.StaySet:
    """The first `stays` stays by record id (all when None)."""
    if stays is None:
        return s
    return p12.subset(s, np.sort(s.outcomes.index.to_numpy())[:stays])


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--file", type=Path, default=None, help="a 2012 set's observations parquet")
    ap.add_argument("--version", default=None, help="the LOS model's version (the champion)")
    ap.add_argument("--days", type=float, default=365.0)
    ap.add_argument("--stays", type=int, default=None, help="only the first N stays")
    ap.add_argument("--step", type=int, default=6, help="hours between forecast origins")
    ap.add_argument(
        "--seeds", default=f"{p12.SEED},1,2", help="of the admission times: one timeline each"
    )
    ap.add_argument("--out", type=Path, default=None, help="folder for los_model.{json,md}")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    s = subset(p12.read_or_exit(a.file or p12.set_file(settings, "B")), a.stays)
    seeds = tuple(int(x) for x in a.seeds.split(","))
    b = backtest(s, p12.champion(settings, LOS_MODEL, a.version), a.days, a.step, seeds)
    print(markdown(b))
    if a.out is not None:
        a.out.mkdir(parents=True, exist_ok=True)
        (a.out / "los_model.json").write_text(json.dumps(asdict(b), indent=1) + "\n")
        (a.out / "los_model.md").write_text(markdown(b) + "\n")
        print(f"wrote {a.out}/los_model.json and {a.out}/los_model.md")
    with_los, without = b.mae_with_los[I24], b.mae_unit_only[I24]
    print(f"MAE_beds_with_los {with_los:.3f} MAE_beds_without {without:.3f}")


if __name__ == "__main__":
    main()
