"""Kafka `alert.v2` → the EHR's FHIR R4 server: each alert as a Flag, model alerts also as a
RiskAssessment (schemas.interop.fhir_alerts).

    alert.v2 ──▶ decode ─ map ─▶ GET [base]/[type]/[id] ─ newer? ─▶ PUT [base]/[type]/[id] ─▶ commit
                   │                                                      └ 4xx ─▶ deadletter.v1
                   └ undecodable / does not validate ─────────────────────────────▶ deadletter.v1

Writes are updates-as-create by a stable id (from the alert id), so replaying the topic yields
the same resources. Before each PUT the stored resource is read: a resource already written by
the same or a newer event of the alert (the sequence it carries) is left alone, so an older event
never overwrites a newer one and a replay writes nothing. The PUT carries `If-Match` with the
version read; a 409/412 (someone wrote in between) reads again.

Failures:
- connection errors, timeouts, 5xx, 408 and 429: retried with exponential backoff
  (`--backoff-s` doubling, at most 30 s; Retry-After when longer), up to `--max-attempts`; then
  the sink stops with an error, leaving the event's offset uncommitted (never skipped);
- 401, 403, 405, 407: the server refuses the sink itself, not the resource: stop with an error;
- any other 4xx, to the PUT or to the GET before it (a resource that cannot be read cannot be
  checked for a newer event, so it is not written): the server refuses that resource; the event
  is dead-lettered (stage `ehr_fhir`, reason = the OperationOutcome's text) and the sink goes on.
  A GET answered 404 or 410 means nothing is stored yet: the PUT creates it.

Offsets are committed per batch, after every event of it was written, found stale or
dead-lettered (the dead letters flushed first); on a stop, up to the event that failed. Counts
add up: written + skipped_stale + dead_lettered = consumed.

`AlertFeed` (the consumer loop) and the outcome types are shared with `sinks/ehr_hl7.py`.
"""

from __future__ import annotations

import argparse
import http.client
import json
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import partial
from typing import Any, Literal

from confluent_kafka import TopicPartition

from jobs.runtime import kafka_io
from schemas import codec, topics
from schemas.interop import fhir_alerts
from schemas.settings import Settings
from sinks.draining import committed_consumer

STAGE = "ehr_fhir"
GROUP = "wardflow-ehr-fhir"
FHIR_JSON = "application/fhir+json"
MAX_BACKOFF_S = 30.0
RETRY_STATUS = {408, 429}  # and every 5xx
CONFLICT_STATUS = {409, 412}  # a concurrent write: read again
FATAL_STATUS = {401, 403, 405, 407}  # the server refuses the sink, not the resource
DEAD_LETTER = topics.DEAD_LETTER.schema
ALERT = topics.ALERT_V2.schema


@dataclass(frozen=True)
class Refusal:
    """The receiver refused the event for good: it is dead-lettered with this reason."""

    reason_code: str
    reason: str


Outcome = Literal["written", "stale"] | Refusal
Deliver = Callable[[dict[str, Any]], Outcome]


class DeliveryFailed(RuntimeError):
    """The receiver could not take an event within the attempts allowed: the sink stops."""


@dataclass
class FeedStats:
    consumed: int = 0
    written: int = 0
    skipped_stale: int = 0
    dead_lettered: int = 0
    retries: int = 0
    resources_written: int = 0
    resources_skipped: int = 0

    def add_up(self) -> bool:
        return self.written + self.skipped_stale + self.dead_lettered == self.consumed


def backoff_s(attempt: int, base_s: float) -> float:
    """Wait before retry `attempt` (0-based): base × 2^attempt, at most MAX_BACKOFF_S."""
    return float(min(MAX_BACKOFF_S, base_s * 2**attempt))


# How long one batch may deliver before its offsets are committed and the rest read again, and
# how long the group waits between polls before it takes the partitions away: one event to an
# EHR that keeps failing takes up to max-attempts x (timeout + backoff, Retry-After up to 300 s).
# With librdkafka's 300 s and a batch of 500, an EHR answering in 0.6 s left the group before the
# commit, which then failed: the same batch was delivered again after every restart.
BATCH_BUDGET_S = 60.0
MAX_POLL_INTERVAL_MS = 3_600_000


class AlertFeed:
    """Consumes `alert.v2` in a consumer group, hands each decoded event to `deliver` in offset
    order, dead-letters what is refused, and commits a batch's offsets once all of it is done,
    or once `budget_s` has passed (the rest of the batch is read again: `_rewind`)."""

    def __init__(
        self,
        settings: Settings,
        deliver: Deliver,
        *,
        stage: str,
        group_id: str,
        prefix: str = "",
        batch_size: int = 500,
        stats: FeedStats | None = None,
        budget_s: float = BATCH_BUDGET_S,
    ) -> None:
        self.settings = settings
        self.deliver = deliver
        self.stage = stage
        self.batch_size = batch_size
        self.budget_s = budget_s
        self.topic = prefix + topics.ALERT_V2.name
        self.dead_letter_topic = prefix + topics.DEAD_LETTER.name
        kafka_io.ensure_topics(
            settings, [topics.ALERT_V2.name, topics.DEAD_LETTER.name], prefix=prefix
        )
        self.consumer = committed_consumer(
            settings, prefix + group_id, **{"max.poll.interval.ms": MAX_POLL_INTERVAL_MS}
        )
        self.assigned: list[TopicPartition] | None = None
        self.consumer.subscribe([self.topic], on_assign=self._assigned)
        self.producer = kafka_io.producer(settings, **{"linger.ms": 1})
        self.stats = stats or FeedStats()
        self._next: dict[int, int] = {}  # partition → next offset to deliver

    def _assigned(self, consumer: Any, partitions: list[TopicPartition]) -> None:
        self.assigned = list(partitions)

    def poll(self, timeout_s: float = 1.0) -> int:
        """Deliver one batch; returns how many records it delivered. Raises DeliveryFailed (after
        committing what was done before the failing event)."""
        msgs = self.consumer.consume(num_messages=self.batch_size, timeout=timeout_s)
        done: dict[int, int] = {}
        lettered = False
        started = time.monotonic()
        try:
            for i, m in enumerate(msgs):
                if i and time.monotonic() - started > self.budget_s:
                    self._rewind(msgs[i:])
                    return i
                if m.error():
                    continue
                self.stats.consumed += 1
                _, ts = m.timestamp()
                event = codec.decode_valid(ALERT, m.value())
                if isinstance(event, codec.Rejection):
                    outcome: Outcome = Refusal(event.reason_code, event.reason)
                else:
                    try:
                        outcome = self.deliver(event)
                    except BaseException:
                        self.stats.consumed -= 1  # not consumed: read again after a restart
                        raise
                if isinstance(outcome, Refusal):
                    self._dead_letter(m.partition(), m.offset(), ts, outcome, m.value() or b"")
                    self.stats.dead_lettered += 1
                    lettered = True
                elif outcome == "written":
                    self.stats.written += 1
                else:
                    self.stats.skipped_stale += 1
                done[m.partition()] = m.offset() + 1
        finally:
            if lettered:
                self.producer.flush_or_raise(30)
            if done:
                self.consumer.commit(
                    offsets=[TopicPartition(self.topic, p, o) for p, o in done.items()],
                    asynchronous=False,
                )
                self._next.update(done)
        return len(msgs)

    def _rewind(self, left: list[Any]) -> None:
        """Read `left` (the rest of a batch, not delivered) again from the next poll: each of
        their partitions back to its first offset among them."""
        first: dict[int, int] = {}
        for m in left:
            if not m.error():
                first.setdefault(m.partition(), m.offset())
        for partition, offset in first.items():
            self.consumer.seek(TopicPartition(self.topic, partition, offset))

    def _dead_letter(
        self, partition: int, offset: int, ts_ms: int, why: Refusal, payload: bytes
    ) -> None:
        """The alert.v2 record whole (pseudonymised already: not sealed, as sinks.loader's)."""
        letter = {
            "source_topic": self.topic,
            "source_partition": partition,
            "source_offset": offset,
            "source_timestamp": datetime.fromtimestamp(ts_ms / 1000, UTC) if ts_ms > 0 else None,
            "stage": self.stage,
            "reason_code": why.reason_code,
            "reason": why.reason[:2000],
            "payload": payload,
            "payload_ref": None,
        }
        value = codec.encode(DEAD_LETTER, letter)
        now = codec.epoch_ms(datetime.now(UTC))
        self.producer.produce(
            self.dead_letter_topic, key=self.topic.encode(), value=value, timestamp=now
        )

    def caught_up(self) -> bool:
        """Every assigned partition delivered (or committed) up to its current end."""
        if self.assigned is None:
            return False
        tps = [TopicPartition(self.topic, tp.partition) for tp in self.assigned]
        committed = {tp.partition: tp.offset for tp in self.consumer.committed(tps, timeout=10)}
        read = {tp.partition: tp.offset for tp in self.consumer.position(tps)}
        for tp in tps:
            low, high = kafka_io.retrying(
                partial(self.consumer.get_watermark_offsets, tp, timeout=10, cached=False)
            )
            at = max(self._next.get(tp.partition, -1), committed[tp.partition], read[tp.partition])
            if max(at, low) < high:
                return False
        return True

    def run(self, *, bounded: bool, stop: Callable[[], bool] = lambda: False) -> FeedStats:
        """Deliver until `stop()`, or (bounded) until the topic is delivered to its end."""
        while not stop():
            n = self.poll(0.5)
            if bounded and n == 0 and self.caught_up():
                break
        return self.stats

    def close(self) -> None:
        self.consumer.close()
        self.producer.flush(10)


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any] | None
    text: str
    retry_after_s: float | None


class FhirClient:
    """JSON over HTTP to a FHIR server base URL (urllib; no proxies, the server may be local),
    with the `authorization` header value on every request where one is given (an EHR's FHIR
    write endpoint sits behind OAuth 2.0: without it, 401 and the sink stops), never on a
    redirect (which may lead to another host). The value is checked here, once: surrounding
    whitespace is dropped (a secret read from a file keeps its line break), and one holding a
    control character is refused without being shown (http.client's own error quotes it)."""

    def __init__(self, base_url: str, *, timeout_s: float = 30.0, authorization: str = "") -> None:
        self.base = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.authorization = authorization.strip()
        if any(ord(c) < 32 or ord(c) == 127 for c in self.authorization):
            raise ValueError(
                "fhir_server_authorization holds a control character (a line break inside it?): "
                "refused (its value is not shown)"
            )
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Response:
        """The server's answer, any status; connection errors and timeouts raise OSError or
        http.client.HTTPException."""
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(
            f"{self.base}/{path}",
            data=data,
            method=method,
            headers={
                "Accept": FHIR_JSON,
                **({"Content-Type": f"{FHIR_JSON}; charset=utf-8"} if data else {}),
                **(headers or {}),
            },
        )
        if self.authorization:  # not copied onto a redirect's request (urllib copies headers)
            req.add_unredirected_header("Authorization", self.authorization)
        try:
            with self.opener.open(req, timeout=self.timeout_s) as resp:
                return _response(resp.status, resp.read(), resp.headers)
        except urllib.error.HTTPError as exc:
            with exc:
                return _response(exc.code, exc.read(), exc.headers)

    def read(self, kind: str, rid: str) -> Response:
        return self.request("GET", f"{kind}/{rid}")


def _response(status: int, raw: bytes, headers: Any) -> Response:
    text = raw.decode("utf-8", "replace")
    try:
        body = json.loads(text) if text.strip() else None
    except ValueError:
        body = None
    return Response(
        status,
        body if isinstance(body, dict) else None,
        text,
        _retry_after(headers.get("Retry-After") if headers else None),
    )


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
        except (TypeError, ValueError):
            return None


def outcome_text(resp: Response) -> str:
    """The OperationOutcome's issues (severity, code, diagnostics or details), else the body."""
    body = resp.body
    if body is not None and body.get("resourceType") == "OperationOutcome":
        issues = []
        for issue in body.get("issue") or []:
            what = issue.get("diagnostics") or (issue.get("details") or {}).get("text") or ""
            issues.append(f"{issue.get('severity', '?')} {issue.get('code', '?')}: {what}")
        if issues:
            return "; ".join(issues)
    return resp.text.strip()[:500] or "(no body)"


def retryable(status: int) -> bool:
    return status >= 500 or status in RETRY_STATUS


class _Retry(Exception):
    def __init__(self, why: str, after_s: float | None = None) -> None:
        super().__init__(why)
        self.after_s = after_s


class FhirWriter:
    """`deliver` for AlertFeed: writes one event's resources, newest sequence wins."""

    def __init__(
        self,
        client: FhirClient,
        stats: FeedStats,
        *,
        max_attempts: int = 8,
        backoff_base_s: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
        to_resources: Callable[[dict[str, Any]], list[dict[str, Any]]] = fhir_alerts.resources,
    ) -> None:
        self.client = client
        self.to_resources = to_resources
        self.stats = stats
        self.max_attempts = max_attempts
        self.backoff_base_s = backoff_base_s
        self.sleep = sleep

    def __call__(self, event: dict[str, Any]) -> Outcome:
        try:
            resources = self.to_resources(event)
        except fhir_alerts.InvalidAlert as exc:
            return Refusal("invalid_fhir", str(exc))
        wrote = False
        for resource in resources:
            result = self._write_if_newer(event, resource)
            if isinstance(result, Refusal):
                return result
            wrote = wrote or result
        return "written" if wrote else "stale"

    def _write_if_newer(self, event: dict[str, Any], resource: dict[str, Any]) -> bool | Refusal:
        """True: written; False: the server holds this or a newer event; or the refusal."""
        path = f"{resource['resourceType']}/{resource['id']}"
        last = ""
        for attempt in range(self.max_attempts):
            if attempt:
                self.stats.retries += 1
            try:
                return self._attempt(event, resource, path)
            except _Retry as exc:
                last, wait = str(exc), exc.after_s
            except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
                last, wait = f"{type(exc).__name__}: {exc}", None
            if attempt + 1 < self.max_attempts:
                self.sleep(max(backoff_s(attempt, self.backoff_base_s), min(wait or 0, 300.0)))
        raise DeliveryFailed(
            f"{path} (alert event {event['alert_event_id']}, sequence {event['sequence']}) not "
            f"written after {self.max_attempts} attempts to {self.client.base}: {last}"
        )

    def _attempt(
        self, event: dict[str, Any], resource: dict[str, Any], path: str
    ) -> bool | Refusal:
        stored = self.client.read(resource["resourceType"], resource["id"])
        headers = {}
        if stored.status == 200:
            if not fhir_alerts.is_newer(event, stored.body):
                self.stats.resources_skipped += 1
                return False
            version = ((stored.body or {}).get("meta") or {}).get("versionId")
            if version:
                headers["If-Match"] = f'W/"{version}"'
        elif stored.status not in (404, 410):  # 404/410: not there yet, written below
            return self._check(stored, f"GET {path}")  # refused: unread, nothing is written
        put = self.client.request("PUT", path, resource, headers)
        if 200 <= put.status < 300:
            self.stats.resources_written += 1
            return True
        if put.status in CONFLICT_STATUS:
            raise _Retry(f"PUT {path}: HTTP {put.status} (written meanwhile): {outcome_text(put)}")
        return self._check(put, f"PUT {path}")

    def _check(self, resp: Response, what: str) -> Refusal:
        why = f"{what}: HTTP {resp.status}: {outcome_text(resp)}"
        if retryable(resp.status):
            raise _Retry(why, resp.retry_after_s)
        if resp.status in FATAL_STATUS or resp.status < 400:
            raise DeliveryFailed(f"the FHIR server refuses the sink: {why}")
        return Refusal("fhir_refused", why)


def feed(
    settings: Settings,
    *,
    prefix: str = "",
    bounded: bool = True,
    max_attempts: int = 8,
    backoff_base_s: float = 0.5,
    stop: Callable[[], bool] = lambda: False,
    group_id: str = GROUP,
    to_resources: Callable[[dict[str, Any]], list[dict[str, Any]]] = fhir_alerts.resources,
) -> FeedStats:
    """Write `alert.v2` to settings.fhir_server_url until stopped (or, bounded, its end).
    `to_resources` maps an event (tests: a mapping the server disagrees with)."""
    if not settings.fhir_server_url:
        raise ValueError("no FHIR server: set fhir_server_url (WARDFLOW_FHIR_SERVER_URL)")
    stats = FeedStats()
    writer = FhirWriter(
        FhirClient(settings.fhir_server_url, authorization=settings.fhir_server_authorization),
        stats,
        max_attempts=max_attempts,
        backoff_base_s=backoff_base_s,
        to_resources=to_resources,
    )
    alerts = AlertFeed(settings, writer, stage=STAGE, group_id=group_id, prefix=prefix, stats=stats)
    try:
        return alerts.run(bounded=bounded, stop=stop)
    finally:
        alerts.close()


def add_feed_arguments(ap: argparse.ArgumentParser, group_id: str) -> None:
    ap.add_argument("--bounded", action="store_true", help="stop at the end of the topic")
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument(
        "--group-id",
        default=group_id,
        help="consumer group (under the topic prefix); a new one replays the topic from its start",
    )
    ap.add_argument("--max-attempts", type=int, default=8, help="deliveries of one event")
    ap.add_argument("--backoff-s", type=float, default=0.5, help="first retry wait, doubling")
    Settings.add_arguments(ap)


def stopper() -> Callable[[], bool]:
    """A stop() that turns true on SIGINT or SIGTERM."""
    stopping = False

    def _stop(*_: Any) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    return lambda: stopping


def run_feed(
    settings: Settings, a: argparse.Namespace, feed: Callable[..., FeedStats], **kw: Any
) -> None:
    """The command line's run of a sink's `feed` (the options of `add_feed_arguments`): until
    the end of the topic with --bounded, else until SIGINT/SIGTERM; prints the counts."""
    kafka_io.wait_for_broker(settings)
    stats = feed(
        settings,
        prefix=a.topic_prefix,
        bounded=a.bounded,
        max_attempts=a.max_attempts,
        backoff_base_s=a.backoff_s,
        stop=stopper(),
        group_id=a.group_id,
        **kw,
    )
    print(json.dumps(asdict(stats)), flush=True)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_feed_arguments(ap, GROUP)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    if not settings.fhir_server_url:
        ap.error("no FHIR server: set WARDFLOW_FHIR_SERVER_URL or --fhir-server-url")
    run_feed(settings, a, feed)


if __name__ == "__main__":
    main()
