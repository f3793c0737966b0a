"""Model cards of the catalog's models, generated from each bundled version's spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from schemas.settings import Settings
from training import catalog
from training.catalog import card
from training.registry import BUNDLED, bootstrap
from udfs.registry import Registry

SECTIONS = (
    "Model details",
    "Intended use",
    "Data and license",
    "Metrics (held-out data, 95 % bootstrap intervals)",
    "Subgroups",
    "Calibration",
    "Gate",
    "Limitations",
)


@pytest.mark.parametrize("model", [m for m in catalog.MODULES if (BUNDLED / m).is_dir()])
def test_each_catalog_champion_has_a_card_with_every_section_and_its_data_license(
    model: str, tmp_path: Path, settings: Settings
) -> None:
    reg = Registry(tmp_path / "registry")
    assert bootstrap(reg, model)
    v = reg.role(model, "champion")
    assert v is not None
    text = card.card(v, settings, tmp_path / "card").read_text()
    for section in SECTIONS:
        assert f"## {section}\n" in text
    assert "95 %" in text and "| group |" in text
    if settings.data_dir.exists():
        assert "License" in text or "license" in text.split("## Data and license")[1]
