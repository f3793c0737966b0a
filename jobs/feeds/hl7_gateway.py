"""HL7 v2 gateway: an MLLP listener that maps ADT and ORU^R01 messages to canonical Avro records
on Kafka and acknowledges every message.

    sender ──MLLP──▶ parse (hl7apy) ─ map (schemas.interop.hl7v2) ─ validate ─▶ Kafka ─▶ ACK AA
                        └────────────── refused ───────────▶ dead-letter topic ─▶ ACK AE/AR

A message is acknowledged with AA only after Kafka confirmed every record it produced (acks=all,
idempotent producer), so a sender that resends on a missing ACK loses nothing; resends carry the
same event ids. When Kafka cannot take the records the reply is AE with error 207 and nothing
is dead-lettered: the sender should resend.

MLLP framing (HL7 v2 MLLP, release 2): <VT> message <FS><CR>, one ACK frame per message.
"""

from __future__ import annotations

import argparse
import socket
import socketserver
import threading
from dataclasses import dataclass, field
from datetime import tzinfo
from typing import Any
from zoneinfo import ZoneInfo

from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import codec, phi, topics
from schemas.interop import hl7v2
from schemas.settings import Settings

START, END = b"\x0b", b"\x1c\x0d"
STAGE = "hl7_gateway"
TOPICS = [
    topics.ADT_EVENT.name,
    topics.VITALS_OBSERVATION.name,
    topics.LABS_RESULT.name,
    topics.DEAD_LETTER.name,
]
MAX_MESSAGE_BYTES = 1 << 20


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


def decode_text(raw: bytes) -> str:
    """UTF-8 if it decodes (ASCII and most modern feeds), else ISO-8859-1 (the common 8-bit
    MSH-18 character set), which maps every byte."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("iso-8859-1")


class Gateway:
    """Turns one received message into Kafka records plus an ACK. Thread-safe."""

    def __init__(self, settings: Settings, *, prefix: str = "", listen: str = "") -> None:
        key = settings.require_phi_key()
        self.tokenise = lambda ns, ident: phi.token(key, ns, ident)
        self.tz: tzinfo = ZoneInfo(settings.hl7_timezone)
        self.source = f"mllp://{listen or 'gateway'}"
        self.publisher = Publisher(settings, prefix=prefix, stage=STAGE)
        self.stats = GatewayStats()
        self._lock = threading.Lock()

    def handle(self, raw: bytes) -> str:
        """Map, publish and acknowledge one message (the bytes between MLLP start and end)."""
        with self._lock:
            self.stats.received += 1
            seq = self.stats.received
            text = decode_text(raw)
            msg = hl7v2.parse(text)
            if isinstance(msg, hl7v2.Refused):
                return self._refuse(raw, text, None, msg, seq)
            result = hl7v2.map_message(msg, self.tokenise, source=self.source, default_tz=self.tz)
            if isinstance(result, hl7v2.Refused):
                return self._refuse(raw, text, msg, result, seq)
            encoded = self.publisher.encode(result.records)
            if isinstance(encoded, codec.Rejection):
                why = hl7v2.Refused(encoded.reason_code, encoded.reason, "AE", "207")
                return self._refuse(raw, text, msg, why, seq)
            try:
                self.publisher.send(encoded)
                self.publisher.flush()
            except RuntimeError as exc:
                self.stats.retry_asked += 1
                return hl7v2.ack(msg, "AE", f"not stored, resend: {exc}", "207")
            self.stats.accepted += 1
            for topic, _, _ in encoded:
                self.stats.records[topic] = self.stats.records.get(topic, 0) + 1
            return hl7v2.ack(msg, "AA")

    def _refuse(self, raw: bytes, text: str, msg: Any, why: hl7v2.Refused, seq: int) -> str:
        self.publisher.dead_letter(self.source, seq, why.reason_code, why.reason, raw)
        self.publisher.flush()
        self.stats.dead_lettered += 1
        return hl7v2.ack(msg, why.ack_code, why.reason, why.hl7_error, raw=text)


class _Handler(socketserver.BaseRequestHandler):
    server: MllpServer

    def handle(self) -> None:
        buf = b""
        sock: socket.socket = self.request
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
            while True:
                start = buf.find(START)
                if start < 0:
                    buf = b""  # bytes outside a frame are noise by the MLLP spec
                    break
                end = buf.find(END, start)
                if end < 0:
                    buf = buf[start:]
                    if len(buf) > MAX_MESSAGE_BYTES:
                        buf = b""  # an unterminated giant frame: drop it, keep the session
                    break
                body, buf = buf[start + 1 : end], buf[end + len(END) :]
                sock.sendall(frame(self.server.gateway.handle(body)))


class MllpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], gateway: Gateway) -> None:
        self.gateway = gateway
        super().__init__(address, _Handler)


def serve(
    settings: Settings, *, host: str = "127.0.0.1", port: int = 2575, prefix: str = ""
) -> MllpServer:
    """Start the listener on a background thread (port 0 picks a free port); call shutdown()."""
    kafka_io.ensure_topics(settings, TOPICS, prefix=prefix)
    gateway = Gateway(settings, prefix=prefix, listen=f"{host}:{port}")
    server = MllpServer((host, port), gateway)
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


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=2575)
    ap.add_argument("--topic-prefix", default="")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    kafka_io.wait_for_broker(settings)
    server = serve(settings, host=a.host, port=a.port, prefix=a.topic_prefix)
    print(f"HL7 v2 MLLP gateway on {a.host}:{server.server_address[1]}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()


if __name__ == "__main__":
    main()
