"""Where the chart is, and what its Chart.yaml promises: read by the checks and by the helm calls."""

from __future__ import annotations

import re
from functools import cache
from importlib import resources
from pathlib import Path

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent


def chart_dir() -> Path:
    """The chart: package data of an installed katib-nas (`generator/chart`, see pyproject.toml), else
    the source tree's charts/katib-nas (an editable install or a checkout)."""
    packaged = resources.files("generator") / "chart"
    if isinstance(packaged, Path) and (packaged / "Chart.yaml").is_file():
        return packaged
    return REPO_ROOT / "charts" / "katib-nas"


CHART_DIR = chart_dir()


@cache
def oldest_kubernetes() -> tuple[int, int]:
    """The oldest Kubernetes (major, minor) the chart installs on: its kubeVersion, `>=X.Y.0-0`."""
    constraint = yaml.safe_load((CHART_DIR / "Chart.yaml").read_text(encoding="utf-8"))["kubeVersion"]
    found = re.fullmatch(r">=\s*v?(\d+)\.(\d+)(?:\.\d+)?(?:-0)?", constraint.strip())
    if found is None:  # a chart change the check must follow; never a user's input
        raise RuntimeError(f"Chart.yaml kubeVersion {constraint!r} is not of the form >=X.Y.Z-0")
    return int(found.group(1)), int(found.group(2))


def kubernetes_too_old(version: str) -> str | None:
    """Why the chart cannot install on Kubernetes `version`, or None when it can (or when `version` is
    not major.minor digits, which the profile's pattern reports); the reason follows the version:
    "1.28 is " + reason."""
    found = re.fullmatch(r"([0-9]+)\.([0-9]+)", version)
    oldest = oldest_kubernetes()
    # [:9]: never int() of 4300 digits
    if found is None or (int(found.group(1)[:9]), int(found.group(2)[:9])) >= oldest:
        return None
    floor = ".".join(map(str, oldest))
    return (
        f"older than Kubernetes {floor}, the oldest the chart installs on (Chart.yaml kubeVersion); "
        f"upgrade the cluster to {floor} or newer, or run the search on this machine with `katib-nas run --local`"
    )
