"""FHIR R4 Encounter and vital-sign and laboratory Observation resources → canonical records.

Resources are validated with fhir.resources (its R4B models: R4B changed nothing in Encounter or
Observation). Every resource ends as `Mapped` records or a `Refused` reason, like HL7 v2
messages (schemas.interop.hl7v2). A Bundle is opened and each entry handled on its own; an entry
of another kind that its Encounters or Observations refer to, or that refers to them (a Patient,
a DiagnosticReport), is their `Context`: neither published nor dead-lettered.

Encounter → ADT events from its location history (`Encounter.location`, FHIR R4 §9.1.4.1): the
first location is the admission, each change of location a transfer, and the end of a finished
encounter's last location (else the encounter's own period.end) the discharge. Locations are
taken in the order of their period.start, whatever their order in the list. Consecutive entries
for the same location (a bed kept `reserved` while the patient is on leave) are one stay. Only
inpatient-like classes (IMP, ACUTE, NONAC, EMER, OBSENC; v3 ActCode) occupy beds; a class of
another system (the binding is extensible) is a class not known, placed by its locations with a
note (`_encounter_class`). Where the
locations name their level (`physicalType`, FHIR R4 LocationType: a stay listed at once as its
site, building, ward, room and bed) and a ward is among them, the wards (`wa`) are the units
and each ward stay's bed the `bd` entry's that overlaps it most; any other level (site,
building, wing, floor…) is never a unit; a location of no level, or a room or bed begun
outside every ward's stay, is a unit as above.
Periods are checked (FHIR R4 Period: "the end ... is after the start"): a location that ends
before it starts, two locations that start at the same instant, or a discharge before the last
location's start refuse the Encounter as `bad_period`, instead of a discharge before its
admission that would hold a bed for ever.

Observation → one vitals record, or one labs record for a laboratory code (the labs the screen
and the stay models read, as an ORU's). Accepted by LOINC code (schemas.interop.loinc), or by an
IEEE 11073 code (`urn:iso:std:iso:11073:10101`, as point-of-care device gateways code vital signs)
through its LOINC (schemas.interop.mdc), or by a local code the deployment mapped to a LOINC
(schemas.interop.code_map), with UCUM or IEEE 11073 units;
components are read only under a panel code (blood pressure, vital signs panel): the components
of any other code (a home blood pressure average's) are no bedside reading.
A vitals record is completed with what its values imply (schemas.interop.derived): the Glasgow
coma scale total from its three parts, components of a GCS total Observation (9269-2) sent
without its value, each a number, a LOINC answer code or an ordinalValue (as FHIR's own
`observation-example-glasgow` codes them), or Observations of their own in one Bundle
(`Part`, `_summed_parts`). No MAP is estimated: a pressure panel is one Observation of its
Bundle, and the measured MAP may be another.
A value must be a point in time: an effectivePeriod longer than an hour is refused, an
effectiveTiming (a schedule) too (`schedule_not_time`); a leap second is read as the last
millisecond of its minute (`_leap_second`). Values with
a dataAbsentReason are skipped. A value in a unit its code does not take, outside its field's
range or of a laboratory code inside a vital-signs panel is rejected alone (`Mapped.rejected`),
the others kept; with none
left, the Observation is refused. Of several LOINC codings the first one read decides (the
vital-signs profiles' code slices have no order); the US Core pulse oximetry profile's oxygen
flow and concentration components are read with its SpO2 (loinc.COMPONENTS_OF). A value with a
lower-bound comparator (`>`, `>=`: a result above the analyser's range) is read as its number,
as an ORU's (hl7v2.LOWER_BOUNDS), and an upper bound (`<`, `<=`) only of a lab whose low values
are the alarming ones (a platelet count `<10`: hl7v2.bound_refusal); any other would overstate
the value and is refused (`bad_value`); a modifierExtension, which a reader must
not ignore (FHIR R4 §2.1.0.6), refuses its resource or component (`unsupported_modifier`), and
one on an Encounter's location entry the Encounter (`_location_modifiers`).

The subject may be a reference or only a business identifier (`_subject`: references normalised,
contained and Bundle-internal Patients by their identifier, non-Patients refused). A resource
without an id is named by its business identifier, else (an Observation) by its content. The
facility is the ingest's own (`facility_id`).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import urllib.parse
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any, NamedTuple

from fhir.resources.R4B import fhirtypes, get_fhir_model_class
from pydantic import TypeAdapter, ValidationError

from schemas import topics
from schemas.interop import acvpu, demographics, derived, identity, mdc
from schemas.interop.code_map import EMPTY, CodeMap
from schemas.interop.hl7v2 import (
    LOWER_BOUNDS,
    OTHER_ID_TYPES,
    PATIENT_ID_TYPES,
    UPPER_BOUNDS,
    Mapped,
    Refused,
    Rejected,
    bound_refusal,
    printable,
    value_refusal,
)
from schemas.interop.loinc import (
    CODES,
    COMPONENTS_OF,
    LOINC_SYSTEMS_FHIR,
    PANELS,
    PULSE_OXIMETRY,
    RANKS,
    VITALS,
    UnitError,
    convert,
    disagree,
    takes,
)

BED_CLASSES = {"IMP", "ACUTE", "NONAC", "EMER", "OBSENC"}
# Encounter.class is a Coding whose binding to v3 ActEncounterCode is *extensible* (FHIR R4
# encounter.html, Encounter.class; terminologies.html#extensible: a code of another system may be
# sent where none of the value set fits). A code of the v3 ActCode system (its URL, STU3's URL,
# its OID; or no system where the code is one of ACT_ENCOUNTER_CODES) means itself, as it always
# did: one of BED_CLASSES occupies a bed, any other is refused `not_inpatient`. A code of any
# other system (HL7 v2 table 0004, a local one), one with no system that is no ActEncounterCode,
# or a display alone is a class not known: not read by its words, it is placed by its locations
# with a note, as the HL7 v2 gateway places an admission whatever PV1-2 says; the census's own
# check bounds what is counted (a location that is no configured unit is refused `unknown_unit`).
ACT_CODE_SYSTEMS = frozenset(
    {
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        "http://hl7.org/fhir/v3/ActCode",  # STU3's
        "urn:oid:2.16.840.1.113883.5.4",
    }
)

# The v3 ActEncounterCode value set (R4 v3-ActEncounterCode): a code sent with no system is read
# as one of these where it is one; any other code with no system is a class not known.
ACT_ENCOUNTER_CODES = frozenset(
    {"AMB", "EMER", "FLD", "HH", "IMP", "ACUTE", "NONAC", "OBSENC", "PRENC", "SS", "VR"}
)

# Encounter.location.physicalType (FHIR R4 LocationType): the ward is the census's unit, the bed
# its bed; the other levels of one stay (site, building, wing, level, room) are where it is.
PHYSICAL_TYPE_SYSTEM = "http://terminology.hl7.org/CodeSystem/location-physical-type"
WARD, BED, ROOM = "wa", "bd", "ro"
CARE_LEVELS = (ROOM, BED)  # a unit where begun outside every ward's stay (an emergency bay)
CHARTING_SKEW = timedelta(minutes=5)  # a bed entered this long before its ward is the ward's
CATEGORY_SYSTEM = "http://terminology.hl7.org/CodeSystem/observation-category"
# the category's system before R4 (DSTU2, STU3), which servers upgraded in place still send
CATEGORY_SYSTEMS = (CATEGORY_SYSTEM, "http://hl7.org/fhir/observation-category", None)
# Observation.bodySite or .method of a temperature taken on the skin (SNOMED CT 39937001 skin
# structure, or words): a skin or surface temperature runs degrees below the body's
SKIN = re.compile(r"\b(skin|cutaneous)\b", re.IGNORECASE)
# … unless it names a site read as the body's (a temporal artery or axillary thermometer touches
# the skin: "temporal artery (skin surface)", "axillary skin fold")
BODY_SITES = re.compile(r"tempor|axill|forehead|oral|rectal|tympan|\bear\b|core", re.IGNORECASE)
SKIN_SNOMED = {"39937001", "181469002"}  # skin structure, entire skin
SNOMED_SYSTEM = "http://snomed.info/sct"
USABLE_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
POINT_IN_TIME = timedelta(hours=1)  # the longest effectivePeriod read as one measurement
Tokenise = Callable[[str, str], str]


class UnsupportedModifier(ValueError):
    """A component's modifierExtension, which no reader here understands."""


class Context(NamedTuple):
    """A Bundle entry of a kind not ingested that the bundle's Encounters and Observations refer
    to (the Patient a subject names, the Location of a stay) or that refers to them (the
    DiagnosticReport grouping lab results, a Provenance, a message's MessageHeader): it is read
    for them, so it is neither published nor dead-lettered; so is a search's own outcome (an
    OperationOutcome entry of `search.mode` outcome in a searchset: `_search_outcome`). An
    entry related to none of them is still refused (`unsupported_resource`): a feed of Patients
    sent here by mistake is seen."""

    reason: str


INGESTED = ("Encounter", "Observation")


class Part(NamedTuple):
    """An Observation of one Glasgow coma scale part (schemas.interop.derived.PARTS), as EHR
    FHIR APIs send each flowsheet row: summed with the other two parts of the same patient and
    time in its Bundle (`_summed_parts`), never published alone."""

    code: str
    score: int | None  # None: charted without a score (a verbal response through a tube)
    record: dict[str, Any]  # the vitals record it would be part of, without a value
    status: str  # Observation.status: a correction replaces the part it corrects


class Outcome(NamedTuple):
    label: str  # "Observation/bp1", or "Bundle/b#entry3:Observation/bp1"
    # a Part only between a Bundle's entries and their summing: map_json returns none
    result: Mapped | Refused | Context | Part
    resource: Any  # the JSON of this resource or entry alone (what a dead letter keeps)


def _references(node: Any) -> set[str]:
    """Every `reference` in a resource's JSON, without a version (`/_history/n`)."""
    if isinstance(node, list):
        return set().union(*map(_references, node)) if node else set()
    if not isinstance(node, dict):
        return set()
    found = (
        {node["reference"].split("/_history/")[0]}
        if isinstance(node.get("reference"), str)
        else set()
    )
    return found.union(*(_references(v) for k, v in node.items() if k != "reference"))


def _names(entry: dict[str, Any]) -> set[str]:
    """What a reference to a Bundle entry may say: its fullUrl, or `Type/id`."""
    res = entry["resource"]
    names = {str(entry["fullUrl"])} if entry.get("fullUrl") else set()
    if res.get("id"):
        names.add(f"{res.get('resourceType')}/{res['id']}")
    return names


def _refers(references: set[str], names: set[str]) -> bool:
    """Whether one of `references` names an entry called `names` (an absolute reference to
    `Type/id` on a server counts: `https://ehr/fhir/Patient/7`)."""
    return any(r in names or any(r.endswith("/" + n) for n in names) for r in references)


def _context(entries: list[Any], *, searchset: bool = False) -> dict[int, str]:
    """{entry index: why it is context} for the entries of kinds not ingested that relate to
    an ingested entry of the same Bundle, and, in a `searchset` Bundle (the only one whose
    entries have a search mode, FHIR R4 bdl-2), for a search's own outcome (see `Context`)."""
    with_resource = {
        i: e
        for i, e in enumerate(entries)
        if isinstance(e, dict) and isinstance(e.get("resource"), dict)
    }
    outcomes = {
        i: why for i, e in with_resource.items() if searchset and (why := _search_outcome(e))
    }
    ingested = {
        i: e for i, e in with_resource.items() if e["resource"].get("resourceType") in INGESTED
    }
    if not ingested:
        return outcomes
    their_refs = set().union(*(_references(e["resource"]) for e in ingested.values()))
    their_names = set().union(*(_names(e) for e in ingested.values()))
    out = {}
    for i, e in ingested.items():
        members = _references(e["resource"].get("hasMember"))
        carries = any(k.startswith(("value", "component")) for k in e["resource"])
        if members and not carries and all(_refers({m}, their_names) for m in members):
            # a panel (vital signs, blood pressure) whose members are entries of the bundle:
            # they carry its values and are read; it adds none (observation.html#obsgrouping)
            out[i] = "Observation: a panel of the bundle's Observations (context)"
    out.update(outcomes)
    for i, e in with_resource.items():
        if i in ingested or i in outcomes:
            continue
        kind = e["resource"].get("resourceType")
        if _refers(their_refs, _names(e)):
            out[i] = f"{kind}: referred to by the bundle's Encounters or Observations (context)"
        elif _refers(_references(e["resource"]), their_names):
            out[i] = f"{kind}: refers to the bundle's Encounters or Observations (context)"
    return out


def _search_outcome(entry: dict[str, Any]) -> str | None:
    """Why a Bundle entry is its search's own outcome, where it is: an OperationOutcome with
    `search.mode` outcome ("additional information about the processing of a search", FHIR R4
    Bundle.entry.search.mode; the specification's bundle-search-warning, which servers add to a
    page of results or to an empty one) is about the search, not a resource sent to be ingested.
    Its issues' severities and codes are said where each is a code (`_CODE`), else `?`: never
    their text, which may name the patient, nor a server's text put in their place."""
    search, resource = entry.get("search"), entry["resource"]
    if not isinstance(search, dict) or search.get("mode") != "outcome":
        return None
    if resource.get("resourceType") != "OperationOutcome":
        return None
    issues = resource.get("issue")
    said = sorted(
        {
            f"{_code_or_not(i.get('severity'))} {_code_or_not(i.get('code'))}"
            for i in (issues if isinstance(issues, list) else [])
            if isinstance(i, dict)
        }
    )
    issued = ", ".join(said)[:200] or "no issue"
    return f"OperationOutcome: the search's own outcome ({issued}; context)"


_CODE = re.compile(r"[a-z-]{1,40}")  # an R4 IssueSeverity or IssueType code's form


def _code_or_not(value: Any) -> str:
    """`value` where it has the form of an issue's severity or code, else `?`."""
    return value if isinstance(value, str) and _CODE.fullmatch(value) else "?"


def _version_of(entry: Any) -> str | None:
    """`Type/id` of a history Bundle's entry: its resource's, else (a deletion, which carries
    none) its request's url or its fullUrl."""
    if not isinstance(entry, dict):
        return None
    sub = entry.get("resource")
    if isinstance(sub, dict):
        return f"{sub.get('resourceType')}/{sub['id']}" if sub.get("id") else None
    request = entry.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    match = _RESOURCE_URL.search(str(url or entry.get("fullUrl") or ""))
    return f"{match[1]}/{match[2]}" if match else None


def _requested(entry: dict[str, Any]) -> str | None:
    """`Type/id` that a Bundle entry's `request.url` names, or None."""
    request = entry.get("request")
    url = request.get("url") if isinstance(request, dict) else None
    match = _RESOURCE_URL.search(url) if isinstance(url, str) else None
    return f"{match[1]}/{match[2]}" if match else None


_RESOURCE_URL = re.compile(
    r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/?]+)?/?$"
)


def _superseded(entries: list[Any]) -> dict[int, Refused]:
    """{entry index: refusal} for the older versions of each Observation in a history Bundle
    (newest first, http.html#history). An Observation is what its newest version says: a value
    that a later version corrects, marks `entered-in-error` ("should never have existed",
    observation.html) or deletes is not published, nor kept as a record of its own beside the
    newest. An Encounter's versions are its moves and are all read."""
    newest: dict[str, int] = {}
    out: dict[int, Refused] = {}
    for i, entry in enumerate(entries):
        name = _version_of(entry)
        if name is None or not name.startswith("Observation/"):
            continue
        if name in newest:
            why = f"a newer version in this history Bundle (entry {newest[name]}) replaces it"
            out[i] = Refused("superseded", why)
        else:
            newest[name] = i
    return out


_R4_INSTANT = TypeAdapter(fhirtypes.InstantType)


def _is_instant(value: Any) -> bool:
    """Whether `value` is written as an R4 instant (a time to the second, its zone given), by
    fhir.resources' own type."""
    if not isinstance(value, str):
        return False
    try:
        _R4_INSTANT.validate_python(value)
    except ValidationError:
        return False
    return True


def _deletes(entry: Any) -> bool:
    """Whether a Bundle entry is a deletion (`request.method` DELETE, FHIR R4 http.html#delete:
    in a transaction, a batch or a history), which carries no value to read, whether or not the
    sender put the resource in it."""
    request = entry.get("request") if isinstance(entry, dict) else None
    return isinstance(request, dict) and str(request.get("method", "")).upper() == "DELETE"


def _deleted_encounter(entries: list[Any], i: int) -> dict[str, Any] | None:
    """A history Bundle's deletion of an Encounter (entry `i`: a DELETE request, with no resource
    or one not read, `_deletes`; FHIR R4 http.html#history) as its latest earlier version in the
    Bundle marked `entered-in-error` when the server deleted it (`response.lastModified`): the
    stay it placed is taken back as by that status (`_voided`; a purge of a stay long over
    changes nothing there: the census refuses it `nothing_to_cancel`). With no earlier version
    in the Bundle, the version the entry carries, where it carries the one its request deletes
    (IBM/LinuxForHealth FHIR did, LinuxForHealth/FHIR#2026: a `_since` window may hold the
    deletion alone). None (refused `no_resource`, or `retracted` where it carries a resource)
    where the entry is no such deletion, has no instant, carries a resource other than the one
    its request names, no version of the Encounter is in the Bundle (who it placed is not
    known) or that version's class holds no bed, or a newer version follows it in the Bundle
    (the Encounter created again: its events keep their ids, so a void would leave the patient
    in no bed; the deletion is not read, as before)."""
    entry = entries[i]
    response = entry.get("response") if isinstance(entry, dict) else None
    name = _version_of(entry)
    carried = entry.get("resource") if isinstance(entry, dict) else None
    if (
        not _deletes(entry)
        or not isinstance(response, dict)
        or not response.get("lastModified")
        or name is None
        or not name.startswith("Encounter/")
        or (carried is not None and _requested(entry) != name)
    ):
        return None
    if any(  # newest first: a version of it after the deletion (another deletion is none)
        isinstance(newer, dict) and isinstance(newer.get("resource"), dict)
        and _version_of(newer) == name
        for newer in entries[:i]
    ):  # fmt: skip
        return None
    if not _is_instant(response["lastModified"]):
        return None
    # newest first: the next one of the name is the latest; else the one the deletion carries
    for older in [*entries[i + 1 :], entry]:
        sub = older.get("resource") if isinstance(older, dict) else None
        if isinstance(sub, dict) and _version_of(older) == name:
            if not _holds_bed(sub.get("class")):
                return None
            given = sub.get("meta")
            meta = {
                **(given if isinstance(given, dict) else {}),
                "lastUpdated": response["lastModified"],
            }
            return {**sub, "status": "entered-in-error", "meta": meta}
    return None


def _holds_bed(cls: Any) -> bool:
    """Whether an Encounter's `class` (its JSON) is one that occupies a bed."""
    if not isinstance(cls, dict):
        return False
    return _encounter_class(cls.get("system"), cls.get("code"), cls.get("display")).in_bed


# Resources about a person, whose id some servers make of a record number: labelled without it
# (labels are printed and logged)
_PERSONS = frozenset({"Patient", "Person", "RelatedPerson"})


def _label(resource: dict[str, Any]) -> str:
    """`Type/id` of a resource, for what ingesting prints; a person's without the id."""
    kind = resource.get("resourceType")
    return f"{kind}/…" if kind in _PERSONS else f"{kind}/{resource.get('id', '?')}"


def map_json(
    data: Any,
    tokenise: Tokenise,
    *,
    source: str,
    facility_id: str,
    bundle: dict[str, Any] | None = None,
    codes: CodeMap = EMPTY,
    alone: bool = True,
    line: str = "",
) -> list[Outcome]:
    """An Outcome for a resource or for each entry of a Bundle (a history Bundle's oldest
    first), in the order to publish them; an entry's failure is its own.
    `bundle`: the enclosing Bundle's resources by `fullUrl`, against which a `urn:uuid:`
    reference resolves (FHIR R4 Bundle §2.36.4.1). `codes`: the deployment's own observation
    codes and the LOINC each stands for (schemas.interop.code_map). `alone` False: the resource
    is read with others (an .ndjson export's lines), and a GCS part Observation's Outcome (a
    Bundle's too) is its `Part`, for `summed_together` to decide. `line`: where the resource
    is in its file (`line3`), which starts every label."""
    kind = data.get("resourceType") if isinstance(data, dict) else None
    label = _label(data) if isinstance(data, dict) else "?"
    label = f"{line}:{label}" if line else label
    if kind == "Bundle":
        out: list[Outcome] = []
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            return [Outcome(label, Refused("invalid_fhir", "Bundle.entry is not a list"), data)]
        history = data.get("type") == "history"
        inside = _full_urls(entries, history=history)
        context = _context(entries, searchset=data.get("type") == "searchset")
        superseded = _superseded(entries) if history else {}
        # a history Bundle lists the newest version first (FHIR R4 http.html#history: "sorted
        # with oldest versions last"): its versions are applied oldest first
        order = range(len(entries))[:: -1 if history else 1]
        for i in order:
            entry = entries[i]
            sub = entry.get("resource") if isinstance(entry, dict) else None
            if i in superseded:
                out.append(Outcome(f"{label}#entry{i}", superseded[i], entry))
            elif (
                (sub is None or _deletes(entry))
                and history
                and (deleted := _deleted_encounter(entries, i))
            ):
                for o in map_json(
                    deleted, tokenise, source=source, facility_id=facility_id, bundle=inside
                ):  # a dead letter keeps the entry received, not the version made of it
                    out.append(o._replace(label=f"{label}#entry{i}:{o.label}", resource=entry))
            elif sub is None:
                why = "the entry has no resource (a request or response only)"
                out.append(Outcome(f"{label}#entry{i}", Refused("no_resource", why), entry))
            elif (
                _deletes(entry) and isinstance(sub, dict) and sub.get("resourceType") in INGESTED
            ):  # as an ORU's OBX-11 D; a kind not ingested is read as any other (context)
                why = (
                    "the entry deletes it (request.method DELETE): the resource it carries is "
                    "not read, and nothing published of it before is taken back"
                )
                label_at = f"{label}#entry{i}:{_label(sub)}"
                out.append(Outcome(label_at, Refused("retracted", why), entry))
            elif i in context:
                name = _label(sub)
                out.append(Outcome(f"{label}#entry{i}:{name}", Context(context[i]), sub))
            else:
                for o in map_json(
                    sub,
                    tokenise,
                    source=source,
                    facility_id=facility_id,
                    bundle=inside,
                    codes=codes,
                ):
                    out.append(o._replace(label=f"{label}#entry{i}:{o.label}"))
        if alone and any(isinstance(o.result, Part) for o in out):
            out = _summed_parts(out, _sent_totals(entries, tokenise, inside, codes))
        return out
    if not isinstance(data, dict):
        not_one = Refused("unsupported_resource", "not a FHIR resource (a JSON object)")
        return [Outcome(label, not_one, data)]
    try:
        result = map_resource(
            data, tokenise, source=source, facility_id=facility_id, bundle=bundle or {},
            codes=codes,
        )  # fmt: skip
    except Exception as exc:  # a resource no check foresaw: refused alone, never the bundle
        result = Refused("unmappable", f"{kind}: {type(exc).__name__} while mapping")
    if isinstance(result, Part) and bundle is None and alone:  # no other part to sum it with
        return _summed_parts([Outcome(label, result, data)])
    return [Outcome(label, result, data)]


def summed_together(
    outcomes: list[Outcome], resources: list[Any], tokenise: Tokenise, codes: CodeMap = EMPTY
) -> list[Outcome]:
    """The Outcomes of resources read together (`resources`: the JSON of each line of an
    .ndjson export, which `map_json(alone=False)` mapped to `outcomes`), in the same order, with
    their GCS part Observations decided together as a Bundle's entries are: a Bulk Data export
    writes each flowsheet row as a line of its own. A line that is a Bundle counts with its
    entries (its references resolved against its own `fullUrl`s).
    Used by tests only, as what reading an export whole decides: wardflow-fhir-ingest reads an
    export a line at a time and holds less (jobs.feeds.fhir_ingest._decide: `gcs_totals`,
    `unread_totals_sent` and `summed_beside`), deciding the parts as this does."""
    if not any(isinstance(o.result, Part) for o in outcomes):
        return outcomes
    sent = [sent_totals(r, tokenise, codes) for r in resources]
    return _summed_parts(outcomes, set().union(*sent))


def sent_totals(
    resource: Any, tokenise: Tokenise, codes: CodeMap = EMPTY
) -> set[tuple[str, datetime]]:
    """(patient token, time) of each GCS total that one resource read with others sends (an
    .ndjson export's line: a resource, or a Bundle with its entries), as `_sent_totals`: what
    `summed_together` keeps of it."""
    entries = resource.get("entry") if isinstance(resource, dict) else None
    if isinstance(resource, dict) and resource.get("resourceType") == "Bundle":
        if not isinstance(entries, list):
            return set()
        bundle = _full_urls(entries, history=resource.get("type") == "history")
        return _sent_totals(entries, tokenise, bundle, codes)
    return _sent_totals([{"resource": resource}], tokenise, {}, codes)


def unread_totals_sent(
    resource: Any, outcomes: list[Outcome], tokenise: Tokenise, codes: CodeMap = EMPTY
) -> set[tuple[str, datetime]]:
    """What deciding GCS parts reads of the totals that one resource read with others sends
    (its `outcomes`: map_json's, alone=False): its `sent_totals`, but none where it is no
    Bundle and mapped a GCS total. Such a resource sends no total but that one (its patient and
    time resolved as its record's), which `gcs_totals` holds, and a sent total is read only
    where none was mapped (`_summed_parts`): so an export of GCS totals is validated once, by
    its mapping, not again here."""
    bundle = isinstance(resource, dict) and resource.get("resourceType") == "Bundle"
    if not bundle and any(gcs_totals(o) for o in outcomes):
        return set()
    return sent_totals(resource, tokenise, codes)


def gcs_totals(outcome: Outcome) -> dict[tuple[str, datetime], int]:
    """(patient token, event time) -> GCS total of the vitals record with a GCS total that an
    Outcome maps, if any: all that deciding the GCS parts beside it reads of it (`_summed_parts`),
    so that a reader of an export line by line holds no more of it."""
    result = outcome.result
    if not isinstance(result, Mapped):
        return {}
    return {
        (rec["patient_token"], rec["event_time"]): rec[derived.GCS_TOTAL]
        for topic, rec in result.records
        if topic == VITALS and rec.get(derived.GCS_TOTAL) is not None
    }


def summed_beside(
    parts: list[Outcome],
    totals: dict[tuple[str, datetime], int],
    sent: set[tuple[str, datetime]],
) -> list[Outcome]:
    """`parts` (the GCS part Outcomes of resources read together, in their order) decided
    together beside the totals mapped (`totals`: the `gcs_totals` of all those resources'
    Outcomes, joined in order) and sent (`sent`: the union of the resources'
    `unread_totals_sent`), as `summed_together` decides them among all the Outcomes."""
    return _summed_parts(parts, sent, totals)


def _mdc_coded(code: str, display: Any) -> tuple[str, int] | None:
    """The LOINC code and rank an IEEE 11073 coding is read as: a vital sign's term (by code,
    else by its display as a mnemonic), or a blood pressure panel; None for neither."""
    found = mdc.term(code, display if isinstance(display, str) else "")
    if found is not None:
        return found[1].loinc, found[1].rank
    return (mdc.PANELS[code], 0) if code in mdc.PANELS else None


def _full_urls(entries: list[Any], *, history: bool) -> dict[str, Any]:
    """A Bundle's resources by their entries' `fullUrl`. A fullUrl listed more than once (its
    versions, FHIR R4 bdl-7) is its newest: the greatest `meta.versionId` where both are whole
    numbers, else the latest `meta.lastUpdated` where both give one, else the first in a history
    Bundle (which lists the newest first) and the last in any other. So an Encounter's Patient is
    as the server holds it now (a birth date corrected since is the corrected one). A deletion
    (`_deletes`, whatever it carries) is no resource to refer to; in a history Bundle, nor is any
    version of a resource whose newest entry is its deletion (a reference to a deleted Patient
    resolves to nothing in the Bundle)."""
    out: dict[str, Any] = {}
    seen: set[str | None] = set()  # history: resources whose newest entry was no deletion
    deleted: set[str] = set()
    for e in entries:
        if not isinstance(e, dict):
            continue
        name = _version_of(e)
        if _deletes(e):
            if history and name is not None and name not in seen:
                deleted.add(name)
            continue
        seen.add(name)
        if e.get("fullUrl") and isinstance(e.get("resource"), dict) and name not in deleted:
            url, resource = str(e["fullUrl"]), e["resource"]
            if url not in out or _newer(resource, out[url], later_wins=not history):
                out[url] = resource
    return out


def _newer(candidate: dict[str, Any], held: dict[str, Any], *, later_wins: bool) -> bool:
    """Whether `candidate`, listed after `held` under one fullUrl, is its newer version."""
    versions = [_meta(r, "versionId") for r in (candidate, held)]
    if all(v is not None and v.isascii() and v.isdecimal() for v in versions):
        return int(versions[0]) > int(versions[1])  # type: ignore[arg-type]
    updated = [_updated(_meta(r, "lastUpdated")) for r in (candidate, held)]
    if updated[0] is not None and updated[1] is not None:
        return updated[0] > updated[1]
    return later_wins


def _meta(resource: dict[str, Any], key: str) -> str | None:
    meta = resource.get("meta")
    value = meta.get(key) if isinstance(meta, dict) else None
    return value.strip() if isinstance(value, str) else None


def _updated(text: str | None) -> datetime | None:
    """`meta.lastUpdated` (an instant: always with a zone), or None."""
    if not text:
        return None
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo is not None else None


def _may_send_total(data: dict[str, Any], codes: CodeMap) -> bool:
    """Whether an Observation's JSON has a coding, of its own or of a component, that may
    name the GCS total (9269-2, a local code mapped to it, an IEEE 11073 term `_coded` reads as
    it): those alone are validated again by `_sent_totals`, not a whole export's vital signs."""
    concepts = [data.get("code")]
    components = data.get("component")
    if isinstance(components, list):
        concepts += [c.get("code") for c in components if isinstance(c, dict)]
    for concept in concepts:
        codings = concept.get("coding") if isinstance(concept, dict) else None
        for c in codings if isinstance(codings, list) else ():
            if not isinstance(c, dict):
                continue
            system, code = c.get("system"), c.get("code")
            if not isinstance(code, str):
                return True  # left to the validation (which refuses a code not a string)
            if code.strip() == derived.GCS_TOTAL_LOINC:
                return True
            read = _mdc_coded(code, c.get("display")) if system == mdc.SYSTEM_FHIR else None
            if read is not None and read[0] == derived.GCS_TOTAL_LOINC:
                return True
            if isinstance(system, str | None) and codes.loinc(system, code) == (
                derived.GCS_TOTAL_LOINC
            ):
                return True
    return False


def _sent_totals(
    entries: list[Any], tokenise: Tokenise, bundle: dict[str, Any], codes: CodeMap
) -> set[tuple[str, datetime]]:
    """(patient token, time) of every Observation of a Bundle that sends a GCS total (9269-2,
    as its code, a local code mapped to it, or a component, with a value or an absent one),
    read or not, resolved as
    `_observation` resolves them: the parts of that patient and time are never summed into
    another total. An entry that does not validate sends none (it is refused on its own)."""
    out: set[tuple[str, datetime]] = set()
    for entry in entries:
        data = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(data, dict) or data.get("resourceType") != "Observation":
            continue
        if _deletes(entry):  # a deletion sends no value (`map_json`)
            continue
        if not _may_send_total(data, codes):
            continue
        try:
            obs = get_fhir_model_class("Observation").model_validate(data)
            # a total with a value or an absence of one, or with its parts as components (a
            # grouper of the parts' Observations, `hasMember`, sends none); a component likewise
            components = list(zip(obs.component or [], data.get("component") or [], strict=True))
            with_parts = any(_coded(c.code, codes)[0] in derived.PARTS for c, _ in components)
            given = [(obs.code, data, with_parts)]
            given += [(c.code, raw, False) for c, raw in components]
            if not any(
                _coded(concept, codes)[0] == derived.GCS_TOTAL_LOINC
                and (parts or any(k.startswith("value") or k == "dataAbsentReason" for k in raw))
                for concept, raw, parts in given
            ):
                continue
            patient = _subject(obs.subject, data, bundle, tokenise, "Observation")
            at = _instant(_effective(obs, False), "effective time")
        except Exception:  # refused on its own: it sends nothing here
            continue
        if isinstance(patient, str) and isinstance(at, datetime):
            out.add((patient, at))
    return out


_REPLACES = {"corrected": 2, "amended": 2, "final": 1, "preliminary": 0}


def _summed_parts(
    outcomes: list[Outcome],
    sent_totals: set[tuple[str, datetime]] | None = None,
    read_totals: dict[tuple[str, datetime], int] | None = None,
) -> list[Outcome]:
    """`outcomes` with each GCS part Observation (`Part`) decided with the parts of the same
    patient and time: the three, each with a score, make one vitals record with their total (on
    the first part's outcome, named by all three; the others are read into it: mapped, no
    record of their own); beside a GCS total the Bundle sends for that patient and time
    (read: `outcomes`' records, or `read_totals` where given; sent: `sent_totals`), they are
    read where they agree or make no total, dead-lettered (`conflicting_value`) where they
    contradict it, and read but not summed where it was not read; otherwise each is refused
    `no_value`, saying why no total was made.
    Of two values of one part (a score, or charting of none), a correction (or the final after
    a preliminary) replaces the other; else the first is kept and the other dead-lettered
    (`conflicting_value`)."""
    totals = (
        {key: total for o in outcomes for key, total in gcs_totals(o).items()}
        if read_totals is None
        else read_totals
    )
    groups: dict[tuple[str, datetime], list[int]] = {}
    for i, o in enumerate(outcomes):
        if isinstance(o.result, Part):
            key = (o.result.record["patient_token"], o.result.record["event_time"])
            groups.setdefault(key, []).append(i)
    out = list(outcomes)
    for key, members in groups.items():
        kept: dict[str, int] = {}  # part code → the member whose value is kept
        for i in members:
            part = outcomes[i].result
            assert isinstance(part, Part)
            name = derived.PARTS[part.code].name
            if part.code not in kept:
                kept[part.code] = i
                continue
            old = kept[part.code]
            first = outcomes[old].result
            assert isinstance(first, Part)
            if first.score == part.score:
                continue
            if _REPLACES.get(part.status, 1) > _REPLACES.get(first.status, 1):
                kept[part.code] = i
                why = f"GCS {name}: replaced by {out[i].label} ({part.status})"
                out[old] = out[old]._replace(result=Mapped(notes=[why]))
            else:
                shown = [("no score" if p.score is None else p.score) for p in (part, first)]
                why = f"GCS {name} {shown[0]} beside {shown[1]} at the same time, kept"
                out[i] = out[i]._replace(result=Refused("conflicting_value", why))
        chosen = [p for i in kept.values() if isinstance(p := outcomes[i].result, Part)]
        scores = {p.code: p.score for p in chosen if p.score is not None}
        notes = [
            f"{p.code} (GCS {derived.PARTS[p.code].name}: no score)"
            for p in chosen
            if p.score is None
        ]
        read_total = {derived.GCS_TOTAL: totals[key]} if key in totals else {}
        disagree = derived.disagreeing(read_total, scores)
        total = derived.gcs_total(scores)
        summed_into = out[min(kept.values())].label if kept else ""
        for i in members:
            part = out[i].result
            if not isinstance(part, Part):
                continue
            name = derived.PARTS[part.code].name
            result: Mapped | Refused
            if disagree is not None:
                result = Refused("conflicting_value", disagree)
            elif read_total:
                result = Mapped(notes=[f"GCS {name}: read beside the total sent"])
            elif key in (sent_totals or ()):
                result = Mapped(notes=[f"GCS {name}: beside a total sent and not read"])
            elif total is not None and out[i].label == summed_into:
                names = sorted(p.record["observation_id"] for p in chosen)
                digest = hashlib.sha256("|".join(names).encode()).hexdigest()[:16]
                times = [p.record["recorded_time"] for p in chosen if p.record["recorded_time"]]
                record = {
                    **part.record,
                    "observation_id": f"fhir:gcs:{digest}",
                    "recorded_time": max(times) if times else None,
                    derived.GCS_TOTAL: total,
                }
                result = Mapped([(VITALS, record)])
            elif total is not None:
                result = Mapped(notes=[f"GCS {name}: summed into {summed_into}"])
            else:
                unsummed = derived.unsummed(scores)
                why = "; ".join([*notes, *([unsummed] if unsummed else [])])
                result = Refused(
                    "no_value",
                    f"{why or 'no GCS total'} (a Glasgow coma scale part is read with the other "
                    "two of its patient and time in one Bundle or .ndjson file, or as a 9269-2 "
                    "component)",
                )
            out[i] = out[i]._replace(result=result)
    return out


def map_resource(
    data: dict[str, Any],
    tokenise: Tokenise,
    *,
    source: str,
    facility_id: str,
    bundle: dict[str, Any] | None = None,
    codes: CodeMap = EMPTY,
) -> Mapped | Refused | Part:
    kind = data.get("resourceType")
    if kind not in INGESTED:
        return Refused(
            "unsupported_resource", f"{kind} is not ingested (Encounter and Observation are)"
        )
    modifiers = _modifiers(data)
    if kind == "Encounter":  # and its location history's, which the census is moved by
        modifiers += _location_modifiers(data)
    if modifiers:  # FHIR R4 §2.1.0.6: a modifier not understood must not be ignored
        return Refused("unsupported_modifier", f"{kind} has modifierExtension {modifiers}"[:500])
    if kind == "Encounter":
        data = _with_locations(data, bundle or {})
    try:
        resource = get_fhir_model_class(kind).model_validate(data)
    except ValidationError as exc:  # where and what, never the input values (they may be PHI)
        where = "; ".join(
            f"{'.'.join(map(str, e['loc']))}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        return Refused("invalid_fhir", f"{kind} does not validate: {where}"[:500])
    except Exception as exc:  # fhir_core's own errors
        return Refused("invalid_fhir", f"{kind} does not validate: {type(exc).__name__}")

    def subject() -> str | Refused:
        return _subject(resource.subject, data, bundle or {}, tokenise, kind)

    if kind == "Encounter":
        mapped = _encounter(resource, subject, tokenise, source, facility_id)
        patient = _patient_resource(resource.subject, data, bundle or {})
        return _with_demographics(mapped, data, patient)
    if (another := _of_another(resource, data, bundle or {}, tokenise)) is not None:
        return another
    return _observation(resource, data, subject, tokenise, source, facility_id, codes)


_LOCATION_ID = re.compile(r"(?:^|/)Location/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]+)?$")


def _with_locations(data: dict[str, Any], bundle: dict[str, Any]) -> dict[str, Any]:
    """The Encounter with each location named and typed from the Location it refers to, where
    the sender left that out (FHIR R4 Encounter.location.physicalType is "de-normalized from the
    Location resource"): a contained one (`#id`), a Bundle entry's (`urn:uuid:…`, or a literal
    reference to a Location in the Bundle, a search's `_include`). The Encounter's own display
    and physicalType come first. A literal reference, relative, absolute or versioned, is
    written `Location/<id>`, the unit a location without a display is counted as, whatever the
    server's base, the Location's version or whether the Location came with it (a name taken
    from a Location sent with one version and not with the next would move the patient); a
    contained or `urn:uuid:` Location, which names nothing outside its message, by its `name`."""
    locations = data.get("location")
    if not isinstance(locations, list):
        return data
    out = []
    for entry in locations:
        ref = entry.get("location") if isinstance(entry, dict) else None
        reference = ref.get("reference") if isinstance(ref, dict) else None
        if not isinstance(reference, str) or not isinstance(ref, dict):
            out.append(entry)
            continue
        found = _location_resource(reference, data, bundle)
        named = dict(ref)
        literal = None if reference.startswith(("#", "urn:")) else _LOCATION_ID.search(reference)
        if literal:
            named["reference"] = f"Location/{literal.group(1)}"
        if (
            found is not None
            and literal is None
            and not ref.get("display")
            and isinstance(found.get("name"), str)
        ):
            named["display"] = found["name"]
        entry = {**entry, "location": named}
        if found is not None and "physicalType" not in entry and "physicalType" in found:
            entry["physicalType"] = found["physicalType"]
        out.append(entry)
    return {**data, "location": out}


def _location_resource(
    reference: str, data: dict[str, Any], bundle: dict[str, Any]
) -> dict[str, Any] | None:
    """The Location a reference names inside the resource or its Bundle, or None."""
    found: Any = None
    if reference.startswith(("#", "urn:")):
        found = _inside(reference, data, bundle)
    elif (literal := _LOCATION_ID.search(reference)) is not None:
        same = [
            r for r in bundle.values()
            if isinstance(r, dict) and r.get("resourceType") == "Location"
            and r.get("id") == literal.group(1)
        ]  # fmt: skip
        found = same[0] if len(same) == 1 else None
    return found if isinstance(found, dict) and found.get("resourceType") == "Location" else None


def _inside(reference: str, data: dict[str, Any], bundle: dict[str, Any]) -> Any:
    """What a reference that names nothing outside its message resolves to: a contained
    resource (`#id`) or a Bundle entry's (`urn:uuid:…`, by fullUrl); None for neither."""
    if reference.startswith("#"):
        return next(
            (c for c in data.get("contained") or []
             if isinstance(c, dict) and f"#{c.get('id')}" == reference),
            None,
        )  # fmt: skip
    return bundle.get(reference)


def _patient_resource(ref: Any, data: dict[str, Any], bundle: dict[str, Any]) -> Any:
    """The Patient an Encounter's subject names where the message holds it: a contained one, a
    Bundle entry's by `urn:uuid:` or by its very fullUrl, by a literal `Patient/<id>` matching
    one entry's fullUrl (`…/Patient/<id>`; two servers' in one Bundle: neither, which one is
    meant is not read), or by the subject's business identifier (its `identifier`, or a
    conditional `Patient?identifier=system|value`) matching one Patient's; None where it holds
    none (an Encounter sent alone names its patient without their birth date or gender)."""
    reference = str(ref.reference) if ref is not None and ref.reference else ""
    key: tuple[Any, Any] | None = None
    if ref is not None and ref.identifier is not None and ref.identifier.value:
        key = (ref.identifier.system, ref.identifier.value)
    if reference.startswith("Patient?"):  # a conditional reference: identifier=system|value
        params = [q.partition("=") for q in reference.partition("?")[2].split("&") if q]
        if len(params) == 1 and params[0][0] == "identifier":
            system, bar, value = urllib.parse.unquote(params[0][2]).rpartition("|")
            key = (system if bar else None, value) if value else None
        reference = ""
    if reference.startswith(("#", "urn:")):
        found = _inside(reference, data, bundle)
    elif reference:
        found = bundle.get(reference.split("/_history")[0])  # the very fullUrl
        if found is None:
            tail = "/".join(reference.split("/_history")[0].rstrip("/").split("/")[-2:])
            matches = [r for url, r in bundle.items() if url == tail or url.endswith("/" + tail)]
            found = matches[0] if len(matches) == 1 else None
    elif key is not None:
        matches = [
            r
            for r in bundle.values()
            if isinstance(r, dict)
            and r.get("resourceType") == "Patient"
            and any(
                isinstance(i, dict) and (i.get("system"), i.get("value")) == key
                for i in r.get("identifier") or []
            )
        ]
        found = matches[0] if len(matches) == 1 else None
    else:
        found = None
    if not isinstance(found, dict) or found.get("resourceType") != "Patient":
        return None
    return found


def _with_demographics(
    mapped: Mapped | Refused, enc: dict[str, Any], patient: Any
) -> Mapped | Refused:
    """Each ADT record with the patient's age on the day the Encounter began (`period.start` as
    written, else its first location's start, else the first record's day) from `birthDate`
    (none for a finished Encounter: a bulk export's visit of years ago is not the patient's age
    now, and the feature store keeps the latest received), and sex (`gender`); unknown without
    the Patient: schemas/interop/demographics.py. Neither refuses the Encounter."""
    if isinstance(mapped, Refused):
        return mapped
    patient = patient or {}
    birth = patient.get("birthDate")
    female = demographics.female_fhir(patient.get("gender"))
    records = mapped.records
    period = enc.get("period")
    start = period.get("start") if isinstance(period, dict) else None
    day = demographics.day_of(start) if isinstance(start, str) else None
    if day is None:  # the first location's start, as written (not its UTC day)
        starts = [
            loc["period"]["start"]
            for loc in enc.get("location") or []
            if isinstance(loc, dict)
            and isinstance(loc.get("period"), dict)
            and isinstance(loc["period"].get("start"), str)
        ]
        days = [d for d in map(demographics.day_of, starts) if d is not None]
        day = min(days) if days else None
    if day is None and records:
        day = min(r["event_time"] for _, r in records).date()
    if enc.get("status") == "finished":  # a visit that is over: its start's age is not now's
        birth = None
    age = demographics.age_years(birth, day) if isinstance(birth, str) and day else None
    out = [(topic, r | {"age_years": age, "female": female}) for topic, r in records]
    return replace(mapped, records=out)


def _modifiers(data: dict[str, Any]) -> list[str]:
    """The URLs of a resource's own modifierExtensions (none is understood here)."""
    found = data.get("modifierExtension") or []
    if not isinstance(found, list):
        return ["?"]
    return [str(m.get("url", "?")) if isinstance(m, dict) else "?" for m in found]


def _location_modifiers(data: dict[str, Any]) -> list[str]:
    """The modifierExtensions of an Encounter's location entries, as `location <n>: <url>`.
    Each entry is a BackboneElement, whose modifierExtension "modifies the understanding of the
    element in which it is contained" and which "applications processing a resource are
    required to check for" (FHIR R4 backboneelement-definitions.html): a stay so qualified (a
    bed never occupied, say) is no move the census may read as one."""
    locations = data.get("location")
    return [
        f"location {i}: {url}"
        for i, loc in enumerate(locations if isinstance(locations, list) else [])
        if isinstance(loc, dict)
        for url in _modifiers(loc)
    ]


CONTENT = "fhir:content"  # the token namespace of a resource named by its content


def _fingerprint(data: dict[str, Any], tokenise: Tokenise) -> str:
    """A resource without an id named by its content: a keyed token of its canonical JSON (a
    resend of it keeps the name, and so is recognised as one). Keyed, as a patient's token is:
    the JSON holds its subject, a record number, and the rest is in the record it names, so a
    plain digest would give the number back to whoever guessed it."""
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return "content:" + tokenise(CONTENT, canonical)


def _first_identifier(identifiers: Any) -> str | None:
    """The first business identifier with a value, as `system|value`."""
    return next((f"{i.system or ''}|{i.value}" for i in identifiers or [] if i.value), None)


def _business_id(identifiers: Any, tokenise: Tokenise) -> str | None:
    """The first business identifier, as a name that does not show it (`identifier:<token of
    system|value>`): a visit or accession number is an identifier, and the name travels in
    clear (an event's or observation's id)."""
    named = _first_identifier(identifiers)
    return None if named is None else f"identifier:{tokenise('fhir:identifier-name', named)}"


def _instant(value: Any, what: str) -> datetime | Refused:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return Refused("imprecise_time", f"{what} {value.isoformat()} has no time zone")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return Refused("imprecise_time", f"{what} {value.isoformat()} is a date without a time")
    if isinstance(value, str) and _LEAP_SECOND.fullmatch(value.strip()):
        return _leap_second(value.strip(), what)
    if isinstance(value, str) and value:  # a year or a year and month (FHIR R4 dateTime)
        return Refused("imprecise_time", f"{what} {value} is a partial date without a time")
    return Refused("missing_field", f"{what} is missing")


# A time with second 60, which FHIR R4's dateTime and instant allow (datatypes.html#dateTime,
# #instant: their regexes' seconds are `[0-5][0-9]|60`, XML Schema's leap second) and fhir.resources
# keeps as text (Python's datetime has no second 60)
_LEAP_SECOND = re.compile(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}):60(?:\.\d+)?(Z|[+-]\d{2}:\d{2})")
LEAP_SECOND_AS = 999_000  # µs: a leap second is read as its minute's last millisecond


def _leap_second(text: str, what: str) -> datetime | Refused:
    """A leap second (`…T23:59:60Z`: 23:59:60 UTC, however offset) as 23:59:59.999 UTC, the
    last instant a record's millisecond time (Avro timestamp-millis) has before the next day:
    after every time of its minute, before every one of the next; its fraction, if any, is not
    kept. A leap second is only ever the last second of a UTC month (ITU-R TF.460-6 §2.1); a
    second 60 anywhere else names no instant, refused `bad_time`."""
    m = _LEAP_SECOND.fullmatch(text)
    assert m is not None
    try:
        minute = datetime.fromisoformat(f"{m[1]}:59{m[2].replace('Z', '+00:00')}")
    except ValueError:
        return Refused("bad_time", f"{what} {text} is no time (no such date or offset)")
    at = minute.astimezone(UTC)
    if (at + timedelta(seconds=1)).timetuple()[2:6] != (1, 0, 0, 0):  # not a UTC month's end
        return Refused(
            "bad_time",
            f"{what} {text}: second 60 outside the last minute of a UTC month is no leap "
            "second and names no instant",
        )
    return at.replace(microsecond=LEAP_SECOND_AS)


def _effective(obs: Any, interval: bool) -> Any:
    """When an Observation was made (FHIR R4 Observation.effective[x]: dateTime, instant or
    Period): a Period's start, or its end where it has no start; a value charted `interval`
    (urine output: the volume since the last, vitals.observation.v1) at its Period's end, the
    time the volume was measured, where it has one."""
    given = obs.effectiveDateTime or obs.effectiveInstant
    if given is not None:
        return given
    period = obs.effectivePeriod
    if period is None:
        return None
    return (period.end or period.start) if interval else (period.start or period.end)


def _by_identifier(system: Any, value: Any, tokenise: Tokenise) -> str:
    return tokenise(identity.FHIR_SYSTEM + (system or ""), str(value))


def _identifier_rank(ident: dict[str, Any]) -> tuple[int, int]:
    """The order a Patient's identifiers are chosen in (Patient.identifier has none of its own):
    one still valid before one `old` (R4 IdentifierUse: "no longer considered valid"), then by
    type as an HL7 v2 PID-3 is (a medical record number first, v2-0203 MR, MRN, PI, PT, PN; a
    social security or insurance number last: hl7v2.PATIENT_ID_TYPES), one with a system before
    one without (which names no scheme)."""
    kind = _identifier_type(ident)
    rank = {k: i for i, k in enumerate(PATIENT_ID_TYPES)}
    typed = rank.get(kind, len(rank) + (kind in OTHER_ID_TYPES))
    return (ident.get("use") == "old") * 2 + (not ident.get("system")), typed


V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"  # identifier types (HL7 table 0203)


def _identifier_type(ident: dict[str, Any]) -> str:
    """An Identifier's type as a v2-0203 code (`MR`): the coding of that system, else one of
    none (a CodeableConcept's codings have no order: R4 datatypes), '' where it names none."""
    kind = ident.get("type")
    codings = kind.get("coding") if isinstance(kind, dict) else None
    codes = {
        str(c.get("system") or ""): str(c["code"]).upper()
        for c in (codings if isinstance(codings, list) else [])
        if isinstance(c, dict) and c.get("code")
    }
    return codes.get(V2_0203) or codes.get("", "")


def _subject(
    ref: Any, data: dict[str, Any], bundle: dict[str, Any], tokenise: Tokenise, what: str
) -> str | Refused:
    """The patient token of a subject Reference (FHIR R4 §2.3.0, References):
    - a literal reference to a Patient, relative, absolute or versioned, all as `Patient/<id>`
      (`https://ehr/fhir/Patient/p1/_history/3` is `Patient/p1`);
    - a contained Patient (`#p`) or a Bundle entry's (`urn:uuid:…`, resolved against the
      entries' fullUrl) by its business identifier (`_identifier_rank`: a medical record
      number, not a retired one): the reference itself names no one outside the resource or
      Bundle;
    - else the Reference's own business identifier (system|value), which many senders give
      alone (Reference.identifier).
    A subject that is not a Patient (a Device, a Group, a Location) is refused."""
    reference = str(ref.reference) if ref is not None and ref.reference else ""
    if reference.startswith(("#", "urn:")):
        found = _inside(reference, data, bundle)
        if not isinstance(found, dict):
            return Refused(
                "missing_field", f"{what}.subject resolves to nothing in its resource or Bundle"
            )
        if found.get("resourceType") != "Patient":
            return Refused("not_a_patient", f"{what}.subject is a {found.get('resourceType')}")
        ids = [i for i in found.get("identifier") or [] if isinstance(i, dict) and i.get("value")]
        if ids:
            chosen = min(ids, key=_identifier_rank)
            return _by_identifier(chosen.get("system"), chosen["value"], tokenise)
        if found.get("id") and reference.startswith("urn:"):
            return tokenise(identity.FHIR_PATIENT, identity.SERVER_IDS + str(found["id"]))
        return Refused(
            "missing_field", f"{what}.subject {reference} is a Patient with no identifier"
        )
    if reference.startswith("Patient?"):  # a conditional reference (http.html#trules)
        params = [p.partition("=") for p in reference.partition("?")[2].split("&") if p]
        if len(params) == 1 and params[0][0] == "identifier":
            # percent-decoded, `+` kept (a search URL encodes a space as %20)
            system, bar, value = urllib.parse.unquote(params[0][2]).rpartition("|")
            if value:
                return _by_identifier(system if bar else None, value, tokenise)
        return Refused(
            "missing_field", f"{what}.subject is a search other than one identifier=system|value"
        )
    if reference:
        parts = reference.split("?")[0].rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) < 2 or not parts[-1]:
            return Refused("missing_field", f"{what}.subject's reference names no resource")
        if parts[-2] != "Patient":
            return Refused("not_a_patient", f"{what}.subject is a {parts[-2]}, not a Patient")
        return tokenise(identity.FHIR_PATIENT, identity.SERVER_IDS + parts[-1])
    ident = ref.identifier if ref is not None else None
    if ref is not None and ref.type and str(ref.type).rsplit("/", 1)[-1] != "Patient":
        return Refused("not_a_patient", f"{what}.subject is a {ref.type}, not a Patient")
    if ident is not None and ident.value:
        return _by_identifier(ident.system, ident.value, tokenise)
    return Refused("missing_field", f"{what}.subject has neither a reference nor an identifier")


class EncounterClass(NamedTuple):
    """How an Encounter's class is read (`_encounter_class`)."""

    in_bed: bool  # whether the stay may occupy a bed
    said: str  # the class as a reason shows it (its v3 code)
    note: str | None  # said in the Mapped notes for a class not known (another system's)


def _encounter_class(system: Any, code: Any, display: Any) -> EncounterClass:
    """An Encounter.class Coding read as ACT_CODE_SYSTEMS's comment says."""
    system = system if isinstance(system, str) and system else None
    code = str(code).strip() if code is not None else ""
    if system in ACT_CODE_SYSTEMS or (
        system is None and (code in ACT_ENCOUNTER_CODES or not (code or display))
    ):
        return EncounterClass(code in BED_CLASSES, code or "None", None)
    sent = printable(f"{code or display} ({system or 'no system'})"[:120])
    return EncounterClass(
        True,
        sent,
        f"Encounter.class {sent} is no v3 ActCode (an extensible binding): a class not known, "
        "the stay placed by its locations",
    )


def _class_of(enc: Any) -> EncounterClass:
    """The class of a validated Encounter (`_encounter_class`)."""
    c = enc.class_fhir
    return _encounter_class(*((c.system, c.code, c.display) if c is not None else (None,) * 3))


def _encounter(
    enc: Any, subject: Callable[[], str | Refused], tokenise: Tokenise, source: str, facility: str
) -> Mapped | Refused:
    if enc.status in ("entered-in-error", "cancelled"):
        return _voided(enc, subject, tokenise, source, facility)
    if enc.status == "planned":
        return Refused("planned", "a planned encounter occupies no bed yet")
    cls = _class_of(enc)
    if not cls.in_bed:
        return Refused(
            "not_inpatient", f"class {cls.said} does not occupy a bed ({sorted(BED_CLASSES)})"
        )
    patient = subject()
    if isinstance(patient, Refused):
        return patient
    key = _encounter_key(enc, tokenise)
    if key is None:
        return Refused(
            "missing_field",
            "the Encounter has neither an id nor an identifier: its later versions (a transfer,"
            " the discharge) could not be matched to it",
        )
    periods: list[tuple[str, datetime, datetime | None, str | None]] = []
    placed = [loc for loc in enc.location or [] if loc.status != "planned"]
    beds: list[tuple[str, datetime, datetime | None]] = []
    ward_names: set[str] = set()
    levels = [_level(loc) for loc in placed]
    if WARD in levels:  # one stay at several levels: its wards are the units, its beds the beds
        wards = [loc for loc, level in zip(placed, levels, strict=True) if level == WARD]
        alone = enc.period.start if len(wards) == 1 and enc.period is not None else None
        covered = _periods([w for w in wards if w.status != "reserved"], alone)
        ward_names = {name for name, _, _ in covered}
        # a room or bed without a period of its own is the one ward's (of one name)
        one_ward = covered[0][1] if len(ward_names) == 1 else None
        # a room or bed the patient is in (not one held for them), and when it began
        spans = [
            _span(loc, one_ward) if level in CARE_LEVELS and loc.status != "reserved" else None
            for loc, level in zip(placed, levels, strict=True)
        ]
        inside = [span is not None and _in_ward(span[1], covered) for span in spans]
        beds = sorted(
            (span for span, level, within in zip(spans, levels, inside, strict=True)
             if span is not None and level == BED and within),
            key=lambda b: b[1],
        )  # fmt: skip
        # a room or bed begun outside every ward's stay (an emergency bay before the ward) is a
        # unit; any other level (a site, a building, a wing, a floor) is where the ward is
        placed = [
            loc
            for loc, level, span, within in zip(placed, levels, spans, inside, strict=True)
            if level in (WARD, None) or (span is not None and not within)
        ]
    for loc in placed:
        where = loc.location.display or loc.location.reference
        if not where:
            return Refused(
                "missing_field",
                "a location has neither a display nor a reference (an identifier alone names no "
                "unit the census knows)",
            )
        if where.startswith(("#", "urn:")):
            return Refused(
                "missing_field",
                f"location {where} is in neither the Encounter nor its Bundle, and has no "
                "display: it names no unit",
            )
        given = loc.period.start if loc.period else None
        if given is None and len(placed) == 1 and enc.period is not None:
            given = enc.period.start  # one location without its own period: the encounter's
        start = _instant(given, "location period.start")
        if isinstance(start, Refused):
            return start
        end = loc.period.end if loc.period else None
        end_at = None if end is None else _instant(end, "location period.end")
        if isinstance(end_at, Refused):
            return end_at
        if end_at is not None and end_at < start:
            return Refused(
                "bad_period", f"location {where!r} ends ({end_at:%FT%TZ}) before it starts "
                f"({start:%FT%TZ})"
            )  # fmt: skip
        periods.append((where, start, end_at, loc.status))
    # a `reserved` location is held empty for the patient (FHIR R4 EncounterLocationStatus):
    # the same bed kept during leave is the stay going on, another one is no move (of entries
    # starting at one instant, the ones the patient is in come first, whatever the list's order)
    periods.sort(key=lambda p: (p[1], p[3] == "reserved"))
    held: list[tuple[str, datetime, datetime | None]] = []
    for where, start, end_at, status in periods:
        if status != "reserved" or (held and held[-1][0] == where):
            held.append((where, start, end_at))
    for (a, a_start, _), (b, b_start, _) in itertools.pairwise(held):
        if a_start == b_start and a != b:
            return Refused(
                "bad_period", f"locations {a!r} and {b!r} both start at {a_start:%FT%TZ}"
            )
    stays: list[tuple[str, datetime, datetime | None]] = []
    for where, start, end_at in held:
        if stays and stays[-1][0] == where:
            stays[-1] = (where, stays[-1][1], end_at)
        else:
            stays.append((where, start, end_at))
    if not stays:
        return Refused("no_location", "the Encounter has no location history: no bed to count")
    last_where, last_start, last_end = stays[-1]
    if last_end is None and enc.period is not None and enc.period.end is not None:
        period_end = _instant(enc.period.end, "Encounter period.end")
        if isinstance(period_end, Refused):
            return period_end
        last_end = period_end
    if enc.status == "finished" and last_end is not None and last_end < last_start:
        return Refused(
            "bad_period",
            f"the discharge ({last_end:%FT%TZ}) is before the stay in {last_where!r} starts "
            f"({last_start:%FT%TZ})",
        )
    if enc.status == "finished" and last_end is None:
        return Refused(
            "missing_field",
            "the Encounter is finished but gives no end (its last location's period.end or its "
            "own period.end): the discharge time is unknown",
        )
    common = {
        "source_message_type": "FHIR Encounter",
        "patient_token": patient,
        "encounter_token": _encounter_token(enc, key, tokenise),
        # the drop's facility (--facility-id): serviceProvider is an Organization reference,
        # not a facility id the capacity file knows
        "facility_id": facility,
        "recorded_time": _stored_at(enc),
        "source": source,
    }
    records = []
    bed_of = _beds_of(stays, beds, ward_names)
    prior: tuple[str | None, str | None] = (None, None)  # (unit, bed)
    for i, (where, start, _) in enumerate(stays):
        kind = "admit" if i == 0 else "transfer"
        first_bed, last_bed = bed_of[i]
        records.append(
            {
                "event_id": f"fhir:{key}:{i}:{kind}",
                "event_type": kind,
                "unit_id": where,
                "bed_id": first_bed,
                "prior_unit_id": prior[0],
                "prior_bed_id": prior[1],
                "event_time": start,
                **common,
            }
        )
        prior = (where, last_bed)
    moved_at = _current_location_time(enc, stays[0]) if len(stays) == 1 else None
    if moved_at is not None:  # a server that lists where the patient is, not where they were
        records.append(
            {
                "event_id": f"fhir:{key}:at:{last_where}@{moved_at:%Y%m%dT%H%M%S.%fZ}",
                "event_type": "transfer",
                "unit_id": last_where,
                "bed_id": prior[1],
                "prior_unit_id": None,
                "prior_bed_id": None,
                "event_time": moved_at,
                **common,
            }
        )
    if enc.status == "finished" and last_end is not None:
        records.append(
            {
                "event_id": f"fhir:{key}:{len(stays)}:discharge",
                "event_type": "discharge",
                "unit_id": last_where,
                "bed_id": prior[1],
                "prior_unit_id": None,
                "prior_bed_id": None,
                "event_time": last_end,
                **common,
            }
        )
    notes = [cls.note] if cls.note else []
    return Mapped([(topics.ADT_EVENT.name, r) for r in records], notes=notes)


def _current_location_time(enc: Any, stay: tuple[str, datetime, datetime | None]) -> Any:
    """When the patient came to the one location a version lists, where that may be the
    current location only (R4 asks for the history, "where the patient has been"; servers that
    list the current one only exist): its own start, where later than the encounter's (they
    were elsewhere before). The version's events name it by position (`…:0:admit`), as a resend
    must keep them, so a version that lists only the new ward sent the admission's id again (a
    duplicate downstream) and the move was lost: it also carries a transfer there at that
    start, under an id of the ward and the start (a no-op in the ward the patient is in; the
    same id in every later version). None otherwise: a location without a period of its own
    says nothing of when the patient came (meta.lastUpdated would move a patient readmitted
    since back to the old ward whenever the old encounter is stored again)."""
    _, start, _ = stay
    began = _instant(enc.period.start, "") if enc.period and enc.period.start else None
    return start if isinstance(began, datetime) and start > began else None


def _encounter_key(enc: Any, tokenise: Tokenise) -> str | None:
    """What follows an Encounter across its versions: its id, else its business identifier."""
    return f"Encounter/{enc.id}" if enc.id else _business_id(enc.identifier, tokenise)


def _encounter_token(enc: Any, key: str, tokenise: Tokenise) -> str:
    """The Encounter's token: its admission's and its void's must be one (the census binds
    them). Of its id, else of its first business identifier as `system|value` (the token hides
    it; as before the event ids stopped showing it, so that a stay begun before keeps its token)."""
    return tokenise("fhir:Encounter", enc.id or _first_identifier(enc.identifier) or key)


def _voided(
    enc: Any, subject: Callable[[], str | Refused], tokenise: Tokenise, source: str, facility: str
) -> Mapped | Refused:
    """An Encounter version `entered-in-error` (the encounter never was: FHIR R4
    EncounterStatus) or `cancelled` ("ended before it has begun": one that an earlier version
    said had begun, arrived or in progress, is taken back so). It takes back the stay an earlier
    version placed: a `void_encounter` of the Encounter (its
    `encounter_token`) when the server stored the version (meta.lastUpdated; not before a start
    the earlier version's admission or moves may be timed by), and the census voids the stay
    that Encounter placed, and no other: it refuses the void (`nothing_to_cancel`) where the
    patient's stay is another encounter's (a duplicate Encounter taken back while the real one
    goes on, an old one after a readmission), one placed without an encounter (an HL7 admission
    without PV1-19) or not known (udfs.census), or that holds no bed (a cancelled Encounter no
    version placed). Refused `entered_in_error` (or `cancelled`) as before for a class in no
    bed, or without meta.lastUpdated (when it was taken back is unknown)."""
    cls = _class_of(enc)
    at = _stored_at(enc)
    key = _encounter_key(enc, tokenise)
    if not cls.in_bed or at is None or key is None:
        why = (
            f"class {cls.said} occupies no bed"
            if not cls.in_bed
            else "without meta.lastUpdated, when it was taken back is unknown"
            if at is None
            else "the Encounter has neither an id nor an identifier"
        )
        return Refused(enc.status.replace("-", "_"), f"Encounter status is {enc.status}; {why}")
    patient = subject()
    if isinstance(patient, Refused):
        return patient
    # the starts an earlier version's admission and moves were timed by: not a planned
    # location (the mapping skips it; its start is in the future) nor a reserved one (a bed held
    # is no move)
    given = [enc.period.start if enc.period else None]
    given += [
        loc.period.start
        for loc in enc.location or []
        if loc.period and loc.status not in ("planned", "reserved")
    ]
    starts = [
        t for t in (_instant(g, "") for g in given if g is not None) if isinstance(t, datetime)
    ]
    record = {
        "event_id": f"fhir:{key}:{enc.status}",
        "event_type": "void_encounter",
        "source_message_type": "FHIR Encounter",
        "patient_token": patient,
        "encounter_token": _encounter_token(enc, key, tokenise),
        "facility_id": facility,
        "unit_id": None,
        "bed_id": None,
        "prior_unit_id": None,
        "prior_bed_id": None,
        "event_time": max([at, *starts]),
        "recorded_time": at,
        "source": source,
    }
    return Mapped([(topics.ADT_EVENT.name, record)])


def _level(loc: Any) -> str | None:
    """An Encounter location's level: its physicalType's LocationType code (`wa` ward, `bd`
    bed, `ro` room…), from a coding of that system or of none; None for no level."""
    concept = loc.physicalType
    codings = (concept.coding or []) if concept is not None else []
    codes = [c.code for c in codings if c.code and c.system in (PHYSICAL_TYPE_SYSTEM, None)]
    return str(codes[0]) if codes else None


Span = tuple[str, datetime, datetime | None]  # a location's name, start and end (None: open)
_OPEN = datetime.max.replace(tzinfo=UTC)


def _span(loc: Any, default_start: Any = None) -> Span | None:
    """A location's name and readable period (no period: `default_start` on); None for one
    without a name, whose period cannot be read, or that ends before it starts."""
    where = loc.location.display or loc.location.reference
    given = loc.period.start if loc.period and loc.period.start else default_start
    start = _instant(given, "") if given is not None else None
    end = _instant(loc.period.end, "") if loc.period and loc.period.end else None
    if not where or not isinstance(start, datetime) or isinstance(end, Refused):
        return None
    return (str(where), start, end) if end is None or end >= start else None


def _periods(locations: list[Any], default_start: Any = None) -> list[Span]:
    """The spans of the locations that have one (`_span`), by start."""
    spans = (_span(loc, default_start) for loc in locations)
    return sorted((s for s in spans if s is not None), key=lambda p: p[1])


def _in_ward(start: datetime, wards: list[Span]) -> bool:
    """Whether a room or bed entered at `start` is a part of a ward's stay: it starts during
    one, or up to CHARTING_SKEW before one starts (the levels of one move charted apart)."""
    return any(w_start - CHARTING_SKEW <= start < (w_end or _OPEN) for _, w_start, w_end in wards)


def _bounded(spans: list[Span]) -> list[tuple[str, datetime, datetime]]:
    """Each span ending at the latest where the next one starts (open: never)."""
    out = []
    for i, (name, start, end) in enumerate(spans):
        limit = spans[i + 1][1] if i + 1 < len(spans) else _OPEN
        out.append((name, start, min(end or _OPEN, limit)))
    return out


def _beds_of(
    stays: list[Span], beds: list[Span], wards: set[str]
) -> list[tuple[str | None, str | None]]:
    """Each stay's first and last bed (a move between two beds of one ward is no transfer for
    the census): each bed is the ward stay's it overlaps most; a stay's first bed is the one it
    had at its start, else the first it had; (None, None) where the Encounter names none (a
    stay in a location that is no ward has none)."""
    # a bed with no time in it is none; one listed twice is one
    kept: dict[tuple[str, datetime], Span] = {}
    for bed in beds:
        if bed[2] is None or bed[2] > bed[1]:
            kept.setdefault(bed[:2], bed)
    beds = sorted(kept.values(), key=lambda b: b[1])
    bounded_stays, bounded_beds = _bounded(stays), _bounded(beds)
    mine: list[list[tuple[str, datetime, datetime]]] = [[] for _ in stays]
    for bed in bounded_beds:
        overlaps = [
            min(bed[2], end) - max(bed[1], start) if name in wards else timedelta(0)
            for name, start, end in bounded_stays
        ]
        best = max(range(len(overlaps)), key=lambda k: overlaps[k], default=None)
        if best is not None and overlaps[best] > timedelta(0):
            mine[best].append(bed)
    out: list[tuple[str | None, str | None]] = []
    for (_, start, _), held in zip(bounded_stays, mine, strict=True):
        if not held:
            out.append((None, None))
            continue
        at_start = [name for name, b_start, _ in held if b_start <= start]
        out.append((at_start[-1] if at_start else held[0][0], held[-1][0]))
    return out


def _stored_at(resource: Any) -> datetime | None:
    """When the server stored this version of the resource (`meta.lastUpdated`), None without
    one: an Encounter's entry time, so that a stay or discharge entered after it happened is
    applied when entered (codec.record_time), as an HL7 event at its EVN-2. A later version
    sends the earlier events again under their ids (duplicates downstream)."""
    updated = resource.meta.lastUpdated if resource.meta is not None else None
    at = _instant(updated, "meta.lastUpdated") if updated is not None else None
    return at if isinstance(at, datetime) else None


def _coded(concept: Any, codes: CodeMap = EMPTY) -> tuple[str | None, int]:
    """A concept's LOINC code and its rank where a panel has a field from several components:
    its LOINC coding (its rank in loinc.RANKS: the ECG's heart rate before the oximeter's, a
    core temperature before an axillary one), else the LOINC and rank (schemas.interop.mdc: the
    arterial line before the cuff) of its IEEE 11073 coding, a vital sign or a blood pressure
    panel whose components are the values. Of two different values of equal rank the first is
    kept and the other dead-lettered (`conflicting_value`), as in HL7 v2. Without either, and
    without any LOINC coding, a local coding the deployment mapped (`codes`) stands for its
    LOINC."""
    codings = concept.coding or []
    loinc = [str(c.code) for c in codings if c.system in LOINC_SYSTEMS_FHIR and c.code]
    for code in loinc:  # the first one read: a vital-signs profile's codings have no order
        if code in CODES or code in PANELS:
            return code, RANKS.get(code, 0)
    for c in codings:
        if c.system == mdc.SYSTEM_FHIR and c.code:
            found = _mdc_coded(str(c.code), c.display)
            if found is not None:
                return found
    if loinc:  # a LOINC code says what the value is, read or not: no local code overrides it
        return loinc[0], 0
    for c in codings:
        local = codes.loinc(c.system, c.code)
        if local is not None:
            return local, RANKS.get(local, 0)
    return None, 0


def _unit(quantity: Any, loinc: str) -> str:
    """A quantity's unit as the code tables name it: its code (UCUM), an IEEE 11073 unit as its
    UCUM code; without a code, its human-readable unit, read where it spells a unit the LOINC
    code takes (a dimensionless code, pH or a score, reads any other text as no unit, as an
    ORU's OBX-6 text); "" for neither (loinc.convert reads it where it can mean one unit).
    UnitError where the code and the text name two units that the LOINC code converts
    differently (`unit` mmol/L, `code` mg/dL): FHIR R4 Quantity has both state one unit, so one
    of them was mapped wrong upstream and the number cannot be read."""
    code, text = str(quantity.code or ""), str(quantity.unit or "")
    if quantity.system == mdc.SYSTEM_FHIR:
        code = mdc.ucum(code, text) or code
    if code and text and loinc in CODES and disagree(loinc, code, text):
        raise UnitError(f"{loinc}: unit {text!r} and its code {code!r} are two units")
    if code:
        return code
    return "" if text and not takes(loinc, text) and "" in CODES[loinc].units else text


class _Count(NamedTuple):
    """A valueInteger as a Quantity without a unit (FHIR R4 Observation.value[x])."""

    value: int
    comparator: None = None
    code: None = None
    system: None = None
    unit: None = None


def _quantity(part: Any) -> Any:
    """An Observation's (or component's) value as a Quantity: valueQuantity, or valueInteger
    (a score, a count: read where the code takes a value without a unit), else None."""
    if part.valueQuantity is not None:
        return part.valueQuantity
    return None if part.valueInteger is None else _Count(int(part.valueInteger))


def _display(concept: Any) -> str:
    return next((str(c.display) for c in concept.coding or [] if c.display), "no display")


def _observation(
    obs: Any,
    data: dict[str, Any],
    subject: Callable[[], str | Refused],
    tokenise: Tokenise,
    source: str,
    facility_id: str,
    codes: CodeMap = EMPTY,
) -> Mapped | Refused | Part:
    """One vitals record, or one labs record for a laboratory code, or a refusal (or a GCS
    part of its own, `Part`). A value
    that cannot be read (a unit its code does not
    take, a value outside its field's range, a laboratory code in a vital-signs panel) is
    rejected alone, its dead letter the Observation with that value only, its reason naming the
    component; the Observation is refused when no value could be read."""
    if obs.status not in USABLE_OBSERVATION:
        return Refused(
            obs.status.replace("-", "_"), f"Observation status is {obs.status}: not a usable value"
        )
    code, rank = _coded(obs.code, codes)
    read_as_itself = code in CODES or code in PANELS or code in derived.PARTS
    consciousness = not read_as_itself and _names_acvpu(obs.code, codes)
    if consciousness:
        code = None
    if code is None and not consciousness:
        sent = ", ".join(f"{c.code} ({c.system or 'no system'})" for c in obs.code.coding or [])
        return Refused(
            "not_a_vital_sign",
            "the Observation has no LOINC or IEEE 11073 code wardflow reads, nor a local code "
            f"mapped in the interop_code_map file (saw {sent or 'no coding'})"[:500],
        )
    if code in derived.PARTS:  # one GCS part: summed with its Bundle's others (map_json)
        return _part(obs, data, code, subject, tokenise, source, facility_id)
    if code in CODES and CODES[code].field == "temp_c" and _on_the_skin(obs):
        return Refused(
            "not_a_vital_sign",
            f"{code}: a temperature taken on the skin (bodySite or method) is not the body "
            "temperature NEWS2 and SIRS score",
        )
    if code in PANELS and obs.hasMember and not obs.component:
        return Refused(
            "panel_by_reference",
            f"{PANELS[code]} {code} holds its values in other resources (hasMember): "
            "send those Observations",
        )
    # (code, rank, quantity, absent, where, the Observation narrowed to this value alone, the
    # value's own modifierExtensions: a component's; the Observation's refused it above)
    parts: list[tuple[str | None, int, Any, Any, str, dict[str, Any], list[str]]] = [
        (code, rank, _quantity(obs), obs.dataAbsentReason, "value", _without_components(data),
         [])
    ]  # fmt: skip
    blood_gas = _blood_gas(obs, codes)
    raw_components = data.get("component") or []
    # components sent with a value and read nowhere, and why: said, never silently dropped
    skipped: list[str] = []
    for i, c in enumerate(obs.component or []):  # under a panel or oximetry code only
        part_code, part_rank = _coded(c.code, codes)
        # a blood gas's SaO2 is a lab value: the oximetry profile's components are not its
        oximetry = part_code in COMPONENTS_OF.get(code or "", ())
        if code in PANELS or (oximetry and not blood_gas):
            raw = raw_components[i]
            alone = {**data, "component": [raw]}
            parts.append(
                (part_code, part_rank, _quantity(c), c.dataAbsentReason, f"component {i}",
                 alone, _modifiers(raw))
            )  # fmt: skip
            read_elsewhere = part_code in derived.PARTS or _names_acvpu(c.code, codes)
            if not read_elsewhere and c.dataAbsentReason is None:
                not_read_as = _component_not_read(c, raw, part_code)
                if not_read_as is not None:
                    skipped.append(f"component {i} ({_codings(c.code)}): {not_read_as}")
        elif (
            not (part_code in derived.PARTS and code == derived.GCS_TOTAL_LOINC)
            and c.dataAbsentReason is None
            and any(k.startswith("value") for k in raw_components[i])
        ):
            of = "beside a blood gas's SaO2" if oximetry else f"of {code}, which is no panel"
            skipped.append(f"component {i} ({_codings(c.code)}): {of}, not read")
    values: dict[str, float | bool | str] = {}
    ranks: dict[str, int] = {}
    topic_of: dict[str, str] = {}  # a lab Observation's value goes to the labs topic
    rejected: list[Rejected] = []
    unkept: set[str] = set()  # fields sent with a value that is not read: none is estimated
    for part_code, rank, quantity, absent, where, alone, modifiers in parts:
        sent_as: dict[str, Any] = alone if where == "value" else alone["component"][0]
        has_value = any(k.startswith("value") for k in sent_as)  # any value[x], read or not
        unread = quantity is None or quantity.value is None
        if part_code in CODES and (absent is not None or (has_value and unread)):
            unkept.add(CODES[part_code].field)
        if part_code not in CODES or quantity is None or absent is not None:
            continue
        if quantity.value is None:
            continue
        label = f"Observation/{obs.id} {where} ({part_code})"
        refusal: tuple[str, str] | None = None  # (reason code, reason)
        try:
            if modifiers:  # of this component (the Observation's own refuse it whole)
                raise UnsupportedModifier(f"modifierExtension {modifiers} is not understood")
            if quantity.comparator not in (None, *LOWER_BOUNDS, *UPPER_BOUNDS):
                # Quantity.comparator is a modifier: `ad` (sufficient for) is no value
                raise ValueError(
                    f"{quantity.comparator}{quantity.value} is a bound, not one measured value"
                )
            topic, name, value = convert(
                part_code,
                float(quantity.value),
                _unit(quantity, part_code),
                blood_gas and where == "value",
            )
            upper = quantity.comparator in UPPER_BOUNDS
            if quantity.comparator and (why_not := bound_refusal(topic, name, upper)) is not None:
                raise ValueError(f"{quantity.comparator}{quantity.value}: {why_not}")
        except UnitError as exc:
            refusal = ("bad_unit", str(exc))
        except UnsupportedModifier as exc:
            refusal = ("unsupported_modifier", str(exc))
        except ValueError as exc:  # not a finite number, a negative oxygen flow
            refusal = ("bad_value", str(exc))
        else:
            if topic != VITALS and where != "value":
                refusal = (
                    "not_a_vital_sign",
                    f"{part_code} is a laboratory result, not a vital-signs panel's component",
                )
            elif (invalid := value_refusal(topic, name, value)) is not None:
                refusal = (invalid.reason_code, f"{part_code}: {invalid.reason}")
        if refusal is not None:  # this value alone; the reason names its component
            unkept.add(CODES[part_code].field)
            said = "" if where == "value" else f"{where}: "
            why = Refused(refusal[0], f"{said}{refusal[1]}"[:500])
            rejected.append(Rejected(label, why, _json(alone)))
            continue
        if name in ranks and rank == ranks[name] and value != values[name]:
            why = Refused(
                "conflicting_value",
                f"{label}: {name} {value!r} beside {values[name]!r} of equal rank, which is kept",
            )
            rejected.append(Rejected(label, why, _json(alone)))
        elif name not in ranks or rank < ranks[name]:
            values[name], ranks[name], topic_of[name] = value, rank, topic
    if consciousness and obs.dataAbsentReason is None:  # ACVPU: a SNOMED CT answer or its word
        try:
            values["acvpu"] = _acvpu_answer(obs)
        except ValueError as exc:
            return Refused("bad_value", str(exc))
        ranks["acvpu"], topic_of["acvpu"] = 0, VITALS
    for i, c in enumerate(obs.component or []):  # a vital-signs panel's consciousness
        if code not in PANELS or not _names_acvpu(c.code, codes) or c.dataAbsentReason:
            continue
        label = f"Observation/{obs.id} component {i} (ACVPU)"
        alone = {**data, "component": [raw_components[i]]}
        refused: Refused | None = None
        if modifiers := _modifiers(raw_components[i]):
            refused = Refused(
                "unsupported_modifier", f"component {i}: modifierExtension {modifiers}"
            )
        else:
            try:
                answer = _acvpu_answer(c)
            except ValueError as exc:
                refused = Refused("bad_value", f"component {i}: {exc}")
            else:
                if values.get("acvpu", answer) != answer:  # two levels: the first is kept
                    refused = Refused(
                        "conflicting_value",
                        f"component {i}: ACVPU {answer} beside {values['acvpu']}, which is kept",
                    )
                else:
                    values["acvpu"], ranks["acvpu"], topic_of["acvpu"] = answer, 0, VITALS
        if refused is not None:
            rejected.append(Rejected(label, refused, _json(alone)))
    gcs: dict[str, int] = {}  # the Glasgow coma scale parts: LOINC code → score
    gcs_raw: dict[str, tuple[str, dict[str, Any]]] = {}  # their labels and components alone
    not_read: list[str] = []  # parts without a score, and parts that make no total
    if code == derived.GCS_TOTAL_LOINC or code in PANELS:
        for i, c in enumerate(obs.component or []):
            part_code, _ = _coded(c.code, codes)
            if part_code not in derived.PARTS:
                continue
            name = derived.PARTS[part_code].name
            raw = raw_components[i]
            label = f"Observation/{obs.id} component {i} ({part_code})"
            alone = {**data, "component": [raw]}
            try:
                if _modifiers(raw):
                    raise UnsupportedModifier(
                        f"modifierExtension {_modifiers(raw)} is not understood"
                    )
                score = (
                    None if c.dataAbsentReason is not None else _gcs_part_score(part_code, c, raw)
                )
            except ValueError as exc:
                reason = (
                    "unsupported_modifier" if isinstance(exc, UnsupportedModifier) else "bad_value"
                )
                rejected.append(
                    Rejected(label, Refused(reason, f"component {i}: {exc}"[:500]), _json(alone))
                )
                continue
            if score is None:  # not charted (a verbal response through a tube): no total
                not_read.append(f"{part_code} (GCS {name}: no score)")
            else:
                gcs[part_code], gcs_raw[part_code] = score, (label, alone)
    if (why_not := derived.disagreeing(values, gcs)) is not None:
        for label, alone in gcs_raw.values():
            why = Refused("conflicting_value", f"{label}: {why_not}"[:500])
            rejected.append(Rejected(label, why, _json(alone)))
    elif (why_none := derived.unsummed(gcs)) is not None:
        not_read.append(why_none)
    if VITALS in topic_of.values() or gcs:
        vitals = {n: v for n, v in values.items() if topic_of[n] == VITALS}
        vital_ranks = {n: r for n, r in ranks.items() if topic_of[n] == VITALS}
        # no MAP: a pressure panel is one Observation of its Bundle, whose MAP may be another
        completed = derived.completed(vitals, gcs, vital_ranks, unkept, mean=False)
        for name, value in completed.items():
            values[name], ranks[name], topic_of[name] = value, 0, VITALS
    if not values and rejected:  # nothing read: refused, with their reason when they share one
        given = {r.refusal.reason_code for r in rejected}
        reasons = "; ".join(r.refusal.reason for r in rejected)
        return Refused(given.pop() if len(given) == 1 else "bad_value", reasons[:500])
    if not values:
        known = code in CODES or code in PANELS or consciousness
        reason = (
            f"{code or acvpu.OBSERVATION} carries no value wardflow reads"
            + (f" ({'; '.join([*not_read, *skipped])})" if not_read or skipped else "")
            if known
            else f"LOINC {code} ({obs.code.text or _display(obs.code)}) is not a vital sign "
            "wardflow reads"
        )
        return Refused("no_value" if known else "not_a_vital_sign", reason)
    # urine output is a volume since the last charting (a catheter bag emptied every 4-8 h on
    # a ward), read at its period's end: only a point vital's period must be short
    interval = set(values) == {"urine_output_ml"}
    if (not_a_point := _not_a_point(obs, interval)) is not None:
        return not_a_point
    at = _instant(_effective(obs, interval), "effective time")
    if isinstance(at, Refused):
        return at
    patient = subject()
    if isinstance(patient, Refused):
        return patient
    records = []
    for topic in dict.fromkeys(topic_of.values()):
        record = _record(obs, data, tokenise, patient, at, facility_id, source, topic)
        record.update({n: v for n, v in values.items() if topic_of[n] == topic})
        records.append((topic, record))
    return Mapped(records, rejected, notes=[*not_read, *skipped])


def _record(
    obs: Any,
    data: dict[str, Any],
    tokenise: Tokenise,
    patient: str,
    at: datetime,
    facility_id: str,
    source: str,
    topic: str,
) -> dict[str, Any]:
    """An Observation's record in `topic` without its values: named by `_observation_name`,
    `recorded_time` when it was made available (`issued`: codec.record_time)."""
    issued = _instant(obs.issued, "issued")
    return {
        ("observation_id" if topic == VITALS else "result_id"): (
            f"fhir:{_observation_name(obs, data, tokenise)}"
        ),
        "patient_token": patient,
        "facility_id": facility_id,
        "unit_id": "unknown",
        "event_time": at,
        "source": source,
        "recorded_time": issued if isinstance(issued, datetime) else None,
    }


# FHIR R4's ordinalValue extension (R5: itemWeight): the score a coded answer stands for
ORDINAL_VALUE = (
    "http://hl7.org/fhir/StructureDefinition/ordinalValue",
    "http://hl7.org/fhir/StructureDefinition/itemWeight",
)


def _names_acvpu(concept: Any, codes: CodeMap) -> bool:
    """Whether a CodeableConcept names consciousness on the ACVPU scale (schemas.interop.acvpu):
    its SNOMED CT code in any coding, or a local code mapped to it where no LOINC coding says
    what the value is (as `_coded` reads the map)."""
    codings = concept.coding or [] if concept is not None else []
    if any(str(c.code or "") == acvpu.OBSERVATION for c in codings):
        return True
    if any(c.system in LOINC_SYSTEMS_FHIR and c.code for c in codings):
        return False
    return any(codes.loinc(c.system, c.code) == acvpu.OBSERVATION for c in codings)


def _acvpu_answer(part: Any) -> str:
    """The ACVPU letter of an Observation's or component's value (acvpu.letter: every part of
    it must name the same level): valueCodeableConcept's SNOMED CT codes, its codings' displays
    (a local code only where it has none) and text, or valueString; ValueError otherwise."""
    concept = part.valueCodeableConcept
    snomed: list[str] = []
    texts: list[str] = [str(part.valueString)] if part.valueString else []
    for c in concept.coding or [] if concept is not None else []:
        if str(c.code or "") in acvpu.ANSWERS:
            snomed.append(str(c.code))
            texts += [str(c.display)] if c.display else []
        elif c.display or c.code:
            texts.append(str(c.display or c.code))
    if concept is not None and concept.text:
        texts.append(str(concept.text))
    return acvpu.letter(snomed, texts)


def _gcs_part_score(part: str, component: Any, raw: dict[str, Any]) -> int | None:
    """A GCS part's score (derived.part_score) from its component (or Observation): a LOINC
    answer code, else the ordinalValue of a coding of its valueCodeableConcept, else its number;
    None for a value charted as no score (derived.NO_SCORE: `T`, as a string, a code or a
    concept's text); ValueError for any other value (none at all: a dataAbsentReason is read
    by the caller)."""
    concept = component.valueCodeableConcept
    answers = [str(c.code) for c in (concept.coding or []) if c.code] if concept else []
    number: float | None = None
    quantity = _quantity(component)
    if quantity is not None and quantity.value is not None:
        if quantity.comparator is not None:
            raise ValueError(
                f"{part}: {quantity.comparator}{quantity.value} is a bound, not a score"
            )
        unit = _unit(quantity, derived.GCS_TOTAL_LOINC)
        if unit and not takes(derived.GCS_TOTAL_LOINC, unit):
            raise ValueError(f"{part}: unit {unit!r} is not a score's")
        number = float(quantity.value)
    for coding in (raw.get("valueCodeableConcept") or {}).get("coding") or []:
        for ext in coding.get("extension") or []:
            if number is None and ext.get("url") in ORDINAL_VALUE:
                weight = ext.get("valueDecimal")
                number = float(weight) if isinstance(weight, int | float) else None
    score = derived.part_score(part, number, answers)
    if score is not None:
        return score
    displays = [c.display for c in (concept.coding or [])] if concept else []
    texts = [raw.get("valueString"), *answers, *displays, concept.text if concept else None]
    if any(isinstance(t, str) and t.strip().upper() in derived.NO_SCORE for t in texts):
        return None
    raise ValueError(f"{part}: the value is not a score (1-{derived.PARTS[part].highest})")


def _not_a_point(obs: Any, interval: bool = False) -> Refused | None:
    """Why an Observation's effectivePeriod is no point in time (ends before it starts, or spans
    more than POINT_IN_TIME, but for a volume over an `interval`), or None."""
    if obs.effectiveTiming is not None:
        # R4 Timing "specifies an event that may occur multiple times ... when things are
        # planned, expected or requested to occur" (datatypes.html#Timing): a schedule, even of
        # one event, not when this value was measured (Observation.effective[x])
        return Refused(
            "schedule_not_time",
            "effectiveTiming is a schedule (a FHIR Timing: when things are planned or expected "
            "to occur), not the time the value was measured",
        )
    period = obs.effectivePeriod
    if obs.effectiveDateTime is None and period is not None and period.start and period.end:
        end = _instant(period.end, "effectivePeriod.end")
        start = _instant(period.start, "effectivePeriod.start")
        if isinstance(end, datetime) and isinstance(start, datetime) and end < start:
            return Refused(
                "bad_period",
                f"effectivePeriod ends ({end:%FT%TZ}) before it starts ({start:%FT%TZ})",
            )
        if interval:  # timed at its end (`_effective`), which must be an instant
            return None
        if not isinstance(end, datetime):  # a date or a month: up to its end (R4 Period.end)
            zone = period.start.tzinfo if isinstance(period.start, datetime) else None
            end = _earliest_end(period.end, zone) or end
        if (
            isinstance(end, datetime)
            and isinstance(start, datetime)
            and end - start > POINT_IN_TIME
        ):
            return Refused(
                "not_a_point_measurement",
                f"effectivePeriod spans {end - start}: a summary, not one bedside reading",
            )
    return None


def _earliest_end(value: Any, zone: tzinfo | None) -> datetime | None:
    """The earliest instant a period's end written as a date, a year and month or a year may be
    (FHIR R4 Period.end "includes any matching date/time": the end of that day, month or year),
    in the zone of the period's start, else in one as far east as any (UTC+14); None for
    anything else."""
    at, east = (zone, timedelta(0)) if zone is not None else (UTC, timedelta(hours=14))
    if isinstance(value, date) and not isinstance(value, datetime):
        following = datetime.combine(value + timedelta(days=1), datetime.min.time(), at)
        return following.astimezone(UTC) - east
    text = value if isinstance(value, str) else ""
    if re.fullmatch(r"\d{4}-\d{2}", text):
        year, month = int(text[:4]), int(text[5:])
        return datetime(year + month // 12, month % 12 + 1, 1, tzinfo=at).astimezone(UTC) - east
    if re.fullmatch(r"\d{4}", text):
        return datetime(int(text) + 1, 1, 1, tzinfo=at).astimezone(UTC) - east
    return None


def _part(
    obs: Any,
    data: dict[str, Any],
    code: str,
    subject: Callable[[], str | Refused],
    tokenise: Tokenise,
    source: str,
    facility_id: str,
) -> Part | Refused:
    """A Glasgow coma scale part sent as an Observation of its own (`Part`), or a refusal."""
    try:
        score = None if obs.dataAbsentReason is not None else _gcs_part_score(code, obs, data)
    except ValueError as exc:
        return Refused("bad_value", str(exc)[:500])
    if (not_a_point := _not_a_point(obs)) is not None:
        return not_a_point
    at = _instant(_effective(obs, False), "effective time")
    if isinstance(at, Refused):
        return at
    patient = subject()
    if isinstance(patient, Refused):
        return patient
    record = _record(obs, data, tokenise, patient, at, facility_id, source, VITALS)
    return Part(code, score, record, str(obs.status))


def _codings(concept: Any) -> str:
    """A concept's codings as a note shows them, `code (system)` (never its free text, and
    control characters escaped: a note is a column of `check`'s tab-separated lines)."""
    codings = [f"{c.code} ({c.system or 'no system'})" for c in concept.coding or [] if c.code]
    return printable(", ".join(codings)[:200]) or "no coding"


def _component_not_read(component: Any, raw: dict[str, Any], code: str | None) -> str | None:
    """Why a panel's component (`raw`: its JSON) is not read, where it is not: its code is
    none wardflow reads (a SNOMED CT code alone), or its value is no Quantity (a `valueString`
    "120"); None where it is read (or refused, with its own reason)."""
    if code not in CODES:
        return "a code wardflow does not read, not read"
    quantity = _quantity(component)
    kinds = [k for k in raw if k.startswith("value")]
    if quantity is None and kinds:
        return f"its value is a {kinds[0]}, not a Quantity, not read"
    if quantity is not None and quantity.value is None:
        return "its Quantity has no value, not read"
    return None


_PERSONS_FOCUSED = {"Patient", "RelatedPerson", "Person", "Group"}


def _reference_kind(ref: Any, data: dict[str, Any], bundle: dict[str, Any]) -> str | None:
    """The resource type a Reference names (by its reference, contained or in the Bundle,
    else its `type`), or None where it does not say."""
    reference = str(ref.reference or "")
    if reference.startswith(("#", "urn:")):
        found = _inside(reference, data, bundle)
        return str(found.get("resourceType")) if isinstance(found, dict) else None
    if reference:
        parts = reference.split("?")[0].rstrip("/").split("/")
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        return parts[-2] if len(parts) >= 2 else parts[0] or None
    return str(ref.type).rsplit("/", 1)[-1] if ref.type else None


def _of_another(
    obs: Any, data: dict[str, Any], bundle: dict[str, Any], tokenise: Tokenise
) -> Refused | None:
    """An Observation whose `focus` names a person other than its subject: FHIR R4
    Observation.focus is "the actual focus of an observation when it is not the patient of
    record" (a fetus's heart rate, a donor's creatinine), whose value is not the patient's. A
    focus on the subject however written (resolved as `_subject` resolves the subject), or on a
    thing (its Specimen, a Device), leaves the value the patient's."""
    if not obs.focus:
        return None
    patient = _subject(obs.subject, data, bundle, tokenise, "Observation")
    others = 0
    for focus in obs.focus:
        kind = _reference_kind(focus, data, bundle)
        if kind is not None and kind not in _PERSONS_FOCUSED:
            continue
        if kind in (None, "Patient"):
            named = _subject(focus, data, bundle, tokenise, "Observation.focus")
            if isinstance(named, str) and named == patient:
                continue
        others += 1
    if not others:
        return None
    return Refused(
        "not_the_subject",
        f"Observation.focus names {others} other than its subject (a fetus, a donor…): its "
        "value is not the patient's",
    )


def _on_the_skin(obs: Any) -> bool:
    """Whether an Observation's bodySite or method says it was taken on the skin."""
    for concept in (obs.bodySite, obs.method):
        if concept is None:
            continue
        words = [concept.text or "", *((c.display or "") for c in concept.coding or [])]
        if any(BODY_SITES.search(w) for w in words):
            continue
        if any(SKIN.search(w) for w in words):
            return True
        if any(
            c.system == SNOMED_SYSTEM and str(c.code) in SKIN_SNOMED for c in concept.coding or []
        ):
            return True
    return False


def _blood_gas(obs: Any, codes: CodeMap) -> bool:
    """A laboratory Observation not coded as pulse oximetry: its oxygen saturation (2708-6) is a
    blood gas's SaO2 (loinc.IN_BLOOD_GAS), not the vital-signs profile's SpO2. Its category is
    read in R4's system or the one before it, or as the text `laboratory` alone."""
    lab = any(
        any(c.code == "laboratory" and c.system in CATEGORY_SYSTEMS for c in concept.coding or [])
        or (not concept.coding and str(concept.text or "").strip().lower() == "laboratory")
        for concept in obs.category or []
    )
    coded = obs.code.coding or []
    if any(c.system in LOINC_SYSTEMS_FHIR and c.code for c in coded):
        codes = EMPTY  # a LOINC coding says what it is (as in _coded)
    oximetry = any(
        (c.system in LOINC_SYSTEMS_FHIR and c.code == PULSE_OXIMETRY)
        or codes.loinc(c.system, c.code) == PULSE_OXIMETRY
        for c in coded
    )
    return lab and not oximetry


# What a version of an Observation says: a new version that changes none of it (a tag, a note, a
# server's meta) is the same record.
_MEASURED = ("status", "code", "component", "dataAbsentReason", "effectiveDateTime",
             "effectiveInstant", "effectivePeriod", "valueQuantity", "valueInteger",
             "valueString", "valueCodeableConcept")  # fmt: skip


def _code_name(concept: Any) -> str:
    """What an Observation is of, as a name that a resend keeps whatever its displays, text or
    the order of its codings: its LOINC codes (`2524-7`), else a digest of its codings."""
    codings = concept.coding or []
    loinc = sorted({str(c.code) for c in codings if c.system in LOINC_SYSTEMS_FHIR and c.code})
    if loinc:
        return "+".join(loinc)
    pairs = sorted({f"{c.system or ''}|{c.code}" for c in codings if c.code})
    return "code-" + hashlib.sha256("\n".join(pairs).encode()).hexdigest()[:12]


def _observation_name(obs: Any, data: dict[str, Any], tokenise: Tokenise) -> str:
    """The record's name: a resend keeps it (and is a duplicate downstream); a preliminary,
    amended or corrected result is named with what it measured (`_MEASURED`), so that the final
    result after a preliminary one, or a correction, is a record of its own, not dropped as a
    copy of the first. A final result keeps the Observation's plain name. An Observation without
    an id (a transaction's POST entry) is named by its business identifier with its code (an
    interface that sets the order's accession number as every result's identifier would give a
    panel's results one name, and each but the first would be a duplicate), else by its
    content (`_fingerprint`)."""
    business = _business_id(obs.identifier, tokenise)
    if obs.id:
        name = f"Observation/{obs.id}"
    elif business is not None:  # with what it is of: interfaces put an order's accession there
        name = f"{business}:{_code_name(obs.code)}"
    else:
        name = _fingerprint(data, tokenise)
    if obs.status == "final" or name.startswith("content:"):
        return name
    # what it measured names no one (no subject): a plain digest of it
    measured = json.dumps(
        {k: data[k] for k in _MEASURED if k in data}, sort_keys=True, separators=(",", ":")
    )
    return f"{name}@{obs.status}:{hashlib.sha256(measured.encode()).hexdigest()[:16]}"


def _without_components(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "component"}


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
