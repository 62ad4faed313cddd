# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The testbed's refusals: what a real node would refuse and kwok, which runs no containers, ignores.

Generated from testbed/cluster.yml (which runtime is containerd's default on each node) and
testbed/images.yml (which users each image defines) as ValidatingAdmissionPolicies with their
bindings (admissionregistration.k8s.io/v1, GA since Kubernetes 1.30). `testbed.py up` installs them
when cluster.yml says `refuse: true` and removes them otherwise; `testbed.py refuse on|off` switches
a running testbed. The node agent reads the same switch (the binding's presence) for its own refusal.

Rules (upstream sources in docs/conformance.md#testbed):
  gpu-runtime          a pod that needs NVML (requests nvidia.com/gpu or nvidia.com/mig-*, or is a
                       device plugin / GFD / MPS daemon / DCGM exporter pod) never becomes Running on
                       a node whose containerd default runtime is runc unless it names a RuntimeClass;
  gpu-runtime-handler  ... and that RuntimeClass's handler is nvidia;
  image-users          a container may only run as a uid its image defines (images.yml), and the
                       kubelet's runAsNonRoot checks hold (pod CREATE is refused).
Images that images.yml does not list are not judged on users.
"""
from __future__ import annotations

import json
import pathlib

import yaml

HERE = pathlib.Path(__file__).resolve().parent

# Testbed-only: on a real node nothing publishes containerd's default runtime on the Node object.
RUNTIME_ANNOTATION = "gpuops.llm/testbed-default-runtime"
RUNTIMES = ("runc", "nvidia")
DEFAULT_RUNTIME = "runc"  # stock containerd; nvidia-ctk runtime configure leaves it unless --set-as-default
NVIDIA_HANDLER = "nvidia"
MANAGED_BY = {"app.kubernetes.io/managed-by": "gpuops-testbed"}

GPU_RUNTIME = "gpuops-testbed-gpu-runtime"
GPU_RUNTIME_HANDLER = "gpuops-testbed-gpu-runtime-handler"
IMAGE_USERS = "gpuops-testbed-image-users"
POLICY_NAMES = (GPU_RUNTIME, GPU_RUNTIME_HANDLER, IMAGE_USERS)

# Pods that call NVML at start without requesting a GPU (they see all GPUs through the runtime):
# app.kubernetes.io/name of the roles' DaemonSets, and app=<DaemonSet> of a GPU Operator's operands.
NVML_APP_NAMES = ("nvidia-device-plugin", "gpu-feature-discovery", "nvidia-device-plugin-mps-control-daemon",
                  "dcgm-exporter")
NVML_OPERATOR_APPS = ("nvidia-device-plugin-daemonset", "gpu-feature-discovery", "nvidia-dcgm-exporter",
                      "nvidia-device-plugin-mps-control-daemon")

IMAGE_KEYS = {"repository": str, "tags": list, "default_uid": int, "users": dict, "source": str}
IMAGE_OPTIONAL = {"any_uid": bool, "unconfirmed": str, "user": str, "nvml": bool}


# ---- inputs ----------------------------------------------------------------------------------

def load_images(path: pathlib.Path | None = None) -> list[dict]:
    """images.yml's entries, checked against its schema; errors name the entry and the field."""
    with open(path or HERE / "images.yml", encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    images = doc.get("images")
    if not isinstance(images, list):
        raise ValueError("images.yml: `images` must be a list of entries")
    seen = set()
    for i, e in enumerate(images):
        where = "images.yml images[%d] (%s)" % (i, e.get("repository", "?") if isinstance(e, dict) else "?")
        if not isinstance(e, dict):
            raise ValueError(where + ": an entry must be a mapping")
        for key, typ in IMAGE_KEYS.items():
            if key not in e:
                raise ValueError("%s: missing required key %s" % (where, key))
            if not isinstance(e[key], typ) or (typ is int and isinstance(e[key], bool)):
                raise ValueError("%s: %s must be a %s, got %r" % (where, key, typ.__name__, e[key]))
        for key in e:
            if key not in IMAGE_KEYS and key not in IMAGE_OPTIONAL:
                raise ValueError("%s: unknown key %s; valid: %s" % (where, key, ", ".join([*IMAGE_KEYS, *IMAGE_OPTIONAL])))
            if key in IMAGE_OPTIONAL and not isinstance(e[key], IMAGE_OPTIONAL[key]):
                raise ValueError("%s: %s must be a %s, got %r" % (where, key, IMAGE_OPTIONAL[key].__name__, e[key]))
        if ":" in e["repository"].rsplit("/", 1)[-1] or "@" in e["repository"]:
            raise ValueError("%s: repository %r must not carry a tag or digest (tags go in `tags`)" % (where, e["repository"]))
        for name, u in e["users"].items():
            if not isinstance(u, dict) or not isinstance(u.get("uid"), int) or not isinstance(u.get("gid"), int):
                raise ValueError("%s: users.%s must be {uid: N, gid: N}, got %r" % (where, name, u))
        if e["default_uid"] not in {u["uid"] for u in e["users"].values()}:
            raise ValueError("%s: default_uid %d is not one of its users' uids" % (where, e["default_uid"]))
        if e["repository"] in seen:
            raise ValueError("%s: repository listed twice; keep one entry per repository" % where)
        seen.add(e["repository"])
    return images


def node_runtime(node: dict) -> str:
    """containerd's default runtime on a cluster.yml node (runc unless the node says otherwise)."""
    rt = node.get("default_runtime", DEFAULT_RUNTIME)
    if rt not in RUNTIMES:
        raise ValueError("cluster.yml node %s: default_runtime %r; valid: %s" % (node.get("name"), rt, ", ".join(RUNTIMES)))
    return rt


def nvidia_default_nodes(spec: dict) -> list[str]:
    return sorted(n["name"] for n in spec.get("nodes", []) if node_runtime(n) == "nvidia")


def refusing(spec: dict) -> bool:
    value = spec.get("refuse", False)
    if not isinstance(value, bool):
        raise ValueError("cluster.yml: refuse must be true or false, got %r" % (value,))
    return value


# ---- CEL pieces ------------------------------------------------------------------------------

def _cel(value) -> str:
    """A CEL literal (JSON strings, lists and numbers are CEL literals too)."""
    return json.dumps(value)


def repository_aliases(repository: str) -> list[str]:
    """How a pod may spell the repository: Docker Hub images also without docker.io/ (and library/)."""
    out = [repository]
    if repository.startswith("docker.io/"):
        short = repository[len("docker.io/"):]
        out += [short, "index.docker.io/" + short]
        if short.startswith("library/"):
            out.append(short[len("library/"):])
    return out


def image_matches(var: str, repository: str) -> str:
    parts = []
    for r in repository_aliases(repository):
        parts += ["%s.image == %s" % (var, _cel(r)), "%s.image.startsWith(%s)" % (var, _cel(r + ":")),
                  "%s.image.startsWith(%s)" % (var, _cel(r + "@"))]
    return "(" + " || ".join(parts) + ")"


CONTAINERS = "object.spec.containers + (has(object.spec.initContainers) ? object.spec.initContainers : [])"
POD_UID_SET = "has(object.spec.securityContext) && has(object.spec.securityContext.runAsUser)"
POD_NON_ROOT = ("has(object.spec.securityContext) && has(object.spec.securityContext.runAsNonRoot) && "
                "object.spec.securityContext.runAsNonRoot")


def _uid_set(c: str) -> str:
    return "((has(%s.securityContext) && has(%s.securityContext.runAsUser)) || variables.podUidSet)" % (c, c)


def _uid(c: str, default_uid: int) -> str:
    """The uid the kubelet runs the container as: container securityContext, then pod, then the image's."""
    return ("(has(%s.securityContext) && has(%s.securityContext.runAsUser) ? %s.securityContext.runAsUser : "
            "(variables.podUidSet ? object.spec.securityContext.runAsUser : %d))" % (c, c, c, default_uid))


def _non_root(c: str) -> str:
    return ("(has(%s.securityContext) && has(%s.securityContext.runAsNonRoot) ? %s.securityContext.runAsNonRoot : "
            "variables.podNonRoot)" % (c, c, c))


def _requests_gpu(c: str) -> str:
    def has_gpu(field):
        return ("(has(%s.resources.%s) && %s.resources.%s.exists(k, k == 'nvidia.com/gpu' || "
                "k.startsWith('nvidia.com/mig-')))" % (c, field, c, field))
    return "(has(%s.resources) && (%s || %s))" % (c, has_gpu("limits"), has_gpu("requests"))


def needs_nvml(images: list[dict]) -> str:
    """CEL: the pod calls NVML (requests a GPU, is one of the NVIDIA DaemonSets, or runs an NVML image)."""
    nvml_images = [e["repository"] for e in images if e.get("nvml")]
    parts = [
        "(%s).exists(c, %s)" % (CONTAINERS, _requests_gpu("c")),
        "(has(object.metadata.labels) && 'app.kubernetes.io/name' in object.metadata.labels && "
        "object.metadata.labels['app.kubernetes.io/name'] in %s)" % _cel(list(NVML_APP_NAMES)),
        "(has(object.metadata.labels) && 'app' in object.metadata.labels && "
        "object.metadata.labels['app'] in %s)" % _cel(list(NVML_OPERATOR_APPS)),
    ]
    if nvml_images:
        parts.append("(%s).exists(c, %s)" % (CONTAINERS, " || ".join(image_matches("c", r) for r in nvml_images)))
    return " || ".join(parts)


# ---- policies --------------------------------------------------------------------------------

def _policy(name: str, spec: dict) -> dict:
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": name, "labels": dict(MANAGED_BY)}, "spec": spec}


def _binding(name: str, param_ref: dict | None = None) -> dict:
    spec = {"policyName": name, "validationActions": ["Deny"]}
    if param_ref:
        spec["paramRef"] = param_ref
    return {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
            "metadata": {"name": name, "labels": dict(MANAGED_BY)}, "spec": spec}


def _gpu_match(spec: dict, images: list[dict]) -> tuple[dict, list[dict]]:
    # Why the pods/status update that makes the pod Running, and not pod CREATE, pods/binding or a
    # kwok Stage: at CREATE a pod's node is unknown (DaemonSet and Deployment pods are bound later
    # by the scheduler); an admission check on pods/binding sees only the Binding, not the pod; a
    # custom Stage replaces all of kwok's default pod stages and its jq selectors can't read
    # resource names with dots and slashes robustly. kwok's pod-ready stage sets phase Running
    # and Ready in one patch of pods/status with the full pod (nodeName included) as the object;
    # refusing it leaves the pod Pending and not Ready, like a container that never starts. kwok
    # v0.8.0 retries a failed stage only for connection/timeout/429/503 errors (pkg/kwok/controllers/
    # pod_controller.go playStage, utils.go shouldRetry), so a refused pod costs no CPU until it changes.
    match = {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"],
                                "resources": ["pods/status"]}]}
    # Nodes not in cluster.yml (added by the autoscaler) are stock nodes: runc is the default.
    conditions = [
        {"name": "becomes-running",
         "expression": "has(object.status.phase) && object.status.phase == 'Running' && "
                       "!(has(oldObject.status.phase) && oldObject.status.phase == 'Running')"},
        {"name": "on-a-runc-default-node",
         "expression": "has(object.spec.nodeName) && !(object.spec.nodeName in %s)" % _cel(nvidia_default_nodes(spec))},
        {"name": "needs-nvml", "expression": needs_nvml(images)},
    ]
    return match, conditions


def gpu_runtime_policy(spec: dict, images: list[dict]) -> list[dict]:
    match, conditions = _gpu_match(spec, images)
    policy = _policy(GPU_RUNTIME, {
        "failurePolicy": "Fail",
        "matchConstraints": match,
        "matchConditions": conditions,
        "validations": [{
            "expression": "has(object.spec.runtimeClassName) && object.spec.runtimeClassName != ''",
            "reason": "Forbidden",
            "messageExpression": (
                "'testbed refusal: pod ' + object.metadata.namespace + '/' + object.metadata.name + "
                "' needs NVML (a GPU resource or an NVIDIA DaemonSet) but sets no runtimeClassName, and node ' + "
                "object.spec.nodeName + ' runs containerd with runc as its default runtime: the container would "
                "get no NVIDIA driver libraries or devices. Set runtimeClassName to a RuntimeClass whose handler "
                "is nvidia (roles/nvidia_container_toolkit creates `nvidia`).'"),
        }],
    })
    return [policy, _binding(GPU_RUNTIME)]


def gpu_runtime_handler_policy(spec: dict, images: list[dict]) -> list[dict]:
    match, conditions = _gpu_match(spec, images)
    conditions = conditions + [{"name": "names-a-runtime-class",
                                "expression": "has(object.spec.runtimeClassName) && object.spec.runtimeClassName != ''"}]
    # Each RuntimeClass is a param and the results are ANDed: only the one the pod names can fail.
    # A pod naming a RuntimeClass that does not exist is refused at CREATE by the apiserver's own
    # RuntimeClass admission plugin, so no params (no RuntimeClass at all) means allow.
    policy = _policy(GPU_RUNTIME_HANDLER, {
        "failurePolicy": "Fail",
        "paramKind": {"apiVersion": "node.k8s.io/v1", "kind": "RuntimeClass"},
        "matchConstraints": match,
        "matchConditions": conditions,
        "validations": [{
            "expression": "object.spec.runtimeClassName != params.metadata.name || params.handler == %s" % _cel(NVIDIA_HANDLER),
            "reason": "Forbidden",
            "messageExpression": (
                "'testbed refusal: pod ' + object.metadata.namespace + '/' + object.metadata.name + "
                "' needs NVML but its RuntimeClass ' + params.metadata.name + ' has handler ' + params.handler + "
                "', and node ' + object.spec.nodeName + ' runs containerd with runc as its default runtime: use a "
                "RuntimeClass whose handler is nvidia.'"),
        }],
    })
    return [policy, _binding(GPU_RUNTIME_HANDLER, {"selector": {}, "parameterNotFoundAction": "Allow"})]


def image_user_policy(images: list[dict]) -> list[dict]:
    """Pod CREATE: each container of a listed image runs as a uid the image defines; the kubelet's
    runAsNonRoot checks (verifyRunAsNonRoot) hold for every container."""
    validations = [{
        # kubelet: "container's runAsUser breaks non-root policy" (any image).
        "expression": "variables.containers.all(c, !(%s) || !(%s) || %s != 0)" % (
            _non_root("c"), _uid_set("c"), _uid("c", -1)),
        "reason": "Forbidden",
        "messageExpression": (
            "'testbed refusal: container(s) ' + variables.containers.filter(c, %s && %s && %s == 0)"
            ".map(c, c.name).join(', ') + ' set runAsNonRoot and runAsUser 0; the kubelet refuses to start "
            "them (CreateContainerConfigError).'" % (_non_root("c"), _uid_set("c"), _uid("c", -1))),
    }]
    for e in images:
        repo = e["repository"]
        match = image_matches("c", repo)
        users = ", ".join("%s=%d" % (n, u["uid"]) for n, u in sorted(e["users"].items(), key=lambda kv: kv[1]["uid"]))
        if not e.get("any_uid"):
            uids = sorted({u["uid"] for u in e["users"].values()})
            bad = "%s && %s && !(%s in %s)" % (match, _uid_set("c"), _uid("c", e["default_uid"]), _cel(uids))
            validations.append({
                "expression": "!variables.containers.exists(c, %s)" % bad,
                "reason": "Forbidden",
                "messageExpression": (
                    "'testbed refusal: ' + variables.containers.filter(c, %s).map(c, 'container ' + c.name + "
                    "' runs as uid ' + string(%s)).join(', ') + ', a user image %s does not define (its users: %s; "
                    "testbed/images.yml). A numeric uid missing from /etc/passwd starts, then getpwuid() fails "
                    "(torch: KeyError getpwuid(): uid not found). Run as one of its users.'"
                    % (bad, _uid("c", e["default_uid"]), repo, users)),
            })
        # kubelet verifyRunAsNonRoot without runAsUser: it reads the image's USER.
        user = str(e.get("user", "")).split(":", maxsplit=1)[0]
        if user in ("", "0", "root") or e["default_uid"] == 0:
            why = "its image %s runs as root (no USER or USER root)" % repo
        elif not user.isdigit():
            why = "its image %s has the non-numeric USER %s, which the kubelet cannot verify is non-root" % (repo, user)
        else:
            why = None
        non_root = ", ".join("%s=%d" % (n, u["uid"]) for n, u in sorted(e["users"].items(), key=lambda kv: kv[1]["uid"])
                             if u["uid"] != 0) or "(none: the image defines no non-root user)"
        if why:
            bad = "%s && %s && !%s" % (match, _non_root("c"), _uid_set("c"))
            validations.append({
                "expression": "!variables.containers.exists(c, %s)" % bad,
                "reason": "Forbidden",
                "messageExpression": (
                    "'testbed refusal: container(s) ' + variables.containers.filter(c, %s).map(c, c.name).join(', ') + "
                    "' set runAsNonRoot without runAsUser and %s: the kubelet refuses to start them "
                    "(CreateContainerConfigError). Set runAsUser to one of: %s.'" % (bad, why, non_root)),
            })
    policy = _policy(IMAGE_USERS, {
        "failurePolicy": "Fail",
        "matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                                                "resources": ["pods"]}]},
        "variables": [
            {"name": "containers", "expression": CONTAINERS},
            {"name": "podUidSet", "expression": POD_UID_SET},
            {"name": "podNonRoot", "expression": POD_NON_ROOT},
        ],
        "validations": validations,
    })
    return [policy, _binding(IMAGE_USERS)]


def objects(spec: dict, images: list[dict]) -> list[dict]:
    """Every policy and binding the testbed installs, in apply order (a policy before its binding)."""
    return [*gpu_runtime_policy(spec, images), *gpu_runtime_handler_policy(spec, images), *image_user_policy(images)]


# ---- the cluster -----------------------------------------------------------------------------

FIELD_MANAGER = "gpuops-testbed"


def _resources(api_client):
    from kubernetes.dynamic import DynamicClient
    dc = DynamicClient(api_client)
    return {kind: dc.resources.get(api_version="admissionregistration.k8s.io/v1", kind=kind)
            for kind in ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")}


def install(api_client, spec: dict, images: list[dict]) -> list[str]:
    """Server-side apply every policy and binding; returns their names."""
    res = _resources(api_client)
    for obj in objects(spec, images):
        res[obj["kind"]].server_side_apply(body=obj, name=obj["metadata"]["name"], field_manager=FIELD_MANAGER,
                                           force_conflicts=True)
    return list(POLICY_NAMES)


def remove(api_client) -> None:
    from kubernetes.dynamic.exceptions import NotFoundError
    res = _resources(api_client)
    for kind in ("ValidatingAdmissionPolicyBinding", "ValidatingAdmissionPolicy"):
        for name in POLICY_NAMES:
            try:
                res[kind].delete(name=name)
            except NotFoundError:
                pass


def active(api_client) -> bool:
    """Whether the testbed refuses now (the GPU runtime binding exists): the node agent's switch."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    try:
        client.AdmissionregistrationV1Api(api_client).read_validating_admission_policy_binding(GPU_RUNTIME)
        return True
    except ApiException as e:
        if e.status == 404:
            return False
        raise


def wait_enforced(api_client, images: list[dict] | None = None, timeout: float = 30.0) -> None:
    """Wait until the apiserver has compiled each policy (its observed generation, with no
    type-checking warnings that would make it fail) and, given the image facts, refuses a probe."""
    import time
    from kubernetes import client
    api = client.AdmissionregistrationV1Api(api_client)
    end = time.monotonic() + timeout
    while True:
        pending = []
        for name in POLICY_NAMES:
            p = api.read_validating_admission_policy(name)
            st = p.status
            if not st or st.observed_generation != p.metadata.generation:
                pending.append(name)
            elif st.type_checking and st.type_checking.expression_warnings:
                raise RuntimeError("testbed policy %s: %s" % (name, [w.warning for w in st.type_checking.expression_warnings]))
        if not pending and (images is None or _probe_refused(api_client, images)):
            return
        if time.monotonic() > end:
            raise RuntimeError("testbed policies not enforced after %ss: %s" % (timeout, pending or "dry-run probe admitted"))
        time.sleep(0.5)


def _probe_refused(api_client, images: list[dict]) -> bool:
    """Whether the apiserver's admission plugin already enforces the policies: a compiled policy is
    enforced only once the plugin's informers have its binding too. A server-side dry-run CREATE of a
    pod running an image as a uid it lacks goes through admission and persists nothing."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    image = next((e for e in images if not e.get("any_uid")), None)
    if image is None:
        return True
    uid = max(u["uid"] for u in image["users"].values()) + 4242  # a uid the image defines no user for
    pod = {"metadata": {"name": "gpuops-testbed-policy-probe"},
           "spec": {"securityContext": {"runAsUser": uid, "runAsGroup": uid},
                    "containers": [{"name": "probe", "image": "%s:%s" % (image["repository"], image["tags"][0])}]}}
    try:
        client.CoreV1Api(api_client).create_namespaced_pod("default", pod, dry_run="All")
    except ApiException as e:
        return e.status in (403, 422)
    return False
