"""wardflow-token: the token each record number has in the streams, for the EHR's side.

    wardflow-token --hl7-authority HOSP < mrns.txt           one record number per line
    wardflow-token --fhir-system urn:oid:2.16.840.1.113883.19.5 < mrns.txt
    wardflow-token --fhir-patient-ids < patient_ids.txt

Prints `identifier<TAB>token` per line. Alerts reach the EHR under the patient's token (HL7 PID-3
of type ANON, FHIR subject identifier `urn:wardflow:patient-token`), never a record number; the
interface engine that files them holds the PHI key (`WARDFLOW_PHI_KEY`) and builds its token to
record-number table with this, from its own patient index, as the ingestion edges tokenise: the
namespace as the HL7 gateway (`hl7v2`, PID-3's assigning authority) or the FHIR ingest
(`fhir_r4`: an identifier's system, or the server's Patient ids) names it, through
`patient_identifier_aliases` (schemas/interop/identity.py). Nothing leaves the process but what it
prints.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable, Iterator

from schemas import phi
from schemas.interop import identity
from schemas.settings import Settings


def namespaced(args: argparse.Namespace, identifier: str) -> tuple[str, str]:
    """(namespace, identifier) as the ingestion edge that reads such a record number passes
    them to its tokeniser."""
    if args.hl7_authority is not None:
        return args.hl7_authority, identifier
    if args.fhir_system is not None:
        return identity.FHIR_SYSTEM + args.fhir_system, identifier
    return identity.FHIR_PATIENT, identity.SERVER_IDS + identifier


def tokens(settings: Settings, args: argparse.Namespace, lines: Iterable[str]) -> Iterator[str]:
    key = settings.require_phi_key()
    tokenise = identity.aliased(
        lambda ns, ident: phi.token(key, ns, ident),
        identity.aliases(settings.patient_identifier_aliases),
    )
    for line in lines:
        identifier = line.strip()
        if identifier:
            yield f"{identifier}\t{tokenise(*namespaced(args, identifier))}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        prog="wardflow-token", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    space = ap.add_mutually_exclusive_group(required=True)
    space.add_argument("--hl7-authority", help="PID-3.4 as the HL7 feed sends it")
    space.add_argument("--fhir-system", help="Identifier.system as the FHIR feed sends it")
    space.add_argument(
        "--fhir-patient-ids", action="store_true", help="the FHIR server's Patient ids"
    )
    Settings.add_arguments(ap)
    args = ap.parse_args(argv)
    for out in tokens(Settings.resolve(args), args, sys.stdin):
        print(out)


if __name__ == "__main__":
    main()
