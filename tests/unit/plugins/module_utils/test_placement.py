# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Tests for plugins/module_utils/placement.py (the CP-SAT placement model) and the planner's use of it.

Expected layouts come from the MIG facts (/work/shared/facts/mig-and-nvml.md §1-2: placement sizes,
starts and compute slices); expected optima from hand arithmetic written next to each test; and on
random portfolios the solver's plan is checked independently: every replica placed once, TP groups
on one node, layouts NVML accepts, the cost recomputed from the nodes, and never more than the cost
of any choice of slots packed by the heuristic's packer.
"""
from __future__ import annotations

import itertools
import random

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import mig, placement, planner
from ansible_collections.gpuops.llm.plugins.module_utils.planner import PlannerError


def _layout_set(gpu, profiles):
    return {tuple(sorted(lay)) for lay in placement.mig_layouts(gpu, tuple(profiles))}


def test_mig_layouts_are_the_maximal_valid_ones():
    # A100-40GB (facts §1): 1g.5gb size 1, 7 instances; 3g.20gb size 4 at starts {0, 4}, 3 compute
    # slices of 7. Maximal: seven 1g; 3g + four 1g (3 + 4 = 7 compute, 4 + 4 = 8 memory slices);
    # two 3g (8 memory slices). 3g + five 1g would need 8 compute slices.
    assert _layout_set("A100-SXM4-40GB", ["1g.5gb"]) == {(("1g.5gb", 7),)}
    assert _layout_set("A100-SXM4-40GB", ["3g.20gb", "1g.5gb"]) == {
        (("1g.5gb", 7),), (("1g.5gb", 4), ("3g.20gb", 1)), (("3g.20gb", 2),)}
    for lay in placement.mig_layouts("A100-SXM4-40GB", ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb")):
        mig.solve(mig.MODELS["A100-SXM4-40GB"], dict(lay))   # NVML would accept it


def test_mig_layouts_include_the_one_first_fit_misses():
    # H100-80GB: 3g.40gb + four 1g.10gb needs the 3g at start 4 (facts §2).
    assert (("1g.10gb", 4), ("3g.40gb", 1)) in placement.mig_layouts("H100-80GB-HBM3", ("1g.10gb", "3g.40gb"))


@pytest.mark.parametrize("gpus,sizes,expected", [
    (1, (1,), {((1, 1),)}),
    (8, (1, 8), {((1, 8),), ((8, 1),)}),
    (8, (4, 2), {((4, 2),), ((2, 2), (4, 1)), ((2, 4),)}),
    # A 6-GPU node takes one TP-4 group and one TP-2 group, or three TP-2 groups; never two TP-4.
    (6, (4, 2), {((2, 1), (4, 1)), ((2, 3),)}),
    (6, (4, 1), {((1, 2), (4, 1)), ((1, 6),)}),
])
def test_node_patterns(gpus, sizes, expected):
    assert set(placement.node_patterns(gpus, sizes)) == expected


def test_the_exact_plan_beats_a_slot_choice_blind_to_packing():
    # L40S $1.86/h (whole GPU) and A100-40GB $2.74/h. Two 7B models need a 3g.20gb each (or a whole
    # GPU); two 3g.20gb fill an A100-40GB's 8 memory slices. The heuristic puts the 0.5B model on its
    # cheapest slot, a 1g.5gb, which then needs a second A100: 2 x 2.74 = 5.48. The optimum keeps
    # the two 3g on one A100 and the small model on an L40S: 2.74 + 1.86 = 4.60 (both 7B on L40S
    # would be 3.72 plus at least 1.86 for the third model = 5.58).
    gpus = [{"name": "L40S", "price_per_hour": 1.86}, {"name": "A100-40GB", "price_per_hour": 2.74}]
    models = [{"name": "tiny", "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 1},
              {"name": "seven-a", "parameters_billion": 7, "max_model_len": 2048, "peak_concurrency": 2},
              {"name": "seven-b", "parameters_billion": 7, "max_model_len": 2048, "peak_concurrency": 1}]
    h = planner.plan(models, gpus=gpus, gpu_models=["L40S", "A100-40GB"], solve_exact=False)
    e = planner.plan(models, gpus=gpus, gpu_models=["L40S", "A100-40GB"])
    assert h["costs"]["static"]["per_hour"] == pytest.approx(5.48)
    assert h["solver"]["method"] == "heuristic" and h["solver"]["reason"] == "solve_exact is off"
    assert e["costs"]["static"]["per_hour"] == pytest.approx(4.60)
    assert e["solver"]["status"] == "optimal" and e["solver"]["method"] == "cp-sat"
    assert e["solver"]["bound_per_hour"] == pytest.approx(4.60) and e["solver"]["gap_percent"] == 0
    assert e["solver"]["heuristic_cost_per_hour"] == pytest.approx(5.48)
    assert e["summary"]["chosen_option"] == "exact: CP-SAT proven optimum"
    by = {m["name"]: m for m in e["models"]}
    assert (by["seven-a"]["mig_profile"], by["seven-b"]["mig_profile"]) == ("3g.20gb", "3g.20gb")
    assert (by["tiny"]["gpu"], by["tiny"]["kind"]) == ("L40S", "whole")
    _check_plan(e)
    assert "CP-SAT" in planner.render_markdown(e)


def test_the_heuristic_plan_is_kept_when_it_is_optimal():
    # The seed's 12 scorers on A100-40GB: ceil(12 / 7) = 2 GPUs is also the optimum.
    r = planner.plan([{"name": "s-%02d" % i, "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 2}
                      for i in range(12)], gpu_models=["A100-40GB"])
    assert r["summary"]["gpus"] == 2
    assert r["solver"]["method"] == "heuristic, proven optimal by CP-SAT"
    assert r["solver"]["bound_per_hour"] == r["costs"]["static"]["per_hour"]


def test_pool_max_nodes_moves_replicas_to_another_gpu_type():
    # 12 scorers: 2 A100-40GB at $2.74 would be cheapest, but the pool allows 1 node. Seven 1g.5gb on
    # it and five 1g.10gb on one A100-80GB: 2.74 + 3.43 = 6.17 (two A100-80GB: 6.86).
    models = [{"name": "s-%02d" % i, "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 2}
              for i in range(12)]
    pools = [{"name": "small", "gpu_model": "A100-40GB", "max_nodes": 1}, {"name": "big", "gpu_model": "A100-80GB"}]
    r = planner.plan(models, pools=pools)
    assert r["costs"]["static"]["per_hour"] == pytest.approx(6.17)
    assert {p["name"]: p["nodes"] for p in r["pools"]} == {"small": 1, "big": 1}
    _check_plan(r)
    with pytest.raises(PlannerError, match="pool 'small' \\(A100-40GB\\) needs 2 nodes at peak but max_nodes is 1"):
        planner.plan(models, pools=[pools[0]])


def test_without_ortools_the_heuristic_plans_and_says_so(monkeypatch):
    models = [{"name": "s-%02d" % i, "parameters_billion": 0.5, "max_model_len": 2048, "peak_concurrency": 2}
              for i in range(3)]
    monkeypatch.setattr(placement, "available", lambda: False)
    r = planner.plan(models, gpu_models=["A100-40GB"])
    assert r["solver"]["method"] == "heuristic" and "pip install ortools" in r["solver"]["reason"]
    assert r["solver"]["bound_per_hour"] is None
    assert "pip install ortools" in planner.render_markdown(r)
    assert r["summary"] == planner.plan(models, gpu_models=["A100-40GB"], solve_exact=False)["summary"]


# ---------------------------------------------------------------------------------------------
# random portfolios: an independent check of every plan the solver returns
# ---------------------------------------------------------------------------------------------
def _check_plan(r):
    """Every replica placed exactly once (each TP rank on one node), MIG layouts NVML accepts, no
    node over its GPU count, and the static cost recomputed from the nodes."""
    cat = {c["name"]: c for c in r["catalog"]}
    placed = {}
    for g in r["gpus"]:
        if g["mode"] == "mig":
            mig.solve(mig.MODELS[cat[g["gpu"]]["mig_model"]], g["mig_devices"])
        for s in g["slots"]:
            placed.setdefault((s["model"], s["replica"]), []).append((g["gpu"], g["node"], s.get("tp_rank")))
    for m in r["models"]:
        for rep in range(m["replicas"]):
            where = placed.pop((m["name"], rep))
            if m["kind"] == "whole":
                assert sorted(w[2] for w in where) == list(range(m["tensor_parallel_size"]))
                assert len({(w[0], w[1]) for w in where}) == 1, "a TP group spans nodes"
            else:
                assert len(where) == 1
    assert not placed
    cost = 0.0
    for p in r["pools"]:
        per_node = {}
        for g in r["gpus"]:
            if g["gpu"] == p["gpu"]:
                per_node[g["node"]] = per_node.get(g["node"], 0) + 1
        assert sorted(per_node) == list(range(p["nodes"]))
        assert max(per_node.values()) <= p["gpus_per_node"]
        cost += p["nodes"] * p["gpus_per_node"] * cat[p["gpu"]]["price_per_hour"]
    assert r["costs"]["static"]["per_hour"] == pytest.approx(cost, abs=0.01)


def _portfolio(rng):
    return [{"name": "m%d" % i, "parameters_billion": rng.choice([0.5, 1, 3, 7, 14]), "max_model_len": 2048,
             "peak_concurrency": rng.choice([1, 2, 4, 8]), "latency_class": rng.choice(["standard", "batch"])}
            for i in range(rng.randint(2, 3))]


@pytest.mark.parametrize("seed", range(10))
def test_exact_plan_is_never_worse_than_any_packed_slot_choice(seed):
    rng = random.Random(seed)
    gpus = rng.sample(["A100-40GB", "A100-80GB", "H100-80GB", "L40S", "H200"], 2)
    sharing = bool(seed % 2)
    models = _portfolio(rng)
    r = planner.plan(models, gpu_models=gpus, allow_sharing=sharing)
    _check_plan(r)
    assert r["solver"]["status"] == "optimal"
    assert r["solver"]["bound_per_hour"] == pytest.approx(r["costs"]["static"]["per_hour"], abs=0.01)
    # Brute force over every slot choice, each packed by the heuristic's packer (a feasible plan):
    # the proven optimum can be no dearer than the best of them.
    catalog = planner.build_catalog(gpu_models=gpus)
    norm = planner.normalize_models(models, catalog)
    sizer = planner._Sizer(r["vllm_version"])
    per_model = [[c for t in m["gpu_models"] for c in planner.candidates(m, catalog[t], sizer, allow_sharing=sharing)[0]]
                 for m in norm]
    by_name = {m["name"]: m for m in norm}
    best = min(planner._static_cost(planner.build_layout({c["model"]: c for c in combo}, catalog, by_name), catalog)
               for combo in itertools.product(*per_model))
    assert r["costs"]["static"]["per_hour"] <= best + 1e-6
