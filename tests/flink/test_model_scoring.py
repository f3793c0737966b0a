"""The catalog scoring job on the MiniCluster over real ICU stays (PhysioNet 2012 set B, replayed
onto the canonical topics): every vitals and lab state of every stay is scored by each stay
model's champion and shadow challenger, and each stay once at each hour its models report at
(24 and 48 h); the stay's descriptors come from Feast, and the stream's scores equal the offline
definition's (feature_store/icu_stay.py + onnxruntime) at every state and at every hour. One
patient is discharged and admitted again under the same token: the readmission is a stay of its
own.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

from feature_store import icu_stay
from feature_store.online import catalog_lookups
from jobs import model_scoring
from jobs.feeds import physionet2012 as replay
from schemas import codec, phi
from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from tests import reference_screen
from tests.flink_harness import build_bounded, event_time_diamonds, plan, run_bounded
from tests.stay_records import as_observations
from training.registry import BUNDLED, bootstrap
from udfs.model_set import entity_lookup
from udfs.registry import Registry

pytestmark = pytest.mark.slow

STAYS = 6
PAST_TRAINED_HOURS = "past-48h"  # a state after the stay models' last reported hour
MODELS = ("icu-mortality", "length-of-stay")
SOURCE = replay.source_of("B")
DISCHARGED_AT_H = 48.0  # the last stay's discharge: at its 48-h report, which it stops
READMITTED_AFTER_H = 0.0  # the discharged stay's token is admitted again at the discharge's ms
BEFORE_ADMISSION_H = (
    2.0  # a vitals record of the second stay's token this long before its admission
)
CANCELLED_DISCHARGE_AT_H = (30.0, 31.0)  # the third stay: discharged, then the discharge cancelled
ENDED_AT_H = 40.0  # the fourth stay: discharged for good while its records go on to 48 h
MERGED_AT_H = 36.0  # the fifth stay's record merged into another's (HL7 A40), its records go on
OTHER_VISIT_AT_H = 20.0  # the sixth stay: its patient's emergency visit discharged (A03)
STALE_AT_H = 22.0  # and an old visit's admission and discharge recorded again then
STALE_DAYS = 10.0  # ... that long after they happened (a FHIR Encounter's late version)
REPORT_HOURS = (24.0, 48.0)
AT_24H = "length-of-stay-at-24h"  # the LOS model again, with a `stay_hours` trigger: 24 h only


@pytest.fixture(scope="module")
def stays(settings: Settings) -> pd.DataFrame:
    path = settings.physionet2012_dir / "setB_observations.parquet"
    if not path.exists():
        pytest.skip(f"PhysioNet 2012 set B is not in {path.parent}")
    obs = replay.load(settings, "B", path)
    ids = np.sort(obs["record_id"].unique())[: STAYS + 1]  # the last: a readmission
    return obs[obs["record_id"].isin(ids)]


@pytest.fixture(scope="module")
def run(
    settings: Settings, stays: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    folder = tmp_path_factory.mktemp("model-scoring")
    s = dataclasses.replace(
        settings,
        model_registry=folder / "registry",
        feast_dir=folder / "feast",
        feast_online_store="sqlite",
        catalog_models=",".join((*MODELS, AT_24H)),
    )
    reg = Registry(s.model_registry)
    for m in MODELS:
        assert bootstrap(reg, m)
    at_24h = folder / "at-24h"
    shutil.copytree(sorted((BUNDLED / "length-of-stay").iterdir())[0], at_24h)
    spec = json.loads((at_24h / "spec.json").read_text())
    del spec["report_at_hours"]
    spec |= {"name": AT_24H, "trigger": {"kind": "stay_hours", "hours": [24]}}
    (at_24h / "spec.json").write_text(json.dumps(spec))
    reg.set_role(AT_24H, "champion", reg.register(at_24h).version, why="a stay_hours trigger")
    # the mortality model's bundled version again, as its shadow challenger
    built = sorted((BUNDLED / "icu-mortality").iterdir())[0]
    shadow = folder / "shadow"
    shutil.copytree(built, shadow)
    reg.set_role("icu-mortality", "challenger", reg.register(shadow).version, why="shadow")

    ids, again = np.sort(stays["record_id"].unique())[:STAYS], int(stays["record_id"].max())
    main = stays[stays["record_id"].isin(ids)]
    anchors = replay.anchors(ids, replay.ReplayPlan(stays=0))
    mapped = replay.map_stays(main, anchors, key=s.phi_key, source=SOURCE)
    tokens = {int(r): phi.token(s.phi_key, SOURCE, str(int(r))) for r in ids}
    _push_descriptors(s, reg, main, anchors)
    inputs: dict[str, list[dict[str, Any]]] = {"adt": [], "vitals": [], "labs": []}
    name_of = {t.name: n for n, t in model_scoring.INPUTS.items()}
    for topic, record in replay.stream(mapped):
        inputs[name_of[topic]].append(record)
    # another set B stay, as the discharged patient's readmission: the same token, a new
    # encounter, admitted READMITTED_AFTER_H after the discharge (in the same millisecond: the
    # discharge ends the stay before)
    discharged = tokens[int(ids[-1])]
    readmitted = anchors[int(ids[-1])] + pd.Timedelta(hours=DISCHARGED_AT_H + READMITTED_AFTER_H)
    own = phi.token(s.phi_key, SOURCE, str(again))
    for topic, record in replay.stream(
        replay.map_stays(
            stays[stays["record_id"] == again], {again: readmitted}, key=s.phi_key, source=SOURCE
        )
    ):
        assert record["patient_token"] == own
        inputs[name_of[topic]].append(record | {"patient_token": discharged})
    # the last stay is discharged at 30 h; a stay is admitted that never has a record
    admit = next(a for a in inputs["adt"] if a["patient_token"] == discharged)
    discharge = admit | {
        "event_id": admit["event_id"].replace(":admit", ":discharge"),
        "event_type": "discharge",
        "unit_id": None,
        "prior_unit_id": admit["unit_id"],
        "event_time": admit["event_time"] + pd.Timedelta(hours=DISCHARGED_AT_H),
    }
    empty = admit | {"event_id": "no-records:admit", "patient_token": "no-records"}
    # the third stay is discharged at 30 h and the discharge cancelled at 31 h (HL7 A03, A13):
    # the stay goes on
    third = tokens[int(ids[2])]
    third_admit = next(a for a in inputs["adt"] if a["patient_token"] == third)
    taken_back = [
        discharge
        | {
            "event_id": f"{third}:{kind}",
            "event_type": kind,
            "patient_token": third,
            "encounter_token": third_admit["encounter_token"],
            "prior_unit_id": third_admit["unit_id"],
            "unit_id": None if kind == "discharge" else third_admit["unit_id"],
            "event_time": anchors[int(ids[2])] + pd.Timedelta(hours=h),
        }
        for kind, h in zip(("discharge", "cancel_discharge"), CANCELLED_DISCHARGE_AT_H, strict=True)
    ]
    # the fourth stay is discharged at 40 h for good, and its monitor goes on charting
    fourth = tokens[int(ids[3])]
    ended = taken_back[0] | {
        "event_id": f"{fourth}:discharge",
        "patient_token": fourth,
        "encounter_token": next(a for a in inputs["adt"] if a["patient_token"] == fourth)[
            "encounter_token"
        ],
        "event_time": anchors[int(ids[3])] + pd.Timedelta(hours=ENDED_AT_H),
    }
    # the fifth stay's token (a trauma alias) is merged into another record at 36 h
    fifth = tokens[int(ids[4])]
    fifth_admit = next(a for a in inputs["adt"] if a["patient_token"] == fifth)
    merged = fifth_admit | {
        "event_id": f"{fifth}:merged_away",
        "event_type": "merged_away",
        "encounter_token": None,
        "event_time": anchors[int(ids[4])] + pd.Timedelta(hours=MERGED_AT_H),
    }
    # the sixth stay's patient has their emergency visit discharged from the emergency
    # department at 20 h (another encounter, another unit: jobs/runtime/stays.py): the stay goes on
    sixth = tokens[int(ids[5])]
    emergency = taken_back[0] | {
        "event_id": f"{sixth}:emergency:discharge",
        "patient_token": sixth,
        "encounter_token": f"{sixth}:emergency",
        "unit_id": "ED",
        "prior_unit_id": None,
        "event_time": anchors[int(ids[5])] + pd.Timedelta(hours=OTHER_VISIT_AT_H),
    }
    inputs["adt"] = sorted(
        [*inputs["adt"], discharge, empty, *taken_back, ended, merged, emergency],
        key=lambda a: a["event_time"],
    )
    # the first stay's vitals exactly at its 24-h cut-off, which the 24-h score includes
    first = tokens[int(ids[0])]
    at_24h = next(v for v in inputs["vitals"] if v["patient_token"] == first) | {
        "observation_id": "exactly-24h",
        "event_time": anchors[int(ids[0])] + pd.Timedelta(hours=24),
        "heart_rate_bpm": 165.0,
        "sbp_mmhg": 72.0,
        "resp_rate_per_min": 34.0,
    }
    # the second stay's token charted before its admission (an emergency department's vitals):
    # a stay of its own, which the admission ends
    second = tokens[int(ids[1])]
    before = anchors[int(ids[1])] - pd.Timedelta(hours=BEFORE_ADMISSION_H)
    early = next(v for v in inputs["vitals"] if v["patient_token"] == second) | {
        "observation_id": "before-admission",
        "event_time": before,
    }
    # and its vitals at 60 h, past the last hour its models report (and were trained on, 48 h):
    # a state they do not score
    past_48h = at_24h | {
        "observation_id": PAST_TRAINED_HOURS,
        "event_time": anchors[int(ids[0])] + pd.Timedelta(hours=60),
    }
    inputs["vitals"] = sorted(
        [*inputs["vitals"], at_24h, early, past_48h], key=lambda v: v["event_time"]
    )
    inputs["labs"] = sorted(inputs["labs"], key=lambda v: v["event_time"])
    # sent twice (an HL7 resend keeps its event ids): the second stay's admission (still one
    # stay), a vitals record and a lab result (their values count once)
    second_admit = next(a for a in inputs["adt"] if a["patient_token"] == second)
    resent = {"adt": [second_admit], "vitals": [inputs["vitals"][5]], "labs": [inputs["labs"][3]]}
    # the sixth stay's patient: an old visit's admission and discharge, sent again at 22 h by a
    # FHIR Encounter version stored 10 days after they happened (jobs/runtime/stays.py): not
    # read, so not in `inputs` (the references' ADT events)
    recorded = anchors[int(ids[5])] + pd.Timedelta(hours=STALE_AT_H)
    old_visit = [
        emergency
        | {
            "event_id": f"{sixth}:old:{kind}",
            "event_type": kind,
            "encounter_token": f"{sixth}:old",
            "unit_id": "ICU-OLD" if kind == "admit" else None,
            "prior_unit_id": None if kind == "admit" else "ICU-OLD",
            "event_time": recorded - pd.Timedelta(days=STALE_DAYS) + pd.Timedelta(hours=h),
            "recorded_time": recorded,
        }
        for kind, h in (("admit", 0.0), ("discharge", 30.0))
    ]
    late = {"adt": old_visit, "vitals": [], "labs": []}
    sent = {
        k: sorted([*v, *resent[k], *late[k]], key=lambda r: codec.record_time(r))
        for k, v in inputs.items()
    }
    out = run_bounded(model_scoring.JOB, s, sent, folder / "out")
    return {
        "settings": s,
        "inputs": inputs,
        "resent": resent,
        "out": out,
        "tokens": tokens,
        "anchors": anchors,
        "discharged": discharged,
        "discharged_stay": (discharged, anchors[int(ids[-1])]),
        "ended_stay": (fourth, anchors[int(ids[3])]),
        "merged_stay": (fifth, anchors[int(ids[4])]),
        "other_visit": emergency,
        "old_visit": old_visit,
        "cancelled": third,
        "readmission": (again, readmitted),
        "before_admission": (second, before),
        # each stay: (token, admission time or first record's) → its set B record id (the one
        # record before an admission: minus the admitted stay's)
        "stays": {
            **{(tokens[r], anchors[r]): r for r in map(int, ids)},
            (discharged, readmitted): again,
            (second, before): -int(ids[1]),
        },
    }


def _stay_of(run: dict[str, Any], token: str, time: Any) -> tuple[str, Any]:
    """The stay a record or score of `token` at `time` belongs to: the token's latest
    admission at or before it."""
    return max(k for k in run["stays"] if k[0] == token and k[1] <= time)


def _with_stay(run: dict[str, Any], scores: pd.DataFrame) -> pd.DataFrame:
    """Scores with their stay's set B record id (`stay`)."""
    stay = [
        run["stays"][_stay_of(run, t, e)]
        for t, e in zip(scores["entity_token"], scores["event_time"], strict=True)
    ]
    return scores.assign(stay=stay)


def _push_descriptors(
    s: Settings,
    reg: Registry,
    stays: pd.DataFrame,
    anchors: dict[int, Any],
) -> None:
    """Registration: each stay's descriptors into Feast (training's definition of them)."""
    from feature_store import repo

    services = [ModelSpec.parse(reg.role(m, "champion").spec).feature_service for m in MODELS]  # type: ignore[union-attr]
    store = repo.open_store(s.feast_dir, "sqlite", stay_services=[x for x in services if x])
    repo.push_stay_static(store, replay.stay_static(stays, anchors, key=s.phi_key, source=SOURCE))


def _offline(run: dict[str, Any], stays: pd.DataFrame) -> pd.DataFrame:
    """The declaration's features (pandas) at every scored state, from the values the topics
    carried (plus the raw descriptors), and each champion's score of them (onnxruntime)."""

    def stay_and_minute(rec: dict[str, Any]) -> tuple[int, float]:
        token, admitted = _stay_of(run, rec["patient_token"], rec["event_time"])
        return run["stays"][(token, admitted)], (rec["event_time"] - admitted).total_seconds() / 60

    obs = as_observations([*run["inputs"]["vitals"], *run["inputs"]["labs"]], stay_and_minute)
    desc = stays[(stays["minute"] == 0) & stays["parameter"].isin(list(icu_stay.DESCRIPTORS))]
    # the readmission's and the record before an admission's descriptors are their token's in
    # Feast: its stay's
    again, _ = run["readmission"]
    by_token = {t: r for r, t in run["tokens"].items()}
    first = by_token[run["discharged"]]
    second = by_token[run["before_admission"][0]]
    desc = pd.concat(
        [
            desc[desc["record_id"] != again],
            desc[desc["record_id"] == first].assign(record_id=again),
            desc[desc["record_id"] == second].assign(record_id=-second),
        ]
    )
    obs = pd.concat([desc, obs], ignore_index=True)
    scores = _with_stay(run, pd.DataFrame(run["out"]["model_scores"]))
    states = scores[["stay", "hours_since_admission"]].drop_duplicates()
    frames = []
    for r, g in states.groupby("stay"):
        f = icu_stay.stay_features(obs[obs["record_id"] == r], sorted(g["hours_since_admission"]))
        frames.append(f.assign(stay=r))
    features = pd.concat(frames, ignore_index=True)
    reg = Registry(run["settings"].model_registry)
    for m in MODELS:
        v = reg.role(m, "champion")
        assert v is not None
        spec = ModelSpec.parse(v.spec)
        session = ort.InferenceSession(str(v.onnx), providers=["CPUExecutionProvider"])
        outs = session.run(None, {"features": features[spec.feature_names].to_numpy("float32")})
        y = np.asarray(outs[-1], dtype="float64")
        features[m] = y[:, -1] if y.ndim == 2 else y.reshape(-1)
    return features


def _ended(run: dict[str, Any], token: str, time: Any) -> bool:
    """Whether `token`'s stay had ended by `time`: its record was merged into another's by
    then, or its latest ADT event at or before then is a discharge (an admission at the same
    millisecond starts the next stay; a cancel reopens), not one of another visit."""
    stay: dict[str, Any] = {}
    remembered_ms = round(run["settings"].stay_state_ttl_h * 3_600_000)  # the job's state TTL
    before = [
        a
        for a in run["inputs"]["adt"]
        if a["patient_token"] == token
        and not reference_screen.another_visits(a, stay, remembered_ms)
        and a["event_time"] <= time
    ]
    if not before:
        return False
    if any(a["event_type"] == "merged_away" for a in before):
        return True
    last = max(a["event_time"] for a in before)
    return {a["event_type"] for a in before if a["event_time"] == last} == {"discharge"}


def _open_states(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The vitals and lab records whose stay had not ended by their time, within the hours the
    stay models are trained on (the one record past them is at 60 h)."""
    records = [*run["inputs"]["vitals"], *run["inputs"]["labs"]]
    return [
        r
        for r in records
        if not _ended(run, r["patient_token"], r["event_time"])
        and r.get("observation_id") != PAST_TRAINED_HOURS
    ]


def test_every_vitals_and_lab_state_is_scored_by_each_stay_model_and_its_shadow(
    run: dict[str, Any],
) -> None:
    scores = pd.DataFrame(run["out"]["model_scores"])
    assert set(scores["trigger"]) == {"state", "stay_hours"}
    scores = scores[scores["trigger"] == "state"]
    states = len(_open_states(run))
    counts = scores.groupby(["model_name", "role"]).size().to_dict()
    assert counts == {
        ("icu-mortality", "champion"): states,
        ("icu-mortality", "challenger"): states,
        ("length-of-stay", "champion"): states,
    }
    mort = scores[scores["model_name"] == "icu-mortality"]
    assert mort["score"].between(0, 1).all() and mort["output_name"].eq("death_risk").all()
    champ = mort[mort["role"] == "champion"]
    assert (champ["above_threshold"] == (champ["score"] >= champ["threshold"])).all()
    los = scores[scores["model_name"] == "length-of-stay"]
    assert (los["output_unit"] == "d").all() and los["threshold"].isna().all()
    assert (los["score"] >= -1.0).all()
    assert scores["entity"].eq("stay").all() and scores["score_id"].is_unique
    past = next(v for v in run["inputs"]["vitals"] if v["observation_id"] == PAST_TRAINED_HOURS)
    assert not _ended(run, past["patient_token"], past["event_time"])  # open, yet not scored


def test_a_record_sent_twice_is_scored_once_and_its_copy_dead_lettered_as_a_duplicate(
    run: dict[str, Any],
) -> None:
    dead = pd.DataFrame(run["out"]["dead_letters"])
    assert set(dead["reason_code"]) == {"duplicate"}
    ids = {"vitals": "observation_id", "labs": "result_id", "adt": "event_id"}
    resent = sorted(r[ids[k]] for k, rs in run["resent"].items() for r in rs)
    assert sorted(r.split()[2] for r in dead["reason"]) == resent
    scored = pd.DataFrame(run["out"]["model_scores"])
    scored = scored[scored["trigger"] == "state"]
    assert not scored.duplicated(["record_id", "model_name", "role"]).any()


def test_a_record_after_its_stays_discharge_is_not_scored_nor_one_before_the_cancel(
    run: dict[str, Any],
) -> None:
    """The fourth stay charts on after its discharge at 40 h; the third stay charts between its
    discharge at 30 h and the cancel at 31 h; the fifth stay's token charts on after its record
    was merged into another's at 36 h (HL7 A40). Each was scored before."""
    scores = pd.DataFrame(run["out"]["model_scores"])
    scored = set(scores.loc[scores["trigger"] == "state", "record_id"])
    records = [*run["inputs"]["vitals"], *run["inputs"]["labs"]]
    closed = [r for r in records if _ended(run, r["patient_token"], r["event_time"])]
    ended, _ = run["ended_stay"]
    merged, _ = run["merged_stay"]
    for token in (ended, run["cancelled"], merged):
        mine = [r for r in closed if r["patient_token"] == token]
        assert mine, token  # charted while discharged
        assert not scored & {r.get("observation_id") or r["result_id"] for r in mine}
        assert scores["entity_token"].eq(token).any()


def test_a_discharge_of_another_visit_ends_no_stay(run: dict[str, Any]) -> None:
    """The sixth stay's patient has their emergency visit discharged at 20 h (another
    encounter, from the emergency department): the stay's records after it are scored, and so
    is the stay at 24 and 48 h."""
    other = run["other_visit"]
    token, at = other["patient_token"], other["event_time"]
    scores = pd.DataFrame(run["out"]["model_scores"])
    mine = scores[scores["entity_token"] == token]
    after = [
        r["observation_id"]
        for r in run["inputs"]["vitals"]
        if r["patient_token"] == token and r["event_time"] > at
    ]
    assert after and set(after) <= set(mine.loc[mine["trigger"] == "state", "record_id"])
    hours = mine.loc[mine["trigger"] == "stay_hours", "hours_since_admission"]
    assert set(hours) == set(REPORT_HOURS)


def test_an_old_visits_admission_and_discharge_recorded_days_late_change_no_stay(
    run: dict[str, Any],
) -> None:
    """The sixth stay's patient has an old visit's admission and discharge sent again at 22 h,
    10 days after they happened: the admission starts no stay (it had superseded the current one)
    and the discharge ends none; the stay's records after them are scored as its own, the stay
    once at 24 h, and no score carries the old visit."""
    admit, discharge = run["old_visit"]
    token, at = admit["patient_token"], admit["recorded_time"]
    readmitted = run["readmission"][1]  # the token's next stay, from 48 h
    assert token == run["discharged"]
    scores = pd.DataFrame(run["out"]["model_scores"])
    mine = scores[(scores["entity_token"] == token) & (scores["event_time"] < readmitted)]
    after = {
        r["observation_id"]
        for r in run["inputs"]["vitals"]
        if r["patient_token"] == token and at < r["event_time"] < readmitted
    }
    states = mine[mine["trigger"] == "state"]
    assert after and after <= set(states["record_id"])
    # still the stay admitted at 0 h (the old admission had started one at 22 h, which its
    # discharge in the same millisecond did not end: it ended the stay before)
    late = states[states["event_time"] > at]
    assert (late["hours_since_admission"] > STALE_AT_H).all()
    # once at 24 h (its discharge at 48 h stops the 48-h report), not again from 22 h
    reports = mine[mine["trigger"] == "stay_hours"]
    assert set(reports["hours_since_admission"]) == {24.0}
    assert not reports.duplicated(["model_name", "role"]).any()
    assert not {admit["event_id"], discharge["event_id"]} & set(scores["record_id"])
    # nor are they dead letters (read by no part of the job, as a transfer is not): the only
    # dead letters are the copies sent again
    assert len(run["out"]["dead_letters"]) == sum(map(len, run["resent"].values()))


def test_the_stay_descriptors_come_from_feast_so_no_static_feature_is_missing(
    run: dict[str, Any],
) -> None:
    scores = pd.DataFrame(run["out"]["model_scores"])
    champion = Registry(run["settings"].model_registry).role("icu-mortality", "champion")
    assert champion is not None
    spec = ModelSpec.parse(champion.spec)
    series = len(spec.features) - len(icu_stay.STATIC_FEATURES) - 1
    assert (scores["features_missing"] < series).all()
    first = _with_stay(run, scores).sort_values("event_time").groupby("stay").head(1)
    assert len(first) == STAYS + 2  # and the readmission and the record before an admission
    for _, row in first.iterrows():
        _, admitted = _stay_of(run, row["entity_token"], row["event_time"])
        since = (row["event_time"] - admitted).total_seconds() / 3600
        assert row["hours_since_admission"] == pytest.approx(since)


def test_a_feature_service_the_job_was_not_started_with_reads_its_entitys_features_in_feast(
    run: dict[str, Any],
) -> None:
    """A version promoted while the job runs may name a service the job's lookups were not
    opened with: its entity's lookup serves it (udfs/model_set.entity_lookup)."""
    s = run["settings"]
    looked = catalog_lookups(s.feast_dir, s.feast_online_store, (), ())
    tokens = list(run["tokens"].values())
    descriptors = looked[entity_lookup("stay")](tokens)
    assert list(descriptors.index) == tokens
    assert descriptors[["age_years", "female"]].notna().all().all()


def test_the_stream_reproduces_the_offline_score_at_every_state(
    run: dict[str, Any], stays: pd.DataFrame
) -> None:
    offline = _offline(run, stays)
    scores = pd.DataFrame(run["out"]["model_scores"])
    champ = _with_stay(run, scores[scores["role"] == "champion"])
    for m in MODELS:
        got = champ[champ["model_name"] == m][["stay", "hours_since_admission", "score"]]
        both = got.merge(offline, on=["stay", "hours_since_admission"], how="left")
        assert both[m].notna().all()
        diff = (both["score"] - both[m]).abs()
        assert diff.max() < 1e-3, (m, both.loc[diff.idxmax()].to_dict())


def test_a_readmission_under_the_same_token_is_a_stay_of_its_own(
    run: dict[str, Any], stays: pd.DataFrame
) -> None:
    """Its hours count from its own admission, its features from its own records (the first
    stay's records and its discharge are not in them), and it is scored at its hours although
    the token's earlier stay was discharged in the same millisecond as the readmission."""
    again, readmitted = run["readmission"]
    scores = _with_stay(run, pd.DataFrame(run["out"]["model_scores"]))
    mine = scores[(scores["stay"] == again) & (scores["role"] == "champion")]
    states = mine[mine["trigger"] == "state"]
    assert not states.empty and states["entity_token"].eq(run["discharged"]).all()
    since = (states["event_time"] - readmitted).dt.total_seconds() / 3600
    assert np.allclose(states["hours_since_admission"], since)
    assert states["hours_since_admission"].max() <= 48.0
    at = mine[mine["trigger"] == "stay_hours"]
    assert sorted(set(at["hours_since_admission"])) == list(REPORT_HOURS)
    offline = _offline(run, stays)
    offline = offline[offline["stay"] == again]
    for m in MODELS:
        got = mine[mine["model_name"] == m]
        both = got.merge(offline, on=["stay", "hours_since_admission"], how="left")
        assert len(both) == len(got) and (both["score"] - both[m]).abs().max() < 1e-3, m


def test_a_record_before_the_admission_is_a_stay_the_admission_ends(run: dict[str, Any]) -> None:
    """Scored at its state, never at an hour: at 24 h after it the stay had long been superseded
    by the admission 2 h later, whose own stay is scored from its own records."""
    token, before = run["before_admission"]
    scores = _with_stay(run, pd.DataFrame(run["out"]["model_scores"]))
    early = scores[scores["stay"] == run["stays"][(token, before)]]
    assert set(early["trigger"]) == {"state"} and set(early["record_id"]) == {"before-admission"}
    assert early["hours_since_admission"].eq(0).all()
    admitted = scores[(scores["entity_token"] == token) & (scores["trigger"] == "stay_hours")]
    assert sorted(set(admitted["hours_since_admission"])) == list(REPORT_HOURS)
    since = admitted["event_time"] - (before + pd.Timedelta(hours=BEFORE_ADMISSION_H))
    assert (since == pd.to_timedelta(admitted["hours_since_admission"], unit="h")).all()


def test_each_stay_is_scored_once_at_each_reported_hour_unless_discharged_by_then(
    run: dict[str, Any],
) -> None:
    scores = pd.DataFrame(run["out"]["model_scores"])
    at = scores[scores["trigger"] == "stay_hours"]
    expected = {
        (token, admitted, h)
        for token, admitted in run["stays"]
        for h in REPORT_HOURS
        # the discharged and the ended stays are discharged by 48 h, the merged one merged
        # away; the readmission is not;
        # the record before an admission is a stay that the admission ended; the third stay's
        # discharge was cancelled, so it is scored at 48 h
        if not ((token, admitted) == run["discharged_stay"] and h >= DISCHARGED_AT_H)
        and not ((token, admitted) == run["ended_stay"] and h >= ENDED_AT_H)
        and not ((token, admitted) == run["merged_stay"] and h >= MERGED_AT_H)
        and (token, admitted) != run["before_admission"]
    }
    for (model, role), g in at[at["model_name"] != AT_24H].groupby(["model_name", "role"]):
        got = [
            (t, _stay_of(run, t, e)[1], h)
            for t, e, h in zip(
                g["entity_token"], g["event_time"], g["hours_since_admission"], strict=True
            )
        ]
        assert sorted(got) == sorted(expected), (model, role)
        ids = [f"{t}@{int(a.timestamp() * 1000)}+{h:g}h" for t, a, h in got]
        assert list(g["record_id"]) == ids
        assert list(g["event_time"]) == [a + pd.Timedelta(hours=h) for _, a, h in got]
    assert set(at.groupby(["model_name", "role"]).groups) == {
        ("icu-mortality", "champion"),
        ("icu-mortality", "challenger"),
        ("length-of-stay", "champion"),
        (AT_24H, "champion"),
    }
    assert "no-records" not in set(scores["entity_token"])


def test_a_model_with_a_stay_hours_trigger_is_scored_at_its_hours_only(
    run: dict[str, Any],
) -> None:
    scores = pd.DataFrame(run["out"]["model_scores"])
    only = scores[scores["model_name"] == AT_24H]
    assert only["trigger"].eq("stay_hours").all() and only["hours_since_admission"].eq(24).all()
    stays = [t for t, a in run["stays"] if (t, a) != run["before_admission"]]
    assert sorted(only["entity_token"]) == sorted(stays)  # a readmission too
    los = scores[
        (scores["model_name"] == "length-of-stay")
        & (scores["trigger"] == "stay_hours")
        & (scores["hours_since_admission"] == 24)
    ]
    same = only.merge(los, on="record_id", suffixes=("", "_los"))
    assert len(same) == len(only) and (same["score"] == same["score_los"]).all()


def test_a_score_at_an_hour_of_the_stay_is_the_validation_cut_off_score_at_that_hour(
    run: dict[str, Any], stays: pd.DataFrame
) -> None:
    """The offline features at hour 24 or 48 are training's and `make evaluate-model`'s: the
    stay's observations up to exactly that hour."""
    offline = _offline(run, stays)
    scores = pd.DataFrame(run["out"]["model_scores"])
    at = _with_stay(
        run, scores[(scores["trigger"] == "stay_hours") & (scores["role"] == "champion")]
    )
    assert not at.empty
    for m in MODELS:
        got = at[at["model_name"] == m][["stay", "hours_since_admission", "score"]]
        both = got.merge(offline, on=["stay", "hours_since_admission"], how="left")
        assert len(both) == len(got) and both[m].notna().all()
        diff = (both["score"] - both[m]).abs()
        assert diff.max() < 1e-3, (m, both.loc[diff.idxmax()].to_dict())


@pytest.fixture(scope="module")
def discharges(settings: Settings, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Diabetes 130 encounters as admissions and discharges, their facts in Feast."""
    from feature_store import repo
    from jobs.feeds import diabetes130

    if not settings.diabetes130_file.exists():
        pytest.skip(f"Diabetes 130 is not at {settings.diabetes130_file}")
    folder = tmp_path_factory.mktemp("readmission-scoring")
    s = dataclasses.replace(
        settings,
        model_registry=folder / "registry",
        feast_dir=folder / "feast",
        feast_online_store="sqlite",
        catalog_models="readmission-30d",
    )
    reg = Registry(s.model_registry)
    assert bootstrap(reg, "readmission-30d")
    frame = diabetes130.load(s, encounters=80)
    mapped = diabetes130.map_encounters(frame, key=s.phi_key)
    spec = ModelSpec.parse(reg.role("readmission-30d", "champion").spec)  # type: ignore[union-attr]
    assert spec.feature_service
    store = repo.open_store(s.feast_dir, "sqlite", encounter_services=[spec.feature_service])
    repo.push_encounter_facts(store, mapped.facts)
    # one discharge sent twice (an HL7 resend after a lost ACK): scored once
    resent = next(a for a in mapped.adt if a["event_type"] == "discharge" and a["encounter_token"])
    # and another encounter's discharge again an hour later under a new event id (the census
    # refuses it, not_admitted): its encounter is scored once
    scored = set(mapped.facts["encounter_token"]) - {resent["encounter_token"]}

    def a_discharge(*taken: dict[str, Any]) -> dict[str, Any]:
        """A discharge of a scored encounter other than those `taken`."""
        left = scored - {t["encounter_token"] for t in taken}
        return next(
            a for a in mapped.adt if a["event_type"] == "discharge" and a["encounter_token"] in left
        )

    first = a_discharge()
    again = first | {
        "event_id": first["event_id"] + ":again",
        "event_time": first["event_time"] + timedelta(hours=1),
    }
    # and a third encounter's discharge cancelled (A13) and discharged again 3 days on: scored
    # at that discharge, the one that counts (its first, taken back, is scored too)
    third = a_discharge(first)
    cancelled = third | {  # an A13 without PV1-19: it cancels the patient's latest discharge
        "event_id": third["event_id"] + ":cancel",
        "event_type": "cancel_discharge",
        "encounter_token": None,
        "event_time": third["event_time"] + timedelta(hours=2),
    }
    final = third | {
        "event_id": third["event_id"] + ":final",
        "event_time": third["event_time"] + timedelta(days=3),
    }
    # and a fourth encounter's discharge entered 4 days after it happened, longer than the job
    # remembers (`stay_state_ttl_h`): it happened since its stay began, so it ends it and is
    # scored
    fourth = a_discharge(first, third)
    late = fourth | {"recorded_time": fourth["event_time"] + timedelta(days=4)}
    assert late["recorded_time"] - late["event_time"] > timedelta(hours=s.stay_state_ttl_h)
    adt = [late if a is fourth else a for a in mapped.adt]
    sent = sorted([*adt, resent, again, cancelled, final], key=codec.record_time)
    out = run_bounded(model_scoring.JOB, s, {"adt": sent}, folder / "out")
    return {
        "settings": s,
        "frame": frame,
        "mapped": mapped,
        "out": out,
        "spec": spec,
        "resent": resent,
        "final": final,
        "late": late,
    }


def test_each_discharge_is_scored_for_readmission_from_its_facts_in_feast(
    discharges: dict[str, Any],
) -> None:
    from feature_store import encounter_facts

    scores = pd.DataFrame(discharges["out"]["model_scores"])
    facts = discharges["mapped"].facts
    eligible = int(encounter_facts.eligible(discharges["frame"]).sum())
    assert len(facts) == eligible and 0 < eligible <= 80
    # the expired and hospice discharges are not scored; each encounter once, however often
    # discharged, but for one whose discharge an A13 took back: at its discharge after it too
    final = discharges["final"]
    assert len(scores) == eligible + 1
    assert scores["entity_token"].value_counts().to_dict()[final["encounter_token"]] == 2
    assert scores["entity_token"].value_counts().max() == 2
    (copy,) = discharges["out"]["dead_letters"]  # the discharge sent twice counts once
    assert copy["reason_code"] == "duplicate"
    assert copy["reason"].split()[2] == discharges["resent"]["event_id"]
    assert set(scores["entity_token"]) == set(facts["encounter_token"])
    assert scores["entity"].eq("encounter").all() and scores["features_missing"].eq(0).all()
    assert scores["trigger"].eq("discharge").all()
    # the discharge entered 4 days late, of the stay it ends, is scored at its record time
    late = discharges["late"]
    [(record, at)] = scores.loc[
        scores["entity_token"] == late["encounter_token"], ["record_id", "event_time"]
    ].itertuples(index=False)
    assert (record, at) == (late["event_id"], late["recorded_time"])
    v = Registry(discharges["settings"].model_registry).role("readmission-30d", "champion")
    assert v is not None
    session = ort.InferenceSession(str(v.onnx), providers=["CPUExecutionProvider"])
    x = facts[discharges["spec"].feature_names].to_numpy("float32")
    y = np.asarray(session.run(None, {"features": x})[-1], dtype="float64")
    offline = dict(zip(facts["encounter_token"], y[:, -1] if y.ndim == 2 else y, strict=True))
    assert (abs(scores["score"] - scores["entity_token"].map(offline)) < 1e-6).all()
    assert (scores["above_threshold"] == (scores["score"] >= scores["threshold"])).all()


def test_the_catalog_plan_keeps_no_stays_rows_in_a_join(
    run: dict[str, Any], tmp_path: Path
) -> None:
    """Each stay's rows live in its windows' accumulators and its hour function's latest row,
    not in a join: an unnest of a constant array is planned as a regular join with a VALUES
    table (every row kept for the state TTL, each row slower than the last: bench/catalog.py),
    and an event-time temporal join on the deduplicated latest row lost hours
    (tests/integration/test_catalog_hours.py)."""
    nodes = plan(
        build_bounded(model_scoring.JOB, run["settings"], run["inputs"], tmp_path), tmp_path
    )
    ops = [c for _, c, _ in nodes]
    assert not [c for c in ops if "Join(" in c], [c for c in ops if "Join(" in c]
    assert not [c for c in ops if "Deduplicate(" in c]
    (hours,) = [c for c in ops if c.startswith(":ProcessTableFunction(")]
    assert "wf_stay_hours(" in hours
    assert event_time_diamonds(nodes) == []
    # the unnests of an admission's superseded copy, of the stay models' names and of the
    # roles: stateless correlates
    assert len([c for c in ops if "$UNNEST_ROWS(" in c]) == 3
    # one scoring operator for the stay, hour and discharge models together
    assert sum("wf_score_models(" in c for c in ops) == 1, [c for c in ops if "wf_score_" in c]
