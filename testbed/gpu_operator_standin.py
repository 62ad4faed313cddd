# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in NVIDIA GPU Operator for the testbed: the objects it leaves, the labels it sets, and its
mig-manager's nvidia.com/mig.config protocol, as NVIDIA/gpu-operator v26.7.0 and NVIDIA/mig-parted
v0.15.0 (the mig-manager that release pins) state them in their code.

    gpu_operator_standin.py install   CRD, namespace, ClusterPolicy, mig-parted ConfigMaps, DaemonSets
    gpu_operator_standin.py run       the controller: node labels, ClusterPolicy status, mig-manager
    gpu_operator_standin.py uninstall everything install made, and the labels run set

What `run` does, each with its upstream source:
  - labels GPU nodes (NFD's feature.node.kubernetes.io/pci-10de.present=true) with nvidia.com/gpu.present
    and the nvidia.com/gpu.deploy.* labels, setting only labels that are missing or empty, and
    nvidia.com/gpu.deploy.mig-manager on MIG-capable nodes (controllers/state_manager.go
    addGPUStateLabels); nvidia.com/mig.config=<spec.migManager.config.default> on MIG-capable nodes
    that have none (controllers/nodelabeling_controller.go);
  - sets the ClusterPolicy's status.state ready and status.namespace (api/nvidia/v1/clusterpolicy_types.go);
  - for each node running an nvidia-mig-manager pod, on every change of nvidia.com/mig.config (and once
    at start), runs Reconfigure.Run (mig-parted pkg/mig/reconfigure/reconfigure.go): assert the config
    is valid, else state failed; if already applied, success; else state pending, deploy labels of the
    device plugin, GFD, DCGM exporter, DCGM and nvsm set to paused-for-mig-change ("false" stays), wait
    for those pods to leave the node, apply, put the labels back to "true", state success (failed,
    labels back, on an apply error).
The GPUs are the node's NVML simulator state; the layout is applied with the collection's explicit
placement solver (module_utils/nvml.configure_mig), so the simulated GPUs obey NVML's rules. The node
agent (testbed/node_agent.py) advertises resources and GFD labels while the operator's device plugin and
GFD pods run, as it does for the collection's own.
"""
from __future__ import annotations

import argparse
import pathlib
import signal
import sys
import threading
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
import collection_path  # noqa: E402

sys.path.insert(0, str(collection_path.ensure()))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from ansible_collections.gpuops.llm.plugins.module_utils import gpu_operator as go  # noqa: E402
from ansible_collections.gpuops.llm.plugins.module_utils import mig, nvml  # noqa: E402

NAMESPACE = go.DEFAULT_NAMESPACE
RUNTIME_CLASS = "nvidia"  # DefaultRuntimeClass, controllers/object_controls.go
POLICY = "cluster-policy"  # deployments/gpu-operator/templates/clusterpolicy.yaml
CUSTOM_CONFIGMAP = "custom-mig-parted-config"
NFD_GPU_LABEL = "feature.node.kubernetes.io/pci-10de.present"
# gpuStateLabels[container] (state_manager.go); the ones this stand-in's DaemonSets select on, and the rest.
STATE_LABELS = ["nvidia.com/gpu.deploy.driver", "nvidia.com/gpu.deploy.gpu-feature-discovery",
                "nvidia.com/gpu.deploy.container-toolkit", "nvidia.com/gpu.deploy.device-plugin",
                "nvidia.com/gpu.deploy.dcgm", "nvidia.com/gpu.deploy.dcgm-exporter",
                "nvidia.com/gpu.deploy.node-status-exporter", "nvidia.com/gpu.deploy.operator-validator",
                "nvidia.com/gpu.deploy.client"]
# reconfigure.go shutdownKubernetesGPUClients / setState: the labels it pauses and puts back.
PAUSED_LABELS = ["nvidia.com/gpu.deploy.device-plugin", "nvidia.com/gpu.deploy.gpu-feature-discovery",
                 "nvidia.com/gpu.deploy.dcgm-exporter", "nvidia.com/gpu.deploy.dcgm", "nvidia.com/gpu.deploy.nvsm"]
# waitForPodsToBeDeleted: the pods it waits for (app labels), 5 minutes each.
WAITED_APPS = ["nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter", "nvidia-dcgm"]
# values.yaml at v26.7.0: the images the operator's DaemonSets run.
IMAGES = {
    "nvidia-device-plugin-daemonset": "nvcr.io/nvidia/k8s-device-plugin:v0.20.0",
    "gpu-feature-discovery": "nvcr.io/nvidia/k8s-device-plugin:v0.20.0",
    "nvidia-dcgm-exporter": "nvcr.io/nvidia/k8s/dcgm-exporter:4.6.0-4.8.3-distroless",
    "nvidia-mig-manager": "nvcr.io/nvidia/cloud-native/k8s-mig-manager:v0.15.0",
}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {msg}", flush=True)


# ---- objects -----------------------------------------------------------------------------------

def crd() -> dict:
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": go.CRD_NAME},
        "spec": {"group": "nvidia.com", "scope": "Cluster",
                 "names": {"plural": "clusterpolicies", "singular": "clusterpolicy", "kind": "ClusterPolicy",
                           "listKind": "ClusterPolicyList"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                               "schema": {"openAPIV3Schema": {"type": "object",
                                                              "x-kubernetes-preserve-unknown-fields": True}}}]},
    }


def default_configs() -> dict:
    """A small site config: the two configs every mig-parted file has, and all-balanced for the
    testbed's H100 80GB (mig-parted's balanced layout for 7-slice GPUs)."""
    return {"version": "v1", "mig-configs": {
        "all-disabled": [{"devices": "all", "mig-enabled": False}],
        "all-enabled": [{"devices": "all", "mig-enabled": True, "mig-devices": {}}],
        "all-balanced": [{"devices": "all", "mig-enabled": True,
                          "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}}],
    }}


def policy(strategy: str, custom: bool) -> dict:
    mig_manager: dict = {"enabled": True, "config": {"default": go.DEFAULT_MIG_CONFIG}}
    if custom:
        mig_manager["config"]["name"] = CUSTOM_CONFIGMAP
    return {"apiVersion": go.API_VERSION, "kind": "ClusterPolicy", "metadata": {"name": POLICY},
            "spec": {"operator": {"defaultRuntime": "containerd"}, "mig": {"strategy": strategy},
                     "devicePlugin": {"enabled": True}, "gfd": {"enabled": True},
                     "dcgmExporter": {"enabled": True}, "migManager": mig_manager}}


def daemonset(name: str, deploy_label: str, strategy: str) -> dict:
    labels = {"app": name}
    if name == "gpu-feature-discovery":
        labels["app.kubernetes.io/part-of"] = "nvidia-gpu"
    env = []
    if name in ("nvidia-device-plugin-daemonset", "gpu-feature-discovery"):
        # applyMIGConfiguration (controllers/object_controls.go)
        env = [{"name": "MIG_STRATEGY", "value": strategy}, {"name": "NVIDIA_MIG_MONITOR_DEVICES", "value": "all"}]
    return {"apiVersion": "apps/v1", "kind": "DaemonSet",
            "metadata": {"name": name, "namespace": NAMESPACE, "labels": dict(labels)},
            "spec": {"selector": {"matchLabels": dict(labels)},
                     "template": {"metadata": {"labels": dict(labels)}, "spec": {
                         "nodeSelector": {deploy_label: "true"},
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
                                         {"operator": "Exists"}],
                         "priorityClassName": "system-node-critical",
                         # setRuntimeClass (controllers/object_controls.go): under containerd every operand
                         # runs with operator.runtimeClass, default "nvidia", whatever containerd's default.
                         "runtimeClassName": RUNTIME_CLASS,
                         "containers": [{"name": name, "image": IMAGES[name], "env": env}]}}}}


def install(api, strategy: str = "mixed", custom: bool = True) -> None:
    ext = client.ApiextensionsV1Api(api)
    _create(lambda: ext.create_custom_resource_definition(crd()))
    for _attempt in range(100):
        c = ext.read_custom_resource_definition(go.CRD_NAME)
        if any(x.type == "Established" and x.status == "True" for x in (c.status.conditions or [])):
            break
        time.sleep(0.1)
    v1, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    _create(lambda: v1.create_namespace({"metadata": {"name": NAMESPACE}}))
    # The operator writes the RuntimeClass its operands use (transformRuntimeClass, handler nvidia).
    _create(lambda: client.NodeV1Api(api).create_runtime_class(
        {"metadata": {"name": RUNTIME_CLASS}, "handler": RUNTIME_CLASS}))
    # The operator's own default ConfigMap (assets/state-mig-manager/0400_configmap.yaml), and a custom one.
    text = yaml.safe_dump(default_configs(), sort_keys=False)
    for cm in (go.DEFAULT_MIG_CONFIGMAP, CUSTOM_CONFIGMAP):
        _create(lambda cm=cm: v1.create_namespaced_config_map(NAMESPACE, {
            "metadata": {"name": cm}, "data": {go.MIG_CONFIG_KEY: text}}))
    for _comp, (_key, ds, deploy_label) in go.COMPONENTS.items():
        _create(lambda ds=ds, deploy_label=deploy_label: apps.create_namespaced_daemon_set(
            NAMESPACE, daemonset(ds, deploy_label, strategy)))
    _create(lambda: client.CustomObjectsApi(api).create_cluster_custom_object(
        "nvidia.com", "v1", "clusterpolicies", policy(strategy, custom)))


def uninstall(api) -> None:
    v1 = client.CoreV1Api(api)
    try:
        client.ApiextensionsV1Api(api).delete_custom_resource_definition(go.CRD_NAME)
    except ApiException as e:
        if e.status != 404:
            raise
    try:
        v1.delete_namespace(NAMESPACE)
    except ApiException as e:
        if e.status != 404:
            raise
    for node in v1.list_node().items:
        labels = node.metadata.labels or {}
        drop = {k: None for k in labels if k.startswith("nvidia.com/gpu.deploy.") or k in (
            go.GPU_PRESENT_LABEL, go.MIG_CONFIG_LABEL, go.MIG_STATE_LABEL)}
        if drop:
            v1.patch_node(node.metadata.name, {"metadata": {"labels": drop}})


def _create(fn) -> None:
    try:
        fn()
    except ApiException as e:
        if e.status != 409:
            raise


# ---- the controller --------------------------------------------------------------------------

class StandIn:
    def __init__(self, api, nvml_dir: pathlib.Path):
        self.api = api
        self.v1 = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)
        self.nvml_dir = nvml_dir
        self.handled: dict = {}  # node -> the mig.config value its mig-manager last acted on
        self.workers: dict = {}

    def policy(self) -> dict | None:
        try:
            return self.custom.get_cluster_custom_object("nvidia.com", "v1", "clusterpolicies", POLICY)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def tick(self) -> None:
        pol = self.policy()
        if pol is None:
            return
        if (pol.get("status") or {}) .get("state") != go.STATE_READY:
            self.custom.patch_cluster_custom_object_status("nvidia.com", "v1", "clusterpolicies", POLICY, {
                "status": {"state": go.STATE_READY, "namespace": NAMESPACE}})
        settings = go.mig_settings(pol)
        for node in self.v1.list_node().items:
            self.label_node(node, settings)
        running = {p.spec.node_name for p in self.v1.list_namespaced_pod(
            NAMESPACE, label_selector="app=nvidia-mig-manager").items
            if p.status.phase == "Running" and not p.metadata.deletion_timestamp}
        for node in self.v1.list_node().items:
            name = node.metadata.name
            want = (node.metadata.labels or {}).get(go.MIG_CONFIG_LABEL)
            busy = self.workers.get(name)
            if name not in running or want is None or (busy and busy.is_alive()):
                continue
            if self.handled.get(name) != want:
                self.handled[name] = want
                t = threading.Thread(target=self.reconfigure, args=(name, want, settings), daemon=True)
                self.workers[name] = t
                t.start()

    def _mig_capable(self, name: str, labels: dict) -> bool:
        if labels.get("nvidia.com/mig.capable") in ("true", "false"):
            return labels["nvidia.com/mig.capable"] == "true"
        state = self.nvml_dir / f"{name}.json"
        if not state.exists():
            return False
        facts = nvml.host_facts(nvml.get_backend(sim_state=str(state)))
        return any(g.get("mig_capable") for g in facts["gpus"])

    def label_node(self, node, settings: dict) -> None:
        labels = node.metadata.labels or {}
        if labels.get(NFD_GPU_LABEL) != "true":
            return
        patch = {}
        if labels.get(go.GPU_PRESENT_LABEL) != "true":
            patch[go.GPU_PRESENT_LABEL] = "true"
        for k in STATE_LABELS:
            if not labels.get(k):  # addGPUStateLabels: only missing or empty ones
                patch[k] = "true"
        if self._mig_capable(node.metadata.name, labels):
            if not labels.get(go.COMPONENTS["mig_manager"][2]):
                patch[go.COMPONENTS["mig_manager"][2]] = "true"
            if (settings["manager_enabled"] and not labels.get(go.MIG_CONFIG_LABEL)
                    and settings["default_config"] == go.DEFAULT_MIG_CONFIG):
                patch[go.MIG_CONFIG_LABEL] = go.DEFAULT_MIG_CONFIG
        if patch:
            self.v1.patch_node(node.metadata.name, {"metadata": {"labels": patch}})
            log(f"labelled {node.metadata.name}: {sorted(patch)}")

    # -- mig-manager: Reconfigure.Run ------------------------------------------------------------
    def _configs(self, settings: dict, facts: dict) -> dict:
        """The mig-parted file mig-manager reads: the custom ConfigMap (CONFIG_FILE), else configs
        generated from the hardware (builder.go: all-disabled, all-enabled, all-balanced, all-<profile>)."""
        if settings["config_map_custom"]:
            cm = self.v1.read_namespaced_config_map(settings["config_map"], NAMESPACE)
            return mig.parse_mig_parted_config(yaml.safe_load((cm.data or {}).get(go.MIG_CONFIG_KEY) or ""),
                                               source="ConfigMap %s" % settings["config_map"])
        names = set()
        for g in facts["gpus"]:
            names.update(mig.preset_names(g["name"]))
        return {n: None for n in names}  # resolved per GPU by mig.preset, as the generator does

    def _desired(self, configs: dict, name: str):
        if name not in configs:
            raise mig.MigError("config '%s' not in the mig-parted file; available: %s"
                               % (name, ", ".join(sorted(configs))), reason="config")
        if configs[name] is None:
            return lambda facts: mig.desired_state(facts, preset_name=name)
        return lambda facts: mig.desired_state(facts, configs=configs, config_name=name)

    def _labels(self, node: str) -> dict:
        return self.v1.read_node(node).metadata.labels or {}

    def _set(self, node: str, labels: dict) -> None:
        self.v1.patch_node(node, {"metadata": {"labels": labels}})

    def _set_state(self, node: str, state: str, deployed: dict) -> None:
        # setState: GPU clients back first (maybeSetTrue), then the state label.
        self._set(node, {k: ("false" if deployed.get(k) == "false" else "true") for k in PAUSED_LABELS})
        self._set(node, {go.MIG_STATE_LABEL: state})
        log(f"{node}: nvidia.com/mig.config.state={state}")

    def reconfigure(self, node: str, name: str, settings: dict) -> None:
        state_file = str(self.nvml_dir / f"{node}.json")
        try:
            deployed = {k: v for k, v in self._labels(node).items() if k in PAUSED_LABELS}
            backend = nvml.get_backend(sim_state=state_file)
            facts = nvml.host_facts(backend)
            try:
                desired = self._desired(self._configs(settings, facts), name)
                plan = nvml.configure_mig(backend, desired, check_mode=True, force=True)  # assert --valid-config
            except (mig.MigError, ValueError, TypeError) as e:
                log(f"{node}: invalid config {name}: {e}")
                self._set_state(node, "failed", deployed)
                return
            if not any(g["changed"] for g in plan["gpus"]):  # isConfigAlreadyApplied
                self._set_state(node, "success", deployed)
                return
            self._set(node, {go.MIG_STATE_LABEL: "pending"})
            self._set(node, {k: ("false" if deployed.get(k) == "false" else go.PAUSED_FOR_MIG) for k in PAUSED_LABELS})
            deadline = time.monotonic() + 300
            while any(p.spec.node_name == node for app in WAITED_APPS for p in self.v1.list_namespaced_pod(
                    NAMESPACE, label_selector=f"app={app}").items):
                if time.monotonic() > deadline:
                    log(f"{node}: GPU client pods did not shut down")  # upstream leaves the state pending
                    return
                time.sleep(0.5)
            try:
                with nvml.get_backend(sim_state=state_file) as b:
                    nvml.configure_mig(b, desired, force=False)
            except (mig.MigError, nvml.MigApplyError, nvml.NVMLError) as e:
                log(f"{node}: applying {name} failed: {e}")
                self._set_state(node, "failed", deployed)
                return
            self._set_state(node, "success", deployed)
        except ApiException as e:
            log(f"{node}: api error {e.status} {e.reason}")
            self.handled.pop(node, None)  # try again on the next tick


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["install", "run", "uninstall"])
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--nvml-dir", type=pathlib.Path)
    ap.add_argument("--strategy", default="mixed", choices=["none", "single", "mixed"])
    ap.add_argument("--no-custom-config", action="store_true", help="use the hardware-generated configs")
    ap.add_argument("--interval", type=float, default=0.5)
    args = ap.parse_args()
    api = config.new_client_from_config(config_file=args.kubeconfig)
    if args.command == "install":
        install(api, args.strategy, custom=not args.no_custom_config)
        return 0
    if args.command == "uninstall":
        uninstall(api)
        return 0
    if not args.nvml_dir:
        ap.error("run needs --nvml-dir")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    standin = StandIn(api, args.nvml_dir)
    while True:
        try:
            standin.tick()
        except ApiException as e:
            log(f"api error: {e.status} {e.reason}")
        except Exception as e:  # noqa: BLE001 - keep running; the log says why
            log(f"error: {type(e).__name__}: {e}")
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
