"""k8s_apply hands no Secret value back: not in its results, diffs or the arguments it echoes."""
from __future__ import annotations

import json

from ansible_collections.gpuops.llm.plugins.module_utils.apply import REDACTED
from ansible_collections.gpuops.llm.plugins.modules.k8s_apply import load_definitions, redacted_invocation

DEFINITIONS = """
apiVersion: v1
kind: ConfigMap
metadata: {name: c}
data: {a: "1"}
---
apiVersion: v1
kind: Secret
metadata: {name: hf}
stringData: {token: hf_s3cret}
data: {other: aGZfczNjcmV0Mg==}
"""


def test_the_echoed_arguments_carry_the_keys_but_no_secret_value():
    params = {"definitions": DEFINITIONS, "namespace": "ns", "state": "present", "api_key": None}
    manifests = load_definitions(DEFINITIONS)
    inv = redacted_invocation(params, manifests)
    text = json.dumps(inv)
    assert "hf_s3cret" not in text and "aGZfczNjcmV0Mg==" not in text
    secret = inv["module_args"]["definitions"][1]
    assert secret["stringData"] == {"token": REDACTED} and secret["data"] == {"other": REDACTED}
    assert inv["module_args"]["definitions"][0]["data"] == {"a": "1"}
    assert inv["module_args"]["namespace"] == "ns"
    assert manifests[1]["stringData"] == {"token": "hf_s3cret"}  # what is applied keeps its values


def test_without_a_secret_ansible_echoes_the_arguments_itself():
    manifests = load_definitions(DEFINITIONS.split("---", maxsplit=1)[0])
    assert redacted_invocation({"definitions": DEFINITIONS}, manifests) is None
