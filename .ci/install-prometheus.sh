#!/usr/bin/env bash
# Install Debian's Prometheus server and promtool for the tests, without starting a daemon
# (see apt-install-quiet.sh). The tests start their own Prometheus on 127.0.0.1.
set -euo pipefail
exec bash "$(dirname "$0")/apt-install-quiet.sh" prometheus prometheus promtool
