# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Take a GPU node out of service for GPU maintenance (MIG changes) and put it back.

Unlike ``kubectl drain`` this evicts only the pods that hold GPUs (``nvidia.com/gpu`` or
``nvidia.com/mig-*``): CPU pods on the node are not in the way of a MIG change. Evictions go
through the policy/v1 Eviction API, so PodDisruptionBudgets are respected; a budget that
keeps refusing past the timeout stops the drain with the pods and budgets named.

The device plugin is paused on the node with a label its DaemonSet avoids (roles/device_plugin),
so nothing hands out GPUs while they are being repartitioned.
"""
from __future__ import annotations

import time

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    K8sEvictionBlocked,
    K8sWaitTimeout,
    wait_for,
)

PAUSE_LABEL = "gpuops.llm/device-plugin.paused"
GPU_RESOURCE_PREFIXES = ("nvidia.com/gpu", "nvidia.com/mig-")
DEVICE_PLUGIN_SELECTOR = "app.kubernetes.io/name=nvidia-device-plugin"


class DrainError(Exception):
    def __init__(self, message, **details):
        super().__init__(message)
        self.details = details


def gpu_resources_of(pod: dict) -> dict:
    """The GPU resources a pod holds: max of requests/limits per container, summed."""
    total: dict = {}
    spec = pod.get("spec") or {}
    for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        res = c.get("resources") or {}
        for section in ("limits", "requests"):
            for k, v in (res.get(section) or {}).items():
                if k.startswith(GPU_RESOURCE_PREFIXES):
                    total[k] = max(total.get(k, 0), int(v))
    return total


def is_daemonset_pod(pod: dict) -> bool:
    return any(o.get("kind") == "DaemonSet" for o in (pod.get("metadata") or {}).get("ownerReferences") or [])


def is_finished(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def pods_to_evict(pods: list) -> list:
    """GPU pods that a drain must move: not DaemonSet pods, not finished ones."""
    return [p for p in pods
            if gpu_resources_of(p) and not is_daemonset_pod(p) and not is_finished(p)
            and not (p.get("metadata") or {}).get("deletionTimestamp")]


def pod_ref(pod: dict) -> str:
    m = pod.get("metadata") or {}
    return "%s/%s" % (m.get("namespace"), m.get("name"))


def node_gpu_allocatable(node: dict) -> dict:
    alloc = ((node.get("status") or {}).get("allocatable") or {})
    return {k: str(v) for k, v in alloc.items() if k.startswith(GPU_RESOURCE_PREFIXES)}


def resources_match(node: dict, expected: dict) -> bool:
    """True when the node advertises exactly the expected GPU resources (zero counts = absent)."""
    have = {k: int(v) for k, v in node_gpu_allocatable(node).items() if int(v)}
    want = {k: int(v) for k, v in expected.items() if int(v)}
    return have == want


class Drainer:
    """Drain and restore one node through the K8s adapter; records what it did."""

    def __init__(self, k8s, node: str, timeout: float = 300, interval: float = 1.0,
                 device_plugin_namespace: str | None = None, clock=time.monotonic, sleep=time.sleep):
        self.k8s = k8s
        self.node = node
        self.timeout = float(timeout)
        self.interval = interval
        self.dp_namespace = device_plugin_namespace
        self.clock = clock
        self.sleep = sleep
        self.actions: list = []

    def read_node(self) -> dict:
        node = self.k8s.get_node(self.node)
        if node is None:
            raise DrainError("node '%s' not found in the cluster" % self.node)
        return node

    def state(self) -> dict:
        node = self.read_node()
        labels = (node.get("metadata") or {}).get("labels") or {}
        pods = self.k8s.list_pods_on_node(self.node)
        return {
            "unschedulable": bool((node.get("spec") or {}).get("unschedulable")),
            "device_plugin_paused": labels.get(PAUSE_LABEL) == "true",
            "gpu_pods": [pod_ref(p) for p in pods_to_evict(pods)],
            "gpu_resources": node_gpu_allocatable(node),
        }

    # -- drain ----------------------------------------------------------------------
    def drain(self, pause_device_plugin: bool = True, check_mode: bool = False) -> dict:
        before = self.state()
        if check_mode:
            changed = (not before["unschedulable"] or bool(before["gpu_pods"])
                       or (pause_device_plugin and not before["device_plugin_paused"]))
            return {"changed": changed, "before": before, "evicted": before["gpu_pods"]}
        if self.k8s.cordon(self.node):
            self.actions.append("cordon")
        evicted = self._evict_all()
        if pause_device_plugin:
            self._set_pause(True)
            self._wait(lambda: not self._device_plugin_pods(), "the device plugin pod to leave node %s" % self.node)
        return {"changed": bool(self.actions), "before": before, "evicted": evicted}

    def _device_plugin_pods(self) -> list:
        return self.k8s.list_pods_on_node(self.node, namespace=self.dp_namespace,
                                          label_selector=DEVICE_PLUGIN_SELECTOR)

    def _evict_all(self) -> list:
        deadline = self.clock() + self.timeout
        evicted: list = []
        blocked: dict = {}
        while True:
            pending = pods_to_evict(self.k8s.list_pods_on_node(self.node))
            if not pending:
                break
            blocked = {}
            for p in pending:
                m = p["metadata"]
                try:
                    self.k8s.evict(m["name"], m["namespace"])
                    if pod_ref(p) not in evicted:
                        evicted.append(pod_ref(p))
                except K8sEvictionBlocked as exc:
                    blocked[pod_ref(p)] = str(exc)
            if self.clock() >= deadline:
                raise DrainError(
                    "could not evict GPU pods from node %s within %ss: %s" % (
                        self.node, int(self.timeout),
                        "; ".join("%s (%s)" % kv for kv in blocked.items())
                        or ", ".join(pod_ref(p) for p in pending) + " still terminating"),
                    blocked=sorted(blocked), evicted=evicted)
            self.sleep(self.interval)
        if evicted:
            self.actions.append("evict")
        return evicted

    # -- restore --------------------------------------------------------------------
    def restore(self, unschedulable: bool = False, expected_resources: dict | None = None,
                check_mode: bool = False) -> dict:
        before = self.state()
        if check_mode:
            changed = before["device_plugin_paused"] or before["unschedulable"] != bool(unschedulable)
            return {"changed": changed, "before": before}
        self._set_pause(False)
        if expected_resources is not None:
            self._wait(lambda: resources_match(self.read_node(), expected_resources),
                       "node %s to advertise %s" % (self.node, expected_resources))
        if self.k8s.set_unschedulable(self.node, bool(unschedulable)):
            self.actions.append("uncordon" if not unschedulable else "cordon")
        return {"changed": bool(self.actions), "before": before}

    # -- helpers --------------------------------------------------------------------
    def _set_pause(self, paused: bool) -> None:
        node = self.read_node()
        labels = (node.get("metadata") or {}).get("labels") or {}
        if (labels.get(PAUSE_LABEL) == "true") == paused:
            return
        self.k8s.patch_node(self.node, {"metadata": {"labels": {PAUSE_LABEL: "true" if paused else None}}})
        self.actions.append("pause-device-plugin" if paused else "resume-device-plugin")

    def _wait(self, predicate, what: str) -> None:
        try:
            wait_for(predicate, self.timeout, interval=self.interval, description=what,
                     clock=self.clock, sleep=self.sleep)
        except K8sWaitTimeout as exc:
            raise DrainError(str(exc))
