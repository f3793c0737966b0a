"""One patient, one token, whichever channel names them.

A patient's token is an HMAC of (namespace, identifier) (schemas.phi). Each channel names the
namespace its own way: HL7 v2 by PID-3's assigning authority (its namespace id, else its
universal id: `HOSP`, `2.16.840.1.113883.19.5`; schemas.interop.hl7v2), FHIR by the
identifier's system (`urn:oid:2.16.840.1.113883.19.5`, `https://hosp.example.org/mrn`) or, for a
literal `Patient/<id>` reference, by the server's own ids (schemas.interop.fhir_r4). A hospital
that sends ADT over HL7 and observations over FHIR names one medical record number three ways,
and without being told that they are one, the streams would hold three patients: vitals never
meet the admission, nobody is screened in their bed.

`patient_identifier_aliases` tells it, one group per record-number space:

    HOSP=urn:oid:2.16.840.1.113883.19.5,2.16.840.1.113883.19.5,https://hosp.example.org/mrn,Patient/

Each name after `=` is one more name of the space named first: an HL7 assigning authority (as
PID-3.4 writes it), a FHIR identifier system, or `Patient/`, which says that the FHIR server's
Patient ids are this space's record numbers (a server fed by the hospital's MPI; not one that
makes ids of its own, as most EHRs' do). Every name, the first too, stands for both an HL7
authority and a FHIR system. Names are compared exactly (HL7 table 0363 and FHIR systems are
case-sensitive). Identifiers themselves are not normalised: `0012345` is not `12345`.

Setting it is a migration: the space's first name keeps its tokens, every other name's patients
get that name's, so a stay begun under another name is not found by its later events. Name first
the one the census has its beds under (the HL7 ADT feed's assigning authority), and set it before
the other feeds start, or at a quiet hour. `Patient/` holds for every server's Patient ids (a
reference is read as `Patient/<id>` whatever its base, as without aliases): only where all of a
deployment's FHIR sources use the record numbers as ids.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

Tokenise = Callable[[str, str], str]

FHIR_SYSTEM = "fhir:identifier:"  # fhir_r4's namespace of an identifier: this + its system
FHIR_PATIENT = "fhir:Patient"  # fhir_r4's namespace of a literal Patient/<id> reference
SERVER_IDS = "Patient/"


def aliases(spec: str) -> dict[str, str]:
    """{namespace as a channel writes it: the space's first name} from the setting's text
    (`;`-separated groups of `NAME=ALIAS,ALIAS…`); ValueError for a malformed group or a name
    given to two spaces."""
    out: dict[str, str] = {}
    for group in filter(None, (g.strip() for g in spec.split(";"))):
        first, eq, rest = group.partition("=")
        first = first.strip()
        names = [first, *(a.strip() for a in rest.split(","))] if eq else []
        if not first or any(not n for n in names) or len(names) < 2:
            raise ValueError(f"patient_identifier_aliases: {group!r} is not NAME=ALIAS[,ALIAS...]")
        for name in names:
            if name.startswith("fhir:") or name.endswith("/visit"):
                raise ValueError(
                    f"patient_identifier_aliases: {name!r} is a namespace of wardflow's own "
                    "(a FHIR resource's or a visit's), not a record-number space"
                )
            keys = [FHIR_PATIENT] if name == SERVER_IDS else [name, FHIR_SYSTEM + name]
            for key in keys:
                if out.get(key, first) != first:
                    raise ValueError(
                        f"patient_identifier_aliases: {name!r} is named in two groups "
                        f"({out[key]!r} and {first!r})"
                    )
                out[key] = first
    return out


def aliased(tokenise: Tokenise, names: Mapping[str, str]) -> Tokenise:
    """`tokenise` with every namespace of `names` read as its space's first name (a
    `Patient/<id>` reference's id as the record number), so that one patient named by any of
    them has one token. Other namespaces (visits, devices, unlisted systems) are as before."""
    if not names:
        return tokenise

    def token(namespace: str, identifier: str) -> str:
        space = names.get(namespace)
        if space is None:
            return tokenise(namespace, identifier)
        if namespace == FHIR_PATIENT:
            identifier = identifier.removeprefix(SERVER_IDS)
        return tokenise(space, identifier)

    return token
