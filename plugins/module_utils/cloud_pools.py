# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cloud GPU node pools (GKE / EKS / AKS): normalisation, validation, the cloud module requests and
the Cluster Autoscaler policy for them, in one pass.

roles/cloud_node_pools reaches it through the gpuops.llm.cloud_node_pools_plan filter; its tasks send
exactly the requests this returns (google.cloud.gcp_container_node_pool,
community.aws.eks_nodegroup, azure.azcollection.azure_rm_aksagentpool) and publish the policy for
roles/cluster_autoscaler. The autoscaler's flag rules are autoscaler_policy's, label and taint key
rules k8s's: one home each.
"""
from __future__ import annotations

import copy
import re

from ansible_collections.gpuops.llm.plugins.module_utils import autoscaler_policy
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import TAINT_EFFECTS, label_key_error, label_value_error

PROVIDERS = ("gke", "eks", "aks")
PURPOSES = ("inference", "training", "cpu")
# GKE's API spells the taint effects in upper snake case; EKS's module takes the same values.
CLOUD_TAINT_EFFECTS = {"NoSchedule": "NO_SCHEDULE", "PreferNoSchedule": "PREFER_NO_SCHEDULE", "NoExecute": "NO_EXECUTE"}
# The label each cloud provider of the Cluster Autoscaler reads to recognise GPU nodes (GPULabel in
# cloudprovider/gce/gce_cloud_provider.go, aws/aws_cloud_provider.go, azure/azure_cloud_provider.go at
# cluster-autoscaler-1.36.1). GKE sets its own; on EKS the role adds it to GPU pools. Azure's is
# kubernetes.azure.com/accelerator (the provider's template labels GPU VM sizes with it, value
# "nvidia"); that AKS itself sets it on GPU nodes, and refuses user labels under that prefix, is from
# AKS's documentation, UNCONFIRMED here, so the role adds no label on AKS.
CA_GPU_LABELS = {"gke": "cloud.google.com/gke-accelerator", "eks": "k8s.amazonaws.com/accelerator",
                 "aks": "kubernetes.azure.com/accelerator"}
CA_GPU_LABEL_ADDED = ("eks",)
# Name rules of each cloud's pool API (the cloud rejects other names), from each cloud's API
# reference, not from shared/facts (UNCONFIRMED there).
NAME_RULES = {
    "gke": (re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$"),
            "lowercase letters, digits and '-', starting with a letter, at most 40 characters"),
    "eks": (re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"),
            "letters, digits, '-' and '_', starting with a letter or digit, at most 63 characters"),
    "aks": (re.compile(r"^[a-z][a-z0-9]{0,11}$"),
            "lowercase letters and digits, starting with a letter, at most 12 characters (set cloud_name)"),
}
AKS_MIG_PROFILES = ("MIG1g", "MIG2g", "MIG3g", "MIG4g", "MIG7g")
MACHINE_TYPE_HINTS = {"gke": "machine type (e.g. a2-highgpu-1g)", "eks": "EC2 instance type", "aks": "VM size"}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _deep_merge(base, extra):
    """``base`` with ``extra`` merged in, dicts recursively (Ansible's combine(recursive=true))."""
    out = copy.deepcopy(base)
    for key, value in (extra or {}).items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def normalize(pools, provider):
    """Every pool with its defaults filled in and its machine type resolved for ``provider``."""
    out = []
    for index, pool in enumerate(pools or []):
        pool = pool if isinstance(pool, dict) else {}
        machine = pool.get("machine_type", "")
        machine = machine.get(provider, "") if isinstance(machine, dict) else machine
        acc = pool.get("accelerator") or {}
        purpose = pool.get("purpose", "inference")
        min_nodes = pool.get("min_nodes", 1 if purpose == "inference" else 0)
        name = pool.get("name", "")
        out.append({
            "index": index,
            "name": name,
            "cloud_name": pool.get("cloud_name") or name,
            "purpose": purpose,
            "machine_type": "" if machine is None else str(machine),
            "accelerator_type": acc.get("type", ""),
            "accelerator_count": acc.get("count", 1 if acc.get("type") else 0),
            "mig_profile": acc.get("mig_profile", ""),
            "min_nodes": min_nodes,
            "max_nodes": pool.get("max_nodes"),
            "initial_nodes": pool.get("initial_nodes", min_nodes),
            "autoscaling": pool.get("autoscaling", True),
            "taints": pool.get("taints", []),
            "labels": pool.get("labels", {}),
            "disk_size_gb": pool.get("disk_size_gb"),
            "spot": pool.get("spot", False),
            "ca_priority": pool.get("ca_priority", 10),
            "allow_scale_to_zero": pool.get("allow_scale_to_zero", False),
            "allow_untainted": pool.get("allow_untainted", False),
            "extra": pool.get("extra", {}),
        })
    return out


def input_errors(settings, pools):
    """Every problem at once, each naming the variable and field, before any cloud call."""
    provider = settings.get("provider")
    errors = []
    if provider not in PROVIDERS:
        errors.append('cloud_node_pools_provider "%s" is not supported; valid: %s' % (provider, ", ".join(PROVIDERS)))
    if not str(settings.get("cluster") or "").strip():
        errors.append("cloud_node_pools_cluster is required: the name of the existing GKE/EKS/AKS cluster")
    required = {"gke": ("project", "location"), "eks": ("region", "node_role"), "aks": ("resource_group",)}
    for field in required.get(provider, ()):
        if not str((settings.get(provider) or {}).get(field) or ""):
            errors.append("cloud_node_pools_%s.%s is required for provider %s%s"
                          % (provider, field, provider, " (the ARN of the node IAM role)" if field == "node_role" else ""))
    if provider == "eks" and not (settings.get("eks") or {}).get("subnets"):
        errors.append("cloud_node_pools_eks.subnets is required for provider eks: at least one subnet id")
    if not pools and settings.get("state") == "present":
        errors.append("cloud_node_pools_pools is empty: give at least one pool")
    names = [p["cloud_name"] for p in pools]
    if len(set(names)) != len(names):
        errors.append("cloud_node_pools_pools names repeat (%s); give each pool once" % ", ".join(map(str, names)))
    for pool in pools:
        errors.extend(_pool_errors(pool, provider))
    errors.extend(autoscaler_policy.flag_errors(settings.get("ca") or {}, lambda f: "cloud_node_pools_ca." + f))
    return errors


def _pool_errors(p, provider):
    w = "cloud_node_pools_pools[%d]%s" % (p["index"], " (%s)" % p["name"] if p["name"] else "")
    errors = []
    if not p["name"]:
        errors.append(w + ".name is required")
    elif provider in NAME_RULES and not NAME_RULES[provider][0].match(str(p["cloud_name"])):
        errors.append('%s.%s "%s" is not a valid %s pool name; valid: %s'
                      % (w, "cloud_name" if p["cloud_name"] != p["name"] else "name", p["cloud_name"], provider,
                         NAME_RULES[provider][1]))
    if p["purpose"] not in PURPOSES:
        errors.append('%s.purpose "%s" is not valid; valid: %s' % (w, p["purpose"], ", ".join(PURPOSES)))
    if not p["machine_type"]:
        errors.append("%s.machine_type is required for provider %s: the %s, as a string or as machine_type: {%s: ...}"
                      % (w, provider, MACHINE_TYPE_HINTS.get(provider, "machine type"), provider))
    low, high, initial = p["min_nodes"], p["max_nodes"], p["initial_nodes"]
    if not _is_int(high):
        errors.append(w + ".max_nodes is required: a whole number, 1 or more")
    if not _is_int(low) or not _is_int(initial):
        errors.append(w + ".min_nodes and initial_nodes must be whole numbers")
    if _is_int(low) and _is_int(high) and _is_int(initial):
        if low < 0:
            errors.append("%s.min_nodes is %d; valid: 0 or more" % (w, low))
        if high < 1:
            errors.append("%s.max_nodes is %d; valid: 1 or more" % (w, high))
        if low > high:
            errors.append("%s.min_nodes (%d) is greater than max_nodes (%d); valid: min_nodes <= max_nodes" % (w, low, high))
        if initial < low or initial > high:
            errors.append("%s.initial_nodes (%d) is outside min_nodes..max_nodes (%d..%d)" % (w, initial, low, high))
        if p["purpose"] == "inference" and low == 0 and not p["allow_scale_to_zero"]:
            errors.append(w + ".min_nodes is 0 for an inference pool: the first request after idle would wait for a"
                          " GPU node to boot; keep min_nodes 1, use purpose training, or set allow_scale_to_zero: true")
    if p["purpose"] == "cpu" and p["accelerator_type"]:
        errors.append(w + ".accelerator is set on a cpu pool; give GPU pools purpose inference or training")
    if p["purpose"] != "cpu":
        if provider == "gke" and not p["accelerator_type"]:
            errors.append(w + ".accelerator.type is required on gke for a GPU pool, e.g. nvidia-tesla-a100")
        count = p["accelerator_count"]
        if p["accelerator_type"] and (not _is_int(count) or count < 1):
            errors.append("%s.accelerator.count is %s; valid: 1 or more GPUs per node" % (w, count))
        isolating = [t for t in p["taints"] if isinstance(t, dict) and t.get("effect") in ("NoSchedule", "NoExecute")]
        if not isolating and not p["allow_untainted"]:
            errors.append("%s is a GPU pool without a NoSchedule taint: other workloads would land on its GPU nodes"
                          " (the seed: always isolate with taints); add e.g. {key: workload, value: llm-%s,"
                          " effect: NoSchedule} or set allow_untainted: true" % (w, p["purpose"]))
    if p["mig_profile"] and (provider != "aks" or p["mig_profile"] not in AKS_MIG_PROFILES):
        errors.append('%s.accelerator.mig_profile "%s" is only for aks (gpu_instance_profile); valid there: %s.'
                      " Elsewhere partition with gpuops.llm MIG roles" % (w, p["mig_profile"], ", ".join(AKS_MIG_PROFILES)))
    for i, taint in enumerate(p["taints"] if isinstance(p["taints"], list) else []):
        if not isinstance(taint, dict) or not taint.get("key"):
            errors.append("%s.taints[%d] needs a key, an optional value and an effect" % (w, i))
        else:
            why = label_key_error(taint["key"])
            if why:
                errors.append('%s.taints[%d].key "%s" is not a valid taint key: it %s' % (w, i, taint["key"], why))
        if isinstance(taint, dict) and taint.get("effect", "") not in TAINT_EFFECTS:
            errors.append('%s.taints[%d].effect "%s" is not valid; valid: %s'
                          % (w, i, taint.get("effect", ""), ", ".join(TAINT_EFFECTS)))
    for key, value in (p["labels"] if isinstance(p["labels"], dict) else {}).items():
        why = label_key_error(key)
        if why:
            errors.append('%s.labels key "%s" is not a valid label key: it %s' % (w, key, why))
        why = label_value_error(_text(value))
        if why:
            errors.append('%s.labels value "%s" of %s is not a valid label value: it %s' % (w, value, key, why))
    if not _is_int(p["ca_priority"]):
        errors.append(w + ".ca_priority must be a whole number")
    return errors


def _text(value):
    """A label or taint value as the API receives it (booleans as Ansible prints them)."""
    return "" if value is None else str(value)


def _is_gpu(p):
    return p["purpose"] != "cpu" and bool(p["accelerator_type"])


def requests(settings, pools):
    """The arguments of each pool's cloud module call, keyed exactly as the module's options."""
    provider, state, cluster = settings["provider"], settings["state"], settings["cluster"]
    out = []
    for p in pools:
        labels = dict(p["labels"])
        if _is_gpu(p) and settings.get("add_ca_gpu_label") and provider in CA_GPU_LABEL_ADDED:
            labels[CA_GPU_LABELS[provider]] = p["accelerator_type"]
        disk = p["disk_size_gb"]
        has_disk = disk is not None and str(disk) != ""
        if provider == "gke":
            g = settings["gke"]
            config = {"machine_type": p["machine_type"], "labels": labels, "oauth_scopes": g.get("oauth_scopes"),
                      "preemptible": bool(p["spot"]),
                      "taints": [{"key": t["key"], "value": _text(t.get("value", "")),
                                  "effect": CLOUD_TAINT_EFFECTS[t["effect"]]} for t in p["taints"]]}
            if _is_gpu(p):
                config["accelerators"] = [{"accelerator_type": p["accelerator_type"],
                                           "accelerator_count": int(p["accelerator_count"])}]
            if has_disk:
                config["disk_size_gb"] = int(disk)
            request = {"name": p["cloud_name"], "cluster": {"name": cluster}, "location": g.get("location"),
                       "project": g.get("project"), "auth_kind": g.get("auth_kind"),
                       "initial_node_count": int(p["initial_nodes"]),
                       "autoscaling": {"enabled": bool(p["autoscaling"]), "min_node_count": int(p["min_nodes"]),
                                       "max_node_count": int(p["max_nodes"])},
                       "config": config,
                       "management": {"auto_repair": bool(g.get("auto_repair")), "auto_upgrade": bool(g.get("auto_upgrade"))},
                       "state": state}
            if g.get("service_account_file"):
                request["service_account_file"] = g["service_account_file"]
        elif provider == "eks":
            a = settings["eks"]
            fixed = int(p["initial_nodes"])
            request = {"name": p["cloud_name"], "cluster_name": cluster, "region": a.get("region"),
                       "node_role": a.get("node_role"), "subnets": a.get("subnets"), "instance_types": [p["machine_type"]],
                       "ami_type": a.get("cpu_ami_type") if p["purpose"] == "cpu" else a.get("gpu_ami_type"),
                       "capacity_type": "SPOT" if p["spot"] else "ON_DEMAND",
                       "labels": labels,
                       "taints": [{"key": t["key"], "value": _text(t.get("value", "")),
                                   "effect": CLOUD_TAINT_EFFECTS[t["effect"]]} for t in p["taints"]],
                       "scaling_config": {"min_size": int(p["min_nodes"]) if p["autoscaling"] else fixed,
                                          "max_size": int(p["max_nodes"]) if p["autoscaling"] else max(fixed, 1),
                                          "desired_size": fixed},
                       "wait": bool(a.get("wait")), "state": state}
            if has_disk:
                request["disk_size"] = int(disk)
        else:
            z = settings["aks"]
            taints = ["%s%s:%s" % (t["key"], "=" + _text(t["value"]) if _text(t.get("value", "")) else "", t["effect"])
                      for t in p["taints"]]
            request = {"name": p["cloud_name"], "cluster_name": cluster, "resource_group": z.get("resource_group"),
                       "vm_size": p["machine_type"], "count": int(p["initial_nodes"]),
                       "enable_auto_scaling": bool(p["autoscaling"]), "node_labels": labels, "node_taints": taints,
                       "mode": z.get("mode"), "os_type": z.get("os_type"), "state": state}
            if p["autoscaling"]:
                request.update(min_count=int(p["min_nodes"]), max_count=int(p["max_nodes"]))
            if p["mig_profile"]:
                request["gpu_instance_profile"] = p["mig_profile"]
            if p["spot"]:
                request.update(scale_set_priority="Spot", scale_set_eviction_policy="Delete")
            if has_disk:
                request["os_disk_size_gb"] = int(disk)
        out.append(_deep_merge(request, p["extra"]))
    return out


def ca_policy(settings, pools):
    """Cluster Autoscaler policy for these pools: flags, args, chart values, priority ConfigMap."""
    ca, provider = settings["ca"], settings["provider"]
    flags = {
        "scale-down-utilization-threshold": autoscaler_policy.flag_value(ca["scale_down_utilization_threshold"]),
        "scale-down-gpu-utilization-threshold": autoscaler_policy.flag_value(ca["scale_down_gpu_utilization_threshold"]),
        "scale-down-unneeded-time": autoscaler_policy.flag_value(ca["scale_down_unneeded_time"]),
        "scale-down-delay-after-add": autoscaler_policy.flag_value(ca["scale_down_delay_after_add"]),
        "skip-nodes-with-local-storage": autoscaler_policy.flag_value(bool(ca["skip_nodes_with_local_storage"])),
        "skip-nodes-with-system-pods": autoscaler_policy.flag_value(bool(ca["skip_nodes_with_system_pods"])),
        "balance-similar-node-groups": autoscaler_policy.flag_value(bool(ca["balance_similar_node_groups"])),
        "expander": ca["expander"],
    }
    flags.update({k: autoscaler_policy.flag_value(v) for k, v in (ca.get("extra_args") or {}).items()})
    # --gpu-total=<type>:<min>:<max> GPUs in the cluster per accelerator type (the flag only works on GKE).
    gpu_total = []
    if provider == "gke":
        for gpu_type in dict.fromkeys(p["accelerator_type"] for p in pools if p["accelerator_type"]):
            same = [p for p in pools if p["accelerator_type"] == gpu_type]
            gpu_total.append("%s:%d:%d" % (gpu_type, sum(int(p["min_nodes"]) * int(p["accelerator_count"]) for p in same),
                                           sum(int(p["max_nodes"]) * int(p["accelerator_count"]) for p in same)))
    args = ["--%s=%s" % (k, flags[k]) for k in sorted(flags)] + ["--gpu-total=" + g for g in gpu_total]
    # Priority expander: higher wins; the clouds' node group names contain the pool's cloud name.
    table = {}
    for p in pools:
        table.setdefault(int(p["ca_priority"]), []).append(".*%s.*" % p["cloud_name"])
    table.setdefault(0, [".*"])
    priorities = autoscaler_policy.priorities_yaml(table)
    configmap = {"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": {"name": "cluster-autoscaler-priority-expander", "namespace": ca["namespace"],
                              "labels": {"app.kubernetes.io/managed-by": "gpuops.llm"}},
                 "data": {"priorities": priorities}}
    return {"args": args, "flags": flags, "gpu_total": gpu_total, "gpu_label": CA_GPU_LABELS.get(provider, ""),
            "priority_configmap": configmap, "helm_values": {"extraArgs": flags, "expanderPriorities": priorities}}


def plan(settings):
    """{"errors", "pools", "requests", "cluster_autoscaler"}; requests and policy only when valid."""
    pools = normalize(settings.get("pools"), settings.get("provider"))
    errors = input_errors(settings, pools)
    if errors:
        return {"errors": errors, "pools": pools, "requests": None, "cluster_autoscaler": None}
    return {"errors": [], "pools": pools, "requests": requests(settings, pools),
            "cluster_autoscaler": ca_policy(settings, pools)}
