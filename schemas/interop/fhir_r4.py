"""FHIR R4 Encounter and vital-sign Observation resources → canonical wardflow records.

Resources are validated with fhir.resources (its R4B models: R4B changed nothing in Encounter or
Observation). Every resource ends as `Mapped` records or a `Refused` reason, like HL7 v2
messages (schemas.interop.hl7v2). A Bundle is opened and each entry handled on its own.

Encounter → ADT events from its location history (`Encounter.location`, FHIR R4 §9.1.4.1): the
first location is the admission, each change of location a transfer, and the end of a finished
encounter's last location (else the encounter's own period.end) the discharge. Locations are
taken in the order of their period.start, whatever their order in the list. Consecutive entries
for the same location (a bed kept `reserved` while the patient is on leave) are one stay. Only
inpatient-like classes (IMP, ACUTE, NONAC, EMER, OBSENC; v3 ActCode) occupy beds. Periods are
checked (FHIR R4 Period: "the end ... is after the start"): a location that ends before it
starts, two locations that start at the same instant, or a discharge before the last
location's start refuse the Encounter as `bad_period`, instead of a discharge before its
admission that would hold a bed for ever.

Observation → one vitals record. Accepted by LOINC code (schemas.interop.loinc), or by an IEEE
11073 code (`urn:iso:std:iso:11073:10101`, as point-of-care device gateways code vital signs)
through its LOINC (schemas.interop.mdc), with UCUM or IEEE 11073 units;
components are read only under a panel code (blood pressure, vital signs panel): the components
of any other code (a 7-day home blood pressure average, LOINC 76534-7) are no bedside reading.
A value must be a point in time: an effectivePeriod longer than an hour is refused. Values with
a dataAbsentReason are skipped. A value in a unit its code does not take, outside its field's
range or of a laboratory code is rejected alone (`Mapped.rejected`), the others kept; with none
left, the Observation is refused. The subject may be a reference or only a business identifier.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple

from fhir.resources.R4B import get_fhir_model_class
from pydantic import ValidationError

from schemas import topics
from schemas.interop import mdc
from schemas.interop.hl7v2 import Mapped, Refused, Rejected, value_refusal
from schemas.interop.loinc import CODES, PANELS, VITALS, UnitError, convert

BED_CLASSES = {"IMP", "ACUTE", "NONAC", "EMER", "OBSENC"}
USABLE_OBSERVATION = {"final", "amended", "corrected", "preliminary"}
POINT_IN_TIME = timedelta(hours=1)  # the longest effectivePeriod read as one measurement
Tokenise = Callable[[str, str], str]


class Outcome(NamedTuple):
    label: str  # "Observation/bp1", or "Bundle/b#entry3:Observation/bp1"
    result: Mapped | Refused
    resource: Any  # the JSON of this resource or entry alone (what a dead letter keeps)


def map_json(data: Any, tokenise: Tokenise, *, source: str, facility_id: str) -> list[Outcome]:
    """An Outcome for a resource or for each entry of a Bundle; an entry's failure is its own."""
    kind = data.get("resourceType") if isinstance(data, dict) else None
    label = f"{kind}/{data.get('id', '?')}" if isinstance(data, dict) else "?"
    if kind == "Bundle":
        out: list[Outcome] = []
        entries = data.get("entry") or []
        if not isinstance(entries, list):
            return [Outcome(label, Refused("invalid_fhir", "Bundle.entry is not a list"), data)]
        for i, entry in enumerate(entries):
            sub = entry.get("resource") if isinstance(entry, dict) else None
            if sub is None:
                why = "the entry has no resource (a request or response only)"
                out.append(Outcome(f"{label}#entry{i}", Refused("no_resource", why), entry))
            else:
                for o in map_json(sub, tokenise, source=source, facility_id=facility_id):
                    out.append(o._replace(label=f"{label}#entry{i}:{o.label}"))
        return out
    if not isinstance(data, dict):
        not_one = Refused("unsupported_resource", "not a FHIR resource (a JSON object)")
        return [Outcome(label, not_one, data)]
    try:
        result = map_resource(data, tokenise, source=source, facility_id=facility_id)
    except Exception as exc:  # a resource no check foresaw: refused alone, never the bundle
        result = Refused("unmappable", f"{kind}: {type(exc).__name__} while mapping")
    return [Outcome(label, result, data)]


def map_resource(
    data: dict[str, Any], tokenise: Tokenise, *, source: str, facility_id: str
) -> Mapped | Refused:
    kind = data.get("resourceType")
    if kind not in ("Encounter", "Observation"):
        return Refused(
            "unsupported_resource", f"{kind} is not ingested (Encounter and Observation are)"
        )
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
    if kind == "Encounter":
        return _encounter(resource, tokenise, source, facility_id)
    return _observation(resource, data, tokenise, source, facility_id)


def _instant(value: Any, what: str) -> datetime | Refused:
    if isinstance(value, datetime):
        if value.tzinfo is None:
            return Refused("imprecise_time", f"{what} {value.isoformat()} has no time zone")
        return value.astimezone(UTC)
    if isinstance(value, date):
        return Refused("imprecise_time", f"{what} {value.isoformat()} is a date without a time")
    return Refused("missing_field", f"{what} is missing")


def _subject(ref: Any, tokenise: Tokenise, what: str) -> str | Refused:
    """The patient token of a subject Reference: by its reference, else by its business
    identifier (system|value), which many senders give alone (FHIR R4 Reference.identifier)."""
    if ref is not None and ref.reference:
        return tokenise("fhir:Patient", ref.reference)
    ident = ref.identifier if ref is not None else None
    if ident is not None and ident.value:
        return tokenise(f"fhir:identifier:{ident.system or ''}", ident.value)
    return Refused("missing_field", f"{what}.subject has neither a reference nor an identifier")


def _encounter(enc: Any, tokenise: Tokenise, source: str, facility_id: str) -> Mapped | Refused:
    if enc.status in ("cancelled", "entered-in-error"):
        return Refused(enc.status.replace("-", "_"), f"Encounter status is {enc.status}")
    if enc.status == "planned":
        return Refused("planned", "a planned encounter occupies no bed yet")
    cls = enc.class_fhir.code if enc.class_fhir is not None else None
    if cls not in BED_CLASSES:
        return Refused(
            "not_inpatient", f"class {cls} does not occupy a bed ({sorted(BED_CLASSES)})"
        )
    patient = _subject(enc.subject, tokenise, "Encounter")
    if isinstance(patient, Refused):
        return patient
    periods: list[tuple[str, datetime, datetime | None]] = []
    for loc in enc.location or []:
        if loc.status == "planned":
            continue
        where = loc.location.display or loc.location.reference
        start = _instant(loc.period.start if loc.period else None, "location period.start")
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
        periods.append((where, start, end_at))
    periods.sort(key=lambda p: p[1])
    for (a, a_start, _), (b, b_start, _) in itertools.pairwise(periods):
        if a_start == b_start and a != b:
            return Refused(
                "bad_period", f"locations {a!r} and {b!r} both start at {a_start:%FT%TZ}"
            )
    stays: list[tuple[str, datetime, datetime | None]] = []
    for where, start, end_at in periods:
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
    facility = (
        enc.serviceProvider.reference if enc.serviceProvider is not None else None
    ) or facility_id
    common = {
        "source_message_type": "FHIR Encounter",
        "patient_token": patient,
        "encounter_token": tokenise("fhir:Encounter", enc.id or ""),
        "facility_id": facility,
        "bed_id": None,
        "prior_bed_id": None,
        "recorded_time": None,
        "source": source,
    }
    records = []
    prior = None
    for i, (where, start, _) in enumerate(stays):
        kind = "admit" if i == 0 else "transfer"
        records.append(
            {
                "event_id": f"fhir:Encounter/{enc.id}:{i}:{kind}",
                "event_type": kind,
                "unit_id": where,
                "prior_unit_id": prior,
                "event_time": start,
                **common,
            }
        )
        prior = where
    if enc.status == "finished" and last_end is not None:
        records.append(
            {
                "event_id": f"fhir:Encounter/{enc.id}:{len(stays)}:discharge",
                "event_type": "discharge",
                "unit_id": last_where,
                "prior_unit_id": None,
                "event_time": last_end,
                **common,
            }
        )
    return Mapped([(topics.ADT_EVENT.name, r) for r in records])


def _coded(concept: Any) -> tuple[str | None, int]:
    """A concept's LOINC code and its rank where a panel has a field from several components:
    its LOINC coding (rank 0), else the LOINC and rank (schemas.interop.mdc: the arterial line
    before the cuff) of its IEEE 11073 coding, a vital sign or a blood pressure panel whose
    components are the values. The later component of equal rank is kept, as in HL7 v2."""
    codings = concept.coding or []
    for c in codings:
        if c.system == "http://loinc.org":
            return str(c.code), 0
    for c in codings:
        if c.system == mdc.SYSTEM_FHIR and c.code:
            found = mdc.term(str(c.code), str(c.display or ""))
            if found is not None:
                return found[1].loinc, found[1].rank
            if str(c.code) in mdc.PANELS:
                return mdc.PANELS[str(c.code)], 0
    return None, 0


def _unit(quantity: Any) -> str:
    """A quantity's unit as the code tables name it: its code (UCUM), an IEEE 11073 unit as its
    UCUM code."""
    code = str(quantity.code or "")
    if quantity.system == mdc.SYSTEM_FHIR:
        return mdc.ucum(code, str(quantity.unit or "")) or code
    return code


def _display(concept: Any) -> str:
    return next((str(c.display) for c in concept.coding or [] if c.display), "no display")


def _observation(
    obs: Any, data: dict[str, Any], tokenise: Tokenise, source: str, facility_id: str
) -> Mapped | Refused:
    """One vitals record, or a refusal. A value that cannot be read (a unit its code does not
    take, a value outside its field's range, a laboratory code in a vital-signs panel) is
    rejected alone, its dead letter the Observation with that value only, its reason naming the
    component; the Observation is refused when no value could be read."""
    if obs.status not in USABLE_OBSERVATION:
        return Refused(
            obs.status.replace("-", "_"), f"Observation status is {obs.status}: not a usable value"
        )
    code, rank = _coded(obs.code)
    if code is None:
        return Refused(
            "not_a_vital_sign", "the Observation has no LOINC or IEEE 11073 code wardflow reads"
        )
    if code in PANELS and obs.hasMember:
        return Refused(
            "panel_by_reference",
            f"{PANELS[code]} {code} holds its values in other resources (hasMember): "
            "send those Observations",
        )
    # (code, rank, quantity, absent, where, the Observation narrowed to this value alone)
    parts: list[tuple[str | None, int, Any, Any, str, dict[str, Any]]] = [
        (code, rank, obs.valueQuantity, obs.dataAbsentReason, "value", _without_components(data))
    ]
    if code in PANELS:  # components are values only under a panel code (module docstring)
        raw_components = data.get("component") or []
        parts += [
            (*_coded(c.code), c.valueQuantity, c.dataAbsentReason, f"component {i}",
             {**data, "component": [raw_components[i]]})
            for i, c in enumerate(obs.component or [])
        ]  # fmt: skip
    values: dict[str, float | bool] = {}
    ranks: dict[str, int] = {}
    rejected: list[Rejected] = []
    for part_code, rank, quantity, absent, where, alone in parts:
        if part_code not in CODES or quantity is None or absent is not None:
            continue
        if quantity.value is None:
            continue
        label = f"Observation/{obs.id} {where} ({part_code})"
        refusal: tuple[str, str] | None = None  # (reason code, reason)
        try:
            topic, name, value = convert(part_code, float(quantity.value), _unit(quantity))
        except UnitError as exc:
            refusal = ("bad_unit", str(exc))
        except ValueError as exc:  # not a finite number, a negative oxygen flow
            refusal = ("bad_value", str(exc))
        else:
            if topic != VITALS:
                refusal = (
                    "not_a_vital_sign",
                    f"{part_code} is a laboratory result; labs come by ORU",
                )
            elif (invalid := value_refusal(topic, name, value)) is not None:
                refusal = (invalid.reason_code, f"{part_code}: {invalid.reason}")
        if refusal is not None:  # this value alone; the reason names its component
            said = "" if where == "value" else f"{where}: "
            why = Refused(refusal[0], f"{said}{refusal[1]}"[:500])
            rejected.append(Rejected(label, why, _json(alone)))
            continue
        if name not in ranks or rank <= ranks[name]:
            values[name], ranks[name] = value, rank
    if not values and rejected:  # nothing read: refused, with their reason when they share one
        codes = {r.refusal.reason_code for r in rejected}
        reasons = "; ".join(r.refusal.reason for r in rejected)
        return Refused(codes.pop() if len(codes) == 1 else "bad_value", reasons[:500])
    if not values:
        known = code in CODES or code in PANELS
        reason = (
            f"{code} carries no value wardflow reads"
            if known
            else f"LOINC {code} ({obs.code.text or _display(obs.code)}) is not a vital sign "
            "wardflow reads"
        )
        return Refused("no_value" if known else "not_a_vital_sign", reason)
    period = obs.effectivePeriod
    if obs.effectiveDateTime is None and period is not None and period.start and period.end:
        end = _instant(period.end, "effectivePeriod.end")
        start = _instant(period.start, "effectivePeriod.start")
        if (
            isinstance(end, datetime)
            and isinstance(start, datetime)
            and end - start > POINT_IN_TIME
        ):
            return Refused(
                "not_a_point_measurement",
                f"effectivePeriod spans {end - start}: a summary, not one bedside reading",
            )
    at = _instant(
        obs.effectiveDateTime or (period.start if period else None),
        "effective time",
    )
    if isinstance(at, Refused):
        return at
    patient = _subject(obs.subject, tokenise, "Observation")
    if isinstance(patient, Refused):
        return patient
    record = {
        "observation_id": f"fhir:Observation/{obs.id}",
        "patient_token": patient,
        "facility_id": facility_id,
        "unit_id": "unknown",
        "event_time": at,
        **values,
        "source": source,
    }
    return Mapped([(VITALS, record)], rejected)


def _without_components(data: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k != "component"}


def _json(data: dict[str, Any]) -> bytes:
    return json.dumps(data, separators=(",", ":")).encode()
