"""Alerts back to the EHR for real: alert.v2 records on a real Kafka topic, written by
sinks/ehr_fhir.py to the local HAPI FHIR server (deploy/local/services.sh) and read back over
HTTP; sent by sinks/ehr_hl7.py as ORU^R01 over MLLP to an EHR played by hl7apy's MLLPServer."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from fhir.resources.R4B import get_fhir_model_class
from hl7apy.mllp import AbstractHandler, MLLPServer

from jobs.feeds.hl7_gateway import frame
from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.interop import fhir_alerts, hl7_alerts, hl7v2
from schemas.settings import Settings
from sinks import ehr_fhir, ehr_hl7
from tests.conftest import REPO, free_ports, shell_env
from tests.unit.test_fhir_alerts import alert

pytestmark = pytest.mark.integration
TOPICS = [topics.ALERT_V2.name, topics.DEAD_LETTER.name]
FAST = {"max_attempts": 4, "backoff_base_s": 0.05}


@pytest.fixture(scope="session")
def fhir_server() -> str:
    """The local HAPI FHIR R4 server, started by the repo's script (a no-op when running); its
    base URL once GET [base]/metadata answers."""
    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "fhir"], check=True)
    base = f"http://127.0.0.1:{os.environ.get('WARDFLOW_FHIR_PORT', '18080')}/fhir"
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + 120
    while True:
        try:
            with opener.open(f"{base}/metadata", timeout=5) as resp:
                if json.load(resp).get("resourceType") == "CapabilityStatement":
                    return base
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"no FHIR server answered {base}/metadata within 120 s")
        time.sleep(0.5)


@pytest.fixture
def prefix(kafka: Settings) -> Iterator[str]:
    p = f"t-ehr-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(kafka, TOPICS, prefix=p)
    yield p
    kafka_io.delete_topics(kafka, TOPICS, prefix=p)


def produce(s: Settings, prefix: str, events: list[dict[str, Any]]) -> None:
    """alert.v2 records as the screening job writes them: keyed by patient, ts = event_time."""
    p = kafka_io.producer(s)
    schema = topics.ALERT_V2.schema
    for e in events:
        p.produce(
            prefix + topics.ALERT_V2.name,
            key=e["patient_token"].encode(),
            value=codec.encode(schema, e),
            timestamp=codec.epoch_ms(codec.record_time(e)),
        )
    p.flush_or_raise(30)


def episode(rule_id: str, token: str) -> list[dict[str, Any]]:
    """raise → escalate → resolve of one alert with an id unique to this test run (the FHIR
    server keeps what earlier runs wrote)."""
    aid = f"{rule_id}-{uuid.uuid4().hex}"
    return [
        alert(action, seq, rule_id=rule_id, alert_id=aid, patient_token=token)
        for seq, action in enumerate(("raise", "escalate", "resolve"), start=1)
    ]


def committed(s: Settings, prefix: str, group: str) -> int:
    """Offsets the group committed on the alert topic, summed over its partitions."""
    topic = prefix + topics.ALERT_V2.name
    c = Consumer({"bootstrap.servers": s.kafka_bootstrap, "group.id": prefix + group})
    try:
        parts = kafka_io.end_offsets(s, topic)
        tps = c.committed([TopicPartition(topic, p) for p in parts], timeout=10)
        return sum(max(tp.offset, 0) for tp in tps)
    finally:
        c.close()


def letters(s: Settings, prefix: str) -> list[dict[str, Any]]:
    return kafka_io.read_records(s, prefix + topics.DEAD_LETTER.name, topics.DEAD_LETTER.name)


# --- FHIR -------------------------------------------------------------------------------------


def read(base: str, kind: str, event: dict[str, Any]) -> dict[str, Any]:
    """The stored resource, read over HTTP and validated with fhir.resources."""
    resp = ehr_fhir.FhirClient(base).read(kind, fhir_alerts.resource_id(event["alert_id"]))
    assert resp.status == 200, resp.text
    assert resp.body is not None
    get_fhir_model_class(kind).model_validate(resp.body)
    return resp.body


def sequence(resource: dict[str, Any]) -> int | None:
    return fhir_alerts.stored_sequence(resource)


def test_a_lifecycle_leaves_an_inactive_flag_and_an_amended_risk_assessment_at_the_last_sequence(
    kafka: Settings, prefix: str, fhir_server: str
) -> None:
    s = dataclasses.replace(kafka, fhir_server_url=fhir_server)
    rule = episode("news2_sustained", "a1" * 12)
    model = episode("model_sepsis_risk", "b2" * 12)
    late = dict(rule[0])  # the raise again after the resolve: a duplicate from upstream
    produce(s, prefix, [*rule, *model, late])

    stats = ehr_fhir.feed(s, prefix=prefix, **FAST)

    assert stats.consumed == 7 and stats.add_up()
    assert (stats.written, stats.skipped_stale, stats.dead_lettered) == (6, 1, 0)
    # rule: a Flag each; model: Flag + RiskAssessment, but the resolve's Flag alone
    assert stats.resources_written == 3 + 2 * 2 + 1
    flag = read(fhir_server, "Flag", rule[-1])
    assert flag["status"] == "inactive" and sequence(flag) == 3
    assert flag["period"] == {
        "start": "2026-03-01T08:00:00.123Z",
        "end": "2026-03-01T09:00:00.123Z",
    }
    assert flag["identifier"] == [{"system": "urn:wardflow:alert", "value": rule[0]["alert_id"]}]
    assert (
        flag["subject"]["identifier"]["value"] == "a1" * 12 and "reference" not in flag["subject"]
    )
    assert flag["meta"]["versionId"] == "3"  # one version per event, the late raise wrote none
    risk = read(fhir_server, "RiskAssessment", model[-1])
    assert risk["status"] == "amended" and sequence(risk) == 2  # as escalated: at its hit
    assert risk["prediction"][0]["probabilityDecimal"] == pytest.approx(0.37)
    assert risk["occurrenceDateTime"] == "2026-03-01T08:30:00.123Z"
    assert read(fhir_server, "Flag", model[-1])["status"] == "inactive"
    assert committed(s, prefix, ehr_fhir.GROUP) == 7


def test_writing_the_topic_again_changes_nothing_on_the_server(
    kafka: Settings, prefix: str, fhir_server: str
) -> None:
    s = dataclasses.replace(kafka, fhir_server_url=fhir_server)
    events = [*episode("model_sepsis_risk", "c3" * 12), *episode("sirs_persistent", "d4" * 12)]
    produce(s, prefix, events)
    first = ehr_fhir.feed(s, prefix=prefix, **FAST)
    assert first.written == 6 and first.add_up()
    before = {
        (k, e["alert_id"]): read(fhir_server, k, e)
        for e in events
        for k in ("Flag", "RiskAssessment")
        if k == "Flag" or e["rule_id"] == fhir_alerts.MODEL_RULE
    }

    # The command line, in a new consumer group: a replay of the whole topic.
    env = {
        **shell_env(),
        "WARDFLOW_KAFKA_BOOTSTRAP": s.kafka_bootstrap,
        "WARDFLOW_FHIR_SERVER_URL": fhir_server,
    }
    cmd = [sys.executable, "-m", "sinks.ehr_fhir", "--bounded", "--topic-prefix", prefix]
    run = subprocess.run(
        [*cmd, "--group-id", "replay"], env=env, cwd=REPO, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stderr
    replay = json.loads(run.stdout.strip().splitlines()[-1])
    assert replay["consumed"] == replay["skipped_stale"] == 6
    assert replay["written"] == replay["resources_written"] == 0
    after = {key: read(fhir_server, key[0], {"alert_id": key[1]}) for key in before}
    assert after == before  # same content, same versionId and lastUpdated

    # The first group again: its offsets were committed, nothing is left to read.
    again = subprocess.run(cmd, env=env, cwd=REPO, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout.strip().splitlines()[-1])["consumed"] == 0


def test_a_resource_the_server_refuses_is_dead_lettered_with_its_operation_outcome(
    kafka: Settings, prefix: str, fhir_server: str
) -> None:
    s = dataclasses.replace(kafka, fhir_server_url=fhir_server)
    good = episode("news2_sustained", "e5" * 12)
    refused = alert(rule_id="qsofa_lactate", alert_id=f"refused-{uuid.uuid4().hex}")
    produce(s, prefix, [good[0], refused, *good[1:]])

    def newer_mapping(event: dict[str, Any]) -> list[dict[str, Any]]:
        """A mapping this server's FHIR version disagrees with: a Flag status code outside
        FlagStatus (fhir.resources takes any code there; HAPI's strict parser does not)."""
        out = fhir_alerts.resources(event)
        if event["alert_id"] == refused["alert_id"]:
            out[0]["status"] = "suspended"
        return out

    stats = ehr_fhir.feed(s, prefix=prefix, to_resources=newer_mapping, **FAST)

    assert (stats.consumed, stats.written, stats.dead_lettered) == (4, 3, 1) and stats.add_up()
    [letter] = letters(s, prefix)
    assert letter["stage"] == "ehr_fhir" and letter["reason_code"] == "fhir_refused"
    assert letter["source_topic"] == prefix + topics.ALERT_V2.name
    assert "HTTP 400" in letter["reason"] and "FlagStatus" in letter["reason"]  # the server's
    assert codec.decode(topics.ALERT_V2.schema, letter["payload"]) == refused
    gone = ehr_fhir.FhirClient(fhir_server).read(
        "Flag", fhir_alerts.resource_id(refused["alert_id"])
    )
    assert gone.status == 404
    assert read(fhir_server, "Flag", good[-1])["status"] == "inactive"
    assert committed(s, prefix, ehr_fhir.GROUP) == 4


def test_an_unreachable_server_stops_the_writer_without_committing_and_nothing_is_lost(
    kafka: Settings, prefix: str, fhir_server: str
) -> None:
    [closed] = free_ports(1)
    down = dataclasses.replace(kafka, fhir_server_url=f"http://127.0.0.1:{closed}/fhir")
    events = episode("organ_dysfunction", "f6" * 12)
    produce(kafka, prefix, events)
    with pytest.raises(ehr_fhir.DeliveryFailed, match=r"after 3 attempts.*Connection refused"):
        ehr_fhir.feed(down, prefix=prefix, max_attempts=3, backoff_base_s=0.05)
    assert committed(kafka, prefix, ehr_fhir.GROUP) == 0
    up = dataclasses.replace(kafka, fhir_server_url=fhir_server)
    stats = ehr_fhir.feed(up, prefix=prefix, **FAST)
    assert stats.written == 3 and stats.add_up()
    assert sequence(read(fhir_server, "Flag", events[-1])) == 3


# --- HL7 v2 over MLLP -------------------------------------------------------------------------


@dataclass
class Ehr:
    """What the EHR listener received (MSH-10 and text, in order) and how it answers: per
    MSH-10, a list of answers for its first deliveries (`AE`, `AR`, `drop`), then AA. As v2.5.1
    §2.9.2.1 has them: AE for an error in the message's content, AR for a refusal unrelated to
    it (the EHR's database busy)."""

    plan: dict[str, list[str]] = field(default_factory=dict)
    received: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def answer(self, text: str) -> str:
        msg = hl7v2.parse(text)
        assert not isinstance(msg, hl7v2.Refused), msg
        cid = msg.msh.msh_10.to_er7()
        with self.lock:
            self.received.append((cid, text))
            todo = self.plan.get(cid) or []
            what = todo.pop(0) if todo else "AA"
        if what == "drop":
            raise ConnectionAbortedError("the EHR drops the connection")  # server closes it
        why = {"AE": "unknown patient token", "AR": "database busy, resend"}.get(what, "")
        return frame(hl7v2.ack(msg, what, why, "207" if why else "")).decode()

    def ids(self, events: list[dict[str, Any]]) -> list[str]:
        """The MSH-10s received that belong to `events`, in order. A listener on an ephemeral
        port can also be reached by a sender of another process that held the port before;
        the writer's own stats say whether it sent more than these."""
        mine = {cid(e) for e in events}
        return [c for c, _ in self.received if c in mine]


def ehr_handler(ehr: Ehr) -> type[AbstractHandler]:
    class OruHandler(AbstractHandler):  # type: ignore[misc]
        def reply(self) -> str:
            return ehr.answer(self.incoming_message)

    return OruHandler


@pytest.fixture
def ehr() -> Iterator[tuple[Ehr, str]]:
    """hl7apy's MLLP server playing the EHR on a free port (one message per connection)."""
    state = Ehr()
    handler = ehr_handler(state)
    server = MLLPServer(
        "127.0.0.1", 0, {"ORU^R01^ORU_R01": (handler,), "ORU^R01": (handler,)}, timeout=10
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield state, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def cid(event: dict[str, Any]) -> str:
    return hl7_alerts.control_id(event["alert_event_id"])


def test_an_ar_or_a_dropped_connection_is_answered_by_the_same_message_again(
    kafka: Settings, prefix: str, ehr: tuple[Ehr, str]
) -> None:
    state, target = ehr
    s = dataclasses.replace(kafka, ehr_mllp_target=target)
    events = [*episode("news2_sustained", "a7" * 12), *episode("model_sepsis_risk", "b8" * 12)]
    produce(s, prefix, events)
    state.plan = {cid(events[1]): ["AR"], cid(events[4]): ["drop", "AR"]}

    stats = ehr_hl7.feed(s, prefix=prefix, **FAST)

    assert (stats.consumed, stats.written, stats.dead_lettered, stats.retries) == (6, 6, 0, 3)
    assert stats.add_up()
    want = [cid(e) for e in events]
    # Kafka orders each patient's alerts (one partition), not the two patients' against each other
    assert state.ids(events[:3]) == [want[0], want[1], want[1], want[2]]
    assert state.ids(events[3:]) == [want[3], want[4], want[4], want[4], want[5]]
    resent = [text for c, text in state.received if c == want[4]]
    assert len(set(resent)) == 1  # byte for byte the same message, same MSH-10
    assert committed(s, prefix, ehr_hl7.GROUP) == 6
    assert letters(s, prefix) == []


def test_an_ae_is_dead_lettered_with_the_ehrs_reason_and_the_feed_goes_on(
    kafka: Settings, prefix: str, ehr: tuple[Ehr, str]
) -> None:
    state, target = ehr
    s = dataclasses.replace(kafka, ehr_mllp_target=target)
    events = episode("sirs_persistent", "c9" * 12)
    produce(s, prefix, events)
    state.plan = {cid(events[0]): ["AE"]}

    stats = ehr_hl7.feed(s, prefix=prefix, **FAST)

    assert (stats.consumed, stats.written, stats.dead_lettered, stats.retries) == (3, 2, 1, 0)
    assert state.ids(events) == [cid(e) for e in events]  # an AE is final: not sent again
    [letter] = letters(s, prefix)
    assert letter["stage"] == "ehr_hl7" and letter["reason_code"] == "hl7_error"
    assert "AE" in letter["reason"] and "unknown patient token" in letter["reason"]
    assert codec.decode(topics.ALERT_V2.schema, letter["payload"]) == events[0]
    assert committed(s, prefix, ehr_hl7.GROUP) == 3


def test_an_ehr_that_keeps_answering_ar_stops_the_feed_at_that_message_and_nothing_is_skipped(
    kafka: Settings, prefix: str, ehr: tuple[Ehr, str]
) -> None:
    state, target = ehr
    s = dataclasses.replace(kafka, ehr_mllp_target=target)
    events = episode("qsofa_lactate", "d0" * 12)
    produce(s, prefix, events)
    state.plan = {cid(events[1]): ["AR"] * 3}

    with pytest.raises(ehr_fhir.DeliveryFailed, match=rf"{cid(events[1])}.*after 3 attempts"):
        ehr_hl7.feed(s, prefix=prefix, max_attempts=3, backoff_base_s=0.05)
    assert state.ids(events) == [cid(events[0]), *[cid(events[1])] * 3]
    assert committed(s, prefix, ehr_hl7.GROUP) == 1  # up to the message that failed

    stats = ehr_hl7.feed(s, prefix=prefix, **FAST)  # the EHR answers AA now: resume there
    assert (stats.consumed, stats.written) == (2, 2)
    assert state.ids(events)[4:] == [cid(events[1]), cid(events[2])]


def test_a_batch_past_its_time_budget_is_committed_and_the_rest_read_again_once(
    kafka: Settings, prefix: str, ehr: tuple[Ehr, str]
) -> None:
    """With a budget of 0 s each poll delivers one event, commits it and reads the rest of its
    batch again (an EHR answering in 0.6 s held a batch of 500 past the group's poll interval,
    so its commit failed and every restart sent the batch again): each event reaches the EHR
    once, in each patient's order, and every offset is committed."""
    state, target = ehr
    s = dataclasses.replace(kafka, ehr_mllp_target=target)
    events = [*episode("news2_rising", "e1" * 12), *episode("sirs_persistent", "f2" * 12)]
    produce(s, prefix, events)

    stats = ehr_hl7.feed(s, prefix=prefix, budget_s=0.0, **FAST)

    assert (stats.consumed, stats.written, stats.retries) == (6, 6, 0) and stats.add_up()
    want = [cid(e) for e in events]
    assert state.ids(events[:3]) == want[:3] and state.ids(events[3:]) == want[3:]
    assert committed(s, prefix, ehr_hl7.GROUP) == 6
