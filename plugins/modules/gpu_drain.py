# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_drain
short_description: Move GPU workloads off a Kubernetes node for GPU maintenance, and bring it back
version_added: 0.1.0
description:
  - With O(state=drained), cordons the node, evicts the pods that hold C(nvidia.com/gpu) or
    C(nvidia.com/mig-*) resources through the Eviction API (PodDisruptionBudgets are respected),
    and pauses the NVIDIA device plugin on the node by labelling it
    C(gpuops.llm/device-plugin.paused=true), which the C(device_plugin) role's DaemonSets avoid.
  - With O(state=restored), resumes the device plugin, optionally waits until the node advertises
    the expected GPU resources, and sets schedulability back to O(unschedulable).
  - CPU pods and DaemonSet pods stay where they are; a MIG change does not concern them.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    support: full
    description: Reports what would be cordoned and evicted; sends no write request.
  diff_mode:
    support: none
    description: Reports actions and the node's state before, not a diff.
options:
  node:
    description: Name of the Kubernetes node.
    type: str
    required: true
  state:
    description:
      - V(drained) takes GPU work off the node; V(restored) puts the node back.
    type: str
    choices: [drained, restored]
    default: drained
  pause_device_plugin:
    description: With O(state=drained), also pause the device plugin and wait for its pod to leave the node.
    type: bool
    default: true
  device_plugin_namespace:
    description: Namespace of the device plugin pods to wait for (any namespace when omitted).
    type: str
  unschedulable:
    description:
      - With O(state=restored), the schedulability to restore. Pass the RV(before.unschedulable) of
        the drain so a node cordoned by someone else stays cordoned.
    type: bool
    default: false
  expected_resources:
    description:
      - With O(state=restored), wait until the node's allocatable GPU resources are exactly these
        (resource name to count), for example the result of M(gpuops.llm.mig_config).
    type: dict
  timeout:
    description: Seconds to wait for evictions (PDBs included) and for resources to appear.
    type: int
    default: 300
"""

EXAMPLES = r"""
- name: Take GPU work off the node
  gpuops.llm.gpu_drain:
    node: gpu-node-3
    timeout: 600
  register: drained

- name: Put the node back once the new MIG layout is advertised
  gpuops.llm.gpu_drain:
    node: gpu-node-3
    state: restored
    unschedulable: "{{ drained.before.unschedulable }}"
    expected_resources:
      nvidia.com/mig-1g.10gb: 2
      nvidia.com/mig-2g.20gb: 1
      nvidia.com/mig-3g.40gb: 1
"""

RETURN = r"""
before:
  description: The node as found.
  returned: always
  type: dict
  contains:
    unschedulable:
      description: Whether the node was cordoned.
      type: bool
    device_plugin_paused:
      description: Whether the pause label was set.
      type: bool
    gpu_pods:
      description: GPU pods on the node (namespace/name).
      type: list
      elements: str
    gpu_resources:
      description: GPU resources the node advertised.
      type: dict
evicted:
  description: GPU pods evicted (or that would be, in check mode), as namespace/name.
  returned: when O(state=drained)
  type: list
  elements: str
  sample: [ai-serving/llama3-8b-5d9f-abcde]
actions:
  description: What was done, in order (cordon, evict, pause-device-plugin, resume-device-plugin, uncordon).
  returned: always
  type: list
  elements: str
blocked:
  description: Pods whose eviction a PodDisruptionBudget kept refusing, when the drain failed.
  returned: failure
  type: list
  elements: str
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import AUTH_ARG_SPEC, AUTH_KEYS, K8s, K8sError
from ansible_collections.gpuops.llm.plugins.module_utils.drain import DrainError, Drainer


def main():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        node=dict(type="str", required=True),
        state=dict(type="str", choices=["drained", "restored"], default="drained"),
        pause_device_plugin=dict(type="bool", default=True),
        device_plugin_namespace=dict(type="str"),
        unschedulable=dict(type="bool", default=False),
        expected_resources=dict(type="dict"),
        timeout=dict(type="int", default=300),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds, got %s" % p["timeout"])
    expected = None
    if p["expected_resources"] is not None:
        try:
            expected = {str(k): int(v) for k, v in p["expected_resources"].items()}
        except (TypeError, ValueError):
            module.fail_json(msg="expected_resources must map resource names to integer counts, got %r"
                             % (p["expected_resources"],))
        bad = [k for k in expected if not k.startswith(("nvidia.com/gpu", "nvidia.com/mig-"))]
        if bad:
            module.fail_json(msg="expected_resources: %s are not GPU resources (nvidia.com/gpu or nvidia.com/mig-*)"
                             % ", ".join(sorted(bad)))
    drainer = None
    try:
        k8s = K8s.from_params({k: p.get(k) for k in AUTH_KEYS})
        drainer = Drainer(k8s, p["node"], timeout=p["timeout"], device_plugin_namespace=p["device_plugin_namespace"])
        if p["state"] == "drained":
            result = drainer.drain(p["pause_device_plugin"], check_mode=module.check_mode)
        else:
            result = drainer.restore(p["unschedulable"], expected, check_mode=module.check_mode)
    except DrainError as exc:
        module.fail_json(msg=str(exc), actions=drainer.actions if drainer else [], **exc.details)
    except K8sError as exc:
        module.fail_json(msg=str(exc))
    module.exit_json(actions=drainer.actions, **result)


if __name__ == "__main__":
    main()
