-- sepsis.screen.v1 revision 2 appended `quarantine_json` (a compatible Avro change: optional,
-- default null): set on states whose window held a record of a quarantined source
-- (udfs/quarantine.py), whose values the state, rules and models ignored.
ALTER TABLE {db}.sepsis_screen ADD COLUMN IF NOT EXISTS quarantine_json Nullable(String) AFTER source_offset;
