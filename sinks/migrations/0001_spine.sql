-- Facts written by the sepsis screening spine. Columns mirror the topics' Avro schemas
-- (tests/unit/test_clickhouse_schema.py checks them); kafka_* and loaded_at are load metadata.
-- ReplacingMergeTree on the record's natural key makes re-loading a topic idempotent.

CREATE TABLE IF NOT EXISTS {db}.vitals_news2
(
    observation_id String,
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    heart_rate_bpm Nullable(Float32),
    resp_rate_per_min Nullable(Float32),
    spo2_pct Nullable(Float32),
    temp_c Nullable(Float32),
    sbp_mmhg Nullable(Float32),
    news2_score Int32,
    news2_params_scored Int32,
    news2_red_flag Bool,
    source_partition Int32,
    source_offset Int64,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (facility_id, unit_id, patient_token, event_time, observation_id);

CREATE TABLE IF NOT EXISTS {db}.alerts
(
    alert_id String,
    rule_id LowCardinality(String),
    rule_version LowCardinality(String),
    severity LowCardinality(String),
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    first_event_time DateTime64(3, 'UTC'),
    last_event_time DateTime64(3, 'UTC'),
    reading_count Int32,
    score_first Int32,
    score_last Int32,
    score_max Int32,
    first_observation_id String,
    last_observation_id String,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (facility_id, unit_id, alert_id);

CREATE TABLE IF NOT EXISTS {db}.dead_letters
(
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    source_timestamp Nullable(DateTime64(3, 'UTC')),
    stage LowCardinality(String),
    reason_code LowCardinality(String),
    reason String,
    payload String,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
ORDER BY (source_topic, stage, source_partition, source_offset);
