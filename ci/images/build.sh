#!/usr/bin/env bash
# Builds every image the real-node tier runs, without a registry and without a Docker daemon:
#   - base images made locally with Debian's mmdebstrap, under the names the Dockerfiles use
#     (python:3.11-slim[-bookworm], see ci/images/README.md for the substitution);
#   - Katib v0.19.0's images from its module source: the Python services with Katib's own
#     Dockerfiles (buildah), the Go programs (built by ci/install-node.sh) in thin images the way
#     its Go Dockerfiles assemble them; mysql:8.0.29 stands in as Debian's MariaDB;
#   - the project's images/server/Dockerfile, images/trainer/Dockerfile (PyTorch) and
#     images/trainer/Dockerfile.keras (buildah).
# Each image is saved as an OCI archive with zstd layers, cached by a key over its inputs, and listed in
# $CACHE/images.txt (archive and image name) for the harness to import into containerd.
# Usage: ci/images/build.sh [IMAGE-GROUP...]   groups: base katib ours (default: all). Needs root.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
HERE="$ROOT/ci/images"
KATIB_VERSION=v0.19.0
K8S_VERSION=v1.34.2
PAUSE_IMAGE=registry.k8s.io/pause:3.10 # the harness's containerd config names it as sandbox_image
SUITE=bookworm
CACHE="${XDG_CACHE_HOME:-$HOME/.cache}/katib-nas/images"
STORE="${XDG_CACHE_HOME:-$HOME/.cache}/katib-nas/buildah"
NODE_BIN="$ROOT/.tools/node/bin"
mkdir -p "$CACHE" "$STORE"
buildah() { command buildah --root "$STORE/root" --runroot "$STORE/run" --storage-driver overlay "$@"; }
export BUILDAH_ISOLATION=chroot
# Working containers are this script's alone: any found now were left by a build that was killed,
# with their overlay mounts and layers (a PyTorch image's are gigabytes).
leftover="$(buildah containers --quiet 2>/dev/null | wc -l)"
if ((leftover)); then
  echo "images: removing the $leftover working container(s) a killed build left" >&2
  buildah rm --all >/dev/null
fi
# pip inside RUN steps trusts what this machine trusts (a TLS-inspecting proxy's CA, for one): the
# host's bundle is mounted for the build only and never stored in an image.
HOST_CA=/etc/ssl/certs/ca-certificates.crt
bud() { buildah bud --quiet --network host --pull-never --layers -v "$HOST_CA:$HOST_CA:ro" "$@"; }


# key FUNCTION FILE...: a short hash over the inputs of one image: the function that builds it,
# the helpers it calls and its input files. The python base stays in buildah's store: it is never
# saved, so save's archive format is not among its inputs.
key() {
  local fn=$1 && shift
  { declare -f "$fn" rootfs from_tar && { [[ $fn == build_python ]] || declare -f save; } && cat "$@"; } |
    sha256sum | cut -c1-12
}
have() { [[ -s "$CACHE/$1.tar" ]] && grep -qxF "$1.tar $2" "$CACHE/images.txt" 2>/dev/null; }
# save NAME TAG: the image as an OCI archive, recorded in images.txt. zstd layers keep the archive
# and containerd's copy of it at about half the size of uncompressed ones (the PyTorch trainer's
# 6.2 GB layers take 2.9 GB).
save() {
  local name=$1 && shift
  buildah push --quiet --compression-format zstd "$1" "oci-archive:$CACHE/$name.tar.tmp:$1" >/dev/null
  mv "$CACHE/$name.tar.tmp" "$CACHE/$name.tar"
  # Older builds of the same image leave the list and the cache.
  local prefix="${name%-*}"
  grep -o "^$prefix-[0-9a-f]*\.tar" "$CACHE/images.txt" 2>/dev/null | grep -vxF "$name.tar" | sed "s|^|$CACHE/|" | xargs -r rm -f || true
  grep -v "^$prefix-[0-9a-f]*\.tar " "$CACHE/images.txt" 2>/dev/null >"$CACHE/images.txt.tmp" || true
  echo "$name.tar $1" >>"$CACHE/images.txt.tmp"
  mv "$CACHE/images.txt.tmp" "$CACHE/images.txt"
}
# timed LABEL COMMAND...: runs it and prints how long it took.
timed() {
  local label=$1 started=$SECONDS && shift
  "$@"
  echo "images: $label ready in $((SECONDS - started))s" >&2
}
mirrors=("deb http://deb.debian.org/debian $SUITE main" "deb http://deb.debian.org/debian-security $SUITE-security main")

# rootfs IMAGE TAR PACKAGES [HOOK]: a minimal Debian root filesystem as a tar.
rootfs() {
  mmdebstrap --quiet --variant=minbase --include="$2" --aptopt='Acquire::Retries "3"' \
    --customize-hook="rm -rf \$1/var/lib/apt/lists/* \$1/var/cache/apt/*" ${3:+--customize-hook="$3"} \
    "$SUITE" "$1" "${mirrors[@]}"
}
# from_tar TAR TAG [buildah config args...]: an image whose only layer is TAR.
from_tar() {
  local tar=$1 tag=$2 && shift 2
  local c && c="$(buildah from --quiet scratch)"
  buildah add --quiet "$c" "$tar" / >/dev/null
  buildah config --os linux --arch amd64 "$@" "$c"
  buildah commit --quiet --rm "$c" "$tag" >/dev/null
}

# python:3.11-slim stand-in: Debian bookworm's Python 3.11 with pip, `python`/`pip` on PATH and
# pip allowed to install system-wide, as in the official image (ci/images/README.md).
build_python() {
  local k && k="$(key build_python)"
  if buildah inspect --type image "localhost/python:3.11-slim-$k" >/dev/null 2>&1; then return 0; fi
  local work && work="$(mktemp -d)"
  rootfs "$work/python.tar" python3,python3-pip,python3-setuptools,python3-wheel,ca-certificates,passwd \
    'ln -sf python3 $1/usr/bin/python && ln -sf pip3 $1/usr/bin/pip && rm -f $1/usr/lib/python3*/EXTERNALLY-MANAGED'
  from_tar "$work/python.tar" "localhost/python:3.11-slim-$k" --env LANG=C.UTF-8 --cmd python3
  rm -rf "$work"
  for tag in python:3.11-slim python:3.11-slim-bookworm; do
    buildah tag "localhost/python:3.11-slim-$k" "docker.io/library/$tag" "localhost/$tag"
  done
}

# busybox (Debian's busybox-static package): the local-path provisioner's helper pods and the base of Katib's thin Go images (their
# Dockerfiles use alpine for a shell and a /tmp; Debian's static busybox gives the same).
build_busybox() {
  local k && k="$(key build_busybox)"
  have "busybox-$k" katib-nas.local/busybox:1.35 && return 0
  local work && work="$(mktemp -d)"
  (cd "$work" && apt-get download -qq busybox-static && dpkg-deb -x busybox-static_*.deb pkg)
  mkdir -p "$work/root/bin" "$work/root/tmp" "$work/root/etc"
  cp "$work/pkg/bin/busybox" "$work/root/bin/busybox"
  for applet in $("$work/root/bin/busybox" --list); do
    [[ -e "$work/root/bin/$applet" ]] || ln -s busybox "$work/root/bin/$applet"
  done
  chmod 1777 "$work/root/tmp"
  printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n' >"$work/root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$work/root/etc/group"
  tar -C "$work/root" -cf "$work/busybox-root.tar" .
  from_tar "$work/busybox-root.tar" katib-nas.local/busybox:1.35 --cmd /bin/sh
  save "busybox-$k" katib-nas.local/busybox:1.35
  rm -rf "$work"
}

# The pod sandbox image, from Kubernetes' own pause.c at the pinned version (gcc from Debian).
build_pause() {
  local src && src="$(cd /tmp && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')/build/pause/linux/pause.c"
  local k && k="$(key build_pause "$src")"
  have "pause-$k" "$PAUSE_IMAGE" && return 0
  local work && work="$(mktemp -d)"
  mkdir "$work/root"
  gcc -Os -static -Wall -Werror -DVERSION="$PAUSE_IMAGE" -o "$work/root/pause" "$src"
  strip "$work/root/pause"
  tar -C "$work/root" -cf "$work/pause.tar" .
  from_tar "$work/pause.tar" "$PAUSE_IMAGE" --entrypoint '["/pause"]' --user 65535:65535
  save "pause-$k" "$PAUSE_IMAGE"
  rm -rf "$work"
}

# Katib's Go images: /app/<program>, WORKDIR /app, ENTRYPOINT ["./<program>"], as its Dockerfiles.
build_katib_go() {
  local prog=$1 k && k="$(key build_katib_go "$NODE_BIN/$prog")"
  local tag="ghcr.io/kubeflow/katib/$prog:$KATIB_VERSION"
  have "$prog-$k" "$tag" && return 0
  local c && c="$(buildah from --quiet katib-nas.local/busybox:1.35)"
  buildah copy --quiet "$c" "$NODE_BIN/$prog" "/app/$prog" >/dev/null
  buildah config --workingdir /app --entrypoint "[\"./$prog\"]" --cmd '[]' "$c"
  buildah commit --quiet --rm "$c" "$tag" >/dev/null
  save "$prog-$k" "$tag"
}

# mysql:8.0.29 stand-in for Katib's katib-mysql Deployment: Debian's MariaDB with an entrypoint that
# does what the official image's does for the variables Katib sets (ci/images/mysql-entrypoint.sh).
build_mysql() {
  local k && k="$(key build_mysql "$HERE/mysql-entrypoint.sh" "$HERE/mysql-katib-nas.cnf")"
  have "mysql-$k" docker.io/library/mysql:8.0.29 && return 0
  if ! buildah inspect --type image localhost/mariadb-base >/dev/null 2>&1; then
    local work && work="$(mktemp -d)"
    rootfs "$work/mysql.tar" mariadb-server,mariadb-client,bash \
      'echo "mysql999:x:999:999::/var/lib/mysql:/bin/false" >>$1/etc/passwd && echo "mysql999:x:999:" >>$1/etc/group'
    from_tar "$work/mysql.tar" localhost/mariadb-base
    rm -rf "$work"
  fi
  local c && c="$(buildah from --quiet localhost/mariadb-base)"
  buildah copy --quiet --chmod 0755 "$c" "$HERE/mysql-entrypoint.sh" /usr/local/bin/docker-entrypoint.sh >/dev/null
  buildah copy --quiet --chmod 0644 "$c" "$HERE/mysql-katib-nas.cnf" /etc/mysql/mariadb.conf.d/99-katib-nas.cnf >/dev/null
  buildah config --entrypoint '["docker-entrypoint.sh"]' --cmd mysqld --port 3306 --user 999 "$c"
  buildah commit --quiet --rm "$c" docker.io/library/mysql:8.0.29 >/dev/null
  save "mysql-$k" docker.io/library/mysql:8.0.29
}

# Katib's Python services, with Katib's own Dockerfiles on its module source.
build_katib_python() {
  local name=$1 dir=$2
  local k && k="$(key build_katib_python "$katib_dir/$dir/Dockerfile" "$katib_dir/$dir/requirements.txt")"
  local tag="ghcr.io/kubeflow/katib/$name:$KATIB_VERSION"
  have "$name-$k" "$tag" && return 0
  build_python
  bud -f "$katib_dir/$dir/Dockerfile" -t "$tag" "$katib_dir" >/dev/null
  save "$name-$k" "$tag"
}

# The project's own images, from their Dockerfiles as users build them.
build_ours() {
  local name=$1 dockerfile=$2 tag=$3 && shift 3
  local k && k="$(key build_ours "$ROOT/$dockerfile" $(git -C "$ROOT" ls-files "$@"))"
  have "$name-$k" "$tag" && return 0
  build_python
  bud -f "$ROOT/$dockerfile" -t "$tag" "$ROOT" >/dev/null
  save "$name-$k" "$tag"
}

# The PyTorch trainer, images/trainer/Dockerfile as users build it. It installs torch from PyTorch's
# CPU index, which this machine cannot reach: pytorch_cpu_index.py answers for that index from PyPI
# on 127.0.0.1:443, with a certificate signed by a CA made for this build, and the name points there
# inside the build only (README.md says what this changes). No layer cache and no copy in buildah's
# store once saved: its layers are 6.2 GB.
build_trainer_pytorch() {
  local tag=ghcr.io/katib-nas/trainer:0.1.0
  local k && k="$(key build_trainer_pytorch "$ROOT/images/trainer/Dockerfile" "$HERE/pytorch_cpu_index.py" \
    $(git -C "$ROOT" ls-files images/trainer/katib_nas_trainer images/contract))"
  have "trainer-$k" "$tag" && return 0
  build_python
  index_dir="$(mktemp -d)"
  local d=$index_dir
  openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj "/CN=katib-nas image build CA" \
    -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=download.pytorch.org" -keyout "$d/index.key" -out "$d/index.csr" 2>/dev/null
  printf 'subjectAltName=DNS:download.pytorch.org\n' >"$d/san.ext"
  openssl x509 -req -in "$d/index.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 1 \
    -extfile "$d/san.ext" -out "$d/index.crt" 2>/dev/null
  cat "$HOST_CA" "$d/ca.crt" >"$d/bundle.crt"
  python3 "$HERE/pytorch_cpu_index.py" "$d/index.crt" "$d/index.key" 2>"$d/index.log" &
  index_pid=$!
  # It logs "serving" once bound; a port already taken ends it with the reason in its log.
  local tries=0
  until grep -q "serving on" "$d/index.log"; do
    if ((++tries > 100)) || ! kill -0 "$index_pid" 2>/dev/null; then
      echo "images: the stand-in for PyTorch's CPU index did not start on 127.0.0.1:443:" >&2
      tail -1 "$d/index.log" >&2
      exit 1
    fi
    sleep 0.1
  done
  buildah bud --quiet --network host --pull-never --add-host download.pytorch.org:127.0.0.1 \
    -v "$d/bundle.crt:$HOST_CA:ro" -f "$ROOT/images/trainer/Dockerfile" -t "$tag" "$ROOT" >/dev/null
  stop_index
  save "trainer-$k" "$tag"
  buildah rmi --force "$tag" >/dev/null
}
index_pid="" index_dir=""
stop_index() {
  [[ -z $index_pid ]] || kill "$index_pid" 2>/dev/null || true
  [[ -z $index_dir ]] || rm -rf "$index_dir"
  index_pid="" index_dir=""
}
trap stop_index EXIT

groups=("${@:-base katib ours}")
for group in ${groups[*]}; do
  case "$group" in
  base)
    timed pause build_pause
    timed busybox build_busybox
    timed python build_python
    ;;
  katib)
    katib_dir="$(cd /tmp && GONOSUMDB=github.com/kubeflow/katib GOFLAGS=-mod=mod go mod download -json \
      "github.com/kubeflow/katib@$KATIB_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')"
    timed busybox build_busybox
    timed mysql build_mysql
    timed suggestion-hyperopt build_katib_python suggestion-hyperopt cmd/suggestion/hyperopt/v1beta1
    timed suggestion-optuna build_katib_python suggestion-optuna cmd/suggestion/optuna/v1beta1
    timed earlystopping-medianstop build_katib_python earlystopping-medianstop cmd/earlystopping/medianstop/v1beta1
    [[ -x "$NODE_BIN/file-metrics-collector" ]] || { echo "images: run ci/install-node.sh first" >&2 && exit 1; }
    for prog in katib-controller katib-db-manager file-metrics-collector; do timed "$prog" build_katib_go "$prog"; done
    ;;
  ours)
    timed server build_ours server images/server/Dockerfile ghcr.io/katib-nas/server:0.1.0 images/server images/contract
    timed trainer build_trainer_pytorch
    timed trainer-keras build_ours trainer-keras images/trainer/Dockerfile.keras ghcr.io/katib-nas/trainer-keras:0.1.0 \
      images/trainer/katib_nas_keras images/contract
    ;;
  *) echo "images: unknown group $group (base, katib, ours)" >&2 && exit 2 ;;
  esac
done
echo "images: ready in $CACHE (images.txt)" >&2
