# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 5: the portfolio planner (planner.plan), cost per portfolio: the plan (CP-SAT over the
planner's slot options, heuristic as its first solution) against the solver's proven bound, the
heuristic alone, and one whole GPU per replica (naive), measured in the same run.

Portfolios: the example inventory's (inventories/example/group_vars/all/portfolio.yml), two built
from the real model configs in benchmarks/data/vllm_measurements.yml, the seed article's "12
scoring services on 2 A100s", and random portfolios of 10-25 services over pairs of GPU types
(with and without time-slicing; H200 comes in 8-GPU nodes). Prices are the planner's defaults,
which it documents as assumptions; the ratios matter more than the dollars.
"""
from __future__ import annotations

import pathlib
import random
import time

import yaml

# Imported for its side effect: it puts the collection on sys.path.
import common  # noqa: F401  pylint: disable=unused-import

ROOT = pathlib.Path(__file__).resolve().parents[1]
PLANNER = ROOT / "plugins" / "module_utils" / "planner.py"
DAY = [1, 1, 1, 1, 1, 2, 4, 7, 9, 10, 10, 10, 9, 10, 10, 10, 9, 8, 6, 4, 3, 2, 1, 1]


def portfolios() -> list:
    ex = yaml.safe_load((ROOT / "inventories" / "example" / "group_vars" / "all" / "portfolio.yml").read_text())
    cfg = yaml.safe_load((ROOT / "benchmarks" / "data" / "vllm_measurements.yml").read_text())["models"]

    def m(name, key, **kw):
        return dict({"name": name, "config": cfg[key]}, **kw)

    return [
        {"name": "example (5 models, A100-80GB + L40S)", "models": ex["capacity_plan_models"],
         "gpu_models": ex["capacity_plan_gpu_models"], "allow_mig": ex["capacity_plan_allow_mig"],
         "allow_sharing": ex["capacity_plan_allow_sharing"], "traffic_profile": ex["capacity_plan_traffic_profile"]},
        {"name": "small models (4 x 0.6B-8B, H100-80GB)", "gpu_models": ["H100-80GB"], "allow_mig": True,
         "traffic_profile": DAY, "models": [
             m("qwen-tiny", "qwen3-0.6b", max_model_len=4096, peak_concurrency=8),
             m("qwen-7b", "qwen2.5-7b", max_model_len=8192, peak_concurrency=8),
             m("llama-8b", "llama-3.1-8b", max_model_len=8192, peak_concurrency=16, latency_class="interactive"),
             m("mistral-7b", "mistral-7b-v0.3", max_model_len=8192, peak_concurrency=4, latency_class="batch")]},
        {"name": "mixed sizes (8B to 70B AWQ, A100-80GB + H100-80GB)", "gpu_models": ["A100-80GB", "H100-80GB"],
         "allow_mig": True, "traffic_profile": DAY, "models": [
             m("llama-70b", "llama-3-70b", quantization="awq", max_model_len=8192, peak_concurrency=32,
               latency_class="interactive"),
             m("qwen-32b", "qwen3-32b", max_model_len=8192, peak_concurrency=16),
             m("llama-8b", "llama-3.1-8b", max_model_len=8192, peak_concurrency=32),
             m("qwen-14b", "qwen3-14b", max_model_len=8192, peak_concurrency=4, latency_class="batch")]},
    ]


GPU_PAIRS = [("A100-80GB", "H100-80GB"), ("A100-40GB", "L40S"), ("H100-80GB", "H200"), ("A100-80GB", "L4"),
             ("H100-NVL", "A100-40GB"), ("H200", "L40S")]


def random_portfolio(seed: int) -> dict:
    """10-25 services of 0.5B-70B (AWQ where fp16 would not fit the pair's larger GPU), a traffic day."""
    rng = random.Random(seed)
    pair = GPU_PAIRS[seed % len(GPU_PAIRS)]
    models = []
    for i in range(rng.randint(10, 25)):
        m = {"name": "svc-%02d" % i, "parameters_billion": rng.choice([0.5, 1, 3, 7, 8, 14, 32, 70]),
             "max_model_len": rng.choice([2048, 4096, 8192, 16384]), "quantization": rng.choice([None, None, "awq", "fp8"]),
             "latency_class": rng.choice(["interactive", "standard", "batch"]),
             "peak_concurrency": rng.choice([1, 2, 4, 8, 16, 32, 64])}
        if m["parameters_billion"] >= 32 or (m["parameters_billion"] >= 14 and "L40S" in pair):
            m["quantization"] = "awq"
        models.append({k: v for k, v in m.items() if v is not None})
    profile = [rng.choice([0.1, 0.3, 0.6, 1.0]) for _hour in range(24)]
    profile[13] = 1.0
    sharing = ", sharing" if seed % 2 else ""
    return {"name": "random %d (%d services, %s + %s%s)" % (seed, len(models), pair[0], pair[1], sharing),
            "models": models, "gpu_models": list(pair), "allow_sharing": bool(seed % 2), "traffic_profile": profile}


def twelve_scorers() -> dict:
    return {"name": "seed: 12 scoring services (A100-40GB)", "gpu_models": ["A100-40GB"], "models": [
        {"name": "risk-scorer-%02d" % (i + 1), "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 2}
        for i in range(12)]}


def _plan(planner, p, exact):
    return planner.plan(p["models"], gpu_models=p["gpu_models"], allow_mig=p.get("allow_mig", True),
                        allow_sharing=p.get("allow_sharing", False), traffic_profile=p.get("traffic_profile"),
                        solve_exact=exact)


def run(quick: bool = False) -> dict:
    if not PLANNER.exists():
        return {"status": "todo", "reason": "plugins/module_utils/planner.py does not exist yet"}
    from ansible_collections.gpuops.llm.plugins.module_utils import planner
    rows = []
    fixed = portfolios() + [twelve_scorers()]
    randoms = [random_portfolio(seed) for seed in range(8 if quick else 24)]
    for kind, group in (("fixed", fixed), ("random", randoms)):
        for p in group:
            try:
                t0 = time.perf_counter()
                heur = _plan(planner, p, False)
                t1 = time.perf_counter()
                res = _plan(planner, p, True)
                t2 = time.perf_counter()
            except planner.PlannerError as e:
                rows.append({"portfolio": p["name"], "kind": kind, "error": str(e)})
                continue
            s, c, sv = res["summary"], res["costs"], res["solver"]
            rows.append({
                "portfolio": p["name"], "kind": kind, "models": s["models"], "replicas": s["replicas"],
                "option": s["chosen_option"], "method": sv["method"], "status": sv["status"],
                "gpus": {"plan": s["gpus"], "heuristic": heur["summary"]["gpus"], "naive": s["naive_gpus"],
                         "memory_lower_bound": s["lower_bound_gpus"]},
                "usd_per_hour": {"plan": c["static"]["per_hour"], "proven_bound": sv["bound_per_hour"],
                                 "heuristic": heur["costs"]["static"]["per_hour"], "naive": c["naive"]["per_hour"],
                                 "plan_autoscaling": c["autoscaling"]["per_hour"],
                                 "heuristic_autoscaling": heur["costs"]["autoscaling"]["per_hour"]},
                "gap_percent": sv["gap_percent"],
                "heuristic_over_optimum_percent": round(
                    100.0 * (heur["costs"]["static"]["per_hour"] - c["static"]["per_hour"]) / c["static"]["per_hour"], 2),
                "heuristic_ms": round((t1 - t0) * 1000, 1), "plan_ms": round((t2 - t1) * 1000, 1),
            })
    return {"status": "ok", "portfolios": rows}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=1))
