"""The verdict every verifier returns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Verdict = Literal[
    "correct", "wrong", "unparseable_reference", "unparseable_answer", "timeout", "error", "no_code",
]
VERDICTS: tuple[str, ...] = (
    "correct", "wrong", "unparseable_reference", "unparseable_answer", "timeout", "error", "no_code",
)


@dataclass(frozen=True)
class VerifyResult:
    verdict: Verdict
    # True/False only when the verdict is correct/wrong (or no_code: a code answer without
    # code is wrong); None when nothing was decided.
    correct: bool | None
    # The prediction's extracted answer as text (a math answer, a letter, the code), when found.
    extracted_answer: str | None = None
    # Why: a timeout, a parse failure, the first failing test with a stderr tail.
    detail: str | None = None
    # How the verdict was reached, e.g. "math_verify", "last_number", "sandbox_tests", "mcq_letter".
    method: str | None = None
    # The verifier that decided, with its version ("math@1 math-verify 0.9.0"); set by the registry.
    verifier: str | None = None
