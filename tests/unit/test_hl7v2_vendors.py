"""HL7 v2 as other senders write it (a probe of ~200 vendor variants found these): older
versions, the delete-null, identifier lists, visit numbers across facilities, visit times,
monitor channels that share a code, retracted and repeated results, point-of-care triggers, and
the labs and vitals the stay models read, in SI and conventional units."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from jobs.feeds.hl7_gateway import Gateway
from schemas import topics
from schemas.interop import hl7v2
from schemas.settings import Settings


def err(ack: str) -> list[str]:
    return [seg for seg in ack.split("\r") if seg.startswith("ERR")]


def tok(namespace: str, ident: str) -> str:
    return f"{namespace}|{ident}"


def outcome(text: str) -> hl7v2.Mapped | hl7v2.Refused:
    msg = hl7v2.parse(text)
    return msg if isinstance(msg, hl7v2.Refused) else hl7v2.map_message(msg, tok, source="t")


def adt(trigger: str, *segments: str, version: str = "2.5.1", sender: str = "GH") -> str:
    msh = f"MSH|^~\\&|EPIC|{sender}|WF|GH|20261101080000||ADT^{trigger}|C{trigger}|P|{version}"
    return "\r".join([msh, *segments])


def pv1(fields: dict[int, str]) -> str:
    """A PV1 segment with `fields` (PV1-n: its text) set and the rest empty."""
    return "|".join(["PV1", *(fields.get(n, "") for n in range(1, max(fields) + 1))])


def record(text: str) -> dict[str, Any]:
    o = outcome(text)
    assert isinstance(o, hl7v2.Mapped), o
    [(_, rec)] = o.records
    return rec


def oru(*obx: str, trigger: str = "R01") -> str:
    return "\r".join(
        [
            f"MSH|^~\\&|MON|ICU|WF|H|20260301101500||ORU^{trigger}|C1|P|2.5.1",
            "PID|1||MRN9^^^H^MR",
            "PV1|1|I|MICU^12^A^H",
            "OBR|1|||vitals|||20260301101000",
            *obx,
        ]
    )


AT = datetime(2026, 3, 1, 10, 10, tzinfo=UTC)


# --- ADT ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", ["2.1", "2.2"])
def test_an_old_version_admission_with_an_evn_segment_is_read_without_evn_6(version: str) -> None:
    rec = record(
        adt("A01", "EVN|A01|20261101075500", "PID|1||MRN100^^^GH^MR", "PV1|1|I|4E^412^A^GH",
            version=version)
    )  # fmt: skip
    assert rec["event_type"] == "admit" and rec["unit_id"] == "4E"
    assert rec["event_time"] == datetime(2026, 11, 1, 7, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("declared", "read_as"),
    [("2.7.1", "2.7"), ("2.9", "2.8.2"), ("2.9.1", "2.8.2"), ("2.5.2", "2.5.1"), ("", "2.5")],
)
def test_a_version_hl7apy_lacks_is_read_as_the_newest_it_has_before_it(
    declared: str, read_as: str, gateway: Gateway
) -> None:
    segments = ("EVN|A01|20261101075500", "PID|1||MRN7^^^GH^MR", "PV1|1|I|4E^412^A^GH")
    message = adt("A01", *segments, version=declared)
    msg = hl7v2.parse(message)
    assert not isinstance(msg, hl7v2.Refused), msg
    assert msg.version == read_as
    rec = record(message)
    assert rec["event_type"] == "admit" and rec["unit_id"] == "4E"
    d = gateway.decide(message.encode())
    assert d.ack_code == "AA" and len(d.records) == 1
    assert d.ack.split("\r")[0].split("|")[11] == read_as  # the ACK in the version read


def test_a_newer_versions_results_are_read() -> None:
    message = oru("OBX|1|NM|8867-4^Heart rate^LN||88|/min|||||F").replace("|P|2.5.1", "|P|2.9")
    [(topic, rec)] = outcome(message).records  # type: ignore[union-attr]
    assert topic == topics.VITALS_OBSERVATION.name and rec["heart_rate_bpm"] == 88


def test_a_message_declaring_a_version_that_is_not_hl7_v2_is_refused() -> None:
    o = outcome(adt("A01", "PID|1||MRN7^^^GH^MR", "PV1|1|I|4E", version="3.0"))
    assert isinstance(o, hl7v2.Refused)
    assert (o.ack_code, o.hl7_error) == ("AR", "203") and "not HL7 version 2" in o.reason


@pytest.mark.parametrize("pid_3", ["MRN#7", "MRN\\P\\7"])
@pytest.mark.parametrize("version", ["2.3.1", "2.4", "2.5.1", "2.6"])
def test_a_truncation_character_in_msh_2_of_a_version_before_2_7_is_read_as_its_four(
    version: str, pid_3: str
) -> None:
    """v2.7 added a fifth encoding character (MSH-2, the truncation character `#`); an engine
    set up for it sends `^~\\&#` whatever MSH-12 says. hl7apy takes five only from 2.7 and
    refused the message malformed ("Found 5 encoding chars"): an admission never reached the
    census. Before 2.7 the fifth means nothing: the message is read with the four its version
    defines, a `#` in its text being itself, and so its escape `\\P\\` (MRN\\P\\7 was read
    MRN7 once the fifth was cut: one patient, two tokens)."""
    segments = ("EVN|A01|20261101075500", f"PID|1||{pid_3}^^^GH^MR", "PV1|1|I|4E^412^A^GH")
    message = adt("A01", *segments, version=version).replace("^~\\&", "^~\\&#", 1)
    rec = record(message)
    assert (rec["event_type"], rec["unit_id"], rec["patient_token"]) == ("admit", "4E", "GH|MRN#7")


@pytest.mark.parametrize("pid_3", ["MRN\\P\\7", "MRN#7"])
def test_the_truncation_character_of_a_v2_8_message_is_read_as_itself(pid_3: str) -> None:
    """v2.7 2.7.1: `\\P\\` is the truncation character escaped (`#` in `^~\\&#`). hl7apy
    writes it back escaped (`\\E\\P\\E\\`: read as the text `\\P\\`) and a `#` the sender left
    unescaped as `\\L\\` (dropped): the record number MRN#7 was MRN\\P\\7 or MRN7, tokens of no
    patient the hospital's other feeds name."""
    segments = ("EVN|A01|20261101075500", f"PID|1||{pid_3}^^^GH^MR", "PV1|1|I|4E^412^A^GH")
    message = adt("A01", *segments, version="2.8").replace("^~\\&", "^~\\&#", 1)
    assert record(message)["patient_token"] == "GH|MRN#7"


def test_the_delete_null_is_no_value_never_a_shared_patient_encounter_or_unit() -> None:
    nulls = pv1({1: "1", 2: "I", 3: '""', 19: '""', 45: '""'})
    rec = record(adt("A03", "EVN|A03|20261101140000", "PID|1||MRN7^^^GH^MR", nulls))
    assert rec["encounter_token"] is None and rec["unit_id"] is None
    assert rec["event_time"] == datetime(2026, 11, 1, 14, 0, tzinfo=UTC)  # EVN-2, not PV1-45
    refused = outcome(adt("A01", "EVN|A01|20261101075500", 'PID|1||""', "PV1|1|I|4E"))
    assert isinstance(refused, hl7v2.Refused) and refused.reason_code == "missing_field"
    unit = outcome(adt("A01", "EVN|A01|20261101075500", "PID|1||MRN7^^^GH^MR", 'PV1|1|I|""'))
    assert isinstance(unit, hl7v2.Refused) and unit.reason_code == "missing_field"


@pytest.mark.parametrize(
    "pid_3",
    [
        "123-45-6789^^^SSA^SS~MRN100^^^GH",
        "ACC555^^^GH^AN~MRN100^^^GH^LR",
        "FIN777^^^GH^FIN NBR~MRN100^^^GH",
        "V9^^^GH^VN~MRN100^^^GH^MR",
        "943 476 5919^^^NHS^NNGBR~MRN100^^^GH",
        'MRN100^^^""^MR',
    ],
)
def test_a_visit_account_or_national_number_is_read_only_when_nothing_else_is_sent(
    pid_3: str,
) -> None:
    rec = record(adt("A08", "EVN|A08|20261101080000", f"PID|1||{pid_3}", "PV1|1|I|4E"))
    assert rec["patient_token"] == "GH|MRN100"
    alone = record(adt("A08", "EVN|A08|20261101080000", "PID|1||ACC555^^^GH^AN", "PV1|1|I|4E"))
    assert alone["patient_token"] == "GH|ACC555"


def test_an_oid_only_or_escaped_assigning_authority_keeps_its_patients_apart() -> None:
    def patient(pid_3: str) -> str:
        rec = record(adt("A08", "EVN|A08|20261101080000", f"PID|1||{pid_3}", "PV1|1|I|4E"))
        return str(rec["patient_token"])

    one = patient("MRN100^^^&2.16.840.1.113883.3.1&ISO^MR")
    two = patient("MRN100^^^&2.16.840.1.113883.3.2&ISO^MR")
    assert one == "2.16.840.1.113883.3.1|MRN100" and two != one
    assert patient("MRN100^^^A\\T\\E^MR") == "A&E|MRN100"


def test_a_visit_keeps_one_encounter_token_whatever_facility_its_locations_name() -> None:
    def visit(trigger: str, location: str) -> dict[str, Any]:
        segments = ("EVN|x|20261101080000", "PID|1||M1^^^GH^MR", pv1({3: location, 19: "V5001"}))
        return record(adt(trigger, *segments, sender="GHS"))

    admit, moved, left = (
        visit("A01", "4E^412^A^GHNORTH"),
        visit("A02", "ICU^1^A^GH2"),
        visit("A03", ""),
    )
    assert admit["encounter_token"] == moved["encounter_token"] == left["encounter_token"]
    assert admit["encounter_token"] == "GHS/visit|V5001"
    assert (admit["facility_id"], moved["facility_id"]) == ("GHNORTH", "GH2")


def test_a_facility_named_by_its_oid_alone_in_pv1_3_stays_the_senders_as_deployed() -> None:
    """PV1-3.4's namespace id (HD.1) is the facility: deployments name their capacity file's
    facilities and time zones by it, and the EHR write-back (hl7_alerts) sends facility_id back
    as HD.1. A location naming its facility by universal id alone names none here, and the
    facility is the sender's (MSH-4), as it always was (a reverted change read the OID)."""

    def admitted(location: str) -> dict[str, Any]:
        segments = ("EVN|A01|20261101080000", "PID|1||M1^^^GH^MR", pv1({2: "I", 3: location}))
        return record(adt("A01", *segments, sender="GHS"))

    assert admitted("ICU^1^A^&2.16.840.1.113883.19.5.1&ISO")["facility_id"] == "GHS"
    assert admitted("ICU^1^A^NORTH&2.16.840.1.113883.19.5.1&ISO")["facility_id"] == "NORTH"


def test_two_applications_of_one_facility_with_the_same_control_id_get_their_own_event_ids() -> (
    None
):
    segments = ("EVN|A08|20261101080000", "PID|1||M1^^^GH^MR", "PV1|1|I|4E")
    ids = {
        record(adt("A08", *segments).replace("|EPIC|", f"|{app}|"))["event_id"]
        for app in ("EPIC_ADT", "EPIC_BEDMGMT")
    }
    assert ids == {"hl7:GH/EPIC_ADT:CA08:A08", "hl7:GH/EPIC_BEDMGMT:CA08:A08"}


def test_an_a06_is_timed_when_recorded_not_at_the_encounters_emergency_arrival() -> None:
    moved_in = pv1({2: "I", 3: "4E^412^A^GH", 6: "ED^^12^GH", 44: "20261101020000"})
    rec = record(adt("A06", "EVN|A06|20261101075500", "PID|1||M1^^^GH^MR", moved_in))
    assert rec["event_type"] == "admit"
    assert rec["event_time"] == datetime(2026, 11, 1, 7, 55, tzinfo=UTC)
    a01 = record(adt("A01", "EVN|A01|20261101075500", "PID|1||M1^^^GH^MR", moved_in))
    assert a01["event_time"] == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)  # an A01's is its own


@pytest.mark.parametrize("date", ["20261101", "20261101+0000"])
def test_a_date_only_visit_time_falls_back_to_the_recorded_time(date: str) -> None:
    dated = pv1({2: "I", 3: "4E^412^A^GH", 44: date})
    rec = record(adt("A01", "EVN|A01|20261101075500", "PID|1||M1^^^GH^MR", dated))
    assert rec["event_time"] == datetime(2026, 11, 1, 7, 55, tzinfo=UTC)


@pytest.mark.parametrize(
    ("evn", "event_time", "recorded_time"),
    [
        # EVN-6 (event occurred) to the day only, as some registration systems fill it
        ("EVN|A01|20261101075500||||20261101", (7, 55), (7, 55)),
        ("EVN|A01|20261101075500||||20261101+0000", (7, 55), (7, 55)),
        # EVN-2 (recorded) to the day only: when the message was made (MSH-7) is the record's
        ("EVN|A01|20261101||||20261101073000", (7, 30), (8, 0)),
        ("EVN|A01|20261101", (8, 0), (8, 0)),
    ],
)
def test_an_admission_whose_evn_times_are_dates_alone_is_timed_by_the_next_time_not_refused(
    evn: str, event_time: tuple[int, int], recorded_time: tuple[int, int]
) -> None:
    """HL7 v2.5 3.4.1.2 and 3.4.1.6: EVN-2 and EVN-6 are TS, of any precision, a date too. A
    date alone is skipped as PV1-44's is: the admission was refused bad_value whole before
    ("a date without a time of day") and the patient never reached the census."""
    rec = record(adt("A01", evn, "PID|1||M1^^^GH^MR", pv1({2: "I", 3: "4E^412^A^GH"})))
    assert rec["event_type"] == "admit"
    assert rec["event_time"] == datetime(2026, 11, 1, *event_time, tzinfo=UTC)
    assert rec["recorded_time"] == datetime(2026, 11, 1, *recorded_time, tzinfo=UTC)


@pytest.mark.parametrize(
    ("trigger", "evn", "visit", "msh_7", "event_time"),
    [
        # EVN-6 to the day, PV1-44 (admit) on that day, late in the evening
        ("A01", "EVN|A01|20261101075500||||20261101", {44: "202611012350"}, "", (23, 50)),
        # EVN-6 to the day, EVN-2 on it (MSH-7 two days on: the message was sent later)
        ("A02", "EVN|A02|202611010900||||20261101", {}, "20261103090500", (9, 0)),
        # EVN-6 to the day, EVN-2 to the day too, MSH-7 on it
        ("A02", "EVN|A02|20261101||||20261101", {}, "20261101093000", (9, 30)),
        # EVN-6 to the day with the sender's offset: the day as written
        ("A02", "EVN|A02|202611010030-0500||||20261101-0500", {}, "", (5, 30)),
    ],
)
def test_a_date_alone_in_evn_6_or_evn_2_takes_the_next_time_written_on_that_day(
    trigger: str, evn: str, visit: dict[int, str], msh_7: str, event_time: tuple[int, int]
) -> None:
    segments = (evn, "PID|1||M1^^^GH^MR", pv1({2: "I", 3: "4E^412^A^GH", **visit}))
    text = adt(trigger, *segments)
    rec = record(text.replace("20261101080000", msh_7) if msh_7 else text)
    assert rec["event_time"] == datetime(2026, 11, 1, *event_time, tzinfo=UTC)


@pytest.mark.parametrize(
    ("trigger", "evn", "visit", "msh_7", "named"),
    [
        # transferred "on 1 November" (EVN-6): EVN-2 and MSH-7 are 3 November, not that day
        ("A02", "EVN|A02|202611030900||||20261101", {}, "20261103090500", ("EVN-6", "EVN-2")),
        # admitted "on 1 November" (EVN-6), PV1-44 says 31 October 23:50
        ("A01", "EVN|A01|202611010755||||20261101", {44: "202610312350"}, "", ("EVN-6", "PV1-44")),
        ("A03", "EVN|A03|202611010755||||20261101", {45: "202610301000"}, "", ("EVN-6", "PV1-45")),
        # EVN-2 and EVN-6 to the day, MSH-7 another day
        ("A02", "EVN|A02|20261101||||20261101", {}, "20261103090500", ("EVN-2", "MSH-7")),
    ],
)
def test_a_date_alone_in_evn_6_or_evn_2_whose_next_time_is_another_day_is_refused_naming_both(
    trigger: str, evn: str, visit: dict[int, str], msh_7: str, named: tuple[str, str]
) -> None:
    """A TS to the day is "that day, time unknown" (HL7 v2 2A.3.22): the next time the message
    gives is that time only where it falls on that day; one on another day contradicts it (a
    transfer placed on 3 November that happened on 1 November), and was taken as the event's."""
    segments = (evn, "PID|1||M1^^^GH^MR", pv1({2: "I", 3: "4E^412^A^GH", **visit}))
    text = adt(trigger, *segments)
    o = outcome(text.replace("20261101080000", msh_7) if msh_7 else text)
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value", o
    assert all(field in o.reason for field in named), o.reason
    assert "'20261101'" in o.reason, o.reason


def test_a_message_sent_days_after_its_date_alone_evn_2_is_kept_without_a_recorded_time() -> None:
    """Recorded "on 1 November" (EVN-2 to the day), sent on 3 November (MSH-7: a queue held it):
    MSH-7 is no recorded time of that day, and the recorded time is not needed where EVN-6 times
    the event; refusing it turned away a message only delayed."""
    segments = ("EVN|A02|20261101||||202611010900", "PID|1||M1^^^GH^MR", pv1({2: "I", 3: "4E"}))
    rec = record(adt("A02", *segments).replace("20261101080000", "20261103090500"))
    assert rec["event_time"] == datetime(2026, 11, 1, 9, 0, tzinfo=UTC)
    assert rec["recorded_time"] is None


def test_an_adt_event_timed_by_its_evn_is_not_refused_over_an_msh_7_offset_no_zone_has() -> None:
    """The recorded time is not needed (codec.record_time takes the event time without it): an
    MSH-7 that cannot be read is no recorded time, as in an ORU. The A02 was refused bad_value
    over MSH-7 `+2500` though EVN-6 timed it; where MSH-7 is the event's time, it still is."""
    segments = ("EVN|A02|||||20261101075500", "PID|1||M1^^^GH^MR", pv1({2: "I", 3: "4E"}))
    text = adt("A02", *segments).replace("20261101080000", "20261101080000+2500")
    rec = record(text)
    assert rec["event_time"] == datetime(2026, 11, 1, 7, 55, tzinfo=UTC)
    assert rec["recorded_time"] is None
    dated = record(text.replace("EVN|A02|||||", "EVN|A02|20261101||||"))  # EVN-2 to the day
    assert (dated["event_time"], dated["recorded_time"]) == (rec["event_time"], None)
    untimed = outcome(text.replace("|||||20261101075500", ""))
    assert isinstance(untimed, hl7v2.Refused) and untimed.reason_code == "bad_value"
    assert "+2500" in untimed.reason


def test_an_event_with_no_time_of_day_anywhere_is_refused_saying_so() -> None:
    dated = adt("A01", "EVN|A01|20261101", "PID|1||M1^^^GH^MR", pv1({3: "4E"}))
    o = outcome(dated.replace("|20261101080000|", "|20261101|"))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value"
    assert "time of day" in o.reason


def test_a_time_across_a_daylight_saving_change_takes_its_own_offset_in_the_senders_zone() -> None:
    """MSH-7 in winter time (-0500, US Eastern), a discharge stamped before the change in
    summer time (-0400): with the gateway's zone America/New_York the discharge is 02:00Z."""
    msg = hl7v2.parse(
        "MSH|^~\\&|EPIC|GH|WF|GH|20261101080000-0500||ADT^A03|D1|P|2.5.1\r"
        "EVN|A03|20261101075500\rPID|1||M1^^^GH^MR\r" + pv1({3: "4E", 45: "20261031220000"})
    )
    assert not isinstance(msg, hl7v2.Refused)
    rec = hl7v2.map_message(msg, tok, source="t", default_tz=ZoneInfo("America/New_York"))
    assert isinstance(rec, hl7v2.Mapped)
    assert rec.records[0][1]["event_time"] == datetime(2026, 11, 1, 2, 0, tzinfo=UTC)
    other = hl7v2.map_message(msg, tok, source="t", default_tz=ZoneInfo("Europe/Berlin"))
    assert isinstance(other, hl7v2.Mapped)  # another zone configured: MSH-7's offset, fixed
    assert other.records[0][1]["event_time"] == datetime(2026, 11, 1, 3, 0, tzinfo=UTC)


def test_fractional_seconds_past_four_digits_are_read_to_the_microsecond() -> None:
    assert hl7v2.hl7_time("20261101075500.123456789") == datetime(
        2026, 11, 1, 7, 55, 0, 123456, tzinfo=UTC
    )


@pytest.mark.parametrize(
    ("offset", "utc"),
    [
        ("+1245", datetime(2026, 2, 28, 21, 30, tzinfo=UTC)),  # Chatham Islands, summer
        ("+1345", datetime(2026, 2, 28, 20, 30, tzinfo=UTC)),  # Chatham Islands, daylight
        ("-0930", datetime(2026, 3, 1, 19, 45, tzinfo=UTC)),  # Marquesas
        ("+0545", datetime(2026, 3, 1, 4, 30, tzinfo=UTC)),  # Nepal
        ("+1400", datetime(2026, 2, 28, 20, 15, tzinfo=UTC)),  # Line Islands
        ("-1200", datetime(2026, 3, 1, 22, 15, tzinfo=UTC)),
        ("+1459", datetime(2026, 2, 28, 19, 16, tzinfo=UTC)),  # no zone's, but no rule's either
        ("-1459", datetime(2026, 3, 2, 1, 14, tzinfo=UTC)),
    ],
)
def test_an_offset_of_any_hour_to_14_and_minute_to_59_is_read_as_that_offset(
    offset: str, utc: datetime
) -> None:
    """HL7 v2 2A.3.22 sets no range for a time stamp's offset: any +/-HHMM to 14:59 is read
    (`_offset`), the zones of 45 and 30 minutes among them; only hours past 14 or minutes past
    59 are refused."""
    assert hl7v2.hl7_time(f"20260301101500{offset}") == utc
    for corrupt in ("+1500", "-1500", "+0060"):
        with pytest.raises(ValueError, match="no UTC offset"):
            hl7v2.hl7_time(f"20260301101500{corrupt}")


def test_a_header_time_with_an_offset_no_zone_has_is_refused_with_its_reason_never_raised() -> None:
    """An offset with hours past 14 or minutes past 59 is no zone's (`_offset`). A corrupt
    MSH-7 offset (`+2500`) made map_message raise Python's timedelta error (sender_zone read it
    outside every check), so the gateway dead-lettered the whole ORU `unmappable` with no
    reason a person could act on, its readings timed by their own OBX-14 lost with it."""
    bad = "20260301101500+2500"
    o = outcome(
        oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F|||20260301100500").replace(
            "|20260301101500|", f"|{bad}|"
        )
    )
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    [(_, rec)] = o.records  # its own time, in the gateway's zone; MSH-7 is no recorded time
    assert (rec["heart_rate_bpm"], rec["event_time"]) == (
        88,
        datetime(2026, 3, 1, 10, 5, tzinfo=UTC),
    )
    assert rec["recorded_time"] is None
    timed_by_msh = adt("A02", "PID|1||M1^^^GH^MR", pv1({3: "4E"})).replace("20261101080000", bad)
    refused = outcome(timed_by_msh)  # its only time
    assert isinstance(refused, hl7v2.Refused) and refused.reason_code == "bad_value"
    assert "+2500 is no UTC offset" in refused.reason
    with pytest.raises(ValueError, match="no UTC offset"):
        hl7v2.hl7_time("20260301101500+0075")


def test_a_message_the_mapping_cannot_handle_is_refused_alone_and_the_gateway_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = Settings.from_env({}, phi_key=b"k", payload_store=tmp_path / "payloads")
    gw = Gateway(dataclasses.replace(s), listen="test")
    message = adt("A01", "EVN|A01|20261101075500", "PID|1||M1^^^GH^MR", "PV1|1|I|4E").encode()

    def broken(*args: object, **kwargs: object) -> hl7v2.Mapped:
        raise KeyError("a case no check foresaw")

    monkeypatch.setattr(hl7v2, "map_message", broken)
    d = gw.decide(message)  # the durable policy: stored for review, AA with an error
    assert [x.reason_code for x in d.letters] == ["unmappable"] and not d.records
    assert d.letters[0].payload == message and err(d.ack)
    monkeypatch.undo()
    assert gw.decide(message).ack_code == "AA"


# --- ORU ------------------------------------------------------------------------------------


def test_two_channels_of_one_code_keep_the_first_and_dead_letter_the_other() -> None:
    o = outcome(
        oru(
            "OBX|1|NM|150344^MDC_TEMP^MDC|1.5.1.150344|38.4|268192^MDC_DIM_DEGC^MDC|||||R",
            "OBX|2|NM|150344^MDC_TEMP^MDC|1.5.2.150344|33.1|268192^MDC_DIM_DEGC^MDC|||||R",
        )
    )
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert rec["temp_c"] == pytest.approx(38.4)
    [other] = o.rejected
    assert other.refusal.reason_code == "conflicting_value" and "33.1" in other.refusal.reason


@pytest.mark.parametrize("order", [1, -1])
def test_the_ecg_heart_rate_and_a_core_temperature_are_kept_in_either_order(order: int) -> None:
    rec = record(
        oru(
            *[
                "OBX|1|NM|8867-4^Heart rate^LN||132|/min|||||F",
                "OBX|2|NM|8889-8^Heart rate by Pulse oximetry^LN||96|/min|||||F",
                "OBX|3|NM|8310-5^Body temperature^LN||38.4|Cel|||||F",
                "OBX|4|NM|8328-7^Axillary temperature^LN||36.2|Cel|||||F",
            ][::order]
        )
    )
    assert rec["heart_rate_bpm"] == 132.0 and rec["temp_c"] == pytest.approx(38.4)


@pytest.mark.parametrize("status", ["D", "W"])
def test_a_deleted_or_wrong_result_is_dead_lettered_as_retracted(status: str) -> None:
    o = outcome(
        oru(
            "OBX|1|NM|8867-4^HR^LN||88|/min|||||F",
            f"OBX|2|NM|9279-1^RR^LN||30|/min|||||{status}",
        )
    )
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert rec["heart_rate_bpm"] == 88.0 and rec.get("resp_rate_per_min") is None
    [gone] = o.rejected
    assert gone.refusal.reason_code == "retracted"
    alone = outcome(oru(f"OBX|1|NM|9279-1^RR^LN||30|/min|||||{status}"))
    assert isinstance(alone, hl7v2.Refused) and alone.reason_code == "retracted"


def test_several_values_in_one_obx_are_refused_not_the_first_taken() -> None:
    o = outcome(oru("OBX|1|NM|8867-4^HR^LN||88~90|/min|||||F", "OBX|2|NM|9279-1^RR^LN||18|/min"))
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert rec.get("heart_rate_bpm") is None and rec["resp_rate_per_min"] == 18.0
    [many] = o.rejected
    assert many.refusal.reason_code == "bad_value" and "repetitions" in many.refusal.reason


@pytest.mark.parametrize("trigger", ["R30", "R32"])
def test_point_of_care_results_are_read(trigger: str) -> None:
    rec = record(oru("OBX|1|NM|2524-7^Lactate^LN||4.2|mmol/L|||||F", trigger=trigger))
    assert rec["lactate_mmol_l"] == pytest.approx(4.2)


LABS = [
    ("2345-7", "7.0", "mmol/L", "glucose_mg_dl", 126.112),
    ("2339-0", "126", "mg/dL", "glucose_mg_dl", 126.0),
    ("3094-0", "7.1", "mmol/L", "bun_mg_dl", 19.8871),
    ("3094-0", "20", "mg/dL", "bun_mg_dl", 20.0),
    ("2028-9", "24", "mmol/L", "hco3_mmol_l", 24.0),
    ("1963-8", "22", "meq/L", "hco3_mmol_l", 22.0),
    ("2823-3", "4.1", "mEq/L", "potassium_mmol_l", 4.1),
    ("2951-2", "139", "mmol/L", "sodium_mmol_l", 139.0),
    ("19123-9", "2.0", "mg/dL", "magnesium_mmol_l", 0.8228),
    ("2601-3", "0.8", "mmol/L", "magnesium_mmol_l", 0.8),
    ("4544-3", "0.36", "L/L", "hematocrit_pct", 36.0),
    ("1751-7", "32", "g/L", "albumin_g_dl", 3.2),
    ("1742-6", "45", "U/L", "alt_iu_l", 45.0),
    ("1920-8", "0.5", "ukat/L", "ast_iu_l", 30.0),
    ("6768-6", "110", "IU/L", "alp_iu_l", 110.0),
    ("67151-1", "52", "ng/L", "troponin_t_ug_l", 0.052),
    ("10839-9", "0.4", "ng/mL", "troponin_i_ng_ml", 0.4),
    ("2703-7", "10.0", "kPa", "pao2_mmhg", 75.0062),
    ("2019-8", "5.3", "kPa", "paco2_mmhg", 39.7533),
    ("2744-1", "7.31", "", "ph", 7.31),
    ("14682-9", "265", "umol/L", "creatinine_mg_dl", 2.99706),
    ("14631-6", "34.2", "umol/L", "bilirubin_total_mg_dl", 2.0),
    ("2093-3", "5.0", "mmol/L", "cholesterol_mg_dl", 193.35),
]


@pytest.fixture
def gateway(tmp_path: Path) -> Gateway:
    s = Settings.from_env({}, phi_key=b"k", payload_store=tmp_path / "payloads")
    return Gateway(s, listen="test")


@pytest.mark.parametrize(("code", "value", "unit", "field", "expected"), LABS)
def test_the_stay_models_labs_are_read_in_si_and_conventional_units(
    code: str, value: str, unit: str, field: str, expected: float, gateway: Gateway
) -> None:
    message = oru(f"OBX|1|NM|{code}^lab^LN||{value}|{unit}|||||F")
    o = outcome(message)
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    [(topic, rec)] = o.records
    assert topic == topics.LABS_RESULT.name
    assert rec[field] == pytest.approx(expected, rel=1e-4)
    d = gateway.decide(message.encode())  # and the record encodes in its topic's schema
    assert (d.ack_code, d.letters, len(d.records)) == ("AA", [], 1)


def test_a_lab_result_without_an_order_time_takes_its_specimens_collection_time() -> None:
    def lab(obr_7: str) -> str:
        return "\r".join(
            [
                "MSH|^~\\&|LIS|H|WF|H|20260301140000||ORU^R01|L1|P|2.5.1",
                "PID|1||MRN9^^^H^MR",
                "PV1|1|I|MICU^12^A^H",
                f"OBR|1|||lactate|||{obr_7}",
                "OBX|1|NM|2524-7^Lactate^LN||3.1|mmol/L|||||F",
                "SPM|1|||BLDA|||||||||||||20260301091500^20260301091600",
                "OBR|2|||creatinine",  # another order, whose specimen says no time
                "OBX|1|NM|2160-0^Creatinine^LN||1.4|mg/dL|||||F",
                "SPM|1|||SER",
            ]
        )

    o = outcome(lab(""))
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    times = sorted(rec["event_time"] for _, rec in o.records)
    assert times == [datetime(2026, 3, 1, 9, 15, tzinfo=UTC), datetime(2026, 3, 1, 14, tzinfo=UTC)]
    [(_, rec)] = outcome(lab("20260301091000")).records[:1]  # type: ignore[union-attr]
    assert rec["event_time"] == datetime(2026, 3, 1, 9, 10, tzinfo=UTC)  # the OBR's own first


def test_a_gcs_total_that_is_not_a_whole_number_is_refused() -> None:
    o = outcome(oru("OBX|1|NM|9269-2^GCS total^LN||9.5||||||F", "OBX|2|NM|9279-1^RR^LN||18|/min"))
    assert isinstance(o, hl7v2.Mapped)
    [bad] = o.rejected
    assert bad.refusal.reason_code == "bad_value" and "whole number" in bad.refusal.reason


def test_the_stay_models_vitals_and_a_ventilators_fio2_are_read(gateway: Gateway) -> None:
    message = oru(
        "OBX|1|NM|9269-2^GCS total^LN||9||||||F",
        "OBX|2|NM|29463-7^Body weight^LN||176|[lb_av]|||||F",
        "OBX|3|NM|9187-6^Urine output^LN||0.35|L|||||F",
        "OBX|4|NM|152196^MDC_CONC_AWAY_O2_INSP^MDC||40|262688^MDC_DIM_PERCENT^MDC|||||R",
    )
    d = gateway.decide(message.encode())  # the record encodes in its topic's schema
    assert (d.ack_code, d.letters, len(d.records)) == ("AA", [], 1)
    rec = record(message)
    assert rec["gcs_total"] == 9 and isinstance(rec["gcs_total"], int)  # its field's type
    assert rec["weight_kg"] == pytest.approx(79.8323, rel=1e-4)
    assert rec["urine_output_ml"] == pytest.approx(350.0)
    assert rec["fio2_fraction"] == pytest.approx(0.4)


def test_a_unit_sent_only_as_text_is_read_where_the_code_takes_it() -> None:
    rec = record(
        oru(
            "OBX|1|NM|8310-5^Temp^LN||101.3|^deg F|||||F",
            "OBX|2|NM|8867-4^HR^LN||88|^bpm^MDC|||||F",
        )
    )
    assert rec["temp_c"] == pytest.approx(38.5) and rec["heart_rate_bpm"] == 88.0
    platelets = record(oru("OBX|1|NM|777-3^Platelets^LN||210|^K/uL|||||F"))
    assert platelets["platelets_10e9_l"] == pytest.approx(210.0)


@pytest.mark.parametrize(("sent", "fraction"), [("0.4", 0.4), ("40", 0.4), ("1", 1.0)])
def test_an_fio2_without_a_unit_is_a_fraction_up_to_1_and_a_percentage_above(
    sent: str, fraction: float
) -> None:
    rec = record(oru(f"OBX|1|NM|3150-0^FiO2^LN||{sent}||||||F"))
    assert rec["fio2_fraction"] == pytest.approx(fraction)
    o = outcome(oru("OBX|1|NM|3150-0^FiO2^LN||5||||||F", "OBX|2|NM|9279-1^RR^LN||18|/min"))
    assert isinstance(o, hl7v2.Mapped) and o.rejected[0].refusal.reason_code == "out_of_range"


def test_the_final_result_replaces_a_preliminary_one_and_a_null_time_falls_back() -> None:
    rec = record(
        oru(
            'OBX|1|NM|2524-7^Lactate^LN||2.1|mmol/L|||||P|||""',
            "OBX|2|NM|2524-7^Lactate^LN||4.3|mmol/L|||||F",
        )
    )
    assert rec["lactate_mmol_l"] == pytest.approx(4.3)  # the final, not the preliminary
    assert rec["event_time"] == AT  # OBX-14 "" is no time: the OBR's


@pytest.mark.parametrize("order", [1, -1])
def test_a_measured_bicarbonate_is_kept_over_a_total_co2(order: int) -> None:
    rec = record(
        oru(
            *[
                "OBX|1|NM|1963-8^HCO3^LN||22|mmol/L|||||F",
                "OBX|2|NM|2028-9^CO2 total^LN||24|mmol/L|||||F",
            ][::order]
        )
    )
    assert rec["hco3_mmol_l"] == 22.0
