"""A real one-node Kubernetes cluster for the real-node tier (tests/test_realnode.py), started as
root from pytest: etcd, kube-apiserver, kube-controller-manager and kube-scheduler (built by
ci/install-controlplane.sh), containerd and runc (Debian), the kubelet and kube-proxy
(ci/install-node.sh), CoreDNS and rancher's local-path provisioner as host processes, and the
images of ci/images/build.sh imported into containerd.

Network: the node's address is the gateway of its own bridge, 198.18.0.1; pods get 198.18.0.0/24
and Services 198.19.0.0/24 (the benchmarking block 198.18.0.0/15, never a private range). Pods
have a route to 198.18.0.0/15 only, the bridge does not masquerade, and CoreDNS forwards nothing,
so no traffic leaves the machine. Teardown restores what the node changed on the host (sysctls,
iptables/nft rules, the bridge, network namespaces, mounts, cgroups, processes) and `host_state`
lets the test check that it did."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import signal
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx
import yaml

from .conftest import ROOT, free_port, stop_process

CONTROL_PLANE = ROOT / ".tools" / "controlplane"
NODE_CACHE = ROOT / ".tools" / "node"
NODE_BIN = NODE_CACHE / "bin"
IMAGES = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "katib-nas" / "images"
# Images survive between runs in containerd's content store (like the binaries, a cache); each
# run has its own state directory, so no container, mount or socket outlives it.
CONTAINERD_ROOT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "katib-nas" / "containerd"
KATIB_MANIFESTS = NODE_CACHE / "katib-source" / "manifests" / "v1beta1"

NODE_NAME = "katib-nas-node"
BRIDGE = "knas0"
NODE_IP = "198.18.0.1"
POD_CIDR = "198.18.0.0/24"
SERVICE_CIDR = "198.19.0.0/24"
KUBERNETES_SERVICE_IP = "198.19.0.1"
ROUTED = "198.18.0.0/15"
API_PORT = 6443
STORAGE_CLASS = "microk8s-hostpath"  # the microk8s profile's class
PAUSE_IMAGE = "registry.k8s.io/pause:3.10"  # ci/images/build.sh builds it from Kubernetes' pause.c
HELPER_IMAGE = "katib-nas.local/busybox:1.35"
CGROUP_ROOT = "/katib-nas"
ADMIN_TOKEN = "katib-nas-node-admin"
PROXY_TOKEN = "katib-nas-node-proxy"
# Host settings the kubelet, kube-proxy and the bridge plugin change; teardown puts them back.
SYSCTLS = (
    "vm/overcommit_memory",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
    "net/ipv4/ip_forward",
    "net/ipv4/conf/all/route_localnet",
    "net/ipv4/conf/all/forwarding",
    "net/ipv6/conf/all/forwarding",
    "net/bridge/bridge-nf-call-iptables",
    "net/bridge/bridge-nf-call-ip6tables",
    "net/netfilter/nf_conntrack_max",
)


def sh(*cmd: str, check: bool = True, input: str | None = None, timeout: float = 120) -> str:
    proc = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return proc.stdout


# --- the host's state, before and after -------------------------------------------------------


def _sysctl(name: str) -> str | None:
    path = Path("/proc/sys") / name
    return path.read_text().strip() if path.exists() else None


def host_state() -> dict[str, Any]:
    """What the node may change on the host; equal before start and after teardown."""
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    cgroups = sorted(str(p) for p in Path("/sys/fs/cgroup").glob(f"*{CGROUP_ROOT}") if p.is_dir()) + sorted(
        str(p) for p in Path("/sys/fs/cgroup").glob("*/kubepods*") if p.is_dir()
    )
    return {
        "sysctls": {name: _sysctl(name) for name in SYSCTLS},
        "links": sorted(link["ifname"] for link in json.loads(sh("ip", "-j", "link", "show"))),
        "netns": sorted(os.listdir("/run/netns")) if os.path.isdir("/run/netns") else [],
        # The node's mounts only: image builds and other tests mount elsewhere meanwhile.
        "mounts": sorted(m for m in mounts if re.search(r"/run/netns|containerd|kubelet|/node\d+/", m)),
        "nft": sh("nft", "list", "ruleset"),
        "cgroups": cgroups,
        "processes": sorted(_our_processes()),
    }


def _our_processes() -> list[str]:
    """Processes of a node: ours are the ones whose command line names the node's binaries or
    containerd shims (found by their command line, ended by their process id)."""
    found = []
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            argv = Path(cmdline).read_bytes().split(b"\0")
        except OSError:
            continue
        exe = argv[0].decode(errors="replace")
        if exe.startswith(str(NODE_BIN.resolve())) or "containerd-shim" in exe or exe.endswith("/containerd"):
            found.append(f"{cmdline.split('/')[2]} {exe}")
    return found


# --- the node ------------------------------------------------------------------------------------


@dataclass
class Node:
    workdir: Path
    kubeconfig: Path = field(init=False)
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    logs: list[IO[bytes]] = field(default_factory=list)
    saved_sysctls: dict[str, str | None] = field(default_factory=dict)
    nft_before: str = ""
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def run(self) -> Path:
        return self.workdir / "run"

    def api(self) -> Any:
        from kubernetes import config

        return config.new_client_from_config(str(self.kubeconfig))  # type: ignore[no-untyped-call]

    def kubectl(self, *args: str, input: str | None = None, check: bool = True, timeout: float = 120) -> str:
        kubectl = (str(NODE_BIN / "kubectl"), "--kubeconfig", str(self.kubeconfig))
        return sh(*kubectl, *args, input=input, check=check, timeout=timeout)

    def log(self, name: str) -> str:
        path = self.workdir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def start(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.workdir / f"{name}.log", "wb")  # noqa: SIM115  # closed in stop()
        self.logs.append(log)
        self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=log, env=env, start_new_session=True)

    def wait(self, check: Callable[[], bool], what: str, seconds: float = 120) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            dead = [n for n, p in self.procs.items() if p.poll() is not None]
            if dead:
                raise AssertionError(f"{', '.join(dead)} exited while waiting for {what}:\n{self.tails(dead)}")
            try:
                if check():
                    return
            except (httpx.TransportError, OSError, subprocess.SubprocessError, AssertionError):
                pass
            time.sleep(0.5)
        raise AssertionError(f"{what} not ready in {seconds:.0f} s:\n{self.tails(list(self.procs))}")

    def tails(self, names: list[str], chars: int = 3000) -> str:
        return "\n".join(f"--- {n} log (tail):\n{self.log(n)[-chars:]}" for n in names)


@contextlib.contextmanager
def real_node(workdir: Path) -> Iterator[Node]:
    """A Ready node with CoreDNS, the provisioner and the images; torn down on exit, even when
    start-up fails half-way."""
    node = Node(workdir)
    try:
        started = time.monotonic()
        _start(node)
        node.timings["cluster start"] = time.monotonic() - started
        yield node
    finally:
        started = time.monotonic()
        teardown(node)
        node.timings["teardown"] = time.monotonic() - started


def _start(node: Node) -> None:
    missing = [str(p) for p in (CONTROL_PLANE / "kube-apiserver", NODE_BIN / "kubelet") if not p.is_file()]
    if missing:
        raise AssertionError(f"{', '.join(missing)} missing: run ci/install-controlplane.sh and ci/install-node.sh")
    node.run.mkdir(parents=True)
    node.saved_sysctls = {name: _sysctl(name) for name in SYSCTLS}
    node.nft_before = sh("nft", "list", "ruleset")
    # Kernel features the node needs (this machine's kernel has them built in; no modprobe here).
    if not Path("/proc/sys/net/bridge").is_dir() or "overlay" not in Path("/proc/filesystems").read_text():
        raise AssertionError("the kernel lacks br_netfilter or overlayfs: the real-node tier cannot run here")
    # The node's address lives on its bridge, so the API server, the kubelet and CoreDNS listen
    # where pods reach them and nowhere else.
    sh("ip", "link", "add", BRIDGE, "type", "bridge")
    sh("ip", "addr", "add", f"{NODE_IP}/24", "dev", BRIDGE)
    sh("ip", "link", "set", BRIDGE, "up")
    # Pod-to-Service traffic goes through the bridge and back: iptables must see bridged packets.
    for name in ("net/bridge/bridge-nf-call-iptables", "net/ipv4/ip_forward"):
        (Path("/proc/sys") / name).write_text("1")
    _certificates(node)
    _control_plane(node)
    _containerd(node)
    _import_images(node)
    _kubelet(node)
    _kube_proxy(node)
    _coredns(node)
    _provisioner(node)


# --- certificates and credentials ----------------------------------------------------------------


def _openssl(node: Node, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=node.workdir, check=True, capture_output=True)


def _certificate(node: Node, name: str, subject: str, san: str | None = None) -> None:
    _openssl(node, "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
             "-subj", subject)  # fmt: skip
    ext = node.workdir / f"{name}.ext"
    ext.write_text(f"subjectAltName={san}\n" if san else "basicConstraints=CA:FALSE\n")
    _openssl(node, "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{name}.crt", "-days", "2", "-extfile", ext.name)  # fmt: skip


def _certificates(node: Node) -> None:
    _openssl(node, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
             "-days", "2", "-subj", "/CN=katib-nas-node-ca")  # fmt: skip
    # Pods reach the API server as https://kubernetes.default.svc (the Service IP) or by address.
    names = ["kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"]
    san = ",".join([f"IP:{NODE_IP}", f"IP:{KUBERNETES_SERVICE_IP}", "IP:127.0.0.1", *(f"DNS:{n}" for n in names)])
    _certificate(node, "apiserver", "/CN=kube-apiserver", san)
    _certificate(node, "kubelet-client", "/O=system:masters/CN=kube-apiserver-kubelet-client")
    _certificate(node, "node", f"/O=system:nodes/CN=system:node:{NODE_NAME}")
    _openssl(node, "genrsa", "-out", "sa.key", "2048")
    _openssl(node, "rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")
    (node.workdir / "tokens.csv").write_text(
        f"{ADMIN_TOKEN},admin,admin,system:masters\n{PROXY_TOKEN},system:kube-proxy,kube-proxy\n"
    )


def _kubeconfig(node: Node, name: str, user: dict[str, str]) -> Path:
    path = node.workdir / f"{name}.kubeconfig"
    server = f"https://{NODE_IP}:{API_PORT}"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "node",
                "clusters": [
                    {
                        "name": "node",
                        "cluster": {"server": server, "certificate-authority": str(node.workdir / "ca.crt")},
                    }
                ],
                "users": [{"name": name, "user": user}],
                "contexts": [{"name": "node", "context": {"cluster": "node", "user": name}}],
            }
        )
    )
    return path


# --- control plane --------------------------------------------------------------------------------


def _control_plane(node: Node) -> None:
    w = node.workdir
    etcd_port, peer_port = free_port(), free_port()
    etcd = f"http://127.0.0.1:{etcd_port}"
    node.start(
        "etcd",
        [str(CONTROL_PLANE / "etcd"), "--data-dir", str(w / "etcd"), "--listen-client-urls", etcd,
         "--advertise-client-urls", etcd, "--listen-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer_port}",
         "--initial-cluster", f"default=http://127.0.0.1:{peer_port}", "--unsafe-no-fsync"],
    )  # fmt: skip
    server = f"https://{NODE_IP}:{API_PORT}"
    node.start(
        "kube-apiserver",
        [str(CONTROL_PLANE / "kube-apiserver"), "--etcd-servers", etcd, "--bind-address", NODE_IP,
         "--advertise-address", NODE_IP, "--secure-port", str(API_PORT), "--cert-dir", str(w / "apiserver"),
         "--tls-cert-file", str(w / "apiserver.crt"), "--tls-private-key-file", str(w / "apiserver.key"),
         "--client-ca-file", str(w / "ca.crt"), "--token-auth-file", str(w / "tokens.csv"),
         "--authorization-mode", "Node,RBAC", "--enable-admission-plugins", "NodeRestriction",
         "--kubelet-client-certificate", str(w / "kubelet-client.crt"),
         "--kubelet-client-key", str(w / "kubelet-client.key"), "--kubelet-preferred-address-types", "InternalIP",
         "--service-account-key-file", str(w / "sa.pub"), "--service-account-signing-key-file", str(w / "sa.key"),
         "--service-account-issuer", server, "--service-cluster-ip-range", SERVICE_CIDR],
    )  # fmt: skip
    node.kubeconfig = _kubeconfig(node, "admin", {"token": ADMIN_TOKEN})
    trust = ssl.create_default_context(cafile=str(w / "ca.crt"))

    def api_ready() -> bool:
        answer = httpx.get(f"{server}/readyz", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, verify=trust)
        return answer.status_code == 200

    node.wait(api_ready, "kube-apiserver", 90)
    kc = str(node.kubeconfig)
    for name in ("kube-scheduler", "kube-controller-manager"):
        extra = (
            ["--service-account-private-key-file", str(w / "sa.key"), "--root-ca-file", str(w / "ca.crt"),
             "--use-service-account-credentials=false"]
            if name == "kube-controller-manager" else []
        )  # fmt: skip
        node.start(
            name,
            [str(CONTROL_PLANE / name), "--kubeconfig", kc, "--authentication-kubeconfig", kc,
             "--authorization-kubeconfig", kc, "--leader-elect=false", "--bind-address", "127.0.0.1",
             "--secure-port", str(free_port()), "--cert-dir", str(w / name), *extra],
        )  # fmt: skip


# --- containerd and images -------------------------------------------------------------------------


def _containerd(node: Node) -> None:
    run = node.run
    (run / "cni" / "net.d").mkdir(parents=True)
    (run / "cni" / "net.d" / "10-knas.conflist").write_text(
        json.dumps(
            {
                "cniVersion": "0.4.0",
                "name": "katib-nas",
                "plugins": [
                    {
                        "type": "bridge",
                        "bridge": BRIDGE,
                        "isGateway": True,
                        "ipMasq": False,
                        "hairpinMode": True,
                        "ipam": {
                            "type": "host-local",
                            "ranges": [[{"subnet": POD_CIDR, "rangeStart": "198.18.0.10", "gateway": NODE_IP}]],
                            # Only the benchmarking block is routed: no default route out of a pod.
                            "routes": [{"dst": ROUTED}],
                            "dataDir": str(run / "cni" / "ipam"),
                        },
                    },
                    {"type": "portmap", "capabilities": {"portMappings": True}},
                ],
            }
        )
    )
    CONTAINERD_ROOT.mkdir(parents=True, exist_ok=True)
    config = node.workdir / "containerd.toml"
    config.write_text(
        f"""version = 2
root = "{CONTAINERD_ROOT}"
state = "{run / "containerd"}"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]
[grpc]
  address = "{run / "containerd.sock"}"
[ttrpc]
  address = "{run / "containerd-ttrpc.sock"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  # The sandbox may not lower oom_score_adj here (no CAP_SYS_RESOURCE): without this every pod
  # sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{run / "cni" / "net.d"}"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{run / "no-registries"}"
"""
    )
    node.start("containerd", ["containerd", "--config", str(config)])
    node.wait(lambda: (run / "containerd.sock").exists() and bool(_ctr(node, "version")), "containerd", 60)


def _ctr(node: Node, *args: str, timeout: float = 600) -> str:
    return sh("ctr", "--address", str(node.run / "containerd.sock"), "-n", "k8s.io", *args, timeout=timeout)


def _import_images(node: Node) -> None:
    """Every image of ci/images/build.sh, imported when containerd's store lacks it."""
    listing = IMAGES / "images.txt"
    if not listing.is_file():
        raise AssertionError(f"{listing} missing: run `bash ci/images/build.sh`")
    present = set(_ctr(node, "images", "ls", "-q").split())
    started = time.monotonic()
    stamps = CONTAINERD_ROOT / "imported"
    stamps.mkdir(exist_ok=True)
    for line in listing.read_text().splitlines():
        archive, image = line.split()
        if image in present and (stamps / archive).exists():
            continue
        # An OCI archive names its image in an annotation, which ctr keeps only under --base-name.
        _ctr(node, "images", "import", "--base-name", image.rsplit(":", 1)[0], str(IMAGES / archive))
        (stamps / archive).touch()
    node.timings["image import"] = time.monotonic() - started


# --- kubelet, kube-proxy, CoreDNS, storage -----------------------------------------------------------


def _kubelet(node: Node) -> None:
    w, run = node.workdir, node.run
    kubeconfig = _kubeconfig(
        node, "kubelet", {"client-certificate": str(w / "node.crt"), "client-key": str(w / "node.key")}
    )
    (run / "resolv.conf").write_text("")  # pods resolve through CoreDNS only
    # The kubelet's cgroup root must exist in every hierarchy; a new cpuset needs its parent's sets.
    for top in Path("/sys/fs/cgroup").iterdir():
        if top.is_dir() and not top.is_symlink():
            own = top / CGROUP_ROOT.lstrip("/")
            own.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (top / name).exists():
                    (own / name).write_text((top / name).read_text())
    config = w / "kubelet.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubelet.config.k8s.io/v1beta1",
                "kind": "KubeletConfiguration",
                "address": NODE_IP,
                "port": 10250,
                "readOnlyPort": 0,
                "healthzBindAddress": "127.0.0.1",
                "healthzPort": free_port(),
                "authentication": {
                    "anonymous": {"enabled": False},
                    "webhook": {"enabled": True},
                    "x509": {"clientCAFile": str(w / "ca.crt")},
                },
                "authorization": {"mode": "Webhook"},
                "containerRuntimeEndpoint": f"unix://{run / 'containerd.sock'}",
                "cgroupDriver": "cgroupfs",
                "cgroupRoot": CGROUP_ROOT,
                "failCgroupV1": False,
                "failSwapOn": False,
                "clusterDNS": [NODE_IP],
                "clusterDomain": "cluster.local",
                "resolvConf": str(run / "resolv.conf"),
                # The cached images stay: this node never pulls.
                "imageGCHighThresholdPercent": 100,
                "imageGCLowThresholdPercent": 99,
                "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%"},
                "serializeImagePulls": False,
                "protectKernelDefaults": False,
                "makeIPTablesUtilChains": False,
                "registerNode": True,
                "maxPods": 60,
            }
        )
    )
    node.start(
        "kubelet",
        [str(NODE_BIN / "kubelet"), "--config", str(config), "--kubeconfig", str(kubeconfig),
         "--root-dir", str(run / "kubelet"), "--cert-dir", str(w / "kubelet-pki"), "--node-ip", NODE_IP,
         "--hostname-override", NODE_NAME, "--v", "1"],
    )  # fmt: skip
    from kubernetes import client

    core = client.CoreV1Api(node.api())

    def ready() -> bool:
        try:
            status = core.read_node(NODE_NAME).status
        except client.ApiException as error:
            if error.status == 404:  # the kubelet has not registered the node yet (a cold start is slower)
                return False
            raise
        conditions = (status.conditions if status else None) or []
        return any(c.type == "Ready" and c.status == "True" for c in conditions)

    node.wait(ready, "node Ready", 120)


def _kube_proxy(node: Node) -> None:
    kubeconfig = _kubeconfig(node, "kube-proxy", {"token": PROXY_TOKEN})
    config = node.workdir / "kube-proxy.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
                "kind": "KubeProxyConfiguration",
                "mode": "iptables",
                "clientConnection": {"kubeconfig": str(kubeconfig)},
                "hostnameOverride": NODE_NAME,
                "clusterCIDR": POD_CIDR,
                "bindAddress": NODE_IP,
                "healthzBindAddress": f"127.0.0.1:{free_port()}",
                "metricsBindAddress": f"127.0.0.1:{free_port()}",
                "nodePortAddresses": [f"{NODE_IP}/32"],
                # No localhost NodePorts (they need route_localnet) and no conntrack sysctls.
                "iptables": {"localhostNodePorts": False},
                "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s", "tcpCloseWaitTimeout": "0s"},
            }
        )
    )
    node.start("kube-proxy", [str(NODE_BIN / "kube-proxy"), "--config", str(config)])
    node.wait(lambda: "KUBE-SERVICES" in sh("iptables-save", "-t", "nat"), "kube-proxy rules", 60)


def _coredns(node: Node) -> None:
    corefile = node.workdir / "Corefile"
    corefile.write_text(
        f""".:53 {{
    bind {NODE_IP}
    errors
    health 127.0.0.1:{free_port()}
    kubernetes cluster.local in-addr.arpa {{
        kubeconfig {node.kubeconfig} node
        pods insecure
    }}
    cache 5
}}
"""
    )
    node.start("coredns", [str(NODE_BIN / "coredns"), "-conf", str(corefile)])
    node.wait(_dns_answers, "CoreDNS", 60)


def _dns_answers() -> bool:
    """CoreDNS answers for the kubernetes Service (a raw UDP query; the host resolver is not ours)."""
    import socket
    import struct

    name = b"".join(bytes([len(p)]) + p for p in b"kubernetes.default.svc.cluster.local".split(b".")) + b"\0"
    query = struct.pack(">HHHHHH", 0x4B4E, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(1)
        sock.sendto(query, (NODE_IP, 53))
        answer = sock.recv(512)
    return answer[:2] == b"\x4b\x4e" and struct.unpack(">H", answer[6:8])[0] > 0 and bytes([198, 19, 0, 1]) in answer


def _provisioner(node: Node) -> None:
    """rancher's local-path provisioner answers for the profile's class, the default class."""
    data = node.run / "volumes"
    data.mkdir()
    namespace = "local-path-storage"
    node.kubectl("create", "namespace", namespace)
    node.kubectl("-n", namespace, "create", "serviceaccount", "local-path-provisioner")
    config = node.workdir / "local-path.json"
    config.write_text(
        json.dumps({"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": [str(data)]}]})
    )
    # Its helper pods make and remove the volume directories, as the project's own example does.
    helper = node.workdir / "helper-pod.yaml"
    helper.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "metadata": {"name": "helper-pod"},
                "spec": {
                    "priorityClassName": "system-node-critical",
                    "tolerations": [
                        {"key": "node.kubernetes.io/disk-pressure", "operator": "Exists", "effect": "NoSchedule"}
                    ],
                    "containers": [{"name": "helper-pod", "image": HELPER_IMAGE, "imagePullPolicy": "IfNotPresent"}],
                },
            }
        )
    )
    (node.workdir / "setup").write_text('#!/bin/sh\nset -eu\nmkdir -m 0777 -p "$VOL_DIR"\n')
    (node.workdir / "teardown").write_text('#!/bin/sh\nset -eu\nrm -rf "$VOL_DIR"\n')
    node.kubectl(
        "-n", namespace, "create", "configmap", "local-path-config",
        f"--from-file=config.json={config}", f"--from-file=helperPod.yaml={helper}",
        f"--from-file=setup={node.workdir / 'setup'}", f"--from-file=teardown={node.workdir / 'teardown'}",
    )  # fmt: skip
    provisioner = "rancher.io/local-path"
    node.kubectl(
        "apply", "-f", "-",
        input=yaml.safe_dump(
            {
                "apiVersion": "storage.k8s.io/v1",
                "kind": "StorageClass",
                "metadata": {
                    "name": STORAGE_CLASS,
                    "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
                },
                "provisioner": provisioner,
                "volumeBindingMode": "WaitForFirstConsumer",
                "reclaimPolicy": "Delete",
            }
        ),
    )  # fmt: skip
    env = dict(os.environ, KUBECONFIG=str(node.kubeconfig))
    node.start(
        "local-path-provisioner",
        [str(NODE_BIN / "local-path-provisioner"), "start", "--config", str(config),
         "--provisioner-name", provisioner, "--namespace", namespace, "--helper-image", HELPER_IMAGE,
         "--configmap-name", "local-path-config", "--service-account-name", "local-path-provisioner",
         "--helper-pod-file", str(helper)],
        env=env,
    )  # fmt: skip


# --- teardown ------------------------------------------------------------------------------------------


def teardown(node: Node) -> None:
    """Processes, containers, network, mounts, cgroups and sysctls back to how they were. Every
    step runs even when an earlier one fails; the test compares host_state() before and after."""
    steps: list[Callable[[], None]] = [
        lambda: _stop(node, ["kubelet", "local-path-provisioner", "coredns"]),
        lambda: _remove_containers(node),
        lambda: _stop(node, ["containerd"]),
        lambda: _kill_shims(node),
        lambda: _cleanup_proxy(node),
        lambda: _stop(node, ["kube-proxy", "kube-controller-manager", "kube-scheduler", "kube-apiserver", "etcd"]),
        lambda: _remove_netns(node),
        lambda: _remove_bridge(),
        lambda: _unmount(node),
        lambda: _remove_cgroups(),
        lambda: _restore_nft(node),
        lambda: _restore_sysctls(node),
    ]
    errors = []
    for step in steps:
        try:
            step()
        except Exception as error:  # noqa: BLE001  # every step runs; all errors are reported
            errors.append(repr(error))
    for log in node.logs:
        log.close()
    if errors:
        raise AssertionError("teardown: " + "; ".join(errors))


def _stop(node: Node, names: list[str]) -> None:
    for name in names:
        proc = node.procs.get(name)
        if proc is None or proc.poll() is not None:
            continue
        stop_process(proc, timeout=15)


def _remove_containers(node: Node) -> None:
    if "containerd" not in node.procs or node.procs["containerd"].poll() is not None:
        return
    for task in _ctr(node, "tasks", "ls", "-q").split():
        sh("ctr", "--address", str(node.run / "containerd.sock"), "-n", "k8s.io", "tasks", "kill", "-s", "SIGKILL",
           task, check=False)  # fmt: skip
    deadline = time.monotonic() + 30
    while _ctr(node, "tasks", "ls", "-q").split() and time.monotonic() < deadline:
        for task in _ctr(node, "tasks", "ls", "-q").split():
            sh("ctr", "--address", str(node.run / "containerd.sock"), "-n", "k8s.io", "tasks", "delete", "-f", task,
               check=False)  # fmt: skip
        time.sleep(0.5)
    for container in _ctr(node, "containers", "ls", "-q").split():
        sh("ctr", "--address", str(node.run / "containerd.sock"), "-n", "k8s.io", "containers", "delete", container,
           check=False)  # fmt: skip
    # Snapshots of the removed containers (the images' own layers stay as the cache).
    for line in _ctr(node, "snapshots", "ls").splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 3 and parts[2] == "Active":
            sh("ctr", "--address", str(node.run / "containerd.sock"), "-n", "k8s.io", "snapshots", "rm", parts[0],
               check=False)  # fmt: skip


def _kill_shims(node: Node) -> None:
    """containerd's shims re-parent to init; ours name this run's socket on their command line."""
    marker = str(node.run).encode()
    for cmdline in glob.glob("/proc/[0-9]*/cmdline"):
        try:
            if marker in Path(cmdline).read_bytes():
                os.kill(int(cmdline.split("/")[2]), signal.SIGKILL)
        except (OSError, ValueError):
            continue


def _cleanup_proxy(node: Node) -> None:
    """kube-proxy removes its own rules; the kubelet's canary chains go with the tables below."""
    _stop(node, ["kube-proxy"])
    if (NODE_BIN / "kube-proxy").is_file():
        sh(str(NODE_BIN / "kube-proxy"), "--cleanup", "--v", "0", check=False)


def _remove_bridge() -> None:
    sh("ip", "link", "delete", BRIDGE, check=False)


def _remove_netns(node: Node) -> None:
    if not os.path.isdir("/run/netns"):
        return
    for name in os.listdir("/run/netns"):
        if name.startswith("cni-"):
            sh("ip", "netns", "delete", name, check=False)


def _unmount(node: Node) -> None:
    mounts = [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    ours = [m for m in mounts if m.startswith(str(node.workdir)) or m.startswith(str(CONTAINERD_ROOT))]
    for mount in sorted(ours, key=len, reverse=True):
        sh("umount", "-l", mount, check=False)


def _remove_cgroups() -> None:
    for top in Path("/sys/fs/cgroup").iterdir():
        root = top / CGROUP_ROOT.lstrip("/")
        for path in [*top.glob("kubepods*"), root]:
            if path.is_dir():
                for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
                    with contextlib.suppress(OSError):
                        sub.rmdir()
                with contextlib.suppress(OSError):
                    path.rmdir()


def _restore_nft(node: Node) -> None:
    if sh("nft", "list", "ruleset") != node.nft_before:
        sh("nft", "flush", "ruleset")
        if node.nft_before.strip():
            sh("nft", "-f", "-", input=node.nft_before)


def _restore_sysctls(node: Node) -> None:
    for name, value in node.saved_sysctls.items():
        path = Path("/proc/sys") / name
        if value is not None and path.exists() and path.read_text().strip() != value:
            path.write_text(value)


# --- diagnostics ------------------------------------------------------------------------------------


def diagnostics(node: Node, namespaces: list[str]) -> str:
    """What a person needs when the tier fails: events and pod logs of the given namespaces, and
    the logs of the kubelet, containerd and kube-proxy."""
    out = []
    for ns in namespaces:
        out.append(f"=== {ns}: pods\n" + node.kubectl("-n", ns, "get", "pods", "-o", "wide", check=False))
        out.append(f"=== {ns}: events\n" + node.kubectl("-n", ns, "get", "events", "--sort-by=.lastTimestamp",
                                                         check=False)[-6000:])  # fmt: skip
        for pod in node.kubectl("-n", ns, "get", "pods", "-o", "name", check=False).split():
            logs = node.kubectl("-n", ns, "logs", pod, "--all-containers", "--tail=40", check=False)
            out.append(f"=== {ns}/{pod} logs\n{logs}")
    out.append(node.tails(["kubelet", "containerd", "kube-proxy", "local-path-provisioner"], 4000))
    return "\n".join(out)


# --- Katib ---------------------------------------------------------------------------------------------

KATIB_DEPLOYMENTS = ("katib-controller", "katib-db-manager", "katib-mysql")
# What the restricted Pod Security Standard asks of every container.
RESTRICTED_CONTAINER = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}


def restricted_katib_config(text: str) -> str:
    """Katib's own settings for restricted namespaces, which its standalone katib-config leaves
    off: the metrics-collector sidecar copies the trial container's securityContext
    (init.controller.injectSecurityContext), and each suggestion container gets one
    (runtime.suggestions[] inline a Container). Katib has no such setting for its early-stopping
    container, so medianstop cannot run in a restricted namespace."""
    config = yaml.safe_load(text)
    config["init"]["controller"]["injectSecurityContext"] = True
    for suggestion in config["runtime"]["suggestions"]:
        suggestion["securityContext"] = RESTRICTED_CONTAINER
    return yaml.safe_dump(config, sort_keys=False)


def install_katib(node: Node, restricted: bool = True) -> None:
    """Katib v0.19.0's standalone install as its kustomization renders it (kubectl kustomize),
    without the UI, whose image the tier does not build; with `restricted`, the katib-config
    settings above. Returns when its Deployments are Available."""
    started = time.monotonic()
    rendered = node.kubectl("kustomize", str(KATIB_MANIFESTS / "installs" / "katib-standalone"))
    docs = [d for d in yaml.safe_load_all(rendered) if d and d["metadata"]["name"] != "katib-ui"]
    if restricted:
        for doc in docs:
            if doc["kind"] == "ConfigMap" and doc["metadata"]["name"] == "katib-config":
                doc["data"]["katib-config.yaml"] = restricted_katib_config(doc["data"]["katib-config.yaml"])
    # The pod webhook covers Katib's own namespace (it carries the injection label) and fails
    # closed, so the webhook configurations go in once Katib's pods exist; applied together, the
    # controller's own pod can lose the race to its webhook and never be created.
    hooks = [d for d in docs if d["kind"].endswith("WebhookConfiguration")]
    rest = [d for d in docs if d not in hooks]
    node.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(rest))
    node.kubectl("-n", "kubeflow", "wait", "--for=condition=Available", "--timeout=300s",
                 *(f"deployment/{d}" for d in KATIB_DEPLOYMENTS), timeout=330)  # fmt: skip
    node.kubectl("apply", "--server-side", "-f", "-", input=yaml.safe_dump_all(hooks))

    def ca_injected() -> bool:  # Katib's certificate generator patches its CA into both configurations
        found = [
            json.loads(node.kubectl("get", f"{h['kind'].lower()}", h["metadata"]["name"], "-o", "json")) for h in hooks
        ]
        return all(w.get("clientConfig", {}).get("caBundle") for f in found for w in f["webhooks"])

    node.wait(ca_injected, "Katib's webhook CA", 120)
    node.timings["Katib ready"] = time.monotonic() - started
