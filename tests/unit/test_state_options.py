"""Bounded state: the state backend and state TTL the jobs run with."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from jobs import sepsis_screen
from jobs.runtime import flink_env
from schemas.settings import Settings
from udfs.sepsis import MAX_VALIDITY_H


def test_state_lives_on_the_heap_or_in_rocksdb_with_incremental_checkpoints() -> None:
    s = Settings.from_env({})
    assert flink_env._state_backend(s) == {"state.backend.type": "hashmap"}
    rocks = flink_env._state_backend(dataclasses.replace(s, state_backend="rocksdb"))
    assert rocks["state.backend.type"] == "rocksdb"
    assert rocks["execution.checkpointing.incremental"] == "true"
    with pytest.raises(ValueError, match="hashmap or rocksdb"):
        flink_env._state_backend(dataclasses.replace(s, state_backend="memory"))


def test_the_default_state_ttl_outlives_the_longest_validity_of_a_value() -> None:
    assert Settings.from_env({}).state_ttl_h > MAX_VALIDITY_H


def test_the_screening_job_refuses_a_state_ttl_that_would_drop_valid_values() -> None:
    s = dataclasses.replace(Settings.from_env({}), state_ttl_h=float(MAX_VALIDITY_H))
    nothing: Any = None  # refused before the job touches its environment
    with pytest.raises(ValueError, match="longest validity"):
        sepsis_screen.build(nothing, s, {}, {})
