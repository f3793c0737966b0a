"""Replay of PhysioNet/CinC 2012 ICU stays onto the canonical topics (`adt.event.v1`,
`vitals.observation.v1`, `labs.result.v1`), with every input row accounted for.

Each stay becomes an ADT admission at its anchor (a seeded time; minute 0 of the stay) to the
ICU unit of its ICUType (CCU, CSRU, MICU, SICU), one vitals record per minute with any charted
vital sign and one labs record per minute with any lab value, at anchor + minute. Parameters map
onto fields per schemas.physionet2012 (units, invasive-before-cuff blood pressure, summed urine
outputs, what is rejected and why). Every input row ends as one outcome there: published,
descriptor, missing (-1), superseded, duplicate, or rejected, and a rejected row is
dead-lettered to `deadletter.v1` with its reason (sealed, as the ingestion edges do: it holds
the record id in clear); the counts are printed and add up to the input rows.

Identity: a 2012 record is one ICU stay and carries no patient identifier, so the patient token
and the stay's `encounter_token` are both keyed HMAC tokens of the record id (namespaces
`physionet2012:set<X>` and `…:encounter`): a patient with two stays appears as two patients.

No discharge event: the data end at 48 h of the observation window, not at a discharge, and the
real length of stay is an outcome (`Length_of_stay`), which the clinical records never carry. A
discharge at minute 2880 would tell the census and the alert lifecycle something false. (A stay's
records can stop before 48 h, as they did in the data.)

Outcome labels: the set's outcomes file (`setX_outcomes.parquet`, beside the observations) is read
for one thing only, a `death` label per stay on `label.outcome.v1` (the model monitor's delayed
performance of the icu-mortality model), never on the clinical topics. `occurred` is
In-hospital_death. In-hospital death is known when the hospital stay ends: `known_at` = admission
+ Length_of_stay days (the data set's definition: ICU admission to the end of hospitalisation;
Silva et al., Comput Cardiol 2012), and never before the stay's last record (Length_of_stay -1,
unknown, in 60 stays of set A: known at the last record). A death happened at admission +
Survival days (whole days), not before the stay's last record, where the patient was still
charted. The entity is `stay` and its token the stay's patient token, as jobs/model_scoring.py
scores stay models (`entity_token = patient_token`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from feature_store import icu_stay
from jobs.feeds import labels as outcome_labels
from jobs.feeds.publisher import Publisher
from jobs.feeds.replay import FACILITY, Pacer
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas import physionet2012 as p12
from schemas.interop import demographics
from schemas.settings import Settings

STAGE = "physionet2012_replay"
ADT = topics.ADT_EVENT
VITALS = topics.VITALS_OBSERVATION
LABS = topics.LABS_RESULT
ORDER = {ADT.name: 0, VITALS.name: 1, LABS.name: 2}  # at equal times: admission first
DEFAULT_BASE_TIME = datetime(2026, 1, 5, tzinfo=UTC)
SETS = ("A", "B")
OUTCOME_COLUMNS = ("In-hospital_death", "Length_of_stay", "Survival")  # Survival, LOS: days


@dataclass(frozen=True)
class ReplayPlan:
    stays: int = 300  # 0: every stay of the set
    seed: int = 2012
    base_time: datetime = DEFAULT_BASE_TIME
    admission_spread_h: float = 24.0


@dataclass
class Mapped:
    """What a set of stays maps to; `outcomes` counts every input row once (schemas.physionet2012
    OUTCOMES), `rejected_by` the rejected ones by reason code."""

    adt: list[dict[str, Any]]
    vitals: list[dict[str, Any]]
    labs: list[dict[str, Any]]
    rejected: list[dict[str, Any]]
    static: pd.DataFrame
    labels: list[dict[str, Any]] = field(default_factory=list)  # label.outcome.v1, by known_at
    input_rows: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    rejected_by: dict[str, int] = field(default_factory=dict)

    @property
    def balanced(self) -> bool:
        return sum(self.outcomes.values()) == self.input_rows and self.outcomes.get(
            "rejected", 0
        ) == len(self.rejected)

    def summary(self) -> dict[str, Any]:
        return {
            "input_rows": self.input_rows,
            "outcomes": dict(self.outcomes),
            "rejected_by": dict(self.rejected_by),
            "records": {
                ADT.name: len(self.adt),
                VITALS.name: len(self.vitals),
                LABS.name: len(self.labs),
                topics.DEAD_LETTER.name: len(self.rejected),
                topics.LABEL_OUTCOME.name: len(self.labels),
            },
            "balanced": self.balanced,
        }


def source_of(set_name: str) -> str:
    return f"physionet2012:set{set_name}"


def load(settings: Settings, set_name: str, path: Path | None = None) -> pd.DataFrame:
    """The observations of set A or B (never the outcomes)."""
    p = path or settings.physionet2012_dir / f"set{set_name}_observations.parquet"
    return pd.read_parquet(p, columns=list(p12.COLUMNS))


def outcomes_file(settings: Settings, set_name: str, path: Path | None = None) -> Path:
    """The outcomes file beside the observations (`…/setX_observations.parquet` →
    `…/setX_outcomes.parquet`)."""
    p = path or settings.physionet2012_dir / f"set{set_name}_observations.parquet"
    return p.with_name(p.name.replace("_observations.", "_outcomes."))


def load_outcomes(path: Path) -> pd.DataFrame:
    """A set's outcomes, indexed by record_id: only what the death label needs."""
    cols = ["record_id", *OUTCOME_COLUMNS]
    return pd.read_parquet(path, columns=cols).set_index("record_id")


def select_stays(obs: pd.DataFrame, plan: ReplayPlan) -> pd.DataFrame:
    ids = np.sort(obs["record_id"].unique())
    if 0 < plan.stays < len(ids):
        ids = np.sort(np.random.default_rng(plan.seed).choice(ids, plan.stays, replace=False))
    return obs[obs["record_id"].isin(ids)]


def anchors(record_ids: Any, plan: ReplayPlan) -> dict[int, datetime]:
    """Each stay's admission time: base_time plus a seeded whole number of minutes within
    admission_spread_h (the data's own times are shifted to year 2500+ and useless here)."""
    ids = np.sort(np.unique(np.asarray(record_ids)))
    rng = np.random.default_rng(plan.seed + 1)
    offsets = rng.integers(0, max(1, int(plan.admission_spread_h * 60)), len(ids))
    return {
        int(r): plan.base_time + timedelta(minutes=int(m))
        for r, m in zip(ids, offsets, strict=True)
    }


def _demographics(desc: pd.DataFrame, r: Any) -> dict[str, Any]:
    """The admission's age and sex (adt.event.v1 revision 2) from the stay's descriptors: the
    age capped as the feeds cap it (demographics.AGE_CAP_YEARS), unknown where not charted."""
    age, female = float(desc.at[r, "age_years"]), float(desc.at[r, "female"])
    return {
        "age_years": None if math.isnan(age) else min(age, demographics.AGE_CAP_YEARS),
        "female": None if math.isnan(female) else female == 1.0,
    }


def map_stays(
    obs: pd.DataFrame,
    anchor_of: Mapping[int, datetime],
    *,
    key: bytes,
    source: str,
    facility: str = FACILITY,
    outcomes: pd.DataFrame | None = None,
) -> Mapped:
    """Map stays (vectorised over all of them): their records, the rejected rows with reasons,
    the registration descriptors (`static`, by patient token) and the counts; with `outcomes`
    (load_outcomes) also each stay's `death` label. Pure: no I/O."""
    verdicts = p12.classify(obs)
    ids = np.sort(verdicts["record_id"].unique())
    tokens = {
        int(r): (
            phi.token(key, source, str(int(r))),
            phi.token(key, f"{source}:encounter", str(int(r))),
        )
        for r in ids
    }
    desc = p12.descriptors(verdicts)
    adt = [
        {
            "event_id": f"{tokens[int(r)][1]}:admit",
            "event_type": "admit",
            "source_message_type": "physionet2012",
            "patient_token": tokens[int(r)][0],
            "encounter_token": tokens[int(r)][1],
            "facility_id": facility,
            "unit_id": p12.unit_of(float(desc.at[r, "icu_type"])),
            "bed_id": None,
            "prior_unit_id": None,
            "prior_bed_id": None,
            "event_time": anchor_of[int(r)],
            "recorded_time": None,
            "source": source,
            **_demographics(desc, r),
        }
        for r in ids
    ]
    units = {str(a["patient_token"]): str(a["unit_id"]) for a in adt}
    published = verdicts[verdicts["outcome"] == "published"]
    vitals = _records(published, VITALS, "vitals", tokens, anchor_of, units, facility, source)
    labs = _records(published, LABS, "labs", tokens, anchor_of, units, facility, source)
    bad = verdicts[verdicts["outcome"] == "rejected"]
    rejected = [
        {
            "row": int(i),
            "record_id": int(r),
            "minute": int(m),
            "parameter": str(p),
            "value": float(v),
            "reason_code": str(c),
            "reason": str(why),
        }
        for i, r, m, p, v, c, why in zip(
            bad.index,
            bad["record_id"],
            bad["minute"],
            bad["parameter"],
            bad["value"],
            bad["reason_code"],
            bad["reason"],
            strict=True,
        )
    ]
    static = pd.DataFrame(
        {
            "patient_token": [tokens[int(r)][0] for r in desc.index],
            "event_timestamp": [anchor_of[int(r)] for r in desc.index],
            "age_years": desc["age_years"].to_numpy(),
            "female": desc["female"].to_numpy(),
            "height_cm": desc["height_cm"].to_numpy(),
        }
    )
    last_minute = obs.groupby("record_id")["minute"].max()
    labels = (
        []
        if outcomes is None
        else death_labels(outcomes, adt, {int(r): int(last_minute[r]) for r in ids}, anchor_of)
    )
    return Mapped(
        adt=adt,
        vitals=vitals,
        labs=labs,
        rejected=rejected,
        static=static,
        labels=labels,
        input_rows=len(obs),
        outcomes=dict(Counter(verdicts["outcome"])),
        rejected_by=dict(Counter(bad["reason_code"])),
    )


def death_labels(
    outcomes: pd.DataFrame,
    adt: list[dict[str, Any]],
    last_minute: Mapping[int, int],
    anchor_of: Mapping[int, datetime],
) -> list[dict[str, Any]]:
    """One `death` label per admitted stay (module docstring: known at the end of the hospital
    stay, never before the stay's last record), in known_at order. `adt` holds the stays'
    admissions in record-id order, as map_stays builds them."""
    unknown = sorted(set(last_minute) - set(outcomes.index))
    if unknown:
        raise ValueError(f"{len(unknown)} stays (e.g. {unknown[0]}) have no row in the outcomes")
    out = []
    for rid, a in zip(sorted(last_minute), adt, strict=True):
        row = outcomes.loc[rid]
        last = anchor_of[rid] + timedelta(minutes=last_minute[rid])
        los_d = float(row["Length_of_stay"])
        known = max(last, anchor_of[rid] + timedelta(days=los_d)) if los_d >= 0 else last
        died = int(row["In-hospital_death"]) == 1
        death = max(last, anchor_of[rid] + timedelta(days=float(row["Survival"])))
        out.append(
            outcome_labels.outcome_label(
                patient_token=a["patient_token"],
                facility_id=a["facility_id"],
                unit_id=a["unit_id"],
                entity="stay",
                entity_token=a["patient_token"],
                outcome="death",
                occurred=died,
                outcome_time=min(death, known) if died else None,
                known_at=known,
            )
        )
    return sorted(out, key=lambda r: (r["known_at"], r["entity_token"]))


def stay_records(
    obs: pd.DataFrame,
    anchor: datetime,
    *,
    key: bytes,
    source: str,
    facility: str = FACILITY,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """(adt, vitals, labs, rejected) of ONE stay's observations with admission at `anchor`."""
    ids = obs["record_id"].unique()
    if len(ids) != 1:
        raise ValueError(f"stay_records maps one stay; got record ids {sorted(ids)[:5]}")
    m = map_stays(obs, {int(ids[0]): anchor}, key=key, source=source, facility=facility)
    return m.adt, m.vitals, m.labs, m.rejected


def _records(
    published: pd.DataFrame,
    topic: topics.Topic,
    kind: str,
    tokens: Mapping[int, tuple[str, str]],
    anchor_of: Mapping[int, datetime],
    units: Mapping[str, str],
    facility: str,
    source: str,
) -> list[dict[str, Any]]:
    """One record of `topic` per stay and minute with a published value, fields in schema order."""
    mine = published[published["topic"] == topic.name]
    if mine.empty:
        return []
    wide = (
        mine.drop_duplicates(["record_id", "minute", "field"])
        .set_index(["record_id", "minute", "field"])["canonical"]
        .unstack("field")
        .sort_index()
    )
    rids = wide.index.get_level_values(0).to_numpy()
    mins = wide.index.get_level_values(1).to_numpy()
    n = len(wide)
    pt = [tokens[int(r)][0] for r in rids]
    enc = [tokens[int(r)][1] for r in rids]
    columns: dict[str, list[Any]] = {}
    for f in topic.schema.fields:
        if f.name in wide:
            columns[f.name] = _python_values(wide[f.name].to_numpy(dtype=np.float64), f.base)
        else:
            columns[f.name] = [None] * n
    ident = "observation_id" if topic is VITALS else "result_id"
    columns[ident] = [f"{e}:{int(m)}:{kind}" for e, m in zip(enc, mins, strict=True)]
    columns["patient_token"] = pt
    columns["facility_id"] = [facility] * n
    columns["unit_id"] = [units[t] for t in pt]
    columns["event_time"] = [
        anchor_of[int(r)] + timedelta(minutes=int(m)) for r, m in zip(rids, mins, strict=True)
    ]
    columns["source"] = [source] * n
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def _python_values(a: np.ndarray[Any, Any], base: str) -> list[Any]:
    """NaN as None; the schema's Python type otherwise."""
    out = np.full(len(a), None, dtype=object)
    ok = ~np.isnan(a)
    if base == "int":
        out[ok] = a[ok].astype(np.int64).tolist()
    elif base == "boolean":
        out[ok] = (a[ok] != 0).tolist()
    else:
        out[ok] = a[ok].tolist()
    return out.tolist()  # type: ignore[no-any-return]


def stream(m: Mapped) -> list[tuple[str, dict[str, Any]]]:
    """(topic, record) in event-time order; at equal times admission, vitals, labs."""
    items = [
        *((ADT.name, r) for r in m.adt),
        *((VITALS.name, r) for r in m.vitals),
        *((LABS.name, r) for r in m.labs),
    ]
    items.sort(key=lambda tr: (tr[1]["event_time"], ORDER[tr[0]], tr[1]["patient_token"]))
    return items


def dead_letter_payload(r: Mapping[str, Any]) -> bytes:
    """The rejected input row as it was read (sealed by the publisher before it is stored)."""
    row = {k: r[k] for k in ("record_id", "minute", "parameter", "value")}
    return json.dumps(row, sort_keys=True).encode()


def stay_static(
    obs: pd.DataFrame, anchor_of: Mapping[int, datetime], *, key: bytes, source: str
) -> pd.DataFrame:
    """Each stay's descriptors as the catalog's stay models read them from Feast
    (`icu_stay_static`: training's definition, feature_store/icu_stay.descriptors), keyed by
    the stay's token and valid from its admission."""
    d = icu_stay.descriptors(obs)
    return d.assign(
        patient_token=[phi.token(key, source, str(int(r))) for r in d.index],
        event_timestamp=[anchor_of[int(r)] for r in d.index],
    ).reset_index(drop=True)


def replay(
    settings: Settings,
    plan: ReplayPlan,
    *,
    set_name: str = "A",
    path: Path | None = None,
    prefix: str = "",
    facility: str = FACILITY,
    speedup: float = 0.0,
    dry_run: bool = False,
) -> Mapped:
    """Map the chosen stays, validate and encode every record against its topic's schema, and
    (unless `dry_run`) produce them, then the dead letters. Returns the mapping with its counts."""
    source = source_of(set_name)
    obs = select_stays(load(settings, set_name, path), plan)
    anchor_of = anchors(obs["record_id"], plan)
    outcomes_at = outcomes_file(settings, set_name, path)
    m = map_stays(
        obs,
        anchor_of,
        key=settings.require_phi_key(),
        source=source,
        facility=facility,
        outcomes=load_outcomes(outcomes_at) if outcomes_at.is_file() else None,
    )
    if not m.balanced:
        raise AssertionError(f"counts do not add up: {m.summary()}")
    pub = Publisher(settings, prefix=prefix, stage=STAGE)
    encoded = pub.encode(stream(m))
    if not isinstance(encoded, list):  # a mapping bug: every value was checked against its range
        raise ValueError(f"a mapped record does not validate: {encoded.reason}")
    labels = outcome_labels.encode(m.labels)
    if not isinstance(labels, list):
        raise ValueError(f"a label does not validate: {labels.reason}")
    if dry_run:
        return m
    from feature_store import repo  # registration: the stays' descriptors, before their records

    store = repo.open_store(settings.feast_dir, settings.feast_online_store)
    key = settings.require_phi_key()
    repo.push_stay_static(store, stay_static(obs, anchor_of, key=key, source=source))
    kafka_io.ensure_topics(
        settings,
        [ADT.name, VITALS.name, LABS.name, topics.DEAD_LETTER.name, outcome_labels.TOPIC.name],
        prefix=prefix,
    )
    pacer = Pacer(speedup, pub.producer)
    for item in encoded:
        pacer.wait_for(item[1]["event_time"])
        pub.send([item])
    outcome_labels.send(pub, labels, pacer)  # each known after its stay's last record
    for r in m.rejected:
        pub.dead_letter(source, r["row"], r["reason_code"], r["reason"], dead_letter_payload(r))
    pub.flush(120)
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--set", dest="set_name", choices=SETS, default="A")
    ap.add_argument("--stays", type=int, default=300, help="stays to replay; 0 = the whole set")
    ap.add_argument("--file", type=Path, default=None, help="an observations parquet of the set")
    ap.add_argument(
        "--speedup", "--speed", type=float, default=0.0, help="event time / wall time; 0 = max"
    )
    ap.add_argument("--seed", type=int, default=2012)
    ap.add_argument("--facility", default=FACILITY)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument(
        "--dry-run", action="store_true", help="map, validate and count; produce nothing"
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    if not a.dry_run:
        kafka_io.wait_for_broker(settings)
    m = replay(
        settings,
        ReplayPlan(stays=a.stays, seed=a.seed),
        set_name=a.set_name,
        path=a.file,
        prefix=a.topic_prefix,
        facility=a.facility,
        speedup=a.speedup,
        dry_run=a.dry_run,
    )
    print(json.dumps(m.summary(), indent=2))


if __name__ == "__main__":
    main()
