# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real Cluster Autoscaler (cluster-autoscaler-1.36.1, kwok cloud provider) on the testbed, with the
policy roles/cluster_autoscaler writes: a Pending GPU pod of the training pool makes it add a node to
that pool (not another), the node agent advertises the node's GPUs once the device plugin stand-in
runs there, the pod runs on it, and when the work is gone the pool's autoscaled nodes go back to zero.
Everything is asserted from the API server. Skipped when testbed/build_cluster_autoscaler.sh could
not build the binary (no source: see that script)."""
from __future__ import annotations

import json
import sys
import uuid

import pytest
from kubernetes import client

from conftest import run_play_json, wait_for

import cluster_autoscaler as ca_runner  # testbed/ (conftest puts it on sys.path)
import testbed as tb_mod

pytestmark = pytest.mark.integration

POOL = tb_mod.POOL_LABEL
NODE_GROUPS = [{"name": "llm-inference", "min_nodes": 1, "max_nodes": 6, "priority": 50},
               {"name": "llm-training", "min_nodes": 0, "max_nodes": 1, "priority": 10}]
PLAYBOOK = """
- name: Cluster Autoscaler policy
  hosts: localhost
  connection: local
  gather_facts: false
  roles:
    - gpuops.llm.cluster_autoscaler
"""


def kwok_nodes(v1, pool):
    return sorted(n.metadata.name for n in v1.list_node(label_selector=f"{POOL}={pool}").items
                  if (n.spec.provider_id or "").startswith("kwok:"))


def gpu_pod(name, ns, gpus):
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns, "labels": {"app": "ca-train"}},
            "spec": {"nodeSelector": {POOL: "llm-training"},
                     "runtimeClassName": "nvidia",  # fixture nvidia_runtime_class (the testbed refuses GPU pods without)
                     "tolerations": [{"key": "workload", "operator": "Exists"}],
                     "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "train", "image": "registry.example/train:1",
                                     "resources": {"limits": {"nvidia.com/gpu": str(gpus)}}}]}}


@pytest.fixture
def policy(testbed, nvidia_runtime_class, tmp_path):
    if ca_runner.binary() is None:
        pytest.skip("cluster-autoscaler not built (testbed/build_cluster_autoscaler.sh had no source)")
    ns = "ca-%s" % uuid.uuid4().hex[:6]
    client.CoreV1Api(testbed.api).create_namespace({"metadata": {"name": ns}})
    path = tmp_path / "policy.json"
    rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, {
        "ansible_python_interpreter": sys.executable, "cluster_autoscaler_namespace": ns,
        "cluster_autoscaler_cloud_provider": "clusterapi", "cluster_autoscaler_node_groups": NODE_GROUPS,
        "cluster_autoscaler_deploy": False, "cluster_autoscaler_clusterapi_annotate_node_groups": False,
        "cluster_autoscaler_scale_down_disabled_selector": "", "cluster_autoscaler_policy_file": str(path)})
    assert rc == 0, json.dumps(data)[-2000:]
    yield path
    ca_runner.stop(testbed.tb)
    client.CoreV1Api(testbed.api).delete_namespace(ns)


def test_pending_gpu_pods_scale_the_training_pool_up_and_back_to_zero(testbed, gpu_plugins, policy):
    v1 = client.CoreV1Api(testbed.api)
    written = json.loads(policy.read_text())
    assert "--scale-down-gpu-utilization-threshold=0.3" in written["args"]  # the role's, passed through
    assert kwok_nodes(v1, "llm-training") == [] and kwok_nodes(v1, "llm-inference") == []
    static = {n.metadata.name for n in v1.list_node().items}

    ca_runner.start(testbed.tb, policy)
    ns = "ca-work-%s" % uuid.uuid4().hex[:6]
    v1.create_namespace({"metadata": {"name": ns}})
    try:
        # train-a100-0 holds one 8-GPU pod; the second has nowhere to go.
        v1.create_namespaced_pod(ns, gpu_pod("train-0", ns, 8))
        v1.create_namespaced_pod(ns, gpu_pod("train-1", ns, 8))
        wait_for(lambda: kwok_nodes(v1, "llm-training"), timeout=120, what="a node added to llm-training")
        added = kwok_nodes(v1, "llm-training")
        assert len(added) == 1 and added[0].startswith("llm-training-"), added  # max_nodes 1; kwok's naming
        assert kwok_nodes(v1, "llm-inference") == [], "the right pool only"
        node = v1.read_node(added[0])
        assert node.metadata.annotations.get("kwok.x-k8s.io/node") == "fake"  # the testbed's kwok runs it
        assert node.metadata.labels[tb_mod.NFD_GPU_LABEL] == "true"  # the pool's shape: the plugin DaemonSet lands
        assert node.metadata.labels[ca_runner.GPU_LABEL] == "nvidia-a100-sxm4-40gb"
        # The node agent advertises its simulated GPUs once the device plugin stand-in runs there.
        wait_for(lambda: (testbed.nvml_dir / f"{added[0]}.json").exists()
                 and v1.read_node(added[0]).status.allocatable.get("nvidia.com/gpu") == "8",
                 timeout=90, what="the new node to advertise 8 GPUs")
        wait_for(lambda: {p.spec.node_name for p in v1.list_namespaced_pod(ns).items if p.status.phase == "Running"}
                 >= {"train-a100-0", added[0]}, timeout=120, what="both pods Running, one on the new node")

        v1.delete_collection_namespaced_pod(ns, grace_period_seconds=0)
        # Unneeded (GPUs < 30 % requested) for the rehearsal's 20 s, after the 15 s delay after add.
        wait_for(lambda: kwok_nodes(v1, "llm-training") == [], timeout=180, what="llm-training back to zero")
        assert static <= {n.metadata.name for n in v1.list_node().items}, "the testbed's own nodes stay"
        # The runner records what it saw on its next poll (1 s); a scale-down, not its exit clean-up.
        wait_for(lambda: ca_runner.per_pool(ca_runner.events(testbed.tb)) == {"llm-training": {"added": 1, "removed": 1}},
                 timeout=15, what="the runner's log: one node added and one removed by a scale-down")
        assert not (testbed.nvml_dir / f"{added[0]}.json").exists()
    finally:
        v1.delete_namespace(ns)
        ca_runner.stop(testbed.tb)
    assert ca_runner.running(testbed.tb) is None
