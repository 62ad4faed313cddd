# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""playbooks/audit.yml (gpuops.llm.cluster_audit) against the testbed's real API server.

Each misconfiguration is seeded in a fresh namespace, or on kwok Nodes this test creates and
deletes; the audit runs through ansible-playbook and every finding is asserted with its evidence.
Workload checks are restricted to the namespace (option namespaces); cluster-wide checks are
asserted on the objects created here, by name, since other tests share the cluster.
Expected numbers come from shared/facts (Llama-3 architectures, GFD labels, KEDA defaults).
"""
from __future__ import annotations

import json
import pathlib
import uuid

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from conftest import run_playbook

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
PLAYBOOK = ROOT / "playbooks" / "audit.yml"
POOL_LABEL = "gpuops.llm/testbed-pool"
USER_AGENT = "gpuops.llm/cluster_audit"
A100_80 = "NVIDIA-A100-SXM4-80GB"
M70 = "meta-llama/Meta-Llama-3-70B-Instruct"
M8 = "meta-llama/Llama-3.1-8B-Instruct"
M8_AWQ = "hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4"
LLAMA3_70B = {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
              "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "max_position_embeddings": 8192}
LLAMA31_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
              "intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "max_position_embeddings": 131072}
LLAMA31_8B_AWQ = dict(LLAMA31_8B, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128})
# Checks whose findings depend on cluster-wide objects other tests may change meanwhile.
CLUSTER_CHECKS = ["gpu-node-untainted", "mig-invalid", "gpus-not-advertised", "idle-gpu-pool", "dcgm-exporter-missing",
                  "dcgm-exporter-not-on-gpu-nodes", "alert-rules-missing", "alert-rule-wrong-metric",
                  "cpu-pod-on-gpu-node"]
PROBE = {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10, "timeoutSeconds": 5}


def kwok_node(name, labels, gpus=None, taint=True, unschedulable=False):
    body = {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels, **{"type": "kwok", "kubernetes.io/hostname": name}),
                         "annotations": {"kwok.x-k8s.io/node": "fake"}},
            "spec": {"taints": [{"key": "gpuops.llm/audit-test", "value": "true", "effect": "NoSchedule"}] if taint else [],
                     "unschedulable": unschedulable}}
    status = {"cpu": "16", "memory": "64Gi", "pods": "110"}
    if gpus:
        status["nvidia.com/gpu"] = str(gpus)
    return body, {"status": {"capacity": status, "allocatable": status}}


def vllm_deployment(name, args, limits=None, node_selector=None, startup=True, liveness=True, requests=None):
    container = {"name": "vllm", "image": "vllm/vllm-openai:v0.19.0", "args": args}
    resources = {}
    if limits:
        resources["limits"] = limits
    if requests:
        resources["requests"] = requests
    if resources:
        container["resources"] = resources
    if startup:
        container["startupProbe"] = dict(PROBE, failureThreshold=60)
    if liveness:
        container["livenessProbe"] = PROBE
    spec = {"containers": [container],
            "tolerations": [{"operator": "Exists", "effect": "NoSchedule"}]}
    if node_selector:
        spec["nodeSelector"] = node_selector
    # replicas 0: the checks read the template, and the testbed's GPUs stay free for other tests.
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": 0, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": spec}}}


@pytest.fixture
def seeded(testbed):
    """Namespace, nodes and objects with one misconfiguration per check; removed afterwards."""
    v1 = client.CoreV1Api(testbed.api)
    apps = client.AppsV1Api(testbed.api)
    custom = client.CustomObjectsApi(testbed.api)
    ext = client.ApiextensionsV1Api(testbed.api)
    tag = uuid.uuid4().hex[:8]
    ns = "aud-%s" % tag
    names = {k: "aud-%s-%s" % (tag, k) for k in ("gpu", "miginv", "noadv", "train")}
    pools = {"train": "aud-%s-train" % tag, "offpeak": "aud-%s-offpeak" % tag}
    nodes = {
        # GPU node without a pool taint (cordoned so that no other test's pod lands on it)
        "gpu": kwok_node(names["gpu"], {"nvidia.com/gpu.product": A100_80, "nvidia.com/gpu.count": "1"},
                         gpus=1, taint=False, unschedulable=True),
        # GFD's invalid MIG layout under the single strategy: product ...-MIG-INVALID, count 0
        "miginv": kwok_node(names["miginv"], {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-INVALID",
                                              "nvidia.com/gpu.count": "0", "nvidia.com/mig.strategy": "single"}),
        # GFD counts 2 GPUs, the device plugin advertises none
        "noadv": kwok_node(names["noadv"], {"nvidia.com/gpu.product": A100_80, "nvidia.com/gpu.count": "2"}),
        # a training pool node with GPUs and no workload
        "train": kwok_node(names["train"], {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB",
                                            "nvidia.com/gpu.count": "8", "workload-class": "training",
                                            POOL_LABEL: pools["train"]}, gpus=8),
    }
    created = []
    v1.create_namespace({"metadata": {"name": ns}})
    try:
        for key, (body, status) in nodes.items():
            v1.create_node(body)
            created.append(body["metadata"]["name"])
            v1.patch_node_status(body["metadata"]["name"], status)
        # a CPU pod bound straight to the untainted GPU node
        v1.create_namespaced_pod(ns, {"metadata": {"name": "web"}, "spec": {
            "nodeName": names["gpu"], "containers": [{"name": "web", "image": "nginx:1.27"}]}})
        deps = {
            # 70B in 16 bit on 4 A100-80GB, no startupProbe, liveness on
            "vllm-fp16": vllm_deployment("vllm-fp16", ["--model", M70, "--tensor-parallel-size", "4",
                                                       "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"],
                                         {"nvidia.com/gpu": "4"}, {"nvidia.com/gpu.product": A100_80}, startup=False),
            "vllm-hpa": vllm_deployment("vllm-hpa", ["--model", M8_AWQ, "--max-model-len", "8192",
                                                     "--gpu-memory-utilization", "0.9"],
                                        {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu.product": A100_80}),
            # 8B on an L4 at 0.98 with the full 131072 context
            "vllm-kv": vllm_deployment("vllm-kv", ["--model", M8, "--max-model-len", "131072",
                                                   "--gpu-memory-utilization", "0.98"],
                                       {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu.product": "NVIDIA-L4"}),
            "vllm-nogpu": vllm_deployment("vllm-nogpu", ["--model", M8_AWQ]),
            "vllm-offpeak": vllm_deployment("vllm-offpeak", ["--model", M8_AWQ, "--max-model-len", "8192",
                                                             "--gpu-memory-utilization", "0.9"],
                                            {"nvidia.com/gpu": "1"}, {POOL_LABEL: pools["offpeak"]}),
            # the clean equivalent: AWQ, explicit KV settings, startupProbe, GPU limits, queue autoscaling
            "vllm-clean": vllm_deployment("vllm-clean", ["--model", M8_AWQ, "--max-model-len", "8192",
                                                         "--gpu-memory-utilization", "0.9"],
                                          {"nvidia.com/gpu": "1"}, {"nvidia.com/gpu.product": A100_80}),
        }
        for dep in deps.values():
            apps.create_namespaced_deployment(ns, dep)
        client.AutoscalingV2Api(testbed.api).create_namespaced_horizontal_pod_autoscaler(ns, {
            "metadata": {"name": "vllm-hpa"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "vllm-hpa"},
                     "minReplicas": 1, "maxReplicas": 4,
                     "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                         "type": "Utilization", "averageUtilization": 70}}}]}})
        try:
            ext.read_custom_resource_definition("scaledobjects.keda.sh")
            keda = True
        except ApiException:
            keda = False
        trigger = {"type": "prometheus", "metadata": {"serverAddress": "http://prometheus:9090",
                                                      "query": "sum(vllm:num_requests_waiting)", "threshold": "5"}}
        if keda:
            for name, minimum in (("vllm-offpeak", 1), ("vllm-clean", 1)):
                custom.create_namespaced_custom_object("keda.sh", "v1alpha1", ns, "scaledobjects", {
                    "apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"name": name},
                    "spec": {"scaleTargetRef": {"name": name}, "minReplicaCount": minimum, "maxReplicaCount": 4,
                             "triggers": [trigger]}})
        else:  # without KEDA's CRD an HPA on the queue metric plays the autoscaler (it cannot reach 0 either)
            for name in ("vllm-offpeak", "vllm-clean"):
                client.AutoscalingV2Api(testbed.api).create_namespaced_horizontal_pod_autoscaler(ns, {
                    "metadata": {"name": name},
                    "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
                             "minReplicas": 1, "maxReplicas": 4, "metrics": [{"type": "External", "external": {
                                 "metric": {"name": "vllm_queue"}, "target": {"type": "AverageValue",
                                                                              "averageValue": "5"}}}]}})
        # the seed article's alert, as a rule file: underscore spelling matches nothing
        v1.create_namespaced_config_map(ns, {"metadata": {"name": "seed-alerts"}, "data": {"alerts.yml": (
            "groups:\n- name: seed\n  rules:\n  - alert: InferenceQueueBacklog\n"
            "    expr: avg(vllm_num_requests_waiting) > 20\n")}})
        yield {"ns": ns, "nodes": names, "pools": pools, "keda": keda, "tag": tag}
    finally:
        try:  # bound to a node that goes away: delete it now rather than wait for pod GC
            v1.delete_namespaced_pod("web", ns, grace_period_seconds=0)
        except ApiException:
            pass
        v1.delete_namespace(ns)
        for name in created:
            try:
                v1.delete_node(name)
            except ApiException:
                pass


def audit(testbed, tmp_path, seeded, *extra_args, check=False, name="audit", **overrides):
    out = tmp_path / ("%s.json" % name)
    extra = {"cluster_audit_namespaces": [seeded["ns"]],
             "cluster_audit_model_configs": {M70: LLAMA3_70B, M8: LLAMA31_8B, M8_AWQ: LLAMA31_8B_AWQ},
             "cluster_audit_offpeak_pools": [seeded["pools"]["offpeak"]],
             "cluster_audit_pool_label": POOL_LABEL,
             "cluster_audit_json_path": str(out)}
    extra.update(overrides)
    rc, output, recap = run_playbook(testbed, PLAYBOOK, "-e", json.dumps(extra), *extra_args, check=check)
    result = json.loads(out.read_text()) if out.exists() else None
    return rc, output, recap, result


def findings_for(result, check, obj=None):
    return [f for f in result["findings"] if f["id"] == check and (obj is None or f["object"] == obj)]


def test_apiserver_rejects_gpu_requests_without_limits(testbed, seeded):
    """Why the seeded 'requests only' case is checked in unit tests: the API server refuses it."""
    dep = vllm_deployment("req-only", ["--model", M8_AWQ], requests={"nvidia.com/gpu": "1"})
    with pytest.raises(ApiException) as err:
        client.AppsV1Api(testbed.api).create_namespaced_deployment(seeded["ns"], dep)
    assert err.value.status == 422 and "Limit must be set" in err.value.body


def test_audit_finds_each_seeded_misconfiguration_and_writes_nothing(testbed, seeded, tmp_path):
    ns, nodes, pools = seeded["ns"], seeded["nodes"], seeded["pools"]
    report = tmp_path / "report.md"
    marker = testbed.audit_marker()
    rc, output, recap, result = audit(testbed, tmp_path, seeded, cluster_audit_report_path=str(report))
    writes = testbed.audit_writes(marker)
    assert rc == 0, output[-3000:]
    assert recap["localhost"]["failed"] == 0

    # zero write calls: none with the module's user agent, none to the seeded objects, none in its own log
    assert [w for w in writes if w["user_agent"].startswith(USER_AGENT)] == []
    assert [w for w in writes if w["namespace"] == ns or w["name"] in nodes.values()] == []
    assert result["write_calls"] == 0
    assert all(c.startswith("GET ") for c in result["api_calls"])
    # a handful of LISTs: discovery, nodes, pods, 3 workload kinds in one namespace, daemonsets, rules, configmaps
    assert len(result["api_calls"]) <= 9, result["api_calls"]
    assert not any(c.split("/")[-1] in nodes.values() for c in result["api_calls"])

    dep = "Deployment %s/%%s" % ns
    # 1. mixed pools
    [f] = findings_for(result, "gpu-node-untainted", "Node %s" % nodes["gpu"])
    assert f["severity"] == "high" and "label nvidia.com/gpu.product=%s" % A100_80 in f["evidence"]["gpu_evidence"]
    [f] = findings_for(result, "cpu-pod-on-gpu-node", "Pod %s/web" % ns)
    assert f["evidence"]["node"] == nodes["gpu"]
    # 2. FP16 where AWQ fits: 70B on 4 A100-80GB fits one GPU in 4 bit (~35 GB of weights)
    [f] = findings_for(result, "fp16-where-quantized-fits", dep % "vllm-fp16")
    assert (f["evidence"]["gpus_per_replica_fp16"], f["evidence"]["gpus_per_replica_awq"]) == (4, 1)
    assert f["evidence"]["gpu"] == A100_80 and f["severity"] == "high"
    # 3. CPU HPA on a GPU Deployment
    [f] = findings_for(result, "cpu-hpa-on-gpu-deployment", dep % "vllm-hpa")
    assert f["evidence"]["hpa"] == "vllm-hpa" and f["evidence"]["metrics"] == ["cpu"]
    assert f["evidence"]["gpu_resources"] == {"nvidia.com/gpu": "1"}
    # 4. KV cache: 0.98 on an L4, and 131072 tokens that its KV cache cannot hold
    [f] = findings_for(result, "kv-gpu-memory-utilization-high", dep % "vllm-kv")
    assert f["evidence"]["gpu_memory_utilization"] == 0.98 and f["evidence"]["ceiling"] < 0.98
    [f] = findings_for(result, "kv-max-model-len-too-large", dep % "vllm-kv")
    assert f["evidence"]["max_model_len"] == 131072 and 0 < f["evidence"]["kv_cache_tokens"] < 131072
    # 5. no scale to zero on an off-peak pool; an idle training pool
    [f] = findings_for(result, "no-scale-to-zero", dep % "vllm-offpeak")
    assert f["evidence"]["pools"] == [pools["offpeak"]]
    assert (f["evidence"].get("minReplicaCount") if seeded["keda"] else f["evidence"].get("minReplicas")) == 1
    [f] = findings_for(result, "idle-gpu-pool", "NodePool %s" % pools["train"])
    assert f["evidence"]["idle_nodes"] == [nodes["train"]] and f["evidence"]["idle_gpus"] == {"nvidia.com/gpu": 8}
    # GPU container without any GPU resource
    [f] = findings_for(result, "gpu-container-without-gpu-resources", dep % "vllm-nogpu")
    assert f["evidence"]["vllm"] is True
    # GFD: MIG-INVALID, and GPUs counted but not advertised
    [f] = findings_for(result, "mig-invalid", "Node %s" % nodes["miginv"])
    assert f["evidence"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-INVALID"}
    [f] = findings_for(result, "gpus-not-advertised", "Node %s" % nodes["noadv"])
    assert f["evidence"]["nvidia.com/gpu.count"] == 2
    assert not findings_for(result, "gpus-not-advertised", "Node %s" % nodes["miginv"])  # count 0
    # alert rule on the seed's underscore metric name
    [f] = findings_for(result, "alert-rule-wrong-metric", "ConfigMap %s/seed-alerts" % ns)
    assert f["evidence"]["metrics"] == ["vllm_num_requests_waiting"]
    # vLLM with liveness but no startupProbe
    [f] = findings_for(result, "vllm-no-startup-probe", dep % "vllm-fp16")
    assert f["severity"] == "high" and f["evidence"]["liveness_probe"] is True
    # DCGM exporter: reported missing exactly when no DaemonSet runs one
    daemonsets = client.AppsV1Api(testbed.api).list_daemon_set_for_all_namespaces().items
    have_dcgm = any("dcgm-exporter" in (c.image or "") for d in daemonsets for c in d.spec.template.spec.containers)
    assert bool(findings_for(result, "dcgm-exporter-missing")) is not have_dcgm

    # the clean equivalent has no finding at all
    assert [f for f in result["findings"] if f["object"] == dep % "vllm-clean"] == []
    # counts add up, and the report names what it found
    assert sum(result["counts"].values()) == result["total"] == len(result["findings"])
    text = report.read_text()
    assert "`fp16-where-quantized-fits`" in text and "vllm-fp16" in text and nodes["miginv"] in text


def test_report_idempotent_check_mode_and_fail_on(testbed, seeded, tmp_path):
    stable = {"cluster_audit_skip_checks": CLUSTER_CHECKS}  # only the namespace's objects decide the report
    report = tmp_path / "r.md"
    rc, output, recap, first = audit(testbed, tmp_path, seeded, cluster_audit_report_path=str(report), **stable)
    assert rc == 0 and recap["localhost"]["changed"] >= 2, output[-2000:]  # report + JSON file
    assert first["changed"] is True and report.exists()
    rc, output, recap, second = audit(testbed, tmp_path, seeded, cluster_audit_report_path=str(report), name="again",
                                      **stable)
    assert rc == 0 and second["changed"] is False, output[-2000:]
    assert second["findings"] == first["findings"]

    # check mode reads the cluster but writes no report (and the playbook no JSON file)
    ghost = tmp_path / "ghost.md"
    rc, output, recap, third = audit(testbed, tmp_path, seeded, check=True, name="check",
                                     cluster_audit_report_path=str(ghost), **stable)
    assert rc == 0 and recap["localhost"]["changed"] >= 1, output[-2000:]  # predicted: the report would change
    assert not ghost.exists() and third is None

    # a CI gate: fail_on high fails the task, with the findings in the result
    marker = testbed.audit_marker()
    rc, output, recap, gated = audit(testbed, tmp_path, seeded, name="gate", cluster_audit_fail_on="high", **stable)
    assert rc != 0 and recap["localhost"]["failed"] == 1
    assert gated["failed"] is True and "fail_on=high" in gated["msg"]
    assert {f["severity"] for f in gated["failed_findings"]} <= {"critical", "high"}
    assert {f["id"] for f in gated["failed_findings"]} >= {"fp16-where-quantized-fits", "cpu-hpa-on-gpu-deployment"}
    assert len(gated["findings"]) >= len(gated["failed_findings"])
    assert [w for w in testbed.audit_writes(marker) if w["user_agent"].startswith(USER_AGENT)] == []
