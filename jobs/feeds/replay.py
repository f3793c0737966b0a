"""Replay producer: streams real ICU patients into `vitals.observation.v1` as device observations.

Reads a file in the PhysioNet/CinC 2019 format (set A by default; the bundled 40-patient sample
when the data set is absent), maps each hourly row to an observation whose event time is the
patient's ICU admission plus ICULOS hours, tokenises patient ids with a keyed HMAC, and produces
in event-time order at a chosen speed-up (0 = as fast as possible).
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm import tqdm

from jobs.runtime import kafka_io
from schemas import codec, load_schema, phi, topics
from schemas.physionet import LABS, VITALS
from schemas.settings import Settings

SAMPLE = Path(__file__).resolve().parent / "sample" / "physionet2019_setA_sample.parquet"
TOPIC = topics.VITALS_OBSERVATION.name
DEFAULT_BASE_TIME = datetime(2026, 1, 5, tzinfo=UTC)
FACILITY = "hospital-a"
LABS_TOPIC = topics.LABS_RESULT.name
ADT_TOPIC = topics.ADT_EVENT.name
LABEL_TOPIC = topics.LABEL_OUTCOME.name
# PhysioNet/CinC 2019: SepsisLabel is 1 from 6 h before Sepsis-3 onset t_sepsis on (Reyna et al.,
# Crit Care Med 2020), so onset is the first labelled hour + 6 h.
LABEL_LEAD_H = 6


@dataclass(frozen=True)
class ReplayPlan:
    patients: int
    seed: int = 2019
    base_time: datetime = DEFAULT_BASE_TIME
    admission_spread_h: float = 24.0


def load_physionet(path: Path | None, settings: Settings) -> tuple[pd.DataFrame, str]:
    p = path or settings.physionet_setA
    if p.exists():
        return pd.read_parquet(p), f"physionet2019:{p.stem}"
    return pd.read_parquet(SAMPLE), "physionet2019:setA-sample"


def select_patients(df: pd.DataFrame, plan: ReplayPlan) -> pd.DataFrame:
    ids = np.sort(df["patient_id"].unique())
    rng = np.random.default_rng(plan.seed)
    chosen = ids if plan.patients >= len(ids) else rng.choice(ids, plan.patients, replace=False)
    return df[df["patient_id"].isin(set(chosen))]


def unit_of(unit1: float, unit2: float) -> str:
    if unit1 == 1:
        return "MICU"
    if unit2 == 1:
        return "SICU"
    return "ICU"


def observations(
    df: pd.DataFrame, plan: ReplayPlan, key: bytes, source: str
) -> list[dict[str, Any]]:
    """Observation records in event-time order (ties broken by patient token)."""
    admit_at = admissions(df, plan)
    out: list[dict[str, Any]] = []
    for pid, rows in df.groupby("patient_id", sort=True):
        tok = phi.token(key, source, str(pid))
        admit = admit_at[pid]
        unit = unit_of(float(rows["Unit1"].iloc[0]), float(rows["Unit2"].iloc[0]))
        vit = {f: rows[c].to_numpy(dtype=np.float64) for c, f in VITALS.items()}
        for i, iculos in enumerate(rows["ICULOS"].to_numpy()):
            rec: dict[str, Any] = {
                "observation_id": f"{tok}:{int(iculos)}",
                "patient_token": tok,
                "facility_id": FACILITY,
                "unit_id": unit,
                "bed_id": None,
                "device_id": None,
                "event_time": admit + timedelta(hours=int(iculos)),
                "on_supplemental_o2": None,
                "acvpu": None,
                "spo2_scale2": None,
                "source": source,
            }
            for f, arr in vit.items():
                v = arr[i]
                rec[f] = None if math.isnan(v) else float(v)
            out.append(rec)
    out.sort(key=lambda r: (r["event_time"], r["patient_token"]))
    return out


def admissions(df: pd.DataFrame, plan: ReplayPlan) -> dict[Any, datetime]:
    rng = np.random.default_rng(plan.seed + 1)
    ids = np.sort(df["patient_id"].unique())
    admit_h = rng.uniform(0, plan.admission_spread_h, len(ids))
    return {
        pid: plan.base_time + timedelta(hours=round(float(h), 3))
        for pid, h in zip(ids, admit_h, strict=True)
    }


def static_features(df: pd.DataFrame, plan: ReplayPlan, key: bytes, source: str) -> pd.DataFrame:
    """What registration knows of each replayed patient, for the Feast online store
    (feature_store.repo.push_static): age and sex, valid from admission."""
    first = df.groupby("patient_id", sort=True)[["Age", "Gender"]].first()
    admit = admissions(df, plan)
    return pd.DataFrame(
        {
            "patient_token": [phi.token(key, source, str(pid)) for pid in first.index],
            "event_timestamp": [admit[pid] for pid in first.index],
            "age_years": first["Age"].astype("float64").to_numpy(),
            "female": (first["Gender"] == 0).astype("float64").to_numpy(),
        }
    )


def clinical_stream(
    df: pd.DataFrame, plan: ReplayPlan, key: bytes, source: str
) -> list[tuple[str, dict[str, Any]]]:
    """(topic, record) for vitals, lab results (one per hour with any lab value) and an ADT
    discharge one hour after each patient's last row, in event-time order (vitals, then labs,
    then ADT at equal times). Vitals are exactly `observations()`."""
    out: list[tuple[str, dict[str, Any]]] = [
        (TOPIC, r) for r in observations(df, plan, key, source)
    ]
    admit = admissions(df, plan)
    for pid, rows in df.groupby("patient_id", sort=True):
        tok = phi.token(key, source, str(pid))
        unit = unit_of(float(rows["Unit1"].iloc[0]), float(rows["Unit2"].iloc[0]))
        labs = {f: rows[c].to_numpy(dtype=np.float64) for c, f in LABS.items()}
        iculos = rows["ICULOS"].to_numpy()
        for i, hour in enumerate(iculos):
            values = {f: None if math.isnan(a[i]) else float(a[i]) for f, a in labs.items()}
            if all(v is None for v in values.values()):
                continue
            out.append(
                (
                    LABS_TOPIC,
                    {
                        "result_id": f"{tok}:{int(hour)}:labs",
                        "patient_token": tok,
                        "facility_id": FACILITY,
                        "unit_id": unit,
                        "event_time": admit[pid] + timedelta(hours=int(hour)),
                        **values,
                        "source": source,
                    },
                )
            )
        out.append(
            (
                ADT_TOPIC,
                {
                    "event_id": f"{tok}:discharge",
                    "event_type": "discharge",
                    "source_message_type": "replay",
                    "patient_token": tok,
                    "encounter_token": None,
                    "facility_id": FACILITY,
                    "unit_id": None,
                    "bed_id": None,
                    "prior_unit_id": unit,
                    "prior_bed_id": None,
                    "event_time": admit[pid] + timedelta(hours=int(iculos.max()) + 1),
                    "recorded_time": None,
                    "source": source,
                },
            )
        )
    order = {TOPIC: 0, LABS_TOPIC: 1, ADT_TOPIC: 2}
    out.sort(key=lambda tr: (tr[1]["event_time"], order[tr[0]], tr[1]["patient_token"]))
    return out


def sepsis_labels(
    df: pd.DataFrame,
    admit: dict[Any, datetime],
    *,
    key: bytes,
    source: str,
    facility: str = FACILITY,
) -> list[dict[str, Any]]:
    """One `sepsis_onset` outcome per patient (label.outcome.v1), known at the discharge (one
    hour after the last row, as `clinical_stream` discharges): true with onset = first
    SepsisLabel hour + 6 h (`LABEL_LEAD_H`), else false without a time. A patient labelled from
    the first hour had onset at most 6 h later; that upper bound is the time given."""
    out = []
    for pid, rows in df.groupby("patient_id", sort=True):
        tok = phi.token(key, source, str(pid))
        hours = rows["ICULOS"].to_numpy()
        discharge = admit[pid] + timedelta(hours=int(hours.max()) + 1)
        labelled = hours[rows["SepsisLabel"].to_numpy() == 1]
        onset = (
            admit[pid] + timedelta(hours=int(labelled.min()) + LABEL_LEAD_H)
            if len(labelled)
            else None
        )
        known = discharge if onset is None else max(discharge, onset)
        out.append(
            {
                "label_id": f"{tok}:sepsis_onset",
                "patient_token": tok,
                "facility_id": facility,
                "unit_id": unit_of(float(rows["Unit1"].iloc[0]), float(rows["Unit2"].iloc[0])),
                "entity": "patient",
                "entity_token": tok,
                "outcome": "sepsis_onset",
                "occurred": onset is not None,
                "outcome_time": onset,
                "outcome_lead_h": None
                if onset is None
                else (known - onset).total_seconds() / 3600.0,
                "known_at": known,
            }
        )
    return sorted(out, key=lambda r: (r["known_at"], r["patient_token"]))


def record_time(topic: str, rec: dict[str, Any]) -> datetime:
    """A record's Kafka timestamp: `codec.record_time` (an outcome label's: when it became
    known)."""
    at: datetime = rec["known_at"] if topic == LABEL_TOPIC else codec.record_time(rec)
    return at


class Pacer:
    """Holds production back so that event time advances `speedup` times faster than wall time
    (0 = as fast as possible)."""

    def __init__(self, speedup: float, producer: Any) -> None:
        self.speedup = speedup
        self.producer = producer
        self.t0_wall = time.monotonic()
        self.t0_event: datetime | None = None

    def wait_for(self, event_time: datetime) -> None:
        if self.speedup <= 0:
            return
        self.t0_event = self.t0_event or event_time
        due = (event_time - self.t0_event).total_seconds() / self.speedup
        lag = due - (time.monotonic() - self.t0_wall)
        if lag > 0:
            self.producer.flush()
            time.sleep(lag)


def produce_stream(
    settings: Settings,
    items: Iterable[tuple[str, dict[str, Any]]],
    *,
    prefix: str = "",
    speedup: float = 0.0,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Produce (topic, record) pairs to `prefix + topic`, keyed by patient token, with the
    Kafka timestamp = `record_time`; returns the count."""
    p = kafka_io.producer(settings)
    pacer = Pacer(speedup, p)
    sent = 0
    for topic, rec in tqdm(items, total=total, unit="rec", desc="replay", disable=not progress):
        at = record_time(topic, rec)
        pacer.wait_for(at)
        value = codec.encode(load_schema(topic), rec)
        ts = codec.epoch_ms(at)
        produce_raw(p, prefix + topic, rec["patient_token"].encode(), value, ts)
        sent += 1
    p.flush_or_raise(60)
    return sent


def produce(
    settings: Settings,
    records: Iterable[dict[str, Any]],
    *,
    topic: str = TOPIC,
    speedup: float = 0.0,
    total: int | None = None,
    progress: bool = True,
) -> int:
    """Produce records keyed by patient token, Kafka timestamp = event_time; returns the count."""
    schema = topics.VITALS_OBSERVATION.schema
    p = kafka_io.producer(settings)
    pacer = Pacer(speedup, p)
    sent = 0
    bar = tqdm(total=total, unit="obs", desc=f"replay → {topic}", disable=not progress)
    for rec in records:
        et: datetime = rec["event_time"]
        pacer.wait_for(et)
        produce_raw(
            p, topic, rec["patient_token"].encode(), codec.encode(schema, rec), codec.epoch_ms(et)
        )
        sent += 1
        bar.update()
    p.flush_or_raise(60)
    bar.close()
    return sent


def produce_raw(p: Any, topic: str, key: bytes | None, value: bytes | None, ts_ms: int) -> None:
    while True:
        try:
            p.produce(topic, key=key, value=value, timestamp=ts_ms)
            return
        except BufferError:
            p.poll(0.1)


def replay(
    settings: Settings,
    plan: ReplayPlan,
    *,
    path: Path | None = None,
    speedup: float = 0.0,
    topic: str = TOPIC,
    progress: bool = True,
) -> int:
    df, source = load_physionet(path, settings)
    recs = observations(select_patients(df, plan), plan, settings.require_phi_key(), source)
    return produce(
        settings, iter(recs), topic=topic, speedup=speedup, total=len(recs), progress=progress
    )


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--patients", type=int, default=300)
    ap.add_argument("--file", type=Path, default=None, help="a PhysioNet 2019 format parquet")
    ap.add_argument("--speedup", type=float, default=0.0, help="event time / wall time; 0 = max")
    ap.add_argument("--seed", type=int, default=2019)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument(
        "--vitals-only",
        action="store_true",
        help="only vitals.observation.v1 (the NEWS2 spine job); default: vitals, labs, ADT",
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    kafka_io.wait_for_broker(settings)
    plan = ReplayPlan(patients=a.patients, seed=a.seed)
    if a.vitals_only:
        kafka_io.ensure_topics(settings, [TOPIC], prefix=a.topic_prefix)
        n = replay(settings, plan, path=a.file, speedup=a.speedup, topic=a.topic_prefix + TOPIC)
        print(f"produced {n} observations to {a.topic_prefix + TOPIC}")
        return
    df, source = load_physionet(a.file, settings)
    chosen = select_patients(df, plan)
    key = settings.require_phi_key()
    items = clinical_stream(chosen, plan, key, source)
    labels = sepsis_labels(chosen, admissions(chosen, plan), key=key, source=source)
    items += [(LABEL_TOPIC, r) for r in labels]  # outcomes, as they become known at discharge
    order = {TOPIC: 0, LABS_TOPIC: 1, ADT_TOPIC: 2, LABEL_TOPIC: 3}
    items.sort(key=lambda tr: (record_time(*tr), order[tr[0]], tr[1]["patient_token"]))
    topics_out = [TOPIC, LABS_TOPIC, ADT_TOPIC, LABEL_TOPIC]
    kafka_io.ensure_topics(settings, topics_out, prefix=a.topic_prefix)
    n = produce_stream(settings, items, prefix=a.topic_prefix, speedup=a.speedup, total=len(items))
    print(f"produced {n} vitals, lab, ADT and outcome records under prefix {a.topic_prefix!r}")


if __name__ == "__main__":
    main()
