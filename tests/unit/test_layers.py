"""Imports point one way: a package may import only packages of lower layers (README "Layers").
Every import is read from the source, also those inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
LAYERS = {  # bottom-up; a package sees only lower layers
    "schemas": 0,  # contracts: Avro schemas, topic registry, rows, settings, pure mappers
    "udfs": 1,  # pure functions, their Flink wrappers, the runtime model registry
    "feature_store": 2,  # feature definitions and the Feast repo
    "jobs": 3,  # Flink jobs, what they run on, the feeds that drive them
    "sinks": 4,  # ClickHouse: migrations, loader, queries
    "grafana": 5,  # dashboards as code and the warehouse they are tested on
    "training": 6,  # on top: training, evaluation, the registry's command line
    "deploy": 7,  # the local demos, a standalone Flink cluster, the image and manifests
    "bench": 8,  # benchmarks (they time training's scorer, and jobs on deploy's cluster)
}


def imports(package: str, root: Path = REPO) -> list[tuple[str, int, str]]:
    """(file, line, imported top-level package) for every wardflow import in `package`."""
    found = []
    for path in sorted((root / package).rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top in LAYERS and top != package:
                    found.append((str(path.relative_to(root)), node.lineno, top))
    return found


def against_the_layers(root: Path = REPO) -> list[str]:
    return [
        f"{file}:{line} imports {top} (layer {LAYERS[top]}) from layer {LAYERS[package]}"
        for package in LAYERS
        for file, line, top in imports(package, root)
        if LAYERS[top] >= LAYERS[package]
    ]


def test_no_package_imports_a_package_of_its_own_or_a_higher_layer() -> None:
    assert against_the_layers() == []


def test_an_import_against_the_layers_is_found_even_inside_a_function(tmp_path: Path) -> None:
    (tmp_path / "udfs").mkdir()
    (tmp_path / "udfs" / "x.py").write_text("def f():\n    from training import train\n")
    (tmp_path / "training").mkdir()
    (tmp_path / "training" / "y.py").write_text("import udfs.x\n")
    assert against_the_layers(tmp_path) == ["udfs/x.py:2 imports training (layer 6) from layer 1"]


def test_every_top_level_module_in_jobs_is_a_flink_job() -> None:
    from jobs.runtime.job import Job

    modules = sorted(p.stem for p in (REPO / "jobs").glob("*.py") if p.stem != "__init__")
    for name in modules:
        module = __import__(f"jobs.{name}", fromlist=["JOB"])
        assert isinstance(getattr(module, "JOB", None), Job), f"jobs/{name}.py is not a job"


def topic_literals(root: Path = REPO) -> list[str]:
    """Places outside the topic registry that spell a registered topic name as a string."""
    from schemas.topics import TOPICS

    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if rel.parts[0] in (".venv", "build") or rel == Path("schemas/topics.py"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in TOPICS:
                found.append(f"{rel}:{node.lineno} {node.value!r}")
    return found


def test_topic_names_come_from_the_registry_never_from_literals(tmp_path: Path) -> None:
    assert topic_literals() == []
    (tmp_path / "jobs").mkdir()
    (tmp_path / "jobs" / "x.py").write_text('TOPIC = "alert.v2"\n')
    assert topic_literals(tmp_path) == ["jobs/x.py:1 'alert.v2'"]
