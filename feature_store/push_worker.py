"""Stream features pushed to Feast's online store from a process of their own.

A Feast push is Python work: every value of every row becomes a protobuf value, one at a time,
and SQLite writes one statement per feature and row (`bench/results/scoring.json`: 1,564-1,663
rows/s on SQLite through this process, so 1,250 patients take 0.75-0.8 s).
Pushed from a thread of the scoring UDF's process, that work held the GIL that scoring and the
alert lifecycle need; on a local MiniCluster every Python function of the job shares that
process. Measured at 15,000 beds (`bench/device_rate.py`, one run each): with the push on the
worker thread the job's Python process used 0.38 cores; with no push at all 0.17, the 5-second
maxima of alert latency fell from 0.8-2.0 s to 0.6-1.2 s and the first minute's backlog
drained by 20 s instead of 45-80 s. A push process keeps the push (the online store still has
every patient's latest stream features) and takes its Feast work off the GIL; what stays in
the caller's process is staging the frame (pandas) and pickling it.

`PushProcess` is the caller's end: a callable that hands one frame to the child and returns once
the child has pushed it, or raises what the child reported, or that it died or did not answer
in time (the caller keeps the rows for the next push: `udfs.scoring.FeatureSource`). The
caller starts the child with `start()` before its own set-up and waits for it with
`wait_ready()` after (a push starts it too, and starts it again after it died). The child
(`python -m feature_store.push_worker FEAST_DIR ONLINE`) imports feast and opens the store
(seconds), says `ready`, then reads pickled frames from stdin and answers each on its stdout
with a line, `ok` or `error <reason>`. It ends when its stdin closes, i.e. when the caller
closes it or dies, after pushing every frame it was handed: a frame written is pushed even if
the caller is killed before the answer comes, which is what a job's last push at shutdown
relies on (Flink ends a Python worker a few seconds into its `close()`). Pickle is only ever
read from the process that started it.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import math
import os
import pickle
import select
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import IO

import pandas as pd

READY = b"ready"
OK = b"ok"
ERROR = b"error "


class PushProcess:
    """Pushes `repo.push_stream` frames through a child process (see the module's docstring).

    A push that gets no answer within `reply_timeout_s` (an online store that stopped answering)
    ends the child and fails, so that neither the caller nor its `close()` waits forever. A
    child that died is started again at the next push, but not sooner than
    `restart_interval_s` after the last start: a child that cannot start (an import error on a
    worker host) costs one start per interval, not one per push."""

    def __init__(
        self,
        feast_dir: Path,
        online: str,
        reply_timeout_s: float = 120.0,
        restart_interval_s: float = 30.0,
    ) -> None:
        self.args = (str(feast_dir), online)
        self.reply_timeout_s = reply_timeout_s
        self.restart_interval_s = restart_interval_s
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self._started_at = -math.inf
        self._is_ready = False
        self._lock = threading.Lock()

    def start(self) -> None:
        """Start the child now unless it runs: its imports take seconds (feast), so a caller
        starts it before its own set-up and calls `wait_ready()` after."""
        with self._lock:
            self._running()

    def wait_ready(self) -> None:
        """Return once the child has opened the online store; raise as a push would if it
        died or did not get there within `reply_timeout_s`."""
        with self._lock:
            self._ready(self._running())

    def __call__(self, frame: pd.DataFrame) -> None:
        with self._lock:
            proc = self._running()
            self._ready(proc)
            assert proc.stdin is not None
            try:
                pickle.dump(frame, proc.stdin, protocol=pickle.HIGHEST_PROTOCOL)
                proc.stdin.flush()
            except OSError as e:  # the child died while taking the frame
                self._reap()
                raise ConnectionError(f"the feature push process died: {e}") from e
            reply = self._answer(proc)
        if reply != OK:
            raise RuntimeError(reply.removeprefix(ERROR).decode(errors="replace"))

    def close(self, timeout_s: float = 60.0) -> None:
        """Let the child end (its stdin closed) and wait for it, at most `timeout_s` (then it
        is killed); every push had its answer."""
        with self._lock:
            if self.proc is None:
                return
            assert self.proc.stdin is not None
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self._reap()

    def _running(self) -> subprocess.Popen[bytes]:
        if self.proc is not None and self.proc.poll() is None:
            return self.proc
        self._reap()
        wait_s = self._started_at + self.restart_interval_s - time.monotonic()
        if wait_s > 0:
            raise ConnectionError(
                f"the feature push process died; it is started again in {wait_s:.0f} s"
            )
        env = dict(os.environ)
        # Whatever this process imports from (a cluster's shipped job files included).
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if p)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "feature_store.push_worker", *self.args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=env,
        )
        self.starts += 1
        self._started_at = time.monotonic()
        self._is_ready = False
        return self.proc

    def _ready(self, proc: subprocess.Popen[bytes]) -> None:
        if self._is_ready:
            return
        reply = self._answer(proc)
        if reply != READY:
            self._reap()
            raise ConnectionError(f"the feature push process did not start: {reply!r}")
        self._is_ready = True

    def _answer(self, proc: subprocess.Popen[bytes]) -> bytes:
        """The child's next line; ends the child if it does not come in time."""
        assert proc.stdout is not None
        try:
            answered, _, _ = select.select([proc.stdout], [], [], self.reply_timeout_s)
            reply = proc.stdout.readline().rstrip(b"\n") if answered else None
        except OSError as e:
            self._reap()
            raise ConnectionError(f"the feature push process died: {e}") from e
        if reply is None:
            self._reap()
            raise TimeoutError(
                f"the feature push process did not answer within {self.reply_timeout_s} s; ended it"
            )
        if not reply:
            self._reap()
            raise ConnectionError("the feature push process died (see the log above)")
        return reply

    def _reap(self) -> None:
        if self.proc is None:
            return
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):  # a broken pipe's buffered bytes
                    pipe.close()
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.proc = None


def serve(store_dir: Path, online: str, frames: IO[bytes], replies: IO[bytes]) -> None:
    """The child's loop: push each frame read from `frames`, answer each on `replies`."""
    from feature_store.feast_import import import_repo_without_torch

    import_repo_without_torch()
    from feature_store import repo

    store = repo.open_store(store_dir, online)
    replies.write(READY + b"\n")
    replies.flush()
    while True:
        try:
            frame = pickle.load(frames)
        except EOFError:
            return
        except pickle.UnpicklingError as e:  # the caller died while writing it
            logging.getLogger(__name__).error("a frame was cut off, not pushed: %s", e)
            return
        try:
            repo.push_stream(store, frame)
            replies.write(OK + b"\n")
        except Exception as e:  # the online store failed: the caller keeps the rows
            reason = " ".join(f"{type(e).__name__}: {e}".split())[:500]
            replies.write(ERROR + reason.encode() + b"\n")
        replies.flush()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("feast_dir", type=Path)
    ap.add_argument("online")
    a = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    # Answers go on a copy of stdout; anything a library prints goes to stderr (the job's log).
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    serve(a.feast_dir, a.online, sys.stdin.buffer, replies)


if __name__ == "__main__":
    main()
