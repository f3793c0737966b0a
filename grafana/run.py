"""Run dashboards' SQL against ClickHouse as Grafana would: variables resolved by their own
queries (first value, or all values for multi-value ones), the dashboard's default relative
range anchored at `now`, macros expanded (grafana/macros.py)."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from grafana.macros import TimeRange, VarValue, render
from grafana.specs import Dashboard, Panel

_RELATIVE = re.compile(r"^now-(\d+)([mhd])$")
_PANEL_RELATIVE = re.compile(r"^(\+?)(\d+)([mhd])$")
_UNITS = {"m": "minutes", "h": "hours", "d": "days"}


def default_range(d: Dashboard, now: datetime) -> TimeRange:
    m = _RELATIVE.match(d.time_from)
    if not m:
        raise ValueError(f"{d.uid}: unsupported time_from {d.time_from!r}")
    return TimeRange(now - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))}), now)


def panel_range(p: Panel, tr: TimeRange) -> TimeRange:
    """The range a panel queries: the dashboard's, or its time override as Grafana applies it
    (rangeutil.describeTextRange: "24h" is now-24h..now, "+24h" is now..now+24h)."""
    if not p.time_from:
        return tr
    m = _PANEL_RELATIVE.match(p.time_from)
    if not m:
        raise ValueError(f"{p.key}: unsupported time_from {p.time_from!r}")
    span = timedelta(**{_UNITS[m.group(3)]: int(m.group(2))})
    return TimeRange(tr.end, tr.end + span) if m.group(1) else TimeRange(tr.end - span, tr.end)


def resolve_variables(
    client: Any, d: Dashboard, db: str, tr: TimeRange, prefer: dict[str, str] | None = None
) -> dict[str, VarValue]:
    """Each variable's options from its query; the `prefer`red one, else its default where that
    is an option (as Grafana opens the board), else the first; for a multi-value variable, all
    of them, or the `prefer`red one alone."""
    values: dict[str, VarValue] = {"db": db}
    for v in d.variables:
        options = [str(r[0]) for r in client.query(render(v.sql, tr, values)).result_rows]
        if not options:
            raise LookupError(f"{d.uid}: variable {v.name} has no options")
        first = v.default if v.default in options else options[0]
        chosen = (prefer or {}).get(v.name, first)
        if chosen not in options:
            raise LookupError(f"{d.uid}: {chosen!r} is not an option of {v.name}")
        if v.multi:
            values[v.name] = [chosen] if v.name in (prefer or {}) else options
        else:
            values[v.name] = chosen
    return values


@dataclass(frozen=True)
class Result:
    panel: Panel
    sql: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    seconds: float


def run_panel(client: Any, p: Panel, tr: TimeRange, variables: dict[str, VarValue]) -> Result:
    sql = render(p.sql, panel_range(p, tr), variables)
    t0 = time.perf_counter()
    r = client.query(sql)
    seconds = time.perf_counter() - t0
    columns = tuple(r.column_names)
    if not r.result_rows:  # an empty result may come without its header: ask for it
        columns = tuple(row[0] for row in client.query(f"DESCRIBE TABLE ({sql})").result_rows)
    return Result(p, sql, columns, r.result_rows, seconds)


def latest_time(client: Any, db: str) -> datetime:
    """The newest event in the warehouse: `now` for data that is not live."""
    (t,) = client.query(f"SELECT max(event_time) FROM {db}.sepsis_screen").result_rows[0]
    census = client.query(f"SELECT max(window_end) FROM {db}.census_unit").result_rows[0][0]
    latest: datetime = max(t, census)
    return latest if latest.tzinfo else latest.replace(tzinfo=UTC)
