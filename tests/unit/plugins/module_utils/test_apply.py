"""When is a manifest already applied? Server defaults add fields; they must not look like drift."""
from __future__ import annotations

import base64
import copy
import json

import pytest

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


# ---------------------------------------------------------------------------------------
# Fields we applied earlier and no longer want. The managedFields below are the apiserver's
# own (kube-apiserver 1.36 on the testbed, field manager gpuops.llm), copied from GET output.
# ---------------------------------------------------------------------------------------
MANAGER = "gpuops.llm"


def _entry(fields, manager=MANAGER, operation="Apply", api_version="v1", subresource=None):
    e = {"manager": manager, "operation": operation, "apiVersion": api_version, "time": "2026-12-04T03:56:59Z",
         "fieldsType": "FieldsV1", "fieldsV1": fields}
    if subresource:
        e["subresource"] = subresource
    return e


CM_FIELDS = {"f:data": {"f:a": {}, "f:b": {}}, "f:metadata": {"f:labels": {"f:team": {}, "f:tier": {}}}}


def _configmap_live():
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "probe", "resourceVersion": "100", "uid": "u1",
                         "creationTimestamp": "2026-12-04T03:56:59Z", "labels": {"team": "a", "tier": "x"},
                         "managedFields": [_entry(CM_FIELDS)]},
            "data": {"a": "1", "b": "2"}}


def _configmap(data, labels=None):
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "probe", "labels": labels or {"team": "a", "tier": "x"}}, "data": data}


_CONTAINER_X = {
    ".": {}, "f:args": {}, "f:env": {"k:{\"name\":\"E\"}": {".": {}, "f:name": {}, "f:value": {}}},
    "f:image": {}, "f:name": {},
    "f:ports": {"k:{\"containerPort\":8000,\"protocol\":\"TCP\"}": {".": {}, "f:containerPort": {}}},
    "f:resources": {"f:limits": {"f:cpu": {}, "f:memory": {}, "f:nvidia.com/gpu": {}}}}
DEPLOY_FIELDS = {
    "f:metadata": {"f:labels": {"f:app": {}, "f:gone": {}}},
    "f:spec": {"f:replicas": {}, "f:selector": {}, "f:template": {
        "f:metadata": {"f:labels": {"f:app": {}}},
        "f:spec": {"f:containers": {"k:{\"name\":\"side\"}": {".": {}, "f:image": {}, "f:name": {}},
                                    "k:{\"name\":\"x\"}": _CONTAINER_X},
                   "f:nodeSelector": {}, "f:tolerations": {}}}}}
CONTROLLER_FIELDS = {"f:metadata": {"f:annotations": {".": {}, "f:deployment.kubernetes.io/revision": {}}},
                     "f:status": {"f:observedGeneration": {}, "f:replicas": {}, "f:updatedReplicas": {}}}


def _deployment():
    """The manifest as first applied."""
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "namespace": "probe", "labels": {"app": "d", "gone": "yes"}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": "d"}},
                     "template": {"metadata": {"labels": {"app": "d"}}, "spec": {
                         "nodeSelector": {"pool": "gpu", "zone": "z1"},
                         "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                         "containers": [{"name": "x", "image": "i:1", "args": ["--a", "--b"],
                                         "ports": [{"containerPort": 8000}],
                                         "env": [{"name": "E", "value": "1"}],
                                         "resources": {"limits": {"cpu": "1", "memory": "1Gi", "nvidia.com/gpu": "1"}}},
                                        {"name": "side", "image": "s:1"}]}}}}


def _deployment_live():
    """What the apiserver returns after that apply: defaults filled in, a controller's fields beside ours."""
    live = _deployment()
    meta = live["metadata"]
    meta.update(resourceVersion="200", generation=1, annotations={"deployment.kubernetes.io/revision": "1"},
                managedFields=[_entry(DEPLOY_FIELDS, api_version="apps/v1"),
                               _entry(CONTROLLER_FIELDS, "kube-controller-manager", "Update", "apps/v1", "status")])
    spec = live["spec"]
    spec.update(revisionHistoryLimit=10, progressDeadlineSeconds=600,
                strategy={"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}})
    pod = spec["template"]["spec"]
    pod.update(restartPolicy="Always", dnsPolicy="ClusterFirst", schedulerName="default-scheduler",
               terminationGracePeriodSeconds=30, securityContext={})
    for c in pod["containers"]:
        c.update(terminationMessagePath="/dev/termination-log", terminationMessagePolicy="File",
                 imagePullPolicy="IfNotPresent")
        c.setdefault("resources", {})
    pod["containers"][0]["ports"][0]["protocol"] = "TCP"
    live["status"] = {"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1}
    return live


def _texts(desired, live):
    return [apply.path_text(p) for p in apply.stale_paths(apply.comparable(desired), live, MANAGER)]


def test_fieldsv1_parses_into_the_leaf_paths_we_own():
    paths = apply.owned_paths(DEPLOY_FIELDS)
    containers = (("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "containers"))
    assert containers + (("k", (("name", "x"),)), ("f", "resources"), ("f", "limits"), ("f", "cpu")) in paths
    assert containers + (("k", (("name", "x"),)), ("f", "ports"), ("k", (("containerPort", 8000), ("protocol", "TCP"))),
                         ("f", "containerPort")) in paths
    # An atomic field is a leaf; "." (the node itself) is no path of its own.
    assert (("f", "spec"), ("f", "template"), ("f", "spec"), ("f", "nodeSelector")) in paths
    assert not any(step == "." or step[1] == "." for p in paths for step in p)
    assert (("f", "spec"), ("f", "template")) not in paths  # an inner node, not a leaf
    assert apply.owned_paths({"f:metadata": {"f:finalizers": {".": {}, "v:\"example.com/x\"": {}}}}) == {
        (("f", "metadata"), ("f", "finalizers"), ("v", "example.com/x"))}
    assert apply.owned_paths(None) == set() and apply.owned_paths({}) == set()


def test_only_our_apply_entry_of_the_same_version_counts():
    live = _deployment_live()
    live["metadata"]["managedFields"] += [
        _entry({"f:metadata": {"f:labels": {"f:by-kubectl": {}}}}, "kubectl", "Apply", "apps/v1"),
        _entry({"f:metadata": {"f:labels": {"f:by-update": {}}}}, MANAGER, "Update", "apps/v1"),
        _entry({"f:status": {"f:replicas": {}}}, MANAGER, "Apply", "apps/v1", "status")]
    ours = apply.manager_paths(live, MANAGER, "apps/v1")
    assert ours == apply.owned_paths(DEPLOY_FIELDS)
    assert apply.manager_paths(live, MANAGER, "apps/v1beta1") == set()  # another version: prune nothing
    assert apply.manager_paths(live, "someone-else", "apps/v1") == set()
    assert apply.manager_paths({"metadata": {}}, MANAGER) == set()


def test_a_configmap_key_and_a_label_we_dropped_are_stale():
    live = _configmap_live()
    assert _texts(_configmap({"a": "1"}, {"team": "a"}), live) == ["data.b", "metadata.labels.tier"]
    assert _texts(_configmap({"a": "1", "b": "2"}), live) == []
    assert _texts({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "probe"}}, live) == [
        "data.a", "data.b", "metadata.labels.team", "metadata.labels.tier"]
    # A null in the manifest is no setting at all.
    assert _texts(_configmap({"a": "1", "b": None}), live) == ["data.b"]


def test_the_same_deployment_against_its_defaulted_live_object_is_not_stale():
    live = _deployment_live()
    assert _texts(_deployment(), live) == []
    assert apply.is_subset({k: v for k, v in _deployment().items() if k not in ("apiVersion", "kind")}, live)


def test_a_dropped_nodeselector_key_is_stale_though_the_subset_test_passes():
    """nodeSelector is atomic (f:nodeSelector: {}): apply replaces it whole, so the key goes."""
    desired = _deployment()
    del desired["spec"]["template"]["spec"]["nodeSelector"]["zone"]
    live = _deployment_live()
    assert apply.is_subset(desired["spec"], live["spec"])  # what hid the bug
    assert _texts(desired, live) == ["spec.template.spec.nodeSelector"]
    del desired["spec"]["template"]["spec"]["nodeSelector"]
    assert _texts(desired, live) == ["spec.template.spec.nodeSelector"]


def test_a_dropped_limit_label_and_container_are_stale():
    desired = _deployment()
    pod = desired["spec"]["template"]["spec"]
    del pod["containers"][0]["resources"]["limits"]["cpu"]
    del desired["metadata"]["labels"]["gone"]
    pod["containers"].pop(1)
    assert _texts(desired, _deployment_live()) == [
        "metadata.labels.gone",
        "spec.template.spec.containers[name=side]",
        "spec.template.spec.containers[name=x].resources.limits.cpu"]


def test_a_dropped_env_item_and_replicas_are_stale():
    desired = _deployment()
    del desired["spec"]["replicas"]
    desired["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "E2", "value": "1"}]
    assert _texts(desired, _deployment_live()) == [
        "spec.replicas", "spec.template.spec.containers[name=x].env[name=E]"]


def test_a_key_field_the_server_defaulted_still_names_our_list_item():
    """Ports are keyed by containerPort and protocol; the manifest leaves protocol to the default."""
    desired = _deployment()
    live = _deployment_live()
    assert "protocol" not in desired["spec"]["template"]["spec"]["containers"][0]["ports"][0]
    assert _texts(desired, live) == []
    desired["spec"]["template"]["spec"]["containers"][0]["ports"] = [{"containerPort": 9000}]
    assert _texts(desired, live) == ["spec.template.spec.containers[name=x].ports[containerPort=8000,protocol=TCP]"]


def test_a_key_field_we_stop_setting_is_stale_but_its_item_stays():
    """protocol: TCP applied explicitly, then left to the default: the port stays, our protocol goes."""
    live = _deployment_live()
    port = DEPLOY_FIELDS["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"x\"}"]["f:ports"]
    fields = copy.deepcopy(DEPLOY_FIELDS)
    fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"x\"}"]["f:ports"] = {
        k: dict(v, **{"f:protocol": {}}) for k, v in port.items()}
    live["metadata"]["managedFields"][0]["fieldsV1"] = fields
    assert _texts(_deployment(), live) == [
        "spec.template.spec.containers[name=x].ports[containerPort=8000,protocol=TCP].protocol"]


def test_an_atomic_list_is_stale_only_when_we_drop_it():
    desired = _deployment()
    live = _deployment_live()
    desired["spec"]["template"]["spec"]["containers"][0]["args"] = ["--a"]
    assert _texts(desired, live) == []  # still set by us: the subset test compares it
    assert not apply.is_subset(desired["spec"], live["spec"])
    del desired["spec"]["template"]["spec"]["tolerations"]
    assert _texts(desired, live) == ["spec.template.spec.tolerations"]


def test_fields_other_managers_own_are_left_alone():
    live = _configmap_live()
    live["data"]["theirs"] = "x"
    live["metadata"]["labels"]["owner"] = "kubectl"
    live["metadata"]["managedFields"].append(
        _entry({"f:data": {"f:theirs": {}}, "f:metadata": {"f:labels": {"f:owner": {}}}}, "kubectl-edit", "Update"))
    assert _texts(_configmap({"a": "1", "b": "2"}), live) == []
    # A granular map we applied empty while another manager owns keys in it is not atomic.
    live["metadata"]["managedFields"][0]["fieldsV1"] = {"f:data": {}, "f:metadata": {"f:labels": {"f:team": {}, "f:tier": {}}}}
    assert _texts(_configmap({}), live) == []


def test_an_object_without_our_entry_falls_back_to_the_subset_test():
    live = _configmap_live()
    live["metadata"]["managedFields"] = [_entry(CM_FIELDS, "kubectl-client-side-apply", "Update")]
    assert _texts(_configmap({"a": "1"}), live) == []
    del live["metadata"]["managedFields"]
    assert _texts(_configmap({"a": "1"}), live) == []
    assert apply.stale_paths(_configmap({"a": "1"}), None, MANAGER) == []


def test_a_dropped_set_item_is_stale():
    live = _configmap_live()
    live["metadata"]["finalizers"] = ["example.com/x"]
    live["metadata"]["managedFields"][0]["fieldsV1"]["f:metadata"]["f:finalizers"] = {".": {}, "v:\"example.com/x\"": {}}
    desired = _configmap({"a": "1", "b": "2"})
    assert _texts(desired, live) == ["metadata.finalizers[\"example.com/x\"]"]
    desired["metadata"]["finalizers"] = ["example.com/x"]
    assert _texts(desired, live) == []


def test_a_secret_in_string_data_is_not_stale_against_its_data():
    """The apiserver records stringData keys as ours (f:stringData), though it stores them in data."""
    live = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "probe", "managedFields": [
        _entry({"f:data": {"f:x": {}}, "f:stringData": {"f:token": {}}})]},
        "data": {"x": "eHg=", "token": base64.b64encode(b"s3cret").decode()}, "type": "Opaque"}
    desired = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s", "namespace": "probe"},
               "stringData": {"token": "s3cret"}, "data": {"x": "eHg="}}
    assert _texts(desired, live) == []
    del desired["data"]
    assert _texts(desired, live) == ["data.x"]


# -- the Applier against a fake API ------------------------------------------------------

class FakeK8s:
    """get_or_none and apply on one stored object; apply merges the way server-side apply does
    for the fields of these tests (our applied config replaces what our manager owned)."""
    field_manager = MANAGER

    def __init__(self, live=None, apply_result=None, dry_run_result=None):
        self.live = live
        self.apply_result = apply_result
        self.dry_run_result = dry_run_result  # an exception instance is raised
        self.calls = []

    def resource_info(self, api_version, kind):
        return kind.lower() + "s", True

    def get_or_none(self, api_version, kind, name, namespace=None):
        self.calls.append(("GET", kind, name))
        return copy.deepcopy(self.live)

    def apply(self, manifest, force=False, dry_run=False):
        if dry_run:
            self.calls.append(("DRYRUN", manifest["kind"], manifest["metadata"]["name"]))
            if isinstance(self.dry_run_result, Exception):
                raise self.dry_run_result
            return copy.deepcopy(self.dry_run_result)
        self.calls.append(("APPLY", manifest["kind"], manifest["metadata"]["name"]))
        self.live = copy.deepcopy(self.apply_result)
        return copy.deepcopy(self.live)

    def delete(self, api_version, kind, name, namespace=None):
        self.calls.append(("DELETE", kind, name))

    def writes(self):
        return [c for c in self.calls if c[0] not in ("GET", "DRYRUN")]


def _configmap_after_prune():
    after = _configmap_live()
    after["data"] = {"a": "1"}
    after["metadata"]["labels"] = {"team": "a"}
    after["metadata"]["resourceVersion"] = "101"
    after["metadata"]["managedFields"] = [_entry({"f:data": {"f:a": {}}, "f:metadata": {"f:labels": {"f:team": {}}}})]
    return after


def test_check_mode_predicts_the_prune_and_diff_shows_the_removed_fields():
    k8s = FakeK8s(_configmap_live())
    r = apply.Applier(k8s).present(_configmap({"a": "1"}, {"team": "a"}), check_mode=True)
    assert r["changed"] is True and r["action"] == "update"
    assert r["removed"] == ["data.b", "metadata.labels.tier"]
    assert r["diff"]["before"]["data"] == {"a": "1", "b": "2"}
    assert r["diff"]["before"]["metadata"]["labels"] == {"team": "a", "tier": "x"}
    assert r["diff"]["after"]["data"] == {"a": "1"} and r["diff"]["after"]["metadata"]["labels"] == {"team": "a"}
    assert "managedFields" not in json.dumps(r["diff"])
    assert k8s.writes() == []


def test_apply_prunes_then_a_rerun_sends_nothing():
    k8s = FakeK8s(_configmap_live(), apply_result=_configmap_after_prune())
    applier = apply.Applier(k8s)
    desired = _configmap({"a": "1"}, {"team": "a"})
    r = applier.present(desired)
    assert r["changed"] is True and r["action"] == "update" and k8s.writes() == [("APPLY", "ConfigMap", "c")]
    k8s.calls.clear()
    r = applier.present(desired)
    assert r == {"ref": "ConfigMap probe/c", "changed": False, "action": "unchanged"}
    assert k8s.writes() == []
    r = applier.present(desired, check_mode=True)
    assert r["changed"] is False


def test_diff_of_a_dropped_nodeselector_key_shows_the_whole_old_selector():
    desired = _deployment()
    del desired["spec"]["template"]["spec"]["nodeSelector"]["zone"]
    would_be = _deployment_live()
    would_be["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "gpu"}
    k8s = FakeK8s(_deployment_live(), dry_run_result=would_be)
    r = apply.Applier(k8s).present(desired, check_mode=True)
    assert r["changed"] is True and r["removed"] == ["spec.template.spec.nodeSelector"]
    assert k8s.writes() == [] and ("DRYRUN", "Deployment", "d") in k8s.calls
    assert r["diff"]["before"]["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu", "zone": "z1"}
    assert r["diff"]["after"]["spec"]["template"]["spec"]["nodeSelector"] == {"pool": "gpu"}


def test_diff_of_a_dropped_map_shows_it_under_its_parents():
    desired = _configmap({"a": "1"})
    del desired["metadata"]["labels"]
    r = apply.Applier(FakeK8s(_configmap_live())).present(desired, check_mode=True)
    assert r["removed"] == ["data.b", "metadata.labels.team", "metadata.labels.tier"]
    assert r["diff"]["before"]["metadata"]["labels"] == {"team": "a", "tier": "x"}
    assert "labels" not in r["diff"]["after"]["metadata"]


def test_the_applier_uses_the_field_manager_of_its_client():
    k8s = FakeK8s(_configmap_live())
    k8s.field_manager = "someone-else"
    r = apply.Applier(k8s).present(_configmap({"a": "1"}, {"team": "a"}), check_mode=True)
    assert r["changed"] is False  # b and tier are not that manager's: apply would not remove them


# -- Secret values never leave -------------------------------------------------------------

SECRET_VALUE = "hf_s3cret_token_value"
SECRET_B64 = base64.b64encode(SECRET_VALUE.encode()).decode()


def _secret(**fields):
    return dict({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "hf", "namespace": "probe"}}, **fields)


def _secret_live(value_b64, rv="5"):
    return _secret(data={"token": value_b64}, type="Opaque", metadata={
        "name": "hf", "namespace": "probe", "resourceVersion": rv,
        "managedFields": [_entry({"f:stringData": {"f:token": {}}})]})


def test_redact_keeps_keys_and_hides_values():
    s = _secret(data={"a": "eA=="}, stringData={"b": "y"})
    out = apply.redact(s)
    assert out["data"] == {"a": apply.REDACTED} and out["stringData"] == {"b": apply.REDACTED}
    assert s["data"] == {"a": "eA=="}  # the input is untouched
    cm = _configmap({"a": "1"})
    assert apply.redact(cm) is cm
    assert apply.redact({"data": {"a": "x"}}, "Secret")["data"] == {"a": apply.REDACTED}
    assert apply.redact(None, "Secret") is None


@pytest.mark.parametrize("live", [None, "other"], ids=["create", "update"])
def test_a_secret_diff_has_no_value(live):
    live_obj = _secret_live(base64.b64encode(b"old-value-x").decode()) if live else None
    k8s = FakeK8s(live_obj, apply_result=_secret_live(SECRET_B64, rv="6"))
    r = apply.Applier(k8s).present(_secret(stringData={"token": SECRET_VALUE}))
    assert r["changed"] is True
    text = json.dumps(r)
    assert SECRET_VALUE not in text and SECRET_B64 not in text and "old-value-x" not in text
    assert "b2xkLXZhbHVlLXg=" not in text
    assert r["diff"]["after"]["data"] == {"token": apply.REDACTED}
    if live:
        assert r["diff"]["before"]["data"] == {"token": apply.REDACTED}


def test_a_secret_is_still_compared_by_its_real_value():
    k8s = FakeK8s(_secret_live(SECRET_B64))
    assert apply.Applier(k8s).present(_secret(stringData={"token": SECRET_VALUE}), check_mode=True)["changed"] is False
    assert apply.Applier(k8s).present(_secret(data={"token": SECRET_B64}), check_mode=True)["changed"] is False
    assert apply.Applier(k8s).present(_secret(stringData={"token": "another"}), check_mode=True)["changed"] is True


def test_deleting_a_secret_shows_no_value():
    k8s = FakeK8s(_secret_live(SECRET_B64))
    r = apply.Applier(k8s).absent(_secret(), check_mode=True)
    assert r["changed"] is True and SECRET_B64 not in json.dumps(r)


def _with_field_ref(obj, live):
    """An env var from the downward API; fieldRef is atomic, and the server defaults its apiVersion."""
    ref = {"fieldPath": "spec.nodeName"}
    if live:
        ref["apiVersion"] = "v1"
        fields = obj["metadata"]["managedFields"][0]["fieldsV1"]
        env = fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"x\"}"]["f:env"]
        env["k:{\"name\":\"NODE_NAME\"}"] = {".": {}, "f:name": {}, "f:valueFrom": {"f:fieldRef": {}}}
    obj["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "NODE_NAME", "valueFrom": {"fieldRef": ref}})
    return obj


def test_a_key_the_server_defaulted_in_an_atomic_field_is_no_drift():
    """What a dry run of the apply would store decides; a rerun then writes nothing (a real apiserver's
    fieldRef, as the device plugin's GFD DaemonSet has it)."""
    desired, live = _with_field_ref(_deployment(), False), _with_field_ref(_deployment_live(), True)
    field_ref = "spec.template.spec.containers[name=x].env[name=NODE_NAME].valueFrom.fieldRef"
    assert _texts(desired, live) == [field_ref]  # without the dry run it looks dropped
    k8s = FakeK8s(copy.deepcopy(live), dry_run_result=copy.deepcopy(live))
    assert apply.stale_paths(apply.comparable(desired), live, MANAGER, lambda: k8s.apply(desired, dry_run=True)) == []
    r = apply.Applier(k8s).present(desired)
    assert r == {"ref": "Deployment probe/d", "changed": False, "action": "unchanged"} and k8s.writes() == []
    r = apply.Applier(k8s).present(desired, check_mode=True)
    assert r["changed"] is False


def test_a_failed_dry_run_leaves_the_subset_test_to_decide():
    from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8sConflict

    desired, live = _with_field_ref(_deployment(), False), _with_field_ref(_deployment_live(), True)
    k8s = FakeK8s(live, dry_run_result=K8sConflict("conflict", status=409))
    assert apply.Applier(k8s).present(desired, check_mode=True)["changed"] is False


def test_no_dry_run_when_the_subset_test_or_a_removed_path_already_decides():
    k8s = FakeK8s(_configmap_live())
    apply.Applier(k8s).present(_configmap({"a": "1"}, {"team": "a"}), check_mode=True)  # removed paths
    apply.Applier(k8s).present(_configmap({"a": "1", "b": "3"}), check_mode=True)  # not a subset
    apply.Applier(k8s).present(_configmap({"a": "1", "b": "2"}), check_mode=True)  # nothing atomic
    assert [c for c in k8s.calls if c[0] == "DRYRUN"] == []
