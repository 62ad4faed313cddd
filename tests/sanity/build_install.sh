#!/usr/bin/env bash
# `ansible-galaxy collection build` from a clean copy of the tree, then install the tarball into
# an empty collections path and check that Ansible finds every module in it.
set -euo pipefail
cd "$(dirname "$0")/../.."
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
bash tests/sanity/export_tree.sh "$tmp/src"
version=$(python -c 'import yaml;print(yaml.safe_load(open("galaxy.yml"))["version"])')
(cd "$tmp/src" && ansible-galaxy collection build --output-path "$tmp/dist" >/dev/null)
tarball=$tmp/dist/gpuops-llm-$version.tar.gz
[[ -f $tarball ]] || { echo "FAIL: $tarball not built"; exit 1; }
if tar -tzf "$tarball" | grep -E '(^|/)(\.venv|\.git|__pycache__|tests/output)/' ; then
  echo "FAIL: build artefacts or caches inside the tarball"; exit 1
fi
# kubernetes.core is not on a reachable Galaxy here; it comes with the `ansible` package.
# Install into an empty path only (the dev symlink on ANSIBLE_COLLECTIONS_PATH would satisfy it).
ANSIBLE_COLLECTIONS_PATH=$tmp/coll ansible-galaxy collection install --force --no-deps -p "$tmp/coll" "$tarball" >/dev/null
listed=$(ANSIBLE_COLLECTIONS_PATH=$tmp/coll ansible-galaxy collection list gpuops.llm -p "$tmp/coll" 2>/dev/null | awk '$1=="gpuops.llm"{print $2}')
[[ $listed == "$version" ]] || { echo "FAIL: installed version '$listed' != $version"; exit 1; }
want=$(ls plugins/modules/*.py 2>/dev/null | grep -v __init__ | wc -l)
got=$(ANSIBLE_COLLECTIONS_PATH=$tmp/coll:$(dirname "$(dirname "$(python -c 'import ansible_collections.kubernetes.core as k, os; print(os.path.dirname(k.__file__))' 2>/dev/null || echo /nonexistent/x)")") \
  ansible-doc -t module -l gpuops.llm 2>/dev/null | grep -c '^gpuops\.llm\.' || true)
[[ $got -eq $want ]] || { echo "FAIL: ansible-doc lists $got gpuops.llm modules, the tree has $want"; exit 1; }
echo "build+install OK: gpuops-llm-$version.tar.gz ($(du -k "$tarball" | cut -f1) KiB), $got modules documented"
