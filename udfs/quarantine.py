"""Quarantine registry: which sources, or which parameters of a source, the clinical path
ignores, on a file system (a local folder, or a shared mount in production), like the model
registry (udfs/registry.py).

    <root>/quarantines.json   every quarantine, open and cleared (the registry itself)
    <root>/quarantines.tsv    the same for the JVM (io.wardflow.udf.Quarantine, udfs/java_decode)
    <root>/history.jsonl      every set and clear: who, why, which parameter, which data-quality
                              event

A quarantine's key is (source_topic, facility_id, unit_id, parameter); unit `*` is the facility's
whole source, parameter None (`*` in the TSV) every parameter of the source. A data-quality
condition on a parameter (a temperature probe in °F, a severe shift of one field) quarantines that
parameter only: the source's other values (heart rate, SpO2, blood pressure of the same unit) are
still screened; a duplicate storm, and an operator's set without `--parameter`, quarantine the
whole source. A registry written before parameters (no `parameter` in the JSON, a TSV of six
columns) loads as whole-source quarantines, which is what they were.

A quarantine holds an event-time interval [since, until): a record of that source whose event
time lies in it has the quarantined values ignored by the screening job's state, rules and models
(still passed through to its topics and storage, with a marker naming the quarantines:
`record_note`); `until` is None while the quarantine is open. Event time, not the time the
registry changed, so that a replay or a restore from a savepoint treats the same records the same
way, and records of the faulty period that arrive after a clear stay ignored.

The screening job's TaskManagers read the TSV at the path the job was built with (the setting
`quarantine_registry`), so on a cluster it is a shared mount, as the model registry is; a change
reaches them within the JVM check's reload interval (2 s).

Deploying the version with parameters over the one before, in this order, each step once the one
before it is done:

1. the screening job, and RUNNING (not merely submitted): its JVM check reads the TSV of
   either version. The check before cannot read the new TSV's parameter cell: a running one keeps
   its last good read (blind to every change after it), one started afresh sees no quarantine;
2. the actuator (sinks/quarantine.py) and the operators' command, together: both write entries
   with `parameter`, which the code before cannot load (a TypeError on `parameter`: its actuator
   and command stop on the registry). Once either has written, neither is rolled back, nor the
   screening job (step 1's reason); roll forward;
3. the data-quality job last, from its savepoint: stop the old job (with a savepoint), then start
   the new one from it; never the two at once. The actuator before ignores `quarantine_scope`
   and applies every action to the whole source, so this job's scoped actions under the old
   actuator lift quarantines still needed: temp_c in °F (the whole source quarantined), then a
   duplicate storm (already quarantined), then the storm ends (a clear of `*`) and the old
   actuator clears the source while its temperatures are still in °F.

A whole-source quarantine set before the upgrade (the registry before held no other kind) ends
when its conditions end in a data-quality job restored from its savepoint (it still holds them,
`Open.scope` None, and the last one's end is a clear of `*`), or by an operator (`python -m
udfs.quarantine clear <topic> <facility> <unit> --reason ...`). A job started without its
savepoint holds none of those conditions, and no clear of a parameter (temp_c, spo2_pct) ends
it: it stays open, for an operator to clear. (Only a clear of the whole source would: a
duplicate storm of the new job on that source ending. Hence the savepoint.) Such a job's own
quarantine for a fault the job before saw may be missing: its event can carry the id of the
event the job before sent for the same fault and window (an event id hashes the source,
monitor, parameter, state and time, no scope), which the registry skips as applied. So before
clearing such a quarantine, an operator checks that its fault (`reason`, `set_event_id` in
`list`) is over.

Writes are atomic (temporary file, then rename) under a lock file, so a reader sees the old
registry or the new, never half, and the actuator (sinks/quarantine.py) and an operator's
command do not lose each other's change. Set and clear are idempotent on the data-quality event
id. The operator's commands:

    python -m udfs.quarantine list [--all]
    python -m udfs.quarantine set vitals.device.v1 FAC-1 ICU-2 --reason "reboot loop" --by jdoe
    python -m udfs.quarantine set vitals.device.v1 FAC-1 ICU-2 --parameter temp_c --reason "degF"
    python -m udfs.quarantine clear vitals.device.v1 FAC-1 ICU-2 --parameter temp_c --reason "fixed"
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas import topics
from schemas.settings import Settings

WHOLE_FACILITY = "*"
EVERY_PARAMETER = "*"  # the parameter cell of a whole-source quarantine (TSV, notes)
_PARAMETER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")  # a field name: quoted as is in a note
TSV = "quarantines.tsv"
JSON_FILE = "quarantines.json"
HISTORY = "history.jsonl"


def _ms(t: datetime) -> int:
    return int(t.timestamp() * 1000)


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse(s: str) -> datetime:
    t = datetime.fromisoformat(s.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def unit_key(unit_id: str | None) -> str:
    """A null or empty unit is the whole facility's source."""
    return unit_id or WHOLE_FACILITY


def parameter_key(parameter: str | None) -> str | None:
    """A null, empty or `*` parameter is every parameter of the source; else a field name."""
    if not parameter or parameter == EVERY_PARAMETER:
        return None
    if not _PARAMETER.fullmatch(parameter):
        raise ValueError(f"not a parameter name: {parameter!r}")
    return parameter


@dataclass(frozen=True)
class Quarantine:
    """One quarantine of a source's parameter (None: of every parameter of the source): the
    event-time interval [since, until) its values are ignored in, why, and who set and cleared
    it (a person, or the data-quality event's id)."""

    source_topic: str
    facility_id: str
    unit_id: str  # `*`: every unit of the facility
    since: str  # ISO-8601 UTC event time
    reason: str
    set_by: str
    set_event_id: str | None = None
    until: str | None = None  # None while open
    cleared_by: str | None = None
    clear_event_id: str | None = None
    clear_reason: str | None = None
    # a data-quality condition that opened while an operator held the source (`held_*`): it
    # keeps the source quarantined after the operator's clear, until its own clear
    held_event_id: str | None = None
    held_by: str | None = None
    held_reason: str | None = None
    parameter: str | None = None  # None: every parameter (and every entry written before it)

    @property
    def key(self) -> tuple[str, str, str, str | None]:
        return (self.source_topic, self.facility_id, self.unit_id, self.parameter)

    @property
    def open(self) -> bool:
        return self.until is None

    def covers(
        self,
        source_topic: str,
        facility_id: str,
        unit_id: str,
        at: datetime,
        parameter: str | None = None,
    ) -> bool:
        """Whether a record of this source at event time `at` is marked by this quarantine (as
        the JVM decides: `record_note`), and, given a `parameter`, whether its value of that
        parameter is ignored."""
        return (
            (parameter is None or self.parameter in (None, parameter))
            and self.source_topic == source_topic
            and self.facility_id == facility_id
            and self.unit_id in (unit_id, WHOLE_FACILITY)
            and _parse(self.since) <= at
            and (self.until is None or at < _parse(self.until))
        )

    def note(self) -> str:
        """The marker that the screened state and the alert evidence carry (a JSON object)."""
        note = {
            "source_topic": self.source_topic,
            "facility_id": self.facility_id,
            "unit_id": self.unit_id,
            "parameter": self.parameter,
            "since": self.since,
            "reason": self.reason,
            "set_by": self.set_by,
            "event_id": self.set_event_id,
        }
        return json.dumps(note, separators=(",", ":"), ensure_ascii=True)

    def tsv_line(self) -> str:
        """The JVM's view: topic, facility, unit, parameter (`*`: every one), since ms, until ms
        (-1 open), note. The JVM reads a line of six cells (a file written before parameters:
        no parameter cell) as every parameter's."""
        until = -1 if self.until is None else _ms(_parse(self.until))
        cells = (self.source_topic, self.facility_id, self.unit_id)
        if any("\t" in c or "\n" in c for c in cells):
            raise ValueError(f"a tab or newline in a quarantine key: {cells}")
        parameter = parameter_key(self.parameter) or EVERY_PARAMETER
        since = str(_ms(_parse(self.since)))
        return "\t".join((*cells, parameter, since, str(until), self.note()))


def record_note(covering: Iterable[Quarantine]) -> str | None:
    """The note the JVM check returns for a record (None: no quarantine covers it): the
    parameters it ignores (sorted; `*`: every one) first, then each covering quarantine's note,
    in the registry's order, e.g.
    `{"parameters":["temp_c"],"quarantines":[{"source_topic":…,"parameter":"temp_c",…}]}`.
    The screening job tests a parameter against the list with `ignores_sql`; the JVM builds the
    same string (tests/unit/test_quarantine.py compares them)."""
    qs = list(covering)
    if not qs:
        return None
    names = sorted({q.parameter or EVERY_PARAMETER for q in qs})
    parameters = ",".join(f'"{p}"' for p in names)
    return f'{{"parameters":[{parameters}],"quarantines":[{",".join(q.note() for q in qs)}]}}'


def ignores_sql(note: str, parameter: str) -> str:
    """SQL: whether a record's note (`record_note`, non-null) ignores its `parameter`: `*` or
    the parameter in the note's list, which is the note's first member and holds field names
    only, so the first `]` closes it and a name quoted before it is in it."""
    name = parameter_key(parameter)
    if name is None:
        raise ValueError("a parameter's name, not every parameter")
    end = f"POSITION(']' IN {note})"
    return " OR ".join(
        f"POSITION('\"{p}\"' IN {note}) BETWEEN 1 AND {end}" for p in (EVERY_PARAMETER, name)
    )


class QuarantineRegistry:
    def __init__(self, root: Path) -> None:
        self.root = root

    @classmethod
    def of(cls, settings: Settings) -> QuarantineRegistry:
        return cls(settings.quarantine_registry)

    @property
    def tsv(self) -> Path:
        return self.root / TSV

    def all(self) -> list[Quarantine]:
        p = self.root / JSON_FILE
        if not p.exists():
            return []
        return [Quarantine(**q) for q in json.loads(p.read_text())["quarantines"]]

    def active(self) -> list[Quarantine]:
        return [q for q in self.all() if q.open]

    def history(self) -> list[dict[str, Any]]:
        p = self.root / HISTORY
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def applied_events(self) -> set[str]:
        """The data-quality event ids already applied (set or clear)."""
        return {h["event_id"] for h in self.history() if h.get("event_id")}

    def set(
        self,
        source_topic: str,
        facility_id: str,
        unit_id: str | None,
        *,
        since: datetime,
        reason: str,
        by: str,
        event_id: str | None = None,
        parameter: str | None = None,
    ) -> Quarantine | None:
        """Quarantine a source's `parameter` (None: every parameter) from event time `since`;
        None (no new quarantine) when the event was applied before or that key is already
        quarantined. Keys are independent: a parameter's quarantine and the whole source's
        are two, each cleared by its own clear. A data-quality event (its `event_id`) on a key
        an operator holds is kept on the operator's quarantine (`held_event_id`): the
        operator's clear then leaves it quarantined under the event; one on a key another
        data-quality event holds is recorded (`absorbed`), so that a replay after that key's
        clear does not open a quarantine that nothing would end."""
        key = (source_topic, facility_id, unit_key(unit_id), parameter_key(parameter))
        with self._locked():
            entries = self.all()
            if event_id and event_id in self.applied_events():
                return None
            i = next((i for i, q in enumerate(entries) if q.open and q.key == key), None)
            if i is not None:
                q = entries[i]
                if event_id and q.set_event_id is None and q.held_event_id is None:
                    entries[i] = replace(q, held_event_id=event_id, held_by=by, held_reason=reason)
                    self._write(
                        entries, {"action": "hold", **asdict(entries[i]), "event_id": event_id}
                    )
                elif event_id:  # recorded as applied: a replay after the key's clear sets none
                    self._write(entries, {"action": "absorbed", **asdict(q), "event_id": event_id})
                return None
            q = _new(key, since=_iso(since), reason=reason, set_by=by, set_event_id=event_id)
            self._write([*entries, q], {"action": "set", **asdict(q), "event_id": event_id})
            return q

    def clear(
        self,
        source_topic: str,
        facility_id: str,
        unit_id: str | None,
        *,
        until: datetime,
        reason: str,
        by: str,
        event_id: str | None = None,
        parameter: str | None = None,
    ) -> Quarantine | None:
        """End the open quarantine of the source's `parameter` (None: the whole source's; a
        parameter's own quarantine stays) at event time `until`; None when the event was
        applied before or no quarantine of that key is open. A data-quality event's clear
        (`event_id`) ends only a quarantine a data-quality event set: an operator's stays until
        an operator clears it (a duplicate storm resolving on a unit an operator had quarantined
        for a firmware fault lifted the operator's hold), only the condition it held ends. An
        operator's clear of a quarantine that holds a data-quality condition still open ends
        theirs and opens one of that condition's from `until` (their clear lifted it)."""
        key = (source_topic, facility_id, unit_key(unit_id), parameter_key(parameter))
        with self._locked():
            entries = self.all()
            if event_id and event_id in self.applied_events():
                return None
            i = next((i for i, q in enumerate(entries) if q.open and q.key == key), None)
            if i is None:
                return None
            q = entries[i]
            if event_id and q.set_event_id is None:
                if q.held_event_id is not None:
                    entries[i] = replace(q, held_event_id=None, held_by=None, held_reason=None)
                    change = {"action": "release", **asdict(entries[i]), "event_id": event_id}
                    self._write(entries, change)
                return None
            done = replace(
                q,
                until=max(_iso(until), q.since, key=_parse),
                cleared_by=by,
                clear_event_id=event_id,
                clear_reason=reason,
            )
            entries[i] = done
            change = {"action": "clear", **asdict(done), "event_id": event_id}
            if not event_id and q.held_event_id is not None:  # in the same write: never neither
                held = _new(
                    key,
                    since=done.until or _iso(until),
                    reason=q.held_reason or "",
                    set_by=q.held_by or "data_quality",
                    set_event_id=q.held_event_id,
                )
                entries.append(held)
                change["reopened"] = asdict(held)
            self._write(entries, change)
            return done

    def covering(
        self, source_topic: str, facility_id: str, unit_id: str, at: datetime
    ) -> list[Quarantine]:
        """The quarantines that mark a record of this source at event time `at`, in the
        registry's order (`record_note` of them is the JVM check's answer)."""
        return [q for q in self.all() if q.covers(source_topic, facility_id, unit_id, at)]

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.root.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, entries: list[Quarantine], change: dict[str, Any]) -> None:
        """The TSV, then the JSON (each atomically), then the history line."""
        tsv = "".join(q.tsv_line() + "\n" for q in entries)
        body = json.dumps({"quarantines": [asdict(q) for q in entries]}, indent=1) + "\n"
        for name, text in ((TSV, tsv), (JSON_FILE, body)):
            tmp = self.root / f".{name}.{os.getpid()}.tmp"
            tmp.write_text(text)
            os.replace(tmp, self.root / name)
        entry = {"at": _iso(datetime.now(UTC)), **change}
        with (self.root / HISTORY).open("a") as f:
            f.write(json.dumps(entry) + "\n")


def _new(key: tuple[str, str, str, str | None], **fields: Any) -> Quarantine:
    topic, facility, unit, parameter = key
    return Quarantine(topic, facility, unit, parameter=parameter, **fields)


def parameter_error(source_topic: str, parameter: str | None) -> str | None:
    """Why an operator's `--parameter` names nothing the screening job could ignore (None: it
    is `*`, or a numeric field of the topic's Avro schema, the registry's topic name): a name
    that is no field (`temperature`, `Temp_C`) was accepted before and nulled nothing."""
    if parameter is None or parameter == EVERY_PARAMETER:
        return None
    try:
        schema = topics.topic(source_topic).schema
    except KeyError as e:
        return f"--parameter needs a known topic: {e.args[0]}"
    numeric = schema.numeric_fields
    if parameter in numeric:
        return None
    return (
        f"--parameter {parameter!r} is not a numeric field of {source_topic} (omit it to "
        f"quarantine every field); its numeric fields: {', '.join(numeric)}"
    )


def clear_parameter_error(
    registry: QuarantineRegistry,
    source_topic: str,
    facility_id: str,
    unit_id: str | None,
    parameter: str | None,
) -> str | None:
    """Why an operator's `clear --parameter` names no open quarantine of the source (None: it
    is `*`, or one is open): checked against the registry's open keys, not the schema, so that
    a quarantine stored under a name `set` now refuses stays clearable."""
    if parameter is None or parameter == EVERY_PARAMETER:
        return None
    source = (source_topic, facility_id, unit_key(unit_id))
    names = sorted(
        {
            q.parameter
            for q in registry.active()
            if q.parameter is not None and (q.source_topic, q.facility_id, q.unit_id) == source
        }
    )
    if parameter in names:
        return None
    return (
        f"--parameter {parameter!r}: no open quarantine of it on {' '.join(source)} (omit it "
        f"to clear the whole source's); its open parameters: {', '.join(names) or 'none'}"
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="python -m udfs.quarantine", description="List, set or clear source quarantines."
    )
    Settings.add_arguments(ap)
    sub = ap.add_subparsers(dest="cmd", required=True)
    ls = sub.add_parser("list", help="open quarantines (--all: cleared ones too)")
    ls.add_argument("--all", action="store_true")
    for cmd in ("set", "clear"):
        p = sub.add_parser(cmd)
        p.add_argument("source_topic")
        p.add_argument("facility_id")
        p.add_argument("unit_id", nargs="?", default=WHOLE_FACILITY, help="default: every unit")
        p.add_argument("--parameter", help="one field of the source (default: every field)")
        p.add_argument("--reason", required=True)
        p.add_argument("--by", default=os.environ.get("USER", "operator"), help="who")
        p.add_argument("--at", type=_parse, help="event time (ISO-8601, UTC); default: now")
    a = ap.parse_args(argv)
    reg = QuarantineRegistry.of(Settings.resolve(a))
    if a.cmd == "list":
        for q in reg.all() if a.all else reg.active():
            print(json.dumps(asdict(q)))
        return
    if a.cmd == "set":
        bad = parameter_error(a.source_topic, a.parameter)
    else:
        bad = clear_parameter_error(reg, a.source_topic, a.facility_id, a.unit_id, a.parameter)
    if bad:
        ap.error(bad)
    at = a.at or datetime.now(UTC)
    args = (a.source_topic, a.facility_id, a.unit_id)
    if a.cmd == "set":
        done = reg.set(*args, since=at, reason=a.reason, by=a.by, parameter=a.parameter)
    else:
        done = reg.clear(*args, until=at, reason=a.reason, by=a.by, parameter=a.parameter)
    what = (*args, a.parameter or EVERY_PARAMETER)
    print(json.dumps(asdict(done)) if done else f"{a.cmd}: nothing to change for {what}")


if __name__ == "__main__":
    main()
