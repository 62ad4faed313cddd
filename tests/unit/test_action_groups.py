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
