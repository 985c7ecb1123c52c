#!/usr/bin/env bash
# Python environments for Katib's own suggestion services (the NAS ones, darts and enas, included:
# enas imports TensorFlow 2.16.1, its largest install) and its medianstop early-stopping service
# (v0.19.0), so the tests can run each service's ValidateAlgorithmSettings (ValidateEarlyStoppingSettings)
# on the settings the generator accepts or refuses. Each service
# gets its own venv with exactly the requirements.txt Katib ships for its image (their pins conflict
# with ours and with each other: numpy, protobuf, optuna), from PyPI, cached by the requirements'
# hash outside the repository; .tools/suggestion/<service> links to it. The services' code itself is
# imported from the Katib module in the Go module cache, not copied.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
KATIB_VERSION=v0.19.0
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/katib-nas/suggestion"
mkdir -p "$CACHE" "$ROOT/.tools/suggestion"
katib_dir="$(GONOSUMDB=github.com/kubeflow/katib GOFLAGS=-mod=mod go mod download -json "github.com/kubeflow/katib@$KATIB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
ln -sfn "$katib_dir" "$ROOT/.tools/suggestion/katib"

for service in hyperopt optuna skopt hyperband pbt medianstop darts enas; do
  case "$service" in
    medianstop) requirements="$katib_dir/cmd/earlystopping/medianstop/v1beta1/requirements.txt" ;;
    darts | enas) requirements="$katib_dir/cmd/suggestion/nas/$service/v1beta1/requirements.txt" ;;
    *) requirements="$katib_dir/cmd/suggestion/$service/v1beta1/requirements.txt" ;;
  esac
  venv="$CACHE/$service-$KATIB_VERSION-$(sha256sum "$requirements" | cut -c1-12)"
  if [[ ! -f "$venv/.installed" ]]; then
    echo "install-suggestion-services: $service (first run on this machine only)" >&2
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
    touch "$venv/.installed"
  fi
  ln -sfn "$venv" "$ROOT/.tools/suggestion/$service"
done
echo "install-suggestion-services: ready in $ROOT/.tools/suggestion" >&2
