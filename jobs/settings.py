"""The one typed settings object, built at the edge from the environment and command-line args."""

from __future__ import annotations

import os
import secrets
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

DEFAULT_CACHE = Path.home() / ".cache" / "wardflow"


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = "127.0.0.1:19092"
    flink_jars_dir: Path = DEFAULT_CACHE / "flink-jars"
    clickhouse_url: str = f"chdb://{DEFAULT_CACHE / 'state' / 'clickhouse'}"
    clickhouse_database: str = "wardflow"
    phi_key: bytes = field(default=b"", repr=False)
    data_dir: Path = Path(__file__).resolve().parents[2] / "shared" / "data"
    parallelism: int = 1
    max_out_of_orderness_s: int = 60
    # 0 = never mark a partition idle. A positive value lets an empty partition stop holding the
    # watermark back, but while a backlog is read it can make a slow partition's records late.
    source_idle_timeout_s: int = 0
    # Emit a watermark after every record (deterministic lateness, for tests) instead of
    # periodically (cheaper).
    watermark_on_event: bool = False
    python_bundle_size: int = 1000
    python_bundle_time_ms: int = 200
    # Python keyed-state cache, in keys (patients): a miss is a round trip to the JVM, but every
    # bundle commit walks the whole cache, so size it near the number of active patients.
    python_state_cache_keys: int = 20_000
    flink_tmp_dir: Path = DEFAULT_CACHE / "flink-tmp"
    flink_log_dir: Path = DEFAULT_CACHE / "flink-logs"
    job_name: str = "wardflow"
    # Time zone of HL7 v2 time stamps that carry no offset (an IANA name).
    hl7_timezone: str = "UTC"
    # Bed capacity per facility and unit, with surge thresholds (jobs.capacity).
    capacity_file: Path = Path(__file__).resolve().parent / "sample" / "capacity_demo.json"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read WARDFLOW_* variables; explicit keyword overrides (from CLI args) win."""
        e = os.environ if env is None else env
        s = cls()
        vals: dict[str, Any] = {}
        if e.get("WARDFLOW_CACHE"):  # the same cache deploy/local/services.sh fills
            cache = Path(e["WARDFLOW_CACHE"])
            state = Path(e.get("WARDFLOW_STATE") or cache / "state")
            vals.update(
                flink_jars_dir=cache / "flink-jars",
                flink_tmp_dir=cache / "flink-tmp",
                flink_log_dir=cache / "flink-logs",
                clickhouse_url=f"chdb://{state / 'clickhouse'}",
            )
        if "WARDFLOW_KAFKA_BOOTSTRAP" in e:
            vals["kafka_bootstrap"] = e["WARDFLOW_KAFKA_BOOTSTRAP"]
        if "WARDFLOW_FLINK_JARS" in e:
            vals["flink_jars_dir"] = Path(e["WARDFLOW_FLINK_JARS"])
        if "CLICKHOUSE_URL" in e:
            vals["clickhouse_url"] = e["CLICKHOUSE_URL"]
        if "WARDFLOW_CLICKHOUSE_DATABASE" in e:
            vals["clickhouse_database"] = e["WARDFLOW_CLICKHOUSE_DATABASE"]
        if "WARDFLOW_DATA_DIR" in e:
            vals["data_dir"] = Path(e["WARDFLOW_DATA_DIR"])
        if "WARDFLOW_PARALLELISM" in e:
            vals["parallelism"] = int(e["WARDFLOW_PARALLELISM"])
        if "WARDFLOW_HL7_TIMEZONE" in e:
            vals["hl7_timezone"] = e["WARDFLOW_HL7_TIMEZONE"]
        if "WARDFLOW_CAPACITY_FILE" in e:
            vals["capacity_file"] = Path(e["WARDFLOW_CAPACITY_FILE"])
        if e.get("WARDFLOW_PHI_KEY"):
            vals["phi_key"] = e["WARDFLOW_PHI_KEY"].encode()
        vals.update({k: v for k, v in overrides.items() if v is not None})
        return replace(s, **vals)

    def require_phi_key(self) -> bytes:
        """The HMAC key for patient tokens. Without WARDFLOW_PHI_KEY, a random per-process key is
        used (tokens then differ between runs) and a warning says so."""
        if self.phi_key:
            return self.phi_key
        warnings.warn(
            "WARDFLOW_PHI_KEY is not set: using a random key for this run only", stacklevel=2
        )
        key = secrets.token_hex(32).encode()
        object.__setattr__(self, "phi_key", key)
        return key

    @property
    def physionet_setA(self) -> Path:
        return self.data_dir / "physionet2019" / "setA.parquet"

    @property
    def python_executable(self) -> str:
        return sys.executable
