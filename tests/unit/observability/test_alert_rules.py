# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Alert rules and dashboards of roles/observability, checked with Prometheus' own promtool.

The rule template is rendered with the role defaults through plain jinja2 with Ansible's
settings (trim_blocks, no trailing newline); the template uses core Jinja only, so this is the
text the role ships (the role was also run against an API server and the shipped rule file was
byte-identical). promtool comes from Debian's `prometheus` package: scripts/ensure-promtool.sh.
Without promtool these tests skip, unless the environment variable CI is set: then they fail.

Metric names come from shared/facts (llm-serving.md, gpu-automation-anchors.md):
vllm:num_requests_waiting (colon), vllm:kv_cache_usage_perc (replaced vllm:gpu_cache_usage_perc),
DCGM_FI_DEV_GPU_UTIL absent on MIG -> DCGM_FI_PROF_GR_ENGINE_ACTIVE. Not in the facts files (⚑):
kube-state-metrics' sanitised resource label values (nvidia_com_gpu, nvidia_com_mig_<profile>)
and GR_ENGINE_ACTIVE being a 0-1 ratio; both are taken from the upstream sources named in the
template's header.
"""
from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import jinja2
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLE = ROOT / "roles" / "observability"
TEMPLATE = "alert-rules.yml.j2"
PROMTOOL_TESTS = pathlib.Path(__file__).resolve().parent / "promtool"
RUNBOOKS = ROOT / "docs" / "runbooks"
DASHBOARDS = ROLE / "files" / "dashboards"

# The seed's five alerts plus the three the issue adds (issue 6, "Observability").
EXPECTED_ALERTS = {
    "GPUTemperatureHigh", "GPUFramebufferNearlyFull", "GPUNodeUnderutilized",
    "InferenceQueueBacklog", "KVCacheNearlyFull",
    "GPUXidError", "GPUPodPendingNoCapacity", "GPUMIGInstanceUnderutilized",
}
SEVERITIES = {"critical", "warning", "info"}


# --------------------------------------------------------------------------- helpers
def _promtool() -> str:
    exe = shutil.which("promtool")
    if exe:
        return exe
    pytest.fail("promtool not found on PATH; install it with scripts/ensure-promtool.sh (Debian package "
                "'prometheus'), as scripts/bootstrap.sh does")


@pytest.fixture(scope="module")
def promtool() -> str:
    return _promtool()


def role_defaults() -> dict:
    """defaults/main.yml, with any "{{ var }}" values resolved the way Ansible would."""
    data = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text(encoding="utf-8"))
    env = jinja2.Environment(undefined=jinja2.StrictUndefined)
    for _unused in range(5):
        unresolved = {k: v for k, v in data.items() if isinstance(v, str) and "{{" in v}
        if not unresolved:
            break
        for key, value in unresolved.items():
            data[key] = env.from_string(value).render(**data)
    return data


def render_rules(overrides: dict | None = None, trim_blocks: bool = True) -> str:
    variables = role_defaults()
    variables.update(overrides or {})
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(ROLE / "templates")),
        undefined=jinja2.StrictUndefined,
        trim_blocks=trim_blocks,          # Ansible's template lookup default
        keep_trailing_newline=False,
    )
    return env.get_template(TEMPLATE).render(**variables)


def all_rules(text: str) -> list[dict]:
    return [rule for group in yaml.safe_load(text)["groups"] for rule in group["rules"]]


def _seconds(duration: str) -> int:
    units = {"s": 1, "m": 60, "h": 3600}
    m = re.fullmatch(r"(\d+)([smh])", duration)
    assert m, f"unsupported eval_time {duration!r}"
    return int(m.group(1)) * units[m.group(2)]


def run(cmd: list[str], cwd: pathlib.Path) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=60, check=False)


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> pathlib.Path:
    out = tmp_path_factory.mktemp("rules")
    (out / "alert-rules.yml").write_text(render_rules(), encoding="utf-8")
    return out


# --------------------------------------------------------------------------- rule file
def test_rendered_rules_are_a_prometheus_rule_file_with_the_expected_alerts():
    data = yaml.safe_load(render_rules())
    assert set(data) == {"groups"}
    names = [rule["alert"] for rule in all_rules(render_rules())]
    assert len(names) == len(set(names)), "duplicate alert names"
    assert set(names) == EXPECTED_ALERTS


def test_rendering_does_not_depend_on_trim_blocks():
    # Ansible < 2.19 and >= 2.19 differ in template whitespace handling; the data must not.
    assert yaml.safe_load(render_rules(trim_blocks=True)) == yaml.safe_load(render_rules(trim_blocks=False))


def test_promtool_check_rules_accepts_the_defaults(promtool, rendered):
    res = run([promtool, "check", "rules", "alert-rules.yml"], rendered)
    assert res.returncode == 0, res.stdout
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in res.stdout


def test_promtool_check_rules_accepts_selectors_and_extra_labels(promtool, tmp_path):
    text = render_rules({
        "observability_dcgm_selector": 'job="dcgm-exporter"',
        "observability_vllm_selector": 'namespace=~"llm|serving"',
        "observability_kube_state_metrics_selector": 'job="kube-state-metrics"',
        "observability_alert_extra_labels": {"team": "ml-platform", "cluster": "prod-1"},
    })
    (tmp_path / "alert-rules.yml").write_text(text, encoding="utf-8")
    res = run([promtool, "check", "rules", "alert-rules.yml"], tmp_path)
    assert res.returncode == 0, res.stdout
    for rule in all_rules(text):
        assert rule["labels"]["team"] == "ml-platform"
        assert rule["labels"]["cluster"] == "prod-1"


def test_every_alert_has_severity_summary_description_and_runbook():
    base = role_defaults()["observability_runbook_base_url"].rstrip("/")
    for rule in all_rules(render_rules()):
        name = rule["alert"]
        assert rule["labels"]["severity"] in SEVERITIES, name
        for key in ("summary", "description", "runbook_url"):
            assert rule["annotations"].get(key), f"{name} lacks {key}"
        assert rule["annotations"]["runbook_url"] == f"{base}/{name}.md"


@pytest.mark.parametrize("alert", sorted(EXPECTED_ALERTS))
def test_runbook_exists_and_says_what_it_means_how_to_confirm_and_what_to_do(alert):
    path = RUNBOOKS / f"{alert}.md"
    assert path.is_file(), f"missing runbook {path}"
    text = path.read_text(encoding="utf-8").lower()
    headings = [line for line in text.splitlines() if line.startswith("#")]
    for topic in ("what it means", "how to confirm", "what to do"):
        assert any(topic in h for h in headings), f"{path.name}: no '{topic}' section"
    assert "```" in text, f"{path.name}: no commands or queries to confirm with"


def test_metric_names_follow_the_facts():
    exprs = "\n".join(rule["expr"] for rule in all_rules(render_rules()))
    for name in ("vllm:num_requests_waiting", "vllm:kv_cache_usage_perc",
                 "DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_EXP_XID_ERRORS_COUNT",
                 "kube_pod_status_phase", "kube_pod_container_resource_requests"):
        assert name in exprs, name
    assert not re.search(r"\bvllm_", exprs), "underscore spelling of a vLLM metric"
    assert "gpu_cache_usage_perc" not in exprs, "removed vLLM metric name"


def test_utilisation_alerts_are_mig_aware():
    rules = {rule["alert"]: rule["expr"] for rule in all_rules(render_rules())}
    node = rules["GPUNodeUnderutilized"]
    # GPU_UTIL first, GR_ENGINE_ACTIVE (ratio, x100) where GPU_UTIL is absent.
    assert re.search(r"DCGM_FI_DEV_GPU_UTIL\s+or\s+DCGM_FI_PROF_GR_ENGINE_ACTIVE\s*\*\s*100", node), node
    assert "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in rules["GPUMIGInstanceUnderutilized"]
    assert "DCGM_FI_DEV_GPU_UTIL" not in rules["GPUMIGInstanceUnderutilized"]


# --------------------------------------------------------------------------- promtool unit tests
PROMTOOL_FILES = sorted(PROMTOOL_TESTS.glob("*.yml"))


def test_one_promtool_test_file_per_alert():
    assert {p.stem for p in PROMTOOL_FILES} == EXPECTED_ALERTS


@pytest.mark.parametrize("test_file", PROMTOOL_FILES, ids=lambda p: p.stem)
def test_promtool_test_file_fires_and_also_holds_series_that_must_not_fire(test_file):
    spec = yaml.safe_load(test_file.read_text(encoding="utf-8"))
    assert spec["rule_files"] == ["alert-rules.yml"]
    for case in spec["tests"]:
        checks = case["alert_rule_test"]
        assert {c["alertname"] for c in checks} == {test_file.stem}
        firing = [a for c in checks for a in c.get("exp_alerts") or []]
        assert firing, f"{test_file.name}: nothing is expected to fire"
        assert any(not c.get("exp_alerts") for c in checks), f"{test_file.name}: no quiet evaluation"
        # More input series than firing alerts at the last check: some series must stay quiet.
        last = max(checks, key=lambda c: _seconds(str(c["eval_time"])))
        assert len(case["input_series"]) > len(last.get("exp_alerts") or [])


@pytest.mark.parametrize("test_file", PROMTOOL_FILES, ids=lambda p: p.stem)
def test_promtool_unit_test(promtool, rendered, test_file, tmp_path):
    shutil.copy(rendered / "alert-rules.yml", tmp_path / "alert-rules.yml")
    shutil.copy(test_file, tmp_path / test_file.name)
    res = run([promtool, "test", "rules", test_file.name], tmp_path)
    assert res.returncode == 0, res.stdout
    assert "SUCCESS" in res.stdout


def test_promtool_unit_test_fails_when_a_rule_is_broken(promtool, rendered, tmp_path):
    # The harness must be able to fail: read the seed's underscore name and the test must break.
    text = (rendered / "alert-rules.yml").read_text(encoding="utf-8")
    broken = text.replace('vllm:num_requests_waiting{model_name!=""}', "vllm_num_requests_waiting")
    assert broken != text
    (tmp_path / "alert-rules.yml").write_text(broken, encoding="utf-8")
    shutil.copy(PROMTOOL_TESTS / "InferenceQueueBacklog.yml", tmp_path)
    res = run([promtool, "test", "rules", "InferenceQueueBacklog.yml"], tmp_path)
    assert res.returncode != 0
    assert "FAILED" in res.stdout


# Overridden thresholds must reach the rules: one series just over and one just under each.
# Expectations use the ALERTS series, so they do not depend on annotation wording.
OVERRIDE_CASES = {
    "temperature": (
        {"observability_gpu_temperature_threshold_celsius": 70, "observability_gpu_temperature_for": "1m"},
        "GPUTemperatureHigh",
        [('DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="n1"}', "71"), ('DCGM_FI_DEV_GPU_TEMP{gpu="1",Hostname="n1"}', "69")],
        ['gpu="0",Hostname="n1",severity="warning"'],
    ),
    "framebuffer": (
        {"observability_gpu_framebuffer_threshold_percent": 50, "observability_gpu_framebuffer_for": "1m"},
        "GPUFramebufferNearlyFull",
        [('DCGM_FI_DEV_FB_USED{gpu="0",Hostname="n1"}', "60"), ('DCGM_FI_DEV_FB_FREE{gpu="0",Hostname="n1"}', "40"),
         ('DCGM_FI_DEV_FB_USED{gpu="1",Hostname="n1"}', "40"), ('DCGM_FI_DEV_FB_FREE{gpu="1",Hostname="n1"}', "60")],
        ['gpu="0",Hostname="n1",severity="warning"'],
    ),
    "low_utilisation": (
        {"observability_gpu_low_utilization_threshold_percent": 30, "observability_gpu_low_utilization_for": "2m"},
        "GPUNodeUnderutilized",
        [('DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n1"}', "25"), ('DCGM_FI_DEV_GPU_UTIL{gpu="0",Hostname="n2"}', "35"),
         ('DCGM_FI_PROF_GR_ENGINE_ACTIVE{gpu="0",GPU_I_ID="1",Hostname="n3"}', "0.25")],
        ['Hostname="n1",severity="info"', 'Hostname="n3",severity="info"'],
    ),
    "queue": (
        {"observability_inference_queue_threshold": 5, "observability_inference_queue_for": "1m"},
        "InferenceQueueBacklog",
        [('vllm:num_requests_waiting{pod="a",model_name="m"}', "6"), ('vllm:num_requests_waiting{pod="b",model_name="m"}', "5")],
        ['pod="a",model_name="m",severity="warning"'],
    ),
    "kv_cache": (
        {"observability_kv_cache_threshold_percent": 80, "observability_kv_cache_for": "1m"},
        "KVCacheNearlyFull",
        [('vllm:kv_cache_usage_perc{pod="a",model_name="m"}', "0.85"), ('vllm:kv_cache_usage_perc{pod="b",model_name="m"}', "0.75")],
        ['pod="a",model_name="m",severity="warning"'],
    ),
    "dcgm_selector_and_extra_labels": (
        {"observability_dcgm_selector": 'job="dcgm-exporter"', "observability_alert_extra_labels": {"team": "ml"}},
        "GPUXidError",
        [('DCGM_EXP_XID_ERRORS_COUNT{gpu="0",xid="48",job="dcgm-exporter"}', "1"),
         ('DCGM_EXP_XID_ERRORS_COUNT{gpu="0",xid="48",job="other"}', "1")],
        ['gpu="0",job="dcgm-exporter",severity="critical",team="ml",xid="48"'],
    ),
}


@pytest.mark.parametrize("case", sorted(OVERRIDE_CASES))
def test_overridden_values_reach_the_rules(promtool, tmp_path, case):
    overrides, alert, series, firing = OVERRIDE_CASES[case]
    (tmp_path / "alert-rules.yml").write_text(render_rules(overrides), encoding="utf-8")
    spec = {
        "rule_files": ["alert-rules.yml"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": [{"series": s, "values": f"{v}x20"} for s, v in series],
            "promql_expr_test": [{
                "expr": f'ALERTS{{alertname="{alert}",alertstate="firing"}}',
                "eval_time": "15m",
                "exp_samples": [{"labels": f'ALERTS{{alertname="{alert}",alertstate="firing",{labels}}}', "value": 1}
                                for labels in firing],
            }],
        }],
    }
    (tmp_path / "t.yml").write_text(yaml.safe_dump(spec), encoding="utf-8")
    res = run([promtool, "test", "rules", "t.yml"], tmp_path)
    assert res.returncode == 0, res.stdout


# --------------------------------------------------------------------------- dashboards
GRAFANA_DURATIONS = {"__rate_interval": "1m", "__interval": "30s", "__range": "1h",
                     "__range_s": "3600", "__interval_ms": "30000"}
VAR_RE = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def substitute_grafana_variables(expr: str) -> str:
    def repl(m: re.Match) -> str:
        name = m.group(1) or m.group(2) or m.group(3)
        return GRAFANA_DURATIONS.get(name, "example")
    return VAR_RE.sub(repl, expr)


def dashboard_files() -> list[pathlib.Path]:
    return sorted(DASHBOARDS.glob("*.json"))


def iter_panels(panels):
    for panel in panels:
        yield panel
        yield from iter_panels(panel.get("panels", []))


def dashboard_queries(dashboard: dict) -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every query variable."""
    out = []
    for panel in iter_panels(dashboard.get("panels", [])):
        for target in panel.get("targets", []):
            if target.get("expr"):
                out.append((f"panel {panel['id']} '{panel.get('title')}' {target.get('refId')}", target["expr"]))
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
        m = re.fullmatch(r"\s*label_values\((.+),\s*(\w+)\s*\)\s*", query)
        if m:
            out.append((f"variable {var['name']}", m.group(1)))
            continue
        m = re.fullmatch(r"\s*query_result\((.+)\)\s*", query)
        assert m, f"variable {var['name']}: unsupported query {query!r}"
        out.append((f"variable {var['name']}", m.group(1)))
    return out


def check_exprs_parse(promtool: str, tmp_path: pathlib.Path, queries: list[tuple[str, str]]):
    rules = [{"record": f"dashboard:query_{i}", "expr": substitute_grafana_variables(expr)}
             for i, (_unused, expr) in enumerate(queries)]
    (tmp_path / "dashboard-queries.yml").write_text(
        yaml.safe_dump({"groups": [{"name": "dashboard-queries", "rules": rules}]}), encoding="utf-8")
    return run([promtool, "check", "rules", "dashboard-queries.yml"], tmp_path)


def test_there_are_two_dashboards():
    assert {p.stem for p in dashboard_files()} == {"gpu-fleet", "llm-inference"}


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_every_dashboard_query_parses(promtool, tmp_path, path):
    queries = dashboard_queries(json.loads(path.read_text(encoding="utf-8")))
    assert len(queries) >= 8
    for where, expr in queries:
        assert "$" not in substitute_grafana_variables(expr), f"{where}: unsubstituted variable"
    res = check_exprs_parse(promtool, tmp_path, queries)
    assert res.returncode == 0, res.stdout
    assert f"SUCCESS: {len(queries)} rules found" in res.stdout


def test_dashboard_query_check_catches_a_broken_query(promtool, tmp_path):
    res = check_exprs_parse(promtool, tmp_path, [("ok", "sum(rate(x[$__rate_interval]))"),
                                                 ("broken", 'sum by (le (rate(x{a="$model"}[5m]))')])
    assert res.returncode != 0


@pytest.mark.parametrize("path", dashboard_files(), ids=lambda p: p.stem)
def test_dashboard_structure_and_datasource(path):
    dashboard = json.loads(path.read_text(encoding="utf-8"))
    assert dashboard["uid"].startswith("gpuops-llm-")
    ids = [p["id"] for p in iter_panels(dashboard["panels"])]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in iter_panels(dashboard["panels"]):
        for target in panel.get("targets", []):
            # Every query goes to the selected Prometheus, never to a hard-coded datasource uid.
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    for query in (e for _unused, e in dashboard_queries(dashboard)):
        assert not re.search(r"\bvllm_", query), query
        assert "gpu_cache_usage_perc" not in query, query


def test_dashboards_cover_what_the_issue_asks_for():
    exprs = [e for p in dashboard_files() for _unused, e in dashboard_queries(json.loads(p.read_text(encoding="utf-8")))]
    joined = "\n".join(exprs)
    # MIG-aware utilisation: one query with GPU_UTIL and the GR_ENGINE_ACTIVE fallback.
    assert any("DCGM_FI_DEV_GPU_UTIL" in e and "DCGM_FI_PROF_GR_ENGINE_ACTIVE" in e and " or " in e for e in exprs)
    for metric in ("DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE",
                   "vllm:num_requests_waiting", "vllm:time_to_first_token_seconds_bucket",
                   "vllm:inter_token_latency_seconds_bucket", "vllm:kv_cache_usage_perc"):
        assert metric in joined, metric
    assert "histogram_quantile" in joined
    assert ("kube_deployment_status_replicas" in joined
            or "kube_horizontalpodautoscaler_status_current_replicas" in joined)
    # Replicas and queue on one panel.
    llm = json.loads((DASHBOARDS / "llm-inference.json").read_text(encoding="utf-8"))
    assert any({"kube_deployment_status_replicas", "vllm:num_requests_waiting"}
               <= {m for t in p.get("targets", []) for m in re.findall(r"[a-zA-Z_:][\w:]*", t["expr"])}
               for p in iter_panels(llm["panels"]))


# --------------------------------------------------------------------------- role metadata
def test_argument_specs_describe_every_default_and_nothing_else():
    defaults = role_defaults()
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    options = specs["argument_specs"]["main"]["options"]
    assert set(options) == set(defaults)
    for name, spec in options.items():
        assert name.startswith("observability_"), name
        assert spec.get("description"), f"{name} has no description"
        assert spec.get("default") == defaults[name], f"{name}: argument_specs default != defaults/main.yml"


def test_rules_kind_choices_cover_the_fallback():
    specs = yaml.safe_load((ROLE / "meta" / "argument_specs.yml").read_text(encoding="utf-8"))
    choices = specs["argument_specs"]["main"]["options"]["observability_rules_kind"]["choices"]
    assert set(choices) == {"auto", "prometheusrule", "configmap"}


def test_dashboard_list_matches_the_files():
    known = yaml.safe_load((ROLE / "vars" / "main.yml").read_text(encoding="utf-8"))["__observability_known_dashboards"]
    assert set(known) == {p.stem for p in dashboard_files()}
    assert set(role_defaults()["observability_dashboards"]) <= set(known)


def test_ensure_promtool_script_is_valid_bash_and_a_no_op_when_present(promtool):
    script = ROOT / "scripts" / "ensure-promtool.sh"
    assert run(["bash", "-n", str(script)], ROOT).returncode == 0
    res = run(["bash", str(script)], ROOT)
    assert res.returncode == 0, res.stdout
    assert "already present" in res.stdout
