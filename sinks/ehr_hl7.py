"""Kafka `alert.v2` → the EHR's HL7 v2 listener: one ORU^R01 per alert event over MLLP
(schemas.interop.hl7_alerts), each waiting for its ACK before the next is sent.

    alert.v2 ──▶ decode ─ ORU^R01 ─▶ <VT>msg<FS><CR> ──▶ EHR ──▶ ACK (MSA-1, MSA-2 = our MSH-10)
                   │       AA/CA: done │ AR/CR/CE, timeout, dropped: resend │ AE ─▶ deadletter.v1
                   └ undecodable ─────────────────────────────────────────────▶ deadletter.v1

The acknowledgment codes are read as HL7 v2.5.1 §2.9.2.1 and §2.9.3.1 (table 0008) define
them (schemas.interop.hl7_alerts.Ack):

- AA or CA: delivered; the offset is committed with its batch (sinks.ehr_fhir.AlertFeed).
- AE (application error): the EHR found an error in the message's content
  (an unknown patient, a value it cannot store). The same bytes sent again would meet the same
  error, and would hold up every patient's alerts behind this one: dead-lettered (stage
  `ehr_hl7`, reason code `hl7_error`) with the ACK's text (MSA-3, ERR) as the reason, and the
  sink goes on.
- AR, CR or CE (application reject, commit reject, commit error): refused for a reason unrelated to
  the content (the EHR's system down, an internal error, its message service's queue or sequence; or
  MSH-9, -11 or -12 not accepted, which fails every message alike), no ACK within `--ack-timeout-s`,
  a dropped or refused connection, or a reply that is not an ACK (one that does not parse included):
  the same message (same bytes, same MSH-10, so the EHR can recognise the resend) is sent again on a
  new connection after a backoff (`--backoff-s` doubling, at most 30 s), up to `--max-attempts`;
  then the sink stops with an error, the event uncommitted: nothing is skipped silently.

The message is framed `<VT>` message `<FS><CR>`: its last segment ends with its own CR (every
segment does, §2.6), the frame adds none before `<FS>`.

One connection is kept open between messages. A listener that closes it after every ACK (as
hl7apy's MLLPServer does) is noticed before the next send; a message lost on a connection closed
meanwhile is sent again at once on a new one, as HTTP clients do with a stale keep-alive
connection. An ACK whose MSA-2 names another message (a late reply to an attempt that timed
out) is skipped.
"""

from __future__ import annotations

import argparse
import select
import socket
import time
from collections.abc import Callable
from typing import Any

from jobs.feeds.hl7_gateway import END, START, frame
from schemas.interop import hl7_alerts
from schemas.settings import Settings
from sinks.ehr_fhir import (
    BATCH_BUDGET_S,
    AlertFeed,
    DeliveryFailed,
    FeedStats,
    Outcome,
    Refusal,
    add_feed_arguments,
    backoff_s,
    run_feed,
)

STAGE = "ehr_hl7"
GROUP = "wardflow-ehr-hl7"
MAX_REPLY_BYTES = 1 << 20


def parse_target(target: str) -> tuple[str, int]:
    """`host:port` (IPv6 in brackets: `[::1]:2575`)."""
    host, sep, port = target.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ValueError(f"ehr_mllp_target {target!r} is not host:port")
    return host.strip("[]"), int(port)


class _Stale(ConnectionError):
    """A reused connection turned out closed before any reply byte: resend at once."""


class MllpClient:
    """Sends a framed message and reads frames until the ACK for it."""

    def __init__(self, host: str, port: int, *, timeout_s: float = 30.0) -> None:
        self.host, self.port, self.timeout_s = host, port, timeout_s
        self.sock: socket.socket | None = None
        self.connections = 0

    def _open(self) -> tuple[socket.socket, bool]:
        """A connected socket, and whether it is a reused one."""
        if self.sock is not None:
            readable, _, _ = select.select([self.sock], [], [], 0)
            if not readable:
                return self.sock, True
            self.close()  # closed by the peer, or unread bytes from a failed attempt
        self.sock = socket.create_connection((self.host, self.port), timeout=self.timeout_s)
        self.connections += 1
        return self.sock, False

    def exchange(self, text: str, control_id: str) -> str:
        """The ER7 text of the ACK to `control_id`. Raises OSError (refused, dropped, timed out;
        `_Stale` for a reused connection found closed)."""
        sock, reused = self._open()
        deadline = time.monotonic() + self.timeout_s
        try:
            sock.sendall(frame(text))
            buf = b""
            while True:
                while END not in buf:
                    sock.settimeout(max(0.001, deadline - time.monotonic()))
                    chunk = sock.recv(65536)
                    if not chunk:
                        if reused and not buf:
                            raise _Stale("the listener had closed the connection")
                        raise ConnectionError("the listener closed the connection without an ACK")
                    buf += chunk
                    if len(buf) > MAX_REPLY_BYTES:
                        raise ConnectionError("no MLLP end block within 1 MiB of reply")
                reply, buf = buf.split(END, 1)
                start = reply.find(START)
                ack = reply[start + 1 :].decode("utf-8", "replace") if start >= 0 else ""
                if _acknowledges(ack, control_id):
                    return ack
        except (ConnectionResetError, BrokenPipeError) as exc:
            self.close()
            if reused:
                raise _Stale(str(exc)) from exc
            raise
        except OSError:
            self.close()
            raise

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _acknowledges(ack: str, control_id: str) -> bool:
    """Whether a reply frame is for `control_id`: MSA-2 names it, or names nothing."""
    for seg in ack.replace("\n", "\r").split("\r"):
        if seg.startswith("MSA"):
            fields = seg.split(seg[3:4] or "|")
            return len(fields) < 3 or fields[2] in ("", control_id)
    return True  # not an ACK at all: parse_ack says so


class Hl7Sender:
    """`deliver` for AlertFeed: one ORU^R01 per event, resent until acknowledged."""

    def __init__(
        self,
        client: MllpClient,
        stats: FeedStats,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        receiver: hl7_alerts.Receiver = hl7_alerts.DEFAULT_RECEIVER,
    ) -> None:
        self.client = client
        self.receiver = receiver
        self.stats = stats
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.sleep = sleep

    def __call__(self, event: dict[str, Any]) -> Outcome:
        text = hl7_alerts.er7(event, self.receiver)
        cid = hl7_alerts.control_id(event["alert_event_id"])
        last = ""
        attempt = 0
        while attempt < self.max_attempts:
            try:
                reply = self.client.exchange(text, cid)
            except _Stale:
                continue  # not an attempt: the message never reached a live connection
            except OSError as exc:  # refused, dropped, timed out
                self.client.close()
                last = f"{type(exc).__name__}: {exc}"
            else:
                try:
                    ack = hl7_alerts.parse_ack(reply)
                except ValueError as exc:  # not an ACK (parse_ack raises nothing else): resend
                    self.client.close()
                    last = f"not an ACK: {type(exc).__name__}: {exc}"
                else:
                    if ack.accepted:
                        self.stats.resources_written += 1
                        return "written"
                    if ack.error:  # the content is in error: the same bytes cannot pass
                        return Refusal("hl7_error", f"{ack.code} to {cid}: {ack.text or '-'}")
                    self.client.close()  # AR/CR/CE, or a code outside table 0008
                    last = f"{ack.code} to {cid}: {ack.text or '-'}"
            attempt += 1
            if attempt < self.max_attempts:
                self.stats.retries += 1
                self.sleep(backoff_s(attempt - 1, self.backoff_base_s))
        raise DeliveryFailed(
            f"ORU^R01 {cid} (alert event {event['alert_event_id']}) not accepted by "
            f"{self.client.host}:{self.client.port} after {self.max_attempts} attempts: {last}"
        )


def feed(
    settings: Settings,
    *,
    prefix: str = "",
    bounded: bool = True,
    max_attempts: int = 8,
    backoff_base_s: float = 0.5,
    ack_timeout_s: float = 30.0,
    stop: Callable[[], bool] = lambda: False,
    group_id: str = GROUP,
    budget_s: float = BATCH_BUDGET_S,
) -> FeedStats:
    """Send `alert.v2` to settings.ehr_mllp_target until stopped (or, bounded, its end),
    committing at least every `budget_s` (`AlertFeed`)."""
    if not settings.ehr_mllp_target:
        raise ValueError("no EHR listener: set ehr_mllp_target (WARDFLOW_EHR_MLLP_TARGET)")
    host, port = parse_target(settings.ehr_mllp_target)
    stats = FeedStats()
    client = MllpClient(host, port, timeout_s=ack_timeout_s)
    receiver = hl7_alerts.Receiver(
        settings.ehr_hl7_receiving_application,
        settings.ehr_hl7_receiving_facility,
        settings.ehr_hl7_processing_id,
    )
    sender = Hl7Sender(
        client, stats, max_attempts=max_attempts, backoff_base_s=backoff_base_s, receiver=receiver
    )
    alerts = AlertFeed(
        settings,
        sender,
        stage=STAGE,
        group_id=group_id,
        prefix=prefix,
        stats=stats,
        budget_s=budget_s,
    )
    try:
        return alerts.run(bounded=bounded, stop=stop)
    finally:
        client.close()
        alerts.close()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_feed_arguments(ap, GROUP)
    ap.add_argument("--ack-timeout-s", type=float, default=30.0)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    if not settings.ehr_mllp_target:
        ap.error("no EHR listener: set WARDFLOW_EHR_MLLP_TARGET or --ehr-mllp-target")
    run_feed(settings, a, feed, ack_timeout_s=a.ack_timeout_s)


if __name__ == "__main__":
    main()
