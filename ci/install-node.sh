#!/usr/bin/env bash
# Builds the node of the real-node test tier (tests/test_realnode.py): a kubelet that really runs
# containers, next to the control plane of ci/install-controlplane.sh.
#   Debian: containerd, runc, the CNI plugins, iptables/conntrack, mmdebstrap and buildah (images).
#   Go module proxy, at pinned versions: kubelet, kube-proxy and kubectl (Kubernetes v1.34.2, as the
#   control plane), CoreDNS, rancher's local-path provisioner, and Katib's Go programs.
# No release binary is downloaded. Binaries are cached by version outside the repository (the first
# run pays for the build); .tools/node links to the cache. Needs root (the tier runs as root).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION=v1.34.2
K8S_STAGING=v0.34.2
COREDNS_VERSION=v1.12.4
LOCAL_PATH_VERSION=v0.0.30
KATIB_VERSION=v0.19.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/katib-nas/node/k8s-$K8S_VERSION-coredns-$COREDNS_VERSION-localpath-$LOCAL_PATH_VERSION-katib-$KATIB_VERSION"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$ROOT/.tools"
ln -sfn "$CACHE" "$ROOT/.tools/node"

# Debian packages, installed only when a command is missing.
declare -A debian=(
  [containerd]=containerd [runc]=runc [/usr/lib/cni/bridge]=containernetworking-plugins
  [iptables]=iptables [conntrack]=conntrack [nft]=nftables [mmdebstrap]=mmdebstrap [buildah]=buildah
  [ip]=iproute2
)
missing=()
for cmd in "${!debian[@]}"; do
  if [[ "$cmd" == /* ]]; then [[ -e "$cmd" ]] || missing+=("${debian[$cmd]}"); else command -v "$cmd" >/dev/null || missing+=("${debian[$cmd]}"); fi
done
if ((${#missing[@]})); then
  bash "$ROOT/ci/install-debian.sh" "${missing[@]}"
fi

# build NAME PACKAGE LDFLAGS  (in the module of the current directory)
build() {
  [[ -x "$BIN/$1" ]] && return 0
  echo "install-node: building $1 (first run on this machine only)" >&2
  local started=$SECONDS
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $3" -o "$BIN/$1.tmp" "$2"
  mv "$BIN/$1.tmp" "$BIN/$1"
  echo "install-node: $1 built in $((SECONDS - started))s" >&2
}
module_dir() { GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/.*"Dir": "\(.*\)",/\1/p'; }

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kubelet, kube-proxy, kubectl: the same wrapper module as the control plane's (k8s.io/kubernetes
# points its staging modules at ./staging; the wrapper replaces each with the published module).
if [[ ! -x "$BIN/kubelet" || ! -x "$BIN/kube-proxy" || ! -x "$BIN/kubectl" ]]; then
  mkdir "$work/k8s" && cd "$work/k8s"
  {
    printf 'module katibnas/node/k8s\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk -v v="$K8S_STAGING" '{print "replace " $1 " => " $1 " " v}'
  } >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport (\n' >tools.go
  for cmd in kubelet kube-proxy kubectl; do printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >>tools.go; done
  printf ')\n' >>tools.go
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  v=k8s.io/component-base/version
  minor="${K8S_VERSION#v1.}" && minor="${minor%%.*}"
  for cmd in kubelet kube-proxy kubectl; do
    build "$cmd" "k8s.io/kubernetes/cmd/$cmd" \
      "-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  done
fi

# CoreDNS and the local-path provisioner build in their own modules (no replace directives).
if [[ ! -x "$BIN/coredns" ]]; then
  cd "$(module_dir "github.com/coredns/coredns@$COREDNS_VERSION")"
  build coredns . "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION"
fi
if [[ ! -x "$BIN/local-path-provisioner" ]]; then
  cd "$(module_dir "github.com/rancher/local-path-provisioner@$LOCAL_PATH_VERSION")"
  build local-path-provisioner . "-X main.VERSION=$LOCAL_PATH_VERSION"
fi

# Katib's Go programs, from its module at the pinned version (cmd/... as its Dockerfiles build them).
export GONOSUMDB=github.com/kubeflow/katib,github.com/google/go-containerregistry/pkg/authn/k8schain
katib_dir="$(module_dir "github.com/kubeflow/katib@$KATIB_VERSION")"
cd "$katib_dir"
build katib-controller ./cmd/katib-controller/v1beta1 ""
build katib-db-manager ./cmd/db-manager/v1beta1 ""
build file-metrics-collector ./cmd/metricscollector/v1beta1/file-metricscollector ""
ln -sfn "$katib_dir" "$CACHE/katib-source"
echo "install-node: node binaries ready in $BIN" >&2
