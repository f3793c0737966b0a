-- The model lifecycle's audit events (model.audit.v1 from training/audit.py): retraining
-- triggers, candidates and their gates, registrations, role changes, shadow evaluations,
-- promotions, refusals and rollbacks, with who, what, why and evidence. Columns mirror the
-- topic's Avro schema (tests/unit/test_clickhouse_schema.py); ReplacingMergeTree on audit_id
-- makes re-loading idempotent.

CREATE TABLE IF NOT EXISTS {db}.model_audit
(
    audit_id String,
    event_time DateTime64(3, 'UTC'),
    model_name LowCardinality(String),
    model_version LowCardinality(Nullable(String)),
    step LowCardinality(String),
    actor LowCardinality(String),
    action String,
    reason String,
    run_id String,
    evidence_json String,
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (model_name, event_time, audit_id);
