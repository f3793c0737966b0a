"""A process table function's keyed state, read out of a savepoint with Flink's State Processor
API (tests/java/PtfStateReader.java, run in its own JVM): what no output row shows, such as state
a function should have cleared. The API's jar comes from Maven Central (tests/java/pom.xml) into
the cache beside the connector jars; the reader is compiled with javac once per source."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyflink.common import Row
from pyflink.java_gateway import get_gateway
from pyflink.table import StreamTableEnvironment

from schemas.settings import Settings
from udfs import java_decode

HERE = Path(__file__).resolve().parent / "java"
SOURCE = HERE / "PtfStateReader.java"
MAIN = "io.wardflow.tests.PtfStateReader"


NAMED_TIMERS = "internal-named-timers-map"  # Flink's own map of a function's named timers


@dataclass(frozen=True)
class KeyState:
    """One key of the function and what each of its keyed states holds for it (only those that
    hold something): a value state `True`, a list its length, a map its entries as strings (the
    named timers: name → epoch ms)."""

    key: tuple[str | None, ...]
    states: dict[str, Any]


@dataclass(frozen=True)
class Savepoint:
    """The operator's keyed states (name → VALUE, LIST or MAP) and every key that holds one."""

    declared: dict[str, str]
    keys: list[KeyState]


def _flink_lib() -> Path:
    import pyflink

    return Path(pyflink.__file__).resolve().parent / "lib"


def classpath(settings: Settings) -> str:
    """The reader's classpath: Flink (the PyFlink wheel's), the State Processor API, the UDF jar
    (a state's type may name its classes) and the compiled reader."""
    home = settings.flink_jars_dir.parent / "flink-state-reader"
    libs = home / "libs"
    if not (libs / ".complete").exists():
        mvn = shutil.which("mvn")
        if not mvn:
            raise FileNotFoundError("the savepoint reader needs Maven (mvn) to fetch its jar")
        shutil.rmtree(libs, ignore_errors=True)
        _run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(HERE / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={libs}",
            ]
        )
        (libs / ".complete").touch()
    classes = home / f"classes-{hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]}"
    cp = [f"{_flink_lib()}/*", f"{libs}/*", str(java_decode.decoder_jar(settings))]
    if not classes.exists():
        javac = shutil.which("javac")
        if not javac:
            raise FileNotFoundError("the savepoint reader is compiled with javac")
        staged = classes.with_name(f".{classes.name}.{os.getpid()}")
        shutil.rmtree(staged, ignore_errors=True)
        _run(
            [
                javac,
                "-nowarn",
                "--release",
                "17",
                "-cp",
                os.pathsep.join(cp),
                "-d",
                str(staged),
                str(SOURCE),
            ]
        )
        os.replace(staged, classes)
    return os.pathsep.join([*cp, str(classes)])


def read(settings: Settings, savepoint: str, state: str) -> Savepoint:
    """The keyed state of the one operator in `savepoint` that declares a state named `state`."""
    java = shutil.which("java")
    if not java:
        raise FileNotFoundError("the savepoint reader runs on a Java runtime")
    done = _run([java, "-cp", classpath(settings), MAIN, savepoint, state])
    header, *rows = [json.loads(line) for line in done.splitlines() if line.startswith("{")]
    return Savepoint(header["states"], [KeyState(tuple(r["key"]), r["states"]) for r in rows])


def savepoint_after(
    t_env: StreamTableEnvironment,
    query: str,
    last: Callable[[Row], bool],
    folder: Path,
    deadline_s: float = 300.0,
) -> tuple[list[Row], str]:
    """Run `query` (a job that does not end by itself) until a row for which `last` holds comes
    out, then stop it with a savepoint (canonical format) into `folder`: the rows and the
    savepoint's path. A job that has not given that row within `deadline_s` is cancelled and
    the call fails, rather than waiting for ever."""
    result = t_env.execute_sql(query)
    client = result.get_job_client()
    if client is None:
        raise RuntimeError("the query did not start a job")
    rows: list[Row] = []
    watchdog = threading.Timer(deadline_s, lambda: client.cancel())
    watchdog.start()
    with result.collect() as out:
        try:
            for r in out:
                rows.append(r)
                if last(r):
                    break
            else:
                raise RuntimeError(f"the job ended after {len(rows)} rows without the last one")
        finally:
            watchdog.cancel()
        # PyFlink's stop_with_savepoint predates the format argument: Java's, directly
        canonical = get_gateway().jvm.org.apache.flink.core.execution.SavepointFormatType.CANONICAL
        stopping = client._j_job_client.stopWithSavepoint(False, folder.as_uri(), canonical)
        return rows, str(stopping.get())


def _run(cmd: list[str]) -> str:
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(
            f"{Path(cmd[0]).name} failed:\n{done.stdout[-4000:]}{done.stderr[-4000:]}"
        )
    return done.stdout
