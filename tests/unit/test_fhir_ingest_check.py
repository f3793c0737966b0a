"""`wardflow-fhir-ingest check`: what ingesting would do, per resource or Bundle entry, with no
Kafka anywhere (the bootstrap address points at a closed port)."""

from __future__ import annotations

import json
import random
import tracemalloc
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from bench.fhir_ingest_memory import export, gcs_totals_export
from jobs.feeds import fhir_ingest
from jobs.feeds.publisher import Publisher
from schemas import codec
from schemas.interop import fhir_r4
from schemas.settings import Settings
from tests.conftest import offline_check

LOINC = "http://loinc.org"


def heart_rate(i: str, unit: str) -> dict:
    return {
        "resourceType": "Observation",
        "id": i,
        "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-03-01T09:30:00Z",
        "valueQuantity": {"value": 88, "system": "http://unitsofmeasure.org", "code": unit},
    }


def test_the_check_command_prints_one_tab_separated_line_per_resource(tmp_path: Path) -> None:
    drop = tmp_path / "drop"
    drop.mkdir()
    bundle = {
        "resourceType": "Bundle",
        "id": "b",
        "type": "collection",
        "entry": [
            {"resource": heart_rate("ok", "/min")},
            {"resource": heart_rate("bad", "mmHg")},
            {"resource": {"resourceType": "Patient", "id": "p1"}},  # their subject
        ],
    }
    (drop / "a.json").write_text(json.dumps(bundle))
    (drop / "b.json").write_text("{not json")
    panel = heart_rate("bp", "mm[Hg]")
    mmhg = panel.pop("valueQuantity")
    panel["code"] = {"coding": [{"system": LOINC, "code": "85354-9"}]}
    panel["component"] = [
        {"code": {"coding": [{"system": LOINC, "code": "8480-6"}]}, "valueQuantity": mmhg},
        {
            "code": {"coding": [{"system": LOINC, "code": "8462-4"}]},
            "valueQuantity": mmhg | {"value": -999},
        },
    ]
    (drop / "c.json").write_text(json.dumps(panel))
    (drop / "notes.txt").write_text("a drop folder holds .json files; this one is not read")
    rows = offline_check("jobs.feeds.fhir_ingest", drop)
    assert [r[:3] for r in rows] == [
        ["a.json", "mapped", "1"],
        ["a.json", "refused", "0"],
        ["a.json", "context", "0"],
        ["b.json", "refused", "0"],
        ["c.json", "mapped", "1"],  # its diastolic value alone is dead-lettered
    ]
    assert rows[0][3] == "Bundle/b#entry0:Observation/ok"
    assert rows[1][3].startswith("bad_unit: 8867-4: unit 'mmHg'")
    assert rows[2][3] == (  # a person's id is not printed: some servers make it of the MRN
        "Bundle/b#entry2:Patient/…: Patient: referred to by the bundle's Encounters or "
        "Observations (context)"
    )
    assert rows[3][3].startswith("malformed: not JSON")
    assert rows[4][3].startswith("Observation/bp: out_of_range: component 1: 8462-4: dbp_mmhg=-999")


def test_an_ndjson_export_is_read_a_resource_per_line(tmp_path: Path) -> None:
    """Bulk Data $export writes one resource per line (FHIR R4 nd-json.html); a line that is not
    JSON is refused alone."""
    lines = [
        json.dumps(heart_rate("a", "/min")),
        "{not json",
        "",
        json.dumps(heart_rate("b", "/min")),
    ]
    (tmp_path / "Observation.ndjson").write_text("\n".join(lines) + "\n")
    rows = offline_check("jobs.feeds.fhir_ingest", tmp_path)
    assert [r[:3] for r in rows] == [
        ["Observation.ndjson", "mapped", "1"],
        ["Observation.ndjson", "refused", "0"],
        ["Observation.ndjson", "mapped", "1"],
    ]
    assert rows[0][3] == "line1:Observation/a" and rows[2][3] == "line4:Observation/b"
    assert rows[1][3].startswith("malformed: not JSON")


def test_an_ndjson_export_is_read_line_by_line_holding_its_records_not_its_text(
    tmp_path: Path,
) -> None:
    """A hospital's Bulk Data export of Observations is several GB a file. Read whole, with
    every line's JSON and validated models, it took some 12 bytes of memory per byte of the file
    (bench/fhir_ingest_memory.py) and ingest died where it was needed; read a line at a time,
    what is held is each reading's record, to be published in time order."""
    s = Settings.from_env({}, phi_key=b"k")
    pub = Publisher(s, stage="test")
    export(tmp_path / "warm-up.ndjson", 100)
    fhir_ingest.decide_file(s, pub, tmp_path / "warm-up.ndjson", "F")  # models loaded, cached
    size = export(tmp_path / "Observation.ndjson", 2000)  # lines in no order of time
    tracemalloc.start()
    try:
        _, decisions = fhir_ingest.decide_file(s, pub, tmp_path / "Observation.ndjson", "F")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.outcome for d in decisions] == ["mapped"] * 2000
    times = [codec.record_time(rec) for d in decisions for _, rec, _ in d.records]
    assert times == sorted(times) and len(times) == 2000 - 2 * 38  # 38 GCS readings of 3 parts
    # 1.1 here, with the blocks read; 2.9 holding each record's dict and each resource's JSON
    # besides; 12.5 read whole
    assert peak < 2 * size


def test_an_export_of_gcs_totals_is_validated_once_a_line_and_holds_only_each_total(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A flowsheet's summed GCS rows, exported a line each: a total is held until the file's end
    for the parts a later line may bring, as its patient, time and total only. It was held as
    its whole Outcome, its record's dict and all (over 3 bytes per byte of the export), and each
    line was validated a second time for the totals it sends, which the total it mapped
    already says (0.3 ms a line, where 0.2 validated once)."""
    s = Settings.from_env({}, phi_key=b"k")
    pub = Publisher(s, stage="test")
    gcs_totals_export(tmp_path / "warm-up.ndjson", 100)
    fhir_ingest.decide_file(s, pub, tmp_path / "warm-up.ndjson", "F")  # models loaded, cached
    path = tmp_path / "Observation.ndjson"
    size = gcs_totals_export(path, 2000)
    tracemalloc.start()
    try:
        _, decisions = fhir_ingest.decide_file(s, pub, path, "F")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert [d.outcome for d in decisions] == ["mapped"] * 2000
    assert peak < 2.5 * size  # 1.6 here; 3.3 with each line's Outcome held
    validated: Counter[str] = Counter()
    model_class = fhir_r4.get_fhir_model_class

    class Counted:
        def __init__(self, kind: str) -> None:
            self.kind = model_class(kind)

        def model_validate(self, data: dict[str, Any]) -> Any:
            validated[data["id"]] += 1
            return self.kind.model_validate(data)

    monkeypatch.setattr(fhir_r4, "get_fhir_model_class", Counted)
    fhir_ingest.decide_file(s, pub, path, "F")
    assert len(validated) == 2000 and set(validated.values()) == {1}


def test_an_exports_lines_are_split_where_bytes_splitlines_splits_them_whatever_its_blocks() -> (
    None
):
    """An export is read a block at a time, and a block may end anywhere: between a carriage
    return and its line feed, inside a character of several bytes, inside a line longer than
    what is kept of it. Its lines are where bytes.splitlines puts them (a CR, an LF or both; not
    a vertical tab, form feed or U+2028, where str.splitlines would split), each with its first
    `keep` bytes and its whole length."""
    pieces = [b"a", b"{}", b"\r", b"\n", b"\r\n", b"\x0b", b"\x0c", b"\x1c"]
    pieces += [c.encode() for c in ("é", "心", "😀", "\u2028", "\x85")]

    def lines(blocks: list[bytes], keep: int) -> list[tuple[bytes, int]]:
        blocks = [b for b in blocks if b]  # a read gives no empty block before the end
        return list(fhir_ingest._lines(iter(blocks), keep))

    def want(data: bytes, keep: int) -> list[tuple[bytes, int]]:
        return [(line[:keep], len(line)) for line in data.splitlines()]

    edges = "a\r\n😀\r\r\n心\n\n\r".encode()  # every block edge of it, into two and three
    for i in range(len(edges) + 1):
        for j in range(i, len(edges) + 1):
            for keep in (1, 3, 100):
                blocks = [edges[:i], edges[i:j], edges[j:]]
                assert lines(blocks, keep) == want(edges, keep), (blocks, keep)
    rng = random.Random(2026)
    for _ in range(4000):
        data = b"".join(rng.choices(pieces, k=rng.randint(0, 24)))
        cuts = sorted(rng.choices(range(len(data) + 1), k=rng.randint(0, 8)))
        blocks = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
        keep = rng.choice([1, 2, 5, 9, 1000])
        assert lines(blocks, keep) == want(data, keep), (blocks, keep)
        if keep == 1000:  # whole lines: each character whole again
            assert [line.decode() for line, _ in lines(blocks, keep)] == [
                line.decode() for line in data.splitlines()
            ]


def test_an_export_written_to_between_its_two_reads_is_refused_unreadable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An export's records name the digest of its first read; a line appended before the second
    (an export still being written) would be published under a source naming other content.
    The file is refused `unreadable`, to be read once written; read then, it is."""
    s = Settings.from_env({}, phi_key=b"k")
    pub = Publisher(s, stage="test")
    path = tmp_path / "Observation.ndjson"
    path.write_text(json.dumps(heart_rate("a", "/min")) + "\n")
    read = fhir_ingest._blocks

    def appended_first(f: BinaryIO, digest: Any) -> Iterator[bytes]:
        with path.open("a") as more:
            more.write(json.dumps(heart_rate("b", "/min")) + "\n")
        yield from read(f, digest)

    monkeypatch.setattr(fhir_ingest, "_blocks", appended_first)
    source, decisions = fhir_ingest.decide_file(s, pub, path, "F")
    assert [(d.label, d.outcome, d.summary) for d in decisions] == [
        (
            "file",
            "refused",
            "unreadable: the file changed while it was read (an export being written)",
        )
    ]
    assert fhir_ingest.unreadable(decisions[0])
    monkeypatch.undo()
    written, decisions = fhir_ingest.decide_file(s, pub, path, "F")
    assert written == fhir_ingest.source_of(path.read_bytes(), b"k") != source
    assert [d.label for d in decisions] == ["line1:Observation/a", "line2:Observation/b"]


def test_an_error_reading_a_schema_is_no_refusal_of_the_file_being_decided(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An OSError while a file's records are encoded (its schema file gone from a broken
    install) is a defect, reported `internal_error`, not the file `unreadable`: an operator
    told so looks at the file, which is sound."""
    (tmp_path / "Observation.ndjson").write_text(json.dumps(heart_rate("a", "/min")) + "\n")

    def gone(topic: str) -> Any:
        raise FileNotFoundError(2, "No such file or directory", f"schemas/avro/{topic}.avsc")

    monkeypatch.setattr("jobs.feeds.publisher.load_schema", gone)
    s = Settings.from_env({}, phi_key=b"k")
    with pytest.raises(FileNotFoundError):
        fhir_ingest.decide_file(s, Publisher(s, stage="test"), tmp_path / "Observation.ndjson", "F")
    [decision] = fhir_ingest.checked(s, [tmp_path])
    assert decision.summary == "internal_error: FileNotFoundError (the file was not read)"


def test_a_search_sorted_newest_first_is_published_oldest_first(tmp_path: Path) -> None:
    """`_sort=-date` lists the newest reading first; published in that order, the older ones
    would come behind the stream's watermark and be dead-lettered late."""
    entries = [
        {
            "resource": heart_rate(f"hr{hour}", "/min")
            | {"effectiveDateTime": f"2026-03-01T{hour}:00:00Z"}
        }
        for hour in ("10", "09", "08")
    ]
    bundle = {"resourceType": "Bundle", "type": "searchset", "entry": entries}
    (tmp_path / "search.json").write_text(json.dumps(bundle))
    rows = offline_check("jobs.feeds.fhir_ingest", tmp_path)
    assert [r[3].rsplit("/", 1)[-1] for r in rows] == ["hr08", "hr09", "hr10"]


def test_json_nested_too_deep_is_refused_and_the_files_behind_it_are_read(tmp_path: Path) -> None:
    """A file of 100,000 nested arrays, and a Bundle whose Observation nests its extensions 450
    deep (it parses; its references cannot be walked): each refused `malformed`, where Python's
    RecursionError stopped the run and every file behind it."""
    drop = tmp_path / "drop"
    drop.mkdir()
    (drop / "a.json").write_text(json.dumps(heart_rate("first", "/min")))
    (drop / "b.json").write_text("[" * 100_000 + "]" * 100_000)
    levels = 450  # json.loads takes it (under 1,000 nested containers); the walk does not
    deep = '{"url":"urn:x","extension":[' * levels + '{"url":"urn:x","valueString":"x"}'
    deep += "]}" * levels
    nested = json.dumps(heart_rate("nested", "/min") | {"extension": ["DEEP"]})
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": "NESTED"}]}
    text = json.dumps(bundle).replace('"NESTED"', nested).replace('"DEEP"', deep)
    (drop / "c.json").write_text(text)
    (drop / "d.json").write_text(json.dumps(heart_rate("last", "/min")))
    rows = offline_check("jobs.feeds.fhir_ingest", drop)
    assert [r[:3] for r in rows] == [
        ["a.json", "mapped", "1"],
        ["b.json", "refused", "0"],
        ["c.json", "refused", "0"],
        ["d.json", "mapped", "1"],
    ]
    assert rows[1][3].startswith("malformed: nested too deeply")
    assert rows[2][3].startswith("malformed: nested too deeply")


def test_a_path_that_cannot_be_read_fails_the_check(tmp_path: Path) -> None:
    """A mistyped export folder is refused `unreadable` and the check exits 1, as the HL7
    gateway's does: a cron job saw success while nothing was read."""
    (tmp_path / "a.json").write_text(json.dumps(heart_rate("ok", "/min")))
    rows = offline_check(
        "jobs.feeds.fhir_ingest", tmp_path / "a.json", tmp_path / "no-such-export", exit_status=1
    )
    assert [r[1] for r in rows] == ["mapped", "refused"]
    assert rows[1][3].startswith("unreadable: FileNotFoundError")
