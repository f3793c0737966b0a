"""Alert lifecycle events (`alert.v2`) → HL7 v2.5.1 ORU^R01 messages for the EHR, and the ACK
it returns.

Pure: built and parsed with hl7apy; `sinks/ehr_hl7.py` sends them over MLLP. One message per
alert event:

    MSH  WARDFLOW → the receiving application and facility (`Receiver`: the deployment's
         settings, default EHR at the alert's facility); MSH-7 = the event's time, MSH-10 =
         `control_id`
    PID  PID-3 = the patient token, identifier type ANON (HL7 table 0203: anonymous identifier);
         the EHR maps tokens back to its patients (see schemas.interop.fhir_alerts); PID-5, which
         v2.5.1 requires, holds no name, only name type S (table 0200: coded pseudo-name)
    PV1  the unit and facility
    OBR  OBR-3 (filler order number) = `filler_order_number` of the alert id, so every event of
         an alert is one order; OBR-4 (universal service id) = the rule; OBR-25 F on the raise,
         C (correction) after
    OBX  action, severity, score (NM, % for the model's risk; not on a resolve), alert id,
         sequence, hit count, resolve reason (on a resolve), evidence (TX); OBX-11 F where the
         observation is sent for the first time (every one on the raise, the resolve reason on
         the resolve), C (a correction, table 0085: it "replaces a final result") where an
         earlier event of the alert sent it

A resolve reports no score: the score is the latest hit's, measured then, and the resolve is
no new measurement (an alert clears when no hit came for hours); timed at the resolve (OBX-14,
"the physiologically relevant date-time", v2.5.1 §7.4.2.14) it said the patient's risk was high
at the very moment the alert cleared. The receiver keeps the score as last sent, at its time.

Everything in the message comes from the event, MSH-7 included, so a resend or a replay of the
topic produces the same bytes and the same MSH-10: the receiver recognises a duplicate by it.
Every segment ends with a CR, the last one too (v2.5.1 §2.5.1, §2.6). Text values are escaped
with the HL7 escape sequences (\\F\\ \\S\\ \\T\\ \\R\\ \\E\\); a line break in a value becomes a
space (the fields are ST, TX, PL and HD: `\\.br\\` is defined for FT only, §2.7.6). A message
holding any character outside ASCII (a unit named "Intensivstation Süd") declares its character
set, MSH-18 = `UNICODE UTF-8` (table 0211), as it is sent in UTF-8; MSH-18 empty means ASCII
(§2.15.9.18), so an ASCII message leaves it empty.

The ACK (`parse_ack`) is read in the receiver's version: the error of an ERR segment is ERR-1
(error code and location) before v2.5, ERR-3 (code), ERR-7 (diagnostics) and ERR-8 (user
message) from v2.5 on, and ERR-1 where an ERR has none of those (v2.5.1 keeps ERR-1 "for
backward compatibility", §2.15.5.1, and engines still fill only it).
"""

from __future__ import annotations

import base64
import hashlib
import re
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
CHARSET = "UNICODE UTF-8"  # MSH-18 (table 0211) of a message holding any non-ASCII character
ACCEPTED = {"AA", "CA"}
ERROR = {"AE"}
REJECTED = {"AR", "CR", "CE"}
PROCESSING_IDS = frozenset({"P", "T", "D"})  # MSH-11.1, table 0103
_ESCAPES = (("\\", "\\E\\"), ("|", "\\F\\"), ("^", "\\S\\"), ("&", "\\T\\"), ("~", "\\R\\"))
_UNESCAPES = {"F": "|", "S": "^", "T": "&", "R": "~", "E": "\\", ".br": "\n"}
_ESCAPE_SEQUENCE = re.compile(r"\\(F|S|T|R|E|\.br|X[0-9A-Fa-f]+)\\")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class Receiver:
    """Who the messages are for: MSH-5 (receiving application) and MSH-6 (receiving facility;
    empty: the alert's facility), as the receiving interface engine routes and checks them
    (settings `ehr_hl7_receiving_application`, `ehr_hl7_receiving_facility`), each an HD
    whose components are separated by `^` (`EPIC^2.16.840.1.113883.3.1^ISO`); and MSH-11, the
    processing id (table 0103: P production, T training, D debugging; setting
    `ehr_hl7_processing_id`), which a test or training EHR checks (a test system answers AR to
    every production message, and the feed stopped)."""

    application: str = RECEIVING_APP
    facility: str = ""
    processing_id: str = "P"

    def __post_init__(self) -> None:
        if self.processing_id not in PROCESSING_IDS:
            raise ValueError(
                f"MSH-11 processing id {self.processing_id!r} is none of {sorted(PROCESSING_IDS)}"
            )


DEFAULT_RECEIVER = Receiver()


def filler_order_number(alert_id: str) -> str:
    """OBR-3 for every event of an alert: 12 base32 characters of SHA-256(alert_id) (60 bits)
    with the namespace `WARDFLOW`, 21 characters, as OBR-3 (EI) is 22 long in v2.5.1 (the
    alert id itself, 32 characters, is in its own OBX)."""
    digest = base64.b32encode(hashlib.sha256(alert_id.encode()).digest()).decode()
    return f"{digest[:12]}^{SENDING_APP}"


def control_id(alert_event_id: str) -> str:
    """MSH-10 for an event: `WF` + 18 hex characters of SHA-256(alert_event_id), 20 characters
    (the field's length in v2.5.1); the same event always gets the same id."""
    return "WF" + hashlib.sha256(alert_event_id.encode()).hexdigest()[:18].upper()


def escape(text: str) -> str:
    """A value for an ST/TX/PL/HD field: the delimiters escaped, a line break (CR, LF or CRLF)
    one space (a CR would end the segment; `\\.br\\` is for FT fields only, v2.5.1 §2.7.6)."""
    for raw, esc in _ESCAPES:
        text = text.replace(raw, esc)
    return _LINE_BREAK.sub(" ", text)


def _unescaped(m: re.Match[str]) -> str:
    seq = m.group(1)
    if seq.startswith("X"):  # hexadecimal data
        try:
            return bytes.fromhex(seq[1:]).decode("utf-8", "replace")
        except ValueError:  # an odd number of hex digits: left as it came
            return m.group(0)
    return _UNESCAPES[seq]


def unescape(text: str) -> str:
    """The text of an escaped value, read in one pass: `\\E\\.br\\E\\` is `\\.br\\`, not a break."""
    return _ESCAPE_SEQUENCE.sub(_unescaped, text)


def hl7_ts(t: datetime) -> str:
    """DTM with milliseconds and the UTC offset: YYYYMMDDHHMMSS.SSS+0000."""
    return t.astimezone(UTC).strftime("%Y%m%d%H%M%S.%f")[:-3] + "+0000"


RESOLVE_REASON = "ALERT_RESOLVE_REASON"


def _observations(event: dict[str, Any]) -> list[tuple[str, str, str, str, str]]:
    """(value type, code, text, value, units) per OBX; a resolve's without the score."""
    unit = "%" if is_model_alert(event) else ""
    score = ("NM", event["score_name"].upper(), event["score_name"], str(event["score_value"]))
    obs = [
        ("ST", "ALERT_ACTION", "Alert action", event["action"], ""),
        ("ST", "ALERT_SEVERITY", "Alert severity", event["severity"], ""),
        *([] if event["action"] == "resolve" else [(*score, unit)]),
        ("ST", "ALERT_ID", "Alert id", event["alert_id"], ""),
        ("NM", "ALERT_SEQUENCE", "Alert event sequence", str(event["sequence"]), ""),
        ("NM", "ALERT_HITS", "Rule hits in the alert", str(event["hit_count"]), ""),
    ]
    if event.get("resolve_reason"):
        obs.append(("ST", RESOLVE_REASON, "Resolve reason", event["resolve_reason"], ""))
    obs.append(("TX", "ALERT_EVIDENCE", "Evidence", event["evidence_json"], ""))
    return obs


def _hd(value: str) -> str:
    """An HD field as configured, `namespace^universal id^type` (an OID with its type, as
    engines route on): its components kept, each escaped."""
    return "^".join(escape(part) for part in value.split("^"))


def oru(event: dict[str, Any], receiver: Receiver = DEFAULT_RECEIVER) -> Message:
    """The ORU^R01 message for one alert event, as an hl7apy Message."""
    msg = Message("ORU_R01", version=VERSION, validation_level=VALIDATION_LEVEL.TOLERANT)
    when = hl7_ts(event["event_time"])
    status = "F" if event["sequence"] <= 1 else "C"
    facility = escape(event["facility_id"])
    msg.msh.msh_3 = SENDING_APP
    msg.msh.msh_4 = facility
    msg.msh.msh_5 = _hd(receiver.application)
    msg.msh.msh_6 = _hd(receiver.facility) or facility
    msg.msh.msh_7 = when
    msg.msh.msh_9 = "ORU^R01^ORU_R01"
    msg.msh.msh_10 = control_id(event["alert_event_id"])
    msg.msh.msh_11 = receiver.processing_id
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
    order.obr.obr_3 = filler_order_number(event["alert_id"])
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
        obx.obx_11 = "F" if code == RESOLVE_REASON else status  # sent first on the resolve
        obx.obx_14 = when
    if not msg.to_er7().isascii():  # sent as UTF-8: say so; empty MSH-18 means ASCII
        msg.msh.msh_18 = CHARSET
    return msg


def er7(event: dict[str, Any], receiver: Receiver = DEFAULT_RECEIVER) -> str:
    """The ORU^R01 as ER7 text, every segment terminated by CR, the last one included."""
    text: str = oru(event, receiver).to_er7()
    return text + "\r"


@dataclass(frozen=True)
class Ack:
    """MSA-1 (table 0008), as v2.5.1 §2.9.2.1 (original mode) and §2.9.3.1 (enhanced mode's
    accept acknowledgment) define it:

    - AA/CA, accepted: the receiver took the message (CA: committed to safe storage);
    - AE, application error: the receiving application found an error in the message's
      content; the same bytes sent again meet the same error (sinks.ehr_hl7 dead-letters it);
    - AR/CR, application (commit) reject: refused for a reason unrelated to the content (the
      receiver's system down, an internal error; or MSH-9, -11 or -12 not accepted, which
      would fail every message); a resend may pass (sinks.ehr_hl7 resends, then stops);
    - CE, commit error: the receiver's message service could not take the message for a
      reason other than those (e.g. a sequence number); its content was never read, so it is
      sent again as a reject is (dead-lettering it lost the alert to a queue full for a
      moment).
    """

    code: str  # MSA-1
    control_id: str  # MSA-2: MSH-10 of the message acknowledged
    text: str  # MSA-3 and the ERR segments' errors and diagnostics, if any

    @property
    def accepted(self) -> bool:
        return self.code in ACCEPTED

    @property
    def error(self) -> bool:
        """AE: an error in the message's content."""
        return self.code in ERROR

    @property
    def rejected(self) -> bool:
        """AR/CR/CE: not taken for a reason unrelated to the content: a resend may pass."""
        return self.code in REJECTED


def _fields(msg: Any, segment: Any, *names: str) -> list[str]:
    """The values of the fields `names` (repetitions included) that `segment` holds, unescaped
    in `msg`'s own encoding characters (hl7v2.element_text: a pre-2.7 ACK that declares the
    truncation character, `^~\\&#`, writes it `\\P\\` and means `#`). A field the message's
    version does not define is absent, never an error (hl7apy raises ChildNotFound for
    `segment.err_3` of a v2.3 ERR, which has ERR-1 only)."""
    wanted = {n.upper() for n in names}
    return [
        hl7v2.element_text(f, msg)
        for f in segment.children
        if f.name in wanted and f.to_er7().strip(" ^&~")
    ]


def _version(msg: Any) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in str(msg.version).split("."))
    except ValueError:
        return (2, 5)  # hl7v2.parse reads a message without a known version as v2.5


def parse_ack(text: str) -> Ack:
    """MSA-1, MSA-2 and the reason of an ACK, parsed with hl7apy. Raises ValueError, and only
    ValueError, when the reply is not an ACK (does not parse, no MSA segment or no MSA-1).

    The reason: MSA-3; before v2.5 also MSA-6 (error condition) and each ERR's ERR-1 (error
    code and location), from v2.5 on each ERR's ERR-3 (error code), ERR-7 (diagnostics) and
    ERR-8 (user message), else its ERR-1."""
    msg = hl7v2.parse(text)
    if isinstance(msg, hl7v2.Refused):
        raise ValueError(f"the reply does not parse: {msg.reason}")
    try:
        return _read_ack(msg)
    except ValueError:
        raise
    except Exception as exc:  # hl7apy's own exceptions: the reply does not read as an ACK
        raise ValueError(f"the reply does not read as an ACK: {type(exc).__name__}: {exc}") from exc


def _read_ack(msg: Any) -> Ack:
    msa = next((s for s in msg.children if s.name == "MSA"), None)
    code = next(iter(_fields(msg, msa, "MSA_1")), "").strip() if msa is not None else ""
    if not code:
        raise ValueError("the reply has no MSA segment with an acknowledgment code")
    control = next(iter(_fields(msg, msa, "MSA_2")), "").strip()
    before_25 = _version(msg) < (2, 5)
    reasons = _fields(msg, msa, "MSA_3")
    if before_25:
        reasons += _fields(msg, msa, "MSA_6")
    for seg in msg.children:
        if seg.name == "ERR":
            errors = [] if before_25 else _fields(msg, seg, "ERR_3", "ERR_7", "ERR_8")
            reasons += errors or _fields(msg, seg, "ERR_1")
    return Ack(code, control, "; ".join(r for r in reasons if r))
