# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""capacity_plan in-process: the plan, files written only when they differ, check and diff mode."""
from __future__ import annotations

import os

import pytest

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gpuops.llm.plugins.modules import capacity_plan


class _Done(Exception):
    pass


def _exit(self, **kw):
    raise _Done(kw)


def _fail(self, msg, **kw):
    raise _Done(dict(kw, msg=msg, failed=True))


@pytest.fixture
def run(monkeypatch):
    monkeypatch.setattr(basic.AnsibleModule, "exit_json", _exit)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", _fail)

    def _run(args, check=False, diff=False):
        a = dict(args)
        if check:
            a["_ansible_check_mode"] = True
        if diff:
            a["_ansible_diff"] = True
        with patch_module_args(a):
            with pytest.raises(_Done) as e:
                capacity_plan.main()
        return e.value.args[0]

    return _run


def twelve(tmp_path=None):
    args = {"models": [{"name": "scorer-%02d" % i, "parameters_billion": 0.5, "max_model_len": 2048,
                        "peak_concurrency": 2} for i in range(1, 13)],
            "gpu_models": ["A100-40GB"], "title": "12 scoring services"}
    if tmp_path is not None:
        args["report_path"] = str(tmp_path / "plan.md")
        args["diagram_path"] = str(tmp_path / "img" / "plan.png")
        (tmp_path / "img").mkdir(exist_ok=True)
    return args


def test_plan_without_files_changes_nothing(run):
    r = run(twelve())
    assert r["changed"] is False and r["files"] == {}
    assert r["summary"]["gpus"] == 2 and r["summary"]["naive_gpus"] == 12     # facts: 7 x 1g.5gb per A100-40GB
    assert r["inventory"]["vllm_service_models"][0]["mig_profile"] == "1g.5gb"


def test_files_written_once_then_idempotent(run, tmp_path):
    args = twelve(tmp_path)
    first = run(args, check=True)
    assert first["changed"] is True and first["files"]["report"]["changed"] is True
    assert not os.path.exists(args["report_path"]) and not os.path.exists(args["diagram_path"])   # check mode

    r1 = run(args)
    assert r1["changed"] is True
    md = open(args["report_path"], encoding="utf-8").read()
    assert "![GPU layout](img/plan.png)" in md                 # relative link from the report's directory
    assert open(args["diagram_path"], "rb").read()[:8] == b"\x89PNG\r\n\x1a\n"
    mtime = os.stat(args["report_path"]).st_mtime_ns

    r2 = run(args)
    assert r2["changed"] is False and not any(f["changed"] for f in r2["files"].values())
    assert os.stat(args["report_path"]).st_mtime_ns == mtime
    assert run(args, check=True)["changed"] is False


def test_without_matplotlib_the_report_comes_and_says_how_to_get_the_picture(run, tmp_path, monkeypatch):
    from ansible_collections.gpuops.llm.plugins.module_utils import plan_diagram
    monkeypatch.setattr(plan_diagram, "available", lambda: False)
    warned = []
    monkeypatch.setattr(basic.AnsibleModule, "warn", lambda self, msg: warned.append(msg))
    args = twelve(tmp_path)
    r = run(args)
    assert r["changed"] is True and r["files"]["report"]["changed"] is True
    assert r["files"]["diagram"] == {"path": args["diagram_path"], "changed": False, "written": False,
                                     "reason": "matplotlib is not installed (pip install matplotlib on the controller)"}
    assert not os.path.exists(args["diagram_path"])
    md = open(args["report_path"], encoding="utf-8").read()
    assert "![GPU layout]" not in md and "pip install matplotlib" in md
    assert any("diagram_path" in w and "matplotlib" in w for w in warned), warned
    assert run(args)["changed"] is False


def test_changed_input_rewrites_with_diff(run, tmp_path):
    args = twelve(tmp_path)
    run(args)
    args["gpus"] = [{"name": "A100-40GB", "price_per_hour": 1.5, "price_source": "our contract"}]
    pred = run(args, check=True, diff=True)
    assert pred["changed"] is True
    report_diff = [d for d in pred["diff"] if d["after_header"].endswith(".md")][0]
    assert "our contract" in report_diff["after"] and "our contract" not in report_diff["before"]
    assert "our contract" not in open(args["report_path"], encoding="utf-8").read()   # check mode wrote nothing
    r = run(args)
    assert r["changed"] is True and "our contract" in open(args["report_path"], encoding="utf-8").read()
    assert r["costs"]["static"]["per_hour"] == pytest.approx(2 * 1.5)


def test_missing_directory_fails_before_anything(run, tmp_path):
    args = twelve()
    args["report_path"] = str(tmp_path / "nope" / "plan.md")
    r = run(args)
    assert r["failed"] and r["field"] == "report_path" and "does not exist" in r["msg"]


def test_planner_error_is_reported_with_the_field(run):
    args = twelve()
    args["models"].append({"name": "giant", "parameters_billion": 405, "max_model_len": 8192})
    r = run(args)
    assert r["failed"] and r["field"] == "models" and "'giant'" in r["msg"]
    bad = twelve()
    bad["traffic_profile"] = [1.0] * 23 + [-1.0]
    r = run(bad)
    assert r["failed"] and r["field"] == "traffic_profile" and "negative" in r["msg"]


def test_argument_spec_rejects_unknown_choice(run):
    args = twelve()
    args["models"][0]["latency_class"] = "realtime"
    r = run(args)
    assert r["failed"] and "latency_class" in r["msg"]
