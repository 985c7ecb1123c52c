"""`katib-nas profile detect`: a cluster profile written from a live cluster's nodes."""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import yaml

from .chart_files import kubernetes_too_old
from .device_plugin import GPU_RESOURCE, SHARED_RESOURCE, Sharing, node_gpus, plugin_configs
from .errors import ClusterError, ProfileError
from .kube import api_client, cluster_error
from .models import ClusterProfile, KServeSupport, NodeGroup, Reserve, StorageProfile, Taint
from .quantity import parse_quantity
from .suggestion_services import service_of_image

KATIB_CONFIG_MAP = "katib-config"
# Labels that say what a node is; the rest (hostnames, instance ids) would split identical nodes.
KEPT_LABELS = (
    "node-role.kubernetes.io/control-plane",
    "node-role.kubernetes.io/master",
    "nvidia.com/gpu.present",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "node.kubernetes.io/instance-type",
)
# Provisioners known to offer ReadWriteMany.
RWX_PROVISIONERS = ("nfs", "cephfs", "longhorn", "efs", "azurefile", "filestore", "glusterfs")


def _get(obj: Any, *names: str) -> Any:
    for name in names:
        obj = getattr(obj, name, None) if obj is not None else None
    return obj


def profile_from_cluster(
    name: str,
    nodes: list[Any],
    storage_classes: list[Any],
    api_groups: list[str],
    kubernetes_version: str,
    suggestion_services: dict[str, str] | None = None,
    plugin_sharing: dict[str, Sharing] | None = None,
) -> ClusterProfile:
    """Build a profile from the kubernetes client's V1Node and V1StorageClass objects, and the NVIDIA
    device plugin's config files (device_plugin.plugin_configs).

    Nodes with the same shape (capacity, GPUs and their sharing, kept labels, taints) become one group.
    The system reserve is what each node's capacity holds back from allocatable, the kubelet's own figure.
    """
    if not nodes:
        raise ProfileError("the cluster has no nodes; check the kubeconfig context")
    too_old = kubernetes_too_old(kubernetes_version)
    if too_old:
        raise ClusterError(f"the cluster runs Kubernetes {kubernetes_version}, {too_old}")
    groups: OrderedDict[tuple[Any, ...], dict[str, Any]] = OrderedDict()
    reserve_cpu, reserve_mem = "0", "0"
    renamed = False  # the device plugin advertises time-slices as SHARED_RESOURCE
    for node in nodes:
        capacity = _get(node, "status", "capacity") or {}
        allocatable = _get(node, "status", "allocatable") or {}
        labels = _get(node, "metadata", "labels") or {}
        taints = [
            Taint(key=t.key, value=t.value or "", effect=t.effect)
            for t in (_get(node, "spec", "taints") or [])
            if t.effect in ("NoSchedule", "PreferNoSchedule", "NoExecute")
        ]
        kept = {k: v for k, v in sorted(labels.items()) if k in KEPT_LABELS}
        gpu = node_gpus(labels, capacity, plugin_sharing or {})
        renamed = renamed or gpu.sharing.renamed
        key = (
            capacity.get("cpu"),
            capacity.get("memory"),
            gpu,
            tuple(kept.items()),
            tuple((t.key, t.value, t.effect) for t in taints),
        )
        if key in groups:
            groups[key]["count"] += 1
            continue
        role = "control-plane" if any("control-plane" in k or "master" in k for k in kept) else "worker"
        groups[key] = {
            "name": f"{role}-{len(groups) + 1}",
            "count": 1,
            "cpu": str(capacity.get("cpu", "0")),
            "memory": str(capacity.get("memory", "0")),
            "gpus": gpu.gpus,
            "gpuMemory": f"{gpu.memory_mib}Mi" if gpu.memory_mib else None,
            "gpuReplicas": gpu.sharing.replicas,
            "gpuFailRequestsGreaterThanOne": gpu.sharing.fail_requests_greater_than_one,
            "labels": kept,
            "taints": taints,
        }
        reserve_cpu = _difference(capacity.get("cpu", "0"), allocatable.get("cpu", "0"), reserve_cpu, milli=True)
        reserve_mem = _difference(capacity.get("memory", "0"), allocatable.get("memory", "0"), reserve_mem)
    modes = ["ReadWriteOnce"]
    default_class = None
    for sc in storage_classes:
        annotations = _get(sc, "metadata", "annotations") or {}
        if annotations.get("storageclass.kubernetes.io/is-default-class") == "true":
            default_class = _get(sc, "metadata", "name")
        if any(p in str(getattr(sc, "provisioner", "")).lower() for p in RWX_PROVISIONERS):
            modes.append("ReadWriteMany")
    kserve = "serving.kserve.io" in api_groups
    return ClusterProfile(
        name=name,
        description="Detected by `katib-nas profile detect`; review the reserve and storage before use.",
        kubernetesVersion=kubernetes_version,
        nodes=[NodeGroup(**g) for g in groups.values()],
        gpuResourceName=SHARED_RESOURCE if renamed else GPU_RESOURCE,
        systemReserved=Reserve(cpu=reserve_cpu, memory=reserve_mem),
        gpuRuntimeClassName="nvidia" if any(g["gpus"] for g in groups.values()) else None,
        storage=StorageProfile(accessModes=sorted(set(modes)), storageClassName=default_class),  # type: ignore[arg-type]
        kserve=KServeSupport(supported=kserve, reason="" if kserve else "KServe is not installed in this cluster"),
        suggestionServices=suggestion_services,
    )


def suggestion_services(katib_config: str) -> dict[str, str] | None:
    """algorithm -> suggestion service from the text of katib-config.yaml (runtime.suggestions, each
    service named by its image, as Katib's own images are: suggestion-<service>)."""
    try:
        config = yaml.safe_load(katib_config)
        entries = config["runtime"]["suggestions"]
        return {str(e["algorithmName"]): service_of_image(str(e["image"])) for e in entries}
    except (yaml.YAMLError, KeyError, TypeError):
        return None


def _katib_config(core: Any) -> str | None:
    """The katib-config ConfigMap's katib-config.yaml, wherever Katib is installed (None without it)."""
    found = core.list_config_map_for_all_namespaces(field_selector=f"metadata.name={KATIB_CONFIG_MAP}").items
    for config_map in found:
        text = (config_map.data or {}).get("katib-config.yaml")
        if text:
            return str(text)
    return None


def _difference(capacity: str, allocatable: str, current: str, milli: bool = False) -> str:
    """The largest capacity - allocatable seen so far, as a quantity string."""
    diff = parse_quantity(capacity) - parse_quantity(allocatable)
    if diff <= parse_quantity(current):
        return current
    if milli:
        return f"{int(diff * 1000)}m"
    return f"{int(diff / 2**20)}Mi"


def detect(name: str, kubeconfig: str | None = None, context: str | None = None) -> ClusterProfile:
    """Read nodes, storage classes and API groups through the kubernetes client."""
    from kubernetes import client

    api = api_client(kubeconfig, context)
    try:
        nodes = client.CoreV1Api(api).list_node().items
        classes = client.StorageV1Api(api).list_storage_class().items
        groups = [g.name for g in client.ApisApi(api).get_api_versions().groups]
        version = client.VersionApi(api).get_code()
        katib_config = _katib_config(client.CoreV1Api(api))
        sharing = plugin_configs(client.CoreV1Api(api).list_config_map_for_all_namespaces().items)
    except Exception as exc:
        raise cluster_error(exc) from None
    services = suggestion_services(katib_config) if katib_config else None
    version_text = f"{version.major}.{version.minor.rstrip('+')}"
    return profile_from_cluster(
        name, nodes, classes, groups, version_text, suggestion_services=services, plugin_sharing=sharing
    )
