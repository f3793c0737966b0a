"""Pure mappers from hospital interfaces onto the canonical records: HL7 v2 (hl7apy), FHIR R4
(fhir.resources), LOINC codes and UCUM units. No I/O: the feeds in `jobs/feeds/` call them."""
