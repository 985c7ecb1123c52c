"""The README's cluster prerequisites that a live cluster can show, checked by `katib-nas profile
detect`: one warning line per missing piece, with its fix.

- Katib itself (its Experiment CRD).
- Cluster DNS (CoreDNS, `k8s-app=kube-dns` in kube-system): trial pods reach Katib's DB manager
  and the suggestion service by Service name. MicroK8s: the `dns` addon.
- Storage for the model PVC and Katib's FromVolume suggestion PVC: MicroK8s's `hostpath-storage`
  addon (provisioner microk8s.io/hostpath); elsewhere a default StorageClass.
- GPU workers (k3s): the NVIDIA device plugin DaemonSet that advertises `nvidia.com/gpu`, the node
  label values/k3s-gpu.yaml's `trial.nodeSelector` selects, the `nvidia` RuntimeClass
  (`trial.runtimeClassName`), and on several worker nodes a ReadWriteMany storage class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .detect import RWX_PROVISIONERS, _get
from .device_plugin import GPU_RESOURCE, SHARED_RESOURCE

KATIB_INSTALL = (
    'kubectl apply -k "github.com/kubeflow/katib.git/manifests/v1beta1/installs/katib-standalone?ref=v0.19.0"'
)
GPU_LABEL = ("nvidia.com/gpu.present", "true")  # values/k3s-gpu.yaml trial.nodeSelector
GPU_RUNTIME_CLASS = "nvidia"  # values/k3s-gpu.yaml trial.runtimeClassName
MICROK8S_LABEL = "microk8s.io/cluster"
MICROK8S_HOSTPATH = "microk8s.io/hostpath"
DEFAULT_CLASS = "storageclass.kubernetes.io/is-default-class"


@dataclass
class ClusterState:
    """What the checks read, as the kubernetes client returns it."""

    nodes: list[Any]
    storage_classes: list[Any]
    api_groups: list[str]
    dns_deployments: list[str] = field(default_factory=list)  # kube-system Deployments labelled k8s-app=kube-dns
    daemonsets: list[str] = field(default_factory=list)  # every DaemonSet, as namespace/name
    runtime_classes: list[str] = field(default_factory=list)


def _labels(node: Any) -> dict[str, str]:
    return dict(getattr(node.metadata, "labels", None) or {})


def _gpus(node: Any) -> int:
    """GPUs the device plugin advertises, under either name (SHARED_RESOURCE: renamed time-slices)."""
    capacity = getattr(node.status, "capacity", None) or {}
    return sum(int(capacity.get(name, "0")) for name in (GPU_RESOURCE, SHARED_RESOURCE))


def _flavour(nodes: list[Any]) -> str:
    if any(MICROK8S_LABEL in _labels(n) for n in nodes):
        return "microk8s"
    info = [getattr(getattr(n.status, "node_info", None), "kubelet_version", "") or "" for n in nodes]
    return "k3s" if any("+k3s" in v for v in info) else "kubernetes"


def _workers(nodes: list[Any]) -> list[Any]:
    def control_plane(n: Any) -> bool:
        return any(
            k.startswith(("node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"))
            for k in _labels(n)
        )

    return [n for n in nodes if not control_plane(n)]


def missing(state: ClusterState) -> list[str]:
    """One line per prerequisite the cluster lacks: `prerequisite: what is missing; fix`."""
    flavour = _flavour(state.nodes)
    lines = []
    if "kubeflow.org" not in state.api_groups:
        lines.append(f"katib: Katib is not installed (no kubeflow.org API); install it: {KATIB_INSTALL}")
    if not state.dns_deployments:
        fix = {"microk8s": "run `microk8s enable dns`", "k3s": "start k3s without `--disable coredns`"}
        lines.append(
            "dns: no CoreDNS (k8s-app=kube-dns) in kube-system, and trial pods reach Katib's services by name; "
            + fix.get(flavour, "install CoreDNS")
        )
    classes = state.storage_classes
    if flavour == "microk8s":
        if not any(getattr(c, "provisioner", "") == MICROK8S_HOSTPATH for c in classes):
            lines.append(
                "hostpath-storage: no StorageClass with provisioner microk8s.io/hostpath for the model PVC and "
                "Katib's suggestion PVC; run `microk8s enable hostpath-storage`"
            )
    elif not any((getattr(c.metadata, "annotations", None) or {}).get(DEFAULT_CLASS) == "true" for c in classes):
        lines.append(
            "storage: no default StorageClass, which Katib's suggestion PVC (resumePolicy FromVolume) needs; mark "
            f"one default with `kubectl annotate storageclass NAME {DEFAULT_CLASS}=true`"
        )
    lines += _gpu_lines(state)
    return lines


def _gpu_lines(state: ClusterState) -> list[str]:
    """GPU prerequisites, where the cluster shows GPU nodes: a GPU count, the GPU label or the
    nvidia RuntimeClass."""
    key, value = GPU_LABEL
    counted = [n for n in state.nodes if _gpus(n)]
    labelled = [n for n in state.nodes if _labels(n).get(key) == value]
    if not (counted or labelled or GPU_RUNTIME_CLASS in state.runtime_classes):
        return []
    lines = []
    if not any("nvidia-device-plugin" in d for d in state.daemonsets):
        lines.append(
            "nvidia-device-plugin: no NVIDIA device plugin DaemonSet, so no node advertises nvidia.com/gpu to "
            "the scheduler; install it: `helm install nvdp nvdp/nvidia-device-plugin --namespace nvidia-device-plugin "
            "--create-namespace --set runtimeClassName=nvidia` (repo https://nvidia.github.io/k8s-device-plugin)"
        )
    for node in counted:
        if _labels(node).get(key) != value:
            name = node.metadata.name
            lines.append(
                f"gpu-label: GPU node {name} lacks the label {key}={value} that GPU trials select "
                f"(trial.nodeSelector); run `kubectl label node {name} {key}={value}`"
            )
    if GPU_RUNTIME_CLASS not in state.runtime_classes:
        lines.append(
            f"runtimeclass: no RuntimeClass {GPU_RUNTIME_CLASS}, which GPU trials run with (trial.runtimeClassName); "
            f"create one with handler {GPU_RUNTIME_CLASS} (k3s registers that containerd runtime when the NVIDIA "
            "container toolkit is installed)"
        )
    workers = _workers(state.nodes)
    rwx = any(p in str(getattr(c, "provisioner", "")).lower() for c in state.storage_classes for p in RWX_PROVISIONERS)
    if len(workers) > 1 and not rwx:
        lines.append(
            f"rwx-storage: no ReadWriteMany StorageClass, and trials on the {len(workers)} worker nodes share the "
            "model PVC; install an RWX provisioner such as nfs-subdir-external-provisioner (class nfs-client) "
            "and set persistence.storageClassName"
        )
    return lines


def read_state(api: Any) -> ClusterState:
    """Read what the checks need through the kubernetes client (errors are the caller's)."""
    from kubernetes import client

    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    dns = apps.list_namespaced_deployment("kube-system", label_selector="k8s-app=kube-dns").items
    sets = apps.list_daemon_set_for_all_namespaces().items
    return ClusterState(
        nodes=core.list_node().items,
        storage_classes=client.StorageV1Api(api).list_storage_class().items,
        api_groups=[g.name for g in client.ApisApi(api).get_api_versions().groups],
        dns_deployments=[_name(d) for d in dns],
        daemonsets=[f"{_get(d, 'metadata', 'namespace')}/{_name(d)}" for d in sets],
        runtime_classes=[_name(r) for r in client.NodeV1Api(api).list_runtime_class().items],
    )


def _name(obj: Any) -> str:
    return str(_get(obj, "metadata", "name") or "")


def check(kubeconfig: str | None = None, context: str | None = None) -> list[str]:
    from .kube import api_client, cluster_error

    api = api_client(kubeconfig, context)
    try:
        state = read_state(api)
    except Exception as exc:
        raise cluster_error(exc) from None
    return missing(state)
