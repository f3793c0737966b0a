-- The model monitor (jobs/model_monitor.py → model.monitor.v1): one row per measurement of a
-- model version in a window and facility (input drift per feature, score drift, alert rate,
-- delayed AUROC and calibration), breached or not; and the outcome labels it scored against
-- (label.outcome.v1, from the feeds), which the retraining loop reads too. Columns mirror the
-- topics' Avro schemas (tests/unit/test_clickhouse_schema.py); ReplacingMergeTree on the
-- deterministic ids makes re-loading idempotent.

CREATE TABLE IF NOT EXISTS {db}.model_monitor
(
    event_id String,
    event_time DateTime64(3, 'UTC'),
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    role LowCardinality(String),
    facility_id LowCardinality(String),
    metric LowCardinality(String),
    feature LowCardinality(Nullable(String)),
    value Float64,
    threshold Float64,
    reference Nullable(Float64),
    n Int64,
    breach Bool,
    severity LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    evidence_json String,
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (model_name, model_version, role, facility_id, metric, event_time, event_id);

CREATE TABLE IF NOT EXISTS {db}.outcome_labels
(
    label_id String,
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(Nullable(String)),
    entity LowCardinality(String),
    entity_token String,
    outcome LowCardinality(String),
    occurred Bool,
    outcome_time Nullable(DateTime64(3, 'UTC')),
    outcome_lead_h Nullable(Float64),
    known_at DateTime64(3, 'UTC'),
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(known_at)
ORDER BY (outcome, facility_id, entity_token, label_id);
