# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What the NVIDIA device plugin advertises and GPU Feature Discovery labels, for one host.

Pure: input is nvml.host_facts() output, a MIG strategy (none, single, mixed) and optionally the
plugin's config file (its ``sharing`` section); output is the node's extended resources
(Kubernetes quantity strings) and GFD labels. The rules follow NVIDIA/k8s-device-plugin v0.20.0
(the v0.20.1 tag was not in the mirror we read): the plugin's ``internal/rm/device_map.go`` and
``internal/rm/rm.go``, GFD's ``internal/lm/*.go`` and golden files ``tests/expected-output*.txt``;
docs/conformance.md#node-agent lists each rule with its source and test. The testbed's node agent
uses this, so what the roles wait for is what the real components would publish.
"""
from __future__ import annotations

import re

STRATEGIES = ("none", "single", "mixed")
GPU = "nvidia.com/gpu"
PREFIX = "nvidia.com/"
ENGINES = ("copy", "decoder", "encoder", "jpeg", "ofa")
MIG_ATTRS = ("memory", "multiprocessors", "slices.gi", "slices.ci") + tuple("engines." + e for e in ENGINES)


class PluginError(Exception):
    """The device plugin would refuse to start (it exits, so the node advertises no GPU resource)."""


class LabelError(Exception):
    """GFD would fail to label this host (it exits, so the node gets no GFD labels)."""


def sanitise(name: str) -> str:
    """GFD's sanitise(): drop characters outside [A-Za-z0-9-_. ], join the words with '-'."""
    return "-".join(re.sub(r"[^A-Za-z0-9\-_. ]", "", str(name)).split())


def arch_family(major: int, minor: int) -> str:
    """GFD's getArchFamily() for a CUDA compute capability."""
    if major == 7:
        return "volta" if minor < 5 else "turing"
    if major == 8:
        return "ampere" if minor < 9 else "ada-lovelace"
    return {1: "tesla", 2: "fermi", 3: "kepler", 5: "maxwell", 6: "pascal", 9: "hopper",
            10: "blackwell", 12: "blackwell", 13: "rubin"}.get(major, "undefined")


# ---------------------------------------------------------------------------------------------
# Sharing (the plugin config's `sharing` section: timeSlicing or mps)
# ---------------------------------------------------------------------------------------------
def _resource_name(name: str) -> str:
    name = str(name)
    return name if name.startswith(PREFIX) else PREFIX + name


def sharing_from_config(config) -> dict:
    """{strategy, resources: {name: {replicas, rename}}} from the plugin's config file (a dict).

    api/config/v1/sharing.go: MPS wins when it replicates anything, then time-slicing; a resource
    replicates when replicas > 1; renameByDefault renames to '<name>.shared' (replicas.go)."""
    sharing = (config or {}).get("sharing") or {}
    mps = sharing.get("mps")
    active = mps if mps is not None else (sharing.get("timeSlicing") or {})
    resources = {}
    for r in active.get("resources") or []:
        name = _resource_name(r["name"])
        rename = r.get("rename") or ((name + ".shared") if active.get("renameByDefault") else "")
        resources[name] = {"replicas": int(r.get("replicas") or 0), "rename": _resource_name(rename) if rename else ""}

    def replicated(rrs):
        return any(int(r.get("replicas") or 0) > 1 for r in (rrs or {}).get("resources") or [])

    if mps is not None and replicated(mps):
        strategy = "mps"
    elif replicated(sharing.get("timeSlicing")):
        strategy = "time-slicing"
    else:
        strategy = "none"
    return {"strategy": strategy, "resources": resources}


class _Resource:
    """GFD's resourceLabeler: labels <resource>.<suffix>, with or without the sharing config."""

    def __init__(self, name: str, sharing: dict | None):
        self.name, self.sharing = name, sharing

    def key(self, suffix: str) -> str:
        return "%s.%s" % (self.name, suffix)

    def _info(self):
        return None if self.sharing is None else self.sharing["resources"].get(self.name)

    def replicas(self) -> int:
        # No config at all (MIG-enabled parents in newGPULabelers) -> 0; config without this resource -> 1.
        if self.sharing is None:
            return 0
        info = self._info()
        return info["replicas"] if info and info["replicas"] > 0 else 1

    def product(self, *parts: str) -> str:
        words = [sanitise(p) for p in parts if p]
        info = self._info()
        if info and info["replicas"] > 1 and not info["rename"]:
            words.append("SHARED")
        return "-".join(words)

    def base(self, count: int, *parts: str) -> dict:
        replicas = self.replicas()
        strategy = self.sharing["strategy"] if (self.sharing is not None and replicas > 1) else "none"
        return {self.key("product"): self.product(*parts), self.key("count"): str(count),
                self.key("replicas"): str(replicas), self.key("sharing-strategy"): strategy}


# ---------------------------------------------------------------------------------------------
# MIG devices: one per compute instance (NVML MIG device handles are per CI)
# ---------------------------------------------------------------------------------------------
def mig_devices(gpu: dict) -> list:
    """The MIG devices of one MIG-enabled GPU, as the plugin and GFD see them.

    Name: go-nvlib MigProfileInfo.String() with '+' made '.' (internal/resource/nvml-mig-device.go):
    '<g>g.<gb>gb[+attr]' when the CI spans its GI, else '<c>c.<g>g.<gb>gb[+attr]'. Attributes: NVML's
    device attributes of the MIG device (memory, SMs of the CI, slice counts, shared engines)."""
    out = []
    for gi in gpu.get("gpu_instances") or []:
        prof, gslices = gi.get("profile"), gi.get("slices") or 0
        if not prof:
            continue
        eng = gi.get("engines") or {}
        for ci in gi.get("compute_instances") or []:
            cslices = ci.get("slices") or gslices
            name = prof if cslices == gslices else "%dc.%s" % (cslices, prof)
            attrs = {
                "memory": str(gi.get("memory_mib") or 0),
                "multiprocessors": str(ci.get("multiprocessors") or gi.get("multiprocessors") or 0),
                "slices.gi": str(gslices),
                "slices.ci": str(cslices),
            }
            for e in ENGINES:
                attrs["engines." + e] = str(eng.get(e, 0))
            out.append({"gpu": gpu.get("index"), "gi": gi.get("id"), "ci": ci.get("id"), "profile": name,
                        "name": name.replace("+", "."), "whole": cslices == gslices, "attributes": attrs})
    return out


def _mig_enabled(gpu: dict) -> bool:
    # go-nvlib IsMigEnabled: false on GPUs without MIG; the current (not pending) mode counts.
    return bool(gpu.get("mig_capable") and gpu.get("mig_current"))


def _check_strategy(strategy: str) -> None:
    if strategy not in STRATEGIES:
        raise ValueError("MIG strategy must be one of %s, got %r" % (", ".join(STRATEGIES), strategy))


# ---------------------------------------------------------------------------------------------
# The device plugin (internal/rm/device_map.go, internal/rm/rm.go)
# ---------------------------------------------------------------------------------------------
def plugin_resources(facts: dict, strategy: str, config=None) -> dict[str, str]:
    """Extended resources the plugin advertises, or PluginError with the plugin's own reason.

    none:   every GPU is one nvidia.com/gpu, MIG mode or not.
    single: MIG-enabled GPUs' MIG devices are nvidia.com/gpu; MIG-disabled GPUs alone stay whole.
            A MIG-enabled GPU without MIG devices, MIG devices that differ, or MIG devices next to
            whole GPUs make the plugin exit ("invalid MIG configuration").
    mixed:  MIG-disabled GPUs are nvidia.com/gpu; each MIG profile is nvidia.com/mig-<profile>, only
            for profiles whose CI spans the GI (rm.go adds no resource for C != G), so a MIG device
            like 1c.3g.40gb matches no resource pattern and the plugin exits.
    Time-slicing/MPS replicas multiply a resource's devices (and may rename it)."""
    _check_strategy(strategy)
    sharing = sharing_from_config(config)
    if sharing["strategy"] == "mps" and strategy == "mixed":
        raise PluginError("unable to validate flags: using --mig-strategy=mixed is not supported with MPS")
    gpus = list(facts.get("gpus") or [])
    whole = [g for g in gpus if strategy == "none" or not _mig_enabled(g)]
    devices: dict[str, int] = {}
    if whole:
        devices[GPU] = len(whole)
    if strategy != "none":
        enabled = [g for g in gpus if _mig_enabled(g)]
        migs = [d for g in enabled for d in mig_devices(g)]
        if strategy == "single":
            for g in enabled:
                if not mig_devices(g):
                    raise PluginError("invalid MIG configuration: at least one device with migEnabled=true was not "
                                      "configured correctly: device %s has no MIG devices configured" % g.get("index"))
            if len({tuple(sorted(d["attributes"].items())) for d in migs}) > 1:
                raise PluginError("invalid MIG configuration: more than one MIG device type present on node")
            if whole and migs:
                raise PluginError("all devices on the node must be configured with the same migEnabled value")
            if migs:
                devices[GPU] = len(migs)
        else:
            for d in migs:
                if not d["whole"]:
                    raise PluginError("error building device map: MIG profile '%s' does not match any resource "
                                      "patterns (GPU %s, GPU instance %s, compute instance %s)"
                                      % (d["profile"], d["gpu"], d["gi"], d["ci"]))
                devices[PREFIX + "mig-" + d["name"]] = devices.get(PREFIX + "mig-" + d["name"], 0) + 1
    out: dict[str, int] = {}
    for name, n in devices.items():
        info = sharing["resources"].get(name)
        if info and info["replicas"] > 0:
            target = info["rename"] or name
            out[target] = out.get(target, 0) + n * info["replicas"]
        else:
            out[name] = out.get(name, 0) + n
    return {k: str(v) for k, v in sorted(out.items())}


# ---------------------------------------------------------------------------------------------
# GPU Feature Discovery (internal/lm/*.go, cmd/gpu-feature-discovery/main.go)
# ---------------------------------------------------------------------------------------------
def _version_labels(facts: dict) -> dict:
    drv = str(facts.get("driver_version") or "")
    parts = drv.split(".")
    if not 2 <= len(parts) <= 3:
        raise LabelError('error getting driver version: Version "%s" does not match format "X.Y[.Z]"' % drv)
    major, minor, rev = parts[0], parts[1], (parts[2] if len(parts) > 2 else "")
    try:
        cuda_major, cuda_minor = (int(x) for x in str(facts.get("cuda_version") or "").split(".")[:2])
    except ValueError:
        raise LabelError("error getting cuda driver version: %r" % facts.get("cuda_version"))
    return {
        "nvidia.com/cuda.driver.major": major, "nvidia.com/cuda.driver.minor": minor,
        "nvidia.com/cuda.driver.rev": rev,
        "nvidia.com/cuda.runtime.major": str(cuda_major), "nvidia.com/cuda.runtime.minor": str(cuda_minor),
        "nvidia.com/cuda.driver-version.major": major, "nvidia.com/cuda.driver-version.minor": minor,
        "nvidia.com/cuda.driver-version.revision": rev, "nvidia.com/cuda.driver-version.full": drv,
        "nvidia.com/cuda.runtime-version.major": str(cuda_major),
        "nvidia.com/cuda.runtime-version.minor": str(cuda_minor),
        "nvidia.com/cuda.runtime-version.full": "%d.%d" % (cuda_major, cuda_minor),
    }


def _full_gpu_labels(rl: _Resource, gpu: dict, count: int) -> dict:
    """NewGPUResourceLabeler: base labels, memory (when known), family and compute capability."""
    labels = rl.base(count, gpu.get("name") or "")
    if gpu.get("memory_total_mib"):
        labels[rl.key("memory")] = str(gpu["memory_total_mib"])
    cc = gpu.get("cuda_compute_capability")
    if not cc:
        raise LabelError("failed to determine CUDA compute capability of GPU %s" % gpu.get("index"))
    major, minor = int(cc[0]), int(cc[1])
    if major != 0:
        labels.update({rl.key("family"): arch_family(major, minor), rl.key("compute.major"): str(major),
                       rl.key("compute.minor"): str(minor)})
    return labels


def _gpu_labels(gpus: list, sharing: dict) -> dict:
    """newGPULabelers: per product name, MIG-enabled GPUs (labelled without sharing) first, then
    the others; the count covers both. Keys collide when names differ: Go's map order decides
    upstream, sorted names here."""
    counts: dict = {}
    for g in gpus:
        counts[g.get("name")] = counts.get(g.get("name"), 0) + 1
    labels: dict = {}
    for want_mig, share in ((True, None), (False, sharing)):
        firsts: dict = {}
        for g in gpus:
            if _mig_enabled(g) == want_mig:
                firsts.setdefault(g.get("name"), g)
        for name in sorted(firsts, key=str):
            labels.update(_full_gpu_labels(_Resource(GPU, share), firsts[name], counts[name]))
    return labels


def _mig_resource_labels(name: str, parent: dict, dev: dict, count: int, sharing: dict) -> dict:
    """NewMIGResourceLabeler: base labels with product '<parent>-MIG-<profile>', plus attributes."""
    rl = _Resource(name, sharing)
    labels = rl.base(count, parent.get("name") or "", "MIG", dev["name"])
    labels.update({rl.key(k): v for k, v in dev["attributes"].items()})
    return labels


def _single_labels(gpus: list, sharing: dict) -> dict:
    """newMigStrategySingleLabeler."""
    enabled = [g for g in gpus if _mig_enabled(g)]
    if not enabled:
        return {}
    reason = None
    if any(not mig_devices(g) for g in enabled):
        reason = "at least one MIG device is enabled but empty"
    elif len(enabled) != len(gpus):
        reason = "devices with MIG enabled and disable detected"
    else:
        by_name: dict = {}
        for g in enabled:
            for d in mig_devices(g):
                by_name.setdefault(d["name"], []).append((g, d))
        if len(by_name) != 1:
            reason = "more than one MIG device type present on node"
    if reason:
        # newInvalidMigStrategyLabeler: no sharing, and these five keys only.
        rl = _Resource(GPU, None)
        return {rl.key("product"): rl.product(enabled[0].get("name") or "", "MIG", "INVALID"),
                rl.key("count"): "0", rl.key("replicas"): "0", rl.key("sharing-strategy"): "",
                rl.key("memory"): "0"}
    devs = next(iter(by_name.values()))
    return _mig_resource_labels(GPU, devs[0][0], devs[0][1], len(devs), sharing)


def _mixed_labels(gpus: list, sharing: dict) -> dict:
    """newMigStrategyMixedLabeler: every MIG device type, C != G ones included (GFD does not filter)."""
    by_name: dict = {}
    for g in gpus:
        if _mig_enabled(g):
            for d in mig_devices(g):
                by_name.setdefault(d["name"], []).append((g, d))
    labels: dict = {}
    for name in sorted(by_name):
        devs = by_name[name]
        labels.update(_mig_resource_labels(PREFIX + "mig-" + name, devs[0][0], devs[0][1], len(devs), sharing))
    return labels


def _gpu_mode(gpus: list) -> str:
    """newGPUModeLabeler: one PCI class for all GPUs, 0x0300 VGA -> graphics, 0x0302 3D -> compute."""
    classes = set()
    for g in gpus:
        c = g.get("pci_class")
        if c in (None, ""):
            return "unknown"
        try:
            classes.add(int(str(c), 16) if isinstance(c, str) else int(c))
        except ValueError:
            return "unknown"
    if len(classes) != 1:
        return "unknown"
    base = classes.pop() >> 8
    return {0x0300: "graphics", 0x0302: "compute"}.get(base, "unknown")


def gfd_labels(facts: dict, strategy: str, config=None, timestamp=None) -> dict[str, str]:
    """The labels GFD publishes for this host, or LabelError when GFD would fail.

    timestamp: nvidia.com/gfd.timestamp (Unix seconds), fixed when GFD starts; None leaves it out
    (GFD's --no-timestamp). Not emitted by GFD, so not here: nvidia.com/gpu.present (the GPU
    Operator's NFD rule sets it), nvidia.com/gpu.clique (needs NVLink fabric IDs; simulated hosts
    have none)."""
    _check_strategy(strategy)
    gpus = list(facts.get("gpus") or [])
    labels: dict = {}
    if timestamp is not None:
        labels["nvidia.com/gfd.timestamp"] = str(int(timestamp))
    if gpus:
        sharing = sharing_from_config(config)
        labels["nvidia.com/gpu.machine"] = sanitise(facts.get("machine_type") or "unknown") or "unknown"
        labels.update(_version_labels(facts))
        labels["nvidia.com/mig.capable"] = "true" if any(g.get("mig_capable") for g in gpus) else "false"
        if sharing["strategy"] == "mps":
            if any(_mig_enabled(g) for g in gpus):
                raise LabelError("failed to check MPS-capable: MPS sharing is not supported for mig devices")
            labels["nvidia.com/mps.capable"] = "true"
        else:
            labels["nvidia.com/mps.capable"] = "false"
        labels.update(_gpu_labels(gpus, sharing))
        if strategy != "none":
            labels["nvidia.com/mig.strategy"] = strategy
            labels.update(_single_labels(gpus, sharing) if strategy == "single" else _mixed_labels(gpus, sharing))
        labels["nvidia.com/gpu.mode"] = _gpu_mode(gpus)
    # vgpu.go: present=false on hosts without vGPU devices (simulated hosts have none).
    labels["nvidia.com/vgpu.present"] = "false"
    return labels


def node_resources_and_labels(facts: dict, strategy: str, config=None, timestamp=None):
    """(extended resources, labels, problems): what the plugin and GFD would publish, each {} when
    that component would exit, with its reason in problems {"device-plugin": ..., "gfd": ...}."""
    problems = {}
    try:
        resources = plugin_resources(facts, strategy, config)
    except PluginError as e:
        resources, problems["device-plugin"] = {}, str(e)
    try:
        labels = gfd_labels(facts, strategy, config, timestamp)
    except LabelError as e:
        labels, problems["gfd"] = {}, str(e)
    return resources, labels, problems
