# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mig_config run in-process against the NVML simulator; every write is counted in the state file."""
from __future__ import annotations

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
from ansible_collections.gpuops.llm.plugins.modules import mig_config


class _Exit(Exception):
    pass


class _Fail(Exception):
    pass


@pytest.fixture
def run(monkeypatch):
    def exit_json(self, **kw):
        raise _Exit(kw)

    def fail_json(self, msg, **kw):
        kw["msg"] = msg
        raise _Fail(kw)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)
    monkeypatch.delenv("GPUOPS_NVML_SIM_STATE", raising=False)

    def _run(args, check=False, diff=False):
        a = dict(args)
        if check:
            a["_ansible_check_mode"] = True
        if diff:
            a["_ansible_diff"] = True
        with patch_module_args(a):
            try:
                mig_config.main()
            except _Exit as e:
                return e.args[0]
            except _Fail as e:
                out = e.args[0]
                out["failed"] = True
                return out
        raise AssertionError("module did not exit")  # pragma: no cover

    return _run


def sim(tmp_path, gpus=("H100-80GB-HBM3", "H100-80GB-HBM3"), mig_enabled=False, **kw):
    path = str(tmp_path / "host.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(list(gpus), mig_enabled=mig_enabled, **kw))
    return path


def writes(path):
    return len(nvml_sim.mutating_calls(path))


def layout(path, gpu=0):
    g = nvml_sim.load_state(path)["gpus"][gpu]
    return sorted((gi["start"], gi["size"], gi["profile_id"], gi["id"]) for gi in g["gpu_instances"])


def test_apply_then_idempotent(run, tmp_path):
    path = sim(tmp_path)
    args = {"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "1g.10gb": 4}}
    r = run(args)
    assert r.get("failed") is None and r["changed"] is True
    # 2 mode changes + 2 GPUs x 5 instances x (GI + CI)
    assert writes(path) == 2 + 2 * 5 * 2
    g0 = r["gpus"][0]
    assert [(d["profile"], d["start"]) for d in g0["mig_devices"]] == \
           [("1g.10gb", 0), ("1g.10gb", 1), ("1g.10gb", 2), ("1g.10gb", 3), ("3g.40gb", 4)]
    assert r["resources"] == {"nvidia.com/mig-1g.10gb": 8, "nvidia.com/mig-3g.40gb": 2}
    assert all(d["gi_id"] is not None and d["ci_id"] is not None for d in g0["mig_devices"])
    before = writes(path)
    r2 = run(args)
    assert r2["changed"] is False and all(not g["changed"] for g in r2["gpus"])
    assert writes(path) == before                      # zero writes on the second run
    assert r2["gpus"][0]["mig_devices"] == g0["mig_devices"]


def test_keep_in_place_changes_only_the_difference(run, tmp_path):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3",))
    run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "1g.10gb": 4}})
    old = {(s, size): gid for s, size, _unused, gid in layout(path)}
    before = writes(path)
    r = run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}})
    g = r["gpus"][0]
    assert r["changed"] is True
    assert len(g["destroyed"]) == 2 and len(g["created"]) == 1 and len(g["kept"]) == 3
    # every destroyed GI had one CI: CI + GI each; every created GI gets a GI + a CI
    assert writes(path) - before == 2 * len(g["destroyed"]) + 2 * len(g["created"])
    new = {(s, size): gid for s, size, _unused, gid in layout(path)}
    for k in g["kept"]:
        assert new[(k["start"], k["size"])] == old[(k["start"], k["size"])]   # ids untouched
    assert {(k["profile"], k["start"]) for k in g["kept"]} >= {("3g.40gb", 4)}


def test_check_mode_writes_nothing_and_predicts(run, tmp_path):
    path = sim(tmp_path)
    args = {"nvml_sim_state": path, "preset": "all-balanced"}
    predicted = run(args, check=True, diff=True)
    assert writes(path) == 0
    assert predicted["changed"] is True
    real = run(args, diff=True)
    assert real["changed"] is True

    def strip(devs):
        return [(d["profile"], d["start"], d["size"], d["resource"]) for d in devs]

    for p, a in zip(predicted["gpus"], real["gpus"]):
        assert strip(p["mig_devices"]) == strip(a["mig_devices"])
        assert [(c["profile"], c["start"]) for c in p["created"]] == [(c["profile"], c["start"]) for c in a["created"]]
    assert predicted["resources"] == real["resources"]
    assert predicted["diff"]["after"] == real["diff"]["after"]
    assert real["diff"]["before"]["gpu0"] == {"mig_enabled": False, "mig_pending": False, "layout": []}
    n = writes(path)
    again = run(args, check=True)
    assert again["changed"] is False and writes(path) == n


def test_diff_only_in_diff_mode(run, tmp_path):
    path = sim(tmp_path)
    assert "diff" not in run({"nvml_sim_state": path, "preset": "all-enabled"})


def _add_process(path, gpu, pid, gi_start=None):
    state = nvml_sim.load_state(path)
    gi_id = None
    if gi_start is not None:
        gi_id = next(gi["id"] for gi in state["gpus"][gpu]["gpu_instances"] if gi["start"] == gi_start)
    nvml_sim.add_process(state, gpu, pid, 1000, gpu_instance_id=gi_id, compute_instance_id=0 if gi_id else None)
    nvml_sim.save_state(path, state)


def test_refuses_gpus_with_processes(run, tmp_path):
    path = sim(tmp_path, mig_enabled=True)
    _add_process(path, 1, 4242)
    r = run({"nvml_sim_state": path, "preset": "all-1g.10gb"})
    assert r["failed"] and r["reason"] == "in_use"
    assert "4242" in r["msg"] and "GPU 1" in r["msg"] and "force" in r["msg"]
    assert writes(path) == 0
    r = run({"nvml_sim_state": path, "preset": "all-1g.10gb"}, check=True)   # check mode predicts the refusal
    assert r["failed"] and writes(path) == 0
    # a planning pass before a drain: check mode with force reports the processes, writes nothing
    r = run({"nvml_sim_state": path, "preset": "all-1g.10gb", "force": True}, check=True)
    assert r["changed"] is True and [p["pid"] for p in r["gpus"][1]["processes"]] == [4242]
    assert writes(path) == 0


@pytest.mark.parametrize("busy_start", [0, 4])
def test_force_keeps_the_busy_instance_and_changes_the_rest(run, tmp_path, busy_start):
    # {3g: 1, 1g: 2} fits with the 3g at 0 or at 4: the one with a job on it must stay
    path = sim(tmp_path, gpus=("H100-80GB-HBM3",))
    run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 2}})
    _add_process(path, 0, 31337, gi_start=busy_start)
    r = run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "1g.10gb": 2}, "force": True})
    assert r.get("failed") is None, r
    assert [(k["profile"], k["start"]) for k in r["gpus"][0]["kept"]] == [("3g.40gb", busy_start)]
    assert [d["profile"] for d in r["gpus"][0]["destroyed"]] == ["3g.40gb"]


def test_force_with_a_busy_instance_to_destroy_rolls_back(run, tmp_path):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3",))
    run({"nvml_sim_state": path, "mig_devices": {"1g.10gb": 7}})
    _add_process(path, 0, 777, gi_start=5)
    before = layout(path)
    # 3g + 4x1g forces the 3g onto slots 4-7, so the busy 1g at 5 has to go: NVML refuses, we roll back
    r = run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "1g.10gb": 4}, "force": True})
    assert r["failed"] and r["restored"] is True
    assert "777" in r["msg"] and "restored" in r["msg"]
    after = layout(path)
    assert [(s, size, pid) for s, size, pid, _unused in after] == [(s, size, pid) for s, size, pid, _unused in before]


def test_rollback_on_injected_failure(run, tmp_path):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3",))
    run({"nvml_sim_state": path, "mig_devices": {"1g.10gb": 7}})
    before = [(s, size, pid) for s, size, pid, _unused in layout(path)]
    state = nvml_sim.load_state(path)
    nvml_sim.inject_failure(state, "create_gpu_instance", code=999, skip=0)   # the first create fails
    nvml_sim.save_state(path, state)
    r = run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "1g.10gb": 3}})
    assert r["failed"] and r["restored"] is True and "previous layout is restored" in r["msg"]
    assert [(s, size, pid) for s, size, pid, _unused in layout(path)] == before
    g = nvml_sim.load_state(path)["gpus"][0]
    assert all(len(gi["compute_instances"]) == 1 for gi in g["gpu_instances"])   # CIs came back too
    # and a clean rerun still works
    r = run({"nvml_sim_state": path, "mig_devices": {"3g.40gb": 1, "1g.10gb": 3}})
    assert r.get("failed") is None and r["changed"] is True


def test_failure_on_second_gpu_restores_the_first(run, tmp_path):
    path = sim(tmp_path)
    state = nvml_sim.load_state(path)
    nvml_sim.inject_failure(state, "create_compute_instance", code=23, gpu=1)
    nvml_sim.save_state(path, state)
    r = run({"nvml_sim_state": path, "mig_devices": {"7g.80gb": 1}})
    assert r["failed"] and r["restored"] is True and "GPUs changed earlier in this run (0) were restored" in r["msg"]
    st = nvml_sim.load_state(path)
    assert [g["gpu_instances"] for g in st["gpus"]] == [[], []]
    assert [g["mig_current"] for g in st["gpus"]] == [0, 0]


@pytest.mark.parametrize("args,needle,reason", [
    ({"mig_devices": {"3g.20gb": 1}}, "exists on: A100-SXM4-40GB", "unknown_profile"),   # other GPU's profile
    ({"mig_devices": {"1g.10gb": 8}}, "at most 7", "over_count"),                       # over count
    ({"mig_devices": {"3g.40gb": 2, "1g.10gb": 1}}, "no room", "no_room"),              # unplaceable
    ({"mig_devices": {"1g.10gb": 1}, "gpus": [5]}, "index 5 out of range", "config"),    # device index
    ({"preset": "all-9g.1gb"}, "unknown preset", "config"),
    ({"mig_devices": {"1g10gb": 1}}, "not a MIG profile name", "syntax"),
])
def test_bad_input_fails_with_zero_writes(run, tmp_path, args, needle, reason):
    path = sim(tmp_path)
    r = run(dict(args, nvml_sim_state=path))
    assert r["failed"] and needle in r["msg"], r["msg"]
    assert r["reason"] == reason
    assert writes(path) == 0


def test_mig_on_a_non_mig_gpu(run, tmp_path):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3", "L4"))
    r = run({"nvml_sim_state": path, "mig_devices": {"1g.10gb": 7}})
    assert r["failed"] and "GPU 1 (NVIDIA L4) does not support MIG" in r["msg"] and r["reason"] == "not_mig_capable"
    assert writes(path) == 0   # GPU 0 was valid, but nothing is half-applied


CONFIG = """version: v1
mig-configs:
  split:
    - devices: [0]
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
    - devices: [1]
      mig-enabled: false
  by-model:
    - devices: all
      device-filter: ["0x233010DE"]
      mig-enabled: true
      mig-devices:
        "3g.40gb": 2
    - devices: all
      device-filter: "0x27B810DE"
      mig-enabled: false
  too-far:
    - devices: [0, 3]
      mig-enabled: false
"""


def test_config_file(run, tmp_path):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3", "H100-80GB-HBM3", "L4"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(CONFIG)
    r = run({"nvml_sim_state": path, "config_file": str(cfg), "config_name": "split"})
    assert [g["index"] for g in r["gpus"]] == [0, 1]
    assert r["gpus"][0]["source"].endswith("config 'split' entry 1")
    assert len(r["gpus"][0]["mig_devices"]) == 7 and r["gpus"][1]["changed"] is False
    # the L4 is not named by 'split' but still counts towards the node's resources
    assert r["resources"] == {"nvidia.com/mig-1g.10gb": 7, "nvidia.com/gpu": 2}
    r = run({"nvml_sim_state": path, "config_file": str(cfg), "config_name": "by-model"})
    assert [g["index"] for g in r["gpus"]] == [0, 1, 2]
    assert r["resources"] == {"nvidia.com/mig-3g.40gb": 4, "nvidia.com/gpu": 1}


@pytest.mark.parametrize("name,text,needle", [
    ("nope", CONFIG, "unknown config name 'nope'"),
    ("too-far", CONFIG, "device index 3 out of range"),
    ("split", "version: v1\nmig-configs: [oops\n", "not valid YAML"),
    ("split", CONFIG.replace("mig-enabled: false\n  by-model", "mig-enabled: false\n      reboot: true\n  by-model"),
     "unknown field(s) reboot"),
    ("split", CONFIG.replace("version: v1", "version: v2"), "'version' must be 'v1'"),
])
def test_bad_config_files_fail_with_zero_writes(run, tmp_path, name, text, needle):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3", "H100-80GB-HBM3", "L4"))
    cfg = tmp_path / "config.yaml"
    cfg.write_text(text)
    r = run({"nvml_sim_state": path, "config_file": str(cfg), "config_name": name})
    assert r["failed"] and needle in r["msg"], r["msg"]
    assert writes(path) == 0


def test_inline_config_and_required_name(run, tmp_path):
    path = sim(tmp_path)
    doc = {"version": "v1", "mig-configs": {"x": [{"devices": "all", "mig-enabled": True, "mig-devices": {"7g.80gb": 1}}]}}
    r = run({"nvml_sim_state": path, "config": doc, "config_name": "x"})
    assert r["resources"] == {"nvidia.com/mig-7g.80gb": 2}
    r = run({"nvml_sim_state": path, "config": doc})
    assert r["failed"] and "config_name" in r["msg"]


def test_ampere_enable_is_pending_until_reset(run, tmp_path):
    path = sim(tmp_path, gpus=("A100-SXM4-40GB",))
    args = {"nvml_sim_state": path, "preset": "all-balanced"}
    p = run(args, check=True)
    assert p["reset_required"] is True and p["gpus"][0]["mig_devices"] == []
    r = run(args)
    assert r["changed"] is True and r["reset_required"] is True and r["reboot_required"] is False
    assert r["gpus"][0]["mig_enabled"] is False and r["gpus"][0]["mig_pending"] is True
    assert r["gpus"][0]["warnings"] and "pending" in r["gpus"][0]["warnings"][0]
    again = run(args)
    assert again["changed"] is False and again["reset_required"] is True
    nvml_sim.SimBackend(path).reset_gpu(0)
    r = run(args)
    assert r["changed"] is True and r["reset_required"] is False
    assert sorted(d["profile"] for d in r["gpus"][0]["mig_devices"]) == ["1g.5gb", "1g.5gb", "2g.10gb", "3g.20gb"]


def test_passthrough_vm_reports_reboot_required(run, tmp_path):
    path = str(tmp_path / "vm.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3"])
    state["passthrough_vm"] = True
    nvml_sim.save_state(path, state)
    r = run({"nvml_sim_state": path, "preset": "all-enabled"})
    assert r["reboot_required"] is True and r["gpus"][0]["activation_status"] == "NVML_ERROR_RESET_REQUIRED"


def test_disable_destroys_instances_then_turns_mig_off(run, tmp_path):
    path = sim(tmp_path, gpus=("H100-80GB-HBM3",))
    run({"nvml_sim_state": path, "preset": "all-balanced"})
    r = run({"nvml_sim_state": path, "preset": "all-disabled"}, diff=True)
    assert r["changed"] is True and len(r["gpus"][0]["destroyed"]) == 4
    assert r["resources"] == {"nvidia.com/gpu": 1}
    assert r["diff"]["after"]["gpu0"] == {"mig_enabled": False, "mig_pending": False, "layout": []}
    st = nvml_sim.load_state(path)["gpus"][0]
    assert (st["mig_current"], st["gpu_instances"]) == (0, [])
    calls = [c["call"] for c in nvml_sim.mutating_calls(path)][-9:]
    assert calls[-1] == "set_mig_mode" and calls.count("destroy_compute_instance") == 4


def test_no_permission_is_reported(run, tmp_path):
    path = str(tmp_path / "user.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3"])
    state["root"] = False
    nvml_sim.save_state(path, state)
    r = run({"nvml_sim_state": path, "preset": "all-enabled"})
    assert r["failed"] and "root" in r["msg"] and "Nothing had been changed" in r["msg"]
