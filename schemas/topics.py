"""The topic registry: every Kafka topic wardflow reads or writes, with its schema and key."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from schemas.avro import load_schema

if TYPE_CHECKING:
    from schemas.avro import Schema


@dataclass(frozen=True)
class Topic:
    name: str
    schema_name: str
    key_field: str
    partitions: int
    doc: str
    # Every partition carries records every second (monitors at 1 Hz). The other feeds come at
    # clinical rate, a record per patient per hour or so, and each of their partitions is quiet
    # between records: they get their own idle timeout (settings.sparse_idle_timeout_ms).
    device_rate: bool = False

    @property
    def schema(self) -> Schema:
        return load_schema(self.schema_name)


VITALS_OBSERVATION = Topic(
    "vitals.observation.v1",
    "vitals.observation.v1",
    "patient_token",
    3,
    "Bedside-device vital signs, one record per observation set.",
)

VITALS_DEVICE = Topic(
    "vitals.device.v1",
    "vitals.device.v1",
    "patient_token",
    6,
    "Bedside-monitor numerics at device rate (about one record per device per second).",
    device_rate=True,
)

VITALS_CHARTED = Topic(
    "vitals.charted.v1",
    "vitals.charted.v1",
    "patient_token",
    3,
    "Device numerics reduced to one charted value per parameter per patient-minute.",
)

VITALS_NEWS2 = Topic(
    "vitals.news2.v1",
    "vitals.news2.v1",
    "patient_token",
    3,
    "Processed observations with their NEWS2 score.",
)

ALERT_V1 = Topic(
    "alert.v1",
    "alert.v1",
    "patient_token",
    3,
    "Clinical alerts for nurses, paging and EHR consumers.",
)

LABS_RESULT = Topic(
    "labs.result.v1",
    "labs.result.v1",
    "patient_token",
    3,
    "Laboratory results, one record per specimen result set.",
)

SEPSIS_SCREEN = Topic(
    "sepsis.screen.v1",
    "sepsis.screen.v1",
    "patient_token",
    3,
    "Each patient's screened state (valid values and scores) after every input record.",
)

ALERT_V2 = Topic(
    "alert.v2",
    "alert.v2",
    "patient_token",
    3,
    "Alert lifecycle events (raise, escalate, resolve) for nurses, paging and EHR.",
)

ADT_EVENT = Topic(
    "adt.event.v1",
    "adt.event.v1",
    "patient_token",
    3,
    "Canonical admit/discharge/transfer events.",
)

CENSUS_UNIT = Topic(
    "census.unit.v1",
    "census.unit.v1",
    "facility_id",
    3,
    "Bed census per unit and facility at each minute it changed, with surge level.",
)

CENSUS_FLOW = Topic(
    "census.flow.v1",
    "census.flow.v1",
    "facility_id",
    3,
    "Arrivals, discharges, transfers and cancels per unit and facility per hour.",
)

CENSUS_EVENT = Topic(
    "census.event.v1",
    "census.event.v1",
    "patient_token",
    3,
    "Each accepted ADT event with what the bed census made of it.",
)

ALERT_RESPONSE = Topic(
    "alert.response.v1",
    "alert.response.v1",
    "patient_token",
    3,
    "Acknowledgements and sepsis-bundle actions reported back by paging and the EHR.",
)

SEPSIS_SCORE = Topic(
    "sepsis.score.v1",
    "sepsis.score.v1",
    "patient_token",
    3,
    "Model risk scores per screened state, champion and shadow challengers.",
)

MODEL_SCORE = Topic(
    "model.score.v1",
    "model.score.v1",
    "entity_token",
    3,
    "Catalog model scores (mortality, length of stay, readmission, …), champion and shadow.",
)

MODEL_AUDIT = Topic(
    "model.audit.v1",
    "model.audit.v1",
    "model_name",
    1,
    "Model lifecycle audit events: retrain triggers, gates, registrations, promotions, rollbacks.",
)

MODEL_MONITOR = Topic(
    "model.monitor.v1",
    "model.monitor.v1",
    "model_name",
    1,
    "Model monitor measurements per version and window: input, score and alert-rate drift, "
    "delayed performance; breaches flagged.",
)

LABEL_OUTCOME = Topic(
    "label.outcome.v1",
    "label.outcome.v1",
    "entity_token",
    3,
    "Outcomes as they become known (sepsis onset, death, readmission), for delayed performance.",
)

DEAD_LETTER = Topic(
    "deadletter.v1",
    "deadletter.v1",
    "source_topic",
    1,
    "Records that could not be processed, with the reason.",
)

QUALITY_EVENT = Topic(
    "quality.event.v1",
    "quality.event.v1",
    "source_topic",
    3,
    "Data-quality conditions per source, unit and facility, opened and resolved, with evidence "
    "and the quarantine action.",
)

TOPICS: dict[str, Topic] = {
    t.name: t
    for t in (
        VITALS_OBSERVATION,
        VITALS_DEVICE,
        VITALS_CHARTED,
        VITALS_NEWS2,
        ALERT_V1,
        LABS_RESULT,
        SEPSIS_SCREEN,
        ALERT_V2,
        ADT_EVENT,
        CENSUS_UNIT,
        CENSUS_FLOW,
        CENSUS_EVENT,
        ALERT_RESPONSE,
        SEPSIS_SCORE,
        MODEL_SCORE,
        DEAD_LETTER,
        MODEL_AUDIT,
        MODEL_MONITOR,
        LABEL_OUTCOME,
        QUALITY_EVENT,
    )
}


def topic(name: str) -> Topic:
    try:
        return TOPICS[name]
    except KeyError:
        raise KeyError(f"unknown topic {name!r}; known: {sorted(TOPICS)}") from None
