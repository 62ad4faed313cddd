# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Server-side apply that writes only when something differs.

kubernetes.core.k8s with ``apply: true`` sends a PATCH for every object on every run, so a
converged cluster still sees one write per object per run. Here each manifest is compared with
the live object first, and nothing is sent when both of these hold:

* every field the manifest sets is already there with the same value (server defaults only
  ever add fields, so a subset test is the right one for what we set), and
* no field that our field manager applied earlier, as the live object's ``managedFields``
  record it, is missing from the manifest. Server-side apply removes such a field when the
  manifest is applied again, so its presence means the object differs (a subset test alone
  would never see a key dropped from a ConfigMap, a label or a limit). Fields that other
  managers own, and fields the server defaulted, are never in our manager's set.

An atomic field (a nodeSelector, a fieldRef) is owned whole, so a key only its live value has
may be one we dropped or one the server defaulted; when such keys are all that looks different,
a server-side dry run of the apply (nothing persisted, no write) decides.

When it differs we apply with the one field manager, and report ``changed`` from the
resourceVersion, so an apply that the server found to be a no-op is not reported as a change
either. Secret values never leave in a result or a diff (``redact``).
"""
from __future__ import annotations

import base64
import copy
import json
import re

from ansible_collections.gpuops.llm.plugins.module_utils.k8s import FIELD_MANAGER, K8sError

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


# ---------------------------------------------------------------------------------------
# Fields we own: managedFields (fieldsV1) of our Apply manager
# ---------------------------------------------------------------------------------------
# A path is a tuple of steps. A step is ("f", name) for a map field, ("k", ((key, value), ...))
# for an item of an associative list (sorted key fields), or ("v", value) for an item of a set.


def _step(token: str):
    kind, _sep, rest = token.partition(":")
    if kind == "f":
        return ("f", rest)
    if kind == "k":
        return ("k", tuple(sorted(json.loads(rest).items())))
    if kind == "v":
        return ("v", json.loads(rest))
    raise ValueError("unknown managedFields step %r" % token)


def owned_paths(fields_v1: dict | None) -> set:
    """The leaf paths a fieldsV1 tree owns.

    ``{"f:data": {".": {}, "f:a": {}}}`` owns the map ``data`` and its key ``a``; only the
    leaves count here (``("data", "a")``): owning the map itself does not make every key in it
    ours. A field whose value is atomic (``f:args: {}``, a whole list) is a leaf too.
    """
    out = set()

    def walk(node, prefix):
        children = [k for k in (node or {}) if k != "."]
        if not children:
            if prefix:
                out.add(prefix)
            return
        for token in children:
            walk(node[token], prefix + (_step(token),))

    walk(fields_v1 or {}, ())
    return out


def manager_paths(live: dict | None, manager: str, api_version: str | None = None) -> set:
    """Leaf paths that ``manager`` owns by server-side apply in ``live``'s managedFields.

    Only the ``Apply`` entry of the main resource counts (not ``Update`` entries, not the status
    subresource), and only when it was recorded for the same apiVersion as ours: fields of
    another version may be spelt differently, and then nothing is pruned.
    """
    out = set()
    for entry in ((live or {}).get("metadata") or {}).get("managedFields") or []:
        if (entry.get("manager") != manager or entry.get("operation") != "Apply" or entry.get("subresource")
                or entry.get("fieldsType", "FieldsV1") != "FieldsV1"):
            continue
        if api_version and entry.get("apiVersion") and entry["apiVersion"] != api_version:
            continue
        out |= owned_paths(entry.get("fieldsV1"))
    return out


_MISSING = object()


def _item_matches(item, key, exact: bool) -> bool:
    if not isinstance(item, dict):
        return False
    present = [(k, v) for k, v in key if item.get(k) is not None]
    if exact:
        return len(present) == len(key) and all(scalar_equal(item[k], v) for k, v in present)
    # The server defaults key fields (a port's protocol): a manifest may leave them out.
    return bool(present) and all(scalar_equal(item[k], v) for k, v in present)


def _child(obj, step, exact: bool):
    kind, value = step
    if kind == "f":
        if isinstance(obj, dict) and obj.get(value) is not None:
            return obj[value]
        return _MISSING
    if not isinstance(obj, list):
        return _MISSING
    if kind == "k":
        for strict in (True, False) if not exact else (True,):
            for item in obj:
                if _item_matches(item, value, strict):
                    return item
        return _MISSING
    for item in obj:  # "v": an item of a set
        if scalar_equal(item, value):
            return item
    return _MISSING


def lookup(obj, path, exact: bool = True):
    """The value at ``path`` in ``obj``, or ``_MISSING``.

    ``exact`` matches list items on every key field (the live object, which the server has
    defaulted); otherwise an item that leaves out a key field still matches (a manifest).
    """
    for step in path:
        obj = _child(obj, step, exact)
        if obj is _MISSING:
            return _MISSING
    return obj


def _minimal(paths) -> list:
    """Drop every path that lies under another one of ``paths``; sorted for stable output."""
    ordered = sorted(paths, key=lambda p: (len(p), json.dumps(p, default=str)))
    out = []
    for p in ordered:
        if not any(p[:len(q)] == q for q in out):
            out.append(p)
    return out


def removed_paths(desired: dict, live: dict | None, manager: str) -> list:
    """Paths our manager applied before that ``desired`` no longer sets, still in ``live``.

    Server-side apply removes exactly these when the manifest is applied again; fields of other
    managers and fields the server defaulted are never in our set, so they never count.
    """
    if not live:
        return []
    out = []
    for path in manager_paths(live, manager, desired.get("apiVersion")):
        if lookup(live, path) is not _MISSING and lookup(desired, path, exact=False) is _MISSING:
            # A key field of an item that the manifest no longer has: the item goes as a whole.
            if (len(path) >= 2 and path[-2][0] == "k" and path[-1][0] == "f" and path[-1][1] in dict(path[-2][1])
                    and lookup(desired, path[:-1], exact=False) is _MISSING):
                path = path[:-1]
            out.append(path)
    return _minimal(out)


def _extra_keys(desired, live) -> bool:
    """Whether ``live`` has a key ``desired`` does not set, in maps nested in maps (not in lists)."""
    for k, v in live.items():
        d = desired.get(k)
        if d is None:
            return True
        if isinstance(v, dict) and isinstance(d, dict) and _extra_keys(d, v):
            return True
    return False


def atomic_paths_changed(desired: dict, live: dict | None, manager: str) -> list:
    """Atomic maps we own whose live value has a key that ``desired`` dropped.

    Server-side apply owns an atomic field (a Pod's ``nodeSelector``, a Service's ``selector``,
    ``f:nodeSelector: {}`` in fieldsV1) as one value and replaces it whole, so a key dropped from
    it is removed although no path names the key. A subset test cannot see that. A leaf that
    another manager owns paths under is a granular map we set empty, not an atomic one, and is
    left out; lists are not looked into (their length is compared already, and the server
    defaults fields inside the items of some, such as a StatefulSet's volumeClaimTemplates).
    """
    if not live:
        return []
    ours = manager_paths(live, manager, desired.get("apiVersion"))
    theirs = set()
    for entry in ((live.get("metadata") or {}).get("managedFields") or []):
        if entry.get("manager") != manager or entry.get("operation") != "Apply" or entry.get("subresource"):
            theirs |= owned_paths(entry.get("fieldsV1"))
    out = []
    for path in ours:
        if any(len(t) > len(path) and t[:len(path)] == path for t in theirs):
            continue
        d, lv = lookup(desired, path, exact=False), lookup(live, path)
        if isinstance(d, dict) and isinstance(lv, dict) and _extra_keys(d, lv):
            out.append(path)
    return _minimal(out)


def stale_paths(desired: dict, live: dict | None, manager: str, dry_run=None) -> list:
    """Everything a new apply of ``desired`` would remove from ``live``: see removed_paths and
    atomic_paths_changed. Empty when the live object has no Apply entry of ours.

    A key that only the live value of an atomic field has may be one the server defaulted there
    (a fieldRef's ``apiVersion: v1``), not one we dropped; nothing in managedFields tells them
    apart. So when atomic fields are all that looks different, ``dry_run()`` (a server-side dry
    run of the apply, which persists nothing) says what the server would store, and an atomic
    field counts only when that differs from the live value; when the dry run fails, none does.
    Without ``dry_run`` they count.
    """
    removed = removed_paths(desired, live, manager)
    atomic = atomic_paths_changed(desired, live, manager)
    if atomic and not removed and dry_run is not None:
        would_be = dry_run()
        # A failed dry run (a conflict, say) leaves the subset test to decide, as before.
        atomic = [p for p in atomic if would_be is not None and lookup(would_be, p) != lookup(live, p)]
    return _minimal(removed + atomic)


def path_text(path) -> str:
    """``spec.template.spec.containers[name=vllm].resources.limits.cpu``: for messages and tests."""
    out = ""
    for kind, value in path:
        if kind == "f":
            out += ("." if out else "") + value
        elif kind == "k":
            out += "[%s]" % ",".join("%s=%s" % kv for kv in value)
        else:
            out += "[%s]" % json.dumps(value)
    return out


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


def _with_path(before: dict, live: dict, path) -> dict:
    """``before`` with the live value at ``path`` added, so the diff shows what goes away.

    Maps are followed key by key; at the first list the whole live list is shown (a list item
    is only named by its key fields, and the diff of the rest of the object shows lists whole).
    """
    before = copy.deepcopy(before) if before is not None else {}
    cur_b, cur_l = before, live
    for i, (kind, name) in enumerate(path):
        if kind != "f" or not isinstance(cur_l, dict) or name not in cur_l:
            break
        value = cur_l[name]
        last = i == len(path) - 1 or not isinstance(value, dict)
        if last:
            cur_b[name] = copy.deepcopy(value)
            break
        if not isinstance(cur_b.get(name), dict):
            cur_b[name] = {}
        cur_b, cur_l = cur_b[name], value
    return before


REDACTED = "VALUE_SPECIFIED_IN_NO_LOG_PARAMETER"


def redact(obj, kind: str | None = None):
    """A copy of a Secret (``kind`` or the object's own) with every data and stringData value
    replaced by REDACTED; the keys stay, so a diff still says which keys change. Anything else
    comes back as it is."""
    if not isinstance(obj, dict) or (kind or obj.get("kind")) != "Secret":
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(out.get(field), dict):
            out[field] = {k: REDACTED for k in out[field]}
    return out


class Applier:
    def __init__(self, k8s, force_conflicts: bool = False):
        self.k8s = k8s
        self.force = force_conflicts
        self.manager = getattr(k8s, "field_manager", None) or FIELD_MANAGER

    def _namespace_default(self, manifest: dict, namespace: str | None) -> dict:
        if not namespace:
            return manifest
        api_version, kind = manifest.get("apiVersion"), manifest.get("kind")
        _plural, namespaced = self.k8s.resource_info(api_version, kind)
        if namespaced and not (manifest.get("metadata") or {}).get("namespace"):
            manifest = dict(manifest)
            manifest["metadata"] = dict(manifest.get("metadata") or {}, namespace=namespace)
        return manifest

    def _dry_run(self, manifest: dict):
        """A callable that returns the object as this apply would leave it (a server-side dry run,
        nothing persisted), or None when the dry run fails (then the apply decides as before)."""
        def run():
            try:
                return self.k8s.apply(manifest, force=self.force, dry_run=True)
            except K8sError:
                return None
        return run

    def present(self, manifest: dict, check_mode: bool = False, namespace: str | None = None) -> dict:
        manifest = self._namespace_default(manifest, namespace)
        meta = manifest.get("metadata") or {}
        live = self.k8s.get_or_none(manifest.get("apiVersion"), manifest.get("kind"), meta.get("name"),
                                    meta.get("namespace"))
        desired = comparable(manifest)
        kind = manifest.get("kind")
        result = {"ref": ref(manifest), "changed": False, "action": "unchanged"}
        # Fields our manager applied earlier that this manifest drops: apply removes them.
        subset = live is not None and is_subset({k: v for k, v in desired.items() if k not in ("apiVersion", "kind")},
                                                {k: v for k, v in live.items() if k not in ("apiVersion", "kind")})
        stale = stale_paths(desired, live, self.manager, self._dry_run(manifest) if subset else None) if live is not None else []
        if subset and not stale:
            return result
        before = _strip_for_diff(live, desired)
        for path in stale:
            before = _with_path(before, live, path)
        result["diff"] = {"before": redact(before, kind), "after": redact(desired, kind)}
        if stale:
            result["removed"] = [path_text(p) for p in stale]
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
        result.update(changed=True, action="delete", diff={"before": redact(_strip_for_diff(live, manifest), kind), "after": None})
        if not check_mode:
            self.k8s.delete(api_version, kind, meta.get("name"), meta.get("namespace"))
        return result
