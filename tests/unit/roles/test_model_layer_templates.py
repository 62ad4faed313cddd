# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the model-layer roles (vllm_service, model_cache, model_quantize, load_test) the way
Ansible does and check what could go wrong in the manifests.

One ansible-playbook run renders every scenario through the roles' own validate/render entry
points (the real gpuops.llm.model_fit runs for vllm_service) and writes each result, or the
failure message, as JSON into a temp dir. No cluster is touched: preflight is off, metrics mode
is explicit, and only the render entry points of the Job roles run.
"""
from __future__ import annotations

import json
import math
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

from ansible_collections.gpuops.llm.plugins.module_utils import sizing

ROOT = pathlib.Path(__file__).resolve().parents[3]
ROLES = ROOT / "roles"
TOKEN = "hf_UNITTESTSECRETVALUE0123456789"  # a token value that must never be rendered

# Llama-3.1-8B / Llama-3-70B shapes: layers, heads, kv heads and hidden size from
# facts/llm-serving.md part D; intermediate_size and vocab_size from the public config.json files.
LLAMA_8B = {"model_type": "llama", "hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 8, "intermediate_size": 14336, "vocab_size": 128256,
            "tie_word_embeddings": False, "torch_dtype": "bfloat16", "max_position_embeddings": 131072}
LLAMA_70B = dict(LLAMA_8B, hidden_size=8192, num_hidden_layers=80, num_attention_heads=64,
                 intermediate_size=28672, max_position_embeddings=8192)
# The seed's AutoAWQ settings as a checkpoint's quantization_config.
AWQ_CONFIG = {"quant_method": "awq", "bits": 4, "group_size": 128, "zero_point": True, "version": "gemm"}
LLAMA_70B_AWQ = dict(LLAMA_70B, quantization_config=AWQ_CONFIG)

VLLM_OK = {
    "base": [{"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
              "gpu_model": "NVIDIA A100-SXM4-80GB", "max_model_len": 8192, "hf_token_secret": "hf-token",
              "replicas": 2}],
    "awq": [{"name": "llama-70b-awq", "model": "example/Llama-3-70B-Instruct-AWQ", "config": LLAMA_70B_AWQ,
             "quantization": "awq", "gpu_model": "NVIDIA H100 80GB HBM3", "max_model_len": 8192}],
    "mig": [{"name": "llama-8b-mig", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
             "gpu_model": "H100-80GB", "mig_profile": "3g.40gb", "max_model_len": 4096,
             "node_selector": {"gpuops.llm/pool": "mig"}}],
    "pvc": [{"name": "llama-8b-cached", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
             "gpu_model": "NVIDIA A100-SXM4-80GB", "max_model_len": 8192,
             "pvc": {"claim_name": "llama-8b-model-cache"}}],
    "fp8": [{"name": "llama-8b-fp8", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
             "quantization": "fp8", "gpu_model": "NVIDIA L4", "max_model_len": 4096}],
    "tp2": [{"name": "llama-8b-tp2", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
             "tensor_parallel_size": 2, "gpu_model": "NVIDIA A100-SXM4-80GB", "max_model_len": 8192}],
}
# engine: triton, the same sizing; one from the hub with a token, one AWQ from a PVC with TP 2.
VLLM_TRITON = {
    "base": [{"name": "llama-8b-triton", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
              "engine": "triton", "gpu_model": "NVIDIA A100-SXM4-80GB", "max_model_len": 8192,
              "hf_token_secret": "hf-token", "kv_cache_dtype": "fp8"}],
    "pvc_tp2": [{"name": "llama-70b-triton", "model": "example/Llama-3-70B-Instruct-AWQ", "config": LLAMA_70B_AWQ,
                 "engine": "triton", "quantization": "awq", "vllm_quantization": "awq_marlin",
                 "gpu_model": "NVIDIA A100-SXM4-80GB", "tensor_parallel_size": 2, "max_model_len": 8192,
                 "pvc": {"claim_name": "llama-70b-awq"}, "engine_args": {"enforce_eager": True}}],
    "fp8": [{"name": "llama-8b-triton-fp8", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
             "engine": "triton", "quantization": "fp8", "gpu_model": "H100-80GB", "mig_profile": "3g.40gb",
             "max_model_len": 4096}],
}
VLLM_FAIL = {
    # 70B in 16 bit on one 24 GB L4: model_fit refuses it.
    "too_big": [{"name": "fits", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
                 "gpu_model": "NVIDIA H100 80GB HBM3", "max_model_len": 8192},
                {"name": "llama-70b", "model": "meta-llama/Meta-Llama-3-70B-Instruct", "config": LLAMA_70B,
                 "gpu_model": "NVIDIA L4", "max_model_len": 8192}],
    "bad_input": [{"name": "Bad_Name", "model": "x/y", "config": LLAMA_8B, "gpu_model": "L4", "quantization": "int3"},
                  {"name": "mig-tp", "model": "x/y", "config": LLAMA_8B, "gpu_model": "H100-80GB",
                   "mig_profile": "3g.40gb", "tensor_parallel_size": 2}],
    # AWQ asked of a 16-bit checkpoint: vLLM cannot quantize to AWQ while loading.
    # Each of these is refused by model_fit itself, through the role (its message, the model named).
    "tp_heads": [{"name": "tp-heads", "model": "x/y", "config": LLAMA_8B, "gpu_model": "NVIDIA A100-SXM4-80GB",
                  "tensor_parallel_size": 3, "max_model_len": 8192}],
    "too_long": [{"name": "too-long", "model": "x/y", "config": LLAMA_70B, "gpu_model": "NVIDIA H100 80GB HBM3",
                  "tensor_parallel_size": 4, "max_model_len": 16384}],
    "bad_engine": [{"name": "bad-engine", "model": "x/y", "config": LLAMA_8B, "gpu_model": "L4", "engine": "tgi"}],
    "awq_unquantized": [{"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "config": LLAMA_8B,
                         "quantization": "awq", "gpu_model": "NVIDIA A100-SXM4-80GB", "max_model_len": 8192}],
}

QUANT_BASE = {"name": "llama-70b", "source": {"model": "meta-llama/Meta-Llama-3-70B-Instruct",
                                              "hf_token_secret": "hf-token"},
              "output": {"size": "60Gi"}}
QUANT = {
    "base": {"model_quantize_models": [QUANT_BASE]},
    "same_again": {"model_quantize_models": [QUANT_BASE], "model_quantize_timeout": 99,
                   "model_quantize_namespace": "other"},
    "group64": {"model_quantize_models": [dict(QUANT_BASE, group_size=64)]},
    "gptq": {"model_quantize_models": [dict(QUANT_BASE, method="gptq")]},
    "fp8": {"model_quantize_models": [dict(QUANT_BASE, method="fp8_dynamic")]},
    "pvc_source": {"model_quantize_models": [dict(
        QUANT_BASE, source={"claim_name": "llama-cache", "path": "meta-llama--Meta-Llama-3-70B-Instruct"})]},
}


def _block(name, tasks, varz):
    """A block that runs tasks with vars and records the result, or the failure message, as a
    fact whose task name carries the scenario (read back from the json callback)."""
    return {"name": "Scenario " + name, "vars": varz, "block": tasks + [
        {"name": "RESULT " + name, "ansible.builtin.set_fact": {"__scenario": "{{ {'ok': __result} }}"}}],
        "rescue": [{"name": "RESULT " + name, "ansible.builtin.set_fact": {
            "__scenario": "{{ {'error': ansible_failed_result.msg | default('')} }}"}}]}


def _role(role, tasks_from):
    return {"name": "Run %s %s" % (role, tasks_from),
            "ansible.builtin.include_role": {"name": "gpuops.llm." + role, "tasks_from": tasks_from}}


def _set(name, value):
    return {"name": "Set " + name, "ansible.builtin.set_fact": {name: value}}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("model-layer")
    blocks = []
    # Every model that fits in one run (one model_fit loop); each refusal in its own block.
    runs = {"vllm_ok": [m for models in list(VLLM_OK.values()) + list(VLLM_TRITON.values()) for m in models]}
    runs.update({"vllm_" + k: v for k, v in VLLM_FAIL.items()})
    for name, models in runs.items():
        varz = {"vllm_service_models": models, "vllm_service_metrics": "annotations",
                "vllm_service_preflight": False, "hf_token_value": TOKEN}
        tasks = [_role("vllm_service", "validate"), _role("vllm_service", "metrics"), _role("vllm_service", "render"),
                 _set("__result", "{{ {'rendered': __vllm_service_rendered, 'plan': __vllm_service_plan,"
                                  " 'fit': __vllm_service_fit.results} }}")]
        blocks.append(_block(name, tasks, varz))
    # The same MIG model once more with a PodMonitor instead of annotations.
    blocks.append(_block("vllm_podmonitor", [_role("vllm_service", "validate"), _role("vllm_service", "metrics"),
                                             _role("vllm_service", "render"),
                                             _set("__result", "{{ {'rendered': __vllm_service_rendered} }}")],
                         {"vllm_service_models": VLLM_OK["mig"], "vllm_service_metrics": "podmonitor",
                          "vllm_service_preflight": False}))
    quant_all = [dict(v["model_quantize_models"][0], name="q-" + k.replace("_", "-"))
                 for k, v in QUANT.items() if k != "same_again"]
    for name, varz in {"quant_all": {"model_quantize_models": quant_all},
                       "quant_same_again": QUANT["same_again"]}.items():
        tasks = [_role("model_quantize", "plan"),
                 _set("__model_quantize_plan", "{{ __model_quantize_plan | map('combine', {'pending': true}) | list }}"),
                 _role("model_quantize", "render"),
                 _set("__result", "{{ {'plan': __model_quantize_plan, 'rendered': __model_quantize_rendered} }}")]
        blocks.append(_block(name, tasks, varz))
    cache_models = [{"name": "llama-8b", "model": "meta-llama/Llama-3.1-8B-Instruct", "size": "40Gi",
                     "revision": "0e9e39f", "hf_token_secret": "hf-token", "include": ["*.safetensors", "*.json"]}]
    blocks.append(_block("cache", [_role("model_cache", "validate"), _set("__model_cache_pending", "{{ __model_cache_plan }}"),
                                   _role("model_cache", "render"),
                                   _set("__result", "{{ {'plan': __model_cache_plan, 'claims': __model_cache_claim_manifests,"
                                                    " 'jobs': __model_cache_job_manifests} }}")],
                         {"model_cache_models": cache_models}))
    blocks.append(_block("load", [_role("load_test", "render"), _set("__result", "{{ __load_test_manifests }}")],
                         {"load_test_url": "http://llama-8b.llm-serving.svc:8000", "load_test_model": "llama",
                          "load_test_name": "llama-8b", "load_test_namespace": "llm-serving",
                          "load_test_run_id": "unit", "load_test_endpoint": "chat"}))
    # load_test refuses a Triton endpoint (KServe v2, not OpenAI) before it writes anything.
    # First: vllm_service's render sets vllm_service_endpoints as a fact, which outranks block vars.
    triton_endpoint = {"name": "t", "namespace": "llm-serving", "engine": "triton", "api": "kserve-v2",
                       "served_model_name": "t", "url": "http://t.llm-serving.svc:8000"}
    blocks.insert(0, _block("load_triton", [_role("load_test", "main"), _set("__result", "unexpected")],
                            {"vllm_service_endpoints": [triton_endpoint]}))
    play = [{"name": "Render the model layer", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "tasks": blocks}]
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


def _has_builtin_json():
    try:
        import ansible.plugins.callback.json  # noqa: F401  pylint: disable=unused-import
        return True
    except ImportError:
        return False


def ok(rendered, name):
    r = rendered[name]
    assert "ok" in r, "%s failed: %s" % (name, r.get("error"))
    return r["ok"]


def objects(rendered, name):
    """The manifests of one vllm_service scenario model (all fitting models render in one run)."""
    if name == "vllm_podmonitor":
        return ok(rendered, name)["rendered"][0]["manifests"]
    model = _scenario(name)["name"]
    return [r for r in ok(rendered, "vllm_ok")["rendered"] if r["name"] == model][0]["manifests"]


def _scenario(name):
    """vllm_<key> is a VLLM_OK model, triton_<key> a VLLM_TRITON one."""
    if name.startswith("triton_"):
        return VLLM_TRITON[name[len("triton_"):]][0]
    return VLLM_OK[name[len("vllm_"):]][0]


def fit_of(rendered, name):
    model = _scenario(name)["name"]
    return [f for f in ok(rendered, "vllm_ok")["fit"] if f["item"]["name"] == model][0]


def kind(objs, k):
    found = [o for o in objs if o["kind"] == k]
    assert len(found) == 1, "%s: %d objects" % (k, len(found))
    return found[0]


def container(objs):
    return kind(objs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def arg(c, flag):
    args = c["args"]
    return args[args.index(flag) + 1] if flag in args else None


def role_defaults(role):
    return yaml.safe_load((ROLES / role / "defaults" / "main.yml").read_text())


def estimate_for(model):
    """model_fit's numbers for one scenario model, from sizing directly (not from the role)."""
    return sizing.estimate(model_config=model["config"], quantization=model.get("quantization"),
                           tensor_parallel_size=model.get("tensor_parallel_size", 1),
                           gpu_model=model["gpu_model"] + (" " + model["mig_profile"] if "mig_profile" in model else ""),
                           max_model_len=model.get("max_model_len"), vllm_version="0.32.0")


# ---- vllm_service -------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(VLLM_OK))
def test_startup_probe_covers_weight_loading(rendered, name):
    model = VLLM_OK[name][0]
    d = role_defaults("vllm_service")
    fit = estimate_for(model)
    gib = fit["weights_gib_total"] * (2 if fit["quantization"]["runtime"] else 1)
    rate = d["vllm_service_pvc_read_gib_per_second"] if "pvc" in model else d["vllm_service_download_gib_per_second"]
    # A 0.01 GiB tolerance: the role rounds the checkpoint size to two decimals.
    needed = d["vllm_service_startup_base_seconds"] + (gib - 0.01) / rate
    c = container(objects(rendered, "vllm_" + name))
    probe = c["startupProbe"]
    assert probe["httpGet"]["path"] == "/health"
    assert probe["periodSeconds"] * probe["failureThreshold"] >= needed
    # Not absurdly generous either: within one period of the estimate.
    assert probe["periodSeconds"] * probe["failureThreshold"] < needed + probe["periodSeconds"] + 1
    for p in ("readinessProbe", "livenessProbe"):
        assert c[p]["httpGet"]["path"] == "/health"
        assert c[p]["timeoutSeconds"] > 1, "the kubelet's 1 s default fails under saturation"
    dep = kind(objects(rendered, "vllm_" + name), "Deployment")
    assert dep["spec"]["progressDeadlineSeconds"] > probe["periodSeconds"] * probe["failureThreshold"]


def test_big_model_gets_a_longer_startup_budget(rendered):
    small = container(objects(rendered, "vllm_base"))["startupProbe"]
    big = container(objects(rendered, "vllm_awq"))["startupProbe"]
    assert big["periodSeconds"] * big["failureThreshold"] > small["periodSeconds"] * small["failureThreshold"]


@pytest.mark.parametrize("name", sorted(VLLM_OK))
def test_dev_shm_is_memory_backed_with_a_limit(rendered, name):
    objs = objects(rendered, "vllm_" + name)
    spec = kind(objs, "Deployment")["spec"]["template"]["spec"]
    vol = {v["name"]: v for v in spec["volumes"]}
    mount = [m for m in container(objs)["volumeMounts"] if m["mountPath"] == "/dev/shm"]
    assert len(mount) == 1
    shm = vol[mount[0]["name"]]["emptyDir"]
    assert shm["medium"] == "Memory" and shm["sizeLimit"]


def test_token_only_as_secret_reference(rendered):
    for name in VLLM_OK:
        assert TOKEN not in json.dumps(objects(rendered, "vllm_" + name))
    c = container(objects(rendered, "vllm_base"))
    hf = [e for e in c["env"] if e["name"] == "HF_TOKEN"]
    assert hf == [{"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf-token", "key": "token"}}}]
    assert not [e for e in container(objects(rendered, "vllm_awq"))["env"] if e["name"] == "HF_TOKEN"]
    jobs = ok(rendered, "cache")["jobs"]
    assert TOKEN not in json.dumps(jobs)
    env = jobs[0]["spec"]["template"]["spec"]["containers"][0]["env"]
    assert [e for e in env if e["name"] == "HF_TOKEN"][0]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert TOKEN not in rendered["__stdout__"]


def test_gpu_count_and_mig_resource(rendered):
    limits = container(objects(rendered, "vllm_base"))["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "1" and not [k for k in limits if k.startswith("nvidia.com/mig-")]
    tp2 = container(objects(rendered, "vllm_tp2"))
    assert tp2["resources"]["limits"]["nvidia.com/gpu"] == "2" and arg(tp2, "--tensor-parallel-size") == "2"
    mig = container(objects(rendered, "vllm_mig"))["resources"]
    for side in ("limits", "requests"):
        assert mig[side]["nvidia.com/mig-3g.40gb"] == "1"
        assert "nvidia.com/gpu" not in mig[side]
    # model_fit sized it for the slice, not the whole GPU.
    fit = fit_of(rendered, "vllm_mig")
    assert fit["gpu"]["mig"] is True and fit["gpu_memory_gib"] < 79


def test_inference_pool_placement(rendered):
    spec = kind(objects(rendered, "vllm_base"), "Deployment")["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"workload-class": "inference"}
    assert {"key": "workload", "operator": "Equal", "value": "llm-inference", "effect": "NoSchedule"} in spec["tolerations"]
    mig = kind(objects(rendered, "vllm_mig"), "Deployment")["spec"]["template"]["spec"]
    assert mig["nodeSelector"] == {"workload-class": "inference", "gpuops.llm/pool": "mig"}


def test_awq_checkpoint_gets_no_slow_kernel_flag(rendered):
    c = container(objects(rendered, "vllm_awq"))
    # facts/llm-serving.md part B: an explicit --quantization awq forces the slow kernel.
    assert "--quantization" not in c["args"]
    assert arg(container(objects(rendered, "vllm_fp8")), "--quantization") == "fp8"
    assert "--quantization" not in container(objects(rendered, "vllm_base"))["args"]


def test_vllm_args_follow_model_fit(rendered):
    model = VLLM_OK["base"][0]
    c = container(objects(rendered, "vllm_base"))
    # vllm serve MODEL: positional, not the deprecated --model (vLLM v0.20+ warns it will be removed)
    assert c["command"] == ["vllm", "serve"] and "--model" not in c["args"]
    assert c["args"][0] == model["model"] and arg(c, "--served-model-name") == model["model"]
    assert arg(c, "--max-model-len") == "8192"
    assert arg(c, "--gpu-memory-utilization") == "0.90"
    assert c["image"].endswith("vllm/vllm-openai:" + role_defaults("vllm_service")["vllm_service_image_tag"])
    assert ":latest" not in c["image"]
    assert kind(objects(rendered, "vllm_base"), "Deployment")["spec"]["replicas"] == 2


def test_cached_model_mounts_the_pvc_offline(rendered):
    objs = objects(rendered, "vllm_pvc")
    c = container(objs)
    assert c["args"][0] == "/models/meta-llama--Llama-3.1-8B-Instruct"
    assert arg(c, "--served-model-name") == "meta-llama/Llama-3.1-8B-Instruct"
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in c["env"]
    vols = kind(objs, "Deployment")["spec"]["template"]["spec"]["volumes"]
    pvc = [v for v in vols if "persistentVolumeClaim" in v]
    assert pvc == [{"name": "model", "persistentVolumeClaim": {"claimName": "llama-8b-model-cache", "readOnly": True}}]
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} not in container(objects(rendered, "vllm_base"))["env"]


def test_pdb_service_and_network_policy_shapes(rendered):
    objs = objects(rendered, "vllm_base")
    dep = kind(objs, "Deployment")
    sel = dep["spec"]["selector"]["matchLabels"]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(labels[k] == v for k, v in sel.items())
    pdb = kind(objs, "PodDisruptionBudget")
    assert pdb["apiVersion"] == "policy/v1" and pdb["spec"]["selector"]["matchLabels"] == sel
    assert pdb["spec"]["maxUnavailable"] == 1  # never minAvailable == replicas, which blocks every drain
    svc = kind(objs, "Service")
    assert svc["spec"]["selector"] == sel and svc["spec"]["ports"][0]["port"] == 8000
    np = kind(objs, "NetworkPolicy")
    assert np["spec"]["podSelector"]["matchLabels"] == sel and np["spec"]["policyTypes"] == ["Ingress"]
    for rule in np["spec"]["ingress"]:
        assert rule["ports"] == [{"port": 8000, "protocol": "TCP"}]
        assert rule["from"], "an empty from would admit everyone"
    peers = [p for r in np["spec"]["ingress"] for p in r["from"]]
    assert {"namespaceSelector": {"matchLabels": {"gpuops.llm/llm-client": "true"}}} in peers
    prom = [p for p in peers if p.get("namespaceSelector", {}).get("matchLabels") == {"kubernetes.io/metadata.name": "monitoring"}]
    assert prom and prom[0]["podSelector"]["matchLabels"]
    ann = dep["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "8000"


def test_pod_monitor_replaces_annotations(rendered):
    objs = objects(rendered, "vllm_podmonitor")
    pm = kind(objs, "PodMonitor")
    assert pm["spec"]["podMetricsEndpoints"][0]["path"] == "/metrics"
    assert "prometheus.io/scrape" not in kind(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert not [o for o in objects(rendered, "vllm_mig") if o["kind"] == "PodMonitor"]


def test_security_context(rendered):
    spec = kind(objects(rendered, "vllm_base"), "Deployment")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["automountServiceAccountToken"] is False
    home = {e["name"]: e.get("value") for e in c["env"]}["HOME"]
    assert home in [m["mountPath"] for m in c["volumeMounts"]], "a non-root vLLM needs a writable HOME"


def test_model_that_does_not_fit_is_refused_with_numbers(rendered):
    err = rendered["vllm_too_big"].get("error")
    assert err, "a 70B bf16 model on one L4 must be refused"
    assert "llama-70b does not fit" in err and "GiB" in err
    assert "fits does not fit" not in err  # only the model that does not fit is named
    # Independently: sizing agrees that it does not fit.
    assert sizing.estimate(model_config=LLAMA_70B, gpu_model="NVIDIA L4", max_model_len=8192)["fits"] is False


def test_bad_input_lists_every_problem(rendered):
    err = rendered["vllm_bad_input"].get("error")
    assert err
    assert "Bad_Name" in err and "DNS-1035" in err
    assert "quantization \"int3\" is unknown" in err
    assert "mig-tp" in err and "tensor_parallel_size 2 with mig_profile" in err


def test_awq_on_unquantized_checkpoint_is_refused(rendered):
    err = rendered["vllm_awq_unquantized"].get("error")
    assert err and "quantization_config" in err and "model_quantize" in err


@pytest.mark.parametrize("case,expect", [
    # heads 32: 3 divides none of them (model_fit lists the valid sizes)
    ("tp_heads", ["tp-heads", "tensor_parallel_size 3 does not divide num_attention_heads 32"]),
    # Llama-3-70B's max_position_embeddings is 8192
    ("too_long", ["too-long", "max_model_len 16384 is beyond", "8192"]),
    ("bad_engine", ["bad-engine", "engine \"tgi\" is unknown", "vllm, triton"]),
])
def test_model_fit_and_input_refusals_name_the_field(rendered, case, expect):
    err = rendered["vllm_" + case].get("error")
    assert err, "%s must be refused" % case
    for text in expect:
        assert text in err, (text, err)


# ---- vllm_service, engine: triton ----------------------------------------------------------

def _repository(objs):
    cm = kind(objs, "ConfigMap")
    return cm, json.loads(cm["data"]["model.json"]), cm["data"]["config.pbtxt"]


@pytest.mark.parametrize("name", sorted(VLLM_TRITON))
def test_triton_model_repository_carries_the_sized_engine_args(rendered, name):
    model = VLLM_TRITON[name][0]
    objs = objects(rendered, "triton_" + name)
    cm, engine, pbtxt = _repository(objs)
    assert 'backend: "vllm"' in pbtxt and "KIND_MODEL" in pbtxt
    fit = estimate_for(model)
    assert engine["max_model_len"] == model["max_model_len"] == fit["max_model_len"]
    assert engine["gpu_memory_utilization"] == 0.9
    assert engine["tensor_parallel_size"] == model.get("tensor_parallel_size", 1)
    if "pvc" in model:
        assert engine["model"] == "/weights/" + model["model"].replace("/", "--")
    else:
        assert engine["model"] == model["model"]
    for k, v in model.get("engine_args", {}).items():
        assert engine[k] == v
    spec = kind(objs, "Deployment")["spec"]["template"]["spec"]
    c = spec["containers"][0]
    assert c["image"] == "nvcr.io/nvidia/tritonserver:" + role_defaults("vllm_service")["vllm_service_triton_image_tag"]
    assert c["image"].endswith("-vllm-python-py3")
    assert c["command"] == ["tritonserver"] and "--model-repository=/models" in c["args"]
    # the ConfigMap lands as /models/<name>/config.pbtxt and /models/<name>/1/model.json
    vol = [v for v in spec["volumes"] if v.get("configMap", {}).get("name") == cm["metadata"]["name"]][0]
    mount = [m for m in c["volumeMounts"] if m["name"] == vol["name"]][0]
    assert mount["mountPath"] == "/models/" + model["name"] and mount["readOnly"] is True
    assert sorted((i["key"], i["path"]) for i in vol["configMap"]["items"]) == [
        ("config.pbtxt", "config.pbtxt"), ("model.json", "1/model.json")]
    # pods roll when the repository changes
    ann = kind(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert len(ann["gpuops.llm/model-repository-sha256"]) == 64


def test_triton_quantization_follows_the_vllm_rules(rendered):
    # fp8 at load time: vLLM must be told; a pre-quantized AWQ checkpoint gets what was asked
    assert _repository(objects(rendered, "triton_fp8"))[1]["quantization"] == "fp8"
    assert _repository(objects(rendered, "triton_pvc_tp2"))[1]["quantization"] == "awq_marlin"
    base = _repository(objects(rendered, "triton_base"))[1]
    assert "quantization" not in base and base["kv_cache_dtype"] == "fp8"
    hashes = {kind(objects(rendered, "triton_" + n), "Deployment")["spec"]["template"]["metadata"]["annotations"][
        "gpuops.llm/model-repository-sha256"] for n in VLLM_TRITON}
    assert len(hashes) == len(VLLM_TRITON)


@pytest.mark.parametrize("name", sorted(VLLM_TRITON))
def test_triton_probes_ports_and_placement(rendered, name):
    model = VLLM_TRITON[name][0]
    objs = objects(rendered, "triton_" + name)
    d = role_defaults("vllm_service")
    c = container(objs)
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {
        "http": d["vllm_service_port"], "grpc": d["vllm_service_triton_grpc_port"],
        "metrics": d["vllm_service_triton_metrics_port"]}
    assert c["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert c["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    for p in ("readinessProbe", "livenessProbe"):
        assert c[p]["timeoutSeconds"] > 1
    # the same startup budget as vLLM: base + checkpoint GiB / rate
    fit = estimate_for(model)
    gib = fit["weights_gib_total"] * (2 if fit["quantization"]["runtime"] else 1)
    rate = d["vllm_service_pvc_read_gib_per_second"] if "pvc" in model else d["vllm_service_download_gib_per_second"]
    budget = c["startupProbe"]["periodSeconds"] * c["startupProbe"]["failureThreshold"]
    assert d["vllm_service_startup_base_seconds"] + (gib - 0.01) / rate <= budget
    assert budget < d["vllm_service_startup_base_seconds"] + gib / rate + c["startupProbe"]["periodSeconds"] + 1
    # GPUs or the MIG slice, pool placement and /dev/shm as for vLLM
    limits = c["resources"]["limits"]
    if "mig_profile" in model:
        assert limits["nvidia.com/mig-" + model["mig_profile"]] == "1" and "nvidia.com/gpu" not in limits
    else:
        assert limits["nvidia.com/gpu"] == str(model.get("tensor_parallel_size", 1))
    spec = kind(objs, "Deployment")["spec"]["template"]["spec"]
    assert spec["nodeSelector"]["workload-class"] == "inference"
    assert {"key": "workload", "operator": "Equal", "value": "llm-inference", "effect": "NoSchedule"} in spec["tolerations"]
    shm = [v for v in spec["volumes"] if v["name"] == [m for m in c["volumeMounts"] if m["mountPath"] == "/dev/shm"][0]["name"]]
    assert shm[0]["emptyDir"]["medium"] == "Memory"
    # Service: all three ports; NetworkPolicy: clients on HTTP and gRPC, Prometheus on metrics only
    svc = kind(objs, "Service")
    ports = {p["name"]: p["targetPort"] for p in svc["spec"]["ports"]}
    assert ports == {"http": "http", "grpc": "grpc", "metrics": "metrics"}
    rules = kind(objs, "NetworkPolicy")["spec"]["ingress"]
    assert sorted(p["port"] for p in rules[0]["ports"]) == [d["vllm_service_port"], d["vllm_service_triton_grpc_port"]]
    assert [p["port"] for p in rules[1]["ports"]] == [d["vllm_service_triton_metrics_port"]]
    assert kind(objs, "PodDisruptionBudget")["spec"]["maxUnavailable"] == 1
    ann = kind(objs, "Deployment")["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/port"] == str(d["vllm_service_triton_metrics_port"])


def test_triton_token_and_endpoint(rendered):
    objs = objects(rendered, "triton_base")
    assert TOKEN not in json.dumps(objs)
    env = container(objs)["env"]
    assert [e for e in env if e["name"] == "HF_TOKEN"][0]["valueFrom"]["secretKeyRef"]["name"] == "hf-token"
    assert {"name": "HF_HUB_OFFLINE", "value": "1"} in container(objects(rendered, "triton_pvc_tp2"))["env"]
    labels = kind(objs, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert labels["gpuops.llm/engine"] == "triton"
    assert kind(objects(rendered, "vllm_base"), "Deployment")["spec"]["template"]["metadata"]["labels"][
        "gpuops.llm/engine"] == "vllm"


# ---- model_quantize -----------------------------------------------------------------------

def qplan(rendered, name):
    if name == "same_again":
        return ok(rendered, "quant_same_again")["plan"][0]
    return [p for p in ok(rendered, "quant_all")["plan"] if p["name"] == "q-" + name.replace("_", "-")][0]


def qobjects(rendered, name):
    return [r for r in ok(rendered, "quant_all")["rendered"] if r["name"] == "q-" + name.replace("_", "-")][0]["manifests"]


def test_recipe_hash_changes_with_the_recipe_only(rendered):
    base = qplan(rendered, "base")["recipe_sha256"]
    assert len(base) == 64
    assert qplan(rendered, "same_again")["recipe_sha256"] == base, "timeout and namespace are not the recipe"
    for other in ("group64", "gptq", "fp8", "pvc_source"):
        assert qplan(rendered, other)["recipe_sha256"] != base, other
    assert qplan(rendered, "group64")["job_name"] != qplan(rendered, "base")["job_name"]


def test_recipe_maps_the_seed_awq_settings(rendered):
    recipe = yaml.safe_load(qplan(rendered, "base")["recipe"])
    mods = recipe["quant_stage"]["quant_modifiers"]
    assert "AWQModifier" in mods
    w = mods["QuantizationModifier"]["config_groups"]["group_0"]["weights"]
    # seed: w_bit 4, q_group_size 128, zero_point True (asymmetric)
    assert (w["num_bits"], w["group_size"], w["symmetric"], w["strategy"]) == (4, 128, False, "group")
    assert mods["QuantizationModifier"]["ignore"] == ["lm_head"]
    g = yaml.safe_load(qplan(rendered, "group64")["recipe"])["quant_stage"]["quant_modifiers"]
    assert g["QuantizationModifier"]["config_groups"]["group_0"]["weights"]["group_size"] == 64
    gptq = yaml.safe_load(qplan(rendered, "gptq")["recipe"])["quant_stage"]["quant_modifiers"]
    assert "GPTQModifier" in gptq and "AWQModifier" not in gptq
    fp8 = yaml.safe_load(qplan(rendered, "fp8")["recipe"])["quant_stage"]["quant_modifiers"]
    assert fp8["QuantizationModifier"]["scheme"] == "FP8_DYNAMIC"
    assert qplan(rendered, "fp8")["calibration"] is None


def test_quantize_job_on_training_pool_with_recipe_configmap(rendered):
    objs = qobjects(rendered, "base")
    job = kind(objs, "Job")
    spec = job["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {"workload-class": "training"}
    assert {"key": "workload", "operator": "Equal", "value": "llm-training", "effect": "NoSchedule"} in spec["tolerations"]
    c = spec["containers"][0]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"
    cm = kind(objs, "ConfigMap")
    assert set(cm["data"]) == {"recipe.yaml", "job.json", "quantize.py"}
    assert cm["data"]["recipe.yaml"] == qplan(rendered, "base")["recipe"]
    compile(cm["data"]["quantize.py"], "quantize.py", "exec")
    settings = json.loads(cm["data"]["job.json"])
    assert settings["recipe_sha256"] == qplan(rendered, "base")["recipe_sha256"]
    assert settings["source_path"] == "meta-llama/Meta-Llama-3-70B-Instruct"
    assert job["metadata"]["annotations"]["gpuops.llm/quantize-recipe-sha256"] == settings["recipe_sha256"]
    pvc = kind(objs, "PersistentVolumeClaim")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "60Gi"
    assert "annotations" not in pvc["metadata"], "the marker is patched on after success, never applied up front"
    src = qobjects(rendered, "pvc_source")
    sspec = kind(src, "Job")["spec"]["template"]["spec"]
    assert {"name": "source", "persistentVolumeClaim": {"claimName": "llama-cache", "readOnly": True}} in sspec["volumes"]
    assert json.loads(kind(src, "ConfigMap")["data"]["job.json"])["source_path"].startswith("/source/")


# ---- model_cache and load_test ------------------------------------------------------------

def test_model_cache_job_and_pvc(rendered):
    r = ok(rendered, "cache")
    plan = r["plan"][0]
    assert plan["marker"] == "meta-llama/Llama-3.1-8B-Instruct@0e9e39f"
    pvc = [o for o in r["claims"] if o["kind"] == "PersistentVolumeClaim"][0]
    assert pvc["metadata"]["name"] == "llama-8b-model-cache" and pvc["spec"]["resources"]["requests"]["storage"] == "40Gi"
    job = r["jobs"][0]
    spec = job["spec"]["template"]["spec"]
    c = spec["containers"][0]
    # model, revision, directory and patterns are arguments after the script, never inside it
    assert c["command"][:2] == ["/bin/sh", "-c"]
    assert c["command"][3:] == ["prefetch", "meta-llama/Llama-3.1-8B-Instruct", "0e9e39f",
                                "/models/meta-llama--Llama-3.1-8B-Instruct", "*.safetensors", "*.json"]
    assert "meta-llama" not in c["command"][2]
    assert job["spec"]["activeDeadlineSeconds"] == role_defaults("model_cache")["model_cache_timeout"]
    assert {"key": "workload", "operator": "Equal", "value": "llm-inference", "effect": "NoSchedule"} in spec["tolerations"]
    assert [v for v in spec["volumes"] if v.get("persistentVolumeClaim", {}).get("claimName") == "llama-8b-model-cache"]
    assert "nvidia.com/gpu" not in json.dumps(c["resources"])


def test_load_test_job_targets_the_openai_api(rendered):
    objs = ok(rendered, "load")
    cm = kind(objs, "ConfigMap")
    compile(cm["data"]["locustfile.py"], "locustfile.py", "exec")
    job = kind(objs, "Job")
    assert job["metadata"]["name"] == "llama-8b-load-unit"
    spec = job["spec"]["template"]["spec"]
    assert spec["containers"][0]["image"].startswith("docker.io/locustio/locust:")
    env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
    assert env["HOST"] == "http://llama-8b.llm-serving.svc:8000" and env["LLM_ENDPOINT"] == "chat"
    assert env["LLM_STREAM"] == "true" and json.loads(env["LLM_PROMPTS"])
    assert "--headless" in spec["containers"][0]["args"][0]
    # the pod carries the label vllm_service's NetworkPolicy admits
    assert job["spec"]["template"]["metadata"]["labels"]["gpuops.llm/llm-client"] == "true"
    d = role_defaults("load_test")
    assert job["spec"]["activeDeadlineSeconds"] == d["load_test_duration_seconds"] + d["load_test_start_grace_seconds"]
    assert math.isfinite(float(env["DURATION"]))


def test_load_test_refuses_a_triton_endpoint(rendered):
    err = rendered["load_triton"].get("error")
    assert err and "KServe v2" in err and "http://t.llm-serving.svc:8000" in err


def test_pod_monitor_conforms_to_prometheus_operator_and_kube_prometheus_stack(rendered):
    """PodMonitor fields as prometheus-operator v0.93.0 pkg/apis/monitoring/v1/podmonitor_types.go
    defines them: spec.selector (a LabelSelector of the pods), podMetricsEndpoints[].port (the NAME
    of a container port), no namespaceSelector (= the PodMonitor's own namespace). kube-prometheus-stack
    (charts/kube-prometheus-stack/templates/prometheus/prometheus.yaml) selects PodMonitors by
    release=<release name> while podMonitorSelectorNilUsesHelmValues is true (its default); the old
    PodMonitor had no release label and a stock install never scraped vLLM (no queue for KEDA)."""
    objs = objects(rendered, "vllm_podmonitor")
    pm, dep = kind(objs, "PodMonitor"), kind(objs, "Deployment")
    assert pm["metadata"]["labels"].get("release") == "kube-prometheus-stack"
    assert pm["metadata"]["namespace"] == dep["metadata"]["namespace"] and "namespaceSelector" not in pm["spec"]
    pod_labels = dep["spec"]["template"]["metadata"]["labels"]
    assert all(pod_labels.get(k) == v for k, v in pm["spec"]["selector"]["matchLabels"].items())
    port_names = {p.get("name") for c in dep["spec"]["template"]["spec"]["containers"] for p in c.get("ports", [])}
    assert {ep["port"] for ep in pm["spec"]["podMetricsEndpoints"]} <= port_names


def test_vllm_service_quantization_choices_are_model_fits():
    # The role passes quantization straight to model_fit, so its argument spec must accept
    # exactly the formats sizing knows: one home for the list (sizing.QUANTIZATION_METHODS).
    spec = yaml.safe_load((ROOT / "roles" / "vllm_service" / "meta" / "argument_specs.yml").read_text())
    models = spec["argument_specs"]["main"]["options"]["vllm_service_models"]["options"]
    assert models["quantization"]["choices"] == list(sizing.QUANTIZATION_METHODS)
