# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""node_annotations: validation, ownership, one LIST + a PATCH only where a node differs."""
from __future__ import annotations

import copy
import json
from urllib.parse import urlsplit

import pytest

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8s
from ansible_collections.gpuops.llm.plugins.module_utils.node_annotations import (
    NodeAnnotationsError,
    apply,
    desired_annotations,
    normalize,
    record_key,
)

# The Cluster Autoscaler's node annotation (the seed's `kubectl annotate node ... scale-down-disabled=true`).
DISABLED = "cluster-autoscaler.kubernetes.io/scale-down-disabled"


def node(name, labels=None, annotations=None):
    return {"metadata": {"name": name, "labels": dict(labels or {}), "annotations": dict(annotations or {}),
                         "resourceVersion": "1"}}


def merge(obj, patch):
    if not isinstance(patch, dict):
        return patch
    out = dict(obj) if isinstance(obj, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge(out.get(k), v)
    return out


class _Resp:
    def __init__(self, status, payload):
        self.status, self.reason, self._data = status, "", json.dumps(payload).encode()

    def read(self):
        return self._data


class FakeApi:
    """LIST, GET and merge PATCH of Nodes with resourceVersion preconditions; ``race`` makes the
    next PATCH of that node meet a newer version (a 409), as when another writer got there first."""

    def __init__(self, nodes, race=()):
        self.nodes = {n["metadata"]["name"]: copy.deepcopy(n) for n in nodes}
        self.race = set(race)
        self.requests = []

    def param_serialize(self, method, path, query_params=None, header_params=None, body=None, auth_settings=None):
        return method, path, header_params, body, []

    def call_api(self, method, url, header_params=None, body=None, post_params=None, _request_timeout=None):
        self.requests.append(method)
        parts = urlsplit(url).path.strip("/").split("/")
        if method == "GET" and parts == ["api", "v1", "nodes"]:
            return _Resp(200, {"kind": "NodeList", "items": list(self.nodes.values())})
        current = self.nodes[parts[-1]]
        if method == "GET":
            return _Resp(200, current)
        if parts[-1] in self.race:
            self.race.discard(parts[-1])
            current["metadata"]["annotations"]["someone-else"] = "raced"
            current["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            return _Resp(409, {"kind": "Status", "reason": "Conflict", "message": "modified"})
        body = copy.deepcopy(body)
        body["metadata"].pop("resourceVersion")
        updated = merge(current, body)
        updated["metadata"]["resourceVersion"] = str(int(current["metadata"]["resourceVersion"]) + 1)
        self.nodes[parts[-1]] = updated
        return _Resp(200, updated)

    def writes(self):
        return sum(1 for m in self.requests if m != "GET")


def cluster():
    return [node("inf-0", {"workload-class": "inference", "always-on": "true"}, {"team": "ml"}),
            node("inf-1", {"workload-class": "inference"}),
            node("train-0", {"workload-class": "training"}),
            node("cpu-0", {})]


def annotations_of(api, name):
    return api.nodes[name]["metadata"]["annotations"]


@pytest.mark.parametrize("kwargs, needle", [
    ({"annotations": {"Bad Key": "x"}}, "annotations key 'Bad Key'"),
    ({"annotations": {DISABLED: ["a"]}}, "annotations['%s'] must be a string" % DISABLED),
    ({"annotations": {record_key("x"): "1"}}, "reserved"),
    ({"annotations": {}, "owner": "Not_DNS"}, "owner 'Not_DNS'"),
    ({"annotations": {}, "selector": "a in (b"}, "selector 'a in (b' is invalid"),
    ({"annotations": {}, "nodes": [""]}, "nodes[0]"),
])
def test_bad_input_names_the_field(kwargs, needle):
    with pytest.raises(NodeAnnotationsError) as info:
        normalize(**kwargs)
    assert needle in str(info.value)


def test_values_become_strings():
    out, _req, _names = normalize({DISABLED: True, "n": 3})
    assert out == {DISABLED: "true", "n": "3"}


def test_first_run_then_rerun_writes_nothing():
    api = FakeApi(cluster())
    k8s = K8s(api)
    check = apply(k8s, {DISABLED: True}, owner="ca", selector="workload-class=inference", check_mode=True, diff=True)
    assert api.writes() == 0 and api.requests == ["GET"], "check mode: one LIST, no write"
    real = apply(k8s, {DISABLED: True}, owner="ca", selector="workload-class=inference", diff=True)
    assert check["patched"] == real["patched"] == ["inf-0", "inf-1"]
    assert check["diff"] == real["diff"]
    assert real["diff"]["before"]["inf-0"] == {} and real["diff"]["after"]["inf-0"][DISABLED] == "true"
    assert annotations_of(api, "inf-0")[DISABLED] == "true" and annotations_of(api, "inf-0")["team"] == "ml"
    assert DISABLED not in annotations_of(api, "train-0")
    assert api.writes() == 2
    before = api.writes()
    again = apply(k8s, {DISABLED: True}, owner="ca", selector="workload-class=inference")
    assert again["changed"] is False and again["patched"] == [] and api.writes() == before


def test_narrowing_the_selection_releases_only_our_keys():
    api = FakeApi(cluster())
    k8s = K8s(api)
    apply(k8s, {DISABLED: "true"}, owner="ca", selector="workload-class=inference")
    # Someone else's annotation on the node we are about to release survives.
    api.nodes["inf-1"]["metadata"]["annotations"]["ops/ticket"] = "123"
    result = apply(k8s, {DISABLED: "true"}, owner="ca", selector="always-on=true")
    assert result["selected"] == ["inf-0"] and result["released"] == ["inf-1"]
    assert DISABLED not in annotations_of(api, "inf-1") and record_key("ca") not in annotations_of(api, "inf-1")
    assert annotations_of(api, "inf-1")["ops/ticket"] == "123"
    assert annotations_of(api, "inf-0")[DISABLED] == "true"


def test_dropped_key_is_removed_but_foreign_key_of_same_node_kept():
    current = {DISABLED: "true", "other": "x", record_key("ca"): json.dumps([DISABLED, "gone"]), "gone": "1"}
    after = desired_annotations(current, {DISABLED: "true"}, "ca", selected=True)
    assert "gone" not in after and after["other"] == "x" and json.loads(after[record_key("ca")]) == [DISABLED]


def test_other_owner_keys_are_untouched():
    current = {"a": "1", record_key("other"): json.dumps(["a"])}
    assert desired_annotations(current, {}, "ca", selected=False) == current


def test_conflict_is_retried_with_a_fresh_read():
    api = FakeApi(cluster(), race={"inf-1"})
    result = apply(K8s(api), {DISABLED: "true"}, owner="ca", nodes=["inf-1"])
    assert result["patched"] == ["inf-1"]
    assert annotations_of(api, "inf-1")[DISABLED] == "true" and annotations_of(api, "inf-1")["someone-else"] == "raced"


def test_unknown_node_fails_before_any_write():
    api = FakeApi(cluster())
    with pytest.raises(NodeAnnotationsError) as info:
        apply(K8s(api), {DISABLED: "true"}, nodes=["inf-0", "ghost"])
    assert "ghost" in str(info.value) and api.writes() == 0


def test_no_selector_selects_nothing():
    api = FakeApi(cluster())
    result = apply(K8s(api), {DISABLED: "true"}, owner="ca")
    assert result["selected"] == [] and api.writes() == 0
