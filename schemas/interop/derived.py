"""Values a bedside reading implies but was not sent with: the Glasgow coma scale total from its
three parts, and the mean arterial pressure from the systolic and diastolic pressures.

Both gateways (HL7 v2, FHIR R4) complete a vitals reading with `completed` before it is
published, from the values of that one reading (one time, one patient): the HL7 v2 OBX segments
of one time, one FHIR Observation and its components; and FHIR sums the GCS parts sent as
Observations of their own in one Bundle (fhir_r4.Part), as EHR APIs send flowsheet rows. A
field the message was sent with is never estimated, whether its value was read or not (refused,
taken back, not obtained, a total `10T`): the sender said what it is.

- **Glasgow coma scale total** (Teasdale G, Jennett B. Lancet 1974;2:81-84; LOINC 9269-2) =
  eye opening (1-4, LOINC 9267-6) + best verbal response (1-5, 9270-0) + best motor response
  (1-6, 9268-4). Many flowsheets chart the three parts and no total; without this the screen's
  altered mentation (qSOFA: GCS < 15) and the stay models' GCS stay empty at such a hospital.
  A part is read as a number (HL7 NM, FHIR valueQuantity or valueInteger), a LOINC answer code
  of its answer list (`ANSWERS`), or a FHIR ordinalValue; the total only where all three parts
  of the reading are scores: a verbal response charted `T` (intubated) or an eye `C` (closed by
  swelling) has no score (it is charting, not an error: listed as not read, and a message
  with nothing else is refused `no_value`), and a total with a part missing would understate the
  GCS by up to 5. Any other value a part cannot be read from (a text, a bound, a number outside
  its scores) is dead-lettered; so are the three parts where a total is sent beside them that
  is not their sum (`conflicting_value`; the total is kept, as sent).
- **Mean arterial pressure** ≈ diastolic + (systolic − diastolic) / 3 (the one-third
  pulse-pressure rule: Sesso HD et al. Hypertension 2000;36:801-807), where a reading has
  both pressures and no mean (HL7 v2 only: a FHIR pressure panel is one Observation of its
  Bundle, and the measured MAP may be another): a blood pressure charted `120/80`, as
  flowsheets send it, then reaches the partial SOFA's cardiovascular component (MAP < 70 mmHg,
  Vincent 1996) and the model's MAP. Only from a pair of one source (codes of
  one rank, both LOINC or both IEEE 11073: an arterial line's systolic and a cuff's or a
  charted diastolic are no pair), and not where the diastolic
  is not below the systolic (a swapped or wrong pair).
"""

from __future__ import annotations

import math
from collections.abc import Collection, Hashable, Iterable, Mapping
from typing import Any, NamedTuple


class GcsPart(NamedTuple):
    name: str
    highest: int  # a part scores 1 to this
    answers: Mapping[str, int]  # LOINC answer code → score (LOINC's normative answer list)


# LOINC code → the part it codes, with its answer list (LL2405-1 eye, LL2406-9 verbal,
# LL2407-7 motor; Glasgow coma scale, Teasdale and Jennett 1974).
PARTS: dict[str, GcsPart] = {
    "9267-6": GcsPart("eye", 4, {"LA6553-7": 1, "LA6554-5": 2, "LA6555-2": 3, "LA6556-0": 4}),
    "9270-0": GcsPart(
        "verbal",
        5,
        {"LA6557-8": 1, "LA6558-6": 2, "LA6559-4": 3, "LA6560-2": 4, "LA6561-0": 5},
    ),
    "9268-4": GcsPart(
        "motor",
        6,
        {
            "LA6562-8": 1,
            "LA6563-6": 2,
            "LA6564-4": 3,
            "LA6565-1": 4,
            "LA6566-9": 5,
            "LA6567-7": 6,
        },
    ),
}
GCS_TOTAL = "gcs_total"
# What charting writes for a GCS part that cannot be scored: T (tube: a verbal response not
# testable through one), C (eyes closed by swelling), NT (not testable), A (aphasia), and these
# in words. Read as no score; any other value a part cannot be read from is an error.
NO_SCORE = frozenset(
    {"T", "C", "NT", "A", "UTA", "TUBE", "INTUBATED", "NOT TESTABLE", "UNABLE TO ASSESS"}
)
GCS_TOTAL_LOINC = "9269-2"  # whose FHIR Observation may carry the parts as its components
ANSWERS: dict[str, tuple[str, int]] = {
    answer: (code, score) for code, part in PARTS.items() for answer, score in part.answers.items()
}


def part_score(code: str, number: float | None, answers: Iterable[str] = ()) -> int | None:
    """The score of GCS part `code` (a key of PARTS) sent as a number, or as any of `answers`
    (LOINC answer codes; the first of this part's list counts); None for neither (`T`, a
    verbal response not testable through a tube, is charting, not an error); ValueError for a
    number that is not a whole score of the part, or an answer of another part's list."""
    part = PARTS[code]
    for answer in answers:
        if answer in ANSWERS:
            of, score = ANSWERS[answer]
            if of != code:
                raise ValueError(
                    f"{code} (GCS {part.name}): answer {answer} is GCS {PARTS[of].name}'s"
                )
            return score
    if number is None:
        return None
    if not math.isfinite(number) or number != int(number) or not 1 <= number <= part.highest:
        raise ValueError(f"{code} (GCS {part.name}): {number!r} is not a score 1-{part.highest}")
    return int(number)


def gcs_total(parts: Mapping[str, int]) -> int | None:
    """The total of a reading's parts (LOINC code → score), None unless all three are there."""
    if set(parts) != set(PARTS):
        return None
    return sum(parts.values())


def mean_arterial_pressure(sbp_mmhg: float, dbp_mmhg: float) -> float | None:
    """MAP from a systolic and diastolic pressure (mmHg), None where the pair is not one."""
    if dbp_mmhg >= sbp_mmhg:
        return None
    return dbp_mmhg + (sbp_mmhg - dbp_mmhg) / 3


def completed(
    values: Mapping[str, Any],
    parts: Mapping[str, int],
    sources: Mapping[str, Hashable],
    sent: Collection[str] = (),
    mean: bool = True,
) -> dict[str, Any]:
    """What a vitals reading with field values `values` (each from its source: `sources`, equal
    for values of one device or charting) and GCS parts `parts` (LOINC code → score) implies and
    was not sent with: {field: value}, possibly empty. `sent`: the fields the message carried a
    value of that was not read (none is estimated); `mean`: whether a MAP may be estimated (not
    where the measured one may come in another message: FHIR)."""
    out: dict[str, Any] = {}
    total = gcs_total(parts)
    if GCS_TOTAL not in values and GCS_TOTAL not in sent and total is not None:
        out[GCS_TOTAL] = total
    sbp, dbp = values.get("sbp_mmhg"), values.get("dbp_mmhg")
    paired = (
        sbp is not None and dbp is not None and sources.get("sbp_mmhg") == sources.get("dbp_mmhg")
    )
    if mean and "map_mmhg" not in values and "map_mmhg" not in sent and paired:
        estimate = mean_arterial_pressure(float(sbp), float(dbp))  # type: ignore[arg-type]
        if estimate is not None:
            out["map_mmhg"] = estimate
    return out


def disagreeing(values: Mapping[str, Any], parts: Mapping[str, int]) -> str | None:
    """Why a reading's three GCS parts contradict the total it was sent with, or None."""
    total, summed = values.get(GCS_TOTAL), gcs_total(parts)
    if total is None or summed is None or summed == total:
        return None
    shown = " + ".join(str(parts[c]) for c in PARTS)
    return f"GCS parts {shown} = {summed} beside the total sent, {total}, which is kept"


def unsummed(parts: Mapping[str, int]) -> str | None:
    """Why a reading's GCS parts make no total (a label for the parts read), or None."""
    if not parts or gcs_total(parts) is not None:
        return None
    have = ", ".join(PARTS[c].name for c in PARTS if c in parts)
    missing = ", ".join(PARTS[c].name for c in PARTS if c not in parts)
    return f"GCS {have} without {missing}: no total"
