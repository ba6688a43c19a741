"""Reliability with real components: concurrent runs, malformed inputs, full disk, read-only R1_HOME.

Every Dagster run here is a real ``dagster asset materialize`` subprocess on a real DuckDB
file. The disk tests mount a small tmpfs as R1_HOME (root only; they skip elsewhere), so the
disk really fills up and the filesystem really turns read-only.
"""

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from dagster_project.pools import ensure_pools
from r1_assets.config import load_config
from r1_assets.engines import generation_id, params_hash
from r1_assets.storage import Store
from r1_assets.text import problem_id
from tests.paths import REPO_ROOT, open_data

RUN_ID = re.compile(r"- ([0-9a-f-]{36}) - .*RUN_SUCCESS")


def _materialize(select: str, partition: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project.definitions",
           "--select", select, "--partition", partition]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)


def _finish(proc: subprocess.Popen, timeout: float = 300) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # never leave a run behind
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"run still going after {timeout}s:\n{out[-4000:]}") from None
    return proc.returncode, out


def _write_jsonl(path: Path, rows: int, tag: str) -> Path:
    with path.open("w") as fh:
        for i in range(rows):
            fh.write(json.dumps({"problem": f"[{tag}] What is {i} plus {i * 7 + 3}?", "answer": str(i + i * 7 + 3)}) + "\n")
    return path


def _step_window(instance: dg.DagsterInstance, run_id: str) -> tuple[float, float]:
    records = instance.all_logs(run_id, of_type={dg.DagsterEventType.STEP_START, dg.DagsterEventType.STEP_SUCCESS})
    start = min(r.timestamp for r in records if r.dagster_event.event_type == dg.DagsterEventType.STEP_START)
    end = max(r.timestamp for r in records if r.dagster_event.event_type == dg.DagsterEventType.STEP_SUCCESS)
    return start, end


def test_two_runs_of_different_partitions_at_once_both_succeed_one_writer_at_a_time(tmp_path, r1_home, write_config):
    # Big enough that each step takes seconds, so the two runs would overlap without the pool.
    write_config({"sources": [
        {"name": "left", "kind": "file", "path": str(_write_jsonl(tmp_path / "left.jsonl", 60_000, "left"))},
        {"name": "right", "kind": "file", "path": str(_write_jsonl(tmp_path / "right.jsonl", 60_000, "right"))},
    ]})
    with dg.DagsterInstance.get() as instance:
        # What `make dagster-home` does: the pools exist before any run claims them.
        assert ensure_pools(instance) == {"duckdb_writer": 1, "gpu": 1}
    left, right = _materialize("raw_problems", "left"), _materialize("raw_problems", "right")
    (rc_left, out_left), (rc_right, out_right) = _finish(left), _finish(right)
    assert rc_left == 0 and RUN_ID.search(out_left), out_left[-4000:]
    assert rc_right == 0 and RUN_ID.search(out_right), out_right[-4000:]
    run_left, run_right = RUN_ID.search(out_left).group(1), RUN_ID.search(out_right).group(1)

    with open_data(r1_home) as con:
        counts = dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY source").fetchall())
        assert counts == {"left": 60_000, "right": 60_000}
        lineage = dict(con.execute("SELECT partition, run_id FROM lineage WHERE table_name = 'raw_problems'").fetchall())
        assert lineage == {"source=left": run_left, "source=right": run_right}
    # The duckdb_writer pool let one writing step run at a time: the step windows do not overlap.
    with dg.DagsterInstance.get() as instance:
        (a_start, a_end), (b_start, b_end) = sorted([_step_window(instance, run_left), _step_window(instance, run_right)])
    assert a_end <= b_start, f"writer steps overlapped: {a_start}-{a_end} and {b_start}-{b_end}"
    assert "blocked by limit for pool duckdb_writer" in out_left + out_right


def test_malformed_rows_are_rejected_with_reasons_and_the_run_continues(tmp_path, r1_home, write_config, dagster_materialize):
    rows = [
        b'{"problem": "What is 1+1?", "answer": "2"}',                 # 0 kept
        b'{"problem": "What is 2+2?", "answer": ',                      # 1 broken JSON line
        b'{"problem": "caf\xe9 \xff", "answer": "1"}',                  # 2 invalid UTF-8
        b'[1, 2, 3]',                                                   # 3 not an object
        b'{"problem": ["a", "list"], "answer": "1"}',                   # 4 wrong type (problem)
        b'{"problem": "What is 3+3?", "answer": {"value": 6}}',         # 5 wrong type (answer)
        b'{"problem": "What is 4+4?", "answer": true}',                 # 6 wrong type (bool answer)
        b'{"problem": " \\n\\t  ", "answer": "1"}',                     # 7 empty text
        json.dumps({"problem": "x" * 1_000_000, "answer": "1"}).encode(),  # 8 huge text (1 MB)
        b'{"problem": null, "answer": "1"}',                            # 9 null problem
        b'{"problem": "What is 5+5?", "answer": ""}',                   # 10 empty answer
        b'{"problem": "What is 6+6?"}',                                 # 11 no answer field
        b'{"problem": "Evaluate $\\\\left( \\\\frac{1}{ $$ \\\\right", "answer": 12}',  # 12 kept: odd LaTeX is text
        b'{"problem": "What is 7+7?", "answer": 14.0}',                 # 13 kept: numeric answer
    ]
    path = tmp_path / "malformed.jsonl"
    path.write_bytes(b"\n".join(rows) + b"\n")
    write_config({"sources": [{"name": "malformed", "kind": "file", "path": str(path)}]})
    dagster_materialize("raw_problems", partition="malformed")

    with open_data(r1_home) as con:
        kept = con.execute("SELECT source_row, answer FROM raw_problems ORDER BY source_row").fetchall()
        rejected = dict(con.execute(
            "SELECT source_row, reason FROM rejected_rows WHERE source = 'malformed' AND stage = 'raw_problems'"
        ).fetchall())
        details = con.execute("SELECT count(*) FROM rejected_rows WHERE detail IS NULL OR detail = ''").fetchone()[0]
        lineage = con.execute("SELECT row_count FROM lineage WHERE partition = 'source=malformed'").fetchall()
    assert kept == [(0, "2"), (12, "12"), (13, "14")]
    assert rejected == {
        1: "invalid_json", 2: "invalid_utf8", 3: "not_an_object", 4: "non_text_problem",
        5: "non_text_answer", 6: "non_text_answer", 7: "empty_problem", 8: "oversized_problem",
        9: "missing_problem", 10: "missing_answer", 11: "missing_answer",
    }
    assert details <= 1  # only empty_problem has nothing more to say; every other reason has a detail
    assert lineage == [(3,)]


# -- full disk and read-only R1_HOME ---------------------------------------------------------
class _Tmpfs:
    def __init__(self, path: Path):
        self.path = path

    def remount(self, options: str) -> None:
        subprocess.run(["mount", "-o", f"remount,{options}", str(self.path)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """A 3 MiB tmpfs as R1_HOME (DAGSTER_HOME stays on the normal disk)."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {proc.stderr.strip()}")
    dagster_home = tmp_path / "dagster"
    dagster_home.mkdir()
    (dagster_home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    monkeypatch.setenv("R1_HOME", str(mnt))
    monkeypatch.setenv("DAGSTER_HOME", str(dagster_home))
    try:
        yield _Tmpfs(mnt)
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def _store_state(home: Path) -> tuple[dict, list]:
    with open_data(home) as con:
        counts = dict(con.execute("SELECT source, count(*) FROM raw_problems GROUP BY source").fetchall())
        lineage = con.execute("SELECT partition, row_count FROM lineage ORDER BY created_at").fetchall()
    return counts, lineage


def test_read_only_home_and_full_disk_give_clear_errors_and_keep_the_store_consistent(tmp_path, small_disk, write_config):
    big_rows = [{"problem": f"Problem {i}: " + os.urandom(1500).hex(), "answer": str(i)} for i in range(3000)]
    (tmp_path / "big.jsonl").write_text("".join(json.dumps(r) + "\n" for r in big_rows))  # ~9 MB > the 3 MiB disk
    write_config({"sources": [
        {"name": "small", "kind": "file", "path": str(_write_jsonl(tmp_path / "small.jsonl", 20, "small"))},
        {"name": "big", "kind": "file", "path": str(tmp_path / "big.jsonl")},
    ]})
    home = small_disk.path
    rc, out = _finish(_materialize("raw_problems", "small"))
    assert rc == 0, out[-4000:]
    committed = ({"small": 20}, [("source=small", 20)])
    assert _store_state(home) == committed

    # Read-only R1_HOME: refused before anything is written, with the reason.
    small_disk.remount("ro")
    rc, out = _finish(_materialize("raw_problems", "big"))
    assert rc != 0 and "RUN_FAILURE" in out
    assert f"R1_HOME {home} is not writable" in out
    assert _store_state(home) == committed

    # Full disk: the commit fails, the error says so, and nothing of the write is visible.
    small_disk.remount("rw")
    rc, out = _finish(_materialize("raw_problems", "big"))
    assert rc != 0 and "RUN_FAILURE" in out
    assert f"disk full while writing {Store(home).location}; nothing of this write was committed" in out
    assert "cannot rollback" not in out
    assert _store_state(home) == committed

    # With space again, the same partition materializes completely, exactly once.
    small_disk.remount("rw,size=64m")
    rc, out = _finish(_materialize("raw_problems", "big"))
    assert rc == 0, out[-4000:]
    assert _store_state(home) == ({"small": 20, "big": 3000}, [("source=small", 20), ("source=big", 3000)])


# -- a model run killed mid-way ----------------------------------------------------------------
KILL_PROBLEMS = [(f"What is {a} + {b}?", str(a + b)) for a, b in zip(range(3, 15), range(40, 52))]


def _model_home(base: Path, converted: Path, config_path: Path) -> dict:
    """A fresh R1_HOME/DAGSTER_HOME holding KILL_PROBLEMS as clean_problems and their shard."""
    from tests.model_support import link_small_model
    from tests.store_support import put_clean_problems

    home = base / "r1home"
    (home / "dagster").mkdir(parents=True)
    (home / "dagster" / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    link_small_model(home, converted)
    put_clean_problems(Store(home), KILL_PROBLEMS, source="t")
    env = {**os.environ, "R1_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "R1_CONFIG": str(config_path)}
    # Assign and register the shard the way the clean_problems step does.
    from dagster_project.partitions import register_shard_partitions
    from r1_assets.difficulty import sync_shards

    store = Store(home)
    sync_shards(store, shard_size=80)
    with dg.DagsterInstance.from_config(str(home / "dagster")) as instance:
        assert register_shard_partitions(instance, store) == ["shard-00000"]
    return env


def _generation_keys(home: Path) -> list[tuple]:
    with open_data(home) as con:
        return con.execute("SELECT problem_id, sample_idx, generation_id FROM generations ORDER BY 1, 2").fetchall()


def _count_generations(home: Path) -> int:
    try:
        with open_data(home) as con:
            return con.execute("SELECT count(*) FROM generations").fetchone()[0]
    except duckdb.Error:  # the duckdb backend: the run holds the write lock for a moment
        return -1


def _run_pass_rates(env: dict) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "dagster", "asset", "materialize", "-m", "dagster_project.definitions",
           "--select", "pass_rates", "--partition", "shard-00000"]
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


@pytest.mark.model
@pytest.mark.timeout(900)
def test_pass_rates_killed_mid_run_then_rematerialized_equals_a_clean_run(tmp_path, converted_small_model):
    import time

    import yaml

    n, total = 2, 2 * len(KILL_PROBLEMS)
    config = tmp_path / "r1.yaml"
    config.write_text(yaml.safe_dump({
        "sources": [{"name": "t", "kind": "reasoning_gym", "task": "basic_arithmetic", "size": 5}],
        # batch_size 4: a checkpoint every 4 samples, so the kill lands between checkpoints.
        "models": {"small": {"name": "small_model", "dtype": "auto", "enforce_eager": True,
                             "max_model_len": 512, "batch_size": 4}},
        "difficulty": {"model": "small", "shard_size": 100, "prompt_templates": {"math": "{problem}"},
                       "sampling": {"n": n, "temperature": 0.7, "top_p": 0.95, "max_tokens": 32, "seed": 0}},
        "verification": {"workers": 1},
    }))
    killed_env = _model_home(tmp_path / "killed", converted_small_model, config)
    killed_home = Path(killed_env["R1_HOME"])

    proc = _run_pass_rates(killed_env)
    deadline = time.monotonic() + 600
    seen = 0
    while proc.poll() is None and time.monotonic() < deadline:
        seen = _count_generations(killed_home)
        if 0 < seen < total:
            break
        time.sleep(0.2)
    assert proc.poll() is None, f"the run ended before it could be killed:\n{proc.stdout.read()[-3000:]}"
    os.killpg(proc.pid, signal.SIGKILL)  # the run process and its step worker, no cleanup
    proc.wait(timeout=30)
    partial = _generation_keys(killed_home)
    assert 0 < len(partial) < total, len(partial)
    # The killed run never reported its end and still holds its `gpu` slot. What an operator
    # does in the UI (Terminate -> marked canceled; the daemon or Deployment > Concurrency then
    # frees the slot, see docs/operations.md):
    with dg.DagsterInstance.from_config(killed_env["DAGSTER_HOME"]) as instance:
        (run,) = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.STARTED
        assert instance.event_log_storage.get_concurrency_info("gpu").claimed_slots
        instance.report_run_canceled(run, message="run process was killed")
        instance.event_log_storage.free_concurrency_slots_for_run(run.run_id)
    with open_data(killed_home) as con:
        assert con.execute("SELECT count(*) FROM pass_rates").fetchone()[0] == 0

    rc, out = _finish(_run_pass_rates(killed_env), timeout=600)
    assert rc == 0 and "RUN_SUCCESS" in out, out[-4000:]
    resumed = _generation_keys(killed_home)

    # What a clean run stores: each (problem, sample) once, under the id its model, sampling and
    # prompts give it (the resume key; a clean run in another home stores exactly these).
    cfg = load_config(config)
    ph = params_hash("small_model", cfg.difficulty.sampling, cfg.difficulty.prompt_templates)
    clean = sorted((problem_id(p), idx, generation_id("pass_rate", problem_id(p), "small_model", ph, idx))
                   for p, _ in KILL_PROBLEMS for idx in range(n))

    # None lost, none duplicated: the same (problem_id, sample_idx, generation_id) rows, once each.
    assert len(clean) == total and len(set(clean)) == total
    assert resumed == clean
    assert set(partial) <= set(resumed)  # the checkpointed samples were kept, not regenerated
    with open_data(killed_home) as con:
        rates = con.execute("SELECT problem_id, k FROM pass_rates ORDER BY 1").fetchall()
    assert len(rates) == len(KILL_PROBLEMS) and all(k == n for _, k in rates)
