# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""ScaledObject shape, thresholds, scale to zero, HPA conflicts and drift.

Expected names and values come from shared/facts/llm-serving.md (part C, KEDA; part B, vLLM
metrics) and gpu-automation-anchors.md (DCGM), not from the implementation.
"""
from __future__ import annotations

import copy
import json

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import autoscaling as a

PROM = "http://prometheus-operated.monitoring.svc:9090"
SERVED = "meta-llama/Llama-3.1-8B-Instruct"


def model(**kw):
    spec = {"name": "llama3-8b", "namespace": "ai-serving", "served_model_name": SERVED, "prometheus_url": PROM}
    spec.update(kw)
    return a.normalize_model(spec)


def deployment(name="llama3-8b", ns="ai-serving", resources=None):
    resources = {"limits": {"nvidia.com/gpu": "1"}} if resources is None else resources
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"template": {"spec": {"containers": [{"name": "vllm", "resources": resources}]}}}}


def triggers_by_name(so):
    return {t["name"]: t for t in so["spec"]["triggers"]}


# ----------------------------------------------------------------------------- shape


def test_scaledobject_identity_and_target():
    so = a.build_scaled_object(model(), "gpu")
    assert so["apiVersion"] == "keda.sh/v1alpha1"
    assert so["kind"] == "ScaledObject"
    assert so["metadata"]["name"] == "llama3-8b" and so["metadata"]["namespace"] == "ai-serving"
    assert so["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment", "name": "llama3-8b"}


def test_queue_trigger_uses_colon_metric_and_served_name():
    so = a.build_scaled_object(model(), "gpu")
    queue = triggers_by_name(so)["queue-depth"]
    assert queue["type"] == "prometheus"
    query = queue["metadata"]["query"]
    assert "vllm:num_requests_waiting" in query
    assert "vllm_num_requests_waiting" not in query  # the seed's underscore spelling never matches vLLM
    assert 'model_name="%s"' % SERVED in query
    assert query.startswith("sum(")
    assert queue["metadata"]["serverAddress"] == PROM
    assert queue["metadata"]["threshold"] == "5"  # production-stack default, as a string


def test_no_metricname_anywhere():
    so = a.build_scaled_object(model(scale_to_zero=True, wake_query="sum(rate(x_total[1m]))"), "mig")
    for trigger in so["spec"]["triggers"]:
        assert "metricName" not in trigger["metadata"]  # removed in KEDA 2.12
        assert all(isinstance(v, str) for v in trigger["metadata"].values())  # KEDA metadata is map[string]string


def test_whole_gpu_uses_dcgm_gpu_util():
    so = a.build_scaled_object(model(), "gpu")
    gpu = triggers_by_name(so)["gpu-activity"]
    query = gpu["metadata"]["query"]
    assert query.startswith("avg(DCGM_FI_DEV_GPU_UTIL{")
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" not in query
    assert gpu["metadata"]["threshold"] == "75"
    assert 'namespace="ai-serving"' in query and 'pod=~"llama3-8b-' in query


def test_mig_uses_gr_engine_active_scaled_to_percent():
    so = a.build_scaled_object(model(), "mig")
    query = triggers_by_name(so)["gpu-activity"]["metadata"]["query"]
    assert "DCGM_FI_DEV_GPU_UTIL" not in query  # absent on MIG instances
    assert query.startswith("avg(DCGM_FI_PROF_GR_ENGINE_ACTIVE{")
    assert query.endswith(") * 100")  # ratio 0-1 -> percent, so the same 75 threshold applies
    assert triggers_by_name(so)["gpu-activity"]["metadata"]["threshold"] == "75"


def test_gpu_kind_explicit_overrides_auto_detection():
    so = a.build_scaled_object(model(gpu_kind="mig"), "gpu")
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in triggers_by_name(so)["gpu-activity"]["metadata"]["query"]


def test_metric_types_fit_the_queries():
    trig = triggers_by_name(a.build_scaled_object(model(), "gpu"))
    assert trig["queue-depth"]["metricType"] == "AverageValue"  # sum / replicas = per-replica queue
    assert trig["gpu-activity"]["metricType"] == "Value"  # an average is already per replica


def test_replicas_timing_and_behavior():
    so = a.build_scaled_object(model(min_replicas=2, max_replicas=6, polling_interval=15, cooldown_period=360,
                                     scale_down_stabilization_seconds=600), "gpu")
    spec = so["spec"]
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (2, 6)
    assert (spec["pollingInterval"], spec["cooldownPeriod"]) == (15, 360)
    behavior = spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]
    assert behavior["scaleDown"]["stabilizationWindowSeconds"] == 600
    assert behavior["scaleDown"]["policies"][0]["type"] == "Pods"
    assert "name" not in spec["advanced"]["horizontalPodAutoscalerConfig"]


def test_defaults_follow_seed():
    spec = a.build_scaled_object(model(), "gpu")["spec"]
    # The seed's ScaledObject: min 1, max 8; the inference pool stays warm.
    assert (spec["minReplicaCount"], spec["maxReplicaCount"]) == (1, 8)
    assert spec["advanced"]["horizontalPodAutoscalerConfig"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] > 0


def test_scale_to_zero_sets_min_zero_and_activation():
    so = a.build_scaled_object(model(scale_to_zero=True, activation_threshold=2), "gpu")
    assert so["spec"]["minReplicaCount"] == 0
    assert triggers_by_name(so)["queue-depth"]["metadata"]["activationThreshold"] == "2"


def test_scale_to_zero_wake_trigger():
    wake = "sum(rate(vllm:num_incoming_requests_total[1m]))"
    so = a.build_scaled_object(model(scale_to_zero=True, wake_query=wake), "gpu")
    trig = triggers_by_name(so)
    assert trig["wake"]["metadata"]["query"] == wake
    assert "activationThreshold" in trig["wake"]["metadata"]


def test_scale_to_zero_without_wake_query_warns():
    m = model(scale_to_zero=True)
    warnings = a.model_warnings(m, deployment(), "gpu")
    assert any("wake_query" in w for w in warnings)


def test_no_activation_threshold_without_scale_to_zero():
    so = a.build_scaled_object(model(), "gpu")
    assert all("activationThreshold" not in t["metadata"] for t in so["spec"]["triggers"])


def test_queue_selector_and_quoting():
    m = model(served_model_name='we"ird', queue_selector={"namespace": "ai-serving", "pod": "=~llama.*"})
    query = a.queue_query(m)
    assert 'model_name="we\\"ird"' in query
    assert 'namespace="ai-serving"' in query and 'pod=~"llama.*"' in query


def test_single_trigger_variants():
    only_queue = a.build_scaled_object(model(gpu_trigger=False), "gpu")
    assert [t["name"] for t in only_queue["spec"]["triggers"]] == ["queue-depth"]
    only_gpu = a.build_scaled_object(model(queue_trigger=False, served_model_name=None), "gpu")
    assert [t["name"] for t in only_gpu["spec"]["triggers"]] == ["gpu-activity"]


def test_scaledobject_is_json_serialisable():
    json.dumps(a.build_scaled_object(model(), "mig"))


# ----------------------------------------------------------------------------- validation


@pytest.mark.parametrize("field,value,needle", [
    ("queue_threshold", 0, "queue_threshold"),
    ("queue_threshold", -3, "queue_threshold"),
    ("gpu_threshold", 0, "gpu_threshold"),
    ("gpu_threshold", 150, "gpu_threshold"),
    ("max_replicas", 0, "max_replicas"),
    ("min_replicas", -1, "min_replicas"),
    ("gpu_kind", "tpu", "gpu_kind"),
    ("prometheus_url", "prometheus:9090", "prometheus_url"),
    ("scale_down_stabilization_seconds", 4000, "scale_down_stabilization_seconds"),
    ("name", "Llama_3", ".name"),
])
def test_bad_values_name_the_field(field, value, needle):
    with pytest.raises(a.AutoscalingError) as exc:
        model(**{field: value})
    assert needle in str(exc.value)
    assert repr(value) in str(exc.value) or str(value) in str(exc.value)


def test_min_greater_than_max():
    with pytest.raises(a.AutoscalingError) as exc:
        model(min_replicas=5, max_replicas=2)
    assert "min_replicas" in str(exc.value) and "max_replicas" in str(exc.value)


def test_served_model_name_required_for_queue_trigger():
    with pytest.raises(a.AutoscalingError) as exc:
        model(served_model_name=None)
    assert "served_model_name" in str(exc.value)


def test_scale_to_zero_conflicts_with_positive_min():
    with pytest.raises(a.AutoscalingError) as exc:
        model(scale_to_zero=True, min_replicas=1)
    assert "scale_to_zero" in str(exc.value)


def test_all_errors_reported_at_once():
    with pytest.raises(a.AutoscalingError) as exc:
        a.normalize_models([
            {"name": "m1", "namespace": "ns", "served_model_name": "x", "prometheus_url": PROM, "queue_threshold": 0},
            {"name": "m2", "namespace": "ns", "prometheus_url": PROM, "gpu_threshold": -1},
        ])
    assert len(exc.value.errors) >= 3
    assert any("models[0]" in e for e in exc.value.errors) and any("models[1]" in e for e in exc.value.errors)


def test_two_models_on_one_deployment_rejected():
    base = {"namespace": "ns", "served_model_name": "x", "prometheus_url": PROM, "deployment": "shared"}
    with pytest.raises(a.AutoscalingError) as exc:
        a.normalize_models([dict(base, name="a"), dict(base, name="b")])
    assert "shared" in str(exc.value)


def test_module_level_fallbacks():
    [m] = a.normalize_models([{"name": "m", "served_model_name": "x"}], prometheus_url=PROM, namespace="ns")
    assert m["namespace"] == "ns" and m["prometheus_url"] == PROM and m["deployment"] == "m"


# ----------------------------------------------------------------------------- GPU detection


def test_gpu_kind_detection():
    assert a.gpu_kind_of(deployment()) == "gpu"
    assert a.gpu_kind_of(deployment(resources={"limits": {"nvidia.com/mig-1g.10gb": 1}})) == "mig"
    assert a.gpu_kind_of(deployment(resources={"requests": {"cpu": "2"}})) is None


# ----------------------------------------------------------------------------- conflicts


def hpa(name, target="llama3-8b", ns="ai-serving", metrics=None, owner=None, v1_cpu=None):
    obj = {"metadata": {"name": name, "namespace": ns},
           "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": target},
                    "minReplicas": 1, "maxReplicas": 4}}
    if metrics is not None:
        obj["spec"]["metrics"] = metrics
    if v1_cpu is not None:
        obj["spec"]["targetCPUUtilizationPercentage"] = v1_cpu
    if owner:
        obj["metadata"]["ownerReferences"] = [{"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject",
                                               "name": owner}]
    return obj


CPU_METRIC = [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization",
                                                                          "averageUtilization": 70}}}]


def test_cpu_hpa_on_gpu_deployment_refused_and_named():
    problems = a.check_hpa_conflicts(deployment(), [hpa("llama-cpu", metrics=CPU_METRIC)], [], "llama3-8b")
    assert len(problems) == 1
    assert "ai-serving/llama-cpu" in problems[0] and "cpu" in problems[0] and "nvidia.com/gpu" in problems[0]


def test_default_cpu_hpa_v1_refused():
    problems = a.check_hpa_conflicts(deployment(), [hpa("old", v1_cpu=80)], [], "llama3-8b")
    assert problems and "old" in problems[0]


def test_memory_hpa_refused():
    mem = [{"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization"}}}]
    problems = a.check_hpa_conflicts(deployment(), [hpa("mem", metrics=mem)], [], "llama3-8b")
    assert problems and "memory" in problems[0]


def test_any_other_hpa_on_same_deployment_refused():
    ext = [{"type": "External", "external": {"metric": {"name": "q"}, "target": {"type": "Value", "value": "1"}}}]
    problems = a.check_hpa_conflicts(deployment(), [hpa("custom", metrics=ext)], [], "llama3-8b")
    assert len(problems) == 1 and "ai-serving/custom" in problems[0]


def test_our_own_keda_hpa_is_not_a_conflict():
    ext = [{"type": "External", "external": {"metric": {"name": "s0-prometheus"}, "target": {"type": "Value"}}}]
    ours = hpa("keda-hpa-llama3-8b", metrics=ext, owner="llama3-8b")
    assert a.check_hpa_conflicts(deployment(), [ours], [], "llama3-8b") == []
    renamed = hpa("custom-name", metrics=ext)
    assert a.check_hpa_conflicts(deployment(), [renamed], [], "llama3-8b", hpa_name="custom-name") == []


def test_hpa_of_another_scaledobject_is_named():
    theirs = hpa("keda-hpa-other", owner="other")
    problems = a.check_hpa_conflicts(deployment(), [theirs], [], "llama3-8b")
    assert problems and "other" in problems[0]


def test_hpas_on_other_targets_ignored():
    others = [hpa("x", target="different", metrics=CPU_METRIC), hpa("y", ns="elsewhere", metrics=CPU_METRIC)]
    assert a.check_hpa_conflicts(deployment(), others, [], "llama3-8b") == []


def test_cpu_hpa_on_cpu_deployment_is_still_a_second_autoscaler():
    problems = a.check_hpa_conflicts(deployment(resources={}), [hpa("cpu", metrics=CPU_METRIC)], [], "llama3-8b")
    assert len(problems) == 1 and "fight" in problems[0]


def test_other_scaledobject_on_same_deployment_refused():
    so = {"metadata": {"name": "someone-else", "namespace": "ai-serving"},
          "spec": {"scaleTargetRef": {"name": "llama3-8b"}}}
    problems = a.check_hpa_conflicts(deployment(), [], [so], "llama3-8b")
    assert problems and "someone-else" in problems[0]
    same = copy.deepcopy(so)
    same["metadata"]["name"] = "llama3-8b"
    assert a.check_hpa_conflicts(deployment(), [], [same], "llama3-8b") == []


# ----------------------------------------------------------------------------- drift


def stored(desired, manager="gpuops.llm", extra_fields=None):
    """What an API server would return after our apply: desired + server fields + managedFields."""
    obj = copy.deepcopy(desired)
    obj["metadata"].update({"uid": "u", "resourceVersion": "7", "generation": 1,
                            "finalizers": ["finalizer.keda.sh"]})
    obj["status"] = {"conditions": []}

    def fields(value):
        if isinstance(value, dict) and value:
            return {"f:" + k: fields(v) for k, v in value.items()}
        return {}

    tree = fields({k: v for k, v in desired.items() if k not in ("apiVersion", "kind")})
    if extra_fields:
        tree.update(extra_fields)
    obj["metadata"]["managedFields"] = [{"manager": manager, "operation": "Apply", "fieldsV1": tree},
                                        {"manager": "keda", "operation": "Update",
                                         "fieldsV1": {"f:status": {}, "f:metadata": {"f:finalizers": {}}}}]
    return obj


def test_no_apply_when_only_server_fields_differ():
    desired = a.build_scaled_object(model(), "gpu")
    assert a.needs_apply(desired, stored(desired), "gpuops.llm") is False


def test_apply_when_owned_value_changes():
    desired = a.build_scaled_object(model(), "gpu")
    existing = stored(desired)
    changed = a.build_scaled_object(model(queue_threshold=10), "gpu")
    assert a.needs_apply(changed, existing, "gpuops.llm") is True


def test_apply_when_owned_field_dropped():
    old = a.build_scaled_object(model(annotations={"team": "ml"}), "gpu")
    new = a.build_scaled_object(model(), "gpu")
    assert a.needs_apply(new, stored(old), "gpuops.llm") is True


def test_apply_when_missing():
    assert a.needs_apply(a.build_scaled_object(model(), "gpu"), None, "gpuops.llm") is True


# ----------------------------------------------------------------------------- reconcile with a fake API


class FakeApi:
    """Answers the reads reconcile makes; records writes."""

    def __init__(self, objects, served=True):
        self.objects = objects  # path -> object
        self.served = served
        self.calls = []
        self.write_count = 0

    def request(self, method, path, body=None, query=None, content_type=None, **_):
        self.calls.append((method, path))
        if method != "GET":
            self.write_count += 1
        if method == "PATCH":
            obj = json.loads(body)
            self.objects[path] = stored(obj)
            return self.objects[path]
        if method == "DELETE":
            self.objects.pop(path, None)
            return {}
        if path.endswith("/scaledobjects"):
            if not self.served:
                raise type("NotFound", (Exception,), {"status": 404})()
            return {"items": [v for k, v in self.objects.items() if k.startswith(path + "/")]}
        if path.endswith("/horizontalpodautoscalers"):
            return {"items": [v for k, v in self.objects.items() if k.startswith(path + "/")]}
        if path in self.objects:
            return self.objects[path]
        raise type("NotFound", (Exception,), {"status": 404})()


DEP_PATH = "/apis/apps/v1/namespaces/ai-serving/deployments/llama3-8b"
SO_PATH = "/apis/keda.sh/v1alpha1/namespaces/ai-serving/scaledobjects/llama3-8b"
HPA_BASE = "/apis/autoscaling/v2/namespaces/ai-serving/horizontalpodautoscalers"


def test_reconcile_create_then_rerun_writes_nothing():
    api = FakeApi({DEP_PATH: deployment(resources={"limits": {"nvidia.com/mig-3g.40gb": 1}})})
    first = a.reconcile(api, [model()], diff=True)
    assert first["changed"] and first["created"] == ["ai-serving/llama3-8b"] and first["writes"] == 1
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in json.dumps(api.objects[SO_PATH])  # auto-detected MIG
    assert first["diff"]["before"]["ai-serving/llama3-8b"] is None
    second = a.reconcile(api, [model()])
    assert not second["changed"] and second["writes"] == 0 and second["unchanged"] == ["ai-serving/llama3-8b"]
    assert all(method == "GET" for method, _unused in api.calls[-3:])


def test_reconcile_check_mode_predicts_and_writes_nothing():
    api = FakeApi({DEP_PATH: deployment()})
    result = a.reconcile(api, [model()], check_mode=True)
    assert result["changed"] and result["writes"] == 0 and SO_PATH not in api.objects


def test_reconcile_refuses_before_any_write():
    api = FakeApi({DEP_PATH: deployment(), HPA_BASE + "/llama-cpu": hpa("llama-cpu", metrics=CPU_METRIC)})
    with pytest.raises(a.AutoscalingError) as exc:
        a.reconcile(api, [model()])
    assert "ai-serving/llama-cpu" in str(exc.value) and api.write_count == 0


def test_reconcile_without_crd_says_install_keda():
    api = FakeApi({DEP_PATH: deployment()}, served=False)
    with pytest.raises(a.AutoscalingError) as exc:
        a.reconcile(api, [model()])
    assert "scaledobjects.keda.sh" in str(exc.value) and "KEDA" in str(exc.value)
    # Check mode of a whole rollout runs before KEDA exists: it predicts, with a warning.
    predicted = a.reconcile(api, [model()], check_mode=True)
    assert predicted["created"] == ["ai-serving/llama3-8b"] and predicted["writes"] == 0
    assert any("scaledobjects.keda.sh" in w for w in predicted["warnings"])


def test_reconcile_missing_deployment_fails_outside_check_mode_only():
    api = FakeApi({})
    with pytest.raises(a.AutoscalingError) as exc:
        a.reconcile(api, [model()])
    assert "ai-serving/llama3-8b" in str(exc.value)
    result = a.reconcile(api, [model()], check_mode=True)
    assert result["changed"] and any("does not exist" in w for w in result["warnings"])


def test_reconcile_absent_deletes():
    api = FakeApi({DEP_PATH: deployment()})
    a.reconcile(api, [model()])
    gone = a.reconcile(api, [a.normalize_model({"name": "llama3-8b", "namespace": "ai-serving", "state": "absent"})])
    assert gone["deleted"] == ["ai-serving/llama3-8b"] and SO_PATH not in api.objects


# ----------------------------------------------------------------------------- one query per target
# Two Deployments serving ONE model (the testbed's llama31-8b on whole A100s and llama31-8b-mig on
# H100 MIG slices, both hugging-quants/Meta-Llama-3.1-8B-Instruct-AWQ-INT4) in one namespace. The
# series carry the labels the scrape attaches: PodMonitor relabeling gives namespace and pod
# (prometheus-operator v0.93.0 pkg/prometheus/promcfg.go), dcgm-exporter's pod mapping gives
# namespace, pod, container (NVIDIA/dcgm-exporter internal/pkg/transformation/const.go, read at
# 4.5.3-4.8.2; the pinned 4.6.1-4.8.4 is unconfirmed).
def _series_of_two_services():
    return [
        ('vllm:num_requests_waiting{namespace="ai-serving",pod="llm-6d5f7c9b8-x7k2p",model_name="%s"}' % SERVED, "30"),
        ('vllm:num_requests_waiting{namespace="ai-serving",pod="llm-mig-7f8b9c6d5-q2w3e",model_name="%s"}' % SERVED,
         "4"),
        # The same Deployment name in another namespace.
        ('vllm:num_requests_waiting{namespace="other",pod="llm-6d5f7c9b8-abcde",model_name="%s"}' % SERVED, "100"),
        ('DCGM_FI_DEV_GPU_UTIL{namespace="ai-serving",pod="llm-6d5f7c9b8-x7k2p",container="vllm",gpu="0"}', "90"),
        ('DCGM_FI_DEV_GPU_UTIL{namespace="ai-serving",pod="llm-mig-7f8b9c6d5-q2w3e",container="vllm",gpu="1"}', "10"),
        ('DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace="ai-serving",pod="llm-mig-7f8b9c6d5-q2w3e",container="vllm"}',
         "0.2"),
        ('DCGM_FI_PROF_GR_ENGINE_ACTIVE{namespace="ai-serving",pod="llm-6d5f7c9b8-x7k2p",container="vllm"}', "0.9"),
    ]


def _promtool_values(tmp_path, queries):
    """Evaluate each query with Prometheus' own engine (promtool test rules) and assert its value."""
    import shutil
    import subprocess

    import yaml

    exe = shutil.which("promtool")
    if not exe:
        pytest.fail("promtool not found (Debian package 'prometheus': scripts/ensure-promtool.sh, run by scripts/bootstrap.sh)")
    (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": [{"name": "q", "rules": [
        {"record": "q%d" % i, "expr": query} for i, (query, _want) in enumerate(queries)]}]}))
    (tmp_path / "test.yml").write_text(yaml.safe_dump({
        "rule_files": ["rules.yml"], "evaluation_interval": "1m",
        "tests": [{"interval": "1m",
                   "input_series": [{"series": s, "values": "%sx3" % v} for s, v in _series_of_two_services()],
                   "promql_expr_test": [{"expr": "q%d" % i, "eval_time": "2m",
                                         "exp_samples": [{"labels": "q%d" % i, "value": want}]}
                                        for i, (_query, want) in enumerate(queries)]}]}))
    proc = subprocess.run([exe, "test", "rules", str(tmp_path / "test.yml")], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_queue_query_selects_its_own_deployment_not_every_server_of_the_model(tmp_path):
    """Bug (issue 12): the queue query selected by model_name only, so llm and llm-mig, serving one
    model, each scaled on 30 + 4 (+ 100 from another namespace). Each must see only its own pods."""
    llm = model(name="llm", namespace="ai-serving")
    mig = model(name="llm-mig", namespace="ai-serving")
    assert 'namespace="ai-serving"' in a.queue_query(llm)
    _promtool_values(tmp_path, [(a.queue_query(llm), 30), (a.queue_query(mig), 4)])


def test_gpu_query_selects_its_own_deployment(tmp_path):
    """The GPU-activity trigger averages only the GPUs of this Deployment's pods (namespace, pod of the
    GPU consumer as dcgm-exporter's pod mapping labels them; MIG: GR_ENGINE_ACTIVE ratio x 100)."""
    llm = model(name="llm", namespace="ai-serving")
    mig = model(name="llm-mig", namespace="ai-serving")
    _promtool_values(tmp_path, [(a.gpu_query(llm, "gpu"), 90), (a.gpu_query(mig, "gpu"), 10),
                                (a.gpu_query(mig, "mig"), 20)])


def test_queue_selector_overrides_target_labels_but_never_model_name():
    m = model(queue_selector={"namespace": "elsewhere", "service": "llm"})
    query = a.queue_query(m)
    assert 'namespace="elsewhere"' in query and 'service="llm"' in query
    assert 'model_name="%s"' % SERVED in query and 'pod=~"llama3-8b-[a-z0-9]+-[a-z0-9]+"' in query


# ----------------------------------------------------------------------------- KEDA v2.20.2 API fields
# kedacore/keda v2.20.2: apis/keda/v1alpha1/scaledobject_types.go (ScaledObjectSpec, AdvancedConfig,
# HorizontalPodAutoscalerConfig), scaletriggers_types.go (ScaleTriggers), pkg/scalers/prometheus_scaler.go
# (prometheusMetadata `keda:"name=..."` tags). A key outside these is dropped by the CRD's pruning
# or ignored by the scaler.
KEDA_SPEC_FIELDS = {"scaleTargetRef", "pollingInterval", "initialCooldownPeriod", "cooldownPeriod",
                    "idleReplicaCount", "minReplicaCount", "maxReplicaCount", "advanced", "triggers", "fallback"}
KEDA_ADVANCED_FIELDS = {"horizontalPodAutoscalerConfig", "restoreToOriginalReplicaCount", "scalingModifiers"}
KEDA_HPA_CONFIG_FIELDS = {"behavior", "name"}
KEDA_TRIGGER_FIELDS = {"type", "name", "useCachedMetrics", "metadata", "authenticationRef", "metricType"}
PROMETHEUS_SCALER_KEYS = {"serverAddress", "query", "queryParameters", "threshold", "activationThreshold",
                          "namespace", "customHeaders", "ignoreNullValues", "unsafeSsl", "awsRegion", "timeout",
                          "identityOwner"}
PROMETHEUS_SCALER_REQUIRED = {"serverAddress", "query", "threshold"}


@pytest.mark.parametrize("kw", [{}, {"scale_to_zero": True, "wake_query": "sum(up)"}, {"hpa_name": "custom"}])
def test_scaledobject_fields_are_keda_v2_20_2_api_fields(kw):
    so = a.build_scaled_object(model(**kw), "mig")
    spec = so["spec"]
    assert set(spec) <= KEDA_SPEC_FIELDS, set(spec) - KEDA_SPEC_FIELDS
    assert set(spec["advanced"]) <= KEDA_ADVANCED_FIELDS
    assert set(spec["advanced"]["horizontalPodAutoscalerConfig"]) <= KEDA_HPA_CONFIG_FIELDS
    for trigger in spec["triggers"]:
        assert set(trigger) <= KEDA_TRIGGER_FIELDS, set(trigger) - KEDA_TRIGGER_FIELDS
        assert trigger["type"] == "prometheus" and trigger["metricType"] in ("AverageValue", "Value")
        meta = trigger["metadata"]
        assert PROMETHEUS_SCALER_REQUIRED <= set(meta) <= PROMETHEUS_SCALER_KEYS, set(meta) ^ PROMETHEUS_SCALER_KEYS
        assert all(isinstance(v, str) for v in meta.values())  # metadata is map[string]string
        float(meta["threshold"])
    # KEDA names the HPA keda-hpa-<ScaledObject name> unless horizontalPodAutoscalerConfig.name is set
    # (controllers/keda/hpa.go getHPAName).
    assert a.hpa_name_for(model(**kw)) == kw.get("hpa_name", "keda-hpa-llama3-8b")
