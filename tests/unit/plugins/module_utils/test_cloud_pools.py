# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/cloud_pools: the rules and requests of roles/cloud_node_pools, without ansible-playbook.

tests/unit/roles/test_cloud_node_pools.py runs the role itself per provider; these hold the rules."""
from __future__ import annotations

import pathlib

import yaml

from ansible_collections.gpuops.llm.plugins.module_utils import cloud_pools

ROOT = pathlib.Path(__file__).resolve().parents[4]
CA_DEFAULTS = yaml.safe_load((ROOT / "roles" / "cloud_node_pools" / "vars" / "main.yml").read_text())[
    "__cloud_node_pools_ca_defaults"]
TAINT = {"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}


def settings(provider="gke", pools=None, **over):
    base = {"provider": provider, "cluster": "c1", "state": "present", "add_ca_gpu_label": True,
            "gke": {"project": "p", "location": "us-central1-a", "oauth_scopes": ["s"], "auth_kind": "application"},
            "eks": {"region": "us-east-1", "node_role": "arn:role", "subnets": ["s-1"], "gpu_ami_type": "AL2_x86_64_GPU",
                    "cpu_ami_type": "AL2_x86_64", "wait": True},
            "aks": {"resource_group": "rg", "mode": "User", "os_type": "Linux"},
            "ca": dict(CA_DEFAULTS),
            "pools": pools if pools is not None else [
                {"name": "inf", "machine_type": "a2-highgpu-1g", "accelerator": {"type": "nvidia-tesla-a100", "count": 1},
                 "min_nodes": 1, "max_nodes": 4, "taints": [TAINT]},
                {"name": "train", "purpose": "training", "machine_type": "a2-highgpu-8g",
                 "accelerator": {"type": "nvidia-tesla-a100", "count": 8}, "max_nodes": 2, "taints": [TAINT]}]}
    base.update(over)
    return base


def test_defaults_filled_and_valid():
    plan = cloud_pools.plan(settings())
    assert plan["errors"] == []
    inf, train = plan["pools"]
    assert (inf["initial_nodes"], train["min_nodes"], train["initial_nodes"], inf["ca_priority"]) == (1, 0, 0, 10)
    assert plan["cluster_autoscaler"]["gpu_total"] == ["nvidia-tesla-a100:1:20"]  # 1x1+0x8 .. 4x1+2x8


def test_label_and_taint_keys_follow_the_kubernetes_rule():
    pools = [{"name": "inf", "machine_type": "m", "accelerator": {"type": "t"}, "max_nodes": 2,
              "labels": {"Bad_Prefix.example/x": "v", "ok": "not ok!"},
              "taints": [TAINT, {"key": "-x", "effect": "Sometimes"}]}]
    errors = "\n".join(cloud_pools.plan(settings(pools=pools))["errors"])
    assert 'labels key "Bad_Prefix.example/x" is not a valid label key: it prefix' in errors
    assert 'labels value "not ok!" of ok is not a valid label value' in errors
    assert 'taints[1].key "-x" is not a valid taint key' in errors
    assert 'taints[1].effect "Sometimes" is not valid; valid: NoSchedule, PreferNoSchedule, NoExecute' in errors


def test_errors_leave_no_requests():
    plan = cloud_pools.plan(settings(pools=[{"name": "inf", "max_nodes": 0}]))
    assert plan["requests"] is None and plan["cluster_autoscaler"] is None
    assert any("machine_type is required for provider gke" in e for e in plan["errors"])


def test_eks_adds_the_autoscaler_gpu_label_aks_does_not():
    eks = cloud_pools.plan(settings("eks"))["requests"][0]
    assert eks["labels"]["k8s.amazonaws.com/accelerator"] == "nvidia-tesla-a100"
    assert eks["taints"] == [{"key": "workload", "value": "llm-inference", "effect": "NO_SCHEDULE"}]
    pools = [dict(p, name=p["name"] + "0") for p in settings()["pools"]]
    aks = cloud_pools.plan(settings("aks", pools=pools))
    assert aks["errors"] == []
    assert aks["requests"][0]["node_labels"] == {} and aks["requests"][0]["node_taints"] == ["workload=llm-inference:NoSchedule"]
    assert aks["cluster_autoscaler"]["gpu_label"] == "kubernetes.azure.com/accelerator"


def test_extra_is_merged_recursively_and_flags_share_the_autoscaler_rule():
    pools = settings()["pools"]
    pools[0] = dict(pools[0], extra={"config": {"image_type": "COS_CONTAINERD"}})
    plan = cloud_pools.plan(settings(pools=pools, ca=dict(CA_DEFAULTS, scale_down_unneeded_time="2h30m",
                                                          extra_args={"scan-interval": "10s"})))
    config = plan["requests"][0]["config"]
    assert config["image_type"] == "COS_CONTAINERD" and config["machine_type"] == "a2-highgpu-1g"
    assert "--scale-down-unneeded-time=2h30m" in plan["cluster_autoscaler"]["args"]
    assert plan["cluster_autoscaler"]["flags"]["scan-interval"] == "10s"
    table = yaml.safe_load(plan["cluster_autoscaler"]["priority_configmap"]["data"]["priorities"])
    assert table == {0: [".*"], 10: [".*inf.*", ".*train.*"]}
    bad = cloud_pools.plan(settings(ca=dict(CA_DEFAULTS, scale_down_unneeded_time="5 min")))
    assert bad["errors"] == ['cloud_node_pools_ca.scale_down_unneeded_time "5 min" is not a duration; valid: e.g. '
                             "30s, 5m, 1h30m (Go's time.ParseDuration, no sign)"]
