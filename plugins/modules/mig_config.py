#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mig_config
short_description: Declarative MIG layout for every GPU of a host, changing only the difference
version_added: 0.1.0
description:
  - Brings the host's GPUs to a desired MIG state - MIG mode and the GPU instances with their
    placements - given as a mig-parted config file and config name, an inline mig-parted document,
    a named preset, or an inline profile-to-count mapping.
  - Unlike mig-parted, which destroys and recreates every instance on any change, GPU instances that
    already match stay untouched (their ids do not change); only the difference is destroyed and
    created, always with explicit placements found by backtracking over NVML's legal placements.
  - Everything is validated for every GPU before the first write - profiles unknown on a GPU's model,
    counts over a profile's limit, layouts that cannot be placed, device indexes out of range, MIG asked
    of a GPU without MIG, unknown config names and malformed files each fail with a clear message and
    no change.
  - Refuses to change a GPU that runs processes, naming their PIDs, unless O(force=true). The
    C(gpuops.llm.mig) role drains the node first.
  - If a step fails part-way, every step already taken is undone (in reverse) and the module fails,
    saying whether the previous layout was restored.
  - Enabling or disabling MIG needs a GPU reset on Ampere (A100, A30) and is immediate on Hopper and
    later; the module reports RV(reset_required) or RV(reboot_required) instead of resetting anything.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.nvml
options:
  config_file:
    description:
      - Path, on the managed host, of a mig-parted configuration file (C(version) v1, C(mig-configs)).
      - Requires O(config_name). Mutually exclusive with O(config), O(preset) and O(mig_devices).
    type: path
  config:
    description:
      - An inline mig-parted document, the same structure as O(config_file) holds.
      - Requires O(config_name).
    type: dict
  config_name:
    description:
      - The name under C(mig-configs) to apply, as for C(nvidia-mig-parted apply -c).
    type: str
  preset:
    description:
      - A named configuration resolved per GPU model, as in mig-parted's default file - C(all-disabled),
        C(all-enabled) (MIG on, no instances), C(all-balanced) (two 1g, one 2g and, on 7-slice GPUs,
        one 3g) or C(all-<profile>) with C(+) written as C(.), which fills the GPU with that profile.
    type: str
  mig_devices:
    description:
      - 'MIG on with this layout, profile to count in mig-parted syntax, for example C({"1g.10gb": 4, "3g.40gb": 1}).'
      - An empty mapping means MIG on with no instances.
    type: dict
  gpus:
    description:
      - GPU indexes that O(preset) or O(mig_devices) apply to; all GPUs when omitted.
      - A config file selects GPUs itself (C(devices), C(device-filter)).
    type: list
    elements: int
  force:
    description:
      - Change GPUs even while processes run on them. NVML still refuses to destroy an instance a
        process uses; the module then restores the previous layout and fails.
    type: bool
    default: false
attributes:
  check_mode:
    support: full
    description: Validates everything and predicts the changes and C(changed) without any NVML write.
  diff_mode:
    support: full
    description: Returns the MIG mode and layout of each GPU before and after.
  platform:
    platforms: posix
    support: full
    description: Linux hosts with the NVIDIA driver (root for changes), or any host with a simulator state file.
notes:
  - Run with C(become=true); NVML changes need root.
  - Static profile tables are used only to validate a layout before MIG is on; once MIG is on, profile
    ids and placements come from NVML itself.
seealso:
  - module: gpuops.llm.mig_plan
  - module: gpuops.llm.gpu_facts
"""

EXAMPLES = r"""
- name: Apply a named config from a mig-parted file
  gpuops.llm.mig_config:
    config_file: /etc/nvidia-mig-manager/config.yaml
    config_name: all-balanced
  become: true
  register: mig

- name: Four 1g and one 3g on GPUs 0-3 (H100 80GB)
  gpuops.llm.mig_config:
    gpus: [0, 1, 2, 3]
    mig_devices:
      1g.10gb: 4
      3g.40gb: 1
  become: true

- name: Inline mig-parted document
  gpuops.llm.mig_config:
    config_name: inference
    config:
      version: v1
      mig-configs:
        inference:
          - devices: [0, 1]
            mig-enabled: false
          - devices: [2, 3]
            mig-enabled: true
            mig-devices: {"1g.10gb": 7}
  become: true

- name: Turn MIG off everywhere
  gpuops.llm.mig_config:
    preset: all-disabled
  become: true

- name: Rehearse on the simulator
  gpuops.llm.mig_config:
    preset: all-1g.10gb
    nvml_sim_state: /tmp/host.json
"""

RETURN = r"""
gpus:
  description: One entry per GPU the desired state names.
  returned: always
  type: list
  elements: dict
  contains:
    index:
      description: NVML index.
      type: int
    name:
      description: NVML product name.
      type: str
    uuid:
      description: GPU UUID.
      type: str
    source:
      description: Where this GPU's desired state came from (preset, mig_devices, config entry).
      type: str
    changed:
      description: Whether this GPU changed (or would, in check mode).
      type: bool
    mig_enabled:
      description: MIG mode in effect after the run (predicted in check mode).
      type: bool
    mig_pending:
      description: MIG mode that will be in effect after a reset.
      type: bool
    reset_required:
      description: A MIG mode change waits for a GPU reset (Ampere, or clients kept the GPU busy).
      type: bool
    reboot_required:
      description: NVML answered RESET_REQUIRED; in a passthrough VM the VM must reboot.
      type: bool
    activation_status:
      description: The activation status SetMigMode returned, when it was called.
      type: str
    kept:
      description: GPU instances left untouched.
      type: list
      elements: dict
    destroyed:
      description: GPU instances destroyed.
      type: list
      elements: dict
    created:
      description: GPU instances created, with their placements (ids null in check mode).
      type: list
      elements: dict
    mig_devices:
      description: The MIG devices after the run - gi_id, ci_id, profile, start, size and the mixed-strategy resource name.
      type: list
      elements: dict
    warnings:
      description: Things the operator should know (pending mode changes).
      type: list
      elements: str
    processes:
      description:
        - Processes running on the GPU before the run (pid, used_memory_mib, gpu_instance_id, compute_instance_id);
          null when NVML would not list them.
      type: list
      elements: dict
  sample:
    - index: 0
      name: NVIDIA H100 80GB HBM3
      changed: true
      mig_enabled: true
      reset_required: false
      kept: [{id: 1, profile: 3g.40gb, start: 4, size: 4}]
      destroyed: [{id: 2, profile: 2g.20gb, start: 0, size: 2}]
      created: [{id: 2, profile: 1g.10gb, start: 0, size: 1}, {id: 3, profile: 1g.10gb, start: 1, size: 1}]
      mig_devices:
        - {gi_id: 2, ci_id: 0, profile: 1g.10gb, start: 0, size: 1, resource: nvidia.com/mig-1g.10gb}
resources:
  description:
    - Extended resources all GPUs of the host advertise after the run (predicted in check mode) under the
      device plugin's mixed strategy, as integers; GPUs the desired state does not name count as they are.
  returned: always
  type: dict
  sample: {"nvidia.com/mig-1g.10gb": 4, "nvidia.com/mig-3g.40gb": 1}
reset_required:
  description: True when any GPU needs a reset before its MIG mode change takes effect.
  returned: always
  type: bool
reboot_required:
  description: True when any GPU needs the (virtual) machine to reboot.
  returned: always
  type: bool
backend:
  description: C(nvml) or C(simulator).
  returned: always
  type: str
restored:
  description: On a failure part-way, whether the previous layout was restored.
  returned: failure
  type: bool
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils import mig, nvml


def main():
    module = AnsibleModule(
        argument_spec=dict(
            config_file=dict(type="path"),
            config=dict(type="dict"),
            config_name=dict(type="str"),
            preset=dict(type="str"),
            mig_devices=dict(type="dict"),
            gpus=dict(type="list", elements="int"),
            force=dict(type="bool", default=False),
            nvml_sim_state=dict(type="path"),
        ),
        mutually_exclusive=[("config_file", "config", "preset", "mig_devices"),
                            ("gpus", "config_file"), ("gpus", "config")],
        required_one_of=[("config_file", "config", "preset", "mig_devices")],
        required_by={"config_file": "config_name", "config": "config_name"},
        supports_check_mode=True,
    )
    p = module.params
    try:
        # The file is read and validated before NVML is touched.
        configs = source = None
        if p["config_file"]:
            configs, source = mig.load_mig_parted_file(p["config_file"]), "mig-parted config file %s" % p["config_file"]
        elif p["config"] is not None:
            source = "config"
            configs = mig.parse_mig_parted_config(p["config"], source=source)
        if configs is not None and p["config_name"] not in configs:
            raise mig.MigError("%s: unknown config name '%s'; available: %s"
                               % (source, p["config_name"], ", ".join(sorted(configs))), reason="config")
        if p["mig_devices"] is not None:
            mig.parse_mig_devices(p["mig_devices"], where="mig_devices")

        def desired(facts):
            return mig.desired_state(facts, preset_name=p["preset"], mig_devices=p["mig_devices"], gpus=p["gpus"],
                                     configs=configs, config_name=p["config_name"], source=source or "config")

        with nvml.get_backend(p["nvml_sim_state"]) as backend:
            result = nvml.configure_mig(backend, desired, force=p["force"], check_mode=module.check_mode)
    except mig.MigError as e:
        module.fail_json(msg=str(e), reason=e.reason, profile=e.profile)
    except nvml.MigApplyError as e:
        module.fail_json(msg=str(e), restored=e.restored, gpu=e.index)
    except nvml.NVMLError as e:
        module.fail_json(msg=str(e), nvml_error=e.code_name)

    diff = result.pop("diff")
    for g in result["gpus"]:
        for w in g["warnings"]:
            module.warn(w)
    if module._diff:
        result["diff"] = diff
    module.exit_json(**result)


if __name__ == "__main__":
    main()
