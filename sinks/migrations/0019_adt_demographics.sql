-- adt.event.v1 revision 2 appended `age_years` and `female` (a compatible Avro change: optional,
-- default null): the patient's age at the event (90 for every age over 89) and administrative
-- sex, as the feeds read them (schemas/interop/demographics.py); never the birth date.
ALTER TABLE {db}.adt_events ADD COLUMN IF NOT EXISTS age_years Nullable(Float64) AFTER source;
ALTER TABLE {db}.adt_events ADD COLUMN IF NOT EXISTS female Nullable(Bool) AFTER age_years;
