"""GPU Operator detection and the nvidia.com/mig.config protocol (module_utils/gpu_operator.py).

Names and values are those of NVIDIA/gpu-operator v26.7.0 and NVIDIA/mig-parted v0.15.0; the
sources are listed in docs/conformance.md#gpu-operator."""
from __future__ import annotations

import pytest
import yaml

from ansible_collections.gpuops.llm.plugins.module_utils import gpu_operator as go


def _policy(name="cluster-policy", state="ready", spec=None, created="2026-01-01T00:00:00Z", namespace="gpu-operator"):
    return {"metadata": {"name": name, "creationTimestamp": created}, "spec": spec or {},
            "status": {"state": state, "namespace": namespace}}


def _ds(name, ns="gpu-operator", desired=2, ready=2):
    return {"metadata": {"name": name, "namespace": ns},
            "status": {"desiredNumberScheduled": desired, "numberReady": ready}}


def _node(name, labels):
    return {"metadata": {"name": name, "labels": labels}}


def test_names_are_the_operators_own():
    # assets/state-*/..._daemonset.yaml names and nodeSelectors; state_manager.go; reconfigure.go.
    assert go.CRD_NAME == "clusterpolicies.nvidia.com" and go.API_VERSION == "nvidia.com/v1"
    assert go.COMPONENTS["device_plugin"][1:] == ("nvidia-device-plugin-daemonset", "nvidia.com/gpu.deploy.device-plugin")
    assert go.COMPONENTS["gfd"][1:] == ("gpu-feature-discovery", "nvidia.com/gpu.deploy.gpu-feature-discovery")
    assert go.COMPONENTS["dcgm_exporter"][1:] == ("nvidia-dcgm-exporter", "nvidia.com/gpu.deploy.dcgm-exporter")
    assert go.COMPONENTS["mig_manager"][1:] == ("nvidia-mig-manager", "nvidia.com/gpu.deploy.mig-manager")
    assert [v[0] for v in go.COMPONENTS.values()] == ["devicePlugin", "gfd", "dcgmExporter", "migManager"]
    assert (go.MIG_CONFIG_LABEL, go.MIG_STATE_LABEL) == ("nvidia.com/mig.config", "nvidia.com/mig.config.state")
    assert go.MIG_STATES == ("pending", "rebooting", "success", "failed")
    assert go.PAUSED_FOR_MIG == "paused-for-mig-change"
    assert (go.DEFAULT_MIG_CONFIGMAP, go.MIG_CONFIG_KEY) == ("default-mig-parted-config", "config.yaml")


def test_detects_a_ready_operator_and_deploys_none_of_its_components():
    out = go.detect(True, [_policy()], [_ds("nvidia-device-plugin-daemonset"), _ds("nvidia-mig-manager")],
                    [_node("n1", {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.deploy.device-plugin": "true",
                                  "nvidia.com/mig.config": "all-balanced", "nvidia.com/mig.config.state": "success"})])
    assert out["detected"] and out["ready"] and out["policy"] == "cluster-policy" and out["namespace"] == "gpu-operator"
    assert out["deploy"] == {"device_plugin": False, "gfd": False, "dcgm_exporter": False}
    assert out["mig_manager"] is True
    assert out["components"]["device_plugin"]["daemonset_present"]
    assert not out["components"]["gfd"]["daemonset_present"]
    assert out["nodes"]["n1"] == {"gpu_present": True, "deploy": {"device_plugin": "true"},
                                  "mig_config": "all-balanced", "mig_config_state": "success"}
    assert out["warnings"] == []


def test_unset_enabled_means_enabled_and_false_hands_the_component_back_to_us():
    spec = {"dcgmExporter": {"enabled": False}, "gfd": {}, "migManager": {"enabled": False}}
    out = go.detect(True, [_policy(spec=spec)], [], [])
    assert out["deploy"] == {"device_plugin": False, "gfd": False, "dcgm_exporter": True}
    assert out["mig_manager"] is False


def test_no_crd_or_no_policy_is_no_operator_and_leftovers_are_only_reported():
    assert go.detect(False, [_policy()], [], [])["detected"] is False  # CRD not served: objects cannot exist
    out = go.detect(True, [], [_ds("nvidia-dcgm-exporter")], [_node("n1", {"nvidia.com/gpu.deploy.device-plugin": "true"})])
    assert out["detected"] is False
    assert out["deploy"] == {"device_plugin": True, "gfd": True, "dcgm_exporter": True}
    assert out["mig"] is None and out["mig_manager"] is False
    assert "leftovers" in out["warnings"][0] and "nvidia-dcgm-exporter" in out["warnings"][0]


def test_a_not_ready_operator_still_owns_its_components():
    out = go.detect(True, [_policy(state="notReady")], [], [])
    assert out["detected"] and not out["ready"]
    assert out["deploy"]["device_plugin"] is False
    assert "notReady" in out["warnings"][0]


def test_ignored_duplicate_policies_are_skipped():
    out = go.detect(True, [_policy("dup", state="ignored", created="2025-01-01T00:00:00Z"), _policy("real")], [], [])
    assert out["policy"] == "real"
    assert go.detect(True, [_policy("dup", state="ignored")], [], [])["detected"] is False


def test_mig_settings_follow_the_operator_defaults():
    assert go.mig_settings(_policy()) == {"strategy": "none", "manager_enabled": True,
                                          "config_map": "default-mig-parted-config", "config_map_custom": False,
                                          "default_config": ""}
    assert go.mig_settings(_policy(spec={"migManager": {"config": {}}}))["default_config"] == "all-disabled"
    s = go.mig_settings(_policy(spec={"mig": {"strategy": "mixed"},
                                      "migManager": {"config": {"name": "custom", "default": ""}}}))
    assert (s["strategy"], s["config_map"], s["config_map_custom"], s["default_config"]) == ("mixed", "custom", True, "")
    # Naming the default ConfigMap is not a custom one (GetConfigMapName).
    assert not go.mig_settings(_policy(spec={"migManager": {"config": {"name": "default-mig-parted-config"}}}))["config_map_custom"]


def test_config_name_is_a_label_value_that_changes_with_the_layout():
    a = go.config_name_for(go.entries_for_devices({"1g.10gb": 7}))
    b = go.config_name_for(go.entries_for_devices({"1g.10gb": 7}, [0]))
    assert a != b and a.startswith("gpuops-") and len(a) <= 63
    assert a == go.config_name_for(go.entries_for_devices({"1g.10gb": "7"}))


def test_entries_are_mig_parted_v1():
    assert go.entries_for_devices({"3g.40gb": 1, "1g.10gb": 2}, [1, 0]) == [
        {"devices": [0, 1], "mig-enabled": True, "mig-devices": {"1g.10gb": 2, "3g.40gb": 1}}]
    assert go.canonical_entries([{"devices": "all", "mig-enabled": False}]) == [{"devices": "all", "mig-enabled": False}]


CUSTOM = """# our site's configs
version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
"""


def test_merge_appends_our_config_and_keeps_the_owners_text():
    entries = go.entries_for_devices({"1g.10gb": 7})
    text, changed = go.merge_config_text(CUSTOM, "gpuops-x", entries, "cm")
    assert changed and text.startswith(CUSTOM.rstrip("\n"))  # comment and order kept
    doc = yaml.safe_load(text)
    assert doc["mig-configs"]["gpuops-x"] == entries and "all-disabled" in doc["mig-configs"]
    again, changed = go.merge_config_text(text, "gpuops-x", entries, "cm")
    assert not changed and again == text


def test_merge_replaces_a_changed_entry_and_rejects_a_malformed_file():
    text, _changed = go.merge_config_text(CUSTOM, "gpuops-x", go.entries_for_devices({"1g.10gb": 7}), "cm")
    new, changed = go.merge_config_text(text, "gpuops-x", go.entries_for_devices({"7g.80gb": 1}), "cm")
    assert changed and yaml.safe_load(new)["mig-configs"]["gpuops-x"][0]["mig-devices"] == {"7g.80gb": 1}
    with pytest.raises(Exception, match="version"):
        go.merge_config_text("version: v2\nmig-configs: {a: [{devices: all, mig-enabled: false}]}\n", "x", [], "cm")


def test_protocol_state_reads_mig_managers_labels():
    assert go.protocol_state({"nvidia.com/mig.config": "a", "nvidia.com/mig.config.state": "success"}, "a") == "applied"
    assert go.protocol_state({"nvidia.com/mig.config": "a", "nvidia.com/mig.config.state": "success"}, "b") == "not_requested"
    assert go.protocol_state({"nvidia.com/mig.config": "a", "nvidia.com/mig.config.state": "failed"}, "a") == "failed"
    for s in ("pending", "rebooting", None):
        assert go.protocol_state({"nvidia.com/mig.config": "a", "nvidia.com/mig.config.state": s}, "a") == "in_progress"
    # The request clears a stale state in the same write.
    assert go.request_patch("a") == {"metadata": {"labels": {"nvidia.com/mig.config": "a", "nvidia.com/mig.config.state": None}}}


def test_expected_resources_follow_the_operators_strategy():
    mixed = {"nvidia.com/mig-1g.10gb": 2, "nvidia.com/mig-3g.40gb": 1}
    assert go.expected_resources(mixed, "mixed") == mixed
    assert go.expected_resources(mixed, "single") == {"nvidia.com/gpu": 3}
    assert go.expected_resources(mixed, "none") is None
    assert go.expected_resources({"nvidia.com/gpu": 1}, "none") == {"nvidia.com/gpu": 1}


class FakeK8s:
    def __init__(self, labels, cm_text=None):
        self.labels = dict(labels)
        self.cm_text = cm_text
        self.writes = []

    def get_node(self, name):
        return {"metadata": {"name": name, "labels": dict(self.labels)}}

    def get_or_none(self, api_version, kind, name, namespace=None):
        return None if self.cm_text is None else {"data": {"config.yaml": self.cm_text}}

    def patch(self, api_version, kind, name, patch, namespace=None):
        self.writes.append((kind, name))
        self.cm_text = patch["data"]["config.yaml"]

    def patch_node(self, name, patch):
        self.writes.append(("Node", name))
        for k, v in patch["metadata"]["labels"].items():
            if v is None:
                self.labels.pop(k, None)
            else:
                self.labels[k] = v
        # What mig-manager does next: pending, then success.
        self.labels["nvidia.com/mig.config.state"] = "success"


def _operator(custom=True, manager=True):
    spec = {"mig": {"strategy": "mixed"}, "migManager": {"enabled": manager}}
    if custom:
        spec["migManager"]["config"] = {"name": "custom-mig-parted-config"}
    return go.detect(True, [_policy(spec=spec)], [], [])


def test_request_writes_the_entry_and_label_then_nothing_on_rerun():
    k8s = FakeK8s({"nvidia.com/mig.config": "all-disabled", "nvidia.com/mig.config.state": "success"}, CUSTOM)
    req = go.MigManagerRequest(k8s, "n1", _operator(), sleep=lambda s: None)
    resolved = req.resolve(entries=go.entries_for_devices({"1g.10gb": 7}))
    check = req.apply(resolved, check_mode=True)
    assert check["changed"] and k8s.writes == []
    out = req.apply(resolved)
    assert out["state"] == "success" and out["previous_config"] == "all-disabled"
    assert k8s.writes == [("ConfigMap", "custom-mig-parted-config"), ("Node", "n1")]
    again = go.MigManagerRequest(k8s, "n1", _operator(), sleep=lambda s: None)
    out = again.apply(again.resolve(entries=go.entries_for_devices({"1g.10gb": 7})))
    assert out["changed"] is False and len(k8s.writes) == 2


def test_request_refuses_what_mig_manager_cannot_do():
    k8s = FakeK8s({}, CUSTOM)
    with pytest.raises(go.OperatorError, match="spec.migManager.config.name names none"):
        go.MigManagerRequest(k8s, "n1", _operator(custom=False)).resolve(entries=go.entries_for_devices({"1g.10gb": 7}))
    with pytest.raises(go.OperatorError, match="spec.migManager.enabled=false"):
        go.MigManagerRequest(k8s, "n1", _operator(manager=False))
    with pytest.raises(go.OperatorError, match="no GPU Operator"):
        go.MigManagerRequest(k8s, "n1", go.detect(False, [], [], []))
    with pytest.raises(go.OperatorError, match="available: all-disabled"):
        go.MigManagerRequest(k8s, "n1", _operator()).resolve(preset="all-balanced")
    assert go.MigManagerRequest(k8s, "n1", _operator(custom=False)).resolve(preset="all-balanced")["name"] == "all-balanced"


def test_request_fails_on_failed_state_and_on_timeout():
    class Failing(FakeK8s):
        def patch_node(self, name, patch):
            super().patch_node(name, patch)
            self.labels["nvidia.com/mig.config.state"] = "failed"

    k8s = Failing({"nvidia.com/mig.config": "all-disabled"})
    req = go.MigManagerRequest(k8s, "n1", _operator(custom=False), sleep=lambda s: None)
    with pytest.raises(go.OperatorError, match="state=failed"):
        req.apply(req.resolve(preset="all-balanced"))

    class Stuck(FakeK8s):
        def patch_node(self, name, patch):
            super().patch_node(name, patch)
            self.labels["nvidia.com/mig.config.state"] = "pending"

    t = [0.0]
    req = go.MigManagerRequest(Stuck({}), "n1", _operator(custom=False), clock=lambda: t[0],
                               sleep=lambda s: t.__setitem__(0, t[0] + s))
    with pytest.raises(go.OperatorError, match="timed out after 5s.*state=pending"):
        req.apply(req.resolve(preset="all-balanced"), timeout=5)
    # A config mig-manager already failed on is not silently re-asked (it acts on value changes).
    k8s = FakeK8s({"nvidia.com/mig.config": "all-balanced", "nvidia.com/mig.config.state": "failed"})
    with pytest.raises(go.OperatorError, match="already failed"):
        req = go.MigManagerRequest(k8s, "n1", _operator(custom=False))
        req.apply(req.resolve(preset="all-balanced"))
