-- sepsis.screen.v1 revision 3 appended `gcs_total` and `gcs_total_measured_time` (a compatible
-- Avro change: optional, default null): the Glasgow Coma Scale the state carries for qSOFA's
-- altered mentation (udfs/sepsis.py).
ALTER TABLE {db}.sepsis_screen ADD COLUMN IF NOT EXISTS gcs_total Nullable(Int32) AFTER quarantine_json;
ALTER TABLE {db}.sepsis_screen ADD COLUMN IF NOT EXISTS gcs_total_measured_time Nullable(DateTime64(3, 'UTC')) AFTER gcs_total;
