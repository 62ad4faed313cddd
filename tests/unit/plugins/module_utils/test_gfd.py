# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Device plugin resources and GFD labels from simulated hosts, against NVIDIA's own rules.

Sources: NVIDIA/k8s-device-plugin v0.20.0 (the v0.20.1 tag was not in the mirror: unconfirmed that
it is identical): internal/rm/device_map.go + rm.go (what the plugin advertises), internal/lm/*.go
(GFD's labels), tests/expected-output*.txt (GFD's golden key sets, restated in gfd_golden_keys.yml).
docs/conformance.md#node-agent maps each rule to the test here.
"""
from __future__ import annotations

import pathlib
import re

import pytest
import yaml

from ansible_collections.gpuops.llm.plugins.module_utils import gfd, nvml, nvml_sim

ID = {"1g.10gb": 19, "1g.10gb+me": 20, "2g.20gb": 14, "3g.40gb": 9, "7g.80gb": 0}  # H100 ids, facts §1
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
GOLDEN = yaml.safe_load((pathlib.Path(__file__).parent / "gfd_golden_keys.yml").read_text())
KINDS = {"int": r"[0-9]+", "opt-int": r"[0-9]*", "word": r"[a-z][a-z-]*", "bool": r"true|false", "any": r".*",
         "version": r"[0-9]+(\.[0-9]+){1,2}"}
H100 = "H100-80GB-HBM3"


def host(tmp_path, gpus, layouts, mig_enabled=True, ci="whole", mig_off=(), **state_kw):
    """layouts: per GPU a list of (profile, start, size). ci: 'whole' (one CI spanning the GI),
    'none' (GI only) or an int (that many 1-slice CIs)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = str(tmp_path / "h.json")
    state = nvml_sim.new_host_state(gpus, mig_enabled=mig_enabled, **state_kw)
    for i in mig_off:
        state["gpus"][i]["mig_current"] = state["gpus"][i]["mig_pending"] = 0
    nvml_sim.save_state(path, state)
    b = nvml_sim.SimBackend(path)
    for i, layout in enumerate(layouts):
        for prof, start, size in layout or []:
            gi = b.create_gpu_instance(i, ID[prof], start, size)
            profs = b.compute_instance_profiles(i, gi["id"])
            if ci == "whole":
                b.create_compute_instance(i, gi["id"], [p for p in profs if p["name"] == prof][0]["id"])
            elif isinstance(ci, int):
                for _n in range(ci):
                    b.create_compute_instance(i, gi["id"], [p for p in profs if p["slices"] == 1][0]["id"])
    return nvml.host_facts(nvml_sim.SimBackend(path))


def both(facts, strategy, config=None):
    res, labels, problems = gfd.node_resources_and_labels(facts, strategy, config, timestamp=1767225600)
    return res, labels, problems


# -- golden key sets ------------------------------------------------------------------------------
def _golden_host(tmp_path, case):
    if case == "no-mig":
        return host(tmp_path, ["L4", "L4"], [[], []], mig_enabled=False)
    if case == "mig-none":
        return host(tmp_path, [H100], [[("3g.40gb", 0, 4)]])
    if case == "mig-single":
        layout = [("1g.10gb", s, 1) for s in range(7)]
        return host(tmp_path, [H100] * 2, [layout, layout])
    return host(tmp_path, [H100], [[("1g.10gb", 0, 1), ("2g.20gb", 2, 2), ("3g.40gb", 4, 4)]])


@pytest.mark.parametrize("case", sorted(GOLDEN["cases"]))
def test_golden_key_sets(tmp_path, case):
    """GFD's golden outputs (tests/expected-output*.txt @ v0.20.0): every key, value of the right kind,
    nothing under nvidia.com/ that GFD never publishes."""
    spec = GOLDEN["cases"][case]
    _res, labels, problems = both(_golden_host(tmp_path, case), spec["strategy"])
    assert problems == {}
    profiles = sorted({k.split(".")[1][len("com/mig-"):] + "." + k.split(".")[2]
                       for k in labels if k.startswith("nvidia.com/mig-")}) or ["<none>"]
    if case == "mig-mixed":
        assert profiles == ["1g.10gb", "2g.20gb", "3g.40gb"]
    allowed = set(GOLDEN["extra_known"])
    for key, kind in spec["keys"].items():
        for p in (profiles if "<p>" in key else [None]):
            k = key.replace("mig-<p>", "mig-" + p) if p else key
            allowed.add(k)
            assert k in labels, (case, k)
            pattern = "|".join(re.escape(v) for v in kind) if isinstance(kind, list) else KINDS[kind]
            assert re.fullmatch(pattern, labels[k]), (case, k, labels[k])
    for k in spec["absent"]:
        assert k not in labels, (case, k)
    assert set(labels) <= allowed, sorted(set(labels) - allowed)


def test_gpu_present_is_not_a_gfd_label(tmp_path):
    """nvidia.com/gpu.present comes from the GPU Operator's NFD rule, never from GFD (internal/lm/)."""
    for strategy in gfd.STRATEGIES:
        _res, labels, _p = both(host(tmp_path / strategy, ["L4"], [[]], mig_enabled=False), strategy)
        assert "nvidia.com/gpu.present" not in labels


def test_no_gpu_clique_without_an_nvlink_fabric(tmp_path):
    """internal/lm/imex.go: nvidia.com/gpu.clique only from NVLink fabric cluster and clique IDs, which
    the simulator never has: no strategy and no layout may publish it."""
    for case in sorted(GOLDEN["cases"]):
        _res, labels, _p = both(_golden_host(tmp_path / case, case), GOLDEN["cases"][case]["strategy"])
        assert "nvidia.com/gpu.clique" not in labels, case


# -- strategy none --------------------------------------------------------------------------------
def test_none_strategy_counts_whole_gpus_and_mig_enabled_ones_unshared(tmp_path):
    """rm/device_map.go buildGPUDeviceMap: with none, a MIG-enabled GPU is one nvidia.com/gpu.
    lm/mig-strategy.go newGPULabelers: MIG-enabled GPUs are labelled without sharing (replicas 0);
    none publishes no nvidia.com/mig.strategy (NewResourceLabeler returns before the MIG labeler)."""
    facts = host(tmp_path, [H100] * 2, [[("7g.80gb", 0, 8)], []])
    res, labels, _p = both(facts, "none")
    assert res == {"nvidia.com/gpu": "2"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/gpu.count"] == "2" and labels["nvidia.com/gpu.memory"] == "81559"
    assert labels["nvidia.com/gpu.replicas"] == "0" and labels["nvidia.com/gpu.sharing-strategy"] == "none"
    assert labels["nvidia.com/mig.capable"] == "true" and "nvidia.com/mig.strategy" not in labels
    assert not any(k.startswith("nvidia.com/mig-") for k in labels)


def test_whole_gpus_with_config_have_one_replica(tmp_path):
    """resource.go getReplicas: a config without this resource's sharing gives replicas 1."""
    _res, labels, _p = both(host(tmp_path, ["L4"], [[]], mig_enabled=False), "none")
    assert labels["nvidia.com/gpu.replicas"] == "1"


# -- strategy mixed -------------------------------------------------------------------------------
def test_mixed_strategy(tmp_path):
    """rm.go AddDefaultResourcesToConfig: mig-<profile> with '+' -> '.'; GFD per-profile labels with the
    MIG device's attributes (internal/resource/nvml-mig-device.go GetAttributes)."""
    facts = host(tmp_path, [H100, H100],
                 [[("1g.10gb", 0, 1), ("1g.10gb", 1, 1), ("2g.20gb", 2, 2), ("3g.40gb", 4, 4)],
                  [("1g.10gb+me", 6, 1), ("3g.40gb", 0, 4)]])
    res, labels, problems = both(facts, "mixed")
    assert problems == {}
    assert res == {"nvidia.com/mig-1g.10gb": "2", "nvidia.com/mig-2g.20gb": "1", "nvidia.com/mig-3g.40gb": "2",
                   "nvidia.com/mig-1g.10gb.me": "1"}
    p = "nvidia.com/mig-3g.40gb."
    assert labels[p + "count"] == "2"
    assert labels[p + "memory"] == "40448"          # facts §1: 3g.40gb = 40448 MiB
    assert labels[p + "multiprocessors"] == "60"    # facts §1: 60 SMs
    assert labels[p + "slices.gi"] == "3" and labels[p + "slices.ci"] == "3"
    assert labels[p + "engines.copy"] == "3" and labels[p + "engines.decoder"] == "3"
    assert labels[p + "engines.encoder"] == "0" and labels[p + "engines.ofa"] == "0"
    assert labels[p + "product"] == "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb"
    assert labels[p + "replicas"] == "1" and labels[p + "sharing-strategy"] == "none"
    assert labels["nvidia.com/mig-1g.10gb.me.engines.ofa"] == "1"   # the +me profile holds the OFA
    assert labels["nvidia.com/mig.strategy"] == "mixed"
    # The parents: counted, labelled without sharing, not advertised as nvidia.com/gpu.
    assert labels["nvidia.com/gpu.count"] == "2" and labels["nvidia.com/gpu.replicas"] == "0"
    assert "nvidia.com/gpu" not in res


def test_mixed_strategy_mig_off_gpus_stay_whole(tmp_path):
    """device_map.go: MIG-disabled GPUs stay nvidia.com/gpu next to mig-* resources under mixed."""
    facts = host(tmp_path, [H100, H100, "L4"], [[("7g.80gb", 0, 8)]], mig_enabled=True, mig_off=(1,))
    res, labels, _p = both(facts, "mixed")
    assert res == {"nvidia.com/gpu": "2", "nvidia.com/mig-7g.80gb": "1"}
    assert labels["nvidia.com/mig-7g.80gb.count"] == "1"


def test_gi_without_compute_instance_is_not_a_device(tmp_path):
    """NVML MIG device handles exist per compute instance: a GI without one is no device. mixed only
    warns about the empty GPU (device_map.go assertAllMigDevicesAreValid, uniform=false)."""
    facts = host(tmp_path, [H100], [[("3g.40gb", 0, 4)]], ci="none")
    res, labels, problems = both(facts, "mixed")
    assert res == {} and problems == {}
    assert not any(k.startswith("nvidia.com/mig-") for k in labels)


def test_mixed_ci_not_filling_gi_makes_the_plugin_exit(tmp_path):
    """rm.go adds mig resources only for profiles with C == G, so a 1c.3g.40gb device matches no pattern
    (device_map.go buildMigDeviceMap) and the plugin fails to start; GFD does not filter and labels it
    (go-nvlib MigProfileInfo.String: '<c>c.<g>g.<gb>gb')."""
    facts = host(tmp_path, [H100], [[("3g.40gb", 0, 4), ("1g.10gb", 6, 1)]], ci=1)
    res, labels, problems = both(facts, "mixed")
    assert res == {}
    assert "MIG profile '1c.3g.40gb' does not match any resource patterns" in problems["device-plugin"]
    assert labels["nvidia.com/mig-1c.3g.40gb.count"] == "1"
    assert labels["nvidia.com/mig-1c.3g.40gb.slices.gi"] == "3"
    assert labels["nvidia.com/mig-1c.3g.40gb.slices.ci"] == "1"
    assert labels["nvidia.com/mig-1c.3g.40gb.multiprocessors"] == "20"   # one third of the GI's 60 SMs
    assert labels["nvidia.com/mig-1c.3g.40gb.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1c.3g.40gb"


def test_every_compute_instance_is_a_device(tmp_path):
    """Each CI is one MIG device: a 3g GI with three 1-slice CIs holds three 1c.3g.40gb devices."""
    facts = host(tmp_path, [H100], [[("3g.40gb", 0, 4)]], ci=3)
    assert [d["name"] for d in gfd.mig_devices(facts["gpus"][0])] == ["1c.3g.40gb"] * 3


# -- strategy single ------------------------------------------------------------------------------
def test_single_strategy_valid(tmp_path):
    """rm.go: single maps every MIG device to nvidia.com/gpu; GFD's single labeler overrides product,
    count, memory and adds the MIG attributes on nvidia.com/gpu.*; family/compute stay the parent's."""
    layout = [("1g.10gb", s, 1) for s in range(7)]
    res, labels, problems = both(host(tmp_path, [H100] * 2, [layout, layout]), "single")
    assert problems == {} and res == {"nvidia.com/gpu": "14"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1g.10gb"
    assert labels["nvidia.com/gpu.count"] == "14" and labels["nvidia.com/gpu.replicas"] == "1"
    assert labels["nvidia.com/gpu.memory"] == "9984"
    assert labels["nvidia.com/gpu.multiprocessors"] == "16"
    assert labels["nvidia.com/gpu.slices.gi"] == "1" and labels["nvidia.com/gpu.slices.ci"] == "1"
    assert labels["nvidia.com/gpu.family"] == "hopper" and labels["nvidia.com/gpu.compute.major"] == "9"
    assert labels["nvidia.com/mig.strategy"] == "single"


def test_single_strategy_uniform_partial_compute_instances_are_served(tmp_path):
    """single adds MIG resource '*' (rm.go), so identical 1c.3g.40gb devices pass the uniform check."""
    facts = host(tmp_path, [H100], [[("3g.40gb", 0, 4), ("3g.40gb", 4, 4)]], ci=3)
    res, labels, problems = both(facts, "single")
    assert problems == {} and res == {"nvidia.com/gpu": "6"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3-MIG-1c.3g.40gb"


INVALID = {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3-MIG-INVALID", "nvidia.com/gpu.count": "0",
           "nvidia.com/gpu.replicas": "0", "nvidia.com/gpu.sharing-strategy": "", "nvidia.com/gpu.memory": "0"}


@pytest.mark.parametrize("layouts,mig_off,ci,plugin_error", [
    ([[("1g.10gb", 0, 1)], [("3g.40gb", 0, 4)]], (), "whole", "more than one MIG device type present on node"),
    ([[("1g.10gb", 0, 1)], []], (), "whole", "device 1 has no MIG devices configured"),
    ([[("1g.10gb", 0, 1)], []], (1,), "whole", "all devices on the node must be configured with the same migEnabled"),
    ([[("3g.40gb", 0, 4)], [("3g.40gb", 0, 4)]], (), "none", "device 0 has no MIG devices configured"),
], ids=["two-profiles", "empty-gpu", "mig-and-whole", "gi-without-ci"])
def test_single_strategy_invalid(tmp_path, layouts, mig_off, ci, plugin_error):
    """Plugin: NewDeviceMap fails ('invalid MIG configuration' / same migEnabled), so it exits and the node
    gets no nvidia.com/gpu. GFD: newInvalidMigStrategyLabeler sets exactly product -MIG-INVALID, count 0,
    replicas 0, sharing-strategy '' and memory 0 (family/compute from the parents stay)."""
    facts = host(tmp_path, [H100] * 2, layouts, mig_off=mig_off, ci=ci)
    res, labels, problems = both(facts, "single")
    assert res == {}
    assert plugin_error in problems["device-plugin"]
    assert {k: labels[k] for k in INVALID} == INVALID
    assert labels["nvidia.com/mig.strategy"] == "single" and labels["nvidia.com/gpu.family"] == "hopper"
    assert "nvidia.com/gpu.multiprocessors" not in labels


def test_single_strategy_all_mig_off_serves_whole_gpus(tmp_path):
    """device_map.go: single with no MIG-enabled GPU has an empty MIG map, so whole GPUs are served;
    GFD's single labeler returns empty{} when no GPU has MIG enabled, but mig.strategy is still set."""
    res, labels, problems = both(host(tmp_path, [H100] * 2, [[], []], mig_enabled=False), "single")
    assert problems == {} and res == {"nvidia.com/gpu": "2"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert labels["nvidia.com/mig.strategy"] == "single"


def test_mig_strategy_label_on_non_mig_node(tmp_path):
    """newMigLabeler merges migStrategyLabeler for single and mixed whatever the GPUs are."""
    _res, labels, _p = both(host(tmp_path, ["L4"], [[]], mig_enabled=False), "mixed")
    assert labels["nvidia.com/mig.capable"] == "false" and labels["nvidia.com/mig.strategy"] == "mixed"


def test_pending_mig_mode_does_not_count(tmp_path):
    """go-nvlib IsMigEnabled reads the current mode: a pending enable leaves the GPU whole."""
    path = str(tmp_path / "h.json")
    state = nvml_sim.new_host_state([H100])
    state["gpus"][0]["mig_pending"] = 1
    nvml_sim.save_state(path, state)
    res, _labels, _p = both(nvml.host_facts(nvml_sim.SimBackend(path)), "mixed")
    assert res == {"nvidia.com/gpu": "1"}


# -- sharing --------------------------------------------------------------------------------------
def ts(replicas=4, name="nvidia.com/gpu", **kw):
    return {"version": "v1", "sharing": {"timeSlicing": dict(kw, resources=[{"name": name, "replicas": replicas}])}}


def test_time_slicing_replicas_and_shared_suffix(tmp_path):
    """device_map.go updateDeviceMapWithReplicas: replicas x devices; resource.go: replicas label,
    sharing-strategy time-slicing, product -SHARED (not when renamed)."""
    facts = host(tmp_path, ["L4", "L4"], [[], []], mig_enabled=False)
    res, labels, _p = both(facts, "none", ts(4, name="gpu"))
    assert res == {"nvidia.com/gpu": "8"}
    assert labels["nvidia.com/gpu.replicas"] == "4"
    assert labels["nvidia.com/gpu.sharing-strategy"] == "time-slicing"
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4-SHARED"
    assert labels["nvidia.com/gpu.count"] == "2"   # GFD counts devices, not replicas


def test_time_slicing_rename_by_default(tmp_path):
    """replicas.go: renameByDefault renames to <name>.shared; a renamed resource keeps its product name."""
    facts = host(tmp_path, ["L4"], [[]], mig_enabled=False)
    res, labels, _p = both(facts, "none", ts(2, renameByDefault=True))
    assert res == {"nvidia.com/gpu.shared": "2"}
    assert labels["nvidia.com/gpu.product"] == "NVIDIA-L4" and labels["nvidia.com/gpu.replicas"] == "2"


def test_time_slicing_a_mig_resource(tmp_path):
    """Replicas apply per resource name, MIG ones included (mixed), and label that resource only."""
    facts = host(tmp_path, [H100], [[("3g.40gb", 0, 4), ("3g.40gb", 4, 4)]])
    res, labels, _p = both(facts, "mixed", ts(3, name="mig-3g.40gb"))
    assert res == {"nvidia.com/mig-3g.40gb": "6"}
    assert labels["nvidia.com/mig-3g.40gb.replicas"] == "3"
    assert labels["nvidia.com/mig-3g.40gb.product"] == "NVIDIA-H100-80GB-HBM3-MIG-3g.40gb-SHARED"
    assert labels["nvidia.com/gpu.replicas"] == "0"   # the MIG parents are labelled without sharing


def test_replicas_of_one_is_not_sharing(tmp_path):
    """sharing.go: a resource replicates only with replicas > 1."""
    _res, labels, _p = both(host(tmp_path, ["L4"], [[]], mig_enabled=False), "none", ts(1))
    assert labels["nvidia.com/gpu.sharing-strategy"] == "none" and labels["nvidia.com/gpu.product"] == "NVIDIA-L4"


def test_mps(tmp_path):
    """nvml.go newSharingLabeler: mps.capable true with MPS sharing, an error on MIG-enabled GPUs;
    cmd/nvidia-device-plugin validateFlags: mixed with MPS is refused."""
    mps = {"version": "v1", "sharing": {"mps": {"resources": [{"name": "nvidia.com/gpu", "replicas": 2}]}}}
    res, labels, _p = both(host(tmp_path / "a", ["L4"], [[]], mig_enabled=False), "none", mps)
    assert labels["nvidia.com/mps.capable"] == "true" and labels["nvidia.com/gpu.sharing-strategy"] == "mps"
    assert res == {"nvidia.com/gpu": "2"}
    _res, labels, problems = both(host(tmp_path / "b", [H100], [[("7g.80gb", 0, 8)]]), "single", mps)
    assert labels == {} and "MPS sharing is not supported for mig devices" in problems["gfd"]
    res, _labels, problems = both(host(tmp_path / "c", ["L4"], [[]], mig_enabled=False), "mixed", mps)
    assert res == {} and "mixed is not supported with MPS" in problems["device-plugin"]


# -- per-label rules ------------------------------------------------------------------------------
def test_version_labels(tmp_path):
    """nvml.go newVersionLabeler: legacy cuda.driver.* / cuda.runtime.* and the *-version.* keys."""
    _res, labels, _p = both(host(tmp_path, ["L4"], [[]], mig_enabled=False), "none")
    assert {k: v for k, v in labels.items() if k.startswith("nvidia.com/cuda.")} == {
        "nvidia.com/cuda.driver.major": "580", "nvidia.com/cuda.driver.minor": "95", "nvidia.com/cuda.driver.rev": "05",
        "nvidia.com/cuda.runtime.major": "13", "nvidia.com/cuda.runtime.minor": "0",
        "nvidia.com/cuda.driver-version.major": "580", "nvidia.com/cuda.driver-version.minor": "95",
        "nvidia.com/cuda.driver-version.revision": "05", "nvidia.com/cuda.driver-version.full": "580.95.05",
        "nvidia.com/cuda.runtime-version.major": "13", "nvidia.com/cuda.runtime-version.minor": "0",
        "nvidia.com/cuda.runtime-version.full": "13.0"}


def test_two_part_driver_version_and_malformed(tmp_path):
    """X.Y gives an empty revision; anything else makes GFD fail (no labels at all)."""
    _res, labels, _p = both(host(tmp_path / "a", ["L4"], [[]], mig_enabled=False, driver_version="590.10"), "none")
    assert labels["nvidia.com/cuda.driver.rev"] == "" and labels["nvidia.com/cuda.driver-version.revision"] == ""
    _res, labels, problems = both(host(tmp_path / "b", ["L4"], [[]], mig_enabled=False, driver_version="590"), "none")
    assert labels == {} and 'does not match format "X.Y[.Z]"' in problems["gfd"]


@pytest.mark.parametrize("model,family,cc", [
    ("A100-SXM4-40GB", "ampere", ("8", "0")), ("L4", "ada-lovelace", ("8", "9")),
    ("H100-80GB-HBM3", "hopper", ("9", "0")), ("B200", "blackwell", ("10", "0")),
])
def test_compute_capability_and_family(tmp_path, model, family, cc):
    """resource.go newArchitectureLabels / getArchFamily from nvmlDeviceGetCudaComputeCapability."""
    _res, labels, _p = both(host(tmp_path, [model], [[]], mig_enabled=False), "none")
    assert labels["nvidia.com/gpu.family"] == family
    assert (labels["nvidia.com/gpu.compute.major"], labels["nvidia.com/gpu.compute.minor"]) == cc


@pytest.mark.parametrize("major,minor,family", [
    (7, 0, "volta"), (7, 5, "turing"), (8, 6, "ampere"), (8, 9, "ada-lovelace"), (12, 0, "blackwell"),
    (13, 0, "rubin"), (11, 0, "undefined"),
])
def test_arch_family_table(major, minor, family):
    assert gfd.arch_family(major, minor) == family


def test_sanitise():
    """resource.go sanitise: drop characters outside [A-Za-z0-9-_. ], words joined by '-'."""
    assert gfd.sanitise("NVIDIA H100 80GB HBM3") == "NVIDIA-H100-80GB-HBM3"
    assert gfd.sanitise(" NVIDIA  RTX (TM) 6000/Ada ") == "NVIDIA-RTX-TM-6000Ada"


@pytest.mark.parametrize("classes,mode", [
    (["0x030200", "0x030200"], "compute"), (["0x030000"], "graphics"), (["0x030000", "0x030200"], "unknown"),
    ([None], "unknown"),
])
def test_gpu_mode(tmp_path, classes, mode):
    """nvml.go newGPUModeLabeler: one PCI class for all GPUs; 3D controller -> compute, VGA -> graphics."""
    facts = host(tmp_path, ["L4"] * len(classes), [], mig_enabled=False)
    for g, c in zip(facts["gpus"], classes):
        g["pci_class"] = c
    assert both(facts, "none")[1]["nvidia.com/gpu.mode"] == mode


def test_machine_type(tmp_path):
    """machine-type.go: the DMI product name, sanitised; 'unknown' when it cannot be read."""
    _res, labels, _p = both(host(tmp_path / "a", ["L4"], [[]], mig_enabled=False, machine_type="PowerEdge XE9680"),
                            "none")
    assert labels["nvidia.com/gpu.machine"] == "PowerEdge-XE9680"
    assert both(host(tmp_path / "b", ["L4"], [[]], mig_enabled=False), "none")[1]["nvidia.com/gpu.machine"] == "unknown"


def test_timestamp_only_when_given(tmp_path):
    """timestamp.go: gfd.timestamp unless --no-timestamp."""
    facts = host(tmp_path, ["L4"], [[]], mig_enabled=False)
    assert gfd.gfd_labels(facts, "none", timestamp=1767225600)["nvidia.com/gfd.timestamp"] == "1767225600"
    assert "nvidia.com/gfd.timestamp" not in gfd.gfd_labels(facts, "none")


def test_labels_are_valid_kubernetes_label_values(tmp_path):
    facts = host(tmp_path, [H100], [[("1g.10gb+me", 0, 1), ("3g.40gb", 4, 4)]])
    for strategy in gfd.STRATEGIES:
        res, labels, _p = both(facts, strategy)
        for k, v in list(labels.items()) + list(res.items()):
            assert isinstance(v, str) and len(v) <= 63 and LABEL_VALUE.match(v), (k, v)
            assert "+" not in k


def test_empty_host_and_bad_strategy():
    """No GPUs: no device labels (nvml.go returns empty{}), vgpu.present still; no resources."""
    assert gfd.node_resources_and_labels({"gpus": []}, "mixed") == ({}, {"nvidia.com/vgpu.present": "false"}, {})
    with pytest.raises(ValueError) as e:
        gfd.node_resources_and_labels({"gpus": []}, "MIXED")
    assert "none, single, mixed" in str(e.value)
