"""Feast feature repository for patient features (entities, sources, services): not built."""
