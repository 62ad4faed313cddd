# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""gpuops.llm.vllm_serve_args: the arguments after `vllm serve`, from plugins/module_utils/vllm_args.py
(documented in vllm_serve_args.yml). Roles print what this returns; the rules live in Python."""
from __future__ import annotations

from ansible.errors import AnsibleFilterError

from ansible_collections.gpuops.llm.plugins.module_utils import vllm_args


def vllm_serve_args(settings, model=None, extra_args=None):
    if not isinstance(settings, dict):
        raise AnsibleFilterError("vllm_serve_args: the input must be a dict of engine settings, got %s"
                                 % type(settings).__name__)
    unknown = sorted(set(settings) - {key for key, _flag in vllm_args.FLAGS} - {"enable_prefix_caching"})
    if unknown:
        raise AnsibleFilterError("vllm_serve_args: unknown settings %s; known: %s, enable_prefix_caching"
                                 % (", ".join(unknown), ", ".join(key for key, _flag in vllm_args.FLAGS)))
    return vllm_args.build(settings, model=model, extra_args=extra_args)


class FilterModule:
    def filters(self):
        return {"vllm_serve_args": vllm_serve_args}
