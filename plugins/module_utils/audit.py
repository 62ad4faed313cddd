# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster audit: pure checks over plain dicts read from the API server.

Input is a *snapshot*: a dict of lists of API objects (nodes, pods, deployments, hpas,
scaledobjects, daemonsets, prometheusrules, configmaps, Cluster API machinedeployments) plus the
API groups the server serves. Output is a list of findings::

    {"id": check id, "severity": critical|high|medium|low|info, "title": one line,
     "object": "Kind namespace/name", "evidence": {names and numbers}, "fix": what to do}

Nothing here does I/O or needs Ansible; ``read_snapshot`` takes an adapter with the ``K8s``
interface (``request``) and only sends GETs of collections, so it runs against a fake too.

The checks cover the seed's "5 most expensive mistakes" (mixed pools, no quantization, CPU
HPAs, KV-cache settings, no scale-to-zero) and the pain points in shared/facts:
MIG-INVALID labels, unadvertised GPUs, missing DCGM exporter or alerts, vLLM probes.
"""
from __future__ import annotations

import json
import re
import shlex

from ansible_collections.gpuops.llm.plugins.module_utils.autoscaling import (
    SCALEDOBJECT_KIND,
    check_hpa_conflicts,
    gpu_requests,
    hpa_resource_metrics,
)
from ansible_collections.gpuops.llm.plugins.module_utils.drain import gpu_resources_of, is_daemonset_pod, is_finished
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    K8sError,
    resource_path,
    selector_matches,
)
from ansible_collections.gpuops.llm.plugins.module_utils.node_pool import MANAGED_ANNOTATION, gpu_evidence
from ansible_collections.gpuops.llm.plugins.module_utils.sizing import (
    CUDA_CONTEXT_GIB,
    DEFAULT_VLLM_VERSION,
    MAX_RECOMMENDED_GPU_MEMORY_UTILIZATION,
    RECOMMENDED_HEADROOM_GIB,
    SizingError,
    estimate,
    parse_model_config,
    resolve_gpu,
)
from ansible_collections.gpuops.llm.plugins.module_utils import vllm_args

try:  # PyYAML ships with ansible-core; without it rule files are scanned as text.
    import yaml as _yaml
except ImportError:  # pragma: no cover
    _yaml = None

SEVERITIES = ("critical", "high", "medium", "low", "info")
FAIL_ON_CHOICES = SEVERITIES + ("never",)

CHECKS = {
    "gpu-node-untainted": "GPU node without a NoSchedule taint (mixed CPU/GPU pool)",
    "cpu-pod-on-gpu-node": "Pod without GPUs running on a GPU node",
    "fp16-where-quantized-fits": "Model served in 16-bit where a 4-bit AWQ variant fits",
    "fp16-unsized": "Model served in 16-bit, no model config to size a quantized variant",
    "cpu-hpa-on-gpu-deployment": "CPU/memory autoscaling on a GPU Deployment",
    "autoscaler-conflict": "More than one autoscaler on one Deployment",
    "gpu-deployment-no-autoscaling": "GPU Deployment without autoscaling",
    "kv-gpu-memory-utilization-missing": "vLLM without --gpu-memory-utilization",
    "kv-gpu-memory-utilization-low": "vLLM --gpu-memory-utilization too low (undersized KV cache)",
    "kv-gpu-memory-utilization-high": "vLLM --gpu-memory-utilization too high (OOM risk)",
    "kv-max-model-len-too-large": "vLLM --max-model-len larger than the KV cache holds",
    "model-does-not-fit": "Model weights do not fit the GPU they are served on",
    "no-scale-to-zero": "Off-peak GPU Deployment cannot scale to zero",
    "idle-gpu-pool": "Off-peak/training pool keeps GPU nodes with no workload",
    "gpu-requests-without-limits": "GPU requested without a GPU limit",
    "gpu-container-without-gpu-resources": "GPU container without any nvidia.com resource",
    "mig-invalid": "GPU Feature Discovery reports an invalid MIG layout",
    "gpus-not-advertised": "Node has GPUs (GFD) but advertises no GPU resources",
    "dcgm-exporter-missing": "No DCGM exporter DaemonSet",
    "dcgm-exporter-not-on-gpu-nodes": "DCGM exporter not running on some GPU nodes",
    "alert-rules-missing": "No alert rules for GPUs or vLLM",
    "alert-rule-wrong-metric": "Alert rule uses a metric name that does not exist",
    "vllm-no-startup-probe": "vLLM container without a startupProbe",
}

GPU_RESOURCE = "nvidia.com/gpu"
SHARED_RESOURCE = "nvidia.com/gpu.shared"
MIG_PREFIX = "nvidia.com/mig-"
PRODUCT_LABEL = "nvidia.com/gpu.product"
COUNT_LABEL = "nvidia.com/gpu.count"
MIG_STRATEGY_LABEL = "nvidia.com/mig.strategy"
# GFD's suffix for an invalid layout under the single strategy (facts/gpu-automation-anchors C1).
MIG_INVALID_SUFFIX = "-MIG-INVALID"
# The seed's and roles/node_pools' convention for what a pool is for.
WORKLOAD_CLASS_LABEL = "workload-class"
TRAINING_CLASS = "training"
# Node labels that name a node's pool on managed clusters: GKE, EKS managed node groups, AKS,
# Karpenter. UNCONFIRMED in shared/facts (from the providers' docs); pool_label overrides them.
AUTO_POOL_LABELS = ("cloud.google.com/gke-nodepool", "eks.amazonaws.com/nodegroup",
                    "kubernetes.azure.com/agentpool", "karpenter.sh/nodepool")

_SYSTEM_TAINT_PREFIXES = ("node.kubernetes.io/", "node.cloudprovider.kubernetes.io/")

# Cluster Autoscaler: the node annotation that keeps a node (roles/cluster_autoscaler sets it on
# always-on inference nodes) and the flag that sizes a node group, --nodes=MIN:MAX:NAME.
SCALE_DOWN_DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"
_CA_NODES = re.compile(r"^(\d+):(\d+):(.+)$")
# The clusterapi provider ignores --nodes: a MachineDeployment is a node group when it carries both
# size annotations and matches a --node-group-auto-discovery=clusterapi:key=value,... spec
# (cloudprovider/clusterapi README "Enabling Autoscaling", cluster-autoscaler-1.36.1).
CAPI_MIN_SIZE = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
CAPI_MAX_SIZE = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"

# vLLM's default --gpu-memory-utilization was 0.9 and is 0.92 in current CacheConfig (facts B).
# Below 0.8 a dedicated GPU or MIG slice leaves a fifth of its memory out of the KV cache.
LOW_GPU_MEMORY_UTILIZATION = 0.8
DEFAULT_GPU_MEMORY_UTILIZATION = 0.9
# The kubelet's default probe timeout; too short for a saturated vLLM (facts E.2).
DEFAULT_PROBE_TIMEOUT = 1

# Metric names that match nothing on a Prometheus scraping current vLLM (facts B): the
# underscore spelling, and the KV-cache gauge removed in v0.12.
WRONG_METRICS = {
    "vllm_num_requests_waiting": "vllm:num_requests_waiting",
    "vllm_num_requests_running": "vllm:num_requests_running",
    "vllm_gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm_kv_cache_usage_perc": "vllm:kv_cache_usage_perc",
    "vllm:gpu_cache_usage_perc": "vllm:kv_cache_usage_perc",
}
_WRONG_METRIC_RE = re.compile(r"(?<![A-Za-z0-9_:])(%s)(?![A-Za-z0-9_:])"
                              % "|".join(re.escape(m) for m in sorted(WRONG_METRICS, key=len, reverse=True)))
_DCGM_RE = re.compile(r"\bDCGM_FI_[A-Z0-9_]+")
_VLLM_RE = re.compile(r"\bvllm:[a-z0-9_]+")

# Names of checkpoints that are already quantized (AWQ, GPTQ, FP8, INT4/8 and friends).
_QUANTIZED_NAME = re.compile(r"(?i)(^|[-_./])(awq|gptq|fp8|int4|int8|w4a16|w8a8|w8a16|w4a8|bnb|4bit|8bit|"
                             r"gguf|nvfp4|mxfp4|exl2|marlin)([-_./]|$)")
# --quantization values and the sizing method they mean.
_QUANT_FLAG = {"awq": "awq", "awq_marlin": "awq", "gptq": "gptq", "gptq_marlin": "gptq",
               "gptq_marlin_24": "gptq", "fp8": "fp8", "fbgemm_fp8": "fp8", "compressed-tensors": None,
               "compressed_tensors": None, "bitsandbytes": "unsupported", "gguf": "unsupported",
               "modelopt": "unsupported", "mxfp4": "unsupported"}
_IMAGE_VERSION = re.compile(r":v?(\d+\.\d+(?:\.\d+)?)")
_VLLM_IMAGE = re.compile(r"(^|/)[^/:]*vllm[^/:]*(:|@|$)")
_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_ENV_REF = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


class AuditError(ValueError):
    """Bad module input; ``field`` names the option at fault."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------

def _meta(obj):
    return (obj or {}).get("metadata") or {}


def _name(obj):
    return _meta(obj).get("name") or ""


def _ns(obj):
    return _meta(obj).get("namespace") or ""


def _ref(kind, obj):
    return "%s %s/%s" % (kind, _ns(obj), _name(obj)) if _ns(obj) else "%s %s" % (kind, _name(obj))


def _labels(obj):
    return dict(_meta(obj).get("labels") or {})


def _finding(check, severity, obj_ref, evidence, fix, title=None):
    return {"id": check, "severity": severity, "title": title or CHECKS[check], "object": obj_ref,
            "evidence": evidence, "fix": fix}


def _quantity(value):
    """A plain count from a resource quantity ('2', 2, '0'); odd strings count as 1."""
    try:
        return float(str(value).strip() or 0)
    except ValueError:
        return 1.0


def _int(value, default=0):
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return default


def _pod_spec(workload):
    """The PodSpec of a Deployment (its template) or of a Pod."""
    spec = (workload or {}).get("spec") or {}
    if "template" in spec:
        return (spec.get("template") or {}).get("spec") or {}
    return spec


def _containers(pod_spec):
    return list(pod_spec.get("containers") or [])


def _container_gpu(container):
    """({resource: qty} in limits, {resource: qty} in requests) for NVIDIA resources."""
    res = container.get("resources") or {}
    out = []
    for section in ("limits", "requests"):
        out.append({k: str(v) for k, v in (res.get(section) or {}).items()
                    if k == GPU_RESOURCE or k == SHARED_RESOURCE or k.startswith(MIG_PREFIX)})
    return out[0], out[1]


def node_is_gpu(node):
    return bool(gpu_evidence(node))


def node_gpu_allocatable(node):
    alloc = (node.get("status") or {}).get("allocatable") or {}
    return {k: str(v) for k, v in alloc.items()
            if (k == GPU_RESOURCE or k == SHARED_RESOURCE or k.startswith(MIG_PREFIX)) and _quantity(v) > 0}


def pool_of(node, pool_label=None):
    """The node's pool: pool_label, a managed-cluster pool label, or roles/node_pools' annotation."""
    labels = _labels(node)
    for key in ((pool_label,) if pool_label else ()) + AUTO_POOL_LABELS:
        if labels.get(key):
            return labels[key]
    raw = (_meta(node).get("annotations") or {}).get(MANAGED_ANNOTATION)
    if raw:
        try:
            return (json.loads(raw) or {}).get("pool") or None
        except (ValueError, AttributeError):
            return None
    return None


def _owner(obj):
    owners = _meta(obj).get("ownerReferences") or []
    for owner in owners:
        if owner.get("controller"):
            return owner
    return owners[0] if owners else None


# --------------------------------------------------------------------------------------
# vLLM command lines
# --------------------------------------------------------------------------------------

def _tokens(container):
    env = {e.get("name"): e.get("value") for e in container.get("env") or [] if e.get("value") is not None}
    raw = [str(t) for t in (container.get("command") or []) + (container.get("args") or [])]
    tokens = []
    for tok in raw:
        # Kubernetes expands $(VAR) from the container's env in command and args.
        tok = _ENV_REF.sub(lambda m: env.get(m.group(1), m.group(0)), tok)
        if any(ch.isspace() for ch in tok.strip()):
            try:  # a shell script (sh -c "vllm serve ...")
                tokens.extend(shlex.split(tok))
            except ValueError:
                tokens.extend(tok.split())
        else:
            tokens.append(tok)
    return tokens


def is_vllm_container(container):
    image = str(container.get("image") or "").lower()
    if _VLLM_IMAGE.search(image.split("@", 1)[0]):
        return True
    tokens = _tokens(container)
    for i, tok in enumerate(tokens):
        base = tok.rsplit("/", 1)[-1]
        if base == "vllm" and i + 1 < len(tokens) and tokens[i + 1] == "serve":
            return True
        if tok == _SERVER_MODULE:
            return True
    return False


def parse_vllm_args(container):
    """Engine settings of a vLLM container (vllm_args.parse) after Kubernetes' $(VAR) expansion
    and shell one-liners are unfolded into tokens."""
    return vllm_args.parse(_tokens(container))


def vllm_version_of(image):
    match = _IMAGE_VERSION.search(str(image or ""))
    return match.group(1) if match else DEFAULT_VLLM_VERSION


def _config_for(parsed, model_configs):
    """The model config dict that belongs to this container's model, and the key it matched."""
    candidates = []
    if parsed["model"]:
        model = parsed["model"].rstrip("/")
        candidates += [model, model.rsplit("/", 1)[-1]]
        base = model.rsplit("/", 1)[-1]
        if "--" in base:  # roles/vllm_service names cached models org--name
            candidates.append(base.replace("--", "/"))
    candidates += parsed["served_model_names"]
    for key in candidates:
        if key in (model_configs or {}):
            return model_configs[key], key
    return None, None


def _is_quantized(parsed, config):
    if parsed["quantization"]:
        return True
    if isinstance(config, dict):
        if config.get("quantization_config") or (config.get("text_config") or {}).get("quantization_config"):
            return True
    for name in [parsed["model"] or ""] + parsed["served_model_names"]:
        if _QUANTIZED_NAME.search(name):
            return True
    return False


# --------------------------------------------------------------------------------------
# the snapshot: who runs where
# --------------------------------------------------------------------------------------

class Snapshot:
    """Indexes over the raw lists, built once."""

    def __init__(self, data, pool_label=None, namespaces=None):
        self.nodes = list(data.get("nodes") or [])
        self.pods = list(data.get("pods") or [])
        self.deployments = list(data.get("deployments") or [])
        self.hpas = list(data.get("hpas") or [])
        self.scaledobjects = list(data.get("scaledobjects") or [])
        self.daemonsets = list(data.get("daemonsets") or [])
        self.prometheusrules = list(data.get("prometheusrules") or [])
        self.configmaps = list(data.get("configmaps") or [])
        self.machinedeployments = list(data.get("machinedeployments") or [])
        self.api_groups = data.get("api_groups")
        self.pods_complete = data.get("pods_complete", True)
        self.unreadable = dict(data.get("unreadable") or {})
        self.namespaces = set(namespaces or ())
        self.pool_label = pool_label
        self.node_by_name = {_name(n): n for n in self.nodes}
        self.gpu_nodes = {_name(n) for n in self.nodes if node_is_gpu(n)}
        self.pool = {_name(n): pool_of(n, pool_label) for n in self.nodes}
        self.live_pods = [p for p in self.pods if not is_finished(p) and not _meta(p).get("deletionTimestamp")]

    def in_scope(self, obj):
        return not self.namespaces or _ns(obj) in self.namespaces

    def pods_of(self, deployment):
        sel = (((deployment.get("spec") or {}).get("selector") or {}).get("matchLabels")) or {}
        if not sel:
            return []
        reqs = [(k, "in", (str(v),)) for k, v in sel.items()]
        return [p for p in self.live_pods if _ns(p) == _ns(deployment) and selector_matches(reqs, _labels(p))]

    def nodes_matching(self, node_selector):
        if not node_selector:
            return []
        reqs = [(k, "in", (str(v),)) for k, v in node_selector.items()]
        return [n for n in self.nodes if selector_matches(reqs, _labels(n))]

    def placement(self, deployment):
        """(node names its pods run on, nodes its nodeSelector allows, pools)."""
        running = sorted({(p.get("spec") or {}).get("nodeName") for p in self.pods_of(deployment)} - {None})
        selector = _pod_spec(deployment).get("nodeSelector") or {}
        allowed = [_name(n) for n in self.nodes_matching(selector)]
        pools = {self.pool.get(n) for n in (running or allowed)} - {None}
        for key in ((self.pool_label,) if self.pool_label else ()) + AUTO_POOL_LABELS:
            if selector.get(key):
                pools.add(selector[key])
        return running, allowed, sorted(pools)

    def gpu_product(self, deployment):
        """The GFD product of the GPUs this Deployment runs on, or None when unknown or mixed."""
        running, allowed, _pools = self.placement(deployment)
        products = {_labels(self.node_by_name[n]).get(PRODUCT_LABEL) for n in (running or allowed)
                    if n in self.node_by_name} - {None}
        if len(products) == 1:
            return products.pop(), (running or allowed)
        selector = _pod_spec(deployment).get("nodeSelector") or {}
        if not products and selector.get(PRODUCT_LABEL):
            return selector[PRODUCT_LABEL], []
        return None, sorted(products)

    def autoscalers_of(self, deployment):
        """(HPAs not made by KEDA, ScaledObjects, KEDA's HPAs) that target this Deployment."""
        def targets(obj):
            ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
            return (_ns(obj) == _ns(deployment) and (ref.get("kind") or "Deployment") == "Deployment"
                    and ref.get("name") == _name(deployment))
        hpas = [h for h in self.hpas if targets(h)]
        keda = [h for h in hpas if any(o.get("kind") == SCALEDOBJECT_KIND for o in _meta(h).get("ownerReferences") or [])]
        plain = [h for h in hpas if h not in keda]
        return plain, [s for s in self.scaledobjects if targets(s)], keda

    def workloads(self):
        """(kind, object) to check pod templates of: Deployments, plus one pod per other owner."""
        out = [("Deployment", d) for d in self.deployments]
        seen = set()
        for pod in self.live_pods:
            owner = _owner(pod)
            kind = (owner or {}).get("kind")
            if kind in ("ReplicaSet", "DaemonSet"):
                continue  # Deployments are checked through their template; DaemonSets are system agents
            key = (_ns(pod), kind, owner.get("name")) if owner else (_ns(pod), "Pod", _name(pod))
            if key in seen:
                continue
            seen.add(key)
            out.append(("Pod", pod))
        return out


# --------------------------------------------------------------------------------------
# checks: mixed pools
# --------------------------------------------------------------------------------------

def check_gpu_node_taints(snap):
    findings = []
    for node in snap.nodes:
        if _name(node) not in snap.gpu_nodes:
            continue
        taints = (node.get("spec") or {}).get("taints") or []
        # Kubernetes' own condition taints (cordon, not-ready) come and go; they do not make a pool.
        repelling = [t for t in taints if t.get("effect") in ("NoSchedule", "NoExecute")
                     and not str(t.get("key") or "").startswith(_SYSTEM_TAINT_PREFIXES)]
        if repelling:
            continue
        findings.append(_finding(
            "gpu-node-untainted", "high", _ref("Node", node),
            {"node": _name(node), "pool": snap.pool.get(_name(node)), "gpu_evidence": gpu_evidence(node),
             "taints": ["%s=%s:%s" % (t.get("key"), t.get("value") or "", t.get("effect")) for t in taints]},
            "Taint the GPU pool so that only pods that tolerate it land there, e.g. workload=llm-inference:NoSchedule "
            "(gpuops.llm.node_pool / roles/node_pools), and give GPU workloads the matching toleration."))
    return findings


def check_cpu_pods_on_gpu_nodes(snap):
    findings = []
    for pod in snap.live_pods:
        node = (pod.get("spec") or {}).get("nodeName")
        if node not in snap.gpu_nodes or not snap.in_scope(pod):
            continue
        if is_daemonset_pod(pod) or "kubernetes.io/config.mirror" in (_meta(pod).get("annotations") or {}):
            continue
        try:
            if gpu_resources_of(pod):
                continue
        except ValueError:
            continue
        owner = _owner(pod)
        findings.append(_finding(
            "cpu-pod-on-gpu-node", "medium", _ref("Pod", pod),
            {"pod": "%s/%s" % (_ns(pod), _name(pod)), "node": node, "pool": snap.pool.get(node),
             "owner": "%s/%s" % (owner.get("kind"), owner.get("name")) if owner else None,
             "gpu_resources": {}},
            "Move the pod to a CPU pool (nodeSelector/affinity) and taint the GPU nodes so it cannot come back; "
            "it takes CPU and memory that the node's GPU pods need."))
    return findings


# --------------------------------------------------------------------------------------
# checks: vLLM model, KV cache, probes
# --------------------------------------------------------------------------------------

def _gpu_model_for(snap, workload, kind, limits):
    """gpu_model string for sizing (product, plus MIG profile) and the GPU count per replica."""
    mig = sorted(k for k in limits if k.startswith(MIG_PREFIX))
    if kind == "Deployment":
        product, where = snap.gpu_product(workload)
    else:
        node = snap.node_by_name.get((workload.get("spec") or {}).get("nodeName"))
        product = _labels(node).get(PRODUCT_LABEL) if node else None
        where = [_name(node)] if node else []
    if mig:
        profile = mig[0][len(MIG_PREFIX):]
        parent = re.sub(r"-MIG-.*$", "", product) if product else ""
        return ("%s %s" % (parent, profile)).strip(), 1, where
    count = int(sum(_quantity(v) for k, v in limits.items() if k in (GPU_RESOURCE, SHARED_RESOURCE)))
    return product, count, where


def _resolve_memory(gpu_model, node):
    """Sizing's view of the GPU; falls back to GFD's gpu.memory (MiB) for cards sizing lacks."""
    if not gpu_model:
        return None, None
    try:
        return gpu_model, resolve_gpu(gpu_model=gpu_model)["usable_gib"]
    except SizingError:
        mib = _int(_labels(node).get("nvidia.com/gpu.memory")) if node else 0
        if mib:
            # torch sees about 1% less than nvidia-smi's total (sizing.py; UNCONFIRMED per card).
            return None, round(mib / 1024.0 * 0.99, 2)
    return None, None


def _gmu_ceiling(usable):
    """The highest utilization sizing.py recommends: CUDA context + 1 GiB headroom stay free."""
    if not usable:
        return MAX_RECOMMENDED_GPU_MEMORY_UTILIZATION
    limit = (usable - CUDA_CONTEXT_GIB - RECOMMENDED_HEADROOM_GIB) / usable
    return max(0.0, int(min(MAX_RECOMMENDED_GPU_MEMORY_UTILIZATION, limit) * 100 + 1e-9) / 100.0)


def _size(config, quant, tp, gpu_model, usable, gmu, mml, kv, version):
    kwargs = dict(model_config=config, quantization=quant, tensor_parallel_size=tp,
                  gpu_memory_utilization=gmu, max_model_len=mml, kv_cache_dtype=kv, vllm_version=version)
    if gpu_model:
        kwargs["gpu_model"] = gpu_model
    else:
        kwargs["gpu_memory_gib"] = usable
    return estimate(**kwargs)


def check_vllm(snap, model_configs):
    """FP16 where AWQ fits, KV-cache settings, startupProbe, for every vLLM container."""
    findings = []
    for kind, workload in snap.workloads():
        if not snap.in_scope(workload):
            continue
        ref = _ref(kind, workload)
        for container in _containers(_pod_spec(workload)):
            if not is_vllm_container(container):
                continue
            findings += _check_probes(ref, container)
            limits, _requests = _container_gpu(container)
            if not limits:
                continue  # check_gpu_limits reports it; nothing to size without a GPU
            parsed = parse_vllm_args(container)
            findings += _check_vllm_sizing(snap, kind, workload, ref, container, parsed, limits, model_configs)
    return findings


def _check_probes(ref, container):
    startup = container.get("startupProbe")
    liveness = container.get("livenessProbe")
    findings = []
    if not startup:
        severity = "high" if liveness else "medium"
        findings.append(_finding(
            "vllm-no-startup-probe", severity, ref,
            {"container": container.get("name"), "liveness_probe": bool(liveness),
             "readiness_probe": bool(container.get("readinessProbe")),
             "liveness_initial_delay_seconds": (liveness or {}).get("initialDelaySeconds")},
            "Add a startupProbe on GET /health whose periodSeconds x failureThreshold covers weight loading "
            "(production-stack uses 60 x 10 s, KubeAI 3 hours); liveness only starts after it passes, so the "
            "kubelet stops killing pods that are still loading the model."))
    return findings


def _check_vllm_sizing(snap, kind, workload, ref, container, parsed, limits, model_configs):
    findings = []
    config, config_key = _config_for(parsed, model_configs)
    shared = SHARED_RESOURCE in limits
    gpu_model, gpus, where = _gpu_model_for(snap, workload, kind, limits)
    node = snap.node_by_name.get(where[0]) if where else None
    gpu_model, usable = _resolve_memory(gpu_model, node)
    base = {"container": container.get("name"), "model": parsed["model"], "gpu": gpu_model or (
        "%.2f GiB" % usable if usable else None), "gpu_resources": limits}
    tp = _int(parsed["tensor_parallel_size"], 1) if parsed["tensor_parallel_size"] else 1
    pp = _int(parsed["pipeline_parallel_size"], 1) if parsed["pipeline_parallel_size"] else 1

    # --- gpu-memory-utilization ------------------------------------------------------
    raw_gmu = parsed["gpu_memory_utilization"]
    gmu = None
    if raw_gmu is None or raw_gmu is True:
        findings.append(_finding(
            "kv-gpu-memory-utilization-missing", "medium", ref, dict(base, gpu_memory_utilization=None),
            "Set --gpu-memory-utilization explicitly: vLLM's default moved from 0.9 to 0.92 between releases, "
            "so the KV-cache size changes with the image. gpuops.llm.model_fit recommends a value per GPU."))
    else:
        try:
            gmu = float(raw_gmu)
        except ValueError:
            gmu = None
    ceiling = _gmu_ceiling(usable)
    if gmu is not None:
        if gmu > ceiling:
            findings.append(_finding(
                "kv-gpu-memory-utilization-high", "high", ref,
                dict(base, gpu_memory_utilization=gmu, ceiling=ceiling, usable_gib=usable,
                     cuda_context_gib=CUDA_CONTEXT_GIB, headroom_gib=RECOMMENDED_HEADROOM_GIB),
                "Lower --gpu-memory-utilization to %.2f or less: the CUDA context (%.2f GiB) lives outside the budget "
                "and the sampler warm-up has OOMed at 0.95." % (ceiling, CUDA_CONTEXT_GIB)))
        elif gmu < LOW_GPU_MEMORY_UTILIZATION and not shared:
            findings.append(_finding(
                "kv-gpu-memory-utilization-low", "medium", ref,
                dict(base, gpu_memory_utilization=gmu, threshold=LOW_GPU_MEMORY_UTILIZATION),
                "Raise --gpu-memory-utilization (0.9 is vLLM's long-standing default): on a dedicated GPU or MIG "
                "slice the memory left out is KV cache that is never used, and a small KV cache means "
                "preemptions and latency spikes under load."))

    # --- sizing (needs the model config and the GPU) ----------------------------------
    quant_flag = parsed["quantization"]
    quantized = _is_quantized(parsed, config)
    mml = _int(parsed["max_model_len"], 0) if parsed["max_model_len"] not in (None, True) else None
    if config is None:
        if not quantized:
            findings.append(_finding(
                "fp16-unsized", "low", ref, dict(base, dtype=parsed["dtype"], quantization=None),
                "Add the model's config.json to model_configs (key %r) so the audit can size a 4-bit AWQ variant; "
                "16-bit weights take about 4x the memory of AWQ INT4." % (parsed["model"],)))
        return findings
    if not (gpu_model or usable) or pp > 1 or (quant_flag and _QUANT_FLAG.get(quant_flag) == "unsupported"):
        return findings
    version = vllm_version_of(container.get("image"))
    kv = "fp8" if str(parsed["kv_cache_dtype"]).startswith("fp8") else "auto"
    served_quant = None
    if quant_flag and not (config.get("quantization_config")):
        served_quant = _QUANT_FLAG.get(quant_flag)
    size_gmu = gmu if gmu is not None and 0 < gmu <= 1 else DEFAULT_GPU_MEMORY_UTILIZATION
    evidence = dict(base, model_config=config_key, tensor_parallel_size=tp, gpu_memory_utilization=size_gmu,
                    max_model_len=mml)
    try:
        now = _size(config, served_quant, tp, gpu_model, usable, size_gmu, mml, kv, version)
    except SizingError as exc:
        if exc.field == "max_model_len":
            findings.append(_finding(
                "kv-max-model-len-too-large", "high", ref, dict(evidence, reason=str(exc)),
                "Lower --max-model-len to at most the model's max_position_embeddings; vLLM refuses a longer one."))
        return findings

    if not now["fits"]:
        if now["weights_gib_per_gpu"] > size_gmu * now["gpu_memory_gib"] or now["kv_cache_gib_per_gpu"] <= 0:
            findings.append(_finding(
                "model-does-not-fit", "critical", ref,
                dict(evidence, weights_gib_per_gpu=now["weights_gib_per_gpu"],
                     kv_cache_gib_per_gpu=now["kv_cache_gib_per_gpu"], reason=now["reason"],
                     min_tensor_parallel_size=now["recommended"].get("min_tensor_parallel_size")),
                "vLLM cannot start like this: quantize the model, use a larger GPU or raise --tensor-parallel-size "
                "(gpuops.llm.model_fit shows what fits)."))
        else:
            rec = now["recommended"]
            findings.append(_finding(
                "kv-max-model-len-too-large", "high", ref,
                dict(evidence, max_model_len=now["max_model_len"], kv_cache_tokens=now["kv_cache_tokens"],
                     kv_cache_gib_per_gpu=now["kv_cache_gib_per_gpu"], reason=now["reason"],
                     recommended_max_model_len=rec.get("max_model_len"),
                     recommended_gpu_memory_utilization=rec.get("gpu_memory_utilization"),
                     min_tensor_parallel_size=rec.get("min_tensor_parallel_size")),
                "vLLM refuses to start when one request of --max-model-len does not fit the KV cache: set "
                "--max-model-len %s (or use --kv-cache-dtype fp8, a quantized model, or tensor parallel size %s)."
                % (rec.get("max_model_len"), rec.get("min_tensor_parallel_size"))))

    if quantized:
        return findings
    # --- FP16 where AWQ fits: the smallest TP (GPUs per replica) that holds one request ---
    best = None
    for cand in (1, 2, 4, 8, 16):
        if cand > max(tp, 1):
            break
        try:
            awq = _size(config, "awq", cand, gpu_model, usable, size_gmu, mml, kv, version)
        except SizingError:
            continue
        if awq["fits"]:
            best = (cand, awq)
            break
    if best is None:
        return findings
    cand, awq = best
    fewer = cand < tp
    findings.append(_finding(
        "fp16-where-quantized-fits", "high" if fewer else "medium", ref,
        dict(evidence, dtype=parsed["dtype"], gpus_per_replica_fp16=tp, gpus_per_replica_awq=cand,
             weights_gib_per_gpu_fp16=now["weights_gib_per_gpu"], weights_gib_per_gpu_awq=awq["weights_gib_per_gpu"],
             kv_cache_tokens_fp16=now["kv_cache_tokens"], kv_cache_tokens_awq=awq["kv_cache_tokens"],
             fits_fp16=now["fits"]),
        ("An AWQ INT4 checkpoint of this model fits on %d GPU(s) per replica instead of %d; quantize it "
         "(roles/model_quantize), evaluate quality, and serve the AWQ checkpoint without --quantization so "
         "vLLM picks the Marlin kernel." % (cand, tp)) if fewer else
        ("An AWQ INT4 checkpoint needs %.2f instead of %.2f GiB of weights per GPU, which leaves %d instead of %d "
         "KV-cache tokens, or fits a smaller GPU or MIG slice; quantize it (roles/model_quantize) and evaluate quality."
         % (awq["weights_gib_per_gpu"], now["weights_gib_per_gpu"], awq["kv_cache_tokens"], now["kv_cache_tokens"]))))
    return findings


# --------------------------------------------------------------------------------------
# checks: GPU resources in pod specs
# --------------------------------------------------------------------------------------

def check_gpu_limits(snap):
    findings = []
    for kind, workload in snap.workloads():
        if not snap.in_scope(workload):
            continue
        ref = _ref(kind, workload)
        for container in _containers(_pod_spec(workload)):
            limits, requests = _container_gpu(container)
            missing = sorted(set(requests) - set(limits))
            if missing:
                findings.append(_finding(
                    "gpu-requests-without-limits", "high", ref,
                    {"container": container.get("name"), "requests": {k: requests[k] for k in missing},
                     "limits": limits},
                    "Set the GPU in limits (requests may be left out: they default to the limit). The API server "
                    "rejects GPU requests without limits, so this spec cannot create pods."))
            if limits or requests:
                continue
            env = {e.get("name"): str(e.get("value")) for e in container.get("env") or []}
            visible = env.get("NVIDIA_VISIBLE_DEVICES")
            vllm = is_vllm_container(container)
            if vllm or (visible and visible not in ("void", "none", "")):
                findings.append(_finding(
                    "gpu-container-without-gpu-resources", "high", ref,
                    {"container": container.get("name"), "image": container.get("image"), "vllm": vllm,
                     "NVIDIA_VISIBLE_DEVICES": visible, "resources": container.get("resources") or {}},
                    "Give the container limits of nvidia.com/gpu (or nvidia.com/mig-<profile>): without them the "
                    "scheduler does not reserve a GPU, so the pod either runs without one or, with "
                    "NVIDIA_VISIBLE_DEVICES set, shares GPUs behind the device plugin's back."))
    return findings


# --------------------------------------------------------------------------------------
# checks: autoscaling and scale-to-zero
# --------------------------------------------------------------------------------------

def _gpu_deployments(snap):
    for dep in snap.deployments:
        if snap.in_scope(dep) and gpu_requests(dep):
            yield dep


def check_autoscaling(snap):
    findings = []
    for dep in _gpu_deployments(snap):
        ref = _ref("Deployment", dep)
        gpus = gpu_requests(dep)
        plain, sos, _keda = snap.autoscalers_of(dep)
        for hpa in plain:
            resources = hpa_resource_metrics(hpa)
            if resources:
                findings.append(_finding(
                    "cpu-hpa-on-gpu-deployment", "high", ref,
                    {"deployment": "%s/%s" % (_ns(dep), _name(dep)), "hpa": _name(hpa), "metrics": resources,
                     "gpu_resources": gpus},
                    "Delete HorizontalPodAutoscaler %s and scale on vLLM's queue (vllm:num_requests_waiting) and GPU "
                    "activity with a KEDA ScaledObject (gpuops.llm.model_autoscaler / roles/autoscaling): CPU load "
                    "does not follow LLM inference load." % _name(hpa)))
        for so in sos:
            triggers = [t.get("type") for t in (so.get("spec") or {}).get("triggers") or []
                        if t.get("type") in ("cpu", "memory")]
            if triggers:
                findings.append(_finding(
                    "cpu-hpa-on-gpu-deployment", "high", ref,
                    {"deployment": "%s/%s" % (_ns(dep), _name(dep)), "scaledobject": _name(so), "metrics": triggers,
                     "gpu_resources": gpus},
                    "Replace the cpu/memory triggers of ScaledObject %s with a Prometheus trigger on "
                    "vllm:num_requests_waiting." % _name(so)))
        if len(plain) + len(sos) > 1:
            problems = check_hpa_conflicts(dep, snap.hpas, snap.scaledobjects,
                                           scaled_object_name=_name(sos[0]) if sos else None)
            findings.append(_finding(
                "autoscaler-conflict", "high", ref,
                {"deployment": "%s/%s" % (_ns(dep), _name(dep)), "hpas": sorted(_name(h) for h in plain),
                 "scaledobjects": sorted(_name(s) for s in sos), "problems": problems},
                "Keep one autoscaler per Deployment: two controllers fight over its replicas and it flaps."))
        replicas = (dep.get("spec") or {}).get("replicas", 1)
        if not plain and not sos and replicas and replicas > 0:
            findings.append(_finding(
                "gpu-deployment-no-autoscaling", "medium", ref,
                {"deployment": "%s/%s" % (_ns(dep), _name(dep)), "replicas": replicas, "gpu_resources": gpus},
                "Autoscale it on queue depth with a KEDA ScaledObject (gpuops.llm.model_autoscaler); static "
                "replicas pay for peak capacity all day."))
    return findings


def offpeak_pool_names(snap, offpeak_pools):
    """Pools marked off-peak, plus pools whose nodes are labelled workload-class=training."""
    pools = set(offpeak_pools or ())
    for node in snap.nodes:
        if _labels(node).get(WORKLOAD_CLASS_LABEL) == TRAINING_CLASS and snap.pool.get(_name(node)):
            pools.add(snap.pool[_name(node)])
    return pools


def check_scale_to_zero(snap, offpeak_pools):
    findings = []
    offpeak = offpeak_pool_names(snap, offpeak_pools)
    if not offpeak:
        return findings
    for dep in _gpu_deployments(snap):
        _running, _allowed, pools = snap.placement(dep)
        hit = sorted(set(pools) & offpeak)
        if not hit:
            continue
        ref = _ref("Deployment", dep)
        plain, sos, _keda = snap.autoscalers_of(dep)
        base = {"deployment": "%s/%s" % (_ns(dep), _name(dep)), "pools": hit}
        for so in sos:
            spec = so.get("spec") or {}
            minimum = spec.get("minReplicaCount", 0)  # KEDA's default is 0 (facts C)
            idle = spec.get("idleReplicaCount")
            if _int(minimum) >= 1 and idle != 0:
                findings.append(_finding(
                    "no-scale-to-zero", "medium", ref,
                    dict(base, scaledobject=_name(so), minReplicaCount=_int(minimum), idleReplicaCount=idle),
                    "Set minReplicaCount: 0 on ScaledObject %s with an activationThreshold (or a keepalive trigger) "
                    "and a long cooldownPeriod, so the pool's nodes can go when traffic stops." % _name(so)))
        for hpa in plain:
            minimum = (hpa.get("spec") or {}).get("minReplicas", 1)
            findings.append(_finding(
                "no-scale-to-zero", "medium", ref, dict(base, hpa=_name(hpa), minReplicas=minimum),
                "An HPA never scales below 1 replica (without the alpha HPAScaleToZero feature gate): use a KEDA "
                "ScaledObject with minReplicaCount: 0 instead."))
        replicas = (dep.get("spec") or {}).get("replicas", 1)
        if not plain and not sos and replicas and replicas > 0:
            findings.append(_finding(
                "no-scale-to-zero", "medium", ref, dict(base, replicas=replicas, autoscaler=None),
                "Give it a KEDA ScaledObject with minReplicaCount: 0, or scale it to 0 off-peak."))
    return findings


def _image_name(container):
    """The last path part of a container image, without tag or digest: registry.k8s.io/a/b:v1 -> b."""
    return str(container.get("image") or "").split("@", 1)[0].rsplit("/", 1)[-1].split(":", 1)[0]


def _flag_values(tokens, flag):
    """Every value of a repeatable --flag=value / --flag value in a container's tokens."""
    values = []
    for i, tok in enumerate(tokens):
        if tok.startswith(flag + "="):
            values.append(tok.split("=", 1)[1])
        elif tok == flag and i + 1 < len(tokens):
            values.append(tokens[i + 1])
    return values


def _clusterapi_matches(md, specs):
    """Whether a MachineDeployment matches one of the clusterapi auto-discovery specs (none: all of them).

    Keys namespace and clusterName are compared; other keys (label selectors) are not read here."""
    if not specs:
        return True
    for spec in specs:
        pairs = dict(kv.split("=", 1) for kv in spec.split(":", 1)[-1].split(",") if "=" in kv)
        if pairs.get("namespace", _ns(md)) != _ns(md):
            continue
        if pairs.get("clusterName", (md.get("spec") or {}).get("clusterName")) != (md.get("spec") or {}).get("clusterName"):
            continue
        return True
    return False


def cluster_autoscaler_node_groups(snap):
    """{node group: {min_nodes, max_nodes, deployment}} of the running Cluster Autoscalers.

    From their --nodes flags or, under the clusterapi provider (which ignores --nodes), from the size
    annotations of the MachineDeployments they discover. Only self-managed autoscalers are visible (GKE and AKS run theirs
    outside the cluster), and a node group counts for a pool when it carries the pool's name
    (roles/cluster_autoscaler's convention, docs/audit.md); groups discovered from cloud tags have no
    minimum to read here.
    """
    groups = {}
    for dep in snap.deployments:
        if (dep.get("spec") or {}).get("replicas", 1) == 0:
            continue  # a stopped autoscaler removes nothing
        for container in _containers(_pod_spec(dep)):
            if _image_name(container) != "cluster-autoscaler":
                continue
            tokens = _tokens(container)
            owner = "%s/%s" % (_ns(dep), _name(dep))
            if "clusterapi" not in _flag_values(tokens, "--cloud-provider"):
                for value in _flag_values(tokens, "--nodes"):
                    match = _CA_NODES.match(value)
                    if match:
                        groups[match.group(3)] = {"min_nodes": int(match.group(1)), "max_nodes": int(match.group(2)),
                                                  "deployment": owner}
                continue
            # clusterapi: --nodes means nothing to it (issue 12); its groups are annotated MachineDeployments.
            specs = [d for d in _flag_values(tokens, "--node-group-auto-discovery") if d.startswith("clusterapi:")]
            for md in snap.machinedeployments:
                annotations = _meta(md).get("annotations") or {}
                low, high = _int(annotations.get(CAPI_MIN_SIZE), None), _int(annotations.get(CAPI_MAX_SIZE), None)
                if low is None or high is None or not _clusterapi_matches(md, specs):
                    continue
                groups[_name(md)] = {"min_nodes": low, "max_nodes": high, "deployment": owner,
                                     "machinedeployment": "%s/%s" % (_ns(md), _name(md))}
    return groups


def check_idle_pools(snap, offpeak_pools):
    findings = []
    if not snap.pods_complete:
        return findings  # with pods of some namespaces only, an idle node cannot be told apart
    autoscaled = cluster_autoscaler_node_groups(snap)
    offpeak = offpeak_pool_names(snap, offpeak_pools)
    busy = {(p.get("spec") or {}).get("nodeName") for p in snap.live_pods if not is_daemonset_pod(p)
            and "kubernetes.io/config.mirror" not in (_meta(p).get("annotations") or {})}
    by_pool = {}
    for name in sorted(snap.gpu_nodes):
        pool = snap.pool.get(name)
        if pool in offpeak:
            by_pool.setdefault(pool, []).append(name)
    for pool, nodes in sorted(by_pool.items()):
        idle = [n for n in nodes if n not in busy]
        if not idle:
            continue
        group = autoscaled.get(pool)
        annotations = {n: _meta(snap.node_by_name[n]).get("annotations") or {} for n in idle}
        kept = [n for n in idle if str(annotations[n].get(SCALE_DOWN_DISABLED, "")).lower() == "true"]
        if group and group["min_nodes"] == 0 and not kept:
            # A Cluster Autoscaler may take this pool to zero and nothing stops it: the idle nodes
            # go after --scale-down-unneeded-time, which is the policy working, not waste.
            continue
        gpus = {}
        for n in idle:
            for k, v in node_gpu_allocatable(snap.node_by_name[n]).items():
                gpus[k] = gpus.get(k, 0) + int(_quantity(v))
        evidence = {"pool": pool, "nodes": nodes, "idle_nodes": idle, "idle_gpus": gpus}
        if group:
            evidence.update(cluster_autoscaler=group["deployment"], min_nodes=group["min_nodes"],
                            scale_down_disabled=kept)
        findings.append(_finding(
            "idle-gpu-pool", "medium", "NodePool %s" % pool, evidence,
            "Let the pool scale to zero: min-nodes=0 in the cloud node pool (gpuops.llm cloud_node_pools) and a "
            "Cluster Autoscaler that removes idle GPU nodes; the seed's training pool is --min-nodes=0."))
    return findings


# --------------------------------------------------------------------------------------
# checks: GPU Feature Discovery and the device plugin
# --------------------------------------------------------------------------------------

def check_mig_invalid(snap):
    findings = []
    for node in snap.nodes:
        labels = _labels(node)
        bad = sorted(k for k, v in labels.items() if k.startswith("nvidia.com/") and k.endswith(".product")
                     and str(v).endswith(MIG_INVALID_SUFFIX))
        if not bad:
            continue
        findings.append(_finding(
            "mig-invalid", "high", _ref("Node", node),
            {"node": _name(node), "labels": {k: labels[k] for k in bad}, COUNT_LABEL: labels.get(COUNT_LABEL),
             MIG_STRATEGY_LABEL: labels.get(MIG_STRATEGY_LABEL), "gpu_allocatable": node_gpu_allocatable(node)},
            "Under the single MIG strategy every GPU of the node needs MIG on with the same profiles; MIG on "
            "without instances, mixed profiles or some GPUs with MIG off give -MIG-INVALID and no usable GPUs. "
            "Apply one layout to all GPUs (gpuops.llm.mig_config / roles/mig) or switch the device plugin to "
            "the mixed strategy."))
    return findings


def check_gpus_advertised(snap):
    findings = []
    for node in snap.nodes:
        labels = _labels(node)
        count = _int(labels.get(COUNT_LABEL), 0)
        if count <= 0 or node_gpu_allocatable(node):
            continue
        alloc = (node.get("status") or {}).get("allocatable") or {}
        findings.append(_finding(
            "gpus-not-advertised", "high", _ref("Node", node),
            {"node": _name(node), COUNT_LABEL: count, PRODUCT_LABEL: labels.get(PRODUCT_LABEL),
             "allocatable": {k: str(v) for k, v in alloc.items() if k.startswith("nvidia.com/")} or {}},
            "GPU Feature Discovery sees GPUs but the kubelet advertises none: check that the NVIDIA device plugin "
            "pod runs on the node and its log (NVML not visible in the container, wrong runtime class, or the "
            "plugin paused for a MIG change)."))
    return findings


# --------------------------------------------------------------------------------------
# checks: observability
# --------------------------------------------------------------------------------------

def _is_dcgm_daemonset(ds):
    labels = _labels(ds)
    if "dcgm-exporter" in _name(ds) or labels.get("app.kubernetes.io/name") == "dcgm-exporter" \
            or labels.get("app") == "nvidia-dcgm-exporter":
        return True
    return any("dcgm-exporter" in str(c.get("image") or "") for c in _containers(_pod_spec(ds)))


def check_dcgm_exporter(snap):
    if not snap.gpu_nodes or "daemonsets" in snap.unreadable:
        return []
    exporters = [d for d in snap.daemonsets if _is_dcgm_daemonset(d)]
    if not exporters:
        return [_finding(
            "dcgm-exporter-missing", "high", "DaemonSet dcgm-exporter",
            {"gpu_nodes": len(snap.gpu_nodes), "daemonsets_seen": len(snap.daemonsets)},
            "Deploy NVIDIA's DCGM exporter on every GPU node (roles/dcgm_exporter): without it there is no GPU "
            "temperature, memory or utilisation to alert or scale on.")]
    if not snap.pods_complete:
        return []
    owners = {(_ns(d), _name(d)) for d in exporters}
    covered = set()
    for pod in snap.live_pods:
        owner = _owner(pod)
        if owner and owner.get("kind") == "DaemonSet" and (_ns(pod), owner.get("name")) in owners:
            covered.add((pod.get("spec") or {}).get("nodeName"))
    missing = sorted(n for n in snap.gpu_nodes if n not in covered)
    if not missing:
        return []
    return [_finding(
        "dcgm-exporter-not-on-gpu-nodes", "medium", _ref("DaemonSet", exporters[0]),
        {"daemonsets": ["%s/%s" % o for o in sorted(owners)], "gpu_nodes_without_exporter": missing},
        "Give the DCGM exporter DaemonSet tolerations for the GPU pools' taints and a nodeSelector that matches "
        "every GPU node, so no GPU goes unmonitored.")]


def _rule_exprs_from_groups(groups):
    out = []
    for group in groups or []:
        for rule in (group or {}).get("rules") or []:
            if isinstance(rule, dict) and rule.get("expr") is not None:
                out.append((rule.get("alert") or rule.get("record") or "", str(rule["expr"]), bool(rule.get("alert"))))
    return out


def _rule_sources(snap):
    """[(object ref, [(rule name, expr, is_alert)])] from PrometheusRules and rule-file ConfigMaps."""
    sources = []
    for pr in snap.prometheusrules:
        sources.append((_ref("PrometheusRule", pr), _rule_exprs_from_groups((pr.get("spec") or {}).get("groups"))))
    for cm in snap.configmaps:
        rules = []
        for key, text in sorted(((cm.get("data") or {}).items())):
            if not isinstance(text, str) or "expr" not in text or "groups" not in text:
                continue
            doc = None
            if _yaml is not None:
                try:
                    doc = _yaml.safe_load(text)
                except Exception:  # not YAML: not a rule file
                    doc = None
            if isinstance(doc, dict) and isinstance(doc.get("groups"), list):
                rules += _rule_exprs_from_groups(doc["groups"])
        if rules:
            sources.append((_ref("ConfigMap", cm), rules))
    return sources


def check_alert_rules(snap):
    findings = []
    sources = _rule_sources(snap)
    for ref, rules in sources:
        for name, expr, _is_alert in rules:
            wrong = sorted(set(_WRONG_METRIC_RE.findall(expr)))
            if wrong:
                findings.append(_finding(
                    "alert-rule-wrong-metric", "high", ref,
                    {"rule": name, "metrics": wrong, "use_instead": {m: WRONG_METRICS[m] for m in wrong}, "expr": expr},
                    "Use vLLM's real metric names (with a colon; vllm:kv_cache_usage_perc replaced "
                    "vllm:gpu_cache_usage_perc, removed in v0.12): this rule matches no series and never fires."))
    if "prometheusrules" in snap.unreadable or "configmaps" in snap.unreadable:
        return findings  # rules may sit where we could not look
    alerts = [expr for _ref_, rules in sources for _n, expr, is_alert in rules if is_alert]
    has_vllm = any(is_vllm_container(c) for kind, w in snap.workloads() if snap.in_scope(w)
                   for c in _containers(_pod_spec(w)))
    missing = []
    if snap.gpu_nodes and not any(_DCGM_RE.search(e) for e in alerts):
        missing.append("GPU (DCGM_FI_*)")
    if has_vllm and not any(_VLLM_RE.search(e) for e in alerts):
        missing.append("vLLM (vllm:*)")
    if missing:
        findings.append(_finding(
            "alert-rules-missing", "medium", "PrometheusRule (none)",
            {"missing": missing, "rule_objects": [r for r, _rules in sources], "alert_rules": len(alerts),
             "prometheus_operator": _served(snap, "monitoring.coreos.com")},
            "Install alert rules for GPU temperature, framebuffer, XID errors, vLLM queue and KV cache "
            "(roles/observability: a PrometheusRule, or a ConfigMap rule file without the Prometheus Operator)."))
    return findings


def _served(snap, group):
    return None if snap.api_groups is None else group in snap.api_groups


# --------------------------------------------------------------------------------------
# the audit
# --------------------------------------------------------------------------------------

def validate_options(model_configs=None, offpeak_pools=None, namespaces=None, skip_checks=None, fail_on="never"):
    """Check every option before reading the cluster; returns parsed model configs."""
    if fail_on not in FAIL_ON_CHOICES:
        raise AuditError("fail_on", "fail_on %r is not one of %s" % (fail_on, ", ".join(FAIL_ON_CHOICES)))
    for check in skip_checks or ():
        if check not in CHECKS:
            raise AuditError("skip_checks", "skip_checks has unknown check %r; valid: %s"
                             % (check, ", ".join(sorted(CHECKS))))
    for ns in namespaces or ():
        if not isinstance(ns, str) or not re.match(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", ns) or len(ns) > 63:
            raise AuditError("namespaces", "namespaces entry %r is not a namespace name (DNS label)" % (ns,))
    for pool in offpeak_pools or ():
        if not isinstance(pool, str) or not pool:
            raise AuditError("offpeak_pools", "offpeak_pools entry %r must be a non-empty pool name" % (pool,))
    if model_configs is not None and not isinstance(model_configs, dict):
        raise AuditError("model_configs", "model_configs must be a dict of model id -> config.json dict")
    for key, cfg in (model_configs or {}).items():
        try:
            parse_model_config(cfg, field="model_configs[%s]" % key)
        except SizingError as exc:
            raise AuditError("model_configs", "model_configs[%s]: %s" % (key, exc))


def sort_findings(findings):
    rank = {s: i for i, s in enumerate(SEVERITIES)}
    return sorted(findings, key=lambda f: (rank[f["severity"]], f["id"], f["object"],
                                           json.dumps(f["evidence"], sort_keys=True, default=str)))


def count_by_severity(findings):
    counts = {s: 0 for s in SEVERITIES}
    for f in findings:
        counts[f["severity"]] += 1
    return counts


def at_or_above(findings, threshold):
    if threshold == "never":
        return []
    limit = SEVERITIES.index(threshold)
    return [f for f in findings if SEVERITIES.index(f["severity"]) <= limit]


def run_audit(data, model_configs=None, offpeak_pools=None, pool_label=None, namespaces=None, skip_checks=None):
    """All checks over a snapshot; returns findings sorted by severity, check and object."""
    snap = Snapshot(data, pool_label=pool_label, namespaces=namespaces)
    model_configs = model_configs or {}
    findings = []
    findings += check_gpu_node_taints(snap)
    findings += check_cpu_pods_on_gpu_nodes(snap)
    findings += check_vllm(snap, model_configs)
    findings += check_gpu_limits(snap)
    findings += check_autoscaling(snap)
    findings += check_scale_to_zero(snap, offpeak_pools)
    findings += check_idle_pools(snap, offpeak_pools)
    findings += check_mig_invalid(snap)
    findings += check_gpus_advertised(snap)
    findings += check_dcgm_exporter(snap)
    findings += check_alert_rules(snap)
    skip = set(skip_checks or ())
    return sort_findings([f for f in findings if f["id"] not in skip])


# --------------------------------------------------------------------------------------
# reading the cluster: collections only, never one GET per object
# --------------------------------------------------------------------------------------

# (key, api_version, plural, namespaced, API group that must be served or None)
READS = (
    ("nodes", "v1", "nodes", False, None),
    ("pods", "v1", "pods", True, None),
    ("deployments", "apps/v1", "deployments", True, None),
    ("hpas", "autoscaling/v2", "horizontalpodautoscalers", True, None),
    ("scaledobjects", "keda.sh/v1alpha1", "scaledobjects", True, "keda.sh"),
    ("daemonsets", "apps/v1", "daemonsets", True, None),
    ("prometheusrules", "monitoring.coreos.com/v1", "prometheusrules", True, "monitoring.coreos.com"),
    ("configmaps", "v1", "configmaps", True, None),
    # Node groups of a clusterapi Cluster Autoscaler. v1beta1 is the version Cluster API has served
    # longest; a server that serves only v1beta2 reads as unreadable (unconfirmed for CAPI >= 1.11).
    ("machinedeployments", "cluster.x-k8s.io/v1beta1", "machinedeployments", True, "cluster.x-k8s.io"),
)
# Workload kinds follow the namespaces option; cluster infrastructure is read everywhere.
_SCOPED = ("deployments", "hpas", "scaledobjects")


def _list(adapter, api_version, plural, namespaced, namespace=None):
    path = resource_path(api_version, plural, namespaced, None, namespace)
    body = adapter.request("GET", path, kind=plural, verb="LIST", namespace=namespace)
    return list((body or {}).get("items") or [])


def read_snapshot(adapter, namespaces=None):
    """One LIST per kind (per namespace for workload kinds when namespaces is set).

    A kind that RBAC forbids (403) or the server does not serve (404) is recorded in
    ``unreadable`` and its checks are skipped; any other API error propagates.
    """
    data = {"unreadable": {}, "pods_complete": True}
    try:
        groups = adapter.request("GET", "/apis", verb="DISCOVER") or {}
        data["api_groups"] = sorted(g.get("name") for g in groups.get("groups") or [])
    except K8sError as exc:
        if exc.status not in (403, 404):
            raise
        data["api_groups"] = None
    for key, api_version, plural, namespaced, group in READS:
        data[key] = []
        if group and data["api_groups"] is not None and group not in data["api_groups"]:
            continue
        scopes = list(namespaces) if (namespaces and key in _SCOPED) else [None]
        try:
            for ns in scopes:
                data[key] += _list(adapter, api_version, plural, namespaced, ns)
        except K8sError as exc:
            if exc.status not in (403, 404):
                raise
            if key == "pods" and namespaces:
                # RBAC limited to some namespaces: read those; node-wide pod checks are skipped.
                data["pods_complete"] = False
                try:
                    for ns in namespaces:
                        data[key] += _list(adapter, api_version, plural, namespaced, ns)
                    continue
                except K8sError as inner:
                    if inner.status not in (403, 404):
                        raise
                    exc = inner
            data["unreadable"][key] = str(exc)
            if key == "pods":
                data["pods_complete"] = False
    return data


# --------------------------------------------------------------------------------------
# the Markdown report
# --------------------------------------------------------------------------------------

def _md(text):
    return str(text).replace("|", "\\|").replace("\n", " ")


def _evidence_text(evidence):
    parts = []
    for key in sorted(evidence):
        value = evidence[key]
        if value in (None, [], {}, ""):
            continue
        if isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        parts.append("%s: %s" % (key, value))
    return "; ".join(parts)


def render_report(findings, counts, scope=None, unreadable=None):
    """Markdown, deterministic for the same findings (no timestamps), so reruns are idempotent."""
    lines = ["# GPU cluster audit (gpuops.llm.cluster_audit)", ""]
    lines.append("Scope: %s." % (", ".join("namespace %s" % n for n in scope) if scope else "all namespaces"))
    lines.append("")
    lines.append("| Severity | Findings |")
    lines.append("|---|---|")
    for sev in SEVERITIES:
        lines.append("| %s | %d |" % (sev, counts.get(sev, 0)))
    lines.append("")
    if unreadable:
        lines.append("Not read (checks that need them were skipped):")
        lines.append("")
        for key in sorted(unreadable):
            lines.append("- %s: %s" % (key, _md(unreadable[key])))
        lines.append("")
    if not findings:
        lines.append("No findings.")
        lines.append("")
        return "\n".join(lines)
    for sev in SEVERITIES:
        group = [f for f in findings if f["severity"] == sev]
        if not group:
            continue
        lines.append("## %s (%d)" % (sev.capitalize(), len(group)))
        lines.append("")
        lines.append("| Check | Object | Evidence | Fix |")
        lines.append("|---|---|---|---|")
        for f in group:
            cells = (f["id"], _md(f["title"]), _md(f["object"]), _md(_evidence_text(f["evidence"])), _md(f["fix"]))
            lines.append("| `%s` %s | %s | %s | %s |" % cells)
        lines.append("")
    return "\n".join(lines)
