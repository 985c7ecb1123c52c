#!/usr/bin/env bash
# Debian's chromium for tests/test_server_page.py. Needs root (CI and the dev machines run as root).
set -euo pipefail
if [ "$(id -u)" != 0 ]; then
  echo "install-browser: chromium is missing; run as root or: sudo apt-get install -y chromium" >&2
  exit 1
fi
echo "install-browser: apt-get install chromium (first run on this machine only)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends chromium >/dev/null
