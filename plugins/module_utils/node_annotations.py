# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Annotations on a set of nodes, owned per owner so a later run can take them back.

One LIST of the cluster's nodes, then one PATCH per node that differs. Each node we annotate
carries ``gpuops.llm/annotations.<owner>`` listing the keys this owner set, so that:

* a key dropped from the spec is removed from the nodes (only where this owner set it);
* a node that is no longer selected loses this owner's keys (``release_unselected``);
* annotations of anyone else, and other owners' keys, are never touched.

Used by the cluster_autoscaler role for ``cluster-autoscaler.kubernetes.io/scale-down-disabled``
on always-on inference nodes. Pure planning here; ``apply`` drives the ``K8s`` adapter.
"""
from __future__ import annotations

import json

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    dns_label_error,
    label_key_error,
    merge_patch,
    parse_label_selector,
    selector_matches,
)

RECORD_PREFIX = "gpuops.llm/annotations."
# The API server's limit on all annotations of one object together (bytes of keys and values).
MAX_TOTAL_BYTES = 256 * 1024


class NodeAnnotationsError(Exception):
    def __init__(self, errors):
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


def record_key(owner):
    return RECORD_PREFIX + owner


def _as_string(value):
    # YAML turns true/1 into bool/int; annotation values are strings, as kubectl would write them.
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def normalize(annotations, owner="default", selector=None, nodes=None):
    """Validate everything first; returns (annotations as strings, parsed selector, node names)."""
    errors = []
    err = dns_label_error(owner)
    if err:
        errors.append("owner %r %s" % (owner, err))
    if not isinstance(annotations, dict):
        errors.append("annotations must be a dict of key: value, got %s" % type(annotations).__name__)
        annotations = {}
    out = {}
    for key, value in annotations.items():
        err = label_key_error(key)
        if err:
            errors.append("annotations key %r is not a valid annotation key: %s" % (key, err))
            continue
        if key.startswith(RECORD_PREFIX):
            errors.append("annotations key %r is reserved for the ownership record" % key)
            continue
        value = _as_string(value)
        if not isinstance(value, str):
            errors.append("annotations[%r] must be a string, number or boolean, got %s" % (key, type(value).__name__))
            continue
        out[key] = value
    if sum(len(k) + len(v) for k, v in out.items()) > MAX_TOTAL_BYTES:
        errors.append("annotations are larger than the API server's 256 KiB limit")
    try:
        requirements = parse_label_selector(selector)
    except ValueError as exc:
        errors.append("selector %r is invalid: %s" % (selector, exc))
        requirements = []
    names = list(nodes or [])
    for i, name in enumerate(names):
        if not isinstance(name, str) or not name:
            errors.append("nodes[%d] must be a node name, got %r" % (i, name))
    if errors:
        raise NodeAnnotationsError(errors)
    return out, requirements, names


def owned_keys(node_annotations, owner):
    raw = (node_annotations or {}).get(record_key(owner))
    if not raw:
        return []
    try:
        keys = json.loads(raw)
    except ValueError:
        return []
    return [k for k in keys if isinstance(k, str)] if isinstance(keys, list) else []


def desired_annotations(current, annotations, owner, selected, release_unselected=True):
    """The node's annotations after this owner's run (a new dict; ``current`` is not changed)."""
    current = dict(current or {})
    owned = owned_keys(current, owner)
    after = dict(current)
    if selected:
        for key in owned:
            if key not in annotations:
                after.pop(key, None)
        after.update(annotations)
        after[record_key(owner)] = json.dumps(sorted(annotations), separators=(",", ":"))
    elif release_unselected and record_key(owner) in current:
        for key in owned:
            after.pop(key, None)
        after.pop(record_key(owner), None)
    return after


def plan(node_list, annotations, owner, requirements, names, release_unselected=True):
    """Per node: name, selected, before/after annotations and the merge patch (None if equal)."""
    by_name = {(n.get("metadata") or {}).get("name"): n for n in node_list}
    missing = [n for n in names if n not in by_name]
    if missing:
        raise NodeAnnotationsError("nodes not found in the cluster: %s" % ", ".join(sorted(missing)))
    wanted = set(names)
    out = []
    for name in sorted(by_name):
        meta = by_name[name].get("metadata") or {}
        selected = name in wanted or (bool(requirements) and selector_matches(requirements, meta.get("labels")))
        before = dict(meta.get("annotations") or {})
        after = desired_annotations(before, annotations, owner, selected, release_unselected)
        patch = merge_patch(before, after)
        if not selected and patch is None:
            continue
        out.append({"name": name, "node": by_name[name], "selected": selected, "before": before, "after": after,
                    "patch": {"metadata": {"annotations": patch}} if patch else None})
    return out


def _touched(before, after, annotations, owner):
    keys = set(annotations) | {record_key(owner)} | (set(before) ^ set(after))
    keys |= {k for k in before if before.get(k) != after.get(k)}
    return ({k: before[k] for k in sorted(keys) if k in before}, {k: after[k] for k in sorted(keys) if k in after})


def apply(adapter, annotations, owner="default", selector=None, nodes=None, release_unselected=True,
          check_mode=False, diff=False, conflict_retries=5):
    """Validate, LIST once, PATCH only nodes that differ. Returns a result dict for exit_json."""
    annotations, requirements, names = normalize(annotations, owner, selector, nodes)
    # An empty selector and no names select nothing (never "every node" by accident).
    node_list = adapter.list_nodes()
    planned = plan(node_list, annotations, owner, requirements, names, release_unselected)
    result = {"changed": False, "selected": [], "released": [], "patched": [], "nodes_listed": len(node_list)}
    diffs = []
    for item in planned:
        (result["selected"] if item["selected"] else result["released"]).append(item["name"])
        if item["patch"] is None:
            continue
        result["patched"].append(item["name"])
        if diff:
            before, after = _touched(item["before"], item["after"], annotations, owner)
            diffs.append({"node": item["name"], "before": before, "after": after})
        if check_mode:
            continue

        def build(node, _selected=item["selected"]):
            current = (node.get("metadata") or {}).get("annotations") or {}
            patch = merge_patch(current, desired_annotations(current, annotations, owner, _selected,
                                                             release_unselected))
            return {"metadata": {"annotations": patch}} if patch else None

        adapter.patch_node_with_retry(item["name"], build, node=item["node"], retries=conflict_retries)
    result["released"] = [n for n in result["released"] if n in result["patched"]]
    result["changed"] = bool(result["patched"])
    if diff:
        result["diff"] = {"before": {d["node"]: d["before"] for d in diffs},
                          "after": {d["node"]: d["after"] for d in diffs}}
    return result
