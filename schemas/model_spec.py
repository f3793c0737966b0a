"""The contract every model in the catalog meets: its spec, typed and checked when it is loaded.

A registry version is `model.onnx` + `spec.json`. The spec says what the generic scoring path
needs to serve the model without code of its own:

- `name`, `task` (`binary`: a probability and a threshold; `regression`: a value in `output.unit`);
- `entity`: what a score is about (`patient`, `stay`, `encounter`, `unit`) and `entity_key`, the
  input column that identifies it;
- `features`: the ONNX input's columns in order (name and unit), NaN for unknown;
  `feature_service`: the Feast feature service that serves them online (None: the stream
  computes them all);
- `trigger`: when a score is due: `every_state` (each new state of the entity), `stay_hours`
  (at the listed hours since admission, e.g. 24 and 48), `discharge` (when the discharge
  arrives), `hourly` (on the hour, for forecasts);
- `report_at_hours` (optional, stay models scored at every state): hours of the stay at which
  the model is also reported. At such an hour, as at a `stay_hours` trigger's, the score is of
  the stay's data up to exactly that hour (the cut-off its validation reports at), due when the
  stream has passed it (`ModelSpec.stay_hours`; jobs/model_scoring.py);
- `output`: the output column's name and meaning (and unit for regression);
- `threshold`: where a binary score becomes an alert (None for regression);
- `monitor` (optional): the model monitor's thresholds (`Monitor`, defaults and their sources
  there) and how an outcome labels a score (`label`); the training reference it compares
  with is `reference.json` next to the spec (udfs/monitor.py, training/reference.py).

`ModelSpec.parse(d)` raises `SpecError` naming every problem, so a malformed version is refused
at registration and at load, never half-served.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Final, Literal, cast

TASKS: Final = ("binary", "regression")
ENTITIES: Final = ("patient", "stay", "encounter", "unit")
TRIGGERS: Final = ("every_state", "stay_hours", "discharge", "hourly")

Task = Literal["binary", "regression"]
Entity = Literal["patient", "stay", "encounter", "unit"]
TriggerKind = Literal["every_state", "stay_hours", "discharge", "hourly"]


class SpecError(ValueError):
    """A spec that the scoring path cannot serve; the message lists every problem."""


@dataclass(frozen=True)
class Feature:
    name: str
    unit: str


@dataclass(frozen=True)
class Trigger:
    kind: TriggerKind
    hours: tuple[float, ...] = ()


@dataclass(frozen=True)
class Output:
    name: str
    meaning: str
    unit: str | None = None


@dataclass(frozen=True)
class Label:
    """How an outcome (label.outcome.v1) labels this model's scores: a score is positive when
    the entity's `outcome` happened and, with `horizon_h`, the score is at most that long
    before the outcome or after it (the sepsis model predicts SepsisLabel: onset within 6 h);
    without it, every score of an entity with the outcome is positive."""

    outcome: str
    horizon_h: float | None = None


@dataclass(frozen=True)
class Monitor:
    """The model monitor's thresholds for this model (jobs/model_monitor.py, udfs/monitor.py).

    - `psi_warning` 0.1 / `psi_critical` 0.25: the PSI convention (Siddiqi, *Credit Risk
      Scorecards*, 2006; Yurdakul 2018), for each input feature and the score;
    - `alpha` 0.01: a window breaches only where chance alone would exceed its value with
      probability below `alpha`: the KS critical value (Bonferroni over the version's features)
      and the PSI's χ² bound (Yurdakul 2018);
    - `min_patients` 10: a window's KS and alert rate are judged only with this many patients
      (with a measured value); `min_patients_psi` 100: its PSI only with this many (below, a
      lab's PSI is large by chance: carried-forward values make a patient one observation);
      measured always, breached never, below them;
    - `alert_rate_ratio` 2.0: the window's alert rate above (or below 1/ratio of) the
      validation alert rate (a protocol change that doubles alerts, issue 19);
    - `auroc_drop` 0.05: delayed AUROC this far below the validation AUROC (a fifth of the
      model's utility is lost by then on an external hospital, training/external.py), and
      significantly so: its upper 1 − `alpha` bound (Hanley & McNeil 1982, over patients) below;
    - `calibration_ratio` 1.5: observed/expected events outside [1/ratio, ratio]
      (calibration-in-the-large, Van Calster et al. 2016), and `ece_max` 0.05;
    - `min_positives` 10: fewer positive (or negative) labelled scores and performance is not
      judged; calibration also needs that many positive patients;
    - `label`: how outcomes label scores (None: no delayed performance).
    """

    psi_warning: float = 0.1
    psi_critical: float = 0.25
    alpha: float = 0.01
    min_patients: int = 10
    min_patients_psi: int = 100
    alert_rate_ratio: float = 2.0
    auroc_drop: float = 0.05
    calibration_ratio: float = 1.5
    ece_max: float = 0.05
    min_positives: int = 10
    label: Label | None = None

    @classmethod
    def parse(cls, d: Any, problems: list[str]) -> Monitor:
        """The spec's `monitor` section (absent: the defaults); problems appended."""
        if d is None:
            return cls()
        if not isinstance(d, dict):
            problems.append("`monitor` must be an object")
            return cls()
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "label" or f.name not in d:
                continue
            v = d[f.name]
            if not isinstance(v, int | float) or isinstance(v, bool) or v < 0:
                problems.append(f"`monitor.{f.name}` must be a non-negative number")
                continue
            values[f.name] = int(v) if f.type == "int" else float(v)
        label = d.get("label")
        if label is not None:
            outcome, horizon = (
                (label.get("outcome"), label.get("horizon_h"))
                if isinstance(label, dict)
                else (None, None)
            )
            if not isinstance(outcome, str):
                problems.append("`monitor.label.outcome` is missing")
            elif horizon is not None and not isinstance(horizon, int | float):
                problems.append("`monitor.label.horizon_h` must be a number or null")
            else:
                values["label"] = Label(outcome, None if horizon is None else float(horizon))
        return cls(**values)


@dataclass(frozen=True)
class ModelSpec:
    name: str
    task: Task
    entity: Entity
    entity_key: str
    features: tuple[Feature, ...]
    feature_service: str | None
    trigger: Trigger
    output: Output
    threshold: float | None
    input_name: str = "features"
    monitor: Monitor = Monitor()
    report_hours: tuple[float, ...] = ()

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def stay_hours(self) -> tuple[float, ...]:
        """The hours of a stay at which it is scored on its data up to exactly that hour: a
        `stay_hours` trigger's, else the reported hours of a model scored at every state."""
        return self.trigger.hours if self.trigger.kind == "stay_hours" else self.report_hours

    @classmethod
    def parse(cls, d: dict[str, Any]) -> ModelSpec:
        problems: list[str] = []

        def need(key: str, kind: type | tuple[type, ...]) -> Any:
            if key not in d:
                problems.append(f"`{key}` is missing")
                return None
            if not isinstance(d[key], kind):
                problems.append(f"`{key}` is {type(d[key]).__name__}, not {kind}")
                return None
            return d[key]

        name = need("name", str)
        task = d.get("task", "binary")
        if task not in TASKS:
            problems.append(f"`task` {task!r} is not one of {TASKS}")
        entity = d.get("entity", "patient")
        if entity not in ENTITIES:
            problems.append(f"`entity` {entity!r} is not one of {ENTITIES}")
        entity_key = d.get("entity_key", "patient_token")
        raw_features = need("features", list) or []
        features = []
        for i, f in enumerate(raw_features):
            if not isinstance(f, dict) or not isinstance(f.get("name"), str):
                problems.append(f"feature {i} has no name")
                continue
            features.append(Feature(f["name"], str(f.get("unit", ""))))
        names = [f.name for f in features]
        if len(set(names)) != len(names):
            problems.append("feature names repeat")
        if not features:
            problems.append("no features")
        raw_trigger = d.get("trigger", {"kind": "every_state"})
        kind = raw_trigger.get("kind") if isinstance(raw_trigger, dict) else None
        hours: tuple[float, ...] = ()
        if kind not in TRIGGERS:
            problems.append(f"`trigger.kind` {kind!r} is not one of {TRIGGERS}")
        elif kind == "stay_hours":
            raw_hours = raw_trigger.get("hours") or []
            if not isinstance(raw_hours, list) or not raw_hours:
                raw_hours = [0]
            if not all(_positive(h) for h in raw_hours):
                problems.append(
                    f"a `stay_hours` trigger needs positive `hours` up to {MAX_STAY_HOURS}"
                )
            elif entity != "stay":
                problems.append("a `stay_hours` trigger is for stay models")
            else:
                hours = tuple(sorted({float(h) for h in raw_hours}))
        report = d.get("report_at_hours") or []
        if not isinstance(report, list) or not all(_positive(h) for h in report):
            problems.append(
                f"`report_at_hours` must be a list of positive hours up to {MAX_STAY_HOURS}"
            )
            report = []
        elif report and (entity != "stay" or kind != "every_state"):
            problems.append("`report_at_hours` is for stay models scored at every state")
        raw_output = d.get("output", {})
        if not isinstance(raw_output, dict) or not isinstance(raw_output.get("name"), str):
            problems.append("`output.name` is missing")
            raw_output = {"name": "", "meaning": ""}
        meaning = str(raw_output.get("meaning", ""))
        output = Output(raw_output["name"], meaning, raw_output.get("unit"))
        threshold = d.get("threshold")
        if task == "binary" and not isinstance(threshold, int | float):
            problems.append("a binary model needs a numeric `threshold`")
        if task == "regression":
            threshold = None if threshold is None else float(threshold)
            if not output.unit:
                problems.append("a regression model's `output.unit` is missing")
        service = d.get("feature_service")
        if service is not None and not isinstance(service, str):
            problems.append("`feature_service` must be a name or null")
        input_name = (d.get("input") or {}).get("name", "features")
        monitor = Monitor.parse(d.get("monitor"), problems)
        if problems:
            raise SpecError(f"spec of {name or '?'}: " + "; ".join(problems))
        return cls(
            name=cast(str, name),
            task=cast(Task, task),
            entity=cast(Entity, entity),
            entity_key=str(entity_key),
            features=tuple(features),
            feature_service=service,
            trigger=Trigger(cast(TriggerKind, kind), hours),
            output=output,
            threshold=None if threshold is None else float(threshold),
            input_name=str(input_name),
            monitor=monitor,
            report_hours=tuple(sorted({float(h) for h in report})),
        )


MAX_STAY_HOURS: Final = 99 * 24  # Flink's DAY TO SECOND literal holds up to 99 days


def _positive(h: Any) -> bool:
    """An hour of a stay that the scoring job can wait for."""
    return isinstance(h, int | float) and not isinstance(h, bool) and 0 < h <= MAX_STAY_HOURS
