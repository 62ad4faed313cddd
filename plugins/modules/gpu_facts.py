#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: gpu_facts
short_description: Read NVIDIA GPUs, MIG mode and MIG instances through NVML
version_added: 0.1.0
description:
  - Reads every NVIDIA GPU on the host through NVML (nvidia-ml-py) and returns plain data, without
    running C(nvidia-smi).
  - Per GPU it returns the index, UUID, name, PCI device id, memory, MIG capability and mode
    (current and pending), persistence mode, temperature, volatile ECC error counts and running
    processes; with MIG on, the GPU-instance profiles NVML reports, the existing GPU and compute
    instances with their placements, and the Kubernetes resource name each MIG device gets under the
    device plugin's mixed strategy.
  - Read-only; never changes the GPU.
author:
  - gpuops.llm contributors (@gpuops)
extends_documentation_fragment:
  - gpuops.llm.nvml
attributes:
  check_mode:
    support: full
    description: Can run in check mode and return the same facts.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  platform:
    platforms: posix
    support: full
    description: Linux hosts with the NVIDIA driver, or any host with a simulator state file.
"""

EXAMPLES = r"""
- name: Read the GPUs
  gpuops.llm.gpu_facts:
  register: gpus

- name: Fail unless every GPU has MIG enabled
  ansible.builtin.assert:
    that: gpus.gpus | rejectattr('mig_current') | list | length == 0

- name: Read a simulated host (testbed)
  gpuops.llm.gpu_facts:
    nvml_sim_state: /var/lib/gpuops/nvml-sim.json
  register: simulated
"""

RETURN = r"""
backend:
  description: Which backend answered, C(nvml) (real GPUs) or C(simulator).
  returned: success
  type: str
  sample: nvml
driver_version:
  description: NVIDIA driver version.
  returned: success
  type: str
  sample: "580.95.05"
cuda_version:
  description: Highest CUDA version the driver supports.
  returned: success
  type: str
  sample: "13.0"
gpu_count:
  description: Number of GPUs.
  returned: success
  type: int
  sample: 8
gpus:
  description:
    - One entry per GPU, in NVML index order.
    - C(mig_current)/C(mig_pending) are null on GPUs without MIG; a change is pending when they differ.
    - C(gpu_instances[].resource) is the device plugin's mixed-strategy resource name, or null when the
      GPU instance does not hold exactly one compute instance spanning it.
  returned: success
  type: list
  elements: dict
  sample:
    - index: 0
      uuid: GPU-5c1c3f2e-0000-0000-0000-000000000000
      name: NVIDIA H100 80GB HBM3
      model: H100-80GB-HBM3
      pci_device_id: "0x233010DE"
      pci_bus_id: "00000000:18:00.0"
      memory_total_mib: 81559
      memory_used_mib: 0
      persistence_mode: true
      temperature_c: 33
      ecc_errors_volatile: {corrected: 0, uncorrected: 0}
      mig_capable: true
      mig_current: true
      mig_pending: true
      mig_change_pending: false
      processes: []
      mig_profiles: []
      gpu_instances:
        - id: 1
          profile: 3g.40gb
          profile_id: 9
          start: 4
          size: 4
          slices: 3
          memory_mib: 40448
          multiprocessors: 60
          engines: {copy: 3, decoder: 3, encoder: 0, jpeg: 3, ofa: 0}
          compute_instances: [{id: 0, profile_id: 2, start: 0, size: 3, slices: 3, multiprocessors: 60}]
          mig_device: true
          resource: nvidia.com/mig-3g.40gb
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils import nvml


def main():
    module = AnsibleModule(
        argument_spec=dict(nvml_sim_state=dict(type="path")),
        supports_check_mode=True,
    )
    try:
        with nvml.get_backend(module.params["nvml_sim_state"]) as backend:
            facts = nvml.host_facts(backend)
    except nvml.NVMLError as e:
        module.fail_json(msg=str(e), nvml_error=e.code_name)
    module.exit_json(changed=False, **facts)


if __name__ == "__main__":
    main()
