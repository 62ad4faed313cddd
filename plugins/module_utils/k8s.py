# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The one adapter between gpuops.llm and the Kubernetes API.

Layers, top to bottom (kubernetes.core's client/service/waiter split, in one file):

* pure helpers: auth resolution and digest, label/taint validation, label selectors,
  JSON merge patches, API error translation. None of them needs the client library.
* ``get_api_client``: one ``ApiClient`` per auth digest, cached for the process.
* ``K8s``: raw JSON requests (plain dicts in and out, no model deserialisation, which is
  slow for large Node lists), with a write counter and a call log so tests and modules can
  prove that a rerun made no write calls.
* ``wait_for``: a generic monotonic-clock waiter.

Only this file imports ``kubernetes``; a missing library becomes a clear message.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import traceback

try:
    from kubernetes import client as _k8s_client
    from kubernetes import config as _k8s_config
    from kubernetes.client.exceptions import ApiException as _ApiException

    HAS_KUBERNETES = True
    KUBERNETES_IMPORT_ERROR = None
except ImportError:  # pragma: no cover - exercised by the missing-library test via monkeypatch
    _k8s_client = None
    _k8s_config = None
    _ApiException = None
    HAS_KUBERNETES = False
    KUBERNETES_IMPORT_ERROR = traceback.format_exc()

MISSING_LIBRARY_MSG = (
    "The Python 'kubernetes' client library is required on the host that runs this task "
    "(usually the Ansible controller or execution environment): pip install kubernetes"
)

FIELD_MANAGER = "gpuops.llm"
USER_AGENT = "gpuops.llm/0.1.0"
WRITE_VERBS = frozenset(("POST", "PUT", "PATCH", "DELETE"))

PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
}

# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------


class K8sError(Exception):
    """An API call failed; ``str()`` is a message fit for ``fail_json``."""

    def __init__(self, message, status=None, reason=None, verb=None, kind=None, name=None,
                 namespace=None, api_message=None):
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.verb = verb
        self.kind = kind
        self.name = name
        self.namespace = namespace
        self.api_message = api_message
        # Callers that stop part-way attach what they had already done here.
        self.result = None

    def to_dict(self):
        return {
            "status": self.status,
            "reason": self.reason,
            "verb": self.verb,
            "kind": self.kind,
            "name": self.name,
            "namespace": self.namespace,
            "api_message": self.api_message,
        }


class K8sMissingLibrary(K8sError):
    pass


class K8sConfigError(K8sError):
    pass


class K8sNotFound(K8sError):
    pass


class K8sConflict(K8sError):
    pass


class K8sEvictionBlocked(K8sError):
    """A policy/v1 Eviction was refused with 429: a PodDisruptionBudget forbids it now."""


class K8sWaitTimeout(K8sError):
    def __init__(self, message, last=None):
        super().__init__(message)
        self.last = last


def _object_ref(kind, name, namespace):
    if not kind and not name:
        return ""
    ref = kind or "object"
    if name:
        ref += " '%s/%s'" % (namespace, name) if namespace else " '%s'" % name
    return ref


_HINTS = {
    401: "the credentials were rejected; check kubeconfig, context, api_key or client certificate",
    403: "RBAC forbids this; the user in the kubeconfig needs this verb on this resource",
    404: "it does not exist",
    409: "it changed since it was read (resourceVersion conflict) or already exists",
    422: "the API server rejected the object as invalid",
}


def error_from_response(status, reason=None, body=None, verb=None, kind=None, name=None,
                        namespace=None):
    """Turn an HTTP error status and body into the matching ``K8sError`` subclass.

    ``body`` is the response body (a JSON ``Status`` object as text, bytes or dict). The
    message names the verb, the object, the status code and reason, and the API's own text.
    """
    api_message = None
    status_reason = None
    if isinstance(body, (bytes, bytearray)):
        body = body.decode("utf-8", "replace")
    if isinstance(body, str) and body.strip():
        try:
            body = json.loads(body)
        except ValueError:
            api_message = body.strip()[:500]
    if isinstance(body, dict):
        api_message = body.get("message") or api_message
        status_reason = body.get("reason")
    reason = reason or status_reason or ""
    ref = _object_ref(kind, name, namespace)
    head = " ".join(p for p in (verb, ref) if p) or "Kubernetes API request"
    msg = "%s failed: %s %s" % (head, status, reason)
    msg = msg.rstrip()
    if api_message:
        msg += ": %s" % api_message
    is_eviction = (kind or "").lower() == "eviction" or (verb or "").upper() == "EVICT"
    if status == 429 and is_eviction:
        cls = K8sEvictionBlocked
        msg += " (a PodDisruptionBudget does not allow this eviction now; retry later or relax the budget)"
    elif status == 404:
        cls = K8sNotFound
    elif status == 409:
        cls = K8sConflict
    else:
        cls = K8sError
    hint = _HINTS.get(status)
    if hint and cls is not K8sEvictionBlocked and (not api_message or status in (401, 403)):
        msg += " (%s)" % hint
    return cls(msg, status=status, reason=reason or None, verb=verb, kind=kind, name=name,
               namespace=namespace, api_message=api_message)


def translate_exception(exc, verb=None, kind=None, name=None, namespace=None):
    """Map any exception from the client library to a ``K8sError`` (pass K8sError through)."""
    if isinstance(exc, K8sError):
        return exc
    status = getattr(exc, "status", None)
    if isinstance(status, int) and status >= 400:
        return error_from_response(status, getattr(exc, "reason", None), getattr(exc, "body", None),
                                   verb, kind, name, namespace)
    ref = _object_ref(kind, name, namespace)
    head = " ".join(p for p in (verb, ref) if p) or "Kubernetes API request"
    text = str(exc).strip() or exc.__class__.__name__
    return K8sError("%s failed: cannot reach the Kubernetes API server (%s: %s)"
                    % (head, exc.__class__.__name__, text[:500]),
                    verb=verb, kind=kind, name=name, namespace=namespace)


# ---------------------------------------------------------------------------------------
# Auth: options, environment fallbacks, digest, cached clients
# ---------------------------------------------------------------------------------------

AUTH_ARG_SPEC = {
    "kubeconfig": {"type": "path"},
    "context": {"type": "str"},
    "host": {"type": "str"},
    "api_key": {"type": "str", "no_log": True},
    "validate_certs": {"type": "bool", "aliases": ["verify_ssl"]},
    "ca_cert": {"type": "path", "aliases": ["ssl_ca_cert"]},
    "client_cert": {"type": "path", "aliases": ["cert_file"]},
    "client_key": {"type": "path", "aliases": ["key_file"], "no_log": False},
}

# The same environment variables kubernetes.core reads, so one exported set serves both.
AUTH_ENV = {
    "kubeconfig": "K8S_AUTH_KUBECONFIG",
    "context": "K8S_AUTH_CONTEXT",
    "host": "K8S_AUTH_HOST",
    "api_key": "K8S_AUTH_API_KEY",
    "validate_certs": "K8S_AUTH_VERIFY_SSL",
    "ca_cert": "K8S_AUTH_SSL_CA_CERT",
    "client_cert": "K8S_AUTH_CERT_FILE",
    "client_key": "K8S_AUTH_KEY_FILE",
}
AUTH_KEYS = tuple(AUTH_ARG_SPEC)
_FILE_KEYS = ("ca_cert", "client_cert", "client_key")


def _env_bool(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on", "y")


def resolve_auth(params=None, environ=None):
    """Auth settings from module params, falling back to environment variables.

    ``KUBECONFIG`` (possibly several paths joined by ``os.pathsep``) is the last fallback for
    the kubeconfig path, as kubectl does. Returns a dict with every key of ``AUTH_KEYS``.
    """
    params = params or {}
    environ = os.environ if environ is None else environ
    auth = {}
    for key in AUTH_KEYS:
        value = params.get(key)
        if value is None:
            env_value = environ.get(AUTH_ENV[key])
            if env_value not in (None, ""):
                value = _env_bool(env_value) if key == "validate_certs" else env_value
        auth[key] = value
    if auth["kubeconfig"] is None and environ.get("KUBECONFIG"):
        auth["kubeconfig"] = environ["KUBECONFIG"]
    return auth


def _kubeconfig_paths(kubeconfig):
    if not kubeconfig:
        return []
    return [os.path.expanduser(p) for p in str(kubeconfig).split(os.pathsep) if p]


def _read_bytes(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return b"<unreadable>"


def auth_digest(auth, read=_read_bytes):
    """sha256 over every auth setting plus the contents of the files they name.

    Hashing file contents (kubeconfig, CA, client cert and key) means a rotated credential
    gets a new client instead of a stale cached one.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps({k: auth.get(k) for k in AUTH_KEYS}, sort_keys=True, default=str).encode())
    paths = _kubeconfig_paths(auth.get("kubeconfig"))
    paths += [os.path.expanduser(auth[k]) for k in _FILE_KEYS if auth.get(k)]
    for path in paths:
        digest.update(b"\0" + path.encode() + b"\0")
        digest.update(read(path))
    return digest.hexdigest()


_CLIENT_POOL = {}


def clear_client_cache():
    _CLIENT_POOL.clear()


def _require_library():
    if not HAS_KUBERNETES:
        raise K8sMissingLibrary(MISSING_LIBRARY_MSG)


def build_configuration(auth):
    """A ``kubernetes.client.Configuration`` from resolved auth settings."""
    _require_library()
    configuration = _k8s_client.Configuration()
    paths = _kubeconfig_paths(auth.get("kubeconfig"))
    explicit = bool(paths)
    if not paths:
        paths = [os.path.expanduser("~/.kube/config")]
    have_kubeconfig = any(os.path.exists(p) for p in paths)
    if explicit and not have_kubeconfig:
        raise K8sConfigError("kubeconfig %r does not exist (from the kubeconfig option, "
                             "K8S_AUTH_KUBECONFIG or KUBECONFIG)" % auth.get("kubeconfig"))
    if have_kubeconfig and not (auth.get("host") and auth.get("api_key") and not explicit):
        try:
            _k8s_config.load_kube_config(config_file=os.pathsep.join(paths), context=auth.get("context"),
                                         client_configuration=configuration, persist_config=False)
        except Exception as exc:  # ConfigException, YAML errors, missing context
            raise K8sConfigError("cannot load kubeconfig %s (context %r): %s"
                                 % (os.pathsep.join(paths), auth.get("context"), exc))
    elif not auth.get("host"):
        try:
            _k8s_config.load_incluster_config(client_configuration=configuration)
        except Exception:
            raise K8sConfigError(
                "no Kubernetes credentials found: set kubeconfig (or K8S_AUTH_KUBECONFIG / KUBECONFIG), "
                "or host and api_key, or run inside a pod with a service account")
    if auth.get("host"):
        configuration.host = auth["host"]
    if auth.get("api_key"):
        token = auth["api_key"]
        if not token.lower().startswith("bearer "):
            token = "Bearer " + token
        configuration.api_key = {"authorization": token}
        configuration.api_key_prefix = {}
    if auth.get("validate_certs") is not None:
        configuration.verify_ssl = bool(auth["validate_certs"])
    if auth.get("ca_cert"):
        configuration.ssl_ca_cert = os.path.expanduser(auth["ca_cert"])
    if auth.get("client_cert"):
        configuration.cert_file = os.path.expanduser(auth["client_cert"])
    if auth.get("client_key"):
        configuration.key_file = os.path.expanduser(auth["client_key"])
    return configuration


def get_api_client(params=None, environ=None, factory=None):
    """The cached ``ApiClient`` for these auth settings (one per digest per process)."""
    auth = resolve_auth(params, environ)
    key = auth_digest(auth)
    cached = _CLIENT_POOL.get(key)
    if cached is not None:
        return cached
    if factory is None:
        _require_library()

        def factory(resolved):
            client = _k8s_client.ApiClient(build_configuration(resolved))
            # Our own user agent: apiserver audit logs then tell this collection's calls apart.
            client.user_agent = USER_AGENT
            return client

    api_client = factory(auth)
    _CLIENT_POOL[key] = api_client
    return api_client


# ---------------------------------------------------------------------------------------
# Pure Kubernetes rules: names, labels, taints, selectors, merge patches
# ---------------------------------------------------------------------------------------

_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUALIFIED_NAME = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
TAINT_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def label_key_error(key):
    """None if ``key`` is a valid label/annotation/taint key, else why not."""
    if not isinstance(key, str) or not key:
        return "must be a non-empty string"
    prefix, sep, name = key.rpartition("/")
    if sep:
        if not prefix or len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix):
            return ("prefix %r must be a DNS subdomain (lowercase letters, digits, '-' and '.', "
                    "at most 253 characters)" % prefix)
    if len(name) > 63 or not _QUALIFIED_NAME.match(name):
        return ("name part %r must be 1-63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit" % name)
    return None


def label_value_error(value):
    """None if ``value`` is a valid label (or taint) value, else why not."""
    if not isinstance(value, str):
        return "must be a string"
    if len(value) > 63 or not _LABEL_VALUE.match(value):
        return ("must be empty or 1-63 characters of letters, digits, '-', '_' or '.', "
                "starting and ending with a letter or digit")
    return None


# An OCI image tag (distribution spec, "Pulling manifests": [a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}).
_IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")


def image_tag_error(tag):
    """None if ``tag`` is a valid image tag, else why not."""
    if not isinstance(tag, str) or not _IMAGE_TAG.match(tag):
        return "must be 1-128 letters, digits, '_', '.' or '-', not starting with '.' or '-'"
    return None


def dns_label_error(name):
    if not isinstance(name, str) or len(name) > 63 or not _DNS1123_LABEL.match(name):
        return "must be 1-63 lowercase letters, digits or '-', starting and ending with a letter or digit"
    return None


_SEL_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_SEL_SET = re.compile(r"^(%s)\s+(in|notin)\s*\((.*)\)$" % _SEL_KEY)
_SEL_EQ = re.compile(r"^(%s)\s*(==|=|!=)\s*(\S*)$" % _SEL_KEY)
_SEL_EXISTS = re.compile(r"^(!?)\s*(%s)$" % _SEL_KEY)


def _split_top_level(text):
    parts, depth, current = [], 0, []
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth < 0:
                raise ValueError("unbalanced ')'")
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if depth:
        raise ValueError("unbalanced '('")
    parts.append("".join(current))
    return parts


def parse_label_selector(selector):
    """Parse a kubectl-style label selector into requirements ``(key, op, values)``.

    Supports ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` and ``!k``;
    ``op`` is one of ``in``, ``notin``, ``exists``, ``!exists``. Raises ValueError.
    """
    if selector is None or not str(selector).strip():
        return []
    requirements = []
    for raw in _split_top_level(str(selector)):
        part = raw.strip()
        if not part:
            raise ValueError("empty requirement in selector %r" % selector)
        match = _SEL_SET.match(part)
        if match:
            key, op, values = match.group(1), match.group(2), match.group(3)
            vals = tuple(v.strip() for v in values.split(","))
            for value in vals:
                if label_value_error(value):
                    raise ValueError("invalid value %r in %r" % (value, part))
            requirements.append((key, op, vals))
        else:
            match = _SEL_EQ.match(part)
            if match:
                key, op, value = match.groups()
                if label_value_error(value):
                    raise ValueError("invalid value %r in %r" % (value, part))
                requirements.append((key, "notin" if op == "!=" else "in", (value,)))
            else:
                match = _SEL_EXISTS.match(part)
                if not match:
                    raise ValueError("cannot parse %r" % part)
                key = match.group(2)
                requirements.append((key, "!exists" if match.group(1) else "exists", ()))
        err = label_key_error(requirements[-1][0])
        if err:
            raise ValueError("invalid key %r in %r: %s" % (requirements[-1][0], part, err))
    return requirements


def selector_matches(requirements, labels):
    """True if ``labels`` satisfy every parsed requirement (Kubernetes semantics)."""
    labels = labels or {}
    for key, op, values in requirements:
        present = key in labels
        if op == "exists" and not present:
            return False
        if op == "!exists" and present:
            return False
        if op == "in" and (not present or labels[key] not in values):
            return False
        if op == "notin" and present and labels[key] in values:
            return False
    return True


def merge_patch(before, after):
    """RFC 7386 JSON merge patch turning ``before`` into ``after`` (None if equal).

    Maps recurse, removed keys become null, lists and scalars are replaced whole.
    """
    if not isinstance(before, dict) or not isinstance(after, dict):
        return None if before == after else after
    patch = {}
    for key in before:
        if key not in after:
            patch[key] = None
    for key, value in after.items():
        if key not in before:
            patch[key] = value
        elif before[key] != value:
            if isinstance(before[key], dict) and isinstance(value, dict):
                sub = merge_patch(before[key], value)
                if sub is not None:
                    patch[key] = sub
            else:
                patch[key] = value
    return patch or None


def with_resource_version(patch, resource_version):
    """Add a resourceVersion precondition: the server answers 409 if the object moved on."""
    patch = dict(patch or {})
    metadata = dict(patch.get("metadata") or {})
    if resource_version:
        metadata["resourceVersion"] = resource_version
    patch["metadata"] = metadata
    return patch


# Paths for kinds we use often, so they need no discovery round-trips.
# (api_version, kind) -> (plural, namespaced)
WELL_KNOWN = {
    ("v1", "Node"): ("nodes", False),
    ("v1", "Namespace"): ("namespaces", False),
    ("v1", "Pod"): ("pods", True),
    ("v1", "Service"): ("services", True),
    ("v1", "ConfigMap"): ("configmaps", True),
    ("v1", "Secret"): ("secrets", True),
    ("v1", "ServiceAccount"): ("serviceaccounts", True),
    ("v1", "PersistentVolumeClaim"): ("persistentvolumeclaims", True),
    ("apps/v1", "DaemonSet"): ("daemonsets", True),
    ("apps/v1", "Deployment"): ("deployments", True),
    ("apps/v1", "StatefulSet"): ("statefulsets", True),
    ("policy/v1", "PodDisruptionBudget"): ("poddisruptionbudgets", True),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"): ("clusterroles", False),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"): ("clusterrolebindings", False),
    ("rbac.authorization.k8s.io/v1", "Role"): ("roles", True),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"): ("rolebindings", True),
    ("scheduling.k8s.io/v1", "PriorityClass"): ("priorityclasses", False),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"): ("customresourcedefinitions", False),
}


def resource_path(api_version, plural, namespaced, name=None, namespace=None):
    base = "/api/%s" % api_version if "/" not in api_version else "/apis/%s" % api_version
    if namespaced and namespace:
        base += "/namespaces/%s" % namespace
    base += "/" + plural
    if name:
        base += "/" + name
    return base


def canonical_taint(taint):
    """(key, value, effect) with an absent value as '' (the API treats both the same)."""
    return (taint.get("key"), taint.get("value") or "", taint.get("effect"))


def format_taint(taint):
    key, value, effect = canonical_taint(taint)
    return "%s=%s:%s" % (key, value, effect) if value else "%s:%s" % (key, effect)


# ---------------------------------------------------------------------------------------
# Waiting
# ---------------------------------------------------------------------------------------


def wait_for(predicate, timeout, interval=2.0, description="condition", clock=time.monotonic,
             sleep=time.sleep, retry_errors=True):
    """Call ``predicate()`` until it returns something truthy or ``timeout`` seconds pass.

    Returns the truthy value. Raises ``K8sWaitTimeout`` (with the last value) on timeout.
    API errors of 5xx or connection failures are retried when ``retry_errors`` is set;
    4xx errors are real answers and propagate.
    """
    deadline = clock() + float(timeout)
    last = None
    while True:
        try:
            last = predicate()
        except K8sError as exc:
            if not retry_errors or (exc.status is not None and exc.status < 500):
                raise
            last = exc
        else:
            if last:
                return last
        remaining = deadline - clock()
        if remaining <= 0:
            detail = "; last error: %s" % last if isinstance(last, K8sError) else ""
            raise K8sWaitTimeout("timed out after %ss waiting for %s%s" % (timeout, description, detail),
                                 last=last)
        sleep(min(float(interval), remaining))


# ---------------------------------------------------------------------------------------
# The adapter
# ---------------------------------------------------------------------------------------


class K8s:
    """Raw-JSON access to the Kubernetes API through one cached ``ApiClient``.

    ``write_count`` counts POST/PUT/PATCH/DELETE requests sent; ``calls`` logs
    ``(verb, path)`` of every request, so callers can prove a rerun wrote nothing.
    """

    def __init__(self, api_client, field_manager=FIELD_MANAGER):
        self.api_client = api_client
        self.field_manager = field_manager
        self.calls = []
        self.write_count = 0
        self._dynamic = None
        # Callers may send requests from a few threads (node_pool's parallel patches).
        self._count_lock = threading.Lock()

    @classmethod
    def from_params(cls, params=None, environ=None, **kwargs):
        return cls(get_api_client(params, environ), **kwargs)

    # -- transport ------------------------------------------------------------------
    def _send(self, method, path, query, headers, body):
        """Send one request; return (status, reason, raw body bytes). Handles both client
        generations: kubernetes >= 35 (``param_serialize``) and the older ``call_api``."""
        api = self.api_client
        if hasattr(api, "param_serialize"):
            request = api.param_serialize(method, path, query_params=query, header_params=headers,
                                          body=body, auth_settings=["BearerToken"])
            response = api.call_api(*request)
            data = response.read()
            return response.status, response.reason, data
        try:  # pragma: no cover - older kubernetes releases
            response = api.call_api(path, method, query_params=query, header_params=headers, body=body,
                                    auth_settings=["BearerToken"], _preload_content=False,
                                    _return_http_data_only=True)
        except Exception as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                return status, getattr(exc, "reason", None), getattr(exc, "body", None)
            raise
        return response.status, response.reason, response.data

    def request(self, method, path, body=None, query=None, content_type=None, kind=None, name=None,
                namespace=None, verb=None):
        """One API request; returns the decoded JSON body (dict) or None for an empty body."""
        method = method.upper()
        headers = {"Accept": "application/json",
                   "Content-Type": content_type or "application/json"}
        with self._count_lock:
            self.calls.append((method, path))
            if method in WRITE_VERBS:
                self.write_count += 1
        verb = verb or method
        try:
            status, reason, data = self._send(method, path, list(query or []), headers, body)
        except Exception as exc:
            raise translate_exception(exc, verb, kind, name, namespace)
        if not 200 <= int(status) <= 299:
            raise error_from_response(int(status), reason, data, verb, kind, name, namespace)
        if not data:
            return None
        if isinstance(data, (bytes, bytearray)):
            data = data.decode("utf-8")
        return json.loads(data) if isinstance(data, str) else data

    # -- generic objects --------------------------------------------------------------
    def _dynamic_client(self):
        if self._dynamic is None:
            _require_library()
            from kubernetes.dynamic import DynamicClient  # discovery only when really needed
            self._dynamic = DynamicClient(self.api_client)
        return self._dynamic

    def resource_info(self, api_version, kind):
        """(plural, namespaced) for a kind: a static table first, discovery otherwise."""
        known = WELL_KNOWN.get((api_version, kind))
        if known:
            return known
        try:
            res = self._dynamic_client().resources.get(api_version=api_version, kind=kind)
        except K8sError:
            raise
        except Exception as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                raise translate_exception(exc, "DISCOVER", kind)
            raise K8sError("the cluster does not serve kind %s in apiVersion %s (is its CRD installed?): %s"
                           % (kind, api_version, exc), kind=kind)
        return res.name, bool(res.namespaced)

    def path_for(self, api_version, kind, name=None, namespace=None):
        plural, namespaced = self.resource_info(api_version, kind)
        if namespaced and not namespace and name:
            raise K8sError("%s '%s' is namespaced: give a namespace" % (kind, name), kind=kind, name=name)
        return resource_path(api_version, plural, namespaced, name, namespace if namespaced else None)

    def get_or_none(self, api_version, kind, name, namespace=None):
        path = self.path_for(api_version, kind, name, namespace)
        try:
            return self.request("GET", path, kind=kind, name=name, namespace=namespace)
        except K8sNotFound:
            return None

    def list(self, api_version, kind, namespace=None, label_selector=None, field_selector=None):
        path = self.path_for(api_version, kind, None, namespace)
        query = []
        if label_selector:
            query.append(("labelSelector", label_selector))
        if field_selector:
            query.append(("fieldSelector", field_selector))
        result = self.request("GET", path, query=query, kind=kind, verb="LIST", namespace=namespace)
        return (result or {}).get("items", [])

    def apply(self, manifest, force=False, dry_run=False):
        """Server-side apply of one manifest with field manager ``gpuops.llm``.

        Server-side apply compares only the fields this manager sets, so server defaults
        never look like drift. ``force`` takes over fields owned by other managers.
        """
        api_version = manifest.get("apiVersion")
        kind = manifest.get("kind")
        meta = manifest.get("metadata") or {}
        name, namespace = meta.get("name"), meta.get("namespace")
        if not api_version or not kind or not name:
            raise K8sError("a manifest needs apiVersion, kind and metadata.name; got apiVersion=%r kind=%r name=%r"
                           % (api_version, kind, name))
        path = self.path_for(api_version, kind, name, namespace)
        query = [("fieldManager", self.field_manager), ("force", "true" if force else "false")]
        if dry_run:
            query.append(("dryRun", "All"))
        return self.request("PATCH", path, body=json.dumps(manifest), query=query,
                            content_type=PATCH_CONTENT_TYPES["apply"], kind=kind, name=name,
                            namespace=namespace, verb="APPLY")

    def patch(self, api_version, kind, name, patch, namespace=None, patch_type="merge"):
        if patch_type not in PATCH_CONTENT_TYPES or patch_type == "apply":
            raise ValueError("patch_type must be merge, strategic or json, not %r" % patch_type)
        path = self.path_for(api_version, kind, name, namespace)
        return self.request("PATCH", path, body=patch, content_type=PATCH_CONTENT_TYPES[patch_type],
                            kind=kind, name=name, namespace=namespace)

    def delete(self, api_version, kind, name, namespace=None, propagation_policy="Background"):
        """Delete; returns False when it was already gone."""
        path = self.path_for(api_version, kind, name, namespace)
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation_policy}
        try:
            self.request("DELETE", path, body=body, kind=kind, name=name, namespace=namespace)
        except K8sNotFound:
            return False
        return True

    # -- nodes ------------------------------------------------------------------------
    def list_nodes(self, label_selector=None):
        """Every Node (one LIST request), as plain dicts."""
        return self.list("v1", "Node", label_selector=label_selector)

    def get_node(self, name):
        return self.get_or_none("v1", "Node", name)

    def patch_node(self, name, patch, patch_type="merge"):
        return self.patch("v1", "Node", name, patch, patch_type=patch_type)

    def patch_node_with_retry(self, name, build_patch, node=None, retries=5, precondition=None):
        """Patch a node with a resourceVersion precondition, re-reading it on 409.

        ``build_patch(node)`` returns the patch for the node as it is now (without
        resourceVersion) or None when nothing needs to change. ``precondition(patch)``
        says whether this patch needs the precondition (default: always); a merge patch
        of single map keys does not, and then cannot conflict with kubelet heartbeats.
        Returns ``(node_after, patches_sent)``.
        """
        attempts = 0
        while True:
            if node is None:
                node = self.get_node(name)
                if node is None:
                    raise K8sNotFound("Node '%s' disappeared while being patched" % name, status=404,
                                      kind="Node", name=name)
            patch = build_patch(node)
            if not patch:
                return node, attempts
            if precondition is None or precondition(patch):
                patch = with_resource_version(patch, (node.get("metadata") or {}).get("resourceVersion"))
            attempts += 1
            try:
                return self.patch_node(name, patch), attempts
            except K8sConflict:
                if attempts > retries:
                    raise
                node = None

    def set_unschedulable(self, name, unschedulable):
        """Cordon (True) or uncordon (False); returns True if the node changed.

        The precondition keeps us from acting on a stale read; a 409 (the node agent or
        kubelet wrote the node meanwhile) re-reads it and tries again.
        """
        def build_patch(node):
            if bool((node.get("spec") or {}).get("unschedulable")) == bool(unschedulable):
                return None
            return {"spec": {"unschedulable": True if unschedulable else None}}

        node = self.get_node(name)
        if node is None:
            raise K8sNotFound("Node '%s' not found" % name, status=404, kind="Node", name=name)
        _after, sent = self.patch_node_with_retry(name, build_patch, node=node)
        return sent > 0

    def cordon(self, name):
        return self.set_unschedulable(name, True)

    def uncordon(self, name):
        return self.set_unschedulable(name, False)

    # -- pods and evictions ---------------------------------------------------------------
    def list_pods_on_node(self, node_name, namespace=None, label_selector=None):
        return self.list("v1", "Pod", namespace=namespace, label_selector=label_selector,
                         field_selector="spec.nodeName=%s" % node_name)

    def evict(self, name, namespace, grace_period_seconds=None, dry_run=False):
        """policy/v1 Eviction of one pod. Returns False if the pod is already gone.

        Raises ``K8sEvictionBlocked`` when a PodDisruptionBudget refuses (HTTP 429).
        """
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace}}
        if grace_period_seconds is not None:
            body["deleteOptions"] = {"gracePeriodSeconds": int(grace_period_seconds)}
        if dry_run:
            body.setdefault("deleteOptions", {})["dryRun"] = ["All"]
        path = resource_path("v1", "pods", True, name, namespace) + "/eviction"
        try:
            self.request("POST", path, body=body, kind="Eviction", name=name, namespace=namespace,
                         verb="EVICT")
        except K8sNotFound:
            return False
        return True
