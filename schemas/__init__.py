"""Contracts, the bottom layer: one Avro schema per topic and the topic registry, internal row
declarations, settings, the capacity file, and pure mappers of outside formats onto the
canonical records (Avro codec, PHI tokens, PhysioNet columns, HL7 v2 / FHIR R4 / LOINC in
`interop/`). Nothing here imports another wardflow package."""

from schemas.avro import AvroField, Schema, load_schema
from schemas.topics import TOPICS, Topic, topic

__all__ = ["TOPICS", "AvroField", "Schema", "Topic", "load_schema", "topic"]
