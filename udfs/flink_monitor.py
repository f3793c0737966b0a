"""PyFlink table functions of the model monitor (jobs/model_monitor.py): called once per window,
facility (and model version), never per record; the judgement is udfs/model_monitor.py.

Each yields rows of `MONITOR_RESULT` (the monitor event's fields that the window decides);
the job adds the event id, facility and window bounds in SQL."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pyflink.table import DataTypes, Row
from pyflink.table.udf import FunctionContext, TableFunction, UserDefinedTableFunctionWrapper, udtf

from udfs import model_monitor
from udfs.registry import Registry

RESULT_FIELDS = (
    ("model_name", DataTypes.STRING()),
    ("model_version", DataTypes.STRING()),
    ("role", DataTypes.STRING()),
    ("metric", DataTypes.STRING()),
    ("feature", DataTypes.STRING()),
    ("value", DataTypes.DOUBLE()),
    ("threshold", DataTypes.DOUBLE()),
    ("reference", DataTypes.DOUBLE()),
    ("n", DataTypes.BIGINT()),
    ("breach", DataTypes.BOOLEAN()),
    ("severity", DataTypes.STRING()),
    ("evidence_json", DataTypes.STRING()),
)
RESULT_COLUMNS = tuple(n for n, _ in RESULT_FIELDS)


def _rows(events: list[dict[str, Any]]) -> Iterator[Row]:
    for e in events:
        yield Row(*(e[c] for c in RESULT_COLUMNS))


class _Monitor(TableFunction):  # type: ignore[misc]
    def __init__(self, registry: Path, models: tuple[str, ...], check_s: float) -> None:
        self.args = (registry, models, check_s)
        self.versions: model_monitor.Versions | None = None

    def open(self, function_context: FunctionContext) -> None:
        registry, models, check_s = self.args
        self.versions = model_monitor.Versions(Registry(registry), models, check_s)


class InputDrift(_Monitor):
    def eval(self, model: str, cells: str) -> Iterator[Row]:
        assert self.versions is not None
        yield from _rows(model_monitor.input_drift(self.versions.serving(model), cells))


class ScoreDrift(_Monitor):
    def eval(self, model: str, version: str, role: str, cells: str) -> Iterator[Row]:
        assert self.versions is not None
        s = self.versions.version(model, version, role)
        if s is not None:
            yield from _rows(model_monitor.score_drift(s, cells))


class Performance(_Monitor):
    def eval(self, model: str, version: str, role: str, cells: str) -> Iterator[Row]:
        assert self.versions is not None
        s = self.versions.version(model, version, role)
        if s is not None:
            yield from _rows(model_monitor.performance(s, cells))


def monitor_udtf(
    kind: str, registry: Path, models: tuple[str, ...], check_s: float
) -> UserDefinedTableFunctionWrapper:
    """`kind`: input_drift (model, cells), score_drift or performance (model, version, role,
    cells)."""
    cls = {"input_drift": InputDrift, "score_drift": ScoreDrift, "performance": Performance}[kind]
    n_in = 2 if kind == "input_drift" else 4
    return udtf(
        cls(registry, models, check_s),
        input_types=[DataTypes.STRING()] * n_in,
        result_types=[t for _, t in RESULT_FIELDS],
    )
