# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpu_facts in-process against the simulator, and its failure without a driver."""
from __future__ import annotations

import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gpuops.llm.plugins.module_utils import nvml, nvml_sim
from ansible_collections.gpuops.llm.plugins.modules import gpu_facts


class _Done(Exception):
    pass


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", lambda self, **kw: (_unused for _unused in ()).throw(_Done(kw)))
    monkeypatch.setattr(basic.AnsibleModule, "fail_json",
                        lambda self, msg, **kw: (_unused for _unused in ()).throw(_Done(dict(kw, msg=msg, failed=True))))
    monkeypatch.delenv("GPUOPS_NVML_SIM_STATE", raising=False)

    def _run(args, check=False):
        a = dict(args, _ansible_check_mode=True) if check else dict(args)
        with patch_module_args(a):
            with pytest.raises(_Done) as e:
                gpu_facts.main()
        return e.value.args[0]

    return _run


def test_facts_from_simulator(run, tmp_path):
    path = str(tmp_path / "h.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(["NVIDIA H200", "NVIDIA L4"], mig_enabled=True))
    b = nvml_sim.SimBackend(path)
    gi = b.create_gpu_instance(0, 9, 4, 4)     # ⚑ H200 3g.71gb id presumed 9 (H100's)
    b.create_compute_instance(0, gi["id"], 2)
    n = len(nvml_sim.mutating_calls(path))
    r = run({"nvml_sim_state": path}, check=True)
    assert r["changed"] is False and r["backend"] == "simulator" and r["gpu_count"] == 2
    g0 = r["gpus"][0]
    assert (g0["name"], g0["model"], g0["mig_current"]) == ("NVIDIA H200", "H200", True)
    assert [(x["profile"], x["start"], x["resource"]) for x in g0["gpu_instances"]] == [("3g.71gb", 4, "nvidia.com/mig-3g.71gb")]
    assert r["gpus"][1]["mig_capable"] is False
    assert len(nvml_sim.mutating_calls(path)) == n     # read-only


def test_env_var_selects_the_simulator(run, tmp_path, monkeypatch):
    path = str(tmp_path / "h.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(["A30"]))
    monkeypatch.setenv("GPUOPS_NVML_SIM_STATE", path)
    r = run({})
    assert r["backend"] == "simulator" and r["gpus"][0]["name"] == "NVIDIA A30"


def test_bad_state_file(run, tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text("[]")
    r = run({"nvml_sim_state": str(bad)})
    assert r["failed"] and "new_host_state" in r["msg"]


@pytest.mark.skipif(os.path.exists("/dev/nvidiactl"), reason="this host has an NVIDIA driver")
def test_no_driver_fails_clearly_without_falling_back(run):
    r = run({})
    assert r["failed"] and nvml.NO_DRIVER_MSG in r["msg"]
    assert r["nvml_error"] in ("NVML_ERROR_LIBRARY_NOT_FOUND", "NVML_ERROR_DRIVER_NOT_LOADED")
