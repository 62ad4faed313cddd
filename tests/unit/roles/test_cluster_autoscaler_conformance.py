# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""roles/cluster_autoscaler's objects held against kubernetes/autoscaler at cluster-autoscaler-1.36.1.

One ansible-playbook run resolves the role's policy (its vars' cluster_autoscaler_policy filter) and
renders its manifests.yml.j2 with its defaults and vars for each scenario, the way tasks/main.yml does. Expected values are written
out here from the upstream files (docs/conformance.md#cluster-autoscaler names each), not read from
the role:
  - cluster-autoscaler/config/flags/flags.go (flag names),
  - cluster-autoscaler/cloudprovider/clusterapi/README.md ("Configuring node group auto discovery",
    "Enabling Autoscaling": min/max-size annotations; --nodes is not how it finds node groups),
  - cluster-autoscaler/cloudprovider/clusterapi/clusterapi_unstructured.go ID(): path.Join(Kind, Namespace, Name),
  - cluster-autoscaler/charts/cluster-autoscaler/templates/clusterrole.yaml (clusterapi and kwok rules),
  - cluster-autoscaler/expander/priority/readme.md (ConfigMap name, regexes against node-group ids),
  - cluster-autoscaler/Dockerfile (gcr.io/distroless/static:nonroot, /cluster-autoscaler, WORKDIR /).
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "cluster_autoscaler"
PLAYBOOK_BIN = ROOT / ".venv" / "bin" / "ansible-playbook"

# Flags defined in cluster-autoscaler/config/flags/flags.go at cluster-autoscaler-1.36.1 (those the
# role can write; checked one by one with `git show cluster-autoscaler-1.36.1:.../flags.go`).
UPSTREAM_FLAGS = {
    "cloud-provider", "namespace", "scale-down-unneeded-time", "scale-down-utilization-threshold",
    "scale-down-gpu-utilization-threshold", "scale-down-delay-after-add", "skip-nodes-with-local-storage",
    "skip-nodes-with-system-pods", "balance-similar-node-groups", "expander", "nodes", "node-group-auto-discovery",
    "gpu-total", "kubeconfig", "scan-interval", "scale-down-delay-after-delete", "scale-down-delay-after-failure",
    "max-node-provision-time", "enforce-node-group-min-size",
}
CAPI_MIN = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
CAPI_MAX = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
NODE_GROUPS = [{"name": "llm-inference", "min_nodes": 1, "max_nodes": 6, "priority": 50},
               {"name": "llm-training", "min_nodes": 0, "max_nodes": 1, "priority": 10}]

SCENARIOS = {
    "clusterapi": {"cluster_autoscaler_cloud_provider": "clusterapi", "cluster_autoscaler_node_groups": NODE_GROUPS},
    "clusterapi-named": {"cluster_autoscaler_cloud_provider": "clusterapi", "cluster_autoscaler_node_groups": NODE_GROUPS,
                         "cluster_autoscaler_clusterapi_namespace": "capi-gpu",
                         "cluster_autoscaler_clusterapi_cluster_name": "gpu1",
                         "cluster_autoscaler_clusterapi_infrastructure_templates": ["awsmachinetemplates"]},
    "aws": {"cluster_autoscaler_cloud_provider": "aws", "cluster_autoscaler_node_groups": NODE_GROUPS},
    "kwok": {"cluster_autoscaler_cloud_provider": "kwok", "cluster_autoscaler_node_groups": NODE_GROUPS},
    # cloud_node_pools ran for EKS (its published result), no node group named here.
    "eks": {"cloud_node_pools_result": {"provider": "eks", "cluster": "gpu-prod",
                                        "cluster_autoscaler": {"flags": {}, "gpu_total": []}}},
}

PLAY = """
- hosts: localhost
  connection: local
  gather_facts: false
  vars_files: [{defaults}, {vars}]
  tasks:
    - name: Render each scenario
      ansible.builtin.copy:
        dest: "{{{{ out }}}}/{{{{ item.key }}}}.json"
        content: >-
          {{{{ {{'policy': policy, 'manifests': lookup('ansible.builtin.template', '{role}/templates/manifests.yml.j2',
                template_vars={{'__cluster_autoscaler_policy': policy}}) | ansible.builtin.from_yaml_all | select | list}}
             | to_json }}}}
        mode: "0644"
      vars:
        policy: "{{{{ __cluster_autoscaler_resolved.policy }}}}"
      loop: "{{{{ scenarios | dict2items }}}}"
      loop_control: {{label: "{{{{ item.key }}}}"}}
"""


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    """Each scenario's policy and manifests. Scenario vars go in as host vars of one run each."""
    out = tmp_path_factory.mktemp("ca")
    results = {}
    for name, over in SCENARIOS.items():
        d = out / name
        d.mkdir()
        play = d / "play.yml"
        play.write_text(PLAY.format(defaults=ROLE / "defaults" / "main.yml", vars=ROLE / "vars" / "main.yml", role=ROLE))
        extra = dict(over, out=str(d), scenarios={name: {}}, ansible_python_interpreter=sys.executable)
        (d / "extra.json").write_text(json.dumps(extra))
        env = dict(os.environ, ANSIBLE_STDOUT_CALLBACK="default", ANSIBLE_NOCOLOR="1")
        r = subprocess.run([str(PLAYBOOK_BIN), "-i", "localhost,", str(play), "-e", f"@{d / 'extra.json'}"],
                           capture_output=True, text=True, env=env, cwd=ROOT, timeout=120, check=False)
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        results[name] = json.loads((d / f"{name}.json").read_text())
    return results


def _obj(manifests, kind):
    return [m for m in manifests if m["kind"] == kind]


def _rules(rendered, scenario):
    return _obj(rendered[scenario]["manifests"], "ClusterRole")[0]["rules"]


def _allows(rules, group, resource, verb):
    return any(group in r.get("apiGroups", []) and resource in r.get("resources", []) and verb in r.get("verbs", [])
               for r in rules)


@pytest.mark.parametrize("resource", ["machinedeployments", "machinesets", "machinepools", "machines"])
@pytest.mark.parametrize("verb", ["get", "list", "watch", "update"])
def test_clusterapi_rbac_reads_and_updates_cluster_api_objects(rendered, resource, verb):
    """Chart templates/clusterrole.yaml (cloudProvider clusterapi): cluster.x-k8s.io objects. Failed before
    issue 12: the ClusterRole had no cluster.x-k8s.io rule, so the provider could list no node group."""
    assert _allows(_rules(rendered, "clusterapi"), "cluster.x-k8s.io", resource, verb)


@pytest.mark.parametrize("resource", ["machinedeployments/scale", "machinepools/scale"])
@pytest.mark.parametrize("verb", ["get", "patch", "update"])
def test_clusterapi_rbac_resizes_through_scale(rendered, resource, verb):
    """Chart templates/clusterrole.yaml: the provider resizes through the /scale subresource."""
    assert _allows(_rules(rendered, "clusterapi"), "cluster.x-k8s.io", resource, verb)


def test_cluster_api_rules_only_for_clusterapi(rendered):
    assert not any("cluster.x-k8s.io" in r.get("apiGroups", []) for r in _rules(rendered, "aws"))


def test_clusterapi_scale_from_zero_reads_infrastructure_templates(rendered):
    """clusterapi README "RBAC changes for scaling from zero": get, list, watch on the machine templates."""
    rules = _rules(rendered, "clusterapi-named")
    for verb in ("get", "list", "watch"):
        assert _allows(rules, "infrastructure.cluster.x-k8s.io", "awsmachinetemplates", verb)


def test_clusterapi_discovers_node_groups_instead_of_nodes_flag(rendered):
    """clusterapi README: node groups come from --node-group-auto-discovery=clusterapi:<k=v,...> and the
    min/max annotations; --nodes=<min>:<max>:<name> names nothing that provider knows. Failed before issue 12
    (args had --nodes=1:6:llm-inference and no auto-discovery)."""
    args = rendered["clusterapi"]["policy"]["args"]
    assert not [a for a in args if a.startswith("--nodes=")], args
    assert "--node-group-auto-discovery=clusterapi:namespace=default" in args
    named = rendered["clusterapi-named"]["policy"]["args"]
    assert "--node-group-auto-discovery=clusterapi:namespace=capi-gpu,clusterName=gpu1" in named


def test_clusterapi_node_groups_carry_min_and_max_size_annotations(rendered):
    """clusterapi README "Enabling Autoscaling": the provider monitors objects with BOTH annotations."""
    objs = {o["metadata"]["name"]: o for o in rendered["clusterapi"]["policy"]["clusterapi_node_groups"]}
    assert set(objs) == {"llm-inference", "llm-training"}
    inf = objs["llm-inference"]
    assert inf["apiVersion"].startswith("cluster.x-k8s.io/") and inf["kind"] == "MachineDeployment"
    assert inf["metadata"]["namespace"] == "default"
    assert inf["metadata"]["annotations"] == {CAPI_MIN: "1", CAPI_MAX: "6"}
    assert objs["llm-training"]["metadata"]["annotations"] == {CAPI_MIN: "0", CAPI_MAX: "1"}


def _priorities(rendered, scenario):
    cm = _obj(rendered[scenario]["manifests"], "ConfigMap")
    assert cm and cm[0]["metadata"]["name"] == "cluster-autoscaler-priority-expander"  # expander/priority/readme.md
    return yaml.safe_load(cm[0]["data"]["priorities"])


def _winner(priorities, group_id):
    """The priority a node-group id gets: the highest whose regexes match (Go regexp; these are RE2-safe)."""
    hits = [p for p, regexes in priorities.items() if any(re.search(r, group_id) for r in regexes)]
    return max(hits) if hits else None


def test_clusterapi_priorities_match_node_group_ids(rendered):
    """Priority expander regexes match node-group ids; clusterapi ids are <Kind>/<namespace>/<name>
    (clusterapi_unstructured.go ID()). Failed before issue 12: ^llm-inference$ matches no such id, so
    every group fell to '.*' at 0 and the expander picked at random."""
    prio = _priorities(rendered, "clusterapi")
    assert _winner(prio, "MachineDeployment/default/llm-inference") == 50
    assert _winner(prio, "MachineDeployment/default/llm-training") == 10
    assert _winner(prio, "MachineDeployment/default/llm-inference-old") == 0  # anchored: no prefix clash
    assert rendered["clusterapi"]["policy"]["node_group_ids"] == {
        "llm-inference": "MachineDeployment/default/llm-inference",
        "llm-training": "MachineDeployment/default/llm-training"}


def test_aws_keeps_nodes_flag_and_asg_name_ids(rendered):
    """aws provider README: --nodes=<min>:<max>:<ASG name>, the node-group id is the ASG name."""
    args = rendered["aws"]["policy"]["args"]
    assert "--nodes=1:6:llm-inference" in args and "--nodes=0:1:llm-training" in args
    assert _winner(_priorities(rendered, "aws"), "llm-inference") == 50


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_flag_exists_upstream(rendered, scenario):
    """config/flags/flags.go at cluster-autoscaler-1.36.1: the binary exits on an unknown flag."""
    for a in rendered[scenario]["policy"]["args"]:
        name = a[2:].split("=", 1)[0]
        assert name in UPSTREAM_FLAGS, a


def test_priority_expander_reads_its_configmap_from_the_namespace_flag(rendered):
    """expander/priority/readme.md: cluster-autoscaler-priority-expander in the --namespace namespace."""
    m = rendered["clusterapi"]["manifests"]
    cm = _obj(m, "ConfigMap")[0]
    assert f"--namespace={cm['metadata']['namespace']}" in rendered["clusterapi"]["policy"]["args"]


def test_kwok_provider_may_create_and_delete_nodes(rendered):
    """Chart templates/clusterrole.yaml: nodes create and delete for cloudProvider kwok only."""
    assert _allows(_rules(rendered, "kwok"), "", "nodes", "create") and _allows(_rules(rendered, "kwok"), "", "nodes", "delete")
    assert not _allows(_rules(rendered, "clusterapi"), "", "nodes", "delete")


def test_image_command_and_user_match_the_image(rendered):
    """Dockerfile: the binary is /cluster-autoscaler with WORKDIR /, on gcr.io/distroless/static:nonroot; the
    pod's runAsUser must be a user that image defines (testbed/images.yml)."""
    dep = _obj(rendered["clusterapi"]["manifests"], "Deployment")[0]
    pod = dep["spec"]["template"]["spec"]
    c = pod["containers"][0]
    assert c["command"] == ["./cluster-autoscaler"]
    images = yaml.safe_load((ROOT / "testbed" / "images.yml").read_text())["images"]
    repo, tag = c["image"].rsplit(":", 1)
    entry = [i for i in images if i["repository"] == repo]
    assert entry, f"{repo} has no entry in testbed/images.yml"
    assert tag in entry[0]["tags"]
    uids = {u["uid"] for u in entry[0]["users"].values()}
    assert pod["securityContext"]["runAsUser"] in uids


def test_eks_discovers_the_tagged_node_groups(rendered):
    """cloudprovider/aws/README.md "Auto-discovery setup": asg:tag=k8s.io/cluster-autoscaler/enabled,
    k8s.io/cluster-autoscaler/<cluster-name>. Failed before issue 12: from cloud_node_pools (eks) the role
    deployed an autoscaler with neither --nodes nor auto-discovery, which manages no node group."""
    args = rendered["eks"]["policy"]["args"]
    assert "--cloud-provider=aws" in args
    assert ("--node-group-auto-discovery=asg:tag=k8s.io/cluster-autoscaler/enabled,"
            "k8s.io/cluster-autoscaler/gpu-prod") in args
