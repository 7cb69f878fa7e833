#!/usr/bin/env bash
# Install Debian's Prometheus Alertmanager and amtool for the end-to-end alert test, without
# starting a daemon (see apt-install-quiet.sh). The test starts its own Alertmanager on
# 127.0.0.1 with clustering off and a temporary directory.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install-quiet.sh" prometheus-alertmanager prometheus-alertmanager amtool
