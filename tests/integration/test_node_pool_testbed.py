# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_pool against the testbed's real kube-apiserver, with writes counted from its audit log.

Each test creates its own kwok-managed Nodes (unique names, deleted at the end) and pools with
unique names, so it never touches the testbed's shared nodes or other tests' pools.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import uuid

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8s, K8sNotFound
from ansible_collections.gpuops.llm.plugins.module_utils.node_pool import (
    MANAGED_ANNOTATION,
    NodePoolError,
    apply_pools,
)

pytestmark = pytest.mark.integration

# NFD's NVIDIA PCI label and GFD's product label (facts/gpu-automation-anchors.md C1).
NFD_GPU = "feature.node.kubernetes.io/pci-10de.present"
GFD_PRODUCT = "nvidia.com/gpu.product"


class Nodes:
    """Creates test Nodes and removes them afterwards."""

    def __init__(self, adapter, tag):
        self.adapter = adapter
        self.tag = tag
        self.names = []

    def create(self, name, gpu, extra_labels=None):
        labels = {"gpuops.llm/it": self.tag, "kubernetes.io/hostname": name, "type": "kwok"}
        if gpu:
            labels[NFD_GPU] = "true"
            labels[GFD_PRODUCT] = "NVIDIA-A100-SXM4-80GB"
        labels.update(extra_labels or {})
        # Unschedulable, so other tests' pods never land on these short-lived nodes; the
        # controller's node.kubernetes.io/unschedulable taint is one more foreign taint to keep.
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}},
                "spec": {"unschedulable": True}}
        self.adapter.request("POST", "/api/v1/nodes", body=body, kind="Node", name=name)
        self.names.append(name)
        return name

    def get(self, name):
        return self.adapter.get_node(name)

    def cleanup(self):
        for name in self.names:
            try:
                self.adapter.delete("v1", "Node", name)
            except K8sNotFound:
                pass


@pytest.fixture
def env(testbed):
    tag = uuid.uuid4().hex[:6]
    helper = K8s.from_params({"kubeconfig": testbed.kubeconfig})
    nodes = Nodes(helper, tag)
    try:
        yield testbed, nodes, tag
    finally:
        nodes.cleanup()


def my_writes(testbed, marker, names):
    return [w for w in testbed.audit_writes(marker) if w["resource"] == "nodes" and w["name"] in names]


def pools_for(tag, nodes, drop_tier=False):
    inference = {"name": "it-inf-%s" % tag, "kind": "gpu", "nodes": nodes["gpu"],
                 "labels": {"workload-class": "inference"} if drop_tier else
                 {"workload-class": "inference", "tier": "gold"},
                 "gpu_type_label": "gpu-type",
                 "taints": [{"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}]}
    cpu = {"name": "it-cpu-%s" % tag, "kind": "cpu", "selector": "gpuops.llm/it=%s,!%s" % (tag, NFD_GPU),
           "labels": {"workload-class": "general"}}
    return [inference, cpu]


def test_node_pool_lifecycle_against_apiserver(env):
    testbed, nodes, tag = env
    gpu = [nodes.create("it-gpu-%s-%d" % (tag, i), gpu=True) for i in range(2)]
    cpu = [nodes.create("it-cpu-%s-0" % tag, gpu=False)]
    names = set(gpu + cpu)
    pools = pools_for(tag, {"gpu": gpu})
    adapter = K8s.from_params({"kubeconfig": testbed.kubeconfig})

    # Check mode: a prediction and not a single write reaching the apiserver.
    marker = testbed.audit_marker()
    predicted = apply_pools(adapter, pools, check_mode=True, diff=True)
    assert my_writes(testbed, marker, names) == []
    assert predicted["writes"] == 0
    assert predicted["nodes_changed"] == 3

    # First real run: exactly the predicted nodes change, one PATCH each.
    marker = testbed.audit_marker()
    first = apply_pools(adapter, pools)
    writes = my_writes(testbed, marker, names)
    assert first["changed"] and sorted(first["changes"]) == sorted(names) == sorted(predicted["changes"])
    assert first["changes"] == predicted["changes"]
    # One successful PATCH per node; anything else may only be a 409 conflict that was retried
    # (kwok updates node status concurrently).
    assert sorted(w["name"] for w in writes if w["verb"] == "patch" and w["code"] == 200) == sorted(names)
    assert all(w["code"] in (200, 409) for w in writes)
    node = nodes.get(gpu[0])
    assert node["metadata"]["labels"]["workload-class"] == "inference"
    assert node["metadata"]["labels"]["gpu-type"] == "NVIDIA-A100-SXM4-80GB"
    assert {"key": "workload", "value": "llm-inference", "effect": "NoSchedule"} in node["spec"]["taints"]
    assert json.loads(node["metadata"]["annotations"][MANAGED_ANNOTATION])["pool"] == "it-inf-%s" % tag
    assert nodes.get(cpu[0])["metadata"]["labels"]["workload-class"] == "general"

    # Second run: nothing to do, zero write calls in the audit log.
    marker = testbed.audit_marker()
    second = apply_pools(adapter, pools)
    assert second["changed"] is False and second["writes"] == 0
    assert my_writes(testbed, marker, names) == []

    # Someone else labels and taints a node; the pool leaves that alone.
    adapter.patch_node(gpu[1], {"metadata": {"labels": {"team": "search"}}})
    node = nodes.get(gpu[1])
    taints = node["spec"]["taints"] + [{"key": "maintenance", "effect": "PreferNoSchedule"}]
    adapter.patch_node(gpu[1], {"spec": {"taints": taints}})
    marker = testbed.audit_marker()
    third = apply_pools(adapter, pools)
    assert third["changed"] is False
    assert my_writes(testbed, marker, names) == []

    # A label dropped from the spec is removed; the foreign label and taint survive.
    slim = pools_for(tag, {"gpu": gpu}, drop_tier=True)
    check = apply_pools(adapter, slim, check_mode=True)
    marker = testbed.audit_marker()
    fourth = apply_pools(adapter, slim)
    assert check["changes"] == fourth["changes"]
    assert sorted(fourth["changes"]) == sorted(gpu)
    assert all(c["labels_removed"] == ["tier"] for c in fourth["changes"].values())
    assert len([w for w in my_writes(testbed, marker, names) if w["verb"] == "patch" and w["code"] == 200]) == 2
    node = nodes.get(gpu[1])
    assert "tier" not in node["metadata"]["labels"]
    assert node["metadata"]["labels"]["team"] == "search"
    assert {"key": "maintenance", "effect": "PreferNoSchedule"} in node["spec"]["taints"]
    assert {"key": "workload", "value": "llm-inference", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_guard_and_bad_input_write_nothing(env):
    testbed, nodes, tag = env
    gpu = nodes.create("it-gpu-%s-0" % tag, gpu=True)
    cpu = nodes.create("it-cpu-%s-0" % tag, gpu=False)
    adapter = K8s.from_params({"kubeconfig": testbed.kubeconfig})
    marker = testbed.audit_marker()
    mixed = [{"name": "it-mixed-%s" % tag, "kind": "gpu", "nodes": [gpu, cpu]}]
    with pytest.raises(NodePoolError, match="selects nodes without GPUs: %s" % cpu):
        apply_pools(adapter, mixed)
    gpu_in_cpu_pool = [{"name": "it-cpu-%s" % tag, "kind": "cpu", "selector": "gpuops.llm/it=%s" % tag}]
    with pytest.raises(NodePoolError, match="selects GPU nodes: %s" % gpu):
        apply_pools(adapter, gpu_in_cpu_pool)
    bad_effect = [{"name": "it-inf-%s" % tag, "nodes": [gpu], "taints": ["workload=x:Never"]}]
    with pytest.raises(NodePoolError, match="effect 'Never' is not valid"):
        apply_pools(adapter, bad_effect)
    bad_value = [{"name": "it-inf-%s" % tag, "nodes": [gpu], "labels": {"workload-class": "not valid!"}}]
    with pytest.raises(NodePoolError, match="not valid!"):
        apply_pools(adapter, bad_value)
    empty = [{"name": "it-inf-%s" % tag, "selector": "gpuops.llm/it=nothing-%s" % tag}]
    with pytest.raises(NodePoolError, match="selects no nodes"):
        apply_pools(adapter, empty)
    assert my_writes(testbed, marker, {gpu, cpu}) == []


def _run_play(testbed, tmp_path, play, check=False):
    """Run one play through ansible-playbook; return (rc, first task result on localhost, all tasks)."""
    playbook = tmp_path / "play.yml"
    playbook.write_text(json.dumps([dict({"hosts": "localhost", "gather_facts": False, "connection": "local"}, **play)]))
    env = dict(os.environ)
    env.update(testbed.env())
    env.update({"ANSIBLE_STDOUT_CALLBACK": "ansible.posix.json", "ANSIBLE_LOCALHOST_WARNING": "false",
                "ANSIBLE_INVENTORY_UNPARSED_WARNING": "false",
                "ANSIBLE_PYTHON_INTERPRETER": sys.executable})
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(playbook)]
    if check:
        cmd += ["--check", "--diff"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert "{" in proc.stdout, proc.stderr
    data = json.loads(proc.stdout[proc.stdout.index("{"):])
    tasks = data["plays"][0]["tasks"]
    return proc.returncode, tasks[-1]["hosts"]["localhost"], tasks


def _ansible_playbook(testbed, tmp_path, pools, check=False):
    rc, result, _tasks = _run_play(testbed, tmp_path, {
        "tasks": [{"name": "Apply pools", "gpuops.llm.node_pool": {"pools": pools}, "register": "out"}]}, check)
    return rc, result


def test_module_through_ansible_playbook(env, tmp_path):
    testbed, nodes, tag = env
    gpu = nodes.create("it-gpu-%s-0" % tag, gpu=True)
    pools = [{"name": "it-inf-%s" % tag, "kind": "gpu", "nodes": [gpu], "labels": {"workload-class": "inference"},
              "taints": ["workload=llm-inference:NoSchedule"]}]
    marker = testbed.audit_marker()
    rc, check = _ansible_playbook(testbed, tmp_path, pools, check=True)
    assert rc == 0, check
    assert check["changed"] is True and check["writes"] == 0 and check["nodes_changed"] == 1
    assert check["diff"]["after"][gpu]["labels"]["workload-class"] == "inference"
    assert my_writes(testbed, marker, {gpu}) == []

    rc, first = _ansible_playbook(testbed, tmp_path, pools)
    assert rc == 0 and first["changed"] is True and first["writes"] >= 1 and first["patches"] == 1
    assert first["changes"] == check["changes"]

    marker = testbed.audit_marker()
    rc, second = _ansible_playbook(testbed, tmp_path, pools)
    assert rc == 0 and second["changed"] is False and second["writes"] == 0
    assert my_writes(testbed, marker, {gpu}) == []

    bad = [dict(pools[0], taints=["workload=llm-inference:Sometimes"])]
    rc, failed = _ansible_playbook(testbed, tmp_path, bad)
    assert rc != 0 and failed.get("failed") is True
    assert "effect 'Sometimes' is not valid" in failed["msg"]


def test_role_applies_pools_once_and_validates_arguments(env, tmp_path):
    testbed, nodes, tag = env
    gpu = nodes.create("it-gpu-%s-0" % tag, gpu=True)
    cpu = nodes.create("it-cpu-%s-0" % tag, gpu=False)
    pools = [{"name": "it-inf-%s" % tag, "kind": "gpu", "hosts": [gpu], "labels": {"workload-class": "inference"},
              "gpu_type_label": "gpu-type", "taints": ["workload=llm-inference:NoSchedule"]},
             {"name": "it-cpu-%s" % tag, "kind": "cpu", "hosts": [cpu], "labels": {"workload-class": "general"}}]
    play = {"roles": [{"role": "gpuops.llm.node_pools", "vars": {"node_pools_pools": pools}}]}
    rc, first, _tasks = _run_play(testbed, tmp_path, play)
    assert rc == 0, first
    assert first["changed"] is True and first["nodes_changed"] == 2
    assert nodes.get(gpu)["metadata"]["labels"]["gpu-type"] == "NVIDIA-A100-SXM4-80GB"

    marker = testbed.audit_marker()
    rc, second, _tasks = _run_play(testbed, tmp_path, play)
    assert rc == 0 and second["changed"] is False
    assert my_writes(testbed, marker, {gpu, cpu}) == []

    bad = {"roles": [{"role": "gpuops.llm.node_pools",
                      "vars": {"node_pools_pools": [dict(pools[0], kind="tpu")]}}]}
    rc, failed, _tasks = _run_play(testbed, tmp_path, bad)
    assert rc != 0 and failed.get("failed") is True
    assert "tpu" in json.dumps(failed) and "kind" in json.dumps(failed)
    assert my_writes(testbed, marker, {gpu, cpu}) == []
