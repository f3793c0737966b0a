"""The MIMIC-IV demo's `transfers` table replayed as a canonical ADT stream (and its capacity).

Each row is one stay in one care unit from `intime` to `outtime`. Per patient, in time order:
the first stay of a visit is an admission, a stay that starts when the previous one ended is a
transfer (a move to the same unit is a bed move), and the end of a visit's last stay is the
discharge. The `discharge` rows mark the same moment and carry no unit, so they add nothing.
Times are the table's (shifted, zone-less local time), taken as UTC.

    wardflow-mimic-adt [--data-dir ../shared/data] [--topic-prefix P] [--capacity-out F]
"""

from __future__ import annotations

import argparse
import json
import math
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from jobs.feeds.replay import produce_stream
from jobs.runtime import kafka_io
from schemas import phi, topics
from schemas.capacity import Capacity
from schemas.settings import Settings

FACILITY = "BIDMC"
SOURCE = "mimic-iv-demo-2.2:hosp/transfers"


def load_transfers(data_dir: Path) -> pd.DataFrame:
    path = data_dir / "mimic_iv_demo" / "transfers.parquet"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: see ../shared/data/mimic_iv_demo/README.md")
    return pd.read_parquet(path)


def stays(transfers: pd.DataFrame) -> pd.DataFrame:
    """The rows that occupy a care unit, sorted per patient by time."""
    s = transfers[transfers.eventtype != "discharge"].dropna(subset=["careunit", "intime"])
    return s.sort_values(["subject_id", "intime", "transfer_id"]).reset_index(drop=True)


def _utc(t: pd.Timestamp) -> datetime:
    return t.to_pydatetime().replace(tzinfo=UTC)


def events(transfers: pd.DataFrame, key: bytes) -> list[dict[str, Any]]:
    """Canonical adt.event.v1 records, ordered by event time."""
    out: list[dict[str, Any]] = []
    for subject, rows in stays(transfers).groupby("subject_id", sort=False):
        patient = phi.token(key, "mimic-iv-demo", str(subject))
        prev: Any = None
        for r in rows.itertuples():
            continuing = prev is not None and prev.outtime == r.intime
            if prev is not None and not continuing:
                out.append(_event(prev, "discharge", patient, key, prev.outtime, prev))
            kind = "transfer" if continuing else "admit"
            out.append(_event(r, kind, patient, key, r.intime, prev if continuing else None))
            prev = r
        if prev is not None and not pd.isna(prev.outtime):
            out.append(_event(prev, "discharge", patient, key, prev.outtime, prev))
    out.sort(key=lambda e: (e["event_time"], e["event_id"]))
    return out


def _event(r: Any, kind: str, patient: str, key: bytes, at: Any, prior: Any) -> dict[str, Any]:
    visit = r.hadm_id if not pd.isna(r.hadm_id) else f"ed-{r.transfer_id}"
    return {
        "event_id": f"mimic:{r.transfer_id}:{kind}",
        "event_type": kind,
        "source_message_type": f"mimic transfers.{r.eventtype}",
        "patient_token": patient,
        "encounter_token": phi.token(key, "mimic-iv-demo/hadm", str(visit)),
        "facility_id": FACILITY,
        "unit_id": None if kind == "discharge" else r.careunit,
        "bed_id": None,
        "prior_unit_id": prior.careunit if prior is not None else None,
        "prior_bed_id": None,
        "event_time": _utc(at),
        "recorded_time": None,
        "source": SOURCE,
    }


def peak_occupancy(transfers: pd.DataFrame) -> dict[str, int]:
    """Most patients ever in each care unit at once (a stay ending as another starts: not both)."""
    s = stays(transfers)
    moves = pd.concat(
        [
            pd.DataFrame({"unit": s.careunit, "t": s.intime, "d": 1}),
            pd.DataFrame({"unit": s.careunit, "t": s.outtime, "d": -1}).dropna(subset=["t"]),
        ]
    ).sort_values(["unit", "t", "d"])
    moves["n"] = moves.groupby("unit").d.cumsum()
    return {str(u): int(n) for u, n in moves.groupby("unit").n.max().items()}


def capacity(transfers: pd.DataFrame, headroom: float = 1.25) -> Capacity:
    """Beds per unit for the replay: the demo's peak occupancy plus headroom (the demo holds 100
    patients of a real hospital, so its real bed counts would show an empty hospital)."""
    beds = {
        (FACILITY, unit): max(2, math.ceil(n * headroom))
        for unit, n in peak_occupancy(transfers).items()
    }
    return Capacity(beds)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--topic-prefix", default="")
    ap.add_argument("--capacity-out", type=Path, default=None)
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    table = load_transfers(settings.data_dir)
    if a.capacity_out:
        a.capacity_out.write_text(json.dumps(capacity(table).to_dict(), indent=1))
    kafka_io.wait_for_broker(settings)
    kafka_io.ensure_topics(settings, [topics.ADT_EVENT.name], prefix=a.topic_prefix)
    evs = events(table, settings.require_phi_key())
    n = produce_stream(settings, ((topics.ADT_EVENT.name, e) for e in evs), prefix=a.topic_prefix)
    print(f"{n} ADT events from {len(stays(table))} MIMIC-IV demo stays")


if __name__ == "__main__":
    main()
