"""The command line every streaming job shares: settings from the environment, then run."""

from __future__ import annotations

import argparse
import dataclasses
import signal
from collections.abc import Callable
from types import FrameType

from jobs.runtime import kafka_io
from jobs.runtime.flink_env import checkpoint_location, checkpoint_root, latest_checkpoint
from jobs.runtime.watch import exit_on_failure
from schemas.settings import Settings


def job_main(
    doc: str | None,
    stage: str,
    run: Callable[..., None],
    argv: list[str] | None = None,
) -> None:
    a = parser(doc).parse_args(argv)
    # The stage names the job (and its checkpoints) unless --job-name does: a WARDFLOW_JOB_NAME
    # meant for one job must not give every job the same checkpoint folder.
    settings = Settings.resolve(a, job_name=getattr(a, "job_name", stage))
    if a.restore:
        path = latest_checkpoint(settings) if a.restore == "latest" else a.restore
        if path is None:
            raise SystemExit(
                f"no retained checkpoint of {stage} under {checkpoint_location(settings)}"
            )
        settings = dataclasses.replace(settings, restore_from=str(path))
    kafka_io.wait_for_broker(settings)
    signal.signal(signal.SIGTERM, _interrupt)
    checkpoints = checkpoint_root(settings)  # until the platform's is known
    try:
        with exit_on_failure():
            # Asked of the JVM now: a SIGTERM to the whole process group stops it as well.
            checkpoints = checkpoint_location(settings)
            run(settings, prefix=a.topic_prefix, bounded=a.bounded)
    except KeyboardInterrupt:
        print(f"{stage} cancelled; checkpoints are retained under {checkpoints}")


def parser(doc: str | None) -> argparse.ArgumentParser:
    """The job's own options, then one per setting (`--parallelism`, `--max-out-of-orderness-s`,
    …), each winning over its environment variable."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--bounded", action="store_true", help="stop at the topics' current end")
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument(
        "--restore",
        default=None,
        help="a retained checkpoint or savepoint to start from, or `latest` (this job's newest)",
    )
    Settings.add_arguments(ap)
    return ap


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
