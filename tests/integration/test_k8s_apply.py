# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""k8s_apply is declarative the way server-side apply is, on the testbed's real apiserver.

A field that k8s_apply set earlier and a later manifest no longer sets (a label, a nodeSelector
key, a resource limit, a ConfigMap key) is removed and the task reports changed; check mode
predicts it without a write and diff mode shows it; the rerun is changed=false with no write
at all. A field another field manager owns stays. A Secret's values appear nowhere in what the
task registers.
"""
from __future__ import annotations

import base64
import copy
import json
import sys
import uuid

import pytest
from kubernetes import client

from conftest import run_play_json

pytestmark = pytest.mark.integration

PLAYBOOK = """
- name: k8s_apply
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Apply the definitions
      gpuops.llm.k8s_apply:
        definitions: "{{ definitions }}"
        namespace: "{{ namespace }}"
      diff: true
      register: applied
"""


@pytest.fixture(scope="module")
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = "apply-%s" % uuid.uuid4().hex[:8]
    v1.create_namespace({"metadata": {"name": name}})
    yield name
    v1.delete_namespace(name)


def run_apply(testbed, tmp_path, namespace, definitions, check=False):
    """Run the module once; returns its registered result (with the diff) and the play's whole JSON output."""
    extra = {"ansible_python_interpreter": sys.executable, "definitions": definitions, "namespace": namespace}
    rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra, check)
    result = data["plays"][0]["tasks"][0]["hosts"]["localhost"]
    assert rc == 0, json.dumps(result)[-4000:]
    return result, json.dumps(data)


def k8s_apply(testbed, tmp_path, namespace, definitions, check=False):
    return run_apply(testbed, tmp_path, namespace, definitions, check)[0]


def our_writes(testbed, marker, namespace):
    return [w for w in testbed.audit_writes(marker) if w["namespace"] == namespace]


def deployment(name, labels=None, node_selector=None, limits=None):
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": dict({"app": name}, **(labels or {}))},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "nodeSelector": node_selector or {"gpuops.llm/pool": "inference"},
                         "containers": [{"name": "vllm", "image": "registry.invalid/vllm:1",
                                         "ports": [{"containerPort": 8000}],
                                         "resources": {"limits": limits or {"memory": "1Gi"}}}]}}}}


FULL = {"labels": {"gpuops.llm/tier": "gold"},
        "node_selector": {"gpuops.llm/pool": "inference", "topology.kubernetes.io/zone": "zone-a"},
        "limits": {"memory": "1Gi", "cpu": "2"}}
CASES = {
    "label": ({"labels": {}}, "metadata.labels.gpuops.llm/tier",
              lambda d: d["metadata"]["labels"].get("gpuops.llm/tier")),
    "nodeselector-key": ({"node_selector": {"gpuops.llm/pool": "inference"}}, "spec.template.spec.nodeSelector",
                         lambda d: d["spec"]["template"]["spec"]["nodeSelector"].get("topology.kubernetes.io/zone")),
    "resource-limit": ({"limits": {"memory": "1Gi"}}, "spec.template.spec.containers[name=vllm].resources.limits.cpu",
                       lambda d: d["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"].get("cpu")),
}


def _live(testbed, namespace, name):
    return client.AppsV1Api(testbed.api).api_client.sanitize_for_serialization(
        client.AppsV1Api(testbed.api).read_namespaced_deployment(name, namespace))


@pytest.mark.parametrize("case", list(CASES))
def test_a_dropped_field_is_removed_and_the_rerun_writes_nothing(testbed, namespace, tmp_path, case):
    drop, removed_path, field_of = CASES[case]
    name = "m-%s" % case
    first = deployment(name, **FULL)
    result = k8s_apply(testbed, tmp_path, namespace, [first])
    assert result["changed"] is True and result["results"][0]["action"] == "create"
    assert field_of(_live(testbed, namespace, name)) is not None
    # Another manager's label on the same object: ours to leave alone.
    client.AppsV1Api(testbed.api).patch_namespaced_deployment(
        name, namespace, {"metadata": {"labels": {"team": "theirs"}}}, field_manager="someone-else")

    second = deployment(name, **dict(FULL, **drop))
    marker = testbed.audit_marker()
    result = k8s_apply(testbed, tmp_path, namespace, [second], check=True)
    assert result["changed"] is True and result["results"][0]["removed"] == [removed_path], result["results"]
    before, after = result["diff"]["before"][0], result["diff"]["after"][0]
    assert field_of(before) is not None and field_of(after) is None, result["diff"]
    assert our_writes(testbed, marker, namespace) == []
    assert field_of(_live(testbed, namespace, name)) is not None

    result = k8s_apply(testbed, tmp_path, namespace, [second])
    assert result["changed"] is True and result["results"][0]["action"] == "update"
    live = _live(testbed, namespace, name)
    assert field_of(live) is None, live
    assert live["metadata"]["labels"]["team"] == "theirs"
    # What stays of ours is untouched.
    assert live["spec"]["template"]["spec"]["nodeSelector"]["gpuops.llm/pool"] == "inference"
    assert live["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] == "1Gi"

    marker = testbed.audit_marker()
    result = k8s_apply(testbed, tmp_path, namespace, [second])
    assert result["changed"] is False and result["counts"] == {"unchanged": 1}
    result = k8s_apply(testbed, tmp_path, namespace, [second], check=True)
    assert result["changed"] is False
    assert our_writes(testbed, marker, namespace) == []


def test_the_configmap_of_the_issue(testbed, namespace, tmp_path):
    cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "issue-14"}, "data": {"a": "1", "b": "2"}}
    k8s_apply(testbed, tmp_path, namespace, [cm])
    cm = copy.deepcopy(cm)
    del cm["data"]["b"]
    result = k8s_apply(testbed, tmp_path, namespace, [cm])
    assert result["changed"] is True and result["results"][0]["removed"] == ["data.b"]
    assert client.CoreV1Api(testbed.api).read_namespaced_config_map("issue-14", namespace).data == {"a": "1"}
    marker = testbed.audit_marker()
    result = k8s_apply(testbed, tmp_path, namespace, [cm])
    assert result["changed"] is False
    assert our_writes(testbed, marker, namespace) == []


def test_a_secret_value_is_never_registered(testbed, namespace, tmp_path):
    token, other = "hf_%s" % uuid.uuid4().hex, "pw-%s" % uuid.uuid4().hex
    values = [token, other] + [base64.b64encode(v.encode()).decode() for v in (token, other)]
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf-token"},
              "stringData": {"token": token}, "data": {"other": values[3]}}
    result, text = run_apply(testbed, tmp_path, namespace, [secret])
    assert result["changed"] is True
    assert not [v for v in values if v in text], "a secret value is in the registered result"
    assert result["diff"]["after"][0]["data"] == {"token": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER",
                                                  "other": "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"}
    assert "invocation" in result and values[0] not in json.dumps(result["invocation"])
    stored = client.CoreV1Api(testbed.api).read_namespaced_secret("hf-token", namespace).data
    assert base64.b64decode(stored["token"]).decode() == token  # applied with its real value

    # Compared by the real value: the same is unchanged, a new one is a change, and still hidden.
    marker = testbed.audit_marker()
    result = k8s_apply(testbed, tmp_path, namespace, [secret])
    assert result["changed"] is False and our_writes(testbed, marker, namespace) == []
    new = "hf_%s" % uuid.uuid4().hex
    secret = dict(secret, stringData={"token": new})
    del secret["data"]
    result, text = run_apply(testbed, tmp_path, namespace, [secret])
    assert result["changed"] is True and result["results"][0]["removed"] == ["data.other"]
    assert not [v for v in values + [new, base64.b64encode(new.encode()).decode()] if v in text]
    stored = client.CoreV1Api(testbed.api).read_namespaced_secret("hf-token", namespace).data
    assert set(stored) == {"token"} and base64.b64decode(stored["token"]).decode() == new
