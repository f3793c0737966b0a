-- The capacity forecast (udfs/capacity_forecast.py, written hourly by sinks/capacity_forecast.py):
-- for each unit (scope 'unit') and facility (scope 'facility', unit_id 'ALL') the occupancy
-- forecast for each of the next 24 hours from an origin: the point forecast (the predictive
-- median), the expectation, the 80 % and 95 % intervals, the surge threshold in beds (the capacity
-- file's forecast_surge_level, % of staffed beds), P(occupancy >= threshold) and the warning
-- (point forecast >= threshold). One row per (unit, origin, horizon): ReplacingMergeTree keeps the
-- latest computation when an origin is forecast again.

CREATE TABLE IF NOT EXISTS {db}.capacity_forecast
(
    facility_id LowCardinality(String),
    unit_id LowCardinality(String),
    scope LowCardinality(String),
    origin_time DateTime64(3, 'UTC'),
    target_time DateTime64(3, 'UTC'),
    horizon_h UInt8,
    occupied_at_origin Int32,
    forecast Float64,
    expected Float64,
    lo80 Float64,
    hi80 Float64,
    lo95 Float64,
    hi95 Float64,
    capacity_beds Int32,
    surge_threshold Float64,
    surge_probability Float64,
    surge_warning UInt8,
    model_version LowCardinality(String),
    computed_at DateTime64(3, 'UTC') DEFAULT now64(3)
)
ENGINE = ReplacingMergeTree(computed_at)
PARTITION BY toYYYYMM(origin_time)
ORDER BY (facility_id, scope, unit_id, origin_time, horizon_h);
