r"""HL7 v2 ADT and ORU (R01, R30, R32) messages → canonical wardflow records, and their ACK/NAK.

Parsing is hl7apy's (tolerant validation, so that real-world messages with local quirks still
parse); this module only reads fields out of the parsed message and checks what it reads.

Every message ends as one of:

- `Mapped`: records for Kafka topics (`adt.event.v1`, `vitals.observation.v1`, `labs.result.v1`),
  plus the parts of the message that could not be mapped (`Mapped.rejected`: one OBX with a unit
  its code does not take is dead-lettered on its own, the message's other values still count);
- `Refused`: a reason code, a human reason and the acknowledgment code a strict receiver gives
  (AE: the message is in error; AR: the message type or trigger event is not one wardflow
  takes), with the HL7 error code (table 0357) for the ERR segment. What the gateway finally
  answers depends on its ACK policy (`jobs/feeds/hl7_gateway.py`).

ORU^R01 values are read by LOINC code (schemas.interop.loinc), by an OBX-3's LOINC alternate
(components 4-6; where neither gives a code read, a v2.7+ CWE's second alternate, 10-12), or by
IEEE 11073 code as bedside monitors send them (IHE PCD-01, schemas.interop.mdc).

Checks run in the order a receiver needs them: the header (MSH-9 message type, then whether
wardflow takes that type and trigger, then MSH-10), only then the patient (PID-3).

Field text is unescaped (HL7 v2.5 §2.7: `\F\ \S\ \T\ \R\ \E\` and `\Xhh\`), so a unit `10\S\9/L` is
`10^9/L` and a unit `L\T\D` is `L&D`, each component once, after the field is split (OBX-5
too: an escaped separator is text in its component; a value read also with it taken as a
separator, as before, is read where both readings agree, `_agreed`). A control character (a
line break sent as `\X0D0A\`) in the identifier of a patient or a visit (PID-3 and its
authority, MRG-1, PV1-19) refuses the message (`_no_control_character`); in a place (PV1-3,
PV1-6) the place is read as absent, with a note; in the header's identifiers (MSH-3, MSH-4,
MSH-10) they are read as sent (`_identity`); around any value it is stripped as a space is, and
free text keeps its line breaks. A time without an offset is in the sender's zone (HL7 v2
2A.3.22): MSH-7's offset where it has one, else the gateway's `hl7_timezone`; a date without a
time of day is refused (it cannot be placed in a patient's timeline; an ADT event's EVN-6,
EVN-2 or PV1-44/45 sent so is passed over for the next time the message gives where that is
on its day, `_event_time`).
A message is one patient (but an A17, which swaps two: two transfers; and a merge, `MERGES`,
which may repeat its PID and MRG for several): a message with a second PID is refused
(`multiple_patients`), never read under the first patient, and a frame with a second MSH (two
messages, or a batch) is refused whole, never cut to the first.
`""` (HL7's explicit null) is no value. In an ORU, a result the sender takes back (OBX-11 D, W)
is dead-lettered (`retracted`), and of two different values of one field at one time the first
is kept and the other dead-lettered (`conflicting_value`) unless it is a correction (C). An
OBX-3 (or OBR-4) in the sender's own codes is read through the deployment's code map
(schemas.interop.code_map); unmapped, the dead letter names the codes it saw.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import partial
from typing import Any, NamedTuple, TypeVar, cast

from hl7apy import SUPPORTED_LIBRARIES
from hl7apy.consts import VALIDATION_LEVEL
from hl7apy.core import Message
from hl7apy.exceptions import ChildNotFound, InvalidName
from hl7apy.parser import parse_message

from schemas import codec, topics
from schemas.interop import acvpu, demographics, derived, mdc
from schemas.interop.code_map import EMPTY, CodeMap
from schemas.interop.loinc import (
    ANALYSER_ENTRIES,
    BP_PANELS,
    CODES,
    GAS_ANALYTES,
    GAS_NEAR,
    GAS_PANELS,
    LOINC_SYSTEMS_HL7,
    RANKS,
    VITALS,
    convert,
    takes,
)

# ADT trigger events → canonical event types (HL7 v2.8 chapter 3, section 3.3).
ADT_EVENTS = {
    "A01": "admit",
    "A02": "transfer",
    "A03": "discharge",
    "A04": "register",
    "A05": "preadmit",
    "A06": "admit",  # change an outpatient to an inpatient: enters the bed census
    "A07": "discharge",  # change an inpatient to an outpatient: leaves the bed census
    "A08": "update",
    "A11": "cancel_admit",
    "A12": "cancel_transfer",
    "A13": "cancel_discharge",
    "A17": "transfer",  # swap patients: a transfer of each of its two patients (`_swap`)
    # leave of absence (3.3.21) and the return (3.3.22): the patient is away for a while and
    # their bed held (v2.5 3.3.21: "a bed is still assigned"); a cancel of the leave (A52) is
    # them back, a cancel of the return (A53) them away again. None moves the patient.
    "A21": "leave_of_absence",
    "A22": "return_from_leave",
    "A52": "return_from_leave",
    "A53": "leave_of_absence",
}
# Patient merges (HL7 v2.5 3.3.40, 3.3.34, 3.3.36; v2.2 3.3.18): the record MRG-1 names (a
# trauma alias, a duplicate registration) is merged into the one PID-3 names. Each is two
# events: `merged_away` for the merged record's token (it holds no bed any more) and `merged_in`
# for the surviving one (placed where PV1-3 says, where the message has a PV1). Merges of
# accounts (A41), visits (A42) or persons (A30, A39) move no patient: not census events.
MERGES = {
    "A18": "merge patient information (v2.2)",
    "A34": "merge patient information, patient id only (v2.3)",
    "A36": "merge patient information, patient id and account number (v2.3)",
    "A40": "merge patient, patient identifier list",
    # v2.5 3.3.47: an identifier assigned in error (MRG-1) is replaced by PID-3's; read as a
    # merge (a bed moves only where the message has a PV1, which its ADT_A30 structure lacks)
    "A47": "change patient identifier list",
}
# OBX-11 statuses (table 0085) of a result that has no value
_NO_VALUE = {"X": "cannot be obtained", "I": "pending", "N": "not asked"}
# A device's measurement status (IEEE 11073-10201 MeasurementStatus), which IHE PCD-01 device
# gateways send in OBX-8 (Philips IntelliVue, GE CARESCAPE, Draeger): a value flagged so is not
# the patient's measurement (an ECG's rate of 0 with its leads off, an arterial line's 0/0 while
# it is zeroed, a simulator's demo data), no value, as OBX-11 X; the ECG's 0 would outrank the
# oximeter's pulse rate. Flags that qualify a valid value (validated-data, msmt-ongoing,
# early-indication, alarm states) and table 0078's abnormal flags (H, L, A...) are not these.
_UNUSABLE_STATUS = {
    "invalid": "the device marks the value invalid",
    "questionable": "the device marks the value questionable",
    "not-available": "the device has no value",
    "calibration-ongoing": "the device is being calibrated or zeroed",
    "test-data": "test data, not the patient's",
    "demo-data": "demonstration data, not the patient's",
}
# OBX-11 statuses (table 0085) of a result a final one replaces: preliminary, results entered
# not verified, partial, final results not yet verified.
_PRELIMINARY = frozenset({"P", "R", "S", "U"})
# ORU trigger events read (HL7 v2.8 chapter 7): unsolicited results (R01; an empty trigger, as
# v2.1 senders write MSH-9), point-of-care observations without an order (R30), searching for
# one (R31) or with one (R32): one message structure (ORU_R30, v2.5 §7.3.4-7.3.6).
ORU_EVENTS = frozenset({"R01", "R30", "R31", "R32", ""})
_TS = re.compile(
    r"^(?P<y>\d{4})(?P<mo>\d{2})?(?P<d>\d{2})?(?P<h>\d{2})?(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:\.(?P<frac>\d{1,9}))?(?P<tz>[+-]\d{4})?$"
)


@dataclass(frozen=True)
class Refused:
    reason_code: str
    reason: str
    ack_code: str = "AE"  # AE: error in the message; AR: not a message wardflow takes
    hl7_error: str = "207"  # HL7 table 0357: 100 segment, 101 required field, 102 data type,
    # 200 unsupported message type, 201 unsupported event, 207 application error


@dataclass(frozen=True)
class Rejected:
    """A part of an otherwise mapped message that could not be mapped (dead-lettered alone)."""

    label: str  # e.g. "OBX 3 (8867-4)"
    refusal: Refused
    payload: bytes  # the part's own text (one segment), not the whole message


@dataclass(frozen=True)
class Mapped:
    records: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    rejected: list[Rejected] = field(default_factory=list)
    # the codes of the OBX segments of an ORU that carry no code wardflow reads (each code with
    # its coding system, `_unread`): no error (a flowsheet sends pain scores and notes too), but
    # a vital sign under a local code nobody mapped would be lost without a word, so the gateway
    # counts and logs them (jobs/feeds/hl7_gateway.py) for the code map (interop_code_map)
    unread: list[str] = field(default_factory=list)
    # what was read and is not used, said to whoever reads the outcome (a GCS part charted
    # without a score, parts that make no total): no code to map, so not among `unread`
    notes: list[str] = field(default_factory=list)


Tokenise = Callable[[str, str], str]  # (namespace, identifier) -> token


# The segments this module reads: a message whose one of these hl7apy cannot place is malformed.
_READ_SEGMENTS = frozenset({"MSH", "EVN", "PID", "MRG", "PV1", "OBR", "OBX"})


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(n) for n in version.split("."))


_HL7APY_VERSIONS: list[str] = sorted(SUPPORTED_LIBRARIES, key=_version_key)  # 2.1 … 2.8.2


def parse_version(declared: str) -> str | None:
    """The HL7 v2 version hl7apy reads a message declared as `declared` (MSH-12.1) in: that one
    where hl7apy has it, else the newest it has before it (2.7.1 → 2.7, 2.9 and 2.9.1 → 2.8.2,
    2.5.2 → 2.5.1). Versions of v2 add segments, fields and codes and keep the old ones
    (backward compatibility is the standard's rule since 2.1), and every segment and field read
    here is in every version since 2.3, so a newer message reads as the newest one known; what
    is new in it is left alone. An empty or unreadable version (MSH-12 is required, but not
    every sender fills it) reads as 2.5; None: not a v2 version (3.0)."""
    found = re.fullmatch(r"\s*[vV]?(\d+)\.(\d+)(?:\.(\d+))*\s*", declared)
    if found is None:
        return "2.5"
    major, minor, patch = (int(n) if n else 0 for n in found.groups())
    if major != 2:
        return None
    if declared.strip() in SUPPORTED_LIBRARIES:
        return declared.strip()
    older = [v for v in _HL7APY_VERSIONS if _version_key(v) <= (major, minor, patch)]
    return older[-1] if older else _HL7APY_VERSIONS[0]


def _declared_as_known(text: str) -> str | Refused:
    """The message with MSH-12.1 replaced by the version hl7apy reads it in (parse_version),
    and MSH-2 cut to the four encoding characters of a version before 2.7: v2.7 added a fifth,
    the truncation character (`^~\\&#`, v2.7 2.5.5.5), which engines set up for it send
    whatever MSH-12 says, and hl7apy refuses five before 2.7. The text is otherwise as sent:
    `parse` keeps the fifth beside the message (`_encoding`), so that its escape `\\P\\`
    (which such an engine writes for it) is read as the character (`MRN\\P\\7` is `MRN#7`, as
    `MRN#7` is) and a field the ACK copies is echoed as the sender wrote it."""
    sep = text[3:4]
    segment, _, rest = text.partition("\r")
    fields = segment.split(sep)
    if len(fields) < 2 or not fields[1]:
        return text  # hl7apy says what is wrong
    component = fields[1][0]
    vid = fields[11].split(component) if len(fields) > 11 else [""]
    known = parse_version(vid[0])
    if known is None:
        return Refused(
            "malformed",
            f"MSH-12 declares version {vid[0]!r}: not HL7 version 2",
            ack_code="AR",
            hl7_error="203",
        )
    truncation = len(fields[1]) == 5 and _version_key(known) < (2, 7)
    if known == vid[0] and not truncation:
        return text
    fields += [""] * (12 - len(fields))
    fields[11] = component.join([known, *vid[1:]])
    if truncation:
        fields[1] = fields[1][:4]
    return sep.join(fields) + ("\r" + rest if rest else "")


# The attribute of a parsed message of a version before 2.7 that holds the truncation character
# its MSH-2 declares (`parse`): hl7apy reads four encoding characters there and keeps no fifth.
# Set past hl7apy's Element.__setattr__, which takes a name it does not know for a child's.
_TRUNCATION = "_wardflow_truncation"


def _encoding(msg: Message | _Part) -> dict[str, str]:
    """A parsed message's delimiters and escape character (hl7apy's `encoding_chars`), with the
    truncation character its MSH-2 declares in any version (v2.7 2.7.1: `\\P\\` is it)."""
    enc: dict[str, str] = msg.encoding_chars
    if isinstance(msg, _Part) or "TRUNCATION" in enc:
        return enc
    char = vars(msg).get(_TRUNCATION)
    return {**enc, "TRUNCATION": char} if char else enc


def _trimmed(text: str) -> str:
    """ER7 text with its segments ended by CR (a sender's LF or CRLF too), without what is no
    part of the message around it: a byte-order mark, a stray MLLP start byte, blank lines,
    before, after and between its segments. A line of spaces or tabs alone (some interface
    engines leave one between segments) is a blank line: a segment starts with its three-
    character id (HL7 v2.5 §2.5.2, §2.6), so it holds no segment; refused, it cost the message."""
    text = text.replace("\r\n", "\r").replace("\n", "\r").strip("\r\x00 \ufeff\x0b\x1c")
    return "\r".join(line for line in text.split("\r") if line.strip(" \t\x0b\x0c"))


def parse(text: str) -> Message | Refused:
    """Parse ER7 text (segments separated by CR) with hl7apy; a refusal says why it failed. A
    segment that the message's declared version does not define (a vendor's newer PRT in a
    2.5.1 message, SFT in 2.3) and that is not one read here is left out, not the message; a
    version hl7apy does not have (2.7.1, 2.9) is read as the newest it has before it
    (`parse_version`), and the message's MSH-12 then says that one."""
    text = _trimmed(text)
    headers = sum(1 for seg in text.split("\r") if seg[:3] in ("MSH", "BHS", "FHS"))
    if headers > 1 or text[:3] in ("BHS", "FHS"):
        return Refused(
            "malformed",
            f"{headers} message or batch headers in one frame: send one message per MLLP frame "
            "(nothing of this frame was stored)",
            hl7_error="100",
        )
    if not text.startswith("MSH"):
        return Refused("malformed", "message does not start with an MSH segment", hl7_error="100")
    if len(text) < 8 or text[3:4] in ("\r", ""):
        return Refused(
            "malformed", "MSH has no field separator and encoding characters", hl7_error="100"
        )
    known = _declared_as_known(text)
    if isinstance(known, Refused):
        return known
    declared = raw_encoding(text).get("TRUNCATION", "")
    text = known
    unknown: list[str] = []
    while True:
        try:
            msg = parse_message(text, find_groups=False, validation_level=VALIDATION_LEVEL.TOLERANT)
            if declared and "TRUNCATION" not in msg.encoding_chars:
                object.__setattr__(msg, _TRUNCATION, declared)  # cut before 2.7 for hl7apy
            return msg
        except InvalidName as exc:  # a segment the declared version does not define
            name = str(exc).rsplit(":", 1)[-1].strip()
            if (
                name in _READ_SEGMENTS
                or name in unknown
                or not re.fullmatch(r"[A-Z][A-Z0-9]{2}", name)
            ):
                why = f"hl7apy: InvalidName: {printable(str(exc))}"
                return Refused("malformed", why[:500], hl7_error="100")
            # vendors mix in newer segments (PRT in 2.5.1, SFT in 2.3): none of them is read
            unknown.append(name)
            text = "\r".join(seg for seg in text.split("\r") if seg[:3] != name)
        except Exception as exc:  # hl7apy raises a family of its own errors, plus ValueError
            why = f"hl7apy: {type(exc).__name__}: {printable(str(exc))}"
            return Refused("malformed", why[:500], hl7_error="100")


def _offset(zone: str) -> timezone:
    """An HL7 time stamp's `+HHMM`/`-HHMM` as a fixed zone, any from -14:59 to +14:59 (HL7 v2
    2A.3.22 sets no range; the zones in use lie between -12:00 and +14:00, with offsets such as
    +05:45, -09:30, +12:45 and +13:45); a ValueError for hours past 14 or minutes past 59, which
    no zone could have (`+2500`, `+0075`: corrupt)."""
    sign = -1 if zone[0] == "-" else 1
    hours, minutes = int(zone[1:3]), int(zone[3:5])
    if hours > 14 or minutes > 59:
        raise ValueError(f"time zone offset {zone} is no UTC offset")
    return timezone(sign * timedelta(hours=hours, minutes=minutes))


def hl7_time(value: str, default_tz: tzinfo = UTC) -> datetime:
    """An HL7 DTM/TS value (YYYYMMDDHH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]) as an aware datetime;
    without an offset the value is taken to be in `default_tz`. A value without an hour (a
    date) is a ValueError."""
    m = _TS.match(value.strip())
    if m is None:
        raise ValueError(f"not an HL7 time stamp: {shown(value)}")
    g = m.groupdict()
    if not g["h"]:
        raise ValueError(f"time stamp {value!r} is a date without a time of day")
    tz = _offset(g["tz"]) if g["tz"] else default_tz
    frac = g["frac"] or "0"
    return datetime(
        int(g["y"]),
        int(g["mo"] or 1),
        int(g["d"] or 1),
        int(g["h"] or 0),
        int(g["mi"] or 0),
        int(g["s"] or 0),
        int(frac.ljust(6, "0")[:6]),
        tzinfo=tz,
    ).astimezone(UTC)


# The escape sequences of HL7 v2.5 §2.7 (v2.7 2.7.1 adds P), by what follows the escape
# character up to the next: delimiters (P: the truncation character, where MSH-2 declares
# one, v2.7; L: no sequence of the standard, but how hl7apy's v2.7+ libraries write one, and
# so a sender built on hl7apy), highlighting, hexadecimal data, formatting commands
# (§2.7.6), character sets (§2.7.4: \Cxxyy\ single-byte, \Mxxyy[zz]\ multi-byte) and
# locally defined ones (\Z...\, §2.7.5)
_ESCAPES = {
    **{"F": "FIELD", "S": "COMPONENT", "T": "SUBCOMPONENT", "R": "REPETITION", "E": "ESCAPE"},
    **{"P": "TRUNCATION", "L": "TRUNCATION"},
}
_HEX_DATA = re.compile(r"X(?:[0-9A-Fa-f]{2})+")
_FORMATTING = re.compile(r"\.(sp|br|fi|nf|in|ti|sk|ce) ?[+-]?\d*")
_CHARACTER_SET = re.compile(r"C[0-9A-Fa-f]{4}|M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?|Z.*")
_BREAKS = {"br": "\n", "sp": "\n", "ce": "\n", "sk": " ", "in": " ", "ti": " "}


def _sequence(body: str, enc: dict[str, str], formatted: bool = False) -> str | None:
    """What the escape sequence `<escape>body<escape>` stands for in `enc` (`unescape`), ''
    for one that is dropped; None where it is no sequence of the standard (`12\\34\\56`,
    `C:\\dir\\file`: the sender's backslashes, text)."""
    if body in _ESCAPES:
        return enc.get(_ESCAPES[body]) or None  # \P\ without a truncation character: text
    if body in ("H", "N") or _CHARACTER_SET.fullmatch(body):
        return ""
    if (command := _FORMATTING.fullmatch(body)) is not None:
        return _BREAKS.get(command.group(1), "") if formatted else ""
    if _HEX_DATA.fullmatch(body):
        data = bytes.fromhex(body[1:])
        try:  # UTF-8 where the bytes are UTF-8 (°: C2 B0), else one byte a character
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return data.decode("latin-1")
    return None


def _sequences_read(
    text: str,
    esc: str,
    read: Callable[[str], str | None],
    plain: Callable[[str], str] = str,
) -> str:
    """`text` with each escape sequence replaced by what `read` gives for what it holds, in one
    pass from the left, what it gives never read again, and the text between them by what
    `plain` gives for it (itself, unless told). Where `read` gives None the escape character
    is no sequence's: kept as text, and the text after it read on (so `12\\34\\56` stays
    itself, and in `a\\b\\F\\c` the `\\F\\` is still a field separator)."""
    out, i = [], 0
    while (j := text.find(esc, i)) >= 0 and (k := text.find(esc, j + 1)) >= 0:
        value = read(text[j + 1 : k])
        if value is None:
            out.append(plain(text[i : j + 1]))
            i = j + 1
        else:
            out.append(plain(text[i:j]) + value)
            i = k + 1
    out.append(plain(text[i:]))
    return "".join(out)


def unescape(text: str, enc: dict[str, str], formatted: bool = False) -> str:
    r"""HL7 v2 escape sequences (v2.5 §2.7) in one component's text decoded: the delimiters
    (`\F\ \S\ \T\ \R\ \E\`; v2.7's truncation character `\P\`, where MSH-2 declares one) and
    hexadecimal data (`\Xhh…\`: UTF-8 where its bytes are, else ISO 8859-1, so `\XB0\` and
    `\XC2B0\` are both °); in a `formatted` value (an OBX-5: formatting commands are defined
    for formatted text, §2.7.6) a command that breaks or skips is that break or space (`\.br\`,
    `\.sp\`, `\.ce\` a line break, `\.sk\`, `\.in\`, `\.ti\` a space: `1\.br\2` is two lines,
    never the number 12); elsewhere (an identifier, a location) formatting, highlighting,
    character-set and local escapes (`\.br\`, `\H\`, `\C…\`, `\Z…\`) are dropped. What is no
    sequence of the standard is the text sent, its backslashes too: a sender that does not
    escape them sends `12\34\56`, `ICU\A\1`, `C:\dir\file`, and dropped, `12\34\56` would be
    the patient `1256`. One pass from the left, what a sequence gives never read again (the
    text is as the sender wrote it, `_er7`): `\E\P\E\` is the text `\P\`."""
    esc = enc.get("ESCAPE", "\\")
    if not esc or esc not in text:
        return text
    return _sequences_read(text, esc, lambda body: _sequence(body, enc, formatted))


# Escape characters for `_er7` to write with: Unicode noncharacters (U+FFFF, U+FFFE,
# U+FDD0-U+FDEF), which no text is meant to hold, the first one the element does not hold
_NO_ESCAPES = ("\uffff", "\ufffe", *(chr(c) for c in range(0xFDD0, 0xFDF0)))


def _er7(element: Any, enc: dict[str, str]) -> str:
    r"""An element's (a field's, a repetition's, a segment's) ER7 text as the sender wrote it,
    in the message's delimiters. hl7apy keeps each value as sent, but its to_er7 writes an
    escape character that opens a sequence other than `\H\ \N\ \F\ \S\ \T\ \R\ \E\` escaped
    (`\XB0\` as `\E\XB0\E\`, `\P\` as `\E\P\E\`), which is how a sender writes the text `\XB0\`
    or `\P\` (v2.5 §2.7: `\E\` is the escape character itself): read from to_er7, the two could
    not be told apart, and either a sender's text was decoded twice (`\E\P\E\` read as `\P\`,
    the truncation character) or its hex data not at all. In v2.7+ it writes a truncation
    character as `\L\` too. Written with no truncation character and an escape character the
    element does not hold (`_NO_ESCAPES`), each value is written as it is: to_er7 writes that
    character only where a value holds it (as `<c>E<c>`), so one that appears in what it wrote
    was the sender's, and the next is tried. An element holding all 34 (no text does) is
    written with its own escape character, as hl7apy writes it."""
    chars = {k: v for k, v in enc.items() if k != "TRUNCATION"}
    for escape in _NO_ESCAPES:
        written: str = element.to_er7(encoding_chars={**chars, "ESCAPE": escape})
        if escape not in written:
            return written
    fallback: str = element.to_er7(encoding_chars=chars)
    return fallback


def element_text(element: Any, msg: Message) -> str:
    r"""An element's (a field's, a repetition's) text, its delimiters standing as they do and
    its escape sequences read once in the message's own encoding characters (`unescape`, as
    formatted text: `\.br\` a line break), `\P\` the truncation character where MSH-2
    declares one, in any version (`_encoding`): what schemas.interop.hl7_alerts reads of an
    ACK."""
    enc = _encoding(msg)
    return unescape(_er7(element, enc), enc, formatted=True)


def _field(msg: Message, segment: str, index: int, *components: int) -> str:
    """The text of SEG-index[.component[.subcomponent]] of the first `segment`, '' if absent.
    Components are read from the field's ER7 text, so that a local field type does not matter."""
    return _text(_field_er7(msg, segment, index, *components), _encoding(msg))


def _field_er7(msg: Message, segment: str, index: int, *components: int) -> str:
    """SEG-index[.component[.subcomponent]] of the first `segment` as the sender wrote it (ER7,
    its escape sequences not read: `_er7`), '' if absent."""
    segs = [s for s in msg.children if s.name == segment]
    if not segs:
        return ""
    try:
        fields = getattr(segs[0], f"{segment.lower()}_{index}", None)
    except Exception:  # hl7apy raises for a field its version does not define (EVN-6 in 2.2)
        return ""
    if fields is None or not len(fields):
        return ""
    enc = _encoding(msg)
    er7 = _er7(fields[0], enc)
    for depth, c in enumerate(components):
        sep = enc["COMPONENT"] if depth == 0 else enc["SUBCOMPONENT"]
        parts = er7.split(sep)
        er7 = parts[c - 1] if c - 1 < len(parts) else ""
    return er7


def _identity(msg: Message, segment: str, index: int, *components: int) -> str:
    r"""A header field that names a message or its sender (MSH-10, MSH-4, MSH-3) where it
    stands for them, printed: the event id, the facility where PV1-3.4 names none. Its text
    (`_field`), each control character in it (`Q\X0D\1` decoded holds a CR, which would end
    the event id's log line) written as hexadecimal data, one way whatever way it was sent
    (`\X85\`, `\XC285\` and a raw U+0085 are all `\X85\`; `\X0A\` or a raw tab `\X09\`).
    Refused, every message of a sender whose MSH-4 holds one would be, for a field that names
    no patient; so its messages are read, and a resend gets the event id it got before. (An id
    whose text is such hexadecimal data, `Q\E\X09\E\1`, reads as the same: no sender sends
    both.) A token's namespace is made of the text itself (`_map_patient`)."""
    value = _field(msg, segment, index, *components)
    esc = _encoding(msg).get("ESCAPE") or "\\"

    def hexadecimal(found: re.Match[str]) -> str:
        code = ord(found[0])
        data = f"{code:02X}" if code < 0x100 else found[0].encode().hex().upper()
        return f"{esc}X{data}{esc}"

    return _CONTROL.sub(hexadecimal, value)


# HL7 v2 2.5.3: `""` in a field is an explicit null (delete the value the receiver holds): no
# value, never the text of two quotes.
DELETE = '""'


# What is stripped around a value: white space, and control characters (`_CONTROL`), which no
# identifier holds and which around one are none of it (`MRN1\X00\`, `\X0A\MRN1` are `MRN1`)
_AROUND = re.compile(r"^[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+|[\s\x00-\x1f\x7f-\x9f\u2028\u2029]+$")


def _text(er7: str, enc: dict[str, str]) -> str:
    """A field's or component's value: unescaped and stripped (`_AROUND`), '' for the explicit
    null."""
    value = _AROUND.sub("", unescape(er7, enc))
    return "" if value == DELETE else value


# PID-3 identifier types (HL7 table 0203) in the order a patient is best known by: the medical
# record number (MR; `MRN` as some EHRs write it), the patient's internal id, the person number.
# Then an identifier of no or another type. Visit and account numbers, national, insurance and
# licence numbers (`OTHER_ID_TYPES`) name a visit or a person outside the hospital: read only
# when nothing else is sent.
PATIENT_ID_TYPES = ("MR", "MRN", "PI", "PT", "PN")
OTHER_ID_TYPES = frozenset(
    {"AN", "VN", "FIN", "FIN NBR", "FINNBR", "ENC", "SS", "SSN", "NI", "NH", "HC",
     "JHN", "MA", "MB", "MC", "MCD", "MCR", "MI", "DL", "PPN", "BA", "BC", "NPI", "PRN"}
)  # fmt: skip


def _patient_id(msg: Message, prefer: str = "", fill: str = "") -> tuple[str, str] | None:
    """(assigning authority, id) of PID-3, by identifier type (`PATIENT_ID_TYPES`, else the
    first), the first of a type as sent, or `prefer`'s (`_identifier`); a v2.3 message with
    PID-3 empty is read by PID-2 (the external id)."""
    return _identifier(msg, "PID", 3, prefer, fill) or _identifier(msg, "PID", 2, prefer, fill)


def _merged_id(
    msg: Message, prefer: str = "", fill: str = ""
) -> tuple[str, tuple[str, str] | None]:
    """The field the merged record's identifier is read from, and that identifier as its own
    messages named it: MRG-1 (the prior PID-3, v2.3.1 "prior patient identifier list"), or
    MRG-4 (the prior PID-2) where the message names its patient by PID-2 (PID-3 empty, as some
    v2.3 senders do). Read as `_patient_id` reads PID-3, so that the alias's token is the one
    its earlier messages made. A merged identifier without an assigning authority (many senders
    fill MRG-1.1 alone) is of the surviving identifier's (it is that list's prior identifier),
    not the sender's: the alias's own messages named its authority."""
    if (survivor := _identifier(msg, "PID", 3, prefer, fill)) is not None:
        field, merged = "MRG-1", _identifier(msg, "MRG", 1, prefer, survivor[0] or fill)
    else:
        survivor = _identifier(msg, "PID", 2, prefer, fill)
        own = (survivor[0] if survivor is not None else "") or fill
        field, merged = "MRG-4", _identifier(msg, "MRG", 4, prefer, own)
    if merged is not None and not merged[0] and survivor is not None:
        merged = (survivor[0], merged[1])
    return field, merged


def _identifier(
    msg: Message, segment: str, field_no: int, prefer: str = "", fill: str = ""
) -> tuple[str, str] | None:
    """(assigning authority, id) of a CX list (PID-3, MRG-1), by identifier type
    (`PATIENT_ID_TYPES`, else the first of no or another type, an `OTHER_ID_TYPES` last), of
    one type the first as sent. With `prefer` (`hl7_preferred_authority`), the one whose
    assigning authority (CX.4; `fill`, the authority a token takes for one sent without it,
    where it names none) is `prefer`, wherever it stands among the repetitions, is read
    first (by type among several of it; never a visit, account, national or insurance number);
    where none is, as without it.
    The list's repetitions have no defined order (v2.5 3.4.2.3), but the first of a type is
    what wardflow has always read, and what a token already made came from: a second
    hospital's MR that an MPI appends mid-stay changes nothing. A site whose interface engine
    reorders the repetitions names its own authority in `hl7_preferred_authority`."""
    segs = [s for s in msg.children if s.name == segment]
    if not segs:
        return None
    enc = _encoding(msg)
    try:
        reps = getattr(segs[0], f"{segment.lower()}_{field_no}", []) or []
    except Exception:  # a field the message's version does not define
        reps = []
    ids = []
    for rep in reps:
        comps = [*_er7(rep, enc).split(enc["COMPONENT"]), "", "", "", ""]
        ident = _text(comps[0], enc)
        if ident:
            # HD: namespace id, else universal id (an OID-only authority)
            hd = [*comps[3].split(enc["SUBCOMPONENT"]), ""]
            authority = _text(hd[0], enc) or _text(hd[1], enc)
            ids.append((_text(comps[4], enc).upper(), authority, ident))
    if not ids:
        return None
    rank = {kind: i for i, kind in enumerate(PATIENT_ID_TYPES)}

    def order(i: tuple[str, str, str]) -> int:
        national = len(i[0]) == 5 and i[0].startswith("NN")  # NN + ISO 3166 country: NNGBR
        return rank.get(i[0], len(rank) + (i[0] in OTHER_ID_TYPES or national))

    preferred = [i for i in ids if (i[1] or fill) == prefer and order(i) <= len(rank)]
    _, authority, ident = min(preferred if prefer and preferred else ids, key=order)
    return authority, ident


def message_type(msg: Message) -> tuple[str, str]:
    """MSH-9's message code and trigger event. An ADT without a trigger there (HL7 v2.1, whose
    MSH-9 has none) takes EVN-1, the event type code, where v2.1 carries it (v2.1 3.3.1; kept
    for backward compatibility to v2.5)."""
    code, trigger = _field(msg, "MSH", 9, 1).upper(), _field(msg, "MSH", 9, 2).upper()
    if code == "ADT" and not trigger:
        trigger = _field(msg, "EVN", 1).upper()
    return code, trigger


def processing_id(msg: Message) -> str:
    """MSH-11.1 (HL7 table 0103: P production, T training, D debugging); an empty one is taken
    as P, as most receivers do."""
    return _field(msg, "MSH", 11, 1).upper() or "P"


def map_message(
    msg: Message,
    tokenise: Tokenise,
    *,
    source: str,
    default_tz: tzinfo = UTC,
    default_authority: str = "",
    default_facility: str = "",
    codes: CodeMap = EMPTY,
    bed_units: frozenset[tuple[str, str]] | None = None,
    preferred_authority: str = "",
) -> Mapped | Refused:
    """Map a parsed message to canonical records (see the module docstring). A PID-3 identifier
    without an assigning authority is namespaced by `default_authority`, a message without a
    facility in PV1-3.4 is `default_facility`'s; either falls back to the sender (MSH-4, else
    MSH-3: its namespace id, else its universal id). `codes`: the deployment's own observation
    codes and the LOINC each stands for (schemas.interop.code_map). `bed_units`: the (facility,
    unit) pairs that hold the census's beds (the capacity file's), which say where an A07 leaves
    the patient (`_adt`); None: not known. `preferred_authority`: the assigning authority whose
    identifier PID-3 (PID-2, MRG-1) is read by wherever it stands among the repetitions
    (`_identifier`); empty: the first of its type, as sent."""
    code, trigger = message_type(msg)
    if not code:
        return Refused("missing_field", "MSH-9 (message type) is empty", "AE", "101")
    if code == "ADT" and trigger not in ADT_EVENTS and trigger not in MERGES:
        return Refused(
            "unsupported_event",
            f"ADT^{printable(trigger)} is not a census event wardflow ingests "
            f"({', '.join([*ADT_EVENTS, *MERGES])})",
            "AR",
            "201",
        )
    if code not in ("ADT", "ORU") or (code == "ORU" and trigger not in ORU_EVENTS):
        return Refused(
            "unsupported_message",
            f"{printable(code)}^{printable(trigger)} is not a message wardflow ingests "
            f"(ADT {', '.join([*ADT_EVENTS, *MERGES])}; "
            f"ORU^{', '.join(sorted(ORU_EVENTS - {''}))})",
            "AR",
            "200" if code not in ("ADT", "ORU") else "201",
        )
    control_id = _identity(msg, "MSH", 10)  # as sent where it holds a control character
    if not control_id:
        return Refused("missing_field", "MSH-10 (message control id) is empty", hl7_error="101")
    ctx = _Context(code, trigger, tokenise, source, default_tz, default_authority,
                   default_facility, codes, bed_units, preferred_authority)  # fmt: skip
    if code == "ADT" and trigger == "A17":
        return _swap(msg, control_id, ctx)
    if code == "ADT" and trigger in MERGES:
        return _merges(msg, control_id, ctx)
    patients = sum(1 for seg in msg.children if seg.name == "PID")
    if patients > 1:
        return Refused(
            "multiple_patients",
            f"the message has {patients} PID segments: wardflow reads one patient per message "
            "(send each patient's results in a message of its own)",
            "AE",
            "100",
        )
    return _map_patient(msg, ctx, control_id)


@dataclass(frozen=True)
class _Context:
    """What `map_message` was asked with, and the message type its header checks passed."""

    code: str
    trigger: str
    tokenise: Tokenise
    source: str
    default_tz: tzinfo
    default_authority: str
    default_facility: str
    codes: CodeMap
    bed_units: frozenset[tuple[str, str]] | None = None
    preferred_authority: str = ""


def _swap(msg: Message, control_id: str, ctx: _Context) -> Mapped | Refused:
    """ADT^A17, swap patients (HL7 v2.5 3.3.17): two patients exchange beds, and the message
    repeats PID and PV1 for both, each PV1-3 the patient's new location (PV1-6 the one left).
    Read as two transfers, each patient's part of the message mapped as a message of its own
    (its control id numbered /1 and /2: the event ids); both are stored or neither, and two
    parts naming one patient, or beds of two facilities, are refused."""
    head, groups = _patient_groups(msg)
    if len(groups) != 2 or not all(any(s.name == "PV1" for s in g) for g in groups):
        return Refused(
            "missing_field",
            f"ADT^A17 swaps two patients: it needs two PID segments, each followed by its PV1 "
            f"(found {len(groups)} PID)",
            "AE",
            "100",
        )
    records: list[tuple[str, dict[str, Any]]] = []
    rejected: list[Rejected] = []
    notes: list[str] = []
    for i, group in enumerate(groups, 1):
        mapped = _map_patient(_Part([*head, *group], _encoding(msg)), ctx, f"{control_id}/{i}")
        if isinstance(mapped, Refused):
            return mapped
        records += mapped.records
        rejected += mapped.rejected
        notes += [f"patient {i}: {note}" for note in mapped.notes]
    (_, first), (_, second) = records
    if first["patient_token"] == second["patient_token"]:
        return Refused("bad_value", "ADT^A17 swaps two patients: both PIDs name one", "AE", "102")
    if first["facility_id"] != second["facility_id"]:
        return Refused(
            "bad_value",
            f"ADT^A17 swaps two beds of one facility: {first['facility_id']!r} and "
            f"{second['facility_id']!r}",
            "AE",
            "102",
        )
    return Mapped(records, rejected, notes=notes)


def _merges(msg: Message, control_id: str, ctx: _Context) -> Mapped | Refused:
    """A merge message (`MERGES`) may repeat its PID, MRG (and PV1) for several merges (HL7
    v2.5 3.3.40): each merge is mapped as a message of its own (with more than one, its control
    id numbered /1, /2, …), and all are stored or none."""
    head, groups = _patient_groups(msg)
    if not groups:
        return Refused("missing_field", "PID-3 (patient identifier list) is empty", "AE", "101")
    records: list[tuple[str, dict[str, Any]]] = []
    notes: list[str] = []
    for i, group in enumerate(groups, 1):
        part = _Part([*head, *group], _encoding(msg))
        mapped = _map_patient(part, ctx, f"{control_id}/{i}" if len(groups) > 1 else control_id)
        if isinstance(mapped, Refused):
            if len(groups) == 1:
                return mapped
            return replace(mapped, reason=f"merge {i} of {len(groups)}: {mapped.reason}"[:500])
        records += mapped.records
        notes += [f"merge {i}: {n}" if len(groups) > 1 else n for n in mapped.notes]
    return Mapped(records, notes=notes)


def _patient_groups(msg: Message) -> tuple[list[Any], list[list[Any]]]:
    """The segments before the first PID, and each PID with the segments after it."""
    head: list[Any] = []
    groups: list[list[Any]] = []
    for seg in msg.children:
        if seg.name == "PID":
            groups.append([seg])
        elif groups:
            groups[-1].append(seg)
        else:
            head.append(seg)
    return head, groups


@dataclass(frozen=True)
class _Part:
    """One patient's segments of a message that carries two (A17), after the message's header:
    what `_field` and `_patient_id` read. The segments as parsed: written out and parsed again,
    a v2.8 EVN would come back with its fields out of place."""

    children: list[Any]
    encoding_chars: dict[str, str]


def _map_patient(msg: Message, ctx: _Context, control_id: str) -> Mapped | Refused:
    """The records of one patient's message (or part of an A17)."""
    code, trigger, tokenise, source = ctx.code, ctx.trigger, ctx.tokenise, ctx.source
    default_tz = ctx.default_tz
    names = ((4, 1), (4, 2), (3, 1), (3, 2))
    sender = next((v for f, c in names if (v := _identity(msg, "MSH", f, c))), "")
    # its text, what a token's namespace is made of (a hash's input need not be printable): a
    # sender whose MSH-4 holds a control character keeps its patients' tokens
    sent = next((v for f, c in names if (v := _field(msg, "MSH", f, c))), "")
    fill = ctx.default_authority or sent  # the authority of an identifier sent without one
    pid = _patient_id(msg, ctx.preferred_authority, fill)
    if pid is None:
        return Refused("missing_field", "PID-3 (patient identifier list) is empty", "AE", "101")
    default_tz = sender_zone(_field(msg, "MSH", 7, 1), default_tz)

    def token(identifier: tuple[str, str]) -> str:
        return tokenise(identifier[0] or ctx.default_authority or sent, identifier[1])

    # what was read as absent, and why (Mapped.notes): a place holding a control character
    notes: list[str] = []
    facility = _field(msg, "PV1", 3, 4, 1)
    if (found := _control_character(facility)) is not None:
        notes.append(_absent("PV1-3.4 (the facility)", found))
        facility = ""
    facility = facility or ctx.default_facility or sender
    if not facility:
        return Refused("missing_field", "no facility in PV1-3.4 or MSH-4", hl7_error="101")
    # MSH-10 is unique per sending application (2.14.9.10): two at one facility (an ADT and a
    # bed-management system) may use the same control id, so the application names the id too
    app = _identity(msg, "MSH", 3, 1)
    base_id = (
        f"hl7:{sender}/{app}:{control_id}"
        if app and app != sender
        else f"hl7:{sender}:{control_id}"
    )
    try:
        _no_control_character("PID-3 (patient identifier or authority)", *pid)
        patient = token(pid)
        if code == "ADT":
            visits = f"{sent or facility}/visit"
            mapped = _adt(
                msg, trigger, base_id, patient, facility, visits, tokenise, source, default_tz,
                ctx.bed_units, notes,
            )  # fmt: skip
            if trigger in MERGES and isinstance(mapped, Mapped):
                mapped = _merged(msg, trigger, mapped, token, ctx.preferred_authority, fill)
        else:
            mapped = _oru(msg, base_id, patient, facility, source, default_tz, ctx.codes, notes)
    except ValueError as exc:
        return Refused("bad_value", str(exc)[:500], hl7_error="102")
    if isinstance(mapped, Mapped) and notes:
        return replace(mapped, notes=[*notes, *mapped.notes])
    return mapped


def sender_zone(msh_7: str, default_tz: tzinfo) -> tzinfo:
    """The zone of a message's times without an offset: the sender's (HL7 v2 2A.3.22), which
    MSH-7's offset gives where it has one; else `default_tz` (the gateway's `hl7_timezone`).
    Where MSH-7's offset is the one `default_tz` has at MSH-7's time, the sender is in that zone
    and `default_tz` is returned, so that a time on the other side of a daylight-saving change
    (a discharge stamped in summer time, sent in winter) takes its own offset; a time of the
    hour that the change back repeats (01:30 twice) takes MSH-7's offset where it is one of its
    two (`_Preferring`), not always the first."""
    m = _TS.match(msh_7.strip())
    if m is None or not m.group("tz"):
        return default_tz
    try:
        sent = _offset(m.group("tz"))
    except ValueError:  # no zone's: refused only where MSH-7 is a record's event time
        return default_tz
    try:
        at = hl7_time(msh_7, sent)
    except ValueError:
        return sent
    same = at.astimezone(default_tz).utcoffset() == sent.utcoffset(None)
    return _Preferring(default_tz, sent.utcoffset(None), at) if same else sent


class _Preferring(tzinfo):
    """`zone`, except that a wall time it has twice (the hour repeated when daylight saving
    ends) takes `offset` where that is one of its two and puts it no later than the message
    was sent (`sent`): the offset the sender stamped its message with says which of the two
    hours it is in. A wall time that does not exist (the hour skipped in spring) is `zone`'s."""

    def __init__(self, zone: tzinfo, offset: timedelta | None, sent: datetime) -> None:
        self.zone, self.offset, self.sent = zone, offset, sent

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Preferring, (self.zone, self.offset, self.sent))

    def _wall(self, dt: datetime | None) -> datetime | None:
        if dt is None:
            return None
        naive = dt.replace(tzinfo=None)
        folds = [naive.replace(fold=f, tzinfo=self.zone) for f in (0, 1)]
        offsets = [f.utcoffset() for f in folds]
        repeated = offsets[0] != offsets[1] and all(
            f.astimezone(UTC).astimezone(self.zone).replace(tzinfo=None) == naive for f in folds
        )
        if repeated and self.offset in offsets:
            chosen = folds[offsets.index(self.offset)]
            if chosen.astimezone(UTC) <= self.sent:
                return chosen
            return folds[1 - offsets.index(self.offset)]  # after the message: the other hour
        return naive.replace(fold=dt.fold, tzinfo=self.zone)

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        wall = self._wall(dt)
        return self.zone.utcoffset(None) if wall is None else wall.utcoffset()

    def dst(self, dt: datetime | None) -> timedelta | None:
        wall = self._wall(dt)
        return self.zone.dst(None) if wall is None else wall.dst()

    def tzname(self, dt: datetime | None) -> str | None:
        wall = self._wall(dt)
        return self.zone.tzname(None) if wall is None else wall.tzname()

    def __repr__(self) -> str:
        return f"_Preferring({self.zone!r}, {self.offset!r})"


# Where an ADT event's time comes from when EVN-6 (event occurred) is absent: the visit's own
# admit or discharge time (PV1-44, PV1-45) before EVN-2, which is when it was recorded. Not for
# A06 (outpatient to inpatient): its PV1-44 is the encounter's start, often the emergency
# department arrival, not when the patient took an inpatient bed.
_VISIT_TIME = {"A01": 44, "A04": 44, "A05": 44, "A03": 45, "A07": 45}


def _event_time(msg: Message, tz: tzinfo, trigger: str) -> tuple[datetime, datetime | None]:
    """(event occurred, recorded): EVN-6 if sent (HL7 v2.8 3.4.1.6); else PV1-44 (admit) or
    PV1-45 (discharge) for those triggers, where it has an hour; else EVN-2, which is when the
    event was recorded (3.4.1.2), else MSH-7. Each is a TS of any precision: one sent as a date
    alone (`20261101`) is passed over for the next, as PV1-44's is, rather than refuse the event
    (a date cannot be placed in the census; the next time of the message can). But a date alone
    still says the day ("that day, time unknown": TS/DTM precision, 2A.3.22): the next time is
    taken only where it is written on that day (`_on_the_day`), else the event is refused
    naming both. The recorded time is not needed (codec.record_time: the event time where it is
    None): an MSH-7 that cannot be read (an offset no zone has), or one on another day than a
    date-alone EVN-2 (a message queued and sent a day later), is no recorded time, as in an
    ORU, and refuses the event only where it is its event time too. A TS's precision component
    (v2.3 `…^S`) is not part of the time."""
    evn_2, evn_6 = _field(msg, "EVN", 2, 1), _field(msg, "EVN", 6, 1)
    recorded, recorded_from = _timed(evn_2), "EVN-2"
    recorded_at: datetime | None = None
    contradicted: ValueError | None = None
    if recorded:
        recorded_at = hl7_time(recorded, tz)
    else:
        recorded, recorded_from = _timed(_field(msg, "MSH", 7, 1)), "MSH-7"
        if recorded:
            with contextlib.suppress(ValueError):  # unreadable: no recorded time (as in _oru)
                recorded_at = hl7_time(recorded, tz)
            if recorded_at is not None and evn_2:
                try:
                    _on_the_day(recorded, "MSH-7", evn_2, "EVN-2")
                except ValueError as not_that_day:  # sent on a later day (a queue): no
                    recorded_at, contradicted = None, not_that_day  # recorded time, which is
                    recorded = ""  # not needed, nor an event time (refused where it is one)
    occurred, occurred_from = _timed(evn_6), "EVN-6"
    if not occurred and trigger in _VISIT_TIME:
        visit = _field(msg, "PV1", _VISIT_TIME[trigger], 1)
        m = _TS.match(visit)
        if m is not None and m.group("h"):  # a date: the recorded time
            occurred, occurred_from = visit, f"PV1-{_VISIT_TIME[trigger]}"
    if not occurred:
        occurred, occurred_from = recorded, recorded_from
    if not occurred and contradicted is not None:
        raise contradicted
    if not occurred:
        raise ValueError("no time of day in EVN-6, EVN-2, PV1-44/45 or MSH-7")
    if evn_6 and occurred_from != "EVN-6":
        _on_the_day(occurred, occurred_from, evn_6, "EVN-6")
    if occurred == recorded and recorded_at is not None:
        return recorded_at, recorded_at
    return hl7_time(occurred, tz), recorded_at


def _timed(*stamps: str) -> str:
    """The first of `stamps` sent that is not a date alone ('' if none): one that is no time
    stamp at all is returned, for `hl7_time` to refuse with its reason."""
    for stamp in stamps:
        m = _TS.match(stamp.strip())
        if stamp and (m is None or m.group("h")):
            return stamp
    return ""


def _on_the_day(stamp: str, field: str, day: str, day_field: str) -> None:
    """ValueError unless `stamp` (the time taken for `day_field`, sent as a date alone: `day`)
    is written on that date: its year, month and day, as far as `day` gives them, as written
    (in the sender's zone, before any offset: a date has none to convert by)."""
    m = _TS.match(day.strip())
    if m is None or _TS.match(stamp.strip()) is None:
        return  # no time stamp: refused, where it is read, as such (hl7_time)
    digits = "".join(m.group(g) or "" for g in ("y", "mo", "d"))
    if not stamp.strip().startswith(digits):  # both time stamps (_TS): no free text to hide
        raise ValueError(
            f"{day_field} {day.strip()!r} is a date alone and {field} {stamp.strip()!r}, the"
            " time the message gives next, is not on it"
        )


def _adt(
    msg: Message,
    trigger: str,
    base_id: str,
    patient: str,
    facility: str,
    visits: str,
    tokenise: Tokenise,
    source: str,
    tz: tzinfo,
    bed_units: frozenset[tuple[str, str]] | None = None,
    notes: list[str] | None = None,
) -> Mapped | Refused:
    """`visits`: the namespace of PV1-19 visit numbers, the sender's (its registration system
    numbers them), so that a visit keeps one token whatever facility its locations name.
    `bed_units`: see `map_message`. A place (PV1-3's unit, room and bed; PV1-6's) holding a
    control character (`_control_character`) names no unit or bed of the census: it is read as
    absent (a unit with its bed; a room or bed alone, the unit kept), and the rules for an
    absent one apply (an admission or transfer without a unit is refused, `bad_value` 102, a
    discharge is read by its PV1-6), said in `notes` where it was to be read; PV1-6 read as
    absent where the discharge is read by it refuses the message."""
    event_type = "merged_in" if trigger in MERGES else ADT_EVENTS[trigger]
    if (trigger, _field(msg, "PV1", 2, 1).upper()) in _NO_BED_VISIT:
        event_type = "register"  # another encounter of the patient's: a visit in no bed
    unit, bed = _field(msg, "PV1", 3, 1, 1) or None, _bed(msg, 3)
    if (unreadable := _control_character(unit or "")) is not None:
        unit, bed = None, None  # (PV1-3.4, the facility: `_map_patient`)
    elif (found := _control_character(bed or "")) is not None:  # the unit is still the unit
        bed = None
        if notes is not None:
            notes.append(_absent("PV1-3.2-3 (the patient's room and bed)", found))
    prior_unit, prior_bed = _field(msg, "PV1", 6, 1, 1) or None, _bed(msg, 6)
    if (prior_unreadable := _control_character(prior_unit or "")) is not None:
        prior_unit, prior_bed = None, None
    elif (found := _control_character(prior_bed or "")) is not None:
        prior_bed = None
        if notes is not None:
            notes.append(_absent("PV1-6.2-3 (the prior room and bed)", found))
    ended = bool(_field(msg, "PV1", 45, 1))  # the visit's discharge time: it is over
    located = unit is not None
    if trigger == "A08" and ended:
        # an update of a visit that is over (EHRs send A08 for coding and billing long after):
        # its PV1-3 is where that visit was, not where the patient is
        located = False
    elif unreadable is not None:
        if event_type in ("admit", "transfer"):  # the key part first: MSA-3 keeps 80
            why = (
                f"control character in PV1-3: {unreadable} (read as absent), so ADT^{trigger} "
                "has no unit in PV1-3.1"
            )
            return Refused("bad_value", why, "AE", "102")
        if notes is not None:
            notes.append(_absent("PV1-3 (the patient's location)", unreadable))
    if (
        trigger == "A07"
        and unit is not None
        and not ended
        and _stays_in_a_bed(unit, prior_unit, facility, bed_units)
    ):
        # inpatient to outpatient (observation): HL7 v2.5 3.3.7, the patient "is still being
        # seen for this episode of care"; where PV1-3 is a unit of beds, the bed is kept (an
        # update: no change in the bed the patient is in, a move to the unit named otherwise);
        # one that names an outpatient department leaves the bed
        event_type = "update"
    if unit is None and event_type in ("admit", "transfer"):
        return Refused("missing_field", f"ADT^{trigger} without a unit in PV1-3.1", "AE", "101")
    occurred, recorded = _event_time(msg, tz, trigger)
    visit = _field(msg, "PV1", 19, 1)
    _no_control_character("PV1-19 (the visit number)", visit)
    if prior_unreadable is not None:
        if event_type == "discharge" and unit is None:  # read by its PV1-6 (census)
            raise ValueError(
                f"control character in PV1-6 (the prior location, which a discharge without a "
                f"unit in PV1-3 is read by): {prior_unreadable}, no unit of the census"
            )
        if notes is not None:
            notes.append(_absent("PV1-6 (the prior location)", prior_unreadable))
    record = {
        "event_id": f"{base_id}:{trigger}",
        "event_type": event_type,
        "source_message_type": f"ADT^{trigger}",
        "patient_token": patient,
        # an A07 may give the visit a new number (HL7 v2.5 3.3.7): it binds to no encounter
        "encounter_token": tokenise(visits, visit) if visit and trigger != "A07" else None,
        "facility_id": facility,
        "unit_id": unit if located else None,
        "bed_id": bed if located else None,
        "prior_unit_id": prior_unit,
        "prior_bed_id": prior_bed,
        "event_time": occurred,
        "recorded_time": recorded,
        "source": source,
        **_demographics(msg, occurred),
    }
    return Mapped([(topics.ADT_EVENT.name, record)])


def _demographics(msg: Message, at: datetime) -> dict[str, Any]:
    """The patient's age from PID-7 (date/time of birth; its first component, the time, from
    v2.5 on) on the day the visit began (PV1-44, the admit date/time, as the sender dates it;
    else the day the message dates the event: EVN-6, EVN-2, MSH-7, so that without PV1-44 the
    age is each message's; else `at`'s), and sex from PID-8 (table 0001; a CWE's code from v2.7
    on): schemas/interop/demographics.py. A visit that is over (PV1-45: an A08 of a visit years
    ago, for billing) gives no age: its start's age is not the patient's now, and the feature
    store keeps the latest received. Neither refuses the message."""
    ended = bool(_field(msg, "PV1", 45, 1))
    stamps = (("PV1", 44), ("EVN", 6), ("EVN", 2), ("MSH", 7))
    days = (demographics.day_of(_field(msg, seg, i, 1)) for seg, i in stamps)
    day = next((d for d in days if d is not None), at.date())
    birth = "" if ended else _field(msg, "PID", 7, 1)
    return {
        "age_years": demographics.age_years(birth, day),
        "female": demographics.female_hl7(_field(msg, "PID", 8, 1)),
    }


def _stays_in_a_bed(
    unit: str,
    prior_unit: str | None,
    facility: str,
    bed_units: frozenset[tuple[str, str]] | None,
) -> bool:
    """Whether an A07's PV1-3 (`unit`) is where the patient keeps a bed: a unit of the census's
    beds (`bed_units`, the capacity file's: an inpatient converted to observation stays in the
    bed, and the A07 need not say where they were, PV1-6 being optional), or, where those are
    not known, the unit of its PV1-6 (`prior_unit`, where they were)."""
    if bed_units is not None:
        return (facility, unit) in bed_units
    return unit == prior_unit


def _bed(msg: Message, field_no: int) -> str | None:
    """The bed of a PL location (PV1-3, PV1-6; HL7 v2.5 2A.3.53): its room (PL.2) and bed (PL.3)
    as `room-bed`, since bed numbers repeat from room to room (5W12-01 and 5W14-01 are two
    beds); a bed that already names its room as is (`5W12-01`, `512A` in room 512: the room,
    then a separator or a change from digits to letters or back; bed 12 of room 1 is `1-12`);
    a room alone (a single room) is the bed."""
    room, bed = _field(msg, "PV1", field_no, 2), _field(msg, "PV1", field_no, 3)
    if room and bed and not _names_room(bed, room):
        return f"{room}-{bed}"
    return bed or room or None


def _names_room(bed: str, room: str) -> bool:
    if bed == room:
        return True
    if not bed.startswith(room):
        return False
    last, following = room[-1], bed[len(room)]
    return not following.isalnum() or following.isdigit() != last.isdigit()


# PV1-2 patient classes (HL7 table 0004) of a visit that holds no bed: preadmit, outpatient,
# recurring patient, commercial account, not applicable. (E emergency, I inpatient, B obstetrics,
# U unknown and an empty class may.)
_BEDLESS = frozenset({"P", "O", "R", "C", "N"})
# The events of a visit that is never in a bed, which an EHR sends for every encounter of a
# patient: a session of a recurring series (PV1-2 R: an infusion, dialysis) ending (A03) or
# updated (A08). Read as what they say they discharged or moved the inpatient; they are
# `register` (no bed). Not an outpatient's (O: may be an observation patient in a bed) nor a
# pre-admission's (P: HL7's own v2.8 examples send every event of an inpatient as P), not an
# A07 (inpatient to outpatient: leaves the bed).
_NO_BED_VISIT = frozenset({("A03", "R"), ("A08", "R")})


def _merged(
    msg: Message,
    trigger: str,
    mapped: Mapped,
    token: Callable[[tuple[str, str]], str],
    prefer: str,
    fill: str,
) -> Mapped | Refused:
    """A merge (`MERGES`): the merged record's `merged_away` event (`_merged_id`'s token) and
    the surviving record's `merged_in` (`mapped`: PID-3's token, PV1's visit), at the same
    time, each with where the patient is: PV1-3, where the message has one, its visit is not
    discharged (no PV1-45) and of a class in a bed (PV1-2 not `_BEDLESS`). The census frees the
    bed the merged record held and places the survivor there (udfs.census); a merge that does
    not say where the patient is (no PV1, as v2.3's A34 and A36 have none; a discharged or an
    outpatient visit's) moves no one, both events without a unit."""
    merges = sum(1 for seg in msg.children if seg.name == "MRG")
    if merges > 1:  # (an MRG before the first PID is counted in every merge's)
        return Refused(
            "malformed",
            f"ADT^{trigger}: {merges} MRG segments for one PID; each merge is a PID and its MRG",
            "AE",
            "100",
        )
    mrg, merged = _merged_id(msg, prefer, fill)
    if merged is None:
        return Refused(
            "missing_field",
            f"ADT^{trigger} ({MERGES[trigger]}) without the merged record's identifier in {mrg}",
            "AE",
            "101",
        )
    _no_control_character(f"{mrg} (the merged record's identifier)", *merged)
    [(topic, into)] = mapped.records
    if token(merged) == into["patient_token"]:
        return Refused(
            "bad_value",
            f"ADT^{trigger}: {mrg} names the patient PID-3 names, nothing to merge",
            "AE",
            "102",
        )
    # PV1-3 is where the patient is only for a visit in a bed: not discharged (PV1-45), not of
    # a class that holds none (table 0004: preadmit, outpatient, recurring, commercial account,
    # not applicable)
    in_bed = not _field(msg, "PV1", 45, 1) and _field(msg, "PV1", 2, 1).upper() not in _BEDLESS
    if not in_bed:
        into = into | dict.fromkeys(("unit_id", "bed_id", "prior_unit_id", "prior_bed_id"))
    away = into | {
        "event_id": f"{into['event_id']}:away",
        "event_type": "merged_away",
        "patient_token": token(merged),
        "encounter_token": None,  # the merged record's visit (MRG-5) is not the survivor's
    }
    return Mapped([(topic, away), (topic, into | {"event_id": f"{into['event_id']}:in"})])


def _oru(
    msg: Message,
    base_id: str,
    patient: str,
    facility: str,
    source: str,
    tz: tzinfo,
    codes: CodeMap = EMPTY,
    said: list[str] | None = None,
) -> Mapped | Refused:
    """One record per topic and observation time: an ORU may carry the same vital at several
    times (OBX-14), each its own reading. An OBX without OBX-14 (or with only the date of its
    OBR-7, as some lab systems send it) takes its OBR's OBR-7, else the
    collection time of its order's specimen (SPM-17.1, in the SPM after the OBR's results, as
    v2.5.1 lab results send it), then MSH-7. An OBX that cannot be read (a unit its code does
    not take, a value that is no number or outside the field's range, such as a monitor's -999
    for "no value", a bad time) is rejected alone; the message is refused only when nothing
    could be read. Each record's `recorded_time` is MSH-7, when the message was made: a result
    released, or a reading charted, after it was taken is applied then (codec.record_time).
    Where one reading has a field from several codes (an ECG's heart rate and an oximeter's
    pulse rate), the preferred code's value is kept (`observation_code`). An oxygen
    saturation (2708-6) of an order with a blood gas result, or of a laboratory's (OBR-24:
    `LABORATORY_SECTIONS`), is the sample's SaO2, a lab result (loinc.IN_BLOOD_GAS); elsewhere
    a monitor's SpO2. A vitals reading is completed with what
    its values imply (schemas.interop.derived: a GCS total from its three parts, each an OBX
    of its own; a MAP from the systolic and diastolic). A unit (PV1-3.1) holding a control
    character is read as absent (`unknown`), said in `said`: the patient's values are still
    theirs."""
    enc = _encoding(msg)
    unit = _field(msg, "PV1", 3, 1, 1)
    if (found := _control_character(unit)) is not None:
        unit = ""
        if said is not None:
            said.append(_absent("PV1-3.1 (the patient's unit)", found))
    unit = unit or "unknown"
    message_time = _field(msg, "MSH", 7, 1)
    try:  # when the system could know of the values (codec.record_time); unreadable: not known
        recorded = hl7_time(message_time, tz) if message_time else None
    except ValueError:
        recorded = None
    obr_time = ""
    # per (topic, time), each field's kept value: (rank, value, the OBX's label, its OBX-11)
    groups: dict[tuple[str, datetime], dict[str, tuple[int, Any, str, str]]] = {}
    # GCS parts per time: LOINC code → (score or None, label, OBX-11, the OBX's text)
    gcs: dict[datetime, dict[str, tuple[int | None, str, str, bytes]]] = {}
    # (time, field) of each value the message sent that was not read: none is estimated there
    # (the time None: an OBX whose own time cannot be read, which counts at every time)
    unkept: set[tuple[datetime | None, str]] = set()
    # where each kept value came from: (its code's rank, sent under an IEEE 11073 code), so that
    # a MAP is estimated only from a systolic and a diastolic of one source (derived.completed)
    sources: dict[tuple[str, datetime, str], tuple[int, bool]] = {}
    rejected: list[Rejected] = []
    skipped: list[str] = []
    no_value: list[str] = []  # OBX of a code read that carry no value by their status
    no_score: list[str] = []  # GCS parts without a score, and parts that make no total
    notes: list[str] = []  # values read and not used, and why (Mapped.notes)
    children = list(msg.children)
    order_times = _order_times(children, enc, tz, recorded)
    # a CWE's second alternate (10-12) only where the version defines it (`_TRIPLET_STARTS`)
    obx_3_triplets = 3 if _version_key(msg.version) >= (2, 7) else 2
    gases = _blood_gases(children, enc, codes, order_times, message_time, tz, obx_3_triplets)
    order = 0  # the OBR the OBX is under (0: none before it)
    for n, seg in enumerate(children, 1):
        if seg.name == "OBR":
            order += 1
            obr_time = order_times[order]
        if seg.name != "OBX":
            continue
        identifier = _components(seg.obx_3, enc)
        coded = observation_code(identifier, codes, obx_3_triplets)
        panel = blood_pressure_panel(identifier, codes, obx_3_triplets) if coded is None else None
        part = (
            gcs_part(identifier, codes, obx_3_triplets) if (coded, panel) == (None, None) else None
        )
        consciousness = (coded, panel, part) == (None, None, None) and names_acvpu(
            identifier, codes, obx_3_triplets
        )
        status = _er7(seg.obx_11, enc).strip().upper() if len(seg.obx_11) else ""
        if coded is None and panel is None and part is None and not consciousness:
            skipped += _unread(identifier, obx_3_triplets)
            continue
        # one code and value, or a blood pressure panel's systolic and diastolic in one OBX
        fields = [coded[:2]] if coded is not None else [("8480-6", 0), ("8462-4", 0)]
        if part is not None or consciousness:
            fields = []
        sent = coded[2] if coded is not None else str(panel or part or "ACVPU")
        by_mdc = any(_is_mdc(i, t, s) for i, t, s in _triplets(identifier, obx_3_triplets))
        label = printable(f"OBX {_er7(seg.obx_1, enc) if len(seg.obx_1) else n} ({sent})")
        # when it was observed, read once (a time not read is refused after the value is read,
        # as its reason then says); the fields it sends: where its value is not read, none is
        # estimated at that time (derived), at any time where its own time is not read
        sent_at: datetime | None = None
        time_error: ValueError | None = None
        try:
            sent_at = _obx_time(seg, enc, obr_time, message_time, tz)
        except ValueError as exc:
            time_error = exc
        named = [(sent_at, CODES[code].field) for code, _ in fields]
        value_type = _er7(seg.obx_2, enc).strip().upper() if len(seg.obx_2) else ""
        # a result of a blood gas: of a gas panel's order, or of an order with a gas result
        # and timed by the order or within minutes of the gas (a flowsheet order files hourly
        # SpO2 and temperatures beside a gas drawn at 09:30: those of 08:00 are the monitor's)
        own_time = _own_time(seg, enc, obr_time)
        near = [t for t in gases.times.get(order, ()) if sent_at and abs(sent_at - t) <= GAS_NEAR]
        # (a laboratory that sends each test as an order of its own times them all by the
        # specimen: a saturation timed by its order at a gas result's very time is the gas's)
        same_specimen = (
            not own_time
            and bool(order_times[order])
            and gases.tests.get(order) == 1
            and sent_at in gases.specimens
        )
        of_gas = (
            order in gases.panels
            or order in gases.laboratory
            or (order in gases.times and (not own_time or bool(near)))
            or same_specimen
        )
        entry = order in gases.panels or (order in gases.times and not own_time)
        if entry and any(CODES[code].field in ANALYSER_ENTRIES for code, _ in fields):
            # the temperature or rate keyed into the blood gas analyser (its correction, often
            # its default of 37.0 °C), not a bedside reading that would replace the last one
            notes.append(f"{label}: a blood gas's entry, not read as a vital sign")
            unkept.update(named)
            continue
        if status in _NO_VALUE:  # cannot be obtained, pending, not asked: no value
            no_value.append(f"{label}: OBX-11 {status} ({_NO_VALUE[status]})")
            unkept.update(named)
            continue
        if status in ("D", "W"):  # deleted, wrong: the sender takes a result back
            why = Refused(
                "retracted",
                f"{label}: OBX-11 {status}, the sender takes this result back; wardflow keeps no "
                "link to a value published before, which stands",
                "AE",
                "207",
            )
            rejected.append(Rejected(label, why, _er7(seg, enc).encode()))
            unkept.update(named)
            continue
        if (flag := _unusable_status(seg, enc)) is not None:
            notes.append(f"{label}: OBX-8 {flag} ({_UNUSABLE_STATUS[flag]}), not read")
            unkept.update(named)
            continue
        try:
            value = _obx_5(seg, enc)
            comp = value.component
            read: list[tuple[int, str, str, Any]] = []
            score: int | None = None
            # a coded answer's triplets: all that the version defines, in one pass (a CWE's
            # second alternate in v2.7+, `_TRIPLET_STARTS`); read whole, as before, two
            if part is not None:
                scored = partial(gcs_part_score, part, value_type=value_type, component=comp)
                score = _agreed(
                    partial(scored, triplets=obx_3_triplets), value, partial(scored, triplets=2)
                )
            elif consciousness:  # its answer: a SNOMED CT code, or a letter or word
                answer = partial(acvpu_answer, value_type=value_type)
                letter = _agreed(
                    partial(answer, triplets=obx_3_triplets),
                    value,
                    partial(answer, triplets=2, as_before=True),
                    partial(_acvpu_backed, value_type=value_type),
                )
                read = [(0, VITALS, "acvpu", letter)]
            else:
                if coded is not None:
                    number, bound = _agreed(partial(observation_number, component=comp), value)
                    numbers = [number]
                else:
                    numbers = _agreed(partial(blood_pressure_numbers, component=comp), value)
                    bound = ""
                units = _components(seg.obx_6, enc)
                read = [
                    (rank, *convert(code, n, observation_unit(code, units), of_gas))
                    for (code, rank), n in zip(fields, numbers, strict=True)
                ]
                _, topic, name, _ = read[0]
                if bound and (why_not := bound_refusal(topic, name, bound == "<")) is not None:
                    raise ValueError(f"value {shown(value.text)}: {why_not}")
            if time_error is not None or sent_at is None:
                raise time_error or ValueError("no time")
            at = sent_at
        except ValueError as exc:
            why = Refused("bad_value", f"{label}: {exc}"[:500], "AE", "102")
            rejected.append(Rejected(label, why, _er7(seg, enc).encode()))
            unkept.update(named)
            continue
        if part is not None:  # summed with the reading's other parts below (None: no score)
            parts = gcs.setdefault(at, {})
            kept_score, first, kept_status, _ = parts.get(part, (score, label, status, b""))
            if (
                score == kept_score
                or status == "C"
                or (status == "F" and kept_status in _PRELIMINARY)
            ):
                parts[part] = (score, label, status, _er7(seg, enc).encode())
            else:
                why = Refused(
                    "conflicting_value",
                    f"{label}: GCS {derived.PARTS[part].name} {score} at the same time as "
                    f"{first}'s {kept_score}, which is kept",
                    "AE",
                    "207",
                )
                rejected.append(Rejected(label, why, _er7(seg, enc).encode()))
            continue
        for rank, topic, name, value in read:
            invalid = value_refusal(topic, name, value)
            if invalid is not None:
                why = Refused(invalid.reason_code, f"{label}: {invalid.reason}"[:500], "AE", "102")
                rejected.append(Rejected(label, why, _er7(seg, enc).encode()))
                unkept.add((at, name))
                continue
            reading = groups.setdefault((topic, at), {})
            kept_rank, kept_value, first, kept_status = reading.get(name, (None, None, "", ""))
            same_rank = rank == kept_rank
            if same_rank and (status == "C" or (status == "F" and kept_status in _PRELIMINARY)):
                # a correction, or the final result after a preliminary one, replaces it
                reading[name] = (rank, value, label, status)
                sources[(topic, at, name)] = (rank, by_mdc)
            elif same_rank and value != kept_value:
                # two channels of one code (OBX-4 sub-ids: a core and a skin probe), or two
                # codes of equal rank: the first is kept, the other dead-lettered, never lost
                why = Refused(
                    "conflicting_value",
                    f"{label}: {name} {value!r} at the same time as {first}'s {kept_value!r}, "
                    "which is kept",
                    "AE",
                    "207",
                )
                rejected.append(Rejected(label, why, _er7(seg, enc).encode()))
            elif kept_rank is None or rank < kept_rank:  # the preferred code's
                reading[name] = (rank, value, label, status)
                sources[(topic, at, name)] = (rank, by_mdc)

    def unread_at(at: datetime) -> set[str]:
        return {name for when, name in unkept if when is None or when == at}

    scores = {
        at: {code: kept[0] for code, kept in parts.items() if kept[0] is not None}
        for at, parts in gcs.items()
    }
    for parts in gcs.values():
        for code, (score, _, _, _) in parts.items():
            if score is None:
                no_score.append(f"{code} (GCS {derived.PARTS[code].name}: no score)")
    for at, parts_at in scores.items():
        sent_total = {n: kept[1] for n, kept in groups.get((VITALS, at), {}).items()}
        if (why_not := derived.disagreeing(sent_total, parts_at)) is not None:
            for _, part_label, _, text in gcs[at].values():
                why = Refused("conflicting_value", f"{part_label}: {why_not}"[:500], "AE", "207")
                rejected.append(Rejected(part_label, why, text))
        elif derived.GCS_TOTAL in unread_at(at) and derived.GCS_TOTAL not in sent_total:
            no_score.append("GCS parts beside a total sent and not read: no total")
        elif derived.gcs_total(parts_at) is not None:  # a reading, if it is its only value
            groups.setdefault((VITALS, at), {})
        elif (why_none := derived.unsummed(parts_at)) is not None:
            no_score.append(why_none)
    if not groups:
        if rejected:  # one reason code for all of them is the message's (else bad_value)
            reasons = "; ".join(r.refusal.reason for r in rejected)
            given = {r.refusal.reason_code for r in rejected}
            return Refused(
                given.pop() if len(given) == 1 else "bad_value", reasons[:500], "AE", "102"
            )
        if no_value or no_score or notes:
            none = f"no result has a value: {'; '.join([*no_value, *no_score, *notes])}"
            return Refused("no_value", none[:500], "AE", "207")
        return Refused(
            "not_a_vital_sign",
            "no OBX carries a vital sign or lab code wardflow reads (LOINC, IEEE 11073, or a "
            f"local code mapped in the interop_code_map file) (saw {', '.join(skipped)})",
            "AE",
            "207",
        )
    out: list[tuple[str, dict[str, Any]]] = []
    for (topic, at), kept_values in sorted(groups.items(), key=lambda g: (g[0][1], g[0][0])):
        kind, id_field = ("vitals", "observation_id") if topic == VITALS else ("labs", "result_id")
        stamp = at.strftime("%Y%m%dT%H%M%S.%f")[:-3] + "Z"
        values = {name: kept[1] for name, kept in kept_values.items()}
        if topic == VITALS:
            of = {name: sources[(topic, at, name)] for name in kept_values}
            values.update(derived.completed(values, scores.get(at, {}), of, unread_at(at)))
        out.append(
            (
                topic,
                {
                    id_field: f"{base_id}:{kind}@{stamp}",
                    "patient_token": patient,
                    "facility_id": facility,
                    "unit_id": unit,
                    "event_time": at,
                    **values,
                    "source": source,
                    "recorded_time": recorded,
                },
            )
        )
    return Mapped(
        out, rejected, list(dict.fromkeys(skipped)), list(dict.fromkeys([*notes, *no_score]))
    )


class _Value(NamedTuple):
    """An OBX-5 as read (`_obx_5`)."""

    # its components, split where the sender's component separator stands and each decoded
    # once (v2.5 §2.7): an escaped separator (`\S\`, `\X5E\`) is text in its component
    components: list[str]
    # where a component holds such an escaped separator: the value decoded whole and split at
    # every separator, escaped or not (as it was read before `components`); else None
    former: list[str] | None
    component: str  # the message's component separator

    @property
    def text(self) -> str:
        """The value's text as decoded, for a reason to quote (`shown`)."""
        return self.component.join(self.components)


def _obx_5(seg: Any, enc: dict[str, str]) -> _Value:
    """OBX-5's value (`_Value`), its formatting commands read (§2.7.6, `unescape`); ValueError
    for several (repetitions: not one value)."""
    if len(seg.obx_5) > 1:
        raise ValueError(f"{len(seg.obx_5)} values in OBX-5 (repetitions), not one")
    er7 = _er7(seg.obx_5, enc) if len(seg.obx_5) else ""
    component = enc["COMPONENT"]
    components = [unescape(c, enc, formatted=True) for c in er7.split(component)]
    former = unescape(er7, enc, formatted=True).split(component)
    return _Value(components, None if former == components else former, component)


_Read = TypeVar("_Read")


def _agreed(
    read: Callable[[list[str]], _Read],
    value: _Value,
    as_before: Callable[[list[str]], _Read] | None = None,
    backed: Callable[[_Value, _Read], bool] | None = None,
) -> _Read:
    r"""What `read` (a reader of an OBX-5's components) gives for `value`, read per component
    as HL7 v2.5 §2.7 has it: an escaped separator is text in its component (`V\S\2^Voice^L`
    is a local code `V^2` with the text Voice). Where a component holds one, the value is read
    also as it was before (`_Value.former`, by `as_before`, else `read`), for an engine that
    escapes a structured value it writes into one component (a bound `>\S\20`, an answer
    `V\S\Voice\S\L`):
    - where both read and differ, neither is: ValueError (`C\S\Alert^Acute confusion^L` is
      confusion per component and Alert read whole; the escaped separator makes the value
      say two things, and a nurse's record is never read as the one it may not say);
    - where only one reads, that, the reading before only where `backed` (given) says that
      the value bears it out (`backed(value, read)`: `_acvpu_backed`): `Not\S\Alert` read
      whole is an identifier `Not` beside a text `Alert`, no Alert;
    - where neither reads, the reason per component."""

    def attempt(reader: Callable[[list[str]], _Read], parts: list[str]) -> tuple[bool, Any]:
        try:
            return True, reader(parts)
        except ValueError as exc:
            return False, exc

    ok, per = attempt(read, value.components)
    if value.former is None:
        if not ok:
            raise per
        return cast(_Read, per)
    ok_before, before = attempt(as_before or read, value.former)
    if ok and ok_before and per != before:
        raise ValueError(
            f"read per component (v2.5 §2.7) it is {_said(per)}, with its escaped component "
            f"separator taken as one {_said(before)}: neither is read"
        )
    if ok:
        return cast(_Read, per)
    if ok_before and (backed is None or backed(value, before)):
        return cast(_Read, before)
    if ok_before:
        raise ValueError(
            f"it reads {_said(before)} only with its escaped component separator taken as one, "
            f"and nothing beside that says so (per component: {per})"
        )
    raise per


def _said(read: Any) -> str:
    """What a reading gave, as a reason says it (`_agreed`)."""
    return "no score" if read is None else str(read)


def _obx_time(
    seg: Any, enc: dict[str, str], obr_time: str, message_time: str, tz: tzinfo
) -> datetime:
    """When an OBX was observed: OBX-14, else its order's time (`_oru`), else MSH-7; a date
    alone that is its order's date is the order's time. ValueError for a time not read."""
    when = _observed(seg, enc)
    if when.strip().isdigit() and len(when.strip()) <= 8 and obr_time.startswith(when):
        when = ""  # a date alone, its order's date: the order's time (OBR-7, SPM-17)
    return hl7_time(when or obr_time or message_time, tz)


def _collection_end(obr: Any, enc: dict[str, str], tz: tzinfo, sent: datetime | None) -> str:
    """OBR-8 (the end of the specimen's collection; a spot sample's is its collection) where an
    order has no OBR-7 nor specimen time: nearer the sample than MSH-7, when the message was
    made. Only a time of day no later than MSH-7; else "" (MSH-7 is taken, as without it)."""
    end = _first_component(obr.obr_8, enc)
    try:
        at = hl7_time(end, tz) if end else None
    except ValueError:
        return ""
    return end if at is not None and (sent is None or at <= sent) else ""


def _unread(identifier: list[str], triplets: int = 2) -> list[str]:
    r"""An unread OBX-3's codes (its first `triplets`: `_triplets`), each with its coding system
    (`8^PULSE^FLO` → `8 (FLO)`; a text alone quoted), else `(no OBX-3)`: labels for a log
    line, a dead letter's reason and the gateway's check output, so control characters (a tab
    or line feed sent escaped, `\X09\`) are written as escapes and a label is at most
    `UNREAD_LABEL_CHARS` long."""
    read = _triplets(identifier, triplets)
    labels = [(i or repr(t)) + (f" ({s})" if s else "") for i, t, s in read]
    return [printable(label)[:UNREAD_LABEL_CHARS] for label in labels] or ["(no OBX-3)"]


UNREAD_LABEL_CHARS = 80
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: str) -> str:
    """`text` with each control character (C0, DEL, C1, line and paragraph separators) written
    as its Python escape, so that it cannot split a line or a tab-separated column."""
    return _CONTROL.sub(lambda m: repr(m[0])[1:-1], text)


def _control_character(*values: str) -> str | None:
    """The first control character (`_CONTROL`: C0, DEL, C1, the line and paragraph separators)
    that one of `values` holds, named as its code point (`U+000A`: a reason quoted in an ACK's
    MSA-3 has its backslashes made spaces, and `\\x85` would read `x85`), or None."""
    for value in values:
        if (found := _CONTROL.search(value)) is not None:
            return f"U+{ord(found[0]):04X}"
    return None


def _no_control_character(field: str, *values: str) -> None:
    r"""ValueError (the message refused, `bad_value`) where one of `values`, the identifiers of
    a patient or a visit read from `field` (PID-3 and its assigning authority, MRG-1, PV1-19),
    which become tokens, holds a control character (`_control_character`), which no identifier
    holds: a line break sent as hexadecimal data (`MRN\X0D0A\1`) or raw. Left in, it names a
    patient or visit no other feed names, and splits the log lines it is printed in; dropped,
    `MRN\X0A\1` would be `MRN1`, another patient. Around the value it is none of it: stripped,
    as a space is (`_text`). The reason starts with the field (an ACK's MSA-3 keeps 80
    characters). A place (PV1-3, PV1-6) is read as absent instead (`_adt`, `_oru`), the header's
    identifiers as sent (`_identity`); free text (a note, a value's text) may hold line breaks,
    and an OBX-3 code holding one names no code read (it is labelled `printable`)."""
    if (found := _control_character(*values)) is not None:
        raise ValueError(
            f"control character in {field}: {found}, which no identifier holds (read without "
            "it, it could be another's)"
        )


def _absent(field: str, found: str) -> str:
    """The note of a place read as absent for a control character (`_control_character`)."""
    return f"control character in {field}: {found}, read as absent"


_SCHEMAS = {t.name: t.schema for t in (topics.VITALS_OBSERVATION, topics.LABS_RESULT)}


def value_refusal(topic: str, name: str, value: Any) -> codec.Rejection | None:
    """Why one field's value would be refused in a `topic` record (the codec's own range rule,
    schemas loaded once), or None: a value is checked alone so that it is dead-lettered alone."""
    return codec.validate(_SCHEMAS[topic], {name: value})


_DECIMAL = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)\s*$")  # HL7 NM: digits, one point


# A laboratory result's lower bound is read as its number (`LOWER_BOUNDS`): the value is at
# least that, so a criterion "above T" it meets, the true value meets too. Results above an
# analyser's range come so (a lactate `>^20` mmol/L in shock, a WBC `>100`), the most critical
# a screen reads. Not a vital sign's (an FiO2 `>0.6` divides the SpO2 and PaO2 ratios: its
# bound would understate their severity) nor a PaO2's (lower is worse: its bound would
# overstate the severity; `bound_refusal`). An upper bound (`UPPER_BOUNDS`, `<^0.1`: below the
# analyser's range or reporting limit) likewise, only of a laboratory result whose low values are
# the alarming ones (`_LOW_IS_ALARMING`: a criterion "below T" it meets, the true value meets
# too; profound neutropenia or thrombocytopenia, a platelet count `<10`, was dead-lettered);
# any other's would overstate the value: not one value (ValueError).
LOWER_BOUNDS = (">", ">=")
UPPER_BOUNDS = ("<", "<=")


def bound_refusal(topic: str, field: str, upper: bool = False) -> str | None:
    """Why a bound of `field` (a lower one, or an `upper` one) is not read as its number (None:
    it is, a lab result whose alarming values lie beyond the bound)."""
    read = field in _LOW_IS_ALARMING if upper else field not in _LOWER_IS_WORSE
    if topic == topics.LABS_RESULT.name and read:
        return None
    sign, high = ("<", "low") if upper else (">", "high")
    return (
        f"{field}: a bound (`{sign}`) is read only for a laboratory result whose {high} values "
        "are the alarming ones, not one value here"
    )


_LOWER_IS_WORSE = frozenset({"pao2_mmhg"})  # a lab whose lower bound would overstate severity
# Labs whose low values are alarming (SOFA's coagulation and respiration, SIRS's leukopenia; a
# WBC is at both ends, its reporting limit, `<0.1`, far below SIRS's 12): an upper bound is read
_LOW_IS_ALARMING = frozenset({"pao2_mmhg", "platelets_10e9_l", "wbc_10e9_l"})


def observation_number(components: list[str], component: str = "^") -> tuple[float, str]:
    """OBX-5 (its `components`, `_obx_5`) as one number, and which bound it is (`>` or `<`; ""
    for none): an NM value, or a structured numeric (SN: comparator ^ number, HL7 v2.5 section
    2A.2.72) whose comparator is none, `=`, a lower bound (`>`, `>=`: `LOWER_BOUNDS`) or an
    upper one (`<`, `<=`: `UPPER_BOUNDS`; `bound_refusal` says which fields read which) and
    that has no second number; a bound written as text (`>20`, `<0.1`) too. A range or a ratio
    is not one value: ValueError, as for text (quoted with `component` between its parts)."""
    bound, raw = "", component.join(components)
    if len(components) > 1:
        comparator, number, *rest = [*components, ""]
        one = ("", "=", *LOWER_BOUNDS, *UPPER_BOUNDS)
        if comparator.strip() not in one or any(r.strip() for r in rest):
            raise ValueError(f"value {shown(raw)} is not one number (a range or ratio)")
        raw, bound = number, comparator.strip().rstrip("=")
    elif (text := _TEXT_BOUND.match(raw)) is not None:
        raw, bound = text.group(2), text.group(1)
    if _DECIMAL.match(raw) is None:  # float() would also take 1e2, 8_8, inf
        raise ValueError(f"value {shown(raw)} is not a number")
    return float(raw), bound


_NUMERIC_LOOKING = re.compile(r"^\s*[+-]?[\d.,<>=^/:*%eE ]{0,10}$")  # not 123-45-6789


def shown(raw: str) -> str:
    """A value that could not be read, as a reason may quote it: as sent when it looks like a
    number gone wrong (`'12,5'`, `'>^5^<^9'`), else only its length: a free-text OBX-5 ("patient
    refused, wife informed") may name people, and reasons travel in clear (dead-letter topic,
    logs, ACK MSA-3)."""
    return repr(raw) if _NUMERIC_LOOKING.match(raw) else f"(a text of {len(raw)} characters)"


_TEXT_BOUND = re.compile(r"^\s*([<>])=?\s*([^<>=]+)$")  # `>20`, `> 20`, `>=20`, `<0.1`


def _names_loinc(triplets: list[tuple[str, str, str]]) -> bool:
    """Whether a coded field gives a LOINC code (a triplet of system LN with its code)."""
    return any(system in LOINC_SYSTEMS_HL7 and identifier for identifier, _, system in triplets)


_BP_VALUE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")


def blood_pressure_panel(
    obx_3: list[str], codes: CodeMap = EMPTY, triplets_read: int = 2
) -> str | None:
    """The LOINC blood pressure panel an OBX-3 (or its alternate; with `triplets_read` 3, a
    v2.7+ message's, its second alternate after them) names, or a local code mapped to one,
    or None."""
    triplets = _triplets(obx_3, triplets_read)
    if _names_loinc(triplets):
        codes = EMPTY  # as in observation_code
    named = (codes.loinc(s, i) or i for i, _, s in triplets)
    return next((code for code in named if code in BP_PANELS), None)


def blood_pressure_numbers(parts: list[str], component: str = "^") -> list[float]:
    """A blood pressure panel's one value (its components, `_obx_5`) as [systolic, diastolic]:
    text `120/80` (ST, as flowsheet exports send it) or a structured numeric ratio `^120^/^80`
    (SN); anything else is a ValueError."""
    raw = component.join(parts)
    if len(parts) == 4 and parts[0].strip() in ("", "=") and parts[2].strip() in ("/", ":"):
        raw = f"{parts[1]}/{parts[3]}"
    m = _BP_VALUE.match(raw)
    if m is None:
        raise ValueError(f"blood pressure {shown(raw)} is not systolic/diastolic")
    return [float(m.group(1)), float(m.group(2))]


def _order_times(
    children: list[Any], enc: dict[str, str], tz: tzinfo, recorded: datetime | None
) -> dict[int, str]:
    """Each order's time (numbered by its OBR from 1; 0: the OBX before any, none): OBR-7,
    else its specimen's collection (SPM-17.1), else OBR-8 (`_collection_end`), else ''."""
    times, order = {0: ""}, 0
    for n, seg in enumerate(children, 1):
        if seg.name == "OBR":
            order += 1
            times[order] = (
                _first_component(seg.obr_7, enc)
                or _specimen_time(children[n:], enc)
                or _collection_end(seg, enc, tz, recorded)
            )
    return times


# Diagnostic service sections (OBR-24, HL7 table 0074) of a laboratory's results on blood: an
# oxygen saturation of such an order is measured in the sample (a co-oximeter's), not a pulse
# oximeter's SpO2. BG (blood gases) is a blood gas's order as a gas panel is.
GAS_SECTION = "BG"
LABORATORY_SECTIONS = frozenset({GAS_SECTION, "CH", "HM", "LAB", "OSL", "TX"})


class _Gases(NamedTuple):
    """The blood gases of an ORU (`_blood_gases`)."""

    # orders of an arterial blood gas panel in OBR-4 (loinc.GAS_PANELS), or of the blood gases'
    # section in OBR-24
    panels: set[int]
    laboratory: set[int]  # orders of a laboratory's section in OBR-24 (LABORATORY_SECTIONS)
    times: dict[int, list[datetime]]  # per order, the times of its gas results
    specimens: set[datetime]  # the times of the gas results timed by their order: a specimen's
    tests: dict[int, int]  # per order, how many OBX it holds


def _blood_gases(
    children: list[Any],
    enc: dict[str, str],
    codes: CodeMap,
    order_times: dict[int, str],
    message_time: str,
    tz: tzinfo,
    obx_3_triplets: int = 2,
) -> _Gases:
    """The orders (numbered by their OBR from 1; 0: the OBX before any) of a blood gas panel
    or section, those of a laboratory's section (OBR-24), and the blood gas analyser's results
    (loinc.GAS_ANALYTES: pO2, pCO2, pH of any sample, read or not; not pending or taken back,
    OBX-11 X, I, D, W): their times per order, and those timed by their order (OBR-7, SPM-17,
    OBR-8; no OBX-14 of their own, nor MSH-7)."""
    gases = _Gases(set(), set(), {}, set(), {})
    order = 0
    for seg in children:
        if seg.name == "OBR":
            order += 1
            service = _triplets(_components(seg.obr_4, enc)) if len(seg.obr_4) else []
            local = EMPTY if _names_loinc(service) else codes  # as in observation_code
            section = _first_component(seg.obr_24, enc).strip().upper()
            if section == GAS_SECTION or any(
                (local.loinc(s, code) or code) in GAS_PANELS for code, _, s in service
            ):
                gases.panels.add(order)
            if section in LABORATORY_SECTIONS:
                gases.laboratory.add(order)
            continue
        if seg.name != "OBX":
            continue
        gases.tests[order] = gases.tests.get(order, 0) + 1
        identifier = _components(seg.obx_3, enc)
        coded = observation_code(identifier, codes, obx_3_triplets)
        named = {i for i, _, s in _triplets(identifier, obx_3_triplets) if s in LOINC_SYSTEMS_HL7}
        named |= {coded[0]} if coded is not None else set()
        status = _er7(seg.obx_11, enc).strip().upper() if len(seg.obx_11) else ""
        if not named & GAS_ANALYTES or status in ("X", "I", "D", "W"):
            continue
        # its own time not read: it is refused with it, and marks none
        with contextlib.suppress(ValueError):
            at = _obx_time(seg, enc, order_times[order], message_time, tz)
            gases.times.setdefault(order, []).append(at)
            if order_times[order] and not _own_time(seg, enc, order_times[order]):
                gases.specimens.add(at)
    return gases


def _observed(seg: Any, enc: dict[str, str]) -> str:
    """OBX-14's time ('' if empty). HL7 v2.1's OBX has 12 fields and no OBX-14: one with more
    (a sender's OBX-14 all the same, which the parser keeps unplaced) has a time that cannot be
    told from its order's, a ValueError."""
    try:
        observed = seg.obx_14
    except ChildNotFound:
        if any(child.name is None for child in seg.children):
            raise ValueError(
                "fields past the OBX-12 of its HL7 version (2.1): its own time (OBX-14) cannot "
                "be told from its order's"
            ) from None
        return ""
    return _first_component(observed, enc)


def _own_time(seg: Any, enc: dict[str, str], obr_time: str) -> bool:
    """Whether an OBX is timed by its own OBX-14 rather than by its order (`_obx_time`)."""
    try:
        when = _observed(seg, enc).strip()
    except ValueError:  # refused with its time (`_obx_time`)
        return False
    return bool(when) and not (when.isdigit() and len(when) <= 8 and obr_time.startswith(when))


def _specimen_time(after_obr: list[Any], enc: dict[str, str]) -> str:
    """SPM-17.1 (the specimen's collection start, a DR's first TS) of the first SPM of the
    order whose OBR precedes `after_obr` (the segments after it): '' if it has none."""
    for seg in after_obr:
        if seg.name == "OBR":
            return ""
        if seg.name != "SPM":
            continue
        try:
            collected = seg.spm_17
        except Exception:  # a version without SPM-17
            return ""
        if not len(collected):
            return ""
        start = _er7(collected, enc).split(enc["COMPONENT"])[0].split(enc["SUBCOMPONENT"])[0]
        return _text(start, enc)
    return ""


def _first_component(field: Any, enc: dict[str, str]) -> str:
    """A field's first component's text (a TS/DTM field's time, a DR's start), '' if empty."""
    return _text(_er7(field, enc).split(enc["COMPONENT"])[0], enc) if len(field) else ""


def _unusable_status(seg: Any, enc: dict[str, str]) -> str | None:
    """The first of OBX-8's repetitions that is an `_UNUSABLE_STATUS` (case aside; a space, `-`
    or `_` between its words alike: `Calibration Ongoing`), or None."""
    if not len(seg.obx_8):
        return None
    for rep in seg.obx_8:  # its repetitions
        first = _er7(rep, enc).split(enc["COMPONENT"])[0]
        flag = re.sub(r"[\s_-]+", "-", unescape(first, enc).strip().lower())
        if flag in _UNUSABLE_STATUS:
            return flag
    return None


def _components(field: Any, enc: dict[str, str]) -> list[str]:
    if not len(field):
        return [""]
    return [unescape(c, enc) for c in _er7(field, enc).split(enc["COMPONENT"])]


# Where a coded field's (identifier, text, coding system) triplets start: CE and CWE's first
# (components 1-3) and alternate (4-6), and from v2.7 CWE's second alternate (10-12: second
# alternate identifier, text and name of coding system; v2.7 ch. 2A, CWE, 7-8 being the coding
# systems' versions and 9 the original text). Versions before 2.7 define no 10-12 (CE has 6
# components, v2.5.1 CWE 9), and hl7apy writes back components past its version's last without
# the empty ones among them: where a sender of one sends more, 10-12 are not where it put them
# (`X1^Pulse^L^^^^^^Pulse^8867-4^HR^LN` in v2.5.1 gives `LN` as 10). So the second alternate
# is read in v2.7+ alone (`_oru`): for OBX-3 (its code, a blood pressure panel, a GCS part, the
# ACVPU observation, an unread label) where the first two name nothing read (a field's name is
# found where it is); for an OBX-5 coded answer (ACVPU, a GCS part's score) with the first two,
# in one pass, so that one naming another level or score than they do is refused, not passed
# over (`acvpu_answer`, `gcs_part_score`); OBX-6 units and OBR-4 are read by two.
_TRIPLET_STARTS = (0, 3, 9)


def _triplets(components: list[str], count: int = 2) -> list[tuple[str, str, str]]:
    """A CE/CWE field's (identifier, text, coding system) and its alternate (components 4-6),
    those it sends; with `count` 3 its second alternate (10-12, v2.7 CWE) too."""
    padded = [*components, *[""] * 12]
    return [
        (padded[i].strip(), padded[i + 1].strip(), padded[i + 2].strip().upper())
        for i in _TRIPLET_STARTS[:count]
        if padded[i].strip() or padded[i + 1].strip()
    ]


def _is_mdc(identifier: str, text: str, system: str, prefix: str = "MDC_") -> bool:
    """An IEEE 11073 triplet: coding system MDC, or none and an MDC mnemonic."""
    return system in mdc.SYSTEMS_HL7 or (
        not system and (text.startswith(prefix) or identifier.startswith(prefix))
    )


def observation_code(
    obx_3: list[str], codes: CodeMap = EMPTY, triplets: int = 2
) -> tuple[str, int, str] | None:
    """The LOINC code of the vital sign or lab an OBX-3 names, the code's rank among those of the
    same field (schemas.interop.mdc's, where an IEEE 11073 code names it; else 0) and the
    identifier as sent. Its identifier is read, then its alternate (OBX-3.4-6: a local code
    with its LOINC, as many EHRs send): a local code the deployment mapped (`codes`) through
    its LOINC, an IEEE 11073 code (IHE PCD-01) through its LOINC, any other as LOINC. With
    `triplets` 3 (a v2.7+ message: `_TRIPLET_STARTS`), only where neither gives a code read, its
    second alternate too (OBX-3.10-12, v2.7 CWE: a sender's third coding, its LOINC there)."""
    first = _observation_code(_triplets(obx_3), codes)
    if first is not None or triplets < 3:
        return first
    return _observation_code(_triplets(obx_3, triplets), codes)


def _observation_code(
    triplets: list[tuple[str, str, str]], codes: CodeMap
) -> tuple[str, int, str] | None:
    """`observation_code` of the triplets read."""
    found: list[tuple[str, int | None, str]] = []
    if _names_loinc(triplets):
        codes = EMPTY  # a LOINC code says what the value is, read or not: no local code overrides
    for identifier, text, system in triplets:
        term = mdc.term(identifier, text) if _is_mdc(identifier, text, system) else None
        local = codes.loinc(system, identifier)
        if local is not None:
            if local in CODES:  # a panel's is read by blood_pressure_panel
                found.append((local, RANKS.get(local), identifier))
        elif term is not None:
            found.append((term[1].loinc, term[1].rank, identifier or text))
        elif identifier in CODES:
            found.append((identifier, RANKS.get(identifier), identifier))
    if not found:
        return None
    code, _, sent = found[0]
    ranks = [rank for loinc, rank, _ in found if loinc == code and rank is not None]
    return code, ranks[0] if ranks else 0, sent


def names_acvpu(obx_3: list[str], codes: CodeMap = EMPTY, triplets: int = 2) -> bool:
    """Whether an OBX-3 (or its alternate; with `triplets` 3, a v2.7+ message's, its second
    alternate where those two do not) names consciousness on the ACVPU scale: its SNOMED CT
    code (schemas.interop.acvpu), or a local code mapped to it where no LOINC code beside it
    says what the value is (as `observation_code` reads the map)."""

    def names(read: list[tuple[str, str, str]]) -> bool:
        mapped = EMPTY if _names_loinc(read) else codes
        return acvpu.names_observation((mapped.loinc(s, i) or i, s) for i, _, s in read)

    return names(_triplets(obx_3)) or (triplets > 2 and names(_triplets(obx_3, triplets)))


def acvpu_answer(
    components: list[str], value_type: str = "", triplets: int = 2, as_before: bool = False
) -> str:
    r"""An ACVPU answer's letter from its OBX-5 (its `components`, `_obx_5`), read from each
    triplet (with `triplets` 3, a v2.7+ CWE's second alternate, 10-12, too: all in one pass):
    its identifier where it is a SNOMED CT answer (acvpu.ANSWERS) or has no text (a letter or
    word: `V`, `New confusion`, acvpu.level; an ST or TX is its first), and its text. Every
    part that names a level must name the same one (acvpu.letter: a nurse's record is never
    read as the milder of two), an identifier beside a text too, which never names the level
    alone (`C^Alert^L` names two; `U^Unable to assess^L`, a local list's U, is no
    Unresponsive). Alert, the one level NEWS2 scores 0 (RCP NEWS2 2017, chart 1: any other,
    new confusion included, scores 3, and qSOFA reads it as altered mentation), only where
    every part names a level, but a local code's identifier beside its text (one with a coding
    system, `L1^Alert^L`, or any in a coded type, CWE, CE, CNE or CF, whose first component is
    always an identifier and its coding system optional in v2.5: `AL^Alert`): `Not^Alert` (an
    ST whose `^` was sent unescaped) and `248234008^Not alert^SCT` are refused, never read as
    Alert; beside a SNOMED CT Alert, a text in other words read unless it may say otherwise
    (`248234008^A - Alert^SCT`: `_says_otherwise`). ValueError for none, parts that disagree,
    such an Alert, or a structured numeric (`>^V`). `as_before`: as it was read before these
    rules (an identifier beside a text, and a part that names no level, passed
    over), the reading of a value with an escaped separator taken as one (`_agreed`)."""
    if value_type == "SN":
        raise ValueError("a structured numeric (a bound or a ratio) is no ACVPU level")
    snomed: list[str] = []
    texts: list[str] = []
    beside: list[tuple[str, str]] = []  # an identifier beside a text, and its coding system
    for identifier, text, system in _triplets(components, triplets):
        if identifier in acvpu.ANSWERS:
            snomed.append(identifier)
        elif not text:
            texts.append(identifier)
        elif identifier and not as_before:
            beside.append((identifier, system))
        texts += [text] if text else []
    letter = acvpu.letter(snomed, texts)
    if as_before:
        return letter
    acvpu.letter(snomed, [*texts, *(identifier for identifier, _ in beside)])  # another level
    unnamed = [t for t in texts if acvpu.level(t) is None]
    coded = value_type in ("CWE", "CE", "CNE", "CF")  # a raw `^` only in a text type
    unnamed += [i for i, system in beside if not (system or coded) and acvpu.level(i) is None]
    if letter == "A" and unnamed and (not snomed or any(map(_says_otherwise, unnamed))):
        raise ValueError(
            "the answer reads Alert only beside a part that names no level, which may say "
            "otherwise (NEWS2 scores any other level 3): not read as Alert"
        )
    return letter


def _says_otherwise(text: str) -> bool:
    """Whether a text beside a SNOMED CT Alert (248234008), one naming no level itself, may
    say otherwise: a negation (`not`, `no`, `non`, `un…`: `Not alert`, `Non-alert`, `Unalert`)
    or another level's word (`Alert but confused`). A display of the code in other words
    (`A - Alert`, `Alert and orientated`, `Alert/oriented`) says the same, read as Alert."""
    words = re.findall(r"[a-z]+", text.lower())
    return any(
        w in ("not", "no", "non") or w.startswith("un") or acvpu.WORDS.get(w, "A") != "A"
        for w in words
    )


def _acvpu_backed(value: _Value, letter: str, value_type: str = "") -> bool:
    r"""Whether an ACVPU answer read as before (its escaped component separator taken as one,
    `_Value.former`: `_agreed`), and not per component, is borne out by the value: the first
    triplet's identifier and text both name that level (`V\S\Voice\S\L`,
    `A^Alert\S\oriented^L`), or every part it holds does (`Alert\S\`), or read whole by
    today's rules (`acvpu_answer`, its OBX-2 `value_type`) it names that level (a local code an
    engine escaped whole: `AVPU-C\S\New confusion\S\99LOCAL`), and none of its components
    names another (`C\S\C^A`). Not where a part the reading passed over may say
    something else (`Not\S\Alert`, `U\S\A`: an identifier beside a text)."""

    def level(text: str) -> str | None:
        return acvpu.ANSWERS.get(text.strip()) or acvpu.level(text)

    former = value.former or []
    if any(level(c) not in (None, letter) for c in value.components):
        return False
    with contextlib.suppress(ValueError):  # read whole by today's rules, it says the same
        if acvpu_answer(former, value_type) == letter:  # `AVPU-C\S\New confusion\S\99LOCAL`
            return True
    identifier, text, _ = (_triplets(former) or [("", "", "")])[0]
    parts = [part for part in former if part.strip()]
    return (bool(identifier and text) and {level(identifier), level(text)} == {letter}) or (
        bool(parts) and all(level(part) == letter for part in parts)
    )


def gcs_part(obx_3: list[str], codes: CodeMap = EMPTY, triplets: int = 2) -> str | None:
    """The LOINC code of the Glasgow coma scale part (schemas.interop.derived.PARTS) an OBX-3
    or its alternate names (with `triplets` 3, a v2.7+ message's, its second alternate where
    those two name none), as LOINC or as a local code the deployment mapped, or None."""

    def named(read: list[tuple[str, str, str]]) -> str | None:
        loinc_named = _names_loinc(read)  # a LOINC code says what the value is
        for identifier, _, system in read:
            local = None if loinc_named else codes.loinc(system, identifier)
            if (local or identifier) in derived.PARTS:
                return local or identifier
        return None

    first = named(_triplets(obx_3))
    return first if first is not None or triplets < 3 else named(_triplets(obx_3, triplets))


def gcs_part_score(
    part: str, components: list[str], value_type: str = "", triplets: int = 2, component: str = "^"
) -> int | None:
    """A GCS part's score from its OBX-5 (its `components`, `_obx_5`) and OBX-2: a number (NM,
    SN or ST: `4`, `=^4`), or of a coded answer (CWE, CE, CNE) a LOINC answer code (identifier
    or alternate: `LA6556-0^Eyes open spontaneously^LN`; with `triplets` 3, the second
    alternate too, CWE 10-12), else its identifier where it is the score: sent without a coding
    system (`4^Opens eyes spontaneously`), or its text starts with it (`4^4 - spontaneous^L`)
    (a local answer list numbered otherwise is not read as scores). None for charting that has
    no score (`derived.NO_SCORE`: `T`, a verbal response not testable through a tube);
    ValueError for anything else (no value, a text, a bound, a number not one of the part's
    scores)."""
    first = components[0].strip()
    if first.upper() in derived.NO_SCORE:
        return None
    if value_type in ("CWE", "CE", "CNE", "CF"):
        read = _triplets(components, triplets)
        scores: dict[int, str] = {}  # each score the answer names, and what names it
        if read:
            identifier, text, system = read[0]
            as_score = not system or text.split(" ")[0].split("-")[0].strip() == identifier
            number = float(identifier) if _DECIMAL.match(identifier) and as_score else None
            try:
                if (scored := derived.part_score(part, number, ())) is not None:
                    scores[scored] = identifier  # (ValueError: not one of the part's scores)
            except ValueError:  # a local code past the scores, no system, beside LOINC's answer
                if system or not any(i in derived.ANSWERS for i, _, _ in read):
                    raise  # (`703512^Spontaneous^^LA6556-0^…^LN`: LOINC's answer says it)
        for identifier, _, _ in read:  # its LOINC answers (ValueError: another part's)
            if (scored := derived.part_score(part, None, [identifier])) is not None:
                scores.setdefault(scored, identifier)
        if len(scores) > 1:  # `4^^^LA6553-7^Eyes closed^LN`: 4, and LOINC's 1
            named = " and ".join(f"{score} ({what})" for score, what in scores.items())
            raise ValueError(f"{part}: the coded answer names two scores, {named}")
        if scores:
            return next(iter(scores))
        if any(t.upper() in derived.NO_SCORE for triplet in read for t in triplet[:2]):
            return None  # `^Intubated^L`: charting of no score, coded
        raise ValueError(f"{part}: the coded answer is not a score nor a LOINC answer")
    number, bound = observation_number(components, component)  # ValueError: not one number
    if bound:
        raise ValueError(f"{part}: a bound ({shown(component.join(components))}), not a score")
    return derived.part_score(part, number, ())


def observation_unit(code: str, obx_6: list[str]) -> str:
    """The unit of an OBX as the code's table names it: OBX-6's identifier (an IEEE 11073 unit
    as its UCUM code), else its alternate (OBX-6.4-6), else either's text, where the code takes
    that one (as sent or as a spelling of it); else the identifier as sent, which `convert`
    refuses with its reason."""
    sent: list[str] = []
    texts: list[str] = []
    for identifier, text, system in _triplets(obx_6):
        if _is_mdc(identifier, text, system, "MDC_DIM_"):
            sent += [u for u in (mdc.ucum(identifier, text),) if u]
        sent.append(identifier)
        texts.append(text)
    # a unit sent only as text (`^deg F`, `^K/uL`) is read where the code takes it; none at
    # all is "" (loinc.convert reads it where it can mean one unit only); a dimensionless
    # code (pH, a score) reads any text it does not take (`^pH units`) as no unit
    given = [u for u in [*sent, *texts] if u.strip()]
    found = next((u for u in given if takes(code, u)), None)
    if found is not None:
        return found
    return "" if not given or "" in CODES[code].units else given[0]


def raw_control_id(text: str) -> str:
    """MSH-10 read straight from the text, for acknowledging a message hl7apy could not parse
    (after what `parse` strips before MSH: a line break after the MLLP start byte), as ER7 in
    the message's own delimiters (`raw_encoding`)."""
    text = _trimmed(text)
    if not text.startswith("MSH") or len(text) < 4:
        return ""
    fields = text.split("\r", 1)[0].split(text[3])
    return fields[9].strip() if len(fields) > 9 else ""


def raw_encoding(text: str) -> dict[str, str]:
    """The delimiters and escape character a message's MSH-1 and MSH-2 declare (as many of them
    as it gives: a message hl7apy could not parse may give fewer), read straight from the text;
    none if it starts with no MSH."""
    text = _trimmed(text)
    if not text.startswith("MSH") or len(text) < 4 or text[3] == "\r":
        return {}
    chars = [*text.split("\r", 1)[0].split(text[3]), ""][1]
    names = ("COMPONENT", "REPETITION", "ESCAPE", "SUBCOMPONENT", "TRUNCATION")
    return {"FIELD": text[3], **dict(zip(names, chars[:5], strict=False))}


# The ACK's own delimiters and escape character, in every version: HL7's recommended `|^~\&`,
# and no truncation character (v2.7 2.5.5.2: it marks a value cut short, and wardflow cuts
# none it echoes; declared, a `#` in an echoed control id would have to be written `\P\`, as
# hl7apy's v2.7+ libraries write it `\L\`, which is no sequence of the standard: the sender
# could not match MSA-2 to the MSH-10 it sent). Values copied from the message are as sent where
# its delimiters are these, else written again in these (`_copied`).
ACK_ENCODING = {
    "FIELD": "|",
    "COMPONENT": "^",
    "REPETITION": "~",
    "ESCAPE": "\\",
    "SUBCOMPONENT": "&",
    "GROUP": "\r",
    "SEGMENT": "\r",
}


def _escaped(text: str, enc: dict[str, str]) -> str:
    r"""`text` as one subcomponent's ER7 in `enc`'s delimiters (v2.5 §2.7): the escape character
    and each delimiter as its escape sequence (`\E\ \F\ \S\ \T\ \R\`), a control character (a
    line break a sender wrote as `\X0D\`) as hexadecimal data, which no segment ends at."""
    esc = enc["ESCAPE"]
    sequences = {enc[name]: code for name, code in _DELIMITER_CODES.items() if enc.get(name)}
    out = []
    for char in text:
        if char in sequences:
            out.append(f"{esc}{sequences[char]}{esc}")
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"{esc}X{ord(char):02X}{esc}")
        else:
            out.append(char)
    return "".join(out)


_DELIMITER_CODES = {
    "ESCAPE": "E",
    "FIELD": "F",
    "COMPONENT": "S",
    "SUBCOMPONENT": "T",
    "REPETITION": "R",
}


def _rewritten(er7: str, source: dict[str, str], target: dict[str, str]) -> str:
    r"""A field's ER7 text in `source`'s delimiters and escape character written in `target`'s:
    each of its repetitions, components and subcomponents in turn, its text escaped in
    `target` (`_escaped`: its delimiters, escape character and control characters), and of its
    escape sequences (v2.5 §2.7) those of a character (a delimiter's, `\F\ \S\ \T\ \R\ \E\`:
    the character `source` names, which may be text in `target`; the truncation character's,
    `\P\`, which the ACK declares none of) decoded and escaped again, the others (`\H\ \N\`,
    hexadecimal data, formatting, character sets, `\Z..\`) written as they were with
    `target`'s escape character. Copied as it was, a value in a message with other delimiters
    (`MSH|*~!@|`, whose `^` is text) says something else in the ACK's, or breaks it; all of it
    decoded and escaped again, `C!H!1!N!` was `C1` and `C!XC2B0!1` a `°` that an ASCII
    message cannot carry: neither the control id the sender sent."""
    esc, target_esc = source.get("ESCAPE", ""), target["ESCAPE"]
    kept = {target[name] for name in _DELIMITER_CODES if target.get(name)}

    def sequence(body: str) -> str | None:
        value = _sequence(body, source)
        if value is None:
            return None  # no sequence: the escape character is text
        if body in _ESCAPES or _CONTROL_CHARACTER.search(body) or kept & set(body):
            return _escaped(value, target)  # (a \Z..\ that `target` cannot hold: dropped)
        return f"{target_esc}{body}{target_esc}"

    def subcomponent(text: str) -> str:
        if not esc:
            return _escaped(text, target)
        return _sequences_read(text, esc, sequence, lambda plain: _escaped(plain, target))

    def split(text: str, name: str) -> list[str]:
        return text.split(source[name]) if source.get(name) else [text]

    return target["REPETITION"].join(
        target["COMPONENT"].join(
            target["SUBCOMPONENT"].join(
                subcomponent(sub) for sub in split(component, "SUBCOMPONENT")
            )
            for component in split(repetition, "COMPONENT")
        )
        for repetition in split(er7, "REPETITION")
    )


_CONTROL_CHARACTER = re.compile(r"[\x00-\x1f\x7f]")


def _copied(er7: str, source: dict[str, str]) -> str:
    r"""A field's ER7 text in `source`'s delimiters as the ACK copies it: as sent where the
    message's field separator, component, repetition and subcomponent separators and escape
    character are the ACK's (`ACK_ENCODING`), byte for byte as the sender wrote it, for
    engines match MSA-2 to the MSH-10 they sent byte for byte (`C\X41\1`, `C\H\1\N\`,
    `C\P\1` are echoed so, never decoded to `CA1`, `C1`), but for a control character sent
    raw, which could end a segment or the MLLP frame: that alone is written as hexadecimal
    data (`M\P\7<TAB>` is echoed `M\P\7\X09\`). Only where they differ is it written again
    in the ACK's (`_rewritten`). A truncation character the message declares is none of
    these, in any version (before 2.7 `parse` keeps it beside the message): its `\P\` is
    copied as sent too, never as the `#` it stands for."""
    same = all(source.get(name) == ACK_ENCODING[name] for name in _DELIMITER_CODES)
    if same:
        return _CONTROL_CHARACTER.sub(lambda m: f"\\X{ord(m[0]):02X}\\", er7)
    return _rewritten(er7, source, ACK_ENCODING)


def _set_fields(segment: str, values: dict[int, str]) -> str:
    """An ER7 segment of the ACK (`|` its field separator) with fields set: `values` by the
    index of the field after the segment id (MSH-n is n - 1: MSH-1 is the separator itself)."""
    fields = segment.split("|")
    fields += [""] * max(0, max(values) + 1 - len(fields))
    for index, value in values.items():
        fields[index] = value
    return "|".join(fields)


def ack(
    msg: Message | None,
    ack_code: str,
    text: str = "",
    error_code: str = "",
    *,
    raw: str = "",
    severity: str = "E",
) -> str:
    """An ACK (MSA; ERR for AE/AR, or for AA with `error_code` and severity W: stored, with a
    warning) for `msg`, in its HL7 version and processing id (MSH-11), as ER7 with CR separators.
    Without a parsed message (unparseable input) a v2.5 ACK quotes MSH-10 read from `raw`. In
    `ACK_ENCODING`'s delimiters whatever the message's: what it copies from the message is as
    sent where the message's are the same, else escaped again in these (`_copied`)."""
    version = msg.version if msg is not None else "2.5"
    tolerant = VALIDATION_LEVEL.TOLERANT
    try:
        reply = Message(
            "ACK", version=version, validation_level=tolerant, encoding_chars=ACK_ENCODING
        )
    except Exception:  # a version hl7apy cannot build: answer in 2.5
        version = "2.5"
        reply = Message(
            "ACK", version=version, validation_level=tolerant, encoding_chars=ACK_ENCODING
        )
    reply.msh.msh_3 = "WARDFLOW"
    # what is copied from the message (MSH-3 and -4 as MSH-5 and -6, MSH-10 as MSA-2, MSH-18),
    # as sent, else written in the ACK's delimiters (`_copied`), and set in its text after
    # hl7apy wrote it (which would write a `\X0D\` the ACK needs back as `\E\X0D\E\`)
    copied: dict[int, str] = {}
    if msg is not None:
        enc = _encoding(msg)
        for ours, theirs in ((5, 3), (6, 4)):
            value = getattr(msg.msh, f"msh_{theirs}")
            if len(value):
                copied[ours - 1] = _copied(_er7(value, enc), enc)
        control = _copied(_er7(msg.msh.msh_10, enc), enc)
    else:
        control = _copied(raw_control_id(raw), raw_encoding(raw))
    # v2.5.1 2.14.1: the ACK names the trigger it answers, and (from 2.3.1, MSG.3) its structure
    trigger = _field(msg, "MSH", 9, 2) if msg is not None else ""
    trigger = trigger if re.fullmatch(r"[A-Z0-9]{3}", trigger) else ""
    if not trigger or version in ("2.1", "2.2"):
        reply.msh.msh_9 = "ACK"
    else:
        reply.msh.msh_9 = f"ACK^{trigger}" + ("" if version == "2.3" else "^ACK")
    reply.msh.msh_10 = f"WF{datetime.now(UTC).strftime('%Y%m%d%H%M%S%f')}"
    if msg is not None:  # answered in the message's character set (the gateway): declared so
        with contextlib.suppress(Exception):  # hl7apy: a version without MSH-18 (2.1)
            sets = [_er7(r, enc) for r in msg.msh.msh_18]
            if any(sets):  # as the message gave it, repetitions too (its default set first)
                copied[17] = _copied(enc["REPETITION"].join(sets), enc)
    # MSH-11 as read (`processing_id`: decoded, so escaped again), set in its text as the
    # copies are: a `P\X0D\T` set in hl7apy's ACK is a CR that cut it before its MSA
    pid = processing_id(msg) if msg is not None else raw_processing_id(raw)
    copied[10] = _escaped(pid, ACK_ENCODING)
    reply.msa.msa_1 = ack_code
    if text:  # the reason in words: a delimiter or a control character (a CR, the MLLP end
        # byte FS, a line break in an hl7apy error or a field quoted) is a space, not the end
        # of MSA or of the frame
        reply.msa.msa_3 = re.sub(r"[|^~\\&]", " ", _CONTROL.sub(" ", text))[:80]
    head, msa, *_ = reply.to_er7().split("\r")
    out = _set_fields(head, copied) if copied else head
    out += "\r" + _set_fields(msa, {2: control})
    old = version in ("2.1", "2.2", "2.3", "2.3.1", "2.4")
    if ack_code != "AA":  # ERR: 2.3/2.4 carry the code in ERR-1, 2.5+ in ERR-3 with severity
        code = error_code or "207"
        out += f"\rERR|^^^{code}&&HL70357" if old else f"\rERR|||{code}^^HL70357|{severity}"
    elif error_code and not old:  # AA with a warning: stored, but not (all) mapped
        out += f"\rERR|||{error_code}^^HL70357|W"
    return out + "\r"  # every segment ends with a CR, the last too (v2.5.1 §2.6)


def raw_processing_id(text: str) -> str:
    """MSH-11.1 read straight from the text (as `raw_control_id`); P when absent."""
    text = _trimmed(text)
    if not text.startswith("MSH") or len(text) < 4:
        return "P"
    fields = text.split("\r", 1)[0].split(text[3])
    component = text[4:5] if text[4:5] not in ("", "\r", text[3]) else "^"
    value = fields[10].split(component)[0].strip().upper() if len(fields) > 10 else ""
    return value if value in ("P", "T", "D") else "P"
