# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""VRAM sizing for vLLM: weights, KV cache and overhead per GPU or MIG slice.

Pure Python, no Ansible and no GPU needed. The estimate follows how vLLM itself budgets
memory at start-up (facts/llm-serving.md, part D)::

    available_kv = gpu_memory_utilization * usable_GiB - weights - activation_peak - non_torch

and then cuts that pool into blocks of 16 tokens. Every constant below says where it comes
from; those marked UNCONFIRMED are extrapolations that a measurement should replace.
See docs/sizing.md for the accuracy table.
"""

from __future__ import annotations

import json
import math
import os
import re
import struct

GIB = 1024 ** 3

# vLLM's default KV block size (tokens per block); token counts are whole blocks.
BLOCK_SIZE = 16

# vLLM pads the vocabulary of VocabParallelEmbedding / ParallelLMHead to a multiple of 64.
VOCAB_PADDING = 64

# Memory the CUDA context takes before vLLM starts counting: vLLM logs "Free memory on device:
# 78.57/79.18 GiB on startup" on an idle H100 (llm-d-benchmark empirical-vllm-memory-results).
# It sits outside the gpu_memory_utilization budget, so gmu * total + this must fit.
CUDA_CONTEXT_GIB = 0.61

# Extra room kept free above the CUDA context when we *recommend* a utilization: the sampler
# warm-up of gpt-oss-20b needed ~0.77 GiB beyond the budget at gmu 0.95 and OOMed (llm-d-planner
# v0.19 run matrix), so recommendations leave 1 GiB.
RECOMMENDED_HEADROOM_GIB = 1.0
MAX_RECOMMENDED_GPU_MEMORY_UTILIZATION = 0.95

# Activation peak ("torch peak memory increase" in vLLM's profiling log line), GiB.
# It is TP-invariant and tracks vocab size (the sampler warm-up runs max_num_seqs dummy
# requests over the full vocabulary). Least-squares fit over the published H100 runs:
#   current (vLLM >= 0.17): 12 dense runs of llm-d-planner v0.19 (CodeLlama 0.77 ... Gemma 3.66),
#     residual <= 0.16 GiB; MoE runs (Mixtral 1.21, Qwen1.5-MoE 2.47, Qwen3-30B-A3B 2.68,
#     DeepSeek-V2-Lite 1.93) sit 0.24-0.60 above the dense line -> +0.45.
#   legacy (vLLM < 0.17): Llama-3.1-8B 4.76/4.84, Qwen3 0.6B/14B/32B 5.56-5.64 (llm-d-benchmark
#     empirical results; llm-d-planner version study: 5.64 -> 2.23 GiB at v0.17).
#     The legacy MoE term is UNCONFIRMED (no legacy MoE measurement found).
ACTIVATION_PROFILES = {
    "current": {"base_gib": 0.18, "per_vocab_entry_gib": 1.35e-5, "moe_extra_gib": 0.45},
    "legacy": {"base_gib": 0.47, "per_vocab_entry_gib": 3.38e-5, "moe_extra_gib": 0.45},
}
ACTIVATION_CURRENT_SINCE = (0, 17)

# Non-torch memory ("non-torch forward increase memory"), GiB per GPU, keyed by the smallest
# TP size it applies to. Current: v0.19 runs, TP1 0.24-0.27, TP2 2.06-2.08, TP4 2.13-2.17
# (NCCL all-reduce buffers, llm-d-planner report). Legacy TP1 0.13 (v0.15-0.17), TP2 0.55
# (Llama-3.3-70B-FP8 TP2, llm-d-benchmark). TP8 is UNCONFIRMED: the TP4 value is reused.
NON_TORCH_PROFILES = {
    "current": {1: 0.25, 2: 2.10, 4: 2.15},
    "legacy": {1: 0.13, 2: 0.55},
}
NON_TORCH_TP1_CURRENT_SINCE = (0, 18)
NON_TORCH_TPN_CURRENT_SINCE = (0, 17)

# Pipeline parallelism, from llm-d-planner's v0.19 Llama-3.1-8B TP1 sweep: activation 1.89 (PP1)
# -> 1.10 (PP2) -> 1.05 GiB (PP4), non-torch 0.25 -> 0.07 GiB. One model only, so the activation
# factor (1.10 / 1.91 fitted) and the PP>1 non-torch figure are UNCONFIRMED for other models,
# for TP>1 with PP (the TP table is used) and for older vLLM.
PP_ACTIVATION_FACTOR = 0.57
PP_NON_TORCH_TP1_GIB = 0.07

DEFAULT_VLLM_VERSION = "0.19.0"

# Memory of a whole GPU as torch/vLLM see it (cudaMemGetInfo total), GiB.
# Only H100-80GB is measured (79.19 GiB, facts/llm-serving.md part D). The others are
# UNCONFIRMED: A100 values are the "total capacity" PyTorch prints in OOM messages; the rest
# are nvidia-smi's MiB total / 1024 * 0.99 (H100 and A100 lose about 0.6-1% to the driver).
GPU_MEMORY_GIB = {
    "H100-80GB": {"gib": 79.19, "confirmed": True, "source": "vLLM log on H100 80GB HBM3 (facts D)"},
    "H100-94GB": {"gib": 93.06, "confirmed": False, "source": "MIG 7g.94gb 93.12 GiB less the H100 7g/full gap"},
    "H200": {"gib": 139.0, "confirmed": False, "source": "nvidia-smi 143771 MiB * 0.99"},
    "B200": {"gib": 177.3, "confirmed": False, "source": "180 GB nominal, nvidia-smi total * 0.99 (estimate)"},
    "A100-80GB": {"gib": 79.15, "confirmed": False, "source": "PyTorch OOM 'total capacity' on A100 80GB"},
    "A100-40GB": {"gib": 39.59, "confirmed": False, "source": "PyTorch OOM 'total capacity' on A100 40GB"},
    "A30": {"gib": 23.2, "confirmed": False, "source": "MIG 4g.24gb 23.44 GiB less ~1%"},
    "L40S": {"gib": 44.54, "confirmed": False, "source": "nvidia-smi 46068 MiB * 0.99"},
    "L4": {"gib": 22.27, "confirmed": False, "source": "nvidia-smi 23034 MiB * 0.99"},
    "A10G": {"gib": 22.26, "confirmed": False, "source": "nvidia-smi 23028 MiB * 0.99"},
}

# Which GPU a name means: (regex on the normalised name, canonical key). First match wins.
_GPU_PATTERNS = [
    (r"h100.*(nvl|94)", "H100-94GB"),
    (r"h100", "H100-80GB"),
    (r"h200", "H200"),
    (r"b200", "B200"),
    (r"a100.*80", "A100-80GB"),
    (r"a100.*40", "A100-40GB"),
    (r"\ba30\b", "A30"),
    (r"l40s", "L40S"),
    (r"\bl4\b", "L4"),
    (r"\ba10g?\b", "A10G"),
]

# MIG GPU-instance memory, GiB, per parent GPU and profile (facts/mig-and-nvml.md section 1).
# Kept in ONE dict so that plugins/module_utils/mig.py can replace it. Values are nvidia-smi's
# profile memory; torch may see slightly less (UNCONFIRMED). A100-80GB values come from the
# mock only; H200 and B200 have fractions only, so their GiB are the H100 value scaled by
# 141/80 and 180/80 (UNCONFIRMED).
MIG_PROFILE_MEMORY_GIB = {
    "A100-40GB": {"1g.5gb": 4.75, "1g.5gb+me": 4.75, "1g.10gb": 9.62, "2g.10gb": 9.62,
                  "3g.20gb": 19.5, "4g.20gb": 19.5, "7g.40gb": 39.25},
    "A100-80GB": {"1g.10gb": 9.62, "1g.10gb+me": 9.62, "1g.20gb": 19.5, "2g.20gb": 19.5,
                  "3g.40gb": 39.25, "4g.40gb": 39.25, "7g.80gb": 78.5},
    "A30": {"1g.6gb": 5.81, "1g.6gb+me": 5.81, "2g.12gb": 11.69, "2g.12gb+me": 11.69,
            "4g.24gb": 23.44},
    "H100-80GB": {"1g.10gb": 9.75, "1g.10gb+me": 9.75, "1g.20gb": 19.62, "2g.20gb": 19.62,
                  "3g.40gb": 39.5, "4g.40gb": 39.5, "7g.80gb": 79.25},
    "H100-94GB": {"1g.12gb": 10.75, "1g.12gb+me": 10.75, "1g.24gb": 21.62, "2g.24gb": 21.62,
                  "3g.47gb": 46.38, "4g.47gb": 46.38, "7g.94gb": 93.12},
    "H200": {"1g.18gb": 17.18, "1g.18gb+me": 17.18, "1g.35gb": 34.58, "2g.35gb": 34.58,
             "3g.71gb": 69.62, "4g.71gb": 69.62, "7g.141gb": 139.68},
    "B200": {"1g.23gb": 21.94, "1g.23gb+me": 21.94, "1g.45gb": 44.14, "2g.45gb": 44.14,
             "3g.90gb": 88.88, "4g.90gb": 88.88, "7g.180gb": 178.31},
}
# MIG profiles whose GiB above is taken from a real nvidia-smi capture (facts file).
_MIG_CONFIRMED_PARENTS = ("A100-40GB", "A30", "H100-80GB", "H100-94GB")

_MIG_RE = re.compile(r"(?:(\d+)c\.)?(\d+g\.\d+gb(?:\+me\.all|\+me|\.me|\+gfx|-me)?)")

QUANTIZATION_METHODS = ("none", "fp8", "int8", "awq", "gptq", "bitnet", "bitsandbytes", "mxfp4", "nvfp4",
                        "w4a16")
# Formats only a pre-quantized checkpoint has (vLLM does not produce them at load time).
CHECKPOINT_ONLY_METHODS = ("mxfp4", "nvfp4", "w4a16")
# Formats vLLM makes at load time from a 16-bit checkpoint (they need --quantization).
RUNTIME_METHODS = ("fp8", "bitsandbytes")
CHECKPOINT_METHODS = ("awq", "gptq", "fp8", "fbgemm_fp8", "bitnet", "mxfp4", "modelopt", "bitsandbytes",
                      "compressed-tensors")
KV_CACHE_DTYPES = ("auto", "fp8")

# Bits per weight of a quantized linear layer (before group scales and zeros).
_QUANT_BITS = {"none": 16, "fp8": 8, "int8": 8, "awq": 4, "gptq": 4, "bitnet": 1.58, "bitsandbytes": 4,
               "mxfp4": 4, "nvfp4": 4, "w4a16": 4}

# Architectures whose MLP is two matrices (up, down) instead of gated three.
_NON_GATED_MLP = ("gpt2", "gpt_neox", "gpt_bigcode", "opt", "phi", "falcon", "starcoder2", "bloom")
# Architectures with bias on q/k/v.
_QKV_BIAS = ("qwen2", "qwen2_moe", "qwen2_vl", "qwen2_5_vl")


class SizingError(ValueError):
    """Bad input; ``field`` names the option or config key at fault."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------

def parse_version(text):
    """'0.19.0' / 'v0.10.1.dev3' -> (0, 19). Raises SizingError on garbage."""
    match = re.match(r"^v?(\d+)\.(\d+)", str(text).strip())
    if not match:
        raise SizingError("vllm_version", "vllm_version %r is not a version such as 0.19.0" % (text,))
    return int(match.group(1)), int(match.group(2))


def _int_field(cfg, key, field_prefix, required=True, default=None):
    value = cfg.get(key, default)
    if value is None:
        if required:
            raise SizingError("%s.%s" % (field_prefix, key),
                              "model config is missing %s (needed to size the model)" % key)
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())  # templated Ansible values arrive as strings
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or value <= 0:
        raise SizingError("%s.%s" % (field_prefix, key),
                          "%s must be a positive integer, got %r" % (key, value))
    return int(value)


def _round(value, digits=2):
    return round(float(value) + 0.0, digits)


def _round_down(value, digits=2):
    factor = 10 ** digits
    return math.floor(value * factor + 1e-9) / factor


def _round_up(value, digits=2):
    factor = 10 ** digits
    return math.ceil(value * factor - 1e-9) / factor


# --------------------------------------------------------------------------------------
# model architecture
# --------------------------------------------------------------------------------------

def parse_model_config(config, field="model_config"):
    """Turn a Hugging Face config.json dict into the numbers sizing needs.

    Multimodal configs keep the language model in ``text_config``; its keys win, and the
    top-level ones fill the gaps (torch_dtype, tie_word_embeddings). ``vision_config`` is
    sized roughly and kept 16-bit.
    """
    if not isinstance(config, dict) or not config:
        raise SizingError(field, "%s must be a non-empty dict of config.json fields" % field)
    warnings = []
    text = config.get("text_config")
    prefix = field
    if isinstance(text, dict) and text.get("hidden_size"):
        merged = dict(config)
        merged.pop("text_config", None)
        merged.update({k: v for k, v in text.items() if v is not None})
        cfg = merged
        prefix = field + ".text_config"
    else:
        cfg = config

    hidden = _int_field(cfg, "hidden_size", prefix)
    layers = _int_field(cfg, "num_hidden_layers", prefix)
    heads = _int_field(cfg, "num_attention_heads", prefix)
    kv_heads = _int_field(cfg, "num_key_value_heads", prefix, required=False) or heads
    head_dim = _int_field(cfg, "head_dim", prefix, required=False) or hidden // heads
    vocab = _int_field(cfg, "vocab_size", prefix)
    model_type = str(cfg.get("model_type") or "").lower()

    experts = None
    for key in ("num_local_experts", "num_experts", "n_routed_experts"):
        if cfg.get(key):
            experts = _int_field(cfg, key, prefix)
            break
    if experts is not None and experts <= 1:
        experts = None
    intermediate = _int_field(cfg, "intermediate_size", prefix, required=experts is None
                              or not cfg.get("moe_intermediate_size"))
    moe_intermediate = None
    if experts:
        moe_intermediate = (_int_field(cfg, "moe_intermediate_size", prefix, required=False)
                            or intermediate)
    if kv_heads > heads or heads % kv_heads:
        raise SizingError(prefix + ".num_key_value_heads",
                          "num_key_value_heads (%d) must divide num_attention_heads (%d)" % (kv_heads, heads))

    if "tie_word_embeddings" in cfg:
        tied = bool(cfg["tie_word_embeddings"])
    else:
        # transformers defaults to True; we assume an untied lm_head so we never under-size.
        tied = False
        warnings.append("tie_word_embeddings missing from the model config: assumed false "
                        "(a separate lm_head), which can over-estimate weights slightly")

    dtype = str(cfg.get("torch_dtype") or cfg.get("dtype") or "bfloat16").replace("torch.", "")
    max_pos = _int_field(cfg, "max_position_embeddings", prefix, required=False)

    # Dense layers inside an MoE stack (DeepSeek first_k_dense_replace, Qwen mlp_only_layers).
    # DeepSeek: layer i is MoE when i >= first_k_dense_replace and i % moe_layer_freq == 0;
    # Qwen-MoE: when (i + 1) % decoder_sparse_step == 0 and i is not in mlp_only_layers.
    moe_layer_ids = []
    if experts:
        dense_first = int(cfg.get("first_k_dense_replace") or 0)
        step = int(cfg.get("decoder_sparse_step") or 1)
        freq = int(cfg.get("moe_layer_freq") or 1)
        mlp_only = set(cfg.get("mlp_only_layers") or [])
        moe_layer_ids = [i for i in range(layers) if i >= dense_first and i % freq == 0
                         and i not in mlp_only and (i + 1) % step == 0]
    moe_layers = len(moe_layer_ids)
    shared_inter = 0
    if experts:
        if cfg.get("shared_expert_intermediate_size"):
            shared_inter = int(cfg["shared_expert_intermediate_size"])
        elif cfg.get("n_shared_experts"):
            shared_inter = int(cfg["n_shared_experts"]) * moe_intermediate

    mla = None
    if cfg.get("kv_lora_rank"):
        mla = {
            "kv_lora_rank": int(cfg["kv_lora_rank"]),
            "q_lora_rank": int(cfg.get("q_lora_rank") or 0),
            "qk_rope_head_dim": int(cfg.get("qk_rope_head_dim") or 64),
            "qk_nope_head_dim": int(cfg.get("qk_nope_head_dim") or 128),
            "v_head_dim": int(cfg.get("v_head_dim") or 128),
        }

    layer_types = _layer_types(cfg, model_type, layers, prefix)
    kv_slots = _kv_layer_slots(layer_types)
    if kv_slots != layers:
        warnings.append("%s mixes sliding-window and full attention layers: vLLM's hybrid KV cache manager "
                        "groups them with padding into %d layer slots (for %d layers), and the logged token "
                        "count follows those slots; vLLM admits a max_model_len beyond that pool because "
                        "windowed layers keep only their window, which this estimate does not credit"
                        % (model_type, kv_slots, layers))
    if "other" in layer_types:
        warnings.append("%s has layers that are neither full nor sliding-window attention (e.g. linear "
                        "attention); they are sized as full attention, which over-states the KV cache "
                        "per token (UNCONFIRMED)" % model_type)

    vision_params = 0
    vision = config.get("vision_config")
    if isinstance(vision, dict) and vision.get("hidden_size") and (vision.get("num_hidden_layers") or vision.get("depth")):
        vision_params = _vision_params(vision, hidden, field + ".vision_config")
        warnings.append("vision encoder counted from vision_config (%.3fB parameters, 16-bit, sharded over TP "
                        "like vLLM's default mm_encoder_tp_mode; not checked against a log)" % (vision_params / 1e9))

    rope_factor = float(cfg.get("partial_rotary_factor") or 1.0)
    return {
        "model_type": model_type,
        "architecture": (cfg.get("architectures") or [model_type or "unknown"])[0],
        "hidden_size": hidden,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "head_dim": head_dim,
        "intermediate_size": intermediate,
        "vocab_size": vocab,
        "tie_word_embeddings": tied,
        "torch_dtype": dtype,
        "max_position_embeddings": max_pos,
        "num_experts": experts,
        "num_experts_per_tok": int(cfg.get("num_experts_per_tok") or 0) or None,
        "moe_intermediate_size": moe_intermediate,
        "moe_layers": moe_layers,
        "moe_layer_ids": moe_layer_ids,
        "shared_expert_intermediate_size": shared_inter,
        "mla": mla,
        "gated_mlp": model_type not in _NON_GATED_MLP,
        "qkv_bias": model_type in _QKV_BIAS or bool(cfg.get("attention_bias")),
        "qk_norm": model_type.startswith("qwen3"),
        "expert_bias": model_type == "gpt_oss",
        "rotary_dim": int(head_dim * rope_factor),
        "layer_types": layer_types,
        "kv_layer_slots": kv_slots,
        "vision_params": vision_params,
        "quantization_config": cfg.get("quantization_config") or config.get("quantization_config"),
        "warnings": warnings,
    }


def _vision_params(vision, text_hidden, field):
    """Parameters of a vision tower from vision_config (kept 16-bit).

    Per block: q/k/v/o (4 h^2 + biases), the MLP (two matrices, three when gated: Qwen2.5-VL's
    SiLU blocks) and two norms. Plus the patch embedding (channels x temporal patch x patch^2 x h),
    learned position embeddings when image_size is given (SigLIP: (image/patch)^2 x h), and the
    projector into the language model: Qwen's patch merger (spatial_merge_size^2 x h squared, then
    to out_hidden_size) or a single h x text hidden matrix.
    """
    if vision.get("embed_dim"):
        # Qwen2-VL names the tower width embed_dim and keeps the LM width in hidden_size
        vision = dict(vision, out_hidden_size=vision.get("hidden_size"), hidden_size=vision["embed_dim"],
                      intermediate_size=int(vision["embed_dim"] * float(vision.get("mlp_ratio") or 4)))
    h = _int_field(vision, "hidden_size", field)
    layers = _int_field(vision, "num_hidden_layers", field, required=False) or _int_field(vision, "depth", field)
    inter = _int_field(vision, "intermediate_size", field, required=False) or 4 * h
    patch = _int_field(vision, "patch_size", field, required=False) or 14
    channels = _int_field(vision, "in_chans", field, required=False) or _int_field(
        vision, "num_channels", field, required=False) or 3
    temporal = _int_field(vision, "temporal_patch_size", field, required=False) or 1
    gated = str(vision.get("hidden_act") or "").lower() == "silu" and vision.get("out_hidden_size") is not None
    mats = 3 if gated else 2
    block = 4 * h * h + 4 * h + mats * h * inter + inter + h + 4 * h
    params = layers * block + channels * temporal * patch * patch * h
    image = _int_field(vision, "image_size", field, required=False)
    if image:
        params += (image // patch) ** 2 * h
    merge = _int_field(vision, "spatial_merge_size", field, required=False)
    out_hidden = _int_field(vision, "out_hidden_size", field, required=False)
    if merge and out_hidden:
        wide = h * merge * merge
        params += h + wide * wide + wide + wide * out_hidden + out_hidden
    else:
        params += h * text_hidden
    return params


def _layer_types(cfg, model_type, layers, prefix):
    """'full', 'sliding' or 'other' per decoder layer, from config.json.

    ``layer_types`` wins (gpt-oss, newer Gemma and Qwen3-Next configs); otherwise Gemma 3 is
    full every ``sliding_window_pattern``-th layer (default 6), Gemma 2 / Cohere2 alternate
    starting with sliding, and a plain ``sliding_window`` (Mistral) makes every layer windowed.
    """
    given = cfg.get("layer_types")
    if given is not None:
        if not isinstance(given, list) or len(given) != layers:
            raise SizingError(prefix + ".layer_types", "layer_types must list one type per layer (%d), got %r"
                              % (layers, given if not isinstance(given, list) else "%d entries" % len(given)))
        names = {"full_attention": "full", "sliding_attention": "sliding"}
        return [names.get(str(t), "other") for t in given]
    window = cfg.get("sliding_window")
    if not window or cfg.get("use_sliding_window", True) is False:
        return ["full"] * layers
    if model_type in ("gemma3", "gemma3_text"):
        pattern = int(cfg.get("sliding_window_pattern") or 6)
        return ["full" if (i + 1) % pattern == 0 else "sliding" for i in range(layers)]
    if model_type in ("gemma2", "cohere2"):
        return ["sliding" if i % 2 == 0 else "full" for i in range(layers)]
    return ["sliding"] * layers


def _kv_layer_slots(layer_types):
    """Layer slots vLLM's hybrid KV cache manager pays for per token.

    vllm/v1/core/kv_cache_utils.py (commit 001cabc): layers of one attention type form one
    group; with several types each type is split into groups of the smallest type's layer count
    (the largest when it is under 1.5x the smallest), the last group padded. num_blocks is the
    pool over (page size x group size) and the logged "GPU KV cache size" is num_blocks // groups
    x block_size, i.e. the pool over group size x number of groups layers.
    """
    counts = {}
    for kind in layer_types:
        counts[kind] = counts.get(kind, 0) + 1
    if len(counts) < 2:
        return len(layer_types)
    group = min(counts.values())
    if max(counts.values()) < group * 1.5:
        group = max(counts.values())
    return group * sum(int(math.ceil(c / float(group))) for c in counts.values())


def read_model_path(path):
    """Read config.json and the exact checkpoint size from a local model directory."""
    if not path or not os.path.isdir(path):
        raise SizingError("model_path", "model_path %r is not a directory" % (path,))
    config_file = os.path.join(path, "config.json")
    try:
        with open(config_file, "r", encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as exc:
        raise SizingError("model_path", "cannot read %s: %s" % (config_file, exc))
    total_size = None
    source = None
    index = os.path.join(path, "model.safetensors.index.json")
    single = os.path.join(path, "model.safetensors")
    if os.path.isfile(index):
        try:
            with open(index, "r", encoding="utf-8") as handle:
                total_size = int(json.load(handle)["metadata"]["total_size"])
            source = "model.safetensors.index.json metadata.total_size"
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise SizingError("model_path", "cannot read metadata.total_size from %s: %s" % (index, exc))
    elif os.path.isfile(single):
        # A safetensors file is an 8-byte little-endian header length, the JSON header, then data.
        with open(single, "rb") as handle:
            header_len = struct.unpack("<Q", handle.read(8))[0]
        total_size = os.path.getsize(single) - 8 - header_len
        source = "model.safetensors data size"
    return config, total_size, source


# --------------------------------------------------------------------------------------
# quantization
# --------------------------------------------------------------------------------------

_QCFG = "model_config.quantization_config"


def _ignored_categories(patterns, field):
    """Which of our weight groups a modules_to_not_convert / ignore list keeps 16-bit.

    Embeddings, lm_head, routers (mlp.gate / mlp.router) and vision towers are 16-bit in our
    estimate anyway; attention, shared experts and experts can be kept out of quantization
    (e.g. gpt-oss ``model.layers.*.self_attn``). Per-layer entries are not modelled: they warn.
    """
    kept = set()
    unmodelled = []
    if patterns is None:
        return kept, unmodelled
    if not isinstance(patterns, (list, tuple)):
        raise SizingError(field, "%s must be a list of module names, got %r" % (field, patterns))
    for entry in patterns:
        text = str(entry).lower()
        if text.startswith("re:"):
            text = text[3:]
        if "shared_expert" in text:
            kept.add("shared_experts")
        elif "experts" in text:
            kept.add("experts")
        elif "attn" in text and not re.search(r"layers\.\d+\.", text):
            kept.add("attn")
        elif re.search(r"lm_head|embed|mlp\.gate\b|gate\$|router|visual|vision|multi_modal|projector", text):
            continue  # already 16-bit in the estimate
        else:
            unmodelled.append(str(entry))
    return kept, unmodelled


def _ct_weights(qcfg):
    """The weights scheme of a compressed-tensors config (first config group), with its field path."""
    groups = qcfg.get("config_groups")
    if not isinstance(groups, dict) or not groups:
        raise SizingError(_QCFG + ".config_groups",
                          "compressed-tensors quantization_config has no config_groups to read the weight format from")
    name = sorted(groups)[0]
    group = groups[name]
    field = "%s.config_groups.%s.weights" % (_QCFG, name)
    if not isinstance(group, dict) or not isinstance(group.get("weights"), dict):
        raise SizingError(field, "compressed-tensors group %s has no weights scheme" % name)
    return group["weights"], field


def _need(cfg, key, field):
    value = cfg.get(key)
    if value is None:
        raise SizingError("%s.%s" % (field, key), "quantization_config is missing %s.%s, which sizing needs"
                          % (field.replace(_QCFG + ".", "").replace(_QCFG, ""), key))
    return value


def _from_compressed_tensors(qcfg):
    weights, field = _ct_weights(qcfg)
    bits = _need(weights, "num_bits", field)
    kind = str(_need(weights, "type", field)).lower()
    strategy = str(weights.get("strategy") or "tensor").lower()
    base = {"group_size": None, "desc_act": False, "block": None, "symmetric": True}
    if kind == "float" and bits == 8:
        block = None
        if strategy == "block":
            block = weights.get("block_structure")
            if not (isinstance(block, (list, tuple)) and len(block) == 2):
                raise SizingError(field + ".block_structure",
                                  "FP8 block quantization needs block_structure [rows, cols], got %r" % (block,))
            block = [int(block[0]), int(block[1])]
        return dict(base, method="fp8", bits=8, block=block, strategy=strategy)
    if kind == "float" and bits == 4:
        # NVFP4: e2m1 values, an fp8 scale per group of 16 and a global fp32 scale.
        return dict(base, method="nvfp4", bits=4, group_size=int(weights.get("group_size") or 16))
    if kind == "int" and bits == 8:
        return dict(base, method="int8", bits=8, strategy=strategy)
    if kind == "int" and bits in (4, 8):
        group = weights.get("group_size")
        if strategy == "group" and group is None:
            raise SizingError(field + ".group_size", "group strategy needs weights.group_size")
        return dict(base, method="w4a16", bits=4, group_size=int(group) if strategy == "group" else -1,
                    desc_act=str(weights.get("actorder") or "").lower() in ("group", "weight", "true"),
                    symmetric=weights.get("symmetric", True) is not False)
    raise SizingError(field, "compressed-tensors weights num_bits=%r type=%r are not supported" % (bits, kind))


def _from_bitsandbytes(qcfg):
    if qcfg.get("load_in_4bit"):
        kind = str(_need(qcfg, "bnb_4bit_quant_type", _QCFG)).lower()
        return {"method": "bitsandbytes", "bits": 4, "group_size": 64, "desc_act": False, "bnb_type": kind,
                "double_quant": bool(qcfg.get("bnb_4bit_use_double_quant"))}
    if qcfg.get("load_in_8bit"):
        return {"method": "bitsandbytes", "bits": 8, "group_size": None, "desc_act": False, "bnb_type": "int8",
                "double_quant": False}
    raise SizingError(_QCFG + ".load_in_4bit",
                      "bitsandbytes quantization_config sets neither load_in_4bit nor load_in_8bit")


def _from_quantization_config(qcfg):
    """Map a checkpoint's quantization_config onto our methods, or raise naming the field."""
    method = str(qcfg.get("quant_method") or "").lower()
    ignore = qcfg.get("modules_to_not_convert")
    ignore_field = _QCFG + ".modules_to_not_convert"
    if method == "awq":
        result = {"method": "awq", "bits": int(qcfg.get("bits") or qcfg.get("w_bit") or 4),
                  "group_size": int(qcfg.get("group_size") or qcfg.get("q_group_size") or 128),
                  "desc_act": False}
    elif method == "gptq":
        result = {"method": "gptq", "bits": int(qcfg.get("bits") or 4),
                  "group_size": int(qcfg.get("group_size") or 128),
                  "desc_act": bool(qcfg.get("desc_act"))}
    elif method in ("fp8", "fbgemm_fp8"):
        block = qcfg.get("weight_block_size")
        result = {"method": "fp8", "bits": 8, "group_size": None, "desc_act": False,
                  "block": [int(block[0]), int(block[1])] if block else None}
        ignore = qcfg.get("ignored_layers", ignore)
        ignore_field = _QCFG + ".ignored_layers"
    elif method == "bitnet":
        result = {"method": "bitnet", "bits": 1.58, "group_size": None, "desc_act": False}
    elif method == "mxfp4":
        # vllm/model_executor/layers/quantization/mxfp4.py (v0.14, commit 007d500): only FusedMoE
        # layers are MXFP4; every LinearBase falls back to the unquantized method.
        result = {"method": "mxfp4", "bits": 4, "group_size": 32, "desc_act": False, "scope": "experts"}
    elif method == "modelopt" or method == "modelopt_fp4":
        algo = str(qcfg.get("quant_algo") or (qcfg.get("quantization") or {}).get("quant_algo") or "").upper()
        if not algo:
            raise SizingError(_QCFG + ".quant_algo", "modelopt quantization_config needs quant_algo (NVFP4 or FP8)")
        if algo == "NVFP4":
            result = {"method": "nvfp4", "bits": 4, "group_size": int(qcfg.get("group_size") or 16),
                      "desc_act": False}
        elif algo == "FP8":
            result = {"method": "fp8", "bits": 8, "group_size": None, "desc_act": False}
        else:
            raise SizingError(_QCFG + ".quant_algo", "modelopt quant_algo %r is not supported (NVFP4, FP8)" % algo)
        ignore = qcfg.get("exclude_modules", ignore)
        ignore_field = _QCFG + ".exclude_modules"
    elif method == "bitsandbytes":
        result = _from_bitsandbytes(qcfg)
        ignore = qcfg.get("llm_int8_skip_modules", ignore)
        ignore_field = _QCFG + ".llm_int8_skip_modules"
    elif method == "compressed-tensors":
        result = _from_compressed_tensors(qcfg)
        ignore = qcfg.get("ignore", ignore)
        ignore_field = _QCFG + ".ignore"
    else:
        raise SizingError(_QCFG + ".quant_method",
                          "checkpoint quantization %r is not supported; supported: %s"
                          % (method or qcfg, ", ".join(CHECKPOINT_METHODS)))
    kept, unmodelled = _ignored_categories(ignore, ignore_field)
    result["keep_16bit"] = sorted(kept)
    result["unmodelled_ignore"] = unmodelled
    return result


def resolve_quantization(option, group_size, arch):
    """Decide the weight format vLLM will hold in memory.

    ``option`` None means: what the checkpoint's quantization_config says, else none.
    fp8 on a 16-bit checkpoint is vLLM's runtime (online) FP8, which needs --quantization fp8;
    bitsandbytes on a 16-bit checkpoint is vLLM's in-flight 4-bit NF4 (--quantization bitsandbytes).
    """
    warnings = []
    if option is not None and option not in QUANTIZATION_METHODS:
        raise SizingError("quantization", "quantization %r is not one of %s"
                          % (option, ", ".join(QUANTIZATION_METHODS)))
    if group_size is not None and (isinstance(group_size, bool) or not isinstance(group_size, int)
                                   or (group_size <= 0 and group_size != -1)):
        raise SizingError("group_size", "group_size must be a positive integer or -1 (per channel), got %r"
                          % (group_size,))
    qcfg = arch.get("quantization_config")
    checkpoint = _from_quantization_config(qcfg) if isinstance(qcfg, dict) and qcfg else None

    if option is None:
        if checkpoint:
            result = dict(checkpoint, source="model_config.quantization_config", runtime=False)
        else:
            result = {"method": "none", "bits": 16, "group_size": None, "desc_act": False,
                      "source": "default", "runtime": False}
    elif checkpoint:
        if option != checkpoint["method"] and not (option == "gptq" and checkpoint["method"] == "w4a16"):
            raise SizingError("quantization",
                              "quantization=%s but the checkpoint is already %s "
                              "(model_config.quantization_config); vLLM serves it as %s"
                              % (option, checkpoint["method"], checkpoint["method"]))
        result = dict(checkpoint, source="model_config.quantization_config", runtime=False)
    elif option in CHECKPOINT_ONLY_METHODS:
        raise SizingError("quantization", "quantization=%s needs a checkpoint quantized to %s (its config.json "
                          "quantization_config); vLLM cannot produce it from a 16-bit checkpoint" % (option, option))
    else:
        gs = group_size if group_size is not None else 128
        result = {"method": option, "bits": _QUANT_BITS[option],
                  "group_size": gs if option in ("awq", "gptq") else None,
                  "desc_act": False, "source": "option", "runtime": option in RUNTIME_METHODS}
        if option == "bitsandbytes":
            # vLLM's in-flight BNB quantizes to 4-bit NF4 with nested (double) absmax quantization.
            result.update(group_size=64, bnb_type="nf4", double_quant=True)
        if option in ("awq", "gptq", "int8", "bitnet"):
            warnings.append("the checkpoint has no quantization_config: this is the size after "
                            "quantizing it to %s (model_quantize), not of the checkpoint as it is" % option)
    result.setdefault("keep_16bit", [])
    result.setdefault("unmodelled_ignore", [])
    if result["unmodelled_ignore"]:
        warnings.append("quantization_config keeps %s unquantized; per-layer exclusions are not modelled, "
                        "so weights may be slightly under-estimated" % ", ".join(result["unmodelled_ignore"][:5]))
    if result["method"] == "bitnet":
        warnings.append("BitNet b1.58 has no kernel in mainline vLLM (UNCONFIRMED); the figure "
                        "assumes ideal 1.58-bit packing with 16-bit embeddings and lm_head")
    return result, warnings


def mxfp4_backend(gpu, version):
    """Which MXFP4 MoE kernel vLLM picks, which decides padding and scale copies.

    vllm/model_executor/layers/quantization/mxfp4.py (commit 007d500): SM90 uses the Triton
    kernels when triton_kernels is installed, SM100 FlashInfer, anything older Marlin. The 0.10
    log of vllm#23278 shows Marlin on H100 and the 0.14 log of vllm#33155 Triton; which release
    switched is UNCONFIRMED (taken as 0.11). Unknown GPUs get Marlin, the larger layout.
    """
    name = gpu.get("parent") or gpu.get("name")
    if name in ("H100-80GB", "H100-94GB", "H200"):
        return "triton" if version >= (0, 11) else "marlin"
    if name == "B200":
        return "flashinfer"
    return "marlin"


def _round_to(value, multiple):
    return int(math.ceil(value / float(multiple))) * multiple


def _mxfp4_expert_bytes(h, inter_shard, experts, backend, bias):
    """One MoE layer of MXFP4 experts on one GPU (vLLM Mxfp4MoEMethod.create_weights).

    Each weight element is 4 bits and every 32 along the input dimension share one uint8
    scale. Marlin pads the intermediate size to 128 and hidden to 256; FlashInfer (SM100)
    both to 256 (UNCONFIRMED: no log checked); Triton pads intermediate to 64 and then keeps
    both the loaded scales and the swizzled copy (it deletes only the loaded weights), with
    float32 biases.
    """
    scale_copies = 1
    bias_bytes = 2
    if backend == "marlin":
        inter, hid = _round_to(inter_shard, 128), _round_to(h, 256)
    elif backend == "flashinfer":
        inter, hid = _round_to(inter_shard, 256), _round_to(h, 256)
    else:
        inter, hid = _round_to(inter_shard, 64), h
        scale_copies, bias_bytes = 2, 4
    w13 = 2 * inter * (hid // 2 + scale_copies * hid // 32 + (bias_bytes if bias else 0))
    w2 = hid * (inter // 2 + scale_copies * inter // 32 + (bias_bytes if bias else 0))
    return experts * (w13 + w2)


def _linear_bytes(in_f, out_f, quant):
    """Bytes of one linear layer's weight in the format vLLM keeps on the GPU."""
    method = quant["method"]
    if method == "none":
        return in_f * out_f * 2
    if method in ("fp8", "int8"):
        block = quant.get("block")
        if block:
            # one float32 scale per [block[0] x block[1]] tile (DeepSeek-V3 style FP8)
            return in_f * out_f + int(math.ceil(out_f / float(block[0]))) * int(math.ceil(in_f / float(block[1]))) * 4
        if quant.get("strategy") == "tensor":
            return in_f * out_f + 4
        # 1-byte weights plus a float32 scale per output channel.
        return in_f * out_f + out_f * 4
    if method == "bitnet":
        return in_f * out_f * 1.58 / 8 + 4
    if method == "nvfp4":
        # e2m1 values, an fp8 (e4m3) scale per 16 inputs, fp32 global weight and input scales.
        group = quant.get("group_size") or 16
        return in_f * out_f / 2.0 + out_f * int(math.ceil(in_f / float(group))) + 8
    if method == "mxfp4":
        return in_f * out_f / 2.0 + out_f * int(math.ceil(in_f / 32.0))
    if method == "bitsandbytes":
        if quant["bits"] == 8:
            return in_f * out_f + out_f * 4  # int8 weight + fp32 row scale (SCB)
        # 4-bit values + one absmax per 64. vLLM dequantizes double-quantized (uint8) absmax to
        # float32 when it binds the quant states, pre-quantized and in-flight alike
        # (vllm/model_executor/model_loader/bitsandbytes_loader.py, _dequantize_dq, commit c9e9c48).
        n = in_f * out_f
        return n / 2.0 + int(math.ceil(n / 64.0)) * 4
    bits = quant["bits"]
    group = quant["group_size"]
    groups = 1 if not group or group < 0 else int(math.ceil(in_f / float(group)))
    packed = in_f * out_f * bits / 8.0
    scales = groups * out_f * 2           # fp16 scale per group and output column
    if method == "w4a16" and quant.get("symmetric", True):
        zeros = 0                         # compressed-tensors symmetric int4 stores no zero points
    else:
        zeros = groups * out_f * bits / 8.0   # packed zero points (kept even for symmetric GPTQ)
    g_idx = in_f * 4 if quant.get("desc_act") else 0
    return packed + scales + zeros + g_idx


def pp_partitions(layers, pp):
    """Decoder layers per pipeline stage, as vLLM splits them.

    vllm/distributed/utils.py get_pp_indices (commit 5a6541d): an even split, and the
    remainder goes one layer each to the stages before the last (the last holds lm_head).
    """
    parts = [layers // pp] * pp
    for i in range(2, layers % pp + 2):
        parts[-i] += 1
    return parts


def weight_bytes(arch, quant, tp, pp=1):
    """Weights of one replica and of one GPU under tensor parallelism ``tp`` and ``pp`` stages.

    Column-parallel layers (q/k/v, gate/up, experts' w1/w3) split their output, row-parallel
    ones (o, down) their input; embeddings and lm_head are vocab-parallel (sharded too).
    When kv_heads < tp vLLM replicates KV heads, so each GPU keeps at least one.
    Pipeline stages hold their own layers; the first also the embeddings (and vision tower),
    the last the final norm and lm_head (with tied embeddings the last stage keeps its own copy).
    Returns {'checkpoint_total', 'checkpoint_per_gpu' (the largest stage), 'buffers_per_gpu',
    'stages': [{'bytes', 'layers': [start, end]}]} in bytes.
    """
    sixteen = {"method": "none"}
    kept = set(quant.get("keep_16bit") or ())
    experts_only = quant.get("scope") == "experts"
    q_attn = sixteen if experts_only or "attn" in kept else quant
    q_mlp = sixteen if experts_only else quant
    q_experts = sixteen if "experts" in kept else quant
    q_shared = sixteen if experts_only or "shared_experts" in kept else quant

    def per_rank(tp_, start=0, end=None, first=True, last=True):
        h = arch["hidden_size"]
        heads = arch["num_attention_heads"]
        hd = arch["head_dim"]
        kv_rank = max(1, arch["num_key_value_heads"] // tp_)
        end = arch["num_hidden_layers"] if end is None else end
        layers = end - start
        lin = 0.0
        sixteen_bit = 0.0
        replicated = 0.0
        if arch["mla"]:
            m = arch["mla"]
            qk = m["qk_nope_head_dim"] + m["qk_rope_head_dim"]
            if m["q_lora_rank"]:
                replicated += _linear_bytes(h, m["q_lora_rank"], q_attn)
                lin += _linear_bytes(m["q_lora_rank"], heads * qk // tp_, q_attn)
            else:
                lin += _linear_bytes(h, heads * qk // tp_, q_attn)
            replicated += _linear_bytes(h, m["kv_lora_rank"] + m["qk_rope_head_dim"], q_attn)
            lin += _linear_bytes(m["kv_lora_rank"], heads * (m["qk_nope_head_dim"] + m["v_head_dim"]) // tp_, q_attn)
            lin += _linear_bytes(heads * m["v_head_dim"] // tp_, h, q_attn)
            attn = lin + replicated
            lin = 0.0
            replicated = 0.0
        else:
            attn = (_linear_bytes(h, heads * hd // tp_, q_attn)
                    + 2 * _linear_bytes(h, kv_rank * hd, q_attn)
                    + _linear_bytes(heads * hd // tp_, h, q_attn))
            if arch["qkv_bias"]:
                sixteen_bit += (heads * hd // tp_ + 2 * kv_rank * hd) * 2
        mats = 3 if arch["gated_mlp"] else 2

        def mlp(inter, q):
            shard = inter // tp_
            return (mats - 1) * _linear_bytes(h, shard, q) + _linear_bytes(shard, h, q)

        moe_ids = arch.get("moe_layer_ids") or []
        moe_layers = sum(1 for i in moe_ids if start <= i < end) if arch["num_experts"] else 0
        dense_layers = layers - moe_layers
        total = layers * attn + dense_layers * mlp(arch["intermediate_size"] or 0, q_mlp)
        if moe_layers:
            e = arch["num_experts"]
            shard = arch["moe_intermediate_size"] // tp_
            if q_experts["method"] == "mxfp4":
                per_moe_layer = _mxfp4_expert_bytes(h, shard, e, quant.get("backend") or "marlin",
                                                    arch.get("expert_bias"))
            else:
                per_moe_layer = e * mlp(arch["moe_intermediate_size"], q_experts)
                if arch.get("expert_bias"):
                    per_moe_layer += e * (2 * shard + h) * 2  # gpt-oss experts carry 16-bit biases
            if arch["shared_expert_intermediate_size"]:
                per_moe_layer += mlp(arch["shared_expert_intermediate_size"], q_shared)
                replicated += h * 2 * moe_layers  # Qwen2-MoE shared_expert_gate (hidden x 1)
            total += moe_layers * per_moe_layer
            replicated += moe_layers * h * e * 2  # router stays 16-bit and replicated
        total += layers * sixteen_bit
        # Norms stay 16-bit and are replicated: two per layer plus the final one (+ q/k norms).
        replicated += (2 * layers + (1 if last else 0)) * h * 2
        if arch["qk_norm"]:
            replicated += layers * 2 * hd * 2
        vocab = int(math.ceil(arch["vocab_size"] / float(VOCAB_PADDING * tp_)) * VOCAB_PADDING * tp_)
        table = vocab * h * 2 / tp_  # weight-only quantization keeps embeddings 16-bit
        embed = table if first else 0
        if last:
            lm_head = table if not arch["tie_word_embeddings"] or not first else 0
        else:
            lm_head = 0
        vision = arch["vision_params"] * 2 / tp_ if first else 0
        return total + replicated + embed + lm_head + vision

    # The rotary cos/sin cache is a buffer of max_position x rotary_dim in the model dtype
    # (Llama-3.1-8B: 16.06e9 B of weights + 32 MiB = the 14.99 GiB vLLM reports).
    buffers = (arch["max_position_embeddings"] or 0) * arch["rotary_dim"] * 2
    stages = []
    start = 0
    for index, count in enumerate(pp_partitions(arch["num_hidden_layers"], pp)):
        stages.append({"bytes": per_rank(tp, start, start + count, index == 0, index == pp - 1),
                       "layers": [start, start + count]})
        start += count
    return {"checkpoint_total": per_rank(1), "checkpoint_per_gpu": max(st["bytes"] for st in stages),
            "buffers_per_gpu": buffers, "stages": stages}


def count_parameters(arch):
    """Parameter count of the 16-bit model (for reporting)."""
    return weight_bytes(arch, {"method": "none"}, 1)["checkpoint_total"] / 2.0


def kv_cache_bytes_per_token(arch, kv_cache_dtype, tp, layers=None):
    """KV bytes per token for the replica and per GPU (of ``layers`` layers, default all).

    2 (K and V) x layers x kv_heads x head_dim x dtype bytes; each GPU holds kv_heads/tp heads
    (at least one, since vLLM replicates heads when tp > kv_heads). MLA (DeepSeek) stores one
    latent of kv_lora_rank + rope dims per layer, replicated on every GPU.
    """
    dtype_bytes = 1 if kv_cache_dtype == "fp8" else 2
    total = arch["num_hidden_layers"]
    layers = total if layers is None else layers
    # hybrid models pay for padded layer slots (a pipeline stage is scaled pro rata, UNCONFIRMED)
    layers = int(math.ceil(layers * arch.get("kv_layer_slots", total) / float(total)))
    if arch["mla"]:
        per = layers * (arch["mla"]["kv_lora_rank"] + arch["mla"]["qk_rope_head_dim"]) * dtype_bytes
        return per, per
    kv = arch["num_key_value_heads"]
    replica = 2 * layers * kv * arch["head_dim"] * dtype_bytes
    per_gpu = 2 * layers * max(1, kv // tp) * arch["head_dim"] * dtype_bytes
    return replica, per_gpu


# --------------------------------------------------------------------------------------
# GPU memory
# --------------------------------------------------------------------------------------

def _normalise(name):
    text = str(name).strip().lower()
    text = re.sub(r"^nvidia[\s_-]*", "", text)
    return re.sub(r"[\s_]+", "-", text)


def valid_gpu_models():
    names = sorted(GPU_MEMORY_GIB)
    profiles = sorted({p for table in MIG_PROFILE_MEMORY_GIB.values() for p in table})
    return names, profiles


def _parent_of(text):
    for pattern, key in _GPU_PATTERNS:
        if re.search(pattern, text):
            return key
    return None


def resolve_gpu(gpu_model=None, gpu_memory_gib=None):
    """Usable GiB of one GPU or MIG instance, as vLLM's gpu_memory_utilization sees it."""
    if gpu_memory_gib is not None:
        if isinstance(gpu_memory_gib, bool) or not isinstance(gpu_memory_gib, (int, float)) or gpu_memory_gib <= 0:
            raise SizingError("gpu_memory_gib", "gpu_memory_gib must be a positive number, got %r"
                              % (gpu_memory_gib,))
        return {"name": "custom", "usable_gib": float(gpu_memory_gib), "mig": False,
                "confirmed": True, "source": "gpu_memory_gib option", "warnings": []}
    if not gpu_model:
        raise SizingError("gpu_model", "one of gpu_model or gpu_memory_gib is required")
    text = _normalise(gpu_model)
    names, profiles = valid_gpu_models()
    mig = _MIG_RE.search(text)
    if mig:
        profile = mig.group(2).replace(".me", "+me") if mig.group(2).endswith(".me") else mig.group(2)
        parent = _parent_of(text[:mig.start()] + text[mig.end():])
        candidates = {p: t[profile] for p, t in MIG_PROFILE_MEMORY_GIB.items() if profile in t}
        if not candidates:
            raise SizingError("gpu_model", "unknown MIG profile %r in gpu_model %r; known profiles: %s"
                              % (profile, gpu_model, ", ".join(profiles)))
        warnings = []
        if parent and parent in candidates:
            chosen = parent
        elif parent:
            raise SizingError("gpu_model", "MIG profile %s does not exist on %s; it exists on %s"
                              % (profile, parent, ", ".join(sorted(candidates))))
        else:
            # The same name means different memory on different GPUs: take the smallest.
            chosen = min(candidates, key=lambda k: candidates[k])
            if len(set(candidates.values())) > 1:
                warnings.append("MIG profile %s exists on %s with different memory; assumed the "
                                "smallest (%s). Name the GPU, e.g. 'H100-80GB %s'"
                                % (profile, ", ".join(sorted(candidates)), chosen, profile))
        confirmed = chosen in _MIG_CONFIRMED_PARENTS and not (chosen == "A100-80GB")
        if not confirmed:
            warnings.append("MIG memory of %s %s is UNCONFIRMED (derived, see sizing.py)" % (chosen, profile))
        return {"name": "%s MIG %s" % (chosen, profile), "usable_gib": MIG_PROFILE_MEMORY_GIB[chosen][profile],
                "mig": True, "mig_profile": profile, "parent": chosen, "confirmed": confirmed,
                "source": "MIG_PROFILE_MEMORY_GIB (facts/mig-and-nvml.md)", "warnings": warnings}
    key = _parent_of(text)
    if key is None:
        raise SizingError("gpu_model", "unknown gpu_model %r; valid GPUs: %s; or a MIG profile such as %s; "
                          "or give gpu_memory_gib" % (gpu_model, ", ".join(names), ", ".join(profiles)))
    entry = GPU_MEMORY_GIB[key]
    warnings = [] if entry["confirmed"] else [
        "usable memory of %s (%.2f GiB) is UNCONFIRMED: %s" % (key, entry["gib"], entry["source"])]
    return {"name": key, "usable_gib": entry["gib"], "mig": False, "confirmed": entry["confirmed"],
            "source": entry["source"], "warnings": warnings}


# --------------------------------------------------------------------------------------
# overheads
# --------------------------------------------------------------------------------------

def activation_gib(arch, version, pp=1):
    profile = ACTIVATION_PROFILES["current" if version >= ACTIVATION_CURRENT_SINCE else "legacy"]
    value = profile["base_gib"] + profile["per_vocab_entry_gib"] * arch["vocab_size"]
    if arch["num_experts"]:
        value += profile["moe_extra_gib"]
    return value * (PP_ACTIVATION_FACTOR if pp > 1 else 1.0)


def non_torch_gib(tp, version, pp=1):
    if pp > 1 and tp == 1:
        return PP_NON_TORCH_TP1_GIB
    if tp == 1:
        table = NON_TORCH_PROFILES["current" if version >= NON_TORCH_TP1_CURRENT_SINCE else "legacy"]
    else:
        table = NON_TORCH_PROFILES["current" if version >= NON_TORCH_TPN_CURRENT_SINCE else "legacy"]
    return table[max(k for k in table if k <= tp)]


# --------------------------------------------------------------------------------------
# the estimate
# --------------------------------------------------------------------------------------

def _validate_tp(arch, tp):
    if isinstance(tp, bool) or not isinstance(tp, int) or tp < 1:
        raise SizingError("tensor_parallel_size", "tensor_parallel_size must be a positive integer, got %r" % (tp,))
    heads = arch["num_attention_heads"]
    if heads % tp:
        valid = [d for d in range(1, heads + 1) if heads % d == 0 and d <= 16]
        raise SizingError("tensor_parallel_size",
                          "tensor_parallel_size %d does not divide num_attention_heads %d; valid: %s"
                          % (tp, heads, ", ".join(str(v) for v in valid)))
    kv = arch["num_key_value_heads"]
    if (kv >= tp and kv % tp) or (kv < tp and tp % kv):
        raise SizingError("tensor_parallel_size",
                          "tensor_parallel_size %d and num_key_value_heads %d: one must divide the other"
                          % (tp, kv))
    # llm-d-planner saw vLLM reject Qwen3-14B at TP5 (vocab 151936 not divisible by 5).
    if arch["vocab_size"] % tp:
        raise SizingError("tensor_parallel_size",
                          "tensor_parallel_size %d does not divide vocab_size %d, which vLLM rejects"
                          % (tp, arch["vocab_size"]))


def _budget(usable, gmu, weights, activation, non_torch):
    return gmu * usable - weights - activation - non_torch


def _tokens(pool_gib, per_gpu_bytes):
    if pool_gib <= 0:
        return 0
    blocks = int(pool_gib * GIB // (BLOCK_SIZE * per_gpu_bytes))
    return blocks * BLOCK_SIZE


def _gmu_ceiling(usable):
    limit = (usable - CUDA_CONTEXT_GIB - RECOMMENDED_HEADROOM_GIB) / usable
    return max(0.0, _round_down(min(MAX_RECOMMENDED_GPU_MEMORY_UTILIZATION, limit)))


def estimate(model_config=None, model_path=None, quantization=None, group_size=128,
             tensor_parallel_size=1, gpu_model=None, gpu_memory_gib=None,
             gpu_memory_utilization=0.9, max_model_len=None, kv_cache_dtype="auto",
             vllm_version=DEFAULT_VLLM_VERSION, pipeline_parallel_size=1):
    """Size one vLLM replica. Raises SizingError naming the bad field; never touches a GPU."""
    if model_config is not None and model_path is not None:
        raise SizingError("model_config", "give model_config or model_path, not both")
    exact_size = exact_source = None
    if model_path is not None:
        model_config, exact_size, exact_source = read_model_path(model_path)
        field = "model_path config.json"
    elif model_config is not None:
        field = "model_config"
    else:
        raise SizingError("model_config", "one of model_config or model_path is required")
    arch = parse_model_config(model_config, field=field)
    warnings = list(arch["warnings"])
    version = parse_version(vllm_version)
    if kv_cache_dtype not in KV_CACHE_DTYPES:
        raise SizingError("kv_cache_dtype", "kv_cache_dtype %r is not one of %s"
                          % (kv_cache_dtype, ", ".join(KV_CACHE_DTYPES)))
    if isinstance(gpu_memory_utilization, bool) or not isinstance(gpu_memory_utilization, (int, float)) \
            or not 0 < gpu_memory_utilization <= 1:
        raise SizingError("gpu_memory_utilization", "gpu_memory_utilization must be in (0, 1], got %r"
                          % (gpu_memory_utilization,))
    tp = tensor_parallel_size
    _validate_tp(arch, tp)
    pp = pipeline_parallel_size
    if isinstance(pp, bool) or not isinstance(pp, int) or pp < 1:
        raise SizingError("pipeline_parallel_size", "pipeline_parallel_size must be a positive integer, got %r" % (pp,))
    if pp > arch["num_hidden_layers"]:
        raise SizingError("pipeline_parallel_size", "pipeline_parallel_size %d is more than the model's %d layers"
                          % (pp, arch["num_hidden_layers"]))
    quant, qwarn = resolve_quantization(quantization, group_size, arch)
    warnings += qwarn
    if quant["method"] == "bitsandbytes" and not quant["runtime"] and tp > 1:
        # bitsandbytes_loader.py (commit c9e9c48) refuses pre-quantized BNB under tensor parallelism.
        raise SizingError("tensor_parallel_size", "tensor_parallel_size %d: vLLM does not run pre-quantized "
                          "bitsandbytes checkpoints with tensor parallelism; use 1" % tp)
    gpu = resolve_gpu(gpu_model, gpu_memory_gib)
    warnings += gpu["warnings"]
    if quant["method"] == "mxfp4":
        quant["backend"] = mxfp4_backend(gpu, version)
    if gpu["mig"] and tp > 1:
        raise SizingError("tensor_parallel_size",
                          "tensor_parallel_size %d on MIG %s: a MIG instance cannot join tensor "
                          "parallelism (no NCCL peer access between instances); use 1" % (tp, gpu["mig_profile"]))
    if gpu["mig"] and pp > 1:
        raise SizingError("pipeline_parallel_size",
                          "pipeline_parallel_size %d on MIG %s: MIG instances have no NCCL peer access "
                          "to each other; use 1" % (pp, gpu["mig_profile"]))

    max_pos = arch["max_position_embeddings"]
    if max_model_len is None:
        if not max_pos:
            raise SizingError("max_model_len", "max_model_len is required: the model config has no "
                              "max_position_embeddings to derive it from")
        max_model_len = max_pos
    elif isinstance(max_model_len, bool) or not isinstance(max_model_len, int) or max_model_len < 1:
        raise SizingError("max_model_len", "max_model_len must be a positive integer, got %r" % (max_model_len,))
    elif max_pos and max_model_len > max_pos:
        raise SizingError("max_model_len", "max_model_len %d is beyond the model's max_position_embeddings %d"
                          % (max_model_len, max_pos))

    wb = weight_bytes(arch, quant, tp, pp)
    weights_source = "architecture (config.json)"
    # With a real checkpoint its exact size replaces our parameter count; the architecture
    # still decides how it splits across GPUs (what is sharded, what is replicated).
    ckpt_scale = 1.0
    if exact_size:
        if quant["runtime"]:
            warnings.append("runtime %s quantizes after loading: the checkpoint's total_size is "
                            "not what vLLM keeps, so weights come from the architecture" % quant["method"])
        elif quant["method"] == "mxfp4":
            warnings.append("MXFP4 kernels pad and copy expert weights after loading: the checkpoint's "
                            "total_size is not what vLLM keeps, so weights come from the architecture")
        if not quant["runtime"] and quant["method"] != "mxfp4":
            # vLLM loads float32 checkpoints as 16-bit.
            halve = 0.5 if arch["torch_dtype"] == "float32" and quant["method"] == "none" else 1.0
            ckpt_scale = exact_size * halve / wb["checkpoint_total"]
            weights_source = exact_source
    weights = (wb["checkpoint_per_gpu"] * ckpt_scale + wb["buffers_per_gpu"]) / GIB
    weights_total = (wb["checkpoint_total"] * ckpt_scale + wb["buffers_per_gpu"] * tp * pp) / GIB
    activation = activation_gib(arch, version, pp)
    non_torch = non_torch_gib(tp, version, pp)
    usable = gpu["usable_gib"]
    kv_replica = kv_cache_bytes_per_token(arch, kv_cache_dtype, tp)[0]
    # Each stage sizes its own pool for its own layers; vLLM then gives every stage the
    # smallest block count (the KV cache config is unified across workers).
    pool, tokens, kv_per_gpu = _pp_kv(arch, wb, ckpt_scale, usable, gpu_memory_utilization,
                                      activation, non_torch, kv_cache_dtype, tp)
    context_ok = gpu_memory_utilization * usable + CUDA_CONTEXT_GIB <= usable

    if weights > gpu_memory_utilization * usable:
        fits = False
        reason = ("weights need %.2f GiB per GPU but gpu_memory_utilization %.2f x %.2f GiB allows %.2f GiB"
                  % (weights, gpu_memory_utilization, usable, gpu_memory_utilization * usable))
    elif pool <= 0:
        fits = False
        reason = ("no memory left for the KV cache: %.2f GiB budget - %.2f weights - %.2f activation "
                  "- %.2f non-torch = %.2f GiB" % (gpu_memory_utilization * usable, weights,
                                                   activation, non_torch, pool))
    elif tokens < max_model_len:
        fits = False
        reason = ("KV cache holds %d tokens (%.2f GiB per GPU), fewer than one request of "
                  "max_model_len %d" % (tokens, pool, max_model_len))
    elif not context_ok:
        fits = False
        reason = ("gpu_memory_utilization %.2f leaves %.2f GiB, less than the %.2f GiB CUDA context"
                  % (gpu_memory_utilization, (1 - gpu_memory_utilization) * usable, CUDA_CONTEXT_GIB))
    else:
        fits = True
        reason = ("fits: %.2f GiB weights + %.2f activation + %.2f non-torch + %.2f KV cache per GPU "
                  "(%d tokens, %.2f requests of %d tokens)"
                  % (weights, activation, non_torch, pool, tokens, tokens / float(max_model_len), max_model_len))

    recommended = _recommend(arch, quant, gpu, tp, kv_cache_dtype, gpu_memory_utilization,
                             max_model_len, weights, activation, non_torch, kv_per_gpu, version,
                             ckpt_scale, pp)

    return {
        "fits": fits,
        "reason": reason,
        "weights_gib_per_gpu": _round(weights),
        "weights_gib_total": _round(weights_total),
        "weights_source": weights_source,
        "activation_gib_per_gpu": _round(activation),
        "non_torch_gib_per_gpu": _round(non_torch),
        "cuda_context_gib_per_gpu": CUDA_CONTEXT_GIB,
        "kv_cache_gib_per_gpu": _round(pool),
        "kv_cache_bytes_per_token": kv_replica,
        "kv_cache_bytes_per_token_per_gpu": kv_per_gpu,
        "kv_cache_tokens": tokens,
        "max_model_len": max_model_len,
        "max_concurrency": _round(tokens / float(max_model_len)),
        "gpu": {k: v for k, v in gpu.items() if k != "warnings"},
        "gpu_memory_gib": usable,
        "gpu_memory_utilization": gpu_memory_utilization,
        "tensor_parallel_size": tp,
        "pipeline_parallel_size": pp,
        "pipeline_stage_layers": [st["layers"][1] - st["layers"][0] for st in wb["stages"]],
        "kv_cache_dtype": kv_cache_dtype,
        "quantization": dict({k: quant[k] for k in ("method", "bits", "group_size", "source", "runtime")},
                             **{k: quant[k] for k in ("backend", "keep_16bit") if quant.get(k)}),
        "model": {
            "architecture": arch["architecture"],
            "parameters_billion": _round(count_parameters(arch) / 1e9, 3),
            "num_experts": arch["num_experts"],
            "max_position_embeddings": max_pos,
        },
        "vllm_version": "%d.%d" % version,
        "recommended": recommended,
        "warnings": warnings,
    }


def _pp_kv(arch, wb, ckpt_scale, usable, gmu, activation, non_torch, kv_dtype, tp):
    """(pool GiB, tokens, KV bytes per token) of the stage that holds the fewest tokens."""
    best = None
    for stage in wb["stages"]:
        weights = (stage["bytes"] * ckpt_scale + wb["buffers_per_gpu"]) / GIB
        per_token = kv_cache_bytes_per_token(arch, kv_dtype, tp, stage["layers"][1] - stage["layers"][0])[1]
        pool = _budget(usable, gmu, weights, activation, non_torch)
        tokens = _tokens(pool, per_token)
        if best is None or tokens < best[1] or (tokens == best[1] and pool < best[0]):
            best = (pool, tokens, per_token)
    return best


def _recommend(arch, quant, gpu, tp, kv_dtype, gmu, max_model_len, weights, activation,
               non_torch, kv_per_gpu, version, ckpt_scale, pp=1):
    """vLLM flags that fit: keep what fits, otherwise shrink max_model_len or suggest more GPUs."""
    usable = gpu["usable_gib"]
    ceiling = _gmu_ceiling(usable)
    need_tokens = int(math.ceil(max_model_len / float(BLOCK_SIZE))) * BLOCK_SIZE
    need_gib = need_tokens * kv_per_gpu / float(GIB)
    # the smallest utilization that holds one full-length request (+ one block of slack)
    min_gmu = _round_up((weights + activation + non_torch + need_gib + BLOCK_SIZE * kv_per_gpu / float(GIB))
                        / usable)
    rec = {"tensor_parallel_size": tp, "pipeline_parallel_size": pp, "kv_cache_dtype": kv_dtype}
    if min_gmu <= ceiling:
        rec["gpu_memory_utilization"] = min(max(gmu, min_gmu), ceiling)
        rec["max_model_len"] = max_model_len
    else:
        rec["gpu_memory_utilization"] = ceiling
        tokens = _tokens(_budget(usable, ceiling, weights, activation, non_torch) - BLOCK_SIZE * kv_per_gpu / float(GIB),
                         kv_per_gpu)
        step = 256 if tokens >= 256 else BLOCK_SIZE
        length = min(max_model_len, (tokens // step) * step)
        rec["max_model_len"] = length if length >= BLOCK_SIZE else None
    rec["gpu_memory_utilization"] = _round(rec["gpu_memory_utilization"])
    rec["fits"] = rec["max_model_len"] is not None
    if rec["max_model_len"] is not None and rec["max_model_len"] < max_model_len:
        rec["note"] = "max_model_len lowered from %d to fit the KV cache" % max_model_len
    elif rec["max_model_len"] is None:
        rec["note"] = "does not fit on one %s at any gpu_memory_utilization up to %.2f" % (gpu["name"], ceiling)
    # a larger TP that would fit the requested length (whole GPUs only)
    rec["min_tensor_parallel_size"] = None
    if not gpu["mig"]:
        for cand in (1, 2, 4, 8, 16):
            try:
                _validate_tp(arch, cand)
            except SizingError:
                continue
            wb = weight_bytes(arch, quant, cand, pp)
            tokens = _pp_kv(arch, wb, ckpt_scale, usable, ceiling, activation_gib(arch, version, pp),
                            non_torch_gib(cand, version, pp), kv_dtype, cand)[1]
            if tokens >= need_tokens + BLOCK_SIZE:
                rec["min_tensor_parallel_size"] = cand
                break
    args = ["--tensor-parallel-size", str(tp)]
    if pp > 1:
        args += ["--pipeline-parallel-size", str(pp)]
    args += ["--gpu-memory-utilization", "%.2f" % rec["gpu_memory_utilization"]]
    if rec["max_model_len"] is not None:
        args += ["--max-model-len", str(rec["max_model_len"])]
    if kv_dtype == "fp8":
        args += ["--kv-cache-dtype", "fp8"]
    # Pre-quantized AWQ/GPTQ checkpoints are auto-detected (and get Marlin); passing
    # --quantization awq would force the slow kernel (facts/llm-serving.md part B).
    rec["quantization"] = quant["method"] if quant["runtime"] else None
    if quant["runtime"]:
        args += ["--quantization", quant["method"]]
    rec["args"] = args
    return rec
