"""The capacity forecast (udfs/capacity_forecast.py), its backtest (training/catalog/
capacity_forecast.py) and its table (sinks/capacity_forecast.py, migration 0008)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from jobs.feeds import adt_generator
from schemas import topics
from schemas.capacity import Capacity
from sinks import capacity_forecast as sink
from sinks import clickhouse as ch
from training.catalog import capacity_forecast as catalog
from udfs import capacity_forecast as cf
from udfs import census_stays

T0 = 500_000.0  # an origin, in hours since the epoch (a whole hour)
NO_ARRIVALS = np.zeros(cf.HORIZON_H)
NOBODY_LEAVES = cf.Survival(np.ones(cf.GRID_H + 1), 0.0, 1000)


def test_with_no_arrivals_and_nobody_leaving_the_forecast_is_flat_at_the_current_census() -> None:
    f = cf.forecast(
        T0, elapsed_h=[1.0, 30.0, 200.0, 5.5], survival=NOBODY_LEAVES, rates=NO_ARRIVALS
    )
    for band in (f.median, f.expected, f.lo80, f.hi80, f.lo95, f.hi95):
        assert np.allclose(band, 4.0)
    assert np.allclose(f.var, 0.0)


def test_a_unit_whose_patients_all_have_an_hour_left_empties() -> None:
    los = cf.exponential_survival(96.0)
    elapsed = np.linspace(2.0, 150.0, 20)
    kept = cf.forecast(T0, elapsed, los, NO_ARRIVALS)
    leaving = cf.forecast(T0, elapsed, los, NO_ARRIVALS, remaining_h=np.ones(20))
    assert kept.median[-1] >= 15  # without the LOS model most are still in tomorrow
    # an hour is their median: half are gone after it, nearly all by tomorrow
    assert leaving.expected[0] == pytest.approx(10.0, abs=0.01)
    assert leaving.median[-1] == 0 and leaving.expected[-1] < 0.01
    # NaN from the LOS model falls back to the unit's own distribution
    unknown = cf.forecast(T0, elapsed, los, NO_ARRIVALS, remaining_h=np.full(20, np.nan))
    assert np.allclose(unknown.pmf, kept.pmf)


def _lognormal_unit(seed: int = 1) -> cf.Survival:
    rng = np.random.default_rng(seed)
    return cf.kaplan_meier(rng.lognormal(np.log(80), 0.8, 5000), np.ones(5000))


def test_the_median_remaining_stay_is_where_the_conditional_survival_halves() -> None:
    los = _lognormal_unit()
    elapsed = np.array([0.0, 3.5, 10.0, 80.0, 400.0, 2000.0])  # the last beyond the hourly grid
    left = los.median_remaining(elapsed)
    assert np.allclose(los(elapsed + left) / los(elapsed), 0.5, atol=1e-3)
    assert 60 < left[2] < 120


def test_a_patient_the_los_model_gives_twenty_hours_is_in_with_even_odds_twenty_hours_on() -> None:
    one = cf.forecast(T0, [10.0], _lognormal_unit(), NO_ARRIVALS, remaining_h=[20.0])
    assert one.expected[19] == pytest.approx(0.5, abs=1e-3)
    assert one.expected[0] > 0.9 and one.expected[-1] < 0.5


def test_a_score_five_hours_old_is_the_forecast_made_then_given_the_patient_is_still_in() -> None:
    los = _lognormal_unit()
    then = cf.forecast(T0, [5.0], los, NO_ARRIVALS, remaining_h=[20.0]).expected
    now = cf.forecast(T0, [10.0], los, NO_ARRIVALS, remaining_h=[20.0], scored_elapsed_h=[5.0])
    assert now.expected[14] == pytest.approx(then[19] / then[4], abs=1e-9)  # 20 h after scoring
    assert then[19] == pytest.approx(0.5, abs=1e-3) and now.expected[14] > 0.5


def test_a_prediction_equal_to_the_units_own_median_changes_nothing() -> None:
    los = _lognormal_unit()
    own = float(los.median_remaining([10.0])[0])
    one = cf.forecast(T0, [10.0], los, NO_ARRIVALS, remaining_h=[own])
    assert np.allclose(one.expected, cf.forecast(T0, [10.0], los, NO_ARRIVALS).expected)


def test_a_unit_forecast_uses_only_scores_made_during_the_patients_stay_there() -> None:
    los = _lognormal_unit()
    # in from the data's first instant: a census load, so no arrival rate is learnt from it
    h = cf.UnitHistory(np.array([T0 - 30.0]), np.array([np.nan]), T0 - 30.0, np.array(["p"]))
    plain = cf.forecast_unit(h, T0, survival=los).expected
    during = {"p": cf.StayPrediction(remaining_h=6.0, scored_at_h=T0 - 2.0)}
    earlier = {"p": cf.StayPrediction(remaining_h=6.0, scored_at_h=T0 - 31.0)}  # another unit
    later = {"p": cf.StayPrediction(remaining_h=6.0, scored_at_h=T0 + 1.0)}  # after the origin
    then = cf.forecast(T0, [28.0], los, NO_ARRIVALS, remaining_h=[6.0]).expected
    with_score = cf.forecast_unit(h, T0, predictions=during, survival=los).expected
    assert with_score[3] == pytest.approx(then[5] / then[1], abs=1e-9)  # 6 h after scoring
    for ignored in (earlier, later, {"q": during["p"]}):
        got = cf.forecast_unit(h, T0, predictions=ignored, survival=los).expected
        assert np.allclose(got, plain)


def _realistic() -> cf.Forecast:
    rng = np.random.default_rng(3)
    los = cf.kaplan_meier(rng.lognormal(np.log(80), 0.8, 3000), rng.random(3000) < 0.9)
    return cf.forecast(T0, rng.uniform(0, 200, 45), los, np.full(cf.HORIZON_H, 0.5))


def test_intervals_contain_the_point_forecast_and_widen_with_the_horizon() -> None:
    f = _realistic()
    assert (f.lo95 <= f.lo80).all() and (f.lo80 <= f.median).all()
    assert (f.median <= f.hi80).all() and (f.hi80 <= f.hi95).all()
    assert (np.diff(f.var) >= -1e-9).all()
    width = f.hi95 - f.lo95
    assert width[-1] > width[0] and width[11] >= width[0]
    assert np.allclose(f.pmf.sum(axis=1), 1.0)


def test_the_surge_warning_fires_from_the_hour_the_forecast_reaches_the_threshold() -> None:
    f = cf.forecast(T0, np.zeros(10), NOBODY_LEAVES, np.full(cf.HORIZON_H, 1.0))
    warn = cf.surge_warning(f, 20.0)
    first = int(np.argmax(warn))
    assert warn[first:].all() and not warn[:first].any()
    assert f.median[first] >= 20 > f.median[first - 1]
    p = f.p_at_least(20.0)
    assert p[first] >= 0.5 and p[0] < 1e-5 and (np.diff(p) >= -1e-12).all()
    assert not cf.surge_warning(f, 100.0).any()


def test_the_surge_threshold_is_a_level_of_the_capacity_file_and_round_trips() -> None:
    cap = Capacity.from_dict({"facilities": {"H": {"ICU": 10, "W": 30}}})
    assert cap.forecast_surge_level == 2 and cap.surge_beds("H", "W") == pytest.approx(27.6)
    assert cap.surge_beds("H", "ALL") == pytest.approx(36.8)
    three = Capacity.from_dict({**cap.to_dict(), "forecast_surge_level": 3})
    assert three.surge_beds("H", "ICU") == 10 and Capacity.from_dict(three.to_dict()) == three
    with pytest.raises(ValueError, match="forecast_surge_level"):
        Capacity.from_dict({**cap.to_dict(), "forecast_surge_level": 4})


def _unit(seed: int = 5, days: int = 30) -> cf.UnitHistory:
    rng = np.random.default_rng(seed)
    start = np.sort(rng.uniform(0, days * 24, 400)) + T0 - days * 24
    end = start + rng.lognormal(np.log(60), 0.7, len(start))
    end[end > T0 + 48] = np.nan  # still in at the end of the data
    return cf.UnitHistory(start, end, T0 - days * 24 - 1)


def test_a_forecast_reads_nothing_after_its_origin() -> None:
    h = _unit()
    origin = T0 - 72
    before = cf.forecast_unit(h, origin)
    # what happens after the origin: other ends, other arrivals, and a patient already in leaving
    later = np.where(h.end_h > origin, h.end_h + 13.0, h.end_h)
    extra = np.array([origin + 0.5, origin + 3.0, origin + 30.0])
    other = cf.UnitHistory(
        np.concatenate([h.start_h, extra]),
        np.concatenate([later, extra + 2.0]),
        h.data_start_h,
    )
    assert np.array_equal(cf.forecast_unit(other, origin).pmf, before.pmf)
    start, end = h.known_at(origin)
    assert (start <= origin).all() and (np.isnan(end) | (end <= origin)).all()


def test_seasonal_naive_repeats_yesterday_and_persistence_is_its_lag_24_at_24_hours() -> None:
    y = np.arange(200.0)
    assert np.array_equal(cf.seasonal_naive(y, 24), y[-24:])
    assert cf.seasonal_naive(y, 24)[-1] == y[-1]
    assert np.array_equal(cf.seasonal_naive(y, 168), y[-168 : -168 + 24])


def test_stays_rebuilt_from_adt_events_give_the_census_of_the_state_machine() -> None:
    plan = adt_generator.Plan(facilities=1, days=5, seed=2)
    events = adt_generator.events(plan)
    stays = census_stays.stays_from_events(events)
    ms = pd.Series([e["event_time"] for e in events]).astype("int64") // 1_000_000
    assert len(stays) > 500 and (stays.end_h.dropna() >= 0).all()
    at = ms.iloc[-1] / cf.HOUR_MS
    from udfs.census import AdtEvent, PatientPlacement

    who: dict[str, PatientPlacement] = {}
    occupied: dict[str, int] = {}
    for e, t in zip(events, ms, strict=True):
        ev = AdtEvent(e["event_id"], e["event_type"], e["facility_id"], e["unit_id"], None, t)
        for d in who.setdefault(e["patient_token"], PatientPlacement()).apply(ev)[1]:
            occupied[d.unit_id] = occupied.get(d.unit_id, 0) + d.occupied
    for unit, n in occupied.items():
        s = stays[stays.unit_id == unit]
        assert cf.occupancy(s.start_h, s.end_h, [at + 1e-6])[0] == n, unit
    hospital = cf.facility_stays(stays)
    assert cf.occupancy(hospital.start_h, hospital.end_h, [at + 1e-6])[0] == sum(occupied.values())


def test_the_forecast_beats_seasonal_naive_at_24_hours_on_the_generators_sites() -> None:
    b = catalog.generator_backtest(facilities=3, days=30, step_h=12)
    i = cf.HORIZON_H - 1
    assert b.unit["forecasts"] > 1000
    assert b.unit["mae_model"][i] < b.unit["mae_seasonal_naive"][i]
    assert b.unit["mae_model"][i] < b.unit["mae_persistence"][i]
    assert all(m <= p for m, p in zip(b.unit["mae_model"], b.unit["mae_persistence"], strict=True))
    assert 0.75 < b.unit["coverage80"][i] < 0.9 and 0.92 < b.unit["coverage95"][i] <= 1.0


def test_evaluate_refuses_a_file_not_in_the_adt_layout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = tmp_path / "vitals.parquet"
    pd.DataFrame({"patient_id": ["a"], "hour": [0], "HR": [80.0]}).to_parquet(wrong)
    from training import evaluate

    with pytest.raises(SystemExit) as exit_:
        evaluate.main(["--model", "capacity-forecast", "--file", str(wrong)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert topics.ADT_EVENT.name in err and "missing event_id" in err


def test_evaluate_on_an_adt_file_ends_with_the_mae_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    events = adt_generator.events(adt_generator.Plan(facilities=1, days=15.5, seed=4))
    path = tmp_path / "adt.parquet"
    pd.DataFrame(events).to_parquet(path)
    catalog.main(["evaluate", "--model", "capacity-forecast", "--file", str(path)])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"MAE_beds \d+\.\d{3} seasonal_naive_MAE_beds \d+\.\d{3}", last), last


def test_forecast_rows_fill_the_migrated_table_for_every_unit_and_facility(
    clickhouse: Any, settings: Any
) -> None:
    plan = adt_generator.Plan(facilities=2, days=16, seed=9)
    stays = census_stays.stays_from_events(adt_generator.events(plan))
    start = plan.start.timestamp() / 3600
    cap = adt_generator.capacity(2)
    rows = sink.forecast_rows(stays, start, cap, start + 15 * 24)
    assert len(rows) == (len(cap.units) + 2) * cf.HORIZON_H
    assert set(rows.scope) == {"unit", "facility"}
    assert (rows.lo95 <= rows.forecast).all() and (rows.forecast <= rows.hi95).all()
    fac = rows[rows.scope == "facility"]
    assert (fac.capacity_beds == 500).all() and np.allclose(fac.surge_threshold, 460.0)
    assert set(ch.table_columns(clickhouse, settings.clickhouse_database, sink.TABLE)) == {
        *sink.COLUMNS,
        "computed_at",
    }
    assert sink.write(clickhouse, settings.clickhouse_database, rows) == len(rows)
    got = clickhouse.query(
        f"SELECT count(), sum(surge_warning), max(horizon_h) "
        f"FROM {settings.clickhouse_database}.{sink.TABLE} FINAL"
    ).result_rows
    assert got == [(len(rows), int(rows.surge_warning.sum()), cf.HORIZON_H)]


def _census_in(clickhouse: Any, db: str) -> pd.DataFrame:
    """A fresh database `db` holding the census events of 15 days of one seeded facility."""
    from grafana import seed

    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    plan = seed.SeedPlan(facilities=1, days=15)
    ev = pd.DataFrame(seed.place(seed.adt_events(plan), plan.end_ms).events)
    cols = ["event_id", "event_type", "patient_token", "facility_id", "unit_id", "event_time"]
    rows = ev[[*cols, "outcome", "reason"]].astype(object).where(ev.notna(), None)
    clickhouse.insert(f"{db}.census_events", rows.to_numpy().tolist(), column_names=list(rows))
    return ev


def test_the_hourly_step_forecasts_from_the_census_events_in_clickhouse(
    clickhouse: Any, settings: Any
) -> None:
    db = settings.clickhouse_database + "_cf"
    ev = _census_in(clickhouse, db)
    origin = sink.latest_origin(clickhouse, db)
    assert origin is not None and origin.minute == 0 and origin <= ev.event_time.max()
    cap = adt_generator.capacity(1)
    assert sink.run_once(clickhouse, db, cap) == (len(cap.units) + 1) * cf.HORIZON_H
    # the same as forecasting from the census events in memory
    stays, start = census_stays.stays_from_census(ev[ev.event_time <= pd.Timestamp(origin)])
    want = sink.forecast_rows(stays, start, cap, origin.timestamp() / 3600)
    got = clickhouse.query_df(
        f"SELECT unit_id, horizon_h, forecast, hi95 FROM {db}.{sink.TABLE} FINAL "
        f"ORDER BY unit_id, horizon_h"
    )
    want = want.sort_values(["unit_id", "horizon_h"])
    assert np.allclose(got.forecast, want.forecast) and np.allclose(got.hi95, want.hi95)
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def _los_score(
    token: str, fac: str, unit: str, at: Any, days: float, **over: Any
) -> dict[str, Any]:
    row = {
        "score_id": f"{token}-{at.isoformat()}-{over.get('role', 'champion')}",
        "record_id": token,
        "entity": "stay",
        "entity_token": token,
        "facility_id": fac,
        "unit_id": unit,
        "event_time": at,
        "model_name": sink.LOS_MODEL,
        "model_version": "1",
        "role": "champion",
        "output_name": "remaining_los_days",
        "score": days,
        "features_missing": 0,
        "scoring_latency_ms": 1.0,
        "kafka_partition": 0,
        "kafka_offset": 0,
        "kafka_topic": topics.MODEL_SCORE.name,
    }
    return {**row, **over}


def test_the_hourly_step_takes_each_patients_latest_los_score_as_its_predicted_discharge(
    clickhouse: Any, settings: Any
) -> None:
    db = settings.clickhouse_database + "_cflos"
    ev = _census_in(clickhouse, db)
    origin = sink.latest_origin(clickhouse, db)
    assert origin is not None
    stays, start = census_stays.stays_from_census(ev[ev.event_time <= pd.Timestamp(origin)])
    t0 = origin.timestamp() / 3600
    here = stays[(stays.start_h <= t0 - 3) & ~(stays.end_h <= t0)]
    unit = here.unit_id.value_counts().index[0]  # the unit holding most patients
    mine = here[here.unit_id == unit]
    assert len(mine) >= 5

    def at(hours: float) -> Any:
        return origin + pd.Timedelta(hours=hours)

    scores = []
    for p in mine.itertuples():
        fac = str(p.facility_id)

        token = str(p.patient_token)
        scores += [
            _los_score(token, fac, unit, at(-3), 30.0),
            _los_score(token, fac, unit, at(-1), 0.1),  # the latest
            _los_score(token, fac, unit, at(-1), 50.0, role="challenger"),
            _los_score(token, fac, unit, at(+1), 50.0),  # after the origin
            _los_score(token, fac, unit, at(-2), 0.9, model_name="icu-mortality"),
        ]
    frame = pd.DataFrame(scores)
    clickhouse.insert(f"{db}.catalog_scores", frame.to_numpy().tolist(), column_names=list(frame))

    got = sink.los_predictions(clickhouse, db, origin)
    assert set(got) == set(mine.patient_token)
    assert {round(g.remaining_h, 6) for g in got.values()} == {2.4}  # 0.1 d, the latest
    assert {g.scored_at_h for g in got.values()} == {t0 - 1}
    # nothing scored before the longest stay still in began can apply to anyone in
    assert sink.los_predictions(clickhouse, db, origin, since=at(-0.5)) == {}
    assert sink.los_predictions(clickhouse, db, origin, since=at(-1)) == got

    def unit_rows(los_model: bool) -> pd.DataFrame:
        clickhouse.command(f"TRUNCATE TABLE {db}.{sink.TABLE}")
        sink.run_once(clickhouse, db, adt_generator.capacity(1), origin, los_model)
        return clickhouse.query_df(
            f"SELECT unit_id, scope, horizon_h, forecast, expected FROM {db}.{sink.TABLE} FINAL "
            f"ORDER BY scope, unit_id, horizon_h"
        )

    with_los, without = unit_rows(True), unit_rows(False)
    want = sink.forecast_rows(stays, start, adt_generator.capacity(1), t0, got)
    want = want.sort_values(["scope", "unit_id", "horizon_h"])
    assert np.allclose(with_los.expected, want.expected, atol=1e-3)
    changed = with_los.expected.to_numpy() != without.expected.to_numpy()
    # only the facility row changes: the model predicts the remaining hospital stay
    # (PhysioNet 2012's Length_of_stay), so the scored patients leave the hospital sooner; no
    # unit's forecast takes it as the time left in that unit
    assert set(with_los[changed].scope) == {"facility"}
    ours = (with_los.scope == "facility").to_numpy()
    assert (with_los.expected[ours].to_numpy() < without.expected[ours].to_numpy()).all()
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_a_facility_whose_feed_starts_later_is_forecast_from_its_own_data_alone() -> None:
    """Its first events are its census load and its history starts there, not at the first
    event of another facility that came on line earlier."""
    from grafana import seed

    plan = seed.SeedPlan(facilities=1, days=15)
    ev = pd.DataFrame(seed.place(seed.adt_events(plan), plan.end_ms).events)
    [early] = ev.facility_id.unique()
    late = ev.assign(
        facility_id="late",
        patient_token="late-" + ev.patient_token,  # other patients
        event_time=ev.event_time + pd.Timedelta(days=10),
    )
    units = {u: b for (_, u), b in adt_generator.capacity(1).units.items()}
    both_cap = Capacity.from_dict({"facilities": {early: units, "late": units}})
    late_cap = Capacity.from_dict({"facilities": {"late": units}})
    origin = late.event_time.max().floor("h") - pd.Timedelta(hours=1)
    t0 = origin.timestamp() / 3600
    both = pd.concat([ev, late], ignore_index=True)
    stays, starts = census_stays.stays_from_census(both[both.event_time <= origin])
    assert starts["late"] - starts[early] == 240.0
    together = sink.forecast_rows(stays, starts, both_cap, t0)
    alone_stays, alone_starts = census_stays.stays_from_census(late[late.event_time <= origin])
    alone = sink.forecast_rows(alone_stays, alone_starts, late_cap, t0)
    mine = together[together.facility_id == "late"].reset_index(drop=True)
    for c in ("occupied_at_origin", "forecast", "expected", "lo95", "hi95", "surge_probability"):
        assert np.allclose(mine[c].astype(float), alone[c].astype(float)), c


def test_a_capacity_file_without_units_forecasts_nothing() -> None:
    plan = adt_generator.Plan(facilities=1, days=3, seed=9)
    stays = census_stays.stays_from_events(adt_generator.events(plan))
    empty = Capacity.from_dict({"facilities": {}})
    assert sink.forecast_rows(stays, 0.0, empty, plan.start.timestamp() / 3600 + 48).empty


def test_an_hourly_run_forecasts_from_the_hour_just_ended_once_it_has_settled() -> None:
    from datetime import UTC, datetime

    at = datetime(2026, 3, 1, 11, 5, tzinfo=UTC).timestamp()
    assert sink.hourly_origin(at, 300) == datetime(2026, 3, 1, 11, tzinfo=UTC)
    assert sink.hourly_origin(at - 1, 300) == datetime(2026, 3, 1, 10, tzinfo=UTC)
    assert sink.next_run_in_s(at, 300) == 3600
    assert sink.next_run_in_s(at - 300, 300) == 300  # at 11:00 the next run is at 11:05


def test_a_surge_threshold_a_hair_over_a_whole_bed_warns_at_that_bed() -> None:
    f = cf.forecast(T0, elapsed_h=[1.0] * 161, survival=NOBODY_LEAVES, rates=NO_ARRIVALS)
    threshold = 250 * 64.4 / 100  # 161.00000000000003
    assert threshold > 161
    assert cf.surge_warning(f, threshold).all() and np.allclose(f.p_at_least(threshold), 1.0)


def _census_rows(*rows: tuple[str, str, str, str | None, int, str]) -> pd.DataFrame:
    """census_events rows: (event id, event type, token, unit after, hour, outcome)."""
    return pd.DataFrame(
        [
            {
                "event_id": i,
                "event_type": kind,
                "patient_token": token,
                "facility_id": "H",
                "unit_id": unit,
                "event_time": pd.Timestamp("2026-03-01", tz="UTC") + pd.Timedelta(hours=h),
                "outcome": outcome,
            }
            for i, kind, token, unit, h, outcome in rows
        ]
    )


def test_a_trauma_alias_merged_into_the_patients_record_is_one_stay_to_the_forecast() -> None:
    """HL7 A40 (udfs.census): the alias's bed passes to the patient's own record. Read as two
    stays, the forecast would see a short stay end and an arrival at the merge; it is one stay,
    from the alias's admission on."""
    merge = (
        ("m1:A01", "admit", "T9", "ICU", 8, "applied"),
        ("m2:A40:away", "merged_away", "T9", None, 10, "applied"),
        ("m2:A40:in", "merged_in", "MRN1", "ICU", 10, "applied"),
        ("m3:A02", "transfer", "MRN1", "4E", 11, "applied"),
    )
    stays, _ = census_stays.stays_from_census(_census_rows(*merge))
    t0 = pd.Timestamp("2026-03-01", tz="UTC").timestamp() / 3600
    got = [(r.patient_token, r.unit_id, r.start_h - t0, r.end_h - t0) for r in stays.itertuples()]
    assert len(got) == 2 and got[0] == ("MRN1", "ICU", 8, 11)
    assert got[1][:3] == ("MRN1", "4E", 11) and np.isnan(got[1][3])  # still in
    # a survivor in a bed already (two registrations, both placed): left as the census had it
    both = _census_rows(("m0:A01", "admit", "MRN1", "ED", 7, "applied"), *merge)
    stays, _ = census_stays.stays_from_census(both)
    assert set(stays.patient_token) == {"T9", "MRN1"}


def test_a_merge_splices_only_the_merged_records_current_stay_in_any_row_order() -> None:
    """The alias's earlier, discharged stay stays its own; a chain (T9 into MRN1, then MRN1
    into MRN2) follows in time order whatever order the rows come in (and with repeated index
    labels); a survivor placed at the merge's instant is not spliced onto."""
    rows = _census_rows(
        ("m0:A01", "admit", "T9", "4E", 1, "applied"),
        ("m0:A03", "discharge", "T9", None, 3, "applied"),
        ("m1:A01", "admit", "T9", "ICU", 8, "applied"),
        ("m2:A40:away", "merged_away", "T9", None, 10, "applied"),
        ("m2:A40:in", "merged_in", "MRN1", "ICU", 10, "applied"),
        ("m3:A40:away", "merged_away", "MRN1", None, 12, "applied"),
        ("m3:A40:in", "merged_in", "MRN2", "ICU", 12, "applied"),
    )
    shuffled = pd.concat([rows.iloc[4:], rows.iloc[:4]])  # labels 4-6 then 0-3
    shuffled.index = [0, 1, 2, 0, 1, 2, 3]
    stays, _ = census_stays.stays_from_census(shuffled)
    t0 = pd.Timestamp("2026-03-01", tz="UTC").timestamp() / 3600
    got = sorted((r.patient_token, r.unit_id, r.start_h - t0) for r in stays.itertuples())
    assert got == [("MRN2", "ICU", 8), ("T9", "4E", 1)]
    assert stays.loc[stays.patient_token == "T9", "end_h"].item() - t0 == 3
    # the survivor admitted at the very instant of the merge: two stays, as the census had them
    same_instant = _census_rows(
        ("m1:A01", "admit", "T9", "ICU", 8, "applied"),
        ("m2:A01", "admit", "MRN1", "4E", 10, "applied"),
        ("m3:A40:away", "merged_away", "T9", None, 10, "applied"),
        ("m3:A40:in", "merged_in", "MRN1", "ICU", 10, "applied"),
    )
    stays, _ = census_stays.stays_from_census(same_instant)
    assert set(stays.patient_token) == {"T9", "MRN1"}


def test_a_merge_is_not_spliced_over_the_survivors_own_stay_nor_undone_by_a_later_move() -> None:
    """The survivor in a bed during the merged record's stay (discharged from the emergency
    department before the merge): two registrations both placed, left as the census had them.
    A survivor's transfer at the merge's own instant came after the merge: spliced."""
    t0 = pd.Timestamp("2026-03-01", tz="UTC").timestamp() / 3600
    overlapping = _census_rows(
        ("m0:A01", "admit", "MRN1", "ED", 0, "applied"),
        ("m1:A01", "admit", "T9", "ICU", 1, "applied"),
        ("m2:A03", "discharge", "MRN1", None, 2, "applied"),
        ("m3:A40:away", "merged_away", "T9", None, 6, "applied"),
        ("m3:A40:in", "merged_in", "MRN1", "ICU", 6, "applied"),
    )
    stays, _ = census_stays.stays_from_census(overlapping)
    got = sorted((r.patient_token, r.unit_id, r.start_h - t0) for r in stays.itertuples())
    assert got == [("MRN1", "ED", 0), ("MRN1", "ICU", 6), ("T9", "ICU", 1)]
    moved_at_once = _census_rows(
        ("m1:A01", "admit", "T9", "ICU", 1, "applied"),
        ("m2:A40:away", "merged_away", "T9", None, 6, "applied"),
        ("m2:A40:in", "merged_in", "MRN1", "ICU", 6, "applied"),
        ("m3:A02", "transfer", "MRN1", "4E", 6, "applied"),
    )
    stays, _ = census_stays.stays_from_census(moved_at_once)
    got = sorted(
        (r.patient_token, r.unit_id, r.start_h - t0, r.end_h - t0) for r in stays.itertuples()
    )
    assert got[0] == ("MRN1", "4E", 6, got[0][3]) and np.isnan(got[0][3])
    assert got[1] == ("MRN1", "ICU", 1, 6)


NEW_YORK = "America/New_York"


def _local_h(day: pd.Timestamp, hour: int, minute: int = 0) -> float:
    """Hours since the epoch of `hour`:`minute` on `day` in New York."""
    return pd.Timestamp(day.year, day.month, day.day, hour, minute, tz=NEW_YORK).timestamp() / 3600


def test_arrivals_at_eight_in_the_morning_are_forecast_at_eight_after_the_clocks_change() -> None:
    """A facility in New York admits at 08:15 local every day. Its four weeks of history span
    the change to daylight saving time (2026-03-08): on its own clock the forecast expects the
    day's admission between eight and nine; on UTC's, the hour after (where it came before
    the change) and hardly any at eight."""
    days = pd.date_range("2026-02-14", "2026-03-13", freq="D")
    arrivals = [_local_h(d, 8, 15) for d in days]
    start, origin = _local_h(days[0], 0), _local_h(pd.Timestamp("2026-03-14"), 0)
    local = cf.arrival_rates(arrivals, start, origin, time_zone=NEW_YORK)
    utc = cf.arrival_rates(arrivals, start, origin)
    assert int(np.argmax(local)) == 8 and local[8] > 0.9  # (t0 + 8, t0 + 9]: 08:00-09:00
    assert int(np.argmax(utc)) == 9 and utc[8] < 0.2
    assert np.sum(local) == pytest.approx(np.sum(utc), rel=0.05)  # a day's worth either way


def test_an_hour_of_week_is_the_facilitys_local_one_and_a_clock_put_back_repeats_one() -> None:
    monday_8_est = _local_h(pd.Timestamp("2026-01-05"), 8)
    assert cf.hour_of_week(int(monday_8_est), NEW_YORK) == 8
    assert cf.hour_of_week(int(monday_8_est)) == 13  # UTC's
    # 2026-11-01, the clock put back at 02:00 EDT: 01:00-02:00 comes twice
    sunday = int(_local_h(pd.Timestamp("2026-11-01"), 0))
    hours = cf.hour_of_week(np.arange(sunday, sunday + 4), NEW_YORK)
    assert list(hours) == [6 * 24 + 0, 6 * 24 + 1, 6 * 24 + 1, 6 * 24 + 2]


def test_a_capacity_files_time_zones_are_checked_and_round_trip() -> None:
    units = {"H": {"ICU": 10}, "G": {"W": 20}}
    cap = Capacity.from_dict({"facilities": units, "time_zones": {"H": NEW_YORK}})
    assert (cap.time_zone("H"), cap.time_zone("G")) == (NEW_YORK, "UTC")
    assert Capacity.from_dict(cap.to_dict()) == cap
    for machines in ("Eastern", "localtime", "posixrules"):
        with pytest.raises(ValueError, match="no IANA time zone"):
            Capacity.from_dict({"facilities": units, "time_zones": {"H": machines}})
    with pytest.raises(ValueError, match="no units"):
        Capacity.from_dict({"facilities": units, "time_zones": {"X": NEW_YORK}})
    with pytest.raises(ValueError, match="must map facilities"):
        Capacity.from_dict({"facilities": units, "time_zones": [NEW_YORK]})


def test_the_forecast_table_counts_a_facilitys_arrivals_on_its_own_clock() -> None:
    """The hourly rows of a facility whose capacity file names its time zone: the 08:15
    admissions to a ward of half-hour stays are expected between eight and nine local."""
    days = pd.date_range("2026-02-14", "2026-03-13", freq="D")
    arrivals = np.array([_local_h(d, 8, 15) for d in days])
    stays = pd.DataFrame(
        {
            "facility_id": "H",
            "unit_id": "W",
            "start_h": arrivals,
            "end_h": arrivals + 0.5,
            "patient_token": [f"p{i}" for i in range(len(arrivals))],
        }
    )
    origin = _local_h(pd.Timestamp("2026-03-14"), 0)
    units = {"facilities": {"H": {"W": 4}}}
    rows = {
        zone: sink.forecast_rows(
            stays, _local_h(days[0], 0), Capacity.from_dict(units | zones), origin
        )
        for zone, zones in (("local", {"time_zones": {"H": NEW_YORK}}), ("utc", {}))
    }
    for zone, table in rows.items():
        ward = table[table.unit_id == "W"].set_index("horizon_h").expected.astype(float)
        busiest = int(ward.idxmax())  # occupancy at t0 + h: the admission of (t0 + h - 1, t0 + h]
        assert busiest == (9 if zone == "local" else 10), (zone, ward.round(2).to_dict())


def test_an_arrival_every_hour_is_a_rate_of_one_on_a_clock_put_back_or_forward() -> None:
    """Exposure and arrivals counted on the same clock: the hour the clock repeats has two
    hours of each, the hour it skips none, and each rate stays one arrival an hour (the clock's
    own effect is the tests' above; this one fails where the two counts use different clocks)."""
    for start, origin in (("2026-10-10", "2026-11-03"), ("2026-02-14", "2026-03-10")):
        first, t0 = _local_h(pd.Timestamp(start), 0), _local_h(pd.Timestamp(origin), 0)
        every_hour = np.arange(first, t0) + 0.5
        rates = cf.arrival_rates(every_hour, first, t0, time_zone=NEW_YORK)
        assert np.allclose(rates, 1.0), (origin, rates.round(3))


def test_the_warehouses_facility_dimension_carries_each_facilitys_time_zone(
    clickhouse: Any, settings: Any
) -> None:
    from sinks import dims

    db = settings.clickhouse_database + "_tz"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    units = {"H": {"ICU": 10}, "G": {"W": 20}}
    dims.load_capacity(
        clickhouse, db, Capacity.from_dict({"facilities": units, "time_zones": {"H": NEW_YORK}})
    )
    got = clickhouse.query_df(f"SELECT facility_id, timezone FROM {db}.dim_facility FINAL")
    assert dict(zip(got.facility_id, got.timezone, strict=True)) == {"H": NEW_YORK, "G": "UTC"}


def test_an_admission_and_its_transfer_at_one_instant_reach_the_forecast_in_the_census_order(
    clickhouse: Any, settings: Any
) -> None:
    """An ED admission and the transfer to ICU entered in the same minute: the census applied
    them in arrival order (their offsets), and the forecast reads the patient in ICU, whatever
    their ids sort as (m10 before m9)."""
    db = settings.clickhouse_database + "_order"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    at = pd.Timestamp("2026-03-01T08:00:00Z")
    rows = [
        ["m9", "admit", "p1", "H", "ED", at, "applied", 0, 10],
        ["m10", "transfer", "p1", "H", "ICU", at, "applied", 0, 11],
    ]
    columns = ["event_id", "event_type", "patient_token", "facility_id", "unit_id"]
    columns += ["event_time", "outcome", "kafka_partition", "kafka_offset"]
    clickhouse.insert(f"{db}.census_events", rows, column_names=columns)
    events = sink.census_events(clickhouse, db, at.to_pydatetime())
    assert list(events.event_id) == ["m9", "m10"]
    stays, _ = census_stays.stays_from_census(events)
    [still_in] = stays[stays.end_h.isna()].unit_id
    assert still_in == "ICU"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_a_stay_the_census_voided_is_no_stay_to_the_forecast() -> None:
    """A patient's earlier stay counts; the admission cancelled (A11) after a transfer, or
    after a discharge taken back (A13), and an Encounter voided (entered-in-error), also at a
    transfer's instant, are neither arrivals nor short stays."""
    at = pd.Timestamp("2026-03-01T08:00:00Z")
    hour = pd.Timedelta(hours=1)
    rows = [
        ("p1", "admit", "ED", 0),
        ("p1", "discharge", None, 30),
        ("p1", "admit", "ED", 40),
        ("p1", "transfer", "ICU", 41),
        ("p1", "cancel_admit", None, 42),
        ("p2", "admit", "W4", 1),
        ("p2", "void_encounter", None, 3),
        ("p3", "admit", "W4", 2),
        ("p4", "admit", "ED", 0),
        ("p4", "discharge", None, 10),
        ("p4", "cancel_discharge", "ED", 11),  # the stay goes on
        ("p4", "cancel_admit", None, 12),  # and never was
        ("p5", "admit", "ED", 5),
        ("p5", "transfer", "ICU", 6),
        ("p5", "void_encounter", None, 6),  # at the transfer's instant, applied after it
    ]
    events = pd.DataFrame(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "event_type": [kind for _, kind, _, _ in rows],
            "patient_token": [p for p, _, _, _ in rows],
            "facility_id": "H",
            "unit_id": [unit for _, _, unit, _ in rows],
            "event_time": [at + h * hour for *_, h in rows],
            "outcome": "applied",
        }
    )
    stays, starts = census_stays.stays_from_census(events)
    t0 = at.timestamp() / 3600
    assert sorted(zip(stays.patient_token, stays.unit_id, stays.start_h - t0, strict=True)) == [
        ("p1", "ED", 0.0),
        ("p3", "W4", 2.0),
    ]
    assert starts == {"H": t0}


def _adt(event_id: str, kind: str, token: str, unit: str | None, at_h: float) -> dict[str, Any]:
    """An adt.event.v1 record of facility H, `at_h` hours since the epoch."""
    return {
        "event_id": event_id,
        "event_type": kind,
        "patient_token": token,
        "facility_id": "H",
        "unit_id": unit,
        "bed_id": None,
        "encounter_token": None,
        "event_time": pd.Timestamp(round(at_h * 3_600_000), unit="ms", tz="UTC"),
    }


def test_the_backtest_reads_its_stays_as_the_hourly_forecast_reads_the_census() -> None:
    """The backtest's ADT events through the census's reference: an admission cancelled (A11)
    is no stay and a trauma alias merged into the patient's record (A40) is one stay, as in the
    census_events the hourly forecast reads; a refused event changes nothing."""
    t = 500_000.0
    events = [
        _adt("a1", "admit", "P1", "ED", t),
        _adt("a2", "cancel_admit", "P1", None, t + 0.5),
        _adt("b1", "admit", "ALIAS", "ED", t + 1),
        _adt("b2", "transfer", "ALIAS", "ICU", t + 3),
        _adt("m1:away", "merged_away", "ALIAS", "ICU", t + 5),
        _adt("m1:in", "merged_in", "P2", "ICU", t + 5),
        _adt("c1", "transfer", "P3", "ICU", t + 6),  # not admitted: refused
    ]
    stays = census_stays.stays_from_events(events)
    got = sorted(zip(stays.patient_token, stays.unit_id, stays.start_h - t, strict=True))
    assert got == [("P2", "ED", 1.0), ("P2", "ICU", 3.0)]
    rows = census_stays.census_rows(events)
    assert list(rows.outcome) == ["applied"] * 6 + ["not_admitted"]
    assert census_stays.stays_from_census(rows)[0].equals(stays)


def test_a_file_backtest_counts_each_facilitys_arrivals_on_the_clock_its_capacity_file_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A New York facility admits a patient at 08:15 local every day for a three-hour stay,
    across the change to daylight saving time (2026-03-08). Forecast on its own clock, the
    backtest's unit MAE is lower than on UTC's (which expects the patient an hour late for
    weeks after the change); `evaluate --file` takes the clock from the capacity file."""
    days = pd.date_range("2026-02-01", "2026-04-05", freq="D")
    events = []
    for i, d in enumerate(days):
        at = _local_h(d, 8, 15)
        events += [
            _adt(f"a{i}", "admit", f"P{i}", "W4", at),
            _adt(f"d{i}", "discharge", f"P{i}", None, at + 3),
        ]
    path = tmp_path / "adt.parquet"
    pd.DataFrame(events).to_parquet(path)
    local = catalog.file_backtest(path, 6, {"H": NEW_YORK})
    utc = catalog.file_backtest(path, 6)
    assert local.unit["forecasts"] == utc.unit["forecasts"] > 100
    assert np.mean(local.unit["mae_model"]) < 0.9 * np.mean(utc.unit["mae_model"])
    capacity = tmp_path / "capacity.json"
    capacity.write_text(json.dumps({"facilities": {"H": {"W4": 4}}, "time_zones": {"H": NEW_YORK}}))
    last = {}
    for name, argv in (("local", ["--capacity-file", str(capacity)]), ("utc", [])):
        catalog.main(["evaluate", "--file", str(path), *argv])
        last[name] = capsys.readouterr().out.strip().splitlines()[-1]
    assert last["local"] == f"MAE_beds {local.unit['mae_model'][-1]:.3f} " + (
        f"seasonal_naive_MAE_beds {local.unit['mae_seasonal_naive'][-1]:.3f}"
    )
    assert last["utc"].startswith(f"MAE_beds {utc.unit['mae_model'][-1]:.3f} ")


def test_an_admission_entered_after_the_fact_starts_its_stay_when_it_was_entered() -> None:
    """The census applies an event at its record time (codec.record_time), and its
    census_events row carries that time: so do the backtest's rows."""
    t = 500_000.0
    late = _adt("a1", "admit", "P1", "ED", t) | {
        "recorded_time": pd.Timestamp(round((t + 3) * 3_600_000), unit="ms", tz="UTC")
    }
    [start] = census_stays.stays_from_events([late]).start_h
    assert start == t + 3


def test_an_origin_without_an_offset_is_utc_whatever_the_hosts_zone() -> None:
    naive, named = sink.utc_origin("2026-02-03T10:00"), sink.utc_origin("2026-02-03T10:00-05:00")
    assert naive.timestamp() == datetime(2026, 2, 3, 10, tzinfo=UTC).timestamp()
    assert named.timestamp() == datetime(2026, 2, 3, 15, tzinfo=UTC).timestamp()
