# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpuops.llm.cluster_autoscaler_policy and gpuops.llm.autoscaler_flag_errors, from
plugins/module_utils/autoscaler_policy.py (documented in the .yml files of the same names).
Roles print what these return; the rules live in Python."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.gpuops.llm.plugins.module_utils import autoscaler_policy


def cluster_autoscaler_policy(settings):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("cluster_autoscaler_policy: the input must be a dict of the role's settings, got %s"
                                 % type(settings).__name__)
    return autoscaler_policy.resolve(settings)


def autoscaler_flag_errors(settings, prefix):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("autoscaler_flag_errors: the input must be a dict, got %s" % type(settings).__name__)
    return autoscaler_policy.flag_errors(settings, lambda field: "%s%s" % (prefix, field))


class FilterModule:
    def filters(self):
        return {"cluster_autoscaler_policy": cluster_autoscaler_policy,
                "autoscaler_flag_errors": autoscaler_flag_errors}
