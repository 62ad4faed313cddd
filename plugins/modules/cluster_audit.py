#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: cluster_audit
short_description: Audit a GPU Kubernetes cluster for LLM inference and report findings with evidence and fixes
version_added: 0.1.0
description:
  - Reads a live cluster with a handful of LIST requests (API discovery, then Nodes, Pods, Deployments,
    HorizontalPodAutoscalers, KEDA ScaledObjects, DaemonSets, PrometheusRules and ConfigMaps, each once,
    or once per namespace for workload kinds when O(namespaces) is set) and never writes to it.
  - Reports findings with a severity (critical, high, medium, low, info), the objects and numbers that
    prove them, and the fix. The checks cover the five most expensive mistakes of GPU inference clusters
    (mixed CPU/GPU pools, 16-bit models where a 4-bit AWQ variant fits, CPU HPAs on GPU Deployments,
    KV-cache settings, no scale-to-zero off-peak), plus GPU containers without GPU limits, MIG-INVALID
    GPU Feature Discovery labels, nodes that advertise no GPUs while GFD counts some, a missing DCGM
    exporter or alert rules, alert rules on metric names vLLM does not export, and vLLM containers
    without a startupProbe. C(docs/audit.md) lists every check.
  - Model sizing uses the same estimator as M(gpuops.llm.model_fit); the cluster holds no model configs, so
    they come from O(model_configs).
  - O(fail_on) turns it into a CI gate. O(report_path) writes a Markdown report, only when it changes.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.k8s_auth
attributes:
  check_mode:
    description: Can run in check_mode and return changed status prediction without modifying target.
    support: full
    details: The audit reads the cluster in check mode too; only the report file is not written.
  diff_mode:
    description: Will return details on what has changed (or possibly needs changing in check_mode), when in diff mode.
    support: full
    details: The diff holds the report before and after.
  idempotent:
    description: When run twice in a row outside check mode, with the same arguments, the second invocation indicates no change.
    support: full
    details: The cluster is never changed; the report is deterministic and rewritten only when the findings change.
options:
  namespaces:
    description:
      - Namespaces whose workloads (Pods, Deployments, HPAs, ScaledObjects) are audited. Empty means all.
      - Nodes, DaemonSets and alert rules are cluster-wide and always read everywhere. Pods are read
        cluster-wide when allowed, because idle nodes and exporter coverage depend on every pod.
    type: list
    elements: str
    default: []
  model_configs:
    description:
      - Model id (the vLLM C(--model) value, its last path part, or a C(--served-model-name)) to the model's
        Hugging Face C(config.json) as a dict, as O(gpuops.llm.model_fit#module:model_config) takes it.
      - Without a config a 16-bit model is reported as C(fp16-unsized) and its KV cache is not sized.
    type: dict
    default: {}
  offpeak_pools:
    description:
      - Node pools whose traffic drops off-peak, so their GPU Deployments must be able to scale to zero and
        their nodes must not sit idle. Pools whose nodes carry C(workload-class=training) count too.
    type: list
    elements: str
    default: []
  pool_label:
    description:
      - Node label whose value names the node's pool. Without it the pool comes from
        C(cloud.google.com/gke-nodepool), C(eks.amazonaws.com/nodegroup), C(kubernetes.azure.com/agentpool),
        C(karpenter.sh/nodepool), then the C(gpuops.llm/node-pool.managed) annotation of M(gpuops.llm.node_pool).
    type: str
  skip_checks:
    description:
      - Check ids to leave out of the result (accepted findings), for example V(idle-gpu-pool).
    type: list
    elements: str
    default: []
  fail_on:
    description:
      - Fail the task when a finding of this severity or worse exists; the findings stay in the result.
      - V(never) only reports.
    type: str
    choices: [critical, high, medium, low, info, never]
    default: never
  report_path:
    description:
      - Write the Markdown report to this file on the host that runs the module (the controller for a
        local connection). It is written only when its content differs, and never in check mode.
    type: path
notes:
  - The API client sends the user agent C(gpuops.llm/cluster_audit) so that audit logs can show that it
    wrote nothing.
  - Needs RBAC C(list) on the kinds above; a kind that cannot be read is named in RV(unreadable) and its checks
    are skipped.
seealso:
  - module: gpuops.llm.model_fit
  - module: gpuops.llm.node_pool
  - module: gpuops.llm.model_autoscaler
"""

EXAMPLES = r"""
- name: Audit the whole cluster and keep a report
  gpuops.llm.cluster_audit:
    offpeak_pools: [llm-batch]
    report_path: /tmp/gpu-audit.md
    model_configs:
      meta-llama/Meta-Llama-3-70B-Instruct:
        hidden_size: 8192
        num_hidden_layers: 80
        num_attention_heads: 64
        num_key_value_heads: 8
        intermediate_size: 28672
        vocab_size: 128256
        tie_word_embeddings: false
        torch_dtype: bfloat16
        max_position_embeddings: 8192
  register: audit

- name: Show the counts
  ansible.builtin.debug:
    var: audit.counts

- name: CI gate - fail on high or critical findings in the serving namespace
  gpuops.llm.cluster_audit:
    namespaces: [ai-serving]
    fail_on: high
    skip_checks: [idle-gpu-pool]
"""

RETURN = r"""
findings:
  description: Findings, worst first, then by check id and object.
  returned: success, and on failure caused by O(fail_on)
  type: list
  elements: dict
  contains:
    id:
      description: The check id (see C(docs/audit.md)).
      type: str
      sample: cpu-hpa-on-gpu-deployment
    severity:
      description: critical, high, medium, low or info.
      type: str
      sample: high
    title:
      description: What is wrong, in one line.
      type: str
      sample: CPU/memory autoscaling on a GPU Deployment
    object:
      description: The object the finding is about.
      type: str
      sample: Deployment ai-serving/llama3-70b
    evidence:
      description: Object names and numbers that prove the finding.
      type: dict
      sample: {"hpa": "llama3-70b", "metrics": ["cpu"], "gpu_resources": {"nvidia.com/gpu": "4"}}
    fix:
      description: What to change.
      type: str
  sample: []
counts:
  description: Number of findings per severity.
  returned: always
  type: dict
  sample: {"critical": 0, "high": 2, "medium": 3, "low": 0, "info": 0}
total:
  description: Number of findings.
  returned: always
  type: int
  sample: 5
failed_findings:
  description: Findings at or above O(fail_on).
  returned: always
  type: list
  elements: dict
  sample: []
unreadable:
  description: Kinds that could not be read (RBAC or not served), with the API error; their checks were skipped.
  returned: always
  type: dict
  sample: {}
api_calls:
  description: Every API request the audit sent, as C(VERB path); all are reads of collections.
  returned: always
  type: list
  elements: str
  sample: ["GET /apis", "GET /api/v1/nodes"]
write_calls:
  description: Write requests sent to the API server; always 0.
  returned: always
  type: int
  sample: 0
report_path:
  description: Where the report was (or in check mode would be) written.
  returned: when O(report_path) is set
  type: str
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule, missing_required_lib
from ansible.module_utils.common.text.converters import to_bytes, to_native

from ansible_collections.gpuops.llm.plugins.module_utils.audit import (
    CHECKS,
    FAIL_ON_CHOICES,
    AuditError,
    at_or_above,
    count_by_severity,
    read_snapshot,
    render_report,
    run_audit,
    validate_options,
)
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    AUTH_ARG_SPEC,
    AUTH_KEYS,
    HAS_KUBERNETES,
    KUBERNETES_IMPORT_ERROR,
    K8s,
    K8sError,
)

USER_AGENT = "gpuops.llm/cluster_audit"


def argument_spec():
    spec = dict(AUTH_ARG_SPEC)
    spec.update(
        namespaces=dict(type="list", elements="str", default=[]),
        model_configs=dict(type="dict", default={}),
        offpeak_pools=dict(type="list", elements="str", default=[]),
        pool_label=dict(type="str"),
        skip_checks=dict(type="list", elements="str", default=[]),
        fail_on=dict(type="str", choices=list(FAIL_ON_CHOICES), default="never"),
        report_path=dict(type="path"),
    )
    return spec


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except (IOError, OSError):
        return None


def write_report(module, path, text):
    """(changed, diff) for the report file; writes only when the content differs, never in check mode."""
    before = _read(path) if os.path.exists(path) else None
    if before == text:
        return False, None
    diff = {"before": before or "", "after": text, "before_header": path, "after_header": path}
    if not module.check_mode:
        directory = os.path.dirname(os.path.abspath(path))
        if not os.path.isdir(directory):
            module.fail_json(msg="report_path %r: directory %r does not exist" % (path, directory))
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".cluster_audit.")
        with os.fdopen(fd, "wb") as handle:
            handle.write(to_bytes(text))
        module.atomic_move(tmp, path)
    return True, diff


def main():
    module = AnsibleModule(argument_spec=argument_spec(), supports_check_mode=True)
    params = module.params
    try:
        validate_options(model_configs=params["model_configs"], offpeak_pools=params["offpeak_pools"],
                         namespaces=params["namespaces"], skip_checks=params["skip_checks"],
                         fail_on=params["fail_on"])
    except AuditError as exc:
        module.fail_json(msg="%s: %s" % (exc.field, exc), field=exc.field, valid_checks=sorted(CHECKS))
    if not HAS_KUBERNETES:
        module.fail_json(msg=missing_required_lib("kubernetes"), exception=KUBERNETES_IMPORT_ERROR)
    adapter = None
    try:
        adapter = K8s.from_params({k: params.get(k) for k in AUTH_KEYS})
        # A user agent of its own lets the API server's audit log prove the audit wrote nothing.
        adapter.api_client.user_agent = USER_AGENT
        data = read_snapshot(adapter, namespaces=params["namespaces"])
    except K8sError as exc:
        module.fail_json(msg=to_native(exc), api_error=exc.to_dict(),
                         api_calls=["%s %s" % c for c in (adapter.calls if adapter else [])])
    findings = run_audit(data, model_configs=params["model_configs"], offpeak_pools=params["offpeak_pools"],
                         pool_label=params["pool_label"], namespaces=params["namespaces"],
                         skip_checks=params["skip_checks"])
    counts = count_by_severity(findings)
    result = {
        "changed": False,
        "findings": findings,
        "counts": counts,
        "total": len(findings),
        "failed_findings": at_or_above(findings, params["fail_on"]),
        "unreadable": data["unreadable"],
        "api_calls": ["%s %s" % c for c in adapter.calls],
        "write_calls": adapter.write_count,
    }
    if params["report_path"]:
        text = render_report(findings, counts, scope=params["namespaces"], unreadable=data["unreadable"])
        try:
            changed, diff = write_report(module, params["report_path"], text)
        except (IOError, OSError) as exc:
            module.fail_json(msg="report_path %r cannot be written: %s" % (params["report_path"], to_native(exc)),
                             **result)
        result["changed"] = changed
        result["report_path"] = params["report_path"]
        if diff and module._diff:
            result["diff"] = diff
    for key, message in sorted(data["unreadable"].items()):
        module.warn("could not read %s, its checks were skipped: %s" % (key, message))
    if result["failed_findings"]:
        worst = result["failed_findings"][0]
        module.fail_json(msg="%d finding(s) at or above fail_on=%s, worst: [%s] %s: %s"
                         % (len(result["failed_findings"]), params["fail_on"], worst["severity"], worst["id"],
                            worst["object"]), **result)
    module.exit_json(**result)


if __name__ == "__main__":
    main()
