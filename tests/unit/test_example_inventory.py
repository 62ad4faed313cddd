# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""inventories/example: parses, the week 1 playbook accepts it, and it names only real variables."""
from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
INVENTORY = ROOT / "inventories" / "example"
BIN = pathlib.Path(sys.executable).parent


def _run(*cmd):
    env = dict(os.environ, ANSIBLE_NOCOLOR="1")
    return subprocess.run([str(BIN / cmd[0]), *cmd[1:]], capture_output=True, text=True, env=env, cwd=str(ROOT),
                          timeout=120, check=False)


def test_inventory_lists_the_cluster_shape():
    proc = _run("ansible-inventory", "-i", str(INVENTORY), "--list")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    gpu = set()
    for child in data["gpu_hosts"]["children"]:
        gpu |= set(data[child]["hosts"])
    assert len(data["k8s_api"]["hosts"]) == 1, "one controller runs the cluster roles"
    assert gpu and not gpu & set(data["cpu_workers"]["hosts"])
    hostvars = data["_meta"]["hostvars"]
    assert all(hostvars[h].get("ansible_host") for h in gpu), "every GPU host has an address placeholder"
    # Pools of node_pools' defaults come from these groups.
    for group in ("llm_inference", "llm_training", "cpu_workers", "mig_gpu"):
        assert group in data


def test_week1_playbook_syntax_check():
    proc = _run("ansible-playbook", "-i", str(INVENTORY), "playbooks/week1_foundation.yml", "--syntax-check")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _role_variables():
    names = set()
    for f in ROOT.glob("roles/*/defaults/main.yml"):
        names |= set((yaml.safe_load(f.read_text()) or {}).keys())
    for f in ROOT.glob("roles/*/meta/argument_specs.yml"):
        for spec in (yaml.safe_load(f.read_text()) or {}).get("argument_specs", {}).values():
            names |= set((spec.get("options") or {}).keys())
    return names


def test_group_vars_name_only_variables_that_roles_or_playbooks_read():
    known = _role_variables()
    playbooks = "\n".join(p.read_text() for p in ROOT.glob("playbooks/*.yml"))
    unknown = []
    for f in sorted(INVENTORY.glob("group_vars/**/*.yml")):
        if f.name == "portfolio.yml":
            continue  # capacity_plan's portfolio, checked with that playbook
        for key in (yaml.safe_load(f.read_text()) or {}):
            if key.startswith(("ansible_", "vault_")) or key in known:
                continue
            # Playbook switches (cluster_autoscaler_enabled) are read by the week playbooks.
            if re.search(r"\b%s\b" % re.escape(key), playbooks):
                continue
            # Site-wide helpers (gpuops_*) must be read somewhere: a playbook or another group_vars value.
            if key.startswith("gpuops_") and (key in playbooks or any(
                    key in g.read_text() for g in INVENTORY.glob("group_vars/**/*.yml") if g != f)):
                continue
            unknown.append("%s: %s" % (f.relative_to(ROOT), key))
    assert unknown == [], "variables no role declares (typo or renamed?): %s" % unknown


def test_no_secrets_in_the_example():
    secret = re.compile(r"(password|token|secret_key|api_key|private_key)\s*:\s*['\"]?(?!\{\{|~|/)[A-Za-z0-9+/=_-]{8,}",
                        re.I)
    for f in INVENTORY.rglob("*.yml"):
        assert not secret.search(f.read_text()), "%s holds what looks like a secret: use a vault_* reference" % f
