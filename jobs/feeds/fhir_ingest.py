"""FHIR R4 bundle drop: ingest Encounter and vital-sign Observation resources from JSON files.

    wardflow-fhir-ingest FILE_OR_DIR...   (a resource or a Bundle per .json file)

Each resource (each Bundle entry) is validated with fhir.resources and mapped
(schemas.interop.fhir_r4) to canonical records on Kafka, or dead-lettered with its reason. A
file is moved nowhere: the same file ingested twice produces the same event ids, which the
census job deduplicates. Prints one line per resource and a summary; exits 1 if Kafka did not
confirm every record.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import codec, phi, topics
from schemas.interop import fhir_r4
from schemas.interop.hl7v2 import Mapped, Refused
from schemas.settings import Settings

STAGE = "fhir_ingest"
TOPICS = [topics.ADT_EVENT.name, topics.VITALS_OBSERVATION.name, topics.DEAD_LETTER.name]


@dataclass
class IngestReport:
    resources: int = 0
    mapped: int = 0
    records: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)
    lines: list[str] = field(default_factory=list)


def files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted(p.glob("*.json")) if p.is_dir() else [p]
    return out


def ingest(
    settings: Settings, paths: list[Path], *, prefix: str = "", facility_id: str = "fhir"
) -> IngestReport:
    kafka_io.ensure_topics(settings, TOPICS, prefix=prefix)
    key = settings.require_phi_key()
    pub = Publisher(settings, prefix=prefix, stage=STAGE)
    report = IngestReport()
    for path in files(paths):
        raw = path.read_bytes()
        # By content, not by name: a drop file may be named after the patient (an MRN).
        source = f"fhir:sha256:{hashlib.sha256(raw).hexdigest()[:16]}"
        try:
            data = json.loads(raw)
        except ValueError as exc:
            outcomes: list[tuple[str, Mapped | Refused]] = [
                (path.name, Refused("malformed", f"not JSON: {exc}"))
            ]
        else:
            outcomes = fhir_r4.map_json(
                data,
                lambda ns, ident: phi.token(key, ns, ident),
                source=source,
                facility_id=facility_id,
            )
        for seq, (label, outcome) in enumerate(outcomes):
            report.resources += 1
            if isinstance(outcome, Mapped):
                encoded = pub.encode(outcome.records)
                if isinstance(encoded, codec.Rejection):
                    outcome = Refused(encoded.reason_code, encoded.reason)
                else:
                    pub.send(encoded)
                    report.mapped += 1
                    report.records.update(t for t, _, _ in encoded)
                    report.lines.append(f"mapped   {path.name} {label}: {len(encoded)} records")
                    continue
            pub.dead_letter(source, seq, outcome.reason_code, outcome.reason, raw)
            report.refused[outcome.reason_code] += 1
            report.lines.append(
                f"refused  {path.name} {label}: {outcome.reason_code}: {outcome.reason}"
            )
    pub.flush(60)
    return report


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--facility-id", default="fhir", help="for resources that name none")
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    kafka_io.wait_for_broker(settings)
    try:
        r = ingest(settings, a.paths, prefix=a.topic_prefix, facility_id=a.facility_id)
    except RuntimeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(1) from exc
    print("\n".join(r.lines))
    print(
        f"{r.resources} resources: {r.mapped} mapped ({dict(r.records)}), "
        f"{sum(r.refused.values())} dead-lettered ({dict(r.refused)})"
    )


if __name__ == "__main__":
    main()
