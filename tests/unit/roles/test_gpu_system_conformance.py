# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""GPU system software against the upstream projects' own files (docs/conformance.md#gpu-system).

The device plugin, GFD, the MPS control daemon and the DCGM exporter are rendered through the
roles' own ``render`` / ``helm_values`` task files (one ansible-playbook run) and held against
what NVIDIA's charts, Dockerfiles and code state:

- NVIDIA/k8s-device-plugin deployments/helm/nvidia-device-plugin (templates, values.yaml,
  _helpers.tpl), cmd/gpu-feature-discovery/main.go, internal/lm/output.go,
  deployments/container/Dockerfile, read at tag v0.20.0 / branch release-0.20: the pinned v0.20.1
  is not in the stored snapshot (unconfirmed);
- NVIDIA/dcgm-exporter deployment/ (chart), etc/default-counters.csv, docker/Dockerfile,
  internal/pkg/collector/xid_collector.go, read at tag 4.5.3-4.8.2 and main (2026-05-12): the
  pinned 4.6.1-4.8.4 is not in the stored snapshot (unconfirmed);
- NVIDIA/nvidia-container-toolkit cmd/nvidia-ctk/runtime/configure/configure.go and
  pkg/config/engine/containerd/containerd.go at v1.20.0.

Expected values are written out here from those files, not taken from the templates.
"""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
VENV_PY = ROOT / ".venv" / "bin" / "python"
PLAYBOOK_BIN = ROOT / ".venv" / "bin" / "ansible-playbook"

# nvidia-ctk runtime configure: defaultNVIDIARuntimeName = "nvidia"; config version 3 puts runtimes
# under plugins."io.containerd.cri.v1.runtime" (criRuntimePluginName), version 2 under io.containerd.grpc.v1.cri.
NVIDIA_CTK_RUNTIME_NAME = "nvidia"
CRI_PLUGIN = {2: "io.containerd.grpc.v1.cri", 3: "io.containerd.cri.v1.runtime"}

CRD_MISSING = {"resources": []}
DP = {
    "defaults": {},
    "no-runtime-class": {"device_plugin_runtime_class_name": ""},
    "runtime-class-not-created": {"device_plugin_runtime_class_create": False},
    "mig-single": {"device_plugin_mig_strategy": "single"},
    "mig-mixed": {"device_plugin_mig_strategy": "mixed"},
    "volume-mounts": {"device_plugin_device_list_strategy": ["volume-mounts"]},
    "pass-device-specs": {"device_plugin_pass_device_specs": True},
    "mps": {"device_plugin_sharing_mode": "mps",
            "device_plugin_sharing_resources": [{"name": "nvidia.com/gpu", "replicas": 2}]},
    "mps-single": {"device_plugin_sharing_mode": "mps", "device_plugin_mig_strategy": "single",
                   "device_plugin_sharing_resources": [{"name": "nvidia.com/gpu", "replicas": 2}]},
    "cdi-cri": {"device_plugin_device_list_strategy": ["cdi-cri"]},
}
DE = {
    "defaults": {"__dcgm_exporter_crd": CRD_MISSING},
    "no-runtime-class": {"__dcgm_exporter_crd": CRD_MISSING, "dcgm_exporter_runtime_class_name": ""},
}
BAD = {
    "rc-name": ("device_plugin", {"device_plugin_runtime_class_name": "Nvidia_RT"}, "device_plugin_runtime_class_name"),
    "rc-handler": ("device_plugin", {"device_plugin_runtime_class_handler": "nvidia.runtime"},
                   "device_plugin_runtime_class_handler"),
}


def _fact(key: str) -> str:
    return "__r_" + "".join(ch if ch.isalnum() else "_" for ch in key)


def _include(role, tasks_from, variables):
    return {"ansible.builtin.include_role": {"name": f"gpuops.llm.{role}", "tasks_from": tasks_from},
            "vars": variables}


def _keep(key, value):
    return {"ansible.builtin.set_fact": {_fact(key): "{{ " + value + " }}"}}


@pytest.fixture(scope="module")
def out(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gpu-system")
    tasks, keys = [], []
    for name, variables in DP.items():
        tasks += [_include("device_plugin", "render", variables), _keep(f"dp-{name}", "__device_plugin_manifests")]
        keys.append(f"dp-{name}")
    tasks += [_include("device_plugin", "helm_values", {}), _keep("helm", "__device_plugin_helm_release_values")]
    tasks += [_include("device_plugin", "helm_values", {"device_plugin_helm_nfd_enabled": False,
                                                        "device_plugin_pass_device_specs": True}),
              _keep("helm-no-nfd", "__device_plugin_helm_release_values")]
    keys += ["helm", "helm-no-nfd"]
    for name, variables in DE.items():
        tasks += [_include("dcgm_exporter", "render", variables), _keep(f"de-{name}", "__dcgm_exporter_manifests")]
        keys.append(f"de-{name}")
    for name, (role, variables, _unused) in BAD.items():
        tasks.append({"block": [_include(role, "validate", variables), _keep(f"bad-{name}", "'OK'")],
                      "rescue": [_keep(f"bad-{name}", "'FAILED: ' ~ ansible_failed_result.msg")]})
        keys.append(f"bad-{name}")
    content = "{{ {" + ", ".join(f"{json.dumps(k)}: {_fact(k)}" for k in keys) + "} | to_json }}"
    tasks.append({"ansible.builtin.copy": {"content": content, "dest": str(tmp / "out.json"), "mode": "0600"}})
    pb = tmp / "render.yml"
    pb.write_text(yaml.safe_dump([{"hosts": "localhost", "gather_facts": False, "tasks": tasks}], sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    env.pop("K8S_AUTH_KUBECONFIG", None)
    python = str(VENV_PY if VENV_PY.exists() else sys.executable)
    proc = subprocess.run([str(PLAYBOOK_BIN), "-i", "localhost,", "-c", "local", "-e",
                           f"ansible_python_interpreter={python}", str(pb)],
                          capture_output=True, text=True, env=env, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return json.loads((tmp / "out.json").read_text())


def _objs(out, key, kind=None, name=None):
    return [o for o in out[key] if (kind is None or o["kind"] == kind)
            and (name is None or o["metadata"]["name"] == name)]


def _ds(out, key, name):
    (ds,) = _objs(out, key, "DaemonSet", name)
    return ds["spec"]["template"]["spec"]


def _env(container):
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def _mounts(container):
    return {m["mountPath"]: m for m in container.get("volumeMounts", [])}


def _host_paths(pod):
    return {v["name"]: v["hostPath"]["path"] for v in pod.get("volumes", []) if "hostPath" in v}


def _defaults(role):
    return yaml.safe_load((ROOT / "roles" / role / "defaults" / "main.yml").read_text())


def _all_pods(out, key):
    return [o["spec"]["template"]["spec"] for o in _objs(out, key, "DaemonSet")]


# --- runtime: RuntimeClass, containerd runtime name ---------------------------------------


@pytest.mark.parametrize("key", ["dp-defaults", "dp-mps", "de-defaults"])
def test_gpu_system_pods_name_the_nvidia_runtime_class(out, key):
    """Every GPU system pod needs NVML, which only the NVIDIA runtime injects: without runtimeClassName
    they crash-loop (FAIL_ON_INIT_ERROR) where runc is containerd's default. The chart's own value is
    runtimeClassName (values.yaml, v0.20.0; dcgm-exporter deployment/values.yaml), default null/empty:
    the default here must be nvidia. Failed on the old default ""."""
    pods = _all_pods(out, key)
    assert pods
    for pod in pods:
        assert pod.get("runtimeClassName") == "nvidia", pod.get("runtimeClassName")


def test_runtime_class_can_be_switched_off(out):
    """Where nvidia is containerd's default runtime an empty name sets none (and creates none)."""
    for key in ("dp-no-runtime-class", "de-no-runtime-class"):
        assert all("runtimeClassName" not in pod for pod in _all_pods(out, key))
    assert not _objs(out, "dp-no-runtime-class", "RuntimeClass")
    assert not _objs(out, "dp-runtime-class-not-created", "RuntimeClass")
    assert all(p["runtimeClassName"] == "nvidia" for p in _all_pods(out, "dp-runtime-class-not-created"))


def test_runtime_class_matches_the_toolkit_runtime_and_role(out):
    """The RuntimeClass handler is the containerd runtime name nvidia-ctk writes (defaultNVIDIARuntimeName,
    cmd/nvidia-ctk/runtime/configure/configure.go v1.20.0) and roles/nvidia_container_toolkit configures;
    the device plugin applies the very object the toolkit role applies (same fields, same field manager),
    so the two never fight over it."""
    (rc,) = _objs(out, "dp-defaults", "RuntimeClass")
    assert rc["apiVersion"] == "node.k8s.io/v1"
    assert rc["metadata"]["name"] == "nvidia" and rc["handler"] == NVIDIA_CTK_RUNTIME_NAME
    tk = _defaults("nvidia_container_toolkit")
    assert tk["nvidia_container_toolkit_runtime_name"] == NVIDIA_CTK_RUNTIME_NAME
    assert tk["nvidia_container_toolkit_runtime_class_name"] == _defaults("device_plugin")["device_plugin_runtime_class_name"]
    assert tk["nvidia_container_toolkit_runtime_class_name"] == _defaults("dcgm_exporter")["dcgm_exporter_runtime_class_name"]
    assert tk["nvidia_container_toolkit_field_manager"] == _defaults("device_plugin")["device_plugin_field_manager"]
    task = yaml.safe_load((ROOT / "roles/nvidia_container_toolkit/tasks/runtime_class.yml").read_text())[0]
    theirs = task["kubernetes.core.k8s"]["definition"]
    assert theirs["apiVersion"] == rc["apiVersion"] and theirs["kind"] == rc["kind"]
    assert theirs["metadata"]["labels"] == rc["metadata"]["labels"]
    assert theirs["handler"] == "{{ nvidia_container_toolkit_runtime_name }}"


def test_toolkit_writes_the_cri_runtime_plugin_of_each_config_version():
    """nvidia-ctk's criRuntimePluginName (pkg/config/engine/containerd/containerd.go v1.20.0): version 3
    (containerd 2.x) is io.containerd.cri.v1.runtime, version 2 io.containerd.grpc.v1.cri; the default
    config version here is 3, and the drop-in is conf.d/99-nvidia.toml as nvidia-ctk's own."""
    tk_vars = yaml.safe_load((ROOT / "roles/nvidia_container_toolkit/vars/main.yml").read_text())
    assert tk_vars["__nvidia_container_toolkit_cri_plugin"] == CRI_PLUGIN
    assert tk_vars["__nvidia_container_toolkit_drop_in_name"] == "99-nvidia.toml"
    assert tk_vars["__nvidia_container_toolkit_runtime_type"] == "io.containerd.runc.v2"
    assert _defaults("nvidia_container_toolkit")["nvidia_container_toolkit_containerd_config_version"] == 3


def test_helm_values_carry_runtime_class_nfd_and_cpu_manager(out):
    """Chart values.yaml (v0.20.0): runtimeClassName (default null), the NFD subchart's condition
    nfd.enabled,gfd.enabled (Chart.yaml), compatWithCPUManager for PASS_DEVICE_SPECS."""
    values = out["helm"]
    assert values["runtimeClassName"] == "nvidia"
    assert values["gfd"]["enabled"] is True and values["nfd"]["enabled"] is True
    assert values["compatWithCPUManager"] is False
    other = out["helm-no-nfd"]
    assert other["nfd"]["enabled"] is False and other["compatWithCPUManager"] is True


@pytest.mark.parametrize("case", sorted(BAD))
def test_runtime_class_bad_input_names_the_field(out, case):
    text = out[f"bad-{case}"]
    assert text.startswith("FAILED") and BAD[case][2] in text, text


# --- device plugin ------------------------------------------------------------------------


def _plugin(out, key):
    pod = _ds(out, key, "nvidia-device-plugin")
    return pod, pod["containers"][0]


@pytest.mark.parametrize("key,expected", [
    ("dp-defaults", {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
    ("dp-mps", {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}),
    ("dp-mig-single", {"capabilities": {"add": ["SYS_ADMIN"]}}),
    ("dp-mig-mixed", {"capabilities": {"add": ["SYS_ADMIN"]}}),
    ("dp-volume-mounts", {"capabilities": {"add": ["SYS_ADMIN"]}}),
    ("dp-pass-device-specs", {"privileged": True}),
])
def test_plugin_security_context_as_the_chart_decides(out, key, expected):
    """_helpers.tpl "nvidia-device-plugin.securityContext" (v0.20.0): privileged only with
    compatWithCPUManager (PASS_DEVICE_SPECS); SYS_ADMIN added when a MIG strategy is not none or
    volume-mounts is a list strategy; otherwise allowPrivilegeEscalation false, drop ALL. Failed on the
    old code (privileged for MIG, volume-mounts and MPS; not privileged for PASS_DEVICE_SPECS)."""
    _pod, c = _plugin(out, key)
    assert c["securityContext"] == expected


def test_plugin_env_mounts_and_placement(out):
    """daemonset-device-plugin.yml (v0.20.0): command nvidia-device-plugin, NVIDIA_VISIBLE_DEVICES=all and
    NVIDIA_DRIVER_CAPABILITIES=compute,utility, the kubelet device-plugins hostPath, priorityClassName
    system-node-critical, tolerations CriticalAddonsOnly and nvidia.com/gpu:NoSchedule, node affinity on
    feature.node.kubernetes.io/pci-10de.present or nvidia.com/gpu.present."""
    pod, c = _plugin(out, "dp-defaults")
    env = _env(c)
    assert c["command"] == ["nvidia-device-plugin"]
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
    assert env["MIG_STRATEGY"] == "none" and env["FAIL_ON_INIT_ERROR"] == "true"
    assert env["DEVICE_LIST_STRATEGY"] == "envvar" and env["DEVICE_ID_STRATEGY"] == "uuid"
    assert "/var/lib/kubelet/device-plugins" in _mounts(c)
    assert "/var/lib/kubelet/device-plugins" in _host_paths(pod).values()
    assert pod["priorityClassName"] == "system-node-critical"
    tols = pod["tolerations"]
    assert {"key": "CriticalAddonsOnly", "operator": "Exists"} in tols
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tols
    keys = {e["key"] for t in pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
            ["nodeSelectorTerms"] for e in t["matchExpressions"] if e["operator"] == "In"}
    assert keys == {"feature.node.kubernetes.io/pci-10de.present", "nvidia.com/gpu.present"}
    # No host paths the plugin does not need with envvar: no driver root, no CDI dir.
    assert set(_host_paths(pod).values()) == {"/var/lib/kubelet/device-plugins"}


def test_plugin_cdi_strategy_mounts_cdi_and_driver_root(out):
    """CDI strategies make the plugin generate CDI specs into /var/run/cdi from the driver files under
    /driver-root (cmd/nvidia-device-plugin/plugin-manager.go cdi.WithDriverRoot; the chart's cdi-root and
    driver-root volumes). Failed on the old code (neither mounted)."""
    pod, c = _plugin(out, "dp-cdi-cri")
    mounts = _mounts(c)
    assert "/var/run/cdi" in mounts and mounts["/driver-root"]["readOnly"] is True
    paths = _host_paths(pod)
    assert paths[mounts["/var/run/cdi"]["name"]] == "/var/run/cdi"
    assert paths[mounts["/driver-root"]["name"]] == "/"


def test_plugin_mps_mounts(out):
    """daemonset-device-plugin.yml: /mps from mps.root and /dev/shm from <mps.root>/shm (MPS health-checks)."""
    pod, c = _plugin(out, "dp-mps")
    mounts, paths = _mounts(c), _host_paths(pod)
    assert paths[mounts["/mps"]["name"]] == "/run/nvidia/mps"
    assert paths[mounts["/dev/shm"]["name"]] == "/run/nvidia/mps/shm"
    assert _env(c)["MPS_ROOT"] == "/run/nvidia/mps"


# --- GFD + NFD ----------------------------------------------------------------------------


def test_gfd_node_feature_api_env_and_rbac(out):
    """cmd/gpu-feature-discovery/main.go (v0.20.0): USE_NODE_FEATURE_API (default true), NODE_NAME,
    NAMESPACE, POD_NAME (internal/flags/node.go); internal/lm/output.go creates/updates the NodeFeature
    nvidia-features-for-<node> in NAMESPACE and reads its own pod for owner references. Chart
    templates/role.yml: nodefeatures get/list/watch/create/update and pods get. No write on Node objects.
    Failed on the old code (no POD_NAME, no pods get)."""
    pod = _ds(out, "dp-defaults", "gpu-feature-discovery")
    c = pod["containers"][0]
    env = _env(c)
    assert env["USE_NODE_FEATURE_API"] == "true"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert c["command"][0].rsplit("/", 1)[-1] == "gpu-feature-discovery"
    # values.yaml gfd.securityContext: privileged (vGPU info on the host); /sys from the host.
    assert c["securityContext"] == {"privileged": True}
    assert _host_paths(pod)[_mounts(c)["/sys"]["name"]] == "/sys"
    (role,) = _objs(out, "dp-defaults", "ClusterRole")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules[(("nfd.k8s-sigs.io",), ("nodefeatures",))] == {"get", "list", "watch", "create", "update"}
    assert rules[(("",), ("pods",))] == {"get"}
    assert all("nodes" not in r["resources"] for r in role["rules"])


# --- MPS control daemon -------------------------------------------------------------------


def test_mps_control_daemon_as_the_chart(out):
    """daemonset-mps-control-daemon.yml (v0.20.0): hostPID, init container `mps-control-daemon mount-shm`
    privileged with Bidirectional propagation on /mps, the daemon privileged with /dev/shm and /mps,
    NVIDIA_VISIBLE_DEVICES=all, NVIDIA_DRIVER_CAPABILITIES=compute,utility, NVIDIA_MIG_MONITOR_DEVICES=all
    under a MIG strategy, runtimeClassName."""
    for key in ("dp-mps", "dp-mps-single"):
        pod = _ds(out, key, "nvidia-device-plugin-mps-control-daemon")
        assert pod["hostPID"] is True and pod["runtimeClassName"] == "nvidia"
        (init,) = pod["initContainers"]
        assert init["command"] == ["mps-control-daemon", "mount-shm"]
        assert init["securityContext"] == {"privileged": True}
        assert _mounts(init)["/mps"]["mountPropagation"] == "Bidirectional"
        c = pod["containers"][0]
        assert c["command"] == ["mps-control-daemon"] and c["securityContext"] == {"privileged": True}
        assert {"/dev/shm", "/mps"} <= set(_mounts(c))
        env = _env(c)
        assert env["NVIDIA_VISIBLE_DEVICES"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"] == "compute,utility"
        assert ("NVIDIA_MIG_MONITOR_DEVICES" in env) == (key == "dp-mps-single")
        # The chart selects nvidia.com/mps.capable=true nodes; we place the daemon exactly as the
        # plugin (the GPU-node contract, so the pause label applies to both).
        plugin, _c = _plugin(out, key)
        assert (pod.get("affinity"), pod.get("nodeSelector")) == (plugin.get("affinity"), plugin.get("nodeSelector"))
        assert pod.get("affinity") or pod.get("nodeSelector")


# --- DCGM exporter ------------------------------------------------------------------------


def _exporter(out, key="de-defaults"):
    pod = _ds(out, key, "dcgm-exporter")
    return pod, pod["containers"][0]


def test_dcgm_exporter_security_context_as_the_chart(out):
    """deployment/values.yaml securityContext (4.5.3-4.8.2): runAsNonRoot false, runAsUser 0, add SYS_ADMIN
    (DCGM_FI_PROF_*), drop ALL, allowPrivilegeEscalation false. Failed on the old code (no drop, escalation
    allowed)."""
    _pod, c = _exporter(out)
    assert c["securityContext"] == {"runAsNonRoot": False, "runAsUser": 0, "allowPrivilegeEscalation": False,
                                    "capabilities": {"add": ["SYS_ADMIN"], "drop": ["ALL"]}}


def test_dcgm_exporter_env_port_probes_and_pod_resources(out):
    """deployment/templates/daemonset.yaml: DCGM_EXPORTER_KUBERNETES=true, DCGM_EXPORTER_LISTEN :9400,
    NODE_NAME, the kubelet pod-resources hostPath read-only, liveness/readiness httpGet /health on 9400.
    pkg/cmd/app.go: DCGM_EXPORTER_COLLECTORS, DCGM_EXPORTER_XID_COUNT_WINDOW_SIZE (default 5 min)."""
    pod, c = _exporter(out)
    env = _env(c)
    assert env["DCGM_EXPORTER_KUBERNETES"] == "true" and env["DCGM_EXPORTER_LISTEN"] == ":9400"
    assert env["NODE_NAME"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}
    assert env["DCGM_EXPORTER_XID_COUNT_WINDOW_SIZE"] == "300000"
    # uid: device IDs are GPU/MIG UUIDs, what the plugin's DEVICE_ID_STRATEGY=uuid hands the kubelet.
    assert env["DCGM_EXPORTER_KUBERNETES_GPU_ID_TYPE"] == "uid"
    assert c["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}]
    mount = _mounts(c)["/var/lib/kubelet/pod-resources"]
    assert mount["readOnly"] is True and _host_paths(pod)[mount["name"]] == "/var/lib/kubelet/pod-resources"
    for probe in ("livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/health", "port": 9400}
    assert pod["priorityClassName"] == "system-node-critical"
    counters_file = env["DCGM_EXPORTER_COLLECTORS"]
    assert counters_file.rsplit("/", 1)[0] in _mounts(c)


# Types as etc/default-counters.csv has them (4.5.3-4.8.2); DCGM_EXP_XID_ERRORS_COUNT is listed there as
# "counter" (commented out) but counts XIDs within a window and falls back to 0: a gauge (PR #239 shows
# "# TYPE DCGM_EXP_XID_ERRORS_COUNT gauge").
UPSTREAM_TYPES = {
    "DCGM_FI_DEV_SM_CLOCK": "gauge", "DCGM_FI_DEV_MEM_CLOCK": "gauge", "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge", "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter", "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "counter",
    "DCGM_FI_DEV_GPU_UTIL": "gauge", "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge", "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge", "DCGM_FI_DEV_FB_USED": "gauge", "DCGM_FI_DEV_FB_RESERVED": "gauge",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter", "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge", "DCGM_FI_DRIVER_VERSION": "label",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge",
    "DCGM_FI_PROF_DRAM_ACTIVE": "gauge", "DCGM_FI_PROF_PCIE_TX_BYTES": "gauge", "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge",
    "DCGM_EXP_XID_ERRORS_COUNT": "gauge",
}


def _counters(out):
    (cm,) = _objs(out, "de-defaults", "ConfigMap", "dcgm-exporter-counters")
    (csv,) = cm["data"].values()
    rows = [[x.strip() for x in line.split(",", 2)] for line in csv.splitlines() if line.strip() and not line.startswith("#")]
    return {r[0]: r[1] for r in rows}


def test_dcgm_counter_types_match_upstream(out):
    counters = _counters(out)
    for field, kind in counters.items():
        assert field in UPSTREAM_TYPES, f"{field}: no upstream type recorded in this test"
        assert kind == UPSTREAM_TYPES[field], (field, kind)


def _metrics_used():
    """Every DCGM metric the alerts, dashboards, audit and autoscaling read."""
    files = [ROOT / "roles/observability/templates/alert-rules.yml.j2", ROOT / "plugins/module_utils/autoscaling.py"]
    files += sorted((ROOT / "roles/observability/files/dashboards").glob("*.json"))
    found = set()
    for path in files:
        found |= set(re.findall(r"\bDCGM_(?:FI|EXP)_[A-Z0-9_]*[A-Z0-9]\b", path.read_text(encoding="utf-8")))
    return found


def test_every_dcgm_metric_used_is_exported(out):
    """A metric the exporter is not told to collect (DCGM_EXPORTER_COLLECTORS = our CSV) never exists:
    an alert on it can never fire. Failed on the old code for the XID alert's DCGM_EXP_XID_ERRORS_COUNT."""
    used = _metrics_used()
    assert {"DCGM_FI_DEV_GPU_TEMP", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_EXP_XID_ERRORS_COUNT",
            "DCGM_FI_PROF_GR_ENGINE_ACTIVE"} <= used
    missing = used - set(_counters(out))
    assert not missing, f"used but not exported: {sorted(missing)}"


def test_xid_alert_uses_the_windowed_count_not_the_sticky_gauge():
    """DCGM_FI_DEV_XID_ERRORS holds the last XID code until a GPU reset (NVIDIA/DCGM#277, dcgm-exporter#500):
    `> 0` on it fires forever after one XID. The alert must use DCGM_EXP_XID_ERRORS_COUNT
    (internal/pkg/collector/xid_collector.go: per-code count within the window, label xid). Failed on the
    old rule."""
    text = (ROOT / "roles/observability/templates/alert-rules.yml.j2").read_text(encoding="utf-8")
    block = text[text.index("- alert: GPUXidError"):]
    block = block[:block.index("runbook_url")]
    expr = block[block.index("expr:"):block.index("for:")]
    assert "DCGM_EXP_XID_ERRORS_COUNT" in expr and "DCGM_FI_DEV_XID_ERRORS" not in expr


def test_dcgm_labels_the_alerts_read():
    """render_metrics.go (4.5.3-4.8.2): gpu, UUID, pci_bus_id, device, modelName, GPU_I_PROFILE/GPU_I_ID
    on MIG, Hostname; renamed hostname on main (#655, 2026-05-12), which 4.6.1-4.8.4 likely carries
    (unconfirmed): every alert annotation names both spellings."""
    text = (ROOT / "roles/observability/templates/alert-rules.yml.j2").read_text(encoding="utf-8")
    for mention in re.findall(r"\$labels\.(Hostname|hostname)", text):
        assert mention in ("Hostname", "hostname")
    assert text.count("$labels.Hostname") == text.count("$labels.hostname") > 0
    allowed = {"gpu", "UUID", "modelName", "Hostname", "hostname", "GPU_I_ID", "GPU_I_PROFILE", "pod",
               "namespace", "container", "xid", "window_size_in_ms"}
    gpu_block = text[text.index("name: gpuops-llm.gpu"):text.index("name: gpuops-llm.inference")]
    used = set(re.findall(r"\$labels\.([A-Za-z_]+)", gpu_block))
    assert used <= allowed, used - allowed


# --- images: users the pods run as --------------------------------------------------------


def _image_facts():
    return {i["repository"]: i for i in yaml.safe_load((ROOT / "testbed/images.yml").read_text())["images"]}


@pytest.mark.parametrize("key", ["dp-mps", "dp-pass-device-specs", "de-defaults"])
def test_pods_run_as_users_their_images_define(out, key):
    """k8s-device-plugin Dockerfile: USER 0:0; dcgm-exporter distroless target: USER root:root. Each
    container's uid (runAsUser, else the image's default) must be a user testbed/images.yml lists."""
    facts = _image_facts()
    for pod in _all_pods(out, key):
        for c in pod.get("initContainers", []) + pod["containers"]:
            repo, tag = c["image"].rsplit(":", 1)
            assert repo in facts, f"no facts for {repo} in testbed/images.yml"
            fact = facts[repo]
            assert tag in [str(t) for t in fact["tags"]], (repo, tag)
            uid = (c.get("securityContext") or {}).get("runAsUser", (pod.get("securityContext") or {}).get(
                "runAsUser", fact["default_uid"]))
            assert uid in {u["uid"] for u in fact["users"].values()}, (c["name"], uid)
