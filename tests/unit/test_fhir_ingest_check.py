"""`wardflow-fhir-ingest check`: what ingesting would do, per resource or Bundle entry, with no
Kafka anywhere (the bootstrap address points at a closed port)."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

from bench.fhir_ingest_memory import export
from jobs.feeds import fhir_ingest
from jobs.feeds.publisher import Publisher
from schemas import codec
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
    assert peak < 4 * size  # 1.1 here, with the blocks read; 12.5 when read whole


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
