# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Cluster Autoscaler policy: the rules for its flags and node groups, and the command line.

One home for what roles/cluster_autoscaler and roles/cloud_node_pools both write into the
autoscaler's flags (thresholds, durations, expanders), and for the role's whole plan: provider,
flags, --nodes / --node-group-auto-discovery, the priority expander's table, Cluster API
annotations. The roles reach it through the gpuops.llm.cluster_autoscaler_policy and
gpuops.llm.autoscaler_flag_errors filters and only print what it returns.

Upstream, at cluster-autoscaler-1.36.1 (docs/conformance.md#cluster-autoscaler):
- config/flags/flags.go: scale-down-unneeded-time and scale-down-delay-after-add are flag.Duration
  (time.ParseDuration syntax);
- cloudprovider/clusterapi/README.md and clusterapi_unstructured.go ID(): Cluster API node groups
  are discovered (--node-group-auto-discovery=clusterapi:...), sized by their min/max-size
  annotations, and identified as <Kind>/<namespace>/<name>;
- cloudprovider/aws/README.md "Auto-discovery setup": the ASG tags EKS managed node groups carry;
- expander/priority/readme.md: the table's regexes match node-group ids.
"""
from __future__ import annotations

import re

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import dns_label_error, image_tag_error

# --expander values (a comma-separated chain): expander/expander.go *ExpanderName at
# cluster-autoscaler-1.36.1 (read there; shared/facts does not list them).
EXPANDERS = ("random", "most-pods", "least-waste", "least-nodes", "price", "priority", "grpc")
# time.ParseDuration: an unsigned "0", or decimal numbers each with a unit (ns, us/µs, ms, s, m, h).
# A sign is valid Go but a negative delay or unneeded time is not a policy, so it is refused here.
_DURATION = re.compile(r"^(0|(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|\u00b5s|\u03bcs|ms|s|m|h))+)$")
THRESHOLD_FLAGS = ("scale_down_utilization_threshold", "scale_down_gpu_utilization_threshold")
DURATION_FLAGS = ("scale_down_unneeded_time", "scale_down_delay_after_add")
# cloud_node_pools' providers and the autoscaler's --cloud-provider names.
PROVIDER_OF_CLOUD = {"gke": "gce", "eks": "aws", "aks": "azure"}
# cloudprovider/clusterapi README.md "Enabling Autoscaling".
CAPI_MIN_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-min-size"
CAPI_MAX_ANNOTATION = "cluster.x-k8s.io/cluster-api-autoscaler-node-group-max-size"
_FLAG_NAME = re.compile(r"^[a-z0-9][a-z0-9-]*$")
_GROUP_KEYS = ("name", "min_nodes", "max_nodes", "priority")


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def flag_value(value):
    """A flag value as the command line spells it (Go's flag package reads true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def duration_error(value):
    """None if ``value`` is a Go duration the autoscaler's flags accept, else why not."""
    if _is_int(value) or not isinstance(value, str) or not _DURATION.match(value):
        return "is not a duration; valid: e.g. 30s, 5m, 1h30m (Go's time.ParseDuration, no sign)"
    return None


def expander_errors(expander, name):
    """Problems with an --expander chain such as ``priority,least-waste``, each naming ``name``."""
    if not isinstance(expander, str) or not expander.strip():
        return ['%s "%s" is empty; valid (comma-separated chain): %s' % (name, expander, ", ".join(EXPANDERS))]
    return ['%s "%s" has unknown expander "%s"; valid (comma-separated chain): %s'
            % (name, expander, part.strip(), ", ".join(EXPANDERS))
            for part in expander.split(",") if part.strip() not in EXPANDERS]


def flag_errors(settings, name):
    """Problems with the scale-down flags both roles set: ``settings`` has THRESHOLD_FLAGS,
    DURATION_FLAGS and ``expander``; ``name(field)`` is how the user spells the field."""
    errors = []
    for field in THRESHOLD_FLAGS:
        value = settings.get(field)
        if not _is_number(value) or not 0 <= value <= 1:
            errors.append('%s (%s) must be a number between 0 and 1, e.g. 0.3 for "less than 30 %% requested"'
                          % (name(field), "missing" if value is None else value))
    for field in DURATION_FLAGS:
        value = settings.get(field)
        why = duration_error(value)
        if why:
            errors.append('%s "%s" %s' % (name(field), "" if value is None else value, why))
    errors.extend(expander_errors(settings.get("expander"), name("expander")))
    return errors


def provider(settings):
    """--cloud-provider: the role's variable, else the one of the cloud cloud_node_pools ran for."""
    explicit = settings.get("cloud_provider")
    if explicit:
        return explicit
    cloud = cloud_policy(settings)
    return PROVIDER_OF_CLOUD.get((settings.get("cloud_node_pools_result") or {}).get("provider"), "") if cloud else ""


def cloud_policy(settings):
    """The policy cloud_node_pools computed in this play, when the role may use it, else {}."""
    result = settings.get("cloud_node_pools_result") or {}
    if settings.get("use_cloud_node_pools_result") and isinstance(result, dict) and result.get("cluster_autoscaler"):
        return result["cluster_autoscaler"]
    return {}


def _var(field):
    return "cluster_autoscaler_" + field


def input_errors(settings):
    """Every problem with the cluster_autoscaler role's settings at once, each naming the variable.

    ``settings`` holds the role's variables without their ``cluster_autoscaler_`` prefix (types and
    choices argument_specs checks are not repeated), plus ``cloud_node_pools_result``."""
    errors = flag_errors(settings, _var)
    why = dns_label_error(settings.get("namespace"))
    if why:
        errors.append('cluster_autoscaler_namespace "%s" is not a DNS label: it %s' % (settings.get("namespace"), why))
    if settings.get("deploy"):
        if not provider(settings):
            errors.append("cluster_autoscaler_cloud_provider is required when cluster_autoscaler_deploy is true"
                          " (e.g. clusterapi, aws, gce, azure), unless cloud_node_pools ran first")
        why = image_tag_error(settings.get("version"))
        if why:
            errors.append('cluster_autoscaler_version "%s" is not a valid image tag: it %s; valid: e.g. v1.36.1'
                          % (settings.get("version"), why))
        replicas = settings.get("replicas")
        if not _is_int(replicas) or replicas < 1:
            errors.append("cluster_autoscaler_replicas (%s) must be 1 or more (leader election keeps one active)"
                          % replicas)
    errors.extend(_node_group_errors(settings.get("node_groups") or []))
    for key, regexes in (settings.get("expander_priorities") or {}).items():
        if not re.match(r"^[0-9]+$", str(key)):
            errors.append('cluster_autoscaler_expander_priorities key "%s" must be a non-negative integer priority' % key)
        if not isinstance(regexes, (list, tuple)) or not regexes:
            errors.append("cluster_autoscaler_expander_priorities[%s] must be a non-empty list of node group name regexes"
                          % key)
        else:
            for regex in regexes:
                try:
                    re.compile(str(regex))
                except re.error as exc:
                    errors.append('cluster_autoscaler_expander_priorities[%s] regex "%s" does not compile: %s'
                                  % (key, regex, exc))
    for key in settings.get("extra_args") or {}:
        if not _FLAG_NAME.match(str(key)):
            errors.append('cluster_autoscaler_extra_args key "%s" must be a flag name without the leading "--",'
                          " e.g. max-node-provision-time" % key)
    return errors


def _node_group_errors(groups):
    errors, seen = [], set()
    if not isinstance(groups, list):
        return ["cluster_autoscaler_node_groups must be a list of dicts with name, min_nodes and max_nodes"]
    for index, group in enumerate(groups):
        if not isinstance(group, dict):
            errors.append("cluster_autoscaler_node_groups[%d] must be a dict with name, min_nodes and max_nodes" % index)
            continue
        name = group.get("name")
        where = "cluster_autoscaler_node_groups[%d]%s" % (index, " (%s)" % name if name is not None else "")
        if not isinstance(name, str) or not name or re.search(r"[\s:]", name):
            errors.append('%s.name is required: the cloud node group (ASG, MIG, MachineDeployment) name,'
                          ' without spaces or ":"' % where)
        elif name in seen:
            errors.append('%s.name "%s" is listed twice' % (where, name))
        seen.add(name)
        for field in ("min_nodes", "max_nodes"):
            value = group.get(field)
            if not _is_int(value) or value < 0:
                errors.append("%s.%s (%s) must be an integer, 0 or more"
                              % (where, field, "missing" if value is None else value))
        low, high = group.get("min_nodes"), group.get("max_nodes")
        if _is_int(low) and _is_int(high) and low > high:
            errors.append("%s.min_nodes (%d) is greater than max_nodes (%d)" % (where, low, high))
        if _is_int(high) and high == 0:
            errors.append("%s.max_nodes is 0: the autoscaler could never add a node; drop the group instead" % where)
        if "priority" in group and not _is_int(group["priority"]):
            errors.append("%s.priority (%s) must be an integer (higher wins)" % (where, group["priority"]))
        for key in sorted(set(group) - set(_GROUP_KEYS)):
            errors.append('%s has unknown key "%s"; valid: %s' % (where, key, ", ".join(_GROUP_KEYS)))
    return errors


def priorities_yaml(table):
    """The priority expander's ``priorities`` text: priority -> list of regexes, as YAML, keys in
    ascending order (the expander reads them all and prefers the highest)."""
    lines = []
    for key in sorted(table):
        lines.append("%d:" % key)
        lines.extend("- %s" % _yaml_scalar(regex) for regex in table[key])
    return "\n".join(lines) + "\n"


def _yaml_scalar(text):
    # Single-quoted YAML keeps every regex character literal ('' is the only escape).
    return "'%s'" % str(text).replace("'", "''")


def policy(settings):
    """The autoscaler's plan: its arguments, flags, priority table and node-group ids.

    Flags come from the role's variables or, when cloud_node_pools ran in the play (and
    use_cloud_node_pools_result), from the policy it computed for its pools; extra_args win."""
    cloud = cloud_policy(settings)
    cloud_provider = provider(settings)
    flags = {
        "scale-down-unneeded-time": flag_value(settings["scale_down_unneeded_time"]),
        "scale-down-utilization-threshold": flag_value(settings["scale_down_utilization_threshold"]),
        "scale-down-gpu-utilization-threshold": flag_value(settings["scale_down_gpu_utilization_threshold"]),
        "scale-down-delay-after-add": flag_value(settings["scale_down_delay_after_add"]),
        "skip-nodes-with-local-storage": flag_value(bool(settings["skip_nodes_with_local_storage"])),
        "skip-nodes-with-system-pods": flag_value(bool(settings["skip_nodes_with_system_pods"])),
        "balance-similar-node-groups": flag_value(bool(settings["balance_similar_node_groups"])),
        "expander": settings["expander"],
    }
    flags.update({k: flag_value(v) for k, v in (cloud.get("flags") or {}).items()})
    flags.update({k: flag_value(v) for k, v in (settings.get("extra_args") or {}).items()})

    groups = settings.get("node_groups") or []
    capi = cloud_provider == "clusterapi"
    kind, namespace = settings.get("clusterapi_node_group_kind"), settings.get("clusterapi_namespace")
    ids, capi_objects, repeated = {}, [], []
    for group in groups:
        if capi:
            ids[group["name"]] = "%s/%s/%s" % (kind, namespace, group["name"])
            capi_objects.append({
                "apiVersion": "cluster.x-k8s.io/%s" % settings.get("clusterapi_api_version"),
                "kind": kind,
                "metadata": {"name": group["name"], "namespace": namespace,
                             "annotations": {CAPI_MIN_ANNOTATION: str(group["min_nodes"]),
                                             CAPI_MAX_ANNOTATION: str(group["max_nodes"])}}})
        else:
            ids[group["name"]] = group["name"]
            repeated.append("--nodes=%s:%s:%s" % (group["min_nodes"], group["max_nodes"], group["name"]))

    discovery = list(settings.get("node_group_auto_discovery") or [])
    if capi and not discovery:
        spec = ["namespace=" + namespace]
        if settings.get("clusterapi_cluster_name"):
            spec.append("clusterName=" + settings["clusterapi_cluster_name"])
        discovery.append("clusterapi:" + ",".join(spec))
    # aws with no node group named: without discovery the autoscaler would manage no node group.
    aws_cluster = settings.get("aws_cluster_name") or \
        ((settings.get("cloud_node_pools_result") or {}).get("cluster", "") if cloud else "")
    if cloud_provider == "aws" and not discovery and not groups and aws_cluster:
        discovery.append("asg:tag=k8s.io/cluster-autoscaler/enabled,k8s.io/cluster-autoscaler/" + aws_cluster)
    repeated.extend("--node-group-auto-discovery=" + d for d in discovery)
    repeated.extend("--gpu-total=" + t for t in cloud.get("gpu_total") or [])
    args = ["--cloud-provider=" + cloud_provider, "--namespace=" + settings["namespace"]]
    args.extend("--%s=%s" % (k, flags[k]) for k in sorted(flags))
    args.extend(repeated)

    # Priorities: the explicit table > cloud_node_pools' table > one anchored regex per node group.
    explicit = settings.get("expander_priorities") or {}
    if explicit:
        priorities = priorities_yaml({int(k): list(v) for k, v in explicit.items()})
    elif cloud.get("priority_configmap"):
        priorities = cloud["priority_configmap"]["data"]["priorities"]
    else:
        table = {}
        for group in groups:
            # Ids are DNS names (and "/"): "." is their only regex metacharacter.
            table.setdefault(int(group.get("priority", 0)), []).append("^%s$" % ids[group["name"]].replace(".", "\\."))
        table.setdefault(0, [".*"])
        priorities = priorities_yaml(table)
    return {
        "provider": cloud_provider,
        "args": args,
        "flags": flags,
        "priorities": priorities,
        "node_group_ids": ids,
        "clusterapi_node_groups": capi_objects,
        "uses_priority_expander": "priority" in [x.strip() for x in str(flags.get("expander", "")).split(",")],
        "from_cloud_node_pools": bool(cloud),
    }


def resolve(settings):
    """{"errors": [...], "provider": ..., "policy": {...} or None}: the policy only when there is no error."""
    errors = input_errors(settings)
    return {"errors": errors, "provider": provider(settings), "policy": None if errors else policy(settings)}
