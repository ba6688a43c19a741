"""Verification: one verifier per domain behind one interface.

``verify_samples(samples, vcfg, lenient=...)`` takes samples of any mix of domains and returns
one ``VerifyResult`` per sample, in input order; ``pass_rates`` and ``verified_distillations``
both call it. Each sample goes to its domain's verifier:

| domain | verifier | reads |
|---|---|---|
| math | ``verification.math``: math-verify with Open-R1's extraction | answer |
| code | ``verification.code``: the last fenced block, run against the tests in bubblewrap | tests |
| mcq | ``verification.mcq``: the chosen letter against the correct one after the shuffle | answer, choices |
| puzzle | ``verification.puzzle``: the reasoning-gym task's own ``score_answer`` | answer, metadata |

Every result records the method that decided it (``method``) and the verifier with its
version (``verifier``). What every verifier reads is the final answer part of the sample
(``format.answer_text``): the text after ``</think>``, or all of it without a closed think block.
Format checks (``format``) and the optional LLM judge (``judge``) are domain-independent.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cache
from importlib import metadata as importlib_metadata

from r1_assets.config import VerificationConfig
from r1_assets.verification import code, math, mcq, puzzle
from r1_assets.verification.format import answer_text, split_reasoning
from r1_assets.verification.math import reference_alternatives, reference_answer, verify_batch, verify_one
from r1_assets.verification.pool import default_workers, start_server
from r1_assets.verification.result import VERDICTS, Verdict, VerifyResult

__all__ = [
    "VERDICTS", "Sample", "Verdict", "VerifyResult", "default_workers", "has_reference", "reference_alternatives",
    "reference_answer",
    "reference_missing",
    "sample_text", "start_worker_server", "verifier_name", "verify_batch", "verify_one", "verify_samples",
]

UNSANDBOXED_WARNING = (
    "verification.code.sandbox is 'none': model-written code ran WITHOUT the bubblewrap sandbox "
    "(rlimits only); it could read and change anything this process can"
)


@dataclass(frozen=True)
class Sample:
    """One sample to verify and what its domain checks it against."""

    domain: str
    text: str | None  # the whole sample; the verifier reads its final answer part
    problem_id: str
    sample_idx: int
    problem: str | None = None
    answer: str | None = None
    tests: str | None = None  # JSON
    choices: str | None = None  # JSON
    metadata: str | None = None  # JSON


def sample_text(text: str | None) -> str:
    """What a verifier reads of a sample: its final answer part after ``</think>``, else all of it."""
    reasoning, final = split_reasoning(text)
    return answer_text(text, reasoning, final)


def has_reference(sample: Sample) -> bool:
    """Whether the sample's domain has what it needs to decide (answer, tests, choices)."""
    def present(value) -> bool:
        return value is not None and str(value).strip() != ""

    if sample.domain == "code":
        return present(sample.tests)
    if sample.domain == "mcq":
        return present(sample.answer) and present(sample.choices)
    return present(sample.answer)


def reference_missing(sample: Sample) -> bool:
    """No reference at all (NULL), as opposed to one that is present but unusable (``""``)."""
    if sample.domain == "code":
        return sample.tests is None
    if sample.domain == "mcq":
        return sample.answer is None or sample.choices is None
    return sample.answer is None


@cache
def _package_version(name: str) -> str:
    try:
        return importlib_metadata.version(name)
    except importlib_metadata.PackageNotFoundError:
        return "missing"


@cache
def _bwrap_version() -> str:
    try:
        out = subprocess.run(["bwrap", "--version"], check=False, capture_output=True, text=True, timeout=10).stdout
        return out.split()[-1] if out.strip() else "unknown"
    except (OSError, subprocess.TimeoutExpired):
        return "missing"


def verifier_name(domain: str, vcfg: VerificationConfig) -> str:
    """The verifier of a domain with its version and that of the library it runs on."""
    if domain == "code":
        runner = f"bwrap {_bwrap_version()}" if vcfg.code.sandbox == "bwrap" else "unsandboxed"
        return f"{code.VERSION} {runner}"
    if domain == "mcq":
        return mcq.VERSION
    if domain == "puzzle":
        return f"{puzzle.VERSION} reasoning-gym {_package_version('reasoning-gym')}"
    return f"{math.VERSION} math-verify {_package_version('math-verify')}"


def code_limits(vcfg: VerificationConfig) -> code.SandboxLimits:
    c = vcfg.code
    return code.SandboxLimits(wall_timeout_s=c.wall_timeout_s, cpu_s=c.cpu_s, memory_bytes=c.memory_bytes,
                              max_processes=c.max_processes, max_file_bytes=c.max_file_bytes)


def _by_domain(domain: str, samples: Sequence[Sample], vcfg: VerificationConfig, lenient: bool,
               progress) -> list[VerifyResult]:
    texts = [sample_text(s.text) for s in samples]
    if domain == "math":
        return math.verify_batch([(t, s.answer) for t, s in zip(texts, samples)], timeout_s=vcfg.timeout_s,
                                 workers=vcfg.workers, lenient=lenient, progress=progress)
    if domain == "code":
        return code.verify_batch([(t, s.tests) for t, s in zip(texts, samples)], limits=code_limits(vcfg),
                                 sandbox=vcfg.code.sandbox, python=vcfg.code.python, workers=vcfg.workers,
                                 progress=progress)
    if domain == "mcq":
        # Letter extraction is a few regular expressions: no pool needed.
        return [mcq.verify_one(t, s.answer, s.choices, s.problem_id, s.sample_idx) for t, s in zip(texts, samples)]
    if domain == "puzzle":
        return puzzle.verify_batch([(t, s.problem or "", s.answer, s.metadata) for t, s in zip(texts, samples)],
                                   min_score=vcfg.puzzle.min_score, timeout_s=vcfg.timeout_s,
                                   workers=vcfg.workers, progress=progress)
    raise ValueError(f"unknown domain {domain!r}")


# What each pooled verifier's workers import (mcq needs no pool).
_PRELOADS = {"math": math.PRELOAD, "puzzle": puzzle.PRELOAD, "code": code.PRELOAD}


def start_worker_server(domains: Sequence[str]) -> None:
    """Start the verifiers' worker server now, importing what ``domains``' verifiers need, and
    return at once: a caller about to generate the samples it will score overlaps the two.

    A process has one server and its imports are fixed when it starts, so it must start with
    every domain a batch holds (else the later verifiers' workers import on their own)."""
    preload = [m for d in ("math", "puzzle", "code") if d in domains for m in _PRELOADS[d]]
    if preload:
        start_server(preload)


def verify_samples(samples: Sequence[Sample], vcfg: VerificationConfig, *, lenient: bool,
                   progress: Callable[[int, int], None] | None = None) -> list[VerifyResult]:
    """One verdict per sample, in input order, each from its domain's verifier.

    A sample whose domain lacks its reference (no answer, no tests) is ``unparseable_reference``
    with method ``none``; nothing is run for it.
    """
    results: list[VerifyResult | None] = [None] * len(samples)
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(samples):
        if has_reference(s):
            groups.setdefault(s.domain or "math", []).append(i)
        else:
            results[i] = VerifyResult("unparseable_reference", None, detail="no reference answer", method="none")
    start_worker_server(list(groups))
    for domain, idxs in groups.items():
        name = verifier_name(domain, vcfg)
        for i, res in zip(idxs, _by_domain(domain, [samples[i] for i in idxs], vcfg, lenient, progress)):
            results[i] = replace(res, verifier=name, method=res.method or domain)
    return results  # type: ignore[return-value]


def verification_warnings(domains: Sequence[str], vcfg: VerificationConfig) -> list[str]:
    """Warnings every materialization that verified these domains must show."""
    return [UNSANDBOXED_WARNING] if "code" in domains and vcfg.code.sandbox == "none" else []


def sample_from_row(row: dict, text_key: str = "text") -> Sample:
    """A ``Sample`` from a row with domain, problem_id, sample_idx, text, problem, answer, tests, choices, metadata."""
    return Sample(domain=row.get("domain") or "math", text=row.get(text_key), problem_id=row["problem_id"],
                  sample_idx=int(row.get("sample_idx") or 0), problem=row.get("problem"), answer=row.get("answer"),
                  tests=_json_text(row.get("tests")), choices=_json_text(row.get("choices")),
                  metadata=_json_text(row.get("metadata")))


def _json_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value)
