# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/observability against the testbed's real API server: bad input fails before any write,
and a pinned Grafana datasource is checked against the datasources the Grafana sidecar provisions.

The datasource ConfigMap below has the shape kube-prometheus-stack ships for its own Prometheus
(a provisioning file with apiVersion 1 and a datasources list, labelled grafana_datasource: "1");
the label key is the grafana chart's sidecar default, which shared/facts does not confirm.
"""
from __future__ import annotations

import json
import sys
import uuid

import pytest
import yaml
from kubernetes import client

from conftest import run_play_json

pytestmark = pytest.mark.integration

PLAYBOOK = """
- name: Alert rules and dashboards
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Observability
      ansible.builtin.include_role:
        name: gpuops.llm.observability
"""

DATASOURCES = {"apiVersion": 1, "datasources": [
    {"name": "Prometheus", "uid": "prometheus", "type": "prometheus", "url": "http://prometheus:9090", "isDefault": True},
    {"name": "Loki", "uid": "loki", "type": "loki", "url": "http://loki:3100"}]}


@pytest.fixture
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = "obs-%s" % uuid.uuid4().hex[:8]
    v1.create_namespace({"metadata": {"name": name}})
    v1.create_namespaced_config_map(name, {
        "metadata": {"name": "kube-prometheus-stack-grafana-datasource", "labels": {"grafana_datasource": "1"}},
        "data": {"datasource.yaml": yaml.safe_dump(DATASOURCES)}})
    yield name
    v1.delete_namespace(name)


def run(testbed, tmp_path, namespace, check=False, **over):
    extra = {"ansible_python_interpreter": sys.executable, "observability_kubeconfig": testbed.kubeconfig,
             "observability_namespace": namespace, "observability_dashboard_namespace": namespace}
    extra.update(over)
    return run_play_json(testbed, tmp_path, PLAYBOOK, extra, check)


def failure(data):
    for task in data["plays"][0]["tasks"]:
        res = task["hosts"].get("localhost", {})
        if res.get("failed"):
            # A loop's message is in the failed item's result.
            msgs = [res.get("msg")] + [r.get("msg") for r in res.get("results", []) if r.get("failed")]
            return task["task"]["name"], " ".join(m for m in msgs if isinstance(m, str))
    return None


def dashboard_datasource(testbed, namespace, name="gpu-fleet"):
    cm = client.CoreV1Api(testbed.api).read_namespaced_config_map("gpuops-llm-dashboard-%s" % name, namespace)
    dashboard = json.loads(cm.data["%s.json" % name])
    [var] = [v for v in dashboard["templating"]["list"] if v["name"] == "datasource"]
    return var.get("current")


BAD = {
    "temperature above the range": ({"observability_gpu_temperature_threshold_celsius": 150},
                                    "observability_gpu_temperature_threshold_celsius=150 is out of range"),
    "framebuffer percent of 0": ({"observability_gpu_framebuffer_threshold_percent": 0},
                                 "observability_gpu_framebuffer_threshold_percent=0 is out of range"),
    "KV cache over 100 percent": ({"observability_kv_cache_threshold_percent": 101},
                                  "observability_kv_cache_threshold_percent=101 is out of range"),
    "negative queue": ({"observability_inference_queue_threshold": -1},
                       "observability_inference_queue_threshold=-1 is out of range"),
    "duration in words": ({"observability_gpu_temperature_for": "5 minutes"},
                          "observability_gpu_temperature_for=5 minutes is not a Prometheus duration"),
    "datasource that does not exist": ({"observability_dashboard_datasource": "Thanos"},
                                       "observability_dashboard_datasource=Thanos matches no Grafana datasource"),
    "datasource that is not Prometheus": ({"observability_dashboard_datasource": "loki"},
                                          "is a datasource of type loki, not prometheus"),
    "declared datasource without a type": ({"observability_dashboard_datasource": "VictoriaMetrics",
                                            "observability_grafana_datasources": [{"name": "VictoriaMetrics"}]},
                                           "needs a name and a type"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_fails_naming_the_field_and_writes_nothing(testbed, tmp_path, namespace, case):
    over, expected = BAD[case]
    marker = testbed.audit_marker()
    rc, data = run(testbed, tmp_path, namespace, **over)
    assert rc != 0
    failed = failure(data)
    assert failed and expected in failed[1], failed
    assert testbed.audit_writes(marker) == []


def test_missing_datasource_lists_the_ones_grafana_has(testbed, tmp_path, namespace):
    rc, data = run(testbed, tmp_path, namespace, observability_dashboard_datasource="Thanos")
    assert rc != 0
    msg = failure(data)[1]
    assert "Prometheus (type prometheus)" in msg and "Loki (type loki)" in msg
    assert "grafana_datasource=1 in %s" % namespace in msg


def test_pinned_datasource_starts_the_dashboards_on_it(testbed, tmp_path, namespace):
    # By name: the variable's current value is the datasource's uid, as Grafana stores it.
    rc, data = run(testbed, tmp_path, namespace, observability_dashboard_datasource="Prometheus")
    assert rc == 0, failure(data)
    for name in ("gpu-fleet", "llm-inference"):
        current = dashboard_datasource(testbed, namespace, name)
        assert (current["text"], current["value"]) == ("Prometheus", "prometheus"), name
    # A rerun, and pinning the same datasource by uid, change nothing and write nothing.
    marker = testbed.audit_marker()
    for pin in ("Prometheus", "prometheus"):
        rc, data = run(testbed, tmp_path, namespace, observability_dashboard_datasource=pin)
        assert rc == 0 and data["stats"]["localhost"]["changed"] == 0, failure(data)
    assert testbed.audit_writes(marker) == []
    # Unpinning gives the choice back to Grafana's default (no current value).
    rc, data = run(testbed, tmp_path, namespace)
    assert rc == 0 and data["stats"]["localhost"]["changed"] >= 1
    assert not dashboard_datasource(testbed, namespace)


def test_declared_datasources_replace_the_sidecar_lookup(testbed, tmp_path, namespace):
    # A Grafana outside the cluster: its datasources are declared, the sidecar ConfigMaps are not read.
    declared = [{"name": "Mimir", "uid": "mimir-prod", "type": "prometheus"}]
    rc, data = run(testbed, tmp_path, namespace, observability_dashboard_datasource="Mimir",
                   observability_grafana_datasources=declared)
    assert rc == 0, failure(data)
    assert dashboard_datasource(testbed, namespace)["value"] == "mimir-prod"
    rc, data = run(testbed, tmp_path, namespace, observability_dashboard_datasource="Prometheus",
                   observability_grafana_datasources=declared)
    assert rc != 0 and "matches no Grafana datasource" in failure(data)[1] and "Mimir (type prometheus)" in failure(data)[1]
