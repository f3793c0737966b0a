"""The dashboards: generated JSON is current, and every panel's SQL, with macros and variables
expanded as Grafana and the ClickHouse plugin do, runs on a realistic warehouse (grafana.seed in
embedded ClickHouse) and returns what the panel reads; some panels are checked against pandas."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from grafana import build, run, seed
from grafana.macros import TimeRange, expand_macros, interpolate
from grafana.specs import (
    COMMAND_CENTRE,
    DASHBOARDS,
    EXECUTIVE,
    ML_OPS,
    NURSE_BOARD,
    Dashboard,
    Panel,
)
from schemas.settings import Settings

PANELS = [(d, p) for d in DASHBOARDS for p in d.panels]


@dataclasses.dataclass
class Seeded:
    client: Any
    db: str
    wh: seed.Warehouse
    now: datetime
    unit: str  # the unit with the most open alerts at `now`, for the nurse board


def _open_alerts(ev: pd.DataFrame, now: datetime) -> pd.DataFrame:
    ev = ev[ev.event_time <= pd.Timestamp(now)]
    last = ev.sort_values("sequence").groupby("alert_id").tail(1)
    return last[last.action != "resolve"]


def _board_units(alerts: pd.DataFrame, census: pd.DataFrame) -> pd.Series[Any]:
    """The unit each alert is shown on by the nurse board: where the census has its patient now
    (the latest applied census event, in the order loaded), if in a unit of the alert's
    facility; else the unit of its latest step."""
    applied = census[census.outcome == "applied"].sort_values("event_time", kind="stable")
    last = applied.groupby("patient_token").tail(1).set_index("patient_token")
    facility = alerts.patient_token.map(last.facility_id)
    unit = alerts.patient_token.map(last.unit_id)
    return unit.where((facility == alerts.facility_id) & unit.notna(), alerts.unit_id)


@pytest.fixture(scope="module")
def seeded(clickhouse: Any, settings: Settings) -> Seeded:
    db = settings.clickhouse_database + "_dash"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    wh = seed.build(seed.SeedPlan(facilities=2, days=10), seed.physionet(settings))
    seed.load(clickhouse, db, wh)
    now = run.latest_time(clickhouse, db)
    open_now = _open_alerts(wh.tables["alert_events"], now)
    board = _board_units(open_now, wh.tables["census_events"])
    unit = board[open_now.facility_id == "F01"].value_counts().index[0]
    return Seeded(clickhouse, db, wh, now, str(unit))


def _run(s: Seeded, d: Dashboard, p: Panel) -> run.Result:
    tr = run.default_range(d, s.now)
    prefer = {"unit": s.unit} if d is NURSE_BOARD else None
    return run.run_panel(s.client, p, tr, run.resolve_variables(s.client, d, s.db, tr, prefer))


def test_committed_dashboards_and_provisioning_are_what_the_code_generates() -> None:
    assert build.main(["--check"]) == 0


def test_panel_ids_are_unique_within_each_dashboard_and_uids_across_them() -> None:
    assert len({d.uid for d in DASHBOARDS}) == len(DASHBOARDS)
    for d in DASHBOARDS:
        ids = [p["id"] for p in build.dashboard(d)["panels"]]
        assert len(set(ids)) == len(ids) == len(d.panels)
        assert [p.key for p in d.panels] == [p.key for p in d.panels if p.key.isidentifier()]


def test_every_query_targets_the_clickhouse_plugin_in_sql_mode() -> None:
    for d in DASHBOARDS:
        for p in build.dashboard(d)["panels"]:
            (t,) = p["targets"]
            assert t["datasource"]["type"] == "grafana-clickhouse-datasource"
            assert t["editorType"] == "sql"
            assert t["format"] == (0 if p["type"] == "timeseries" else 1)


def test_macros_expand_as_the_clickhouse_plugin_does() -> None:
    tr = TimeRange(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 6, tzinfo=UTC))
    sql = "$__timeInterval(t) WHERE $__timeFilter(t) AND x > $__fromTime AND y < $__toTime_ms"
    assert expand_macros(sql, tr, 60) == (
        "toStartOfInterval(toDateTime(t), INTERVAL 60 second) WHERE "
        "t >= toDateTime(1767571200) AND t <= toDateTime(1767657600) AND "
        "x > toDateTime(1767571200) AND y < fromUnixTimestamp64Milli(1767657600000)"
    )


def test_variables_interpolate_with_grafana_formats_and_unknown_ones_are_refused() -> None:
    sql = "a IN (${f:singlequote}) AND b = '$u' AND c = ${db}.t AND $__fromTime"
    got = interpolate(sql, {"f": ["F01", "O'Neil"], "u": "ICU", "db": "wf"})
    assert got == "a IN ('F01','O\\'Neil') AND b = 'ICU' AND c = wf.t AND $__fromTime"
    with pytest.raises(KeyError, match="unit"):
        interpolate("x = '${unit}'", {})


@pytest.mark.parametrize(("d", "p"), PANELS, ids=[f"{d.uid}/{p.key}" for d, p in PANELS])
def test_every_panel_runs_on_a_seeded_warehouse_and_returns_its_columns(
    seeded: Seeded, d: Dashboard, p: Panel
) -> None:
    r = _run(seeded, d, p)
    assert set(p.columns) <= set(r.columns), f"missing {set(p.columns) - set(r.columns)}"
    assert r.rows, "no rows on a realistic warehouse"
    if p.kind == "timeseries":
        assert r.columns[0] == "time"


def test_open_alerts_panels_agree_with_the_alert_events(seeded: Seeded) -> None:
    want = _open_alerts(seeded.wh.tables["alert_events"], seeded.now)
    board = _board_units(want, seeded.wh.tables["census_events"])
    want = want[(want.facility_id == "F01") & (board == seeded.unit)]
    count = _run(seeded, NURSE_BOARD, NURSE_BOARD.panels[0])
    table = _run(seeded, NURSE_BOARD, next(p for p in NURSE_BOARD.panels if p.key == "open_alerts"))
    assert count.rows == [(len(want),)] and len(want) > 0
    assert sorted(r[1] for r in table.rows) == sorted(t[:8] for t in want.patient_token)


def test_facility_census_panel_shows_each_facilitys_last_census_row(seeded: Seeded) -> None:
    unit = seeded.wh.tables["census_unit"]
    last = unit[unit.scope == "facility"].sort_values("window_end").groupby("facility_id").tail(1)
    panel = next(p for p in COMMAND_CENTRE.panels if p.key == "facility_census")
    got = {r[0]: r[1] for r in _run(seeded, COMMAND_CENTRE, panel).rows}
    assert got == dict(zip(last.facility_id, last.occupied_beds, strict=True))


def test_minute_rollups_kept_by_materialized_views_equal_the_facts(seeded: Seeded) -> None:
    q = seeded.client.query
    db = seeded.db
    assert (
        q(f"SELECT sum(readings), sum(news2_ge5) FROM {db}.vitals_minute").result_rows
        == q(f"SELECT count(), countIf(news2_score >= 5) FROM {db}.sepsis_screen FINAL").result_rows
    )
    assert (
        q(
            f"SELECT round(avgMerge(news2_avg), 6) FROM {db}.vitals_minute WHERE unit_id = 'ICU'"
        ).result_rows
        == q(
            f"SELECT round(avg(news2_score), 6) FROM {db}.sepsis_screen WHERE unit_id = 'ICU'"
        ).result_rows
    )
    assert (
        q(f"SELECT sum(scored), sum(above_threshold) FROM {db}.score_minute").result_rows
        == q(f"SELECT count(), countIf(above_threshold) FROM {db}.model_scores FINAL").result_rows
    )
    assert (
        q(f"SELECT action, sum(events) FROM {db}.alert_minute GROUP BY 1 ORDER BY 1").result_rows
        == q(
            f"SELECT action, count() FROM {db}.alert_events FINAL GROUP BY 1 ORDER BY 1"
        ).result_rows
    )
    assert q(f"SELECT sum(records) FROM {db}.dead_letter_minute").result_rows == [
        (len(seeded.wh.tables["dead_letters"]),)
    ]


def test_bed_and_patient_dimensions_are_kept_from_the_adt_events(seeded: Seeded) -> None:
    adt = seeded.wh.tables["adt_events"]
    placed = adt.dropna(subset=["unit_id", "bed_id"])
    beds = placed[["facility_id", "unit_id", "bed_id"]].drop_duplicates()
    q = seeded.client.query
    assert q(f"SELECT count() FROM {seeded.db}.dim_bed FINAL").result_rows == [(len(beds),)]
    assert q(
        f"SELECT count(), sum(e) FROM (SELECT patient_token, uniqMerge(encounters) AS e "
        f"FROM {seeded.db}.dim_patient GROUP BY patient_token)"
    ).result_rows == [(adt.patient_token.nunique(), adt.encounter_token.nunique())]


def test_seeded_readmissions_reuse_tokens_of_patients_already_discharged(seeded: Seeded) -> None:
    adt = seeded.wh.tables["adt_events"]
    spans = adt.groupby(["patient_token", "encounter_token"]).event_time.agg(["min", "max"])
    spans = spans.reset_index().sort_values(["patient_token", "min"])
    again = spans[spans.patient_token.duplicated(keep=False)]
    assert again.patient_token.nunique() > 10
    gaps = again.groupby("patient_token")[["min", "max"]].apply(
        lambda g: (g["min"].iloc[1:].to_numpy() - g["max"].iloc[:-1].to_numpy()).min()
    )
    assert (gaps >= pd.Timedelta(days=1)).all()


def _warehouse(clickhouse: Any, db: str, units: tuple[str, ...] = ("4E",)) -> str:
    """A fresh, migrated warehouse `db` of one facility, F (its `units`, ED typed 'ed'), and
    nothing else."""
    from schemas.capacity import Capacity
    from sinks import clickhouse as ch
    from sinks import dims

    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    capacity = Capacity.from_dict({"facilities": {"F": dict.fromkeys(units, 10)}})
    dims.load_capacity(clickhouse, db, capacity)
    return db


def _quality_row(event: dict[str, Any]) -> dict[str, Any]:
    """A quality.event.v1 event as its ClickHouse row: its `…_ms` times as DateTime64."""
    r = {k: v for k, v in event.items() if not k.endswith("_ms")}
    for k in ("event_time", "window_start", "window_end"):
        r[k] = datetime.fromtimestamp(event[k + "_ms"] / 1000, UTC)
    return r


def _insert(clickhouse: Any, db: str, table: str, rows: list[dict[str, Any]]) -> None:
    """Rows as the loader writes them (each at an offset of its own); absent columns default."""
    columns = list(dict.fromkeys(c for r in rows for c in r))
    clickhouse.insert(
        f"{db}.{table}",
        [[r.get(c) for c in columns] + [0, i, table] for i, r in enumerate(rows)],
        column_names=[*columns, "kafka_partition", "kafka_offset", "kafka_topic"],
    )


def _panel_rows(
    clickhouse: Any, d: Dashboard, key: str, db: str, tr: TimeRange, **chosen: str
) -> list[tuple[Any, ...]]:
    panel = next(p for p in d.panels if p.key == key)
    variables = run.resolve_variables(clickhouse, d, db, tr, chosen or None)
    return run.run_panel(clickhouse, panel, tr, variables).rows


def test_staffed_beds_free_counts_no_units_overflow_as_another_units_free_beds(
    clickhouse: Any, settings: Settings
) -> None:
    """F ICU holds 12 patients in 10 beds, F 4E 8 in 10, F ORTH none in 20 (no census row ever:
    quiet all along): 22 beds free (2 in 4E, 20 in ORTH) and 2 patients over capacity, where
    summing each facility's beds less its patients said 20."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_free")
    t = datetime(2026, 3, 1, 8, tzinfo=UTC)
    rows = [
        ["F", "ICU", "unit", t, t, 12, 10],
        ["F", "4E", "unit", t, t, 8, 10],
        ["F", "*", "facility", t, t, 20, 40],
    ]
    columns = ["facility_id", "unit_id", "scope", "window_start", "window_end"]
    columns += ["occupied_beds", "capacity_beds"]
    clickhouse.insert(f"{db}.census_unit", rows, column_names=columns)
    tr = TimeRange(t - timedelta(hours=1), t + timedelta(hours=1))
    got = _panel_rows(clickhouse, COMMAND_CENTRE, "beds_free", db, tr, facility="F")
    assert got == [(22, 2, 20)]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_ml_ops_board_opens_on_the_sepsis_models_with_the_catalogs_in_its_list(
    clickhouse: Any, settings: Settings
) -> None:
    """With the catalog's models in dim_model_version, the first option in order was
    icu-mortality, and the board's scores, histograms and latency (the sepsis models') opened
    empty."""
    from grafana.specs import MODEL

    db = _warehouse(clickhouse, settings.clickhouse_database + "_mlops")
    columns = ["model_name", "model_version", "role", "registered_at", "role_since"]
    at = datetime(2026, 3, 1, tzinfo=UTC)
    rows = [[m, "1", "champion", at, at] for m in ("icu-mortality", "sepsis-risk", "alpha")]
    clickhouse.insert(f"{db}.dim_model_version", rows, column_names=columns)
    tr = TimeRange(at, at + timedelta(hours=1))
    assert run.resolve_variables(clickhouse, ML_OPS, db, tr)["model"] == "sepsis-risk"
    [variable] = [
        v for v in build.dashboard(ML_OPS)["templating"]["list"] if v["name"] == MODEL.name
    ]
    assert variable["current"]["value"] == "sepsis-risk"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_readmissions_panel_counts_no_admission_cancelled_or_voided(
    clickhouse: Any, settings: Settings
) -> None:
    """Six patients discharged, each admitted again within 30 days: an admission that stands,
    one cancelled (A11 of its visit), one voided (a FHIR Encounter entered-in-error), one
    cancelled and sent again (it stands), and two patients' visits without a visit number
    (each its own discharge and admission; an A11 without one names no admission). A seventh
    stay, voided after its discharge, is none."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_readm")
    t = datetime(2026, 3, 1, tzinfo=UTC)
    day = pd.Timedelta(days=1).to_pytimedelta()
    events = [
        ("p1", "e1", "discharge", t),
        ("p1", "e2", "admit", t + 2 * day),
        ("p2", "e3", "discharge", t),
        ("p2", "e4", "admit", t + 3 * day),
        ("p2", "e4", "cancel_admit", t + 3 * day + day / 24),
        ("p3", "e5", "discharge", t),
        ("p3", "e6", "admit", t + 4 * day),
        ("p3", "e6", "void_encounter", t + 5 * day),
        ("p4", "e7", "discharge", t),
        ("p4", "e8", "admit", t + 2 * day),
        ("p4", "e8", "cancel_admit", t + 2 * day + day / 24),
        ("p4", "e8", "admit", t + 2 * day + day / 12),
        ("p5", None, "discharge", t),
        ("p5", None, "admit", t + 6 * day),
        ("p5", None, "cancel_admit", t + 6 * day + day / 24),
        ("p6", None, "discharge", t),
        # a stay taken back after its discharge (an Encounter entered-in-error) was no stay:
        # neither a discharge nor followed by a readmission
        ("p7", "e9", "admit", t - 3 * day),
        ("p7", "e9", "discharge", t),
        ("p7", "e9", "void_encounter", t + day),
        ("p7", "e10", "admit", t + 5 * day),
        # admitted again to ED and still there (boarding): a readmission
        ("p8", "e11", "discharge", t),
        ("p8", "e12", "admit", t + 5 * day),
    ]
    rows = [
        [f"x{i}", kind, "test", patient, visit, "F", "ED" if visit == "e12" else "4E", at,
         "test", 0, i, "adt"]
        for i, (patient, visit, kind, at) in enumerate(events)
    ]  # fmt: skip
    columns = ["event_id", "event_type", "source_message_type", "patient_token"]
    columns += ["encounter_token", "facility_id", "unit_id", "event_time", "source"]
    clickhouse.insert(
        f"{db}.adt_events",
        rows,
        column_names=[*columns, "kafka_partition", "kafka_offset", "kafka_topic"],
    )
    [panel] = [p for p in EXECUTIVE.panels if p.key == "readmissions"]
    tr = TimeRange(t - day, t + 10 * day)
    got = run.run_panel(clickhouse, panel, tr, run.resolve_variables(clickhouse, EXECUTIVE, db, tr))
    assert got.rows[0][:2] == (7, 4)
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_beds_held_without_an_event_are_the_patients_placed_and_silent_for_three_days(
    clickhouse: Any, settings: Settings
) -> None:
    """On a warehouse of its own: of six patients, the one admitted five days ago and the one
    moved four days ago hold beds without an event since; the one discharged, the one moved
    yesterday, the alias merged away and the stay voided do not."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_held")
    now = datetime(2026, 3, 11, tzinfo=UTC)
    day = pd.Timedelta(days=1).to_pytimedelta()
    events = [
        ("admitted", "admit", "ICU", 5),
        ("moved", "admit", "4E", 9),
        ("moved", "transfer", "ICU", 4),
        ("gone", "admit", "4E", 10),
        ("gone", "discharge", None, 9),
        ("recent", "admit", "4E", 8),
        ("recent", "transfer", "ICU", 1),
        ("alias", "admit", "ICU", 7),
        ("alias", "merged_away", None, 6),
        ("voided", "admit", "4E", 6),
        ("voided", "void_encounter", None, 6),
    ]
    rows = [
        [f"x{i}", kind, patient, "F", unit, now - ago * day, "applied", 0, i]
        for i, (patient, kind, unit, ago) in enumerate(events)
    ]
    columns = ["event_id", "event_type", "patient_token", "facility_id", "unit_id"]
    columns += ["event_time", "outcome", "kafka_partition", "kafka_offset"]
    clickhouse.insert(f"{db}.census_events", rows, column_names=columns)
    panel = next(p for p in COMMAND_CENTRE.panels if p.key == "held_without_event")
    tr = TimeRange(now - 7 * day, now)
    got = run.run_panel(
        clickhouse, panel, tr, run.resolve_variables(clickhouse, COMMAND_CENTRE, db, tr)
    )
    assert [(r[1], r[2], r[4]) for r in got.rows] == [
        ("ICU", "admitted", 5.0),
        ("ICU", "moved", 4.0),
    ]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


_HOUR = pd.Timedelta(hours=1).to_pytimedelta()
_DAY = pd.Timedelta(days=1).to_pytimedelta()


def _census(patient: str, *steps: tuple[str, str | None, datetime]) -> list[dict[str, Any]]:
    """A patient's applied census events: (kind, the unit after it or None, when)."""
    return [
        {
            "event_id": f"{patient}:{i}",
            "event_type": kind,
            "patient_token": patient,
            "facility_id": "F",
            "unit_id": unit,
            "event_time": at,
            "outcome": "applied",
        }
        for i, (kind, unit, at) in enumerate(steps)
    ]


def _alerts_of_moved_patients(clickhouse: Any, db: str, t: datetime) -> None:
    """Six open-or-closed alerts on a warehouse of units ED, ICU and 4E, the census as of t + 3 h:
    `moved` raised in ED (acknowledged there) and `unacked` raised in ED, both patients moved to
    ICU since; `stays` raised in ICU, still there; `unknown` raised in ED, a patient the census
    has no row of; `left` raised in ED, its patient discharged, the alert not yet resolved;
    `closed` raised in 4E and resolved."""
    steps = [  # (alert, step, action, patient, unit of the step, when)
        ("a1", 1, "raise", "moved", "ED", t),
        ("a2", 1, "raise", "unacked", "ED", t + _HOUR / 2),
        ("a3", 1, "raise", "stays", "ICU", t),
        ("a4", 1, "raise", "unknown", "ED", t + _HOUR),
        ("a5", 1, "raise", "left", "ED", t),
        ("a6", 1, "raise", "closed", "4E", t),
        ("a6", 2, "resolve", "closed", "4E", t + 2 * _HOUR),
    ]
    _insert(
        clickhouse,
        db,
        "alert_events",
        [
            {
                "alert_event_id": f"{alert}:{seq}",
                "alert_id": alert,
                "action": action,
                "sequence": seq,
                "rule_id": "news2_sustained_medium",
                "rule_version": "2",
                "severity": "medium",
                "patient_token": patient,
                "facility_id": "F",
                "unit_id": unit,
                "opened_time": next(s[5] for s in steps if s[0] == alert),
                "event_time": at,
                "hit_count": 1,
                "score_name": "news2_score",
                "score_value": 6,
            }
            for alert, seq, action, patient, unit, at in steps
        ],
    )
    ack = {"response_id": "r1", "alert_id": "a1", "action": "acknowledge", "actor_role": "nurse"}
    ack |= {"patient_token": "moved", "facility_id": "F", "unit_id": "ED"}
    _insert(clickhouse, db, "alert_responses", [ack | {"event_time": t + _HOUR / 12}])
    census = _census("moved", ("admit", "ED", t - 2 * _HOUR), ("transfer", "ICU", t + _HOUR))
    census += _census("unacked", ("admit", "ED", t - 2 * _HOUR), ("transfer", "ICU", t + _HOUR))
    census += _census("stays", ("admit", "ICU", t - 5 * _HOUR))
    census += _census("left", ("admit", "ED", t - 2 * _HOUR), ("discharge", None, t + _HOUR))
    census += _census("closed", ("admit", "4E", t - 5 * _HOUR))
    _insert(clickhouse, db, "census_events", census)


def test_an_open_alert_is_on_the_board_of_the_unit_the_census_has_its_patient_in_now(
    clickhouse: Any, settings: Settings
) -> None:
    """Alerts raised in ED whose patients moved to ICU are ICU's open alerts, not ED's; one
    whose patient the census does not know, or has discharged, stays on the unit it was raised
    on; a resolved one is on no board."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_moved", ("ED", "ICU", "4E"))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    _alerts_of_moved_patients(clickhouse, db, t)
    tr = TimeRange(t + 3 * _HOUR - _DAY, t + 3 * _HOUR)
    for unit, patients in {"ICU": ["moved", "stays", "unacked"], "ED": ["left", "unknown"]}.items():
        count = _panel_rows(clickhouse, NURSE_BOARD, "open_alerts_count", db, tr, unit=unit)
        table = _panel_rows(clickhouse, NURSE_BOARD, "open_alerts", db, tr, unit=unit)
        assert count == [(len(patients),)], unit
        assert sorted(r[1] for r in table) == patients, unit
    assert _panel_rows(clickhouse, NURSE_BOARD, "open_alerts_count", db, tr, unit="4E") == [(0,)]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_a_past_range_shows_each_open_alert_where_its_patient_was_at_its_end(
    clickhouse: Any, settings: Settings
) -> None:
    """The same alerts seen at t + 45 min, before the moves at t + 1 h: `moved` and `unacked`
    are still ED's, `left` (discharged only at t + 1 h) too, `closed` is still open on 4E and
    `unknown` not yet raised; the census's later moves do not rewrite the past."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_past", ("ED", "ICU", "4E"))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    _alerts_of_moved_patients(clickhouse, db, t)
    tr = TimeRange(t + _HOUR * 3 / 4 - _DAY, t + _HOUR * 3 / 4)
    for unit, patients in {
        "ED": ["left", "moved", "unacked"], "ICU": ["stays"], "4E": ["closed"]
    }.items():  # fmt: skip
        table = _panel_rows(clickhouse, NURSE_BOARD, "open_alerts", db, tr, unit=unit)
        assert sorted(r[1] for r in table) == patients, unit
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_an_acknowledgement_given_before_the_patient_moved_counts_on_the_unit_they_moved_to(
    clickhouse: Any, settings: Settings
) -> None:
    """The alert acknowledged in ED five minutes after it was raised, its patient since moved to
    ICU, is acknowledged on ICU's board: not one of the open alerts not acknowledged, and listed
    with its acknowledgement."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_acked", ("ED", "ICU", "4E"))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    _alerts_of_moved_patients(clickhouse, db, t)
    tr = TimeRange(t + 3 * _HOUR - _DAY, t + 3 * _HOUR)
    unacked = _panel_rows(clickhouse, NURSE_BOARD, "unacknowledged_count", db, tr, unit="ICU")
    table = _panel_rows(clickhouse, NURSE_BOARD, "open_alerts", db, tr, unit="ICU")
    assert unacked == [(2,)]
    acknowledged = {r[1]: r[8] for r in table}
    assert acknowledged["moved"] is not None
    assert pd.Timestamp(acknowledged["moved"]).tz_localize(None) == pd.Timestamp(
        t + _HOUR / 12
    ).tz_localize(None)
    assert acknowledged["stays"] is None and acknowledged["unacked"] is None
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_a_patients_latest_vitals_count_on_the_unit_the_census_has_them_in_now(
    clickhouse: Any, settings: Settings
) -> None:
    """Each patient's latest reading in the facility, on the unit where the census has them now:
    `moved` (NEWS2 7 on 4E, then 2 on ICU) is ICU's with 2; `charted` (moved to ICU, its latest
    reading charted under 4E) is ICU's with 6; `gone`, discharged from 4E, is on no unit;
    `unknown` to the census is on 4E, where its reading was; `stays` is on 4E."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_vitals", ("ED", "ICU", "4E"))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    readings = [  # (patient, unit, when, NEWS2)
        ("moved", "4E", t, 7),
        ("moved", "ICU", t + 2 * _HOUR, 2),
        ("charted", "4E", t + 1.5 * _HOUR, 6),
        ("gone", "4E", t - _HOUR, 6),
        ("unknown", "4E", t, 5),
        ("stays", "4E", t + 2 * _HOUR, 3),
    ]
    _insert(
        clickhouse,
        db,
        "sepsis_screen",
        [
            {
                "record_id": f"v{i}",
                "record_kind": "vitals",
                "patient_token": patient,
                "facility_id": "F",
                "unit_id": unit,
                "event_time": at,
                "news2_score": news2,
                "heart_rate_bpm": 100.0,
                "source_topic": "vitals",
            }
            for i, (patient, unit, at, news2) in enumerate(readings)
        ],
    )
    census = _census("moved", ("admit", "4E", t - 5 * _HOUR), ("transfer", "ICU", t + _HOUR))
    census += _census("charted", ("admit", "4E", t - 5 * _HOUR), ("transfer", "ICU", t + _HOUR))
    census += _census("gone", ("admit", "4E", t - 5 * _HOUR), ("discharge", None, t))
    census += _census("stays", ("admit", "4E", t - 5 * _HOUR))
    _insert(clickhouse, db, "census_events", census)
    tr = TimeRange(t + 3 * _HOUR - _DAY, t + 3 * _HOUR)
    for unit, want in {
        "4E": [("unknown", 5), ("stays", 3)],
        "ICU": [("charted", 6), ("moved", 2)],
    }.items():
        high = _panel_rows(clickhouse, NURSE_BOARD, "news2_high_patients", db, tr, unit=unit)
        latest = _panel_rows(clickhouse, NURSE_BOARD, "latest_vitals", db, tr, unit=unit)
        assert high == [(1,)], unit
        assert [(r[0], r[2]) for r in latest] == want, unit
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_a_cancelled_discharge_and_a_visit_to_ed_only_are_no_stay_and_no_readmission(
    clickhouse: Any, settings: Settings
) -> None:
    """Of five patients' visits: `ed`'s two ED-only visits (treat and release) 5 days apart are
    neither discharges nor a readmission; `cancelled`'s discharge taken back (A13) ends no stay;
    `readmitted` is admitted again 6 days after a 2-day stay; `back` comes back to ED only 2 days
    after a 2-day stay (no readmission); `twice`'s discharge, cancelled and given again 2 h
    later, ends a 3-day stay once. Three discharges, one readmitted; three stays of 2, 2 and 3
    days."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_stays", ("ED", "4E"))
    t = datetime(2026, 3, 1, 12, tzinfo=UTC)
    events = [  # (patient, visit, kind, unit, when)
        ("ed", "v1", "admit", "ED", t - 6 * _HOUR),
        ("ed", "v1", "discharge", None, t),
        ("ed", "v2", "admit", "ED", t + 5 * _DAY),
        ("ed", "v2", "discharge", None, t + 5 * _DAY + 4 * _HOUR),
        ("cancelled", "v3", "admit", "ED", t - 3 * _DAY),
        ("cancelled", "v3", "transfer", "4E", t - 3 * _DAY + 4 * _HOUR),
        ("cancelled", "v3", "discharge", None, t),
        ("cancelled", "v3", "cancel_discharge", None, t + _HOUR / 2),
        ("readmitted", "v4", "admit", "ED", t - 2 * _DAY),
        ("readmitted", "v4", "transfer", "4E", t - 2 * _DAY + 4 * _HOUR),
        ("readmitted", "v4", "discharge", None, t),
        ("readmitted", "v5", "admit", "ED", t + 6 * _DAY),
        ("readmitted", "v5", "transfer", "4E", t + 6 * _DAY + 3 * _HOUR),
        ("back", "v6", "admit", "ED", t - _DAY),
        ("back", "v6", "transfer", "4E", t - _DAY + 4 * _HOUR),
        ("back", "v6", "discharge", None, t + _DAY),
        ("back", "v7", "admit", "ED", t + 3 * _DAY),
        ("back", "v7", "discharge", None, t + 3 * _DAY + 2 * _HOUR),
        ("twice", "v8", "admit", "ED", t - 3 * _DAY + 2 * _HOUR),
        ("twice", "v8", "transfer", "4E", t - 3 * _DAY + 6 * _HOUR),
        ("twice", "v8", "discharge", None, t),
        ("twice", "v8", "cancel_discharge", None, t + _HOUR / 2),
        ("twice", "v8", "discharge", None, t + 2 * _HOUR),
    ]
    _insert(
        clickhouse,
        db,
        "adt_events",
        [
            {
                "event_id": f"x{i}",
                "event_type": kind,
                "source_message_type": "test",
                "patient_token": patient,
                "encounter_token": visit,
                "facility_id": "F",
                "unit_id": unit,
                "event_time": at,
                "source": "test",
            }
            for i, (patient, visit, kind, unit, at) in enumerate(events)
        ],
    )
    tr = TimeRange(t - _DAY, t + 8 * _DAY)
    readmissions = _panel_rows(clickhouse, EXECUTIVE, "readmissions", db, tr)
    stays = _panel_rows(clickhouse, EXECUTIVE, "length_of_stay", db, tr)
    assert readmissions == [(3, 1, 33.3)]
    assert [r[:4] for r in stays] == [("F", 3, 2.0, 2.33)]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_arrivals_and_discharges_are_per_hour_whatever_the_range(
    clickhouse: Any, settings: Settings
) -> None:
    """Two hours' flows on a 30-day range, which Grafana draws at a 2 h interval: still a point
    per hour."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_flows")
    t = datetime(2026, 3, 2, 10, tzinfo=UTC)
    flows = [
        {
            "facility_id": "F",
            "unit_id": "ALL",
            "scope": "facility",
            "window_start": t + h * _HOUR,
            "window_end": t + (h + 1) * _HOUR,
            "arrivals": arrivals,
            "discharges": 1,
        }
        for h, arrivals in enumerate([2, 3])
    ]
    _insert(clickhouse, db, "census_flow", flows)
    tr = TimeRange(t + 2 * _HOUR - 30 * _DAY, t + 2 * _HOUR)
    got = _panel_rows(clickhouse, COMMAND_CENTRE, "flows", db, tr)
    assert [(pd.Timestamp(r[0]).tz_localize(None), r[1], r[2]) for r in got] == [
        (pd.Timestamp(t).tz_localize(None), 2, 1),
        (pd.Timestamp(t + _HOUR).tz_localize(None), 3, 1),
    ]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_latest_vitals_show_a_value_expired_by_the_latest_reading_as_missing(
    clickhouse: Any, settings: Settings
) -> None:
    """At 08:00 HR 130 and SBP 85; at 12:00 only a temperature, HR and SBP expired (NULL in
    that state): the row is the 12:00 reading's, HR and SBP empty, not 08:00's shown as now."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_expired", ("4E",))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    rows = [
        {"record_id": "a", "heart_rate_bpm": 130.0, "sbp_mmhg": 85.0, "news2_score": 5,
         "event_time": t},
        {"record_id": "b", "temp_c": 37.2, "news2_score": 0, "event_time": t + 4 * _HOUR},
    ]  # fmt: skip
    common = {"record_kind": "vitals", "patient_token": "p", "facility_id": "F",
              "unit_id": "4E", "source_topic": "vitals"}  # fmt: skip
    _insert(clickhouse, db, "sepsis_screen", [common | r for r in rows])
    tr = TimeRange(t + 5 * _HOUR - _DAY, t + 5 * _HOUR)
    [row] = _panel_rows(clickhouse, NURSE_BOARD, "latest_vitals", db, tr, unit="4E")
    shown = dict(zip(LATEST_VITALS_COLUMNS, row, strict=True))
    assert shown["news2"] == 0 and shown["temp_c"] == pytest.approx(37.2)
    assert shown["heart_rate_bpm"] is None and shown["sbp_mmhg"] is None
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


LATEST_VITALS_COLUMNS = ("patient", "observed", "news2", "qsofa", "heart_rate_bpm",
    "resp_rate_per_min", "spo2_pct", "temp_c", "sbp_mmhg", "response", "red_score", "gcs",
    "news2_of_7",
)  # fmt: skip


def test_latest_vitals_say_the_response_each_news2_calls_for_and_list_a_red_score_first(
    clickhouse: Any, settings: Settings
) -> None:
    """RCP 2017: NEWS2 ≥ 7 calls for an emergency response, 5-6 an urgent one, a red score (3
    points in one parameter) below 5 an urgent ward-based one, 1-4 a ward-based one. A red 3
    (RR 25 alone) comes before a 4 without one; the GCS is shown where charted."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_response", ("4E",))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    readings = [  # (patient, NEWS2, red score, GCS)
        ("seven", 7, False, None),
        ("five", 5, True, 13),
        ("red3", 3, True, None),
        ("four", 4, False, 15),
        ("one", 1, False, None),
        ("zero", 0, False, None),
    ]
    _insert(
        clickhouse,
        db,
        "sepsis_screen",
        [
            {"record_id": p, "record_kind": "vitals", "patient_token": p, "facility_id": "F",
             "unit_id": "4E", "event_time": t, "news2_score": n, "news2_red_flag": red,
             "gcs_total": gcs, "source_topic": "vitals"}
            for p, n, red, gcs in readings
        ],
    )  # fmt: skip
    tr = TimeRange(t + _HOUR - _DAY, t + _HOUR)
    rows = _panel_rows(clickhouse, NURSE_BOARD, "latest_vitals", db, tr, unit="4E")
    shown = [dict(zip(LATEST_VITALS_COLUMNS, r, strict=True)) for r in rows]
    assert [(r["patient"], r["response"], r["gcs"]) for r in shown] == [
        ("seven", "emergency", None),
        ("five", "urgent", 13),
        ("red3", "urgent ward-based", None),
        ("four", "ward-based", 15),
        ("one", "ward-based", None),
        ("zero", "routine", None),
    ]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_input_drift_is_each_facilitys_latest_window_and_shows_the_worst(
    clickhouse: Any, settings: Settings
) -> None:
    """In one daily window F01 drifted little (PSI 0.02, KS 0.03) and F02 much (PSI 0.41, KS
    0.30, a breach): the row is F02's, not an arbitrary facility's values beside a breach.
    A challenger whose own latest window breached shows the breach, though the champion's
    window came later."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_drift")
    t = datetime(2026, 3, 2, tzinfo=UTC)

    def measured(role: str, facility: str, metric: str, value: float, breach: bool,
                 at: datetime) -> dict[str, Any]:  # fmt: skip
        return {"event_id": f"{role}{facility}{metric}{at:%H}", "event_time": at,
                "model_name": "sepsis-risk", "model_version": "1", "role": role,
                "facility_id": facility, "metric": metric, "feature": "heart_rate_bpm",
                "value": value, "threshold": 0.2, "n": 500, "breach": breach,
                "window_start": at - _DAY, "window_end": at}  # fmt: skip

    _insert(clickhouse, db, "model_monitor", [
        measured("champion", "F01", "psi", 0.02, False, t + _HOUR),
        measured("champion", "F01", "ks", 0.03, False, t + _HOUR),
        measured("champion", "F02", "psi", 0.41, True, t),
        measured("champion", "F02", "ks", 0.30, True, t),
        measured("challenger", "F01", "psi", 0.30, True, t - _HOUR),
        measured("challenger", "F01", "ks", 0.25, True, t - _HOUR),
        # F03 drifted most, five days ago, and has not reported since: not drifting now
        measured("champion", "F03", "psi", 0.90, True, t - 5 * _DAY),
        measured("champion", "F03", "ks", 0.60, True, t - 5 * _DAY),
    ])  # fmt: skip
    clickhouse.insert(f"{db}.dim_model_version", [["sepsis-risk", "1", "champion"]],
                      column_names=["model_name", "model_version", "role"])  # fmt: skip
    tr = TimeRange(t - 7 * _DAY, t + 2 * _HOUR)
    rows = _panel_rows(clickhouse, ML_OPS, "feature_drift", db, tr, model="sepsis-risk")
    by_role = {r[2]: r for r in rows}
    assert by_role["champion"][3:8] == (0.41, 0.3, 0.2, "F02", True)
    assert bool(by_role["challenger"][7])
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_each_bundle_element_is_counted_over_the_alerts_it_was_due_for(
    clickhouse: Any, settings: Settings
) -> None:
    """SSC 2018 hour-1 bundle: alert A (lactate 5, SBP 85) is due fluids and vasopressors,
    alert B (lactate 2.5, SBP 120) neither. A got fluids at 40 min and no vasopressor: fluids
    100 % of the one alert due (not 50 % of both), vasopressors 0 %. A's cultures came at
    45 min, after its antibiotics at 30: not within the hour as the bundle means it; B's came
    before (cultures 50 % within 1 h)."""
    db = _warehouse(clickhouse, settings.clickhouse_database + "_bundle")
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)

    def raised(alert: str, patient: str) -> dict[str, Any]:
        return {"alert_event_id": f"ev-{alert}", "alert_id": alert, "action": "raise",
                "sequence": 1, "rule_id": "qsofa_lactate", "rule_version": "1",
                "severity": "high", "patient_token": patient, "facility_id": "F",
                "unit_id": "4E", "opened_time": t, "event_time": t, "hit_count": 1,
                "score_name": "qsofa", "score_value": 2.0, "evidence_json": "{}"}  # fmt: skip

    # C: no screened values, fluids given anyway: due as given (not a line that vanishes)
    _insert(clickhouse, db, "alert_events", [raised(a, p) for a, p in (("A", "pa"), ("B", "pb"),
                                                                       ("C", "pc"))])  # fmt: skip
    _insert(clickhouse, db, "sepsis_screen", [
        {"record_id": "ra", "record_kind": "lab", "patient_token": "pa", "facility_id": "F",
         "unit_id": "4E", "event_time": t, "lactate_mmol_l": 5.0, "sbp_mmhg": 85.0,
         "source_topic": "labs"},
        {"record_id": "rb", "record_kind": "lab", "patient_token": "pb", "facility_id": "F",
         "unit_id": "4E", "event_time": t, "lactate_mmol_l": 2.5, "sbp_mmhg": 120.0,
         "source_topic": "labs"},
    ])  # fmt: skip
    given = {
        ("A", "pa"): {"lactate_measured": 10, "antibiotic_given": 30, "blood_culture_drawn": 45,
                      "fluid_bolus_started": 40},
        ("B", "pb"): {"lactate_measured": 10, "blood_culture_drawn": 20, "antibiotic_given": 50},
        ("C", "pc"): {"fluid_bolus_started": 20},
    }  # fmt: skip
    _insert(clickhouse, db, "alert_responses", [
        {"response_id": alert + action, "alert_id": alert, "action": action,
         "actor_role": "nurse", "patient_token": patient, "facility_id": "F", "unit_id": "4E",
         "event_time": t + timedelta(minutes=minutes), "source": "ehr"}
        for (alert, patient), actions in given.items() for action, minutes in actions.items()
    ])  # fmt: skip
    tr = TimeRange(t - _DAY, t + _DAY)
    rows = _panel_rows(clickhouse, EXECUTIVE, "bundle", db, tr, facility="F")
    shown = {r[0]: r[1:] for r in rows}  # element: (with it, due, %, median min, within 1 h %)
    assert shown["fluid_bolus_started"][:3] == (2, 2, 100.0)
    assert shown["vasopressor_started"][:3] == (0, 1, 0.0)
    assert shown["antibiotic_given"][:3] == (2, 3, 66.7)
    cultures = shown["blood_culture_drawn"]
    assert cultures[:3] == (2, 3, 66.7) and cultures[4] == 33.3
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_an_alert_whose_hits_went_on_at_another_facility_leaves_the_first_facilitys_board(
    clickhouse: Any, settings: Settings
) -> None:
    """Raised at F's ED and acknowledged there, escalated and resolved at G's ICU (the patient
    the census does not place): taken among F's steps only, the alert stayed open on F's board
    for ever at its old severity, and G's board showed it unacknowledged."""
    from schemas.capacity import Capacity
    from sinks import dims

    db = _warehouse(clickhouse, settings.clickhouse_database + "_fac", ("ED", "ICU"))
    two = {"F": {"ED": 10, "ICU": 10}, "G": {"ED": 10, "ICU": 10}}
    dims.load_capacity(clickhouse, db, Capacity.from_dict({"facilities": two}))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    base = {"alert_id": "x1", "rule_id": "news2_sustained_medium", "rule_version": "2"}
    base |= {"patient_token": "away", "opened_time": t, "score_name": "news2_score"}
    steps = [
        (1, "raise", "medium", "F", "ED", t),
        (2, "escalate", "high", "G", "ICU", t + 2 * _HOUR),
        (3, "resolve", "high", "G", "ICU", t + 8 * _HOUR),
    ]
    _insert(clickhouse, db, "alert_events", [
        base | {"alert_event_id": f"x1:{seq}", "sequence": seq, "action": action,
                "severity": severity, "facility_id": fac, "unit_id": unit, "event_time": at,
                "hit_count": seq, "score_value": 6}
        for seq, action, severity, fac, unit, at in steps
    ])  # fmt: skip
    ack = {"response_id": "r1", "alert_id": "x1", "action": "acknowledge", "actor_role": "nurse"}
    ack |= {"patient_token": "away", "facility_id": "F", "unit_id": "ED"}
    _insert(clickhouse, db, "alert_responses", [ack | {"event_time": t + _HOUR / 6}])

    def board(facility: str, unit: str, at: datetime) -> list[tuple[Any, ...]]:
        tr = TimeRange(at - _DAY, at)
        return _panel_rows(
            clickhouse, NURSE_BOARD, "open_alerts", db, tr, facility=facility, unit=unit
        )

    assert board("F", "ED", t + 3 * _HOUR) == []  # its latest step is G's
    [at_g] = board("G", "ICU", t + 3 * _HOUR)
    assert "high" in at_g and at_g[8] is not None  # acknowledged at F, counted at G
    assert board("F", "ED", t + 24 * _HOUR) == [] and board("G", "ICU", t + 24 * _HOUR) == []
    # raised at F's ED, its patient then placed by the census in G's ICU: G's, not both boards'
    raised = base | {"alert_id": "x2", "alert_event_id": "x2:1", "sequence": 1, "action": "raise"}
    raised |= {"severity": "medium", "facility_id": "F", "unit_id": "ED", "event_time": t}
    raised |= {"hit_count": 1, "score_value": 6, "patient_token": "moved"}
    _insert(clickhouse, db, "alert_events", [raised])
    placed = _census("moved", ("admit", "ICU", t + _HOUR))
    _insert(clickhouse, db, "census_events", [p | {"facility_id": "G"} for p in placed])
    at = t + 3 * _HOUR
    assert sorted(r[1] for r in board("G", "ICU", at)) == ["away", "moved"]
    assert board("F", "ED", at) == []
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_an_alert_acknowledged_at_another_facility_counts_as_acknowledged_on_the_executive_board(
    clickhouse: Any, settings: Settings
) -> None:
    """a1 raised at F's ED and acknowledged 5 minutes later on G's ICU (the patient moved), a2
    raised at F and never acknowledged: with F chosen, half the alerts are acknowledged within
    15 minutes (the acknowledgements were read at F only, and a1 was never acknowledged)."""
    from schemas.capacity import Capacity
    from sinks import clickhouse as ch
    from sinks import dims

    db = settings.clickhouse_database + "_ackfac"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    facilities = {"F": {"ED": 10}, "G": {"ICU": 10}}
    dims.load_capacity(clickhouse, db, Capacity.from_dict({"facilities": facilities}))
    t = datetime(2026, 3, 2, 8, tzinfo=UTC)
    raise_ = {"action": "raise", "sequence": 1, "rule_id": "qsofa_lactate", "rule_version": "2"}
    raise_ |= {"severity": "high", "facility_id": "F", "unit_id": "ED", "hit_count": 1}
    raise_ |= {"score_name": "qsofa_score", "score_value": 2, "opened_time": t, "event_time": t}
    _insert(clickhouse, db, "alert_events", [
        raise_ | {"alert_event_id": f"{a}:1", "alert_id": a, "patient_token": f"p-{a}"}
        for a in ("a1", "a2")
    ])  # fmt: skip
    ack = {"response_id": "r1", "alert_id": "a1", "action": "acknowledge", "actor_role": "nurse"}
    ack |= {"patient_token": "p-a1", "facility_id": "G", "unit_id": "ICU"}
    _insert(clickhouse, db, "alert_responses", [ack | {"event_time": t + _HOUR / 12}])
    tr = TimeRange(t - _HOUR, t + _HOUR)
    got = _panel_rows(clickhouse, EXECUTIVE, "ack_minutes", db, tr, facility="F")
    assert got == [(5.0, 5.0, 50.0, 50.0)]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_every_stat_and_bar_gauge_sets_its_colours_and_a_bar_gauge_draws_a_bar_per_row() -> None:
    """Grafana's default steps (green, red from 80) turned 80 free beds red and 80 % occupancy
    red below the first surge level (85 %); a bar gauge without `values` reduced each column to
    its last row, one facility's, shown as three bars."""
    from schemas.capacity import DEFAULT_THRESHOLDS_PCT

    for d in DASHBOARDS:
        built = build.dashboard(d)
        for panel in built["panels"]:
            if panel.get("type") not in ("stat", "bargauge"):
                continue
            steps = panel["fieldConfig"]["defaults"]["thresholds"]["steps"]
            assert steps[0]["value"] is None, panel["title"]
            if panel["type"] == "bargauge":
                reduce = panel["options"]["reduceOptions"]
                assert reduce["values"] is True, panel["title"]
                spec = next(p for p in d.panels if p.title == panel["title"])
                assert (
                    reduce["fields"] == f"/^{spec.bar_value}$/" and spec.bar_value in spec.columns
                )
    census = next(p for p in build.dashboard(COMMAND_CENTRE)["panels"] if p["type"] == "bargauge")
    steps = census["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps[1:]] == list(DEFAULT_THRESHOLDS_PCT)
    beds = next(
        p for p in build.dashboard(COMMAND_CENTRE)["panels"] if p["title"] == "Staffed beds free"
    )
    steps = beds["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert steps[0]["color"] == "red" and steps[-1]["color"] == "green"


def _shift_events(day: datetime) -> list[dict[str, Any]]:
    """Heart rates of unit 4E through the real monitors (udfs.quality): a moderate shift (one
    bin up) opens on day 1 after two windows, escalates to a severe one (a median of 200, the
    reference's beyond its 99th percentile) that quarantines, resolves, and a second moderate
    shift opens; day 2, that second condition escalates. Two conditions opened, both on day 1:
    an escalation is an `open` event of a condition already open."""
    from schemas import topics
    from udfs import quality

    vitals = topics.VITALS_OBSERVATION.name
    ref = quality.load_reference()
    pref = ref.topic(vitals).parameters["heart_rate_bpm"]
    n = 400
    up = [0.0, *pref.proportions[:-2], pref.proportions[-2] + pref.proportions[-1]]
    shares = {
        "normal": list(pref.proportions),
        "moderate": up,
        "severe": [0.0] * (len(pref.proportions) - 1) + [1.0],
    }
    medians = {"normal": pref.percentiles["p50"], "moderate": 95.0, "severe": 200.0}
    mon = quality.SourceMonitor(vitals, "F", "4E")
    t0 = int(day.timestamp() * 1000)
    events = []
    for hour, kind in ((8, "moderate"), (9, "moderate"), (10, "severe"), (11, "normal"),
                       (12, "moderate"), (13, "moderate"), (25, "severe")):  # fmt: skip
        bins = tuple(round(s * n) for s in shares[kind])
        pw = quality.ParameterWindow(sum(bins), medians[kind], medians[kind], bins)
        start = t0 + hour * 3_600_000
        w = quality.Window(vitals, "F", "4E", start, start + 3_600_000, n, n, {},
                           {"heart_rate_bpm": pw})  # fmt: skip
        events += mon.observe(w, ref.topic(vitals), quality.Thresholds())
    return events


def test_quality_conditions_opened_per_day_count_an_escalation_as_no_second_condition(
    clickhouse: Any, settings: Settings
) -> None:
    """`state = 'open'` counted every open event: a shift that escalated to a quarantine was
    two conditions on day 1, and its escalation a condition opened on day 2. Each condition
    counts once, on the day of the event that opened it (an escalation names that event)."""
    from grafana.specs import DATA_QUALITY

    db = _warehouse(clickhouse, settings.clickhouse_database + "_dq")
    day = datetime(2026, 3, 2, tzinfo=UTC)
    events = _shift_events(day)
    opens = [(e["state"], e["action"]) for e in events if e["monitor"] == "distribution_shift"]
    assert opens == [("open", None), ("open", "quarantine"), ("resolved", "clear"),
                     ("open", None), ("open", "quarantine")]  # fmt: skip
    shifts = [e for e in events if e["monitor"] == "distribution_shift"]
    # each escalation and resolution names the event that opened its condition
    assert [e["opened_event_id"] for e in shifts] == [None, shifts[0]["event_id"],
            shifts[0]["event_id"], None, shifts[3]["event_id"]]  # fmt: skip
    _insert(clickhouse, db, "quality_events", [_quality_row(e) for e in events])
    tr = TimeRange(day, day + 2 * _DAY)
    got = _panel_rows(clickhouse, DATA_QUALITY, "events_by_monitor", db, tr, facility="F")
    assert [(t.date(), m, n) for t, m, n in got] == [(day.date(), "distribution_shift", 2)]
    # a range from day 2 shows no condition opened: the escalation's condition opened before
    later = TimeRange(day + _DAY, day + 2 * _DAY)
    assert _panel_rows(clickhouse, DATA_QUALITY, "events_by_monitor", db, later, facility="F") == []
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_quarantined_panel_shows_each_quarantined_parameter_and_the_whole_sources_as_a_star(
    clickhouse: Any, settings: Settings
) -> None:
    """Unit 4E's temperatures in °F quarantine temp_c, a duplicate storm the whole source, and
    the storm ends: temp_c stays on the board, the whole source leaves it. Unit 5W's events were
    written before scopes (no scope in their evidence: the whole source's): a quarantine on a
    temp_c condition, never cleared, shows as `*`; 6W's, cleared by another condition's end,
    are off the board."""
    from grafana.specs import DATA_QUALITY
    from schemas import topics
    from udfs import quality

    vitals = topics.VITALS_OBSERVATION.name
    db = _warehouse(clickhouse, settings.clickhouse_database + "_dqq", ("4E", "5W", "6W"))
    day = datetime(2026, 3, 2, tzinfo=UTC)
    t0 = int(day.timestamp() * 1000)
    mon = quality.SourceMonitor(vitals, "F", "4E")

    def event(m: str, state: str, h: int, parameter: str | None, **kw: Any) -> dict[str, Any]:
        span = quality.Span(t0 + (h - 1) * 3_600_000, t0 + h * 3_600_000, 60)
        return mon._event(
            m, state, span.end_ms, span=span, parameter=parameter, statistic="s",
            observed=1.0, expected=0.0, threshold=1.0, reason=f"{m} {state}", evidence={}, **kw,
        )  # fmt: skip

    events = [
        event("unit_conversion", "open", 1, "temp_c", quarantine=True),
        event("duplicate_storm", "open", 2, None, quarantine=True),
        event("duplicate_storm", "resolved", 3, None),
    ]
    assert [(e["action"], e["parameter"]) for e in events] == [
        ("quarantine", "temp_c"), ("quarantine", None), ("clear", None),
    ]  # fmt: skip
    old = [("5W", "unit_conversion", "quarantine", "temp_c", 1),
           ("6W", "unit_conversion", "quarantine", "temp_c", 1),
           ("6W", "duplicate_storm", "clear", None, 2)]  # fmt: skip
    for unit, m, action, parameter, h in old:
        events.append({**events[0], "event_id": f"old-{unit}-{h}", "unit_id": unit, "monitor": m,
                       "action": action, "parameter": parameter, "evidence_json": "{}",
                       "event_time_ms": t0 + h * 3_600_000})  # fmt: skip
    _insert(clickhouse, db, "quality_events", [_quality_row(e) for e in events])
    tr = TimeRange(day, day + _DAY)
    got = _panel_rows(clickhouse, DATA_QUALITY, "quarantined", db, tr, facility="F")
    assert sorted((unit, parameter, m) for _, _, unit, parameter, m, *_ in got) == [
        ("4E", "temp_c", "unit_conversion"),
        ("5W", "*", "unit_conversion"),
    ]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_per_day_panels_count_the_facilitys_own_days_not_utc_days(
    clickhouse: Any, settings: Settings
) -> None:
    """A New York facility's alerts at 21:00 on 1 March and 09:00 on 2 March (02:00 and 14:00
    UTC on the 2nd) are one alert a day there: counted by UTC days they were two on the 2nd
    (an evening's alerts on the next day). UTC is still offered, and gives UTC days; facilities
    of two zones open on UTC."""
    from grafana.specs import EXECUTIVE, ML_OPS
    from schemas.capacity import Capacity
    from sinks import dims

    db = _warehouse(clickhouse, settings.clickhouse_database + "_tz")
    capacity = {"facilities": {"F": {"4E": 10}}, "time_zones": {"F": "America/New_York"}}
    dims.load_capacity(clickhouse, db, Capacity.from_dict(capacity))

    def raised(alert: str, at: datetime) -> dict[str, Any]:
        return {"alert_event_id": f"ev-{alert}", "alert_id": alert, "action": "raise",
                "sequence": 1, "rule_id": "news2_red_score", "rule_version": "1",
                "severity": "low", "patient_token": f"p{alert}", "facility_id": "F",
                "unit_id": "4E", "opened_time": at, "event_time": at, "hit_count": 1,
                "score_name": "news2_score", "score_value": 3.0, "evidence_json": "{}"}  # fmt: skip

    day = datetime(2026, 3, 2, tzinfo=UTC)
    _insert(clickhouse, db, "alert_events", [raised("a", day + 2 * _HOUR),
                                             raised("b", day + 14 * _HOUR)])  # fmt: skip
    tr = TimeRange(day - 2 * _DAY, day + _DAY)
    variables = run.resolve_variables(clickhouse, EXECUTIVE, db, tr)
    assert variables["tz"] == "America/New_York"
    assert [str(r[0]) for r in clickhouse.query(
        run.render(next(v for v in EXECUTIVE.variables if v.name == "tz").sql, tr, variables)
    ).result_rows] == ["America/New_York", "UTC"]  # fmt: skip
    local = _panel_rows(clickhouse, EXECUTIVE, "alerts_by_rule", db, tr)
    five = timedelta(hours=5)  # EST: New York's midnight is 05:00 UTC
    assert [(t.astimezone(UTC), r, n) for t, r, n in local] == [
        (day - _DAY + five, "news2_red_score", 1),
        (day + five, "news2_red_score", 1),
    ]
    utc = _panel_rows(clickhouse, EXECUTIVE, "alerts_by_rule", db, tr, tz="UTC")
    assert [(t.astimezone(UTC), n) for t, _, n in utc] == [(day, 2)]
    zones = next(v for v in ML_OPS.variables if v.name == "tz").sql
    assert clickhouse.query(run.render(zones, tr, {"db": db})).result_rows[0][0] == (
        "America/New_York"
    )
    # facilities of two zones have no one local day: UTC first, then their zones
    capacity = {"facilities": {"F": {"4E": 10}, "G": {"4E": 10}}}
    capacity["time_zones"] = {"F": "America/New_York", "G": "Europe/London"}
    dims.load_capacity(clickhouse, db, Capacity.from_dict(capacity))
    tz = next(v for v in EXECUTIVE.variables if v.name == "tz").sql
    both = run.render(tz, tr, {"db": db, "facility": ["F", "G"]})
    assert [r[0] for r in clickhouse.query(both).result_rows] == [
        "UTC", "America/New_York", "Europe/London"
    ]  # fmt: skip
    assert run.resolve_variables(clickhouse, EXECUTIVE, db, tr)["tz"] == "UTC"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_frozen_devices_panel_shows_a_device_frozen_now_and_not_one_that_moved_again(
    clickhouse: Any, settings: Settings
) -> None:
    """Two monitors of 4E whose readings stopped moving (udfs.quality `frozen_device`): one
    moved again after three hours, the other has not: only it is on the board, with its id,
    since when its readings have been identical and what it repeats."""
    from grafana.specs import DATA_QUALITY

    db = _warehouse(clickhouse, settings.clickhouse_database + "_dqf")
    day = datetime(2026, 3, 2, tzinfo=UTC)
    t0 = int(day.timestamp() * 1000)
    events = seed._frozen_device("F", "4E", "mon-1", t0, 3, moves=True)
    events += seed._frozen_device("F", "4E", "mon-2", t0 + 10 * 3_600_000, 4, moves=False)
    assert [(e["state"], json.loads(e["evidence_json"])["device_id"]) for e in events] == [
        ("open", "mon-1"), ("resolved", "mon-1"), ("open", "mon-2"),
    ]  # fmt: skip
    _insert(clickhouse, db, "quality_events", [_quality_row(e) for e in events])
    tr = TimeRange(day, day + _DAY)
    got = _panel_rows(clickhouse, DATA_QUALITY, "frozen", db, tr, facility="F")
    assert [(r[0], r[3], r[4]) for r in got] == [
        ("mon-2", "4E", datetime.fromtimestamp(t0 / 1000 + 10 * 3600, UTC).replace(tzinfo=None))
    ]
    assert json.loads(got[0][6]) == {
        "heart_rate_bpm": 88.0, "resp_rate_per_min": 18.0, "spo2_pct": 95.0,
    }  # fmt: skip
    # before mon-1 moved again, both were frozen
    earlier = TimeRange(day, day + timedelta(hours=2, minutes=30))
    assert [r[0] for r in _panel_rows(clickhouse, DATA_QUALITY, "frozen", db, earlier,
                                      facility="F")] == ["mon-1"]  # fmt: skip
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_the_frozen_devices_panel_shows_a_devices_latest_state_not_an_open_left_unresolved(
    clickhouse: Any, settings: Settings
) -> None:
    """A job started without its savepoint never resolves the condition the job before opened
    (mon-3's first open); the device's later open and resolve say it moved again: the panel
    takes each device's latest state, so mon-3 is not on the board."""
    from grafana.specs import DATA_QUALITY

    db = _warehouse(clickhouse, settings.clickhouse_database + "_dqg")
    day = datetime(2026, 3, 2, tzinfo=UTC)
    t0 = int(day.timestamp() * 1000)
    events = seed._frozen_device("F", "4E", "mon-3", t0, 3, moves=False)
    events += seed._frozen_device("F", "4E", "mon-3", t0 + 5 * 3_600_000, 3, moves=True)
    assert [e["state"] for e in events] == ["open", "open", "resolved"]
    _insert(clickhouse, db, "quality_events", [_quality_row(e) for e in events])
    tr = TimeRange(day, day + _DAY)
    assert _panel_rows(clickhouse, DATA_QUALITY, "frozen", db, tr, facility="F") == []
    # before it moved again, it was frozen
    earlier = TimeRange(day, day + timedelta(hours=7, minutes=30))
    got = _panel_rows(clickhouse, DATA_QUALITY, "frozen", db, earlier, facility="F")
    assert [r[0] for r in got] == ["mon-3"]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
