"""The HL7 v2 gateway's decisions (ACK policy, processing id, size) and its MLLP framing and
offline check mode, without Kafka: `Gateway.decide` is what the live path stores and answers."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from jobs.feeds import hl7_gateway
from jobs.feeds.hl7_gateway import END, START, FrameReader, Gateway
from schemas import codec, topics
from schemas.interop import hl7v2
from schemas.settings import Settings
from tests.conftest import offline_check


def msh(control: str = "C1", processing: str = "P", kind: str = "ADT^A01") -> str:
    return f"MSH|^~\\&|EPIC|GH|WF|GH|20260301080000||{kind}|{control}|{processing}|2.5.1"


def admit(control: str = "C1", processing: str = "P", unit: str = "4E") -> bytes:
    return "\r".join(
        [
            msh(control, processing),
            "EVN|A01|20260301080000",
            "PID|1||MRN77^^^GH^MR||DOE^JANE",
            f"PV1|1|I|{unit}^^12^GH",
        ]
    ).encode()


def vitals(*obx: str, control: str = "V1") -> bytes:
    head = [msh(control, kind="ORU^R01"), "PID|1||MRN77^^^GH^MR", "PV1|1|I|4E^^12^GH"]
    return "\r".join([*head, "OBR|1|||vitals|||20260301080000", *obx]).encode()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings.from_env({}, phi_key=b"k", payload_store=tmp_path / "payloads")


def gateway(s: Settings, **changes: Any) -> Gateway:
    return Gateway(dataclasses.replace(s, **changes), listen="test")


def err(ack: str) -> list[str]:
    return [seg for seg in ack.split("\r") if seg.startswith("ERR")]


def test_a_mapped_message_is_answered_aa_with_its_records(settings: Settings) -> None:
    d = gateway(settings).decide(admit())
    assert (d.ack_code, d.outcome, d.letters, d.route) == ("AA", "mapped", [], "")
    assert [t for t, _, _ in d.records] == [topics.ADT_EVENT.name]
    assert d.ack.split("\r")[1].startswith("MSA|AA|C1") and not err(d.ack)


def test_every_segment_of_an_ack_ends_with_a_carriage_return(settings: Settings) -> None:
    """v2.5.1 §2.6: each segment is terminated by CR, the last one too."""
    for message in (admit(), b"MSH|^~\\&|X|Y|||20260301||ADT^A01|Z9|P|2.5.1\rPID|1||"):
        ack = gateway(settings).decide(message).ack
        assert ack.endswith("\r") and not ack.endswith("\r\r")
        assert all(seg[:3] in ("MSH", "MSA", "ERR") for seg in ack.split("\r")[:-1])


@pytest.mark.parametrize(
    ("trigger", "event_type"),
    [
        ("A21", "leave_of_absence"),
        ("A22", "return_from_leave"),
        ("A52", "return_from_leave"),  # the leave cancelled: back
        ("A53", "leave_of_absence"),  # the return cancelled: away again
    ],
)
def test_a_leave_of_absence_is_stored_as_an_event_of_the_census(
    settings: Settings, trigger: str, event_type: str
) -> None:
    leave = admit().replace(b"ADT^A01", f"ADT^{trigger}".encode())
    d = gateway(settings).decide(leave)
    assert (d.ack_code, d.outcome, d.letters) == ("AA", "mapped", [])
    [(topic, record, _)] = d.records
    assert (topic, record["event_type"], record["unit_id"]) == (
        topics.ADT_EVENT.name,
        event_type,
        "4E",
    )


def test_an_a07_naming_a_unit_of_the_capacity_file_keeps_the_bed_and_an_outpatient_clinic_not(
    settings: Settings, tmp_path: Path
) -> None:
    """The gateway reads the units of beds from the deployment's capacity file: an inpatient
    converted to observation in 4E (whose A07 does not say where they were) stays."""
    capacity = tmp_path / "capacity.json"
    capacity.write_text(
        json.dumps({"surge_thresholds_pct": [85.0, 92.0, 100.0], "facilities": {"GH": {"4E": 30}}})
    )
    g = gateway(settings, capacity_file=capacity)
    for unit, event_type in (("4E", "update"), ("CARDCLINIC", "discharge")):
        a07 = admit(unit=unit).replace(b"ADT^A01", b"ADT^A07")
        [(_, record, _)] = g.decide(a07).records
        assert (record["event_type"], record["unit_id"]) == (event_type, unit)


def test_a_refusal_for_content_is_stored_and_answered_aa_under_the_durable_policy(
    settings: Settings,
) -> None:
    no_unit = admit(unit="")
    d = gateway(settings).decide(no_unit)
    assert (d.ack_code, d.records) == ("AA", [])
    [letter] = d.letters
    assert (letter.reason_code, letter.payload) == ("missing_field", no_unit)
    assert "stored for review" in d.ack.split("\r")[1]
    assert err(d.ack) == ["ERR|||101^^HL70357|W"]


def test_the_strict_policy_answers_ae_for_the_same_refusal(settings: Settings) -> None:
    d = gateway(settings, hl7_ack_policy="strict").decide(admit(unit=""))
    assert d.ack_code == "AE" and err(d.ack) == ["ERR|||101^^HL70357|E"]
    assert len(d.letters) == 1  # dead-lettered all the same


def test_what_is_not_wardflows_is_answered_ar_under_either_policy(settings: Settings) -> None:
    other = "\r".join([msh(kind="SIU^S12"), "PID|1||MRN77^^^GH^MR"]).encode()
    for policy in ("durable", "strict"):
        d = gateway(settings, hl7_ack_policy=policy).decide(other)
        assert d.ack_code == "AR" and err(d.ack) == ["ERR|||200^^HL70357|E"]


def test_an_unknown_policy_is_refused_at_the_edge() -> None:
    with pytest.raises(ValueError, match="hl7_ack_policy"):
        Settings.from_env({"WARDFLOW_HL7_ACK_POLICY": "lenient"})


def test_a_debugging_message_never_reaches_the_production_topics(settings: Settings) -> None:
    d = gateway(settings).decide(admit(processing="D"))
    assert (d.ack_code, d.route, len(d.records)) == ("AA", "nonprod.", 1)
    assert d.ack.split("\r")[0].split("|")[10] == "D"  # the ACK echoes the processing id
    refused = gateway(settings, nonproduction_topic_prefix="").decide(admit(processing="T"))
    assert (refused.ack_code, refused.records) == ("AR", [])
    assert err(refused.ack) == ["ERR|||202^^HL70357|E"]
    assert refused.letters[0].reason_code == "processing_id"
    both = gateway(settings, production_processing_ids="P,T").decide(admit(processing="T"))
    assert (both.route, len(both.records)) == ("", 1)


def test_one_unreadable_value_is_dead_lettered_alone_and_the_rest_is_stored(
    settings: Settings,
) -> None:
    d = gateway(settings).decide(
        vitals(
            "OBX|1|NM|8867-4^HR^LN||121|beats/sec|||||F",
            "OBX|2|NM|9279-1^RR^LN||24|/min|||||F",
            "OBX|3|NM|3151-8^O2 flow^LN||3|L/min|||||F",
        )
    )
    assert d.ack_code == "AA" and err(d.ack) == ["ERR|||102^^HL70357|W"]
    [(_, rec, _)] = d.records
    assert (rec["resp_rate_per_min"], rec["on_supplemental_o2"]) == (24, True)
    [letter] = d.letters
    assert letter.reason_code == "bad_value" and letter.payload.startswith(b"OBX|1|NM|8867-4")


def test_a_message_over_the_size_limit_is_refused_ar_with_its_size(settings: Settings) -> None:
    g = gateway(settings, max_message_bytes=4096)
    head = vitals("OBX|1|ED|PDF^Report^L||^AP^PDF^Base64^" + "A" * 5000)
    d = g.decide(head[:2000], size=len(head))
    assert (d.ack_code, d.records) == ("AR", [])
    assert d.ack.split("\r")[1].startswith("MSA|AR|V1|")  # the control id read from the head
    [letter] = d.letters
    assert letter.reason_code == "too_large" and str(len(head)) in letter.reason
    assert g.decide(head).ack_code == "AR"  # whole, but over the limit all the same


def test_frames_are_found_across_chunks_and_an_oversize_one_is_reported_not_lost() -> None:
    reader = FrameReader(max_bytes=100)
    small, big = b"MSH|small", b"MSH|" + b"x" * 500
    stream = START + small + END + START + big + END + START + small + END
    got = []
    for i in range(0, len(stream), 7):  # END split across chunks too
        got += list(reader.feed(stream[i : i + 7]))
    assert got[0] == (small, None) and got[2] == (small, None)
    head, size = got[1]
    assert size == len(big) and big.startswith(head) and len(head) <= hl7_gateway.HEAD_BYTES


def test_a_frame_ended_without_its_cr_ends_where_the_next_frame_starts() -> None:
    reader = FrameReader(max_bytes=1000)
    a, b = admit("A"), admit("B")
    stream = START + a + b"\x1c" + START + b + END  # FS alone, then the next frame
    got = []
    for i in range(0, len(stream), 5):
        got += list(reader.feed(stream[i : i + 5]))
    assert got == [(a, None), (b, None)]


def test_a_frame_ended_by_fs_alone_is_read_at_once_not_when_the_next_frame_comes() -> None:
    reader = FrameReader(max_bytes=1000)
    a, b = admit("A"), admit("B")
    assert list(reader.feed(START + a + b"\x1c")) == [(a, None)]  # the sender waits for its ACK
    assert list(reader.feed(b"\r" + START + b + b"\x1c\n")) == [(b, None)]  # a late CR: noise
    assert reader.take_abandoned() == []


def test_a_frame_cut_off_by_a_new_one_is_abandoned_and_the_new_one_read_whole() -> None:
    reader = FrameReader(max_bytes=1000)
    a, b = admit("A"), admit("B")
    stream = START + a[:40] + START + b + END
    got = []
    for i in range(0, len(stream), 7):
        got += list(reader.feed(stream[i : i + 7]))
    assert got == [(b, None)]
    assert reader.take_abandoned() == [(a[:40], 40)]


def test_a_frame_holding_only_msh_is_refused_as_malformed_and_stored_for_review(
    settings: Settings,
) -> None:
    for text in (b"MSH", b"MSH|", b"MSH\rPID|1"):
        d = gateway(settings).decide(text)
        assert (d.ack_code, [x.reason_code for x in d.letters]) == ("AA", ["malformed"]), text


@pytest.mark.parametrize("lead", [b"\r\n", b"\n", b" "])
@pytest.mark.parametrize(
    "malformed",
    [
        admit("C7", processing="T").replace(b"^~\\&", b"^~\\", 1),  # MSH-2 without its &
        admit("C7", processing="T").replace(b"\rPID", b"\r .\rPID"),  # a segment of no name
        admit("C7", processing="T").replace(b"|2.5.1", b"|3.0"),  # not v2: AR 203
    ],
)
def test_a_refused_message_after_a_leading_line_break_is_answered_with_its_control_id(
    settings: Settings, lead: bytes, malformed: bytes
) -> None:
    """A sender that puts a line break after the MLLP start byte is read (hl7v2.parse strips
    it), but a message refused before it parses was answered with an empty MSA-2 and MSH-11 P:
    raw_control_id read MSH-10 only from text starting with MSH. An engine that matches ACKs
    to messages by MSA-2 (v2.5.1 2.14.8.2) took it for no answer and resent it for ever."""
    d = gateway(settings).decide(lead + malformed)
    assert [x.reason_code for x in d.letters] == ["malformed"]
    msh, msa, *_ = d.ack.split("\r")
    assert msa.split("|")[:3] == ["MSA", d.ack_code, "C7"]
    assert msh.split("|")[10] == "T"  # its processing id echoed (MSH-11)


@pytest.mark.parametrize("blank", [b" ", b"\t", b"   "])
def test_a_line_of_spaces_between_segments_is_stored_and_answered_aa(
    settings: Settings, blank: bytes
) -> None:
    """A line of spaces between segments (some interface engines write one) is a blank line:
    the admission was refused malformed for it (AE, dead-lettered) and never reached the census."""
    d = gateway(settings).decide(admit("C8").replace(b"\rPID", b"\r" + blank + b"\rPID"))
    assert (d.ack_code, d.letters, [t for t, _, _ in d.records]) == (
        "AA",
        [],
        [topics.ADT_EVENT.name],
    )
    assert "MSA|AA|C8" in d.ack


def test_a_message_whose_reading_raises_is_refused_ae_and_dead_lettered_whole(
    settings: Settings,
) -> None:
    g = gateway(settings)
    d = g._unforeseen(admit("C9"), ZeroDivisionError())
    assert d.ack_code == "AE" and "MSA|AE|C9" in d.ack
    [letter] = d.letters
    assert (letter.reason_code, letter.payload) == ("internal_error", admit("C9"))


def admit_in(unit: str, charset: str, nte: bytes = b"") -> bytes:
    head = f"MSH|^~\\&|EPIC|GH|WF|GH|20260301080000||ADT^A01|C1|P|2.5.1||||||{charset}"
    body = "\r".join(["EVN|A01|20260301080000", "PID|1||MRN77^^^GH^MR", f"PV1|1|I|{unit}^^12^GH"])
    return head.encode() + b"\r" + body.encode(hl7_gateway.CHARSETS.get(charset, "utf-8")) + nte


@pytest.mark.parametrize(
    ("raw", "unit", "encoding"),
    [
        (admit_in("Łódź", "8859/2"), "Łódź", "iso8859-2"),  # read as declared (MSH-18)
        (admit_in("Süd", "UNICODE UTF-8", b"\rNTE|1||\x93quoted\x94"), "Süd", "utf-8"),
        (admit_in("Süd", "", b"\rNTE|1||\x93quoted\x94"), "Süd", "utf-8"),  # a stray byte
        (admit_in("MÜNCHEN", "").replace("MÜNCHEN".encode(), "MÜNCHEN".encode("latin-1")),
         "MÜNCHEN", "cp1252"),  # undeclared 8-bit: Windows-1252 (Latin-1's letters)
        # Latin-1 whose «ÉTÉ» holds one byte pair that is UTF-8 (C9 BB): still Latin-1
        (admit_in("SÜD", "").replace("SÜD".encode(), "SÜD".encode("latin-1"))
         + "\rNTE|1||«ÉTÉ» note".encode("latin-1"), "SÜD", "cp1252"),
        # UTF-8 with a pasted Windows-1252 "café" (its é one stray byte), and a byte-order mark
        (admit_in("Süd", "", "\rNTE|1||café".encode("cp1252")), "Süd", "utf-8"),
        (b"\xef\xbb\xbf" + admit_in("Süd", "", b"\rNTE|1||\xe9"), "Süd", "utf-8"),
        (admit_in("Œil", "").replace("Œil".encode(), "Œil".encode("cp1252")), "Œil", "cp1252"),
        # JIS X 0208 switched to from ASCII (ISO 2022, MSH-18's second repetition)
        (admit_in("ICU", "~ISO IR87", "\rNTE|1||山田^太郎".encode("iso2022_jp")), "ICU",
         "iso2022_jp_2"),
        (admit_in("ICU", "CNS 11643-1992"), "ICU", "utf-8"),  # no codec: read as undeclared
    ],
)  # fmt: skip
def test_a_message_is_read_in_its_declared_character_set_a_stray_byte_alone_replaced(
    settings: Settings, raw: bytes, unit: str, encoding: str
) -> None:
    d = gateway(settings).decide(raw)
    [(_, record, _)] = d.records
    assert record["unit_id"] == unit
    assert hl7_gateway.text_encoding(raw) == encoding  # the ACK goes back in it too
    declared = hl7_gateway.declared_charsets(raw)
    msh_18 = d.ack.split("\r")[0].split("|")[17:18]
    assert msh_18 == (["~".join(declared)] if declared else [])  # as the message said it


def test_a_batch_file_splits_into_its_messages() -> None:
    batch = b"\n".join(
        [b"FHS|^~\\&|EPIC", b"BHS|^~\\&|EPIC", admit("A"), admit("B"), b"BTS|2", b"FTS|1"]
    ).replace(b"\r", b"\r\n")
    assert [m.split(b"|")[9] for m in hl7_gateway.split_messages(batch)] == [b"A", b"B"]
    framed = START + admit("A") + END + START + admit("B") + END
    assert len(hl7_gateway.split_messages(framed)) == 2
    assert hl7_gateway.split_messages(b"hello\n" + admit("A"))[0] == b"hello"


def test_a_batch_file_saved_with_a_byte_order_mark_splits_into_its_messages_alone() -> None:
    """A batch file saved by a Windows editor or export starts with UTF-8's byte-order mark: its
    FHS line was no batch header to skip but a message of its own, which the check mode printed
    as one more message refused malformed."""
    batch = b"\r\n".join(
        [b"FHS|^~\\&|EPIC", b"BHS|^~\\&|EPIC", admit("A"), admit("B"), b"BTS|2", b"FTS|1"]
    )
    got = hl7_gateway.split_messages(hl7_gateway.BOM + batch)
    assert [m.split(b"|")[9] for m in got] == [b"A", b"B"]


@pytest.mark.parametrize("eol", [b"\r\n", b"\n", b"\r"])
def test_a_byte_order_mark_then_a_blank_line_before_the_first_segment_is_no_message_of_its_own(
    eol: bytes,
) -> None:
    """A byte-order mark, then a blank line, then the FHS or the MSH: the mark's line was no
    blank line to skip (it held the mark) but text before the first MSH, a message of its own
    holding the mark alone, which the check mode printed as one more message refused."""
    batch = eol.join([b"FHS|^~\\&|EPIC", admit("A"), admit("B"), b"FTS|1"])
    got = hl7_gateway.split_messages(hl7_gateway.BOM + eol + batch)
    assert [m.split(b"|")[9] for m in got] == [b"A", b"B"]
    plain = hl7_gateway.split_messages(hl7_gateway.BOM + eol + eol + admit("A"))
    assert [m.split(b"|")[9] for m in plain] == [b"A"]


def test_the_check_command_prints_one_tab_separated_line_per_message(tmp_path: Path) -> None:
    folder = tmp_path / "feed"
    folder.mkdir()
    (folder / "a.hl7").write_bytes(admit("A") + b"\r\n" + admit("B", unit=""))
    (folder / "b.hl7").write_bytes(admit("C", processing="D"))
    (tmp_path / "c.hl7").write_bytes(b"not hl7 at all")
    rows = offline_check("jobs.feeds.hl7_gateway", folder, tmp_path / "c.hl7")
    assert [r[:3] for r in rows] == [
        ["a.hl7", "AA", "1"],
        ["a.hl7", "AA", "0"],
        ["b.hl7", "AA", "1"],
        ["c.hl7", "AA", "0"],
    ]
    assert all(len(r) == 4 for r in rows)
    assert rows[0][3] == "" and rows[1][3].startswith("missing_field: ADT^A01 without a unit")
    assert "non-production" in rows[2][3] and rows[3][3].startswith("malformed")


def test_a_monitors_no_value_sentinel_is_dead_lettered_alone_and_its_reading_stored(
    settings: Settings,
) -> None:
    """Before, the codec refused the whole message for the one value outside its range."""
    d = gateway(settings).decide(
        vitals(
            "OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.150456|95|262688^MDC_DIM_PERCENT^MDC"
            "|||||R",
            "OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.147842|-999|264864^MDC_DIM_BEAT_PER_MIN^MDC"
            "|||||R",
        )
    )
    assert d.ack_code == "AA" and err(d.ack) == ["ERR|||102^^HL70357|W"]
    [(_, rec, _)] = d.records
    assert rec["spo2_pct"] == 95 and rec.get("heart_rate_bpm") is None
    [letter] = d.letters
    assert letter.reason_code == "out_of_range" and letter.payload.startswith(b"OBX|2|NM|147842")


def test_one_reading_timed_in_the_future_is_dead_lettered_alone(settings: Settings) -> None:
    d = gateway(settings).decide(
        vitals(
            "OBX|1|NM|8867-4^HR^LN||88|/min|||||F|||20260301080000",
            "OBX|2|NM|9279-1^RR^LN||18|/min|||||F|||20990301080000",  # a wrong year
            "OBX|3|NM|6^TEMPERATURE^FLO||38.9|||||F",
            "OBX|4|ST|9270-0^GCS verbal^LN||T||||||F|||20260301080000",
        )
    )
    assert d.ack_code == "AA" and d.unread == ("6 (FLO)",)  # kept when the future one goes
    assert d.notes == ("9270-0 (GCS verbal: no score)",)  # kept too
    [(_, rec, _)] = d.records
    assert rec["heart_rate_bpm"] == 88 and "resp_rate_per_min" not in rec
    [letter] = d.letters
    assert letter.reason_code == "future_time" and "2099-03-01" in letter.reason
    everything_ahead = gateway(settings).decide(
        vitals("OBX|1|NM|8867-4^HR^LN||88|/min|||||F|||20990301080000")
    )
    assert (
        everything_ahead.records == [] and everything_ahead.letters[0].reason_code == "future_time"
    )


def entered_later(recorded: str) -> bytes:
    """An admission at 06:00 (PV1-44) entered at `recorded` (EVN-2)."""
    return "\r".join(
        [
            msh(),
            f"EVN|A01|{recorded}",
            "PID|1||MRN77^^^GH^MR||DOE^JANE",
            "PV1|1|I|4E^^12^GH" + "|" * 41 + "20260301060000",
        ]
    ).encode()


def test_an_admission_entered_after_the_fact_is_timed_by_when_it_was_entered(
    settings: Settings,
) -> None:
    [(_, rec, _)] = gateway(settings).decide(entered_later("20260301080000")).records
    assert rec["event_time"] == datetime(2026, 3, 1, 6, tzinfo=UTC)  # PV1-44: when it happened
    assert codec.record_time(rec) == datetime(2026, 3, 1, 8, tzinfo=UTC)  # its Kafka timestamp


def test_a_recorded_time_ahead_of_the_clock_is_dropped_and_the_event_keeps_its_own_time(
    settings: Settings,
) -> None:
    """As the Kafka timestamp a wrong year in EVN-2 (one of the shared samples has one) would
    carry the ADT feed's watermark years ahead and make every later event late."""
    d = gateway(settings).decide(entered_later("20990301080000"))
    assert (d.ack_code, d.letters) == ("AA", [])
    [(_, rec, _)] = d.records
    assert rec["recorded_time"] is None
    assert codec.record_time(rec) == rec["event_time"] == datetime(2026, 3, 1, 6, tzinfo=UTC)


def test_a_monitor_feed_without_assigning_authority_or_facility_takes_the_configured_ones(
    settings: Settings,
) -> None:
    """A Philips export names neither the MRN's authority nor the facility: with the gateway's
    `hl7_patient_authority` and `hl7_facility_id` its readings join the ADT feed's patient."""
    monitor = "\r".join(
        [
            "MSH|^~\\&|^EfficiaCM||||20260301080000||ORU^R01|M1|P|2.5",
            "PID|||MRN77",
            "PV1|||^^LOCATION34",
            "OBX||NM|0002-4182^HR^MDIL||80|0004-0aa0^bpm^MDIL|||||F|||20260301080000",
        ]
    ).encode()
    configured = gateway(settings, hl7_patient_authority="GH", hl7_facility_id="GH")
    [(_, reading, _)] = configured.decide(monitor).records
    [(_, admission, _)] = configured.decide(admit()).records
    assert reading["patient_token"] == admission["patient_token"]
    assert (reading["facility_id"], reading["heart_rate_bpm"]) == ("GH", 80)
    [(_, unconfigured, _)] = gateway(settings).decide(monitor).records
    assert unconfigured["patient_token"] != admission["patient_token"]
    assert unconfigured["facility_id"] == "EfficiaCM"  # MSH-3.2: the sender, named at all


def test_the_preferred_authority_setting_keeps_a_reordered_patient_one_token(
    settings: Settings,
) -> None:
    """`hl7_preferred_authority` reaches the mapping: an A08 whose engine put a second
    hospital's MR first keeps the admission's token with it, and moves it without it."""
    a08 = (
        admit("C2")
        .replace(b"ADT^A01", b"ADT^A08")
        .replace(b"PID|1||MRN77^^^GH^MR", b"PID|1||C5^^^CLINIC^MR~MRN77^^^GH^MR")
    )
    configured = gateway(settings, hl7_preferred_authority="GH")
    [(_, admission, _)] = configured.decide(admit()).records
    [(_, update, _)] = configured.decide(a08).records
    assert update["patient_token"] == admission["patient_token"]
    [(_, unconfigured, _)] = gateway(settings).decide(a08).records
    assert unconfigured["patient_token"] != admission["patient_token"]


def test_a_stored_orus_obx_codes_it_does_not_read_are_named_in_its_decision_and_check_line(
    settings: Settings, tmp_path: Path
) -> None:
    message = vitals(
        "OBX|1|NM|8867-4^Heart rate^LN||88|/min|||||F",
        "OBX|2|NM|6^TEMPERATURE^FLO||38.9|||||F",
        "OBX|3|NM|38208-5^Pain severity^LN||4||||||F",
        "OBX|4|NM|6^TEMPERATURE^FLO||38.7|||||F",  # the same code again: named once
    )
    d = gateway(settings).decide(message)
    assert (d.ack_code, len(d.records), d.letters) == ("AA", 1, [])
    assert d.unread == ("6 (FLO)", "38208-5 (LN)")
    (tmp_path / "oru.hl7").write_bytes(message)
    [row] = offline_check("jobs.feeds.hl7_gateway", tmp_path / "oru.hl7")
    assert row == ["oru.hl7", "AA", "1", "OBX not read: 6 (FLO), 38208-5 (LN)"]


def test_a_gcs_part_charted_without_a_score_is_said_in_the_check_line_and_not_counted_as_a_code(
    settings: Settings, tmp_path: Path
) -> None:
    """A verbal response through a tube (T) is read and makes no total: said to whoever checks
    the feed, but no code for the code map: not among the unread codes the gateway counts."""
    message = vitals(
        "OBX|1|NM|9267-6^GCS eye^LN||3||||||F",
        "OBX|2|ST|9270-0^GCS verbal^LN||T||||||F",
        "OBX|3|NM|9268-4^GCS motor^LN||5||||||F",
        "OBX|4|NM|8867-4^Heart rate^LN||88|/min|||||F",
    )
    d = gateway(settings).decide(message)
    assert (d.ack_code, len(d.records), d.letters, d.unread) == ("AA", 1, [], ())
    assert d.notes == ("9270-0 (GCS verbal: no score)", "GCS eye, motor without verbal: no total")
    (tmp_path / "gcs.hl7").write_bytes(message)
    [row] = offline_check("jobs.feeds.hl7_gateway", tmp_path / "gcs.hl7")
    assert row == ["gcs.hl7", "AA", "1", "; ".join(d.notes)]


def test_a_code_with_a_tab_or_line_feed_cannot_split_the_check_line_or_the_log(
    settings: Settings, tmp_path: Path
) -> None:
    """Field text is unescaped: `\\X09\\` is a tab, `\\X0A\\` a line feed. In a code's label
    they are written as escapes, so the check output keeps one line of four columns per message
    (a line feed forged a line of its own) and a log line stays one line."""
    message = vitals(
        "OBX|1|NM|8867-4^Heart rate^LN||88|/min|||||F",
        "OBX|2|NM|6\\X0A\\forged.hl7\\X09\\AR\\X09\\0^T^FL\\X09\\O||1|||||F",
    )
    d = gateway(settings).decide(message)
    assert d.unread == ("6\\nforged.hl7\\tAR\\t0 (FL\\tO)",)
    (tmp_path / "tab.hl7").write_bytes(message)
    rows = offline_check("jobs.feeds.hl7_gateway", tmp_path / "tab.hl7")
    assert rows == [["tab.hl7", "AA", "1", f"OBX not read: {d.unread[0]}"]]
    long = gateway(settings).decide(
        vitals("OBX|1|NM|8867-4^HR^LN||88|/min|||||F", f"OBX|2|ST|^{'x' * 5000}||1|||||F")
    )
    assert [len(code) for code in long.unread] == [hl7v2.UNREAD_LABEL_CHARS]


def test_vitals_whose_unit_holds_a_control_character_are_stored_and_the_check_line_says_so(
    settings: Settings, tmp_path: Path
) -> None:
    """PV1-3.1 `4\\X0A\\E` (a line feed in the unit) refused the whole ORU (AE 102): a
    correctly identified patient's vitals were lost for a field that names no one. They are
    stored under the unit `unknown`, answered AA, nothing dead-lettered, and the check line
    says why the unit is unknown."""
    message = vitals("OBX|1|NM|8867-4^HR^LN||88|/min|||||F").replace(b"4E^^12", b"4\\X0A\\E^^12")
    d = gateway(settings).decide(message)
    assert (d.ack_code, d.letters, len(d.records)) == ("AA", [], 1)
    [(_, rec, _)] = d.records
    assert (rec["unit_id"], rec["heart_rate_bpm"]) == ("unknown", 88)
    assert d.notes == ("control character in PV1-3.1 (the patient's unit): U+000A, read as absent",)
    (tmp_path / "unit.hl7").write_bytes(message)
    [row] = offline_check("jobs.feeds.hl7_gateway", tmp_path / "unit.hl7")
    assert row == ["unit.hl7", "AA", "1", d.notes[0]]


def test_an_admission_whose_unit_holds_a_control_character_is_answered_with_why_first(
    settings: Settings,
) -> None:
    """An A01 whose unit (PV1-3.1 `4\\X0A\\E`) is read as absent was answered ERR-3 101 (a
    required field missing) with MSA-3 cut before it said why. It is a value the unit cannot
    hold (102), and MSA-3 starts with the control character and where it is."""
    d = gateway(settings).decide(admit(unit="4\\X0A\\E"))
    assert not d.records and len(d.letters) == 1
    [msa] = [seg for seg in d.ack.split("\r") if seg.startswith("MSA")]
    [err] = [seg for seg in d.ack.split("\r") if seg.startswith("ERR")]
    assert "control character in PV1-3: U+000A (read as absent)" in msa
    assert err.split("|")[3].startswith("102^")


def test_the_gateway_counts_at_most_its_limit_of_distinct_unread_codes_by_name(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    """A sender with free text or unique ids in OBX-3 would grow the counts for ever: past
    UNREAD_KEPT codes, new ones are counted together, and logged no more."""
    g = gateway(settings)
    with caplog.at_level("INFO", logger="wardflow.hl7_gateway"):
        for n in range(hl7_gateway.UNREAD_KEPT + 50):
            g.count_unread(n, (f"note-{n} (L)", "6 (FLO)"))
    assert len(g.stats.unread) == hl7_gateway.UNREAD_KEPT + 1
    assert g.stats.unread[hl7_gateway.UNREAD_OTHER] == 51  # 50 new ones, and the 1000th note
    assert g.stats.unread["6 (FLO)"] == hl7_gateway.UNREAD_KEPT + 50
    logged = [r.getMessage() for r in caplog.records]
    assert len(logged) == hl7_gateway.UNREAD_KEPT + 1  # a line per code kept, one at the cap
