-- model.score.v1 revision 2 appended `trigger` (a compatible Avro change: optional, default
-- null): `state` for a score at a new vitals or lab record, `stay_hours` for a score at an hour of
-- the stay that the model's spec lists (the stay's data up to exactly that hour), `discharge` at
-- an encounter's discharge. Rows loaded from revision 1 records keep it null.
ALTER TABLE {db}.catalog_scores ADD COLUMN IF NOT EXISTS trigger LowCardinality(Nullable(String)) AFTER scoring_latency_ms;
