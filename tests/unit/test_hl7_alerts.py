"""Alert lifecycle events → HL7 v2.5.1 ORU^R01, and the EHR's ACK (schemas.interop.hl7_alerts)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.parser import parse_message

from jobs.feeds.hl7_gateway import END, START, frame
from schemas.interop import hl7_alerts, hl7v2
from schemas.interop.hl7_alerts import control_id, er7, escape, parse_ack, unescape
from sinks.ehr_hl7 import _acknowledges, parse_target
from tests.unit.test_fhir_alerts import TOKEN, alert, lifecycle


def parsed(event: dict[str, Any]) -> Message:
    return parse_message(er7(event), find_groups=True, validation_level=VALIDATION_LEVEL.TOLERANT)


def observations(event: dict[str, Any]) -> dict[str, tuple[str, str, str]]:
    """OBX-3.1 → (value type, value unescaped, units) read back from the ER7 text by hl7apy."""
    msg = hl7v2.parse(er7(event))
    assert isinstance(msg, Message)
    out = {}
    for seg in msg.children:
        if seg.name == "OBX":
            code = seg.obx_3.to_er7().split("^")[0]
            units = seg.obx_6.to_er7() if len(seg.obx_6) else ""
            out[code] = (seg.obx_2.to_er7(), hl7_alerts.unescape(seg.obx_5.to_er7()), units)
    return out


def test_the_message_parses_back_with_hl7apy_as_an_oru_r01_of_version_2_5_1() -> None:
    msg = parsed(alert())
    assert msg.name == "ORU_R01"
    assert msg.msh.msh_9.to_er7() == "ORU^R01^ORU_R01"
    assert msg.msh.msh_12.to_er7() == "2.5.1"
    result = msg.oru_r01_patient_result
    assert result.oru_r01_patient.pid.pid_3.to_er7() == f"{TOKEN}^^^WARDFLOW^ANON"
    order = result.oru_r01_order_observation
    assert order.obr.obr_4.to_er7().split("^")[0] == "news2_sustained"
    assert order.obr.obr_3.to_er7() == hl7_alerts.filler_order_number(alert()["alert_id"])
    assert len(order.oru_r01_observation) == 7
    msg.validate()  # hl7apy's own structure check of a tolerant message


def test_segments_are_separated_by_carriage_returns_only() -> None:
    text = er7(alert("resolve", 3))
    assert "\n" not in text and text.startswith("MSH|^~\\&|WARDFLOW|GH|EHR|GH|")
    assert [s[:3] for s in text.split("\r")][:4] == ["MSH", "PID", "PV1", "OBR"]


def test_every_segment_ends_with_a_carriage_return_the_last_one_too() -> None:
    # v2.5.1 §2.5.1, §2.6: a segment is terminated by <CR>, the message's last segment included
    text = er7(alert())
    assert text.endswith(
        "OBX|7|TX|ALERT_EVIDENCE^Evidence^99WF||"
        + alert()["evidence_json"]
        + "||||||F|||20260301080000.123+0000\r"
    )
    assert not text.endswith("\r\r") and "\r\r" not in text
    assert all(seg for seg in text.split("\r")[:-1]) and text.split("\r")[-1] == ""


def test_the_mllp_frame_holds_one_carriage_return_before_its_end_block() -> None:
    framed = frame(er7(alert()))
    assert framed.startswith(START) and framed.endswith(b"|F|||20260301080000.123+0000\r" + END)
    assert framed.count(START) == framed.count(END) == 1 and b"\r\r" not in framed


def test_an_ascii_message_leaves_msh_18_empty_and_its_header_as_before() -> None:
    text = er7(alert())
    assert text.split("\r")[0] == (
        "MSH|^~\\&|WARDFLOW|GH|EHR|GH|20260301080000.123+0000||ORU^R01^ORU_R01|"
        "WF616AD77C4C9EA65C4D|P|2.5.1"
    )
    assert parsed(alert()).msh.msh_18.to_er7() == ""


def test_a_message_with_text_outside_ascii_declares_unicode_utf_8_in_msh_18() -> None:
    # v2.5.1 §2.15.9.18: MSH-18 empty means ASCII; table 0211 names UTF-8 "UNICODE UTF-8"
    event = alert(unit_id="Intensivstation Süd", evidence_json=json.dumps({"n": "température"}))
    msg = parsed(event)
    assert msg.msh.msh_18.to_er7() == "UNICODE UTF-8"
    visit = msg.oru_r01_patient_result.oru_r01_patient.oru_r01_visit
    assert visit.pv1.pv1_3.to_er7() == "Intensivstation Süd^^^GH"
    assert er7(event) == er7(dict(event))  # a resend is still byte for byte the same message
    assert er7(alert(facility_id="Hôpital")).split("\r")[0].endswith("|P|2.5.1||||||UNICODE UTF-8")


def test_a_line_break_in_a_value_is_sent_as_one_space() -> None:
    event = alert(unit_id="ICU\nWard 3", facility_id="GH\r\nNorth", rule_id="news2\rsustained")
    text = er7(event)
    assert ".br" not in text and "\n" not in text
    assert [s[:3] for s in text.split("\r")] == [*["MSH", "PID", "PV1", "OBR"], *["OBX"] * 7, ""]
    msg = parsed(event)
    assert msg.msh.msh_4.to_er7() == "GH North"
    visit = msg.oru_r01_patient_result.oru_r01_patient.oru_r01_visit
    assert visit.pv1.pv1_3.to_er7() == "ICU Ward 3^^^GH North"
    order = msg.oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_4.to_er7().split("^")[0] == "news2 sustained"
    assert escape("a\r\n\r\nb") == "a  b"  # each break one space, CRLF counted once


def test_escaped_text_is_read_back_in_one_pass() -> None:
    assert unescape("Path C:\\E\\.br\\E\\x") == "Path C:\\.br\\x"
    assert unescape("a\\.br\\b \\F\\ \\S\\ \\T\\ \\R\\ \\E\\") == "a\nb | ^ & ~ \\"
    assert unescape("\\X4869\\ \\E\\F\\E\\") == "Hi \\F\\"
    for text in ("C:\\.br\\x", "a|b^c&d~e\\f", "\\E\\", "x\\X41\\y"):
        assert unescape(escape(text)) == text


def test_the_control_id_is_stable_per_event_and_fits_msh_10() -> None:
    raised, escalated, resolved = lifecycle()
    ids = {control_id(e["alert_event_id"]) for e in (raised, escalated, resolved)}
    assert len(ids) == 3 and all(len(i) <= 20 for i in ids)
    assert parsed(raised).msh.msh_10.to_er7() == control_id(raised["alert_event_id"])
    assert er7(raised) == er7(dict(raised))  # a resend is byte for byte the same message


def test_the_observations_carry_action_severity_score_alert_id_sequence_and_evidence() -> None:
    event = alert("escalate", 2)
    obs = observations(event)
    assert obs["ALERT_ACTION"] == ("ST", "escalate", "")
    assert obs["ALERT_SEVERITY"] == ("ST", "high", "")
    assert obs["NEWS2"] == ("NM", "7", "")
    assert obs["ALERT_ID"] == ("ST", event["alert_id"], "")
    assert obs["ALERT_SEQUENCE"] == ("NM", "2", "")
    assert obs["ALERT_HITS"] == ("NM", "2", "")
    assert json.loads(obs["ALERT_EVIDENCE"][1]) == json.loads(event["evidence_json"])
    assert "ALERT_RESOLVE_REASON" not in obs


def test_a_model_alert_reports_its_risk_in_percent() -> None:
    obs = observations(alert(rule_id="model_sepsis_risk"))
    assert obs["SEPSIS_RISK_PCT"] == ("NM", "37", "%^%^UCUM")


def test_a_resolve_is_a_correction_with_its_reason() -> None:
    raised, _, resolved = lifecycle()
    assert (
        parsed(raised).oru_r01_patient_result.oru_r01_order_observation.obr.obr_25.to_er7() == "F"
    )
    order = parsed(resolved).oru_r01_patient_result.oru_r01_order_observation
    assert order.obr.obr_25.to_er7() == "C"
    assert observations(resolved)["ALERT_RESOLVE_REASON"][1] == "condition_cleared"
    assert order.obr.obr_7.to_er7() == "20260301080000.123+0000"  # opened
    assert order.obr.obr_22.to_er7() == "20260301090000.123+0000"  # this step


def statuses(event: dict[str, Any]) -> dict[str, str]:
    """OBX-3.1 → OBX-11 (observation result status, table 0085)."""
    msg = hl7v2.parse(er7(event))
    assert isinstance(msg, Message)
    return {
        seg.obx_3.to_er7().split("^")[0]: seg.obx_11.to_er7()
        for seg in msg.children
        if seg.name == "OBX"
    }


def test_a_resolve_sends_its_reason_as_a_first_result_and_corrects_only_what_was_sent_before() -> (
    None
):
    """Table 0085: C "replaces a final result"; the resolve reason was never sent before, and a
    receiver that checks a correction against its original answered AE (the alert stayed open
    in the EHR)."""
    raised, escalated, resolved = lifecycle()
    assert set(statuses(raised).values()) == {"F"}
    assert set(statuses(escalated).values()) == {"C"}
    status = statuses(resolved)
    assert status.pop("ALERT_RESOLVE_REASON") == "F"
    assert set(status.values()) == {"C"} and set(status) <= set(statuses(raised))


def test_a_resolve_reports_no_score_as_measured_when_the_alert_cleared() -> None:
    """The score is the latest hit's: timed at the resolve (OBX-14), it said the risk was high
    at the moment the alert cleared. The receiver keeps the last score sent, at its time."""
    for rule_id, score in (("news2_sustained", "NEWS2"), ("model_sepsis_risk", "SEPSIS_RISK_PCT")):
        raised, escalated, resolved = lifecycle(rule_id)
        assert score in observations(raised) and score in observations(escalated)
        assert score not in observations(resolved)
        assert observations(resolved)["ALERT_ACTION"][1] == "resolve"


def test_the_filler_order_number_fits_obr_3_and_names_one_alert_in_all_its_events() -> None:
    """OBR-3 (EI) is 22 characters long in v2.5.1: a receiver that checks lengths refused every
    message with the 32-character alert id in it, one that cuts lost the namespace."""
    orders = {
        parsed(e).oru_r01_patient_result.oru_r01_order_observation.obr.obr_3.to_er7()
        for e in lifecycle()
    }
    [order] = orders
    assert len(order) <= 22 and order.endswith("^WARDFLOW")
    other = hl7_alerts.filler_order_number(alert(alert_id="another-alert")["alert_id"])
    assert other != order


def test_the_receiving_application_and_facility_are_the_deployments() -> None:
    text = er7(alert(), hl7_alerts.Receiver("EPIC", "GH MAIN"))
    assert text.split("\r")[0].startswith("MSH|^~\\&|WARDFLOW|GH|EPIC|GH MAIN|")
    assert er7(alert(), hl7_alerts.Receiver("EPIC")).startswith("MSH|^~\\&|WARDFLOW|GH|EPIC|GH|")
    oid = hl7_alerts.Receiver("EPIC^2.16.840.1.113883.3.1^ISO")  # an HD's components kept
    assert "|GH|EPIC^2.16.840.1.113883.3.1^ISO|GH|" in er7(alert(), oid).split("\r")[0]


def test_the_processing_id_is_the_receiving_environments_and_only_one_of_table_0103() -> None:
    """MSH-11: P unless the deployment's EHR is a training (T) or debugging (D) system, which
    answers AR to every production message."""
    assert er7(alert()).split("\r")[0].split("|")[10] == "P"
    training = er7(alert(), hl7_alerts.Receiver("EPIC", processing_id="T"))
    assert training.split("\r")[0].split("|")[10] == "T"
    with pytest.raises(ValueError, match="processing id 'X'"):
        hl7_alerts.Receiver("EPIC", processing_id="X")


def test_delimiters_in_values_are_escaped_and_read_back_whole() -> None:
    evidence = json.dumps({"note": "a|b^c&d~e\\f", "x": {"value": 1}})
    event = alert(evidence_json=evidence, unit_id="ICU|2")
    text = er7(event)
    assert text.count("\r") == len(text.split("\r")) - 1
    obs = observations(event)
    assert obs["ALERT_EVIDENCE"][1] == evidence
    assert "ICU\\F\\2^^^GH" in text


def ack_for(event: dict[str, Any], code: str, why: str = "") -> str:
    msg = hl7v2.parse(er7(event))
    assert isinstance(msg, Message)
    return hl7v2.ack(msg, code, why, "207" if code != "AA" else "")


@pytest.mark.parametrize(
    ("code", "accepted", "error", "rejected"),
    [
        ("AA", True, False, False),
        ("CA", True, False, False),
        ("AE", False, True, False),  # v2.5.1 §2.9.2.1: an error in the message's content
        ("CE", False, False, True),  # §2.9.3.1: the message service's, not the content's
        ("AR", False, False, True),  # rejected for a reason unrelated to the content
        ("CR", False, False, True),
    ],
)
def test_an_ack_is_read_for_its_code_and_the_control_id_it_answers(
    code: str, accepted: bool, error: bool, rejected: bool
) -> None:
    event = alert()
    ack = parse_ack(ack_for(event, code, "unknown patient"))
    assert ack.code == code
    assert ack.control_id == control_id(event["alert_event_id"])
    assert (ack.accepted, ack.error, ack.rejected) == (accepted, error, rejected)
    if code != "AA":
        assert "unknown patient" in ack.text


CID = control_id(alert()["alert_event_id"])


def old_ack(version: str, *segments: str) -> str:
    """An ACK as a v2.2-2.4 interface engine writes it: MSH, then `segments`."""
    head = f"MSH|^~\\&|EHR|GH|WARDFLOW|GH|20260301080001||ACK^R01|A1|P|{version}"
    return "\r".join([head, *segments]) + "\r"


@pytest.mark.parametrize("version", ["2.2", "2.3", "2.3.1", "2.4"])
@pytest.mark.parametrize("code", ["AA", "AE", "AR"])
def test_an_ack_before_v2_5_is_read_with_its_err_1_for_any_code(version: str, code: str) -> None:
    # ERR-1 (error code and location) is the only field of ERR before v2.5: ERR-3 is not asked for
    ack = parse_ack(
        old_ack(
            version,
            f"MSA|{code}|{CID}|Patient not found",
            "ERR|PID^1^3^204&Unknown key identifier&HL70357~PV1^1^3^103&Table value not found",
        )
    )
    assert (ack.code, ack.control_id) == (code, CID)
    assert ack.text == (
        "Patient not found; PID^1^3^204&Unknown key identifier&HL70357; "
        "PV1^1^3^103&Table value not found"
    )


def test_an_ack_before_v2_5_also_gives_its_msa_6_error_condition() -> None:
    ack = parse_ack(old_ack("2.4", f"MSA|AR|{CID}|Unknown patient|||204^Unknown key"))
    assert (ack.code, ack.text) == ("AR", "Unknown patient; 204^Unknown key")


def test_an_ack_of_v2_5_on_is_read_with_its_err_3_7_and_8_not_its_err_1() -> None:
    for version in ("2.5", "2.5.1", "2.6", "2.8"):
        text = (
            f"MSH|^~\\&|EHR|GH|WARDFLOW|GH|20260301080001||ACK^R01^ACK|A1|P|{version}\r"
            f"MSA|AE|{CID}\r"
            "ERR|PID^1^3^204|PID^1^3|204^Unknown key identifier^HL70357|E|||No such token|"
            "Token not on file\r"
        )
        ack = parse_ack(text)
        assert (ack.code, ack.control_id) == ("AE", CID), version
        assert ack.text == "204^Unknown key identifier^HL70357; No such token; Token not on file"


def test_an_ack_of_v2_5_on_with_only_its_err_1_filled_is_read_with_it() -> None:
    """v2.5.1 keeps ERR-1 "for backward compatibility" (§2.15.5.1): engines that fill only it
    gave a dead letter whose reason was "-"."""
    text = (
        "MSH|^~\\&|EHR|GH|WARDFLOW|GH|20260301080001||ACK^R01^ACK|A1|P|2.5.1\r"
        f"MSA|AE|{CID}\r"
        "ERR|PID^1^3^204&Unknown key identifier&HL70357\r"
    )
    ack = parse_ack(text)
    assert (ack.code, ack.text) == ("AE", "PID^1^3^204&Unknown key identifier&HL70357")


@pytest.mark.parametrize("version", ["2.3", "2.5.1"])
def test_an_ack_before_v2_7_that_declares_a_truncation_character_reads_its_escape_as_it(
    version: str,
) -> None:
    """An engine set up for v2.7 declares the truncation character (`^~\\&#`) whatever version
    it writes, and writes a `#` as `\\P\\` (v2.7 2.7.1). Its pre-2.7 ACK's reason and control
    id were read with `\\P\\` left as text (`bad \\P\\ value`): the ACK is read in its own
    encoding characters, the truncation character's escape as the character."""
    text = (
        f"MSH|^~\\&#|EHR|H|WF|H|20260301080000||ACK^R01^ACK|E1|P|{version}\r"
        "MSA|AE|WF\\P\\1|bad \\P\\ value\r"
    )
    ack = parse_ack(text)
    assert (ack.code, ack.control_id, ack.text) == ("AE", "WF#1", "bad # value")


def test_a_reply_that_is_not_an_ack_is_an_error() -> None:
    with pytest.raises(ValueError, match="MSA"):
        parse_ack(er7(alert()))
    with pytest.raises(ValueError, match="parse"):
        parse_ack("garbage")
    with pytest.raises(ValueError, match="MSA"):
        parse_ack(old_ack("2.3", f"MSA||{CID}"))


def test_the_sender_matches_an_ack_to_its_message_by_msa_2() -> None:
    event = alert()
    cid = control_id(event["alert_event_id"])
    assert _acknowledges(ack_for(event, "AA"), cid)
    assert not _acknowledges(ack_for(alert("escalate", 2), "AA"), cid)  # a late reply
    assert _acknowledges("MSH|^~\\&|EHR\rMSA|AA", cid)  # no MSA-2: taken as ours


def test_the_mllp_target_is_host_and_port() -> None:
    assert parse_target("127.0.0.1:2575") == ("127.0.0.1", 2575)
    assert parse_target("[::1]:2575") == ("::1", 2575)
    with pytest.raises(ValueError):
        parse_target("ehr.example")
