-- The catalog's scores (model.score.v1 from jobs/model_scoring.py): every model other than the
-- sepsis model, champion and shadow challenger, one row per scored state. Columns mirror the
-- topic's Avro schema (tests/unit/test_clickhouse_schema.py); ReplacingMergeTree on score_id
-- makes re-loading idempotent. (0008 and 0009 are the capacity forecast and the 2012 fields.)

CREATE TABLE IF NOT EXISTS {db}.catalog_scores
(
    score_id String,
    record_id String,
    entity LowCardinality(String),
    entity_token String,
    patient_token Nullable(String),
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    hours_since_admission Nullable(Float64),
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    role LowCardinality(String),
    output_name LowCardinality(String),
    score Float64,
    output_unit LowCardinality(Nullable(String)),
    threshold Nullable(Float64),
    above_threshold Nullable(Bool),
    features_missing Int32,
    scoring_latency_ms Float64,
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (model_name, role, facility_id, event_time, score_id);
