#!/usr/bin/env bash
# Install one Debian package without letting it start a daemon:
#
#     bash .ci/apt-install-quiet.sh PACKAGE BINARY [BINARY ...]
#
# Idempotent: a fast no-op when every BINARY is already on PATH. A package's post-install
# script may start its service (Prometheus on 0.0.0.0:9090, Alertmanager on all interfaces
# gossiping on :9094). While installing, /usr/sbin/policy-rc.d answers 101 ("action
# forbidden"), so invoke-rc.d and deb-systemd-invoke start nothing; the previous
# policy-rc.d (or its absence) is restored afterwards. If an init system started the
# service anyway, it is stopped and disabled. The tests start their own servers on
# 127.0.0.1 with temporary directories.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 PACKAGE BINARY [BINARY ...]" >&2
    exit 2
fi
PACKAGE="$1"
shift

missing=0
for binary in "$@"; do
    command -v "$binary" >/dev/null 2>&1 || missing=1
done
if [ "$missing" -eq 0 ]; then
    for binary in "$@"; do
        echo "install $PACKAGE: $(command -v "$binary") already present"
    done
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi

POLICY=/usr/sbin/policy-rc.d
BACKUP=""
if [ -e "$POLICY" ]; then
    BACKUP="$(mktemp /tmp/policy-rc.d.XXXXXX)"
    $SUDO cp -p "$POLICY" "$BACKUP"
fi

restore_policy() {
    if [ -n "$BACKUP" ]; then
        $SUDO cp -p "$BACKUP" "$POLICY"
        rm -f "$BACKUP"
    else
        $SUDO rm -f "$POLICY"
    fi
}
trap restore_policy EXIT

printf '#!/bin/sh\n# temporary: apt-install-quiet.sh forbids service starts\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 0755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "$PACKAGE"

# Belt and braces: if an init system started it anyway, stop and disable it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$PACKAGE" 2>/dev/null; then
    $SUDO systemctl disable --now "$PACKAGE" || true
fi

for binary in "$@"; do
    echo "install $PACKAGE: $("$binary" --version 2>&1 | head -n1)"
done
