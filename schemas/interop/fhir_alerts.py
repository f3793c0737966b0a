"""Alert lifecycle events (`alert.v2`) → the FHIR R4 resources that represent them in the EHR.

Pure: one alert event (the decoded alert.v2 record) in, resources as JSON dicts out, each
validated with fhir.resources (its R4B models, as in schemas.interop.fhir_r4: R4B changed
nothing in Flag or RiskAssessment). `sinks/ehr_fhir.py` writes them with `PUT [base]/[type]/[id]`.

One alert (alert_id, raise → escalate → resolve) is one resource of each kind, updated in place:

- `Flag`, for every alert: status `active` on raise and escalate, `inactive` on resolve;
  period.start = opened_time, period.end = the resolve's event_time; category `clinical`; code =
  the rule (system `urn:wardflow:rule`) with a text naming rule, version and severity.
- `RiskAssessment`, for model alerts (rule `model_sepsis_risk`, score `sepsis_risk_pct`) too,
  written on the raise (`final`) and each escalation (`amended`), not on the resolve: prediction of
  outcome "sepsis" with probabilityDecimal = score_value / 100 and no qualitative risk (the model's
  alerts have one severity, `medium`, above its threshold whatever the probability: "moderate"
  beside 0.94 told the EHR less than the number); occurrenceDateTime = event_time (the hit's, "when
  the assessment was performed"); the evidence (the model, its threshold, the measured time) as a
  note. A resolve assesses nothing (the alert clears when no hit came for hours; its score is the
  latest hit's): written then, it said the risk was high as of the moment the alert cleared. The
  Flag says it is over.

No `DetectedIssue`: FHIR defines it as an issue with or between clinical *actions* for a patient
(drug-drug interaction, duplicate therapy, a contraindicated procedure), for decision support
around an order. A screening alert concerns no action; it is a warning about the patient, which
is what Flag is for. A DetectedIssue per rule alert would duplicate the Flag under a meaning EHRs
act on differently (order-entry checks).

Ids: a resource's id is derived from alert_id alone (`resource_id`), so every event of an alert
and every replay of the topic address the same resources: update-as-create is idempotent.
Each resource carries the alert's id as `identifier` (system `urn:wardflow:alert`) and the
sequence of the event that wrote it as an extension (`SEQUENCE_URL`); the writer compares
that with the incoming event (`is_newer`) so an older event never overwrites a newer one.

Subject: patients are known to wardflow only by their token (an HMAC pseudonym, schemas.phi), so
subject is a logical reference (references.html#logical): type Patient and the token as its
identifier (system `urn:wardflow:patient-token`), no literal `Patient/<id>`. A literal reference
to `Patient/<token>` names a resource no server has: a server that checks references on write
(HAPI JPA's default) refused every Flag. The EHR side maps tokens back to its patients (its
interface engine, holding the PHI key, tokenises its record numbers as the ingestion edges do,
`wardflow-token`, or Patient resources carry the token as an identifier, searchable as
`Flag?subject:identifier=urn:wardflow:patient-token|<token>`); wardflow never sees or sends an
MRN.
"""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

MODEL_RULE = "model_sepsis_risk"  # jobs.screening.scoring.MODEL_RULE (schemas sits below jobs)
MODEL_SCORE = "sepsis_risk_pct"
ALERT_SYSTEM = "urn:wardflow:alert"
RULE_SYSTEM = "urn:wardflow:rule"
MODEL_SYSTEM = "urn:wardflow:model"
PATIENT_TOKEN_SYSTEM = "urn:wardflow:patient-token"
SEQUENCE_URL = "urn:wardflow:fhir:alert-sequence"  # valueInteger: alert.v2 sequence
EVENT_URL = "urn:wardflow:fhir:alert-event"  # valueString: alert_event_id that wrote it
SEVERITY_URL = "urn:wardflow:fhir:alert-severity"  # valueCode: low | medium | high
RESOLVE_URL = "urn:wardflow:fhir:alert-resolve-reason"  # valueCode: condition_cleared | …
FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


class InvalidAlert(ValueError):
    """The event cannot be represented: a resource it maps to does not validate."""


def resource_id(alert_id: str) -> str:
    """The FHIR id of every resource of an alert: `wf-<alert_id>` when that is a valid id
    ([A-Za-z0-9-.]{1,64}), else `wfh-` + 40 hex characters of its SHA-256."""
    plain = f"wf-{alert_id}"
    if _ID.match(plain):
        return plain
    return f"wfh-{hashlib.sha256(alert_id.encode()).hexdigest()[:40]}"


def is_model_alert(event: dict[str, Any]) -> bool:
    return bool(event["rule_id"] == MODEL_RULE or event["score_name"] == MODEL_SCORE)


def fhir_time(t: datetime) -> str:
    """An instant with milliseconds in UTC, as the Avro timestamp-millis it came from."""
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def resources(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The resources for one alert event, each validated: [Flag], or [Flag, RiskAssessment] for
    a model alert's raise or escalation. Raises InvalidAlert when one does not validate."""
    out = [flag(event)]
    if is_model_alert(event) and event["action"] != "resolve":
        out.append(risk_assessment(event))
    for r in out:
        validate(r)
    return out


def validate(resource: dict[str, Any]) -> None:
    kind = resource["resourceType"]
    try:
        get_fhir_model_class(kind).model_validate(resource)
    except ValidationError as exc:  # where and what, never the input values
        where = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise InvalidAlert(f"{kind} does not validate: {where}"[:500]) from exc
    except Exception as exc:  # fhir_core's own errors
        raise InvalidAlert(f"{kind} does not validate: {type(exc).__name__}: {exc}"[:500]) from exc


def _extensions(event: dict[str, Any]) -> list[dict[str, Any]]:
    ext: list[dict[str, Any]] = [
        {"url": SEQUENCE_URL, "valueInteger": event["sequence"]},
        {"url": EVENT_URL, "valueString": event["alert_event_id"]},
        {"url": SEVERITY_URL, "valueCode": event["severity"]},
    ]
    if event.get("resolve_reason"):
        ext.append({"url": RESOLVE_URL, "valueCode": event["resolve_reason"]})
    return ext


def _common(event: dict[str, Any], kind: str) -> dict[str, Any]:
    return {
        "resourceType": kind,
        "id": resource_id(event["alert_id"]),
        "extension": _extensions(event),
        "identifier": [{"system": ALERT_SYSTEM, "value": event["alert_id"]}],
    }


def _subject(event: dict[str, Any]) -> dict[str, Any]:
    token = event["patient_token"]
    if not _ID.match(token):
        raise InvalidAlert("patient_token is not usable as a FHIR id ([A-Za-z0-9-.]{1,64})")
    return {"type": "Patient", "identifier": {"system": PATIENT_TOKEN_SYSTEM, "value": token}}


def _rule_text(event: dict[str, Any]) -> str:
    kind = "sepsis risk model" if is_model_alert(event) else "rule"
    return (
        f"wardflow {kind} {event['rule_id']} (version {event['rule_version']}): "
        f"{event['severity']} severity, {event['score_name']} {event['score_value']}"
    )


def flag(event: dict[str, Any]) -> dict[str, Any]:
    """The alert as a Flag: active while open, inactive once resolved."""
    resolved = event["action"] == "resolve"
    period = {"start": fhir_time(event["opened_time"])}
    if resolved:
        period["end"] = fhir_time(event["event_time"])
    return {
        **_common(event, "Flag"),
        "status": "inactive" if resolved else "active",
        "category": [
            {
                "coding": [{"system": FLAG_CATEGORY, "code": "clinical", "display": "Clinical"}],
                "text": "Clinical",
            }
        ],
        "code": {
            "coding": [
                {
                    "system": RULE_SYSTEM,
                    "code": event["rule_id"],
                    "display": f"{event['rule_id']} {event['rule_version']}",
                }
            ],
            "text": _rule_text(event),
        },
        "subject": _subject(event),
        "period": period,
        "author": {"display": f"wardflow sepsis screening, {event['facility_id']}"},
    }


def evidence_text(evidence_json: str) -> str:
    """The triggering values, one per parameter: `name: value (key value, …)`."""
    try:
        evidence = json.loads(evidence_json)
    except ValueError:
        return evidence_json
    if not isinstance(evidence, dict):
        return evidence_json
    parts = []
    for name in sorted(evidence):
        item = evidence[name]
        if isinstance(item, dict):
            rest = ", ".join(f"{k} {item[k]}" for k in sorted(item) if k != "value")
            parts.append(f"{name}: {item.get('value')}" + (f" ({rest})" if rest else ""))
        else:
            parts.append(f"{name}: {item}")
    return "; ".join(parts)


def risk_assessment(event: dict[str, Any]) -> dict[str, Any]:
    """A model alert's risk as a RiskAssessment: the latest score, amended at every event."""
    status_note = {
        "raise": "Alert raised",
        "escalate": f"Alert escalated to {event['severity']}",
    }[event["action"]]
    return {
        **_common(event, "RiskAssessment"),
        "status": "final" if event["sequence"] <= 1 else "amended",
        "code": {"text": "Sepsis risk"},
        "method": {
            "coding": [{"system": MODEL_SYSTEM, "code": event["rule_version"]}],
            "text": f"wardflow sepsis risk model, version {event['rule_version']}",
        },
        "subject": _subject(event),
        "occurrenceDateTime": fhir_time(event["event_time"]),
        "performer": {"display": "wardflow sepsis screening"},
        "prediction": [
            {
                "outcome": {"text": "sepsis"},
                "probabilityDecimal": event["score_value"] / 100,
            }
        ],
        "note": [
            {"text": f"{status_note} at {fhir_time(event['event_time'])}."},
            {"text": f"Evidence: {evidence_text(event['evidence_json'])}"},
        ],
    }


def stored_sequence(resource: dict[str, Any] | None) -> int | None:
    """The alert.v2 sequence a stored resource was written from (None: none recorded)."""
    if not resource:
        return None
    for ext in resource.get("extension") or []:
        if isinstance(ext, dict) and ext.get("url") == SEQUENCE_URL:
            value = ext.get("valueInteger")
            return value if isinstance(value, int) else None
    return None


def is_newer(event: dict[str, Any], stored: dict[str, Any] | None) -> bool:
    """Whether `event` should overwrite the stored resource: there is none, it records no
    sequence (not written by wardflow), or an older one. An equal sequence is the same event
    again (a replay): nothing to write."""
    seq = stored_sequence(stored)
    return seq is None or event["sequence"] > seq
