"""The Diabetes 130 discharge replay's readmission labels (jobs.feeds.diabetes130), without
Kafka, on real encounters of the UCI file: one per scored discharge, equal to `readmitted`,
known 30 days after the discharge, under the token the readmission score carries."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from feature_store import encounter_facts as facts
from jobs.feeds import diabetes130, labels
from schemas import phi
from schemas.settings import Settings

KEY = b"wardflow-unit-tests-only"
SETTINGS = Settings.resolve(None)
BUNDLED = Path(__file__).parents[2] / "training" / "bundled" / "readmission-30d"


@pytest.fixture(scope="module")
def encounters() -> tuple[pd.DataFrame, pd.Series[Any], diabetes130.Mapped]:
    if not SETTINGS.diabetes130_file.exists():
        pytest.skip(f"Diabetes 130 is not at {SETTINGS.diabetes130_file}")
    frame = diabetes130.load(SETTINGS, encounters=600)
    readmitted = diabetes130.load_outcomes(SETTINGS)
    return frame, readmitted, diabetes130.map_encounters(frame, key=KEY, readmitted=readmitted)


def test_each_scored_discharge_gets_a_readmission_label_equal_to_readmitted_within_30_days(
    encounters: tuple[pd.DataFrame, pd.Series[Any], diabetes130.Mapped],
) -> None:
    frame, readmitted, m = encounters
    assert "readmitted" not in frame  # the replayed frame never holds the outcome
    truth = readmitted.loc[frame[facts.ENCOUNTER_KEY]]
    eligible = facts.eligible(frame).to_numpy()
    token_of = {
        phi.token(KEY, f"{diabetes130.SOURCE}:encounter", str(e)): e
        for e in frame[facts.ENCOUNTER_KEY]
    }
    got = {token_of[lb["entity_token"]]: lb for lb in m.labels}
    assert len(m.labels) == len(got) == int(eligible.sum()) < len(frame)  # expired: no label
    expected = (truth[eligible] == "<30").to_dict()
    assert {e: lb["occurred"] for e, lb in got.items()} == expected
    assert 0 < sum(expected.values()) < len(expected)  # both outcomes occur in this subset
    discharge = {
        a["encounter_token"]: a["event_time"] for a in m.adt if a["event_type"] == "discharge"
    }
    for lb in m.labels:
        assert lb["known_at"] == discharge[lb["entity_token"]] + timedelta(days=30)
        assert lb["outcome_time"] is None and lb["outcome_lead_h"] is None  # no readmission date
    assert [lb["known_at"] for lb in m.labels] == sorted(lb["known_at"] for lb in m.labels)
    encoded = labels.encode(m.labels)
    assert isinstance(encoded, list) and len(encoded) == len(m.labels)


def test_readmission_labels_carry_the_token_the_discharge_score_is_keyed_by(
    encounters: tuple[pd.DataFrame, pd.Series[Any], diabetes130.Mapped],
) -> None:
    from jobs import model_scoring

    _, _, m = encounters
    sql = model_scoring.score_inputs_sql((), ("readmission-30d",))
    assert re.search(r"'encounter' AS entity,\s+encounter_token AS entity_key", sql)
    # the scored discharges are those whose facts were pushed (the expired are left unscored)
    assert [lb["entity_token"] for lb in m.labels] != []
    assert {lb["entity_token"] for lb in m.labels} == set(m.facts["encounter_token"])
    patient_of = {a["encounter_token"]: a["patient_token"] for a in m.adt}
    assert all(
        lb["entity"] == "encounter" and lb["patient_token"] == patient_of[lb["entity_token"]]
        for lb in m.labels
    )
    spec = json.loads((BUNDLED / "1-gbt" / "spec.json").read_text())
    assert (
        spec["entity"] == "encounter" and spec["monitor"]["label"]["outcome"] == "readmission_30d"
    )


def test_the_command_line_dry_run_counts_the_labels(capsys: pytest.CaptureFixture[str]) -> None:
    if not SETTINGS.diabetes130_file.exists():
        pytest.skip(f"Diabetes 130 is not at {SETTINGS.diabetes130_file}")
    diabetes130.main(["--encounters", "300", "--dry-run", "--phi-key", "k"])
    summary = json.loads(capsys.readouterr().out)
    assert summary["readmission_labels"] == summary["facts_pushed"] > 0
    assert 0 < summary["readmitted_within_30d"] < summary["readmission_labels"]
