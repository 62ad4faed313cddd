# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real NVML adapter against a fake pynvml injected in sys.modules.

There is no GPU here, so this is the one place a fake stands in for NVML. The fake keeps the real
pynvml's constants, ctypes structs and exception classes, and replaces only the functions, so the
adapter's struct handling (arrays, byref, bytes names, the NULL-then-fill placement call) and its
error translation are exercised as they would be against libnvidia-ml."""
from __future__ import annotations

import ctypes
import os
import sys
import types

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import nvml

real = pytest.importorskip("pynvml")

MIB = 1024 * 1024
# H100 80GB values from the facts (§1): (index, id, count, SMs, MiB, placements)
H100_PROFILES = {
    0: ("1g.10gb", 19, 7, 16, 9984, [(s, 1) for s in range(7)], 1),
    2: ("3g.40gb", 9, 2, 60, 40448, [(0, 4), (4, 4)], 3),
    4: ("7g.80gb", 0, 1, 132, 81152, [(0, 8)], 7),
}


def _ptr(value, typ):
    return ctypes.cast(ctypes.c_void_p(value), typ)


def _addr(handle):
    return ctypes.cast(handle, ctypes.c_void_p).value


class FakeNvml:
    """GPU 0: H100 with MIG on, GI 1 = 3g.40gb at 4 holding CI 0, PID 555 on it. GPU 1: L4, no MIG."""

    def __init__(self):
        self.fail_init = None
        self.set_mode_error = None
        self.created = []
        self.destroy_error = real.NVML_ERROR_IN_USE
        self.gis = {1: {"profile_id": 9, "start": 4, "size": 4, "cis": {0: 2}}}

    def module(self):
        mod = types.ModuleType("pynvml")
        for name in dir(real):
            if name.startswith(("NVML_", "c_nvml", "NVMLError", "nvmlPciInfo", "struct_c_nvml")):
                setattr(mod, name, getattr(real, name))
        for name in dir(self):
            if name.startswith("nvml"):
                setattr(mod, name, getattr(self, name))
        return mod

    @staticmethod
    def err(code):
        return real.NVMLError(code)

    # -- system --
    def nvmlInit(self):
        if self.fail_init:
            raise self.err(self.fail_init)

    def nvmlShutdown(self):
        pass

    def nvmlSystemGetDriverVersion(self):
        return "580.95.05"

    def nvmlSystemGetCudaDriverVersion(self):
        return 13000

    def nvmlDeviceGetCount(self):
        return 2

    def nvmlDeviceGetHandleByIndex(self, i):
        return ("dev", i)

    def nvmlDeviceGetName(self, h):
        return [b"NVIDIA H100 80GB HBM3", b"NVIDIA L4"][h[1]]

    def nvmlDeviceGetUUID(self, h):
        return "GPU-%d" % h[1]

    def nvmlDeviceGetPciInfo(self, h):
        info = real.nvmlPciInfo_t()
        info.pciDeviceId = [0x233010DE, 0x27B810DE][h[1]]
        info.busId = b"00000000:18:00.0"
        return info

    def nvmlDeviceGetMemoryInfo(self, h):
        return real.c_nvmlMemory_t(total=81559 * MIB, free=80000 * MIB, used=1559 * MIB)

    def nvmlDeviceGetCudaComputeCapability(self, h):
        return [(9, 0), (8, 9)][h[1]]

    def nvmlDeviceGetPersistenceMode(self, h):
        return 1

    def nvmlDeviceGetTemperature(self, h, sensor):
        assert sensor == real.NVML_TEMPERATURE_GPU
        return 35

    def nvmlDeviceGetTotalEccErrors(self, h, kind, counter):
        if h[1] == 1:
            raise self.err(real.NVML_ERROR_NOT_SUPPORTED)
        return 3 if kind == real.NVML_MEMORY_ERROR_TYPE_CORRECTED else 0

    # -- MIG --
    def nvmlDeviceGetMigMode(self, h):
        if h[1] == 1:
            raise self.err(real.NVML_ERROR_NOT_SUPPORTED)
        return [1, 1]

    def nvmlDeviceSetMigMode(self, h, mode):
        if self.set_mode_error:
            raise self.err(self.set_mode_error)
        return real.NVML_ERROR_IN_USE  # activation status: returned, not raised

    def nvmlDeviceGetGpuInstanceProfileInfo(self, h, idx, version=2):
        if idx not in H100_PROFILES:
            raise self.err(real.NVML_ERROR_NOT_SUPPORTED)
        name, pid, n, sm, mem, _unused, g = H100_PROFILES[idx]
        info = real.c_nvmlGpuInstanceProfileInfo_v2_t()
        info.id, info.sliceCount, info.instanceCount, info.multiprocessorCount = pid, g, n, sm
        info.copyEngineCount, info.decoderCount, info.jpegCount, info.ofaCount = g, g, g, 0
        info.memorySizeMB = mem
        info.name = ("MIG " + name).encode()
        return info

    def _by_id(self, pid):
        return next(v for v in H100_PROFILES.values() if v[1] == pid)

    def nvmlDeviceGetGpuInstancePossiblePlacements(self, h, pid, arr, count_ref):
        pls = self._by_id(pid)[5]
        if arr is None:
            count_ref._obj.value = len(pls)
            return real.NVML_SUCCESS
        for k, (s, size) in enumerate(pls):
            arr[k].start, arr[k].size = s, size
        count_ref._obj.value = len(pls)
        return real.NVML_SUCCESS

    def nvmlDeviceGetGpuInstanceRemainingCapacity(self, h, pid):
        return 1

    def nvmlDeviceGetGpuInstances(self, h, pid, arr, count_ref):
        ids = [g for g, v in self.gis.items() if v["profile_id"] == pid]
        for k, g in enumerate(ids):
            arr[k] = _ptr(1000 + g, real.c_nvmlGpuInstance_t)
        count_ref._obj.value = len(ids)

    def nvmlDeviceGetGpuInstanceById(self, h, gi_id):
        if gi_id not in self.gis:
            raise self.err(real.NVML_ERROR_NOT_FOUND)
        return _ptr(1000 + gi_id, real.c_nvmlGpuInstance_t)

    def nvmlGpuInstanceGetInfo(self, handle):
        gid = _addr(handle) - 1000
        v = self.gis[gid]
        info = real.c_nvmlGpuInstanceInfo_t()
        info.id, info.profileId = gid, v["profile_id"]
        info.placement.start, info.placement.size = v["start"], v["size"]
        return info

    def nvmlDeviceCreateGpuInstanceWithPlacement(self, h, pid, placement):
        # The adapter must pass a pointer to the placement struct (facts §3).
        assert type(placement).__name__ == "CArgObject"
        pl = placement._obj
        for v in self.gis.values():
            if pl.start < v["start"] + v["size"] and v["start"] < pl.start + pl.size:
                raise self.err(real.NVML_ERROR_INSUFFICIENT_RESOURCES)
        gid = max(self.gis) + 1
        self.gis[gid] = {"profile_id": pid, "start": pl.start, "size": pl.size, "cis": {}}
        self.created.append((pid, pl.start, pl.size))
        return _ptr(1000 + gid, real.c_nvmlGpuInstance_t)

    def nvmlGpuInstanceDestroy(self, handle):
        if self.destroy_error:
            raise self.err(self.destroy_error)
        del self.gis[_addr(handle) - 1000]

    def nvmlGpuInstanceGetComputeInstanceProfileInfo(self, gi, idx, eng, version=2):
        assert eng == real.NVML_COMPUTE_INSTANCE_ENGINE_PROFILE_SHARED
        slices = {0: 1, 1: 2, 2: 3}.get(idx)
        if slices is None:
            raise self.err(real.NVML_ERROR_NOT_SUPPORTED)
        info = real.c_nvmlComputeInstanceProfileInfo_v2_t()
        info.id, info.sliceCount, info.instanceCount, info.multiprocessorCount = idx, slices, 3 // slices, 20 * slices
        return info

    def nvmlGpuInstanceGetComputeInstances(self, gi, pid, arr, count_ref):
        gid = _addr(gi) - 1000
        ids = [c for c, p in self.gis[gid]["cis"].items() if p == pid]
        for k, c in enumerate(ids):
            arr[k] = _ptr(2000 + gid * 10 + c, real.c_nvmlComputeInstance_t)
        count_ref._obj.value = len(ids)

    def nvmlComputeInstanceGetInfo(self, ci):
        a = _addr(ci) - 2000
        gid, cid = divmod(a, 10)
        info = real.c_nvmlComputeInstanceInfo_t()
        info.id, info.profileId = cid, self.gis[gid]["cis"][cid]
        info.placement.start, info.placement.size = 0, 3
        return info

    # -- processes --
    def nvmlDeviceGetComputeRunningProcesses(self, h):
        if h[1] == 1:
            return []
        return [types.SimpleNamespace(pid=555, usedGpuMemory=2048 * MIB, gpuInstanceId=1, computeInstanceId=0)]

    def nvmlDeviceGetGraphicsRunningProcesses(self, h):
        raise self.err(real.NVML_ERROR_NOT_SUPPORTED)


@pytest.fixture
def fake(monkeypatch):
    f = FakeNvml()
    monkeypatch.setitem(sys.modules, "pynvml", f.module())
    return f


def test_host_facts_through_the_real_adapter(fake):
    backend = nvml.NvmlBackend()
    facts = nvml.host_facts(backend)
    assert (facts["backend"], facts["driver_version"], facts["cuda_version"], facts["gpu_count"]) == \
           ("nvml", "580.95.05", "13.0", 2)
    g0, g1 = facts["gpus"]
    assert g0["name"] == "NVIDIA H100 80GB HBM3"          # bytes decoded
    assert g0["model"] == "H100-80GB-HBM3"
    assert g0["pci_device_id"] == "0x233010DE"
    assert g0["pci_bus_id"] == "00000000:18:00.0"
    assert (g0["memory_total_mib"], g0["memory_used_mib"]) == (81559, 1559)
    assert (g0["persistence_mode"], g0["temperature_c"]) == (True, 35)
    assert g0["ecc_errors_volatile"] == {"corrected": 3, "uncorrected": 0}
    # nvmlDeviceGetCudaComputeCapability (GFD's gpu.compute.* and gpu.family)
    assert (g0["cuda_compute_capability"], g1["cuda_compute_capability"]) == ([9, 0], [8, 9])
    assert "pci_class" in g0 and "machine_type" in facts   # sysfs, not NVML: None where unreadable
    assert (g0["mig_capable"], g0["mig_current"], g0["mig_pending"]) == (True, True, True)
    assert g0["processes"] == [{"pid": 555, "used_memory_mib": 2048, "gpu_instance_id": 1, "compute_instance_id": 0}]
    profiles = {p["name"]: p for p in g0["mig_profiles"]}
    assert set(profiles) == {"1g.10gb", "3g.40gb", "7g.80gb"}   # "MIG " prefix stripped
    assert profiles["3g.40gb"]["id"] == 9 and profiles["3g.40gb"]["index"] == 2
    assert profiles["1g.10gb"]["placements"] == [{"start": s, "size": 1} for s in range(7)]
    [gi] = g0["gpu_instances"]
    assert (gi["id"], gi["profile"], gi["start"], gi["size"]) == (1, "3g.40gb", 4, 4)
    assert gi["compute_instances"][0]["slices"] == 3
    assert gi["resource"] == "nvidia.com/mig-3g.40gb"
    assert (g1["mig_capable"], g1["mig_current"], g1["ecc_errors_volatile"], g1["model"]) == (False, None, None, "L4")


def test_set_mig_mode_returns_the_activation_status(fake):
    assert nvml.NvmlBackend().set_mig_mode(0, 1) == 19


def test_create_passes_placement_by_reference(fake):
    backend = nvml.NvmlBackend()
    gi = backend.create_gpu_instance(0, 9, 0, 4)
    assert fake.created == [(9, 0, 4)]
    assert (gi["profile_id"], gi["start"], gi["size"]) == (9, 0, 4)
    with pytest.raises(nvml.NVMLError_InsufficientResources) as e:
        backend.create_gpu_instance(0, 19, 5, 1)
    assert "insufficient resources" in str(e.value) and "GPU 0" in str(e.value)


@pytest.mark.parametrize("code,cls", [(12, nvml.NVMLError_LibraryNotFound), (9, nvml.NVMLError_DriverNotLoaded)])
def test_init_failure_says_driver_missing(fake, code, cls):
    fake.fail_init = code
    with pytest.raises(cls) as e:
        nvml.NvmlBackend()
    assert nvml.NO_DRIVER_MSG in str(e.value)


def test_no_permission_message(fake):
    fake.set_mode_error = real.NVML_ERROR_NO_PERMISSION
    with pytest.raises(nvml.NVMLError_NoPermission) as e:
        nvml.NvmlBackend().set_mig_mode(0, 1)
    assert "root" in str(e.value) and "NVML_ERROR_NO_PERMISSION" in str(e.value)


def test_in_use_message_names_the_pids(fake):
    with pytest.raises(nvml.NVMLError_InUse) as e:
        nvml.NvmlBackend().destroy_gpu_instance(0, 1)
    assert e.value.pids == [555] and "555" in str(e.value) and "GPU 0" in str(e.value)


def test_missing_package_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    with pytest.raises(nvml.NVMLError_LibraryNotFound) as e:
        nvml.NvmlBackend()
    assert "nvidia-ml-py" in str(e.value)


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this host has an NVIDIA driver")
def test_real_pynvml_without_a_driver():
    with pytest.raises(nvml.NVMLError) as e:
        nvml.NvmlBackend()
    assert nvml.NO_DRIVER_MSG in str(e.value)


def test_pynvml_is_imported_only_by_nvml_py():
    here = os.path.dirname(os.path.abspath(nvml.__file__))
    importers = []
    for root, _unused, files in os.walk(os.path.dirname(here)):
        for f in files:
            if f.endswith(".py"):
                with open(os.path.join(root, f), encoding="utf-8") as fh:
                    text = fh.read()
                if "import pynvml" in text or "from pynvml" in text:
                    importers.append(f)
    assert importers == ["nvml.py"]


def test_unlistable_processes_are_unknown_not_empty(fake, monkeypatch):
    def denied(h):
        raise real.NVMLError(real.NVML_ERROR_NO_PERMISSION)

    monkeypatch.setattr(sys.modules["pynvml"], "nvmlDeviceGetComputeRunningProcesses", denied)
    facts = nvml.host_facts(nvml.NvmlBackend())
    assert facts["gpus"][0]["processes"] is None


def test_configure_refuses_when_processes_are_unknown(tmp_path):
    from ansible_collections.gpuops.llm.plugins.module_utils import mig, nvml_sim

    path = str(tmp_path / "h.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(["H100-80GB-HBM3"]))

    class Unprivileged(nvml_sim.SimBackend):
        def running_processes(self, i):
            raise nvml.nvml_error(nvml.NO_PERMISSION, "denied")

    with pytest.raises(mig.MigError) as e:
        nvml.configure_mig(Unprivileged(path), lambda f: mig.desired_state(f, preset_name="all-enabled"))
    assert e.value.reason == "in_use" and "cannot be listed" in str(e.value)
    assert nvml_sim.mutating_calls(path) == []
