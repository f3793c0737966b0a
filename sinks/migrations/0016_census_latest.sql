-- Each patient's latest applied census event, kept as census_events are loaded, so that the
-- command centre's "beds held longest without an ADT event" reads a row per patient (one per
-- patient ever seen, merged in the background) instead of every census event. The latest is
-- the census's own order: event time, then the row's offset in census.event.v1 (keyed by
-- patient, so one patient's rows are in one partition in the order applied). max and argMax
-- are idempotent: a record loaded twice changes nothing, and running the backfill below again
-- (after the loader has caught up) adds nothing but a row an insert in flight while this
-- migration ran may have missed. Rebuild it (TRUNCATE TABLE, then the backfill) after the
-- census job is run again into a recreated census.event.v1: its offsets start again, and the
-- rows of the old run would stay.
CREATE TABLE IF NOT EXISTS {db}.census_latest
(
    patient_token String,
    last_event SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    latest AggregateFunction(
        argMax,
        Tuple(String, Nullable(String)),
        Tuple(DateTime64(3, 'UTC'), Int32, Int64)
    )
)
ENGINE = AggregatingMergeTree
ORDER BY patient_token;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.census_latest_mv TO {db}.census_latest AS
SELECT patient_token, max(event_time) AS last_event,
       argMaxState(
           (toString(facility_id), CAST(unit_id AS Nullable(String))),
           (event_time, kafka_partition, kafka_offset)
       ) AS latest
FROM {db}.census_events
WHERE outcome = 'applied'
GROUP BY patient_token;

-- the rows loaded before this migration
INSERT INTO {db}.census_latest
SELECT patient_token, max(event_time) AS last_event,
       argMaxState(
           (toString(facility_id), CAST(unit_id AS Nullable(String))),
           (event_time, kafka_partition, kafka_offset)
       ) AS latest
FROM {db}.census_events FINAL
WHERE outcome = 'applied'
GROUP BY patient_token;
