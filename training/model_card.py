"""A model card (Mitchell et al., FAT* 2019, "Model Cards for Model Reporting") for one version of
a registry model, written as `README.md` (+ `calibration.png`) to a folder:

    python -m training.model_card                              # the champion of sepsis-risk
    python -m training.model_card --version 2 --out build/model_cards/sepsis-risk-v2

The card's contract: these sections (`SECTIONS`), in this order, then the generating command.

- **Model details**: name, version, created, registered, framework, architecture, opset, ONNX hash.
- **Intended use** and **Out-of-scope uses**: a screening aid for adult ICU patients.
- **Training data**: file, SHA-256, patients, split (percentages, key), and the data set's
  license and citation, copied from the README of the data folder that names the file.
- **Features**: name and unit of every model input, in input order.
- **Threshold**: its value and how it was chosen (from the version's report.md).
- **Metrics on the held-out test split**: AUROC, AUPRC, normalised utility and alert episodes
  per patient-day on set A's test split (`split_of(pid) == "test"`), scored with the version's
  ONNX, each with a patient-level bootstrap 95 % interval. Without set A: the spec's test
  metrics, without intervals, and the card says so.
- **Subgroups**: patients, septic patients and AUROC by age band, sex and ICU unit (fresh on the
  test split, or the spec's); groups under the gate's minimum septic count are flagged.
- **Calibration**: ECE, the reliability table by risk decile and `calibration.png` (without set
  A: the spec's ECE and the version's own training-time plot).
- **Gate decision**: the spec's gate result (and override, if any).
- **Proxy external validation**: rows of `reports/external_validation/results.json` whose model
  is `champion <name> v<version>` at this version's threshold, or a line saying none are recorded.
- **Limitations**: derived from the numbers above (external AUROC drop, small subgroups, label
  definition, missing charting, age range, alert burden).

Nothing is invented: what the data or the spec does not hold is written as "not recorded".
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score

from schemas.settings import Settings
from training import catalog, validation
from training.catalog import card as catalog_card
from training.cohorts import SPARSE_CHARTING
from training.evaluate import chosen_version, score
from training.features import hourly_features
from training.splits import split_of
from udfs.registry import Version, sha256

SECTIONS = (
    "Model details",
    "Intended use",
    "Out-of-scope uses",
    "Training data",
    "Features",
    "Threshold",
    "Metrics on the held-out test split",
    "Subgroups",
    "Calibration",
    "Gate decision",
    "Proxy external validation",
    "Limitations",
)
REPO = Path(__file__).resolve().parents[1]
EXTERNAL_RESULTS = REPO / "reports" / "external_validation" / "results.json"
SHARED_DATA = REPO.parent / "shared" / "data"  # where the data READMEs live by default
CHARTING = {"HR": "heart rate", "Temp": "temperature", "Lactate": "lactate", "WBC": "WBC"}
SMALL = validation.MIN_SEPTIC_PATIENTS
DETAILS = [  # (row, spec key) of "Model details"
    ("created", "created_at"),
    ("registered", "registered_at"),
    ("framework", "framework"),
    ("architecture", "architecture"),
    ("ONNX opset", "opset"),
    ("ONNX SHA-256", "onnx_sha256"),
]

INTENDED_USE = """\
A screening aid for adult (18 years and older) ICU patients whose vital signs are charted at
least hourly. Each patient-hour gets a risk; at or above the threshold the patient is flagged so
that a clinician reviews them for sepsis. The clinician decides; the score neither diagnoses nor
treats."""

OUT_OF_SCOPE = """\
- Diagnosing sepsis or ruling it out; starting or withholding treatment on the score alone.
- Children: the training data holds adults only.
- Wards, emergency departments and other settings without hourly vital signs: the features
  assume ICU charting.
- A hospital other than the training one, without a local validation first (see the proxy
  external validation)."""


@dataclass
class Evidence:
    """Performance as the card reports it: scored now on set A's test split, or the spec's."""

    scored: bool
    metrics: dict[str, Any]
    subgroups: list[dict[str, Any]]
    ci: dict[str, list[float]] = field(default_factory=dict)
    reliability: pd.DataFrame | None = None
    data_sha256: str = ""
    missing_pct: dict[str, float] = field(default_factory=dict)
    youngest: float | None = None


def evidence(version: Version, settings: Settings, samples: int) -> Evidence:
    file = settings.physionet_setA
    if not file.exists():
        return Evidence(False, version.spec["metrics"], version.spec.get("subgroups", []))
    raw = pd.read_parquet(file)
    raw = raw[raw["patient_id"].astype(str).map(split_of) == "test"]
    frame = hourly_features(raw)
    frame["risk"] = score(version, frame)
    ci = validation.bootstrap_ci(frame, version.threshold, samples) | auprc_ci(frame, samples)
    return Evidence(
        scored=True,
        metrics=validation.metrics(frame, version.threshold),
        subgroups=[
            {str(k): v for k, v in g.items()}
            for g in validation.subgroups(frame).to_dict(orient="records")
        ],
        ci=ci,
        reliability=validation.calibration(frame)[0],
        data_sha256=sha256(file),
        missing_pct={n: round(100 * float(raw[c].isna().mean()), 1) for c, n in CHARTING.items()},
        youngest=float(raw["Age"].min()),
    )


def auprc_ci(frame: pd.DataFrame, samples: int, seed: int = 2019) -> dict[str, list[float]]:
    """AUPRC's patient-bootstrap 95 % interval, with the same patient draws as bootstrap_ci."""
    codes = pd.factorize(frame["patient_id"])[0]
    n = int(codes.max()) + 1
    y, p = frame["label"].to_numpy(), frame["risk"].to_numpy()
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(samples):
        w = np.bincount(rng.integers(0, n, n), minlength=n).astype(float)[codes]
        if len(np.unique(y[w > 0])) == 2:
            draws.append(float(average_precision_score(y, p, sample_weight=w)))
    return {"auprc": [round(float(np.percentile(draws, q)), 4) for q in (2.5, 97.5)]}


def shown(path: Path) -> str:
    """A data path as the card shows it: from the data folder's set down (no machine's path)."""
    parts = path.parts
    return "/".join(parts[-2:]) if len(parts) >= 2 else str(path)


def data_license(data_dirs: list[Path], file_name: str) -> tuple[Path, str] | None:
    """The "License and citation" section of the first data README that names `file_name`."""
    for readme in (r for d in data_dirs for r in sorted(d.glob("*/README.md"))):
        text = readme.read_text()
        found = re.search(r"^## License and citation\n(.*?)(?=^## |\Z)", text, re.M | re.S)
        if f"`{file_name}`" in text and found:
            return readme, found.group(1).strip()
    return None


def external_rows(version: Version, results: Path) -> tuple[list[dict[str, Any]], list[Any]]:
    """This version's champion rows (at its threshold), and all rows."""
    rows = json.loads(results.read_text())["rows"] if results.exists() else []
    prefix = re.escape(f"champion {version.model} v{version.version}") + r"(\D|$)"
    mine = [
        r
        for r in rows
        if re.match(prefix, r["model"]) and round(r["threshold"], 5) == round(version.threshold, 5)
    ]
    return mine, rows


def interval(pair: list[float] | None, digits: int = 3) -> str:
    return f"[{pair[0]:.{digits}f}, {pair[1]:.{digits}f}]" if pair else "(no interval)"


def table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in r) + " |" for r in rows])


def limitations(version: Version, ev: Evidence, mine: list[Any], rows: list[Any]) -> list[str]:
    m = ev.metrics
    out = [
        "The label is PhysioNet 2019's SepsisLabel: positive from 6 h before the clinical "
        "Sepsis-3 onset (t_sepsis − 6 h) on, a retrospective definition; a hospital's own sepsis "
        "criteria, coding or onset times may differ.",
        f"Trained and tested on one hospital system (`{version.spec['training_data']['file']}`): "
        "the test split shares its hospital and charting practice with training.",
    ]
    for r in (r for r in mine if r["seen_in_training"] == "unseen"):
        if r["septic_patients"] < SMALL:
            out.append(
                f"The {r['cohort']} cohort has {r['septic_patients']} septic patient(s): its AUROC "
                f"and utility mean nothing; only its alert burden "
                f"({r['alert_episodes_per_patient_day']} episodes per patient-day) informs."
            )
            continue
        out.append(
            f"On an unseen hospital cohort ({r['cohort']}, {r['patients']} patients, "
            f"{r['septic_patients']} septic) AUROC fell to {r['auroc']:.3f} "
            f"{interval(r['auroc_ci95'])} from {m['auroc']:.3f} on the test split, and "
            f"normalised utility to {r['normalised_utility']:.3f}."
        )
        others = [o for o in rows if o["cohort"] == r["cohort"] and o["auroc"] > r["auroc"]]
        if others:
            best = max(others, key=lambda o: o["auroc"])
            out.append(
                f"On the same cohort, `{best['model']}` reached AUROC {best['auroc']:.3f} "
                f"{interval(best['auroc_ci95'])} (same results file): a variant transfers better."
            )
    sparse = ", ".join(f"{c} in {share:.0%} of hours" for c, share in SPARSE_CHARTING.items())
    for r in (r for r in mine if r["seen_in_training"] == "charting unseen"):
        out.append(
            f"Charted as another hospital might ({r['cohort']}: {sparse} measured less often, "
            f"`training.cohorts.sparse_charting`) AUROC was {r['auroc']:.3f} "
            f"{interval(r['auroc_ci95'])} against {m['auroc']:.3f}, and normalised utility "
            f"{r['normalised_utility']:.3f}."
        )
    if not mine:
        out.append("No external validation recorded: performance elsewhere is unknown.")
    tiny = [f"{g['kind']} {g['group']}" for g in ev.subgroups if g["septic_patients"] < SMALL]
    if tiny:
        out.append(
            f"Subgroups with fewer than {SMALL} septic patients are too small to judge and the "
            f"gate skips them: {', '.join(tiny)}."
        )
    scored = [g for g in ev.subgroups if not np.isnan(g["auroc"])]
    if scored:
        worst = min(scored, key=lambda g: g["auroc"])
        out.append(
            f"Weakest subgroup: {worst['kind']} {worst['group']}, AUROC {worst['auroc']:.3f} "
            f"against {m['auroc']:.3f} overall."
        )
    for g in ev.subgroups:
        if g["kind"] == "unit" and g["group"] == "unknown":
            out.append(
                f"The ICU unit type is unknown for {g['patients']} of {m['patients']} test "
                "patients: the unit subgroups cover only part of them."
            )
    shares = ", ".join(f"{k} {v} %" for k, v in ev.missing_pct.items())
    out.append(
        (f"Charting is sparse (test-split hours without a value: {shares}). " if shares else "")
        + f"Missing values: {version.spec['input']['missing']}. The time-since-measurement "
        "features (`*_age_h`, `hours_since_first_record`) learn the training hospital's "
        "charting habits."
    )
    age = f"youngest test patient {ev.youngest:.1f} years" if ev.youngest else "adults only"
    out.append(f"No pediatric data ({age}): the model says nothing about children.")
    alerted = round(m["patients_alerted_pct"] * m["patients"] / 100)
    out.append(
        f"Alert burden at the threshold: {alerted} of {m['patients']} test patients "
        f"({m['patients_alerted_pct']} %) are alerted at least once, at least "
        f"{max(alerted - m['septic_patients'], 0)} of them never septic; "
        f"{m['alert_episodes_per_patient_day']} alert episodes per patient-day."
    )
    return out


def calibration_png(reliability: pd.DataFrame, ece: float, out: Path) -> None:
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot(reliability["mean_risk"], reliability["observed"], marker="o")
    top = float(max(reliability["mean_risk"].max(), reliability["observed"].max()))
    ax.plot([0, top], [0, top], color="grey", linewidth=0.5)
    ax.set_xlabel("mean predicted risk (decile)")
    ax.set_ylabel("observed label rate")
    ax.set_title(f"calibration, test split (ECE {ece:.4f})")
    fig.savefig(out, dpi=80)
    plt.close(fig)


def sections(version: Version, settings: Settings, ev: Evidence, out_dir: Path) -> dict[str, str]:
    spec, m, results = version.spec, ev.metrics, EXTERNAL_RESULTS
    td, split = spec["training_data"], spec["split"]
    gate, vm = spec["gate"], spec["validation_metrics"]
    s = {"Intended use": INTENDED_USE, "Out-of-scope uses": OUT_OF_SCOPE}
    s["Model details"] = table(
        ["field", "value"],
        [["name", version.model], ["version", version.version]]
        + [[k, spec.get(key, "not recorded")] for k, key in DETAILS]
        + [["output", f"`{spec['output']['name']}`: {spec['output']['meaning']}"]],
    )
    lic = data_license([settings.data_dir, SHARED_DATA], td["file"])
    s["Training data"] = (
        f"`{td['file']}`, SHA-256 `{td['sha256']}`, {td['patients']} patients, {td['rows']} "
        f"hours. Split by patient with the keyed hash `{split['key']}`: {split['train_pct']} % "
        f"train, {split['validation_pct']} % validation (early stopping, threshold), "
        f"{split['test_pct']} % test (held out for evaluation).\n\n"
        + (
            f"License and citation (from the data folder's `{shown(lic[0])}`):\n\n{lic[1]}"
            if lic
            else f"License and citation: not recorded (no data README names `{td['file']}`)."
        )
    )
    s["Features"] = (
        f"Input `{spec['input']['name']}` ({spec['input']['dtype']}, shape "
        f"{spec['input']['shape']}); missing values: {spec['input']['missing']}.\n\n"
        + table(
            ["#", "feature", "unit"],
            [[i, f"`{f['name']}`", f["unit"]] for i, f in enumerate(spec["features"], 1)],
        )
    )
    report = version.path / "report.md"
    text = report.read_text() if report.exists() else ""
    how = re.search(r"^Threshold [\d.]+ \((.*?)\)", text, re.M)
    rule = version.spec.get("threshold_rule") or (how.group(1) if how else "not recorded")
    s["Threshold"] = (
        f"Alert when risk ≥ {version.threshold:.5f}. Chosen: {rule}. On the validation "
        f"patients it alerts "
        f"{vm['patients_alerted_pct']} % of patients, {vm['alert_episodes_per_patient_day']} "
        "alert episodes per patient-day."
    )
    if ev.scored:
        same = "the training data" if ev.data_sha256 == td["sha256"] else "NOT the training data"
        source = (
            f"Scored now with this version's ONNX on the test split of "
            f"`{shown(settings.physionet_setA)}` "
            f"(SHA-256 `{ev.data_sha256}`: {same}); 95 % intervals from a patient-level bootstrap."
        )
    else:
        source = (
            f"Set A is not available (`{settings.physionet_setA}` missing): these are the spec's "
            "test metrics, recorded at training time, **without intervals**."
        )
    s["Metrics on the held-out test split"] = (
        f"{source} {m['patients']} patients ({m['septic_patients']} septic), {m['rows']} hours."
        "\n\n"
        + table(
            ["metric", "value", "95 % interval"],
            [
                ["AUROC", f"{m['auroc']:.4f}", interval(ev.ci.get("auroc"), 4)],
                ["AUPRC", f"{m['auprc']:.4f}", interval(ev.ci.get("auprc"), 4)],
                [
                    "normalised utility (PhysioNet 2019)",
                    f"{m['normalised_utility']:.4f}",
                    interval(ev.ci.get("normalised_utility"), 4),
                ],
                [
                    "alert episodes per patient-day",
                    f"{m['alert_episodes_per_patient_day']:.3f}",
                    interval(ev.ci.get("alerts_per_day"), 4),
                ],
                ["patients alerted at least once", f"{m['patients_alerted_pct']} %", ""],
                ["Brier score", f"{m['brier']:.5f}", ""],
            ],
        )
    )
    s["Subgroups"] = (
        ("Scored now on the test split." if ev.scored else "The spec's (test split, at training).")
        + f" ⚠: fewer than {SMALL} septic patients (the gate's minimum), reported, not gated.\n\n"
        + table(
            ["kind", "group", "patients", "septic", "AUROC", ""],
            [
                [
                    g["kind"],
                    g["group"],
                    g["patients"],
                    g["septic_patients"],
                    f"{g['auroc']:.3f}",
                    "⚠ small" if g["septic_patients"] < SMALL else "",
                ]
                for g in ev.subgroups
            ],
        )
    )
    s["Calibration"] = f"Expected calibration error {m['ece']:.5f} on the test split. "
    if ev.reliability is not None:
        calibration_png(ev.reliability, m["ece"], out_dir / "calibration.png")
        rel = [
            [i, int(r.n), f"{r.mean_risk:.4f}", f"{r.observed:.4f}"]
            for i, r in enumerate(ev.reliability.to_records(index=False), 1)
        ]
        s["Calibration"] += "Reliability by risk decile:\n\n" + table(
            ["decile", "hours", "mean predicted risk", "observed label rate"], rel
        )
        s["Calibration"] += "\n\n![calibration](calibration.png)"
    else:
        s["Calibration"] += "(The spec's; no reliability table without set A's test split.)"
        if (version.path / "calibration.png").exists():
            shutil.copy(version.path / "calibration.png", out_dir / "calibration.png")
            s["Calibration"] += " Training-time plot:\n\n![calibration](calibration.png)"
    s["Gate decision"] = (
        f"**{'passed' if gate['passed'] else 'FAILED'}**: no subgroup with ≥ {SMALL} septic "
        f"patients may be more than {validation.MAX_AUROC_GAP} AUROC below overall."
        + "".join(f"\n- {r}" for r in gate.get("reasons", []))
        + (
            f"\n\nRegistered despite the failed gate, by override: {gate['override']}"
            if "override" in gate
            else ""
        )
    )
    mine, rows = external_rows(version, results)
    s["Proxy external validation"] = (
        f"From `{results.relative_to(REPO)}` (`python -m training.external`), same threshold:\n\n"
        + table(
            [
                "cohort",
                "hospital",
                "patients",
                "septic",
                "AUROC [95 %]",
                "normalised utility",
                "alert episodes / patient-day",
            ],
            [
                [
                    r["cohort"],
                    r["seen_in_training"],
                    r["patients"],
                    r["septic_patients"],
                    f"{r['auroc']:.3f} {interval(r['auroc_ci95'])}",
                    f"{r['normalised_utility']:.3f}",
                    r["alert_episodes_per_patient_day"],
                ]
                for r in mine
            ],
        )
        if mine
        else f"None recorded for `champion {version.model} v{version.version}`."
    )
    s["Limitations"] = "\n".join(f"- {x}" for x in limitations(version, ev, mine, rows))
    return s


def card(
    version: Version,
    settings: Settings,
    out_dir: Path,
    *,
    samples: int = validation.BOOTSTRAP_SAMPLES,
) -> Path:
    """Write out_dir/README.md (+ calibration.png) for `version`; returns the README's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ev = evidence(version, settings, samples)
    s = sections(version, settings, ev, out_dir)
    command = f"python -m training.model_card --model {version.model} --version {version.version}"
    text = f"# Model card: {version.model} v{version.version}\n\n"
    text += "".join(f"## {k}\n\n{s[k]}\n\n" for k in SECTIONS)
    text += f"---\nGenerated by `{command} --out {out_dir}`"
    text += f" ({samples} bootstrap samples).\n" if ev.scored else ".\n"
    (out_dir / "README.md").write_text(text)
    return out_dir / "README.md"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--model", default=None, help="default: settings.model_name")
    ap.add_argument("--version", default=None, help="default: the champion")
    ap.add_argument("--out", type=Path, default=None, help="default: build/model_cards/NAME-vN")
    ap.add_argument("--bootstrap", type=int, default=validation.BOOTSTRAP_SAMPLES)
    Settings.add_arguments(ap)
    a = ap.parse_args(argv)
    settings = Settings.resolve(a)
    model = a.model or settings.model_name
    v = chosen_version(settings, model, a.version)
    out = a.out or Path("build/model_cards") / f"{model}-v{v.version}"
    if model in catalog.MODULES:
        print(f"wrote {catalog_card.card(v, settings, out)}")
        return
    print(f"wrote {card(v, settings, out, samples=a.bootstrap)}")


if __name__ == "__main__":
    main()
