#!/usr/bin/env bash
# Builds the pinned Go tools (helm, ct, kubeconform, helm-unittest, helm-docs, promtool) into .tools/bin
# from the Go module proxy; no release binary is downloaded.
# Idempotent: a tool is rebuilt only when its pinned version changes (one stamp file per tool).
# With arguments it builds only the named tools (`install-tools.sh helm` for the main job).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${KATIB_NAS_TOOLS:-$ROOT/.tools}"
BIN="$TOOLS/bin"
mkdir -p "$BIN"

# The minimum Helm version the chart supports; Chart.yaml's guard states the same.
HELM_VERSION=v3.19.5
CT_VERSION=v3.14.0
KUBECONFORM_VERSION=v0.7.0
HELM_UNITTEST_VERSION=v1.1.2
HELM_DOCS_VERSION=v1.14.2
# Prometheus's Go module tags release 3.X.Y as v0.3XX.Y: promtool of Prometheus 3.15.1.
PROMETHEUS_VERSION=v0.315.1
PROMETHEUS_RELEASE=3.15.1

ONLY=" $* "
wanted() { [[ "$ONLY" == "  " || "$ONLY" == *" $1 "* ]]; }

# build_tool NAME VERSION MODULE PACKAGE [LDFLAGS] [REPLACE] [TAGS]
# Builds through a throwaway wrapper module: `go install pkg@version` asks the proxy for the
# module's version list, which the proxy refuses for some modules (chart-testing).
build_tool() {
  local name=$1 version=$2 module=$3 pkg=$4 ldflags=${5:-} replace=${6:-} tags=${7:-}
  wanted "$name" || return 0
  local stamp="$TOOLS/.$name.version"
  if [[ -x "$BIN/$name" && -f "$stamp" && "$(cat "$stamp")" == "$version" ]]; then
    return 0
  fi
  echo "install-tools: building $name $version (first run on this machine only)" >&2
  local work
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' RETURN
  printf 'module katibnas/tools/%s\n\ngo 1.24\n\nrequire %s %s\n' "$name" "$module" "$version" >"$work/go.mod"
  # A replace in the tool's own go.mod does not apply to a module that requires it: repeat it.
  [[ -z "$replace" ]] || printf '\nreplace %s\n' "$replace" >>"$work/go.mod"
  printf '//go:build tools\n\npackage tools\n\nimport _ "%s"\n' "$pkg" >"$work/tools.go"
  (
    cd "$work"
    GOFLAGS=-mod=mod go mod tidy >/dev/null 2>&1 || GOFLAGS=-mod=mod go mod tidy
    GOFLAGS=-mod=mod CGO_ENABLED=0 go build -trimpath -tags "$tags" -ldflags "-s -w $ldflags" -o "$BIN/$name.tmp" "$pkg"
  )
  mv "$BIN/$name.tmp" "$BIN/$name"
  echo "$version" >"$stamp"
}

build_tool helm "$HELM_VERSION" helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm \
  "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
build_tool ct "$CT_VERSION" github.com/helm/chart-testing/v3 github.com/helm/chart-testing/v3/ct \
  "-X github.com/helm/chart-testing/v3/ct/cmd.Version=$CT_VERSION"
build_tool kubeconform "$KUBECONFORM_VERSION" github.com/yannh/kubeconform github.com/yannh/kubeconform/cmd/kubeconform
build_tool untt "$HELM_UNITTEST_VERSION" github.com/helm-unittest/helm-unittest github.com/helm-unittest/helm-unittest/cmd/helm-unittest \
  "" "github.com/vmware-labs/yaml-jsonpath v0.3.2 => github.com/helm-unittest/yaml-jsonpath v0.4.0"
build_tool helm-docs "$HELM_DOCS_VERSION" github.com/norwoodj/helm-docs github.com/norwoodj/helm-docs/cmd/helm-docs
# promtool checks and unit-tests the chart's alert rules. remove_all_sd (Prometheus's own build tag)
# leaves out the cloud service discoveries rule tests never use; the replace is Prometheus's go.mod's.
build_tool promtool "$PROMETHEUS_VERSION" github.com/prometheus/prometheus github.com/prometheus/prometheus/cmd/promtool \
  "-X github.com/prometheus/common/version.Version=$PROMETHEUS_RELEASE" \
  "cloud.google.com/go => cloud.google.com/go v0.123.0" remove_all_sd

# psacheck: our own checker on k8s.io/pod-security-admission, rebuilt when its sources change.
if wanted psacheck; then
  psa_stamp="$(cat "$ROOT/ci/psacheck/go.mod" "$ROOT/ci/psacheck/go.sum" "$ROOT/ci/psacheck/main.go" | sha256sum | cut -c1-16)"
  if [[ ! -x "$BIN/psacheck" || "$(cat "$TOOLS/.psacheck.version" 2>/dev/null)" != "$psa_stamp" ]]; then
    echo "install-tools: building psacheck (first run on this machine only)" >&2
    (cd "$ROOT/ci/psacheck" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN/psacheck" .)
    echo "$psa_stamp" >"$TOOLS/.psacheck.version"
  fi
fi

# kservecheck: KServe's and Knative Serving's own code judging the chart's InferenceServices, at the
# KServe version ci/kservecheck/go.mod pins (and the knative.dev/serving KServe pins), rebuilt when its
# sources change. .tools/kserve links the files the tests read from the modules themselves: KServe's
# default inferenceservice-config and InferenceService CRD, and the prometheus-operator ServiceMonitor and
# PrometheusRule CRDs.
PROMETHEUS_OPERATOR_VERSION=v0.85.0
if wanted kservecheck; then
  ks_stamp="$(cat "$ROOT/ci/kservecheck/go.mod" "$ROOT/ci/kservecheck/go.sum" "$ROOT/ci/kservecheck/main.go" | sha256sum | cut -c1-16)"
  if [[ ! -x "$BIN/kservecheck" || "$(cat "$TOOLS/.kservecheck.version" 2>/dev/null)" != "$ks_stamp" ]]; then
    echo "install-tools: building kservecheck (first run on this machine only)" >&2
    (cd "$ROOT/ci/kservecheck" && CGO_ENABLED=0 go build -mod=readonly -trimpath -ldflags "-s -w" -o "$BIN/kservecheck.tmp" .)
    mv "$BIN/kservecheck.tmp" "$BIN/kservecheck"
    echo "$ks_stamp" >"$TOOLS/.kservecheck.version"
  fi
  kserve_dir="$(cd "$ROOT/ci/kservecheck" && go list -mod=readonly -m -f '{{.Dir}}' github.com/kserve/kserve)"
  promop_dir="$(go mod download -json "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR_VERSION" \
    | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')"
  mkdir -p "$TOOLS/kserve"
  ln -sfn "$kserve_dir/config/configmap/inferenceservice.yaml" "$TOOLS/kserve/inferenceservice-config.yaml"
  ln -sfn "$kserve_dir/config/crd/full/serving.kserve.io_inferenceservices.yaml" "$TOOLS/kserve/inferenceservices-crd.yaml"
  ln -sfn "$promop_dir/example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml" \
    "$TOOLS/kserve/servicemonitors-crd.yaml"
  ln -sfn "$promop_dir/example/prometheus-operator-crd/monitoring.coreos.com_prometheusrules.yaml" \
    "$TOOLS/kserve/prometheusrules-crd.yaml"
fi

# helm-unittest runs as a helm plugin: register our own build (its upstream plugin.yaml would
# download a release binary in an install hook).
wanted untt || { echo "install-tools: $* ready in $BIN" >&2; exit 0; }
PLUGIN_DIR="$TOOLS/helm-plugins/unittest"
mkdir -p "$PLUGIN_DIR"
cat >"$PLUGIN_DIR/plugin.yaml" <<YAML
name: "unittest"
version: "${HELM_UNITTEST_VERSION#v}"
usage: "unit test for helm charts"
description: "helm-unittest built from the Go module proxy by ci/install-tools.sh"
command: "$BIN/untt"
YAML
echo "install-tools: tools ready in $BIN" >&2
