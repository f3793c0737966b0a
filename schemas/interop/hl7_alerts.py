"""Alert lifecycle events (`alert.v2`) → HL7 v2.5.1 ORU^R01 messages for the EHR, and the ACK
it returns.

Pure: built and parsed with hl7apy; `sinks/ehr_hl7.py` sends them over MLLP. One message per
alert event:

    MSH  WARDFLOW → EHR at the facility; MSH-7 = the event's time, MSH-10 = `control_id`
    PID  PID-3 = the patient token, identifier type ANON (HL7 table 0203: anonymous identifier);
         the EHR maps tokens back to its patients (see schemas.interop.fhir_alerts); PID-5, which
         v2.5.1 requires, holds no name, only name type S (table 0200: coded pseudo-name)
    PV1  the unit and facility
    OBR  OBR-3 (filler order number) = the alert id, so every event of an alert is one order;
         OBR-4 (universal service id) = the rule; OBR-25 F on the raise, C (correction) after
    OBX  action, severity, score (NM, % for the model's risk), alert id, sequence, hit count,
         resolve reason (on a resolve), evidence (TX)

Everything in the message comes from the event, MSH-7 included, so a resend or a replay of the
topic produces the same bytes and the same MSH-10: the receiver recognises a duplicate by it.
Text values are escaped with the HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message

from schemas.interop import hl7v2
from schemas.interop.fhir_alerts import is_model_alert

VERSION = "2.5.1"
SENDING_APP = "WARDFLOW"
RECEIVING_APP = "EHR"
OBS_SYSTEM = "99WF"  # a local coding system (HL7 table 0396: 99zzz)
ACCEPTED = {"AA", "CA"}
RETRY = {"AE", "CE"}
REJECTED = {"AR", "CR"}
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))


def control_id(alert_event_id: str) -> str:
    """MSH-10 for an event: `WF` + 18 hex characters of SHA-256(alert_event_id), 20 characters
    (the field's length in v2.5.1); the same event always gets the same id."""
    return "WF" + hashlib.sha256(alert_event_id.encode()).hexdigest()[:18].upper()


def escape(text: str) -> str:
    for raw, esc in _ESCAPES:
        text = text.replace(raw, esc)
    return text.replace("\r\n", "\\.br\\").replace("\n", "\\.br\\").replace("\r", "\\.br\\")


def unescape(text: str) -> str:
    text = text.replace("\\.br\\", "\n")
    for raw, esc in reversed(_ESCAPES):
        text = text.replace(esc, raw)
    return text


def hl7_ts(t: datetime) -> str:
    """DTM with milliseconds and the UTC offset: YYYYMMDDHHMMSS.SSS+0000."""
    return t.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


def _observations(event: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(value type, code, text, value, units) per OBX."""
    unit = "%" if is_model_alert(event) else ""
    obs = [
        ("ST", "ALERT_ACTION", "Alert action", event["action"], ""),
        ("ST", "ALERT_SEVERITY", "Alert severity", event["severity"], ""),
        ("NM", event["score_name"].upper(), event["score_name"], str(event["score_value"]), unit),
        ("ST", "ALERT_ID", "Alert id", event["alert_id"], ""),
        ("NM", "ALERT_SEQUENCE", "Alert event sequence", str(event["sequence"]), ""),
        ("NM", "ALERT_HITS", "Rule hits in the alert", str(event["hit_count"]), ""),
    ]
    if event.get("resolve_reason"):
        obs.append(("ST", "ALERT_RESOLVE_REASON", "Resolve reason", event["resolve_reason"], ""))
    obs.append(("TX", "ALERT_EVIDENCE", "Evidence", event["evidence_json"], ""))
    return obs


def oru(event: dict[str, Any]) -> Message:
    """The ORU^R01 message for one alert event, as an hl7apy Message."""
    msg = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    when = hl7_ts(event["event_time"])
    status = "F" if event["sequence"] <= 1 else "C"
    facility = escape(event["facility_id"])
    msg.msh.msh_3 = SENDING_APP
    msg.msh.msh_4 = facility
    msg.msh.msh_5 = RECEIVING_APP
    msg.msh.msh_6 = facility
    msg.msh.msh_7 = when
    msg.msh.msh_9 = "ORU^R01^ORU_R01"
    msg.msh.msh_10 = control_id(event["alert_event_id"])
    msg.msh.msh_11 = "P"
    msg.msh.msh_12 = VERSION
    result = msg.add_group("ORU_R01_PATIENT_RESULT")
    patient = result.add_group("ORU_R01_PATIENT")
    patient.pid.pid_1 = "1"
    patient.pid.pid_3 = f"{escape(event['patient_token'])}^^^{SENDING_APP}^ANON"
    patient.pid.pid_5 = "^^^^^^S"  # required; name type S (table 0200): a pseudonym, no name
    visit = patient.add_group("ORU_R01_VISIT")
    visit.pv1.pv1_1 = "1"
    visit.pv1.pv1_2 = "I"
    visit.pv1.pv1_3 = f"{escape(event['unit_id'])}^^^{facility}"
    order = result.add_group("ORU_R01_ORDER_OBSERVATION")
    order.obr.obr_1 = "1"
    order.obr.obr_3 = f"{escape(event['alert_id'])}^{SENDING_APP}"
    rule = escape(event["rule_id"])
    order.obr.obr_4 = f"{rule}^{rule} {escape(event['rule_version'])}^{OBS_SYSTEM}"
    order.obr.obr_7 = hl7_ts(event["opened_time"])
    order.obr.obr_22 = when
    order.obr.obr_25 = status
    for i, (kind, code, text, value, units) in enumerate(_observations(event), start=1):
        obx = order.add_group("ORU_R01_OBSERVATION").obx
        obx.obx_1 = str(i)
        obx.obx_2 = kind
        obx.obx_3 = f"{code}^{escape(text)}^{OBS_SYSTEM}"
        obx.obx_5 = escape(value)
        if units:
            obx.obx_6 = f"{escape(units)}^{escape(units)}^UCUM"
        obx.obx_11 = status
        obx.obx_14 = when
    return msg


def er7(event: dict[str, Any]) -> str:
    """The ORU^R01 as ER7 text, segments separated by CR (no trailing CR)."""
    text: str = oru(event).to_er7()
    return text


@dataclass(frozen=True)
class Ack:
    code: str  # MSA-1: AA/CA accepted, AE/CE error (resend), AR/CR rejected
    control_id: str  # MSA-2: MSH-10 of the message acknowledged
    text: str  # MSA-3 and the ERR segments' diagnostics, if any

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED

    @property
    def retry(self) -> bool:
        return self.code in RETRY

    @property
    def rejected(self) -> bool:
        return self.code in REJECTED


def parse_ack(text: str) -> Ack:
    """MSA-1, MSA-2 and the reason of an ACK, parsed with hl7apy. Raises ValueError when the
    reply is not an ACK (no MSA segment or no MSA-1)."""
    msg = hl7v2.parse(text)
    if isinstance(msg, hl7v2.Refused):
        raise ValueError(f"the reply does not parse: {msg.reason}")
    segments = {s.name: s for s in reversed(msg.children)}  # the first of each name
    msa = segments.get("MSA")
    if msa is None or not len(msa.msa_1):
        raise ValueError("the reply has no MSA segment with an acknowledgment code")
    code = msa.msa_1.to_er7().strip()
    control = msa.msa_2.to_er7().strip() if len(msa.msa_2) else ""
    reasons = [unescape(msa.msa_3.to_er7())] if len(msa.msa_3) else []
    for seg in msg.children:
        if seg.name != "ERR":
            continue
        for name in ("err_3", "err_7", "err_8"):  # error code, diagnostics, user message
            field = getattr(seg, name, None)
            if field is not None and len(field):
                reasons.append(unescape(field.to_er7()))
    return Ack(code, control, "; ".join(r for r in reasons if r))
