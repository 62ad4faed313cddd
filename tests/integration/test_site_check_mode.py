# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""--check on a fresh testbed predicts the changes of the real site.yml run and writes nothing (issue #6).

A private testbed (own home, own cluster name, same nodes as testbed/cluster.yml) is brought up for
this module, so "fresh" means fresh whatever ran before on the shared one. The comparison is task
by task and host by host. A task that check mode cannot run (objects in a namespace that does not
exist yet) has a stand-in named like the real task plus a "(check mode, ...)" suffix;
testbed/playlog.py pairs the two by that name. Week 1's verify play is skipped in check mode: it waits for GPUs that a dry
run never advertises and never reports a change.
"""
from __future__ import annotations

import pytest
import yaml

import playlog
from conftest import ROOT, TestbedHandle, run_playbook, tb_mod

pytestmark = pytest.mark.integration

SITE = ROOT / "playbooks" / "site.yml"


@pytest.fixture(scope="module")
def fresh(tmp_path_factory):
    home = tmp_path_factory.mktemp("fresh-testbed")
    spec = yaml.safe_load((ROOT / "testbed" / "cluster.yml").read_text())
    spec["cluster_name"] = "gpuops-check"
    spec_path = home / "cluster.yml"
    spec_path.write_text(yaml.safe_dump(spec))
    tb = tb_mod.Testbed(spec_path, home_dir=home)
    tb.up()
    try:
        yield TestbedHandle(tb)
    finally:
        tb.down()


def nvml_writes(handle):
    from ansible_collections.gpuops.llm.plugins.module_utils import nvml_sim
    return {p.stem: len(nvml_sim.mutating_calls(str(p))) for p in sorted(handle.nvml_dir.glob("*.json"))}


def test_check_on_a_fresh_testbed_predicts_the_converge(fresh):
    nvml_before = nvml_writes(fresh)
    marker = fresh.audit_marker()
    rc, out, check_recap = run_playbook(fresh, SITE, "--skip-tags", "verify", check=True, timeout=900)
    assert rc == 0, out[-5000:]
    # Check mode writes nothing: no API write (server-side dry runs excluded), no NVML write.
    assert fresh.audit_writes(marker) == []
    assert nvml_writes(fresh) == nvml_before
    predicted = playlog.changed_tasks(out)

    marker = fresh.audit_marker()
    rc, out, real_recap = run_playbook(fresh, SITE, timeout=1200)
    assert rc == 0, out[-5000:]
    actual = playlog.changed_tasks(out)
    writes = fresh.audit_writes(marker)
    # The real run did change the cluster and the GPUs, so agreement below is not two empty sets.
    assert len(writes) > 20 and nvml_writes(fresh) != nvml_before
    assert sum(len(h) for h in actual.values()) >= 10

    mismatches = {t: {"predicted": predicted.get(t, []), "actual": actual.get(t, [])}
                  for t in sorted(set(predicted) | set(actual)) if predicted.get(t, []) != actual.get(t, [])}
    assert mismatches == {}
    # Per host, the recap's changed counts agree as well (verify never changes anything).
    assert {h: r["changed"] for h, r in check_recap.items()} == {h: r["changed"] for h, r in real_recap.items()}
