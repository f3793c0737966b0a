"""Thin PyFlink wrappers over the pure functions in udfs.vitals (registered by the jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table import DataTypes
from pyflink.table.types import DataType
from pyflink.table.udf import (
    ScalarFunction,
    TableFunction,
    UserDefinedScalarFunctionWrapper,
    UserDefinedTableFunctionWrapper,
    udf,
    udtf,
)

from schemas import load_schema
from schemas.avro import AvroField
from udfs import lifecycle
from udfs.sepsis import SCORE_COLUMNS, screen_row
from udfs.vitals import (
    DECODED_FIELDS,
    decode_observation,
    decode_record,
    decoded_fields,
    news2_summary,
)

_TYPES = {
    "string": DataTypes.STRING,
    "int": DataTypes.INT,
    "long": DataTypes.BIGINT,
    "float": DataTypes.FLOAT,
    "double": DataTypes.DOUBLE,
    "boolean": DataTypes.BOOLEAN,
    "bytes": DataTypes.BYTES,
}


def flink_data_type(f: AvroField) -> DataType:
    return _TYPES[f.base]()


DECODED_COLUMNS = ("reason_code", "reason", *(f.name for f in DECODED_FIELDS))
DECODED_TYPES = [
    DataTypes.STRING(),
    DataTypes.STRING(),
    *(flink_data_type(f) for f in DECODED_FIELDS),
]
NEWS2_TYPE = DataTypes.ROW(
    [
        DataTypes.FIELD("score", DataTypes.INT()),
        DataTypes.FIELD("params_scored", DataTypes.INT()),
        DataTypes.FIELD("red_flag", DataTypes.BOOLEAN()),
    ]
)


class DecodeObservation(TableFunction):  # type: ignore[misc]
    """One row per record: a table function, because the planner cannot filter on the fields of
    a row-typed Python scalar result (RemoteCalcSplitRule fails) and the rowtime must survive."""

    def eval(self, payload: bytes | None, record_time_ms: int | None) -> Iterator[Row]:
        yield Row(*decode_observation(payload, record_time_ms))


class News2(ScalarFunction):  # type: ignore[misc]
    def eval(self, *values: Any) -> Row:
        return Row(*news2_summary(*values))


class DecodeRecord(TableFunction):  # type: ignore[misc]
    """Decode + validate a raw Kafka value with a registry schema (see udfs.vitals)."""

    def __init__(self, schema_name: str) -> None:
        self.schema_name = schema_name

    def open(self, function_context: Any) -> None:
        self.schema = load_schema(self.schema_name)

    def eval(self, payload: bytes | None, record_time_ms: int | None) -> Iterator[Row]:
        yield Row(*decode_record(self.schema, payload, record_time_ms))


def decoded_columns(schema_name: str) -> tuple[str, ...]:
    return ("reason_code", "reason", *(f.name for f in decoded_fields(load_schema(schema_name))))


def decode_udtf(schema_name: str) -> UserDefinedTableFunctionWrapper:
    fields = decoded_fields(load_schema(schema_name))
    types = [DataTypes.STRING(), DataTypes.STRING(), *(flink_data_type(f) for f in fields)]
    return udtf(DecodeRecord(schema_name), result_types=types)


class ScreenState(TableFunction):  # type: ignore[misc]
    """All sepsis scores of one patient state (udfs.sepsis.screen_row); a table function so that
    the rules can filter on its columns."""

    def eval(self, *values: Any) -> Iterator[Row]:
        yield Row(*screen_row(*values))


def screen_udtf() -> UserDefinedTableFunctionWrapper:
    types = [
        DataTypes.BOOLEAN() if c == "news2_red_flag" else DataTypes.INT() for c in SCORE_COLUMNS
    ]
    return udtf(ScreenState(), result_types=types)


def decode_observation_udtf() -> UserDefinedTableFunctionWrapper:
    return udtf(DecodeObservation(), result_types=DECODED_TYPES)


def news2_udf() -> UserDefinedScalarFunctionWrapper:
    return udf(News2(), result_type=NEWS2_TYPE)


Pending = tuple[int, int, str, str, lifecycle.Hit | None]  # order key..., hit (None: discharge)
Stored = tuple[lifecycle.PatientAlerts | None, list[Pending]]


class AlertLifecycle(KeyedProcessFunction):  # type: ignore[misc]
    """Keyed by patient: buffers rule hits and discharges until the watermark passes their event
    time, then applies them in event-time order (udfs.lifecycle.PatientAlerts). Resolution after
    a quiet period is an event-time timer, so it also fires at the end of a bounded run. All of a
    patient's alerts and the buffer share one value state: one read and one write per call."""

    def __init__(self, quiet_h: int = lifecycle.QUIET_H) -> None:
        self.quiet_h = quiet_h

    def open(self, runtime_context: RuntimeContext) -> None:
        self.state = runtime_context.get_state(
            ValueStateDescriptor("alerts", Types.PICKLED_BYTE_ARRAY())
        )

    def process_element(self, value: Row, ctx: KeyedProcessFunction.Context) -> Iterator[Row]:
        at = ctx.timestamp()
        hit = None if value.kind == "discharge" else self._hit(value, at)
        stored: Stored = self.state.value() or (None, [])
        stored[1].append((*lifecycle.order_key(at, hit), hit))
        self.state.update(stored)
        ctx.timer_service().register_event_time_timer(at)
        return iter(())

    def on_timer(self, timestamp: int, ctx: KeyedProcessFunction.OnTimerContext) -> Iterator[Row]:
        stored: Stored = self.state.value() or (None, [])
        alerts = stored[0] or lifecycle.PatientAlerts(self.quiet_h)
        due = sorted((p for p in stored[1] if p[0] <= timestamp), key=lambda p: p[:4])
        later = [p for p in stored[1] if p[0] > timestamp]
        out: list[dict[str, Any]] = []
        for at, _, _, _, hit in due:
            out += alerts.advance(at) + alerts.apply(at, hit)
        out += alerts.advance(timestamp)
        for deadline in alerts.deadlines():
            ctx.timer_service().register_event_time_timer(deadline)
        if alerts.rules or later:
            self.state.update((alerts if alerts.rules else None, later))
        else:
            self.state.clear()
        for ev in out:
            yield Row(*(ev[n] for n, _ in ALERT_EVENT_FIELDS))

    @staticmethod
    def _hit(r: Row, at: int) -> lifecycle.Hit:
        return lifecycle.Hit(
            rule_id=r.rule_id,
            rule_version=r.rule_version,
            severity=r.severity,
            patient_token=r.patient_token,
            facility_id=r.facility_id,
            unit_id=r.unit_id,
            event_time_ms=at,
            first_event_time_ms=int(r.first_time.replace(tzinfo=UTC).timestamp() * 1000),
            first_record_id=r.first_record_id,
            last_record_id=r.last_record_id,
            score_name=r.score_name,
            score_value=r.score_value,
            evidence_json=r.evidence_json,
        )


ALERT_EVENT_FIELDS = (
    ("alert_event_id", Types.STRING()),
    ("alert_id", Types.STRING()),
    ("action", Types.STRING()),
    ("sequence", Types.INT()),
    ("rule_id", Types.STRING()),
    ("rule_version", Types.STRING()),
    ("severity", Types.STRING()),
    ("patient_token", Types.STRING()),
    ("facility_id", Types.STRING()),
    ("unit_id", Types.STRING()),
    ("opened_time_ms", Types.LONG()),
    ("event_time_ms", Types.LONG()),
    ("resolve_reason", Types.STRING()),
    ("hit_count", Types.INT()),
    ("score_name", Types.STRING()),
    ("score_value", Types.INT()),
    ("first_record_id", Types.STRING()),
    ("last_record_id", Types.STRING()),
    ("evidence_json", Types.STRING()),
)
ALERT_EVENT_TYPE = Types.ROW_NAMED(
    [n for n, _ in ALERT_EVENT_FIELDS], [t for _, t in ALERT_EVENT_FIELDS]
)
