"""The ClickHouse migrations run on real ClickHouse (embedded chdb) and match the Avro schemas."""

from __future__ import annotations

import re
from typing import Any

from schemas import load_schema, topics
from sinks import clickhouse as ch
from sinks.loader import META, TABLES


def _plain(t: str) -> str:
    return re.sub(r"^LowCardinality\((.*)\)$", r"\1", t)


def test_migrations_are_numbered_and_forward_only(clickhouse: Any, settings: Any) -> None:
    versions = [v for v, _ in ch.migrations()]
    assert versions == sorted(versions) and versions[0] == 1
    assert ch.migrate(clickhouse, settings.clickhouse_database) == []  # already applied


def test_every_loaded_table_has_the_topic_schema_columns(clickhouse: Any, settings: Any) -> None:
    for topic, table in TABLES.items():
        cols = ch.table_columns(clickhouse, settings.clickhouse_database, table)
        want = load_schema(topic).clickhouse_columns()
        got = {k: _plain(v) for k, v in cols.items() if k in want}
        assert got == want, table
        extra = set(cols) - set(want)
        assert extra == {*META, "loaded_at"}, table


def test_a_warehouse_loaded_before_census_latest_gets_each_patients_latest_from_its_history(
    clickhouse: Any, settings: Any
) -> None:
    """Migration 0016 fills census_latest from the census rows already loaded, then keeps it
    as rows come: each patient's unit after their latest applied event, in the census's
    order (time, then offset), a duplicate load changing nothing."""
    db = settings.clickhouse_database + "_latest"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db)
    clickhouse.command(f"DROP VIEW {db}.census_latest_mv")
    clickhouse.command(f"DROP TABLE {db}.census_latest")
    clickhouse.command(
        f"ALTER TABLE {db}.schema_migrations DELETE WHERE version = 16 SETTINGS mutations_sync = 2"
    )
    columns = ["event_id", "event_type", "patient_token", "facility_id", "unit_id"]
    columns += ["event_time", "outcome", "kafka_partition", "kafka_offset"]
    at = "2026-03-01 08:00:00"
    before = [
        ["b", "admit", "p1", "F", "ED", at, "applied", 0, 1],
        ["a", "transfer", "p1", "F", "ICU", at, "applied", 0, 2],  # same instant, applied after
        ["c", "admit", "p2", "F", "4E", at, "applied", 0, 3],
        ["d", "discharge", "p2", "F", None, "2026-03-02 08:00:00", "applied", 0, 4],
        ["e", "transfer", "p2", "F", "ICU", "2026-03-03 08:00:00", "no_change", 0, 5],
    ]
    clickhouse.insert(f"{db}.census_events", before, column_names=columns)
    assert ch.migrate(clickhouse, db) == [16]
    after = [["f", "admit", "p3", "F", "4E", at, "applied", 0, 6], before[0]]  # a resend
    clickhouse.insert(f"{db}.census_events", after, column_names=columns)
    got = clickhouse.query(
        f"SELECT patient_token, toString(max(last_event)), argMaxMerge(latest).2 "
        f"FROM {db}.census_latest GROUP BY patient_token ORDER BY patient_token"
    ).result_rows
    assert got == [
        ("p1", "2026-03-01 08:00:00.000", "ICU"),
        ("p2", "2026-03-02 08:00:00.000", None),
        ("p3", "2026-03-01 08:00:00.000", "4E"),
    ]
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_dead_letters_are_one_row_a_letter_across_the_rekeying_migration(
    clickhouse: Any, settings: Any
) -> None:
    """The HL7 gateway numbers letters per message, from 1 again after a restart: two refused
    values of one ORU, and the first message after a restart, share their source coordinates.
    Keyed by them, the table merged the letters (their sealed originals lost); keyed by where
    each letter was read, 0018 keeps them, those loaded before it included, and the rollup
    keeps counting each once."""
    db = settings.clickhouse_database + "_letters"
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
    ch.migrate(clickhouse, db, until=17)
    columns = ["source_topic", "source_partition", "source_offset", "stage", "reason_code"]
    columns += ["reason", "payload", "kafka_partition", "kafka_offset", "kafka_topic"]

    def letter(offset: int, why: str) -> list[Any]:
        return ["mllp://gw", 0, 1, "hl7_gateway", "bad_value", why, "sealed", 0, offset, "dl"]

    for offset, why in enumerate(["SpO2 140", "HR -999"]):  # loaded before 0018, one at a time
        clickhouse.insert(f"{db}.dead_letters", [letter(offset, why)], column_names=columns)
    # loaded before 0005 (no kafka_topic): the loader's letter of a record it could not decode,
    # at its topic's offset, and the dead-letter topic's letter at the same numbers
    legacy = [
        [topics.ALERT_V1.name, 0, 5, "clickhouse_loader", "undecodable", "old 1", "x", 0, 5, ""],
        ["mllp://gw", 0, 9, "hl7_gateway", "bad_value", "old 2", "x", 0, 5, ""],
    ]
    for row in legacy:
        clickhouse.insert(f"{db}.dead_letters", [row], column_names=columns)
    # interrupted once after the exchange: run again from the start, the new key stays
    [path] = [f for v, f in ch.migrations() if v == 18]
    for stmt in ch.statements(path.read_text())[:-1]:
        clickhouse.command(stmt.replace("{db}", db))
    assert ch.migrate(clickhouse, db, until=18) == [18]
    key = clickhouse.query(
        "SELECT sorting_key FROM system.tables WHERE database = %(d)s AND name = 'dead_letters'",
        parameters={"d": db},
    ).result_rows
    assert key == [("kafka_topic, kafka_partition, kafka_offset, stage, source_topic",)]
    clickhouse.insert(f"{db}.dead_letters", [letter(2, "SpO2 150")], column_names=columns)
    clickhouse.insert(f"{db}.dead_letters", [letter(2, "SpO2 150")], column_names=columns)  # again
    rows = clickhouse.query(
        f"SELECT reason FROM {db}.dead_letters FINAL ORDER BY kafka_topic, kafka_offset, stage"
    ).result_rows
    assert rows == [("old 1",), ("old 2",), ("SpO2 140",), ("HR -999",), ("SpO2 150",)]
    rollup = clickhouse.query(f"SELECT sum(records) FROM {db}.dead_letter_minute").result_rows
    assert rollup == [(6,)]  # each insert counted once (the repeated insert too, as before)
    clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
