# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""testbed/cluster_autoscaler.py: what it hands the real autoscaler's kwok provider, held against
kubernetes/autoscaler cluster-autoscaler/cloudprovider/kwok at cluster-autoscaler-1.36.1
(kwok_constants.go, kwok_config.go, kwok_helpers.go), written out here."""
from __future__ import annotations

import pathlib
import sys
from types import SimpleNamespace as NS

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed"))

import cluster_autoscaler as ca  # noqa: E402
import testbed  # noqa: E402

POLICY = {"args": ["--cloud-provider=clusterapi", "--namespace=kube-system", "--expander=priority",
                   "--node-group-auto-discovery=clusterapi:namespace=default"],
          "flags": {"expander": "priority", "scale-down-gpu-utilization-threshold": "0.3",
                    "scale-down-unneeded-time": "5m", "skip-nodes-with-local-storage": "false"},
          "node_groups": [{"name": "llm-inference", "min_nodes": 1, "max_nodes": 6, "priority": 50},
                          {"name": "llm-training", "min_nodes": 0, "max_nodes": 1, "priority": 10},
                          {"name": "not-a-pool", "min_nodes": 0, "max_nodes": 3}]}


def live_node():
    return NS(metadata=NS(labels={"workload-class": "training", testbed.POOL_LABEL: "llm-training",
                                  "kubernetes.io/hostname": "train-a100-0"}),
              spec=NS(taints=[NS(key="workload", value="llm-training", effect="NoSchedule"),
                              NS(key="node.kubernetes.io/not-ready", value=None, effect="NoSchedule")]))


def test_template_has_the_pools_shape_and_the_groups_max():
    tb = testbed.Testbed()
    t = ca.template_node(tb, POLICY["node_groups"][1], live_node())
    ann = t["metadata"]["annotations"]
    # kwok_constants.go NGMinSizeAnnotation / NGMaxSizeAnnotation; min 0: kwok's target starts at min.
    assert ann == {"cluster-autoscaler.kwok.nodegroup/min-count": "0", "cluster-autoscaler.kwok.nodegroup/max-count": "1",
                   ca.GROUP_ANNOTATION: "llm-training"}
    labels = t["metadata"]["labels"]
    assert labels[testbed.POOL_LABEL] == "llm-training" and labels["workload-class"] == "training"
    assert "kubernetes.io/hostname" not in labels  # kwok README: "What is not supported"
    assert t["spec"]["taints"] == [{"key": "workload", "value": "llm-training", "effect": "NoSchedule"}]
    spec = [n for n in tb.spec["nodes"] if n["pool"] == "llm-training"][0]
    assert t["status"]["capacity"]["nvidia.com/gpu"] == str(spec["gpu_count"])
    assert t["status"]["capacity"]["cpu"] == str(spec["cpu"])
    # Only autoscaled GPU nodes carry the autoscaler's GPU label (see GPU_LABEL: gpu_processor.go).
    assert labels[ca.GPU_LABEL] == "nvidia-a100-sxm4-40gb"


def test_args_keep_the_roles_policy_and_drop_the_real_clouds_node_groups():
    args = ca.args_for(POLICY, pathlib.Path("/tmp/kc"))
    assert "--cloud-provider=kwok" in args and "--kubeconfig=/tmp/kc" in args
    assert f"--namespace={ca.NAMESPACE}" in args
    assert "--scale-down-gpu-utilization-threshold=0.3" in args and "--expander=priority" in args
    assert not [a for a in args if a.startswith(("--nodes=", "--node-group-auto-discovery="))]
    assert "--scale-down-unneeded-time=20s" in args and "--scale-down-unneeded-time=5m" not in args


def test_provider_config_is_what_kwok_config_go_accepts(monkeypatch):
    tb = testbed.Testbed()

    class V1:
        def __init__(self, *_):
            pass

        def list_node(self, label_selector):
            n = live_node()
            n.metadata.labels[testbed.POOL_LABEL] = label_selector.split("=", 1)[1]
            n.spec.provider_id = None
            return NS(items=[n])

    monkeypatch.setattr(tb, "api_client", lambda: None)
    import kubernetes.client
    monkeypatch.setattr(kubernetes.client, "CoreV1Api", V1)
    cms = {o["metadata"]["name"]: o for o in ca.provider_objects(tb, POLICY)}
    assert set(cms) == {"kwok-provider-config", "kwok-provider-templates", "cluster-autoscaler-priority-expander"}
    config = yaml.safe_load(cms["kwok-provider-config"]["data"]["config"])  # configKey "config"
    assert config["apiVersion"] == "v1alpha1" and config["readNodesFrom"] == "configmap"
    # Not the pool label: Refresh() would count the testbed's own nodes into the group's target size.
    assert config["nodegroups"] == {"fromNodeAnnotationKey": ca.GROUP_ANNOTATION}
    assert config["configmap"]["name"] == "kwok-provider-templates"
    gpu = config["nodes"]["gpuConfig"]
    assert gpu["gpuLabelKey"] and gpu["availableGPUTypes"]  # both or LoadConfigFile errors
    items = yaml.safe_load(cms["kwok-provider-templates"]["data"]["templates"])["items"]  # templatesKey
    assert sorted(i["metadata"]["labels"][testbed.POOL_LABEL] for i in items) == ["llm-inference", "llm-training"]
    prio = yaml.safe_load(cms["cluster-autoscaler-priority-expander"]["data"]["priorities"])
    assert prio == {50: ["^llm-inference$"], 10: ["^llm-training$"], 0: [".*"]}


def test_per_pool_counts():
    ev = [{"event": "added", "pool": "llm-training"}, {"event": "removed", "pool": "llm-training"},
          {"event": "added", "pool": "llm-inference"}, {"event": "removed", "pool": "llm-inference", "at_exit": True}]
    assert ca.per_pool(ev) == {"llm-training": {"added": 1, "removed": 1},
                               "llm-inference": {"added": 1, "removed": 0, "removed_at_exit": 1}}
