-- Dead letters keyed by where each letter was read (its topic, partition and offset: the dead-
-- letter topic's, or, for a record the loader could not decode, its own topic's), one row a
-- letter. The old key, (source_topic, stage, source_partition, source_offset), merged letters
-- at insert: the HL7 gateway and the FHIR drop number letters per message or file (one ORU's
-- refused values share one), from 1 again after a restart, so the sealed originals kept for
-- reprocessing were lost and the table disagreed with the dead-letters panel. ClickHouse cannot
-- change a sorting key in place: the rows are copied into a table of the new key, which takes
-- the old one's place (the rollup's materialized view follows the name; the copy, made into
-- a table without it, counts nothing twice). Letters loaded before 0005 have no kafka_topic: the
-- key ends with their stage and source topic, so that the loader's own letters (at their source
-- topic's offsets) and the dead-letter topic's stay apart. Run it with no loader inserting (a
-- loader runs the migrations before it consumes): a letter inserted between the copy and the
-- exchange would be dropped with the old table. Interrupted, it runs again from the start: the
-- copy of an earlier attempt is dropped first, whichever table it is.
DROP TABLE IF EXISTS {db}.dead_letters_by_offset;

CREATE TABLE {db}.dead_letters_by_offset AS {db}.dead_letters
ENGINE = ReplacingMergeTree
ORDER BY (kafka_topic, kafka_partition, kafka_offset, stage, source_topic);

INSERT INTO {db}.dead_letters_by_offset SELECT * FROM {db}.dead_letters;

EXCHANGE TABLES {db}.dead_letters AND {db}.dead_letters_by_offset;

DROP TABLE IF EXISTS {db}.dead_letters_by_offset;
