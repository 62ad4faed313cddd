# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""plugins/module_utils/vllm_args.py: building and parsing vLLM's command line are inverses, and
parse reads the spellings vLLM accepts (flag=value, underscores, -tp)."""
from __future__ import annotations

import itertools
import random

import pytest

from ansible_collections.gpuops.llm.plugins.filter.vllm_serve_args import vllm_serve_args
from ansible_collections.gpuops.llm.plugins.module_utils import vllm_args


def test_build_writes_the_model_first_and_leaves_vllm_defaults_out():
    args = vllm_args.build({"served_model_name": "chat", "port": 8000, "max_model_len": 8192,
                            "gpu_memory_utilization": 0.9, "tensor_parallel_size": 1, "kv_cache_dtype": "auto",
                            "pipeline_parallel_size": 1, "quantization": None, "enable_prefix_caching": True},
                           model="meta-llama/Llama-3.1-8B-Instruct", extra_args=["--enforce-eager"])
    assert args == ["meta-llama/Llama-3.1-8B-Instruct", "--served-model-name", "chat", "--port", "8000",
                    "--max-model-len", "8192", "--gpu-memory-utilization", "0.90", "--tensor-parallel-size", "1",
                    "--enable-prefix-caching", "--enforce-eager"]
    assert vllm_args.build({"enable_prefix_caching": False})[-1] == "--no-enable-prefix-caching"


SETTINGS = {
    "served_model_name": ["chat", "a,b"], "port": [8000, 9000], "max_model_len": [None, 4096, 131072],
    "gpu_memory_utilization": [None, 0.5, 0.92], "tensor_parallel_size": [1, 2, 8],
    "pipeline_parallel_size": [1, 2], "kv_cache_dtype": ["auto", "fp8"], "quantization": [None, "fp8", "awq"],
    "revision": [None, "main"], "enable_prefix_caching": [None, True, False],
}


@pytest.mark.parametrize("seed", range(40))
def test_parse_of_build_gives_the_settings_back(seed):
    rng = random.Random(seed)
    settings = {k: rng.choice(v) for k, v in SETTINGS.items()}
    line = ["vllm", "serve"] + vllm_args.build(settings, model="org/model-%d" % seed)
    parsed = vllm_args.parse(line)
    assert parsed["model"] == "org/model-%d" % seed
    for key, value in settings.items():
        want = vllm_args.DEFAULTS.get(key) if value is None else value
        assert parsed[key] == want, (key, line)
    assert parsed["served_model_names"] == settings["served_model_name"].split(",")


def test_parse_reads_every_spelling_vllm_accepts():
    forms = (["--max-model-len", "4096"], ["--max-model-len=4096"], ["--max_model_len", "4096"],
             ["--max_model_len=4096"])
    tps = (["--tensor-parallel-size", "2"], ["-tp", "2"], ["--tensor_parallel_size=2"])
    for mml, tp in itertools.product(forms, tps):
        p = vllm_args.parse(["vllm", "serve", "m"] + mml + tp)
        assert (p["model"], p["max_model_len"], p["tensor_parallel_size"]) == ("m", 4096, 2)
    module = vllm_args.parse(["python3", "-m", "vllm.entrypoints.openai.api_server", "--model", "x", "--dtype", "half"])
    assert (module["model"], module["dtype"], module["tensor_parallel_size"]) == ("x", "half", 1)
    assert vllm_args.parse(["vllm", "serve", "m"])["gpu_memory_utilization"] is None   # not given: the audit says so
    assert vllm_args.parse(["vllm", "serve", "m", "--gpu-memory-utilization", "lots"])["gpu_memory_utilization"] == "lots"


def test_filter_refuses_unknown_settings_naming_them():
    from ansible.errors import AnsibleFilterError
    with pytest.raises(AnsibleFilterError, match="unknown settings max_len"):
        vllm_serve_args({"max_len": 1})
    with pytest.raises(AnsibleFilterError, match="must be a dict"):
        vllm_serve_args(["--port"])
    assert vllm_serve_args({"port": 8000}, "m") == ["m", "--port", "8000"]
