"""A loopback server that answers like DeepSeek's API for failure injection (`deepseek-reasoner`).

The chain of thought comes back in ``message.reasoning_content`` (or ``reasoning``, as newer
vLLM names it), the answer in ``content``, and ``usage`` carries
``completion_tokens_details.reasoning_tokens`` and ``prompt_tokens_details.cached_tokens``.
It solves ``a + b`` / ``a - b`` / ``a * b`` prompts: the model named ``wrong_model`` answers off
by one (a weak pass-rate model), every other model correctly. Failure injection:

- ``first_status``: the first request of every sample (model, prompt, seed) gets this status (429/503) with
  ``Retry-After: retry_after`` (seconds, or ``"date"`` for an HTTP date ``retry_after_date_s``
  ahead); every request's arrival time is recorded per sample in ``arrivals``;
- ``plan``: modes for the next calls (``malformed`` = a 200 whose body is not JSON,
  ``reasoning_only`` = content null and finish_reason length, ``reasoning_field`` = the
  reasoning in ``reasoning`` instead of ``reasoning_content``, ``both_fields``), then ``mode``.
"""

from __future__ import annotations

import email.utils
import json
import re
import threading
import time
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

_EXPR = re.compile(r"(-?\d+)\s*([+*-])\s*(-?\d+)")


def solve(prompt: str) -> tuple[int, str] | None:
    m = _EXPR.search(prompt)
    if not m:
        return None
    a, op, b = int(m[1]), m[2], int(m[3])
    value = {"+": a + b, "-": a - b, "*": a * b}[op]
    return value, f"{a} {op} {b}"


def reply_parts(prompt: str, model: str, wrong_model: str | None) -> tuple[str, str]:
    """(reasoning, answer) the server gives for ``prompt``."""
    solved = solve(prompt)
    if solved is None:
        return "I cannot find an expression here.", "I do not know."
    value, expr = solved
    if model == wrong_model:
        value += 1
    reasoning = f"We need {expr}.\nComputing step by step: {expr} = {value}.\nLet me double-check: yes, {value}."
    return reasoning, f"The answer is $\\boxed{{{value}}}$."


def n_tokens(text: str) -> int:
    return max(1, len(text) // 4)


class LoopbackHTTPServer(ThreadingHTTPServer):
    request_queue_size = 256  # the default 5 drops connections when many clients connect at once


class DeepSeekServer:
    def __init__(self, wrong_model: str | None = None, first_status: int | None = None,
                 retry_after: str | None = None, retry_after_date_s: float = 2.0, cached_tokens: int = 4):
        self.wrong_model = wrong_model
        self.first_status = first_status
        self.retry_after = retry_after
        self.retry_after_date_s = retry_after_date_s
        self.cached_tokens = cached_tokens
        self.mode = "ok"
        self.plan: list[str] = []
        self.calls = 0
        self.arrivals: dict[tuple[str, str, int | None], list[tuple[float, int]]] = defaultdict(list)
        self.replies: dict[tuple[str, str, int | None], dict] = {}  # the last 200 body per (model, prompt, seed)
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                prompt = body["messages"][-1]["content"]
                key = (body["model"], prompt, body.get("seed"))
                now = time.monotonic()
                with server.lock:
                    server.calls += 1
                    first = not server.arrivals[key]
                    refuse = first and server.first_status is not None
                    mode = "refuse" if refuse else (server.plan.pop(0) if server.plan else server.mode)
                    server.arrivals[key].append((now, server.first_status if refuse else 200))
                if mode == "refuse":
                    headers = {}
                    if server.retry_after == "date":
                        when = time.time() + server.retry_after_date_s
                        headers["Retry-After"] = email.utils.formatdate(when, usegmt=True)
                    elif server.retry_after is not None:
                        headers["Retry-After"] = server.retry_after
                    self._send(server.first_status, b'{"error": {"message": "rate limited"}}', headers)
                    return
                if mode == "malformed":
                    self._send(200, b'{"choices": [{"message": ')
                    return
                reasoning, answer = reply_parts(prompt, body["model"], server.wrong_model)
                message: dict = {"role": "assistant", "content": answer}
                finish = "stop"
                if mode == "reasoning_only":
                    message["content"], finish = None, "length"
                if mode in ("reasoning_field", "both_fields"):
                    message["reasoning"] = reasoning
                if mode != "reasoning_field":
                    message["reasoning_content"] = reasoning
                completion = n_tokens(reasoning) + (n_tokens(message["content"]) if message["content"] else 0)
                data = {
                    "id": f"chatcmpl-{server.calls}", "object": "chat.completion", "model": body["model"],
                    "choices": [{"index": 0, "message": message, "finish_reason": finish}],
                    "usage": {
                        "prompt_tokens": n_tokens(prompt), "completion_tokens": completion,
                        "total_tokens": n_tokens(prompt) + completion,
                        "prompt_tokens_details": {"cached_tokens": min(server.cached_tokens, n_tokens(prompt))},
                        "completion_tokens_details": {"reasoning_tokens": n_tokens(reasoning)},
                    },
                }
                with server.lock:
                    server.replies[key] = data
                self._send(200, json.dumps(data).encode())

        self.httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def retry_gaps(self) -> list[float]:
        """Seconds between each refused first request and the retry that followed it."""
        return [times[1][0] - times[0][0] for times in self.arrivals.values() if len(times) > 1 and times[0][1] != 200]
