-- The warehouse behind the dashboards: the remaining facts (ADT events, alert responses, model
-- scores), dimensions, and per-minute rollups kept by materialized views.
--
-- Loading is effectively once: every loaded row records the topic, partition and offset it came
-- from, and the loader resumes each partition after the highest offset ClickHouse already holds
-- (sinks/loader.py). The rollups below are fed by materialized views on those inserts, so a
-- re-delivered batch would count twice in them; resuming from ClickHouse's own offsets is what
-- keeps them exact, and ReplacingMergeTree keys keep the facts exact under FINAL regardless.

ALTER TABLE {db}.vitals_news2 ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.alerts ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.sepsis_screen ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.alert_events ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.census_unit ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.census_flow ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;
ALTER TABLE {db}.census_events ADD COLUMN IF NOT EXISTS kafka_topic LowCardinality(String) DEFAULT '' AFTER kafka_offset;

CREATE TABLE IF NOT EXISTS {db}.adt_events
(
    event_id String,
    event_type LowCardinality(String),
    source_message_type LowCardinality(String),
    patient_token String,
    encounter_token Nullable(String),
    facility_id LowCardinality(String),
    unit_id LowCardinality(Nullable(String)),
    bed_id Nullable(String),
    prior_unit_id LowCardinality(Nullable(String)),
    prior_bed_id Nullable(String),
    event_time DateTime64(3, 'UTC'),
    recorded_time Nullable(DateTime64(3, 'UTC')),
    source LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (facility_id, event_time, event_id);

CREATE TABLE IF NOT EXISTS {db}.alert_responses
(
    response_id String,
    alert_id String,
    action LowCardinality(String),
    actor_role LowCardinality(String),
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    source LowCardinality(String),
    kafka_partition Int32,
    kafka_offset Int64,
    kafka_topic LowCardinality(String),
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYYYYMM(event_time)
ORDER BY (facility_id, alert_id, action, response_id);

CREATE TABLE IF NOT EXISTS {db}.model_scores
(
    score_id String,
    record_id String,
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    event_time DateTime64(3, 'UTC'),
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    role LowCardinality(String),
    risk Float64,
    threshold Float64,
    above_threshold Bool,
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

-- Dimensions. Facilities and units come from the capacity file (sinks/dims.py); beds and
-- patients are kept from the ADT events; model versions are written by the model registry.
CREATE TABLE IF NOT EXISTS {db}.dim_facility
(
    facility_id String,
    facility_name String,
    region LowCardinality(String),
    timezone String,
    capacity_beds Int32,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY facility_id;

CREATE TABLE IF NOT EXISTS {db}.dim_unit
(
    facility_id String,
    unit_id String,
    unit_name String,
    unit_type LowCardinality(String),
    capacity_beds Int32,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (facility_id, unit_id);

CREATE TABLE IF NOT EXISTS {db}.dim_bed
(
    facility_id String,
    unit_id String,
    bed_id String,
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC'))
)
ENGINE = AggregatingMergeTree
ORDER BY (facility_id, unit_id, bed_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dim_bed_mv TO {db}.dim_bed AS
SELECT facility_id, unit AS unit_id, bed AS bed_id,
       min(event_time) AS first_seen, max(event_time) AS last_seen
FROM (
    SELECT facility_id, assumeNotNull(unit_id) AS unit, assumeNotNull(bed_id) AS bed, event_time
    FROM {db}.adt_events
    WHERE unit_id IS NOT NULL AND bed_id IS NOT NULL)
GROUP BY facility_id, unit, bed;

CREATE TABLE IF NOT EXISTS {db}.dim_patient
(
    patient_token String,
    first_seen SimpleAggregateFunction(min, DateTime64(3, 'UTC')),
    last_seen SimpleAggregateFunction(max, DateTime64(3, 'UTC')),
    last_facility_id AggregateFunction(argMax, String, DateTime64(3, 'UTC')),
    encounters AggregateFunction(uniq, Nullable(String))
)
ENGINE = AggregatingMergeTree
ORDER BY patient_token;

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dim_patient_mv TO {db}.dim_patient AS
SELECT patient_token, min(event_time) AS first_seen, max(event_time) AS last_seen,
       argMaxState(toString(facility_id), event_time) AS last_facility_id,
       uniqState(encounter_token) AS encounters
FROM {db}.adt_events
GROUP BY patient_token;

CREATE TABLE IF NOT EXISTS {db}.dim_model_version
(
    model_name String,
    model_version String,
    role LowCardinality(String),
    registered_at DateTime64(3, 'UTC'),
    role_since DateTime64(3, 'UTC'),
    threshold Float64,
    auroc Float64,
    auprc Float64,
    normalised_utility Float64,
    training_data_sha256 String,
    onnx_sha256 String,
    updated_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(updated_at)
ORDER BY (model_name, model_version);

-- Per-minute rollups. Counts are SimpleAggregateFunction(sum); means, distinct counts and
-- quantiles are aggregate states: read them with avgMerge, uniqMerge, quantilesMerge.
CREATE TABLE IF NOT EXISTS {db}.vitals_minute
(
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    minute DateTime('UTC'),
    readings SimpleAggregateFunction(sum, UInt64),
    news2_ge5 SimpleAggregateFunction(sum, UInt64),
    news2_ge7 SimpleAggregateFunction(sum, UInt64),
    news2_max SimpleAggregateFunction(max, Int32),
    news2_avg AggregateFunction(avg, Int32),
    patients AggregateFunction(uniq, String),
    heart_rate_bpm_avg AggregateFunction(avg, Nullable(Float32)),
    resp_rate_per_min_avg AggregateFunction(avg, Nullable(Float32)),
    spo2_pct_avg AggregateFunction(avg, Nullable(Float32)),
    temp_c_avg AggregateFunction(avg, Nullable(Float32)),
    sbp_mmhg_avg AggregateFunction(avg, Nullable(Float32))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (facility_id, unit_id, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.vitals_minute_mv TO {db}.vitals_minute AS
SELECT facility_id, unit_id, toStartOfMinute(event_time) AS minute,
       count() AS readings,
       countIf(news2_score >= 5) AS news2_ge5,
       countIf(news2_score >= 7) AS news2_ge7,
       max(news2_score) AS news2_max,
       avgState(news2_score) AS news2_avg,
       uniqState(patient_token) AS patients,
       avgState(heart_rate_bpm) AS heart_rate_bpm_avg,
       avgState(resp_rate_per_min) AS resp_rate_per_min_avg,
       avgState(spo2_pct) AS spo2_pct_avg,
       avgState(temp_c) AS temp_c_avg,
       avgState(sbp_mmhg) AS sbp_mmhg_avg
FROM {db}.sepsis_screen
WHERE record_kind = 'vitals'
GROUP BY facility_id, unit_id, minute;

CREATE TABLE IF NOT EXISTS {db}.alert_minute
(
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    rule_id LowCardinality(String),
    severity LowCardinality(String),
    action LowCardinality(String),
    minute DateTime('UTC'),
    events SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (facility_id, unit_id, rule_id, severity, action, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.alert_minute_mv TO {db}.alert_minute AS
SELECT facility_id, unit_id, rule_id, severity, action, toStartOfMinute(event_time) AS minute,
       count() AS events
FROM {db}.alert_events
GROUP BY facility_id, unit_id, rule_id, severity, action, minute;

CREATE TABLE IF NOT EXISTS {db}.dead_letter_minute
(
    source_topic LowCardinality(String),
    stage LowCardinality(String),
    reason_code LowCardinality(String),
    minute DateTime('UTC'),
    records SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (source_topic, stage, reason_code, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.dead_letter_minute_mv TO {db}.dead_letter_minute AS
SELECT source_topic, stage, reason_code, toStartOfMinute(coalesce(source_timestamp, loaded_at)) AS minute,
       count() AS records
FROM {db}.dead_letters
GROUP BY source_topic, stage, reason_code, minute;

CREATE TABLE IF NOT EXISTS {db}.score_minute
(
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    role LowCardinality(String),
    facility_id LowCardinality(String),
    minute DateTime('UTC'),
    scored SimpleAggregateFunction(sum, UInt64),
    above_threshold SimpleAggregateFunction(sum, UInt64),
    risk_avg AggregateFunction(avg, Float64),
    latency_ms AggregateFunction(quantiles(0.5, 0.99), Float64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(minute)
ORDER BY (model_name, model_version, role, facility_id, minute);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.score_minute_mv TO {db}.score_minute AS
SELECT model_name, model_version, role, facility_id, toStartOfMinute(event_time) AS minute,
       count() AS scored, countIf(above_threshold) AS above_threshold,
       avgState(risk) AS risk_avg, quantilesState(0.5, 0.99)(scoring_latency_ms) AS latency_ms
FROM {db}.model_scores
GROUP BY model_name, model_version, role, facility_id, minute;

-- Risk histograms per hour (20 bins of 0.05) for the score-distribution and drift panels.
CREATE TABLE IF NOT EXISTS {db}.score_hist_hour
(
    model_name LowCardinality(String),
    model_version LowCardinality(String),
    role LowCardinality(String),
    hour DateTime('UTC'),
    bin UInt8,
    scored SimpleAggregateFunction(sum, UInt64)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(hour)
ORDER BY (model_name, model_version, role, hour, bin);

CREATE MATERIALIZED VIEW IF NOT EXISTS {db}.score_hist_hour_mv TO {db}.score_hist_hour AS
SELECT model_name, model_version, role, toStartOfHour(event_time) AS hour,
       toUInt8(least(floor(risk * 20), 19)) AS bin, count() AS scored
FROM {db}.model_scores
GROUP BY model_name, model_version, role, hour, bin;
