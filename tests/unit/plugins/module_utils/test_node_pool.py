# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Node pools: desired state, ownership, guards and the apply loop, without a cluster.

Label names come from facts/gpu-automation-anchors.md (C1 GFD labels, C2 resource names) and
the seed's pools (taints ``workload=llm-inference:NoSchedule`` / ``workload=llm-training:NoSchedule``,
label ``workload-class=inference``).
"""
from __future__ import annotations

import copy
import json
import pathlib
from urllib.parse import urlsplit

import pytest
import yaml

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8s
from ansible_collections.gpuops.llm.plugins.module_utils.node_pool import (
    GFD_PRODUCT_LABEL,
    MANAGED_ANNOTATION,
    NodePoolError,
    apply_pools,
    gpu_evidence,
    gpu_type_from_product,
    normalize_pools,
    parse_managed,
    plan_pools,
)

ROOT = pathlib.Path(__file__).resolve().parents[4]
INFERENCE_TAINT = {"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}


def node(name, labels=None, taints=None, capacity=None, annotations=None, rv="1"):
    obj = {"apiVersion": "v1", "kind": "Node",
           "metadata": {"name": name, "resourceVersion": rv, "labels": dict(labels or {}),
                        "annotations": dict(annotations or {})},
           "spec": {}, "status": {"capacity": dict(capacity or {}), "allocatable": dict(capacity or {})}}
    if taints is not None:
        obj["spec"]["taints"] = list(taints)
    return obj


def gpu_node(name, **kw):
    labels = {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB",
              "nvidia.com/gpu.count": "1", "kubernetes.io/hostname": name}
    labels.update(kw.pop("labels", {}))
    return node(name, labels=labels, capacity={"nvidia.com/gpu": "1", "cpu": "16"}, **kw)


def cpu_node(name, **kw):
    labels = {"kubernetes.io/hostname": name}
    labels.update(kw.pop("labels", {}))
    return node(name, labels=labels, capacity={"cpu": "8"}, **kw)


def inference_pool(**kw):
    pool = {"name": "llm-inference", "kind": "gpu", "selector": "pool=inference",
            "labels": {"workload-class": "inference"}, "taints": ["workload=llm-inference:NoSchedule"]}
    pool.update(kw)
    return pool


def apply_patch(obj, patch):
    """RFC 7386 merge, as the API server applies it."""
    if not isinstance(patch, dict):
        return patch
    out = dict(obj) if isinstance(obj, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = apply_patch(out.get(key), value)
    return out


def plan(pools, nodes, **kw):
    return plan_pools(normalize_pools(pools), nodes, **kw)


def changes_by_name(result):
    return {c["name"]: c for c in result["changes"]}


# --------------------------------------------------------------------------- validation
def test_valid_pool_normalizes_taint_strings_and_dicts():
    pools = normalize_pools([inference_pool(taints=["workload=llm-inference:NoSchedule",
                                                    {"key": "gpu", "effect": "NoExecute"},
                                                    "dedicated:PreferNoSchedule"])])
    assert pools[0]["taints"] == [INFERENCE_TAINT, {"key": "gpu", "effect": "NoExecute"},
                                  {"key": "dedicated", "effect": "PreferNoSchedule"}]
    assert pools[0]["kind"] == "gpu"


@pytest.mark.parametrize("pool,expected", [
    (inference_pool(taints=["workload=llm-inference:NoScheduleX"]), ["effect 'NoScheduleX' is not valid", "NoExecute"]),
    (inference_pool(taints=[{"key": "workload", "effect": "Sometimes"}]), ["taints[0]", "Sometimes"]),
    (inference_pool(labels={"workload-class": "has spaces"}), ["labels['workload-class']", "'has spaces'"]),
    (inference_pool(labels={"gpu-type": "x" * 64}), ["labels['gpu-type']"]),
    (inference_pool(labels={"Bad_Prefix.io/x": "1"}), ["key 'Bad_Prefix.io/x'"]),
    ({"name": "empty", "kind": "gpu"}, ["selects no nodes; give selector, nodes or hosts"]),
    (inference_pool(kind="tpu"), ["kind: 'tpu' is not valid (valid: gpu, cpu)"]),
    (inference_pool(name="LLM_pool"), ["pools[0].name: 'LLM_pool'"]),
    (inference_pool(selector="pool in (a"), ["selector: 'pool in (a' is not a valid label selector"]),
    (inference_pool(selector=""), ["empty selector would select every node"]),
    (inference_pool(labels={"nvidia.com/gpu.present": "true"}), ["set by GPU Feature Discovery"]),
    (inference_pool(labels={"nvidia.com/mig-1g.10gb.count": "7"}), ["set by GPU Feature Discovery"]),
    (inference_pool(taints=["a:NoSchedule", "a=x:NoSchedule"]), ["key and effect must be unique"]),
    (inference_pool(kind="cpu", gpu_type_label="gpu-type"), ["a cpu pool has no GPU product"]),
    (inference_pool(gpu_type_label="gpu-type", labels={"gpu-type": "a100"}), ["set both in labels and by gpu_type_label"]),
    (inference_pool(colour="blue"), ["unknown option(s) colour"]),
])
def test_bad_pools_fail_naming_field_value_and_valid_choices(pool, expected):
    with pytest.raises(NodePoolError) as info:
        normalize_pools([pool])
    for fragment in expected:
        assert fragment in str(info.value)


def test_all_problems_reported_at_once_and_names_unique():
    with pytest.raises(NodePoolError) as info:
        normalize_pools([inference_pool(taints=["x:Bad"]), inference_pool(labels={"k": "bad value"})])
    assert len(info.value.errors) == 3
    assert any("pool names must be unique" in e for e in info.value.errors)


def test_yaml_scalars_become_label_strings():
    pools = normalize_pools([inference_pool(labels={"replicas": 8, "spot": False})])
    assert pools[0]["labels"] == {"replicas": "8", "spot": "false"}


# --------------------------------------------------------------------------- GPU evidence
@pytest.mark.parametrize("labels,capacity", [
    ({"nvidia.com/gpu.present": "true"}, {}),
    ({"nvidia.com/gpu.count": "0", "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-INVALID"}, {}),
    ({"nvidia.com/mig-1g.10gb.count": "7"}, {}),
    ({"feature.node.kubernetes.io/pci-10de.present": "true"}, {}),
    ({}, {"nvidia.com/gpu": "8"}),
    ({}, {"nvidia.com/mig-3g.40gb": "2"}),
    ({}, {"nvidia.com/gpu.shared": "4"}),
])
def test_gpu_evidence_from_gfd_labels_or_capacity(labels, capacity):
    assert gpu_evidence(node("n", labels=labels, capacity=capacity))


def test_cpu_node_has_no_gpu_evidence_and_extra_labels_count():
    plain = node("n", labels={"nvidia.com/gpu.present": "false", "cloud/accel": "a100"},
                 capacity={"cpu": "4", "nvidia.com/gpu": "0"})
    assert gpu_evidence(plain) == []
    assert gpu_evidence(plain, ["cloud/accel"]) and gpu_evidence(plain, ["cloud/accel=a100"])
    assert gpu_evidence(plain, ["cloud/accel=h100"]) == []


def test_gpu_type_from_gfd_product():
    assert gpu_type_from_product("NVIDIA-A100-SXM4-40GB") == "NVIDIA-A100-SXM4-40GB"
    assert gpu_type_from_product("A100-SXM4-40GB-MIG-1g.5gb") == "A100-SXM4-40GB"
    assert gpu_type_from_product("Tesla-T4-SHARED") == "Tesla-T4"
    assert gpu_type_from_product(None) is None


# --------------------------------------------------------------------------- desired state
def test_first_run_adds_labels_taints_and_ownership_record():
    nodes = [gpu_node("g1", labels={"pool": "inference"}), gpu_node("g2", labels={"pool": "other"})]
    result = plan([inference_pool(gpu_type_label="gpu-type")], nodes)
    assert result["pool_nodes"] == {"llm-inference": ["g1"]}
    change = changes_by_name(result)["g1"]
    assert change["changed"]
    assert change["patch"]["metadata"]["labels"] == {"workload-class": "inference", "gpu-type": "NVIDIA-A100-SXM4-40GB"}
    assert change["patch"]["spec"]["taints"] == [INFERENCE_TAINT]
    record = json.loads(change["patch"]["metadata"]["annotations"][MANAGED_ANNOTATION])
    assert record == {"pool": "llm-inference", "labels": ["gpu-type", "workload-class"],
                      "taints": ["workload:NoSchedule"]}
    assert "g2" not in changes_by_name(result)


def test_applied_patch_converges_to_no_change():
    n = gpu_node("g1", labels={"pool": "inference"}, taints=[{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}])
    first = changes_by_name(plan([inference_pool()], [n]))["g1"]
    after = apply_patch(n, first["patch"])
    second = changes_by_name(plan([inference_pool()], [after]))["g1"]
    assert not second["changed"] and second["patch"] is None


def test_dropped_owned_label_and_taint_removed_foreign_kept():
    n = gpu_node("g1", labels={"pool": "inference", "team": "search"},
                 taints=[{"key": "foreign", "value": "x", "effect": "NoSchedule"}])
    pool = inference_pool(labels={"workload-class": "inference", "tier": "gold"},
                          taints=["workload=llm-inference:NoSchedule", "old:PreferNoSchedule"])
    n = apply_patch(n, changes_by_name(plan([pool], [n]))["g1"]["patch"])
    assert n["metadata"]["labels"]["tier"] == "gold"

    slim = inference_pool()  # drops label tier and taint old:PreferNoSchedule
    change = changes_by_name(plan([slim], [n]))["g1"]
    assert change["summary"]["labels_removed"] == ["tier"]
    assert change["summary"]["taints_removed"] == ["old:PreferNoSchedule"]
    n = apply_patch(n, change["patch"])
    labels = n["metadata"]["labels"]
    assert "tier" not in labels
    assert labels["team"] == "search" and labels["pool"] == "inference"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-40GB"
    assert n["spec"]["taints"] == [{"key": "foreign", "value": "x", "effect": "NoSchedule"}, INFERENCE_TAINT]
    owned = parse_managed(n["metadata"]["annotations"])
    assert owned["labels"] == {"workload-class"} and owned["taints"] == {"workload:NoSchedule"}


def test_unowned_label_with_same_key_is_taken_over_then_removable():
    n = gpu_node("g1", labels={"pool": "inference", "workload-class": "batch"})
    change = changes_by_name(plan([inference_pool()], [n]))["g1"]
    assert change["patch"]["metadata"]["labels"] == {"workload-class": "inference"}


def test_taint_effect_change_replaces_owned_taint():
    n = gpu_node("g1", labels={"pool": "inference"})
    n = apply_patch(n, changes_by_name(plan([inference_pool()], [n]))["g1"]["patch"])
    change = changes_by_name(plan([inference_pool(taints=["workload=llm-inference:NoExecute"])], [n]))["g1"]
    assert change["summary"]["taints_added"] == ["workload=llm-inference:NoExecute"]
    assert change["summary"]["taints_removed"] == ["workload=llm-inference:NoSchedule"]
    assert change["patch"]["spec"]["taints"] == [{"key": "workload", "value": "llm-inference", "effect": "NoExecute"}]


def test_taint_value_change_in_place_and_unowned_same_key_other_effect_kept():
    foreign = {"key": "workload", "value": "x", "effect": "PreferNoSchedule"}
    n = gpu_node("g1", labels={"pool": "inference"}, taints=[foreign])
    n = apply_patch(n, changes_by_name(plan([inference_pool()], [n]))["g1"]["patch"])
    change = changes_by_name(plan([inference_pool(taints=["workload=vllm:NoSchedule"])], [n]))["g1"]
    assert change["patch"]["spec"]["taints"] == [foreign, {"key": "workload", "value": "vllm", "effect": "NoSchedule"}]
    assert "metadata" not in change["patch"]  # same key:effect, so the ownership record stays


def test_removing_last_taint_deletes_the_field():
    n = gpu_node("g1", labels={"pool": "inference"})
    n = apply_patch(n, changes_by_name(plan([inference_pool()], [n]))["g1"]["patch"])
    change = changes_by_name(plan([inference_pool(taints=[])], [n]))["g1"]
    assert change["patch"]["spec"] == {"taints": None}


def test_unreadable_ownership_record_owns_nothing():
    n = gpu_node("g1", labels={"pool": "inference", "tier": "gold"}, annotations={MANAGED_ANNOTATION: "{broken"})
    change = changes_by_name(plan([inference_pool()], [n]))["g1"]
    assert "tier" not in change["summary"]["labels_removed"]


def test_gpu_type_kept_when_gfd_label_missing_and_warns():
    n = gpu_node("g1", labels={"pool": "inference"})
    pool = inference_pool(gpu_type_label="gpu-type")
    n = apply_patch(n, changes_by_name(plan([pool], [n]))["g1"]["patch"])
    del n["metadata"]["labels"]["nvidia.com/gpu.product"]
    result = plan([pool], [n])
    assert not changes_by_name(result)["g1"]["changed"]
    assert any("g1" in w and "nvidia.com/gpu.product" in w for w in result["warnings"])


def test_gpu_type_follows_product_but_not_mig_layout():
    n = gpu_node("g1", labels={"pool": "inference", "nvidia.com/gpu.product": "A100-SXM4-40GB-MIG-1g.5gb"})
    change = changes_by_name(plan([inference_pool(gpu_type_label="gpu-type")], [n]))["g1"]
    assert change["patch"]["metadata"]["labels"]["gpu-type"] == "A100-SXM4-40GB"


# --------------------------------------------------------------------------- selection and guards
def test_gpu_pool_selecting_cpu_node_fails_naming_it():
    nodes = [gpu_node("g1", labels={"pool": "inference"}), cpu_node("c1", labels={"pool": "inference"})]
    with pytest.raises(NodePoolError) as info:
        plan([inference_pool()], nodes)
    text = str(info.value)
    assert "gpu pool 'llm-inference' selects nodes without GPUs: c1" in text and "allow_mixed" in text
    assert "g1" not in text


def test_cpu_pool_selecting_gpu_node_fails_naming_evidence():
    nodes = [cpu_node("c1", labels={"role": "general"}),
             node("m1", labels={"role": "general"}, capacity={"nvidia.com/mig-1g.10gb": "7"})]
    with pytest.raises(NodePoolError) as info:
        plan([{"name": "cpu", "kind": "cpu", "selector": "role=general"}], nodes)
    assert "cpu pool 'cpu' selects GPU nodes: m1" in str(info.value)
    assert "nvidia.com/mig-1g.10gb" in str(info.value)


def test_allow_mixed_bypasses_guard():
    nodes = [gpu_node("g1", labels={"pool": "inference"}), cpu_node("c1", labels={"pool": "inference"})]
    result = plan([inference_pool(allow_mixed=True)], nodes)
    assert result["pool_nodes"]["llm-inference"] == ["c1", "g1"]


def test_node_claimed_by_two_pools_is_an_error():
    nodes = [gpu_node("g1", labels={"pool": "inference"})]
    training = {"name": "llm-training", "nodes": ["g1"], "taints": ["workload=llm-training:NoSchedule"]}
    with pytest.raises(NodePoolError, match="node g1 is selected by pools 'llm-inference' and 'llm-training'"):
        plan([inference_pool(), training], nodes)


def test_node_owned_by_pool_outside_this_call_is_not_taken_silently():
    record = json.dumps({"pool": "llm-training", "labels": [], "taints": []})
    nodes = [gpu_node("g1", labels={"pool": "inference"}, annotations={MANAGED_ANNOTATION: record})]
    with pytest.raises(NodePoolError, match="managed by pool 'llm-training', which is not in this call"):
        plan([inference_pool()], nodes)


def test_node_moves_between_pools_in_one_call():
    n = gpu_node("g1", labels={"pool": "inference"})
    n = apply_patch(n, changes_by_name(plan([inference_pool()], [n]))["g1"]["patch"])
    training = {"name": "llm-training", "nodes": ["g1"], "labels": {"workload-class": "training"},
                "taints": ["workload=llm-training:NoSchedule"]}
    change = changes_by_name(plan([inference_pool(selector="pool=nothing", allow_empty=True), training], [n]))["g1"]
    assert change["pool"] == "llm-training"
    after = apply_patch(n, change["patch"])
    assert after["spec"]["taints"] == [{"key": "workload", "value": "llm-training", "effect": "NoSchedule"}]
    assert after["metadata"]["labels"]["workload-class"] == "training"


def test_unselected_node_is_released_unless_disabled():
    n = gpu_node("g1", labels={"pool": "inference", "team": "a"})
    n = apply_patch(n, changes_by_name(plan([inference_pool()], [n]))["g1"]["patch"])
    n["metadata"]["labels"]["pool"] = "retired"
    pools = [inference_pool(allow_empty=True)]
    change = changes_by_name(plan(pools, [n]))["g1"]
    assert change["pool"] is None
    after = apply_patch(n, change["patch"])
    assert "workload-class" not in after["metadata"]["labels"] and after["metadata"]["labels"]["team"] == "a"
    assert "taints" not in after["spec"]
    assert MANAGED_ANNOTATION not in after["metadata"]["annotations"]
    assert plan(pools, [n], release_unselected=False)["changes"] == []


def test_empty_selection_fails_unless_allowed():
    with pytest.raises(NodePoolError, match="selects no nodes \\(selector 'pool=inference'\\)"):
        plan([inference_pool()], [cpu_node("c1")])
    assert plan([inference_pool(allow_empty=True)], [cpu_node("c1")])["changes"] == []


def test_explicit_nodes_and_hosts_must_exist():
    nodes = [gpu_node("gpu-0.example.com", labels={"kubernetes.io/hostname": "gpu-0"}), gpu_node("gpu-1")]
    result = plan([{"name": "p", "hosts": ["gpu-0", "gpu-1.example.com"]}], nodes)
    assert result["pool_nodes"]["p"] == ["gpu-0.example.com", "gpu-1"]
    with pytest.raises(NodePoolError) as info:
        plan([{"name": "p", "nodes": ["ghost"], "hosts": ["phantom"]}], nodes)
    assert "nodes not found in the cluster: ghost" in str(info.value)
    assert "inventory host 'phantom' matches no node" in str(info.value)


# --------------------------------------------------------------------------- apply loop
class FakeNodeApi:
    """A tiny API server for Nodes behind the ApiClient interface K8s uses: LIST, GET and
    merge PATCH with resourceVersion preconditions; ``conflicts`` injects 409s."""

    def __init__(self, nodes, conflicts=()):
        self.nodes = {n["metadata"]["name"]: copy.deepcopy(n) for n in nodes}
        self.conflicts = set(conflicts)
        self.requests = []
        self.preconditions = []  # nodes whose PATCH carried a resourceVersion precondition

    def param_serialize(self, method, path, query_params=None, header_params=None, body=None, auth_settings=None):
        return method, path, header_params, body, []

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        self.requests.append((method, url))
        parts = urlsplit(url).path.strip("/").split("/")
        if method == "GET" and parts == ["api", "v1", "nodes"]:
            return _Resp(200, {"kind": "NodeList", "items": list(self.nodes.values())})
        name = parts[-1]
        if name not in self.nodes:
            return _Resp(404, {"kind": "Status", "reason": "NotFound", "message": "nodes %r not found" % name})
        current = self.nodes[name]
        if method == "GET":
            return _Resp(200, current)
        assert method == "PATCH" and header_params["Content-Type"] == "application/merge-patch+json"
        if name in self.conflicts:
            self.conflicts.discard(name)
            current["metadata"]["labels"]["someone-else"] = "raced"
            current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        if "resourceVersion" in body.get("metadata", {}):
            self.preconditions.append(name)
        if body.get("metadata", {}).get("resourceVersion", current["metadata"]["resourceVersion"]) != \
                current["metadata"]["resourceVersion"]:
            return _Resp(409, {"kind": "Status", "reason": "Conflict", "message": "the object has been modified"})
        body = copy.deepcopy(body)
        body.get("metadata", {}).pop("resourceVersion", None)
        updated = apply_patch(current, body)
        updated["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.nodes[name] = updated
        return _Resp(200, updated)


class _Resp:
    def __init__(self, status, payload):
        self.status, self.reason, self._data = status, "", json.dumps(payload).encode()

    def read(self):
        return self._data


def _cluster():
    return [gpu_node("gpu-inf-%d" % i, labels={"pool": "inference"}) for i in range(3)] + \
           [gpu_node("gpu-train-0", labels={"pool": "training"})] + \
           [cpu_node("cpu-%d" % i, labels={"pool": "cpu", "team": "web"}) for i in range(2)]


def _seed_pools():
    return [
        inference_pool(gpu_type_label="gpu-type"),
        {"name": "llm-training", "kind": "gpu", "selector": "pool=training", "labels": {"workload-class": "training"},
         "taints": [{"key": "workload", "value": "llm-training", "effect": "NoSchedule"}]},
        {"name": "cpu", "kind": "cpu", "selector": "pool=cpu", "labels": {"workload-class": "general"}},
    ]


def test_check_mode_predicts_real_run_and_writes_nothing():
    api = FakeNodeApi(_cluster())
    check = apply_pools(K8s(api), _seed_pools(), check_mode=True, diff=True)
    assert check["writes"] == 0
    assert all(method == "GET" for method, url in api.requests)
    assert len(api.requests) == 1, "one LIST and nothing else"
    real = apply_pools(K8s(api), _seed_pools())
    assert (check["changed"], check["nodes_changed"], check["patches"]) == (real["changed"], real["nodes_changed"], real["patches"])
    assert check["changes"] == real["changes"]
    assert real["nodes_changed"] == 6 and real["writes"] == 6
    assert check["diff"]["before"]["cpu-0"]["labels"] == {"kubernetes.io/hostname": "cpu-0", "pool": "cpu", "team": "web"}
    assert check["diff"]["after"]["gpu-inf-0"]["taints"] == [INFERENCE_TAINT]


def test_second_run_changes_nothing_and_sends_no_write():
    api = FakeNodeApi(_cluster())
    apply_pools(K8s(api), _seed_pools())
    api.requests.clear()
    again = apply_pools(K8s(api), _seed_pools())
    assert again["changed"] is False and again["writes"] == 0 and again["patches"] == 0
    assert api.requests == [("GET", "/api/v1/nodes")]
    assert [p["nodes_changed"] for p in again["pools"]] == [0, 0, 0]
    assert again["nodes_total"] == 6


def test_only_differing_nodes_are_patched():
    api = FakeNodeApi(_cluster())
    apply_pools(K8s(api), _seed_pools())
    pools = _seed_pools()
    pools[2]["labels"]["tier"] = "bronze"
    api.requests.clear()
    result = apply_pools(K8s(api), pools)
    assert sorted(result["changes"]) == ["cpu-0", "cpu-1"]
    assert sorted(url for method, url in api.requests if method == "PATCH") == ["/api/v1/nodes/cpu-0", "/api/v1/nodes/cpu-1"]


def test_conflict_is_retried_without_losing_the_racing_change():
    api = FakeNodeApi(_cluster(), conflicts={"gpu-inf-1"})
    result = apply_pools(K8s(api), _seed_pools())
    assert result["writes"] == 7  # one extra PATCH after the 409
    node_after = api.nodes["gpu-inf-1"]
    assert node_after["metadata"]["labels"]["someone-else"] == "raced"
    assert node_after["metadata"]["labels"]["workload-class"] == "inference"


def test_only_taint_patches_carry_a_precondition():
    # Labels merge key by key; spec.taints is replaced whole, so only it must not race a change.
    api = FakeNodeApi(_cluster())
    apply_pools(K8s(api), _seed_pools())
    assert sorted(api.preconditions) == ["gpu-inf-0", "gpu-inf-1", "gpu-inf-2", "gpu-train-0"]
    # A label-only change (a new pool label) is sent without one.
    pools = _seed_pools()
    pools[0]["labels"]["tier"] = "gold"
    api.preconditions.clear()
    result = apply_pools(K8s(api), pools)
    assert result["nodes_changed"] == 3 and api.preconditions == []


def test_patches_go_out_concurrently_up_to_the_worker_count():
    import threading
    import time

    class SlowApi(FakeNodeApi):
        def __init__(self, nodes):
            super().__init__(nodes)
            self.lock, self.active, self.peak = threading.Lock(), 0, 0

        def call_api(self, method, url, *a, **kw):
            if method != "PATCH":
                return super().call_api(method, url, *a, **kw)
            with self.lock:
                self.active += 1
                self.peak = max(self.peak, self.active)
            time.sleep(0.05)
            try:
                with self.lock:  # the fake's node table is not thread-safe; the real apiserver is
                    return super().call_api(method, url, *a, **kw)
            finally:
                with self.lock:
                    self.active -= 1

    api = SlowApi(_cluster())
    result = apply_pools(K8s(api), _seed_pools(), workers=4)
    assert result["writes"] == 6 and 2 <= api.peak <= 4
    # Results are reported in plan order (as check mode lists them) whatever order the patches finished in.
    plan_order = list(apply_pools(K8s(FakeNodeApi(_cluster())), _seed_pools(), check_mode=True)["changes"])
    assert list(result["changes"]) == plan_order
    serial = SlowApi(_cluster())
    apply_pools(K8s(serial), _seed_pools(), workers=1)
    assert serial.peak == 1 and serial.nodes == api.nodes


def test_guard_failure_writes_nothing():
    nodes = _cluster() + [cpu_node("cpu-stray", labels={"pool": "inference"})]
    api = FakeNodeApi(nodes)
    with pytest.raises(NodePoolError, match="cpu-stray"):
        apply_pools(K8s(api), _seed_pools())
    assert [m for m, url in api.requests] == ["GET"]


def test_api_error_part_way_reports_what_was_done():
    api = FakeNodeApi(_cluster())
    real_call = api.call_api

    def failing(method, url, *a, **kw):
        if method == "PATCH" and url.endswith("gpu-train-0"):
            return _Resp(403, {"kind": "Status", "reason": "Forbidden", "message": "nodes is forbidden"})
        return real_call(method, url, *a, **kw)

    api.call_api = failing
    with pytest.raises(Exception) as info:
        apply_pools(K8s(api), _seed_pools())
    assert "Node 'gpu-train-0'" in str(info.value) and "403" in str(info.value)
    assert info.value.result["failed_node"] == "gpu-train-0"
    assert set(info.value.result["patched_nodes"]) <= {"cpu-0", "cpu-1", "gpu-inf-0", "gpu-inf-1", "gpu-inf-2"}

    # One worker: the patches after the failing node are not sent at all.
    api = FakeNodeApi(_cluster())
    order = list(apply_pools(K8s(FakeNodeApi(_cluster())), _seed_pools(), check_mode=True)["changes"])
    bad = order[1]
    plain_call = api.call_api

    def fail_second(method, url, *a, **kw):
        if method == "PATCH" and url.endswith(bad):
            return _Resp(403, {"kind": "Status", "reason": "Forbidden", "message": "nodes is forbidden"})
        return plain_call(method, url, *a, **kw)

    api.call_api = fail_second
    with pytest.raises(Exception) as info:
        apply_pools(K8s(api), _seed_pools(), workers=1)
    assert info.value.result["patched_nodes"] == order[:1] and info.value.result["failed_node"] == bad
    # (the refused PATCH is answered by fail_second before it reaches the fake's log)
    assert [url.rsplit("/", 1)[-1] for m, url in api.requests if m == "PATCH"] == order[:1]


# --------------------------------------------------------------------------- role defaults mirror the seed
def test_role_default_pools_mirror_the_seed_and_validate():
    defaults = yaml.safe_load((ROOT / "roles/node_pools/defaults/main.yml").read_text())
    pools = copy.deepcopy(defaults["node_pools_pools"])
    for pool in pools:  # resolve the inventory-group templates to concrete names
        pool["hosts"] = ["h-%s" % pool["name"]]
        if isinstance(pool.get("gpu_type_label"), str) and "{{" in pool["gpu_type_label"]:
            pool["gpu_type_label"] = defaults["node_pools_gpu_type_label"]
    normalized = {p["name"]: p for p in normalize_pools(pools)}
    assert {"key": "workload", "value": "llm-inference", "effect": "NoSchedule"} in normalized["llm-inference"]["taints"]
    assert normalized["llm-inference"]["labels"]["workload-class"] == "inference"
    assert normalized["llm-inference"]["gpu_type_label"] == "gpu-type"
    assert {"key": "workload", "value": "llm-training", "effect": "NoSchedule"} in normalized["llm-training"]["taints"]
    assert normalized["llm-training"]["allow_empty"] is True  # the seed's training pool scales to zero
    cpu = [p for p in normalized.values() if p["kind"] == "cpu"]
    assert len(cpu) == 1 and not [t for t in cpu[0]["taints"] if t["key"] == "workload"]


# --------------------------------------------------------------------------- waiting for GFD labels
class LateGfdApi(FakeNodeApi):
    """GFD labels the inference nodes only on the ``labelled_on``-th LIST, as it does a little after
    its pod is Ready on a fresh cluster."""

    def __init__(self, nodes, labelled_on):
        self.product = {}
        for n in nodes:
            if n["metadata"]["labels"].get("pool") == "inference":
                self.product[n["metadata"]["name"]] = n["metadata"]["labels"].pop(GFD_PRODUCT_LABEL)
        super().__init__(nodes)
        self.lists, self.labelled_on = 0, labelled_on

    def call_api(self, method, url, *args, **kwargs):
        if method == "GET" and urlsplit(url).path == "/api/v1/nodes":
            self.lists += 1
            if self.lists == self.labelled_on:
                for name, product in self.product.items():
                    self.nodes[name]["metadata"]["labels"][GFD_PRODUCT_LABEL] = product
        return super().call_api(method, url, *args, **kwargs)


class FakeClock:
    def __init__(self):
        self.now, self.sleeps = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def test_waits_for_gfd_product_labels_before_labelling_gpu_type():
    api, clock = LateGfdApi(_cluster(), labelled_on=3), FakeClock()
    result = apply_pools(K8s(api), _seed_pools(), gpu_type_wait=60, wait_interval=5, clock=clock, sleep=clock.sleep)
    assert api.lists == 3 and clock.sleeps == [5, 5]
    assert result["gpu_type_wait"] == {"nodes": ["gpu-inf-0", "gpu-inf-1", "gpu-inf-2"], "seconds": 10.0,
                                       "still_missing": []}
    assert result["warnings"] == []
    assert {api.nodes["gpu-inf-%d" % i]["metadata"]["labels"].get("gpu-type") for i in range(3)} == {"NVIDIA-A100-SXM4-40GB"}


def test_without_a_wait_a_fresh_node_gets_no_gpu_type_and_a_warning():
    api = LateGfdApi(_cluster(), labelled_on=3)
    result = apply_pools(K8s(api), _seed_pools())
    assert api.lists == 1 and result["gpu_type_wait"]["nodes"] == []
    assert "gpu-type" not in api.nodes["gpu-inf-0"]["metadata"]["labels"]
    assert any("gpu-inf-0" in w and GFD_PRODUCT_LABEL in w for w in result["warnings"])


def test_wait_gives_up_after_the_timeout_and_names_the_nodes():
    api, clock = LateGfdApi(_cluster(), labelled_on=100), FakeClock()
    result = apply_pools(K8s(api), _seed_pools(), gpu_type_wait=12, wait_interval=5, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [5, 5, 2] and api.lists == 4
    assert result["gpu_type_wait"]["still_missing"] == ["gpu-inf-0", "gpu-inf-1", "gpu-inf-2"]
    assert result["changed"] is True and len(result["warnings"]) == 3


def test_check_mode_and_labelled_nodes_never_wait():
    clock = FakeClock()
    api = LateGfdApi(_cluster(), labelled_on=100)
    apply_pools(K8s(api), _seed_pools(), check_mode=True, gpu_type_wait=60, clock=clock, sleep=clock.sleep)
    assert api.lists == 1 and clock.sleeps == []
    labelled = FakeNodeApi(_cluster())
    result = apply_pools(K8s(labelled), _seed_pools(), gpu_type_wait=60, clock=clock, sleep=clock.sleep)
    assert clock.sleeps == [] and result["gpu_type_wait"] == {"nodes": [], "seconds": 0, "still_missing": []}
