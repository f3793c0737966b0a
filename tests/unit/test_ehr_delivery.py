"""The EHR write-back's delivery of one event, without Kafka: sinks.ehr_hl7's sender and MLLP
client against an MLLP listener on a loopback port playing the EHR (it records the bytes it
receives and answers as told), and sinks.ehr_fhir's writer and HTTP client against a loopback
HTTP server playing the FHIR server."""

from __future__ import annotations

import json
import socketserver
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from jobs.feeds.hl7_gateway import END, START, frame
from schemas.interop import fhir_alerts, hl7_alerts
from sinks.ehr_fhir import DeliveryFailed, FeedStats, FhirClient, FhirWriter, Refusal
from sinks.ehr_hl7 import Hl7Sender, MllpClient
from tests.unit.test_fhir_alerts import alert

# --- HL7 v2 over MLLP -------------------------------------------------------------------------

Answer = Callable[[str], str | None]  # the message's control id → the ACK's text (None: drop)


def ack(code: str, version: str = "2.5.1", *segments: str) -> Answer:
    """An ACK of `code` in `version` to whatever message came, MSA-3 "why", then `segments`."""

    def answer(cid: str) -> str:
        head = f"MSH|^~\\&|EHR|GH|WARDFLOW|GH|20260301080001||ACK^R01|A1|P|{version}"
        return "\r".join([head, f"MSA|{code}|{cid}|why", *segments]) + "\r"

    return answer


@dataclass
class Ehr:
    """What the listener received (each frame's bytes, whole) and its answers, in turn; once
    they are used up, AA."""

    answers: list[Answer] = field(default_factory=list)
    frames: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, raw: bytes) -> bytes | None:
        text = raw[len(START) : -len(END)].decode("utf-8")
        cid = text.split("\r", 1)[0].split("|")[9]
        with self.lock:
            self.frames.append(raw)
            reply = (self.answers.pop(0) if self.answers else ack("AA"))(cid)
        return None if reply is None else frame(reply)


class _Mllp(socketserver.BaseRequestHandler):
    """One connection: frames in, an answer to each, until the sender closes it."""

    server: _MllpServer

    def handle(self) -> None:
        buf = b""
        while True:
            while END not in buf:
                chunk = self.request.recv(65536)
                if not chunk:
                    return
                buf += chunk
            raw, buf = buf.split(END, 1)
            reply = self.server.ehr.answer(raw + END)
            if reply is None:
                return  # dropped
            self.request.sendall(reply)


class _MllpServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, ehr: Ehr) -> None:
        super().__init__(("127.0.0.1", 0), _Mllp)
        self.ehr = ehr


@pytest.fixture
def ehr() -> Iterator[tuple[Ehr, MllpClient]]:
    state = Ehr()
    server = _MllpServer(state)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    client = MllpClient("127.0.0.1", server.server_address[1], timeout_s=5)
    yield state, client
    client.close()
    server.shutdown()
    server.server_close()


def sender(client: MllpClient, stats: FeedStats, waits: list[float], **kw: Any) -> Hl7Sender:
    return Hl7Sender(client, stats, backoff_base_s=0.5, sleep=waits.append, **kw)


def test_an_ae_is_dead_lettered_with_the_ehrs_text_and_not_sent_again(
    ehr: tuple[Ehr, MllpClient],
) -> None:
    code = "AE"
    # v2.5.1 §2.9.2.1: AE, an error in the message's content; the same bytes would meet it again
    state, client = ehr
    state.answers = [ack(code, "2.5.1", "ERR||PID^1^3|204^Unknown key identifier^HL70357|E")]
    stats, waits = FeedStats(), list[float]()
    event = alert()

    outcome = sender(client, stats, waits)(event)

    cid = hl7_alerts.control_id(event["alert_event_id"])
    assert outcome == Refusal(
        "hl7_error", f"{code} to {cid}: why; 204^Unknown key identifier^HL70357"
    )
    assert len(state.frames) == 1 and (stats.retries, waits) == (0, [])


def test_an_ar_cr_or_ce_is_sent_again_the_same_with_a_backoff_until_the_ehr_accepts(
    ehr: tuple[Ehr, MllpClient],
) -> None:
    # AR: rejected for a reason unrelated to the content (the EHR's system down); CE: its message
    # service could not take it (§2.9.3.1, e.g. a full queue), the content unread: a resend may pass
    state, client = ehr
    state.answers = [ack("AR"), ack("CR"), ack("CE"), ack("AA")]
    stats, waits = FeedStats(), list[float]()

    assert sender(client, stats, waits)(alert()) == "written"

    assert len(state.frames) == 4 and len(set(state.frames)) == 1  # byte for byte, same MSH-10
    assert (stats.retries, stats.resources_written, waits) == (3, 1, [0.5, 1.0, 2.0])


def test_an_ehr_that_keeps_answering_ar_stops_the_sender_and_nothing_is_skipped(
    ehr: tuple[Ehr, MllpClient],
) -> None:
    state, client = ehr
    state.answers = [ack("AR", "2.5.1", "ERR|||207^Database offline^HL70357|E")] * 3
    stats, waits = FeedStats(), list[float]()
    event = alert()
    cid = hl7_alerts.control_id(event["alert_event_id"])

    with pytest.raises(DeliveryFailed, match=rf"{cid}.*after 3 attempts: AR .*Database offline"):
        sender(client, stats, waits, max_attempts=3)(event)
    assert len(state.frames) == 3 and len(set(state.frames)) == 1
    assert (stats.retries, waits) == (2, [0.5, 1.0])


@pytest.mark.parametrize("version", ["2.2", "2.3", "2.3.1", "2.4"])
def test_an_ack_before_v2_5_with_an_err_segment_is_acted_on_and_never_raises(
    ehr: tuple[Ehr, MllpClient], version: str
) -> None:
    state, client = ehr
    err = "ERR|PID^1^3^204&Unknown key identifier&HL70357"
    event = alert()
    cid = hl7_alerts.control_id(event["alert_event_id"])

    state.answers = [ack("AA", version, err)]
    assert sender(client, FeedStats(), [])(event) == "written"  # AA with a warning

    state.answers = [ack("AE", version, err)]
    assert sender(client, FeedStats(), [])(event) == Refusal(
        "hl7_error", f"AE to {cid}: why; PID^1^3^204&Unknown key identifier&HL70357"
    )

    state.answers = [ack("AR", version, err), ack("AA", version)]
    stats = FeedStats()
    assert sender(client, stats, [])(event) == "written" and stats.retries == 1
    assert len(state.frames) == 1 + 1 + 2


def test_a_reply_that_does_not_read_as_an_ack_is_answered_by_the_same_message_again(
    ehr: tuple[Ehr, MllpClient],
) -> None:
    state, client = ehr
    state.answers = [lambda cid: "garbage", lambda cid: "MSH|^~\\&|EHR\rMSA||" + cid, ack("AA")]
    stats = FeedStats()

    assert sender(client, stats, [])(alert()) == "written"
    assert len(state.frames) == 3 and len(set(state.frames)) == 1 and stats.retries == 2


def test_the_message_travels_as_vt_message_fs_cr_its_last_segment_ending_in_one_cr(
    ehr: tuple[Ehr, MllpClient],
) -> None:
    # v2.5.1 §2.5.1/§2.6: every segment ends with <CR>; MLLP then adds <FS><CR>, no second CR
    state, client = ehr
    assert sender(client, FeedStats(), [])(alert()) == "written"
    [raw] = state.frames
    assert raw.startswith(START) and raw.endswith(b"+0000\r" + END)
    body = raw[len(START) : -len(END)]
    assert body.endswith(b"\r") and not body.endswith(b"\r\r")
    assert [seg[:3] for seg in body.split(b"\r")] == [
        *(b"MSH", b"PID", b"PV1", b"OBR"),
        *[b"OBX"] * 7,
        b"",
    ]


def test_text_outside_ascii_travels_in_utf_8_under_msh_18_unicode_utf_8(
    ehr: tuple[Ehr, MllpClient],
) -> None:
    state, client = ehr
    assert sender(client, FeedStats(), [])(alert(unit_id="Intensivstation Süd")) == "written"
    [raw] = state.frames
    msh, _, pv1 = raw[len(START) :].split(b"\r")[:3]
    assert msh.split(b"|")[17] == b"UNICODE UTF-8"  # MSH-18 (MSH-1 is the separator itself)
    assert pv1 == "PV1|1|I|Intensivstation Süd^^^GH".encode()


# --- FHIR -------------------------------------------------------------------------------------


@dataclass
class Fhir:
    """The requests the server received (method, path) and its answer to a read."""

    read: tuple[int, dict[str, Any] | None] = (404, None)
    requests: list[tuple[str, str]] = field(default_factory=list)
    authorizations: list[str | None] = field(default_factory=list)


def outcome(code: str, text: str) -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": "error", "code": code, "diagnostics": text}],
    }


@pytest.fixture
def fhir() -> Iterator[tuple[Fhir, FhirClient]]:
    state = Fhir()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self, status: int, body: dict[str, Any] | None) -> None:
            data = json.dumps(body).encode() if body is not None else b""
            self.send_response(status)
            self.send_header("Content-Type", "application/fhir+json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            state.requests.append(("GET", self.path))
            state.authorizations.append(self.headers.get("Authorization"))
            self._answer(*state.read)

        def do_PUT(self) -> None:
            state.requests.append(("PUT", self.path))
            state.authorizations.append(self.headers.get("Authorization"))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            self._answer(201, {**body, "meta": {"versionId": "1"}})

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield state, FhirClient(f"http://127.0.0.1:{server.server_address[1]}/fhir", timeout_s=5)
    server.shutdown()
    server.server_close()


def test_a_read_the_fhir_server_refuses_is_dead_lettered_and_nothing_is_written(
    fhir: tuple[Fhir, FhirClient],
) -> None:
    # unread, the stored resource cannot be checked for a newer event: no PUT without that guard
    state, client = fhir
    state.read = (400, outcome("not-supported", "read not supported"))
    event = alert()
    path = f"/fhir/Flag/{fhir_alerts.resource_id(event['alert_id'])}"
    stats = FeedStats()

    got = FhirWriter(client, stats, sleep=lambda s: None)(event)

    assert got == Refusal(
        "fhir_refused",
        f"GET {path[6:]}: HTTP 400: error not-supported: read not supported",
    )
    assert state.requests == [("GET", path)] and stats.resources_written == 0


@pytest.mark.parametrize("status", [404, 410])
def test_a_resource_not_stored_yet_or_deleted_is_written(
    fhir: tuple[Fhir, FhirClient], status: int
) -> None:
    state, client = fhir
    state.read = (status, outcome("not-found", "no such Flag"))
    event = alert()
    path = f"/fhir/Flag/{fhir_alerts.resource_id(event['alert_id'])}"
    stats = FeedStats()

    assert FhirWriter(client, stats, sleep=lambda s: None)(event) == "written"
    assert state.requests == [("GET", path), ("PUT", path)] and stats.resources_written == 1


def test_the_writer_sends_the_configured_authorization_on_every_request(
    fhir: tuple[Fhir, FhirClient],
) -> None:
    """An EHR's FHIR write endpoint sits behind OAuth 2.0: without the header, 401 stopped the
    sink. None is sent where none is configured."""
    state, plain = fhir
    event = alert()
    FhirWriter(plain, FeedStats(), sleep=lambda s: None)(event)
    authorized = FhirClient(plain.base, timeout_s=5, authorization="Bearer abc.def")
    FhirWriter(authorized, FeedStats(), sleep=lambda s: None)(event)
    assert state.authorizations == [None, None, "Bearer abc.def", "Bearer abc.def"]


def test_the_authorization_is_checked_once_and_never_follows_a_redirect_to_another_host() -> None:
    """A secret read from a file keeps its line break: stripped; one with a control character
    inside is refused without being shown (http.client's error quoted it whole). urllib copies
    a request's headers onto a redirect's: the token went to whatever host the EHR redirected
    to."""
    assert FhirClient("http://h/fhir", authorization=" Bearer abc\n").authorization == "Bearer abc"
    with pytest.raises(ValueError, match="control character") as refused:
        FhirClient("http://h/fhir", authorization="Bearer a\nb")
    assert "Bearer" not in str(refused.value)
    seen: list[tuple[str, str | None]] = []

    class Other(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(("other", self.headers.get("Authorization")))
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Other)

    class Ehr(Other):
        def do_GET(self) -> None:
            seen.append(("ehr", self.headers.get("Authorization")))
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{other.server_address[1]}/x")
            self.send_header("Content-Length", "0")
            self.end_headers()

    ehr = ThreadingHTTPServer(("127.0.0.1", 0), Ehr)
    for server in (other, ehr):
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    try:
        client = FhirClient(
            f"http://127.0.0.1:{ehr.server_address[1]}/fhir", timeout_s=5, authorization="Bearer t"
        )
        assert client.read("Flag", "f1").status == 404
    finally:
        for server in (other, ehr):
            server.shutdown()
            server.server_close()
    assert seen == [("ehr", "Bearer t"), ("other", None)]
