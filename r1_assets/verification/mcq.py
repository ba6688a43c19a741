"""Multiple-choice answers: options shuffled per sample, the chosen letter extracted and judged.

Rendering: the options are shown with letters A, B, C, ... in an order shuffled by a per-sample
seed (``shuffle_seed(problem_id, sample_idx)``), as GPQA evaluations do to remove position bias;
the seed is recorded in the verdict's detail. The correct letter is the letter the correct
option got after that shuffle.

Extraction, in order: the last ``\\boxed{X}`` (``\\boxed{\\text{C}}``, ``\\boxed{(C)}`` too), the
last "Answer: X" / "answer is X", the last standalone capital letter among the offered ones.
"""

from __future__ import annotations

import json
import random
import re
import string

from r1_assets.text import stable_hash
from r1_assets.verification.result import VerifyResult

VERSION = "mcq@1"
LETTERS = string.ascii_uppercase

_BOXED = re.compile(r"\\boxed\s*\{\s*(?:\\text(?:bf)?\s*\{\s*)?\(?\s*([A-Z])\s*\)?\s*\}?\s*\}")
_ANSWER_IS = re.compile(r"(?i:answer)\s*(?:is|:)?\s*[:\-]?\s*\**\s*\(?\s*([A-Z])\b\)?")
_STANDALONE = re.compile(r"(?<![A-Za-z0-9])\(?([A-Z])\)?(?![A-Za-z0-9'])")


def parse_choices(choices: str | list | None) -> list[str]:
    """The option texts from the stored JSON (a list of strings)."""
    value = json.loads(choices) if isinstance(choices, str) else choices
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(c, str) for c in value):
        raise ValueError("choices must be a list of at least two option texts")
    if len(value) > len(LETTERS):
        raise ValueError(f"at most {len(LETTERS)} choices, got {len(value)}")
    return value


def answer_letter(answer, n_choices: int) -> str:
    """The correct option as a letter of the ORIGINAL order: ``answer`` is an index or a letter."""
    if isinstance(answer, int) and not isinstance(answer, bool) or (isinstance(answer, str) and answer.strip().isdigit()):
        index = int(answer)
    elif isinstance(answer, str) and len(answer.strip().strip("()").strip()) == 1:
        index = LETTERS.find(answer.strip().strip("()").strip().upper())
    else:
        raise ValueError(f"answer {answer!r} is neither an index nor a letter")
    if not 0 <= index < n_choices:
        raise ValueError(f"answer {answer!r} is outside the {n_choices} choices")
    return LETTERS[index]


def shuffle_seed(problem_id: str, sample_idx: int) -> int:
    return int(stable_hash("mcq-shuffle", problem_id, int(sample_idx)), 16) % (2**31 - 1)


def permutation(n_choices: int, seed: int) -> list[int]:
    """``order[i]`` = the original index of the option shown at position i."""
    order = list(range(n_choices))
    random.Random(seed).shuffle(order)
    return order


def render_options(choices: list[str], seed: int) -> str:
    """The shuffled options, one per line: ``A) text``."""
    order = permutation(len(choices), seed)
    return "\n".join(f"{LETTERS[i]}) {choices[j]}" for i, j in enumerate(order))


def shuffled_letter(original_letter: str, n_choices: int, seed: int) -> str:
    """Where the option of ``original_letter`` is shown after the shuffle."""
    order = permutation(n_choices, seed)
    return LETTERS[order.index(LETTERS.index(original_letter))]


def extract_letter(text: str | None, n_choices: int) -> tuple[str | None, str | None]:
    """(letter, how) of the chosen option, or (None, None)."""
    offered = set(LETTERS[:n_choices])
    text = text or ""
    for how, pattern in (("boxed", _BOXED), ("answer_is", _ANSWER_IS), ("last_letter", _STANDALONE)):
        found = [m for m in pattern.findall(text) if m in offered]
        if found:
            return found[-1], how
    return None, None


def verify_one(answer_text: str, reference, choices, problem_id: str, sample_idx: int) -> VerifyResult:
    """Verdict of one sample: the letter it chose against the correct letter after its shuffle."""
    try:
        options = parse_choices(choices)
        original = answer_letter(reference, len(options))
    except (ValueError, TypeError) as err:
        return VerifyResult("unparseable_reference", None, detail=str(err), method="none")
    seed = shuffle_seed(problem_id, sample_idx)
    gold = shuffled_letter(original, len(options), seed)
    letter, how = extract_letter(answer_text, len(options))
    if letter is None:
        return VerifyResult("unparseable_answer", None, detail=f"no option letter found; shuffle_seed={seed}",
                            method="mcq_letter")
    return VerifyResult("correct" if letter == gold else "wrong", letter == gold, extracted_answer=letter,
                        detail=f"gold {gold} (original {original}); shuffle_seed={seed}; found by {how}",
                        method=f"mcq_{how}")


def render_problem(problem: str, choices, problem_id: str, sample_idx: int) -> str:
    """The question with its options, shuffled for this sample (what ``{problem}`` becomes in the prompt)."""
    options = parse_choices(choices)
    return f"{problem}\n\n{render_options(options, shuffle_seed(problem_id, sample_idx))}"
