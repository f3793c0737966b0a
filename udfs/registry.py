"""Model registry: immutable versions with champion/challenger roles, on a file system (a local
folder, or a shared mount in production).

    <root>/<model>/<version>/model.onnx, spec.json, report.md, *.png
    <root>/<model>/roles.json        {"champion": "3", "challenger": "4"}
    <root>/<model>/history.jsonl     every role change, for audit and rollback
    <root>/<model>/audit.jsonl       every lifecycle step, who/what/why (training/audit.py)

A version is registered only when its validation gate passed. Roles change atomically (write a
temporary file, then rename), so a reader sees the old roles or the new, never half. The job
re-reads roles.json when it changes and swaps models without a restart; promotion and rollback
are commands (`training/registry.py`), not code changes:

    python -m training.registry list
    python -m training.registry promote sepsis-risk 4      # 4 becomes champion
    python -m training.registry challenger sepsis-risk 5   # 5 is scored in shadow
    python -m training.registry rollback sepsis-risk       # the previous champion returns

Why not MLflow's registry: its model aliases would fit, but MLflow 3 deprecates the file-store
backend, so it needs a database and a tracking server, and the Flink Python workers that score
would carry its client and dependencies. Wardflow's needs are small: immutable ONNX files with
their spec, two roles, and a history. This module does that in about a hundred lines, and the
job needs onnxruntime only.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROLES = ("champion", "challenger")


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
        shadow evaluation; such a version can never be promoted to champion."""
        spec = json.loads((built / "spec.json").read_text())
        gate = spec.get("gate", {})
        if not gate.get("passed"):
            if not override:
                raise GateFailed("; ".join(gate.get("reasons", ["no gate result"])))
            spec["gate"] = {**gate, "override": override}
        model = spec["name"]
        existing = self.versions(model)
        version = str(int(existing[-1]) + 1) if existing else "1"
        target = self._dir(model) / version
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{version}.tmp")
        shutil.copytree(built, tmp)
        spec.update(version=version, onnx_sha256=sha256(tmp / "model.onnx"))
        spec["registered_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        (tmp / "spec.json").write_text(json.dumps(spec, indent=1) + "\n")
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
        roles = {k: v for k, v in self.roles(model).items() if v != version}
        if version is None:
            roles.pop(role, None)
        else:
            roles[role] = version
        d = self._dir(model)
        tmp = d / ".roles.json.tmp"
        tmp.write_text(json.dumps(roles, sort_keys=True) + "\n")
        os.replace(tmp, d / "roles.json")
        entry = {"at": datetime.now(UTC).isoformat(timespec="seconds"), "roles": roles, "why": why}
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
        """Make the champion before the current one champion again; returns its version."""
        current = self.roles(model).get("champion")
        for entry in reversed(self.history(model)):
            previous = entry["roles"].get("champion")
            if previous and previous != current:
                self.set_role(model, "champion", previous, why=f"rollback from {current}")
                return str(previous)
        raise LookupError(f"{model} has no earlier champion to roll back to")
