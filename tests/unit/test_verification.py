"""Verification with the real math-verify, in the real process pool."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import threading
import time

import pytest

from r1_assets.verification import VerifyResult, reference_answer, verify_batch, verify_one

# An answer whose sympy evaluation runs far past any timeout (a tower of powers).
POWER_TOWER = "\\boxed{" + "2^{" * 7 + "2" + "}" * 7 + "}"


def test_reference_answer_gsm8k_and_plain():
    assert reference_answer("She has 3 apples.\n#### 1,234") == "1234"
    assert reference_answer("#### -7") == "-7"
    assert reference_answer("  \\frac{1}{2} ") == "\\frac{1}{2}"
    assert reference_answer("(1,2)") == "(1,2)"  # a tuple is not a thousands separator


def test_verdicts_open_r1_extraction():
    pairs = [
        ("So the answer is \\boxed{\\frac{1}{2}}.", "0.5"),
        ("Reasoning... final: \\boxed{(3, \\frac{\\pi}{2})}", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("Therefore $x = \\boxed{2\\sqrt{3}}$", "2 \\sqrt{3}"),
        ("I get \\boxed{7}.", "8"),
        ("Adding up, 40 + 2 = 42", "Natalia sold 48/2 = 24 clips in May.\n#### 42"),
        ("no idea", "3"),
        ("\\boxed{3}", ""),
    ]
    results = verify_batch(pairs, timeout_s=5, workers=2)
    verdicts = [r.verdict for r in results]
    assert verdicts == ["correct", "correct", "correct", "wrong", "correct", "unparseable_answer", "unparseable_reference"]
    assert results[0].correct is True and results[0].extracted_answer == "\\frac{1}{2}"
    assert results[3].correct is False and results[3].extracted_answer == "7"
    # Undecided verdicts never count either way (open-r1 issue 293).
    assert results[5].correct is None and results[6].correct is None
    assert all(isinstance(r, VerifyResult) for r in results)


def test_boxed_answer_wins_over_later_numbers():
    # boxed_match_priority=0: the boxed answer is taken even when other numbers follow it.
    [result] = verify_batch([("\\boxed{12}. Check: 3*4 = 12, and 5 is not it", "12")], workers=1)
    assert result.verdict == "correct"


def test_lenient_falls_back_to_last_number():
    text = "The total is twelve, or 1,2... I think the result is 15 apples"
    strict, lenient = verify_batch([(text, "15")], workers=1)[0], verify_batch([(text, "15")], workers=1, lenient=True)[0]
    assert lenient.verdict == "correct" and lenient.method in {"math_verify", "last_number"}
    no_number = verify_batch([("words only", "15")], workers=1, lenient=True)[0]
    assert no_number.verdict == "unparseable_answer"
    assert strict.verdict in {"correct", "wrong", "unparseable_answer"}
    # The fallback itself: nothing math-verify can extract except through it.
    [fallback] = verify_batch([("answer: 15 (apples)", "15")], workers=1, lenient=True)
    assert fallback.correct is True


def test_hanging_latex_times_out_and_batch_continues():
    pairs = [(POWER_TOWER, "5"), ("\\boxed{4}", "4"), (POWER_TOWER, "7"), ("\\boxed{9}", "9")]
    start = time.monotonic()
    results = verify_batch(pairs, timeout_s=2, workers=2)
    elapsed = time.monotonic() - start
    assert [r.verdict for r in results] == ["timeout", "correct", "timeout", "correct"]
    assert results[0].correct is None
    # Two 2 s timeouts on two workers plus start-up: far below a hang.
    assert elapsed < 60


@pytest.mark.parametrize(
    "latex",
    [
        "$" + "(" * 3000 + "1" + ")" * 3000 + "$",  # deep nesting
        "\\boxed{" + "\\frac{1}{" * 200 + "2" + "}" * 200 + "}",  # deep fractions
        "\\boxed{" + "x^" * 400 + "2}",  # exponent chain
        "\\boxed{\\sqrt{" * 50 + "2" + "}}" * 50,  # unbalanced braces
        "\\boxed{" + "1+" * 20000 + "1}",  # very long sum
        "$\\begin{pmatrix}" + "1&" * 500 + "1\\end{pmatrix}^{1000}$",
    ],
)
def test_pathological_latex_never_hangs(latex):
    start = time.monotonic()
    [result] = verify_batch([(latex, "2")], timeout_s=2, workers=1)
    assert result.verdict in {"wrong", "unparseable_answer", "timeout", "error", "correct"}
    # Alarm at 2 s, hard kill at 2 + 3 s, plus worker start-up on a loaded machine.
    assert time.monotonic() - start < 60


def _workers_of_this_process():
    # The pool's workers are the only multiprocessing children a test process has.
    return mp.active_children()


def _signal_worker_when_busy(sig, delay):
    """Send ``sig`` to the pool's worker ``delay`` seconds after it appears (failure injection)."""

    def run():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            workers = _workers_of_this_process()
            if workers:
                time.sleep(delay)
                os.kill(workers[0].pid, sig)
                return
            time.sleep(0.05)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_frozen_worker_is_killed_and_replaced():
    # SIGSTOP freezes the worker the way C code that ignores the alarm would.
    injector = _signal_worker_when_busy(signal.SIGSTOP, 1.0)
    start = time.monotonic()
    results = verify_batch([(POWER_TOWER, "5"), ("\\boxed{4}", "4"), ("\\boxed{6}", "6")], timeout_s=3, workers=1)
    injector.join()
    assert [r.verdict for r in results] == ["timeout", "correct", "correct"]
    assert "killed" in (results[0].detail or "")
    assert time.monotonic() - start < 90


def test_crashed_worker_gives_error_and_batch_continues():
    injector = _signal_worker_when_busy(signal.SIGKILL, 1.0)
    results = verify_batch([(POWER_TOWER, "5"), ("\\boxed{4}", "4"), ("\\boxed{6}", "6")], timeout_s=3, workers=1)
    injector.join()
    assert [r.verdict for r in results] == ["error", "correct", "correct"]
    assert "exit" in results[0].detail or "crash" in results[0].detail


def test_verify_one_inline_main_thread():
    assert verify_one("\\boxed{\\frac{2}{4}}", "\\frac12").verdict == "correct"
    assert verify_one(POWER_TOWER, "5", timeout_s=1).verdict == "timeout"


def test_empty_batch():
    assert verify_batch([]) == []


def test_real_labelled_solutions_agree_with_labels(shared_data):
    """800 Qwen2.5-Math solutions with the file's own correctness labels: >= 97% agreement, no hangs."""
    rows = [json.loads(line) for line in (shared_data / "samples" / "qwen25_math_cot_100x8.jsonl").open()]
    pairs, labels = [], []
    for row in rows:
        for response, score in zip(row["code"], row["score"]):
            pairs.append((response, row["gt"]))
            labels.append(bool(score))
    assert len(pairs) == 800
    results = verify_batch(pairs, timeout_s=5)
    verdicts = [r.verdict for r in results]
    assert verdicts.count("timeout") == 0 and verdicts.count("error") == 0
    assert verdicts.count("unparseable_reference") == 0
    agreement = sum((r.correct is True) == label for r, label in zip(results, labels)) / len(pairs)
    assert agreement >= 0.97, agreement

