# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""`make run`'s KEDA rehearsal (testbed/keda_rehearsal.py rehearse) on a private testbed.

Two Deployments serve ONE model (as the default testbed's llama31-8b and llama31-8b-mig do), each
with the ScaledObject gpuops.llm.model_autoscaler writes. The rehearsal runs the real KEDA v2.20.2
operator and metrics adapter, raises the queue of the first one's pods and drains it. Expected:
the first goes up to the rehearsal's cap and back to its minReplicaCount, the second never moves
(its query selects its own pods, not every server of the model), and afterwards the ScaledObjects
are exactly as model_autoscaler applied them (a rerun writes nothing), KEDA's HPAs and finalizers
are gone and no process of the rehearsal is left.
"""
from __future__ import annotations

import json
import sys
import uuid

import pytest
from kubernetes import client

import keda_rehearsal
from conftest import run_play_json

pytestmark = pytest.mark.integration

SERVED = "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
PLAYBOOK = """
- name: KEDA's CRDs and the models' ScaledObjects
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Install KEDA's generated CRDs
      ansible.builtin.include_role:
        name: gpuops.llm.keda
      vars:
        keda_install_method: generated
    - name: Autoscale the models
      gpuops.llm.model_autoscaler:
        namespace: "{{ ns }}"
        prometheus_url: http://prometheus-operated.monitoring.svc:9090
        models: "{{ models }}"
      register: autoscaled
"""


def _crds_dir():
    import subprocess

    from conftest import ROOT
    proc = subprocess.run(["bash", str(ROOT / "testbed" / "build_keda_crds.sh")], capture_output=True, text=True,
                          timeout=3600, check=False)
    if proc.returncode != 0:
        pytest.fail("KEDA's CRDs could not be generated: %s" % proc.stderr[-1500:])
    return proc.stdout.strip().splitlines()[-1]


def _deployment(name):
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {
                         "nodeSelector": {"kubernetes.io/hostname": "cpu-0"},
                         "containers": [{"name": "vllm", "image": "registry.invalid/vllm-openai:stand-in"}]}}}}


@pytest.mark.timeout(2400)  # a cold build of the operator and adapter comes first
def test_rehearsal_scales_the_spiked_model_only_and_leaves_nothing_behind(testbed, tmp_path):
    for component in ("operator", "adapter"):
        try:
            keda_rehearsal.build(component)
        except keda_rehearsal.BuildError as exc:
            pytest.fail(str(exc))
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    custom, hpas = client.CustomObjectsApi(testbed.api), client.AutoscalingV2Api(testbed.api)
    ns = "kr-%s" % uuid.uuid4().hex[:6]
    v1.create_namespace({"metadata": {"name": ns}})
    try:
        # "a-llm" sorts first: the rehearsal spikes it; "a-llm-mig" serves the same model name.
        for name in ("a-llm", "a-llm-mig"):
            apps.create_namespaced_deployment(ns, _deployment(name))
        models = [{"name": n, "served_model_name": SERVED, "min_replicas": 1, "max_replicas": 8, "gpu_trigger": False}
                  for n in ("a-llm", "a-llm-mig")]
        extra = {"ansible_python_interpreter": sys.executable, "keda_crds_path": _crds_dir(), "ns": ns,
                 "models": models}
        rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra)
        assert rc == 0, json.dumps(data.get("stats"))

        def stored():
            # What model_autoscaler's field manager owns, values and field set. (The operator's own
            # writes, e.g. advanced.scalingModifiers: {}, are another manager's and no drift.)
            return {o["metadata"]["name"]: (keda_rehearsal.owned_subset(o),
                                            [(f["operation"], json.dumps(f["fieldsV1"], sort_keys=True))
                                             for f in o["metadata"]["managedFields"] if f["manager"] == "gpuops.llm"])
                    for o in custom.list_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects")["items"]}

        before = stored()
        assert keda_rehearsal.rehearse(testbed.tb, namespaces=[ns]) == 0
        result = keda_rehearsal.timeline(testbed.tb)
        assert result["spiked"] == "%s/a-llm" % ns, result
        spiked = [n for _t, n in result["timeline"]["%s/a-llm" % ns]]
        other = [n for _t, n in result["timeline"]["%s/a-llm-mig" % ns]]
        # Up to the rehearsal's cap on its own queue, then back to minReplicaCount 1.
        assert max(spiked) == keda_rehearsal.REHEARSAL_MAX and spiked[-1] == 1, result
        # Same model name, other pods: its queue stayed at 0, so it never moved from 1.
        assert set(other) == {1}, result
        assert result["seconds"] < 180, result

        # Nothing left behind: the ScaledObjects as model_autoscaler applied them, no KEDA HPA,
        # no finalizer, no process (pid files removed), the APIService gone.
        assert stored() == before
        assert not [h.metadata.name for h in hpas.list_namespaced_horizontal_pod_autoscaler(ns).items]
        for o in custom.list_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects")["items"]:
            assert not o["metadata"].get("finalizers"), o["metadata"]
        assert not list(keda_rehearsal.state_dir(testbed.tb).glob("*.pid"))
        registry = client.ApiregistrationV1Api(testbed.api)
        assert keda_rehearsal.EXTERNAL_METRICS_API not in [s.metadata.name for s in registry.list_api_service().items]
        rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra)
        assert rc == 0
        res = [t for p in data["plays"] for t in p["tasks"] if t["task"]["name"] == "Autoscale the models"]
        assert res[0]["hosts"]["localhost"]["changed"] is False, res[0]["hosts"]["localhost"]
    finally:
        for o in custom.list_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects")["items"]:
            custom.patch_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", o["metadata"]["name"],
                                                  {"metadata": {"finalizers": None}})
        v1.delete_namespace(ns)
