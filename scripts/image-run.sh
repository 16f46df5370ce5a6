#!/usr/bin/env bash
# Run one command inside the built image the way a locked-down pod runs it, without a container
# runtime (podman run cannot set rlimits on some VMs): the image's user (10001), its environment
# and working directory, a read-only root filesystem, and only /tmp (a fresh tmpfs) and /data (a
# host directory) writable. The host's network is shared, so a server inside listens on the
# host's loopback. Needs root (buildah mount, unshare); the container is removed on exit.
#
#   scripts/image-run.sh [-t TAG] [-d DATA_DIR] [-e NAME=VALUE]... [--] COMMAND [ARG]...
#
# TAG defaults to localhost/lakeserve:ci (scripts/image.sh builds it); DATA_DIR to a new temporary
# directory. The command's exit code is the script's.
set -euo pipefail

usage="usage: $0 [-t TAG] [-d DATA_DIR] [-e NAME=VALUE]... [--] COMMAND [ARG]..."
tag=localhost/lakeserve:ci
data=""
extra=()
while getopts "t:d:e:" opt; do
    case $opt in
    t) tag=$OPTARG ;;
    d) data=$OPTARG ;;
    e) extra+=("$OPTARG") ;;
    *) echo "$usage" >&2; exit 2 ;;
    esac
done
shift $((OPTIND - 1))
if [ $# -eq 0 ]; then
    echo "$usage" >&2
    exit 2
fi
if [ -z "$data" ]; then
    data=$(mktemp -d)
fi
user=$(podman image inspect --format '{{.Config.User}}' "$tag")
workdir=$(podman image inspect --format '{{.Config.WorkingDir}}' "$tag")
mapfile -t env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$tag" \
    | sed '/^$/d')
# /data belongs to the image's user, as the pod's fsGroup makes a mounted volume.
chown "$user" "$data"

container=$(buildah from --pull=never --quiet "$tag")
# shellcheck disable=SC2329  # called by the traps
cleanup() {
    buildah umount "$container" >/dev/null 2>&1 || true
    buildah rm "$container" >/dev/null 2>&1 || true
}
trap cleanup EXIT
trap 'exit 143' TERM INT
rootfs=$(buildah mount "$container")

# In a private mount namespace (and PID namespace: the command is PID 1's child and everything it
# starts dies with it): the root bound read-only, then the writable and kernel mounts on top.
set +e
# shellcheck disable=SC2016  # expanded by the inner bash, from its arguments
unshare --mount --pid --fork --propagation private -- bash -euc '
    root=$1 data=$2 user=$3 workdir=$4
    shift 4
    new=/run/lakeserve-image.$$
    mkdir -p "$new"
    mount --bind "$root" "$new"
    mount -o remount,bind,ro "$new"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$new/tmp"
    mount --bind "$data" "$new/data"
    mount -t proc proc "$new/proc"
    mount --rbind /dev "$new/dev"
    mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs "$new/dev/shm"
    mount --rbind /sys "$new/sys"
    # DNS and hosts from the host (a pod gets them from the kubelet); the image has none.
    mount --bind /etc/resolv.conf "$new/etc/resolv.conf" 2>/dev/null || true
    mount --bind /etc/hosts "$new/etc/hosts" 2>/dev/null || true
    exec chroot --userspec="$user" "$new" /usr/bin/env -C "$workdir" "$@"
' image-run "$rootfs" "$data" "$user" "$workdir" -i "${env[@]}" "${extra[@]}" "$@"
status=$?
set -e
exit $status
