"""Which ADT discharges end the patient's stay, for the jobs that end a stay's state at one
(jobs/sepsis_screen.py, jobs/model_scoring.py): SQL over a source's accepted ADT events."""

from __future__ import annotations


def stay_discharges_sql(source: str) -> str:
    """The ADT events of `source` with `is_stay_discharge`: whether a discharge ends the
    patient's stay. One of another visit does not (the screening state and the catalog's stay go
    on; its alerts are not resolved, no readmission is scored): it names an encounter other than
    the stay's (that of the latest admission, or merge, since the patient's latest discharge)
    and a unit other than the one the patient was last placed in, an emergency visit closed
    after the inpatient admission. The census's rule (udfs/census.py, `_another_visits`; both
    must differ: a visit number changed during a stay still discharges).

    Decided in the order the patient's ADT events arrive (for one feed, the order it sent
    them), each discharge against the stay before it, by processing-time windows over the ADT
    events alone, which emit at once and keep the rowtime: the stay after each event
    (`+<encounter>`, `+` where its admission named none, `-` after any discharge), then the one
    before it (`LAG`). Of two other visits' discharges in one stay the second ends it (the
    census keeps the bed); a cancelled admission or transfer is not undone here."""
    placing = "'admit', 'transfer', 'update', 'merged_in', 'cancel_transfer'"
    another = """stay_before LIKE '+_%' AND encounter_token IS NOT NULL
        AND encounter_token <> SUBSTR(stay_before, 2) AND unit_id IS NOT NULL
        AND placed_unit_id IS NOT NULL AND unit_id <> placed_unit_id"""
    return f"""
    SELECT *, event_type = 'discharge' AND NOT COALESCE({another}, FALSE) AS is_stay_discharge
    FROM (
      SELECT *, LAG(stay) OVER (PARTITION BY patient_token ORDER BY adt_arrival) AS stay_before
      FROM (
        SELECT *,
               LAST_VALUE(CASE WHEN event_type IN ('admit', 'merged_in')
                               THEN CONCAT('+', COALESCE(encounter_token, ''))
                               WHEN event_type = 'discharge' THEN '-' END) OVER v AS stay,
               LAST_VALUE(CASE WHEN event_type IN ({placing}) THEN unit_id END) OVER v
                 AS placed_unit_id
        FROM (SELECT *, PROCTIME() AS adt_arrival FROM {source})
        WINDOW v AS (PARTITION BY patient_token ORDER BY adt_arrival
                     ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)))"""
