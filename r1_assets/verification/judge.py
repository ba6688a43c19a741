"""The optional LLM judge: a second opinion on samples the domain verifier rejects or cannot parse.

Its EQUIVALENT / DIFFERENT / AMBIGUOUS is stored next to the verifier's verdict, never instead of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import polars as pl

from r1_assets.config import PromptTemplates, SamplingConfig, VerificationConfig
from r1_assets.storage import Store

JUDGE_PURPOSE = "judge"
VERSION = "judge@1"
# The judge prompt is rendered in full (judge_prompt_template) before it is sent.
JUDGE_PROMPTS = PromptTemplates(math="{problem}")



_JUDGE_WORDS = re.compile(r"\b(NOT\s+EQUIVALENT|EQUIVALENT|DIFFERENT|AMBIGUOUS)\b", re.IGNORECASE)


def parse_judge_verdict(text: str | None) -> str:
    """EQUIVALENT / DIFFERENT / AMBIGUOUS from the judge's reply: its last verdict word wins.

    "not equivalent" is DIFFERENT; a reply without any verdict word is AMBIGUOUS.
    """
    words = _JUDGE_WORDS.findall(text or "")
    if not words:
        return "AMBIGUOUS"
    last = re.sub(r"\s+", " ", words[-1].upper())
    return "DIFFERENT" if last == "NOT EQUIVALENT" else last


def judge_candidates(verified: pl.DataFrame) -> pl.DataFrame:
    """Samples the judge looks at: math samples math-verify said wrong, or could not parse one side of."""
    math_rows = verified.filter(pl.col("domain") == "math") if "domain" in verified.columns else verified
    return math_rows.filter(pl.col("verdict").is_in(["wrong", "unparseable_answer", "unparseable_reference"]))


def run_judge(store: Store, engine, vcfg: VerificationConfig, items: pl.DataFrame, shard: str, run_id: str,
              log: Callable[[str], None] | None = None) -> dict[str, str]:
    """Judge verdicts keyed by the distillation generation_id.

    ``items`` has generation_id, problem, answer (reference) and answer_text (the sample's
    final answer part). Judge outputs go to ``generations`` (purpose ``judge``, keyed by the
    judged sample), so a re-run reuses them.
    """
    from r1_assets.engines import load_generations, run_generation

    if items.is_empty():
        return {}
    prompts = pl.DataFrame({
        "problem_id": items["generation_id"],
        "problem": [
            vcfg.judge_prompt_template.format(problem=p, reference=r or "", answer=(a or "")[-4000:])
            for p, r, a in items.select("problem", "answer", "answer_text").iter_rows()
        ],
    })
    sampling = SamplingConfig(**{**vcfg.judge_sampling.model_dump(), "n": 1})
    stats = run_generation(store, engine, JUDGE_PURPOSE, prompts, sampling, JUDGE_PROMPTS, shard=shard,
                           run_id=run_id, log=log)
    outputs = load_generations(store, JUDGE_PURPOSE, engine.model, stats.params_hash, prompts["problem_id"])
    return {gid: parse_judge_verdict(text) for gid, text, err in
            outputs.select("problem_id", "text", "error").iter_rows() if err is None}


