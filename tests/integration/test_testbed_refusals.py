"""The testbed says no where a real node would (testbed/admission.py), with the refusals switched on
for this module whatever cluster.yml's `refuse` says (and put back afterwards).

The old defaults fail: vLLM as uid 1000 (a user docker.io/vllm/vllm-openai:v0.32.0 does not define) is
refused at pod CREATE; a GPU pod or an NVIDIA device plugin DaemonSet without runtimeClassName never
becomes Ready on a node whose containerd default is runc, and the stand-in device plugin advertises
nothing for it. The same objects with `runtimeClassName: nvidia` (handler nvidia) and a user the image
defines are admitted and become Ready.

Pods are pinned with spec.nodeName where the scheduler's GPU accounting is not the subject (no device
plugin need run first); the DaemonSet goes through the real scheduler."""
from __future__ import annotations

import json

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import admission
from conftest import wait_for

NS = "testbed-refusals"
VLLM = "docker.io/vllm/vllm-openai:v0.32.0"
PLUGIN = "nvcr.io/nvidia/k8s-device-plugin:v0.20.1"


@pytest.fixture(scope="module")
def refusing(testbed):
    spec = testbed.tb.spec
    runc = [n["name"] for n in spec["nodes"] if n.get("gpu_count") and admission.node_runtime(n) == "runc"]
    nvidia = [n["name"] for n in spec["nodes"] if n.get("gpu_count") and admission.node_runtime(n) == "nvidia"]
    assert runc and nvidia, "cluster.yml needs GPU nodes of both default runtimes"
    testbed.tb.set_refusals(True)
    v1 = client.CoreV1Api(testbed.api)
    nodev1 = client.NodeV1Api(testbed.api)
    try:
        v1.create_namespace({"metadata": {"name": NS}})
    except ApiException as e:
        if e.status != 409:
            raise
    for name, handler in (("nvidia", "nvidia"), ("gpuops-test-runc", "runc")):
        try:
            nodev1.create_runtime_class({"metadata": {"name": name}, "handler": handler})
        except ApiException as e:
            if e.status != 409:
                raise
    yield {"v1": v1, "apps": client.AppsV1Api(testbed.api), "runc": runc, "nvidia": nvidia, "tb": testbed}
    v1.delete_namespace(NS)
    nodev1.delete_runtime_class("gpuops-test-runc")
    testbed.tb.set_refusals(admission.refusing(spec))


def vllm_pod(name, node=None, uid=2000, gid=0, runtime_class=None, non_root=True):
    """The vLLM pod as roles/vllm_service renders it (pod securityContext, one GPU)."""
    spec = {
        "securityContext": {"runAsNonRoot": non_root, "runAsUser": uid, "runAsGroup": gid, "fsGroup": gid},
        "containers": [{"name": "vllm", "image": VLLM, "args": ["--model", "m"],
                        "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}}],
        "tolerations": [{"operator": "Exists"}],
    }
    if node:
        spec["nodeName"] = node
    if runtime_class:
        spec["runtimeClassName"] = runtime_class
    return {"metadata": {"name": name, "labels": {"app.kubernetes.io/name": "vllm-refusal-test"}}, "spec": spec}


def plugin_daemonset(name, node, runtime_class=None):
    """The device plugin DaemonSet's shape as roles/device_plugin rendered it (label, image, MIG_STRATEGY)."""
    pod = {"containers": [{"name": "nvidia-device-plugin", "image": PLUGIN,
                           "env": [{"name": "MIG_STRATEGY", "value": "none"}, {"name": "FAIL_ON_INIT_ERROR", "value": "true"}]}],
           "nodeSelector": {"kubernetes.io/hostname": node}, "tolerations": [{"operator": "Exists"}]}
    if runtime_class:
        pod["runtimeClassName"] = runtime_class
    labels = {"app.kubernetes.io/name": "nvidia-device-plugin", "app.kubernetes.io/instance": name}
    return {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": name},
            "spec": {"selector": {"matchLabels": labels}, "template": {"metadata": {"labels": labels}, "spec": pod}}}


def ready(v1, name):
    p = v1.read_namespaced_pod(name, NS)
    return p.status.phase == "Running" and any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])


def refused_status_updates(tb, since, name):
    return [w for w in tb.audit_writes(since, include_system=True)
            if w["resource"] == "pods" and w["subresource"] == "status" and w["name"] == name and w["code"] == 403]


def test_old_vllm_deployment_as_uid_1000_is_refused(refusing):
    """Old default: runAsUser/runAsGroup/fsGroup 1000, no runtimeClassName. Its ReplicaSet can create no pod."""
    old = vllm_pod("old", uid=1000, gid=1000)
    labels = {"app.kubernetes.io/name": "vllm-old-defaults"}
    old["metadata"]["labels"] = labels
    dep = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "vllm-old-defaults"},
           "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": old}}
    refusing["apps"].create_namespaced_deployment(NS, dep)

    def failure():
        for rs in refusing["apps"].list_namespaced_replica_set(NS, label_selector="app.kubernetes.io/name=vllm-old-defaults").items:
            for c in rs.status.conditions or []:
                if c.type == "ReplicaFailure" and c.status == "True":
                    return c.message
        return None
    msg = wait_for(failure, timeout=60, what="the old vLLM ReplicaSet's ReplicaFailure")
    assert "runs as uid 1000" in msg and "docker.io/vllm/vllm-openai" in msg and "vllm=2000" in msg
    assert not refusing["v1"].list_namespaced_pod(NS, label_selector="app.kubernetes.io/name=vllm-old-defaults").items


def test_vllm_pod_as_uid_1000_is_refused_at_create(refusing):
    with pytest.raises(ApiException) as e:
        refusing["v1"].create_namespaced_pod(NS, vllm_pod("uid-1000", refusing["runc"][0], uid=1000, gid=1000,
                                                          runtime_class="nvidia"))
    assert e.value.status == 403
    assert "runs as uid 1000, a user image docker.io/vllm/vllm-openai does not define" in json.loads(e.value.body)["message"]


def test_gpu_pod_without_runtime_class_never_ready_on_a_runc_node_and_fixed_pod_is(refusing):
    v1, tb, node = refusing["v1"], refusing["tb"], refusing["runc"][0]
    mark = tb.audit_marker()
    v1.create_namespaced_pod(NS, vllm_pod("no-runtime-class", node))
    v1.create_namespaced_pod(NS, vllm_pod("fixed", node, runtime_class="nvidia"))
    wait_for(lambda: ready(v1, "fixed"), timeout=60, what="the fixed vLLM pod Ready")
    wait_for(lambda: refused_status_updates(tb, mark, "no-runtime-class"), timeout=30,
             what="kwok's Running update of the pod without runtimeClassName refused")
    log = (tb.tb.cluster_dir / "logs" / "kwok-controller.log").read_text()
    assert ("pod %s/no-runtime-class needs NVML" % NS) in log and "sets no runtimeClassName" in log
    assert "node %s runs containerd with runc as its default runtime" % node in log
    import time
    time.sleep(5)  # kwok does not retry a refused stage: the pod stays Pending without spinning
    p = v1.read_namespaced_pod("no-runtime-class", NS)
    assert p.status.phase == "Pending" and not ready(v1, "no-runtime-class")
    assert len(refused_status_updates(tb, mark, "no-runtime-class")) <= 2


def test_runtime_class_with_a_runc_handler_is_not_enough(refusing):
    v1, tb = refusing["v1"], refusing["tb"]
    mark = tb.audit_marker()
    v1.create_namespaced_pod(NS, vllm_pod("runc-handler", refusing["runc"][0], runtime_class="gpuops-test-runc"))
    wait_for(lambda: refused_status_updates(tb, mark, "runc-handler"), timeout=30, what="the runc-handler pod refused")
    assert not ready(v1, "runc-handler")
    log = (tb.tb.cluster_dir / "logs" / "kwok-controller.log").read_text()
    assert "its RuntimeClass gpuops-test-runc has handler runc" in log


def test_nvidia_default_node_runs_gpu_pods_without_runtime_class(refusing):
    v1 = refusing["v1"]
    v1.create_namespaced_pod(NS, vllm_pod("nvidia-default", refusing["nvidia"][0]))
    wait_for(lambda: ready(v1, "nvidia-default"), timeout=60, what="a GPU pod on an nvidia-default node Ready")


def test_node_says_its_default_runtime(refusing):
    for n in refusing["tb"].tb.spec["nodes"]:
        node = refusing["v1"].read_node(n["name"])
        assert node.metadata.annotations[admission.RUNTIME_ANNOTATION] == admission.node_runtime(n)


def test_run_as_non_root_without_user_on_a_root_image_is_refused(refusing):
    pod = vllm_pod("non-root-no-user", refusing["nvidia"][0])
    del pod["spec"]["securityContext"]["runAsUser"]
    with pytest.raises(ApiException) as e:
        refusing["v1"].create_namespaced_pod(NS, pod)
    assert "runs as root" in json.loads(e.value.body)["message"]


def test_unlisted_images_are_not_judged_on_users(refusing):
    pod = {"metadata": {"name": "unlisted"}, "spec": {"nodeName": "cpu-0", "securityContext": {"runAsUser": 12345},
                                                      "containers": [{"name": "c", "image": "registry.example/tool:1"}]}}
    refusing["v1"].create_namespaced_pod(NS, pod)
    wait_for(lambda: ready(refusing["v1"], "unlisted"), timeout=60, what="a pod of an image images.yml does not list")


def test_old_device_plugin_daemonset_never_ready_and_advertises_nothing(refusing):
    """Old default: no runtimeClassName. On a runc node the real plugin gets no NVML and exits
    (FAIL_ON_INIT_ERROR); here its pod never becomes Ready and the node gets no nvidia.com/gpu.
    The same DaemonSet with runtimeClassName nvidia becomes Ready and the node advertises its GPU."""
    v1, apps = refusing["v1"], refusing["apps"]
    node = refusing["runc"][-1]
    had_gpus = "nvidia.com/gpu" in (v1.read_node(node).status.allocatable or {})
    apps.create_namespaced_daemon_set(NS, plugin_daemonset("plugin-old", node))
    wait_for(lambda: v1.list_namespaced_pod(NS, label_selector="app.kubernetes.io/instance=plugin-old").items
             and all(p.spec.node_name for p in v1.list_namespaced_pod(NS, label_selector="app.kubernetes.io/instance=plugin-old").items),
             timeout=60, what="the old plugin pod scheduled")
    import time
    time.sleep(6)
    ds = apps.read_namespaced_daemon_set("plugin-old", NS)
    assert ds.status.desired_number_scheduled == 1 and not ds.status.number_ready
    if not had_gpus:
        assert "nvidia.com/gpu" not in (v1.read_node(node).status.allocatable or {})
    apps.delete_namespaced_daemon_set("plugin-old", NS)
    apps.create_namespaced_daemon_set(NS, plugin_daemonset("plugin-fixed", node, runtime_class="nvidia"))
    wait_for(lambda: apps.read_namespaced_daemon_set("plugin-fixed", NS).status.number_ready == 1, timeout=60,
             what="the fixed plugin DaemonSet Ready")
    wait_for(lambda: "nvidia.com/gpu" in (v1.read_node(node).status.allocatable or {}), timeout=30,
             what="the node advertising nvidia.com/gpu from the fixed plugin")
    apps.delete_namespaced_daemon_set("plugin-fixed", NS)
