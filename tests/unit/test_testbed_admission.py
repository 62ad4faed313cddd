"""testbed/admission.py: the policies that refuse what a real node would, generated from
testbed/cluster.yml and testbed/images.yml, and the node agent's own refusal (no NVML, no GPUs).

What the generated CEL does to real pods is held by tests/integration/test_testbed_refusals.py on a
running apiserver; these tests hold the generator's inputs and shape."""
from __future__ import annotations

import pathlib
import sys
from types import SimpleNamespace as NS

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed"))

import admission  # noqa: E402

SPEC = yaml.safe_load((ROOT / "testbed" / "cluster.yml").read_text())


def _by_name(objs):
    return {(o["kind"], o["metadata"]["name"]): o for o in objs}


def test_images_yml_follows_its_schema():
    images = admission.load_images()
    assert {e["repository"] for e in images} >= {"docker.io/vllm/vllm-openai"}
    vllm = next(e for e in images if e["repository"] == "docker.io/vllm/vllm-openai")
    assert vllm["users"]["vllm"] == {"uid": 2000, "gid": 0} and vllm["default_uid"] == 0


@pytest.mark.parametrize("entry, field", [
    ({"tags": ["1"], "default_uid": 0, "users": {"root": {"uid": 0, "gid": 0}}, "source": "x"}, "repository"),
    ({"repository": "r/x:1", "tags": ["1"], "default_uid": 0, "users": {"root": {"uid": 0, "gid": 0}}, "source": "x"},
     "must not carry a tag"),
    ({"repository": "r/x", "tags": ["1"], "default_uid": 5, "users": {"root": {"uid": 0, "gid": 0}}, "source": "x"},
     "default_uid 5"),
    ({"repository": "r/x", "tags": ["1"], "default_uid": 0, "users": {"root": {"uid": "0", "gid": 0}}, "source": "x"},
     "users.root"),
    ({"repository": "r/x", "tags": ["1"], "default_uid": 0, "users": {"root": {"uid": 0, "gid": 0}}, "source": "x",
      "anyuid": True}, "unknown key anyuid"),
])
def test_images_yml_errors_name_the_entry_and_field(tmp_path, entry, field):
    p = tmp_path / "images.yml"
    p.write_text(yaml.safe_dump({"images": [entry]}))
    with pytest.raises(ValueError, match=field):
        admission.load_images(p)


def test_every_node_says_its_default_runtime_and_both_cases_exist():
    runtimes = {n["name"]: admission.node_runtime(n) for n in SPEC["nodes"]}
    gpu = [n["name"] for n in SPEC["nodes"] if n.get("gpu_count")]
    assert all("default_runtime" in n for n in SPEC["nodes"])
    assert {runtimes[n] for n in gpu} == {"runc", "nvidia"}
    # Like stock kubeadm / managed nodes with the toolkit installed but not made default.
    assert sum(runtimes[n] == "runc" for n in gpu) > len(gpu) / 2


def test_default_runtime_is_runc_and_bad_values_name_the_node():
    assert admission.node_runtime({"name": "x"}) == "runc"
    with pytest.raises(ValueError, match="node x: default_runtime 'crun'"):
        admission.node_runtime({"name": "x", "default_runtime": "crun"})
    with pytest.raises(ValueError, match="refuse must be true or false"):
        admission.refusing({"refuse": "yes"})
    assert admission.refusing({}) is False


def test_node_manifest_publishes_the_default_runtime():
    import testbed
    tb = testbed.Testbed()
    for n in tb.spec["nodes"]:
        ann = tb.node_manifest(n)["metadata"]["annotations"]
        assert ann[admission.RUNTIME_ANNOTATION] == admission.node_runtime(n)


def test_each_policy_has_a_deny_binding():
    objs = _by_name(admission.objects(SPEC, admission.load_images()))
    for name in admission.POLICY_NAMES:
        pol = objs[("ValidatingAdmissionPolicy", name)]
        bind = objs[("ValidatingAdmissionPolicyBinding", name)]
        assert pol["apiVersion"] == bind["apiVersion"] == "admissionregistration.k8s.io/v1"
        assert bind["spec"]["policyName"] == name and bind["spec"]["validationActions"] == ["Deny"]
        assert pol["spec"]["failurePolicy"] == "Fail"
    kinds = [o["kind"] for o in admission.objects(SPEC, admission.load_images())]
    assert kinds == ["ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"] * 3


def test_gpu_runtime_policy_judges_the_running_transition_on_runc_default_nodes():
    spec = {"nodes": [{"name": "a", "default_runtime": "runc"}, {"name": "b", "default_runtime": "nvidia"}, {"name": "c"}]}
    pol = admission.gpu_runtime_policy(spec, [])[0]["spec"]
    rule = pol["matchConstraints"]["resourceRules"][0]
    assert rule["resources"] == ["pods/status"] and rule["operations"] == ["UPDATE"]
    cond = {c["name"]: c["expression"] for c in pol["matchConditions"]}
    # Nodes outside cluster.yml (the autoscaler's) count as runc: only the nvidia ones are exempt.
    assert '!(object.spec.nodeName in ["b"])' in cond["on-a-runc-default-node"]
    assert "object.status.phase == 'Running'" in cond["becomes-running"]
    for needle in ("nvidia.com/gpu", "nvidia.com/mig-", "nvidia-device-plugin", "gpu-feature-discovery",
                   "dcgm-exporter", "nvidia-device-plugin-mps-control-daemon"):
        assert needle in cond["needs-nvml"]
    msg = pol["validations"][0]["messageExpression"]
    assert "runtimeClassName" in msg and "runc" in msg and "nvidia" in msg


def test_handler_policy_takes_runtime_classes_as_params():
    pol, bind = admission.gpu_runtime_handler_policy(SPEC, [])
    assert pol["spec"]["paramKind"] == {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass"}
    assert bind["spec"]["paramRef"] == {"selector": {}, "parameterNotFoundAction": "Allow"}
    assert "params.handler == \"nvidia\"" in pol["spec"]["validations"][0]["expression"]


def test_nvml_images_from_images_yml_count_as_needing_nvml():
    images = [{"repository": "nvcr.io/nvidia/k8s-device-plugin", "nvml": True, "users": {}, "default_uid": 0}]
    assert 'startsWith("nvcr.io/nvidia/k8s-device-plugin:")' in admission.needs_nvml(images)
    assert "k8s-device-plugin" not in admission.needs_nvml([])


def test_image_user_policy_has_one_uid_rule_per_image_with_its_users():
    images = admission.load_images()
    pol = admission.image_user_policy(images)[0]["spec"]
    assert pol["matchConstraints"]["resourceRules"][0]["operations"] == ["CREATE"]
    assert pol["matchConstraints"]["resourceRules"][0]["resources"] == ["pods"]
    exprs = [v["expression"] for v in pol["validations"]]
    for e in images:
        uid_rules = [x for x in exprs if ('"%s:"' % e["repository"]) in x and " in [" in x]
        if e.get("any_uid"):
            assert not uid_rules
        else:
            assert len(uid_rules) == 1
            assert admission._cel(sorted({u["uid"] for u in e["users"].values()})) in uid_rules[0]
    vllm = next(x for x in exprs if '"docker.io/vllm/vllm-openai:"' in x and " in [" in x)
    assert "in [0, 2000]" in vllm
    assert '"vllm/vllm-openai:"' in vllm  # Docker Hub short form too


def test_any_uid_images_are_not_judged_on_uid():
    images = [{"repository": "r/x", "default_uid": 1000, "users": {"app": {"uid": 1000, "gid": 0}}, "any_uid": True,
               "user": "1000"}]
    pol = admission.image_user_policy(images)[0]["spec"]
    assert not [v for v in pol["validations"] if '"r/x:"' in v["expression"]]


def test_run_as_non_root_follows_the_kubelet():
    """verifyRunAsNonRoot: root images, named USERs and runAsUser 0 are refused; numeric non-root USER is not."""
    def rules(user, default_uid):
        users = {"root": {"uid": 0, "gid": 0}, "u": {"uid": 1000, "gid": 1000}}
        e = {"repository": "r/x", "default_uid": default_uid, "users": users, "any_uid": True}
        if user is not None:
            e["user"] = user
        return [v for v in admission.image_user_policy([e])[0]["spec"]["validations"] if '"r/x:"' in v["expression"]]
    assert "runs as root" in rules(None, 0)[0]["messageExpression"]
    assert "non-numeric USER u" in rules("u", 1000)[0]["messageExpression"]
    assert rules("1000", 1000) == []
    generic = admission.image_user_policy([])[0]["spec"]["validations"][0]
    assert "!= 0" in generic["expression"] and "runAsUser 0" in generic["messageExpression"]


def test_repository_aliases():
    assert admission.repository_aliases("docker.io/library/busybox") == [
        "docker.io/library/busybox", "library/busybox", "index.docker.io/library/busybox", "busybox"]
    assert admission.repository_aliases("nvcr.io/nvidia/x") == ["nvcr.io/nvidia/x"]


# ---- the node agent --------------------------------------------------------------------------

class FakeApi:
    def __init__(self, pods, nodes, classes, refusing=True):
        self.pods, self.nodes, self.classes, self.refusing = pods, nodes, classes, refusing


def _pod(name, node, rc=None, app="nvidia-device-plugin"):
    return NS(metadata=NS(name=name, labels={"app.kubernetes.io/name": app}, deletion_timestamp=None),
              spec=NS(node_name=node, runtime_class_name=rc, containers=[NS(env=[])]), status=NS(phase="Running"))


@pytest.fixture
def agent(monkeypatch):
    import node_agent
    state = {}

    class V1:
        api_client = "api"

        def list_pod_for_all_namespaces(self, label_selector=None, field_selector=None):
            return NS(items=state["api"].pods)

        def list_node(self):
            return NS(items=[NS(metadata=NS(name=n, annotations={admission.RUNTIME_ANNOTATION: rt}))
                             for n, rt in state["api"].nodes.items()])

    class NodeV1:
        def __init__(self, _api):
            pass

        def list_runtime_class(self):
            return NS(items=[NS(metadata=NS(name=n), handler=h) for n, h in state["api"].classes.items()])

    monkeypatch.setattr(node_agent.client, "NodeV1Api", NodeV1)
    monkeypatch.setattr(admission, "active", lambda _api: state["api"].refusing)

    def run(api):
        state["api"] = api
        return node_agent.running_pods(V1())
    return run


def test_agent_counts_no_plugin_that_would_get_no_nvml(agent):
    nodes = {"runc-node": "runc", "nv-node": "nvidia"}
    classes = {"nvidia": "nvidia", "plain": "runc"}
    pods = [_pod("a", "runc-node"), _pod("b", "runc-node", "plain"), _pod("c", "nv-node"),
            _pod("g", "runc-node", app="gpu-feature-discovery")]
    assert agent(FakeApi(pods, nodes, classes)) == {"nv-node": {"nvidia-device-plugin": "none"}}
    assert agent(FakeApi([_pod("d", "runc-node", "nvidia")], nodes, classes)) == {
        "runc-node": {"nvidia-device-plugin": "none"}}


def test_agent_counts_every_running_plugin_while_the_testbed_does_not_refuse(agent):
    pods = [_pod("a", "runc-node")]
    assert agent(FakeApi(pods, {"runc-node": "runc"}, {}, refusing=False)) == {
        "runc-node": {"nvidia-device-plugin": "none"}}


def test_gpu_operator_stand_in_operands_name_the_runtime_class_the_refusals_demand():
    """gpu-operator controllers/object_controls.go setRuntimeClass (default branch, unconfirmed at
    v26.7.0): under containerd every operand DaemonSet runs with operator.runtimeClass, default
    "nvidia". The stand-in does the same, and every operand that calls NVML is one the refusals judge."""
    import gpu_operator_standin as standin  # noqa: E402  (needs the kubernetes client, as the testbed does)
    from ansible_collections.gpuops.llm.plugins.module_utils import gpu_operator as go

    assert standin.RUNTIME_CLASS == "nvidia"
    for _key, ds, deploy_label in go.COMPONENTS.values():
        spec = standin.daemonset(ds, deploy_label, "mixed")["spec"]["template"]["spec"]
        assert spec["runtimeClassName"] == "nvidia", ds
        if ds != "nvidia-mig-manager":  # mig-manager drives nvidia-smi/mig-parted, listed apart
            assert ds in admission.NVML_OPERATOR_APPS, ds
