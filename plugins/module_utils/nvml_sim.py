# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""An NVML simulator over a JSON state file, with the same methods as nvml.NvmlBackend.

It behaves like NVML as /work/shared/facts/mig-and-nvml.md describes it, not like our hopes:
- profile index (passed only to the profile-info call) versus profile id (everything else);
- possible placements list every legal placement whatever is occupied; remaining capacity does not;
- overlap, instance count and the one-media-engine rule -> INSUFFICIENT_RESOURCES;
- an illegal start -> INVALID_ARGUMENT (⚑ inferred from nvml.h's error list);
- destroying a GI that still holds CIs, or any instance a process runs on -> IN_USE;
- set_mig_mode returns an activation status instead of raising; with processes on the GPU it
  returns IN_USE and the change stays pending; on Ampere the change stays pending until
  ``reset_gpu`` (the simulator's stand-in for `nvidia-smi -r` or a reboot); Hopper+ apply at once;
- MIG calls on a GPU without MIG, and GI calls while MIG is off -> NOT_SUPPORTED.
Every mutating call is appended to the state's ``calls`` list (even when it fails), so a test
can check that a run made zero writes. ``inject_failure`` makes a chosen call fail once.
It is used only when named: the module option nvml_sim_state or GPUOPS_NVML_SIM_STATE.
"""
from __future__ import annotations

import json
import os
import tempfile
import uuid as _uuid

from ansible_collections.gpuops.llm.plugins.module_utils import mig
from ansible_collections.gpuops.llm.plugins.module_utils import nvml
from ansible_collections.gpuops.llm.plugins.module_utils.nvml import (
    IN_USE, INSUFFICIENT_RESOURCES, INVALID_ARGUMENT, NO_PERMISSION, NOT_FOUND, NOT_SUPPORTED, RESET_REQUIRED,
    SUCCESS, nvml_error,
)

STATE_VERSION = 1

# nvmlDeviceGetCudaComputeCapability by GPU generation: A100/A30 8.0, L4/L40S 8.9, H100/H200 9.0,
# B200 10.0 (NVIDIA's CUDA GPU list, developer.nvidia.com/cuda-gpus). GFD turns these into
# gpu.compute.major/minor and gpu.family (k8s-device-plugin internal/lm/resource.go).
COMPUTE_CAPABILITY = {"ampere": (8, 0), "ada": (8, 9), "hopper": (9, 0), "blackwell": (10, 0)}
# PCI class code of a 3D controller (0x0302xx), which GFD's gpu.mode reports as "compute";
# a VGA controller (0x0300xx) is "graphics" (go-nvlib nvpci). Data-centre GPUs are 3D controllers.
PCI_CLASS_3D = "0x030200"

# Compute-instance profiles a GPU instance offers, by GI compute slices: {CI slices: instance count}
# (facts §1, table from [mock]).
CI_COUNTS = {
    7: {1: 7, 2: 3, 3: 2, 4: 1, 7: 1},
    4: {1: 4, 2: 2, 4: 1},
    3: {1: 3, 2: 1, 3: 1},
    2: {1: 2, 2: 1},
    1: {1: 1},
}


# ---------------------------------------------------------------------------------------------
# State helpers (setup for tests and the testbed; these are not NVML calls and are not recorded)
# ---------------------------------------------------------------------------------------------
def new_host_state(gpus, driver_version: str = "580.95.05", cuda_version: str = "13.0",
                   mig_enabled: bool = False, machine_type: str | None = None) -> dict:
    """A fresh host: ``gpus`` is a list of model names (anything mig.resolve_model accepts).
    mig_enabled turns MIG mode on for the GPUs that have it; no instances exist yet.
    machine_type is the host's DMI product name (None: unreadable, as in a kwok node)."""
    out = []
    for i, name in enumerate(gpus):
        model = mig.resolve_model(name)
        mode = nvml.MIG_ENABLE if (mig_enabled and model.mig_capable) else nvml.MIG_DISABLE
        out.append({
            "index": i,
            "model": model.key,
            "name": model.nvml_names[0],
            "uuid": "GPU-%s" % _uuid.uuid4(),
            "pci_device_id": model.pci_ids[0],
            "pci_bus_id": "00000000:%02X:00.0" % (0x18 + i),
            "memory_total_mib": model.memory_mib,
            "cuda_compute_capability": list(COMPUTE_CAPABILITY.get(model.generation, ())) or None,
            "pci_class": PCI_CLASS_3D,
            "persistence_mode": False,
            "temperature_c": 33,
            "ecc_errors_volatile": {"corrected": 0, "uncorrected": 0},
            "mig_current": mode,
            "mig_pending": mode,
            "gpu_instances": [],
            "processes": [],
        })
    return {
        "version": STATE_VERSION,
        "driver_version": driver_version,
        "cuda_version": cuda_version,
        "root": True,              # False makes privileged calls fail with NO_PERMISSION
        "passthrough_vm": False,   # True: a mode change reports RESET_REQUIRED (needs a VM reboot)
        "machine_type": machine_type,
        "gpus": out,
        "calls": [],
        "inject_failures": [],
    }


def save_state(path: str, state: dict) -> None:
    """Write atomically, so a reader (the testbed's node agent) never sees half a file."""
    d = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".nvml-sim-", dir=d)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_state(path: str) -> dict:
    try:
        with open(path, "r", encoding="utf-8") as fh:
            state = json.load(fh)
    except OSError as e:
        raise nvml.NVMLError_Uninitialized(
            "NVML simulator state file %s cannot be read: %s" % (path, e.strerror or e), code=nvml.UNINITIALIZED)
    except ValueError as e:
        raise nvml.NVMLError_Uninitialized("NVML simulator state file %s is not valid JSON: %s" % (path, e),
                                           code=nvml.UNINITIALIZED)
    if not isinstance(state, dict) or state.get("version") != STATE_VERSION or not isinstance(state.get("gpus"), list):
        raise nvml.NVMLError_Uninitialized("NVML simulator state file %s is not a version %d state (make one with "
                                           "nvml_sim.new_host_state)" % (path, STATE_VERSION), code=nvml.UNINITIALIZED)
    state.setdefault("calls", [])
    state.setdefault("inject_failures", [])
    return state


def add_process(state: dict, gpu: int, pid: int, used_memory_mib: int = 1024, gpu_instance_id=None,
                compute_instance_id=None) -> dict:
    """Put a process on a GPU (or on one of its MIG instances)."""
    g = state["gpus"][gpu]
    if gpu_instance_id is not None and not any(x["id"] == gpu_instance_id for x in g["gpu_instances"]):
        raise ValueError("GPU %d has no GPU instance %s" % (gpu, gpu_instance_id))
    p = {"pid": pid, "used_memory_mib": used_memory_mib, "gpu_instance_id": gpu_instance_id,
         "compute_instance_id": compute_instance_id}
    g["processes"].append(p)
    return p


def inject_failure(state: dict, call: str, code: int = nvml.UNKNOWN, gpu=None, skip: int = 0) -> None:
    """Make the (skip+1)-th matching mutating call fail once with ``code``."""
    state.setdefault("inject_failures", []).append({"call": call, "code": code, "gpu": gpu, "skip": skip})


def mutating_calls(state_or_path) -> list:
    state = load_state(state_or_path) if isinstance(state_or_path, str) else state_or_path
    return list(state.get("calls", []))


def clear_calls(path: str) -> None:
    state = load_state(path)
    state["calls"] = []
    save_state(path, state)


# ---------------------------------------------------------------------------------------------
# The backend
# ---------------------------------------------------------------------------------------------
def _mask(start: int, size: int) -> int:
    return ((1 << size) - 1) << start


class SimBackend(nvml.BackendBase):
    kind = "simulator"

    def __init__(self, path: str):
        self.path = path
        self.state = load_state(path)

    # -- plumbing --------------------------------------------------------------------------------
    def _gpu(self, i: int) -> dict:
        if not isinstance(i, int) or i < 0 or i >= len(self.state["gpus"]):
            raise nvml_error(INVALID_ARGUMENT, "GPU index %r out of range (%d GPUs)" % (i, len(self.state["gpus"])))
        return self.state["gpus"][i]

    def _model(self, i: int) -> mig.GpuModel:
        return mig.resolve_model(self._gpu(i)["model"])

    def _require_mig(self, i: int, need_enabled: bool = True, what: str = "MIG call") -> dict:
        g = self._gpu(i)
        if not self._model(i).mig_capable:
            raise nvml_error(NOT_SUPPORTED, nvml.explain(NOT_SUPPORTED, "%s on GPU %d (%s has no MIG)"
                                                         % (what, i, g["name"])))
        if need_enabled and g["mig_current"] != nvml.MIG_ENABLE:
            raise nvml_error(NOT_SUPPORTED, nvml.explain(NOT_SUPPORTED, "%s on GPU %d (MIG mode is off%s)" % (
                what, i, ", enable pending a reset" if g["mig_pending"] == nvml.MIG_ENABLE else "")))
        return g

    def _profile(self, i: int, profile_id: int, what: str) -> mig.Profile:
        prof = self._model(i).profile_by_id(profile_id)
        if prof is None or not self._driver_ok(i, prof):
            raise nvml_error(INVALID_ARGUMENT, nvml.explain(INVALID_ARGUMENT, "%s on GPU %d (no profile id %r)"
                                                            % (what, i, profile_id)))
        return prof

    def _driver_ok(self, i: int, prof: mig.Profile) -> bool:
        need = prof.min_driver or self._model(i).min_driver
        return not need or mig.driver_at_least(self.state["driver_version"], need)

    def _mutate(self, call: str, i, args: dict, fn):
        """Run one mutating call: injected failures, the call itself, then record and persist."""
        entry = {"call": call, "gpu": i, "args": args}
        try:
            for f in list(self.state.get("inject_failures", [])):
                if f["call"] == call and f.get("gpu") in (None, i):
                    if f.get("skip", 0) > 0:
                        f["skip"] -= 1
                        continue
                    self.state["inject_failures"].remove(f)
                    raise nvml_error(f["code"], nvml.explain(f["code"], "%s on GPU %s (injected failure)" % (call, i)))
            result = fn()
            entry["result"] = "ok"
            return result
        except nvml.NVMLError as e:
            entry["result"] = e.code_name
            raise
        finally:
            self.state["calls"].append(entry)
            save_state(self.path, self.state)

    def _pids_on(self, g: dict, gi_id=None, ci_id=None) -> list:
        out = []
        for p in g["processes"]:
            if gi_id is not None and p.get("gpu_instance_id") != gi_id:
                continue
            if ci_id is not None and p.get("compute_instance_id") not in (None, ci_id):
                continue
            out.append(p["pid"])
        return out

    def _in_use(self, what: str, pids: list):
        return nvml_error(IN_USE, nvml.explain(IN_USE, what, pids), pids=pids)

    def _require_root(self, what: str):
        if not self.state.get("root", True):
            raise nvml_error(NO_PERMISSION, nvml.explain(NO_PERMISSION, what))

    # -- system ----------------------------------------------------------------------------------
    def driver_version(self) -> str:
        return self.state["driver_version"]

    def cuda_version(self) -> str:
        return self.state["cuda_version"]

    def device_count(self) -> int:
        return len(self.state["gpus"])

    def machine_type(self):
        return self.state.get("machine_type")

    def device_info(self, i: int) -> dict:
        g = self._gpu(i)
        # States written before these facts existed fall back to the model's values.
        cc = g.get("cuda_compute_capability") or COMPUTE_CAPABILITY.get(self._model(i).generation)
        return {
            "index": i, "uuid": g["uuid"], "name": g["name"], "pci_device_id": g["pci_device_id"],
            "pci_bus_id": g.get("pci_bus_id", ""),
            "memory_total_mib": g["memory_total_mib"],
            "memory_used_mib": sum(int(p.get("used_memory_mib") or 0) for p in g["processes"]),
            "cuda_compute_capability": list(cc) if cc else None,
            "pci_class": g.get("pci_class", PCI_CLASS_3D),
            "persistence_mode": bool(g.get("persistence_mode")),
            "temperature_c": g.get("temperature_c"),
            "ecc_errors_volatile": g.get("ecc_errors_volatile"),
        }

    def set_persistence_mode(self, i: int, enabled: bool) -> None:
        g = self._gpu(i)

        def do():
            self._require_root("set persistence mode on GPU %d" % i)
            g["persistence_mode"] = bool(enabled)

        self._mutate("set_persistence_mode", i, {"enabled": bool(enabled)}, do)

    # -- MIG mode --------------------------------------------------------------------------------
    def mig_mode(self, i: int) -> tuple:
        g = self._require_mig(i, need_enabled=False, what="read MIG mode")
        return g["mig_current"], g["mig_pending"]

    def set_mig_mode(self, i: int, mode: int) -> int:
        g = self._gpu(i)

        def do():
            self._require_mig(i, need_enabled=False, what="set MIG mode")
            self._require_root("set MIG mode on GPU %d" % i)
            if mode not in (nvml.MIG_DISABLE, nvml.MIG_ENABLE):
                raise nvml_error(INVALID_ARGUMENT, "MIG mode must be 0 or 1, got %r" % (mode,))
            if mode == nvml.MIG_DISABLE and g["gpu_instances"]:
                # ⚑ inferred: NVIDIA's tools destroy every instance before disabling MIG.
                raise self._in_use("disable MIG on GPU %d while GPU instances exist" % i, [])
            g["mig_pending"] = mode
            if self._pids_on(g):
                return IN_USE  # activation status: not idle, change stays pending
            if g["mig_current"] == mode:
                return SUCCESS
            if self.state.get("passthrough_vm"):
                return RESET_REQUIRED
            if self._model(i).mig_mode_needs_reset:
                return SUCCESS  # Ampere: pending until the GPU is reset (reset_gpu)
            g["mig_current"] = mode
            return SUCCESS

        return self._mutate("set_mig_mode", i, {"mode": mode}, do)

    def reset_gpu(self, i: int) -> None:
        """The simulator's `nvidia-smi -r`: applies a pending MIG mode; all instances are lost."""
        g = self._gpu(i)

        def do():
            self._require_root("reset GPU %d" % i)
            pids = self._pids_on(g)
            if pids:
                raise self._in_use("reset GPU %d" % i, pids)
            g["gpu_instances"] = []
            g["mig_current"] = g["mig_pending"]

        self._mutate("reset_gpu", i, {}, do)

    def reboot(self) -> None:
        """Host reboot: instances and processes are lost; Ampere keeps the MIG mode (InfoROM), Hopper+
        come back with MIG off because the mode lasts only while the driver is loaded (facts §0.4)."""
        def do():
            for k, g in enumerate(self.state["gpus"]):
                g["gpu_instances"] = []
                g["processes"] = []
                if self._model(k).mig_mode_needs_reset:
                    g["mig_current"] = g["mig_pending"]
                else:
                    g["mig_current"] = g["mig_pending"] = nvml.MIG_DISABLE

        self._mutate("reboot", None, {}, do)

    # -- GPU instances ---------------------------------------------------------------------------
    def gpu_instance_profile_info(self, i: int, profile_index: int) -> dict:
        self._require_mig(i, what="read GPU instance profile info")  # the V call is NOT_SUPPORTED with MIG off
        if not isinstance(profile_index, int) or profile_index < 0 or profile_index >= mig.GI_PROFILE_COUNT:
            raise nvml_error(INVALID_ARGUMENT, "profile index %r out of range" % (profile_index,))
        prof = self._model(i).profile_by_index(profile_index)
        if prof is None or not self._driver_ok(i, prof):
            raise nvml_error(NOT_SUPPORTED, "GPU %d has no GPU instance profile index %d" % (i, profile_index))
        return {
            "index": prof.index, "id": prof.id, "name": prof.name, "slices": prof.slices,
            "instance_count": prof.instance_count, "multiprocessors": prof.multiprocessors,
            "memory_mib": prof.memory_mib, "engines": dict(prof.engines),
        }

    def possible_placements(self, i: int, profile_id: int) -> list[dict]:
        # Every legal placement, whether MIG is on or off and whether occupied or not (facts §0.2).
        self._require_mig(i, need_enabled=False, what="list possible placements")
        return self._profile(i, profile_id, "list possible placements").placements()

    def _occupied(self, g: dict) -> int:
        occ = 0
        for gi in g["gpu_instances"]:
            occ |= _mask(gi["start"], gi["size"])
        return occ

    def _why_not(self, i: int, g: dict, prof: mig.Profile, start: int) -> str | None:
        model = self._model(i)
        same = [x for x in g["gpu_instances"] if x["profile_id"] == prof.id]
        if len(same) >= prof.instance_count:
            return "profile %s already has its %d instance(s)" % (prof.name, prof.instance_count)
        if prof.media_extension and any(model.profile_by_id(x["profile_id"]).media_extension for x in g["gpu_instances"]):
            return "the media engines are already held by another +me instance"  # ⚑ inferred, facts §2
        if self._occupied(g) & _mask(start, prof.size):
            return "placement %d:%d overlaps an existing instance" % (start, prof.size)
        used = sum(model.profile_by_id(x["profile_id"]).slices for x in g["gpu_instances"])
        if used + prof.slices > model.compute_slices:
            return "not enough compute slices"
        return None

    def remaining_capacity(self, i: int, profile_id: int) -> int:
        g = self._require_mig(i, what="read remaining capacity")
        prof = self._profile(i, profile_id, "read remaining capacity")
        # Greedy over starts is exact for equal-size intervals.
        sim = {"gpu_instances": [dict(x) for x in g["gpu_instances"]]}
        n = 0
        for s in prof.starts:
            if self._why_not(i, sim, prof, s) is None:
                sim["gpu_instances"].append({"id": -1, "profile_id": prof.id, "start": s, "size": prof.size})
                n += 1
        return n

    def gpu_instances(self, i: int) -> list[dict]:
        g = self._require_mig(i, what="list GPU instances")
        return sorted(({"id": x["id"], "profile_id": x["profile_id"], "start": x["start"], "size": x["size"]}
                       for x in g["gpu_instances"]), key=lambda x: (x["start"], x["id"]))

    def create_gpu_instance(self, i: int, profile_id: int, start=None, size=None) -> dict:
        g = self._gpu(i)

        def do():
            what = "create GPU instance (profile id %s) on GPU %d" % (profile_id, i)
            self._require_mig(i, what="create GPU instance")
            self._require_root(what)
            prof = self._profile(i, profile_id, "create GPU instance")
            if start is None:
                # ⚑ NVIDIA leaves the default placement undefined; the simulator takes the lowest free start.
                starts = [s for s in prof.starts if self._why_not(i, g, prof, s) is None]
                if not starts:
                    raise nvml_error(INSUFFICIENT_RESOURCES, nvml.explain(INSUFFICIENT_RESOURCES, what))
                s = starts[0]
            else:
                s = start
                if s not in prof.starts or (size is not None and size != prof.size):
                    # ⚑ inferred error code for an illegal placement (facts §3)
                    raise nvml_error(INVALID_ARGUMENT, nvml.explain(
                        INVALID_ARGUMENT, "%s: %s:%s is not a legal placement (legal: starts %s, size %d)"
                        % (what, start, size, list(prof.starts), prof.size)))
            why = self._why_not(i, g, prof, s)
            if why:
                raise nvml_error(INSUFFICIENT_RESOURCES, nvml.explain(INSUFFICIENT_RESOURCES, "%s: %s" % (what, why)))
            # ⚑ Real GI ids follow the driver's own scheme; the simulator takes the lowest free id from 1.
            used = {x["id"] for x in g["gpu_instances"]}
            gid = next(k for k in range(1, 64) if k not in used)
            gi = {"id": gid, "profile_id": prof.id, "start": s, "size": prof.size, "compute_instances": []}
            g["gpu_instances"].append(gi)
            return {"id": gid, "profile_id": prof.id, "start": s, "size": prof.size}

        return self._mutate("create_gpu_instance", i, {"profile_id": profile_id, "start": start, "size": size}, do)

    def _find_gi(self, i: int, g: dict, gi_id: int, what: str) -> dict:
        for x in g["gpu_instances"]:
            if x["id"] == gi_id:
                return x
        raise nvml_error(NOT_FOUND, "%s on GPU %d: no GPU instance %r (NVML_ERROR_NOT_FOUND)" % (what, i, gi_id))

    def destroy_gpu_instance(self, i: int, gi_id: int) -> None:
        g = self._gpu(i)

        def do():
            what = "destroy GPU instance %s on GPU %d" % (gi_id, i)
            self._require_mig(i, what="destroy GPU instance")
            self._require_root(what)
            gi = self._find_gi(i, g, gi_id, "destroy GPU instance")
            pids = self._pids_on(g, gi_id=gi_id)
            if pids:
                raise self._in_use(what, pids)
            if gi["compute_instances"]:
                # nvidia-smi: "In use by another client" when -dgi runs before -dci (facts §3)
                raise self._in_use(what + " (it still holds compute instances; destroy them first)", [])
            g["gpu_instances"].remove(gi)

        self._mutate("destroy_gpu_instance", i, {"gi_id": gi_id}, do)

    # -- compute instances -----------------------------------------------------------------------
    def compute_instance_profiles(self, i: int, gi_id: int) -> list[dict]:
        g = self._require_mig(i, what="read compute instance profiles")
        gi = self._find_gi(i, g, gi_id, "read compute instance profiles")
        prof = self._model(i).profile_by_id(gi["profile_id"])
        out = []
        for c, n in sorted(CI_COUNTS.get(prof.slices, {1: prof.slices}).items()):
            idx = mig.CI_PROFILE_BY_SLICES[c]
            name = prof.name if c == prof.slices else "%dc.%s" % (c, prof.name)
            out.append({"index": idx, "id": idx, "slices": c, "instance_count": n,
                        "multiprocessors": prof.multiprocessors * c // prof.slices, "name": name})
        return out

    def compute_instances(self, i: int, gi_id: int) -> list[dict]:
        g = self._require_mig(i, what="list compute instances")
        gi = self._find_gi(i, g, gi_id, "list compute instances")
        return [{"id": c["id"], "profile_id": c["profile_id"], "start": c["start"], "size": c["size"]}
                for c in sorted(gi["compute_instances"], key=lambda c: c["id"])]

    def create_compute_instance(self, i: int, gi_id: int, ci_profile_id: int) -> dict:
        g = self._gpu(i)

        def do():
            what = "create compute instance in GPU instance %s on GPU %d" % (gi_id, i)
            self._require_mig(i, what="create compute instance")
            self._require_root(what)
            gi = self._find_gi(i, g, gi_id, "create compute instance")
            profs = {p["id"]: p for p in self.compute_instance_profiles(i, gi_id)}
            cp = profs.get(ci_profile_id)
            if cp is None:
                raise nvml_error(INVALID_ARGUMENT, nvml.explain(INVALID_ARGUMENT, "%s (no CI profile id %r)"
                                                                % (what, ci_profile_id)))
            gslices = self._model(i).profile_by_id(gi["profile_id"]).slices
            same = [c for c in gi["compute_instances"] if c["profile_id"] == ci_profile_id]
            occ = 0
            for c in gi["compute_instances"]:
                occ |= _mask(c["start"], c["size"])
            start = next((s for s in range(0, gslices - cp["slices"] + 1, cp["slices"])
                          if not occ & _mask(s, cp["slices"])), None)
            if len(same) >= cp["instance_count"] or start is None:
                raise nvml_error(INSUFFICIENT_RESOURCES, nvml.explain(INSUFFICIENT_RESOURCES, what))
            used = {c["id"] for c in gi["compute_instances"]}
            cid = next(k for k in range(0, 64) if k not in used)
            ci = {"id": cid, "profile_id": ci_profile_id, "start": start, "size": cp["slices"]}
            gi["compute_instances"].append(ci)
            return dict(ci)

        return self._mutate("create_compute_instance", i, {"gi_id": gi_id, "ci_profile_id": ci_profile_id}, do)

    def destroy_compute_instance(self, i: int, gi_id: int, ci_id: int) -> None:
        g = self._gpu(i)

        def do():
            what = "destroy compute instance %s/%s on GPU %d" % (gi_id, ci_id, i)
            self._require_mig(i, what="destroy compute instance")
            self._require_root(what)
            gi = self._find_gi(i, g, gi_id, "destroy compute instance")
            ci = next((c for c in gi["compute_instances"] if c["id"] == ci_id), None)
            if ci is None:
                raise nvml_error(NOT_FOUND, "%s: no such compute instance (NVML_ERROR_NOT_FOUND)" % what)
            pids = self._pids_on(g, gi_id=gi_id, ci_id=ci_id)
            if pids:
                raise self._in_use(what, pids)
            gi["compute_instances"].remove(ci)

        self._mutate("destroy_compute_instance", i, {"gi_id": gi_id, "ci_id": ci_id}, do)

    # -- processes -------------------------------------------------------------------------------
    def running_processes(self, i: int) -> list[dict]:
        g = self._gpu(i)
        return [dict(p) for p in sorted(g["processes"], key=lambda p: p["pid"])]
