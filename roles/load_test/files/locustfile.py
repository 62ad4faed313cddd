# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Locust load test for an OpenAI-compatible LLM server (vLLM), used by gpuops.llm.load_test.

Settings come from the environment: LLM_MODEL, LLM_ENDPOINT (completions or chat), LLM_STREAM,
LLM_MAX_TOKENS, LLM_PROMPTS (JSON list), LLM_TIMEOUT, and LLM_API_KEY (sent as a Bearer token when
set: vLLM's --api-key guards /v1/*). With streaming, the time to the first
token is recorded as its own request type, TTFT, and a request's latency runs to its last
token. Output tokens come from the server's usage (stream_options.include_usage), falling back
to one token per streamed chunk. When the test stops, one line "GPUOPS_LOAD_TEST_RESULT {json}"
sums it up for the role to parse.
"""
from __future__ import annotations

import json
import os
import random
import time

from locust import HttpUser, events, task

RESULT_TAG = "GPUOPS_LOAD_TEST_RESULT"
MODEL = os.environ.get("LLM_MODEL", "")
ENDPOINT = os.environ.get("LLM_ENDPOINT", "completions")
STREAM = os.environ.get("LLM_STREAM", "true").lower() == "true"
MAX_TOKENS = int(os.environ.get("LLM_MAX_TOKENS", "128"))
PROMPTS = json.loads(os.environ.get("LLM_PROMPTS", '["Hello"]'))
TIMEOUT = float(os.environ.get("LLM_TIMEOUT", "120"))
PATH = "/v1/chat/completions" if ENDPOINT == "chat" else "/v1/completions"
API_KEY = os.environ.get("LLM_API_KEY", "")
HEADERS = {"Authorization": "Bearer " + API_KEY} if API_KEY else {}

OUTPUT_TOKENS = {"count": 0}
TIMES = {"first": None, "last": None}


def request_body(prompt):
    body = {"model": MODEL, "max_tokens": MAX_TOKENS, "stream": STREAM}
    if ENDPOINT == "chat":
        body["messages"] = [{"role": "user", "content": prompt}]
    else:
        body["prompt"] = prompt
    if STREAM:
        body["stream_options"] = {"include_usage": True}
    return body


def chunk_text(chunk):
    """The generated text in one response or stream chunk."""
    parts = []
    for choice in chunk.get("choices") or []:
        if "text" in choice:
            parts.append(choice.get("text") or "")
        delta = choice.get("delta") or choice.get("message") or {}
        parts.append(delta.get("content") or "")
    return "".join(parts)


def parse_stream(lines):
    """Yield the JSON chunks of an SSE stream until [DONE]."""
    for raw in lines:
        if not raw:
            continue
        line = raw.decode("utf-8") if isinstance(raw, bytes) else raw
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            return
        yield json.loads(data)


class LLMUser(HttpUser):
    @task
    def generate(self):
        prompt = random.choice(PROMPTS)
        start = time.perf_counter()
        TIMES["first"] = TIMES["first"] or time.time()
        with self.client.post(PATH, json=request_body(prompt), stream=STREAM, timeout=TIMEOUT,
                              headers=HEADERS, name=PATH, catch_response=True) as resp:
            if resp.status_code != 200:
                resp.failure("HTTP %s: %s" % (resp.status_code, (resp.text or "")[:200]))
                return
            tokens, chunks, first = None, 0, None
            try:
                if STREAM:
                    for chunk in parse_stream(resp.iter_lines()):
                        if chunk_text(chunk):
                            chunks += 1
                            if first is None:
                                first = time.perf_counter()
                        if chunk.get("usage"):
                            tokens = chunk["usage"].get("completion_tokens")
                else:
                    body = resp.json()
                    chunks = 1 if chunk_text(body) else 0
                    tokens = (body.get("usage") or {}).get("completion_tokens")
            except (ValueError, KeyError) as exc:
                resp.failure("bad response: %s" % exc)
                return
            # With stream=True the client returns at the response headers, so Locust's own
            # response_time would be the time to headers; report the full generation instead.
            resp.request_meta["response_time"] = (time.perf_counter() - start) * 1000.0
            if not chunks:
                resp.failure("no tokens generated")
                return
            resp.success()
        OUTPUT_TOKENS["count"] += tokens if tokens is not None else chunks
        TIMES["last"] = time.time()
        if STREAM and first is not None:
            events.request.fire(request_type="TTFT", name=PATH, response_time=(first - start) * 1000.0,
                                response_length=0, exception=None, context={})


def summarize(stats):
    """The report: latency and TTFT percentiles (ms), requests, failures, output tokens/s."""
    def entry(name, method):
        e = stats.entries.get((name, method))
        if e is None or e.num_requests == 0:
            return None
        return {"requests": e.num_requests, "failures": e.num_failures,
                "p50_ms": e.get_response_time_percentile(0.5), "p95_ms": e.get_response_time_percentile(0.95),
                "avg_ms": round(e.avg_response_time, 1)}

    latency = entry(PATH, "POST") or {"requests": 0, "failures": 0, "p50_ms": None, "p95_ms": None, "avg_ms": None}
    ttft = entry(PATH, "TTFT")
    elapsed = (TIMES["last"] - TIMES["first"]) if TIMES["first"] and TIMES["last"] else 0.0
    requests = latency["requests"]
    failures = stats.total.num_failures
    return {
        "endpoint": PATH, "model": MODEL, "stream": STREAM,
        "requests": requests, "failures": failures,
        "failure_ratio": round(failures / float(requests), 4) if requests else None,
        "latency_p50_ms": latency["p50_ms"], "latency_p95_ms": latency["p95_ms"], "latency_avg_ms": latency["avg_ms"],
        "ttft_p50_ms": ttft["p50_ms"] if ttft else None, "ttft_p95_ms": ttft["p95_ms"] if ttft else None,
        "output_tokens": OUTPUT_TOKENS["count"],
        "output_tokens_per_second": round(OUTPUT_TOKENS["count"] / elapsed, 2) if elapsed > 0 else None,
        "duration_seconds": round(elapsed, 1),
    }


@events.quitting.add_listener
def _report(environment, **_kwargs):
    print("%s %s" % (RESULT_TAG, json.dumps(summarize(environment.stats), sort_keys=True)), flush=True)
