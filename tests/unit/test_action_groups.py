"""meta/runtime.yml's action group k8s lists exactly the modules that take the Kubernetes connection
options (module_utils.k8s.AUTH_ARG_SPEC), so `module_defaults: group/gpuops.llm.k8s` reaches them all."""
from __future__ import annotations

import pathlib
import re

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_every_module_with_the_kubernetes_options_is_in_the_k8s_group():
    takes_auth = sorted(p.stem for p in (ROOT / "plugins" / "modules").glob("*.py")
                        if re.search(r"\bAUTH_ARG_SPEC\b", p.read_text()))
    group = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["action_groups"]["k8s"]
    assert len(takes_auth) >= 9
    assert sorted(group) == takes_auth


def test_requires_ansible_claims_no_more_than_the_tested_ansible_core():
    """requires_ansible's floor is the ansible-core the suite installs and runs (requirements/controller.txt)."""
    floor = yaml.safe_load((ROOT / "meta" / "runtime.yml").read_text())["requires_ansible"]
    pin = re.search(r"^ansible-core>=([0-9.]+)", (ROOT / "requirements" / "controller.txt").read_text(), re.M)
    assert pin and floor.startswith(">=")
    assert tuple(int(x) for x in floor[2:].split(".")[:2]) == tuple(int(x) for x in pin.group(1).split(".")[:2])
