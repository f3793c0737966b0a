"""The retraining loop's warehouse inputs on real rows (embedded ClickHouse): a monitor breach
read from `model_monitor`, the recent labelled states rebuilt from `sepsis_screen` and
`outcome_labels` as training data, and the champion's and challenger's shadow scores on the same
states for the promotion decision. 40 set A test-split patients (8 septic), real values, the
bundled versions' real ONNX scores, the patients' real sepsis labels."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pandas as pd
import pytest

from schemas.settings import Settings
from sinks import clickhouse as ch
from tests.real_warehouse import (
    MODEL,
    SET_A,
    T0_MS,
    load,
    outcome_labels,
    patients,
    real_rows,
)
from training import promote_decision, retrain
from training.features import hourly_features
from training.registry import bootstrap
from udfs.registry import Registry

pytestmark = pytest.mark.skipif(not SET_A.exists(), reason="../shared/data is not here")
T0 = datetime.fromtimestamp(T0_MS / 1000, UTC)


def alert_rate_events(scores: pd.DataFrame, version: str, reference: float) -> pd.DataFrame:
    """model.monitor.v1 rows: the version's daily alert rate on the loaded scores, breaching
    above twice its validation rate."""
    day = pd.to_datetime(scores["event_time"], utc=True).dt.floor("D")
    rows = []
    for start, g in scores.groupby(day):
        rate = float(g["above_threshold"].mean())
        rows.append(
            {
                "event_id": f"alert_rate-v{version}-{start:%Y%m%d}",
                "event_time": start + pd.Timedelta("1D"), "model_name": MODEL,
                "model_version": version, "role": "champion", "facility_id": "F01",
                "metric": "alert_rate", "feature": None, "value": rate,
                "threshold": 2 * reference, "reference": reference, "n": len(g),
                "breach": rate > 2 * reference,
                "severity": "critical" if rate > 2 * reference else "ok",
                "window_start": start, "window_end": start + pd.Timedelta("1D"),
                "evidence_json": "{}",
            }
        )  # fmt: skip
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def warehouse(clickhouse: Any, settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> Any:
    db = settings.clickhouse_database + "_rw"
    ch.migrate(clickhouse, db)
    reg = Registry(tmp_path_factory.mktemp("rw") / "registry")
    bootstrap(reg, MODEL)
    v1, v2 = reg.get(MODEL, "1"), reg.get(MODEL, "2")
    raw = patients(40, septic=8)
    champion = real_rows(v1, raw, "champion", alerts=False)
    challenger = real_rows(v2, raw, "challenger", alerts=False)
    reference = v1.spec["metrics"]["hours_above_threshold_pct"] / 100
    monitor = alert_rate_events(champion["model_scores"], "1", reference)
    load(
        clickhouse,
        db,
        {
            "sepsis_screen": champion["sepsis_screen"],
            "model_scores": pd.concat([champion["model_scores"], challenger["model_scores"]]),
            "outcome_labels": outcome_labels(raw),
            "model_monitor": monitor,
        },
    )
    return clickhouse, db, reg, raw, monitor


def test_the_newest_unhandled_breach_in_model_monitor_triggers_a_retrain(warehouse: Any) -> None:
    client, db, reg, _, monitor = warehouse
    breaches = retrain.warehouse_breaches(client, db, MODEL)
    expected = monitor[monitor["breach"]]
    assert len(expected) > 0, "8 septic of 40 patients: the alert rate doubles"
    assert sorted(b["event_id"] for b in breaches) == sorted(expected["event_id"])
    trigger = retrain.latest_breach(breaches, MODEL, retrain.handled_breaches(reg, MODEL))
    assert trigger is not None and trigger.kind == "monitor"
    newest = expected.sort_values("event_time").iloc[-1]
    assert trigger.breach_id == newest["event_id"] and "alert_rate" in trigger.reason
    assert retrain.latest_breach(breaches, MODEL, {str(e) for e in expected["event_id"]}) is None


def test_recent_states_and_their_outcomes_become_physionet_training_rows(warehouse: Any) -> None:
    client, db, _, raw, _ = warehouse
    frame = retrain.warehouse_frame(client, db, T0 - timedelta(days=1))
    assert frame["patient_id"].nunique() == 40
    raw = raw.assign(patient_id="warehouse:tok-" + raw["patient_id"].astype(str))
    raw["ICULOS"] = raw["ICULOS"] - raw.groupby("patient_id")["ICULOS"].transform("min") + 1
    both = frame.merge(raw, on=["patient_id", "ICULOS"], suffixes=("", "_real"))
    assert len(both) == len(frame)  # every rebuilt hour is a real hour of that patient
    # The labels are the real ones: positive from 6 h before onset.
    assert (both["SepsisLabel"] == both["SepsisLabel_real"]).all()
    assert frame.groupby("patient_id")["SepsisLabel"].max().sum() == 8
    measured = both["HR_real"].notna()
    assert (both.loc[measured, "HR"] - both.loc[measured, "HR_real"]).abs().max() < 1e-3
    # It trains like any PhysioNet frame: the features exist for every hour.
    features = hourly_features(frame)
    assert len(features) == len(frame) and features["label"].sum() > 0


def test_the_shadow_scores_of_both_versions_on_the_same_states_feed_the_decision(
    warehouse: Any,
) -> None:
    client, db, reg, _, _ = warehouse
    since = T0 - timedelta(days=1)
    shadow = promote_decision.warehouse_shadow(client, db, MODEL, since, "1", "2")
    assert shadow.frame["patient_id"].nunique() == 40 and shadow.frame["label"].sum() > 0
    assert "1→2" in shadow.source
    # another pair's scores are not this pair's evidence (a version made challenger again)
    assert promote_decision.warehouse_shadow(client, db, MODEL, since, "1", "3").frame.empty
    champion, challenger = reg.role(MODEL, "champion"), reg.role(MODEL, "challenger")
    d = promote_decision.decide(shadow, champion, challenger, margin=0.0, samples=50)
    print(d)
    assert d.states == len(shadow.frame) and not d.promote  # v2 failed its gate
    assert d.delta_ci95[0] <= d.delta_auroc <= d.delta_ci95[1]


def test_a_lab_resulted_in_a_later_hour_than_its_draw_is_a_measurement_of_that_hour(
    warehouse: Any,
) -> None:
    """A state's `_measured_time` is when the value was measured (the draw); the training row
    takes the value in the hour it became known, once, as PhysioNet's hourly rows chart it."""
    client, db, _, raw, _ = warehouse
    late_db = db + "_late"
    ch.migrate(client, late_db)
    [pid] = raw["patient_id"].drop_duplicates().head(1)
    states = client.query_df(
        f"SELECT * FROM {db}.sepsis_screen FINAL WHERE patient_token = %(t)s "
        "ORDER BY event_time LIMIT 3",
        parameters={"t": f"tok-{pid}"},
    )
    drawn = states["event_time"].iloc[0] + pd.Timedelta(minutes=30)  # resulted an hour later
    states["lactate_mmol_l"] = [None, 3.0, 3.0]  # then carried
    states["lactate_mmol_l_measured_time"] = [None, drawn, drawn]
    labels = outcome_labels(raw[raw["patient_id"] == pid])
    load(client, late_db, {"sepsis_screen": states, "outcome_labels": labels})
    frame = retrain.warehouse_frame(client, late_db, T0 - timedelta(days=1))
    assert frame["Lactate"].isna().tolist() == [True, False, True]
    assert frame["Lactate"].iloc[1] == 3.0


def test_a_version_holds_its_role_from_its_latest_taking_of_it(tmp_path: Any) -> None:
    """A challenger made challenger again (2, then 3, then 2) holds the role from the last
    change, not its registration: the window of its shadow scores starts there."""
    reg = Registry(tmp_path / "registry")
    bootstrap(reg, MODEL)  # champion 1, challenger 2
    reg.set_role(MODEL, "challenger", None, why="shadow off")
    reg.set_role(MODEL, "challenger", "2", why="shadow again")
    history = reg.root / MODEL / "history.jsonl"
    entries = reg.history(MODEL)
    hours = [T0 + timedelta(hours=i) for i in range(len(entries))]  # an hour between changes
    history.write_text(
        "".join(
            json.dumps(e | {"at": at.isoformat()}) + "\n"
            for e, at in zip(entries, hours, strict=True)
        )
    )
    assert entries[0]["roles"].get("champion") == "1"
    assert promote_decision.held_since(reg, MODEL, "challenger", "2") == hours[-1]
    assert promote_decision.held_since(reg, MODEL, "champion", "1") == hours[0]
    assert promote_decision.held_since(reg, MODEL, "champion", "2") is None
