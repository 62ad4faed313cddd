# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Render the device_plugin and dcgm_exporter templates exactly as Ansible does and check them.

One ansible-playbook run (about two seconds) renders every scenario through the roles' own
``render`` and ``validate`` task files, the same files the roles run in production, and
writes the results as JSON. The tests then parse them and check what could go wrong: the
placement contract with the testbed and the MIG role, tolerations, the MIG strategy, the
plugin config file, image mirrors, the counters CSV and the ServiceMonitor switch.

Expected values come from shared/facts (gpu-automation-anchors.md, mig-and-nvml.md §5) and
from the testbed contract, not from the templates.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
VENV_PY = ROOT / ".venv" / "bin" / "python"
PLAYBOOK_BIN = ROOT / ".venv" / "bin" / "ansible-playbook"

# The testbed / MIG-role contract (issue 4 brief), written out independently of the roles.
GPU_LABELS = ["feature.node.kubernetes.io/pci-10de.present", "nvidia.com/gpu.present"]
PAUSE_KEY, PAUSE_VALUE = "gpuops.llm/device-plugin.paused", "true"
POOL_TAINTS = [
    ("workload", "llm-inference", "NoSchedule"),
    ("workload", "llm-training", "NoSchedule"),
]
PLUGIN_POD_NAME = "nvidia-device-plugin"
GFD_POD_NAME = "gpu-feature-discovery"

MIG_STRATEGIES = ["none", "single", "mixed"]
SHARING_MODES = ["none", "time-slicing", "mps"]

# Scenarios rendered through roles/device_plugin/tasks/render.yml.
DP_SCENARIOS: dict[str, dict] = {}
for _mig in MIG_STRATEGIES:
    for _share in SHARING_MODES:
        if _mig == "mixed" and _share == "mps":
            continue  # refused by validation; see test_mps_with_mixed_is_refused
        DP_SCENARIOS[f"{_mig}-{_share}"] = {
            "device_plugin_mig_strategy": _mig,
            "device_plugin_sharing_mode": _share,
            "device_plugin_sharing_resources": [{"name": "nvidia.com/gpu", "replicas": "3"}],
        }
DP_SCENARIOS["mirror"] = {"device_plugin_registry_mirror": "registry.local:5000/mirror/"}
DP_SCENARIOS["no-gfd"] = {"device_plugin_gfd_enabled": False}
DP_SCENARIOS["gfd-file"] = {"device_plugin_gfd_use_node_feature_api": False}
DP_SCENARIOS["extra-tol"] = {
    "device_plugin_extra_tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}],
    "device_plugin_image_pull_secrets": ["regcred"],
}

# Bad input for roles/device_plugin/tasks/validate.yml: each must fail naming the field.
DP_BAD = {
    "mps-mixed": ({"device_plugin_mig_strategy": "mixed", "device_plugin_sharing_mode": "mps"},
                  ["device_plugin_sharing_mode=mps", "mixed"]),
    "bad-resource": ({"device_plugin_sharing_mode": "time-slicing",
                      "device_plugin_sharing_resources": [{"name": "gpu", "replicas": 2}]},
                     ["device_plugin_sharing_resources name \"gpu\"", "nvidia.com/"]),
    "one-replica": ({"device_plugin_sharing_mode": "time-slicing",
                     "device_plugin_sharing_resources": [{"name": "nvidia.com/gpu", "replicas": 1}]},
                    ["replicas 1", "2 or more"]),
    "text-replica": ({"device_plugin_sharing_mode": "time-slicing",
                      "device_plugin_sharing_resources": [{"name": "nvidia.com/gpu", "replicas": "four"}]},
                     ["replicas \"four\""]),
    "dup-resource": ({"device_plugin_sharing_mode": "mps",
                      "device_plugin_sharing_resources": [{"name": "nvidia.com/gpu", "replicas": 2},
                                                          {"name": "nvidia.com/gpu", "replicas": 4}]},
                     ["repeat"]),
    "empty-resources": ({"device_plugin_sharing_mode": "time-slicing", "device_plugin_sharing_resources": []},
                        ["device_plugin_sharing_resources is empty"]),
    "mirror-scheme": ({"device_plugin_registry_mirror": "https://registry.local"},
                      ["device_plugin_registry_mirror", "scheme"]),
    "bad-pause-key": ({"device_plugin_pause_label": {"key": "bad key!", "value": "true"}},
                      ["device_plugin_pause_label.key"]),
    "no-gpu-labels": ({"device_plugin_gpu_node_labels": []}, ["device_plugin_gpu_node_labels is empty"]),
}

# Scenarios for roles/dcgm_exporter/tasks/render.yml; __dcgm_exporter_crd stands in for
# the k8s_info result of the CRD lookup.
CRD_FOUND = {"resources": [{"metadata": {"name": "servicemonitors.monitoring.coreos.com"}}]}
CRD_MISSING = {"resources": []}
DE_SCENARIOS = {
    "crd": {"__dcgm_exporter_crd": CRD_FOUND},
    "no-crd": {"__dcgm_exporter_crd": CRD_MISSING},
    "disabled-with-crd": {"__dcgm_exporter_crd": CRD_FOUND, "dcgm_exporter_service_monitor": "disabled"},
    "mirror": {"__dcgm_exporter_crd": CRD_MISSING, "dcgm_exporter_registry_mirror": "mirror.example:443/x"},
}
DE_BAD = {
    "enabled-no-crd": ({"__dcgm_exporter_crd": CRD_MISSING, "dcgm_exporter_service_monitor": "enabled"},
                       ["servicemonitors.monitoring.coreos.com"]),
    "no-gr-engine": ({"__dcgm_exporter_crd": CRD_MISSING,
                      "dcgm_exporter_counters": [{"field": "DCGM_FI_DEV_GPU_UTIL", "type": "gauge", "help": "x"}]},
                     ["DCGM_FI_PROF_GR_ENGINE_ACTIVE"]),
    "bad-type": ({"__dcgm_exporter_crd": CRD_MISSING,
                  "dcgm_exporter_extra_counters": [{"field": "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", "type": "histogram"}]},
                 ["type \"histogram\""]),
}


def _render_task(role: str, tasks_from: str, name: str, variables: dict) -> dict:
    return {"name": f"{role} {tasks_from} {name}", "ansible.builtin.include_role": {
        "name": f"gpuops.llm.{role}", "tasks_from": tasks_from}, "vars": variables}


def _fact(key: str) -> str:
    return "__r_" + "".join(ch if ch.isalnum() else "_" for ch in key)


def _keep(key: str, value: str) -> dict:
    # set_fact runs inside the controller: no module process per scenario, one write at the end.
    return {"name": f"keep {key}", "ansible.builtin.set_fact": {_fact(key): "{{ " + value + " }}"}}


def _playbook(out: pathlib.Path) -> list:
    tasks: list = []
    for name, variables in DP_SCENARIOS.items():
        tasks.append(_render_task("device_plugin", "render", name, variables))
        tasks.append(_keep(f"dp-{name}", "__device_plugin_manifests"))
    # The Helm values, rendered through the helm method's own task file.
    tasks.append(_render_task("device_plugin", "helm_values", "defaults", {}))
    tasks.append(_keep("dp-helm-values", "__device_plugin_helm_release_values"))
    for name, variables in DE_SCENARIOS.items():
        tasks.append(_render_task("dcgm_exporter", "render", name, variables))
        tasks.append(_keep(f"de-{name}", "__dcgm_exporter_manifests"))
    cases = [("device_plugin", n, v) for n, (v, _unused) in DP_BAD.items()]
    cases += [("dcgm_exporter", n, v) for n, (v, _unused) in DE_BAD.items()]
    cases += [("device_plugin", "defaults-ok", {}), ("dcgm_exporter", "defaults-ok", {"__dcgm_exporter_crd": CRD_MISSING})]
    for role, name, variables in cases:
        tasks.append({"name": f"case {role} {name}", "block": [
            _render_task(role, "validate", name, variables),
            _keep(f"val-{role}-{name}", "'OK'"),
        ], "rescue": [_keep(f"val-{role}-{name}", "'FAILED: ' ~ ansible_failed_result.msg")]})
    # argument_specs rejects an unknown MIG strategy before any task runs.
    tasks.append({"name": "argspec", "block": [
        {"name": "bad mig strategy", "ansible.builtin.include_role": {"name": "gpuops.llm.device_plugin"},
         "vars": {"device_plugin_mig_strategy": "bogus"}},
    ], "rescue": [_keep("argspec-mig", "'FAILED: ' ~ ansible_failed_result.msg")]})
    keys = [t["ansible.builtin.set_fact"] for t in _walk(tasks) if "ansible.builtin.set_fact" in t]
    names = sorted({k for facts in keys for k in facts})
    content = "{{ {" + ", ".join(f"{json.dumps(n)}: {n} | default(None)" for n in names) + "} | to_json }}"
    tasks.append({"name": "write everything", "ansible.builtin.copy": {
        "content": content, "dest": str(out / "results.json"), "mode": "0600"}})
    return [{"hosts": "localhost", "gather_facts": False, "tasks": tasks}]


def _walk(tasks):
    for task in tasks:
        yield task
        for section in ("block", "rescue"):
            yield from _walk(task.get(section, []))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("addons")
    pb = out / "render.yml"
    pb.write_text(yaml.safe_dump(_playbook(out), sort_keys=False))
    env = dict(os.environ)
    env.setdefault("ANSIBLE_COLLECTIONS_PATH", os.environ.get("ANSIBLE_COLLECTIONS_PATH", ""))
    env["ANSIBLE_NOCOLOR"] = "1"
    env.pop("K8S_AUTH_KUBECONFIG", None)
    python = str(VENV_PY if VENV_PY.exists() else sys.executable)
    cmd = [str(PLAYBOOK_BIN), "-i", "localhost,", "-c", "local", "-e", f"ansible_python_interpreter={python}", str(pb)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]

    results = json.loads((out / "results.json").read_text())

    class Out:
        def dp(self, name):
            return results[_fact(f"dp-{name}")]

        def de(self, name):
            return results[_fact(f"de-{name}")]

        def text(self, name):
            return results[_fact(name)]

    return Out()


def _one(objs, kind, name=None):
    found = [o for o in objs if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {[o['metadata']['name'] for o in found]}"
    return found[0]


def _daemonsets(objs):
    return [o for o in objs if o["kind"] == "DaemonSet"]


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _assert_placement(ds, gpu_labels=tuple(GPU_LABELS)):
    """GPU nodes only (either label), never a paused node, in every ORed term."""
    spec = ds["spec"]["template"]["spec"]
    terms = spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    selected = set()
    for term in terms:
        exprs = term["matchExpressions"]
        ins = [e for e in exprs if e["operator"] == "In"]
        assert len(ins) == 1 and ins[0]["values"] == ["true"], term
        selected.add(ins[0]["key"])
        pause = [e for e in exprs if e["key"] == PAUSE_KEY]
        # Terms are ORed: a term without the exclusion would let a paused node through.
        assert pause == [{"key": PAUSE_KEY, "operator": "NotIn", "values": [PAUSE_VALUE]}], term
        assert "matchFields" not in term
    assert selected == set(gpu_labels)
    assert "nodeSelector" not in spec  # a nodeSelector would AND away one of the two label sources


def _assert_tolerations(ds):
    tols = ds["spec"]["template"]["spec"]["tolerations"]
    for key, value, effect in POOL_TAINTS:
        assert any(t.get("key") == key and t.get("value") == value and t.get("effect") == effect
                   and t.get("operator", "Equal") == "Equal" for t in tols), (key, value, tols)
    assert any(t.get("key") == "nvidia.com/gpu" and t.get("operator") == "Exists" for t in tols)
    assert any(t.get("key") == "CriticalAddonsOnly" and t.get("operator") == "Exists" for t in tols)
    # No blanket toleration: it would put the pods on every tainted node, GPU or not.
    assert all(t.get("key") for t in tols), tols


def _plugin_config(objs):
    cm = _one(objs, "ConfigMap", "nvidia-device-plugin-config")
    (text,) = cm["data"].values()
    return yaml.safe_load(text)


# mixed + MPS is refused by validation (test_device_plugin_bad_input), so it renders nothing to check.
@pytest.mark.parametrize("mig,share", [(m, s) for m in MIG_STRATEGIES for s in SHARING_MODES
                                       if (m, s) != ("mixed", "mps")])
def test_device_plugin_scenarios(rendered, mig, share):
    objs = rendered.dp(f"{mig}-{share}")
    for o in objs:
        assert o["apiVersion"] and o["kind"] and o["metadata"]["name"]
        if o["kind"] not in ("Namespace", "ClusterRole", "RuntimeClass"):
            assert o["metadata"]["namespace"] == "nvidia-device-plugin"
    plugin = _one(objs, "DaemonSet", "nvidia-device-plugin")
    gfd = _one(objs, "DaemonSet", "gpu-feature-discovery")
    expected_ds = {"nvidia-device-plugin", "gpu-feature-discovery"} | (
        {"nvidia-device-plugin-mps-control-daemon"} if share == "mps" else set())
    assert {d["metadata"]["name"] for d in _daemonsets(objs)} == expected_ds

    for ds in _daemonsets(objs):
        _assert_placement(ds)
        _assert_tolerations(ds)
        pod = ds["spec"]["template"]
        assert pod["spec"]["priorityClassName"] == "system-node-critical"
        # Selector must match the template (else the apiserver rejects the DaemonSet).
        for k, v in ds["spec"]["selector"]["matchLabels"].items():
            assert pod["metadata"]["labels"][k] == v
        for c in pod["spec"]["containers"]:
            # The testbed and the plugin read MIG_STRATEGY from the container env.
            assert _env(c)["MIG_STRATEGY"] == mig

    # The testbed finds the pods by these labels only.
    assert plugin["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == PLUGIN_POD_NAME
    assert gfd["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == GFD_POD_NAME
    if share == "mps":
        mps = _one(objs, "DaemonSet", "nvidia-device-plugin-mps-control-daemon")
        assert mps["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] not in (PLUGIN_POD_NAME, GFD_POD_NAME)
        assert _env(plugin["spec"]["template"]["spec"]["containers"][0])["MPS_ROOT"]

    pc = plugin["spec"]["template"]["spec"]["containers"][0]
    env = _env(pc)
    if mig == "none":
        assert "NVIDIA_MIG_MONITOR_DEVICES" not in env
    else:
        assert env["NVIDIA_MIG_MONITOR_DEVICES"] == "all"
    assert env["DEVICE_LIST_STRATEGY"] == "envvar"
    assert env["FAIL_ON_INIT_ERROR"] in ("true", "false")
    mount_paths = {m["mountPath"] for m in pc["volumeMounts"]}
    assert "/var/lib/kubelet/device-plugins" in mount_paths
    # CONFIG_FILE points into the mounted ConfigMap.
    cfg_mount = [m for m in pc["volumeMounts"] if env["CONFIG_FILE"].startswith(m["mountPath"] + "/")]
    assert len(cfg_mount) == 1
    vol = [v for v in plugin["spec"]["template"]["spec"]["volumes"] if v["name"] == cfg_mount[0]["name"]][0]
    assert vol["configMap"]["name"] == "nvidia-device-plugin-config"
    assert env["CONFIG_FILE"].rsplit("/", 1)[1] in _one(objs, "ConfigMap", "nvidia-device-plugin-config")["data"]

    # The plugin's config file format: version v1, sharing.<timeSlicing|mps>.resources[{name, replicas}].
    config = _plugin_config(objs)
    assert config["version"] == "v1"
    if share == "none":
        assert "sharing" not in config
    else:
        key = "timeSlicing" if share == "time-slicing" else "mps"
        assert list(config["sharing"]) == [key]
        res = config["sharing"][key]["resources"]
        # replicas was given as the string "3": it must arrive as an integer.
        assert res == [{"name": "nvidia.com/gpu", "replicas": 3}]
        assert isinstance(config["sharing"][key]["renameByDefault"], bool)


def test_config_change_rolls_the_pods(rendered):
    """The plugin reads its config once: a different config must change the pod template."""
    none_ann = _one(rendered.dp("none-none"), "DaemonSet", "nvidia-device-plugin")["spec"]["template"]["metadata"]
    ts_ann = _one(rendered.dp("none-time-slicing"), "DaemonSet", "nvidia-device-plugin")["spec"]["template"]["metadata"]
    assert none_ann["annotations"] != ts_ann["annotations"]
    same = _one(rendered.dp("single-time-slicing"), "DaemonSet", "nvidia-device-plugin")["spec"]["template"]["metadata"]
    assert same["annotations"] == ts_ann["annotations"]  # same config, same checksum: no needless restart


def test_images_default_and_mirror(rendered):
    for ds in _daemonsets(rendered.dp("none-mps")):
        for c in ds["spec"]["template"]["spec"].get("initContainers", []) + ds["spec"]["template"]["spec"]["containers"]:
            repo, tag = c["image"].rsplit(":", 1)
            assert repo == "nvcr.io/nvidia/k8s-device-plugin"
            assert tag.startswith("v0.") and int(tag.split(".")[1]) >= 20
    mirrored = rendered.dp("mirror")
    images = [c["image"] for ds in _daemonsets(mirrored) for c in ds["spec"]["template"]["spec"]["containers"]]
    assert images and all(i.startswith("registry.local:5000/mirror/nvidia/k8s-device-plugin:") for i in images)
    assert not any("nvcr.io" in i or "//" in i for i in images)


def test_gfd_rbac_and_output(rendered):
    objs = rendered.dp("none-none")
    role = _one(objs, "ClusterRole")
    # GFD publishes NodeFeature objects; it must not be able to write Node objects directly.
    # ...and read its own pod for the NodeFeature's owner references (chart templates/role.yml).
    assert role["rules"] == [{"apiGroups": ["nfd.k8s-sigs.io"], "resources": ["nodefeatures"],
                              "verbs": ["get", "list", "watch", "create", "update"]},
                             {"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]
    binding = _one(objs, "RoleBinding")
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "gpu-feature-discovery",
                                    "namespace": "nvidia-device-plugin"}]
    assert not [o for o in objs if o["kind"] == "ClusterRoleBinding"]
    gfd = _one(objs, "DaemonSet", "gpu-feature-discovery")["spec"]["template"]["spec"]
    assert gfd["serviceAccountName"] == "gpu-feature-discovery"
    assert _env(gfd["containers"][0])["USE_NODE_FEATURE_API"] == "true"

    file_mode = rendered.dp("gfd-file")
    assert not [o for o in file_mode if o["kind"] in ("ClusterRole", "RoleBinding")]
    gfd = _one(file_mode, "DaemonSet", "gpu-feature-discovery")["spec"]["template"]["spec"]
    assert {m["mountPath"] for m in gfd["containers"][0]["volumeMounts"]} >= {
        "/etc/kubernetes/node-feature-discovery/features.d"}

    no_gfd = rendered.dp("no-gfd")
    assert [d["metadata"]["name"] for d in _daemonsets(no_gfd)] == ["nvidia-device-plugin"]


def test_extra_tolerations_and_pull_secrets(rendered):
    ds = _one(rendered.dp("extra-tol"), "DaemonSet", "nvidia-device-plugin")["spec"]["template"]["spec"]
    assert {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"} in ds["tolerations"]
    assert ds["imagePullSecrets"] == [{"name": "regcred"}]
    _assert_tolerations(_one(rendered.dp("extra-tol"), "DaemonSet", "nvidia-device-plugin"))


def test_namespace_allows_privileged_pods(rendered):
    ns = _one(rendered.dp("none-none"), "Namespace")
    assert ns["metadata"]["name"] == "nvidia-device-plugin"
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"


def test_helm_values_carry_the_same_contract(rendered):
    values = rendered.text("dp-helm-values")
    assert values["migStrategy"] == "none"
    assert values["image"]["repository"] == "nvcr.io/nvidia/k8s-device-plugin"
    assert values["priorityClassName"] == "system-node-critical"
    _assert_placement({"spec": {"template": {"spec": {"affinity": values["affinity"]}}}})
    _assert_tolerations({"spec": {"template": {"spec": {"tolerations": values["tolerations"]}}}})
    assert yaml.safe_load(values["config"]["map"][values["config"]["default"]])["version"] == "v1"


@pytest.mark.parametrize("case", sorted(DP_BAD))
def test_device_plugin_bad_input(rendered, case):
    text = rendered.text(f"val-device_plugin-{case}")
    assert text.startswith("FAILED: "), text
    for needle in DP_BAD[case][1]:
        assert needle in text, (needle, text)


@pytest.mark.parametrize("case", sorted(DE_BAD))
def test_dcgm_exporter_bad_input(rendered, case):
    text = rendered.text(f"val-dcgm_exporter-{case}")
    assert text.startswith("FAILED: "), text
    for needle in DE_BAD[case][1]:
        assert needle in text, (needle, text)


def test_defaults_pass_validation(rendered):
    assert rendered.text("val-device_plugin-defaults-ok") == "OK"
    assert rendered.text("val-dcgm_exporter-defaults-ok") == "OK"


def test_unknown_mig_strategy_rejected_by_argument_specs(rendered):
    text = rendered.text("argspec-mig")
    assert text.startswith("FAILED") and "device_plugin_mig_strategy" in text and "bogus" in text


# --- dcgm_exporter -----------------------------------------------------------------------


def _counters(objs):
    cm = _one(objs, "ConfigMap", "dcgm-exporter-counters")
    (csv,) = cm["data"].values()
    rows = [line.split(",") for line in csv.splitlines() if line.strip() and not line.startswith("#")]
    return {r[0].strip(): r[1].strip() for r in rows}, rows


def test_dcgm_counters_csv(rendered):
    counters, rows = _counters(rendered.de("crd"))
    assert all(len(r) == 3 for r in rows), rows  # field, type, help: three columns, no stray commas
    # GPU_UTIL is absent on MIG instances; GR_ENGINE_ACTIVE is the one that works there.
    for field in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_DEV_GPU_TEMP",
                  "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_DEV_POWER_USAGE",
                  "DCGM_FI_DEV_XID_ERRORS", "DCGM_FI_PROF_DRAM_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE"):
        assert field in counters, field
    assert set(counters.values()) <= {"gauge", "counter", "label"}
    assert counters["DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"] == "counter"  # facts C5


def test_dcgm_daemonset(rendered):
    objs = rendered.de("crd")
    ds = _one(objs, "DaemonSet", "dcgm-exporter")
    _assert_placement(ds)
    _assert_tolerations(ds)
    spec = ds["spec"]["template"]["spec"]
    c = spec["containers"][0]
    env = _env(c)
    assert env["DCGM_EXPORTER_KUBERNETES"] == "true"
    assert env["DCGM_EXPORTER_LISTEN"] == ":9400"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert "/var/lib/kubelet/pod-resources" in mounts
    vols = {v["name"]: v for v in spec["volumes"]}
    assert vols[mounts["/var/lib/kubelet/pod-resources"]]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources"
    # DCGM_EXPORTER_COLLECTORS is a file inside the mounted counters ConfigMap.
    collectors = env["DCGM_EXPORTER_COLLECTORS"]
    cfg_dir, cfg_file = collectors.rsplit("/", 1)
    assert vols[mounts[cfg_dir]]["configMap"]["name"] == "dcgm-exporter-counters"
    assert cfg_file in _one(objs, "ConfigMap", "dcgm-exporter-counters")["data"]
    assert c["ports"][0]["containerPort"] == 9400
    repo, _tag = c["image"].rsplit(":", 1)
    assert repo == "nvcr.io/nvidia/k8s/dcgm-exporter"
    mirrored = _one(rendered.de("mirror"), "DaemonSet", "dcgm-exporter")["spec"]["template"]["spec"]["containers"][0]
    assert mirrored["image"].startswith("mirror.example:443/x/nvidia/k8s/dcgm-exporter:")


@pytest.mark.parametrize("scenario,want_sm", [("crd", True), ("no-crd", False), ("disabled-with-crd", False)])
def test_servicemonitor_or_annotations(rendered, scenario, want_sm):
    objs = rendered.de(scenario)
    svc = _one(objs, "Service", "dcgm-exporter")
    sms = [o for o in objs if o["kind"] == "ServiceMonitor"]
    annotations = svc["metadata"].get("annotations", {})
    if want_sm:
        (sm,) = sms
        assert sm["apiVersion"] == "monitoring.coreos.com/v1"
        (ep,) = sm["spec"]["endpoints"]
        assert ep["honorLabels"] is True
        assert ep["port"] == svc["spec"]["ports"][0]["name"]
        assert all(svc["metadata"]["labels"][k] == v for k, v in sm["spec"]["selector"]["matchLabels"].items())
        assert "prometheus.io/scrape" not in annotations  # not scraped twice
    else:
        assert sms == []
        assert annotations["prometheus.io/scrape"] == "true"
        assert annotations["prometheus.io/port"] == "9400"
    # The Service selects the exporter pods.
    ds = _one(objs, "DaemonSet", "dcgm-exporter")
    labels = ds["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in svc["spec"]["selector"].items())


def test_servicemonitor_selected_by_kube_prometheus_stack(rendered):
    """kube-prometheus-stack's Prometheus selects ServiceMonitors by release=<release name> while
    serviceMonitorSelectorNilUsesHelmValues is true, its default
    (charts/kube-prometheus-stack/templates/prometheus/prometheus.yaml); the old ServiceMonitor had
    no labels a stock install selects, so DCGM series (the GPU trigger, the alerts) never arrived.
    namespaceSelector.matchNames and endpoints[].port (a Service port name) as prometheus-operator
    v0.93.0 pkg/apis/monitoring/v1/servicemonitor_types.go defines them."""
    sm = _one(rendered.de("crd"), "ServiceMonitor")
    assert sm["metadata"]["labels"].get("release") == "kube-prometheus-stack"
    assert sm["spec"]["namespaceSelector"] == {"matchNames": [sm["metadata"]["namespace"]]}
