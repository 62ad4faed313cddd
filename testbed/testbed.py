# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The local testbed: a real Kubernetes control plane with kwok kubelets and simulated GPUs.

    testbed.py up       build (cached) and start the cluster, create the nodes, start the node agent
    testbed.py down     stop everything; leaves no process running
    testbed.py status   print whether it runs, and its nodes
    testbed.py env      print shell exports (KUBECONFIG, GPUOPS_TESTBED_HOME, ...)
    testbed.py refuse on|off   switch the refusals (testbed/admission.py) on a running testbed until
                        the next `up`, which follows cluster.yml's `refuse`

kwokctl (binary runtime) runs etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
the kwok controller from binaries we build from Go modules (testbed/build.sh).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

import yaml

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "scripts"))
import collection_path  # noqa: E402

import admission  # noqa: E402

sys.path.insert(0, str(collection_path.ensure()))

FAKE_NODE_ANNOTATION = "kwok.x-k8s.io/node"
POOL_LABEL = "gpuops.llm/testbed-pool"
NFD_GPU_LABEL = "feature.node.kubernetes.io/pci-10de.present"


def home() -> pathlib.Path:
    default = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache")) / "gpuops-llm" / "testbed"
    return pathlib.Path(os.environ.get("GPUOPS_TESTBED_HOME", default))


def load_spec(path: pathlib.Path | None = None) -> dict:
    with open(path or HERE / "cluster.yml", encoding="utf-8") as f:
        return yaml.safe_load(f)


CAPI_CRD = "machinedeployments.cluster.x-k8s.io"
CAPI_API_VERSION = "cluster.x-k8s.io/v1beta1"


def machine_deployment_crd() -> dict:
    """Cluster API's MachineDeployment kind as the clusterapi autoscaler uses it: group
    cluster.x-k8s.io, namespaced, a scale subresource on spec.replicas (it resizes through
    machinedeployments/scale). Fields are not validated: the testbed holds objects, not Cluster API."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": CAPI_CRD},
        "spec": {"group": "cluster.x-k8s.io", "scope": "Namespaced",
                 "names": {"plural": "machinedeployments", "singular": "machinedeployment",
                           "kind": "MachineDeployment", "listKind": "MachineDeploymentList", "shortNames": ["md"]},
                 "versions": [{"name": "v1beta1", "served": True, "storage": True,
                               "subresources": {"status": {}, "scale": {
                                   "specReplicasPath": ".spec.replicas", "statusReplicasPath": ".status.replicas"}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


class Testbed:
    def __init__(self, spec_path: pathlib.Path | None = None, home_dir: pathlib.Path | None = None):
        """home_dir: a private instance's directory (benchmarks, the check-mode test); default home()."""
        self.spec = load_spec(spec_path)
        self.name = self.spec["cluster_name"]
        self.home = pathlib.Path(home_dir) if home_dir else home()
        self.kubeconfig = self.home / "kubeconfig"
        self.nvml_dir = self.home / "nvml"
        self.workdir = self.home / "kwok"
        self.agent_pid = self.home / "node-agent.pid"
        self.agent_log = self.home / "node-agent.log"

    # ---- paths -------------------------------------------------------------------------
    @property
    def cluster_dir(self) -> pathlib.Path:
        return self.workdir / "clusters" / self.name

    @property
    def audit_log(self) -> pathlib.Path:
        return self.cluster_dir / "logs" / "audit.log"

    def env(self) -> dict:
        env = dict(os.environ)
        env["KWOK_WORKDIR"] = str(self.workdir)
        env["KUBECONFIG"] = str(self.kubeconfig)
        env["GPUOPS_TESTBED_HOME"] = str(self.home)
        return env

    def bin_dir(self) -> pathlib.Path:
        out = subprocess.run(["bash", str(HERE / "build.sh")], check=True, stdout=subprocess.PIPE, text=True)
        return pathlib.Path(out.stdout.strip().splitlines()[-1])

    def kwokctl(self, *args: str, check: bool = True, capture: bool = False) -> subprocess.CompletedProcess:
        cmd = [str(self.bin_dir() / "kwokctl"), "--name", self.name, *args]
        return subprocess.run(cmd, env=self.env(), check=check, text=True,
                              stdout=subprocess.PIPE if capture else None,
                              stderr=subprocess.STDOUT if capture else None)

    # ---- lifecycle ---------------------------------------------------------------------
    def healthy(self) -> bool:
        if not self.kubeconfig.exists():
            return False
        try:
            api = self.api_client()
            from kubernetes import client
            client.VersionApi(api).get_code(_request_timeout=3)
            return True
        except Exception:  # noqa: BLE001 - any failure means "not up"
            return False

    def up(self) -> dict:
        t0 = time.monotonic()
        self.home.mkdir(parents=True, exist_ok=True)
        b = self.bin_dir()
        t_build = time.monotonic() - t0
        if not self.healthy():
            if self.cluster_dir.exists():
                # Processes gone (machine restart, killed): start from the existing state.
                r = self.kwokctl("start", "cluster", "--wait", "120s", check=False)
                if r.returncode != 0 or not self.wait_healthy(60):
                    self.kwokctl("delete", "cluster", check=False)
            if not self.healthy():
                self.kwokctl(
                    "create", "cluster", "--runtime", "binary",
                    "--kube-apiserver-binary", str(b / "kube-apiserver"),
                    "--kube-controller-manager-binary", str(b / "kube-controller-manager"),
                    "--kube-scheduler-binary", str(b / "kube-scheduler"),
                    "--etcd-binary", str(b / "etcd"),
                    "--kwok-controller-binary", str(b / "kwok"),
                    "--kubeconfig", str(self.kubeconfig),
                    "--kube-audit-policy", str(HERE / "audit-policy.yaml"),
                    "--wait", "120s",
                )
            if not self.wait_healthy(60):
                raise SystemExit("testbed: the apiserver did not become healthy; see " + str(self.cluster_dir / "logs"))
        self.ensure_nodes()
        self.ensure_cluster_api()
        self.set_refusals(admission.refusing(self.spec))
        self.start_agent()
        return {"build_s": round(t_build, 1), "up_s": round(time.monotonic() - t0, 1)}

    def wait_healthy(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.healthy():
                return True
            time.sleep(1)
        return False

    def down(self) -> None:
        import cluster_autoscaler  # the real autoscaler, when a rehearsal or test left it running
        cluster_autoscaler.stop(self)
        import keda_rehearsal  # KEDA's operator, adapter and Prometheus, when a rehearsal left them
        keda_rehearsal.stop(self)
        self.stop_agent()
        if self.cluster_dir.exists():
            self.kwokctl("delete", "cluster", check=False)
        # kwokctl stops its components by pid file; make sure nothing of ours survives.
        for proc in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "etcd", "kwok"):
            # Only this instance's processes: their command lines name its work directory.
            subprocess.run(["pkill", "-f", f"{self.workdir}/.*{proc}"], check=False)
        shutil.rmtree(self.nvml_dir, ignore_errors=True)
        if self.kubeconfig.exists():
            self.kubeconfig.unlink()

    def set_refusals(self, on: bool) -> None:
        """Install (or remove) the admission policies that refuse what a real node would."""
        api = self.api_client()
        if on:
            images = admission.load_images()
            admission.install(api, self.spec, images)
            admission.wait_enforced(api, images)
        else:
            admission.remove(api)

    # ---- kubernetes --------------------------------------------------------------------
    def api_client(self):
        from kubernetes import config
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def node_manifest(self, n: dict) -> dict:
        labels = {
            "kubernetes.io/hostname": n["name"],
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            "type": "kwok",
            POOL_LABEL: n["pool"],
        }
        if n.get("gpu_count"):
            labels[NFD_GPU_LABEL] = "true"  # what Node Feature Discovery would set for an NVIDIA PCI device
        alloc = {"cpu": str(n.get("cpu", "16")), "memory": str(n.get("memory", "64Gi")), "pods": "110"}
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": n["name"], "labels": labels, "annotations": {
                FAKE_NODE_ANNOTATION: "fake", admission.RUNTIME_ANNOTATION: admission.node_runtime(n)}},
            "status": {"capacity": dict(alloc), "allocatable": dict(alloc),
                       "nodeInfo": {"kubeletVersion": "v1.36.3-kwok", "operatingSystem": "linux", "architecture": "amd64"}},
        }

    def ensure_nodes(self) -> None:
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        v1 = client.CoreV1Api(self.api_client())
        self.nvml_dir.mkdir(parents=True, exist_ok=True)
        for n in self.spec["nodes"]:
            if n.get("gpu_count"):
                self.ensure_nvml_state(n)
            try:
                node = v1.read_node(n["name"])
                runtime = admission.node_runtime(n)
                if (node.metadata.annotations or {}).get(admission.RUNTIME_ANNOTATION) != runtime:
                    v1.patch_node(n["name"], {"metadata": {"annotations": {admission.RUNTIME_ANNOTATION: runtime}}})
            except ApiException as e:
                if e.status != 404:
                    raise
                body = self.node_manifest(n)
                status = body.pop("status")
                v1.create_node(body)
                # Capacity lives in the status subresource; kwok keeps what we set there.
                v1.patch_node_status(n["name"], {"status": status})

    def ensure_cluster_api(self) -> None:
        """Cluster API's MachineDeployment kind and one object per node group of cluster.yml's
        cluster_api section: what roles/cluster_autoscaler annotates with min/max sizes and what the
        audit reads them from. Objects only: no Cluster API controller runs, nothing reconciles
        replicas (make run's real autoscaler resizes kwok node groups instead, testbed/cluster_autoscaler.py)."""
        capi = self.spec.get("cluster_api")
        if not capi:
            return
        from kubernetes import client
        from kubernetes.client.rest import ApiException
        from kubernetes.dynamic import DynamicClient
        api = self.api_client()
        try:
            client.ApiextensionsV1Api(api).create_custom_resource_definition(machine_deployment_crd())
        except ApiException as e:
            if e.status != 409:
                raise
        for _attempt in range(60):  # the kind is served once the CRD is Established
            crd = client.ApiextensionsV1Api(api).read_custom_resource_definition(CAPI_CRD)
            if any(c.type == "Established" and c.status == "True" for c in (crd.status.conditions or [])):
                break
            time.sleep(0.5)
        res = DynamicClient(api).resources.get(api_version=CAPI_API_VERSION, kind="MachineDeployment")
        for name in capi["machine_deployments"]:
            body = {"apiVersion": CAPI_API_VERSION, "kind": "MachineDeployment",
                    "metadata": {"name": name, "namespace": capi["namespace"]},
                    "spec": {"clusterName": capi["cluster_name"], "replicas": 0,
                             "selector": {"matchLabels": {POOL_LABEL: name}}}}
            try:
                res.create(body=body, namespace=capi["namespace"])
            except ApiException as e:
                if e.status != 409:
                    raise

    def ensure_nvml_state(self, n: dict) -> None:
        path = self.nvml_dir / f"{n['name']}.json"
        if path.exists():
            return
        from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
        state = nvml_sim.new_host_state([n["gpu_model"]] * int(n["gpu_count"]), mig_enabled=bool(n.get("mig_enabled")))
        nvml_sim.save_state(str(path), state)

    # ---- node agent --------------------------------------------------------------------
    def agent_running(self) -> bool:
        try:
            pid = int(self.agent_pid.read_text())
            os.kill(pid, 0)
            return True
        except (OSError, ValueError):
            return False

    def start_agent(self) -> None:
        if self.agent_running():
            return
        log = open(self.agent_log, "ab")
        p = subprocess.Popen(
            [sys.executable, str(HERE / "node_agent.py"), "--kubeconfig", str(self.kubeconfig), "--nvml-dir", str(self.nvml_dir)],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, env=self.env(),
        )
        self.agent_pid.write_text(str(p.pid))

    def stop_agent(self) -> None:
        if not self.agent_running():
            return
        pid = int(self.agent_pid.read_text())
        os.kill(pid, signal.SIGTERM)
        for _attempt in range(50):
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.1)
        else:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it exited after the last check
        self.agent_pid.unlink(missing_ok=True)

    # ---- status ------------------------------------------------------------------------
    def summary(self) -> dict:
        from kubernetes import client
        v1 = client.CoreV1Api(self.api_client())
        pools: dict = {}
        for node in v1.list_node().items:
            pool = (node.metadata.labels or {}).get(POOL_LABEL, "(none)")
            alloc = node.status.allocatable or {}
            p = pools.setdefault(pool, {"nodes": 0, "ready": 0, "nvidia.com/gpu": 0, "mig": {}})
            p["nodes"] += 1
            ready = any(c.type == "Ready" and c.status == "True" for c in (node.status.conditions or []))
            p["ready"] += int(ready)
            for k, v in alloc.items():
                if k == "nvidia.com/gpu":
                    p[k] += int(v)
                elif k.startswith("nvidia.com/mig-"):
                    p["mig"][k] = p["mig"].get(k, 0) + int(v)
        return pools


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["up", "down", "status", "env", "build", "refuse"])
    ap.add_argument("state", nargs="?", choices=["on", "off"], help="for refuse: on or off")
    ap.add_argument("--spec", type=pathlib.Path, default=None, help="cluster spec (default testbed/cluster.yml)")
    args = ap.parse_args(argv)
    tb = Testbed(args.spec)
    if args.command == "build":
        print(tb.bin_dir())
    elif args.command == "up":
        timings = tb.up()
        print(json.dumps({"kubeconfig": str(tb.kubeconfig), **timings, "pools": tb.summary()}, indent=2))
    elif args.command == "down":
        tb.down()
        print("testbed: down")
    elif args.command == "status":
        if not tb.healthy():
            print("testbed: not running")
            return 1
        print(json.dumps({"kubeconfig": str(tb.kubeconfig), "agent": tb.agent_running(),
                          "refuse": admission.active(tb.api_client()), "pools": tb.summary()}, indent=2))
    elif args.command == "refuse":
        if not args.state:
            ap.error("refuse needs on or off")
        tb.set_refusals(args.state == "on")
        print("testbed: refusals " + args.state)
    elif args.command == "env":
        print(f"export KUBECONFIG={tb.kubeconfig} K8S_AUTH_KUBECONFIG={tb.kubeconfig} GPUOPS_TESTBED_HOME={tb.home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
