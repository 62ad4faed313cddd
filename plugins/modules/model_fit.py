#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
module: model_fit
short_description: Check that an LLM fits a GPU or MIG slice under vLLM, before deploying it
version_added: 0.1.0
description:
  - Estimates, per GPU, the memory vLLM needs for a model's weights, activation peak and
    non-torch overhead, and how large a KV cache is left, following vLLM's own start-up budget
    C(gpu_memory_utilization x usable memory - weights - activation - non-torch).
  - Returns whether one request of O(max_model_len) fits, why, and vLLM flags that fit.
  - Pure computation on the controller; needs no GPU, no cluster and changes nothing.
  - See C(docs/sizing.md) for the constants, their sources and the measured accuracy.
author:
  - gpuops.llm contributors (@gpuops)
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The module never changes anything, so check mode returns the same result.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: none
    details: Nothing changes, so there is nothing to diff.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
options:
  model_config:
    description:
      - Fields of the model's Hugging Face C(config.json) as a dict (C(hidden_size),
        C(num_hidden_layers), C(num_attention_heads), C(num_key_value_heads), C(head_dim),
        C(intermediate_size), C(vocab_size), C(tie_word_embeddings), C(torch_dtype),
        C(max_position_embeddings), MoE fields such as C(num_local_experts) or C(num_experts)
        with C(moe_intermediate_size), and C(quantization_config) of a quantized checkpoint).
      - Multimodal configs may keep the language model under C(text_config).
      - Mutually exclusive with O(model_path).
    type: dict
  model_path:
    description:
      - Local model directory (on the host running the module) holding C(config.json).
      - When C(model.safetensors.index.json) is there, its exact C(metadata.total_size) replaces
        the parameter count.
    type: path
  quantization:
    description:
      - Weight format vLLM serves. Omit to take it from the checkpoint's C(quantization_config)
        (or V(none) when there is none).
      - V(fp8) on a 16-bit checkpoint is vLLM's runtime FP8 and adds C(--quantization fp8).
      - V(awq), V(gptq), V(int8) and V(bitnet) on a 16-bit checkpoint size it as it will be
        after quantizing (embeddings and lm_head stay 16-bit).
      - V(bitsandbytes) on a 16-bit checkpoint is vLLM's in-flight 4-bit NF4 and adds
        C(--quantization bitsandbytes).
      - V(mxfp4), V(nvfp4) and V(w4a16) (compressed-tensors int4) need a checkpoint already in
        that format; they are read from its C(quantization_config), including the modules it
        keeps unquantized (C(modules_to_not_convert), C(ignore)).
    type: str
    choices: [none, fp8, int8, awq, gptq, bitnet, bitsandbytes, mxfp4, nvfp4, w4a16]
  group_size:
    description: Quantization group size for AWQ/GPTQ when the checkpoint does not say; -1 is per channel.
    type: int
    default: 128
  tensor_parallel_size:
    description: GPUs per replica. Must divide the attention heads and the vocabulary.
    type: int
    default: 1
  pipeline_parallel_size:
    description:
      - Pipeline stages per replica (vLLM C(--pipeline-parallel-size)); each stage has
        O(tensor_parallel_size) GPUs, so a replica uses both multiplied.
      - Layers are split as vLLM splits them; the first stage also holds the embeddings, the last
        the lm_head. Per-GPU figures are those of the stage that is fullest.
    type: int
    default: 1
  gpu_model:
    description:
      - The GPU, as NVML names it (V(NVIDIA H100 80GB HBM3)) or short (V(H100-80GB), V(A100-40GB),
        V(L4), V(L40S), V(H200), V(B200)), or a MIG profile such as V(3g.40gb), best prefixed with
        its GPU (V(H100-80GB 3g.40gb)) because profile names mean different memory on different GPUs.
      - One of O(gpu_model) and O(gpu_memory_gib) is required.
    type: str
  gpu_memory_gib:
    description: Usable memory of one GPU in GiB as torch reports it, instead of O(gpu_model).
    type: float
  gpu_memory_utilization:
    description: vLLM's C(--gpu-memory-utilization), the fraction of the GPU vLLM may budget.
    type: float
    default: 0.9
  max_model_len:
    description: vLLM's C(--max-model-len). Defaults to the model's C(max_position_embeddings).
    type: int
  kv_cache_dtype:
    description: vLLM's C(--kv-cache-dtype); V(fp8) halves the bytes per token.
    type: str
    choices: [auto, fp8]
    default: auto
  vllm_version:
    description:
      - vLLM version the model will run on. The activation peak fell about 60% in 0.17 and the
        non-torch overhead changed in 0.18, so older versions get the older constants.
    type: str
    default: "0.19.0"
notes:
  - Sliding-window models (Gemma 2/3, gpt-oss) store fewer tokens in windowed layers; the token
    count is then a lower bound. MXFP4 and bitsandbytes checkpoints are not supported.
seealso:
  - name: vLLM engine arguments
    description: The flags the recommendation uses.
    link: https://docs.vllm.ai/en/stable/configuration/engine_args.html
"""

EXAMPLES = r"""
- name: Does Llama-3-70B in AWQ fit one H100 with an 8k context?
  gpuops.llm.model_fit:
    model_config:
      hidden_size: 8192
      num_hidden_layers: 80
      num_attention_heads: 64
      num_key_value_heads: 8
      intermediate_size: 28672
      vocab_size: 128256
      tie_word_embeddings: false
      torch_dtype: bfloat16
      max_position_embeddings: 8192
    quantization: awq
    gpu_model: NVIDIA H100 80GB HBM3
    max_model_len: 8192
  register: fit

- name: Refuse a model that does not fit its MIG slice
  ansible.builtin.assert:
    that: fit.fits
    fail_msg: "{{ fit.reason }}"

- name: Size a downloaded model on a MIG slice with an fp8 KV cache
  gpuops.llm.model_fit:
    model_path: /models/Qwen2.5-7B-Instruct
    gpu_model: H100-80GB 3g.40gb
    kv_cache_dtype: fp8
    max_model_len: 16384
"""

RETURN = r"""
fits:
  description: Whether weights, overhead and one request of max_model_len fit.
  returned: success
  type: bool
  sample: true
reason:
  description: Why it fits or not, with the numbers.
  returned: success
  type: str
  sample: "fits: 14.99 GiB weights + 1.91 activation + 0.25 non-torch + 58.08 KV cache per GPU"
weights_gib_per_gpu:
  description: Weight memory on each GPU (vLLM's "Model loading took").
  returned: success
  type: float
  sample: 14.99
weights_gib_total:
  description: Weight memory of the whole replica.
  returned: success
  type: float
  sample: 14.99
weights_source:
  description: Where the weight size came from (architecture or the checkpoint's exact size).
  returned: success
  type: str
  sample: architecture (config.json)
activation_gib_per_gpu:
  description: Estimated activation peak per GPU.
  returned: success
  type: float
  sample: 1.91
non_torch_gib_per_gpu:
  description: Estimated non-torch memory (CUDA runtime, NCCL buffers) per GPU.
  returned: success
  type: float
  sample: 0.25
cuda_context_gib_per_gpu:
  description: CUDA context memory outside the gpu_memory_utilization budget.
  returned: success
  type: float
  sample: 0.61
kv_cache_gib_per_gpu:
  description: KV cache pool per GPU (vLLM's "Available KV cache memory"); negative when short.
  returned: success
  type: float
  sample: 58.08
kv_cache_bytes_per_token:
  description: KV bytes per token for the whole replica.
  returned: success
  type: int
  sample: 131072
kv_cache_bytes_per_token_per_gpu:
  description: KV bytes per token held by each GPU.
  returned: success
  type: int
  sample: 131072
kv_cache_tokens:
  description: Tokens the KV cache holds for the replica (vLLM's "GPU KV cache size").
  returned: success
  type: int
  sample: 475792
max_model_len:
  description: The max_model_len the estimate used.
  returned: success
  type: int
  sample: 8192
max_concurrency:
  description: kv_cache_tokens / max_model_len (vLLM's "Maximum concurrency").
  returned: success
  type: float
  sample: 58.08
gpu:
  description: The GPU or MIG slice resolved from gpu_model, with its usable GiB and source.
  returned: success
  type: dict
  sample: {"name": "H100-80GB", "usable_gib": 79.19, "mig": false, "confirmed": true}
gpu_memory_gib:
  description: Usable GiB of one GPU or MIG slice.
  returned: success
  type: float
  sample: 79.19
gpu_memory_utilization:
  description: The utilization the estimate used.
  returned: success
  type: float
  sample: 0.9
tensor_parallel_size:
  description: The tensor parallel size the estimate used.
  returned: success
  type: int
  sample: 1
pipeline_parallel_size:
  description: The pipeline parallel size the estimate used.
  returned: success
  type: int
  sample: 1
pipeline_stage_layers:
  description: Decoder layers on each pipeline stage.
  returned: success
  type: list
  elements: int
  sample: [32]
kv_cache_dtype:
  description: The KV cache dtype the estimate used.
  returned: success
  type: str
  sample: auto
quantization:
  description:
    - The weight format sized (method, bits, group_size, source, runtime).
    - V(backend) (MXFP4 only) is the MoE kernel whose padding was sized; V(keep_16bit) lists the
      weight groups the checkpoint keeps unquantized.
  returned: success
  type: dict
  sample: {"method": "awq", "bits": 4, "group_size": 128, "source": "option", "runtime": false}
model:
  description: Architecture, parameter count (billions), experts and max_position_embeddings.
  returned: success
  type: dict
  sample: {"architecture": "LlamaForCausalLM", "parameters_billion": 8.03}
vllm_version:
  description: The vLLM version (major.minor) whose constants were used.
  returned: success
  type: str
  sample: "0.19"
recommended:
  description:
    - vLLM settings that fit, C(max_model_len) lowered if needed (null when nothing fits),
      C(min_tensor_parallel_size) (the smallest TP that fits the requested length, null if none),
      and C(args) ready for the vLLM command line.
  returned: success
  type: dict
  sample:
    gpu_memory_utilization: 0.9
    max_model_len: 8192
    tensor_parallel_size: 1
    kv_cache_dtype: auto
    quantization: null
    fits: true
    min_tensor_parallel_size: 1
    args: ["--tensor-parallel-size", "1", "--gpu-memory-utilization", "0.90", "--max-model-len", "8192"]
warnings:
  description: Assumptions to know about (unconfirmed GPU memory, missing config fields).
  returned: success
  type: list
  elements: str
  sample: []
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils.sizing import (
    DEFAULT_VLLM_VERSION,
    KV_CACHE_DTYPES,
    QUANTIZATION_METHODS,
    SizingError,
    estimate,
)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            model_config=dict(type="dict"),
            model_path=dict(type="path"),
            quantization=dict(type="str", choices=list(QUANTIZATION_METHODS)),
            group_size=dict(type="int", default=128),
            tensor_parallel_size=dict(type="int", default=1),
            pipeline_parallel_size=dict(type="int", default=1),
            gpu_model=dict(type="str"),
            gpu_memory_gib=dict(type="float"),
            gpu_memory_utilization=dict(type="float", default=0.9),
            max_model_len=dict(type="int"),
            kv_cache_dtype=dict(type="str", choices=list(KV_CACHE_DTYPES), default="auto"),
            vllm_version=dict(type="str", default=DEFAULT_VLLM_VERSION),
        ),
        mutually_exclusive=[("model_config", "model_path"), ("gpu_model", "gpu_memory_gib")],
        required_one_of=[("model_config", "model_path"), ("gpu_model", "gpu_memory_gib")],
        supports_check_mode=True,
    )
    params = module.params
    try:
        result = estimate(
            model_config=params["model_config"],
            model_path=params["model_path"],
            quantization=params["quantization"],
            group_size=params["group_size"],
            tensor_parallel_size=params["tensor_parallel_size"],
            pipeline_parallel_size=params["pipeline_parallel_size"],
            gpu_model=params["gpu_model"],
            gpu_memory_gib=params["gpu_memory_gib"],
            gpu_memory_utilization=params["gpu_memory_utilization"],
            max_model_len=params["max_model_len"],
            kv_cache_dtype=params["kv_cache_dtype"],
            vllm_version=params["vllm_version"],
        )
    except SizingError as exc:
        module.fail_json(msg="%s: %s" % (exc.field, exc), field=exc.field)
    for warning in result["warnings"]:
        module.warn(warning)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
