"""The PhysioNet/CinC 2012 replay's mapping (jobs.feeds.physionet2012, schemas.physionet2012),
without Kafka: on hand-made stays and on the real set A."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from jobs.feeds import physionet2012 as replay
from schemas import codec, load_schema, topics
from schemas import physionet2012 as p12
from schemas.settings import Settings

KEY = b"wardflow-unit-tests-only"
SOURCE = "physionet2012:setA"
T0 = datetime(2026, 1, 5, 6, 0, tzinfo=UTC)
SET_A = Settings.resolve(None).physionet2012_dir / "setA_observations.parquet"
OUTCOME_WORDS = ("length_of_stay", "survival", "death", "saps", "sofa", "outcome", "mortality")


def stay(rows: list[tuple[int, str, float]], record_id: int = 140001) -> pd.DataFrame:
    desc = [(0, "RecordID", record_id), (0, "Age", 70), (0, "Gender", -1), (0, "Height", -1),
            (0, "ICUType", 3), (0, "Weight", -1)]  # fmt: skip
    all_rows = desc + rows
    return pd.DataFrame(
        {
            "record_id": pd.Series([record_id] * len(all_rows), dtype="int32"),
            "minute": pd.Series([m for m, _, _ in all_rows], dtype="int16"),
            "parameter": [p for _, p, _ in all_rows],
            "value": pd.Series([v for _, _, v in all_rows], dtype="float32"),
        }
    )


def mapped(rows: list[tuple[int, str, float]]) -> replay.Mapped:
    obs = stay(rows)
    return replay.map_stays(obs, {140001: T0}, key=KEY, source=SOURCE)


def test_a_stay_maps_to_an_admission_and_one_record_per_charted_minute() -> None:
    adt, vitals, labs, rejected = replay.stay_records(
        stay([(7, "HR", 88), (7, "GCS", 14), (7, "Urine", 120), (30, "BUN", 23),
              (30, "HCO3", 21), (30, "Mg", 2.0), (30, "Glucose", 140), (60, "MechVent", 1)]),
        T0, key=KEY, source=SOURCE,
    )  # fmt: skip
    assert rejected == []
    assert [(a["event_type"], a["unit_id"], a["event_time"]) for a in adt] == [
        ("admit", "MICU", T0)
    ]
    assert adt[0]["encounter_token"] and adt[0]["encounter_token"] != adt[0]["patient_token"]
    assert "140001" not in str(adt) + str(vitals) + str(labs)  # tokenised, never in clear
    assert [v["event_time"] for v in vitals] == [T0 + timedelta(minutes=m) for m in (7, 60)]
    first = vitals[0]
    assert (first["heart_rate_bpm"], first["gcs_total"], first["urine_output_ml"]) == (88, 14, 120)
    assert isinstance(first["gcs_total"], int) and vitals[1]["mechanical_ventilation"] is True
    (lab,) = labs
    assert (lab["bun_mg_dl"], lab["hco3_mmol_l"], lab["glucose_mg_dl"]) == (23, 21, 140)
    assert lab["magnesium_mmol_l"] == pytest.approx(2.0 / 2.4305)  # mg/dL → mmol/L
    assert lab["event_time"] == T0 + timedelta(minutes=30)
    for topic, records in ((topics.ADT_EVENT, adt), (topics.VITALS_OBSERVATION, vitals),
                           (topics.LABS_RESULT, labs)):  # fmt: skip
        for r in records:
            assert list(r) == topic.schema.field_names
            assert codec.validate(topic.schema, r) is None
            assert codec.decode(topic.schema, codec.encode(topic.schema, r))


def test_implausible_values_are_rejected_with_a_reason_and_the_rest_of_the_minute_publishes() -> (
    None
):
    m = mapped([(5, "HR", 90), (5, "Temp", -17.8), (5, "pH", 735), (5, "PaCO2", 40),
                (9, "GCS", 12.5), (9, "MechVent", 2), (9, "Bogus", 1),
                (9, "HR", float("nan"))])  # fmt: skip
    why = {(r["parameter"], r["reason_code"]) for r in m.rejected}
    assert why == {("Temp", "out_of_range"), ("pH", "out_of_range"), ("GCS", "bad_value"),
                   ("MechVent", "bad_value"), ("Bogus", "unknown_parameter"),
                   ("HR", "not_a_number")}  # fmt: skip
    temp = next(r for r in m.rejected if r["parameter"] == "Temp")
    assert temp["reason"] == "Temp=-17.8 → temp_c=-17.8 outside [14, 46]"
    assert [(v["heart_rate_bpm"], v["temp_c"]) for v in m.vitals] == [(90, None)]
    assert [(lab["paco2_mmhg"], lab["ph"]) for lab in m.labs] == [(40, None)]


def test_invasive_pressure_wins_urine_sums_and_a_conflicting_duplicate_is_rejected() -> None:
    m = mapped([(3, "NISysABP", 120), (3, "SysABP", 131), (4, "NISysABP", 118),
                (3, "Urine", 40), (3, "Urine", 60), (3, "HR", 80), (3, "HR", 80),
                (3, "HR", 95)])  # fmt: skip
    by_minute = {v["event_time"]: v for v in m.vitals}
    at3, at4 = by_minute[T0 + timedelta(minutes=3)], by_minute[T0 + timedelta(minutes=4)]
    assert (at3["sbp_mmhg"], at4["sbp_mmhg"]) == (131, 118)
    assert at3["urine_output_ml"] == 100 and at3["heart_rate_bpm"] == 80
    assert m.outcomes["superseded"] == 1 and m.outcomes["duplicate"] == 1
    assert [(r["parameter"], r["reason_code"]) for r in m.rejected] == [
        ("HR", "conflicting_duplicate")
    ]


def test_minus_one_descriptors_are_missing_never_minus_one() -> None:
    m = mapped([(0, "Weight", -1), (10, "DiasABP", -1), (10, "HR", 70)])
    assert m.outcomes["missing"] == 5  # Gender, Height, Weight twice, DiasABP
    (row,) = m.static.to_dict("records")
    assert row["age_years"] == 70 and pd.isna(row["female"]) and pd.isna(row["height_cm"])
    assert all(v["weight_kg"] is None and v["dbp_mmhg"] is None for v in m.vitals)
    published = [v for r in m.vitals + m.labs for v in r.values()]
    assert -1 not in published and -1.0 not in published


def test_every_input_row_is_counted_once() -> None:
    rows = [(5, "HR", 90), (5, "Temp", 0.0), (5, "NIMAP", 70), (5, "MAP", 72), (6, "HR", -1)]
    m = mapped(rows)
    assert m.balanced and m.input_rows == len(rows) + 6
    assert sum(m.outcomes.values()) == m.input_rows
    assert m.outcomes["rejected"] == len(m.rejected) == sum(m.rejected_by.values()) == 2


def test_no_outcome_is_ever_published_on_a_clinical_topic() -> None:
    outcomes = pd.DataFrame(
        {"In-hospital_death": [1], "Length_of_stay": [9], "Survival": [6]},
        index=pd.Index([140001], name="record_id"),
    )
    m = replay.map_stays(stay([(5, "HR", 90), (2880, "HR", 91)]), {140001: T0}, key=KEY,
                         source=SOURCE, outcomes=outcomes)  # fmt: skip
    names = {k.lower() for r in m.adt + m.vitals + m.labs for k in r}
    assert not {n for n in names if any(w in n for w in OUTCOME_WORDS)}
    assert [a["event_type"] for a in m.adt] == ["admit"]  # no discharge: its time is an outcome
    assert "_outcomes" not in inspect.getsource(p12)  # the mapping never names the outcome files
    (label,) = m.labels  # the outcome goes to the label topic only, known at the hospital discharge
    assert (label["outcome"], label["occurred"]) == ("death", True)
    assert label["known_at"] == T0 + timedelta(days=9)
    assert label["outcome_time"] == T0 + timedelta(days=6) and label["outcome_lead_h"] == 72.0
    assert (
        replay.map_stays(stay([(5, "HR", 90)]), {140001: T0}, key=KEY, source=SOURCE).labels == []
    )
    for t in (topics.ADT_EVENT, topics.VITALS_OBSERVATION, topics.LABS_RESULT):
        assert not [
            f for f in load_schema(t.name).field_names if any(w in f for w in OUTCOME_WORDS)
        ]


@pytest.fixture(scope="module")
def set_a() -> pd.DataFrame:
    if not SET_A.exists():
        pytest.skip(f"PhysioNet 2012 set A not found at {SET_A}")
    return replay.load(Settings.resolve(None, data_dir=SET_A.parents[1]), "A")


def test_set_a_maps_whole_with_counts_that_add_up_and_valid_records(set_a: pd.DataFrame) -> None:
    plan = replay.ReplayPlan(stays=0)
    m = replay.map_stays(set_a, replay.anchors(set_a["record_id"], plan), key=KEY, source=SOURCE)
    assert m.balanced and m.input_rows == len(set_a) == 1_757_980
    assert len(m.adt) == 4000 and m.outcomes["published"] > 1_600_000
    assert m.outcomes["rejected"] < 0.01 * m.input_rows
    # GCS, urine, BUN and HCO3 land in the new fields
    assert sum(v["gcs_total"] is not None for v in m.vitals) > 50_000
    assert sum(v["urine_output_ml"] is not None for v in m.vitals) > 100_000
    assert sum(v["bun_mg_dl"] is not None for v in m.labs) > 13_000
    assert sum(v["hco3_mmol_l"] is not None for v in m.labs) > 13_000
    for topic, records in ((topics.VITALS_OBSERVATION, m.vitals), (topics.LABS_RESULT, m.labs)):
        for r in records[::97]:
            assert codec.validate(topic.schema, r) is None, r
    assert {a["unit_id"] for a in m.adt} == {"CCU", "CSRU", "MICU", "SICU"}


def test_the_command_line_dry_run_prints_balanced_counts(
    set_a: pd.DataFrame, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import json

    replay.main(
        ["--stays", "25", "--dry-run", "--phi-key", "k", "--data-dir", str(SET_A.parents[1])]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary["balanced"] and summary["records"][topics.ADT_EVENT.name] == 25
    assert summary["records"][topics.LABEL_OUTCOME.name] == 25  # a death label per stay


def test_each_stay_gets_a_death_label_equal_to_its_outcome_under_the_token_its_scores_carry(
    set_a: pd.DataFrame,
) -> None:
    import json
    import re

    from jobs import model_scoring
    from jobs.feeds import labels
    from schemas import phi

    plan = replay.ReplayPlan(stays=60, seed=7)
    obs = replay.select_stays(set_a, plan)
    anchor_of = replay.anchors(obs["record_id"], plan)
    settings = Settings.resolve(None, data_dir=SET_A.parents[1])
    outcomes = replay.load_outcomes(replay.outcomes_file(settings, "A"))
    m = replay.map_stays(obs, anchor_of, key=KEY, source=SOURCE, outcomes=outcomes)
    rids = sorted(anchor_of)
    truth = outcomes.loc[rids]
    token_of = {phi.token(KEY, SOURCE, str(r)): r for r in rids}
    assert len(m.labels) == len({lb["entity_token"] for lb in m.labels}) == len(rids) == 60
    got = {token_of[lb["entity_token"]]: lb for lb in m.labels}
    assert {r: int(got[r]["occurred"]) for r in rids} == truth["In-hospital_death"].to_dict()
    assert 0 < truth["In-hospital_death"].sum() < 60  # both outcomes occur in this subset
    last: dict[str, datetime] = {}
    for r in m.vitals + m.labs:
        last[r["patient_token"]] = max(last.get(r["patient_token"], T0), r["event_time"])
    for rid, lb in got.items():
        los_d, survival_d = truth.at[rid, "Length_of_stay"], truth.at[rid, "Survival"]
        assert lb["known_at"] >= last[lb["entity_token"]]  # after the stay's last record
        if los_d * 24 * 60 > 2880:
            assert lb["known_at"] == anchor_of[rid] + timedelta(days=int(los_d))
        if lb["occurred"]:
            assert lb["outcome_time"] <= lb["known_at"]
            assert lb["outcome_lead_h"] == (lb["known_at"] - lb["outcome_time"]) / timedelta(
                hours=1
            )
            if survival_d * 24 * 60 > 2880:
                assert lb["outcome_time"] == anchor_of[rid] + timedelta(days=int(survival_d))
        else:
            assert lb["outcome_time"] is None and lb["outcome_lead_h"] is None
    # the token the scoring job scores a stay model under: entity 'stay', the stay's patient token
    sql = model_scoring.score_inputs_sql(("icu-mortality",), ())
    assert re.search(r"'stay' AS entity, patient_token AS entity_key", sql)
    scored = {r["patient_token"] for r in m.vitals + m.labs}
    assert {lb["entity_token"] for lb in m.labels} == scored
    assert all(lb["entity"] == "stay" and lb["patient_token"] == lb["entity_token"]
               for lb in m.labels)  # fmt: skip
    bundled = Path(__file__).parents[2] / "training" / "bundled" / "icu-mortality"
    spec = json.loads((bundled / "1-gbt" / "spec.json").read_text())
    assert spec["entity"] == "stay" and spec["monitor"]["label"]["outcome"] == "death"
    encoded = labels.encode(m.labels)
    assert isinstance(encoded, list) and len(encoded) == 60
    assert [e[1]["known_at"] for e in encoded] == sorted(lb["known_at"] for lb in m.labels)
