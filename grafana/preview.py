"""PNG previews of the dashboards, from the same SQL Grafana runs, for people without a Grafana
at hand and for the README. Panels are laid out on Grafana's 24-column grid.

    python -m grafana.preview                # the warehouse in settings (CLICKHOUSE_URL, database)
    python -m grafana.preview --seed         # a freshly seeded 2-facility, 10-day warehouse
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd

from grafana import build, run, seed
from grafana.specs import DASHBOARDS, Dashboard
from schemas.settings import Settings
from sinks import clickhouse

OUT = Path(__file__).resolve().parent / "previews"
ROW_IN = 0.32  # figure inches per grid row
COL_IN = 0.75  # per grid column


def _frame(r: run.Result) -> pd.DataFrame:
    return pd.DataFrame(r.rows, columns=list(r.columns))


def _draw(ax: Any, r: run.Result) -> None:
    p, df = r.panel, _frame(r)
    ax.set_title(p.title, fontsize=9, loc="left")
    if df.empty:
        ax.text(0.5, 0.5, "No data", ha="center", va="center", color="grey")
        ax.axis("off")
        return
    if p.kind == "stat":
        ax.axis("off")
        cells = [f"{c.replace('_', ' ')}\n{df.iloc[0][c]}" for c in df.columns]
        for i, text in enumerate(cells):
            ax.text((i + 0.5) / len(cells), 0.45, text, ha="center", va="center", fontsize=10)
    elif p.kind == "table":
        ax.axis("off")
        shown = df.head(12).astype(str).map(lambda s: s[:19])
        t = ax.table(cellText=shown.values, colLabels=list(shown.columns), loc="upper left")
        t.auto_set_font_size(False)
        t.set_fontsize(6)
    elif p.kind == "timeseries":
        labels = [c for c in df.columns if c != "time" and df[c].dtype == object]
        values = [c for c in df.columns if c not in ("time", *labels)]
        if labels:  # long format: one series per label value, as Grafana's long-to-wide
            wide = df.pivot_table(index="time", columns=labels[0], values=values[0])
            wide.plot(ax=ax, linewidth=0.8, legend=True)
        else:
            df.set_index("time")[values].plot(ax=ax, linewidth=0.8)
        ax.legend(fontsize=6, loc="upper left")
        ax.tick_params(labelsize=6)
        ax.set_xlabel("")
    elif p.kind == "barchart":
        df.set_index(df.columns[0]).plot.bar(ax=ax, width=0.8)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    else:  # bargauge: one bar per row of the panel's first column
        label, value = p.columns[0], p.columns[1]
        ax.barh(df[label].astype(str), df[value], color="tab:green")
        ax.set_xlim(0, max(100.0, float(df[value].max()) * 1.05))
        ax.tick_params(labelsize=6)


def render(client: Any, d: Dashboard, db: str, out: Path) -> Path:
    now = run.latest_time(client, db)
    tr = run.default_range(d, now)
    variables = run.resolve_variables(client, d, db, tr)
    layout = build.dashboard(d)["panels"]
    rows = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in layout)
    fig = plt.figure(figsize=(24 * COL_IN, rows * ROW_IN / 0.95))
    fig.suptitle(
        f"{d.title} — {tr.start:%Y-%m-%d %H:%M} to {tr.end:%Y-%m-%d %H:%M} UTC",
        x=0.01,
        ha="left",
        fontsize=11,
    )
    for p, g in zip(d.panels, (lp["gridPos"] for lp in layout), strict=True):
        pad = 0.012
        top = 0.95  # room for the title
        rect = (
            g["x"] / 24 + pad,
            top * (1 - (g["y"] + g["h"]) / rows) + pad * 2,
            g["w"] / 24 - 2 * pad,
            top * g["h"] / rows - pad * 5,
        )
        _draw(fig.add_axes(rect), run.run_panel(client, p, tr, variables))
    path = out / f"{d.uid}.png"
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", action="store_true", help="seed a small warehouse and preview it")
    ap.add_argument("--out", type=Path, default=OUT)
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    a.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        if a.seed:
            db = "wardflow_preview"
            client = clickhouse.connect(f"chdb://{tmp}/ch")
            wh = seed.build(seed.SeedPlan(facilities=2, days=10), seed.physionet(settings))
            seed.load(client, db, wh)
        else:
            db = settings.clickhouse_database
            client = clickhouse.connect(settings.clickhouse_url)
        for d in DASHBOARDS:
            print(render(client, d, db, a.out))


if __name__ == "__main__":
    main()
