"""Configured bed capacity per facility and unit, and the occupancy thresholds of surge levels.

A JSON file (settings.capacity_file):

    {"surge_thresholds_pct": [85, 92, 100],
     "forecast_surge_level": 2,
     "facilities": {"north": {"ICU": 20, "Ward 4B": 32}, ...},
     "time_zones": {"north": "America/New_York"}}

Default thresholds: 85 % is the occupancy above which the risk of bed shortages and of
refused emergency admissions rises steeply (Bagust, Place & Posnett, BMJ 1999;319:155-8); 92 %
is NHS England's general and acute bed occupancy planning ceiling (2024/25 priorities and
operational planning guidance); 100 % is a full unit. Levels 1-3 are reached at each threshold.
Units outside the file are unknown: their events are dead-lettered, never counted.

`forecast_surge_level` (1-3, default 2: the 92 % ceiling) is the level whose threshold the
capacity forecast (udfs/capacity_forecast.py) warns about: a unit's surge threshold in beds is
`surge_beds(facility, unit)` = that percentage of its staffed beds. Files without it get 2.

`time_zones` (optional): each facility's IANA time zone, the clock its days run by: the
capacity forecast's arrivals by hour of week are counted on it (an elective admission at 08:00
is at 08:00 after the clocks change). A facility without one runs on UTC.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import available_timezones

DEFAULT_THRESHOLDS_PCT = (85.0, 92.0, 100.0)
DEFAULT_FORECAST_SURGE_LEVEL = 2
ALL_UNITS = "ALL"


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for key, value in pairs:
        if key in seen:
            raise ValueError(f"{key!r} is named twice in one object of the capacity file")
        seen[key] = value
    return seen


@dataclass(frozen=True)
class Capacity:
    units: dict[tuple[str, str], int]  # (facility, unit) -> staffed beds
    thresholds_pct: tuple[float, ...] = DEFAULT_THRESHOLDS_PCT
    forecast_surge_level: int = DEFAULT_FORECAST_SURGE_LEVEL
    time_zones: dict[str, str] = field(default_factory=dict)  # facility -> IANA time zone

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Capacity:
        units = {
            (fac, unit): int(beds)
            for fac, fac_units in d["facilities"].items()
            for unit, beds in fac_units.items()
        }
        if any(b <= 0 for b in units.values()):
            raise ValueError("every unit needs a positive bed count")
        if any(u == ALL_UNITS for _, u in units):
            raise ValueError(f"{ALL_UNITS!r} is reserved for facility totals")
        th = tuple(float(t) for t in d.get("surge_thresholds_pct", DEFAULT_THRESHOLDS_PCT))
        if list(th) != sorted(th) or len(th) != 3:
            raise ValueError("surge_thresholds_pct must be three ascending percentages")
        level = int(d.get("forecast_surge_level", DEFAULT_FORECAST_SURGE_LEVEL))
        if not 1 <= level <= len(th):
            raise ValueError("forecast_surge_level must be 1, 2 or 3")
        given = d.get("time_zones", {})
        if not isinstance(given, dict):
            raise ValueError("time_zones must map facilities to IANA time zone names")
        zones = {str(fac): str(zone) for fac, zone in given.items()}
        known = available_timezones() if zones else set()
        for fac, zone in zones.items():
            if fac not in d["facilities"]:
                raise ValueError(f"time_zones names {fac!r}, which has no units")
            if zone not in known or zone == "localtime":  # the machine's, not the facility's
                raise ValueError(f"{fac!r}: {zone!r} is no IANA time zone")
        return cls(units, th, level, zones)

    @classmethod
    def load(cls, path: Path) -> Capacity:
        """The file's capacity; a facility, unit or key named twice in one object is refused
        (JSON keeps the last: a facility listed twice lost the first listing's units, whose
        every admission was then refused as an unknown unit)."""
        return cls.from_dict(json.loads(path.read_text(), object_pairs_hook=_unique_keys))

    def to_dict(self) -> dict[str, Any]:
        facilities: dict[str, dict[str, int]] = {}
        for (fac, unit), beds in sorted(self.units.items()):
            facilities.setdefault(fac, {})[unit] = beds
        out: dict[str, Any] = {
            "surge_thresholds_pct": list(self.thresholds_pct),
            "forecast_surge_level": self.forecast_surge_level,
            "facilities": facilities,
        }
        if self.time_zones:
            out["time_zones"] = dict(sorted(self.time_zones.items()))
        return out

    def time_zone(self, facility: str) -> str:
        """The facility's IANA time zone (UTC where the file names none)."""
        return self.time_zones.get(facility, "UTC")

    def facility_beds(self, facility: str) -> int:
        return sum(b for (f, _), b in self.units.items() if f == facility)

    @property
    def forecast_surge_pct(self) -> float:
        return self.thresholds_pct[self.forecast_surge_level - 1]

    def surge_beds(self, facility: str, unit: str) -> float:
        """The occupied beds at which the forecast warns of a surge (`unit` ALL: the facility)."""
        beds = self.facility_beds(facility) if unit == ALL_UNITS else self.units[(facility, unit)]
        return beds * self.forecast_surge_pct / 100.0
