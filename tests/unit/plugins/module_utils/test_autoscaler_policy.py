# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/autoscaler_policy: the Cluster Autoscaler rules both autoscaler roles use.

The role-level tests (tests/unit/roles/test_cluster_autoscaler_conformance.py, test_cloud_node_pools.py,
tests/integration/test_cluster_autoscaler.py) hold the rendered objects against upstream; these hold
the rules themselves, without spawning ansible-playbook."""
from __future__ import annotations

import pathlib

import pytest
import yaml

from ansible_collections.gpuops.llm.plugins.module_utils import autoscaler_policy as ap

ROOT = pathlib.Path(__file__).resolve().parents[4]


def settings(**over):
    """The role's defaults (roles/cluster_autoscaler/defaults/main.yml), as its vars pass them."""
    defaults = yaml.safe_load((ROOT / "roles" / "cluster_autoscaler" / "defaults" / "main.yml").read_text())
    base = {k[len("cluster_autoscaler_"):]: v for k, v in defaults.items() if k.startswith("cluster_autoscaler_")}
    base.update(cloud_provider="clusterapi", cloud_node_pools_result={})
    base.update(over)
    return base


@pytest.mark.parametrize("value", ["5m", "300s", "1h30m", "1.5h", "250ms", "0", "2h45m10s", ".5s", "10us"])
def test_go_durations_accepted(value):
    assert ap.duration_error(value) is None


@pytest.mark.parametrize("value", ["5", "five minutes", "5 m", "-5m", "+5m", "5d", "", "m", 300, None])
def test_non_durations_refused(value):
    assert "is not a duration" in ap.duration_error(value)


def test_flag_errors_name_the_field_the_way_each_role_spells_it():
    bad = {"scale_down_utilization_threshold": -0.1, "scale_down_gpu_utilization_threshold": True,
           "scale_down_unneeded_time": "5 minutes", "scale_down_delay_after_add": "10m", "expander": "priority,cheapest"}
    role = ap.flag_errors(bad, lambda f: "cluster_autoscaler_" + f)
    cloud = ap.flag_errors(bad, lambda f: "cloud_node_pools_ca." + f)
    assert len(role) == len(cloud) == 4
    assert role[0].startswith("cluster_autoscaler_scale_down_utilization_threshold (-0.1) must be a number")
    assert cloud[0].startswith("cloud_node_pools_ca.scale_down_utilization_threshold (-0.1) must be a number")
    assert "(True)" in role[1], "a boolean is not a threshold"
    assert 'cluster_autoscaler_scale_down_unneeded_time "5 minutes" is not a duration' in role[2]
    assert 'unknown expander "cheapest"' in role[3] and "least-nodes" in role[3]
    assert [m.split(" ", 1)[1] for m in role] == [m.split(" ", 1)[1] for m in cloud], "one rule, one message"


def test_defaults_are_valid_and_every_problem_is_reported_at_once():
    assert ap.input_errors(settings()) == []
    errors = ap.input_errors(settings(
        namespace="Kube_System", version=".bad", replicas=0, cloud_provider="",
        node_groups=[{"name": "gpu", "min_nodes": 5, "max_nodes": 2},
                     {"name": "gpu", "min_nodes": 0, "max_nodes": 0, "size": 3},
                     "oops", {"min_nodes": -1, "max_nodes": 1, "priority": "high"}],
        expander_priorities={"x": [], "10": ["("]}, extra_args={"--scan-interval": "5s"}))
    text = "\n".join(errors)
    for needle in ('cluster_autoscaler_namespace "Kube_System" is not a DNS label',
                   "cluster_autoscaler_cloud_provider is required",
                   'cluster_autoscaler_version ".bad" is not a valid image tag',
                   "cluster_autoscaler_replicas (0) must be 1 or more",
                   "cluster_autoscaler_node_groups[0] (gpu).min_nodes (5) is greater than max_nodes (2)",
                   'cluster_autoscaler_node_groups[1] (gpu).name "gpu" is listed twice',
                   "cluster_autoscaler_node_groups[1] (gpu).max_nodes is 0",
                   'cluster_autoscaler_node_groups[1] (gpu) has unknown key "size"',
                   "cluster_autoscaler_node_groups[2] must be a dict",
                   "cluster_autoscaler_node_groups[3].name is required",
                   "cluster_autoscaler_node_groups[3].min_nodes (-1) must be an integer, 0 or more",
                   "cluster_autoscaler_node_groups[3].priority (high) must be an integer",
                   'cluster_autoscaler_expander_priorities key "x" must be a non-negative integer',
                   "cluster_autoscaler_expander_priorities[x] must be a non-empty list",
                   'cluster_autoscaler_expander_priorities[10] regex "(" does not compile',
                   'cluster_autoscaler_extra_args key "--scan-interval" must be a flag name'):
        assert needle in text, needle
    resolved = ap.resolve(settings(replicas=0))
    assert resolved["errors"] and resolved["policy"] is None


def test_deploy_false_does_not_need_a_provider_image_or_replicas():
    assert ap.input_errors(settings(deploy=False, cloud_provider="", version="", replicas=0)) == []


GROUPS = [{"name": "llm-inference", "min_nodes": 1, "max_nodes": 6, "priority": 50},
          {"name": "llm.training", "min_nodes": 0, "max_nodes": 1, "priority": 10}]


def test_clusterapi_discovers_and_annotates_instead_of_nodes():
    policy = ap.policy(settings(node_groups=GROUPS, clusterapi_namespace="capi", clusterapi_cluster_name="gpu1"))
    assert not any(a.startswith("--nodes=") for a in policy["args"])
    assert "--node-group-auto-discovery=clusterapi:namespace=capi,clusterName=gpu1" in policy["args"]
    assert policy["node_group_ids"]["llm-inference"] == "MachineDeployment/capi/llm-inference"
    annotations = policy["clusterapi_node_groups"][0]["metadata"]["annotations"]
    assert annotations == {ap.CAPI_MIN_ANNOTATION: "1", ap.CAPI_MAX_ANNOTATION: "6"}
    table = yaml.safe_load(policy["priorities"])
    assert table == {0: [".*"], 10: [r"^MachineDeployment/capi/llm\.training$"],
                     50: ["^MachineDeployment/capi/llm-inference$"]}


def test_aws_nodes_flags_or_tag_discovery():
    named = ap.policy(settings(cloud_provider="aws", node_groups=GROUPS))
    assert "--nodes=1:6:llm-inference" in named["args"] and "--nodes=0:1:llm.training" in named["args"]
    assert not any("auto-discovery" in a for a in named["args"])
    tagged = ap.policy(settings(cloud_provider="aws", aws_cluster_name="prod"))
    assert tagged["args"][-1] == "--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/prod"


def test_flags_sorted_booleans_lowercase_and_extra_args_win():
    policy = ap.policy(settings(extra_args={"scan-interval": "5s", "expander": "least-waste", "enforce-node-group-min-size": True}))
    flag_args = [a for a in policy["args"][2:] if not a.startswith(("--nodes=", "--node-group"))]
    assert flag_args == sorted(flag_args)
    assert "--skip-nodes-with-local-storage=false" in policy["args"]
    assert "--enforce-node-group-min-size=true" in policy["args"]
    assert policy["flags"]["expander"] == "least-waste" and policy["uses_priority_expander"] is False


def test_cloud_node_pools_result_supplies_provider_flags_and_table():
    cloud = {"provider": "gke", "cluster": "c1", "cluster_autoscaler": {
        "flags": {"scale-down-unneeded-time": "7m"}, "gpu_total": ["nvidia-l4:1:8"],
        "priority_configmap": {"data": {"priorities": "10:\n- .*llm-inference.*\n"}}}}
    s = settings(cloud_provider="", use_cloud_node_pools_result=True, cloud_node_pools_result=cloud)
    resolved = ap.resolve(s)
    assert resolved["errors"] == [] and resolved["provider"] == "gce"
    policy = resolved["policy"]
    assert policy["from_cloud_node_pools"] is True and policy["flags"]["scale-down-unneeded-time"] == "7m"
    assert "--gpu-total=nvidia-l4:1:8" in policy["args"] and policy["priorities"] == "10:\n- .*llm-inference.*\n"
    # Not allowed to use it: no provider, so deploying fails naming the variable.
    off = ap.resolve(dict(s, use_cloud_node_pools_result=False))
    assert off["provider"] == "" and "cluster_autoscaler_cloud_provider is required" in off["errors"][0]


def test_explicit_priorities_keep_regex_characters():
    policy = ap.policy(settings(expander_priorities={"20": ["^gpu-.*$", "it's"], 5: [".*"]}))
    assert yaml.safe_load(policy["priorities"]) == {5: [".*"], 20: ["^gpu-.*$", "it's"]}


def test_roles_hold_no_copy_of_these_rules():
    # Issue 14: the autoscaler roles print what Python resolved; no template or var computes a rule.
    for role in ("cluster_autoscaler", "cloud_node_pools"):
        files = [f for f in (ROOT / "roles" / role).rglob("*") if f.suffix in (".j2", ".yml") and "meta" not in f.parts]
        assert files, role
        for f in files:
            text = f.read_text()
            assert ".append(" not in text and "duration_re" not in text and "least-waste" not in text, f
