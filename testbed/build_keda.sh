#!/usr/bin/env bash
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Build KEDA's operator (and, on request, its metrics adapter) from KEDA's Go module with go build,
# so the testbed can run the real KEDA controllers out of cluster against its kube-apiserver.
#
# Rule (shared/facts/testbed-recipes.md, "Open questions and policy flags"): Go modules are used
# only as Go code. Nothing but Go sources is read out of the downloaded module; no image, chart or
# manifest of KEDA is used.
#
# KEDA's go.mod has replace directives (all to published versions; testbed-recipes.md section 5),
# so `go install .../cmd/operator@<version>` refuses it. `go build -C <module dir>` builds inside
# the downloaded module with its own go.mod and replace directives; GOFLAGS=-mod=mod resolves its
# dependencies into the module cache and writes nothing into the read-only module directory.
#
# Output: $BIN/keda-<component>-<keda version>, next to the other testbed binaries in the same
# version-keyed cache directory (testbed/build.sh --print-bin). Skipped when already there.
# Usage: testbed/build_keda.sh [--print-path] [operator] [adapter]   (default: operator)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# KEDA v2.20.2 is the release the facts name (testbed-recipes.md section 5), the same as the CRDs.
KEDA_VERSION=${KEDA_VERSION:-v2.20.2}
export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod

BIN=$("$HERE/build.sh" --print-bin)
log() { printf '[keda build] %s\n' "$*" >&2; }

print_only=0
components=()
for arg in "$@"; do
  case $arg in
    --print-path) print_only=1 ;;
    operator | adapter) components+=("$arg") ;;
    *) log "unknown argument '$arg'; valid: --print-path, operator, adapter"; exit 2 ;;
  esac
done
((${#components[@]})) || components=(operator)

if ((print_only)); then
  for c in "${components[@]}"; do echo "$BIN/keda-$c-$KEDA_VERSION"; done
  exit 0
fi

KEDA_DIR=""
for c in "${components[@]}"; do
  out=$BIN/keda-$c-$KEDA_VERSION
  if [[ -x $out ]]; then
    log "already built: $out"
    echo "$out"
    continue
  fi
  if [[ -z $KEDA_DIR ]]; then
    log "kedacore/keda ${KEDA_VERSION}: go mod download"
    KEDA_DIR=$(go mod download -json "github.com/kedacore/keda/v2@${KEDA_VERSION}" \
      | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error","no Dir")))')
  fi
  start=$(date +%s)
  log "go build ./cmd/$c (cold: many minutes, KEDA links every scaler's SDK)"
  # KEDA's Makefile stamps version.Version the same way, so the operator's banner names the release.
  go build -C "$KEDA_DIR" -trimpath \
    -ldflags "-s -w -X=github.com/kedacore/keda/v2/version.Version=${KEDA_VERSION}" \
    -o "$out.tmp" "./cmd/$c"
  mv "$out.tmp" "$out"
  log "built $out in $(( $(date +%s) - start ))s ($(du -m "$out" | cut -f1) MiB)"
  echo "$out"
done
