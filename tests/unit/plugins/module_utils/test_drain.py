"""Which pods a GPU drain moves, and when a node counts as back."""
from __future__ import annotations

from ansible_collections.gpuops.llm.plugins.module_utils import drain


def _pod(name, limits=None, requests=None, owner=None, phase="Running", deleting=False, init=False):
    c = {"name": "c", "resources": {}}
    if limits:
        c["resources"]["limits"] = limits
    if requests:
        c["resources"]["requests"] = requests
    meta = {"name": name, "namespace": "ns"}
    if owner:
        meta["ownerReferences"] = [{"kind": owner, "name": "x"}]
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    spec = {"initContainers": [c], "containers": []} if init else {"containers": [c]}
    return {"metadata": meta, "spec": spec, "status": {"phase": phase}}


def test_only_running_non_daemonset_gpu_pods_are_evicted():
    pods = [
        _pod("gpu", limits={"nvidia.com/gpu": "1"}),
        _pod("mig", requests={"nvidia.com/mig-1g.10gb": "2"}, owner="ReplicaSet"),
        _pod("init-gpu", limits={"nvidia.com/gpu": "1"}, init=True),
        _pod("cpu", limits={"cpu": "2"}),
        _pod("plugin", limits={"nvidia.com/gpu": "1"}, owner="DaemonSet"),
        _pod("done", limits={"nvidia.com/gpu": "1"}, phase="Succeeded"),
        _pod("going", limits={"nvidia.com/gpu": "1"}, deleting=True),
    ]
    assert [p["metadata"]["name"] for p in drain.pods_to_evict(pods)] == ["gpu", "mig", "init-gpu"]


def test_gpu_resources_take_the_larger_of_request_and_limit():
    p = _pod("x", limits={"nvidia.com/gpu": "2"}, requests={"nvidia.com/gpu": "1", "memory": "1Gi"})
    assert drain.gpu_resources_of(p) == {"nvidia.com/gpu": 2}


def test_resources_match_ignores_zero_counts_and_non_gpu_resources():
    node = {"status": {"allocatable": {"cpu": "8", "nvidia.com/mig-1g.10gb": "2", "nvidia.com/mig-3g.40gb": "0"}}}
    assert drain.resources_match(node, {"nvidia.com/mig-1g.10gb": 2})
    assert drain.resources_match(node, {"nvidia.com/mig-1g.10gb": "2", "nvidia.com/gpu": 0})
    assert not drain.resources_match(node, {"nvidia.com/mig-1g.10gb": 3})
    assert not drain.resources_match(node, {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-2g.20gb": 1})
