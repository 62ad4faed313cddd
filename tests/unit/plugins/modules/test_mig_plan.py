# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mig_plan in-process: placements and failures as the facts describe them."""
from __future__ import annotations

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gpuops.llm.plugins.modules import mig_plan


class _Done(Exception):
    pass


@pytest.fixture
def run(monkeypatch):
    def exit_json(self, **kw):
        raise _Done(kw)

    def fail_json(self, msg, **kw):
        raise _Done(dict(kw, msg=msg, failed=True))

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)

    def _run(args):
        with patch_module_args(args):
            with pytest.raises(_Done) as e:
                mig_plan.main()
        return e.value.args[0]

    return _run


def test_three_g_plus_four_one_g_on_a100_40gb(run):
    r = run({"gpu_model": "NVIDIA A100-SXM4-40GB", "mig_devices": {"3g.20gb": 1, "1g.5gb": 4}})
    assert r["changed"] is False and r["gpu_model"] == "A100-SXM4-40GB"
    assert r["placements"] == [{"profile": "1g.5gb", "start": s, "size": 1} for s in range(4)] + \
                              [{"profile": "3g.20gb", "start": 4, "size": 4}]
    assert r["resources"] == {"nvidia.com/mig-1g.5gb": 4, "nvidia.com/mig-3g.20gb": 1}


def test_same_name_different_size(run):
    # 1g.10gb is a 2-slice profile on A100-40GB and a 1-slice one on H100-80GB (issue 3)
    a = run({"gpu_model": "NVIDIA A100-SXM4-40GB", "mig_devices": {"1g.10gb": 1}})
    h = run({"gpu_model": "NVIDIA H100 80GB HBM3", "mig_devices": {"1g.10gb": 1}})
    assert a["placements"][0]["size"] == 2 and h["placements"][0]["size"] == 1


def test_gfd_label_and_preset(run):
    r = run({"gpu_model": "NVIDIA-H200", "preset": "all-balanced"})
    assert r["mig_devices"] == {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1}
    assert len(r["placements"]) == 4
    assert all(p["unconfirmed"] for p in r["profiles"])   # ⚑ H200 values are unconfirmed
    r = run({"gpu_model": "H100 80GB HBM3", "preset": "all-disabled"})
    assert r["mig_enabled"] is False and r["placements"] == [] and r["resources"] == {"nvidia.com/gpu": 1}


@pytest.mark.parametrize("args,reason,profile,needle", [
    ({"gpu_model": "NVIDIA H100 80GB HBM3", "mig_devices": {"1g.5gb": 1}}, "unknown_profile", "1g.5gb", "A100-SXM4-40GB"),
    ({"gpu_model": "NVIDIA H100 80GB HBM3", "mig_devices": {"2g.20gb": 4}}, "over_count", "2g.20gb", "at most 3"),
    ({"gpu_model": "NVIDIA H100 80GB HBM3", "mig_devices": {"4g.40gb": 1, "3g.40gb": 1, "1g.10gb": 1}},
     "no_room", "4g.40gb", "needs 9 memory slices"),
    # 8 slices in total, but a 2g can start only at 0, 2 or 4 and the 4g holds 0-3
    ({"gpu_model": "NVIDIA H100 80GB HBM3", "mig_devices": {"4g.40gb": 1, "2g.20gb": 2}},
     "no_room", "2g.20gb", "cannot be placed next to"),
    ({"gpu_model": "NVIDIA L4", "mig_devices": {"1g.10gb": 1}}, "not_mig_capable", "1g.10gb", "does not support MIG"),
    ({"gpu_model": "Voodoo 5", "mig_devices": {}}, "unknown_gpu", None, "unknown GPU model"),
])
def test_failures_name_profile_and_reason(run, args, reason, profile, needle):
    r = run(args)
    assert r["failed"] and r["reason"] == reason and r["profile"] == profile and needle in r["msg"]


def test_options_are_exclusive(run):
    r = run({"gpu_model": "H200", "preset": "all-enabled", "mig_devices": {}})
    assert r["failed"] and "mutually exclusive" in r["msg"]
