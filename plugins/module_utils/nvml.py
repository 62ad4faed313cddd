# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""NVML adapter: the only importer of pynvml (nvidia-ml-py) in the collection.

Both backends, this one and nvml_sim.SimBackend, offer the same methods and return plain dicts;
both raise NVMLError subclasses that carry the NVML code in ``.value`` like pynvml's, but with a
message that says what failed and what to do. ``get_backend`` picks the simulator only when it is
asked for by name (a state file path or GPUOPS_NVML_SIM_STATE), never as a fallback.
``host_facts`` turns a backend into the facts gpu_facts returns and gfd.py consumes.
"""
from __future__ import annotations

import os

from ansible_collections.gpuops.llm.plugins.module_utils import mig

SIM_ENV = "GPUOPS_NVML_SIM_STATE"

# NVML return codes (facts §3; same values as pynvml).
SUCCESS = 0
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
NOT_FOUND = 6
INSUFFICIENT_SIZE = 7
DRIVER_NOT_LOADED = 9
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
RESET_REQUIRED = 16
IN_USE = 19
INSUFFICIENT_RESOURCES = 23
UNKNOWN = 999

MIG_DISABLE = 0
MIG_ENABLE = 1

CODE_NAMES = {
    UNINITIALIZED: "NVML_ERROR_UNINITIALIZED", INVALID_ARGUMENT: "NVML_ERROR_INVALID_ARGUMENT",
    NOT_SUPPORTED: "NVML_ERROR_NOT_SUPPORTED", NO_PERMISSION: "NVML_ERROR_NO_PERMISSION",
    NOT_FOUND: "NVML_ERROR_NOT_FOUND", INSUFFICIENT_SIZE: "NVML_ERROR_INSUFFICIENT_SIZE",
    DRIVER_NOT_LOADED: "NVML_ERROR_DRIVER_NOT_LOADED", LIBRARY_NOT_FOUND: "NVML_ERROR_LIBRARY_NOT_FOUND",
    FUNCTION_NOT_FOUND: "NVML_ERROR_FUNCTION_NOT_FOUND", RESET_REQUIRED: "NVML_ERROR_RESET_REQUIRED",
    IN_USE: "NVML_ERROR_IN_USE", INSUFFICIENT_RESOURCES: "NVML_ERROR_INSUFFICIENT_RESOURCES",
    UNKNOWN: "NVML_ERROR_UNKNOWN",
}

NO_DRIVER_MSG = "NVIDIA driver not installed or libnvidia-ml.so not on this host"


class NVMLError(Exception):
    """An NVML failure. ``value`` (and ``code``) is the NVML return code; ``pids`` lists the
    processes that hold the GPU when the code is IN_USE and they are known."""

    code_class: dict = {}
    default_code = UNKNOWN

    def __init__(self, message: str = "", code: int | None = None, pids=None):
        self.value = self.default_code if code is None else code
        self.pids = list(pids or [])
        super().__init__(message or code_name(self.value))

    @property
    def code(self) -> int:
        return self.value

    @property
    def code_name(self) -> str:
        return code_name(self.value)


def code_name(code: int) -> str:
    return CODE_NAMES.get(code, "NVML_ERROR_%s" % code)


def _subclass(name: str, code: int):
    cls = type(name, (NVMLError,), {"default_code": code})
    NVMLError.code_class[code] = cls
    return cls


NVMLError_Uninitialized = _subclass("NVMLError_Uninitialized", UNINITIALIZED)
NVMLError_InvalidArgument = _subclass("NVMLError_InvalidArgument", INVALID_ARGUMENT)
NVMLError_NotSupported = _subclass("NVMLError_NotSupported", NOT_SUPPORTED)
NVMLError_NoPermission = _subclass("NVMLError_NoPermission", NO_PERMISSION)
NVMLError_NotFound = _subclass("NVMLError_NotFound", NOT_FOUND)
NVMLError_DriverNotLoaded = _subclass("NVMLError_DriverNotLoaded", DRIVER_NOT_LOADED)
NVMLError_LibraryNotFound = _subclass("NVMLError_LibraryNotFound", LIBRARY_NOT_FOUND)
NVMLError_ResetRequired = _subclass("NVMLError_ResetRequired", RESET_REQUIRED)
NVMLError_InUse = _subclass("NVMLError_InUse", IN_USE)
NVMLError_InsufficientResources = _subclass("NVMLError_InsufficientResources", INSUFFICIENT_RESOURCES)
NVMLError_Unknown = _subclass("NVMLError_Unknown", UNKNOWN)


def nvml_error(code: int, message: str = "", pids=None) -> NVMLError:
    """The NVMLError subclass for a code, like pynvml's NVMLError(code)."""
    cls = NVMLError.code_class.get(code, NVMLError)
    return cls(message, code=code, pids=pids)


def explain(code: int, what: str, pids=None) -> str:
    """A message that says what failed, why, and what to do."""
    name = code_name(code)
    if code in (LIBRARY_NOT_FOUND, DRIVER_NOT_LOADED):
        return "%s: %s (%s)" % (what, NO_DRIVER_MSG, name)
    if code == NO_PERMISSION:
        return "%s: permission denied (%s); MIG and persistence changes need root (become: true)" % (what, name)
    if code == IN_USE:
        who = ("processes %s" % ", ".join(str(p) for p in pids)) if pids else \
            "another client (e.g. nvsm, dcgm, dcgm-exporter, a device plugin, or a compute instance still inside)"
        return "%s: the GPU is in use by %s (%s); stop them and retry" % (what, who, name)
    if code == INSUFFICIENT_RESOURCES:
        return ("%s: insufficient resources (%s): the placement overlaps an existing instance or the profile's "
                "instance count is reached" % (what, name))
    if code == NOT_SUPPORTED:
        return "%s: not supported (%s): the GPU has no MIG or MIG mode is off" % (what, name)
    if code == INVALID_ARGUMENT:
        return "%s: invalid argument (%s): unknown profile or an illegal placement start" % (what, name)
    if code == RESET_REQUIRED:
        return "%s: GPU reset required (%s)" % (what, name)
    return "%s failed (%s)" % (what, name)


# ---------------------------------------------------------------------------------------------
# Backend selection
# ---------------------------------------------------------------------------------------------
def get_backend(sim_state: str | None = None):
    """The simulator when a state file is named (argument, else GPUOPS_NVML_SIM_STATE), else real NVML.

    A real NVML failure is an error, never a reason to fall back to the simulator."""
    path = sim_state or os.environ.get(SIM_ENV)
    if path:
        from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim

        return nvml_sim.SimBackend(path)
    return NvmlBackend()


# ---------------------------------------------------------------------------------------------
# Shared helpers for both backends
# ---------------------------------------------------------------------------------------------
class BackendBase:
    kind = "base"

    def gpu_instance_profiles(self, i: int) -> list[dict]:
        """Every GPU-instance profile this GPU reports, looping over the profile indexes as NVML wants
        (skip NOT_SUPPORTED and INVALID_ARGUMENT), each with its possible placements."""
        out = []
        for idx in range(mig.GI_PROFILE_COUNT):
            try:
                info = self.gpu_instance_profile_info(i, idx)
            except NVMLError as e:
                if e.value in (NOT_SUPPORTED, INVALID_ARGUMENT, NOT_FOUND):
                    continue
                raise
            info["placements"] = self.possible_placements(i, info["id"])
            out.append(info)
        return out

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ---------------------------------------------------------------------------------------------
# The real adapter
# ---------------------------------------------------------------------------------------------
def _text(v) -> str:
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return str(v)


DMI_PRODUCT_NAME = "/sys/class/dmi/id/product_name"


def _sysfs_text(path: str):
    """A sysfs file's stripped text, or None when it cannot be read."""
    try:
        with open(path, "r", encoding="utf-8") as fh:
            return fh.read().strip()
    except (OSError, ValueError):
        return None


def _sysfs_bus_id(bus_id: str) -> str:
    # NVML's busId has an 8-digit domain (00000000:18:00.0); sysfs names use 4 (0000:18:00.0).
    return bus_id.lower()[-12:]


def _profile_name(raw) -> str:
    name = _text(raw).strip()
    return name[4:] if name.startswith("MIG ") else name


class NvmlBackend(BackendBase):
    """Real NVML through pynvml. Methods mirror the NVML calls in facts §3 and return plain data."""

    kind = "nvml"

    def __init__(self, pynvml_module=None):
        if pynvml_module is None:
            try:
                import pynvml as pynvml_module  # nvidia-ml-py
            except ImportError:
                raise NVMLError_LibraryNotFound(
                    "the Python package nvidia-ml-py (module pynvml) is not installed on this host; "
                    "install it (pip install nvidia-ml-py) to read GPUs", code=LIBRARY_NOT_FOUND)
        self.nv = pynvml_module
        self._handles: dict = {}
        self._call("nvmlInit", what="initialise NVML")

    # -- plumbing --------------------------------------------------------------------------------
    def _call(self, fn: str, *args, what: str | None = None, gpu: int | None = None):
        try:
            return getattr(self.nv, fn)(*args)
        except self.nv.NVMLError as e:
            code = getattr(e, "value", UNKNOWN)
            pids = None
            if code == IN_USE and gpu is not None:
                try:
                    pids = [p["pid"] for p in self.running_processes(gpu)]
                except NVMLError:
                    pids = None
            label = what or fn
            if gpu is not None:
                label = "%s on GPU %d" % (label, gpu)
            raise nvml_error(code, explain(code, label, pids), pids=pids)

    def _h(self, i: int):
        if i not in self._handles:
            self._handles[i] = self._call("nvmlDeviceGetHandleByIndex", i, what="get the handle of GPU %d" % i)
        return self._handles[i]

    def _gi(self, i: int, gi_id: int):
        return self._call("nvmlDeviceGetGpuInstanceById", self._h(i), gi_id, what="find GPU instance %d" % gi_id, gpu=i)

    def _optional(self, fn: str, *args):
        try:
            return getattr(self.nv, fn)(*args)
        except (self.nv.NVMLError, AttributeError):  # AttributeError: an older pynvml without fn
            return None

    def close(self) -> None:
        try:
            self.nv.nvmlShutdown()
        except Exception:  # noqa: BLE001 - shutdown failures change nothing for the caller
            pass

    # -- system ----------------------------------------------------------------------------------
    def driver_version(self) -> str:
        return _text(self._call("nvmlSystemGetDriverVersion", what="read the driver version"))

    def cuda_version(self) -> str:
        v = int(self._call("nvmlSystemGetCudaDriverVersion", what="read the CUDA driver version"))
        return "%d.%d" % (v // 1000, (v % 1000) // 10)

    def device_count(self) -> int:
        return int(self._call("nvmlDeviceGetCount", what="count GPUs"))

    def machine_type(self):
        # Not NVML: the DMI product name GFD reads by default (--machine-type-file).
        return _sysfs_text(DMI_PRODUCT_NAME)

    def device_info(self, i: int) -> dict:
        h = self._h(i)
        pci = self._call("nvmlDeviceGetPciInfo", h, what="read PCI info", gpu=i)
        mem = self._call("nvmlDeviceGetMemoryInfo", h, what="read memory info", gpu=i)
        pm = self._optional("nvmlDeviceGetPersistenceMode", h)
        temp = self._optional("nvmlDeviceGetTemperature", h, getattr(self.nv, "NVML_TEMPERATURE_GPU", 0))
        ecc = None
        corr = self._optional("nvmlDeviceGetTotalEccErrors", h, getattr(self.nv, "NVML_MEMORY_ERROR_TYPE_CORRECTED", 0),
                              getattr(self.nv, "NVML_VOLATILE_ECC", 0))
        unc = self._optional("nvmlDeviceGetTotalEccErrors", h, getattr(self.nv, "NVML_MEMORY_ERROR_TYPE_UNCORRECTED", 1),
                             getattr(self.nv, "NVML_VOLATILE_ECC", 0))
        if corr is not None or unc is not None:
            ecc = {"corrected": corr, "uncorrected": unc}
        bus = getattr(pci, "busId", b"") or getattr(pci, "busIdLegacy", b"")
        cc = self._optional("nvmlDeviceGetCudaComputeCapability", h)
        return {
            "index": i,
            "uuid": _text(self._call("nvmlDeviceGetUUID", h, what="read the UUID", gpu=i)),
            "name": _text(self._call("nvmlDeviceGetName", h, what="read the name", gpu=i)),
            "pci_device_id": "0x%08X" % int(pci.pciDeviceId),
            "pci_bus_id": _text(bus),
            "memory_total_mib": int(mem.total) // (1024 * 1024),
            "memory_used_mib": int(mem.used) // (1024 * 1024),
            "cuda_compute_capability": None if cc is None else [int(cc[0]), int(cc[1])],
            "pci_class": _sysfs_text("/sys/bus/pci/devices/%s/class" % _sysfs_bus_id(_text(bus))),
            "persistence_mode": None if pm is None else bool(pm),
            "temperature_c": temp,
            "ecc_errors_volatile": ecc,
        }

    def set_persistence_mode(self, i: int, enabled: bool) -> None:
        self._call("nvmlDeviceSetPersistenceMode", self._h(i), 1 if enabled else 0, what="set persistence mode", gpu=i)

    # -- MIG mode --------------------------------------------------------------------------------
    def mig_mode(self, i: int) -> tuple:
        cur, pend = self._call("nvmlDeviceGetMigMode", self._h(i), what="read MIG mode", gpu=i)
        return int(cur), int(pend)

    def set_mig_mode(self, i: int, mode: int) -> int:
        # pynvml returns the activation status as an int (IN_USE, RESET_REQUIRED...) without raising.
        return int(self._call("nvmlDeviceSetMigMode", self._h(i), mode, what="set MIG mode", gpu=i))

    # -- GPU instances ---------------------------------------------------------------------------
    def gpu_instance_profile_info(self, i: int, profile_index: int) -> dict:
        info = self._call("nvmlDeviceGetGpuInstanceProfileInfo", self._h(i), profile_index,
                          what="read GPU instance profile %d" % profile_index, gpu=i)
        return {
            "index": profile_index,
            "id": int(info.id),
            "name": _profile_name(getattr(info, "name", b"")),
            "slices": int(info.sliceCount),
            "instance_count": int(info.instanceCount),
            "multiprocessors": int(info.multiprocessorCount),
            "memory_mib": int(info.memorySizeMB),
            "engines": {
                "copy": int(info.copyEngineCount), "decoder": int(info.decoderCount),
                "encoder": int(info.encoderCount), "jpeg": int(info.jpegCount), "ofa": int(info.ofaCount),
            },
        }

    def possible_placements(self, i: int, profile_id: int) -> list[dict]:
        import ctypes

        h = self._h(i)
        count = ctypes.c_uint(0)
        # NULL placements first to learn the count (facts §0.2).
        self._call("nvmlDeviceGetGpuInstancePossiblePlacements", h, profile_id, None, ctypes.byref(count),
                   what="list placements of profile %d" % profile_id, gpu=i)
        if not count.value:
            return []
        arr = (self.nv.c_nvmlGpuInstancePlacement_t * count.value)()
        self._call("nvmlDeviceGetGpuInstancePossiblePlacements", h, profile_id, arr, ctypes.byref(count),
                   what="list placements of profile %d" % profile_id, gpu=i)
        return [{"start": int(arr[k].start), "size": int(arr[k].size)} for k in range(count.value)]

    def remaining_capacity(self, i: int, profile_id: int) -> int:
        return int(self._call("nvmlDeviceGetGpuInstanceRemainingCapacity", self._h(i), profile_id,
                              what="read remaining capacity of profile %d" % profile_id, gpu=i))

    def _gi_handles(self, i: int) -> list:
        import ctypes

        h = self._h(i)
        out = []
        for prof in self.gpu_instance_profiles_raw(i):
            arr = (self.nv.c_nvmlGpuInstance_t * max(1, prof["instance_count"]))()
            count = ctypes.c_uint(0)
            self._call("nvmlDeviceGetGpuInstances", h, prof["id"], arr, ctypes.byref(count),
                       what="list GPU instances of profile %s" % prof["name"], gpu=i)
            out.extend(arr[k] for k in range(count.value))
        return out

    def gpu_instance_profiles_raw(self, i: int) -> list[dict]:
        out = []
        for idx in range(mig.GI_PROFILE_COUNT):
            try:
                out.append(self.gpu_instance_profile_info(i, idx))
            except NVMLError as e:
                if e.value in (NOT_SUPPORTED, INVALID_ARGUMENT, NOT_FOUND):
                    continue
                raise
        return out

    def gpu_instances(self, i: int) -> list[dict]:
        out = []
        for handle in self._gi_handles(i):
            info = self._call("nvmlGpuInstanceGetInfo", handle, what="read a GPU instance", gpu=i)
            out.append({"id": int(info.id), "profile_id": int(info.profileId),
                        "start": int(info.placement.start), "size": int(info.placement.size)})
        return sorted(out, key=lambda g: (g["start"], g["id"]))

    def create_gpu_instance(self, i: int, profile_id: int, start: int, size: int) -> dict:
        import ctypes

        placement = self.nv.c_nvmlGpuInstancePlacement_t()
        placement.start, placement.size = start, size
        # The C function takes a pointer to the placement (facts §3).
        handle = self._call("nvmlDeviceCreateGpuInstanceWithPlacement", self._h(i), profile_id, ctypes.byref(placement),
                            what="create GPU instance (profile id %d at %d:%d)" % (profile_id, start, size), gpu=i)
        info = self._call("nvmlGpuInstanceGetInfo", handle, what="read the new GPU instance", gpu=i)
        return {"id": int(info.id), "profile_id": int(info.profileId),
                "start": int(info.placement.start), "size": int(info.placement.size)}

    def destroy_gpu_instance(self, i: int, gi_id: int) -> None:
        self._call("nvmlGpuInstanceDestroy", self._gi(i, gi_id), what="destroy GPU instance %d" % gi_id, gpu=i)

    # -- compute instances -----------------------------------------------------------------------
    def compute_instance_profiles(self, i: int, gi_id: int) -> list[dict]:
        gi = self._gi(i, gi_id)
        shared = getattr(self.nv, "NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED", 0)
        out = []
        for idx in range(mig.CI_PROFILE_COUNT):
            try:
                info = self._call("nvmlGpuInstanceGetComputeInstanceProfileInfo", gi, idx, shared,
                                  what="read compute instance profile %d" % idx, gpu=i)
            except NVMLError as e:
                if e.value in (NOT_SUPPORTED, INVALID_ARGUMENT, NOT_FOUND):
                    continue
                raise
            out.append({"index": idx, "id": int(info.id), "slices": int(info.sliceCount),
                        "instance_count": int(info.instanceCount), "multiprocessors": int(info.multiprocessorCount),
                        "name": _profile_name(getattr(info, "name", b""))})
        return out

    def compute_instances(self, i: int, gi_id: int) -> list[dict]:
        import ctypes

        gi = self._gi(i, gi_id)
        out = []
        for prof in self.compute_instance_profiles(i, gi_id):
            arr = (self.nv.c_nvmlComputeInstance_t * max(1, prof["instance_count"]))()
            count = ctypes.c_uint(0)
            self._call("nvmlGpuInstanceGetComputeInstances", gi, prof["id"], arr, ctypes.byref(count),
                       what="list compute instances of GPU instance %d" % gi_id, gpu=i)
            for k in range(count.value):
                info = self._call("nvmlComputeInstanceGetInfo", arr[k], what="read a compute instance", gpu=i)
                out.append({"id": int(info.id), "profile_id": int(info.profileId),
                            "start": int(info.placement.start), "size": int(info.placement.size)})
        return sorted(out, key=lambda c: c["id"])

    def create_compute_instance(self, i: int, gi_id: int, ci_profile_id: int) -> dict:
        handle = self._call("nvmlGpuInstanceCreateComputeInstance", self._gi(i, gi_id), ci_profile_id,
                            what="create a compute instance in GPU instance %d" % gi_id, gpu=i)
        info = self._call("nvmlComputeInstanceGetInfo", handle, what="read the new compute instance", gpu=i)
        return {"id": int(info.id), "profile_id": int(info.profileId),
                "start": int(info.placement.start), "size": int(info.placement.size)}

    def destroy_compute_instance(self, i: int, gi_id: int, ci_id: int) -> None:
        ci = self._call("nvmlGpuInstanceGetComputeInstanceById", self._gi(i, gi_id), ci_id,
                        what="find compute instance %d" % ci_id, gpu=i)
        self._call("nvmlComputeInstanceDestroy", ci, what="destroy compute instance %d/%d" % (gi_id, ci_id), gpu=i)

    # -- processes -------------------------------------------------------------------------------
    def running_processes(self, i: int) -> list[dict]:
        h = self._h(i)
        seen: dict = {}
        for fn in ("nvmlDeviceGetComputeRunningProcesses", "nvmlDeviceGetGraphicsRunningProcesses"):
            try:
                procs = getattr(self.nv, fn)(h) or []
            except self.nv.NVMLError as e:
                if getattr(e, "value", None) == NOT_SUPPORTED:
                    continue
                raise nvml_error(e.value, explain(e.value, "list running processes on GPU %d" % i))
            for p in procs:
                used = getattr(p, "usedGpuMemory", None)
                gi = getattr(p, "gpuInstanceId", None)
                ci = getattr(p, "computeInstanceId", None)
                invalid = 0xFFFFFFFF  # NVML reports "not in a MIG instance" as all ones
                seen[int(p.pid)] = {
                    "pid": int(p.pid),
                    "used_memory_mib": None if used is None else int(used) // (1024 * 1024),
                    "gpu_instance_id": None if gi in (None, invalid) else int(gi),
                    "compute_instance_id": None if ci in (None, invalid) else int(ci),
                }
        return [seen[k] for k in sorted(seen)]


# ---------------------------------------------------------------------------------------------
# Facts
# ---------------------------------------------------------------------------------------------
def _whole_ci(gi_slices: int, cis: list) -> bool:
    return len(cis) == 1 and cis[0].get("slices") == gi_slices


def _processes_or_none(backend, i: int):
    # Unprivileged callers may not list processes on a MIG parent handle: None means "unknown".
    try:
        return backend.running_processes(i)
    except NVMLError as e:
        if e.value == NO_PERMISSION:
            return None
        raise


def gpu_facts(backend, i: int) -> dict:
    """Facts of one GPU (see host_facts)."""
    info = backend.device_info(i)
    model = mig.find_model(info["name"]) or mig.find_model(info["pci_device_id"])
    try:
        cur, pend = backend.mig_mode(i)
        capable = True
    except NVMLError as e:
        if e.value != NOT_SUPPORTED:
            raise
        cur = pend = None
        capable = False
    g = dict(info)
    g.update({
        "model": model.key if model else None,
        "mig_capable": capable,
        "mig_current": None if cur is None else cur == MIG_ENABLE,
        "mig_pending": None if pend is None else pend == MIG_ENABLE,
        "mig_change_pending": capable and cur != pend,
        "processes": _processes_or_none(backend, i),
        "mig_profiles": [],
        "gpu_instances": [],
    })
    if capable and cur == MIG_ENABLE:
        profiles = backend.gpu_instance_profiles(i)
        g["mig_profiles"] = profiles
        by_id = {p["id"]: p for p in profiles}
        for gi in backend.gpu_instances(i):
            prof = by_id.get(gi["profile_id"], {})
            ci_profiles = {c["id"]: c for c in backend.compute_instance_profiles(i, gi["id"])}
            cis = []
            for ci in backend.compute_instances(i, gi["id"]):
                cp = ci_profiles.get(ci["profile_id"], {})
                cis.append(dict(ci, slices=cp.get("slices"), multiprocessors=cp.get("multiprocessors")))
            whole = _whole_ci(prof.get("slices"), cis)
            name = prof.get("name")
            g["gpu_instances"].append({
                "id": gi["id"], "profile": name, "profile_id": gi["profile_id"],
                "start": gi["start"], "size": gi["size"],
                "slices": prof.get("slices"), "memory_mib": prof.get("memory_mib"),
                "multiprocessors": prof.get("multiprocessors"), "engines": prof.get("engines"),
                "compute_instances": cis,
                # The device plugin exposes a MIG device only when one CI spans the whole GI.
                "mig_device": whole,
                "resource": mig.resource_name(name) if (whole and name) else None,
            })
    return g


def host_facts(backend) -> dict:
    """Plain-data facts of every GPU on a host.

    {backend, driver_version, cuda_version, machine_type, gpu_count, gpus: [{index, uuid, name, model,
    pci_device_id, pci_bus_id, memory_total_mib, memory_used_mib, cuda_compute_capability: [major, minor],
    pci_class, persistence_mode, temperature_c, ecc_errors_volatile,
    mig_capable, mig_current, mig_pending, mig_change_pending, processes: [{pid, used_memory_mib,
    gpu_instance_id, compute_instance_id}], mig_profiles: [...], gpu_instances: [{id, profile, profile_id,
    start, size, slices, memory_mib, multiprocessors, engines, compute_instances, mig_device, resource}]}]}"""
    driver = backend.driver_version()
    n = backend.device_count()
    machine = getattr(backend, "machine_type", None)
    return {
        "backend": backend.kind,
        "driver_version": driver,
        "cuda_version": backend.cuda_version(),
        "machine_type": machine() if machine else None,
        "gpu_count": n,
        "gpus": [gpu_facts(backend, i) for i in range(n)],
    }


# ---------------------------------------------------------------------------------------------
# Applying a mig.plan_gpu() plan through a backend, with rollback
# ---------------------------------------------------------------------------------------------
class MigApplyError(Exception):
    """A layout change failed part-way. ``restored`` says whether the previous layout came back."""

    def __init__(self, message: str, index: int, restored: bool, cause: Exception | None = None):
        super().__init__(message)
        self.index = index
        self.restored = restored
        self.cause = cause


def _whole_ci_profile_id(backend, i: int, gi_id: int, slices: int) -> int:
    # A whole MIG device uses the CI profile whose slice count equals the GI's (facts §1).
    cands = sorted((p for p in backend.compute_instance_profiles(i, gi_id) if p["slices"] == slices),
                   key=lambda p: p["index"])
    if not cands:
        raise nvml_error(NOT_SUPPORTED, "GPU %d: GPU instance %d offers no %d-slice compute instance profile"
                         % (i, gi_id, slices))
    return cands[0]["id"]


def _gi_summary(gi: dict) -> dict:
    return {"id": gi.get("id"), "profile": gi.get("profile"), "start": gi.get("start"), "size": gi.get("size")}


def _status(result: dict, i: int, status: int) -> None:
    result["activation_status"] = code_name(status) if status else "NVML_SUCCESS"
    if status == IN_USE:
        result["reset_required"] = True
        result["warnings"].append("GPU %d: the MIG mode change is pending because the GPU is not idle (activation "
                                  "status NVML_ERROR_IN_USE); stop its clients and reset it" % i)
    elif status == RESET_REQUIRED:
        result["reboot_required"] = True
        result["warnings"].append("GPU %d: the MIG mode change needs a reboot of this (virtual) machine "
                                  "(activation status NVML_ERROR_RESET_REQUIRED)" % i)
    elif status:
        result["warnings"].append("GPU %d: MIG mode activation status %s" % (i, code_name(status)))


def _pending_warning(result: dict, i: int, what: str) -> None:
    result["warnings"].append(
        "GPU %d: MIG %s is pending until the GPU is reset (nvidia-smi -r -i %d, with no clients on it) or the host "
        "reboots%s" % (i, what, i, "; run again afterwards to create the MIG instances" if what == "enable" else ""))


def apply_gpu_plan(backend, plan: dict) -> dict:
    """Carry out one GPU's plan: mode first, then destroy what goes, then create what comes, always with
    explicit placements. On any failure, undo every step taken (in reverse) and raise MigApplyError."""
    i = plan["index"]
    journal: list = []
    result = {
        "index": i, "activation_status": None, "reset_required": bool(plan.get("reset_required")),
        "reboot_required": False, "kept": [_gi_summary(k) for k in plan.get("keep", [])],
        "destroyed": [], "created": [], "warnings": [], "journal": journal,
    }
    try:
        if plan["set_mode"] == MIG_DISABLE:
            _destroy(backend, i, plan["destroy"], journal, result)
            status = backend.set_mig_mode(i, MIG_DISABLE)
            journal.append(("mode", MIG_ENABLE))
            _status(result, i, status)
            cur, pend = backend.mig_mode(i)
            if cur != pend:
                result["reset_required"] = True
                _pending_warning(result, i, "disable")
            return result
        if plan["set_mode"] == MIG_ENABLE:
            status = backend.set_mig_mode(i, MIG_ENABLE)
            journal.append(("mode", MIG_ENABLE if plan.get("mig_pending") else MIG_DISABLE))
            _status(result, i, status)
        if plan["desired_enabled"]:
            cur, pend = backend.mig_mode(i)
            if cur != MIG_ENABLE:
                result["reset_required"] = True  # pending until reset (Ampere) or blocked by clients
                _pending_warning(result, i, "enable")
                return result
            result["reset_required"] = cur != pend
            create = plan["create"] if plan.get("layout_now") else plan["placements"]
            _destroy(backend, i, plan["destroy"], journal, result)
            for d in create:
                gi = backend.create_gpu_instance(i, d["profile_id"], d["start"], d["size"])
                journal.append(("created_gi", gi["id"]))
                ci = backend.create_compute_instance(i, gi["id"], _whole_ci_profile_id(backend, i, gi["id"], d["slices"]))
                journal.append(("created_ci", gi["id"], ci["id"]))
                result["created"].append({"id": gi["id"], "profile": d["profile"], "start": gi["start"], "size": gi["size"]})
            for k in plan.get("add_ci", []):
                ci = backend.create_compute_instance(i, k["id"], _whole_ci_profile_id(backend, i, k["id"], k["slices"]))
                journal.append(("created_ci", k["id"], ci["id"]))
        return result
    except NVMLError as e:
        errors = _rollback(backend, i, journal)
        if errors:
            msg = ("GPU %d: %s. Rolling back failed as well, so the GPU is left part-way: %s"
                   % (i, e, "; ".join(errors)))
        elif journal:
            msg = "GPU %d: %s. Every step taken was undone; the previous layout is restored" % (i, e)
        else:
            msg = "GPU %d: %s. Nothing had been changed" % (i, e)
        raise MigApplyError(msg, i, restored=not errors, cause=e)


def _destroy(backend, i: int, instances: list, journal: list, result: dict) -> None:
    # Compute instances first, then the GPU instance (destroying a GI that holds CIs is IN_USE).
    for gi in instances:
        for ci in gi.get("compute_instances") or []:
            backend.destroy_compute_instance(i, gi["id"], ci["id"])
            journal.append(("destroyed_ci", gi["id"], ci["profile_id"]))
        backend.destroy_gpu_instance(i, gi["id"])
        journal.append(("destroyed_gi", gi["id"], gi["profile_id"], gi["start"], gi["size"]))
        result["destroyed"].append(_gi_summary(gi))


def _rollback(backend, i: int, journal: list) -> list:
    errors = []
    new_id: dict = {}  # recreated GIs get new ids
    for entry in reversed(journal):
        try:
            kind = entry[0]
            if kind == "created_ci":
                backend.destroy_compute_instance(i, entry[1], entry[2])
            elif kind == "created_gi":
                backend.destroy_gpu_instance(i, entry[1])
            elif kind == "destroyed_gi":
                gi = backend.create_gpu_instance(i, entry[2], entry[3], entry[4])
                new_id[entry[1]] = gi["id"]
            elif kind == "destroyed_ci":
                backend.create_compute_instance(i, new_id.get(entry[1], entry[1]), entry[2])
            elif kind == "mode":
                backend.set_mig_mode(i, entry[1])
        except NVMLError as e:
            errors.append(str(e))
    return errors


# ---------------------------------------------------------------------------------------------
# The whole mig_config run: facts -> desired -> plan -> checks -> apply -> facts
# ---------------------------------------------------------------------------------------------
def _mig_devices_after(gpu: dict) -> list:
    return [{"gi_id": gi["id"], "ci_id": (gi["compute_instances"][0]["id"] if gi["compute_instances"] else None),
             "profile": gi["profile"], "start": gi["start"], "size": gi["size"], "resource": gi["resource"]}
            for gi in gpu.get("gpu_instances") or [] if gi.get("mig_device")]


def _predicted_devices(plan: dict) -> list:
    out = [{"gi_id": k["id"], "ci_id": None, "profile": k["profile"], "start": k["start"], "size": k["size"],
            "resource": mig.resource_name(k["profile"])} for k in plan["keep"]]
    for k in out:
        src = next(x for x in plan["keep"] if x["id"] == k["gi_id"])
        if src.get("compute_instances"):
            k["ci_id"] = src["compute_instances"][0]["id"]
    create = plan["create"] if plan["layout_now"] else []
    out += [{"gi_id": None, "ci_id": None, "profile": d["profile"], "start": d["start"], "size": d["size"],
             "resource": mig.resource_name(d["profile"])} for d in create]
    return sorted(out, key=lambda d: d["start"])


def _pids_text(procs: list) -> str:
    parts = []
    for p in procs:
        where = ""
        if p.get("gpu_instance_id") is not None:
            where = " on GPU instance %s" % p["gpu_instance_id"]
        parts.append("%s%s" % (p["pid"], where))
    return ", ".join(parts)


def configure_mig(backend, desired_fn, force: bool = False, check_mode: bool = False) -> dict:
    """Bring a host's GPUs to a desired MIG state with the fewest NVML writes.

    desired_fn(facts) returns {index: {mig_enabled, mig_devices, source}} (see mig.desired_state).
    Everything is validated for every GPU before the first write; a GPU with running processes is
    refused (naming the PIDs) unless ``force``. A failure part-way undoes every step on every GPU and
    raises MigApplyError. Raises mig.MigError for invalid input, NVMLError for NVML failures."""
    before = host_facts(backend)
    desired = desired_fn(before)
    plans = mig.plan_host(before, desired)
    busy = [p for p in plans if p["changed"] and (p["processes"] or p["processes"] is None)]
    if busy and not force:
        raise mig.MigError("; ".join(
            ("GPU %d (%s) runs processes (PIDs %s); refusing to change its MIG configuration. Drain it first "
             "(the gpuops.llm.mig role does) or set force=true" % (p["index"], p["name"], _pids_text(p["processes"])))
            if p["processes"] else
            ("GPU %d (%s): its processes cannot be listed (NVML_ERROR_NO_PERMISSION), so it may be busy; run with "
             "become: true or set force=true" % (p["index"], p["name"]))
            for p in busy), reason="in_use")

    by_index = {g["index"]: g for g in before["gpus"]}
    results: dict = {}
    done: list = []
    if not check_mode:
        for p in plans:
            if not p["changed"]:
                continue
            try:
                r = apply_gpu_plan(backend, p)
            except MigApplyError as e:
                # Undo the GPUs already changed too, so the host is as it was.
                errors = []
                for prev in reversed(done):
                    errors += _rollback(backend, prev["index"], prev["journal"])
                if done:
                    e.args = ("%s. GPUs changed earlier in this run (%s) were %s" % (
                        e, ", ".join(str(d["index"]) for d in done),
                        "restored" if not errors else "NOT all restored: " + "; ".join(errors)),)
                    e.restored = e.restored and not errors
                raise
            done.append(r)
            results[p["index"]] = r
        after_facts = host_facts(backend)
        after = {g["index"]: g for g in after_facts["gpus"]}
    else:
        after = None

    gpus_out, diff_before, diff_after = [], {}, {}
    resources: dict = {}
    any_changed = reset_any = reboot_any = False
    for p in plans:
        i = p["index"]
        b = by_index[i]
        r = results.get(i)
        if after is not None:
            a = after[i]
            enabled, pending = a.get("mig_current"), a.get("mig_pending")
            devices = _mig_devices_after(a) if enabled else []
            reset = bool(r["reset_required"]) if r else bool(p["reset_required"])
            reboot = bool(r["reboot_required"]) if r else False
            status = r["activation_status"] if r else None
            warnings = r["warnings"] if r else []
            created = r["created"] if r else []
            destroyed = r["destroyed"] if r else []
            kept = r["kept"] if r else [{"id": k["id"], "profile": k["profile"], "start": k["start"], "size": k["size"]}
                                        for k in p["keep"]]
        else:
            if p["set_mode"] is not None:
                # Hopper+ apply a mode change at once, Ampere after a reset (facts §0.4).
                immediate = not p["reset_required"]
                enabled = bool(p["set_mode"]) if immediate else b.get("mig_current")
                pending = bool(p["set_mode"])
            else:
                enabled, pending = b.get("mig_current"), b.get("mig_pending")
            devices = _predicted_devices(p) if p["desired_enabled"] and p["layout_now"] else []
            reset, reboot, status, warnings = bool(p["reset_required"]), False, None, []
            created = [{"id": None, "profile": d["profile"], "start": d["start"], "size": d["size"]}
                       for d in (p["create"] if p["layout_now"] else [])]
            destroyed = [{"id": d["id"], "profile": d["profile"], "start": d["start"], "size": d["size"]}
                         for d in p["destroy"]]
            kept = [{"id": k["id"], "profile": k["profile"], "start": k["start"], "size": k["size"]} for k in p["keep"]]
        if enabled:
            for d in devices:
                resources[d["resource"]] = resources.get(d["resource"], 0) + 1
        else:
            resources["nvidia.com/gpu"] = resources.get("nvidia.com/gpu", 0) + 1
        changed = bool(p["changed"])
        any_changed = any_changed or changed
        reset_any = reset_any or reset
        reboot_any = reboot_any or reboot
        gpus_out.append({
            "index": i, "name": p["name"], "uuid": p["uuid"], "source": p["source"], "changed": changed,
            "mig_enabled": enabled, "mig_pending": pending, "reset_required": reset, "reboot_required": reboot,
            "activation_status": status, "kept": kept, "destroyed": destroyed, "created": created,
            "mig_devices": devices, "warnings": warnings, "processes": p["processes"],
        })
        key = "gpu%d" % i
        diff_before[key] = {"mig_enabled": b.get("mig_current"), "mig_pending": b.get("mig_pending"),
                            "layout": mig.layout_summary(b.get("gpu_instances") or [])}
        diff_after[key] = {"mig_enabled": enabled, "mig_pending": pending,
                           "layout": mig.layout_summary(devices)}
    # GPUs the desired state does not name still count towards what the node advertises.
    planned = {p["index"] for p in plans}
    for g in (after.values() if after is not None else by_index.values()):
        if g["index"] in planned:
            continue
        if g.get("mig_current"):
            for d in _mig_devices_after(g):
                resources[d["resource"]] = resources.get(d["resource"], 0) + 1
        else:
            resources["nvidia.com/gpu"] = resources.get("nvidia.com/gpu", 0) + 1
    return {
        "changed": any_changed, "gpus": gpus_out, "reset_required": reset_any, "reboot_required": reboot_any,
        "resources": resources, "diff": {"before": diff_before, "after": diff_after},
        "backend": backend.kind,
    }
