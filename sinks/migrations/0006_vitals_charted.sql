-- Charted vitals from device-rate numerics (vitals.charted.v1): one row per patient-minute with the
-- median of the valid seconds and how many seconds were valid, for data-quality and trend panels.
-- Re-deliveries of a minute collapse on (facility, patient, minute).
CREATE TABLE IF NOT EXISTS {db}.vitals_charted
(
    chart_id String,
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    bed_id String,
    device_id String,
    minute_start DateTime64(3, 'UTC'),
    event_time DateTime64(3, 'UTC'),
    records Int32,
    heart_rate_bpm Nullable(Float32),
    heart_rate_bpm_valid_s Int32,
    spo2_pct Nullable(Float32),
    spo2_pct_valid_s Int32,
    resp_rate_per_min Nullable(Float32),
    resp_rate_per_min_valid_s Int32,
    sbp_mmhg Nullable(Float32),
    sbp_mmhg_valid_s Int32,
    dbp_mmhg Nullable(Float32),
    dbp_mmhg_valid_s Int32,
    map_mmhg Nullable(Float32),
    map_mmhg_valid_s Int32,
    temp_c Nullable(Float32),
    temp_c_valid_s Int32,
    source_partition Int32,
    source_offset Int64,
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(minute_start)
ORDER BY (facility_id, patient_token, minute_start);
