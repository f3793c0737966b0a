"""Alert lifecycle events → FHIR R4 Flag and RiskAssessment (schemas.interop.fhir_alerts)."""

from __future__ import annotations

import hashlib
import json
import re
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fhir.resources.R4B import get_fhir_model_class

from schemas import codec, topics
from schemas.interop import fhir_alerts
from schemas.interop.fhir_alerts import InvalidAlert, is_newer, resource_id, resources

OPENED = datetime(2026, 3, 1, 8, 0, 0, 123000, tzinfo=UTC)
TOKEN = "4f1c2a9be07d5c3318aa6b02"
FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")


def alert(
    action: str = "raise",
    sequence: int = 1,
    *,
    rule_id: str = "news2_sustained",
    alert_id: str | None = None,
    patient_token: str = TOKEN,
    **over: Any,
) -> dict[str, Any]:
    """One alert.v2 record as the screening job writes it (valid against the schema)."""
    model = rule_id == fhir_alerts.MODEL_RULE
    aid = alert_id or hashlib.md5(f"{rule_id}|{patient_token}|{OPENED}".encode()).hexdigest()
    rec: dict[str, Any] = {
        "alert_event_id": hashlib.md5(f"{aid}|{sequence}".encode()).hexdigest(),
        "alert_id": aid,
        "action": action,
        "sequence": sequence,
        "rule_id": rule_id,
        "rule_version": "m-2026.02" if model else "2",
        "severity": "high" if action == "escalate" else "medium",
        "patient_token": patient_token,
        "facility_id": "GH",
        "unit_id": "ICU",
        "opened_time": OPENED,
        "event_time": OPENED + timedelta(minutes=30 * (sequence - 1)),
        "resolve_reason": "condition_cleared" if action == "resolve" else None,
        "hit_count": sequence,
        "score_name": "sepsis_risk_pct" if model else "news2",
        "score_value": 37 if model else 7,
        "first_record_id": "r1",
        "last_record_id": f"r{sequence}",
        "evidence_json": json.dumps(
            {"sepsis_risk": {"value": 0.37, "threshold": 0.3, "measured_time": "2026-03-01"}}
            if model
            else {"rr": {"value": 26, "measured_time": "2026-03-01T08:00:00.000Z"}}
        ),
    }
    rec.update(over)
    assert codec.validate(topics.ALERT_V2.schema, rec) is None
    return rec


def lifecycle(rule_id: str = "news2_sustained") -> list[dict[str, Any]]:
    return [
        alert("raise", 1, rule_id=rule_id),
        alert("escalate", 2, rule_id=rule_id),
        alert("resolve", 3, rule_id=rule_id),
    ]


def by_type(event: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["resourceType"]: r for r in resources(event)}


def ext(resource: dict[str, Any], url: str) -> Any:
    [e] = [e for e in resource["extension"] if e["url"] == url]
    return next(v for k, v in e.items() if k.startswith("value"))


def test_every_resource_of_every_step_validates_with_fhir_resources() -> None:
    for rule in ("news2_sustained", fhir_alerts.MODEL_RULE):
        for event in lifecycle(rule):
            for r in resources(event):
                parsed = get_fhir_model_class(r["resourceType"]).model_validate(r)
                assert parsed.id == r["id"]


def test_a_rule_alert_is_one_flag_and_a_model_alert_also_a_risk_assessment() -> None:
    assert [r["resourceType"] for r in resources(alert())] == ["Flag"]
    model = alert(rule_id=fhir_alerts.MODEL_RULE)
    assert [r["resourceType"] for r in resources(model)] == ["Flag", "RiskAssessment"]


def test_the_flag_is_active_while_open_and_inactive_with_an_end_once_resolved() -> None:
    raised, escalated, resolved = (by_type(e)["Flag"] for e in lifecycle())
    assert raised["status"] == escalated["status"] == "active"
    assert raised["period"] == {"start": "2026-03-01T08:00:00.123Z"}
    assert "end" not in escalated["period"]
    assert resolved["status"] == "inactive"
    assert resolved["period"] == {
        "start": "2026-03-01T08:00:00.123Z",
        "end": "2026-03-01T09:00:00.123Z",
    }
    assert ext(resolved, fhir_alerts.RESOLVE_URL) == "condition_cleared"


def test_the_flag_names_rule_and_severity_and_carries_the_alert_id_and_sequence() -> None:
    event = alert("escalate", 2)
    flag = by_type(event)["Flag"]
    assert flag["code"]["coding"][0] == {
        "system": fhir_alerts.RULE_SYSTEM,
        "code": "news2_sustained",
        "display": "news2_sustained 2",
    }
    assert "news2_sustained" in flag["code"]["text"] and "high severity" in flag["code"]["text"]
    assert flag["category"][0]["coding"][0]["code"] == "clinical"
    assert flag["identifier"] == [{"system": "urn:wardflow:alert", "value": event["alert_id"]}]
    assert ext(flag, fhir_alerts.SEQUENCE_URL) == 2
    assert ext(flag, fhir_alerts.SEVERITY_URL) == "high"


def test_the_subject_is_the_patient_token_as_a_logical_reference() -> None:
    """No literal Patient/<token>: no server has that resource, and one that checks references
    on write refuses it (references.html#logical)."""
    flag = by_type(alert())["Flag"]
    assert flag["subject"] == {
        "type": "Patient",
        "identifier": {"system": "urn:wardflow:patient-token", "value": TOKEN},
    }


def test_a_token_that_is_no_fhir_id_is_refused_rather_than_sent_mangled() -> None:
    with pytest.raises(InvalidAlert, match="patient_token"):
        resources(alert(patient_token="not/an id"))


def test_the_risk_assessment_holds_the_risk_as_a_probability_and_is_amended_after_the_raise() -> (
    None
):
    raised, escalated = (
        by_type(e)["RiskAssessment"] for e in lifecycle(fhir_alerts.MODEL_RULE)[:2]
    )
    assert raised["status"] == "final"
    assert escalated["status"] == "amended"
    [prediction] = raised["prediction"]
    assert prediction["outcome"] == {"text": "sepsis"}
    assert prediction["probabilityDecimal"] == pytest.approx(0.37)
    # no qualitative risk: the model's alerts are all `medium` (above its threshold), whatever
    # the probability, which "moderate" beside 0.94 would contradict
    assert "qualitativeRisk" not in prediction
    assert raised["occurrenceDateTime"] == "2026-03-01T08:00:00.123Z"
    assert escalated["occurrenceDateTime"] == "2026-03-01T08:30:00.123Z"
    assert raised["method"]["coding"][0]["code"] == "m-2026.02"
    notes = " ".join(n["text"] for n in raised["note"])
    assert "sepsis_risk: 0.37" in notes and "threshold 0.3" in notes
    assert "escalated to high" in escalated["note"][0]["text"]


def test_a_resolve_writes_the_flag_only_as_it_assesses_no_risk() -> None:
    """RiskAssessment.occurrence is when the assessment was performed: a resolve (no hit for
    hours) rewritten as one said the risk was high at the moment the alert cleared."""
    resolved = lifecycle(fhir_alerts.MODEL_RULE)[-1]
    assert [r["resourceType"] for r in resources(resolved)] == ["Flag"]
    assert by_type(resolved)["Flag"]["status"] == "inactive"


def test_ids_are_stable_across_the_steps_of_an_alert_and_differ_between_alerts() -> None:
    ids = {
        (r["resourceType"], r["id"])
        for e in lifecycle(fhir_alerts.MODEL_RULE)
        for r in resources(e)
    }
    assert len(ids) == 2  # one Flag, one RiskAssessment, updated in place
    other = alert(alert_id="another-alert")
    assert by_type(other)["Flag"]["id"] != by_type(alert())["Flag"]["id"]
    assert resources(alert()) == resources(alert())  # a replay maps to the same resources


def test_an_alert_id_that_cannot_be_a_fhir_id_is_hashed_into_one() -> None:
    assert resource_id("0f" * 16) == "wf-" + "0f" * 16
    for odd in ("a/b c", "x" * 80, "ünïcode"):
        rid = resource_id(odd)
        assert FHIR_ID.match(rid) and rid.startswith("wfh-")
        assert rid == resource_id(odd)
    assert resource_id("a/b") != resource_id("a/c")


def test_an_event_overwrites_only_an_older_sequence() -> None:
    stored = by_type(alert("escalate", 2))["Flag"]
    assert is_newer(alert("resolve", 3), stored)
    assert not is_newer(alert("escalate", 2), stored)  # the same event again: a replay
    assert not is_newer(alert("raise", 1), stored)  # late: never overwrite a newer one
    assert is_newer(alert("raise", 1), None)  # nothing stored yet
    foreign = {k: v for k, v in stored.items() if k != "extension"}
    assert is_newer(alert("raise", 1), foreign)  # written by someone else: no sequence


def test_the_sequence_is_read_back_from_a_resource_as_the_server_returns_it() -> None:
    stored = by_type(alert("escalate", 2))["Flag"]
    served = {**stored, "meta": {"versionId": "4", "lastUpdated": "2026-03-01T08:31:00Z"}}
    served["extension"] = list(reversed(served["extension"]))
    assert fhir_alerts.stored_sequence(served) == 2
    assert fhir_alerts.stored_sequence(None) is None


def test_evidence_that_is_not_json_is_kept_as_text() -> None:
    assert fhir_alerts.evidence_text("rr 26") == "rr 26"
    assert fhir_alerts.evidence_text('{"a": 1, "b": {"value": 2}}') == "a: 1; b: 2"
