"""Peak memory of reading a Bulk Data export with `wardflow-fhir-ingest`, per byte of the file.

A synthetic .ndjson export of `--observations` vital-sign Observations (one FHIR R4 resource
per line, as $export writes them; each line with its meta, category, subject and encounter as
an EHR's export carries them; lines in no order of time), of one of two kinds (`--export`):
`vitals`, heart rate, respiratory rate, SpO2, temperature, a blood pressure panel, and every
50th reading a Glasgow coma scale written as its three parts on lines of their own, far apart;
or `gcs_totals`, Glasgow coma scale totals (9269-2) only, no parts (a flowsheet's summed GCS
rows: each line's total is held for parts that a later line may bring). It is decided as
`wardflow-fhir-ingest check` decides it (`fhir_ingest.checked`: the mapping, GCS summation,
encoding and the sort by time that ingesting runs, without Kafka), in a process of its own per
reading, after a warm-up on a small export of the same kind (FHIR models loaded, caches
filled). Two readings of each: the growth of the process's peak resident set (Linux VmHWM)
over its peak after the warm-up, and the peak of Python's traced allocations (`tracemalloc`,
slower: a separate process). Reported: bytes of peak memory per byte of the file, and wall
time per line, under `--label` in the results file (`before` and `after`: the same `vitals`
exports read whole, then line by line, on this machine; `gcs_totals_before_5k` and
`gcs_totals_after_5k`: a line's mapped GCS total held as its whole Outcome, then as its
patient, time and total only; `after_5k`: `vitals` with that change).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.sampling import machine

OUT = Path(__file__).resolve().parent / "results"
LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
START = datetime(2025, 1, 1, tzinfo=UTC)  # a million readings end in the past
# (code, display, unit, value at i): the vital signs of the vital-signs profiles
VITALS: list[tuple[str, str, str, Callable[[int], float]]] = [
    ("8867-4", "Heart rate", "/min", lambda i: 60 + i % 50),
    ("9279-1", "Respiratory rate", "/min", lambda i: 12 + i % 14),
    ("59408-5", "Oxygen saturation", "%", lambda i: 88 + i % 12),
    ("8310-5", "Body temperature", "Cel", lambda i: 36 + (i % 30) / 10),
]
GCS_PARTS = [("9267-6", 3), ("9270-0", 4), ("9268-4", 5)]  # eye, verbal, motor


def _observation(i: int, patient: int, at: datetime, code: str, display: str) -> dict[str, Any]:
    """An Observation as an EHR's Bulk Data export writes it, without its value."""
    return {
        "resourceType": "Observation",
        "id": f"obs-{i:09d}",
        "meta": {"versionId": "1", "lastUpdated": (at + timedelta(minutes=3)).isoformat()},
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {"coding": [{"system": LOINC, "code": code, "display": display}], "text": display},
        "subject": {"reference": f"Patient/pat-{patient:06d}"},
        "encounter": {"reference": f"Encounter/enc-{patient:06d}"},
        "effectiveDateTime": at.isoformat(),
        "issued": (at + timedelta(minutes=2)).isoformat(),
    }


def _quantity(value: float, unit: str) -> dict[str, Any]:
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _reading(i: int, patients: int) -> list[dict[str, Any]]:
    """Reading i: one vital sign, a blood pressure panel, or (every 50th) a GCS in three parts."""
    patient, at = i % patients, START + timedelta(seconds=20 * i + i % 5)
    if i % 50 == 49:
        return [
            _observation(i * 10 + k, patient, at, code, "Glasgow coma score part")
            | {"valueInteger": score}
            for k, (code, score) in enumerate(GCS_PARTS)
        ]
    if i % 5 == 4:
        panel = _observation(i * 10, patient, at, "85354-9", "Blood pressure panel")
        panel["component"] = [
            {
                "code": {"coding": [{"system": LOINC, "code": code, "display": name}]},
                "valueQuantity": _quantity(value, "mm[Hg]"),
            }
            for code, name, value in (
                ("8480-6", "Systolic blood pressure", 100 + i % 40),
                ("8462-4", "Diastolic blood pressure", 60 + i % 25),
            )
        ]
        return [panel]
    code, display, unit, value = VITALS[i % len(VITALS)]
    obs = _observation(i * 10, patient, at, code, display)
    return [obs | {"valueQuantity": _quantity(value(i), unit)}]


def export(path: Path, observations: int, seed: int = 7) -> int:
    """Write an .ndjson export of about `observations` Observations in no order of time (a GCS
    reading's parts far apart); its size in bytes."""
    lines: list[str] = []
    i = 0
    while len(lines) < observations:
        lines += [json.dumps(obs, separators=(",", ":")) for obs in _reading(i, 200)]
        i += 1
    random.Random(seed).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return path.stat().st_size


def gcs_totals_export(path: Path, observations: int, seed: int = 7) -> int:
    """Write an .ndjson export of `observations` Glasgow coma scale totals (9269-2, 3 to 15), as
    an EHR writes its summed GCS rows, in no order of time; its size in bytes."""
    lines = []
    for i in range(observations):
        patient, at = i % 200, START + timedelta(seconds=20 * i + i % 5)
        obs = _observation(i * 10, patient, at, "9269-2", "Glasgow coma score total")
        lines.append(json.dumps(obs | {"valueInteger": 3 + i % 13}, separators=(",", ":")))
    random.Random(seed).shuffle(lines)
    path.write_text("\n".join(lines) + "\n")
    return path.stat().st_size


EXPORTS: dict[str, Callable[..., int]] = {"vitals": export, "gcs_totals": gcs_totals_export}


def _settings() -> Any:
    from schemas.settings import Settings

    return Settings.from_env(
        {"WARDFLOW_PHI_KEY": "bench", "WARDFLOW_KAFKA_BOOTSTRAP": "127.0.0.1:9"}
    )


def peak_rss() -> int:
    """This process's peak resident set, bytes: Linux's VmHWM, of this program's own memory
    (ru_maxrss would start at its parent's peak, copied at the fork)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) << 10
    raise RuntimeError("no VmHWM in /proc/self/status (this benchmark reads Linux's)")


def measure(path: Path, warmup: Path, traced: bool) -> dict[str, Any]:
    """In this process: decide `warmup`, then `path`; the peak memory `path` added."""
    from jobs.feeds import fhir_ingest

    settings = _settings()
    list(fhir_ingest.checked(settings, [warmup]))
    before = peak_rss()
    if traced:
        tracemalloc.start()
    began = time.perf_counter()
    outcomes = Counter(d.outcome for d in fhir_ingest.checked(settings, [path]))
    wall = time.perf_counter() - began
    out: dict[str, Any] = {"outcomes": dict(outcomes), "wall_s": round(wall, 2)}
    if traced:
        out["peak_traced_bytes"] = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    else:
        after = peak_rss()
        out["peak_rss_growth_bytes"] = after - before
    return out


def _child(path: Path, warmup: Path, traced: bool) -> dict[str, Any]:
    argv = [sys.executable, "-m", "bench.fhir_ingest_memory", "--child", str(path), str(warmup)]
    done = subprocess.run(
        argv + (["--traced"] if traced else []),
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--observations", type=int, default=20_000)
    ap.add_argument("--export", choices=sorted(EXPORTS), default="vitals", help="its kind")
    ap.add_argument("--label", default="latest", help="its key in the results file")
    ap.add_argument("--out", type=Path, default=OUT / "fhir_ingest_memory.json")
    ap.add_argument("--child", nargs=2, type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--traced", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(measure(a.child[0], a.child[1], traced=a.traced)))
        return
    with tempfile.TemporaryDirectory(prefix="bench-fhir-memory-") as name:
        folder = Path(name)
        write = EXPORTS[a.export]
        write(folder / "warmup.ndjson", 300, seed=1)
        size = write(folder / "Observation.ndjson", a.observations)
        rss = _child(folder / "Observation.ndjson", folder / "warmup.ndjson", traced=False)
        traced = _child(folder / "Observation.ndjson", folder / "warmup.ndjson", traced=True)
    result: dict[str, Any] = {
        "machine": machine(),
        "export": a.export,
        "observations": a.observations,
        "file_bytes": size,
        "outcomes": rss["outcomes"],
        "peak_rss_growth_bytes": rss["peak_rss_growth_bytes"],
        "peak_rss_growth_per_file_byte": round(rss["peak_rss_growth_bytes"] / size, 2),
        "peak_traced_bytes": traced["peak_traced_bytes"],
        "peak_traced_per_file_byte": round(traced["peak_traced_bytes"] / size, 2),
        "wall_ms_per_line": round(rss["wall_s"] * 1000 / a.observations, 2),
    }
    runs = json.loads(a.out.read_text()) if a.out.exists() else {}
    runs[a.label] = result
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(runs, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
