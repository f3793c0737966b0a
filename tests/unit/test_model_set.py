"""The catalog's generic scoring path: several models, each with its own spec, champion and
shadow challenger, served by one ModelSet and changed independently while it scores."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from skl2onnx import to_onnx
from sklearn.linear_model import LinearRegression, LogisticRegression

from schemas.model_spec import ModelSpec, SpecError, Trigger
from udfs.model_set import ModelSet, entity_lookup
from udfs.registry import InvalidVersion, Registry

RNG = np.random.default_rng(7)


def _spec(name: str, task: str, features: list[str], **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "task": task,
        "entity": "stay",
        "entity_key": "stay_token",
        "features": [{"name": f, "unit": "1"} for f in features],
        "feature_service": f"{name}_v1",
        "trigger": {"kind": "every_state"},
        "output": {
            "name": "score",
            "meaning": "test",
            "unit": "d" if task == "regression" else None,
        },
        "threshold": 0.5 if task == "binary" else None,
        "input": {"name": "features"},
        "metrics": {},
        "gate": {"passed": True, "reasons": []},
        **extra,
    }


def _build(tmp: Path, name: str, task: str, features: list[str], slope: float) -> Path:
    """A real model (scikit-learn → ONNX) whose score rises with the first feature."""
    x = RNG.normal(size=(400, len(features))).astype("float32")
    if task == "binary":
        y = (slope * x[:, 0] + RNG.normal(scale=0.3, size=400) > 0).astype(int)
        est: Any = LogisticRegression().fit(x, y)
        onnx = to_onnx(est, x[:1], options={id(est): {"zipmap": False}})
    else:
        est = LinearRegression().fit(x, slope * x[:, 0] + 3.0)
        onnx = to_onnx(est, x[:1])
    onnx.graph.input[0].name = "features"
    for node in onnx.graph.node:
        node.input[:] = ["features" if i == "X" else i for i in node.input]
    out = tmp / f"{name}-{slope}"
    out.mkdir(parents=True)
    (out / "model.onnx").write_bytes(onnx.SerializeToString())
    (out / "spec.json").write_text(json.dumps(_spec(name, task, features)))
    return out


@pytest.fixture()
def registry(tmp_path: Path) -> Registry:
    reg = Registry(tmp_path / "registry")
    for name, task, feats in (
        ("mortality", "binary", ["a", "b"]),
        ("los", "regression", ["a", "c"]),
    ):
        for slope in (2.0, -2.0):
            reg.register(_build(tmp_path / "built", name, task, feats, slope))
        reg.promote(name, "1")
        reg.set_role(name, "challenger", "2", why="shadow")
    return reg


def _batch(n: int = 6) -> pd.DataFrame:
    a = np.linspace(-2, 2, n)
    return pd.DataFrame(
        {
            "model": ["mortality", "los"] * (n // 2),
            "entity_key": [f"s{i}" for i in range(n)],
            "a": a,
            "b": 0.0,
            "c": 0.0,
        }
    )


def test_one_model_set_scores_rows_of_different_models_each_with_its_own_features(
    registry: Registry,
) -> None:
    out = ModelSet(registry, ["mortality", "los"]).score(_batch())
    mort, los = out.iloc[0::2], out.iloc[1::2]
    assert mort["champion_score"].between(0, 1).all() and mort["alert"].notna().all()
    assert (mort["champion_threshold"] == 0.5).all()
    assert los["alert"].isna().all() and los["champion_threshold"].isna().all()
    assert np.allclose(los["champion_score"], 2.0 * _batch()["a"].iloc[1::2] + 3.0, atol=1e-4)
    assert (out["champion_version"] == "1").all() and (out["challenger_version"] == "2").all()
    assert mort["champion_score"].is_monotonic_increasing
    assert mort["challenger_score"].is_monotonic_decreasing


def test_models_are_promoted_shadowed_and_rolled_back_independently_while_scoring(
    registry: Registry,
) -> None:
    models = ModelSet(registry, ["mortality", "los"], roles_check_s=0.0)
    before = models.score(_batch())
    registry.promote("los", "2")  # los only: mortality keeps its champion and shadow
    after = models.score(_batch())
    assert (after.iloc[0::2]["champion_version"] == "1").all()
    assert (after.iloc[1::2]["champion_version"] == "2").all()
    assert (after.iloc[1::2]["challenger_version"].isna()).all()
    pd.testing.assert_series_equal(before["champion_score"][0::2], after["champion_score"][0::2])
    registry.set_role("mortality", "challenger", None, why="shadow ended")
    assert models.score(_batch()).iloc[0::2]["challenger_score"].isna().all()
    registry.rollback("los")
    back = models.score(_batch())
    assert (back.iloc[1::2]["champion_version"] == "1").all()
    pd.testing.assert_series_equal(before["champion_score"], back["champion_score"])


def test_features_the_batch_lacks_come_from_the_models_feature_service(
    registry: Registry,
) -> None:
    served = pd.DataFrame({"b": [5.0]}, index=pd.Index(["s0"]))
    models = ModelSet(registry, ["mortality"], lookups={"mortality_v1": lambda keys: served})
    batch = _batch(2).iloc[:1].drop(columns="b")
    out = models.score(batch)
    assert out["features_missing"].iloc[0] == 0
    failing = ModelSet(registry, ["mortality"], lookups={"mortality_v1": _fails})
    assert failing.score(batch)["features_missing"].iloc[0] == 1
    assert failing.lookup_failures == 1


def test_a_version_promoted_later_under_a_new_feature_service_reads_its_entitys_features(
    registry: Registry, tmp_path: Path
) -> None:
    served = pd.DataFrame({"b": [5.0]}, index=pd.Index(["s0"]))
    lookups = {"mortality_v1": lambda keys: served, entity_lookup("stay"): lambda keys: served}
    models = ModelSet(registry, ["mortality"], lookups=lookups, roles_check_s=0.0)
    batch = _batch(2).iloc[:1].drop(columns="b")
    renamed = _build(tmp_path / "v3", "mortality", "binary", ["a", "b"], 2.0)
    spec = json.loads((renamed / "spec.json").read_text())
    (renamed / "spec.json").write_text(json.dumps(spec | {"feature_service": "mortality_v3"}))
    registry.promote("mortality", registry.register(renamed).version)
    out = models.score(batch)
    assert out["champion_version"].iloc[0] == "3" and out["features_missing"].iloc[0] == 0
    before = ModelSet(registry, ["mortality"], lookups={"mortality_v1": lambda keys: served})
    assert before.score(batch)["features_missing"].iloc[0] == 1


def _fails(keys: list[str]) -> pd.DataFrame:
    raise ConnectionError("online store down")


def test_a_model_without_a_champion_leaves_its_rows_unscored(registry: Registry) -> None:
    registry.set_role("los", "champion", None, why="withdrawn")
    out = ModelSet(registry, ["mortality", "los"]).score(_batch())
    assert out.iloc[1::2]["champion_score"].isna().all()
    assert out.iloc[0::2]["champion_score"].notna().all()


def test_a_spec_that_cannot_be_served_is_refused_naming_every_problem() -> None:
    bad = _spec("x", "binary", ["a", "a"], threshold=None, trigger={"kind": "stay_hours"})
    with pytest.raises(SpecError) as e:
        ModelSpec.parse(bad)
    assert "repeat" in str(e.value) and "threshold" in str(e.value) and "hours" in str(e.value)
    ok = ModelSpec.parse(
        _spec("y", "regression", ["a"], trigger={"kind": "stay_hours", "hours": [24, 48]})
    )
    assert ok.trigger == Trigger("stay_hours", (24.0, 48.0))


def test_the_hours_a_stay_is_scored_at_come_from_its_trigger_or_its_reported_hours() -> None:
    hourly = ModelSpec.parse(
        _spec("y", "binary", ["a"], trigger={"kind": "stay_hours", "hours": [48, 24, 24]})
    )
    assert hourly.stay_hours == (24.0, 48.0)
    reported = ModelSpec.parse(_spec("z", "binary", ["a"], report_at_hours=[48.0, 24]))
    assert reported.trigger.kind == "every_state" and reported.stay_hours == (24.0, 48.0)
    assert ModelSpec.parse(_spec("w", "binary", ["a"])).stay_hours == ()


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        ({"report_at_hours": [24, -1]}, "positive hours"),
        ({"report_at_hours": "24"}, "positive hours"),
        ({"report_at_hours": [True]}, "positive hours"),
        ({"report_at_hours": [24 * 100]}, "positive hours up to 2376"),
        ({"entity": "encounter", "report_at_hours": [24]}, "scored at every state"),
        ({"trigger": {"kind": "discharge"}, "report_at_hours": [24]}, "scored at every state"),
        ({"trigger": {"kind": "stay_hours", "hours": [0]}}, "positive `hours`"),
        ({"trigger": {"kind": "stay_hours", "hours": 24}}, "positive `hours`"),
        ({"entity": "unit", "trigger": {"kind": "stay_hours", "hours": [1]}}, "for stay models"),
    ],
)
def test_hours_a_stay_cannot_be_scored_at_are_refused(extra: dict[str, Any], problem: str) -> None:
    with pytest.raises(SpecError, match=problem):
        ModelSpec.parse(_spec("v", "binary", ["a"], **extra))


def test_the_bundled_sepsis_versions_meet_the_catalog_spec() -> None:
    bundled = Path(__file__).resolve().parents[2] / "training" / "bundled"
    for spec in sorted(bundled.glob("*/*/spec.json")):
        ModelSpec.parse(json.loads(spec.read_text()))


def test_a_row_of_which_nothing_is_known_gets_no_score(registry: Registry) -> None:
    batch = _batch(4)
    batch.loc[0, ["a", "b", "c"]] = np.nan
    out = ModelSet(registry, ["mortality", "los"]).score(batch)
    assert pd.isna(out.loc[0, "champion_score"]) and out.loc[0, "features_missing"] == 2
    assert pd.isna(out.loc[0, "challenger_score"]) and pd.isna(out.loc[0, "alert"])
    assert out.loc[1:, "champion_score"].notna().all()


def _broken(registry: Registry, tmp: Path, name: str, **spec: Any) -> str:
    """Another version of `name` whose spec (or ONNX input) cannot be served: registration
    refuses one, so it is one registered before it checked, its spec edited in place after."""
    built = _build(
        tmp / "broken" / str(len(registry.versions(name))), name, "binary", ["a", "b"], 1.0
    )
    with pytest.raises(InvalidVersion):
        registry.register(_edited(built, tmp / "refused", spec))
    version = registry.register(built)
    (version.path / "spec.json").write_text(json.dumps(version.spec | spec))
    return version.version


def _edited(built: Path, to: Path, spec: dict[str, Any]) -> Path:
    shutil.rmtree(to, ignore_errors=True)
    shutil.copytree(built, to)
    data = json.loads((to / "spec.json").read_text()) | spec
    (to / "spec.json").write_text(json.dumps(data))
    return to


def test_a_version_that_cannot_be_served_never_stops_the_other_models_or_roles(
    registry: Registry, tmp_path: Path
) -> None:
    models = ModelSet(registry, ["mortality", "los"], roles_check_s=0.0)
    before = models.score(_batch())
    bad_spec = _broken(
        registry, tmp_path, "mortality", trigger={"kind": "stay_hours", "hours": [0]}
    )
    registry.set_role("mortality", "challenger", bad_spec, why="a shadow that cannot be served")
    shadowless = models.score(_batch())
    assert models.load_failures == 1
    pd.testing.assert_series_equal(before["champion_score"], shadowless["champion_score"])
    assert shadowless.iloc[0::2]["challenger_version"].isna().all()
    assert (shadowless.iloc[1::2]["challenger_version"] == "2").all()  # los keeps its shadow
    wrong_input = _broken(registry, tmp_path, "mortality", input={"name": "x"})
    registry.promote("mortality", wrong_input)  # the broken shadow is tried again, too
    kept = models.score(_batch())
    assert models.load_failures == 3
    assert (kept.iloc[0::2]["champion_version"] == "1").all()  # the champion before stays
    pd.testing.assert_series_equal(before["champion_score"], kept["champion_score"])


def test_a_failed_promotion_with_the_champion_before_it_as_shadow_serves_that_one_once(
    registry: Registry, tmp_path: Path
) -> None:
    """Promote a new version, keep the one before as its shadow (README's flow); the new one
    cannot be served, so the one before is held as champion, and not also as its own shadow
    (two rows of one score id, a shadow that agrees perfectly)."""
    models = ModelSet(registry, ["mortality"], roles_check_s=0.0)
    before = models.score(_batch()).iloc[0::2]  # the mortality rows
    assert (before["champion_version"] == "1").all()
    wrong_input = _broken(registry, tmp_path, "mortality", input={"name": "x"})
    registry.promote("mortality", wrong_input)
    registry.set_role("mortality", "challenger", "1", why="the old champion, the new one's shadow")
    served = models.score(_batch()).iloc[0::2]
    assert (served["champion_version"] == "1").all()
    assert served["challenger_version"].isna().all() and served["challenger_score"].isna().all()
