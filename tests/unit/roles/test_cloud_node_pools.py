# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpuops.llm.cloud_node_pools in check mode against localhost, per provider and with bad input.

There is no cloud here, so the role runs with cloud_node_pools_skip_cloud_calls and the tests
assert the arguments each provider task would send (cloud_node_pools_result.requests), then check
those arguments against the installed cloud modules' own documented options and choices, and
that the provider task files pass every rendered key on.

Expected values come from the seed (gcloud node-pools create: a2-highgpu-1g with one
nvidia-tesla-a100, min 1 max 10, 3 nodes, taint workload=llm-inference:NoSchedule; a2-highgpu-8g
training pool min 0 max 4) and from the cloud modules' documentation.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
PLAYBOOK = ROOT / "tests/unit/roles/playbooks/cloud_node_pools_check.yml"
ROLE = ROOT / "roles/cloud_node_pools"
BIN = pathlib.Path(sys.executable).parent
MODULES = {"gke": "google.cloud.gcp_container_node_pool", "eks": "community.aws.eks_nodegroup",
           "aks": "azure.azcollection.azure_rm_aksagentpool"}

INFERENCE_TAINT = {"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}
TRAINING_TAINT = {"key": "workload", "value": "llm-training", "effect": "NoSchedule"}


def seed_pools(machine_types=None, **overrides):
    machine_types = machine_types or {"inference": {"gke": "a2-highgpu-1g"}, "training": {"gke": "a2-highgpu-8g"}}
    inference = {"name": "llm-inference", "purpose": "inference", "machine_type": machine_types["inference"],
                 "accelerator": {"type": "nvidia-tesla-a100", "count": 1}, "initial_nodes": 3, "min_nodes": 1,
                 "max_nodes": 10, "taints": [INFERENCE_TAINT],
                 "labels": {"gpu-type": "a100", "workload-class": "inference"}}
    training = {"name": "llm-training", "purpose": "training", "machine_type": machine_types["training"],
                "accelerator": {"type": "nvidia-tesla-a100", "count": 8}, "initial_nodes": 0, "min_nodes": 0,
                "max_nodes": 4, "taints": [TRAINING_TAINT]}
    inference.update(overrides)
    return [inference, training]


GKE = {"project": "acme-ai", "location": "us-central1-a"}
EKS = {"region": "us-east-1", "node_role": "arn:aws:iam::123456789012:role/eks-gpu-node", "subnets": ["subnet-a"]}
AKS = {"resource_group": "rg-llm"}

CASES = [
    {"id": "gke-seed", "provider": "gke", "gke": GKE, "pools": seed_pools()},
    {"id": "eks", "provider": "eks", "eks": EKS,
     "pools": seed_pools({"inference": {"eks": "g5.xlarge"}, "training": "p4d.24xlarge"}, spot=True)},
    {"id": "aks", "provider": "aks", "aks": AKS,
     "pools": [dict(p, cloud_name=c) for p, c in zip(
         seed_pools({"inference": "Standard_NC24ads_A100_v4", "training": "Standard_ND96asr_v4"},
                    accelerator={"type": "nvidia-tesla-a100", "count": 1, "mig_profile": "MIG3g"}),
         ("llminference", "llmtraining"))]},
    {"id": "inference-min-zero-allowed", "provider": "gke", "gke": GKE,
     "pools": seed_pools(min_nodes=0, initial_nodes=0, allow_scale_to_zero=True)},
    {"id": "unknown-provider", "provider": "oci", "pools": seed_pools()},
    # The seed's GKE machine types give AKS no VM size, and its pool names break AKS's name rule.
    {"id": "aks-bad", "provider": "aks", "aks": AKS, "pools": seed_pools()},
    {"id": "bad-taint-effect", "provider": "gke", "gke": GKE,
     "pools": seed_pools(taints=[{"key": "workload", "value": "x", "effect": "NoWay"}])},
    # Go durations and an expander chain, as the autoscaler's flags take them (the same rule as
    # roles/cluster_autoscaler; 1h30m was refused here before).
    {"id": "ca-go-durations", "provider": "gke", "gke": GKE, "pools": seed_pools(),
     "ca": {"scale_down_unneeded_time": "1h30m", "scale_down_delay_after_add": "90s",
            "expander": "priority,least-waste"}},
    # Many problems in one run: the role reports them all at once. No project/location either, a
    # threshold above 1 and a duration in words.
    {"id": "bad-many", "provider": "gke", "pools": [
        dict(seed_pools()[0], name="min-gt-max", min_nodes=5, max_nodes=2, initial_nodes=5),
        dict(seed_pools()[0], name="no-machine", machine_type={"eks": "g5.xlarge"}),
        dict(seed_pools()[0], name="cold-inference", min_nodes=0, initial_nodes=0),
        dict(seed_pools()[0], name="no-acc-type", accelerator={"count": 1}),
        dict(seed_pools()[0], name="untainted", taints=[]),
    ], "ca": {"scale_down_gpu_utilization_threshold": 1.5, "scale_down_delay_after_add": "ten minutes"}},
]


@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cnp")
    cases = tmp / "cases.yml"
    cases.write_text(yaml.safe_dump({"cases": CASES}))
    env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_NOCOLOR="1",
               ANSIBLE_LOCAL_TEMP=str(tmp / "tmp"), ANSIBLE_RETRY_FILES_ENABLED="0")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", "--check", str(PLAYBOOK),
                           "-e", "@%s" % cases], capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    data = json.loads(proc.stdout)
    report = data["plays"][0]["tasks"][-1]["hosts"]["localhost"]["outcomes"]
    return {o["id"]: o for o in report}


def ok(outcomes, case_id):
    outcome = outcomes[case_id]
    assert not outcome["failed"], outcome.get("msg")
    return outcome["result"]


def failed(outcomes, case_id):
    outcome = outcomes[case_id]
    assert outcome["failed"], "case %s should have failed" % case_id
    return outcome["msg"]


# ------------------------------------------------------------------------------- GKE


def test_gke_requests_mirror_the_seed(outcomes):
    result = ok(outcomes, "gke-seed")
    assert result["cloud_calls"] is False
    inf, train = result["requests"]
    assert inf["name"] == "llm-inference" and inf["cluster"] == {"name": "enterprise-ai-cluster"}
    assert (inf["project"], inf["location"]) == ("acme-ai", "us-central1-a")
    assert inf["config"]["machine_type"] == "a2-highgpu-1g"
    assert inf["config"]["accelerators"] == [{"accelerator_type": "nvidia-tesla-a100", "accelerator_count": 1}]
    assert inf["initial_node_count"] == 3
    assert inf["autoscaling"] == {"enabled": True, "min_node_count": 1, "max_node_count": 10}
    # GKE's API spells taint effects in upper snake case.
    assert inf["config"]["taints"] == [{"key": "workload", "value": "llm-inference", "effect": "NO_SCHEDULE"}]
    assert inf["config"]["labels"] == {"gpu-type": "a100", "workload-class": "inference"}
    assert train["config"]["machine_type"] == "a2-highgpu-8g"
    assert train["config"]["accelerators"][0]["accelerator_count"] == 8
    assert train["autoscaling"] == {"enabled": True, "min_node_count": 0, "max_node_count": 4}
    assert train["initial_node_count"] == 0
    assert all(r["state"] == "present" for r in result["requests"])


def test_cluster_autoscaler_policy(outcomes):
    ca = ok(outcomes, "gke-seed")["cluster_autoscaler"]
    args = ca["args"]
    # The seed: scale down GPU nodes only under 30 % GPU use, after 5 minutes unneeded.
    assert "--scale-down-gpu-utilization-threshold=0.3" in args
    assert "--scale-down-unneeded-time=5m" in args
    assert "--skip-nodes-with-local-storage=false" in args
    assert "--expander=priority" in args
    # --gpu-total per type: min 1x1 + 0x8 = 1 GPU, max 10x1 + 4x8 = 42 GPUs.
    assert "--gpu-total=nvidia-tesla-a100:1:42" in args
    assert ca["gpu_label"] == "cloud.google.com/gke-accelerator"
    cm = ca["priority_configmap"]
    assert cm["metadata"]["name"] == "cluster-autoscaler-priority-expander"
    assert cm["metadata"]["namespace"] == "kube-system"
    priorities = yaml.safe_load(cm["data"]["priorities"])
    assert all(isinstance(k, int) for k in priorities)
    assert any("llm-inference" in rx for rx in priorities[10]) and any("llm-training" in rx for rx in priorities[10])
    assert ca["helm_values"]["extraArgs"]["scale-down-gpu-utilization-threshold"] == "0.3"
    assert yaml.safe_load(ca["helm_values"]["expanderPriorities"]) == priorities


# ------------------------------------------------------------------------------- EKS


def test_eks_requests(outcomes):
    result = ok(outcomes, "eks")
    inf, train = result["requests"]
    assert inf["instance_types"] == ["g5.xlarge"] and train["instance_types"] == ["p4d.24xlarge"]
    assert (inf["cluster_name"], inf["region"], inf["node_role"]) == (
        "enterprise-ai-cluster", "us-east-1", EKS["node_role"])
    assert inf["subnets"] == ["subnet-a"]
    assert inf["scaling_config"] == {"min_size": 1, "max_size": 10, "desired_size": 3}
    assert train["scaling_config"] == {"min_size": 0, "max_size": 4, "desired_size": 0}
    assert inf["taints"] == [{"key": "workload", "value": "llm-inference", "effect": "NO_SCHEDULE"}]
    assert inf["capacity_type"] == "SPOT" and train["capacity_type"] == "ON_DEMAND"
    assert inf["ami_type"] == "AL2_x86_64_GPU"
    # The Cluster Autoscaler's AWS provider recognises GPU nodes by this label.
    assert inf["labels"]["k8s.amazonaws.com/accelerator"] == "nvidia-tesla-a100"
    assert "--gpu-total" not in " ".join(result["cluster_autoscaler"]["args"])  # the flag works on GKE only


# ------------------------------------------------------------------------------- AKS


def test_aks_requests(outcomes):
    inf, train = ok(outcomes, "aks")["requests"]
    assert inf["name"] == "llminference" and inf["resource_group"] == "rg-llm"
    assert inf["vm_size"] == "Standard_NC24ads_A100_v4"
    assert (inf["enable_auto_scaling"], inf["min_count"], inf["max_count"], inf["count"]) == (True, 1, 10, 3)
    assert (train["min_count"], train["max_count"], train["count"]) == (0, 4, 0)
    assert inf["node_taints"] == ["workload=llm-inference:NoSchedule"]  # AKS takes key=value:Effect strings
    assert inf["gpu_instance_profile"] == "MIG3g"
    assert inf["mode"] == "User"
    # The azure provider reads kubernetes.azure.com/accelerator (GPULabel, cluster-autoscaler-1.36.1
    # cloudprovider/azure/azure_cloud_provider.go); the legacy "accelerator" label we once added was
    # not it. AKS labels its GPU nodes itself (AKS docs, unconfirmed here), so no label is added.
    assert not any("accelerator" in k for k in inf["node_labels"])
    assert ok(outcomes, "aks")["cluster_autoscaler"]["gpu_label"] == "kubernetes.azure.com/accelerator"


# ------------------------------------------------------------------------------- bad input


def test_missing_machine_type_names_the_field(outcomes):
    msg = failed(outcomes, "bad-many")
    assert "cloud_node_pools_pools[1] (no-machine).machine_type is required for provider gke" in msg
    msg = failed(outcomes, "aks-bad")
    assert "cloud_node_pools_pools[0] (llm-inference).machine_type is required for provider aks" in msg


def test_min_greater_than_max_names_the_fields(outcomes):
    msg = failed(outcomes, "bad-many")
    assert "cloud_node_pools_pools[0] (min-gt-max).min_nodes (5) is greater than max_nodes (2)" in msg


def test_unknown_provider_names_the_variable(outcomes):
    msg = failed(outcomes, "unknown-provider")
    assert "cloud_node_pools_provider" in msg and "oci" in msg


def test_aks_pool_name_rules(outcomes):
    msg = failed(outcomes, "aks-bad")
    assert "(llm-inference).name \"llm-inference\" is not a valid aks pool name" in msg and "cloud_name" in msg


def test_inference_pool_keeps_a_warm_node(outcomes):
    msg = failed(outcomes, "bad-many")
    assert "(cold-inference).min_nodes is 0 for an inference pool" in msg and "allow_scale_to_zero" in msg
    inf = ok(outcomes, "inference-min-zero-allowed")["requests"][0]
    assert inf["autoscaling"]["min_node_count"] == 0


def test_gke_gpu_pool_needs_accelerator_type(outcomes):
    assert "(no-acc-type).accelerator.type is required on gke" in failed(outcomes, "bad-many")


def test_gpu_pool_needs_a_taint(outcomes):
    msg = failed(outcomes, "bad-many")
    assert "(untainted) is a GPU pool without a NoSchedule taint" in msg
    assert "(min-gt-max) is a GPU pool without" not in msg


def test_provider_settings_required(outcomes):
    msg = failed(outcomes, "bad-many")
    assert "cloud_node_pools_gke.project" in msg and "cloud_node_pools_gke.location" in msg


def test_ca_flags_take_go_durations_and_expander_chains(outcomes):
    args = ok(outcomes, "ca-go-durations")["cluster_autoscaler"]["args"]
    assert {"--scale-down-unneeded-time=1h30m", "--scale-down-delay-after-add=90s",
            "--expander=priority,least-waste"} <= set(args)
    assert 'cloud_node_pools_ca.scale_down_delay_after_add "ten minutes" is not a duration' in failed(outcomes, "bad-many")


def test_ca_threshold_range(outcomes):
    assert "cloud_node_pools_ca.scale_down_gpu_utilization_threshold (1.5) must be a number between 0 and 1" \
        in failed(outcomes, "bad-many")


def test_bad_taint_effect(outcomes):
    msg = failed(outcomes, "bad-taint-effect")
    assert "effect" in msg and "NoWay" in msg


# ------------------------------------------------------------------------------- against the modules


@pytest.fixture(scope="module")
def module_docs():
    proc = subprocess.run([str(BIN / "ansible-doc"), "-j"] + list(MODULES.values()), capture_output=True,
                          text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return {name: doc["doc"]["options"] for name, doc in json.loads(proc.stdout).items()}


def _check_against(options, value, where, problems):
    for key, sub in value.items():
        if key not in options:
            problems.append("%s.%s is not an option" % (where, key))
            continue
        spec = options[key]
        if spec.get("choices") and not isinstance(sub, (dict, list)) and sub not in spec["choices"]:
            problems.append("%s.%s=%r not in %s" % (where, key, sub, spec["choices"]))
        if "suboptions" in spec:
            items = sub if isinstance(sub, list) else [sub]
            for i, item in enumerate(items):
                if isinstance(item, dict):
                    _check_against(spec["suboptions"], item, "%s.%s[%d]" % (where, key, i), problems)


@pytest.mark.parametrize("case_id,provider", [("gke-seed", "gke"), ("eks", "eks"), ("aks", "aks")])
def test_requests_match_the_module_options(outcomes, module_docs, case_id, provider):
    options = module_docs[MODULES[provider]]
    problems = []
    for request in ok(outcomes, case_id)["requests"]:
        _check_against(options, request, request["name"], problems)
    assert problems == []


@pytest.mark.parametrize("case_id,provider", [("gke-seed", "gke"), ("eks", "eks"), ("aks", "aks")])
def test_task_passes_every_rendered_key(outcomes, case_id, provider):
    tasks = yaml.safe_load((ROLE / "tasks" / ("%s.yml" % provider)).read_text())
    args = tasks[0][MODULES[provider]]
    rendered = set().union(*(r.keys() for r in ok(outcomes, case_id)["requests"]))
    assert rendered <= set(args), rendered - set(args)
    for key in rendered:
        assert "item.%s" % key in args[key]  # each argument is the rendered value, not recomputed
