# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The real Cluster Autoscaler on the testbed, with its kwok cloud provider.

testbed/build_cluster_autoscaler.sh builds cluster-autoscaler (tag cluster-autoscaler-1.36.1) with
only the kwok provider. This runs it out of cluster (--kubeconfig, --cloud-provider=kwok) with the
policy roles/cluster_autoscaler wrote (its cluster_autoscaler_policy_file: flags and node groups):

- each node group of the policy whose name is a testbed pool becomes a kwok node group: one template
  node in the kwok-provider-templates ConfigMap, shaped like that pool's live node (labels, taints,
  cpu/memory/pods, nvidia.com/gpu from testbed/cluster.yml), grouped by an annotation only the
  autoscaled nodes carry (nodegroups.fromNodeAnnotationKey; see provider_objects), max-count = the
  group's max_nodes;
- the kwok provider (cloudprovider/kwok at that tag) names new nodes <group>-<5 random chars>,
  creates them from the template with providerID kwok:<name> and annotation kwok.x-k8s.io/node=fake
  (so the testbed's kwok controller runs them), and deletes them on scale-down and when it exits;
- for each node it adds, this process writes an NVML simulator state (the pool's GPU model and
  count) so the node agent advertises GPUs only once a device plugin pod runs there, as on a real
  node; the template's nvidia.com/gpu is what the autoscaler simulates with, as a cloud provider's
  instance type would say;
- it records every node added and removed per pool (<home>/cluster-autoscaler/events.json, for
  testbed/summary.py).

Differences from the role's Deployment, on purpose (docs/cluster-autoscaler.md):
- the kwok provider ignores --nodes and --node-group-auto-discovery; min-count is 0 for every group:
  kwok's node groups hold only the nodes it created (the testbed's own nodes have no kwok providerID
  and belong to no group), and its target size starts at min-count, so a min above 0 would count
  nodes that never register. Max sizes are the role's;
- the priority expander's regexes are the role's priorities rewritten for kwok's node-group ids
  (the pool names), in this runner's namespace;
- --scale-down-unneeded-time and the delays are shortened (TIMINGS) so a rehearsal fits in minutes;
  the role's values are printed next to them.

Usage: cluster_autoscaler.py start [--policy FILE] | stop | status | rehearse | run (foreground, used by start)
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import signal
import subprocess
import sys
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import testbed  # noqa: E402

NAMESPACE = "gpuops-testbed-ca"
NG_ANNOTATION = "cluster-autoscaler.kwok.nodegroup/name"  # kwok_constants.go NGNameAnnotation
MIN_ANNOTATION = "cluster-autoscaler.kwok.nodegroup/min-count"
MAX_ANNOTATION = "cluster-autoscaler.kwok.nodegroup/max-count"
# The rehearsal's clock; the role's own values (5m, 10m) are in the policy file and printed.
TIMINGS = {
    "scan-interval": "2s",
    "scale-down-unneeded-time": "20s",
    "scale-down-delay-after-add": "15s",
    "scale-down-delay-after-delete": "0s",
    "scale-down-delay-after-failure": "5s",
    "max-node-provision-time": "2m",
    # A node whose GPUs never show (no device plugin pod there) is unready to the autoscaler; it removes
    # such a node after this (default 20m).
    "scale-down-unready-time": "30s",
}
# The autoscaler's GPU label (kwok-provider-config nodes.gpuConfig.gpuLabelKey), on autoscaled GPU nodes only:
# the one the clusterapi provider documents (cloudprovider/clusterapi README "Special note on GPU instances").
# Not the NFD label every testbed GPU node has: a node with the GPU label, no nvidia.com/gpu allocatable
# (the MIG nodes advertise nvidia.com/mig-*) and no autoscaled node group makes every GPU scale-up fail
# (processors/customresources/gpu_processor.go: "node without with gpu label, without capacity not
# belonging to autoscaled node group"), as it would on a real cluster.
GPU_LABEL = "cluster-api/accelerator"
GROUP_ANNOTATION = "gpuops.llm/testbed-autoscaled-pool"
# Flags that name the real cloud's node groups or the in-cluster Deployment's namespace.
PROVIDER_FLAGS = ("cloud-provider", "nodes", "node-group-auto-discovery", "namespace", "gpu-total")


def state_dir(tb: testbed.Testbed) -> pathlib.Path:
    return tb.home / "cluster-autoscaler"


def binary() -> pathlib.Path | None:
    p = subprocess.run(["bash", str(HERE / "build_cluster_autoscaler.sh"), "--print-path"],
                       capture_output=True, text=True, check=True).stdout.strip()
    return pathlib.Path(p) if p and os.access(p, os.X_OK) else None


def pool_spec(tb: testbed.Testbed) -> dict[str, dict]:
    """pool -> its first node in testbed/cluster.yml (the pool's shape)."""
    out: dict[str, dict] = {}
    for n in tb.spec["nodes"]:
        out.setdefault(n["pool"], n)
    return out


def gpu_type(n: dict) -> str:
    return "-".join(n["gpu_model"].lower().replace("_", " ").split())


def template_node(tb: testbed.Testbed, group: dict, live) -> dict:
    """The kwok template for one node group: the pool's live node's labels and taints, its spec's capacity."""
    n = pool_spec(tb)[group["name"]]
    body = tb.node_manifest(n)
    labels = dict(body["metadata"]["labels"])
    taints = []
    if live is not None:
        labels.update(live.metadata.labels or {})
        taints = [{"key": t.key, "value": t.value, "effect": t.effect} for t in (live.spec.taints or [])
                  if not t.key.startswith("node.kubernetes.io/")]  # conditions, not the pool's shape
    labels.pop("kubernetes.io/hostname", None)  # kwok provider README: never group or template by hostname
    cap = dict(body["status"]["capacity"])
    if n.get("gpu_count") and not n.get("mig_enabled"):
        cap["nvidia.com/gpu"] = str(n["gpu_count"])
        labels[GPU_LABEL] = gpu_type(n)
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": "tmpl-" + group["name"], "labels": labels, "annotations": {
            GROUP_ANNOTATION: group["name"], MIN_ANNOTATION: "0", MAX_ANNOTATION: str(group["max_nodes"])}},
        "spec": {"taints": taints},
        "status": {"capacity": cap, "allocatable": dict(cap), "nodeInfo": body["status"]["nodeInfo"]},
    }


def provider_objects(tb: testbed.Testbed, policy: dict) -> list[dict]:
    """The kwok provider's two ConfigMaps and the priority expander's, for the policy's pools."""
    from kubernetes import client
    import yaml
    v1 = client.CoreV1Api(tb.api_client())
    pools = pool_spec(tb)
    groups = [g for g in policy["node_groups"] if g["name"] in pools]
    templates = []
    for g in groups:
        live = v1.list_node(label_selector=f"{testbed.POOL_LABEL}={g['name']}").items
        live = [x for x in live if not (x.spec.provider_id or "").startswith("kwok")]
        templates.append(template_node(tb, g, live[0] if live else None))
    config = {
        "apiVersion": "v1alpha1",
        "readNodesFrom": "configmap",
        # By an annotation only autoscaled nodes carry: the provider's Refresh() sets a group's target size to
        # the count of ALL nodes with the key (kwok_provider.go), so grouping by the pool label would count the
        # testbed's own nodes, which Nodes() (by cluster-autoscaler.kwok.nodegroup/name) never lists, and the
        # group would be "not ready for scaleup - unhealthy" forever.
        "nodegroups": {"fromNodeAnnotationKey": GROUP_ANNOTATION},
        # skipTaint: the pool's own taints are the template's; no extra kwok-provider taint.
        "nodes": {"skipTaint": True,
                  # Nodes with this label and no allocatable GPU yet are "not ready" to the autoscaler,
                  # as on a cloud before the device plugin runs.
                  "gpuConfig": {"gpuLabelKey": GPU_LABEL,
                                "availableGPUTypes": {gpu_type(pools[g["name"]]): {} for g in groups
                                                      if pools[g["name"]].get("gpu_count")} or {"none": {}}}},
        "configmap": {"name": "kwok-provider-templates"},
    }
    prio: dict[int, list[str]] = {}
    for g in groups:
        prio.setdefault(int(g.get("priority", 0)), []).append("^%s$" % g["name"])
    prio.setdefault(0, []).append(".*")
    meta = {"namespace": NAMESPACE, "labels": {"app.kubernetes.io/managed-by": "gpuops-testbed"}}
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(meta, name="kwok-provider-config"),
         "data": {"config": yaml.safe_dump(config)}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(meta, name="kwok-provider-templates"),
         "data": {"templates": yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": templates})}},
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": dict(meta, name="cluster-autoscaler-priority-expander"),
         "data": {"priorities": yaml.safe_dump(prio)}},
    ]


def args_for(policy: dict, kubeconfig: pathlib.Path) -> list[str]:
    flags = {k: v for k, v in policy["flags"].items() if k not in PROVIDER_FLAGS}
    flags.update(TIMINGS)
    args = ["--cloud-provider=kwok", f"--kubeconfig={kubeconfig}", f"--namespace={NAMESPACE}",
            "--leader-elect=false", "--v=2"]
    args += [f"--{k}={v}" for k, v in sorted(flags.items())]
    return args


def apply(tb: testbed.Testbed, objs: list[dict]) -> None:
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    v1 = client.CoreV1Api(tb.api_client())
    try:
        v1.create_namespace({"metadata": {"name": NAMESPACE}})
    except ApiException as e:
        if e.status != 409:
            raise
    for o in objs:
        try:
            v1.replace_namespaced_config_map(o["metadata"]["name"], NAMESPACE, o)
        except ApiException as e:
            if e.status != 404:
                raise
            v1.create_namespaced_config_map(NAMESPACE, o)


def pid_file(tb: testbed.Testbed) -> pathlib.Path:
    return state_dir(tb) / "runner.pid"


def running(tb: testbed.Testbed) -> int | None:
    try:
        pid = int(pid_file(tb).read_text())
        os.kill(pid, 0)
        return pid
    except (OSError, ValueError):
        return None


def start(tb: testbed.Testbed, policy_path: pathlib.Path) -> int:
    if running(tb):
        return running(tb)
    if binary() is None:
        raise SystemExit("cluster-autoscaler is not built: run testbed/build_cluster_autoscaler.sh")
    d = state_dir(tb)
    d.mkdir(parents=True, exist_ok=True)
    (d / "events.json").write_text("[]")
    policy = json.loads(policy_path.read_text())
    apply(tb, provider_objects(tb, policy))
    log = open(d / "runner.log", "ab")
    p = subprocess.Popen([sys.executable, str(pathlib.Path(__file__).resolve()), "run", "--policy", str(policy_path)],
                         stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                         env=dict(os.environ, GPUOPS_TESTBED_HOME=str(tb.home)))
    pid_file(tb).write_text(str(p.pid))
    return p.pid


def stop(tb: testbed.Testbed, timeout: float = 30) -> None:
    """SIGTERM the runner; it stops the autoscaler, which deletes the nodes it created (Cleanup)."""
    pid = running(tb)
    if pid:
        os.kill(pid, signal.SIGTERM)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except OSError:
                break
            time.sleep(0.2)
        else:
            os.killpg(pid, signal.SIGKILL)
    pid_file(tb).unlink(missing_ok=True)


def events(tb: testbed.Testbed) -> list[dict]:
    try:
        return json.loads((state_dir(tb) / "events.json").read_text())
    except (OSError, ValueError):
        return []


def per_pool(evts: list[dict]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for e in evts:
        p = out.setdefault(e["pool"], {"added": 0, "removed": 0})
        key = "removed_at_exit" if e.get("at_exit") else e["event"]  # its clean-up, not a scale-down
        p[key] = p.get(key, 0) + 1
    return out


def run(tb: testbed.Testbed, policy_path: pathlib.Path) -> int:
    """Foreground: the autoscaler as a child, and the NVML states and event log for its nodes."""
    from kubernetes import client
    from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
    policy = json.loads(policy_path.read_text())
    d = state_dir(tb)
    args = args_for(policy, tb.kubeconfig)
    print("role's flags:", " ".join(policy["args"]), flush=True)
    print("running:", binary(), " ".join(args), flush=True)
    # The kwok provider's own client reads KUBECONFIG, not --kubeconfig (kwok_provider.go BuildKwok, local mode).
    env = dict(os.environ, POD_NAMESPACE=NAMESPACE, KWOK_PROVIDER_MODE="local", KUBECONFIG=str(tb.kubeconfig))
    ca = subprocess.Popen([str(binary()), *args], stdout=open(d / "cluster-autoscaler.log", "ab"),
                          stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(1))
    v1 = client.CoreV1Api(tb.api_client())
    pools = pool_spec(tb)
    seen: dict[str, str] = {}
    log: list[dict] = []
    while True:
        try:
            now = {n.metadata.name: n.metadata.annotations[NG_ANNOTATION] for n in v1.list_node().items
                   if (n.metadata.annotations or {}).get(NG_ANNOTATION) and (n.spec.provider_id or "").startswith("kwok:")}
            for name, pool in sorted(now.items()):
                if name not in seen:
                    spec = pools.get(pool, {})
                    if spec.get("gpu_count"):
                        path = tb.nvml_dir / f"{name}.json"
                        nvml_sim.save_state(str(path), nvml_sim.new_host_state(
                            [spec["gpu_model"]] * int(spec["gpu_count"]), mig_enabled=bool(spec.get("mig_enabled"))))
                    log.append({"time": time.time(), "event": "added", "node": name, "pool": pool})
            for name, pool in sorted(seen.items()):
                if name not in now:
                    (tb.nvml_dir / f"{name}.json").unlink(missing_ok=True)
                    log.append({"time": time.time(), "event": "removed", "node": name, "pool": pool})
            if now != seen:
                (d / "events.json").write_text(json.dumps(log, indent=1))
                print(time.strftime("%H:%M:%S"), "nodes:", sorted(now), flush=True)
            seen = now
        except Exception as e:  # noqa: BLE001 - keep recording; the log says why
            print(f"error: {type(e).__name__}: {e}", flush=True)
        if stopping or ca.poll() is not None:
            break
        time.sleep(1)
    if ca.poll() is None:
        ca.terminate()  # the autoscaler's exit clean-up deletes the kwok nodes it made
        try:
            ca.wait(20)
        except subprocess.TimeoutExpired:
            ca.kill()
    # Record what its clean-up removed.
    try:
        left = {n.metadata.name for n in v1.list_node().items}
        for name, pool in sorted(seen.items()):
            if name not in left:
                (tb.nvml_dir / f"{name}.json").unlink(missing_ok=True)
                log.append({"time": time.time(), "event": "removed", "node": name, "pool": pool, "at_exit": True})
        (d / "events.json").write_text(json.dumps(log, indent=1))
    except Exception as e:  # noqa: BLE001
        print(f"error: {type(e).__name__}: {e}", flush=True)
    print("autoscaler exit code:", ca.returncode, flush=True)
    return 0


def rehearse(tb: testbed.Testbed, policy_path: pathlib.Path, pool: str = "llm-training") -> int:
    """make run's step: start the autoscaler, make two 8-GPU pods of `pool` Pending, watch it add a
    node there, remove the pods, watch the pool's autoscaled nodes go back to zero, stop it."""
    from kubernetes import client
    if binary() is None:
        print("cluster-autoscaler rehearsal: skipped (not built; see testbed/build_cluster_autoscaler.sh)")
        return 0
    if not policy_path.exists():
        print(f"cluster-autoscaler rehearsal: skipped (no policy at {policy_path}; site.yml writes it)")
        return 0
    v1 = client.CoreV1Api(tb.api_client())
    ns = "gpuops-ca-rehearsal"
    t0 = time.monotonic()

    def autoscaled():
        return sorted(n.metadata.name for n in v1.list_node(label_selector=f"{testbed.POOL_LABEL}={pool}").items
                      if (n.spec.provider_id or "").startswith("kwok:"))

    def wait(pred, timeout):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return True
            time.sleep(1)
        return False

    # Where the roles made an nvidia RuntimeClass, GPU pods use it (the testbed may refuse them without).
    handlers = [rc.metadata.name for rc in client.NodeV1Api(v1.api_client).list_runtime_class().items
                if rc.handler == "nvidia"]
    start(tb, policy_path)
    ok = True
    try:
        v1.create_namespace({"metadata": {"name": ns}})
        for i in range(2):
            v1.create_namespaced_pod(ns, {
                "metadata": {"name": f"train-{i}"},
                "spec": {"nodeSelector": {testbed.POOL_LABEL: pool},
                         **({"runtimeClassName": handlers[0]} if handlers else {}),
                         "tolerations": [{"key": "workload", "operator": "Exists"}],
                         "terminationGracePeriodSeconds": 0,
                         "containers": [{"name": "train", "image": "registry.example/rehearsal/train:1",
                                         "resources": {"limits": {"nvidia.com/gpu": "8"}}}]}})
        ok = wait(autoscaled, 120)
        print(f"cluster-autoscaler: {'added ' + ', '.join(autoscaled()) if ok else 'added no node'} to {pool}"
              f" ({time.monotonic() - t0:.0f}s)")
        if ok:
            wait(lambda: any(p.status.phase == "Running" and p.spec.node_name in autoscaled()
                             for p in v1.list_namespaced_pod(ns).items), 30)
    finally:
        v1.delete_namespace(ns, grace_period_seconds=0)
    if ok:
        ok = wait(lambda: not autoscaled(), 180)
        print(f"cluster-autoscaler: {pool} {'back to zero autoscaled nodes' if ok else 'still has ' + ', '.join(autoscaled())}"
              f" ({time.monotonic() - t0:.0f}s)")
        time.sleep(2)  # the runner polls each second: let it log the scale-down before its exit clean-up
    stop(tb)
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("command", choices=["start", "stop", "status", "run", "rehearse"])
    ap.add_argument("--policy", type=pathlib.Path, help="the role's cluster_autoscaler_policy_file")
    a = ap.parse_args(argv)
    tb = testbed.Testbed()
    policy = a.policy or state_dir(tb).parent / "cluster-autoscaler-policy.json"
    if a.command == "start":
        print(start(tb, policy))
    elif a.command == "stop":
        stop(tb)
    elif a.command == "rehearse":
        return rehearse(tb, policy)
    elif a.command == "status":
        print(json.dumps({"running": bool(running(tb)), "per_pool": per_pool(events(tb))}))
    else:
        return run(tb, policy)
    return 0


if __name__ == "__main__":
    sys.exit(main())
