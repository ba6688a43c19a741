"""The puzzle verifier: reasoning-gym tasks score their own answers, through the registry and the pool."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from r1_assets.config import VerificationConfig, parse_config
from r1_assets.sources import collect_source
from r1_assets.verification import Sample, verify_samples
from r1_assets.verification.puzzle import extract_answer
from tests.paths import REPO_ROOT


def _rows(task, size=6):
    cfg = parse_config({"sources": [{"name": task, "kind": "reasoning_gym", "task": task, "size": size, "seed": 3,
                                     "domain": "puzzle"}]}, ".")
    collected = collect_source(cfg.sources[0], cfg)
    assert collected.rows.height == size and set(collected.rows["domain"]) == {"puzzle"}
    return list(collected.rows.iter_rows(named=True))


def _sample(row, text, idx=0):
    return Sample("puzzle", text, row["problem_id"], idx, problem=row["problem"], answer=row["answer"],
                  metadata=row["metadata"])


@pytest.mark.parametrize("task", ["word_sorting", "basic_arithmetic", "maze"])
def test_gold_answers_score_correct_and_others_wrong(task):
    rows = _rows(task)
    samples = [_sample(r, f"<think>\nworking\n</think>\n\n<answer>{r['answer']}</answer>") for r in rows]
    samples += [_sample(r, f"Final: \\boxed{{{r['answer']}}}", 1) for r in rows]
    samples += [_sample(r, "<answer>certainly not this</answer>", 2) for r in rows]
    results = verify_samples(samples, VerificationConfig(workers=2), lenient=False)
    n = len(rows)
    assert [r.verdict for r in results[:2 * n]] == ["correct"] * (2 * n)
    assert all(r.verdict == "wrong" and r.correct is False for r in results[2 * n:])
    assert {r.method for r in results} == {"score_answer"}
    assert all(r.verifier.startswith("puzzle@1 reasoning-gym ") for r in results)


def test_partial_credit_and_min_score():
    # word_sorting gives partial credit for a list with the right words in a wrong order? Use a
    # task-independent check instead: min_score 0 accepts any scored answer.
    row = _rows("word_sorting", 1)[0]
    sample = _sample(row, "<answer>Only</answer>")
    [strict] = verify_samples([sample], VerificationConfig(workers=1), lenient=False)
    [lax] = verify_samples([sample], VerificationConfig(workers=1, puzzle={"min_score": 0.0}), lenient=False)
    assert strict.verdict == "wrong" and lax.verdict == "correct"


def test_missing_task_metadata_is_an_unparseable_reference():
    [result] = verify_samples([Sample("puzzle", "<answer>1</answer>", "p", 0, problem="q", answer="1",
                                      metadata="{}")], VerificationConfig(workers=1), lenient=False)
    assert result.verdict == "unparseable_reference" and result.correct is None


def test_extract_answer():
    assert extract_answer("x <answer>a</answer> y <answer> b </answer>") == "b"
    assert extract_answer("so \\boxed{7}.") == "7"
    assert extract_answer("  plain  ") == "plain"
    assert extract_answer("") is None


def test_puzzle_workers_import_reasoning_gym_before_their_first_sample(tmp_path):
    # A process has one forkserver, preloaded by whichever verifier ran first: after a code
    # batch, puzzle workers fork without reasoning-gym (a ~5 s import on a laptop core). With a
    # 1 s budget (a 4 s kill) the import must happen before a worker takes a sample.
    # In a fresh interpreter, so that a forkserver of earlier tests cannot hide it.
    script = tmp_path / "order.py"
    script.write_text(textwrap.dedent("""
        import json
        from r1_assets.config import VerificationConfig
        from r1_assets.verification import Sample, verify_samples
        from r1_assets.verification.code import verify_batch

        if __name__ == "__main__":
            assert verify_batch([("no code here", None)], sandbox="none", workers=1)[0].verdict != "error"
            meta = json.dumps({"source_dataset": "basic_arithmetic"})
            samples = [Sample("puzzle", "<answer>4</answer>", f"p{i}", 0, problem="2+2?", answer="4",
                              metadata=meta) for i in range(2)]
            config = VerificationConfig(workers=2, timeout_s=1)
            print(json.dumps([r.verdict for r in verify_samples(samples, config, lenient=False)]))
    """))
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300,
                         cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert out.returncode == 0, out.stderr[-3000:]
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ["correct", "correct"], out.stderr[-3000:]
