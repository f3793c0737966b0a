"""Model monitor job: each serving model version (champion and shadow challenger) watched in the
stream against the training reference stored with it → model.monitor topic.

screened states (sepsis.screen), scores (sepsis.score, model.score), outcome labels
(label.outcome), raw Kafka records (rowtime = record timestamp)
  ├─ behind the watermark / refused by the decoder ─────────── dead-letter topic
  ├─ each vitals state's monitored inputs → a cell on the input's fixed grid (SQL generated
  │  from udfs/monitor.FEATURE_GRIDS) → counts per sliding window, facility, input and cell,
  │  and patients per window → one text row per window and facility
  │    → table function (Python, once per window): PSI and KS of each input of each serving
  │      version of the sepsis model against its reference.json
  ├─ each score → a cell on the score grid (logit scale; log1p for regression) → counts and
  │  alerts per sliding window, facility, model version and role
  │    → table function: score PSI and alert rate against the version's validation reference
  └─ each score ⋈ its entity's outcome label, as it becomes known (event-time interval join,
     the label at most `model_monitor_label_delay_h` after the score; a score is positive when
     the outcome happened and the score falls within the model's label horizon, spec `monitor`)
       → counts, positives and summed risk per cell per window of known time
       → table function: delayed AUROC, observed/expected and ECE

All per-record work is Flink SQL (cells, counts, the join); Python sees one row per window.
The monitored inputs are those the screened state carries (the sepsis model's state values and
scores); a catalog model's inputs are computed inside the scoring job and are not on a topic,
so its score, alert rate and performance are monitored (against its reference.json,
training/catalog/reference.py), not its inputs.
"""

from __future__ import annotations

import logging

from pyflink.table import StreamTableEnvironment

from feature_store.definitions import SCORE_FEATURES, score_feature_sql
from jobs.runtime.job import Job, Sinks, Sources
from jobs.runtime.tables import EPOCH_MS, dead_letters_insert_sql, decoded_views
from schemas import topics
from schemas.model_spec import ModelSpec
from schemas.rows import quote
from schemas.settings import Settings
from udfs import monitor
from udfs.flink_monitor import RESULT_COLUMNS, monitor_udtf
from udfs.registry import Registry

log = logging.getLogger(__name__)
STAGE = "model_monitor"
INPUTS = {
    "screens": topics.SEPSIS_SCREEN,
    "sepsis_scores": topics.SEPSIS_SCORE,
    "model_scores": topics.MODEL_SCORE,
    "labels": topics.LABEL_OUTCOME,
}
OUTPUTS = {"monitor": topics.MODEL_MONITOR, "dead_letters": topics.DEAD_LETTER}


def specs(settings: Settings) -> dict[str, ModelSpec]:
    """The monitored models (the sepsis model and the catalog's) with their champion's spec."""
    reg = Registry(settings.model_registry)
    out = {}
    for name in (settings.model_name, *settings.catalog_model_names):
        champion = reg.role(name, "champion")
        if champion is not None:
            out[name] = ModelSpec.parse(champion.spec)
    return out


def feature_cells_sql() -> str:
    """A row per (vitals state, monitored input): the input's cell (-1 missing). A score is the
    model's input, not the screen's: without what training never saw (a GCS, ACVPU…), as the
    drift reference (training/reference.py) has it."""

    def value(f: str) -> str:
        return f"({score_feature_sql(f)})" if f in SCORE_FEATURES else quote(f)

    items = ", ".join(
        f"ROW(CAST('{f}' AS STRING), {g.cell_sql(value(f))})"
        for f, g in monitor.FEATURE_GRIDS.items()
    )
    return f"""
    SELECT facility_id, patient_token, kafka_ts AS rowtime, c.feature, c.cell
    FROM screens_decoded CROSS JOIN UNNEST(ARRAY[{items}]) AS c(feature, cell)
    WHERE reason_code IS NULL AND record_kind = 'vitals'"""


def interval(minutes: int) -> str:
    """A Flink SQL interval literal (a field holds at most two digits: 180 minutes is 3 hours)."""
    for unit, size in (("DAY", 1440), ("HOUR", 60), ("MINUTE", 1)):
        if minutes % size == 0 and minutes // size < 100:
            return f"INTERVAL '{minutes // size}' {unit}"
    return f"INTERVAL '{minutes // 60}:{minutes % 60:02d}' HOUR TO MINUTE"


def _hop(view: str, time: str, slide: str, size: str) -> str:
    return f"TABLE(HOP(TABLE {view}, DESCRIPTOR({time}), {slide}, {size}))"


def _listed(view: str, slide: str, keys: str, item: str) -> str:
    """Level 2: every level-1 row of one window (same window_time) → one text row."""
    return f"""
    SELECT w_start, w_end, {keys}, LISTAGG({item}, ';') AS cells
    FROM TABLE(TUMBLE(TABLE {view}, DESCRIPTOR(rowtime), {slide}))
    GROUP BY window_start, window_end, w_start, w_end, {keys}"""


def input_windows_sql(settings: Settings) -> tuple[str, str]:
    """(level 1: counts per window, facility, input and cell plus patient counts; level 2)."""
    slide = interval(settings.model_monitor_slide_min)
    size = interval(settings.model_monitor_window_min)
    hop = _hop("feature_cells", "rowtime", slide, size)
    w = "window_start AS w_start, window_end AS w_end, window_time AS rowtime, facility_id"
    g = "window_start, window_end, window_time, facility_id"
    level1 = f"""
    SELECT {w}, feature, cell, COUNT(*) AS n FROM {hop} GROUP BY {g}, feature, cell
    UNION ALL
    SELECT {w}, feature, -2 AS cell, COUNT(DISTINCT patient_token) AS n FROM {hop}
    WHERE cell >= 0 GROUP BY {g}, feature
    UNION ALL
    SELECT {w}, '*' AS feature, -2 AS cell, COUNT(DISTINCT patient_token) AS n FROM {hop}
    GROUP BY {g}"""
    item = "CONCAT(feature, '|', CAST(cell AS STRING), '|', CAST(n AS STRING))"
    return level1, _listed("input_counts", slide, "facility_id", item)


def scores_sql(models: dict[str, ModelSpec]) -> str:
    """Every score of every model, with its cell on the score grid and the outcome that labels
    it (the model's spec; null: none). A catalog model's scores at hours of the stay (`trigger`
    `stay_hours`) are left out: they repeat the stay's state at that hour, which its per-state
    scores cover, and the training reference is of per-state scores."""
    regression = [m for m, s in models.items() if s.task == "regression"]
    binary_cell = monitor.PROBABILITY_GRID.cell_sql("score")
    cell = binary_cell
    if regression:
        names = ", ".join(f"'{m}'" for m in regression)
        regression_cell = monitor.REGRESSION_GRID.cell_sql("score")
        cell = f"CASE WHEN model_name IN ({names}) THEN {regression_cell} ELSE {binary_cell} END"
    labelled = {m: s.monitor.label for m, s in models.items() if s.monitor.label}
    outcome = " ".join(f"WHEN '{m}' THEN '{lb.outcome}'" for m, lb in labelled.items())
    horizon = " ".join(
        f"WHEN '{m}' THEN {lb.horizon_h!r}"
        for m, lb in labelled.items()
        if lb.horizon_h is not None
    )
    outcome_sql = f"CASE model_name {outcome} END" if outcome else "CAST(NULL AS STRING)"
    horizon_sql = (
        f"CAST(CASE model_name {horizon} END AS DOUBLE)" if horizon else "CAST(NULL AS DOUBLE)"
    )
    r = quote("role")
    union = f"""
        SELECT facility_id, patient_token AS entity_token, model_name, model_version, {r},
               risk AS score, above_threshold, kafka_ts AS rowtime
        FROM sepsis_scores_decoded WHERE reason_code IS NULL
        UNION ALL
        SELECT facility_id, entity_token, model_name, model_version, {r}, score,
               above_threshold, kafka_ts AS rowtime
        FROM model_scores_decoded
        WHERE reason_code IS NULL AND COALESCE(`trigger`, 'state') <> 'stay_hours'"""
    return f"""
    SELECT *, {cell} AS cell, {outcome_sql} AS outcome, {horizon_sql} AS horizon_h
    FROM ({union})"""


def score_windows_sql(settings: Settings) -> tuple[str, str]:
    slide = interval(settings.model_monitor_slide_min)
    size = interval(settings.model_monitor_window_min)
    hop = _hop("scores", "rowtime", slide, size)
    keys = f"facility_id, model_name, model_version, {quote('role')}"
    w = f"window_start AS w_start, window_end AS w_end, window_time AS rowtime, {keys}"
    g = f"window_start, window_end, window_time, {keys}"
    level1 = f"""
    SELECT {w}, cell, COUNT(*) AS n,
           SUM(CASE WHEN above_threshold THEN 1 ELSE 0 END) AS alerts,
           COUNT(above_threshold) AS flagged
    FROM {hop} GROUP BY {g}, cell
    UNION ALL
    SELECT {w}, -2 AS cell, COUNT(DISTINCT entity_token) AS n, 0 AS alerts, 0 AS flagged
    FROM {hop} GROUP BY {g}"""
    item = (
        "CONCAT(CAST(cell AS STRING), '|', CAST(n AS STRING), '|', CAST(alerts AS STRING), '|', "
        "CAST(flagged AS STRING))"
    )
    return level1, _listed("score_counts", slide, keys, item)


def labelled_sql(settings: Settings) -> str:
    """Each score joined to its entity's outcome once known: positive when the outcome
    happened and the score is no more than the horizon before it (or any time, without one)."""
    lead_ms = "CAST((l.outcome_lead_h + s.horizon_h) * 3600000 AS BIGINT)"
    start = f"{EPOCH_MS.format('l.kafka_ts')} - {lead_ms}"
    return f"""
    SELECT s.facility_id, s.entity_token, s.model_name, s.model_version, s.{quote("role")},
           s.cell, s.score,
           CASE WHEN l.occurred AND (s.horizon_h IS NULL OR l.outcome_lead_h IS NULL
                                    OR {EPOCH_MS.format("s.rowtime")} >= {start})
                THEN 1 ELSE 0 END AS positive,
           l.kafka_ts AS known_time
    FROM scores AS s, labels_decoded AS l
    WHERE l.reason_code IS NULL AND s.entity_token = l.entity_token AND s.outcome = l.outcome
      AND l.kafka_ts BETWEEN s.rowtime
                         AND s.rowtime + {interval(settings.model_monitor_label_delay_h * 60)}"""


def performance_windows_sql(settings: Settings) -> tuple[str, str]:
    slide = interval(settings.model_monitor_performance_slide_h * 60)
    size = interval(settings.model_monitor_performance_window_h * 60)
    hop = _hop("labelled", "known_time", slide, size)
    keys = f"facility_id, model_name, model_version, {quote('role')}"
    w = f"window_start AS w_start, window_end AS w_end, window_time AS rowtime, {keys}"
    g = f"window_start, window_end, window_time, {keys}"
    level1 = f"""
    SELECT {w}, cell, COUNT(*) AS n, SUM(positive) AS pos, SUM(score) AS score_sum
    FROM {hop} GROUP BY {g}, cell
    UNION ALL
    SELECT {w}, -2 AS cell, COUNT(DISTINCT entity_token) AS n,
           COUNT(DISTINCT CASE WHEN positive = 1 THEN entity_token END) AS pos,
           CAST(0 AS DOUBLE) AS score_sum
    FROM {hop} GROUP BY {g}"""
    item = (
        "CONCAT(CAST(cell AS STRING), '|', CAST(n AS STRING), '|', CAST(pos AS STRING), '|', "
        "CAST(score_sum AS STRING))"
    )
    return level1, _listed("labelled_counts", slide, keys, item)


def events_sql(windows: str, call: str) -> str:
    """Monitor topic rows from a table function over level-2 window rows."""
    cols = ", ".join(quote(c) for c in RESULT_COLUMNS)
    e = ", ".join(f"e.{quote(c)}" for c in RESULT_COLUMNS if c != "reference")
    return f"""
    SELECT MD5(CONCAT_WS('|', e.model_name, e.model_version, e.{quote("role")}, w.facility_id,
                         e.metric, COALESCE(e.feature, ''), CAST(w.w_start AS STRING),
                         CAST(w.w_end AS STRING))) AS event_id,
           CAST(w.w_end AS TIMESTAMP(3)) AS event_time, w.facility_id, {e},
           e.reference, CAST(w.w_start AS TIMESTAMP(3)) AS window_start,
           CAST(w.w_end AS TIMESTAMP(3)) AS window_end,
           CAST(w.w_end AS TIMESTAMP_LTZ(3)) AS kafka_ts
    FROM {windows} AS w, LATERAL TABLE({call}) AS e({cols})"""


def build(
    t_env: StreamTableEnvironment, settings: Settings, sources: Sources, sinks: Sinks
) -> None:
    """Sources `screens`, `sepsis_scores`, `model_scores`, `labels` → sinks `monitor` and
    `dead_letters`."""
    for name, src in sources.items():
        decoded_views(t_env, name, INPUTS[name].schema_name, src.table)
    ss = t_env.create_statement_set()
    ss.add_insert_sql(dead_letters_insert_sql(sinks["dead_letters"], sources, STAGE))

    models = specs(settings)
    registry, check_s = settings.model_registry, settings.roles_check_s
    names = tuple(models)
    for kind in ("input_drift", "score_drift", "performance"):
        t_env.create_temporary_system_function(
            f"wf_{kind}", monitor_udtf(kind, registry, names, check_s)
        )

    def view(name: str, sql: str) -> None:
        t_env.create_temporary_view(name, t_env.sql_query(sql))

    view("feature_cells", feature_cells_sql())
    level1, level2 = input_windows_sql(settings)
    view("input_counts", level1)
    view("input_windows", level2)
    view("scores", scores_sql(models))
    level1, level2 = score_windows_sql(settings)
    view("score_counts", level1)
    view("score_windows", level2)
    view("labelled", labelled_sql(settings))
    level1, level2 = performance_windows_sql(settings)
    view("labelled_counts", level1)
    view("labelled_windows", level2)

    r = quote("role")
    parts = [
        events_sql("input_windows", f"wf_input_drift('{settings.model_name}', w.cells)"),
        events_sql(
            "score_windows", f"wf_score_drift(w.model_name, w.model_version, w.{r}, w.cells)"
        ),
        events_sql(
            "labelled_windows", f"wf_performance(w.model_name, w.model_version, w.{r}, w.cells)"
        ),
    ]
    cols = ", ".join(quote(f.name) for f in topics.MODEL_MONITOR.schema.fields)
    ss.add_insert_sql(f"""
        INSERT INTO `{sinks["monitor"]}`
        SELECT {cols}, kafka_ts FROM ({" UNION ALL ".join(parts)})""")
    ss.attach_as_datastream()


JOB = Job(STAGE, __doc__, INPUTS, OUTPUTS, build)

if __name__ == "__main__":
    JOB.main()
