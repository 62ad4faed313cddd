#!/usr/bin/env bash
# Build the testbed's control-plane binaries from Go modules into a version-keyed cache.
# Each binary is skipped when already present, so a warm cache costs nothing.
set -euo pipefail

K8S_VERSION=${K8S_VERSION:-v1.36.3}
ETCD_VERSION=${ETCD_VERSION:-v3.6.16}
KWOK_VERSION=${KWOK_VERSION:-v0.8.0}
CACHE_ROOT=${GPUOPS_TESTBED_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/gpuops-llm-testbed}
BIN=${CACHE_ROOT}/bin-k8s${K8S_VERSION#v}-etcd${ETCD_VERSION#v}-kwok${KWOK_VERSION#v}
SRC=${CACHE_ROOT}/src
export CGO_ENABLED=0 GOFLAGS=${GOFLAGS:--mod=mod} GOTOOLCHAIN=${GOTOOLCHAIN:-local}

mkdir -p "$BIN" "$SRC"
log() { printf '[testbed build] %s\n' "$*" >&2; }

if [[ ${1:-} == "--print-bin" ]]; then echo "$BIN"; exit 0; fi

build_k8s() {
  local need=0 c
  for c in kube-apiserver kube-scheduler kube-controller-manager; do [[ -x $BIN/$c ]] || need=1; done
  ((need)) || return 0
  local d=$SRC/k8s-${K8S_VERSION}
  log "kubernetes ${K8S_VERSION}: generating wrapper module in $d"
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init gpuops.local/k8sbin >/dev/null 2>&1
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@${K8S_VERSION}" | python3 -c 'import json,sys;print(json.load(sys.stdin)["GoMod"])')
  go mod edit -require="k8s.io/kubernetes@${K8S_VERSION}"
  # Staging modules are required at v0.0.0 upstream; pin each to the matching v0.x.y.
  local staging=v0.${K8S_VERSION#v1.}
  local m
  for m in $(awk '$1 ~ /^k8s\.io\// && $2=="v0.0.0"{print $1}' "$gomod"); do
    go mod edit -replace="$m=$m@$staging"
  done
  # Other upstream replace directives (pins) must be carried over too.
  python3 - "$gomod" <<'PY' | while read -r r; do go mod edit -replace="$r"; done
import re, sys
text = open(sys.argv[1]).read()
block = re.findall(r'^replace \((.*?)^\)', text, re.S | re.M)
lines = [l for b in block for l in b.splitlines()] + re.findall(r'^replace (.*)$', text, re.M)
for l in lines:
    l = l.split('//')[0].strip()
    if '=>' not in l:
        continue
    old, new = [p.strip() for p in l.split('=>')]
    newparts = new.split()
    if newparts[0].startswith('.'):
        continue  # local staging paths are replaced above
    print(f"{old.split()[0]}={newparts[0]}@{newparts[1]}")
PY
  for c in kube-apiserver kube-scheduler kube-controller-manager; do
    mkdir -p "cmd/$c"
  done
  local tmpl='package main

import (
	"os"
	_ "time/tzdata"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/APP/app"
)

func main() { os.Exit(cli.Run(app.NEW())) }
'
  echo "${tmpl//APP/kube-apiserver}" | sed 's/NEW/NewAPIServerCommand/' > cmd/kube-apiserver/main.go
  echo "${tmpl//APP/kube-scheduler}" | sed 's/NEW/NewSchedulerCommand/' > cmd/kube-scheduler/main.go
  echo "${tmpl//APP/kube-controller-manager}" | sed 's/NEW/NewControllerManagerCommand/' > cmd/kube-controller-manager/main.go
  log "kubernetes: go mod tidy"
  go mod tidy
  local minor=${K8S_VERSION#v1.}; minor=${minor%%.*}
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld="$ld -X $p.gitVersion=${K8S_VERSION} -X $p.gitMajor=1 -X $p.gitMinor=${minor} -X $p.gitTreeState=clean -X $p.buildDate=2026-01-01T00:00:00Z"
  done
  for c in kube-apiserver kube-scheduler kube-controller-manager; do
    log "kubernetes: building $c"
    go build -trimpath -ldflags "$ld" -o "$BIN/$c.tmp" "./cmd/$c" && mv "$BIN/$c.tmp" "$BIN/$c"
  done
}

build_etcd() {
  [[ -x $BIN/etcd ]] && return 0
  local d=$SRC/etcd-${ETCD_VERSION}
  log "etcd ${ETCD_VERSION}"
  rm -rf "$d"; mkdir -p "$d"; cd "$d"
  go mod init gpuops.local/etcdbin >/dev/null 2>&1
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' > main.go
  go get "go.etcd.io/etcd/server/v3@${ETCD_VERSION}"
  go mod tidy
  go build -trimpath -ldflags "-s -w" -o "$BIN/etcd.tmp" . && mv "$BIN/etcd.tmp" "$BIN/etcd"
}

build_kwok() {
  [[ -x $BIN/kwok && -x $BIN/kwokctl ]] && return 0
  log "kwok ${KWOK_VERSION}"
  GOBIN=$BIN go install -trimpath -ldflags "-s -w" "sigs.k8s.io/kwok/cmd/kwok@${KWOK_VERSION}" "sigs.k8s.io/kwok/cmd/kwokctl@${KWOK_VERSION}"
}

start=$(date +%s)
targets=${*:-etcd kwok k8s}
for t in $targets; do "build_$t"; done
log "done in $(( $(date +%s) - start ))s: $BIN"
echo "$BIN"
