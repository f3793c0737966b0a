"""HL7 v2 gateway: an MLLP listener that maps ADT and ORU^R01 messages to canonical Avro records
on Kafka and acknowledges every message.

    sender ──MLLP──▶ parse (hl7apy) ─ map (schemas.interop.hl7v2) ─ validate ─▶ Kafka ─▶ ACK
                        └──────────── refused / rejected parts ──▶ dead-letter topic ─┘

    wardflow-hl7-gateway [--port 2575]        serve MLLP
    wardflow-hl7-gateway check FILE_OR_DIR…   what the live path would do, offline (no Kafka)

ACK policy (`settings.hl7_ack_policy`; README "HL7 v2 gateway: ACK policy"). An ACK is sent only
after Kafka confirmed every record the message produced, mapped or dead-lettered (acks=all,
idempotent producer), so a sender that resends on a missing ACK loses nothing; resends carry
the same event ids.
- `durable` (default, what integration engines do): **AA** once the message is durably stored:
  mapped, or dead-lettered with its reason for the interface team's work queue (then with an ERR
  segment of severity W and the reason in MSA-3). **AE** (error 207) only when it could not be
  stored (Kafka did not confirm): resend. **AR** for what is not wardflow's: a message type or
  trigger it does not take (200/201), a processing id it does not accept (202), a message over
  `max_message_bytes`. Many EHR senders hold their outbound queue on AE; this policy never
  blocks a queue on a message a person has to look at anyway.
- `strict`: as `durable`, but a message refused for its content (no PID-3, no unit for an
  admission, no screening value) is answered AE.

Processing id (MSH-11): only ids in `settings.production_processing_ids` (default `P`) enter the
production topics. Others (T training, D debugging) are mapped the same way onto topics prefixed
with `settings.nonproduction_topic_prefix` (`nonprod.` by default), or, with an empty prefix,
refused AR 202. The ACK echoes the message's processing id.

Size: a message over `settings.max_message_bytes` is read to its end and discarded, refused AR
with a dead letter that keeps its first 64 KiB and states its size; a message under the limit
but too large for a Kafka record is dead-lettered by reference (jobs/feeds/publisher.py).

MLLP framing (HL7 v2 MLLP, release 2): <VT> message <FS><CR>, one ACK frame per message.
"""

from __future__ import annotations

import argparse
import codecs
import contextlib
import dataclasses
import logging
import re
import signal
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from jobs.feeds.publisher import Deliveries, Encoded, Publisher
from jobs.runtime import kafka_io
from schemas import codec, phi, topics
from schemas.capacity import Capacity
from schemas.interop import hl7v2, identity
from schemas.interop.code_map import CodeMap
from schemas.settings import Settings

START, FS, END = b"\x0b", b"\x1c", b"\x1c\x0d"
FRAME_TIMEOUT_S = 60.0  # a frame started must end within this much silence
# TCP keepalive: the first probe after 60 s idle, then every 15 s, the peer gone after 4 unanswered
KEEPALIVE = {"TCP_KEEPIDLE": 60, "TCP_KEEPINTVL": 15, "TCP_KEEPCNT": 4}
STAGE = "hl7_gateway"
TOPICS = [
    topics.ADT_EVENT.name,
    topics.VITALS_OBSERVATION.name,
    topics.LABS_RESULT.name,
    topics.DEAD_LETTER.name,
]
HEAD_BYTES = 64 << 10  # what a dead letter keeps of a message over max_message_bytes
STORE_TIMEOUT_S = 30.0  # how long a message's records may wait for Kafka before an AE
UNREAD_KEPT = 1000  # distinct unread OBX codes counted and logged by name
UNREAD_OTHER = "(other codes)"
log = logging.getLogger("wardflow.hl7_gateway")


def frame(message: str | bytes) -> bytes:
    body = message.encode() if isinstance(message, str) else message
    return START + body + END


@dataclass
class GatewayStats:
    received: int = 0
    accepted: int = 0
    dead_lettered: int = 0
    retry_asked: int = 0
    records: dict[str, int] = field(default_factory=dict)
    # OBX codes not read (hl7v2.Mapped.unread): the messages each came in, at most UNREAD_KEPT
    # codes (then the rest under UNREAD_OTHER: a sender's free text in OBX-3 grows no memory)
    unread: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Letter:
    reason_code: str
    reason: str
    payload: bytes


@dataclass(frozen=True)
class Decision:
    """What the gateway does with one message, decided without Kafka: the records to produce,
    the dead letters to write (both under `route`), and the ACK to answer once they are stored."""

    ack: str  # ER7
    ack_code: str
    records: list[Encoded]
    letters: list[Letter]
    reason: str = ""
    route: str = ""  # topic prefix: '' production, settings.nonproduction_topic_prefix otherwise
    processing_id: str = "P"
    unread: tuple[str, ...] = ()  # a stored ORU's OBX codes it does not read (hl7v2.Mapped)
    notes: tuple[str, ...] = ()  # values it read and does not use, and why (hl7v2.Mapped)

    @property
    def outcome(self) -> str:
        return "mapped" if self.records else "refused"


# HL7 table 0211 (v2.5.1 2.15.9.18, MSH-18 character set) as Python codecs: the single-byte and
# multi-byte sets a sender can declare for a message whose MSH is ASCII. ASCII is not here: a
# sender that declares it and sends 8-bit text is read as one that declares nothing.
CHARSETS = {
    **{f"8859/{n}": f"iso8859-{n}" for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 15)},
    "UNICODE UTF-8": "utf-8",
    "UNICODE": "utf-8",
    "GB 18030-2000": "gb18030",
    "BIG-5": "big5",
    "KS X 1001": "euc_kr",
}
# ISO 2022 code extension (v2.5.1 2.15.9.18: MSH-18's later repetitions are the sets escape
# sequences switch to): Japanese text in JIS X 0208/0212 or JIS X 0201 katakana, from ASCII
ISO_2022_JP = frozenset({"ISO IR87", "ISO IR159", "ISO IR14"})
BOM = b"\xef\xbb\xbf"  # UTF-8's byte-order mark


def declared_charsets(raw: bytes) -> list[str]:
    """MSH-18's character sets (its repetitions), read from the bytes (MSH up to it is ASCII);
    [] if none."""
    header = raw.removeprefix(BOM).lstrip(b"\r\n ").split(b"\r", 1)[0].split(b"\n", 1)[0]
    if not header.startswith(b"MSH") or len(header) < 4:
        return []
    fields = header.split(header[3:4])
    if len(fields) < 18:
        return []
    repetition = fields[1][1:2] if len(fields[1]) > 1 else b"~"
    named = fields[17].split(repetition)
    sets = [f.decode("ascii", errors="replace").strip().upper() for f in named]
    return sets if any(sets) else []


def _cp1252_strays(exc: UnicodeError) -> tuple[str, int]:
    """A codecs error handler: each byte UTF-8 cannot read, read as Windows-1252."""
    if not isinstance(exc, UnicodeDecodeError):
        raise exc
    bad = exc.object[exc.start : exc.end]
    return bad.decode("cp1252", errors="replace"), exc.end


codecs.register_error("wardflow-cp1252", _cp1252_strays)


def text_encoding(raw: bytes) -> str:
    """The codec a message is read (and answered) in: ISO-2022-JP where MSH-18 names a JIS set
    to switch to; MSH-18's first (`CHARSETS`) where it declares one; else UTF-8 where the bytes
    are UTF-8 (a byte-order mark: UTF-8), or hold UTF-8 sequences beside stray bytes that are
    only Windows-1252 punctuation (0x80-0x9F, a curly quote) or no more than the sequences (a
    pasted "café"), the strays read as Windows-1252 where they stand (`decode_text`); else
    Windows-1252, the common 8-bit set (ISO-8859-1's letters, and its signs where ISO-8859-1
    has controls). Read as Latin-1 whole, a UTF-8 message with one stray byte had every
    non-ASCII letter garbled (a unit "Süd" became "SÃ¼d", a patient's authority another
    token); read as UTF-8 for one chance byte pair, a Latin-1 message had its letters
    replaced. A set declared and not known here (CNS 11643: no codec) is read as
    undeclared."""
    declared = declared_charsets(raw)
    if ISO_2022_JP & set(declared):
        return "iso2022_jp_2"
    if declared and declared[0] in CHARSETS:
        return CHARSETS[declared[0]]
    read = raw.decode("utf-8", errors="surrogateescape")  # a byte not UTF-8: U+DC80-U+DCFF
    strays = [ord(c) - 0xDC00 for c in read if 0xDC80 <= ord(c) <= 0xDCFF]
    sequences = sum(1 for c in read if ord(c) > 127 and not 0xDC80 <= ord(c) <= 0xDCFF)
    if not strays:
        return "utf-8"
    if sequences and (all(b < 0xA0 for b in strays) or sequences >= len(strays)):
        return "utf-8"  # Windows-1252 punctuation (0x80-0x9F) is no Latin-1 letter
    return "cp1252"


def decode_text(raw: bytes) -> str:
    """The message's text in `text_encoding`: UTF-8's strays as Windows-1252 where they stand;
    in another set, a byte not of it becomes U+FFFD where it stands."""
    encoding = text_encoding(raw)
    if encoding == "utf-8":
        return raw.removeprefix(BOM).decode("utf-8", errors="wardflow-cp1252")
    return raw.decode(encoding, errors="replace")


class Gateway:
    """Turns one received message into Kafka records plus an ACK. Thread-safe."""

    def __init__(self, settings: Settings, *, prefix: str = "", listen: str = "") -> None:
        key = settings.require_phi_key()
        self.tokenise = identity.aliased(
            lambda ns, ident: phi.token(key, ns, ident),
            identity.aliases(settings.patient_identifier_aliases),  # a bad one stops the start
        )
        self.tz: tzinfo = ZoneInfo(settings.hl7_timezone)
        self.authority, self.facility = settings.hl7_patient_authority, settings.hl7_facility_id
        self.preferred_authority = settings.hl7_preferred_authority
        self.codes = CodeMap.load(settings.interop_code_map)  # a bad map stops the start
        # the units of beds (a bad capacity file stops the start): where an A07 keeps the bed
        self.bed_units = frozenset(Capacity.load(settings.capacity_file).units)
        self.source = f"mllp://{listen or 'gateway'}"
        self.policy = settings.hl7_ack_policy
        self.production = {p.strip().upper() for p in settings.production_processing_ids.split(",")}
        self.nonproduction = settings.nonproduction_topic_prefix
        self.max_bytes = settings.max_message_bytes
        self.publisher = Publisher(settings, prefix=prefix, stage=STAGE)
        self.stats = GatewayStats()
        self.store_timeout_s = STORE_TIMEOUT_S
        self._lock = threading.Lock()

    # -- deciding (no I/O) ------------------------------------------------------------------

    def decide(self, raw: bytes, size: int | None = None) -> Decision:
        """What the live path does with `raw` (the bytes between MLLP start and end). `size`:
        the message's full size when `raw` is only its head (a message over the limit)."""
        text = decode_text(raw)
        if size is not None or len(raw) > self.max_bytes:
            why = hl7v2.Refused(
                "too_large",
                f"{size or len(raw)} bytes, over the gateway's limit of {self.max_bytes} bytes "
                f"(max_message_bytes); the dead letter keeps the first {HEAD_BYTES} bytes",
                "AR",
                "207",
            )
            return self._refused(None, text, raw[:HEAD_BYTES], why, "")
        msg = hl7v2.parse(text)
        if isinstance(msg, hl7v2.Refused):
            return self._refused(None, text, raw, msg, "")
        route = ""
        pid = hl7v2.processing_id(msg)
        if pid not in self.production:
            if not self.nonproduction:
                why = hl7v2.Refused(
                    "processing_id",
                    f"processing id {pid} (MSH-11) is not accepted here "
                    f"(production: {','.join(sorted(self.production))})",
                    "AR",
                    "202",
                )
                return self._refused(msg, text, raw, why, "")
            route = self.nonproduction
        d = self._mapped(msg, text, raw, route)
        return dataclasses.replace(d, processing_id=pid) if pid != "P" else d

    def _mapped(self, msg: Any, text: str, raw: bytes, route: str) -> Decision:
        try:
            result = hl7v2.map_message(
                msg,
                self.tokenise,
                source=self.source,
                default_tz=self.tz,
                default_authority=self.authority,
                default_facility=self.facility,
                codes=self.codes,
                bed_units=self.bed_units,
                preferred_authority=self.preferred_authority,
            )
        except Exception as exc:  # no check foresaw it: this message is refused, the link lives
            log.error(
                "message not mapped: %s (its text is in the sealed dead letter)", type(exc).__name__
            )
            result = hl7v2.Refused(
                "unmappable", f"{type(exc).__name__} while mapping the message", "AE", "207"
            )
        if isinstance(result, hl7v2.Refused):
            return self._refused(msg, text, raw, result, route)
        ahead = self.publisher.future(result.records)
        if ahead and len(ahead) < len(result.records):  # a reading timed ahead goes alone
            result = _without_future(result, ahead, self.publisher, raw)
        encoded = self.publisher.encode(result.records)
        if isinstance(encoded, codec.Rejection):
            why = hl7v2.Refused(encoded.reason_code, encoded.reason, "AE", "207")
            return self._refused(msg, text, raw, why, route)
        letters = [
            Letter(r.refusal.reason_code, r.refusal.reason, r.payload) for r in result.rejected
        ]
        unread, notes = tuple(result.unread), tuple(result.notes)
        if not letters:
            return Decision(
                hl7v2.ack(msg, "AA"), "AA", encoded, [], route=route, unread=unread, notes=notes
            )
        reason = "; ".join(f"{r.reason_code}: {r.reason}" for r in letters)
        first = result.rejected[0].refusal
        note = f"stored; {len(letters)} value(s) not read: {first.reason}"
        ack = hl7v2.ack(msg, "AA", note, first.hl7_error)
        return Decision(ack, "AA", encoded, letters, reason, route, unread=unread, notes=notes)

    def _refused(
        self, msg: Any, text: str, payload: bytes, why: hl7v2.Refused, route: str
    ) -> Decision:
        letter = Letter(why.reason_code, why.reason, payload)
        reason = f"{why.reason_code}: {why.reason}"
        if why.ack_code == "AE" and self.policy == "durable":
            ack = hl7v2.ack(msg, "AA", f"stored for review: {why.reason}", why.hl7_error, raw=text)
            return Decision(ack, "AA", [], [letter], reason, route)
        ack = hl7v2.ack(msg, why.ack_code, why.reason, why.hl7_error, raw=text)
        return Decision(ack, why.ack_code, [], [letter], reason, route)

    # -- the live path ----------------------------------------------------------------------

    def handle(self, raw: bytes, size: int | None = None) -> str:
        """Decide, store (records and dead letters, confirmed by Kafka) and acknowledge. The
        lock guards the counts only: each connection waits for its own message's records
        (publisher.Deliveries), never behind another's."""
        with self._lock:
            self.stats.received += 1
            seq = self.stats.received
        try:
            d = self.decide(raw, size)
        except Exception as exc:  # no check foresaw it: refused and stored, the link lives
            d = self._unforeseen(raw, exc)
        deliveries = Deliveries()
        try:
            self.publisher.send(d.records, route=d.route, deliveries=deliveries)
            for letter in d.letters:
                self.publisher.dead_letter(
                    self.source,
                    seq,
                    letter.reason_code,
                    letter.reason,
                    letter.payload,
                    route=d.route,
                    deliveries=deliveries,
                )
            deliveries.wait(self.publisher.producer, self.store_timeout_s)
        except Exception as exc:  # Kafka refused or did not confirm: nothing is stored
            with self._lock:
                self.stats.retry_asked += 1
            log.warning("message %d not stored, AE (resend): %s", seq, exc)
            text = decode_text(raw)
            msg = hl7v2.parse(text) if size is None else None
            parsed = None if isinstance(msg, hl7v2.Refused) else msg
            return hl7v2.ack(parsed, "AE", f"not confirmed stored, resend: {exc}", "207", raw=text)
        if d.ack_code != "AA" or d.letters:
            log.info(
                "message %d: %s, %d dead letter(s): %s",
                seq,
                d.ack_code,
                len(d.letters),
                d.reason,
            )
        with self._lock:
            if d.records:
                self.stats.accepted += 1
            self.stats.dead_lettered += len(d.letters)
            for topic, _, _ in d.records:
                self.stats.records[topic] = self.stats.records.get(topic, 0) + 1
            self.count_unread(seq, d.unread)
        return d.ack

    def answer(self, raw: bytes, size: int | None = None) -> str:
        """`handle`, never raising: whatever fails, the sender gets an ACK (AE 207, resend)
        and the connection and the messages behind this one live on."""
        try:
            return self.handle(raw, size)
        except Exception as exc:
            log.exception("message not answered by the gateway: %s", type(exc).__name__)
            return hl7v2.ack(
                None, "AE", f"not confirmed stored, resend: {type(exc).__name__}", "207"
            )

    def abandon(self, head: bytes, size: int) -> None:
        """A frame the sender cut off (`FrameReader.abandoned`): dead-lettered
        `truncated_frame` with its first HEAD_BYTES, answered by nothing (the sender did not
        finish it and resends it). An empty one (two start bytes) is noise."""
        if size == 0:
            return
        with self._lock:
            self.stats.received += 1
            seq = self.stats.received
        reason = (
            f"a frame of {size} bytes cut off by the sender (a new frame, the end of the "
            "connection or a minute of silence before its end block); not answered"
        )
        deliveries = Deliveries()
        try:
            self.publisher.dead_letter(
                self.source, seq, "truncated_frame", reason, head, deliveries=deliveries
            )
            deliveries.wait(self.publisher.producer, self.store_timeout_s)
        except Exception as exc:
            log.warning("message %d (cut off) not stored: %s", seq, exc)
            return
        log.info("message %d: cut off after %d bytes, dead-lettered", seq, size)
        with self._lock:
            self.stats.dead_lettered += 1

    def _unforeseen(self, raw: bytes, exc: Exception) -> Decision:
        """A message whose reading raised (a gap no check foresaw): refused AE 207 and
        dead-lettered (`internal_error`), so that the sender gets its ACK and the connection
        and the messages behind it live on."""
        log.error(
            "message not read: %s (its text is in the sealed dead letter)", type(exc).__name__
        )
        why = hl7v2.Refused(
            "internal_error", f"not read: {type(exc).__name__} (a gap in wardflow)", "AE", "207"
        )
        letter = Letter(why.reason_code, why.reason, raw)
        try:
            ack = hl7v2.ack(None, "AE", why.reason, why.hl7_error, raw=decode_text(raw))
        except Exception:  # the header itself cannot be read back: a bare ACK
            ack = hl7v2.ack(None, "AE", why.reason, why.hl7_error)
        return Decision(ack, "AE", [], [letter], f"{why.reason_code}: {why.reason}")

    def count_unread(self, seq: int, codes: tuple[str, ...]) -> None:
        """Count a stored message's unread OBX codes; log each code the first time it comes
        (and once that UNREAD_KEPT codes are counted: later new ones go under UNREAD_OTHER)."""
        unread = self.stats.unread
        for code in codes:
            if code not in unread and len(unread) >= UNREAD_KEPT:
                if UNREAD_OTHER not in unread:
                    log.warning(
                        "message %d: %d distinct unread OBX codes counted; further new ones "
                        "are counted as %r, not logged",
                        seq,
                        UNREAD_KEPT,
                        UNREAD_OTHER,
                    )
                code = UNREAD_OTHER
            unread[code] = unread.get(code, 0) + 1
            if unread[code] == 1 and code != UNREAD_OTHER:
                log.info(
                    "message %d: OBX code %s is not read (no vital sign or lab code wardflow "
                    "reads, nor mapped in interop_code_map); logged once, counted in "
                    "GatewayStats.unread",
                    seq,
                    code,
                )


def _without_future(
    result: hl7v2.Mapped, ahead: list[int], publisher: Publisher, raw: bytes
) -> hl7v2.Mapped:
    """An ORU's readings but those timed more than `max_future_s` ahead (a monitor's clock, a
    wrong year in one OBX-14), each of which is dead-lettered alone (`future_time`, the message
    as its payload: its OBX are not told apart once grouped by time)."""
    rejected = [
        hl7v2.Rejected(
            f"{topic} at {rec['event_time']:%Y-%m-%dT%H:%M:%SZ}",
            hl7v2.Refused("future_time", publisher.future_reason(topic, rec), "AE", "207"),
            raw,
        )
        for i, (topic, rec) in enumerate(result.records)
        if i in ahead
    ]
    kept = [r for i, r in enumerate(result.records) if i not in ahead]
    return hl7v2.Mapped(kept, [*result.rejected, *rejected], result.unread, result.notes)


class FrameReader:
    """MLLP frames out of a byte stream (HL7 v2 MLLP release 2: <VT> message <FS><CR>; neither
    byte may occur in a message). A frame ends at its FS: the CR after it, in this read or the
    next, is outside every frame and discarded as noise, so a sender that ends its frames with
    FS alone is answered at once rather than when its next frame comes. A VT inside an open
    frame starts a new one: the open one was cut off (a sender that gave up mid-frame and sent
    again) and is `abandoned` (its first HEAD_BYTES and size), never read as part of the next.
    A frame over `max_bytes` is read to its end and given back as its first HEAD_BYTES with its
    full size, so that it can be refused explicitly."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()
        self.scanned = 0  # where the search for FS and VT resumes
        self.in_frame = False
        self.head = b""
        self.discarded = 0  # bytes of an oversize frame dropped so far
        self.abandoned: list[tuple[bytes, int]] = []  # frames cut off: (head, size)

    def feed(self, chunk: bytes) -> Iterator[tuple[bytes, int | None]]:
        self.buf += chunk
        while True:
            if not self.in_frame:
                start = self.buf.find(START)
                if start < 0:
                    self.buf.clear()  # bytes outside a frame are noise by the MLLP spec
                    return
                del self.buf[: start + 1]
                self.in_frame, self.scanned, self.head, self.discarded = True, 0, b"", 0
            end = self.buf.find(FS, self.scanned)
            restart = self.buf.find(START, self.scanned)
            if restart >= 0 and (end < 0 or restart < end):
                self.abandoned.append(self.cut_off(restart))
                del self.buf[:restart]  # the VT stays: it starts the next frame
                self.in_frame = False
                continue
            if end < 0:
                self.scanned = len(self.buf)
                if self.discarded or len(self.buf) > self.max_bytes:
                    if not self.discarded:
                        self.head = bytes(self.buf[:HEAD_BYTES])
                    self.discarded += len(self.buf)
                    self.buf.clear()
                    self.scanned = 0
                return
            body = bytes(self.buf[:end])
            del self.buf[: end + 1]
            self.in_frame = False
            if self.discarded:
                yield self.head, self.discarded + len(body)
            else:
                yield body, None

    def cut_off(self, at: int) -> tuple[bytes, int]:
        """The open frame as it stands, its first `at` buffered bytes: (head, size)."""
        if self.discarded:
            return self.head, self.discarded + at
        return bytes(self.buf[: min(at, HEAD_BYTES)]), at

    def take_abandoned(self) -> list[tuple[bytes, int]]:
        taken, self.abandoned = self.abandoned, []
        return taken


class _Handler(socketserver.BaseRequestHandler):
    """One sender's connection: each frame answered in order. A connection idle for
    `hl7_idle_timeout_s`, or with a frame started and not ended within FRAME_TIMEOUT_S, is
    closed (a sender that went away without closing held its thread and buffer for ever);
    TCP keepalive finds peers gone without a word. A frame cut off by the sender (a new frame
    inside it, or the connection closed or timed out within it) is dead-lettered
    `truncated_frame` and answered by nothing: the sender never finished it."""

    server: MllpServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        gateway = self.server.gateway
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        for option, value in KEEPALIVE.items():  # probes within minutes, not the host's 2 h
            if hasattr(socket, option):
                sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
        reader = FrameReader(gateway.max_bytes)
        self.server.opened(sock)
        try:
            while not self.server.stopping.is_set():
                sock.settimeout(FRAME_TIMEOUT_S if reader.in_frame else self.server.idle_timeout_s)
                try:
                    chunk = sock.recv(1 << 20)
                except (TimeoutError, OSError) as exc:
                    log.info("connection closed: %s", type(exc).__name__)
                    chunk = b""
                if not chunk:
                    if reader.in_frame:
                        reader.abandoned.append(reader.cut_off(len(reader.buf)))
                    self._abandon(reader)
                    return
                for body, size in reader.feed(chunk):
                    ack = gateway.answer(body, size)  # in the message's character set
                    sock.sendall(frame(ack.encode(text_encoding(body), errors="replace")))
                    if self.server.stopping.is_set():
                        return  # stopping: frames read behind this one are not answered (resent)
                self._abandon(reader)
        finally:
            self.server.closed(sock)

    def _abandon(self, reader: FrameReader) -> None:
        for head, size in reader.take_abandoned():
            self.server.gateway.abandon(head, size)


REFUSED_LOG_EVERY_S = 60.0  # connections past the cap: one log line a minute at most


class MllpServer(socketserver.ThreadingTCPServer):
    """`shutdown` stops accepting, closes the listening socket (a sender's new connection is
    refused, so that it fails over) and ends every connection after the message it is on: its
    ACK still goes out, the next is not read. At most `max_connections` connections at once:
    one more is closed as it is accepted (`verify_request`), before a thread is started for it."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(
        self,
        address: tuple[str, int],
        gateway: Gateway,
        idle_timeout_s: float = 3600.0,
        max_connections: int = 64,
    ) -> None:
        self.gateway = gateway
        self.idle_timeout_s = idle_timeout_s
        self.max_connections = max_connections
        self.stopping = threading.Event()
        self._open: dict[socket.socket, threading.Thread | None] = {}
        self._open_lock = threading.Lock()
        self._refused, self._refused_logged = 0, -REFUSED_LOG_EVERY_S
        super().__init__(address, _Handler)

    def verify_request(self, request: Any, client_address: Any) -> bool:
        """Counts the connection as open from its accept (its thread not started yet), unless
        `max_connections` are: then it is closed unanswered (socketserver's shutdown_request)."""
        with self._open_lock:
            if len(self._open) >= self.max_connections:
                full = True
            else:
                full = False
                self._open[request] = None
        if full:
            self._refused += 1
            now = time.monotonic()
            if now - self._refused_logged >= REFUSED_LOG_EVERY_S:  # a looping sender: one line
                log.warning(
                    "MLLP connection from %s closed: %d connections open already "
                    "(hl7_max_connections); %d refused since the last such line",
                    client_address[0] if isinstance(client_address, tuple) else client_address,
                    self.max_connections,
                    self._refused,
                )
                self._refused, self._refused_logged = 0, now
        return not full

    def shutdown_request(self, request: Any) -> None:
        """Every accepted connection ends here (handled, failed or refused): no longer counted."""
        self.closed(request)
        super().shutdown_request(request)

    def opened(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._open[sock] = threading.current_thread()

    def closed(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._open.pop(sock, None)

    def shutdown(self) -> None:
        """Returns once every connection has answered the message it was on (or its store
        timed out): the process may exit then (its handlers are daemon threads, and a
        SIGTERM's exit dropped the ACK of a message already stored, which the sender resent)."""
        self.stopping.set()
        super().shutdown()
        self.server_close()
        with self._open_lock:
            open_now = dict(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RD)  # its recv returns: the ACK can still go out
        deadline = time.monotonic() + self.gateway.store_timeout_s + 5.0
        for thread in open_now.values():
            if thread is not None:  # None: accepted, its thread not started (it reads nothing)
                thread.join(max(0.0, deadline - time.monotonic()))


def topic_prefixes(settings: Settings, prefix: str = "") -> list[str]:
    """The prefixes of the gateway's topics: production, then non-production if routed."""
    route = settings.nonproduction_topic_prefix
    return [prefix] + ([prefix + route] if route else [])


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 2575, prefix: str = ""
) -> MllpServer:
    """Start the listener on a background thread (port 0 picks a free port); call shutdown()."""
    gateway = Gateway(settings, prefix=prefix, listen=f"{host}:{port}")  # a bad setting stops here
    for p in topic_prefixes(settings, prefix):
        kafka_io.ensure_topics(settings, TOPICS, prefix=p)
    server = MllpServer(
        (host, port), gateway, settings.hl7_idle_timeout_s, settings.hl7_max_connections
    )
    threading.Thread(target=server.serve_forever, name="mllp", daemon=True).start()
    return server


def send(host: str, port: int, messages: list[str | bytes], timeout_s: float = 30.0) -> list[str]:
    """An MLLP client: send each message, wait for its ACK, return the ACKs' ER7 text."""
    acks = []
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        buf = b""
        for m in messages:
            sock.sendall(frame(m))
            while END not in buf:
                chunk = sock.recv(65536)
                if not chunk:
                    raise ConnectionError("gateway closed the connection before acknowledging")
                buf += chunk
            reply, buf = buf.split(END, 1)
            acks.append(reply.lstrip(START).decode())
    return acks


# -- offline check mode ------------------------------------------------------------------------

_BATCH = (b"FHS", b"BHS", b"BTS", b"FTS")  # batch envelope segments (HL7 v2 section 2.10.3)


def split_messages(data: bytes) -> list[bytes]:
    """The messages of a file: MLLP frames or plain ER7, one or many, segments ending in CR, LF
    or CRLF; each message starts at an MSH segment; batch envelopes and blank lines are skipped
    (the byte-order mark a file saved on Windows starts with is no text: left out, whatever
    line follows it). Text before the first MSH is a message of its own (that will not parse),
    so nothing goes unreported."""
    lines = re.split(rb"\r\n|\n|\r", data.replace(START, b"\n").replace(b"\x1c", b"\n"))
    messages: list[list[bytes]] = []
    for raw in lines:
        line = raw.removeprefix(BOM)  # a file's, before its first line, blank or not
        if not line.strip() or line.startswith(_BATCH):
            continue
        if line.startswith(b"MSH") or not messages:
            messages.append([line])
        else:
            messages[-1].append(line)
    return [b"\r".join(m) for m in messages]


def inputs(paths: list[Path]) -> list[Path]:
    """Files as given; a folder stands for every file in it (sorted, not hidden)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out += sorted(f for f in p.iterdir() if f.is_file() and not f.name.startswith("."))
        else:
            out.append(p)
    return out


def check(settings: Settings, paths: list[Path]) -> Iterator[str]:
    """One tab-separated line per message: file, ACK code, records produced, reason (for a
    stored ORU, the codes of its OBX segments it does not read, which the code map may add)."""
    gateway = Gateway(settings, listen="check")
    for path in inputs(paths):
        try:
            data = path.read_bytes()
        except OSError as exc:
            yield f"{path.name}\tunread\t0\t{type(exc).__name__}: {exc.strerror or exc}"
            continue
        messages = split_messages(data) or [data]
        for raw in messages:
            d = gateway.decide(raw)
            reason = d.reason
            if d.unread:
                unread = f"OBX not read: {', '.join(d.unread)}"
                reason = f"{reason}; {unread}" if reason else unread
            if d.notes:
                notes = "; ".join(d.notes)
                reason = f"{reason}; {notes}" if reason else notes
            if d.route:
                where = f"processing id {d.processing_id}: non-production topics {d.route}*"
                reason = f"{reason}; {where}" if reason else where
            yield f"{path.name}\t{d.ack_code}\t{len(d.records)}\t{hl7v2.printable(reason)}"


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["check"]:
        ap = argparse.ArgumentParser(
            prog="wardflow-hl7-gateway check",
            description="What the gateway would do with each message, without Kafka: one line "
            "per message, tab-separated: file, ACK code, records produced, reason.",
        )
        ap.add_argument("paths", nargs="+", type=Path, help="HL7 v2 files or folders")
        Settings.add_arguments(ap)
        a = ap.parse_args(argv[1:])
        lines = list(check(Settings.resolve(a), a.paths))
        print("\n".join(lines), flush=True)
        raise SystemExit(1 if any("\tunread\t" in line for line in lines) else 0)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2575)
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    kafka_io.wait_for_broker(settings)
    server = serve(settings, host=a.host, port=a.port, prefix=a.topic_prefix)
    print(f"HL7 v2 MLLP gateway on {a.host}:{server.server_address[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    with contextlib.suppress(KeyboardInterrupt):
        while not stop.wait(0.5):  # a signal between the handler's install and a bare wait()
            pass  # was never seen: the gateway went on serving until it was killed
    server.shutdown()


if __name__ == "__main__":
    main()
