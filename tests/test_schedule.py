"""The real kube-scheduler against each cluster profile's nodes (kwok): it runs as many trials at once
as `katib-nas validate` says fit, next to the release's other pods, and none where they cannot go.
The trial Jobs are Katib's own: its trial controller makes them from Trials, and its pod webhook
injects the metrics-collector sidecar."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from generator.quantity import parse_quantity
from generator.validate import validate_file

from .conftest import PROFILE_VALUES
from .controlplane import ControlPlane, fake_nodes, start_control_plane, start_scheduling
from .test_install import experiment, katib_nas, namespace

NS = "ml"


@pytest.fixture(params=PROFILE_VALUES, ids=[p.stem for p in PROFILE_VALUES])
def cluster(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ControlPlane, Path]]:
    (tmp_path / "controlplane").mkdir()
    cp = start_control_plane(tmp_path / "controlplane")
    try:
        start_scheduling(cp)
        yield cp, request.param
    finally:
        cp.stop()


def _pods(cp: ControlPlane, selector: str) -> list[Any]:
    from kubernetes import client

    return list(client.CoreV1Api(cp.api()).list_namespaced_pod(NS, label_selector=selector).items)


def _placed_or_refused(pod: Any) -> bool:
    """The scheduler has decided: the pod is bound, or it says why no node fits."""
    conditions = (pod.status.conditions if pod.status else None) or []
    return bool(pod.spec.node_name) or any(c.type == "PodScheduled" and c.reason == "Unschedulable" for c in conditions)


def _settled(cp: ControlPlane, selector: str, at_least: int, *, all_placed: bool = False) -> list[Any]:
    """Pods matching `selector` once at least `at_least` exist, the scheduler has decided on each (every
    one bound, with `all_placed`) and nothing has changed for 3 s: a pod the scheduler has not tried
    yet is not settled."""

    def decided(pod: Any) -> bool:
        return bool(pod.spec.node_name) if all_placed else _placed_or_refused(pod)

    deadline, last, since = time.monotonic() + 90, None, time.monotonic()
    while time.monotonic() < deadline:
        pods = _pods(cp, selector)
        placed = sorted((p.metadata.name, p.spec.node_name or "", decided(p)) for p in pods)
        if placed != last:
            last, since = placed, time.monotonic()
        elif len(pods) >= at_least and all(d for _, _, d in placed) and time.monotonic() - since > 3:
            return pods
        time.sleep(0.3)
    raise AssertionError(f"pods {selector} did not settle: {last}\n{cp.log('kube-scheduler')[-2000:]}")


def _trial(experiment: dict[str, Any], name: str) -> dict[str, Any]:
    """A Trial as Katib's experiment controller makes one from a suggestion (getTrialInstance):
    the trial template with its parameters filled in, and the Experiment's objective, collector and
    primary-container settings. Katib's trial controller turns it into the Job, and Katib's pod
    webhook adds the metrics-collector sidecar to the Job's pod."""
    spec = experiment["spec"]
    template = spec["trialTemplate"]
    text = json.dumps(template["trialSpec"])
    for reference in set(re.findall(r"\$\{trialParameters\.([^}]+)\}", text)):
        text = text.replace("${trialParameters." + reference + "}", name if reference == "trialName" else "1")
    run: dict[str, Any] = json.loads(text)
    run["metadata"] = {"name": name, "namespace": NS}
    labels = {"katib.kubeflow.org/experiment": experiment["metadata"]["name"]}
    trial = {"objective": spec["objective"], "runSpec": run, "metricsCollector": spec["metricsCollectorSpec"]}
    copied = ("primaryContainerName", "primaryPodLabels", "successCondition", "failureCondition")
    trial.update({k: template[k] for k in copied if k in template})
    return {
        "apiVersion": "kubeflow.org/v1beta1",
        "kind": "Trial",
        "metadata": {"name": name, "namespace": NS, "labels": labels},
        "spec": trial,
    }


def test_the_scheduler_runs_as_many_trials_as_the_generator_says(cluster: tuple[ControlPlane, Path]) -> None:
    from kubernetes import client

    cp, values = cluster
    report = validate_file(values)
    assert report.profile is not None and report.values is not None and report.trials_at_once
    nodes = fake_nodes(cp, report.profile)
    core = client.CoreV1Api(cp.api())
    core.create_namespace(namespace(NS))
    if report.profile.gpuRuntimeClassName:  # k3s registers the nvidia runtime on its GPU nodes
        client.NodeV1Api(cp.api()).create_runtime_class(
            client.V1RuntimeClass(
                metadata=client.V1ObjectMeta(name=report.profile.gpuRuntimeClassName), handler="nvidia"
            )
        )
    p = report.values.persistence
    # What the storage class would provision: a volume the model PVC binds to.
    core.create_persistent_volume(
        client.V1PersistentVolume(
            metadata=client.V1ObjectMeta(name="models"),
            spec=client.V1PersistentVolumeSpec(
                capacity={"storage": p.size},
                access_modes=[str(m) for m in p.accessModes],
                storage_class_name=p.storageClassName or report.profile.storage.storageClassName,
                host_path=client.V1HostPathVolumeSource(path="/models"),
            ),
        )
    )
    installed = katib_nas("install", str(values), "--namespace", NS, "--kubeconfig", str(cp.kubeconfig))
    assert installed.returncode == 0, installed.stderr
    others = _settled(cp, "app.kubernetes.io/component in (extract,server,batch)", at_least=3, all_placed=True)
    assert all(p.spec.node_name for p in others), [(p.metadata.name, p.status.conditions) for p in others]

    fit = report.trials_at_once
    created = experiment(cp, NS)
    custom = client.CustomObjectsApi(cp.api())
    names = [f"trial-{i}" for i in range(fit + 2)]
    for name in names:
        custom.create_namespaced_custom_object("kubeflow.org", "v1beta1", NS, "trials", _trial(created, name))
    trials = _settled(cp, f"batch.kubernetes.io/job-name in ({','.join(names)})", at_least=len(names))
    # Katib's webhook injected its collector with the requests the generator reserves for it.
    sidecars = [c for t in trials for c in t.spec.containers if c.name == "metrics-logger-and-collector"]
    assert len(sidecars) == len(trials), [[c.name for c in t.spec.containers] for t in trials]
    reserved = report.profile.metricsCollectorRequests
    assert all(
        parse_quantity(c.resources.requests["cpu"]) == parse_quantity(reserved.cpu)
        and parse_quantity(c.resources.requests["memory"]) == parse_quantity(reserved.memory)
        for c in sidecars
    ), sidecars[0].resources
    placed = [t for t in trials if t.spec.node_name]
    reasons = [c.message for t in trials for c in t.status.conditions or [] if c.reason == "Unschedulable"]
    assert len(placed) == fit, f"{len(placed)} trials placed, the generator says {fit} fit: {reasons}"
    eligible = {n for n in nodes if not n.startswith("control-plane")}
    assert {t.spec.node_name for t in placed} <= eligible
    waiting = [t for t in trials if not t.spec.node_name]
    assert len(waiting) == 2 and all(
        any(c.reason == "Unschedulable" for c in t.status.conditions or []) for t in waiting
    )
    print(
        yaml.safe_dump(
            {"profile": report.profile.name, "fit": fit, "nodes": sorted({t.spec.node_name for t in placed})}
        )
    )
