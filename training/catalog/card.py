"""Model cards for the catalog's models (Mitchell et al. 2019, "Model Cards for Model
Reporting"), generated from a registry version's spec and validation report only: details,
intended use, data and its license, metrics with their 95 % intervals, subgroups, calibration,
the gate, limitations. The sepsis model's card (training/model_card.py) also re-scores its test
split; these models' reports already hold their external tests.

    python -m training.model_card --model icu-mortality      # dispatches here
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Final

from schemas.model_spec import ModelSpec
from schemas.settings import Settings
from udfs.registry import Version

INTENDED: Final = {
    "icu-mortality": (
        "Risk of in-hospital death of an adult ICU patient, scored at every new vitals or lab "
        "state of the stay and read at 24 h and 48 h: for the command centre's and the "
        "intensivist's prioritisation and for case-mix adjustment of unit outcomes.",
        "Not a decision to limit or withdraw treatment; not for children; not validated before "
        "24 h of the stay (trained on states at 24, 36 and 48 h).",
    ),
    "length-of-stay": (
        "Remaining days in hospital of an adult ICU patient at 24 h and 48 h of the ICU stay (a "
        "median-type prediction; PhysioNet 2012's length of stay runs from ICU admission to the "
        "end of the hospital stay): expected hospital discharges for bed planning and the "
        "facility's capacity forecast.",
        "Not a discharge decision for a patient; not the time left in the ICU (a unit's "
        "forecast does not use it); its error is days, not hours.",
    ),
    "readmission-30d": (
        "Risk of readmission within 30 days, scored when a diabetic inpatient's discharge "
        "arrives, to target discharge planning and follow-up (the top fifth flagged).",
        "Not for encounters ending in death or hospice (not scored); not validated outside "
        "diabetic inpatients; not a reason to delay or deny a discharge.",
    ),
}


def license_of(data_dir: Path, file_name: str) -> str:
    """The paragraph of the data set's README that states its license."""
    for readme in sorted(data_dir.glob("*/README.md")):
        text = readme.read_text()
        if file_name in text:
            for para in text.split("\n\n"):
                if "License" in para or "license" in para:
                    return " ".join(para.split())
    return f"the license of `{file_name}` is not on record here"


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list) and len(v) == 2 and all(isinstance(x, int | float) for x in v):
        return f"[{v[0]:.4g}, {v[1]:.4g}]"
    return str(v)


def table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return "(none)"
    cols = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def flat(d: dict[str, Any], prefix: str = "") -> list[dict[str, Any]]:
    """A nested metrics dict as rows (metric, value); `ci95` pairs beside their metric."""
    rows: list[dict[str, Any]] = []
    ci = d.get("ci95", {}) if isinstance(d.get("ci95"), dict) else {}
    for k, v in d.items():
        if k == "ci95":
            continue
        if isinstance(v, dict):
            rows += flat(v, f"{prefix}{k} ")
        else:
            rows.append({"metric": f"{prefix}{k}", "value": v, "95 % interval": ci.get(k, "")})
    return rows


def card(version: Version, settings: Settings, out_dir: Path) -> Path:
    spec = version.spec
    s = ModelSpec.parse(spec)
    use, not_for = INTENDED.get(version.model, (s.output.meaning, "see the report"))
    data = spec.get("training_data", {})
    gate = spec.get("gate", {})
    out_dir.mkdir(parents=True, exist_ok=True)
    if (version.path / "calibration.png").exists():
        shutil.copy(version.path / "calibration.png", out_dir / "calibration.png")
    calibration = {k: v for k, v in spec.get("metrics", {}).items() if k in ("brier", "ece")}
    sections = {
        "Model details": "\n".join(
            [
                f"- {s.task} model of a {s.entity}; output `{s.output.name}`: {s.output.meaning}"
                + (f" ({s.output.unit})" if s.output.unit else ""),
                f"- architecture: {spec.get('architecture', 'see the report')}; "
                f"framework: {spec.get('framework', '')}",
                f"- {len(s.features)} inputs (Feast feature service `{s.feature_service}`); "
                f"scored on trigger `{s.trigger.kind}`"
                + (
                    f" and at hours {', '.join(f'{h:g}' for h in s.stay_hours)} of the stay "
                    "(its data up to that hour)"
                    if s.stay_hours
                    else ""
                )
                + f"; threshold {s.threshold}",
                f"- registered {spec.get('registered_at', '')}, ONNX SHA-256 "
                f"`{str(spec.get('onnx_sha256', ''))[:16]}…`, ONNX parity with the trained model "
                f"{spec.get('onnx_parity_max_abs_diff')}",
            ]
        ),
        "Intended use": f"{use}\n\nOut of scope: {not_for}",
        "Data and license": (
            f"Trained on `{data.get('file')}` (SHA-256 `{str(data.get('sha256', ''))[:16]}…`; "
            + ", ".join(f"{k} {v}" for k, v in data.items() if k not in ("file", "sha256"))
            + f"). {license_of(settings.data_dir, str(data.get('file')))}"
        ),
        "Metrics (held-out data, 95 % bootstrap intervals)": (
            f"{spec.get('metrics', {}).get('set', '')}\n\n"
            + table(flat({k: v for k, v in spec.get("metrics", {}).items() if k != "set"}))
            + "\n\nBaselines: "
            + ", ".join(f"{k} {_fmt(v)}" for k, v in spec.get("baselines", {}).items())
        ),
        "Subgroups": table(spec.get("subgroups", [])),
        "Calibration": (
            ", ".join(f"{k} {_fmt(v)}" for k, v in calibration.items()) or "see the report"
        )
        + ("\n\n![calibration](calibration.png)" if (out_dir / "calibration.png").exists() else ""),
        "Gate": (
            "passed" if gate.get("passed") else "FAILED: " + "; ".join(gate.get("reasons", []))
        )
        + (f" (override: {gate['override']})" if gate.get("override") else ""),
        "Limitations": (
            "Validated on one hospital system's public data only; its charting habits, case mix "
            "and coding may differ from the hospital that runs it: validate locally before "
            "acting on scores, and watch the stream's drift monitors. The validation report "
            "(`report.md` of the version) lists what was tried and the targets not met."
        ),
    }
    text = f"# Model card: {version.model} v{version.version}\n\n"
    text += "".join(f"## {k}\n\n{v}\n\n" for k, v in sections.items())
    text += f"---\nGenerated by `python -m training.model_card --model {version.model} "
    text += f"--version {version.version}` from the version's spec.\n"
    (out_dir / "README.md").write_text(text)
    return out_dir / "README.md"
