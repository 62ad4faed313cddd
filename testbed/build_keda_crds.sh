#!/usr/bin/env bash
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Generate KEDA's CustomResourceDefinitions from KEDA's Go API types with controller-gen, so the
# testbed's real kube-apiserver validates ScaledObjects with KEDA's real schema.
#
# Rule (shared/facts/testbed-recipes.md, "Open questions and policy flags"): Go modules are used
# only as Go code. No YAML is read out of the downloaded KEDA module (its config/crd/bases is
# off-limits); controller-gen parses the Go types of apis/keda/v1alpha1 and writes the CRDs.
#
# controller-gen also writes withtriggers.keda.sh, a helper type that KEDA does not install as a
# CRD (no +kubebuilder:resource marker); roles/keda applies only the CRDs it names.
# Output: $BIN/keda-crds-<keda version>/*.yaml, next to the other testbed binaries in the same
# version-keyed cache directory (testbed/build.sh --print-bin). Skipped when already there.
# Usage: testbed/build_keda_crds.sh [--print-dir]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# KEDA v2.20.2 is the release the facts name (testbed-recipes.md section 5);
# controller-tools v0.23.0 is the version the Go module proxy serves there.
KEDA_VERSION=${KEDA_VERSION:-v2.20.2}
CONTROLLER_GEN_VERSION=${CONTROLLER_GEN_VERSION:-v0.23.0}
export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local}

BIN=$("$HERE/build.sh" --print-bin)
OUT=${BIN}/keda-crds-${KEDA_VERSION}
CG=${BIN}/controller-gen-${CONTROLLER_GEN_VERSION}
log() { printf '[keda crds] %s\n' "$*" >&2; }

if [[ ${1:-} == "--print-dir" ]]; then echo "$OUT"; exit 0; fi

start=$(date +%s)
if [[ ! -x $CG ]]; then
  log "controller-gen ${CONTROLLER_GEN_VERSION}: go install"
  tmp=$(mktemp -d)
  GOBIN=$tmp go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/controller-tools/cmd/controller-gen@${CONTROLLER_GEN_VERSION}"
  mv "$tmp/controller-gen" "$CG.tmp" && mv "$CG.tmp" "$CG"
  rm -rf "$tmp"
fi

if compgen -G "$OUT/*.yaml" >/dev/null; then
  log "already generated: $OUT"
  echo "$OUT"
  exit 0
fi

# KEDA's go.mod has replace directives (all to published versions), so `go get` of its apis
# package from another module is awkward. Download the module as is; controller-gen loads the
# packages with the module's own go.mod from its read-only directory and writes nowhere there.
log "kedacore/keda ${KEDA_VERSION}: go mod download"
KEDA_DIR=$(go mod download -json "github.com/kedacore/keda/v2@${KEDA_VERSION}" \
  | python3 -c 'import json,sys; d=json.load(sys.stdin); print(d.get("Dir") or sys.exit(d.get("Error","no Dir")))')

log "controller-gen crd over ${KEDA_DIR}/apis (keda.sh and eventing.keda.sh v1alpha1)"
rm -rf "$OUT.tmp"; mkdir -p "$OUT.tmp"
# GOFLAGS=-mod=mod lets the package loader resolve the module's dependencies (downloaded to the
# module cache) without writing go.sum into the read-only module directory.
(cd "$KEDA_DIR" && GOFLAGS=-mod=mod "$CG" crd paths=./apis/... output:crd:artifacts:config="$OUT.tmp")
compgen -G "$OUT.tmp/*.yaml" >/dev/null || { log "controller-gen wrote no CRD"; exit 1; }
rm -rf "$OUT"; mv "$OUT.tmp" "$OUT"
log "done in $(( $(date +%s) - start ))s: $(cd "$OUT" && ls | tr '\n' ' ')"
echo "$OUT"
