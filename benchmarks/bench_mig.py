# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 3: the MIG placement solver over every layout of a 7-slice GPU, and NVML writes per change.

Solver: every profile multiset of A100-40GB, H100-80GB and H200 (mig.py's tables) within each profile's
instance count and the GPU's 8 memory slices is solved; each solve is timed. "Placeable" layouts get
explicit placements; the rest are rejected by the search (compute slices or no non-overlapping placement).

NVML writes, on a simulated 8-GPU H100 host (nvml_sim), each mutating call recorded by the simulator:
- gpuops.llm (nvml.configure_mig): change one instance on one GPU;
- mig-parted's approach (facts: "if the config differs, destroy everything, then recreate"): destroy every
  compute and GPU instance, then create every one again, run through the same simulator. Its retries of
  failed placements are not counted, so this is a lower bound for mig-parted.
"""
from __future__ import annotations

import itertools
import os
import statistics
import tempfile
import time

# Imported for its side effect: it puts the collection on sys.path.
import common  # noqa: F401  pylint: disable=unused-import

MODELS = ("A100-SXM4-40GB", "H100-80GB-HBM3", "H200")


def layouts(model) -> list:
    """Every profile -> count mapping within each profile's instance count and the GPU's memory slices
    (the checks validate_layout makes without a search); compute slices and placements are the solver's."""
    profs = list(model.profiles)
    ranges = [range(0, p.instance_count + 1) for p in profs]
    out = []
    for counts in itertools.product(*ranges):
        if not any(counts):
            continue
        if sum(c * p.size for c, p in zip(counts, profs)) > model.memory_slices:
            continue
        out.append({p.name: c for c, p in zip(counts, profs) if c})
    return out


def _pct(values, q):
    s = sorted(values)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def bench_solver() -> list:
    from ansible_collections.gpuops.llm.plugins.module_utils import mig
    rows = []
    for key in MODELS:
        model = mig.resolve_model(key)
        times, placeable, rejected_search, rejected_rules = [], 0, 0, 0
        for lay in layouts(model):
            t0 = time.perf_counter()
            try:
                placements = mig.solve(model, lay)
                placeable += 1
                assert len(list(placements)) == sum(lay.values())
            except mig.MigError as e:
                if e.reason == "no_room":
                    rejected_search += 1
                else:
                    rejected_rules += 1  # e.g. two +me instances (one set of media engines)
            times.append((time.perf_counter() - t0) * 1e6)
        rows.append({"gpu": model.key, "layouts": len(times), "placeable": placeable,
                     "rejected_by_search": rejected_search, "rejected_by_rules": rejected_rules,
                     "median_us": round(statistics.median(times), 1), "p99_us": round(_pct(times, 0.99), 1),
                     "max_us": round(max(times), 1), "total_ms": round(sum(times) / 1000, 1)})
    return rows


def _calls_by(calls) -> dict:
    out: dict = {}
    for c in calls:
        out[c["call"]] = out.get(c["call"], 0) + 1
    return dict(sorted(out.items()))


def _scenario(gpu: str, before: dict, after: dict) -> dict:
    """One GPU of an 8-GPU host goes from ``before`` to ``after``; the other seven keep ``before``."""
    from ansible_collections.gpuops.llm.plugins.module_utils import mig, nvml, nvml_sim

    def desired(layout_gpu0):
        def fn(facts):
            out = mig.desired_state(facts, mig_devices=before)
            out.update(mig.desired_state(facts, mig_devices=layout_gpu0, gpus=[0]))
            return out
        return fn

    def fresh(path):
        nvml_sim.save_state(path, nvml_sim.new_host_state([gpu] * 8, mig_enabled=True))
        with nvml.get_backend(path) as be:
            nvml.configure_mig(be, desired(before))
        nvml_sim.clear_calls(path)

    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "host.json")
        fresh(path)
        # gpuops.llm: the code the mig_config module runs.
        t0 = time.perf_counter()
        with nvml.get_backend(path) as be:
            res = nvml.configure_mig(be, desired(after))
        ours_s = time.perf_counter() - t0
        ours = nvml_sim.mutating_calls(path)
        kept = sum(len(g["kept"]) for g in res["gpus"] if g["index"] == 0)
        nvml_sim.clear_calls(path)
        with nvml.get_backend(path) as be:
            nvml.configure_mig(be, desired(after))
        rerun = nvml_sim.mutating_calls(path)

        # mig-parted's approach from the same starting state: destroy every CI and GI, create all again.
        fresh(path)
        be = nvml_sim.SimBackend(path)
        per_gpu = {}
        for i in range(be.device_count()):
            n0 = len(be.state["calls"])
            for gi in be.gpu_instances(i):
                for ci in be.compute_instances(i, gi["id"]):
                    be.destroy_compute_instance(i, gi["id"], ci["id"])
                be.destroy_gpu_instance(i, gi["id"])
            for pl in mig.solve(gpu, after if i == 0 else before):
                prof = mig.resolve_model(gpu).profile(pl["profile"])
                new = be.create_gpu_instance(i, prof.id, pl["start"], pl["size"])
                ci_prof = next(p for p in be.compute_instance_profiles(i, new["id"]) if p["slices"] == prof.slices)
                be.create_compute_instance(i, new["id"], ci_prof["id"])
            per_gpu[i] = len(be.state["calls"]) - n0
        parted = nvml_sim.mutating_calls(path)
    return {
        "change": "GPU 0: %s -> %s (GPUs 1-7 keep %s)" % (mig._fmt(before), mig._fmt(after), mig._fmt(before)),
        "gpuops_calls": len(ours), "gpuops_by_call": _calls_by(ours), "gpuops_kept_instances": kept,
        "gpuops_wall_ms": round(ours_s * 1000, 1), "gpuops_rerun_calls": len(rerun),
        "recreate_all_calls": len(parted), "recreate_all_by_call": _calls_by(parted),
        "recreate_changed_gpu_calls": per_gpu[0],
        "ratio_all": round(len(parted) / max(len(ours), 1), 1),
        "ratio_gpu": round(per_gpu[0] / max(len(ours), 1), 1),
        "failed_calls": sum(1 for c in parted + ours if c.get("result") != "ok"),
    }


def bench_nvml_writes() -> list:
    gpu = "H100-80GB-HBM3"
    return [
        # One instance added where there is room: everything else stays.
        dict(_scenario(gpu, {"3g.40gb": 1, "2g.20gb": 1}, {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 1}), gpu=gpu),
        # One instance removed.
        dict(_scenario(gpu, {"3g.40gb": 1, "1g.10gb": 3}, {"3g.40gb": 1, "1g.10gb": 2}), gpu=gpu),
        # One instance more, but 1g cannot start at slice 7, so the 3g must move: the whole GPU is re-laid.
        dict(_scenario(gpu, {"3g.40gb": 1, "1g.10gb": 3}, {"3g.40gb": 1, "1g.10gb": 4}), gpu=gpu),
    ]


def run(quick: bool = False) -> dict:
    return {"solver": bench_solver(), "nvml_writes": bench_nvml_writes()}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=1))
