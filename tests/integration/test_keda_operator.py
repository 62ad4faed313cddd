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

import contextlib
import datetime
import ipaddress
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

import vllm_metrics_sim
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
EXTERNAL_METRICS_API = "v1beta1.external.metrics.k8s.io"

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


def _build(script, what):
    """Run a testbed build script; return the path it prints, or skip (fail on CI) naming why."""
    name, *args = script.split()
    proc = subprocess.run(["bash", str(ROOT / "testbed" / name), *args], capture_output=True, text=True,
                          timeout=3600, check=False)
    if proc.returncode != 0:
        reason = "%s could not be built from its Go module: %s" % (what, proc.stderr[-1500:])
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return proc.stdout.strip().splitlines()[-1]


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url, timeout=2.0):
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return resp.read().decode("utf-8")


def _answers(url):
    try:
        return _get(url)
    except OSError:
        return None


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _write_certs(cert_dir):
    """ca.crt, tls.crt, tls.key for the operator's gRPC metrics service, which loads them at start.

    In a cluster KEDA's cert rotation fills a Secret that the pod mounts; out of cluster nothing
    mounts it, so the test makes a throwaway CA and a server/client certificate signed by it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keda-e2e-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.DNSName("keda-operator.%s.svc" % NAMESPACE),
             x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keda-operator")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    pem = serialization.Encoding.PEM
    (cert_dir / "ca.crt").write_bytes(ca.public_bytes(pem))
    (cert_dir / "tls.crt").write_bytes(cert.public_bytes(pem))
    key_pem = key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    (cert_dir / "tls.key").write_bytes(key_pem)


class Operator:
    """The KEDA operator process and its log."""

    def __init__(self, proc, log_path, grpc_address="", cert_dir=None):
        self.proc = proc
        self.log_path = log_path
        self.grpc_address = grpc_address  # KEDA's metrics service, which the adapter asks
        self.cert_dir = cert_dir

    def log_tail(self, chars=6000):
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-chars:]

    @contextlib.contextmanager
    def log_on_failure(self):
        """Print the operator's log when the block fails, so pytest shows it with the failure."""
        try:
            yield
        except BaseException:
            print("---- keda-operator log (tail) ----\n%s" % self.log_tail())
            raise


@pytest.fixture(scope="module")
def keda_operator_bin():
    return _build("build_keda.sh", "KEDA's operator")


@pytest.fixture(scope="module")
def keda_crds_dir():
    return _build("build_keda_crds.sh", "KEDA's CRDs")


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
    server = vllm_metrics_sim.serve(0, [SERVED])
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield "http://127.0.0.1:%d" % server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def prometheus(simulator, tmp_path_factory):
    """Debian's Prometheus on loopback, scraping the simulator every second."""
    binary = shutil.which("prometheus")
    if not binary:
        pytest.skip("no prometheus binary (Debian's prometheus package; scripts/bootstrap.sh installs it)")
    work = tmp_path_factory.mktemp("prometheus")
    port = _free_port()
    target = simulator.split("//", 1)[1]
    (work / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        "scrape_configs:\n"
        "  - job_name: vllm-sim\n"
        "    static_configs: [{targets: ['%s']}]\n" % target)
    with open(work / "prometheus.log", "wb") as log:
        proc = subprocess.Popen([binary, "--config.file=%s" % (work / "prometheus.yml"),
                                 "--storage.tsdb.path=%s" % (work / "data"),
                                 "--web.listen-address=127.0.0.1:%d" % port],
                                stdout=log, stderr=subprocess.STDOUT)
    url = "http://127.0.0.1:%d" % port
    try:
        query = url + "/api/v1/query?query=up%7Bjob%3D%22vllm-sim%22%7D"
        wait_for(lambda: proc.poll() is None and '"value"' in (_answers(query) or ""), timeout=60,
                 what="Prometheus to scrape the simulator (log: %s)" % (work / "prometheus.log"))
        yield url
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def operator(testbed, namespace, keda_operator_bin, tmp_path_factory):
    """KEDA's operator out of cluster: admin kubeconfig, one watched namespace, loopback ports."""
    work = tmp_path_factory.mktemp("keda-operator")
    certs, trusted = work / "certs", work / "ca"
    certs.mkdir()
    trusted.mkdir()
    _write_certs(certs)
    # --ca-dir must hold certificates only (a key there is logged as an error).
    shutil.copy(certs / "ca.crt", trusted / "ca.crt")
    probe, grpc = _free_port(), "127.0.0.1:%d" % _free_port()
    env = dict(os.environ, KUBECONFIG=testbed.kubeconfig,
               # Watch only our namespace; cluster objects (the TLS Secret, leases) live there too.
               WATCH_NAMESPACE=namespace, KEDA_CLUSTER_OBJECT_NAMESPACE=namespace, POD_NAMESPACE=namespace,
               NO_PROXY="127.0.0.1,localhost," + os.environ.get("NO_PROXY", ""))
    args = [keda_operator_bin,
            "--leader-elect=false", "--enable-cert-rotation=false",
            "--cert-dir=%s" % certs, "--ca-dir=%s" % trusted,
            "--metrics-bind-address=127.0.0.1:%d" % _free_port(),
            "--health-probe-bind-address=127.0.0.1:%d" % probe,
            "--metrics-service-bind-address=%s" % grpc,
            "--zap-encoder=console", "--zap-log-level=info"]
    log_path = work / "operator.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    handle = Operator(proc, log_path, grpc, certs)
    try:
        with handle.log_on_failure():
            wait_for(lambda: proc.poll() is None and _answers("http://127.0.0.1:%d/readyz" % probe) == "ok",
                     timeout=90, what="the KEDA operator's readyz (exit code %s)" % proc.poll())
        yield handle
    finally:
        _stop(proc)


@pytest.fixture(scope="module")
def metrics_adapter(testbed, namespace, operator, tmp_path_factory):
    """KEDA's metrics adapter out of cluster, serving external.metrics.k8s.io to kube-apiserver.

    The APIService needs a Service, and Endpoints cannot point at loopback; an ExternalName Service
    whose name is 127.0.0.1 can: the aggregator resolves it to host:port without kube-proxy (the
    way kwokctl registers metrics-server in its native mode, testbed-recipes.md section 5). The
    APIService is cluster-wide, so the test skips if another one holds the name and always
    removes its own.
    """
    binary = _build("build_keda.sh adapter", "KEDA's metrics adapter")
    registry = client.ApiregistrationV1Api(testbed.api)
    try:
        registry.read_api_service(EXTERNAL_METRICS_API)
        pytest.skip("%s is already registered on the testbed (not by this test)" % EXTERNAL_METRICS_API)
    except ApiException as exc:
        if exc.status != 404:
            raise
    work = tmp_path_factory.mktemp("keda-adapter")
    port = _free_port()
    env = dict(os.environ, KUBECONFIG=testbed.kubeconfig, WATCH_NAMESPACE=namespace,
               KEDA_CLUSTER_OBJECT_NAMESPACE=namespace, POD_NAMESPACE=namespace)
    certs = operator.cert_dir
    # The adapter trusts kube-apiserver's proxy client certificate through the cluster CA that
    # kube-system/extension-apiserver-authentication publishes, and asks the apiserver (admin
    # kubeconfig) to authorize. It logs that the testbed has no requestheader CA: that is expected.
    args = [binary, "--secure-port=%d" % port, "--bind-address=127.0.0.1", "--cert-dir=%s" % certs,
            "--tls-cert-file=%s" % (certs / "tls.crt"), "--tls-private-key-file=%s" % (certs / "tls.key"),
            "--lister-kubeconfig=%s" % testbed.kubeconfig, "--authentication-kubeconfig=%s" % testbed.kubeconfig,
            "--authorization-kubeconfig=%s" % testbed.kubeconfig,
            "--metrics-service-address=%s" % operator.grpc_address, "--port=%d" % _free_port()]
    log_path = work / "adapter.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
    v1 = client.CoreV1Api(testbed.api)
    try:
        v1.create_namespaced_service(namespace, {
            "metadata": {"name": "keda-metrics-apiserver"},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"name": "https", "port": port}]}})
        registry.create_api_service({
            "metadata": {"name": EXTERNAL_METRICS_API},
            "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": True,
                     "groupPriorityMinimum": 100, "versionPriority": 100,
                     "service": {"namespace": namespace, "name": "keda-metrics-apiserver", "port": port}}})

        def available():
            conds = registry.read_api_service(EXTERNAL_METRICS_API).status.conditions or []
            return any(c.type == "Available" and c.status == "True" for c in conds)

        try:
            wait_for(lambda: proc.poll() is None and available(), timeout=90,
                     what="APIService %s Available (adapter exit code %s)" % (EXTERNAL_METRICS_API, proc.poll()))
        except BaseException:
            print("---- keda-adapter log (tail) ----\n%s" % log_path.read_text(errors="replace")[-6000:])
            raise
        yield log_path
    finally:
        try:
            registry.delete_api_service(EXTERNAL_METRICS_API)
        except ApiException as exc:
            if exc.status != 404:
                raise
        _stop(proc)


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


def _set_queue(sim_url, waiting):
    req = urllib.request.Request(sim_url + "/state", method="PUT",
                                 data=json.dumps({SERVED: {"waiting": waiting}}).encode("utf-8"))
    with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback only)
        assert json.load(resp)[SERVED]["waiting"] == waiting


def _prom_value(prom_url, query):
    body = json.loads(_get(prom_url + "/api/v1/query?" + urllib.parse.urlencode({"query": query})))
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
