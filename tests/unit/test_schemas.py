from __future__ import annotations

import re

import pytest

from jobs.runtime.tables import KafkaTable, avro_sink_ddl, raw_source_ddl
from schemas import TOPICS, topics


def test_every_registered_topic_has_a_parseable_versioned_schema() -> None:
    for name, t in TOPICS.items():
        assert re.fullmatch(r".+\.v[0-9]+", name) and name == t.schema_name
        assert t.schema.fields and t.key_field in t.schema.field_names


def test_patient_identifiers_are_tagged_as_tokens_in_every_schema() -> None:
    for t in TOPICS.values():
        if "patient_token" in t.schema.field_names:
            assert t.schema.field("patient_token").phi == "token"


def test_flink_sink_columns_are_derived_from_the_schema_in_order() -> None:
    ddl = avro_sink_ddl(
        "alerts", topics.ALERT_V1.name, KafkaTable(topics.ALERT_V1.name, "127.0.0.1:1")
    )
    schema = topics.ALERT_V1.schema
    positions = [ddl.index(f"`{f}`") for f in schema.field_names]
    assert positions == sorted(positions)
    assert "`first_event_time` TIMESTAMP(3) NOT NULL" in ddl
    assert "'key.fields' = 'patient_token'" in ddl


def test_raw_source_watermarks_on_the_record_timestamp_and_can_be_bounded() -> None:
    ddl = raw_source_ddl("src", KafkaTable("t", "127.0.0.1:1", bounded=True), watermark_delay_s=9)
    assert "WATERMARK FOR `kafka_ts` AS `kafka_ts` - INTERVAL '9' SECOND" in ddl
    assert "'scan.bounded.mode' = 'latest-offset'" in ddl


def test_clinical_rate_feeds_take_their_own_idle_timeout_and_the_device_feed_the_jobs() -> None:
    from dataclasses import replace

    from jobs.runtime.tables import idle_timeout_ms
    from schemas.settings import Settings

    s = replace(Settings.from_env(), source_idle_timeout_s=5, sparse_idle_timeout_ms=500)
    assert [t.name for t in TOPICS.values() if t.device_rate] == [topics.VITALS_DEVICE.name]
    assert idle_timeout_ms(s, topics.LABS_RESULT) == 500
    assert idle_timeout_ms(s, topics.ADT_EVENT) == 500
    assert idle_timeout_ms(s, topics.VITALS_DEVICE) is None  # table.exec.source.idle-timeout
    assert idle_timeout_ms(replace(s, sparse_idle_timeout_ms=-1), topics.LABS_RESULT) is None
    ddl = raw_source_ddl("labs", KafkaTable("t", "127.0.0.1:1"), watermark_delay_s=2,
                         idle_timeout_ms=500)  # fmt: skip
    assert "'scan.watermark.idle-timeout' = '500 ms'" in ddl
    assert "idle-timeout" not in raw_source_ddl(
        "device", KafkaTable("t", "127.0.0.1:1"), watermark_delay_s=2
    )


def test_unknown_topics_are_refused() -> None:
    from schemas import topic

    with pytest.raises(KeyError, match="unknown topic"):
        topic("vitals.v0")
