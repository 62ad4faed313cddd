"""Coexisting with an NVIDIA GPU Operator, on the testbed with testbed/gpu_operator_standin.py.

The stand-in follows gpu-operator v26.7.0 and mig-parted v0.15.0 as their code states it (sources in
docs/conformance.md#gpu-operator): the ClusterPolicy CRD and object, the operator's DaemonSets and
node labels, and mig-manager's nvidia.com/mig.config protocol applied to the simulated GPUs."""
from __future__ import annotations

import json
import os
import pathlib
import signal
import subprocess
import sys
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import ROOT, run_play_json, run_playbook, wait_for

pytestmark = pytest.mark.integration

WEEK1 = ROOT / "playbooks" / "week1_foundation.yml"
STANDIN = ROOT / "testbed" / "gpu_operator_standin.py"
NODE = "mig-h100-0"
PEER = "mig-h100-1"
OUR_NAMESPACES = ("nvidia-device-plugin", "nvidia-dcgm-exporter")  # roles/device_plugin, roles/dcgm_exporter
THEIR_DAEMONSETS = {"nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter",
                    "nvidia-mig-manager"}
BALANCED = {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1, "nvidia.com/mig-3g.40gb": 1}
FACTS_PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - gpuops.llm.gpu_operator_facts:
      register: out
    - ansible.builtin.debug:
        var: out
"""


def _mig_alloc(v1, node):
    alloc = v1.read_node(node).status.allocatable or {}
    return {k: int(v) for k, v in alloc.items() if k.startswith("nvidia.com/mig-") and int(v)}


def _labels(v1, node):
    return v1.read_node(node).metadata.labels or {}


def _nvml_writes(testbed, node):
    from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
    return len(nvml_sim.mutating_calls(str(testbed.nvml_dir / f"{node}.json")))


def _facts(testbed, tmp_path):
    rc, data = run_play_json(testbed, tmp_path, FACTS_PLAY, {"ansible_python_interpreter": sys.executable})
    assert rc == 0, json.dumps(data)[-3000:]
    return data["plays"][0]["tasks"][0]["hosts"]["localhost"]


def _wait_namespace_gone(v1, name):
    wait_for(lambda: name not in {n.metadata.name for n in v1.list_namespace().items},
             timeout=120, what=f"namespace {name} gone")


def test_without_an_operator_nothing_is_detected(testbed, tmp_path):
    out = _facts(testbed, tmp_path)
    assert out["detected"] is False and out["reason"].startswith("CRD clusterpolicies.nvidia.com not served")
    assert out["deploy"] == {"device_plugin": True, "gfd": True, "dcgm_exporter": True}


@pytest.fixture(scope="module")
def operator(testbed):
    """The stand-in installed and running, with none of the collection's own GPU components; the
    cluster and the simulated GPUs are put back as they were afterwards."""
    v1 = client.CoreV1Api(testbed.api)
    saved = {p: p.read_bytes() for p in testbed.nvml_dir.glob("*.json")}
    for ns in OUR_NAMESPACES:  # another module's week 1 may have deployed ours
        try:
            v1.delete_namespace(ns)
        except ApiException as e:
            if e.status != 404:
                raise
    for ns in OUR_NAMESPACES:
        _wait_namespace_gone(v1, ns)
    env = testbed.env()
    base = [sys.executable, str(STANDIN), "--kubeconfig", testbed.kubeconfig]
    subprocess.run(base[:2] + ["install"] + base[2:], env=env, check=True)
    log = open(pathlib.Path(testbed.home) / "gpu-operator-standin.log", "ab")
    proc = subprocess.Popen(base[:2] + ["run"] + base[2:] + ["--nvml-dir", str(testbed.nvml_dir)],
                            env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        wait_for(lambda: int((v1.read_node("train-a100-0").status.allocatable or {}).get("nvidia.com/gpu", 0)) == 8,
                 timeout=120, what="the operator's device plugin advertising train-a100-0's GPUs")
        # The operator labels MIG-capable nodes all-disabled (its default); mig-manager applies it.
        wait_for(lambda: all(_labels(v1, n).get("nvidia.com/mig.config.state") == "success" for n in (NODE, PEER)),
                 timeout=120, what="mig-manager's first success on the MIG nodes")
        yield proc
    finally:
        os.kill(proc.pid, signal.SIGTERM)
        proc.wait(timeout=30)
        log.close()
        subprocess.run(base[:2] + ["uninstall"] + base[2:], env=env, check=True)
        _wait_namespace_gone(v1, "gpu-operator")
        for p, data in saved.items():
            p.write_bytes(data)


@pytest.fixture(scope="module")
def week1(testbed, operator):
    rc, out, recap = run_playbook(testbed, WEEK1)
    assert rc == 0, out[-4000:]
    return out


def test_the_stand_in_leaves_what_a_real_operator_leaves(testbed, operator, tmp_path):
    out = _facts(testbed, tmp_path)
    assert out["detected"] and out["ready"] and out["policy"] == "cluster-policy"
    assert out["namespace"] == "gpu-operator"
    assert out["deploy"] == {"device_plugin": False, "gfd": False, "dcgm_exporter": False}
    assert out["mig"]["strategy"] == "mixed" and out["mig"]["config_map"] == "custom-mig-parted-config"
    assert all(c["daemonset_present"] for c in out["components"].values())
    assert out["nodes"][NODE]["deploy"]["mig_manager"] == "true"
    assert out["nodes"]["inf-l4-0"]["deploy"].get("mig_manager") is None  # an L4 has no MIG


def test_week1_deploys_no_second_device_plugin_gfd_or_exporter(testbed, week1):
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    ds = {(d.metadata.namespace, d.metadata.name) for d in apps.list_daemon_set_for_all_namespaces().items}
    assert not [d for d in ds if d[0] in OUR_NAMESPACES], ds
    assert {n for ns, n in ds if ns == "gpu-operator"} == THEIR_DAEMONSETS
    assert "not deploying device plugin, GFD, DCGM exporter" in week1
    # The mig role went through mig-manager: the inventory's all-balanced is the node's label.
    labels = _labels(v1, NODE)
    assert labels["nvidia.com/mig.config"] == "all-balanced"
    assert labels["nvidia.com/mig.config.state"] == "success"
    assert labels["nvidia.com/gpu.deploy.device-plugin"] == "true"
    assert "gpuops.llm/device-plugin.paused" not in labels
    assert _mig_alloc(v1, NODE) == BALANCED
    assert not v1.read_node(NODE).spec.unschedulable
    # Node pools use the labels the operator's GFD sets.
    assert _labels(v1, "inf-a100-0").get("nvidia.com/gpu.product") == "NVIDIA-A100-SXM4-80GB"


def test_week1_rerun_changes_nothing_and_writes_nothing(testbed, week1):
    marker = testbed.audit_marker()
    nvml_before = {n: _nvml_writes(testbed, n) for n in (NODE, PEER)}
    rc, out, recap = run_playbook(testbed, WEEK1)
    assert rc == 0, out[-4000:]
    assert all(h["changed"] == 0 for h in recap.values()), recap
    assert testbed.audit_writes(marker) == []
    assert {n: _nvml_writes(testbed, n) for n in (NODE, PEER)} == nvml_before
    rc, out, recap = run_playbook(testbed, WEEK1, check=True)
    assert rc == 0, out[-4000:]
    assert all(h["changed"] == 0 for h in recap.values()), recap


def _deployment(name, resource):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         # Week 1 (the week1 fixture) writes RuntimeClass nvidia; the testbed refuses
                         # GPU pods without it on runc-default nodes, as a real node would.
                         "runtimeClassName": "nvidia",
                         "tolerations": [{"operator": "Exists"}],
                         "nodeSelector": {"gpuops.llm/testbed-pool": "llm-inference-mig"},
                         "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
                             {"weight": 100, "preference": {"matchExpressions": [
                                 {"key": "kubernetes.io/hostname", "operator": "In", "values": [NODE]}]}}]}},
                         "containers": [{"name": "c", "image": "registry.invalid/vllm:1",
                                         "resources": {"limits": {resource: "1"}}}]}}}}


def _mig_play(testbed, devices, *extra, check=False):
    return run_playbook(testbed, ROOT / "tests" / "integration" / "playbooks" / "mig_node.yml",
                        "-e", json.dumps({"mig_target": NODE, "mig_devices": devices, "mig_preset": ""}),
                        *extra, check=check)


def test_mig_role_changes_the_layout_through_mig_manager_with_drain_and_uncordon(testbed, week1):
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    ns = f"op-{uuid.uuid4().hex[:6]}"
    v1.create_namespace({"metadata": {"name": ns}})
    try:
        apps.create_namespaced_deployment(ns, _deployment("svc", "nvidia.com/mig-3g.40gb"))
        first = wait_for(lambda: [p for p in v1.list_namespaced_pod(ns).items if p.status.phase == "Running"],
                         timeout=60, what="the MIG pod Running")[0]
        assert first.spec.node_name == NODE

        marker = testbed.audit_marker()
        rc, out, recap = _mig_play(testbed, {"1g.10gb": 7}, check=True)
        assert rc == 0, out[-4000:]
        assert recap[NODE]["changed"] >= 1
        assert [w for w in testbed.audit_writes(marker) if w["resource"] == "configmaps" or (
            w["resource"] == "nodes" and w["name"] == NODE and not w["subresource"])] == [], "check mode wrote"
        assert _labels(v1, NODE)["nvidia.com/mig.config"] == "all-balanced"

        nvml_before = _nvml_writes(testbed, NODE)
        rc, out, recap = _mig_play(testbed, {"1g.10gb": 7})
        assert rc == 0, out[-4000:]
        labels = _labels(v1, NODE)
        assert labels["nvidia.com/mig.config"].startswith("gpuops-")
        assert labels["nvidia.com/mig.config.state"] == "success"
        assert labels["nvidia.com/gpu.deploy.device-plugin"] == "true"  # mig-manager put its plugin back
        assert _nvml_writes(testbed, NODE) > nvml_before  # the stand-in's mig-manager changed the GPU
        assert _mig_alloc(v1, NODE) == {"nvidia.com/mig-1g.10gb": 7}
        assert not v1.read_node(NODE).spec.unschedulable
        cm = v1.read_namespaced_config_map("custom-mig-parted-config", "gpu-operator")
        assert labels["nvidia.com/mig.config"] + ":" in cm.data["config.yaml"]
        assert "all-balanced:" in cm.data["config.yaml"]  # the owner's configs are kept
        # The GPU pod was evicted before the change and runs on the peer now.
        moved = wait_for(lambda: [p for p in v1.list_namespaced_pod(ns).items if p.status.phase == "Running"
                                  and p.metadata.name != first.metadata.name], timeout=60, what="the replacement")[0]
        assert moved.spec.node_name == PEER

        writes, marker = _nvml_writes(testbed, NODE), testbed.audit_marker()
        rc, out, recap = _mig_play(testbed, {"1g.10gb": 7})
        assert rc == 0 and recap[NODE]["changed"] == 0, out[-4000:]
        assert _nvml_writes(testbed, NODE) == writes
        assert testbed.audit_writes(marker) == []
    finally:
        v1.delete_namespace(ns)


def test_mig_manager_failing_puts_the_previous_config_back_and_uncordons(testbed, week1):
    """An NVML error while mig-manager applies: it reports failed; the role puts the previous label
    back (mig-manager re-applies it), restores schedulability and fails naming what happened."""
    from ansible_collections.gpuops.llm.plugins.module_utils import nvml, nvml_sim
    v1 = client.CoreV1Api(testbed.api)
    prev = _labels(v1, NODE)["nvidia.com/mig.config"]
    before = _mig_alloc(v1, NODE)
    path = str(testbed.nvml_dir / f"{NODE}.json")
    state = nvml_sim.load_state(path)
    nvml_sim.inject_failure(state, "create_gpu_instance", code=nvml.UNKNOWN, gpu=0)
    nvml_sim.save_state(path, state)
    rc, out, _err = _mig_play(testbed, {"7g.80gb": 1})
    assert rc != 0
    assert "nvidia.com/mig.config.state=failed" in out, out[-3000:]
    assert f"Previous config {prev} put back" in out and "Node resumed" in out, out[-3000:]
    labels = _labels(v1, NODE)
    assert labels["nvidia.com/mig.config"] == prev and labels["nvidia.com/mig.config.state"] == "success"
    assert not v1.read_node(NODE).spec.unschedulable
    wait_for(lambda: _mig_alloc(v1, NODE) == before, timeout=60, what="the previous layout advertised")


def test_a_config_mig_manager_does_not_have_is_reported_failed(testbed, week1):
    """reconfigure.go validateMigConfig: an unknown config name sets failed, GPU clients left running."""
    v1 = client.CoreV1Api(testbed.api)
    v1.patch_node(PEER, {"metadata": {"labels": {"nvidia.com/mig.config": "no-such-config",
                                                 "nvidia.com/mig.config.state": None}}})
    try:
        wait_for(lambda: _labels(v1, PEER).get("nvidia.com/mig.config.state") == "failed", timeout=60,
                 what="mig-manager's failed state")
        assert _labels(v1, PEER)["nvidia.com/gpu.deploy.device-plugin"] == "true"
    finally:
        v1.patch_node(PEER, {"metadata": {"labels": {"nvidia.com/mig.config": "all-balanced"}}})
    wait_for(lambda: _labels(v1, PEER).get("nvidia.com/mig.config.state") == "success", timeout=60,
             what="the peer back on all-balanced")
