# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vLLM's command line: the one place that builds it (vllm_service's Deployments, model_fit's
recommendation) and parses it (the cluster audit reading a running Deployment).

``build`` and ``parse`` are inverses on what ``build`` writes: parse(build(x)) gives x back, a
unit test holds it as a round trip. Flag spellings are vLLM's (``vllm serve --help``, engine
arguments in vllm/engine/arg_utils.py); vLLM accepts ``--flag value`` and ``--flag=value`` and
underscores for dashes, and ``parse`` reads all of them.
"""
from __future__ import annotations

# Engine settings build() writes, by the key callers use, in the order they appear on the line.
FLAGS = (
    ("served_model_name", "--served-model-name"),
    ("port", "--port"),
    ("max_model_len", "--max-model-len"),
    ("gpu_memory_utilization", "--gpu-memory-utilization"),
    ("tensor_parallel_size", "--tensor-parallel-size"),
    ("pipeline_parallel_size", "--pipeline-parallel-size"),
    ("kv_cache_dtype", "--kv-cache-dtype"),
    ("quantization", "--quantization"),
    ("revision", "--revision"),
)
_INT = {"port", "max_model_len", "tensor_parallel_size", "pipeline_parallel_size"}
_SHORT = {"-tp": "--tensor-parallel-size", "-pp": "--pipeline-parallel-size"}
# vLLM's defaults for what build() leaves out, so parse() reports what the engine will use.
DEFAULTS = {"kv_cache_dtype": "auto", "dtype": "auto", "quantization": None, "tensor_parallel_size": 1,
            "pipeline_parallel_size": 1}
# Left off the line at vLLM's default; the tensor-parallel size is always written, so a reader of the
# Deployment sees it without knowing the default.
_OMIT_AT_DEFAULT = {"kv_cache_dtype": "auto", "pipeline_parallel_size": 1}


def build(settings, model=None, extra_args=None):
    """The arguments after ``vllm serve``: the model (positional: ``--model`` is deprecated with
    ``vllm serve`` since v0.20) and one flag per setting that is not vLLM's default.

    ``settings`` keys are those of FLAGS plus ``enable_prefix_caching`` (True/False: vLLM's own
    default changed between releases, so it is always written). ``extra_args`` come last, as given.
    """
    args = [str(model)] if model else []
    for key, flag in FLAGS:
        value = settings.get(key)
        if value is None or value == "" or (key in _OMIT_AT_DEFAULT and str(value) == str(_OMIT_AT_DEFAULT[key])):
            continue
        if key == "gpu_memory_utilization":
            value = "%.2f" % float(value)
        args += [flag, str(value)]
    if settings.get("enable_prefix_caching") is not None:
        args.append("--enable-prefix-caching" if settings["enable_prefix_caching"] else "--no-enable-prefix-caching")
    return args + [str(a) for a in extra_args or []]


def parse_flags(tokens):
    """(flags, positional): flags as {'--flag': value or True}, and the first positional argument
    after ``serve`` (``vllm serve MODEL``; the API-server module form names it with --model)."""
    flags, positional = {}, None
    serve_seen = False
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        if tok in _SHORT and i + 1 < len(tokens):
            flags[_SHORT[tok]] = tokens[i + 1]
            i += 1
        elif tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok.partition("=")
            name = "--" + name[2:].replace("_", "-")
            if not eq:
                if i + 1 < len(tokens) and not tokens[i + 1].startswith("-"):
                    value = tokens[i + 1]
                    i += 1
                else:
                    value = True
            flags[name] = value
        elif tok == "serve" and not serve_seen:
            serve_seen = True
        elif serve_seen and positional is None and not tok.startswith("-"):
            positional = tok
        i += 1
    return flags, positional


def _num(value, kind):
    try:
        return kind(value)
    except (TypeError, ValueError):
        return value   # the audit reports what is there, even when vLLM would refuse it


def parse(tokens):
    """Engine settings of a whole vLLM command line (a list of tokens: ``vllm serve ...`` or the
    API-server module form) under build()'s keys, plus
    ``model``, ``served_model_names``, ``dtype``, ``enable_prefix_caching`` (None when not given)
    and ``flags`` (every flag as given)."""
    flags, positional = parse_flags([str(t) for t in tokens])
    out = {"flags": flags}
    for key, flag in FLAGS:
        value = flags.get(flag)
        if not isinstance(value, str):
            value = DEFAULTS.get(key)
        elif key in _INT:
            value = _num(value, int)
        elif key == "gpu_memory_utilization":
            value = _num(value, float)
        out[key] = value
    out["dtype"] = flags["--dtype"] if isinstance(flags.get("--dtype"), str) else DEFAULTS["dtype"]
    out["model"] = flags["--model"] if isinstance(flags.get("--model"), str) else positional
    out["served_model_names"] = out["served_model_name"].split(",") if isinstance(out["served_model_name"], str) else []
    if "--enable-prefix-caching" in flags or "--no-enable-prefix-caching" in flags:
        out["enable_prefix_caching"] = "--no-enable-prefix-caching" not in flags
    else:
        out["enable_prefix_caching"] = None
    return out
