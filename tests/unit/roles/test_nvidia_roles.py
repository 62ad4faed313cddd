# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Roles nvidia_driver and nvidia_container_toolkit, exercised through ansible-playbook.

Two kinds of runs:
* ``--check`` runs of each role against localhost with faked platform facts (Ubuntu 22.04/24.04,
  Debian 12, RHEL 9, Rocky 9). Every path the roles would write is pointed at a temp dir and
  the plays force check mode, so nothing on this machine changes. The JSON callback
  (``ansible.posix.json``; ansible-core 2.19 ships no JSON stdout callback of its own) tells
  which tasks ran, were skipped or failed, with what arguments and diffs.
* REAL runs of the containerd and CDI parts into a temp dir, parsed with ``tomllib``, each
  followed by a second run that must report changed=0.

Expected package names, repository paths and TOML keys come from NVIDIA's documentation
(Driver Installation Guide: pinning packages from branch 580 on, ``nvidia-open``, DNF module
streams ``<branch>-open``; CUDA repository directories and key files) and from nvidia-container-
toolkit's containerd config writer (CRI plugin names per config version, ``BinaryName``,
``runtime_type = io.containerd.runc.v2``, drop-in imports ``<dir>/conf.d/*.toml``), not from the
roles' own variables.
"""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
VENV_BIN = ROOT / ".venv" / "bin"
PLAYBOOKS = Path(__file__).resolve().parent / "playbooks"

UBUNTU_2204 = {
    "distribution": "Ubuntu", "distribution_version": "22.04", "distribution_major_version": "22",
    "os_family": "Debian", "kernel": "5.15.0-105-generic", "architecture": "x86_64",
}
UBUNTU_2404 = {
    "distribution": "Ubuntu", "distribution_version": "24.04", "distribution_major_version": "24",
    "os_family": "Debian", "kernel": "6.8.0-45-generic", "architecture": "x86_64",
}
DEBIAN_12 = {
    "distribution": "Debian", "distribution_version": "12.7", "distribution_major_version": "12",
    "os_family": "Debian", "kernel": "6.1.0-26-amd64", "architecture": "x86_64",
}
RHEL_9 = {
    "distribution": "RedHat", "distribution_version": "9.4", "distribution_major_version": "9",
    "os_family": "RedHat", "kernel": "5.14.0-427.13.1.el9_4.x86_64", "architecture": "x86_64",
}
ROCKY_9 = dict(RHEL_9, distribution="Rocky")

CUDA_REPOS = "https://developer.download.nvidia.com/compute/cuda/repos"


# --------------------------------------------------------------------------- helpers
# Each scenario is an inventory "host" with connection local and its own variables, so one
# ansible-playbook run (forks in parallel) covers many scenarios: the tier stays fast.


def _collections_path() -> str:
    out = subprocess.run(
        [str(VENV_BIN / "python"), str(ROOT / "scripts" / "collection_path.py")],
        capture_output=True, text=True, check=True,
    )
    return out.stdout.strip()


@pytest.fixture(scope="module")
def ansible_env(tmp_path_factory):
    if not (VENV_BIN / "ansible-playbook").exists():
        pytest.fail("the project virtualenv (.venv) with ansible-playbook is not installed: run scripts/bootstrap.sh")
    home = tmp_path_factory.mktemp("ansible-home")
    env = dict(os.environ)
    env.update(
        ANSIBLE_COLLECTIONS_PATH=_collections_path(),
        ANSIBLE_ROLES_PATH=str(ROOT / "roles"),
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
        ANSIBLE_HOME=str(home),
        ANSIBLE_LOCAL_TEMP=str(home / "tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_RETRY_FILES_ENABLED="0",
        ANSIBLE_FORKS="16",
        ANSIBLE_HOST_KEY_CHECKING="0",
    )
    return env


class Host:
    """What one inventory host saw in one ansible-playbook run (JSON callback)."""

    def __init__(self, data: dict, name: str):
        self.name = name
        self.tasks = []
        for play in data["plays"]:
            for task in play["tasks"]:
                result = task.get("hosts", {}).get(name)
                if result is not None:
                    self.tasks.append((task["task"]["name"], result))
        self.stats = data["stats"].get(name, {})

    def results(self, suffix: str) -> list[dict]:
        return [r for name, r in self.tasks if name.endswith(suffix)]

    def one(self, suffix: str) -> dict:
        found = self.results(suffix)
        assert len(found) == 1, f"{self.name}: expected one task named *{suffix!r}, got {len(found)}: " \
                                f"{[n for n, _unused in self.tasks]}"
        return found[0]

    def ran(self, suffix: str) -> bool:
        found = self.results(suffix)
        return bool(found) and not found[0].get("skipped", False)

    @property
    def failed(self) -> bool:
        return self.stats.get("failures", 0) > 0

    def failed_task(self) -> tuple[str, dict]:
        failed = [(n, r) for n, r in self.tasks if r.get("failed") and not r.get("skipped")]
        assert failed, f"{self.name}: expected a failed task"
        return failed[0]

    def fact(self, name: str):
        for _unused, result in reversed(self.tasks):
            facts = result.get("ansible_facts", {})
            if name in facts:
                return facts[name]
        raise AssertionError(f"{self.name}: fact {name} was never set")

    def ok(self) -> None:
        assert not self.failed, self.failed_task()


def run_playbook(env, playbook: str, hosts: dict[str, dict], workdir: Path, check: bool,
                 limit: str | None = None) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    inventory = workdir / f"inventory-{len(list(workdir.glob('inventory-*.json')))}.json"
    inventory.write_text(json.dumps({"all": {
        "hosts": hosts,
        "vars": {"ansible_connection": "local", "ansible_python_interpreter": sys.executable},
    }}))
    cmd = [str(VENV_BIN / "ansible-playbook"), "-i", str(inventory), str(PLAYBOOKS / playbook), "--diff"]
    if check:
        cmd.append("--check")
    if limit:
        cmd += ["--limit", limit]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=workdir, check=False)
    try:
        return json.loads(proc.stdout)
    except json.JSONDecodeError as exc:  # pragma: no cover - shows the raw output on failure
        raise AssertionError(f"no JSON from ansible-playbook (rc={proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}") from exc


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


# --------------------------------------------------------------------------- nvidia_driver

DRIVER_SCENARIOS = {
    # Defaults on each supported release; the variants ride on other hosts to keep the run short.
    "u2204": (UBUNTU_2204, {}),
    "u2404": (UBUNTU_2404, {}),
    "rocky9": (ROCKY_9, {}),
    "rhel9_580_proprietary": (RHEL_9, {"nvidia_driver_branch": "580",
                                       "nvidia_driver_kernel_modules": "proprietary"}),
    "deb12_arm_mirror_620": (dict(DEBIAN_12, architecture="aarch64"), {
        "nvidia_driver_branch": "620",
        "nvidia_driver_cuda_repo_base_url": "http://mirror.example.internal/cuda/repos/"}),
    "sb_on": (UBUNTU_2204, {"__mokutil": "on"}),
    "sb_signed": (UBUNTU_2204, {"__mokutil": "on", "nvidia_driver_secure_boot_signed": True}),
    "deb_signed": (DEBIAN_12, {"nvidia_driver_secure_boot_signed": True}),
    "reboot_opt_in": (ROCKY_9, {"nvidia_driver_reboot": True}),
    "unsupported": (dict(UBUNTU_2204, distribution_version="20.04", distribution_major_version="20"), {}),
    "bad_choice": (UBUNTU_2204, {"nvidia_driver_kernel_modules": "nouveau"}),
}


@pytest.fixture(scope="module")
def driver(ansible_env, tmp_path_factory):
    """One --check run of nvidia_driver over every scenario; returns name -> Host."""
    work = tmp_path_factory.mktemp("driver")
    key = work / "cuda.pub"
    key.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\nfake\n-----END PGP PUBLIC KEY BLOCK-----\n")
    mokutil = {"off": _script(work / "mokutil-off", 'echo "SecureBoot disabled"\n'),
               "on": _script(work / "mokutil-on", 'echo "SecureBoot enabled"\n')}
    hosts = {}
    for name, (facts, overrides) in DRIVER_SCENARIOS.items():
        root = work / name
        for sub in ("keyrings", "sources", "yum", "modprobe"):
            (root / sub).mkdir(parents=True)
        overrides = dict(overrides)
        hosts[name] = {
            "test_facts": facts,
            "nvidia_driver_apt_keyring_dir": str(root / "keyrings"),
            "nvidia_driver_apt_sources_dir": str(root / "sources"),
            "nvidia_driver_yum_repos_dir": str(root / "yum"),
            "nvidia_driver_modprobe_dir": str(root / "modprobe"),
            # A local key stands in for NVIDIA's (no network here); it is also how mirrors work.
            "nvidia_driver_cuda_repo_gpg_key_url": key.as_uri(),
            "nvidia_driver_mokutil_path": mokutil[overrides.pop("__mokutil", "off")],
            **overrides,
        }
    data = run_playbook(ansible_env, "nvidia_driver_check.yml", hosts, work, check=True)
    result = {name: Host(data, name) for name in hosts}
    result["__vars__"] = hosts
    return result


PREDICT = "Predict the driver installation (check mode, repository not configured yet)"


@pytest.mark.parametrize("name, slug", [("u2204", "ubuntu2204"), ("u2404", "ubuntu2404")])
def test_driver_debian_family_plan(driver, name, slug):
    host, hv = driver[name], driver["__vars__"][name]
    host.ok()
    kernel = hv["test_facts"]["kernel"]

    repo = host.one("Add the CUDA apt repository")
    assert repo["changed"] is True
    diff = repo["diff"][0]
    assert diff["after_header"] == f"{hv['nvidia_driver_apt_sources_dir']}/cuda-{slug}.list"
    keyring = f"{hv['nvidia_driver_apt_keyring_dir']}/cuda-archive-keyring.asc"
    assert f"deb [signed-by={keyring}] {CUDA_REPOS}/{slug}/x86_64/ /" in diff["after"]
    key = host.one("Install the CUDA repository signing key")
    assert key["changed"] is True and key["dest"] == keyring

    # apt cannot see a repository that check mode did not create: the role predicts instead.
    assert not host.ran("Install the driver and kernel headers")
    plan = host.one(PREDICT)
    assert plan["changed"] is True
    assert plan["msg"]["repository"] == f"{CUDA_REPOS}/{slug}/x86_64"
    # Branch pinning package first, then the open-module driver, then headers for THIS kernel.
    assert plan["msg"]["would_install"] == ["nvidia-driver-pinning-595", "nvidia-open", f"linux-headers-{kernel}"]

    blacklist = host.one("Blacklist nouveau")
    assert blacklist["changed"] is True
    assert blacklist["diff"][0]["after_header"] == f"{hv['nvidia_driver_modprobe_dir']}/blacklist-nouveau.conf"
    assert "blacklist nouveau" in blacklist["diff"][0]["after"]
    assert host.fact("nvidia_driver_result")["secure_boot"] == "disabled"
    assert not host.results("Add the CUDA dnf repository")


def test_driver_debian12_arm_mirror_other_branch(driver):
    host, hv = driver["deb12_arm_mirror_620"], driver["__vars__"]["deb12_arm_mirror_620"]
    host.ok()
    mirror = "http://mirror.example.internal/cuda/repos/debian12/sbsa"
    assert f"{mirror}/ /" in host.one("Add the CUDA apt repository")["diff"][0]["after"]
    assert host.one("Add the CUDA apt repository")["diff"][0]["after_header"].endswith("/cuda-debian12.list")
    plan = host.one(PREDICT)
    assert plan["msg"]["repository"] == mirror
    assert plan["msg"]["would_install"] == [
        "nvidia-driver-pinning-620", "nvidia-open", f"linux-headers-{hv['test_facts']['kernel']}"]


def test_driver_rocky9_plan(driver):
    host, hv = driver["rocky9"], driver["__vars__"]["rocky9"]
    host.ok()
    repo = host.one("Add the CUDA dnf repository")
    assert repo["changed"] is True
    assert repo["diff"]["after_header"] == f"{hv['nvidia_driver_yum_repos_dir']}/cuda-rhel9.repo"
    assert f"baseurl = {CUDA_REPOS}/rhel9/x86_64" in repo["diff"]["after"]
    assert f"gpgkey = {hv['nvidia_driver_cuda_repo_gpg_key_url']}" in repo["diff"]["after"]
    assert "gpgcheck = 1" in repo["diff"]["after"]
    assert not host.ran("Install the driver and kernel headers")
    assert not host.ran("Enable the nvidia-driver module stream for the branch")
    plan = host.one(PREDICT)
    assert plan["msg"]["would_enable_module_stream"] == "nvidia-driver:595-open"
    assert plan["msg"]["would_install"] == [
        "nvidia-open", f"kernel-devel-{hv['test_facts']['kernel']}", "kernel-headers"]
    assert not host.results("Add the CUDA apt repository")


def test_driver_rhel9_proprietary_other_branch(driver):
    host, hv = driver["rhel9_580_proprietary"], driver["__vars__"]["rhel9_580_proprietary"]
    host.ok()
    assert host.one("Add the CUDA dnf repository")["diff"]["after_header"].endswith("/cuda-rhel9.repo")
    plan = host.one(PREDICT)
    assert plan["msg"]["would_enable_module_stream"] == "nvidia-driver:580-dkms"
    assert plan["msg"]["would_install"] == [
        "cuda-drivers", f"kernel-devel-{hv['test_facts']['kernel']}", "kernel-headers"]


def test_driver_secure_boot_enabled_stops_before_any_change(driver):
    host = driver["sb_on"]
    assert host.failed
    name, result = host.failed_task()
    assert name.endswith("Stop on a Secure Boot host without a signed-module path")
    for needle in ("Secure Boot is enabled", "nvidia_driver_secure_boot_signed", "mokutil --import",
                   "linux-modules-nvidia-595-server-open", "Nothing was changed"):
        assert needle in result["msg"]
    # Stopped before the first change: no repo, no blacklist, nothing changed.
    assert host.stats["changed"] == 0
    assert not host.results("Blacklist nouveau")
    assert not host.results("Add the CUDA apt repository")


def test_driver_secure_boot_signed_path_ubuntu(driver):
    host = driver["sb_signed"]
    assert host.one("Stop on a Secure Boot host without a signed-module path").get("skipped") is True
    # Canonical-signed modules from the Ubuntu archive: no CUDA repository, no pinning, no headers.
    assert not host.ran("Add the CUDA apt repository")
    assert not host.ran("Install the CUDA repository signing key")
    assert not host.ran("Pin the driver branch")
    assert host.fact("__nvidia_driver_use_cuda_repo") is False
    assert host.fact("__nvidia_driver_packages_effective") == [
        f"linux-modules-nvidia-595-server-open-{UBUNTU_2204['kernel']}",
        "nvidia-headless-no-dkms-595-server-open",
        "nvidia-utils-595-server",
    ]
    # With no repository to add, check mode asks apt itself (which may fail on this non-Ubuntu
    # test machine): the install task is reached, not predicted.
    assert host.ran("Install the driver and kernel headers")
    assert not host.ran(PREDICT)


def test_driver_secure_boot_signed_path_missing_on_debian(driver):
    host = driver["deb_signed"]
    name, result = host.failed_task()
    assert name.endswith("Stop on a Secure Boot path this OS does not offer")
    assert "nvidia_driver_packages" in result["msg"] and "Nothing was changed" in result["msg"]
    assert host.stats["changed"] == 0


def test_driver_reboot_not_scheduled_unless_opted_in(driver):
    host = driver["u2204"]
    assert host.one("Reboot, one host at a time").get("skipped") is True
    assert "nvidia_driver_reboot" in host.one("Report the pending reboot")["msg"]
    result = host.fact("nvidia_driver_result")
    assert result["reboot_required"] is True and result["reboot_pending"] is True
    assert result["rebooted"] is False and result["verified"] is False
    # No verification while the new driver is not loaded.
    assert not host.ran("Verify the driver through NVML")


def test_driver_reboot_runs_when_opted_in(driver):
    """Opted in, the reboot task runs. On a local connection ansible refuses to reboot the
    control node, which is the evidence we want without rebooting anything."""
    name, result = driver["reboot_opt_in"].failed_task()
    assert name.endswith("Reboot, one host at a time")
    assert "would reboot the control node" in result["msg"]


def test_driver_unsupported_platform(driver):
    host = driver["unsupported"]
    name, result = host.failed_task()
    assert name.endswith("Stop on an unsupported platform")
    assert "Ubuntu 20.04" in result["msg"] and "Nothing was changed" in result["msg"]
    assert host.stats["changed"] == 0


def test_driver_argument_spec_rejects_bad_choice(driver):
    name, result = driver["bad_choice"].failed_task()
    assert "Validating arguments against arg spec" in name
    assert "nvidia_driver_kernel_modules" in json.dumps(result)
    assert driver["bad_choice"].stats["changed"] == 0


@pytest.fixture(scope="module")
def verify(ansible_env, tmp_path_factory):
    """The verification step alone, through the real gpuops.llm.gpu_facts on simulator states."""
    nvml_sim = pytest.importorskip("ansible_collections.gpuops.llm.plugins.module_utils.nvml_sim")
    work = tmp_path_factory.mktemp("verify")
    states = {
        "two_h100_on_595": nvml_sim.new_host_state(["NVIDIA H100 80GB HBM3"] * 2, driver_version="595.58.03"),
        "still_on_580": nvml_sim.new_host_state(["NVIDIA H100 80GB HBM3"], driver_version="580.95.05"),
        "no_gpus": nvml_sim.new_host_state([], driver_version="595.58.03"),
    }
    hosts = {}
    for name, state in states.items():
        path = work / f"{name}.json"
        nvml_sim.save_state(str(path), state)
        hosts[name] = {"nvidia_driver_branch": "595", "nvidia_driver_nvml_sim_state": str(path)}
    data = run_playbook(ansible_env, "nvidia_driver_verify.yml", hosts, work, check=False)
    return {name: Host(data, name) for name in hosts}


def test_driver_verification_passes_on_the_branch(verify):
    host = verify["two_h100_on_595"]
    host.ok()
    assert host.fact("__nvidia_driver_verified") is True
    assert host.fact("__nvidia_driver_verified_version") == "595.58.03"
    assert int(host.fact("__nvidia_driver_verified_gpu_count")) == 2


@pytest.mark.parametrize("name, needle", [("still_on_580", "driver version '580.95.05'"),
                                          ("no_gpus", "reports 0 GPU(s)")])
def test_driver_verification_fails_clearly(verify, name, needle):
    task, result = verify[name].failed_task()
    assert task.endswith("Assert at least one GPU on the wanted branch")
    assert needle in result["msg"] and "'595.'" in result["msg"]


# --------------------------------------------------------------------------- toolkit, check mode


def _toolkit_vars(root: Path, key: Path) -> dict:
    for sub in ("keyrings", "sources", "yum", "containerd", "cdi"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return {
        "test_root": str(root),
        "nvidia_container_toolkit_apt_keyring_dir": str(root / "keyrings"),
        "nvidia_container_toolkit_apt_sources_dir": str(root / "sources"),
        "nvidia_container_toolkit_yum_repos_dir": str(root / "yum"),
        "nvidia_container_toolkit_repo_gpg_key_url": key.as_uri(),
        "nvidia_container_toolkit_containerd_config_dir": str(root / "containerd"),
        "nvidia_container_toolkit_cdi_spec_path": str(root / "cdi" / "nvidia.yaml"),
        "nvidia_container_toolkit_driver_version_file": str(root / "driver-version"),
        "nvidia_container_toolkit_ctk_path": str(root / "nvidia-ctk"),
        "nvidia_container_toolkit_runtime_class": False,
        "nvidia_container_toolkit_containerd_restart": False,
    }


@pytest.fixture(scope="module")
def toolkit_check(ansible_env, tmp_path_factory):
    work = tmp_path_factory.mktemp("toolkit-check")
    key = work / "toolkit.pub"
    key.write_text("fake key\n")
    hosts = {
        "u2404": dict(_toolkit_vars(work / "u2404", key), test_facts=UBUNTU_2404,
                      nvidia_container_toolkit_version="1.18.0"),
        "rocky9": dict(_toolkit_vars(work / "rocky9", key), test_facts=ROCKY_9,
                       nvidia_container_toolkit_version="1.18.0"),
    }
    data = run_playbook(ansible_env, "nvidia_container_toolkit_check.yml", hosts, work, check=True)
    return {name: Host(data, name) for name in hosts} | {"__vars__": hosts}


def test_toolkit_packages_ubuntu_pinned(toolkit_check):
    host, hv = toolkit_check["u2404"], toolkit_check["__vars__"]["u2404"]
    host.ok()
    repo = host.one("Add the toolkit apt repository")
    keyring = f"{hv['nvidia_container_toolkit_apt_keyring_dir']}/nvidia-container-toolkit.asc"
    assert (f"deb [signed-by={keyring}] https://nvidia.github.io/libnvidia-container/stable/deb/$(ARCH) /"
            in repo["diff"][0]["after"])
    plan = host.one("Predict the toolkit installation (check mode, repository not configured yet)")
    # All four packages pinned to the same version (they must match each other).
    assert plan["msg"]["would_install"] == [
        "nvidia-container-toolkit=1.18.0-1", "nvidia-container-toolkit-base=1.18.0-1",
        "libnvidia-container-tools=1.18.0-1", "libnvidia-container1=1.18.0-1"]
    # The RuntimeClass is skippable: switched off, its task file is not even included.
    assert not host.ran("Create the RuntimeClass in the cluster")
    # Check mode wrote nothing.
    assert list(Path(hv["nvidia_container_toolkit_containerd_config_dir"]).iterdir()) == []
    assert not Path(hv["nvidia_container_toolkit_cdi_spec_path"]).exists()


def test_toolkit_packages_rhel(toolkit_check):
    host = toolkit_check["rocky9"]
    host.ok()
    repo = host.one("Add the toolkit dnf repository")
    assert repo["diff"]["after_header"].endswith("/nvidia-container-toolkit.repo")
    assert "baseurl = https://nvidia.github.io/libnvidia-container/stable/rpm/$basearch" in repo["diff"]["after"]
    assert "repo_gpgcheck = 1" in repo["diff"]["after"]
    plan = host.one("Predict the toolkit installation (check mode, repository not configured yet)")
    assert plan["msg"]["would_install"][0] == "nvidia-container-toolkit-1.18.0-1"


def test_toolkit_runtime_class_applied_once_with_server_side_apply(ansible_env, tmp_path):
    """No cluster here: a kubeconfig whose server refuses connections. Two hosts, one call
    (run_once, delegated to the controller), with the RuntimeClass and server-side apply."""
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": "none",
        "clusters": [{"name": "none", "cluster": {"server": "https://127.0.0.1:9"}}],
        "contexts": [{"name": "none", "context": {"cluster": "none", "user": "none"}}],
        "users": [{"name": "none", "user": {"token": "x"}}],
    }))
    key = tmp_path / "k.pub"
    key.write_text("k\n")
    hosts = {name: dict(_toolkit_vars(tmp_path / name, key), test_facts=UBUNTU_2204,
                        nvidia_container_toolkit_runtime_class=True,
                        nvidia_container_toolkit_kubeconfig=str(kubeconfig),
                        nvidia_container_toolkit_cdi_enabled=False,
                        nvidia_container_toolkit_manage_packages=False)
             for name in ("node-a", "node-b")}
    data = run_playbook(ansible_env, "nvidia_container_toolkit_check.yml", hosts, tmp_path, check=True)
    calls = [t for play in data["plays"] for t in play["tasks"]
             if t["task"]["name"].endswith("Apply the RuntimeClass for the nvidia handler")]
    assert len(calls) == 1
    results = [r for r in calls[0]["hosts"].values() if not r.get("skipped")]
    assert len(results) == 1, "run_once: exactly one host makes the API call"
    args = results[0].get("invocation", {}).get("module_args")
    if args is None:
        pytest.fail(f"kubernetes.core.k8s failed before reporting its arguments: {results[0].get('msg')}")
    assert args["definition"]["kind"] == "RuntimeClass"
    assert args["definition"]["apiVersion"] == "node.k8s.io/v1"
    assert args["definition"]["handler"] == "nvidia"
    assert args["definition"]["metadata"]["name"] == "nvidia"
    assert args["apply"] is True
    assert args["server_side_apply"]["field_manager"] == "gpuops.llm"
    assert args["kubeconfig"] == str(kubeconfig)


# --------------------------------------------------------------------------- toolkit, real runs

CONTAINERD_1X = '''version = 2

[plugins]
  [plugins."io.containerd.grpc.v1.cri"]
    sandbox_image = "registry.k8s.io/pause:3.9"
    [plugins."io.containerd.grpc.v1.cri".containerd]
      default_runtime_name = "runc"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes]
        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
          runtime_type = "io.containerd.runc.v2"
          [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
            SystemdCgroup = true
'''

CONTAINERD_2X = '''version = 3
imports = [
  "/etc/containerd/site/*.toml",
]
root = "/var/lib/containerd"

[plugins."io.containerd.cri.v1.images".pinned_images]
  sandbox = "registry.k8s.io/pause:3.10"
'''

FOREIGN_NVIDIA = CONTAINERD_1X + (
    '        [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.nvidia]\n'
    '          runtime_type = "io.containerd.runc.v2"\n')

V2 = {"nvidia_container_toolkit_containerd_config_version": 2}
CUSTOM_RUNTIME = "/usr/local/nvidia/toolkit/nvidia-container-runtime"

# name -> (existing config.toml or None, variables)
RENDER_SCENARIOS = {
    "fresh_v3": (None, {}),
    "existing_v3": (CONTAINERD_2X, {"nvidia_container_toolkit_set_as_default": True,
                                    "nvidia_container_toolkit_systemd_cgroup": False,
                                    "nvidia_container_toolkit_runtime_path": CUSTOM_RUNTIME}),
    "no_imports_v3": ('version = 3\n\n[plugins."io.containerd.cri.v1.runtime".containerd]\n'
                      '  default_runtime_name = "runc"\n', {}),
    "inline_v2": (CONTAINERD_1X, V2),
    "foreign_v2": (FOREIGN_NVIDIA, V2),
    "mismatch": (CONTAINERD_1X, {}),  # version 3 asked, the file is version 2
    "cdi": (None, {"nvidia_container_toolkit_cdi_enabled": True}),
}


class Render:
    """The whole real-run sequence, done once; tests read its snapshots."""

    def __init__(self, env, work: Path):
        self.env, self.work = env, work
        key = work / "k.pub"
        key.write_text("k\n")
        self.hosts = {}
        for name, (existing, overrides) in RENDER_SCENARIOS.items():
            hv = {**_toolkit_vars(work / name, key), "test_facts": UBUNTU_2404,
                  "nvidia_container_toolkit_manage_packages": False,
                  "nvidia_container_toolkit_cdi_enabled": False, **overrides}
            if existing is not None:
                Path(hv["nvidia_container_toolkit_containerd_config_dir"], "config.toml").write_text(existing)
            self.hosts[name] = hv
        self.calls = work / "cdi" / "ctk-calls"
        version_file = Path(self.hosts["cdi"]["nvidia_container_toolkit_driver_version_file"])
        version_file.write_text("595.58.03\n")
        # Stand-in for nvidia-ctk: writes a spec naming the loaded driver's libraries, as the real one does.
        _script(Path(self.hosts["cdi"]["nvidia_container_toolkit_ctk_path"]),
                f'echo "$@" >> {self.calls}\n'
                'out=""; for a in "$@"; do case "$a" in --output=*) out="${a#--output=}";; esac; done\n'
                f'v=$(cat {version_file})\n'
                'printf "cdiVersion: 0.5.0\\nkind: nvidia.com/gpu\\ncontainerEdits:\\n  mounts:\\n'
                '  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.%s\\n" "$v" > "$out"\n')
        self.steps: dict[str, dict] = {}
        self.files: dict[str, dict] = {}

    def step(self, label: str, limit: str | None = None) -> None:
        data = run_playbook(self.env, "nvidia_container_toolkit_render.yml", self.hosts, self.work,
                            check=False, limit=limit)
        self.steps[label] = {name: Host(data, name) for name in self.hosts}
        self.files[label] = {name: self.read(name) for name in self.hosts}

    def cfg_dir(self, name: str) -> Path:
        return Path(self.hosts[name]["nvidia_container_toolkit_containerd_config_dir"])

    def read(self, name: str) -> dict:
        out = {}
        for rel in ("config.toml", "conf.d/99-nvidia.toml"):
            path = self.cfg_dir(name) / rel
            if path.exists():
                out[rel] = path.read_text()
        spec = Path(self.hosts[name]["nvidia_container_toolkit_cdi_spec_path"])
        if spec.exists():
            out["spec"] = spec.read_text()
        return out


@pytest.fixture(scope="module")
def render(ansible_env, tmp_path_factory):
    r = Render(ansible_env, tmp_path_factory.mktemp("render"))
    r.step("first")
    r.step("second")
    # Toggles: nvidia as the default runtime (inline), and a driver upgrade seen by CDI.
    r.hosts["inline_v2"]["nvidia_container_toolkit_set_as_default"] = True
    Path(r.hosts["cdi"]["nvidia_container_toolkit_driver_version_file"]).write_text("595.71.05\n")
    r.step("default_on", limit="inline_v2,cdi")
    r.step("default_on_again", limit="inline_v2,cdi")
    r.hosts["inline_v2"]["nvidia_container_toolkit_set_as_default"] = False
    r.step("default_off", limit="inline_v2")
    return r


def _runtime(doc: dict, plugin: str, name: str = "nvidia") -> dict:
    return doc["plugins"][plugin]["containerd"]["runtimes"][name]


def test_render_drop_in_v3_fresh(render):
    host = render.steps["first"]["fresh_v3"]
    host.ok()
    assert host.stats["changed"] > 0
    cfg_dir = render.cfg_dir("fresh_v3")
    main = tomllib.loads(render.files["first"]["fresh_v3"]["config.toml"])
    assert main["version"] == 3
    assert main["imports"] == [f"{cfg_dir}/conf.d/*.toml"]
    drop = tomllib.loads(render.files["first"]["fresh_v3"]["conf.d/99-nvidia.toml"])
    assert drop["version"] == 3
    rt = _runtime(drop, "io.containerd.cri.v1.runtime")
    assert rt["runtime_type"] == "io.containerd.runc.v2"
    assert rt["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert rt["options"]["SystemdCgroup"] is True
    # Not the default runtime unless asked.
    assert "default_runtime_name" not in drop["plugins"]["io.containerd.cri.v1.runtime"].get("containerd", {})


@pytest.mark.parametrize("name", ["fresh_v3", "existing_v3", "no_imports_v3", "inline_v2", "cdi"])
def test_render_second_run_changes_nothing(render, name):
    second = render.steps["second"][name]
    second.ok()
    assert render.steps["first"][name].stats["changed"] > 0
    assert second.stats["changed"] == 0
    assert render.files["second"][name] == render.files["first"][name]


def test_render_drop_in_v3_existing_config_default_and_cgroup(render):
    render.steps["first"]["existing_v3"].ok()
    files = render.files["first"]["existing_v3"]
    main = tomllib.loads(files["config.toml"])
    # Existing imports and settings are kept; ours is appended.
    assert main["imports"] == ["/etc/containerd/site/*.toml", f"{render.cfg_dir('existing_v3')}/conf.d/*.toml"]
    assert main["root"] == "/var/lib/containerd"
    assert main["plugins"]["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == "registry.k8s.io/pause:3.10"
    cri = tomllib.loads(files["conf.d/99-nvidia.toml"])["plugins"]["io.containerd.cri.v1.runtime"]
    assert cri["containerd"]["default_runtime_name"] == "nvidia"
    assert cri["containerd"]["runtimes"]["nvidia"]["options"]["SystemdCgroup"] is False
    assert cri["containerd"]["runtimes"]["nvidia"]["options"]["BinaryName"] == CUSTOM_RUNTIME


def test_render_drop_in_without_imports_key(render):
    render.steps["first"]["no_imports_v3"].ok()
    main = tomllib.loads(render.files["first"]["no_imports_v3"]["config.toml"])  # imports before the table
    assert main["imports"] == [f"{render.cfg_dir('no_imports_v3')}/conf.d/*.toml"]
    assert main["plugins"]["io.containerd.cri.v1.runtime"]["containerd"]["default_runtime_name"] == "runc"


def test_render_inline_v2_and_default_toggle(render):
    plugin = "io.containerd.grpc.v1.cri"
    render.steps["first"]["inline_v2"].ok()
    doc = tomllib.loads(render.files["first"]["inline_v2"]["config.toml"])
    assert _runtime(doc, plugin)["runtime_type"] == "io.containerd.runc.v2"
    assert _runtime(doc, plugin)["options"]["BinaryName"] == "/usr/bin/nvidia-container-runtime"
    assert _runtime(doc, plugin)["options"]["SystemdCgroup"] is True
    assert _runtime(doc, plugin, "runc")["options"]["SystemdCgroup"] is True  # untouched
    assert doc["plugins"][plugin]["containerd"]["default_runtime_name"] == "runc"
    assert doc["plugins"][plugin]["sandbox_image"] == "registry.k8s.io/pause:3.9"
    assert "conf.d/99-nvidia.toml" not in render.files["first"]["inline_v2"]

    render.steps["default_on"]["inline_v2"].ok()
    on = tomllib.loads(render.files["default_on"]["inline_v2"]["config.toml"])
    assert on["plugins"][plugin]["containerd"]["default_runtime_name"] == "nvidia"
    assert render.steps["default_on_again"]["inline_v2"].stats["changed"] == 0

    render.steps["default_off"]["inline_v2"].ok()
    off = tomllib.loads(render.files["default_off"]["inline_v2"]["config.toml"])
    assert off["plugins"][plugin]["containerd"]["default_runtime_name"] == "runc"


def test_render_inline_refuses_foreign_runtime_table(render):
    name, result = render.steps["first"]["foreign_v2"].failed_task()
    assert "already defines the containerd runtime 'nvidia'" in result["msg"]
    assert render.files["first"]["foreign_v2"]["config.toml"] == FOREIGN_NVIDIA


def test_render_version_mismatch_stops(render):
    _unused, result = render.steps["first"]["mismatch"].failed_task()
    assert "declares version = 2" in result["msg"]
    assert "nvidia_container_toolkit_containerd_config_version" in result["msg"]
    assert render.files["first"]["mismatch"] == {"config.toml": CONTAINERD_1X}


def test_render_cdi_spec_generated_once_and_after_driver_change(render):
    spec = render.hosts["cdi"]["nvidia_container_toolkit_cdi_spec_path"]
    render.steps["first"]["cdi"].ok()
    assert "libcuda.so.595.58.03" in render.files["first"]["cdi"]["spec"]
    drop = tomllib.loads(render.files["first"]["cdi"]["conf.d/99-nvidia.toml"])
    assert drop["plugins"]["io.containerd.cri.v1.runtime"]["enable_cdi"] is True
    assert drop["plugins"]["io.containerd.cri.v1.runtime"]["cdi_spec_dirs"] == ["/etc/cdi", "/var/run/cdi"]
    # Second run: `creates` holds, nvidia-ctk is not called again (checked below by the call log).
    assert render.steps["second"]["cdi"].stats["changed"] == 0
    # The driver was upgraded between "second" and "default_on": the spec is regenerated once...
    render.steps["default_on"]["cdi"].ok()
    assert render.steps["default_on"]["cdi"].stats["changed"] > 0
    assert "libcuda.so.595.71.05" in render.files["default_on"]["cdi"]["spec"]
    # ...and then left alone.
    assert render.steps["default_on_again"]["cdi"].stats["changed"] == 0
    assert render.calls.read_text().splitlines() == [f"cdi generate --output={spec}"] * 2
