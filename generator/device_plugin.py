"""How the NVIDIA device plugin shares a node's GPUs, as `katib-nas profile detect` reads it: the plugin's
time-slicing config and gpu-feature-discovery's node labels.

Names, from NVIDIA/k8s-device-plugin:
- The config file (api/config/v1): `version: v1`, then `sharing.timeSlicing` (ReplicatedResources) with
  `renameByDefault`, `failRequestsGreaterThanOne` and `resources[]` of `{name: nvidia.com/gpu, replicas: N}`.
  Its Helm chart (`config.name`) and the GPU Operator's ClusterPolicy (`devicePlugin.config.name`) keep
  such files in one ConfigMap, one per key; a node picks a key with the label `nvidia.com/device-plugin.config`,
  else the plugin uses its default (the only key, when there is one).
- renameByDefault advertises the slices as `<name>.shared` (ResourceName.DefaultSharedRename), so
  `nvidia.com/gpu.shared`, which pods must then request.
- gpu-feature-discovery labels (internal/lm/resource.go, always under `nvidia.com/gpu.`): `count` (physical
  GPUs), `memory` (each GPU's memory; NVML's total / 2**20, so MiB although the docs say MB) and `replicas`
  (time-slicing replicas per GPU; 1 unshared, 0 when the labeller has no sharing config).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import yaml

GPU_RESOURCE = "nvidia.com/gpu"
SHARED_RESOURCE = GPU_RESOURCE + ".shared"
CONFIG_LABEL = "nvidia.com/device-plugin.config"
COUNT_LABEL = "nvidia.com/gpu.count"
MEMORY_LABEL = "nvidia.com/gpu.memory"
REPLICAS_LABEL = "nvidia.com/gpu.replicas"


@dataclass(frozen=True)
class Sharing:
    """One node's GPUs as the device plugin advertises them."""

    replicas: int = 1
    renamed: bool = False
    fail_requests_greater_than_one: bool = False


@dataclass(frozen=True)
class NodeGpus:
    """A node's physical GPUs, their memory (MiB, when known) and how they are shared."""

    gpus: int
    memory_mib: int | None
    sharing: Sharing


def parse_config(text: str) -> Sharing | None:
    """The time-slicing of nvidia.com/gpu in one device-plugin config file; None when the text is not one."""
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return None
    if not isinstance(config, dict) or config.get("version") != "v1":
        return None
    sharing = config.get("sharing")
    sliced = sharing.get("timeSlicing") if isinstance(sharing, dict) else None
    if not isinstance(sliced, dict):
        return Sharing() if "flags" in config or "sharing" in config else None
    for resource in sliced.get("resources") or []:
        replicas = resource.get("replicas") if isinstance(resource, dict) else None
        if resource.get("name") == GPU_RESOURCE and isinstance(replicas, int) and replicas >= 1:
            shared = replicas > 1
            return Sharing(
                replicas=replicas,
                renamed=shared and sliced.get("renameByDefault") is True,
                fail_requests_greater_than_one=shared and sliced.get("failRequestsGreaterThanOne") is True,
            )
    return Sharing()


def plugin_configs(config_maps: Iterable[Any]) -> dict[str, Sharing]:
    """key -> sharing for every device-plugin config file in the cluster's ConfigMaps (kubernetes client
    V1ConfigMap objects). Other ConfigMaps' keys are left out."""
    found: dict[str, Sharing] = {}
    for config_map in config_maps:
        for key, text in (getattr(config_map, "data", None) or {}).items():
            parsed = parse_config(text) if isinstance(text, str) and "version" in text else None
            if parsed is not None:
                found[key] = parsed
    return found


def node_gpus(labels: Mapping[str, str], capacity: Mapping[str, Any], configs: Mapping[str, Sharing]) -> NodeGpus:
    """A node's GPUs: gpu-feature-discovery's labels where the node has them, else the plugin config the
    node selects (or the only one) and the advertised count divided by its replicas."""
    config = configs.get(labels.get(CONFIG_LABEL, ""))
    if config is None and len(set(configs.values())) == 1:
        config = next(iter(configs.values()))
    config = config or Sharing()
    replicas = _label_int(labels, REPLICAS_LABEL) or config.replicas
    shared, plain = _int(capacity.get(SHARED_RESOURCE)), _int(capacity.get(GPU_RESOURCE))
    advertised = shared or plain
    if not advertised:  # no device plugin advertises GPUs here (whatever the labels say)
        return NodeGpus(0, None, Sharing())
    gpus = _label_int(labels, COUNT_LABEL) or max(1, advertised // replicas)
    sliced = replicas > 1
    sharing = Sharing(
        replicas,
        renamed=bool(shared) or (sliced and config.renamed and not plain),
        fail_requests_greater_than_one=sliced and config.fail_requests_greater_than_one,
    )
    return NodeGpus(gpus, _label_int(labels, MEMORY_LABEL), sharing)


def _int(value: Any) -> int:
    try:
        return int(str(value))
    except ValueError:
        return 0


def _label_int(labels: Mapping[str, str], key: str) -> int | None:
    value = _int(labels.get(key, ""))
    return value if value > 0 else None
