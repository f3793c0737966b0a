"""HL7 v2 gateway throughput with ACK-after-commit, through the real Kafka broker.

A feed of `--messages` messages like a hospital's interface sends them (per patient an A01, then
ORU^R01s with six vitals at three observation times each, every tenth ORU with an OBX in a unit
its code does not take, which is dead-lettered alone; and an A03) is sent over MLLP by
`--connections` senders at once, each waiting for its ACK before the next message (MLLP's own
flow control). An ACK is sent only after Kafka confirmed the message's records and dead letters,
so messages/s here is the rate of durably stored messages. Reported: messages/s and records/s
over the whole send, ACK latency p50/p99, and the same messages through `Gateway.decide` alone
(parse, map, validate, encode: the CPU part, no Kafka), which bounds what batching could gain.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import socket
import statistics
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

from jobs.feeds import hl7_gateway
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings

OUT = Path(__file__).resolve().parent / "results"


def feed(n: int) -> list[bytes]:
    """n messages: per patient A01, ORUs, A03 (ORU: 3 times × HR, RR, SpO2, temp, SBP, O2 flow)."""
    out: list[bytes] = []
    patient = 0
    while len(out) < n:
        patient += 1
        mrn, bed = f"MRN{patient:06d}", f"{patient % 30 + 1}"
        out.append(_adt("A01", patient, 0, mrn, bed))
        for k in range(1, 7):
            out.append(_oru(patient, k, mrn, bed, bad=(patient + k) % 10 == 0))
        out.append(_adt("A03", patient, 7, mrn, bed))
    return out[:n]


def _msh(kind: str, control: str, minute: int) -> str:
    when = f"202603010{minute // 60:01d}{minute % 60:02d}00"
    return f"MSH|^~\\&|EPIC|GH|WF|GH|{when}||{kind}|{control}|P|2.5.1"


def _adt(trigger: str, patient: int, k: int, mrn: str, bed: str) -> bytes:
    return "\r".join(
        [
            _msh(f"ADT^{trigger}", f"A{patient}-{k}", k),
            f"EVN|{trigger}|202603010{k // 60:01d}{k % 60:02d}00",
            f"PID|1||{mrn}^^^GH^MR||DOE^PAT{patient}",
            f"PV1|1|I|4E^^{bed}^GH||||||||||||||||V{patient}",
        ]
    ).encode()


def _oru(patient: int, k: int, mrn: str, bed: str, *, bad: bool) -> bytes:
    obx: list[str] = []
    for t in range(3):
        when = f"20260301{8 + k // 3:02d}{(k * 10 + t * 3) % 60:02d}00"
        n = len(obx)
        hr_unit = "mm[Hg]" if bad and t == 0 else "/min"
        obx += [
            f"OBX|{n + 1}|NM|8867-4^Heart rate^LN||{88 + t}|{hr_unit}|||||F|||{when}",
            f"OBX|{n + 2}|NM|9279-1^Resp rate^LN||{18 + t}|/min|||||F|||{when}",
            f"OBX|{n + 3}|NM|59408-5^SpO2^LN||{96 - t}|%|||||F|||{when}",
            f"OBX|{n + 4}|NM|8310-5^Temp^LN||{37.1 + t / 10:.1f}|Cel|||||F|||{when}",
            f"OBX|{n + 5}|NM|8480-6^SBP^LN||{118 - t}|mm[Hg]|||||F|||{when}",
            f"OBX|{n + 6}|NM|3151-8^O2 flow^LN||{t}|L/min|||||F|||{when}",
        ]
    return "\r".join(
        [
            _msh("ORU^R01", f"O{patient}-{k}", k),
            f"PID|1||{mrn}^^^GH^MR||DOE^PAT{patient}",
            f"PV1|1|I|4E^^{bed}^GH",
            "OBR|1|||vitals^Vital signs",
            *obx,
        ]
    ).encode()


def send_all(
    port: int, messages: list[bytes], connections: int
) -> tuple[float, list[float], Counter[str]]:
    """(wall seconds, per-message ACK latencies, ACK codes) with `connections` senders at once."""
    shares = [messages[i::connections] for i in range(connections)]
    latencies: list[list[float]] = [[] for _ in shares]
    codes: list[Counter[str]] = [Counter() for _ in shares]

    def run(i: int) -> None:
        for m in shares[i]:
            t = time.perf_counter()
            ack = _one(socks[i], m)
            latencies[i].append(time.perf_counter() - t)
            codes[i][ack.split("\r")[1].split("|")[1]] += 1

    socks = [socket.create_connection(("127.0.0.1", port), timeout=60) for _ in shares]
    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    t0 = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t0
    for s in socks:
        s.close()
    return wall, [x for ls in latencies for x in ls], sum(codes, Counter())


def _one(sock: socket.socket, message: bytes) -> str:
    sock.sendall(hl7_gateway.frame(message))
    buf = b""
    while hl7_gateway.END not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("gateway closed the connection")
        buf += chunk
    return buf.split(hl7_gateway.END, 1)[0].lstrip(hl7_gateway.START).decode()


def pct(xs: list[float], q: int) -> float:
    return round(statistics.quantiles(xs, n=100)[q - 1] * 1000, 2) if len(xs) > 1 else 0.0


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--messages", type=int, default=4000)
    ap.add_argument("--connections", type=int, nargs="+", default=[1, 4])
    ap.add_argument("--out", type=Path, default=OUT / "hl7_gateway.json")
    a = ap.parse_args(argv)
    settings = Settings.from_env()
    kafka_io.wait_for_broker(settings)
    messages = feed(a.messages)
    size = sum(map(len, messages))

    gateway = hl7_gateway.Gateway(dataclasses.replace(settings), listen="bench")
    t0 = time.perf_counter()
    decided = [gateway.decide(m) for m in messages]
    decide_s = time.perf_counter() - t0
    records = sum(len(d.records) for d in decided)
    letters = sum(len(d.letters) for d in decided)

    runs = []
    for c in a.connections:
        prefix = f"bench-hl7-{uuid.uuid4().hex[:8]}."
        server = hl7_gateway.serve(settings, port=0, prefix=prefix)
        try:
            wall, lat, codes = send_all(server.server_address[1], messages, c)
        finally:
            server.shutdown()
            server.server_close()
        stored = {
            t: kafka_io.count_records(settings, prefix + t)
            for t in (
                topics.VITALS_OBSERVATION.name,
                topics.ADT_EVENT.name,
                topics.DEAD_LETTER.name,
            )
        }
        for p in hl7_gateway.topic_prefixes(settings, prefix):
            kafka_io.delete_topics(settings, hl7_gateway.TOPICS, prefix=p)
        assert sum(codes.values()) == len(messages), codes
        assert stored[topics.VITALS_OBSERVATION.name] + stored[topics.ADT_EVENT.name] == records
        assert stored[topics.DEAD_LETTER.name] == letters
        runs.append(
            {
                "connections": c,
                "acks": dict(codes),
                "stored": stored,
                "wall_s": round(wall, 2),
                "messages_per_s": round(len(messages) / wall, 1),
                "records_per_s": round(records / wall, 1),
                "ack_latency_ms_p50": pct(lat, 50),
                "ack_latency_ms_p99": pct(lat, 99),
            }
        )
        print(json.dumps(runs[-1]), flush=True)

    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "messages": len(messages),
        "bytes": size,
        "records": records,
        "dead_letters": letters,
        "decide_only_messages_per_s": round(len(messages) / decide_s, 1),
        "ack_after_commit": runs,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
