"""The release's life on the test control plane (real kube-apiserver and Katib's webhooks, the pinned
helm): the model PVC outlives `helm uninstall` and is adopted again; `helm upgrade` with other batch
and extraction values and a new appVersion succeeds; a non-editable install of the package installs."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import CHART, ROOT, tool, tool_env
from .controlplane import ControlPlane, start_control_plane

INJECTION = {"katib.kubeflow.org/metrics-collector-injection": "enabled"}
VALUES = ROOT / "values" / "microk8s.yaml"
CLAIM = "nas-katib-nas-models"


@pytest.fixture(scope="module")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane]:
    cp = start_control_plane(tmp_path_factory.mktemp("controlplane"))
    try:
        yield cp
    finally:
        cp.stop()


def make_namespace(cp: ControlPlane, name: str) -> None:
    from kubernetes import client

    meta = client.V1ObjectMeta(name=name, labels=INJECTION)  # Katib's webhook admits Experiments only here
    client.CoreV1Api(cp.api()).create_namespace(client.V1Namespace(metadata=meta))


def helm(cp: ControlPlane, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [tool("helm"), *args, "--kubeconfig", str(cp.kubeconfig)]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), timeout=120)


def as_dict(obj: Any) -> dict[str, Any]:
    """A kubernetes-client object as the API's JSON (camelCase keys), for plain indexing."""
    from kubernetes import client

    out: dict[str, Any] = client.ApiClient().sanitize_for_serialization(obj)  # type: ignore[no-untyped-call]
    return out


def manifest(cp: ControlPlane, ns: str) -> list[dict[str, Any]]:
    out = helm(cp, "get", "manifest", "nas", "--namespace", ns)
    assert out.returncode == 0, out.stderr
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def test_the_model_pvc_outlives_the_release(control_plane: ControlPlane) -> None:
    from kubernetes import client

    core = client.CoreV1Api(control_plane.api())
    make_namespace(control_plane, "keep")
    installed = helm(control_plane, "install", "nas", str(CHART), "-f", str(VALUES), "-n", "keep")
    assert installed.returncode == 0, installed.stderr
    assert f"kubectl -n keep delete pvc {CLAIM}" in installed.stdout  # NOTES say how to delete the models
    first = as_dict(core.read_namespaced_persistent_volume_claim(CLAIM, "keep"))["metadata"]

    removed = helm(control_plane, "uninstall", "nas", "--namespace", "keep")
    assert removed.returncode == 0, removed.stderr
    assert f"These resources were kept due to the resource policy:\n[PersistentVolumeClaim] {CLAIM}" in removed.stdout
    kept = as_dict(core.read_namespaced_persistent_volume_claim(CLAIM, "keep"))["metadata"]
    assert kept["uid"] == first["uid"] and "deletionTimestamp" not in kept

    # The same release name adopts the claim the last one left (its helm ownership annotations match)...
    again = helm(control_plane, "install", "nas", str(CHART), "-f", str(VALUES), "-n", "keep")
    assert again.returncode == 0, again.stderr
    assert as_dict(core.read_namespaced_persistent_volume_claim(CLAIM, "keep"))["metadata"]["uid"] == first["uid"]
    # ...and another release reuses it through persistence.existingClaim, creating no claim of its own.
    reuse = ["-f", str(VALUES), "--set", f"persistence.existingClaim={CLAIM}", "--set", "experiment.name=second"]
    other = helm(control_plane, "install", "other", str(CHART), *reuse, "-n", "keep")
    assert other.returncode == 0, other.stderr
    docs = [d for d in yaml.safe_load_all(helm(control_plane, "get", "manifest", "other", "-n", "keep").stdout) if d]
    assert not [d for d in docs if d["kind"] == "PersistentVolumeClaim"]
    claims = {
        v["persistentVolumeClaim"]["claimName"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for v in d["spec"]["template"]["spec"]["volumes"]
        if "persistentVolumeClaim" in v
    }
    assert claims == {CLAIM}
    assert f"The models live on your claim {CLAIM}; this release never deletes it." in other.stdout
    assert helm(control_plane, "uninstall", "other", "--namespace", "keep").returncode == 0
    assert "deletionTimestamp" not in as_dict(core.read_namespaced_persistent_volume_claim(CLAIM, "keep"))["metadata"]


def test_upgrade_with_new_batch_and_extract_values_and_app_version(control_plane: ControlPlane, tmp_path: Path) -> None:
    from kubernetes import client

    apps, batch = client.AppsV1Api(control_plane.api()), client.BatchV1Api(control_plane.api())
    make_namespace(control_plane, "upgrade")
    installed = helm(control_plane, "install", "nas", str(CHART), "-f", str(VALUES), "-n", "upgrade")
    assert installed.returncode == 0, installed.stderr
    (job_before,) = as_dict(batch.list_namespaced_job("upgrade"))["items"]

    # The next release of the chart: a new appVersion (so new image tags) and other batch/extract values.
    chart = tmp_path / "katib-nas"
    shutil.copytree(CHART, chart)
    meta = yaml.safe_load((chart / "Chart.yaml").read_text())
    meta["appVersion"] = "0.2.0"
    (chart / "Chart.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    # The running search keeps its trainer (Katib refuses any other trial template change), so the
    # trial image stays pinned to the version it started with; everything else moves to 0.2.0.
    changed = [
        "--set", "trial.image.tag=0.1.0",
        "--set", "batchInference.batchSize=64",
        "--set", "batchInference.resources.requests.cpu=300m",
        "--set", "extract.resources.requests.cpu=100m",
        "--set", "extract.nodeSelector.disk=ssd",
    ]  # fmt: skip
    upgraded = helm(control_plane, "upgrade", "nas", str(chart), "-f", str(VALUES), *changed, "-n", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr

    (job_after,) = as_dict(batch.list_namespaced_job("upgrade"))["items"]
    # A new Job for the new spec; helm deleted the old one.
    assert job_after["metadata"]["name"] != job_before["metadata"]["name"]
    (batch_pod,) = job_after["spec"]["template"]["spec"]["containers"]
    assert batch_pod["image"] == "ghcr.io/katib-nas/server:0.2.0" and "--batch-size=64" in batch_pod["command"]
    selector = "app.kubernetes.io/component=extract"
    (extract,) = as_dict(apps.list_namespaced_deployment("upgrade", label_selector=selector))["items"]
    assert extract["spec"]["template"]["spec"]["containers"][0]["image"] == "ghcr.io/katib-nas/server:0.2.0"
    assert extract["spec"]["template"]["spec"]["nodeSelector"] == {"disk": "ssd"}

    # Upgrading again with the same values changes nothing: the Job (and a finished result) stays.
    same = helm(control_plane, "upgrade", "nas", str(chart), "-f", str(VALUES), *changed, "-n", "upgrade")
    assert same.returncode == 0, same.stderr
    jobs = as_dict(batch.list_namespaced_job("upgrade"))["items"]
    assert [j["metadata"]["uid"] for j in jobs] == [job_after["metadata"]["uid"]]


def test_a_non_editable_install_installs(control_plane: ControlPlane, tmp_path: Path) -> None:
    """The wheel from `make package` in a fresh virtual environment (see test_package.py), driving the
    pinned helm against the control plane with the chart from its own package data."""
    from .test_package import installed_venv

    venv = installed_venv(tmp_path)
    values = tmp_path / "microk8s.yaml"
    values.write_text(VALUES.read_text())
    env = {k: v for k, v in tool_env().items() if k != "PYTHONPATH"}
    cmd = [str(venv / "bin" / "katib-nas"), "install", str(values), "--namespace", "wheel"]
    proc = subprocess.run([*cmd, "--kubeconfig", str(control_plane.kubeconfig)], capture_output=True, text=True,
                          env=env, cwd=tmp_path, timeout=180)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "release nas revision 1: ReleaseRevisionStatus.DEPLOYED" in proc.stdout
    kinds = {d["kind"] for d in manifest(control_plane, "wheel")}
    assert {"Experiment", "PersistentVolumeClaim", "Deployment", "Job"} <= kinds
