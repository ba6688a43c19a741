"""The code verifier on real problems: MBPP and HumanEval reference solutions against their own
tests in the real bubblewrap sandbox, mutated solutions, extraction and stdin/stdout cases."""

from __future__ import annotations

import json
import shutil

import pytest

from r1_assets.verification.code import (
    SandboxLimits,
    extract_code,
    normalize_output,
    parse_tests,
    verify_batch,
)
from tests.code_support import (
    as_answer,
    humaneval_items,
    mbpp_items,
    mutate_body_pass,
    mutate_off_by_one,
)

pytestmark = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap not installed")

LIMITS = SandboxLimits(wall_timeout_s=20, cpu_s=10)

# MBPP reference solutions that fail their own test_list, and why (the file is the
# google-research copy; see ../shared/data/README.md). Anything else failing is a verifier bug.
MBPP_KNOWN_FAILURES: dict[int, str] = {
    # The three tasks in which this copy differs from the widely circulated one:
    341: "set_to_tuple returns tuple(s) here (not tuple(sorted(s))): a set of ints iterates in hash-table "
         "order, {12,...,16} as (16, 12, 13, 14, 15), while the test expects sorted order",
    596: "tuple_size is sys.getsizeof(t); the test's literal byte counts (104, ...) are those of another "
         "CPython build, not of the sandbox's python3.11",
    642: "remove_similar_row turns each row into tuple(set(row)), ordered by tuple hashes, which changed in "
         "Python 3.8; the expected rows carry the order of the older hashing",
}


def _run(items, mutate=None):
    pairs = [(as_answer(mutate(i["code"]) if mutate else i["code"]), json.dumps(i["tests"])) for i in items]
    return verify_batch(pairs, limits=LIMITS, workers=2)


def test_extract_last_fenced_block_of_the_final_answer():
    text = "First try:\n```python\nx = 1\n```\nBetter:\n```py\ndef f():\n    return 2\n```\nDone."
    assert extract_code(text) == "def f():\n    return 2\n"
    assert extract_code("```\nprint(1)\n```") == "print(1)\n"
    assert extract_code("no code at all") is None
    assert extract_code("```python\n\n```") is None


def test_parse_tests_and_normalize_output():
    assert parse_tests('["assert f(1) == 2"]') == {"kind": "asserts", "tests": ["assert f(1) == 2"]}
    spec = parse_tests({"inputs": ["1 2\n", ["3", "4"]], "outputs": ["3\n", "7"]})
    assert spec == {"kind": "stdio", "inputs": ["1 2\n", "3\n4"], "outputs": ["3\n", "7"]}
    with pytest.raises(ValueError):
        parse_tests({"inputs": ["1"], "outputs": []})
    with pytest.raises(ValueError):
        parse_tests([])
    assert normalize_output("  1   2 \n\n3\t4  \n\n") == "1 2\n\n3 4"


def test_verdicts_and_first_failing_test_in_detail():
    tests = json.dumps(["assert add(1, 2) == 3", "assert add(2, 2) == 4", "assert add(0, 0) == 0"])
    ok, wrong, crash, none = verify_batch([
        (as_answer("def add(a, b):\n    return a + b"), tests),
        (as_answer("def add(a, b):\n    return 4 if a == 2 else a + b + (a == 0)"), tests),
        (as_answer("def add(a, b):\n    raise RuntimeError('boom')"), tests),
        ("I would add them.", tests),
    ], limits=LIMITS, workers=2)
    assert (ok.verdict, ok.correct) == ("correct", True)
    assert wrong.verdict == "wrong" and wrong.correct is False
    assert wrong.detail.startswith("test 2: assert add(0, 0) == 0 (2 passed before it)")
    assert "AssertionError" in wrong.detail
    assert crash.verdict == "wrong" and "RuntimeError: boom" in crash.detail
    assert (none.verdict, none.correct) == ("no_code", False)


def test_stdin_stdout_cases_compared_after_whitespace_normalisation():
    tests = json.dumps({"inputs": ["1 2\n", "10 20\n"], "outputs": ["3\n", "  30  \n\n"]})
    good = "a, b = map(int, input().split())\nprint(a + b)"
    bad = "a, b = map(int, input().split())\nprint(a * b if a > 5 else a + b)"
    crash = "import sys\nsys.exit(3)"
    r_good, r_bad, r_crash = verify_batch([(as_answer(c), tests) for c in (good, bad, crash)],
                                          limits=LIMITS, workers=2)
    assert r_good.verdict == "correct"
    assert r_bad.verdict == "wrong" and r_bad.detail.startswith("case 1: output differs")
    assert "expected '30', got '200'" in r_bad.detail
    assert r_crash.verdict == "wrong" and "exit code 3" in r_crash.detail


def test_printing_the_report_line_cannot_forge_a_pass():
    # The harness reports through a per-run nonce; a solution that prints look-alike lines and
    # exits before the tests run is wrong.
    code = ('import os, sys\nprint(\'x {"passed": 1, "failed": null}\')\nsys.stdout.flush()\nos._exit(0)')
    [result] = verify_batch([(as_answer(code), json.dumps(["assert False"]))], limits=LIMITS, workers=1)
    assert result.verdict == "wrong" and result.correct is False


def test_humaneval_canonical_solutions_all_correct(shared_data):
    items = humaneval_items(shared_data)
    results = _run(items)
    failures = {i["task_id"]: r.detail for i, r in zip(items, results) if r.verdict != "correct"}
    assert len(items) == 164 and not failures, failures


def test_mbpp_reference_solutions_pass_their_own_tests(shared_data):
    items = mbpp_items(shared_data)
    results = _run(items)
    failures = {i["task_id"]: (r.verdict, r.detail) for i, r in zip(items, results) if r.verdict != "correct"}
    unexplained = {t: f for t, f in failures.items() if t not in MBPP_KNOWN_FAILURES}
    assert not unexplained, unexplained
    assert (len(items) - len(failures)) / len(items) >= 0.99


@pytest.mark.parametrize("mutate", [mutate_off_by_one, mutate_body_pass], ids=["off_by_one", "body_pass"])
def test_mutated_solutions_are_never_correct(shared_data, mutate):
    # A spread of both sets (the whole of both is in tests/bench/bench_code_verification.py).
    items = humaneval_items(shared_data)[::3] + mbpp_items(shared_data)[::12]
    results = _run(items, mutate)
    passed = [i["task_id"] for i, r in zip(items, results) if r.correct]
    assert not passed, passed
