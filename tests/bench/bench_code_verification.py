"""Benchmark: code verification rate in the bubblewrap sandbox, process pool vs one process, same run.

    pytest tests/bench/bench_code_verification.py -o python_files='bench_*.py' -s

Input: the 164 HumanEval canonical solutions (../shared/data/code/humaneval.jsonl) and 200 MBPP
reference solutions, each as a fenced block in a final answer, against their own tests.
Modes, on the same samples, in this order:
- ``inline``: ``verify_one`` in a loop in this process (one sandbox at a time, no pool);
- ``pool-N``: ``verify_batch(workers=N)``, N = the cores this process may use.
Times include starting the workers. Prints a markdown table for docs/benchmarks.md. A second
bench runs both mutations (off by one, body replaced by ``pass``) on the whole of both sets.
"""

from __future__ import annotations

import json
import shutil
import time

import pytest

from r1_assets.verification.code import SandboxLimits, verify_batch, verify_one
from r1_assets.verification.pool import default_workers
from tests.code_support import as_answer, humaneval_items, mbpp_items, mutate_body_pass, mutate_off_by_one

LIMITS = SandboxLimits(wall_timeout_s=20, cpu_s=10)


@pytest.mark.bench
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_code_verification_pool_vs_one_process(shared_data):
    items = humaneval_items(shared_data) + mbpp_items(shared_data)[10:210]
    pairs = [(as_answer(i["code"]), json.dumps(i["tests"])) for i in items]
    rows = []
    started = time.monotonic()
    inline = [verify_one(a, t, limits=LIMITS) for a, t in pairs]
    rows.append(("inline (one process)", time.monotonic() - started, inline))
    workers = default_workers()
    started = time.monotonic()
    pooled = verify_batch(pairs, limits=LIMITS, workers=workers)
    rows.append((f"pool-{workers}", time.monotonic() - started, pooled))
    base = rows[0][1]
    print(f"\n{len(pairs)} samples (164 HumanEval + 200 MBPP references), {workers} cores\n")
    print("| mode | seconds | samples/s | correct | vs inline |")
    print("|---|---|---|---|---|")
    for mode, seconds, results in rows:
        correct = sum(r.verdict == "correct" for r in results)
        print(f"| {mode} | {seconds:.1f} | {len(pairs) / seconds:.1f} | {correct} | {base / seconds:.2f}x |")
    assert [r.verdict for r in inline] == [r.verdict for r in pooled]


@pytest.mark.bench
@pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")
def test_every_mutated_reference_solution_is_not_correct(shared_data):
    """The quality target on the whole of both sets (the test tier checks a spread of them)."""
    items = humaneval_items(shared_data) + mbpp_items(shared_data)
    for name, mutate in (("off_by_one", mutate_off_by_one), ("body_pass", mutate_body_pass)):
        pairs = [(as_answer(mutate(i["code"])), json.dumps(i["tests"])) for i in items]
        started = time.monotonic()
        results = verify_batch(pairs, limits=LIMITS, workers=default_workers())
        passed = [i["task_id"] for i, r in zip(items, results) if r.correct]
        print(f"\nmutation {name}: {len(pairs)} solutions, {len(passed)} still correct, "
              f"{time.monotonic() - started:.1f}s")
        assert not passed, passed
