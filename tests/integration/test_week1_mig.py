"""Week 1 on the testbed, and the mig role's drain-aware layout changes on a simulated H100 node."""
from __future__ import annotations

import json
import uuid

import pytest
from kubernetes import client

from conftest import ROOT, run_playbook, wait_for

pytestmark = pytest.mark.integration

WEEK1 = ROOT / "playbooks" / "week1_foundation.yml"
NODE = "mig-h100-0"
PEER = "mig-h100-1"


def _mig_alloc(v1, node):
    alloc = v1.read_node(node).status.allocatable or {}
    return {k: int(v) for k, v in alloc.items() if k.startswith("nvidia.com/mig-") and int(v)}


def _nvml_writes(testbed, node):
    from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
    return len(nvml_sim.mutating_calls(str(testbed.nvml_dir / f"{node}.json")))


@pytest.fixture(scope="module")
def week1(testbed):
    rc, out, recap = run_playbook(testbed, WEEK1)
    assert rc == 0, out[-4000:]
    return recap


def test_week1_converges_then_reruns_with_no_change_and_no_writes(testbed, week1):
    v1 = client.CoreV1Api(testbed.api)
    # all-balanced on an H100 80GB: 2x 1g.10gb, 1x 2g.20gb, 1x 3g.40gb (facts: mig-parted balanced.go).
    assert _mig_alloc(v1, NODE) == {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-3g.40gb": 1}
    assert int(v1.read_node("train-a100-0").status.allocatable["nvidia.com/gpu"]) == 8
    taints = {(t.key, t.value, t.effect) for t in v1.read_node("inf-a100-0").spec.taints or []}
    assert ("workload", "llm-inference", "NoSchedule") in taints

    nvml_before = {n: _nvml_writes(testbed, n) for n in (NODE, PEER)}
    marker = testbed.audit_marker()
    rc, out, recap = run_playbook(testbed, WEEK1)
    assert rc == 0, out[-4000:]
    assert all(h["changed"] == 0 for h in recap.values()), recap
    assert testbed.audit_writes(marker) == []
    assert {n: _nvml_writes(testbed, n) for n in (NODE, PEER)} == nvml_before

    rc, out, recap = run_playbook(testbed, WEEK1, check=True)
    assert rc == 0, out[-4000:]
    assert all(h["changed"] == 0 for h in recap.values()), recap


def _deployment(name, resource, replicas=1):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         # Week 1 (the week1 fixture) writes RuntimeClass nvidia; the testbed refuses
                         # GPU pods without it on runc-default nodes, as a real node would.
                         "runtimeClassName": "nvidia",
                         "tolerations": [{"operator": "Exists"}],
                         "nodeSelector": {"gpuops.llm/testbed-pool": "llm-inference-mig"},
                         "containers": [{"name": "c", "image": "registry.invalid/vllm:1",
                                         "resources": {"limits": {resource: "1"}}}]}}}}


@pytest.fixture
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = f"mig-{uuid.uuid4().hex[:6]}"
    v1.create_namespace({"metadata": {"name": name}})
    yield name
    v1.delete_namespace(name)


def _pods(v1, ns, app):
    return [p for p in v1.list_namespaced_pod(ns, label_selector=f"app={app}").items
            if not p.metadata.deletion_timestamp]


def _mig_play(testbed, devices, *extra, check=False):
    return run_playbook(testbed, ROOT / "tests" / "integration" / "playbooks" / "mig_node.yml",
                        "-e", json.dumps({"mig_target": NODE, "mig_devices": devices, "mig_preset": ""}),
                        *extra, check=check)


def test_mig_change_drains_gpu_pods_and_the_scheduler_uses_the_new_slices(testbed, week1, namespace):
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    # A GPU pod pinned to the node we will repartition: it must be evicted and land on the peer.
    dep = _deployment("svc", "nvidia.com/mig-3g.40gb")
    dep["spec"]["template"]["spec"]["affinity"] = {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 100, "preference": {"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}}]}}
    apps.create_namespaced_deployment(namespace, dep)
    first = wait_for(lambda: [p for p in _pods(v1, namespace, "svc") if p.status.phase == "Running"],
                     timeout=60, what="the MIG pod Running")[0]
    assert first.spec.node_name == NODE

    target = {"1g.10gb": 7}
    nvml_before = _nvml_writes(testbed, NODE)
    rc, out, recap = _mig_play(testbed, target, check=True)
    assert rc == 0, out[-4000:]
    assert _nvml_writes(testbed, NODE) == nvml_before, "check mode wrote to NVML"
    assert _mig_alloc(v1, NODE)["nvidia.com/mig-3g.40gb"] == 1

    rc, out, recap = _mig_play(testbed, target)
    assert rc == 0, out[-4000:]
    assert recap[NODE]["changed"] >= 1
    # The agent advertises what the simulated GPU now holds.
    assert _mig_alloc(v1, NODE) == {"nvidia.com/mig-1g.10gb": 7}
    assert not v1.read_node(NODE).spec.unschedulable
    # The GPU pod was evicted first and rescheduled onto the peer (the only node with a 3g slice).
    moved = wait_for(lambda: [p for p in _pods(v1, namespace, "svc")
                              if p.status.phase == "Running" and p.metadata.name != first.metadata.name],
                     timeout=60, what="the evicted pod's replacement")[0]
    assert moved.spec.node_name == PEER

    # The real scheduler now places a 1g.10gb pod; 7 fit on the node, the 8th... goes to the peer's 2.
    apps.create_namespaced_deployment(namespace, _deployment("small", "nvidia.com/mig-1g.10gb", replicas=9))
    placed = wait_for(lambda: (ps := [p for p in _pods(v1, namespace, "small") if p.spec.node_name]) and len(ps) == 9
                      and ps, timeout=90, what="nine 1g.10gb pods bound")
    by_node = {}
    for p in placed:
        by_node[p.spec.node_name] = by_node.get(p.spec.node_name, 0) + 1
    assert by_node == {NODE: 7, PEER: 2}

    # Second run: nothing to do, no NVML writes.
    apps.delete_namespaced_deployment("small", namespace)
    writes = _nvml_writes(testbed, NODE)
    rc, out, recap = _mig_play(testbed, target)
    assert rc == 0 and recap[NODE]["changed"] == 0, out[-4000:]
    assert _nvml_writes(testbed, NODE) == writes


def test_pdb_blocking_eviction_stops_cleanly_and_restores_the_node(testbed, week1, namespace):
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    policy = client.PolicyV1Api(testbed.api)
    before = _mig_alloc(v1, NODE)
    resource = sorted(before)[0]
    dep = _deployment("guarded", resource)
    dep["spec"]["template"]["spec"]["nodeSelector"] = {"kubernetes.io/hostname": NODE}
    apps.create_namespaced_deployment(namespace, dep)
    wait_for(lambda: [p for p in _pods(v1, namespace, "guarded") if p.status.phase == "Running"],
             timeout=60, what="the guarded pod Running")
    policy.create_namespaced_pod_disruption_budget(namespace, {
        "metadata": {"name": "guarded"}, "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}}})
    wait_for(lambda: policy.read_namespaced_pod_disruption_budget("guarded", namespace).status.observed_generation,
             timeout=30, what="the PDB observed")

    nvml_before = _nvml_writes(testbed, NODE)
    rc, out, recap = _mig_play(testbed, {"7g.80gb": 1}, "-e", "mig_drain_timeout=5")
    assert rc != 0
    assert "could not evict" in out and f"{namespace}/guarded" in out
    assert "node resumed" in out
    # Nothing was repartitioned, and the node is back as it was.
    assert _nvml_writes(testbed, NODE) == nvml_before
    node = v1.read_node(NODE)
    assert not node.spec.unschedulable
    assert (node.metadata.labels or {}).get("gpuops.llm/device-plugin.paused") is None
    wait_for(lambda: _mig_alloc(v1, NODE) == before, timeout=60, what="the node's MIG resources back")


def test_gpu_capacity_passes_then_names_a_node_whose_plugin_is_paused(testbed, week1):
    v1 = client.CoreV1Api(testbed.api)
    book = ROOT / "tests" / "integration" / "playbooks" / "gpu_capacity.yml"
    rc, out, _recap = run_playbook(testbed, book)
    assert rc == 0, out[-3000:]
    v1.patch_node("inf-l4-0", {"metadata": {"labels": {"gpuops.llm/device-plugin.paused": "true"}}})
    try:
        wait_for(lambda: "nvidia.com/gpu" not in (v1.read_node("inf-l4-0").status.allocatable or {}),
                 timeout=60, what="the paused node to drop its GPUs")
        rc, out, _recap = run_playbook(testbed, book, "-e", "capacity_wait=true")
        assert rc != 0
        assert "GPU capacity missing on 1 node(s): inf-l4-0" in out
    finally:
        v1.patch_node("inf-l4-0", {"metadata": {"labels": {"gpuops.llm/device-plugin.paused": None}}})
    wait_for(lambda: (v1.read_node("inf-l4-0").status.allocatable or {}).get("nvidia.com/gpu") == "1",
             timeout=60, what="the GPU back on inf-l4-0")
