# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_operator_mig
short_description: Change a node's MIG layout through the NVIDIA GPU Operator's mig-manager
version_added: 0.1.0
description:
  - Follows mig-manager's node label protocol. It sets the node's C(nvidia.com/mig.config) label to a
    config of the mig-parted ConfigMap, then waits until mig-manager reports
    C(nvidia.com/mig.config.state=success). It fails on C(failed) or on timeout.
  - With O(mig_devices) or O(config), the layout is stored as C(gpuops-<hash>) in the custom mig-parted
    ConfigMap the ClusterPolicy names in C(spec.migManager.config.name). That is one merge patch of its
    C(config.yaml) key, and other configs are kept. A new layout gets a new name, because mig-manager
    acts on a change of the label's value, not of the ConfigMap's content.
  - With O(preset), the label is the preset's name. Without a custom ConfigMap, mig-manager generates
    C(all-disabled), C(all-enabled), C(all-balanced) and C(all-<profile>) from the hardware.
  - It writes the label and our config entry, nothing else. Pausing the operator's device plugin, GFD
    and exporters (their C(nvidia.com/gpu.deploy.*) labels) is mig-manager's job. Draining user GPU
    pods is the caller's job (the C(mig) role uses M(gpuops.llm.gpu_drain)).
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    support: full
    description: Reads the ClusterPolicy, ConfigMap and node; predicts C(changed); writes nothing.
  diff_mode:
    support: none
    description: Reports the previous and new config names instead.
options:
  node:
    description: Kubernetes node name.
    type: str
    required: true
  preset:
    description: A config name mig-manager already has (generated, or in the custom ConfigMap).
    type: str
  mig_devices:
    description: Profile to count on every GPU (or O(gpus)), in mig-parted syntax.
    type: dict
  gpus:
    description: GPU indexes O(mig_devices) applies to; empty means all.
    type: list
    elements: int
    default: []
  config:
    description: A mig-parted v1 document; O(config_name) picks the config whose entries are stored.
    type: dict
  config_name:
    description: With O(config), the config to use; without, a label value to set as it is (to put a previous config back).
    type: str
  namespace:
    description: Operator namespace when the ClusterPolicy's C(status.namespace) does not say.
    type: str
    default: gpu-operator
  resources:
    description:
      - The GPU resources the layout gives under the mixed strategy (RV(gpuops.llm.mig_config#module:resources)).
        RV(expected_resources) translates them to what the operator's device plugin advertises under the
        ClusterPolicy's C(spec.mig.strategy).
    type: dict
  wait:
    description: Wait for C(nvidia.com/mig.config.state) to become C(success) (or fail on C(failed)).
    type: bool
    default: true
  timeout:
    description: Seconds to wait for mig-manager.
    type: int
    default: 600
"""

EXAMPLES = r"""
- name: Seven 1g.10gb instances on each GPU of gpu-node-3, through mig-manager
  gpuops.llm.gpu_operator_mig:
    node: gpu-node-3
    mig_devices: {"1g.10gb": 7}

- name: One of the configs mig-manager generates from the hardware
  gpuops.llm.gpu_operator_mig:
    node: gpu-node-3
    preset: all-balanced
"""

RETURN = r"""
config_name:
  description: The C(nvidia.com/mig.config) value asked for.
  returned: success
  type: str
  sample: gpuops-3c1f0e9a42bd
config_map:
  description: The mig-parted ConfigMap mig-manager reads.
  returned: success
  type: str
  sample: custom-mig-parted-config
config_map_changed:
  description: Whether our config entry was added or updated (or would be, in check mode).
  returned: success
  type: bool
label_changed:
  description: Whether the node's label was set (or would be).
  returned: success
  type: bool
previous_config:
  description: The node's C(nvidia.com/mig.config) before, to put back on failure.
  returned: success
  type: str
previous_state:
  description: The node's C(nvidia.com/mig.config.state) before.
  returned: success
  type: str
state:
  description: C(nvidia.com/mig.config.state) at the end (C(success) after a wait).
  returned: success
  type: str
expected_resources:
  description:
    - What the node should advertise once the operator's device plugin is back, under its MIG strategy
      (mixed as given, single as C(nvidia.com/gpu)); null without O(resources) or under C(none).
  returned: success
  type: dict
  sample: {"nvidia.com/mig-1g.10gb": 7}
mig_strategy:
  description: The ClusterPolicy's C(spec.mig.strategy).
  returned: success
  type: str
actions:
  description: Writes done, in order (config-map, label).
  returned: always
  type: list
  elements: str
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils import gpu_operator, mig
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import AUTH_ARG_SPEC, AUTH_KEYS, K8s, K8sError


def main():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        node=dict(type="str", required=True),
        preset=dict(type="str"),
        mig_devices=dict(type="dict"),
        gpus=dict(type="list", elements="int", default=[]),
        config=dict(type="dict"),
        config_name=dict(type="str"),
        namespace=dict(type="str", default=gpu_operator.DEFAULT_NAMESPACE),
        wait=dict(type="bool", default=True),
        timeout=dict(type="int", default=600),
        resources=dict(type="dict"),
    )
    module = AnsibleModule(
        argument_spec=spec,
        mutually_exclusive=[("preset", "mig_devices", "config"), ("preset", "config_name"), ("mig_devices", "config_name")],
        required_one_of=[("preset", "mig_devices", "config", "config_name")],
        required_by={"config": "config_name"},
        supports_check_mode=True,
    )
    p = module.params
    if p["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds, got %s" % p["timeout"])
    request = None
    try:
        entries = label = None
        if p["mig_devices"] is not None:
            entries = gpu_operator.entries_for_devices(p["mig_devices"], p["gpus"])
        elif p["config"] is not None:
            configs = mig.parse_mig_parted_config(p["config"], source="config")
            if p["config_name"] not in configs:
                raise gpu_operator.OperatorError("config: unknown config name '%s'; available: %s"
                                                 % (p["config_name"], ", ".join(sorted(configs))))
            entries = p["config"]["mig-configs"][p["config_name"]]
        elif p["preset"] is None:
            label = p["config_name"]
        k8s = K8s.from_params({k: p.get(k) for k in AUTH_KEYS})
        operator = gpu_operator.read_cluster(k8s, namespace_hint=p["namespace"])
        request = gpu_operator.MigManagerRequest(k8s, p["node"], operator)
        resolved = request.resolve(preset=p["preset"], entries=entries, label=label)
        result = request.apply(resolved, wait=p["wait"], timeout=p["timeout"], check_mode=module.check_mode)
        result["mig_strategy"] = operator["mig"]["strategy"]
        result["expected_resources"] = gpu_operator.expected_resources(
            {str(k): int(v) for k, v in p["resources"].items()} if p["resources"] is not None else None,
            operator["mig"]["strategy"])
    except (gpu_operator.OperatorError, mig.MigError) as exc:
        module.fail_json(msg=str(exc), actions=request.actions if request else [])
    except K8sError as exc:
        module.fail_json(msg=str(exc), actions=request.actions if request else [])
    module.exit_json(actions=request.actions, **result)


if __name__ == "__main__":
    main()
