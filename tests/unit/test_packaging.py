"""wardflow builds as a wheel that carries everything its code opens, and a job runs from the
installed wheel alone, as in the job image (deploy/docker) or a Python environment shipped to a
cluster: nothing read from the source checkout."""

from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from jobs.runtime.flink_env import SHIPPED_PACKAGES

REPO = Path(__file__).resolve().parents[2]
# Files in the packages that no installed wardflow needs: benchmark results, dashboard images,
# the image and manifests that install it.
NOT_PACKAGED = ("bench/results/", "grafana/previews/", "deploy/docker/", "deploy/k8s/")


def pip(command: str, *args: str) -> None:
    """This environment's pip, quiet, never resolving dependencies (nothing is downloaded)."""
    subprocess.run([sys.executable, "-m", "pip", command, "-q", "--no-deps", *args], check=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # Built from a copy of the tracked files, as from a clean checkout: never from (or into) a
    # build/ folder a previous build left in the working tree.
    src = tmp_path_factory.mktemp("src")
    tracked = subprocess.run(
        ["git", "ls-files"], cwd=REPO, check=True, capture_output=True, text=True
    ).stdout.splitlines()
    for name in tracked:
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    out = tmp_path_factory.mktemp("wheel")
    pip("wheel", "--no-build-isolation", "-w", str(out), str(src))
    (found,) = out.glob("wardflow-*.whl")
    return found


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("site")
    pip("install", "--no-index", "--target", str(target), str(wheel))
    return target


def data_files() -> set[str]:
    """Every file in wardflow's packages that is not Python source."""
    packages = [p for p in REPO.iterdir() if (p / "__init__.py").exists() and p.name != "tests"]
    return {
        f.relative_to(REPO).as_posix()
        for p in packages
        for f in p.rglob("*")
        if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts
    }


def test_the_wheel_carries_every_data_file_its_code_opens(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = {f for f in data_files() if not f.startswith(NOT_PACKAGED)}
    assert "schemas/sepsis.screen.v1.avsc" in wanted and "sinks/migrations/0001_spine.sql" in wanted
    assert wanted - names == set()


def test_a_job_imports_and_reads_its_contracts_from_the_installed_wheel_alone(
    installed: Path,
) -> None:
    # -S: none of this environment's .pth files, so not the editable install of the checkout;
    # its third-party packages are put back on the path explicitly, after the wheel.
    site = sysconfig.get_paths()["purelib"]
    probe = (
        "import jobs, schemas, sinks, training.registry as r\n"
        "from jobs import sepsis_screen, bed_census\n"
        "from schemas import TOPICS, load_schema\n"
        "from jobs.feeds import replay\n"
        "from sinks import clickhouse\n"
        "assert all(load_schema(t) for t in TOPICS)\n"
        "assert replay.SAMPLE.exists() and r.BUNDLED.is_dir()\n"
        "assert len(list(clickhouse.MIGRATIONS_DIR.glob('*.sql'))) >= 6\n"
        "print(jobs.__file__)\n"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", probe],
        env={"PYTHONPATH": f"{installed}:{site}"},
        cwd=installed.parent,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    assert Path(out.stdout.strip()).is_relative_to(installed)


def test_the_code_a_job_ships_to_a_cluster_is_its_layer_and_those_below_it() -> None:
    from tests.unit.test_layers import LAYERS

    assert set(SHIPPED_PACKAGES) == {p for p, layer in LAYERS.items() if layer <= LAYERS["jobs"]}
