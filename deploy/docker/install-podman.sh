#!/usr/bin/env bash
# Installs what `make images` and the container path of the local stack need, only where it
# is missing: podman, runc (crun fails on these machines, see containers.conf), tini (the
# init behind `podman run --init`), busybox-static (the worker base's shell) and
# ca-certificates (the bases' CA bundle). Debian packages, as root, with no questions asked.
set -euo pipefail

missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[ -x /usr/bin/tini-static ] || missing+=(tini)
# The static build: the base copies it alone, without libraries.
[ -x /bin/busybox ] && ! ldd /bin/busybox >/dev/null 2>&1 || missing+=(busybox-static)
[ -f /etc/ssl/certs/ca-certificates.crt ] || missing+=(ca-certificates)
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ]; then
    echo "missing: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and run again" >&2
    exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}" </dev/null >/dev/null
