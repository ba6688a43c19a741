"""Sandbox probes: model-written code that attacks the host is contained by the real bubblewrap
sandbox, gets a verdict, and the batch goes on; the host and the DuckDB file are untouched."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import threading
import time

import polars as pl
import pytest

from r1_assets.config import VerificationConfig
from r1_assets.config import StorageConfig
from r1_assets.storage import Lineage, Store
from r1_assets.verification import (
    UNSANDBOXED_WARNING,
    Sample,
    verification_warnings,
    verify_samples,
)
from r1_assets.verification.code import SandboxLimits, SandboxUnavailable, verify_batch
from tests.code_support import as_answer

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

LIMITS = SandboxLimits(wall_timeout_s=8, cpu_s=5)
GOOD = (as_answer("def add(a, b):\n    return a + b"), json.dumps(["assert add(2, 3) == 5"]))


def _sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _sandbox_processes() -> int:
    out = subprocess.run(["ps", "-eo", "uid="], capture_output=True, text=True, check=True).stdout.split()
    return sum(61000 <= int(u) < 63000 for u in out)


@pytest.fixture
def listener():
    """A loopback TCP server that records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                accepted.append(1)
                conn.close()
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


def test_probes_are_contained_and_the_batch_continues(r1_home, tmp_path, listener):
    port, accepted = listener
    # A DuckDB file the probes try to read and corrupt (the lake's catalog and data are files too).
    store = Store(r1_home, storage=StorageConfig(backend="duckdb"))
    store.replace_partition("clean_problems", pl.DataFrame({
        "problem_id": ["p"], "source": ["s"], "source_row": [0], "problem": ["q"], "answer": ["1"],
        "run_id": ["seed"]}), where=None, lineage=Lineage(run_id="seed"))
    db = r1_home / "r1.duckdb"
    before = _sha(db)
    outside = tmp_path / "written-by-the-sandbox"
    host_tmp_marker = f"/tmp/r1-probe-{os.getpid()}"
    probes = {
        "socket": f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=3)",
        "write_outside_tmp": f"open({str(outside)!r}, 'w').write('x')",
        "write_host_tmp": f"open({host_tmp_marker!r}, 'w').write('x')\nimport os\nassert os.path.exists({host_tmp_marker!r})\nraise SystemExit(7)",
        "read_r1_home": f"import os\nprint(os.listdir({str(r1_home)!r}))",
        "read_duckdb": f"open({str(db)!r}, 'rb').read(16)",
        "write_duckdb": f"open({str(db)!r}, 'ab').write(b'corrupt')",
        "fork_bomb": "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
        "alloc_4gib": "block = bytearray(4 << 30)\nblock[-1] = 1",
        "infinite_loop": "while True:\n    pass",
        "kill_parent": "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nos.kill(-1, signal.SIGKILL)",
    }
    # Each probe "passes" only if its attack worked: its test is a trivial assert after it.
    pairs = []
    for code in probes.values():
        pairs += [(as_answer(code), json.dumps(["assert True"])), GOOD]
    started = time.monotonic()
    results = verify_batch(pairs, limits=LIMITS, workers=2)
    elapsed = time.monotonic() - started
    verdicts = {name: results[2 * i] for i, name in enumerate(probes)}
    # Every sandbox after a probe still verifies a good solution: the batch continues.
    assert [r.verdict for r in results[1::2]] == ["correct"] * len(probes)
    for name in ("socket", "write_outside_tmp", "read_r1_home", "read_duckdb", "write_duckdb", "alloc_4gib"):
        assert verdicts[name].verdict == "wrong", (name, verdicts[name])
    # Its own empty network namespace: the host's loopback listener is not there.
    assert "ConnectionRefusedError" in verdicts["socket"].detail or "unreachable" in verdicts["socket"].detail
    assert "MemoryError" in verdicts["alloc_4gib"].detail
    assert "No such file or directory" in verdicts["read_duckdb"].detail
    # The private /tmp is writable inside (the probe got as far as its own exit) and gone after.
    assert verdicts["write_host_tmp"].verdict == "wrong" and "7" in verdicts["write_host_tmp"].detail
    assert not os.path.exists(host_tmp_marker)
    assert verdicts["infinite_loop"].verdict == "timeout"
    assert verdicts["fork_bomb"].verdict in {"timeout", "error", "wrong"} and verdicts["fork_bomb"].correct is not True
    # Killing "the parent" inside the PID namespace cannot reach the verifier; the sample is
    # whatever its own process got to (it may die with its namespace).
    assert verdicts["kill_parent"].verdict in {"correct", "wrong", "error"}
    assert accepted == [] and not outside.exists()
    assert _sha(db) == before and store.count("clean_problems") == 1
    deadline = time.monotonic() + 10
    while _sandbox_processes() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _sandbox_processes() == 0  # nothing of the fork bomb survives its sandbox
    assert elapsed < 120


def test_without_bubblewrap_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        verify_batch([GOOD], limits=LIMITS, workers=1)


def test_sandbox_none_is_explicit_and_warned():
    vcfg = VerificationConfig(workers=1, code={"sandbox": "none"})
    [result] = verify_samples([Sample("code", GOOD[0], "p", 0, tests=GOOD[1])], vcfg, lenient=False)
    assert result.verdict == "correct" and result.method == "unsandboxed_tests"
    assert result.verifier == "code@1 unsandboxed"
    assert verification_warnings(["math", "code"], vcfg) == [UNSANDBOXED_WARNING]
    assert verification_warnings(["code"], VerificationConfig()) == []
