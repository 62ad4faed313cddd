# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""load_test end to end without a cluster: the locustfile the role puts in its ConfigMap runs for
real, with the Job's own command line and environment, against a simulated streaming engine on
127.0.0.1; its output goes through the role's own parser (tasks/parse.yml, the code path the role
runs on the Job's log). Loopback only, 4 users for 10 s per run."""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import uuid

import pytest
import yaml

from fake_openai_server import FakeOpenAIServer

pytestmark = pytest.mark.integration

ROOT = pathlib.Path(__file__).resolve().parents[2]
BIN = pathlib.Path(sys.executable).parent
FIRST_TOKEN_DELAY = 0.3  # seconds; multiples of 10 ms survive Locust's rounding of response times
TOKEN_DELAY = 0.02
MAX_TOKENS = 16
USERS = 4
DURATION = 10
MODEL = "fake-llm"


def _playbook(tmp_path, tasks, varz):
    """Run tasks on localhost with vars; return the JSON the last task wrote to out.json."""
    out = tmp_path / ("out-%s.json" % uuid.uuid4().hex[:6])
    play = [{"name": "load_test entry points", "hosts": "localhost", "connection": "local", "gather_facts": False,
             "vars": dict(varz, ansible_python_interpreter=str(BIN / "python")),
             "tasks": tasks + [{"name": "Write the result", "ansible.builtin.copy": {
                 "content": "{{ __out | to_json }}", "dest": str(out), "mode": "0600"}}]}]
    path = tmp_path / ("play-%s.yml" % uuid.uuid4().hex[:6])
    path.write_text(yaml.safe_dump(play, sort_keys=False))
    env = dict(os.environ, ANSIBLE_NOCOLOR="1", ANSIBLE_LOCALHOST_WARNING="0", ANSIBLE_DEPRECATION_WARNINGS="0",
               ANSIBLE_INVENTORY_UNPARSED_WARNING="0")
    proc = subprocess.run([str(BIN / "ansible-playbook"), "-i", "localhost,", str(path)], capture_output=True,
                          text=True, env=env, cwd=str(ROOT), timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    return json.loads(out.read_text())


def _role_vars(url):
    return {"load_test_url": url, "load_test_model": MODEL, "load_test_name": "fake", "load_test_namespace": "t",
            "load_test_run_id": "local", "load_test_endpoint": "chat", "load_test_users": USERS,
            "load_test_spawn_rate": USERS, "load_test_duration_seconds": DURATION,
            "load_test_max_tokens": MAX_TOKENS, "load_test_request_timeout_seconds": 30}


def _include(tasks_from):
    return {"name": "Include load_test " + tasks_from,
            "ansible.builtin.include_role": {"name": "gpuops.llm.load_test", "tasks_from": tasks_from}}


@pytest.fixture(scope="module")
def server():
    srv = FakeOpenAIServer(model=MODEL, first_token_delay=FIRST_TOKEN_DELAY, token_delay=TOKEN_DELAY).start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def job(server, tmp_path_factory):
    """The ConfigMap's locustfile and the Job's container, rendered by the role."""
    tmp = tmp_path_factory.mktemp("load-test-render")
    manifests = _playbook(tmp, [_include("render"), {"name": "Keep the manifests", "ansible.builtin.set_fact": {
        "__out": "{{ __load_test_manifests }}"}}], _role_vars(server.url))
    cm = [m for m in manifests if m["kind"] == "ConfigMap"][0]
    container = [m for m in manifests if m["kind"] == "Job"][0]["spec"]["template"]["spec"]["containers"][0]
    return {"locustfile": cm["data"]["locustfile.py"], "container": container}


def _run_job_locally(job, tmp_path, secrets=None):
    """The Job's command with the Job's environment, paths moved from /config and /tmp into tmp_path.
    secretKeyRef entries resolve from `secrets` ({(name, key): value}), as the kubelet would; stdout
    and stderr are merged, as in a pod's log."""
    if not (BIN / "locust").exists() and not shutil.which("locust"):
        pytest.fail("locust is not installed (requirements/test.txt pins it)")
    (tmp_path / "config").mkdir(exist_ok=True)
    (tmp_path / "config" / "locustfile.py").write_text(job["locustfile"])
    c = job["container"]
    script = c["args"][0].replace("/config/", "\0CONFIG").replace("/tmp/", "\0TMP")
    script = script.replace("\0CONFIG", str(tmp_path / "config") + "/").replace("\0TMP", str(tmp_path) + "/")
    env = {}
    for e in c["env"]:
        if "valueFrom" in e:
            ref = e["valueFrom"]["secretKeyRef"]
            env[e["name"]] = (secrets or {})[(ref["name"], ref["key"])]
        else:
            env[e["name"]] = e["value"]
    env.update(HOME=str(tmp_path), PATH=str(BIN) + os.pathsep + os.environ.get("PATH", ""))
    proc = subprocess.run(c["command"] + [script], env=env, cwd=str(tmp_path), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=DURATION + 60, check=False)
    return proc.returncode, proc.stdout


def _parse(tmp_path, log, url):
    """Feed a captured log to the role's parser."""
    return _playbook(tmp_path, [
        {"name": "Fix the run id", "ansible.builtin.set_fact": {"__load_test_run": "local"}},
        _include("parse"),
        {"name": "Keep the report", "ansible.builtin.set_fact": {
            "__out": "{{ {'results': load_test_results, 'csv': load_test_stats_csv} }}"}}],
        dict(_role_vars(url), __load_test_log={"log_lines": log.splitlines()}))


def test_job_command_is_what_the_role_renders(job):
    c = job["container"]
    assert c["command"] == ["/bin/sh", "-c"]
    for flag in ("--headless", "-u \"$USERS\"", "-r \"$SPAWN_RATE\"", "--run-time \"${DURATION}s\"",
                 "-f /config/locustfile.py"):
        assert flag in c["args"][0], flag
    env = {e["name"]: e["value"] for e in c["env"]}
    assert (env["USERS"], env["DURATION"], env["LLM_ENDPOINT"]) == (str(USERS), str(DURATION), "chat")


def test_locust_against_a_streaming_engine(server, job, tmp_path):
    server.fail_every = 0
    before = dict(server.counts)
    rc, log = _run_job_locally(job, tmp_path)
    assert rc == 0, log[-3000:]
    assert "GPUOPS_LOAD_TEST_RESULT" in log, log[-3000:]
    served = server.counts["generate"] - before["generate"]
    assert served > 0, "locust sent no request"

    report = _parse(tmp_path, log, server.url)
    r = report["results"]
    assert r["failures"] == 0 and r["failure_ratio"] == 0
    # Locust counts only the requests that completed before the stop; the engine saw them all.
    assert 0 < r["requests"] <= served
    first_ms = FIRST_TOKEN_DELAY * 1000
    full_ms = (FIRST_TOKEN_DELAY + (MAX_TOKENS - 1) * TOKEN_DELAY) * 1000
    assert r["ttft_p50_ms"] >= first_ms and r["ttft_p95_ms"] >= r["ttft_p50_ms"]
    assert r["latency_p50_ms"] >= full_ms and r["latency_p95_ms"] >= r["latency_p50_ms"]
    assert r["ttft_p50_ms"] < r["latency_p50_ms"]
    # Loopback adds little: the medians stay within 2x the simulated delays.
    assert r["ttft_p50_ms"] < 2 * first_ms and r["latency_p50_ms"] < 2 * full_ms
    # Tokens come from the usage chunk: max_tokens per completed request.
    assert r["output_tokens"] == r["requests"] * MAX_TOKENS
    ceiling = USERS * MAX_TOKENS / (full_ms / 1000.0)  # every user always mid-request
    assert 0 < r["output_tokens_per_second"] <= ceiling * 1.1, (r["output_tokens_per_second"], ceiling)
    assert 0 < r["duration_seconds"] <= DURATION + 2
    assert r["endpoint"] == "/v1/chat/completions" and r["stream"] is True and r["model"] == MODEL
    assert r["url"] == server.url and r["users"] == USERS
    # Locust's own CSV rows came through the Job's `cat` into the log, and the parser kept them.
    assert any(row.startswith("Type,Name") for row in report["csv"])
    assert any(row.startswith("TTFT,") for row in report["csv"])


def test_locust_reports_engine_failures(server, job, tmp_path):
    server.fail_every = 3  # every third generation request is an HTTP 500
    try:
        rc, log = _run_job_locally(job, tmp_path)
    finally:
        server.fail_every = 0
    # --exit-code-on-error 0: failures are results, the Job still succeeds.
    assert rc == 0, log[-3000:]
    r = _parse(tmp_path, log, server.url)["results"]
    assert r["failures"] > 0
    assert abs(r["failure_ratio"] - 1 / 3.0) < 0.1, r
    # failed requests carry no tokens
    assert r["output_tokens"] == (r["requests"] - r["failures"]) * MAX_TOKENS


def test_locust_sends_the_api_key_from_the_secret(server, tmp_path):
    """A model with api_key_secret: vLLM answers 401 on /v1/* without the Bearer key. The rendered
    Job reads the key from the Secret (secretKeyRef, resolved here as the kubelet would) and every
    request passes; the same Job with a wrong key fails every request."""
    key = "sk-LOCUSTTESTKEY0123456789"
    manifests = _playbook(tmp_path, [_include("render"), {"name": "Keep the manifests", "ansible.builtin.set_fact": {
        "__out": "{{ __load_test_manifests }}"}}],
        dict(_role_vars(server.url), load_test_api_key_secret="llm-api-key", load_test_duration_seconds=4))
    assert key not in json.dumps(manifests)
    cm = [m for m in manifests if m["kind"] == "ConfigMap"][0]
    container = [m for m in manifests if m["kind"] == "Job"][0]["spec"]["template"]["spec"]["containers"][0]
    keyed = {"locustfile": cm["data"]["locustfile.py"], "container": container}
    server.api_key, server.fail_every = key, 0
    try:
        before = server.counts.get("unauthorized", 0)
        rc, log = _run_job_locally(keyed, tmp_path, {("llm-api-key", "api-key"): key})
        assert rc == 0, log[-3000:]
        r = _parse(tmp_path, log, server.url)["results"]
        assert r["requests"] > 0 and r["failures"] == 0, r
        assert server.counts.get("unauthorized", 0) == before
        rc, log = _run_job_locally(keyed, tmp_path, {("llm-api-key", "api-key"): "wrong"})
        assert rc == 0, log[-3000:]
        r = _parse(tmp_path, log, server.url)["results"]
        assert r["requests"] > 0 and r["failures"] == r["requests"], r
        assert server.counts["unauthorized"] > before
    finally:
        server.api_key = ""
