"""The one typed settings object, built at the edge from the environment and command-line args.

The fields of `Settings` are the settings table: each is declared once, with `setting(...)` or
`cache_setting(...)`, giving its name, type (the annotation), default, environment variable,
command-line flag and documentation. The environment parsing (`Settings.from_env`), the argparse
options (`Settings.add_arguments`), the resolution of both (`Settings.resolve`) and the README's
configuration table (`settings_markdown`) are all generated from it (`SETTINGS`).
"""

# setting() and cache_setting() return dataclasses.field(): ruff cannot see through them.
# ruff: noqa: RUF009
from __future__ import annotations

import argparse
import functools
import os
import secrets
import sys
import typing
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar

DEFAULT_CACHE = Path.home() / ".cache" / "wardflow"
DEFAULT_STATE = DEFAULT_CACHE / "state"
# Not settings themselves: they move every default declared with `cache_setting`.
CACHE_ENV = "WARDFLOW_CACHE"
STATE_ENV = "WARDFLOW_STATE"
PHI_KEY_WARNING = "WARDFLOW_PHI_KEY is not set: using a random key for this run only"

_REPO = Path(__file__).resolve().parents[1]
_META = "wardflow.setting"
_T = TypeVar("_T")


@dataclass(frozen=True)
class _Declared:
    """What a field's metadata holds; `Spec` adds the name and type from the field itself."""

    doc: str
    env: str | None
    flag: str | None
    under_cache: Callable[[Path, Path], Any] | None


def setting(
    default: _T,
    doc: str,
    *,
    env: str | None = None,
    flag: str | None = None,
    secret: bool = False,
    under_cache: Callable[[Path, Path], _T] | None = None,
) -> _T:
    """Declare one setting (a dataclass field). `env` defaults to WARDFLOW_<NAME>, `flag` to
    --kebab-name; a `secret` one is left out of repr."""
    declared = _Declared(doc=doc, env=env, flag=flag, under_cache=under_cache)
    return field(default=default, repr=not secret, metadata={_META: declared})


def cache_setting(
    under_cache: Callable[[Path, Path], _T], doc: str, *, env: str | None = None
) -> _T:
    """A setting whose default lies under WARDFLOW_CACHE or WARDFLOW_STATE: `under_cache(cache,
    state)` gives it, with the defaults `~/.cache/wardflow` and `$WARDFLOW_CACHE/state`."""
    default = under_cache(DEFAULT_CACHE, DEFAULT_STATE)
    return setting(default, doc, env=env, under_cache=under_cache)


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap: str = setting(
        "127.0.0.1:19092",
        "Kafka bootstrap servers (`host:port`, comma-separated); the default is the local broker "
        "of `deploy/local/services.sh`.",
    )
    flink_jars_dir: Path = cache_setting(
        lambda cache, state: cache / "flink-jars",
        "Folder of the Flink connector jars the jobs load.",
        env="WARDFLOW_FLINK_JARS",
    )
    udf_jar_dir: Path = cache_setting(
        lambda cache, state: cache / "udf-jars",
        "Folder of the jar of JVM functions generated from the schemas (udfs/java_decode.py); "
        "built there on first use.",
    )
    clickhouse_url: str = cache_setting(
        lambda cache, state: f"chdb://{state / 'clickhouse'}",
        "ClickHouse to load into and query: `chdb://<folder>` (embedded) or `http://host:8123`.",
        env="CLICKHOUSE_URL",
    )
    clickhouse_database: str = setting("wardflow", "ClickHouse database of the loader.")
    phi_key: bytes = setting(
        b"",
        "HMAC key for patient tokens (the variable's text, encoded). Without it a random key is "
        "used for this run only, with a warning, so tokens differ between runs. Never commit "
        "one; prefer the variable to the flag, which other users can see in the process list.",
        secret=True,
    )
    data_dir: Path = setting(
        Path(__file__).resolve().parents[2] / "shared" / "data",
        "Folder of the downloaded data sets (`physionet2019/setA.parquet`, `mimic_iv_demo/`); "
        "without set A the replay uses a bundled sample.",
    )
    parallelism: int = setting(
        1,
        "Parallelism of the streaming jobs. Where a cluster sets one (`flink run -p`, "
        "`parallelism.default`) and this is not given, the cluster's wins.",
    )
    worker_python: str = setting(
        "",
        "The Python the TaskManagers run the job's functions in (`python.executable`). Empty: "
        "the cluster's (`flink run -pyexec`, its config.yaml), else this process's interpreter.",
    )
    flink_target: str = setting(
        "",
        "Where a job started by its own command line runs: empty for a local MiniCluster (or "
        "the cluster `flink run` submits to), or `host:port` of a Flink session cluster's REST "
        "endpoint to submit to.",
    )
    max_out_of_orderness_s: int = setting(
        60,
        "Watermark delay: each source's watermark trails its largest record timestamp by this "
        "many seconds. A record at or behind the watermark is late (dead-lettered), so a feed "
        "that delivers later needs a larger delay; results wait that much longer.",
    )
    source_idle_timeout_s: int = setting(
        60,
        "A partition with no record for this long stops holding the watermark back: a feed that "
        "goes quiet (ADT at night) and every partition already read when a job restarts from a "
        "checkpoint (watermarks are not checkpointed). While a backlog is read a starved "
        "partition could be marked idle and its records then arrive late, hence a long default; "
        "0 = never.",
    )
    sparse_idle_timeout_ms: int = setting(
        -1,
        "Idle timeout of the partitions of clinical-rate feeds (charted vitals, labs, ADT; every "
        "topic but the device-rate one): after each record such a partition holds the job's "
        "event time back this long, so every result from the device feed waits for it. Their "
        "records come one at a time and a backlog of them is read at once, so a short timeout "
        "does not starve them the way back-pressure can starve a device partition. -1 = "
        "`source_idle_timeout_s`; 0 = never.",
    )
    watermark_interval_ms: int = setting(
        200,
        "How often sources emit a watermark (`pipeline.auto-watermark-interval`). Each event-time "
        "step of a job (a window, a pattern, the state) releases a row at the next watermark "
        "past it, so a result can wait up to this long per step; shorter costs more watermark "
        "traffic.",
    )
    network_buffer_timeout_ms: int = setting(
        10,
        "Longest a record waits in a network buffer that is not full before it is sent to the "
        "next task (`execution.buffer-timeout.interval`; Flink's default is 100 ms). Each keyed "
        "step of a job crosses such a buffer, and at clinical rate (a few hundred states a "
        "second) buffers do not fill, so a result could wait that long per step: six steps lie "
        "between a charted minute and its alert. Shorter sends smaller buffers.",
    )
    watermark_on_event: bool = setting(
        False,
        "Emit a watermark after every record (deterministic lateness, for tests) instead of "
        "periodically (cheaper).",
    )
    python_bundle_size: int = setting(
        1000,
        "Records per bundle of the Python functions (`python.fn-execution.bundle.size`): larger "
        "bundles cost fewer round trips to the JVM and add latency.",
    )
    python_bundle_time_ms: int = setting(
        200,
        "Longest wait before a Python bundle is processed although not full "
        "(`python.fn-execution.bundle.time`), which bounds the latency bundling adds.",
    )
    python_state_cache_keys: int = setting(
        20_000,
        "Python keyed-state cache, in keys (patients): a miss is a round trip to the JVM, but "
        "every bundle commit walks the whole cache, so size it near the number of active "
        "patients.",
    )
    flink_tmp_dir: Path = cache_setting(
        lambda cache, state: cache / "flink-tmp", "Flink's temporary files (`io.tmp.dirs`)."
    )
    flink_log_dir: Path = cache_setting(
        lambda cache, state: cache / "flink-logs", "Flink's logs (`FLINK_LOG_DIR`)."
    )
    job_name: str = setting(
        "wardflow",
        "Flink job name, also the job's folder under the checkpoint folder and its Kafka "
        "transactional id prefix; a streaming job defaults it to its stage.",
    )
    delivery_guarantee: str = setting(
        "exactly-once",
        "`exactly-once`: Kafka sinks write in transactions committed by checkpoints (consumers "
        "read read_committed), so output becomes visible once per checkpoint interval. "
        "`at-least-once` writes at once and may repeat records after a failure (the warehouse's "
        "facts absorb repeats by their keys; its per-minute rollups count them).",
    )
    checkpoint_interval_s: float = setting(
        10.0, "Seconds between checkpoints (> 0: checkpointing is always on)."
    )
    checkpoint_dir: str = cache_setting(
        lambda cache, state: str(cache / "checkpoints"),
        "Where checkpoints are retained, also on cancel and failure (`--restore latest`): a "
        "folder or a URI Flink's file systems know (`file://`, `s3://`, `hdfs://`); each job "
        "keeps its own folder `<job_name>` under it. Where a cluster sets "
        "`execution.checkpointing.dir` and this is not given, the cluster's wins.",
    )
    restore_from: str = setting(
        "",
        "A retained checkpoint (…/chk-N) or savepoint to start from: state and source offsets.",
    )
    kafka_client_timeout_s: int = setting(
        30,
        "How long (s) a job's Kafka clients wait on the broker (a request, a blocking call, a "
        "transaction commit or abort; delivery gets twice this) before the task fails and the "
        "restart strategy takes over; 0 = the Kafka client's own defaults (30-120 s).",
    )
    transaction_timeout_s: int = setting(
        900,
        "Kafka transaction timeout: above checkpoint interval + restart time, at most the "
        "broker's transaction.max.timeout.ms (900 s).",
    )
    device_numerics: bool = setting(
        True,
        "The screening job reads monitor numerics at device rate (`vitals.device.v1`) and charts "
        "them per minute (median of the valid seconds). Off: a deployment whose vitals arrive "
        "charted only (`vitals.observation.v1`).",
    )
    local_jvm_heap_mb: int = setting(
        1536,
        "Heap of the local Flink JVM (the MiniCluster a job runs in when not submitted to a "
        "cluster; keyed state lives there with `hashmap`). G1 grows the heap it holds towards "
        "this cap, so it bounds the JVM's memory. `JVM_ARGS` in the environment wins.",
    )
    state_backend: str = setting(
        "hashmap",
        "Where keyed state lives: `hashmap` (JVM heap, fastest while it fits) or `rocksdb` "
        "(embedded RocksDB on local disk, incremental checkpoints; for state beyond the heap).",
    )
    state_ttl_h: float = setting(
        25.0,
        "A patient's SQL state (last values, first record time) is dropped after this many hours "
        "without a record (processing time). Longer than the longest validity of a value "
        "(24 h), so dropping it changes no result. The catalog scoring job's is "
        "`stay_state_ttl_h`.",
    )
    restart_attempts: int = setting(10, "Restarts after a failure before a job fails.")
    max_future_s: int = setting(
        300,
        "The ingestion edges refuse an event time this far ahead of their clock (`future_time`).",
    )
    hl7_timezone: str = setting(
        "UTC",
        "Time zone of HL7 v2 time stamps that carry no offset (an IANA name), where the "
        "message's MSH-7 gives none either.",
    )
    hl7_patient_authority: str = setting(
        "",
        "Assigning authority taken for a PID-3 identifier sent without one (PID-3.4); empty = "
        "the sending facility (MSH-4, else MSH-3). Set it to the one the ADT feed names where a "
        "monitor gateway sends the same medical record numbers without it, so that both feeds' "
        "records of a patient carry one token.",
    )
    hl7_preferred_authority: str = setting(
        "",
        "Assigning authority (PID-3.4) whose identifier names the patient wherever it stands "
        "among PID-3's repetitions (and MRG-1's, PID-2's), by identifier type among several of "
        "it; where none is of it, or empty, the first of the best identifier type as sent. Set "
        "it to the site's own where an interface engine or MPI reorders the repetitions (a "
        "second hospital's MR put first), so that a patient keeps one token. An identifier sent "
        "without an authority counts as `hl7_patient_authority`'s (else the sender's). Matched "
        "on CX.4's namespace id exactly. Setting it changes the token of a patient whose first "
        "MR was another authority's: their open stay is split once, at the switch.",
    )
    patient_identifier_aliases: str = setting(
        "",
        "Names of one medical record number space across channels, `;`-separated groups of "
        "`NAME=ALIAS,ALIAS...`: HL7 assigning authorities (PID-3.4), FHIR identifier systems, "
        "or `Patient/` (the FHIR server's Patient ids are those numbers); a patient named by "
        "any of them gets one token, so HL7 ADT and FHIR observations of a patient meet "
        "(schemas/interop/identity.py). Empty: each channel's names are spaces of their own.",
    )
    hl7_facility_id: str = setting(
        "",
        "Facility of an HL7 v2 message whose location names none (PV1-3.4); empty = the sending "
        "facility (MSH-4, else MSH-3). Set it where a gateway serves one facility whose monitors "
        "do not name it.",
    )
    hl7_ack_policy: str = setting(
        "durable",
        'What the HL7 v2 gateway answers (`jobs/feeds/hl7_gateway.py`, README "ACK policy"): '
        "`durable` answers AA once a message is durably stored, mapped or dead-lettered with its "
        "reason, and keeps AE for what could not be stored (resend) and AR for what is not "
        "wardflow's; `strict` also answers AE for business-rule refusals.",
    )
    interop_code_map: str = setting(
        "",
        "CSV file mapping the senders' own observation codes (flowsheet rows, lab tests: "
        "`system,code,loinc`) to the LOINC codes wardflow reads, for the HL7 v2 gateway and the "
        "FHIR drop (`schemas/interop/code_map.py`; check one with `python -m "
        "schemas.interop.code_map FILE`); empty: only LOINC and IEEE 11073 codes are read.",
    )
    production_processing_ids: str = setting(
        "P",
        "MSH-11 processing ids (comma-separated) whose messages enter the production topics.",
    )
    nonproduction_topic_prefix: str = setting(
        "nonprod.",
        "Topic prefix for messages with another processing id (T training, D debugging): they "
        "are mapped and stored apart from production; empty: refused with AR instead.",
    )
    hl7_idle_timeout_s: float = setting(
        3600.0,
        "How long the HL7 v2 gateway keeps a connection on which nothing arrives (TCP keepalive "
        "also finds a sender gone without a word); a frame started must end within 60 s of "
        "silence. A sender reconnects to send again.",
    )
    hl7_max_connections: int = setting(
        64,
        "How many connections the HL7 v2 gateway holds at once (an interface engine opens one "
        "per feed); one more is closed at once, logged, so that a sender reconnecting in a "
        "loop cannot take the threads and file descriptors of every other feed.",
    )
    max_message_bytes: int = setting(
        16 << 20,
        "The largest HL7 v2 message or FHIR file the ingestion edges take; a larger one is "
        "refused with an explicit NAK (AR) and a dead letter that names its size.",
    )
    inline_payload_bytes: int = setting(
        256 << 10,
        "A dead letter carries its rejected payload inline up to this size; a larger one is "
        "stored sealed in `payload_store` and the dead letter names it (`payload_ref`).",
    )
    payload_store: Path = cache_setting(
        lambda cache, state: state / "payloads",
        "Where large rejected payloads are kept, sealed and named by a keyed token of their bytes.",
    )
    fhir_server_url: str = setting(
        "",
        "The EHR's FHIR R4 base URL that alerts are written back to (`sinks/ehr_fhir.py`).",
    )
    fhir_server_authorization: str = setting(
        "",
        "The Authorization header the FHIR alert writer sends (`Bearer <access token>`, "
        "`Basic <credentials>`), for an EHR endpoint behind OAuth 2.0 or basic authentication; "
        "empty: none. A secret: prefer the variable to the flag.",
        secret=True,
    )
    ehr_mllp_target: str = setting(
        "",
        "`host:port` of the EHR's HL7 v2 listener for the ORU^R01 alert feed (`sinks/ehr_hl7.py`).",
    )
    ehr_hl7_receiving_application: str = setting(
        "EHR",
        "MSH-5 (receiving application) of the ORU^R01 alert feed, as the EHR's interface engine "
        "routes and checks it.",
    )
    ehr_hl7_receiving_facility: str = setting(
        "",
        "MSH-6 (receiving facility) of the ORU^R01 alert feed; empty: the alert's facility.",
    )
    ehr_hl7_processing_id: str = setting(
        "P",
        "MSH-11 (processing id, HL7 table 0103) of the ORU^R01 alert feed: `P` production, `T` "
        "training, `D` debugging, as the receiving EHR's environment expects.",
    )
    capacity_file: Path = setting(
        Path(__file__).resolve().parent / "capacity_demo.json",
        "Bed capacity per facility and unit, with surge thresholds and time zones "
        "(`schemas/capacity.py`): the census job, the capacity forecast and the loader's "
        "facility and unit dimensions.",
    )
    model_registry: Path = cache_setting(
        lambda cache, state: state / "registry",
        "The model registry (`training/registry.py`): versions, champion/challenger roles.",
    )
    quarantine_registry: Path = cache_setting(
        lambda cache, state: state / "quarantine",
        "The quarantine registry (`python -m udfs.quarantine`, a shared mount on a cluster): "
        "which sources, or which parameters of a source (`--parameter temp_c`), the screening "
        "job's state, rules and models ignore, over an event-time interval, until cleared; set "
        "by the data-quality job's events (`python -m sinks.quarantine`) or an operator. "
        "A whole-source quarantine open across the upgrade to parameters ends when its "
        "conditions end in the data-quality job restored from its savepoint, or when an "
        "operator clears it (a job started without its savepoint never ends it on a "
        "parameter's clear); deploy the screening job, then the actuator and this command, "
        "then the data-quality job from its savepoint, the old one stopped first "
        "(`udfs/quarantine.py`).",
    )
    model_name: str = setting(
        "sepsis-risk", "The registry's model that the screening job scores with."
    )
    scoring: bool = setting(
        True,
        "Sepsis risk scoring in the screening job (champion + shadow challenger); off: rules only.",
    )
    catalog_models: str = setting(
        "icu-mortality,length-of-stay",
        "The catalog models (comma-separated registry names) the catalog scoring job serves "
        "(`jobs/model_scoring.py`); each is scored where its spec's entity and trigger say.",
    )
    stay_state_ttl_h: float = setting(
        72.0,
        "The catalog scoring job's state TTL in place of `state_ttl_h`: a stay's state (its "
        "admissions, running sums from its first record on, hours still to be scored) is "
        "dropped after this many hours without a record of the patient (processing time). A "
        "stay's features reach back to its admission, so after a longer silence the patient's "
        "records start a stay again. Covers a day between ward observations and a weekend's "
        "leave; the state kept grows with it (every stay seen in the last this many hours).",
    )
    roles_check_s: float = setting(
        30.0,
        "How often the scoring functions re-read the registry's roles (promotion, shadow and "
        "rollback take effect within this, without a restart).",
    )
    catalog_feature_lookups: bool = setting(
        True,
        "Whether the catalog scoring job asks the models' feature services (Feast) for the "
        "features it does not compute (a stay's age, sex, ICU type); off: they are unknown.",
    )
    feast_online_store: str = setting(
        "sqlite",
        "Feast's online store: `sqlite` (a file under the state folder) or a Redis connection "
        "string (`host:port`).",
    )
    feast_dir: Path = cache_setting(
        lambda cache, state: state / "feast", "The Feast feature repo's working folder."
    )
    feature_cache_ttl_s: float = setting(
        3600.0,
        "How long the scoring function keeps a patient's static features from Feast before "
        "asking again: between half and all of it, a share fixed per patient, so that patients "
        "first seen together are not all asked again at once.",
    )
    promotion_margin_auroc: float = setting(
        0.01,
        "How much higher a challenger's shadow AUROC must be than the champion's, on the same "
        "labelled states, for `python -m training.promote_decision` to promote it (the paired "
        "bootstrap's lower 95 % bound must also be above zero).",
    )
    quality_window_min: int = setting(
        5,
        "Length (minutes) of the data-quality job's event-time tumbling windows per source, unit "
        "and facility (jobs/data_quality.py); its monitors' thresholds are udfs/quality.py's "
        "table. Replays of hourly charting (PhysioNet) read better at 60.",
    )
    model_monitor_window_min: int = setting(
        720,
        "Length (minutes) of the model monitor's sliding event-time windows of inputs and scores "
        "per facility and model version (jobs/model_monitor.py); thresholds are each model's "
        "spec `monitor` section.",
    )
    model_monitor_slide_min: int = setting(
        180, "How often (minutes) the model monitor's input and score windows slide."
    )
    model_monitor_performance_window_h: int = setting(
        168,
        "Length (hours) of the model monitor's sliding windows of labelled scores (by the time "
        "their outcome became known) for delayed AUROC and calibration.",
    )
    model_monitor_performance_slide_h: int = setting(
        24, "How often (hours) the model monitor's delayed-performance windows slide."
    )
    model_monitor_label_delay_h: int = setting(
        840,
        "How long (hours) after a score the model monitor waits for its outcome label (state "
        "kept that long; 35 days covers a 30-day readmission after the discharge score).",
    )
    # Not a setting: the names given explicitly (environment, flags, overrides) rather than left
    # at their defaults. A cluster's own configuration wins only over defaults. Only `resolve`
    # fills it: a `dataclasses.replace(...)` change counts as a default, so code that must win
    # over a cluster resolves its settings with the value as an override.
    explicit: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read the settings' variables (`os.environ` by default); explicit keyword overrides win
        (None ones are ignored)."""
        return cls.resolve(None, env, **overrides)

    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser) -> None:
        """One option per setting. An option not given is left out of the parsed namespace, so it
        does not hide the environment."""
        group = parser.add_argument_group(
            "settings",
            f"each also read from its environment variable; {CACHE_ENV} and "
            f"{STATE_ENV} move the defaults under them",
        )
        for spec in SETTINGS:
            group.add_argument(spec.flag, **spec.argparse_options())

    @classmethod
    def resolve(
        cls,
        args: argparse.Namespace | Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> Settings:
        """The settings of this process: defaults (moved by WARDFLOW_CACHE / WARDFLOW_STATE), then
        the environment (`os.environ` by default), then parsed command-line `args` (of
        `add_arguments`; other names in them are ignored), then explicit keyword `overrides`;
        None values and empty variables count as not given. Without any PHI key, the process's
        random one is chosen here, once."""
        e = os.environ if env is None else env
        vals: dict[str, Any] = {}
        if e.get(CACHE_ENV):  # the same cache deploy/local/services.sh fills
            cache = Path(e[CACHE_ENV])
            state = Path(e.get(STATE_ENV) or cache / "state")
            for spec in SETTINGS:
                if spec.under_cache is not None:
                    vals[spec.name] = spec.under_cache(cache, state)
        explicit = set()
        for spec in SETTINGS:
            if e.get(spec.env):
                vals[spec.name] = spec.from_env(e[spec.env])
                explicit.add(spec.name)
        given = vars(args) if isinstance(args, argparse.Namespace) else dict(args or {})
        given = {k: v for k, v in given.items() if k in _BY_NAME and v is not None}
        given.update({k: v for k, v in overrides.items() if v is not None and k != "explicit"})
        vals.update(given)
        vals["explicit"] = frozenset(explicit | given.keys())
        if not vals.get("phi_key"):
            vals["phi_key"] = _process_phi_key()
        return cls(**vals).checked()

    def checked(self) -> Settings:
        if self.delivery_guarantee not in ("exactly-once", "at-least-once"):
            raise ValueError(f"delivery_guarantee {self.delivery_guarantee!r}")
        if self.hl7_ack_policy not in ("durable", "strict"):
            raise ValueError(f"hl7_ack_policy {self.hl7_ack_policy!r}: durable or strict")
        if self.hl7_idle_timeout_s <= 0:
            raise ValueError("hl7_idle_timeout_s must be > 0")
        if self.hl7_max_connections < 1:
            raise ValueError("hl7_max_connections must be at least 1")
        if self.checkpoint_interval_s <= 0:
            raise ValueError("checkpointing is always on: checkpoint_interval_s must be > 0")
        if not 2 * self.checkpoint_interval_s + 60 < self.transaction_timeout_s <= 900:
            raise ValueError(
                "transaction_timeout_s must exceed two checkpoint intervals plus a minute of "
                "restart and stay within the broker's transaction.max.timeout.ms (900 s)"
            )
        return self

    def environment(self) -> dict[str, str]:
        """The variables that give a process started with them these settings: one per setting
        that differs from its default (a default written out would win over what a cluster or
        WARDFLOW_CACHE sets). The PHI key is among them, so keep the result out of logs."""
        env = {}
        for spec in SETTINGS:
            value = getattr(self, spec.name)
            if value == spec.default:
                continue
            if isinstance(value, bytes):
                value = value.decode()
            elif isinstance(value, bool):
                value = "1" if value else "0"
            if value != "":
                env[spec.env] = str(value)
        return env

    @property
    def phi_key_ephemeral(self) -> bool:
        """Whether the PHI key is this process's random one (no WARDFLOW_PHI_KEY was given)."""
        return bool(self.phi_key) and self.phi_key == _process_phi_key()

    def require_phi_key(self) -> bytes:
        """The HMAC key for patient tokens, as resolved by `from_env`/`resolve`. The random
        per-process key they fall back to without WARDFLOW_PHI_KEY (tokens then differ between
        runs) is announced by a warning, once per process. Never changes the settings."""
        if not self.phi_key:
            raise ValueError(
                "no PHI key: these settings were built without one; build them with "
                "Settings.from_env() or Settings.resolve() (which read WARDFLOW_PHI_KEY) or pass "
                "phi_key="
            )
        if self.phi_key_ephemeral:
            _warn_ephemeral_phi_key()
        return self.phi_key

    @property
    def physionet_setA(self) -> Path:
        return self.data_dir / "physionet2019" / "setA.parquet"

    @property
    def catalog_model_names(self) -> tuple[str, ...]:
        return tuple(m.strip() for m in self.catalog_models.split(",") if m.strip())

    @property
    def physionet2012_dir(self) -> Path:
        """PhysioNet/CinC 2012: set{A,B}_observations.parquet and set{A,B}_outcomes.parquet."""
        return self.data_dir / "physionet2012"

    @property
    def diabetes130_file(self) -> Path:
        return self.data_dir / "uci_diabetes_130" / "diabetic_data.parquet"

    @property
    def mimic_iv_demo_dir(self) -> Path:
        return self.data_dir / "mimic_iv_demo"

    @property
    def python_executable(self) -> str:
        """The workers' Python: `worker_python`, else this process's interpreter."""
        return self.worker_python or sys.executable


@functools.cache
def _process_phi_key() -> bytes:
    """The random PHI key of this process, drawn the first time a key is resolved without one."""
    return secrets.token_hex(32).encode()


@functools.cache
def _warn_ephemeral_phi_key() -> None:
    # 1: here, 2: require_phi_key, 3: its caller (functools.cache adds no Python frame).
    warnings.warn(PHI_KEY_WARNING, stacklevel=3)


def _parse_bool(text: str) -> bool:
    v = text.strip().lower()
    if v in ("1", "true", "on", "yes"):
        return True
    if v in ("0", "false", "off", "no"):
        return False
    raise ValueError(f"{text!r} is not a boolean: use 1/true/on/yes or 0/false/off/no")


def _parse_bytes(text: str) -> bytes:
    return text.encode()


_PARSERS: dict[type, Callable[[str], Any]] = {
    str: str,
    int: int,
    float: float,
    bool: _parse_bool,
    Path: Path,
    bytes: _parse_bytes,
}


@dataclass(frozen=True)
class Spec:
    """One row of the settings table."""

    name: str
    type: type
    default: Any
    env: str
    flag: str
    doc: str
    secret: bool
    under_cache: Callable[[Path, Path], Any] | None

    def parse(self, text: str) -> Any:
        """The value of this setting written as text (an environment variable, a flag)."""
        return _PARSERS[self.type](text)

    def from_env(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ValueError as exc:
            raise ValueError(f"{self.env}={text!r}: not a valid {self.type.__name__}") from exc

    def argparse_options(self) -> dict[str, Any]:
        def parse(text: str) -> Any:
            try:
                return self.parse(text)
            except ValueError as exc:
                raise argparse.ArgumentTypeError(
                    f"{text!r} is not a valid {self.type.__name__}"
                ) from exc

        opts: dict[str, Any] = {
            "dest": self.name,
            "type": parse,
            "default": argparse.SUPPRESS,
            "metavar": self.type.__name__.upper(),
            # argparse %-formats help texts.
            "help": f"{self.doc} [{self.env}; default {_display(self)}]".replace("%", "%%"),
        }
        if self.type is bool:  # `--scoring` alone means on; `--scoring off`
            opts.update(nargs="?", const=True, metavar="BOOL")
        return opts


def _table() -> tuple[Spec, ...]:
    hints = typing.get_type_hints(Settings)
    specs = []
    for f in fields(Settings):
        if _META not in f.metadata:
            continue
        d: _Declared = f.metadata[_META]
        specs.append(
            Spec(
                name=f.name,
                type=hints[f.name],
                default=f.default,
                env=d.env or f"WARDFLOW_{f.name.upper()}",
                flag=d.flag or "--" + f.name.replace("_", "-"),
                doc=d.doc,
                secret=not f.repr,
                under_cache=d.under_cache,
            )
        )
    return tuple(specs)


SETTINGS: tuple[Spec, ...] = _table()
_BY_NAME = {spec.name: spec for spec in SETTINGS}


def _display(spec: Spec) -> str:
    """A setting's default as the README shows it: the same on every machine."""
    if spec.under_cache is not None:
        return str(spec.under_cache(Path(f"${CACHE_ENV}"), Path(f"${STATE_ENV}")))
    v = spec.default
    if isinstance(v, bool):
        return "true" if v else "false"
    if v in ("", b""):
        return "none"
    if isinstance(v, Path):
        for base, prefix in ((_REPO, ""), (_REPO.parent, "../"), (Path.home(), "~/")):
            if v.is_relative_to(base):
                return prefix + v.relative_to(base).as_posix()
    return str(v)


def settings_markdown() -> str:
    """The README's configuration table, generated from the settings table."""
    rows = [
        "| setting | variable | flag | type | default | meaning |",
        "|---|---|---|---|---|---|",
    ]
    for s in SETTINGS:
        doc = s.doc.replace("|", "\\|")
        rows.append(
            f"| `{s.name}` | `{s.env}` | `{s.flag}` | {s.type.__name__} | `{_display(s)}` | {doc} |"
        )
    rows += [
        "",
        f"`{CACHE_ENV}` (default `~/.cache/wardflow`: jars, broker data, chdb) and `{STATE_ENV}` "
        f"(default `${CACHE_ENV}/state`) move the defaults written under them. Booleans take "
        "1/true/on/yes or 0/false/off/no; an empty variable counts as unset.",
    ]
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_markdown(), end="")
