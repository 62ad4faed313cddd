# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""module_utils/audit.py: one test per check, seeded misconfiguration vs clean equivalent.

Expected values come from shared/facts (GFD's -MIG-INVALID suffix, vLLM's colon metric names,
KEDA's minReplicaCount default of 0 and idleReplicaCount, the Llama-3 architectures and the
H100's 79.19 GiB), not from running the code.
"""
from __future__ import annotations

import copy

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import audit
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8sError

GIB = 1024 ** 3
A100_80 = "NVIDIA-A100-SXM4-80GB"
# facts/llm-serving.md D (Llama-3-70B: 80 layers, 64/8 heads, hidden 8192; Llama-3.1-8B: 32 layers,
# 32/8 heads, hidden 4096). intermediate sizes and vocab as in model_fit's documented example.
LLAMA3_70B = {"hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64, "num_key_value_heads": 8,
              "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "max_position_embeddings": 8192}
LLAMA31_8B = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 8,
              "intermediate_size": 14336, "vocab_size": 128256, "tie_word_embeddings": False,
              "torch_dtype": "bfloat16", "max_position_embeddings": 131072}
M70 = "meta-llama/Meta-Llama-3-70B-Instruct"
M8 = "meta-llama/Llama-3.1-8B-Instruct"


# --------------------------------------------------------------------------------------
# builders: plain dicts shaped like the API's JSON
# --------------------------------------------------------------------------------------

def node(name, product=None, count=None, alloc=None, taints=None, labels=None, annotations=None):
    lab = dict(labels or {})
    if product:
        lab["nvidia.com/gpu.product"] = product
    if count is not None:
        lab["nvidia.com/gpu.count"] = str(count)
    allocatable = {"cpu": "32", "memory": "256Gi", "pods": "110"}
    allocatable.update(alloc or {})
    return {"metadata": {"name": name, "labels": lab, "annotations": dict(annotations or {})},
            "spec": {"taints": list(taints or [])}, "status": {"allocatable": allocatable, "capacity": allocatable}}


def gpu_node(name, product=A100_80, gpus=1, tainted=True, **kw):
    taints = [{"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}] if tainted else []
    return node(name, product=product, count=gpus, alloc={"nvidia.com/gpu": str(gpus)}, taints=taints, **kw)


def cpu_node(name, **kw):
    return node(name, **kw)


def vllm(args=None, limits=None, requests=None, startup=True, liveness=True, image="vllm/vllm-openai:v0.19.0",
         env=None, name="vllm"):
    c = {"name": name, "image": image, "args": list(args or [])}
    res = {}
    if limits:
        res["limits"] = dict(limits)
    if requests:
        res["requests"] = dict(requests)
    if res:
        c["resources"] = res
    if startup:
        c["startupProbe"] = {"httpGet": {"path": "/health", "port": 8000}, "periodSeconds": 10, "failureThreshold": 60}
    if liveness:
        c["livenessProbe"] = {"httpGet": {"path": "/health", "port": 8000}, "timeoutSeconds": 5}
    if env:
        c["env"] = env
    return c


def plain(name="app", image="nginx:1.27", limits=None, requests=None, env=None):
    c = {"name": name, "image": image}
    res = {}
    if limits:
        res["limits"] = dict(limits)
    if requests:
        res["requests"] = dict(requests)
    if res:
        c["resources"] = res
    if env:
        c["env"] = env
    return c


def deployment(name, containers, ns="ai", replicas=1, node_selector=None):
    labels = {"app": name}
    spec = {"containers": containers}
    if node_selector:
        spec["nodeSelector"] = dict(node_selector)
    return {"metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels}, "spec": spec}}}


def pod(name, node_name, containers, ns="ai", owner=None, labels=None, phase="Running"):
    meta = {"name": name, "namespace": ns, "labels": dict(labels or {})}
    if owner:
        meta["ownerReferences"] = [{"kind": owner[0], "name": owner[1], "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": node_name, "containers": containers}, "status": {"phase": phase}}


def pods_for(dep, node_name, n=1):
    """Pods a Deployment's ReplicaSet made, on one node."""
    tmpl = dep["spec"]["template"]
    return [pod("%s-abc-%d" % (dep["metadata"]["name"], i), node_name, copy.deepcopy(tmpl["spec"]["containers"]),
                ns=dep["metadata"]["namespace"], owner=("ReplicaSet", dep["metadata"]["name"] + "-abc"),
                labels=tmpl["metadata"]["labels"]) for i in range(n)]


def hpa(name, target, metrics=None, ns="ai", min_replicas=None, keda_owner=None):
    spec = {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target}, "maxReplicas": 4}
    if metrics is not None:
        spec["metrics"] = metrics
    if min_replicas is not None:
        spec["minReplicas"] = min_replicas
    meta = {"name": name, "namespace": ns}
    if keda_owner:
        meta["ownerReferences"] = [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "name": keda_owner}]
    return {"metadata": meta, "spec": spec}


CPU_METRIC = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}}]
EXTERNAL_METRIC = [{"type": "External", "external": {
    "metric": {"name": "s0-prometheus"}, "target": {"type": "AverageValue", "averageValue": "5"}}}]
QUEUE_TRIGGER = {"type": "prometheus", "metadata": {"serverAddress": "http://prometheus:9090",
                                                    "query": "sum(vllm:num_requests_waiting)", "threshold": "5"}}


def scaledobject(name, target, ns="ai", minimum=None, idle=None, triggers=None):
    spec = {"scaleTargetRef": {"name": target}, "triggers": triggers or [QUEUE_TRIGGER]}
    if minimum is not None:
        spec["minReplicaCount"] = minimum
    if idle is not None:
        spec["idleReplicaCount"] = idle
    return {"metadata": {"name": name, "namespace": ns}, "spec": spec}


def dcgm_ds(ns="monitoring"):
    return {"metadata": {"name": "dcgm-exporter", "namespace": ns, "labels": {"app.kubernetes.io/name": "dcgm-exporter"}},
            "spec": {"template": {"spec": {"containers": [{"name": "e", "image": "nvcr.io/nvidia/k8s/dcgm-exporter:4.2"}]}}}}


def ds_pod(ds, node_name, ns="monitoring"):
    return pod("dcgm-%s" % node_name, node_name, [plain("e", "nvcr.io/nvidia/k8s/dcgm-exporter:4.2")], ns=ns,
               owner=("DaemonSet", ds))


GOOD_RULES = {"groups": [{"name": "gpu", "rules": [
    {"alert": "GPUTemperatureHigh", "expr": "DCGM_FI_DEV_GPU_TEMP > 85"},
    {"alert": "InferenceQueueBacklog", "expr": 'vllm:num_requests_waiting{model_name!=""} > 20'},
    {"alert": "KVCacheNearlyFull", "expr": "vllm:kv_cache_usage_perc > 0.95"}]}]}


def prometheusrule(groups, name="alerts", ns="monitoring"):
    return {"metadata": {"name": name, "namespace": ns}, "spec": groups}


def snapshot(**kw):
    data = {"nodes": [], "pods": [], "deployments": [], "hpas": [], "scaledobjects": [], "daemonsets": [],
            "prometheusrules": [], "configmaps": [], "api_groups": ["apps", "keda.sh", "monitoring.coreos.com"],
            "unreadable": {}, "pods_complete": True}
    data.update(kw)
    return data


def run(data, **kw):
    return audit.run_audit(data, **kw)


def by_id(findings, check):
    return [f for f in findings if f["id"] == check]


# --------------------------------------------------------------------------------------
# mixed pools
# --------------------------------------------------------------------------------------

def test_gpu_node_without_noschedule_taint_is_found():
    bad = gpu_node("gpu-a", tainted=False)
    prefer = gpu_node("gpu-b", tainted=False)
    prefer["spec"]["taints"] = [{"key": "gpu", "effect": "PreferNoSchedule"}]
    cordoned = gpu_node("gpu-c", tainted=False)
    cordoned["spec"]["taints"] = [{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}]
    found = by_id(run(snapshot(nodes=[bad, prefer, cordoned, gpu_node("gpu-ok"), cpu_node("cpu-0")])),
                  "gpu-node-untainted")
    assert sorted(f["evidence"]["node"] for f in found) == ["gpu-a", "gpu-b", "gpu-c"]
    assert all(f["severity"] == "high" for f in found)
    assert "capacity nvidia.com/gpu=1" in found[0]["evidence"]["gpu_evidence"]
    assert found[1]["evidence"]["taints"] == ["gpu=:PreferNoSchedule"]


def test_cpu_pod_on_gpu_node_is_found_and_gpu_daemonset_pods_are_not():
    web = pod("web-1", "gpu-a", [plain()], owner=("ReplicaSet", "web-5d"))
    gpu_pod = pod("llm-1", "gpu-a", [vllm(limits={"nvidia.com/gpu": "1"})])
    agent = pod("agent-x", "gpu-a", [plain()], owner=("DaemonSet", "agent"))
    on_cpu = pod("web-2", "cpu-0", [plain()])
    data = snapshot(nodes=[gpu_node("gpu-a"), cpu_node("cpu-0")], pods=[web, gpu_pod, agent, on_cpu])
    found = by_id(run(data), "cpu-pod-on-gpu-node")
    assert [(f["evidence"]["pod"], f["evidence"]["node"]) for f in found] == [("ai/web-1", "gpu-a")]
    assert found[0]["evidence"]["owner"] == "ReplicaSet/web-5d"
    # the namespaces option limits it to the audited namespaces
    assert by_id(run(data, namespaces=["other"]), "cpu-pod-on-gpu-node") == []


# --------------------------------------------------------------------------------------
# FP16 where a quantized variant fits
# --------------------------------------------------------------------------------------

def _served(args, gpus="4", model=M70, product=A100_80, cfg=None, extra_nodes=()):
    cfg = LLAMA3_70B if cfg is None else cfg
    dep = deployment("llm", [vllm(["--model", model] + args, limits={"nvidia.com/gpu": gpus})])
    nodes = [gpu_node("gpu-a", product=product, gpus=int(gpus))] + list(extra_nodes)
    return snapshot(nodes=nodes, deployments=[dep], pods=pods_for(dep, "gpu-a")), {model: cfg}


def test_fp16_70b_on_four_a100s_fits_one_gpu_as_awq():
    data, cfgs = _served(["--tensor-parallel-size", "4", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"])
    found = by_id(run(data, model_configs=cfgs), "fp16-where-quantized-fits")
    assert len(found) == 1
    ev = found[0]["evidence"]
    # 70.6e9 parameters x 2 bytes / 4 GPUs is about 33 GiB per GPU in 16 bit; 4 bit is about 35 GB for the
    # whole model, under 0.9 x 80 GB, so AWQ needs one GPU where FP16 was given four.
    assert ev["gpus_per_replica_fp16"] == 4 and ev["gpus_per_replica_awq"] == 1
    assert 30 < ev["weights_gib_per_gpu_fp16"] < 36
    assert 33 < ev["weights_gib_per_gpu_awq"] < 42
    assert ev["model"] == M70 and ev["gpu"] == A100_80
    assert found[0]["severity"] == "high"


@pytest.mark.parametrize("model,args,cfg", [
    (M70 + "-AWQ", [], LLAMA3_70B),                                    # quantized checkpoint by name
    (M70, ["--quantization", "fp8"], LLAMA3_70B),                      # runtime FP8
    (M70, [], dict(LLAMA3_70B, quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128})),
])
def test_quantized_serving_is_not_reported_as_fp16(model, args, cfg):
    data, cfgs = _served(["--tensor-parallel-size", "4", "--max-model-len", "8192",
                          "--gpu-memory-utilization", "0.9"] + args, model=model, cfg=cfg)
    findings = run(data, model_configs=cfgs)
    assert by_id(findings, "fp16-where-quantized-fits") == []
    assert by_id(findings, "fp16-unsized") == []


def test_fp16_without_a_model_config_asks_for_one():
    data, _cfgs = _served(["--tensor-parallel-size", "4", "--gpu-memory-utilization", "0.9"])
    found = by_id(run(data, model_configs={}), "fp16-unsized")
    assert [(f["severity"], f["evidence"]["model"]) for f in found] == [("low", M70)]
    data_q, _cfgs = _served(["--tensor-parallel-size", "4", "--gpu-memory-utilization", "0.9"], model=M70 + "-GPTQ")
    assert by_id(run(data_q), "fp16-unsized") == []


def test_model_config_found_by_cached_path_and_served_name():
    # roles/vllm_service serves a cached model from /models/org--name with --served-model-name
    data, _cfgs = _served(["--served-model-name", "llama70", "--tensor-parallel-size", "4",
                           "--gpu-memory-utilization", "0.9"], model="/models/meta-llama--Meta-Llama-3-70B-Instruct")
    assert by_id(run(data, model_configs={M70: LLAMA3_70B}), "fp16-where-quantized-fits")
    assert by_id(run(data, model_configs={"llama70": LLAMA3_70B}), "fp16-where-quantized-fits")


# --------------------------------------------------------------------------------------
# KV cache settings
# --------------------------------------------------------------------------------------

def test_gpu_memory_utilization_missing():
    data, cfgs = _served(["--tensor-parallel-size", "4", "--max-model-len", "8192"])
    found = by_id(run(data, model_configs=cfgs), "kv-gpu-memory-utilization-missing")
    assert [f["evidence"]["gpu_memory_utilization"] for f in found] == [None]
    data_ok, _cfgs = _served(["--tensor-parallel-size", "4", "--max-model-len", "8192", "--gpu-memory-utilization=0.9"])
    assert by_id(run(data_ok, model_configs=cfgs), "kv-gpu-memory-utilization-missing") == []


def test_gpu_memory_utilization_too_high_on_h100():
    # H100: 79.19 GiB (facts D); the CUDA context and 1 GiB headroom leave 0.97, capped at sizing's 0.95.
    args = ["--max-model-len", "8192"]
    data, cfgs = _served(args + ["--gpu-memory-utilization", "0.98"], gpus="1", model=M8, cfg=LLAMA31_8B,
                         product="NVIDIA-H100-80GB-HBM3")
    found = by_id(run(data, model_configs=cfgs), "kv-gpu-memory-utilization-high")
    assert len(found) == 1
    assert found[0]["evidence"]["gpu_memory_utilization"] == 0.98
    assert found[0]["evidence"]["ceiling"] == 0.95
    assert found[0]["evidence"]["usable_gib"] == 79.19
    data_ok, _cfgs = _served(args + ["--gpu-memory-utilization", "0.95"], gpus="1", model=M8, cfg=LLAMA31_8B,
                             product="NVIDIA-H100-80GB-HBM3")
    assert by_id(run(data_ok, model_configs=cfgs), "kv-gpu-memory-utilization-high") == []


def test_gpu_memory_utilization_too_low_unless_the_gpu_is_shared():
    low = deployment("llm", [vllm(["--model", M8, "--gpu-memory-utilization", "0.5"], limits={"nvidia.com/gpu": "1"})])
    shared = deployment("llm2", [vllm(["--model", M8, "--gpu-memory-utilization", "0.5"],
                                      limits={"nvidia.com/gpu.shared": "1"})])
    ok = deployment("llm3", [vllm(["--model", M8, "--gpu-memory-utilization", "0.9"], limits={"nvidia.com/gpu": "1"})])
    found = by_id(run(snapshot(deployments=[low, shared, ok])), "kv-gpu-memory-utilization-low")
    assert [(f["object"], f["evidence"]["gpu_memory_utilization"]) for f in found] == [("Deployment ai/llm", 0.5)]


def test_max_model_len_larger_than_the_kv_cache_holds():
    # Llama-3.1-8B on an L4: ~15 GiB of weights (facts D: 14.99) leave a few GiB for 128 KiB per token
    # (facts D: 131,072 B), far from one request of 131072 tokens.
    args = ["--gpu-memory-utilization", "0.9"]
    data, cfgs = _served(args + ["--max-model-len", "131072"], gpus="1", model=M8, cfg=LLAMA31_8B, product="NVIDIA-L4")
    found = by_id(run(data, model_configs=cfgs), "kv-max-model-len-too-large")
    assert len(found) == 1
    ev = found[0]["evidence"]
    assert ev["max_model_len"] == 131072
    assert 0 < ev["kv_cache_tokens"] < 131072
    # the token count is the pool divided by 131,072 bytes per token (16-token blocks)
    assert abs(ev["kv_cache_tokens"] - ev["kv_cache_gib_per_gpu"] * GIB / 131072) < 16 + 0.01 * GIB / 131072
    assert 0 < ev["recommended_max_model_len"] < 131072
    data_ok, _cfgs = _served(args + ["--max-model-len", "8192"], gpus="1", model=M8, cfg=LLAMA31_8B, product="NVIDIA-L4")
    assert by_id(run(data_ok, model_configs=cfgs), "kv-max-model-len-too-large") == []


def test_model_that_does_not_fit_its_gpu_is_critical():
    # 70B in 16 bit is ~131 GiB of weights: it cannot load on one 80 GB A100.
    data, cfgs = _served(["--max-model-len", "8192", "--gpu-memory-utilization", "0.9"], gpus="1")
    found = by_id(run(data, model_configs=cfgs), "model-does-not-fit")
    assert [f["severity"] for f in found] == ["critical"]
    assert found[0]["evidence"]["weights_gib_per_gpu"] > 100
    data_ok, _cfgs = _served(["--tensor-parallel-size", "4", "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"])
    assert by_id(run(data_ok, model_configs=cfgs), "model-does-not-fit") == []


def test_mig_slice_is_sized_from_the_resource_and_the_parent_gpu():
    # 8B in 16 bit (~15 GiB) cannot load on a 1g.10gb slice of an H100.
    dep = deployment("llm", [vllm(["--model", M8, "--max-model-len", "8192", "--gpu-memory-utilization", "0.9"],
                                  limits={"nvidia.com/mig-1g.10gb": "1"})])
    n = node("mig-0", product="NVIDIA-H100-80GB-HBM3", count=1, alloc={"nvidia.com/mig-1g.10gb": "7"},
             taints=[{"key": "w", "effect": "NoSchedule"}])
    found = by_id(run(snapshot(nodes=[n], deployments=[dep], pods=pods_for(dep, "mig-0")),
                      model_configs={M8: LLAMA31_8B}), "model-does-not-fit")
    assert len(found) == 1 and found[0]["evidence"]["gpu"] == "NVIDIA-H100-80GB-HBM3 1g.10gb"


# --------------------------------------------------------------------------------------
# autoscaling
# --------------------------------------------------------------------------------------

def test_cpu_hpa_on_gpu_deployment():
    gpu_dep = deployment("llm", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})])
    web = deployment("web", [plain()])
    data = snapshot(deployments=[gpu_dep, web], hpas=[hpa("llm", "llm", CPU_METRIC), hpa("web", "web", CPU_METRIC)])
    found = by_id(run(data), "cpu-hpa-on-gpu-deployment")
    assert [(f["evidence"]["hpa"], f["evidence"]["metrics"]) for f in found] == [("llm", ["cpu"])]
    assert found[0]["evidence"]["gpu_resources"] == {"nvidia.com/gpu": "1"}
    # an HPA without metrics defaults to 80 % CPU
    assert by_id(run(snapshot(deployments=[gpu_dep], hpas=[hpa("llm", "llm")])), "cpu-hpa-on-gpu-deployment")
    # a KEDA cpu trigger is the same mistake
    so_cpu = scaledobject("llm", "llm", triggers=[{"type": "cpu", "metadata": {"value": "60"}}])
    assert [f["evidence"]["scaledobject"] for f in by_id(run(snapshot(deployments=[gpu_dep], scaledobjects=[so_cpu])),
                                                         "cpu-hpa-on-gpu-deployment")] == ["llm"]
    clean = snapshot(deployments=[gpu_dep], hpas=[hpa("llm", "llm", EXTERNAL_METRIC)])
    assert by_id(run(clean), "cpu-hpa-on-gpu-deployment") == []


def test_gpu_deployment_without_autoscaling():
    dep = deployment("llm", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})], replicas=2)
    found = by_id(run(snapshot(deployments=[dep])), "gpu-deployment-no-autoscaling")
    assert [(f["evidence"]["deployment"], f["evidence"]["replicas"]) for f in found] == [("ai/llm", 2)]
    assert by_id(run(snapshot(deployments=[dep], scaledobjects=[scaledobject("llm", "llm")])),
                 "gpu-deployment-no-autoscaling") == []
    parked = deployment("llm", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})], replicas=0)
    assert by_id(run(snapshot(deployments=[parked])), "gpu-deployment-no-autoscaling") == []


def test_two_autoscalers_on_one_deployment():
    dep = deployment("llm", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})])
    data = snapshot(deployments=[dep], hpas=[hpa("extra", "llm", EXTERNAL_METRIC)], scaledobjects=[scaledobject("llm", "llm")])
    found = by_id(run(data), "autoscaler-conflict")
    assert len(found) == 1
    assert found[0]["evidence"]["hpas"] == ["extra"] and found[0]["evidence"]["scaledobjects"] == ["llm"]
    assert any("extra" in p for p in found[0]["evidence"]["problems"])
    # the HPA KEDA made for its own ScaledObject is not a second autoscaler
    ours = snapshot(deployments=[dep], hpas=[hpa("keda-hpa-llm", "llm", EXTERNAL_METRIC, keda_owner="llm")],
                    scaledobjects=[scaledobject("llm", "llm")])
    assert by_id(run(ours), "autoscaler-conflict") == []


# --------------------------------------------------------------------------------------
# scale to zero
# --------------------------------------------------------------------------------------

def _offpeak(so=None, hpas=(), pool="batch"):
    dep = deployment("llm", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})])
    n = gpu_node("gpu-b", labels={"cloud.google.com/gke-nodepool": pool})
    return snapshot(nodes=[n], deployments=[dep], pods=pods_for(dep, "gpu-b"),
                    scaledobjects=[so] if so else [], hpas=list(hpas))


def test_scaledobject_with_min_one_on_offpeak_pool():
    found = by_id(run(_offpeak(scaledobject("llm", "llm", minimum=1)), offpeak_pools=["batch"]), "no-scale-to-zero")
    assert [(f["evidence"]["scaledobject"], f["evidence"]["minReplicaCount"], f["evidence"]["pools"])
            for f in found] == [("llm", 1, ["batch"])]
    # KEDA's default minReplicaCount is 0; idleReplicaCount 0 scales to zero below min (facts C)
    for clean in (scaledobject("llm", "llm"), scaledobject("llm", "llm", minimum=0),
                  scaledobject("llm", "llm", minimum=1, idle=0)):
        assert by_id(run(_offpeak(clean), offpeak_pools=["batch"]), "no-scale-to-zero") == []
    # not an off-peak pool: min 1 keeps inference warm, as the seed wants
    assert by_id(run(_offpeak(scaledobject("llm", "llm", minimum=1))), "no-scale-to-zero") == []


def test_hpa_on_offpeak_pool_cannot_reach_zero():
    found = by_id(run(_offpeak(hpas=[hpa("llm", "llm", EXTERNAL_METRIC, min_replicas=1)]), offpeak_pools=["batch"]),
                  "no-scale-to-zero")
    assert [(f["evidence"]["hpa"], f["evidence"]["minReplicas"]) for f in found] == [("llm", 1)]


def test_pool_from_pool_label_or_node_pool_annotation():
    n1 = gpu_node("g1", labels={"my/pool": "nightly"})
    n2 = gpu_node("g2", annotations={"gpuops.llm/node-pool.managed": '{"pool": "llm-training", "labels": [], "taints": []}'})
    assert audit.pool_of(n1, "my/pool") == "nightly"
    assert audit.pool_of(n1) is None
    assert audit.pool_of(n2) == "llm-training"


def test_idle_training_pool():
    train = gpu_node("train-0", gpus=8, labels={"workload-class": "training", "cloud.google.com/gke-nodepool": "train"})
    agent = pod("dcgm-train-0", "train-0", [plain()], ns="monitoring", owner=("DaemonSet", "dcgm-exporter"))
    found = by_id(run(snapshot(nodes=[train], pods=[agent])), "idle-gpu-pool")
    assert [(f["evidence"]["pool"], f["evidence"]["idle_nodes"], f["evidence"]["idle_gpus"]) for f in found] == \
        [("train", ["train-0"], {"nvidia.com/gpu": 8})]
    job = pod("finetune-0", "train-0", [plain(limits={"nvidia.com/gpu": "8"})], ns="ml", owner=("Job", "finetune"))
    assert by_id(run(snapshot(nodes=[train], pods=[agent, job])), "idle-gpu-pool") == []
    # with the pods of some namespaces only, idleness cannot be told
    assert by_id(run(snapshot(nodes=[train], pods=[], pods_complete=False)), "idle-gpu-pool") == []
    # an inference pool that is not off-peak is expected to stay warm
    inf = gpu_node("inf-0", labels={"cloud.google.com/gke-nodepool": "inf"})
    assert by_id(run(snapshot(nodes=[inf])), "idle-gpu-pool") == []
    assert by_id(run(snapshot(nodes=[inf]), offpeak_pools=["inf"]), "idle-gpu-pool")


def cluster_autoscaler(*node_groups, replicas=1, image="registry.k8s.io/autoscaling/cluster-autoscaler:v1.36.1",
                       provider="aws", discovery=()):
    args = ["--cloud-provider=%s" % provider] + ["--nodes=%s" % g for g in node_groups]
    args += ["--node-group-auto-discovery=%s" % d for d in discovery]
    return deployment("cluster-autoscaler", [{"name": "ca", "image": image, "command": ["./cluster-autoscaler"],
                                              "args": args}], ns="kube-system", replicas=replicas)


def test_idle_training_pool_that_a_cluster_autoscaler_takes_to_zero():
    train = gpu_node("train-0", gpus=8, labels={"workload-class": "training", "cloud.google.com/gke-nodepool": "train"})

    def idle(*deployments, node=None):
        return by_id(run(snapshot(nodes=[node or train], deployments=list(deployments))), "idle-gpu-pool")

    # --nodes=0:4:train: the autoscaler removes the idle node after scale-down-unneeded-time
    assert idle(cluster_autoscaler("1:10:inf", "0:4:train")) == []
    # the flag may also come as two arguments, and the image from a mirror with a digest
    two_args = cluster_autoscaler(image="mirror.local:5000/ca/cluster-autoscaler@sha256:" + "0" * 64)
    two_args["spec"]["template"]["spec"]["containers"][0]["args"] += ["--nodes", "0:4:train"]
    assert idle(two_args) == []
    # a floor above zero, another pool's group, a stopped autoscaler or another image keep the finding
    [floor] = idle(cluster_autoscaler("1:4:train"))
    assert (floor["evidence"]["min_nodes"], floor["evidence"]["cluster_autoscaler"]) == (1, "kube-system/cluster-autoscaler")
    assert idle(cluster_autoscaler("0:4:inf")) and idle(cluster_autoscaler("0:4:train", replicas=0))
    assert idle(cluster_autoscaler("0:4:train", image="example.com/cluster-autoscaler-exporter:1"))
    # scale-down-disabled on the idle node: the autoscaler never removes it
    kept = gpu_node("train-0", gpus=8, labels=train["metadata"]["labels"],
                    annotations={audit.SCALE_DOWN_DISABLED: "true"})
    [pinned] = idle(cluster_autoscaler("0:4:train"), node=kept)
    assert pinned["evidence"]["scale_down_disabled"] == ["train-0"]


def machine_deployment(name, ns="capi", cluster="prod", sizes=("0", "4")):
    annotations = {} if sizes is None else {audit.CAPI_MIN_SIZE: sizes[0], audit.CAPI_MAX_SIZE: sizes[1]}
    return {"apiVersion": "cluster.x-k8s.io/v1beta1", "kind": "MachineDeployment",
            "metadata": {"name": name, "namespace": ns, "annotations": annotations}, "spec": {"clusterName": cluster}}


def test_idle_training_pool_under_a_clusterapi_autoscaler():
    """clusterapi ignores --nodes (issue 12): its node groups are the MachineDeployments it discovers
    that carry both size annotations (cloudprovider/clusterapi README, cluster-autoscaler-1.36.1)."""
    train = gpu_node("train-0", gpus=8, labels={"workload-class": "training", "cloud.google.com/gke-nodepool": "train"})

    def idle(ca, *mds):
        return by_id(run(snapshot(nodes=[train], deployments=[ca], machinedeployments=list(mds))), "idle-gpu-pool")

    capi = cluster_autoscaler(provider="clusterapi", discovery=["clusterapi:namespace=capi,clusterName=prod"])
    assert idle(capi, machine_deployment("train")) == []
    # --nodes=0:4:train is no node group to clusterapi
    assert idle(cluster_autoscaler("0:4:train", provider="clusterapi"))
    # no auto-discovery spec: every annotated MachineDeployment is a group
    assert idle(cluster_autoscaler(provider="clusterapi"), machine_deployment("train")) == []
    # another namespace or cluster, a missing annotation or a floor above zero keep the finding
    assert idle(capi, machine_deployment("train", ns="other"))
    assert idle(capi, machine_deployment("train", cluster="staging"))
    assert idle(capi, machine_deployment("train", sizes=None))
    [floor] = idle(capi, machine_deployment("train", sizes=("1", "4")))
    assert floor["evidence"]["min_nodes"] == 1


# --------------------------------------------------------------------------------------
# GPU resources in pod specs
# --------------------------------------------------------------------------------------

def test_gpu_requests_without_limits():
    bad = deployment("llm", [vllm(["--model", M8], requests={"nvidia.com/gpu": "1"})])
    good = deployment("llm2", [vllm(["--model", M8], requests={"nvidia.com/gpu": "1"}, limits={"nvidia.com/gpu": "1"})])
    found = by_id(run(snapshot(deployments=[bad, good])), "gpu-requests-without-limits")
    assert [(f["object"], f["evidence"]["requests"]) for f in found] == [("Deployment ai/llm", {"nvidia.com/gpu": "1"})]


def test_gpu_container_without_any_gpu_resource():
    no_gpu = deployment("llm", [vllm(["--model", M8])])
    sneaky = pod("cuda-job", "gpu-a", [plain("cuda", "nvidia/cuda:12.4", env=[{"name": "NVIDIA_VISIBLE_DEVICES",
                                                                              "value": "all"}])])
    agent = pod("plugin-x", "gpu-a", [plain("p", "nvcr.io/nvidia/k8s-device-plugin:v0.17",
                                            env=[{"name": "NVIDIA_VISIBLE_DEVICES", "value": "all"}])],
                owner=("DaemonSet", "nvidia-device-plugin"))
    ok = deployment("llm2", [vllm(["--model", M8], limits={"nvidia.com/mig-3g.40gb": "1"})])
    found = by_id(run(snapshot(nodes=[gpu_node("gpu-a")], deployments=[no_gpu, ok], pods=[sneaky, agent])),
                  "gpu-container-without-gpu-resources")
    assert sorted((f["object"], f["evidence"]["vllm"]) for f in found) == [
        ("Deployment ai/llm", True), ("Pod ai/cuda-job", False)]


# --------------------------------------------------------------------------------------
# GFD and the device plugin
# --------------------------------------------------------------------------------------

def test_mig_invalid_label():
    # GFD's single strategy: invalid layouts give product ...-MIG-INVALID and count 0 (facts C1)
    bad = node("mig-0", product="NVIDIA-A100-SXM4-40GB-MIG-INVALID", count=0,
               labels={"nvidia.com/mig.strategy": "single"}, taints=[{"key": "w", "effect": "NoSchedule"}])
    good = node("mig-1", product="NVIDIA-A100-SXM4-40GB-MIG-1g.5gb", count=7, alloc={"nvidia.com/gpu": "7"},
                labels={"nvidia.com/mig.strategy": "single"}, taints=[{"key": "w", "effect": "NoSchedule"}])
    found = by_id(run(snapshot(nodes=[bad, good])), "mig-invalid")
    assert len(found) == 1
    ev = found[0]["evidence"]
    assert ev["node"] == "mig-0"
    assert ev["labels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB-MIG-INVALID"}
    assert ev["nvidia.com/gpu.count"] == "0" and ev["nvidia.com/mig.strategy"] == "single"


def test_gpus_counted_by_gfd_but_not_advertised():
    silent = node("gpu-x", product=A100_80, count=2, taints=[{"key": "w", "effect": "NoSchedule"}])
    zero = node("gpu-y", product=A100_80, count=2, alloc={"nvidia.com/gpu": "0"}, taints=[{"key": "w", "effect": "NoSchedule"}])
    mixed = node("mig-z", product="NVIDIA-H100-80GB-HBM3", count=1, alloc={"nvidia.com/mig-1g.10gb": "7"},
                 taints=[{"key": "w", "effect": "NoSchedule"}])
    found = by_id(run(snapshot(nodes=[silent, zero, mixed, gpu_node("gpu-ok", gpus=2), cpu_node("cpu-0")])),
                  "gpus-not-advertised")
    assert sorted((f["evidence"]["node"], f["evidence"]["nvidia.com/gpu.count"]) for f in found) == [
        ("gpu-x", 2), ("gpu-y", 2)]
    assert [f["evidence"]["allocatable"] for f in found if f["evidence"]["node"] == "gpu-y"] == [{"nvidia.com/gpu": "0"}]


# --------------------------------------------------------------------------------------
# observability
# --------------------------------------------------------------------------------------

def test_dcgm_exporter_missing():
    nodes = [gpu_node("gpu-a")]
    found = by_id(run(snapshot(nodes=nodes)), "dcgm-exporter-missing")
    assert [f["evidence"]["gpu_nodes"] for f in found] == [1]
    clean = snapshot(nodes=nodes, daemonsets=[dcgm_ds()], pods=[ds_pod("dcgm-exporter", "gpu-a")])
    findings = run(clean)
    assert by_id(findings, "dcgm-exporter-missing") == [] and by_id(findings, "dcgm-exporter-not-on-gpu-nodes") == []
    # no GPU nodes: nothing to export
    assert by_id(run(snapshot(nodes=[cpu_node("c")])), "dcgm-exporter-missing") == []


def test_dcgm_exporter_not_on_every_gpu_node():
    data = snapshot(nodes=[gpu_node("gpu-a"), gpu_node("gpu-b")], daemonsets=[dcgm_ds()],
                    pods=[ds_pod("dcgm-exporter", "gpu-a")])
    found = by_id(run(data), "dcgm-exporter-not-on-gpu-nodes")
    assert [f["evidence"]["gpu_nodes_without_exporter"] for f in found] == [["gpu-b"]]


def test_alert_rules_missing():
    dep = deployment("llm", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})])
    found = by_id(run(snapshot(nodes=[gpu_node("gpu-a")], deployments=[dep])), "alert-rules-missing")
    assert [f["evidence"]["missing"] for f in found] == [["GPU (DCGM_FI_*)", "vLLM (vllm:*)"]]
    clean = snapshot(nodes=[gpu_node("gpu-a")], deployments=[dep], prometheusrules=[prometheusrule(GOOD_RULES)])
    assert by_id(run(clean), "alert-rules-missing") == []
    # roles/observability's fallback: the same rule file in a ConfigMap
    import yaml
    cm = {"metadata": {"name": "gpuops-llm-alerts", "namespace": "monitoring"},
          "data": {"gpuops-llm-alerts.rules.yml": yaml.safe_dump(GOOD_RULES)}}
    assert by_id(run(snapshot(nodes=[gpu_node("gpu-a")], deployments=[dep], configmaps=[cm])), "alert-rules-missing") == []
    # where rules could not be read, their absence is not a finding
    assert by_id(run(snapshot(nodes=[gpu_node("gpu-a")], unreadable={"configmaps": "403"})), "alert-rules-missing") == []


def test_alert_rule_on_metric_names_vllm_does_not_export():
    import yaml
    seed_rules = {"groups": [{"name": "seed", "rules": [
        {"alert": "QueueBacklog", "expr": "vllm_num_requests_waiting > 20"},
        {"alert": "KVFull", "expr": "vllm:gpu_cache_usage_perc > 0.95"}]}]}
    cm = {"metadata": {"name": "seed-alerts", "namespace": "monitoring"}, "data": {"alerts.yml": yaml.safe_dump(seed_rules)}}
    found = by_id(run(snapshot(configmaps=[cm])), "alert-rule-wrong-metric")
    assert sorted((f["object"], f["evidence"]["rule"], tuple(f["evidence"]["metrics"])) for f in found) == [
        ("ConfigMap monitoring/seed-alerts", "KVFull", ("vllm:gpu_cache_usage_perc",)),
        ("ConfigMap monitoring/seed-alerts", "QueueBacklog", ("vllm_num_requests_waiting",))]
    assert found[0]["evidence"]["use_instead"] in ({"vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc"},
                                                   {"vllm_num_requests_waiting": "vllm:num_requests_waiting"})
    assert by_id(run(snapshot(prometheusrules=[prometheusrule(GOOD_RULES)])), "alert-rule-wrong-metric") == []


# --------------------------------------------------------------------------------------
# probes
# --------------------------------------------------------------------------------------

def test_vllm_without_startup_probe():
    with_liveness = deployment("a", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"}, startup=False)])
    no_probes = deployment("b", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"}, startup=False, liveness=False)])
    good = deployment("c", [vllm(["--model", M8], limits={"nvidia.com/gpu": "1"})])
    web = deployment("d", [plain()])
    found = by_id(run(snapshot(deployments=[with_liveness, no_probes, good, web])), "vllm-no-startup-probe")
    assert sorted((f["object"], f["severity"], f["evidence"]["liveness_probe"]) for f in found) == [
        ("Deployment ai/a", "high", True), ("Deployment ai/b", "medium", False)]


# --------------------------------------------------------------------------------------
# parsing, reading, reporting, options
# --------------------------------------------------------------------------------------

def test_parse_vllm_args_forms():
    shell = {"name": "x", "image": "python:3.11", "command": ["sh", "-c"],
             "args": ["exec vllm serve $(MODEL) --max_model_len=4096 --tensor-parallel-size 2 --enforce-eager"],
             "env": [{"name": "MODEL", "value": M8}]}
    assert audit.is_vllm_container(shell)
    p = audit.parse_vllm_args(shell)
    assert p["model"] == M8 and p["max_model_len"] == 4096 and p["tensor_parallel_size"] == 2
    assert p["flags"]["--enforce-eager"] is True
    module = {"image": "myreg/llm:1", "command": ["python3", "-m", "vllm.entrypoints.openai.api_server"],
              "args": ["--model", M70, "-tp", "8"]}
    assert audit.is_vllm_container(module)
    parsed = audit.parse_vllm_args(module)
    assert parsed["tensor_parallel_size"] == 8 and parsed["model"] == M70   # no `serve`: python3 is not the model
    assert not audit.is_vllm_container({"image": "nginx:1.27"})
    assert audit.vllm_version_of("vllm/vllm-openai:v0.10.1") == "0.10.1"


class FakeAdapter:
    """The K8s adapter's request() over canned collections; records what was asked."""

    def __init__(self, collections, forbidden=(), groups=("apps", "keda.sh")):
        self.collections = collections
        self.forbidden = set(forbidden)
        self.groups = groups
        self.calls = []

    def request(self, method, path, body=None, query=None, kind=None, verb=None, namespace=None, **kw):
        self.calls.append((method, path))
        if path == "/apis":
            return {"groups": [{"name": g} for g in self.groups]}
        if path in self.forbidden:
            raise K8sError("forbidden", status=403)
        return {"items": self.collections.get(path, [])}


def test_read_snapshot_lists_collections_only():
    adapter = FakeAdapter({"/api/v1/nodes": [gpu_node("g")], "/apis/apps/v1/namespaces/ai/deployments": [
        deployment("llm", [vllm()])]}, forbidden={"/api/v1/configmaps"})
    data = audit.read_snapshot(adapter, namespaces=["ai", "batch"])
    assert all(call[0] == "GET" for call in adapter.calls)
    paths = [call[1] for call in adapter.calls]
    # workload kinds per namespace, infrastructure cluster-wide, PrometheusRules not served -> not read
    assert "/apis/apps/v1/namespaces/batch/deployments" in paths and "/apis/apps/v1/deployments" not in paths
    assert "/api/v1/pods" in paths and "/apis/apps/v1/daemonsets" in paths
    assert not any("prometheusrules" in p for p in paths)
    assert len(paths) == 1 + 1 + 1 + 2 * 3 + 1 + 1  # /apis, nodes, pods, 3 kinds x 2 ns, daemonsets, configmaps
    assert [d["metadata"]["name"] for d in data["deployments"]] == ["llm"]
    assert list(data["unreadable"]) == ["configmaps"]


def test_read_snapshot_falls_back_to_namespaced_pods():
    adapter = FakeAdapter({"/api/v1/namespaces/ai/pods": [pod("p", "n", [plain()])]}, forbidden={"/api/v1/pods"})
    data = audit.read_snapshot(adapter, namespaces=["ai"])
    assert [p["metadata"]["name"] for p in data["pods"]] == ["p"]
    assert data["pods_complete"] is False and "pods" not in data["unreadable"]


def test_report_is_deterministic_and_fail_on_threshold():
    data, cfgs = _served(["--tensor-parallel-size", "4"], extra_nodes=[gpu_node("gpu-u", tainted=False)])
    findings = run(data, model_configs=cfgs)
    counts = audit.count_by_severity(findings)
    assert sum(counts.values()) == len(findings)
    first = audit.render_report(findings, counts, scope=["ai"])
    assert first == audit.render_report(run(copy.deepcopy(data), model_configs=cfgs), counts, scope=["ai"])
    assert "`gpu-node-untainted`" in first and "namespace ai" in first
    assert [f["severity"] for f in findings] == sorted((f["severity"] for f in findings), key=audit.SEVERITIES.index)
    high = audit.at_or_above(findings, "high")
    assert high and all(f["severity"] in ("critical", "high") for f in high)
    assert audit.at_or_above(findings, "never") == []
    assert "No findings." in audit.render_report([], audit.count_by_severity([]))
    assert by_id(run(data, model_configs=cfgs, skip_checks=["gpu-node-untainted"]), "gpu-node-untainted") == []


@pytest.mark.parametrize("kwargs,field,needle", [
    ({"fail_on": "severe"}, "fail_on", "'severe'"),
    ({"skip_checks": ["no-such-check"]}, "skip_checks", "gpu-node-untainted"),
    ({"namespaces": ["Bad_NS"]}, "namespaces", "'Bad_NS'"),
    ({"model_configs": {"m": {"hidden_size": 1}}}, "model_configs", "model_configs[m]"),
    ({"offpeak_pools": [""]}, "offpeak_pools", "offpeak_pools"),
])
def test_validate_options_names_field_and_value(kwargs, field, needle):
    with pytest.raises(audit.AuditError) as err:
        audit.validate_options(**kwargs)
    assert err.value.field == field and needle in str(err.value)
