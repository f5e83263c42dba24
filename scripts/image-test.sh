#!/usr/bin/env bash
# Build the Dockerfile WITHOUT a Docker engine and run both jobs inside the image against the sandbox.
#
#   bash scripts/image-test.sh            (or: make image-test)
#
# Why this shape: this machine has no Docker engine and reaches no container registry, only Debian's
# and PyPI's package mirrors. So the base image is made from Debian packages (mmdebstrap) and imported
# into buildah's local storage, the Dockerfile is built with `buildah bud --isolation chroot` FROM that
# base (the host CA bundle is handed to pip as the `pip_ca` build secret: pip inside the build must
# trust the same TLS chain the host does), and each job runs the way Fargate runs it: the image's
# ENTRYPOINT, ENV and USER, a READ-ONLY root filesystem with the task volume on /tmp mounted the way
# ECS mounts it, and only the sandbox's environment (from <state>/env.json), on the host network so the
# sandbox on 127.0.0.1 is reachable.
#
# The /tmp volume, as ECS makes it (not a tmpfs, which is 1777 and would hide the problem): ECS
# creates an empty directory owned by root, mode 0755, and bind-mounts it at the container path; only
# when the image declares that path as a VOLUME does it first fill the volume from the image's path,
# contents, owner and mode included (Amazon ECS developer guide, "Use bind mounts with Amazon ECS",
# considerations: the ECS data plane looks for a VOLUME directive whose path equals the mount's
# containerPath and copies the data at that path into the volume). Docker does the same for a declared
# VOLUME. So a uid-10001 job can write /tmp on
# Fargate only if the image declares VOLUME /tmp and its /tmp is 1777; the probe below checks both.
#
# The base rootfs tarball is cached under .image-build/ and the imported base image is kept in buildah's
# storage (keyed by the recipe), so only the first run pays for mmdebstrap. The app image itself is
# built from scratch every run (no layer cache: the pip install from the constraints is part of what is
# tested), and the previous run's leftovers (untagged images) are pruned first, so storage stays bounded.
#
# Env knobs: IMAGE_TEST_PERIOD (default 2026-10), PIP_CA_BUNDLE (default the Debian CA bundle).
# Logs: .image-build/{build,probe,help,create,send,sandbox}.log (and <job>-host.log for the
# reference runs). Needs root (mounts, chroot).
set -euo pipefail

# ---- read-only runner (re-entered inside a private mount namespace, see run_readonly) -------------
if [[ "${1:-}" == "__in_namespace" ]]; then
    # args: __in_namespace <rootfs> <user> <env file (NUL separated K=V)> <out dir> <volume dir>
    #       <image volumes file (NUL separated paths)> -- <command...>
    shift
    rootfs=$1 user=$2 env_file=$3 out_dir=$4 volume=$5 image_volumes=$6
    shift 7
    mount --bind "$rootfs" "$rootfs"
    # The task volume "tmp" as ECS provides it: a fresh, empty, root-owned 0755 directory ...
    rm -rf "$volume" && mkdir -p "$volume" && chown 0:0 "$volume" && chmod 0755 "$volume"
    # ... filled from the image (contents, owner, mode) only if the image declares /tmp a VOLUME.
    if grep -qzx -- /tmp "$image_volumes"; then
        cp -a "$rootfs/tmp/." "$volume/"
        chown --reference="$rootfs/tmp" "$volume"
        chmod --reference="$rootfs/tmp" "$volume"
    fi
    mount --bind "$volume" "$rootfs/tmp"
    mount -t proc proc "$rootfs/proc"
    mount --rbind /dev "$rootfs/dev"
    # Host paths the sandbox env points at (its CA bundle, state files) appear at the same path,
    # read-only. Their mount points go into the throwaway container layer (or the volume) first.
    bound=()
    while IFS= read -r -d '' host_path; do
        for done_path in "${bound[@]}"; do
            [[ "$host_path" == "$done_path"/* ]] && continue 2 # already visible through its folder
        done
        if [[ -d "$host_path" ]]; then
            mkdir -p "$rootfs$host_path"
        elif [[ ! -e "$rootfs$host_path" ]]; then
            mkdir -p "$(dirname "$rootfs$host_path")" && touch "$rootfs$host_path"
        fi
        mount --bind "$host_path" "$rootfs$host_path"
        mount -o remount,bind,ro "$rootfs$host_path"
        bound+=("$host_path")
    done < "$env_file.paths"
    mount -o remount,bind,ro "$rootfs"
    env_args=()
    while IFS= read -r -d '' kv; do env_args+=("$kv"); done < "$env_file"
    rc=0
    chroot --userspec="$user" "$rootfs" /usr/bin/env -i "${env_args[@]}" "$@" || rc=$?
    # /tmp is the only writable place: the job's summary (SUMMARY_PATH) is copied out from there.
    cp "$rootfs/tmp/summary.json" "$out_dir/" 2> /dev/null || true
    exit "$rc"
fi

cd "$(dirname "$0")/.."
ROOT=$PWD
BUILD_DIR="$ROOT/.image-build"
PY="$ROOT/.venv/bin/python"
IMAGE="localhost/qbo-invoice-processor:image-test"
SUITE=bookworm
BASE_PACKAGES="python3,python3-venv,ca-certificates,passwd"
PERIOD="${IMAGE_TEST_PERIOD:-2026-10}"
CA_BUNDLE="${PIP_CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}"
STARTED=$SECONDS
PASSED=0
FAILED=0

log() { printf '[image-test] %s\n' "$*" >&2; }
pass() {
    PASSED=$((PASSED + 1))
    printf 'PASS: %s\n' "$*"
}
fail() {
    FAILED=$((FAILED + 1))
    printf 'FAIL: %s\n' "$*"
}
finish() {
    printf 'image-test took %ss\n' "$((SECONDS - STARTED))"
    printf 'image-test: %d passed, %d failed\n' "$PASSED" "$FAILED"
    [[ $FAILED -eq 0 ]]
}
die() {
    fail "$*"
    finish || exit 1
}

ensure_tools() {
    if command -v buildah > /dev/null && command -v mmdebstrap > /dev/null; then
        return 0
    fi
    [[ $(id -u) -eq 0 ]] || die "buildah/mmdebstrap missing and not root: apt-get install -y buildah mmdebstrap"
    command -v apt-get > /dev/null || die "buildah/mmdebstrap missing and no apt-get on this machine"
    log "installing buildah and mmdebstrap (Debian packages)"
    local install=(apt-get install -y -q --no-install-recommends buildah mmdebstrap)
    if ! DEBIAN_FRONTEND=noninteractive "${install[@]}" > "$BUILD_DIR/apt.log" 2>&1; then
        apt-get update -q >> "$BUILD_DIR/apt.log" 2>&1 || true
        DEBIAN_FRONTEND=noninteractive "${install[@]}" >> "$BUILD_DIR/apt.log" 2>&1 ||
            die "apt-get install buildah mmdebstrap failed (see $BUILD_DIR/apt.log)"
    fi
}

debian_mirror() {
    local mirror=""
    if [[ -f /etc/apt/sources.list.d/debian.sources ]]; then
        mirror=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
    fi
    echo "${mirror:-http://deb.debian.org/debian}"
}

# A Debian bookworm rootfs with python3 (3.11) and venv, imported as a local image. Named after a hash
# of its recipe, so a changed package list makes a new one and an unchanged one is reused.
ensure_base_image() {
    local mirror recipe tarball ctr
    mirror=$(debian_mirror)
    recipe=$(printf '%s %s %s apt' "$SUITE" "$mirror" "$BASE_PACKAGES" | sha256sum | cut -c1-12)
    BASE_IMAGE="localhost/qbo-invoice-processor-base:$SUITE-$recipe"
    if buildah inspect --type image "$BASE_IMAGE" > /dev/null 2>&1; then
        log "base image $BASE_IMAGE already in buildah storage"
        return 0
    fi
    tarball="$BUILD_DIR/base-$SUITE-$recipe.tar"
    if [[ ! -s "$tarball" ]]; then
        log "making the base rootfs with mmdebstrap ($SUITE, $BASE_PACKAGES, mirror $mirror)"
        mmdebstrap --variant=apt --include="$BASE_PACKAGES" --format=tar "$SUITE" "$tarball.part" "$mirror" \
            > "$BUILD_DIR/mmdebstrap.log" 2>&1 || die "mmdebstrap failed (see $BUILD_DIR/mmdebstrap.log)"
        mv "$tarball.part" "$tarball"
    fi
    log "importing $tarball as $BASE_IMAGE"
    ctr=$(buildah from --quiet scratch)
    buildah add --quiet "$ctr" "$tarball" / > /dev/null
    buildah config --env LANG=C.UTF-8 \
        --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$ctr"
    buildah commit --quiet --rm "$ctr" "$BASE_IMAGE" > /dev/null
}

build_image() {
    local secret=()
    if [[ -s "$CA_BUNDLE" ]]; then
        secret=(--secret "id=pip_ca,src=$CA_BUNDLE")
    fi
    buildah rmi --prune > /dev/null 2>&1 || true # untagged images of earlier runs
    log "buildah bud --isolation chroot --build-arg BASE_IMAGE=$BASE_IMAGE (log: $BUILD_DIR/build.log)"
    if buildah bud --isolation chroot --build-arg "BASE_IMAGE=$BASE_IMAGE" "${secret[@]}" \
        -t "$IMAGE" -f Dockerfile . > "$BUILD_DIR/build.log" 2>&1; then
        pass "image built from the Dockerfile ($IMAGE, base $BASE_IMAGE)"
    else
        tail -n 30 "$BUILD_DIR/build.log" >&2
        die "buildah bud failed (see $BUILD_DIR/build.log)"
    fi
}

# Reads the image config the way a container runtime would: ENTRYPOINT, USER, ENV.
read_image_config() {
    buildah inspect --type image "$IMAGE" > "$BUILD_DIR/inspect.json"
    "$PY" - "$BUILD_DIR/inspect.json" "$BUILD_DIR" << 'PYTHON'
import json
import sys
from pathlib import Path

config = json.loads(Path(sys.argv[1]).read_text())["OCIv1"]["config"]
out = Path(sys.argv[2])
(out / "entrypoint").write_bytes(b"".join(part.encode() + b"\0" for part in config.get("Entrypoint") or []))
(out / "user").write_text(config.get("User") or "")
(out / "image-env").write_bytes(b"".join(kv.encode() + b"\0" for kv in config.get("Env") or []))
(out / "image-volumes").write_bytes(b"".join(v.rstrip("/").encode() + b"\0" for v in config.get("Volumes") or {}))
PYTHON
    ENTRYPOINT=()
    while IFS= read -r -d '' part; do ENTRYPOINT+=("$part"); done < "$BUILD_DIR/entrypoint"
    IMAGE_USER=$(cat "$BUILD_DIR/user")
    if [[ "${ENTRYPOINT[*]}" == "invoice-processor" ]]; then
        pass "ENTRYPOINT is [\"invoice-processor\"]"
    else
        fail "ENTRYPOINT is [${ENTRYPOINT[*]}], expected invoice-processor"
    fi
    local uid=${IMAGE_USER%%:*}
    if [[ -n "$uid" && "$uid" != "0" && "$uid" != "root" ]]; then
        pass "image runs as non-root user $IMAGE_USER"
    else
        die "image USER is '${IMAGE_USER}' (must be a non-root uid)"
    fi
}

# Writes the container's environment: the image's ENV, overridden by the sandbox's env.json, plus the
# list of host paths that env refers to (bind-mounted read-only at the same place).
write_container_env() {
    local env_json=$1 target=$2
    "$PY" - "$BUILD_DIR/image-env" "$env_json" "$target" << 'PYTHON'
import json
import os
import sys
from pathlib import Path

image_env = dict(
    kv.split("=", 1) for kv in Path(sys.argv[1]).read_bytes().decode().split("\0") if "=" in kv
)
extra = json.loads(Path(sys.argv[2]).read_text()) if sys.argv[2] else {}
extra.pop("PATH", None)  # the image's PATH finds the venv; the host's would not
merged = {**image_env, **{k: str(v) for k, v in extra.items()}, "SUMMARY_PATH": "/tmp/summary.json"}
Path(sys.argv[3]).write_bytes(b"".join(f"{k}={v}".encode() + b"\0" for k, v in merged.items()))
paths = sorted({v for v in extra.values() if isinstance(v, str) and v.startswith("/") and os.path.exists(v)})
Path(sys.argv[3] + ".paths").write_bytes(b"".join(p.encode() + b"\0" for p in paths))
PYTHON
}

# run_readonly <name> <env file> -- <command...>; output in $BUILD_DIR/<name>.log
run_readonly() {
    local name=$1 env_file=$2
    shift 3
    local out_dir="$BUILD_DIR/out-$name"
    rm -rf "$out_dir" && mkdir -p "$out_dir"
    local rc=0
    unshare --mount --propagation private -- bash "$ROOT/scripts/image-test.sh" __in_namespace \
        "$ROOTFS" "$IMAGE_USER" "$env_file" "$out_dir" "$BUILD_DIR/volume-tmp" "$BUILD_DIR/image-volumes" \
        -- "$@" > "$BUILD_DIR/$name.log" 2>&1 || rc=$?
    return "$rc"
}

# The same command run by the dev install on the host, against the same sandbox: the reference the
# image must match (the default scenario has deliberately broken registry items, so "exit 1 with
# those two clients failed" is the right answer there, and only a comparison can tell right from wrong).
run_reference() {
    local name=$1 env_json=$2
    shift 2
    local out_dir="$BUILD_DIR/out-$name-host"
    rm -rf "$out_dir" && mkdir -p "$out_dir"
    local env_args=()
    while IFS= read -r -d '' kv; do env_args+=("$kv"); done < <("$PY" - "$env_json" "$out_dir" << 'PYTHON'
import json
import sys

env = json.loads(open(sys.argv[1]).read())
env.update(PATH="/usr/bin:/bin", HOME=sys.argv[2], LOG_FORMAT="json", SUMMARY_PATH=f"{sys.argv[2]}/summary.json")
sys.stdout.write("".join(f"{k}={v}\0" for k, v in env.items()))
PYTHON
    )
    local rc=0
    env -i "${env_args[@]}" "$ROOT/.venv/bin/invoice-processor" "$@" > "$BUILD_DIR/$name-host.log" 2>&1 || rc=$?
    return "$rc"
}

# check_job <name> <env json> <entrypoint args...>: the job in the image must finish (no crash, exit 0
# or 1), as a dry run, with the same exit code, counts and per-item table as the dev install.
check_job() {
    local name=$1 env_json=$2
    shift 2
    local rc=0 host_rc=0
    run_readonly "$name" "$BUILD_DIR/env-sandbox" -- "${ENTRYPOINT[@]}" "$@" || rc=$?
    run_reference "$name" "$env_json" "$@" || host_rc=$?
    local verdict
    if verdict=$("$PY" - "$BUILD_DIR/out-$name/summary.json" "$BUILD_DIR/out-$name-host/summary.json" "$rc" "$host_rc" << 'PYTHON'
import json
import sys
from pathlib import Path

image_path, host_path, rc, host_rc = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
if not image_path.is_file():
    sys.exit(f"no summary written in the image (exit {rc})")
image = json.loads(image_path.read_text())
if "error" in image or rc not in (0, 1) or image.get("exit_code") != rc:
    sys.exit(f"exit {rc}, error: {image.get('error', '-')}")
if image.get("dry_run") is not True:
    sys.exit("the run was not a dry run")
host = json.loads(host_path.read_text()) if host_path.is_file() else {}
for key in ("exit_code", "counts", "table"):
    if image.get(key) != host.get(key):
        sys.exit(f"{key} differs from the dev install (host exit {host_rc}): {image.get(key)!r} != {host.get(key)!r}")
counts = ", ".join(f"{k} {v}" for k, v in (image.get("counts") or {}).items() if v)
print(f"exit {rc}, same as the dev install" + (f" ({counts})" if counts else ""))
PYTHON
    ); then
        pass "invoice-processor $* in the image (read-only root, uid $IMAGE_USER): $verdict"
    else
        tail -n 20 "$BUILD_DIR/$name.log" >&2
        fail "invoice-processor $* in the image: ${verdict:-see log} (logs: $BUILD_DIR/$name.log, $BUILD_DIR/$name-host.log)"
    fi
}

SANDBOX_STATE=""
CONTAINER=""
cleanup() {
    if [[ -n "$SANDBOX_STATE" ]]; then
        "$PY" -m sandbox down --state-dir "$SANDBOX_STATE" > /dev/null 2>&1 || log "sandbox down failed"
        rm -rf "$SANDBOX_STATE"
    fi
    if [[ -n "$CONTAINER" ]]; then
        buildah umount "$CONTAINER" > /dev/null 2>&1 || true
        buildah rm "$CONTAINER" > /dev/null 2>&1 || true
    fi
}
trap cleanup EXIT

main() {
    mkdir -p "$BUILD_DIR"
    [[ -x "$PY" ]] || die "$PY missing: run make install first"
    ensure_tools
    pass "buildah $(buildah --version | awk '{print $3}') and mmdebstrap available"
    ensure_base_image
    build_image
    read_image_config

    # Working containers of an interrupted earlier run (its pid is gone) would pin old images.
    local name
    for name in $(buildah containers --format '{{.ContainerName}}' | grep '^image-test-[0-9]*$' || true); do
        kill -0 "${name#image-test-}" 2> /dev/null || buildah rm "$name" > /dev/null 2>&1 || true
    done
    CONTAINER=$(buildah from --quiet --pull-never --name "image-test-$$" "$IMAGE")
    ROOTFS=$(buildah mount "$CONTAINER")

    # No sandbox needed to prove the runs really get a read-only root with a writable /tmp ...
    write_container_env "" "$BUILD_DIR/env-plain"
    if grep -qzx -- /tmp "$BUILD_DIR/image-volumes"; then
        pass "the image declares VOLUME /tmp (so ECS fills the task volume from the image's /tmp)"
    else
        fail "the image does not declare VOLUME /tmp: on Fargate /tmp would be an empty root-owned 0755 volume"
    fi
    run_readonly probe "$BUILD_DIR/env-plain" -- /bin/sh -c \
        'touch /probe || true; touch /tmp/probe && echo tmp-writable; stat -c "tmp-mode %a" /tmp; id -u' || true
    if grep -q "Read-only file system" "$BUILD_DIR/probe.log" && grep -q "tmp-writable" "$BUILD_DIR/probe.log" &&
        grep -qx "tmp-mode 1777" "$BUILD_DIR/probe.log" &&
        [[ $(tail -n 1 "$BUILD_DIR/probe.log") == "${IMAGE_USER%%:*}" ]]; then
        pass "runs get a read-only root filesystem, /tmp as an ECS-style task volume (1777, writable) and uid ${IMAGE_USER%%:*}"
    else
        cat "$BUILD_DIR/probe.log" >&2
        fail "want a read-only root and /tmp writable (mode 1777) for uid ${IMAGE_USER%%:*}; got $(grep -E 'tmp-mode|denied|Read-only' "$BUILD_DIR/probe.log" | tr '\n' ';') (log: $BUILD_DIR/probe.log)"
    fi
    # ... and that the console script starts there.
    if run_readonly help "$BUILD_DIR/env-plain" -- "${ENTRYPOINT[@]}" --help &&
        grep -q -- "--create-invoices" "$BUILD_DIR/help.log"; then
        pass "entrypoint --help runs with a read-only root filesystem"
    else
        cat "$BUILD_DIR/help.log" >&2
        fail "entrypoint --help failed in the image (log: $BUILD_DIR/help.log)"
    fi

    SANDBOX_STATE=$(mktemp -d "$BUILD_DIR/sandbox.XXXXXX")
    chmod 0755 "$SANDBOX_STATE" # the job runs as uid 10001 and must read the sandbox's CA bundle
    log "starting the sandbox (state $SANDBOX_STATE)"
    if ! "$PY" -m sandbox up --state-dir "$SANDBOX_STATE" > "$BUILD_DIR/sandbox.log" 2>&1; then
        cat "$BUILD_DIR/sandbox.log" >&2
        die "sandbox up failed (log: $BUILD_DIR/sandbox.log)"
    fi
    [[ -s "$SANDBOX_STATE/env.json" ]] || die "sandbox wrote no $SANDBOX_STATE/env.json"
    write_container_env "$SANDBOX_STATE/env.json" "$BUILD_DIR/env-sandbox"

    check_job create "$SANDBOX_STATE/env.json" --create-invoices --dry-run --period "$PERIOD"
    check_job send "$SANDBOX_STATE/env.json" --send-invoices --dry-run
    finish
}

main "$@"
