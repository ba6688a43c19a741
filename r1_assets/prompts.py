"""The user message of a sample, from its problem's domain template (``PromptTemplates``).

Only multiple choice differs from sample to sample: its options are shuffled by a per-sample
seed (``verification.mcq.shuffle_seed``), which the MCQ verifier recomputes to find the
correct letter.
"""

from __future__ import annotations

from r1_assets.config import PromptTemplates
from r1_assets.verification import code, mcq


def render_sample_prompt(templates: PromptTemplates, row: dict, sample_idx: int) -> str:
    """``row`` has problem_id and problem, and for its domain tests (code) or choices (mcq)."""
    domain = row.get("domain") or "math"
    template = getattr(templates, domain)
    problem = row["problem"]
    if domain == "mcq":
        problem = mcq.render_problem(problem, row.get("choices"), row["problem_id"], sample_idx)
    tests = code.tests_preview(row.get("tests")) if domain == "code" and row.get("tests") else ""
    return template.format(problem=problem, tests=tests)
