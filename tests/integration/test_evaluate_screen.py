"""The evaluation command end to end on a small real sample: replay → job → metrics → report."""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest

from jobs.screening import rules as sepsis_rules
from schemas.settings import Settings
from tests.conftest import scoring_on
from training import evaluate_rules as evaluate_screen

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_a_report_folder_holding_tracked_files_is_refused(kafka: Settings) -> None:
    with pytest.raises(SystemExit, match="tracked by git"):
        evaluate_screen.main(["--patients", "5", "--out", "reports/sepsis_screen"])


def test_evaluation_writes_a_report_with_every_rule_and_policy_and_a_summary_line(
    kafka: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("WARDFLOW_PHI_KEY", "evaluation-test")
    # A registry of its own with the bundled champion (the default one may hold none), as
    # `make evaluate` bootstraps it first.
    out = tmp_path / "report"
    own = scoring_on(kafka, tmp_path / "scoring", f"evaluate-{uuid.uuid4().hex[:6]}")
    registry = ["--model-registry", str(own.model_registry), "--feast-dir", str(own.feast_dir)]
    evaluate_screen.main(["--patients", "120", "--seed", "7", "--out", str(out), *registry])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("patients=120 auroc_news2=")
    report = (out / "README.md").read_text()
    assert (out / "sepsis_screen.png").stat().st_size > 10_000
    rows = [line for line in report.splitlines() if line.startswith("| ")][1:]
    # each rule, the model (scoring is on by default), any rule, any alert: two policies each
    assert len(rows) == 2 * (len(sepsis_rules.RULES) + 3)
    for rule in sepsis_rules.RULES:
        assert f"| {rule.rule_id} | {rule.version} | open |" in report
    assert re.search(r"\| model_sepsis_risk \| sepsis-risk v\d+ \| open \|", report)
    assert "| any rule (rules only) |  | open |" in report
    assert "| any alert (rules + model) |  | raise |" in report
    assert re.search(r"model_alerts=sepsis-risk v\d+$", last)
    auroc = float(last.split("auroc_news2=")[1].split()[0])
    assert 0.5 < auroc < 1.0
