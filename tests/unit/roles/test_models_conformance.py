# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""What a real node and the upstream images require of the model layer's pods (issue 12), held
against the rendered objects: docs/conformance.md#models cites each test here.

- containers run as a user their image defines (testbed/images.yml, each fact with its source);
- GPU pods name the nvidia RuntimeClass;
- an autoscaled model's Deployment carries spec.replicas only on create (KEDA's HPA owns it after);
- the OpenAI API key lives in a Secret (secretKeyRef), probes and metrics use unguarded paths;
- the Locust flags the load test passes exist in the pinned Locust.

One ansible-playbook run renders every scenario through the roles' own entry points, like
test_model_layer_templates.py; no cluster is touched.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

from test_model_layer_templates import LLAMA_8B, _block, _has_builtin_json, _role, _set

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLES = ROOT / "roles"
API_KEY = "sk-UNITTESTAPIKEYVALUE0123456789"  # a key value that must never be rendered

BASE = {"model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
        "gpu_model": "NVIDIA A100-SXM4-80GB", "max_model_len": 8192}
MODELS = [
    dict(BASE, name="plain", replicas=2),
    dict(BASE, name="tritoned", engine="triton"),
    dict(BASE, name="keyed", api_key_secret="llm-api-key"),
    dict(BASE, name="keyed-own-key", api_key_secret="llm-api-key", api_key_secret_key="openai"),
    # autoscaled through the autoscaling role's entries (autoscaling_models), or explicitly
    dict(BASE, name="as-new", replicas=3),
    dict(BASE, name="as-owned", replicas=3),
    dict(BASE, name="as-scaled", replicas=3),
    dict(BASE, name="as-explicit", replicas=2, autoscaled=True),
    dict(BASE, name="not-as", replicas=2),
]
AUTOSCALING_MODELS = [{"name": "as-new"}, {"name": "as-owned"}, {"deployment": "as-scaled", "name": "scaled-so"}]
# What live.yml would have read: as-owned still has our manager on spec.replicas (count 3 live),
# as-scaled and as-explicit were scaled by the HPA (count 5 and 0 live), not-as is not autoscaled.
LIVE = {"llm-serving/as-owned": {"replicas": 3, "owns_replicas": True},
        "llm-serving/as-scaled": {"replicas": 5, "owns_replicas": False},
        "llm-serving/as-explicit": {"replicas": 0, "owns_replicas": False},
        "llm-serving/not-as": {"replicas": 7, "owns_replicas": False}}
BAD = {
    "empty_api_key_secret": ([dict(BASE, name="bad-key", api_key_secret="")], {},
                             'vllm_service_models[0] (bad-key) api_key_secret "" is not a Secret name'),
    "triton_api_key": ([dict(BASE, name="bad-triton", engine="triton", api_key_secret="k")], {},
                       "api_key_secret with engine triton"),
    "role_api_key_secret": ([dict(BASE, name="ok")], {"vllm_service_api_key_secret": "Bad_Name"},
                            'vllm_service_api_key_secret "Bad_Name" is not a Secret name'),
    "runtime_class": ([dict(BASE, name="ok")], {"vllm_service_runtime_class_name": "Not A Name"},
                      'vllm_service_runtime_class_name "Not A Name" is not a RuntimeClass name'),
}
QUANT = [{"name": "q", "source": {"model": "meta-llama/Meta-Llama-3-70B-Instruct"}, "output": {"size": "60Gi"}}]
CACHE = [{"name": "c", "model": "meta-llama/Llama-3.1-8B-Instruct", "size": "40Gi"}]
LOCUST_FLAGS = ["-f", "--headless", "--only-summary", "-u", "-r", "--run-time", "--host", "--csv",
                "--exit-code-on-error"]


def _vllm_tasks(result="{{ {'rendered': __vllm_service_rendered, 'endpoints': vllm_service_endpoints} }}"):
    return [_role("vllm_service", "validate"), _role("vllm_service", "metrics"), _role("vllm_service", "render"),
            _set("__result", result)]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("models-conformance")
    common = {"vllm_service_metrics": "podmonitor", "vllm_service_preflight": False, "api_key_value": API_KEY}
    blocks = [
        _block("vllm", _vllm_tasks(), dict(common, vllm_service_models=MODELS, autoscaling_models=AUTOSCALING_MODELS,
                                           __vllm_service_live=LIVE)),
        _block("vllm_no_runtime_class", _vllm_tasks(), dict(common, vllm_service_models=MODELS[:2],
                                                            vllm_service_runtime_class_name="")),
        _block("quant", [_role("model_quantize", "plan"),
                         _set("__model_quantize_plan", "{{ __model_quantize_plan | map('combine', {'pending': true}) | list }}"),
                         _role("model_quantize", "render"), _set("__result", "{{ __model_quantize_rendered }}")],
               {"model_quantize_models": QUANT}),
        _block("quant_no_runtime_class",
               [_role("model_quantize", "plan"),
                _set("__model_quantize_plan", "{{ __model_quantize_plan | map('combine', {'pending': true}) | list }}"),
                _role("model_quantize", "render"), _set("__result", "{{ __model_quantize_rendered }}")],
               {"model_quantize_models": QUANT, "model_quantize_runtime_class_name": ""}),
        _block("cache", [_role("model_cache", "validate"), _set("__model_cache_pending", "{{ __model_cache_plan }}"),
                         _role("model_cache", "render"), _set("__result", "{{ __model_cache_job_manifests }}")],
               {"model_cache_models": CACHE}),
        # load_test after vllm_service: its defaults follow the first endpoint (a keyed model)
        _block("load_keyed", [_set("vllm_service_endpoints", "{{ __endpoints }}"), _role("load_test", "render"),
                              _set("__result", "{{ __load_test_manifests }}")],
               {"__endpoints": [{"name": "keyed", "namespace": "llm-serving", "engine": "vllm", "api": "openai",
                                 "served_model_name": "m", "url": "http://keyed.llm-serving.svc:8000",
                                 "api_key_secret": "llm-api-key", "api_key_secret_key": "openai"}],
                "load_test_run_id": "unit"}),
        _block("load_plain", [_role("load_test", "render"), _set("__result", "{{ __load_test_manifests }}")],
               {"load_test_url": "http://plain.llm-serving.svc:8000", "load_test_model": "m", "load_test_name": "plain",
                "load_test_namespace": "llm-serving", "load_test_run_id": "unit", "load_test_api_key_secret": ""}),
        _block("load_bad_key", [_role("load_test", "main"), _set("__result", "unexpected")],
               {"load_test_url": "http://plain.llm-serving.svc:8000", "load_test_model": "m", "load_test_name": "plain",
                "load_test_namespace": "llm-serving", "load_test_run_id": "unit",
                "load_test_api_key_secret": "Not_A_Secret"}),
    ]
    for name, (models, extra, _expect) in BAD.items():
        blocks.append(_block("bad_" + name, _vllm_tasks(), dict(common, vllm_service_models=models, **extra)))
    play = [{"name": "Render the model layer's conformance scenarios", "hosts": "localhost", "connection": "local",
             "gather_facts": False, "tasks": blocks}]
    (out / "play.yml").write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_DEPRECATION_WARNINGS="0", ANSIBLE_PIPELINING="1",
               ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_INVENTORY_UNPARSED_WARNING="0",
               ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json" if _has_builtin_json() else "ansible.posix.json")
    proc = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), str(out / "play.yml")],
                          capture_output=True, text=True, env=env, cwd=str(ROOT), timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    report = json.loads(proc.stdout[proc.stdout.index("{"):])
    results = {}
    for task in report["plays"][0]["tasks"]:
        name = task["task"]["name"]
        host = task["hosts"].get("localhost", {})
        if name.startswith("RESULT ") and not host.get("skipped"):
            results[name[len("RESULT "):]] = host["ansible_facts"]["__scenario"]
    results["__stdout__"] = proc.stdout + proc.stderr
    return results


def ok(rendered, name):
    r = rendered[name]
    assert "ok" in r, "%s failed: %s" % (name, r.get("error"))
    return r["ok"]


def deployment(rendered, model, scenario="vllm"):
    objs = [r for r in ok(rendered, scenario)["rendered"] if r["name"] == model][0]["manifests"]
    return [o for o in objs if o["kind"] == "Deployment"][0]


def objects(rendered, model, scenario="vllm"):
    return [r for r in ok(rendered, scenario)["rendered"] if r["name"] == model][0]["manifests"]


def pod_spec(obj):
    return obj["spec"]["template"]["spec"]


def job(manifests):
    return [o for o in manifests if o["kind"] == "Job"][0]


def image_facts():
    return {i["repository"]: i for i in yaml.safe_load((ROOT / "testbed" / "images.yml").read_text())["images"]}


def assert_runs_as_image_user(spec):
    """Every container's effective uid (and gid) is a user its image's /etc/passwd defines."""
    facts = image_facts()
    for c in spec["containers"]:
        repo = c["image"].rsplit(":", 1)[0]
        assert repo in facts, "no facts for %s in testbed/images.yml" % repo
        sc = dict(spec.get("securityContext") or {}, **(c.get("securityContext") or {}))
        uid = sc.get("runAsUser", facts[repo]["default_uid"])
        users = {u["uid"]: u for u in facts[repo]["users"].values()}
        assert uid in users, "%s runs as uid %s; %s defines %s (%s)" % (
            c["name"], uid, repo, sorted(users), facts[repo]["source"])
        if "runAsGroup" in sc:
            assert sc["runAsGroup"] == users[uid]["gid"], "%s: gid %s, the image's user has gid %s" % (
                c["name"], sc["runAsGroup"], users[uid]["gid"])


# ---- images.yml: the schema another slice's admission reads -------------------------------

def test_image_facts_follow_the_schema():
    for repo, i in image_facts().items():
        assert set(i) >= {"repository", "tags", "default_uid", "users", "source"}, repo
        assert isinstance(i["tags"], list) and i["tags"], repo
        assert i["default_uid"] in {u["uid"] for u in i["users"].values()}, repo


def test_pinned_tags_have_their_image_facts():
    facts = image_facts()
    for role, var, repo in (("vllm_service", "vllm_service_image_tag", "docker.io/vllm/vllm-openai"),
                            ("vllm_service", "vllm_service_triton_image_tag", "nvcr.io/nvidia/tritonserver"),
                            ("model_cache", "model_cache_image_tag", "docker.io/vllm/vllm-openai"),
                            ("model_quantize", "model_quantize_image_tag", "docker.io/vllm/vllm-openai"),
                            ("load_test", "load_test_image_tag", "docker.io/locustio/locust")):
        tag = yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())[var]
        assert str(tag) in facts[repo]["tags"], "%s=%s has no facts in testbed/images.yml" % (var, tag)


# ---- containers run as a user their image defines -----------------------------------------

def test_vllm_runs_as_the_images_vllm_user(rendered):
    """vllm/vllm-openai defines vllm (uid 2000, gid 0); uid 1000 made torch's import fail with
    KeyError: 'getpwuid(): uid not found: 1000' (vllm issue 44548). At v0.32.0: see images.yml."""
    spec = pod_spec(deployment(rendered, "plain"))
    assert spec["securityContext"]["runAsUser"] == 2000 and spec["securityContext"]["runAsGroup"] == 0
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert_runs_as_image_user(spec)
    # HOME is the user's own home, on a writable emptyDir (so is HF_HOME under it)
    c = spec["containers"][0]
    env = {e["name"]: e.get("value") for e in c["env"]}
    assert env["HOME"] == "/home/vllm" and env["HF_HOME"].startswith("/home/vllm/")
    home = [m for m in c["volumeMounts"] if m["mountPath"] == "/home/vllm"][0]
    assert "emptyDir" in {v["name"]: v for v in spec["volumes"]}[home["name"]]


def test_triton_runs_as_the_images_triton_server_user(rendered):
    """The Triton image defines triton-server (uid 1000, gid 1000), not vllm's uid 2000."""
    spec = pod_spec(deployment(rendered, "tritoned"))
    assert spec["securityContext"]["runAsUser"] == 1000 and spec["securityContext"]["runAsGroup"] == 1000
    assert_runs_as_image_user(spec)


def test_model_cache_job_runs_as_the_images_vllm_user(rendered):
    assert_runs_as_image_user(pod_spec(job(ok(rendered, "cache"))))


def test_quantize_job_runs_as_the_images_vllm_user(rendered):
    assert_runs_as_image_user(pod_spec(job(ok(rendered, "quant")[0]["manifests"])))


def test_locust_runs_as_the_images_locust_user(rendered):
    assert_runs_as_image_user(pod_spec(job(ok(rendered, "load_plain"))))


# ---- GPU pods name the nvidia RuntimeClass ------------------------------------------------

def test_gpu_pods_name_the_nvidia_runtime_class(rendered):
    """nvidia_container_toolkit creates RuntimeClass nvidia (handler nvidia); the GPU Operator's is
    named nvidia too. Without it a GPU pod on a runc-default node gets no /dev/nvidia*."""
    toolkit = yaml.safe_load((ROLES / "nvidia_container_toolkit" / "defaults" / "main.yml").read_text())
    name = toolkit["nvidia_container_toolkit_runtime_class_name"]
    for model in ("plain", "tritoned", "keyed"):
        assert pod_spec(deployment(rendered, model)).get("runtimeClassName") == name, model
    assert pod_spec(job(ok(rendered, "quant")[0]["manifests"])).get("runtimeClassName") == name


def test_pods_without_gpus_name_no_runtime_class(rendered):
    for spec in (pod_spec(job(ok(rendered, "cache"))), pod_spec(job(ok(rendered, "load_plain")))):
        assert "runtimeClassName" not in spec
        assert not [k for c in spec["containers"] for k in c["resources"]["limits"] if k.startswith("nvidia.com/")]


def test_empty_runtime_class_name_omits_it(rendered):
    for model in ("plain", "tritoned"):
        assert "runtimeClassName" not in pod_spec(deployment(rendered, model, "vllm_no_runtime_class"))
    assert "runtimeClassName" not in pod_spec(job(ok(rendered, "quant_no_runtime_class")[0]["manifests"]))


# ---- reruns never fight KEDA for spec.replicas ---------------------------------------------

def test_autoscaled_deployment_gets_replicas_on_create_only(rendered):
    """Not yet created: the model's count. Created, HPA took the field over (scale subresource):
    no spec.replicas at all, so server-side apply leaves it to the HPA and force_conflicts takes
    nothing back. Created, our manager still owns it: the live count, never the inventory's."""
    assert deployment(rendered, "as-new")["spec"]["replicas"] == 3
    assert "replicas" not in deployment(rendered, "as-scaled")["spec"]
    assert "replicas" not in deployment(rendered, "as-explicit")["spec"]
    assert deployment(rendered, "as-owned")["spec"]["replicas"] == 3


def test_models_keda_does_not_scale_keep_their_replicas(rendered):
    assert deployment(rendered, "plain")["spec"]["replicas"] == 2
    # live says 7 (someone scaled it by hand): an unscaled model is ours, the inventory wins
    assert deployment(rendered, "not-as")["spec"]["replicas"] == 2


def test_autoscaled_models_follow_the_autoscaling_roles_entries():
    """vllm_service reads autoscaling_models by default (deployment defaults to name)."""
    d = yaml.safe_load((ROLES / "vllm_service" / "defaults" / "main.yml").read_text())
    assert "autoscaling_models" in d["vllm_service_autoscaled_models"]
    tpl = (ROLES / "vllm_service" / "templates" / "autoscaled_refs.json.j2").read_text()
    assert "a.deployment | default(a.name)" in tpl


# ---- API key in a Secret; probes and metrics stay unauthenticated --------------------------

def test_api_key_only_as_secret_reference(rendered):
    c = pod_spec(deployment(rendered, "keyed"))["containers"][0]
    key = [e for e in c["env"] if e["name"] == "VLLM_API_KEY"]
    assert key == [{"name": "VLLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-api-key", "key": "api-key"}}}]
    own = [e for e in pod_spec(deployment(rendered, "keyed-own-key"))["containers"][0]["env"]
           if e["name"] == "VLLM_API_KEY"]
    assert own[0]["valueFrom"]["secretKeyRef"]["key"] == "openai"
    assert "--api-key" not in c["args"], "a key in args shows in the pod spec and ps"
    assert not [e for e in pod_spec(deployment(rendered, "plain"))["containers"][0]["env"] if e["name"] == "VLLM_API_KEY"]
    assert API_KEY not in rendered["__stdout__"]


def test_probes_and_metrics_use_paths_the_api_key_does_not_guard(rendered):
    """vLLM guards /v1 (and every route outside its public list: /health, /ping, /load, /version,
    /metrics, docs); probes and the PodMonitor carry no key, so they must use public paths."""
    objs = objects(rendered, "keyed")
    c = pod_spec([o for o in objs if o["kind"] == "Deployment"][0])["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["path"] == "/health"
        assert "httpHeaders" not in c[probe]["httpGet"]
    pm = [o for o in objs if o["kind"] == "PodMonitor"][0]
    endpoint = pm["spec"]["podMetricsEndpoints"][0]
    assert endpoint["path"] == "/metrics" and "authorization" not in endpoint and "bearerTokenSecret" not in endpoint


def test_endpoint_tells_load_test_which_secret_holds_the_key(rendered):
    eps = {e["name"]: e for e in ok(rendered, "vllm")["endpoints"]}
    assert eps["keyed"]["api_key_secret"] == "llm-api-key" and eps["keyed"]["api_key_secret_key"] == "api-key"
    assert eps["keyed-own-key"]["api_key_secret_key"] == "openai"
    assert eps["plain"]["api_key_secret"] is None


def test_load_test_sends_the_key_from_the_secret(rendered):
    c = pod_spec(job(ok(rendered, "load_keyed")))["containers"][0]
    assert [e for e in c["env"] if e["name"] == "LLM_API_KEY"] == [
        {"name": "LLM_API_KEY", "valueFrom": {"secretKeyRef": {"name": "llm-api-key", "key": "openai"}}}]
    plain = pod_spec(job(ok(rendered, "load_plain")))["containers"][0]
    assert not [e for e in plain["env"] if e["name"] == "LLM_API_KEY"]
    locustfile = (ROLES / "load_test" / "files" / "locustfile.py").read_text()
    assert '"Authorization": "Bearer " + API_KEY' in locustfile and "headers=HEADERS" in locustfile


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_api_key_and_runtime_class_input_fails_naming_the_field(rendered, case):
    """Refused in validate.yml, before sizing, preflight or any write."""
    r = rendered["bad_" + case]
    assert "error" in r, "%s rendered: %s" % (case, r)
    assert BAD[case][2] in r["error"], r["error"]


def test_load_test_refuses_a_bad_api_key_secret_name(rendered):
    r = rendered["load_bad_key"]
    assert "error" in r and 'load_test_api_key_secret "Not_A_Secret" is not a Secret name' in r["error"], r


# ---- Locust's command line at the pinned version -------------------------------------------

def test_locust_flags_exist_in_the_pinned_locust():
    """The Job's command line against `locust --help` of the installed Locust, which must be the
    pinned one (locust 2.47.0 on PyPI; requirements pin it for this test)."""
    pinned = str(yaml.safe_load((ROLES / "load_test" / "defaults" / "main.yml").read_text())["load_test_image_tag"])
    locust = pathlib.Path(sys.executable).parent / "locust"
    if not locust.exists():
        pytest.fail("locust is not installed in this environment (requirements/test.txt pins it)")
    version = subprocess.run([str(locust), "--version"], capture_output=True, text=True, check=False)
    if pinned not in version.stdout + version.stderr:
        pytest.fail("installed locust is not the pinned %s: %s" % (pinned, version.stdout.strip()))
    help_text = subprocess.run([str(locust), "--help"], capture_output=True, text=True, check=True).stdout
    tpl = (ROLES / "load_test" / "templates" / "manifests.yaml.j2").read_text()
    for flag in LOCUST_FLAGS:
        assert re.search(r"(^|\s)%s[\s,=]" % re.escape(flag), tpl), "the template no longer passes " + flag
        assert re.search(r"(^|[\s,])%s[\s,=]" % re.escape(flag), help_text), flag + " not in locust --help"
