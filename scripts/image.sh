#!/usr/bin/env bash
# Build the project image without a Docker daemon or a registry: Debian's buildah (chroot
# isolation), a base image made with debootstrap from Debian's packages, torch and any wheel the
# host has already built (llama-cpp-python) passed in as a read-only wheel directory.
#
#   scripts/image.sh [TAG]      default TAG: localhost/lakeserve:ci
#
# Layers are cached (buildah --layers): a re-run with unchanged pyproject.toml/constraints.txt
# rebuilds only the code layers. With internet access, `docker build .` uses the defaults instead.
set -euo pipefail
cd "$(dirname "$0")/.."

TAG=${1:-localhost/lakeserve:ci}
BASE=${LAKESERVE_BASE_IMAGE:-localhost/lakeserve-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
WORK=.cache/image
PIP=${PIP:-.venv/bin/python -m pip}
# The CA bundle pip trusts here (this machine's, which may include a TLS-inspecting proxy's CA).
CA=${PIP_CERT:-/etc/ssl/certs/ca-certificates.crt}

missing=()
for tool in buildah podman debootstrap; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
        "${missing[@]}" crun fuse-overlayfs uidmap >/dev/null
fi
mkdir -p "$WORK"

# 1. The base: Debian bookworm with Python 3.11 as `python`, what python:3.11-slim offers.
if ! podman image exists "$BASE"; then
    echo "base image: debootstrap bookworm into $WORK/rootfs"
    rm -rf "$WORK/rootfs"
    debootstrap --variant=minbase \
        --include=python3,python3-venv,python3-dev,python-is-python3,ca-certificates \
        bookworm "$WORK/rootfs" "$MIRROR" >"$WORK/debootstrap.log"
    {
        echo "deb $MIRROR bookworm main"
        echo "deb $MIRROR bookworm-updates main"
        echo "deb ${MIRROR%/debian}/debian-security bookworm-security main"
    } >"$WORK/rootfs/etc/apt/sources.list"
    rm -rf "$WORK/rootfs/var/cache/apt/archives/"*.deb "$WORK/rootfs/var/lib/apt/lists/"*
    tar -C "$WORK/rootfs" -c . | podman import \
        -c 'ENV LANG=C.UTF-8' \
        -c 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        -c 'CMD ["python"]' - "$BASE" >/dev/null
    rm -rf "$WORK/rootfs"
fi

# 2. Wheels the build would otherwise fetch from PyTorch's index or compile: torch's CPU build and
#    llama-cpp-python, taken from this machine (pip's wheel cache, its find-links directories).
mkdir -p "$WORK/wheels"
torch=$(sed -n 's/^torch==//p' constraints.txt)
llama=$(sed -n 's/^llama_cpp_python==//p' constraints.txt)
CMAKE_ARGS="-DGGML_NATIVE=OFF" $PIP wheel --quiet --no-deps --wheel-dir "$WORK/wheels" \
    "torch==$torch" "llama_cpp_python==$llama"

# 3. The image. Superseded layers pile up (a dependency rebuild leaves ~3.5 GB behind): with
#    under LAKESERVE_IMAGE_MIN_FREE_GB (20) free, dangling images go first, cache included.
store=$(podman info --format '{{.Store.GraphRoot}}')
free_kb=$(df -Pk "$store" | awk 'NR == 2 {print $4}')
if [ "$free_kb" -lt $((${LAKESERVE_IMAGE_MIN_FREE_GB:-20} * 1024 * 1024)) ]; then
    echo "under ${LAKESERVE_IMAGE_MIN_FREE_GB:-20} GB free in $store: pruning dangling images"
    podman image prune --force >/dev/null
fi
started=$(date +%s)
buildah bud --isolation chroot --pull=never --layers --force-rm \
    --volume "$PWD/$WORK/wheels:/wheels:ro" \
    --volume "$CA:/run/host-ca.crt:ro" --build-arg CA_BUNDLE=/run/host-ca.crt \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg TORCH_INDEX_URL= \
    --build-arg WHEELS=/wheels \
    --tag "$TAG" .
echo "built $TAG in $(($(date +%s) - started)) s"
