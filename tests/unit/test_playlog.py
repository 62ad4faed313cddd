# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""testbed/playlog.py: the reader of ansible-playbook output that the check-mode fidelity test and
the site benchmark compare runs with. The sample is the default callback's format."""
from __future__ import annotations

import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed"))

import playlog  # noqa: E402

OUTPUT = """
PLAY [Week 4] ******************************************************************

TASK [gpuops.llm.observability : Apply the alert rules (check mode, namespace not created yet)] ***
changed: [localhost]

TASK [gpuops.llm.mig : Apply the MIG layout] ***********************************
ok: [mig-h100-0]
changed: [mig-h100-1] => (item=gpu 0)
changed: [mig-h100-1] => (item=gpu 1)
changed: [train-a100-0 -> localhost]

TASK [gpuops.llm.vllm_service : Fail on what the cluster lacks] ****************
fatal: [localhost]: FAILED! => {"changed": false, "msg": "no node"}

PLAY RECAP *********************************************************************
localhost                  : ok=3    changed=1    unreachable=0    failed=1    skipped=2    rescued=0    ignored=0
mig-h100-1                 : ok=1    changed=1    unreachable=0    failed=0    skipped=0    rescued=0    ignored=0
"""


def test_changed_tasks_fold_stand_ins_loops_and_delegation():
    assert playlog.changed_tasks(OUTPUT) == {
        "gpuops.llm.observability : Apply the alert rules": ["localhost"],
        "gpuops.llm.mig : Apply the MIG layout": ["mig-h100-1", "train-a100-0"],
    }


def test_recap_and_failed_tasks():
    recap = playlog.recap(OUTPUT)
    assert recap["localhost"] == {"ok": 3, "changed": 1, "unreachable": 0, "failed": 1, "skipped": 2,
                                  "rescued": 0, "ignored": 0}
    assert recap["mig-h100-1"]["changed"] == 1 and len(recap) == 2
    [failed] = playlog.failed_tasks(OUTPUT)
    assert failed["task"] == "gpuops.llm.vllm_service : Fail on what the cluster lacks"
    assert failed["line"].startswith("fatal: [localhost]")
