# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The capacity planner's placement problem as a CP-SAT model (OR-Tools), solved to a proven optimum.

The problem is the planner's own, with its slot options, sizing and prices (planner.candidates):
- every model takes exactly one of its slot options (a MIG profile, a whole GPU or a tensor-parallel
  group, or a time-sliced share of a GPU), which fixes its replica count;
- MIG GPUs hold one of the valid layouts of their GPU model; the layouts are enumerated here with
  ``mig.solve`` (the same placement search mig_plan and the node agent use), so every layout the
  solver picks is one NVML accepts. Slots of one profile are interchangeable, so a GPU count per
  layout is an exact model of the packing;
- time-sliced shares (1/2, 1/4) fill whole GPUs; with sizes that divide each other a total of S
  GPUs' worth always packs into ceil(S) GPUs, so a share count is exact too;
- nodes have the pool's shape (node_gpus GPUs) and a tensor-parallel group stays on one node: each
  node takes one of the maximal patterns of block sizes that fit it, which is exact for any shape;
- a pool's max_nodes caps its node count.
The objective is the planner's: cost at peak (whole nodes, since a node is paid for whole), then
fewer GPUs. Costs are integers in 1e-4 USD per hour so the proven bound is exact.

The solver runs on one worker with a deterministic time limit, so the same input gives the same
plan on every run (a capacity_plan rerun must not rewrite its report). OR-Tools is a controller
requirement (requirements/controller.txt); without it ``available()`` is False and the planner
falls back to its heuristic, saying so in the report.
"""
from __future__ import annotations

import functools
import math
import time

from ansible_collections.gpuops.llm.plugins.module_utils import mig

PRICE_SCALE = 10000          # cost units per USD
DETERMINISTIC_LIMIT = 30.0   # CP-SAT deterministic time units (about seconds on this machine's cores)
WALL_LIMIT_S = 55.0          # guard only: a wall cutoff makes the result depend on the machine's speed


def available():
    """True when OR-Tools' CP-SAT can be imported (it is imported lazily: modules that never plan
    must not need it)."""
    try:
        from ortools.sat.python import cp_model  # noqa: F401  pylint: disable=unused-import
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=None)
def mig_layouts(mig_model, profiles):
    """Maximal valid MIG layouts of ``mig_model`` made of ``profiles`` (a tuple of names), as tuples
    of (profile, count) in a stable order. Validity is mig.solve's: NVML's legal placements."""
    mm = mig.MODELS[mig_model]
    names = sorted(profiles, key=lambda n: (-mm.profile(n).size, n))

    def ok(counts):
        try:
            mig.solve(mm, {n: c for n, c in counts.items() if c})
        except mig.MigError:
            return False
        return True

    found = []

    def rec(i, counts):
        # Canonical order: profiles are added in ``names`` order, so each multiset is seen once.
        grew = False
        for j in range(i, len(names)):
            counts[names[j]] = counts.get(names[j], 0) + 1
            if ok(counts):
                grew = True
                rec(j, counts)
            counts[names[j]] -= 1
        if not grew:
            layout = {n: c for n, c in counts.items() if c}
            if layout and all(not ok(dict(layout, **{n: layout.get(n, 0) + 1})) for n in names):
                found.append(tuple(sorted(layout.items())))

    rec(0, {})
    return tuple(sorted(set(found)))


@functools.lru_cache(maxsize=None)
def node_patterns(node_gpus, sizes):
    """Maximal ways to fill one node of ``node_gpus`` GPUs with blocks of ``sizes`` (a tuple of
    ints; a block is a tensor-parallel group, or 1 for a single GPU), as tuples of (size, count)."""
    sizes = sorted(set(sizes), reverse=True)
    out = []

    def rec(i, left, counts):
        if i == len(sizes):
            if counts and all(s > left for s in sizes):
                out.append(tuple(sorted((s, c) for s, c in counts.items() if c)))
            return
        s = sizes[i]
        for c in range(left // s, -1, -1):
            counts[s] = c
            rec(i + 1, left - c * s, counts)
        counts.pop(s, None)

    rec(0, node_gpus, {})
    return tuple(sorted(set(p for p in out if p)))


def _price_units(gpu):
    return int(round(gpu["price_per_hour"] * gpu["node_gpus"] * PRICE_SCALE))


def solve(order, options, catalog, max_nodes=None, hint=None, deterministic_limit=DETERMINISTIC_LIMIT,
          wall_limit_s=WALL_LIMIT_S):
    """Choose one option per model and the GPUs and nodes that hold them, at the least cost.

    ``order``: model names; ``options``: {name: [candidate]} (planner.candidates dicts: gpu, kind,
    profile, tp, share, replicas); ``catalog``: the planner's catalog; ``max_nodes``: {gpu: cap};
    ``hint``: {name: option index} (the heuristic's plan, CP-SAT's first solution).
    Returns {status, choice, mig, shared, nodes, cost_units, bound_units, wall_s}; status is
    "optimal", "feasible" (time limit: bound and gap say how far it may be), "infeasible" or
    "unknown" (no solution within the limit)."""
    from ortools.sat.python import cp_model

    max_nodes = max_nodes or {}
    m = cp_model.CpModel()
    x = {}
    for name in order:
        vs = [m.NewBoolVar("x_%s_%d" % (name, i)) for i in range(len(options[name]))]
        m.AddExactlyOne(vs)
        x[name] = vs

    def uses(gpu):
        return [(name, i, c) for name in order for i, c in enumerate(options[name]) if c["gpu"] == gpu]

    ub_gpus = sum(max(c["replicas"] * (c["tp"] if c["kind"] == "whole" else 1) for c in options[n]) for n in order)
    cost_terms, gpu_terms = [], []
    layouts_of, patterns_of, y, s, n = {}, {}, {}, {}, {}
    for gname, gpu in catalog.items():
        cands = uses(gname)
        if not cands:
            continue
        ub = sum(c["replicas"] * (c["tp"] if c["kind"] == "whole" else 1) for _nm, _i, c in cands)
        singles = []
        # MIG: a GPU count per maximal layout covers the replicas of every profile.
        profiles = tuple(sorted({c["profile"] for _nm, _i, c in cands if c["kind"] == "mig"}))
        if profiles:
            layouts_of[gname] = mig_layouts(gpu["mig_model"], profiles)
            y[gname] = [m.NewIntVar(0, ub, "y_%s_%d" % (gname, k)) for k in range(len(layouts_of[gname]))]
            for p in profiles:
                have = sum(dict(lay).get(p, 0) * v for lay, v in zip(layouts_of[gname], y[gname]))
                need = sum(c["replicas"] * x[nm][i] for nm, i, c in cands if c["kind"] == "mig" and c["profile"] == p)
                m.Add(have >= need)
            singles.extend(y[gname])
        # Time-sliced shares: weight each share by lcm/k so a GPU holds lcm units.
        shares = sorted({c["share"] for _nm, _i, c in cands if c["kind"] == "shared"})
        if shares:
            unit = functools.reduce(lambda a, b: a * b // math.gcd(a, b), shares)
            s[gname] = m.NewIntVar(0, ub, "s_%s" % gname)
            m.Add(unit * s[gname] >= sum(c["replicas"] * (unit // c["share"]) * x[nm][i]
                                         for nm, i, c in cands if c["kind"] == "shared"))
            singles.append(s[gname])
        # Whole GPUs: blocks of tp GPUs that must share a node.
        blocks = {}
        for nm, i, c in cands:
            if c["kind"] == "whole":
                blocks.setdefault(c["tp"], []).append(c["replicas"] * x[nm][i])
        need_by_size = {k: sum(v) for k, v in blocks.items()}
        if singles:
            need_by_size[1] = need_by_size.get(1, 0) + sum(singles)
        sizes = tuple(sorted(need_by_size))
        patterns_of[gname] = node_patterns(gpu["node_gpus"], sizes)
        n[gname] = [m.NewIntVar(0, ub, "n_%s_%d" % (gname, k)) for k in range(len(patterns_of[gname]))]
        for size, need in need_by_size.items():
            m.Add(sum(dict(p).get(size, 0) * v for p, v in zip(patterns_of[gname], n[gname])) >= need)
        nodes = sum(n[gname])
        if max_nodes.get(gname) is not None:
            m.Add(nodes <= max_nodes[gname])
        cost_terms.append(_price_units(gpu) * nodes)
        gpu_terms.extend(size * need for size, need in need_by_size.items())

    weight = ub_gpus + 1    # cost first; the GPU count only breaks ties
    m.Minimize(weight * sum(cost_terms) + sum(gpu_terms))
    for name, i in (hint or {}).items():
        for j, v in enumerate(x[name]):
            m.AddHint(v, j == i)

    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = 0
    solver.parameters.max_deterministic_time = float(deterministic_limit)
    solver.parameters.max_time_in_seconds = float(wall_limit_s)
    t0 = time.monotonic()
    code = solver.Solve(m)
    wall = time.monotonic() - t0
    status = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible",
              cp_model.INFEASIBLE: "infeasible"}.get(code, "unknown")
    out = {"status": status, "wall_s": wall}
    if status not in ("optimal", "feasible"):
        return out
    out["choice"] = {name: [solver.Value(v) for v in x[name]].index(1) for name in order}
    out["mig"] = {g: [lay for lay, v in zip(layouts_of[g], y[g]) for _k in range(solver.Value(v))] for g in y}
    out["shared"] = {g: solver.Value(v) for g, v in s.items()}
    out["nodes"] = {g: [p for p, v in zip(patterns_of[g], n[g]) for _k in range(solver.Value(v))] for g in n}
    obj = int(round(solver.ObjectiveValue()))
    out["cost_units"] = obj // weight
    # Any solution's objective is cost * weight + gpus with gpus < weight, so this floor is a valid
    # lower bound on the cost of every plan.
    out["bound_units"] = min(out["cost_units"], int(math.ceil(solver.BestObjectiveBound() - 1e-6)) // weight)
    return out
