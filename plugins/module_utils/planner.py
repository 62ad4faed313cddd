# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Capacity planning: a model portfolio in, GPUs, MIG layouts, node pools, replicas and cost out.

Pure Python (no Ansible, no GPU). It reuses, never re-derives:
- ``sizing.estimate`` for "does one replica fit this GPU or MIG slice, and how many tokens of
  KV cache are left" (the model_fit core);
- ``mig`` for the profile tables and ``mig.solve`` (the mig_plan solver) for every GPU layout.

How a plan is made (every step deterministic):
1. For every model and every GPU type it may use, each candidate "slot" is sized: a MIG slice,
   a whole GPU (the smallest tensor-parallel size that fits), or, with ``allow_sharing``, an
   equal share of a whole GPU (time-slicing). The replicas a slot needs follow from the model's
   target (peak concurrency and/or requests per second) and its latency class.
2. Several whole plans are built and the cheapest at peak wins: each model on its cheapest slot
   ("mixed"), every model on one GPU type, and the naive plan (one whole GPU per replica), so the
   chosen plan never costs more than the naive one.
3. MIG slices are packed first-fit-decreasing by placement size; every GPU's layout is checked
   with ``mig.solve`` as it grows, and the final placements are the solver's.
4. Costs: static (the plan at peak all day), autoscaling (the plan under a 24-hour traffic
   profile, nodes released when none of their slices is busy), naive, and the memory lower bound.

Default prices are public on-demand list prices, one GPU's share of a cloud instance; they are
ASSUMPTIONS that change often and differ by region and provider. Override them (``gpus``).
"""
from __future__ import annotations

import copy
import math
import re

from ansible_collections.gpuops.llm.plugins.module_utils import mig, placement, sizing

HOURS_PER_MONTH = 730.0   # 8760 h / 12, the convention of cloud price calculators
GIB = 1024 ** 3

# ---------------------------------------------------------------------------------------------
# GPU catalog. Prices: USD per GPU-hour, on demand, one GPU's share of the named instance.
# Sources (read 2026 through the search tool; ASSUMPTIONS, not quotes to rely on):
#  [dr]  datareceipts/data-receipts 109-gpu-pricing/hyperscalers.json, retrieved 2026-11-09:
#        AWS p4d.24xlarge 8xA100-40GB $21.96/h, p4de.24xlarge 8xA100-80GB $27.45/h,
#        p5.48xlarge 8xH100 $55.04/h (us-east-1); Azure NC40ads_H100_v5 1xH100 NVL $6.98/h (eastus).
#  [pk]  packet.ai "GPU pricing models compared 2026": "AWS hyperscale rates run $8.00-$14.24/hr
#        for H200 and B200" (the low end is the H200 p5en share, the high end the B200 p6 share).
#  ⚑ L4 and L40S: AWS g6.xlarge / g6e.xlarge list prices as commonly published; no stored source
#    was found in this session, so they are UNCONFIRMED.
# Memory (usable GiB) comes from sizing.GPU_MEMORY_GIB; MIG profiles from mig.MODELS.
# gpus_per_node: the smallest on-demand node shape. ⚑ H200 and B200 are sold only as 8-GPU
# instances on AWS (p5en, p6), so a plan pays for whole 8-GPU nodes there.
# ---------------------------------------------------------------------------------------------
DEFAULT_GPUS = {
    "A100-40GB": {"mig_model": "A100-SXM4-40GB", "sizing_gpu": "A100-40GB", "price_per_hour": 2.74,
                  "gpus_per_node": 1, "price_source": "[dr] AWS p4d.24xlarge / 8 (us-east-1)"},
    "A100-80GB": {"mig_model": "A100-SXM4-80GB", "sizing_gpu": "A100-80GB", "price_per_hour": 3.43,
                  "gpus_per_node": 1, "price_source": "[dr] AWS p4de.24xlarge / 8 (us-east-1)"},
    "H100-80GB": {"mig_model": "H100-80GB-HBM3", "sizing_gpu": "H100-80GB", "price_per_hour": 6.88,
                  "gpus_per_node": 1, "price_source": "[dr] AWS p5.48xlarge / 8 (us-east-1)"},
    "H100-NVL": {"mig_model": "H100-NVL", "sizing_gpu": "H100-94GB", "price_per_hour": 6.98,
                 "gpus_per_node": 1, "price_source": "[dr] Azure Standard_NC40ads_H100_v5 (eastus)"},
    "H200": {"mig_model": "H200", "sizing_gpu": "H200", "price_per_hour": 8.00,
             "gpus_per_node": 8, "price_source": "[pk] AWS H200 share, low end of $8.00-$14.24"},
    "B200": {"mig_model": "B200", "sizing_gpu": "B200", "price_per_hour": 14.24,
             "gpus_per_node": 8, "price_source": "[pk] AWS B200 share, high end of $8.00-$14.24"},
    "L4": {"mig_model": None, "sizing_gpu": "L4", "price_per_hour": 0.80,
           "gpus_per_node": 1, "price_source": "UNCONFIRMED: AWS g6.xlarge list price"},
    "L40S": {"mig_model": None, "sizing_gpu": "L40S", "price_per_hour": 1.86,
             "gpus_per_node": 1, "price_source": "UNCONFIRMED: AWS g6e.xlarge list price"},
}

# Latency classes: how much of a replica's capacity the peak may use, and the replica floor.
# These are planning ASSUMPTIONS (headroom against queueing), overridable per model.
LATENCY_CLASSES = {
    "interactive": {"target_utilization": 0.6, "min_replicas": 1, "sharing": False},
    "standard": {"target_utilization": 0.75, "min_replicas": 1, "sharing": True},
    "batch": {"target_utilization": 0.9, "min_replicas": 0, "sharing": True},
}

SHARE_SPLITS = (2, 4)          # time-slicing: a whole GPU split in 2 or 4 equal memory shares
TP_SIZES = (1, 2, 4, 8)
NAME_RE = re.compile(r"^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$")   # DNS-1035 label (vllm_service names)

# ⚑ Adapter assumption for models given only as a parameter count: a dense Llama-shaped stack
# (head_dim 128, hidden/layers ~128, GQA with 8 KV heads, 32000-token vocabulary, 16-bit).
SYNTH_VOCAB = 32000
SYNTH_HEAD_DIM = 128


class PlannerError(ValueError):
    """Bad input or an impossible plan; ``field`` names the option at fault."""

    def __init__(self, field, message):
        super().__init__(message)
        self.field = field


# ---------------------------------------------------------------------------------------------
# small helpers
# ---------------------------------------------------------------------------------------------
def _ceil(x):
    # ceil that ignores float noise (0.1 * 3 / 0.3 must be 1, not 2)
    return int(math.ceil(round(x, 9)))


def _r2(x):
    return round(float(x), 2) + 0.0   # + 0.0 turns -0.0 into 0.0


def _num(value, field, minimum=None, strict_min=False, integer=False, maximum=None):
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = float(value) if not integer else int(value)
        except ValueError:
            raise PlannerError(field, "%s must be a number, got %r" % (field, value))
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise PlannerError(field, "%s must be a number, got %r" % (field, value))
    if integer and int(value) != value:
        raise PlannerError(field, "%s must be an integer, got %r" % (field, value))
    if minimum is not None and (value < minimum or (strict_min and value == minimum)):
        raise PlannerError(field, "%s must be %s %s, got %r" % (field, ">" if strict_min else ">=", minimum, value))
    if maximum is not None and value > maximum:
        raise PlannerError(field, "%s must be <= %s, got %r" % (field, maximum, value))
    return int(value) if integer else float(value)


def _slug(text):
    return re.sub(r"[^a-z0-9]+", "-", str(text).lower()).strip("-")


# ---------------------------------------------------------------------------------------------
# catalog
# ---------------------------------------------------------------------------------------------
def _usable_gib(entry):
    if entry.get("memory_gib"):
        return float(entry["memory_gib"])
    return sizing.resolve_gpu(entry["sizing_gpu"])["usable_gib"]


def build_catalog(gpus=None, gpu_models=None, max_gpus_per_node=8):
    """The GPU types a plan may use, keyed by name, in a stable order.

    ``gpus`` adds entries or overrides fields of the defaults (matched by ``name``): price_per_hour,
    gpus_per_node, memory_gib, mig_model (a key of mig.MODELS, or null for no MIG), sizing_gpu,
    price_source, machine_type. ``gpu_models`` restricts the catalog to those names."""
    cat = {k: dict(v, name=k) for k, v in DEFAULT_GPUS.items()}
    for i, g in enumerate(gpus or []):
        field = "gpus[%d]" % i
        if not isinstance(g, dict) or not g.get("name"):
            raise PlannerError(field, "%s must be a dict with at least a name" % field)
        name = str(g["name"])
        g = {k: v for k, v in g.items() if v is not None}
        if str(g.get("mig_model", "x")).strip().lower() in ("", "none", "false"):
            g["mig_model"] = None   # "mig_model: none" turns MIG off for this GPU type
        entry = dict(cat.get(name, {"name": name, "mig_model": None, "gpus_per_node": 1,
                                    "price_source": "user catalog"}))
        if name not in cat and "price_per_hour" not in g:
            raise PlannerError(field + ".price_per_hour", "%s: GPU '%s' is not in the default catalog (%s), so "
                               "price_per_hour is required" % (field, name, ", ".join(DEFAULT_GPUS)))
        if name not in cat and not (g.get("memory_gib") or g.get("sizing_gpu")):
            raise PlannerError(field + ".memory_gib", "%s: GPU '%s' needs memory_gib (usable GiB) or sizing_gpu "
                               "(one of %s)" % (field, name, ", ".join(sorted(sizing.GPU_MEMORY_GIB))))
        entry.update(g)
        if "price_per_hour" in g and "price_source" not in g:
            entry["price_source"] = "user catalog"
        _num(entry["price_per_hour"], field + ".price_per_hour", minimum=0)
        entry["price_per_hour"] = float(entry["price_per_hour"])
        entry["gpus_per_node"] = _num(entry.get("gpus_per_node", 1), field + ".gpus_per_node", minimum=1, integer=True)
        if entry.get("memory_gib") is not None:
            entry["memory_gib"] = _num(entry["memory_gib"], field + ".memory_gib", minimum=0, strict_min=True)
        if entry.get("mig_model"):
            try:
                entry["mig_model"] = mig.resolve_model(entry["mig_model"]).key
            except mig.MigError as e:
                raise PlannerError(field + ".mig_model", "%s.mig_model: %s" % (field, e))
            if not mig.MODELS[entry["mig_model"]].mig_capable:
                entry["mig_model"] = None
        if entry.get("sizing_gpu"):
            try:
                sizing.resolve_gpu(entry["sizing_gpu"])
            except sizing.SizingError as e:
                raise PlannerError(field + ".sizing_gpu", "%s.sizing_gpu: %s" % (field, e))
        cat[name] = entry
    if gpu_models:
        unknown = [n for n in gpu_models if n not in cat]
        if unknown:
            raise PlannerError("gpu_models", "gpu_models: unknown GPU %s; known: %s"
                               % (", ".join(map(repr, unknown)), ", ".join(cat)))
        cat = {n: cat[n] for n in cat if n in gpu_models}
    if not cat:
        raise PlannerError("gpu_models", "the GPU catalog is empty")
    for entry in cat.values():
        entry["usable_gib"] = _usable_gib(entry)
        entry["node_gpus"] = min(entry["gpus_per_node"], max_gpus_per_node)
    return cat


# ---------------------------------------------------------------------------------------------
# models
# ---------------------------------------------------------------------------------------------
def config_from_parameters(parameters_billion, max_model_len):
    """Adapter (sizing needs a config.json): a dense Llama-shaped config of about that size.

    ⚑ An approximation: real architectures differ in vocabulary, GQA ratio and MLP width, which
    moves weights by a few percent and the KV cache by up to 2x. Give ``config`` when you have it."""
    target = parameters_billion * 1e9
    layers = max(2, int(round((target / (12.0 * 128 * 128)) ** (1.0 / 3))))
    # hidden ~ 128 x layers, i.e. about one 128-wide head per layer, rounded to 8 heads for GQA
    heads = max(8, int(round(layers / 8.0)) * 8)
    hidden = heads * SYNTH_HEAD_DIM
    kv = 8
    attn = hidden * hidden * 2 + 2 * hidden * kv * SYNTH_HEAD_DIM
    embed = 2 * SYNTH_VOCAB * hidden
    inter = (target - embed - layers * attn) / (3.0 * layers * hidden)
    inter = max(hidden, int(round(inter / 256.0)) * 256)
    return {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "head_dim": SYNTH_HEAD_DIM, "intermediate_size": inter, "vocab_size": SYNTH_VOCAB,
        "tie_word_embeddings": False, "torch_dtype": "bfloat16",
        "max_position_embeddings": int(max_model_len),
    }


def _validate_profile(profile, field):
    if profile is None:
        return None
    if not isinstance(profile, (list, tuple)) or len(profile) != 24:
        raise PlannerError(field, "%s must be a list of 24 hourly values (hour 0 to 23), got %s"
                           % (field, ("%d values" % len(profile)) if isinstance(profile, (list, tuple)) else repr(profile)))
    vals = []
    for h, v in enumerate(profile):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or math.isnan(v):
            raise PlannerError(field, "%s[%d] must be a number, got %r" % (field, h, v))
        if v < 0:
            raise PlannerError(field, "%s[%d] is negative (%r); traffic is 0 or more" % (field, h, v))
        vals.append(float(v))
    peak = max(vals)
    if peak <= 0:
        raise PlannerError(field, "%s is all zero; give relative traffic per hour (the peak hour is scaled to 1)"
                           % field)
    # Relative to the peak hour: the peak hour carries the model's peak target.
    return [v / peak for v in vals]


def normalize_models(models, catalog, traffic_profile=None):
    if not isinstance(models, list) or not models:
        raise PlannerError("models", "models must be a non-empty list of dicts (name, config or parameters_billion, ...)")
    out, seen = [], set()
    for i, m in enumerate(models):
        f = "models[%d]" % i
        if not isinstance(m, dict):
            raise PlannerError(f, "%s must be a dict, got %r" % (f, m))
        m = {k: v for k, v in m.items() if v is not None}
        name = m.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise PlannerError(f + ".name", "%s.name %r must be a DNS-1035 label (lowercase letters, digits, '-', "
                               "starting with a letter, at most 63 characters)" % (f, name))
        f = "models[%d] (%s)" % (i, name)
        if name in seen:
            raise PlannerError(f + ".name", "%s: model name '%s' appears twice" % (f, name))
        seen.add(name)
        if ("config" in m) == ("parameters_billion" in m):
            raise PlannerError(f, "%s: give exactly one of config (the model's config.json fields) or "
                               "parameters_billion" % f)
        mml = _num(m.get("max_model_len"), f + ".max_model_len", minimum=1, integer=True)
        synthesized = False
        if "parameters_billion" in m:
            pb = _num(m["parameters_billion"], f + ".parameters_billion", minimum=0, strict_min=True)
            if mml is None:
                raise PlannerError(f + ".max_model_len", "%s: max_model_len is required with parameters_billion" % f)
            config = config_from_parameters(pb, mml)
            synthesized = True
        else:
            if not isinstance(m["config"], dict) or not m["config"]:
                raise PlannerError(f + ".config", "%s.config must be a non-empty dict of config.json fields" % f)
            config = m["config"]
        cls = m.get("latency_class", "standard")
        if cls not in LATENCY_CLASSES:
            raise PlannerError(f + ".latency_class", "%s.latency_class %r is not one of %s"
                               % (f, cls, ", ".join(LATENCY_CLASSES)))
        defaults = LATENCY_CLASSES[cls]
        conc = _num(m.get("peak_concurrency"), f + ".peak_concurrency", minimum=0)
        rps = _num(m.get("requests_per_second"), f + ".requests_per_second", minimum=0)
        out_tok = _num(m.get("output_tokens_per_request"), f + ".output_tokens_per_request", minimum=1, integer=True)
        tps = _num(m.get("tokens_per_second_per_replica"), f + ".tokens_per_second_per_replica", minimum=0,
                   strict_min=True)
        if rps and (out_tok is None or tps is None):
            raise PlannerError(f + ".tokens_per_second_per_replica",
                               "%s: requests_per_second needs output_tokens_per_request and "
                               "tokens_per_second_per_replica (the throughput one replica sustains, an assumption "
                               "to confirm with the week-2 load test)" % f)
        quant = m.get("quantization")
        if quant is not None and quant not in sizing.QUANTIZATION_METHODS:
            raise PlannerError(f + ".quantization", "%s.quantization %r is not one of %s"
                               % (f, quant, ", ".join(sizing.QUANTIZATION_METHODS)))
        kvd = m.get("kv_cache_dtype", "auto")
        if kvd not in sizing.KV_CACHE_DTYPES:
            raise PlannerError(f + ".kv_cache_dtype", "%s.kv_cache_dtype %r is not one of %s"
                               % (f, kvd, ", ".join(sizing.KV_CACHE_DTYPES)))
        gpu_models = m.get("gpu_models") or list(catalog)
        unknown = [g for g in gpu_models if g not in catalog]
        if unknown:
            raise PlannerError(f + ".gpu_models", "%s.gpu_models: %s not in the catalog (%s)"
                               % (f, ", ".join(map(repr, unknown)), ", ".join(catalog)))
        entry = {
            "index": i, "name": name, "model": m.get("model") or name, "config": config,
            "synthesized_config": synthesized, "quantization": quant, "kv_cache_dtype": kvd,
            "max_model_len": mml, "latency_class": cls,
            "gpu_memory_utilization": _num(m.get("gpu_memory_utilization"), f + ".gpu_memory_utilization",
                                           minimum=0, strict_min=True, maximum=1),
            "peak_concurrency": conc or 0.0,
            "avg_context_tokens": _num(m.get("avg_context_tokens"), f + ".avg_context_tokens", minimum=1,
                                       integer=True),
            "requests_per_second": rps or 0.0, "output_tokens_per_request": out_tok,
            "tokens_per_second_per_replica": tps,
            "max_concurrency_per_replica": _num(m.get("max_concurrency_per_replica"),
                                                f + ".max_concurrency_per_replica", minimum=1, integer=True),
            "target_utilization": _num(m.get("target_utilization", defaults["target_utilization"]),
                                       f + ".target_utilization", minimum=0, strict_min=True, maximum=1),
            "min_replicas": _num(m.get("min_replicas", defaults["min_replicas"]), f + ".min_replicas",
                                 minimum=0, integer=True),
            "allow_sharing": bool(m.get("allow_sharing", defaults["sharing"])),
            "allow_mig": bool(m.get("allow_mig", True)),
            "gpu_models": [g for g in catalog if g in gpu_models],
            "traffic_profile": _validate_profile(m.get("traffic_profile"), f + ".traffic_profile")
            or traffic_profile,
        }
        out.append(entry)
    return out


# ---------------------------------------------------------------------------------------------
# candidates: one replica on one slot, sized by sizing.estimate
# ---------------------------------------------------------------------------------------------
class _Sizer:
    """Memoised sizing.estimate; errors become (None, reason)."""

    def __init__(self, vllm_version):
        self.vllm_version = vllm_version
        self.cache = {}

    def __call__(self, model, gpu_model=None, gpu_memory_gib=None, tp=1):
        key = (model["name"], gpu_model, gpu_memory_gib, tp)
        if key not in self.cache:
            usable = gpu_memory_gib if gpu_memory_gib is not None else sizing.resolve_gpu(gpu_model)["usable_gib"]
            # The highest utilization sizing recommends for this memory (it keeps the CUDA context
            # and 1 GiB of headroom free), unless the model pins one.
            gmu = model["gpu_memory_utilization"] or sizing._gmu_ceiling(usable)
            try:
                est = sizing.estimate(
                    model_config=model["config"], quantization=model["quantization"],
                    tensor_parallel_size=tp, gpu_model=gpu_model, gpu_memory_gib=gpu_memory_gib,
                    gpu_memory_utilization=gmu, max_model_len=model["max_model_len"],
                    kv_cache_dtype=model["kv_cache_dtype"], vllm_version=self.vllm_version)
                self.cache[key] = (est, est["reason"])
            except sizing.SizingError as e:
                self.cache[key] = (None, str(e))
        return self.cache[key]


def replicas_for(model, per_replica_concurrency, load=1.0, compute_share=1.0):
    """Replicas a model needs at ``load`` (1.0 = its peak target) on a slot whose replica holds
    ``per_replica_concurrency`` requests of avg_context_tokens and gets ``compute_share`` of a
    whole GPU's throughput (tokens_per_second_per_replica is stated for a whole GPU)."""
    util = model["target_utilization"]
    need = 0
    demand = False
    if model["peak_concurrency"]:
        demand = True
        need = max(need, _ceil(load * model["peak_concurrency"] / (per_replica_concurrency * util)))
    if model["requests_per_second"]:
        demand = True
        tokens = load * model["requests_per_second"] * model["output_tokens_per_request"]
        need = max(need, _ceil(tokens / (model["tokens_per_second_per_replica"] * compute_share * util)))
    if not demand:
        # No target given: one replica at peak (or min_replicas), scaled with the traffic profile.
        base = max(1, model["min_replicas"])
        need = _ceil(load * base)
    if load > 0:
        need = max(need, 1)
    return max(need, model["min_replicas"])


def _candidate(model, gpu, kind, est, fraction, profile=None, tp=1, share=1, slot_gib=None, compute=1.0):
    ctx = model["avg_context_tokens"] or est["max_model_len"]
    per = est["kv_cache_tokens"] // ctx
    if model["max_concurrency_per_replica"]:
        per = min(per, model["max_concurrency_per_replica"])
    per = max(per, 1)   # it fits, so one request of max_model_len fits
    reps = replicas_for(model, per, compute_share=compute)
    weights = est["weights_gib_per_gpu"]
    need = tp * (weights + est["activation_gib_per_gpu"] + est["non_torch_gib_per_gpu"]) + \
        tp * est["kv_cache_bytes_per_token_per_gpu"] * est["max_model_len"] / float(GIB)
    return {
        "model": model["name"], "gpu": gpu["name"], "kind": kind, "profile": profile, "tp": tp, "share": share,
        "fraction": fraction, "slot_gib": slot_gib, "gpu_memory_utilization": est["gpu_memory_utilization"],
        "kv_cache_tokens": est["kv_cache_tokens"], "max_model_len": est["max_model_len"],
        "concurrency_per_replica": per, "compute_share": compute, "replicas": reps, "min_gib_per_replica": need,
        "weights_gib_per_gpu": weights, "cost_per_hour": reps * fraction * gpu["price_per_hour"],
        "sizing": est,
    }


def candidates(model, gpu, sizer, allow_mig=True, allow_sharing=False, whole=True):
    """Every slot of ``gpu`` that one replica of ``model`` fits, cheapest first; plus the reasons
    the others do not fit (for error messages)."""
    out, misses = [], []
    mm = mig.MODELS.get(gpu.get("mig_model")) if gpu.get("mig_model") else None
    if mm is not None and allow_mig and model["allow_mig"]:
        for p in mm.profiles:
            # +me variants exist once per GPU and add only media engines; 7g is a whole GPU with
            # less memory than MIG off, so the whole-GPU candidate covers it.
            if p.media_extension or p.slices >= mm.compute_slices:
                continue
            name = "%s %s" % (gpu["sizing_gpu"], p.name)
            est, why = sizer(model, gpu_model=name)
            if est and est["fits"]:
                # ⚑ Assumption: a slice's throughput is its share of compute slices (SMs), g/7.
                out.append(_candidate(model, gpu, "mig", est, p.size / float(mm.memory_slices), profile=p.name,
                                      slot_gib=est["gpu_memory_gib"], compute=p.slices / float(mm.compute_slices)))
            else:
                misses.append("%s: %s" % (name, why))
    if whole:
        limit = gpu["node_gpus"]
        for tp in TP_SIZES:
            if tp > limit:
                break
            est, why = sizer(model, gpu_model=gpu.get("sizing_gpu") if not gpu.get("memory_gib") else None,
                             gpu_memory_gib=gpu.get("memory_gib"), tp=tp)
            if est and est["fits"]:
                out.append(_candidate(model, gpu, "whole", est, float(tp), tp=tp, slot_gib=gpu["usable_gib"]))
                break
            misses.append("%s x%d (tensor parallel): %s" % (gpu["name"], tp, why))
        if allow_sharing and model["allow_sharing"]:
            for k in SHARE_SPLITS:
                est, why = sizer(model, gpu_memory_gib=round(gpu["usable_gib"] / k, 2))
                if est and est["fits"]:
                    out.append(_candidate(model, gpu, "shared", est, 1.0 / k, share=k,
                                          slot_gib=round(gpu["usable_gib"] / k, 2), compute=1.0 / k))
    out.sort(key=lambda c: (round(c["cost_per_hour"], 6), c["fraction"], c["replicas"], c["kind"], c["profile"] or ""))
    return out, misses


# ---------------------------------------------------------------------------------------------
# packing
# ---------------------------------------------------------------------------------------------
def _layout_of(items):
    counts = {}
    for it in items:
        counts[it["profile"]] = counts.get(it["profile"], 0) + 1
    return counts


def pack_mig(mig_model, items, baseline_first=False):
    """First-fit decreasing by placement size; each GPU's layout is validated by mig.solve as it
    grows, so a GPU never gets a layout NVML would refuse. Returns GPUs with solver placements
    and the model on each placement. ``baseline_first`` packs the replicas that run all day
    (item["base"]) before the ones autoscaling adds, so whole nodes can be released off-peak."""
    mm = mig.MODELS[mig_model]
    order = sorted(items, key=lambda it: ((not it.get("base")) if baseline_first else False,
                                          -mm.profile(it["profile"]).size, -mm.profile(it["profile"]).slices,
                                          it["model"], it["replica"]))
    gpus = []
    for it in order:
        for g in gpus:
            trial = _layout_of(g + [it])
            try:
                mig.solve(mm, trial)
            except mig.MigError:
                continue
            g.append(it)
            break
        else:
            gpus.append([it])
    return [_mig_gpu(mm, g) for g in gpus]


def _mig_gpu(mm, items):
    """One MIG GPU holding ``items``: mig.solve's placements, and the model on each placement
    (per profile, by start, in (model, replica) order)."""
    placements = mig.solve(mm, _layout_of(items))
    by_prof = {}
    for it in sorted(items, key=lambda x: (x["model"], x["replica"])):
        by_prof.setdefault(it["profile"], []).append(it)
    slots = []
    for pl in placements:
        it = by_prof[pl["profile"]].pop(0)
        slots.append(dict(pl, model=it["model"], replica=it["replica"]))
    return {"mode": "mig", "mig_devices": _layout_of(items), "slots": slots}


def pack_shared(items):
    """Time-sliced shares: first-fit decreasing by share size onto whole GPUs."""
    order = sorted(items, key=lambda it: (it["share"], it["model"], it["replica"]))
    gpus = []
    for it in order:
        for g in gpus:
            if sum(1.0 / x["share"] for x in g) + 1.0 / it["share"] <= 1.0 + 1e-9:
                g.append(it)
                break
        else:
            gpus.append([it])
    out = []
    for g in gpus:
        slots, pos = [], 0.0
        for it in g:
            slots.append({"model": it["model"], "replica": it["replica"], "share": it["share"], "start": pos,
                          "size": 1.0 / it["share"]})
            pos += 1.0 / it["share"]
        out.append({"mode": "shared", "slots": slots})
    return out


def _assign_nodes(gpu, blocks):
    """Blocks (lists of GPUs that must share a node: a TP replica, or single GPUs) into nodes of
    node_gpus GPUs, first-fit decreasing; returns the GPUs in node order with node indexes."""
    cap = gpu["node_gpus"]
    nodes = []
    for b in sorted(blocks, key=lambda b: -len(b)):   # stable: ties keep their order
        for n in nodes:
            if sum(len(x) for x in n) + len(b) <= cap:
                n.append(b)
                break
        else:
            nodes.append([b])
    out = []
    for ni, n in enumerate(nodes):
        for b in n:
            for g in b:
                out.append(dict(g, node=ni))
    return out, len(nodes)


def _baseline(model, c):
    """Replicas of a candidate that never scale in: the lowest hour of the traffic profile."""
    if not model["traffic_profile"]:
        return c["replicas"]
    return min(min(c["replicas"], replicas_for(model, c["concurrency_per_replica"], load, c["compute_share"]))
               for load in model["traffic_profile"])


def build_layout(chosen, catalog, models_by_name):
    """GPUs, per GPU type, for a choice {model: candidate}: plain FFD, or baseline replicas first
    when that needs no more GPUs (better for autoscaling)."""
    plain = _build_layout(chosen, catalog, models_by_name, False)
    based = _build_layout(chosen, catalog, models_by_name, True)
    return based if _gpu_count(based) <= _gpu_count(plain) else plain


def _build_layout(chosen, catalog, models_by_name, baseline_first):
    by_type = {}
    for name in sorted(chosen, key=lambda n: models_by_name[n]["index"]):
        c = chosen[name]
        by_type.setdefault(c["gpu"], []).append(c)
    types = []
    for tname in catalog:
        if tname not in by_type:
            continue
        gpu = catalog[tname]
        mig_items, shared_items, blocks = [], [], []
        for c in by_type[tname]:
            base = _baseline(models_by_name[c["model"]], c)
            for r in range(c["replicas"]):
                if c["kind"] == "mig":
                    mig_items.append({"model": c["model"], "replica": r, "profile": c["profile"], "base": r < base})
                elif c["kind"] == "shared":
                    shared_items.append({"model": c["model"], "replica": r, "share": c["share"]})
                else:
                    blocks.append([{"mode": "whole", "slots": [{"model": c["model"], "replica": r, "tp_rank": k,
                                                                "tp": c["tp"]}]} for k in range(c["tp"])])
        for g in pack_mig(gpu["mig_model"], mig_items, baseline_first) if mig_items else []:
            blocks.append([g])
        for g in pack_shared(shared_items):
            blocks.append([g])
        gpus, nodes = _assign_nodes(gpu, blocks)
        types.append({"gpu": tname, "gpus": gpus, "nodes": nodes})
    return types


# ---------------------------------------------------------------------------------------------
# costs
# ---------------------------------------------------------------------------------------------
def _active_nodes(type_layout, replicas_now):
    """Nodes that host at least one replica when model m runs replicas_now[m] replicas; replicas
    fill slots in GPU order (the scheduler packs, the autoscaler releases empty nodes)."""
    active = set()
    for g in type_layout["gpus"]:
        for s in g["slots"]:
            if s["replica"] < replicas_now.get(s["model"], 0):
                active.add(g["node"])
    return len(active)


def _cost_at(layouts, catalog, replicas_now):
    total, nodes = 0.0, {}
    for t in layouts:
        gpu = catalog[t["gpu"]]
        n = _active_nodes(t, replicas_now)
        nodes[t["gpu"]] = n
        total += n * gpu["node_gpus"] * gpu["price_per_hour"]
    return total, nodes


def _static_cost(layouts, catalog):
    total = 0.0
    for t in layouts:
        gpu = catalog[t["gpu"]]
        total += t["nodes"] * gpu["node_gpus"] * gpu["price_per_hour"]
    return total


def _gpu_count(layouts):
    return sum(len(t["gpus"]) for t in layouts)


def _plan_option(label, chosen, catalog, models_by_name):
    layouts = build_layout(chosen, catalog, models_by_name)
    return {"label": label, "chosen": chosen, "layouts": layouts,
            "gpus": _gpu_count(layouts), "cost_per_hour": _static_cost(layouts, catalog)}


# ---------------------------------------------------------------------------------------------
# the planner
# ---------------------------------------------------------------------------------------------
def plan(models, gpus=None, gpu_models=None, max_gpus_per_node=8, allow_mig=True, allow_sharing=False,
         pools=None, traffic_profile=None, hours_per_month=HOURS_PER_MONTH,
         vllm_version=sizing.DEFAULT_VLLM_VERSION, solve_exact=True):
    """Plan a portfolio. Raises PlannerError naming the field (and the model) at fault."""
    max_gpus_per_node = _num(max_gpus_per_node, "max_gpus_per_node", minimum=1, integer=True)
    hours_per_month = _num(hours_per_month, "hours_per_month", minimum=0, strict_min=True)
    try:
        sizing.parse_version(vllm_version)
    except sizing.SizingError as e:
        raise PlannerError("vllm_version", str(e))
    pool_defs = _normalize_pools(pools)
    if pool_defs and not gpu_models:
        gpu_models = sorted({p["gpu_model"] for p in pool_defs})
    catalog = build_catalog(gpus, gpu_models, max_gpus_per_node)
    for p in pool_defs:
        if p["gpu_model"] not in catalog:
            raise PlannerError("pools", "pool '%s': gpu_model '%s' is not in the catalog (%s)"
                               % (p["name"], p["gpu_model"], ", ".join(catalog)))
        if p.get("gpus_per_node"):
            catalog[p["gpu_model"]]["gpus_per_node"] = p["gpus_per_node"]
            catalog[p["gpu_model"]]["node_gpus"] = min(p["gpus_per_node"], max_gpus_per_node)
    profile = _validate_profile(traffic_profile, "traffic_profile")
    norm = normalize_models(models, catalog, profile)
    by_name = {m["name"]: m for m in norm}
    sizer = _Sizer(vllm_version)

    # 1. candidates per model and GPU type
    cands = {}
    for m in norm:
        per_type, misses = {}, []
        for t in m["gpu_models"]:
            cs, miss = candidates(m, catalog[t], sizer, allow_mig=allow_mig, allow_sharing=allow_sharing)
            if cs:
                per_type[t] = cs
            misses.extend(miss)
        if not per_type:
            largest = max((catalog[t] for t in m["gpu_models"]), key=lambda g: g["usable_gib"])
            last = [x for x in misses if x.startswith(largest["name"])] or misses
            raise PlannerError("models", "model '%s' fits no GPU or MIG slice in the catalog (%s); on the largest, "
                               "%s. Quantize it (quantization: awq or fp8), shorten max_model_len, allow more GPUs "
                               "per node for tensor parallelism, or add a larger GPU to the catalog"
                               % (m["name"], ", ".join(m["gpu_models"]), last[-1] if last else "no slot fits"))
        cands[m["name"]] = per_type

    # 2. whole plans: mixed, one GPU type for all, naive
    options = []
    mixed = {}
    for m in norm:
        best = sorted((cs[0] for cs in cands[m["name"]].values()),
                      key=lambda c: (round(c["cost_per_hour"], 6), c["fraction"], list(catalog).index(c["gpu"])))
        mixed[m["name"]] = best[0]
    options.append(_plan_option("mixed: cheapest slot per model", mixed, catalog, by_name))
    for t in catalog:
        if all(t in cands[m["name"]] for m in norm):
            chosen = {m["name"]: cands[m["name"]][t][0] for m in norm}
            options.append(_plan_option("all on %s" % t, chosen, catalog, by_name))
    naive_choice = _naive_choice(norm, catalog, sizer)
    naive = _plan_option("naive: one whole GPU per replica", naive_choice, catalog, by_name)
    options.append(naive)
    best = min(options, key=lambda o: (round(o["cost_per_hour"], 6), o["gpus"], options.index(o)))

    # 3. the exact plan: the same options, solved as one problem (placement.solve); the heuristic's
    # plan is its first solution and its fallback.
    exact, solver = _exact_option(norm, cands, catalog, by_name, pool_defs, best, solve_exact)
    if exact is not None:
        options.append(exact)
        best = exact
    return _result(best, options, naive, norm, catalog, pool_defs, profile, hours_per_month, vllm_version, solver)


def _option_key(c):
    return (c["gpu"], c["kind"], c["profile"], c["tp"], c["share"])


def _exact_option(norm, cands, catalog, by_name, pool_defs, heuristic, solve_exact):
    """The CP-SAT plan as an option, or None; and what the report says about how the plan was made."""
    h_units = int(round(heuristic["cost_per_hour"] * placement.PRICE_SCALE))
    info = {"method": "heuristic", "status": None, "heuristic_cost_per_hour": _r2(heuristic["cost_per_hour"]),
            "cost_per_hour": _r2(heuristic["cost_per_hour"]), "bound_per_hour": None, "gap_percent": None,
            "reason": None}
    if not solve_exact:
        info["reason"] = "solve_exact is off"
        return None, info
    if not placement.available():
        info["reason"] = ("OR-Tools is not installed on the controller (pip install ortools, see "
                          "requirements/controller.txt): the plan is the heuristic's and its optimality is not proven")
        return None, info
    order = [m["name"] for m in norm]
    opts = {m["name"]: [c for t in m["gpu_models"] for c in cands[m["name"]].get(t, [])] for m in norm}
    keys = {name: [_option_key(c) for c in opts[name]] for name in order}
    hint = {name: keys[name].index(_option_key(heuristic["chosen"][name])) for name in order
            if _option_key(heuristic["chosen"][name]) in keys[name]}
    caps = {p["gpu_model"]: p["max_nodes"] for p in pool_defs if p.get("max_nodes") is not None}
    if any(t["nodes"] > caps.get(t["gpu"], t["nodes"]) for t in heuristic["layouts"]):
        h_units = float("inf")   # the heuristic ignores max_nodes: its plan is no plan here
    sol = placement.solve(order, opts, catalog, max_nodes=caps, hint=hint)
    # No wall time in the result: the same input must give the same result (and report) on every run.
    info["status"] = sol["status"]
    if sol["status"] == "infeasible":
        if caps:
            # Say which pools are too small: the cheapest plan without the caps shows what they need.
            free = placement.solve(order, opts, catalog, hint=hint)
            over = ["pool '%s' (%s) needs %d nodes at peak but max_nodes is %d"
                    % (p["name"], p["gpu_model"], len(free.get("nodes", {}).get(p["gpu_model"], [])), p["max_nodes"])
                    for p in pool_defs if p["gpu_model"] in caps
                    and len(free.get("nodes", {}).get(p["gpu_model"], [])) > p["max_nodes"]]
            raise PlannerError("pools", "%s; no plan fits within the pools' max_nodes: raise max_nodes or allow "
                               "other GPU types" % ("; ".join(over) or "the pools' max_nodes are too small"))
        info["reason"] = "the solver found the problem infeasible"
        return None, info
    if sol["status"] not in ("optimal", "feasible"):
        info["reason"] = "the solver found no plan within its time limit"
        return None, info
    info["bound_per_hour"] = _r2(sol["bound_units"] / float(placement.PRICE_SCALE))
    if sol["cost_units"] > h_units:
        info["reason"] = "the solver's best plan within its time limit costs more than the heuristic's"
        info["gap_percent"] = _pct(h_units - sol["bound_units"], h_units)
        return None, info
    chosen = {name: opts[name][sol["choice"][name]] for name in order}
    layouts = _solution_layout(sol, chosen, catalog, by_name)
    cost = _static_cost(layouts, catalog)
    if int(round(cost * placement.PRICE_SCALE)) != sol["cost_units"]:
        raise ValueError("placement: the layout built from the solution costs %.4f/h, the solver said %.4f/h"
                         % (cost, sol["cost_units"] / float(placement.PRICE_SCALE)))
    info.update(method="cp-sat", cost_per_hour=_r2(cost),
                gap_percent=_pct(sol["cost_units"] - sol["bound_units"], sol["cost_units"]))
    if sol["cost_units"] == h_units and (
            _autoscaling_cost(norm, heuristic, catalog), heuristic["gpus"]) <= (
            _autoscaling_cost(norm, {"chosen": chosen, "layouts": layouts}, catalog), _gpu_count(layouts)):
        # The heuristic's plan costs the solver's optimum at peak and no more off-peak (its packing
        # puts all-day replicas together): keep it, now with its optimality proven.
        info["method"] = "heuristic, proven optimal by CP-SAT" if sol["status"] == "optimal" else "heuristic"
        return None, info
    label = ("exact: CP-SAT proven optimum" if sol["status"] == "optimal"
             else "CP-SAT best within the time limit (gap %s%%)" % info["gap_percent"])
    return {"label": label, "chosen": chosen, "layouts": layouts, "gpus": _gpu_count(layouts),
            "cost_per_hour": cost}, info


def _solution_layout(sol, chosen, catalog, models_by_name):
    """GPUs and nodes, per GPU type, exactly as the solver chose them: its MIG layouts, its shared
    GPUs and its node patterns. Replicas that run all day go first, so off-peak the last nodes
    empty and the autoscaler can release them."""
    types = []
    for tname in catalog:
        mine = [c for name, c in sorted(chosen.items(), key=lambda kv: models_by_name[kv[0]]["index"])
                if c["gpu"] == tname]
        if not mine:
            continue
        gpu = catalog[tname]
        mig_items, shared_items, blocks = [], [], []
        for c in mine:
            base = _baseline(models_by_name[c["model"]], c)
            for r in range(c["replicas"]):
                if c["kind"] == "mig":
                    mig_items.append({"model": c["model"], "replica": r, "profile": c["profile"], "base": r < base})
                elif c["kind"] == "shared":
                    shared_items.append({"model": c["model"], "replica": r, "share": c["share"], "base": r < base})
                else:
                    blocks.append((r < base, [{"mode": "whole", "slots": [
                        {"model": c["model"], "replica": r, "tp_rank": k, "tp": c["tp"]}]} for k in range(c["tp"])]))
        if mig_items:
            free = [dict(lay) for lay in sol["mig"][tname]]
            held = [[] for _f in free]
            for it in sorted(mig_items, key=lambda it: (not it["base"], models_by_name[it["model"]]["index"],
                                                        it["replica"])):
                k = next(k for k, f in enumerate(free) if f.get(it["profile"], 0) > 0)
                free[k][it["profile"]] -= 1
                held[k].append(it)
            mm = mig.MODELS[gpu["mig_model"]]
            blocks.extend((any(it["base"] for it in items), [_mig_gpu(mm, items)]) for items in held if items)
        based = {(it["model"], it["replica"]) for it in shared_items if it["base"]}
        for g in pack_shared(shared_items):
            blocks.append((any((x["model"], x["replica"]) in based for x in g["slots"]), [g]))
        nodes = [dict(p) for p in sol["nodes"][tname]]
        held = [[] for _n in nodes]
        for _base, b in sorted(blocks, key=lambda bb: not bb[0]):   # stable: baseline blocks first
            k = next(k for k, f in enumerate(nodes) if f.get(len(b), 0) > 0)
            nodes[k][len(b)] -= 1
            held[k].append(b)
        gpus = []
        for ni, n in enumerate([h for h in held if h]):
            for b in n:
                gpus.extend(dict(g, node=ni) for g in b)
        types.append({"gpu": tname, "gpus": gpus, "nodes": sum(1 for h in held if h)})
    return types


def _naive_choice(norm, catalog, sizer):
    """One whole GPU per replica (tensor parallel where one GPU is too small), cheapest type."""
    out = {}
    for m in norm:
        best = None
        for t in m["gpu_models"]:
            cs = candidates(m, catalog[t], sizer, allow_mig=False, allow_sharing=False)[0]
            cs = [c for c in cs if c["kind"] == "whole"]
            if cs and (best is None or round(cs[0]["cost_per_hour"], 6) < round(best["cost_per_hour"], 6)):
                best = cs[0]
        if best is None:   # fits only a MIG slice (cannot happen: a whole GPU is larger) - keep the plan's
            raise PlannerError("models", "model '%s' fits no whole GPU in the catalog" % m["name"])
        out[m["name"]] = best
    return out


def _normalize_pools(pools):
    out, seen = [], set()
    for i, p in enumerate(pools or []):
        f = "pools[%d]" % i
        if not isinstance(p, dict) or not p.get("name") or not p.get("gpu_model"):
            raise PlannerError(f, "%s must be a dict with name and gpu_model" % f)
        if not NAME_RE.match(str(p["name"])):
            raise PlannerError(f + ".name", "%s.name %r must be a DNS-1035 label" % (f, p["name"]))
        if p["gpu_model"] in seen:
            raise PlannerError(f + ".gpu_model", "%s: two pools for GPU '%s'; one pool per GPU type"
                               % (f, p["gpu_model"]))
        seen.add(p["gpu_model"])
        out.append({
            "name": p["name"], "gpu_model": p["gpu_model"],
            "gpus_per_node": _num(p.get("gpus_per_node"), f + ".gpus_per_node", minimum=1, integer=True),
            "max_nodes": _num(p.get("max_nodes"), f + ".max_nodes", minimum=0, integer=True),
            "labels": dict(p.get("labels") or {}), "taints": list(p.get("taints") or []),
        })
    return out


def _profile_replicas(norm, chosen, hour):
    now = {}
    for m in norm:
        c = chosen[m["name"]]
        load = m["traffic_profile"][hour] if m["traffic_profile"] else 1.0
        now[m["name"]] = min(c["replicas"], replicas_for(m, c["concurrency_per_replica"], load, c["compute_share"]))
    return now


def _hourly(norm, chosen, layouts, catalog):
    """Replicas, nodes and cost in each hour of the traffic profile (peak all day without one)."""
    out = []
    any_profile = any(m["traffic_profile"] for m in norm)
    for h in range(24):
        now = _profile_replicas(norm, chosen, h) if any_profile else {m["name"]: chosen[m["name"]]["replicas"]
                                                                      for m in norm}
        cost, nodes = _cost_at(layouts, catalog, now)
        out.append({"hour": h, "replicas": now, "nodes": nodes, "cost_per_hour": cost})
    return out


def _autoscaling_cost(norm, option, catalog):
    return sum(x["cost_per_hour"] for x in _hourly(norm, option["chosen"], option["layouts"], catalog)) / 24.0


def _money(per_hour, hours_per_month):
    return {"per_hour": _r2(per_hour), "per_month": _r2(per_hour * hours_per_month)}


def _pct(saved, base):
    return _r2(100.0 * saved / base) if base else 0.0


def _result(best, options, naive, norm, catalog, pool_defs, profile, hours_per_month, vllm_version, solver):
    chosen, layouts = best["chosen"], best["layouts"]
    pools_by_gpu = {p["gpu_model"]: p for p in pool_defs}

    hourly = _hourly(norm, chosen, layouts, catalog)
    autoscale_avg = sum(x["cost_per_hour"] for x in hourly) / 24.0
    static = best["cost_per_hour"]

    # memory lower bound per GPU type used
    lb_gpus, lb_cost, lb_rows = 0, 0.0, []
    for t in layouts:
        gpu = catalog[t["gpu"]]
        need = sum(c["min_gib_per_replica"] * c["replicas"] for c in chosen.values() if c["gpu"] == t["gpu"])
        n = _ceil(need / gpu["usable_gib"])
        lb_gpus += n
        lb_cost += n * gpu["price_per_hour"]
        lb_rows.append({"gpu": t["gpu"], "gib_needed": _r2(need), "gib_per_gpu": gpu["usable_gib"], "gpus": n})

    # GPUs, nodes and pools
    gpu_rows, pools_out, host_groups = [], [], []
    gid = 0
    for t in layouts:
        gpu = catalog[t["gpu"]]
        pool = pools_by_gpu.get(t["gpu"]) or {"name": "llm-inference-" + _slug(t["gpu"]), "labels": {},
                                              "taints": [], "max_nodes": None}
        trough = min(x["nodes"].get(t["gpu"], 0) for x in hourly)
        if pool.get("max_nodes") is not None and t["nodes"] > pool["max_nodes"]:
            raise PlannerError("pools", "pool '%s' (%s) needs %d nodes at peak but max_nodes is %d"
                               % (pool["name"], t["gpu"], t["nodes"], pool["max_nodes"]))
        node_layouts = {}
        for g in t["gpus"]:
            g_out = {"id": gid, "gpu": t["gpu"], "pool": pool["name"], "node": g["node"], "mode": g["mode"],
                     "slots": g["slots"]}
            if g["mode"] == "mig":
                g_out["mig_devices"] = dict(sorted(g["mig_devices"].items()))
                g_out["memory_slices"] = mig.MODELS[gpu["mig_model"]].memory_slices
            gpu_rows.append(g_out)
            node_layouts.setdefault(g["node"], []).append(g_out)
            gid += 1
        pools_out.append({
            "name": pool["name"], "gpu": t["gpu"], "gpus_per_node": gpu["node_gpus"], "gpus": len(t["gpus"]),
            "nodes": t["nodes"], "min_nodes": trough, "max_nodes": t["nodes"],
            "labels": dict({"workload-class": "inference", "gpu-type": _slug(t["gpu"])}, **pool["labels"]),
            "taints": pool["taints"] or [{"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}],
            "cost_per_hour": _r2(t["nodes"] * gpu["node_gpus"] * gpu["price_per_hour"]),
        })
        host_groups.extend(_host_groups(pool["name"], t["gpu"], node_layouts, bool(gpu.get("mig_model"))))

    model_rows = []
    for m in norm:
        c = chosen[m["name"]]
        nv = naive["chosen"][m["name"]]
        reps = [x["replicas"][m["name"]] for x in hourly]
        model_rows.append({
            "name": m["name"], "model": m["model"], "latency_class": m["latency_class"],
            "parameters_billion": c["sizing"]["model"]["parameters_billion"],
            "quantization": c["sizing"]["quantization"]["method"], "max_model_len": c["max_model_len"],
            "synthesized_config": m["synthesized_config"],
            "gpu": c["gpu"], "kind": c["kind"], "mig_profile": c["profile"], "tensor_parallel_size": c["tp"],
            "share": c["share"] if c["kind"] == "shared" else None,
            "slot": _slot_name(c), "slot_gib": c["slot_gib"], "gpu_memory_utilization": c["gpu_memory_utilization"],
            "weights_gib_per_gpu": c["weights_gib_per_gpu"], "kv_cache_tokens": c["kv_cache_tokens"],
            "concurrency_per_replica": c["concurrency_per_replica"], "replicas": c["replicas"],
            "min_replicas": min(reps), "max_replicas": c["replicas"],
            "naive_gpu": nv["gpu"], "naive_replicas": nv["replicas"], "naive_gpus": nv["replicas"] * nv["tp"],
            "warnings": sorted(set(c["sizing"]["warnings"])) + (
                ["config synthesized from parameters_billion (Llama-shaped, approximate)"]
                if m["synthesized_config"] else []),
        })

    naive_cost = naive["cost_per_hour"]
    replicas_total = sum(c["replicas"] for c in chosen.values())
    endpoints = len(norm)
    result = {
        "summary": {
            "models": endpoints, "replicas": replicas_total, "gpus": best["gpus"], "nodes": sum(t["nodes"] for t in layouts),
            "lower_bound_gpus": lb_gpus, "naive_gpus": naive["gpus"], "chosen_option": best["label"],
            "cost_per_endpoint_per_hour": _r2(static / endpoints),
            "naive_cost_per_endpoint_per_hour": _r2(naive_cost / endpoints),
            "savings_vs_naive_percent": _pct(naive_cost - static, naive_cost),
            "autoscaling_savings_vs_static_percent": _pct(static - autoscale_avg, static),
            "total_savings_vs_naive_percent": _pct(naive_cost - autoscale_avg, naive_cost),
        },
        "costs": {
            "static": _money(static, hours_per_month),
            "autoscaling": _money(autoscale_avg, hours_per_month),
            "naive": _money(naive_cost, hours_per_month),
            "lower_bound": _money(lb_cost, hours_per_month),
            "hours_per_month": hours_per_month,
            "traffic_profile": profile,
            "hourly": [{"hour": x["hour"], "cost_per_hour": _r2(x["cost_per_hour"]), "nodes": x["nodes"],
                        "replicas": x["replicas"]} for x in hourly],
        },
        "lower_bound": {"gpus": lb_gpus, "by_gpu": lb_rows,
                        "method": "sum over replicas of (weights + activation + non-torch + one max_model_len "
                                  "request of KV cache) / usable GiB per GPU, rounded up per GPU type"},
        "models": model_rows,
        "gpus": gpu_rows,
        "pools": pools_out,
        "host_groups": host_groups,
        "options": [{"label": o["label"], "gpus": o["gpus"], "cost_per_hour": _r2(o["cost_per_hour"]),
                     "chosen": o is best} for o in options],
        "catalog": [{"name": g["name"], "price_per_hour": g["price_per_hour"], "price_source": g["price_source"],
                     "usable_gib": g["usable_gib"], "mig_model": g.get("mig_model"),
                     "gpus_per_node": g["node_gpus"]} for g in catalog.values()],
        "vllm_version": vllm_version,
        "solver": solver,
    }
    result["inventory"] = _inventory(result, norm, chosen, catalog)
    return result


def _slot_name(c):
    if c["kind"] == "mig":
        return "MIG %s" % c["profile"]
    if c["kind"] == "shared":
        return "1/%d of a GPU (time-sliced)" % c["share"]
    return "%d whole GPU%s" % (c["tp"], "s" if c["tp"] > 1 else "")


def _host_groups(pool, gpu_name, node_layouts, mig_capable):
    """Nodes with identical GPU layouts form one inventory host group."""
    groups = {}
    for node in sorted(node_layouts):
        gl = node_layouts[node]
        sig = tuple((g["mode"], tuple(sorted(g.get("mig_devices", {}).items()))) for g in gl)
        groups.setdefault(sig, []).append(node)
    out = []
    for n, (sig, nodes) in enumerate(sorted(groups.items(), key=lambda kv: kv[1][0])):
        name = "%s_%d" % (pool.replace("-", "_"), n + 1)
        modes = {entry[0] for entry in sig}
        hg = {"name": name, "pool": pool, "gpu": gpu_name, "nodes": len(nodes), "vars": {}}
        if modes == {"mig"} and len({entry[1] for entry in sig}) == 1:
            hg["vars"] = {"mig_devices": dict(sig[0][1])}
        elif "mig" in modes:
            # GPUs of one node differ: a mig-parted config (facts §4 schema) with one entry per GPU.
            entries = [{"devices": [i], "mig-enabled": m == "mig", "mig-devices": dict(d)}
                       for i, (m, d) in enumerate(sig)]
            hg["vars"] = {"mig_config_name": name, "mig_parted_config": {"version": "v1", "mig-configs": {name: entries}}}
        elif mig_capable:
            # Whole or time-sliced GPUs on a MIG-capable model: MIG must be off there.
            hg["vars"] = {"mig_preset": "all-disabled"}
        out.append(hg)
    return out


def _inventory(result, norm, chosen, catalog):
    by_name = {m["name"]: m for m in norm}
    vllm, autoscale = [], []
    for row in result["models"]:
        m = by_name[row["name"]]
        c = chosen[row["name"]]
        gpu = catalog[c["gpu"]]
        entry = {
            "name": row["name"], "model": m["model"], "config": copy.deepcopy(m["config"]),
            "max_model_len": c["max_model_len"], "gpu_memory_utilization": c["gpu_memory_utilization"],
            "tensor_parallel_size": c["tp"], "replicas": c["replicas"],
            "node_selector": {"gpu-type": _slug(c["gpu"])},
        }
        if m["quantization"] is not None:
            entry["quantization"] = m["quantization"]
        if m["kv_cache_dtype"] != "auto":
            entry["kv_cache_dtype"] = m["kv_cache_dtype"]
        if c["kind"] == "shared":
            entry["gpu_memory_gib"] = c["slot_gib"]
        else:
            entry["gpu_model"] = gpu.get("sizing_gpu") or c["gpu"]
        if c["kind"] == "mig":
            entry["mig_profile"] = c["profile"]
        vllm.append(entry)
        autoscale.append({"name": row["name"], "min_replicas": row["min_replicas"], "max_replicas": row["max_replicas"],
                          "scale_to_zero": row["min_replicas"] == 0})
    groups = {hg["name"]: {"nodes": hg["nodes"], "vars": hg["vars"]} for hg in result["host_groups"]}
    node_pools, cloud = [], []
    for p in result["pools"]:
        hg_names = [hg["name"] for hg in result["host_groups"] if hg["pool"] == p["name"]]
        node_pools.append({
            "name": p["name"], "kind": "gpu",
            "hosts": "{{ %s }}" % " + ".join("groups['%s'] | default([])" % n for n in hg_names),
            "labels": p["labels"], "gpu_type_label": "gpu-type-product", "taints": p["taints"],
        })
        cp = {"name": p["name"], "purpose": "inference", "accelerator": {"count": p["gpus_per_node"]},
              "min_nodes": p["min_nodes"], "max_nodes": p["max_nodes"], "initial_nodes": p["max_nodes"],
              "labels": p["labels"], "taints": p["taints"], "allow_scale_to_zero": p["min_nodes"] == 0}
        if catalog[p["gpu"]].get("machine_type"):
            cp["machine_type"] = catalog[p["gpu"]]["machine_type"]
        cloud.append(cp)
    return {"node_pools_pools": node_pools, "cloud_node_pools_pools": cloud, "host_groups": groups,
            "vllm_service_models": vllm, "autoscaling_models": autoscale}


# ---------------------------------------------------------------------------------------------
# Markdown report
# ---------------------------------------------------------------------------------------------
def _usd(x):
    return "$%s" % format(x, ",.2f")


def _solver_line(sv):
    """How the plan was made, and how far from the optimum it can be."""
    if sv.get("bound_per_hour") is None:
        return "Made by the heuristic; its optimality is not proven: %s." % (sv.get("reason") or "no solver ran")
    text = ("Made by %s; CP-SAT (OR-Tools) %s the least cost at peak is %s/h: this plan costs %s/h, gap %s%% "
            "(the heuristic alone: %s/h)."
            % ("CP-SAT" if sv["method"] == "cp-sat" else "the heuristic", "proved" if sv["status"] == "optimal"
               else "bounded (time limit)", _usd(sv["bound_per_hour"]), _usd(sv["cost_per_hour"]),
               sv["gap_percent"], _usd(sv["heuristic_cost_per_hour"])))
    if sv.get("reason"):
        text += " " + sv["reason"][0].upper() + sv["reason"][1:] + "."
    return text


def render_markdown(result, title="GPU capacity plan", diagram=None, note=None):
    s, c = result["summary"], result["costs"]
    L = ["# %s" % title, ""]
    L.append("%d models, %d replicas on **%d GPUs** (%d nodes); naive plan (one whole GPU per replica): %d GPUs; "
             "memory lower bound: %d GPUs. Plan chosen: %s."
             % (s["models"], s["replicas"], s["gpus"], s["nodes"], s["naive_gpus"], s["lower_bound_gpus"],
                s["chosen_option"]))
    L.append("")
    L += [_solver_line(result.get("solver") or {}), ""]
    if diagram:
        L += ["![GPU layout](%s)" % diagram, ""]
    if note:
        L += [note, ""]
    L += ["## Cost", "", "| provisioning | per hour | per month (%g h) | vs naive |" % c["hours_per_month"],
          "|---|---:|---:|---:|"]
    for key, label in (("naive", "naive: one whole GPU per replica, peak all day"),
                       ("static", "plan, static: peak replicas all day"),
                       ("autoscaling", "plan with autoscaling (traffic profile)"),
                       ("lower_bound", "memory lower bound")):
        base = c["naive"]["per_hour"]
        L.append("| %s | %s | %s | %s |" % (label, _usd(c[key]["per_hour"]), _usd(c[key]["per_month"]),
                                            ("-%s%%" % _pct(base - c[key]["per_hour"], base)) if key != "naive" else "-"))
    L += ["", "- Cost per endpoint: %s/h planned vs %s/h dedicated: **%s%% lower**."
          % (_usd(s["cost_per_endpoint_per_hour"]), _usd(s["naive_cost_per_endpoint_per_hour"]),
             s["savings_vs_naive_percent"]),
          "- Autoscaling saves %s%% against the static plan%s." % (
              s["autoscaling_savings_vs_static_percent"],
              "" if c["traffic_profile"] else " (no traffic profile given, so none)"), ""]
    L += ["## Models", "", "| model | params (B) | quant | max len | class | slot | GPU | replicas (min-max) | "
          "requests/replica | KV tokens | gmu |", "|---|---:|---|---:|---|---|---|---|---:|---:|---:|"]
    for m in result["models"]:
        L.append("| %s | %s | %s | %d | %s | %s | %s | %d (%d-%d) | %d | %d | %.2f |" % (
            m["name"], m["parameters_billion"], m["quantization"], m["max_model_len"], m["latency_class"],
            m["slot"], m["gpu"], m["replicas"], m["min_replicas"], m["max_replicas"],
            m["concurrency_per_replica"], m["kv_cache_tokens"], m["gpu_memory_utilization"]))
    L += ["", "## GPUs", "", "| GPU | type | pool | node | mode | layout | models (placement start:size) |",
          "|---:|---|---|---:|---|---|---|"]
    for g in result["gpus"]:
        if g["mode"] == "mig":
            layout = ", ".join("%s x%d" % (p, n) for p, n in g["mig_devices"].items())
            who = ", ".join("%s@%d:%d %s" % (x["profile"], x["start"], x["size"], x["model"]) for x in g["slots"])
        elif g["mode"] == "shared":
            layout = "time-sliced"
            who = ", ".join("1/%d %s" % (x["share"], x["model"]) for x in g["slots"])
        else:
            layout = "whole GPU"
            who = ", ".join("%s (replica %d%s)" % (x["model"], x["replica"],
                                                   ", TP rank %d/%d" % (x["tp_rank"], x["tp"]) if x["tp"] > 1 else "")
                            for x in g["slots"])
        L.append("| %d | %s | %s | %d | %s | %s | %s |"
                 % (g["id"], g["gpu"], g["pool"], g["node"], g["mode"], layout, who))
    L += ["", "## Node pools", "", "| pool | GPU | GPUs/node | nodes at peak | min nodes | max nodes | cost/h at peak |",
          "|---|---|---:|---:|---:|---:|---:|"]
    for p in result["pools"]:
        L.append("| %s | %s | %d | %d | %d | %d | %s |"
                 % (p["name"], p["gpu"], p["gpus_per_node"], p["nodes"], p["min_nodes"], p["max_nodes"],
                    _usd(p["cost_per_hour"])))
    lb = result["lower_bound"]
    L += ["", "## Lower bound", "", "Method: %s." % lb["method"], "",
          "| GPU | GiB needed | usable GiB per GPU | GPUs |", "|---|---:|---:|---:|"]
    for r in lb["by_gpu"]:
        L.append("| %s | %.2f | %.2f | %d |" % (r["gpu"], r["gib_needed"], r["gib_per_gpu"], r["gpus"]))
    L += ["", "## Plans compared", "", "| plan | GPUs | cost/h at peak | chosen |", "|---|---:|---:|---|"]
    for o in result["options"]:
        L.append("| %s | %d | %s | %s |" % (o["label"], o["gpus"], _usd(o["cost_per_hour"]), "yes" if o["chosen"] else ""))
    if c["traffic_profile"]:
        L += ["", "## Autoscaling by hour", "", "| hour | cost/h | nodes |", "|---:|---:|---|"]
        for x in c["hourly"]:
            nodes = ", ".join("%s %d" % kv for kv in sorted(x["nodes"].items()))
            L.append("| %02d | %s | %s |" % (x["hour"], _usd(x["cost_per_hour"]), nodes))
    L += ["", "## Assumptions", "",
          "- Memory per replica comes from `sizing.estimate` (the `model_fit` core) with the highest "
          "`gpu_memory_utilization` it recommends for the slot; MIG layouts from `mig.solve` (the `mig_plan` solver).",
          "- Replicas: peak concurrency / (requests a replica's KV cache holds x target utilization of the latency "
          "class), and requests/s x output tokens / (tokens/s per replica x target utilization); the larger wins.",
          "- Autoscaling: replicas follow the traffic profile, fill slots in GPU order, and a node is released when "
          "none of its slots is busy; MIG layouts stay as planned.",
          "- Prices are USD per GPU-hour, on-demand list prices, ASSUMPTIONS:", ""]
    for g in result["catalog"]:
        L.append("  - %s: %s (%s)" % (g["name"], _usd(g["price_per_hour"]), g["price_source"]))
    warns = sorted({w for m in result["models"] for w in m["warnings"]})
    if warns:
        L += ["", "## Warnings", ""] + ["- %s" % w for w in warns]
    return "\n".join(L) + "\n"
