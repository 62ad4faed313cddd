# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The Kubernetes adapter without a cluster: auth, caching, errors, patches, requests."""
from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils import k8s as k
from ansible_collections.gpuops.llm.plugins.module_utils.k8s import (
    FIELD_MANAGER,
    K8s,
    K8sConflict,
    K8sError,
    K8sEvictionBlocked,
    K8sMissingLibrary,
    K8sNotFound,
    K8sWaitTimeout,
    auth_digest,
    error_from_response,
    label_key_error,
    label_value_error,
    merge_patch,
    parse_label_selector,
    resolve_auth,
    selector_matches,
    translate_exception,
    wait_for,
    with_resource_version,
)

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "https://one.example:6443", insecure-skip-tls-verify: true}
- name: two
  cluster: {server: "https://two.example:6443", insecure-skip-tls-verify: true}
users:
- name: u
  user: {token: abc123}
contexts:
- name: ctx-one
  context: {cluster: one, user: u}
- name: ctx-two
  context: {cluster: two, user: u}
current-context: ctx-one
"""


# --------------------------------------------------------------------------- auth
def test_params_beat_environment_and_env_fills_gaps():
    env = {"K8S_AUTH_CONTEXT": "from-env", "K8S_AUTH_HOST": "https://env:6443",
           "K8S_AUTH_VERIFY_SSL": "no", "K8S_AUTH_KUBECONFIG": "/env/kc"}
    auth = resolve_auth({"context": "from-param"}, env)
    assert auth["context"] == "from-param"
    assert auth["host"] == "https://env:6443"
    assert auth["validate_certs"] is False
    assert auth["kubeconfig"] == "/env/kc"
    assert set(auth) == set(k.AUTH_KEYS)


def test_kubeconfig_falls_back_to_KUBECONFIG_after_K8S_AUTH_KUBECONFIG():
    assert resolve_auth({}, {"KUBECONFIG": "/a:/b"})["kubeconfig"] == "/a:/b"
    assert resolve_auth({}, {"KUBECONFIG": "/a", "K8S_AUTH_KUBECONFIG": "/k"})["kubeconfig"] == "/k"
    assert resolve_auth({}, {})["kubeconfig"] is None


def test_auth_digest_depends_on_settings_and_file_contents(tmp_path):
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG)
    base = resolve_auth({"kubeconfig": str(kc)}, {})
    first = auth_digest(base)
    assert first == auth_digest(dict(base))
    assert first != auth_digest(dict(base, context="ctx-two"))
    assert first != auth_digest(dict(base, api_key="t0ken"))
    kc.write_text(KUBECONFIG.replace("abc123", "rotated"))
    assert first != auth_digest(base), "a rotated credential in the same file must give a new digest"


def test_client_cache_reuses_one_client_per_digest(tmp_path):
    k.clear_client_cache()
    built = []

    def factory(auth):
        built.append(auth)
        return object()

    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG)
    a = k.get_api_client({"kubeconfig": str(kc)}, {}, factory=factory)
    b = k.get_api_client({"kubeconfig": str(kc)}, {}, factory=factory)
    c = k.get_api_client({"kubeconfig": str(kc), "context": "ctx-two"}, {}, factory=factory)
    assert a is b and a is not c
    assert len(built) == 2
    k.clear_client_cache()


def test_build_configuration_reads_kubeconfig_context_and_overrides(tmp_path):
    pytest.importorskip("kubernetes")
    kc = tmp_path / "kc"
    kc.write_text(KUBECONFIG)
    conf = k.build_configuration(resolve_auth({"kubeconfig": str(kc), "context": "ctx-two"}, {}))
    assert conf.host == "https://two.example:6443"
    conf = k.build_configuration(resolve_auth({"kubeconfig": str(kc), "host": "https://x:1",
                                               "api_key": "tok", "validate_certs": True}, {}))
    assert conf.host == "https://x:1"
    assert conf.api_key["authorization"] == "Bearer tok"
    assert conf.verify_ssl is True


def test_missing_explicit_kubeconfig_is_a_clear_error(tmp_path):
    pytest.importorskip("kubernetes")
    with pytest.raises(k.K8sConfigError, match="does not exist"):
        k.build_configuration(resolve_auth({"kubeconfig": str(tmp_path / "nope")}, {}))


def test_missing_library_tells_how_to_install(monkeypatch):
    monkeypatch.setattr(k, "HAS_KUBERNETES", False)
    k.clear_client_cache()
    with pytest.raises(K8sMissingLibrary, match="pip install kubernetes"):
        k.get_api_client({"host": "https://x"}, {})


# --------------------------------------------------------------------------- errors
def _status(message, reason):
    return json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                       "message": message, "reason": reason})


def test_conflict_becomes_k8s_conflict_naming_verb_object_and_api_message():
    err = error_from_response(409, "Conflict", _status("the object has been modified", "Conflict"),
                              "PATCH", "Node", "gpu-0")
    assert isinstance(err, K8sConflict)
    text = str(err)
    for part in ("PATCH", "Node 'gpu-0'", "409", "Conflict", "the object has been modified"):
        assert part in text
    assert err.to_dict()["status"] == 409


def test_eviction_429_is_a_pdb_refusal():
    body = _status("Cannot evict pod as it would violate the pod's disruption budget.", "TooManyRequests")
    err = error_from_response(429, None, body, "EVICT", "Eviction", "vllm-0", "llm")
    assert isinstance(err, K8sEvictionBlocked)
    assert "Eviction 'llm/vllm-0'" in str(err)
    assert "PodDisruptionBudget" in str(err)
    assert err.reason == "TooManyRequests"


def test_not_found_and_forbidden_hints():
    assert isinstance(error_from_response(404, "Not Found", b"", "GET", "Node", "x"), K8sNotFound)
    forbidden = error_from_response(403, "Forbidden", _status("nodes is forbidden", "Forbidden"),
                                    "PATCH", "Node", "x")
    assert "RBAC" in str(forbidden) and "nodes is forbidden" in str(forbidden)
    plain = error_from_response(500, "Internal Server Error", "etcd gone", "LIST", "Node")
    assert "etcd gone" in str(plain) and plain.status == 500


def test_translate_library_exceptions():
    kubernetes = pytest.importorskip("kubernetes")
    exc = kubernetes.client.exceptions.ApiException(status=422, reason="Unprocessable Entity")
    exc.body = _status("metadata.labels: Invalid value", "Invalid")
    err = translate_exception(exc, "PATCH", "Node", "n1")
    assert err.status == 422 and "metadata.labels: Invalid value" in str(err)
    err = translate_exception(ConnectionRefusedError("refused"), "LIST", "Node")
    assert "cannot reach the Kubernetes API server" in str(err) and "refused" in str(err)
    same = K8sError("x")
    assert translate_exception(same) is same


# --------------------------------------------------------------------------- pure rules
def test_merge_patch():
    before = {"metadata": {"labels": {"a": "1", "b": "2"}}, "spec": {"taints": [{"key": "x"}]}}
    after = {"metadata": {"labels": {"a": "1", "c": "3"}}, "spec": {"taints": []}}
    assert merge_patch(before, after) == {"metadata": {"labels": {"b": None, "c": "3"}}, "spec": {"taints": []}}
    assert merge_patch(before, before) is None


def test_resource_version_precondition():
    assert with_resource_version({"spec": {"x": 1}}, "42") == {"spec": {"x": 1}, "metadata": {"resourceVersion": "42"}}


@pytest.mark.parametrize("key", ["workload", "workload-class", "nvidia.com/gpu.product", "gpuops.llm/node-pool.managed",
                                 "a" * 63, "node-role.kubernetes.io/gpu"])
def test_valid_label_keys(key):
    assert label_key_error(key) is None


@pytest.mark.parametrize("key", ["", "-x", "x-", "a" * 64, "UPPER.example/x", "has space", "a/b/c", "/x"])
def test_invalid_label_keys(key):
    assert label_key_error(key)


@pytest.mark.parametrize("value,ok", [("", True), ("A100-SXM4-40GB", True), ("a" * 63, True), ("a" * 64, False),
                                      ("has space", False), ("-x", False), ("x.", False), ("1g.10gb", True)])
def test_label_values(value, ok):
    assert (label_value_error(value) is None) == ok


def test_selector_parse_and_match():
    labels = {"pool": "gpu", "zone": "a", "nvidia.com/gpu.present": "true"}
    cases = [
        ("pool=gpu", True), ("pool==gpu", True), ("pool!=gpu", False), ("pool!=cpu", True),
        ("pool in (gpu, cpu)", True), ("pool notin (gpu)", False), ("missing notin (x)", True),
        ("nvidia.com/gpu.present", True), ("!nvidia.com/gpu.present", False), ("!missing", True),
        ("pool=gpu,zone=b", False), ("pool=gpu, zone in (a,b)", True), ("missing=x", False),
    ]
    for selector, expected in cases:
        assert selector_matches(parse_label_selector(selector), labels) is expected, selector
    assert parse_label_selector("") == []


@pytest.mark.parametrize("selector", ["pool in (a", "pool=has space", "=x", "pool,,zone", "UP.example/x=1"])
def test_bad_selectors_raise(selector):
    with pytest.raises(ValueError):
        parse_label_selector(selector)


# --------------------------------------------------------------------------- waiter
class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_for_returns_first_truthy_value():
    clock = FakeClock()
    values = iter([None, 0, "ready"])
    assert wait_for(lambda: next(values), 10, 1, clock=clock, sleep=clock.sleep) == "ready"
    assert clock.now == 2


def test_wait_for_times_out_with_description():
    clock = FakeClock()
    with pytest.raises(K8sWaitTimeout, match="nvidia.com/gpu on gpu-0"):
        wait_for(lambda: False, 5, 2, description="nvidia.com/gpu on gpu-0", clock=clock, sleep=clock.sleep)
    assert clock.now == 5


def test_wait_for_retries_server_errors_but_not_client_errors():
    clock = FakeClock()
    answers = [K8sError("boom", status=503), "ok"]

    def predicate():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert wait_for(predicate, 10, 1, clock=clock, sleep=clock.sleep) == "ok"

    def forbidden():
        raise K8sError("no", status=403)

    with pytest.raises(K8sError, match="no"):
        wait_for(forbidden, 10, 1, clock=clock, sleep=clock.sleep)
    assert clock.now == 1, "a 403 is an answer, not something to wait out"


# --------------------------------------------------------------------------- adapter requests
class FakeResponse:
    def __init__(self, status, body):
        self.status = status
        self.reason = {200: "OK", 201: "Created", 404: "Not Found", 409: "Conflict", 429: "Too Many Requests"}.get(status, "")
        self._body = body

    def read(self):
        return self._body


class FakeApiClient:
    """Looks like kubernetes >= 35's ApiClient (param_serialize + call_api)."""

    def __init__(self, responses):
        self.responses = list(responses)
        self.sent = []

    def param_serialize(self, method, path, query_params=None, header_params=None, body=None, auth_settings=None):
        url = "https://fake" + path
        if query_params:
            url += "?" + "&".join("%s=%s" % kv for kv in query_params)
        return method, url, header_params, body, []

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        self.sent.append({"method": method, "url": url, "headers": dict(header_params or {}), "body": body})
        status, payload = self.responses.pop(0)
        return FakeResponse(status, json.dumps(payload).encode() if payload is not None else b"")


def test_request_counts_writes_and_logs_calls():
    api = FakeApiClient([(200, {"items": [{"metadata": {"name": "n1"}}]}), (200, {"metadata": {"name": "n1"}})])
    adapter = K8s(api)
    nodes = adapter.list_nodes()
    assert [n["metadata"]["name"] for n in nodes] == ["n1"]
    assert adapter.write_count == 0
    adapter.patch_node("n1", {"metadata": {"labels": {"a": "b"}}})
    assert adapter.write_count == 1
    assert adapter.calls == [("GET", "/api/v1/nodes"), ("PATCH", "/api/v1/nodes/n1")]
    assert api.sent[1]["headers"]["Content-Type"] == "application/merge-patch+json"


def test_request_errors_name_the_object():
    api = FakeApiClient([(404, {"kind": "Status", "message": 'nodes "ghost" not found', "reason": "NotFound"})])
    with pytest.raises(K8sNotFound, match="Node 'ghost'"):
        K8s(api).patch_node("ghost", {"metadata": {}})


def test_get_or_none_returns_none_on_404():
    api = FakeApiClient([(404, {"kind": "Status", "reason": "NotFound", "message": "x"})])
    assert K8s(api).get_or_none("v1", "ConfigMap", "cfg", "ns") is None
    assert api.sent[0]["url"] == "https://fake/api/v1/namespaces/ns/configmaps/cfg"


def test_server_side_apply_uses_one_field_manager_and_force_option():
    api = FakeApiClient([(200, {"kind": "DaemonSet"}), (200, {"kind": "DaemonSet"})])
    adapter = K8s(api)
    manifest = {"apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "dp", "namespace": "gpu"}}
    adapter.apply(manifest)
    adapter.apply(manifest, force=True)
    first, second = api.sent
    assert first["method"] == "PATCH"
    assert first["headers"]["Content-Type"] == "application/apply-patch+yaml"
    q1 = dict(parse_qsl(urlsplit(first["url"]).query))
    q2 = dict(parse_qsl(urlsplit(second["url"]).query))
    assert q1["fieldManager"] == FIELD_MANAGER == "gpuops.llm"
    assert q1["force"] == "false" and q2["force"] == "true"
    assert urlsplit(first["url"]).path == "/apis/apps/v1/namespaces/gpu/daemonsets/dp"
    assert json.loads(first["body"]) == manifest
    assert adapter.write_count == 2


def test_apply_rejects_incomplete_manifest_without_a_request():
    api = FakeApiClient([])
    with pytest.raises(K8sError, match="metadata.name"):
        K8s(api).apply({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {}})
    assert api.sent == []


def test_eviction_pdb_refusal_and_gone_pod():
    refusal = {"kind": "Status", "reason": "TooManyRequests",
               "message": "Cannot evict pod as it would violate the pod's disruption budget."}
    api = FakeApiClient([(429, refusal), (404, {"kind": "Status", "reason": "NotFound", "message": "gone"}),
                         (201, {"kind": "Status", "status": "Success"})])
    adapter = K8s(api)
    with pytest.raises(K8sEvictionBlocked, match="disruption budget"):
        adapter.evict("vllm-0", "llm")
    assert adapter.evict("vllm-0", "llm") is False
    assert adapter.evict("vllm-1", "llm", grace_period_seconds=30) is True
    body = api.sent[2]["body"]
    assert body["apiVersion"] == "policy/v1" and body["kind"] == "Eviction"
    assert body["deleteOptions"] == {"gracePeriodSeconds": 30}
    assert urlsplit(api.sent[2]["url"]).path == "/api/v1/namespaces/llm/pods/vllm-1/eviction"


def test_cordon_is_idempotent():
    cordoned = {"metadata": {"name": "n", "resourceVersion": "7"}, "spec": {"unschedulable": True}}
    api = FakeApiClient([(200, cordoned), (200, cordoned), (200, cordoned)])
    adapter = K8s(api)
    assert adapter.cordon("n") is False
    assert adapter.write_count == 0
    assert adapter.uncordon("n") is True
    assert api.sent[-1]["body"] == {"spec": {"unschedulable": None}, "metadata": {"resourceVersion": "7"}}


def test_uncordon_rereads_on_conflict():
    """The node agent writes labels while the mig role restores schedulability: a 409 re-reads."""
    stale = {"metadata": {"name": "n", "resourceVersion": "7"}, "spec": {"unschedulable": True}}
    fresh = {"metadata": {"name": "n", "resourceVersion": "8"}, "spec": {"unschedulable": True}}
    conflict = {"kind": "Status", "reason": "Conflict", "message": "the object has been modified"}
    api = FakeApiClient([(200, stale), (409, conflict), (200, fresh), (200, fresh)])
    adapter = K8s(api)
    assert adapter.uncordon("n") is True
    assert [s["method"] for s in api.sent] == ["GET", "PATCH", "GET", "PATCH"]
    assert api.sent[-1]["body"] == {"spec": {"unschedulable": None}, "metadata": {"resourceVersion": "8"}}


def test_patch_retries_on_conflict_after_rereading():
    stale = {"metadata": {"name": "n", "resourceVersion": "1", "labels": {}}}
    fresh = {"metadata": {"name": "n", "resourceVersion": "2", "labels": {"x": "y"}}}
    conflict = {"kind": "Status", "reason": "Conflict", "message": "the object has been modified"}
    api = FakeApiClient([(409, conflict), (200, fresh), (200, fresh)])
    adapter = K8s(api)
    seen = []

    def build(node):
        seen.append(node["metadata"]["resourceVersion"])
        return {"metadata": {"labels": {"a": "b"}}}

    attempts = adapter.patch_node_with_retry("n", build, node=stale, retries=3)[1]
    assert attempts == 2
    assert seen == ["1", "2"]
    assert api.sent[2]["body"]["metadata"]["resourceVersion"] == "2"
    assert adapter.write_count == 2


def test_patch_retry_gives_up():
    conflict = {"kind": "Status", "reason": "Conflict", "message": "modified"}
    node = {"metadata": {"name": "n", "resourceVersion": "1"}}
    api = FakeApiClient([(409, conflict), (200, node), (409, conflict)])
    with pytest.raises(K8sConflict):
        K8s(api).patch_node_with_retry("n", lambda n: {"metadata": {"labels": {"a": "b"}}}, node=node, retries=1)


def test_well_known_kinds_need_no_discovery():
    adapter = K8s(FakeApiClient([]))
    assert adapter.path_for("v1", "Node", "n") == "/api/v1/nodes/n"
    assert adapter.path_for("policy/v1", "PodDisruptionBudget", "p", "ns") == \
        "/apis/policy/v1/namespaces/ns/poddisruptionbudgets/p"
    with pytest.raises(K8sError, match="namespaced"):
        adapter.path_for("v1", "Pod", "p")
