# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""vllm_service on the testbed: a real apiserver accepts every manifest, the real scheduler places
the pods on GPU nodes, a rerun changes nothing, and every refusal happens before any write."""
from __future__ import annotations

import base64
import pathlib
import re
import subprocess
import uuid

import pytest
import yaml
from kubernetes import client

from conftest import ROOT as REPO_ROOT, run_playbook, wait_for

# vllm_service's GPU pods name runtimeClassName: nvidia (the RuntimeClass week 1 writes).
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("nvidia_runtime_class")]

ROOT = pathlib.Path(__file__).resolve().parents[2]
VENV_BIN = ROOT / ".venv" / "bin"
POOL_LABEL = "gpuops.llm/testbed-pool"  # testbed/testbed.py: the testbed labels nodes by pool
TOKEN = "hf_INTEGRATIONSECRET0123456789abcdef"
MIG_RESOURCE = "nvidia.com/mig-3g.40gb"

# A 0.5B-class model (Qwen2.5-0.5B shape): small enough for any testbed GPU.
SMALL = {"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
         "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": True,
         "torch_dtype": "bfloat16", "max_position_embeddings": 32768}
# Llama-3-70B shape (facts/llm-serving.md part D): 16-bit weights alone are ~131 GiB.
BIG = {"model_type": "llama", "hidden_size": 8192, "num_hidden_layers": 80, "num_attention_heads": 64,
       "num_key_value_heads": 8, "intermediate_size": 28672, "vocab_size": 128256, "tie_word_embeddings": False,
       "torch_dtype": "bfloat16", "max_position_embeddings": 8192}


def _advertising(v1, resource):
    return [n.metadata.name for n in v1.list_node().items
            if int((n.status.allocatable or {}).get(resource, "0")) >= 1]


@pytest.fixture(scope="module")
def mig_ready(testbed):
    """MIG nodes advertise nvidia.com/mig-3g.40gb only after week 1's mig role applied all-balanced
    and the device plugin runs the mixed strategy: run week 1 when no node advertises it yet
    (idempotent, so a converged testbed changes nothing)."""
    v1 = client.CoreV1Api(testbed.api)
    if not _advertising(v1, MIG_RESOURCE):
        rc, out, _recap = run_playbook(testbed, REPO_ROOT / "playbooks" / "week1_foundation.yml")
        assert rc == 0, out[-4000:]
    return wait_for(lambda: _advertising(v1, MIG_RESOURCE), timeout=90, what="a node advertising " + MIG_RESOURCE)


@pytest.fixture
def namespace(testbed):
    v1 = client.CoreV1Api(testbed.api)
    name = f"t-mdl-{uuid.uuid4().hex[:8]}"
    yield name
    try:
        v1.delete_namespace(name)
    except client.exceptions.ApiException as e:
        if e.status != 404:
            raise


def run_role(testbed, tmp_path, role_vars, check=False):
    """ansible-playbook with vllm_service; returns (rc, output, recap counts)."""
    play = [{"name": "vllm_service on the testbed", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": dict(role_vars, ansible_python_interpreter=str(VENV_BIN / "python")),
             "roles": [{"role": "vllm_service"}]}]
    path = tmp_path / f"play-{uuid.uuid4().hex[:6]}.yml"
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    collections = subprocess.run([str(VENV_BIN / "python"), str(ROOT / "scripts" / "collection_path.py")],
                                 capture_output=True, text=True, check=True).stdout.strip()
    env = dict(testbed.env(), ANSIBLE_COLLECTIONS_PATH=collections, ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
               ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_DEPRECATION_WARNINGS="0")
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", "localhost,", "-v", str(path)] + (["--check"] if check else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, check=False)
    out = proc.stdout + proc.stderr
    m = re.search(r"localhost\s*:\s*ok=(\d+)\s+changed=(\d+)\s+unreachable=(\d+)\s+failed=(\d+)", out)
    recap = dict(zip(("ok", "changed", "unreachable", "failed"), map(int, m.groups()))) if m else {}
    return proc.returncode, out, recap


def model(name, config, gpu_model, **kw):
    return dict({"name": name, "model": "example/" + name, "config": config, "gpu_model": gpu_model,
                 "max_model_len": 4096}, **kw)


def base_vars(namespace, models):
    return {"vllm_service_namespace": namespace, "vllm_service_models": models,
            # The testbed labels pools with its own key; node_pool's workload-class is not set here.
            "vllm_service_node_selector": {POOL_LABEL: "llm-inference"},
            "vllm_service_metrics": "auto"}


def test_service_deployed_scheduled_and_idempotent(testbed, gpu_plugins, namespace, tmp_path):
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    v1.create_namespace({"metadata": {"name": namespace}})
    v1.create_namespaced_secret(namespace, {"metadata": {"name": "hf-token"}, "stringData": {"token": TOKEN}})
    varz = base_vars(namespace, [model("small-llm", SMALL, "NVIDIA A100-SXM4-80GB", replicas=2,
                                       hf_token_secret="hf-token")])
    rc, out, recap = run_role(testbed, tmp_path, varz)
    assert rc == 0, out[-6000:]
    assert recap["changed"] >= 1
    # the token never shows, in clear or base64, even at -v
    assert TOKEN not in out and base64.b64encode(TOKEN.encode()).decode() not in out

    dep = apps.read_namespaced_deployment("small-llm", namespace)
    assert dep.spec.template.spec.containers[0].env[-1].value_from.secret_key_ref.name == "hf-token"
    for read in (v1.read_namespaced_service, client.PolicyV1Api(testbed.api).read_namespaced_pod_disruption_budget,
                 client.NetworkingV1Api(testbed.api).read_namespaced_network_policy):
        assert read("small-llm", namespace).metadata.labels["app.kubernetes.io/instance"] == "small-llm"

    def running():
        pods = v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=small-llm").items
        up = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
        return up if len(up) == 2 else None

    pods = wait_for(running, timeout=120, what="2 vLLM pods scheduled and Running")
    for p in pods:
        node = v1.read_node(p.spec.node_name)
        assert node.metadata.labels[POOL_LABEL] == "llm-inference"
        assert int(node.status.allocatable.get("nvidia.com/gpu", "0")) >= 1, p.spec.node_name
    assert len({p.spec.node_name for p in pods}) == 2, "one GPU per node: two replicas need two nodes"

    # check mode predicts no change, and a real rerun changes nothing
    rc, out, recap = run_role(testbed, tmp_path, varz, check=True)
    assert rc == 0 and recap["changed"] == 0, out[-4000:]
    marker = testbed.audit_marker()
    rc, out, recap = run_role(testbed, tmp_path, varz)
    assert rc == 0 and recap["changed"] == 0, out[-4000:]
    writes = [w for w in testbed.audit_writes(marker) if w["namespace"] == namespace]
    # kubernetes.core's server-side apply always PATCHes (no-op patches); nothing else is written.
    assert {w["verb"] for w in writes} <= {"patch"}, writes


@pytest.mark.parametrize("case", ["too_big", "missing_secret", "unadvertised_mig", "unknown_quantization",
                                  "tp_not_dividing_heads", "max_model_len_beyond_model"])
def test_refusals_write_nothing(testbed, gpu_plugins, namespace, tmp_path, case):
    if case == "unknown_quantization":
        models = [model("q-llm", SMALL, "NVIDIA A100-SXM4-80GB", quantization="int3")]
        # argument_specs refuses it first when the role runs (the unit tier covers the role's own message)
        expect = "none, fp8, int8, awq, gptq, bitnet"
    elif case == "tp_not_dividing_heads":
        # SMALL has 14 attention heads: 4 does not divide them
        models = [model("tp-llm", SMALL, "NVIDIA A100-SXM4-80GB", tensor_parallel_size=4)]
        expect = "tensor_parallel_size 4 does not divide num_attention_heads 14"
    elif case == "max_model_len_beyond_model":
        models = [model("long-llm", SMALL, "NVIDIA A100-SXM4-80GB", max_model_len=SMALL["max_position_embeddings"] * 2)]
        expect = "beyond the model's max_position_embeddings %d" % SMALL["max_position_embeddings"]
    elif case == "too_big":
        models = [model("ok-llm", SMALL, "NVIDIA A100-SXM4-80GB"),
                  model("big-llm", BIG, "NVIDIA L4", max_model_len=8192)]
        expect = "big-llm does not fit"
    elif case == "missing_secret":
        models = [model("ok-llm", SMALL, "NVIDIA A100-SXM4-80GB", hf_token_secret="no-such-secret")]
        expect = "no-such-secret does not exist"
    else:
        # no node advertises this profile (the testbed's MIG GPUs are not partitioned this way)
        models = [model("mig-llm", SMALL, "H100-80GB", mig_profile="7g.80gb",
                        node_selector={POOL_LABEL: "llm-inference-mig"})]
        expect = "nvidia.com/mig-7g.80gb"
    marker = testbed.audit_marker()
    rc, out, recap = run_role(testbed, tmp_path, base_vars(namespace, models))
    assert rc != 0 and recap.get("failed") == 1, out[-4000:]
    assert expect in out, out[-4000:]
    # other sessions may use the testbed at the same time: count what touches this namespace
    ours = [w for w in testbed.audit_writes(marker)
            if w["namespace"] == namespace or (w["resource"] == "namespaces" and w["name"] == namespace)]
    assert ours == [], "a refused run must not write"
    with pytest.raises(client.exceptions.ApiException) as e:
        client.CoreV1Api(testbed.api).read_namespace(namespace)
    assert e.value.status == 404


def _running(v1, namespace, instance, count=1):
    pods = v1.list_namespaced_pod(namespace, label_selector="app.kubernetes.io/instance=" + instance).items
    up = [p for p in pods if p.status.phase == "Running" and not p.metadata.deletion_timestamp]
    return up if len(up) == count else None


def _delete_and_wait(v1, namespace):
    """Delete the namespace and wait until its pods are gone, so the GPUs or MIG slices are free."""
    try:
        v1.delete_namespace(namespace)
    except client.exceptions.ApiException as e:
        if e.status != 404:
            raise
    wait_for(lambda: not v1.list_namespaced_pod(namespace).items, timeout=120, what="pods of %s gone" % namespace)


def test_mig_service_lands_on_a_mig_node(testbed, mig_ready, namespace, tmp_path):
    v1 = client.CoreV1Api(testbed.api)
    varz = base_vars(namespace, [model("mig-llm", SMALL, "H100-80GB", mig_profile="3g.40gb",
                                       node_selector={POOL_LABEL: "llm-inference-mig"})])
    try:
        rc, out, _recap = run_role(testbed, tmp_path, varz)
        assert rc == 0, out[-6000:]
        dep = client.AppsV1Api(testbed.api).read_namespaced_deployment("mig-llm", namespace)
        limits = dep.spec.template.spec.containers[0].resources.limits
        assert limits[MIG_RESOURCE] == "1" and "nvidia.com/gpu" not in limits
        pod = wait_for(lambda: _running(v1, namespace, "mig-llm"), timeout=120, what="the MIG vLLM pod Running")[0]
        node = v1.read_node(pod.spec.node_name)
        assert pod.spec.node_name in mig_ready
        assert node.metadata.labels[POOL_LABEL] == "llm-inference-mig"
        assert int(node.status.allocatable.get(MIG_RESOURCE, "0")) >= 1
    finally:
        _delete_and_wait(v1, namespace)


def test_triton_model_applied_and_scheduled(testbed, gpu_plugins, namespace, tmp_path):
    v1 = client.CoreV1Api(testbed.api)
    varz = base_vars(namespace, [model("triton-llm", SMALL, "NVIDIA A100-SXM4-80GB", engine="triton")])
    try:
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc == 0, out[-6000:]
        assert recap["changed"] >= 1
        # the generated model repository, as the apiserver stored it
        cm = v1.read_namespaced_config_map("triton-llm", namespace)
        assert 'backend: "vllm"' in cm.data["config.pbtxt"]
        engine_args = yaml.safe_load(cm.data["model.json"])
        assert engine_args["model"] == "example/triton-llm" and engine_args["max_model_len"] == 4096
        dep = client.AppsV1Api(testbed.api).read_namespaced_deployment("triton-llm", namespace)
        c = dep.spec.template.spec.containers[0]
        assert c.image.startswith("nvcr.io/nvidia/tritonserver:") and c.command == ["tritonserver"]
        assert c.readiness_probe.http_get.path == "/v2/health/ready"
        svc = v1.read_namespaced_service("triton-llm", namespace)
        assert sorted(p.port for p in svc.spec.ports) == [8000, 8001, 8002]
        pod = wait_for(lambda: _running(v1, namespace, "triton-llm"), timeout=120, what="the Triton pod Running")[0]
        node = v1.read_node(pod.spec.node_name)
        assert node.metadata.labels[POOL_LABEL] == "llm-inference"
        assert int(node.status.allocatable.get("nvidia.com/gpu", "0")) >= 1
        # a rerun changes nothing
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc == 0 and recap["changed"] == 0, out[-4000:]
    finally:
        _delete_and_wait(v1, namespace)


def _ns_writes(testbed, marker, namespace):
    return [w for w in testbed.audit_writes(marker)
            if w["namespace"] == namespace or (w["resource"] == "namespaces" and w["name"] == namespace)]


def test_rerun_leaves_replicas_to_the_hpa(testbed, gpu_plugins, namespace, tmp_path):
    """A KEDA-scaled model (the autoscaling role's entries): created with its replicas, then scaled
    through the scale subresource by another field manager, as KEDA's HPA does. A rerun neither
    writes nor moves replicas; a rerun that changes another field writes, and replicas stays.
    The old role re-applied replicas with force_conflicts and took the count back."""
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    varz = dict(base_vars(namespace, [model("as-llm", SMALL, "NVIDIA A100-SXM4-80GB", replicas=1)]),
                vllm_service_metrics="annotations", autoscaling_models=[{"name": "as-llm", "namespace": namespace}])
    try:
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc == 0, out[-6000:]
        assert apps.read_namespaced_deployment("as-llm", namespace).spec.replicas == 1
        # the HPA's write: an update of the scale subresource under its own field manager
        apps.patch_namespaced_deployment_scale("as-llm", namespace, {"spec": {"replicas": 2}},
                                               field_manager="horizontal-pod-autoscaler")
        dep = apps.read_namespaced_deployment("as-llm", namespace)
        assert dep.spec.replicas == 2
        owners = [f.manager for f in dep.metadata.managed_fields
                  if "f:replicas" in ((f.fields_v1 or {}).get("f:spec") or {})]
        assert owners == ["horizontal-pod-autoscaler"], owners

        rc, out, recap = run_role(testbed, tmp_path, varz, check=True)
        assert rc == 0 and recap["changed"] == 0, out[-4000:]
        marker = testbed.audit_marker()
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc == 0 and recap["changed"] == 0, out[-4000:]
        assert _ns_writes(testbed, marker, namespace) == [], "a rerun must not write"
        assert apps.read_namespaced_deployment("as-llm", namespace).spec.replicas == 2

        # another field changes: one apply, without spec.replicas, and the HPA's count stays
        changed = dict(varz, vllm_service_extra_env=[{"name": "GPUOPS_TEST", "value": "1"}])
        marker = testbed.audit_marker()
        rc, out, recap = run_role(testbed, tmp_path, changed)
        assert rc == 0 and recap["changed"] >= 1, out[-4000:]
        assert [w["resource"] for w in _ns_writes(testbed, marker, namespace)] == ["deployments"]
        dep = apps.read_namespaced_deployment("as-llm", namespace)
        assert dep.spec.replicas == 2
        assert dep.spec.template.spec.containers[0].env[-1].name == "GPUOPS_TEST"
        assert dep.spec.template.spec.runtime_class_name == "nvidia"
        assert dep.spec.template.spec.security_context.run_as_user == 2000
    finally:
        _delete_and_wait(v1, namespace)


def test_api_key_from_a_secret_never_shown(testbed, gpu_plugins, namespace, tmp_path):
    """api_key_secret: preflight refuses a missing Secret before any write; with the Secret the pod
    reads VLLM_API_KEY through secretKeyRef, the key appears in no output, and probes stay on
    /health."""
    v1, apps = client.CoreV1Api(testbed.api), client.AppsV1Api(testbed.api)
    key = "sk-INTEGRATIONAPIKEY0123456789abcdef"
    varz = dict(base_vars(namespace, [model("key-llm", SMALL, "NVIDIA A100-SXM4-80GB", api_key_secret="llm-api-key")]),
                vllm_service_metrics="annotations")
    try:
        v1.create_namespace({"metadata": {"name": namespace}})
        marker = testbed.audit_marker()
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc != 0 and "API key Secret %s/llm-api-key does not exist" % namespace in out, out[-4000:]
        assert _ns_writes(testbed, marker, namespace) == [], "a refused run must not write"

        v1.create_namespaced_secret(namespace, {"metadata": {"name": "llm-api-key"}, "stringData": {"api-key": key}})
        rc, out, recap = run_role(testbed, tmp_path, varz)
        assert rc == 0, out[-6000:]
        assert key not in out and base64.b64encode(key.encode()).decode() not in out
        c = apps.read_namespaced_deployment("key-llm", namespace).spec.template.spec.containers[0]
        env = [e for e in c.env if e.name == "VLLM_API_KEY"]
        assert env and env[0].value is None and env[0].value_from.secret_key_ref.name == "llm-api-key"
        assert key not in " ".join(c.args)
        assert {c.startup_probe.http_get.path, c.readiness_probe.http_get.path, c.liveness_probe.http_get.path} == {"/health"}
        wait_for(lambda: _running(v1, namespace, "key-llm"), timeout=120, what="the keyed vLLM pod Running")
    finally:
        _delete_and_wait(v1, namespace)
