"""Dimension rows: facilities and units from the capacity file, model versions from the registry.
Beds and patients are kept by materialized views over `adt_events` (migration 0005)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from schemas.capacity import Capacity

UNIT_TYPES = {"ED": "ed", "ICU": "icu", "HDU": "step_down", "PAED": "paediatric"}
REGIONS = ("north", "south", "east", "west")


def unit_type(unit_id: str) -> str:
    return UNIT_TYPES.get(unit_id.upper(), "ward")


def load_capacity(client: Any, db: str, capacity: Capacity) -> None:
    """Upsert dim_facility and dim_unit from the capacity configuration (re-running is safe)."""
    facilities = sorted({f for f, _ in capacity.units})
    client.insert(
        f"{db}.dim_facility",
        [
            [
                f,
                f"Facility {f}",
                REGIONS[i % len(REGIONS)],
                capacity.time_zone(f),
                capacity.facility_beds(f),
            ]
            for i, f in enumerate(facilities)
        ],
        column_names=["facility_id", "facility_name", "region", "timezone", "capacity_beds"],
    )
    client.insert(
        f"{db}.dim_unit",
        [[f, u, u, unit_type(u), beds] for (f, u), beds in sorted(capacity.units.items())],
        column_names=["facility_id", "unit_id", "unit_name", "unit_type", "capacity_beds"],
    )


@dataclass(frozen=True)
class ModelVersionRow:
    model_name: str
    model_version: str
    role: str  # champion | challenger | retired
    registered_at: datetime
    role_since: datetime
    threshold: float
    auroc: float
    auprc: float
    normalised_utility: float
    training_data_sha256: str
    onnx_sha256: str


def upsert_model_versions(client: Any, db: str, rows: Iterable[ModelVersionRow]) -> None:
    dicts = [asdict(r) for r in rows]
    if not dicts:
        return
    cols = list(dicts[0])
    client.insert(f"{db}.dim_model_version", [list(d.values()) for d in dicts], column_names=cols)


def _number(value: Any) -> float:
    """A spec's number, NaN where the model has none (a regression model: no AUROC, no
    threshold)."""
    return float("nan") if value is None else float(value)


def model_versions(registry: Any, model: str) -> list[ModelVersionRow]:
    """dim_model_version rows for every version in a training.registry.Registry, with the role
    each holds now (retired: none); a metric the model does not report is NaN."""
    roles = {v: r for r, v in registry.roles(model).items()}
    since: dict[tuple[str, str], str] = {}
    for entry in registry.history(model):
        for role, version in entry["roles"].items():
            since.setdefault((role, version), entry["at"])
    rows = []
    for version in registry.versions(model):
        spec = registry.get(model, version).spec
        role = roles.get(version, "retired")
        registered = datetime.fromisoformat(spec["registered_at"])
        m = spec.get("metrics") or {}
        rows.append(
            ModelVersionRow(
                model_name=model,
                model_version=version,
                role=role,
                registered_at=registered,
                role_since=datetime.fromisoformat(
                    since.get((role, version), spec["registered_at"])
                ),
                threshold=_number(spec.get("threshold")),
                auroc=_number(m.get("auroc")),
                auprc=_number(m.get("auprc")),
                normalised_utility=_number(m.get("normalised_utility")),
                training_data_sha256=(spec.get("training_data") or {}).get("sha256", ""),
                onnx_sha256=spec["onnx_sha256"],
            )
        )
    return rows
