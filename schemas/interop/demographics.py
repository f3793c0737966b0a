"""A patient's age and sex as the models read them (`feature_store.definitions.STATIC_FEATURES`:
`age_years`, `female`), from what an ADT message (HL7 PID-7, PID-8) or a FHIR Patient
(`birthDate`, `gender`) says. The birth date itself never leaves ingestion: it is an
identifier, and so is an age over 89 (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): "all
ages over 89 ... aggregated into a single category of age 90 or older"), so every such age is
90. The age is in whole years on the day the encounter began (its admission, as the sender
dates it: HL7 PV1-44, a FHIR Encounter's period.start), so that it does not change during the
stay and a birthday between two events does not date the birth; PhysioNet's ages are the age
at the ICU admission too (2019's with two decimals, 2012's whole).

Bad demographics do not refuse the ADT event that carries them (the census needs the event):
the value is unknown (None), as the models take a patient with no age or sex."""

from __future__ import annotations

import re
from datetime import date

AGE_CAP_YEARS = 90.0  # every age over 89 (Safe Harbor)
OLDEST_PLAUSIBLE_YEARS = 125.0  # a birth date further back is a typo, not a patient

# HL7 DTM/TS (v2.5 2.A.22) or FHIR date (YYYY, YYYY-MM, YYYY-MM-DD): a birth date's day, with
# whatever precision was sent; a time of day (HL7 PID-7 may carry one) is not needed for years
_DATE = re.compile(
    r"^(?P<y>\d{4})(?:(?P<sep>-?)(?P<mo>\d{2})(?:(?P=sep)(?P<d>\d{2})(?:[T\d+-].*)?)?)?"
    r"(?:[+-]\d{4})?$"
)


def birth_day(value: str) -> date | None:
    """The day a birth date names, a date given to the month or year counting from its middle
    (the 15th; 1 July); None for no date or one that is not a day of the calendar."""
    m = _DATE.match(value.strip())
    if m is None:
        return None
    year, month, day = int(m["y"]), m["mo"], m["d"]
    try:
        if month is None:
            return date(year, 7, 1)
        if day is None:
            return date(year, int(month), 15)
        return date(year, int(month), int(day))
    except ValueError:
        return None


def age_years(birth: str, on: date) -> float | None:
    """Age in whole years on day `on` (the encounter's start, as the sender dates it) of a
    patient born on `birth` (`birth_day`), 90 for every age over 89; None for no birth date, a
    birth after `on`, or one more than `OLDEST_PLAUSIBLE_YEARS` before it. Whole years, as
    HIPAA's Safe Harbor allows an age: an age to two decimals beside an event's time gave the
    birth date back to within days (one record) or to the day (four)."""
    born = birth_day(birth) if birth else None
    if born is None:
        return None
    years = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if years < 0 or years > OLDEST_PLAUSIBLE_YEARS:
        return None
    return min(float(years), AGE_CAP_YEARS)


def day_of(stamp: str) -> date | None:
    """The day an HL7 DTM or FHIR dateTime names, as its sender wrote it (its own offset, not
    converted to UTC: a birth on 1 March at 00:20 +01:00 is a day old on 1 March at 00:45,
    not -1 day old in UTC); None unless it names a whole day."""
    m = _DATE.match(stamp.strip()) if stamp else None
    if m is None or m["d"] is None:
        return None
    try:
        return date(int(m["y"]), int(m["mo"]), int(m["d"]))
    except ValueError:
        return None


def female_hl7(sex: str) -> bool | None:
    """HL7 PID-8 administrative sex (table 0001): F True, M False; any other (O, U, A, N, X, a
    local code) None."""
    code = sex.strip().upper()
    return True if code == "F" else False if code == "M" else None


def female_fhir(gender: object) -> bool | None:
    """FHIR R4 Patient.gender (AdministrativeGender): female True, male False; other, unknown
    or none None."""
    return True if gender == "female" else False if gender == "male" else None
