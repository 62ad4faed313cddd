# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""device_plugin and dcgm_exporter through ansible-playbook against the testbed.

The real kube-scheduler places the DaemonSet pods and kwok marks them Running. The test adds
three kwok Nodes of its own (a GPU node, a paused GPU node, a CPU node) so it can check the
placement contract without touching the shared nodes, and removes them at the end. The
DaemonSets stay installed: the node agent advertises GPUs only while the plugin runs.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import crd_absent, wait_for  # noqa: E402  (pytest puts tests/integration on sys.path)

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK_BIN = ROOT / ".venv" / "bin" / "ansible-playbook"
DP_NS, DE_NS = "nvidia-device-plugin", "nvidia-dcgm-exporter"
GPU_LABELS = ("feature.node.kubernetes.io/pci-10de.present", "nvidia.com/gpu.present")
PAUSE_KEY = "gpuops.llm/device-plugin.paused"

PLAYBOOK = """
- hosts: localhost
  gather_facts: false
  roles:
    - role: gpuops.llm.device_plugin
      vars:
        device_plugin_wait_timeout: 180
        device_plugin_wait_interval: 2
    - role: gpuops.llm.dcgm_exporter
      vars:
        dcgm_exporter_wait_timeout: 180
        dcgm_exporter_wait_interval: 2
"""


def run_playbook(testbed, path, *extra):
    env = dict(os.environ)
    env.update(testbed.env())
    env["ANSIBLE_NOCOLOR"] = "1"
    python = ROOT / ".venv" / "bin" / "python"
    cmd = [str(PLAYBOOK_BIN), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={python}",
           *extra, str(path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-3000:]
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", proc.stdout)
    assert m, proc.stdout[-2000:]
    return int(m.group(2)), proc.stdout


@pytest.fixture
def nodes(testbed):
    v1 = client.CoreV1Api(testbed.api)
    tag = uuid.uuid4().hex[:6]
    made = {
        "gpu": (f"it-dp-{tag}-gpu", {GPU_LABELS[0]: "true"}),
        "gpu-operator": (f"it-dp-{tag}-gpuop", {GPU_LABELS[1]: "true"}),
        "paused": (f"it-dp-{tag}-paused", {GPU_LABELS[0]: "true", PAUSE_KEY: "true"}),
        "cpu": (f"it-dp-{tag}-cpu", {}),
    }
    for name, labels in made.values():
        body = {"apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "annotations": {"kwok.x-k8s.io/node": "fake"},
                             "labels": {"kubernetes.io/hostname": name, "type": "kwok", "gpuops.llm/it": tag, **labels}}}
        v1.create_node(body)
    try:
        yield {k: v[0] for k, v in made.items()}
    finally:
        for name, _labels in made.values():
            try:
                v1.delete_node(name)
            except ApiException as e:
                if e.status != 404:
                    raise


def pods_by_node(v1, namespace, app):
    pods = v1.list_namespaced_pod(namespace, label_selector=f"app.kubernetes.io/name={app}").items
    return {p.spec.node_name: p for p in pods if p.spec.node_name}


def test_addons_on_gpu_nodes_only_and_idempotent(testbed, nodes, tmp_path):
    pb = tmp_path / "addons.yml"
    pb.write_text(PLAYBOOK)
    run_playbook(testbed, pb)

    apps = client.AppsV1Api(testbed.api)
    v1 = client.CoreV1Api(testbed.api)
    for ns, name in ((DP_NS, "nvidia-device-plugin"), (DP_NS, "gpu-feature-discovery"), (DE_NS, "dcgm-exporter")):
        ds = apps.read_namespaced_daemon_set(name, ns)
        assert ds.status.desired_number_scheduled >= 2, (name, ds.status)  # at least our two GPU nodes

    for ns, app in ((DP_NS, "nvidia-device-plugin"), (DP_NS, "gpu-feature-discovery"), (DE_NS, "dcgm-exporter")):
        def running_on_both(ns=ns, app=app):
            m = pods_by_node(v1, ns, app)
            both = (nodes["gpu"], nodes["gpu-operator"])
            return m if set(both) <= set(m) and all(m[n].status.phase == "Running" for n in both) else None

        placed = wait_for(running_on_both, timeout=90, what=f"{app} Running on both test GPU nodes")
        assert nodes["paused"] not in placed, f"{app} scheduled on the paused node"
        assert nodes["cpu"] not in placed, f"{app} scheduled on a CPU node"
        # And across the whole cluster: only GPU-labelled, unpaused nodes.
        for node_name in placed:
            labels = v1.read_node(node_name).metadata.labels or {}
            assert any(labels.get(k) == "true" for k in GPU_LABELS), (app, node_name, labels)
            assert labels.get(PAUSE_KEY) != "true", (app, node_name)

    # Pausing a node takes the plugin off it (what the MIG role relies on).
    v1.patch_node(nodes["gpu"], {"metadata": {"labels": {PAUSE_KEY: "true"}}})
    wait_for(lambda: nodes["gpu"] not in pods_by_node(v1, DP_NS, "nvidia-device-plugin"),
             timeout=90, what="plugin pod removed from the node paused after install")
    v1.patch_node(nodes["gpu"], {"metadata": {"labels": {PAUSE_KEY: None}}})
    wait_for(lambda: nodes["gpu"] in pods_by_node(v1, DP_NS, "nvidia-device-plugin"),
             timeout=90, what="plugin pod back after unpausing")

    # Second run: nothing changes, and no write reaches the apiserver from us.
    marker = testbed.audit_marker()
    changed, out = run_playbook(testbed, pb)
    assert changed == 0, out[-4000:]
    ours = [w for w in testbed.audit_writes(marker) if w["namespace"] in (DP_NS, DE_NS) or w["resource"] in (
        "namespaces", "clusterroles")]
    # Server-side apply is a PATCH even when it changes nothing; the apiserver treats it as a no-op.
    non_apply = [w for w in ours if w["verb"] != "patch"]
    assert non_apply == [], non_apply

    # Check mode predicts no change either.
    changed, out = run_playbook(testbed, pb, "--check")
    assert changed == 0, out[-4000:]


def test_servicemonitor_switch_follows_crd(testbed, tmp_path):
    """Without the Prometheus Operator CRD the Service carries scrape annotations, and no ServiceMonitor."""
    pb = tmp_path / "dcgm.yml"
    pb.write_text(PLAYBOOK.split("    - role: gpuops.llm.device_plugin", maxsplit=1)[0]
                  + "    - role: gpuops.llm.dcgm_exporter\n      vars:\n        dcgm_exporter_wait: false\n")
    with crd_absent(testbed, "servicemonitors.monitoring.coreos.com"):
        run_playbook(testbed, pb)
    svc = client.CoreV1Api(testbed.api).read_namespaced_service("dcgm-exporter", DE_NS)
    ann = svc.metadata.annotations or {}
    assert ann.get("prometheus.io/scrape") == "true", json.dumps(ann)
    assert ann.get("prometheus.io/port") == "9400"
