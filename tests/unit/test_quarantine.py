"""The quarantine registry (udfs/quarantine.py): set, clear, history, atomic files, the operator's
command line, and the JVM check (io.wardflow.udf.Quarantine) agreeing with the registry's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from udfs.quarantine import TSV, Quarantine, QuarantineRegistry

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
LABS, DEVICE, VITALS = (
    t.name for t in (topics.LABS_RESULT, topics.VITALS_DEVICE, topics.VITALS_OBSERVATION)
)
SRC = (DEVICE, "hospital-a", "MICU")


def test_a_set_quarantine_is_listed_with_why_who_and_the_event_that_set_it(tmp_path: Path) -> None:
    reg = QuarantineRegistry(tmp_path)
    q = reg.set(*SRC, since=T0, reason="temp centred at 98", by="data_quality", event_id="e1")
    assert q is not None and q.open
    assert reg.active() == [q]
    assert (q.since, q.reason, q.set_by, q.set_event_id) == (
        "2026-01-05T08:00:00.000Z",
        "temp centred at 98",
        "data_quality",
        "e1",
    )
    assert [h["action"] for h in reg.history()] == ["set"]


def test_a_cleared_quarantine_keeps_its_interval_and_the_history_records_both_steps(
    tmp_path: Path,
) -> None:
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1")
    done = reg.clear(*SRC, until=T0 + timedelta(hours=2), reason="fixed", by="jdoe")
    assert done is not None and not done.open and done.cleared_by == "jdoe"
    assert reg.active() == [] and reg.all() == [done]
    assert [(h["action"], h["until"]) for h in reg.history()] == [
        ("set", None),
        ("clear", "2026-01-05T10:00:00.000Z"),
    ]
    # A later fault of the same source is a new interval; the old one stays for audit.
    again = reg.set(*SRC, since=T0 + timedelta(days=1), reason="again", by="dq", event_id="e3")
    assert again is not None and reg.all() == [done, again]


def test_applying_the_same_data_quality_event_twice_changes_nothing(tmp_path: Path) -> None:
    reg = QuarantineRegistry(tmp_path)
    assert reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1") is not None
    assert reg.clear(*SRC, until=T0 + timedelta(hours=1), reason="ok", by="dq", event_id="e2")
    assert reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1") is None
    assert reg.clear(*SRC, until=T0, reason="ok", by="dq", event_id="e2") is None
    assert len(reg.history()) == 2 and reg.active() == []


def test_a_source_already_quarantined_is_not_quarantined_twice_and_a_clear_needs_an_open_one(
    tmp_path: Path,
) -> None:
    reg = QuarantineRegistry(tmp_path)
    assert reg.clear(*SRC, until=T0, reason="nothing", by="x") is None
    reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1")
    assert reg.set(*SRC, since=T0 + timedelta(hours=1), reason="r2", by="dq", event_id="e2") is None
    assert len(reg.all()) == 1


def test_a_data_quality_clear_does_not_lift_an_operators_quarantine(tmp_path: Path) -> None:
    """An operator quarantines a unit; a data-quality condition opens on it (no new quarantine:
    it is held by the operator's) and resolves: the operator's hold stays until an operator
    clears it."""
    reg = QuarantineRegistry(tmp_path)
    held = reg.set(*SRC, since=T0, reason="temp in degF after a firmware update", by="jdoe")
    assert held is not None
    assert reg.set(*SRC, since=T0, reason="storm", by="data_quality/x", event_id="e1") is None
    later = T0 + timedelta(hours=1)
    assert reg.clear(*SRC, until=later, reason="ok", by="data_quality/x", event_id="e2") is None
    [still] = reg.active()
    assert (still.set_by, still.held_event_id) == ("jdoe", None)
    done = reg.clear(*SRC, until=later, reason="firmware rolled back", by="jdoe")
    assert done is not None and done.cleared_by == "jdoe" and reg.active() == []


def test_an_operators_clear_leaves_a_data_quality_condition_still_open_quarantined(
    tmp_path: Path,
) -> None:
    """An operator's hold, a duplicate storm opening on the source meanwhile, then the operator
    clears theirs: the source stays quarantined under the storm's event, from the operator's
    clear, until the storm's own clear."""
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="firmware fault", by="jdoe")
    assert reg.set(*SRC, since=T0, reason="storm", by="data_quality/x", event_id="e1") is None
    assert reg.set(*SRC, since=T0, reason="storm", by="data_quality/x", event_id="e1") is None
    lifted = T0 + timedelta(hours=1)
    assert reg.clear(*SRC, until=lifted, reason="fixed", by="jdoe") is not None
    [storm] = reg.active()
    assert (storm.set_by, storm.set_event_id, storm.reason) == ("data_quality/x", "e1", "storm")
    assert storm.since == reg.all()[0].until  # no gap between the two
    over = T0 + timedelta(hours=2)
    cleared = reg.clear(*SRC, until=over, reason="ok", by="data_quality/x", event_id="e2")
    assert cleared is not None and cleared.set_event_id == "e1" and reg.active() == []
    assert [h["action"] for h in reg.history()] == ["set", "hold", "clear", "clear"]
    assert reg.history()[2]["reopened"]["set_event_id"] == "e1"  # one write: never neither


def test_a_clear_before_the_start_ends_an_empty_interval_not_a_negative_one(
    tmp_path: Path,
) -> None:
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="r", by="dq")
    done = reg.clear(*SRC, until=T0 - timedelta(hours=1), reason="late", by="dq")
    assert done is not None and done.until == done.since


def test_a_null_unit_quarantines_the_whole_facility_source(tmp_path: Path) -> None:
    q = QuarantineRegistry(tmp_path).set(LABS, "hospital-a", None, since=T0, reason="r", by="dq")
    assert q is not None and q.unit_id == "*"
    assert q.covers(LABS, "hospital-a", "ICU", T0)
    assert not q.covers(LABS, "hospital-b", "ICU", T0)
    assert not q.covers(LABS, "hospital-a", "ICU", T0 - timedelta(seconds=1))


def test_the_files_are_replaced_whole_and_the_tsv_mirrors_the_json(tmp_path: Path) -> None:
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="tab\tand\nnewline in why", by="dq", event_id="e1")
    before = os.stat(tmp_path / TSV).st_ino
    reg.clear(*SRC, until=T0 + timedelta(minutes=5), reason="ok", by="dq")
    assert os.stat(tmp_path / TSV).st_ino != before, "a new file renamed into place"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (line,) = (tmp_path / TSV).read_text().splitlines()
    topic, facility, unit, since, until, note = line.split("\t")
    assert (topic, facility, unit) == SRC
    assert (int(since), int(until)) == (
        int(T0.timestamp() * 1000),
        int(T0.timestamp() * 1000) + 300_000,
    )
    assert json.loads(note)["reason"] == "tab\tand\nnewline in why"
    with pytest.raises(ValueError, match="tab or newline"):
        Quarantine(
            "a\tb", "f", "u", since="2026-01-05T08:00:00.000Z", reason="r", set_by="x"
        ).tsv_line()


def _cli(root: Path, *args: str) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "WARDFLOW_QUARANTINE_REGISTRY": str(root),
        "WARDFLOW_PHI_KEY": "k",
    }
    out = subprocess.run(
        [sys.executable, "-m", "udfs.quarantine", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_operator_sets_lists_and_clears_a_quarantine_from_the_command_line(
    tmp_path: Path,
) -> None:
    _cli(
        tmp_path,
        "set",
        *SRC,
        "--reason",
        "bedside check",
        "--by",
        "jdoe",
        "--at",
        "2026-01-05T08:00:00Z",
    )
    (listed,) = _cli(tmp_path, "list").splitlines()
    assert json.loads(listed)["set_by"] == "jdoe"
    _cli(tmp_path, "clear", *SRC, "--reason", "checked", "--by", "jdoe")
    assert _cli(tmp_path, "list") == ""
    (cleared,) = _cli(tmp_path, "list", "--all").splitlines()
    assert json.loads(cleared)["cleared_by"] == "jdoe"
    assert [h["action"] for h in QuarantineRegistry(tmp_path).history()] == ["set", "clear"]


PROBE = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import org.apache.flink.table.data.StringData;

public class Probe {
  public static void main(String[] args) throws Exception {
    io.wardflow.udf.Quarantine q = new io.wardflow.udf.Quarantine();
    StringData path = StringData.fromString(args[0]);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    for (String line; (line = in.readLine()) != null; ) {
      if (line.equals("wait")) {
        Thread.sleep(2100);  // past the function's RELOAD_MS
        System.out.println("-");
        System.out.flush();
        continue;
      }
      String[] c = line.split("\\t");
      StringData note = q.eval(path, StringData.fromString(c[0]), StringData.fromString(c[1]),
          StringData.fromString(c[2]), Long.parseLong(c[3]));
      System.out.println(note == null ? "-" : note.toString());
      System.out.flush();
    }
  }
}
"""


def test_the_jvm_check_agrees_with_the_registry_and_rereads_it_when_it_changes(
    tmp_path: Path, settings: Any
) -> None:
    from udfs import java_decode

    jar = java_decode.decoder_jar(settings)
    cp = os.pathsep.join(map(str, [jar, *java_decode._classpath(settings)]))
    (tmp_path / "Probe.java").write_text(PROBE)
    subprocess.run(
        ["javac", "-nowarn", "-cp", cp, "-d", str(tmp_path), str(tmp_path / "Probe.java")],
        check=True,
        capture_output=True,
    )
    root = tmp_path / "registry"
    reg = QuarantineRegistry(root)
    reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1")
    reg.clear(*SRC, until=T0 + timedelta(hours=1), reason="ok", by="dq")
    reg.set(LABS, "hospital-a", None, since=T0, reason="labs", by="dq")
    probe = subprocess.Popen(
        ["java", "-cp", f"{cp}{os.pathsep}{tmp_path}", "Probe", str(root / TSV)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert probe.stdin is not None and probe.stdout is not None
    stdin, stdout = probe.stdin, probe.stdout

    def ask(topic: str, facility: str, unit: str, at: datetime) -> str | None:
        ms = int(at.timestamp() * 1000)
        stdin.write(f"{topic}\t{facility}\t{unit}\t{ms}\n")
        stdin.flush()
        got = stdout.readline().strip()
        return None if got == "-" else got

    def want(topic: str, facility: str, unit: str, at: datetime) -> str | None:
        hit = [q for q in reg.all() if q.covers(topic, facility, unit, at)]
        return hit[0].note() if hit else None

    try:
        cases = [
            (topic, facility, unit, T0 + timedelta(minutes=m))
            for topic in (DEVICE, LABS, VITALS)
            for facility in ("hospital-a", "hospital-b")
            for unit in ("MICU", "ICU")
            for m in (-1, 0, 59, 60, 61, 10_000)
        ]
        for case in cases:
            assert ask(*case) == want(*case), case
        assert sum(want(*c) is not None for c in cases) > 10
        reg.clear(LABS, "hospital-a", None, until=T0, reason="ok", by="dq")
        stdin.write("wait\n")
        stdin.flush()
        stdout.readline()
        assert ask(LABS, "hospital-a", "ICU", T0 + timedelta(minutes=5)) is None
    finally:
        stdin.close()
        probe.wait(timeout=10)
