-- Data-quality events (quality.event.v1 from jobs/data_quality.py): each condition of a source
-- (topic, facility, unit; unit `*` = the facility's whole source) opened or resolved, with its
-- evidence and the quarantine action. Columns mirror the topic's Avro schema
-- (tests/unit/test_clickhouse_schema.py); ReplacingMergeTree on event_id makes re-loading and
-- a replay's identical events idempotent.

CREATE TABLE IF NOT EXISTS {db}.quality_events
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    monitor LowCardinality(String),
    state LowCardinality(String),
    action LowCardinality(Nullable(String)),
    severity LowCardinality(String),
    source_topic LowCardinality(String),
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    parameter LowCardinality(Nullable(String)),
    statistic LowCardinality(String),
    observed Nullable(Float64),
    expected Nullable(Float64),
    threshold Nullable(Float64),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    records Int64,
    sample_record_ids Nullable(String),
    opened_event_id Nullable(String),
    reason String,
    evidence_json String,
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (facility_id, source_topic, unit_id, event_time, event_id);
