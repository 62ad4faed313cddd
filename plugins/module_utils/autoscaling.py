# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""KEDA ScaledObjects for vLLM model Deployments, and the HPA conflict guard.

Pure part (no I/O, no Ansible, no kubernetes library):

* ``normalize_model``: validate one model's autoscaling spec and fill defaults; every problem
  names the field, the bad value and what would be valid.
* ``build_scaled_object``: the ScaledObject dict for one model.
* ``gpu_requests`` / ``gpu_kind_of``: what a Deployment asks of the GPU device plugin.
* ``check_hpa_conflicts``: refuses CPU/memory HPAs on GPU Deployments and any second autoscaler.
* ``needs_apply``: drift check that compares only the fields our field manager owns.

``reconcile`` drives it against an adapter with a ``request(method, path, ...)`` method (the
``K8s`` class of ``k8s.py``), so it can be tested with a fake.

Metric facts (shared/facts/llm-serving.md, gpu-automation-anchors.md):
* vLLM's queue gauge is ``vllm:num_requests_waiting`` with a colon, labelled ``model_name`` (the
  served model name). The production-stack router re-exports it with a ``server`` label and no
  ``model_name``, so the ``model_name`` matcher also keeps router series out of the sum.
* ``DCGM_FI_DEV_GPU_UTIL`` is not reported for MIG instances; ``DCGM_FI_PROF_GR_ENGINE_ACTIVE``
  is used there.
* KEDA's Prometheus trigger: ``serverAddress``, ``query``, ``threshold``, ``activationThreshold``;
  ``metricName`` was removed in KEDA 2.12, so it is never set.
"""
from __future__ import annotations

import copy
import json
import re

SCALEDOBJECT_API_VERSION = "keda.sh/v1alpha1"
SCALEDOBJECT_KIND = "ScaledObject"
SCALEDOBJECT_PLURAL = "scaledobjects"
SCALEDOBJECT_CRD = "scaledobjects.keda.sh"
KEDA_HPA_PREFIX = "keda-hpa-"

QUEUE_METRIC = "vllm:num_requests_waiting"
GPU_UTIL_METRIC = "DCGM_FI_DEV_GPU_UTIL"
MIG_ACTIVITY_METRIC = "DCGM_FI_PROF_GR_ENGINE_ACTIVE"
GPU_RESOURCE = "nvidia.com/gpu"
GPU_SHARED_RESOURCE = "nvidia.com/gpu.shared"
MIG_RESOURCE_PREFIX = "nvidia.com/mig-"

MANAGED_BY_LABEL = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "gpuops.llm"
MODEL_LABEL = "gpuops.llm/model"

# DCGM_FI_DEV_GPU_UTIL is a percentage (0-100); DCGM_FI_PROF_GR_ENGINE_ACTIVE is a ratio (0-1).
# The ratio is not stated in our facts files: dcgm-exporter's counters CSV describes the field as
# "Ratio of time the graphics engine is active" (UNCONFIRMED in shared/facts). The MIG query is
# multiplied by 100 so one threshold (percent) serves both.
GPU_KINDS = ("auto", "gpu", "mig")

DEFAULTS = {
    "state": "present",
    "min_replicas": 1,  # the seed: inference stays warm at 1
    "max_replicas": 8,  # the seed's ScaledObject
    "polling_interval": 30,  # KEDA's default
    # KEDA applies cooldownPeriod only to scaling to 0; 1<->N is the HPA's behavior below.
    "cooldown_period": 300,
    "queue_trigger": True,
    "queue_threshold": 5,  # production-stack's default trigger threshold
    "gpu_trigger": True,
    "gpu_threshold": 75,  # the seed: scale up when GPU > 75 % busy
    "gpu_kind": "auto",
    "scale_to_zero": False,
    "activation_threshold": 0,
    "wake_query": None,
    "wake_threshold": 1,
    "scale_down_stabilization_seconds": 300,
    "scale_down_pods": 1,
    "scale_down_period_seconds": 120,
    "scale_up_stabilization_seconds": 0,
    "scale_up_pods": 2,
    "scale_up_period_seconds": 60,
    "queue_selector": {},
    "gpu_selector": None,
    "hpa_name": None,
    "labels": {},
    "annotations": {},
}

_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_PROM_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_URL = re.compile(r"^https?://[^\s/]+")


class AutoscalingError(Exception):
    """Invalid input or a conflict; ``errors`` lists every problem found, ``str()`` joins them."""

    def __init__(self, errors):
        if isinstance(errors, str):
            errors = [errors]
        self.errors = list(errors)
        super().__init__("; ".join(self.errors))


# ---------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _format_number(value):
    """KEDA metadata values are strings; 5 -> "5", 0.5 -> "0.5", 5.0 -> "5"."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def promql_string(value):
    """A PromQL double-quoted string literal."""
    return '"%s"' % str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _selector(matchers):
    """``{a="x",b=~"y"}`` from a dict; a value starting with ``=~`` / ``!=`` / ``!~`` keeps its operator."""
    parts = []
    for key in sorted(matchers):
        value = str(matchers[key])
        op = "="
        for candidate in ("=~", "!=", "!~"):
            if value.startswith(candidate):
                op, value = candidate, value[len(candidate):]
                break
        parts.append("%s%s%s" % (key, op, promql_string(value)))
    return "{%s}" % ",".join(parts)


def normalize_model(spec, index=None, prometheus_url=None, namespace=None):
    """Validate one model entry and return it with every default filled in.

    ``prometheus_url`` and ``namespace`` are fallbacks from the module level.
    Raises ``AutoscalingError`` listing every problem.
    """
    where = "models[%s]" % index if index is not None else "model"
    if not isinstance(spec, dict):
        raise AutoscalingError("%s must be a dict, got %s" % (where, type(spec).__name__))
    model = dict(DEFAULTS)
    model.update({k: v for k, v in spec.items() if v is not None})
    errors = []

    name = model.get("name")
    if name:
        where = "%s (%s)" % (where, name)

    def err(field, message):
        errors.append("%s.%s %s" % (where, field, message))

    if not isinstance(name, str) or len(name) > 253 or not _DNS1123_SUBDOMAIN.match(name):
        err("name", "%r is not a valid ScaledObject name; valid: lowercase letters, digits, '-' and '.', "
            "starting and ending with a letter or digit, at most 253 characters" % (name,))
    model.setdefault("deployment", None)
    if not model.get("deployment"):
        model["deployment"] = name
    if not isinstance(model["deployment"], str) or not _DNS1123_SUBDOMAIN.match(model["deployment"] or ""):
        err("deployment", "%r is not a valid Deployment name" % (model["deployment"],))
    model["namespace"] = model.get("namespace") or namespace
    if not isinstance(model["namespace"], str) or not _DNS1123_LABEL.match(model["namespace"] or "") \
            or len(model["namespace"]) > 63:
        err("namespace", "%r is not a valid namespace; give namespace per model or at the top level"
            % (model["namespace"],))
    if model["state"] not in ("present", "absent"):
        err("state", "%r is not valid; valid: present, absent" % (model["state"],))
    if model["state"] == "absent":
        if errors:
            raise AutoscalingError(errors)
        return model

    model["prometheus_url"] = model.get("prometheus_url") or prometheus_url
    if not isinstance(model["prometheus_url"], str) or not _URL.match(model["prometheus_url"]):
        err("prometheus_url", "%r is not an http(s) URL of the Prometheus server, e.g. "
            "http://prometheus-operated.monitoring.svc:9090" % (model["prometheus_url"],))

    for field in ("min_replicas", "max_replicas", "polling_interval", "cooldown_period",
                  "scale_down_stabilization_seconds", "scale_up_stabilization_seconds",
                  "scale_down_pods", "scale_down_period_seconds", "scale_up_pods", "scale_up_period_seconds"):
        if not _is_int(model[field]):
            err(field, "must be a whole number, got %r" % (model[field],))
    int_ok = all(_is_int(model[f]) for f in ("min_replicas", "max_replicas"))
    if "min_replicas" not in spec or spec.get("min_replicas") is None:
        model["min_replicas"] = 0 if model["scale_to_zero"] else DEFAULTS["min_replicas"]
    elif model["scale_to_zero"] and _is_int(model["min_replicas"]) and model["min_replicas"] != 0:
        err("min_replicas", "is %d but scale_to_zero is true; scale to zero needs min_replicas 0 "
            "(or leave min_replicas unset)" % model["min_replicas"])
    if int_ok:
        if model["min_replicas"] < 0:
            err("min_replicas", "is %d; valid: 0 or more" % model["min_replicas"])
        if model["max_replicas"] < 1:
            err("max_replicas", "is %d; valid: 1 or more" % model["max_replicas"])
        if model["min_replicas"] > model["max_replicas"]:
            err("min_replicas", "(%d) is greater than max_replicas (%d); valid: min_replicas <= max_replicas"
                % (model["min_replicas"], model["max_replicas"]))
    if _is_int(model["polling_interval"]) and model["polling_interval"] < 1:
        err("polling_interval", "is %d; valid: 1 second or more" % model["polling_interval"])
    if _is_int(model["cooldown_period"]) and model["cooldown_period"] < 0:
        err("cooldown_period", "is %d; valid: 0 or more seconds" % model["cooldown_period"])
    for field in ("scale_down_stabilization_seconds", "scale_up_stabilization_seconds"):
        # The HPA API caps stabilization windows at one hour.
        if _is_int(model[field]) and not 0 <= model[field] <= 3600:
            err(field, "is %d; valid: 0 to 3600 seconds" % model[field])
    for field in ("scale_down_pods", "scale_up_pods"):
        if _is_int(model[field]) and model[field] < 1:
            err(field, "is %d; valid: 1 or more pods per period" % model[field])
    for field in ("scale_down_period_seconds", "scale_up_period_seconds"):
        # HPA scaling policies: 0 < periodSeconds <= 1800.
        if _is_int(model[field]) and not 1 <= model[field] <= 1800:
            err(field, "is %d; valid: 1 to 1800 seconds" % model[field])

    if not (model["queue_trigger"] or model["gpu_trigger"]):
        err("queue_trigger", "and gpu_trigger are both false; a ScaledObject needs at least one trigger")
    if model["queue_trigger"]:
        served = model.get("served_model_name")
        if not isinstance(served, str) or not served.strip():
            err("served_model_name", "is required for the queue trigger: the value of vLLM's model_name label "
                "(its --served-model-name, or --model when that is unset), e.g. meta-llama/Llama-3.1-8B-Instruct")
        if not _is_number(model["queue_threshold"]) or model["queue_threshold"] <= 0:
            err("queue_threshold", "is %r; valid: a number greater than 0 (waiting requests per replica)"
                % (model["queue_threshold"],))
        if not isinstance(model["queue_selector"], dict):
            err("queue_selector", "must be a dict of Prometheus label matchers")
        else:
            for key in model["queue_selector"]:
                if not _PROM_LABEL.match(str(key)) or key == "model_name":
                    err("queue_selector", "key %r is not a Prometheus label name we can add (model_name is "
                        "set from served_model_name)" % (key,))
    if model["gpu_trigger"]:
        if not _is_number(model["gpu_threshold"]) or not 0 < model["gpu_threshold"] <= 100:
            err("gpu_threshold", "is %r; valid: a percentage greater than 0 and at most 100"
                % (model["gpu_threshold"],))
        if model["gpu_kind"] not in GPU_KINDS:
            err("gpu_kind", "is %r; valid: %s" % (model["gpu_kind"], ", ".join(GPU_KINDS)))
        if model["gpu_selector"] is not None:
            if not isinstance(model["gpu_selector"], dict) or not model["gpu_selector"]:
                err("gpu_selector", "must be a non-empty dict of Prometheus label matchers")
            else:
                for key in model["gpu_selector"]:
                    if not _PROM_LABEL.match(str(key)):
                        err("gpu_selector", "key %r is not a Prometheus label name" % (key,))
    if model["scale_to_zero"]:
        if not _is_number(model["activation_threshold"]) or model["activation_threshold"] < 0:
            err("activation_threshold", "is %r; valid: a number 0 or more" % (model["activation_threshold"],))
        if model["wake_query"] is not None and (not isinstance(model["wake_query"], str)
                                                or not model["wake_query"].strip()):
            err("wake_query", "must be a non-empty PromQL query")
        if not _is_number(model["wake_threshold"]) or model["wake_threshold"] <= 0:
            err("wake_threshold", "is %r; valid: a number greater than 0" % (model["wake_threshold"],))
    hpa_name = model.get("hpa_name")
    if hpa_name is not None and (not isinstance(hpa_name, str) or not _DNS1123_SUBDOMAIN.match(hpa_name)):
        err("hpa_name", "%r is not a valid HorizontalPodAutoscaler name" % (hpa_name,))
    for field in ("labels", "annotations"):
        if not isinstance(model[field], dict):
            err(field, "must be a dict")
    if errors:
        raise AutoscalingError(errors)
    model["labels"] = {str(k): str(v) for k, v in model["labels"].items()}
    model["annotations"] = {str(k): str(v) for k, v in model["annotations"].items()}
    return model


def normalize_models(models, prometheus_url=None, namespace=None):
    """Validate every model; collect all problems, and refuse two models on one Deployment."""
    if not isinstance(models, list):
        raise AutoscalingError("models must be a list, got %s" % type(models).__name__)
    errors, out, seen_names, seen_targets = [], [], {}, {}
    for index, spec in enumerate(models):
        try:
            model = normalize_model(spec, index, prometheus_url, namespace)
        except AutoscalingError as exc:
            errors.extend(exc.errors)
            continue
        key = (model["namespace"], model["name"])
        if key in seen_names:
            errors.append("models[%d].name %r repeats models[%d] in namespace %s; give each model once"
                          % (index, model["name"], seen_names[key], model["namespace"]))
        seen_names[key] = index
        target = (model["namespace"], model["deployment"])
        if target in seen_targets and model["state"] == "present":
            errors.append("models[%d] and models[%d] both scale Deployment '%s/%s'; two ScaledObjects on one "
                          "Deployment fight over its replicas" % (seen_targets[target], index, target[0], target[1]))
        if model["state"] == "present":
            seen_targets[target] = index
        out.append(model)
    if errors:
        raise AutoscalingError(errors)
    return out


# ---------------------------------------------------------------------------------------
# Deployments and GPUs
# ---------------------------------------------------------------------------------------


def _containers(deployment):
    spec = ((deployment or {}).get("spec") or {}).get("template", {}).get("spec") or {}
    return list(spec.get("containers") or []) + list(spec.get("initContainers") or [])


def gpu_requests(deployment):
    """{resource: quantity} of NVIDIA device-plugin resources the pod template asks for."""
    found = {}
    for container in _containers(deployment):
        resources = container.get("resources") or {}
        for section in ("limits", "requests"):
            for key, value in (resources.get(section) or {}).items():
                if key in (GPU_RESOURCE, GPU_SHARED_RESOURCE) or key.startswith(MIG_RESOURCE_PREFIX):
                    found[key] = str(value)
    return found


def gpu_kind_of(deployment):
    """'mig' when it requests nvidia.com/mig-*, 'gpu' for nvidia.com/gpu(.shared), None otherwise.

    Under the ``single`` MIG strategy MIG devices are advertised as nvidia.com/gpu, so a
    Deployment cannot tell; set gpu_kind: mig explicitly there.
    """
    requests = gpu_requests(deployment)
    if any(k.startswith(MIG_RESOURCE_PREFIX) for k in requests):
        return "mig"
    if requests:
        return "gpu"
    return None


# ---------------------------------------------------------------------------------------
# The ScaledObject
# ---------------------------------------------------------------------------------------


def hpa_name_for(model):
    """The HPA KEDA creates for this ScaledObject (KEDA's default is keda-hpa-<name>)."""
    return model.get("hpa_name") or KEDA_HPA_PREFIX + model["name"]


def target_matchers(model):
    """Label matchers that select the series of this ScaledObject's own Deployment and nothing else.

    ``namespace`` and ``pod`` are the labels both scrape paths attach to a pod's series: the
    Prometheus Operator's PodMonitor relabeling (prometheus-operator v0.93.0,
    pkg/prometheus/promcfg.go generatePodMonitorConfig: __meta_kubernetes_namespace -> namespace,
    __meta_kubernetes_pod_name -> pod) and dcgm-exporter's pod-resource mapping (NVIDIA/dcgm-exporter
    internal/pkg/transformation/const.go: namespace, pod, container of the GPU consumer; read at
    4.5.3-4.8.2 and HEAD, the pinned 4.6.1-4.8.4 tag is unconfirmed). Deployment pods are named
    <deployment>-<pod-template-hash>-<suffix>, both without '-', so another Deployment whose name
    starts with this one ("llm" vs "llm-mig") never matches (PromQL regexes are anchored).
    """
    return {"namespace": model["namespace"],
            "pod": "=~%s-[a-z0-9]+-[a-z0-9]+" % model["deployment"].replace(".", "\\.")}


def queue_query(model):
    # model_name alone is ambiguous: two Deployments serving one model (a whole-GPU and a MIG
    # variant) would each scale on the sum of both queues. queue_selector may override the target
    # matchers (another scrape setup's labels) but never model_name.
    matchers = target_matchers(model)
    matchers.update(model.get("queue_selector") or {})
    matchers["model_name"] = model["served_model_name"]
    return "sum(%s%s)" % (QUEUE_METRIC, _selector(matchers))


def gpu_query(model, gpu_kind):
    matchers = model.get("gpu_selector")
    if not matchers:
        matchers = target_matchers(model)
    if gpu_kind == "mig":
        return "avg(%s%s) * 100" % (MIG_ACTIVITY_METRIC, _selector(matchers))
    return "avg(%s%s)" % (GPU_UTIL_METRIC, _selector(matchers))


def build_scaled_object(model, gpu_kind=None):
    """The ScaledObject dict for a normalized model.

    ``gpu_kind`` ('gpu' or 'mig') resolves ``gpu_kind: auto``; it defaults to 'gpu'.
    """
    kind = model.get("gpu_kind", "auto")
    if kind == "auto":
        kind = gpu_kind or "gpu"
    labels = {MANAGED_BY_LABEL: MANAGED_BY_VALUE, MODEL_LABEL: _label_value(model["name"])}
    labels.update(model.get("labels") or {})
    metadata = {"name": model["name"], "namespace": model["namespace"], "labels": labels}
    if model.get("annotations"):
        metadata["annotations"] = dict(model["annotations"])

    triggers = []
    if model["queue_trigger"]:
        meta = {"serverAddress": model["prometheus_url"], "query": queue_query(model),
                "threshold": _format_number(model["queue_threshold"])}
        if model["scale_to_zero"]:
            # Activation (0<->1) is decided by KEDA itself, not the HPA.
            meta["activationThreshold"] = _format_number(model["activation_threshold"])
        # The sum over all replicas as an AverageValue target: the HPA divides it by the replica
        # count, so the threshold means "waiting requests per replica".
        triggers.append({"type": "prometheus", "name": "queue-depth", "metricType": "AverageValue",
                         "metadata": meta})
    if model["gpu_trigger"]:
        meta = {"serverAddress": model["prometheus_url"], "query": gpu_query(model, kind),
                "threshold": _format_number(model["gpu_threshold"])}
        if model["scale_to_zero"]:
            # Busy GPUs never wake a model from zero on their own (at zero there is no series).
            meta["activationThreshold"] = _format_number(model["gpu_threshold"])
        # An average is already per replica: a Value target scales replicas by value/threshold.
        triggers.append({"type": "prometheus", "name": "gpu-activity", "metricType": "Value", "metadata": meta})
    if model["scale_to_zero"] and model.get("wake_query"):
        # Keepalive/wake trigger on a series that exists at zero replicas (router or gateway).
        triggers.append({"type": "prometheus", "name": "wake", "metricType": "AverageValue", "metadata": {
            "serverAddress": model["prometheus_url"], "query": model["wake_query"],
            "threshold": _format_number(model["wake_threshold"]),
            "activationThreshold": "0"}})

    behavior = {
        "scaleDown": {
            "stabilizationWindowSeconds": model["scale_down_stabilization_seconds"],
            "policies": [{"type": "Pods", "value": model["scale_down_pods"],
                          "periodSeconds": model["scale_down_period_seconds"]}],
        },
        "scaleUp": {
            "stabilizationWindowSeconds": model["scale_up_stabilization_seconds"],
            "policies": [{"type": "Pods", "value": model["scale_up_pods"],
                          "periodSeconds": model["scale_up_period_seconds"]}],
        },
    }
    hpa_config = {"behavior": behavior}
    if model.get("hpa_name"):
        hpa_config["name"] = model["hpa_name"]
    spec = {
        "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": model["deployment"]},
        "minReplicaCount": model["min_replicas"],
        "maxReplicaCount": model["max_replicas"],
        "pollingInterval": model["polling_interval"],
        "cooldownPeriod": model["cooldown_period"],
        "advanced": {"horizontalPodAutoscalerConfig": hpa_config},
        "triggers": triggers,
    }
    return {"apiVersion": SCALEDOBJECT_API_VERSION, "kind": SCALEDOBJECT_KIND, "metadata": metadata,
            "spec": spec}


def _label_value(value):
    """A label value from a name (names may exceed 63 characters)."""
    value = re.sub(r"[^A-Za-z0-9_.-]", "-", value)[:63].strip("-_.")
    return value or "model"


def model_warnings(model, deployment, gpu_kind):
    warnings = []
    where = "model %s (Deployment '%s/%s')" % (model["name"], model["namespace"], model["deployment"])
    if model["scale_to_zero"] and model["queue_trigger"] and not model.get("wake_query"):
        warnings.append("%s scales to zero, but vllm:num_requests_waiting has no series while no replica runs; "
                        "set wake_query to a metric that exists at zero replicas (a router or gateway counter), "
                        "or the model stays at zero until something else scales it" % where)
    if deployment is not None and not gpu_requests(deployment):
        warnings.append("%s requests no nvidia.com/gpu or nvidia.com/mig-* resource; the GPU trigger will see "
                        "no DCGM series for it" % where if model["gpu_trigger"] else
                        "%s requests no GPU resource" % where)
    if model["gpu_trigger"] and model["gpu_kind"] == "auto" and deployment is None:
        warnings.append("%s does not exist yet; the GPU trigger assumes whole GPUs (%s). Set gpu_kind: mig for "
                        "MIG slices" % (where, GPU_UTIL_METRIC))
    if gpu_kind == "mig" and model["gpu_kind"] == "gpu":
        warnings.append("%s requests MIG slices but gpu_kind is gpu: %s is not reported for MIG instances"
                        % (where, GPU_UTIL_METRIC))
    return warnings


# ---------------------------------------------------------------------------------------
# Conflicts with other autoscalers
# ---------------------------------------------------------------------------------------


def _ref(obj):
    meta = obj.get("metadata") or {}
    return "%s/%s" % (meta.get("namespace", ""), meta.get("name", ""))


def _targets(obj, deployment_name, namespace):
    meta = obj.get("metadata") or {}
    if namespace and meta.get("namespace") not in (None, namespace):
        return False
    ref = (obj.get("spec") or {}).get("scaleTargetRef") or {}
    kind = ref.get("kind") or "Deployment"  # KEDA's default target kind
    return kind == "Deployment" and ref.get("name") == deployment_name


def hpa_resource_metrics(hpa):
    """Names of the cpu/memory resources an HPA scales on ([] for none)."""
    spec = hpa.get("spec") or {}
    if "targetCPUUtilizationPercentage" in spec:  # autoscaling/v1
        return ["cpu"]
    metrics = spec.get("metrics")
    if not metrics:
        # An autoscaling/v2 HPA without metrics defaults to 80 % CPU.
        return ["cpu"]
    found = []
    for metric in metrics:
        mtype = metric.get("type")
        if mtype == "Resource":
            found.append((metric.get("resource") or {}).get("name", "?"))
        elif mtype == "ContainerResource":
            found.append((metric.get("containerResource") or {}).get("name", "?"))
    return found


def _owned_by_scaledobject(obj):
    for owner in (obj.get("metadata") or {}).get("ownerReferences") or []:
        if owner.get("kind") == SCALEDOBJECT_KIND and str(owner.get("apiVersion", "")).startswith("keda.sh/"):
            return owner.get("name")
    return None


def check_hpa_conflicts(deployment, existing_hpas, existing_scaledobjects, scaled_object_name=None,
                        hpa_name=None, namespace=None, deployment_name=None):
    """Problems that forbid putting a ScaledObject on this Deployment ([] when none).

    * a CPU/memory HPA on a Deployment that requests GPUs: CPU load does not follow LLM inference
      load (the seed's mistake #3);
    * any other HPA on the same Deployment: two autoscalers would fight over its replicas;
    * another ScaledObject on the same Deployment.
    The HPA KEDA made for our own ScaledObject (``keda-hpa-<name>``, or ``hpa_name``, or one
    owned by it) is ours and not a conflict.
    """
    meta = (deployment or {}).get("metadata") or {}
    name = deployment_name or meta.get("name")
    namespace = namespace or meta.get("namespace")
    if not name:
        raise ValueError("check_hpa_conflicts needs the Deployment's name")
    ours_hpa = hpa_name or (KEDA_HPA_PREFIX + scaled_object_name if scaled_object_name else None)
    requests = gpu_requests(deployment) if deployment else {}
    target = "Deployment '%s/%s'" % (namespace, name)
    problems = []
    for hpa in existing_hpas or []:
        if not _targets(hpa, name, namespace):
            continue
        hpa_meta = hpa.get("metadata") or {}
        owner = _owned_by_scaledobject(hpa)
        if hpa_meta.get("name") == ours_hpa or (scaled_object_name and owner == scaled_object_name):
            continue
        resources = hpa_resource_metrics(hpa)
        if owner:
            problems.append("HorizontalPodAutoscaler '%s' (created by ScaledObject '%s') already targets %s; two "
                            "autoscalers would fight over its replicas: delete ScaledObject '%s' or drop this model"
                            % (_ref(hpa), owner, target, owner))
        elif resources and requests:
            problems.append("HorizontalPodAutoscaler '%s' scales %s on %s, but the Deployment requests %s: CPU and "
                            "memory do not follow LLM inference load (queue depth and GPU activity do); delete the "
                            "HPA and let the ScaledObject scale it"
                            % (_ref(hpa), target, "/".join(resources),
                               ", ".join("%s=%s" % kv for kv in sorted(requests.items()))))
        else:
            problems.append("HorizontalPodAutoscaler '%s' already targets %s; two autoscalers would fight over its "
                            "replicas: delete the HPA or drop this model from autoscaling" % (_ref(hpa), target))
    for so in existing_scaledobjects or []:
        if not _targets(so, name, namespace):
            continue
        if (so.get("metadata") or {}).get("name") == scaled_object_name:
            continue
        problems.append("ScaledObject '%s' already targets %s; KEDA allows one ScaledObject per workload: delete it "
                        "or give this model its name" % (_ref(so), target))
    return problems


# ---------------------------------------------------------------------------------------
# Drift: compare only what our field manager owns
# ---------------------------------------------------------------------------------------


def is_subset(desired, actual):
    """Every field of ``desired`` has the same value in ``actual`` (lists compared whole)."""
    if isinstance(desired, dict):
        if not isinstance(actual, dict):
            return False
        return all(k in actual and is_subset(v, actual[k]) for k, v in desired.items())
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(desired) != len(actual):
            return False
        return all(is_subset(d, a) for d, a in zip(desired, actual))
    if _is_number(desired) and _is_number(actual):
        return desired == actual
    return desired == actual and type(desired) is type(actual)


def _field_paths(fields, prefix=()):
    """Leaf paths of a managedFields fieldsV1 tree; list items ("k:", "v:", "i:") end a path."""
    paths = set()
    for key, sub in (fields or {}).items():
        if key == ".":
            continue
        if key.startswith("f:"):
            path = prefix + (key[2:],)
            if isinstance(sub, dict) and any(k.startswith("f:") for k in sub):
                paths |= _field_paths(sub, path)
            else:
                paths.add(path)
        else:
            paths.add(prefix)
    return paths


def _desired_paths(obj, prefix=()):
    paths = set()
    for key, value in obj.items():
        path = prefix + (key,)
        if isinstance(value, dict) and value:
            paths |= _desired_paths(value, path)
        else:
            paths.add(path)
    return paths


def owned_paths(existing, field_manager):
    paths = set()
    for entry in (existing.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == field_manager and entry.get("operation") == "Apply":
            paths |= _field_paths(entry.get("fieldsV1") or {})
    return paths


def needs_apply(desired, existing, field_manager):
    """True when a server-side apply of ``desired`` would change ``existing``.

    Either a field we set differs, or a field our manager set earlier is no longer in
    ``desired`` (apply would remove it). Fields added by the server or other managers are ignored.
    """
    if existing is None:
        return True
    body = {k: v for k, v in desired.items() if k not in ("apiVersion", "kind")}
    if not is_subset(body, existing):
        return True
    wanted = _desired_paths(body)
    for path in owned_paths(existing, field_manager):
        if not path:
            continue
        if not any(path[:len(w)] == w or w[:len(path)] == path for w in wanted):
            return True
    return False


_VOLATILE_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation", "selfLink")


def clean(obj):
    """A copy without server bookkeeping and status, for diffs and results."""
    if obj is None:
        return None
    out = copy.deepcopy(obj)
    out.pop("status", None)
    meta = out.get("metadata") or {}
    for key in _VOLATILE_META:
        meta.pop(key, None)
    return out


# ---------------------------------------------------------------------------------------
# Orchestration against an adapter (k8s.K8s or a fake with the same request())
# ---------------------------------------------------------------------------------------

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"


def _path(group_version, plural, namespace, name=None):
    base = "/api/%s" % group_version if "/" not in group_version else "/apis/%s" % group_version
    path = "%s/namespaces/%s/%s" % (base, namespace, plural)
    return path + "/" + name if name else path


def _is_not_found(exc):
    return getattr(exc, "status", None) == 404


def reconcile(adapter, models, check_mode=False, diff=False, field_manager="gpuops.llm",
              require_deployment=True, force_conflicts=True):
    """Validate everything, read what is, then apply only what differs.

    ``models`` must come from ``normalize_models``. Returns a result dict
    (changed, scaled_objects, created, updated, deleted, unchanged, writes, warnings, diff).
    Raises ``AutoscalingError`` for conflicts and missing prerequisites, before any write.
    """
    warnings, errors = [], []
    reads = {}

    def get(path, **ctx):
        try:
            return adapter.request("GET", path, **ctx)
        except Exception as exc:  # the adapter raises K8sError subclasses
            if _is_not_found(exc):
                return None
            raise

    def listing(group_version, plural, namespace, kind):
        key = (group_version, plural, namespace)
        if key not in reads:
            result = get(_path(group_version, plural, namespace), kind=kind, namespace=namespace, verb="LIST")
            reads[key] = None if result is None else list(result.get("items") or [])
        return reads[key]

    plans = []
    crd_missing_reported = False
    for model in models:
        ns = model["namespace"]
        scaledobjects = listing(SCALEDOBJECT_API_VERSION, SCALEDOBJECT_PLURAL, ns, SCALEDOBJECT_KIND)
        if scaledobjects is None and check_mode:
            # A check-mode run of a whole rollout has not installed KEDA yet: predict creation.
            if not crd_missing_reported:
                warnings.append("the cluster does not serve %s %s yet (CRD %s); in check mode every ScaledObject "
                                "is predicted as created, a real run needs KEDA installed first"
                                % (SCALEDOBJECT_API_VERSION, SCALEDOBJECT_KIND, SCALEDOBJECT_CRD))
                crd_missing_reported = True
            scaledobjects = []
        if scaledobjects is None:
            # A LIST answers 404 only when the API server does not serve the resource at all.
            if not crd_missing_reported:
                errors.append("the cluster does not serve %s %s (CRD %s is not installed): install KEDA first, "
                              "for example with the gpuops.llm.keda role" % (SCALEDOBJECT_API_VERSION,
                                                                             SCALEDOBJECT_KIND, SCALEDOBJECT_CRD))
                crd_missing_reported = True
            continue
        existing = next((so for so in scaledobjects if so["metadata"]["name"] == model["name"]), None)
        if model["state"] == "absent":
            plans.append((model, None, existing))
            continue
        deployment = get(_path("apps/v1", "deployments", ns, model["deployment"]), kind="Deployment",
                         name=model["deployment"], namespace=ns)
        if deployment is None:
            if require_deployment and not check_mode:
                errors.append("Deployment '%s/%s' (models %s) does not exist; deploy the model first, or set "
                              "require_deployment: false to create the ScaledObject ahead of it"
                              % (ns, model["deployment"], model["name"]))
                continue
        hpas = listing("autoscaling/v2", "horizontalpodautoscalers", ns, "HorizontalPodAutoscaler") or []
        problems = check_hpa_conflicts(deployment, hpas, scaledobjects, scaled_object_name=model["name"],
                                       hpa_name=model.get("hpa_name"), namespace=ns,
                                       deployment_name=model["deployment"])
        errors.extend("models %s: %s" % (model["name"], p) for p in problems)
        kind = gpu_kind_of(deployment) if deployment else None
        warnings.extend(model_warnings(model, deployment, kind))
        plans.append((model, build_scaled_object(model, kind), existing))
    if errors:
        raise AutoscalingError(errors)

    result = {"changed": False, "scaled_objects": [], "created": [], "updated": [], "deleted": [],
              "unchanged": [], "warnings": warnings}
    before, after = {}, {}
    writes_at_start = getattr(adapter, "write_count", 0)
    for model, desired, existing in plans:
        ref = "%s/%s" % (model["namespace"], model["name"])
        path = _path(SCALEDOBJECT_API_VERSION, SCALEDOBJECT_PLURAL, model["namespace"], model["name"])
        if desired is None:
            if existing is not None:
                result["deleted"].append(ref)
                before[ref], after[ref] = clean(existing), None
                if not check_mode:
                    try:
                        adapter.request("DELETE", path, body={"kind": "DeleteOptions", "apiVersion": "v1",
                                                              "propagationPolicy": "Background"},
                                        kind=SCALEDOBJECT_KIND, name=model["name"], namespace=model["namespace"])
                    except Exception as exc:
                        if not _is_not_found(exc):
                            raise
            continue
        if not needs_apply(desired, existing, field_manager):
            result["unchanged"].append(ref)
            result["scaled_objects"].append(clean(existing))
            continue
        (result["created"] if existing is None else result["updated"]).append(ref)
        before[ref], after[ref] = clean(existing), desired
        stored = desired
        if not check_mode:
            query = [("fieldManager", field_manager), ("force", "true" if force_conflicts else "false")]
            stored = adapter.request("PATCH", path, body=json.dumps(desired), query=query,
                                     content_type=APPLY_CONTENT_TYPE, kind=SCALEDOBJECT_KIND, name=model["name"],
                                     namespace=model["namespace"], verb="APPLY")
        result["scaled_objects"].append(clean(stored))
    result["changed"] = bool(result["created"] or result["updated"] or result["deleted"])
    result["writes"] = getattr(adapter, "write_count", 0) - writes_at_start
    if diff:
        result["diff"] = {"before": before, "after": after}
    return result
