# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""mig.py against the facts in /work/shared/facts/mig-and-nvml.md.

Expected values below are copied from the facts file (its tables), never from mig.py; valid layouts
are enumerated here from NVIDIA's placements by an independent brute force."""
from __future__ import annotations

import itertools
from collections import Counter

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import mig

# ---------------------------------------------------------------------------------------------
# Facts §1 tables, transcribed: name -> (idx, id, count, SMs, starts, size)
# ---------------------------------------------------------------------------------------------
ONE = (0, 1, 2, 3, 4, 5, 6)
FACTS_A100_40 = {
    "1g.5gb": (0, 19, 7, 14, ONE, 1),
    "1g.5gb+me": (7, 20, 1, 14, ONE, 1),
    "1g.10gb": (9, 15, 4, 14, (0, 2, 4, 6), 2),
    "2g.10gb": (1, 14, 3, 28, (0, 2, 4), 2),
    "3g.20gb": (2, 9, 2, 42, (0, 4), 4),
    "4g.20gb": (3, 5, 1, 56, (0,), 4),
    "7g.40gb": (4, 0, 1, 98, (0,), 8),
}
FACTS_H100 = {
    "1g.10gb": (0, 19, 7, 16, ONE, 1),
    "1g.10gb+me": (7, 20, 1, 16, ONE, 1),
    "1g.20gb": (9, 15, 4, 26, (0, 2, 4, 6), 2),
    "2g.20gb": (1, 14, 3, 32, (0, 2, 4), 2),
    "3g.40gb": (2, 9, 2, 60, (0, 4), 4),
    "4g.40gb": (3, 5, 1, 64, (0,), 4),
    "7g.80gb": (4, 0, 1, 132, (0,), 8),
}
FACTS_A30 = {
    "1g.6gb": (0, 14, 4, 14, (0, 1, 2, 3), 1),
    "1g.6gb+me": (7, 21, 1, 14, (0, 1, 2, 3), 1),
    "2g.12gb": (1, 5, 2, 28, (0, 2), 2),
    "2g.12gb+me": (8, 6, 1, 28, (0, 2), 2),
    "4g.24gb": (3, 0, 1, 56, (0,), 4),
}
FACTS_NVL = {  # [cap-NVL]; placements identical to H100 80GB
    "1g.12gb": (0, 19, 7, 16, ONE, 1), "1g.12gb+me": (7, 20, 1, 16, ONE, 1),
    "1g.24gb": (9, 15, 4, 26, (0, 2, 4, 6), 2), "2g.24gb": (1, 14, 3, 32, (0, 2, 4), 2),
    "3g.47gb": (2, 9, 2, 60, (0, 4), 4), "4g.47gb": (3, 5, 1, 64, (0,), 4), "7g.94gb": (4, 0, 1, 132, (0,), 8),
}
# H200: names and counts from [UG-prof]; ⚑ ids/placements presumed H100's (no real capture).
FACTS_H200_COUNTS = {"1g.18gb": 7, "1g.18gb+me": 1, "1g.35gb": 4, "2g.35gb": 3, "3g.71gb": 2, "4g.71gb": 1, "7g.141gb": 1}
FACTS_B200_COUNTS = {"1g.23gb": 7, "1g.23gb+me": 1, "1g.45gb": 4, "2g.45gb": 3, "3g.90gb": 2, "4g.90gb": 1, "7g.180gb": 1}


@pytest.mark.parametrize("model,table", [
    ("A100-SXM4-40GB", FACTS_A100_40), ("H100-80GB-HBM3", FACTS_H100), ("A30", FACTS_A30), ("H100-NVL", FACTS_NVL),
])
def test_tables_match_facts(model, table):
    m = mig.resolve_model(model)
    assert sorted(m.profile_names) == sorted(table)
    for name, (idx, pid, n, sm, starts, size) in table.items():
        p = m.profile(name)
        assert (p.index, p.id, p.instance_count, p.multiprocessors, tuple(p.starts), p.size) == \
               (idx, pid, n, sm, starts, size), name


def test_a100_80gb_mirrors_40gb_counts_and_placements():
    a40, a80 = mig.resolve_model("A100-SXM4-40GB"), mig.resolve_model("A100-SXM4-80GB")
    for p40, p80 in zip(a40.profiles, a80.profiles):
        assert (p40.index, p40.id, p40.instance_count, p40.multiprocessors, p40.starts, p40.size) == \
               (p80.index, p80.id, p80.instance_count, p80.multiprocessors, p80.starts, p80.size)
    # MiB per [mock] (⚑ mock only): 9856/9856/19968/19968/40192/40192/80384
    assert [p.memory_mib for p in a80.profiles] == [9856, 9856, 19968, 19968, 40192, 40192, 80384]


@pytest.mark.parametrize("model,counts", [("H200", FACTS_H200_COUNTS), ("B200", FACTS_B200_COUNTS)])
def test_h200_b200_names_counts_and_unconfirmed_flags(model, counts):
    m = mig.resolve_model(model)
    assert {p.name: p.instance_count for p in m.profiles} == counts
    # ⚑ no real -lgip/-lgipp capture: every profile must say what is unconfirmed
    assert all("placements" in p.unconfirmed for p in m.profiles)
    assert "placements" in m.unconfirmed


def test_engines_from_facts():
    a100 = mig.resolve_model("A100-SXM4-40GB")
    # DEC/ENC/CE/JPEG/OFA of 7g.40gb: 5/0/7/1/1; of 1g.5gb+me: 1/0/1/1/1
    assert a100.profile("7g.40gb").engines == {"decoder": 5, "encoder": 0, "copy": 7, "jpeg": 1, "ofa": 1}
    assert a100.profile("1g.5gb+me").engines == {"decoder": 1, "encoder": 0, "copy": 1, "jpeg": 1, "ofa": 1}
    h100 = mig.resolve_model("H100-80GB-HBM3")
    assert h100.profile("7g.80gb").engines == {"decoder": 7, "encoder": 0, "copy": 8, "jpeg": 7, "ofa": 1}
    # H200 and B200 copy engines per [UG-prof]
    assert [p.engines["copy"] for p in mig.resolve_model("H200").profiles] == [1, 1, 1, 2, 3, 4, 8]
    assert [p.engines["copy"] for p in mig.resolve_model("B200").profiles] == [2, 2, 2, 3, 6, 8, 16]


def test_confirmed_values_carry_no_flag():
    assert mig.resolve_model("A100-SXM4-40GB").profile("3g.20gb").unconfirmed == ()
    assert mig.resolve_model("H100-80GB-HBM3").profile("3g.40gb").memory_mib == 40448  # guide's MPS example


@pytest.mark.parametrize("key", sorted(mig.MODELS))
def test_profile_names_follow_nvlib_naming_rule(key):
    # gb = round(ceil(8*mem/total)/8 * ceil(totalGiB)) (facts §1); checks memory values and totals agree.
    m = mig.MODELS[key]
    for p in m.profiles:
        suffix = "+me" if p.name.endswith("+me") else ""
        assert mig.derive_profile_name(p.slices, p.memory_mib, m.memory_mib, suffix) == p.name


def test_naming_rule_rounds_halves_up():
    # H200 3g: 4/8 * 141 = 70.5 -> 71 (Python's round() would say 70)
    assert mig.derive_profile_name(3, 70656, 143771) == "3g.71gb"


# ---------------------------------------------------------------------------------------------
# Model resolution
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("text,key", [
    ("NVIDIA A100-SXM4-40GB", "A100-SXM4-40GB"),
    ("A100-SXM4-40GB", "A100-SXM4-40GB"),
    ("NVIDIA A100-PCIE-40GB", "A100-SXM4-40GB"),
    ("NVIDIA H100 80GB HBM3", "H100-80GB-HBM3"),
    ("H100 80GB HBM3", "H100-80GB-HBM3"),
    ("NVIDIA-H100-80GB-HBM3", "H100-80GB-HBM3"),            # GFD product label
    ("A100-SXM4-40GB-MIG-1g.5gb", "A100-SXM4-40GB"),        # GFD single-strategy product
    ("NVIDIA H200", "H200"),
    ("0x233010DE", "H100-80GB-HBM3"),
    ("0x2330", "H100-80GB-HBM3"),
    ("0x20b010de", "A100-SXM4-40GB"),
    ("0x2335", "H200"),
    ("NVIDIA L4", "L4"),
])
def test_resolve_model(text, key):
    assert mig.resolve_model(text).key == key


def test_resolve_unknown_model_lists_known():
    with pytest.raises(mig.MigError) as e:
        mig.resolve_model("NVIDIA GeForce RTX 4090")
    assert e.value.reason == "unknown_gpu"
    assert "NVIDIA H100 80GB HBM3" in str(e.value)


def test_resource_names():
    assert mig.resource_name("1g.10gb") == "nvidia.com/mig-1g.10gb"
    assert mig.resource_name("1g.10gb+me") == "nvidia.com/mig-1g.10gb.me"
    assert mig.resource_name("3g.40gb") == "nvidia.com/mig-3g.40gb"


# ---------------------------------------------------------------------------------------------
# Valid layouts enumerated from NVIDIA's placements (facts §2), independent of the solver
# ---------------------------------------------------------------------------------------------
def _enumerate(table: dict) -> set:
    """Every multiset of profiles that has a non-overlapping placement at legal starts, within counts,
    at most one +me instance (⚑ inferred rule), on 8 memory slices."""
    cands = [(n, s, size) for n, (_unused, _unused, _unused, _unused, starts, size) in table.items() for s in starts]
    counts = {n: v[2] for n, v in table.items()}
    feasible = set()

    def rec(i, occ, chosen):
        if i == len(cands):
            feasible.add(tuple(sorted(Counter(chosen).items())))
            return
        rec(i + 1, occ, chosen)
        n, s, size = cands[i]
        mask = ((1 << size) - 1) << s
        me = sum(1 for c in chosen if c.endswith("+me"))
        if not occ & mask and chosen.count(n) < counts[n] and not (n.endswith("+me") and me):
            rec(i + 1, occ | mask, chosen + [n])

    rec(0, 0, [])
    return feasible


def _h200_table():
    # ⚑ presumed H100 placements and ids, H200 names
    names = ["1g.18gb", "1g.18gb+me", "1g.35gb", "2g.35gb", "3g.71gb", "4g.71gb", "7g.141gb"]
    return dict(zip(names, FACTS_H100.values()))


CASES = [("A100-SXM4-40GB", FACTS_A100_40), ("H100-80GB-HBM3", FACTS_H100), ("H200", _h200_table())]


def _check_placement(model, wanted, placements):
    occ = 0
    got = Counter()
    for pl in placements:
        prof = model.profile(pl["profile"])
        assert pl["start"] in prof.starts, pl
        assert pl["size"] == prof.size, pl
        mask = ((1 << pl["size"]) - 1) << pl["start"]
        assert not occ & mask, "overlap at %s" % pl
        occ |= mask
        got[pl["profile"]] += 1
    assert dict(got) == {k: v for k, v in wanted.items() if v}


@pytest.mark.parametrize("model_key,table", CASES)
def test_solver_places_every_valid_layout_and_rejects_every_invalid_one(model_key, table):
    model = mig.resolve_model(model_key)
    feasible = _enumerate(table)
    names = list(table)
    ranges = [range(table[n][2] + 1) for n in names]
    n_valid = n_invalid = 0
    for combo in itertools.product(*ranges):
        wanted = {n: c for n, c in zip(names, combo) if c}
        key = tuple(sorted(wanted.items()))
        if key in feasible:
            _check_placement(model, wanted, mig.solve(model, wanted))
            n_valid += 1
        else:
            with pytest.raises(mig.MigError) as e:
                mig.solve(model, wanted)
            assert e.value.reason in ("no_room", "media_engines")
            assert e.value.profile in wanted
            n_invalid += 1
    assert n_valid == len(feasible)  # includes the empty layout
    assert n_invalid > 0


def test_nineteen_maximal_layouts_on_a100_40gb():
    # facts §6: "the 19-layout set is derived" -- maximal placements of 1g/2g/3g/4g/7g
    table = {k: v for k, v in FACTS_A100_40.items() if k in ("1g.5gb", "2g.10gb", "3g.20gb", "4g.20gb", "7g.40gb")}
    cands = [(n, s, v[5]) for n, v in table.items() for s in v[4]]
    layouts = []

    def rec(i, occ, chosen):
        if i == len(cands):
            layouts.append((occ, list(chosen)))
            return
        rec(i + 1, occ, chosen)
        n, s, size = cands[i]
        mask = ((1 << size) - 1) << s
        if not occ & mask and sum(1 for c in chosen if c[0] == n) < table[n][2]:
            rec(i + 1, occ | mask, chosen + [(n, s)])

    rec(0, 0, [])

    def maximal(occ, chosen):
        return chosen and not any(not occ & (((1 << size) - 1) << s) and sum(1 for c in chosen if c[0] == n) < table[n][2]
                                  for n, s, size in cands)

    maximal_layouts = [c for o, c in layouts if maximal(o, c)]
    assert len(maximal_layouts) == 19
    model = mig.resolve_model("A100-SXM4-40GB")
    for chosen in maximal_layouts:
        wanted = Counter(n for n, _unused in chosen)
        _check_placement(model, wanted, mig.solve(model, dict(wanted)))


def test_a30_has_nine_valid_multisets():
    table = {k: v for k, v in FACTS_A30.items() if "+me" not in k}
    cands = [(n, s, v[5]) for n, v in table.items() for s in v[4]]
    seen = set()

    def rec(i, occ, chosen):
        if i == len(cands):
            if chosen:
                seen.add(tuple(sorted(Counter(chosen).items())))
            return
        rec(i + 1, occ, chosen)
        n, s, size = cands[i]
        mask = ((1 << size) - 1) << s
        if not occ & mask and chosen.count(n) < table[n][2]:
            rec(i + 1, occ | mask, chosen + [n])

    rec(0, 0, [])
    assert len(seen) == 9  # facts §2
    for key in seen:
        _check_placement(mig.resolve_model("A30"), dict(key), mig.solve("A30", dict(key)))


def _first_fit(model, wanted):
    """What a naive tool does: largest first, each at its lowest free legal start."""
    occ = 0
    for name in sorted(wanted, key=lambda n: -model.profile(n).size):
        prof = model.profile(name)
        for _unused in range(wanted[name]):
            start = next((s for s in prof.starts if not occ & (((1 << prof.size) - 1) << s)), None)
            if start is None:
                return None
            occ |= ((1 << prof.size) - 1) << start
    return occ


@pytest.mark.parametrize("model_key,three,one", [
    ("A100-SXM4-40GB", "3g.20gb", "1g.5gb"), ("H100-80GB-HBM3", "3g.40gb", "1g.10gb"), ("H200", "3g.71gb", "1g.18gb"),
])
def test_3g_plus_four_1g_puts_the_3g_at_slot_4(model_key, three, one):
    model = mig.resolve_model(model_key)
    wanted = {three: 1, one: 4}
    assert _first_fit(model, wanted) is None  # first-fit fails on this valid layout
    placements = mig.solve(model, wanted)
    assert [p["start"] for p in placements if p["profile"] == three] == [4]
    assert sorted(p["start"] for p in placements if p["profile"] == one) == [0, 1, 2, 3]


# ---------------------------------------------------------------------------------------------
# Rejections with the right reason
# ---------------------------------------------------------------------------------------------
def test_unknown_profile_names_the_models_that_have_it():
    with pytest.raises(mig.MigError) as e:
        mig.solve("NVIDIA A100-SXM4-40GB", {"3g.40gb": 1})
    assert e.value.reason == "unknown_profile" and e.value.profile == "3g.40gb"
    msg = str(e.value)
    assert "A100-SXM4-80GB" in msg and "H100-80GB-HBM3" in msg and "A100-SXM4-40GB" in msg


def test_profile_known_nowhere():
    with pytest.raises(mig.MigError) as e:
        mig.solve("H100-80GB-HBM3", {"5g.50gb": 1})
    assert e.value.reason == "unknown_profile" and "no known GPU" in str(e.value)


@pytest.mark.parametrize("model,wanted,profile", [
    ("A100-SXM4-40GB", {"1g.5gb": 8}, "1g.5gb"),
    ("A100-SXM4-40GB", {"1g.10gb": 5}, "1g.10gb"),      # REV2 x4 at most
    ("H100-80GB-HBM3", {"4g.40gb": 2}, "4g.40gb"),
    ("H100-80GB-HBM3", {"1g.10gb+me": 2}, "1g.10gb+me"),
    ("H200", {"3g.71gb": 3}, "3g.71gb"),
])
def test_over_instance_count(model, wanted, profile):
    with pytest.raises(mig.MigError) as e:
        mig.solve(model, wanted)
    assert e.value.reason == "over_count" and e.value.profile == profile
    assert "at most" in str(e.value)


@pytest.mark.parametrize("model,wanted", [
    ("A100-SXM4-40GB", {"3g.20gb": 2, "1g.5gb": 1}),
    ("H100-80GB-HBM3", {"7g.80gb": 1, "1g.10gb": 1}),
    ("H100-80GB-HBM3", {"4g.40gb": 1, "2g.20gb": 2}),      # 4g at 0 leaves 4-7; 2g only at 4 -> one fits
    ("H100-80GB-HBM3", {"1g.20gb": 4, "1g.10gb": 1}),      # REV2 x4 covers all 8 slices
    ("A100-SXM4-40GB", {"2g.10gb": 3, "1g.5gb": 2}),       # 2g at 0,2,4 leaves only slot 6
])
def test_no_room(model, wanted):
    with pytest.raises(mig.MigError) as e:
        mig.solve(model, wanted)
    assert e.value.reason == "no_room" and e.value.profile in wanted
    assert "no room" in str(e.value)


def test_a30_media_engines_once_per_gpu():
    # ⚑ inferred: JPEG/OFA exist once per GPU, so 1g.6gb+me and 2g.12gb+me cannot coexist
    with pytest.raises(mig.MigError) as e:
        mig.solve("A30", {"1g.6gb+me": 1, "2g.12gb+me": 1})
    assert e.value.reason == "media_engines"


@pytest.mark.parametrize("bad", [{"1g10gb": 1}, {"1g.10gb": -1}, {"1g.10gb": True}, {"1g.10gb": "x"},
                                 {"1g.10gb": 0, "3g.40gb": 0}, ["1g.10gb"]])
def test_mig_devices_syntax_errors(bad):
    with pytest.raises(mig.MigError) as e:
        mig.solve("H100-80GB-HBM3", bad)
    assert e.value.reason == "syntax"


def test_mig_devices_zero_counts_are_dropped_and_digit_strings_accepted():
    assert mig.parse_mig_devices({"1g.10gb": 0, "3g.40gb": "1"}) == {"3g.40gb": 1}
    assert mig.parse_mig_devices({}) == {}


def test_compute_instance_profiles_are_refused_clearly():
    with pytest.raises(mig.MigError) as e:
        mig.solve("A100-SXM4-40GB", {"1c.3g.20gb": 3})
    assert e.value.reason == "unsupported" and "3g.20gb" in str(e.value)


def test_non_mig_gpu():
    assert mig.solve("NVIDIA L4", {}) == []
    with pytest.raises(mig.MigError) as e:
        mig.solve("NVIDIA L4", {"1g.10gb": 1})
    assert e.value.reason == "not_mig_capable"


def test_driver_minimums():
    # 1g.10gb (REV2) on A100-40GB needs R525+; 4g+3g needs R510+ [UG-prof, UG-con]
    with pytest.raises(mig.MigError) as e:
        mig.solve("A100-SXM4-40GB", {"1g.10gb": 1}, driver_version="515.65.01")
    assert e.value.reason == "driver" and e.value.profile == "1g.10gb"
    with pytest.raises(mig.MigError) as e:
        mig.solve("A100-SXM4-40GB", {"4g.20gb": 1, "3g.20gb": 1}, driver_version="470.82.01")
    assert e.value.reason == "driver"
    assert mig.solve("A100-SXM4-40GB", {"4g.20gb": 1, "3g.20gb": 1}, driver_version="510.47.03")
    with pytest.raises(mig.MigError):
        mig.solve("B200", {"7g.180gb": 1}, driver_version="570.86.10")   # B200 needs R570.133.20+


# ---------------------------------------------------------------------------------------------
# Keep-in-place and plan()
# ---------------------------------------------------------------------------------------------
def test_solver_keeps_existing_instances_in_place():
    existing = [{"profile": "1g.10gb", "start": s, "size": 1} for s in range(4)] + \
               [{"profile": "3g.40gb", "start": 4, "size": 4}]
    placements = mig.solve("H100-80GB-HBM3", {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}, keep=existing)
    kept = [p for p in placements if p in existing]
    assert len(kept) == 3  # the 3g and two 1g stay; the 2g takes the other two 1g's slots
    assert {"profile": "3g.40gb", "start": 4, "size": 4} in kept


def test_solver_keeps_an_instance_that_forces_a_non_first_fit_layout():
    # a 2g at 4 can stay only if the 3g goes to 0
    placements = mig.solve("H100-80GB-HBM3", {"3g.40gb": 1, "2g.20gb": 1},
                           keep=[{"profile": "2g.20gb", "start": 4, "size": 2}])
    assert {"profile": "2g.20gb", "start": 4, "size": 2} in placements
    assert {"profile": "3g.40gb", "start": 0, "size": 4} in placements


def test_solver_moves_an_instance_only_when_it_must():
    # a 3g at 0 leaves room for only three 1g, so the 3g must move to 4
    placements = mig.solve("H100-80GB-HBM3", {"3g.40gb": 1, "1g.10gb": 4},
                           keep=[{"profile": "3g.40gb", "start": 0, "size": 4}])
    assert {"profile": "3g.40gb", "start": 4, "size": 4} in placements


def test_big_instances_sit_at_their_highest_start_so_one_more_1g_is_one_create():
    # H100 (facts/mig-profiles.md): 3g.40gb may start at 0 or 4, 1g.10gb at 0-6. With the 3g at the
    # top, {3g: 1, 1g: 3} leaves slice 3 free, so a fourth 1g is a single new instance and
    # nothing is destroyed; with the 3g at 0 the whole GPU would have to be laid out again.
    three = mig.solve("H100-80GB-HBM3", {"3g.40gb": 1, "1g.10gb": 3})
    assert {"profile": "3g.40gb", "start": 4, "size": 4} in three
    assert sorted(p["start"] for p in three if p["profile"] == "1g.10gb") == [0, 1, 2]
    four = mig.solve("H100-80GB-HBM3", {"3g.40gb": 1, "1g.10gb": 4}, keep=three)
    current = [dict(p, id=i, slices=1 if p["size"] == 1 else 3, compute_instances=[{"id": 0, "slices": 1 if p["size"] == 1 else 3}])
               for i, p in enumerate(three)]
    diff = mig.plan(current, four)
    assert diff["destroy"] == [] and len(diff["create"]) == 1 and diff["create"][0]["start"] == 3
    # Two 2g instances take the top pairs (starts 4 and 2), the 1g slices stay at the bottom.
    two = mig.solve("H100-80GB-HBM3", {"2g.20gb": 2, "1g.10gb": 2})
    assert sorted(p["start"] for p in two if p["profile"] == "2g.20gb") == [2, 4]
    assert sorted(p["start"] for p in two if p["profile"] == "1g.10gb") == [0, 1]


def test_plan_minimal_diff():
    current = [
        {"id": 1, "profile": "1g.10gb", "start": 0, "size": 1, "slices": 1, "compute_instances": [{"id": 0, "slices": 1}]},
        {"id": 2, "profile": "1g.10gb", "start": 1, "size": 1, "slices": 1, "compute_instances": []},
        {"id": 3, "profile": "2g.20gb", "start": 2, "size": 2, "slices": 2, "compute_instances": [{"id": 0, "slices": 1}]},
        {"id": 4, "profile": "3g.40gb", "start": 4, "size": 4, "slices": 3, "compute_instances": [{"id": 0, "slices": 3}]},
    ]
    desired = [{"profile": "1g.10gb", "start": 0, "size": 1}, {"profile": "1g.10gb", "start": 1, "size": 1},
               {"profile": "2g.20gb", "start": 2, "size": 2}, {"profile": "1g.10gb", "start": 4, "size": 1}]
    d = mig.plan(current, desired)
    assert [g["id"] for g in d["keep"]] == [1, 2]
    assert [g["id"] for g in d["add_ci"]] == [2]            # kept GI without its compute instance
    assert sorted(g["id"] for g in d["destroy"]) == [3, 4]  # 3 holds only a 1c CI; 4 is not wanted
    assert d["create"] == [{"profile": "2g.20gb", "start": 2, "size": 2}, {"profile": "1g.10gb", "start": 4, "size": 1}]


def test_plan_of_identical_layouts_is_empty():
    current = [{"id": 7, "profile": "7g.80gb", "start": 0, "size": 8}]
    d = mig.plan(current, [{"profile": "7g.80gb", "start": 0, "size": 8}])
    assert d["destroy"] == [] and d["create"] == [] and d["add_ci"] == [] and len(d["keep"]) == 1


# ---------------------------------------------------------------------------------------------
# mig-parted files (facts §4)
# ---------------------------------------------------------------------------------------------
VALID_DOC = {
    "version": "v1",
    "mig-configs": {
        "inference-h100": [
            {"devices": [0, 1, 2, 3], "mig-enabled": False},
            {"devices": [4, 5, 6, 7], "mig-enabled": True, "mig-devices": {"1g.10gb": 4, "3g.40gb": 1}},
        ],
        "all-balanced": [
            {"device-filter": ["0x233010DE", "0x233110DE"], "devices": "all", "mig-enabled": True,
             "mig-devices": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}},
            {"device-filter": "0x20B010DE", "devices": "all", "mig-enabled": True,
             "mig-devices": {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}},
        ],
        "all-enabled": [{"devices": "all", "mig-enabled": True, "mig-devices": {}}],
        "with-me": [{"devices": "all", "mig-enabled": True, "mig-devices": {"1g.10gb+me": 1, "1g.10gb": 6}}],
    },
}


def test_parse_valid_config():
    c = mig.parse_mig_parted_config(VALID_DOC)
    assert set(c) == set(VALID_DOC["mig-configs"])
    assert c["inference-h100"][0] == {"devices": [0, 1, 2, 3], "device_filter": None, "mig_enabled": False, "mig_devices": {}}
    assert c["all-balanced"][1]["device_filter"] == ["0x20B010DE"]
    assert c["all-enabled"][0]["mig_devices"] == {}


def _bad(**changes):
    import copy

    doc = copy.deepcopy(VALID_DOC)
    for path, value in changes.items():
        if path == "top":
            doc = value
        else:
            name, idx, field = path.split("__")
            entry = doc["mig-configs"][name.replace("_", "-")][int(idx)]
            if value is KeyError:
                entry.pop(field.replace("_", "-"))
            else:
                entry[field.replace("_", "-")] = value
    return doc


@pytest.mark.parametrize("doc,needle", [
    ({"version": "v2", "mig-configs": {"a": [{"devices": "all", "mig-enabled": False}]}}, "'version' must be 'v1'"),
    ({"mig-configs": {"a": [{"devices": "all", "mig-enabled": False}]}}, "'version' must be 'v1'"),
    ({"version": "v1", "mig-configs": {}}, "non-empty mapping"),
    ({"version": "v1", "mig-configs": {"a": []}}, "config 'a' must be a non-empty list"),
    ({"version": "v1", "mig-configs": {"a": [{"devices": "all", "mig-enabled": False}]}, "hooks": {}}, "unknown top-level key"),
    ({"version": "v1", "mig-configs": {"a": ["all"]}}, "config 'a' entry 1 must be a mapping"),
    ("just text", "must be a mapping"),
])
def test_malformed_documents(doc, needle):
    with pytest.raises(mig.MigError) as e:
        mig.parse_mig_parted_config(doc)
    assert needle in str(e.value)
    assert e.value.reason == "config"


@pytest.mark.parametrize("field,value,needle", [
    ("devices", KeyError, "field 'devices' is required"),
    ("devices", "some", "field 'devices' must be 'all'"),
    ("devices", [0, -1], "field 'devices' must be 'all'"),
    ("devices", [], "field 'devices' must be 'all'"),
    ("mig_enabled", KeyError, "field 'mig-enabled' is required"),
    ("mig_enabled", "yes", "field 'mig-enabled' must be true or false"),
    ("mig_devices", KeyError, "field 'mig-devices' is required"),
    ("mig_devices", {"1g.10gb": -2}, "cannot be negative"),
    ("mig_devices", {"1g.10gb": 0}, "all zero"),
    ("mig_devices", {"one-g": 1}, "not a MIG profile name"),
    ("device_filter", "20B0", "not a PCI device id"),
    ("device_filter", [], "device-filter"),
    ("timeout", 5, "unknown field(s) timeout"),
])
def test_malformed_entries_name_config_and_field(field, value, needle):
    doc = _bad(**{"inference_h100__1__" + field: value})
    with pytest.raises(mig.MigError) as e:
        mig.parse_mig_parted_config(doc)
    assert needle in str(e.value)
    assert "config 'inference-h100' entry 2" in str(e.value)


def test_disabled_entry_with_devices_is_an_error():
    doc = _bad(inference_h100__0__mig_devices={"1g.10gb": 1})
    with pytest.raises(mig.MigError) as e:
        mig.parse_mig_parted_config(doc)
    assert "must be empty when 'mig-enabled' is false" in str(e.value)


GPUS8 = [{"index": i, "pci_device_id": "0x233010DE"} for i in range(8)]


def test_select_config_devices_and_filters():
    c = mig.parse_mig_parted_config(VALID_DOC)
    sel = mig.select_config(c, "inference-h100", GPUS8)
    assert [i for i in sorted(sel) if not sel[i]["mig_enabled"]] == [0, 1, 2, 3]
    assert sel[5]["mig_devices"] == {"1g.10gb": 4, "3g.40gb": 1}
    mixed = [{"index": 0, "pci_device_id": "0x20B010DE"}, {"index": 1, "pci_device_id": "0x233010DE"},
             {"index": 2, "pci_device_id": "0x27B810DE"}]
    sel = mig.select_config(c, "all-balanced", mixed)
    assert sel[0]["mig_devices"] == {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1}
    assert sel[1]["mig_devices"] == {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1}
    assert 2 not in sel  # no entry selects the L4: left alone


def test_select_config_errors():
    c = mig.parse_mig_parted_config(VALID_DOC)
    with pytest.raises(mig.MigError) as e:
        mig.select_config(c, "nope", GPUS8)
    assert "unknown config name 'nope'" in str(e.value) and "all-balanced" in str(e.value)
    with pytest.raises(mig.MigError) as e:
        mig.select_config(c, "inference-h100", GPUS8[:4])
    assert "device index 4, 5, 6, 7 out of range" in str(e.value) and "4 GPU(s)" in str(e.value)
    overlap = mig.parse_mig_parted_config({"version": "v1", "mig-configs": {"x": [
        {"devices": "all", "mig-enabled": False}, {"devices": [1], "mig-enabled": True, "mig-devices": {}}]}})
    with pytest.raises(mig.MigError) as e:
        mig.select_config(overlap, "x", GPUS8)
    assert "already selected by entry 1" in str(e.value)


def test_load_file(tmp_path):
    good = tmp_path / "good.yaml"
    good.write_text("version: v1\nmig-configs:\n  a:\n    - devices: all\n      mig-enabled: true\n"
                    "      mig-devices:\n        \"1g.10gb\": 7\n")
    assert mig.load_mig_parted_file(str(good))["a"][0]["mig_devices"] == {"1g.10gb": 7}
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: v1\nmig-configs: [unclosed\n")
    with pytest.raises(mig.MigError) as e:
        mig.load_mig_parted_file(str(bad))
    assert "not valid YAML" in str(e.value) and str(bad) in str(e.value)
    with pytest.raises(mig.MigError) as e:
        mig.load_mig_parted_file(str(tmp_path / "missing.yaml"))
    assert "cannot read" in str(e.value)


# ---------------------------------------------------------------------------------------------
# Presets (facts §4)
# ---------------------------------------------------------------------------------------------
BALANCED = {  # facts §4 all-balanced table
    "A100-SXM4-40GB": {"1g.5gb": 2, "2g.10gb": 1, "3g.20gb": 1},
    "A100-SXM4-80GB": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "H100-80GB-HBM3": {"1g.10gb": 2, "2g.20gb": 1, "3g.40gb": 1},
    "A30": {"1g.6gb": 2, "2g.12gb": 1},
    "H100-NVL": {"1g.12gb": 2, "2g.24gb": 1, "3g.47gb": 1},
    "H200": {"1g.18gb": 2, "2g.35gb": 1, "3g.71gb": 1},
    "B200": {"1g.23gb": 2, "2g.45gb": 1, "3g.90gb": 1},
}


@pytest.mark.parametrize("key", sorted(BALANCED))
def test_all_balanced(key):
    assert mig.preset(key, "all-balanced") == {"mig_enabled": True, "mig_devices": BALANCED[key]}
    mig.solve(key, BALANCED[key])  # and it fits


def test_all_profile_presets_and_quirks():
    # all-1g.10gb: 7x on 80GB GPUs, 4x (REV2) on A100-40GB; all-1g.35gb: 4x on H200
    assert mig.preset("H100-80GB-HBM3", "all-1g.10gb")["mig_devices"] == {"1g.10gb": 7}
    assert mig.preset("A100-SXM4-80GB", "all-1g.10gb")["mig_devices"] == {"1g.10gb": 7}
    assert mig.preset("A100-SXM4-40GB", "all-1g.10gb")["mig_devices"] == {"1g.10gb": 4}
    assert mig.preset("H200", "all-1g.35gb")["mig_devices"] == {"1g.35gb": 4}
    assert mig.preset("H100-80GB-HBM3", "all-1g.10gb.me")["mig_devices"] == {"1g.10gb+me": 1}
    assert mig.preset("H100-80GB-HBM3", "all-disabled") == {"mig_enabled": False, "mig_devices": {}}
    assert mig.preset("H100-80GB-HBM3", "all-enabled") == {"mig_enabled": True, "mig_devices": {}}
    assert "all-1g.10gb.me" in mig.preset_names("H100-80GB-HBM3")


def test_preset_errors():
    with pytest.raises(mig.MigError) as e:
        mig.preset("H100-80GB-HBM3", "all-3g.20gb")
    assert "unknown preset 'all-3g.20gb'" in str(e.value) and "all-3g.40gb" in str(e.value)
    with pytest.raises(mig.MigError) as e:
        mig.preset("L4", "all-balanced")
    assert e.value.reason == "not_mig_capable"
    assert mig.preset("L4", "all-disabled")["mig_enabled"] is False
