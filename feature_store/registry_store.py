"""Feast's file registry, replaced whole on every write.

Feast's `FileRegistryStore` rewrites `registry.db` in place (truncate, then write), and since
Feast 0.5x a store in `sync` cache mode re-reads the file whenever its modification time
changes. A process that reads while another writes gets a truncated file: a protobuf
`DecodeError`, or a registry with no objects ("Feature view patient_static does not exist"),
kept until the next change. That happens in the stream: each scoring subtask opens the store
and applies the repo's objects in its `open()` (`feature_store.online.feast_source`), in its
own TaskManager process, while the others are already looking features up.

`AtomicFileRegistryStore` writes a temporary file beside the registry and renames it over the
old one (`os.replace`, atomic on POSIX within a file system), so a reader sees the old registry
or the new one, never a part. Selected by `repo.config` through Feast's `registry_store_type`.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from datetime import UTC, datetime
from pathlib import Path

from feast.infra.registry.file import FileRegistryStore
from feast.protos.feast.core.Registry_pb2 import Registry as RegistryProto

CLASS_PATH = f"{__name__}.AtomicFileRegistryStore"


class AtomicFileRegistryStore(FileRegistryStore):  # type: ignore[misc]  # feast is untyped
    """`FileRegistryStore` whose writes are a temporary file renamed over the registry."""

    def _write_registry(self, registry_proto: RegistryProto) -> None:
        registry_proto.version_id = str(uuid.uuid4())
        registry_proto.last_updated.FromDatetime(datetime.now(UTC))
        path: Path = self._filepath
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            os.fchmod(fd, 0o644)  # as Feast's own file (mkstemp makes it 0600)
            with os.fdopen(fd, "wb") as f:
                f.write(registry_proto.SerializeToString())
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
