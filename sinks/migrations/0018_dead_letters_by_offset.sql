-- Dead letters keyed by where each letter was read (its topic, partition and offset: the dead-
-- letter topic's, or, for a record the loader could not decode, its own topic's), one row a
-- letter. The old key, (source_topic, stage, source_partition, source_offset), merged letters
-- at insert: the HL7 gateway and the FHIR drop number letters per message or file (one ORU's
-- refused values share one), from 1 again after a restart, so the sealed originals kept for
-- reprocessing were lost and the table disagreed with the dead-letters panel. ClickHouse cannot
-- change a sorting key in place: the rows are copied into a table of the new key, which takes
-- the old one's place (the rollup's materialized view follows the name; the copy, made into
-- a table without it, counts nothing twice).
CREATE TABLE IF NOT EXISTS {db}.dead_letters_by_offset AS {db}.dead_letters
ENGINE = ReplacingMergeTree
ORDER BY (kafka_topic, kafka_partition, kafka_offset);

INSERT INTO {db}.dead_letters_by_offset SELECT * FROM {db}.dead_letters;

EXCHANGE TABLES {db}.dead_letters AND {db}.dead_letters_by_offset;

DROP TABLE IF EXISTS {db}.dead_letters_by_offset;
