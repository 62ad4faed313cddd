"""Week 4's chaos drills, run for real on the testbed: pod kill, GPU node drain, thermal alert."""
from __future__ import annotations

import json
import re
import shutil
import uuid

import pytest
from kubernetes import client

from conftest import ROOT, run_playbook, wait_for

pytestmark = pytest.mark.integration

PAIR = ["inf-a100-0", "inf-a100-1"]


@pytest.fixture
def gpu_service(testbed, nvidia_runtime_class):
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    ns = f"chaos-{uuid.uuid4().hex[:6]}"
    v1.create_namespace({"metadata": {"name": ns}})
    apps.create_namespaced_deployment(ns, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "svc"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "svc"}},
                 "template": {"metadata": {"labels": {"app": "svc"}}, "spec": {
                     "runtimeClassName": nvidia_runtime_class,
                     "tolerations": [{"operator": "Exists"}],
                     "affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
                         "nodeSelectorTerms": [{"matchExpressions": [
                             {"key": "kubernetes.io/hostname", "operator": "In", "values": PAIR}]}]}}},
                     "containers": [{"name": "vllm", "image": "registry.invalid/vllm:1",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}}})
    yield ns
    v1.delete_namespace(ns)


def _running(v1, ns):
    return [p for p in v1.list_namespaced_pod(ns, label_selector="app=svc").items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


def _advertised(v1):
    return all((v1.read_node(n).status.allocatable or {}).get("nvidia.com/gpu") == "1" for n in PAIR)


@pytest.fixture(scope="module")
def gpus_advertised(testbed):
    """Week 1 (idempotent) puts the device plugin on the GPU nodes, unless an earlier test did."""
    v1 = client.CoreV1Api(testbed.api)
    if not _advertised(v1):
        rc, out, _recap = run_playbook(testbed, ROOT / "playbooks" / "week1_foundation.yml")
        assert rc == 0, out[-4000:]
    wait_for(lambda: _advertised(v1), timeout=120, what="both A100 nodes to advertise their GPU")


def test_drills_recover_and_report(testbed, gpus_advertised, gpu_service, tmp_path):
    # Debian's prometheus package (scripts/ensure-promtool.sh, run by scripts/bootstrap.sh) is the drill's server.
    assert shutil.which("prometheus"), "prometheus is not on PATH: run scripts/ensure-promtool.sh"
    v1 = client.CoreV1Api(testbed.api)
    ns = gpu_service
    first = wait_for(lambda: _running(v1, ns), timeout=60, what="the GPU service Running")[0]
    book = ROOT / "tests" / "integration" / "playbooks" / "chaos.yml"

    # Run 1: kill the service's pods, and the thermal drill on a real Prometheus.
    report = tmp_path / "kill.md"
    extra = {"chaos_kill_targets": [{"namespace": ns, "name": "svc"}], "chaos_report_path": str(report),
             "chaos_pod_recovery_seconds": 90}
    rc, out, _recap = run_playbook(testbed, book, "-e", json.dumps(extra))
    assert rc == 0, out[-5000:]
    text = report.read_text()
    rows = [line for line in text.splitlines() if line.startswith("| ") and "drill" not in line]
    assert len(rows) == 2 and all("| passed |" in r for r in rows), text
    assert "killed 1 pods" in text and "GPUTemperatureHigh" in text
    second = _running(v1, ns)[0]
    assert second.metadata.name != first.metadata.name

    # Run 2: drain the node the service now runs on; it must come back on the pool peer.
    node = second.spec.node_name
    report = tmp_path / "drain.md"
    extra = {"chaos_drain_node": node, "chaos_thermal_drill": False, "chaos_report_path": str(report),
             "chaos_drain_timeout": 120}
    rc, out, _recap = run_playbook(testbed, book, "-e", json.dumps(extra))
    assert rc == 0, out[-5000:]
    text = report.read_text()
    assert f"| drain {node} | passed |" in text and re.search(r"evicted [1-9]\d* GPU pods", text), text
    assert not v1.read_node(node).spec.unschedulable
    now = _running(v1, ns)
    assert len(now) == 1 and now[0].spec.node_name == next(n for n in PAIR if n != node)
