#!/usr/bin/env bash
# Build the worker image with podman, for tests/test_container.py.
#
#   bash .ci/podman.sh && . .ci/cache/podman.env
#
# No Docker engine runs on CI machines and no registry can be reached (see
# shared/containers-on-ci.md), so this script, idempotently and without
# questions:
#   1. installs podman, runc and debootstrap with apt-get (if missing);
#   2. writes a containers.conf and storage.conf of its own (runc, fixed
#      ulimits, storage in the cache folder) and never changes them after;
#   3. makes a stand-in for python:3.11-slim from Debian packages (debootstrap)
#      and tags it docker.io/library/python:3.11-slim, if not there yet;
#   4. builds worker/Dockerfile on it, offline (--pull=never, --network none,
#      wheels downloaded on the host), as $DS_WORKER_IMAGE.
# It writes the variables the tests need (CONTAINERS_CONF,
# CONTAINERS_STORAGE_CONF, DS_WORKER_IMAGE) to .ci/cache/podman.env and prints
# them as export lines on stdout; everything else goes to stderr.
#
# Environment: DS_PODMAN_CACHE (default .ci/cache/podman, gitignored),
# DS_WORKER_IMAGE (default localhost/ds-worker:test), DS_PODMAN_BASE_TAR
# (default /var/cache/ds-ci/python-3.11-slim-standin.tar: the stand-in's root
# file system, kept across clones; delete it to make a fresh one).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${DS_PODMAN_CACHE:-$REPO/.ci/cache/podman}
IMAGE=${DS_WORKER_IMAGE:-localhost/ds-worker:test}
BASE=docker.io/library/python:3.11-slim
ENV_FILE=$REPO/.ci/cache/podman.env
BASE_TAR=${DS_PODMAN_BASE_TAR:-/var/cache/ds-ci/python-3.11-slim-standin.tar}
T0=$SECONDS

log() { echo "podman.sh [$((SECONDS - T0))s]: $*" >&2; }
exec </dev/null

# 1. Tools ------------------------------------------------------------------
missing=()
for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if [ ${#missing[@]} -gt 0 ]; then
    log "installing ${missing[*]}"
    apt-get update -qq >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq podman runc debootstrap >&2
fi

# 2. Configuration (written once; a changed storage config makes podman hang) -
mkdir -p "$CACHE"
write_once() {  # write_once FILE CONTENT: create FILE, or check it is unchanged
    if [ ! -e "$1" ]; then
        printf '%s\n' "$2" >"$1"
    elif [ "$(cat "$1")" != "$2" ]; then
        echo "podman.sh: $1 differs from what this script writes; remove $CACHE to start afresh" >&2
        exit 1
    fi
}
write_once "$CACHE/containers.conf" '[containers]
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
runtime = "runc"'
write_once "$CACHE/storage.conf" "[storage]
driver = \"overlay\"
graphroot = \"$CACHE/storage\"
runroot = \"$CACHE/run\""
export CONTAINERS_CONF=$CACHE/containers.conf
export CONTAINERS_STORAGE_CONF=$CACHE/storage.conf

# 3. Stand-in base image ------------------------------------------------------
# The debootstrap'd root file system is also kept as a tar in BASE_TAR (outside
# the clone), so later runs on the same machine import it in seconds.
if podman image exists "$BASE"; then
    log "base image $BASE present"
elif [ -s "$BASE_TAR" ]; then
    log "importing $BASE from $BASE_TAR"
    podman import --change 'CMD ["python3"]' "$BASE_TAR" "$BASE" >&2
else
    log "making $BASE from Debian packages (debootstrap)"
    rootfs=$CACHE/rootfs
    for attempt in 1 2; do  # a second try if the mirror hiccups
        rm -rf "$rootfs"
        debootstrap --variant=minbase --include=python3,python3-pip,ca-certificates \
            bookworm "$rootfs" >"$CACHE/debootstrap.log" 2>&1 && break
        tail -20 "$CACHE/debootstrap.log" >&2
        [ "$attempt" = 2 ] && exit 1
        log "debootstrap failed; trying once more"
    done
    rm -f "$rootfs"/usr/lib/python3.*/EXTERNALLY-MANAGED
    ln -sf python3 "$rootfs/usr/bin/python"
    ln -sf pip3 "$rootfs/usr/bin/pip"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$(dirname "$BASE_TAR")"
    tar -C "$rootfs" -c . | tee "$BASE_TAR.part" \
        | podman import --change 'CMD ["python3"]' - "$BASE" >&2
    mv "$BASE_TAR.part" "$BASE_TAR"
    rm -rf "$rootfs"
fi

# 4. Worker image -------------------------------------------------------------
# The build runs with no network: the host's pip (which knows this machine's
# index and proxy CA) downloads the wheels, and the build installs only those.
log "downloading worker wheels on the host"
wheels=$CACHE/wheels
mkdir -p "$wheels"
python3 -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --python-version 3.11 --platform any --implementation py --abi none \
    -d "$wheels" -r "$REPO/worker/requirements.txt" >&2
log "building $IMAGE"
podman build --pull=never --network none \
    -v "$wheels:/wheels:ro" \
    --build-arg BASE_IMAGE="$BASE" \
    --build-arg PIP_EXTRA_ARGS="--no-index --find-links /wheels" \
    -t "$IMAGE" -f "$REPO/worker/Dockerfile" "$REPO/worker" >&2
podman image prune -f >/dev/null  # the previous build's layers, if any
log "built $IMAGE"

mkdir -p "$(dirname "$ENV_FILE")"
cat >"$ENV_FILE" <<EOF
export CONTAINERS_CONF=$CONTAINERS_CONF
export CONTAINERS_STORAGE_CONF=$CONTAINERS_STORAGE_CONF
export DS_WORKER_IMAGE=$IMAGE
EOF
cat "$ENV_FILE"
log "done in $((SECONDS - T0))s (variables in $ENV_FILE)"
