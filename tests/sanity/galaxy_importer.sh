#!/usr/bin/env bash
# Galaxy's own importer (galaxy-importer, what galaxy.ansible.com runs on an upload) on the
# collection tarball as `ansible-galaxy collection build` makes it from a clean copy of the tree.
# Fails when the importer exits non-zero or logs any ERROR line; its WARNING lines are printed.
#
# galaxy-importer lives in a venv of its own (tests/sanity/galaxy-importer.txt says why), made
# here from PyPI on first use and kept under .cache/ (GALAXY_IMPORTER_VENV overrides the place).
# Its config turns off what needs a container engine or the network: ansible-test in an image
# (run_ansible_test) and ansible-lint's online checks (offline_ansible_lint). ansible-doc,
# ansible-lint (production profile, offline), the changelog and the role READMEs are checked.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}
VENV=${GALAXY_IMPORTER_VENV:-$ROOT/.cache/galaxy-importer-venv}
REQ=tests/sanity/galaxy-importer.txt

want=$(sha256sum "$REQ" | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || $(cat "$VENV/.requirements.sha" 2>/dev/null) != "$want" ]]; then
  echo "[galaxy-importer] venv $VENV"
  rm -rf "$VENV"
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$REQ"
  echo "$want" > "$VENV/.requirements.sha"
fi

tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bash tests/sanity/export_tree.sh "$tmp/src"
version=$("$VENV/bin/python" -c 'import yaml;print(yaml.safe_load(open("galaxy.yml"))["version"])')
(cd "$tmp/src" && "$VENV/bin/ansible-galaxy" collection build --output-path "$tmp/dist" >/dev/null)
tarball=$tmp/dist/gpuops-llm-$version.tar.gz
[[ -f $tarball ]] || { echo "FAIL: $tarball not built"; exit 1; }

mkdir -p "$tmp/work" "$tmp/ansible-tmp"
cat > "$tmp/galaxy-importer.cfg" <<CFG
[galaxy-importer]
run_ansible_test = False
ansible_test_local_image = False
local_image_docker = False
run_ansible_doc = True
run_ansible_lint = True
offline_ansible_lint = True
check_changelog = True
check_required_tags = True
log_level_main = INFO
tmp_root_dir = $tmp/work
ansible_local_tmp = $tmp/ansible-tmp
CFG

# The importer runs ansible-lint by name: its own venv's, first on PATH. No collections path
# of the caller leaks in (the importer installs the tarball into a path of its own).
set +e
(cd "$tmp/work" && env -u ANSIBLE_COLLECTIONS_PATH PATH="$VENV/bin:$PATH" GALAXY_IMPORTER_CONFIG="$tmp/galaxy-importer.cfg" \
  "$VENV/bin/python" -m galaxy_importer.main "$tarball") > "$tmp/importer.log" 2>&1
rc=$?
set -e
errors=$(grep -c '^ERROR' "$tmp/importer.log" || true)
warnings=$(grep -c '^WARNING' "$tmp/importer.log" || true)
grep -E '^(ERROR|WARNING|CRITICAL)' "$tmp/importer.log" || true
if [[ $rc -ne 0 || $errors -ne 0 ]] || ! grep -q 'Importer processing completed successfully' "$tmp/importer.log"; then
  echo "--- galaxy-importer output (last 80 lines)"
  tail -n 80 "$tmp/importer.log"
  if grep -q 'Timeout on call to ansible-lint' "$tmp/importer.log"; then
    echo "NOTE: the importer gives ansible-lint a fixed 180 s; load average now: $(cut -d' ' -f1-3 /proc/loadavg)"
  fi
  echo "FAIL: galaxy-importer exit $rc, $errors ERROR lines"
  exit 1
fi
echo "galaxy-importer OK: gpuops-llm-$version.tar.gz, $("$VENV/bin/python" -c 'import importlib.metadata as m;print(m.version("galaxy-importer"))') ($warnings warnings)"
