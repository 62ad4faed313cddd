"""The testbed fixture: one private, fresh control plane per test session."""
from __future__ import annotations

import contextlib
import json
import os
import pathlib
import sys
import time

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "testbed"))

import playlog  # noqa: E402
import testbed as tb_mod  # noqa: E402

# Components whose own writes (heartbeats, bindings, status) are not ours to count.
SYSTEM_AGENTS = ("kwok", "kube-controller-manager", "kube-scheduler", "kube-apiserver")


class TestbedHandle:
    __test__ = False  # a helper, not a test class, when test modules import it

    def __init__(self, tb: tb_mod.Testbed):
        self.tb = tb
        self.kubeconfig = str(tb.kubeconfig)
        self.api = tb.api_client()
        self.nvml_dir = tb.nvml_dir
        self.home = tb.home

    def audit_marker(self) -> int:
        """A position in the apiserver audit log; pass it to audit_writes."""
        time.sleep(0.2)  # let in-flight requests finish being logged
        p = self.tb.audit_log
        return p.stat().st_size if p.exists() else 0

    def audit_writes(self, since: int, include_system: bool = False) -> list[dict]:
        """Write requests (create/update/patch/delete) logged since the marker."""
        time.sleep(0.2)
        out = []
        for i, line in enumerate(self._audit_lines(since)):
            try:
                ev = json.loads(line)
            except json.JSONDecodeError:
                if i == 0:
                    continue  # the marker fell inside an event being written: it belongs before the marker
                raise
            agent = ev.get("userAgent", "")
            if not include_system and agent.startswith(SYSTEM_AGENTS):
                continue
            if "dryRun=" in ev.get("requestURI", ""):
                continue  # a server-side dry run (check mode) is logged with its verb but persists nothing
            ref = ev.get("objectRef", {})
            out.append({"verb": ev["verb"], "resource": ref.get("resource"), "subresource": ref.get("subresource"),
                        "namespace": ref.get("namespace"), "name": ref.get("name"), "user_agent": agent,
                        "code": ev.get("responseStatus", {}).get("code")})
        return out

    def _audit_lines(self, since: int, timeout: float = 10.0) -> list[bytes]:
        """The audit log's whole lines from `since`; the apiserver writes an event in more than one
        write, so a last line without its newline is read again until it is complete."""
        deadline = time.time() + timeout
        while True:
            with open(self.tb.audit_log, "rb") as f:
                f.seek(since)
                data = f.read()
            if data.endswith(b"\n") or not data or time.time() > deadline:
                return data.splitlines()
            time.sleep(0.1)

    def env(self) -> dict:
        env = self.tb.env()
        env["K8S_AUTH_KUBECONFIG"] = self.kubeconfig
        return env


@pytest.fixture(scope="session")
def testbed(tmp_path_factory):
    """A private testbed of the integration tier, fresh each session: never the default one that
    `make run` rehearses on, whose deployed models and MIG layouts are not the tests' to assume.
    GPUOPS_TEST_TESTBED_HOME names its home (a tmp directory by default); GPUOPS_TESTBED_KEEP=1
    leaves it running afterwards."""
    import yaml

    home = pathlib.Path(os.environ.get("GPUOPS_TEST_TESTBED_HOME") or tmp_path_factory.mktemp("testbed"))
    if home.resolve() == tb_mod.home().resolve():
        pytest.exit("GPUOPS_TEST_TESTBED_HOME must not be the default testbed's home %s" % home, returncode=2)
    home.mkdir(parents=True, exist_ok=True)
    spec = tb_mod.load_spec()
    spec["cluster_name"] = "gpuops-it"
    spec_path = home / "cluster.yml"
    spec_path.write_text(yaml.safe_dump(spec))
    tb = tb_mod.Testbed(spec_path, home_dir=home)
    tb.down()  # whatever an interrupted session left in this home
    tb.up()
    yield TestbedHandle(tb)
    if os.environ.get("GPUOPS_TESTBED_KEEP") != "1":
        tb.down()


def wait_for(predicate, timeout: float = 60, interval: float = 0.5, what: str = "condition"):
    """Poll until predicate() returns a truthy value; fail the test with `what` on timeout."""
    end = time.monotonic() + timeout
    last = None
    while time.monotonic() < end:
        last = predicate()
        if last:
            return last
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@contextlib.contextmanager
def crd_absent(testbed: TestbedHandle, name: str, timeout: float = 120):
    """A test's own precondition "CRD ``name`` is not installed", whatever earlier tests installed:
    the CRD is deleted for the duration (with every object of its kind) and put back as it was."""
    from kubernetes import client
    from kubernetes.client.rest import ApiException

    ext = client.ApiextensionsV1Api(testbed.api)

    def read():
        try:
            return ext.read_custom_resource_definition(name)
        except ApiException as e:
            if e.status != 404:
                raise
            return None

    def established():
        crd = read()
        return crd is not None and any(c.type == "Established" and c.status == "True"
                                       for c in (crd.status.conditions or []))

    saved = read()
    if saved is not None:
        ext.delete_custom_resource_definition(name)
        wait_for(lambda: read() is None, timeout, what="CRD %s deleted" % name)
    try:
        yield
    finally:
        if saved is not None:
            body = testbed.api.sanitize_for_serialization(saved)
            meta = body["metadata"]
            body["metadata"] = {k: meta[k] for k in ("name", "labels", "annotations") if meta.get(k)}
            body.pop("status", None)
            ext.create_custom_resource_definition(body)
            wait_for(established, timeout, what="CRD %s established again" % name)


def run_playbook(testbed: TestbedHandle, playbook, *args: str, check: bool = False, timeout: int = 600):
    """ansible-playbook -i inventories/testbed; returns (rc, stdout, recap {host: {ok, changed, failed...}})."""
    import subprocess

    env = testbed.env()
    env["ANSIBLE_COLLECTIONS_PATH"] = os.environ.get("ANSIBLE_COLLECTIONS_PATH", "")
    env["ANSIBLE_ROLES_PATH"] = str(ROOT / "roles")
    env["ANSIBLE_NOCOLOR"] = "1"
    env["ANSIBLE_FORCE_COLOR"] = "0"
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", str(ROOT / "inventories" / "testbed"),
           str(playbook), *args] + (["--check"] if check else [])
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False, cwd=str(ROOT))
    return proc.returncode, proc.stdout + proc.stderr, playlog.recap(proc.stdout)


def run_play_json(testbed: TestbedHandle, tmp_path, playbook_text: str, extra: dict, check: bool = False):
    """Run a playbook given as text on localhost with the JSON callback; returns (rc, parsed output)."""
    import subprocess

    play = tmp_path / "play.yml"
    play.write_text(playbook_text)
    env = testbed.env()
    env.update(ANSIBLE_STDOUT_CALLBACK="ansible.builtin.json", ANSIBLE_LOCAL_TEMP=str(tmp_path / "tmp"))
    cmd = [str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", str(play),
           "-e", json.dumps(extra)] + (["--check"] if check else [])
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300, check=False)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        pytest.fail("ansible-playbook printed no JSON: %s %s" % (proc.stdout[-2000:], proc.stderr[-2000:]))
    return proc.returncode, data


@pytest.fixture(scope="session")
def nvidia_runtime_class(testbed):
    """RuntimeClass nvidia (handler nvidia), as week 1's nvidia_container_toolkit creates it (or a GPU
    Operator does). A test's own GPU pods name it: the testbed refuses (cluster.yml `refuse`) a GPU pod
    without it on a node whose containerd default is runc, as a real node would, and the apiserver's
    RuntimeClass admission rejects a pod naming a class that is missing. Created when absent, never
    deleted (other modules of the session may use it)."""
    from kubernetes import client

    try:
        client.NodeV1Api(testbed.api).create_runtime_class({"metadata": {"name": "nvidia"}, "handler": "nvidia"})
    except client.exceptions.ApiException as e:
        if e.status != 409:
            raise
    return "nvidia"


@pytest.fixture(scope="module")
def gpu_plugins(testbed):
    """Device plugin + GFD stand-ins running, so the node agent advertises GPUs."""
    import yaml
    from kubernetes import client, utils

    with open(pathlib.Path(__file__).parent / "manifests" / "device-plugin-standin.yml", encoding="utf-8") as f:
        docs = yaml.safe_load(f)["items"]
    for d in docs:
        try:
            utils.create_from_dict(testbed.api, d)
        except utils.FailToCreateError as e:
            if not all(x.status == 409 for x in e.api_exceptions):
                raise
    v1 = client.CoreV1Api(testbed.api)
    # Every whole-GPU node of cluster.yml (MIG nodes advertise only the instances they have).
    want = {n["name"]: str(n["gpu_count"]) for n in testbed.tb.spec["nodes"] if n.get("gpu_count") and not n.get("mig_enabled")}

    def missing():
        have = {n.metadata.name: (n.status.allocatable or {}).get("nvidia.com/gpu") for n in v1.list_node().items}
        return sorted(name for name, count in want.items() if have.get(name) != count)
    wait_for(lambda: not missing(), timeout=120, what="every whole-GPU node to advertise its nvidia.com/gpu")
    yield
    v1.delete_namespace("testbed-gpu-standin")
    # The next module may create the stand-ins again: not into a namespace still terminating.
    wait_for(lambda: not [n for n in v1.list_namespace().items if n.metadata.name == "testbed-gpu-standin"],
             timeout=120, what="namespace testbed-gpu-standin gone")
