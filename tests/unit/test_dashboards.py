"""The dashboards: generated JSON is current, and every panel's SQL, with macros and variables
expanded as Grafana and the ClickHouse plugin do, runs on a realistic warehouse (grafana.seed in
embedded ClickHouse) and returns what the panel reads; some panels are checked against pandas."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pytest

from grafana import build, run, seed
from grafana.macros import TimeRange, expand_macros, interpolate
from grafana.specs import COMMAND_CENTRE, DASHBOARDS, EXECUTIVE, NURSE_BOARD, Dashboard, Panel
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


@pytest.fixture(scope="module")
def seeded(clickhouse: Any, settings: Settings) -> Seeded:
    db = settings.clickhouse_database + "_dash"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    wh = seed.build(seed.SeedPlan(facilities=2, days=10), seed.physionet(settings))
    seed.load(clickhouse, db, wh)
    now = run.latest_time(clickhouse, db)
    open_now = _open_alerts(wh.tables["alert_events"], now)
    unit = open_now[open_now.facility_id == "F01"].unit_id.value_counts().index[0]
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
    want = want[(want.facility_id == "F01") & (want.unit_id == seeded.unit)]
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


def _warehouse(clickhouse: Any, db: str) -> str:
    """A fresh, migrated warehouse `db` of one facility, F (unit 4E), and nothing else."""
    from schemas.capacity import Capacity
    from sinks import clickhouse as ch
    from sinks import dims

    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    dims.load_capacity(clickhouse, db, Capacity.from_dict({"facilities": {"F": {"4E": 10}}}))
    return db


def test_the_readmissions_panel_counts_no_admission_cancelled_or_voided(
    clickhouse: Any, settings: Settings
) -> None:
    """Six patients discharged, each admitted again within 30 days: an admission that stands,
    one cancelled (A11 of its visit), one voided (a FHIR Encounter entered-in-error), one
    cancelled and sent again (it stands), and two patients' visits without a visit number
    (each its own discharge and admission; an A11 without one names no admission)."""
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
    ]
    rows = [
        [f"x{i}", kind, "test", patient, visit, "F", "4E", at, "test", 0, i, "adt"]
        for i, (patient, visit, kind, at) in enumerate(events)
    ]
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
    assert got.rows[0][:2] == (6, 3)
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
