"""The release artifacts: `make package` writes the chart archive and the wheel; the archive passes
`helm lint --strict` with every CI values file, and a non-editable install of the wheel (a fresh
virtual environment, outside the source tree) finds the chart in its own package data and renders."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

from .conftest import CHART, CI_VALUES, ROOT, run, tool, tool_env

VERSION = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]


def make_package(out: Path) -> Path:
    """`make package` into `out`: the chart archive and the wheel."""
    # -o: the test environment is already set up; do not let make reinstall it mid-test.
    cmd = ["make", "--no-print-directory", "-o", ".venv/.installed", "package", f"DIST={out}"]
    proc = subprocess.run(cmd, cwd=ROOT, env=tool_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out


def install_wheel(dist: Path, venv: Path) -> Path:
    """A fresh virtual environment with the wheel installed (not editable). Its dependencies come from
    the project's .venv through a .pth line, which Python adds to sys.path without running the .venv's
    own .pth files, so the editable install there cannot shadow the wheel."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # nothing may shadow the wheel
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, env=env)
    python = venv / "bin" / "python"
    (wheel,) = dist.glob("katib_nas-*.whl")
    cmd = [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", "--no-index"]
    subprocess.run([*cmd, str(wheel)], check=True, timeout=120, env=env)
    where = [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"]
    site = Path(subprocess.check_output(where, text=True, env=env).strip())
    (site / "katib_nas_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    return venv


def installed_venv(work: Path) -> Path:
    return install_wheel(make_package(work / "dist"), work / "venv")


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_package(tmp_path_factory.mktemp("dist"))


# Where each importable package's sources live in the tree (pyproject's package-dir).
SOURCES = {
    "generator": ROOT / "generator",
    "katib_nas_contract": ROOT / "images" / "contract" / "katib_nas_contract",
    "katib_nas_trainer": ROOT / "images" / "trainer" / "katib_nas_trainer",
    "katib_nas_keras": ROOT / "images" / "trainer" / "katib_nas_keras",
    "katib_nas_server": ROOT / "images" / "server" / "katib_nas_server",
}


def test_the_wheel_ships_every_module_of_the_tree(dist: Path) -> None:
    """A subpackage missing from pyproject's package list is missing from every non-editable install
    (generator.local once was: the installed command could not start)."""
    (wheel,) = dist.glob("katib_nas-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    modules = {
        f"{name}/{path.relative_to(source).as_posix()}"
        for name, source in SOURCES.items()
        for path in source.rglob("*.py")
    }
    assert sorted(modules - shipped) == []


def test_the_chart_archive_ships_the_chart_and_nothing_else(dist: Path) -> None:
    with tarfile.open(dist / f"katib-nas-{VERSION}.tgz") as archive:
        names = set(archive.getnames())
    assert {"katib-nas/Chart.yaml", "katib-nas/values.schema.json", "katib-nas/templates/_helpers.tpl"} <= names
    assert not [n for n in names if n.startswith(("katib-nas/tests/", "katib-nas/ci/")) or n.endswith(".gotmpl")]


@pytest.mark.parametrize("values", CI_VALUES, ids=lambda p: p.name)
def test_the_chart_archive_passes_helm_lint(dist: Path, values: Path) -> None:
    archive = dist / f"katib-nas-{VERSION}.tgz"
    proc = run([tool("helm"), "lint", str(archive), "--strict", "--kube-version", "1.34.0", "--values", str(values)])
    assert "1 chart(s) linted, 0 chart(s) failed" in proc.stdout, proc.stdout


@pytest.fixture(scope="module")
def installed(dist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return install_wheel(dist, tmp_path_factory.mktemp("wheel") / "venv")


def test_a_non_editable_install_renders_from_its_own_chart(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in tool_env().items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import generator.helm as h; print(h.CHART_DIR)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(installed) and where.endswith("generator/chart"), where

    values = tmp_path / "microk8s.yaml"  # outside the source tree, with its profile shipped in the package
    values.write_text((ROOT / "values" / "microk8s.yaml").read_text())
    out = tmp_path / "out.yaml"
    proc = subprocess.run(
        [str(installed / "bin" / "katib-nas"), "render", str(values), "-o", str(out)],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    kinds = {d["kind"] for d in yaml.safe_load_all(out.read_text()) if d}
    assert {"Experiment", "PersistentVolumeClaim", "Deployment", "Job"} <= kinds
