"""Build the data-quality monitors' reference (udfs/quality_reference.json) from real training
data: PhysioNet/CinC 2019 set A, mapped onto the canonical topics as the replay maps it
(schemas/physionet.py: an hour's vitals are one vitals.observation.v1 record, its labs one
labs.result.v1 record when it has any).

Per topic: the share of records refused per reason (a record with a value outside its schema
range is refused whole), and per parameter, over the accepted records' values at the FLOAT
precision the stream carries: decile bin edges (values of the data, so that a FLOAT compares
equal), each bin's share, the share of records carrying the parameter and the 1st, 5th, 50th,
95th and 99th percentiles. The device topic's parameters share the observation's references
(same quantities), without a present share (a monitor sends what it measures every second).
Body weight, which the 2019 data do not chart, is PhysioNet/CinC 2012 set A's charted weights
(kg, within the field's range; the unit-conversion monitor's reference for weight in lb),
without a present share (another data set's records).

    python -m training.quality_reference [--file setA.parquet] [--weights setA_observations.parquet]
        [--out udfs/quality_reference.json]

(`make quality-reference`). Regenerate when the training data or a topic's fields change and
commit the JSON: the data-quality job reads it from udfs/.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from schemas import topics
from schemas.physionet import LABS, VITALS
from schemas.settings import Settings
from udfs.quality import REFERENCE_FILE

DECILES = np.linspace(0.1, 0.9, 9)
PERCENTILES = {"p01": 0.01, "p05": 0.05, "p50": 0.5, "p95": 0.95, "p99": 0.99}


def parameter_reference(values: np.ndarray[Any, Any], records: int) -> dict[str, Any]:
    """One parameter's reference from its (non-null, accepted) values among `records` records."""
    v = np.sort(values.astype("float32").astype("float64"))
    edges = np.unique(np.quantile(v, DECILES, method="inverted_cdf"))
    bins = np.searchsorted(edges, v, side="right")  # bin i = number of edges <= value
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return {
        "edges": [float(e) for e in edges],
        "proportions": [round(float(c) / len(v), 6) for c in counts],
        "present_share": round(len(v) / records, 6),
        "percentiles": {
            k: float(np.quantile(v, q, method="inverted_cdf")) for k, q in PERCENTILES.items()
        },
        "values": len(v),
    }


def topic_reference(
    df: pd.DataFrame, topic: topics.Topic, columns: dict[str, str]
) -> dict[str, Any]:
    values = df[list(columns)].rename(columns=columns).astype("float64")
    is_record = (
        values.notna().any(axis=1)
        if topic is topics.LABS_RESULT
        else pd.Series(True, index=values.index)
    )
    values = values[is_record]
    fields = {f.name: f for f in topic.schema.fields}
    refused = pd.Series(False, index=values.index)
    for f in values:  # as the decoders judge the record
        refused |= fields[str(f)].out_of_range(values[f].to_numpy())
    accepted = values[~refused]
    return {
        "records": len(values),
        "refused_share": {"out_of_range": round(float(refused.mean()), 6)},
        "parameters": {
            str(f): parameter_reference(accepted[f].dropna().to_numpy(), len(accepted))
            for f in accepted
        },
    }


def weight_reference(path: Path) -> dict[str, Any]:
    """weight_kg's reference from PhysioNet 2012 observations (long format: parameter, value):
    the charted weights within the field's range (the challenge marks a missing one -1)."""
    df = pd.read_parquet(path, columns=["parameter", "value"])
    kg = df.loc[df["parameter"] == "Weight", "value"].astype("float64").to_numpy()
    field = next(f for f in topics.VITALS_OBSERVATION.schema.fields if f.name == "weight_kg")
    kg = kg[~field.out_of_range(kg)]
    return {**parameter_reference(kg, len(kg)), "present_share": None}


def build(path: Path, weights: Path | None = None) -> dict[str, Any]:
    df = pd.read_parquet(path)
    vitals = topic_reference(df, topics.VITALS_OBSERVATION, VITALS)
    if weights is not None:
        vitals["parameters"]["weight_kg"] = weight_reference(weights)
    labs = topic_reference(df, topics.LABS_RESULT, LABS)
    device_fields = {f.name for f in topics.VITALS_DEVICE.schema.fields}
    device = {
        "records": None,
        "refused_share": {},
        "parameters": {
            f: {**p, "present_share": None}
            for f, p in vitals["parameters"].items()
            if f in device_fields
        },
    }
    return {
        "name": f"physionet2019:{path.stem}",
        "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
        **(
            {
                "weight_kg_from": {
                    "name": f"physionet2012:{weights.stem}",
                    "sha256": hashlib.sha256(weights.read_bytes()).hexdigest(),
                }
            }
            if weights is not None
            else {}
        ),
        "built_by": "python -m training.quality_reference",
        "topics": {
            topics.VITALS_OBSERVATION.name: vitals,
            topics.LABS_RESULT.name: labs,
            topics.VITALS_DEVICE.name: device,
        },
    }


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--file", type=Path, default=None, help="PhysioNet 2019 set A parquet")
    ap.add_argument(
        "--weights", type=Path, default=None, help="PhysioNet 2012 set A observations parquet"
    )
    ap.add_argument("--out", type=Path, default=REFERENCE_FILE)
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    path = a.file or settings.physionet_setA
    weights = a.weights or settings.physionet2012_dir / "setA_observations.parquet"
    ref = build(path, weights if weights.exists() else None)
    a.out.write_text(json.dumps(ref, indent=1) + "\n")
    n = sum(len(t["parameters"]) for t in ref["topics"].values())
    print(f"wrote {a.out}: {n} parameter references from {path}")


if __name__ == "__main__":
    main()
