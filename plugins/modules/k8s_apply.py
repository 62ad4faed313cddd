# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: k8s_apply
short_description: Server-side apply a set of manifests, writing only what differs
version_added: 0.1.0
description:
  - Applies many manifests in one task with server-side apply and the field manager C(gpuops.llm).
  - Each manifest is first compared with the live object; when every field it sets is already
    there with the same value, and no field it applied before is missing from it, no request is
    sent. A converged cluster therefore sees no write calls on a rerun (M(kubernetes.core.k8s)
    sends one PATCH per object per run).
  - A field that this field manager applied earlier and the manifest no longer sets (a ConfigMap
    key, a label, a nodeSelector key, a resource limit) is removed, as server-side apply removes
    it; the live object's C(managedFields) say which fields are ours. Fields that other field
    managers own are left alone. When only an atomic field (a nodeSelector, a fieldRef) looks
    different, a server-side dry run of the apply decides, so a key the server defaulted in it is
    not taken for a change; a dry run persists nothing.
  - The values of a Secret's C(data) and C(stringData) never appear in the result or the diff
    (the keys do); they are still compared to decide whether to apply.
  - O(state=absent) deletes the objects that exist.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    support: full
    description: Compares only; sends no write request, and predicts the same C(changed), removals included.
  diff_mode:
    support: full
    description: Before and after of the fields each manifest sets, and of the fields it would remove.
options:
  definitions:
    description:
      - The manifests, as a list of dicts or as a (multi-document) YAML string. Empty documents are skipped.
    type: raw
    required: true
  namespace:
    description: Namespace for namespaced objects that do not name one.
    type: str
  state:
    description: Whether the objects should exist.
    type: str
    choices: [present, absent]
    default: present
  force_conflicts:
    description: Take over fields that another field manager owns.
    type: bool
    default: false
  field_manager:
    description: Server-side apply field manager. Keep one per site so ownership stays clear.
    type: str
    default: gpuops.llm
"""

EXAMPLES = r"""
- name: Apply the device plugin manifests
  gpuops.llm.k8s_apply:
    definitions: "{{ lookup('ansible.builtin.template', 'device-plugin.yml.j2') }}"
"""

RETURN = r"""
results:
  description: One entry per manifest, in order.
  returned: always
  type: list
  elements: dict
  contains:
    ref:
      description: Kind, namespace and name.
      type: str
      sample: DaemonSet nvidia-device-plugin/nvidia-device-plugin
    action:
      description: unchanged, create, update, delete or absent.
      type: str
    changed:
      description: Whether this object changed.
      type: bool
    removed:
      description:
        - Fields this field manager had applied that the manifest no longer sets, which the apply
          removes (returned only when there are some).
      type: list
      elements: str
      returned: when the object is updated to remove fields
      sample:
        - data.b
        - "spec.template.spec.containers[name=vllm].resources.limits.cpu"
counts:
  description: Number of manifests per action.
  returned: always
  type: dict
  sample: {unchanged: 5, update: 1}
"""

import copy

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.common.text.converters import to_native

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import AUTH_ARG_SPEC, AUTH_KEYS, K8s, K8sError
from ansible_collections.gpuops.llm.plugins.module_utils.apply import Applier, redact

try:
    import yaml

    HAS_YAML = True
except ImportError:  # pragma: no cover
    HAS_YAML = False


def load_definitions(raw):
    """A list of manifest dicts from a list or a YAML string; errors name the document."""
    if isinstance(raw, str):
        docs = list(yaml.safe_load_all(raw))
    elif isinstance(raw, dict):
        docs = [raw]
    elif isinstance(raw, list):
        docs = raw
    else:
        raise ValueError("definitions must be a list of manifests or a YAML string, got %s" % type(raw).__name__)
    out = []
    for i, d in enumerate(docs):
        if d is None:
            continue
        if isinstance(d, dict) and d.get("kind", "").endswith("List") and "items" in d:
            out.extend(d["items"])
            continue
        if not isinstance(d, dict):
            raise ValueError("definitions[%d] is not a mapping" % i)
        missing = [f for f in ("apiVersion", "kind") if not d.get(f)] + (
            [] if (d.get("metadata") or {}).get("name") else ["metadata.name"])
        if missing:
            raise ValueError("definitions[%d] (kind %s) has no %s" % (i, d.get("kind"), ", ".join(missing)))
        out.append(d)
    return out


def redacted_invocation(params, manifests):
    """What to return as ``invocation`` when a manifest is a Secret, else None (Ansible's own).

    Ansible returns a module's arguments with its result; ``definitions`` then goes back with
    every Secret's values replaced (keys kept) instead of as given.
    """
    if not any(m.get("kind") == "Secret" for m in manifests):
        return None
    return {"module_args": dict(params, definitions=[redact(m) for m in manifests])}


def main():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        definitions=dict(type="raw", required=True),
        namespace=dict(type="str"),
        state=dict(type="str", choices=["present", "absent"], default="present"),
        force_conflicts=dict(type="bool", default=False),
        field_manager=dict(type="str", default="gpuops.llm"),
    )
    module = AnsibleModule(argument_spec=spec, supports_check_mode=True)
    if not HAS_YAML:
        module.fail_json(msg="PyYAML is required on the host that runs this task")
    p = module.params
    try:
        manifests = load_definitions(p["definitions"])
    except (ValueError, yaml.YAMLError) as exc:
        module.fail_json(msg="definitions: %s" % to_native(exc))
    invocation = redacted_invocation(p, manifests)
    results = []
    try:
        applier = Applier(K8s.from_params({k: p.get(k) for k in AUTH_KEYS}, field_manager=p["field_manager"]),
                          p["force_conflicts"])
        order = manifests if p["state"] == "present" else list(reversed(manifests))
        for m in order:
            if p["state"] == "present":
                results.append(applier.present(m, module.check_mode, p["namespace"]))
            else:
                results.append(applier.absent(m, module.check_mode, p["namespace"]))
    except K8sError as exc:
        extra = {"invocation": invocation} if invocation else {}
        module.fail_json(msg=to_native(exc), results=results, **extra)
    counts = {}
    for r in results:
        counts[r["action"]] = counts.get(r["action"], 0) + 1
    diffs = [r.pop("diff") for r in results if "diff" in r]
    out = dict(changed=any(r["changed"] for r in results), results=results, counts=counts)
    if module._diff and diffs:
        out["diff"] = {"before": [d["before"] for d in diffs], "after": [d["after"] for d in diffs]}
    if invocation:
        out["invocation"] = invocation
    module.exit_json(**out)


if __name__ == "__main__":
    main()
