# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The NVML simulator behaves as the facts say NVML does (mig-and-nvml.md §0, §3)."""
from __future__ import annotations

import json

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import mig, nvml, nvml_sim

# NVML codes from the facts (§3), written out rather than imported from the code under test.
INVALID_ARGUMENT, NOT_SUPPORTED, NO_PERMISSION, RESET_REQUIRED, IN_USE, INSUFFICIENT_RESOURCES = 2, 3, 4, 16, 19, 23
# H100 profile ids from nvidia-smi captures (facts §1): 1g 19, +me 20, 1g.20gb 15, 2g 14, 3g 9, 4g 5, 7g 0
ID_1G, ID_1G_ME, ID_1G20, ID_2G, ID_3G, ID_4G, ID_7G = 19, 20, 15, 14, 9, 5, 0


def make(tmp_path, gpus=("H100-80GB-HBM3",), **kw):
    path = str(tmp_path / "host.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(list(gpus), **kw))
    return path, nvml_sim.SimBackend(path)


def calls(path):
    return nvml_sim.mutating_calls(path)


def test_new_host_state_and_round_trip(tmp_path):
    state = nvml_sim.new_host_state(["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-40GB", "NVIDIA L4"],
                                    mig_enabled=True)
    assert [g["model"] for g in state["gpus"]] == ["H100-80GB-HBM3", "A100-SXM4-40GB", "L4"]
    assert [g["mig_current"] for g in state["gpus"]] == [1, 1, 0]  # L4 has no MIG
    assert state["driver_version"] == "580.95.05" and state["cuda_version"] == "13.0"
    assert len({g["uuid"] for g in state["gpus"]}) == 3
    path = str(tmp_path / "s.json")
    nvml_sim.save_state(path, state)
    assert nvml_sim.load_state(path) == json.loads(json.dumps(state))


def test_load_state_errors(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(nvml.NVMLError) as e:
        nvml_sim.load_state(str(bad))
    assert "not valid JSON" in str(e.value)
    with pytest.raises(nvml.NVMLError) as e:
        nvml_sim.load_state(str(tmp_path / "none.json"))
    assert "cannot be read" in str(e.value)
    (tmp_path / "old.json").write_text(json.dumps({"version": 99, "gpus": []}))
    with pytest.raises(nvml.NVMLError):
        nvml_sim.load_state(str(tmp_path / "old.json"))


def test_error_classes_mirror_pynvml():
    pynvml = pytest.importorskip("pynvml")
    for code, cls in [(IN_USE, nvml.NVMLError_InUse), (INSUFFICIENT_RESOURCES, nvml.NVMLError_InsufficientResources),
                      (NOT_SUPPORTED, nvml.NVMLError_NotSupported), (INVALID_ARGUMENT, nvml.NVMLError_InvalidArgument),
                      (NO_PERMISSION, nvml.NVMLError_NoPermission), (RESET_REQUIRED, nvml.NVMLError_ResetRequired)]:
        real = pynvml.NVMLError(code)
        assert type(real).__name__ == cls.__name__
        assert real.value == code
        err = nvml.nvml_error(code, "x")
        assert isinstance(err, cls) and isinstance(err, nvml.NVMLError) and err.value == code


def test_profile_index_is_not_profile_id(tmp_path):
    path, b = make(tmp_path, mig_enabled=True)
    info = b.gpu_instance_profile_info(0, mig.GI_PROFILE_3_SLICE)  # index 2
    assert (info["id"], info["name"], info["slices"], info["instance_count"], info["multiprocessors"]) == (ID_3G, "3g.40gb", 3, 2, 60)
    assert b.gpu_instance_profile_info(0, 9)["id"] == ID_1G20   # REV2 index 9 -> id 15
    # Passing the index where an id belongs is an error: id 2 does not exist on an H100.
    with pytest.raises(nvml.NVMLError_InvalidArgument):
        b.create_gpu_instance(0, mig.GI_PROFILE_3_SLICE, 0, 4)
    with pytest.raises(nvml.NVMLError) as e:
        b.gpu_instance_profile_info(0, 8)    # 2_SLICE_REV1 does not exist on H100
    assert e.value.value in (NOT_SUPPORTED, INVALID_ARGUMENT)
    with pytest.raises(nvml.NVMLError_InvalidArgument):
        b.gpu_instance_profile_info(0, 0x12)


def test_profile_listing_matches_facts(tmp_path):
    _unused, b = make(tmp_path, gpus=("A100-SXM4-40GB",), mig_enabled=True)
    got = {p["name"]: (p["id"], p["instance_count"], [x["start"] for x in p["placements"]], p["placements"][0]["size"])
           for p in b.gpu_instance_profiles(0)}
    assert got == {
        "1g.5gb": (19, 7, [0, 1, 2, 3, 4, 5, 6], 1), "1g.5gb+me": (20, 1, [0, 1, 2, 3, 4, 5, 6], 1),
        "1g.10gb": (15, 4, [0, 2, 4, 6], 2), "2g.10gb": (14, 3, [0, 2, 4], 2), "3g.20gb": (9, 2, [0, 4], 4),
        "4g.20gb": (5, 1, [0], 4), "7g.40gb": (0, 1, [0], 8),
    }


def test_driver_hides_profiles_it_is_too_old_for(tmp_path):
    # 1g.10gb on A100-40GB needs R525+ [UG-prof]
    _unused, b = make(tmp_path, gpus=("A100-SXM4-40GB",), mig_enabled=True, driver_version="515.65.01")
    assert "1g.10gb" not in {p["name"] for p in b.gpu_instance_profiles(0)}


def test_possible_placements_ignore_occupancy_and_mig_mode(tmp_path):
    _unused, b = make(tmp_path)  # MIG off
    assert b.possible_placements(0, ID_1G_ME) == [{"start": s, "size": 1} for s in range(7)]  # 7 placements, count 1
    b.set_mig_mode(0, 1)
    b.create_gpu_instance(0, ID_7G, 0, 8)
    assert b.possible_placements(0, ID_3G) == [{"start": 0, "size": 4}, {"start": 4, "size": 4}]
    assert b.remaining_capacity(0, ID_3G) == 0


def test_remaining_capacity_accounts_for_instances(tmp_path):
    _unused, b = make(tmp_path, mig_enabled=True)
    assert b.remaining_capacity(0, ID_1G) == 7
    assert b.remaining_capacity(0, ID_3G) == 2
    b.create_gpu_instance(0, ID_3G, 4, 4)
    assert b.remaining_capacity(0, ID_1G) == 4        # slots 0-3; 4-7 hold the 3g
    assert b.remaining_capacity(0, ID_3G) == 1
    assert b.remaining_capacity(0, ID_4G) == 1
    b.create_gpu_instance(0, ID_4G, 0, 4)
    assert b.remaining_capacity(0, ID_1G) == 0


def test_create_errors(tmp_path):
    path, b = make(tmp_path, mig_enabled=True)
    b.create_gpu_instance(0, ID_3G, 4, 4)
    with pytest.raises(nvml.NVMLError_InsufficientResources) as e:   # overlap
        b.create_gpu_instance(0, ID_1G, 5, 1)
    assert e.value.value == INSUFFICIENT_RESOURCES and "overlaps" in str(e.value)
    with pytest.raises(nvml.NVMLError_InvalidArgument):              # ⚑ illegal start (inferred code)
        b.create_gpu_instance(0, ID_3G, 2, 4)
    with pytest.raises(nvml.NVMLError_InvalidArgument):              # wrong size for the profile
        b.create_gpu_instance(0, ID_2G, 0, 4)
    b.create_gpu_instance(0, ID_1G_ME, 0, 1)
    with pytest.raises(nvml.NVMLError_InsufficientResources):        # +me instance count is 1
        b.create_gpu_instance(0, ID_1G_ME, 1, 1)
    with pytest.raises(nvml.NVMLError_InsufficientResources):        # second 4g: count 1 (and overlap)
        b.create_gpu_instance(0, ID_4G, 0, 4)
    results = [c["result"] for c in calls(path)]
    assert results == ["ok", "NVML_ERROR_INSUFFICIENT_RESOURCES", "NVML_ERROR_INVALID_ARGUMENT",
                       "NVML_ERROR_INVALID_ARGUMENT", "ok", "NVML_ERROR_INSUFFICIENT_RESOURCES",
                       "NVML_ERROR_INSUFFICIENT_RESOURCES"]


def test_instance_count_limit_without_overlap(tmp_path):
    _unused, b = make(tmp_path, mig_enabled=True)
    for s in (0, 2, 4):
        b.create_gpu_instance(0, ID_2G, s, 2)
    with pytest.raises(nvml.NVMLError_InsufficientResources):
        b.create_gpu_instance(0, ID_2G, None, None)  # no 2g start left (and count 3 reached)


def test_default_placement_and_explicit_placement(tmp_path):
    _unused, b = make(tmp_path, mig_enabled=True)
    gi = b.create_gpu_instance(0, ID_1G)  # ⚑ default placement is undefined in NVIDIA; the sim picks lowest
    assert gi["start"] == 0
    gi = b.create_gpu_instance(0, ID_3G, 4, 4)
    assert (gi["start"], gi["size"], gi["profile_id"]) == (4, 4, ID_3G)


def test_gi_calls_not_supported_with_mig_off_and_on_non_mig_gpu(tmp_path):
    _unused, b = make(tmp_path, gpus=("H100-80GB-HBM3", "L4"))
    for call in (lambda: b.create_gpu_instance(0, ID_1G, 0, 1), lambda: b.gpu_instances(0),
                 lambda: b.gpu_instance_profile_info(0, 0), lambda: b.remaining_capacity(0, ID_1G)):
        with pytest.raises(nvml.NVMLError_NotSupported):
            call()
    for call in (lambda: b.mig_mode(1), lambda: b.set_mig_mode(1, 1), lambda: b.possible_placements(1, ID_1G)):
        with pytest.raises(nvml.NVMLError_NotSupported):
            call()


def test_destroy_order_and_in_use(tmp_path):
    path, b = make(tmp_path, mig_enabled=True)
    gi = b.create_gpu_instance(0, ID_3G, 0, 4)
    ci_profiles = b.compute_instance_profiles(0, gi["id"])
    # A100/H100 3g GI: 1c x3 (id 0), 2c x1 (id 1), 3g x1 (id 2) (facts §1 -lcip example and mock table)
    assert [(p["id"], p["slices"], p["instance_count"]) for p in ci_profiles] == [(0, 1, 3), (1, 2, 1), (2, 3, 1)]
    ci = b.create_compute_instance(0, gi["id"], 2)
    with pytest.raises(nvml.NVMLError_InsufficientResources):
        b.create_compute_instance(0, gi["id"], 0)  # the whole GI is taken by the 3-slice CI
    with pytest.raises(nvml.NVMLError_InUse):    # GI still holds a CI
        b.destroy_gpu_instance(0, gi["id"])
    state = nvml_sim.load_state(path)
    nvml_sim.add_process(state, 0, 4242, 2048, gpu_instance_id=gi["id"], compute_instance_id=ci["id"])
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    with pytest.raises(nvml.NVMLError_InUse) as e:
        b.destroy_compute_instance(0, gi["id"], ci["id"])
    assert e.value.pids == [4242] and "4242" in str(e.value)
    state = nvml_sim.load_state(path)
    state["gpus"][0]["processes"] = []
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    b.destroy_compute_instance(0, gi["id"], ci["id"])
    b.destroy_gpu_instance(0, gi["id"])
    assert b.gpu_instances(0) == []
    with pytest.raises(nvml.NVMLError_NotFound):
        b.destroy_gpu_instance(0, gi["id"])


def test_set_mig_mode_returns_activation_status(tmp_path):
    # Hopper: immediate
    _unused, b = make(tmp_path)
    assert b.set_mig_mode(0, 1) == 0
    assert b.mig_mode(0) == (1, 1)
    # Ampere: pending until reset
    path, a = make(tmp_path, gpus=("A100-SXM4-40GB",))
    assert a.set_mig_mode(0, 1) == 0
    assert a.mig_mode(0) == (0, 1)
    with pytest.raises(nvml.NVMLError_NotSupported):
        a.create_gpu_instance(0, ID_1G, 0, 1)
    a.reset_gpu(0)
    assert a.mig_mode(0) == (1, 1)
    assert a.create_gpu_instance(0, ID_1G, 0, 1)["start"] == 0


def test_mode_change_with_processes_is_pending_with_in_use_status(tmp_path):
    path, _unused = make(tmp_path)
    state = nvml_sim.load_state(path)
    nvml_sim.add_process(state, 0, 777)
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    assert b.set_mig_mode(0, 1) == IN_USE   # returned, not raised
    assert b.mig_mode(0) == (0, 1)
    with pytest.raises(nvml.NVMLError_InUse) as e:
        b.reset_gpu(0)
    assert e.value.pids == [777]


def test_passthrough_vm_reports_reset_required(tmp_path):
    path = str(tmp_path / "vm.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3"])
    state["passthrough_vm"] = True
    nvml_sim.save_state(path, state)
    assert nvml_sim.SimBackend(path).set_mig_mode(0, 1) == RESET_REQUIRED


def test_no_permission(tmp_path):
    path = str(tmp_path / "user.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3"], mig_enabled=True)
    state["root"] = False
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    with pytest.raises(nvml.NVMLError_NoPermission) as e:
        b.set_mig_mode(0, 0)
    assert "root" in str(e.value)
    with pytest.raises(nvml.NVMLError_NoPermission):
        b.create_gpu_instance(0, ID_7G, 0, 8)


def test_disable_with_instances_is_refused(tmp_path):
    _unused, b = make(tmp_path, mig_enabled=True)
    b.create_gpu_instance(0, ID_7G, 0, 8)
    with pytest.raises(nvml.NVMLError_InUse):
        b.set_mig_mode(0, 0)


def test_reboot_semantics(tmp_path):
    # Ampere keeps MIG mode across reboots (InfoROM); Hopper loses it with the driver (facts §0.4)
    path, b = make(tmp_path, gpus=("A100-SXM4-40GB", "H100-80GB-HBM3"), mig_enabled=True)
    b.create_gpu_instance(0, ID_7G, 0, 8)
    b.create_gpu_instance(1, ID_7G, 0, 8)
    b.reboot()
    assert b.mig_mode(0) == (1, 1) and b.gpu_instances(0) == []
    assert b.mig_mode(1) == (0, 0)


def test_reads_record_nothing_and_writes_record_everything(tmp_path):
    path, b = make(tmp_path, mig_enabled=True)
    nvml.host_facts(b)
    b.gpu_instance_profiles(0)
    b.remaining_capacity(0, ID_1G)
    assert calls(path) == []
    gi = b.create_gpu_instance(0, ID_1G, 3, 1)
    b.create_compute_instance(0, gi["id"], 0)
    with pytest.raises(nvml.NVMLError):
        b.destroy_gpu_instance(0, gi["id"])
    assert [(c["call"], c["result"]) for c in calls(path)] == [
        ("create_gpu_instance", "ok"), ("create_compute_instance", "ok"), ("destroy_gpu_instance", "NVML_ERROR_IN_USE")]


def test_inject_failure_fires_once_after_skips(tmp_path):
    path = str(tmp_path / "f.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3"], mig_enabled=True)
    nvml_sim.inject_failure(state, "create_gpu_instance", code=INSUFFICIENT_RESOURCES, skip=1)
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    b.create_gpu_instance(0, ID_1G, 0, 1)
    with pytest.raises(nvml.NVMLError_InsufficientResources) as e:
        b.create_gpu_instance(0, ID_1G, 1, 1)
    assert "injected" in str(e.value)
    assert b.create_gpu_instance(0, ID_1G, 1, 1)["start"] == 1
    assert nvml_sim.load_state(path)["inject_failures"] == []


def test_host_facts_from_simulator(tmp_path):
    path, b = make(tmp_path, gpus=("H100-80GB-HBM3", "L4"), mig_enabled=True)
    gi = b.create_gpu_instance(0, ID_1G_ME, 6, 1)
    b.create_compute_instance(0, gi["id"], 0)
    half = b.create_gpu_instance(0, ID_3G, 0, 4)   # GI without a CI: not a MIG device
    state = nvml_sim.load_state(path)
    nvml_sim.add_process(state, 0, 99, 512, gpu_instance_id=gi["id"], compute_instance_id=0)
    nvml_sim.save_state(path, state)
    facts = nvml.host_facts(nvml_sim.SimBackend(path))
    assert facts["backend"] == "simulator" and facts["gpu_count"] == 2
    g0, g1 = facts["gpus"]
    assert (g0["mig_capable"], g0["mig_current"], g0["mig_pending"]) == (True, True, True)
    assert (g1["mig_capable"], g1["mig_current"], g1["gpu_instances"]) == (False, None, [])
    assert g0["processes"] == [{"pid": 99, "used_memory_mib": 512, "gpu_instance_id": gi["id"], "compute_instance_id": 0}]
    assert g0["memory_used_mib"] == 512
    by_start = {x["start"]: x for x in g0["gpu_instances"]}
    assert by_start[6]["profile"] == "1g.10gb+me" and by_start[6]["resource"] == "nvidia.com/mig-1g.10gb.me"
    assert by_start[0]["id"] == half["id"] and by_start[0]["mig_device"] is False and by_start[0]["resource"] is None


def test_get_backend_is_explicit(tmp_path, monkeypatch):
    path, _unused = make(tmp_path)
    monkeypatch.delenv(nvml.SIM_ENV, raising=False)
    assert nvml.get_backend(path).kind == "simulator"
    monkeypatch.setenv("GPUOPS_NVML_SIM_STATE", path)
    assert nvml.get_backend().kind == "simulator"
    monkeypatch.delenv("GPUOPS_NVML_SIM_STATE")
    try:
        backend = nvml.get_backend()
    except nvml.NVMLError as e:
        # no GPU here: the real backend fails loudly instead of falling back to the simulator
        assert nvml.NO_DRIVER_MSG in str(e) or "nvidia-ml-py" in str(e)
    else:  # pragma: no cover - only on a host with the NVIDIA driver
        assert backend.kind == "nvml"


def test_facts_gfd_needs(tmp_path):
    """Compute capability (nvmlDeviceGetCudaComputeCapability), PCI class and DMI machine type, which
    GFD turns into gpu.compute.*, gpu.family, gpu.mode and gpu.machine; old states fall back to the model."""
    path = str(tmp_path / "h.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(["A100-SXM4-40GB", "L4", "H100-80GB-HBM3", "B200"],
                                                      machine_type="DGX H100"))
    facts = nvml.host_facts(nvml_sim.SimBackend(path))
    assert [g["cuda_compute_capability"] for g in facts["gpus"]] == [[8, 0], [8, 9], [9, 0], [10, 0]]
    assert {g["pci_class"] for g in facts["gpus"]} == {"0x030200"}
    assert facts["machine_type"] == "DGX H100"
    state = nvml_sim.load_state(path)
    for g in state["gpus"]:
        del g["cuda_compute_capability"], g["pci_class"]
    del state["machine_type"]
    nvml_sim.save_state(path, state)
    facts = nvml.host_facts(nvml_sim.SimBackend(path))
    assert facts["gpus"][2]["cuda_compute_capability"] == [9, 0] and facts["gpus"][2]["pci_class"] == "0x030200"
    assert facts["machine_type"] is None
