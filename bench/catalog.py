"""Catalog scoring benchmark: the catalog job (jobs/model_scoring.py) over PhysioNet 2012 stays.

`--stays` stays of set A are replayed onto Kafka beforehand (their ADT, vitals and lab records;
their descriptors pushed to Feast), then the job runs bounded with the catalog's stay models
(ICU mortality, length of stay) as champions: every record is decoded, merged with the other
topics and numbered per record id after the merging exchange (the late and duplicate check on
the merged watermark, `jobs/runtime/tables.merged_view`), folded into its stay's state, and each
state and the hour-24 and hour-48 triggers scored by both models (vectorised ONNX, Feast
lookups of the stays' descriptors).

Sustained input records/s = input records × (score rows between 10 % and 90 % of the output /
the time between them) / score rows: start-up and tail left out, as bench/device_rate.py does;
the time to the first score and to drain, and the rate of each tenth, beside it. `--runs` runs
(each replays the stays onto topics of its own), reported with their median.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.sampling import decile_rates, first_reaching, machine, sampled_run, sustained_rate
from jobs import model_scoring
from jobs.feeds import physionet2012
from jobs.runtime import kafka_io
from schemas import topics
from schemas.settings import Settings
from training.registry import bootstrap
from udfs.registry import Registry

OUT = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
MODELS = ("icu-mortality", "length-of-stay")
REDIS = "127.0.0.1:16379"


def replayed(settings: Settings, stays: int, prefix: str) -> dict[str, Any]:
    """Replay `stays` stays of set A onto topics named `prefix + topic`; what was produced."""
    plan = physionet2012.ReplayPlan(stays=stays)
    m = physionet2012.replay(settings, plan, set_name="A", prefix=prefix)
    return {
        "stays": stays,
        "adt": len(m.adt),
        "vitals": len(m.vitals),
        "labs": len(m.labs),
        "input_records": len(m.adt) + len(m.vitals) + len(m.labs),
        "dead_lettered_by_the_replay": len(m.rejected),
    }


def run_once(settings: Settings, stays: int, n: int) -> dict[str, Any]:
    """Replay the stays onto topics of their own, then one bounded run of the job over them."""
    prefix = f"bench-cat-{uuid.uuid4().hex[:6]}."
    s = dataclasses.replace(settings, job_name=f"bench-catalog-{n}")
    # the replay also writes the stays' outcome labels (for the label joins of other jobs)
    names = [
        *model_scoring.JOB.input_topics,
        *model_scoring.JOB.output_topics,
        topics.LABEL_OUTCOME.name,
    ]
    kafka_io.ensure_topics(s, names, prefix=prefix)
    produced = replayed(s, stays, prefix)
    scores = prefix + topics.MODEL_SCORE.name
    samples, drained = sampled_run(
        s, scores, lambda: model_scoring.JOB.run(s, prefix=prefix, bounded=True)
    )
    rows = kafka_io.count_records(s, scores)
    per_row = produced["input_records"] / rows
    out = {
        "produced": produced,
        "score_rows": rows,
        "dead_lettered": kafka_io.count_records(s, prefix + topics.DEAD_LETTER.name),
        "records_per_s": round(sustained_rate(samples, rows) * per_row),
        "decile_records_per_s": [round(r * per_row) for r in decile_rates(samples, rows)],
        "first_output_s": round(first_reaching(samples, 1), 1),
        "drained_s": round(drained, 1),
        "records_per_s_end_to_end": round(produced["input_records"] / drained),
    }
    kafka_io.delete_topics(s, names, prefix=prefix)
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--stays", type=int, default=1000, help="of set A")
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--out", type=Path, default=OUT / "catalog.json")
    a = ap.parse_args(argv)
    subprocess.run([str(REPO / "deploy/local/services.sh"), "start", "redis"], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env(
            delivery_guarantee="at-least-once",
            phi_key=b"wardflow-bench",
            model_registry=Path(tmp) / "registry",
            feast_dir=Path(tmp) / "feast",
            feast_online_store=REDIS,  # as deployed (deploy/local starts it)
            catalog_models=",".join(MODELS),
            checkpoint_dir=str(Path(tmp) / "checkpoints"),
        )
        kafka_io.wait_for_broker(settings)
        reg = Registry(settings.model_registry)
        for model in MODELS:
            bootstrap(reg, model)
        runs = [run_once(settings, a.stays, n) for n in range(a.runs)]
    result = {
        "machine": machine(),
        "models": list(MODELS),
        "runs": runs,
        "median_records_per_s": round(statistics.median(r["records_per_s"] for r in runs)),
    }
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
