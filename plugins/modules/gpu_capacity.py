# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: gpu_capacity
short_description: Read (and wait for) the GPUs each Kubernetes node advertises, MIG devices included
version_added: 0.1.0
description:
  - Reads every selected node's allocatable C(nvidia.com/gpu) and C(nvidia.com/mig-*) resources and its
    GPU Feature Discovery labels with one LIST request per try.
  - Optionally waits until each node advertises GPUs (or exactly O(expected)), and fails naming the nodes
    that lack them. MIG devices count as GPUs here; validators that count only C(nvidia.com/gpu) report
    MIG nodes as empty.
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
  nodes:
    description: Node names to check. When empty, every node matching O(label_selector).
    type: list
    elements: str
    default: []
  label_selector:
    description: Which nodes are GPU nodes when O(nodes) is empty.
    type: str
    default: feature.node.kubernetes.io/pci-10de.present=true
  expected:
    description:
      - Per node name, the exact GPU resources it must advertise (resource name to count).
        Nodes not listed only need some GPU resource.
    type: dict
    default: {}
  wait:
    description: Poll until every node passes or O(timeout) runs out.
    type: bool
    default: false
  timeout:
    description: Seconds to wait with O(wait).
    type: int
    default: 120
"""

EXAMPLES = r"""
- name: Wait until every GPU node advertises its GPUs
  gpuops.llm.gpu_capacity:
    wait: true
    timeout: 300

- name: Check a MIG node's layout
  gpuops.llm.gpu_capacity:
    nodes: [gpu-mig-0]
    expected:
      gpu-mig-0: {nvidia.com/mig-1g.10gb: 2, nvidia.com/mig-2g.20gb: 1, nvidia.com/mig-3g.40gb: 1}
"""

RETURN = r"""
nodes:
  description: Per node, its GPU resources and GFD labels.
  returned: always
  type: dict
  sample:
    gpu-mig-0:
      resources: {nvidia.com/mig-1g.10gb: 2}
      gfd: {nvidia.com/gpu.product: NVIDIA-H100-80GB-HBM3}
      devices: 2
missing:
  description: Nodes that lack GPU resources or differ from O(expected), with the reason.
  returned: always
  type: dict
totals:
  description: Cluster-wide count per GPU resource.
  returned: always
  type: dict
"""

import copy
import time

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import AUTH_ARG_SPEC, AUTH_KEYS, K8s, K8sError
from ansible_collections.gpuops.llm.plugins.module_utils.drain import node_gpu_allocatable

GFD_PREFIXES = ("nvidia.com/gpu.", "nvidia.com/mig.", "nvidia.com/mig-", "nvidia.com/cuda.")


def survey(node_list: list, names: list, expected: dict) -> tuple:
    """(per-node view, missing {node: reason}, totals) from Node dicts."""
    by_name = {n["metadata"]["name"]: n for n in node_list}
    wanted = names or sorted(by_name)
    view, missing, totals = {}, {}, {}
    for name in wanted:
        node = by_name.get(name)
        if node is None:
            missing[name] = "not found in the cluster"
            continue
        res = {k: int(v) for k, v in node_gpu_allocatable(node).items() if int(v)}
        labels = (node.get("metadata") or {}).get("labels") or {}
        view[name] = {"resources": res, "devices": sum(res.values()),
                      "gfd": {k: v for k, v in labels.items() if k.startswith(GFD_PREFIXES)}}
        for k, v in res.items():
            totals[k] = totals.get(k, 0) + v
        if name in expected:
            want = {k: int(v) for k, v in expected[name].items() if int(v)}
            if res != want:
                missing[name] = "advertises %s, expected %s" % (res or "no GPUs", want)
        elif not res:
            missing[name] = "advertises no nvidia.com/gpu or nvidia.com/mig-* resources (is the device plugin running there?)"
    return view, missing, totals


def main():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        nodes=dict(type="list", elements="str", default=[]),
        label_selector=dict(type="str", default="feature.node.kubernetes.io/pci-10de.present=true"),
        expected=dict(type="dict", default={}),
        wait=dict(type="bool", default=False),
        timeout=dict(type="int", default=120),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    p = module.params
    for node, res in p["expected"].items():
        if not isinstance(res, dict) or not all(str(k).startswith(("nvidia.com/gpu", "nvidia.com/mig-")) for k in res):
            module.fail_json(msg="expected.%s must map nvidia.com/gpu or nvidia.com/mig-* resources to counts, got %r"
                             % (node, res))
    try:
        k8s = K8s.from_params({k: p.get(k) for k in AUTH_KEYS})
        deadline = time.monotonic() + p["timeout"]
        while True:
            # With explicit names, list them all (they may lack the GPU label); else select.
            nodes = k8s.list_nodes(None if p["nodes"] else p["label_selector"])
            view, missing, totals = survey(nodes, p["nodes"], p["expected"])
            if not missing or not p["wait"] or time.monotonic() >= deadline:
                break
            time.sleep(2)
    except K8sError as exc:
        module.fail_json(msg=str(exc))
    result = dict(changed=False, nodes=view, missing=missing, totals=totals)
    if not view and not missing:
        module.fail_json(msg="no node matches label_selector %r: no GPU nodes to check" % p["label_selector"], **result)
    if missing:
        module.fail_json(msg="GPU capacity missing on %d node(s): %s" % (
            len(missing), "; ".join("%s: %s" % kv for kv in sorted(missing.items()))), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
