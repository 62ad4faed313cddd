#!/usr/bin/python
# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
---
module: mig_plan
short_description: Place a MIG layout on a GPU model without touching a GPU
version_added: 0.1.0
description:
  - Finds explicit placements (start and size in memory slices) for a MIG layout on a GPU model,
    searching NVML's legal placements by backtracking, so layouts that first-fit placement misses
    (for example C(3g) plus four C(1g) instances, which needs the C(3g) at slot 4) are found.
  - Fails, naming the profile and the reason, when the layout cannot exist on that model - the
    profile is unknown on it (the message lists the models that have it), its instance count is
    exceeded, or there is no room.
  - Profile names are per model - C(1g.10gb) is a 2-slice profile on an A100-SXM4-40GB and a 1-slice
    one on an H100 80GB.
  - Uses the collection's static profile tables; no GPU, driver or NVML is needed. Values the
    collection's sources could not confirm (H200, B200, A100-80GB details) are flagged in
    C(profiles[].unconfirmed).
author:
  - gpuops.llm contributors (@gpuops)
options:
  gpu_model:
    description:
      - The GPU model, as an NVML product name with or without the C(NVIDIA) prefix (C(NVIDIA A100-SXM4-40GB),
        C(NVIDIA H100 80GB HBM3), C(NVIDIA H200)), a GFD C(nvidia.com/gpu.product) label
        (C(NVIDIA-H100-80GB-HBM3)) or a PCI device id (C(0x233010DE)).
    type: str
    required: true
  mig_devices:
    description:
      - 'The layout, profile to count, in mig-parted syntax, for example C({"1g.10gb": 4, "3g.40gb": 1}).'
      - Mutually exclusive with O(preset).
    type: dict
  preset:
    description:
      - A mig-parted style named configuration for this model - C(all-disabled), C(all-enabled),
        C(all-balanced) or C(all-<profile>) with C(+) written as C(.) (C(all-1g.10gb), C(all-1g.10gb.me)).
      - Mutually exclusive with O(mig_devices).
    type: str
attributes:
  check_mode:
    support: full
    description: Computes the same result in check mode; nothing is ever changed.
  diff_mode:
    support: none
    description: Changes nothing, so there is no diff.
  platform:
    platforms: all
    support: full
    description: Pure computation; runs anywhere Python runs.
"""

EXAMPLES = r"""
- name: Where do a 3g and four 1g instances go on an A100 40GB?
  gpuops.llm.mig_plan:
    gpu_model: NVIDIA A100-SXM4-40GB
    mig_devices:
      3g.20gb: 1
      1g.5gb: 4
  register: layout
  # layout.placements: 1g.5gb at 0, 1, 2, 3 and 3g.20gb at 4 (size 4)

- name: Resources a node with the balanced layout would advertise (mixed strategy)
  gpuops.llm.mig_plan:
    gpu_model: NVIDIA-H100-80GB-HBM3
    preset: all-balanced
  register: balanced
"""

RETURN = r"""
gpu_model:
  description: The canonical model key the input resolved to.
  returned: success
  type: str
  sample: A100-SXM4-40GB
mig_enabled:
  description: Whether the layout has MIG on.
  returned: success
  type: bool
  sample: true
mig_devices:
  description: The validated layout, profile to count, without zero counts.
  returned: success
  type: dict
  sample: {"1g.5gb": 4, "3g.20gb": 1}
placements:
  description: Explicit placements, sorted by start, in memory slices.
  returned: success
  type: list
  elements: dict
  sample:
    - {profile: 1g.5gb, start: 0, size: 1}
    - {profile: 1g.5gb, start: 1, size: 1}
    - {profile: 1g.5gb, start: 2, size: 1}
    - {profile: 1g.5gb, start: 3, size: 1}
    - {profile: 3g.20gb, start: 4, size: 4}
resources:
  description:
    - Extended resources one such GPU advertises under the device plugin's mixed strategy
      (C(nvidia.com/gpu) 1 when MIG is off).
  returned: success
  type: dict
  sample: {"nvidia.com/mig-1g.5gb": 4, "nvidia.com/mig-3g.20gb": 1}
profiles:
  description: The model's MIG profiles as the collection's tables know them (placements, counts, flags).
  returned: success
  type: list
  elements: dict
reason:
  description:
    - On failure, why the layout cannot exist - C(unknown_profile), C(over_count), C(media_engines), C(no_room),
      C(not_mig_capable), C(unknown_gpu), C(syntax), C(unsupported) or C(config).
  returned: failure
  type: str
  sample: over_count
profile:
  description: On failure, the profile at fault when there is one.
  returned: failure
  type: str
  sample: 1g.5gb
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.gpuops.llm.plugins.module_utils import mig


def main():
    module = AnsibleModule(
        argument_spec=dict(
            gpu_model=dict(type="str", required=True),
            mig_devices=dict(type="dict"),
            preset=dict(type="str"),
        ),
        mutually_exclusive=[("mig_devices", "preset")],
        required_one_of=[("mig_devices", "preset")],
        supports_check_mode=True,
    )
    p = module.params
    try:
        model = mig.resolve_model(p["gpu_model"])
        if p["preset"] is not None:
            want = mig.preset(model, p["preset"])
        else:
            want = {"mig_enabled": True, "mig_devices": mig.parse_mig_devices(p["mig_devices"], where="mig_devices")}
        placements = mig.solve(model, want["mig_devices"]) if want["mig_enabled"] else []
    except mig.MigError as e:
        module.fail_json(msg=str(e), reason=e.reason, profile=e.profile)
    # A GPU with MIG off stays one nvidia.com/gpu under the mixed strategy.
    resources: dict = {} if want["mig_enabled"] else {"nvidia.com/gpu": 1}
    for pl in placements:
        name = mig.resource_name(pl["profile"])
        resources[name] = resources.get(name, 0) + 1
    module.exit_json(
        changed=False, gpu_model=model.key, mig_enabled=want["mig_enabled"], mig_devices=want["mig_devices"],
        placements=placements, resources=resources, profiles=[pr.as_dict() for pr in model.profiles],
    )


if __name__ == "__main__":
    main()
