-- The bed-census job's outputs (jobs/bed_census.py). Columns mirror the topics' Avro schemas
-- (tests/unit/test_clickhouse_schema.py checks them); kafka_* and loaded_at are load metadata.
-- ReplacingMergeTree on each row's natural key makes re-loading idempotent. Census rows exist
-- only for minutes in which a unit changed: the census at time t is the latest row at or before
-- t (argMax(occupied_beds, window_end) ... WHERE window_end <= t).

CREATE TABLE IF NOT EXISTS {db}.census_unit
(
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    scope LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    occupied_beds Int32,
    capacity_beds Int32,
    occupancy_pct Float64,
    surge_level Int32,
    surge_label LowCardinality(String),
    arrivals Int32,
    discharges Int32,
    transfers_in Int32,
    transfers_out Int32,
    cancels Int32,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(window_end)
ORDER BY (facility_id, scope, unit_id, window_end);

CREATE TABLE IF NOT EXISTS {db}.census_flow
(
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    scope LowCardinality(String),
    window_start DateTime64(3, 'UTC'),
    window_end DateTime64(3, 'UTC'),
    arrivals Int32,
    discharges Int32,
    transfers_in Int32,
    transfers_out Int32,
    cancels Int32,
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(window_end)
ORDER BY (facility_id, scope, unit_id, window_end);

-- What the census made of each accepted ADT event (refused ones are in dead_letters).
CREATE TABLE IF NOT EXISTS {db}.census_events
(
    event_id String,
    event_type LowCardinality(String),
    patient_token String,
    facility_id LowCardinality(String),
    unit_id LowCardinality(Nullable(String)),
    event_time DateTime64(3, 'UTC'),
    outcome LowCardinality(String),
    reason Nullable(String),
    kafka_partition Int32,
    kafka_offset Int64,
    loaded_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree
PARTITION BY toYear(event_time)
ORDER BY (facility_id, event_time, event_id);
