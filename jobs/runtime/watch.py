"""Failures an operator can read: which dependency failed, where the logs are, what the restart
strategy does about it, on the console and in the exit status.

While a job runs, `JobWatch` reads its exception history from Flink's REST API (the MiniCluster's
or the cluster's) and prints one line per task failure, naming the dependency and the restart to
come. When the job fails for good, `JobFailed` carries the dependency that caused it (the first
failure that names one: after the broker went away, the last attempt often fails only for want
of slots), the log folder and the restarts used; `exit_on_failure` turns it into a message on
stderr and the dependency's exit status.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, TextIO


def rest_json(url: str, timeout_s: float = 5.0) -> Any:
    """GET a Flink REST resource. Loopback is reached directly, never through an HTTP proxy
    the environment may name."""
    host = urllib.parse.urlsplit(url).hostname or ""
    loopback = host in ("127.0.0.1", "localhost", "::1")
    opener = urllib.request.build_opener(*([urllib.request.ProxyHandler({})] if loopback else []))
    with opener.open(url, timeout=timeout_s) as r:
        return json.loads(r.read())


@dataclass(frozen=True)
class Dependency:
    name: str
    markers: tuple[str, ...]  # lower-case text in an exception's class names or messages
    exit_code: int


# Checked in order; the first whose marker appears in a failure's stack trace names it.
DEPENDENCIES = (
    Dependency(
        "Kafka broker",
        # The client (shaded in the connector) and the connector's own source and sink code:
        # a broker gone may first show as a committer's "Transaction was not started".
        (
            "org.apache.kafka",
            "org.apache.flink.connector.kafka",
            "kafkaexception",
            "confluent_kafka",
            "failed to get metadata",
        ),
        3,
    ),
    Dependency("Feast online store", ("redis.exceptions", "feast", "redis"), 4),
    Dependency("ClickHouse", ("clickhouse",), 5),
    Dependency(
        "Python workers",
        (
            "python process exited",
            "pythonenvironmentmanager",
            "failed to create stage bundle factory",
            "no module named",
        ),
        6,
    ),
    Dependency(
        "TaskManager slots", ("noresourceavailableexception", "slot request bulk is not"), 7
    ),
)
OTHER = Dependency("the job itself", (), 1)


def classify(stacktrace: str) -> Dependency:
    text = stacktrace.lower()
    return next((d for d in DEPENDENCIES if any(m in text for m in d.markers)), OTHER)


def first_line(stacktrace: str, dependency: Dependency | None = None) -> str:
    """The exception's first line, or its deepest `Caused by:` (where the reason is). With the
    `dependency` the trace was put down to, a reason that does not name it says where it was
    raised: the first frame that does (a broker gone can surface as the Kafka committer's
    `IllegalStateException: Transaction was not started`)."""
    lines = [ln.strip() for ln in stacktrace.splitlines() if ln.strip()]
    causes = [ln.removeprefix("Caused by: ") for ln in lines if ln.startswith("Caused by: ")]
    reason = causes[-1] if causes else lines[0] if lines else ""
    markers = dependency.markers if dependency else ()
    if markers and not any(m in reason.lower() for m in markers):
        frame = next((ln for ln in lines if any(m in ln.lower() for m in markers)), "")
        if frame:
            reason = f"{reason} (in {frame.removeprefix('at ')})"
    return reason[:300]


def restart_policy(conf: Mapping[str, str]) -> str:
    """What Flink does after a failure, in words, from the job's effective configuration."""
    kind = conf.get("restart-strategy.type", "")
    if kind in ("fixed-delay", "fixeddelay"):
        attempts = conf.get("restart-strategy.fixed-delay.attempts", "1")
        delay = conf.get("restart-strategy.fixed-delay.delay", "1 s")
        return f"restart up to {attempts} times, {delay} apart, then fail"
    if kind in ("exponential-delay", "exponentialdelay"):
        return "restart with exponential back-off (the cluster's exponential-delay strategy)"
    if kind in ("failure-rate", "failurerate"):
        return "restart while the failure rate stays under the cluster's failure-rate limit"
    if kind in ("none", "off", "disable"):
        return "no restart: the first failure ends the job"
    return f"the cluster's restart strategy ({kind or 'default'})"


@dataclass(frozen=True)
class Failure:
    at_ms: int
    dependency: Dependency
    reason: str
    task: str


class JobFailed(RuntimeError):
    """A job that ended FAILED, explained: `what` failed, why, what Flink did, where to look."""

    def __init__(
        self, job: str, dependency: Dependency, what: str, reason: str, restarts: str, logs: str
    ) -> None:
        self.dependency = dependency
        self.exit_code = dependency.exit_code
        super().__init__(
            f"{job} failed: {what}\n"
            f"  cause:    {reason}\n"
            f"  restarts: {restarts}\n"
            f"  logs:     {logs}\n"
            f"  exit status {self.exit_code}"
        )


class JobWatch:
    """Reads a running job's exception history over REST; prints each new failure once."""

    def __init__(
        self,
        rest_url: str,
        job_id: str,
        job: str,
        conf: Mapping[str, str],
        logs: str,
        *,
        describe: Callable[[Dependency], str] = lambda d: d.name,
        out: TextIO = sys.stderr,
    ) -> None:
        self.rest_url, self.job_id, self.job = rest_url.rstrip("/"), job_id, job
        self.policy, self.logs, self.describe, self.out = restart_policy(conf), logs, describe, out
        self.failures: list[Failure] = []

    def _get(self, path: str) -> Any:
        return rest_json(f"{self.rest_url}/jobs/{self.job_id}{path}")

    def poll(self) -> None:
        """Record (and print) the failures Flink reported since the last poll."""
        try:
            history = self._get("/exceptions?maxExceptions=50")["exceptionHistory"]["entries"]
        except (urllib.error.URLError, OSError, KeyError, ValueError):
            return  # REST not up yet, or the job gone: nothing new to say
        seen = {f.at_ms for f in self.failures}
        for entry in sorted(history, key=lambda e: int(e["timestamp"])):
            at = int(entry["timestamp"])
            if at in seen:
                continue
            trace = entry.get("stacktrace") or entry.get("exceptionName") or ""
            task = (entry.get("taskName") or "").split(" -> ")[-1].split(" - execution")[0]
            dependency = classify(trace)
            failure = Failure(at, dependency, first_line(trace, dependency), task)
            self.failures.append(failure)
            print(
                f"{self.job}: failure #{len(self.failures)} in {failure.task or 'the job'}: "
                f"{self.describe(failure.dependency)}: {failure.reason}\n"
                f"{self.job}: Flink will {self.policy}; logs: {self.logs}",
                file=self.out,
                flush=True,
            )

    def cause(self) -> Failure | None:
        """The failure that explains the others: the first that names a dependency."""
        named = [f for f in self.failures if f.dependency not in (OTHER, DEPENDENCIES[-1])]
        return named[0] if named else (self.failures[0] if self.failures else None)

    def failed(self, error: BaseException) -> JobFailed:
        """The job ended FAILED with `error` (the last attempt's): explain it by its history."""
        self.poll()
        cause = self.cause()
        if cause is None:  # no history (REST unreachable): the error itself
            text = str(error)
            dependency = classify(text)
            cause = Failure(0, dependency, first_line(text, dependency), "")
        exhausted = "recovery is suppressed" in str(error).lower()
        restarts = (
            f"{len(self.failures)} task failure(s) reported while it ran; Flink's strategy: "
            f"{self.policy}{' (used up)' if exhausted else ''}"
        )
        what = self.describe(cause.dependency)
        return JobFailed(self.job, cause.dependency, what, cause.reason, restarts, self.logs)


@contextmanager
def exit_on_failure() -> Iterator[None]:
    """Around a command line's job run: a JobFailed becomes its message on stderr and the
    failed dependency's exit status."""
    try:
        yield
    except JobFailed as failed:
        print(str(failed), file=sys.stderr, flush=True)
        raise SystemExit(failed.exit_code) from None
