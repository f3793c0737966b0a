"""deploy/local/services.sh: real services, idempotent, loopback only."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

from schemas.settings import Settings

pytestmark = pytest.mark.integration
SCRIPT = Path(__file__).resolve().parents[2] / "deploy/local/services.sh"


def _run(*args: str) -> str:
    return subprocess.run([str(SCRIPT), *args], check=True, capture_output=True, text=True).stdout


def _listening(port: int) -> set[str]:
    """Local addresses of sockets in LISTEN state on `port` (from /proc/net/tcp{,6})."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            addr, p = local.split(":")
            if state == "0A" and int(p, 16) == port:
                found.add(addr)
    return found


def test_starting_kafka_twice_is_a_no_op(kafka: Settings) -> None:
    assert "already running" in _run("start", "kafka")


def test_redis_starts_on_loopback_and_answers_ping() -> None:
    import redis

    _run("start", "redis")
    assert "already running" in _run("start", "redis")
    assert redis.Redis(host="127.0.0.1", port=16379, socket_timeout=5).ping()


def test_every_service_listens_on_127_0_0_1_only(kafka: Settings) -> None:
    _run("start", "redis")
    loopback = {"0100007F", "0000000000000000FFFF00000100007F"}  # 127.0.0.1, ::ffff:127.0.0.1
    for port in (19092, 19093, 16379):
        addrs = _listening(port)
        assert addrs and addrs <= loopback, (port, addrs)


def test_status_reports_both_services(kafka: Settings) -> None:
    _run("start", "redis")
    out = _run("status")
    assert "kafka: up on 127.0.0.1:19092" in out and "redis: up on 127.0.0.1:16379" in out


def test_a_topic_just_created_answers_its_end_offsets_at_once(kafka: Settings) -> None:
    """Its creation returns before its leaders are elected; `ensure_topics` waits for them, so a
    read of its offsets right after is answered (it was refused NOT_LEADER_FOR_PARTITION on a
    loaded machine)."""
    from jobs.runtime import kafka_io
    from schemas import topics

    prefix = f"it-leaders-{uuid.uuid4().hex[:8]}."
    name = topics.ALERT_V2.name
    try:
        kafka_io.ensure_topics(kafka, [name], prefix=prefix)
        md = kafka_io.admin(kafka).list_topics(prefix + name, timeout=10).topics[prefix + name]
        assert md.partitions and all(p.leader >= 0 for p in md.partitions.values())
        assert kafka_io.end_offsets(kafka, prefix + name) == dict.fromkeys(md.partitions, 0)
    finally:
        kafka_io.delete_topics(kafka, [name], prefix=prefix)
