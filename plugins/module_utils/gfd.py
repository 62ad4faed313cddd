# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the NVIDIA device plugin and GPU Feature Discovery would publish for a host.

Pure: input is nvml.host_facts() output and a MIG strategy (none, single, mixed); output is the
node's extended resources (Kubernetes quantity strings) and GFD labels. Names come from facts §5
of mig-and-nvml.md and section C of gpu-automation-anchors.md. The testbed's node agents and the
roles that wait for resources both use this, so they agree by construction.
"""
from __future__ import annotations

import re

STRATEGIES = ("none", "single", "mixed")
GPU = "nvidia.com/gpu"
PREFIX = "nvidia.com/"
ENGINES = ("copy", "decoder", "encoder", "jpeg", "ofa")


def sanitise(name: str) -> str:
    """GFD's product sanitiser: spaces become '-' (DP internal/lm/resource.go)."""
    return re.sub(r"\s+", "-", str(name).strip())


def _mig_name(profile: str) -> str:
    # Resource and label names cannot hold '+': 1g.10gb+me -> 1g.10gb.me (facts §5).
    return profile.replace("+", ".")


def _mig_devices(gpu: dict) -> list:
    """MIG devices the device plugin would see on one GPU: GIs with one whole compute instance."""
    return [gi for gi in gpu.get("gpu_instances") or [] if gi.get("mig_device") and gi.get("profile")]


def _mig_attrs(gi: dict) -> dict:
    eng = gi.get("engines") or {}
    cis = gi.get("compute_instances") or []
    out = {
        "memory": str(gi.get("memory_mib") or 0),
        "multiprocessors": str(gi.get("multiprocessors") or 0),
        "slices.gi": str(gi.get("slices") or 0),
        "slices.ci": str((cis[0].get("slices") if cis else None) or gi.get("slices") or 0),
    }
    for e in ENGINES:
        out["engines." + e] = str(eng.get(e, 0))
    return out


def _version_labels(facts: dict) -> dict:
    out = {}
    drv = str(facts.get("driver_version") or "")
    if drv:
        parts = drv.split(".")
        out["nvidia.com/cuda.driver-version.full"] = drv
        out["nvidia.com/cuda.driver-version.major"] = parts[0]
        if len(parts) > 1:
            out["nvidia.com/cuda.driver-version.minor"] = parts[1]
        if len(parts) > 2:
            out["nvidia.com/cuda.driver-version.revision"] = parts[2]
    cuda = str(facts.get("cuda_version") or "")
    if cuda:
        parts = cuda.split(".")
        out["nvidia.com/cuda.runtime-version.full"] = cuda
        out["nvidia.com/cuda.runtime-version.major"] = parts[0]
        if len(parts) > 1:
            out["nvidia.com/cuda.runtime-version.minor"] = parts[1]
    return out


def node_resources_and_labels(facts: dict, strategy: str) -> tuple[dict[str, str], dict[str, str]]:
    """(extended resources, labels) for one node.

    none:   every GPU is one nvidia.com/gpu, MIG or not.
    single: every GPU MIG-enabled with the same single profile -> MIG devices as nvidia.com/gpu and
            gpu.product "<product>-MIG-<profile>"; a mix, an empty GPU or some GPUs without MIG ->
            "<product>-MIG-INVALID" with count 0. ⚑ With MIG off on every GPU the plugin falls back to
            whole GPUs (our reading of the plugin; the facts only list the invalid cases).
    mixed:  GPUs with MIG off stay nvidia.com/gpu; each MIG profile becomes nvidia.com/mig-<profile>
            with per-profile labels (count, memory, multiprocessors, slices.gi/ci, engines.*, ...)."""
    if strategy not in STRATEGIES:
        raise ValueError("MIG strategy must be one of %s, got %r" % (", ".join(STRATEGIES), strategy))
    gpus = list(facts.get("gpus") or [])
    if not gpus:
        return {}, {}
    product = sanitise(gpus[0].get("name") or "unknown")
    capable = any(g.get("mig_capable") for g in gpus)
    enabled = [g for g in gpus if g.get("mig_capable") and g.get("mig_current")]
    disabled = [g for g in gpus if g not in enabled]

    labels = {
        "nvidia.com/gpu.present": "true",
        "nvidia.com/gpu.product": product,
        "nvidia.com/gpu.count": str(len(gpus)),
        "nvidia.com/gpu.memory": str(gpus[0].get("memory_total_mib") or 0),
        "nvidia.com/gpu.replicas": "1",
        "nvidia.com/gpu.sharing-strategy": "none",
        "nvidia.com/mig.capable": "true" if capable else "false",
    }
    if capable:
        labels["nvidia.com/mig.strategy"] = strategy
    labels.update(_version_labels(facts))
    resources: dict = {}

    if strategy == "none" or (strategy == "single" and not enabled):
        resources[GPU] = str(len(gpus))
        return resources, labels

    if strategy == "single":
        devices = [d for g in enabled for d in _mig_devices(g)]
        profiles = {d["profile"] for d in devices}
        empty = any(not _mig_devices(g) for g in enabled)
        if disabled or empty or len(profiles) != 1:
            labels["nvidia.com/gpu.product"] = product + "-MIG-INVALID"
            labels["nvidia.com/gpu.count"] = "0"
            resources[GPU] = "0"
            return resources, labels
        d = devices[0]
        labels["nvidia.com/gpu.product"] = "%s-MIG-%s" % (product, _mig_name(d["profile"]))
        labels["nvidia.com/gpu.count"] = str(len(devices))
        for k, v in _mig_attrs(d).items():
            labels["nvidia.com/gpu." + k] = v
        resources[GPU] = str(len(devices))
        return resources, labels

    # mixed
    if disabled:
        resources[GPU] = str(len(disabled))
    by_profile: dict = {}
    for g in enabled:
        for d in _mig_devices(g):
            by_profile.setdefault(d["profile"], []).append(d)
    for prof in sorted(by_profile):
        devs = by_profile[prof]
        name = "mig-" + _mig_name(prof)
        resources[PREFIX + name] = str(len(devs))
        base = PREFIX + name + "."
        labels[base + "count"] = str(len(devs))
        labels[base + "product"] = "%s-MIG-%s" % (product, _mig_name(prof))
        labels[base + "replicas"] = "1"
        labels[base + "sharing-strategy"] = "none"
        for k, v in _mig_attrs(devs[0]).items():
            labels[base + k] = v
    return resources, labels
