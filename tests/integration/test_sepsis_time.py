"""Time is hard: out-of-order, duplicate, gapped, late and discharged-mid-window inputs, each on
its own crafted patient, through one run of the real screening job.

Topics have one partition and the sources emit a watermark after every record, so whether a
record is late depends only on the order it was produced in (with several partitions it also
depends on how the consumer interleaves them).
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from jobs import sepsis_screen
from jobs.feeds import replay
from jobs.runtime import kafka_io
from schemas import load_schema, topics
from schemas.settings import Settings
from tests import reference_screen as ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]

T0 = datetime(2026, 3, 2, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
HIGH = {"resp_rate_per_min": 26.0, "spo2_pct": 91.0, "heart_rate_bpm": 125.0, "sbp_mmhg": 95.0}
MEDIUM = {"resp_rate_per_min": 22.0, "heart_rate_bpm": 112.0, "temp_c": 38.5}  # NEWS2 5
NORMAL = {"resp_rate_per_min": 16.0, "spo2_pct": 97.0, "heart_rate_bpm": 75.0, "sbp_mmhg": 125.0}
V, L, A = topics.VITALS_OBSERVATION.name, topics.LABS_RESULT.name, topics.ADT_EVENT.name


def vitals(tok: str, at: datetime, values: dict[str, float]) -> tuple:
    rid = f"{tok}:{int((at - T0).total_seconds())}"
    rec: dict[str, Any] = {f.name: None for f in load_schema(V).fields if f.nullable} | {
        "observation_id": rid,
        "patient_token": tok,
        "facility_id": "hospital-t",
        "unit_id": "MICU",
        "event_time": at,
        "source": "test",
        **values,
    }
    return (V, rec)


def labs(tok: str, at: datetime, values: dict[str, float]) -> tuple:
    rec = {f.name: None for f in load_schema(L).fields if f.nullable} | {
        "result_id": f"{tok}:{at.isoformat()}:labs",
        "patient_token": tok,
        "facility_id": "hospital-t",
        "unit_id": "MICU",
        "event_time": at,
        "source": "test",
        **values,
    }
    return (L, rec)


def discharge(tok: str, at: datetime) -> tuple:
    rec = {f.name: None for f in load_schema(A).fields if f.nullable} | {
        "event_id": f"{tok}:discharge:{at.isoformat()}",
        "event_type": "discharge",
        "source_message_type": "test",
        "patient_token": tok,
        "facility_id": "hospital-t",
        "prior_unit_id": "MICU",
        "event_time": at,
        "source": "test",
    }
    return (A, rec)


def scenario() -> tuple[list[tuple], list[tuple]]:
    """(records in production order, the late ones among them). Records are produced in
    event-time order except where a scenario says otherwise."""
    planned: list[tuple[datetime, tuple]] = []

    def at(*items: tuple, produced: datetime | None = None) -> None:
        planned.extend((produced or i[1]["event_time"], i) for i in items)

    # Out of order across topics: the lactate drawn at T0+1h is resulted after the vitals of
    # T0+3h; within one topic, two readings 40 s apart arrive swapped (inside the 60 s bound).
    hypotensive = {"resp_rate_per_min": 24.0, "sbp_mmhg": 92.0, "heart_rate_bpm": 100.0}
    at(*(vitals("ooo", T0 + k * H, hypotensive) for k in range(4)))
    at(vitals("ooo", T0 + 4 * H + timedelta(seconds=40), hypotensive))
    at(vitals("ooo", T0 + 4 * H, hypotensive), produced=T0 + 4 * H + timedelta(seconds=41))
    at(labs("ooo", T0 + H, {"lactate_mmol_l": 4.1}), produced=T0 + 3 * H + timedelta(seconds=1))
    # Duplicates: every record of `dup` sent twice; `twin` is the same patient sent once.
    for tok, copies in (("dup", 2), ("twin", 1)):
        for k, vals in enumerate([MEDIUM, HIGH, HIGH, MEDIUM, NORMAL]):
            at(*[vitals(tok, T0 + k * H, vals)] * copies)
    # A gap: a 4 h silence breaks the sustained pattern and expires the heart rate after 2 h.
    g = T0 + 5 * H
    at(
        vitals("gap", g, HIGH),
        labs("gap", g + 1.5 * H, {"creatinine_mg_dl": 1.0}),
        labs("gap", g + 3 * H, {"creatinine_mg_dl": 1.0}),
        vitals("gap", g + 4 * H, HIGH),
    )
    # Discharged mid-window: the readings around a discharge do not pair up, and an open alert
    # is resolved by the discharge.
    at(
        vitals("dis", T0, HIGH | {"temp_c": 39.0}),
        discharge("dis", T0 + 0.5 * H),
        vitals("dis", T0 + H, HIGH),
    )
    at(vitals("open", T0, MEDIUM), vitals("open", T0 + H, MEDIUM), discharge("open", T0 + 2 * H))
    # Late: once the stream has moved 10 h on, a reading from T0+1.5h for `late` arrives.
    at(
        *(vitals("late", T0 + k * H, NORMAL) for k in range(3)),
        vitals("clock", T0 + 10 * H, NORMAL),
    )
    late = [vitals("late", T0 + 1.5 * H, HIGH)]
    at(*late, produced=T0 + 11 * H)
    planned.sort(key=lambda p: p[0])  # stable: equal times keep their order
    return [i for _, i in planned], late


@pytest.fixture(scope="module")
def timed(kafka: Settings) -> dict[str, Any]:
    settings = dataclasses.replace(kafka, watermark_on_event=True)
    prefix = f"time-{uuid.uuid4().hex[:8]}."
    topic_names = sepsis_screen.JOB.input_topics + sepsis_screen.JOB.output_topics
    kafka_io.ensure_topics(settings, topic_names, prefix=prefix, partitions=1)
    items, late = scenario()
    replay.produce_stream(settings, items, prefix=prefix, progress=False)
    sepsis_screen.JOB.run(settings, prefix=prefix, bounded=True)
    read = {
        t: kafka_io.read_records(settings, prefix + t, t) for t in sepsis_screen.JOB.output_topics
    }
    on_time = [i for i in items if i not in late]
    rows, events = ref.run(on_time)
    return {"items": items, "late": late, "rows": rows, "events": events, **read}


def _alerts(timed: dict[str, Any], tok: str) -> list[dict[str, Any]]:
    return sorted(
        (a for a in timed[topics.ALERT_V2.name] if a["patient_token"] == tok),
        key=lambda a: (a["event_time"], a["rule_id"], a["sequence"]),
    )


def _state(timed: dict[str, Any], record_id: str) -> dict[str, Any]:
    (row,) = [r for r in timed[topics.SEPSIS_SCREEN.name] if r["record_id"] == record_id]
    return row


def test_a_late_reading_is_dead_lettered_as_late_and_counted(timed: dict[str, Any]) -> None:
    dead = timed[topics.DEAD_LETTER.name]
    assert [d["reason_code"] for d in dead] == ["late"]
    assert "behind the watermark" in dead[0]["reason"]
    assert dead[0]["source_timestamp"] == T0 + 1.5 * H
    assert len(timed[topics.SEPSIS_SCREEN.name]) + len(dead) == len(timed["items"])
    assert not [a for a in timed[topics.ALERT_V2.name] if a["patient_token"] == "late"]


def test_labs_arriving_after_later_vitals_join_at_their_event_time(
    timed: dict[str, Any],
) -> None:
    (raised,) = [
        a
        for a in _alerts(timed, "ooo")
        if a["rule_id"] == "qsofa_lactate" and a["action"] == "raise"
    ]
    assert raised["opened_time"] == T0 + H
    assert _state(timed, "ooo:3600")["lactate_mmol_l"] == pytest.approx(4.1)
    assert _state(timed, "ooo:0")["lactate_mmol_l"] is None


def test_readings_swapped_within_the_out_of_orderness_bound_are_both_screened(
    timed: dict[str, Any],
) -> None:
    ids = [r["record_id"] for r in timed[topics.SEPSIS_SCREEN.name]]
    assert ids.count("ooo:14400") == ids.count("ooo:14440") == 1


def test_duplicated_records_raise_exactly_the_alerts_of_the_same_records_sent_once(
    timed: dict[str, Any],
) -> None:
    def shape(tok: str) -> list[tuple]:
        return [
            (
                a["rule_id"],
                a["action"],
                a["severity"],
                a["event_time"],
                a["hit_count"],
                a["score_value"],
                a["resolve_reason"],
            )
            for a in _alerts(timed, tok)
        ]

    assert shape("twin"), "the twin must raise alerts for the comparison to mean anything"
    assert shape("dup") == shape("twin")


def test_a_gap_longer_than_the_window_breaks_the_pattern_and_expires_values(
    timed: dict[str, Any],
) -> None:
    assert not [a for a in _alerts(timed, "gap") if a["rule_id"] == "news2_sustained_medium"]
    g = T0 + 5 * H
    mid = _state(timed, f"gap:{(g + 1.5 * H).isoformat()}:labs")
    after = _state(timed, f"gap:{(g + 3 * H).isoformat()}:labs")
    assert mid["heart_rate_bpm"] == 125.0 and mid["heart_rate_bpm_measured_time"] == g
    assert after["heart_rate_bpm"] is None and after["news2_params_scored"] == 0


def test_readings_either_side_of_a_discharge_do_not_form_a_pattern(
    timed: dict[str, Any],
) -> None:
    assert not [a for a in _alerts(timed, "dis") if a["rule_id"].startswith("news2")]
    before, after = _state(timed, "dis:0"), _state(timed, "dis:3600")
    assert before["temp_c"] == 39.0
    assert after["temp_c"] is None  # valid for 6 h, but not carried across the discharge


def test_a_discharge_resolves_the_open_alert_at_the_discharge_time(
    timed: dict[str, Any],
) -> None:
    events = [a for a in _alerts(timed, "open") if a["rule_id"] == "news2_sustained_medium"]
    assert [e["action"] for e in events] == ["raise", "resolve"]
    assert events[1]["resolve_reason"] == "discharged"
    assert events[1]["event_time"] == T0 + 2 * H


def test_every_crafted_patient_matches_the_offline_reference(timed: dict[str, Any]) -> None:
    def key(e: dict[str, Any]) -> tuple:
        evidence = ref.canonical_evidence(e["evidence_json"])
        return (e["alert_event_id"], e["action"], e["hit_count"], evidence)

    assert sorted(map(key, timed[topics.ALERT_V2.name])) == sorted(map(key, timed["events"]))
    assert len(timed[topics.SEPSIS_SCREEN.name]) == len(timed["rows"])
