"""Thin PyFlink wrappers over the pure functions in udfs.vitals (registered by the jobs)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC
from typing import Any

from pyflink.common import Row, Types
from pyflink.datastream.functions import KeyedProcessFunction, RuntimeContext
from pyflink.datastream.state import ValueStateDescriptor
from pyflink.table.udf import (
    ScalarFunction,
    TableFunction,
    UserDefinedScalarFunctionWrapper,
    UserDefinedTableFunctionWrapper,
    udf,
    udtf,
)

from schemas import load_schema, rows, topics
from udfs import lifecycle
from udfs.flink_types import data_type, field_data_types, type_info
from udfs.vitals import (
    decode_observation,
    decode_record,
    decoded_fields,
    news2_summary,
)


def decoded_row(schema_name: str) -> rows.Row:
    """The decode UDTF's result row for a registry schema (udfs.vitals.decode_record)."""
    schema = load_schema(schema_name)
    return rows.decoded(schema, (f.name for f in decoded_fields(schema)))


DECODED_ROW = decoded_row(topics.VITALS_OBSERVATION.schema_name)
DECODED_COLUMNS = DECODED_ROW.columns
DECODED_TYPES = field_data_types(DECODED_ROW)
NEWS2_TYPE = data_type(rows.NEWS2_RESULT)
ALERT_EVENT_TYPE = type_info(rows.ALERT_EVENT)


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
    return decoded_row(schema_name).columns


def decode_udtf(schema_name: str) -> UserDefinedTableFunctionWrapper:
    types = field_data_types(decoded_row(schema_name))
    return udtf(DecodeRecord(schema_name), result_types=types)


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
    patient's alerts and the buffer share one value state: one read and one write per call.

    In: schemas.rows.RULE_HIT rows (by name) with their event time as the record timestamp.
    Out: schemas.rows.ALERT_EVENT rows (ALERT_EVENT_TYPE)."""

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
            yield Row(*(ev[n] for n in rows.ALERT_EVENT.columns))

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
