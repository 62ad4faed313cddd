#!/usr/bin/env bash
# The main job on the embedded default: bring up the local simulated GPU cluster (building what
# is missing), run the week playbooks that exist against inventories/testbed/, print a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PATH=$PWD/.venv/bin:$PATH
export ANSIBLE_COLLECTIONS_PATH=$(python scripts/collection_path.py)
export ANSIBLE_ROLES_PATH=$PWD/roles
python testbed/testbed.py up >/dev/null
eval "$(python testbed/testbed.py env)"
if [[ -f playbooks/site.yml ]]; then
  books=(playbooks/site.yml)
else
  mapfile -t books < <(ls playbooks/week*.yml 2>/dev/null | sort)
fi
for b in "${books[@]}"; do
  echo "=== ansible-playbook -i inventories/testbed $b"
  ansible-playbook -i inventories/testbed "$b" "$@"
done
python testbed/summary.py
