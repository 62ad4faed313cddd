# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side apply that writes only when something differs.

kubernetes.core.k8s with ``apply: true`` sends a PATCH for every object on every run, so a
converged cluster still sees one write per object per run. Here each manifest is compared with
the live object first: when every field we set is already there with the same value (server
defaults only ever add fields, so a subset test is the right one), no request is sent. When it
differs we apply with the one field manager, and report ``changed`` from the resourceVersion,
so an apply that the server found to be a no-op is not reported as a change either.
"""
from __future__ import annotations

import base64
import re

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import K8sError

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eE][+-]?[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E)?$")
_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60,
           "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18}


def _quantity(value):
    m = _QUANTITY.match(str(value).strip())
    if not m:
        return None
    number = float(m.group(1) + (m.group(2) or ""))
    return number * _SUFFIX.get(m.group(3) or "", 1)


def scalar_equal(desired, live) -> bool:
    if desired == live:
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    if str(desired) == str(live):
        return True
    a, b = _quantity(desired), _quantity(live)  # "0.5" vs "500m", "1024Mi" vs "1Gi"
    return a is not None and b is not None and abs(a - b) <= 1e-9 * max(abs(a), abs(b), 1)


def is_subset(desired, live) -> bool:
    """True when every field of ``desired`` is present in ``live`` with an equal value."""
    if isinstance(desired, dict):
        if not isinstance(live, dict):
            return False
        return all(k in live and is_subset(v, live[k]) for k, v in desired.items()
                   if v is not None) and all(live.get(k) is None for k, v in desired.items() if v is None)
    if isinstance(desired, list):
        if not isinstance(live, list) or len(desired) != len(live):
            return False
        return all(is_subset(d, lv) for d, lv in zip(desired, live))
    return scalar_equal(desired, live)


def comparable(manifest: dict) -> dict:
    """The manifest as the server would store it, for fields the server rewrites."""
    if manifest.get("kind") == "Secret" and manifest.get("stringData"):
        m = dict(manifest)
        data = dict(m.get("data") or {})
        for k, v in m.pop("stringData").items():
            data[k] = base64.b64encode(str(v).encode()).decode()
        m["data"] = data
        return m
    return manifest


def ref(manifest: dict) -> str:
    meta = manifest.get("metadata") or {}
    ns = meta.get("namespace")
    return "%s %s%s" % (manifest.get("kind"), ns + "/" if ns else "", meta.get("name"))


def _strip_for_diff(obj: dict | None, like: dict) -> dict | None:
    """Keep only the fields of ``obj`` that ``like`` sets: a readable before/after."""
    if obj is None:
        return None
    if isinstance(like, dict) and isinstance(obj, dict):
        return {k: _strip_for_diff(obj.get(k), v) for k, v in like.items() if k in obj}
    return obj


class Applier:
    def __init__(self, k8s, force_conflicts: bool = False):
        self.k8s = k8s
        self.force = force_conflicts

    def _namespace_default(self, manifest: dict, namespace: str | None) -> dict:
        if not namespace:
            return manifest
        api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
        _plural, namespaced = self.k8s.resource_info(api_version, kind)
        if namespaced and not (manifest.get("metadata") or {}).get("namespace"):
            manifest = dict(manifest)
            manifest["metadata"] = dict(manifest.get("metadata") or {}, namespace=namespace)
        return manifest

    def present(self, manifest: dict, check_mode: bool = False, namespace: str | None = None) -> dict:
        manifest = self._namespace_default(manifest, namespace)
        meta = manifest.get("metadata") or {}
        live = self.k8s.get_or_none(manifest.get("apiVersion"), manifest.get("kind"), meta.get("name"),
                                    meta.get("namespace"))
        desired = comparable(manifest)
        result = {"ref": ref(manifest), "changed": False, "action": "unchanged"}
        if live is not None and is_subset({k: v for k, v in desired.items() if k not in ("apiVersion", "kind")},
                                          {k: v for k, v in live.items() if k not in ("apiVersion", "kind")}):
            return result
        result["diff"] = {"before": _strip_for_diff(live, desired), "after": desired}
        result["action"] = "create" if live is None else "update"
        if check_mode:
            result["changed"] = True
            return result
        after = self.k8s.apply(manifest, force=self.force)
        before_rv = ((live or {}).get("metadata") or {}).get("resourceVersion")
        after_rv = ((after or {}).get("metadata") or {}).get("resourceVersion")
        result["changed"] = live is None or before_rv != after_rv
        if not result["changed"]:
            result["action"] = "unchanged"
        return result

    def absent(self, manifest: dict, check_mode: bool = False, namespace: str | None = None) -> dict:
        manifest = self._namespace_default(manifest, namespace)
        meta = manifest.get("metadata") or {}
        api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
        result = {"ref": ref(manifest), "changed": False, "action": "absent"}
        try:
            live = self.k8s.get_or_none(api_version, kind, meta.get("name"), meta.get("namespace"))
        except K8sError:
            # The kind itself is not served (CRD removed): nothing of it can exist.
            return result
        if live is None:
            return result
        result.update(changed=True, action="delete", diff={"before": _strip_for_diff(live, manifest), "after": None})
        if not check_mode:
            self.k8s.delete(api_version, kind, meta.get("name"), meta.get("namespace"))
        return result
