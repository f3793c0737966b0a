"""Diabetes 130-US hospitals encounters replayed as discharge-summary traffic for the readmission
model: per encounter an admission and, `time_in_hospital` days later, its discharge
(`adt.event.v1`), with the encounter's facts at discharge (feature_store/encounter_facts.py)
pushed to Feast (`encounter_facts`, by the encounter's token) before the discharge is published,
as a discharge-summary interface would.

    python -m jobs.feeds.diabetes130 --encounters 500 [--dry-run]

The data hold no dates: admissions are spread over `spread_days` from `base_time` in encounter
order (chronological per patient), each discharge `time_in_hospital` days after its admission.
`prior_encounters_seen` counts the patient's encounters replayed before this one, as the stream
would know them. Encounters ended by death or hospice cannot be readmitted: their discharges are
published, their facts are not pushed, so the readmission model leaves them unscored
(udfs/model_set.py scores no row of which nothing is known).

The outcome (`readmitted`) never reaches the facts or the ADT events; it is read apart
(`load_outcomes`) for one thing only, a `readmission_30d` label per scored (eligible) encounter on
`label.outcome.v1`, known 30 days after the discharge (`known_at` = discharge + 30 d, when a
readmission within 30 days can no longer be missed): `occurred` = readmitted == '<30' (Strack et
al., BioMed Res Int 2014). The data hold no readmission date, so `outcome_time` and
`outcome_lead_h` are null. The entity is `encounter` and its token the encounter's, as
jobs/model_scoring.py scores discharge models (`entity_token = encounter_token`).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from feature_store import encounter_facts as facts
from jobs.feeds import labels as outcome_labels
from jobs.feeds.publisher import Publisher
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.settings import Settings

STAGE = "diabetes130_replay"
SOURCE = "uci:diabetes130"
FACILITY = "D130"
UNIT = "MED"
BASE_TIME = datetime(2025, 1, 6, tzinfo=UTC)
LABEL_AFTER = timedelta(days=30)  # a 30-day readmission is known 30 days after the discharge
READMITTED_WITHIN_30D = "<30"


@dataclass
class Mapped:
    adt: list[dict[str, Any]]  # admissions and discharges, in event-time order
    facts: pd.DataFrame  # encounter_token, event_timestamp (the discharge), FEATURES
    labels: list[dict[str, Any]] = field(default_factory=list)  # label.outcome.v1, by known_at


def map_encounters(
    frame: pd.DataFrame,
    *,
    key: bytes,
    source: str = SOURCE,
    base_time: datetime = BASE_TIME,
    spread_days: float = 365.0,
    facility: str = FACILITY,
    readmitted: pd.Series[Any] | None = None,
) -> Mapped:
    """Pure: the ADT events and the Feast facts of these encounters (no I/O); with `readmitted`
    (load_outcomes: by encounter id) also the readmission labels of the eligible ones."""
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
    labels = []
    if readmitted is not None:
        outcome = readmitted.reindex(frame[facts.ENCOUNTER_KEY].to_numpy())
        if outcome.isna().any():
            raise ValueError(f"{int(outcome.isna().sum())} encounters have no `readmitted`")
        within_30d = (outcome == READMITTED_WITHIN_30D).to_numpy()
        for i in range(n):
            if eligible[i]:
                labels.append(
                    outcome_labels.outcome_label(
                        patient_token=patient[i],
                        facility_id=facility,
                        unit_id=UNIT,
                        entity="encounter",
                        entity_token=encounter[i],
                        outcome="readmission_30d",
                        occurred=bool(within_30d[i]),
                        outcome_time=None,
                        known_at=discharge[i] + LABEL_AFTER,
                    )
                )
    labels.sort(key=lambda r: (r["known_at"], r["entity_token"]))
    return Mapped(adt, features[eligible].reset_index(drop=True), labels)


def load(settings: Settings, path: Path | None = None, encounters: int = 0) -> pd.DataFrame:
    """The file's first `encounters` encounters (0: all), by encounter id; never `readmitted`."""
    frame = pd.read_parquet(path or settings.diabetes130_file)
    frame = frame.drop(columns=[facts.LABEL_COLUMN], errors="ignore")
    frame = frame.sort_values(facts.ENCOUNTER_KEY)
    return frame.head(encounters) if encounters else frame


def load_outcomes(settings: Settings, path: Path | None = None) -> pd.Series[Any]:
    """`readmitted` by encounter id (the labels' only source; never a feature)."""
    cols = [facts.ENCOUNTER_KEY, facts.LABEL_COLUMN]
    frame = pd.read_parquet(path or settings.diabetes130_file, columns=cols)
    return frame.set_index(facts.ENCOUNTER_KEY)[facts.LABEL_COLUMN]


def replay(
    settings: Settings,
    frame: pd.DataFrame,
    *,
    prefix: str = "",
    dry_run: bool = False,
    readmitted: pd.Series[Any] | None = None,
) -> Mapped:
    """Validate and (unless `dry_run`) push the facts, produce the ADT events, then the labels
    (with `readmitted`), each at its known_at."""
    m = map_encounters(frame, key=settings.require_phi_key(), readmitted=readmitted)
    pub = Publisher(settings, prefix=prefix, stage=STAGE)
    encoded = pub.encode([(topics.ADT_EVENT.name, r) for r in m.adt])
    if not isinstance(encoded, list):
        raise ValueError(f"a mapped record does not validate: {encoded.reason}")
    labels = outcome_labels.encode(m.labels)
    if not isinstance(labels, list):
        raise ValueError(f"a label does not validate: {labels.reason}")
    if dry_run:
        return m
    from feature_store import repo

    store = repo.open_store(settings.feast_dir, settings.feast_online_store)
    repo.push_encounter_facts(store, m.facts)
    kafka_io.ensure_topics(
        settings, [topics.ADT_EVENT.name, outcome_labels.TOPIC.name], prefix=prefix
    )
    pub.send(encoded)
    outcome_labels.send(pub, labels)
    pub.flush(120)
    return m


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--encounters", type=int, default=500, help="0: every encounter")
    ap.add_argument("--file", type=Path, default=None)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument("--dry-run", action="store_true", help="map and validate; produce nothing")
    ap.add_argument(
        "--no-labels", action="store_true", help="no readmission labels (label.outcome.v1)"
    )
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    if not a.dry_run:
        kafka_io.wait_for_broker(settings)
    frame = load(settings, a.file, a.encounters)
    readmitted = None if a.no_labels else load_outcomes(settings, a.file)
    m = replay(settings, frame, prefix=a.topic_prefix, dry_run=a.dry_run, readmitted=readmitted)
    summary = {
        "encounters": len(frame),
        "adt_events": len(m.adt),
        "facts_pushed": len(m.facts),
        "not_pushed_expired_or_hospice": int(len(frame) - len(m.facts)),
        "readmission_labels": len(m.labels),
        "readmitted_within_30d": sum(r["occurred"] for r in m.labels),
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
