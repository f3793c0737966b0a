"""The loop a topic consumer of this layer runs (the ClickHouse loader, the quarantine actuator):
poll batches until told to stop, or until every subscribed topic is read to its current end."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

S = TypeVar("S")


class Draining(Generic[S]):
    """A consumer with `poll_batch` (records handled, committed) and `lag` (offsets left);
    `stats` is what it counted, `what` names it in a timeout."""

    what = "consumer"
    consumer: Any
    stats: S

    def poll_batch(self, timeout_s: float = 1.0) -> int:
        raise NotImplementedError

    def lag(self) -> int:
        raise NotImplementedError

    def drain(self, *, timeout_s: float = 120.0) -> S:
        """Consume until every subscribed topic is read up to its current end."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.poll_batch(0.5) == 0 and self.lag() == 0:
                return self.stats
        raise TimeoutError(f"{self.what} did not catch up within {timeout_s} s (lag {self.lag()})")

    def run_forever(self, stop: Callable[[], bool]) -> S:
        while not stop():
            self.poll_batch(1.0)
        return self.stats

    def close(self) -> None:
        self.consumer.close()
