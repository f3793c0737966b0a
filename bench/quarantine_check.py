"""What the JVM quarantine check (io.wardflow.udf.Quarantine) costs per record as a facility's
history of cleared quarantines grows: nanoseconds per call of the compiled check, in one JVM,
for records of now (after every cleared quarantine) and of a replayed old period (inside the
history), with HISTORY cleared quarantines of the record's facility and one open one.

The screening job calls the check once per vitals or lab record; bench/quarantine.py measures
the whole job, whose run-to-run spread hides a per-record cost of this size. Medians of ROUNDS.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bench.sampling import machine
from schemas import topics
from schemas.settings import Settings
from udfs import java_decode
from udfs.quarantine import TSV, QuarantineRegistry

OUT = Path(__file__).resolve().parent / "results"
HISTORY = (0, 100, 1000, 5000)
T0 = datetime(2026, 1, 1, tzinfo=UTC)
FACILITY = "hospital-1"

HARNESS = """
import org.apache.flink.table.data.StringData;

public class CheckBench {
  public static void main(String[] args) {
    io.wardflow.udf.Quarantine q = new io.wardflow.udf.Quarantine();
    StringData path = StringData.fromString(args[0]);
    StringData topic = StringData.fromString(args[1]);
    StringData facility = StringData.fromString(args[2]);
    StringData unit = StringData.fromString("ICU");
    long at = Long.parseLong(args[3]);
    int calls = Integer.parseInt(args[4]);
    int rounds = Integer.parseInt(args[5]);
    long hits = 0;
    for (int w = 0; w < calls; w++) {  // warm-up
      if (q.eval(path, topic, facility, unit, at + (w & 1023)) != null) hits++;
    }
    long[] ns = new long[rounds];
    for (int r = 0; r < rounds; r++) {
      long t0 = System.nanoTime();
      for (int i = 0; i < calls; i++) {
        if (q.eval(path, topic, facility, unit, at + (i & 1023)) != null) hits++;
      }
      ns[r] = System.nanoTime() - t0;
    }
    java.util.Arrays.sort(ns);
    System.out.println((double) ns[rounds / 2] / calls + " " + hits);
  }
}
"""


def registry(root: Path, history: int) -> QuarantineRegistry:
    """`history` cleared quarantines of the facility's device source, one every 7 hours over
    units ICU/MICU/the whole facility, then one open quarantine of another parameter."""
    reg = QuarantineRegistry(root)
    name = topics.VITALS_DEVICE.name
    lines = []
    for i in range(history):
        since = T0 + timedelta(hours=7 * i)
        unit = ("ICU", "MICU", "*")[i % 3]
        lines.append((name, FACILITY, unit, "temp_c", since, since + timedelta(hours=3)))
    now = T0 + timedelta(hours=7 * history + 1)
    reg.set(name, FACILITY, "ICU", since=now, reason="open", by="bench", parameter="map_mmhg")
    tsv = root / TSV
    open_line = tsv.read_text()
    cleared = "".join(
        "\t".join((t, f, u, p, str(int(s.timestamp() * 1000)), str(int(e.timestamp() * 1000)),
                   '{"reason":"bench"}')) + "\n"
        for t, f, u, p, s, e in lines
    )  # fmt: skip
    tsv.write_text(cleared + open_line)  # the JVM's view only: the registry's own set is slow
    return reg


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=300_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--out", type=Path, default=OUT / "quarantine_check.json")
    a = ap.parse_args(argv)
    settings = Settings.from_env()
    jar = java_decode.decoder_jar(settings)
    cp = os.pathsep.join(map(str, [jar, *java_decode._classpath(settings)]))
    work = Path(tempfile.mkdtemp(prefix="bench-qcheck-"))
    (work / "CheckBench.java").write_text(HARNESS)
    subprocess.run(
        ["javac", "-nowarn", "-cp", cp, "-d", str(work), str(work / "CheckBench.java")],
        check=True,
        capture_output=True,
    )
    ns: dict[str, dict[str, float]] = {}
    for history in HISTORY:
        root = work / f"history-{history}"
        registry(root, history)
        now = T0 + timedelta(hours=7 * history + 2)
        old = T0 + timedelta(hours=7 * (history // 2) + 1)  # mid-history: half of it cleared since
        ns[str(history)] = {}
        for when, at in (("record_of_now", now), ("record_of_old_period", old)):
            if history == 0 and when == "record_of_old_period":
                continue
            out = subprocess.run(
                ["java", "-cp", f"{cp}{os.pathsep}{work}", "CheckBench", str(root / TSV),
                 topics.VITALS_DEVICE.name, FACILITY, str(int(at.timestamp() * 1000)),
                 str(a.calls), str(a.rounds)],
                check=True, capture_output=True, text=True,
            )  # fmt: skip
            ns[str(history)][when] = round(float(out.stdout.split()[0]), 1)
            print(f"history {history}, {when}: {ns[str(history)][when]} ns/call")
    result = {
        "machine": machine(),
        "calls_per_round": a.calls,
        "rounds": a.rounds,
        "median_ns_per_call_by_cleared_quarantines": ns,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
