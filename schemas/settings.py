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
    # A partition with no record for this long stops holding the watermark back: a feed that goes
    # quiet (ADT at night) and every partition already read when a job restarts from a
    # checkpoint (watermarks are not checkpointed). While a backlog is read a starved partition
    # could be marked idle and its records then arrive late, hence a long default; 0 = never.
    source_idle_timeout_s: int = 60
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
    # Exactly-once: Kafka sinks write in transactions committed by checkpoints (consumers read
    # read_committed), so output becomes visible once per checkpoint interval. "at-least-once"
    # writes at once and may repeat records after a failure (the loader's keys absorb repeats).
    delivery_guarantee: str = "exactly-once"
    checkpoint_interval_s: float = 10.0
    checkpoint_dir: Path = DEFAULT_CACHE / "checkpoints"
    # A retained checkpoint (…/chk-N) or savepoint to start from: state and source offsets.
    restore_from: str = ""
    # Above checkpoint interval + restart time, at most the broker's transaction.max.timeout.ms.
    transaction_timeout_s: int = 900
    restart_attempts: int = 10
    # The ingestion edges refuse an event time this far ahead of their clock (`future_time`).
    max_future_s: int = 300
    # Time zone of HL7 v2 time stamps that carry no offset (an IANA name).
    hl7_timezone: str = "UTC"
    # Bed capacity per facility and unit, with surge thresholds (schemas.capacity).
    capacity_file: Path = Path(__file__).resolve().parent / "capacity_demo.json"
    # The model registry (training/registry.py): versions, champion/challenger roles.
    model_registry: Path = DEFAULT_CACHE / "state" / "registry"
    model_name: str = "sepsis-risk"
    # Sepsis risk scoring in the screening job (champion + shadow challenger); off: rules only.
    scoring: bool = True
    # Feast: the repo's online store, "sqlite" (a file under the state folder) or a Redis
    # connection string (host:port), and the feature repo's working folder.
    feast_online_store: str = "sqlite"
    feast_dir: Path = DEFAULT_CACHE / "state" / "feast"
    # How long the scoring UDF keeps a patient's static features from Feast before asking again.
    feature_cache_ttl_s: float = 3600.0

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
        if "WARDFLOW_SOURCE_IDLE_TIMEOUT_S" in e:
            vals["source_idle_timeout_s"] = int(e["WARDFLOW_SOURCE_IDLE_TIMEOUT_S"])
        if "WARDFLOW_DELIVERY_GUARANTEE" in e:
            vals["delivery_guarantee"] = e["WARDFLOW_DELIVERY_GUARANTEE"]
        if "WARDFLOW_CHECKPOINT_INTERVAL_S" in e:
            vals["checkpoint_interval_s"] = float(e["WARDFLOW_CHECKPOINT_INTERVAL_S"])
        if "WARDFLOW_CHECKPOINT_DIR" in e:
            vals["checkpoint_dir"] = Path(e["WARDFLOW_CHECKPOINT_DIR"])
        if e.get("WARDFLOW_CACHE") and "WARDFLOW_CHECKPOINT_DIR" not in e:
            vals["checkpoint_dir"] = Path(e["WARDFLOW_CACHE"]) / "checkpoints"
        if "WARDFLOW_HL7_TIMEZONE" in e:
            vals["hl7_timezone"] = e["WARDFLOW_HL7_TIMEZONE"]
        if "WARDFLOW_CAPACITY_FILE" in e:
            vals["capacity_file"] = Path(e["WARDFLOW_CAPACITY_FILE"])
        if e.get("WARDFLOW_CACHE"):
            state = Path(e.get("WARDFLOW_STATE") or Path(e["WARDFLOW_CACHE"]) / "state")
            vals.update(model_registry=state / "registry", feast_dir=state / "feast")
        if "WARDFLOW_MODEL_REGISTRY" in e:
            vals["model_registry"] = Path(e["WARDFLOW_MODEL_REGISTRY"])
        if "WARDFLOW_SCORING" in e:
            vals["scoring"] = e["WARDFLOW_SCORING"].lower() not in ("0", "false", "off", "")
        if "WARDFLOW_FEAST_ONLINE_STORE" in e:
            vals["feast_online_store"] = e["WARDFLOW_FEAST_ONLINE_STORE"]
        if "WARDFLOW_FEAST_DIR" in e:
            vals["feast_dir"] = Path(e["WARDFLOW_FEAST_DIR"])
        if e.get("WARDFLOW_PHI_KEY"):
            vals["phi_key"] = e["WARDFLOW_PHI_KEY"].encode()
        vals.update({k: v for k, v in overrides.items() if v is not None})
        return replace(s, **vals).checked()

    def checked(self) -> Settings:
        if self.delivery_guarantee not in ("exactly-once", "at-least-once"):
            raise ValueError(f"delivery_guarantee {self.delivery_guarantee!r}")
        if self.checkpoint_interval_s <= 0:
            raise ValueError("checkpointing is always on: checkpoint_interval_s must be > 0")
        if not 2 * self.checkpoint_interval_s + 60 < self.transaction_timeout_s <= 900:
            raise ValueError(
                "transaction_timeout_s must exceed two checkpoint intervals plus a minute of "
                "restart and stay within the broker's transaction.max.timeout.ms (900 s)"
            )
        return self

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
