"""What Grafana sends to ClickHouse for a panel: template variables interpolated by Grafana, then
the ClickHouse datasource plugin's macros expanded by the plugin's backend (the forms of
grafana/clickhouse-datasource pkg/macros, v4), for a given time range and interval. The tests,
the benchmark and the previews run panel SQL through this, so they run what Grafana would."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

VarValue = str | Sequence[str]


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime

    @property
    def seconds(self) -> float:
        return (self.end - self.start).total_seconds()


NICE_INTERVALS_S = (
    1,
    5,
    10,
    15,
    30,
    60,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    86400,
)


def auto_interval_s(tr: TimeRange, max_points: int = 600) -> int:
    """Grafana's $__interval: the time range over the panel's width in points, rounded to a
    nice step (here the smallest nice step giving at most `max_points` points)."""
    raw = tr.seconds / max_points
    return next((s for s in NICE_INTERVALS_S if s >= raw), NICE_INTERVALS_S[-1])


def _quote(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _format(value: VarValue, fmt: str | None) -> str:
    values = [value] if isinstance(value, str) else list(value)
    if fmt == "singlequote":
        return ",".join(_quote(v) for v in values)
    if fmt in (None, "csv", "raw"):
        return ",".join(values)
    raise ValueError(f"unsupported variable format {fmt!r}")


_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\$(\w+)")


def interpolate(sql: str, variables: Mapping[str, VarValue]) -> str:
    """Grafana's template variables: $name, ${name} and ${name:format}. Names starting with
    `__` are left for the datasource (its macros)."""

    def sub(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3)
        if name.startswith("__"):
            return m.group(0)
        if name not in variables:
            raise KeyError(f"template variable ${name} has no value")
        return _format(variables[name], m.group(2))

    return _VAR.sub(sub, sql)


def _dt(t: datetime) -> str:
    return f"toDateTime({int(t.timestamp())})"


def _dt64(t: datetime) -> str:
    return f"fromUnixTimestamp64Milli({int(t.timestamp() * 1000)})"


_MACRO = re.compile(r"\$__(\w+)(?:\(([^()]*)\))?")


def expand_macros(sql: str, tr: TimeRange, interval_s: int) -> str:
    """The ClickHouse plugin's macros."""

    def sub(m: re.Match[str]) -> str:
        name, arg = m.group(1), (m.group(2) or "").strip()
        if name == "timeFilter":
            return f"{arg} >= {_dt(tr.start)} AND {arg} <= {_dt(tr.end)}"
        if name == "timeFilter_ms":
            return f"{arg} >= {_dt64(tr.start)} AND {arg} <= {_dt64(tr.end)}"
        if name == "fromTime":
            return _dt(tr.start)
        if name == "toTime":
            return _dt(tr.end)
        if name == "fromTime_ms":
            return _dt64(tr.start)
        if name == "toTime_ms":
            return _dt64(tr.end)
        if name == "timeInterval":
            return f"toStartOfInterval(toDateTime({arg}), INTERVAL {max(interval_s, 1)} second)"
        if name == "interval_s":
            return str(max(interval_s, 1))
        raise ValueError(f"unknown macro $__{name}")

    return _MACRO.sub(sub, sql)


def render(
    sql: str, tr: TimeRange, variables: Mapping[str, VarValue], interval_s: int | None = None
) -> str:
    return expand_macros(interpolate(sql, variables), tr, interval_s or auto_interval_s(tr))
