"""The capacity forecast with the LOS model's predicted discharges, backtested on PhysioNet 2012
set B stays (training/catalog/capacity_los.py), through onnxruntime and the registry's champion."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from training.catalog import capacity_los
from training.catalog import physionet2012 as p12
from udfs import capacity_forecast as cf


def test_the_backtest_forecasts_every_unit_at_every_origin_with_and_without_the_los_model(
    settings: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = p12.set_file(settings, "B")
    if not path.exists():
        pytest.skip(f"PhysioNet 2012 set B is not at {path}")
    capacity_los.main(
        ["--stays", "800", "--days", "80", "--step", "12", "--seeds", "3", "--out", str(tmp_path)]
    )
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert re.fullmatch(r"MAE_beds_with_los \d+\.\d{3} MAE_beds_without \d+\.\d{3}", last), last
    b = json.loads((tmp_path / "los_model.json").read_text())
    assert b["units"] == 4 and 780 < b["stays"] <= 800  # stays without a length of stay left out
    origins = (80 * 24 - capacity_los.WARMUP_H - cf.HORIZON_H) // 12 + 1
    assert (b["origins"], b["forecasts"]) == (origins, origins * 4)
    # the model's scores moved the forecasts, and neither way is far off the other
    assert b["mae_with_los"] != b["mae_unit_only"]
    i = cf.HORIZON_H - 1
    assert abs(b["mae_with_los"][i] / b["mae_unit_only"][i] - 1) < 0.2
    assert 0.7 < b["coverage80_with_los"][i] < 0.97 and 0.7 < b["coverage80_unit_only"][i] < 0.97
    lo, hi = b["difference_24h_ci95"]
    assert lo <= b["difference_24h"] <= hi
    assert (tmp_path / "los_model.md").read_text().startswith("# capacity-forecast with the LOS")
