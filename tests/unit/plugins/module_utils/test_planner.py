# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for plugins/module_utils/planner.py.

Expected GPU counts come from the MIG facts (/work/shared/facts/mig-and-nvml.md §1-2: instance
counts and legal placements), the seed article's "12 scoring services on 2 A100s", and hand
arithmetic written next to each test, never from the planner's own output.
"""
from __future__ import annotations

import random

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import mig, planner
from ansible_collections.gpuops.llm.plugins.module_utils.planner import PlannerError

# Facts §1: legal starts (memory slices) and instance counts of the profiles used below.
A100_40_1G5_STARTS = set(range(7))        # 1g.5gb {0..6}:1, n 7
A100_80_1G10_STARTS = set(range(7))       # 1g.10gb {0..6}:1, n 7 (same placements as the 40GB card)

# A 13B-class dense model (Llama-2-13B's public config.json shape): 16-bit weights ~24 GiB.
LLAMA_13B = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 5120, "num_hidden_layers": 40,
    "num_attention_heads": 40, "num_key_value_heads": 40, "intermediate_size": 13824, "vocab_size": 32000,
    "tie_word_embeddings": False, "torch_dtype": "float16", "max_position_embeddings": 4096,
}


def scorers(n=12, params=0.5, conc=2):
    return [{"name": "risk-scorer-%02d" % (i + 1), "parameters_billion": params, "max_model_len": 2048,
             "peak_concurrency": conc} for i in range(n)]


def assert_layouts_valid(result):
    """Every MIG GPU: the solver accepts its layout, placements are legal and do not overlap."""
    for g in result["gpus"]:
        if g["mode"] != "mig":
            continue
        model = mig.MODELS[[c for c in result["catalog"] if c["name"] == g["gpu"]][0]["mig_model"]]
        mig.solve(model, g["mig_devices"])                       # raises if NVML would refuse it
        used = 0
        for s in g["slots"]:
            prof = model.profile(s["profile"])
            assert s["start"] in prof.starts and s["size"] == prof.size
            mask = ((1 << s["size"]) - 1) << s["start"]
            assert not used & mask, "overlapping placements on GPU %d" % g["id"]
            used |= mask
        assert sum(model.profile(s["profile"]).slices for s in g["slots"]) <= model.compute_slices
        counts = {}
        for s in g["slots"]:
            counts[s["profile"]] = counts.get(s["profile"], 0) + 1
        assert counts == g["mig_devices"]


# ---------------------------------------------------------------------------------------------
# the seed's case
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("gpu,profile,starts", [
    ("A100-40GB", "1g.5gb", A100_40_1G5_STARTS),
    ("A100-80GB", "1g.10gb", A100_80_1G10_STARTS),
])
def test_twelve_scoring_services_on_two_a100s(gpu, profile, starts):
    r = planner.plan(scorers(), gpu_models=[gpu])
    # 12 one-slice instances, 7 per GPU (facts: n = 7, starts 0..6) -> ceil(12 / 7) = 2 GPUs.
    assert r["summary"]["gpus"] == 2
    assert {m["mig_profile"] for m in r["models"]} == {profile}
    assert sorted(len(g["slots"]) for g in r["gpus"]) == [5, 7]
    assert all(s["start"] in starts for g in r["gpus"] for s in g["slots"])
    assert sorted(s["model"] for g in r["gpus"] for s in g["slots"]) == ["risk-scorer-%02d" % i for i in range(1, 13)]
    assert_layouts_valid(r)
    # Dedicated allocation: 12 GPUs. Per endpoint: 2/12 of the cost -> 83.3% lower. The seed claims
    # 71% (which equals 1 - 2/7); the planner's figure must reach at least the seed's 70%.
    assert r["summary"]["naive_gpus"] == 12
    price = [c["price_per_hour"] for c in r["catalog"] if c["name"] == gpu][0]
    assert r["summary"]["naive_cost_per_endpoint_per_hour"] == pytest.approx(price, abs=0.01)
    assert r["summary"]["savings_vs_naive_percent"] == pytest.approx(100 * (1 - 2 / 12.0), abs=0.01)
    assert r["summary"]["savings_vs_naive_percent"] >= 70


def test_twelve_services_inventory_feeds_the_week_playbooks():
    r = planner.plan(scorers(), gpu_models=["A100-40GB"])
    inv = r["inventory"]
    assert [e["mig_profile"] for e in inv["vllm_service_models"]] == ["1g.5gb"] * 12
    assert all(e["gpu_model"] == "A100-40GB" and e["replicas"] == 1 for e in inv["vllm_service_models"])
    # one host group per distinct node layout: 7x and 5x 1g.5gb
    layouts = sorted(g["vars"]["mig_devices"]["1g.5gb"] for g in inv["host_groups"].values())
    assert layouts == [5, 7]
    hosts = inv["node_pools_pools"][0]["hosts"]
    assert all("groups['%s']" % name in hosts for name in inv["host_groups"])
    assert inv["cloud_node_pools_pools"][0]["max_nodes"] == 2


# ---------------------------------------------------------------------------------------------
# bounds: lower bound <= plan <= naive, autoscaling <= static
# ---------------------------------------------------------------------------------------------
def _random_portfolio(rng):
    models = []
    for i in range(rng.randint(1, 7)):
        m = {"name": "m%d" % i, "parameters_billion": rng.choice([0.5, 1, 3, 8, 14, 32]),
             "max_model_len": rng.choice([1024, 4096, 8192]),
             "quantization": rng.choice([None, "awq", "fp8"]),
             "latency_class": rng.choice(["interactive", "standard", "batch"]),
             "peak_concurrency": rng.choice([1, 4, 16, 64])}
        models.append({k: v for k, v in m.items() if v is not None})
    return models


@pytest.mark.parametrize("seed", range(12))
def test_bounds_hold_on_random_portfolios(seed):
    rng = random.Random(seed)
    gpus = rng.sample(["A100-40GB", "A100-80GB", "H100-80GB", "L40S", "H100-NVL"], rng.randint(1, 3))
    profile = [rng.choice([0, 0.2, 0.5, 1.0]) for hour in range(24)]
    profile[12] = 1.0
    try:
        r = planner.plan(_random_portfolio(rng), gpu_models=gpus, traffic_profile=profile,
                         allow_sharing=bool(seed % 2))
    except PlannerError as e:
        assert "fits no GPU" in str(e)
        return
    s, c = r["summary"], r["costs"]
    assert s["lower_bound_gpus"] <= s["gpus"]
    assert c["lower_bound"]["per_hour"] <= c["static"]["per_hour"] + 1e-9
    assert c["static"]["per_hour"] <= c["naive"]["per_hour"] + 1e-9
    assert c["autoscaling"]["per_hour"] <= c["static"]["per_hour"] + 1e-9
    assert all(h["cost_per_hour"] <= c["static"]["per_hour"] + 1e-9 for h in c["hourly"])
    assert_layouts_valid(r)
    for m in r["models"]:
        assert 0 <= m["min_replicas"] <= m["max_replicas"] == m["replicas"]


def test_lower_bound_is_reached_where_achievable():
    # On H100-80GB a 13B fp16 model (~24 GiB weights) needs 3g.40gb; four 1B models fit 1g.10gb.
    # 3g (4 memory slices, 3 compute) + 4 x 1g (1 + 1 each) = 8 memory / 7 compute slices: one GPU,
    # which needs the 3g at start 4 (facts §2: first-fit from 0 fails this layout).
    models = [{"name": "big", "config": LLAMA_13B, "max_model_len": 4096, "peak_concurrency": 1}]
    models += [{"name": "small-%d" % i, "parameters_billion": 1, "max_model_len": 2048, "peak_concurrency": 1}
               for i in range(4)]
    r = planner.plan(models, gpu_models=["H100-80GB"])
    by = {m["name"]: m for m in r["models"]}
    assert by["big"]["mig_profile"] == "3g.40gb"
    assert {by["small-%d" % i]["mig_profile"] for i in range(4)} == {"1g.10gb"}
    assert r["summary"]["gpus"] == 1 and r["summary"]["lower_bound_gpus"] == 1
    assert [s["start"] for s in r["gpus"][0]["slots"] if s["profile"] == "3g.40gb"] == [4]
    assert_layouts_valid(r)


def test_autoscaling_follows_the_profile_and_batch_scales_to_zero():
    # A batch model busy only 8 of 24 hours: 16 hours at zero replicas -> 1/3 of static.
    prof = [0] * 8 + [1] * 8 + [0] * 8
    r = planner.plan([{"name": "nightly", "parameters_billion": 8, "max_model_len": 4096,
                       "latency_class": "batch", "peak_concurrency": 4}],
                     gpu_models=["L40S"], traffic_profile=prof)
    c = r["costs"]
    assert c["autoscaling"]["per_hour"] == pytest.approx(c["static"]["per_hour"] * 8 / 24.0, abs=0.01)
    assert r["pools"][0]["min_nodes"] == 0
    assert r["inventory"]["autoscaling_models"][0]["scale_to_zero"] is True
    assert r["inventory"]["cloud_node_pools_pools"][0]["allow_scale_to_zero"] is True


def test_interactive_keeps_a_replica():
    r = planner.plan([{"name": "chat", "parameters_billion": 8, "max_model_len": 4096,
                       "latency_class": "interactive", "peak_concurrency": 4}],
                     gpu_models=["L40S"], traffic_profile=[0] * 23 + [1])
    assert r["models"][0]["min_replicas"] == 1
    assert r["costs"]["autoscaling"]["per_hour"] == r["costs"]["static"]["per_hour"]


def test_replicas_from_requests_per_second():
    # 10 req/s x 100 tokens = 1000 tokens/s; a replica does 500 at 75% (standard) = 375 -> 3 replicas.
    r = planner.plan([{"name": "api", "parameters_billion": 1, "max_model_len": 2048, "requests_per_second": 10,
                       "output_tokens_per_request": 100, "tokens_per_second_per_replica": 500}],
                     gpu_models=["L4"])
    assert r["models"][0]["replicas"] == 3


def test_throughput_of_a_mig_slice_is_its_compute_share():
    # 4 req/s x 75 tokens = 300 tokens/s; 700 tokens/s on a whole GPU -> a 1g slice gets 700/7 = 100
    # (the planner's g/7 assumption), 75 at 75% -> 4 replicas on 1g.10gb (4/8 of a GPU); a 2g slice
    # needs 2 (also 4/8): the tie goes to the smaller slice; a whole GPU would cost 8/8.
    r = planner.plan([{"name": "api", "parameters_billion": 1, "max_model_len": 2048, "requests_per_second": 4,
                       "output_tokens_per_request": 75, "tokens_per_second_per_replica": 700}],
                     gpu_models=["A100-80GB"])
    m = r["models"][0]
    assert (m["mig_profile"], m["replicas"]) == ("1g.10gb", 4)


def test_baseline_replicas_are_packed_first_so_nodes_can_go():
    # 7 always-on 1g replicas and 7 that run 12 of 24 hours: packed apart, one GPU is released
    # for 12 hours -> autoscaling = (2 x 12 + 1 x 12) / 24 = 1.5 GPUs on average.
    models = [{"name": "on-%d" % i, "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 1}
              for i in range(7)]
    models += [{"name": "day-%d" % i, "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 1,
                "latency_class": "batch", "traffic_profile": [0] * 12 + [1] * 12} for i in range(7)]
    r = planner.plan(models, gpu_models=["A100-80GB"])
    price = [c["price_per_hour"] for c in r["catalog"] if c["name"] == "A100-80GB"][0]
    assert r["summary"]["gpus"] == 2
    assert r["costs"]["autoscaling"]["per_hour"] == pytest.approx(1.5 * price, abs=0.01)


def test_peak_concurrency_limited_by_kv_cache():
    # max_concurrency_per_replica 4, 30 requests at 75%: 30 / (4 x 0.75) = 10 replicas.
    r = planner.plan([{"name": "api", "parameters_billion": 1, "max_model_len": 2048, "peak_concurrency": 30,
                       "max_concurrency_per_replica": 4}], gpu_models=["L4"])
    assert r["models"][0]["concurrency_per_replica"] == 4 and r["models"][0]["replicas"] == 10


# ---------------------------------------------------------------------------------------------
# whole GPUs, tensor parallelism, sharing
# ---------------------------------------------------------------------------------------------
def test_model_too_big_for_one_gpu_uses_tensor_parallel_within_a_node():
    big = {"name": "llama-70b", "parameters_billion": 70, "max_model_len": 8192, "peak_concurrency": 1}
    with pytest.raises(PlannerError) as e:
        planner.plan([big], gpu_models=["A100-80GB"])            # 1 GPU per node by default
    assert "llama-70b" in str(e.value)
    r = planner.plan([big], gpus=[{"name": "A100-80GB", "gpus_per_node": 8}], gpu_models=["A100-80GB"])
    # 70B x 2 bytes = 130 GiB > 79 GiB -> at least 2 GPUs; 2 GPUs leave too little KV -> TP 2 or 4
    m = r["models"][0]
    assert m["kind"] == "whole" and m["tensor_parallel_size"] in (2, 4)
    assert len({g["node"] for g in r["gpus"]}) == 1           # one replica never spans nodes
    assert r["summary"]["gpus"] == m["tensor_parallel_size"]


def test_sharing_packs_small_models_on_one_l4():
    models = [{"name": "tiny-%d" % i, "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 1}
              for i in range(4)]
    alone = planner.plan(models, gpu_models=["L4"])
    shared = planner.plan(models, gpu_models=["L4"], allow_sharing=True)
    assert alone["summary"]["gpus"] == 4                      # L4 has no MIG: one GPU each
    assert shared["summary"]["gpus"] == 1                     # 4 x 1/4 shares
    assert {m["kind"] for m in shared["models"]} == {"shared"}
    interactive = [dict(m, latency_class="interactive") for m in models]
    assert planner.plan(interactive, gpu_models=["L4"], allow_sharing=True)["summary"]["gpus"] == 4


def test_allow_mig_false_uses_whole_gpus():
    r = planner.plan(scorers(3), gpu_models=["A100-40GB"], allow_mig=False)
    assert r["summary"]["gpus"] == 3 and {m["kind"] for m in r["models"]} == {"whole"}
    assert all(hg["vars"] == {"mig_preset": "all-disabled"} for hg in r["host_groups"])


# ---------------------------------------------------------------------------------------------
# catalog and prices
# ---------------------------------------------------------------------------------------------
def test_prices_are_overridable_data_with_sources():
    cat = {c["name"]: c for c in planner.plan(scorers(1), gpu_models=["A100-40GB"])["catalog"]}
    assert cat["A100-40GB"]["price_source"]
    for name, entry in planner.DEFAULT_GPUS.items():
        assert entry["price_per_hour"] > 0 and entry["price_source"], name
    r1 = planner.plan(scorers(), gpu_models=["A100-40GB"])
    r2 = planner.plan(scorers(), gpus=[{"name": "A100-40GB", "price_per_hour": 1.0}], gpu_models=["A100-40GB"])
    assert r2["costs"]["static"]["per_hour"] == pytest.approx(2 * 1.0)
    assert r1["summary"]["gpus"] == r2["summary"]["gpus"]
    assert [c for c in r2["catalog"] if c["name"] == "A100-40GB"][0]["price_source"] == "user catalog"


def test_custom_gpu_needs_price_and_memory():
    with pytest.raises(PlannerError, match="price_per_hour is required"):
        planner.plan(scorers(1), gpus=[{"name": "MI300X", "memory_gib": 190}], gpu_models=["MI300X"])
    with pytest.raises(PlannerError, match="memory_gib"):
        planner.plan(scorers(1), gpus=[{"name": "MI300X", "price_per_hour": 5}], gpu_models=["MI300X"])
    r = planner.plan(scorers(2), gpus=[{"name": "MI300X", "memory_gib": 190, "price_per_hour": 5}],
                     gpu_models=["MI300X"], allow_sharing=True)
    assert r["summary"]["gpus"] == 1


def test_default_mig_tables_come_from_mig_py():
    for name, entry in planner.DEFAULT_GPUS.items():
        if entry["mig_model"]:
            assert mig.MODELS[entry["mig_model"]].mig_capable, name


# ---------------------------------------------------------------------------------------------
# bad input: clear errors naming the field and the model
# ---------------------------------------------------------------------------------------------
def test_infeasible_model_names_the_model():
    models = scorers(2) + [{"name": "giant", "parameters_billion": 405, "max_model_len": 8192}]
    with pytest.raises(PlannerError) as e:
        planner.plan(models, gpu_models=["L4", "L40S"])
    assert "'giant'" in str(e.value) and "fits no GPU" in str(e.value) and "L40S" in str(e.value)
    assert "risk-scorer" not in str(e.value)


@pytest.mark.parametrize("profile,msg", [
    ([1] * 23, "24 hourly values"),
    ([1] * 23 + [-1], r"traffic_profile\[23\] is negative"),
    ([0] * 24, "all zero"),
    ([1] * 23 + ["x"], "must be a number"),
])
def test_bad_traffic_profile(profile, msg):
    with pytest.raises(PlannerError, match=msg) as e:
        planner.plan(scorers(1), traffic_profile=profile)
    assert e.value.field == "traffic_profile"


@pytest.mark.parametrize("model,field,msg", [
    ({"name": "Bad_Name", "parameters_billion": 1, "max_model_len": 1}, "models[0].name", "DNS-1035"),
    ({"name": "a"}, "models[0] (a)", "exactly one of config"),
    ({"name": "a", "parameters_billion": 1}, "models[0] (a).max_model_len", "max_model_len is required"),
    ({"name": "a", "parameters_billion": -1, "max_model_len": 10}, "models[0] (a).parameters_billion", "> 0"),
    ({"name": "a", "parameters_billion": 1, "max_model_len": 10, "peak_concurrency": -2},
     "models[0] (a).peak_concurrency", ">= 0"),
    ({"name": "a", "parameters_billion": 1, "max_model_len": 10, "requests_per_second": 3},
     "models[0] (a).tokens_per_second_per_replica", "tokens_per_second_per_replica"),
    ({"name": "a", "parameters_billion": 1, "max_model_len": 10, "latency_class": "fast"},
     "models[0] (a).latency_class", "interactive"),
    ({"name": "a", "parameters_billion": 1, "max_model_len": 10, "gpu_models": ["TPU"]},
     "models[0] (a).gpu_models", "'TPU'"),
])
def test_bad_model_fields(model, field, msg):
    with pytest.raises(PlannerError, match=msg) as e:
        planner.plan([model])
    assert e.value.field == field


def test_duplicate_names_and_pool_limits():
    with pytest.raises(PlannerError, match="appears twice"):
        planner.plan(scorers(1) + scorers(1))
    with pytest.raises(PlannerError, match="pool 'scoring'.*needs 2 nodes.*max_nodes is 1"):
        planner.plan(scorers(), pools=[{"name": "scoring", "gpu_model": "A100-40GB", "max_nodes": 1}])
    r = planner.plan(scorers(), pools=[{"name": "scoring", "gpu_model": "A100-40GB", "max_nodes": 2}])
    assert [p["name"] for p in r["pools"]] == ["scoring"] and r["summary"]["gpus"] == 2


# ---------------------------------------------------------------------------------------------
# determinism and the rendered outputs
# ---------------------------------------------------------------------------------------------
def test_deterministic():
    models = scorers(5) + [{"name": "big", "config": LLAMA_13B, "max_model_len": 4096, "peak_concurrency": 3}]
    prof = [0.2] * 8 + [1] * 10 + [0.5] * 6
    a = planner.plan(models, gpu_models=["H100-80GB", "A100-80GB"], traffic_profile=prof)
    b = planner.plan(models, gpu_models=["H100-80GB", "A100-80GB"], traffic_profile=prof)
    assert a == b
    assert planner.render_markdown(a) == planner.render_markdown(b)


def test_markdown_report_has_the_tables():
    r = planner.plan(scorers(), gpu_models=["A100-40GB"], traffic_profile=[1] * 24)
    md = planner.render_markdown(r, title="Twelve", diagram="img/twelve.png")
    assert md.startswith("# Twelve\n") and "![GPU layout](img/twelve.png)" in md
    for heading in ("## Cost", "## Models", "## GPUs", "## Node pools", "## Lower bound", "## Plans compared",
                    "## Assumptions"):
        assert heading in md
    assert md.count("| risk-scorer-") == 12                   # one row per model
    assert "1g.5gb@0:1 risk-scorer-01" in md
    assert "**83.33% lower**" in md


def test_synthesized_config_is_close_to_the_asked_size():
    from ansible_collections.gpuops.llm.plugins.module_utils import sizing
    for pb in (0.5, 1, 8, 70):
        arch = sizing.parse_model_config(planner.config_from_parameters(pb, 4096))
        assert sizing.count_parameters(arch) / 1e9 == pytest.approx(pb, rel=0.05)
