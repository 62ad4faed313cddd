# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real KEDA operator and metrics adapter on the testbed, and the rehearsal `make run` does.

The parts, used by scripts/run.sh (``rehearse``) and tests/integration/test_keda_operator.py:
- ``build``: KEDA's operator / adapter binaries from its Go module (testbed/build_keda.sh, v2.20.2);
- ``Prometheus``: Debian's prometheus on loopback, scraping testbed/vllm_metrics_sim.py every second
  with honor_labels, so the series keep the namespace/pod labels a PodMonitor would attach;
- ``Operator``: KEDA's operator out of cluster (admin kubeconfig, loopback ports, throwaway certs
  for its gRPC metrics service, which the adapter asks);
- ``Adapter``: KEDA's metrics adapter behind the v1beta1.external.metrics.k8s.io APIService. The
  APIService needs a Service and Endpoints cannot point at loopback; an ExternalName Service whose
  name is 127.0.0.1 can (the way kwokctl registers metrics-server natively).

``rehearse`` (after site.yml): point the ScaledObjects site.yml wrote at the loopback Prometheus
with short loops, start everything, raise the simulated queue of one model's pods and drain it,
record replicas over time per ScaledObject (<home>/keda/timeline.json, printed by
testbed/summary.py), then put the ScaledObjects back exactly as site.yml applied them and stop
every process. ``stop`` kills what a broken rehearsal left (testbed.py down calls it).
"""
from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import testbed  # noqa: E402
import vllm_metrics_sim  # noqa: E402

KEDA_VERSION = "v2.20.2"  # testbed/build_keda.sh builds this release
EXTERNAL_METRICS_API = "v1beta1.external.metrics.k8s.io"
FIELD_MANAGER = "gpuops.llm"  # the autoscaling role's field manager (model_autoscaler)


class BuildError(RuntimeError):
    """A KEDA component could not be built from its Go module."""


class Timeout(RuntimeError):
    pass


def wait_until(predicate, timeout: float, what: str, interval: float = 0.5):
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    raise Timeout("timed out after %ss waiting for %s (last: %r)" % (timeout, what, last))


def build(component: str = "operator") -> str:
    """Path of KEDA's operator or adapter, built by testbed/build_keda.sh when missing."""
    proc = subprocess.run(["bash", str(HERE / "build_keda.sh"), component], capture_output=True, text=True,
                          timeout=3600, check=False)
    if proc.returncode != 0:
        raise BuildError("KEDA's %s could not be built from its Go module: %s" % (component, proc.stderr[-1500:]))
    return proc.stdout.strip().splitlines()[-1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 2.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (loopback only)
        return resp.read().decode("utf-8")


def answers(url: str):
    try:
        return http_get(url)
    except OSError:
        return None


def stop_process(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def write_certs(cert_dir: pathlib.Path, namespace: str) -> None:
    """ca.crt, tls.crt, tls.key for the operator's gRPC metrics service, which loads them at start.

    In a cluster KEDA's cert rotation fills a Secret that the pod mounts; out of cluster nothing
    mounts it, so we make a throwaway CA and a server/client certificate signed by it.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "keda-testbed-ca")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.DNSName("keda-operator.%s.svc" % namespace),
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
    cert_dir.mkdir(parents=True, exist_ok=True)
    (cert_dir / "ca.crt").write_bytes(ca.public_bytes(pem))
    (cert_dir / "tls.crt").write_bytes(cert.public_bytes(pem))
    (cert_dir / "tls.key").write_bytes(key.private_bytes(pem, serialization.PrivateFormat.PKCS8,
                                                         serialization.NoEncryption()))


class Process:
    """A child process with its log; ``pid_dir`` records its pid so ``stop`` can find it."""

    name = "process"

    def __init__(self, args, env, log_path: pathlib.Path, pid_dir: pathlib.Path | None = None):
        self.log_path = log_path
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(args, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.pid_file = pid_dir / ("%s.pid" % self.name) if pid_dir else None
        if self.pid_file:
            self.pid_file.write_text(str(self.proc.pid))

    def log_tail(self, chars: int = 6000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""

    @contextlib.contextmanager
    def log_on_failure(self):
        """Print the log when the block fails, so a test or the rehearsal shows it with the failure."""
        try:
            yield
        except BaseException:
            print("---- %s log (tail) ----\n%s" % (self.name, self.log_tail()))
            raise

    def stop(self) -> None:
        stop_process(self.proc)
        if self.pid_file:
            self.pid_file.unlink(missing_ok=True)


class Prometheus(Process):
    """Debian's Prometheus on loopback, scraping ``targets`` (host:port) every second."""

    name = "prometheus"

    def __init__(self, work: pathlib.Path, targets, pid_dir=None):
        binary = shutil.which("prometheus")
        if not binary:
            raise BuildError("no prometheus binary (Debian's prometheus package; scripts/bootstrap.sh installs it)")
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        # honor_labels: the simulator's namespace/pod labels stand for the ones a PodMonitor attaches.
        (work / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: vllm-sim\n"
            "    honor_labels: true\n"
            "    static_configs: [{targets: %s}]\n" % json.dumps(list(targets)))
        args = [binary, "--config.file=%s" % (work / "prometheus.yml"), "--storage.tsdb.path=%s" % (work / "data"),
                "--web.listen-address=127.0.0.1:%d" % port]
        super().__init__(args, dict(os.environ), work / "prometheus.log", pid_dir)
        self.url = "http://127.0.0.1:%d" % port
        query = self.url + "/api/v1/query?query=up%7Bjob%3D%22vllm-sim%22%7D"
        try:
            wait_until(lambda: self.proc.poll() is None and '"value"' in (answers(query) or ""), 60,
                       "Prometheus to scrape the simulator (log: %s)" % self.log_path)
        except BaseException:
            self.stop()
            raise

    def value(self, query: str):
        body = json.loads(http_get(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": query})))
        result = body["data"]["result"]
        return float(result[0]["value"][1]) if result else None


class Operator(Process):
    """KEDA's operator out of cluster. ``namespace``: the one it watches ("" = all) and keeps its
    cluster objects in (KEDA_CLUSTER_OBJECT_NAMESPACE); it must exist."""

    name = "keda-operator"

    def __init__(self, binary: str, kubeconfig, namespace: str, work: pathlib.Path, watch: str | None = None,
                 pid_dir=None):
        work.mkdir(parents=True, exist_ok=True)
        self.cert_dir, trusted = work / "certs", work / "ca"
        write_certs(self.cert_dir, namespace)
        trusted.mkdir(exist_ok=True)
        # --ca-dir must hold certificates only (a key there is logged as an error).
        shutil.copy(self.cert_dir / "ca.crt", trusted / "ca.crt")
        probe = free_port()
        self.grpc_address = "127.0.0.1:%d" % free_port()  # KEDA's metrics service, which the adapter asks
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), WATCH_NAMESPACE=namespace if watch is None else watch,
                   KEDA_CLUSTER_OBJECT_NAMESPACE=namespace, POD_NAMESPACE=namespace,
                   NO_PROXY="127.0.0.1,localhost," + os.environ.get("NO_PROXY", ""))
        args = [binary, "--leader-elect=false", "--enable-cert-rotation=false",
                "--cert-dir=%s" % self.cert_dir, "--ca-dir=%s" % trusted,
                "--metrics-bind-address=127.0.0.1:%d" % free_port(),
                "--health-probe-bind-address=127.0.0.1:%d" % probe,
                "--metrics-service-bind-address=%s" % self.grpc_address,
                "--zap-encoder=console", "--zap-log-level=info"]
        super().__init__(args, env, work / "operator.log", pid_dir)
        try:
            with self.log_on_failure():
                wait_until(lambda: self.proc.poll() is None and answers("http://127.0.0.1:%d/readyz" % probe) == "ok",
                           90, "the KEDA operator's readyz (exit code %s)" % self.proc.poll())
        except BaseException:
            self.stop()
            raise


class Adapter(Process):
    """KEDA's metrics adapter out of cluster, serving external.metrics.k8s.io to kube-apiserver.

    The APIService is cluster-wide: ``AlreadyRegistered`` when another one holds the name; ``stop``
    removes ours."""

    name = "keda-adapter"

    class AlreadyRegistered(RuntimeError):
        pass

    def __init__(self, binary: str, api, kubeconfig, namespace: str, operator: Operator, work: pathlib.Path,
                 watch: str | None = None, pid_dir=None):
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        self.registry, self.v1, self.namespace = client.ApiregistrationV1Api(api), client.CoreV1Api(api), namespace
        try:
            self.registry.read_api_service(EXTERNAL_METRICS_API)
            raise Adapter.AlreadyRegistered("%s is already registered on the testbed" % EXTERNAL_METRICS_API)
        except ApiException as exc:
            if exc.status != 404:
                raise
        work.mkdir(parents=True, exist_ok=True)
        port = free_port()
        env = dict(os.environ, KUBECONFIG=str(kubeconfig), WATCH_NAMESPACE=namespace if watch is None else watch,
                   KEDA_CLUSTER_OBJECT_NAMESPACE=namespace, POD_NAMESPACE=namespace)
        certs = operator.cert_dir
        # The adapter trusts kube-apiserver's proxy client certificate through the cluster CA that
        # kube-system/extension-apiserver-authentication publishes, and asks the apiserver (admin
        # kubeconfig) to authorize. It logs that the testbed has no requestheader CA: expected.
        args = [binary, "--secure-port=%d" % port, "--bind-address=127.0.0.1", "--cert-dir=%s" % certs,
                "--tls-cert-file=%s" % (certs / "tls.crt"), "--tls-private-key-file=%s" % (certs / "tls.key"),
                "--lister-kubeconfig=%s" % kubeconfig, "--authentication-kubeconfig=%s" % kubeconfig,
                "--authorization-kubeconfig=%s" % kubeconfig,
                "--metrics-service-address=%s" % operator.grpc_address, "--port=%d" % free_port()]
        super().__init__(args, env, work / "adapter.log", pid_dir)
        try:
            with self.log_on_failure():
                self._register(port)
        except BaseException:
            self.stop()
            raise

    def _register(self, port: int) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.v1.create_namespaced_service(self.namespace, {
                "metadata": {"name": "keda-metrics-apiserver"},
                "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"name": "https", "port": port}]}})
        except ApiException as exc:
            if exc.status != 409:
                raise
            self.v1.patch_namespaced_service("keda-metrics-apiserver", self.namespace,
                                             {"spec": {"ports": [{"name": "https", "port": port}]}})
        self.registry.create_api_service({
            "metadata": {"name": EXTERNAL_METRICS_API},
            "spec": {"group": "external.metrics.k8s.io", "version": "v1beta1", "insecureSkipTLSVerify": True,
                     "groupPriorityMinimum": 100, "versionPriority": 100,
                     "service": {"namespace": self.namespace, "name": "keda-metrics-apiserver", "port": port}}})

        def available():
            conds = self.registry.read_api_service(EXTERNAL_METRICS_API).status.conditions or []
            return any(c.type == "Available" and c.status == "True" for c in conds)

        wait_until(lambda: self.proc.poll() is None and available(), 90,
                   "APIService %s Available (adapter exit code %s)" % (EXTERNAL_METRICS_API, self.proc.poll()))

    def stop(self) -> None:
        from kubernetes.client.rest import ApiException

        for call in (lambda: self.registry.delete_api_service(EXTERNAL_METRICS_API),
                     lambda: self.v1.delete_namespaced_service("keda-metrics-apiserver", self.namespace)):
            try:
                call()
            except ApiException as exc:
                if exc.status != 404:
                    raise
        super().stop()


class Simulator:
    """testbed/vllm_metrics_sim.py in a thread; ``set(key, waiting, labels)`` drives one series."""

    def __init__(self, models=()):
        self.server = vllm_metrics_sim.serve(0, list(models))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = "http://127.0.0.1:%d" % self.server.server_address[1]
        self.target = "127.0.0.1:%d" % self.server.server_address[1]

    def set(self, key: str, waiting: float, labels: dict | None = None) -> None:
        entry = {"waiting": waiting}
        if labels:
            entry["labels"] = labels
        req = urllib.request.Request(self.url + "/state", method="PUT", data=json.dumps({key: entry}).encode("utf-8"))
        with urllib.request.urlopen(req, timeout=5) as resp:  # noqa: S310 (loopback only)
            if json.load(resp)[key]["waiting"] != waiting:
                raise RuntimeError("the simulator did not take waiting=%s for %s" % (waiting, key))

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# ---------------------------------------------------------------------------------------------
# The rehearsal
# ---------------------------------------------------------------------------------------------
NAMESPACE = "keda"  # KEDA's own namespace (the chart's default): its cluster objects and the Service
POLL = 2
SPIKE = 12  # waiting requests: ceil(12 / queue_threshold 5) = 3 replicas
REHEARSAL_MAX = 3  # kept small: each replica is a GPU pod, and the testbed has few GPUs free
PHASE_SECONDS = 45  # per phase, up and down; the HPA controller evaluates every 15 s


def state_dir(tb: testbed.Testbed) -> pathlib.Path:
    return tb.home / "keda"


def owned_subset(obj: dict, manager: str = FIELD_MANAGER) -> dict:
    """The part of ``obj`` that ``manager`` applied (its managedFields Apply entry), for re-applying it
    unchanged: a server-side apply of exactly this leaves the object as that manager left it."""
    fields = {}
    for entry in (obj.get("metadata") or {}).get("managedFields") or []:
        if entry.get("manager") == manager and entry.get("operation") == "Apply":
            fields = entry.get("fieldsV1") or {}

    def pick(value, tree):
        if not isinstance(value, dict) or not any(k.startswith("f:") for k in tree):
            return value  # a leaf, or a list owned whole (KEDA's triggers list is atomic)
        return {k[2:]: pick(value[k[2:]], sub) for k, sub in tree.items() if k.startswith("f:") and k[2:] in value}

    out = pick(obj, fields)
    out["apiVersion"], out["kind"] = obj["apiVersion"], obj["kind"]
    out.setdefault("metadata", {}).update(name=obj["metadata"]["name"], namespace=obj["metadata"]["namespace"])
    return out


def _apply(custom, body: dict) -> None:
    """Server-side apply as the autoscaling role does (its field manager, force)."""
    meta = body["metadata"]
    custom.patch_namespaced_custom_object("keda.sh", "v1alpha1", meta["namespace"], "scaledobjects", meta["name"],
                                          body, field_manager=FIELD_MANAGER, force=True,
                                          _content_type="application/apply-patch+yaml")


def rehearsal_spec(applied: dict, prom_url: str) -> dict:
    """What site.yml applied, pointed at the loopback Prometheus with short loops (seconds, not minutes)."""
    body = json.loads(json.dumps(applied))
    spec = body["spec"]
    spec["pollingInterval"] = POLL
    spec["maxReplicaCount"] = min(spec.get("maxReplicaCount", REHEARSAL_MAX), REHEARSAL_MAX)
    spec["advanced"] = {"horizontalPodAutoscalerConfig": {"behavior": {
        "scaleUp": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 3, "periodSeconds": 15}]},
        "scaleDown": {"stabilizationWindowSeconds": 0, "policies": [{"type": "Pods", "value": 3, "periodSeconds": 15}]},
    }}}
    # The GPU trigger needs DCGM series the testbed has none of; the queue trigger is rehearsed.
    spec["triggers"] = [dict(t, metadata=dict(t["metadata"], serverAddress=prom_url))
                        for t in spec["triggers"] if t.get("name") == "queue-depth"]
    return body


def _served_and_pod(so: dict) -> dict:
    """Labels of one stand-in pod series that this ScaledObject's own query selects."""
    query = next(t["metadata"]["query"] for t in so["spec"]["triggers"] if t.get("name") == "queue-depth")
    served = query.split('model_name="', 1)[1].split('"', 1)[0].replace('\\"', '"')
    deployment = so["spec"]["scaleTargetRef"]["name"]
    return {"model_name": served, "namespace": so["metadata"]["namespace"], "pod": "%s-rehearsal-0" % deployment}


def rehearse(tb: testbed.Testbed, namespaces=None) -> int:
    """The rehearsal on every ScaledObject of gpuops.llm with a queue trigger (or those in ``namespaces``)."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    api = tb.api_client()
    custom, apps, v1 = client.CustomObjectsApi(api), client.AppsV1Api(api), client.CoreV1Api(api)
    hpas = client.AutoscalingV2Api(api)
    d = state_dir(tb)
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    ours = [so for so in custom.list_cluster_custom_object("keda.sh", "v1alpha1", "scaledobjects")["items"]
            if (so["metadata"].get("labels") or {}).get("app.kubernetes.io/managed-by") == "gpuops.llm"
            and any(t.get("name") == "queue-depth" for t in so["spec"].get("triggers") or [])
            and (namespaces is None or so["metadata"]["namespace"] in namespaces)]
    if not ours:
        print("no ScaledObject of gpuops.llm with a queue trigger on the testbed: nothing to rehearse")
        return 0
    applied = {(so["metadata"]["namespace"], so["metadata"]["name"]): owned_subset(so) for so in ours}
    (d / "applied.json").write_text(json.dumps(list(applied.values()), indent=1))
    operator_bin, adapter_bin = build("operator"), build("adapter")
    try:
        v1.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as exc:
        if exc.status != 409:
            raise
    # The first ScaledObject (by name) gets the spike, the others stay at 0: each must move on its own
    # pods' queue only (the queue query selects namespace and pod, not only model_name).
    keys = sorted(applied)
    spiked = keys[0]
    sim = Simulator()
    procs = []
    timeline = {"%s/%s" % k: [] for k in keys}
    started = time.monotonic()
    try:
        for key in keys:
            sim.set("%s/%s" % key, 0, _served_and_pod(applied[key]))
        prom = Prometheus(d / "prometheus", [sim.target], pid_dir=d)
        procs.append(prom)
        for key in keys:
            _apply(custom, rehearsal_spec(applied[key], prom.url))
        op = Operator(operator_bin, tb.kubeconfig, NAMESPACE, d / "operator", watch="", pid_dir=d)
        procs.append(op)
        adapter = Adapter(adapter_bin, api, tb.kubeconfig, NAMESPACE, op, d / "adapter", watch="", pid_dir=d)
        procs.append(adapter)
        t0 = time.monotonic()

        def sample():
            for key in keys:
                so = applied[key]
                n = apps.read_namespaced_deployment_scale(so["spec"]["scaleTargetRef"]["name"], key[0]).spec.replicas
                series = timeline["%s/%s" % key]
                if not series or series[-1][1] != (n or 0):
                    series.append([round(time.monotonic() - t0), n or 0])

        def phase(waiting, done, seconds):
            sim.set("%s/%s" % spiked, waiting)
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                sample()
                if done():
                    break
                time.sleep(1)

        def spiked_replicas():
            return timeline["%s/%s" % spiked][-1][1]

        sample()
        with op.log_on_failure():
            phase(SPIKE, lambda: spiked_replicas() >= REHEARSAL_MAX, PHASE_SECONDS)
            minimum = applied[spiked]["spec"].get("minReplicaCount", 0)
            phase(0, lambda: spiked_replicas() <= minimum, PHASE_SECONDS)
            sample()
    finally:
        for proc in reversed(procs):
            proc.stop()
        sim.stop()
        # Back to what site.yml applied, and nothing of the operator left behind: its HPAs (the
        # controller would keep asking a gone adapter) and its finalizers (nobody would remove them).
        for key, body in applied.items():
            try:
                _apply(custom, body)
                custom.patch_namespaced_custom_object("keda.sh", "v1alpha1", key[0], "scaledobjects", key[1],
                                                      {"metadata": {"finalizers": None}})
            except ApiException as exc:
                print("could not restore ScaledObject %s/%s: %s" % (key[0], key[1], exc.reason))
            for hpa in hpas.list_namespaced_horizontal_pod_autoscaler(key[0]).items:
                if any(o.kind == "ScaledObject" and o.name == key[1] for o in hpa.metadata.owner_references or []):
                    hpas.delete_namespaced_horizontal_pod_autoscaler(hpa.metadata.name, key[0])
        result = {"keda": KEDA_VERSION, "poll_seconds": POLL, "spike": SPIKE, "spiked": "%s/%s" % spiked,
                  "seconds": round(time.monotonic() - started), "timeline": timeline}
        (d / "timeline.json").write_text(json.dumps(result, indent=1))
    for name, series in timeline.items():
        print("  %s: %s" % (name, format_timeline(series)))
    return 0


def format_timeline(series) -> str:
    """[[0, 2], [14, 3], [40, 1]] -> "t=0s 2 -> t=14s 3 -> t=40s 1"."""
    return " -> ".join("t=%ds %d" % (t, n) for t, n in series) or "-"


def timeline(tb: testbed.Testbed) -> dict | None:
    try:
        return json.loads((state_dir(tb) / "timeline.json").read_text())
    except (OSError, ValueError):
        return None


def stop(tb: testbed.Testbed) -> None:
    """Kill whatever a broken rehearsal left running (its pid files), by pid."""
    for pid_file in state_dir(tb).glob("*.pid"):
        try:
            os.kill(int(pid_file.read_text()), signal.SIGTERM)
        except (OSError, ValueError):
            pass
        pid_file.unlink(missing_ok=True)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    tb = testbed.Testbed()
    if argv[:1] == ["rehearse"]:
        if not tb.healthy():
            print("testbed: not running")
            return 1
        return rehearse(tb)
    if argv[:1] == ["stop"]:
        stop(tb)
        return 0
    print("usage: keda_rehearsal.py rehearse|stop")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
