# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Compare model_fit's estimate with published vLLM start-up measurements.

Usage: python benchmarks/sizing_accuracy.py [--data benchmarks/data/vllm_measurements.yml]
Prints a Markdown table (paste it into docs/sizing.md). Needs PyYAML only.
"""

from __future__ import annotations

import argparse
import importlib.util
import pathlib
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "benchmarks" / "data" / "vllm_measurements.yml"


def load_sizing():
    """Import plugins/module_utils/sizing.py directly: it is pure and needs no collection path."""
    spec = importlib.util.spec_from_file_location("gpuops_sizing", ROOT / "plugins" / "module_utils" / "sizing.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_case(sizing, data, case):
    """Estimate one measurement; returns the estimate dict."""
    return sizing.estimate(
        model_config=data["models"][case["model"]],
        quantization=case.get("quantization"),
        tensor_parallel_size=case["tensor_parallel_size"],
        gpu_model=case["gpu"],
        gpu_memory_utilization=case["gpu_memory_utilization"],
        max_model_len=case["max_model_len"],
        kv_cache_dtype=case.get("kv_cache_dtype", "auto"),
        vllm_version=case["vllm_version"],
        pipeline_parallel_size=case.get("pipeline_parallel_size", 1),
    )


def error_pct(estimated, measured):
    if measured is None:
        return None
    return (estimated - measured) / abs(measured) * 100.0


def rows(data, sizing=None):
    sizing = sizing or load_sizing()
    for case in data["measurements"]:
        est = run_case(sizing, data, case)
        m = case["measured"]
        yield case, est, {
            "weights": error_pct(est["weights_gib_per_gpu"], m.get("weights_gib")),
            "kv": error_pct(est["kv_cache_gib_per_gpu"], m.get("kv_cache_gib")),
            "tokens": error_pct(est["kv_cache_tokens"], m.get("kv_cache_tokens")),
        }


def _parallel(case):
    pp = case.get("pipeline_parallel_size", 1)
    return "%d" % case["tensor_parallel_size"] + (" (PP%d)" % pp if pp > 1 else "")


def _fmt(value, pattern="%.2f"):
    return "-" if value is None else pattern % value


def markdown(data):
    out = ["| id | model | GPU | TP (PP) | quant | vLLM | weights meas / est (GiB) | err | "
           "KV meas / est (GiB) | err | KV tokens meas / est | err | fits |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    worst = {"weights": 0.0, "kv": 0.0, "tokens": 0.0}
    for case, est, err in rows(data):
        m = case["measured"]
        for key, value in err.items():
            if value is not None:
                worst[key] = max(worst[key], abs(value))
        kv_meas = _fmt(m.get("kv_cache_gib"))
        if case.get("kv_cache_gib_derived"):
            kv_meas += "*"
        out.append("| %s | %s | %s | %s | %s | %s | %s / %.2f | %s | %s / %.2f | %s | %s / %d | %s | %s |" % (
            case["id"], case["model"], case["gpu"], _parallel(case),
            est["quantization"]["method"] + ("" if case.get("kv_cache_dtype", "auto") == "auto" else " +fp8kv"),
            case["vllm_version"],
            _fmt(m.get("weights_gib")), est["weights_gib_per_gpu"], _fmt(err["weights"], "%+.1f%%"),
            kv_meas, est["kv_cache_gib_per_gpu"], _fmt(err["kv"], "%+.1f%%"),
            _fmt(m.get("kv_cache_tokens"), "%d"), est["kv_cache_tokens"], _fmt(err["tokens"], "%+.2f%%"),
            "yes" if est["fits"] else "no"))
    out.append("")
    out.append("Worst absolute error: weights %.1f%%, KV cache GiB %.1f%%, KV tokens %.2f%%. "
               "`*` = KV pool derived from the published components (see the data file)."
               % (worst["weights"], worst["kv"], worst["tokens"]))
    return "\n".join(out)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(DEFAULT_DATA))
    args = parser.parse_args(argv)
    with open(args.data, "r", encoding="utf-8") as handle:
        data = yaml.safe_load(handle)
    sys.stdout.write(markdown(data) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
