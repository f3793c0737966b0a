"""Quarantine registry: which sources the clinical path ignores, on a file system (a local folder,
or a shared mount in production), like the model registry (udfs/registry.py).

    <root>/quarantines.json   every quarantine, open and cleared (the registry itself)
    <root>/quarantines.tsv    the same for the JVM (io.wardflow.udf.Quarantine, udfs/java_decode)
    <root>/history.jsonl      every set and clear: who, why, which data-quality event

A quarantine's key is (source_topic, facility_id, unit_id); unit `*` is the facility's whole
source. It holds an event-time interval [since, until): a record of that source whose event
time lies in it has its parameter values ignored by the screening job's state, rules and models
(still passed through to its topics and storage, with a marker naming the quarantine); `until` is
None while the quarantine is open. Event time, not the time the registry changed, so that a
replay or a restore from a savepoint treats the same records the same way, and records of the
faulty period that arrive after a clear stay ignored.

The screening job's TaskManagers read the TSV at the path the job was built with (the setting
`quarantine_registry`), so on a cluster it is a shared mount, as the model registry is; a change
reaches them within the JVM check's reload interval (2 s).

Writes are atomic (temporary file, then rename) under a lock file, so a reader sees the old
registry or the new, never half, and the actuator (sinks/quarantine.py) and an operator's
command do not lose each other's change. Set and clear are idempotent on the data-quality event
id. The operator's commands:

    python -m udfs.quarantine list [--all]
    python -m udfs.quarantine set vitals.device.v1 FAC-1 ICU-2 --reason "temp in degF" --by jdoe
    python -m udfs.quarantine clear vitals.device.v1 FAC-1 ICU-2 --reason "firmware rolled back"
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from schemas.settings import Settings

WHOLE_FACILITY = "*"
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


@dataclass(frozen=True)
class Quarantine:
    """One quarantine of a source: the event-time interval [since, until) its values are
    ignored in, why, and who set and cleared it (a person, or the data-quality event's id)."""

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

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.source_topic, self.facility_id, self.unit_id)

    @property
    def open(self) -> bool:
        return self.until is None

    def covers(self, source_topic: str, facility_id: str, unit_id: str, at: datetime) -> bool:
        """Whether a record of this source at event time `at` is ignored (as the JVM decides)."""
        return (
            self.source_topic == source_topic
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
            "since": self.since,
            "reason": self.reason,
            "set_by": self.set_by,
            "event_id": self.set_event_id,
        }
        return json.dumps(note, separators=(",", ":"), ensure_ascii=True)

    def tsv_line(self) -> str:
        """The JVM's view: topic, facility, unit, since ms, until ms (-1 open), note."""
        until = -1 if self.until is None else _ms(_parse(self.until))
        cells = (self.source_topic, self.facility_id, self.unit_id)
        if any("\t" in c or "\n" in c for c in cells):
            raise ValueError(f"a tab or newline in a quarantine key: {cells}")
        return "\t".join((*cells, str(_ms(_parse(self.since))), str(until), self.note()))


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
    ) -> Quarantine | None:
        """Quarantine a source from event time `since`; None (no new quarantine) when the event
        was applied before or the source is already quarantined. A data-quality event (its
        `event_id`) on a source an operator holds is kept on the operator's quarantine
        (`held_event_id`): the operator's clear then leaves the source quarantined under it."""
        key = (source_topic, facility_id, unit_key(unit_id))
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
                return None
            q = Quarantine(*key, since=_iso(since), reason=reason, set_by=by, set_event_id=event_id)
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
    ) -> Quarantine | None:
        """End the source's open quarantine at event time `until`; None when the event was
        applied before or no quarantine of that source is open. A data-quality event's clear
        (`event_id`) ends only a quarantine a data-quality event set: an operator's stays until
        an operator clears it (a duplicate storm resolving on a unit an operator had quarantined
        for a firmware fault lifted the operator's hold), only the condition it held ends. An
        operator's clear of a quarantine that holds a data-quality condition still open ends
        theirs and opens one of that condition's from `until` (their clear lifted it)."""
        key = (source_topic, facility_id, unit_key(unit_id))
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
                held = Quarantine(
                    *key,
                    since=done.until or _iso(until),
                    reason=q.held_reason or "",
                    set_by=q.held_by or "data_quality",
                    set_event_id=q.held_event_id,
                )
                entries.append(held)
                change["reopened"] = asdict(held)
            self._write(entries, change)
            return done

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
        p.add_argument("--reason", required=True)
        p.add_argument("--by", default=os.environ.get("USER", "operator"), help="who")
        p.add_argument("--at", type=_parse, help="event time (ISO-8601, UTC); default: now")
    a = ap.parse_args(argv)
    reg = QuarantineRegistry.of(Settings.resolve(a))
    if a.cmd == "list":
        for q in reg.all() if a.all else reg.active():
            print(json.dumps(asdict(q)))
        return
    at = a.at or datetime.now(UTC)
    args = (a.source_topic, a.facility_id, a.unit_id)
    if a.cmd == "set":
        done = reg.set(*args, since=at, reason=a.reason, by=a.by)
    else:
        done = reg.clear(*args, until=at, reason=a.reason, by=a.by)
    print(json.dumps(asdict(done)) if done else f"{a.cmd}: nothing to change for {args}")


if __name__ == "__main__":
    main()
