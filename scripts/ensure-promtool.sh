#!/usr/bin/env bash
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Make `promtool` available for the alert-rule tests (tests/unit/observability).
# On Debian/Ubuntu it installs the distribution's `prometheus` package, which ships promtool.
# The package also ships a Prometheus server service; we only want the CLI, so service starts
# are blocked during the install and the service is stopped and disabled afterwards if the
# init system started it anyway. Safe to run repeatedly: it does nothing when promtool exists.
set -euo pipefail

log() { printf 'ensure-promtool: %s\n' "$*" >&2; }

if command -v promtool >/dev/null 2>&1; then
    log "promtool already present: $(command -v promtool)"
    promtool --version 2>&1 | head -n 1
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    log "promtool is missing and apt-get is not available on this system."
    log "Install Prometheus' promtool (https://prometheus.io/download/) and put it on PATH."
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        log "need root (or sudo) to install the 'prometheus' package."
        exit 1
    fi
fi

# Prometheus processes that existed before we started are not ours to touch.
pids_before="$(pgrep -x prometheus || true)"

# Block service starts from maintainer scripts (Debian policy-rc.d protocol: exit 101 = forbidden),
# unless the administrator already has a policy in place, which we then leave alone.
POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$POLICY" ]; then
    $SUDO sh -c "printf '#!/bin/sh\nexit 101\n' > $POLICY && chmod 0755 $POLICY"
    created_policy=1
fi
cleanup() {
    if [ "$created_policy" -eq 1 ]; then
        $SUDO rm -f "$POLICY"
    fi
}
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
if ! apt-cache show prometheus >/dev/null 2>&1; then
    log "package index has no 'prometheus'; running apt-get update"
    $SUDO apt-get update
fi
log "installing Debian's prometheus package (for promtool)"
$SUDO apt-get install -y --no-install-recommends prometheus

# The package must not leave a Prometheus server behind.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    # systemd is PID 1: stop the unit and keep it from starting at boot.
    $SUDO systemctl disable --now prometheus.service >/dev/null 2>&1 || true
else
    if [ -x /etc/init.d/prometheus ]; then
        if $SUDO /etc/init.d/prometheus status >/dev/null 2>&1; then
            $SUDO /etc/init.d/prometheus stop || true
        fi
    fi
    if command -v update-rc.d >/dev/null 2>&1 && [ -e /etc/init.d/prometheus ]; then
        $SUDO update-rc.d prometheus disable >/dev/null 2>&1 || true
    fi
fi

pids_after="$(pgrep -x prometheus || true)"
new_pids=""
for pid in $pids_after; do
    case " $(echo "$pids_before" | tr '\n' ' ') " in
        *" $pid "*) ;;
        *) new_pids="$new_pids $pid" ;;
    esac
done
if [ -n "${new_pids// /}" ]; then
    log "a prometheus server started by the package is still running (pids:$new_pids); stop it by hand."
    exit 1
fi

if ! command -v promtool >/dev/null 2>&1; then
    log "the prometheus package installed but promtool is not on PATH."
    exit 1
fi
log "promtool installed: $(command -v promtool); no prometheus server left running"
promtool --version 2>&1 | head -n 1
