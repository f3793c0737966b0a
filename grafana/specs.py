"""The dashboards as data: each panel's SQL (ClickHouse plugin macros, Grafana variables),
the columns it must return, and how it is drawn. grafana/build.py turns these into Grafana JSON
with grafana-foundation-sdk; the tests, the benchmark and the previews run the same SQL.

Tables are qualified with the hidden constant variable `db` (default "wardflow"). Queries read
the per-minute rollups where they can, and `argMax`/`min` over facts where FINAL is not needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from schemas.capacity import DEFAULT_THRESHOLDS_PCT
from udfs.news2 import HIGH_RISK_THRESHOLD, MEDIUM_RISK_THRESHOLD
from udfs.quality import QUARANTINE_SCOPE_SQL

Kind = Literal["stat", "table", "timeseries", "barchart", "bargauge"]


@dataclass(frozen=True)
class Panel:
    key: str  # stable: panel ids and preview file names derive from it
    title: str
    kind: Kind
    sql: str
    columns: tuple[str, ...]  # what the panel reads; the tests check the query returns them
    unit: str = ""
    width: int = 12
    height: int = 8
    description: str = ""
    time_from: str = (
        ""  # a panel time override, as Grafana's "Relative time" ("+24h": the next day)
    )
    dashed: tuple[str, ...] = ()  # regexps of series drawn as thin dashed lines (interval bounds)
    # a stat's or bar gauge's colour steps, (from value, colour), the first from None; none: one
    # neutral colour (Grafana's default, red from 80, turned 80 free beds red)
    thresholds: tuple[tuple[float | None, str], ...] = ()
    thresholds_for: str = ""  # the one column the steps colour (the others: neutral); "": all
    # a bar gauge's one bar per row: the column it shows (its first column names each bar);
    # without it Grafana reduced every column to its last row's value, one facility's
    bar_value: str = ""
    field_units: tuple[tuple[str, str], ...] = ()  # (column, unit) where it is not `unit`'s


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    sql: str
    multi: bool = False
    default: str | None = None  # the option chosen when the board opens, where it is one
    by_name: bool = True  # options sorted by name; False: in the query's order
    custom: bool = True  # a value typed in that is not an option can be chosen


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    time_from: str  # relative: now-24h
    refresh: str
    variables: tuple[Variable, ...]
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("wardflow",))


FACILITY = Variable(
    "facility", "Facility", "SELECT facility_id FROM ${db}.dim_facility FINAL ORDER BY facility_id"
)
FACILITIES = Variable(
    "facility",
    "Facilities",
    "SELECT facility_id FROM ${db}.dim_facility FINAL ORDER BY facility_id",
    multi=True,
)
UNIT = Variable(
    "unit",
    "Unit",
    "SELECT unit_id FROM ${db}.dim_unit FINAL WHERE facility_id = '${facility}' ORDER BY unit_id",
)
# The clock a board's days run by (its per-day panels' `toStartOfDay(…, ${tz:singlequote})`):
# the time zone of the facilities chosen (schemas.capacity `time_zones`, kept in dim_facility),
# UTC also offered. Days in UTC cut a New York hospital's day at 19:00 or 20:00 local, so an
# evening's alerts counted on the next day. Facilities of several zones have no one local day:
# UTC first then, their zones to choose from. Only the options listed can be chosen (a zone
# typed in that ClickHouse does not know stopped every per-day panel).
_ZONES = """
    WITH (SELECT uniqExact(if(timezone = '', 'UTC', timezone)) FROM ${db}.dim_facility FINAL
          WHERE {where}) AS zones
    SELECT tz FROM (
        SELECT DISTINCT if(timezone = '', 'UTC', timezone) AS tz FROM ${db}.dim_facility FINAL
        WHERE {where}
        UNION ALL SELECT 'UTC' AS tz)
    GROUP BY tz ORDER BY if(zones > 1, tz != 'UTC', tz = 'UTC'), tz"""
TIME_ZONE = Variable(
    "tz",
    "Days in time zone",
    _ZONES.replace("{where}", "facility_id IN (${facility:singlequote})"),
    by_name=False,
    custom=False,
)
# the ML ops board has no facility: the zones of every facility
ALL_TIME_ZONES = Variable(
    "tz", "Days in time zone", _ZONES.replace("{where}", "1"), by_name=False, custom=False
)
# the board is the sepsis models' (its scores, risk histograms and latency are theirs); the
# catalog's models are in the list for their monitor results
MODEL = Variable(
    "model",
    "Model",
    "SELECT DISTINCT model_name FROM ${db}.dim_model_version ORDER BY model_name",
    default="sepsis-risk",
)

# Where the census has each patient at the range's end: the facility and unit of their latest
# applied census event up to it, in the census's order (time, then the row's offset, as
# census_latest, migration 0016, keeps them; the unit is NULL once discharged). `known` is 1 for
# a patient the census has seen, 0 (or NULL under join_use_nulls) from a LEFT JOIN for one it has
# not. Read from the events, not census_latest, so that a past range shows where patients were.
_CENSUS_PLACE = """
    SELECT patient_token, toUInt8(1) AS known, latest.1 AS census_facility,
           latest.2 AS census_unit
    FROM (SELECT patient_token,
                 argMax((toString(facility_id), CAST(unit_id AS Nullable(String))),
                        (event_time, kafka_partition, kafka_offset)) AS latest
          FROM ${db}.census_events
          WHERE outcome = 'applied' AND event_time <= $__toTime
          GROUP BY patient_token)"""

# The open alerts of the unit: each alert's latest step up to the end of the range, not a
# resolve, shown on the unit where the census has its patient now (a patient raised in ED and
# moved to ICU is ICU's). An alert whose patient the census does not have in a unit of the
# facility (not known to it, discharged, or at another facility) stays on the unit of its latest
# step (each step carries the facility and unit of the latest hit), so that no open alert
# disappears; one the census has in a unit of another facility is that facility's. The latest
# step is the alert's, whatever its facility: taken among this facility's steps only, an alert
# whose hits went on at another facility (and resolved there) stayed open on this board for
# ever, at its old severity. The alerts read are those with a step at this facility or of a
# patient the census has placed at it (a superset of the board's, read by the tables' keys).
_UNIT_ALERTS = f"""
    SELECT alert_id, opened, state, a.patient_token AS patient_token, rule, severity, score,
           value, hits
    FROM (SELECT alert_id, min(opened_time) AS opened, argMax(action, sequence) AS state,
                 argMax(patient_token, sequence) AS patient_token,
                 argMax(rule_id, sequence) AS rule, argMax(severity, sequence) AS severity,
                 argMax(score_name, sequence) AS score, argMax(score_value, sequence) AS value,
                 argMax(hit_count, sequence) AS hits, argMax(unit_id, sequence) AS alert_unit,
                 argMax(facility_id, sequence) AS alert_facility
          FROM ${{db}}.alert_events AS e
          WHERE e.event_time <= $__toTime
            AND (e.alert_id IN (SELECT alert_id FROM ${{db}}.alert_events
                                WHERE facility_id = '${{facility}}' AND event_time <= $__toTime)
                 OR e.patient_token IN (SELECT patient_token FROM ${{db}}.census_events
                                      WHERE facility_id = '${{facility}}' AND outcome = 'applied'
                                        AND event_time <= $__toTime))
          GROUP BY alert_id
          HAVING state != 'resolve') AS a
    LEFT JOIN ({_CENSUS_PLACE}) AS c ON c.patient_token = a.patient_token
    WHERE if(c.census_unit IS NOT NULL,
             c.census_facility = '${{facility}}' AND c.census_unit = '${{unit}}',
             alert_facility = '${{facility}}' AND alert_unit = '${{unit}}')"""

# Acknowledged alerts: an acknowledgement counts wherever it was given (an alert acknowledged on
# ED before its patient moved is acknowledged on ICU, at another facility too).
_ACKNOWLEDGED = """
    SELECT alert_id, min(event_time) AS acknowledged FROM ${db}.alert_responses
    WHERE action = 'acknowledge' AND event_time <= $__toTime
    GROUP BY alert_id"""

# The clinical response a NEWS2 calls for (RCP 2017, NEWS2 thresholds and triggers, and chart 3),
# most urgent first: an aggregate of 7 or more an emergency response, 5-6 an urgent one, a red
# score (3 points in one parameter) below 5 an urgent ward-based one, 1-4 a ward-based one, 0
# routine monitoring. Over a reading's `news2` and `red_score`.
_RESPONSES = ("emergency", "urgent", "urgent ward-based", "ward-based", "routine")
_NEWS2_RESPONSE = f"""multiIf(
    news2 >= {HIGH_RISK_THRESHOLD}, '{_RESPONSES[0]}', news2 >= {MEDIUM_RISK_THRESHOLD},
    '{_RESPONSES[1]}', red_score, '{_RESPONSES[2]}', news2 >= 1, '{_RESPONSES[3]}',
    '{_RESPONSES[4]}')"""

# Each patient's latest vitals reading of the facility in the 12 h to the end of the range, on
# the unit where the census has the patient now: none for one moved elsewhere or discharged; for
# a patient the census does not know, the unit of that reading. The reading's values are taken as
# one tuple: argMax of each column skips NULL, so a value expired by then (NULL in the latest
# state: past its validity) showed an older reading's as current.
_UNIT_LATEST_VITALS = f"""
    SELECT v.patient_token AS patient_token, observed, latest.1 AS reading_unit,
           latest.2 AS news2, latest.3 AS qsofa, latest.4 AS heart_rate_bpm,
           latest.5 AS resp_rate_per_min, latest.6 AS spo2_pct, latest.7 AS temp_c,
           latest.8 AS sbp_mmhg, latest.9 AS red_score, latest.10 AS gcs,
           latest.11 AS news2_of_7,
           {_NEWS2_RESPONSE} AS response
    FROM (SELECT patient_token, max(event_time) AS observed,
                 argMax(tuple(unit_id, news2_score, qsofa_score, heart_rate_bpm,
                              resp_rate_per_min, spo2_pct, temp_c, sbp_mmhg, news2_red_flag,
                              gcs_total, news2_params_scored), event_time) AS latest
          FROM ${{db}}.sepsis_screen
          WHERE facility_id = '${{facility}}' AND record_kind = 'vitals'
            AND event_time > $__toTime - INTERVAL 12 HOUR AND event_time <= $__toTime
          GROUP BY patient_token) AS v
    LEFT JOIN ({_CENSUS_PLACE}) AS c ON c.patient_token = v.patient_token
    WHERE if(ifNull(c.known, 0) = 1,
             c.census_facility = '${{facility}}' AND c.census_unit = '${{unit}}',
             reading_unit = '${{unit}}')"""

NURSE_BOARD = Dashboard(
    uid="wardflow-nurse-board",
    title="Charge nurse: unit alert board",
    description="Open alerts, latest vitals and the NEWS2 trend of one unit.",
    time_from="now-24h",
    refresh="30s",
    variables=(FACILITY, UNIT),
    panels=(
        Panel(
            "open_alerts_count",
            "Open alerts",
            "stat",
            f"SELECT count() AS open_alerts FROM ({_UNIT_ALERTS})",
            ("open_alerts",),
            width=6,
            height=5,
            description="Alerts open at the range's end on the unit where the census has their "
            "patient now (an alert raised in ED follows its patient to ICU); a patient the "
            "census does not have in a unit keeps the alert on the unit of its latest step.",
        ),
        Panel(
            "unacknowledged_count",
            "Open, not acknowledged",
            "stat",
            f"""SELECT count() AS unacknowledged FROM ({_UNIT_ALERTS})
            WHERE alert_id NOT IN (SELECT alert_id FROM ({_ACKNOWLEDGED}))""",
            ("unacknowledged",),
            width=6,
            height=5,
            description="Open alerts of the unit (as in Open alerts) with no acknowledgement "
            "by the range's end, wherever it was given (one given on ED before the patient "
            "moved counts on ICU).",
        ),
        Panel(
            "news2_high_patients",
            "Patients with NEWS2 ≥ 5 (latest reading, 12 h)",
            "stat",
            f"SELECT countIf(news2 >= 5) AS patients_news2_ge5 FROM ({_UNIT_LATEST_VITALS})",
            ("patients_news2_ge5",),
            width=6,
            height=5,
            description="Patients the census has on the unit now whose latest reading in the "
            "facility in the last 12 h has NEWS2 ≥ 5 (a patient moved away or discharged no "
            "longer counts); a patient the census does not know counts on the unit of that "
            "reading.",
        ),
        Panel(
            "alerts_raised_24h",
            "Alerts raised in range",
            "stat",
            """SELECT sum(events) AS alerts_raised FROM ${db}.alert_minute
            WHERE facility_id = '${facility}' AND unit_id = '${unit}' AND action = 'raise'
              AND $__timeFilter(minute)""",
            ("alerts_raised",),
            width=6,
            height=5,
        ),
        Panel(
            "open_alerts",
            "Open alerts",
            "table",
            f"""SELECT a.opened AS opened, left(a.patient_token, 8) AS patient, a.rule AS rule,
                   a.severity AS severity, a.score AS score, a.value AS value, a.hits AS hits,
                   dateDiff('minute', a.opened, $__toTime) AS minutes_open,
                   r.acknowledged AS acknowledged
            FROM ({_UNIT_ALERTS}) AS a
            LEFT JOIN ({_ACKNOWLEDGED}) AS r ON r.alert_id = a.alert_id
            ORDER BY a.severity = 'high' DESC, a.opened
            SETTINGS join_use_nulls = 1""",
            ("opened", "patient", "rule", "severity", "value", "minutes_open", "acknowledged"),
            width=24,
            height=9,
        ),
        Panel(
            "latest_vitals",
            "Latest vitals (12 h)",
            "table",
            f"""SELECT left(patient_token, 8) AS patient, observed, news2, qsofa, heart_rate_bpm,
                   resp_rate_per_min, spo2_pct, temp_c, sbp_mmhg, response, red_score, gcs,
                   news2_of_7
            FROM ({_UNIT_LATEST_VITALS})
            ORDER BY indexOf({list(_RESPONSES)}, response), news2 DESC, observed DESC
            LIMIT 60""",
            ("patient", "observed", "news2", "heart_rate_bpm", "spo2_pct", "sbp_mmhg", "response"),
            width=24,
            height=10,
            description="Each patient the census has on the unit now, with their latest reading "
            "in the facility in the last 12 h (wherever it was taken); a patient the census "
            "does not know is listed on the unit of that reading. `response`: what the NEWS2 "
            "calls for (RCP 2017): emergency (≥ 7), urgent (5-6), urgent ward-based (a red "
            "score, 3 points in one parameter, below 5), ward-based (1-4), routine (0); a red "
            "score comes before a higher aggregate below 5. `news2_of_7`: how many of NEWS2's "
            "seven parameters the reading's state had (fewer: the score is a lower bound). "
            "`gcs`: the Glasgow Coma Scale where charted.",
        ),
        Panel(
            "news2_trend",
            "NEWS2 on the unit",
            "timeseries",
            """SELECT $__timeInterval(minute) AS time, round(avgMerge(news2_avg), 2) AS mean_news2,
                   max(news2_max) AS max_news2, sum(news2_ge5) AS readings_news2_ge5
            FROM ${db}.vitals_minute
            WHERE facility_id = '${facility}' AND unit_id = '${unit}' AND $__timeFilter(minute)
            GROUP BY time ORDER BY time""",
            ("time", "mean_news2", "max_news2"),
            width=24,
        ),
        Panel(
            "stay_hour_risk",
            "Stays on this unit at 24 and 48 h: ICU mortality risk and expected remaining stay",
            "table",
            """SELECT entity_token AS stay, hours_since_admission AS at_hour,
                   max(event_time) AS reported,
                   round(maxIf(score, model_name = 'icu-mortality'), 3) AS death_risk,
                   maxIf(above_threshold, model_name = 'icu-mortality') AS flagged,
                   round(maxIf(score, model_name = 'length-of-stay'), 1) AS remaining_days
            FROM ${db}.catalog_scores FINAL
            WHERE `trigger` = 'stay_hours' AND role = 'champion'
              AND model_name IN ('icu-mortality', 'length-of-stay')
              AND facility_id = '${facility}' AND unit_id = '${unit}'
              AND event_time > $__toTime - INTERVAL 48 HOUR AND event_time <= $__toTime
            GROUP BY stay, at_hour ORDER BY reported DESC, death_risk DESC LIMIT 20""",
            ("stay", "at_hour", "reported", "death_risk", "flagged", "remaining_days"),
            width=24,
            height=6,
            description="Each stay's ICU mortality and length-of-stay champions at hours 24 and "
            "48 of the stay (their report_at_hours), on the stay's data up to that hour: the "
            "cut-off their validation reports. Reported in the last 48 h, newest first; "
            "flagged: at or above the mortality model's threshold.",
        ),
        Panel(
            "readmission_risk",
            "Discharged in the last 24 h after a stay on this unit: 30-day readmission risk",
            "table",
            """SELECT entity_token AS encounter, event_time AS discharged,
                   round(score, 3) AS readmission_risk, above_threshold AS flagged
            FROM ${db}.catalog_scores FINAL
            WHERE model_name = 'readmission-30d' AND role = 'champion'
              AND facility_id = '${facility}'
              AND event_time > $__toTime - INTERVAL 24 HOUR AND event_time <= $__toTime
              AND entity_token IN (
                  SELECT encounter_token FROM ${db}.adt_events
                  WHERE facility_id = '${facility}' AND unit_id = '${unit}'
                    AND event_time > $__toTime - INTERVAL 30 DAY AND event_time <= $__toTime)
            ORDER BY readmission_risk DESC LIMIT 20""",
            ("encounter", "discharged", "readmission_risk", "flagged"),
            width=24,
            height=6,
            description="The readmission model's champion at each discharge, highest first; "
            "flagged: in the top fifth of discharges (a follow-up call, discharge planning).",
        ),
    ),
)

_FAC = "facility_id IN (${facility:singlequote})"
_LATEST = """argMax(occupied_beds, window_end) AS occupied,
       argMax(capacity_beds, window_end) AS beds,
       round(argMax(occupancy_pct, window_end), 1) AS occupancy_pct,
       argMax(surge_label, window_end) AS surge"""

COMMAND_CENTRE = Dashboard(
    uid="wardflow-command-centre",
    title="Command centre: census and surge",
    description="Bed census and surge levels by facility and unit, flows, and a 24 h projection.",
    time_from="now-7d",
    refresh="1m",
    variables=(FACILITIES,),
    panels=(
        Panel(
            "beds_free",
            "Staffed beds free",
            "stat",
            # a unit's patients over its capacity are no bed free in another: the facilities'
            # free beds (every configured unit, quiet ones too) plus the units' overflow they
            # netted out (summed per facility, one unit's overflow hid another's empty beds)
            f"""SELECT f.free + u.over AS beds_free, u.over AS beds_over_capacity,
                   f.patients AS beds_occupied
            FROM (SELECT sum(beds - occupied) AS free, sum(occupied) AS patients FROM (
                    SELECT facility_id, {_LATEST} FROM ${{db}}.census_unit
                    WHERE scope = 'facility' AND {_FAC} AND window_end <= $__toTime
                    GROUP BY facility_id)) AS f
            CROSS JOIN (SELECT sum(greatest(occupied - beds, 0)) AS over FROM (
                    SELECT facility_id, unit_id, {_LATEST} FROM ${{db}}.census_unit
                    WHERE scope = 'unit' AND {_FAC} AND window_end <= $__toTime
                    GROUP BY facility_id, unit_id)) AS u""",
            ("beds_free", "beds_over_capacity"),
            width=6,
            height=6,
            # no bed free is the emergency; the patients over capacity count beds, not a share
            thresholds=((None, "red"), (1.0, "orange"), (10.0, "green")),
            thresholds_for="beds_free",
        ),
        Panel(
            "facility_census",
            "Census by facility",
            "bargauge",
            f"""SELECT facility_id AS facility, {_LATEST} FROM ${{db}}.census_unit
            WHERE scope = 'facility' AND {_FAC} AND window_end <= $__toTime
            GROUP BY facility_id ORDER BY facility""",
            ("facility", "occupancy_pct"),
            unit="percent",
            width=18,
            height=6,
            # the surge levels of schemas/capacity.py: 85 % (Bagust 1999), 92 %, full
            thresholds=(
                (None, "green"),
                *zip(DEFAULT_THRESHOLDS_PCT, ("yellow", "orange", "red"), strict=True),
            ),
            bar_value="occupancy_pct",
        ),
        Panel(
            "units_by_occupancy",
            "Units by occupancy",
            "table",
            f"""SELECT facility_id AS facility, unit_id AS unit, {_LATEST},
                   argMax(surge_level, window_end) AS surge_level
            FROM ${{db}}.census_unit
            WHERE scope = 'unit' AND {_FAC} AND window_end <= $__toTime
            GROUP BY facility_id, unit_id
            ORDER BY occupancy_pct DESC LIMIT 40""",
            ("facility", "unit", "occupied", "beds", "occupancy_pct", "surge"),
            width=12,
            height=10,
        ),
        Panel(
            "forecast",
            "Occupancy forecast, next 24 h (80 % interval)",
            "table",
            f"""SELECT facility_id AS facility,
                   round(100 * any(occupied_at_origin) / any(capacity_beds), 1) AS now_pct,
                   round(100 * anyIf(forecast, horizon_h = 8) / any(capacity_beds), 1)
                       AS in_8h_pct,
                   round(100 * anyIf(forecast, horizon_h = 24) / any(capacity_beds), 1)
                       AS in_24h_pct,
                   concat(toString(round(100 * anyIf(lo80, horizon_h = 24) / any(capacity_beds))),
                          '-', toString(round(100 * anyIf(hi80, horizon_h = 24)
                                              / any(capacity_beds))), ' %') AS in_24h_80pct,
                   round(100 * max(surge_probability), 1) AS surge_risk_pct,
                   any(origin_time) AS forecast_at
            FROM ${{db}}.capacity_forecast FINAL
            WHERE scope = 'facility' AND {_FAC}
              AND origin_time = (SELECT max(origin_time) FROM ${{db}}.capacity_forecast
                                 WHERE {_FAC} AND origin_time <= $__toTime)
            GROUP BY facility_id
            ORDER BY in_24h_pct DESC""",
            ("facility", "now_pct", "in_8h_pct", "in_24h_pct", "in_24h_80pct", "surge_risk_pct"),
            unit="percent",
            width=12,
            height=10,
            description="The capacity forecast (udfs/capacity_forecast.py, written hourly by "
            "sinks/capacity_forecast.py): patients in now who are still in, from each unit's "
            "length-of-stay survival given their time so far (rescaled to the LOS model's "
            "latest prediction where a patient has one), plus arrivals by hour of week still "
            "in. The point forecast is the predictive median; surge risk is the highest "
            "hourly P(occupancy >= surge threshold) in the next 24 h.",
        ),
        Panel(
            "surge_watch",
            "Units at surge risk in the next 24 h",
            "table",
            f"""SELECT facility_id AS facility, unit_id AS unit,
                   any(occupied_at_origin) AS occupied, any(capacity_beds) AS beds,
                   round(any(surge_threshold), 1) AS surge_beds,
                   max(forecast) AS peak_forecast, max(hi80) AS peak_hi80,
                   if(max(surge_warning) = 1, toNullable(minIf(target_time, surge_warning = 1)),
                      NULL) AS warning_from,
                   max(surge_warning) AS warning,
                   round(100 * max(surge_probability), 1) AS surge_risk_pct
            FROM ${{db}}.capacity_forecast FINAL
            WHERE scope = 'unit' AND {_FAC}
              AND origin_time = (SELECT max(origin_time) FROM ${{db}}.capacity_forecast
                                 WHERE {_FAC} AND origin_time <= $__toTime)
            GROUP BY facility_id, unit_id
            HAVING warning = 1 OR surge_risk_pct >= 10
            ORDER BY warning DESC, surge_risk_pct DESC, peak_forecast / beds DESC
            LIMIT 40""",
            (
                "facility",
                "unit",
                "occupied",
                "surge_beds",
                "peak_forecast",
                "warning_from",
                "warning",
                "surge_risk_pct",
            ),
            width=12,
            height=10,
            description="Warning: the point forecast reaches the unit's surge threshold (the "
            "capacity file's forecast_surge_level, 92 % of staffed beds by default) within 24 h, "
            "from warning_from on. Also listed: units whose chance of reaching it in some hour "
            "is at least 10 % (the upper 80 % bound reaches it).",
        ),
        Panel(
            "forecast_trend",
            "Forecast occupancy by facility, next 24 h (dashed: 80 % interval)",
            "timeseries",
            f"""SELECT target_time AS time, facility_id,
                   round(100 * forecast / capacity_beds, 1) AS forecast_pct,
                   round(100 * lo80 / capacity_beds, 1) AS lo80_pct,
                   round(100 * hi80 / capacity_beds, 1) AS hi80_pct,
                   round(100 * surge_threshold / capacity_beds, 1) AS surge_pct
            FROM ${{db}}.capacity_forecast FINAL
            WHERE scope = 'facility' AND {_FAC}
              AND origin_time = (SELECT max(origin_time) FROM ${{db}}.capacity_forecast
                                 WHERE {_FAC} AND origin_time <= $__fromTime)
            ORDER BY time""",
            ("time", "facility_id", "forecast_pct", "lo80_pct", "hi80_pct", "surge_pct"),
            unit="percent",
            width=12,
            height=10,
            time_from="+24h",
            dashed=("^lo80_pct", "^hi80_pct", "^surge_pct"),
            description="The latest forecast's next 24 hours per facility (the panel shows the "
            "next 24 h, whatever the dashboard's range): point forecast, 80 % interval "
            "(dashed) and the surge threshold (dashed).",
        ),
        Panel(
            "occupancy_trend",
            "Occupancy by facility",
            "timeseries",
            f"""SELECT $__timeInterval(window_end) AS time, facility_id,
                   argMax(occupancy_pct, window_end) AS occupancy_pct
            FROM ${{db}}.census_unit
            WHERE scope = 'facility' AND {_FAC} AND $__timeFilter(window_end)
            GROUP BY time, facility_id ORDER BY time""",
            ("time", "facility_id", "occupancy_pct"),
            unit="percent",
            width=24,
        ),
        Panel(
            "flows",
            "Arrivals and discharges per hour",
            "timeseries",
            f"""SELECT toStartOfHour(window_start) AS time, sum(arrivals) AS arrivals,
                   sum(discharges) AS discharges, sum(transfers_in) AS transfers
            FROM ${{db}}.census_flow FINAL
            WHERE scope = 'facility' AND {_FAC} AND $__timeFilter(window_start)
            GROUP BY time ORDER BY time""",
            ("time", "arrivals", "discharges"),
            width=24,
            description="Per event-time hour (census_flow's windows), whatever the range.",
        ),
        Panel(
            "held_without_event",
            "Beds held longest without an applied ADT event (to reconcile)",
            "table",
            f"""SELECT facility_id AS facility, unit, substring(patient_token, 1, 8) AS patient,
                   last_event,
                   round(dateDiff('minute', last_event, $__toTime) / 1440, 1) AS days_without_event
            FROM (SELECT patient_token, last_event, latest.1 AS facility_id, latest.2 AS unit
                  FROM (SELECT patient_token, max(last_event) AS last_event,
                               argMaxMerge(latest) AS latest
                        FROM ${{db}}.census_latest GROUP BY patient_token))
            WHERE unit IS NOT NULL AND {_FAC} AND last_event <= $__toTime - INTERVAL 3 DAY
            ORDER BY last_event, patient LIMIT 25""",
            ("facility", "unit", "patient", "last_event", "days_without_event"),
            width=24,
            height=8,
            description="Patients the census has in a bed whose last applied ADT event is "
            "over 3 days old, longest first: a long stay, or a bed held by a discharge, "
            "cancel or void that never came or was refused (dead letters: nothing_to_cancel, "
            "not_admitted). An event that changes nothing (a leave of absence) does not count. "
            "The census keeps the bed until an event frees it. As of the latest census event "
            "loaded (census_latest), counted to the range's end.",
        ),
    ),
)

# Raised alerts in range, with their first acknowledgement (join_use_nulls: NULL if none).
# an acknowledgement counts wherever it was given (on the ward the patient moved to), as the
# nurse board's: the alerts raised at the facilities chosen, their acknowledgements anywhere
_RAISED_HERE = f"""SELECT alert_id FROM ${{db}}.alert_events
          WHERE action = 'raise' AND {_FAC} AND $__timeFilter(event_time)"""
_ACK = f"""
    SELECT a.alert_id AS alert_id, a.raised AS raised,
           dateDiff('second', a.raised, r.acknowledged) / 60 AS minutes
    FROM (SELECT alert_id, min(event_time) AS raised FROM ${{db}}.alert_events
          WHERE action = 'raise' AND {_FAC} AND $__timeFilter(event_time)
          GROUP BY alert_id) AS a
    LEFT JOIN (SELECT alert_id, min(event_time) AS acknowledged FROM ${{db}}.alert_responses
               WHERE action = 'acknowledge' AND alert_id IN ({_RAISED_HERE})
               GROUP BY alert_id) AS r
        ON r.alert_id = a.alert_id"""

# A visit on ED units only (treat and release: no unit other than an ED one, which dim_unit
# types 'ed', as the length-of-stay panel reads them): no inpatient stay. Over a stay's ADT
# events grouped by visit; rows without a visit number are each a stay of their own and tell
# nothing of their visit, so they are never ED-only.
_ED_UNITS = "SELECT unit_id FROM ${db}.dim_unit FINAL WHERE unit_type = 'ed'"
_ED_ONLY = f"""(countIf(encounter_token IS NOT NULL) > 0
                AND countIf(unit_id IN ({_ED_UNITS})) > 0
                AND countIf(unit_id IS NOT NULL AND unit_id NOT IN ({_ED_UNITS})) = 0)"""

EXECUTIVE = Dashboard(
    uid="wardflow-executive-quality",
    title="Executive: quality of the sepsis response",
    description="Alert-to-acknowledge times, hour-1 bundle timing, length of stay, readmissions.",
    time_from="now-30d",
    refresh="5m",
    variables=(FACILITIES, TIME_ZONE),
    panels=(
        Panel(
            "ack_minutes",
            "Alert → acknowledge (minutes)",
            "stat",
            f"""SELECT round(quantileExact(0.5)(minutes), 1) AS median_minutes,
                   round(quantileExact(0.9)(minutes), 1) AS p90_minutes,
                   round(100 * countIf(minutes <= 15) / count(), 1) AS within_15_min_pct,
                   round(100 * countIf(minutes IS NULL) / count(), 1) AS never_acknowledged_pct
            FROM ({_ACK}) SETTINGS join_use_nulls = 1""",
            ("median_minutes", "p90_minutes", "within_15_min_pct"),
            width=12,
            height=6,
        ),
        Panel(
            "readmission_risk_flagged",
            "Discharges flagged at high 30-day readmission risk (model, per day)",
            "timeseries",
            f"""SELECT toStartOfDay(event_time, ${{tz:singlequote}}) AS time, facility_id,
                   round(100 * avg(above_threshold), 2) AS flagged_pct
            FROM ${{db}}.catalog_scores FINAL
            WHERE model_name = 'readmission-30d' AND role = 'champion' AND {_FAC}
              AND $__timeFilter(event_time)
            GROUP BY time, facility_id ORDER BY time""",
            ("time", "facility_id", "flagged_pct"),
            unit="percent",
            width=12,
            description="Share of discharges whose predicted risk of readmission within 30 days "
            "is in the model's flagged top fifth (readmission-30d champion).",
        ),
        Panel(
            "readmissions",
            "30-day readmissions",
            "stat",
            f"""SELECT count() AS discharges, countIf(readmitted) AS readmissions,
                   round(100 * countIf(readmitted) / count(), 1) AS readmission_pct
            FROM (
                SELECT d.patient_token, d.stay,
                       max(a.admitted > d.discharged
                           AND a.admitted <= d.discharged + INTERVAL 30 DAY) AS readmitted
                FROM (SELECT patient_token, ifNull(encounter_token, event_id) AS stay,
                             maxIf(event_time, event_type = 'discharge') AS discharged
                      FROM ${{db}}.adt_events
                      WHERE {_FAC} AND ifNull(encounter_token, event_id) IN (
                          SELECT ifNull(encounter_token, event_id) FROM ${{db}}.adt_events
                          WHERE event_type = 'discharge' AND {_FAC} AND $__timeFilter(event_time))
                      GROUP BY patient_token, stay
                      HAVING discharged >= $__fromTime AND discharged <= $__toTime
                         AND discharged > maxIf(event_time, event_type = 'cancel_discharge')
                         AND maxIf(event_time, event_type IN ('cancel_admit', 'void_encounter'))
                             <= maxIf(event_time, event_type = 'admit')
                         AND NOT {_ED_ONLY}) AS d
                LEFT JOIN (SELECT patient_token, ifNull(encounter_token, event_id) AS stay,
                                  minIf(event_time, event_type = 'admit') AS first_admit,
                                  maxIf(event_time, event_type = 'admit') AS last_admit,
                                  maxIf(event_time, event_type IN ('cancel_admit',
                                                                   'void_encounter')) AS voided,
                                  if(voided >= first_admit, last_admit, first_admit) AS admitted
                           FROM ${{db}}.adt_events
                           WHERE event_time >= $__fromTime
                           GROUP BY patient_token, stay
                           HAVING countIf(event_type = 'admit') > 0 AND last_admit > voided
                              AND NOT ({_ED_ONLY} AND countIf(event_type = 'discharge') > 0)
                          ) AS a
                    ON a.patient_token = d.patient_token
                GROUP BY d.patient_token, d.stay)""",
            ("discharges", "readmissions", "readmission_pct"),
            width=12,
            height=6,
            description="Share of inpatient stays whose last discharge is in range, not "
            "cancelled by a later A13 nor the stay taken back (A11, entered-in-error) after its "
            "last admission, followed by an admission of the same patient (any "
            "facility) within 30 days, not one cancelled (A11 of its visit) or voided (an "
            "Encounter entered-in-error) unless admitted again after it. A visit on ED units "
            "only that ended there (treat and release) is neither a discharge nor a "
            "readmission; one still in ED (boarding) is a readmission; recent discharges have "
            "had less time.",
        ),
        Panel(
            "ack_trend",
            "Alert → acknowledge by day (minutes)",
            "timeseries",
            f"""SELECT toStartOfDay(raised, ${{tz:singlequote}}) AS time,
                   round(quantileExact(0.5)(minutes), 1) AS median_minutes,
                   round(quantileExact(0.9)(minutes), 1) AS p90_minutes
            FROM ({_ACK}) WHERE minutes IS NOT NULL
            GROUP BY time ORDER BY time SETTINGS join_use_nulls = 1""",
            ("time", "median_minutes", "p90_minutes"),
            width=12,
        ),
        Panel(
            "bundle",
            "Hour-1 sepsis bundle after an alert (SSC 2018)",
            "table",
            f"""WITH alerts AS (
                SELECT alert_id, min(event_time) AS raised, any(patient_token) AS alert_patient
                FROM ${{db}}.alert_events
                WHERE action = 'raise' AND (rule_id = 'qsofa_lactate' OR severity = 'high')
                  AND {_FAC} AND $__timeFilter(event_time)
                GROUP BY alert_id),
            indication AS (
                SELECT a.alert_id AS alert_id,
                       max(s.event_time >= a.raised - INTERVAL 6 HOUR
                           AND s.event_time <= a.raised + INTERVAL 1 HOUR
                           AND COALESCE(s.sbp_mmhg < 90 OR s.map_mmhg < 65, FALSE))
                           AS hypotension,
                       max(s.event_time >= a.raised - INTERVAL 6 HOUR
                           AND s.event_time <= a.raised + INTERVAL 1 HOUR
                           AND COALESCE(s.lactate_mmol_l >= 4, FALSE)) AS lactate_ge4
                FROM alerts AS a
                LEFT JOIN (SELECT patient_token, event_time, sbp_mmhg, map_mmhg, lactate_mmol_l
                           FROM ${{db}}.sepsis_screen
                           WHERE event_time >= $__fromTime - INTERVAL 6 HOUR
                             AND event_time <= $__toTime + INTERVAL 1 HOUR
                             AND (sbp_mmhg < 90 OR map_mmhg < 65 OR lactate_mmol_l >= 4)
                             AND patient_token IN (SELECT alert_patient FROM alerts)) AS s
                  ON s.patient_token = a.alert_patient
                GROUP BY a.alert_id),
            done AS (
                SELECT r.action AS element, r.alert_id AS alert_id,
                       dateDiff('second', any(a.raised), min(r.event_time)) / 60 AS minutes
                FROM ${{db}}.alert_responses AS r
                INNER JOIN alerts AS a ON a.alert_id = r.alert_id
                WHERE r.action != 'acknowledge'
                GROUP BY r.action, r.alert_id),
            due AS (
                SELECT alert_id, element FROM indication
                ARRAY JOIN arrayFilter(x -> x != '', [
                    'lactate_measured', 'blood_culture_drawn', 'antibiotic_given',
                    if(hypotension OR lactate_ge4, 'fluid_bolus_started', ''),
                    if(hypotension, 'vasopressor_started', '')]) AS element
                UNION DISTINCT
                SELECT alert_id, element FROM done
                WHERE element IN ('fluid_bolus_started', 'vasopressor_started')),
            antibiotics AS (SELECT alert_id, minutes FROM done
                            WHERE element = 'antibiotic_given')
            SELECT d.element AS element, countIf(x.alert_id != '') AS alerts_with_element,
                   count() AS alerts_due,
                   round(100 * countIf(x.alert_id != '') / count(), 1) AS pct_of_alerts,
                   round(quantileExactIf(0.5)(x.minutes, x.alert_id != '')) AS median_minutes,
                   round(100 * countIf(x.alert_id != '' AND x.minutes <= 60
                       AND (d.element != 'blood_culture_drawn' OR ab.alert_id = ''
                            OR x.minutes <= ab.minutes)) / count(), 1) AS within_1h_pct
            FROM due AS d
            LEFT JOIN done AS x ON x.alert_id = d.alert_id AND x.element = d.element
            LEFT JOIN antibiotics AS ab ON ab.alert_id = d.alert_id
            GROUP BY element ORDER BY median_minutes""",
            ("element", "alerts_due", "pct_of_alerts", "median_minutes", "within_1h_pct"),
            width=12,
            description="Surviving Sepsis Campaign hour-1 bundle (Levy, Evans, Rhodes 2018): "
            "lactate, blood cultures before antibiotics, antibiotics, 30 mL/kg crystalloid for "
            "hypotension or lactate ≥ 4, vasopressors for hypotension. For high-severity and "
            "qSOFA+lactate alerts; each element's share of the alerts it was due for (fluids: "
            "screened SBP < 90 or MAP < 65 or lactate ≥ 4 from 6 h before the alert to 1 h "
            "after, or given; vasopressors: hypotension, or given), cultures within the hour "
            "only before the antibiotics.",
        ),
        Panel(
            "length_of_stay",
            "Inpatient length of stay (discharged in range)",
            "table",
            f"""SELECT facility_id AS facility, count() AS stays,
                   round(quantileExact(0.5)(los_h) / 24, 2) AS median_los_days,
                   round(avg(los_h) / 24, 2) AS mean_los_days,
                   round(quantileExact(0.9)(los_h) / 24, 2) AS p90_los_days
            FROM (
                SELECT facility_id, encounter_token,
                       dateDiff('minute', minIf(event_time, event_type = 'admit'),
                                maxIf(event_time, event_type = 'discharge')) / 60 AS los_h
                FROM ${{db}}.adt_events
                WHERE {_FAC} AND encounter_token IS NOT NULL
                GROUP BY facility_id, encounter_token
                HAVING countIf(event_type = 'admit') > 0
                   AND countIf(event_type = 'discharge') > 0
                   AND maxIf(event_time, event_type = 'discharge')
                       > maxIf(event_time, event_type = 'cancel_discharge')
                   AND countIf(event_type IN ('cancel_admit', 'void_encounter')) = 0
                   AND countIf(unit_id IS NOT NULL AND unit_id NOT IN ({_ED_UNITS})) > 0
                   AND maxIf(event_time, event_type = 'discharge') >= $__fromTime
                   AND maxIf(event_time, event_type = 'discharge') <= $__toTime)
            GROUP BY facility_id ORDER BY facility""",
            ("facility", "stays", "median_los_days", "mean_los_days"),
            width=12,
            description="Visits whose last discharge is in range and was not cancelled by a "
            "later A13 (a cancelled discharge ends no stay), from the first admission to that "
            "discharge; visits on ED units only, cancelled (A11) or voided ones are left out.",
        ),
        Panel(
            "alerts_by_rule",
            "Alerts raised per day by rule",
            "timeseries",
            f"""SELECT toStartOfDay(minute, ${{tz:singlequote}}) AS time, rule_id,
                   sum(events) AS alerts
            FROM ${{db}}.alert_minute
            WHERE action = 'raise' AND {_FAC} AND $__timeFilter(minute)
            GROUP BY time, rule_id ORDER BY time""",
            ("time", "rule_id", "alerts"),
            width=12,
        ),
    ),
)

_MODEL = "model_name = '${model}'"

ML_OPS = Dashboard(
    uid="wardflow-ml-ops",
    title="ML ops: sepsis risk models",
    description="Champion and challenger side by side: risk distribution, drift, latency, "
    "agreement; model versions; dead letters.",
    time_from="now-7d",
    refresh="1m",
    variables=(MODEL, ALL_TIME_ZONES),
    panels=(
        Panel(
            "versions",
            "Model versions",
            "table",
            f"""SELECT model_version AS version, role, role_since, threshold,
                   round(auroc, 3) AS auroc, round(auprc, 3) AS auprc,
                   round(normalised_utility, 3) AS utility
            FROM ${{db}}.dim_model_version FINAL WHERE {_MODEL}
            ORDER BY registered_at DESC""",
            ("version", "role", "threshold", "auroc"),
            width=12,
            height=6,
        ),
        Panel(
            "agreement",
            "Champion and challenger agree (alerting decision)",
            "stat",
            f"""SELECT round(100 * avg(c.above = h.above), 2) AS agreement_pct,
                   count() AS states_scored_by_both
            FROM (SELECT record_id, above_threshold AS above FROM ${{db}}.model_scores
                  WHERE {_MODEL} AND role = 'champion' AND $__timeFilter(event_time)) AS c
            INNER JOIN (SELECT record_id, above_threshold AS above FROM ${{db}}.model_scores
                        WHERE {_MODEL} AND role = 'challenger' AND $__timeFilter(event_time)) AS h
                ON h.record_id = c.record_id""",
            ("agreement_pct", "states_scored_by_both"),
            unit="percent",
            width=12,
            height=6,
            field_units=(("states_scored_by_both", "none"),),
        ),
        Panel(
            "risk_distribution",
            "Risk distribution (share of scored states)",
            "barchart",
            f"""SELECT toString(round(bin * 0.05, 2)) AS risk_from,
                   round(100 * sumIf(scored, role = 'champion')
                         / sum(sumIf(scored, role = 'champion')) OVER (), 2) AS champion_pct,
                   round(100 * sumIf(scored, role = 'challenger')
                         / sum(sumIf(scored, role = 'challenger')) OVER (), 2) AS challenger_pct
            FROM ${{db}}.score_hist_hour WHERE {_MODEL} AND $__timeFilter(hour)
            GROUP BY bin ORDER BY bin""",
            ("risk_from", "champion_pct", "challenger_pct"),
            unit="percent",
            width=12,
        ),
        Panel(
            "drift",
            "Drift: PSI of the risk distribution against the 7 days before the range",
            "timeseries",
            f"""WITH hist AS (
                SELECT role, toStartOfDay(hour, ${{tz:singlequote}}) AS day,
                       sumForEach(arrayMap(i -> if(i = bin, scored, 0), range(20))) AS h
                FROM ${{db}}.score_hist_hour
                WHERE {_MODEL} AND hour >= $__fromTime - INTERVAL 7 DAY AND hour <= $__toTime
                GROUP BY role, day)
            SELECT c.day AS time, c.role AS role,
                   round(arraySum(arrayMap((p, q) -> (p - q) * log(p / q),
                       arrayMap(x -> greatest(x / arraySum(c.h), 0.0001), c.h),
                       arrayMap(x -> greatest(x / arraySum(r.h), 0.0001), r.h))), 4) AS psi
            FROM (SELECT role, day, h FROM hist
                  WHERE day >= toStartOfDay($__fromTime, ${{tz:singlequote}})) AS c
            INNER JOIN (SELECT role, sumForEach(h) AS h FROM hist
                        WHERE day < toStartOfDay($__fromTime, ${{tz:singlequote}})
                        GROUP BY role) AS r
                ON r.role = c.role
            ORDER BY time""",
            ("time", "role", "psi"),
            width=12,
            description="Population stability index over 20 risk bins; above 0.1 is commonly "
            "read as a moderate shift and above 0.25 as a major one.",
        ),
        Panel(
            "above_threshold",
            "Share of states above the alerting threshold",
            "timeseries",
            f"""SELECT $__timeInterval(minute) AS time, role,
                   round(100 * sum(above_threshold) / sum(scored), 2) AS above_threshold_pct
            FROM ${{db}}.score_minute WHERE {_MODEL} AND $__timeFilter(minute)
            GROUP BY time, role ORDER BY time""",
            ("time", "role", "above_threshold_pct"),
            unit="percent",
            width=12,
        ),
        Panel(
            "latency",
            "Scoring latency, champion (feature lookup + inference per batch)",
            "timeseries",
            f"""SELECT $__timeInterval(minute) AS time,
                   round(quantilesMerge(0.5, 0.99)(latency_ms)[1], 2) AS p50_ms,
                   round(quantilesMerge(0.5, 0.99)(latency_ms)[2], 2) AS p99_ms
            FROM ${{db}}.score_minute
            WHERE {_MODEL} AND role = 'champion' AND $__timeFilter(minute)
            GROUP BY time ORDER BY time""",
            ("time", "p50_ms", "p99_ms"),
            unit="ms",
            width=12,
        ),
        Panel(
            "dead_letters",
            "Dead letters per hour by reason",
            "timeseries",
            """SELECT toStartOfHour(minute) AS time, reason_code, sum(records) AS records
            FROM ${db}.dead_letter_minute WHERE $__timeFilter(minute)
            GROUP BY time, reason_code ORDER BY time""",
            ("time", "reason_code", "records"),
            width=24,
            description="Dead letters per hour by reason code. A record-level code (out_of_range, "
            "not_a_number, bad_enum, undecodable, …) counts records lost; a value_* code "
            "(value_out_of_range, value_not_a_number) counts values refused in records that were "
            "screened, one letter a value (a record can have several; an oxygen flag refused with "
            "its impossible FiO2 has its own, with the FiO2's code), so received = "
            "screened + the record-level letters only.",
        ),
        Panel(
            "catalog_models",
            "Catalog models: scores per version and role (mortality, length of stay, readmission)",
            "table",
            """SELECT model_name AS model, model_version AS version, role,
                   ifNull(`trigger`, if(entity = 'encounter', 'discharge', 'state'))
                       AS scored_on,
                   any(output_name) AS output, count() AS scored,
                   round(quantileExact(0.5)(score), 3) AS median_score,
                   any(output_unit) AS unit,
                   round(100 * avg(above_threshold), 2) AS above_threshold_pct,
                   round(avg(features_missing), 1) AS mean_features_missing,
                   round(quantileExact(0.99)(scoring_latency_ms), 1) AS p99_latency_ms
            FROM ${db}.catalog_scores FINAL WHERE $__timeFilter(event_time)
            GROUP BY model, version, role, scored_on ORDER BY model, role, version, scored_on""",
            (
                "model",
                "version",
                "role",
                "scored_on",
                "scored",
                "median_score",
                "above_threshold_pct",
            ),
            width=24,
            height=6,
            description="Every catalog model served by the catalog scoring job "
            "(jobs/model_scoring.py), champion and shadow, by what made the score due (a new "
            "state, an hour of the stay, a discharge; revision-1 rows by their entity); "
            "above_threshold_pct is empty for regression models.",
        ),
        Panel(
            "monitor_breaches",
            "Model monitor: breaches per version and role",
            "timeseries",
            f"""SELECT toStartOfHour(event_time) AS time,
                   concat('v', model_version, ' ', role) AS version, countIf(breach) AS breaches
            FROM ${{db}}.model_monitor FINAL WHERE {_MODEL} AND $__timeFilter(event_time)
            GROUP BY time, version ORDER BY time""",
            ("time", "version", "breaches"),
            width=12,
            description="Measurements of the model monitor (jobs/model_monitor.py) that breached "
            "the thresholds in the version's spec: input drift (PSI, KS), score drift, alert "
            "rate, delayed AUROC and calibration.",
        ),
        Panel(
            "feature_drift",
            "Input drift per feature of the serving versions (latest window)",
            "table",
            f"""SELECT feature, version, role, round(max(facility_psi), 3) AS psi,
                   round(argMax(facility_ks, facility_psi), 3) AS ks,
                   round(argMax(facility_ks_critical, facility_psi), 3) AS ks_critical,
                   argMax(facility_id, facility_psi) AS worst_facility,
                   max(facility_breach) AS breach_now
            FROM (SELECT feature, model_version AS version, role, facility_id,
                         argMaxIf(value, event_time, metric = 'psi') AS facility_psi,
                         argMaxIf(value, event_time, metric = 'ks') AS facility_ks,
                         argMaxIf(threshold, event_time, metric = 'ks') AS facility_ks_critical,
                         argMaxIf(breach, event_time, metric = 'ks') AS facility_breach
                  FROM ${{db}}.model_monitor FINAL
                  WHERE {_MODEL} AND metric IN ('psi', 'ks') AND $__timeFilter(event_time)
                    AND event_time > $__toTime - INTERVAL 2 DAY
                  GROUP BY feature, version, role, facility_id)
            GROUP BY feature, version, role ORDER BY psi DESC""",
            ("feature", "version", "role", "psi", "ks", "ks_critical", "worst_facility"),
            width=12,
            description="Each facility's latest window in the last 2 days of the range (a "
            "facility that stopped reporting is not shown as drifting now): PSI against the "
            "training reference stored with the version (0.1 moderate, 0.25 major shift; "
            "Siddiqi 2006), and the KS statistic with its critical value for the window's "
            "effective size; per feature, the facility of the largest PSI, and whether any "
            "facility's latest KS breached.",
        ),
        Panel(
            "delayed_performance",
            "Delayed performance: AUROC and observed/expected once outcomes are known",
            "timeseries",
            f"""SELECT event_time AS time, concat('v', model_version, ' ', role) AS version,
                   round(avgIf(value, metric = 'auroc'), 3) AS auroc,
                   round(avgIf(value, metric = 'calibration_oe'), 3) AS observed_expected
            FROM ${{db}}.model_monitor FINAL
            WHERE {_MODEL} AND metric IN ('auroc', 'calibration_oe')
              AND $__timeFilter(event_time)
            GROUP BY time, version ORDER BY time""",
            ("time", "version", "auroc", "observed_expected"),
            width=24,
            description="Over sliding windows of scores whose outcome label has arrived "
            "(label.outcome.v1), by the time it became known.",
        ),
    ),
)

_QFAC = "facility_id IN (${facility:singlequote})"

DATA_QUALITY = Dashboard(
    uid="wardflow-data-quality",
    title="Data quality: feeds per source, unit and facility",
    description="The data-quality job's events (jobs/data_quality.py): feed silence, volume, "
    "dead-lettered share, missingness, distribution shift, unit-conversion suspects, duplicate "
    "storms, frozen devices; the sources quarantined now.",
    time_from="now-7d",
    refresh="1m",
    variables=(FACILITIES, TIME_ZONE),
    panels=(
        Panel(
            "quarantined",
            "Sources and parameters quarantined now (rules and models ignore their values)",
            "table",
            f"""SELECT source_topic AS source, facility_id AS facility, unit_id AS unit,
                   {QUARANTINE_SCOPE_SQL} AS parameter,
                   argMax(monitor, event_time) AS monitor, max(event_time) AS since,
                   argMax(reason, event_time) AS reason
            FROM ${{db}}.quality_events FINAL
            WHERE action IS NOT NULL AND {_QFAC} AND event_time <= $__toTime
            GROUP BY source, facility, unit, parameter
            HAVING argMax(action, event_time) = 'quarantine'
            ORDER BY since DESC""",
            ("source", "facility", "unit", "parameter", "monitor", "since", "reason"),
            width=24,
            height=6,
            description="The latest quarantine or clear of each source's parameter (`*`: "
            "every parameter of the source, as a duplicate storm's): a unit-conversion fault or "
            "a severe shift quarantines its parameter only, and the source's other values are "
            "still screened. A quarantine stays until its conditions end or an operator clears "
            "it (python -m udfs.quarantine clear [--parameter P]).",
        ),
        Panel(
            "silent",
            "Silent feeds now",
            "table",
            f"""SELECT source_topic AS source, facility_id AS facility, unit_id AS unit,
                   event_time AS silent_since,
                   round(dateDiff('minute', window_start, $__toTime)) AS silent_min, reason
            FROM ${{db}}.quality_events FINAL
            WHERE monitor = 'feed_silence' AND state = 'open' AND {_QFAC}
              AND event_time <= $__toTime
              AND event_id NOT IN (
                  SELECT opened_event_id FROM ${{db}}.quality_events FINAL
                  WHERE monitor = 'feed_silence' AND state = 'resolved'
                    AND opened_event_id IS NOT NULL AND event_time <= $__toTime)
            ORDER BY silent_since""",
            ("source", "facility", "unit", "silent_since", "silent_min"),
            width=24,
            height=6,
            description="Unit `*` is the facility's whole feed.",
        ),
        Panel(
            "frozen",
            "Frozen devices now (every value repeated bit for bit)",
            "table",
            f"""SELECT device, source, facility, unit, identical_since,
                   round(dateDiff('minute', identical_since, $__toTime)) AS identical_min,
                   JSONExtractRaw(evidence, 'values') AS repeated_values, reason
            FROM (
                SELECT JSONExtractString(evidence_json, 'device_id') AS device,
                       source_topic AS source, facility_id AS facility,
                       argMax(state, event_time) AS last_state,
                       argMax(unit_id, event_time) AS unit,
                       argMax(window_start, event_time) AS identical_since,
                       argMax(evidence_json, event_time) AS evidence,
                       argMax(reason, event_time) AS reason
                FROM ${{db}}.quality_events FINAL
                WHERE monitor = 'frozen_device' AND {_QFAC} AND event_time <= $__toTime
                GROUP BY facility, source, device)
            WHERE last_state = 'open'
            ORDER BY identical_since""",
            (
                "device",
                "source",
                "facility",
                "unit",
                "identical_since",
                "identical_min",
                "repeated_values",
            ),
            width=24,
            height=6,
            description="A monitor or gateway re-sending its last numerics (lost patient "
            "connection, hung driver): the screen sees a steady patient who is not there. "
            "Found once every parameter has been identical for 2 h (udfs/quality.py, "
            "`frozen_device`); not quarantined (the registry scopes units, not devices): check "
            "the device. A paced, fully ventilated patient on SpO2 100 % with no other value "
            "sent can look the same.",
        ),
        Panel(
            "events_by_monitor",
            "Data-quality conditions opened per day, by monitor",
            "timeseries",
            f"""SELECT toStartOfDay(event_time, ${{tz:singlequote}}) AS time, monitor,
                   count() AS opened
            FROM ${{db}}.quality_events FINAL
            WHERE state = 'open' AND opened_event_id IS NULL AND {_QFAC}
              AND $__timeFilter(event_time)
            GROUP BY time, monitor ORDER BY time""",
            ("time", "monitor", "opened"),
            width=12,
            description="Each condition once, on the day of the event that opened it: an "
            "escalation (a shift grown severe, which quarantines) names the event that opened "
            "its condition. Escalations recorded before 2026-12-06 named none and count again.",
        ),
        Panel(
            "dead_letter_share",
            "Dead-lettered share by reason per unit (conditions opened in range)",
            "table",
            f"""SELECT facility_id AS facility, unit_id AS unit, source_topic AS source,
                   parameter AS reason_code, count() AS conditions_opened,
                   round(100 * max(observed), 1) AS max_share_pct,
                   round(100 * any(expected), 3) AS reference_pct
            FROM ${{db}}.quality_events FINAL
            WHERE monitor = 'dead_letter_share' AND state = 'open' AND opened_event_id IS NULL
              AND {_QFAC}
              AND $__timeFilter(event_time)
            GROUP BY facility, unit, source, reason_code ORDER BY max_share_pct DESC""",
            ("facility", "unit", "source", "reason_code", "conditions_opened", "max_share_pct"),
            unit="percent",
            width=12,
            description="A condition opens once while the share stays above its threshold "
            "(udfs/quality.py): the shares are each condition's window when it opened.",
            field_units=(("conditions_opened", "none"),),
        ),
        Panel(
            "recent",
            "Latest data-quality events with their evidence",
            "table",
            f"""SELECT event_time AS time, monitor, state, action, source_topic AS source,
                   facility_id AS facility, unit_id AS unit, parameter, statistic,
                   round(observed, 3) AS observed, round(expected, 3) AS expected, reason
            FROM ${{db}}.quality_events FINAL
            WHERE {_QFAC} AND $__timeFilter(event_time)
            ORDER BY time DESC LIMIT 50""",
            ("time", "monitor", "state", "source", "unit", "reason"),
            width=24,
        ),
    ),
)

DASHBOARDS = (NURSE_BOARD, COMMAND_CENTRE, EXECUTIVE, ML_OPS, DATA_QUALITY)
