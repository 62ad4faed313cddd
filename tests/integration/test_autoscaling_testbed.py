# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""keda (manifests) + autoscaling roles against the testbed's real API server.

The ScaledObject CRD here is the collection's minimal one (roles/keda), unless KEDA's own CRD is
already installed on the testbed, in which case the keda role leaves it alone and the real schema
validates what we write. Expected values come from shared/facts/llm-serving.md (part C).
"""
from __future__ import annotations

import json
import sys
import uuid

import pytest
from kubernetes import client

from conftest import crd_absent, run_play_json

pytestmark = pytest.mark.integration

SERVED = "meta-llama/Llama-3.1-8B-Instruct"
PROM = "http://prometheus-operated.monitoring.svc:9090"

PLAYBOOK = """
- name: KEDA CRD and the models' ScaledObjects
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Install the ScaledObject CRD
      ansible.builtin.include_role:
        name: gpuops.llm.keda
      vars:
        keda_install_method: manifests
    - name: Autoscale the models
      ansible.builtin.include_role:
        name: gpuops.llm.autoscaling
"""


@pytest.fixture
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = "as-%s" % uuid.uuid4().hex[:8]
    v1.create_namespace({"metadata": {"name": name}})
    yield name
    v1.delete_namespace(name)


def gpu_deployment(name, resources):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "vllm", "image": "vllm/vllm-openai:v0.32.0",
                                                           "resources": {"limits": resources}}]}}}}


def run(testbed, tmp_path, namespace, check=False):
    extra = {"ansible_python_interpreter": sys.executable,
             "autoscaling_namespace": namespace, "autoscaling_prometheus_url": PROM,
             "autoscaling_models": [
                 {"name": "llama3-8b", "served_model_name": SERVED, "min_replicas": 1, "max_replicas": 4},
                 {"name": "qwen-mig", "served_model_name": "Qwen/Qwen2.5-7B-Instruct", "scale_to_zero": True,
                  "wake_query": "sum(rate(vllm:num_incoming_requests_total[1m]))"}]}
    return run_play_json(testbed, tmp_path, PLAYBOOK, extra, check)


def changed(data):
    return data["stats"]["localhost"]["changed"]


def task_result(data, name):
    for task in data["plays"][0]["tasks"]:
        if task["task"]["name"].split(" : ")[-1] == name:
            return task["hosts"]["localhost"]
    return None


def our_writes(testbed, marker, namespace):
    return [w for w in testbed.audit_writes(marker)
            if w["namespace"] == namespace
            or (w["resource"] == "customresourcedefinitions" and w["name"] == "scaledobjects.keda.sh")]


def test_crd_missing_is_a_clear_error(testbed, namespace, tmp_path):
    """Without the CRD the module says to install KEDA (the test removes it when an earlier one installed it)."""
    play = (PLAYBOOK.split("    - name: Install the ScaledObject CRD", maxsplit=1)[0]
            + "    - name: Autoscale the models\n      ansible.builtin.include_role:\n"
              "        name: gpuops.llm.autoscaling\n")
    extra = {"ansible_python_interpreter": sys.executable, "autoscaling_namespace": namespace,
             "autoscaling_models": [{"name": "m", "served_model_name": "x"}]}
    with crd_absent(testbed, "scaledobjects.keda.sh"):
        rc, data = run_play_json(testbed, tmp_path, play, extra)
    assert rc != 0
    text = json.dumps(data)
    assert "scaledobjects.keda.sh" in text and "install KEDA" in text


def test_autoscaling_role_on_the_testbed(testbed, namespace, tmp_path):
    apps = client.AppsV1Api(testbed.api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("llama3-8b", {"nvidia.com/gpu": "1"}))
    apps.create_namespaced_deployment(namespace, gpu_deployment("qwen-mig", {"nvidia.com/mig-3g.71gb": "1"}))

    # Check mode first: predicts the changes and writes nothing in the namespace.
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, namespace, check=True)
    assert rc == 0, data.get("stats")
    predicted = task_result(data, "Apply the KEDA ScaledObjects of the models")
    assert predicted is not None and sorted(predicted["created"]) == sorted(
        ["%s/llama3-8b" % namespace, "%s/qwen-mig" % namespace])
    assert [w for w in testbed.audit_writes(marker) if w["namespace"] == namespace] == []

    rc, data = run(testbed, tmp_path, namespace)
    assert rc == 0, data.get("stats")
    assert changed(data) >= 1

    custom = client.CustomObjectsApi(testbed.api)
    llama = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects", "llama3-8b")
    spec = llama["spec"]
    assert spec["scaleTargetRef"]["name"] == "llama3-8b"
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 4)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0
    triggers = {t["name"]: t for t in spec["triggers"]}
    queue = triggers["queue-depth"]["metadata"]
    # Its own Deployment's pods only (issue 12): two services of one model never share a queue.
    assert queue["query"] == ('sum(vllm:num_requests_waiting{model_name="%s",namespace="%s",'
                              'pod=~"llama3-8b-[a-z0-9]+-[a-z0-9]+"})' % (SERVED, namespace))
    assert queue["threshold"] == "5" and queue["serverAddress"] == PROM
    assert "DCGM_FI_DEV_GPU_UTIL" in triggers["gpu-activity"]["metadata"]["query"]
    assert all("metricName" not in t["metadata"] for t in spec["triggers"])

    qwen = custom.get_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects", "qwen-mig")
    qtriggers = {t["name"]: t for t in qwen["spec"]["triggers"]}
    # MIG detected from the nvidia.com/mig-* request: DCGM_FI_DEV_GPU_UTIL is absent on MIG.
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in qtriggers["gpu-activity"]["metadata"]["query"]
    assert qwen["spec"]["minReplicaCount"] == 0 and "activationThreshold" in qtriggers["queue-depth"]["metadata"]
    assert "wake" in qtriggers

    # Rerun: nothing changes and nothing is written.
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, namespace)
    assert rc == 0 and changed(data) == 0, data.get("stats")
    assert our_writes(testbed, marker, namespace) == []

    # A CPU HPA on the GPU Deployment: the role fails naming it, and writes nothing.
    autoscaling = client.AutoscalingV2Api(testbed.api)
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, {
        "metadata": {"name": "llama-cpu"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama3-8b"},
                 "minReplicas": 1, "maxReplicas": 3,
                 "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                     "type": "Utilization", "averageUtilization": 70}}}]}})
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, namespace)
    assert rc != 0
    failed = task_result(data, "Apply the KEDA ScaledObjects of the models")
    assert failed is not None and failed.get("failed")
    assert "%s/llama-cpu" % namespace in failed["msg"] and "cpu" in failed["msg"]
    assert [w for w in our_writes(testbed, marker, namespace) if w["resource"] == "scaledobjects"] == []


BAD_MODELS = {
    "queue threshold 0": ({"queue_threshold": 0}, "queue_threshold"),
    "negative queue threshold": ({"queue_threshold": -3}, "queue_threshold"),
    "GPU threshold 0": ({"gpu_threshold": 0}, "gpu_threshold"),
    "min above max": ({"min_replicas": 5, "max_replicas": 2}, "max_replicas"),
}


@pytest.mark.parametrize("case", sorted(BAD_MODELS))
def test_bad_model_settings_fail_naming_the_field_and_write_nothing(testbed, namespace, tmp_path, case):
    # A good model next to the bad one: validation covers every model before the first write.
    over, field = BAD_MODELS[case]
    apps = client.AppsV1Api(testbed.api)
    apps.create_namespaced_deployment(namespace, gpu_deployment("llama3-8b", {"nvidia.com/gpu": "1"}))
    apps.create_namespaced_deployment(namespace, gpu_deployment("bad", {"nvidia.com/gpu": "1"}))
    extra = {"ansible_python_interpreter": sys.executable, "autoscaling_namespace": namespace,
             "autoscaling_prometheus_url": PROM,
             "autoscaling_models": [{"name": "llama3-8b", "served_model_name": SERVED},
                                    dict({"name": "bad", "served_model_name": SERVED}, **over)]}
    marker = testbed.audit_marker()
    rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra)
    assert rc != 0
    failed = task_result(data, "Apply the KEDA ScaledObjects of the models")
    assert failed is not None and failed.get("failed"), json.dumps(data)[-3000:]
    assert field in failed["msg"] and "bad" in failed["msg"], failed["msg"]
    assert [w for w in our_writes(testbed, marker, namespace) if w["resource"] == "scaledobjects"] == []
    custom = client.CustomObjectsApi(testbed.api)
    assert custom.list_namespaced_custom_object("keda.sh", "v1alpha1", namespace, "scaledobjects")["items"] == []
