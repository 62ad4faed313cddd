"""testbed/node_agent.py reconcile_node: publishes what gfd.py says the plugin and GFD would, per
component and strategy, keeps GFD's start timestamp, reads sharing from the mounted config and
publishes nothing for a component that would exit (with the reason in an annotation)."""
from __future__ import annotations

import json
import pathlib
import sys
from types import SimpleNamespace as NS

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed"))

import node_agent  # noqa: E402

from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim  # noqa: E402

H100 = "H100-80GB-HBM3"


class FakeV1:
    """Just the calls reconcile_node makes; patches are applied to the node object."""

    def __init__(self, node, pods=(), config_maps=None):
        self.node, self.pods, self.cms, self.writes = node, list(pods), config_maps or {}, []

    def list_pod_for_all_namespaces(self, field_selector=None, label_selector=None):
        return NS(items=[p for p in self.pods if field_selector == "spec.nodeName=" + p.spec.node_name])

    def read_namespaced_config_map(self, name, namespace):
        return NS(data=self.cms[(namespace, name)])

    def patch_node_status(self, name, body):
        self.writes.append(("status", body))
        for field in ("capacity", "allocatable"):
            cur = dict(getattr(self.node.status, field) or {})
            for k, v in body["status"][field].items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = v
            setattr(self.node.status, field, cur)

    def patch_node(self, name, body):
        self.writes.append(("node", body))
        for field in ("labels", "annotations"):
            cur = dict(getattr(self.node.metadata, field) or {})
            for k, v in body["metadata"][field].items():
                if v is None:
                    cur.pop(k, None)
                else:
                    cur[k] = v
            setattr(self.node.metadata, field, cur)


def make_node(name="n0"):
    return NS(metadata=NS(name=name, labels={"kubernetes.io/hostname": name}, annotations={}),
              status=NS(capacity={"cpu": "8"}, allocatable={"cpu": "8"}))


def plugin_pod(node, uid="p1", name=node_agent.DEVICE_PLUGIN):
    env = [NS(name="MIG_STRATEGY", value="none"), NS(name="CONFIG_FILE", value="/etc/nvidia-device-plugin/config.yaml")]
    return NS(metadata=NS(uid=uid, namespace="nvidia-device-plugin", deletion_timestamp=None,
                          labels={"app.kubernetes.io/name": name}),
              status=NS(phase="Running"),
              spec=NS(node_name=node, volumes=[NS(name="plugin-config", config_map=NS(name="nvidia-device-plugin-config"))],
                      containers=[NS(env=env, volume_mounts=[NS(name="plugin-config",
                                                                mount_path="/etc/nvidia-device-plugin")])]))


def state(tmp_path, gpus, mig_enabled=False):
    path = tmp_path / "n0.json"
    nvml_sim.save_state(str(path), nvml_sim.new_host_state(gpus, mig_enabled=mig_enabled))
    return path


def test_strategies_per_component_and_steady_state(tmp_path):
    node = make_node()
    v1 = FakeV1(node)
    path = state(tmp_path, ["L4", "L4"])
    comps = {node_agent.DEVICE_PLUGIN: "none", node_agent.GFD: "mixed"}
    assert node_agent.reconcile_node(v1, node, path, comps)
    assert node.status.allocatable["nvidia.com/gpu"] == "2"
    assert node.metadata.labels["nvidia.com/mig.strategy"] == "mixed"     # GFD's own strategy
    assert "nvidia.com/gpu.present" not in node.metadata.labels          # not a GFD label
    stamp = node.metadata.labels["nvidia.com/gfd.timestamp"]
    n = len(v1.writes)
    assert not node_agent.reconcile_node(v1, node, path, comps)          # steady: no writes
    assert len(v1.writes) == n and node.metadata.labels["nvidia.com/gfd.timestamp"] == stamp
    assert node_agent.reconcile_node(v1, node, path, {})                 # pods gone: all removed
    assert "nvidia.com/gpu" not in node.status.allocatable
    assert not any(k.startswith("nvidia.com/") for k in node.metadata.labels)


def test_plugin_that_would_exit_advertises_nothing(tmp_path):
    # single, one MIG-enabled H100 with a GI but no compute instance: the plugin exits, GFD says INVALID.
    node = make_node()
    v1 = FakeV1(node)
    path = state(tmp_path, [H100], mig_enabled=True)
    nvml_sim.SimBackend(str(path)).create_gpu_instance(0, 9, 0, 4)   # 3g.40gb, no compute instance
    comps = {node_agent.DEVICE_PLUGIN: "single", node_agent.GFD: "single"}
    node_agent.reconcile_node(v1, node, path, comps)
    assert not any(k.startswith("nvidia.com/") for k in node.status.allocatable)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-INVALID"
    problems = json.loads(node.metadata.annotations[node_agent.PROBLEMS])
    assert "no MIG devices configured" in problems[node_agent.DEVICE_PLUGIN]


def test_sharing_from_the_mounted_config(tmp_path):
    node = make_node()
    cfg = "version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replicas: 4\n"
    v1 = FakeV1(node, [plugin_pod("n0")], {("nvidia-device-plugin", "nvidia-device-plugin-config"): {"config.yaml": cfg}})
    path = state(tmp_path, ["L4"])
    node_agent.reconcile_node(v1, node, path, {node_agent.DEVICE_PLUGIN: "none", node_agent.GFD: "none"})
    assert node.status.allocatable["nvidia.com/gpu"] == "4"
    assert node.metadata.labels["nvidia.com/gpu.replicas"] == "4"
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-L4-SHARED"
    assert node.metadata.labels["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
