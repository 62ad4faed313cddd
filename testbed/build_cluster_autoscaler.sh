#!/usr/bin/env bash
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
#
# Build the real Cluster Autoscaler with only its kwok cloud provider (build tag "kwok": the
# upstream file cloudprovider/router/router_kwok.go imports nothing else), so the testbed can run
# it out of cluster (--kubeconfig, --cloud-provider=kwok) against its kube-apiserver.
#
# Source, in this order:
#  1. the Go module k8s.io/autoscaler/cluster-autoscaler at the pseudo-version of the release
#     tag's commit (the module has no semver tags of its own; its releases are git tags
#     cluster-autoscaler-X.Y.Z). The Go module proxy this project reaches answers 403 for that
#     module (every version), so on this project's machines this step fails fast;
#  2. CLUSTER_AUTOSCALER_SRC: a git directory of kubernetes/autoscaler (bare or not) holding the
#     tag; only the cluster-autoscaler/ subtree at that tag is extracted, into the testbed cache.
# Nothing but Go sources is used; no image, chart or manifest of the autoscaler.
# Dependencies resolve through the Go module proxy from the module's own go.mod (its replace
# directives pin the k8s.io staging modules to published v0.x.y versions; ./apis is in the tree).
#
# Output: $BIN/cluster-autoscaler-kwok-<version>, next to the other testbed binaries in the
# version-keyed cache (testbed/build.sh --print-bin). Skipped when already there. When no source
# can be had the script says so and exits 0 (bootstrap goes on; the tests that need it skip).
# Usage: testbed/build_cluster_autoscaler.sh [--print-path]
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# Same as roles/cluster_autoscaler/defaults/main.yml cluster_autoscaler_version (without the v).
CA_VERSION=${CA_VERSION:-1.36.1}
# The commit the annotated tag cluster-autoscaler-1.36.1 points at, and its commit time (UTC):
# kubernetes/autoscaler, `git rev-list -n1 cluster-autoscaler-1.36.1`.
CA_COMMIT=${CA_COMMIT:-35e8a280425c76a4040f57ae0fa232a952c02024}
CA_COMMIT_TIME=${CA_COMMIT_TIME:-20260722070747}
export CGO_ENABLED=0 GOTOOLCHAIN=${GOTOOLCHAIN:-local} GOFLAGS=-mod=mod

BIN=$("$HERE/build.sh" --print-bin)
SRC=$(dirname "$BIN")/src
out=$BIN/cluster-autoscaler-kwok-$CA_VERSION
log() { printf '[cluster-autoscaler build] %s\n' "$*" >&2; }

if [[ ${1:-} == "--print-path" ]]; then echo "$out"; exit 0; fi
if [[ -x $out ]]; then
  log "already built: $out"
  echo "$out"
  exit 0
fi

# One build at a time: every `testbed.py up` runs build.sh, and parallel test sessions must not each
# start a cold build of their own. A caller that finds one running skips (exit 0) without waiting.
exec 9>"$BIN/.cluster-autoscaler-$CA_VERSION.lock"
if ! flock -n 9; then
  log "another process is building it; skipping (the tests that need it skip until it is there)"
  exit 0
fi
if [[ -x $out ]]; then
  log "already built: $out"
  echo "$out"
  exit 0
fi

dir=""
pseudo=v0.0.0-${CA_COMMIT_TIME}-${CA_COMMIT:0:12}
log "k8s.io/autoscaler/cluster-autoscaler@${pseudo} (tag cluster-autoscaler-${CA_VERSION}): go mod download"
if json=$(timeout 300 go mod download -json "k8s.io/autoscaler/cluster-autoscaler@${pseudo}" 2>/dev/null); then
  dir=$(python3 -c 'import json,sys; print(json.load(sys.stdin).get("Dir",""))' <<<"$json")
fi
if [[ -z $dir ]]; then
  log "the Go module proxy does not serve it; trying CLUSTER_AUTOSCALER_SRC"
  tree=$SRC/cluster-autoscaler-$CA_VERSION
  if [[ ! -f $tree/go.mod ]]; then
    git_dir=${CLUSTER_AUTOSCALER_SRC:-}
    if [[ -z $git_dir ]] || ! git -C "$git_dir" rev-parse -q --verify "cluster-autoscaler-${CA_VERSION}^{commit}" >/dev/null 2>&1; then
      log "skipped: no source for Cluster Autoscaler ${CA_VERSION} (set CLUSTER_AUTOSCALER_SRC to a kubernetes/autoscaler git directory with tag cluster-autoscaler-${CA_VERSION})"
      exit 0
    fi
    got=$(git -C "$git_dir" rev-parse "cluster-autoscaler-${CA_VERSION}^{commit}")
    [[ $got == "$CA_COMMIT" ]] || { log "tag cluster-autoscaler-${CA_VERSION} is $got in $git_dir, expected $CA_COMMIT"; exit 1; }
    rm -rf "$tree.tmp"; mkdir -p "$tree.tmp"
    git -C "$git_dir" archive "$CA_COMMIT" cluster-autoscaler | tar -x -C "$tree.tmp" --strip-components=1
    rm -rf "$tree"; mv "$tree.tmp" "$tree"
  fi
  dir=$tree
fi

start=$(date +%s)
log "go build -tags kwok in $dir (cold: many minutes, it links the kube-scheduler framework)"
# The upstream Makefile stamps version.ClusterAutoscalerVersion the same way.
go build -C "$dir" -trimpath -tags kwok \
  -ldflags "-s -w -X=k8s.io/autoscaler/cluster-autoscaler/version.ClusterAutoscalerVersion=${CA_VERSION}" \
  -o "$out.tmp" .
mv "$out.tmp" "$out"
log "built $out in $(( $(date +%s) - start ))s ($(du -m "$out" | cut -f1) MiB)"
echo "$out"
