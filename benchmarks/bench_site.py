# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 2: the week 1 playbook (site.yml when it exists) on a private copy of the testbed.

On a fresh cluster with the testbed's shape: --check first (what would change), then the converge, then
a rerun. Wall time, changed per host, apiserver write calls (audit log) and NVML simulator writes.
Check-mode fidelity compares, host by host, the changes --check predicted with the converge's.
The verify play is skipped in check mode: it waits for GPUs that a dry run never advertises, and its
tasks never report a change, so the comparison is unaffected.
"""
from __future__ import annotations

import sys

import yaml

from common import ROOT, Instance, by_resource, by_verb, log, run_playbook


def playbook_path():
    site = ROOT / "playbooks" / "site.yml"
    return site if site.exists() else ROOT / "playbooks" / "week1_foundation.yml"


def nvml_writes(inst) -> dict:
    from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
    out = {}
    for p in sorted(inst.tb.nvml_dir.glob("*.json")):
        out[p.stem] = len(nvml_sim.mutating_calls(str(p)))
    return out


def _diff(after: dict, before: dict) -> int:
    return sum(after.get(k, 0) - before.get(k, 0) for k in after)


def measured(inst, pb, inventory, *args, check=False) -> dict:
    nv0 = nvml_writes(inst)
    marker = inst.audit_marker()
    r = run_playbook(inst, pb, inventory, *args, check=check, timeout=1800)
    writes = inst.audit_writes(marker)
    out = {k: r[k] for k in ("rc", "wall_s", "tasks", "changed", "failed")}
    out["changed_tasks"] = r["changed_tasks"]
    out["failed_tasks"] = r["failed_tasks"]
    out["changed_by_host"] = {h: v["changed"] for h, v in sorted(r["recap"].items())}
    out["writes"] = len(writes)
    out["writes_by_verb"] = by_verb(writes)
    out["writes_by_resource"] = by_resource(writes)
    out["nvml_writes"] = _diff(nvml_writes(inst), nv0)
    if r["rc"]:
        out["output_tail"] = r["output_tail"]
        log("%s failed:\n%s" % (pb.name, r["output_tail"]))
    return out


def run(quick: bool = False) -> dict:
    with open(ROOT / "testbed" / "cluster.yml", encoding="utf-8") as f:
        spec = yaml.safe_load(f)
    inst = Instance("bench-site", spec["nodes"], subdir="site")
    pb = playbook_path()
    inv = ROOT / "inventories" / "testbed"  # reads GPUOPS_TESTBED_HOME, which Instance.env() points at us
    result = {"playbook": str(pb.relative_to(ROOT)), "inventory": str(inv.relative_to(ROOT))}
    try:
        log("site: testbed up (own instance at %s)" % inst.home)
        result["testbed_up"] = inst.up(agent=True)
        log("site: --check on the fresh cluster")
        result["check"] = measured(inst, pb, inv, "--skip-tags", "verify", check=True)
        log("site: converge")
        result["first"] = measured(inst, pb, inv)
        log("site: rerun")
        result["rerun"] = measured(inst, pb, inv)
        log("site: --check after converge")
        result["check_after"] = measured(inst, pb, inv, "--skip-tags", "verify", check=True)
        pred, act = result["check"]["changed_by_host"], result["first"]["changed_by_host"]
        hosts = sorted(set(pred) | set(act))
        mism = {h: {"predicted": pred.get(h, 0), "actual": act.get(h, 0)} for h in hosts if pred.get(h, 0) != act.get(h, 0)}
        # changed_tasks already counts a check-mode stand-in as the task it stands in for (testbed/playlog.py).
        pt, at = result["check"]["changed_tasks"], result["first"]["changed_tasks"]
        task_mism = {t: {"predicted": pt.get(t, []), "actual": at.get(t, [])}
                     for t in sorted(set(pt) | set(at)) if sorted(pt.get(t, [])) != sorted(at.get(t, []))}
        result["fidelity"] = {"task_mismatches": task_mism, "predicted_changed": sum(pred.values()), "actual_changed": sum(act.values()),
                              "hosts": len(hosts), "hosts_matching": len(hosts) - len(mism), "mismatches": mism,
                              "check_writes": result["check"]["writes"], "check_nvml_writes": result["check"]["nvml_writes"]}
    finally:
        log("site: testbed down")
        inst.down()
    return result


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
