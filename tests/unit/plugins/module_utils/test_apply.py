"""When is a manifest already applied? Server defaults add fields; they must not look like drift."""
from __future__ import annotations

import base64

from ansible_collections.gpuops.llm.plugins.module_utils import apply


def test_server_defaults_are_not_drift():
    desired = {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i:1",
                                                              "ports": [{"containerPort": 80}]}]}}}}
    live = {"spec": {"replicas": 1, "template": {"spec": {
        "dnsPolicy": "ClusterFirst",
        "containers": [{"name": "c", "image": "i:1", "imagePullPolicy": "IfNotPresent",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}]}]}}}}
    assert apply.is_subset(desired, live)


def test_a_changed_or_missing_field_is_drift():
    live = {"spec": {"containers": [{"name": "c", "image": "i:1"}]}}
    assert not apply.is_subset({"spec": {"containers": [{"name": "c", "image": "i:2"}]}}, live)
    assert not apply.is_subset({"spec": {"containers": [{"name": "c", "args": ["x"]}]}}, live)
    assert not apply.is_subset({"spec": {"containers": [{"name": "c"}, {"name": "d"}]}}, live)


def test_quantities_and_numbers_compare_by_value():
    assert apply.is_subset({"cpu": "0.5", "memory": "1024Mi", "port": 8000}, {"cpu": "500m", "memory": "1Gi", "port": "8000"})
    assert not apply.is_subset({"cpu": "1"}, {"cpu": "500m"})
    assert not apply.is_subset({"enabled": True}, {"enabled": "True"})


def test_a_null_field_means_absent():
    assert apply.is_subset({"labels": {"a": "1", "gone": None}}, {"labels": {"a": "1"}})
    assert not apply.is_subset({"labels": {"gone": None}}, {"labels": {"gone": "x"}})


def test_secret_string_data_compares_as_data():
    m = {"kind": "Secret", "stringData": {"token": "s3cret"}}
    live = {"kind": "Secret", "data": {"token": base64.b64encode(b"s3cret").decode()}}
    assert apply.is_subset({k: v for k, v in apply.comparable(m).items() if k != "kind"}, live)
