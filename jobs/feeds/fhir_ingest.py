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
are: fhir_r4.summed_beside); an error while producing one
file's records stops that file (reported, exit 1) and the next file is still processed. A file
is moved nowhere: the same file ingested twice produces the same event ids, which the census
job deduplicates. A Bundle entry of another kind that the file's Encounters or Observations refer to
(their Patient) or that refers to them (a DiagnosticReport), or a search's own OperationOutcome, is
read as their context (`fhir_r4.Context`): neither published nor dead-lettered, and counted, so that
resources = mapped + dead-lettered + context. A file's observations are published in the order of
their time, whatever the order of its entries (a search sorted `_sort=-date` lists the newest first:
published so, the older readings would come behind the stream's watermark, late); Encounters keep
their place (a history Bundle's versions are ordered by fhir_r4.map_json). Prints one line per
resource and a summary, each file named by its source (`source_of`: a keyed token of its
content, as its records and dead letters name it; a drop file may be named after a patient),
a file's lines once it is published (a run keeps counts, not lines: `IngestReport`);
exits 1 if Kafka did not confirm every record of some file. `check`, run by whoever holds the
files, names them.

An .ndjson export (a hospital's Observations: several GB a file) is read a line at a time and
twice: once for its source, the digest of its content, which its records name, and once to
decide its lines; a file changed between the two (an export still being written) is refused
`unreadable`. Each line's text, JSON and validated models are let go once it is decided. What
a file holds until it is published is what publishing its observations in time order needs:
its Decisions with their records as Avro values, keys and times (`Held`, the same for an
Observation, whatever its JSON's size), the dead letters of its refused resources, and, until
its GCS parts are summed, the parts, and of the lines with a GCS total only their patient,
time and total. So the memory a file takes is still linear in its size, not bounded: some 1.0
bytes per byte of an export of mapped observations (bench/fhir_ingest_memory.py), more where
lines are refused (each one's dead letter is held until the file is published). A .json file
is one message (no more than max_message_bytes) and is read whole; of an export, the limit is
each line's.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import json
import os
import re
import sys
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from jobs.feeds.publisher import Encoded, Publisher
from jobs.runtime import kafka_io
from schemas import codec, load_schema, phi, topics
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
    """What a run of `ingest` did, in counts (its lines are said as each file is published, and
    not kept: a run may read many GB of exports)."""

    resources: int = 0
    mapped: int = 0
    records: Counter[str] = field(default_factory=Counter)
    refused: Counter[str] = field(default_factory=Counter)  # resources, by reason
    context: Counter[str] = field(
        default_factory=Counter
    )  # Bundle entries read as context, by kind
    values_refused: Counter[str] = field(default_factory=Counter)  # values of mapped resources
    failed_files: list[str] = field(default_factory=list)  # their sources: Kafka did not confirm


class Held(NamedTuple):
    """A record as a file's decisions hold it until the file is published, as
    `Publisher.send_values` sends it: its topic, Kafka key (the patient token), Kafka timestamp
    (`codec.record_time`, by which the file's observations are ordered) and Avro value (the
    record: `Decision.records` reads it back). Not the record's dict: a Python dict of a vitals
    record takes about ten times its Avro value."""

    topic: str
    key: bytes
    time: datetime
    value: bytes


def held(encoded: list[Encoded]) -> tuple[Held, ...]:
    """Encoded records (`Publisher.encode`'s) as a Decision holds them, not their dicts."""
    return tuple(
        Held(topic, rec["patient_token"].encode(), codec.record_time(rec), value)
        for topic, rec, value in encoded
    )


@dataclass(frozen=True, slots=True)
class Decision:
    """What ingesting does with one resource or entry, decided without Kafka."""

    file: str
    label: str
    held: tuple[Held, ...]  # its records, as held until they are published (`records`)
    refusal: Refused | None
    # what its dead letter keeps: the entry alone, or the file's bytes; b"" where it has none
    # (mapped, context: their JSON is not held)
    payload: bytes
    rejected: tuple[Rejected, ...] = ()  # values of a mapped resource dead-lettered alone
    context: str = ""  # why a Bundle entry is read as its other entries' context (fhir_r4.Context)
    notes: tuple[str, ...] = ()  # what of a mapped resource was not read, or read into another's

    @property
    def records(self) -> list[Encoded]:
        """Its records as `Publisher.send` takes them, read back from their Avro values."""
        return [(h.topic, _record(h), h.value) for h in self.held]

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


def _record(h: Held) -> dict[str, Any]:
    record = codec.decode(load_schema(h.topic), h.value)
    assert not isinstance(record, codec.Rejection), f"{h.topic}: its own value: {record}"
    return record


def files(paths: list[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        out += sorted([*p.glob("*.json"), *p.glob("*.ndjson")]) if p.is_dir() else [p]
    return out


HEAD = 64 << 10  # what the dead letter of a file or line over the limit keeps
BLOCK = 256 << 10  # an export is read this many bytes at a time
# where bytes.splitlines ends a line (an export's lines were split so when read whole)
_LINE_END = re.compile(rb"\r\n|\r|\n")


def _document(raw: bytes) -> Any:
    """A file's or line's JSON, or its refusal."""
    try:
        return json.loads(raw)
    except ValueError as exc:
        return Refused("malformed", f"not JSON: {exc}")
    except RecursionError:
        return TOO_DEEP


def _blocks(f: BinaryIO, digest: Any) -> Iterator[bytes]:
    """`f` from where it is, `BLOCK` bytes at a time, each added to `digest`."""
    while True:
        with _reading():
            block = f.read(BLOCK)
        if not block:
            return
        digest.update(block)
        yield block


def _lines(blocks: Iterable[bytes], keep: int) -> Iterator[tuple[bytes, int]]:
    """(the line, or its first `keep` bytes where it is longer; its length) for each line of
    `blocks`, ended where bytes.splitlines ends one (a line feed, a carriage return, or both):
    no more than a block and `keep` bytes of a line are held, however long the line."""
    begun: list[bytes] = []  # the kept start of a line that an earlier block began
    length = 0  # that line's length so far
    carry = b""  # a block's last carriage return, which the next block's line feed may follow
    for block in itertools.chain(blocks, [b""]):  # b"": the end
        data = carry + block
        carry = b"\r" if block and data.endswith(b"\r") else b""
        data = data[: len(data) - len(carry)]
        start = 0
        for end in _LINE_END.finditer(data):
            piece = data[start : end.start()]
            if begun or length:
                yield b"".join([*begun, piece])[:keep], length + len(piece)
                begun, length = [], 0
            else:
                yield piece[:keep], len(piece)
            start = end.end()
        rest = data[start:]
        if rest and length < keep:
            begun.append(rest[: keep - length])
        length += len(rest)
    if length:
        yield b"".join(begun), length


def _export(blocks: Iterable[bytes], limit: int) -> Iterator[tuple[str, Any, bytes]]:
    """(label `line<n>`, parsed JSON or its Refused, its bytes) for each non-empty line of an
    .ndjson export (FHIR R4 nd-json.html), one at a time; a line over `limit` bytes is refused
    `too_large` (its dead letter keeps its first `HEAD` bytes)."""
    for n, (line, length) in enumerate(_lines(blocks, max(limit, HEAD)), start=1):
        if length > limit:
            why = Refused("too_large", f"{length} bytes, over the limit of {limit} bytes")
            yield f"line{n}", why, line[:HEAD]
        elif line.strip():
            yield f"line{n}", _document(line), line


# JSON nested deeper than Python's recursion limit (about a thousand levels; no FHIR resource
# nests so deep): refused, not a crash that stopped every file behind it.
TOO_DEEP = Refused("malformed", "nested too deeply to be read (no FHIR resource nests so deep)")


def _is_observation(d: Decision) -> bool:
    return bool(d.held) and all(h.topic != topics.ADT_EVENT.name for h in d.held)


def _time(d: Decision) -> datetime:
    return min(h.time for h in d.held)


def _in_time_order(decisions: list[Decision]) -> list[Decision]:
    """`decisions` itself, reordered and returned: the observations' decisions in the time order
    of their records (stable), in the places observations hold; every other decision where it
    was. The observations' are sorted in a list of their own (a reference each, not a copy of a
    decision) and written back: no copy of the whole list is made."""
    ordered = iter(sorted(filter(_is_observation, decisions), key=_time))
    for i, d in enumerate(decisions):
        if _is_observation(d):
            decisions[i] = next(ordered)
    return decisions


def source_of(raw: bytes, key: bytes) -> str:
    """What a file's records and dead letters name as their source, and what ingesting prints
    for it: a keyed token of its content, not its name (a drop file may be named after the
    patient, an MRN), nor a plain digest (its content holds a record number, which a guess
    would give back)."""
    return _source(hashlib.sha256(raw).hexdigest(), key)


def _source(digest: str, key: bytes) -> str:
    """`source_of` the content whose SHA-256 is `digest` (hex)."""
    return "fhir:file:" + phi.token(key, "fhir:file", digest)[:16]


@dataclass(frozen=True)
class _Reader:
    """What deciding a file's resources needs besides the file."""

    file: str  # its name, as each Decision says it
    pub: Publisher
    tokenise: fhir_r4.Tokenise
    codes: CodeMap
    facility_id: str


class _Unread(Exception):
    """An OSError reading the file (opening, reading, seeking it): the file is `unreadable`. One
    raised while deciding what was read (a schema file missing, say) is not this: no fault of
    the file, it is no refusal of it."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


@contextlib.contextmanager
def _reading() -> Iterator[None]:
    """Around a read of the file: its OSError raised as `_Unread`."""
    try:
        yield
    except OSError as exc:
        raise _Unread(exc) from exc


def decide_file(
    settings: Settings, pub: Publisher, path: Path, facility_id: str, codes: CodeMap = EMPTY
) -> tuple[str, list[Decision]]:
    """(source, one Decision per resource or entry) for one file; never raises for its content
    (nor for an error reading it: refused `unreadable`).
    `codes`: the deployment's code map (`settings.interop_code_map`, loaded once by the caller)."""
    key = pub.key
    tokenise = identity.aliased(
        lambda ns, ident: phi.token(key, ns, ident),
        identity.aliases(settings.patient_identifier_aliases),
    )
    reader = _Reader(path.name, pub, tokenise, codes, facility_id)
    try:
        with _reading():
            opened = path.open("rb")
        with opened as f:
            if path.suffix == ".ndjson":
                return _decide_export(reader, f, settings.max_message_bytes)
            return _decide_document(reader, f, settings.max_message_bytes)
    except _Unread as unread:
        exc = unread.error
        why = Refused("unreadable", f"{type(exc).__name__}: {exc.strerror or exc}")
        # by the path's keyed token: a drop file may be named after the patient (an MRN)
        name = "fhir:file-name:" + phi.token(key, "fhir:file-name", str(path))[:16]
        return name, [_one(reader, why, b"")]


def _one(reader: _Reader, why: Refused, payload: bytes) -> Decision:
    """The file's one refusal, labelled `file`, not by its name (an MRN, perhaps)."""
    return Decision(reader.file, "file", (), why, payload)


def _decide_document(
    reader: _Reader, f: io.BufferedReader, limit: int
) -> tuple[str, list[Decision]]:
    """A .json file's decisions: a resource or a Bundle, read whole (it is one message, of no
    more than `limit` bytes)."""
    with _reading():
        size = os.fstat(f.fileno()).st_size
        raw = f.read(HEAD) if size > limit else f.read()
    if size > limit:
        why = Refused(
            "too_large",
            f"{size} bytes, over the limit of {limit} bytes "
            f"(max_message_bytes); the dead letter keeps the first {HEAD} bytes",
        )
        return source_of(raw, reader.pub.key), [_one(reader, why, raw)]
    source = source_of(raw, reader.pub.key)
    data = _document(raw)
    if isinstance(data, Refused):
        return source, [_one(reader, data, raw)]
    return source, _decide(reader, [("", data, raw)], source)


def _decide_export(reader: _Reader, f: io.BufferedReader, limit: int) -> tuple[str, list[Decision]]:
    """An .ndjson export's decisions, its lines read one at a time (twice: its source, the
    digest of its content, names its records). Read again, the file must be the one its source
    names: an export still being written is refused `unreadable`, to be read once written."""
    with _reading():
        source = _source(hashlib.file_digest(f, "sha256").hexdigest(), reader.pub.key)
        f.seek(0)
    again = hashlib.sha256()
    decisions = _decide(reader, _export(_blocks(f, again), limit), source)
    if _source(again.hexdigest(), reader.pub.key) != source:
        why = Refused("unreadable", "the file changed while it was read (an export being written)")
        return source, [_one(reader, why, b"")]
    return source, decisions


def _decide(
    reader: _Reader, documents: Iterable[tuple[str, Any, bytes]], source: str
) -> list[Decision]:
    """One Decision per resource or entry of `documents` ((label, parsed JSON or its Refused,
    its bytes): a file's one, labelled "", or an export's lines), in time order
    (`_in_time_order`). Each document is let go once decided: what is held is its Decisions
    (their records `Held`, compact) and, an export's lines being read together
    (fhir_r4.summed_together), what deciding its GCS parts at the end reads: the parts' Outcomes
    (without their JSON: a part's dead letter is held), the GCS total each line maps (patient,
    time and total: fhir_r4.gcs_totals) and those it sends unmapped (fhir_r4.unread_totals_sent:
    a line that mapped its total is not validated again)."""
    out: list[Decision | None] = []  # None: a GCS part's, decided with the others at the end
    parts: list[tuple[int, fhir_r4.Outcome, bytes]] = []  # its place, Outcome; its dead letter
    totals: dict[tuple[str, datetime], int] = {}
    sent: set[tuple[str, datetime]] = set()
    for line, data, text in documents:
        outcomes = _outcomes(reader, line, data, source)
        if isinstance(outcomes, Refused):
            out.append(Decision(reader.file, line, (), outcomes, text))
            continue
        # a file of one resource: its dead letter keeps the file
        whole = text if not line and len(outcomes) == 1 and _not_a_bundle(data) else None
        for o in outcomes:
            if isinstance(o.result, fhir_r4.Part):
                parts.append((len(out), o._replace(resource=None), _json(o.resource)))
                out.append(None)
                continue
            if line:  # read with the export's other lines
                totals.update(fhir_r4.gcs_totals(o))
            out.append(_decided(reader, o, whole))
        if line:
            sent |= fhir_r4.unread_totals_sent(data, outcomes, reader.tokenise, reader.codes)
    _decide_parts(reader, out, parts, totals, sent)
    decided = [d for d in out if d is not None]
    assert len(decided) == len(out), "every GCS part is decided"
    del out, parts, totals, sent  # not held while sorting
    return _in_time_order(decided)


def _decide_parts(
    reader: _Reader,
    out: list[Decision | None],
    parts: list[tuple[int, fhir_r4.Outcome, bytes]],
    totals: dict[tuple[str, datetime], int],
    sent: set[tuple[str, datetime]],
) -> None:
    """The GCS parts' Decisions, each in its place in `out` (None there): the parts (`parts`:
    each one's place, its Outcome, its dead letter) decided together beside the totals mapped
    (`totals`) and sent (`sent`): fhir_r4.summed_beside."""
    if not parts:
        return
    sums = fhir_r4.summed_beside([o for _, o, _ in parts], totals, sent)
    for (i, _, letter), o in zip(parts, sums, strict=True):
        out[i] = _decided(reader, o, letter)


def _outcomes(
    reader: _Reader, line: str, data: Any, source: str
) -> list[fhir_r4.Outcome] | Refused:
    """fhir_r4.map_json's Outcomes of one document, or its refusal (not JSON, too deep)."""
    if isinstance(data, Refused):
        return data
    try:
        return fhir_r4.map_json(
            data, reader.tokenise, source=source, facility_id=reader.facility_id,
            codes=reader.codes, alone=not line, line=line,
        )  # fmt: skip
    except RecursionError:  # parsed, but too deep to walk (a Bundle's references)
        return TOO_DEEP


def _not_a_bundle(data: Any) -> bool:
    return isinstance(data, dict) and data.get("resourceType") != "Bundle"


def _json(resource: Any) -> bytes:
    return json.dumps(resource, separators=(",", ":")).encode()


def _decided(reader: _Reader, o: fhir_r4.Outcome, letter: bytes | None) -> Decision:
    """The Decision of one Outcome; `letter`: what a refusal's dead letter keeps, if not the
    resource's JSON alone."""
    result = o.result
    assert not isinstance(result, fhir_r4.Part), "every GCS part is decided"
    if isinstance(result, fhir_r4.Context):
        return Decision(reader.file, o.label, (), None, b"", context=result.reason)
    if isinstance(result, Mapped):
        encoded = reader.pub.encode(result.records)
        if not isinstance(encoded, codec.Rejection):
            notes = (*result.unread, *result.notes)
            return Decision(
                reader.file, o.label, held(encoded), None, b"", tuple(result.rejected), notes=notes
            )
        result = Refused(encoded.reason_code, encoded.reason)
    payload = _json(o.resource) if letter is None else letter
    return Decision(reader.file, o.label, (), result, payload)


def ingest(
    settings: Settings,
    paths: list[Path],
    *,
    prefix: str = "",
    facility_id: str = "fhir",
    say: Callable[[str], object] | None = None,
) -> IngestReport:
    """Publish the files' records and dead letters, a file at a time; the counts of what was
    done. `say` (main: print) is given each line of the run's output: a file's once it is
    published (or an error of its own), none of them kept."""
    codes = CodeMap.load(settings.interop_code_map)  # a bad map stops before anything is read
    identity.aliases(settings.patient_identifier_aliases)  # and so do bad aliases
    kafka_io.ensure_topics(settings, TOPICS, prefix=prefix)
    pub = Publisher(settings, prefix=prefix, stage=STAGE)
    report = IngestReport()
    tell: Callable[[str], object] = say or (lambda _: None)
    for path in files(paths):
        try:
            source, decisions = decide_file(settings, pub, path, facility_id, codes)
        except Exception as exc:  # a defect, not the file's content: the next file is read
            # (its type only: a message may quote the file's content)
            name = "fhir:file-name:" + phi.token(pub.key, "fhir:file-name", str(path))[:16]
            report.failed_files.append(name)
            tell(f"error    {name}: not read: {type(exc).__name__}")
            continue
        try:
            for seq, d in enumerate(decisions):
                pub.send_values(d.held)  # not `records`: no value decoded to be sent
                for why, payload in d.letters():
                    pub.dead_letter(source, seq, why.reason_code, why.reason, payload)
            pub.flush(60)
        except Exception as exc:  # Kafka: this file is not (all) stored; the next one may be
            report.failed_files.append(source)
            tell(f"error    {source}: not stored: {type(exc).__name__}: {exc}")
            continue
        for d in decisions:
            tell(_counted(report, source, d))
    return report


def _counted(report: IngestReport, source: str, d: Decision) -> str:
    """Count a published decision in `report`; its line of the output."""
    report.resources += 1
    if d.context:
        report.context[d.label.rsplit(":", 1)[-1].split("/")[0]] += 1
        return f"context  {source} {d.summary}"
    if d.refusal is None:
        report.mapped += 1
        report.records.update(h.topic for h in d.held)
        report.values_refused.update(r.refusal.reason_code for r in d.rejected)
        line = f"mapped   {source} {d.label}: {len(d.held)} records"
        if d.rejected:
            line += f"; {len(d.rejected)} value(s) dead-lettered: {d.reason}"
        if d.notes:
            line += f"; {'; '.join(d.notes)}"
        return line
    report.refused[d.refusal.reason_code] += 1
    return f"refused  {source} {d.label}: {d.reason}"


def checked(settings: Settings, paths: list[Path], facility_id: str = "fhir") -> Iterator[Decision]:
    """What ingesting would decide for each resource or entry, without Kafka."""
    pub = Publisher(settings, stage=STAGE)
    codes = CodeMap.load(settings.interop_code_map)
    for path in files(paths):
        try:
            decisions = decide_file(settings, pub, path, facility_id, codes)[1]
        except Exception as exc:  # a defect, not the file's content: the next file is read
            why = Refused("internal_error", f"{type(exc).__name__} (the file was not read)")
            decisions = [Decision(path.name, "file", (), why, b"")]
        yield from decisions


def check(settings: Settings, paths: list[Path], facility_id: str = "fhir") -> Iterator[str]:
    """One tab-separated line per resource or entry: file, outcome, records, reason (+ label)."""
    for d in checked(settings, paths, facility_id):
        yield line_of(d)


def line_of(d: Decision) -> str:
    return f"{d.file}\t{d.outcome}\t{len(d.held)}\t{d.summary}"


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
    said = 0

    def say(line: str) -> None:
        nonlocal said
        said += 1
        print(line)

    r = ingest(settings, a.paths, prefix=a.topic_prefix, facility_id=a.facility_id, say=say)
    if not said:  # the empty line that printing the run's lines joined gave
        print()
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
