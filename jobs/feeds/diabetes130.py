"""Diabetes 130-US hospitals encounters replayed as discharge-summary traffic for the readmission
model: per encounter an admission and, `time_in_hospital` days later, its discharge
(`adt.event.v1`), with the encounter's facts at discharge (feature_store/encounter_facts.py)
pushed to Feast (`encounter_facts`, by the encounter's token) before the discharge is published,
as a discharge-summary interface would.

    python -m jobs.feeds.diabetes130 --encounters 500 [--dry-run]

The data hold no dates: admissions are spread over `spread_days` from `base_time` in encounter
order (chronological per patient), each discharge `time_in_hospital` days after its admission.
`prior_encounters_seen` counts the patient's encounters replayed before this one, as the stream
would know them. The outcome (`readmitted`) is never read. Encounters ended by death or hospice
cannot be readmitted: their discharges are published, their facts are not pushed, so the
readmission model leaves them unscored (udfs/model_set.py scores no row of which nothing is
known).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from feature_store import encounter_facts as facts
from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.settings import Settings

STAGE = "diabetes130_replay"
SOURCE = "uci:diabetes130"
FACILITY = "D130"
UNIT = "MED"
BASE_TIME = datetime(2025, 1, 6, tzinfo=UTC)


@dataclass
class Mapped:
    adt: list[dict[str, Any]]  # admissions and discharges, in event-time order
    facts: pd.DataFrame  # encounter_token, event_timestamp (the discharge), FEATURES


def map_encounters(
    frame: pd.DataFrame,
    *,
    key: bytes,
    source: str = SOURCE,
    base_time: datetime = BASE_TIME,
    spread_days: float = 365.0,
    facility: str = FACILITY,
) -> Mapped:
    """Pure: the ADT events and the Feast facts of these encounters (no I/O)."""
    frame = frame.sort_values(facts.ENCOUNTER_KEY).reset_index(drop=True)
    n = len(frame)
    step = timedelta(days=spread_days) / max(n, 1)
    admit = [base_time + i * step for i in range(n)]
    stay = pd.to_numeric(frame["time_in_hospital"], errors="coerce").fillna(1).to_numpy()
    discharge = [a + timedelta(days=float(d)) for a, d in zip(admit, stay, strict=True)]
    patient = [phi.token(key, source, str(p)) for p in frame[facts.PATIENT_KEY]]
    encounter = [phi.token(key, f"{source}:encounter", str(e)) for e in frame[facts.ENCOUNTER_KEY]]
    adt = []
    for i in range(n):
        for kind, at in (("admit", admit[i]), ("discharge", discharge[i])):
            adt.append(
                {
                    "event_id": f"{encounter[i]}:{kind}",
                    "event_type": kind,
                    "source_message_type": "diabetes130",
                    "patient_token": patient[i],
                    "encounter_token": encounter[i],
                    "facility_id": facility,
                    "unit_id": UNIT if kind == "admit" else None,
                    "bed_id": None,
                    "prior_unit_id": UNIT if kind == "discharge" else None,
                    "prior_bed_id": None,
                    "event_time": at,
                    "recorded_time": None,
                    "source": source,
                }
            )
    adt.sort(key=lambda r: (r["event_time"], r["event_type"] != "discharge"))
    features = facts.encounter_features(frame)
    features.insert(0, "event_timestamp", discharge)
    features.insert(0, "encounter_token", encounter)
    eligible = facts.eligible(frame).to_numpy()
    return Mapped(adt, features[eligible].reset_index(drop=True))


def load(settings: Settings, path: Path | None = None, encounters: int = 0) -> pd.DataFrame:
    """The file's first `encounters` encounters (0: all), by encounter id; never `readmitted`."""
    frame = pd.read_parquet(path or settings.diabetes130_file)
    frame = frame.drop(columns=[facts.LABEL_COLUMN], errors="ignore")
    frame = frame.sort_values(facts.ENCOUNTER_KEY)
    return frame.head(encounters) if encounters else frame


def replay(
    settings: Settings, frame: pd.DataFrame, *, prefix: str = "", dry_run: bool = False
) -> Mapped:
    m = map_encounters(frame, key=settings.require_phi_key())
    pub = Publisher(settings, prefix=prefix, stage=STAGE)
    encoded = pub.encode([(topics.ADT_EVENT.name, r) for r in m.adt])
    if not isinstance(encoded, list):
        raise ValueError(f"a mapped record does not validate: {encoded.reason}")
    if dry_run:
        return m
    from feature_store import repo

    store = repo.open_store(settings.feast_dir, settings.feast_online_store)
    repo.push_encounter_facts(store, m.facts)
    kafka_io.ensure_topics(settings, [topics.ADT_EVENT.name], prefix=prefix)
    pub.send(encoded)
    pub.flush(120)
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encounters", type=int, default=500, help="0: every encounter")
    ap.add_argument("--file", type=Path, default=None)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument("--dry-run", action="store_true", help="map and validate; produce nothing")
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    if not a.dry_run:
        kafka_io.wait_for_broker(settings)
    frame = load(settings, a.file, a.encounters)
    m = replay(settings, frame, prefix=a.topic_prefix, dry_run=a.dry_run)
    summary = {
        "encounters": len(frame),
        "adt_events": len(m.adt),
        "facts_pushed": len(m.facts),
        "not_pushed_expired_or_hospice": int(len(frame) - len(m.facts)),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
