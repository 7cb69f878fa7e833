#!/usr/bin/env bash
# Install Debian's Prometheus Alertmanager (and amtool) for the end-to-end alert test,
# without starting a daemon.
#
# Same careful way as install-prometheus.sh: the package's post-install script would start
# prometheus-alertmanager.service (listening on all interfaces, gossiping on :9094). While
# installing, /usr/sbin/policy-rc.d answers 101 ("action forbidden"), so invoke-rc.d and
# deb-systemd-invoke start nothing; the previous policy-rc.d (or its absence) is restored
# afterwards. Idempotent: a fast no-op when both binaries are already on PATH. The test
# starts its own Alertmanager on 127.0.0.1 with clustering off and a temporary directory.
set -euo pipefail

if command -v prometheus-alertmanager >/dev/null 2>&1 && command -v amtool >/dev/null 2>&1; then
    echo "install-alertmanager: $(command -v prometheus-alertmanager) and $(command -v amtool) already present"
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

printf '#!/bin/sh\n# temporary: install-alertmanager.sh forbids service starts\nexit 101\n' \
    | $SUDO tee "$POLICY" >/dev/null
$SUDO chmod 0755 "$POLICY"

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends prometheus-alertmanager

# Belt and braces: if an init system started it anyway, stop and disable it.
if command -v systemctl >/dev/null 2>&1 \
    && systemctl is-active --quiet prometheus-alertmanager 2>/dev/null; then
    $SUDO systemctl disable --now prometheus-alertmanager || true
fi

echo "install-alertmanager: $(prometheus-alertmanager --version 2>&1 | head -n1)"
echo "install-alertmanager: $(amtool --version 2>&1 | head -n1)"
