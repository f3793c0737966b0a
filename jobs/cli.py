"""The command line every streaming job shares: settings from the environment, then run."""

from __future__ import annotations

import argparse
from collections.abc import Callable

from jobs import kafka_io
from jobs.settings import Settings


def job_main(
    doc: str | None,
    stage: str,
    run: Callable[..., None],
    argv: list[str] | None = None,
) -> None:
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--bounded", action="store_true", help="stop at the topics' current end")
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument("--parallelism", type=int, default=None)
    a = ap.parse_args(argv)
    settings = Settings.from_env(parallelism=a.parallelism, job_name=stage)
    kafka_io.wait_for_broker(settings)
    run(settings, prefix=a.topic_prefix, bounded=a.bounded)
