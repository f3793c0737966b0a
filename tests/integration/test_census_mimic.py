"""The MIMIC-IV demo's real transfers through the real census job, checked at every minute
boundary against a census computed straight from the table."""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections import Counter
from pathlib import Path

import pytest

from jobs import bed_census
from jobs.feeds import mimic_adt, replay
from jobs.runtime import kafka_io
from schemas import topics
from schemas.capacity import ALL_UNITS
from schemas.settings import Settings
from tests import reference_census as ref

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def run(kafka: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict:
    table = mimic_adt.load_transfers(kafka.data_dir)
    cap_file = Path(tmp_path_factory.mktemp("census")) / "capacity.json"
    cap_file.write_text(json.dumps(mimic_adt.capacity(table).to_dict()))
    s = dataclasses.replace(kafka, capacity_file=cap_file, job_name="census-mimic-test")
    prefix = f"t-census-{uuid.uuid4().hex[:8]}."
    kafka_io.ensure_topics(s, [topics.ADT_EVENT.name], prefix=prefix)
    events = mimic_adt.events(table, s.require_phi_key())
    sent = replay.produce_stream(
        s, ((topics.ADT_EVENT.name, e) for e in events), prefix=prefix, progress=False
    )
    bed_census.JOB.run(s, prefix=prefix, bounded=True)
    out = {
        t: kafka_io.read_records(s, prefix + t, t)
        for t in (
            topics.CENSUS_UNIT.name,
            topics.CENSUS_FLOW.name,
            topics.CENSUS_EVENT.name,
            topics.DEAD_LETTER.name,
        )
    }
    yield {"table": table, "events": events, "sent": sent, **out}
    kafka_io.delete_topics(s, [topics.ADT_EVENT.name, *bed_census.JOB.output_topics], prefix=prefix)


def test_census_of_every_unit_equals_the_table_at_every_minute_boundary(run: dict) -> None:
    stays = mimic_adt.stays(run["table"])
    census = run[topics.CENSUS_UNIT.name]
    assert {r["unit_id"] for r in census} == set(stays.careunit) | {ALL_UNITS}
    for unit, unit_stays in stays.groupby("careunit"):
        ends, occupied = ref.series(census, unit)
        assert ref.mismatches(ref.StepCensus.from_stays(unit_stays), ends, occupied) == []
    ends, occupied = ref.series(census, ALL_UNITS)
    assert ref.mismatches(ref.StepCensus.from_stays(stays), ends, occupied) == []


def test_census_is_never_negative_and_surge_follows_occupancy(run: dict) -> None:
    for r in run[topics.CENSUS_UNIT.name]:
        assert r["occupied_beds"] >= 0
        assert r["occupancy_pct"] == pytest.approx(100 * r["occupied_beds"] / r["capacity_beds"])
        assert r["surge_level"] == sum(r["occupancy_pct"] >= t for t in (85, 92, 100))


def test_every_event_is_applied_and_flows_count_each_move_once(run: dict) -> None:
    assert run["sent"] == len(run[topics.CENSUS_EVENT.name]) + len(run[topics.DEAD_LETTER.name])
    assert run[topics.DEAD_LETTER.name] == []
    kinds = Counter(e["event_type"] for e in run["events"])
    flows = [f for f in run[topics.CENSUS_FLOW.name] if f["scope"] == "facility"]
    assert sum(f["arrivals"] for f in flows) == kinds["admit"]
    assert sum(f["discharges"] for f in flows) == kinds["discharge"]
    unit_moves = sum(
        f["transfers_in"] for f in run[topics.CENSUS_FLOW.name] if f["scope"] == "unit"
    )
    same_unit = sum(
        1
        for e in run["events"]
        if e["event_type"] == "transfer" and e["unit_id"] == e["prior_unit_id"]
    )
    assert unit_moves == kinds["transfer"] - same_unit
