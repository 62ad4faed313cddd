# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node pools: which nodes carry which labels and taints, owning only what we set.

Everything here is pure (plain dicts in and out) except ``apply_pools``, which takes an
adapter with the ``K8s`` interface (``list_nodes``, ``patch_node_with_retry``,
``write_count``) and so also runs against a fake in unit tests.

Ownership: each managed node carries the annotation ``gpuops.llm/node-pool.managed`` with
the pool name, the label keys and the taints (``key:effect``) that this collection set. A
later run removes owned keys that the spec dropped and never touches anything else; this is
what ``kubectl label --overwrite`` loops cannot do (they never remove stale labels).

Guards for the seed's mistake #1 (one mixed pool for everything): a ``gpu`` pool must
select only GPU nodes and a ``cpu`` pool only non-GPU nodes, unless ``allow_mixed``.
"""
from __future__ import annotations

import json
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    TAINT_EFFECTS,
    canonical_taint,
    dns_label_error,
    format_taint,
    label_key_error,
    label_value_error,
    parse_label_selector,
    selector_matches,
)

MANAGED_ANNOTATION = "gpuops.llm/node-pool.managed"
POOL_KINDS = ("gpu", "cpu")
POOL_KEYS = ("name", "kind", "selector", "nodes", "hosts", "labels", "taints", "gpu_type_label",
             "allow_mixed", "allow_empty")

# GPU evidence, from facts/gpu-automation-anchors.md C1/C2: GFD and GPU Operator labels,
# NFD's NVIDIA PCI vendor label, device-plugin resources. A GFD `gpu.count` of 0 still
# marks a GPU node (an invalid MIG layout under `single` yields count 0), so the product
# label counts on its own.
GPU_LABEL_VALUES = {
    "nvidia.com/gpu.present": "true",
    "feature.node.kubernetes.io/pci-10de.present": "true",
}
GPU_LABEL_KEYS = ("nvidia.com/gpu.product", "nvidia.com/gpu.count")
GPU_LABEL_PREFIXES = ("nvidia.com/mig-",)
GPU_RESOURCES = ("nvidia.com/gpu", "nvidia.com/gpu.shared")
GPU_RESOURCE_PREFIXES = ("nvidia.com/mig-",)
GFD_PRODUCT_LABEL = "nvidia.com/gpu.product"

# Labels that decide the GPU guard belong to GFD and the GPU Operator; a pool may not set
# them, or it could talk the guard into anything.
_RESERVED_LABEL_KEYS = set(GPU_LABEL_VALUES) | set(GPU_LABEL_KEYS)
_RESERVED_LABEL_PREFIXES = GPU_LABEL_PREFIXES

# GFD appends these to gpu.product (MIG `single` strategy and renamed shared resources);
# gpu-type describes the card, so it drops them and stays stable across MIG changes.
_PRODUCT_SUFFIX = re.compile(r"(-MIG-.*|-SHARED)$")

_TAINT_STRING = re.compile(r"^(?P<key>[^=:\s]+)(=(?P<value>[^:\s]*))?:(?P<effect>\S+)$")


class NodePoolError(ValueError):
    """Invalid pools or a selection that breaks a guard. ``errors`` lists every problem."""

    def __init__(self, errors):
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


# ---------------------------------------------------------------------------------------
# Spec validation
# ---------------------------------------------------------------------------------------


def _label_value(value):
    """Label values are strings; accept YAML ints and booleans the way users mean them."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return value


def parse_taint(taint, where="taint"):
    """A taint from ``{key, value, effect}`` or ``key=value:effect`` / ``key:effect``.

    Returns ``(taint_dict, errors)``.
    """
    if isinstance(taint, str):
        match = _TAINT_STRING.match(taint.strip())
        if not match:
            return None, ["%s: %r is not 'key=value:effect' or 'key:effect'" % (where, taint)]
        taint = {"key": match.group("key"), "value": match.group("value") or "",
                 "effect": match.group("effect")}
    if not isinstance(taint, dict):
        return None, ["%s: %r must be a dict with key, value, effect or a 'key=value:effect' string"
                      % (where, taint)]
    unknown = sorted(set(taint) - {"key", "value", "effect"})
    errors = []
    if unknown:
        errors.append("%s: unknown field(s) %s (valid: key, value, effect)" % (where, ", ".join(unknown)))
    key = taint.get("key")
    value = _label_value(taint.get("value"))
    value = "" if value is None else value
    effect = taint.get("effect")
    err = label_key_error(key)
    if err:
        errors.append("%s: key %r %s" % (where, key, err))
    err = label_value_error(value)
    if err:
        errors.append("%s: value %r %s" % (where, value, err))
    if effect not in TAINT_EFFECTS:
        errors.append("%s: effect %r is not valid (valid: %s)" % (where, effect, ", ".join(TAINT_EFFECTS)))
    if errors:
        return None, errors
    out = {"key": key, "effect": effect}
    if value:
        out["value"] = value
    return out, []


def normalize_pool(pool, index=0):
    """Validate one pool spec; returns ``(pool, errors)`` with defaults filled in."""
    where = "pools[%d]" % index
    if not isinstance(pool, dict):
        return None, ["%s: must be a dict, got %r" % (where, pool)]
    errors = []
    name = pool.get("name")
    err = dns_label_error(name)
    if err:
        errors.append("%s.name: %r %s" % (where, name, err))
    else:
        where = "pool %r" % name
    unknown = sorted(set(pool) - set(POOL_KEYS))
    if unknown:
        errors.append("%s: unknown option(s) %s (valid: %s)" % (where, ", ".join(unknown), ", ".join(POOL_KEYS)))
    kind = pool.get("kind") or "gpu"
    if kind not in POOL_KINDS:
        errors.append("%s.kind: %r is not valid (valid: gpu, cpu)" % (where, kind))

    selector = pool.get("selector")
    requirements = []
    if selector is not None:
        try:
            requirements = parse_label_selector(selector)
        except ValueError as exc:
            errors.append("%s.selector: %r is not a valid label selector: %s" % (where, selector, exc))
        if not requirements and not errors:
            errors.append("%s.selector: an empty selector would select every node; give a requirement" % where)
    nodes = list(pool.get("nodes") or [])
    hosts = list(pool.get("hosts") or [])
    for field, names in (("nodes", nodes), ("hosts", hosts)):
        for item in names:
            if not isinstance(item, str) or not item:
                errors.append("%s.%s: %r is not a node or host name" % (where, field, item))
    if selector is None and not nodes and not hosts and not pool.get("allow_empty"):
        errors.append("%s: selects no nodes; give selector, nodes or hosts (or allow_empty: true)" % where)

    labels = {}
    raw_labels = pool.get("labels") or {}
    if not isinstance(raw_labels, dict):
        errors.append("%s.labels: must be a dict of label key to value, got %r" % (where, raw_labels))
        raw_labels = {}
    for key, value in raw_labels.items():
        value = _label_value(value)
        err = label_key_error(key)
        if err:
            errors.append("%s.labels: key %r %s" % (where, key, err))
            continue
        if key in _RESERVED_LABEL_KEYS or key.startswith(_RESERVED_LABEL_PREFIXES):
            errors.append("%s.labels: %r is set by GPU Feature Discovery / the GPU Operator and decides "
                          "the GPU guard; a pool may not set it" % (where, key))
            continue
        err = label_value_error(value)
        if err:
            errors.append("%s.labels[%r]: value %r %s" % (where, key, value, err))
            continue
        labels[key] = value

    taints = []
    seen = set()
    raw_taints = pool.get("taints") or []
    if not isinstance(raw_taints, list):
        errors.append("%s.taints: must be a list, got %r" % (where, raw_taints))
        raw_taints = []
    for i, raw in enumerate(raw_taints):
        taint, terrs = parse_taint(raw, "%s.taints[%d]" % (where, i))
        errors.extend(terrs)
        if taint:
            ident = (taint["key"], taint["effect"])
            if ident in seen:
                errors.append("%s.taints[%d]: a second taint %s:%s (key and effect must be unique)"
                              % (where, i, taint["key"], taint["effect"]))
            seen.add(ident)
            taints.append(taint)

    gpu_type_label = pool.get("gpu_type_label") or None
    if gpu_type_label:
        err = label_key_error(gpu_type_label)
        if err:
            errors.append("%s.gpu_type_label: %r %s" % (where, gpu_type_label, err))
        if kind == "cpu":
            errors.append("%s.gpu_type_label: a cpu pool has no GPU product to copy" % where)
        if gpu_type_label in labels:
            errors.append("%s: label %r is set both in labels and by gpu_type_label; choose one"
                          % (where, gpu_type_label))
    normalized = {
        "name": name,
        "kind": kind,
        "selector": selector,
        "requirements": requirements,
        "nodes": nodes,
        "hosts": hosts,
        "labels": labels,
        "taints": taints,
        "gpu_type_label": gpu_type_label,
        "allow_mixed": bool(pool.get("allow_mixed", False)),
        "allow_empty": bool(pool.get("allow_empty", False)),
    }
    return normalized, errors


def normalize_pools(pools):
    """Validate every pool; raise ``NodePoolError`` listing all problems at once."""
    if not isinstance(pools, list) or not pools:
        raise NodePoolError(["pools: give a non-empty list of pools"])
    errors = []
    out = []
    names = {}
    for index, pool in enumerate(pools):
        normalized, errs = normalize_pool(pool, index)
        errors.extend(errs)
        if normalized is None:
            continue
        if normalized["name"] in names:
            errors.append("pools[%d].name: %r is also the name of pools[%d]; pool names must be unique"
                          % (index, normalized["name"], names[normalized["name"]]))
        names.setdefault(normalized["name"], index)
        out.append(normalized)
    if errors:
        raise NodePoolError(errors)
    return out


# ---------------------------------------------------------------------------------------
# Node facts
# ---------------------------------------------------------------------------------------


def _meta(node):
    return node.get("metadata") or {}


def node_labels(node):
    return dict(_meta(node).get("labels") or {})


def node_taints(node):
    return list((node.get("spec") or {}).get("taints") or [])


def _quantity_positive(value):
    try:
        return float(str(value).strip() or 0) > 0
    except ValueError:
        return True  # an odd quantity string is still an advertised resource


def gpu_evidence(node, extra_labels=()):
    """Why this node counts as a GPU node: a list of reasons, empty for a CPU node.

    ``extra_labels`` adds site evidence as ``key`` (present) or ``key=value``, e.g. a
    cloud's accelerator label for nodes that GFD has not labelled yet.
    """
    labels = node_labels(node)
    reasons = []
    for key, value in GPU_LABEL_VALUES.items():
        if labels.get(key) == value:
            reasons.append("label %s=%s" % (key, value))
    for key in GPU_LABEL_KEYS:
        if key in labels:
            reasons.append("label %s=%s" % (key, labels[key]))
    for key in sorted(labels):
        if key.startswith(GPU_LABEL_PREFIXES):
            reasons.append("label %s" % key)
    for item in extra_labels or ():
        key, sep, value = str(item).partition("=")
        if key in labels and (not sep or labels[key] == value):
            reasons.append("label %s=%s" % (key, labels[key]))
    status = node.get("status") or {}
    seen = set()
    for field in ("capacity", "allocatable"):
        for resource, quantity in sorted((status.get(field) or {}).items()):
            if resource in seen:
                continue
            if (resource in GPU_RESOURCES or resource.startswith(GPU_RESOURCE_PREFIXES)) \
                    and _quantity_positive(quantity):
                reasons.append("%s %s=%s" % (field, resource, quantity))
                seen.add(resource)
    return reasons


def gpu_type_from_product(product):
    """gpu-type value from GFD's gpu.product: the card, without MIG or sharing suffixes."""
    if not product:
        return None
    value = _PRODUCT_SUFFIX.sub("", str(product))[:63].rstrip("-_.")
    return value if value and not label_value_error(value) else None


def parse_managed(annotations):
    """The ownership record from a node's annotations: ``{"pool", "labels", "taints"}``.

    ``labels`` and ``taints`` (``key:effect``) are sets. An unreadable record owns nothing:
    we must never delete what we cannot prove is ours.
    """
    empty = {"pool": None, "labels": set(), "taints": set()}
    raw = (annotations or {}).get(MANAGED_ANNOTATION)
    if not raw:
        return empty
    try:
        record = json.loads(raw)
        owned = {"pool": record.get("pool"),
                 "labels": set(record.get("labels") or []),
                 "taints": set(record.get("taints") or [])}
        if not all(isinstance(x, str) for x in owned["labels"] | owned["taints"]):
            raise ValueError
    except (ValueError, AttributeError, TypeError):
        return empty
    return owned


def managed_record(pool_name, labels, taints):
    """The annotation value: canonical JSON, so an unchanged spec gives the identical string."""
    return json.dumps({"pool": pool_name,
                       "labels": sorted(labels),
                       "taints": sorted("%s:%s" % (t["key"], t["effect"]) for t in taints)},
                      sort_keys=True, separators=(",", ":"))


def host_matches(host, node):
    """An inventory hostname matches a node by name, by its kubernetes.io/hostname label, or
    by short name when one side is a FQDN and the other is not."""
    name = _meta(node).get("name") or ""
    candidates = {name, node_labels(node).get("kubernetes.io/hostname") or name}
    if host in candidates:
        return True
    short = host.split(".", 1)[0]
    return any(("." in host) != ("." in c) and short == c.split(".", 1)[0] for c in candidates)


# ---------------------------------------------------------------------------------------
# Desired state per node
# ---------------------------------------------------------------------------------------


def desired_for_node(pool, node, warnings=None):
    """(labels, taints) that ``pool`` wants on ``node``. ``pool`` None releases the node."""
    if pool is None:
        return {}, []
    labels = dict(pool["labels"])
    key = pool.get("gpu_type_label")
    if key:
        value = gpu_type_from_product(node_labels(node).get(GFD_PRODUCT_LABEL))
        if value:
            labels[key] = value
        else:
            owned_labels = parse_managed(_meta(node).get("annotations"))["labels"]
            current = node_labels(node).get(key)
            if key in owned_labels and current is not None:
                labels[key] = current  # GFD not (yet) labelling: keep what we set before
            if warnings is not None:
                warnings.append("node %s has no usable %s label (GPU Feature Discovery not running "
                                "yet?); %s not set" % (_meta(node).get("name"), GFD_PRODUCT_LABEL, key))
    return labels, [dict(t) for t in pool["taints"]]


def compute_node_change(node, pool_name, desired_labels, desired_taints):
    """Before/after labels, taints and ownership record for one node, and the merge patch.

    Removes owned keys that are no longer desired, sets desired ones, keeps the rest
    (foreign labels and taints) exactly as they are, in their order.
    """
    meta = _meta(node)
    annotations = meta.get("annotations") or {}
    owned = parse_managed(annotations)
    owned_labels, owned_taints = owned["labels"], owned["taints"]
    labels_before = node_labels(node)
    taints_before = node_taints(node)

    labels_after = dict(labels_before)
    for key in owned_labels - set(desired_labels):
        labels_after.pop(key, None)
    labels_after.update(desired_labels)

    wanted = {(t["key"], t["effect"]): t for t in desired_taints}
    placed = set()
    taints_after = []
    for taint in taints_before:
        ident = (taint.get("key"), taint.get("effect"))
        if ident in wanted:
            placed.add(ident)
            same = canonical_taint(taint) == canonical_taint(wanted[ident])
            taints_after.append(taint if same else dict(wanted[ident]))
        elif "%s:%s" % ident in owned_taints:
            continue
        else:
            taints_after.append(taint)
    for taint in desired_taints:
        if (taint["key"], taint["effect"]) not in placed:
            taints_after.append(dict(taint))

    record_before = annotations.get(MANAGED_ANNOTATION)
    record_after = managed_record(pool_name, desired_labels, desired_taints) if pool_name else None

    patch = {}
    label_patch = {k: v for k, v in labels_after.items() if labels_before.get(k) != v}
    label_patch.update({k: None for k in labels_before if k not in labels_after})
    meta_patch = {}
    if label_patch:
        meta_patch["labels"] = label_patch
    if record_before != record_after:
        meta_patch["annotations"] = {MANAGED_ANNOTATION: record_after}
    if meta_patch:
        patch["metadata"] = meta_patch
    taints_changed = [canonical_taint(t) for t in taints_before] != [canonical_taint(t) for t in taints_after]
    if taints_changed:
        # spec.taints is replaced whole, so we send foreign taints back too; the
        # resourceVersion precondition makes sure nobody changed them meanwhile.
        patch["spec"] = {"taints": taints_after or None}

    before_ids = {canonical_taint(t) for t in taints_before}
    after_ids = {canonical_taint(t) for t in taints_after}
    return {
        "name": meta.get("name"),
        "pool": pool_name,
        "changed": bool(patch),
        "patch": patch or None,
        "before": {"labels": labels_before, "taints": taints_before},
        "after": {"labels": labels_after, "taints": taints_after},
        "summary": {
            "labels_set": {k: v for k, v in label_patch.items() if v is not None},
            "labels_removed": sorted(k for k, v in label_patch.items() if v is None),
            "taints_added": sorted(format_taint(t) for t in taints_after if canonical_taint(t) not in before_ids),
            "taints_removed": sorted(format_taint(t) for t in taints_before if canonical_taint(t) not in after_ids),
            "ownership_changed": record_before != record_after,
        },
    }


def plan_pools(pools, nodes, release_unselected=True, gpu_evidence_labels=()):
    """Assign nodes to pools, enforce the guards, and compute every node's change.

    ``pools`` come from ``normalize_pools``; ``nodes`` are Node dicts from one LIST.
    Raises ``NodePoolError`` listing every problem before anything is written. Returns
    ``{"assignments": {node: pool}, "changes": [...], "pool_nodes": {pool: [names]},
    "warnings": [...]}`` where ``changes`` covers selected and released nodes.
    """
    by_name = {}
    for node in nodes:
        by_name[_meta(node).get("name")] = node
    errors = []
    warnings = []
    pool_names = {p["name"] for p in pools}
    pool_nodes = {}
    claims = {}
    for pool in pools:
        selected = set()
        if pool["selector"] is not None:
            selected.update(n for n, node in by_name.items() if selector_matches(pool["requirements"], node_labels(node)))
        missing = [n for n in pool["nodes"] if n not in by_name]
        if missing:
            errors.append("pool %r: nodes not found in the cluster: %s" % (pool["name"], ", ".join(missing)))
        selected.update(n for n in pool["nodes"] if n in by_name)
        for host in pool["hosts"]:
            matched = [n for n, node in by_name.items() if host_matches(host, node)]
            if not matched:
                errors.append("pool %r: inventory host %r matches no node (by name, kubernetes.io/hostname "
                              "or short name)" % (pool["name"], host))
            elif len(matched) > 1:
                errors.append("pool %r: inventory host %r matches several nodes: %s"
                              % (pool["name"], host, ", ".join(sorted(matched))))
            else:
                selected.add(matched[0])
        if not selected and not pool["allow_empty"] and not missing:
            how = []
            if pool["selector"] is not None:
                how.append("selector %r" % pool["selector"])
            if pool["hosts"]:
                how.append("hosts %s" % ", ".join(pool["hosts"]))
            errors.append("pool %r selects no nodes (%s); fix the selection or set allow_empty: true"
                          % (pool["name"], "; ".join(how) or "empty selection"))
        pool_nodes[pool["name"]] = sorted(selected)
        for name in selected:
            claims.setdefault(name, []).append(pool["name"])

    for name, claimants in sorted(claims.items()):
        if len(claimants) > 1:
            errors.append("node %s is selected by pools %s; a node belongs to one pool"
                          % (name, " and ".join(repr(c) for c in claimants)))
        owner = parse_managed(_meta(by_name[name]).get("annotations"))["pool"]
        if owner and owner not in pool_names:
            errors.append("node %s is managed by pool %r, which is not in this call; include that pool "
                          "(so the node can move) or remove it from the node first" % (name, owner))

    for pool in pools:
        if pool["allow_mixed"]:
            continue
        wrong = []
        for name in pool_nodes[pool["name"]]:
            evidence = gpu_evidence(by_name[name], gpu_evidence_labels)
            if pool["kind"] == "gpu" and not evidence:
                wrong.append("%s (no GPU: no GFD/GPU Operator label and no nvidia.com/gpu or "
                             "nvidia.com/mig-* capacity)" % name)
            elif pool["kind"] == "cpu" and evidence:
                wrong.append("%s (%s)" % (name, ", ".join(evidence[:3])))
        if wrong:
            if pool["kind"] == "gpu":
                errors.append("gpu pool %r selects nodes without GPUs: %s. Mixing CPU and GPU nodes in one "
                              "pool is the mistake this guard prevents; fix the selection, or set "
                              "allow_mixed: true if you really mean it" % (pool["name"], "; ".join(wrong)))
            else:
                errors.append("cpu pool %r selects GPU nodes: %s. CPU workloads would compete with GPU "
                              "workloads there; fix the selection, or set allow_mixed: true if you really "
                              "mean it" % (pool["name"], "; ".join(wrong)))
    if errors:
        raise NodePoolError(errors)

    pools_by_name = {p["name"]: p for p in pools}
    assignments = {name: claimants[0] for name, claimants in claims.items()}
    if release_unselected:
        for name, node in by_name.items():
            owner = parse_managed(_meta(node).get("annotations"))["pool"]
            if name not in assignments and owner in pool_names:
                assignments[name] = None  # was ours, no longer selected: give it back

    changes = []
    for name in sorted(assignments):
        pool = pools_by_name.get(assignments[name])
        labels, taints = desired_for_node(pool, by_name[name], warnings)
        changes.append(compute_node_change(by_name[name], pool["name"] if pool else None, labels, taints))
    return {"assignments": assignments, "changes": changes, "pool_nodes": pool_nodes, "warnings": warnings}


# ---------------------------------------------------------------------------------------
# Apply
# ---------------------------------------------------------------------------------------


# PATCH requests in flight at once. One round trip per node was what bounded a 1,000-node first
# run (docs/benchmarks.md); a few concurrent requests stay far below the apiserver's default
# --max-mutating-requests-inflight of 200.
PATCH_WORKERS = 8


def _needs_precondition(patch):
    """spec.taints is replaced whole (foreign taints are sent back), so it must not overwrite a
    concurrent change; label and annotation keys merge one by one and need no precondition."""
    return "spec" in (patch or {})


def awaiting_gpu_product(pools, plan, nodes):
    """Names of the nodes whose pool sets a gpu_type_label but whose GFD product label is not
    usable yet, in plan order."""
    by_name = {_meta(n).get("name"): n for n in nodes}
    return [name for pool in pools if pool.get("gpu_type_label")
            for name in plan["pool_nodes"][pool["name"]]
            if not gpu_type_from_product(node_labels(by_name[name]).get(GFD_PRODUCT_LABEL))]


def apply_pools(adapter, pools, check_mode=False, diff=False, release_unselected=True,
                gpu_evidence_labels=(), conflict_retries=5, workers=PATCH_WORKERS,
                gpu_type_wait=0, wait_interval=5, clock=time.monotonic, sleep=time.sleep):
    """One LIST, the plan, then one PATCH per node that differs (none in check mode), up to
    ``workers`` at a time.

    With ``gpu_type_wait`` > 0 (seconds) the LIST is repeated every ``wait_interval`` seconds
    while a node of a pool with a gpu_type_label lacks a usable GFD product label: GFD labels a
    node some time after its pod is Ready (a polling loop of its own), and a node labelled
    without its gpu-type is one that no GPU-type node selector matches. Check mode never waits: on
    a fresh cluster its GFD does not exist yet.

    Returns the module result (without ``changed`` semantics beyond the counts). On an API
    error part-way the raised ``K8sError`` carries ``result`` with what was done so far.
    """
    pools = normalize_pools(pools)
    started = clock()
    deadline = started + max(0, gpu_type_wait)
    waited_for = set()  # nodes this call slept for
    while True:
        nodes = adapter.list_nodes()
        plan = plan_pools(pools, nodes, release_unselected=release_unselected,
                          gpu_evidence_labels=gpu_evidence_labels)
        missing = awaiting_gpu_product(pools, plan, nodes)
        left = deadline - clock()
        if check_mode or not missing or left <= 0:
            break
        waited_for.update(missing)
        sleep(min(wait_interval, left))
    pools_by_name = {p["name"]: p for p in pools}
    writes_before = adapter.write_count
    changes = {}
    diff_before, diff_after = {}, {}
    patched = []
    by_name = {_meta(n).get("name"): n for n in nodes}

    pending = [c for c in plan["changes"] if c["changed"]]
    if not check_mode and pending:
        abort = threading.Event()  # after a failure, patches not yet started are not sent

        def patch_one(change):
            if abort.is_set():
                return False
            pool = pools_by_name.get(change["pool"])

            def build(node, pool=pool):
                labels, taints = desired_for_node(pool, node)
                return compute_node_change(node, pool["name"] if pool else None, labels, taints)["patch"]

            try:
                adapter.patch_node_with_retry(change["name"], build, node=by_name[change["name"]],
                                              retries=conflict_retries, precondition=_needs_precondition)
            except Exception:
                abort.set()
                raise
            return True

        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(pending)))) as pool_executor:
            futures = [(c["name"], pool_executor.submit(patch_one, c)) for c in pending]
            failed = None
            for name, future in futures:  # plan order, so the first failure reported is deterministic
                exc = future.exception()
                if exc is None:
                    if future.result():
                        patched.append(name)
                elif failed is None:
                    failed = (name, exc)
        if failed is not None:
            name, exc = failed
            if hasattr(exc, "result"):
                exc.result = {"patched_nodes": patched,
                              "writes": adapter.write_count - writes_before,
                              "failed_node": name}
            raise exc

    for change in pending:
        name = change["name"]
        entry = dict(change["summary"])
        entry["pool"] = change["pool"]
        entry["released"] = change["pool"] is None
        changes[name] = entry
        if diff:
            diff_before[name] = change["before"]
            diff_after[name] = change["after"]

    pool_results = []
    for pool in pools:
        names = plan["pool_nodes"][pool["name"]]
        pool_results.append({
            "name": pool["name"],
            "kind": pool["kind"],
            "nodes": names,
            "nodes_changed": sum(1 for n in names if n in changes),
        })
    result = {
        "changed": bool(changes),
        "nodes_listed": len(nodes),
        "nodes_total": len(plan["assignments"]),
        "nodes_changed": len(changes),
        "nodes_released": sorted(n for n, p in plan["assignments"].items() if p is None and n in changes),
        "patches": len(changes),
        "writes": adapter.write_count - writes_before,
        "pools": pool_results,
        "changes": changes,
        "warnings": plan["warnings"],
        "gpu_type_wait": {"nodes": sorted(waited_for), "seconds": round(clock() - started, 1) if waited_for else 0,
                          "still_missing": missing if waited_for else []},
    }
    if diff:
        result["diff"] = {"before": diff_before, "after": diff_after}
    return result
