"""`katib-nas profile detect` turns the kubernetes client's Node and StorageClass objects into a profile,
and names each README prerequisite a live cluster lacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from generator.detect import profile_from_cluster
from generator.errors import ClusterError
from generator.profiles import dump_profile
from generator.validate import validate_file

from .conftest import ROOT


def node(name: str, cpu: str, memory: str, gpus: int = 0, control_plane: bool = False) -> client.V1Node:
    labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux"}
    taints = None
    if control_plane:
        labels["node-role.kubernetes.io/control-plane"] = "true"
        taints = [client.V1Taint(key="node-role.kubernetes.io/control-plane", effect="NoSchedule")]
    if gpus:
        labels["nvidia.com/gpu.present"] = "true"
    capacity = {"cpu": cpu, "memory": memory, "pods": "110"}
    allocatable = {"cpu": f"{int(cpu) * 1000 - 500}m", "memory": "7Gi" if memory == "8Gi" else "31Gi", "pods": "110"}
    if gpus:
        capacity["nvidia.com/gpu"] = allocatable["nvidia.com/gpu"] = str(gpus)
    return client.V1Node(
        metadata=client.V1ObjectMeta(name=name, labels=labels),
        spec=client.V1NodeSpec(taints=taints),
        status=client.V1NodeStatus(capacity=capacity, allocatable=allocatable),
    )


def k3s_cluster() -> tuple[list[client.V1Node], list[client.V1StorageClass]]:
    nodes = [node(f"cp-{i}", "4", "8Gi", control_plane=True) for i in range(3)]
    nodes += [node(f"gpu-{i}", "16", "32Gi", gpus=1) for i in range(2)]
    classes = [
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(
                name="local-path", annotations={"storageclass.kubernetes.io/is-default-class": "true"}
            ),
            provisioner="rancher.io/local-path",
        ),
        client.V1StorageClass(
            metadata=client.V1ObjectMeta(name="nfs-client"), provisioner="cluster.local/nfs-subdir-external-provisioner"
        ),
    ]
    return nodes, classes


def test_identical_nodes_become_one_group_with_the_kubelet_reserve() -> None:
    nodes, classes = k3s_cluster()
    profile = profile_from_cluster("lab", nodes, classes, ["kubeflow.org", "apps"], "1.31")
    assert [(g.name, g.count, g.cpu, g.memory, g.gpus) for g in profile.nodes] == [
        ("control-plane-1", 3, "4", "8Gi", 0),
        ("worker-2", 2, "16", "32Gi", 1),
    ]
    assert profile.nodes[0].taints[0].key == "node-role.kubernetes.io/control-plane"
    assert profile.systemReserved.cpu == "500m" and profile.systemReserved.memory == "1024Mi"
    assert profile.storage.accessModes == ["ReadWriteMany", "ReadWriteOnce"]
    assert profile.storage.storageClassName == "local-path"
    assert profile.gpuRuntimeClassName == "nvidia"
    assert not profile.kserve.supported


def test_a_cluster_older_than_the_chart_supports_is_refused_by_name() -> None:
    nodes, classes = k3s_cluster()
    with pytest.raises(ClusterError) as refused:
        profile_from_cluster("lab", nodes, classes, [], "1.28")
    assert refused.value.message == (
        "the cluster runs Kubernetes 1.28, older than Kubernetes 1.29, the oldest the chart installs on (Chart.yaml "
        "kubeVersion); upgrade the cluster to 1.29 or newer, or run the search on this machine with "
        "`katib-nas run --local`"
    )
    assert profile_from_cluster("lab", nodes, classes, [], "1.29").kubernetesVersion == "1.29"


def test_a_detected_profile_checks_a_values_file(tmp_path: Path) -> None:
    nodes, classes = k3s_cluster()
    (tmp_path / "lab.yaml").write_text(dump_profile(profile_from_cluster("lab", nodes, classes, [], "1.31")))
    values = yaml.safe_load((ROOT / "values" / "k3s-gpu.yaml").read_text())
    values["profile"] = "lab.yaml"
    path = tmp_path / "values.yaml"
    path.write_text(yaml.safe_dump(values))
    report = validate_file(path)
    assert report.problems == []
    assert report.profile is not None and report.profile.name == "lab"


# --- prerequisites, on the test control plane ----------------------------------------------------


def _create(cp: Any, objects: list[Any]) -> None:
    from kubernetes import utils

    for obj in objects:
        utils.create_from_dict(cp.api(), obj)  # type: ignore[no-untyped-call]


def _node(name: str, labels: dict[str, str], gpus: int = 0, kubelet: str = "v1.31.4") -> dict[str, Any]:
    capacity = {"cpu": "16", "memory": "32Gi", "pods": "110", **({"nvidia.com/gpu": str(gpus)} if gpus else {})}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/os": "linux", **labels}},
        "status": {"capacity": capacity, "allocatable": capacity, "nodeInfo": _node_info(kubelet)},
    }


def _node_info(kubelet: str) -> dict[str, str]:
    keys = ("machineID", "systemUUID", "bootID", "kernelVersion", "osImage", "containerRuntimeVersion")
    return {**dict.fromkeys(keys, "x"), "kubeProxyVersion": kubelet, "kubeletVersion": kubelet,
            "operatingSystem": "linux", "architecture": "amd64"}  # fmt: skip


def _storage_class(name: str, provisioner: str, default: bool = False) -> dict[str, Any]:
    annotations = {"storageclass.kubernetes.io/is-default-class": "true"} if default else {}
    meta = {"name": name, "annotations": annotations}
    return {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass", "metadata": meta, "provisioner": provisioner}


def _workload(kind: str, name: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    pod = {"metadata": {"labels": labels}, "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause"}]}}
    spec: dict[str, Any] = {"selector": {"matchLabels": labels}, "template": pod}
    meta = {"name": name, "namespace": namespace, "labels": labels}
    return {"apiVersion": "apps/v1", "kind": kind, "metadata": meta, "spec": spec}


def _detect(cp: Any) -> list[str]:
    from .test_install import katib_nas

    proc = katib_nas("profile", "detect", "--kubeconfig", str(cp.kubeconfig))
    assert proc.returncode == 0, proc.stderr
    return [line.split(":", 2)[1].strip() for line in proc.stderr.splitlines() if line.startswith("warning: ")]


@pytest.fixture
def bare_cluster(tmp_path: Path) -> Any:
    from .controlplane import start_control_plane

    cp = start_control_plane(tmp_path)  # Katib's CRDs installed, nothing else
    try:
        yield cp
    finally:
        cp.stop()


DNS = _workload("Deployment", "coredns", "kube-system", {"k8s-app": "kube-dns"})


def test_detect_names_each_missing_microk8s_addon(bare_cluster: Any) -> None:
    cp = bare_cluster
    _create(cp, [_node("laptop", {"microk8s.io/cluster": "true"}, kubelet="v1.31.4")])
    assert _detect(cp) == ["dns", "hostpath-storage"]
    _create(cp, [DNS, _storage_class("microk8s-hostpath", "microk8s.io/hostpath", default=True)])
    assert _detect(cp) == []


def test_detect_names_each_missing_piece_of_a_k3s_gpu_cluster(bare_cluster: Any) -> None:
    cp = bare_cluster
    k3s = "v1.31.4+k3s1"
    nodes = [_node("server-1", {"node-role.kubernetes.io/control-plane": "true"}, kubelet=k3s)]
    nodes += [_node(f"gpu-{i}", {}, gpus=1, kubelet=k3s) for i in (1, 2)]
    local_path = _storage_class("local-path", "rancher.io/local-path", default=True)
    _create(cp, [*nodes, DNS, local_path])
    assert _detect(cp) == ["nvidia-device-plugin", "gpu-label", "gpu-label", "runtimeclass", "rwx-storage"]
    plugin = _workload("DaemonSet", "nvidia-device-plugin-daemonset", "kube-system", {"name": "nvdp"})
    runtime = {
        "apiVersion": "node.k8s.io/v1",
        "kind": "RuntimeClass",
        "metadata": {"name": "nvidia"},
        "handler": "nvidia",
    }
    nfs = _storage_class("nfs-client", "cluster.local/nfs-subdir-external-provisioner")
    _create(cp, [plugin, runtime, nfs])
    assert _detect(cp) == ["gpu-label", "gpu-label"]
    from kubernetes import client

    core = client.CoreV1Api(cp.api())
    for name in ("gpu-1", "gpu-2"):
        core.patch_node(name, {"metadata": {"labels": {"nvidia.com/gpu.present": "true"}}})
    assert _detect(cp) == []


def test_detect_reads_which_service_serves_each_algorithm_from_katib_config(bare_cluster: Any, tmp_path: Path) -> None:
    """The profile carries the cluster's katib-config mapping, and validate judges the settings by it:
    Optuna's n_startup_trials is refused where hyperopt serves tpe (Katib's default) and accepted
    where this cluster's katib-config serves tpe with Katib's optuna image."""
    from kubernetes import client

    from .test_install import katib_nas

    cp = bare_cluster
    _create(cp, [_node("laptop", {"microk8s.io/cluster": "true"})])
    core = client.CoreV1Api(cp.api())
    stored: Any = core.read_namespaced_config_map("katib-config", "kubeflow")
    config = yaml.safe_load(stored.data["katib-config.yaml"])
    for entry in config["runtime"]["suggestions"]:
        if entry["algorithmName"] == "tpe":
            entry["image"] = "ghcr.io/kubeflow/katib/suggestion-optuna:v0.19.0"
    patched = {"data": {"katib-config.yaml": yaml.safe_dump(config)}}
    values = yaml.safe_load((ROOT / "values" / "microk8s.yaml").read_text())
    values["experiment"]["algorithm"] = {
        "algorithmName": "tpe",
        "algorithmSettings": [{"name": "n_startup_trials", "value": "6"}],
    }
    verdicts: list[tuple[str, list[str]]] = []
    for katib_config in (None, patched):
        if katib_config is not None:
            core.patch_namespaced_config_map("katib-config", "kubeflow", katib_config)
        profile = tmp_path / f"lab-{len(verdicts)}.yaml"
        proc = katib_nas("profile", "detect", "--kubeconfig", str(cp.kubeconfig), "-o", str(profile))
        assert proc.returncode == 0, proc.stderr
        detected = yaml.safe_load(profile.read_text())["suggestionServices"]
        assert detected["cmaes"] == "goptuna" and detected["bayesianoptimization"] == "skopt"
        values["profile"] = profile.name
        values_file = tmp_path / "values.yaml"
        values_file.write_text(yaml.safe_dump(values))
        report = validate_file(values_file)
        verdicts.append((detected["tpe"], [p.message for p in report.errors if p.path.startswith("experiment.algo")]))
    assert verdicts[0][0] == "hyperopt" and "has no setting 'n_startup_trials'" in verdicts[0][1][0]
    assert verdicts[1] == ("optuna", [])


def test_detect_reads_the_device_plugins_time_slicing_from_the_cluster(bare_cluster: Any, tmp_path: Path) -> None:
    """The plugin's config in a ConfigMap (as the GPU Operator's ClusterPolicy names it) and nodes that
    advertise each GPU 4 times: the detected profile has one GPU per worker, sliced 4 ways (what validate
    makes of that: test_gpu_sharing)."""
    from .test_install import katib_nas

    cp = bare_cluster
    config = "version: v1\nsharing:\n  timeSlicing:\n    resources: [{name: nvidia.com/gpu, replicas: 4}]\n"
    plugin = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "time-slicing-config", "namespace": "default"},
        "data": {"any": config},
    }
    gfd = {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.memory": "8192"}
    nodes = [_node(f"gpu-{i}", gfd, gpus=4) for i in (1, 2)]
    _create(cp, [*nodes, plugin])
    profile = tmp_path / "lab.yaml"
    proc = katib_nas("profile", "detect", "--kubeconfig", str(cp.kubeconfig), "-o", str(profile))
    assert proc.returncode == 0, proc.stderr
    (group,) = yaml.safe_load(profile.read_text())["nodes"]
    assert (group["count"], group["gpus"], group["gpuReplicas"], group["gpuMemory"]) == (2, 1, 4, "8192Mi")
