# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpuops.llm.cloud_node_pools_plan, from plugins/module_utils/cloud_pools.py (documented in
cloud_node_pools_plan.yml). roles/cloud_node_pools sends what this returns; the rules live in Python."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.gpuops.llm.plugins.module_utils import cloud_pools


def cloud_node_pools_plan(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("cloud_node_pools_plan: the input must be a dict of the role's settings, got %s"
                                 % type(settings).__name__)
    return cloud_pools.plan(settings)


class FilterModule:
    def filters(self):
        return {"cloud_node_pools_plan": cloud_node_pools_plan}
