"""`katib-nas profile detect` turns the kubernetes client's Node and StorageClass objects into a profile."""

from __future__ import annotations

from pathlib import Path

import yaml
from kubernetes import client

from generator.detect import profile_from_cluster
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
