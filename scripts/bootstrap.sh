#!/usr/bin/env bash
# Install what the project needs on this machine, skipping what is already there:
# the Python virtualenv (controller + test requirements), promtool, and the testbed binaries.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
PY=${PYTHON:-python3}

stamp=$VENV/.requirements.sha
want=$(cat requirements/*.txt | sha256sum | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
  echo "[bootstrap] python virtualenv $VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r requirements/test.txt
  echo "$want" > "$stamp"
fi
if [[ -x scripts/ensure-promtool.sh ]]; then
  scripts/ensure-promtool.sh
fi
if [[ ${1:-} != "--no-testbed" ]]; then
  echo "[bootstrap] testbed binaries (go build, cached)"
  bash testbed/build.sh >/dev/null
fi
