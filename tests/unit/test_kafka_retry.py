"""Reads of a partition's offsets are asked again while its leader is being elected."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from confluent_kafka import KafkaError, KafkaException

from jobs.runtime import kafka_io


def _failing(
    times: int, code: int, answer: tuple[int, int] = (0, 5)
) -> tuple[list[int], Callable[[], tuple[int, int]]]:
    calls: list[int] = []

    def call() -> tuple[int, int]:
        calls.append(1)
        if len(calls) <= times:
            raise KafkaException(KafkaError(code))
        return answer

    return calls, call


def test_a_read_refused_while_the_leader_is_elected_is_asked_again_until_it_answers() -> None:
    calls, call = _failing(2, KafkaError.NOT_LEADER_FOR_PARTITION)
    assert kafka_io.retrying(call, pause_s=0.01) == (0, 5)
    assert len(calls) == 3


def test_every_leadership_error_is_retriable_and_an_authorisation_error_is_not() -> None:
    for code in kafka_io.LEADERSHIP_ERRORS:
        assert kafka_io.is_retriable(KafkaException(KafkaError(code)))
    assert not kafka_io.is_retriable(
        KafkaException(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED))
    )


def test_an_error_that_is_not_about_leadership_is_raised_at_the_first_try() -> None:
    calls, call = _failing(5, KafkaError.TOPIC_AUTHORIZATION_FAILED)
    with pytest.raises(KafkaException):
        kafka_io.retrying(call, pause_s=0.01)
    assert len(calls) == 1


def test_a_leader_that_never_comes_is_reported_once_the_time_is_up() -> None:
    calls, call = _failing(10_000, KafkaError.LEADER_NOT_AVAILABLE)
    with pytest.raises(KafkaException, match="LEADER_NOT_AVAILABLE"):
        kafka_io.retrying(call, for_s=0.2, pause_s=0.01)
    assert 1 < len(calls) < 10_000
