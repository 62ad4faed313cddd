# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Coexist with an NVIDIA GPU Operator: detect it, and drive its mig-manager.

Every name below is what NVIDIA/gpu-operator v26.7.0 and NVIDIA/mig-parted v0.15.0 (the
mig-manager that operator release pins) write in their own code; docs/conformance.md#gpu-operator
lists the file of each. The rules are pure functions over plain dicts (unit-tested without a
cluster); ``read_cluster`` is the only part that talks to the API, through the K8s adapter.
"""
from __future__ import annotations

import hashlib
import json

from ansible_collections.gpuops.llm.plugins.module_utils import mig
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8sNotFound, resource_path

# api/nvidia/v1/groupversion_info.go + clusterpolicy_types.go (+kubebuilder:resource:scope=Cluster)
API_VERSION = "nvidia.com/v1"
PLURAL = "clusterpolicies"
CRD_NAME = "clusterpolicies.nvidia.com"
# The Helm chart's install namespace in NVIDIA's docs; status.namespace says where it really is.
DEFAULT_NAMESPACE = "gpu-operator"
# ClusterPolicyStatus.State values (clusterpolicy_types.go); "ignored" marks duplicate policies.
STATE_READY, STATE_NOT_READY, STATE_IGNORED = "ready", "notReady", "ignored"

# component: (ClusterPolicy spec key, DaemonSet name == its pods' `app` label, node deploy label).
# assets/state-device-plugin/0500_daemonset.yaml, assets/gpu-feature-discovery/0500_daemonset.yaml,
# assets/state-dcgm-exporter/0800_daemonset.yaml, assets/state-mig-manager/0600_daemonset.yaml.
COMPONENTS = {
    "device_plugin": ("devicePlugin", "nvidia-device-plugin-daemonset", "nvidia.com/gpu.deploy.device-plugin"),
    "gfd": ("gfd", "gpu-feature-discovery", "nvidia.com/gpu.deploy.gpu-feature-discovery"),
    "dcgm_exporter": ("dcgmExporter", "nvidia-dcgm-exporter", "nvidia.com/gpu.deploy.dcgm-exporter"),
    "mig_manager": ("migManager", "nvidia-mig-manager", "nvidia.com/gpu.deploy.mig-manager"),
}
# controllers/state_manager.go
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
OPERANDS_LABEL = "nvidia.com/gpu.deploy.operands"
# mig-parted cmd/nvidia-mig-manager/main.go (MigConfigLabel) and pkg/mig/reconfigure/reconfigure.go.
MIG_CONFIG_LABEL = "nvidia.com/mig.config"
MIG_STATE_LABEL = "nvidia.com/mig.config.state"
MIG_STATES = ("pending", "rebooting", "success", "failed")
# maybeSetPaused: the deploy label value mig-manager sets while it reconfigures ("false" stays "false").
PAUSED_FOR_MIG = "paused-for-mig-change"
# controllers/object_controls.go MigPartedDefaultConfigMapName; the key is config.yaml (values.yaml).
DEFAULT_MIG_CONFIGMAP = "default-mig-parted-config"
MIG_CONFIG_KEY = "config.yaml"
# MIGPartedConfigSpec.Default (+kubebuilder:default=all-disabled).
DEFAULT_MIG_CONFIG = "all-disabled"
# Config names mig-manager v0.15.0 generates from the hardware when no custom ConfigMap is named
# (pkg/mig/builder/builder.go): all-disabled, all-enabled, all-balanced, all-<profile, + as .>.
GENERATED_PREFIX = "all-"
OUR_PREFIX = "gpuops-"


class OperatorError(Exception):
    """Invalid input or a cluster state the protocol cannot work with; the message names the field."""


def component_enabled(spec: dict, key: str) -> bool:
    """IsEnabled() of each component spec: unset means enabled (clusterpolicy_types.go)."""
    value = ((spec or {}).get(key) or {}).get("enabled")
    return True if value is None else bool(value)


def select_policy(policies: list) -> dict | None:
    """The ClusterPolicy the operator acts on: it marks duplicates `ignored`; the oldest otherwise."""
    live = [p for p in policies or [] if ((p.get("status") or {}).get("state")) != STATE_IGNORED]
    live.sort(key=lambda p: ((p.get("metadata") or {}).get("creationTimestamp") or "", p["metadata"]["name"]))
    return live[0] if live else None


def mig_settings(policy: dict) -> dict:
    """MIG strategy and mig-manager config of a ClusterPolicy, with the operator's defaults filled in."""
    spec = (policy or {}).get("spec") or {}
    manager = spec.get("migManager") or {}
    config = manager.get("config") or {}
    name = config.get("name") or ""
    return {
        # spec.mig.strategy: none|single|mixed; empty lets the plugin decide per node (default none).
        "strategy": ((spec.get("mig") or {}).get("strategy")) or "none",
        "manager_enabled": component_enabled(spec, "migManager"),
        # GetConfigMapName: a name other than the default one is a custom ConfigMap.
        "config_map": name or DEFAULT_MIG_CONFIGMAP,
        "config_map_custom": bool(name) and name != DEFAULT_MIG_CONFIGMAP,
        # +kubebuilder:default=all-disabled applies inside a config object; none means no default label
        # (nodelabeling_controller.go labels only when it is all-disabled).
        "default_config": config.get("default", DEFAULT_MIG_CONFIG) if "config" in manager else "",
    }


def detect(crd_present: bool, policies: list, daemonsets: list, nodes: list,
           namespace_hint: str = DEFAULT_NAMESPACE) -> dict:
    """Whether a GPU Operator manages this cluster's NVIDIA software, and what that means for us.

    The rule: an operator is detected when the ClusterPolicy CRD is served AND a ClusterPolicy the
    operator acts on exists (its controller deploys nothing without one). Its DaemonSets and the
    nvidia.com/gpu.deploy.* node labels only describe it; alone (an operator uninstalled, a policy
    deleted) they are reported as leftovers, never taken as an operator. A detected operator that is
    not `ready` yet still owns its components: deploying ours next to its own would run two device
    plugins on a node.
    """
    warnings: list = []
    policy = select_policy(policies) if crd_present else None
    status = (policy or {}).get("status") or {}
    namespace = status.get("namespace") or namespace_hint
    spec = (policy or {}).get("spec") or {}
    by_name = {(d.get("metadata") or {}).get("name"): d for d in daemonsets or []
               if (d.get("metadata") or {}).get("namespace") in (namespace, None)}
    components = {}
    for comp, (key, ds_name, deploy_label) in COMPONENTS.items():
        ds = by_name.get(ds_name)
        ds_status = (ds or {}).get("status") or {}
        components[comp] = {
            "enabled": bool(policy) and component_enabled(spec, key),
            "daemonset": ds_name,
            "daemonset_present": ds is not None,
            "desired": int(ds_status.get("desiredNumberScheduled") or 0),
            "ready": int(ds_status.get("numberReady") or 0),
            "deploy_label": deploy_label,
        }
    gpu_nodes = {}
    for n in nodes or []:
        labels = (n.get("metadata") or {}).get("labels") or {}
        if labels.get(GPU_PRESENT_LABEL) != "true" and not any(k.startswith("nvidia.com/gpu.deploy.") for k in labels):
            continue
        gpu_nodes[n["metadata"]["name"]] = {
            "gpu_present": labels.get(GPU_PRESENT_LABEL) == "true",
            "deploy": {c: labels.get(v[2]) for c, v in COMPONENTS.items() if v[2] in labels},
            "mig_config": labels.get(MIG_CONFIG_LABEL),
            "mig_config_state": labels.get(MIG_STATE_LABEL),
        }

    detected = policy is not None
    if detected:
        reason = "ClusterPolicy %s (state %s)" % (policy["metadata"]["name"], status.get("state") or "unset")
        if status.get("state") != STATE_READY:
            warnings.append("GPU Operator ClusterPolicy %s is %s, not ready: its components are still its own, "
                            "so the collection deploys none of them" % (policy["metadata"]["name"],
                                                                        status.get("state") or "without a state"))
        if components["device_plugin"]["enabled"] and not components["gfd"]["enabled"]:
            warnings.append("the GPU Operator runs the device plugin but spec.gfd.enabled is false: nodes get no "
                            "nvidia.com/gpu.product labels, which node pools and model placement use")
    elif not crd_present:
        reason = "CRD %s not served" % CRD_NAME
    else:
        reason = "CRD %s served but no ClusterPolicy the operator acts on" % CRD_NAME
    if not detected:
        leftovers = sorted(c["daemonset"] for c in components.values() if c["daemonset_present"])
        if leftovers or gpu_nodes:
            warnings.append("no GPU Operator ClusterPolicy, yet %s: leftovers of an operator? They are ignored"
                            % ", ".join(filter(None, [
                                ("DaemonSets %s in %s" % (", ".join(leftovers), namespace)) if leftovers else "",
                                ("nvidia.com/gpu.deploy.* labels on %d node(s)" % len(gpu_nodes)) if gpu_nodes else ""])))
    settings = mig_settings(policy) if detected else None
    return {
        "detected": detected,
        "reason": reason,
        "ready": detected and status.get("state") == STATE_READY,
        "state": status.get("state") if detected else None,
        "policy": policy["metadata"]["name"] if detected else None,
        "namespace": namespace if detected else None,
        "components": components,
        # What the collection's own roles should deploy: nothing the operator runs.
        "deploy": {
            "device_plugin": not (detected and components["device_plugin"]["enabled"]),
            "gfd": not (detected and components["gfd"]["enabled"]),
            "dcgm_exporter": not (detected and components["dcgm_exporter"]["enabled"]),
        },
        "mig": settings,
        "mig_manager": bool(detected and settings["manager_enabled"]),
        "nodes": gpu_nodes,
        "warnings": warnings,
    }


def read_cluster(k8s, namespace_hint: str = DEFAULT_NAMESPACE) -> dict:
    """Read what detect() needs: the CRD, the ClusterPolicies, the operator's DaemonSets, GPU nodes.
    Four GET/LIST requests, no write."""
    crd = k8s.get_or_none("apiextensions.k8s.io/v1", "CustomResourceDefinition", CRD_NAME)
    policies = []
    if crd is not None:
        try:
            policies = (k8s.request("GET", resource_path(API_VERSION, PLURAL, False), kind="ClusterPolicy",
                                    verb="LIST") or {}).get("items", [])
        except K8sNotFound:
            policies = []
    policy = select_policy(policies)
    namespace = ((policy or {}).get("status") or {}).get("namespace") or namespace_hint
    daemonsets = k8s.list("apps/v1", "DaemonSet", namespace=namespace)
    nodes = k8s.list_nodes()
    return detect(crd is not None, policies, daemonsets, nodes, namespace_hint=namespace)


# ---- the nvidia.com/mig.config protocol -------------------------------------------------------

def entries_for_devices(mig_devices: dict, gpus: list | None = None) -> list:
    """One mig-parted v1 config (a list of entries) for 'this layout on these GPUs (all if none)'."""
    devs = mig.parse_mig_devices(mig_devices, where="mig_devices")
    return [{"devices": sorted(int(g) for g in gpus) if gpus else "all", "mig-enabled": True,
             "mig-devices": {k: int(v) for k, v in sorted(devs.items())}}]


def canonical_entries(entries: list, source: str = "config") -> list:
    """Validate entries with the collection's mig-parted parser; return them in mig-parted's own keys."""
    parsed = mig.parse_mig_parted_config({"version": "v1", "mig-configs": {"x": entries}}, source=source)["x"]
    out = []
    for e in parsed:
        item = {"devices": e["devices"]}
        if e["device_filter"]:
            item["device-filter"] = e["device_filter"]
        item["mig-enabled"] = e["mig_enabled"]
        if e["mig_enabled"]:
            item["mig-devices"] = {k: int(v) for k, v in sorted(e["mig_devices"].items())}
        out.append(item)
    return out


def config_name_for(entries: list) -> str:
    """A name derived from the layout: a new layout is a new label value, which is what mig-manager
    reacts to (it watches label changes, not ConfigMap content). A valid label value (<= 63 chars)."""
    digest = hashlib.sha256(json.dumps(entries, sort_keys=True).encode("utf-8")).hexdigest()[:12]
    return OUR_PREFIX + digest


def parse_config_text(text: str, source: str) -> dict:
    """The mig-configs mapping of a mig-parted ConfigMap's config.yaml (validated); {} when empty."""
    import yaml  # PyYAML ships with ansible-core

    try:
        doc = yaml.safe_load(text or "") or {}
    except yaml.YAMLError as e:
        raise OperatorError("%s is not valid YAML: %s" % (source, e))
    if not doc:
        return {}
    mig.parse_mig_parted_config(doc, source=source)  # raises MigError naming the config and field
    return doc.get("mig-configs") or {}


def merge_config_text(text: str, name: str, entries: list, source: str) -> tuple:
    """config.yaml with `name` set to `entries`; returns (new text, changed). Other configs are kept;
    when the entry is new it is appended as text, so the owner's comments and layout stay."""
    import yaml

    configs = parse_config_text(text, source)
    if name in configs:
        if canonical_entries(configs[name], source) == entries:
            return text, False
    want = dict(configs)
    want[name] = entries
    if name not in configs and text and text.rstrip().splitlines():
        block = yaml.safe_dump({name: entries}, default_flow_style=False, sort_keys=False)
        indent = _child_indent(text)
        appended = text.rstrip("\n") + "\n" + "".join(indent + line + "\n" for line in block.splitlines())
        try:
            doc = yaml.safe_load(appended) or {}
        except yaml.YAMLError:
            doc = {}
        if doc.get("mig-configs") == want:
            return appended, True
    doc = yaml.safe_load(text or "") or {"version": "v1"}
    doc["mig-configs"] = want
    return yaml.safe_dump(doc, default_flow_style=False, sort_keys=False), True


def _child_indent(text: str) -> str:
    """Indentation of the config names under mig-configs (two spaces when it cannot tell)."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("mig-configs:"):
            for nxt in lines[i + 1:]:
                if nxt.strip() and not nxt.lstrip().startswith("#"):
                    return nxt[:len(nxt) - len(nxt.lstrip())]
    return "  "


def protocol_state(labels: dict, name: str) -> str:
    """Where one node stands for config `name`: applied, failed, in_progress or not_requested."""
    labels = labels or {}
    if labels.get(MIG_CONFIG_LABEL) != name:
        return "not_requested"
    state = labels.get(MIG_STATE_LABEL)
    if state == "success":
        return "applied"
    if state == "failed":
        return "failed"
    return "in_progress"


def request_patch(name: str) -> dict:
    """The node patch that asks mig-manager for `name`. The stale state label goes in the same write,
    so a `success` left from the previous config is never read as this one's."""
    return {"metadata": {"labels": {MIG_CONFIG_LABEL: name, MIG_STATE_LABEL: None}}}


def expected_resources(mixed_resources: dict | None, strategy: str) -> dict | None:
    """What the operator's device plugin advertises for a layout, by its MIG strategy.

    mixed: one nvidia.com/mig-<profile> resource per profile (what mig_config predicts);
    single: every MIG device as nvidia.com/gpu; none: nothing we can predict for MIG GPUs (None)."""
    if mixed_resources is None:
        return None
    if strategy == "mixed":
        return dict(mixed_resources)
    if strategy == "single":
        total = sum(int(v) for k, v in mixed_resources.items()
                    if k == "nvidia.com/gpu" or k.startswith("nvidia.com/mig-"))
        return {"nvidia.com/gpu": total}
    if any(k.startswith("nvidia.com/mig-") for k in mixed_resources):
        return None
    return dict(mixed_resources)


class MigManagerRequest:
    """Ask the operator's mig-manager for a MIG config on one node, and wait for its answer.

    What we write: the config entry (only ours, `gpuops-*`, and only into a custom ConfigMap the
    ClusterPolicy names) and the node's nvidia.com/mig.config label. What mig-manager does and we
    leave to it: pausing the operator's device plugin, GFD and exporters through their
    nvidia.com/gpu.deploy.* labels, applying the layout, resuming them, and reporting
    nvidia.com/mig.config.state. Draining user GPU pods is not its job: the mig role does that first.
    """

    def __init__(self, k8s, node: str, operator: dict, clock=None, sleep=None, interval: float = 1.0):
        import time

        if not operator.get("detected"):
            raise OperatorError("no GPU Operator detected (%s): nothing to send nvidia.com/mig.config to"
                                % operator.get("reason"))
        if not operator.get("mig_manager"):
            raise OperatorError("the GPU Operator's mig-manager is disabled (ClusterPolicy %s "
                                "spec.migManager.enabled=false): MIG changes cannot go through it"
                                % operator.get("policy"))
        self.k8s = k8s
        self.node = node
        self.operator = operator
        self.settings = operator["mig"]
        self.namespace = operator["namespace"]
        self.clock = clock or time.monotonic
        self.sleep = sleep or time.sleep
        self.interval = interval
        self.actions: list = []

    def node_labels(self) -> dict:
        node = self.k8s.get_node(self.node)
        if node is None:
            raise OperatorError("node '%s' not found in the cluster" % self.node)
        return (node.get("metadata") or {}).get("labels") or {}

    def _config_map(self) -> dict | None:
        return self.k8s.get_or_none("v1", "ConfigMap", self.settings["config_map"], self.namespace)

    def resolve(self, preset: str | None = None, entries: list | None = None, label: str | None = None) -> dict:
        """Decide the label value and whether the ConfigMap needs our entry. Reads only.

        preset: a config name mig-manager already has (generated from the hardware, or in the custom
        ConfigMap); entries: our own config, stored as gpuops-<hash> in the custom ConfigMap;
        label: a label value to put back as it is (the restore path)."""
        cm_name = self.settings["config_map"]
        where = "ConfigMap %s/%s key %s" % (self.namespace, cm_name, MIG_CONFIG_KEY)
        out = {"config_map": cm_name, "config_map_custom": self.settings["config_map_custom"],
               "config_map_changed": False, "new_text": None}
        if label is not None:
            out["name"] = label
            return out
        if entries is not None:
            if not self.settings["config_map_custom"]:
                raise OperatorError(
                    "a layout of our own needs a custom mig-parted ConfigMap, but ClusterPolicy %s "
                    "spec.migManager.config.name names none (mig-manager then only knows the configs it generates "
                    "from the hardware: all-disabled, all-enabled, all-balanced, all-<profile>). Set mig_preset to "
                    "one of those, or point spec.migManager.config.name at a ConfigMap with a %s key"
                    % (self.operator["policy"], MIG_CONFIG_KEY))
            entries = canonical_entries(entries, source="mig layout")
            name = config_name_for(entries)
            cm = self._config_map()
            if cm is None:
                raise OperatorError("ClusterPolicy %s names the mig-parted ConfigMap %s, which does not exist in "
                                    "namespace %s" % (self.operator["policy"], cm_name, self.namespace))
            text = (cm.get("data") or {}).get(MIG_CONFIG_KEY) or ""
            new_text, changed = merge_config_text(text, name, entries, where)
            out.update(name=name, config_map_changed=changed, new_text=new_text if changed else None)
            return out
        if not preset:
            raise OperatorError("give a preset, a layout or a label value")
        if self.settings["config_map_custom"]:
            cm = self._config_map()
            if cm is None:
                raise OperatorError("ClusterPolicy %s names the mig-parted ConfigMap %s, which does not exist in "
                                    "namespace %s" % (self.operator["policy"], cm_name, self.namespace))
            configs = parse_config_text((cm.get("data") or {}).get(MIG_CONFIG_KEY) or "", where)
            if preset not in configs:
                raise OperatorError("mig_preset '%s' is not a config in %s (mig-manager reads only that file); "
                                    "available: %s" % (preset, where, ", ".join(sorted(configs)) or "none"))
        elif not preset.startswith(GENERATED_PREFIX):
            raise OperatorError("mig_preset '%s': without a custom ConfigMap mig-manager only has the configs it "
                                "generates from the hardware (all-disabled, all-enabled, all-balanced, all-<profile>)"
                                % preset)
        out["name"] = preset
        return out

    def status(self, name: str) -> dict:
        labels = self.node_labels()
        return {"label": labels.get(MIG_CONFIG_LABEL), "state": labels.get(MIG_STATE_LABEL),
                "protocol": protocol_state(labels, name)}

    def apply(self, resolved: dict, wait: bool = True, timeout: float = 600, check_mode: bool = False) -> dict:
        """Write what differs (ConfigMap entry, then the label), then wait for success or failed."""
        name = resolved["name"]
        before = self.status(name)
        label_changed = before["protocol"] != "applied"
        changed = bool(resolved["config_map_changed"] or label_changed)
        result = {"config_name": name, "config_map": resolved["config_map"],
                  "config_map_changed": resolved["config_map_changed"], "label_changed": label_changed,
                  "previous_config": before["label"], "previous_state": before["state"], "changed": changed}
        if before["protocol"] == "failed" and not check_mode:
            # mig-manager acts on a change of the label's value (or its own restart), not on a rewrite of
            # the same value: asking again would wait for nothing.
            raise OperatorError("node %s: mig-manager already failed on config %s (nvidia.com/mig.config.state="
                                "failed); fix the cause (its pod's log in namespace %s), then restart the "
                                "nvidia-mig-manager pod on the node or set another config" % (
                                    self.node, name, self.namespace))
        if check_mode or not changed:
            result["state"] = before["state"]
            return result
        if resolved["config_map_changed"]:
            # A merge patch of one key: the rest of the ConfigMap stays its owner's.
            self.k8s.patch("v1", "ConfigMap", resolved["config_map"],
                           {"data": {MIG_CONFIG_KEY: resolved["new_text"]}}, namespace=self.namespace)
            self.actions.append("config-map")
        if label_changed and before["label"] != name:
            self.k8s.patch_node(self.node, request_patch(name))
            self.actions.append("label")
        if not wait:
            result["state"] = None
            return result
        result["state"] = self.wait(name, timeout)
        return result

    def wait(self, name: str, timeout: float) -> str:
        deadline = self.clock() + float(timeout)
        last: dict = {}
        while True:
            last = self.status(name)
            if last["label"] != name:
                raise OperatorError("node %s: nvidia.com/mig.config changed to %r by someone else while waiting "
                                    "for %s" % (self.node, last["label"], name))
            if last["protocol"] == "applied":
                return "success"
            if last["protocol"] == "failed":
                raise OperatorError("node %s: mig-manager reports nvidia.com/mig.config.state=failed for config "
                                    "%s (see the nvidia-mig-manager pod's log in namespace %s)"
                                    % (self.node, name, self.namespace))
            if self.clock() >= deadline:
                raise OperatorError("node %s: timed out after %ss waiting for mig-manager to apply %s "
                                    "(nvidia.com/mig.config.state=%s)"
                                    % (self.node, int(timeout), name, last["state"]))
            self.sleep(self.interval)
