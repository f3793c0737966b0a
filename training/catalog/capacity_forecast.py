"""capacity-forecast: occupancy per unit and facility for the next 24 h (udfs/capacity_forecast.py),
backtested against seasonal-naive and persistence baselines.

    python -m training.catalog.capacity_forecast evaluate [--source generator|mimic|all]
        [--file adt.parquet] [--facilities 12] [--days 30] [--step 6]
    python -m training.catalog.capacity_forecast backtest --out reports/capacity_forecast

Rolling-origin backtest (Hyndman & Athanasopoulos, FPP3 section 5.10, "time series cross
validation"): from every origin t0 on a grid (every `--step` hours, after a 14-day warm-up so the
weekly baseline and the arrival profile have history) each unit's forecast for t0+1..t0+24 is made
from what was known at t0 only (`UnitHistory.known_at`: stays started by t0, an end after t0
unknown) and scored against the census the stays give at those hours. Baselines: seasonal naive
(occ(t0+h-24)), weekly seasonal naive (occ(t0+h-168)) and persistence (occ(t0)). Metrics: MAE in
beds per horizon (units; facilities, forecast from their hospital stays) and the share of
actual values inside the 80 % and 95 % intervals.

Sources: the ADT generator (jobs/feeds/adt_generator.py: 12 sites × 500 beds, deterministic for a
seed, one site in surge for a week), the MIMIC-IV demo's transfers (jobs/feeds/mimic_adt.py: 100
patients, each on their own shifted dates, so a unit rarely holds more than one or two at once),
or any parquet of adt.event.v1 records (`--file`, each facility on the clock the settings'
capacity file names, as the hourly forecast counts its arrivals; UTC for the other two, whose
times are their sites' clocks). Stays are what the census makes of the events (its Python
reference, then `udfs.census_stays` as for the hourly forecast: a merge is one stay, a stay the
census voided is none). `evaluate` ends with the line
`MAE_beds <x> seasonal_naive_MAE_beds <y>`: unit-level MAE at 24 h on the generator's sites (on
the file, with `--file`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.feeds import adt_generator, mimic_adt
from schemas import topics
from schemas.capacity import Capacity
from schemas.settings import Settings
from training.catalog import LayoutError
from udfs import capacity_forecast as cf
from udfs import census_stays

NAME = "capacity-forecast"
HORIZON = cf.HORIZON_H
WARMUP_H = 14 * 24
REPORT_HORIZONS = (1, 6, 12, 24)
MIMIC_KEY = b"capacity-forecast-backtest"  # tokens only need to be consistent within the run
ADT_COLUMNS = tuple(topics.ADT_EVENT.schema.field_names)
NEEDED = ("event_id", "event_type", "patient_token", "facility_id", "unit_id", "event_time")


@dataclass
class Scores:
    """Absolute errors summed per horizon (index h - 1), and interval hits."""

    n: int = 0
    model: Any = field(default_factory=lambda: np.zeros(HORIZON))
    seasonal_naive: Any = field(default_factory=lambda: np.zeros(HORIZON))
    weekly: Any = field(default_factory=lambda: np.zeros(HORIZON))
    persistence: Any = field(default_factory=lambda: np.zeros(HORIZON))
    in80: Any = field(default_factory=lambda: np.zeros(HORIZON))
    in95: Any = field(default_factory=lambda: np.zeros(HORIZON))

    def add(self, f: cf.Forecast, history: Any, actual: Any) -> None:
        self.n += 1
        self.model += np.abs(f.median - actual)
        self.seasonal_naive += np.abs(cf.seasonal_naive(history, 24) - actual)
        self.weekly += np.abs(cf.seasonal_naive(history, 168) - actual)
        self.persistence += np.abs(history[-1] - actual)
        self.in80 += (actual >= f.lo80) & (actual <= f.hi80)
        self.in95 += (actual >= f.lo95) & (actual <= f.hi95)

    def summary(self) -> dict[str, Any]:
        n = max(self.n, 1)
        out: dict[str, Any] = {"forecasts": self.n}
        for k in ("model", "seasonal_naive", "weekly", "persistence"):
            out[f"mae_{k}"] = [round(float(x), 4) for x in getattr(self, k) / n]
        out["coverage80"] = [round(float(x), 4) for x in self.in80 / n]
        out["coverage95"] = [round(float(x), 4) for x in self.in95 / n]
        return out


@dataclass
class Backtest:
    source: str
    description: str
    units: int
    origins: int
    seconds: float
    unit: dict[str, Any]
    facility: dict[str, Any]
    occupied_unit: dict[str, Any]  # unit forecasts from origins where the unit held a patient


def histories(stays: pd.DataFrame, data_start_h: float) -> dict[tuple[str, str], cf.UnitHistory]:
    return {
        (str(f), str(u)): cf.UnitHistory(g.start_h.to_numpy(), g.end_h.to_numpy(), data_start_h)
        for (f, u), g in stays.groupby(["facility_id", "unit_id"], sort=True)
    }


def backtest(
    source: str,
    description: str,
    stays: pd.DataFrame,
    data_start_h: float,
    data_end_h: float,
    step_h: int,
    active_only: bool = False,
    time_zones: Mapping[str, str] | None = None,
) -> Backtest:
    """Rolling-origin backtest over every unit of `stays` (see the module doc). `active_only`:
    only origins at which the facility holds at least one patient (sparse data such as MIMIC).
    `time_zones`: each facility's (IANA; UTC where none), whose clock its arrivals follow, as
    in the hourly forecast (sinks/capacity_forecast.py)."""
    zones = time_zones or {}
    t_start = time.monotonic()
    hs = histories(stays, data_start_h)
    first = math.ceil(data_start_h + WARMUP_H)
    grid = np.arange(first, math.floor(data_end_h) - HORIZON + 1, step_h, dtype=np.float64)
    unit_scores, fac_scores, busy_scores = Scores(), Scores(), Scores()
    origins = 0
    by_facility: dict[str, list[cf.UnitHistory]] = {}
    for (fac, _), h in hs.items():
        by_facility.setdefault(fac, []).append(h)
    whole = histories(cf.facility_stays(stays), data_start_h)
    pooled_units = {
        fac: cf.UnitHistory(
            np.concatenate([h.start_h for h in units]),
            np.concatenate([h.end_h for h in units]),
            data_start_h,
        )
        for fac, units in by_facility.items()
    }
    back_h, ahead_h = np.arange(-168, 1), np.arange(1, HORIZON + 1)
    for (fac, _), hospital in whole.items():
        occ_at = cf.occupancy(hospital.start_h, hospital.end_h, grid)
        for t0 in grid[occ_at > 0] if active_only else grid:
            origins += 1
            pooled = pooled_units[fac]
            prior = cf.unit_survival(pooled, t0)  # for units with too few stays of their own
            zone = zones.get(fac, "UTC")
            for h in [*by_facility[fac], hospital]:
                f = cf.forecast_unit(h, t0, prior if h is not hospital else None, time_zone=zone)
                history = cf.occupancy(h.start_h, h.end_h, t0 + back_h)
                actual = cf.occupancy(h.start_h, h.end_h, t0 + ahead_h)
                if h is hospital:
                    fac_scores.add(f, history, actual)
                    continue
                unit_scores.add(f, history, actual)
                if history[-1] > 0:
                    busy_scores.add(f, history, actual)
    return Backtest(
        source,
        description,
        len(hs),
        origins,
        round(time.monotonic() - t_start, 1),
        unit_scores.summary(),
        fac_scores.summary(),
        busy_scores.summary(),
    )


def _hours(t: Any) -> float:
    return float(pd.Timestamp(t).timestamp()) / 3600.0


def generator_backtest(facilities: int = 12, days: float = 30.0, step_h: int = 6) -> Backtest:
    plan = adt_generator.Plan(facilities=facilities, days=days)
    stays = census_stays.stays_from_events(adt_generator.events(plan))
    start = _hours(plan.start)
    return backtest(
        "generator",
        f"ADT generator: {facilities} sites × 500 beds, {days:g} days, seed {plan.seed}",
        stays,
        start,
        start + days * 24,
        step_h,
    )


def mimic_backtest(settings: Settings, step_h: int = 12) -> Backtest:
    table = mimic_adt.load_transfers(settings.data_dir)
    events = mimic_adt.events(table, MIMIC_KEY)
    stays = census_stays.stays_from_events(events)
    times = [e["event_time"] for e in events]
    return backtest(
        "mimic",
        f"MIMIC-IV demo transfers: {table.subject_id.nunique()} patients, {len(stays)} unit "
        "stays on per-patient shifted dates (origins only where the hospital holds a patient)",
        stays,
        _hours(min(times)),
        _hours(max(times)),
        step_h,
        active_only=True,
    )


def read_adt(path: Path) -> list[dict[str, Any]]:
    """adt.event.v1 records from a parquet file; LayoutError if it is not in that layout."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # not parquet at all
        raise LayoutError(f"{path}: not a parquet file of adt.event.v1 records ({exc})") from exc
    missing = [c for c in NEEDED if c not in df.columns]
    if missing:
        raise LayoutError(
            f"{path}: not adt.event.v1 records (columns {', '.join(ADT_COLUMNS)}); "
            f"missing {', '.join(missing)}"
        )
    df = df.assign(event_time=pd.to_datetime(df.event_time, utc=True))
    for column in ("bed_id", "recorded_time"):
        if column not in df:
            df[column] = None
    df["recorded_time"] = pd.to_datetime(df.recorded_time, utc=True)
    # in the census's order: by record time (codec.record_time), then as read
    df = df.assign(_at=df.recorded_time.where(df.recorded_time > df.event_time, df.event_time))
    df = df.sort_values(["_at", "event_id"], kind="stable").drop(columns="_at")
    clean = df.astype(object).where(df.notna(), None)
    return [{str(k): v for k, v in r.items()} for r in clean.to_dict("records")]


def file_backtest(
    path: Path, step_h: int = 6, time_zones: Mapping[str, str] | None = None
) -> Backtest:
    """The backtest of a file of ADT events, each facility on the clock `time_zones` names (the
    capacity file's)."""
    events = read_adt(path)
    stays = census_stays.stays_from_events(events)
    times = [e["event_time"] for e in events]
    return backtest(
        "file",
        f"{path.name}: {len(events)} ADT events",
        stays,
        _hours(min(times)),
        _hours(max(times)),
        step_h,
        time_zones=time_zones,
    )


def lines(b: Backtest) -> list[str]:
    out = [
        f"{b.source}: {b.description}; {b.units} units, {b.origins} origins, "
        f"{b.unit['forecasts']} unit forecasts ({b.seconds:g} s)"
    ]
    for level, s in (("unit", b.unit), ("occupied", b.occupied_unit), ("facility", b.facility)):
        for h in REPORT_HORIZONS:
            i = h - 1
            out.append(
                f"  {level:8s} h={h:2d}  MAE model {s['mae_model'][i]:.3f}  "
                f"seasonal_naive {s['mae_seasonal_naive'][i]:.3f}  "
                f"weekly {s['mae_weekly'][i]:.3f}  persistence {s['mae_persistence'][i]:.3f}  "
                f"coverage80 {s['coverage80'][i]:.3f}  coverage95 {s['coverage95'][i]:.3f}"
            )
    return out


def markdown(results: list[Backtest]) -> str:
    out = [
        "# capacity-forecast backtest",
        "",
        "Generated by `python -m training.catalog.capacity_forecast backtest`. Rolling origins, "
        "each forecast made from data up to its origin only; MAE in beds (point forecast: the "
        "predictive median); coverage: share of actual values inside the interval.",
        "",
        "Reading these numbers:",
        "",
        "- At h = 24 the seasonal-naive forecast (lag 24) is the census now, the same as "
        "persistence; the issue's target is the model's unit-level MAE below it at 24 h.",
        "- The generator's arrivals are Poisson with a diurnal profile and its stays lognormal, "
        "so a unit's census a day ahead is mostly noise no forecast can know (patients arriving "
        "and leaving at random): the model's gain over the baselines is large at short horizons "
        "and small at 24 h. Facilities are forecast from hospital stays (a transfer is neither "
        "a discharge nor an arrival); summing the unit forecasts was worse than persistence at "
        "24 h, as it ignores patients' pathways between units.",
        "- MIMIC-IV demo: 100 patients, each on their own shifted dates, so the 'hospital' "
        "rarely holds more than a few patients and a unit one or two. Origins are only where "
        "it holds someone; most unit forecasts are of empty units (hence the tiny unit MAE), "
        "so the rows for units holding a patient at the origin are the informative ones. This "
        "checks the pipeline on real ADT traffic; it says little about accuracy at scale.",
        "",
    ]
    for b in results:
        out += [f"## {b.source}", "", f"{b.description}. {b.units} units, {b.origins} origins, "
                f"{b.unit['forecasts']} unit forecasts.", ""]  # fmt: skip
        for level, s in (
            ("Units", b.unit),
            ("Units holding a patient at the origin", b.occupied_unit),
            ("Facilities (from hospital stays)", b.facility),
        ):
            out += [
                f"### {level}",
                "",
                "| h | model | seasonal naive (24 h) | weekly (168 h) | persistence "
                "| 80 % coverage | 95 % coverage |",
                "|---|---|---|---|---|---|---|",
            ]
            for h in range(1, HORIZON + 1):
                i = h - 1
                out.append(
                    f"| {h} | {s['mae_model'][i]:.3f} | {s['mae_seasonal_naive'][i]:.3f} | "
                    f"{s['mae_weekly'][i]:.3f} | {s['mae_persistence'][i]:.3f} | "
                    f"{s['coverage80'][i]:.3f} | {s['coverage95'][i]:.3f} |"
                )
            out.append("")
    return "\n".join(out)


def run(a: argparse.Namespace) -> list[Backtest]:
    if a.file is not None:
        zones = Capacity.load(Settings.resolve(a).capacity_file).time_zones
        return [file_backtest(a.file, a.step, zones)]
    results = []
    if a.source in ("mimic", "all"):
        settings = Settings.resolve(a)
        if (settings.mimic_iv_demo_dir / "transfers.parquet").exists():
            results.append(mimic_backtest(settings, a.mimic_step))
        else:
            print(f"mimic: skipped, {settings.mimic_iv_demo_dir}/transfers.parquet is missing")
    if a.source in ("generator", "all"):
        results.append(generator_backtest(a.facilities, a.days, a.step))
    return results


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("command", choices=["evaluate", "backtest"])
    ap.add_argument("--model", default=None, help="ignored (the dispatcher passes it)")
    ap.add_argument("--file", type=Path, default=None, help="a parquet of adt.event.v1 records")
    ap.add_argument("--source", choices=["generator", "mimic", "all"], default="all")
    ap.add_argument("--facilities", type=int, default=12)
    ap.add_argument("--days", type=float, default=30.0)
    ap.add_argument("--step", type=int, default=6, help="hours between forecast origins")
    ap.add_argument("--mimic-step", type=int, default=12, help="the same, for MIMIC")
    ap.add_argument("--out", type=Path, default=None, help="backtest: folder for the results")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    try:
        results = run(a)
    except LayoutError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    if not results:
        print("error: nothing to evaluate (see above)", file=sys.stderr)
        raise SystemExit(2)
    for b in results:
        print("\n".join(lines(b)))
    if a.command == "backtest":
        out = a.out or Path("reports/capacity_forecast")
        out.mkdir(parents=True, exist_ok=True)
        (out / "backtest.json").write_text(
            json.dumps([asdict(b) for b in results], indent=1) + "\n"
        )
        (out / "README.md").write_text(markdown(results) + "\n")
        print(f"wrote {out}/backtest.json and {out}/README.md")
    main_result = results[-1]  # the file, or the generator's sites
    i = HORIZON - 1
    print(
        f"MAE_beds {main_result.unit['mae_model'][i]:.3f} "
        f"seasonal_naive_MAE_beds {main_result.unit['mae_seasonal_naive'][i]:.3f}"
    )


if __name__ == "__main__":
    main()
