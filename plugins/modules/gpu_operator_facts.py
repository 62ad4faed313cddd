# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_operator_facts
short_description: Detect an NVIDIA GPU Operator and say which NVIDIA components the collection should deploy
version_added: 0.1.0
description:
  - Reads the C(clusterpolicies.nvidia.com) CustomResourceDefinition, the ClusterPolicy objects, the
    operator's DaemonSets in its namespace and the GPU nodes' C(nvidia.com/gpu.present) and
    C(nvidia.com/gpu.deploy.*) labels, with four read requests.
  - An operator is detected when the CRD is served and a ClusterPolicy the operator acts on exists
    (one not marked C(ignored)). DaemonSets or node labels without a ClusterPolicy are reported as
    leftovers in RV(warnings), never taken for an operator.
  - RV(deploy) says which of the collection's own device plugin, GPU Feature Discovery and DCGM
    exporter to deploy, that is none of those the ClusterPolicy enables (C(spec.devicePlugin.enabled),
    C(spec.gfd.enabled), C(spec.dcgmExporter.enabled); unset means enabled, as in the operator).
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    support: full
    description: Read-only; behaves the same in check mode.
  diff_mode:
    support: none
    description: Reads only; there is nothing to diff.
options:
  namespace:
    description:
      - Namespace to look for the operator's DaemonSets in when the ClusterPolicy's C(status.namespace)
        does not say.
    type: str
    default: gpu-operator
"""

EXAMPLES = r"""
- name: Is there a GPU Operator?
  gpuops.llm.gpu_operator_facts:
  register: gpu_operator

- name: Deploy our device plugin only where no operator runs one
  ansible.builtin.include_role:
    name: gpuops.llm.device_plugin
  when: gpu_operator.deploy.device_plugin
"""

RETURN = r"""
detected:
  description: Whether a GPU Operator manages the cluster's NVIDIA components.
  returned: always
  type: bool
  sample: true
reason:
  description: Why, in words (the ClusterPolicy and its state, or what is missing).
  returned: always
  type: str
  sample: ClusterPolicy cluster-policy (state ready)
ready:
  description: The ClusterPolicy's C(status.state) is C(ready).
  returned: always
  type: bool
state:
  description: The ClusterPolicy's C(status.state) (C(ready), C(notReady)); null when none is detected.
  returned: always
  type: str
policy:
  description: Name of the ClusterPolicy the operator acts on.
  returned: always
  type: str
  sample: cluster-policy
namespace:
  description: Namespace of the operator's components (the ClusterPolicy's C(status.namespace)).
  returned: always
  type: str
  sample: gpu-operator
components:
  description:
    - Per component (C(device_plugin), C(gfd), C(dcgm_exporter), C(mig_manager)) whether the ClusterPolicy
      enables it, its DaemonSet's name, whether it exists, its desired and ready pod counts, and the node
      label its DaemonSet selects on.
  returned: always
  type: dict
  sample:
    device_plugin: {enabled: true, daemonset: nvidia-device-plugin-daemonset, daemonset_present: true,
                    desired: 3, ready: 3, deploy_label: nvidia.com/gpu.deploy.device-plugin}
deploy:
  description: Which of the collection's own components to deploy (true) or leave to the operator (false).
  returned: always
  type: dict
  contains:
    device_plugin:
      description: Deploy roles/device_plugin's device plugin.
      type: bool
    gfd:
      description: Deploy roles/device_plugin's GPU Feature Discovery.
      type: bool
    dcgm_exporter:
      description: Deploy roles/dcgm_exporter.
      type: bool
mig:
  description: The operator's MIG settings; null when no operator is detected.
  returned: always
  type: dict
  contains:
    strategy:
      description: C(spec.mig.strategy) (none, single, mixed), what its device plugin and GFD use.
      type: str
    manager_enabled:
      description: C(spec.migManager.enabled).
      type: bool
    config_map:
      description: The mig-parted ConfigMap mig-manager reads (C(spec.migManager.config.name) or C(default-mig-parted-config)).
      type: str
    config_map_custom:
      description: Whether that is a custom ConfigMap (one the collection may add its configs to).
      type: bool
    default_config:
      description: C(spec.migManager.config.default), the config for MIG nodes without a C(nvidia.com/mig.config) label.
      type: str
mig_manager:
  description: An operator is detected and its mig-manager is enabled.
  returned: always
  type: bool
nodes:
  description: Per GPU node, C(nvidia.com/gpu.present), the C(nvidia.com/gpu.deploy.*) values and the MIG config labels.
  returned: always
  type: dict
  sample:
    mig-h100-0: {gpu_present: true, deploy: {device_plugin: "true", mig_manager: "true"},
                 mig_config: all-balanced, mig_config_state: success}
warnings:
  description: Things to know (a ClusterPolicy not ready, leftovers of an operator).
  returned: always
  type: list
  elements: str
"""

import copy

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils import gpu_operator
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import AUTH_ARG_SPEC, AUTH_KEYS, K8s, K8sError


def main():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(namespace=dict(type="str", default=gpu_operator.DEFAULT_NAMESPACE))
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    try:
        k8s = K8s.from_params({k: p.get(k) for k in AUTH_KEYS})
        result = gpu_operator.read_cluster(k8s, namespace_hint=p["namespace"])
    except K8sError as exc:
        module.fail_json(msg=str(exc))
    for w in result["warnings"]:
        module.warn(w)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
