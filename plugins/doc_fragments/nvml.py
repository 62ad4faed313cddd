# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations


class ModuleDocFragment(object):
    # The shared option that selects the NVML simulator instead of the real GPU.
    DOCUMENTATION = r"""
options:
  nvml_sim_state:
    description:
      - Path, on the managed host, of an NVML simulator state file to use instead of the real GPUs.
      - The simulator is used only when it is named here or in the environment variable
        E(GPUOPS_NVML_SIM_STATE) on the managed host; it is never a fallback when NVML fails.
      - Create a state file with C(nvml_sim.new_host_state) and C(nvml_sim.save_state) from the
        collection's C(module_utils), or let the testbed create one per simulated node.
    type: path
requirements:
  - nvidia-ml-py (module C(pynvml)) and the NVIDIA driver on the managed host, unless O(nvml_sim_state) is set.
"""
