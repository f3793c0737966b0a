"""The capacity forecast in the warehouse: every hour, each unit's and facility's occupancy for the
next 24 hours (udfs/capacity_forecast.py) from the census, into `capacity_forecast` (migration
0008), which the command-centre board reads.

    python -m sinks.capacity_forecast               # one origin: the last whole hour of the census
    python -m sinks.capacity_forecast --hourly      # at every hour + 5 min, from that hour
    python -m sinks.capacity_forecast --origin 2026-02-03T10:00Z

`--hourly` forecasts from the hour just ended once its events have had `--settle-s` (5 min) to
reach the warehouse, whatever the newest census event (a quiet feed has none in the hour).
Each facility's data begin at its own first event (its census load), so a facility whose feed
came on line later is forecast as if its data were the only data.

The census job's accepted events (`census_events`: each event with the unit the patient is in
after it) give every patient's stays per unit; from them, up to the origin only, the forecaster
estimates each unit's length-of-stay survival and arrival profile and forecasts the patients
there now plus the arrivals to come. The facility row (scope `facility`, unit `ALL`) is forecast
from its hospital stays. The LOS model's predicted discharges: each patient's latest champion
`length-of-stay` score up to the origin (`catalog_scores`, written by the catalog scoring job;
the stay entity's token is the patient token the census carries) rescales that patient's
remaining hospital stay in the facility row's forecast (udfs/capacity_forecast.py): the model
predicts the remaining hospital stay (PhysioNet 2012's Length_of_stay runs from ICU admission
to the end of hospitalisation), not the remaining time in a unit. A patient without one, and
the unit rows, get the facility's or the unit's own LOS distribution. `--no-los-model`
forecasts from the census alone. The surge
threshold is the capacity file's (`Capacity.surge_beds`).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import pandas as pd

from schemas.capacity import ALL_UNITS, Capacity
from schemas.settings import Settings
from sinks import clickhouse
from udfs import capacity_forecast as cf
from udfs.census_stays import stays_from_census

TABLE = "capacity_forecast"
LOS_MODEL = "length-of-stay"  # the registry name whose scores are the predicted discharges
COLUMNS = (
    "facility_id",
    "unit_id",
    "scope",
    "origin_time",
    "target_time",
    "horizon_h",
    "occupied_at_origin",
    "forecast",
    "expected",
    "lo80",
    "hi80",
    "lo95",
    "hi95",
    "capacity_beds",
    "surge_threshold",
    "surge_probability",
    "surge_warning",
    "model_version",
)


def forecast_rows(
    stays: pd.DataFrame,
    data_start_h: float | Mapping[str, float],
    capacity: Capacity,
    origin_h: float,
    predictions: Mapping[str, cf.StayPrediction] | None = None,
) -> pd.DataFrame:
    """The table's rows for one origin: every configured unit and every facility, h = 1..24.
    `data_start_h`: where the data begin, one hour for all or each facility's
    (`stays_from_census`; a facility without data has none before the origin)."""
    known = stays[stays.start_h <= origin_h]
    hospital = cf.facility_stays(known, ALL_UNITS)
    parts = []
    for fac in sorted({f for f, _ in capacity.units}):
        mine = known[known.facility_id == fac]
        start = (
            data_start_h.get(fac, origin_h) if isinstance(data_start_h, Mapping) else data_start_h
        )
        pooled = _history(mine, start)
        prior = cf.unit_survival(pooled, origin_h)  # for units with too few stays of their own
        zone = capacity.time_zone(fac)
        for (f, unit), beds in sorted(capacity.units.items()):
            if f == fac:
                s = mine[mine.unit_id == unit]
                fc = cf.forecast_unit(_history(s, start), origin_h, prior, time_zone=zone)
                surge = capacity.surge_beds(fac, unit)
                parts.append(_rows(fac, unit, "unit", fc, _occupied(s, origin_h), beds, surge))
        h = hospital[hospital.facility_id == fac]
        # the LOS model's is the hospital stay (PhysioNet 2012's Length_of_stay runs from ICU
        # admission to the end of the hospital stay), not a unit's: applied to a unit's, a
        # perfect score kept ICU patients in their beds ~2.7 times too long
        fc = cf.forecast_unit(_history(h, start), origin_h, predictions=predictions, time_zone=zone)
        beds, surge = capacity.facility_beds(fac), capacity.surge_beds(fac, ALL_UNITS)
        parts.append(_rows(fac, ALL_UNITS, "facility", fc, _occupied(h, origin_h), beds, surge))
    if not parts:  # a capacity file without units
        return pd.DataFrame({c: [] for c in COLUMNS})
    return pd.DataFrame({c: np.concatenate([p[c] for p in parts]) for c in COLUMNS})


def _history(s: pd.DataFrame, data_start_h: float) -> cf.UnitHistory:
    return cf.UnitHistory(
        s.start_h.to_numpy(np.float64),
        s.end_h.to_numpy(np.float64),
        data_start_h,
        s.patient_token.to_numpy(object),
    )


def _occupied(s: pd.DataFrame, at_h: float) -> int:
    return int(cf.occupancy(s.start_h, s.end_h, [at_h])[0])


def _rows(
    fac: str, unit: str, scope: str, f: cf.Forecast, occupied: int, beds: int, surge: float
) -> dict[str, Any]:
    origin = datetime.fromtimestamp(f.origin_h * 3600, UTC)
    n = len(f.horizons)
    return {
        "facility_id": [fac] * n,
        "unit_id": [unit] * n,
        "scope": [scope] * n,
        "origin_time": [origin] * n,
        "target_time": [origin + timedelta(hours=int(h)) for h in f.horizons],
        "horizon_h": f.horizons.astype("uint8"),
        "occupied_at_origin": np.full(n, occupied, dtype="int32"),
        "forecast": f.median,
        "expected": f.expected.round(3),
        "lo80": f.lo80,
        "hi80": f.hi80,
        "lo95": f.lo95,
        "hi95": f.hi95,
        "capacity_beds": np.full(n, beds, dtype="int32"),
        "surge_threshold": np.full(n, surge),
        "surge_probability": f.p_at_least(surge).round(4),
        "surge_warning": cf.surge_warning(f, surge).astype("uint8"),
        "model_version": [cf.MODEL_VERSION] * n,
    }


def write(client: Any, database: str, rows: pd.DataFrame) -> int:
    data = rows[list(COLUMNS)].astype(object).to_numpy().tolist()
    client.insert(f"{database}.{TABLE}", data, column_names=list(COLUMNS))
    return len(data)


def census_events(client: Any, database: str, until: datetime) -> pd.DataFrame:
    """census_events rows up to `until` in the order the census applied them: by time, then
    by their offset in census.event.v1 (keyed by patient, so a patient's rows are in one
    partition in the order the job wrote them: two events at one instant, as an admission and
    its transfer entered in the same minute, in the census's order, not their ids')."""
    df: pd.DataFrame = client.query_df(
        f"SELECT event_id, event_type, patient_token, facility_id, unit_id, event_time, outcome "
        f"FROM {database}.census_events FINAL WHERE event_time <= %(until)s "
        f"ORDER BY event_time, kafka_partition, kafka_offset, event_id",
        parameters={"until": until},
    )
    return df


def los_predictions(
    client: Any,
    database: str,
    until: datetime,
    since: datetime | None = None,
    model: str = LOS_MODEL,
) -> dict[str, cf.StayPrediction]:
    """Each stay's latest champion score of the LOS model in [`since`, `until`], by entity token
    (remaining days, as the model's output, in hours). `since`: when the longest stay still in
    began (no score before it can apply; default: all history)."""
    since = since or datetime(1970, 1, 1, tzinfo=UTC)
    rows = client.query(
        f"SELECT entity_token, argMax(score, (event_time, score_id)), max(event_time) "
        f"FROM {database}.catalog_scores FINAL "
        f"WHERE model_name = %(model)s AND role = 'champion' AND entity = 'stay' "
        f"AND event_time >= %(since)s AND event_time <= %(until)s GROUP BY entity_token",
        parameters={"model": model, "since": since, "until": until},
    ).result_rows
    out = {}
    for token, days, at in rows:
        at = at if at.tzinfo else at.replace(tzinfo=UTC)
        out[str(token)] = cf.StayPrediction(float(days) * 24.0, at.timestamp() / 3600)
    return out


def latest_origin(client: Any, database: str) -> datetime | None:
    """The last whole hour the census has reached."""
    (t,) = client.query(f"SELECT max(event_time) FROM {database}.census_events").result_rows[0]
    if t is None or t.year < 1971:
        return None
    t = t if t.tzinfo else t.replace(tzinfo=UTC)
    out: datetime = t.replace(minute=0, second=0, microsecond=0)
    return out


def run_once(
    client: Any,
    database: str,
    capacity: Capacity,
    origin: datetime | None = None,
    los_model: bool = True,
) -> int:
    """Forecast from `origin` (default: the census's last whole hour), with the LOS model's
    latest scores unless `los_model` is False, and write the rows."""
    origin = origin or latest_origin(client, database)
    if origin is None:
        return 0
    stays, start = stays_from_census(census_events(client, database, origin))
    predictions = None
    t0 = origin.timestamp() / 3600
    here = stays[~(stays.end_h <= t0)]  # still in at the origin (end NaN: open)
    if los_model and len(here):
        since = datetime.fromtimestamp(float(here.start_h.min()) * 3600, UTC)
        predictions = los_predictions(client, database, origin, since)
    rows = forecast_rows(stays, start, capacity, t0, predictions)
    return write(client, database, rows)


def utc_origin(text: str) -> datetime:
    """An origin as given, read as UTC where it names no offset (not the host's zone: a run on
    a host set to New York forecast from five hours later)."""
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--origin", type=utc_origin, default=None, help="ISO time; without an offset, UTC"
    )
    ap.add_argument(
        "--hourly",
        action="store_true",
        help="forecast at every whole hour, from that hour, once --settle-s have passed",
    )
    ap.add_argument(
        "--settle-s",
        type=float,
        default=300.0,
        help="--hourly: how long after the hour its census events take to be loaded (the census "
        "watermark's delay, the loader's flush); the run waits that long",
    )
    ap.add_argument(
        "--no-los-model",
        dest="los_model",
        action="store_false",
        help="leave out the LOS model's scores (the facility's own LOS distribution only)",
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    client = clickhouse.connect(settings.clickhouse_url)
    clickhouse.migrate(client, settings.clickhouse_database)
    capacity = Capacity.load(settings.capacity_file)
    while True:
        origin = hourly_origin(time.time(), a.settle_s) if a.hourly else a.origin
        n = run_once(client, settings.clickhouse_database, capacity, origin, a.los_model)
        print(f"{n} forecast rows written to {settings.clickhouse_database}.{TABLE}")
        if not a.hourly:
            return
        time.sleep(next_run_in_s(time.time(), a.settle_s))


def hourly_origin(now_s: float, settle_s: float) -> datetime:
    """The origin of an hourly run at `now_s` (epoch seconds): the last whole hour that has had
    `settle_s` to be loaded. Not the census's newest event's hour, which right after the hour is
    the hour before (an hour stale) and on a quiet feed older still."""
    settled = datetime.fromtimestamp(now_s - settle_s, UTC)
    return settled.replace(minute=0, second=0, microsecond=0)


def next_run_in_s(now_s: float, settle_s: float) -> float:
    """Seconds until the next hour plus `settle_s`."""
    return 3600 - (now_s - settle_s) % 3600


if __name__ == "__main__":
    main()
