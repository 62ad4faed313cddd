# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for plugins/module_utils/sizing.py.

Expectations come from the facts files, the seed article and published vLLM logs
(benchmarks/data/vllm_measurements.yml, each entry with its source URL), never from the code.
Tolerances are what the estimate actually achieves, with a small margin; the worst errors are
written next to each one.
"""

from __future__ import annotations

import copy
import json
import pathlib
import struct

import pytest
import yaml

from ansible_collections.gpuops.llm.plugins.module_utils import sizing
from ansible_collections.gpuops.llm.plugins.module_utils.sizing import SizingError, estimate

ROOT = pathlib.Path(__file__).resolve().parents[4]
DATA = yaml.safe_load((ROOT / "benchmarks" / "data" / "vllm_measurements.yml").read_text())
MODELS = DATA["models"]
GIB = 1024 ** 3
GB = 1e9

# Extra fixtures (public config.json values) not used by the measurements.
QWEN3_30B_A3B = {
    "architectures": ["Qwen3MoeForCausalLM"], "model_type": "qwen3_moe", "hidden_size": 2048,
    "num_hidden_layers": 48, "num_attention_heads": 32, "num_key_value_heads": 4, "head_dim": 128,
    "intermediate_size": 6144, "moe_intermediate_size": 768, "num_experts": 128,
    "num_experts_per_tok": 8, "vocab_size": 151936, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "max_position_embeddings": 40960,
}
DEEPSEEK_V2_LITE = {
    "architectures": ["DeepseekV2ForCausalLM"], "model_type": "deepseek_v2", "hidden_size": 2048,
    "num_hidden_layers": 27, "num_attention_heads": 16, "num_key_value_heads": 16,
    "kv_lora_rank": 512, "q_lora_rank": None, "qk_rope_head_dim": 64, "qk_nope_head_dim": 128,
    "v_head_dim": 128, "intermediate_size": 10944, "moe_intermediate_size": 1408,
    "n_routed_experts": 64, "n_shared_experts": 2, "first_k_dense_replace": 1,
    "num_experts_per_tok": 6, "vocab_size": 102400, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "max_position_embeddings": 163840,
}


def fit(model, **kw):
    kw.setdefault("gpu_model", "H100-80GB")
    return estimate(model_config=copy.deepcopy(MODELS[model] if isinstance(model, str) else model), **kw)


# ----------------------------------------------------------------------------------------
# published vLLM measurements
# ----------------------------------------------------------------------------------------

CASES = DATA["measurements"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_matches_published_vllm_measurements(case):
    est = fit(case["model"], quantization=case.get("quantization"),
              tensor_parallel_size=case["tensor_parallel_size"], gpu_model=case["gpu"],
              gpu_memory_utilization=case["gpu_memory_utilization"],
              max_model_len=case["max_model_len"], kv_cache_dtype=case.get("kv_cache_dtype", "auto"),
              vllm_version=case["vllm_version"], pipeline_parallel_size=case.get("pipeline_parallel_size", 1))
    m = case["measured"]
    assert case["source"] in DATA["sources"] and DATA["sources"][case["source"]].startswith("https://")
    # Weights: worst error seen 0.4% (Qwen2.5-7B TP1, 14.19 vs 14.25 GiB).
    assert est["weights_gib_per_gpu"] == pytest.approx(m["weights_gib"], rel=0.01)
    if "kv_cache_gib" in m:
        # KV pool: worst absolute error seen 0.06 GiB (Llama-3.3-70B FP8 TP1, -1.39 vs -1.44).
        assert est["kv_cache_gib_per_gpu"] == pytest.approx(m["kv_cache_gib"], abs=0.1)
    if "kv_cache_tokens" in m:
        # Tokens: worst error seen 0.05%.
        assert est["kv_cache_tokens"] == pytest.approx(m["kv_cache_tokens"], rel=0.001)
    if "activation_gib" in m:
        # Activation: least-squares fit, residuals up to 0.16 GiB over the calibration runs.
        assert est["activation_gib_per_gpu"] == pytest.approx(m["activation_gib"], abs=0.2)
    if "non_torch_gib" in m:
        assert est["non_torch_gib_per_gpu"] == pytest.approx(m["non_torch_gib"], abs=0.05)
    assert est["fits"] is m.get("fits", True)


def test_vllm_budget_equation_from_facts():
    """facts D check 1: 0.95 x 79.19 - 14.99 - 1.89 - 0.25 = 58.10 (observed 58.11)."""
    est = fit("llama-3.1-8b", gpu_memory_utilization=0.95, max_model_len=8192)
    budget = 0.95 * est["gpu_memory_gib"]
    expected = budget - est["weights_gib_per_gpu"] - est["activation_gib_per_gpu"] - est["non_torch_gib_per_gpu"]
    assert est["gpu_memory_gib"] == 79.19
    assert est["kv_cache_gib_per_gpu"] == pytest.approx(expected, abs=0.01)


# ----------------------------------------------------------------------------------------
# the seed article's quantization table (Llama-3 70B)
# ----------------------------------------------------------------------------------------

def _total_gb(method):
    est = fit("llama-3-70b", quantization=method, tensor_parallel_size=8, max_model_len=8192)
    return est["weights_gib_total"] * GIB / GB


def test_seed_table_fp16_about_140_gb():
    # seed: "approximately 140GB"; 70.55e9 parameters x 2 bytes = 141.1 GB (+0.8%).
    assert _total_gb("none") == pytest.approx(140, rel=0.02)


def test_seed_table_awq_about_38_gb():
    # seed: ~38 GB. We get 39.8 GB (+4.7%): 4-bit weights, fp16 scales and 4-bit zeros per
    # group of 128, and the 16-bit embeddings + lm_head (4.2 GB) vLLM keeps.
    assert _total_gb("awq") == pytest.approx(38, rel=0.06)


def test_seed_table_gptq_about_36_gb():
    # seed: ~36 GB. Same format as AWQ here, so 39.8 GB (+10.6%): the seed's figure is low.
    assert _total_gb("gptq") == pytest.approx(36, rel=0.12)


def test_seed_table_bitnet_about_12_gb():
    # seed: ~12 GB. 1.58-bit linear layers alone come to 13.5 GB (+12.7%); vLLM-style 16-bit
    # embeddings and lm_head add 4.2 GB the seed leaves out, so the total is 17.8 GB.
    total = _total_gb("bitnet")
    embeddings = 2 * 128256 * 8192 * 2 / GB
    assert total - embeddings == pytest.approx(12, rel=0.15)
    assert total > 12


def test_seed_awq_cuts_memory_about_73_percent():
    # seed: "GPU memory requirements drop by 73%".
    assert 1 - _total_gb("awq") / _total_gb("none") == pytest.approx(0.73, abs=0.02)


def test_seed_awq_one_a100_instead_of_two():
    # seed: "You go from 2 A100s to 1 A100 per model replica" (A100 80GB, 8k context).
    fp16 = fit("llama-3-70b", gpu_model="NVIDIA A100-SXM4-80GB", max_model_len=8192)
    awq = fit("llama-3-70b", gpu_model="NVIDIA A100-SXM4-80GB", quantization="awq", max_model_len=8192)
    assert not fp16["fits"] and fp16["recommended"]["min_tensor_parallel_size"] == 2
    assert awq["fits"]


# ----------------------------------------------------------------------------------------
# KV cache from first principles
# ----------------------------------------------------------------------------------------

def test_kv_bytes_per_token_llama3_8b_gqa():
    # 2 (K, V) x 32 layers x 8 kv heads x 128 head_dim x 2 bytes (bf16)
    est = fit("llama-3.1-8b", max_model_len=8192)
    assert est["kv_cache_bytes_per_token"] == 2 * 32 * 8 * 128 * 2 == 131072


@pytest.mark.parametrize("model,expected", [
    ("llama-3-70b", 327680), ("mistral-7b-v0.3", 131072), ("mixtral-8x7b", 131072), ("qwen2.5-7b", 57344),
])
def test_kv_bytes_per_token_table_from_facts(model, expected):
    assert fit(model, tensor_parallel_size=2, max_model_len=4096)["kv_cache_bytes_per_token"] == expected


def test_kv_per_gpu_halves_with_tp2_and_keeps_one_head_minimum():
    tp2 = fit("llama-3.1-8b", tensor_parallel_size=2, max_model_len=8192)
    tp16 = fit("llama-3.1-8b", tensor_parallel_size=16, max_model_len=8192)
    assert tp2["kv_cache_bytes_per_token_per_gpu"] == 131072 // 2
    # 8 kv heads over 16 GPUs: vLLM replicates, each GPU still holds one head.
    assert tp16["kv_cache_bytes_per_token_per_gpu"] == 2 * 32 * 1 * 128 * 2


def test_fp8_kv_doubles_tokens_not_gib():
    auto = fit("llama-3.1-8b", gpu_memory_utilization=0.95, max_model_len=8192)
    fp8 = fit("llama-3.1-8b", gpu_memory_utilization=0.95, max_model_len=8192, kv_cache_dtype="fp8")
    assert fp8["kv_cache_gib_per_gpu"] == auto["kv_cache_gib_per_gpu"]
    assert fp8["kv_cache_bytes_per_token"] == auto["kv_cache_bytes_per_token"] // 2
    assert fp8["kv_cache_tokens"] == pytest.approx(2 * auto["kv_cache_tokens"], abs=16)
    assert "--kv-cache-dtype" in fp8["recommended"]["args"]


def test_max_concurrency_is_tokens_over_len():
    est = fit("qwen2.5-7b", gpu_memory_utilization=0.95, max_model_len=8192)
    # vLLM prints 1,096,000 tokens -> "Maximum concurrency for 8,192 tokens per request: 133.79x"
    assert est["max_concurrency"] == pytest.approx(1096000 / 8192, rel=0.002)


def test_mla_kv_is_latent_and_replicated():
    est = fit(DEEPSEEK_V2_LITE, tensor_parallel_size=2, max_model_len=8192)
    assert est["kv_cache_bytes_per_token"] == 27 * (512 + 64) * 2
    assert est["kv_cache_bytes_per_token_per_gpu"] == 27 * (512 + 64) * 2


# ----------------------------------------------------------------------------------------
# weights: tensor parallelism, MoE, quantization
# ----------------------------------------------------------------------------------------

def test_tp2_halves_weights_except_replicated_buffers():
    one = fit("llama-3.1-8b", max_model_len=8192)["weights_gib_per_gpu"]
    two = fit("llama-3.1-8b", max_model_len=8192, tensor_parallel_size=2)["weights_gib_per_gpu"]
    # the rotary cache (131072 x 128 x 2 B = 0.03 GiB) and norms are on every GPU
    assert 0 < two - one / 2 < 0.03
    # published: 14.99 -> 7.51 GiB
    assert two / one == pytest.approx(7.51 / 14.99, abs=0.002)


@pytest.mark.parametrize("tp", [1, 2, 4, 8])
def test_tp_shards_embeddings_and_lm_head(tp):
    # lm_head + embeddings of Llama-3-70B are 2 x 128256 x 8192 x 2 B = 3.91 GiB; AWQ keeps them
    # 16-bit, so AWQ per GPU must contain 3.91 / tp of them, not 3.91.
    awq = fit("llama-3-70b", quantization="awq", tensor_parallel_size=tp, max_model_len=4096)
    total = awq["weights_gib_total"]
    assert awq["weights_gib_per_gpu"] == pytest.approx(total / tp, rel=0.01)


def test_kv_head_replication_costs_weights():
    # 8 kv heads on 16 GPUs: k/v projections are replicated, so per GPU > total / 16.
    est = fit("llama-3.1-8b", tensor_parallel_size=16, max_model_len=8192)
    assert est["weights_gib_per_gpu"] > est["weights_gib_total"] / 16


@pytest.mark.parametrize("config,params_b", [
    ("mixtral-8x7b", 46.7),      # Mixtral 8x7B: 46.7B total
    (QWEN3_30B_A3B, 30.5),       # Qwen3-30B-A3B: 30.5B total
    (DEEPSEEK_V2_LITE, 15.7),    # DeepSeek-V2-Lite: 15.7B total
    ("llama-3-70b", 70.6),
    ("llama-3.1-8b", 8.03),
])
def test_parameter_counts_match_published(config, params_b):
    assert fit(config, tensor_parallel_size=2, max_model_len=4096)["model"]["parameters_billion"] == \
        pytest.approx(params_b, rel=0.01)


def test_moe_adds_activation_and_shards_experts():
    dense = fit("mistral-7b-v0.3", max_model_len=4096)
    moe = fit("mixtral-8x7b", max_model_len=4096)
    assert moe["activation_gib_per_gpu"] > dense["activation_gib_per_gpu"]
    tp2 = fit("mixtral-8x7b", tensor_parallel_size=2, max_model_len=4096)
    assert tp2["weights_gib_per_gpu"] == pytest.approx(moe["weights_gib_per_gpu"] / 2, rel=0.01)
    assert moe["model"]["num_experts"] == 8


def test_quantization_methods_order():
    sizes = {q: fit("llama-3.1-8b", quantization=q, max_model_len=4096)["weights_gib_per_gpu"]
             for q in ("none", "fp8", "int8", "awq", "gptq", "bitnet")}
    assert sizes["none"] > sizes["fp8"] > sizes["awq"] > sizes["bitnet"]
    assert sizes["fp8"] == pytest.approx(sizes["int8"])
    assert sizes["awq"] == pytest.approx(sizes["gptq"], rel=0.01)
    # fp8: 1 byte for linear layers, 16-bit embeddings -> 8.49 GiB published
    assert sizes["fp8"] == pytest.approx(8.49, abs=0.02)


def test_group_size_scales_awq_overhead():
    g64 = fit("llama-3.1-8b", quantization="awq", group_size=64, max_model_len=4096)
    g128 = fit("llama-3.1-8b", quantization="awq", group_size=128, max_model_len=4096)
    per_channel = fit("llama-3.1-8b", quantization="gptq", group_size=-1, max_model_len=4096)
    assert g64["weights_gib_per_gpu"] > g128["weights_gib_per_gpu"] > per_channel["weights_gib_per_gpu"]
    # per-group scale (2 B) + zero (0.5 B) per 128 weights = +2% on the 4-bit linear layers
    linear = 6.98e9 * 0.5 / GIB
    assert g128["weights_gib_per_gpu"] - per_channel["weights_gib_per_gpu"] == pytest.approx(
        linear * 2.5 / 0.5 / 128, rel=0.05)


def test_quantization_read_from_checkpoint_config():
    est = fit("llama-3.3-70b-fp8-dynamic", tensor_parallel_size=2, max_model_len=8192)
    assert est["quantization"]["method"] == "fp8"
    assert est["quantization"]["source"] == "model_config.quantization_config"
    # pre-quantized: vLLM detects it, so no --quantization flag
    assert "--quantization" not in est["recommended"]["args"]


def test_runtime_fp8_adds_quantization_flag():
    est = fit("llama-3.1-8b", quantization="fp8", max_model_len=8192)
    assert est["quantization"]["runtime"] is True
    assert est["recommended"]["args"][-2:] == ["--quantization", "fp8"]


def test_awq_checkpoint_gets_no_quantization_flag():
    # --quantization awq would force the slow kernel (facts B); leaving it unset picks Marlin.
    cfg = dict(MODELS["llama-3-70b"], quantization_config={"quant_method": "awq", "bits": 4, "group_size": 128})
    est = fit(cfg, max_model_len=8192)
    assert est["quantization"]["method"] == "awq" and "--quantization" not in est["recommended"]["args"]


def test_legacy_vllm_has_bigger_activation():
    new = fit("qwen3-14b", gpu_memory_utilization=0.95, max_model_len=8192, vllm_version="0.19.0")
    old = fit("qwen3-14b", gpu_memory_utilization=0.95, max_model_len=8192, vllm_version="0.16.0")
    # published: 5.64 GiB (v0.16) -> 2.23 GiB (v0.17+), a 60% drop
    assert old["activation_gib_per_gpu"] == pytest.approx(5.64, abs=0.1)
    assert new["activation_gib_per_gpu"] == pytest.approx(2.23, abs=0.1)
    assert old["kv_cache_gib_per_gpu"] < new["kv_cache_gib_per_gpu"]


def test_tp_non_torch_overhead_grows():
    # facts D: TP >= 2 adds about 2.1 GiB per GPU of NCCL memory
    one = fit("qwen2.5-7b", max_model_len=8192)
    two = fit("qwen2.5-7b", max_model_len=8192, tensor_parallel_size=2)
    assert two["non_torch_gib_per_gpu"] - one["non_torch_gib_per_gpu"] == pytest.approx(1.85, abs=0.1)


# ----------------------------------------------------------------------------------------
# fits / reason / recommendations
# ----------------------------------------------------------------------------------------

def test_does_not_fit_when_weights_exceed_memory():
    est = fit("llama-3-70b", max_model_len=8192)  # FP16 70B on one H100
    assert est["fits"] is False
    assert "weights need" in est["reason"] and "131." in est["reason"]
    assert est["kv_cache_tokens"] == 0
    assert est["recommended"]["max_model_len"] is None
    assert est["recommended"]["min_tensor_parallel_size"] == 2


def test_does_not_fit_when_context_too_long():
    # Llama-3.1-8B on an L4 (22.27 GiB) cannot hold a 131072-token request.
    est = fit("llama-3.1-8b", gpu_model="NVIDIA L4", max_model_len=131072)
    assert est["fits"] is False and "fewer than one request" in est["reason"]
    rec = est["recommended"]
    assert rec["max_model_len"] is not None and rec["max_model_len"] < 131072
    assert rec["max_model_len"] % 256 == 0


@pytest.mark.parametrize("model,gpu,length,tp,kv", [
    ("llama-3.1-8b", "NVIDIA L4", 131072, 1, "auto"),
    ("llama-3.1-8b", "H100-80GB 1g.20gb", 131072, 1, "auto"),
    ("qwen2.5-7b", "A100-40GB", 32768, 1, "fp8"),
    ("llama-3-70b", "NVIDIA H100 80GB HBM3", 8192, 2, "auto"),
    ("mixtral-8x7b", "NVIDIA A100-SXM4-80GB", 32768, 2, "auto"),
    ("qwen3-32b", "NVIDIA L40S", 40960, 2, "auto"),
    ("qwen3-0.6b", "A100-40GB 1g.10gb", 40960, 1, "auto"),
])
def test_recommended_settings_really_fit(model, gpu, length, tp, kv):
    est = fit(model, gpu_model=gpu, max_model_len=length, tensor_parallel_size=tp, kv_cache_dtype=kv)
    rec = est["recommended"]
    assert rec["max_model_len"] is not None, est["reason"]
    again = fit(model, gpu_model=gpu, max_model_len=rec["max_model_len"], tensor_parallel_size=tp,
                kv_cache_dtype=kv, gpu_memory_utilization=rec["gpu_memory_utilization"])
    assert again["fits"], again["reason"]
    assert rec["gpu_memory_utilization"] <= sizing.MAX_RECOMMENDED_GPU_MEMORY_UTILIZATION
    assert again["recommended"]["max_model_len"] == rec["max_model_len"]


def test_min_tensor_parallel_size_really_fits():
    est = fit("llama-3-70b", max_model_len=8192)
    tp = est["recommended"]["min_tensor_parallel_size"]
    assert fit("llama-3-70b", max_model_len=8192, tensor_parallel_size=tp,
               gpu_memory_utilization=0.95)["fits"]


def test_fitting_request_is_kept():
    est = fit("llama-3.1-8b", max_model_len=8192, gpu_memory_utilization=0.9)
    assert est["fits"]
    assert est["recommended"]["max_model_len"] == 8192
    assert est["recommended"]["gpu_memory_utilization"] == 0.9
    assert est["recommended"]["args"] == ["--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.90",
                                          "--max-model-len", "8192"]


def test_utilization_leaving_no_room_for_cuda_context():
    est = fit("qwen3-0.6b", gpu_model="H100-80GB 1g.10gb", max_model_len=4096, gpu_memory_utilization=0.99)
    assert est["fits"] is False and "CUDA context" in est["reason"]
    assert est["recommended"]["gpu_memory_utilization"] < 0.9


def test_max_model_len_defaults_to_model():
    assert fit("qwen2.5-7b")["max_model_len"] == 32768


# ----------------------------------------------------------------------------------------
# GPUs and MIG
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,key,gib", [
    ("NVIDIA H100 80GB HBM3", "H100-80GB", 79.19),
    ("H100-80GB", "H100-80GB", 79.19),
    ("NVIDIA A100-SXM4-40GB", "A100-40GB", 39.59),
    ("NVIDIA A100 80GB PCIe", "A100-80GB", 79.15),
    ("NVIDIA L4", "L4", 22.27),
    ("NVIDIA L40S", "L40S", 44.54),
    ("NVIDIA H200", "H200", 139.0),
    ("NVIDIA H100 NVL", "H100-94GB", 93.06),
    ("B200", "B200", 177.3),
])
def test_gpu_names(name, key, gib):
    gpu = sizing.resolve_gpu(name)
    assert gpu["name"] == key and gpu["usable_gib"] == gib and not gpu["mig"]
    # only the H100 figure is measured (facts D); others must carry a warning
    assert bool(gpu["warnings"]) is (key != "H100-80GB")


@pytest.mark.parametrize("name,gib,parent", [
    ("H100-80GB 3g.40gb", 39.5, "H100-80GB"),          # facts: 40448 MiB
    ("NVIDIA-H100-80GB-HBM3-MIG-3g.40gb", 39.5, "H100-80GB"),   # GFD product label style
    ("A100-40GB 1g.5gb", 4.75, "A100-40GB"),
    ("1g.5gb", 4.75, "A100-40GB"),
    ("A30 2g.12gb", 11.69, "A30"),
    ("H100 NVL 3g.47gb", 46.38, "H100-94GB"),
    ("H100-80GB 1g.10gb+me", 9.75, "H100-80GB"),
])
def test_mig_profiles(name, gib, parent):
    gpu = sizing.resolve_gpu(name)
    assert gpu["mig"] and gpu["usable_gib"] == gib and gpu["parent"] == parent


def test_bare_ambiguous_mig_profile_takes_smallest_and_warns():
    gpu = sizing.resolve_gpu("3g.40gb")  # A100-80GB (39.25, mock) and H100-80GB (39.5)
    assert gpu["usable_gib"] == 39.25
    assert any("different memory" in w for w in gpu["warnings"])


def test_mig_table_is_one_replaceable_dict():
    assert set(sizing.MIG_PROFILE_MEMORY_GIB) >= {"A100-40GB", "H100-80GB", "H200"}
    saved = sizing.MIG_PROFILE_MEMORY_GIB["H100-80GB"]["3g.40gb"]
    try:
        sizing.MIG_PROFILE_MEMORY_GIB["H100-80GB"]["3g.40gb"] = 30.0
        assert sizing.resolve_gpu("H100-80GB 3g.40gb")["usable_gib"] == 30.0
    finally:
        sizing.MIG_PROFILE_MEMORY_GIB["H100-80GB"]["3g.40gb"] = saved


def test_model_too_big_for_mig_slice():
    est = fit("llama-3.1-8b", gpu_model="H100-80GB 1g.10gb", max_model_len=8192)
    assert est["fits"] is False and "weights need 14.99" in est["reason"]
    assert est["recommended"]["min_tensor_parallel_size"] is None


def test_awq_8b_fits_mig_1g_10gb():
    est = fit("llama-3.1-8b", gpu_model="H100-80GB 1g.10gb", quantization="awq", max_model_len=4096)
    assert est["fits"], est["reason"]


# ----------------------------------------------------------------------------------------
# inputs: model_path, nested configs, errors
# ----------------------------------------------------------------------------------------

def test_model_path_uses_exact_total_size(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(MODELS["llama-3.1-8b"]))
    total = 16_060_522_496  # Llama-3.1-8B-Instruct's index total_size is about this
    (tmp_path / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": {}}))
    est = estimate(model_path=str(tmp_path), gpu_model="H100-80GB", max_model_len=8192)
    assert "total_size" in est["weights_source"]
    rotary = 131072 * 128 * 2 / GIB
    assert est["weights_gib_per_gpu"] == pytest.approx(total / GIB + rotary, abs=0.005)
    tp2 = estimate(model_path=str(tmp_path), gpu_model="H100-80GB", max_model_len=8192, tensor_parallel_size=2)
    assert tp2["weights_gib_per_gpu"] == pytest.approx(total / GIB / 2 + rotary, abs=0.01)


def test_model_path_single_safetensors_file(tmp_path):
    cfg = dict(MODELS["qwen3-0.6b"])
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    header = b'{"__metadata__":{}}'
    data = b"\0" * 4096
    (tmp_path / "model.safetensors").write_bytes(struct.pack("<Q", len(header)) + header + data)
    est = estimate(model_path=str(tmp_path), gpu_memory_gib=20, max_model_len=1024)
    assert est["weights_source"] == "model.safetensors data size"
    assert est["weights_gib_total"] == pytest.approx((4096 + 40960 * 128 * 2) / GIB, abs=0.01)


def test_model_path_missing_dir():
    with pytest.raises(SizingError) as err:
        estimate(model_path="/nonexistent/model", gpu_model="L4")
    assert err.value.field == "model_path"


def test_nested_text_config_is_used():
    cfg = {
        "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3",
        "torch_dtype": "bfloat16",
        "text_config": {"model_type": "gemma3_text", "hidden_size": 2560, "num_hidden_layers": 34,
                        "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 256,
                        "intermediate_size": 10240, "vocab_size": 262208, "tie_word_embeddings": True,
                        "max_position_embeddings": 131072, "sliding_window": 1024},
        "vision_config": {"hidden_size": 1152, "intermediate_size": 4304, "num_hidden_layers": 27},
    }
    est = estimate(model_config=cfg, gpu_model="L4", max_model_len=8192)
    # 34 layers, every 6th full: 5 full + 29 sliding -> groups of 5 -> 1 + 6 groups = 35 slots
    assert est["kv_cache_bytes_per_token"] == 2 * 35 * 4 * 256 * 2
    # Gemma-3-4B has about 4.3B parameters with its SigLIP encoder
    assert est["model"]["parameters_billion"] == pytest.approx(4.3, rel=0.05)
    assert any("vision encoder" in w for w in est["warnings"])
    assert any("sliding-window" in w for w in est["warnings"])


@pytest.mark.parametrize("kwargs,field,words", [
    (dict(quantization="int4"), "quantization", ["int4", "awq", "gptq", "bitnet"]),
    (dict(tensor_parallel_size=3), "tensor_parallel_size", ["does not divide num_attention_heads 32", "valid"]),
    (dict(gpu_model="RTX 9999"), "gpu_model", ["RTX 9999", "H100-80GB", "3g.40gb"]),
    (dict(gpu_model="5g.50gb"), "gpu_model", ["5g.50gb"]),
    (dict(gpu_model="A100-40GB 3g.40gb"), "gpu_model", ["does not exist on A100-40GB"]),
    (dict(max_model_len=262144), "max_model_len", ["262144", "131072"]),
    (dict(kv_cache_dtype="int4"), "kv_cache_dtype", ["int4"]),
    (dict(gpu_memory_utilization=1.5), "gpu_memory_utilization", ["1.5"]),
    (dict(vllm_version="latest"), "vllm_version", ["latest"]),
    (dict(gpu_model="H100-80GB 3g.40gb", tensor_parallel_size=2), "tensor_parallel_size", ["MIG"]),
    (dict(group_size=0, quantization="awq"), "group_size", ["group_size"]),
])
def test_bad_input_names_the_field(kwargs, field, words):
    kwargs.setdefault("max_model_len", 8192)
    with pytest.raises(SizingError) as err:
        fit("llama-3.1-8b", **kwargs)
    assert err.value.field == field
    for word in words:
        assert word in str(err.value)


def test_missing_config_field_is_named():
    cfg = dict(MODELS["llama-3.1-8b"])
    del cfg["hidden_size"]
    with pytest.raises(SizingError) as err:
        estimate(model_config=cfg, gpu_model="L4")
    assert err.value.field == "model_config.hidden_size"


def test_vocab_not_divisible_by_tp_is_rejected():
    # llm-d-planner: vLLM rejected Qwen3-14B at TP5 (151936 % 5 != 0), though 40 heads divide.
    with pytest.raises(SizingError) as err:
        fit("qwen3-14b", tensor_parallel_size=5, max_model_len=8192)
    assert err.value.field == "tensor_parallel_size"
    # with as many kv heads as heads only the vocabulary stands in the way
    mha = dict(MODELS["qwen3-14b"], num_key_value_heads=40)
    with pytest.raises(SizingError) as err:
        fit(mha, tensor_parallel_size=5, max_model_len=8192)
    assert "vocab_size 151936" in str(err.value)


def test_quantization_contradicting_checkpoint():
    with pytest.raises(SizingError) as err:
        fit("mixtral-8x7b-gptq", quantization="awq", max_model_len=1024)
    assert err.value.field == "quantization" and "already gptq" in str(err.value)


def test_unsupported_checkpoint_quantization():
    cfg = dict(MODELS["llama-3.1-8b"], quantization_config={"quant_method": "hqq"})
    with pytest.raises(SizingError) as err:
        estimate(model_config=cfg, gpu_model="L4", max_model_len=1024)
    assert err.value.field == "model_config.quantization_config.quant_method"
    assert "hqq" in str(err.value) and "mxfp4" in str(err.value)


def test_missing_tie_word_embeddings_is_conservative():
    cfg = dict(MODELS["qwen3-0.6b"])
    del cfg["tie_word_embeddings"]
    untied = estimate(model_config=cfg, gpu_model="L4", max_model_len=1024)
    tied = estimate(model_config=MODELS["qwen3-0.6b"], gpu_model="L4", max_model_len=1024)
    assert untied["weights_gib_per_gpu"] > tied["weights_gib_per_gpu"]
    assert any("tie_word_embeddings" in w for w in untied["warnings"])


def test_string_numbers_from_templates_are_accepted():
    cfg = {k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
           for k, v in MODELS["llama-3.1-8b"].items()}
    assert estimate(model_config=cfg, gpu_model="H100", max_model_len=8192)["weights_gib_per_gpu"] == 14.99


# ----------------------------------------------------------------------------------------
# 2026 weight formats: MXFP4, NVFP4, bitsandbytes, compressed-tensors, ignore lists
# ----------------------------------------------------------------------------------------

def _q(qcfg, option=None, config="llama-3.1-8b"):
    arch = sizing.parse_model_config(dict(MODELS[config], quantization_config=qcfg))
    return sizing.resolve_quantization(option, None, arch)


def _bytes(quant_config, config="llama-3.1-8b"):
    arch = sizing.parse_model_config(dict(MODELS[config], quantization_config=quant_config))
    quant = sizing.resolve_quantization(None, None, arch)[0]
    return sizing.weight_bytes(arch, quant, 1)["checkpoint_total"]


@pytest.mark.parametrize("backend,expected", [
    # hidden 64, intermediate 96, 2 experts with biases; per row: values/2 + scales/32 (+ copies) + bias
    # marlin: intermediate -> 128, hidden -> 256: 2*128*(128+8+2) + 256*(64+4+2) = 35328 + 17920
    ("marlin", 2 * (35328 + 17920)),
    # flashinfer: both -> 256: 2*256*(128+8+2) + 256*(128+8+2)
    ("flashinfer", 2 * (2 * 256 * 138 + 256 * 138)),
    # triton: intermediate -> 128, hidden stays 64, two scale copies, fp32 bias:
    # 2*128*(32+2*2+4) + 64*(64+2*4+4) = 10240 + 4864
    ("triton", 2 * (10240 + 4864)),
])
def test_mxfp4_expert_bytes_per_backend(backend, expected):
    assert sizing._mxfp4_expert_bytes(64, 96, 2, backend, True) == expected


def test_mxfp4_quantizes_experts_only():
    # gpt-oss keeps attention, router, embeddings and lm_head bf16 (modules_to_not_convert and
    # vLLM's Mxfp4Config, which gives every linear layer the unquantized method).
    cfg = MODELS["gpt-oss-120b"]
    plain = {k: v for k, v in cfg.items() if k != "quantization_config"}
    layers, experts, h, inter = 36, 128, 2880, 2880
    bf16_experts = layers * experts * (3 * h * inter * 2 + (2 * inter + h) * 2)
    marlin_experts = layers * experts * (2 * 2944 * (1536 + 96 + 2) + 3072 * (1472 + 92 + 2))
    none = fit(plain, gpu_model="A100-80GB", max_model_len=4096)
    mxfp4 = fit(cfg, gpu_model="A100-80GB", max_model_len=4096)
    assert mxfp4["quantization"]["method"] == "mxfp4" and mxfp4["quantization"]["backend"] == "marlin"
    rest_none = none["weights_gib_total"] * GIB - bf16_experts
    rest_mxfp4 = mxfp4["weights_gib_total"] * GIB - marlin_experts
    assert rest_mxfp4 == pytest.approx(rest_none, abs=0.01 * GIB)
    # what is left is about 4.2e9 bytes: embeddings + lm_head (2.32e9) and bf16 attention (1.9e9)
    assert rest_none == pytest.approx(4.25e9, rel=0.02)


@pytest.mark.parametrize("gpu,version,backend", [
    ("H100-80GB", "0.14.1", "triton"), ("H100-80GB", "0.10.1", "marlin"), ("H200", "0.19.0", "triton"),
    ("A100-80GB", "0.19.0", "marlin"), ("B200", "0.19.0", "flashinfer"), ("H100-80GB 3g.40gb", "0.19.0", "triton"),
])
def test_mxfp4_backend_follows_gpu_and_version(gpu, version, backend):
    est = fit("gpt-oss-120b", gpu_model=gpu, vllm_version=version, max_model_len=1024)
    assert est["quantization"]["backend"] == backend


def test_mxfp4_needs_a_quantized_checkpoint():
    with pytest.raises(SizingError) as err:
        fit("llama-3.1-8b", quantization="mxfp4", max_model_len=1024)
    assert err.value.field == "quantization" and "checkpoint" in str(err.value)


def test_nvfp4_bytes_and_configs():
    # 64 x 32 layer: 4-bit values 1024 B + fp8 scale per 16 inputs (32 x 4 = 128 B) + two fp32 globals
    assert sizing._linear_bytes(64, 32, {"method": "nvfp4", "group_size": 16}) == 1024 + 128 + 8
    modelopt = _q({"quant_method": "modelopt", "quant_algo": "NVFP4", "group_size": 16,
                  "exclude_modules": ["lm_head"]})[0]
    ct = _q({"quant_method": "compressed-tensors", "ignore": ["lm_head"], "config_groups": {
        "group_0": {"weights": {"num_bits": 4, "type": "float", "strategy": "tensor_group", "group_size": 16}}}})[0]
    assert modelopt["method"] == ct["method"] == "nvfp4"
    with pytest.raises(SizingError) as err:
        _q({"quant_method": "modelopt"})
    assert err.value.field == "model_config.quantization_config.quant_algo"
    # NVFP4 Llama-3.1-8B: 6.98e9 linear weights x (0.5 + 1/16) B + 16-bit embeddings (2.1e9 B)
    est = fit(dict(MODELS["llama-3.1-8b"], quantization_config={"quant_method": "modelopt", "quant_algo": "NVFP4"}),
              max_model_len=4096)
    assert est["weights_gib_per_gpu"] == pytest.approx((6.98e9 * 0.5625 + 2.10e9) / GIB, rel=0.01)


def test_bitsandbytes_bytes():
    n = 64 * 256  # 16384 weights = 256 blocks of 64
    nf4 = {"method": "bitsandbytes", "bits": 4, "double_quant": True}
    # 8192 B of 4-bit values + an fp32 absmax per block of 64: vLLM dequantizes double-quantized
    # absmax at load, so double quant saves nothing on the GPU
    assert sizing._linear_bytes(64, 256, nf4) == n / 2 + 256 * 4
    assert sizing._linear_bytes(64, 256, dict(nf4, double_quant=False)) == n / 2 + 256 * 4
    assert sizing._linear_bytes(64, 256, {"method": "bitsandbytes", "bits": 8}) == n + 256 * 4


def test_bitsandbytes_checkpoint_and_in_flight():
    q4 = _q({"quant_method": "bitsandbytes", "load_in_4bit": True, "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": True})[0]
    assert (q4["method"], q4["bits"], q4["group_size"], q4["double_quant"]) == ("bitsandbytes", 4, 64, True)
    q8 = _q({"quant_method": "bitsandbytes", "load_in_8bit": True})[0]
    assert q8["bits"] == 8
    for qcfg, field in [({"quant_method": "bitsandbytes"}, "load_in_4bit"),
                        ({"quant_method": "bitsandbytes", "load_in_4bit": True}, "bnb_4bit_quant_type")]:
        with pytest.raises(SizingError) as err:
            _q(qcfg)
        assert err.value.field == "model_config.quantization_config." + field
    est = fit("llama-3.1-8b", quantization="bitsandbytes", max_model_len=4096)
    assert est["quantization"]["runtime"] is True
    assert est["recommended"]["args"][-2:] == ["--quantization", "bitsandbytes"]
    # NF4: 6.98e9 linear weights x (0.5 + 4/64) B + 16-bit embeddings and lm_head (2.1e9 B)
    assert est["weights_gib_per_gpu"] == pytest.approx((6.98e9 * 0.5625 + 2.10e9) / GIB, rel=0.01)
    # vLLM refuses pre-quantized BNB under TP; in-flight BNB shards like any layer
    assert fit("llama-3.1-8b", quantization="bitsandbytes", tensor_parallel_size=2, max_model_len=4096)["fits"]
    cfg = dict(MODELS["llama-3.1-8b"], quantization_config={"quant_method": "bitsandbytes", "load_in_4bit": True,
                                                            "bnb_4bit_quant_type": "nf4"})
    with pytest.raises(SizingError) as err:
        fit(cfg, tensor_parallel_size=2, max_model_len=4096)
    assert err.value.field == "tensor_parallel_size" and "bitsandbytes" in str(err.value)


def _ct(weights, **extra):
    return dict({"quant_method": "compressed-tensors", "config_groups": {"group_0": {"weights": weights}}}, **extra)


def test_compressed_tensors_formats_exact_bytes():
    w4a16 = _q(_ct({"num_bits": 4, "type": "int", "strategy": "group", "group_size": 128, "symmetric": True}))[0]
    assert w4a16["method"] == "w4a16"
    # 256 x 64: 8192 B of int4 + a 16-bit scale per group of 128 inputs (2 groups x 64 outputs)
    assert sizing._linear_bytes(256, 64, w4a16) == 8192 + 2 * 64 * 2
    asym = dict(w4a16, symmetric=False)
    assert sizing._linear_bytes(256, 64, asym) == 8192 + 2 * 64 * 2 + 2 * 64 * 0.5
    block = _q(_ct({"num_bits": 8, "type": "float", "strategy": "block", "block_structure": [128, 128]}))[0]
    # 256 x 384: 1 B per weight + an fp32 scale per 128 x 128 tile (3 x 2 tiles)
    assert sizing._linear_bytes(256, 384, block) == 256 * 384 + 6 * 4
    channel = _q(_ct({"num_bits": 8, "type": "float", "strategy": "channel"}))[0]
    assert sizing._linear_bytes(256, 384, channel) == 256 * 384 + 384 * 4
    int8 = _q(_ct({"num_bits": 8, "type": "int", "strategy": "channel"}))[0]
    assert int8["method"] == "int8" and sizing._linear_bytes(256, 384, int8) == 256 * 384 + 384 * 4
    fp8_block = _q({"quant_method": "fp8", "weight_block_size": [128, 128]})[0]
    assert fp8_block["block"] == [128, 128]


@pytest.mark.parametrize("weights,field", [
    ({"type": "int", "strategy": "group", "group_size": 128}, "config_groups.group_0.weights.num_bits"),
    ({"num_bits": 4, "strategy": "group"}, "config_groups.group_0.weights.type"),
    ({"num_bits": 4, "type": "int", "strategy": "group"}, "config_groups.group_0.weights.group_size"),
    ({"num_bits": 8, "type": "float", "strategy": "block"}, "config_groups.group_0.weights.block_structure"),
])
def test_compressed_tensors_missing_field_is_named(weights, field):
    with pytest.raises(SizingError) as err:
        _q(_ct(weights))
    assert err.value.field == "model_config.quantization_config." + field
    with pytest.raises(SizingError) as err:
        _q({"quant_method": "compressed-tensors"})
    assert err.value.field == "model_config.quantization_config.config_groups"


def test_ignore_lists_keep_modules_16_bit():
    w8a8 = {"num_bits": 8, "type": "int", "strategy": "channel"}
    base = _bytes(_ct(w8a8, ignore=["lm_head"]))
    # a router / lm_head entry changes nothing: they are 16-bit in the estimate already
    assert _bytes(_ct(w8a8, ignore=["lm_head", "re:.*mlp.gate$"])) == base
    # keeping attention 16-bit adds 1 B per attention weight less the fp32 channel scales:
    # 32 layers x (2 x 4096 x 4096 + 2 x 4096 x 1024) weights, (4096 + 1024 + 1024 + 4096) scales
    attn = 32 * (2 * 4096 * 4096 + 2 * 4096 * 1024)
    scales = 32 * (4096 + 1024 + 1024 + 4096) * 4
    assert _bytes(_ct(w8a8, ignore=["lm_head", "re:.*self_attn.*"])) - base == attn - scales
    warnings = _q(_ct(w8a8, ignore=["model.layers.0.mlp.down_proj"]))[1]
    assert any("model.layers.0.mlp.down_proj" in w for w in warnings)
    with pytest.raises(SizingError) as err:
        _q(_ct(w8a8, ignore="lm_head"))
    assert err.value.field == "model_config.quantization_config.ignore"


# ----------------------------------------------------------------------------------------
# pipeline parallelism
# ----------------------------------------------------------------------------------------

TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64, "num_hidden_layers": 6,
    "num_attention_heads": 4, "num_key_value_heads": 4, "intermediate_size": 128, "vocab_size": 256,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "max_position_embeddings": 16,
}


@pytest.mark.parametrize("layers,pp,parts", [
    (32, 4, [8, 8, 8, 8]), (30, 4, [7, 8, 8, 7]), (6, 4, [1, 2, 2, 1]), (61, 2, [31, 30]), (5, 5, [1] * 5),
])
def test_pp_partitions_follow_vllm(layers, pp, parts):
    # vLLM gives the remainder one layer each to the stages before the last
    assert sizing.pp_partitions(layers, pp) == parts


def test_pp_stage_bytes_exact():
    arch = sizing.parse_model_config(TINY)
    none = {"method": "none"}
    # per layer: q, k, v, o 64 x 64 and gate, up, down 64 x 128, all bf16, + two 64-wide norms
    layer = (4 * 64 * 64 + 3 * 64 * 128) * 2 + 2 * 64 * 2
    table = 256 * 64 * 2           # embeddings = lm_head (vocab 256 is a multiple of 64)
    final_norm = 64 * 2
    wb = sizing.weight_bytes(arch, none, 1, pp=3)
    assert [st["layers"] for st in wb["stages"]] == [[0, 2], [2, 4], [4, 6]]
    assert [st["bytes"] for st in wb["stages"]] == [2 * layer + table, 2 * layer, 2 * layer + table + final_norm]
    assert wb["checkpoint_per_gpu"] == 2 * layer + table + final_norm
    assert wb["checkpoint_total"] == 6 * layer + 2 * table + final_norm
    # tied embeddings: the last stage still keeps its own lm_head copy
    tied = sizing.parse_model_config(dict(TINY, tie_word_embeddings=True))
    stages = sizing.weight_bytes(tied, none, 1, pp=3)["stages"]
    assert stages[2]["bytes"] == 2 * layer + table + final_norm
    assert sizing.weight_bytes(tied, none, 1)["checkpoint_total"] == 6 * layer + table + final_norm


def test_pp_kv_tokens_use_the_stage_layers():
    # Llama-3.1-8B PP2: each stage keeps 16 layers' KV (65536 B per token); both stages hold
    # 7.51 GiB of weights, so the pool is 0.95 x 79.19 - 7.51 - activation - non-torch
    est = fit("llama-3.1-8b", pipeline_parallel_size=2, gpu_memory_utilization=0.95, max_model_len=8192)
    assert est["kv_cache_bytes_per_token_per_gpu"] == 2 * 16 * 8 * 128 * 2
    assert est["kv_cache_bytes_per_token"] == 131072
    pool = 0.95 * 79.19 - est["weights_gib_per_gpu"] - est["activation_gib_per_gpu"] - est["non_torch_gib_per_gpu"]
    assert est["kv_cache_gib_per_gpu"] == pytest.approx(pool, abs=0.01)
    assert est["kv_cache_tokens"] == pytest.approx(pool * GIB / 65536, rel=0.001)
    assert est["pipeline_stage_layers"] == [16, 16]
    assert est["recommended"]["args"][:4] == ["--tensor-parallel-size", "1", "--pipeline-parallel-size", "2"]
    # the whole replica is still the whole model
    whole = fit("llama-3.1-8b", max_model_len=8192)["weights_gib_total"]
    assert est["weights_gib_total"] == pytest.approx(whole, abs=0.04)


@pytest.mark.parametrize("kwargs,words", [
    (dict(pipeline_parallel_size=0), ["positive integer"]),
    (dict(pipeline_parallel_size="2"), ["positive integer"]),
    (dict(pipeline_parallel_size=33), ["33", "32 layers"]),
    (dict(pipeline_parallel_size=2, gpu_model="H100-80GB 3g.40gb"), ["MIG"]),
])
def test_bad_pipeline_parallel_size_is_named(kwargs, words):
    with pytest.raises(SizingError) as err:
        fit("llama-3.1-8b", max_model_len=8192, **kwargs)
    assert err.value.field == "pipeline_parallel_size"
    for word in words:
        assert word in str(err.value)


# ----------------------------------------------------------------------------------------
# vision towers
# ----------------------------------------------------------------------------------------

# Qwen2.5-VL-7B-Instruct config.json as remembered (UNCONFIRMED: not re-read here); the model
# card gives 8.29B parameters.
QWEN25_VL_7B = {
    "architectures": ["Qwen2_5_VLForConditionalGeneration"], "model_type": "qwen2_5_vl", "hidden_size": 3584,
    "num_hidden_layers": 28, "num_attention_heads": 28, "num_key_value_heads": 4, "intermediate_size": 18944,
    "vocab_size": 152064, "tie_word_embeddings": False, "torch_dtype": "bfloat16", "max_position_embeddings": 128000,
    "vision_config": {"depth": 32, "hidden_size": 1280, "intermediate_size": 3420, "num_heads": 16, "in_chans": 3,
                      "out_hidden_size": 3584, "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
                      "hidden_act": "silu"},
}


def test_vision_tower_exact_params():
    # 2 blocks of width 8, inter 16, SiLU-gated: 4*64 + 4*8 (qkv/o) + 3*8*16 + 16 + 8 (MLP) + 4*8 (norms)
    vision = {"depth": 2, "hidden_size": 8, "intermediate_size": 16, "patch_size": 2, "in_chans": 3,
              "temporal_patch_size": 2, "spatial_merge_size": 2, "out_hidden_size": 4, "hidden_act": "silu"}
    block = 4 * 64 + 4 * 8 + 3 * 8 * 16 + 16 + 8 + 4 * 8
    patch = 3 * 2 * 2 * 2 * 8
    merger = 8 + 32 * 32 + 32 + 32 * 4 + 4
    assert sizing._vision_params(vision, 4, "v") == 2 * block + patch + merger
    # SigLIP-style: two matrices, learned positions (image 8 / patch 2)^2, one projector into the LM
    siglip = {"num_hidden_layers": 1, "hidden_size": 8, "intermediate_size": 16, "patch_size": 2, "image_size": 8}
    block = 4 * 64 + 4 * 8 + 2 * 8 * 16 + 16 + 8 + 4 * 8
    assert sizing._vision_params(siglip, 4, "v") == block + 3 * 2 * 2 * 8 + 16 * 8 + 8 * 4


def test_qwen25_vl_counts_its_vision_tower():
    est = fit(QWEN25_VL_7B, max_model_len=8192)
    assert est["model"]["parameters_billion"] == pytest.approx(8.29, rel=0.01)
    assert any("vision encoder" in w for w in est["warnings"])
    text_only = fit({k: v for k, v in QWEN25_VL_7B.items() if k != "vision_config"}, max_model_len=8192)
    # the tower is about 0.67B parameters = 1.25 GiB in bf16
    assert est["weights_gib_per_gpu"] - text_only["weights_gib_per_gpu"] == pytest.approx(0.676e9 * 2 / GIB, rel=0.02)


def test_vision_config_bad_field_is_named():
    cfg = dict(QWEN25_VL_7B, vision_config=dict(QWEN25_VL_7B["vision_config"], patch_size="x"))
    with pytest.raises(SizingError) as err:
        fit(cfg, max_model_len=8192)
    assert err.value.field == "model_config.vision_config.patch_size"


# ----------------------------------------------------------------------------------------
# hybrid (sliding-window + full) KV caches
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("types,slots", [
    (["full"] * 32, 32),
    (["sliding"] * 32, 32),                      # Mistral: one type, one group
    (["sliding", "full"] * 18, 36),              # gpt-oss-120b: 18 + 18
    (["sliding"] * 5 + ["full"] + ["sliding"] * 5 + ["full"] + ["sliding"] * 5 + ["full"] + ["sliding"] * 5
     + ["full"] + ["sliding"] * 5 + ["full"] + ["sliding"] * 4, 35),   # 5 full + 29 sliding
    (["sliding"] * 52 + ["full"] * 10, 70),      # Gemma-3-27B: 52 sliding -> 6 groups of 10, + 1
    (["sliding"] * 12 + ["full"] * 13, 26),      # under 1.5x: group 13, 12 sliding padded to 13
])
def test_kv_layer_slots_follow_vllm_grouping(types, slots):
    assert sizing._kv_layer_slots(types) == slots


def test_layer_types_from_config():
    gemma3 = {"sliding_window": 1024, "sliding_window_pattern": 6}
    assert sizing._layer_types(gemma3, "gemma3_text", 12, "m").count("full") == 2
    assert sizing._layer_types({"sliding_window": 4096}, "gemma2", 4, "m") == ["sliding", "full", "sliding", "full"]
    assert sizing._layer_types({"sliding_window": 4096}, "mistral", 3, "m") == ["sliding"] * 3
    assert sizing._layer_types({"sliding_window": 4096, "use_sliding_window": False}, "qwen2", 2, "m") == ["full"] * 2
    oss = MODELS["gpt-oss-120b"]
    assert sizing.parse_model_config(dict(oss, layer_types=["sliding_attention", "full_attention"] * 18))[
        "kv_layer_slots"] == 36
    with pytest.raises(SizingError) as err:
        sizing.parse_model_config(dict(oss, layer_types=["full_attention"] * 3))
    assert err.value.field == "model_config.layer_types"
    nxt = sizing.parse_model_config(dict(MODELS["llama-3.1-8b"], layer_types=["linear_attention", "full_attention"] * 16))
    assert any("linear attention" in w for w in nxt["warnings"])


def test_gemma3_27b_tokens_follow_the_padded_slots():
    # Gemma-3-27B text: 62 layers (52 sliding, 10 full), 16 kv heads of 128 -> 70 slots per token
    cfg = {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 5376,
           "num_hidden_layers": 62, "num_attention_heads": 32, "num_key_value_heads": 16, "head_dim": 128,
           "intermediate_size": 21504, "vocab_size": 262208, "tie_word_embeddings": True,
           "torch_dtype": "bfloat16", "max_position_embeddings": 131072, "sliding_window": 1024,
           "sliding_window_pattern": 6}
    est = estimate(model_config=cfg, gpu_model="H100-80GB", max_model_len=8192, gpu_memory_utilization=0.95)
    per_token = 2 * 70 * 16 * 128 * 2
    assert est["kv_cache_bytes_per_token"] == per_token
    assert est["kv_cache_tokens"] == pytest.approx(est["kv_cache_gib_per_gpu"] * GIB / per_token, rel=0.001)
    assert any("70 layer slots (for 62 layers)" in w for w in est["warnings"])


@pytest.mark.parametrize("extra,moe_ids", [
    ({"first_k_dense_replace": 1}, list(range(1, 8))),                    # DeepSeek dense first layer
    ({"first_k_dense_replace": 1, "moe_layer_freq": 2}, [2, 4, 6]),      # DeepSeek every 2nd layer
    ({"decoder_sparse_step": 2}, [1, 3, 5, 7]),                          # Qwen-MoE (i + 1) % step
    ({"mlp_only_layers": [0, 7]}, list(range(1, 7))),                   # Qwen-MoE dense exceptions
])
def test_moe_layer_selection(extra, moe_ids):
    cfg = dict(TINY, num_hidden_layers=8, num_experts=4, moe_intermediate_size=32, **extra)
    arch = sizing.parse_model_config(cfg)
    assert arch["moe_layer_ids"] == moe_ids
    none = {"method": "none"}
    h = 64
    dense = 3 * h * 128 * 2
    moe = 4 * 3 * h * 32 * 2 + h * 4 * 2  # 4 experts + the 16-bit router
    base = sizing.weight_bytes(sizing.parse_model_config(dict(TINY, num_hidden_layers=8)), none, 1)["checkpoint_total"]
    got = sizing.weight_bytes(arch, none, 1)["checkpoint_total"]
    assert got - base == len(moe_ids) * (moe - dense)


def test_mla_kv_matches_vllm_admission_log():
    # vllm#15871 (v0.8.3, DeepSeek-V2-Lite-Chat): "To serve at least one request with the models's
    # max seq len (32768), (0.95 GiB KV cache is needed": 27 layers x (512 + 64) x 2 B x 32768
    est = fit(DEEPSEEK_V2_LITE, max_model_len=32768)
    assert est["kv_cache_bytes_per_token"] * 32768 / GIB == pytest.approx(0.95, abs=0.005)
