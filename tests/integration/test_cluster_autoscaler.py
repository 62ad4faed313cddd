# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The cluster_autoscaler role against the testbed's real API server.

Expected values come from the seed (shared/seed: `--scale-down-unneeded-time=5m`, "only scale
down if GPU <30% utilized", `cluster-autoscaler.kubernetes.io/scale-down-disabled=true` on GPU
nodes running inference), not from the role's templates.
"""
from __future__ import annotations

import json
import re
import sys
import uuid

import pytest
import yaml
from kubernetes import client

from conftest import run_play_json

pytestmark = pytest.mark.integration

DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
RECORD = "gpuops.llm/annotations.cluster-autoscaler"
POOL = "gpuops.llm/testbed-pool=llm-inference"

PLAYBOOK = """
- name: Cluster Autoscaler
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Cluster Autoscaler policy and Deployment
      ansible.builtin.include_role:
        name: gpuops.llm.cluster_autoscaler
    - name: Show the result
      ansible.builtin.debug:
        var: cluster_autoscaler_result
"""

NODE_GROUPS = [{"name": "llm-inference-a100", "min_nodes": 1, "max_nodes": 10, "priority": 50},
               {"name": "llm-training-a100", "min_nodes": 0, "max_nodes": 4, "priority": 10}]


@pytest.fixture
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = "ca-%s" % uuid.uuid4().hex[:8]
    v1.create_namespace({"metadata": {"name": name}})
    yield name
    v1.delete_namespace(name)


def settings(namespace, **over):
    s = {"ansible_python_interpreter": sys.executable, "cluster_autoscaler_namespace": namespace,
         "cluster_autoscaler_cloud_provider": "clusterapi", "cluster_autoscaler_node_groups": NODE_GROUPS,
         "cluster_autoscaler_scale_down_disabled_selector": POOL,
         "cluster_autoscaler_priority_class": "",
         # The testbed has no Cluster API CRDs to patch (tests/unit/roles/test_cluster_autoscaler_conformance.py
         # holds the annotations the role would write).
         "cluster_autoscaler_clusterapi_annotate_node_groups": False}
    s.update(over)
    return s


def run(testbed, tmp_path, extra, check=False):
    return run_play_json(testbed, tmp_path, PLAYBOOK, extra, check)


def stats(data):
    return data["stats"]["localhost"]


def failure_message(data):
    for task in data["plays"][0]["tasks"]:
        host = task["hosts"].get("localhost", {})
        if host.get("failed"):
            return host.get("msg", "") + json.dumps(host.get("errors", ""))
    return ""


def our_writes(testbed, marker, namespace):
    """Writes to what this role touches: its namespace, the testbed's nodes' metadata (not status:
    the node agent's), and its cluster-scoped RBAC. Other tests' own nodes (benchmarks) are theirs."""
    testbed_nodes = set(nodes_with(testbed, "gpuops.llm/testbed-pool"))
    return [w for w in testbed.audit_writes(marker)
            if w["namespace"] == namespace
            or (w["resource"] == "nodes" and w["name"] in testbed_nodes and not w["subresource"])
            or (w["resource"] in ("clusterroles", "clusterrolebindings") and w["name"] == "cluster-autoscaler")]


def annotated(testbed):
    v1 = client.CoreV1Api(testbed.api)
    return sorted(n.metadata.name for n in v1.list_node().items if (n.metadata.annotations or {}).get(DISABLED) == "true")


def nodes_with(testbed, selector):
    return sorted(n.metadata.name for n in client.CoreV1Api(testbed.api).list_node(label_selector=selector).items)


@pytest.mark.parametrize("over, needle", [
    ({"cluster_autoscaler_node_groups": [{"name": "gpu", "min_nodes": 5, "max_nodes": 2}]},
     "cluster_autoscaler_node_groups[0] (gpu).min_nodes (5) is greater than max_nodes (2)"),
    ({"cluster_autoscaler_cloud_provider": "nimbus"}, "cluster_autoscaler_cloud_provider"),
    ({"cluster_autoscaler_scale_down_gpu_utilization_threshold": 1.5},
     "cluster_autoscaler_scale_down_gpu_utilization_threshold (1.5) must be a number between 0 and 1"),
    ({"cluster_autoscaler_scale_down_utilization_threshold": -0.1},
     "cluster_autoscaler_scale_down_utilization_threshold (-0.1)"),
    ({"cluster_autoscaler_scale_down_unneeded_time": "five minutes"}, "cluster_autoscaler_scale_down_unneeded_time"),
    ({"cluster_autoscaler_scale_down_disabled_selector": "a in (b"}, "selector 'a in (b' is invalid"),
], ids=["min-over-max", "unknown-provider", "gpu-threshold-over-1", "threshold-below-0", "bad-duration",
        "bad-selector"])
def test_bad_input_fails_naming_the_variable_with_zero_writes(testbed, namespace, tmp_path, over, needle):
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, settings(namespace, **over))
    assert rc != 0
    msg = failure_message(data)
    assert needle in msg, msg
    if over.get("cluster_autoscaler_cloud_provider") == "nimbus":
        assert "nimbus" in msg and "clusterapi" in msg, "the message lists what is valid"
    assert our_writes(testbed, marker, namespace) == []


def test_apply_rerun_and_release(testbed, namespace, tmp_path):
    expected_nodes = nodes_with(testbed, POOL)
    assert expected_nodes, "the testbed has an inference pool"

    # Check mode first: predicts a change and writes nothing.
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, settings(namespace), check=True)
    assert rc == 0, failure_message(data)
    assert stats(data)["changed"] >= 2
    assert our_writes(testbed, marker, namespace) == []

    rc, data = run(testbed, tmp_path, settings(namespace))
    assert rc == 0, failure_message(data)

    apps, core, rbac = client.AppsV1Api(testbed.api), client.CoreV1Api(testbed.api), client.RbacAuthorizationV1Api(testbed.api)
    dep = apps.read_namespaced_deployment("cluster-autoscaler", namespace)
    pod = dep.spec.template.spec
    args = pod.containers[0].args
    assert pod.service_account_name == "cluster-autoscaler"
    assert "--cloud-provider=clusterapi" in args
    assert "--scale-down-unneeded-time=5m" in args  # the seed
    assert "--scale-down-gpu-utilization-threshold=0.3" in args  # the seed's "GPU < 30 %"
    assert "--expander=priority" in args
    # clusterapi finds node groups by auto-discovery and annotations; --nodes means nothing to it (issue 12).
    assert not [a for a in args if a.startswith("--nodes=")], args
    assert "--node-group-auto-discovery=clusterapi:namespace=default" in args
    assert pod.containers[0].image.startswith("registry.k8s.io/autoscaling/cluster-autoscaler:")
    assert core.read_namespaced_service_account("cluster-autoscaler", namespace)
    role = rbac.read_cluster_role("cluster-autoscaler")
    assert any("nodes" in r.resources and "update" in r.verbs for r in role.rules)
    assert any("cluster.x-k8s.io" in r.api_groups and "machinedeployments/scale" in r.resources for r in role.rules)
    binding = rbac.read_cluster_role_binding("cluster-autoscaler")
    assert binding.subjects[0].namespace == namespace
    assert rbac.read_namespaced_role_binding("cluster-autoscaler", namespace).role_ref.name == "cluster-autoscaler"

    cm = core.read_namespaced_config_map("cluster-autoscaler-priority-expander", namespace)
    priorities = yaml.safe_load(cm.data["priorities"])
    inference = [p for p, regexes in priorities.items() if any("llm-inference-a100" in r for r in regexes)]
    training = [p for p, regexes in priorities.items() if any("llm-training-a100" in r for r in regexes)]
    assert inference and training and inference[0] > training[0]
    # The expander matches node-group ids, <Kind>/<namespace>/<name> under clusterapi.
    assert any(re.search(r, "MachineDeployment/default/llm-inference-a100") for r in priorities[inference[0]])

    assert annotated(testbed) == expected_nodes
    result = [t for t in data["plays"][0]["tasks"] if t["task"]["name"] == "Show the result"][0]
    published = result["hosts"]["localhost"]["cluster_autoscaler_result"]
    assert published["inference_pod_annotations"] == {"cluster-autoscaler.kubernetes.io/safe-to-evict": "false"}
    assert sorted(published["scale_down_disabled_nodes"]) == expected_nodes

    # Rerun: nothing changes and nothing is written.
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, settings(namespace))
    assert rc == 0 and stats(data)["changed"] == 0, stats(data)
    assert our_writes(testbed, marker, namespace) == []

    # A changed threshold: only the Deployment is written.
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, settings(namespace, cluster_autoscaler_scale_down_unneeded_time="10m"))
    assert rc == 0 and stats(data)["changed"] == 1, stats(data)
    writes = our_writes(testbed, marker, namespace)
    assert {(w["resource"], w["name"]) for w in writes} == {("deployments", "cluster-autoscaler")}
    assert "--scale-down-unneeded-time=10m" in apps.read_namespaced_deployment("cluster-autoscaler", namespace) \
        .spec.template.spec.containers[0].args

    # Narrowing the always-on set releases the others; a foreign annotation survives.
    keep = expected_nodes[0]
    other = expected_nodes[-1]
    core.patch_node(other, {"metadata": {"annotations": {"ops.example.com/ticket": "42"}}})
    try:
        rc, data = run(testbed, tmp_path, settings(namespace, cluster_autoscaler_scale_down_disabled_selector="",
                                                   cluster_autoscaler_scale_down_disabled_nodes=[keep]))
        assert rc == 0, failure_message(data)
        assert annotated(testbed) == [keep]
        released = core.read_node(other).metadata.annotations
        assert RECORD not in released and released["ops.example.com/ticket"] == "42"
    finally:
        # Leave the shared testbed as it was: no node keeps the annotation.
        run(testbed, tmp_path, settings(namespace, cluster_autoscaler_scale_down_disabled_selector="",
                                        cluster_autoscaler_deploy=False))
        core.patch_node(other, {"metadata": {"annotations": {"ops.example.com/ticket": None}}})
    assert annotated(testbed) == []


def test_cloud_node_pools_policy_is_used(testbed, namespace, tmp_path):
    """cloud_node_pools' rendered policy (flags, priorities, provider) wins over the defaults."""
    cloud = {"provider": "eks", "cluster_autoscaler": {
        "flags": {"scale-down-unneeded-time": "7m", "expander": "priority"},
        "gpu_total": [],
        "priority_configmap": {"data": {"priorities": "90:\n- .*llm-inference.*\n0:\n- .*\n"}}}}
    extra = settings(namespace, cloud_node_pools_result=cloud, cluster_autoscaler_scale_down_disabled_selector="")
    extra.pop("cluster_autoscaler_cloud_provider")
    rc, data = run(testbed, tmp_path, extra, check=True)
    assert rc == 0, failure_message(data)
    rc, data = run(testbed, tmp_path, extra)
    assert rc == 0, failure_message(data)
    args = client.AppsV1Api(testbed.api).read_namespaced_deployment("cluster-autoscaler", namespace) \
        .spec.template.spec.containers[0].args
    assert "--cloud-provider=aws" in args and "--scale-down-unneeded-time=7m" in args
    cm = client.CoreV1Api(testbed.api).read_namespaced_config_map("cluster-autoscaler-priority-expander", namespace)
    assert yaml.safe_load(cm.data["priorities"]) == {90: [".*llm-inference.*"], 0: [".*"]}
