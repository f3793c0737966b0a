"""Avro contracts of wardflow's Kafka topics: the one place where their fields are spelled."""

from schemas.avro import AvroField, Schema, load_schema
from schemas.topics import TOPICS, Topic, topic

__all__ = ["TOPICS", "AvroField", "Schema", "Topic", "load_schema", "topic"]
