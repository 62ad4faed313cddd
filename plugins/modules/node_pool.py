#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: node_pool
short_description: Label and taint whole Kubernetes node pools, owning only what it set
version_added: 0.1.0
description:
  - Applies the labels and taints of one or more node pools to the nodes each pool selects, in one
    call, with one LIST of the cluster's nodes (repeated while it waits, see O(gpu_type_wait)) and one
    PATCH per node that differs.
  - Records the label keys and taints it manages in the node annotation
    C(gpuops.llm/node-pool.managed), so a later run removes keys dropped from the spec and never
    touches labels or taints it did not set.
  - Guards against the most common GPU cluster mistake, one mixed pool for everything. A O(pools[].kind=gpu)
    pool fails when it selects nodes without GPUs, a O(pools[].kind=cpu) pool fails when it selects
    GPU nodes, unless O(pools[].allow_mixed=true). A node counts as a GPU node when it has the GPU Feature
    Discovery or GPU Operator labels (C(nvidia.com/gpu.present=true), C(nvidia.com/gpu.product),
    C(nvidia.com/gpu.count), C(nvidia.com/mig-*)), NFD's C(feature.node.kubernetes.io/pci-10de.present=true),
    or C(nvidia.com/gpu), C(nvidia.com/gpu.shared) or C(nvidia.com/mig-*) capacity.
  - Validates every pool, selection and guard before it changes anything.
  - Up to 8 nodes are patched at a time. A patch that replaces the node's taints carries the node's
    resourceVersion; on a conflict the node is read again and the patch rebuilt. Label-only patches merge
    key by key and carry none, so they cannot conflict with kubelet heartbeats.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Check mode computes the same plan from the same LIST and sends no write request.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff holds the labels and taints of every node that changes, before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second run reports no change.
    support: full
    details: A second run with the same pools reports no change and sends no write request.
options:
  pools:
    description:
      - The pools to apply. A node may belong to at most one pool.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the pool, a DNS label. It is recorded in the ownership annotation.
        type: str
        required: true
      kind:
        description:
          - V(gpu) pools may only select GPU nodes, V(cpu) pools only nodes without GPUs.
        type: str
        choices: [gpu, cpu]
        default: gpu
      selector:
        description:
          - Label selector in kubectl syntax, for example V(k=v), V(k!=v), V(k), V(!k), and the set forms
            C(in) and C(notin) followed by a parenthesised, comma-separated list of values.
          - The pool's nodes are the union of O(pools[].selector), O(pools[].nodes) and O(pools[].hosts).
        type: str
      nodes:
        description:
          - Node names. Every name must exist.
        type: list
        elements: str
        default: []
      hosts:
        description:
          - Inventory hostnames, matched to nodes by node name, the C(kubernetes.io/hostname) label, or
            the short name when one side is fully qualified. Every host must match exactly one node.
        type: list
        elements: str
        default: []
      labels:
        description:
          - Labels to set on every node of the pool. Integer and boolean values become strings.
          - GPU Feature Discovery and GPU Operator labels that decide the GPU guard cannot be set here.
        type: dict
        default: {}
      taints:
        description:
          - Taints for every node of the pool, each a dict with C(key), C(value) (optional) and C(effect),
            or a string V(key=value:effect) or V(key:effect).
          - C(effect) is one of V(NoSchedule), V(PreferNoSchedule), V(NoExecute).
        type: list
        elements: raw
        default: []
      gpu_type_label:
        description:
          - Label key to set from each node's GPU Feature Discovery C(nvidia.com/gpu.product) label, without
            the C(-MIG-...) and C(-SHARED) suffixes GFD adds, for example V(gpu-type).
          - Nodes without that GFD label keep the value set earlier, if any, and a warning names them.
        type: str
      allow_mixed:
        description:
          - Allow a V(gpu) pool to select nodes without GPUs, or a V(cpu) pool to select GPU nodes.
        type: bool
        default: false
      allow_empty:
        description:
          - Allow the pool to select no node, for example a training pool scaled to zero.
        type: bool
        default: false
  release_unselected:
    description:
      - Remove the labels, taints and ownership annotation from nodes that a pool in O(pools) managed
        but no longer selects.
    type: bool
    default: true
  gpu_evidence_labels:
    description:
      - More labels that mark a node as a GPU node for the guards, as V(key) (present) or V(key=value),
        for example a cloud provider's accelerator label on nodes that GFD has not labelled yet.
    type: list
    elements: str
    default: []
  conflict_retries:
    description:
      - How many times to re-read a node and retry its patch after a resourceVersion conflict.
    type: int
    default: 5
  gpu_type_wait:
    description:
      - Seconds to wait, listing the nodes again every O(gpu_type_wait_interval) seconds, while a node of a
        pool with O(pools[].gpu_type_label) has no usable C(nvidia.com/gpu.product) label yet. GPU Feature
        Discovery labels a node some time after its pod is Ready, so right after the device plugin role
        a node would otherwise be labelled without its GPU type, and no GPU-type node selector would match it.
      - After the wait the pools are applied as they are, and a warning names the nodes still unlabelled.
      - V(0) does not wait. Check mode never waits.
    type: int
    default: 0
  gpu_type_wait_interval:
    description:
      - Seconds between two LIST requests while waiting, see O(gpu_type_wait).
    type: int
    default: 5
notes:
  - Run it once per cluster on the controller (C(run_once) and C(delegate_to=localhost)), not once per node.
seealso:
  - name: Node pools guide
    description: How pools, ownership and the GPU guards work.
    link: https://github.com/gpuops/llm/blob/main/docs/node-pools.md
"""

EXAMPLES = r"""
- name: Apply the inference and training pools
  gpuops.llm.node_pool:
    kubeconfig: ~/.kube/config
    pools:
      - name: llm-inference
        kind: gpu
        selector: node.example.com/pool=inference
        labels:
          workload-class: inference
        gpu_type_label: gpu-type
        taints:
          - key: workload
            value: llm-inference
            effect: NoSchedule
      - name: llm-training
        kind: gpu
        hosts: "{{ groups['llm_training'] | default([]) }}"
        labels:
          workload-class: training
        taints:
          - workload=llm-training:NoSchedule
        allow_empty: true
  run_once: true
  delegate_to: localhost

- name: Preview what would change, with a diff
  gpuops.llm.node_pool:
    pools:
      - name: cpu
        kind: cpu
        nodes: [worker-0, worker-1]
        labels:
          workload-class: general
  check_mode: true
  diff: true
  register: preview
"""

RETURN = r"""
nodes_listed:
  description: Number of nodes returned by the single LIST request.
  returned: success
  type: int
  sample: 12
nodes_total:
  description: Number of nodes the pools manage or release in this run.
  returned: success
  type: int
  sample: 6
nodes_changed:
  description: Number of nodes that changed (or would change in check mode).
  returned: success
  type: int
  sample: 2
nodes_released:
  description: Nodes no longer selected by their pool whose managed labels and taints were removed.
  returned: success
  type: list
  elements: str
  sample: [gpu-old-0]
patches:
  description: Number of nodes patched, or that would be patched in check mode.
  returned: success
  type: int
  sample: 2
writes:
  description: Write requests sent to the API server, conflict retries included. Always 0 in check mode.
  returned: success
  type: int
  sample: 2
pools:
  description: Per pool, its nodes and how many of them changed.
  returned: success
  type: list
  elements: dict
  contains:
    name:
      description: Pool name.
      type: str
      returned: success
    kind:
      description: V(gpu) or V(cpu).
      type: str
      returned: success
    nodes:
      description: Names of the nodes the pool selects.
      type: list
      elements: str
      returned: success
    nodes_changed:
      description: How many of those nodes changed.
      type: int
      returned: success
  sample:
    - name: llm-inference
      kind: gpu
      nodes: [gpu-0, gpu-1]
      nodes_changed: 1
changes:
  description: Per changed node, what changed.
  returned: success
  type: dict
  sample:
    gpu-0:
      pool: llm-inference
      released: false
      labels_set: {workload-class: inference}
      labels_removed: [old-label]
      taints_added: ["workload=llm-inference:NoSchedule"]
      taints_removed: []
      ownership_changed: true
gpu_type_wait:
  description:
    - The nodes this run waited for GFD product labels (O(gpu_type_wait)), how long it waited, and those
      still without one when it stopped waiting.
  returned: success
  type: dict
  sample: {nodes: [gpu-0], seconds: 12.0, still_missing: []}
diff:
  description: Labels and taints of every changed node, before and after. Only in diff mode.
  returned: when diff mode is on
  type: dict
  sample:
    before: {gpu-0: {labels: {}, taints: []}}
    after: {gpu-0: {labels: {workload-class: inference}, taints: [{key: workload, value: llm-inference, effect: NoSchedule}]}}
"""

import copy

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    AUTH_ARG_SPEC,
    AUTH_KEYS,
    HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR,
    K8s,
    K8sError,
)
from ansible_collections.gpuops.llm.plugins.module_utils.node_pool import (
    NodePoolError,
    apply_pools,
    normalize_pools,
)

POOL_SPEC = {
    "name": {"type": "str", "required": True},
    "kind": {"type": "str", "choices": ["gpu", "cpu"], "default": "gpu"},
    "selector": {"type": "str"},
    "nodes": {"type": "list", "elements": "str", "default": []},
    "hosts": {"type": "list", "elements": "str", "default": []},
    "labels": {"type": "dict", "default": {}},
    "taints": {"type": "list", "elements": "raw", "default": []},
    "gpu_type_label": {"type": "str"},
    "allow_mixed": {"type": "bool", "default": False},
    "allow_empty": {"type": "bool", "default": False},
}


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        pools={"type": "list", "elements": "dict", "required": True, "options": POOL_SPEC},
        release_unselected={"type": "bool", "default": True},
        gpu_evidence_labels={"type": "list", "elements": "str", "default": []},
        conflict_retries={"type": "int", "default": 5},
        gpu_type_wait={"type": "int", "default": 0},
        gpu_type_wait_interval={"type": "int", "default": 5},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    if params["conflict_retries"] < 0:
        module.fail_json(msg="conflict_retries must be 0 or more, got %d" % params["conflict_retries"])
    if params["gpu_type_wait"] < 0 or params["gpu_type_wait_interval"] < 1:
        module.fail_json(msg="gpu_type_wait must be 0 or more and gpu_type_wait_interval 1 or more, got %d and %d"
                         % (params["gpu_type_wait"], params["gpu_type_wait_interval"]))
    try:
        # Validate the spec before touching the cluster (and before requiring the library).
        normalize_pools(params["pools"])
    except NodePoolError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    try:
        adapter = K8s.from_params({k: params.get(k) for k in AUTH_KEYS})
        result = apply_pools(
            adapter,
            params["pools"],
            check_mode=module.check_mode,
            diff=module._diff,
            release_unselected=params["release_unselected"],
            gpu_evidence_labels=params["gpu_evidence_labels"],
            conflict_retries=params["conflict_retries"],
            gpu_type_wait=params["gpu_type_wait"],
            wait_interval=params["gpu_type_wait_interval"],
        )
    except NodePoolError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    except K8sError as exc:
        module.fail_json(msg=str(exc), api_error=exc.to_dict(), partial=exc.result or {})
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
