"""Checks of the values against a cluster profile: does each pod fit a node, how many trials can
really run at once, GPUs, shared storage and KServe."""

from __future__ import annotations

import heapq
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

from .models import ChartValues, ClusterProfile, NodeGroup, Scheduling
from .quantity import format_cpu, format_memory, parse_quantity

# (path, message, is_warning)
Finding = tuple[str, str, bool]
# Collectors for which Katib injects a sidecar into every trial pod.
SIDECAR_COLLECTORS = ("StdOut", "File", "TensorFlowEvent", "PrometheusMetric", "Custom")
# Pods placed per workload before counting stops: far above any cluster a profile describes.
PLACEMENT_LIMIT = 10_000
# Below this, a single node cannot hold Istio + Knative + KServe next to Katib.
KSERVE_MIN_CPU = Fraction(8)
KSERVE_MIN_MEMORY = Fraction(16 * 2**30)


@dataclass
class Demand:
    """What one pod asks the scheduler for."""

    cpu: Fraction = Fraction(0)
    memory: Fraction = Fraction(0)
    gpus: int = 0

    def __add__(self, other: Demand) -> Demand:
        return Demand(self.cpu + other.cpu, self.memory + other.memory, self.gpus + other.gpus)


@dataclass
class Node:
    group: NodeGroup
    index: int
    cpu: Fraction
    memory: Fraction
    gpus: int
    placed: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.group.name}-{self.index}" if self.group.count > 1 else self.group.name

    def fits(self, d: Demand) -> bool:
        return d.cpu <= self.cpu and d.memory <= self.memory and d.gpus <= self.gpus

    def take(self, d: Demand, what: str) -> None:
        self.cpu -= d.cpu
        self.memory -= d.memory
        self.gpus -= d.gpus
        self.placed.append(what)


@dataclass
class Workload:
    path: str  # values path of the component, e.g. "trial"
    label: str
    spec: Scheduling
    demand: Demand
    replicas: int = 1


def advertised_gpus(group: NodeGroup) -> int:
    """GPUs the device plugin advertises on a node: each physical GPU as gpuReplicas time-slices."""
    return group.gpus * group.gpuReplicas


def _allocatable(profile: ClusterProfile) -> list[Node]:
    nodes = []
    for group in profile.nodes:
        cpu = parse_quantity(group.cpu) - parse_quantity(profile.systemReserved.cpu)
        memory = parse_quantity(group.memory) - parse_quantity(profile.systemReserved.memory)
        for i in range(group.count):
            nodes.append(Node(group, i + 1, cpu, memory, advertised_gpus(group)))
    return nodes


def _tolerates(tolerations: list[dict[str, Any]], taint_key: str, taint_value: str, effect: str) -> bool:
    for t in tolerations:
        if t.get("effect") not in (None, "", effect):
            continue
        if t.get("operator") == "Exists" and t.get("key") in (None, "", taint_key):
            return True
        if t.get("key") == taint_key and t.get("value", "") == taint_value:
            return True
    return False


def eligible(node: Node, w: Workload) -> bool:
    """Node selector and taints, as the scheduler sees them (affinity is not modelled)."""
    labels = node.group.labels
    if any(labels.get(k) != v for k, v in w.spec.nodeSelector.items()):
        return False
    for taint in node.group.taints:
        if taint.effect in ("NoSchedule", "NoExecute") and not _tolerates(
            w.spec.tolerations, taint.key, taint.value, taint.effect
        ):
            return False
    return not (w.demand.gpus and node.group.gpus == 0)


def _demand(resources: dict[str, Any], gpu_name: str, path: str) -> tuple[Demand, list[Finding]]:
    findings: list[Finding] = []
    requests = resources.get("requests") or {}
    limits = resources.get("limits") or {}
    values: dict[str, Fraction] = {}
    for key in ("cpu", "memory"):
        # Kubernetes defaults a missing request to the limit.
        raw = requests.get(key, limits.get(key))
        if raw is None:
            continue
        try:
            values[key] = parse_quantity(raw)
        except ValueError as exc:
            findings.append((f"{path}.resources.requests.{key}", f"{exc}", False))
    gpus = 0
    if gpu_name in requests or gpu_name in limits:
        req, lim = requests.get(gpu_name, limits.get(gpu_name)), limits.get(gpu_name)
        if lim is None or str(req) != str(lim):
            findings.append(
                (
                    f"{path}.resources.limits.{gpu_name}",
                    f"GPUs must be set in limits (and requests, if given, equal to limits); "
                    f"set limits.{gpu_name}: {req}",
                    False,
                )
            )
        try:
            gpus = int(parse_quantity(lim if lim is not None else req))
        except ValueError as exc:
            findings.append((f"{path}.resources.limits.{gpu_name}", str(exc), False))
    return Demand(values.get("cpu", Fraction(0)), values.get("memory", Fraction(0)), gpus), findings


def _workloads(values: ChartValues, profile: ClusterProfile) -> tuple[list[Workload], list[Finding]]:
    findings: list[Finding] = []
    components: list[tuple[str, str, Scheduling, int, bool]] = [
        ("trial", "a trial", values.trial, 1, True),
        ("extract", "the extraction pod", values.extract, 1, values.extract.enabled),
        ("batchInference", "the batch-inference pod", values.batchInference, 1, values.batchInference.enabled),
        ("server", "a server pod", values.server, values.server.replicas, values.server.enabled),
    ]
    workloads = []
    for path, label, spec, replicas, enabled in components:
        if not enabled:
            continue
        resources = spec.resources
        missing = [
            f"{kind}.{key}"
            for kind in ("requests", "limits")
            for key in ("cpu", "memory")
            if key not in (resources.get(kind) or {})
        ]
        if missing:
            findings.append(
                (
                    f"{path}.resources",
                    f"{', '.join(missing)} unset; profile {profile.name} needs explicit requests and limits "
                    f"so the scheduler and this check know what {label} takes, add them",
                    False,
                )
            )
        demand, problems = _demand(resources, profile.gpuResourceName, path)
        findings.extend(problems)
        if path == "trial":  # what the scheduler sees: the trainer plus Katib's injected sidecar
            demand = demand + _sidecar(values, profile)
        workloads.append(Workload(path, label, spec, demand, replicas))
    return workloads, findings


def _sidecar(values: ChartValues, profile: ClusterProfile) -> Demand:
    if values.experiment.metricsCollector.kind not in SIDECAR_COLLECTORS:
        return Demand()
    return Demand(
        parse_quantity(profile.metricsCollectorRequests.cpu), parse_quantity(profile.metricsCollectorRequests.memory)
    )


def check_resources(values: ChartValues, profile: ClusterProfile) -> tuple[list[Finding], int]:
    """Every finding, and how many trials the profile runs at once next to the extraction and
    server pods (0 when none fits or trials ask for nothing)."""
    workloads, findings = _workloads(values, profile)
    trial = next(w for w in workloads if w.path == "trial")
    placed = _allocatable(profile)
    capacity = effective_parallelism(placed, workloads, trial)
    findings += _findings(values, profile, workloads, trial, capacity, placed)
    return findings, capacity


def _findings(
    values: ChartValues,
    profile: ClusterProfile,
    workloads: list[Workload],
    trial: Workload,
    capacity: int,
    placed: list[Node],
) -> list[Finding]:
    return [
        *_fit(values, profile, workloads, trial),
        *_gpu_sharing(values, profile, trial),
        *_parallelism(values, profile, trial, capacity, placed),
        *_storage(values, profile, _allocatable(profile), workloads),
        *_kserve(values, profile),
    ]


def _fit(values: ChartValues, profile: ClusterProfile, workloads: list[Workload], trial: Workload) -> Iterator[Finding]:
    nodes = _allocatable(profile)
    max_gpus = max(advertised_gpus(g) for g in profile.nodes)
    shared = any(g.gpuReplicas > 1 for g in profile.nodes if g.gpus)
    sidecar = _sidecar(values, profile)

    # GPUs
    for w in workloads:
        if w.demand.gpus and max_gpus == 0:
            yield (
                f"{w.path}.resources.limits.{profile.gpuResourceName}",
                f"{w.demand.gpus} GPU(s) requested but profile {profile.name} has no GPU nodes; remove the GPU request",
                False,
            )
        elif w.demand.gpus > max_gpus:
            how = "time-sliced GPUs advertised" if shared else "(GPUs cannot be shared)"
            yield (
                f"{w.path}.resources.limits.{profile.gpuResourceName}",
                f"{w.demand.gpus} GPUs per pod but the largest node of profile {profile.name} has {max_gpus} "
                f"{how}; request at most {max_gpus}",
                False,
            )
    if max_gpus and not trial.demand.gpus:
        yield (
            f"trial.resources.limits.{profile.gpuResourceName}",
            f"profile {profile.name} is a GPU cluster but trials request no GPU; add "
            f"limits.{profile.gpuResourceName}: 1",
            False,
        )
    if (
        trial.demand.gpus
        and profile.gpuRuntimeClassName
        and values.trial.runtimeClassName != profile.gpuRuntimeClassName
    ):
        yield (
            "trial.runtimeClassName",
            f"GPU trials on profile {profile.name} need runtimeClassName "
            f"{profile.gpuRuntimeClassName!r} or they cannot see the GPU; set it",
            False,
        )

    # Each pod must fit some node on its own (GPU excess is reported above).
    for w in workloads:
        if w.demand.gpus > max_gpus:
            continue
        candidates = [n for n in nodes if eligible(n, w)]
        if not candidates:
            yield (
                f"{w.path}.nodeSelector",
                f"no node of profile {profile.name} accepts {w.label} (node selector, "
                "taints or GPUs); fix nodeSelector or tolerations",
                False,
            )
            continue
        if not any(n.fits(w.demand) for n in candidates):
            best = max(candidates, key=lambda n: (n.cpu, n.memory))
            extra = " plus Katib's metrics-collector sidecar" if w is trial and sidecar.cpu else ""
            yield (
                f"{w.path}.resources.requests",
                f"{w.label} asks for {format_cpu(w.demand.cpu)} CPU and {format_memory(w.demand.memory)}{extra}, "
                f"but the largest node ({best.name}) has {format_cpu(best.cpu)} CPU and "
                f"{format_memory(best.memory)} allocatable after system reserve; lower the requests",
                False,
            )


def _gpu_sharing(values: ChartValues, profile: ClusterProfile, trial: Workload) -> Iterator[Finding]:
    """The trial's GPU memory budget against each GPU node group it may land on: a time-sliced card's
    memory is not divided by the device plugin, so the trials on it must keep to their share."""
    budget = values.trial.gpuMemoryMiB
    if not trial.demand.gpus:  # on a GPU profile that is an error of its own (_fit)
        if budget is not None and not any(g.gpus for g in profile.nodes):
            yield (
                "trial.gpuMemoryMiB",
                f"{budget} MiB GPU budget but profile {profile.name} has no GPUs, so it caps nothing; remove it",
                True,
            )
        return
    groups = {n.group.name: n.group for n in _allocatable(profile) if eligible(n, trial) and n.group.gpus}
    for group in groups.values():
        replicas = group.gpuReplicas
        card = int(parse_quantity(group.gpuMemory) / 2**20) if group.gpuMemory else None
        share = card // replicas if card is not None else None
        where = f"node group {group.name} of profile {profile.name}"
        sliced = f"time-sliced {replicas} ways" if replicas > 1 else "one trial per card"
        if replicas > 1 and trial.demand.gpus > 1:
            fails = group.gpuFailRequestsGreaterThanOne
            yield (
                f"trial.resources.limits.{profile.gpuResourceName}",
                f"{trial.demand.gpus} time-sliced GPUs per trial on {where}: "
                + (
                    "its device plugin sets failRequestsGreaterThanOne, so the trial pods fail to start"
                    if fails
                    else "they may be slices of one card, no faster than one, and the trainer uses one device"
                )
                + f"; request {profile.gpuResourceName}: 1",
                not fails,
            )
        if budget is None:
            if replicas > 1:
                most = f"{share}" if share is not None else "the card's memory divided by the replicas"
                yield (
                    "trial.gpuMemoryMiB",
                    f"unset while {where} shares each GPU {replicas} ways: nothing divides a card's memory between "
                    f"its trials, so one can take it all and fail the others out of memory; set it to at most {most}",
                    True,
                )
        elif share is None and replicas > 1:  # a whole card's budget is a cap the trainer can check itself
            yield (
                "trial.gpuMemoryMiB",
                f"cannot be checked: {where} does not give its GPUs' memory; set gpuMemory in the profile "
                "(`katib-nas profile detect` reads gpu-feature-discovery's nvidia.com/gpu.memory label)",
                True,
            )
        elif share is not None and budget > share:
            fix = f"set it to at most {share}" + (", or lower the device plugin's replicas" if replicas > 1 else "")
            yield (
                "trial.gpuMemoryMiB",
                f"{budget} MiB per trial but {where} has {card} MiB GPUs, {sliced}: {share} MiB each; {fix}",
                False,
            )


def effective_parallelism(nodes: list[Node], workloads: list[Workload], trial: Workload) -> int:
    """First-fit placement: the extraction, server and batch pods first (they are created at install and
    live as long as the search: the batch pod waits in its init container, holding its requests), then
    as many trials as the rest of each node holds."""
    for w in workloads:
        if w.path == "trial":
            continue
        # Each replica goes to the node with the fewest GPUs, then the most CPU left (the first in node
        # order on a tie). Nodes only fill up: a node that cannot hold a replica cannot hold the next,
        # and once a replica fits nowhere, none after it does. The cap bounds the work for a huge
        # replica count (a values file may ask for 10**9), the heap for a large cluster.
        heap = [(n.gpus, -n.cpu, i) for i, n in enumerate(nodes) if eligible(n, w)]
        heapq.heapify(heap)
        for r in range(min(w.replicas, PLACEMENT_LIMIT)):
            while heap and not nodes[heap[0][2]].fits(w.demand):
                heapq.heappop(heap)
            if not heap:
                break
            node = nodes[heap[0][2]]
            node.take(w.demand, f"{w.path}-{r}")
            heapq.heapreplace(heap, (node.gpus, -node.cpu, heap[0][2]))
    count = 0
    for node in nodes:
        if not eligible(node, trial):
            continue
        d = trial.demand
        while node.fits(d) and (d.cpu or d.memory or d.gpus):
            node.take(d, "trial")
            count += 1
            if count > PLACEMENT_LIMIT:
                return count
    return count


def _parallelism(
    values: ChartValues, profile: ClusterProfile, trial: Workload, capacity: int, placed: list[Node]
) -> Iterator[Finding]:
    """`placed`: the nodes after effective_parallelism put the long-running pods and trials on them."""
    d = trial.demand
    if not (d.cpu or d.memory or d.gpus):
        return
    wanted = values.experiment.parallelTrialCount
    if capacity == 0:
        if any(n.fits(d) for n in _allocatable(profile) if eligible(n, trial)):
            yield (
                "experiment.parallelTrialCount",
                f"no trial fits next to the extraction and server pods on profile {profile.name}; lower the "
                "trial or server requests",
                False,
            )
    elif wanted > capacity:
        used = sorted({n.name for n in placed if "trial" in n.placed})
        yield (
            "experiment.parallelTrialCount",
            f"{wanted} trials requested at once but profile {profile.name} runs only {capacity} "
            f"(on {node_names(used)}); the others wait Pending, set parallelTrialCount to {capacity}",
            True,
        )


def node_names(names: list[str], most: int = 5) -> str:
    """Node names for a message: the first few, then how many more, so a large cluster keeps it short."""
    shown = ", ".join(names[:most])
    return shown if len(names) <= most else f"{shown} and {len(names) - most} more"


def _storage(
    values: ChartValues, profile: ClusterProfile, nodes: list[Node], workloads: list[Workload]
) -> Iterator[Finding]:
    modes = values.persistence.accessModes
    for mode in modes:
        if mode not in profile.storage.accessModes:
            yield (
                "persistence.accessModes",
                f"{mode} is not offered by the storage of profile {profile.name} "
                f"({', '.join(profile.storage.accessModes)}); use one of those",
                False,
            )
    if "ReadWriteMany" in modes:
        return
    mounting = {n.name for w in workloads for n in nodes if eligible(n, w) and n.fits(w.demand)}
    es = values.experiment.earlyStopping
    if es.enabled and es.algorithmName != "medianstop" and (len(mounting) > 1 or modes == ["ReadWriteOncePod"]):
        where = (
            f"{len(mounting)} nodes" if len(mounting) > 1 else "pods that cannot all mount a ReadWriteOncePod volume"
        )
        yield (
            "experiment.earlyStopping.algorithmName",
            f"{es.algorithmName} has each trial read the other trials' curves from the model PVC, but trials run on "
            f"{where} of profile {profile.name} and {'/'.join(modes)} does not let them share it; use "
            "persistence.accessModes=[ReadWriteMany] with an RWX storage class, or algorithmName=medianstop",
            False,
        )
    if len(mounting) > 1:
        yield (
            "persistence.accessModes",
            f"trials and the other pods can land on {len(mounting)} nodes of profile {profile.name} "
            f"({node_names(sorted(mounting))}) but {'/'.join(modes)} lets only one node mount the model PVC, so "
            "pods elsewhere stay Pending; use [ReadWriteMany] with an RWX storage class, or pin every pod to "
            "one node with nodeSelector",
            False,
        )


def _kserve(values: ChartValues, profile: ClusterProfile) -> Iterator[Finding]:
    if not (values.server.enabled and values.server.mode == "kserve"):
        return
    if not profile.kserve.supported:
        reason = f": {profile.kserve.reason}" if profile.kserve.reason else ""
        yield ("server.mode", f"kserve cannot run on profile {profile.name}{reason}", False)
        return
    if len(profile.nodes) == 1 and profile.nodes[0].count == 1:
        node = profile.nodes[0]
        if parse_quantity(node.cpu) < KSERVE_MIN_CPU or parse_quantity(node.memory) < KSERVE_MIN_MEMORY:
            yield (
                "server.mode",
                f"kserve on a single node of {node.cpu} CPU / {node.memory}: its Istio, Knative "
                "and KServe pods do not become Ready on one small node; use server.mode=fastapi",
                False,
            )
