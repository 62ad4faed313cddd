# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 5: the portfolio planner (planner.plan), GPUs and monthly cost per portfolio:
the plan (static at peak, and autoscaling under the traffic profile) vs its memory lower bound vs
one whole GPU per replica (naive).

Portfolios: the example inventory's (inventories/example/group_vars/all/portfolio.yml), and two built
from the real model configs in benchmarks/data/vllm_measurements.yml. Prices are the planner's
defaults, which it documents as assumptions; the ratios matter more than the dollars.
"""
from __future__ import annotations

import pathlib
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


def run(quick: bool = False) -> dict:
    if not PLANNER.exists():
        return {"status": "todo", "reason": "plugins/module_utils/planner.py does not exist yet"}
    from ansible_collections.gpuops.llm.plugins.module_utils import planner
    rows = []
    for p in portfolios():
        t0 = time.perf_counter()
        try:
            res = planner.plan(p["models"], gpu_models=p["gpu_models"], allow_mig=p.get("allow_mig", True),
                               allow_sharing=p.get("allow_sharing", False), traffic_profile=p.get("traffic_profile"))
        except planner.PlannerError as e:
            rows.append({"portfolio": p["name"], "error": str(e)})
            continue
        s, c = res["summary"], res["costs"]
        rows.append({
            "portfolio": p["name"], "models": s["models"], "replicas": s["replicas"], "option": s["chosen_option"],
            "gpus": {"plan": s["gpus"], "lower_bound": s["lower_bound_gpus"], "naive": s["naive_gpus"]},
            "usd_per_month": {"autoscaling": c["autoscaling"]["per_month"], "static": c["static"]["per_month"],
                              "lower_bound": c["lower_bound"]["per_month"], "naive": c["naive"]["per_month"]},
            "plan_ms": round((time.perf_counter() - t0) * 1000, 1),
        })
    return {"status": "ok", "portfolios": rows}


if __name__ == "__main__":
    import json
    print(json.dumps(run(), indent=1))
