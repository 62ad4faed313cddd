# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Print a short summary of the testbed: nodes per pool, GPUs and MIG devices advertised, workloads,
and the findings of playbooks/audit.yml when scripts/run.sh ran it (<testbed home>/audit.json)."""
from __future__ import annotations

import json
import sys

from kubernetes import client

import testbed


def main() -> int:
    tb = testbed.Testbed()
    if not tb.healthy():
        print("testbed: not running")
        return 1
    api = tb.api_client()
    print(f"\nTestbed cluster '{tb.name}' (kubeconfig {tb.kubeconfig})")
    print(f"{'pool':<20} {'nodes':>5} {'ready':>5} {'nvidia.com/gpu':>15}  MIG devices")
    for pool, p in sorted(tb.summary().items()):
        mig = ", ".join(f"{k.removeprefix('nvidia.com/mig-')}={v}" for k, v in sorted(p["mig"].items())) or "-"
        print(f"{pool:<20} {p['nodes']:>5} {p['ready']:>5} {p['nvidia.com/gpu']:>15}  {mig}")
    apps = client.AppsV1Api(api)
    ours = [d for d in apps.list_daemon_set_for_all_namespaces().items + apps.list_deployment_for_all_namespaces().items
            if d.metadata.namespace not in ("kube-system",)]
    if ours:
        print("\nDeployed:")
        for d in sorted(ours, key=lambda d: (d.metadata.namespace, d.metadata.name)):
            kind = "DaemonSet" if hasattr(d.status, "number_ready") else "Deployment"
            ready = d.status.number_ready if kind == "DaemonSet" else d.status.ready_replicas
            want = d.status.desired_number_scheduled if kind == "DaemonSet" else d.spec.replicas
            print(f"  {kind:<10} {d.metadata.namespace}/{d.metadata.name}: {ready or 0}/{want} ready")
    import cluster_autoscaler  # what the real autoscaler did in the rehearsal (scripts/run.sh)
    ca_events = cluster_autoscaler.events(tb)
    if ca_events:
        print("\nCluster Autoscaler 1.36.1 (kwok provider, the role's policy): nodes per pool")
        for pool, c in sorted(cluster_autoscaler.per_pool(ca_events).items()):
            left = f" (and {c['removed_at_exit']} deleted when it stopped)" if c.get("removed_at_exit") else ""
            print(f"  {pool:<20} added {c['added']}, removed {c['removed']}{left}")
    import keda_rehearsal  # replicas over time under the real KEDA operator (scripts/run.sh)
    keda = keda_rehearsal.timeline(tb)
    if keda:
        print(f"\nKEDA {keda['keda']} (real operator and metrics adapter, polling every {keda['poll_seconds']}s; "
              f"queue of {keda['spiked']} raised to {keda['spike']} and drained, {keda['seconds']}s): replicas")
        for name, series in sorted(keda["timeline"].items()):
            print(f"  {name:<30} {keda_rehearsal.format_timeline(series)}")
    audit = tb.home / "audit.json"
    if audit.exists():
        result = json.loads(audit.read_text())
        counts = ", ".join(f"{n} {sev}" for sev, n in result["counts"].items() if n) or "none"
        print(f"\nAudit (playbooks/audit.yml, read-only): {result['total']} finding(s): {counts}")
        for f in result["findings"]:
            print(f"  {f['severity']:<8} {f['id']}: {f['object']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
