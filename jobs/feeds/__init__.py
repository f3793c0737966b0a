"""Processes that feed the jobs' input topics: the HL7 v2 MLLP gateway and FHIR R4 bundle drop
(mapping in `schemas.interop`), the PhysioNet 2019 and MIMIC-IV replays, the ADT generator."""
