#!/usr/bin/env bash
# Builds the control plane the install tests run against, from the Go module proxy at pinned
# versions: etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok (nodes without a
# kubelet) and Katib's controller (its Experiment webhooks). No release binary is downloaded. The binaries are cached by version outside the repository, so only the
# first run on a machine pays for the build (about 8 minutes on 2 cores); .tools/controlplane
# links to the cache.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
K8S_VERSION=v1.34.2
K8S_STAGING=v0.34.2 # k8s.io/kubernetes's staging modules at the matching version
ETCD_VERSION=v3.6.16
KATIB_VERSION=v0.19.0
KWOK_VERSION=v0.7.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/katib-nas/controlplane/k8s-$K8S_VERSION-etcd-$ETCD_VERSION-katib-$KATIB_VERSION-kwok-$KWOK_VERSION"
BIN="$CACHE/bin"
mkdir -p "$BIN" "$ROOT/.tools"
ln -sfn "$BIN" "$ROOT/.tools/controlplane"

# build NAME PACKAGE LDFLAGS  (in the wrapper module of the current directory)
build() {
  [[ -x "$BIN/$1" ]] && return 0
  echo "install-controlplane: building $1 (first run on this machine only)" >&2
  local started=$SECONDS
  GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $3" -o "$BIN/$1.tmp" "$2"
  mv "$BIN/$1.tmp" "$BIN/$1"
  echo "install-controlplane: $1 built in $((SECONDS - started))s" >&2
}

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# kube-apiserver: k8s.io/kubernetes points its staging modules at ./staging, which a module that
# requires it cannot see, so the wrapper replaces each with the published module.
if [[ ! -x "$BIN/kube-apiserver" || ! -x "$BIN/kube-controller-manager" || ! -x "$BIN/kube-scheduler" ]]; then
  mkdir "$work/k8s" && cd "$work/k8s"
  {
    printf 'module katibnas/controlplane/k8s\n\ngo 1.24\n\nrequire k8s.io/kubernetes %s\n\n' "$K8S_VERSION"
    go mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null
    modfile="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    grep -oE '^\s+k8s\.io/[a-z0-9-]+ => \./staging' "$modfile" | awk -v v="$K8S_STAGING" '{print "replace " $1 " => " $1 " " v}'
  } >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport (\n' >tools.go
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    printf '\t_ "k8s.io/kubernetes/cmd/%s"\n' "$cmd" >>tools.go
  done
  printf ')\n' >>tools.go
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  v=k8s.io/component-base/version
  minor="${K8S_VERSION#v1.}" && minor="${minor%%.*}"
  # The version Helm's kubeVersion check and the chart's guards read from the server.
  for cmd in kube-apiserver kube-controller-manager kube-scheduler; do
    build "$cmd" "k8s.io/kubernetes/cmd/$cmd" \
      "-X $v.gitVersion=$K8S_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean"
  done
fi

if [[ ! -x "$BIN/kwok" ]]; then
  mkdir "$work/kwok" && cd "$work/kwok"
  printf 'module katibnas/controlplane/kwok\n\ngo 1.24\n\nrequire sigs.k8s.io/kwok %s\n' "$KWOK_VERSION" >go.mod
  printf '//go:build tools\n\npackage tools\n\nimport _ "sigs.k8s.io/kwok/cmd/kwok"\n' >tools.go
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  build kwok sigs.k8s.io/kwok/cmd/kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=$KWOK_VERSION"
fi

# etcd: its server module has the entry point but no main package of its own outside the root module.
if [[ ! -x "$BIN/etcd" ]]; then
  mkdir "$work/etcd" && cd "$work/etcd"
  printf 'module katibnas/controlplane/etcd\n\ngo 1.24\n\nrequire go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >go.mod
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >main.go
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  build etcd . ""
fi

# Katib's controllers and webhooks behind our own entry point (ci/katib-controller/main.go: loopback
# webhook server, certificate directory as a flag). The binary is rebuilt when that file changes.
# The checksum database has no entry for these two modules; everything else is still verified.
entry="$ROOT/ci/katib-controller/main.go"
stamp="$(sha256sum "$entry" | cut -c1-16)"
if [[ "$(cat "$BIN/katib-controller.source" 2>/dev/null)" != "$stamp" ]]; then
  rm -f "$BIN/katib-controller"
fi
if [[ ! -x "$BIN/katib-controller" ]]; then
  mkdir "$work/katib" && cd "$work/katib"
  export GONOSUMDB=github.com/kubeflow/katib,github.com/google/go-containerregistry/pkg/authn/k8schain
  printf 'module katibnas/controlplane/katib\n\ngo 1.24\n\nrequire github.com/kubeflow/katib %s\n' "$KATIB_VERSION" >go.mod
  cp "$entry" main.go
  GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
  build katib-controller . ""
  echo "$stamp" >"$BIN/katib-controller.source"
fi

# katibcheck: Katib's pod mutator, its Experiment -> gRPC conversion, the goptuna service's settings
# validation and Go's regexp, run on JSON for the tests (ci/katibcheck, its Katib version pinned in
# its go.mod). Rebuilt when its sources change.
kc_stamp="$(cat "$ROOT/ci/katibcheck/go.mod" "$ROOT/ci/katibcheck/go.sum" "$ROOT/ci/katibcheck/main.go" | sha256sum | cut -c1-16)"
if [[ ! -x "$BIN/katibcheck" || "$(cat "$BIN/katibcheck.source" 2>/dev/null)" != "$kc_stamp" ]]; then
  echo "install-controlplane: building katibcheck" >&2
  (cd "$ROOT/ci/katibcheck" && GONOSUMDB=github.com/kubeflow/katib,github.com/google/go-containerregistry/pkg/authn/k8schain \
    CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN/katibcheck.tmp" .)
  mv "$BIN/katibcheck.tmp" "$BIN/katibcheck"
  echo "$kc_stamp" >"$BIN/katibcheck.source"
fi

# Katib's Python suggestion services, each in a venv of its own requirements (the settings tests).
bash "$ROOT/ci/install-suggestion-services.sh"

# Katib's CRDs, webhook configurations and katib-config come from the same module version.
katib_dir="$(GONOSUMDB=github.com/kubeflow/katib GOFLAGS=-mod=mod go mod download -json "github.com/kubeflow/katib@$KATIB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
ln -sfn "$katib_dir/manifests/v1beta1" "$CACHE/katib-manifests"
echo "install-controlplane: control plane ready in $BIN" >&2
