"""Compatible schema evolution (schemas.avro, "Schema evolution"): for every schema with earlier
revisions kept in schemas/history, records cross between revisions in both directions by real
Avro schema resolution (fastavro), and every field added since revision 1 is optional."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from typing import Any

import fastavro
import pytest

from schemas import TOPICS, codec, load_schema, topics
from schemas.avro import (
    HISTORY_DIR,
    REVISION,
    SINCE,
    Schema,
    earlier_revisions,
    evolved_schemas,
    load_revision,
)

T0 = datetime(2026, 3, 1, 10, 0, 5, 123000, tzinfo=UTC)
EVOLVED = evolved_schemas()
PAIRS = [(name, old.revision) for name in EVOLVED for old in earlier_revisions(name)]


def example(schema: Schema) -> dict[str, Any]:
    """A record with every field set: mid-range numbers, allowed enums, named strings."""
    rec: dict[str, Any] = {}
    for f in schema.fields:
        if f.logical == "timestamp-millis":
            rec[f.name] = T0
        elif f.allowed:
            rec[f.name] = f.allowed[0]
        elif f.value_range:
            lo, hi = f.value_range
            mid = round((lo + hi) * 2) / 4  # a quarter: exact as a 32-bit float
            rec[f.name] = float(mid) if f.base in ("float", "double") else int(mid)
        elif f.base == "string":
            rec[f.name] = f"{f.name}-1"
        elif f.base == "boolean":
            rec[f.name] = True
        elif f.base in ("int", "long"):
            rec[f.name] = 7
        elif f.base in ("float", "double"):
            rec[f.name] = 1.5
        else:
            rec[f.name] = b"\x01"
    return rec


def write(schema: Schema, record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, schema.parsed, record)
    return buf.getvalue()


def read(payload: bytes, writer: Schema, reader: Schema) -> dict[str, Any]:
    buf = io.BytesIO(payload)
    rec = fastavro.schemaless_reader(buf, writer.parsed, reader.parsed)
    assert buf.tell() == len(payload)
    assert isinstance(rec, dict)
    return rec


def test_the_evolved_schemas_are_the_adt_labs_vitals_screen_and_score_topics() -> None:
    revisions = {
        topics.ADT_EVENT.name: 2,  # 2: the patient's age and sex
        topics.LABS_RESULT.name: 3,  # 2: PhysioNet 2012's labs; 3: recorded_time
        topics.MODEL_SCORE.name: 2,
        topics.SEPSIS_SCREEN.name: 3,  # 2: quarantine_json; 3: gcs_total
        topics.VITALS_OBSERVATION.name: 3,  # 2: PhysioNet 2012's charting; 3: recorded_time
    }
    assert sorted(revisions) == EVOLVED
    for name, revision in revisions.items():
        assert name in TOPICS and load_schema(name).revision == revision
        assert [s.revision for s in earlier_revisions(name)] == list(range(revision - 1, 0, -1))


def test_history_files_are_named_by_the_revision_they_hold() -> None:
    for path in HISTORY_DIR.glob("*.avsc"):
        name, rev = path.name.removesuffix(".avsc").rsplit(".r", 1)
        assert json.loads(path.read_text()).get(REVISION, 1) == int(rev), path.name
        assert load_revision(name, int(rev)).raw == json.loads(path.read_text())
    with pytest.raises(KeyError, match="no revision 7"):
        load_revision(topics.LABS_RESULT.name, 7)


@pytest.mark.parametrize(("name", "old_revision"), PAIRS)
def test_old_readers_read_records_written_with_the_new_schema(name: str, old_revision: int) -> None:
    new, old = load_schema(name), load_revision(name, old_revision)
    rec = example(new)
    got = read(write(new, rec), writer=new, reader=old)
    assert got == {k: rec[k] for k in old.field_names}


@pytest.mark.parametrize(("name", "old_revision"), PAIRS)
def test_new_readers_read_records_written_with_the_old_schema_as_null(
    name: str, old_revision: int
) -> None:
    new, old = load_schema(name), load_revision(name, old_revision)
    rec = example(old)
    got = read(write(old, rec), writer=old, reader=new)
    added = [f for f in new.field_names if f not in old.field_names]
    assert added and got == {**rec, **dict.fromkeys(added)}


@pytest.mark.parametrize(("name", "old_revision"), PAIRS)
def test_the_codec_reads_a_record_written_before_the_change_with_the_new_fields_null(
    name: str, old_revision: int
) -> None:
    new, old = load_schema(name), load_revision(name, old_revision)
    rec = example(old)
    got = codec.decode_valid(new, codec.encode(old, rec), codec.epoch_ms(T0))
    assert got == {**rec, **{f: None for f in new.field_names if f not in old.field_names}}
    # and a record of the current revision still decodes with it, not with the old one
    now = example(new)
    assert codec.decode_valid(new, codec.encode(new, now), codec.epoch_ms(T0)) == now


@pytest.mark.parametrize("name", EVOLVED)
def test_every_field_added_after_revision_1_is_appended_optional_and_marked(name: str) -> None:
    new = load_schema(name)
    first = load_revision(name, 1)
    # the old fields keep their names, types and order; the new ones come after them
    assert new.field_names[: len(first.fields)] == first.field_names
    for old_f, new_f in zip(first.raw["fields"], new.raw["fields"], strict=False):
        assert (old_f["name"], old_f["type"]) == (new_f["name"], new_f["type"])
    for spec in new.raw["fields"][len(first.fields) :]:
        assert spec["type"][0] == "null" and "default" in spec and spec["default"] is None, spec
        assert 1 < spec[SINCE] <= new.revision, spec["name"]
    for spec in new.raw["fields"][: len(first.fields)]:
        assert SINCE not in spec, spec["name"]


def test_an_incompatible_change_fails_the_guard() -> None:
    """What the guard above catches, shown on a schema that adds a required field: a record
    written with the old schema cannot be read with it."""
    old = {"type": "record", "name": "X", "fields": [{"name": "a", "type": "int"}]}
    bad = {**old, "fields": [*old["fields"], {"name": "b", "type": "float"}]}
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), {"a": 1})
    buf.seek(0)
    with pytest.raises(fastavro.read.SchemaResolutionError):
        fastavro.schemaless_reader(buf, fastavro.parse_schema(old), fastavro.parse_schema(bad))
