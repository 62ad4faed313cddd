"""gpu_capacity counts MIG devices as GPUs and names the nodes that lack them."""
from __future__ import annotations

from ansible_collections.gpuops.llm.plugins.modules.gpu_capacity import survey


def _node(name, alloc, labels=None):
    return {"metadata": {"name": name, "labels": labels or {}}, "status": {"allocatable": alloc}}


def test_mig_devices_count_and_empty_nodes_are_named():
    nodes = [
        _node("whole", {"cpu": "8", "nvidia.com/gpu": "8"}, {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB", "x": "y"}),
        _node("mig", {"nvidia.com/mig-1g.10gb": "2", "nvidia.com/mig-3g.40gb": "1", "nvidia.com/gpu": "0"}),
        _node("empty", {"cpu": "8"}),
    ]
    view, missing, totals = survey(nodes, [], {})
    assert view["mig"]["devices"] == 3 and view["whole"]["devices"] == 8
    assert view["whole"]["gfd"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-40GB"}
    assert set(missing) == {"empty"} and "device plugin" in missing["empty"]
    assert totals == {"nvidia.com/gpu": 8, "nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-3g.40gb": 1}


def test_expected_layout_and_unknown_nodes():
    nodes = [_node("mig", {"nvidia.com/mig-1g.10gb": "2"})]
    missing = survey(nodes, ["mig", "ghost"], {"mig": {"nvidia.com/mig-1g.10gb": 7}})[1]
    assert missing["ghost"] == "not found in the cluster"
    assert "expected {'nvidia.com/mig-1g.10gb': 7}" in missing["mig"]
    missing = survey(nodes, ["mig"], {"mig": {"nvidia.com/mig-1g.10gb": "2", "nvidia.com/gpu": 0}})[1]
    assert missing == {}
