"""Outcome labels (`label.outcome.v1`) as the replay feeds publish them: one record per entity
and outcome, keyed by patient token, Kafka timestamp = `known_at` (when the outcome became
known), validated against the topic's schema before anything is produced.

The entity and its token are those the scores of the same models carry (jobs/model_scoring.py):
a stay model scores `entity='stay'` with the stay's `patient_token`, a discharge model
`entity='encounter'` with the `encounter_token`; the model monitor joins on them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from jobs.feeds.publisher import Encoded, Publisher
from jobs.feeds.replay import Pacer, produce_raw
from schemas import codec, load_schema, topics

TOPIC = topics.LABEL_OUTCOME


def outcome_label(
    *,
    patient_token: str,
    facility_id: str,
    unit_id: str | None,
    entity: str,
    entity_token: str,
    outcome: str,
    occurred: bool,
    outcome_time: datetime | None,
    known_at: datetime,
) -> dict[str, Any]:
    """One label record, fields in schema order; `outcome_lead_h` = hours from outcome_time to
    known_at (null without outcome_time), `label_id` = entity token and outcome."""
    lead = None if outcome_time is None else (known_at - outcome_time).total_seconds() / 3600.0
    return {
        "label_id": f"{entity_token}:{outcome}",
        "patient_token": patient_token,
        "facility_id": facility_id,
        "unit_id": unit_id,
        "entity": entity,
        "entity_token": entity_token,
        "outcome": outcome,
        "occurred": occurred,
        "outcome_time": outcome_time,
        "outcome_lead_h": lead,
        "known_at": known_at,
    }


def encode(records: list[dict[str, Any]]) -> list[Encoded] | codec.Rejection:
    """Validated Avro values in `known_at` order, or the first record's rejection."""
    schema = load_schema(TOPIC.name)
    out = []
    for rec in sorted(records, key=lambda r: (r["known_at"], r["entity_token"])):
        bad = codec.validate(schema, rec)
        if bad is not None:
            return codec.Rejection(bad.reason_code, f"{TOPIC.name}: {bad.reason}")
        out.append((TOPIC.name, rec, codec.encode(schema, rec)))
    return out


def send(pub: Publisher, encoded: list[Encoded], pacer: Pacer | None = None) -> None:
    """Produce to `pub.prefix + label.outcome.v1`, Kafka timestamp = known_at (paced on it)."""
    for topic, rec, value in encoded:
        if pacer is not None:
            pacer.wait_for(rec["known_at"])
        ts = codec.epoch_ms(rec["known_at"])
        produce_raw(pub.producer, pub.prefix + topic, rec["patient_token"].encode(), value, ts)
