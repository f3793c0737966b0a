"""A deployment's own observation codes → the LOINC codes wardflow reads.

Many EHRs and device gateways send vital signs and labs under their own codes only: a flowsheet
row id, an event code, a lab's order or test code, with no LOINC beside it (HL7 v2 OBX-3 and its
alternate OBX-3.4-6; FHIR `Observation.code.coding`). Without a map each such value is
`not_a_vital_sign`, and the dead letter names the codes it saw. An integration team maps them in
a CSV file, the `interop_code_map` setting, read once by the HL7 v2 gateway and the FHIR drop:

    system,code,loinc,display
    FLO,8,8867-4,Pulse
    FLO,5,85354-9,Blood pressure (one value 120/80)
    http://hospital.example.org/flowsheet-row,9,9279-1,Respirations

- `system`: the coding system as the sender names it: HL7 v2 OBX-3.3 (or OBX-3.6 for the
  alternate code), OBR-4.3 for an order code; FHIR `Coding.system`. Matched without regard to
  case; empty: a code sent with no coding system (`8^Pulse`). A LOINC or IEEE 11073 system is
  refused: those codes are read as themselves.
- `code`: the code as sent (OBX-3.1 / 3.4, `Coding.code`), matched exactly after trimming.
- `loinc`: a code wardflow reads (`schemas.interop.loinc`: a vital sign or lab, a blood pressure
  or vital signs panel, an arterial blood gas order; a Glasgow coma scale part,
  `schemas.interop.derived`; the SNOMED CT code of consciousness on the ACVPU scale,
  `schemas.interop.acvpu`). The value's unit is read as for that code,
  from OBX-6 or `Quantity.code`, or its text where the code takes it.
- Other columns (`display`, a note) are for the reader.

Checked at load, each error with its line: the columns (each once), an unknown LOINC, a row of a
standard system, one (system, code) mapped to two LOINC codes, a LOINC code wardflow reads mapped
to another (HL7 v2 reads an OBX-3 code in its table as LOINC, whatever its system). Where a
LOINC code comes beside a mapped one (OBX-3 or its alternate with system LN; a LOINC coding), the
LOINC code says what the value is, even one wardflow does not read: the map is not consulted.

    python -m schemas.interop.code_map FILE    # check a map: each row's field, or its errors
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from schemas import topics
from schemas.interop import acvpu, derived, mdc
from schemas.interop.loinc import (
    BP_PANELS,
    CODES,
    GAS_PANELS,
    LOINC_SYSTEMS_FHIR,
    LOINC_SYSTEMS_HL7,
    PANELS,
    Code,
)

REQUIRED: Final = ("system", "code", "loinc")
# Systems whose codes are read as themselves (HL7 v2 table 0396 names, FHIR URIs, OIDs).
STANDARD_SYSTEMS: Final = frozenset(
    s.upper()
    for s in (
        *LOINC_SYSTEMS_HL7,
        *LOINC_SYSTEMS_FHIR,
        "2.16.840.1.113883.6.1",  # LOINC's OID without its urn:oid: prefix
        mdc.SYSTEM_FHIR,
        *mdc.SYSTEMS_HL7,
    )
)


class CodeMapError(ValueError):
    """A code map that cannot be used: each problem with its file and line."""


def target(loinc: str) -> str | None:
    """What a mapped LOINC code is read as (its field, and the units it is read in), or None
    for one wardflow does not read."""
    if loinc in CODES:
        c = CODES[loinc]
        units = ", ".join(repr(u) for u in c.units)
        return f"{c.topic}.{c.field} (units {units}; none: {_unitless(c)})"
    if loinc in BP_PANELS:
        return f"{PANELS[loinc]}: systolic/diastolic in one value (HL7 OBX) or its components"
    if loinc in PANELS:
        return f"{PANELS[loinc]}: its components (FHIR)"
    if loinc in GAS_PANELS:
        return "arterial blood gas order (HL7 OBR-4): its saturation is the sample's SaO2"
    if loinc == acvpu.OBSERVATION:
        return (
            f"{topics.VITALS_OBSERVATION.name}.acvpu: consciousness on the ACVPU scale (a SNOMED "
            "CT code, not LOINC; its answer a SNOMED CT code, a letter or a word)"
        )
    if loinc in derived.PARTS:
        part = derived.PARTS[loinc]
        return (
            f"Glasgow coma scale {part.name} (1-{part.highest}): summed into "
            f"{topics.VITALS_OBSERVATION.name}.{derived.GCS_TOTAL} with the other two parts of "
            "its time (HL7 v2: its message; FHIR: its Bundle, or a 9269-2's components)"
        )
    return None


def _unitless(c: Code) -> str:
    if "" in c.units:
        return "read as it is"
    if set(c.units.values()) == {(1.0, 0.0)}:
        return "read in the field's unit" + (", above 1 only" if "%" in c.units else "")
    return "refused"


@dataclass(frozen=True)
class CodeMap:
    """(system in upper case, code) → LOINC; empty: no local codes are read."""

    codes: dict[tuple[str, str], str] = field(default_factory=dict)
    origin: str = ""

    def loinc(self, system: str | None, code: str | None) -> str | None:
        """The LOINC code mapped to `code` of `system` (None or '' for none named), or None."""
        if not self.codes or not code:
            return None
        return self.codes.get(((system or "").strip().upper(), code.strip()))

    def __len__(self) -> int:
        return len(self.codes)

    @staticmethod
    def load(path: str | Path) -> CodeMap:
        """The map in CSV file `path` (UTF-8, with or without a byte-order mark); '' or no path:
        the empty map. Raises CodeMapError with every problem found."""
        if not str(path):
            return EMPTY
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as exc:
            raise CodeMapError(f"{p}: cannot be read: {exc}") from exc
        reader = csv.reader(io.StringIO(text, newline=""))
        header = [h.strip().lower() for h in next(reader, [])]
        missing = [c for c in REQUIRED if c not in header]
        if missing:
            raise CodeMapError(f"{p}:1: the header has no column {', '.join(missing)} ({header})")
        twice = sorted({h for h in header if h and header.count(h) > 1})
        if twice:
            raise CodeMapError(f"{p}:1: the header names {', '.join(twice)} more than once")
        codes: dict[tuple[str, str], str] = {}
        first_line: dict[tuple[str, str], int] = {}
        problems: list[str] = []
        while True:
            line = reader.line_num + 1  # the row's first line (a quoted field may span more)
            cells = next(reader, None)
            if cells is None:
                break
            row = dict(zip(header, cells, strict=False))
            system, code, loinc = ((row.get(c) or "").strip() for c in REQUIRED)
            if not (system or code or loinc):
                continue  # a blank line
            key = (system.upper(), code)
            where = f"{p}:{line}"
            if not code or not loinc:
                problems.append(f"{where}: a row needs a code and a loinc")
            elif key[0] in STANDARD_SYSTEMS:
                problems.append(
                    f"{where}: {system} is a standard system, its codes are read as themselves"
                )
            elif target(loinc) is None:
                problems.append(f"{where}: LOINC {loinc} is not a code wardflow reads")
            elif target(code) is not None and code != loinc:
                problems.append(
                    f"{where}: {code} is a LOINC code wardflow reads as itself (an HL7 v2 code "
                    f"is read as LOINC whatever its system); it cannot stand for {loinc}"
                )
            elif key in codes and codes[key] != loinc:
                problems.append(
                    f"{where}: {system or '(no system)'} {code} is mapped to {codes[key]} on "
                    f"line {first_line[key]} and to {loinc} here"
                )
            else:
                codes[key] = loinc
                first_line.setdefault(key, line)
        if problems:
            raise CodeMapError("\n".join(problems))
        return CodeMap(codes, str(p))


EMPTY: Final = CodeMap()


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m schemas.interop.code_map FILE", file=sys.stderr)
        return 2
    try:
        m = CodeMap.load(argv[0])
    except CodeMapError as exc:
        print(exc, file=sys.stderr)
        return 1
    for (system, code), loinc in sorted(m.codes.items()):
        print(f"{system or '(no system)'}\t{code}\t{loinc}\t{target(loinc)}")
    print(f"{len(m)} codes mapped", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
