# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 4: sizing accuracy, model_fit's estimate vs published vLLM measurements.

A thin wrapper over benchmarks/sizing_accuracy.py (the table and the data live there)."""
from __future__ import annotations

import importlib.util
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent


def _module():
    spec = importlib.util.spec_from_file_location("gpuops_sizing_accuracy", HERE / "sizing_accuracy.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def run(quick: bool = False) -> dict:
    acc = _module()
    with open(acc.DEFAULT_DATA, "r", encoding="utf-8") as f:
        data = yaml.safe_load(f)
    worst = {"weights": 0.0, "kv": 0.0, "tokens": 0.0}
    cases = []
    for case, est, err in acc.rows(data):
        for k, v in err.items():
            if v is not None:
                worst[k] = max(worst[k], abs(v))
        error_pct = {k: None if v is None else round(v, 2) for k, v in err.items()}
        cases.append({"id": case["id"], "model": case["model"], "gpu": case["gpu"],
                      "tp": case["tensor_parallel_size"], "error_pct": error_pct})
    return {"cases": len(cases), "worst_abs_error_pct": {k: round(v, 2) for k, v in worst.items()},
            "per_case": cases, "table_md": acc.markdown(data)}


if __name__ == "__main__":
    print(run()["table_md"])
