# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device plugin resources and GFD labels (facts §5; anchors C1, C2) from simulated hosts."""
from __future__ import annotations

import re

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import gfd, nvml, nvml_sim

ID = {"1g.10gb": 19, "1g.10gb+me": 20, "2g.20gb": 14, "3g.40gb": 9, "7g.80gb": 0}  # H100 ids, facts §1
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def host(tmp_path, gpus, layouts, mig_enabled=True, ci=True):
    """layouts: per GPU a list of (profile, start, size) or None for 'leave MIG as is'."""
    path = str(tmp_path / "h.json")
    nvml_sim.save_state(path, nvml_sim.new_host_state(gpus, mig_enabled=mig_enabled))
    b = nvml_sim.SimBackend(path)
    for i, layout in enumerate(layouts):
        for prof, start, size in layout or []:
            gi = b.create_gpu_instance(i, ID[prof], start, size)
            if ci:
                whole = [p for p in b.compute_instance_profiles(i, gi["id"]) if p["name"] == prof][0]
                b.create_compute_instance(i, gi["id"], whole["id"])
    return nvml.host_facts(nvml_sim.SimBackend(path))


def test_none_strategy_counts_whole_gpus(tmp_path):
    facts = host(tmp_path, ["H100-80GB-HBM3"] * 2, [[("7g.80gb", 0, 8)], []])
    res, labels = gfd.node_resources_and_labels(facts, "none")
    assert res == {"nvidia.com/gpu": "2"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"   # spaces -> '-'
    assert labels["nvidia.com/gpu.count"] == "2"
    assert labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["nvidia.com/mig.capable"] == "true" and labels["nvidia.com/mig.strategy"] == "none"
    assert labels["nvidia.com/gpu.present"] == "true"


def test_mixed_strategy(tmp_path):
    facts = host(tmp_path, ["H100-80GB-HBM3", "H100-80GB-HBM3"],
                 [[("1g.10gb", 0, 1), ("1g.10gb", 1, 1), ("2g.20gb", 2, 2), ("3g.40gb", 4, 4)],
                  [("1g.10gb+me", 6, 1), ("3g.40gb", 0, 4)]])
    res, labels = gfd.node_resources_and_labels(facts, "mixed")
    assert res == {"nvidia.com/mig-1g.10gb": "2", "nvidia.com/mig-2g.20gb": "1", "nvidia.com/mig-3g.40gb": "2",
                   "nvidia.com/mig-1g.10gb.me": "1"}
    p = "nvidia.com/mig-3g.40gb."
    assert labels[p + "count"] == "2"
    assert labels[p + "memory"] == "40448"          # facts §1: 3g.40gb = 40448 MiB
    assert labels[p + "multiprocessors"] == "60"    # facts §1: 60 SMs
    assert labels[p + "slices.gi"] == "3" and labels[p + "slices.ci"] == "3"
    assert labels[p + "engines.copy"] == "3" and labels[p + "engines.decoder"] == "3"
    assert labels[p + "engines.encoder"] == "0" and labels[p + "engines.ofa"] == "0"
    assert labels[p + "product"] == "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb"
    assert labels["nvidia.com/mig-1g.10gb.me.engines.ofa"] == "1"   # the +me profile holds the OFA
    assert labels["nvidia.com/mig.strategy"] == "mixed"
    assert "nvidia.com/gpu" not in res


def test_mixed_strategy_mig_off_gpus_stay_whole(tmp_path):
    path = str(tmp_path / "h.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3", "H100-80GB-HBM3", "L4"])
    state["gpus"][0]["mig_current"] = state["gpus"][0]["mig_pending"] = 1
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    gi = b.create_gpu_instance(0, ID["7g.80gb"], 0, 8)
    b.create_compute_instance(0, gi["id"], 4)
    res, labels = gfd.node_resources_and_labels(nvml.host_facts(nvml_sim.SimBackend(path)), "mixed")
    assert res == {"nvidia.com/gpu": "2", "nvidia.com/mig-7g.80gb": "1"}


def test_gi_without_compute_instance_is_not_a_device(tmp_path):
    facts = host(tmp_path, ["H100-80GB-HBM3"], [[("3g.40gb", 0, 4)]], ci=False)
    res, _unused = gfd.node_resources_and_labels(facts, "mixed")
    assert res == {}


def test_single_strategy_valid(tmp_path):
    layout = [("1g.10gb", s, 1) for s in range(7)]
    facts = host(tmp_path, ["H100-80GB-HBM3"] * 2, [layout, layout])
    res, labels = gfd.node_resources_and_labels(facts, "single")
    assert res == {"nvidia.com/gpu": "14"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    assert labels["nvidia.com/gpu.count"] == "14"
    assert labels["nvidia.com/gpu.memory"] == "9984"
    assert labels["nvidia.com/gpu.multiprocessors"] == "16"
    assert labels["nvidia.com/gpu.slices.gi"] == "1" and labels["nvidia.com/gpu.slices.ci"] == "1"
    assert labels["nvidia.com/mig.strategy"] == "single"


@pytest.mark.parametrize("layouts,mig_on", [
    ([[("1g.10gb", 0, 1)], [("3g.40gb", 0, 4)]], True),      # two profiles
    ([[("1g.10gb", 0, 1)], []], True),                       # one GPU empty
    ([[("1g.10gb", 0, 1)], None], "first-only"),             # one GPU without MIG
])
def test_single_strategy_invalid(tmp_path, layouts, mig_on):
    path = str(tmp_path / "h.json")
    state = nvml_sim.new_host_state(["H100-80GB-HBM3"] * 2, mig_enabled=True)
    if mig_on == "first-only":
        state["gpus"][1]["mig_current"] = state["gpus"][1]["mig_pending"] = 0
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    for i, layout in enumerate(layouts):
        for prof, start, size in layout or []:
            gi = b.create_gpu_instance(i, ID[prof], start, size)
            whole = [p for p in b.compute_instance_profiles(i, gi["id"]) if p["name"] == prof][0]
            b.create_compute_instance(i, gi["id"], whole["id"])
    res, labels = gfd.node_resources_and_labels(nvml.host_facts(nvml_sim.SimBackend(path)), "single")
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-INVALID"
    assert labels["nvidia.com/gpu.count"] == "0"
    assert res == {"nvidia.com/gpu": "0"}


def test_single_strategy_all_mig_off_falls_back_to_whole_gpus(tmp_path):
    # ⚑ our reading of the plugin; the facts list only the INVALID cases
    facts = host(tmp_path, ["H100-80GB-HBM3"] * 2, [[], []], mig_enabled=False)
    res, labels = gfd.node_resources_and_labels(facts, "single")
    assert res == {"nvidia.com/gpu": "2"} and labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"


def test_non_mig_node_and_cuda_labels(tmp_path):
    facts = host(tmp_path, ["L4", "L4"], [[], []], mig_enabled=False)
    res, labels = gfd.node_resources_and_labels(facts, "mixed")
    assert res == {"nvidia.com/gpu": "2"}
    assert labels["nvidia.com/mig.capable"] == "false" and "nvidia.com/mig.strategy" not in labels
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4"
    # driver 580.95.05 and CUDA 13.0 from new_host_state's defaults
    assert (labels["nvidia.com/cuda.driver-version.major"], labels["nvidia.com/cuda.driver-version.minor"],
            labels["nvidia.com/cuda.driver-version.revision"], labels["nvidia.com/cuda.driver-version.full"]) == \
           ("580", "95", "05", "580.95.05")
    assert (labels["nvidia.com/cuda.runtime-version.major"], labels["nvidia.com/cuda.runtime-version.minor"]) == ("13", "0")


def test_labels_are_valid_kubernetes_label_values(tmp_path):
    facts = host(tmp_path, ["H100-80GB-HBM3"], [[("1g.10gb+me", 0, 1), ("3g.40gb", 4, 4)]])
    for strategy in gfd.STRATEGIES:
        res, labels = gfd.node_resources_and_labels(facts, strategy)
        for k, v in list(labels.items()) + list(res.items()):
            assert isinstance(v, str) and len(v) <= 63 and LABEL_VALUE.match(v), (k, v)
            assert "+" not in k


def test_empty_host_and_bad_strategy():
    assert gfd.node_resources_and_labels({"gpus": []}, "mixed") == ({}, {})
    with pytest.raises(ValueError) as e:
        gfd.node_resources_and_labels({"gpus": []}, "MIXED")
    assert "none, single, mixed" in str(e.value)
