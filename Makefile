# katib-nas developer targets. CI runs `make test`: .ci/run runs it alone (with CI=true), and the GitHub
# workflow (.github/workflows/ci.yaml) runs `make ct-lint` first. `make run` is the main job.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
export PATH := $(CURDIR)/.tools/bin:$(CURDIR)/$(VENV)/bin:$(PATH)
export HELM_PLUGINS := $(CURDIR)/.tools/helm-plugins

.PHONY: setup venv venv-local helm tools browser lint mypy pytest test run serve schema docs check ct-lint package node test-node bench all clean

setup: venv tools browser

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable . --group dev
	touch $@ $(VENV)/.installed-local

venv: $(VENV)/.installed

# The main job's environment only: the package with its local extra (trainer, server, Optuna).
$(VENV)/.installed-local: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet --editable '.[local]'
	touch $@

venv-local: $(VENV)/.installed-local

# helm alone: all the main job renders with.
helm:
	bash ci/install-tools.sh helm

tools:
	bash ci/install-tools.sh
	bash ci/install-controlplane.sh

# Debian's Chromium for the drawing-page test (Playwright drives it; no browser download).
browser:
	@command -v chromium >/dev/null || bash ci/install-debian.sh chromium

lint: venv
	ruff check generator images tests bench ci
	ruff format --check generator images tests bench ci

mypy: venv
	mypy

pytest: setup node
	$(PY) -m pytest

# Lint, types, generated-file drift and the whole pytest suite (ct lint and helm-unittest included).
# The set-up runs two jobs at a time, so the venv's downloads overlap the Go builds.
test:
	$(MAKE) --no-print-directory -j2 setup node
	$(MAKE) --no-print-directory lint mypy check pytest

check: setup
	katib-nas schema --check
	helm-docs --chart-search-root charts --template-files README.md.gotmpl --dry-run | diff -q - charts/katib-nas/README.md >/dev/null \
		|| { echo "charts/katib-nas/README.md is stale: run make docs" >&2; exit 1; }
	$(PY) ci/readme_values.py --check

schema: venv
	katib-nas schema

# Regenerates charts/katib-nas/README.md (helm-docs) and README.md's values table. Runs `tools` first: the
# pinned Go tools and the test control plane (ci/install-controlplane.sh, minutes on a first run).
docs: venv tools
	helm-docs --chart-search-root charts --template-files README.md.gotmpl
	$(PY) ci/readme_values.py

# The release artifacts in $(DIST): the chart archive (`helm package`, which the test tier lints) and the
# Python wheel, which carries the same chart as package data (generator/chart).
DIST ?= dist
package: venv
	bash ci/install-tools.sh helm
	helm package charts/katib-nas --destination $(DIST)
	rm -rf build  # setuptools' staging area: a stale one would ship files the package list leaves out
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir $(DIST) .
	rm -rf build

# The real-node tier (part of `make test`; needs root, and its tests skip without it): a one-node
# cluster with a real kubelet and containerd, Katib v0.19.0's standalone install and the project's
# images, built once and cached under ~/.cache/katib-nas (ci/install-node.sh, ci/images/build.sh),
# then `katib-nas install` of ci/realnode-values.yaml end to end (tests/test_realnode.py).
node: tools browser
	@if [ "$$(id -u)" != 0 ]; then echo "not root: skipping the real-node tier's builds (its tests skip too)"; else \
		bash ci/install-node.sh && bash ci/images/build.sh; fi

test-node: setup node
	$(PY) -m pytest tests/test_realnode.py -m realnode

# chart-testing on its own (it also runs inside `make pytest`, with helm-unittest).
ct-lint: setup
	ct lint --config ci/ct.yaml --charts charts/katib-nas

# The main job: check both shipped values files and render their releases to out/, then run the
# microk8s file's search on this machine with no cluster (digits, offline): trials, early stopping,
# the best model, batch predictions, and the search report. Running it again resumes or reuses it.
# It sets up only what it uses (the venv and helm, side by side), not the test tiers' tools.
run:
	$(MAKE) --no-print-directory -j2 venv-local helm
	katib-nas validate values/microk8s.yaml values/k3s-gpu.yaml
	katib-nas render values/microk8s.yaml -o out/microk8s.yaml
	katib-nas render values/k3s-gpu.yaml -o out/k3s-gpu.yaml
	katib-nas run --local values/microk8s.yaml --out out
	katib-nas report values/microk8s.yaml --out out

# The inference server on the best model of `make run` (http://127.0.0.1:8080/ to draw a digit).
serve: venv-local
	katib-nas serve values/microk8s.yaml --out out

# The benchmarks in bench/. Runs `setup` first (the venv, `tools` with the test control plane, Chromium),
# and installs wrk from Debian when missing (needs root).
bench: setup
	@command -v wrk >/dev/null || bash ci/install-debian.sh wrk
	$(PY) bench/bench_generator.py
	$(PY) -W ignore bench/bench_trainer.py
	$(PY) -W ignore bench/bench_serving_cost.py
	$(PY) -W ignore bench/bench_server.py
	$(PY) -W ignore bench/bench_stopping.py
	$(PY) -W ignore bench/bench_search.py
	$(PY) -W ignore bench/bench_replay.py

all: test bench

clean:
	rm -rf out .pytest_cache .mypy_cache .ruff_cache
