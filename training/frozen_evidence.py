"""The evidence for the frozen-device thresholds (udfs.quality.Thresholds `frozen_*`, monitor
`frozen_device`) on real ICU vital signs: how often, and for how long, a real patient's
consecutive readings are identical in every parameter, and what the monitor itself (its Python
reference: udfs.quality.device_windows, then udfs.quality.FrozenFeed) raises on them.
`python -m training.frozen_evidence [--data-dir DIR]` prints the table udfs/quality.py's module
docstring quotes.

The data (../shared/data; each folder's README): the MIMIC-III and eICU demo cohorts as YAIB
built them (`yaib_demo_sepsis`: an hourly grid, values aggregated within the hour; in MIMIC-III
mostly one charted value an hour), PhysioNet/CinC 2019 set A (hourly), and PhysioNet/CinC 2012
sets A and B (each charting at its own minute; the arterial pressures preferred to the cuff's at
a minute, as schemas.physionet2012 publishes them; -1 is its missing marker). None of them is
1 Hz monitor numerics: a reading here is one charted set of vital signs.

Each stay is read two ways (VIEWS):
- `charted`: every vital sign as charted (heart rate, SpO2, respiratory rate, the three
  pressures, temperature); a reading repeats the one before only with the same parameters, each
  identical: what a gateway's charted observations carry (vitals.observation.v1 with a device);
- `monitor`: heart rate, SpO2 and respiratory rate alone, in the readings that carry all three:
  the least a bedside monitor sends (no arterial line, temperature probe or signal-quality
  index), and so the easiest to find identical. (2012 has no SpO2.)
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from jobs.feeds import device_sim
from schemas import topics
from schemas.settings import Settings
from udfs import quality

VITALS = topics.VITALS_OBSERVATION.name
# The bedside monitor's numerics (the device record's), the parameters a frozen feed repeats.
FIELDS = device_sim.NUMERICS
VIEWS: dict[str, tuple[str, ...]] = {
    "charted": FIELDS,
    "monitor": ("heart_rate_bpm", "spo2_pct", "resp_rate_per_min"),
}
YAIB = {"hr": FIELDS[0], "o2sat": FIELDS[1], "resp": FIELDS[2], "sbp": FIELDS[3],
        "dbp": FIELDS[4], "map": FIELDS[5], "temp": FIELDS[6]}  # fmt: skip
SET_A = {"HR": FIELDS[0], "O2Sat": FIELDS[1], "Resp": FIELDS[2], "SBP": FIELDS[3],
         "DBP": FIELDS[4], "MAP": FIELDS[5], "Temp": FIELDS[6]}  # fmt: skip
# PhysioNet 2012: the field, from the arterial line's parameter else the cuff's
P2012 = {"HR": (FIELDS[0],), "RespRate": (FIELDS[2],), "SysABP": (FIELDS[3], "NISysABP"),
         "DiasABP": (FIELDS[4], "NIDiasABP"), "MAP": (FIELDS[5], "NIMAP"),
         "Temp": (FIELDS[6],)}  # fmt: skip
MISSING_2012 = -1.0


def _frame(stay: pd.Series[Any], minute: pd.Series[Any], values: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"stay": stay.astype(str).to_numpy(), "minute": minute.to_numpy()})
    for f in FIELDS:
        out[f] = values[f].to_numpy("float64") if f in values else np.nan
    out = out[out[list(FIELDS)].notna().any(axis=1)]
    return out.sort_values(["stay", "minute"], kind="stable").reset_index(drop=True)


def _yaib(folder: Path) -> pd.DataFrame:
    d = pd.read_parquet(folder / "dyn.parquet", columns=["stay_id", "time", *YAIB])
    return _frame(d["stay_id"], d["time"].dt.total_seconds() / 60, d.rename(columns=YAIB))


def _set_a(path: Path) -> pd.DataFrame:
    d = pd.read_parquet(path, columns=["patient_id", "ICULOS", *SET_A])
    return _frame(d["patient_id"], d["ICULOS"] * 60.0, d.rename(columns=SET_A))


def _set_2012(path: Path) -> pd.DataFrame:
    names = [n for spec in P2012.values() for n in spec[1:]] + list(P2012)
    d = pd.read_parquet(path, filters=[("parameter", "in", names)])
    d = d[d["value"] != MISSING_2012]
    wide = d.pivot_table(
        index=["record_id", "minute"], columns="parameter", values="value", aggfunc="first"
    ).reset_index()
    values = pd.DataFrame(index=wide.index)
    for param, (field, *cuff) in P2012.items():
        v = wide[param] if param in wide else pd.Series(np.nan, index=wide.index)
        for c in cuff:
            if c in wide:
                v = v.combine_first(wide[c])
        values[field] = v
    return _frame(wide["record_id"], wide["minute"].astype("float64"), values)


def load(data_dir: Path) -> dict[str, pd.DataFrame]:
    """The data sets found under `data_dir`, by name: one row per reading (`stay`, `minute`
    since the stay's start, FIELDS; NaN not charted), in stay and time order."""
    yaib, p2012 = data_dir / "yaib_demo_sepsis", data_dir / "physionet2012"
    found = {
        "MIMIC-III demo": (yaib / "mimic_iii_demo" / "dyn.parquet", _yaib),
        "eICU demo": (yaib / "eicu_demo" / "dyn.parquet", _yaib),
        "PhysioNet 2019 set A": (data_dir / "physionet2019" / "setA.parquet", _set_a),
        "PhysioNet 2012 set A": (p2012 / "setA_observations.parquet", _set_2012),
        "PhysioNet 2012 set B": (p2012 / "setB_observations.parquet", _set_2012),
    }
    return {
        name: read(path.parent if read is _yaib else path)
        for name, (path, read) in found.items()
        if path.exists()
    }


def view(df: pd.DataFrame, name: str) -> pd.DataFrame:
    """The readings of `df` as view `name` (VIEWS): its fields, the readings carrying any of
    them (the `monitor` view: all of them)."""
    fields = list(VIEWS[name])
    carried = df[fields].notna()
    keep = carried.all(axis=1) if name == "monitor" else carried.any(axis=1)
    return df.loc[keep, ["stay", "minute", *fields]].reset_index(drop=True)


def repeats(df: pd.DataFrame, t: quality.Thresholds) -> np.ndarray[Any, Any]:
    """Per reading: whether it repeats the stay's reading before it, every parameter identical
    (the same carried, each the same value), with at least `t.frozen_min_varying` of
    quality.FROZEN_VARYING above 0 and below its ceiling (what makes the job's SQL hand a window
    on)."""
    fields = [c for c in df.columns if c in FIELDS]
    x = df[fields].to_numpy("float64")
    before = np.vstack([np.full((1, len(fields)), np.nan), x[:-1]])
    same_stay = (df["stay"] == df["stay"].shift()).to_numpy()
    carried = ~np.isnan(x)
    identical = ((carried == ~np.isnan(before)) & (~carried | (x == before))).all(axis=1)
    varying = np.zeros(len(df), dtype=int)
    for j, f in enumerate(fields):
        if f in quality.FROZEN_VARYING:
            ceiling = quality.FROZEN_VARYING[f]
            live = carried[:, j] & (np.nan_to_num(x[:, j]) > 0)  # not a probe off, no zero
            varying += live if ceiling is None else live & (x[:, j] < ceiling)
    out: np.ndarray[Any, Any] = same_stay & identical & (varying >= t.frozen_min_varying)
    return out


@dataclass(frozen=True)
class Runs:
    """Runs of identical consecutive readings (`repeats`) of one view of a data set."""

    pairs: int  # consecutive readings of a stay
    identical: int  # of them, the later one repeating the earlier
    by_readings: Mapping[int, int]  # runs by their readings
    longest_readings: int
    longest_min: float
    spanning: Mapping[float, int]  # runs by the minutes they span, at least each key


def runs(df: pd.DataFrame, t: quality.Thresholds, spans_min: tuple[float, ...]) -> Runs:
    rep = repeats(df, t)
    minute = df["minute"].to_numpy("float64")
    first = minute.copy()
    length = np.ones(len(df), dtype=int)
    for i in np.flatnonzero(rep):  # in order: a run's readings follow one another
        first[i], length[i] = first[i - 1], length[i - 1] + 1
    last = rep & ~np.append(rep[1:], False)
    span = (minute - first)[last]
    counts = np.unique(length[last], return_counts=True)
    return Runs(
        pairs=int((df["stay"] == df["stay"].shift()).sum()),
        identical=int(rep.sum()),
        by_readings={int(k): int(n) for k, n in zip(*counts, strict=True)},
        longest_readings=int(length.max(initial=1)),
        longest_min=float(span.max(initial=0.0)),
        spanning={s: int((span >= s).sum()) for s in spans_min},
    )


def stay_days(df: pd.DataFrame) -> float:
    m = df.groupby("stay")["minute"]
    return float((m.max() - m.min()).sum() / 1440)


def identical_share(df: pd.DataFrame) -> dict[str, float]:
    """Per field: the share of consecutive readings of a stay carrying it both times where its
    value repeats (a single parameter alone)."""
    same = (df["stay"] == df["stay"].shift()).to_numpy()
    out = {}
    for f in FIELDS:
        if f not in df:
            continue
        x = df[f].to_numpy("float64")
        both = same & ~np.isnan(x) & ~np.isnan(np.append(np.nan, x[:-1]))
        if both.any():
            out[f] = float((x[both] == np.append(np.nan, x[:-1])[both]).mean())
    return out


def monitor_events(df: pd.DataFrame, t: quality.Thresholds) -> list[dict[str, Any]]:
    """The `frozen_device` events the monitor raises on the readings, each stay a device
    charting vitals (its silence is the vitals topic's, quality.SILENCE_MIN): the job's SQL
    (its Python reference, quality.device_windows) then the state machine. A stay none of whose
    readings repeats the one before hands the monitor nothing, so only the others are run."""
    fields = [c for c in df.columns if c in FIELDS]
    stays = set(df.loc[repeats(df, t), "stay"])
    silence = quality.SILENCE_MIN[VITALS]
    out: list[dict[str, Any]] = []
    for stay, g in df[df["stay"].isin(stays)].groupby("stay", sort=True):
        readings = [
            (int(m * quality.MS_PER_MIN), f"{stay}:{m:g}", dict(zip(fields, v, strict=True)))
            for m, v in zip(g["minute"], g[fields].to_numpy("float64").tolist(), strict=True)
        ]
        feed = quality.FrozenFeed(VITALS, str(stay))
        for w in quality.device_windows(VITALS, str(stay), "evidence", "ICU", readings, t):
            out += feed.observe(w, t, silence)
    return out


def table(data: Mapping[str, pd.DataFrame], t: quality.Thresholds) -> str:
    """The evidence as a Markdown table (see the module doc)."""
    device = dataclasses.replace(t, frozen_min_readings=2)  # at 1 Hz the span decides
    lines = [
        "| data set | view | stays | stay-days | consecutive readings identical | longest run "
        "(readings, min) | runs spanning ≥ the span | events (K, T) | events per stay-day |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, df in data.items():
        for v in VIEWS:
            d = view(df, v)
            if d.empty:
                continue
            r = runs(d, t, (t.frozen_min_identical_min,))
            days = stay_days(d)
            ev = [e for e in monitor_events(d, t) if e["state"] == "open"]
            dev = [e for e in monitor_events(d, device) if e["state"] == "open"]
            lines.append(
                f"| {name} | {v} | {d['stay'].nunique():,} | {days:,.0f} | {r.identical:,} of "
                f"{r.pairs:,} ({r.identical / max(r.pairs, 1):.3%}) | {r.longest_readings}, "
                f"{r.longest_min:g} | {r.spanning[t.frozen_min_identical_min]:,} | "
                f"{len(ev)} (K = 2: {len(dev)}) | {len(ev) / days:.2e} (K = 2: "
                f"{len(dev) / days:.2e}) |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-dir", type=Path, default=None)
    a = ap.parse_args(argv)
    data_dir = a.data_dir or Settings.from_env().data_dir
    data = load(data_dir)
    if not data:
        raise SystemExit(f"no data set under {data_dir}")
    t = quality.Thresholds()
    print(table(data, t))
    print()
    for name, df in data.items():
        shares = identical_share(df)
        print(name, "single parameters identical:", {k: f"{v:.1%}" for k, v in shares.items()})


if __name__ == "__main__":
    main()
