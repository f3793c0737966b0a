"""A patient's age and sex as the models read them (`feature_store.definitions.STATIC_FEATURES`:
`age_years`, `female`), from what an ADT message (HL7 PID-7, PID-8) or a FHIR Patient
(`birthDate`, `gender`) says. The birth date itself never leaves ingestion: it is an
identifier, and so is an age over 89 (HIPAA Safe Harbor, 45 CFR 164.514(b)(2)(i)(C): "all
ages over 89 ... aggregated into a single category of age 90 or older"), so every such age is
90. PhysioNet/CinC 2019 (the sepsis model's training data) gives ages in years with two
decimals, as here.

Bad demographics do not refuse the ADT event that carries them (the census needs the event):
the value is unknown (None), as the models take a patient with no age or sex."""

from __future__ import annotations

import re
from datetime import date, datetime

AGE_CAP_YEARS = 90.0  # every age over 89 (Safe Harbor)
OLDEST_PLAUSIBLE_YEARS = 125.0  # a birth date further back is a typo, not a patient
DAYS_PER_YEAR = 365.25

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


def age_years(birth: str, at: datetime) -> float | None:
    """Age in years (two decimals) at `at` of a patient born on `birth` (`birth_day`), 90 for
    every age over 89; None for no birth date, a birth after `at`, or one more than
    `OLDEST_PLAUSIBLE_YEARS` before it."""
    born = birth_day(birth) if birth else None
    if born is None:
        return None
    days = (at.date() - born).days
    if days < 0:
        return None
    years = days / DAYS_PER_YEAR
    if years > OLDEST_PLAUSIBLE_YEARS:
        return None
    return AGE_CAP_YEARS if years >= AGE_CAP_YEARS else round(years, 2)


def female_hl7(sex: str) -> bool | None:
    """HL7 PID-8 administrative sex (table 0001): F True, M False; any other (O, U, A, N, X, a
    local code) None."""
    code = sex.strip().upper()
    return True if code == "F" else False if code == "M" else None


def female_fhir(gender: object) -> bool | None:
    """FHIR R4 Patient.gender (AdministrativeGender): female True, male False; other, unknown
    or none None."""
    return True if gender == "female" else False if gender == "male" else None
