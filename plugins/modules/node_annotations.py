#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: node_annotations
short_description: Set annotations on a set of Kubernetes nodes in one call, owning only what it set
version_added: 0.1.0
description:
  - Sets O(annotations) on every node that O(selector) or O(nodes) selects, with one LIST of the cluster's
    nodes and one PATCH per node that differs. A converged cluster sees no write.
  - Records the keys it set in the node annotation C(gpuops.llm/annotations.<owner>), so a later run removes
    keys dropped from O(annotations), and (with O(release_unselected)) takes its keys back from nodes no
    longer selected. Annotations it did not set are never touched.
  - For example C(cluster-autoscaler.kubernetes.io/scale-down-disabled=true) on always-on inference nodes.
  - Validates every key, value, the selector and the node names before it changes anything.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: Check mode plans from the same LIST and sends no write request.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: Per node, the annotations that change, before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second run reports no change.
    support: full
    details: A second run reports no change and sends no write request.
options:
  annotations:
    description:
      - Annotations to set on every selected node. Numbers and booleans become strings (V(true), V(false)).
      - An empty dict, with O(release_unselected), removes this owner's annotations from every node.
    type: dict
    required: true
  selector:
    description:
      - Label selector in kubectl syntax (V(k=v), V(k!=v), V(k), V(!k), C(in) and C(notin) sets).
      - The selected nodes are the union of O(selector) and O(nodes). Neither selects nothing.
    type: str
  nodes:
    description:
      - Node names. Every name must exist.
    type: list
    elements: str
    default: []
  owner:
    description:
      - Name of this set of annotations, a DNS label. Each owner's keys are recorded and released separately.
    type: str
    default: default
  release_unselected:
    description:
      - Remove this owner's annotations from nodes that carry its record but are no longer selected.
    type: bool
    default: true
  conflict_retries:
    description:
      - How many times to re-read a node and retry its patch after a resourceVersion conflict.
    type: int
    default: 5
notes:
  - Run it once per cluster on the controller (C(run_once) and C(delegate_to=localhost)), not once per node.
"""

EXAMPLES = r"""
- name: Keep the Cluster Autoscaler off always-on inference nodes
  gpuops.llm.node_annotations:
    owner: cluster-autoscaler
    selector: workload-class=inference,gpuops.llm/always-on=true
    annotations:
      cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"
  run_once: true
  delegate_to: localhost
"""

RETURN = r"""
selected:
  description: Names of the nodes selected.
  returned: success
  type: list
  elements: str
  sample: [gpu-0, gpu-1]
released:
  description: Nodes no longer selected whose annotations of this owner were removed (or would be).
  returned: success
  type: list
  elements: str
  sample: [gpu-old-0]
patched:
  description: Nodes patched, or that would be patched in check mode.
  returned: success
  type: list
  elements: str
  sample: [gpu-1]
nodes_listed:
  description: Number of nodes returned by the single LIST request.
  returned: success
  type: int
  sample: 12
diff:
  description: Per node, the annotations that change, before and after. Only in diff mode.
  returned: when diff mode is on
  type: dict
  sample:
    before: {gpu-1: {}}
    after: {gpu-1: {cluster-autoscaler.kubernetes.io/scale-down-disabled: "true"}}
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
from ansible_collections.gpuops.llm.plugins.module_utils.node_annotations import (
    NodeAnnotationsError,
    apply,
    normalize,
)


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        annotations={"type": "dict", "required": True},
        selector={"type": "str"},
        nodes={"type": "list", "elements": "str", "default": []},
        owner={"type": "str", "default": "default"},
        release_unselected={"type": "bool", "default": True},
        conflict_retries={"type": "int", "default": 5},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    p = module.params
    if p["conflict_retries"] < 0:
        module.fail_json(msg="conflict_retries must be 0 or more, got %d" % p["conflict_retries"])
    try:
        normalize(p["annotations"], p["owner"], p["selector"], p["nodes"])
    except NodeAnnotationsError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    try:
        adapter = K8s.from_params({k: p.get(k) for k in AUTH_KEYS})
        result = apply(adapter, p["annotations"], owner=p["owner"], selector=p["selector"], nodes=p["nodes"],
                       release_unselected=p["release_unselected"], check_mode=module.check_mode,
                       diff=module._diff, conflict_retries=p["conflict_retries"])
    except NodeAnnotationsError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    except K8sError as exc:
        module.fail_json(msg=str(exc), api_error=exc.to_dict())
    module.exit_json(**result)


if __name__ == "__main__":
    main()
