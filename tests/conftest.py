"""Shared helpers: the pinned tools from ci/install-tools.sh and real helm renders."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
CHART = ROOT / "charts" / "katib-nas"
TOOLS = ROOT / ".tools" / "bin"
PROFILE_VALUES = sorted((ROOT / "values").glob("*.yaml"))
CI_VALUES = sorted((CHART / "ci").glob("*-values.yaml"))
KATIB_API = "kubeflow.org/v1beta1/Experiment"
KSERVE_API = "serving.kserve.io/v1beta1/InferenceService"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite tests/data/expected/*.yaml")


def tool(name: str) -> str:
    path = TOOLS / name
    if not path.is_file():
        pytest.fail(f"{path} is missing: run `bash ci/install-tools.sh` first", pytrace=False)
    return str(path)


def tool_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{TOOLS}{os.pathsep}{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["HELM_PLUGINS"] = str(ROOT / ".tools" / "helm-plugins")
    env["HELM"] = str(TOOLS / "helm")
    return env


def run(cmd: list[str], stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, input=stdin, capture_output=True, text=True, env=tool_env(), cwd=ROOT)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def helm_template(
    values_file: Path | None = None,
    values: dict[str, Any] | None = None,
    kube_version: str = "1.31.0",
    api_versions: tuple[str, ...] = (KATIB_API, KSERVE_API),
    release: str = "nas",
    namespace: str = "ml",
    check: bool = True,
) -> list[dict[str, Any]]:
    cmd = [tool("helm"), "template", release, str(CHART), "--namespace", namespace, "--kube-version", kube_version]
    for api in api_versions:
        cmd += ["--api-versions", api]
    if values_file is not None:
        cmd += ["--values", str(values_file)]
    if values is not None:
        cmd += ["--values", "-"]
    proc = run(cmd, stdin=json.dumps(values) if values is not None else None, check=check)
    if proc.returncode != 0:
        raise subprocess.CalledProcessError(proc.returncode, cmd, proc.stdout, proc.stderr)
    return [d for d in yaml.safe_load_all(proc.stdout) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]
