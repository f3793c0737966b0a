"""The quarantine registry (udfs/quarantine.py): set, clear, history, atomic files, quarantines of
one parameter beside the whole source's, a registry written before parameters, the operator's
command line, and the JVM check (io.wardflow.udf.Quarantine) agreeing with the registry's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from schemas import topics
from udfs.quarantine import JSON_FILE, TSV, Quarantine, QuarantineRegistry, record_note

REPO = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 1, 5, 8, tzinfo=UTC)
LABS, DEVICE, VITALS = (
    t.name for t in (topics.LABS_RESULT, topics.VITALS_DEVICE, topics.VITALS_OBSERVATION)
)
SRC = (DEVICE, "hospital-a", "MICU")


def test_a_set_quarantine_is_listed_with_why_who_and_the_event_that_set_it(tmp_path: Path) -> None:
    reg = QuarantineRegistry(tmp_path)
    q = reg.set(*SRC, since=T0, reason="temp centred at 98", by="data_quality", event_id="e1")
    assert q is not None and q.open
    assert reg.active() == [q]
    assert (q.since, q.reason, q.set_by, q.set_event_id) == (
        "2026-01-05T08:00:00.000Z",
        "temp centred at 98",
        "data_quality",
        "e1",
    )
    assert [h["action"] for h in reg.history()] == ["set"]


def test_a_cleared_quarantine_keeps_its_interval_and_the_history_records_both_steps(
    tmp_path: Path,
) -> None:
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1")
    done = reg.clear(*SRC, until=T0 + timedelta(hours=2), reason="fixed", by="jdoe")
    assert done is not None and not done.open and done.cleared_by == "jdoe"
    assert reg.active() == [] and reg.all() == [done]
    assert [(h["action"], h["until"]) for h in reg.history()] == [
        ("set", None),
        ("clear", "2026-01-05T10:00:00.000Z"),
    ]
    # A later fault of the same source is a new interval; the old one stays for audit.
    again = reg.set(*SRC, since=T0 + timedelta(days=1), reason="again", by="dq", event_id="e3")
    assert again is not None and reg.all() == [done, again]


def test_applying_the_same_data_quality_event_twice_changes_nothing(tmp_path: Path) -> None:
    reg = QuarantineRegistry(tmp_path)
    assert reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1") is not None
    assert reg.clear(*SRC, until=T0 + timedelta(hours=1), reason="ok", by="dq", event_id="e2")
    assert reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1") is None
    assert reg.clear(*SRC, until=T0, reason="ok", by="dq", event_id="e2") is None
    assert len(reg.history()) == 2 and reg.active() == []


def test_a_source_already_quarantined_is_not_quarantined_twice_and_a_clear_needs_an_open_one(
    tmp_path: Path,
) -> None:
    reg = QuarantineRegistry(tmp_path)
    assert reg.clear(*SRC, until=T0, reason="nothing", by="x") is None
    reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1")
    assert reg.set(*SRC, since=T0 + timedelta(hours=1), reason="r2", by="dq", event_id="e2") is None
    assert len(reg.all()) == 1


def test_a_data_quality_clear_does_not_lift_an_operators_quarantine(tmp_path: Path) -> None:
    """An operator quarantines a unit; a data-quality condition opens on it (no new quarantine:
    it is held by the operator's) and resolves: the operator's hold stays until an operator
    clears it."""
    reg = QuarantineRegistry(tmp_path)
    held = reg.set(*SRC, since=T0, reason="temp in degF after a firmware update", by="jdoe")
    assert held is not None
    assert reg.set(*SRC, since=T0, reason="storm", by="data_quality/x", event_id="e1") is None
    later = T0 + timedelta(hours=1)
    assert reg.clear(*SRC, until=later, reason="ok", by="data_quality/x", event_id="e2") is None
    [still] = reg.active()
    assert (still.set_by, still.held_event_id) == ("jdoe", None)
    done = reg.clear(*SRC, until=later, reason="firmware rolled back", by="jdoe")
    assert done is not None and done.cleared_by == "jdoe" and reg.active() == []


def test_an_operators_clear_leaves_a_data_quality_condition_still_open_quarantined(
    tmp_path: Path,
) -> None:
    """An operator's hold, a duplicate storm opening on the source meanwhile, then the operator
    clears theirs: the source stays quarantined under the storm's event, from the operator's
    clear, until the storm's own clear."""
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="firmware fault", by="jdoe")
    assert reg.set(*SRC, since=T0, reason="storm", by="data_quality/x", event_id="e1") is None
    assert reg.set(*SRC, since=T0, reason="storm", by="data_quality/x", event_id="e1") is None
    lifted = T0 + timedelta(hours=1)
    assert reg.clear(*SRC, until=lifted, reason="fixed", by="jdoe") is not None
    [storm] = reg.active()
    assert (storm.set_by, storm.set_event_id, storm.reason) == ("data_quality/x", "e1", "storm")
    assert storm.since == reg.all()[0].until  # no gap between the two
    over = T0 + timedelta(hours=2)
    cleared = reg.clear(*SRC, until=over, reason="ok", by="data_quality/x", event_id="e2")
    assert cleared is not None and cleared.set_event_id == "e1" and reg.active() == []
    assert [h["action"] for h in reg.history()] == ["set", "hold", "clear", "clear"]
    assert reg.history()[2]["reopened"]["set_event_id"] == "e1"  # one write: never neither


def test_a_clear_before_the_start_ends_an_empty_interval_not_a_negative_one(
    tmp_path: Path,
) -> None:
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="r", by="dq")
    done = reg.clear(*SRC, until=T0 - timedelta(hours=1), reason="late", by="dq")
    assert done is not None and done.until == done.since


def test_a_null_unit_quarantines_the_whole_facility_source(tmp_path: Path) -> None:
    q = QuarantineRegistry(tmp_path).set(LABS, "hospital-a", None, since=T0, reason="r", by="dq")
    assert q is not None and q.unit_id == "*"
    assert q.covers(LABS, "hospital-a", "ICU", T0)
    assert not q.covers(LABS, "hospital-b", "ICU", T0)
    assert not q.covers(LABS, "hospital-a", "ICU", T0 - timedelta(seconds=1))


def test_a_parameters_quarantine_ignores_that_parameter_only_and_clears_apart_from_the_sources(
    tmp_path: Path,
) -> None:
    """A temperature probe in °F quarantines temp_c of the unit's source; a duplicate storm then
    quarantines the whole source (a second key, not held by the first); the storm's clear leaves
    temp_c quarantined, and temp_c's clear ends it."""
    reg = QuarantineRegistry(tmp_path)
    temp = reg.set(*SRC, since=T0, reason="degF", by="dq/u", event_id="u1", parameter="temp_c")
    assert temp is not None and temp.parameter == "temp_c"
    assert temp.covers(*SRC, T0, "temp_c") and not temp.covers(*SRC, T0, "heart_rate_bpm")
    assert temp.covers(*SRC, T0)  # the record is marked
    assert reg.set(*SRC, since=T0, reason="again", by="dq/s", parameter="temp_c") is None
    storm = reg.set(*SRC, since=T0 + timedelta(hours=1), reason="storm", by="dq/d", event_id="d1")
    assert storm is not None and storm.parameter is None
    assert storm.covers(*SRC, T0 + timedelta(hours=1), "heart_rate_bpm")
    ended = reg.clear(*SRC, until=T0 + timedelta(hours=2), reason="ok", by="dq/d", event_id="d2")
    assert ended is not None and ended.set_event_id == "d1"
    assert [q.key for q in reg.active()] == [(*SRC, "temp_c")]
    t = T0 + timedelta(hours=3)
    assert reg.clear(*SRC, until=t, reason="ok", by="dq/u", event_id="u2", parameter="temp_c")
    assert reg.active() == []
    history = reg.history()
    assert [(h["action"], h["parameter"]) for h in history] == [
        ("set", "temp_c"),
        ("set", None),
        ("clear", None),
        ("clear", "temp_c"),
    ]
    with pytest.raises(ValueError, match="not a parameter name"):
        reg.set(*SRC, since=T0, reason="r", by="x", parameter='temp"c')


def test_a_registry_written_before_parameters_loads_its_quarantines_as_the_whole_sources(
    tmp_path: Path,
) -> None:
    """quarantines.json as the version before wrote it (no `parameter`): its open quarantine is
    the whole source's, cleared by a clear without a parameter; the files written next carry
    the parameter (the TSV's fourth cell, `*` for every parameter)."""
    old = _legacy_entry(
        since="2026-01-05T08:00:00.000Z", reason="temp centred at 98", set_event_id="e1"
    )
    (tmp_path / JSON_FILE).write_text(json.dumps({"quarantines": [old]}, indent=1))
    reg = QuarantineRegistry(tmp_path)
    [q] = reg.active()
    assert q.parameter is None and q.key == (*SRC, None)
    assert q.covers(*SRC, T0, "heart_rate_bpm") and q.covers(*SRC, T0, "temp_c")
    # a parameter's quarantine is a key of its own: no hold on the old whole-source one
    temp = reg.set(*SRC, since=T0, reason="degF", by="dq", event_id="e2", parameter="temp_c")
    assert temp is not None and reg.all()[0] == q
    done = reg.clear(*SRC, until=T0 + timedelta(hours=1), reason="ok", by="dq", event_id="e3")
    assert done is not None and done.set_event_id == "e1"
    lines = [line.split("\t") for line in (tmp_path / TSV).read_text().splitlines()]
    assert [(c[3], c[5] == "-1") for c in lines] == [("*", False), ("temp_c", True)]


def test_the_files_are_replaced_whole_and_the_tsv_mirrors_the_json(tmp_path: Path) -> None:
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="tab\tand\nnewline in why", by="dq", event_id="e1")
    before = os.stat(tmp_path / TSV).st_ino
    reg.clear(*SRC, until=T0 + timedelta(minutes=5), reason="ok", by="dq")
    assert os.stat(tmp_path / TSV).st_ino != before, "a new file renamed into place"
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    (line,) = (tmp_path / TSV).read_text().splitlines()
    topic, facility, unit, parameter, since, until, note = line.split("\t")
    assert (topic, facility, unit, parameter) == (*SRC, "*")
    assert (int(since), int(until)) == (
        int(T0.timestamp() * 1000),
        int(T0.timestamp() * 1000) + 300_000,
    )
    assert json.loads(note)["reason"] == "tab\tand\nnewline in why"
    with pytest.raises(ValueError, match="tab or newline"):
        Quarantine(
            "a\tb", "f", "u", since="2026-01-05T08:00:00.000Z", reason="r", set_by="x"
        ).tsv_line()


def _quality_event(
    event_id: str, monitor: str, action: str, parameter: str | None, at: datetime, **evidence: Any
) -> dict[str, Any]:
    """The fields of a quality.event.v1 record the actuator reads."""
    return {
        "event_id": event_id,
        "monitor": monitor,
        "action": action,
        "source_topic": SRC[0],
        "facility_id": SRC[1],
        "unit_id": SRC[2],
        "parameter": parameter,
        "window_start": at,
        "reason": f"{monitor} {action}",
        "evidence_json": json.dumps(evidence),
    }


def test_the_actuator_quarantines_and_clears_the_scope_each_event_names(tmp_path: Path) -> None:
    """temp_c in °F, then a duplicate storm, the storm's end, the temperature's end (the monitor's
    actions: tests/unit/test_quality_monitors.py); and an event written before scopes, whose
    action was the whole source's, on a parameter's condition."""
    from sinks.quarantine import apply

    reg = QuarantineRegistry(tmp_path)
    hour = timedelta(hours=1)
    steps = [
        ("u1", "unit_conversion", "quarantine", "temp_c", T0, {"quarantine_scope": "temp_c"}),
        ("d1", "duplicate_storm", "quarantine", None, T0 + hour, {"quarantine_scope": "*"}),
        ("d2", "duplicate_storm", "clear", None, T0 + 2 * hour, {"quarantine_scope": "*"}),
    ]
    for eid, monitor, action, parameter, at, evidence in steps:
        assert apply(reg, _quality_event(eid, monitor, action, parameter, at, **evidence)) in (
            "set",
            "clear",
        )
    [temp] = reg.active()
    assert (temp.parameter, temp.set_event_id) == ("temp_c", "u1")
    cleared = _quality_event(
        "u2", "unit_conversion", "clear", "temp_c", T0 + 3 * hour, quarantine_scope="temp_c"
    )
    assert apply(reg, cleared) == "clear" and apply(reg, cleared) == "unchanged"
    assert reg.active() == []
    old = _quality_event("o1", "unit_conversion", "quarantine", "temp_c", T0, median=98.4)
    assert apply(reg, old) == "set"
    [whole] = reg.active()
    assert whole.parameter is None


def _legacy_entry(**fields: Any) -> dict[str, Any]:
    """An open quarantines.json entry as the version before scopes wrote it (no `parameter`,
    its data-quality event's scope a whole source's): set by data-quality event `old-1` unless
    `fields` say otherwise."""
    return {
        "source_topic": SRC[0],
        "facility_id": SRC[1],
        "unit_id": SRC[2],
        "since": "2026-01-05T07:00:00.000Z",
        "reason": "temperature in degF",
        "set_by": "data_quality/unit_conversion",
        "set_event_id": "old-1",
        "until": None,
        "cleared_by": None,
        "clear_event_id": None,
        "clear_reason": None,
        "held_event_id": None,
        "held_by": None,
        "held_reason": None,
        **fields,
    }


def test_a_job_without_its_savepoint_ends_no_whole_source_quarantine_set_before_scopes(
    tmp_path: Path,
) -> None:
    """A whole-source quarantine set before scopes by the old job's temp_c (°F) event; the
    data-quality job restarted without its savepoint re-derives the same window: its temp_c
    open has the old event's id (an event id has no scope), so the actuator skips it as
    applied; an unrelated spo2_pct condition opens and ends. The whole source stays quarantined
    (fail closed), and temp_c with it while the job still holds its °F condition; applied again
    (a replay) nothing changes. Before, that spo2_pct clear ended the old quarantine, and the
    °F temperatures were screened."""
    from sinks.quarantine import apply
    from udfs import quality

    hour_ms = 3_600_000
    t0 = int(T0.timestamp() * 1000)
    old_id = quality.event_id(*SRC, "unit_conversion", "temp_c", "open", t0 + hour_ms)
    (tmp_path / JSON_FILE).write_text(
        json.dumps({"quarantines": [_legacy_entry(set_event_id=old_id)]})
    )
    (tmp_path / "history.jsonl").write_text(
        json.dumps({"action": "set", "event_id": old_id}) + "\n"
    )
    reg = QuarantineRegistry(tmp_path)
    mon = quality.SourceMonitor(*SRC)

    def event(monitor: str, state: str, at_ms: int, parameter: str, **kw: Any) -> dict[str, Any]:
        ev = mon._event(
            monitor, state, at_ms, span=quality.Span(at_ms - hour_ms, at_ms, 60),
            statistic="s", observed=1.0, expected=0.0, threshold=1.0, reason="r", evidence={},
            parameter=parameter, **kw,
        )  # fmt: skip
        return {**ev, "window_start": datetime.fromtimestamp(ev["window_start_ms"] / 1000, UTC)}

    events = [
        event("unit_conversion", "open", t0 + hour_ms, "temp_c", quarantine=True),
        event("distribution_shift", "open", t0 + 2 * hour_ms, "spo2_pct", quarantine=True),
        event("distribution_shift", "resolved", t0 + 3 * hour_ms, "spo2_pct"),
    ]
    assert events[0]["event_id"] == old_id and events[2]["action"] == "clear"
    assert [apply(reg, e) for e in events] == ["unchanged", "set", "clear"]
    assert mon.quarantines("temp_c")
    [old] = reg.active()
    assert (old.parameter, old.set_event_id) == (None, old_id)
    later = T0 + timedelta(hours=5)
    assert any(q.covers(*SRC, later, "temp_c") for q in reg.all())
    before = reg.all()
    assert [apply(reg, e) for e in events] == ["unchanged"] * 3 and reg.all() == before
    reg.clear(*SRC, until=later, reason="probe replaced", by="jdoe")  # only an operator ends it
    assert reg.active() == []


def test_a_set_absorbed_by_an_open_quarantine_is_not_applied_again_on_a_replay(
    tmp_path: Path,
) -> None:
    """A duplicate storm's set on a source an earlier data-quality event holds changes nothing;
    a replay of it after that quarantine's clear changed nothing either. Before, the replay
    opened a whole-source quarantine that no clear would end."""
    from sinks.quarantine import apply

    reg = QuarantineRegistry(tmp_path)
    whole = {"quarantine_scope": "*"}
    steps = [
        _quality_event("a1", "duplicate_storm", "quarantine", None, T0, **whole),
        _quality_event("a2", "duplicate_storm", "quarantine", None, T0, **whole),
        _quality_event("a3", "duplicate_storm", "clear", None, T0 + timedelta(hours=1), **whole),
    ]
    assert [apply(reg, e) for e in steps] == ["set", "unchanged", "clear"]
    assert [apply(reg, e) for e in steps] == ["unchanged"] * 3 and reg.active() == []


def test_a_malformed_quality_event_is_dead_lettered_with_the_reason_and_the_next_is_applied(
    tmp_path: Path,
) -> None:
    """evidence_json not JSON, not an object, or a scope that is no field name: each is a dead
    letter (`malformed_event`), the events after it in the batch are applied and the offsets
    committed. It fails closed: a malformed `quarantine` quarantines the whole source, a
    malformed `clear` (of that source, or of a parameter's quarantine) changes nothing.
    Before, apply raised and the actuator stopped, its offsets never committed."""
    from schemas import codec
    from sinks import quarantine as actuator

    class Msg:
        def __init__(self, offset: int, event: dict[str, Any]) -> None:
            self._offset = offset
            rec = {
                "event_time": event["window_start"], "state": "open", "severity": "warning",
                "statistic": "s", "observed": None, "expected": None, "threshold": None,
                "window_end": event["window_start"] + timedelta(hours=1), "records": 60,
                "sample_record_ids": None, "opened_event_id": None, **event,
            }  # fmt: skip
            self._value = codec.encode(actuator.EVENTS.schema, rec)
            self._ts = codec.epoch_ms(event["window_start"])

        def error(self) -> None:
            return None

        def timestamp(self) -> tuple[int, int]:
            return (1, self._ts)

        def value(self) -> bytes:
            return self._value

        def topic(self) -> str:
            return actuator.EVENTS.name

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return self._offset

    bad = [
        "not json",
        "[1, 2]",
        json.dumps({"quarantine_scope": "Temp C"}),
        json.dumps({"quarantine_scope": ["temp_c"]}),
    ]
    later = T0 + timedelta(hours=1)
    events = [
        {
            **_quality_event(f"b{i}", "unit_conversion", "quarantine", "temp_c", T0),
            "evidence_json": e,
        }
        for i, e in enumerate(bad)
    ]
    events.append(
        _quality_event(
            "g1", "unit_conversion", "quarantine", "temp_c", T0, quarantine_scope="temp_c"
        )
    )
    events += [
        {
            **_quality_event(f"c{i}", "unit_conversion", "clear", "temp_c", later),
            "evidence_json": e,
        }
        for i, e in enumerate(bad[:2])
    ]
    msgs = [Msg(i, e) for i, e in enumerate(events)]

    class Consumer:
        committed = False

        def consume(self, num_messages: int, timeout: float) -> list[Msg]:
            return msgs

        def commit(self, asynchronous: bool) -> None:
            Consumer.committed = True

    produced: list[tuple[str, bytes]] = []

    class Producer:
        def produce(self, topic: str, key: bytes, value: bytes) -> None:
            produced.append((topic, value))

        def flush_or_raise(self) -> None:
            pass

    act = actuator.Actuator.__new__(actuator.Actuator)
    act.registry = QuarantineRegistry(tmp_path)
    act.stats = actuator.ActuatorStats()
    act.consumer, act.producer = Consumer(), Producer()
    act.dead_letter_topic = topics.DEAD_LETTER.name
    assert act.poll_batch() == len(msgs)
    letters = [codec.decode(topics.DEAD_LETTER.schema, v) for _, v in produced]
    malformed = [*range(len(bad)), len(bad) + 1, len(bad) + 2]
    assert [(d["reason_code"], d["source_offset"]) for d in letters] == [
        ("malformed_event", i) for i in malformed
    ]
    assert "quarantine_scope" in letters[2]["reason"]
    assert act.stats.dead_lettered == len(malformed)
    assert act.stats.applied == {"set": 2, "unchanged": len(bad) - 1}
    assert Consumer.committed
    whole, temp = act.registry.active()
    assert (whole.parameter, whole.set_event_id, whole.since) == (
        None,
        "b0",
        "2026-01-05T08:00:00.000Z",
    )
    assert "malformed" in whole.reason and (temp.parameter, temp.set_event_id) == ("temp_c", "g1")
    assert act.registry.all() == [whole, temp]


def _cli(root: Path, *args: str) -> str:
    env = {
        "PATH": "/usr/bin:/bin",
        "WARDFLOW_QUARANTINE_REGISTRY": str(root),
        "WARDFLOW_PHI_KEY": "k",
    }
    out = subprocess.run(
        [sys.executable, "-m", "udfs.quarantine", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_an_operator_sets_lists_and_clears_a_quarantine_from_the_command_line(
    tmp_path: Path,
) -> None:
    _cli(
        tmp_path,
        "set",
        *SRC,
        "--reason",
        "bedside check",
        "--by",
        "jdoe",
        "--at",
        "2026-01-05T08:00:00Z",
    )
    (listed,) = _cli(tmp_path, "list").splitlines()
    assert json.loads(listed)["set_by"] == "jdoe"
    _cli(tmp_path, "clear", *SRC, "--reason", "checked", "--by", "jdoe")
    assert _cli(tmp_path, "list") == ""
    (cleared,) = _cli(tmp_path, "list", "--all").splitlines()
    assert json.loads(cleared)["cleared_by"] == "jdoe"
    assert [h["action"] for h in QuarantineRegistry(tmp_path).history()] == ["set", "clear"]


def test_an_operator_quarantines_and_clears_one_parameter_from_the_command_line(
    tmp_path: Path,
) -> None:
    _cli(tmp_path, "set", *SRC, "--parameter", "temp_c", "--reason", "probe in degF", "--by", "jd")
    _cli(tmp_path, "set", *SRC, "--reason", "monitor reboot loop", "--by", "jd")
    listed = [json.loads(line) for line in _cli(tmp_path, "list").splitlines()]
    assert [(q["parameter"], q["reason"]) for q in listed] == [
        ("temp_c", "probe in degF"),
        (None, "monitor reboot loop"),
    ]
    _cli(tmp_path, "clear", *SRC, "--parameter", "temp_c", "--reason", "probe replaced")
    [left] = QuarantineRegistry(tmp_path).active()
    assert left.parameter is None
    history = QuarantineRegistry(tmp_path).history()
    assert [(h["action"], h["parameter"]) for h in history] == [
        ("set", "temp_c"),
        ("set", None),
        ("clear", "temp_c"),
    ]


def test_an_operators_parameter_that_is_no_numeric_field_of_the_topic_is_refused(
    tmp_path: Path,
) -> None:
    """`--parameter temperature` or `Temp_C` was accepted and nulled nothing (the screening
    job nulls a field by its name); now the command refuses it, naming the topic's fields."""
    env = {"PATH": "/usr/bin:/bin", "WARDFLOW_QUARANTINE_REGISTRY": str(tmp_path)}
    for cmd, topic, name in (
        ("set", VITALS, "temperature"),
        ("set", VITALS, "Temp_C"),
        ("clear", VITALS, "patient_token"),  # a field, but no value the screen reads
        ("set", VITALS, "event_time"),
        ("set", LABS, "temp_c"),
        ("set", "vitals.obs", "temp_c"),
    ):
        out = subprocess.run(
            [sys.executable, "-m", "udfs.quarantine", cmd, topic, "hospital-a", "ICU",
             "--parameter", name, "--reason", "r"],
            cwd=REPO, env={**env, "WARDFLOW_PHI_KEY": "k"}, capture_output=True, text=True,
            check=False,
        )  # fmt: skip
        assert out.returncode == 2, (name, out.stdout)
        assert "--parameter" in out.stderr and (name in out.stderr or topic in out.stderr)
    assert "temp_c" in out.stderr or "unknown topic" in out.stderr
    assert QuarantineRegistry(tmp_path).all() == []
    _cli(tmp_path, "set", VITALS, "hospital-a", "ICU", "--parameter", "gcs_total", "--reason", "r")
    assert [q.parameter for q in QuarantineRegistry(tmp_path).active()] == ["gcs_total"]


def test_an_operator_clears_a_parameter_that_is_open_on_the_source_whatever_its_name(
    tmp_path: Path,
) -> None:
    """`clear --parameter` is checked against the source's open quarantines, not the schema: a
    quarantine stored under a name `set` now refuses (`temperature`, set before the check)
    stays clearable; a parameter with nothing open on the source (another source's, or a field
    never quarantined) is refused, naming the source's open ones."""
    reg = QuarantineRegistry(tmp_path)
    reg.set(*SRC, since=T0, reason="old", by="jdoe", parameter="temperature")
    reg.set(*SRC, since=T0, reason="degF", by="jdoe", parameter="temp_c")
    other = (VITALS, "hospital-a", "ICU")
    reg.set(*other, since=T0, reason="shift", by="jdoe", parameter="spo2_pct")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        env = {"PATH": "/usr/bin:/bin", "WARDFLOW_QUARANTINE_REGISTRY": str(tmp_path)}
        return subprocess.run(
            [sys.executable, "-m", "udfs.quarantine", *args, "--reason", "r"],
            cwd=REPO, env={**env, "WARDFLOW_PHI_KEY": "k"}, capture_output=True, text=True,
            check=False,
        )  # fmt: skip

    assert run("set", *SRC, "--parameter", "temperature").returncode == 2
    for name in ("spo2_pct", "Temp_C", "heart_rate"):
        out = run("clear", *SRC, "--parameter", name)
        assert out.returncode == 2, (name, out.stdout)
        assert name in out.stderr and "temp_c, temperature" in out.stderr
    assert json.loads(run("clear", *SRC, "--parameter", "temperature").stdout)["until"]
    assert {q.parameter for q in QuarantineRegistry(tmp_path).active()} == {"temp_c", "spo2_pct"}
    assert run("clear", *other, "--parameter", "spo2_pct").returncode == 0


PROBE = """
import java.io.BufferedReader;
import java.io.InputStreamReader;
import org.apache.flink.table.data.StringData;

public class Probe {
  public static void main(String[] args) throws Exception {
    io.wardflow.udf.Quarantine q = new io.wardflow.udf.Quarantine();
    StringData path = StringData.fromString(args[0]);
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    for (String line; (line = in.readLine()) != null; ) {
      if (line.equals("wait")) {
        Thread.sleep(2100);  // past the function's RELOAD_MS
        System.out.println("-");
        System.out.flush();
        continue;
      }
      String[] c = line.split("\\t");
      StringData note = q.eval(path, StringData.fromString(c[0]), StringData.fromString(c[1]),
          StringData.fromString(c[2]), Long.parseLong(c[3]));
      System.out.println(note == null ? "-" : note.toString());
      System.out.flush();
    }
  }
}
"""


def _probe(tmp_path: Path, settings: Any, tsv: Path) -> subprocess.Popen[str]:
    """The JVM check in a process of its own: a line `topic facility unit ms` in, its note out."""
    from udfs import java_decode

    jar = java_decode.decoder_jar(settings)
    cp = os.pathsep.join(map(str, [jar, *java_decode._classpath(settings)]))
    (tmp_path / "Probe.java").write_text(PROBE)
    subprocess.run(
        ["javac", "-nowarn", "-cp", cp, "-d", str(tmp_path), str(tmp_path / "Probe.java")],
        check=True,
        capture_output=True,
    )
    return subprocess.Popen(
        ["java", "-cp", f"{cp}{os.pathsep}{tmp_path}", "Probe", str(tsv)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def _asker(probe: subprocess.Popen[str]) -> Any:
    assert probe.stdin is not None and probe.stdout is not None
    stdin, stdout = probe.stdin, probe.stdout

    def ask(topic: str, facility: str, unit: str, at: datetime) -> str | None:
        ms = int(at.timestamp() * 1000)
        stdin.write(f"{topic}\t{facility}\t{unit}\t{ms}\n")
        stdin.flush()
        got = stdout.readline().strip()
        return None if got == "-" else got

    return ask


def test_the_jvm_check_agrees_with_the_registry_and_rereads_it_when_it_changes(
    tmp_path: Path, settings: Any
) -> None:
    root = tmp_path / "registry"
    reg = QuarantineRegistry(root)
    reg.set(*SRC, since=T0, reason="r", by="dq", event_id="e1")
    reg.clear(*SRC, until=T0 + timedelta(hours=1), reason="ok", by="dq")
    reg.set(LABS, "hospital-a", None, since=T0, reason="labs", by="dq")
    # parameters' quarantines: alone, beside another parameter's, and beside the whole source's
    later = T0 + timedelta(minutes=30)
    reg.set(VITALS, "hospital-a", "ICU", since=T0, reason="degF", by="dq", parameter="temp_c")
    reg.set(VITALS, "hospital-a", "ICU", since=later, reason="r", by="dq", parameter="spo2_pct")
    reg.set(DEVICE, "hospital-b", "MICU", since=T0, reason="d", by="dq", parameter="temp_c")
    reg.set(DEVICE, "hospital-b", None, since=later, reason="storm", by="dq")
    # several covering a record, at positions below 64 and beyond (the note memoised by them)
    reg.set(VITALS, "hospital-c", "ICU", since=T0, reason="a", by="dq", parameter="temp_c")
    for _ in range(64):
        reg.set(VITALS, "hospital-c", "ICU", since=T0, reason="x", by="dq", parameter="spo2_pct")
        reg.clear(VITALS, "hospital-c", "ICU", until=T0, reason="x", by="dq", parameter="spo2_pct")
    reg.set(VITALS, "hospital-c", None, since=T0, reason="b", by="dq", parameter="gcs_total")
    reg.set(VITALS, "hospital-c", "ICU", since=later, reason="c", by="dq")
    probe = _probe(tmp_path, settings, root / TSV)
    assert probe.stdin is not None and probe.stdout is not None
    stdin, stdout = probe.stdin, probe.stdout
    ask = _asker(probe)

    def want(topic: str, facility: str, unit: str, at: datetime) -> str | None:
        return record_note(reg.covering(topic, facility, unit, at))

    try:
        cases = [
            (topic, facility, unit, T0 + timedelta(minutes=m))
            for topic in (DEVICE, LABS, VITALS)
            for facility in ("hospital-a", "hospital-b")
            for unit in ("MICU", "ICU")
            for m in (-1, 0, 59, 60, 61, 10_000)
        ]
        for case in cases:
            assert ask(*case) == want(*case), case
        assert sum(want(*c) is not None for c in cases) > 10
        both = json.loads(ask(VITALS, "hospital-a", "ICU", T0 + timedelta(minutes=45)) or "")
        assert both["parameters"] == ["spo2_pct", "temp_c"] and len(both["quarantines"]) == 2
        whole = json.loads(ask(DEVICE, "hospital-b", "MICU", T0 + timedelta(minutes=45)) or "")
        assert whole["parameters"] == ["*", "temp_c"]
        for m in (0, 45, 45, 0):  # twice each: built, then memoised
            many = (VITALS, "hospital-c", "ICU", T0 + timedelta(minutes=m))
            assert ask(*many) == want(*many)
        assert json.loads(ask(*many) or "")["parameters"] == ["gcs_total", "temp_c"]
        assert json.loads(ask(VITALS, "hospital-c", "ICU", later) or "")["parameters"] == [
            "*",
            "gcs_total",
            "temp_c",
        ]
        # a TSV the version before wrote (no parameter cell): every parameter's
        old = reg.active()[0]
        assert old.parameter is None
        cells = old.tsv_line().split("\t")
        (root / TSV).write_text("\t".join(cells[:3] + cells[4:]) + "\n")
        stdin.write("wait\n")
        stdin.flush()
        stdout.readline()
        got = json.loads(ask(LABS, "hospital-a", "ICU", T0 + timedelta(minutes=5)) or "")
        assert got == {"parameters": ["*"], "quarantines": [json.loads(old.note())]}
        assert ask(VITALS, "hospital-a", "ICU", T0 + timedelta(minutes=45)) is None
        reg.set(
            LABS, "hospital-a", "ICU", since=T0, reason="x", by="dq", parameter="lactate_mmol_l"
        )
        reg.clear(LABS, "hospital-a", None, until=T0, reason="ok", by="dq")
        stdin.write("wait\n")
        stdin.flush()
        stdout.readline()
        assert ask(LABS, "hospital-a", "MICU", T0 + timedelta(minutes=5)) is None
        assert ask(LABS, "hospital-a", "ICU", T0) == want(LABS, "hospital-a", "ICU", T0)
        assert json.loads(ask(LABS, "hospital-a", "ICU", T0) or "")["parameters"] == [
            "lactate_mmol_l"
        ]
    finally:
        stdin.close()
        probe.wait(timeout=10)


def test_the_jvm_check_over_a_long_history_of_cleared_quarantines_agrees_at_every_time(
    tmp_path: Path, settings: Any
) -> None:
    """The check meets only the open quarantines and the cleared ones ending after the record:
    a record of any time, during old quarantines, between them or now, gets the registry's note."""
    root = tmp_path / "registry"
    reg = QuarantineRegistry(root)
    units = ("ICU", "MICU", None)
    for i in range(150):  # a year of faults: overlapping, of units and of the whole facility
        unit, since = units[i % 3], T0 + timedelta(hours=7 * i)
        parameter = (None, "temp_c", "spo2_pct")[i % 5 % 3]
        reg.set(DEVICE, "hospital-a", unit, since=since, reason="f", by="dq", parameter=parameter)
        until = since + timedelta(hours=(i * 37) % 90 + 1)
        reg.clear(
            DEVICE, "hospital-a", unit, until=until, reason="ok", by="dq", parameter=parameter
        )
    reg.set(DEVICE, "hospital-a", "ICU", since=T0, reason="open", by="dq", parameter="map_mmhg")
    reg.set(DEVICE, "hospital-a", None, since=T0 + timedelta(hours=1000), reason="s", by="dq")
    probe = _probe(tmp_path, settings, root / TSV)
    ask = _asker(probe)
    try:
        times = [T0 + timedelta(hours=h, minutes=m) for h in range(-2, 1200, 3) for m in (0, 59)]
        notes = {}
        for unit in ("ICU", "MICU", "PACU"):
            for at in times:
                want = record_note(reg.covering(DEVICE, "hospital-a", unit, at))
                assert ask(DEVICE, "hospital-a", unit, at) == want, (unit, at)
                notes[want] = at
        several = [n for n in notes if n and len(json.loads(n)["quarantines"]) > 2]
        assert None in notes and len(several) > 3, "the history covers the cases it should"
    finally:
        assert probe.stdin is not None
        probe.stdin.close()
        probe.wait(timeout=10)
