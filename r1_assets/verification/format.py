"""Format checks of a sample: the think block, the final answer part, truncation, repetition.

``split_reasoning`` cuts a sample into its reasoning and its final answer; ``answer_text`` is
the part every verifier reads; ``format_issues`` lists what is wrong with the sample's shape,
whatever its domain.
"""

from __future__ import annotations

import re
import zlib

from r1_assets.config import VerificationConfig

DEFAULT_VERIFICATION = VerificationConfig()

THINK_OPEN, THINK_CLOSE = "<think>", "</think>"

# Format issues recorded in verified_distillations.format_issues.
UNCLOSED_THINK = "unclosed_think"  # <think> opened, never closed
EMPTY_REASONING = "empty_reasoning"  # the think block holds nothing
NO_THINK = "no_think"  # no <think> block although verification.require_think
NO_FINAL_ANSWER = "no_final_answer"  # nothing after the reasoning, or no answer extractable
TRUNCATED = "truncated"  # finish_reason says max_tokens cut it
REPETITION = "repetition"  # degenerate repetition
GENERATION_ERROR = "generation_error"  # no text (not expected: errored samples are not distilled)



# --------------------------------------------------------------------------------------------
# Splitting a sample


def split_reasoning(text: str | None) -> tuple[str | None, str | None]:
    """(reasoning, final_answer) of one sample.

    - ``<think>R</think>A``: R and A. R1-style chat templates put ``<think>`` in the prompt, so
      a lone ``</think>`` also closes a reasoning block that started the text.
    - ``<think>R`` never closed (cut by max_tokens): R and None.
    - No tags (a model that does not think aloud): the whole solution is the reasoning except
      its last paragraph, which is the final answer; a one-paragraph text is all reasoning,
      and its final answer is its last ``\\boxed{...}`` when there is one.
    """
    if text is None:
        return None, None
    open_at = text.find(THINK_OPEN)
    close_at = text.find(THINK_CLOSE, open_at + len(THINK_OPEN) if open_at >= 0 else 0)
    if open_at >= 0 and close_at < 0:
        return text[open_at + len(THINK_OPEN):].strip(), None
    if close_at >= 0:
        start = open_at + len(THINK_OPEN) if 0 <= open_at < close_at else 0
        return text[start:close_at].strip(), text[close_at + len(THINK_CLOSE):].strip() or None
    paragraphs = [p for p in re.split(r"\n\s*\n", text.strip()) if p.strip()]
    if len(paragraphs) >= 2:
        return "\n\n".join(paragraphs[:-1]), paragraphs[-1]
    boxed = last_boxed(text)
    return text.strip(), (f"$\\boxed{{{boxed}}}$" if boxed is not None else None)


def last_boxed(text: str) -> str | None:
    """Content of the last ``\\boxed{...}`` (balanced braces), or None."""
    start = text.rfind("\\boxed{")
    if start < 0:
        return None
    depth, i = 0, start + len("\\boxed")
    for j in range(i, len(text)):
        if text[j] == "{":
            depth += 1
        elif text[j] == "}":
            depth -= 1
            if depth == 0:
                return text[i + 1:j]
    return None


# --------------------------------------------------------------------------------------------
# Format checks


def has_degenerate_repetition(text: str, vcfg: VerificationConfig = DEFAULT_VERIFICATION) -> bool:
    """True when the text ends in a block repeated over and over, or is mostly the same thing."""
    if not text:
        return False
    tail = text[-(vcfg.repetition_max_period * vcfg.repetition_min_repeats * 4):]
    for period in range(1, min(vcfg.repetition_max_period, len(tail) // vcfg.repetition_min_repeats) + 1):
        block = tail[-period:]
        repeats, end = 1, len(tail) - period
        while end - period >= 0 and tail[end - period:end] == block:
            repeats += 1
            end -= period
        if repeats >= vcfg.repetition_min_repeats and repeats * period >= vcfg.repetition_min_chars:
            return True
    if len(text) >= 2000:
        raw = text.encode("utf-8", "replace")
        if len(zlib.compress(raw, 6)) / len(raw) < vcfg.repetition_max_zlib_ratio:
            return True
    return False


def format_issues(text: str | None, reasoning: str | None, final_answer: str | None,
                  finish_reason: str | None, verdict: str | None,
                  vcfg: VerificationConfig = DEFAULT_VERIFICATION) -> list[str]:
    """Every format problem of one sample (empty list = format_ok)."""
    if text is None:
        return [GENERATION_ERROR]
    issues = []
    uses_think = THINK_OPEN in text or THINK_CLOSE in text
    if uses_think and THINK_CLOSE not in text:
        issues.append(UNCLOSED_THINK)
    elif uses_think and not (reasoning or "").strip():
        issues.append(EMPTY_REASONING)
    if not uses_think and vcfg.require_think:
        issues.append(NO_THINK)
    if not (final_answer or "").strip() or verdict == "unparseable_answer":
        issues.append(NO_FINAL_ANSWER)
    if finish_reason == "length":
        issues.append(TRUNCATED)
    if has_degenerate_repetition(text, vcfg):
        issues.append(REPETITION)
    return issues


def answer_text(text: str | None, reasoning: str | None, final_answer: str | None) -> str:
    """What math-verify reads: the final answer part after a closed think block, else the whole text.

    Inside a think block a reasoning model boxes intermediate results; its answer is what it
    writes after ``</think>``. Without a closed block the whole text is all there is.
    """
    if text and THINK_CLOSE in text and final_answer:
        return final_answer
    return text or ""


