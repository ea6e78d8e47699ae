#!/usr/bin/env bash
# Makes the two local base images offline, from files of this Debian machine's packages,
# laid out as the public distroless images the ECR build uses (see docs/deploy.md):
#
#   localhost/geobatch-base:nonroot        like gcr.io/distroless/cc-debian12:nonroot
#   localhost/geobatch-base:debug-nonroot  the same plus busybox's sh and tools in /busybox,
#                                          like gcr.io/distroless/cc-debian12:debug-nonroot
#
# Each holds what the binaries given as arguments link (from ldd: glibc, libm, libgcc_s),
# the CA bundle, /etc/passwd and /etc/group with root and nonroot (65532), /tmp and the
# nonroot home, and nothing else: no package manager, and no shell in the first one.
# Needs busybox-static and ca-certificates (deploy/docker/install-podman.sh installs them).
#
# Usage: base.sh BINARY...   (existing base images are kept; FORCE=1 makes them anew)
set -euo pipefail

[ "$#" -gt 0 ] || { echo "usage: $0 BINARY..." >&2; exit 2; }
repo=localhost/geobatch-base

if [ "${FORCE:-0}" != 1 ] && podman image exists "$repo:nonroot" && podman image exists "$repo:debug-nonroot"; then
    echo "base images $repo:nonroot and $repo:debug-nonroot exist (FORCE=1 to make them anew)"
    exit 0
fi

if [ ! -x /bin/busybox ] || ldd /bin/busybox >/dev/null 2>&1; then
    echo "/bin/busybox is missing or not the static build: install busybox-static" >&2
    exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
root=$work/nonroot
mkdir -p "$root"/etc/ssl/certs "$root"/tmp "$root"/home/nonroot

# What the binaries link, at the paths the dynamic loader looks them up by (with several
# binaries ldd heads each list with a line `PATH:`, one field, which is not a library).
for lib in $(ldd "$@" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } NF > 1 && $1 ~ /^\// { print $1 }' | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
cp -L /etc/ssl/certs/ca-certificates.crt "$root"/etc/ssl/certs/
printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root"/etc/passwd
printf 'root:x:0:\nnonroot:x:65532:\n' >"$root"/etc/group
chmod 1777 "$root"/tmp
chown 65532:65532 "$root"/home/nonroot

# The debug variant: busybox with a link per applet, except its package managers.
debug=$work/debug-nonroot
cp -a "$root" "$debug"
mkdir -p "$debug"/busybox
cp /bin/busybox "$debug"/busybox/busybox
for applet in $(/bin/busybox --list); do
    case "$applet" in busybox | dpkg | dpkg-deb | rpm | rpm2cpio) continue ;; esac
    ln -s busybox "$debug/busybox/$applet"
done

path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
import() { # DIR TAG PATH
    tar --numeric-owner -C "$1" -c . |
        podman import --quiet --change "ENV PATH=$3" --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
            --change "USER 65532:65532" --change "WORKDIR /home/nonroot" - "$repo:$2" >/dev/null
    echo "made $repo:$2 ($(podman image inspect --format '{{.Size}}' "$repo:$2") bytes)"
}
import "$root" nonroot "$path"
import "$debug" debug-nonroot "$path:/busybox"
