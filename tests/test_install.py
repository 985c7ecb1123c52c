"""Install the chart into a real control plane with Katib's own webhooks, through the generator's
install path (pyhelm3 and the pinned helm CLI): install, upgrade, rollback and uninstall."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import PROFILE_VALUES, ROOT, tool, tool_env
from .controlplane import ControlPlane, start_control_plane


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield cp
    finally:
        cp.stop()


def katib_nas(*args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "generator", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=120)


def helm(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [tool("helm"), *args, "--kubeconfig", str(cp.kubeconfig)]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=120)


def experiment(cp: ControlPlane, namespace: str) -> dict[str, Any]:
    from kubernetes import client

    found: dict[str, Any] = client.CustomObjectsApi(cp.api()).get_namespaced_custom_object(
        "kubeflow.org", "v1beta1", namespace, "experiments", "nas-katib-nas"
    )
    return found


@pytest.mark.parametrize("values", PROFILE_VALUES, ids=[p.stem for p in PROFILE_VALUES])
def test_install_upgrade_rollback_uninstall(control_plane: ControlPlane, values: Path, tmp_path: Path) -> None:
    from kubernetes import client

    namespace = f"ml-{values.stem}"
    client.CoreV1Api(control_plane.api()).create_namespace(
        {"metadata": {"name": namespace, "labels": {"katib.kubeflow.org/metrics-collector-injection": "enabled"}}}
    )
    kube = ["--namespace", namespace, "--kubeconfig", str(control_plane.kubeconfig)]
    installed = katib_nas("install", str(values), *kube)
    assert installed.returncode == 0, installed.stderr
    assert "release nas revision 1: ReleaseRevisionStatus.DEPLOYED" in installed.stdout
    created = experiment(control_plane, namespace)
    max_trials = created["spec"]["maxTrialCount"]

    # Katib lets a running Experiment change its trial counts.
    data = yaml.safe_load(values.read_text())
    data["profile"] = str(ROOT / "values" / data["profile"]) if data["profile"].endswith(".yaml") else data["profile"]
    data["experiment"] = {**data.get("experiment", {}), "maxTrialCount": max_trials + 4}
    bigger = tmp_path / values.name
    bigger.write_text(yaml.safe_dump(data))
    upgraded = katib_nas("install", str(bigger), *kube)
    assert upgraded.returncode == 0, upgraded.stderr
    assert "revision 2" in upgraded.stdout
    assert experiment(control_plane, namespace)["spec"]["maxTrialCount"] == max_trials + 4

    rolled = helm(control_plane, "rollback", "nas", "1", "--namespace", namespace)
    assert rolled.returncode == 0, rolled.stderr
    assert experiment(control_plane, namespace)["spec"]["maxTrialCount"] == max_trials

    # No --wait: without kube-controller-manager nothing lifts the PVC's protection finalizer.
    removed = helm(control_plane, "uninstall", "nas", "--namespace", namespace)
    assert removed.returncode == 0, removed.stderr
    assert helm(control_plane, "status", "nas", "--namespace", namespace).returncode != 0
    deadline = time.monotonic() + 30  # Katib's controller removes its finalizer, then the object goes
    while True:
        try:
            experiment(control_plane, namespace)
        except client.ApiException as exc:
            assert exc.status == 404
            break
        assert time.monotonic() < deadline, control_plane.log("katib-controller")[-3000:]
        time.sleep(0.2)
