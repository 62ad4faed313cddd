"""The testbed is a real control plane: scheduling, controllers, validation and CRDs are the real ones."""
from __future__ import annotations

import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import wait_for

pytestmark = pytest.mark.integration

TEST_TAINT = {"key": "gpuops.llm/testbed-test", "value": "gpu", "effect": "NoSchedule"}


@pytest.fixture
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = f"t-{uuid.uuid4().hex[:8]}"
    v1.create_namespace({"metadata": {"name": name}})
    yield name
    v1.delete_namespace(name)


@pytest.fixture
def tainted_gpu_nodes(testbed):
    v1 = client.CoreV1Api(testbed.api)
    nodes = v1.list_node(label_selector="feature.node.kubernetes.io/pci-10de.present=true").items
    for n in nodes:
        taints = [t.to_dict() for t in (n.spec.taints or []) if t.key != TEST_TAINT["key"]]
        v1.patch_node(n.metadata.name, {"spec": {"taints": taints + [TEST_TAINT]}})
    yield [n.metadata.name for n in nodes]
    for n in v1.list_node(label_selector="feature.node.kubernetes.io/pci-10de.present=true").items:
        taints = [t.to_dict() for t in (n.spec.taints or []) if t.key != TEST_TAINT["key"]]
        v1.patch_node(n.metadata.name, {"spec": {"taints": taints}})


def pod(name, gpus=None, tolerate=False):
    c = {"name": "c", "image": "registry.invalid/none:1"}
    if gpus is not None:
        c["resources"] = {"limits": {"nvidia.com/gpu": str(gpus)}}
    spec = {"containers": [c]}
    if gpus is not None:
        # RuntimeClass nvidia (fixture nvidia_runtime_class): the testbed refuses GPU pods without it
        # on runc-default nodes, as a real node would.
        spec["runtimeClassName"] = "nvidia"
    if tolerate:
        # The test taint, and the pool taint that week 1 may already have put on GPU nodes.
        spec["tolerations"] = [{"key": TEST_TAINT["key"], "operator": "Exists", "effect": "NoSchedule"},
                               {"key": "workload", "operator": "Exists", "effect": "NoSchedule"}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def test_control_plane_is_real_and_nodes_ready(testbed):
    version = client.VersionApi(testbed.api).get_code()
    assert version.git_version.startswith("v1.36."), version.git_version
    v1 = client.CoreV1Api(testbed.api)

    def all_ready():
        nodes = v1.list_node(label_selector="type=kwok").items
        names = {n.metadata.name for n in nodes
                 if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])}
        return names if {n["name"] for n in testbed.tb.spec["nodes"]} <= names else None

    wait_for(all_ready, timeout=60, what="every testbed node Ready")


def test_deployment_pods_run_and_are_replaced(testbed, namespace):
    apps, v1 = client.AppsV1Api(testbed.api), client.CoreV1Api(testbed.api)
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
           "spec": {"replicas": 2, "selector": {"matchLabels": {"app": "web"}},
                    "template": {"metadata": {"labels": {"app": "web"}},
                                 "spec": {"containers": [{"name": "c", "image": "registry.invalid/web:1"}]}}}}
    apps.create_namespaced_deployment(namespace, dep)

    def running():
        pods = v1.list_namespaced_pod(namespace, label_selector="app=web").items
        names = [p.metadata.name for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return names if len(names) == 2 else None

    first = wait_for(running, timeout=60, what="2 Running pods created by the ReplicaSet controller")
    v1.delete_namespaced_pod(first[0], namespace, grace_period_seconds=0)
    after = wait_for(lambda: (r := running()) and first[0] not in r and r, timeout=60,
                     what="a replacement pod")
    assert first[0] not in after and len(after) == 2


def test_apiserver_rejects_invalid_object(testbed, namespace):
    v1 = client.CoreV1Api(testbed.api)
    bad = pod("Not_A_Valid_Name")
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod(namespace, bad)
    assert e.value.status == 422
    bad2 = pod("no-containers")
    bad2["spec"]["containers"] = []
    with pytest.raises(ApiException) as e:
        v1.create_namespaced_pod(namespace, bad2)
    assert e.value.status == 422 and "containers" in e.value.body


def test_crd_registered_and_validated(testbed, namespace):
    ext = client.ApiextensionsV1Api(testbed.api)
    group = f"t{uuid.uuid4().hex[:6]}.gpuops.test"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "properties": {"spec": {
                            "type": "object", "required": ["replicas"],
                            "properties": {"replicas": {"type": "integer", "minimum": 0}}}}}}}]}}
    ext.create_custom_resource_definition(crd)
    try:
        wait_for(lambda: any(c.type == "Established" and c.status == "True"
                             for c in ext.read_custom_resource_definition(f"widgets.{group}").status.conditions or []),
                 timeout=30, what="CRD Established")
        co = client.CustomObjectsApi(testbed.api)
        ok = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "ok"}, "spec": {"replicas": 2}}
        wait_for(lambda: _try_create(co, group, namespace, ok), timeout=30, what="the CRD to serve objects")
        bad = {"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": "bad"}, "spec": {"replicas": "two"}}
        with pytest.raises(ApiException) as e:
            co.create_namespaced_custom_object(group, "v1", namespace, "widgets", bad)
        assert e.value.status == 422 and "replicas" in e.value.body
    finally:
        ext.delete_custom_resource_definition(f"widgets.{group}")


def _try_create(co, group, namespace, body):
    try:
        co.create_namespaced_custom_object(group, "v1", namespace, "widgets", body)
        return True
    except ApiException as e:
        if e.status == 404:  # discovery not refreshed yet
            return False
        raise


def _unschedulable(v1, namespace, name):
    conds = v1.read_namespaced_pod(name, namespace).status.conditions or []
    return next((c for c in conds if c.type == "PodScheduled" and c.status == "False"), None)


def _scheduled_node(v1, namespace, name):
    p = v1.read_namespaced_pod(name, namespace)
    return p.spec.node_name


def test_scheduler_places_gpu_pods_by_resources_and_taints(
        testbed, namespace, gpu_plugins, tainted_gpu_nodes, nvidia_runtime_class):
    v1 = client.CoreV1Api(testbed.api)
    gpu_nodes = set(tainted_gpu_nodes)
    nodes = {n.metadata.name: n for n in v1.list_node().items}

    v1.create_namespaced_pod(namespace, pod("gpu-tolerating", gpus=1, tolerate=True))
    node = wait_for(lambda: _scheduled_node(v1, namespace, "gpu-tolerating"), timeout=60,
                    what="the GPU pod to be bound")
    assert node in gpu_nodes
    assert int(nodes[node].status.allocatable.get("nvidia.com/gpu", "0")) >= 1
    wait_for(lambda: v1.read_namespaced_pod("gpu-tolerating", namespace).status.phase == "Running",
             timeout=60, what="kwok to report the GPU pod Running")

    # Without the toleration, plain pods never land on a tainted GPU node.
    for i in range(4):
        v1.create_namespaced_pod(namespace, pod(f"plain-{i}"))
    for i in range(4):
        node = wait_for(lambda i=i: _scheduled_node(v1, namespace, f"plain-{i}"), timeout=60, what=f"plain-{i} bound")
        assert node not in gpu_nodes, f"plain-{i} landed on tainted GPU node {node}"

    # A GPU pod without the toleration has nowhere to go.
    v1.create_namespaced_pod(namespace, pod("gpu-intolerant", gpus=1))
    # More GPUs than any node has: stays Pending, reported Unschedulable by the scheduler.
    most = max(int(n.status.allocatable.get("nvidia.com/gpu", "0")) for n in nodes.values())
    v1.create_namespaced_pod(namespace, pod("gpu-too-many", gpus=most + 1, tolerate=True))
    for name in ("gpu-intolerant", "gpu-too-many"):
        cond = wait_for(lambda name=name: _unschedulable(v1, namespace, name),
                        timeout=60, what=f"{name} to be reported unschedulable")
        assert cond.reason == "Unschedulable"
        p = v1.read_namespaced_pod(name, namespace)
        assert p.spec.node_name is None and p.status.phase == "Pending"


def test_no_device_plugin_means_no_gpu_resources(testbed, gpu_plugins):
    """Pausing the plugin on one node (the label the DaemonSet avoids) withdraws its GPUs."""
    v1 = client.CoreV1Api(testbed.api)
    node = "inf-a100-1"
    v1.patch_node(node, {"metadata": {"labels": {"gpuops.llm/device-plugin.paused": "true"}}})
    try:
        wait_for(lambda: "nvidia.com/gpu" not in (v1.read_node(node).status.allocatable or {}),
                 timeout=60, what="GPU capacity withdrawn from the paused node")
    finally:
        v1.patch_node(node, {"metadata": {"labels": {"gpuops.llm/device-plugin.paused": None}}})
    wait_for(lambda: (v1.read_node(node).status.allocatable or {}).get("nvidia.com/gpu") == "1",
             timeout=60, what="GPU capacity back after resuming the plugin")
