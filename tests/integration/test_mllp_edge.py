"""The HL7 v2 gateway's network edge over real sockets and the real Kafka broker: a poison frame
does not take the connection (or the message behind it) down, a frame the sender cut off is
dead-lettered and never answered, idle and half-sent connections are closed, a stopped gateway
refuses new connections, and a connection whose records Kafka does not confirm does not hold
another's ACK."""

from __future__ import annotations

import dataclasses
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from jobs.feeds import hl7_gateway
from jobs.feeds.hl7_gateway import END, START, frame
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from tests.conftest import free_ports

pytestmark = pytest.mark.integration
TOPICS = hl7_gateway.TOPICS


@pytest.fixture
def prefix(kafka: Settings) -> Iterator[str]:
    p = f"t-mllp-{uuid.uuid4().hex[:8]}."
    yield p
    kafka_io.delete_topics(kafka, TOPICS, prefix=p)


def admit(control: str, mrn: str = "MRN5") -> bytes:
    return (
        f"MSH|^~\\&|EHR|H1|WF|H1|20260301101500||ADT^A01|{control}|P|2.5.1\r"
        "EVN|A01|20260301101500\r"
        f"PID|1||{mrn}^^^H1^MR\r"
        "PV1|1|I|MICU^12^A"
    ).encode()


def read_ack(sock: socket.socket) -> str:
    buf = b""
    while END not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("closed before the ACK")
        buf += chunk
    return buf.split(END, 1)[0].lstrip(START).decode()


def letters(s: Settings, prefix: str) -> list[dict[str, Any]]:
    name = prefix + topics.DEAD_LETTER.name
    return kafka_io.read_records(s, name, topics.DEAD_LETTER.name)


def test_a_poison_frame_is_answered_and_dead_lettered_and_the_message_behind_it_stored(
    kafka: Settings, prefix: str
) -> None:
    server = hl7_gateway.serve(kafka, port=0, prefix=prefix)
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), 30) as sock:
            sock.sendall(frame(b"MSH") + frame(admit("C2")))
            first, second = read_ack(sock), read_ack(sock)
    finally:
        server.shutdown()
    assert "MSA|AA||stored for review" in first  # durable: stored for review
    assert "MSA|AA|C2" in second
    assert kafka_io.count_records(kafka, prefix + topics.ADT_EVENT.name) == 1
    assert [x["reason_code"] for x in letters(kafka, prefix)] == ["malformed"]


def test_a_frame_cut_off_by_the_sender_is_dead_lettered_and_not_answered(
    kafka: Settings, prefix: str
) -> None:
    server = hl7_gateway.serve(kafka, port=0, prefix=prefix)
    try:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), 30) as sock:
            sock.sendall(START + admit("C1")[:40] + frame(admit("C2")))
            assert "MSA|AA|C2" in read_ack(sock)  # the only ACK: C1 was never finished
            sock.sendall(START + admit("C3")[:30])  # and the connection ends inside a frame
    finally:
        time.sleep(0.5)
        server.shutdown()
    deadline = time.monotonic() + 30
    while len(found := letters(kafka, prefix)) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sorted(x["reason"].split(" bytes")[0] for x in found) == [
        "a frame of 30",
        "a frame of 40",
    ]
    assert {x["reason_code"] for x in found} == {"truncated_frame"}
    assert kafka_io.count_records(kafka, prefix + topics.ADT_EVENT.name) == 1


def test_an_idle_connection_and_a_frame_never_finished_are_closed(
    kafka: Settings, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(hl7_gateway, "FRAME_TIMEOUT_S", 1.0)
    s = dataclasses.replace(kafka, hl7_idle_timeout_s=1.0)
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    try:
        port = server.server_address[1]
        with (
            socket.create_connection(("127.0.0.1", port), 30) as idle,
            socket.create_connection(("127.0.0.1", port), 30) as half,
        ):
            half.sendall(START + b"MSH|^~\\&|EHR")
            assert idle.recv(1) == b"" and half.recv(1) == b""  # closed by the gateway
            assert not server._open
    finally:
        server.shutdown()
    assert [x["reason_code"] for x in letters(kafka, prefix)] == ["truncated_frame"]


def test_a_stopped_gateway_refuses_new_connections_and_ends_open_ones(
    kafka: Settings, prefix: str
) -> None:
    server = hl7_gateway.serve(kafka, port=0, prefix=prefix)
    port = server.server_address[1]
    with socket.create_connection(("127.0.0.1", port), 30) as sock:
        sock.sendall(frame(admit("C1")))
        assert "MSA|AA|C1" in read_ack(sock)
        server.shutdown()
        assert sock.recv(1) == b""  # ended after its message
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), 5)


def test_a_connection_past_the_cap_is_closed_and_the_open_ones_are_served(
    kafka: Settings, prefix: str
) -> None:
    """`hl7_max_connections` 2: a third connection is closed unanswered as it is accepted
    (a sender reconnecting in a loop took a thread and a socket each, for an hour); the two
    open ones go on, and once one closes a new one is served."""
    s = dataclasses.replace(kafka, hl7_max_connections=2)
    server = hl7_gateway.serve(s, port=0, prefix=prefix)
    port = server.server_address[1]
    try:
        with (
            socket.create_connection(("127.0.0.1", port), 30) as one,
            socket.create_connection(("127.0.0.1", port), 30) as two,
        ):
            one.sendall(frame(admit("C1")))
            assert "MSA|AA|C1" in read_ack(one)
            with socket.create_connection(("127.0.0.1", port), 30) as third:
                third.sendall(frame(admit("C3")))
                with pytest.raises(ConnectionError):
                    read_ack(third)  # closed, never answered: the sender resends elsewhere
            two.sendall(frame(admit("C2")))
            assert "MSA|AA|C2" in read_ack(two)
        deadline = time.monotonic() + 10
        while server._open and time.monotonic() < deadline:
            time.sleep(0.05)
        with socket.create_connection(("127.0.0.1", port), 30) as again:
            again.sendall(frame(admit("C4")))
            assert "MSA|AA|C4" in read_ack(again)
    finally:
        server.shutdown()
    assert kafka_io.count_records(kafka, prefix + topics.ADT_EVENT.name) == 3


def kafka_down(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory, *, store_timeout_s: float
) -> hl7_gateway.MllpServer:
    """A gateway serving on loopback whose Kafka does not answer (a free port)."""
    [dead] = free_ports(1)
    s = dataclasses.replace(
        settings,
        kafka_bootstrap=f"127.0.0.1:{dead}",
        payload_store=tmp_path_factory.mktemp("payloads"),
    )
    gateway = hl7_gateway.Gateway(s, listen="test")
    gateway.store_timeout_s = store_timeout_s
    server = hl7_gateway.MllpServer(("127.0.0.1", 0), gateway, 60.0)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_a_connection_kafka_does_not_confirm_holds_no_other_connections_ack(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Kafka down: each connection gets its AE (resend) when its own records time out. Under
    one lock around a global flush the second connection's AE came a whole timeout after the
    first's (feed N after N timeouts)."""
    server = kafka_down(settings, tmp_path_factory, store_timeout_s=6.0)
    answered: dict[str, float] = {}

    def send(control: str) -> None:
        with socket.create_connection(("127.0.0.1", server.server_address[1]), 60) as sock:
            sock.sendall(frame(admit(control)))
            assert f"MSA|AE|{control}" in read_ack(sock)
            answered[control] = time.monotonic()

    try:
        a = threading.Thread(target=send, args=("A",))
        b = threading.Thread(target=send, args=("B",))
        a.start()
        time.sleep(1.0)
        b.start()
        a.join(60)
        b.join(60)
    finally:
        server.shutdown()
    assert set(answered) == {"A", "B"}
    # B started a second after A and waited its own 6 s: about 1 s after A, not 6 s
    assert answered["B"] - answered["A"] < 3.5


def test_stopping_waits_for_the_message_in_flight_to_be_answered(
    settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """SIGTERM's `shutdown` returns only once the connection has answered the message it was
    on (here its AE: Kafka is down), and reads no frame behind it: the process may exit then.
    It used to return at once and the process exit dropped the ACK of a message already
    stored, which the sender resent."""
    server = kafka_down(settings, tmp_path_factory, store_timeout_s=3.0)
    gateway = server.gateway
    with socket.create_connection(("127.0.0.1", server.server_address[1]), 30) as sock:
        sock.sendall(frame(admit("C1")) + frame(admit("C2")))  # C2 read behind C1
        time.sleep(0.5)  # C1 is being stored
        started = time.monotonic()
        server.shutdown()
        waited = time.monotonic() - started
        sock.setblocking(False)
        ack = sock.recv(65536)  # there already: no wait
        sock.setblocking(True)
        rest = sock.recv(65536)  # then the connection ends: C2 is not read (it is resent)
    assert b"MSA|AE|C1|not confirmed stored, resend" in ack and b"C2" not in ack
    assert rest == b"" and waited < gateway.store_timeout_s + 5.0
