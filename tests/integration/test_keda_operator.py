# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real KEDA operator scales a Deployment 0 -> 1 -> 0 (and, with its adapter, 1 -> N) on a vLLM queue.

Chain under test: testbed/vllm_metrics_sim.py serves vLLM's queue gauge -> Debian's Prometheus on
loopback scrapes it every second -> KEDA's operator (v2.20.2, built from its Go module by
testbed/build_keda.sh, run out of cluster) queries Prometheus for the ScaledObject that
gpuops.llm.model_autoscaler wrote -> KEDA scales the Deployment's scale subresource -> kwok runs
the pod.

Expectations come from shared/facts/llm-serving.md: the queue gauge is vllm:num_requests_waiting
labelled model_name (part B); keda.sh/v1alpha1 ScaledObject, activation decides 0 <-> 1 only,
cooldownPeriod applies only to scaling to 0, the HPA is keda-hpa-<ScaledObject> and gets the
behavior from advanced.horizontalPodAutoscalerConfig (part C).

The first test runs the operator alone: it activates (0 -> 1) and scales to zero itself, while its
HPA cannot read the external metric. The second adds KEDA's metrics adapter behind the
v1beta1.external.metrics.k8s.io APIService, so the HPA scales 1 -> N -> 1 on the same queue.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.parse
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import keda_rehearsal
# base_vars and model are pytest fixtures used by name.
from test_model_layer import SMALL, base_vars, model, run_role  # noqa: F401 pylint: disable=unused-import
from conftest import ROOT, run_play_json, wait_for

pytestmark = pytest.mark.integration

NAMESPACE = "keda-e2e"
MODEL = "llama3-8b"
SERVED = "meta-llama/Llama-3.1-8B-Instruct"
# Short loops so the whole cycle takes seconds: KEDA polls every POLL s, scales to zero COOLDOWN s
# after the last active poll; Prometheus scrapes every second.
POLL = 2
COOLDOWN = 6
ACTIVATION = 2
SPIKE = 12
# Seconds the chain may take: scrape (1) + poll (POLL) + Deployment/ReplicaSet/kwok, with slack for
# a busy shared testbed.
UP_BOUND = 60
DOWN_BOUND = COOLDOWN + 60
# The HPA controller evaluates every 15 s by default (kube-controller-manager
# --horizontal-pod-autoscaler-sync-period), so 1 -> N gets a few of its periods.
HPA_BOUND = 120
# The stand-in pod whose queue the simulator serves: a name of the Deployment's pods,
# <deployment>-<pod-template-hash>-<suffix>, which the ScaledObject's pod matcher selects.
SIM_POD = "%s-sim0-0" % MODEL

PLAYBOOK = """
- name: KEDA's CRDs and the model's ScaledObject
  hosts: localhost
  connection: local
  gather_facts: false
  tasks:
    - name: Install KEDA's generated CRDs
      ansible.builtin.include_role:
        name: gpuops.llm.keda
      vars:
        keda_install_method: generated
    - name: Autoscale the model on its queue
      gpuops.llm.model_autoscaler:
        namespace: "{{ ns }}"
        prometheus_url: "{{ prom }}"
        models: "{{ models }}"
      register: autoscaled
"""


def _build(component, what):
    """A KEDA binary from testbed/build_keda.sh (the suite builds it from the Go module proxy), or fail naming why."""
    try:
        return keda_rehearsal.build(component)
    except keda_rehearsal.BuildError as exc:
        pytest.fail(str(exc))


def _crds_dir():
    proc = subprocess.run(["bash", str(ROOT / "testbed" / "build_keda_crds.sh")], capture_output=True, text=True,
                          timeout=3600, check=False)
    if proc.returncode != 0:
        pytest.fail("KEDA's CRDs could not be generated from its Go module: %s" % proc.stderr[-1500:])
    return proc.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def keda_operator_bin():
    return _build("operator", "KEDA's operator")


@pytest.fixture(scope="module")
def keda_crds_dir():
    return _crds_dir()


@pytest.fixture(scope="module")
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    custom = client.CustomObjectsApi(testbed.api)
    # A namespace left terminating by an aborted run must be gone before we create it again.
    wait_for(lambda: not [n for n in v1.list_namespace().items if n.metadata.name == NAMESPACE],
             timeout=120, what="namespace %s from an earlier run to be gone" % NAMESPACE)
    v1.create_namespace({"metadata": {"name": NAMESPACE}})
    yield NAMESPACE
    # KEDA puts a finalizer on ScaledObjects; with the operator already stopped nobody would
    # remove it and the namespace would hang in Terminating.
    try:
        for obj in custom.list_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects")["items"]:
            custom.patch_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects",
                                                  obj["metadata"]["name"], {"metadata": {"finalizers": None}})
    except ApiException as exc:
        if exc.status != 404:
            raise
    v1.delete_namespace(NAMESPACE)


@pytest.fixture(scope="module")
def simulator():
    """The queue of one pod of the model's Deployment, labelled as a PodMonitor scrape labels it
    (namespace, pod): the ScaledObject's query selects its own Deployment's pods."""
    sim = keda_rehearsal.Simulator()
    sim.set(SERVED, 0, {"model_name": SERVED, "namespace": NAMESPACE, "pod": SIM_POD})
    yield sim
    sim.stop()


@pytest.fixture(scope="module")
def prometheus(simulator, tmp_path_factory):
    """Debian's Prometheus on loopback, scraping the simulator every second (testbed/keda_rehearsal.py)."""
    try:
        prom = keda_rehearsal.Prometheus(tmp_path_factory.mktemp("prometheus"), [simulator.target])
    except keda_rehearsal.BuildError as exc:
        pytest.fail(str(exc))   # Debian's prometheus comes with scripts/ensure-promtool.sh
    yield prom.url
    prom.stop()


@pytest.fixture(scope="module")
def operator(testbed, namespace, keda_operator_bin, tmp_path_factory):
    """KEDA's operator out of cluster: admin kubeconfig, one watched namespace, loopback ports."""
    handle = keda_rehearsal.Operator(keda_operator_bin, testbed.kubeconfig, namespace,
                                     tmp_path_factory.mktemp("keda-operator"))
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def metrics_adapter(testbed, namespace, operator, tmp_path_factory):
    """KEDA's metrics adapter out of cluster behind the external metrics APIService (an ExternalName
    Service whose name is 127.0.0.1: testbed/keda_rehearsal.py Adapter). The APIService is
    cluster-wide, so the test skips if another one holds the name and always removes its own."""
    binary = _build("adapter", "KEDA's metrics adapter")
    try:
        handle = keda_rehearsal.Adapter(binary, testbed.api, testbed.kubeconfig, namespace, operator,
                                        tmp_path_factory.mktemp("keda-adapter"))
    except keda_rehearsal.Adapter.AlreadyRegistered as exc:
        pytest.skip(str(exc))
    yield handle.log_path
    handle.stop()


@pytest.fixture(scope="module")
def cpu_deployment(testbed, namespace):
    """The model's Deployment at 0 replicas, pinned to the kwok CPU node cpu-0 (kwok runs its pods)."""
    apps = client.AppsV1Api(testbed.api)
    apps.create_namespaced_deployment(namespace, {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": MODEL},
        "spec": {"replicas": 0, "selector": {"matchLabels": {"app": MODEL}},
                 "template": {"metadata": {"labels": {"app": MODEL}}, "spec": {
                     "nodeSelector": {"kubernetes.io/hostname": "cpu-0"},
                     "containers": [{"name": "vllm", "image": "registry.invalid/vllm-openai:stand-in"}]}}}})
    return MODEL


def _set_queue(sim, waiting):
    sim.set(SERVED, waiting)


def _prom_value(prom_url, query):
    body = json.loads(keda_rehearsal.http_get(prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": query})))
    result = body["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def _quantity(text):
    """A Kubernetes quantity as the HPA reports metric values ("12", "4", "2500m")."""
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _conditions(obj):
    return {c["type"]: c for c in (obj.get("status") or {}).get("conditions") or []}


def _running_pods(v1, namespace):
    return [p for p in v1.list_namespaced_pod(namespace, label_selector="app=%s" % MODEL).items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp]


@pytest.mark.timeout(3600)  # a cold build of the operator takes many minutes before the test proper
def test_queue_spike_scales_from_zero_and_back(testbed, keda_crds_dir, prometheus, simulator, operator,
                                               cpu_deployment, tmp_path, record_property):
    apps, v1 = client.AppsV1Api(testbed.api), client.CoreV1Api(testbed.api)
    custom, hpas = client.CustomObjectsApi(testbed.api), client.AutoscalingV2Api(testbed.api)

    def replicas():
        return apps.read_namespaced_deployment_scale(cpu_deployment, NAMESPACE).spec.replicas or 0

    def scaled_object():
        return custom.get_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", MODEL)

    with operator.log_on_failure():
        model = {"name": MODEL, "served_model_name": SERVED, "scale_to_zero": True,
                 "activation_threshold": ACTIVATION, "max_replicas": 3, "gpu_trigger": False,
                 "polling_interval": POLL, "cooldown_period": COOLDOWN,
                 "scale_down_stabilization_seconds": 30}
        extra = {"ansible_python_interpreter": sys.executable, "keda_crds_path": keda_crds_dir,
                 "ns": NAMESPACE, "prom": prometheus, "models": [model]}
        rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra)
        assert rc == 0, json.dumps(data.get("stats"))

        # The query the collection wrote is the one Prometheus answers (llm-serving.md part B).
        spec = scaled_object()["spec"]
        query = spec["triggers"][0]["metadata"]["query"]
        assert "vllm:num_requests_waiting" in query and SERVED in query
        assert _prom_value(prometheus, query) == 0

        # The operator takes the ScaledObject: Ready, not Active, and its HPA keda-hpa-<name>.
        def ready():
            current = scaled_object()
            return current if _conditions(current).get("Ready", {}).get("status") == "True" else None

        obj = wait_for(ready, timeout=60, what="ScaledObject Ready=True")
        # Active is Unknown until the first poll has asked Prometheus; queue 0 makes it False.
        wait_for(lambda: _conditions(scaled_object()).get("Active", {}).get("status") == "False",
                 timeout=10 * POLL, what="ScaledObject Active=False at queue 0")
        hpa_name = "keda-hpa-%s" % MODEL
        hpa = wait_for(lambda: next((h for h in hpas.list_namespaced_horizontal_pod_autoscaler(NAMESPACE).items
                                     if h.metadata.name == hpa_name), None), timeout=30, what="HPA %s" % hpa_name)
        assert hpa.spec.scale_target_ref.name == cpu_deployment
        assert hpa.spec.max_replicas == model["max_replicas"]
        # behavior is passed straight through from advanced.horizontalPodAutoscalerConfig.
        assert hpa.spec.behavior.scale_down.stabilization_window_seconds == model["scale_down_stabilization_seconds"]
        external = [m.external for m in hpa.spec.metrics if m.type == "External"]
        assert len(external) == 1, hpa.spec.metrics
        metric_names = (obj.get("status") or {}).get("externalMetricNames") or []
        assert external[0].metric.name in metric_names, (external[0].metric.name, metric_names)
        assert external[0].metric.selector.match_labels.get("scaledobject.keda.sh/name") == MODEL
        assert external[0].target.type == "AverageValue"

        # Queue 0, then exactly at the activation threshold (activation needs more than it):
        # several polls later the Deployment is still at 0.
        _set_queue(simulator, ACTIVATION)
        wait_for(lambda: _prom_value(prometheus, query) == ACTIVATION, timeout=20, what="Prometheus to see the queue")
        time.sleep(3 * POLL + 1)
        assert replicas() == 0
        assert _conditions(scaled_object())["Active"]["status"] == "False"

        # The spike: KEDA activates the Deployment and kwok runs its pod.
        start = time.monotonic()
        _set_queue(simulator, SPIKE)
        wait_for(lambda: replicas() >= 1, timeout=UP_BOUND, what="KEDA to scale the Deployment from 0")
        up_seconds = time.monotonic() - start
        wait_for(lambda: _running_pods(v1, NAMESPACE), timeout=60, what="the pod Running on cpu-0")
        assert _running_pods(v1, NAMESPACE)[0].spec.node_name == "cpu-0"
        wait_for(lambda: _conditions(scaled_object()).get("Active", {}).get("status") == "True", timeout=30,
                 what="ScaledObject Active=True")
        # Without KEDA's metrics adapter the HPA cannot read its external metric, so no 1 -> N here.
        assert replicas() <= model["max_replicas"]

        # The queue drains: after the cooldown KEDA scales back to zero and the pod goes away.
        start = time.monotonic()
        _set_queue(simulator, 0)
        wait_for(lambda: replicas() == 0, timeout=DOWN_BOUND, what="KEDA to scale the Deployment back to 0")
        down_seconds = time.monotonic() - start
        # lastActiveTime is the last poll that still saw the spike: at most POLL s before the drain.
        assert down_seconds >= COOLDOWN - POLL, "scaled to zero before cooldownPeriod (%.1fs)" % down_seconds
        wait_for(lambda: not _running_pods(v1, NAMESPACE), timeout=60, what="the pod to be gone")
        wait_for(lambda: _conditions(scaled_object()).get("Active", {}).get("status") == "False", timeout=30,
                 what="ScaledObject Active=False")

        record_property("scale_up_seconds", round(up_seconds, 1))
        record_property("scale_down_seconds", round(down_seconds, 1))
        print("KEDA 0->1 in %.1fs (poll %ds), 1->0 in %.1fs (cooldown %ds)" % (up_seconds, POLL, down_seconds,
                                                                               COOLDOWN))

        # Deleting the ScaledObject: the operator removes its finalizer and the HPA goes with it.
        custom.delete_namespaced_custom_object("keda.sh", "v1alpha1", NAMESPACE, "scaledobjects", MODEL)
        wait_for(lambda: not custom.list_namespaced_custom_object(
            "keda.sh", "v1alpha1", NAMESPACE, "scaledobjects")["items"], timeout=60, what="ScaledObject deleted")
        wait_for(lambda: not [h for h in hpas.list_namespaced_horizontal_pod_autoscaler(NAMESPACE).items
                              if h.metadata.name == hpa_name], timeout=60, what="HPA %s deleted" % hpa_name)


@pytest.mark.timeout(1200)  # the adapter's cold build comes first
def test_queue_spike_scales_one_to_n_through_the_hpa(testbed, keda_crds_dir, prometheus, simulator, operator,
                                                     metrics_adapter, cpu_deployment, tmp_path, record_property):
    """With KEDA's metrics adapter registered, the HPA reads the queue and scales 1 -> N -> 1.

    AverageValue target (the module's queue trigger): the HPA wants ceil(sum / threshold) replicas,
    capped at max_replicas; with no scale-down stabilization it returns to min_replicas once the
    queue is empty.
    """
    apps, hpas = client.AppsV1Api(testbed.api), client.AutoscalingV2Api(testbed.api)

    def replicas():
        return apps.read_namespaced_deployment_scale(cpu_deployment, NAMESPACE).spec.replicas or 0

    with operator.log_on_failure():
        model = {"name": MODEL, "served_model_name": SERVED, "min_replicas": 1, "max_replicas": 3,
                 "gpu_trigger": False, "polling_interval": POLL, "queue_threshold": 5,
                 "scale_up_pods": 3, "scale_up_period_seconds": 15,
                 "scale_down_stabilization_seconds": 0, "scale_down_pods": 3, "scale_down_period_seconds": 15}
        _set_queue(simulator, 0)
        extra = {"ansible_python_interpreter": sys.executable, "keda_crds_path": keda_crds_dir,
                 "ns": NAMESPACE, "prom": prometheus, "models": [model]}
        rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra)
        assert rc == 0, json.dumps(data.get("stats"))
        # KEDA itself lifts the Deployment to minReplicaCount.
        wait_for(lambda: replicas() == 1, timeout=UP_BOUND, what="KEDA to scale to min_replicas 1")

        # 12 waiting at a target of 5 per replica: ceil(12 / 5) = 3 replicas, which is also the cap.
        start = time.monotonic()
        _set_queue(simulator, SPIKE)
        wait_for(lambda: replicas() == 3, timeout=HPA_BOUND, what="the HPA to scale 1 -> 3 on the queue")
        up_seconds = time.monotonic() - start
        hpa = hpas.read_namespaced_horizontal_pod_autoscaler("keda-hpa-%s" % MODEL, NAMESPACE)
        seen = [_quantity(m.external.current.average_value) for m in hpa.status.current_metrics or []
                if m.external and m.external.current.average_value]
        # The HPA read the queue through the adapter: the sum over the replicas, per replica.
        assert seen and 0 < seen[0] <= SPIKE, hpa.status

        start = time.monotonic()
        _set_queue(simulator, 0)
        wait_for(lambda: replicas() == 1, timeout=HPA_BOUND, what="the HPA to scale back to min_replicas 1")
        down_seconds = time.monotonic() - start
        record_property("hpa_scale_up_seconds", round(up_seconds, 1))
        record_property("hpa_scale_down_seconds", round(down_seconds, 1))
        print("HPA 1->3 in %.1fs, 3->1 in %.1fs" % (up_seconds, down_seconds))


@pytest.mark.timeout(1800)
def test_rerun_of_vllm_service_leaves_replicas_where_keda_put_them(
        testbed, gpu_plugins, nvidia_runtime_class, keda_crds_dir, prometheus, simulator, operator,
        metrics_adapter, tmp_path):
    """Issue 12, item 2: "each rerun of week 2 re-applies replicas with force_conflicts, taking the
    Deployment back from KEDA's HPA". The real KEDA operator and adapter scale the vllm_service
    role's Deployment 1 -> 2 on its queue (the HPA writes spec.replicas through the scale
    subresource); a rerun of the role then changes nothing, writes nothing, and replicas stays at 2.
    The role owned by the models slice applies spec.replicas on create only when the model is in
    autoscaling_models (roles/vllm_service/tasks/live.yml); the old role re-applied it."""
    apps = client.AppsV1Api(testbed.api)
    name, served = "as-keda", "example/as-keda"
    # 8 waiting at a target of 5 per replica: ceil(8 / 5) = 2 replicas, which is also the cap
    # (two A100 nodes on the testbed, one GPU each).
    sim_key = "as-keda"
    labels = {"model_name": served, "namespace": NAMESPACE, "pod": "%s-sim0-0" % name}
    sim = simulator
    sim.set(sim_key, 0, labels)
    varz = dict(base_vars(NAMESPACE, [model(name, SMALL, "NVIDIA A100-SXM4-80GB", replicas=1)]),
                vllm_service_metrics="annotations", vllm_service_create_namespace=False,
                autoscaling_models=[{"name": name, "namespace": NAMESPACE}])
    with operator.log_on_failure():
        rc, out, _recap = run_role(testbed, tmp_path, varz)
        assert rc == 0, out[-6000:]
        so = {"name": name, "served_model_name": served, "min_replicas": 1, "max_replicas": 2, "gpu_trigger": False,
              "polling_interval": POLL, "queue_threshold": 5, "scale_up_pods": 2, "scale_up_period_seconds": 15,
              "scale_down_stabilization_seconds": 0}
        extra = {"ansible_python_interpreter": sys.executable, "keda_crds_path": keda_crds_dir,
                 "ns": NAMESPACE, "prom": prometheus, "models": [so]}
        rc, data = run_play_json(testbed, tmp_path, PLAYBOOK, extra)
        assert rc == 0, json.dumps(data.get("stats"))

        sim.set(sim_key, 8)
        wait_for(lambda: apps.read_namespaced_deployment_scale(name, NAMESPACE).spec.replicas == 2, timeout=HPA_BOUND,
                 what="KEDA's HPA to scale the vllm_service Deployment 1 -> 2")
        dep = apps.read_namespaced_deployment(name, NAMESPACE)
        owners = [f.manager for f in dep.metadata.managed_fields
                  if "f:replicas" in ((f.fields_v1 or {}).get("f:spec") or {})]
        assert owners and all(o != "gpuops.llm" and "gpuops" not in o for o in owners), owners

        marker = testbed.audit_marker()
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc == 0 and recap["changed"] == 0, out[-4000:]
        # The role's own writes (the HPA's scale writes are the subresource, and system ones are left out).
        writes = [w for w in testbed.audit_writes(marker) if w["resource"] == "deployments"
                  and w["namespace"] == NAMESPACE and not w["subresource"]]
        assert writes == [], "the rerun wrote the Deployment: %s" % writes
        assert apps.read_namespaced_deployment_scale(name, NAMESPACE).spec.replicas == 2
        sim.set(sim_key, 0)
