#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: model_autoscaler
short_description: KEDA ScaledObjects that scale vLLM model Deployments on queue depth and GPU activity
version_added: 0.1.0
description:
  - Creates, updates or deletes one KEDA C(ScaledObject) per model, in one call for all models.
  - Each ScaledObject has Prometheus triggers on the model's queue depth,
    C(sum(vllm:num_requests_waiting{model_name="<served name>"})), and on GPU activity,
    C(avg(DCGM_FI_DEV_GPU_UTIL{...})) for whole GPUs or C(avg(DCGM_FI_PROF_GR_ENGINE_ACTIVE{...}) * 100) for MIG
    slices, where C(DCGM_FI_DEV_GPU_UTIL) is not reported. It never sets the trigger field C(metricName), which
    KEDA 2.12 removed.
  - The HPA that KEDA creates gets a C(behavior) with a scale-down stabilization window, so replicas of slow-starting
    GPU pods do not flap.
  - Refuses a CPU or memory HorizontalPodAutoscaler on a Deployment that requests GPUs, any other HPA or
    ScaledObject on the same Deployment, and a cluster without the ScaledObject CRD. All of it is checked for
    every model before anything is written.
  - Applies with server-side apply (field manager C(gpuops.llm)) and compares only the fields it owns, so a rerun
    sends no write request.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    support: full
    description: Check mode reads the cluster, runs every check and predicts the same change, and writes nothing.
  diff_mode:
    support: full
    description: The diff holds every changed ScaledObject before and after, keyed by C(namespace/name).
  idempotent:
    support: full
    description: A second run with the same models reports no change and sends no write request.
options:
  models:
    description:
      - One entry per model to autoscale.
    type: list
    elements: dict
    required: true
    suboptions:
      name:
        description:
          - Name of the ScaledObject (a DNS subdomain). KEDA names its HPA C(keda-hpa-<name>).
        type: str
        required: true
      state:
        description:
          - V(absent) deletes the model's ScaledObject; KEDA then deletes its HPA and leaves the replicas as they are.
        type: str
        choices: [present, absent]
        default: present
      deployment:
        description:
          - Name of the Deployment to scale. Defaults to O(models[].name).
        type: str
      namespace:
        description:
          - Namespace of the Deployment and the ScaledObject. Defaults to O(namespace).
        type: str
      served_model_name:
        description:
          - The value of vLLM's C(model_name) metric label, that is its C(--served-model-name) (or C(--model)
            when that is unset). Required when O(models[].queue_trigger=true).
        type: str
      prometheus_url:
        description:
          - Address of the Prometheus server KEDA queries. Defaults to O(prometheus_url).
        type: str
      min_replicas:
        description:
          - Fewest replicas. Defaults to V(1), or V(0) when O(models[].scale_to_zero=true).
        type: int
      max_replicas:
        description:
          - Most replicas.
        type: int
        default: 8
      polling_interval:
        description:
          - Seconds between KEDA's trigger checks.
        type: int
        default: 30
      cooldown_period:
        description:
          - Seconds after the last active trigger before KEDA scales to zero. It only applies to scaling to
            zero; 1 to N is governed by the HPA behavior.
        type: int
        default: 300
      queue_trigger:
        description:
          - Scale on the model's waiting requests (C(vllm:num_requests_waiting)).
        type: bool
        default: true
      queue_threshold:
        description:
          - Target waiting requests per replica; must be greater than 0.
        type: float
        default: 5
      queue_selector:
        description:
          - Prometheus label matchers for the queue query, label name to value. By default the query
            selects C(model_name) and this Deployment's own pods (C(namespace) and a C(pod) regex
            C(<deployment>-<hash>-<suffix>), the labels a PodMonitor attaches), so two Deployments
            serving one model never scale on each other's queue. Keys given here replace those
            defaults (another scrape setup's labels); C(model_name) is always set from
            C(served_model_name). A value that starts with C(=~), C(!=) or C(!~) uses that operator.
        type: dict
        default: {}
      gpu_trigger:
        description:
          - Scale on GPU activity from the DCGM exporter.
        type: bool
        default: true
      gpu_threshold:
        description:
          - Target GPU activity in percent (greater than 0, at most 100).
        type: float
        default: 75
      gpu_kind:
        description:
          - V(gpu) queries C(DCGM_FI_DEV_GPU_UTIL); V(mig) queries C(DCGM_FI_PROF_GR_ENGINE_ACTIVE) (a ratio,
            times 100), because C(DCGM_FI_DEV_GPU_UTIL) is not reported for MIG instances.
          - V(auto) picks V(mig) when the Deployment requests C(nvidia.com/mig-*), else V(gpu). Under the
            C(single) MIG strategy MIG slices look like C(nvidia.com/gpu); set V(mig) there.
        type: str
        choices: [auto, gpu, mig]
        default: auto
      gpu_selector:
        description:
          - Prometheus label matchers for the GPU query, label name to value. Defaults to the Deployment's
            namespace (C(namespace) label) and pods (C(pod) matching C(<deployment>-[a-z0-9]+-[a-z0-9]+)), as
            labelled by the DCGM exporter's Kubernetes mapping.
        type: dict
      scale_to_zero:
        description:
          - Allow zero replicas; KEDA activates the model when a trigger exceeds O(models[].activation_threshold).
        type: bool
        default: false
      activation_threshold:
        description:
          - Queue depth above which a model at zero replicas is activated (KEDA's C(activationThreshold)).
        type: float
        default: 0
      wake_query:
        description:
          - With O(models[].scale_to_zero), a PromQL query on a series that exists while no replica runs (a router
            or gateway request counter). vLLM's own queue metric vanishes at zero replicas.
        type: str
      wake_threshold:
        description:
          - Threshold of the O(models[].wake_query) trigger.
        type: float
        default: 1
      scale_down_stabilization_seconds:
        description:
          - HPA scale-down stabilization window in seconds (0 to 3600).
        type: int
        default: 300
      scale_down_pods:
        description:
          - At most this many pods are removed per O(models[].scale_down_period_seconds).
        type: int
        default: 1
      scale_down_period_seconds:
        description:
          - Period of the scale-down policy (1 to 1800).
        type: int
        default: 120
      scale_up_stabilization_seconds:
        description:
          - HPA scale-up stabilization window in seconds (0 to 3600).
        type: int
        default: 0
      scale_up_pods:
        description:
          - At most this many pods are added per O(models[].scale_up_period_seconds).
        type: int
        default: 2
      scale_up_period_seconds:
        description:
          - Period of the scale-up policy (1 to 1800).
        type: int
        default: 60
      hpa_name:
        description:
          - Name for the HPA KEDA creates, instead of C(keda-hpa-<name>).
        type: str
      labels:
        description:
          - Extra labels for the ScaledObject.
        type: dict
        default: {}
      annotations:
        description:
          - Annotations for the ScaledObject.
        type: dict
        default: {}
  namespace:
    description:
      - Namespace for models that do not give one.
    type: str
  prometheus_url:
    description:
      - Prometheus address for models that do not give one, e.g. V(http://prometheus-operated.monitoring.svc:9090).
    type: str
  require_deployment:
    description:
      - Fail when a model's Deployment does not exist. In check mode a missing Deployment is only a warning, so a
        first dry run of a whole rollout can predict its changes.
    type: bool
    default: true
notes:
  - Needs KEDA's C(ScaledObject) CRD (C(scaledobjects.keda.sh)); the C(gpuops.llm.keda) role installs it.
seealso:
  - name: Autoscaling guide
    description: Triggers, thresholds, scale to zero and the HPA conflict rules.
    link: https://github.com/gpuops/llm/blob/main/docs/autoscaling.md
"""

EXAMPLES = r"""
- name: Scale two models on queue depth and GPU activity
  gpuops.llm.model_autoscaler:
    namespace: ai-serving
    prometheus_url: http://prometheus-operated.monitoring.svc:9090
    models:
      - name: llama3-8b
        served_model_name: meta-llama/Llama-3.1-8B-Instruct
        min_replicas: 1
        max_replicas: 8
      - name: qwen-mig
        deployment: qwen25-7b
        served_model_name: Qwen/Qwen2.5-7B-Instruct
        gpu_kind: mig
        scale_to_zero: true
        wake_query: sum(rate(vllm:num_incoming_requests_total[1m]))
  delegate_to: localhost
  run_once: true

- name: Preview the change
  gpuops.llm.model_autoscaler:
    namespace: ai-serving
    prometheus_url: http://prometheus-operated.monitoring.svc:9090
    models:
      - name: llama3-8b
        served_model_name: meta-llama/Llama-3.1-8B-Instruct
        queue_threshold: 10
  check_mode: true
  diff: true
"""

RETURN = r"""
scaled_objects:
  description: The ScaledObjects as stored (as they would be stored in check mode), without server bookkeeping.
  returned: success
  type: list
  elements: dict
created:
  description: C(namespace/name) of ScaledObjects created (or that would be).
  returned: success
  type: list
  elements: str
  sample: [ai-serving/llama3-8b]
updated:
  description: C(namespace/name) of ScaledObjects changed (or that would be).
  returned: success
  type: list
  elements: str
  sample: []
deleted:
  description: C(namespace/name) of ScaledObjects deleted (or that would be).
  returned: success
  type: list
  elements: str
  sample: []
unchanged:
  description: C(namespace/name) of ScaledObjects already as wanted.
  returned: success
  type: list
  elements: str
  sample: [ai-serving/qwen-mig]
writes:
  description: Write requests sent to the API server. Always 0 in check mode and on a rerun.
  returned: success
  type: int
  sample: 1
diff:
  description: Changed ScaledObjects before and after. Only in diff mode.
  returned: when diff mode is on
  type: dict
"""

import copy

from ansible.module_utils.basic import AnsibleModule, missing_required_lib

from ansible_collections.gpuops.llm.plugins.module_utils.autoscaling import (
    DEFAULTS,
    AutoscalingError,
    normalize_models,
    reconcile,
)
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    AUTH_ARG_SPEC,
    AUTH_KEYS,
    FIELD_MANAGER,
    HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR,
    K8s,
    K8sError,
)


def _opt(kind, **extra):
    spec = {"type": kind}
    spec.update(extra)
    return spec


MODEL_SPEC = {
    "name": _opt("str", required=True),
    "state": _opt("str", choices=["present", "absent"], default=DEFAULTS["state"]),
    "deployment": _opt("str"),
    "namespace": _opt("str"),
    "served_model_name": _opt("str"),
    "prometheus_url": _opt("str"),
    "min_replicas": _opt("int"),
    "max_replicas": _opt("int", default=DEFAULTS["max_replicas"]),
    "polling_interval": _opt("int", default=DEFAULTS["polling_interval"]),
    "cooldown_period": _opt("int", default=DEFAULTS["cooldown_period"]),
    "queue_trigger": _opt("bool", default=DEFAULTS["queue_trigger"]),
    "queue_threshold": _opt("float", default=DEFAULTS["queue_threshold"]),
    "queue_selector": _opt("dict", default={}),
    "gpu_trigger": _opt("bool", default=DEFAULTS["gpu_trigger"]),
    "gpu_threshold": _opt("float", default=DEFAULTS["gpu_threshold"]),
    "gpu_kind": _opt("str", choices=["auto", "gpu", "mig"], default=DEFAULTS["gpu_kind"]),
    "gpu_selector": _opt("dict"),
    "scale_to_zero": _opt("bool", default=DEFAULTS["scale_to_zero"]),
    "activation_threshold": _opt("float", default=DEFAULTS["activation_threshold"]),
    "wake_query": _opt("str"),
    "wake_threshold": _opt("float", default=DEFAULTS["wake_threshold"]),
    "scale_down_stabilization_seconds": _opt("int", default=DEFAULTS["scale_down_stabilization_seconds"]),
    "scale_down_pods": _opt("int", default=DEFAULTS["scale_down_pods"]),
    "scale_down_period_seconds": _opt("int", default=DEFAULTS["scale_down_period_seconds"]),
    "scale_up_stabilization_seconds": _opt("int", default=DEFAULTS["scale_up_stabilization_seconds"]),
    "scale_up_pods": _opt("int", default=DEFAULTS["scale_up_pods"]),
    "scale_up_period_seconds": _opt("int", default=DEFAULTS["scale_up_period_seconds"]),
    "hpa_name": _opt("str"),
    "labels": _opt("dict", default={}),
    "annotations": _opt("dict", default={}),
}


def argument_spec():
    spec = copy.deepcopy(AUTH_ARG_SPEC)
    spec.update(
        models={"type": "list", "elements": "dict", "required": True, "options": copy.deepcopy(MODEL_SPEC)},
        namespace={"type": "str"},
        prometheus_url={"type": "str"},
        require_deployment={"type": "bool", "default": True},
    )
    return spec


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        # Validate every model before touching the cluster (and before requiring the library).
        models = normalize_models(params["models"], prometheus_url=params["prometheus_url"],
                                  namespace=params["namespace"])
    except AutoscalingError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors)
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    try:
        adapter = K8s.from_params({k: params.get(k) for k in AUTH_KEYS})
        result = reconcile(adapter, models, check_mode=module.check_mode, diff=module._diff,
                           field_manager=FIELD_MANAGER, require_deployment=params["require_deployment"])
    except AutoscalingError as exc:
        module.fail_json(msg=str(exc), errors=exc.errors, writes=0)
    except K8sError as exc:
        module.fail_json(msg=str(exc), api_error=exc.to_dict())
    for warning in result.pop("warnings"):
        module.warn(warning)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
