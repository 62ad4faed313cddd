# -*- coding: utf-8 -*-
# Copyright (c) 2026 gpuops.llm contributors
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A simulated OpenAI-compatible LLM engine for tests, standard library only.

It answers /health, /v1/models, /v1/completions and /v1/chat/completions like vLLM does: with
"stream": true as server-sent events (one "data: {json}" chunk per token, a final usage chunk
when stream_options.include_usage is set, then "data: [DONE]") over chunked transfer encoding.
The first token comes after `first_token_delay` seconds and each further token after
`token_delay`, so a client's TTFT and latency have known lower bounds. `fail_every` = N makes
every Nth generation request an HTTP 500. `api_key` set makes /v1/* answer 401 without
"Authorization: Bearer <key>" while /health stays open, as vLLM's --api-key does. Bound to
127.0.0.1 on a free port.
"""
from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeOpenAIServer:
    def __init__(self, model="fake-model", first_token_delay=0.3, token_delay=0.02, max_tokens_cap=64):
        self.model = model
        self.first_token_delay = first_token_delay
        self.token_delay = token_delay
        self.max_tokens_cap = max_tokens_cap
        self.fail_every = 0
        self.api_key = ""
        self._lock = threading.Lock()
        self.counts = {"generate": 0, "failed": 0, "tokens": 0}
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = None

    @property
    def port(self):
        return self._httpd.server_address[1]

    @property
    def url(self):
        return "http://127.0.0.1:%d" % self.port

    def start(self):
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def next_request_fails(self):
        """Count a generation request; True when this one must fail."""
        with self._lock:
            self.counts["generate"] += 1
            fail = bool(self.fail_every) and self.counts["generate"] % self.fail_every == 0
            if fail:
                self.counts["failed"] += 1
            return fail

    def add_tokens(self, n):
        with self._lock:
            self.counts["tokens"] += n

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # keep the test output clean
                return

            def _json(self, code, body):
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _chunk(self, payload):
                data = ("data: %s\n\n" % payload).encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
                self.wfile.flush()

            def _unauthorized(self):
                """vLLM's middleware: /v1 needs the Bearer key when one is configured."""
                if server.api_key and self.path.startswith("/v1") and \
                        self.headers.get("Authorization") != "Bearer " + server.api_key:
                    with server._lock:
                        server.counts["unauthorized"] = server.counts.get("unauthorized", 0) + 1
                    self._json(401, {"error": "Unauthorized"})
                    return True
                return False

            def do_GET(self):
                if self._unauthorized():
                    return
                if self.path == "/health":
                    self.send_response(200)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                elif self.path == "/v1/models":
                    self._json(200, {"object": "list", "data": [{"id": server.model, "object": "model",
                                                                 "owned_by": "fake"}]})
                else:
                    self._json(404, {"error": {"message": "not found: %s" % self.path}})

            def do_POST(self):
                length = int(self.headers.get("Content-Length") or 0)
                if self._unauthorized():
                    self.rfile.read(length)
                    return
                try:
                    body = json.loads(self.rfile.read(length) or b"{}")
                except ValueError:
                    self._json(400, {"error": {"message": "body is not JSON"}})
                    return
                chat = self.path == "/v1/chat/completions"
                if self.path not in ("/v1/completions", "/v1/chat/completions"):
                    self._json(404, {"error": {"message": "not found: %s" % self.path}})
                    return
                if body.get("model") != server.model:
                    self._json(404, {"error": {"message": "model %r does not exist" % body.get("model")}})
                    return
                if server.next_request_fails():
                    self._json(500, {"error": {"message": "simulated engine failure"}})
                    return
                n = max(1, min(int(body.get("max_tokens") or 16), server.max_tokens_cap))
                kind = "chat.completion" if chat else "text_completion"
                usage = {"prompt_tokens": 8, "completion_tokens": n, "total_tokens": 8 + n}

                def choice(text, last):
                    reason = "length" if last else None
                    if chat:
                        return {"index": 0, "delta": {"content": text}, "finish_reason": reason}
                    return {"index": 0, "text": text, "finish_reason": reason}

                if not body.get("stream"):
                    time.sleep(server.first_token_delay + (n - 1) * server.token_delay)
                    text = " tok" * n
                    c = ({"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length"}
                         if chat else {"index": 0, "text": text, "finish_reason": "length"})
                    server.add_tokens(n)
                    self._json(200, {"id": "fake", "object": kind, "model": server.model, "choices": [c], "usage": usage})
                    return
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Transfer-Encoding", "chunked")
                self.end_headers()
                try:
                    for i in range(n):
                        time.sleep(server.first_token_delay if i == 0 else server.token_delay)
                        self._chunk(json.dumps({"id": "fake", "object": kind + ".chunk", "model": server.model,
                                                "choices": [choice(" tok", i == n - 1)]}))
                    if (body.get("stream_options") or {}).get("include_usage"):
                        self._chunk(json.dumps({"id": "fake", "object": kind + ".chunk", "model": server.model,
                                                "choices": [], "usage": usage}))
                    self._chunk("[DONE]")
                    self.wfile.write(b"0\r\n\r\n")
                    self.wfile.flush()
                    server.add_tokens(n)
                except (BrokenPipeError, ConnectionResetError):
                    # the client stopped (Locust interrupts users at the end of the run)
                    self.close_connection = True

        return Handler
