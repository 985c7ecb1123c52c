"""The real-node tier: a one-node cluster that runs containers (tests/realnode.py), Katib v0.19.0's
standalone install from its own manifests, and the project's images. Needs root; built by
ci/install-controlplane.sh, ci/install-node.sh and ci/images/build.sh (marker `realnode`; part of
`make test`, and `make test-node` runs it alone)."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from katib_nas_contract.best import Best, complete_record, publish
from katib_nas_contract.flags import TRAINERS
from katib_nas_contract.record import IMAGE

from .conftest import ROOT, tool, tool_env
from .realnode import HELPER_IMAGE, Node, diagnostics, host_state, install_katib, real_node

pytestmark = [
    pytest.mark.realnode,
    pytest.mark.skipif(os.geteuid() != 0, reason="the real-node tier runs a kubelet: needs root"),
]
RESTRICTED = {
    "pod-security.kubernetes.io/enforce": "restricted",
    "pod-security.kubernetes.io/enforce-version": "latest",
}
BASELINE = {"pod-security.kubernetes.io/enforce": "baseline"}
TIMINGS: dict[str, float] = {}


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Node]:
    """One node for the module. Its teardown must leave the host as it found it, or the run fails."""
    request.config.pluginmanager.register(TimingReport(), "realnode-timings")
    before = host_state()
    workdir = tmp_path_factory.mktemp("node")
    with real_node(workdir) as started:
        yield started
    TIMINGS.update(started.timings)
    after = host_state()
    changed = {key: (before[key], after[key]) for key in before if before[key] != after[key]}
    assert not changed, "teardown left the host changed:\n" + "\n".join(
        f"{key}: before {json.dumps(b)[:1500]}\n{' ' * len(key)}  after  {json.dumps(a)[:1500]}"
        for key, (b, a) in changed.items()
    )


class TimingReport:
    """Prints the tier's timing table after the run (cluster start, Experiments, teardown)."""

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        terminalreporter.write_sep("-", "real-node tier timings")
        for what, seconds in TIMINGS.items():
            terminalreporter.write_line(f"{what:<34} {seconds:7.1f} s")


def wait_pod(node: Node, namespace: str, name: str, phase: str, seconds: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    pod: dict[str, Any] = {}
    while time.monotonic() < deadline:
        pod = json.loads(node.kubectl("-n", namespace, "get", "pod", name, "-o", "json", check=False) or "{}")
        if pod.get("status", {}).get("phase") in (phase, "Failed" if phase != "Failed" else ""):
            break
        time.sleep(0.5)
    return pod


def test_restricted_pod_runs_and_reaches_the_api_through_its_service(node: Node, tmp_path: Path) -> None:
    """A pod the restricted Pod Security Standard admits (non-root, read-only root, no
    capabilities) runs on the node, writes to its emptyDir, resolves the kubernetes Service
    through CoreDNS and connects to the API server through kube-proxy; its log comes back."""
    namespace = "realnode-smoke"
    node.kubectl("create", "namespace", namespace)
    node.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in RESTRICTED.items()))
    # busybox's nslookup asks the pod's nameserver (CoreDNS); nc connects through kube-proxy's rules.
    script = (
        "echo written >/scratch/file && cat /scratch/file && id -u && "
        "nslookup kubernetes.default.svc.cluster.local | grep -q 198.19.0.1 && echo dns-ok && "
        "echo | nc -w 3 $KUBERNETES_SERVICE_HOST 443 >/dev/null && echo api-reachable"
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "smoke"},
        "spec": {
            "restartPolicy": "Never",
            "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
            "containers": [
                {
                    "name": "smoke",
                    "image": HELPER_IMAGE,
                    "command": ["sh", "-c", script],
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
                }
            ],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
    }
    started = time.monotonic()
    node.kubectl("-n", namespace, "apply", "-f", "-", input=yaml.safe_dump(pod))
    status = wait_pod(node, namespace, "smoke", "Succeeded")
    TIMINGS["one pod, create to Succeeded"] = time.monotonic() - started
    logs = node.kubectl("-n", namespace, "logs", "smoke")
    assert status.get("status", {}).get("phase") == "Succeeded", diagnostics(node, [namespace])
    assert logs.split() == ["written", "1000", "dns-ok", "api-reachable"], logs


# --- Katib and the project's release ---------------------------------------------------------------

NAMESPACE = "e2e"
RELEASE = "nas"
EXPERIMENT = "nas-katib-nas"
VALUES = ROOT / "ci" / "realnode-values.yaml"
INJECTION = {"katib.kubeflow.org/metrics-collector-injection": "enabled"}
# The trainers' images as ci/images/build.sh tags them: the chart's default repository and its appVersion.
TRAINER_IMAGES = {name: f"{trainer.repository}:0.1.0" for name, trainer in TRAINERS.items()}


@pytest.fixture(scope="module")
def katib(node: Node) -> Node:
    try:
        install_katib(node)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{diagnostics(node, ['kubeflow'])}") from None
    TIMINGS["Katib ready"] = node.timings["Katib ready"]
    return node


def katib_nas(node: Node, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "generator", *args, "--kubeconfig", str(node.kubeconfig)]
    return subprocess.run(cmd, capture_output=True, text=True, env=tool_env(), cwd=ROOT, timeout=300)


def restricted_namespace(node: Node, name: str) -> None:
    labels = {**RESTRICTED, **INJECTION}
    node.kubectl("create", "namespace", name)
    node.kubectl("label", "namespace", name, *(f"{k}={v}" for k, v in labels.items()))


def custom(node: Node, plural: str, namespace: str, name: str | None = None) -> Any:
    found = node.kubectl("-n", namespace, "get", f"{plural}.kubeflow.org", *([name] if name else []), "-o", "json")
    return json.loads(found)


def condition(obj: dict[str, Any], kind: str) -> bool:
    return any(c["type"] == kind and c["status"] == "True" for c in obj.get("status", {}).get("conditions", []))


def katib_logs(node: Node, namespace: str) -> str:
    """Pod events and logs of the release's namespace and Katib's: controller, suggestion and
    early-stopping services, the trials' metrics collectors."""
    return diagnostics(node, [namespace, "kubeflow"])


def wait_experiment(node: Node, namespace: str, name: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        exp = custom(node, "experiments", namespace, name)
        if condition(exp, "Succeeded") or condition(exp, "Failed"):
            return exp  # type: ignore[no-any-return]
        time.sleep(5)
    raise AssertionError(f"Experiment {name} did not finish in {seconds:.0f} s:\n{katib_logs(node, namespace)}")


def volume_dir(node: Node, namespace: str, claim: str) -> Path:
    """The directory behind a claim on this node (the local-path provisioner's naming)."""
    volume = json.loads(node.kubectl("-n", namespace, "get", "pvc", claim, "-o", "json"))["spec"]["volumeName"]
    found = list((node.run / "volumes").glob(f"{volume}_{namespace}_{claim}"))
    assert found, f"no directory for {volume} under {node.run / 'volumes'}"
    return found[0]


def observation_rows(node: Node, trial: str) -> int:
    """Rows Katib's db-manager wrote for a trial, read from its database."""
    pod = node.kubectl(
        "-n", "kubeflow", "get", "pod", "-l", "katib.kubeflow.org/component=mysql", "-o", "name"
    ).split()[0]
    query = f"SELECT COUNT(*) FROM observation_logs WHERE trial_name='{trial}'"
    out = node.kubectl("-n", "kubeflow", "exec", pod, "--", "bash", "-c",
                       f'mysql -N -u root -p"$MYSQL_ROOT_PASSWORD" katib -e "{query}"')  # fmt: skip
    return int(out.strip())


def service_url(node: Node, namespace: str, service: str) -> str:
    svc = json.loads(node.kubectl("-n", namespace, "get", "service", service, "-o", "json"))
    return f"http://{svc['spec']['clusterIP']}:{svc['spec']['ports'][0]['port']}"


def test_search_serves_and_keeps_the_best_model(katib: Node) -> None:
    """`katib-nas install` of the microk8s-shaped values into a restricted namespace: Katib runs the
    trials and records their metrics, the median rule stops a weak trial, the extraction promotes
    the best model, the server answers through its Service, the batch Job writes predictions, an
    upgrade continues the search, and uninstall leaves the models."""
    node = katib
    restricted_namespace(node, NAMESPACE)
    started = time.monotonic()
    installed = katib_nas(node, "install", str(VALUES), "--namespace", NAMESPACE, "--release", RELEASE)
    assert installed.returncode == 0, installed.stderr
    exp = wait_experiment(node, NAMESPACE, EXPERIMENT, 900)
    TIMINGS["Experiment (6 trials)"] = time.monotonic() - started
    context = katib_logs(node, NAMESPACE)
    assert condition(exp, "Succeeded"), context
    trials = custom(node, "trials", NAMESPACE)["items"]
    succeeded = [t for t in trials if condition(t, "Succeeded")]
    assert len(succeeded) >= 2, context
    for trial in succeeded:
        metrics = {m["name"]: m for m in trial["status"]["observation"]["metrics"]}
        assert "accuracy" in metrics, trial["status"]
        assert observation_rows(node, trial["metadata"]["name"]) > 0
    best = exp["status"]["currentOptimalTrial"]
    assert best["bestTrialName"] in {t["metadata"]["name"] for t in succeeded}

    # The median rule (issue 12): a trial stopped by it shows as EarlyStopped. The values fix the
    # grid's order so that a point at lr 1e-5 (near chance accuracy) comes after two complete peers.
    def lr(trial: dict[str, Any]) -> str:
        return str(next(a["value"] for a in trial["spec"]["parameterAssignments"] if a["name"] == "lr"))

    stopped = [t for t in trials if condition(t, "EarlyStopped")]
    assert any(lr(t) == "0.00001" for t in stopped), [(lr(t), t["status"].get("conditions", [])[-1:]) for t in trials]

    # Extraction: best.json on the claim names the best trial.
    models = volume_dir(node, NAMESPACE, f"{EXPERIMENT}-models") / EXPERIMENT
    deadline = time.monotonic() + 180
    while not (models / "best.json").exists() and time.monotonic() < deadline:
        time.sleep(2)
    assert (models / "best.json").exists(), katib_logs(node, NAMESPACE)
    pointer = json.loads((models / "best.json").read_text())
    assert best["bestTrialName"] in json.dumps(pointer), pointer

    # The extraction pod, under its own ServiceAccount (the one Role that may get pods), read each
    # trial's pod and wrote the image digest the kubelet ran beside the record (Jobs are kept while
    # early stopping is on, so no pod is gone).
    def images_recorded() -> bool:
        return all((models / t["metadata"]["name"] / IMAGE).exists() for t in succeeded)

    try:
        node.wait(images_recorded, "image.json beside every succeeded trial's record", 120)
    except AssertionError as error:  # the extraction pod's log says why (a 403: no Role for pods)
        raise AssertionError(f"{error}\n{katib_logs(node, NAMESPACE)}") from None
    for trial in succeeded:
        image = json.loads((models / trial["metadata"]["name"] / IMAGE).read_text())
        assert image["image"].endswith(TRAINER_IMAGES["keras"]) and "note" not in image, image
        assert image["digest"].startswith("sha256:") and len(image["digest"]) == 71, image

    # The server through its Service (kube-proxy's rules on this host), Open Inference Protocol v2.
    node.kubectl("-n", NAMESPACE, "rollout", "status", f"deployment/{EXPERIMENT}-server", "--timeout=300s", timeout=330)
    url = service_url(node, NAMESPACE, f"{EXPERIMENT}-server")
    meta = httpx.get(f"{url}/v2/models/digits", timeout=10).json()
    tensor = meta["inputs"][0]
    shape = [1, *tensor["shape"][1:]]
    body = {"inputs": [{"name": tensor["name"], "shape": shape, "datatype": "FP32", "data": [0.0] * math.prod(shape)}]}
    answer = httpx.post(f"{url}/v2/models/digits/infer", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"], answer.text

    # The server follows the pointer through the PVC. With the extraction scaled to zero, point
    # best.json at a weaker complete trial, as a promotion would: the server swaps to it. Then the
    # extraction comes back and restores Katib's optimum (a better model appears): it swaps again.
    def serves(trial: str) -> bool:
        served: object = httpx.get(f"{url}/v2/models/digits", timeout=10).json().get("trial")
        return served == trial

    extraction = ["-n", NAMESPACE, "scale", f"deployment/{EXPERIMENT}-extract"]
    node.kubectl(*extraction, "--replicas=0")
    extract_pods = ["-n", NAMESPACE, "get", "pods", "-l", "app.kubernetes.io/component=extract", "-o", "name"]
    node.wait(lambda: not node.kubectl(*extract_pods).strip(), "the extraction pod to be gone", 120)
    weaker = next(t["metadata"]["name"] for t in succeeded if t["metadata"]["name"] != best["bestTrialName"])
    weaker_metrics = complete_record(models, weaker)
    assert weaker_metrics is not None, list((models / weaker).iterdir())
    publish(models, Best(weaker, "accuracy", float(weaker_metrics["accuracy"]), "records"))
    node.wait(lambda: serves(weaker), f"the server to serve {weaker} after best.json moved", 120)
    node.kubectl(*extraction, "--replicas=1")
    node.wait(lambda: serves(best["bestTrialName"]), "the server to serve Katib's optimum again", 180)

    # The batch Job waits for the final model, then writes its predictions next to the trials.
    job = node.kubectl("-n", NAMESPACE, "get", "jobs", "-l", "app.kubernetes.io/component=batch", "-o", "name")
    node.kubectl("-n", NAMESPACE, "wait", "--for=condition=Complete", "--timeout=300s", job.split()[0], timeout=330)
    predictions = list(models.rglob("predictions.csv"))
    assert predictions and len(predictions[0].read_text().splitlines()) > 1, list(models.rglob("*"))

    # helm upgrade raising maxTrialCount continues the same Experiment.
    raised = yaml.safe_load(VALUES.read_text())
    raised["experiment"]["maxTrialCount"] = 8
    upgraded_values = node.workdir / "raised-values.yaml"
    upgraded_values.write_text(yaml.safe_dump(raised))
    started = time.monotonic()
    upgraded = katib_nas(node, "install", str(upgraded_values), "--namespace", NAMESPACE, "--release", RELEASE)
    assert upgraded.returncode == 0, upgraded.stderr
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        exp = custom(node, "experiments", NAMESPACE, EXPERIMENT)
        done = exp["status"].get("trialsSucceeded", 0) + exp["status"].get("trialsEarlyStopped", 0)
        if condition(exp, "Succeeded") and len(custom(node, "trials", NAMESPACE)["items"]) == 8:
            break
        time.sleep(5)
    TIMINGS["upgrade to 8 trials"] = time.monotonic() - started
    assert len(custom(node, "trials", NAMESPACE)["items"]) == 8, (done, katib_logs(node, NAMESPACE))

    # helm uninstall keeps the claim and the models on it.
    uninstall = [tool("helm"), "uninstall", RELEASE, "-n", NAMESPACE, "--kubeconfig", str(node.kubeconfig), "--wait"]
    helm = subprocess.run(uninstall, capture_output=True, text=True, env=tool_env(), timeout=150)
    assert helm.returncode == 0, helm.stderr
    assert node.kubectl("-n", NAMESPACE, "get", "pvc", f"{EXPERIMENT}-models", "-o", "name").strip()
    assert (models / "best.json").exists()


@pytest.mark.parametrize(
    ("release", "algorithm", "early_stopping", "labels", "framework"),
    [
        # tpe through Katib's hyperopt service, in a restricted namespace, on the PyTorch trainer's
        # image (images/trainer/Dockerfile, the chart's default framework).
        ("tpe", "tpe", None, {**RESTRICTED, **INJECTION}, "pytorch"),
        # Katib's own medianstop service. Katib v0.19.0 has no securityContext setting for its
        # early-stopping container, so its suggestion pod cannot run under the restricted standard:
        # this namespace enforces baseline.
        ("medianstop", "random", "medianstop", {**BASELINE, **INJECTION}, "keras"),
    ],
)
def test_katib_algorithms(
    katib: Node, release: str, algorithm: str, early_stopping: str | None, labels: dict[str, str], framework: str
) -> None:
    """Cheaper cases: the Experiment runs to the end with the named Katib service and trainer;
    medianstop sets early-stopping rules on the trials it sees after its minimum."""
    node = katib
    namespace = f"e2e-{release}"
    node.kubectl("create", "namespace", namespace)
    node.kubectl("label", "namespace", namespace, *(f"{k}={v}" for k, v in labels.items()))
    values = yaml.safe_load(VALUES.read_text())
    values["experiment"].update(maxTrialCount=4, parallelTrialCount=2)
    values["experiment"]["algorithm"] = {"algorithmName": algorithm}
    values["trial"]["framework"] = framework
    # hyperopt takes a resumed search's trials as its own: the chart's default FromVolume applies.
    values["experiment"].pop("resumePolicy")
    if early_stopping:
        values["experiment"]["earlyStopping"] = {
            "enabled": True,
            "algorithmName": early_stopping,
            "algorithmSettings": [{"name": "min_trials_required", "value": "2"}, {"name": "start_step", "value": "2"}],
        }
    else:
        values["experiment"]["earlyStopping"] = {"enabled": False}
    for part in ("extract", "batchInference", "server"):
        values[part] = {"enabled": False}
    path = node.workdir / f"{release}-values.yaml"
    path.write_text(yaml.safe_dump(values))
    started = time.monotonic()
    installed = katib_nas(node, "install", str(path), "--namespace", namespace, "--release", release)
    assert installed.returncode == 0, installed.stderr
    name = f"{release}-katib-nas"
    # Katib removes the suggestion Deployment when the Experiment ends: read it while it runs.
    deadline, found = time.monotonic() + 180, ""
    while not found and time.monotonic() < deadline:
        found = node.kubectl("-n", namespace, "get", "deployment", f"{name}-{algorithm}", "-o", "json", check=False)
        time.sleep(1)
    assert found, katib_logs(node, namespace)
    images = {c["name"]: c["image"] for c in json.loads(found)["spec"]["template"]["spec"]["containers"]}
    exp = wait_experiment(node, namespace, name, 600)
    TIMINGS[f"Experiment {release} (4 trials)"] = time.monotonic() - started
    assert condition(exp, "Succeeded"), katib_logs(node, namespace)
    assert images["suggestion"] == "ghcr.io/kubeflow/katib/suggestion-hyperopt:v0.19.0", images
    trials = custom(node, "trials", namespace)["items"]
    assert sum(condition(t, "Succeeded") or condition(t, "EarlyStopped") for t in trials) == 4, katib_logs(
        node, namespace
    )
    for trial in trials:
        containers = trial["spec"]["runSpec"]["spec"]["template"]["spec"]["containers"]
        assert {c["name"]: c["image"] for c in containers}["trainer"] == TRAINER_IMAGES[framework], containers
        if condition(trial, "Succeeded"):
            assert "accuracy" in {m["name"] for m in trial["status"]["observation"]["metrics"]}, trial["status"]
    if early_stopping:
        assert images["early-stopping"] == "ghcr.io/kubeflow/katib/earlystopping-medianstop:v0.19.0", images
        ruled = [t["metadata"]["name"] for t in trials if t["spec"].get("earlyStoppingRules")]
        assert ruled, "Katib's medianstop set no early-stopping rule on any trial"
    else:
        # The chart's default resumePolicy, FromVolume, on a real suggestion pod: Katib deleted the
        # suggestion Deployment when the Experiment succeeded; raising maxTrialCount makes it start a
        # new one on the kept PVC, which takes the four trials as its own and suggests a fifth.
        assert exp["spec"]["resumePolicy"] == "FromVolume", exp["spec"]
        values["experiment"]["maxTrialCount"] = 5
        path.write_text(yaml.safe_dump(values))
        started = time.monotonic()
        resumed = katib_nas(node, "install", str(path), "--namespace", namespace, "--release", release)
        assert resumed.returncode == 0, resumed.stderr
        deadline, done, status = time.monotonic() + 600, 0, {}
        while time.monotonic() < deadline:
            status = custom(node, "experiments", namespace, name).get("status", {})
            done = status.get("trialsSucceeded", 0) + status.get("trialsEarlyStopped", 0)
            if done == 5:
                break
            time.sleep(5)
        assert done == 5, (status, katib_logs(node, namespace))
        TIMINGS[f"{release} resumed (FromVolume, +1)"] = time.monotonic() - started
