-- The sepsis screening job's outputs (jobs/sepsis_screen.py). Columns mirror the topics' Avro
-- schemas (tests/unit/test_clickhouse_schema.py checks them); kafka_* and loaded_at are load
-- metadata. ReplacingMergeTree on each record's natural key makes re-loading idempotent.

CREATE TABLE IF NOT EXISTS {db}.sepsis_screen
(
    record_id String,
    record_kind LowCardinality(String),
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    heart_rate_bpm Nullable(Float32),
    heart_rate_bpm_measured_time Nullable(DateTime64(3, 'UTC')),
    resp_rate_per_min Nullable(Float32),
    resp_rate_per_min_measured_time Nullable(DateTime64(3, 'UTC')),
    spo2_pct Nullable(Float32),
    spo2_pct_measured_time Nullable(DateTime64(3, 'UTC')),
    sbp_mmhg Nullable(Float32),
    sbp_mmhg_measured_time Nullable(DateTime64(3, 'UTC')),
    map_mmhg Nullable(Float32),
    map_mmhg_measured_time Nullable(DateTime64(3, 'UTC')),
    temp_c Nullable(Float32),
    temp_c_measured_time Nullable(DateTime64(3, 'UTC')),
    fio2_fraction Nullable(Float32),
    fio2_fraction_measured_time Nullable(DateTime64(3, 'UTC')),
    on_supplemental_o2 Nullable(Bool),
    on_supplemental_o2_measured_time Nullable(DateTime64(3, 'UTC')),
    acvpu Nullable(String),
    acvpu_measured_time Nullable(DateTime64(3, 'UTC')),
    spo2_scale2 Nullable(Bool),
    spo2_scale2_measured_time Nullable(DateTime64(3, 'UTC')),
    lactate_mmol_l Nullable(Float32),
    lactate_mmol_l_measured_time Nullable(DateTime64(3, 'UTC')),
    paco2_mmhg Nullable(Float32),
    paco2_mmhg_measured_time Nullable(DateTime64(3, 'UTC')),
    wbc_10e9_l Nullable(Float32),
    wbc_10e9_l_measured_time Nullable(DateTime64(3, 'UTC')),
    platelets_10e9_l Nullable(Float32),
    platelets_10e9_l_measured_time Nullable(DateTime64(3, 'UTC')),
    creatinine_mg_dl Nullable(Float32),
    creatinine_mg_dl_measured_time Nullable(DateTime64(3, 'UTC')),
    bilirubin_total_mg_dl Nullable(Float32),
    bilirubin_total_mg_dl_measured_time Nullable(DateTime64(3, 'UTC')),
    news2_score Int32,
    news2_params_scored Int32,
    news2_red_flag Bool,
    sirs_count Int32,
    sirs_criteria_known Int32,
    qsofa_score Int32,
    qsofa_criteria_known Int32,
    sofa_partial_score Int32,
    sofa_components_known Int32,
    source_topic LowCardinality(String),
    source_partition Int32,
    source_offset Int64,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (facility_id, unit_id, patient_token, event_time, record_id);

-- One row per lifecycle step; an alert's current state is its highest `sequence`.
CREATE TABLE IF NOT EXISTS {db}.alert_events
(
    alert_event_id String,
    alert_id String,
    action LowCardinality(String),
    sequence Int32,
    rule_id LowCardinality(String),
    rule_version LowCardinality(String),
    severity LowCardinality(String),
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    opened_time DateTime64(3, 'UTC'),
    event_time DateTime64(3, 'UTC'),
    resolve_reason LowCardinality(Nullable(String)),
    hit_count Int32,
    score_name LowCardinality(String),
    score_value Int32,
    first_record_id String,
    last_record_id String,
    evidence_json String,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (facility_id, unit_id, alert_id, sequence);
