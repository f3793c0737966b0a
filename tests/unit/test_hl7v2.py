from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from schemas import codec, topics
from schemas.interop import hl7v2
from udfs import census

DATA = Path(__file__).resolve().parents[3] / "shared" / "data" / "hl7v2"
needs_data = pytest.mark.skipif(not DATA.exists(), reason="../shared/data/hl7v2 is not here")


def tok(namespace: str, ident: str) -> str:
    return f"{namespace}|{ident}"


def outcome(
    text: str, bed_units: frozenset[tuple[str, str]] | None = None
) -> hl7v2.Mapped | hl7v2.Refused:
    msg = hl7v2.parse(text)
    if isinstance(msg, hl7v2.Refused):
        return msg
    return hl7v2.map_message(msg, tok, source="t", bed_units=bed_units)


def sample(name: str) -> str:
    return (DATA / name).read_bytes().decode("utf-8")


# What every sample in ../shared/data/hl7v2 must become: canonical event type(s) or refusal code.
EXPECTED = {
    "ADT-A01-01.hl7": "admit",
    "ADT-A01-02.hl7": "admit",
    "ADT-A02-01.hl7": "transfer",
    "ADT-A02-02.hl7": "transfer",
    "ADT-A03-01.hl7": "discharge",
    "ADT-A03-02.hl7": "discharge",
    "ADT-A04-01.hl7": "register",
    "ADT-A04-02.hl7": "register",
    "ADT-A05-01.hl7": "preadmit",
    "ADT-A06-01.hl7": "admit",
    "ADT-A07-01.hl7": "discharge",
    "ADT-A08-01.hl7": "update",
    "ADT-A08-02.hl7": "update",
    "ADT-A09-01.hl7": "refused:unsupported_event",
    "ADT-A10-01.hl7": "refused:unsupported_event",
    "ADT-A11-01.hl7": "cancel_admit",
    "ADT-A11-02.hl7": "cancel_admit",
    "ADT-A13-01.hl7": "cancel_discharge",
    "ADT-A13-02.hl7": "cancel_discharge",
    "ADT01-23.hl7": "admit",
    "ADT01-28.hl7": "admit",
    "ADT04-23.hl7": "register",
    "ADT04-251.hl7": "register",
    "ADT04-28.hl7": "register",
    "LAB-ORU-1.hl7": "labs",  # hematocrit (20570-8); its cell counts use morphology codes
    "LAB-ORU-2.hl7": "labs",
    "LRI_2.0-NG_CBC_Typ_Message.hl7": "labs",
    "ORU-R01-01.hl7": "refused:bad_value",  # PRT left out; OBX-5 a URL (RP), no number
    "ORU-R01-RMGEAD.hl7": "labs",  # a fasting glucose (1554-5), SN ^182 mg/dl
}


def reading(text: str) -> dict[str, Any]:
    """The one record a message maps to, every value of it read."""
    o = outcome(text)
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    [(_, rec)] = o.records
    return rec


def partly_read(text: str) -> tuple[dict[str, Any], list[hl7v2.Rejected]]:
    """The one record a message maps to, and the values rejected from it."""
    o = outcome(text)
    assert isinstance(o, hl7v2.Mapped), o
    [(_, rec)] = o.records
    return rec, o.rejected


def summary(o: hl7v2.Mapped | hl7v2.Refused) -> str:
    if isinstance(o, hl7v2.Refused):
        return f"refused:{o.reason_code}"
    (topic, rec), *_ = o.records
    return rec["event_type"] if topic == topics.ADT_EVENT.name else topic.split(".")[0]


@needs_data
def test_every_sample_message_maps_or_is_refused_with_a_stated_reason() -> None:
    names = sorted(p.name for p in DATA.glob("*.hl7"))
    assert names == sorted(EXPECTED)
    for name in names:
        o = outcome(sample(name))
        assert summary(o) == EXPECTED[name], name
        if isinstance(o, hl7v2.Refused):
            assert o.reason and o.ack_code in ("AE", "AR")


@needs_data
def test_an_admission_carries_unit_bed_visit_and_the_event_occurred_time() -> None:
    o = outcome(sample("ADT01-23.hl7"))
    assert isinstance(o, hl7v2.Mapped)
    [(topic, rec)] = o.records
    assert topic == topics.ADT_EVENT.name
    assert rec["patient_token"] == "1|10006579"  # PID-3 MR, assigning authority 1
    # PV1-3 PREOP^101^1: room 101, bed 1
    assert (rec["facility_id"], rec["unit_id"], rec["bed_id"]) == ("1", "PREOP", "101-1")
    assert rec["encounter_token"] == "1/visit|40007716"
    assert rec["event_time"] == datetime(2005, 1, 9, 21, 55, 2, tzinfo=UTC)  # +0700 in EVN-2


@needs_data
def test_an_admission_carries_the_patients_age_at_the_event_and_sex_never_the_birth_date() -> None:
    rec = reading(sample("ADT01-23.hl7"))  # PID-7 19241010, PID-8 M, admitted 2005-01-09
    assert (rec["age_years"], rec["female"]) == (80.0, False)  # whole years
    assert "19241010" not in repr(rec)
    assert codec.decode(topics.ADT_EVENT.schema, codec.encode(topics.ADT_EVENT.schema, rec)) == rec


def adt(pid_7: str, pid_8: str, version: str = "2.5.1") -> str:
    return (
        f"MSH|^~\\&|A|H|||20260301101500||ADT^A01|X1|P|{version}\r"
        "EVN|A01|20260301101500\r"
        f"PID|1||9^^^H^MR||DOE^JANE||{pid_7}|{pid_8}\r"
        "PV1|1|I|ICU^1^A"
    )


@pytest.mark.parametrize(
    ("pid_7", "pid_8", "age_years", "female"),
    [
        ("19600301", "F", 66.0, True),  # a birthday on the day of the event
        ("19600302", "F", 65.0, True),  # and the day after it
        ("196003", "F", 65.0, True),  # a month: from its middle
        ("1930", "M", 90.0, False),  # over 89: 90 (HIPAA Safe Harbor)
        ("19600301083000+0100", "U", 66.0, None),  # a time of birth; sex unknown
        ("20260302", "A", None, None),  # born after the event; ambiguous sex
        ("19600230", "X", None, None),  # no day of the calendar
        ("", "", None, None),
    ],
)
def test_a_birth_date_gives_the_age_at_the_event_and_pid_8_the_sex_and_neither_refuses(
    pid_7: str, pid_8: str, age_years: float | None, female: bool | None
) -> None:
    rec = reading(adt(pid_7, pid_8))
    assert rec["event_type"] == "admit"
    assert (rec["age_years"], rec["female"]) == (age_years, female)


def test_the_age_is_taken_on_the_day_the_visit_began_as_the_sender_dates_it() -> None:
    """PV1-44 (admitted the day before the 66th birthday) holds through the stay, so a birthday
    between two messages does not date the birth; a newborn admitted at 00:45 +01:00 on the
    day of birth is 0, not unknown (its UTC day is the day before)."""
    later = adt("19600301", "F").replace(
        "PV1|1|I|ICU^1^A", "PV1|1|I|ICU^1^A" + "|" * 41 + "202602281800"
    )
    assert reading(later)["age_years"] == 65.0
    newborn = (
        "MSH|^~\\&|A|H|||202603010045+0100||ADT^A01|X2|P|2.5.1\r"
        "EVN|A01|202603010045+0100\r"
        "PID|1||8^^^H^MR||DOE^BABY||202603010020+0100|F\r"
        "PV1|1|I|NICU^1^A"
    )
    assert reading(newborn)["age_years"] == 0.0


def test_an_update_of_a_visit_that_is_over_gives_the_sex_and_no_age() -> None:
    """A billing A08 of a 2019 visit (PV1-44 and PV1-45 set): its start's age is not the
    patient's now, and the feature store keeps the latest received."""
    old_visit = adt("19600301", "F").replace("ADT^A01", "ADT^A08").replace("EVN|A01", "EVN|A08")
    old_visit = old_visit.replace(
        "PV1|1|I|ICU^1^A", "PV1|1|I|ICU^1^A" + "|" * 41 + "201901100800|201901200800"
    )
    rec = reading(old_visit)
    assert (rec["event_type"], rec["age_years"], rec["female"]) == ("update", None, True)


def test_pid_8_as_a_coded_element_of_v2_7_is_read_by_its_code() -> None:
    rec = reading(adt("19600301", "F^Female^HL70001", version="2.7"))
    assert rec["female"] is True


@needs_data
def test_a_cbc_result_becomes_labs_in_the_screen_units() -> None:
    o = outcome(sample("LRI_2.0-NG_CBC_Typ_Message.hl7"))
    assert isinstance(o, hl7v2.Mapped)
    [(topic, rec)] = o.records
    assert topic == topics.LABS_RESULT.name
    assert rec["wbc_10e9_l"] == pytest.approx(105.6)  # 105600 {cells}/uL
    assert rec["platelets_10e9_l"] == pytest.approx(210.0)


def oru(obx: str) -> str:
    return "\r".join(
        [
            "MSH|^~\\&|MON|ICU|WF|H|20260301101500||ORU^R01|C1|P|2.5.1",
            "PID|1||MRN9^^^H^MR",
            "PV1|1|I|MICU^12^A^H",
            "OBR|1|||vitals|||20260301101000",
            obx,
        ]
    )


def test_oru_vital_signs_convert_units_and_use_the_observation_time() -> None:
    msg = oru(
        "OBX|1|NM|8867-4^Heart rate^LN||118|/min|||||F|||20260301100500+0100\r"
        "OBX|2|NM|8310-5^Temp^LN||101.3|[degF]|||||F"
    )
    o = outcome(msg)
    assert isinstance(o, hl7v2.Mapped) and not o.rejected
    hr, temp = (rec for _, rec in o.records)
    assert {t for t, _ in o.records} == {topics.VITALS_OBSERVATION.name}
    assert hr["heart_rate_bpm"] == 118 and "temp_c" not in hr
    assert hr["event_time"] == datetime(2026, 3, 1, 9, 5, tzinfo=UTC)  # its own OBX-14
    assert temp["temp_c"] == pytest.approx(38.5)
    assert temp["event_time"] == datetime(2026, 3, 1, 10, 10, tzinfo=UTC)  # no OBX-14: OBR-7
    assert (hr["facility_id"], hr["unit_id"]) == ("H", "MICU")


def test_a_result_released_after_it_was_taken_is_timed_when_it_was_released() -> None:
    """A lab is resulted hours after its specimen was drawn (and a reading charted after it was
    taken): MSH-7, when the message was made, is its recorded time and so its Kafka timestamp."""
    drawn = oru("OBX|1|NM|2524-7^Lactate^LN||4.1|mmol/L|||||F|||20260301060000").replace(
        "20260301101500", "20260301110500"
    )
    o = outcome(drawn)
    assert isinstance(o, hl7v2.Mapped)
    [(topic, rec)] = o.records
    assert topic == topics.LABS_RESULT.name
    assert rec["event_time"] == datetime(2026, 3, 1, 6, tzinfo=UTC)
    assert rec["recorded_time"] == datetime(2026, 3, 1, 11, 5, tzinfo=UTC)
    assert codec.record_time(rec) == rec["recorded_time"]
    assert codec.validate(topics.LABS_RESULT.schema, rec) is None


def test_the_same_vital_at_several_observation_times_becomes_one_record_per_time() -> None:
    msg = oru(
        "OBX|1|NM|8867-4^Heart rate^LN||96|/min|||||F|||20260301100000\r"
        "OBX|2|NM|8480-6^SBP^LN||104|mm[Hg]|||||F|||20260301100000\r"
        "OBX|3|NM|8867-4^Heart rate^LN||112|/min|||||F|||20260301100500\r"
        "OBX|4|NM|8867-4^Heart rate^LN||124|/min|||||F|||20260301101000\r"
        "OBX|5|NM|8480-6^SBP^LN||88|mm[Hg]|||||F|||20260301101000"
    )
    o = outcome(msg)
    assert isinstance(o, hl7v2.Mapped)
    got = [
        (r["event_time"].strftime("%H:%M"), r.get("heart_rate_bpm"), r.get("sbp_mmhg"))
        for _, r in o.records
    ]
    assert got == [("10:00", 96, 104), ("10:05", 112, None), ("10:10", 124, 88)]
    ids = [r["observation_id"] for _, r in o.records]
    assert len(set(ids)) == 3 and all(i.startswith("hl7:ICU/MON:C1:vitals@2026") for i in ids)
    again = outcome(msg)
    assert isinstance(again, hl7v2.Mapped)
    assert ids == [r["observation_id"] for _, r in again.records]  # stable on resend


def test_one_value_in_a_unit_its_code_does_not_take_is_rejected_alone() -> None:
    rec, rejected = partly_read(
        oru(
            "OBX|1|NM|8867-4^Heart rate^LN||118|beats|||||F|||20260301100000\r"
            "OBX|2|NM|9279-1^Resp rate^LN||26|/min|||||F|||20260301100000\r"
            "OBX|3|NM|8310-5^Temp^LN||38.9|Cel|||||F|||20260301100000"
        )
    )
    assert (rec["resp_rate_per_min"], rec["temp_c"]) == (26, 38.9) and "heart_rate_bpm" not in rec
    [bad] = rejected
    assert (bad.label, bad.refusal.reason_code, bad.refusal.hl7_error) == (
        "OBX 1 (8867-4)",
        "bad_value",
        "102",
    )
    assert bad.payload.startswith(b"OBX|1|NM|8867-4") and b"MRN9" not in bad.payload


def test_monitor_units_that_cannot_mean_anything_else_are_read() -> None:
    rec = reading(
        oru(
            "OBX|1|NM|8867-4^Heart rate^LN||118|bpm|||||F\r"
            "OBX|2|NM|8310-5^Temp^LN||38.2|degC|||||F\r"
            "OBX|3|NM|3151-8^O2 flow^LN||2|L/min|||||F"
        )
    )
    assert (rec["heart_rate_bpm"], rec["temp_c"], rec["on_supplemental_o2"]) == (118, 38.2, True)


def test_a_message_whose_only_values_cannot_be_read_is_a_data_type_error() -> None:
    o = outcome(oru("OBX|1|NM|8867-4^Heart rate^LN||118|mmHg|||||F"))
    assert isinstance(o, hl7v2.Refused)
    assert (o.reason_code, o.hl7_error) == ("bad_value", "102")


def test_a_deleted_result_is_dead_lettered_as_retracted() -> None:
    o = outcome(oru("OBX|1|NM|8867-4^Heart rate^LN||118|/min|||||D"))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "retracted"


def test_text_that_is_not_hl7_is_refused_as_malformed() -> None:
    o = outcome("hello")
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "malformed"


def test_an_admission_without_a_unit_is_refused() -> None:
    msg = "MSH|^~\\&|A|H|||20260301||ADT^A01|X1|P|2.5\rEVN|A01|20260301\rPID|1||9^^^H^MR\rPV1|1|I"
    o = outcome(msg)
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "missing_field"


def test_time_stamps_honour_offsets_precision_and_the_default_zone() -> None:
    assert hl7v2.hl7_time("20260301101500.25-0500") == datetime(
        2026, 3, 1, 15, 15, 0, 250000, tzinfo=UTC
    )
    assert hl7v2.hl7_time("2026030110") == datetime(2026, 3, 1, 10, tzinfo=UTC)
    with pytest.raises(ValueError, match="without a time of day"):
        hl7v2.hl7_time("20260301")  # a date cannot be placed in a patient's timeline
    summer = hl7v2.hl7_time("20260701120000", ZoneInfo("Europe/London"))
    assert summer == datetime(2026, 7, 1, 11, 0, tzinfo=UTC)
    with pytest.raises(ValueError):
        hl7v2.hl7_time("2026-03-01")


@needs_data
def test_acks_quote_the_control_id_and_carry_an_error_for_refusals() -> None:
    msg = hl7v2.parse(sample("ADT-A09-01.hl7"))
    assert not isinstance(msg, hl7v2.Refused)
    ack = hl7v2.ack(msg, "AR", "not a census event", "201").split("\r")
    # MSH-9 names the trigger answered and the ACK structure (v2.5.1 2.14.1)
    assert ack[0].split("|")[8] == "ACK^A09^ACK" and ack[0].split("|")[11] == "2.8"
    assert ack[1].startswith("MSA|AR|MSG00009|")
    assert ack[2] == "ERR|||201^^HL70357|E"
    bad = hl7v2.ack(None, "AE", "x", "100", raw="MSH|^~\\&|A|B|C|D|2026||ADT^A01|CTL7|P|2.3")
    assert "MSA|AE|CTL7|x" in bad and "|ACK|" in bad  # unparsed: no trigger to name


def adt_message(msh9: str, *, pid3: str = "MRN1^^^H^MR", evn: bool = True, pv1: str = "") -> str:
    segments = [f"MSH|^~\\&|ADT|H|WF|H|20260301080000||{msh9}|Q1|P|2.5.1"]
    if evn:
        segments.append("EVN|A01|20260301075500")
    segments += [f"PID|1||{pid3}", pv1 or "PV1|1|I|4E^12^A^H"]
    return "\r".join(segments)


def test_a_leave_of_absence_and_the_return_keep_the_patients_bed_held() -> None:
    """HL7 v2.5 3.3.21: a patient on leave of absence still has a bed assigned. A21, A22 and
    their cancels A52, A53 were refused (AR 201); now they change nothing, whatever PV1-3 names
    (a unit alone, a pseudo-unit for patients away, nothing)."""
    placement = census.PatientPlacement()
    seen = []
    steps = (
        ("A01", "PV1|1|I|4E^12^A^H"),
        ("A21", "PV1|1|I|4E^^^H"),  # the unit only: the bed is still theirs
        ("A52", "PV1|1|I|4E^12^A^H"),
        ("A21", "PV1|1|I|LOA^^^H"),  # a sender's unit for patients away
        ("A22", "PV1|1|I"),
        ("A53", "PV1|1|I|4E^12^A^H"),
        ("A03", "PV1|1|I|4E^12^A^H"),
    )
    for minute, (trigger, pv1) in enumerate(steps):
        o = outcome(adt_message(f"ADT^{trigger}", pv1=pv1).replace("|Q1|", f"|Q{minute}|"))
        assert isinstance(o, hl7v2.Mapped), o
        [(_, record)] = o.records
        before = placement.place
        result, deltas = placement.apply(census.AdtEvent.of(record, minute * 60_000))
        seen.append((record["event_type"], result.status, [d.occupied for d in deltas]))
        if trigger != "A01" and trigger != "A03":
            assert placement.place == before  # the bed, 4E 12, held
    assert seen == [
        ("admit", "applied", [1]),
        ("leave_of_absence", "no_change", []),
        ("return_from_leave", "no_change", []),
        ("leave_of_absence", "no_change", []),
        ("return_from_leave", "no_change", []),
        ("leave_of_absence", "no_change", []),
        ("discharge", "applied", [-1]),
    ]


def merge_message(trigger: str, *pairs: str, version: str = "2.5.1", control: str = "Q9") -> str:
    """A merge message: after MSH and EVN, each `pairs` item the segments of one merge."""
    return "\r".join(
        [
            f"MSH|^~\\&|ADT|H|WF|H|20260301100000||ADT^{trigger}|{control}|P|{version}",
            f"EVN|{trigger}|20260301100000",
            *pairs,
        ]
    )


def test_a_trauma_alias_merged_into_the_patients_record_hands_its_bed_to_that_record() -> None:
    """HL7 v2.5 3.3.40: an A40 merges the record MRG-1 names into the one PID-3 names. It was
    refused (AR 201), so a trauma alias kept its ICU bed in the census for ever, and the
    patient's transfers under their own record were refused `not_admitted`. Now it is two
    events: the alias's bed freed, the record placed where PV1-3 says; the census counts the
    patient once, and no arrival or discharge."""
    alias, record = census.PatientPlacement(), census.PatientPlacement()
    admit = outcome(adt_message("ADT^A01", pid3="T9001^^^H^MR", pv1="PV1|1|I|ICU^2^A^H"))
    assert isinstance(admit, hl7v2.Mapped)
    [(_, admitted)] = admit.records
    alias.apply(census.AdtEvent.of(admitted, 0))
    merge = outcome(
        merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T9001^^^H^MR", "PV1|1|I|ICU^2^A^H")
    )
    assert isinstance(merge, hl7v2.Mapped), merge
    (_, away), (_, into) = merge.records
    assert (away["event_type"], away["patient_token"]) == ("merged_away", admitted["patient_token"])
    assert (into["event_type"], into["patient_token"]) == ("merged_in", tok("H", "MRN1"))
    assert away["event_id"] != into["event_id"] and away["event_time"] == into["event_time"]
    assert (into["unit_id"], into["bed_id"]) == ("ICU", "2-A")  # room 2, bed A
    freed, off = alias.apply(census.AdtEvent.of(away, 60_000))
    placed, on = record.apply(census.AdtEvent.of(into, 60_000))
    assert (freed.status, placed.status) == ("applied", "applied")
    assert alias.place is None and record.place == census.Place("H", "ICU", "2-A")
    assert [(d.unit_id, d.occupied) for d in off + on] == [("ICU", -1), ("ICU", +1)]
    assert not any(
        d.arrivals or d.discharges or d.transfers_in or d.transfers_out for d in off + on
    )
    transfer = outcome(adt_message("ADT^A02", pv1="PV1|1|I|4E^12^A^H"))
    assert isinstance(transfer, hl7v2.Mapped)
    [(_, moved)] = transfer.records
    assert record.apply(census.AdtEvent.of(moved, 120_000))[0].status == "applied"
    # the alias's later cancel of its admission finds a merge, not the admission, last
    cancel = outcome(adt_message("ADT^A11", pid3="T9001^^^H^MR"))
    assert isinstance(cancel, hl7v2.Mapped)
    [(_, cancelled)] = cancel.records
    assert alias.apply(census.AdtEvent.of(cancelled, 180_000))[0].status == "nothing_to_cancel"


def test_a_merge_that_does_not_say_where_the_patient_is_moves_no_one() -> None:
    """Without a PV1 (an identity team's merge; v2.3's A34 and A36 have none), with a
    discharged visit's (PV1-45: a merge of past records) or an outpatient visit's (PV1-2), the
    merge does not say where the patient is: the merged record keeps its
    bed (the survivor's transfers are refused `not_admitted`, as before merges were read) and
    no bed is added that no discharge would free."""
    no_pv1 = merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T9001^^^H^MR")
    past = merge_message(
        "A40", "PID|1||MRN1^^^H^MR", "MRG|T9001^^^H^MR", "PV1|1|I|ICU^2^A^H" + "|" * 42 + "2026"
    )
    outpatient = merge_message(  # PV1-2 O: an outpatient visit, in no bed
        "A40", "PID|1||MRN1^^^H^MR", "MRG|T9001^^^H^MR", "PV1|1|O|ICU^2^A^H"
    )
    for message in (no_pv1, past, outpatient):
        merge = outcome(message)
        assert isinstance(merge, hl7v2.Mapped)
        (_, away), (_, into) = merge.records
        assert away["unit_id"] is None and into["unit_id"] is None
        alias = census.PatientPlacement(census.Place("H", "ICU", "2"))
        record = census.PatientPlacement()
        assert alias.apply(census.AdtEvent.of(away, 0)) == (
            census.Outcome(
                "no_change", "the merge does not say where the patient is: the bed is kept"
            ),
            [],
        )
        assert record.apply(census.AdtEvent.of(into, 0))[0].status == "no_change"
        assert alias.place == census.Place("H", "ICU", "2") and record.place is None
    # a duplicate registration that held no bed: nothing to free
    merge = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T9^^^H^MR", "PV1|1|I|4E^^^H"))
    assert isinstance(merge, hl7v2.Mapped)
    (_, away), _ = merge.records
    assert census.PatientPlacement().apply(census.AdtEvent.of(away, 0))[0].status == "no_change"


def test_the_merged_record_is_read_from_the_field_its_own_messages_named_it_by() -> None:
    """MRG-1 is the prior PID-3 and MRG-4 the prior PID-2, which a patient's token comes from
    only where PID-3 is empty: read by MRG-4 beside a PID-3, the alias's token would be another
    than its admission's, its bed kept and the survivor placed too."""
    by_pid3 = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|||||"))
    assert isinstance(by_pid3, hl7v2.Refused) and "MRG-1" in by_pid3.reason
    with_external = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T9^^^H^MR|||EXT9"))
    assert isinstance(with_external, hl7v2.Mapped)
    assert with_external.records[0][1]["patient_token"] == tok("H", "T9")
    by_pid2 = outcome(
        merge_message("A34", "PID|1|MRN1^^^H||", "MRG||||T9^^^H", version="2.3")  # v2.3 PID-2
    )
    assert isinstance(by_pid2, hl7v2.Mapped), by_pid2
    assert [r["patient_token"] for _, r in by_pid2.records] == [tok("H", "T9"), tok("H", "MRN1")]


def test_older_merge_triggers_and_repeated_merges_are_each_two_events() -> None:
    """A18 (v2.2), A34 and A36 (v2.3) name the merged record in MRG-1 too; an A40 may repeat
    its PID and MRG for several merges (HL7 v2.5 3.3.40), each its own pair of events."""
    for trigger, version in (
        ("A18", "2.2"), ("A34", "2.3"), ("A36", "2.3"), ("A40", "2.3.1"), ("A47", "2.5.1")
    ):  # fmt: skip
        o = outcome(merge_message(trigger, "PID|1||MRN1^^^H", "MRG|T9001^^^H", version=version))
        assert isinstance(o, hl7v2.Mapped), (trigger, o)
        assert [(r["event_type"], r["patient_token"]) for _, r in o.records] == [
            ("merged_away", tok("H", "T9001")),
            ("merged_in", tok("H", "MRN1")),
        ]
    two = outcome(
        merge_message(
            "A40", "PID|1||MRN1^^^H^MR", "MRG|T1^^^H^MR", "PID|2||MRN2^^^H^MR", "MRG|T2^^^H^MR"
        )
    )
    assert isinstance(two, hl7v2.Mapped)
    assert [(r["event_type"], r["patient_token"]) for _, r in two.records] == [
        ("merged_away", tok("H", "T1")),
        ("merged_in", tok("H", "MRN1")),
        ("merged_away", tok("H", "T2")),
        ("merged_in", tok("H", "MRN2")),
    ]
    assert len({r["event_id"] for _, r in two.records}) == 4


def test_a_merge_that_does_not_say_what_is_merged_is_refused_whole() -> None:
    no_mrg = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "PV1|1|I|ICU^2^A^H"))
    assert isinstance(no_mrg, hl7v2.Refused)
    assert (no_mrg.reason_code, no_mrg.hl7_error) == ("missing_field", "101")
    assert "MRG-1" in no_mrg.reason
    itself = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|MRN1^^^H^MR"))
    assert isinstance(itself, hl7v2.Refused) and itself.reason_code == "bad_value"
    two_mrg = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T1^^^H^MR", "MRG|T2^^^H^MR"))
    assert isinstance(two_mrg, hl7v2.Refused) and two_mrg.reason_code == "malformed"
    first_empty = outcome(merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|", "MRG|T2^^^H^MR"))
    assert isinstance(first_empty, hl7v2.Refused) and first_empty.reason_code == "malformed"
    # one bad merge of two: nothing of the message is stored
    second_bad = outcome(
        merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T1^^^H^MR", "PID|2||MRN2^^^H^MR")
    )
    assert isinstance(second_bad, hl7v2.Refused) and "merge 2 of 2" in second_bad.reason
    # a merge of accounts or visits moves no patient: not a census event
    account = outcome(merge_message("A41", "PID|1||MRN1^^^H^MR", "MRG|T1^^^H^MR"))
    assert isinstance(account, hl7v2.Refused) and account.reason_code == "unsupported_event"


def test_the_header_is_checked_before_the_patient() -> None:
    no_type = outcome(adt_message("", pid3=""))
    assert isinstance(no_type, hl7v2.Refused)
    assert (no_type.reason_code, no_type.hl7_error) == ("missing_field", "101")
    assert "MSH-9" in no_type.reason
    unsupported = outcome(adt_message("ADT^A31", pid3=""))  # update person
    assert isinstance(unsupported, hl7v2.Refused)
    assert (unsupported.ack_code, unsupported.reason_code) == ("AR", "unsupported_event")
    other = outcome(adt_message("SIU^S12", pid3=""))
    assert isinstance(other, hl7v2.Refused) and (other.ack_code, other.hl7_error) == ("AR", "200")
    no_pid = outcome(adt_message("ADT^A01", pid3=""))
    assert isinstance(no_pid, hl7v2.Refused) and "PID-3" in no_pid.reason


def test_without_evn_6_an_admission_takes_its_time_from_pv1_44_and_a_discharge_from_pv1_45() -> (
    None
):
    """EVN-2 is when the event was recorded (HL7 v2.8 3.4.1.2); PV1-44 is the admission's own
    time, sent for a retroactive admission (3.4.3.44), so it comes before EVN-2."""
    pv1 = "PV1|1|I|4E^12^A^H" + "|" * 41 + "20260301061500|20260301114500"
    admit = outcome(adt_message("ADT^A01", evn=False, pv1=pv1))
    discharge = outcome(adt_message("ADT^A03", evn=False, pv1=pv1))
    update = outcome(adt_message("ADT^A08", evn=False, pv1=pv1))
    times = [o.records[0][1]["event_time"] for o in (admit, discharge, update)]  # type: ignore[union-attr]
    assert times == [
        datetime(2026, 3, 1, 6, 15, tzinfo=UTC),
        datetime(2026, 3, 1, 11, 45, tzinfo=UTC),
        datetime(2026, 3, 1, 8, 0, tzinfo=UTC),  # an update: when the message was made (MSH-7)
    ]
    with_evn = outcome(adt_message("ADT^A01", pv1=pv1))
    assert with_evn.records[0][1]["event_time"] == datetime(2026, 3, 1, 6, 15, tzinfo=UTC)  # type: ignore[union-attr]
    assert with_evn.records[0][1]["recorded_time"] == datetime(2026, 3, 1, 7, 55, tzinfo=UTC)  # type: ignore[union-attr]
    transfer = outcome(adt_message("ADT^A02", pv1=pv1))  # no transfer time in PV1: EVN-2
    assert transfer.records[0][1]["event_time"] == datetime(2026, 3, 1, 7, 55, tzinfo=UTC)  # type: ignore[union-attr]


def test_the_processing_id_is_read_and_echoed_in_the_ack() -> None:
    text = adt_message("ADT^A01").replace("|Q1|P|", "|Q1|D|")
    msg = hl7v2.parse(text)
    assert not isinstance(msg, hl7v2.Refused) and hl7v2.processing_id(msg) == "D"
    assert hl7v2.ack(msg, "AA").split("\r")[0].split("|")[10] == "D"
    assert hl7v2.raw_processing_id(text) == "D"
    stored = hl7v2.ack(msg, "AA", "stored for review", "207").split("\r")
    assert stored[1].startswith("MSA|AA|Q1|") and stored[2] == "ERR|||207^^HL70357|W"


def pcd01(*obx: str) -> str:
    """An IHE PCD-01 ORU^R01 as a bedside monitor's gateway sends it: HL7 v2.6, the PCD-01
    profile in MSH-21, the device in MSH-3 and OBR-2, IEEE 11073 (MDC) triplets in OBX-3 and
    OBX-6, result status R, and the device hierarchy's rows (status X, no value) first."""
    return "\r".join(
        [
            "MSH|^~\\&|GW^0012A3FFFE4B5C6D^EUI-64|H|||20260301101500.0000+0000||"
            "ORU^R01^ORU_R01|P7|P|2.6|||AL|NE||UNICODE UTF-8|||"
            "IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO",
            "PID|||MRN9^^^H^MR||DOE^JANE",
            "PV1||I|MICU^^12^H",
            "OBR|1|P7^GW^0012A3FFFE4B5C6D^EUI-64|P7^GW^0012A3FFFE4B5C6D^EUI-64|"
            "182777000^monitoring of patient^SCT|||20260301101000.0000+0000",
            "OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X",
            "OBX|2||69798^MDC_DEV_PULS_OXIM_VMD^MDC|1.1.0.0|||||||X",
            *obx,
        ]
    )


def test_an_ihe_pcd_01_monitor_message_with_ieee_11073_codes_and_units_is_one_reading() -> None:
    o = outcome(
        pcd01(
            "OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.147842|118|"
            "264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R",
            "OBX|4|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.150456|91|"
            "262688^MDC_DIM_PERCENT^MDC|||||R",
            "OBX|5|NM|151562^MDC_RESP_RATE^MDC|1.3.1.151562|26|264928^MDC_DIM_RESP_PER_MIN^MDC|||||R",
            "OBX|6||150020^MDC_PRESS_BLD_NONINV^MDC|1.4.1.0|||||||X",
            "OBX|7|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.4.1.1|96|266016^MDC_DIM_MMHG^MDC|||||R",
            "OBX|8|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.4.1.2|58|266016^MDC_DIM_MMHG^MDC|||||R",
            "OBX|9|NM|150023^MDC_PRESS_BLD_NONINV_MEAN^MDC|1.4.1.3|70|266016^MDC_DIM_MMHG^MDC|||||R",
            "OBX|10|NM|150344^MDC_TEMP^MDC|1.5.1.150344|38.6|268192^MDC_DIM_DEGC^MDC|||||R",
            "OBX|11|NM|150488^MDC_BLD_PERF_INDEX^MDC|1.1.1.150488|1.7|262688^MDC_DIM_PERCENT^MDC|||||R",
        )
    )
    assert isinstance(o, hl7v2.Mapped) and not o.rejected
    [(topic, rec)] = o.records
    assert topic == topics.VITALS_OBSERVATION.name
    got = {k: rec[k] for k in rec if k.endswith(("_bpm", "_pct", "_min", "_mmhg", "_c"))}
    assert got == {
        "heart_rate_bpm": 118,
        "spo2_pct": 91,
        "resp_rate_per_min": 26,
        "sbp_mmhg": 96,
        "dbp_mmhg": 58,
        "map_mmhg": 70,
        "temp_c": 38.6,
    }
    assert rec["event_time"] == datetime(2026, 3, 1, 10, 10, tzinfo=UTC)  # OBR-7
    assert rec["unit_id"] == "MICU"


def test_where_one_reading_has_an_ecg_and_an_oximeter_rate_the_ecgs_is_kept_in_either_order() -> (
    None
):
    bpm = "264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"
    ecg = f"OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.147842|88|{bpm}"
    pleth = f"OBX|4|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.149530|84|{bpm}"
    for order in ((ecg, pleth), (pleth, ecg)):
        o = outcome(pcd01(*order))
        assert isinstance(o, hl7v2.Mapped) and not o.rejected
        [(_, rec)] = o.records
        assert rec["heart_rate_bpm"] == 88, order
    o = outcome(pcd01(pleth))
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["heart_rate_bpm"] == 84


def test_a_monitors_no_value_sentinel_is_rejected_alone_and_the_reading_keeps_the_rest() -> None:
    rec, rejected = partly_read(
        pcd01(
            "OBX|3|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.4.1.1|-999|266016^MDC_DIM_MMHG^MDC|||||R",
            "OBX|4|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.150456|97|262688^MDC_DIM_PERCENT^MDC|||||R",
        )
    )
    assert rec["spo2_pct"] == 97 and "sbp_mmhg" not in rec
    [bad] = rejected
    assert (bad.label, bad.refusal.reason_code, bad.refusal.hl7_error) == (
        "OBX 3 (150301)",
        "out_of_range",
        "102",
    )
    assert "sbp_mmhg=-999" in bad.refusal.reason and bad.payload.startswith(b"OBX|3|NM|150301")


def test_mdc_units_and_codes_are_read_by_their_mnemonics_too() -> None:
    rec = reading(
        pcd01(
            # a REFID that is not MDC_DIM_FAHR's (266560), with its mnemonic: the mnemonic wins
            "OBX|3|NM|150344^MDC_TEMP^MDC|1.5.1.150344|101.3|268224^MDC_DIM_FAHR^MDC|||||R",
            "OBX|4|NM|^MDC_RESP_RATE^MDC|1.3.1|24|264928^/min^MDC|||||R",
        )
    )
    assert rec["temp_c"] == pytest.approx(38.5) and rec["resp_rate_per_min"] == 24


def test_a_local_code_is_read_through_its_loinc_alternate_and_a_unit_through_its_ucum_one() -> None:
    rec = reading(
        oru(
            "OBX|1|NM|HR^Heart rate^L^8867-4^Heart rate^LN||77|"
            "bts/min^beats per minute^L^/min^^UCUM|||||F\r"
            "OBX|2|NM|RR^Resp rate^L||19|/min|||||F"
        )
    )
    assert rec["heart_rate_bpm"] == 77 and "resp_rate_per_min" not in rec


def test_a_device_message_with_no_code_wardflow_reads_is_refused_naming_what_it_saw() -> None:
    o = outcome(
        pcd01(
            "OBX|3|NM|150488^MDC_BLD_PERF_INDEX^MDC|1.1.1.150488|1.7|262688^MDC_DIM_PERCENT^MDC|||||R"
        )
    )
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "not_a_vital_sign"
    assert "150488" in o.reason


def test_a_mnemonic_is_read_where_the_code_beside_it_is_not_a_known_one() -> None:
    o = outcome(
        pcd01("OBX|3|NM|150031^MDC_PRESS_CUFF_SYS^MDC|1.4.1.1|132|266016^MDC_DIM_MMHG^MDC|||||R")
    )
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["sbp_mmhg"] == 132


def test_a_loinc_coded_value_whose_text_looks_like_an_mdc_mnemonic_is_still_read_as_loinc() -> None:
    rec = reading(oru("OBX|1|NM|8310-5^MDC_TEMP_RECT^LN||38.1|Cel|||||F"))
    assert rec["temp_c"] == 38.1


def test_a_loinc_code_with_an_mdc_alternate_ranks_as_the_mdc_code_in_either_order() -> None:
    bpm = "264864^MDC_DIM_BEAT_PER_MIN^MDC|||||R"
    ecg = f"OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.147842|88|{bpm}"
    pleth = f"OBX|4|NM|8867-4^Pulse^LN^149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.149530|84|{bpm}"
    for order in ((ecg, pleth), (pleth, ecg)):
        assert reading(pcd01(*order))["heart_rate_bpm"] == 88, order


def test_of_two_values_of_equal_rank_at_one_time_a_corrected_one_replaces_the_first() -> None:
    """A result sent again corrected (status C) after its first value."""
    rec = reading(
        oru(
            "OBX|1|NM|8867-4^Heart rate^LN||77|/min|||||F|||20260301100000\r"
            "OBX|2|NM|8867-4^Heart rate^LN||99|/min|||||C|||20260301100000"
        )
    )
    assert rec["heart_rate_bpm"] == 99


def test_a_structured_numeric_value_is_read_when_it_is_one_exact_number() -> None:
    rec, rejected = partly_read(
        oru(
            "OBX|1|SN|8867-4^Heart rate^LN||^104|/min|||||F\r"
            "OBX|2|SN|9279-1^Resp rate^LN||=^22|/min|||||F\r"
            "OBX|3|SN|2524-7^Lactate^LN||<^0.5|mmol/L|||||F\r"
            "OBX|4|SN|8480-6^SBP^LN||^100^-^110|mm[Hg]|||||F"
        )
    )
    assert (rec["heart_rate_bpm"], rec["resp_rate_per_min"]) == (104, 22) and "sbp_mmhg" not in rec
    assert [(r.label, r.refusal.reason_code) for r in rejected] == [
        ("OBX 3 (2524-7)", "bad_value"),
        ("OBX 4 (8480-6)", "bad_value"),
    ]
    assert "'<^0.5': lactate_mmol_l: a bound (`<`)" in rejected[0].refusal.reason


def test_a_count_below_the_analysers_range_is_read_as_its_bound_where_low_is_alarming() -> None:
    """Profound neutropenia or thrombocytopenia (a WBC `<^0.1`, a platelet count `<10`) was
    dead-lettered as no exact number: the true value is below the bound, so a criterion "below
    T" the bound meets (SIRS's WBC < 4, SOFA's platelets < 20), the true value meets too. A
    lactate's upper bound would overstate the value: refused as before."""
    rec, rejected = partly_read(
        oru(
            "OBX|1|SN|6690-2^WBC^LN||<^0.1|10*9/L|||||F\r"
            "OBX|2|ST|777-3^Platelets^LN||<10|10*9/L|||||F\r"
            "OBX|3|SN|2524-7^Lactate^LN||<=^0.3|mmol/L|||||F"
        )
    )
    assert (rec["wbc_10e9_l"], rec["platelets_10e9_l"]) == (0.1, 10)
    assert [(r.label, r.refusal.reason_code) for r in rejected] == [("OBX 3 (2524-7)", "bad_value")]
    # a WBC is alarming at both ends: its lower bound is read too, as before
    assert partly_read(oru("OBX|1|SN|6690-2^WBC^LN||>^100|10*9/L|||||F"))[0]["wbc_10e9_l"] == 100


def test_philips_mdil_hexadecimal_codes_and_units_are_read_as_their_ieee_11073_codes() -> None:
    """Philips' data export writes an MDC code as hexadecimal partition-term (system MDIL):
    0002-4182 is 147842, the ECG's heart rate; 0002-4bb8 is 150456, SpO2."""
    rec = reading(
        oru(
            "OBX|1|NM|0002-4182^HR^MDIL||80|0004-0aa0^bpm^MDIL|||||F\r"
            "OBX|2|NM|0002-4bb8^SpO2^MDIL||97|0004-0220^%^MDIL|||||F"
        )
    )
    assert (rec["heart_rate_bpm"], rec["spo2_pct"]) == (80, 97)


@pytest.mark.parametrize(
    ("obx", "field", "value"),
    [
        ("6690-2^WBC^LN||12.4|K/uL", "wbc_10e9_l", 12.4),
        ("6690-2^WBC^LN||12.4|x10E3/uL", "wbc_10e9_l", 12.4),
        ("777-3^PLT^LN||150|10\\S\\9/L", "platelets_10e9_l", 150.0),  # 10^9/L, escaped
        ("777-3^PLT^LN||150000|/uL", "platelets_10e9_l", 150.0),
        ("8480-6^SBP^LN||121|mm Hg", "sbp_mmhg", 121.0),
        ("8480-6^SBP^LN||121|MMHG", "sbp_mmhg", 121.0),
        ("9279-1^RR^LN||18|1/min", "resp_rate_per_min", 18.0),
        ("8310-5^Temp^LN||101.3|DEG F", "temp_c", 38.5),
        ("2160-0^Creat^LN||1.4|MG/DL", "creatinine_mg_dl", 1.4),
        ("2160-0^Creat^LN||88.42|\u00b5mol/L", "creatinine_mg_dl", 1.0),
        ("2524-7^Lactate^LN||36.0|mg/dL", "lactate_mmol_l", 36.0 / 9.008),
        ("8331-1^Oral temp^LN||38.9|Cel", "temp_c", 38.9),
        ("8889-8^HR by oximetry^LN||92|/min", "heart_rate_bpm", 92.0),
        ("2518-9^Lactate arterial^LN||2.1|mmol/L", "lactate_mmol_l", 2.1),
    ],
)
def test_common_spellings_of_a_unit_and_site_specific_loinc_codes_are_read(
    obx: str, field: str, value: float
) -> None:
    rec = reading(oru(f"OBX|1|NM|{obx}|||||F"))
    assert rec[field] == pytest.approx(value, rel=1e-3)


def test_a_spelling_is_read_only_as_a_unit_the_code_takes() -> None:
    rec, rejected = partly_read(
        oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F\rOBX|2|NM|8310-5^Temp^LN||38|mm Hg|||||F")
    )
    assert rec["heart_rate_bpm"] == 88 and "temp_c" not in rec
    assert [r.refusal.reason_code for r in rejected] == ["bad_value"]
    assert "'mm Hg'" in rejected[0].refusal.reason  # the unit as sent


def test_escape_sequences_are_decoded_in_the_fields_read() -> None:
    escaped = adt_message("ADT^A01", pv1="PV1|1|I|L\\T\\D^401^1^H")
    assert outcome(escaped).records[0][1]["unit_id"] == "L&D"  # type: ignore[union-attr]
    assert hl7v2.unescape("A\\F\\B\\X41\\\\H\\x", {"ESCAPE": "\\", "FIELD": "|"}) == "A|BAx"


@pytest.mark.parametrize("degree", ["\\XB0\\", "\\XC2B0\\"])  # ISO 8859-1, UTF-8
def test_a_unit_with_a_hex_escaped_degree_sign_is_read(degree: str) -> None:
    rec, rejected = partly_read(oru(f"OBX|1|NM|8310-5^Temp^LN||101.3|{degree}F|||||F"))
    assert not rejected and rec["temp_c"] == pytest.approx(38.5)


def test_a_message_with_a_second_patient_is_refused_never_read_under_the_first() -> None:
    two = oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F").replace(
        "OBR|1|", "PID|2||MRN2^^^H^MR\rPV1|2|I|MICU^13^A^H\rOBR|1|"
    )
    o = outcome(two)
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "multiple_patients"


def swap(second_pid: str = "PID|2||MRN2^^^H^MR", second_pv1: str = "PV1|2|I|4E^12^A^H") -> str:
    """ADT^A17: MRN1 leaves 4E bed 12 for MICU bed 13, MRN2 the other way."""
    return "\r".join(
        [
            "MSH|^~\\&|ADT|H|WF|H|20260301080000||ADT^A17^ADT_A17|S1|P|2.5.1",
            "EVN|A17|20260301075500",
            "PID|1||MRN1^^^H^MR",
            "PV1|1|I|MICU^13^A^H|||4E^12^A^H",
            second_pid,
            second_pv1,
        ]
    )


def test_a_swap_of_two_patients_is_a_transfer_of_each_to_the_others_bed() -> None:
    o = outcome(swap())
    assert isinstance(o, hl7v2.Mapped) and not o.rejected
    got = [
        (r["patient_token"], r["event_type"], r["unit_id"], r["bed_id"], r["prior_unit_id"])
        for _, r in o.records
    ]
    assert got == [
        ("H|MRN1", "transfer", "MICU", "13-A", "4E"),  # room 13's bed A
        ("H|MRN2", "transfer", "4E", "12-A", None),
    ]
    assert [r["event_id"] for _, r in o.records] == ["hl7:H/ADT:S1/1:A17", "hl7:H/ADT:S1/2:A17"]
    assert {r["source_message_type"] for _, r in o.records} == {"ADT^A17"}


def test_a_swap_is_stored_whole_or_not_at_all() -> None:
    """A swap of which one patient cannot be read would leave one of them in both beds."""
    one_patient = outcome(swap(second_pid="", second_pv1=""))
    assert isinstance(one_patient, hl7v2.Refused) and one_patient.reason_code == "missing_field"
    assert "two PID" in one_patient.reason
    unreadable_second = outcome(swap(second_pid="PID|2||"))
    assert isinstance(unreadable_second, hl7v2.Refused) and "PID-3" in unreadable_second.reason
    no_unit = outcome(swap(second_pv1="PV1|2|I|^^^H"))
    assert isinstance(no_unit, hl7v2.Refused) and "PV1-3.1" in no_unit.reason
    one_patient_twice = outcome(swap(second_pid="PID|2||MRN1^^^H^MR"))
    assert isinstance(one_patient_twice, hl7v2.Refused) and "both PIDs" in one_patient_twice.reason
    two_facilities = outcome(swap(second_pv1="PV1|2|I|4E^12^A^OTHER"))
    assert isinstance(two_facilities, hl7v2.Refused) and "OTHER" in two_facilities.reason


@pytest.mark.parametrize("version", ["2.3", "2.5.1", "2.8", "2.9"])
def test_a_swap_keeps_its_event_and_recorded_times_in_every_version(version: str) -> None:
    text = (
        swap()
        .replace("|2.5.1", f"|{version}")
        .replace("EVN|A17|20260301075500", "EVN|A17|20260301075500||||20260301070000")
    )
    o = outcome(text)
    assert isinstance(o, hl7v2.Mapped)
    times = {
        (r["event_time"].hour, r["event_time"].minute, r["recorded_time"].minute)
        for _, r in o.records
    }
    assert times == {(7, 0, 55)}  # EVN-6 and EVN-2, never MSH-7


def test_a_frame_with_two_messages_is_refused_whole() -> None:
    admit, discharge = adt_message("ADT^A01"), adt_message("ADT^A03").replace("|Q1|", "|Q2|")
    o = outcome(admit + "\r" + discharge)
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "malformed" and "2 message" in o.reason


@pytest.mark.parametrize(
    ("pid3", "want"),
    [
        ("9999^^^H^FIN NBR~M100^^^H^MRN", "H|M100"),  # an account number first, the MRN second
        ("123456789^^^SSA^SS~E100^^^EPI^PI", "EPI|E100"),  # a national id, the internal id
        ("V1^^^H^VN~M7^^^H^MR", "H|M7"),
    ],
)
def test_the_patient_is_known_by_the_record_number_whatever_the_order_of_ids(
    pid3: str, want: str
) -> None:
    assert outcome(adt_message("ADT^A01", pid3=pid3)).records[0][1]["patient_token"] == want  # type: ignore[union-attr]


def test_a_time_without_an_offset_is_in_the_senders_zone_that_msh_7_gives() -> None:
    msg = oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F|||20260301100000").replace(
        "|20260301101500||ORU", "|20260301100500-0500||ORU"
    )
    assert reading(msg)["event_time"] == datetime(2026, 3, 1, 15, 0, tzinfo=UTC)


def test_a_result_timed_by_a_date_alone_is_rejected_alone_unless_it_is_its_orders_date() -> None:
    """OBX-14 a date, another than OBR-7's: rejected alone. The date of OBR-7 (lab systems
    that send the result's date there): OBR-7's time, as an OBX without OBX-14 takes."""
    rec, rejected = partly_read(
        oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F\rOBX|2|NM|9279-1^RR^LN||18|/min|||||F|||20260228")
    )
    assert rec["heart_rate_bpm"] == 88 and "resp_rate_per_min" not in rec
    assert "without a time of day" in rejected[0].refusal.reason
    same_day = reading(oru("OBX|1|NM|9279-1^RR^LN||18|/min|||||F|||20260301"))
    assert same_day["resp_rate_per_min"] == 18
    assert same_day["event_time"] == datetime(2026, 3, 1, 10, 10, tzinfo=UTC)


def test_a_v2_3_time_stamp_with_its_precision_component_is_read() -> None:
    msg = adt_message("ADT^A02").replace("EVN|A01|20260301075500", "EVN|A02|20260301075500^S")
    assert outcome(msg).records[0][1]["event_time"] == datetime(2026, 3, 1, 7, 55, tzinfo=UTC)  # type: ignore[union-attr]


@pytest.mark.parametrize("obx5", ["120/80", "^120^/^80"])
def test_a_blood_pressure_sent_in_one_obx_is_read_as_systolic_and_diastolic(obx5: str) -> None:
    rec = reading(
        oru(
            "OBX|1|NM|8867-4^HR^LN||72|/min|||||F\r"
            f"OBX|2|{'ST' if '/' in obx5[:4] else 'SN'}|85354-9^BP^LN||{obx5}|mm[Hg]|||||F"
        )
    )
    assert (rec["heart_rate_bpm"], rec["sbp_mmhg"], rec["dbp_mmhg"]) == (72, 120, 80)
    _, rejected = partly_read(
        oru("OBX|1|NM|8867-4^HR^LN||72|/min|||||F\rOBX|2|ST|85354-9^BP^LN||120|mm[Hg]|||||F")
    )
    assert "not systolic/diastolic" in rejected[0].refusal.reason


@pytest.mark.parametrize(
    ("version", "segment"), [("2.5.1", "PRT|1|AD||OP^Ordering Provider"), ("2.3", "SFT|Epic|1")]
)
def test_a_segment_newer_than_the_messages_version_is_left_out_not_the_message(
    version: str, segment: str
) -> None:
    msg = oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F").replace("|2.5.1", f"|{version}")
    assert reading(msg + "\r" + segment)["heart_rate_bpm"] == 88


@pytest.mark.parametrize("value", ["1e2", "8_8", "inf", "0x10"])
def test_a_value_that_python_reads_as_a_number_but_hl7_does_not_is_rejected(value: str) -> None:
    rec, rejected = partly_read(
        oru(f"OBX|1|NM|8867-4^HR^LN||88|/min|||||F\rOBX|2|NM|9279-1^RR^LN||{value}|/min|||||F")
    )
    assert "resp_rate_per_min" not in rec and "is not a number" in rejected[0].refusal.reason


def test_lower_case_statuses_and_message_types_and_a_leading_byte_order_mark_are_read() -> None:
    rec, [gone] = partly_read(
        oru("OBX|1|NM|8867-4^HR^LN||88|/min|||||F\rOBX|2|NM|9279-1^RR^LN||18|/min|||||d")
    )
    assert "resp_rate_per_min" not in rec  # deleted, whatever its case
    assert gone.refusal.reason_code == "retracted"
    lower = adt_message("adt^a01")
    assert outcome("\ufeff" + lower).records[0][1]["event_type"] == "admit"  # type: ignore[union-attr]


def test_an_oxygen_saturation_is_a_blood_gass_sao2_under_a_gas_order_else_a_monitors_spo2() -> None:
    """LOINC 2708-6 is arterial oxygen saturation; monitors and FHIR's vital-signs profile send
    the oximeter's SpO2 with it too. Under an order with a blood gas result it is the sample's."""
    msg = "\r".join(
        [
            "MSH|^~\\&|LAB|ICU|WF|H|20260301101500||ORU^R01|C1|P|2.5.1",
            "PID|1||MRN9^^^H^MR",
            "PV1|1|I|MICU^12^A^H",
            "OBR|1|||vitals|||20260301100000",
            "OBX|1|NM|2708-6^SpO2^LN||94|%|||||F",
            "OBR|2|||24336-0^Gas panel - Arterial blood^LN|||20260301101000",
            "OBX|1|NM|2744-1^pH^LN||7.31|[pH]|||||F",
            "OBX|2|NM|2019-8^pCO2^LN||52|mm[Hg]|||||F",
            "OBX|3|NM|2703-7^pO2^LN||61|mm[Hg]|||||F",
            "OBX|4|NM|2708-6^SaO2^LN||89|%|||||F",
        ]
    )
    o = outcome(msg)
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    by_topic = {topic: rec for topic, rec in o.records}
    assert set(by_topic) == {topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name}
    monitor, gas = by_topic[topics.VITALS_OBSERVATION.name], by_topic[topics.LABS_RESULT.name]
    assert monitor["spo2_pct"] == 94 and "sao2_pct" not in monitor
    assert gas["sao2_pct"] == 89 and gas["pao2_mmhg"] == 61 and "spo2_pct" not in gas
    assert reading(oru("OBX|1|NM|2708-6^SpO2^LN||89|%|||||F"))["spo2_pct"] == 89
    head = msg.split("\r")[:3]
    panel = [*head, "OBR|1|||24336-0^ABG^LN|||20260301101000", "OBX|1|NM|2708-6^SaO2^LN||91|%"]
    assert reading("\r".join(panel))["sao2_pct"] == 91  # the panel alone says so
    obx = "OBX|1|NM|2744-1^pH^LN||7.31|[pH]|||||D\rOBX|2|NM|2708-6^SpO2^LN||92|%|||||F"
    rec, rejected = partly_read(oru(obx))  # a pH taken back makes no blood gas
    assert rec["spo2_pct"] == 92 and [r.refusal.reason_code for r in rejected] == ["retracted"]
    assert reading(oru(obx.replace("|D\r", "|X\r")))["spo2_pct"] == 92  # nor a pending one


def test_a_flowsheets_hourly_spo2_stays_spo2_beside_a_blood_gas_filed_in_its_order() -> None:
    """ICU flowsheet exports file a shift under one OBR: a blood gas drawn at 09:30 makes that
    time's saturation its SaO2, not the monitor's SpO2 of 08:00 and 09:00."""
    o = outcome(
        oru(
            "OBX|1|NM|2708-6^SpO2^LN||95|%|||||F|||20260301080000\r"
            "OBX|2|NM|2708-6^SpO2^LN||86|%|||||F|||20260301090000\r"
            "OBX|3|NM|2744-1^pH^LN||7.38|[pH]|||||F|||20260301093000\r"
            "OBX|4|NM|2708-6^SaO2^LN||97|%|||||F|||20260301093000"
        )
    )
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    got = sorted((rec["event_time"].hour, topic, rec.get("spo2_pct"), rec.get("sao2_pct"))
                 for topic, rec in o.records)  # fmt: skip
    assert got == [
        (8, topics.VITALS_OBSERVATION.name, 95, None),
        (9, topics.LABS_RESULT.name, None, 97),  # 09:30: the gas's
        (9, topics.VITALS_OBSERVATION.name, 86, None),
    ]


def test_a_temperature_keyed_into_a_blood_gas_analyser_is_not_a_bedside_reading() -> None:
    """An analyser takes the patient's temperature to correct the gases, 37.0 °C unless keyed:
    read as a vital sign, it would hide the fever charted an hour before."""
    o = outcome(
        oru(
            "OBX|1|NM|2744-1^pH^LN||7.30|[pH]|||||F\r"
            "OBX|2|NM|2703-7^pO2^LN||62|mm[Hg]|||||F\r"
            "OBX|3|NM|8310-5^Temp^LN||37.0|Cel|||||F"
        )
    )
    assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
    assert [topic for topic, _ in o.records] == [topics.LABS_RESULT.name]
    assert o.notes == ["OBX 3 (8310-5): a blood gas's entry, not read as a vital sign"]
    bedside = reading(oru("OBX|1|NM|8310-5^Temp^LN||39.2|Cel|||||F"))
    assert bedside["temp_c"] == 39.2
    # a flowsheet's column filed at the minute of a gas: its own OBX-14, a bedside reading
    o = outcome(
        oru(
            "OBX|1|NM|8310-5^Temp^LN||39.1|Cel|||||F|||20260301100000\r"
            "OBX|2|NM|9279-1^RR^LN||28|/min|||||F|||20260301100000\r"
            "OBX|3|NM|2744-1^pH^LN||7.30|[pH]|||||F|||20260301100000"
        )
    )
    assert isinstance(o, hl7v2.Mapped) and o.notes == [], o
    [vitals] = [rec for topic, rec in o.records if topic == topics.VITALS_OBSERVATION.name]
    assert (vitals["temp_c"], vitals["resp_rate_per_min"]) == (39.1, 28)


def test_a_venous_gas_or_one_coded_in_blood_makes_its_saturation_a_lab_value_not_spo2() -> None:
    """A venous sO2 of 70 % read as the monitor's SpO2 would score NEWS2 3 points."""
    for ph in ("2746-6^pH venous^LN", "11558-4^pH^LN"):
        o = outcome(
            "\r".join(
                [
                    *oru("").split("\r")[:3],
                    "OBR|1|||VBG^Venous blood gas^L|||20260301100000",
                    f"OBX|1|NM|{ph}||7.33|[pH]|||||F",
                    "OBX|2|NM|2708-6^sO2^LN||70|%|||||F",
                ]
            )
        )
        assert isinstance(o, hl7v2.Mapped), o
        assert [rec.get("sao2_pct") for _, rec in o.records] == [70], ph
        assert {topic for topic, _ in o.records} == {topics.LABS_RESULT.name}
    # each test an order of its own, all timed by the specimen's collection
    o = outcome(
        "\r".join(
            [
                *oru("").split("\r")[:3],
                "OBR|1|||PH^pH^L|||20260301100000",
                "OBX|1|NM|2744-1^pH^LN||7.33|[pH]|||||F",
                "OBR|2|||SO2^sO2^L|||20260301100000",
                "OBX|1|NM|2708-6^sO2^LN||93|%|||||F",
                "OBR|3|||VS^Vitals^L|||20260301100500",
                "OBX|1|NM|2708-6^SpO2^LN||95|%|||||F",
            ]
        )
    )
    assert isinstance(o, hl7v2.Mapped), o
    got = {(topic, rec.get("sao2_pct"), rec.get("spo2_pct")) for topic, rec in o.records}
    assert got == {(topics.LABS_RESULT.name, 93, None), (topics.VITALS_OBSERVATION.name, None, 95)}
    # not a flowsheet's SpO2 at the minute of a point-of-care gas timed by its own OBX-14, nor
    # results all timed by the message for want of an order time
    for head in (
        ["OBR|1|||POC^POC gas^L|||20260301093000",
         "OBX|1|NM|2744-1^pH^LN||7.33|[pH]|||||F|||20260301093000",
         "OBR|2|||FLO^Flowsheet^L|||20260301093000"],
        ["OBR|1|||POC^POC gas^L", "OBX|1|NM|2744-1^pH^LN||7.33|[pH]|||||F",
         "OBR|2|||FLO^Flowsheet^L"],
    ):  # fmt: skip
        o = outcome("\r".join([*oru("").split("\r")[:3], *head, "OBX|1|NM|2708-6^SpO2^LN||88|%"]))
        assert isinstance(o, hl7v2.Mapped), o
        assert [rec["spo2_pct"] for _, rec in o.records if "spo2_pct" in rec] == [88], head


def test_a_saturation_of_a_laboratorys_order_is_measured_in_the_sample_not_a_monitors_spo2() -> (
    None
):
    """OBR-24 names the diagnostic service (HL7 table 0074): a co-oximetry order of the
    haematology or chemistry section (a venous sO2 of 68 % beside carboxy- and methaemoglobin)
    is no pulse oximeter's reading, which NEWS2 would score 3 points; the blood gases' section
    is a gas's order (the analyser's temperature is its entry); a bedside section's is SpO2."""

    def order(section: str, *obx: str) -> str:
        head = oru("").split("\r")[:3]
        obr = f"OBR|1|||COOX^Co-oximetry^L|||20260301100000|||||||||||||||||{section}"
        assert obr.split("|")[24] == section
        return "\r".join([*head, obr, *obx])

    saturation = "OBX|1|NM|2708-6^sO2^LN||68|%|||||F"
    for section in ("HM", "CH", "LAB", "bg"):
        o = outcome(order(section, saturation, "OBX|2|NM|2614-2^MetHb^LN||1.2|%|||||F"))
        assert isinstance(o, hl7v2.Mapped), o
        assert [(t, rec.get("sao2_pct")) for t, rec in o.records] == [
            (topics.LABS_RESULT.name, 68)
        ], section
    o = outcome(order("BG", "OBX|1|NM|8310-5^Temp^LN||37.0|Cel|||||F", saturation))
    assert isinstance(o, hl7v2.Mapped) and o.notes, o
    assert [rec.get("sao2_pct") for _, rec in o.records] == [68]
    for section in ("ICU", "NRS", ""):
        assert reading(order(section, saturation))["spo2_pct"] == 68, section


def test_a_gas_saturation_reported_seconds_after_its_ph_or_timed_by_its_order_is_sao2() -> None:
    for saturation in (
        "OBX|2|NM|2708-6^SaO2^LN||91|%|||||F|||20260301100107",  # seconds after the pH
        "OBX|2|NM|2708-6^SaO2^LN||91|%|||||F",  # the order's time, the pH its own
    ):
        o = outcome(
            "\r".join(
                [
                    *oru("").split("\r")[:3],
                    "OBR|1|||BG^Blood gas^L|||20260301100000",
                    "OBX|1|NM|2744-1^pH^LN||7.30|[pH]|||||F|||20260301100105",
                    saturation,
                ]
            )
        )
        assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
        assert {topic for topic, _ in o.records} == {topics.LABS_RESULT.name}, saturation
        assert [rec.get("sao2_pct") for _, rec in o.records if "sao2_pct" in rec] == [91]


def test_a_bed_is_named_with_its_room_since_bed_numbers_repeat_from_room_to_room() -> None:
    """PL (HL7 v2.5 2A.3.53): point of care, room, bed. 5W12-01 and 5W14-01 are two beds."""
    for pv1_3, bed in (
        ("5W^5W12^01^H", "5W12-01"),
        ("5W^5W14^01^H", "5W14-01"),
        ("5W^5W12^5W12-01^H", "5W12-01"),  # a bed that names its room already
        ("5W^512^^H", "512"),  # a single room
        ("5W^512^512A^H", "512A"),
        ("5W^1^12^H", "1-12"),  # bed 12 of room 1, not single room 12
        ("5W^1^10^H", "1-10"),
        ("5W^^B^H", "B"),
        ("5W^^^H", None),
    ):
        o = outcome(adt_message("ADT^A01", pv1=f"PV1|1|I|{pv1_3}"))
        assert isinstance(o, hl7v2.Mapped), (pv1_3, o)
        assert o.records[0][1]["bed_id"] == bed, pv1_3


def test_a_v2_1_admission_takes_its_trigger_from_evn_1() -> None:
    """HL7 v2.1's MSH-9 has no trigger event: it is EVN-1 (accepted before for an ORU only)."""
    msg = "\r".join(
        [
            "MSH|^~\\&|PCIS|OLD|WF|OLD|199803150900||ADT|OLD2|P|2.1",
            "EVN|A02|199803150900",
            "PID|1||112233||OLD^PAT",
            "PV1|1|I|CCU^3^1",
        ]
    )
    o = outcome(msg)
    assert isinstance(o, hl7v2.Mapped), o
    assert (o.records[0][1]["event_type"], o.records[0][1]["unit_id"]) == ("transfer", "CCU")


def test_a_merged_identifier_without_an_authority_is_of_the_surviving_identifiers() -> None:
    """MRG-1 is the prior PID-3: `T5000` alone is the alias `T5000^^^MRN` the admission named,
    not an identifier of the sender's, which held no bed while the alias kept it."""
    merge = outcome(merge_message("A40", "PID|1||203948^^^MRN^MR", "MRG|T5000", "PV1|1|E|ED^^8^H"))
    assert isinstance(merge, hl7v2.Mapped), merge
    (_, away), (_, into) = merge.records
    assert (away["patient_token"], into["patient_token"]) == (
        tok("MRN", "T5000"),
        tok("MRN", "203948"),
    )


def test_lab_systems_display_units_for_cell_counts_are_read() -> None:
    """Sunquest's and Meditech's `K/cumm`, Cerner's `x10(3)/uL`: the WBC a screen reads."""
    for unit in ("x10(3)/uL", "K/cumm", "thou/cumm", "x10(9)/L"):
        rec = reading(oru(f"OBX|1|NM|6690-2^WBC^LN||14.2|{unit}|||||F"))
        assert rec["wbc_10e9_l"] == 14.2, unit
    assert reading(oru("OBX|1|NM|9279-1^RR^LN||22|breaths/minute|||||F"))["resp_rate_per_min"] == 22


def test_a_result_above_the_analysers_range_is_read_as_its_bound_and_one_below_is_not() -> None:
    """A lactate `>^20` (SN) or `>20` (text) in shock: at least 20 mmol/L, every criterion above
    a threshold it meets the true value meets (dead-lettered before, the most critical lactate
    never screened). `<^0.5` would overstate the value: still dead-lettered alone."""
    for obx_5, obx_2 in ((">^20", "SN"), (">=^20", "SN"), (">20", "NM"), ("> 20", "ST")):
        rec = reading(oru(f"OBX|1|{obx_2}|2524-7^Lactate^LN||{obx_5}|mmol/L|||||F"))
        assert rec["lactate_mmol_l"] == 20.0, obx_5
    for obx_5 in ("<^0.5", "<0.5", "<=^0.5"):
        o = outcome(oru(f"OBX|1|SN|2524-7^Lactate^LN||{obx_5}|mmol/L|||||F"))
        assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value", obx_5
    # a vital sign's bound is not read: an FiO2 `>60 %` would understate SpO2/FiO2's severity
    # nor a PaO2's (lower is worse: its bound would overstate the severity)
    for obx in (
        "3150-0^FiO2^LN||>^60|%",
        "8867-4^HR^LN||>200|/min",
        "2703-7^PaO2^LN||>^500|mm[Hg]",
    ):
        o = outcome(oru(f"OBX|1|SN|{obx}|||||F"))
        assert isinstance(o, hl7v2.Refused) and "only for a laboratory result" in o.reason, obx


def test_a_move_of_a_visit_that_is_never_in_a_bed_is_a_registration_that_moves_no_one() -> None:
    """An EHR sends ADT for every encounter of a patient. A session of a recurring infusion
    series ending (A03, PV1-2 R) or updated with its chair (A08) discharged or moved the
    inpatient; they are that visit's, which holds no bed (`register`). An outpatient's (O: may
    be an observation patient in a bed), a pre-admission's (P: HL7's own v2.8 examples send an
    inpatient's events so) and an A07 stay as they were."""
    placement = census.PatientPlacement()
    placement.apply(census.AdtEvent("a", "admit", "H", "5W", "12", 0, "V1"))
    for trigger, cls, want in (
        ("A03", "R", "register"),
        ("A08", "R", "register"),
        ("A08", "P", "update"),
        ("A03", "O", "discharge"),
        ("A03", "P", "discharge"),
        ("A02", "P", "transfer"),
        ("A07", "R", "discharge"),
        ("A03", "I", "discharge"),
    ):
        o = outcome(adt_message(f"ADT^{trigger}", pv1=f"PV1|1|{cls}|PREOP^^1^H"))
        assert isinstance(o, hl7v2.Mapped), o
        assert o.records[0][1]["event_type"] == want, (trigger, cls)
        if want == "register":
            event = census.AdtEvent.of(o.records[0][1] | {"event_id": trigger}, 60_000)
            assert placement.apply(event)[0].status == "no_change"
    assert placement.place is not None and placement.place.unit_id == "5W"


def test_a_line_break_inside_a_number_makes_it_no_number() -> None:
    """v2.5 §2.7.6: `\\.br\\` and `\\.sp\\` break the line; dropped, `1\\.br\\2` was a WBC of 12."""
    for sent in ("1\\.br\\2", "1\\.sp2\\5", "1\\.sk1\\2"):
        o = outcome(oru(f"OBX|1|NM|6690-2^WBC^LN||{sent}|10*9/L|||||F"))
        assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value", sent


def test_a_result_without_its_order_time_takes_the_end_of_collection_before_the_message_time() -> (
    None
):
    """OBR-7 empty, OBR-8 (end of collection) at 08:00, the message made at 12:00: the lactate
    was taken near 08:00, not four hours later."""
    text = "\r".join(
        [
            "MSH|^~\\&|LAB|H|WF|H|20260301120000||ORU^R01|L1|P|2.5.1",
            "PID|1||MRN9^^^H^MR",
            "OBR|1|||2524-7^Lactate^LN||||20260301080000",
            "OBX|1|NM|2524-7^Lactate^LN||3.1|mmol/L|||||F",
        ]
    )
    assert reading(text)["event_time"] == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    # an OBR-8 without a time of day, unreadable or after the message: the message's time
    for end in ("20260301", "2026-03-01 08:00", "20260302080000"):
        later = text.replace("||||20260301080000", f"||||{end}")
        assert reading(later)["event_time"] == datetime(2026, 3, 1, 12, 0, tzinfo=UTC), end


def test_a_point_of_care_observation_searching_for_its_order_is_read() -> None:
    """ORU^R31 has the ORU_R30 structure of R30 and R32, which are read (v2.5 §7.3.5)."""
    text = oru("OBX|1|NM|8867-4^Heart rate^LN||88|/min|||||F").replace("ORU^R01", "ORU^R31")
    assert reading(text)["heart_rate_bpm"] == 88


def test_a_batch_in_one_frame_is_refused_as_a_batch() -> None:
    one = oru("OBX|1|NM|8867-4^Heart rate^LN||88|/min|||||F")
    for wrapped in (f"BHS|^~\\&|MON\r{one}\rBTS|1", f"FHS|^~\\&\rBHS|^~\\&\r{one}\rBTS|1\rFTS|1"):
        o = hl7v2.parse(wrapped)
        assert isinstance(o, hl7v2.Refused) and "one message per MLLP frame" in o.reason


def test_a_changed_patient_identifier_hands_the_bed_to_the_new_identifier() -> None:
    """v2.5 3.3.47: A47 replaces the identifier MRG-1 names by PID-3's (it was refused AR, so the
    bed stayed under the old identifier and the discharge under the new one was refused)."""
    o = outcome(merge_message("A47", "PID|1||999^^^H^MR", "MRG|123^^^H^MR", "PV1|1|I|ICU^2^A^H"))
    assert isinstance(o, hl7v2.Mapped), o
    assert [(r["event_type"], r["patient_token"]) for _, r in o.records] == [
        ("merged_away", tok("H", "123")),
        ("merged_in", tok("H", "999")),
    ]


def test_results_without_a_value_by_their_status_are_refused_as_such() -> None:
    """OBX-11 X (cannot be obtained), I (pending), N (not asked; table 0085) carry no value: the
    message is refused as having none, naming them, not as a code nobody reads."""
    for status in ("X", "I", "N"):
        o = outcome(oru(f"OBX|1|NM|2524-7^Lactate^LN||||||||{status}"))
        assert isinstance(o, hl7v2.Refused) and o.reason_code == "no_value", status
        assert f"OBX-11 {status}" in o.reason and "2524-7" in o.reason


def test_a_device_rate_whose_dimension_names_the_other_rate_is_refused() -> None:
    """IEEE 11073 dimensions say which rate a value is: beats (MDC_DIM_BEAT_PER_MIN) on an ECG
    or pulse rate, breaths (MDC_DIM_RESP_PER_MIN) on a respiratory rate; the other is a channel
    sent under the wrong code (a rate of 18 read as a heart rate)."""
    beats, breaths = "264864^MDC_DIM_BEAT_PER_MIN^MDC", "264928^MDC_DIM_RESP_PER_MIN^MDC"
    o = outcome(
        pcd01(
            f"OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.147842|18|{breaths}||||R",
            f"OBX|4|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.149530|92|{beats}||||R",
            f"OBX|5|NM|151562^MDC_RESP_RATE^MDC|1.4.1.151562|22|{breaths}||||R",
            f"OBX|6|NM|151562^MDC_RESP_RATE^MDC|1.4.1.151563|88|{beats}||||R",
        )
    )
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert (rec["heart_rate_bpm"], rec["resp_rate_per_min"]) == (92, 22)
    assert [r.label for r in o.rejected] == ["OBX 3 (147842)", "OBX 6 (151562)"]


def test_a_value_the_device_flags_invalid_calibrating_or_demo_is_not_read() -> None:
    """IHE PCD-01 gateways send a device's measurement status (IEEE 11073-10201) in OBX-8: an
    ECG rate of 0 with the leads off (`invalid`), which outranked the oximeter's pulse rate of
    92; an arterial line's 0 while it is zeroed (`calibration-ongoing`, any repetition, any
    case); a simulator's SpO2 (`demo-data`). Each is said in a note, none read; an abnormal
    flag (table 0078) is no such status."""
    o = outcome(
        pcd01(
            "OBX|3|NM|147842^MDC_ECG_HEART_RATE^MDC|1.2.1.147842|0|264864^MDC_DIM_BEAT_PER_MIN^MDC"
            "||invalid|||R",
            "OBX|4|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.1.1.149530|92|"
            "264864^MDC_DIM_BEAT_PER_MIN^MDC||L|||R",
            "OBX|5|NM|150037^MDC_PRESS_BLD_ART_ABP_SYS^MDC|1.3.1.150037|0|266016^MDC_DIM_MMHG^MDC"
            "||LL~Calibration Ongoing|||R",
            "OBX|6|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.150456|84|262688^MDC_DIM_PERCENT^MDC"
            "||demo-data|||R",
        )
    )
    assert isinstance(o, hl7v2.Mapped)
    [(_, rec)] = o.records
    assert rec["heart_rate_bpm"] == 92 and "sbp_mmhg" not in rec and "spo2_pct" not in rec
    assert [n.split(": ")[1] for n in o.notes] == [
        "OBX-8 invalid (the device marks the value invalid), not read",
        "OBX-8 calibration-ongoing (the device is being calibrated or zeroed), not read",
        "OBX-8 demo-data (demonstration data, not the patient's), not read",
    ]
    alone = outcome(pcd01(
        "OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.150456|84|262688^MDC_DIM_PERCENT^MDC"
        "||test-data|||R"
    ))  # fmt: skip
    assert isinstance(alone, hl7v2.Refused) and alone.reason_code == "no_value"
    assert "OBX-8 test-data" in alone.reason
    # a result the sender takes back (OBX-11 D) is dead-lettered whatever its OBX-8 says
    back = outcome(oru("OBX|1|NM|8867-4^HR^LN||0|/min||invalid|||D"))
    assert isinstance(back, hl7v2.Refused) and back.reason_code == "retracted"


def test_rates_temperatures_and_counts_are_read_as_upper_case_systems_and_labs_spell_them() -> None:
    """A respiratory rate in `BR/MIN` (Meditech MAGIC writes upper case), a heart rate in
    `Beats/min`, a temperature in `Degrees F`, a platelet count in `giga.l-1` (the bundled
    LAB-ORU-1 sample) or in `G/L` (giga per litre, as French and German laboratories write
    10^9/L) were refused; a count in `g/L` (grams) still is."""
    o = outcome(
        oru(
            "OBX|1|NM|9279-1^Resp rate^LN||28|BR/MIN|||||F\r"
            "OBX|2|NM|8867-4^Heart rate^LN||118|Beats/min|||||F\r"
            "OBX|3|NM|8310-5^Temp^LN||101.3|Degrees Fahrenheit|||||F\r"
            "OBX|4|NM|777-3^Platelets^LN||95|giga.l-1|||||F\r"
            "OBX|5|NM|6690-2^WBC^LN||14.2|G/L|||||F\r"
            "OBX|6|NM|26515-7^Platelets^LN||95|g/L|||||F"
        )
    )
    assert isinstance(o, hl7v2.Mapped)
    labs, vitals = (r for _, r in o.records)  # labs first: records go by time, then topic
    assert (vitals["resp_rate_per_min"], vitals["heart_rate_bpm"], vitals["temp_c"]) == (
        28,
        118,
        38.5,
    )
    assert (labs["platelets_10e9_l"], labs["wbc_10e9_l"]) == (95, 14.2)
    [grams] = o.rejected
    assert "unit 'g/L' is not one of" in grams.refusal.reason
    # a breath's unit on a heart rate (or a beat's on a respiratory rate) is a row with the
    # wrong code: refused, not a heart rate of 18
    for obx in (
        "OBX|1|NM|8867-4^Heart rate^LN||18|BR/MIN|||||F",
        "OBX|1|NM|9279-1^Resp rate^LN||88|BPM|||||F",
        "OBX|1|NM|9279-1^Resp rate^LN||88|beats/min|||||F",
        "OBX|1|NM|9279-1^Resp rate^LN||88|{beats}/min|||||F",
        "OBX|1|NM|8867-4^Heart rate^LN||18|{breaths}/min|||||F",
    ):
        wrong = outcome(oru(obx))
        assert isinstance(wrong, hl7v2.Refused) and wrong.reason_code == "bad_value", obx


def test_rates_whose_unit_is_spelled_out_in_words_are_read_for_their_own_rate() -> None:
    """A flowsheet's local unit text `beats per minute` / `breaths per minute` (OBX-6 as text,
    or a CWE's text beside a local code) was refused ('not one of ...'): the reading lost its
    heart and respiratory rates. Each is read for its own rate only, as `beats/min` is."""
    rec = reading(
        oru(
            "OBX|1|NM|8867-4^Heart rate^LN||118|beats per minute|||||F\r"
            "OBX|2|NM|9279-1^Resp rate^LN||28|^Breaths per minute^L|||||F\r"
            "OBX|3|NM|8889-8^Pulse^LN||117|Beats Per Min|||||F"
        )
    )
    assert (rec["heart_rate_bpm"], rec["resp_rate_per_min"]) == (118, 28)
    for obx in (
        "OBX|1|NM|8867-4^Heart rate^LN||18|breaths per minute|||||F",
        "OBX|1|NM|9279-1^Resp rate^LN||88|beats per minute|||||F",
    ):
        wrong = outcome(oru(obx))
        assert isinstance(wrong, hl7v2.Refused) and wrong.reason_code == "bad_value", obx


@pytest.mark.parametrize(
    ("heart", "resp"),
    [("beat per minute", "breath per minute"), ("Beat per min", "Breath Per Min")],
)
def test_rates_whose_unit_is_spelled_in_the_singular_are_read_for_their_own_rate_only(
    heart: str, resp: str
) -> None:
    """`beat per minute` and `breath per minute` (a flowsheet's singular, as UCUM's `{beat}/min`
    is) were refused though their plurals were read: each is its own rate's, the other's still
    refused, and `per minute` alone (no beat, no breath) is no rate's unit."""
    rec = reading(
        oru(
            f"OBX|1|NM|8867-4^Heart rate^LN||118|{heart}|||||F\r"
            f"OBX|2|NM|9279-1^Resp rate^LN||28|^{resp}^L|||||F"
        )
    )
    assert (rec["heart_rate_bpm"], rec["resp_rate_per_min"]) == (118, 28)
    for obx in (
        f"OBX|1|NM|8867-4^Heart rate^LN||18|{resp}|||||F",
        f"OBX|1|NM|9279-1^Resp rate^LN||88|{heart}|||||F",
        "OBX|1|NM|8867-4^Heart rate^LN||88|per minute|||||F",
        "OBX|1|NM|9279-1^Resp rate^LN||18|per minute|||||F",
    ):
        wrong = outcome(oru(obx))
        assert isinstance(wrong, hl7v2.Refused) and wrong.reason_code == "bad_value", obx


def test_a_free_text_result_is_not_repeated_in_the_reason() -> None:
    """Reasons travel in clear (dead-letter topic, logs, ACK MSA-3); a free-text OBX-5 may name
    people. A number gone wrong is still quoted."""
    text = oru("OBX|1|NM|2524-7^Lactate^LN||Pt QUIXOTE refused, wife 555-0510 told|mmol/L|||||F")
    o = outcome(text)
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "bad_value"
    assert "QUIXOTE" not in o.reason and "555" not in o.reason
    o = outcome(oru("OBX|1|NM|2524-7^Lactate^LN||3,1|mmol/L|||||F"))
    assert isinstance(o, hl7v2.Refused) and "'3,1'" in o.reason
    o = outcome(oru("OBX|1|NM|2524-7^Lactate^LN||123-45-6789|mmol/L|||||F"))
    assert isinstance(o, hl7v2.Refused) and "6789" not in o.reason


def test_formatting_escapes_change_no_identifier() -> None:
    """Formatting commands are for formatted text (§2.7.6): in PID-3 they are dropped, as
    before, so a patient keeps their token."""
    o = outcome(adt_message("ADT^A01", pid3="MRN\\.sk1\\77^^^H^MR", pv1="PV1|1|I|ICU^2^A^H"))
    assert isinstance(o, hl7v2.Mapped)
    assert o.records[0][1]["patient_token"] == tok("H", "MRN77")


# --- a review of real ADT feeds ------------------------------------------------------------


def placed_after(
    *messages: str, bed_units: frozenset[tuple[str, str]] | None = None
) -> tuple[list[str], census.PatientPlacement]:
    """Each message mapped (`bed_units`: the gateway's units of beds) and applied in turn to one
    patient's placement: their outcomes."""
    placement, seen = census.PatientPlacement(), []
    for minute, text in enumerate(messages):
        o = outcome(text.replace("|Q1|", f"|Q{minute}|"), bed_units)
        assert isinstance(o, hl7v2.Mapped), o
        for _, record in o.records:
            result, _ = placement.apply(census.AdtEvent.of(record, minute * 60_000))
            seen.append(f"{record['event_type']}:{result.status}")
    return seen, placement


def test_an_update_of_a_visit_that_is_over_moves_no_one() -> None:
    """EHRs send A08 for coding and billing on old encounters: PV1-45 says the visit is over,
    so its PV1-3 is where that visit was, not where the patient is now."""
    old_visit = "PV1|1|I|ICU^02^A^H" + "|" * 16 + "V1" + "|" * 25 + "20260101080000|20260105100000"
    seen, placement = placed_after(
        adt_message("ADT^A01", pv1="PV1|1|I|5W^512^A^H"),
        adt_message("ADT^A08", pv1=old_visit),
    )
    assert seen == ["admit:applied", "update:no_change"]
    assert placement.place is not None and placement.place.unit_id == "5W"


def test_a_change_to_outpatient_where_the_patient_lies_keeps_the_bed() -> None:
    """HL7 v2.5 3.3.7: after an A07 the patient is still seen for this episode of care; in the
    bed they were in (PV1-3 the unit of PV1-6) they keep it. To another unit (an outpatient
    department) or without one, they leave it."""
    admit = adt_message("ADT^A01", pv1="PV1|1|I|5W^512^A^H")
    stays = "PV1|1|O|5W^512^A^H|||5W^512^A^H"
    seen, placement = placed_after(admit, adt_message("ADT^A07", pv1=stays))
    assert seen == ["admit:applied", "update:no_change"] and placement.place is not None
    leaves = "PV1|1|O|OPD^1^1^H|||5W^512^A^H"
    seen, placement = placed_after(admit, adt_message("ADT^A07", pv1=leaves))
    assert seen == ["admit:applied", "discharge:applied"] and placement.place is None


def test_a_change_to_outpatient_in_a_unit_of_beds_keeps_a_bed_without_saying_where_it_was() -> None:
    """PV1-6 is optional: an inpatient converted to observation in the bed they lie in (the
    common A07) was discharged when the A07 did not repeat where they were, and left the
    census and the nurse board while in the bed. Where the gateway knows the units of beds
    (the capacity file's), an A07 naming one keeps a bed there; one naming an outpatient
    department, or of a visit that is over (PV1-45), leaves it."""
    beds = frozenset({("H", "5W"), ("H", "OBS")})
    admit = adt_message("ADT^A01", pv1="PV1|1|I|5W^512^A^H")
    in_place = "PV1|1|O|5W^512^A^H"
    seen, placement = placed_after(admit, adt_message("ADT^A07", pv1=in_place), bed_units=beds)
    assert seen == ["admit:applied", "update:no_change"]
    assert placement.place is not None and placement.place.bed_id == "512-A"
    to_observation = "PV1|1|O|OBS^3^1^H|||5W^512^A^H"
    seen, placement = placed_after(
        admit, adt_message("ADT^A07", pv1=to_observation), bed_units=beds
    )
    assert seen == ["admit:applied", "update:applied"]
    assert placement.place is not None and placement.place.unit_id == "OBS"
    for leaves in (
        "PV1|1|O|OPD^1^1^H",  # an outpatient department
        "PV1|1|O|OPD^1^1^H|||5W^512^A^H",
        in_place + "|" * 42 + "20260301070000",  # the visit is over (PV1-45)
    ):
        seen, placement = placed_after(admit, adt_message("ADT^A07", pv1=leaves), bed_units=beds)
        assert seen == ["admit:applied", "discharge:applied"] and placement.place is None, leaves
    # without the units of beds (the pure mapping alone), PV1-6 decides as before
    seen, _ = placed_after(admit, adt_message("ADT^A07", pv1=in_place))
    assert seen == ["admit:applied", "discharge:applied"]


def test_a_time_in_the_hour_repeated_when_daylight_saving_ends_takes_the_senders_offset() -> None:
    """01:20 happens twice in New York on 2026-11-01; a message stamped -0500 is in the second."""
    zone = ZoneInfo("America/New_York")
    second = hl7v2.sender_zone("20261101012500-0500", zone)
    first = hl7v2.sender_zone("20261101015500-0400", zone)
    assert hl7v2.hl7_time("20261101012000", second) == datetime(2026, 11, 1, 6, 20, tzinfo=UTC)
    assert hl7v2.hl7_time("20261101012000", first) == datetime(2026, 11, 1, 5, 20, tzinfo=UTC)
    assert hl7v2.hl7_time("20260701120000", second) == datetime(2026, 7, 1, 16, 0, tzinfo=UTC)
    # never after the message: 01:50 -0500 would be 06:50, after a message sent at 06:10
    early = hl7v2.sender_zone("20261101011000-0500", zone)
    assert hl7v2.hl7_time("20261101015000", early) == datetime(2026, 11, 1, 5, 50, tzinfo=UTC)
    # the hour skipped in spring is the zone's, as before
    spring = hl7v2.sender_zone("20260308033000-0400", zone)
    assert hl7v2.hl7_time("20260308023000", spring) == datetime(2026, 3, 8, 7, 30, tzinfo=UTC)


def test_an_emergency_visit_closed_after_the_inpatient_admission_keeps_the_inpatients_bed() -> None:
    """Where the emergency visit is an encounter of its own (a Cerner FIN, a Meditech ER
    account), its A03 comes after the inpatient admission: another visit, from a unit the
    patient is not in. A discharge of the stay's own visit, or from its unit, still applies."""
    ed = "PV1|1|E|ED^^12^H||||||||||||||||FIN1"
    inpatient = "PV1|1|I|5W^512^A^H||||||||||||||||FIN2"
    seen, placement = placed_after(
        adt_message("ADT^A04", pv1=ed),
        adt_message("ADT^A01", pv1=inpatient),
        adt_message("ADT^A03", pv1=ed),
    )
    assert seen == ["register:no_change", "admit:applied", "discharge:not_admitted"]
    assert placement.place is not None and placement.place.unit_id == "5W"
    renumbered = "PV1|1|I|5W^512^A^H" + "|" * 16 + "FIN3"  # interim billing: a new number
    seen, placement = placed_after(
        adt_message("ADT^A01", pv1=inpatient), adt_message("ADT^A03", pv1=renumbered)
    )
    assert seen == ["admit:applied", "discharge:applied"] and placement.place is None
    # from its unit named without its facility (the sender's then): the patient's unit
    elsewhere = "PV1|1|I|5W^512^A^MAIN" + "|" * 16 + "FIN2"
    no_facility = "PV1|1|I|5W^512^A" + "|" * 16 + "FIN3"
    seen, _ = placed_after(
        adt_message("ADT^A01", pv1=elsewhere), adt_message("ADT^A03", pv1=no_facility)
    )
    assert seen == ["admit:applied", "discharge:applied"]
    # an A07 to a clinic under a new visit number (HL7 v2.5 3.3.7 allows one) leaves the bed
    clinic = "PV1|1|O|CARDCLIN^^^H|||5W^512^A^H" + "|" * 13 + "FIN9"
    seen, placement = placed_after(
        adt_message("ADT^A01", pv1=inpatient), adt_message("ADT^A07", pv1=clinic)
    )
    assert seen == ["admit:applied", "discharge:applied"] and placement.place is None


def test_a_transfer_resent_under_a_new_message_id_is_undone_with_the_first_by_its_cancel() -> None:
    """Interface engines resend a message under a new MSH-10: the second A02 to the same bed
    changes nothing, so the A12 takes the patient back to where the transfer found them."""
    icu = adt_message("ADT^A02", pv1="PV1|1|I|ICU^02^A^H")
    seen, placement = placed_after(
        adt_message("ADT^A01", pv1="PV1|1|I|5W^512^A^H"),
        icu,
        icu,
        adt_message("ADT^A12", pv1="PV1|1|I|5W^512^A^H"),
    )
    assert seen == ["admit:applied", "transfer:applied", "transfer:no_change",
                    "cancel_transfer:applied"]  # fmt: skip
    assert placement.place is not None and placement.place.unit_id == "5W"


def test_a_cuffs_noninvasive_pressures_and_a_temporal_artery_temperature_are_read() -> None:
    """LOINC's noninvasive systolic, diastolic and mean (a monitor's NBP channels) and the
    temporal artery temperature (a ward's forehead scanner) were left unread with an AA: a
    systolic of 84 and a fever lost, and a measured MAP of 63 replaced by an estimate of 71."""
    rec = reading(
        oru(
            "OBX|1|NM|76534-7^Systolic blood pressure by Noninvasive^LN||84|mm[Hg]|||||F\r"
            "OBX|2|NM|76535-4^Diastolic blood pressure by Noninvasive^LN||46|mm[Hg]|||||F\r"
            "OBX|3|NM|76536-2^Mean blood pressure by Noninvasive^LN||63|mm[Hg]|||||F\r"
            "OBX|4|NM|75539-7^Body temperature - Temporal artery^LN||39.4|Cel|||||F"
        )
    )
    assert (rec["sbp_mmhg"], rec["dbp_mmhg"], rec["map_mmhg"], rec["temp_c"]) == (84, 46, 63, 39.4)
    # the cuff after the arterial line (as mdc ranks it), a forehead scan after the rectal
    # reading that checks it, in either order
    arterial = (
        "OBX|1|NM|150033^MDC_PRESS_BLD_ART_SYS^MDC||84|266016^MDC_DIM_MMHG^MDC|||||F\r"
        "OBX|2|NM|150035^MDC_PRESS_BLD_ART_MEAN^MDC||58|266016^MDC_DIM_MMHG^MDC|||||F\r"
        "OBX|3|NM|8332-9^Rectal temperature^LN||38.9|Cel|||||F"
    )
    cuff = (
        "OBX|4|NM|76534-7^SBP noninvasive^LN||118|mm[Hg]|||||F\r"
        "OBX|5|NM|76536-2^MAP noninvasive^LN||74|mm[Hg]|||||F\r"
        "OBX|6|NM|75539-7^Temporal artery temperature^LN||37.4|Cel|||||F"
    )
    for obx in (f"{arterial}\r{cuff}", f"{cuff}\r{arterial}"):
        rec, _ = partly_read(oru(obx))
        assert (rec["sbp_mmhg"], rec["map_mmhg"], rec["temp_c"]) == (84, 58, 38.9)


def test_an_hl7_v2_1_result_without_obx_14_is_timed_by_its_order() -> None:
    """HL7 v2.1's OBX has 12 fields: reading OBX-14 raised, and the message's lactate was lost
    to a dead letter."""
    rec = reading(
        "\r".join(
            [
                "MSH|^~\\&|LAB|GHH|WF|GHH|202603011015||ORU|C21|P|2.1",
                "PID|1||880012^^^GHH^MR",
                "OBR|1|||LACT^Lactate|||202603010935",
                "OBX|1|NM|2524-7^Lactate^LN||4.6|mmol/L|0.5-2.0|H|||F",
            ]
        )
    )
    assert rec["lactate_mmol_l"] == 4.6
    assert rec["event_time"] == datetime(2026, 3, 1, 9, 35, tzinfo=UTC)
    # one that sends an OBX-14 all the same (past v2.1's twelve fields): its time is not told
    o = outcome(
        "\r".join(
            [
                "MSH|^~\\&|LAB|GHH|WF|GHH|202603011015||ORU|C21|P|2.1",
                "PID|1||880012^^^GHH^MR",
                "OBR|1|||LACT^Lactate|||202603010935",
                "OBX|1|NM|2524-7^Lactate^LN||4.6|mmol/L|0.5-2.0|H|||F|||202603010940",
            ]
        )
    )
    assert isinstance(o, hl7v2.Refused) and "OBX-12" in o.reason, o


@pytest.mark.parametrize("blank", ["   ", "\t", " \t ", "  \r  "])
@pytest.mark.parametrize("eol", ["\r", "\n", "\r\n"])
def test_a_line_of_spaces_between_segments_is_skipped_as_a_blank_line(blank: str, eol: str) -> None:
    """Some interface engines leave a line of spaces (or a tab) between segments. A segment
    starts with its three-character id (v2.5 §2.5.2), so the line holds none: it was read as a
    segment of no name and the whole admission refused malformed."""
    lines = adt_message("ADT^A01").split("\r")
    text = eol.join([*lines[:2], blank, *lines[2:]])
    o = outcome(text)
    assert isinstance(o, hl7v2.Mapped), o
    assert o.records[0][1]["event_type"] == "admit"
    assert o.records[0][1]["patient_token"] == tok("H", "MRN1")


@pytest.mark.parametrize(
    ("version", "encoding"),
    [("2.5.1", "^~\\&"), ("2.5.1", "^~\\&#"), ("2.8", "^~\\&"), ("2.8", "^~\\&#")],
)
@pytest.mark.parametrize(
    ("sent", "read"),
    [
        ("MRN\\E\\P\\E\\7", "MRN\\P\\7"),  # an escaped escape, a P, an escaped escape
        ("MRN\\E\\X41\\E\\7", "MRN\\X41\\7"),  # the text \X41\, no hex data
        ("MRN\\E\\F\\E\\7", "MRN\\F\\7"),
        ("MRN\\E\\.br\\E\\7", "MRN\\.br\\7"),
        ("MRN\\E\\E\\E\\7", "MRN\\E\\7"),
    ],
)
def test_an_escaped_escape_character_is_decoded_once(
    version: str, encoding: str, sent: str, read: str
) -> None:
    """v2.5 §2.7: `\\E\\` is the escape character itself, and what it gives is text, not the
    start of another sequence. hl7apy writes `\\P\\` and `\\X41\\` back as `\\E\\P\\E\\` and
    `\\E\\X41\\E\\`, and the unescaping read those as the sequences they were: a sender's
    `MRN\\E\\P\\E\\7` (the record number `MRN\\P\\7`) was read `MRN#7` or `MRN7`, another
    patient's token, and `MRN\\E\\X41\\E\\7` was `MRNA7`."""
    text = adt_message("ADT^A01", pid3=f"{sent}^^^H^MR").replace("|2.5.1", f"|{version}")
    o = outcome(text.replace("^~\\&", encoding, 1))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.records[0][1]["patient_token"] == tok("H", read)


def test_escape_sequences_the_sender_sent_are_still_decoded_and_kept_apart() -> None:
    """The sequences themselves read as before: hex data, the truncation character declared in
    v2.8, a delimiter; and a dead-lettered OBX keeps its text as the sender wrote it (hl7apy
    writes `\\XB0\\` back as `\\E\\XB0\\E\\`, which is the text `\\XB0\\`)."""
    v28 = adt_message("ADT^A01", pid3="MRN\\P\\7^^^H^MR").replace("|2.5.1", "|2.8")
    o = outcome(v28.replace("^~\\&", "^~\\&#", 1))
    assert isinstance(o, hl7v2.Mapped) and o.records[0][1]["patient_token"] == tok("H", "MRN#7")
    hexed = outcome(adt_message("ADT^A01", pid3="MRN\\X41\\7^^^H^MR"))
    assert isinstance(hexed, hl7v2.Mapped)
    assert hexed.records[0][1]["patient_token"] == tok("H", "MRNA7")
    obx = "OBX|2|NM|8310-5^Temp^LN||38.1|\\XB0\\X|||||F"
    rec, rejected = partly_read(oru(f"OBX|1|NM|8867-4^HR^LN||88|/min|||||F\r{obx}"))
    assert rec["heart_rate_bpm"] == 88
    [letter] = rejected
    assert letter.payload == obx.encode()


@pytest.mark.parametrize(
    ("sent", "other"),
    [
        ("12\\34\\56", "1256"),  # a sender that does not escape its backslashes
        ("A\\B\\C", "AC"),
        ("MRN\\\\7", "MRN7"),  # an empty \\: no sequence either
        ("MRN\\Cxxxx\\7", "MRN7"),  # \\C is hexadecimal xxyy (§2.7.4)
        ("MRN\\X4\\7", "MRN7"),  # hex data is whole bytes
        ("MRN\\P\\7", "MRN7"),  # no truncation character declared (v2.5.1 here)
    ],
)
def test_a_backslash_that_opens_no_escape_sequence_is_text(sent: str, other: str) -> None:
    """What is no escape sequence of the standard (v2.5 §2.7) is the text the sender sent,
    backslashes included: it was dropped, and `12\\34\\56` was the patient `1256`."""
    tokens = []
    for pid3 in (sent, other):
        o = outcome(adt_message("ADT^A01", pid3=f"{pid3}^^^H^MR"))
        assert isinstance(o, hl7v2.Mapped), o
        tokens.append(o.records[0][1]["patient_token"])
    assert tokens == [tok("H", sent), tok("H", other)]


@pytest.mark.parametrize(
    ("text", "formatted", "read"),
    [
        ("ICU\\A\\1", False, "ICU\\A\\1"),
        ("C:\\dir\\file", False, "C:\\dir\\file"),
        ("a\\b\\F\\c", False, "a\\b|c"),  # read on after a backslash that is text
        ("C:\\dir\\X41\\", False, "C:\\dirA"),
        ("1\\.xx\\2", True, "1\\.xx\\2"),  # no formatting command of §2.7.6
        ("1\\.br\\2\\.sp2\\3\\.in+4\\4\\.fi\\", True, "1\n2\n3 4"),
        ("1\\.br\\2", False, "12"),  # dropped outside formatted text, as before
        ("A\\H\\B\\N\\C\\C2842\\D\\M24A1B3\\E\\Zloc\\F", False, "ABCDEF"),  # as before
        ("\\XC2B0\\F \\XB0\\F", False, "\u00b0F \u00b0F"),
    ],
)
def test_only_the_standards_escape_sequences_are_decoded(
    text: str, formatted: bool, read: str
) -> None:
    enc = {"FIELD": "|", "COMPONENT": "^", "REPETITION": "~", "ESCAPE": "\\", "SUBCOMPONENT": "&"}
    assert hl7v2.unescape(text, enc, formatted=formatted) == read


def test_a_location_with_a_backslash_keeps_it() -> None:
    """PV1-3 `ICU\\A\\1` was the unit `ICU1`, another unit's."""
    o = outcome(adt_message("ADT^A01", pv1="PV1|1|I|ICU\\A\\1^12^A^H"))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.records[0][1]["unit_id"] == "ICU\\A\\1"


@pytest.mark.parametrize(
    "text",
    [
        "MRN\uffff1",
        "MRN\uffff\ufffe\ufdd0\\E\\1",
        "M" + "".join(hl7v2._NO_ESCAPES),  # all of them: written as hl7apy writes it
    ],
)
def test_a_noncharacter_in_a_value_is_read_as_sent(text: str) -> None:
    """Fields are written back with a noncharacter as their escape character (`_er7`): one the
    value holds itself was written `\uffffE\uffff`, another patient's token and a control id
    the sender could not match. The first the value does not hold is used."""
    o = outcome(adt_message("ADT^A01", pid3=f"{text}^^^H^MR"))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.records[0][1]["patient_token"] == tok("H", text.replace("\\E\\", "\\"))
    msg = hl7v2.parse(adt_message("ADT^A01").replace("|Q1|", f"|{text}|"))
    assert not isinstance(msg, hl7v2.Refused)
    assert ack_fields(hl7v2.ack(msg, "AA"))[1] == ["MSA", "AA", text]


def ack_fields(ack: str) -> tuple[list[str], list[str]]:
    msh, msa, *_ = ack.split("\r")
    return msh.split("|"), msa.split("|")


def test_fields_the_ack_copies_are_written_in_the_acks_own_delimiters() -> None:
    """A sender may declare other encoding characters (MSH-2, v2.5 §2.5.4): here `*` separates
    components, `!` escapes and `@` separates subcomponents, so its `^` is text. The ACK (which
    declares `^~\\&`) copied MSH-3, MSH-4, MSH-10 and MSH-18 as the message wrote them: MSH-6
    `GH*1.2.3*ISO` was one component, MSH-5 `LAB^X` two, and MSA-2 `C!F!7` not the control id
    `C|7` the sender matches its ACK by. Each is decoded and escaped again (v2.5 §2.7)."""
    text = "\r".join(
        [
            "MSH|*~!@|LAB^X|GH*1.2.3*ISO|WF|H|20260301080000||ADT*A01|C!F!7|P|2.5.1"
            "||||||8859!S!1~UNICODE UTF-8",
            "EVN|A01|20260301075500",
            "PID|1||MRN1***H*MR",
            "PV1|1|I|4E*12*A*H",
        ]
    )
    msg = hl7v2.parse(text)
    assert not isinstance(msg, hl7v2.Refused)
    ack = hl7v2.ack(msg, "AE", "x", "207")
    msh, msa = ack_fields(ack)
    assert msh[1] == "^~\\&"
    assert (msh[4], msh[5], msh[17]) == ("LAB\\S\\X", "GH^1.2.3^ISO", "8859*1~UNICODE UTF-8")
    assert msa[:3] == ["MSA", "AE", "C\\F\\7"]
    back = hl7v2.parse(ack)  # and it reads back as the values the sender sent
    assert not isinstance(back, hl7v2.Refused)
    assert hl7v2._field(back, "MSA", 2) == "C|7"
    assert hl7v2._field(back, "MSH", 5) == "LAB^X"
    assert hl7v2._field(back, "MSH", 6, 2) == "1.2.3"


def test_a_control_id_with_a_line_break_in_hex_cannot_break_the_ack() -> None:
    """`\\X0D\\` decoded is a carriage return, the segment terminator: the ACK writes it as the
    hexadecimal data it was, never as a CR that would end MSA early."""
    msg = hl7v2.parse(adt_message("ADT^A01").replace("|Q1|", "|Q\\X0D\\1|"))
    assert not isinstance(msg, hl7v2.Refused)
    _, msa = ack_fields(hl7v2.ack(msg, "AA"))
    assert msa == ["MSA", "AA", "Q\\X0D\\1"]


@pytest.mark.parametrize("version", ["2.7", "2.7.1", "2.8", "2.8.2", "2.9"])
@pytest.mark.parametrize(
    ("encoding", "control_id"),
    [("^~\\&", "MSG#7"), ("^~\\&#", "MSG#7"), ("^~\\&#", "MSG\\P\\7"), ("^~\\&", "MSG\\P\\7")],
)
def test_a_v2_7_ack_echoes_a_control_id_holding_the_truncation_character(
    version: str, encoding: str, control_id: str
) -> None:
    """hl7apy's v2.7+ ACK declares the truncation character (`^~\\&#`) and writes a `#` in its
    values as `\\L\\`, which is no escape sequence of the standard (v2.7 §2.7 has `\\P\\`): the
    sender could not match MSA-2 `MSG\\L\\7` to its MSH-10 `MSG#7`. The ACK declares no
    truncation character (it truncates nothing: v2.7 2.5.5.2), and echoes the control id as
    the sender wrote it, its `\\P\\` too (the branch read it `MSG#7`, or `MSG7` where MSH-2
    declares none): the sender matches it byte for byte."""
    text = adt_message("ADT^A01").replace("|Q1|P|2.5.1", f"|{control_id}|P|{version}")
    msg = hl7v2.parse(text.replace("^~\\&", encoding, 1))
    assert not isinstance(msg, hl7v2.Refused)
    msh, msa = ack_fields(hl7v2.ack(msg, "AA"))
    assert msh[1] == "^~\\&"
    assert msa[:3] == ["MSA", "AA", control_id]


@pytest.mark.parametrize(
    "control_id",
    ["C\\X41\\1", "C\\H\\1\\N\\", "C\\XC2B0\\1", "C\\.br\\1", "C\\Zab\\1", "C\\E\\1", "C\\S\\1"],
)
def test_an_ack_in_the_senders_delimiters_echoes_its_control_id_byte_for_byte(
    control_id: str,
) -> None:
    """Engines match MSA-2 to the MSH-10 they sent byte for byte: where the message's encoding
    characters are the ACK's, what the ACK copies is as sent (the branch decoded and escaped it
    again: `C\\X41\\1` was echoed `CA1`, `C\\H\\1\\N\\` `C1`, and no sender matched it)."""
    text = adt_message("ADT^A01").replace("|Q1|", f"|{control_id}|")
    msg = hl7v2.parse(text.replace("|ADT|H|", "|ADT\\T\\1|H^1.2\\X41\\^L|", 1))
    assert not isinstance(msg, hl7v2.Refused)
    msh, msa = ack_fields(hl7v2.ack(msg, "AE", "x", "207"))
    assert msa[:3] == ["MSA", "AE", control_id]
    assert (msh[4], msh[5]) == ("ADT\\T\\1", "H^1.2\\X41\\^L")
    raw = text + "\rP I|1"  # unparsed: read from the text, the same
    _, msa = ack_fields(hl7v2.ack(None, "AE", "x", "100", raw=raw))
    assert msa[:3] == ["MSA", "AE", control_id]


def test_a_control_character_sent_raw_is_escaped_in_the_ack() -> None:
    """A control character the sender wrote unescaped (a tab, a vertical tab that is the MLLP
    start byte) is written as hexadecimal data even in the sender's own delimiters."""
    msg = hl7v2.parse(adt_message("ADT^A01").replace("|Q1|", "|Q\t1\x0b|"))
    assert not isinstance(msg, hl7v2.Refused)
    _, msa = ack_fields(hl7v2.ack(msg, "AA"))
    assert msa == ["MSA", "AA", "Q\\X09\\1\\X0B\\"]


def test_an_unparsed_messages_control_id_is_written_in_the_acks_delimiters() -> None:
    """A message hl7apy cannot read is answered with MSH-10 read from its text, in its own
    delimiters: `C!F!7^1` (`!` its escape character, `^` text) is `C\\F\\7\\S\\1` in the ACK's."""
    raw = "MSH|*~!@|LAB|GH|WF|H|20260301080000||ADT*A01|C!F!7^1|P|2.5.1\rP I|1"
    _, msa = ack_fields(hl7v2.ack(None, "AE", "x", "100", raw=raw))
    assert msa[:3] == ["MSA", "AE", "C\\F\\7\\S\\1"]


def patient_token(pid3: str, **options: Any) -> str:
    msg = hl7v2.parse(adt_message("ADT^A08", pid3=pid3))
    assert not isinstance(msg, hl7v2.Refused)
    o = hl7v2.map_message(msg, tok, source="t", **options)
    assert isinstance(o, hl7v2.Mapped), o
    return str(o.records[0][1]["patient_token"])


@pytest.mark.parametrize(
    ("pid3", "expected"),
    [
        ("A7^^^OTHER^MR~B2^^^H^MR", tok("OTHER", "A7")),  # not the sender's (MSH-4 H) first
        ("B2^^^H^MR~A7^^^OTHER^MR", tok("H", "B2")),
        ("Z9^^^Y^MR~A7^^^X^MR", tok("Y", "Z9")),  # no alphabetical order
        ("10^^^X^MR~9^^^X^MR", tok("X", "10")),  # nor string order of ids
        ("B2^^^H^PI~A7^^^GH^MR", tok("GH", "A7")),  # the type first, wherever it stands
    ],
)
def test_of_two_identifiers_of_one_type_the_first_as_sent_is_read(pid3: str, expected: str) -> None:
    """Without `hl7_preferred_authority` PID-3 is read as it always was: by identifier type,
    of one type the first repetition as sent, so an upgrade changes no patient's token."""
    assert patient_token(pid3) == expected


def test_the_patient_authority_fills_in_an_authority_and_orders_nothing() -> None:
    """`hl7_patient_authority` is the authority of an identifier sent without one; it does
    not choose among identifiers that name theirs (that moved tokens on upgrade)."""
    assert patient_token("A7^^^OTHER^MR~B2^^^GH^MR", default_authority="GH") == tok("OTHER", "A7")
    assert patient_token("A7^^^^MR~B2^^^GH^MR", default_authority="GH") == tok("GH", "A7")


def stay_tokens(*pid3s: str, **options: Any) -> list[str]:
    """The patient token of each message of a stay: an A01, then A08s, then an A03."""
    triggers = ["ADT^A01", *["ADT^A08"] * (len(pid3s) - 2), "ADT^A03"]
    tokens = []
    for msh9, pid3 in zip(triggers, pid3s, strict=True):
        o = hl7v2.map_message(hl7v2.parse(adt_message(msh9, pid3=pid3)), tok, source="t", **options)
        assert isinstance(o, hl7v2.Mapped), o
        tokens.append(str(o.records[0][1]["patient_token"]))
    return tokens


def test_an_identifier_linked_mid_stay_leaves_the_patients_token() -> None:
    """An MPI that links the patient's record at a second hospital of the group mid-stay sends
    its MR after the admitting one: the discharge still meets the admission (the branch read
    the lowest authority, CLINIC, and moved the patient from EPI/E100 to CLINIC/C5)."""
    stay = ("E100^^^EPI^MR", "E100^^^EPI^MR~C5^^^CLINIC^MR", "E100^^^EPI^MR~C5^^^CLINIC^MR")
    assert stay_tokens(*stay) == [tok("EPI", "E100")] * 3
    assert stay_tokens(*stay, preferred_authority="EPI") == [tok("EPI", "E100")] * 3
    reordered = ("E100^^^EPI^MR", "C5^^^CLINIC^MR~E100^^^EPI^MR", "C5^^^CLINIC^MR~E100^^^EPI^MR")
    assert stay_tokens(*reordered, preferred_authority="EPI") == [tok("EPI", "E100")] * 3


@pytest.mark.parametrize(
    ("pid3", "options", "expected"),
    [
        ("A7^^^OTHER^MR~B2^^^H^MR", {"preferred_authority": "H"}, tok("H", "B2")),
        ("B2^^^H^MR~A7^^^OTHER^MR", {"preferred_authority": "H"}, tok("H", "B2")),
        (
            "A7^^^&1.2.9&ISO^MR~B2^^^&1.2.3&ISO^MR",
            {"preferred_authority": "1.2.3"},
            tok("1.2.3", "B2"),
        ),
        # an identifier sent without an authority is of the one its token takes (the sender's)
        ("A7^^^OTHER^MR~B2^^^^MR", {"preferred_authority": "H"}, tok("H", "B2")),
        (
            "A7^^^OTHER^MR~B2^^^^MR",
            {"preferred_authority": "GH", "default_authority": "GH"},
            tok("GH", "B2"),
        ),
        # by type among several of it, and never its visit number
        ("P1^^^EPI^PI~E100^^^EPI^MR", {"preferred_authority": "EPI"}, tok("EPI", "E100")),
        ("V9^^^EPI^VN~C5^^^CLINIC^MR", {"preferred_authority": "EPI"}, tok("CLINIC", "C5")),
        # none of it: the first as sent
        ("Z9^^^Y^MR~A7^^^X^MR", {"preferred_authority": "EPI"}, tok("Y", "Z9")),
    ],
)
def test_the_preferred_authoritys_identifier_is_read_wherever_it_stands(
    pid3: str, options: dict[str, str], expected: str
) -> None:
    """`hl7_preferred_authority` (opt-in) is how a site whose engine reorders PID-3's
    repetitions keeps one token per patient: its identifier is read in either order."""
    assert patient_token(pid3, **options) == expected


def test_a_merged_record_with_two_record_numbers_is_read_as_pid_3_is() -> None:
    """MRG-1 (the prior PID-3) is read as PID-3 is, so the alias's token is the one its own
    messages made: the first as sent, or the preferred authority's in either order."""

    def merged(mrg: str, **options: str) -> str:
        msg = hl7v2.parse(merge_message("A40", "PID|1||MRN1^^^H^MR", mrg, "PV1|1|I|ICU^2^A^H"))
        o = hl7v2.map_message(msg, tok, source="t", **options)
        assert isinstance(o, hl7v2.Mapped), o
        return str(o.records[0][1]["patient_token"])

    assert merged("MRG|T9^^^OTHER^MR~T5^^^H^MR") == tok("OTHER", "T9")
    assert merged("MRG|T5^^^H^MR~T9^^^OTHER^MR") == tok("H", "T5")
    for mrg in ("MRG|T9^^^OTHER^MR~T5^^^H^MR", "MRG|T5^^^H^MR~T9^^^OTHER^MR"):
        assert merged(mrg, preferred_authority="H") == tok("H", "T5")
    # one sent without an authority is the survivor's (H): preferred as it
    assert merged("MRG|T9^^^OTHER^MR~T5^^^^MR", preferred_authority="H") == tok("H", "T5")


def v27(obx: str) -> str:
    return oru(obx).replace("|P|2.5.1", "|P|2.7.1")


@pytest.mark.parametrize("version", ["2.7", "2.7.1", "2.8", "2.8.2"])
def test_a_loinc_code_in_the_second_alternate_of_obx_3_is_read(version: str) -> None:
    """v2.7 CWE has a second alternate triplet (components 10-12; 7-8 are the coding systems'
    versions and 9 the original text): a sender that codes OBX-3 locally, with a second local
    code and the LOINC last, had its heart rate left unread."""
    obx = "OBX|1|NM|X123^Pulse^L^P7^Pulse^99LOC^^^Pulse^8867-4^Heart rate^LN||88|/min|||||F"
    rec, rejected = partly_read(oru(obx).replace("|P|2.5.1", f"|P|{version}"))
    assert not rejected and rec["heart_rate_bpm"] == 88


def test_the_second_alternate_is_read_only_where_the_first_two_give_no_code() -> None:
    """The identifier and the alternate decide where either gives a code read: a second
    alternate (which should be the same concept) never overrides them."""
    rec, _ = partly_read(v27("OBX|1|NM|8867-4^HR^LN^^^^^^HR^8310-5^Temp^LN||88|/min|||||F"))
    assert rec["heart_rate_bpm"] == 88 and "temp_c" not in rec
    rec, _ = partly_read(v27("OBX|1|NM|H1^HR^L^8867-4^HR^LN^^^HR^8310-5^Temp^LN||88|/min|||||F"))
    assert rec["heart_rate_bpm"] == 88 and "temp_c" not in rec


def test_a_blood_pressure_panel_in_the_second_alternate_is_read() -> None:
    rec, _ = partly_read(v27("OBX|1|ST|BP^BP^L^^^^^^BP^85354-9^BP panel^LN||120/80|mm[Hg]|||||F"))
    assert (rec["sbp_mmhg"], rec["dbp_mmhg"]) == (120, 80)


def test_an_unread_obx_3_names_its_second_alternate_too() -> None:
    hr = "OBX|2|NM|8867-4^HR^LN||88|/min|||||F"
    o = outcome(v27(f"OBX|1|NM|X1^Foo^L^^^^^^Foo^Y2^Bar^99ZZ||5||||||F\r{hr}"))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.unread == ["X1 (L)", "Y2 (99ZZ)"]


@pytest.mark.parametrize(
    ("obx_3", "unread"),
    [
        ("X1^Pulse^L^^^^^^Pulse^8867-4^HR^LN", ["X1 (L)"]),
        ("X1^Pulse^99LOC^^^^2.1^v1^Pulse^^^^^1.2.3^4.5.6^20200101^7.8.9", ["X1 (99LOC)"]),
    ],
)
def test_before_v2_7_components_10_to_12_of_obx_3_are_not_read(
    obx_3: str, unread: list[str]
) -> None:
    """v2.5.1 defines no CWE 10-12, and hl7apy gives a sender's components past 9 without the
    empty ones among them: read, `LN` was an unread label and the LRI OIDs `1.2.3 (20200101)`,
    and a code there could be read as what it is not. Read by two triplets, as before."""
    o = outcome(oru(f"OBX|1|NM|{obx_3}||5||||||F\rOBX|2|NM|8867-4^HR^LN||88|/min|||||F"))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.unread == unread
    assert o.records[0][1]["heart_rate_bpm"] == 88  # OBX 2's: OBX 1 read as no heart rate


@pytest.mark.parametrize(
    ("pid3", "expected"),
    [  # as real feeds send them (../shared/data/hl7v2: ADT-A06-01, ADT04-28)
        (
            "PATID1234^5^M11^ADT1^GOOD HEALTH HOSPITAL~123456789^^^^^USSSA^",
            tok("ADT1", "PATID1234"),
        ),
        ("0000000001^^^MR~e16726^^^EHRID~a1d4ee^^^NIST", tok("MR", "0000000001")),
    ],
)
def test_identifiers_of_no_patient_identifier_type_are_still_read_first_as_sent(
    pid3: str, expected: str
) -> None:
    """Real feeds' untyped identifiers are read first as sent (the second here is a social
    security number, CX.6 USSSA), with a preferred authority none of them names too."""
    assert patient_token(pid3) == expected
    assert patient_token(pid3, preferred_authority="EPI") == expected


# --- OBX-5 read per component, identifiers without control characters, the ACK's copies ---


ACVPU = "1104441000000107^ACVPU^SCT"
GCS_EYE = "9267-6^GCS eye^LN"


def value_of(obx: str, field: str, version: str = "2.5.1") -> Any:
    """`field` of what OBX 1 (`obx`) gives beside a respiratory rate and a GCS verbal 4 and
    motor 5 (so an eye's score is the total less 9), else the reason codes it is refused or
    dead-lettered with."""
    rest = ["OBX|2|NM|9279-1^RR^LN||18|/min|||||F"]
    rest += ["OBX|3|NM|9270-0^GCS verbal^LN||4||||||F", "OBX|4|NM|9268-4^GCS motor^LN||5||||||F"]
    o = outcome(oru("\r".join([f"OBX|1|{obx}|||||F", *rest])).replace("|P|2.5.1", f"|P|{version}"))
    if isinstance(o, hl7v2.Refused):
        return o.reason_code
    values = {name: value for _, rec in o.records for name, value in rec.items()}
    return values.get(field, [r.refusal.reason_code for r in o.rejected])


def test_an_escaped_separator_is_text_in_its_component_and_what_read_before_reads_the_same() -> (
    None
):
    """HL7 v2.5 §2.7: `\\S\\` is the component separator as text. OBX-5 was decoded whole and
    split afterwards, so an escaped separator split its component: a local answer code `V^2`
    (`V\\S\\2^Voice^L`) gave the text `2` and a score's text without a coding system (`4^Opens
    eyes\\S\\spontaneously`) the coding system `spontaneously`, and neither answer was read.
    Each component is now decoded once, after the split. A value that read with its escaped
    separator taken as one still reads the same where nothing in it says otherwise: engines
    escape a structured value they write into one component (`>\\S\\20`, `V\\S\\Voice\\S\\L`),
    and their feeds were read so; refused, those readings would be lost without a change in
    what the nurse charted (`test_an_answer_that_an_escaped_separator_makes_read_two_ways_…`
    for one that says otherwise)."""
    read_now = [
        (f"CWE|{ACVPU}||V\\S\\2^Voice^L", "acvpu", "V"),  # a local code `V^2`
        (f"CWE|{ACVPU}||L1\\S\\2^Responds^L^300202002^Responds to voice^SCT", "acvpu", "V"),
        (f"CWE|{GCS_EYE}||4^Opens eyes\\S\\spontaneously", "gcs_total", 13),  # no system
    ]
    as_before = [
        (f"CWE|{ACVPU}||A^Alert\\S\\oriented^L", "acvpu", "A"),
        (f"CWE|{ACVPU}||C^Confused\\S\\disoriented^L", "acvpu", "C"),
        (f"ST|{ACVPU}||Alert\\S\\", "acvpu", "A"),
        (f"CWE|{ACVPU}||130987000\\S\\Alert^Acute confusion^SCT", "acvpu", "C"),  # per component
        (f"ST|{ACVPU}||V\\S\\Voice\\S\\L", "acvpu", "V"),
        (f"ST|{ACVPU}||Voice\\T\\Pain", "acvpu", ["bad_value"]),  # `Voice&Pain`: no level
        (f"NM|{GCS_EYE}||=\\S\\4", "gcs_total", 13),
        ("ST|2524-7^Lactate^LN||>\\S\\20|mmol/L", "lactate_mmol_l", 20.0),
        ("SN|6690-2^WBC^LN||<^0\\X2E\\1|10*3/uL", "wbc_10e9_l", 0.1),
        ("NM|8867-4^HR^LN||8\\X38\\|/min", "heart_rate_bpm", 88.0),
        ("NM|8867-4^HR^LN||8\\S\\8|/min", "heart_rate_bpm", ["bad_value"]),
        ("NM|8867-4^HR^LN||88\\E\\S\\E\\|/min", "heart_rate_bpm", ["bad_value"]),  # `88\S\`
    ]
    for obx, field, expected in [*read_now, *as_before]:
        assert value_of(obx, field) == expected, obx


@pytest.mark.parametrize(
    ("obx", "field", "expected"),
    [
        (f"CWE|{ACVPU}||^^^^^^^^^300202002^Responds to voice^SCT", "acvpu", "V"),
        (f"CWE|{GCS_EYE}||^^^^^^^^^LA6556-0^Eyes open spontaneously^LN", "gcs_total", 13),
    ],
)
def test_a_v2_7_coded_answer_only_in_its_second_alternate_is_read(
    obx: str, field: str, expected: Any
) -> None:
    """v2.7 2A CWE: components 10-12 are the second alternate identifier, text and coding
    system. OBX-3 read them (v2.7+, where its first two triplets give no code); an ACVPU or
    GCS answer coded only there was dead-lettered. Read now with the first two, in one pass;
    before v2.7 (no such components: hl7apy keeps no empty ones there) not; one that names
    another level than the first two is refused (`test_a_v2_7_answers_second_alternate_…`)."""
    assert value_of(obx, field, "2.8") == expected
    assert value_of(obx, field, "2.5.1") == ["bad_value"]


@pytest.mark.parametrize(
    ("obx", "field", "expected"),
    [
        ("NM|X9^Eye^L^^^^^^^9267-6^GCS eye^LN||4", "gcs_total", 13),
        ("ST|X8^Level^L^^^^^^^1104441000000107^ACVPU^SCT||Voice", "acvpu", "V"),
    ],
)
def test_a_v2_7_obx_3_naming_a_gcs_part_or_acvpu_only_in_its_second_alternate_is_read(
    obx: str, field: str, expected: Any
) -> None:
    """OBX-3's LOINC in CWE 10-12 was read for a vital sign's code, not for a GCS part or the
    ACVPU observation: those were left unread. In v2.7+, where the first two triplets name
    nothing, the second alternate names them too."""
    assert value_of(obx, field, "2.8") == expected
    assert value_of(obx, field, "2.5.1") == []  # not read: unread, no dead letter


def control_sent(where: str) -> str:
    """A message with a control character in one of its patient's or visit's identifiers."""
    pv1 = "PV1|1|I|4E^12^A^H"
    messages = {
        "PID-3": adt_message("ADT^A01", pid3="MRN\\X0D0A\\1^^^H^MR"),
        "PID-3 sent raw": adt_message("ADT^A01", pid3="MRN\t1^^^H^MR"),
        "PID-3.4": adt_message("ADT^A01", pid3="MRN1^^^H\\X0A\\X^MR"),
        "PV1-19": adt_message("ADT^A01", pv1=pv1 + "|" * 16 + "V\\X0A\\1"),
        "MRG-1": merge_message("A40", "PID|1||MRN1^^^H^MR", "MRG|T9\\X0A\\1^^^H^MR", pv1),
    }
    return messages[where]


@pytest.mark.parametrize("where", ["PID-3", "PID-3 sent raw", "PID-3.4", "PV1-19", "MRG-1"])
def test_a_patients_or_visits_identifier_holding_a_control_character_refuses_the_message(
    where: str,
) -> None:
    """A line break sent as hexadecimal data (`MRN\\X0D0A\\1`), or a tab sent raw, decoded
    into the patient's identifier or its authority, the merged record's or the visit number:
    tokenised, it names a patient or visit no other feed names, and without it `MRN\\X0A\\1`
    would be `MRN1`, another patient. The message is refused (`bad_value`, 102), the reason
    starting with the field (an ACK's MSA-3 keeps 80 characters) and naming the character by
    its code point, never the value."""
    o = outcome(control_sent(where))
    assert isinstance(o, hl7v2.Refused), o
    assert (o.reason_code, o.ack_code, o.hl7_error) == ("bad_value", "AE", "102")
    assert o.reason.startswith(f"control character in {where.split()[0].split('.')[0]} (")
    assert "U+000" in o.reason and hl7v2.printable(o.reason) == o.reason


def test_a_reason_quoting_the_message_type_holds_no_control_character() -> None:
    """MSH-9 `ADT^A0\\X0D\\9` decoded is a CR: the reason quoting it (dead letter, log, ACK)
    quotes it escaped."""
    o = outcome(adt_message("ADT^A0\\X0D\\9"))
    assert isinstance(o, hl7v2.Refused) and o.reason_code == "unsupported_event"
    assert "ADT^A0\\r9 is not" in o.reason


@pytest.mark.parametrize("version", ["2.3.1", "2.4", "2.5.1", "2.6"])
def test_a_pre_2_7_ack_echoes_a_control_id_with_the_truncation_character_as_sent(
    version: str,
) -> None:
    """An engine set up for v2.7 declares the truncation character (`^~\\&#`) whatever
    MSH-12 says, and writes a `#` as `\\P\\` (v2.7 2.7.1). Before 2.7 the fifth was cut and
    `\\P\\` replaced by `#` in the text hl7apy parsed, so the ACK echoed `MSG#7` for the
    `MSG\\P\\7` sent, which the sender could not match to its MSH-10 (v2.7+ echoed it as sent),
    and MSH-3 `ADT\\P\\1` as MSH-5 `ADT#1`. The text is parsed as sent now, the fifth kept
    beside the message: the ACK echoes either byte for byte, and the control id and sender (in
    the event id) and the patient still read `#`."""
    for control_id in ("MSG\\P\\7", "MSG#7"):
        text = adt_message("ADT^A01", pid3="MRN\\P\\7^^^H^MR")
        text = text.replace("|Q1|P|2.5.1", f"|{control_id}|P|{version}")
        text = text.replace("^~\\&|ADT|", "^~\\&#|ADT\\P\\1|", 1)  # MSH-3 too
        msg = hl7v2.parse(text)
        assert not isinstance(msg, hl7v2.Refused)
        msh, msa = ack_fields(hl7v2.ack(msg, "AA"))
        assert (msh[1], msh[4], msa[:3]) == ("^~\\&", "ADT\\P\\1", ["MSA", "AA", control_id])
        o = hl7v2.map_message(msg, tok, source="t")
        assert isinstance(o, hl7v2.Mapped), o
        [(_, rec)] = o.records
        assert rec["event_id"] == "hl7:H/ADT#1:MSG#7:A01"
        assert rec["patient_token"] == tok("H", "MRN#7")


def test_an_acks_reason_with_a_line_break_or_the_mllp_end_byte_stays_in_msa_3() -> None:
    """MSA-3 (the reason in words) was written with the reason's control characters: a CR
    (a line break in an hl7apy error, a field quoted) ended MSA early and the rest of the
    reason was lost, a FS would end the MLLP frame. Each is a space."""
    msg = hl7v2.parse(adt_message("ADT^A01"))
    assert not isinstance(msg, hl7v2.Refused)
    ack = hl7v2.ack(msg, "AE", "line one\rline two\nthree\x1cfour", "207")
    assert [s[:3] for s in ack.split("\r")[:-1]] == ["MSH", "MSA", "ERR"]
    assert ack.split("\r")[1] == "MSA|AE|Q1|line one line two three four"


def test_a_processing_id_holding_a_control_character_cannot_cut_the_ack() -> None:
    """MSH-11 `P\\X0D\\T` decoded is `P`, a CR and `T`: set in the ACK, its CR ended MSH there
    and the MSA (the code the sender waits for) was lost. It is echoed escaped."""
    msg = hl7v2.parse(adt_message("ADT^A01").replace("|Q1|P|", "|Q1|P\\X0D\\T|"))
    assert not isinstance(msg, hl7v2.Refused)
    msh, msa = ack_fields(hl7v2.ack(msg, "AR", "x", "202"))
    assert (msh[10], msa[:3]) == ("P\\X0D\\T", ["MSA", "AR", "Q1"])


def test_an_ack_in_other_delimiters_keeps_the_senders_escape_sequences() -> None:
    """A sender with other encoding characters (`MSH|*~!@|`) gets what the ACK copies written
    in the ACK's: its delimiters' escapes as the characters they stand for, but its other
    sequences (highlighting, hexadecimal data) were decoded and dropped (`C!H!1!N!` echoed
    `C1`, `!XC2B0!` a `°` an ASCII ACK cannot carry). They are written with the ACK's escape
    character, as sent."""
    raw = "MSH|*~!@|LAB|GH|WF|H|20260301080000||ADT*A01|C!H!1!N!!XC2B0!!F!|P|2.5.1"
    msg = hl7v2.parse(raw + "\rEVN|A01|20260301075500\rPID|1||MRN1***H*MR\rPV1|1|I|4E*12*A*H")
    assert not isinstance(msg, hl7v2.Refused)
    for ack in (hl7v2.ack(msg, "AA"), hl7v2.ack(None, "AE", "x", "100", raw=raw + "\rP I|1")):
        assert ack_fields(ack)[1][2] == "C\\H\\1\\N\\\\XC2B0\\\\F\\"


def test_an_unparsed_message_in_other_delimiters_is_answered_with_its_processing_id() -> None:
    """MSH-11 of a message hl7apy cannot read was split at `^` whatever its component
    separator: `T*A` was no processing id, and a training message was answered as P."""
    raw = "MSH|*~!@|LAB|GH|WF|H|20260301080000||ADT*A01|C1|T*A|2.5.1\rP I|1"
    assert ack_fields(hl7v2.ack(None, "AE", "x", "100", raw=raw))[0][10] == "T"


@pytest.mark.parametrize(
    "obx",
    [
        f"CWE|{ACVPU}||A^Alert^L^^^^^^^300202002^Voice^SCT",
        f"CWE|{ACVPU}||248234008^Alert^SCT^^^^^^^130987000^Acute confusion^SCT",
        f"CWE|{GCS_EYE}||4^^^^^^^^^LA6553-7^Eyes closed^LN",
    ],
)
def test_a_v2_7_answers_second_alternate_naming_another_level_or_score_is_refused(
    obx: str,
) -> None:
    """v2.7 2A CWE: components 10-12 are a second alternate coding of the same answer. An
    ACVPU or GCS answer's were read only where its first two triplets gave nothing, so one
    naming another level (Voice, acute confusion beside Alert) or score (LOINC's eyes closed,
    1, beside a 4) was passed over, and the milder of two read, while the same disagreement in
    components 4-6 was refused. All the triplets a version defines are read in one pass: it is
    refused (before 2.7, which defines no 10-12, the first two are all there is)."""
    assert value_of(obx, "acvpu" if ACVPU in obx else "gcs_total", "2.8") == ["bad_value"]
    assert value_of(obx, "acvpu" if ACVPU in obx else "gcs_total", "2.5.1") in ("A", 13)


def test_a_gcs_answers_score_and_its_loinc_answer_must_agree() -> None:
    """A coded GCS part was read by its first LOINC answer, its identifier's score passed over:
    `4^^^LA6553-7^Eyes closed^LN` was eyes closed, 1, where the nurse's 4 says spontaneously.
    Where the two name different scores it is refused (dead-lettered, the reason naming
    both); where they agree, or one is sent, it is read."""
    assert value_of(f"CWE|{GCS_EYE}||4^^^LA6553-7^Eyes closed^LN", "gcs_total") == ["bad_value"]
    assert value_of(f"CWE|{GCS_EYE}||4^^^LA6556-0^Eyes open^LN", "gcs_total") == 13
    assert value_of(f"CWE|{GCS_EYE}||LA6553-7^Eyes closed^LN", "gcs_total") == 10


@pytest.mark.parametrize(
    "obx",
    [
        f"ST|{ACVPU}||Not\\S\\Alert",
        f"ST|{ACVPU}||No\\S\\Alert",
        f"ST|{ACVPU}||Confused\\S\\Alert",
        f"ST|{ACVPU}||U\\S\\A",
        f"CWE|{ACVPU}||C\\S\\Alert^Acute confusion^L",  # a local code `C^Alert`: confusion
        f"CWE|{ACVPU}||P\\S\\Alert^Responds to pain^L",
        f"CWE|{ACVPU}||Lx\\S\\A^^^130987000^Acute confusion^SCT",
        f"CWE|{GCS_EYE}||4\\S\\4^T",  # a `4^4` beside T (no score): read whole, a 4
    ],
)
def test_an_answer_that_an_escaped_separator_makes_read_two_ways_is_refused(obx: str) -> None:
    """HL7 v2.5 §2.7: `\\S\\` is the component separator as text, in its component. An answer
    was read first with it taken as a separator, as before: `Not\\S\\Alert` was an identifier
    `Not` (passed over) beside a text `Alert`, and `C\\S\\Alert^Acute confusion^L` (a local
    code `C^Alert` whose text is acute confusion) lost its text to the shift, both read as
    Alert. NEWS2 (RCP 2017) scores any level but Alert 3 points: a missed red flag. Read per
    component first; read whole too, the two must agree, and a reading only whole is kept only
    where the value bears it out (`V\\S\\Voice\\S\\L`): else it is refused, dead-lettered."""
    field = "acvpu" if ACVPU in obx else "gcs_total"
    assert value_of(obx, field) == ["bad_value"]


def test_alert_is_read_only_where_every_part_of_the_answer_names_it() -> None:
    """An identifier beside a text was passed over, and a text naming no level too: an ST
    `Not^Alert` (its `^` sent unescaped) was Alert, `248234008^Not alert^SCT` Alert, `C^Alert^L`
    Alert, `A^Voice` Voice. Every part is read: one naming another level refuses the answer
    (a nurse's record is never read as the milder of two), and Alert, which NEWS2 (RCP 2017)
    scores 0 where any other level scores 3, is read only where every part names it, but a
    local code's identifier beside its text (`L1^Alert^L`), which is its list's code."""
    refused = [
        f"ST|{ACVPU}||Not^Alert",
        f"CWE|{ACVPU}||248234008^Not alert^SCT",
        f"CWE|{ACVPU}||C^Alert^L",
        f"CWE|{ACVPU}||A^Voice",
    ]
    for obx in refused:
        assert value_of(obx, "acvpu") == ["bad_value"], obx
    read = [
        (f"CWE|{ACVPU}||L1^Alert^L", "A"),
        (f"CWE|{ACVPU}||248234008^Mentally alert (finding)^SCT", "A"),  # its full name
        (f"CWE|{ACVPU}||V^Voice^L", "V"),
        (f"ST|{ACVPU}||Alert", "A"),
    ]
    for obx, letter in read:
        assert value_of(obx, "acvpu") == letter, obx


def test_a_coded_alert_whose_local_code_names_no_coding_system_is_read_as_alert() -> None:
    """In a coded type (CWE, CE, CNE, CF) the first component is always an identifier, and
    v2.5 makes its coding system optional: `AL^Alert`, `1^Alert` are a local list's code beside
    its text, read as Alert before, not a part that may say otherwise (as an ST's `Not^Alert`,
    its `^` sent unescaped, may). Refused, a feed's Alert readings were lost."""
    for obx, version in [
        (f"CE|{ACVPU}||AL^Alert", "2.5.1"),
        (f"CE|{ACVPU}||1^Alert", "2.5.1"),
        (f"CE|{ACVPU}||1^Alert^", "2.5.1"),
        (f"CE|{ACVPU}||AVPU-A^Alert", "2.5.1"),
        (f"CE|{ACVPU}||12345^Alert^^248234008^Mentally alert^SCT", "2.5.1"),
        (f"CWE|{ACVPU}||AL^Alert^^^^^^^^248234008^Mentally alert^SCT", "2.8"),
    ]:
        assert value_of(obx, "acvpu", version) == "A", obx
    assert value_of(f"ST|{ACVPU}||Not^Alert", "acvpu") == ["bad_value"]


def test_a_snomed_alert_displayed_in_other_words_is_read_unless_its_text_may_say_otherwise() -> (
    None
):
    """A SNOMED CT Alert (248234008) whose display is not one of wardflow's words (`A - Alert`,
    `Alert and orientated`) was refused, where it was read as Alert before: the code says the
    level, and its display in other words says the same. Refused only where that text may say
    otherwise: a negation (`Not alert`, `Non-alert`, `Unalert`) or another level's word."""
    for value in [
        "248234008^A - Alert^SCT",
        "248234008^Alert (A)^SCT",
        "248234008^Alert and orientated^SCT",
        "248234008^Alert/oriented^SCT",
        "248234008^Mentally alert^SCT^AL^Alert - A^99EPIC",
    ]:
        assert value_of(f"CWE|{ACVPU}||{value}", "acvpu") == "A", value
    for value in [
        "248234008^Not alert^SCT",
        "248234008^Non-alert^SCT",
        "248234008^Unalert^SCT",
        "248234008^No response^SCT",
        "248234008^Alert but confused^SCT",
    ]:
        assert value_of(f"CWE|{ACVPU}||{value}", "acvpu") == ["bad_value"], value


def test_a_local_answer_an_engine_escaped_whole_reads_as_it_did() -> None:
    """An engine that escapes a whole coded answer into one component (`AVPU-C\\S\\New
    confusion\\S\\99LOCAL`) sends one component; read whole by today's rules it names the
    same level, and none of it names another: it reads as before, not refused. One whose parts
    may say otherwise still is."""
    for obx, letter in [
        (f"CWE|{ACVPU}||AVPU-C\\S\\New confusion\\S\\99LOCAL", "C"),
        (f"CWE|{ACVPU}||AVPU-A\\S\\Alert\\S\\99LOCAL", "A"),
        (f"CWE|{ACVPU}||AL\\S\\Alert\\S\\99EPIC", "A"),
        (f"CWE|{ACVPU}||1\\S\\Alert\\S\\L", "A"),
    ]:
        assert value_of(obx, "acvpu") == letter, obx
    for obx in [
        f"ST|{ACVPU}||Not\\S\\Alert",
        f"CWE|{ACVPU}||U\\S\\A",
        f"CWE|{ACVPU}||C\\S\\Alert^Acute confusion^L",
        f"CWE|{ACVPU}||Lx\\S\\A^^^130987000^Acute confusion^SCT",
    ]:
        assert value_of(obx, "acvpu") == ["bad_value"], obx


def test_a_gcs_local_code_with_no_coding_system_beside_a_loinc_answer_reads_the_loinc_answer() -> (
    None
):
    """A local answer code numbered past the part's scores and sent without a coding system
    (`703512^Spontaneous^^LA6556-0^…^LN`) was refused as no score, where the LOINC answer
    beside it says the score, as read before. A number that is a score and names another
    than the LOINC answer is still refused."""
    for obx in [
        f"CE|{GCS_EYE}||703512^Spontaneous^^LA6556-0^Eyes open spontaneously^LN",
        f"CE|{GCS_EYE}||10^Spontaneous^^LA6556-0^Eyes open spontaneously^LN",
        f"CE|{GCS_EYE}||703512\\S\\Spontaneous\\S\\\\S\\LA6556-0\\S\\Eyes open\\S\\LN",
    ]:
        assert value_of(obx, "gcs_total") == 13, obx
    assert value_of(f"CWE|{GCS_EYE}||4^^^LA6553-7^Eyes closed^LN", "gcs_total") == ["bad_value"]
    assert value_of(
        f"CWE|{GCS_EYE}||3^3 - To voice^L^^^^^^^LA6556-0^Eyes open spontaneously^LN",
        "gcs_total",
        "2.8",
    ) == ["bad_value"]
    assert value_of(f"CE|{GCS_EYE}||10^Spontaneous", "gcs_total") == ["bad_value"]


def test_an_oru_whose_place_holds_a_control_character_keeps_the_patients_values() -> None:
    """A control character in PV1-3.1 (the unit) or PV1-3.4 (the facility) of an ORU refused
    the message: the vitals of a patient PID-3 names were lost for a field that identifies no
    one. Each is read as absent (the unit `unknown`, the facility the sender's, as for one not
    sent), and the outcome says so (`Mapped.notes`)."""
    obx = "OBX|1|NM|8867-4^HR^LN||88|/min|||||F"
    for pv1, unit, facility, field in [
        ("MI\\X1C\\CU^12^A^H", "unknown", "H", "PV1-3.1"),
        ("MICU^12^A^H\\X0A\\X", "MICU", "ICU", "PV1-3.4"),
    ]:
        o = outcome(oru(obx).replace("MICU^12^A^H", pv1))
        assert isinstance(o, hl7v2.Mapped) and not o.rejected, o
        [(_, rec)] = o.records
        assert (rec["heart_rate_bpm"], rec["unit_id"], rec["facility_id"]) == (88, unit, facility)
        assert rec["patient_token"] == tok("H", "MRN9")
        [note] = o.notes
        assert note.startswith(f"control character in {field} (") and "read as absent" in note


def test_an_adt_location_holding_a_control_character_is_read_as_absent() -> None:
    """A control character in PV1-3 (`4\\X0B\\E`) refused every ADT: no unit of the census
    holds one. It is read as absent, and the rules for an absent PV1-3 apply: an admission is
    refused for its missing unit (102, the reason starting with why: an ACK's MSA-3 keeps 80
    characters), a discharge is read by its PV1-6, an update of a visit that is over never
    read it."""
    admit = outcome(adt_message("ADT^A01", pv1="PV1|1|I|4\\X0A\\E^12^A^H"))
    assert isinstance(admit, hl7v2.Refused)
    assert (admit.reason_code, admit.hl7_error) == ("bad_value", "102")
    assert admit.reason.startswith("control character in PV1-3: U+000A (read as absent)")
    discharge = outcome(adt_message("ADT^A03", pv1="PV1|1|I|4\\X0B\\E^12^A^H|||3W^1^A^H"))
    assert isinstance(discharge, hl7v2.Mapped), discharge
    [(_, rec)] = discharge.records
    assert (rec["event_type"], rec["unit_id"], rec["prior_unit_id"]) == ("discharge", None, "3W")
    assert census.discharged_from(rec) == "3W"
    [note] = discharge.notes
    assert note.startswith("control character in PV1-3 (") and "U+000B" in note
    ended = "PV1|1|I|4\\X0B\\E^12^A^H" + "|" * 42 + "20260201080000"
    update = outcome(adt_message("ADT^A08", pv1=ended))
    assert isinstance(update, hl7v2.Mapped), update
    assert update.records[0][1]["unit_id"] is None and update.notes == []


def test_a_bed_holding_a_control_character_is_absent_and_its_unit_still_read() -> None:
    """A control character in PV1-3's bed (`4E^12^A\\X0A\\B`) made the unit absent too: an
    admission to 4E was refused for a missing unit, where the unit was read before. Only the
    room and bed are read as absent, said in the notes; PV1-6's likewise."""
    admit = outcome(adt_message("ADT^A01", pv1="PV1|1|I|4E^12^A\\X0A\\B^H"))
    assert isinstance(admit, hl7v2.Mapped), admit
    [(_, rec)] = admit.records
    assert (rec["unit_id"], rec["bed_id"]) == ("4E", None)
    assert admit.notes == [
        "control character in PV1-3.2-3 (the patient's room and bed): U+000A, read as absent"
    ]
    moved = outcome(adt_message("ADT^A02", pv1="PV1|1|I|4E^12^A^H|||3W^1^A\\X0A\\B^H"))
    assert isinstance(moved, hl7v2.Mapped), moved
    [(_, rec)] = moved.records
    assert (rec["prior_unit_id"], rec["prior_bed_id"]) == ("3W", None)


def test_a_prior_location_with_a_control_character_is_absent_but_where_a_discharge_needs_it() -> (
    None
):
    """PV1-6 holding a control character refused the message. It is read as absent (a
    transfer's prior unit and bed None, said in the notes), but where a discharge names no unit
    in PV1-3 it is the unit the discharge is read by (udfs.census.discharged_from), and the
    message is refused (`bad_value`)."""
    bad = "3\\X85\\W^1^A^H"
    transfer = outcome(adt_message("ADT^A02", pv1=f"PV1|1|I|4E^12^A^H|||{bad}"))
    assert isinstance(transfer, hl7v2.Mapped), transfer
    [(_, rec)] = transfer.records
    assert (rec["unit_id"], rec["prior_unit_id"], rec["prior_bed_id"]) == ("4E", None, None)
    assert transfer.notes == [
        "control character in PV1-6 (the prior location): U+0085, read as absent"
    ]
    unnamed = outcome(adt_message("ADT^A03", pv1=f"PV1|1|I||||{bad}"))
    assert isinstance(unnamed, hl7v2.Refused) and unnamed.reason_code == "bad_value"
    assert unnamed.reason.startswith("control character in PV1-6 (")


def test_a_header_identifier_holding_a_control_character_is_read_as_sent() -> None:
    """MSH-10 `Q\\X0D\\1` (or a tab sent raw), MSH-4 `H\\X09\\1`: the message was refused, and
    so every message of a sender whose MSH-4 holds one, for fields that name no patient. They
    are read as the sender wrote them, a raw control character as hexadecimal data: the event
    id carries the control id the ACK echoes (MSA-2), the same for each resend."""
    for control, sent in [("Q\\X0D\\1", "Q\\X0D\\1"), ("Q\t1", "Q\\X09\\1")]:
        msg = hl7v2.parse(adt_message("ADT^A01").replace("|Q1|", f"|{control}|"))
        assert not isinstance(msg, hl7v2.Refused)
        o = hl7v2.map_message(msg, tok, source="t")
        assert isinstance(o, hl7v2.Mapped), o
        assert o.records[0][1]["event_id"] == f"hl7:H/ADT:{sent}:A01"
        assert ack_fields(hl7v2.ack(msg, "AA"))[1][2] == sent
    o = outcome(adt_message("ADT^A01").replace("|ADT|H|", "|ADT|H\\X09\\1|", 1))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.records[0][1]["event_id"] == "hl7:H\\X09\\1/ADT:Q1:A01"


def test_a_sender_holding_a_control_character_keeps_its_patients_tokens_and_one_event_id() -> None:
    """A sender whose MSH-4 holds a control character (`H\\X09\\1`) named the tokens of its
    identifiers sent without an authority by the text it wrote, `H\\X09\\1`, where they were
    made of its text before (a tab): its patients got new tokens, another patient's to every
    feed. Tokens are made of the text (a hash's input need not be printable); the printed
    event id writes each control character one way: `\\X85\\`, `\\XC285\\` and a raw
    U+0085 are one message's id."""
    o = outcome(adt_message("ADT^A01", pid3="MRN1^^^^MR").replace("|ADT|H|", "|ADT|H\\X09\\1|", 1))
    assert isinstance(o, hl7v2.Mapped), o
    assert o.records[0][1]["patient_token"] == tok("H\t1", "MRN1")
    ids = set()
    for control in ("Q\\X85\\1", "Q\\XC285\\1", "Q\x851"):
        o = outcome(adt_message("ADT^A01").replace("|Q1|", f"|{control}|"))
        assert isinstance(o, hl7v2.Mapped), o
        ids.add(o.records[0][1]["event_id"])
    assert ids == {"hl7:H/ADT:Q\\X85\\1:A01"}


@pytest.mark.parametrize("sent", ["\\X00\\", "\\X07\\", "\\X1B\\", "\\X7F\\", "\\XC29B\\"])
def test_a_control_character_around_an_identifier_is_stripped_as_a_space_is(sent: str) -> None:
    """Around an identifier a control character is none of it, as a space is: but only what
    Python takes for white space was stripped, and `MRN1\\X00\\` (a NUL, BEL, ESC, DEL or C1
    character after it) refused the message while `MRN1\\X0A\\` was `MRN1`. Every control
    character is stripped around the value, inside it still refused."""
    for pid3 in (f"MRN1{sent}^^^H^MR", f"{sent}MRN1^^^H^MR"):
        o = outcome(adt_message("ADT^A01", pid3=pid3))
        assert isinstance(o, hl7v2.Mapped), (pid3, o)
        assert o.records[0][1]["patient_token"] == tok("H", "MRN1")


def test_a_control_character_refusal_reads_whole_in_the_acks_msa_3() -> None:
    """The ACK's MSA-3 makes a reason's backslashes spaces and keeps 80 characters: the
    reason for a control character in PID-3 read `… holds a control character ( x85)`, its
    field cut off. It starts with the field, and names the character by code point."""
    msg = hl7v2.parse(adt_message("ADT^A01", pid3="MRN\\X85\\1^^^H^MR"))
    assert not isinstance(msg, hl7v2.Refused)
    o = hl7v2.map_message(msg, tok, source="t")
    assert isinstance(o, hl7v2.Refused)
    msa_3 = ack_fields(hl7v2.ack(msg, o.ack_code, o.reason, o.hl7_error))[1][3]
    assert msa_3.startswith("control character in PID-3 (") and "U+0085" in msa_3


def test_an_ack_echoing_a_control_id_with_a_raw_control_character_escapes_that_alone() -> None:
    """A control id in the ACK's delimiters was echoed as sent, but where it held a raw control
    character it was decoded whole and written again: `M\\P\\7<TAB>` (a pre-2.7 message that
    declares the truncation character) came back `M#7\\X09\\`, `M\\X41\\7<TAB>` `MA7\\X09\\`:
    not what the sender matches. Only the control character is written as hexadecimal data."""
    for encoding, sent, echoed in [
        ("^~\\&#", "M\\P\\7\t", "M\\P\\7\\X09\\"),
        ("^~\\&", "M\\X41\\7\t", "M\\X41\\7\\X09\\"),
    ]:
        text = adt_message("ADT^A01").replace("|Q1|", f"|{sent}|")
        msg = hl7v2.parse(text.replace("^~\\&", encoding, 1))
        assert not isinstance(msg, hl7v2.Refused)
        assert ack_fields(hl7v2.ack(msg, "AA"))[1][2] == echoed
