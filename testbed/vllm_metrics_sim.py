# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A stand-in for vLLM's /metrics endpoint, so a real Prometheus (and KEDA behind it) sees a queue.

GET /metrics serves Prometheus text format with vLLM's gauge names (shared/facts/llm-serving.md
part B: vllm:num_requests_waiting is the queue depth, vllm:num_requests_running the batch,
vllm:kv_cache_usage_perc the KV cache use from 0 to 1), one series per model, labelled model_name.

Drive it with PUT or POST /state and a JSON body {"<model_name>": {"waiting": 12, "running": 3,
"kv_cache": 0.4}} (missing fields keep their value; a new model starts at zero); GET /state
returns the current values. Only the standard library is used.

A key may also name one pod's series: {"<key>": {"waiting": 3, "labels": {"model_name": "...",
"namespace": "llm-serving", "pod": "llm-6d5f7c9b8-x7k2p"}}}. The labels are the ones a PodMonitor
scrape attaches to a vLLM pod's series (prometheus-operator pkg/prometheus/promcfg.go: namespace,
pod, container); scrape with honor_labels so Prometheus keeps them. model_name defaults to the key.

Usage: python3 testbed/vllm_metrics_sim.py --port 18000 --model meta-llama/Llama-3.1-8B-Instruct
"""
from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# metric name -> (state field, HELP text)
GAUGES = {
    "vllm:num_requests_waiting": ("waiting", "Number of requests waiting to be processed."),
    "vllm:num_requests_running": ("running", "Number of requests in model execution batches."),
    "vllm:kv_cache_usage_perc": ("kv_cache", "KV-cache usage. 1 means 100 percent usage."),
}
FIELDS = tuple(field for field, _help in GAUGES.values())


def _label_value(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


class MetricsState:
    """Gauge values per model, shared by the request threads."""

    def __init__(self, models=()):
        self._lock = threading.Lock()
        self._models = {}
        for model in models:
            self._models[model] = dict.fromkeys(FIELDS, 0.0)

    def update(self, changes: dict) -> dict:
        """Validate all of `changes` first, then apply; raises ValueError naming the bad entry."""
        if not isinstance(changes, dict):
            raise ValueError("the body must be a JSON object {model_name: {field: number}}")
        for model, values in changes.items():
            if not isinstance(values, dict):
                raise ValueError("%s: expected an object with fields %s" % (model, ", ".join(FIELDS)))
            for field, value in values.items():
                if field == "labels":
                    if not isinstance(value, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                              for k, v in value.items()):
                        raise ValueError("%s.labels: expected an object of label name to string" % model)
                    continue
                if field not in FIELDS:
                    raise ValueError("%s: unknown field %r, valid: %s" % (model, field, ", ".join(FIELDS)))
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                    raise ValueError("%s.%s: %r is not a number >= 0" % (model, field, value))
        with self._lock:
            for model, values in changes.items():
                current = self._models.setdefault(model, dict.fromkeys(FIELDS, 0.0))
                current.update({k: (dict(v) if k == "labels" else float(v)) for k, v in values.items()})
            return self.snapshot_locked()

    def snapshot_locked(self) -> dict:
        return {m: {k: (dict(x) if isinstance(x, dict) else x) for k, x in v.items()}
                for m, v in self._models.items()}

    def snapshot(self) -> dict:
        with self._lock:
            return self.snapshot_locked()

    def render(self) -> str:
        models = self.snapshot()
        lines = []
        for name, (field, help_text) in GAUGES.items():
            lines.append("# HELP %s %s" % (name, help_text))
            lines.append("# TYPE %s gauge" % name)
            for model in sorted(models):
                labels = dict({"model_name": model}, **models[model].get("labels", {}))
                text = ",".join('%s="%s"' % (k, _label_value(v)) for k, v in sorted(labels.items()))
                lines.append('%s{%s} %s' % (name, text, repr(models[model][field])))
        return "\n".join(lines) + "\n"


def make_handler(state: MetricsState):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code: int, body: str, ctype: str = "application/json"):
            data = body.encode("utf-8")
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, state.render(), "text/plain; version=0.0.4; charset=utf-8")
            elif path == "/state":
                self._send(200, json.dumps(state.snapshot()))
            elif path == "/health":
                self._send(200, "{}")
            else:
                self._send(404, json.dumps({"error": "unknown path %s" % path}))

        def do_PUT(self):
            if self.path.split("?", 1)[0] != "/state":
                self._send(404, json.dumps({"error": "PUT/POST only to /state"}))
                return
            length = int(self.headers.get("Content-Length") or 0)
            try:
                changes = json.loads(self.rfile.read(length) or b"{}")
                self._send(200, json.dumps(state.update(changes)))
            except ValueError as exc:
                self._send(400, json.dumps({"error": str(exc)}))

        do_POST = do_PUT

        def log_message(self, *args):  # Prometheus scrapes every second: the log would be noise
            pass

    return Handler


def serve(port: int, models=(), host: str = "127.0.0.1") -> ThreadingHTTPServer:
    """A server bound to host:port (0 picks a free port); call serve_forever() on it."""
    return ThreadingHTTPServer((host, port), make_handler(MetricsState(models)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--model", action="append", default=[], help="a model_name to serve from the start")
    args = parser.parse_args(argv)
    server = serve(args.port, args.model, args.host)
    print("vllm metrics simulator on http://%s:%d/metrics" % server.server_address[:2], flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
