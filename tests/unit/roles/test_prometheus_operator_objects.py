# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Prometheus Operator objects the collection writes, held against the upstream API types and
kube-prometheus-stack's selectors (docs/conformance.md#prometheus-operator).

Sources: prometheus-operator v0.93.0 pkg/apis/monitoring/v1/prometheusrule_types.go (PrometheusRuleSpec
{groups}, RuleGroup {name, interval, rules, ...}, Rule {record, alert, expr, for, keep_firing_for,
labels, annotations}); prometheus-community/helm-charts charts/kube-prometheus-stack
templates/prometheus/prometheus.yaml (ruleSelector / serviceMonitorSelector / podMonitorSelector
are matchLabels release: <release name> while *SelectorNilUsesHelmValues is true, the default).
The collection pins no kube-prometheus-stack version: the release-label rule is read at the
chart's stored commit, and it is the chart's long-standing default (unpinned).
"""
from __future__ import annotations

import importlib.util
import pathlib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
RULE_GROUP_FIELDS = {"name", "labels", "interval", "query_offset", "rules", "partial_response_strategy", "limit"}
RULE_FIELDS = {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def _defaults(role):
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def _alert_rules():
    spec = importlib.util.spec_from_file_location("_alert_rules", ROOT / "tests/unit/observability/test_alert_rules.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return yaml.safe_load(mod.render_rules())


def test_prometheusrule_spec_is_rule_groups_with_crd_fields():
    """rule-objects.yml.j2 puts the rule file under spec: PrometheusRuleSpec has exactly `groups`,
    and every group and rule key must be a field of RuleGroup / Rule (the CRD prunes the rest)."""
    template = (ROOT / "roles/observability/templates/rule-objects.yml.j2").read_text()
    assert "kind: PrometheusRule" in template and "spec: {{ rules | ansible.builtin.from_yaml" in template
    spec = _alert_rules()
    assert set(spec) == {"groups"}
    for group in spec["groups"]:
        assert set(group) <= RULE_GROUP_FIELDS, set(group) - RULE_GROUP_FIELDS
        for rule in group["rules"]:
            assert set(rule) <= RULE_FIELDS, set(rule) - RULE_FIELDS
            assert ("alert" in rule) != ("record" in rule)


def test_every_prometheus_operator_object_carries_the_release_label_kube_prometheus_stack_selects():
    """PrometheusRule (observability), ServiceMonitor (dcgm_exporter) and PodMonitor (vllm_service)
    carry the same release label by default, so one stock kube-prometheus-stack release named
    kube-prometheus-stack loads the rules AND scrapes the exporters the alerts and KEDA's queries
    read. Before issue 12 only the PrometheusRule had it."""
    release = _defaults("observability")["observability_rules_labels"]["release"]
    assert release == "kube-prometheus-stack"
    assert _defaults("dcgm_exporter")["dcgm_exporter_service_monitor_labels"].get("release") == release
    assert _defaults("vllm_service")["vllm_service_podmonitor_labels"].get("release") == release
