"""site.yml end to end on the testbed: converge, then a rerun with no change and no write call,
and an audit of the result that finds nothing (issue #7: a clean deployment gives no findings)."""
from __future__ import annotations

import json

import pytest
import yaml
from kubernetes import client

from conftest import ROOT, run_playbook, wait_for

pytestmark = pytest.mark.integration

SITE = ROOT / "playbooks" / "site.yml"
AUDIT = ROOT / "playbooks" / "audit.yml"


@pytest.fixture(scope="module")
def site(testbed):
    rc, out, recap = run_playbook(testbed, SITE, timeout=1200)
    assert rc == 0, out[-5000:]
    yield recap
    # Leave the cluster as week 1 left it: the vLLM services hold GPUs and MIG slices that other
    # tests schedule onto.
    v1 = client.CoreV1Api(testbed.api)
    v1.delete_namespace("llm-serving")
    wait_for(lambda: not [n for n in v1.list_namespace().items if n.metadata.name == "llm-serving"],
             timeout=120, what="namespace llm-serving gone")


def test_site_deploys_every_week(testbed, site):
    apps, co = client.AppsV1Api(testbed.api), client.CustomObjectsApi(testbed.api)
    v1 = client.CoreV1Api(testbed.api)
    # Week 2: the fit-checked vLLM services, scheduled by the real scheduler on the right GPUs.
    dep = apps.read_namespaced_deployment("llama31-8b", "llm-serving")
    c = dep.spec.template.spec.containers[0]
    assert "--max-model-len" in c.args and c.resources.limits["nvidia.com/gpu"] == "1"
    assert dep.spec.template.spec.containers[0].startup_probe is not None
    mig = apps.read_namespaced_deployment("llama31-8b-mig", "llm-serving")
    assert mig.spec.template.spec.containers[0].resources.limits["nvidia.com/mig-3g.40gb"] == "1"

    def placed():
        pods = v1.list_namespaced_pod("llm-serving").items
        running = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return running if len(running) >= 3 else None

    for p in wait_for(placed, timeout=120, what="3 vLLM pods Running"):
        node = v1.read_node(p.spec.node_name)
        assert node.metadata.labels.get("workload-class") == "inference"
    # Week 3: a ScaledObject per model, queue trigger on the colon-spelled vLLM metric.
    so = co.get_namespaced_custom_object("keda.sh", "v1alpha1", "llm-serving", "scaledobjects", "llama31-8b")
    queries = [t["metadata"]["query"] for t in so["spec"]["triggers"]]
    assert any("vllm:num_requests_waiting" in q for q in queries)
    so_mig = co.get_namespaced_custom_object("keda.sh", "v1alpha1", "llm-serving", "scaledobjects", "llama31-8b-mig")
    assert any("DCGM_FI_PROF_GR_ENGINE_ACTIVE" in t["metadata"]["query"] for t in so_mig["spec"]["triggers"])
    # Week 2's autoscaler (clusterapi): each node group's MachineDeployment carries the min/max
    # annotations the provider sizes it by (it ignores --nodes).
    group_vars = yaml.safe_load((ROOT / "inventories" / "testbed" / "group_vars" / "k8s_api.yml").read_text())
    capi = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-"
    for g in group_vars["cluster_autoscaler_node_groups"]:
        md = co.get_namespaced_custom_object("cluster.x-k8s.io", "v1beta1", "default", "machinedeployments", g["name"])
        ann = md["metadata"].get("annotations") or {}
        assert (ann.get(capi + "min-size"), ann.get(capi + "max-size")) == (str(g["min_nodes"]), str(g["max_nodes"])), g
    # Week 4: the alert rules (a ConfigMap: the testbed has no Prometheus Operator).
    cms = v1.list_namespaced_config_map("monitoring").items
    assert any("GPUTemperatureHigh" in "".join((cm.data or {}).values()) for cm in cms)


def test_site_rerun_changes_nothing_and_writes_nothing(testbed, site):
    marker = testbed.audit_marker()
    rc, out, recap = run_playbook(testbed, SITE, timeout=1200)
    assert rc == 0, out[-5000:]
    assert {h: r["changed"] for h, r in recap.items() if r["changed"]} == {}
    assert testbed.audit_writes(marker) == []


def test_clean_site_gives_no_audit_findings(testbed, site, tmp_path):
    # Every check runs (none skipped), on the whole cluster, with the served models' configs taken
    # from the inventory by audit.yml; the audit itself writes nothing to the cluster.
    marker = testbed.audit_marker()
    out_json = tmp_path / "audit.json"
    rc, out, _recap = run_playbook(testbed, AUDIT, "-e", "cluster_audit_json_path=%s" % out_json,
                                   "-e", "cluster_audit_fail_on=info", timeout=300)
    result = json.loads(out_json.read_text())
    assert rc == 0 and result["findings"] == [], json.dumps(result["findings"], indent=1)[:5000] + out[-2000:]
    assert result["counts"] == {"critical": 0, "high": 0, "medium": 0, "low": 0, "info": 0}
    assert result["unreadable"] == {}
    assert testbed.audit_writes(marker) == []
