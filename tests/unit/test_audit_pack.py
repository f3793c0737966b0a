"""The audit pack (training/audit_pack.py) of a bundled version, from a warehouse (embedded
ClickHouse) holding real rows: 40 set A test-split patients' screened states (udfs.sepsis over
their real values), the bundled champion's ONNX scores of the same hours, and the alerts its
scores raised through the real alert lifecycle (udfs.lifecycle)."""

from __future__ import annotations

import re
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from schemas.settings import Settings
from schemas.topics import VITALS_OBSERVATION
from sinks import clickhouse as ch
from tests.real_warehouse import MODEL, SET_A, load, patients, real_rows
from training import audit_pack
from training.audit import AuditTrail, service
from training.registry import bootstrap
from udfs.registry import Registry, Version

PNG = b"\x89PNG\r\n\x1a\n"
pytestmark = pytest.mark.skipif(not SET_A.exists(), reason="../shared/data is not here")


def monitor_and_quality_rows(v: Version, rows: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """Measured on the loaded rows, per day: the version's alert rate against twice its
    validation alert rate (model_monitor), and the share of states without a lactate
    (quality_events, missingness, when over half)."""
    scores, screens = rows["model_scores"], rows["sepsis_screen"]
    reference = v.spec["metrics"]["hours_above_threshold_pct"] / 100
    day = pd.to_datetime(scores["event_time"], utc=True).dt.floor("D")
    monitor = []
    for start, g in scores.groupby(day):
        rate = float(g["above_threshold"].mean())
        monitor.append(
            {
                "event_id": f"alert_rate-{start:%Y%m%d}", "event_time": start + pd.Timedelta("1D"),
                "model_name": MODEL, "model_version": v.version, "role": "champion",
                "facility_id": "F01", "metric": "alert_rate", "feature": None, "value": rate,
                "threshold": 2 * reference, "reference": reference, "n": len(g),
                "breach": rate > 2 * reference,
                "severity": "critical" if rate > 2 * reference else "ok",
                "window_start": start, "window_end": start + pd.Timedelta("1D"),
                "evidence_json": "{}",
            }
        )  # fmt: skip
    sday = pd.to_datetime(screens["event_time"], utc=True).dt.floor("D")
    quality = []
    for start, g in screens.groupby(sday):
        missing = float(g["lactate_mmol_l"].isna().mean())
        if missing > 0.5:
            quality.append(
                {
                    "event_id": f"missing-lactate-{start:%Y%m%d}", "event_time": start,
                    "monitor": "missingness", "state": "open", "action": None,
                    "severity": "warning", "source_topic": VITALS_OBSERVATION.name,
                    "facility_id": "F01", "unit_id": "ICU", "parameter": "lactate_mmol_l",
                    "statistic": "share", "observed": missing, "expected": None,
                    "threshold": 0.5, "window_start": start,
                    "window_end": start + pd.Timedelta("1D"), "records": len(g),
                    "reason": f"lactate missing in {missing:.0%} of states", "evidence_json": "{}",
                }
            )  # fmt: skip
    return {"model_monitor": pd.DataFrame(monitor), "quality_events": pd.DataFrame(quality)}


def test_the_audit_pack_of_a_bundled_version_traces_its_alerts_to_their_inputs(
    clickhouse: Any, settings: Settings, tmp_path: Path
) -> None:
    db = settings.clickhouse_database + "_pack"
    ch.migrate(clickhouse, db)
    reg = Registry(tmp_path / "registry")
    bootstrap(reg, MODEL)
    v = reg.get(MODEL, "1")
    trail = AuditTrail(reg, service("test"))
    trail.record(MODEL, "shadow_evaluated", version="2", action="compared", reason="test",
                 evidence={"champion": "1"})  # fmt: skip
    tables = real_rows(v, patients(40))
    audit_rows = pd.DataFrame(
        [{**e, "event_time": datetime.fromisoformat(e["event_time"])} for e in reg.audit(MODEL)]
    )
    extra = monitor_and_quality_rows(v, tables)
    load(clickhouse, db, {**tables, "model_audit": audit_rows, **extra})
    # Card from the spec (no set A under data_dir): the card's own tests score set A.
    s = Settings.from_env({}, model_registry=reg.root, data_dir=tmp_path, phi_key=b"k")
    wh = audit_pack.Warehouse(clickhouse, db)
    readme = audit_pack.pack(reg, v, s, tmp_path / "pack", wh, alerts=5, card_samples=10)
    text = readme.read_text()
    assert re.findall(r"^## (.+)$", text, re.M) == list(audit_pack.SECTIONS)
    out = tmp_path / "pack"
    assert (out / "model_card" / "README.md").read_text().startswith("# Model card")
    for png in ("validation/roc.png", "validation/calibration.png", "roles.png", "scores.png"):
        assert (out / png).read_bytes()[:8] == PNG, png
    assert v.spec["training_data"]["sha256"] in text and v.spec["onnx_sha256"] in text
    assert "**passed**" in text and "max |training library − onnxruntime|" in text
    assert "shadow_evaluated" in text and "model_audit" in text
    sections = {"model_monitor": "Drift history", "quality_events": "Data-quality history"}
    for table, section in sections.items():
        body = text.split(f"## {section}", 1)[1].split("\n## ", 1)[0]
        if table not in extra:
            assert f"Table `{db}.{table}` does not exist" in body
            continue
        png = "drift.png" if table == "model_monitor" else "quality.png"
        assert (out / png).read_bytes()[:8] == PNG and "![" in body
        first = "monitor measurements" if table == "model_monitor" else "data-quality events"
        assert f"{len(extra[table])} {first}" in body
    raised = tables["alert_events"].query("action == 'raise'")
    assert len(raised) > 5
    assert f"{len(raised)} alerts raised by v1; {len(raised)} traced" in text
    # Each sampled alert names its state's real values and its input record.
    screens = tables["sepsis_screen"].set_index("record_id")
    for alert_id, record_id in re.findall(r"### Alert `(\w+)`.*?Scored state `(\w+)`", text):
        assert alert_id in set(raised["alert_id"])
        state = screens.loc[record_id]
        hr = state["heart_rate_bpm"]
        assert f"heart_rate_bpm {audit_pack._cell(hr) if pd.notna(hr) else '—'}," in text
        assert f"{VITALS_OBSERVATION.name}[0]@{state['source_offset']}" in text
    assert len(re.findall(r"^### Alert", text, re.M)) == 5
