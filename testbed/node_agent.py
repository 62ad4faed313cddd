# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Simulated node agents: what the NVIDIA device plugin and GPU Feature Discovery do on a node.

kwok runs no containers, so the device plugin and GFD pods it reports Running do nothing. This
agent closes the loop: for each node with a simulated NVML host (<nvml-dir>/<node>.json),
  - while a device plugin pod is Running on it, advertise nvidia.com/gpu or nvidia.com/mig-*
    capacity computed from the host's GPU state and the pod's MIG_STRATEGY;
  - while a GFD pod is Running on it, set the GFD labels.
No plugin pod means no GPU resources, exactly as on a real node. The mapping from GPU state to
resources and labels is the collection's own (module_utils/gfd.py), so the testbed and the
roles that wait for resources agree by construction.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import posixpath
import signal
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "scripts"))
import collection_path  # noqa: E402

sys.path.insert(0, str(collection_path.ensure()))

import yaml  # noqa: E402
from kubernetes import client, config  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402

from ansible_collections.gpuops.llm.plugins.module_utils import gfd, nvml  # noqa: E402

DEVICE_PLUGIN = "nvidia-device-plugin"
GFD = "gpu-feature-discovery"
OWNED_LABELS = "gpuops.llm/testbed-gfd-labels"  # which labels this agent set, to remove them later
RESOURCE_PREFIXES = ("nvidia.com/gpu", "nvidia.com/mig-")


def without_nvml(v1: client.CoreV1Api):
    """While the testbed refuses (testbed/admission.py), a predicate: would this pod get no NVML?

    On a node whose containerd default is runc, only a RuntimeClass with handler nvidia injects the
    driver libraries; without them the real plugin and GFD exit (FAIL_ON_INIT_ERROR) and advertise
    nothing. None when the testbed does not refuse."""
    import admission
    if not admission.active(v1.api_client):
        return None
    handlers = {rc.metadata.name: rc.handler for rc in client.NodeV1Api(v1.api_client).list_runtime_class().items}
    runtimes = {n.metadata.name: (n.metadata.annotations or {}).get(admission.RUNTIME_ANNOTATION, admission.DEFAULT_RUNTIME)
                for n in v1.list_node().items}
    return lambda pod: (runtimes.get(pod.spec.node_name, admission.DEFAULT_RUNTIME) != admission.NVIDIA_HANDLER
                        and handlers.get(pod.spec.runtime_class_name or "") != admission.NVIDIA_HANDLER)


def running_pods(v1: client.CoreV1Api) -> dict[str, dict[str, str]]:
    """node -> {component: mig strategy} for Running device plugin / GFD pods that would get NVML."""
    out: dict[str, dict[str, str]] = {}
    pods = v1.list_pod_for_all_namespaces(label_selector=f"app.kubernetes.io/name in ({DEVICE_PLUGIN},{GFD})")
    no_nvml = without_nvml(v1) if pods.items else None
    for pod in pods.items:
        if pod.status.phase != "Running" or not pod.spec.node_name or pod.metadata.deletion_timestamp:
            continue
        if no_nvml and no_nvml(pod):
            continue
        name = pod.metadata.labels.get("app.kubernetes.io/name")
        strategy = "none"
        for c in pod.spec.containers:
            for e in c.env or []:
                if e.name == "MIG_STRATEGY" and e.value:
                    strategy = e.value
        out.setdefault(pod.spec.node_name, {})[name] = strategy
    return out


# A GPU Operator's DaemonSets label their pods app=<DaemonSet name> (gpu-operator v26.7.0 assets/), with
# MIG_STRATEGY from its ClusterPolicy; testbed/gpu_operator_standin.py deploys them.
OPERATOR_APPS = {"nvidia-device-plugin-daemonset": DEVICE_PLUGIN, "gpu-feature-discovery": GFD}


def operator_pods(v1: client.CoreV1Api) -> dict[str, dict[str, str]]:
    """node -> {component: mig strategy} for the operator's Running device plugin / GFD pods."""
    out: dict[str, dict[str, str]] = {}
    for pod in v1.list_pod_for_all_namespaces(label_selector="app in (%s)" % ",".join(OPERATOR_APPS)).items:
        if pod.status.phase != "Running" or not pod.spec.node_name or pod.metadata.deletion_timestamp:
            continue
        env = {e.name: e.value for c in pod.spec.containers for e in (c.env or [])}
        out.setdefault(pod.spec.node_name, {})[OPERATOR_APPS[pod.metadata.labels["app"]]] = env.get("MIG_STRATEGY") or "none"
    return out


TIMESTAMP_LABEL = "nvidia.com/gfd.timestamp"
PROBLEMS = "gpuops.llm/testbed-node-agent-problems"  # why a component would exit on this node
_CONFIGS: dict = {}  # pod uid -> the plugin config file it mounts (pods restart when it changes)


def plugin_config(v1: client.CoreV1Api, node_name: str):
    """The config file (parsed YAML) the node's Running device plugin or GFD pod mounts, or None.

    Its `sharing` section decides replicas and the sharing labels (k8s-device-plugin api/config/v1)."""
    found = None
    pods = v1.list_pod_for_all_namespaces(field_selector=f"spec.nodeName={node_name}",
                                          label_selector=f"app.kubernetes.io/name in ({DEVICE_PLUGIN},{GFD})")
    for pod in pods.items:
        if pod.status.phase != "Running" or pod.metadata.deletion_timestamp:
            continue
        if pod.metadata.uid not in _CONFIGS:
            _CONFIGS[pod.metadata.uid] = _read_config(v1, pod)
        if pod.metadata.labels.get("app.kubernetes.io/name") == DEVICE_PLUGIN or found is None:
            found = _CONFIGS[pod.metadata.uid]
    return found


def _read_config(v1: client.CoreV1Api, pod):
    volumes = {v.name: v.config_map.name for v in pod.spec.volumes or [] if v.config_map}
    for c in pod.spec.containers:
        path = next((e.value for e in c.env or [] if e.name == "CONFIG_FILE" and e.value), None)
        if not path:
            continue
        for m in c.volume_mounts or []:
            if m.name in volumes and posixpath.dirname(path) == m.mount_path.rstrip("/"):
                try:
                    cm = v1.read_namespaced_config_map(volumes[m.name], pod.metadata.namespace)
                except ApiException:
                    return None
                text = (cm.data or {}).get(posixpath.basename(path))
                return yaml.safe_load(text) if text else None
    return None


def reconcile_node(v1: client.CoreV1Api, node, state_file: pathlib.Path, comps: dict[str, str]) -> bool:
    """Bring one node's capacity and labels in line with its simulated GPUs. Returns True if patched.

    Resources follow the device plugin pod's MIG_STRATEGY, labels the GFD pod's (each may differ).
    A component that would exit (gfd.PluginError / LabelError) publishes nothing; the reason goes to
    the PROBLEMS annotation and the agent's log."""
    facts = nvml.host_facts(nvml.get_backend(sim_state=str(state_file)))
    node_labels = node.metadata.labels or {}
    annotations = node.metadata.annotations or {}
    owned = json.loads(annotations.get(OWNED_LABELS, "[]"))
    # GFD stamps its labels once, when it starts (cmd/gpu-feature-discovery/main.go), so keep ours.
    stamp = node_labels.get(TIMESTAMP_LABEL) if TIMESTAMP_LABEL in owned else None
    plugin_cfg = plugin_config(v1, node.metadata.name) if comps else None
    problems = {}
    resources, labels = {}, {}
    if DEVICE_PLUGIN in comps:
        try:
            resources = gfd.plugin_resources(facts, comps[DEVICE_PLUGIN], plugin_cfg)
        except gfd.PluginError as e:
            problems[DEVICE_PLUGIN] = str(e)
    if GFD in comps:
        try:
            labels = gfd.gfd_labels(facts, comps[GFD], plugin_cfg,
                                    int(stamp) if (stamp or "").isdigit() else int(time.time()))
        except gfd.LabelError as e:
            problems[GFD] = str(e)

    changed = False
    current = dict(node.status.allocatable or {})
    have = {k: v for k, v in current.items() if k.startswith(RESOURCE_PREFIXES)}
    if have != resources:
        patch = {k: None for k in have if k not in resources}
        patch.update(resources)
        v1.patch_node_status(node.metadata.name, {"status": {"capacity": patch, "allocatable": patch}})
        changed = True

    label_patch = {k: None for k in owned if k not in labels}
    label_patch.update({k: v for k, v in labels.items() if node_labels.get(k) != v})
    want_problems = json.dumps(problems, sort_keys=True) if problems else None
    if label_patch or sorted(labels) != sorted(owned) or annotations.get(PROBLEMS) != want_problems:
        v1.patch_node(node.metadata.name, {"metadata": {
            "labels": label_patch, "annotations": {OWNED_LABELS: json.dumps(sorted(labels)), PROBLEMS: want_problems}}})
        for comp, why in sorted(problems.items()):
            print(f"{time.strftime('%H:%M:%S')} {node.metadata.name}: {comp} would exit: {why}", flush=True)
        changed = True
    return changed


def loop(kubeconfig: str, nvml_dir: pathlib.Path, interval: float, once: bool = False) -> None:
    v1 = client.CoreV1Api(config.new_client_from_config(config_file=kubeconfig))
    while True:
        try:
            comps = running_pods(v1)
            for name, theirs in operator_pods(v1).items():
                comps.setdefault(name, {}).update(theirs)
            for node in v1.list_node().items:
                state = nvml_dir / f"{node.metadata.name}.json"
                if state.exists():
                    if reconcile_node(v1, node, state, comps.get(node.metadata.name, {})):
                        print(f"{time.strftime('%H:%M:%S')} reconciled {node.metadata.name}", flush=True)
        except ApiException as e:
            print(f"api error: {e.status} {e.reason}", flush=True)
        except Exception as e:  # noqa: BLE001 - keep the agent alive; the log says why
            print(f"error: {type(e).__name__}: {e}", flush=True)
        if once:
            return
        time.sleep(interval)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--kubeconfig", required=True)
    ap.add_argument("--nvml-dir", required=True, type=pathlib.Path)
    ap.add_argument("--interval", type=float, default=1.0)
    ap.add_argument("--once", action="store_true")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    loop(args.kubeconfig, args.nvml_dir, args.interval, args.once)
    return 0


if __name__ == "__main__":
    sys.exit(main())
