"""A failed job is explained: the dependency named by its failures, the restart strategy in
words, the exit status per dependency."""

from __future__ import annotations

import io

import pytest

from jobs.runtime.watch import (
    DEPENDENCIES,
    OTHER,
    JobFailed,
    JobWatch,
    classify,
    exit_on_failure,
    first_line,
    restart_policy,
)

KAFKA_TRACE = """org.apache.flink.runtime.JobException: Recovery is suppressed
\tat org.apache.flink.runtime.executiongraph.failover.ExecutionFailureHandler.handleFailure
Caused by: org.apache.flink.kafka.shaded.org.apache.kafka.common.errors.TimeoutException: \
Timeout expired after 60000ms while awaiting InitProducerId
"""
COMMITTER_TRACE = """java.lang.IllegalStateException: Transaction was not started
	at org.apache.flink.util.Preconditions.checkState(Preconditions.java:215)
	at org.apache.flink.connector.kafka.sink.internal.FlinkKafkaInternalProducer.commitTransaction
	at org.apache.flink.connector.kafka.sink.KafkaCommitter.commit(KafkaCommitter.java:119)"""
SLOTS_TRACE = """java.util.concurrent.CompletionException: \
org.apache.flink.runtime.jobmanager.scheduler.NoResourceAvailableException: Could not acquire \
the minimum required resources."""
UDF_TRACE = """org.apache.flink.runtime.taskmanager.AsynchronousException: Caught exception
Caused by: java.lang.RuntimeException: Error received from SDK harness for instruction 4:
  File "/venv/lib/python3.11/site-packages/apache_beam/runners/worker/sdk_worker.py", line 311
  File "/srv/wardflow/udfs/flink.py", line 40, in eval
ValueError: could not convert string to float: 'abc'"""
REDIS_TRACE = """org.apache.flink.runtime.taskmanager.AsynchronousException: Caught exception
Caused by: java.lang.RuntimeException: Error received from SDK harness
redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:16379. Connection refused."""


def test_each_failure_is_put_down_to_the_dependency_its_trace_names() -> None:
    assert classify(KAFKA_TRACE).name == "Kafka broker"
    assert classify(COMMITTER_TRACE).name == "Kafka broker"  # the broker gone, seen by the sink
    assert classify(REDIS_TRACE).name == "Feast online store"
    assert classify(SLOTS_TRACE).name == "TaskManager slots"
    assert classify("java.lang.ArithmeticException: / by zero") is OTHER
    assert classify(UDF_TRACE) is OTHER  # the job's own Python, not the workers' environment


def test_every_dependency_has_its_own_exit_status_and_none_is_success() -> None:
    codes = [d.exit_code for d in (*DEPENDENCIES, OTHER)]
    assert len(set(codes)) == len(codes) and 0 not in codes


def test_the_reason_shown_is_the_deepest_cause() -> None:
    assert first_line(KAFKA_TRACE).endswith("while awaiting InitProducerId")
    assert first_line("java.io.IOException: disk full") == "java.io.IOException: disk full"


def test_a_reason_that_does_not_name_its_dependency_says_where_it_was_raised() -> None:
    reason = first_line(COMMITTER_TRACE, classify(COMMITTER_TRACE))
    assert reason.startswith("java.lang.IllegalStateException: Transaction was not started (in ")
    assert "connector.kafka.sink.internal.FlinkKafkaInternalProducer" in reason
    assert first_line(KAFKA_TRACE, classify(KAFKA_TRACE)) == first_line(KAFKA_TRACE)


def test_the_restart_strategy_is_said_in_words() -> None:
    fixed = {
        "restart-strategy.type": "fixed-delay",
        "restart-strategy.fixed-delay.attempts": "10",
        "restart-strategy.fixed-delay.delay": "2 s",
    }
    assert restart_policy(fixed) == "restart up to 10 times, 2 s apart, then fail"
    assert "first failure ends the job" in restart_policy({"restart-strategy.type": "none"})
    assert "exponential" in restart_policy({"restart-strategy.type": "exponential-delay"})


def test_without_a_failure_history_the_error_itself_is_explained() -> None:
    out = io.StringIO()
    watch = JobWatch("http://127.0.0.1:9", "0" * 32, "sepsis_screen", {}, "/logs", out=out)
    failed = watch.failed(RuntimeError(KAFKA_TRACE))
    assert failed.exit_code == 3
    text = str(failed)
    assert text.startswith("sepsis_screen failed: Kafka broker")
    assert "logs:     /logs" in text and "InitProducerId" in text


def test_a_failed_job_leaves_its_message_on_stderr_and_its_dependencys_exit_status(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit) as exited, exit_on_failure():
        raise JobFailed("j", DEPENDENCIES[0], "the Kafka broker at b:9092", "gone", "0", "/l")
    assert exited.value.code == 3
    assert "j failed: the Kafka broker at b:9092" in capsys.readouterr().err
