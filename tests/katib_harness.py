"""Katib v0.19's own code, called from the tests through ci/katibcheck (built by
ci/install-controlplane.sh): the pod mutator its webhook applies to trial pods, the conversion of an
Experiment into the request its suggestion services validate, the goptuna service's settings
validation, Go's regexp as Katib compiles metricsFormat filters, and suggestion services on a resumed
search."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from .controlplane import BIN, MANIFESTS

KATIB_CONFIG = MANIFESTS / "installs" / "katib-standalone" / "katib-config.yaml"


class KatibRefused(Exception):
    """Katib's code returned an error for this case (its message is the exception's text)."""


def katibcheck(
    command: str,
    cases: list[Any],
    driver: list[str] | None = None,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> list[dict[str, Any]]:
    """Run one katibcheck command on a batch of cases; one result dict per case, in order. `driver`:
    the command that runs a Python suggestion service for `resume` (in `env` and `cwd`)."""
    binary = BIN / "katibcheck"
    if not binary.is_file():
        pytest.fail(f"{binary} is missing: run `bash ci/install-controlplane.sh` first", pytrace=False)
    args = [str(binary), command]
    if command == "mutate":
        args += ["--katib-config", str(KATIB_CONFIG)]
    if driver:
        args += ["--", *driver]
    proc = subprocess.run(
        args, input=json.dumps(cases), capture_output=True, text=True, timeout=600, check=False, env=env, cwd=cwd
    )
    if proc.returncode != 0:
        raise AssertionError(f"katibcheck {command} failed ({proc.returncode}): {proc.stderr}")
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return results


def first_assignments(experiment: dict[str, Any]) -> list[dict[str, str]]:
    """One parameter assignment per Experiment parameter (the first list value, or min), as a
    suggestion service would hand Katib's trial controller."""
    out = []
    for p in experiment["spec"].get("parameters") or []:
        fs = p["feasibleSpace"]
        out.append({"name": p["name"], "value": str(fs["list"][0] if fs.get("list") else fs["min"])})
    return out


def mutate_pods(cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Katib's pod mutator on many trial pods at once. Each case is {"experiment": Experiment,
    "assignments": [...] (default: first_assignments), "pod": pod (default: the pod of the trial Job
    Katib renders from the Experiment's trial template)}. Each result is {"pod": mutated pod} or
    {"error": Katib's message}."""
    batch = [{**c, "assignments": c.get("assignments") or first_assignments(c["experiment"])} for c in cases]
    return katibcheck("mutate", batch)


def mutate_pod(
    experiment: dict[str, Any], pod: dict[str, Any] | None = None, assignments: list[dict[str, str]] | None = None
) -> dict[str, Any]:
    """The trial pod after Katib's pod mutator (metrics-collector sidecar, metrics emptyDir, the
    StdOut collector's `sh -c` wrapper). Raises KatibRefused with Katib's message when it fails."""
    case: dict[str, Any] = {"experiment": experiment, "assignments": assignments}
    if pod is not None:
        case["pod"] = pod
    (result,) = mutate_pods([case])
    if "error" in result:
        raise KatibRefused(result["error"])
    mutated: dict[str, Any] = result["pod"]
    return mutated
