"""Model registry: immutable versions with champion/challenger roles, on a file system (a local
folder, or a shared mount in production).

    <root>/<model>/<version>/model.onnx, spec.json, report.md, *.png
    <root>/<model>/roles.json        {"champion": "3", "challenger": "4"}
    <root>/<model>/history.jsonl     every role change, for audit and rollback
    <root>/<model>/audit.jsonl       every lifecycle step, who/what/why (training/audit.py)

A version is registered only when its validation gate passed, its spec parses
(schemas.model_spec) and its ONNX file loads and fits the spec (`load_session`). A version is
immutable: its ONNX file's SHA-256 is recorded at registration and checked whenever it is
loaded to be served, so a file copied over it is refused, never scored under its number.
Roles change atomically (a temporary file of the writer's own, then a rename), so a reader
sees the old roles or the new, never half; writers (a registration, a role change with its
history line) take the model's lock (`<model>/.lock`, flock) in turn, so two operators or an
operator and a retraining run never interleave. The job re-reads roles.json when it changes
and swaps models without a restart; promotion and rollback are commands
(`training/registry.py`), not code changes:

    python -m training.registry list
    python -m training.registry promote sepsis-risk 4      # 4 becomes champion
    python -m training.registry challenger sepsis-risk 5   # 5 is scored in shadow
    python -m training.registry rollback sepsis-risk       # the previous champion returns

A rollback returns the champion that the current one replaced; rolled back again, the one
before that (a champion a rollback left is never returned to by the next rollback).

Why not MLflow's registry: its model aliases would fit, but MLflow 3 deprecates the file-store
backend, so it needs a database and a tracking server, and the Flink Python workers that score
would carry its client and dependencies. Wardflow's needs are small: immutable ONNX files with
their spec, two roles, and a history. This module does that in about a hundred lines, and the
job needs onnxruntime only.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import onnxruntime as ort

from schemas.model_spec import ModelSpec

log = logging.getLogger(__name__)
T = TypeVar("T")
ROLES = ("champion", "challenger")
ROLLBACK = "rollback from "  # how a rollback's history line begins (`why`)


@dataclass(frozen=True)
class Version:
    model: str
    version: str
    path: Path
    spec: dict[str, Any]

    @property
    def onnx(self) -> Path:
        return self.path / "model.onnx"

    @property
    def threshold(self) -> float:
        return float(self.spec["threshold"])


class GateFailed(Exception):
    pass


class InvalidVersion(ValueError):
    """A version that cannot be served: its spec does not parse, its ONNX file is not the one
    registered, does not load, or does not fit the spec."""


def open_session(onnx: str | Path | bytes) -> ort.InferenceSession:
    """An ONNX model (a file, or its bytes) as the job scores it: one thread on the CPU. A tree
    ensemble then sums its trees in one order whatever the batch, so a score computed offline
    with this session equals the job's bit for bit (with a thread pool the sums are ordered
    differently, ~1e-7 apart)."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    model = onnx if isinstance(onnx, bytes) else str(onnx)
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def predict(spec: ModelSpec, session: ort.InferenceSession, x: Any) -> np.ndarray[Any, Any]:
    """A version's score per row of `x` (float32, the spec's features in order): the positive
    class's probability for a binary model (whatever the exporter's output layout), the value
    for a regression model."""
    outs = session.run(None, {spec.input_name: x})
    if spec.task == "binary" and len(outs) > 1:  # skl2onnx: label, probabilities
        probs = outs[1]
        if isinstance(probs, list):  # a list of {class: p} maps (zipmap)
            return np.asarray([p[1] for p in probs], dtype="float64")
        return np.asarray(probs, dtype="float64")[:, -1]
    return np.asarray(outs[0], dtype="float64").reshape(len(x), -1)[:, -1]


def load_session(v: Version) -> tuple[ModelSpec, ort.InferenceSession]:
    """A version as the stream serves it: its spec parsed, its ONNX file the one registered
    (the SHA-256 its spec records, where it records one: a version is immutable), opened as the
    job scores it, its one input the spec's by name and width, and scoring a batch of unknown
    values (`predict`: one number a row). Raises InvalidVersion."""
    try:
        spec = ModelSpec.parse(v.spec)
    except ValueError as e:
        raise InvalidVersion(f"{v.model} {v.version}: the spec does not parse: {e}") from e
    data = v.onnx.read_bytes()
    recorded = v.spec.get("onnx_sha256")
    if recorded is not None and hashlib.sha256(data).hexdigest() != recorded:
        raise InvalidVersion(
            f"{v.model} {v.version}: model.onnx is not the file registered (its SHA-256 differs "
            "from the spec's onnx_sha256)"
        )
    try:
        session = open_session(data)
    except Exception as e:
        raise InvalidVersion(f"{v.model} {v.version}: model.onnx does not load: {e}") from e
    inputs = session.get_inputs()
    if len(inputs) != 1 or inputs[0].name != spec.input_name:
        names = [i.name for i in inputs]
        raise InvalidVersion(
            f"{v.model} {v.version}: the ONNX inputs are {names}, the spec names "
            f"{spec.input_name!r}"
        )
    width = inputs[0].shape[-1]
    if isinstance(width, int) and width != len(spec.features):
        raise InvalidVersion(
            f"{v.model} {v.version}: the ONNX input has {width} columns, the spec names "
            f"{len(spec.features)} features"
        )
    try:
        got = predict(spec, session, np.full((2, len(spec.features)), np.nan, dtype=np.float32))
    except Exception as e:
        raise InvalidVersion(f"{v.model} {v.version}: does not score a batch: {e}") from e
    if got.shape != (2,):
        raise InvalidVersion(
            f"{v.model} {v.version}: scores a batch of 2 rows as {got.shape}, not one number a row"
        )
    return spec, session


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _dir(self, model: str) -> Path:
        return self.root / model

    @contextmanager
    def _locked(self, model: str) -> Iterator[Path]:
        """The model's folder, held exclusively by this writer (flock on `<model>/.lock`)."""
        d = self._dir(model)
        d.mkdir(parents=True, exist_ok=True)
        with (d / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield d
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def versions(self, model: str) -> list[str]:
        d = self._dir(model)
        found = (
            [p.name for p in d.iterdir() if p.is_dir() and p.name.isdigit()] if d.exists() else []
        )
        return sorted(found, key=int)

    def get(self, model: str, version: str) -> Version:
        path = self._dir(model) / version
        spec = json.loads((path / "spec.json").read_text())
        return Version(model, version, path, spec)

    def register(self, built: Path, *, override: str | None = None) -> Version:
        """Copy a built model folder (model.onnx + spec.json + report) in as the next version.
        A version whose gate failed is refused, unless `override` says why it may be kept for
        shadow evaluation; such a version can never be promoted to champion. One that could
        not be served is refused (InvalidVersion: `load_session`)."""
        spec = json.loads((built / "spec.json").read_text())
        gate = spec.get("gate", {})
        if not gate.get("passed"):
            if not override:
                raise GateFailed("; ".join(gate.get("reasons", ["no gate result"])))
            spec["gate"] = {**gate, "override": override}
        model = spec["name"]
        with self._locked(model) as d:
            existing = self.versions(model)
            version = str(int(existing[-1]) + 1) if existing else "1"
            target = d / version
            tmp = target.with_name(f".{version}.tmp")
            shutil.rmtree(tmp, ignore_errors=True)  # one a crashed registration left
            shutil.copytree(built, tmp)
            try:
                spec.update(version=version, onnx_sha256=sha256(tmp / "model.onnx"))
                spec["registered_at"] = datetime.now(UTC).isoformat(timespec="seconds")
                load_session(Version(model, version, tmp, spec))
                (tmp / "spec.json").write_text(json.dumps(spec, indent=1) + "\n")
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            tmp.rename(target)
        return self.get(model, version)

    def roles(self, model: str) -> dict[str, str]:
        p = self._dir(model) / "roles.json"
        return json.loads(p.read_text()) if p.exists() else {}

    def roles_stamp(self, model: str) -> float:
        p = self._dir(model) / "roles.json"
        return p.stat().st_mtime_ns if p.exists() else 0.0

    def role(self, model: str, role: str) -> Version | None:
        v = self.roles(model).get(role)
        return self.get(model, v) if v else None

    def set_role(self, model: str, role: str, version: str | None, *, why: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}")
        if version is not None and version not in self.versions(model):
            raise KeyError(f"{model} has no version {version}")
        if role == "champion" and version is not None:
            gate = self.get(model, version).spec["gate"]
            if not gate["passed"]:
                raise GateFailed(
                    f"{model} {version} failed its gate: " + "; ".join(gate["reasons"])
                )
        with self._locked(model) as d:
            current = self.roles(model)
            if role == "challenger" and version is not None and current.get("champion") == version:
                # a version holds one role: naming the champion the challenger took the champion
                # away (the job stopped scoring the model, and dropped it at its next start)
                raise ValueError(
                    f"{model} {version} is the champion: promote or roll back to another "
                    "version before it can be the challenger"
                )
            roles = {k: v for k, v in current.items() if v != version}
            if version is None:
                roles.pop(role, None)
            else:
                roles[role] = version
            fd, tmp = tempfile.mkstemp(prefix=".roles.", suffix=".tmp", dir=d)
            os.fchmod(fd, 0o644)  # readable by the jobs' user, as before (mkstemp makes 0600)
            with os.fdopen(fd, "w") as f:
                f.write(json.dumps(roles, sort_keys=True) + "\n")
            os.replace(tmp, d / "roles.json")
            at = datetime.now(UTC).isoformat(timespec="seconds")
            entry = {"at": at, "roles": roles, "why": why}
            with (d / "history.jsonl").open("a") as f:
                f.write(json.dumps(entry) + "\n")

    def history(self, model: str) -> list[dict[str, Any]]:
        p = self._dir(model) / "history.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def append_audit(self, model: str, event: dict[str, Any]) -> None:
        """Append one lifecycle audit event (built by training/audit.py) to audit.jsonl."""
        d = self._dir(model)
        d.mkdir(parents=True, exist_ok=True)
        with (d / "audit.jsonl").open("a") as f:
            f.write(json.dumps(event, default=str) + "\n")

    def audit(self, model: str) -> list[dict[str, Any]]:
        p = self._dir(model) / "audit.jsonl"
        return [json.loads(line) for line in p.read_text().splitlines()] if p.exists() else []

    def promote(self, model: str, version: str) -> None:
        self.set_role(model, "champion", version, why=f"promote {version}")

    def rollback(self, model: str) -> str:
        """Make the champion that the current one replaced champion again; returns its version.
        The history is read as a stack of champions: a new champion is pushed, a rollback pops
        the one it left, so a second rollback goes further back, never to the champion the
        first one left."""
        current = self.roles(model).get("champion")
        earlier = [c for c in self.champions(model) if c != current]
        if not earlier:
            raise LookupError(f"{model} has no earlier champion to roll back to")
        previous = earlier[-1]
        self.set_role(model, "champion", previous, why=f"{ROLLBACK}{current}")
        return previous

    def earlier_champion(self, model: str, failed: str, load: Callable[[str], T]) -> T | None:
        """`load` of the newest champion before `failed` in the history that loads (a job that
        starts after a bad promotion serves what a running one would have kept); None if none
        does."""
        for v in reversed(self.champions(model)):
            if v == failed:
                continue
            try:
                return load(v)
            except Exception as e:
                log.error("%s champion %s cannot be served either: %s", model, v, e)
        return None

    def champions(self, model: str) -> list[str]:
        """The champions a rollback can return to, oldest first, the current one last: the
        history's champions, each rollback taking back the one it left."""
        stack: list[str] = []
        for entry in self.history(model):
            champion = entry["roles"].get("champion")
            rollback = str(entry.get("why", "")).startswith(ROLLBACK)
            left = str(entry.get("why", "")).removeprefix(ROLLBACK)
            if rollback and len(stack) > 1 and stack[-1] == left and stack[-2] == champion:
                stack.pop()  # back to the one it replaced (any other: read as a promotion)
            elif champion and (not stack or stack[-1] != champion):
                stack = [c for c in stack if c != champion] + [champion]
        return stack
