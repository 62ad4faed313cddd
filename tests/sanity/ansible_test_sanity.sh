#!/usr/bin/env bash
# ansible-test must run from .../ansible_collections/gpuops/llm; run it on a clean copy there.
# --venv gives each test its own pinned requirements, so the project's venv stays untouched.
set -euo pipefail
cd "$(dirname "$0")/../.."
# ansible-test fetches a get-pip script from ci-files.testing.ansible.com (unreachable here);
# seed its cache with our offline stand-in for the pip version it asks for.
pipver=$(python - <<'PY'
import inspect, re
from ansible_test._internal import python_requirements as r
m = re.search(r"pip='([0-9.]+)'", inspect.getsource(r))
print(m.group(1).replace('.', '_') if m else '24_2')
PY
)
mkdir -p ~/.ansible/test/cache
cp tests/sanity/get_pip_offline.py ~/.ansible/test/cache/get_pip_${pipver}.py
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
dest=$tmp/ansible_collections/gpuops/llm
bash tests/sanity/export_tree.sh "$dest"
cd "$dest"
git init -q . && git add -A >/dev/null && git -c user.email=ci@local -c user.name=ci commit -qm tree
ansible-test sanity --venv --python 3.11 --color no "$@"
