"""The MCQ verifier on real multiple-choice benchmarks (mmlu_stem, sat_math, aqua) after collection."""

from __future__ import annotations

import json

import pytest

from r1_assets.config import PromptTemplates, VerificationConfig, parse_config
from r1_assets.prompts import render_sample_prompt
from r1_assets.sources import collect_source, split_lettered_options
from r1_assets.verification import Sample, verify_samples
from r1_assets.verification.mcq import (
    LETTERS,
    extract_letter,
    permutation,
    shuffle_seed,
    shuffled_letter,
    verify_one,
)

SOURCES = {
    "mmlu_stem": {"path": "science/mmlu_stem_test.jsonl", "choices": "choices", "answer": "answer"},
    "sat_math": {"path": "science/sat_math_test.jsonl", "choices": "options", "answer": "Answer"},
    "aqua": {"path": "science/aqua_test.jsonl", "choices": "options", "answer": "correct"},
}
EXPECTED_ROWS = {"mmlu_stem": 3018, "sat_math": 32, "aqua": 254}

# Written the way DeepSeek-R1 answers (think block, then a short answer ending in \boxed{}).
R1_STYLE = (
    "<think>\nOkay, so I need to figure out which option is right. Let me look at option A first... "
    "no, that cannot be, A contradicts the premise. B? Hmm, B is close but the sign is wrong. "
    "Wait, let me recheck C. Yes, C matches.\n</think>\n\n"
    "The premise rules out A and B, and D does not follow. **Answer:** \\boxed{C}"
)


def _collect(shared_data, name):
    spec = SOURCES[name]
    cfg = parse_config({"sources": [{"name": name, "kind": "file", "domain": "mcq", "problem": "question",
                                     "path": str(shared_data / spec["path"]), "choices": spec["choices"],
                                     "answer": spec["answer"]}]}, ".")
    return collect_source(cfg.sources[0], cfg)


def _samples(rows, text_for):
    samples = []
    for i, row in enumerate(rows.iter_rows(named=True)):
        n = len(json.loads(row["choices"]))
        seed = shuffle_seed(row["problem_id"], i % 4)
        gold = shuffled_letter(row["answer"], n, seed)
        samples.append(Sample(domain="mcq", text=text_for(gold, n), problem_id=row["problem_id"], sample_idx=i % 4,
                              problem=row["problem"], answer=row["answer"], choices=row["choices"]))
    return samples


@pytest.mark.parametrize("name", ["mmlu_stem", "sat_math", "aqua"])
def test_correct_letter_always_correct_wrong_letter_always_wrong(shared_data, name):
    collected = _collect(shared_data, name)
    assert collected.rows.height == EXPECTED_ROWS[name] and collected.rejected.height == 0
    vcfg = VerificationConfig()
    right = verify_samples(_samples(collected.rows, lambda gold, n: f"So the answer is \\boxed{{{gold}}}."),
                           vcfg, lenient=False)
    assert all(r.verdict == "correct" for r in right)
    assert {r.verifier for r in right} == {"mcq@1"} and {r.method for r in right} == {"mcq_boxed"}

    def wrong_letter(gold, n):
        return f"Answer: {LETTERS[(LETTERS.index(gold) + 1) % n]}"

    wrong = verify_samples(_samples(collected.rows, wrong_letter), vcfg, lenient=False)
    assert all(r.verdict == "wrong" and r.correct is False for r in wrong)


def test_r1_style_answer_scored_against_the_gold_letter_after_the_shuffle(shared_data):
    row = next(_collect(shared_data, "sat_math").rows.iter_rows(named=True))
    # Pick the sample whose shuffle put the gold option at C, and one where it is elsewhere.
    at_c = next(i for i in range(100) if shuffled_letter(row["answer"], 4, shuffle_seed(row["problem_id"], i)) == "C")
    not_c = next(i for i in range(100) if shuffled_letter(row["answer"], 4, shuffle_seed(row["problem_id"], i)) != "C")
    hit = verify_one(R1_STYLE, row["answer"], row["choices"], row["problem_id"], at_c)
    miss = verify_one(R1_STYLE, row["answer"], row["choices"], row["problem_id"], not_c)
    assert (hit.verdict, hit.extracted_answer) == ("correct", "C")
    assert f"shuffle_seed={shuffle_seed(row['problem_id'], at_c)}" in hit.detail
    assert miss.verdict == "wrong"
    # Through the registry, the verifier reads only the part after </think> (the A and B there are thoughts).
    [result] = verify_samples([Sample("mcq", R1_STYLE, row["problem_id"], at_c, answer=row["answer"],
                                      choices=row["choices"])], VerificationConfig(), lenient=False)
    assert result.verdict == "correct"


def test_prompt_shows_the_shuffled_options_the_verifier_judges_against(shared_data):
    row = next(_collect(shared_data, "mmlu_stem").rows.iter_rows(named=True))
    options = json.loads(row["choices"])
    prompts = [render_sample_prompt(PromptTemplates(), {**row, "domain": "mcq"}, i) for i in range(8)]
    assert len(set(prompts)) > 1  # shuffled per sample
    for i, prompt in enumerate(prompts):
        gold = shuffled_letter(row["answer"], len(options), shuffle_seed(row["problem_id"], i))
        correct_text = options[LETTERS.index(row["answer"])]
        assert f"{gold}) {correct_text}" in prompt
        assert "\\boxed{}" in prompt
    order = permutation(4, shuffle_seed(row["problem_id"], 0))
    assert sorted(order) == [0, 1, 2, 3]


def test_letter_extraction():
    assert extract_letter("I pick \\boxed{\\text{B}}", 4) == ("B", "boxed")
    assert extract_letter("\\boxed{(D)} is it", 4) == ("D", "boxed")
    assert extract_letter("The answer is (C).", 4) == ("C", "answer_is")
    assert extract_letter("**Answer:** B", 4) == ("B", "answer_is")
    assert extract_letter("the answer is a bit unclear", 4) == (None, None)  # lowercase "a" is a word
    assert extract_letter("After all that, B", 4) == ("B", "last_letter")
    assert extract_letter("I think E", 4) == (None, None)  # not an offered option
    assert extract_letter("A is wrong. So it must be D.", 4) == ("D", "last_letter")
    assert extract_letter("", 4) == (None, None)


def test_split_lettered_options():
    assert split_lettered_options("A) $f(-6)=0$ B) $f(6)=-6$ C) 10 D) -10 and 10") == [
        "$f(-6)=0$", "$f(6)=-6$", "10", "-10 and 10"]
    with pytest.raises(ValueError):
        split_lettered_options("no letters here")
