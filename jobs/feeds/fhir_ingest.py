"""FHIR R4 bundle drop: ingest Encounter, vital-sign and lab Observation resources from JSON.

    wardflow-fhir-ingest FILE_OR_DIR...         (a resource or a Bundle per .json file; one
                                                resource per line in .ndjson, as Bulk Data
                                                $export writes them)
    wardflow-fhir-ingest check FILE_OR_DIR...   what ingesting would do, offline (no Kafka)

Each resource (each Bundle entry) is validated with fhir.resources and mapped
(schemas.interop.fhir_r4) to canonical records on Kafka, or dead-lettered with its reason. An
entry's refusal is its own: its dead letter keeps that entry alone (not a copy of the file), and
the file's other entries and the folder's other files go on. A value of a mapped Observation
that cannot be read is dead-lettered alone (`Decision.rejected`: the Observation with that value
only) and the resource's other values are published. A file that cannot be read, is not
JSON, or is over `settings.max_message_bytes` is one refusal (an .ndjson file's line that is not
JSON is one, the other lines go on; the lines are one export, so the Glasgow coma scale parts
that EHRs write as Observations of their own are summed across its lines as a Bundle's entries
are: fhir_r4.summed_together); an error while producing one
file's records stops that file (reported, exit 1) and the next file is still processed. A file
is moved nowhere: the same file ingested twice produces the same event ids, which the census
job deduplicates. A Bundle entry of another kind that the file's Encounters or Observations
refer to (their Patient) or that refers to them (a DiagnosticReport) is read as their context
(`fhir_r4.Context`): neither published nor dead-lettered, and counted, so that resources =
mapped + dead-lettered + context. A file's observations are published in the order of their
time, whatever the order of its entries (a search sorted `_sort=-date` lists the newest first:
published so, the older readings would come behind the stream's watermark, late); Encounters keep
their place (a history Bundle's versions are ordered by fhir_r4.map_json). Prints one line per
resource and a summary, each file named by its source (`source_of`: a keyed token of its
content, as its records and dead letters name it; a drop file may be named after a patient);
exits 1 if Kafka did not confirm every record of some file. `check`, run by whoever holds the
files, names them.
"""

from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.feeds.publisher import Encoded, Publisher
from jobs.runtime import kafka_io
from schemas import codec, phi, topics
from schemas.interop import fhir_r4, identity
from schemas.interop.code_map import EMPTY, CodeMap
from schemas.interop.hl7v2 import Mapped, Refused, Rejected
from schemas.settings import Settings

STAGE = "fhir_ingest"
TOPICS = [
    topics.ADT_EVENT.name,
    topics.VITALS_OBSERVATION.name,
    topics.LABS_RESULT.name,
    topics.DEAD_LETTER.name,
]


@dataclass
class IngestReport:
    resources: int = 0
    mapped: int = 0
    records: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # resources, by reason
    context: Counter[str] = field(
        default_factory=Counter
    )  # Bundle entries read as context, by kind
    values_refused: Counter[str] = field(default_factory=Counter)  # values of mapped resources
    lines: list[str] = field(default_factory=list)
    failed_files: list[str] = field(default_factory=list)  # their sources: Kafka did not confirm


@dataclass(frozen=True)
class Decision:
    """What ingesting does with one resource or entry, decided without Kafka."""

    file: str
    label: str
    records: list[Encoded]
    refusal: Refused | None
    payload: bytes  # what its dead letter keeps: the entry alone, or the file's bytes
    rejected: tuple[Rejected, ...] = ()  # values of a mapped resource dead-lettered alone
    context: str = ""  # why a Bundle entry is read as its other entries' context (fhir_r4.Context)
    notes: tuple[str, ...] = ()  # what of a mapped resource was not read, or read into another's

    @property
    def outcome(self) -> str:
        if self.context:
            return "context"
        return "refused" if self.refusal is not None else "mapped"

    @property
    def reason(self) -> str:
        if self.refusal is not None:
            return f"{self.refusal.reason_code}: {self.refusal.reason}"
        return "; ".join(f"{r.refusal.reason_code}: {r.refusal.reason}" for r in self.rejected)

    @property
    def summary(self) -> str:
        """What `check` says of it: the refusal, the entry's label and its dead-lettered values,
        or the label alone."""
        if self.refusal is not None:
            return self.reason
        if self.context:
            return f"{self.label}: {self.context}"
        said = "; ".join([*([self.reason] if self.rejected else []), *self.notes])
        return f"{self.label}: {said}" if said else self.label

    def letters(self) -> list[tuple[Refused, bytes]]:
        """What goes to the dead-letter topic: the refused resource, or each rejected value."""
        if self.refusal is not None:
            return [(self.refusal, self.payload)]
        return [(r.refusal, r.payload) for r in self.rejected]


def files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted([*p.glob("*.json"), *p.glob("*.ndjson")]) if p.is_dir() else [p]
    return out


def _documents(raw: bytes, path: Path, limit: int) -> list[tuple[str, Any, bytes]] | Refused:
    """(label, parsed JSON or its Refused, its bytes) per document: the file's one (label ""),
    or (.ndjson, FHIR R4 nd-json.html) each non-empty line's (label `line<n>`; a line over
    `limit` bytes refused `too_large`). An export is read whole: Bulk Data servers split theirs
    into files (`$export` output, one or more per resource type)."""
    if path.suffix != ".ndjson":
        try:
            return [("", json.loads(raw), raw)]
        except ValueError as exc:
            return Refused("malformed", f"not JSON: {exc}")
        except RecursionError:
            return TOO_DEEP
    out: list[tuple[str, Any, bytes]] = []
    for n, line in enumerate(raw.splitlines(), start=1):
        if len(line) > limit:
            why = Refused("too_large", f"{len(line)} bytes, over the limit of {limit} bytes")
            out.append((f"line{n}", why, line[: 64 << 10]))
        elif line.strip():
            try:
                out.append((f"line{n}", json.loads(line), line))
            except ValueError as exc:
                out.append((f"line{n}", Refused("malformed", f"not JSON: {exc}"), line))
            except RecursionError:
                out.append((f"line{n}", TOO_DEEP, line))
    return out


# JSON nested deeper than Python's recursion limit (about a thousand levels; no FHIR resource
# nests so deep): refused, not a crash that stopped every file behind it.
TOO_DEEP = Refused("malformed", "nested too deeply to be read (no FHIR resource nests so deep)")


def _in_time_order(decisions: list[Decision]) -> list[Decision]:
    """The observations' decisions sorted by their records' time (stable), in the places
    observations hold; every other decision where it was."""
    adt = topics.ADT_EVENT.name
    slots = [
        i for i, d in enumerate(decisions) if d.records and all(t != adt for t, _, _ in d.records)
    ]
    ordered = sorted(
        (decisions[i] for i in slots),
        key=lambda d: min(codec.record_time(rec) for _, rec, _ in d.records),
    )
    out = list(decisions)
    for i, d in zip(slots, ordered, strict=True):
        out[i] = d
    return out


def source_of(raw: bytes, key: bytes) -> str:
    """What a file's records and dead letters name as their source, and what ingesting prints
    for it: a keyed token of its content, not its name (a drop file may be named after the
    patient, an MRN), nor a plain digest (its content holds a record number, which a guess
    would give back)."""
    return "fhir:file:" + phi.token(key, "fhir:file", hashlib.sha256(raw).hexdigest())[:16]


def decide_file(
    settings: Settings, pub: Publisher, path: Path, facility_id: str, codes: CodeMap = EMPTY
) -> tuple[str, list[Decision]]:
    """(source, one Decision per resource or entry) for one file; never raises for its content.
    `codes`: the deployment's code map (`settings.interop_code_map`, loaded once by the caller)."""
    key = pub.key
    tokenise = identity.aliased(
        lambda ns, ident: phi.token(key, ns, ident),
        identity.aliases(settings.patient_identifier_aliases),
    )

    def one(why: Refused, payload: bytes) -> list[Decision]:
        """The file's one refusal, labelled `file`, not by its name (an MRN, perhaps)."""
        return [Decision(path.name, "file", [], why, payload)]

    try:
        size = path.stat().st_size
        # an .ndjson export's lines are its messages: the limit is each line's (_documents)
        if size > settings.max_message_bytes and path.suffix != ".ndjson":
            with path.open("rb") as f:
                head = f.read(64 << 10)
            why = Refused(
                "too_large",
                f"{size} bytes, over the limit of {settings.max_message_bytes} bytes "
                "(max_message_bytes); the dead letter keeps the first 65536 bytes",
            )
            return source_of(head, key), one(why, head)
        raw = path.read_bytes()
    except OSError as exc:
        why = Refused("unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
        # by the path's keyed token: a drop file may be named after the patient (an MRN)
        return "fhir:file-name:" + phi.token(key, "fhir:file-name", str(path))[:16], one(why, b"")
    source = source_of(raw, key)
    documents = _documents(raw, path, settings.max_message_bytes)
    if isinstance(documents, Refused):
        return source, one(documents, raw)
    # an export's lines are read together: a GCS part is summed with its reading's other parts
    read: list[tuple[str, Any, list[fhir_r4.Outcome]]] = []
    for i, (line, data, text) in enumerate(documents):
        if isinstance(data, Refused):
            continue
        try:
            outcomes = fhir_r4.map_json(
                data, tokenise, source=source, facility_id=facility_id, codes=codes,
                alone=not line, line=line,
            )  # fmt: skip
        except RecursionError:  # parsed, but too deep to walk (a Bundle's references)
            documents[i] = (line, TOO_DEEP, text)
            continue
        read.append((line, data, outcomes))
    together = iter(
        fhir_r4.summed_together(
            [o for _, _, outcomes in read for o in outcomes],
            [data for _, data, _ in read],
            tokenise,
            codes,
        )
    )
    resources = iter(read)
    out = []
    for line, data, text in documents:
        if isinstance(data, Refused):
            out.append(Decision(path.name, line, [], data, text))
            continue
        _, _, outcomes = next(resources)
        whole = (
            not line
            and len(outcomes) == 1
            and isinstance(data, dict)
            and data.get("resourceType") != "Bundle"
        )
        for o in itertools.islice(together, len(outcomes)):
            payload = raw if whole else json.dumps(o.resource, separators=(",", ":")).encode()
            result = o.result
            assert not isinstance(result, fhir_r4.Part), "every GCS part is decided"
            if isinstance(result, fhir_r4.Context):
                out.append(Decision(path.name, o.label, [], None, payload, context=result.reason))
                continue
            if isinstance(result, Mapped):
                encoded = pub.encode(result.records)
                if not isinstance(encoded, codec.Rejection):
                    rejected = tuple(result.rejected)
                    out.append(
                        Decision(
                            path.name, o.label, encoded, None, payload, rejected,
                            notes=(*result.unread, *result.notes),
                        )
                    )  # fmt: skip
                    continue
                result = Refused(encoded.reason_code, encoded.reason)
            out.append(Decision(path.name, o.label, [], result, payload))
    return source, _in_time_order(out)


def ingest(
    settings: Settings, paths: list[Path], *, prefix: str = "", facility_id: str = "fhir"
) -> IngestReport:
    codes = CodeMap.load(settings.interop_code_map)  # a bad map stops before anything is read
    identity.aliases(settings.patient_identifier_aliases)  # and so do bad aliases
    kafka_io.ensure_topics(settings, TOPICS, prefix=prefix)
    pub = Publisher(settings, prefix=prefix, stage=STAGE)
    report = IngestReport()
    for path in files(paths):
        try:
            source, decisions = decide_file(settings, pub, path, facility_id, codes)
        except Exception as exc:  # a defect, not the file's content: the next file is read
            # (its type only: a message may quote the file's content)
            name = "fhir:file-name:" + phi.token(pub.key, "fhir:file-name", str(path))[:16]
            report.failed_files.append(name)
            report.lines.append(f"error    {name}: not read: {type(exc).__name__}")
            continue
        try:
            for seq, d in enumerate(decisions):
                pub.send(d.records)
                for why, payload in d.letters():
                    pub.dead_letter(source, seq, why.reason_code, why.reason, payload)
            pub.flush(60)
        except Exception as exc:  # Kafka: this file is not (all) stored; the next one may be
            report.failed_files.append(source)
            report.lines.append(f"error    {source}: not stored: {type(exc).__name__}: {exc}")
            continue
        for d in decisions:
            report.resources += 1
            if d.context:
                report.context[d.label.rsplit(":", 1)[-1].split("/")[0]] += 1
                report.lines.append(f"context  {source} {d.summary}")
            elif d.refusal is None:
                report.mapped += 1
                report.records.update(t for t, _, _ in d.records)
                report.values_refused.update(r.refusal.reason_code for r in d.rejected)
                line = f"mapped   {source} {d.label}: {len(d.records)} records"
                if d.rejected:
                    line += f"; {len(d.rejected)} value(s) dead-lettered: {d.reason}"
                if d.notes:
                    line += f"; {'; '.join(d.notes)}"
                report.lines.append(line)
            else:
                report.refused[d.refusal.reason_code] += 1
                report.lines.append(f"refused  {source} {d.label}: {d.reason}")
    return report


def checked(settings: Settings, paths: list[Path], facility_id: str = "fhir") -> Iterator[Decision]:
    """What ingesting would decide for each resource or entry, without Kafka."""
    pub = Publisher(settings, stage=STAGE)
    codes = CodeMap.load(settings.interop_code_map)
    for path in files(paths):
        try:
            decisions = decide_file(settings, pub, path, facility_id, codes)[1]
        except Exception as exc:  # a defect, not the file's content: the next file is read
            why = Refused("internal_error", f"{type(exc).__name__} (the file was not read)")
            decisions = [Decision(path.name, "file", [], why, b"")]
        yield from decisions


def check(settings: Settings, paths: list[Path], facility_id: str = "fhir") -> Iterator[str]:
    """One tab-separated line per resource or entry: file, outcome, records, reason (+ label)."""
    for d in checked(settings, paths, facility_id):
        yield line_of(d)


def line_of(d: Decision) -> str:
    return f"{d.file}\t{d.outcome}\t{len(d.records)}\t{d.summary}"


def unreadable(d: Decision) -> bool:
    """A file that could not be read (missing, no permission, or a defect reading it): the run
    tells the operator by its exit status, as the HL7 gateway's check does."""
    return d.refusal is not None and d.refusal.reason_code in ("unreadable", "internal_error")


def _check_main(argv: list[str]) -> None:
    ap = argparse.ArgumentParser(
        prog="wardflow-fhir-ingest check",
        description="What ingesting would do with each resource, without Kafka: one line per "
        "resource or Bundle entry, tab-separated: file, mapped/refused, records, reason.",
    )
    ap.add_argument("paths", nargs="+", type=Path, help="FHIR JSON files or folders")
    ap.add_argument("--facility-id", default="fhir", help="for resources that name none")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    failed = False
    for d in checked(Settings.resolve(a), a.paths, a.facility_id):
        print(line_of(d), flush=True)
        failed |= unreadable(d)
    if failed:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        _check_main(argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("paths", nargs="+", type=Path)
    ap.add_argument("--facility-id", default="fhir", help="for resources that name none")
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    kafka_io.wait_for_broker(settings)
    r = ingest(settings, a.paths, prefix=a.topic_prefix, facility_id=a.facility_id)
    print("\n".join(r.lines))
    print(
        f"{r.resources} resources: {r.mapped} mapped ({dict(r.records)}), "
        f"{sum(r.refused.values())} dead-lettered ({dict(r.refused)}), "
        f"{sum(r.context.values())} Bundle entries read as context ({dict(r.context)}), "
        f"{sum(r.values_refused.values())} values of mapped resources dead-lettered "
        f"({dict(r.values_refused)})"
        + (f"; not stored: {', '.join(r.failed_files)}" if r.failed_files else "")
    )
    if r.failed_files or r.refused.get("unreadable"):
        raise SystemExit(1)  # not stored, or not read: a file named wrongly is not a success


if __name__ == "__main__":
    main()
