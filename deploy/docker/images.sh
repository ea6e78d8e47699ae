#!/usr/bin/env bash
# `make images`: the worker and controller images, offline, with podman, from binaries that
# are already built (the debug build `cargo test --workspace` makes) and the local base
# images (base.sh). Same Dockerfiles as the ECR build, with BINARY=prebuilt and BASE set to
# the local base; see docs/deploy.md.
#
# Each image is labelled with the SHA-256 of the binary it was made from, so the local stack
# runs containers only when the image holds the binary it would otherwise run itself.
#
# Usage: images.sh TARGET_DIR   (the directory holding geobatch-worker and geobatch-controller)
# GEOBATCH_IMAGE_TAG (default dev) tags the images. GEOBATCH_IMAGE_STRIP says what to strip from
# the binaries: all (default: line tables and symbols, 40% of a debug binary), debuginfo (the
# line tables only, as the ECR build does) or none.
set -euo pipefail

target=${1:?usage: $0 TARGET_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
tag=${GEOBATCH_IMAGE_TAG:-dev}
strip=${GEOBATCH_IMAGE_STRIP:-all}

for name in geobatch-worker geobatch-controller; do
    [ -x "$target/$name" ] || { echo "$target/$name is missing: build it first (cargo build --workspace)" >&2; exit 1; }
done
"$here/base.sh" "$target/geobatch-worker" "$target/geobatch-controller"

# The build contexts hold only what the images need: each binary, stripped as asked, and the
# controller's systemd unit.
stage=$target/image-context
rm -rf "$stage"
mkdir -p "$stage/worker" "$stage/controller/deploy/systemd"
cp "$repo_root/deploy/systemd/geobatch-controller.service" "$stage/controller/deploy/systemd/"

build() { # NAME BASE
    local name=$1 base=$2 context=$stage/${1#geobatch-}
    case "$strip" in
        all) strip -o "$context/$name" "$target/$name" ;;
        debuginfo) strip --strip-debug -o "$context/$name" "$target/$name" ;;
        none) cp "$target/$name" "$context/$name" ;;
        *) echo "GEOBATCH_IMAGE_STRIP=$strip: all, debuginfo or none" >&2; exit 2 ;;
    esac
    podman build --quiet -f "$here/${name#geobatch-}.Dockerfile" \
        --build-arg BINARY=prebuilt --build-arg "BASE=$base" \
        --label "io.geobatch.binary-sha256=$(sha256sum "$target/$name" | cut -d' ' -f1)" \
        -t "localhost/$name:$tag" "$context" >/dev/null
    echo "built localhost/$name:$tag from $target/$name on $base ($(podman image inspect --format '{{.Size}}' "localhost/$name:$tag") bytes)"
}
build geobatch-worker localhost/geobatch-base:debug-nonroot
build geobatch-controller localhost/geobatch-base:nonroot
