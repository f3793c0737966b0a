"""Alerts back to the EHR: throughput of the FHIR writer (sinks/ehr_fhir.py) against the local
HAPI FHIR server and of the ORU^R01 feed (sinks/ehr_hl7.py) against an MLLP listener played by
hl7apy's MLLPServer (one message per connection, as hl7apy serves them) in a process of its own.

`--alerts` alert episodes (raise → escalate → resolve; every third one a model alert, which is
a Flag and a RiskAssessment) are pre-loaded to alert.v2 under a fresh prefix, the first
`--hl7-alerts` of them also under a second one; each sink then runs bounded from the start of
its topic. Rates are over the sink's whole run, consumer start-up
included: events/s, resources/s (FHIR: a GET and a PUT per resource) and messages/s (HL7: one
message and its ACK at a time, as MLLP has it). A second FHIR pass over the same topic (a new
consumer group) measures a replay, where every resource is read and found current.

What paces the ORU feed is hl7apy on both ends: building a message field by field takes about
30 ms (`build_ms_per_message`) and the listener's parse and ACK about as long again, with one
message in flight as MLLP has it. The FHIR writer opens a connection per request (urllib).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import multiprocessing
import os
import platform
import subprocess
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from hl7apy.mllp import AbstractHandler, MLLPServer

from jobs.feeds.hl7_gateway import frame
from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.interop import hl7_alerts, hl7v2
from schemas.settings import Settings
from sinks import ehr_fhir, ehr_hl7

OUT = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parents[1]
RULES = ("news2_sustained", "sirs_persistent", "model_sepsis_risk")
TOPICS = [topics.ALERT_V2.name, topics.DEAD_LETTER.name]


def episodes(n: int, run: str) -> list[dict[str, Any]]:
    """n alerts × (raise, escalate, resolve), ids unique to this run."""
    start = datetime(2026, 3, 1, tzinfo=UTC)
    out = []
    for i in range(n):
        rule = RULES[i % 3]
        model = rule == "model_sepsis_risk"
        token = hashlib.sha256(f"{run}|patient{i}".encode()).hexdigest()[:24]
        opened = start + timedelta(minutes=i)
        aid = hashlib.md5(f"{run}|{rule}|{token}|{opened}".encode()).hexdigest()
        for seq, action in enumerate(("raise", "escalate", "resolve"), start=1):
            out.append(
                {
                    "alert_event_id": hashlib.md5(f"{aid}|{seq}".encode()).hexdigest(),
                    "alert_id": aid,
                    "action": action,
                    "sequence": seq,
                    "rule_id": rule,
                    "rule_version": "m-2026.02" if model else "2",
                    "severity": "high" if seq > 1 else "medium",
                    "patient_token": token,
                    "facility_id": f"F{i % 12}",
                    "unit_id": "ICU",
                    "opened_time": opened,
                    "event_time": opened + timedelta(minutes=30 * (seq - 1)),
                    "resolve_reason": "condition_cleared" if action == "resolve" else None,
                    "hit_count": seq,
                    "score_name": "sepsis_risk_pct" if model else "news2",
                    "score_value": 41 if model else 7,
                    "first_record_id": f"r{i}",
                    "last_record_id": f"r{i}.{seq}",
                    "evidence_json": json.dumps({"rr": {"value": 26, "measured_time": "t"}}),
                }
            )
    return out


def preload(settings: Settings, prefix: str, events: list[dict[str, Any]]) -> None:
    kafka_io.ensure_topics(settings, TOPICS, prefix=prefix)
    p = kafka_io.producer(settings)
    schema = topics.ALERT_V2.schema
    for e in events:
        value = codec.encode(schema, e)
        ts = codec.epoch_ms(codec.record_time(e))
        while True:
            try:
                p.produce(
                    prefix + topics.ALERT_V2.name,
                    key=e["patient_token"].encode(),
                    value=value,
                    timestamp=ts,
                )
                break
            except BufferError:
                p.poll(0.1)
    p.flush_or_raise(60)


def rates(stats: ehr_fhir.FeedStats, wall_s: float, what: str) -> dict[str, Any]:
    assert stats.add_up() and stats.dead_lettered == 0, stats
    return {
        **dataclasses.asdict(stats),
        "wall_s": round(wall_s, 1),
        "events_per_s": round(stats.consumed / wall_s, 1),
        f"{what}_per_s": round(stats.resources_written / wall_s, 1),
    }


def fhir(settings: Settings, prefix: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    first = ehr_fhir.feed(settings, prefix=prefix, group_id="bench-ehr-fhir")
    t1 = time.perf_counter()
    replay = ehr_fhir.feed(settings, prefix=prefix, group_id="bench-ehr-fhir-replay")
    t2 = time.perf_counter()
    out = rates(first, t1 - t0, "resources")
    out["replay"] = {
        "events": replay.consumed,
        "skipped_stale": replay.skipped_stale,
        "wall_s": round(t2 - t1, 1),
        "events_per_s": round(replay.consumed / (t2 - t1), 1),
    }
    return out


class _Accept(AbstractHandler):  # type: ignore[misc]
    def reply(self) -> str:
        msg = hl7v2.parse(self.incoming_message)
        assert not isinstance(msg, hl7v2.Refused)
        return frame(hl7v2.ack(msg, "AA")).decode()


def _listen(ports: Any) -> None:
    """The EHR, in a process of its own (it parses every message: not on the sink's GIL)."""
    server = MLLPServer("127.0.0.1", 0, {"ORU^R01^ORU_R01": (_Accept,)}, timeout=10)
    ports.put(server.server_address[1])
    server.serve_forever()


def hl7(settings: Settings, prefix: str, sample: dict[str, Any]) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    ports = ctx.Queue()
    ehr = ctx.Process(target=_listen, args=(ports,), daemon=True)
    ehr.start()
    try:
        s = dataclasses.replace(settings, ehr_mllp_target=f"127.0.0.1:{ports.get(timeout=30)}")
        t0 = time.perf_counter()
        stats = ehr_hl7.feed(s, prefix=prefix, group_id="bench-ehr-hl7")
        wall = time.perf_counter() - t0
    finally:
        ehr.terminate()
        ehr.join()
    out = rates(stats, wall, "messages")
    t0 = time.perf_counter()
    for _ in range(50):
        hl7_alerts.er7(sample)
    out["build_ms_per_message"] = round((time.perf_counter() - t0) / 50 * 1000, 1)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--alerts", type=int, default=1000, help="alert episodes (3 events each)")
    ap.add_argument(
        "--hl7-alerts", type=int, default=200, help="of them, sent as ORU^R01 (a slower feed)"
    )
    ap.add_argument("--out", type=Path, default=OUT / "ehr_writeback.json")
    a = ap.parse_args(argv)
    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "fhir"], check=True)
    base = f"http://127.0.0.1:{os.environ.get('WARDFLOW_FHIR_PORT', '18080')}/fhir"
    settings = Settings.from_env(fhir_server_url=base)
    kafka_io.wait_for_broker(settings)
    run = uuid.uuid4().hex[:8]
    prefix, hl7_prefix = f"bench-ehr-{run}.", f"bench-ehr-hl7-{run}."
    events = episodes(a.alerts, run)
    hl7_events = events[: 3 * a.hl7_alerts]
    preload(settings, prefix, events)
    preload(settings, hl7_prefix, hl7_events)
    try:
        fhir_result = fhir(settings, prefix)
        hl7_result = hl7(settings, hl7_prefix, events[0])
    finally:
        kafka_io.delete_topics(settings, TOPICS, prefix=prefix)
        kafka_io.delete_topics(settings, TOPICS, prefix=hl7_prefix)
    result = {
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "alerts": a.alerts,
        "events": len(events),
        "hl7_events": len(hl7_events),
        "fhir_server": "HAPI FHIR (deploy/local/services.sh fhir, in memory, strict parser)",
        "fhir": fhir_result,
        "hl7": hl7_result,
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
