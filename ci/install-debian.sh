#!/usr/bin/env bash
# Debian packages the tests and benchmarks use: chromium (drawing-page test), wrk (server benchmark).
# Usage: ci/install-debian.sh PACKAGE...   Needs root (CI and the dev machines run as root).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-debian: $* missing; run as root or: sudo apt-get install -y $*" >&2
  exit 1
fi
echo "install-debian: apt-get install $* (first run on this machine only)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "$@" >/dev/null
