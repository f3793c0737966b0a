"""schemas.rows and udfs.flink_types: each internal row declared once, and the same as the hand
spellings it replaced (literal copies of those below, so the change provably keeps behaviour)."""

from __future__ import annotations

import re

import pytest
from pyflink.common import Types
from pyflink.table import DataTypes

from schemas import rows, topics
from udfs import flink_types, java_decode, lifecycle
from udfs.flink import (
    DECODED_COLUMNS,
    DECODED_TYPES,
    NEWS2_TYPE,
    decode_udtf,
    decoded_columns,
)
from udfs.flink_scoring import RESULT_TYPE
from udfs.scoring import OUTPUT_COLUMNS

# jobs/sepsis_screen.py HIT_ROW before this change.
OLD_HIT_ROW = (
    "ROW<`kind` STRING, `rule_id` STRING, `rule_version` STRING, `severity` STRING, "
    "`patient_token` STRING, `facility_id` STRING, `unit_id` STRING, `first_time` TIMESTAMP(3), "
    "`first_record_id` STRING, `last_record_id` STRING, `score_name` STRING, `score_value` INT, "
    "`evidence_json` STRING>"
)
# udfs/flink_census.py CENSUS_OUT_FIELDS before this change.
OLD_CENSUS_OUT_FIELDS = (
    ("kind", Types.STRING()),
    ("facility_id", Types.STRING()),
    ("unit_id", Types.STRING()),
    ("event_time_ms", Types.LONG()),
    ("occupied", Types.INT()),
    ("arrivals", Types.INT()),
    ("discharges", Types.INT()),
    ("transfers_in", Types.INT()),
    ("transfers_out", Types.INT()),
    ("cancels", Types.INT()),
    ("unit_capacity", Types.INT()),
    ("facility_capacity", Types.INT()),
    ("event_id", Types.STRING()),
    ("event_type", Types.STRING()),
    ("patient_token", Types.STRING()),
    ("outcome", Types.STRING()),
    ("reason", Types.STRING()),
    ("source_topic", Types.STRING()),
    ("source_partition", Types.INT()),
    ("source_offset", Types.LONG()),
    ("payload", Types.PRIMITIVE_ARRAY(Types.BYTE())),
)
# udfs/flink.py ALERT_EVENT_FIELDS before this change.
OLD_ALERT_EVENT_FIELDS = (
    ("alert_event_id", Types.STRING()),
    ("alert_id", Types.STRING()),
    ("action", Types.STRING()),
    ("sequence", Types.INT()),
    ("rule_id", Types.STRING()),
    ("rule_version", Types.STRING()),
    ("severity", Types.STRING()),
    ("patient_token", Types.STRING()),
    ("facility_id", Types.STRING()),
    ("unit_id", Types.STRING()),
    ("opened_time_ms", Types.LONG()),
    ("event_time_ms", Types.LONG()),
    ("resolve_reason", Types.STRING()),
    ("hit_count", Types.INT()),
    ("score_name", Types.STRING()),
    ("score_value", Types.INT()),
    ("first_record_id", Types.STRING()),
    ("last_record_id", Types.STRING()),
    ("evidence_json", Types.STRING()),
)
# udfs/flink_scoring.py RESULT_TYPE before this change.
OLD_RESULT_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("champion_version", DataTypes.STRING()),
        DataTypes.FIELD("champion_risk", DataTypes.DOUBLE()),
        DataTypes.FIELD("champion_threshold", DataTypes.DOUBLE()),
        DataTypes.FIELD("challenger_version", DataTypes.STRING()),
        DataTypes.FIELD("challenger_risk", DataTypes.DOUBLE()),
        DataTypes.FIELD("challenger_threshold", DataTypes.DOUBLE()),
        DataTypes.FIELD("features_missing", DataTypes.INT()),
        DataTypes.FIELD("latency_ms", DataTypes.DOUBLE()),
    ]
)
# udfs/flink.py NEWS2_TYPE before this change.
OLD_NEWS2_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("score", DataTypes.INT()),
        DataTypes.FIELD("params_scored", DataTypes.INT()),
        DataTypes.FIELD("red_flag", DataTypes.BOOLEAN()),
    ]
)
# udfs/flink.py's Avro base type -> DataType before this change (decode UDTF results).
OLD_AVRO_DATA_TYPES = {
    "string": DataTypes.STRING(),
    "int": DataTypes.INT(),
    "long": DataTypes.BIGINT(),
    "float": DataTypes.FLOAT(),
    "double": DataTypes.DOUBLE(),
    "boolean": DataTypes.BOOLEAN(),
    "bytes": DataTypes.BYTES(),
}
DECLARED = (rows.ALERT_EVENT, rows.CENSUS_OUT, rows.SCORE_RESULT, rows.NEWS2_RESULT)


def _named(fields: tuple[tuple[str, object], ...]) -> object:
    return Types.ROW_NAMED([n for n, _ in fields], [t for _, t in fields])


def test_the_alert_event_row_has_alert_v2s_fields_in_order_with_timestamps_as_epoch_ms() -> None:
    schema = topics.ALERT_V2.schema
    want = [f.name + "_ms" if f.logical == "timestamp-millis" else f.name for f in schema.fields]
    assert list(rows.ALERT_EVENT.columns) == want
    assert rows.ALERT_EVENT.field("opened_time_ms").kind == "long"
    assert rows.ALERT_EVENT.field("hit_count").kind == "int"
    assert rows.ALERT_EVENT.field("hit_count").doc == schema.field("hit_count").doc


def test_the_alert_event_type_is_the_old_hand_spelled_one() -> None:
    assert _named(OLD_ALERT_EVENT_FIELDS) == flink_types.type_info(rows.ALERT_EVENT)


def test_the_lifecycle_event_dicts_have_exactly_the_alert_event_columns() -> None:
    hit = lifecycle.Hit("r", "1", "low", "p", "f", "u", 0, 0, "a", "b", "s", 1, "{}")
    events = lifecycle.run([(0, hit)])
    assert events
    assert all(list(ev) == list(rows.ALERT_EVENT.columns) for ev in events)


def test_the_alert_events_flink_columns_convert_back_to_alert_v2_in_sql() -> None:
    sql = rows.avro_values_sql(rows.ALERT_EVENT, topics.ALERT_V2.schema, prefix="a.")
    assert sql == ", ".join(
        f"CAST(TO_TIMESTAMP_LTZ(a.`{f.name}_ms`, 3) AS TIMESTAMP(3))"
        if f.logical == "timestamp-millis"
        else f"a.`{f.name}`"
        for f in topics.ALERT_V2.schema.fields
    )
    assert "CAST(TO_TIMESTAMP_LTZ(a.`opened_time_ms`, 3) AS TIMESTAMP(3))" in sql


def test_the_rule_hit_flink_type_is_what_the_screening_job_spelled_by_hand() -> None:
    assert rows.RULE_HIT.flink_sql() == OLD_HIT_ROW


def test_the_rule_hit_cast_takes_every_column_in_order_unless_given_an_expression() -> None:
    assert rows.RULE_HIT.cast_sql() == (
        "CAST(ROW(`kind`, `rule_id`, `rule_version`, `severity`, `patient_token`, "
        "`facility_id`, `unit_id`, `first_time`, `first_record_id`, `last_record_id`, "
        f"`score_name`, `score_value`, `evidence_json`) AS {OLD_HIT_ROW})"
    )
    cast = rows.RULE_HIT.cast_sql({"kind": "'hit'"}, prefix="h.")
    assert cast.startswith("CAST(ROW('hit', h.`rule_id`, ")
    assert rows.RULE_HIT.null_sql() == f"CAST(NULL AS {OLD_HIT_ROW})"
    with pytest.raises(TypeError, match="no fields"):
        rows.RULE_HIT.cast_sql({"rule": "'x'"})


def test_a_column_list_quotes_each_column_after_the_prefix() -> None:
    assert rows.NEWS2_RESULT.column_list() == "`score`, `params_scored`, `red_flag`"
    assert rows.NEWS2_RESULT.column_list("n.") == "n.`score`, n.`params_scored`, n.`red_flag`"


def test_the_jvm_alert_lifecycle_reads_rule_hits_and_writes_alert_events_by_declared_names() -> (
    None
):
    src = java_decode.hand_written_source("AlertLifecycle")
    read = set(re.findall(r'getFieldAs\("(\w+)"\)', src))
    written = re.findall(r'setField\("(\w+)"', src)
    assert read == set(rows.RULE_HIT.columns) - {"first_time"}  # the lifecycle needs no first_time
    assert sorted(written) == sorted(lifecycle.LIFECYCLE_OUT.columns)
    # the partition key comes back as the output's first column, so SQL gets ALERT_EVENT whole
    assert set(lifecycle.LIFECYCLE_OUT.columns) | {"patient_token"} == set(rows.ALERT_EVENT.columns)
    assert f'@DataTypeHint("{lifecycle.LIFECYCLE_OUT.flink_sql()}")' in src


def test_make_fills_unnamed_fields_with_none_in_declared_order() -> None:
    assert rows.NEWS2_RESULT.make(red_flag=True, score=3) == (3, None, True)
    assert rows.CENSUS_OUT.make() == (None,) * len(rows.CENSUS_OUT.fields)


def test_make_refuses_unknown_names() -> None:
    with pytest.raises(TypeError, match="redflag"):
        rows.NEWS2_RESULT.make(redflag=True)


def test_a_row_refuses_duplicate_fields_and_a_field_an_unknown_kind() -> None:
    with pytest.raises(ValueError, match="duplicate"):
        rows.Row("r", (rows.Field("a", "int"), rows.Field("a", "long")))
    with pytest.raises(ValueError, match="unknown kind"):
        rows.Field("a", "decimal")  # type: ignore[arg-type]


def test_from_avro_refuses_unknown_names_and_can_keep_timestamps() -> None:
    schema = topics.ALERT_V2.schema
    with pytest.raises(KeyError):
        rows.from_avro(schema, only=["nope"])
    with pytest.raises(KeyError):
        rows.from_avro(schema, rename={"nope": "x"})
    kept = rows.from_avro(schema, only=["event_time", "alert_id"], timestamps_as_ms=False)
    assert kept.flink_sql() == "ROW<`event_time` TIMESTAMP(3), `alert_id` STRING>"
    renamed = rows.from_avro(schema, only=["event_time"], rename={"event_time": "at_ms"})
    assert renamed.fields == (rows.Field("at_ms", "long", schema.field("event_time").doc),)


@pytest.mark.parametrize("row", DECLARED, ids=lambda r: r.name)
def test_the_type_information_has_the_declared_field_names_and_types(row: rows.Row) -> None:
    info = flink_types.type_info(row)
    assert info.get_field_names() == list(row.columns)
    kinds = {
        "string": Types.STRING(),
        "int": Types.INT(),
        "long": Types.LONG(),
        "double": Types.DOUBLE(),
        "boolean": Types.BOOLEAN(),
        "bytes": Types.PRIMITIVE_ARRAY(Types.BYTE()),
    }
    assert info.get_field_types() == [kinds[f.kind] for f in row.fields]


@pytest.mark.parametrize("row", DECLARED, ids=lambda r: r.name)
def test_the_data_type_has_the_declared_field_names_and_types(row: rows.Row) -> None:
    dt = flink_types.data_type(row)
    assert [f.name for f in dt.fields] == list(row.columns)
    assert [f.data_type for f in dt.fields] == flink_types.field_data_types(row)


def test_a_timestamp_has_no_datastream_type_but_a_table_type() -> None:
    with pytest.raises(ValueError, match="epoch-ms long"):
        flink_types.type_info(rows.RULE_HIT)
    assert flink_types.field_data_types(rows.RULE_HIT)[7] == DataTypes.TIMESTAMP(3)


def test_census_out_is_the_old_hand_spelled_census_row() -> None:
    assert rows.CENSUS_OUT.columns == tuple(n for n, _ in OLD_CENSUS_OUT_FIELDS)
    assert _named(OLD_CENSUS_OUT_FIELDS) == flink_types.type_info(rows.CENSUS_OUT)


def test_the_census_placement_function_emits_census_out_less_its_key_and_capacities() -> None:
    placed = [c for c in rows.CENSUS_OUT.columns if c in rows.CENSUS_PLACED.columns]
    assert placed == list(rows.CENSUS_PLACED.columns)
    assert set(rows.CENSUS_OUT.columns) - set(placed) == {
        "patient_token",
        "unit_capacity",
        "facility_capacity",
    }


def test_the_scoring_result_is_the_old_hand_spelled_one() -> None:
    assert RESULT_TYPE == OLD_RESULT_TYPE
    assert tuple(f.name for f in OLD_RESULT_TYPE.fields) == OUTPUT_COLUMNS


def test_the_news2_result_is_the_old_hand_spelled_one() -> None:
    assert NEWS2_TYPE == OLD_NEWS2_TYPE


@pytest.mark.parametrize("topic", [topics.VITALS_OBSERVATION, topics.LABS_RESULT, topics.ADT_EVENT])
def test_the_decode_udtf_result_is_the_old_one(topic: topics.Topic) -> None:
    fields = [f for f in topic.schema.fields if f.logical is None]
    old_types = [DataTypes.STRING(), DataTypes.STRING()]
    old_types += [OLD_AVRO_DATA_TYPES[f.base] for f in fields]
    # then the record's own event time (each of these has a recorded_time): rows.MEASURED_TIME
    measured = ("measured_time",)
    old_types += [DataTypes.TIMESTAMP(3) for _ in measured]
    # then, where values are refused alone (vitals, labs: schemas.codec), each refused value's
    # code and reason
    refused = ("refused_codes", "refused_reasons") if topic is not topics.ADT_EVENT else ()
    old_types += [DataTypes.ARRAY(DataTypes.STRING()) for _ in refused]
    assert decoded_columns(topic.name) == (
        "reason_code", "reason", *(f.name for f in fields), *measured, *refused
    )  # fmt: skip
    assert decode_udtf(topic.name)._result_types == old_types
    if topic is topics.VITALS_OBSERVATION:
        assert decoded_columns(topic.name) == DECODED_COLUMNS
        assert old_types == DECODED_TYPES
