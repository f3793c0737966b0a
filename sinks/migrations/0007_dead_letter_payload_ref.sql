-- deadletter.v1 gained `payload_ref` (a compatible Avro change: optional, default null): where a
-- rejected payload too large to travel inline (an ORU with an embedded PDF) is kept, sealed.
ALTER TABLE {db}.dead_letters ADD COLUMN IF NOT EXISTS payload_ref Nullable(String) AFTER payload;
