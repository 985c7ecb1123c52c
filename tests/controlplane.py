"""A real Kubernetes control plane on loopback for the install tests: etcd, kube-apiserver and
Katib's controllers and webhooks, built by ci/install-controlplane.sh. No kubelet: objects are
admitted and stored; start_scheduling adds the scheduler, controller manager and kwok nodes."""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from .conftest import ROOT, free_port, stop_process

BIN = ROOT / ".tools" / "controlplane"
# ci/install-controlplane.sh links Katib's manifests (same module version) next to the binaries.
MANIFESTS = BIN.resolve().parent / "katib-manifests"
TOKEN = "katib-nas-test-admin"


@dataclass
class ControlPlane:
    workdir: Path
    kubeconfig: Path = field(init=False)
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)
    logs: list[IO[bytes]] = field(default_factory=list)

    def api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def log(self, name: str) -> str:
        return (self.workdir / f"{name}.log").read_text(errors="replace")

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  # closed in stop()
        self.logs.append(log)
        self.procs.append(subprocess.Popen([str(BIN / name), *args], stdout=log, stderr=log, env=env))

    def stop(self) -> None:
        """Clients first, etcd last. Nothing here outlives the test, so no graceful drain:
        kube-apiserver would otherwise wait 20 s and more for its watchers."""
        for proc in reversed(self.procs):
            stop_process(proc, timeout=3)
        for log in self.logs:
            log.close()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _certificates(work: Path) -> None:
    """A CA, one serving certificate for 127.0.0.1 (apiserver and webhook) and a service-account key."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=katib-nas-test-ca",
        cwd=work,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "tls.key",
        "-out",
        "tls.csr",
        "-subj",
        "/CN=127.0.0.1",
        cwd=work,
    )
    (work / "san.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl(
        "x509",
        "-req",
        "-in",
        "tls.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "tls.crt",
        "-days",
        "2",
        "-extfile",
        "san.cnf",
        cwd=work,
    )
    _openssl("genrsa", "-out", "sa.key", "2048", cwd=work)
    _openssl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=work)


def _wait(check: Any, what: str, cp: ControlPlane, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in cp.procs):
            break
        try:
            if check():
                return
        except (httpx.TransportError, OSError):
            pass
        time.sleep(0.2)
    logs = "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')[-2000:]}" for p in cp.workdir.glob("*.log"))
    raise AssertionError(f"{what} did not come up:\n{logs}")


def start_control_plane(work: Path) -> ControlPlane:
    """Everything up, or nothing left running."""
    cp = ControlPlane(work)
    try:
        _start(cp)
    except BaseException:
        cp.stop()
        raise
    return cp


def _start(cp: ControlPlane) -> None:
    work = cp.workdir
    missing = [n for n in ("etcd", "kube-apiserver", "katib-controller") if not (BIN / n).is_file()]
    if missing:
        raise AssertionError(f"{', '.join(missing)} missing: run `bash ci/install-controlplane.sh` (make setup does)")
    _certificates(work)
    (work / "tokens.csv").write_text(f"{TOKEN},admin,admin,system:masters\n")
    etcd_port, peer_port, api_port, hook_port = free_port(), free_port(), free_port(), free_port()
    etcd = f"http://127.0.0.1:{etcd_port}"
    cp.start(
        "etcd",
        [
            "--data-dir",
            str(work / "etcd"),
            "--listen-client-urls",
            etcd,
            "--advertise-client-urls",
            etcd,
            "--listen-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-advertise-peer-urls",
            f"http://127.0.0.1:{peer_port}",
            "--initial-cluster",
            f"default=http://127.0.0.1:{peer_port}",
        ],
    )
    server = f"https://127.0.0.1:{api_port}"
    cp.start(
        "kube-apiserver",
        [
            "--etcd-servers",
            etcd,
            "--bind-address",
            "127.0.0.1",
            "--advertise-address",
            "127.0.0.1",
            "--secure-port",
            str(api_port),
            "--cert-dir",
            str(work / "apiserver"),
            "--tls-cert-file",
            str(work / "tls.crt"),
            "--tls-private-key-file",
            str(work / "tls.key"),
            "--client-ca-file",
            str(work / "ca.crt"),
            "--token-auth-file",
            str(work / "tokens.csv"),
            "--authorization-mode",
            "RBAC",
            "--service-account-key-file",
            str(work / "sa.pub"),
            "--service-account-signing-key-file",
            str(work / "sa.key"),
            "--service-account-issuer",
            server,
            "--service-cluster-ip-range",
            "10.96.0.0/16",
            "--endpoint-reconciler-type",
            "none",
        ],
    )
    headers = {"Authorization": f"Bearer {TOKEN}"}
    trust = ssl.create_default_context(cafile=str(work / "ca.crt"))

    def api_ready() -> bool:
        answer = httpx.get(f"{server}/readyz", headers=headers, verify=trust, timeout=2)
        return answer.status_code == 200

    _wait(api_ready, "kube-apiserver", cp)
    cp.kubeconfig = work / "kubeconfig"
    cp.kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "test",
                "clusters": [
                    {"name": "test", "cluster": {"server": server, "certificate-authority": str(work / "ca.crt")}}
                ],
                "users": [{"name": "admin", "user": {"token": TOKEN}}],
                "contexts": [{"name": "test", "context": {"cluster": "test", "user": "admin"}}],
            }
        )
    )
    _install_katib(cp, hook_port)


def _install_katib(cp: ControlPlane, hook_port: int) -> None:
    from kubernetes import client, utils

    api = cp.api()
    for crd in ("experiment", "trial", "suggestion"):
        for doc in yaml.safe_load_all((MANIFESTS / "components" / "crd" / f"{crd}.yaml").read_text()):
            if doc:
                utils.create_from_dict(api, doc)  # type: ignore[no-untyped-call]
    core = client.CoreV1Api(api)
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="kubeflow")))
    katib_config = (MANIFESTS / "installs" / "katib-standalone" / "katib-config.yaml").read_text()
    core.create_namespaced_config_map(
        "kubeflow",
        client.V1ConfigMap(metadata=client.V1ObjectMeta(name="katib-config"), data={"katib-config.yaml": katib_config}),
    )
    # The controller's start-up settings: loopback ports, trials as batch Jobs.
    (cp.workdir / "katib-config.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "config.kubeflow.org/v1beta1",
                "kind": "KatibConfig",
                "init": {
                    "controller": {
                        "webhookPort": hook_port,
                        "metricsAddr": f"127.0.0.1:{free_port()}",
                        "healthzAddr": f"127.0.0.1:{free_port()}",
                        "trialResources": ["Job.v1.batch"],
                    },
                },
            }
        )
    )
    env = dict(os.environ, KUBECONFIG=str(cp.kubeconfig), KATIB_CORE_NAMESPACE="kubeflow")
    # ci/katib-controller/main.go: Katib's controllers and webhooks, the webhook server on loopback.
    args = ["--katib-config", str(cp.workdir / "katib-config.yaml"), "--cert-dir", str(cp.workdir)]
    cp.start("katib-controller", [*args, "--webhook-host", "127.0.0.1"], env=env)

    def hook_listening() -> bool:  # Katib's server says it has the port: a connect alone passes on any listener
        serving = f'"msg":"Serving webhook server","host":"127.0.0.1","port":{hook_port}}}'
        if serving not in cp.log("katib-controller"):
            return False
        with socket.create_connection(("127.0.0.1", hook_port), timeout=1):
            return True

    _wait(hook_listening, "Katib's webhook server", cp)
    ca = base64.b64encode((cp.workdir / "ca.crt").read_bytes()).decode()
    admission = client.AdmissionregistrationV1Api(api)
    for doc in yaml.safe_load_all((MANIFESTS / "components" / "webhook" / "webhooks.yaml").read_text()):
        for hook in doc["webhooks"]:
            path = hook["clientConfig"]["service"]["path"]
            hook["clientConfig"] = {"url": f"https://127.0.0.1:{hook_port}{path}", "caBundle": ca}
        if doc["kind"] == "ValidatingWebhookConfiguration":
            admission.create_validating_webhook_configuration(doc)
        else:
            admission.create_mutating_webhook_configuration(doc)


# --- scheduling: kube-scheduler, kube-controller-manager and kwok's nodes ----------------------


def start_scheduling(cp: ControlPlane) -> None:
    """The scheduler places pods, the controller manager turns Jobs and Deployments into pods and
    binds PVCs, and kwok plays the kubelet of the nodes annotated kwok.x-k8s.io/node=fake: their
    pods run until deleted (tests/data/kwok-pod-stages.yaml)."""
    kc = str(cp.kubeconfig)

    def component(name: str) -> list[str]:  # what the scheduler and the controller manager share
        return [
            "--kubeconfig", kc, "--authentication-kubeconfig", kc, "--authorization-kubeconfig", kc,
            "--leader-elect=false", "--bind-address", "127.0.0.1", "--secure-port", str(free_port()),
            "--cert-dir", str(cp.workdir / name),
        ]  # fmt: skip

    cp.start("kube-scheduler", component("kube-scheduler"))
    cp.start(
        "kube-controller-manager",
        [
            *component("kube-controller-manager"),
            "--service-account-private-key-file",
            str(cp.workdir / "sa.key"),
            "--root-ca-file",
            str(cp.workdir / "ca.crt"),
            "--use-service-account-credentials=false",
        ],  # fmt: skip
    )
    cp.start(
        "kwok",
        [
            "--kubeconfig",
            kc,
            "--config",
            str(ROOT / "tests" / "data" / "kwok-pod-stages.yaml"),
            "--manage-all-nodes=false",
            "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
            "--node-ip=127.0.0.1",
            "--server-address",
            f"127.0.0.1:{free_port()}",
        ],
    )


def fake_nodes(cp: ControlPlane, profile: Any) -> list[str]:
    """One kwok node per profile node, with its labels, taints and allocatable (capacity less the
    profile's system reserve), as the generator models them."""
    from kubernetes import client

    from generator.quantity import parse_quantity

    core = client.CoreV1Api(cp.api())
    names = []
    for group in profile.nodes:
        cpu = parse_quantity(group.cpu) - parse_quantity(profile.systemReserved.cpu)
        memory = parse_quantity(group.memory) - parse_quantity(profile.systemReserved.memory)
        # Disk is not in the profiles (Katib's collector sidecar asks 500Mi of it, far below any
        # node's disk), but a node without ephemeral-storage would take no trial at all.
        allocatable = {
            "cpu": f"{round(cpu * 1000)}m",
            "memory": str(int(memory)),
            "ephemeral-storage": "100Gi",
            "pods": "110",
        }
        if group.gpus:
            allocatable[profile.gpuResourceName] = str(group.gpus * group.gpuReplicas)  # time-slices advertised
        for i in range(group.count):
            name = f"{group.name}-{i + 1}"
            names.append(name)
            core.create_node(
                client.V1Node(
                    metadata=client.V1ObjectMeta(
                        name=name,
                        labels={**group.labels, "kubernetes.io/hostname": name, "type": "kwok"},
                        annotations={"kwok.x-k8s.io/node": "fake"},
                    ),
                    spec=client.V1NodeSpec(
                        taints=[client.V1Taint(key=t.key, value=t.value or None, effect=t.effect) for t in group.taints]
                    ),
                    status=client.V1NodeStatus(capacity=allocatable, allocatable=allocatable),
                )
            )
    return names
