# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for the gpuops.llm.model_fit module: argument handling, results, errors, check mode."""

from __future__ import annotations

import json
import pathlib

import pytest
import yaml

from ansible.module_utils import basic
from ansible.module_utils.testing import patch_module_args

from ansible_collections.gpuops.llm.plugins.modules import model_fit

ROOT = pathlib.Path(__file__).resolve().parents[4]
MODELS = yaml.safe_load((ROOT / "benchmarks" / "data" / "vllm_measurements.yml").read_text())["models"]


class ExitJson(Exception):
    pass


class FailJson(Exception):
    pass


@pytest.fixture(autouse=True)
def _exits(monkeypatch):
    def exit_json(self, **kwargs):
        raise ExitJson(kwargs)

    def fail_json(self, **kwargs):
        raise FailJson(kwargs)

    monkeypatch.setattr(basic.AnsibleModule, "exit_json", exit_json)
    monkeypatch.setattr(basic.AnsibleModule, "fail_json", fail_json)


def run(args, check_mode=False):
    if check_mode:
        args = dict(args, _ansible_check_mode=True)
    with patch_module_args(args):
        with pytest.raises((ExitJson, FailJson)) as info:
            model_fit.main()
    return info.type is ExitJson, info.value.args[0]


def test_llama_8b_on_h100_matches_published_log():
    ok, result = run({"model_config": MODELS["llama-3.1-8b"], "gpu_model": "NVIDIA H100 80GB HBM3",
                      "gpu_memory_utilization": 0.95, "max_model_len": 8192})
    assert ok and result["changed"] is False and result["fits"] is True
    # llm-d-planner v0.19 log: "Model loading took 14.99 GiB", "GPU KV cache size: 476,016 tokens"
    assert result["weights_gib_per_gpu"] == 14.99
    assert result["kv_cache_tokens"] == pytest.approx(476016, rel=0.001)
    assert result["recommended"]["args"][:2] == ["--tensor-parallel-size", "1"]


def test_check_mode_gives_same_result_and_no_change():
    args = {"model_config": MODELS["qwen2.5-7b"], "gpu_model": "H100-80GB 3g.40gb", "max_model_len": 16384,
            "kv_cache_dtype": "fp8"}
    ok1, normal = run(args)
    ok2, checked = run(args, check_mode=True)
    assert ok1 and ok2 and normal == checked and checked["changed"] is False


def test_does_not_fit_is_a_result_not_a_failure():
    ok, result = run({"model_config": MODELS["llama-3-70b"], "gpu_model": "H100-80GB", "max_model_len": 8192})
    assert ok and result["fits"] is False and "weights need" in result["reason"]
    assert result["recommended"]["min_tensor_parallel_size"] == 2


def test_model_path(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(MODELS["qwen3-0.6b"]))
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 1_503_264_768}}))
    ok, result = run({"model_path": str(tmp_path), "gpu_model": "L4", "max_model_len": 8192})
    assert ok and "total_size" in result["weights_source"]
    assert result["weights_gib_per_gpu"] == pytest.approx(1_503_264_768 / 1024 ** 3 + 0.01, abs=0.01)


@pytest.mark.parametrize("args,field,words", [
    ({"quantization": "int4"}, None, ["quantization", "int4"]),   # rejected by argument_spec choices
    ({"tensor_parallel_size": 3}, "tensor_parallel_size", ["num_attention_heads 32"]),
    ({"gpu_model": "RTX 9999"}, "gpu_model", ["RTX 9999", "valid GPUs", "H100-80GB"]),
    ({"max_model_len": 1000000}, "max_model_len", ["1000000", "131072"]),
])
def test_bad_input_fails_naming_the_field(args, field, words):
    base = {"model_config": MODELS["llama-3.1-8b"], "gpu_model": "H100-80GB", "max_model_len": 8192}
    base.update(args)
    ok, result = run(base)
    assert not ok
    if field:
        assert result["field"] == field and result["msg"].startswith(field + ":")
    for word in words:
        assert word in result["msg"]


def test_missing_config_field_named():
    cfg = dict(MODELS["llama-3.1-8b"])
    del cfg["num_hidden_layers"]
    ok, result = run({"model_config": cfg, "gpu_model": "H100-80GB"})
    assert not ok and result["field"] == "model_config.num_hidden_layers"


@pytest.mark.parametrize("args", [
    {"gpu_model": "H100-80GB"},                                            # no model
    {"model_config": {"hidden_size": 1}},                                  # no GPU
    {"model_config": {"hidden_size": 1}, "model_path": "/x", "gpu_model": "L4"},
    {"model_config": {"hidden_size": 1}, "gpu_model": "L4", "gpu_memory_gib": 20.0},
])
def test_argument_spec_requires_one_of_each(args):
    ok, result = run(args)
    assert not ok and ("one of" in result["msg"] or "mutually exclusive" in result["msg"])


def test_documentation_matches_argument_spec():
    doc = yaml.safe_load(model_fit.DOCUMENTATION)
    with patch_module_args({"model_config": MODELS["llama-3.1-8b"], "gpu_model": "L4"}):
        captured = {}
        original = basic.AnsibleModule.__init__

        def spy(self, *a, **kw):
            captured.update(kw)
            original(self, *a, **kw)

        basic.AnsibleModule.__init__ = spy
        try:
            with pytest.raises(ExitJson):
                model_fit.main()
        finally:
            basic.AnsibleModule.__init__ = original
    spec = captured["argument_spec"]
    assert set(spec) == set(doc["options"])
    for name, option in doc["options"].items():
        assert spec[name]["type"] == option["type"], name
        assert spec[name].get("default") == option.get("default"), name
        assert spec[name].get("choices") == option.get("choices"), name
    returned = yaml.safe_load(model_fit.RETURN)
    ok, result = run({"model_config": MODELS["llama-3.1-8b"], "gpu_model": "L4", "max_model_len": 4096})
    assert set(returned) <= set(result)


def test_pipeline_parallel_size_is_passed_through():
    # llm-d-planner v0.19: Llama-3.1-8B with PP2 loads 7.51 GiB per GPU
    ok, result = run({"model_config": MODELS["llama-3.1-8b"], "gpu_model": "H100-80GB", "max_model_len": 8192,
                      "gpu_memory_utilization": 0.95, "pipeline_parallel_size": 2})
    assert ok and result["pipeline_parallel_size"] == 2 and result["pipeline_stage_layers"] == [16, 16]
    assert result["weights_gib_per_gpu"] == 7.51
    assert "--pipeline-parallel-size" in result["recommended"]["args"]
    ok, result = run({"model_config": MODELS["llama-3.1-8b"], "gpu_model": "H100-80GB", "max_model_len": 8192,
                      "pipeline_parallel_size": 0})
    assert not ok and result["field"] == "pipeline_parallel_size"


def test_mxfp4_checkpoint_through_the_module():
    # vllm#33155: gpt-oss-120b on one H100, Triton MXFP4 kernel, "Model loading took 64.38 GiB"
    ok, result = run({"model_config": MODELS["gpt-oss-120b"], "gpu_model": "H100-80GB", "vllm_version": "0.14.1",
                      "max_model_len": 8192})
    assert ok and result["quantization"]["method"] == "mxfp4" and result["quantization"]["backend"] == "triton"
    assert result["weights_gib_per_gpu"] == pytest.approx(64.38, rel=0.01)
    assert "--quantization" not in result["recommended"]["args"]
