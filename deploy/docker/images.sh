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
# Tags: :dev-<checkout> (8 hex digits of the checkout's path, which the local stack and the
# tests use, so that checkouts sharing a machine do not replace each other's images) and :dev
# (the last one built here, for running by hand); GEOBATCH_IMAGE_TAG=T tags :T instead of
# both. GEOBATCH_IMAGE_STRIP says what to strip from
# the binaries: all (default: line tables and symbols, 40% of a debug binary), debuginfo (the
# line tables only, as the ECR build does) or none.
set -euo pipefail

target=${1:?usage: $0 TARGET_DIR}
here=$(cd "$(dirname "$0")" && pwd)
repo_root=$(cd "$here/../.." && pwd -P)
export CONTAINERS_CONF=${CONTAINERS_CONF:-$here/containers.conf}
checkout_tag=dev-$(printf %s "$repo_root" | sha256sum | cut -c1-8)
tags=${GEOBATCH_IMAGE_TAG:-$checkout_tag dev}
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
    local tag_args=() tag previous
    for tag in $tags; do tag_args+=(-t "localhost/$name:$tag"); done
    tag=${tags%% *}
    previous=$(podman image inspect --format '{{.Id}}' "localhost/$name:$tag" 2>/dev/null || true)
    # --layers=false: no intermediate image per stage is kept (each would hold the binary).
    podman build --quiet --layers=false -f "$here/${name#geobatch-}.Dockerfile" \
        --build-arg BINARY=prebuilt --build-arg "BASE=$base" \
        --label "io.geobatch.binary-sha256=$(sha256sum "$target/$name" | cut -d' ' -f1)" \
        "${tag_args[@]}" "$context" >/dev/null
    # The image this tag named before is removed unless a container or another tag uses it.
    if [ -n "$previous" ] && [ "$previous" != "$(podman image inspect --format '{{.Id}}' "localhost/$name:$tag")" ]; then
        podman rmi "$previous" >/dev/null 2>&1 || true
    fi
    echo "built localhost/$name:{${tags// /,}} from $target/$name on $base ($(podman image inspect --format '{{.Size}}' "localhost/$name:$tag") bytes)"
}
build geobatch-worker localhost/geobatch-base:debug-nonroot
build geobatch-controller localhost/geobatch-base:nonroot
