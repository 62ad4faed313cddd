# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Benchmark 1: node pools on 100 and 1,000 kwok nodes, gpuops.llm.node_pool vs kubernetes.core.

Three pools (two GPU, one CPU), each with a label and a taint. The baseline is what users write with
kubernetes.core: one `kubernetes.core.k8s` task per node (`state: patched`, the node's labels and
taints as the definition), over an inventory with one host per node and `delegate_to: localhost`,
at Ansible's default forks (5). First run and rerun: wall time, tasks executed, and the write calls
the apiserver logged in its audit log, by verb.
"""
from __future__ import annotations

import collections
import concurrent.futures
import cProfile
import io
import pstats
import sys
import time

import yaml

from common import RssSampler, by_resource, by_verb, log, run_playbook

POOL_LABEL = "gpuops.llm/testbed-pool"
NFD_GPU_LABEL = "feature.node.kubernetes.io/pci-10de.present"
MANAGED_ANNOTATION = "gpuops.llm/node-pool.managed"

POOLS = [
    {"name": "llm-inference", "kind": "gpu", "labels": {"workload-class": "inference"},
     "taints": [{"key": "workload", "value": "llm-inference", "effect": "NoSchedule"}]},
    {"name": "llm-training", "kind": "gpu", "labels": {"workload-class": "training"},
     "taints": [{"key": "workload", "value": "llm-training", "effect": "NoSchedule"}]},
    {"name": "general-cpu", "kind": "cpu", "labels": {"workload-class": "general"},
     "taints": [{"key": "workload", "value": "general", "effect": "PreferNoSchedule"}]},
]


def node_name(i: int) -> str:
    return "bench-%04d" % i


def pool_of(i: int) -> dict:
    return POOLS[i % len(POOLS)]


def node_body(i: int) -> dict:
    pool = pool_of(i)
    labels = {"kubernetes.io/hostname": node_name(i), "kubernetes.io/os": "linux", "kubernetes.io/arch": "amd64",
              "type": "kwok", POOL_LABEL: "bench-" + pool["name"]}
    if pool["kind"] == "gpu":
        labels[NFD_GPU_LABEL] = "true"  # what NFD sets on a node with an NVIDIA PCI device: the GPU guard's evidence
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": node_name(i), "labels": labels, "annotations": {"kwok.x-k8s.io/node": "fake"}}}


def _parallel(fn, items, workers=8):
    with concurrent.futures.ThreadPoolExecutor(workers) as ex:
        return list(ex.map(fn, items))


def create_nodes(inst, start: int, stop: int) -> float:
    from kubernetes import client
    v1 = client.CoreV1Api(inst.api())
    t0 = time.monotonic()
    _parallel(lambda i: v1.create_node(node_body(i)), range(start, stop))
    return time.monotonic() - t0


def wait_ready(inst, count: int, timeout: float = 300) -> float:
    """kwok marks nodes Ready shortly after creation; measure only once it has settled."""
    from kubernetes import client
    v1 = client.CoreV1Api(inst.api())
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        nodes = v1.list_node(label_selector="type=kwok").items
        ready = sum(1 for n in nodes if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or []))
        if ready >= count:
            break
        time.sleep(2)
    time.sleep(3)
    return time.monotonic() - t0


def reset_nodes(inst, n: int) -> None:
    """Strip what either approach set, so the next first run starts from the same state (not measured)."""
    from kubernetes import client
    v1 = client.CoreV1Api(inst.api())
    keys = sorted({k for p in POOLS for k in p["labels"]})
    patch = {"metadata": {"labels": {k: None for k in keys}, "annotations": {MANAGED_ANNOTATION: None}},
             "spec": {"taints": None}}
    _parallel(lambda i: v1.patch_node(node_name(i), patch), range(n))


def node_pool_pools() -> list:
    return [{"name": p["name"], "kind": p["kind"], "selector": "%s=bench-%s" % (POOL_LABEL, p["name"]),
             "labels": p["labels"], "taints": p["taints"]} for p in POOLS]


def write_files(inst, n_nodes: int, sample: int) -> dict:
    d = inst.home / "node_pools"
    d.mkdir(exist_ok=True)
    local = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    inv_np = d / "inventory_np.yml"
    inv_np.write_text(yaml.safe_dump({"all": {"hosts": {"localhost": local}}}))
    pb_np = d / "node_pool.yml"
    pb_np.write_text(yaml.safe_dump([{
        "name": "Node pools with gpuops.llm", "hosts": "localhost", "gather_facts": False,
        "tasks": [{"name": "Apply every pool in one call", "gpuops.llm.node_pool": {
            "kubeconfig": inst.kubeconfig, "pools": node_pool_pools()}}],
    }], sort_keys=False))

    groups = {}
    for i in range(min(sample, n_nodes)):
        p = pool_of(i)
        group_vars = {"np_labels": p["labels"], "np_taints": p["taints"]}
        g = groups.setdefault(p["name"].replace("-", "_"), {"hosts": {}, "vars": group_vars})
        g["hosts"][node_name(i)] = None
    inv_kc = d / "inventory_kc.yml"
    inv_kc.write_text(yaml.safe_dump({"all": {"vars": local, "hosts": {"localhost": None},
                                              "children": {"bench_nodes": {"children": groups}}}}))
    pb_kc = d / "kubernetes_core.yml"
    pb_kc.write_text(yaml.safe_dump([{
        "name": "Node pools with kubernetes.core, one task per node", "hosts": "bench_nodes", "gather_facts": False,
        "tasks": [{
            "name": "Label and taint the node",
            "kubernetes.core.k8s": {
                "kubeconfig": inst.kubeconfig, "state": "patched",
                "definition": {"apiVersion": "v1", "kind": "Node",
                               "metadata": {"name": "{{ inventory_hostname }}", "labels": "{{ np_labels }}"},
                               "spec": {"taints": "{{ np_taints }}"}}},
            "delegate_to": "localhost"}],
    }], sort_keys=False))
    return {"np": (pb_np, inv_np), "kc": (pb_kc, inv_kc)}


def measured_run(inst, playbook, inventory) -> dict:
    marker = inst.audit_marker()
    r = run_playbook(inst, playbook, inventory)
    writes = inst.audit_writes(marker)
    out = {k: r[k] for k in ("rc", "wall_s", "tasks", "changed", "failed")}
    out["writes"] = len(writes)
    out["writes_by_verb"] = by_verb(writes)
    out["writes_by_resource"] = by_resource(writes)
    codes = collections.Counter(w["code"] for w in writes)
    out["writes_by_code"] = {str(k): v for k, v in sorted(codes.items(), key=lambda kv: str(kv[0]))}
    if r["rc"]:
        out["output_tail"] = r["output_tail"]
        log("playbook %s failed:\n%s" % (playbook.name, r["output_tail"]))
    return out


def in_process_profile(inst, top: int = 8) -> dict:
    """node_pool's own work (one LIST, the plan) in this process, check mode, under cProfile."""
    from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8s, clear_client_cache
    from ansible_collections.gpuops.llm.plugins.module_utils.node_pool import apply_pools
    clear_client_cache()
    prof = cProfile.Profile()
    t0 = time.monotonic()
    prof.enable()
    adapter = K8s.from_params({"kubeconfig": inst.kubeconfig})
    res = apply_pools(adapter, node_pool_pools(), check_mode=True)
    prof.disable()
    wall = time.monotonic() - t0
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("cumulative").print_stats(top)
    lines = [ln for ln in s.getvalue().splitlines() if ln.strip() and ("/" in ln or "{" in ln)][:top]
    return {"wall_s": round(wall, 3), "nodes_listed": res["nodes_listed"], "nodes_changed": res["nodes_changed"],
            "top_cumulative": [" ".join(ln.split()) for ln in lines]}


def bench_scale(inst, n: int, kc_sample: int) -> dict:
    files = write_files(inst, n, kc_sample)
    out = {"nodes": n}
    log("node_pools N=%d: node_pool first run" % n)
    out["node_pool"] = {"first": measured_run(inst, *files["np"])}
    log("node_pools N=%d: node_pool rerun" % n)
    out["node_pool"]["rerun"] = measured_run(inst, *files["np"])
    out["node_pool"]["in_process_check_mode"] = in_process_profile(inst)
    reset_nodes(inst, n)
    if kc_sample <= 0:
        return out  # node_pool only (supplementary runs)
    sampled = min(kc_sample, n)
    log("node_pools N=%d: kubernetes.core first run on %d nodes" % (n, sampled))
    kc = {"first": measured_run(inst, *files["kc"])}
    log("node_pools N=%d: kubernetes.core rerun" % n)
    kc["rerun"] = measured_run(inst, *files["kc"])
    kc["nodes_run"] = sampled
    kc["extrapolated"] = sampled < n
    if sampled < n:
        # Per-node tasks are independent (no LIST, one GET + PATCH each), so time and calls scale linearly.
        factor = n / sampled
        kc["measured_sample"] = {k: dict(v) for k, v in kc.items() if k in ("first", "rerun")}
        for run in ("first", "rerun"):
            r = kc[run]
            r["wall_s"] = round(r["wall_s"] * factor, 1)
            r["tasks"] = int(round(r["tasks"] * factor))
            r["changed"] = int(round(r["changed"] * factor))
            r["writes"] = int(round(r["writes"] * factor))
            r["writes_by_verb"] = {k: int(round(v * factor)) for k, v in r["writes_by_verb"].items()}
            r["writes_by_resource"] = {k: int(round(v * factor)) for k, v in r["writes_by_resource"].items()}
    out["kubernetes_core"] = kc
    reset_nodes(inst, n)
    out["speedup_first"] = round(kc["first"]["wall_s"] / max(out["node_pool"]["first"]["wall_s"], 1e-9), 1)
    out["speedup_rerun"] = round(kc["rerun"]["wall_s"] / max(out["node_pool"]["rerun"]["wall_s"], 1e-9), 1)
    return out


def run(quick: bool = False, kc_full_limit: int = 100) -> dict:
    """kc_full_limit: the most nodes the kubernetes.core baseline runs on; above it, a sample of that many
    nodes runs and the result is scaled (and marked extrapolated)."""
    from common import Instance
    scales = [100] if quick else [100, 1000]
    inst = Instance("bench-pools", [], subdir="pools")
    result = {"scales": [], "forks": 5}
    try:
        log("node_pools: testbed up (own instance at %s)" % inst.home)
        result["testbed_up"] = inst.up(agent=False)
        created = 0
        with RssSampler(inst) as rss:
            for n in scales:
                t = create_nodes(inst, created, n)
                created = n
                settle = wait_ready(inst, n)
                log("node_pools: %d nodes created in %.1f s, settled in %.1f s" % (n, t, settle))
                rss.sample()
                result["scales"].append(bench_scale(inst, n, kc_full_limit))
                rss.sample()
        result["control_plane_rss"] = rss.result()
        result["control_plane_rss"]["nodes"] = created
    finally:
        log("node_pools: testbed down")
        inst.down()
    return result


if __name__ == "__main__":
    import json
    print(json.dumps(run(quick="--quick" in sys.argv), indent=1))
