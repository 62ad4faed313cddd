"""The testbed's inventory and its cluster spec describe the same GPU hosts."""
from __future__ import annotations

import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _inventory_hosts(group: dict) -> set[str]:
    hosts = set((group.get("hosts") or {}).keys())
    for child in (group.get("children") or {}).values():
        hosts |= _inventory_hosts(child or {})
    return hosts


def test_every_gpu_node_has_an_inventory_host_and_back():
    spec = yaml.safe_load((ROOT / "testbed" / "cluster.yml").read_text())
    inv = yaml.safe_load((ROOT / "inventories" / "testbed" / "hosts.yml").read_text())
    gpu_nodes = {n["name"] for n in spec["nodes"] if n.get("gpu_count")}
    gpu_hosts = _inventory_hosts(inv["all"]["children"]["gpu_hosts"])
    assert gpu_nodes == gpu_hosts


def test_mig_group_holds_exactly_the_mig_enabled_nodes():
    spec = yaml.safe_load((ROOT / "testbed" / "cluster.yml").read_text())
    inv = yaml.safe_load((ROOT / "inventories" / "testbed" / "hosts.yml").read_text())
    mig_nodes = {n["name"] for n in spec["nodes"] if n.get("mig_enabled")}
    mig_hosts = _inventory_hosts(inv["all"]["children"]["gpu_hosts"]["children"]["mig_gpu"])
    assert mig_nodes and mig_nodes == mig_hosts


def test_testbed_spans_several_gpu_models_and_pools():
    spec = yaml.safe_load((ROOT / "testbed" / "cluster.yml").read_text())
    models = {n["gpu_model"] for n in spec["nodes"] if n.get("gpu_count")}
    pools = {n["pool"] for n in spec["nodes"]}
    assert len(models) >= 3
    assert {"llm-inference", "llm-training", "cpu"} <= pools


def test_node_manifest_keeps_gpu_capacity_to_the_agent():
    """Nodes start without nvidia.com/* capacity: only a running device plugin may add it."""
    import sys
    sys.path.insert(0, str(ROOT / "testbed"))
    import testbed
    tb = testbed.Testbed()
    for n in tb.spec["nodes"]:
        m = tb.node_manifest(n)
        assert not any(k.startswith("nvidia.com/") for k in m["status"]["capacity"])
        assert m["metadata"]["annotations"][testbed.FAKE_NODE_ANNOTATION] == "fake"
        assert (testbed.NFD_GPU_LABEL in m["metadata"]["labels"]) == bool(n.get("gpu_count"))


def test_cluster_api_objects_are_the_inventory_autoscaler_node_groups():
    """The clusterapi autoscaler sizes MachineDeployments by annotation; the testbed holds one per node
    group the inventory names, in the namespace the role discovers, and a pool of that name."""
    spec = yaml.safe_load((ROOT / "testbed" / "cluster.yml").read_text())
    group_vars = yaml.safe_load((ROOT / "inventories" / "testbed" / "group_vars" / "k8s_api.yml").read_text())
    assert group_vars["cluster_autoscaler_cloud_provider"] == "clusterapi"
    assert group_vars["cluster_autoscaler_clusterapi_annotate_node_groups"] is True
    groups = {g["name"] for g in group_vars["cluster_autoscaler_node_groups"]}
    assert set(spec["cluster_api"]["machine_deployments"]) == groups
    assert groups <= {n["pool"] for n in spec["nodes"]}
    defaults = yaml.safe_load((ROOT / "roles" / "cluster_autoscaler" / "defaults" / "main.yml").read_text())
    ns = group_vars.get("cluster_autoscaler_clusterapi_namespace", defaults["cluster_autoscaler_clusterapi_namespace"])
    assert spec["cluster_api"]["namespace"] == ns
