# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Shared plumbing for the benchmarks: a private testbed instance, the audit log, ansible-playbook, RSS.

Every benchmark that needs a cluster gets its OWN testbed instance (its own GPUOPS_TESTBED_HOME and
cluster name), never the shared one at ~/.cache/gpuops-llm/testbed that integration tests use.
"""
from __future__ import annotations

import collections
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import threading
import time

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "testbed"))
import collection_path  # noqa: E402
import playlog  # noqa: E402

COLLECTIONS = collection_path.ensure()
if str(COLLECTIONS) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS))

BENCH_HOME = pathlib.Path(os.environ.get("GPUOPS_BENCH_HOME", "/tmp/gpuops-bench"))
SHARED_HOME = pathlib.Path.home() / ".cache" / "gpuops-llm" / "testbed"

# Components whose own writes (heartbeats, leases, bindings, status) are the cluster's, not ours.
SYSTEM_AGENTS = ("kwok", "kube-controller-manager", "kube-scheduler", "kube-apiserver")
WRITE_VERBS = ("create", "update", "patch", "delete", "deletecollection")
CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok-controller")


def log(msg: str) -> None:
    sys.stderr.write("[bench %s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


class Instance:
    """A private testbed: testbed.Testbed pointed at its own home, with a spec of our own."""

    def __init__(self, name: str, nodes: list, subdir: str | None = None):
        home = BENCH_HOME / (subdir or name)
        if home.resolve() == SHARED_HOME.resolve():
            raise SystemExit("refusing to run benchmarks on the shared testbed at %s" % SHARED_HOME)
        home.mkdir(parents=True, exist_ok=True)
        self.spec_path = home / "spec.yml"
        with open(self.spec_path, "w", encoding="utf-8") as f:
            yaml.safe_dump({"cluster_name": name, "nodes": nodes}, f, sort_keys=False)
        import testbed as tb_mod
        self.tb = tb_mod.Testbed(self.spec_path, home_dir=home)
        self.home = home
        self.kubeconfig = str(self.tb.kubeconfig)

    def up(self, agent: bool = True) -> dict:
        # A fresh instance: simulated GPUs left by an earlier run would make the first converge a rerun.
        shutil.rmtree(self.tb.nvml_dir, ignore_errors=True)
        t0 = time.monotonic()
        timings = self.tb.up()
        wall = time.monotonic() - t0
        if not agent:
            self.tb.stop_agent()
        return {"wall_s": round(wall, 1), **timings}

    def own_pids(self) -> dict:
        """pid -> component for processes whose command line names this instance's workdir or home."""
        out = {}
        needles = (str(self.tb.workdir) + "/", str(self.home) + "/")
        for d in pathlib.Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                cmd = (d / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if not cmd or not cmd[0]:
                continue
            text = b" ".join(cmd).decode(errors="replace")
            if any(n in text for n in needles):
                out[int(d.name)] = os.path.basename(cmd[0].decode(errors="replace"))
        return out

    def down(self) -> list:
        """Stop this instance only: the agent by its pid file, kwokctl delete, then any leftover of ours by pid.

        testbed.py down would also run `pkill -f 'bin-k8s.*/<component> '`, a pattern that is not scoped
        to one instance; here every process is ended by its own pid."""
        self.tb.stop_agent()
        if self.tb.cluster_dir.exists():
            self.tb.kwokctl("delete", "cluster", check=False, capture=True)
        left = self.own_pids()
        for pid in left:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass
        shutil.rmtree(self.tb.nvml_dir, ignore_errors=True)
        if self.tb.kubeconfig.exists():
            self.tb.kubeconfig.unlink()
        return sorted(left.values())

    # -- kubernetes ------------------------------------------------------------------------------
    def api(self):
        return self.tb.api_client()

    def env(self) -> dict:
        env = self.tb.env()
        env["K8S_AUTH_KUBECONFIG"] = self.kubeconfig
        env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
        env["ANSIBLE_ROLES_PATH"] = str(ROOT / "roles")
        env["ANSIBLE_NOCOLOR"] = "1"
        env["ANSIBLE_FORCE_COLOR"] = "0"
        env["ANSIBLE_HOST_KEY_CHECKING"] = "0"
        env["ANSIBLE_RETRY_FILES_ENABLED"] = "0"
        env["ANSIBLE_LOCAL_TEMP"] = str(self.home / "ansible-tmp")
        env["ANSIBLE_REMOTE_TEMP"] = str(self.home / "ansible-tmp")
        return env

    # -- audit log -------------------------------------------------------------------------------
    def audit_marker(self) -> int:
        time.sleep(0.5)  # let in-flight requests be logged
        p = self.tb.audit_log
        return p.stat().st_size if p.exists() else 0

    def audit_writes(self, since: int, include_system: bool = False) -> list:
        time.sleep(0.5)
        out = []
        with open(self.tb.audit_log, "rb") as f:
            f.seek(since)
            for line in f:
                try:
                    ev = json.loads(line)
                except ValueError:
                    continue
                if ev.get("verb") not in WRITE_VERBS:
                    continue
                agent = ev.get("userAgent", "")
                if not include_system and agent.startswith(SYSTEM_AGENTS):
                    continue
                if "dryRun=" in ev.get("requestURI", ""):
                    continue  # server-side dry run (check mode): logged, never persisted
                ref = ev.get("objectRef", {})
                out.append({"verb": ev["verb"], "resource": ref.get("resource"), "subresource": ref.get("subresource"),
                            "namespace": ref.get("namespace"), "name": ref.get("name"),
                            "user_agent": agent.split(" ")[0],
                            "code": ev.get("responseStatus", {}).get("code")})
        return out


def by_verb(writes: list) -> dict:
    return dict(sorted(collections.Counter(w["verb"] for w in writes).items()))


def by_resource(writes: list) -> dict:
    c = collections.Counter("%s %s%s" % (w["verb"], w["resource"], "/" + w["subresource"] if w["subresource"] else "")
                            for w in writes)
    return dict(sorted(c.items()))


def run_playbook(inst: Instance, playbook, inventory, *args: str, check: bool = False, timeout: int = 3600,
                 extra_env: dict | None = None) -> dict:
    """ansible-playbook; returns wall time, rc, the recap per host and the task count (ok+failed+skipped)."""
    env = inst.env()
    env.update(extra_env or {})
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(inventory), str(playbook), *args]
    if check:
        cmd.append("--check")
    t0 = time.monotonic()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=str(ROOT))
    wall = time.monotonic() - t0
    recap = playlog.recap(proc.stdout)
    # Ansible counts a changed result under ok as well.
    tasks = sum(h["ok"] + h["failed"] + h["skipped"] + h["unreachable"] for h in recap.values())
    return {"rc": proc.returncode, "wall_s": round(wall, 2), "recap": recap, "tasks": tasks,
            "changed": sum(h["changed"] for h in recap.values()),
            "failed": sum(h["failed"] + h["unreachable"] for h in recap.values()),
            # Which task changed which host (check-mode stand-ins counted as their task), and failures.
            "changed_tasks": playlog.changed_tasks(proc.stdout),
            "failed_tasks": playlog.failed_tasks(proc.stdout),
            "output_tail": (proc.stdout + proc.stderr)[-3000:] if proc.returncode else ""}


class RssSampler:
    """Samples the summed RSS of an instance's control-plane processes in a thread; keeps the peak."""

    def __init__(self, inst: Instance, interval: float = 1.0):
        self.inst = inst
        self.interval = interval
        self.peak_total = 0
        self.peak_by = {}
        self.at_peak = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _rss_kib(pid: int) -> int:
        try:
            for line in pathlib.Path("/proc/%d/status" % pid).read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        except OSError:
            pass
        return 0

    def sample(self) -> None:
        by = collections.Counter()
        for pid, comp in self.inst.own_pids().items():
            if comp in CONTROL_PLANE:
                by[comp] += self._rss_kib(pid)
        total = sum(by.values())
        for k, v in by.items():
            self.peak_by[k] = max(self.peak_by.get(k, 0), v)
        if total > self.peak_total:
            self.peak_total = total
            self.at_peak = dict(by)

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()

    def result(self) -> dict:
        def mib(k):
            return round(k / 1024.0, 1)

        return {"peak_total_mib": mib(self.peak_total), "at_peak_mib": {k: mib(v) for k, v in sorted(self.at_peak.items())},
                "peak_by_component_mib": {k: mib(v) for k, v in sorted(self.peak_by.items())}}


def machine() -> dict:
    cpu = ""
    try:
        for line in open("/proc/cpuinfo", encoding="utf-8"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_kib = 0
    try:
        for line in open("/proc/meminfo", encoding="utf-8"):
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    except OSError:
        pass
    return {"nproc": os.cpu_count(), "memory_gib": round(mem_kib / 1024 / 1024, 1), "cpu": cpu,
            "python": sys.version.split()[0], "loadavg_at_start": os.getloadavg()[0]}
