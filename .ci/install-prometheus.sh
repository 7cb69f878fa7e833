#!/usr/bin/env bash
# Install Debian's Prometheus server and promtool for the tests, without starting a daemon.
#
# The package's post-install script would start prometheus.service on 0.0.0.0:9090. While
# installing, /usr/sbin/policy-rc.d answers 101 ("action forbidden"), so invoke-rc.d and
# deb-systemd-invoke start nothing; the previous policy-rc.d (or its absence) is restored
# afterwards. Idempotent: a fast no-op when both binaries are already on PATH. The tests
# start their own Prometheus on 127.0.0.1 with a temporary config and data directory.
set -euo pipefail

if command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; then
    echo "install-prometheus: $(command -v prometheus) and $(command -v promtool) already present"
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

printf '#!/bin/sh\n# temporary: install-prometheus.sh forbids service starts\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 0755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus

# Belt and braces: if an init system started it anyway, stop and disable it.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet prometheus 2>/dev/null; then
    $SUDO systemctl disable --now prometheus || true
fi

echo "install-prometheus: $(prometheus --version 2>&1 | head -n1)"
echo "install-prometheus: $(promtool --version 2>&1 | head -n1)"
