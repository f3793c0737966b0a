"""ADT demographics → the Feast online store: the age and sex an ADT event carries
(adt.event.v1 revision 2, read from HL7 PID-7/PID-8 or the FHIR Patient of an Encounter's
Bundle: schemas/interop/demographics.py) become the patient's static features, which the
sepsis model reads (`patient_static`: age_years, female) and the catalog's stay models too
(`icu_stay_static`, keyed by the same patient token). Without it, every patient of the HL7 and
FHIR feeds was scored without age and sex (only the PhysioNet replays pushed them).

- A record that gives neither is counted (`without_demographics`) and changes nothing.
- What a record does not give keeps what the store knows: a later A08 with the sex and no birth
  date keeps the age; a stay's height, weight and ICU type (the stay replay's) are kept.
- Each row is timed when the sink pushes it (Feast's event_timestamp): the newest received wins
  (`demographic_rows`).
- A record that does not decode is a dead letter with the reason, never dropped.

Offsets are committed after each batch is pushed: a batch pushed again after a crash writes the
same values. Reads committed records only.

    python -m sinks.feast_demographics [--drain] [--topic-prefix P]
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd

from feature_store import icu_stay
from feature_store.definitions import STATIC_FEATURES
from schemas import codec, topics
from schemas.settings import Settings
from sinks.draining import Draining, command_line

STAGE = "feast_demographics"
ADT = topics.ADT_EVENT
KEY = "patient_token"
TIME = "event_timestamp"
DEMOGRAPHICS = ("age_years", "female")


@dataclass
class DemographicsStats:
    read: int = 0  # records that gave an age or a sex
    pushed: int = 0  # patient rows pushed (one per patient per batch)
    without_demographics: int = 0  # records that gave neither
    dead_lettered: int = 0


def demographic_rows(records: Iterable[dict[str, Any]], at: datetime) -> pd.DataFrame:
    """One row per patient with the latest (in arrival order: a patient's records share a
    partition) of what their records give: the token, `event_timestamp` = `at` (when the sink
    learned it) and `DEMOGRAPHICS` (NaN: not given). Timed by arrival, not by the event: Feast's
    online store keeps a write only if it is newer than the row it holds, so a correction re-sent
    with its admission's time (a FHIR Encounter version, an A08 in the minute of the A01) was
    dropped, and a late-entered admission's birth date never written after an A08's sex."""
    rows = [
        {
            KEY: r[KEY],
            "age_years": r.get("age_years"),
            "female": None if r.get("female") is None else float(r["female"]),
        }
        for r in records
        if r.get("age_years") is not None or r.get("female") is not None
    ]
    if not rows:
        return pd.DataFrame(columns=[KEY, TIME, *DEMOGRAPHICS])
    frame = pd.DataFrame(rows).astype({"age_years": "float64", "female": "float64"})
    latest = frame.groupby(KEY, sort=False).last().reset_index()  # each column's last given
    latest[TIME] = pd.Timestamp(at)
    return latest[[KEY, TIME, *DEMOGRAPHICS]]


def merged(new: pd.DataFrame, known: pd.DataFrame, features: tuple[str, ...]) -> pd.DataFrame:
    """`new`'s rows with every feature of `features`: what `new` gives, else what the store
    knows (`known`, indexed by token, NaN where unknown)."""
    out = new.set_index(KEY)
    for f in features:
        given = out[f] if f in out else pd.Series(float("nan"), index=out.index)
        out[f] = given.combine_first(known[f].reindex(out.index)).astype("float64")
    return out.reset_index()[[KEY, TIME, *features]]


@dataclass(frozen=True)
class Store:
    """The online store's two static views: their lookups (token → known values) and pushes."""

    patient: Callable[[list[str]], pd.DataFrame]
    push_patient: Callable[[pd.DataFrame], None]
    stay: Callable[[list[str]], pd.DataFrame]
    push_stay: Callable[[pd.DataFrame], None]

    @classmethod
    def open(cls, settings: Settings) -> Store:
        """Opens the Feast repo (importing feast takes seconds)."""
        from feature_store.feast_import import import_repo_without_torch

        import_repo_without_torch()
        from feature_store import repo

        store = repo.open_store(settings.feast_dir, settings.feast_online_store)
        return cls(
            patient=lambda tokens: repo.online_static(store, tokens),
            push_patient=lambda rows: repo.push_static(store, rows),
            stay=lambda tokens: repo.online_stay_static(store, tokens),
            push_stay=lambda rows: repo.push_stay_static(store, rows),
        )

    def write(self, rows: pd.DataFrame) -> None:
        """Push `demographic_rows` to both views, each keeping the features it knows."""
        tokens = rows[KEY].tolist()
        self.push_patient(merged(rows, self.patient(tokens), STATIC_FEATURES))
        self.push_stay(merged(rows, self.stay(tokens), icu_stay.STATIC_FEATURES))


class DemographicsSink(Draining[DemographicsStats]):
    what = "feast demographics sink"

    def __init__(
        self,
        settings: Settings,
        store: Store,
        *,
        prefix: str = "",
        group_id: str = "wardflow-feast-demographics",
    ) -> None:
        self.store = store
        self.read_one_topic(settings, ADT.name, prefix, group_id)
        self.stats = DemographicsStats()

    def poll_batch(self, timeout_s: float = 1.0) -> int:
        """Push the demographics of the next batch of ADT events, then commit their offsets."""
        msgs = self.consumer.consume(num_messages=2000, timeout=timeout_s)
        records = []
        for m in msgs:
            if m.error():
                continue
            rec = codec.decode(ADT.schema, m.value())
            if isinstance(rec, codec.Rejection):
                self.produce_dead_letter(m, STAGE, rec)
                self.stats.dead_lettered += 1
            elif rec.get("age_years") is None and rec.get("female") is None:
                self.stats.without_demographics += 1
            else:
                records.append(rec)
        rows = demographic_rows(records, datetime.now(UTC))
        if len(rows):
            self.store.write(rows)
            self.stats.read += len(records)
            self.stats.pushed += len(rows)
        if msgs:
            self.producer.flush_or_raise()
            self.consumer.commit(asynchronous=False)
        return len(msgs)


def main(argv: list[str] | None = None) -> None:
    settings, a = command_line(__doc__, argv, "every event is read")
    sink = DemographicsSink(settings, Store.open(settings), prefix=a.topic_prefix)
    stats = sink.run_until_signalled(drain=a.drain)
    print(
        f"read {stats.read}, pushed {stats.pushed} patient rows; without demographics "
        f"{stats.without_demographics}; "
        f"dead-lettered {stats.dead_lettered}"
    )


if __name__ == "__main__":
    main()
