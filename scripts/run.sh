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
# The audit of what was just deployed (read-only; a clean site.yml finds nothing).
rm -f "$GPUOPS_TESTBED_HOME/audit.json"
echo "=== ansible-playbook -i inventories/testbed playbooks/audit.yml"
ansible-playbook -i inventories/testbed playbooks/audit.yml -e "cluster_audit_json_path=$GPUOPS_TESTBED_HOME/audit.json" \
  >/dev/null || echo "audit.yml failed; rerun it by hand to see why"
# The real Cluster Autoscaler (kwok provider) with the policy site.yml wrote: scale the training pool up and back.
echo "=== the real Cluster Autoscaler on the testbed (testbed/cluster_autoscaler.py rehearse)"
python testbed/cluster_autoscaler.py rehearse || echo "the autoscaler rehearsal failed; see $GPUOPS_TESTBED_HOME/cluster-autoscaler/"
# The real KEDA operator and metrics adapter on the ScaledObjects site.yml wrote: a queue up and down.
echo "=== the real KEDA operator and metrics adapter on the testbed (testbed/keda_rehearsal.py rehearse)"
python testbed/keda_rehearsal.py rehearse || echo "the KEDA rehearsal failed; see $GPUOPS_TESTBED_HOME/keda/"
python testbed/summary.py
